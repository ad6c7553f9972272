//! chitin-tools: debug command-line tools that read a node's files directly (offline).
//!
//! - `chitin-logdump DIR`: every segment of a core's raft log (`STORE/core-N/raft`) and
//!   every record in it, one line each, up to where the records end and why there. Read
//!   only: nothing is replayed, cut or deleted.
//!
//! Implementation caveats: no SST dump or key decoder yet.

use std::fmt::Write as _;
use std::path::Path;

/// Renders the raft log in `dir` as text (runs its own glommio executor).
pub fn dump_raft_log(dir: &Path) -> Result<String, chitin_storage::Error> {
    let dir = dir.to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let segments = chitin_storage::raftlog::inspect(&dir).await?;
            let mut out = String::new();
            for s in segments {
                let _ = writeln!(
                    out,
                    "segment {} ({}, {} bytes): {} records, end at {} ({})",
                    s.seq,
                    s.path.display(),
                    s.size,
                    s.records.len(),
                    s.end,
                    s.end_reason
                );
                for r in s.records {
                    let _ = writeln!(
                        out,
                        "  @{:<10} {:>6} B  {}  {}",
                        r.offset, r.len, r.range, r.summary
                    );
                }
            }
            Ok(out)
        })
        .map_err(|e| {
            chitin_storage::Error::io("start executor", "", std::io::Error::other(e.to_string()))
        })?
        .join()
        .map_err(|e| {
            chitin_storage::Error::io("join executor", "", std::io::Error::other(e.to_string()))
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_an_empty_directory() {
        let dir = std::env::temp_dir().join(format!("chitin-logdump-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dump_raft_log(&dir).unwrap();
        assert_eq!(out, "");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
