//! Cluster settings (`SET CLUSTER SETTING name = value`, `SHOW CLUSTER SETTING name`,
//! `SHOW ALL CLUSTER SETTINGS`) and node decommissioning marks.
//!
//! A setting is a key `meta_key("setting/" + name)` in the system range holding its value
//! as text; writing one is a one-phase write there (replicated like everything else).
//! Core 0 of every node reads them all once a second ([`poll`]) into
//! [`NodeShared::settings`], where the allocator and others look them up
//! ([`NodeShared::setting`]). Reading a setting is therefore up to a second stale on other
//! nodes; the node that wrote it refreshes at once.
//!
//! `chitin node decommission N` writes the internal setting `node.N.decommissioning =
//! true` (recommission deletes it): the allocator then moves every replica off node N.
//!
//! # Known settings
//!
//! - `server.time_until_store_dead` (interval, default 5 min): how long a node must be
//!   unreachable before the allocator replaces its replicas.
//! - `kv.range.num_replicas` (integer, default: the replica count chosen at `chitin init`):
//!   the voters every range is kept at (capped by the number of nodes).
//! - `kv.range.max_bytes` (bytes, default 512 MiB; CockroachDB's `range_max_bytes`): a
//!   range whose data grows past it splits in two ([`crate::kv::split::split_queue`]).
//!   Accepts `65536`, `64KiB`, `512MiB`, `1GiB`.
//! - `kv.range_split.by_load_enabled` (bool, default **false**, unlike CockroachDB) and
//!   `kv.range_split.load_qps_threshold` (integer, default 2500): a range serving more
//!   requests per second than the threshold for several seconds in a row splits at the
//!   median key of its recent requests. Off by default because a load split here moves
//!   half a range to another *core* of the same node, which pays only when that core has
//!   time to spare: on the 2-core benchmark machine (client on the same cores) YCSB-C went
//!   from 21.8k to 12.5k reads/s once its table was split across both cores (every core
//!   then both serves and hops; bench/RESULTS.md). Turn it on where cores are idle.
//! - `kv.range_merge.queue_enabled` (bool, default true): neighbouring ranges of a table
//!   that are small and cold together merge ([`crate::kv::split::merge`]); boundaries made
//!   by `SPLIT AT` stay.
//!
//! Unknown names are refused (42704), as in CockroachDB.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chitin_storage::Timestamp;

use super::{CoreCtx, NodeShared};
use crate::error::{Error, ErrorKind, Result};
use crate::kv::keys::{meta_key, prefix_end};
use crate::kv::KvWrite;

pub const STORE_DEAD: &str = "server.time_until_store_dead";
pub const NUM_REPLICAS: &str = "kv.range.num_replicas";
pub const RANGE_MAX_BYTES: &str = "kv.range.max_bytes";
pub const LOAD_SPLITS: &str = "kv.range_split.by_load_enabled";
pub const LOAD_QPS: &str = "kv.range_split.load_qps_threshold";
pub const MERGES: &str = "kv.range_merge.queue_enabled";
pub const AUTO_STATS: &str = "sql.stats.automatic_collection.enabled";

/// Defaults of the split settings.
pub const DEFAULT_RANGE_MAX_BYTES: u64 = 512 << 20;
pub const DEFAULT_LOAD_QPS: u64 = 2500;
/// Consecutive one-second windows above the threshold before a load split.
pub const LOAD_SPLIT_WINDOWS: u32 = 3;

/// The settings users may set: name, default (as SHOW prints it), description.
pub const KNOWN: &[(&str, &str, &str)] = &[
    (
        STORE_DEAD,
        "00:05:00",
        "how long a node must be unreachable before its replicas are replaced",
    ),
    (
        NUM_REPLICAS,
        "3",
        "the number of voting replicas every range is kept at",
    ),
    (
        RANGE_MAX_BYTES,
        "536870912",
        "the size in bytes above which a range splits",
    ),
    (
        LOAD_SPLITS,
        "false",
        "whether ranges split when they serve more requests than the load threshold",
    ),
    (
        LOAD_QPS,
        "2500",
        "requests per second above which a range splits by load",
    ),
    (
        MERGES,
        "true",
        "whether small, cold neighbouring ranges merge",
    ),
    (
        AUTO_STATS,
        "true",
        "whether table statistics are refreshed when enough rows changed",
    ),
];

const PREFIX: &str = "setting/";

fn key(name: &str) -> Vec<u8> {
    meta_key(&format!("{PREFIX}{name}"))
}

