//! Jobs: long-running schema changes (an online `CREATE INDEX`), recorded in the system
//! range so that `SHOW JOBS` on any node lists them with their progress.
//!
//! A job's record is written by the node running it ("coordinator") when it starts, when
//! what it waits for changes, about once a second while it backfills, and when it ends.
//! A node restarting finds its own jobs still marked running and fails them (their work
//! died with the process; see `exec/online_index.rs` for what is undone).

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::kv::keys;
use crate::kv::KvWrite;
use crate::node::CoreCtx;
use crate::sql::record::{put_str, Reader};
use crate::sql::session::Column;
use crate::sql::types::{Datum, SqlType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Succeeded,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }

    fn code(self) -> u8 {
        match self {
            Status::Running => 0,
            Status::Succeeded => 1,
            Status::Failed => 2,
        }
    }

    fn from_code(c: u8) -> Option<Status> {
        match c {
            0 => Some(Status::Running),
            1 => Some(Status::Succeeded),
            2 => Some(Status::Failed),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: u64,
    /// `NEW SCHEMA CHANGE`-style kind: "CREATE INDEX".
    pub kind: String,
    /// The statement, as the user typed it.
    pub description: String,
    pub user: String,
    pub status: Status,
    /// What a running job is doing or waiting for.
    pub running_status: String,
    /// Microseconds since the Unix epoch.
    pub created: i64,
    pub finished: Option<i64>,
    pub modified: i64,
    /// 0 to 1.
    pub fraction_completed: f64,
    pub error: String,
    /// The node running the job.
    pub coordinator: u64,
    /// Payload the job needs to be undone after its coordinator died: the table and
    /// index ids of an index build.
    pub table_id: u32,
    pub index_id: u32,
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl Job {
    pub fn new(ctx: &CoreCtx, kind: &str, description: &str, user: &str) -> Job {
        let now = now_micros();
        Job {
            id: ctx.shared.next_txn.fetch_add(1, Ordering::Relaxed),
            kind: kind.into(),
            description: description.into(),
            user: user.into(),
            status: Status::Running,
            running_status: String::new(),
            created: now,
            finished: None,
            modified: now,
            fraction_completed: 0.0,
            error: String::new(),
            coordinator: ctx.shared.node_id.load(Ordering::SeqCst).max(1),
            table_id: 0,
            index_id: 0,
        }
    }

    /// Writes the record (best effort for progress: a failed write is retried by the
    /// next one).
    pub async fn save(&mut self, ctx: &CoreCtx) -> Result<()> {
        self.modified = now_micros();
        let record = KvWrite::Put {
            key: job_key(self.id),
            value: encode(self),
        };
        crate::sql::catalog::write_system(ctx, vec![record]).await
    }

    /// Ends the job with `status` (and the error's message when it failed).
    pub async fn finish(&mut self, ctx: &CoreCtx, result: &Result<()>) {
        self.finished = Some(now_micros());
        match result {
            Ok(()) => {
                self.status = Status::Succeeded;
                self.fraction_completed = 1.0;
                self.running_status.clear();
            }
            Err(e) => {
                self.status = Status::Failed;
                self.error = e.message.clone();
                self.running_status.clear();
            }
        }
        // The outcome matters more than the record: try a few times.
        for _ in 0..5 {
            if self.save(ctx).await.is_ok() {
                return;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

const JOB_PREFIX: &str = "job/";

fn job_key(id: u64) -> Vec<u8> {
    keys::meta_key(&format!("{JOB_PREFIX}{id:020}"))
}

/// Every job record, oldest first.
pub async fn list(ctx: &CoreCtx) -> Result<Vec<Job>> {
    let rows = crate::sql::catalog::scan_meta(ctx, JOB_PREFIX).await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for (_, v) in rows {
        jobs.push(decode(&v).ok_or_else(|| Error::internal("corrupt job record"))?);
    }
    jobs.sort_by_key(|j| (j.created, j.id));
    Ok(jobs)
}

fn encode(j: &Job) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(&j.id.to_le_bytes());
    put_str(&mut out, &j.kind);
    put_str(&mut out, &j.description);
    put_str(&mut out, &j.user);
    out.push(j.status.code());
    put_str(&mut out, &j.running_status);
    out.extend_from_slice(&j.created.to_le_bytes());
    out.extend_from_slice(&j.finished.unwrap_or(i64::MIN).to_le_bytes());
    out.extend_from_slice(&j.modified.to_le_bytes());
    out.extend_from_slice(&j.fraction_completed.to_le_bytes());
    put_str(&mut out, &j.error);
    out.extend_from_slice(&j.coordinator.to_le_bytes());
    out.extend_from_slice(&j.table_id.to_le_bytes());
    out.extend_from_slice(&j.index_id.to_le_bytes());
    out
}

fn decode(b: &[u8]) -> Option<Job> {
    let (&version, rest) = b.split_first()?;
    if version != 1 {
        return None;
    }
    let mut r = Reader(rest);
    let id = r.u64()?;
    let kind = r.str()?;
    let description = r.str()?;
    let user = r.str()?;
    let status = Status::from_code(r.take::<1>()?[0])?;
    let running_status = r.str()?;
    let created = r.i64()?;
    let finished = Some(r.i64()?).filter(|&f| f != i64::MIN);
    let modified = r.i64()?;
    let fraction_completed = f64::from_le_bytes(r.take()?);
    let error = r.str()?;
    let coordinator = r.u64()?;
    let table_id = r.u32()?;
    let index_id = r.u32()?;
    Some(Job {
        id,
        kind,
        description,
        user,
        status,
        running_status,
        created,
        finished,
        modified,
        fraction_completed,
        error,
        coordinator,
        table_id,
        index_id,
    })
}

/// The columns of `SHOW JOBS` (CockroachDB's, less `statement` and `started`).
pub fn columns() -> Vec<Column> {
    let col = |name: &str, ty| Column {
        name: name.into(),
        ty,
    };
    vec![
        col("job_id", SqlType::Int8),
        col("job_type", SqlType::Text),
        col("description", SqlType::Text),
        col("user_name", SqlType::Text),
        col("status", SqlType::Text),
        col("running_status", SqlType::Text),
        col("created", SqlType::TimestampTz),
        col("finished", SqlType::TimestampTz),
        col("modified", SqlType::TimestampTz),
        col("fraction_completed", SqlType::Float8),
        col("error", SqlType::Text),
        col("coordinator_id", SqlType::Int8),
    ]
}

/// A job as a `SHOW JOBS` row.
pub fn row(j: &Job) -> Vec<Datum> {
    let text = |s: &str| {
        if s.is_empty() {
            Datum::Null
        } else {
            Datum::Text(s.to_string())
        }
    };
    vec![
        Datum::Int(j.id as i64),
        Datum::Text(j.kind.clone()),
        Datum::Text(j.description.clone()),
        Datum::Text(j.user.clone()),
        Datum::Text(j.status.name().into()),
        text(&j.running_status),
        Datum::TimestampTz(j.created),
        j.finished.map_or(Datum::Null, Datum::TimestampTz),
        Datum::TimestampTz(j.modified),
        Datum::Float(j.fraction_completed),
        text(&j.error),
        Datum::Int(j.coordinator as i64),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_record_round_trips_and_garbage_is_refused() {
        let j = Job {
            id: 42,
            kind: "CREATE INDEX".into(),
            description: "CREATE INDEX ON t (v)".into(),
            user: "root".into(),
            status: Status::Failed,
            running_status: String::new(),
            created: 1_700_000_000_000_000,
            finished: Some(1_700_000_000_500_000),
            modified: 1_700_000_000_400_000,
            fraction_completed: 0.25,
            error: "could not create unique index \"t_v_key\"".into(),
            coordinator: 3,
            table_id: 60,
            index_id: 4,
        };
        let b = encode(&j);
        assert_eq!(decode(&b), Some(j.clone()));
        let running = Job {
            finished: None,
            status: Status::Running,
            ..j
        };
        assert_eq!(decode(&encode(&running)), Some(running));
        for cut in 0..b.len() {
            assert_eq!(decode(&b[..cut]), None, "a record cut at {cut} decoded");
        }
        assert_eq!(decode(&[9, 1, 2]), None);
    }
}
