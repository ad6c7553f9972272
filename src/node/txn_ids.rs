//! Transaction ids that are never handed out twice, not even across restarts.
//!
//! An id is `node << 40 | n`. Ids outlive their transaction: a recoverer's ABORTED record
//! stays in the system range for good (it is what stops the coordinator's late STAGING
//! insert), and a participant that answered a recovery refuses that id's prepare from then
//! on. A restarted node that counted from 1 again would meet those with a new transaction
//! and fail it for no reason. So the node reserves ids in blocks: the file `txn-id-floor`
//! in the store holds the low 40 bits of the first id not yet reserved, made durable
//! before any id below it is used; a restart continues from there.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::NodeShared;
use crate::error::{Error, Result};

const FILE: &str = "txn-id-floor";
const LOW: u64 = (1 << 40) - 1;
/// Ids reserved per write of the floor file (16 M: at 100 k transactions per second, one
/// fdatasync every 2.8 minutes).
pub const BLOCK: u64 = 1 << 24;

fn io(e: std::io::Error) -> Error {
    Error::internal(format!("transaction id floor: {e}"))
}

fn read_floor(store: &Path) -> Result<u64> {
    match std::fs::read_to_string(store.join(FILE)) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|e| Error::internal(format!("transaction id floor {s:?}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io(e)),
    }
}

fn write_floor(store: &Path, floor: u64) -> Result<()> {
    crate::cluster::write_durably(store, FILE, format!("{floor}\n").as_bytes()).map_err(io)
}

/// Moves the node's id counter past every id a previous run of this store may have used
/// (its node id in the high bits, `node`), and reserves the next block.
pub fn start(shared: &NodeShared, node: u64) -> Result<()> {
    let floor = read_floor(&shared.store_dir)?.max(1);
    let base = node << 40;
    let next = shared
        .next_txn
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
            Some(cur.max(base | floor))
        })
        .map_or(base | floor, |prev| prev.max(base | floor));
    reserve(shared, next)
}

fn reserve(shared: &NodeShared, next: u64) -> Result<()> {
    let limit = ((next & LOW) + BLOCK).min(LOW);
    write_floor(&shared.store_dir, limit)?;
    shared
        .txn_id_limit
        .store((next & !LOW) | limit, Ordering::SeqCst);
    Ok(())
}

/// Reserves another block once fewer than half of the current one remain. Runs on core
/// 0 every 50 ms, far more often than a block can run out.
pub fn extend(shared: &NodeShared) -> Result<()> {
    let next = shared.next_txn.load(Ordering::SeqCst);
    let limit = shared.txn_id_limit.load(Ordering::SeqCst);
    if limit == 0 || next + BLOCK / 2 < limit {
        return Ok(());
    }
    reserve(shared, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_round_trips_and_defaults_to_zero() {
        let dir = std::env::temp_dir().join(format!("chitin-txn-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_floor(&dir).unwrap(), 0);
        write_floor(&dir, 12345).unwrap();
        assert_eq!(read_floor(&dir).unwrap(), 12345);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