/// Checks a user-supplied setting and normalises its value.
pub fn validate(name: &str, value: &str) -> Result<String> {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        STORE_DEAD => {
            let d = parse_duration(value).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("invalid value for {STORE_DEAD}: {value:?} is not an interval"),
                )
            })?;
            if d < Duration::from_secs(1) {
                return Err(Error::new(
                    ErrorKind::InvalidParameterValue,
                    format!("{STORE_DEAD} must be at least 1s"),
                ));
            }
            Ok(format_duration(d))
        }
        NUM_REPLICAS => match value.trim().parse::<usize>() {
            Ok(n) if (1..=7).contains(&n) => Ok(n.to_string()),
            _ => Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!("{NUM_REPLICAS} must be an integer from 1 to 7"),
            )),
        },
        RANGE_MAX_BYTES => match parse_bytes(value) {
            Some(n) if n >= 1024 => Ok(n.to_string()),
            _ => Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!("{RANGE_MAX_BYTES} must be a size of at least 1KiB, such as 64MiB"),
            )),
        },
        LOAD_SPLITS | MERGES | AUTO_STATS => match parse_bool(value) {
            Some(b) => Ok(b.to_string()),
            None => Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!("{name} must be true or false"),
            )),
        },
        LOAD_QPS => match value.trim().trim_matches('\'').parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n.to_string()),
            _ => Err(Error::new(
                ErrorKind::InvalidParameterValue,
                format!("{LOAD_QPS} must be a positive integer"),
            )),
        },
        _ => Err(unknown(&name)),
    }
}

/// `65536`, `64KiB`, `64 KB`, `512MiB`, `1GiB` (binary units either way).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim().trim_matches('\'').trim().to_ascii_lowercase();
    let n_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..n_end].parse().ok()?;
    let shift = match t[n_end..].trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().trim_matches('\'').to_ascii_lowercase().as_str() {
        "true" | "on" | "t" | "yes" | "1" => Some(true),
        "false" | "off" | "f" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// The split queue's policy from the node's copy of the settings.
pub fn split_policy(shared: &NodeShared) -> crate::kv::range_stats::SplitPolicy {
    let max_bytes = shared
        .setting(RANGE_MAX_BYTES)
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_RANGE_MAX_BYTES);
    let by_load = shared.setting(LOAD_SPLITS).as_deref() == Some("true");
    let qps = shared
        .setting(LOAD_QPS)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_LOAD_QPS);
    crate::kv::range_stats::SplitPolicy {
        max_bytes,
        load_qps: by_load.then_some(qps as f64),
        hot_windows: LOAD_SPLIT_WINDOWS,
        merge: shared.setting(MERGES).as_deref() != Some("false"),
    }
}

pub fn unknown(name: &str) -> Error {
    Error::new(
        ErrorKind::UndefinedObject,
        format!("unrecognized configuration parameter \"{name}\""),
    )
}

/// `SET CLUSTER SETTING name = value` (`None`: `= DEFAULT`, which removes it).
pub async fn set(ctx: &CoreCtx, name: &str, value: Option<&str>) -> Result<()> {
    let name = name.to_ascii_lowercase();
    let write = match value {
        Some(v) => KvWrite::Put {
            key: key(&name),
            value: validate(&name, v)?.into_bytes(),
        },
        None => {
            if !KNOWN.iter().any(|(n, _, _)| *n == name) {
                return Err(unknown(&name));
            }
            KvWrite::Delete { key: key(&name) }
        }
    };
    write_raw(ctx, write).await
}

/// Marks node `id` as decommissioning (or not).
pub async fn set_decommissioning(ctx: &CoreCtx, id: u64, on: bool) -> Result<()> {
    let k = key(&format!("node.{id}.decommissioning"));
    let write = if on {
        KvWrite::Put {
            key: k,
            value: b"true".to_vec(),
        }
    } else {
        KvWrite::Delete { key: k }
    };
    write_raw(ctx, write).await
}

const MEMBER_PREFIX: &str = "member/";

/// The system-range key of the record of a node admitted after `init`.
pub fn member_key(id: u64) -> Vec<u8> {
    let mut k = meta_key(MEMBER_PREFIX);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Claims node id `m.id` for `m` (fails with a unique violation if it is taken).
pub async fn insert_member(ctx: &CoreCtx, m: &crate::cluster::Member) -> Result<()> {
    let write = KvWrite::Insert {
        key: member_key(m.id),
        value: format!("{} {}", m.addr, m.cores).into_bytes(),
    };
    super::txn_record::write_record(ctx, ctx.shared.hlc.now(), write).await?;
    Ok(())
}

/// The nodes admitted after `init`.
pub async fn members(ctx: &CoreCtx) -> Result<Vec<crate::cluster::Member>> {
    let start = meta_key(MEMBER_PREFIX);
    let end = prefix_end(&start);
    let mut out = Vec::new();
    for (k, v) in ctx.kv_scan(&start, &end, Timestamp::MAX, 10_000).await? {
        let Some(id) = k
            .get(start.len()..)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&v);
        let mut w = text.split_whitespace();
        if let (Some(Ok(addr)), Some(Ok(cores))) = (
            w.next().map(str::parse::<std::net::SocketAddr>),
            w.next().map(str::parse::<usize>),
        ) {
            out.push(crate::cluster::Member { id, addr, cores });
        }
    }
    Ok(out)
}

/// How long a setting write keeps retrying retryable errors (a range that just lost its
/// leader, a conflicting write) before the client sees one.
const WRITE_RETRY_FOR: Duration = Duration::from_secs(10);

/// Writes one setting. The write is blind (a put or a delete of one key), so doing it again
/// after a retryable or ambiguous error is safe: `SET CLUSTER SETTING` and `node decommission` never
/// hand a 40001 to the user while the system range changes leader.
async fn write_raw(ctx: &CoreCtx, write: KvWrite) -> Result<()> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match super::txn_record::write_record(ctx, ctx.shared.hlc.now(), write.clone()).await {
            Ok(_) => break,
            Err(e)
                if (e.is_retryable() || e.kind == ErrorKind::AmbiguousResult)
                    && started.elapsed() + pause < WRITE_RETRY_FOR =>
            {
                glommio::timer::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(800));
            }
            Err(e) => return Err(e),
        }
    }
    poll(ctx).await;
    Ok(())
}

/// Reads every setting from the system range into the node's copy.
pub async fn poll(ctx: &CoreCtx) {
    let start = key("");
    let end = prefix_end(&start);
    let Ok(rows) = ctx.kv_scan(&start, &end, Timestamp::MAX, 10_000).await else {
        return;
    };
    let mut map = HashMap::new();
    for (k, v) in rows {
        let name = String::from_utf8_lossy(&k[start.len()..]).into_owned();
        map.insert(name, String::from_utf8_lossy(&v).into_owned());
    }
    if let Ok(mut s) = ctx.shared.settings.lock() {
        *s = Arc::new(map);
    }
}

/// The value `SHOW CLUSTER SETTING name` prints.
pub fn show(shared: &NodeShared, name: &str) -> Result<String> {
    let name = name.to_ascii_lowercase();
    let (_, default, _) = KNOWN
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| unknown(&name))?;
    if name == NUM_REPLICAS && shared.setting(NUM_REPLICAS).is_none() {
        if let Some(st) = shared.cluster() {
            return Ok(st.voters.len().to_string());
        }
    }
    Ok(shared.setting(&name).unwrap_or_else(|| default.to_string()))
}

/// The nodes marked decommissioning.
pub fn decommissioning(shared: &NodeShared) -> HashSet<u64> {
    let Ok(s) = shared.settings.lock() else {
        return HashSet::new();
    };
    s.iter()
        .filter(|(_, v)| v.as_str() == "true")
        .filter_map(|(k, _)| {
            k.strip_prefix("node.")?
                .strip_suffix(".decommissioning")?
                .parse()
                .ok()
        })
        .collect()
}

/// `10s`, `5m`, `1h30m`, `250ms`, `00:05:00`, `300` (seconds), `5 minutes`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim().trim_matches('\'').trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    if let Ok(secs) = t.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() != 3 {
            return None;
        }
        let h: u64 = parts[0].parse().ok()?;
        let m: u64 = parts[1].parse().ok()?;
        let s: f64 = parts[2].parse().ok()?;
        if m >= 60 || !(0.0..60.0).contains(&s) {
            return None;
        }
        return Some(Duration::from_secs(h * 3600 + m * 60) + Duration::from_secs_f64(s));
    }
    let mut total = Duration::ZERO;
    let mut rest = t.as_str();
    while !rest.is_empty() {
        rest = rest.trim_start();
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = rest[n_end..].trim_start();
        let u_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..u_end];
        rest = &rest[u_end..];
        let secs = match unit {
            "ms" | "millisecond" | "milliseconds" => n / 1000.0,
            "s" | "sec" | "secs" | "second" | "seconds" => n,
            "m" | "min" | "mins" | "minute" | "minutes" => n * 60.0,
            "h" | "hour" | "hours" => n * 3600.0,
            "d" | "day" | "days" => n * 86400.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
    }
    Some(total)
}

/// `HH:MM:SS` (with fractional seconds when there are any), as PostgreSQL prints intervals.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let ms = d.subsec_millis();
    if ms == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}.{ms:03}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("'1m30s'"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("00:05:00"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_duration("5 minutes"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("1:2"), None);
        assert_eq!(format_duration(Duration::from_secs(90)), "00:01:30");
        assert_eq!(validate(STORE_DEAD, "15s").unwrap(), "00:00:15");
        assert!(validate(STORE_DEAD, "0s").is_err());
        assert!(validate("no.such", "1").is_err());
        assert_eq!(validate(NUM_REPLICAS, "5").unwrap(), "5");
        assert_eq!(validate(RANGE_MAX_BYTES, "64KiB").unwrap(), "65536");
        assert_eq!(validate(RANGE_MAX_BYTES, "'512 MiB'").unwrap(), "536870912");
        assert!(validate(RANGE_MAX_BYTES, "12").is_err());
        assert!(validate(RANGE_MAX_BYTES, "lots").is_err());
        assert_eq!(validate(LOAD_SPLITS, "off").unwrap(), "false");
        assert_eq!(validate(LOAD_QPS, "100").unwrap(), "100");
        assert!(validate(LOAD_QPS, "0").is_err());
    }
}
