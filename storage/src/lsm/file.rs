//! The file layer: every byte the LSM reads or writes goes through here, on glommio
//! `DmaFile`s (O_DIRECT, io_uring). Whole files are written once, from an aligned buffer,
//! and fdatasync'd; reads are positional and any short read is an error.
//!
//! `std::fs` appears only off the data path: creating and listing the directory at open,
//! and unlinking dead files. (The Direct I/O probe file is `crate::prime_direct_io`'s.)

use std::path::{Path, PathBuf};

use glommio::io::{Directory, DmaFile};

use crate::{Error, Result};

/// Files are written in multiples of this (the O_DIRECT alignment of every common device).
pub const ALIGN: usize = 4096;
/// Largest single write submitted.
const WRITE_CHUNK: usize = 1 << 20;

/// Writes `bytes` (a multiple of [`ALIGN`] long) as the whole of a new file at `path`,
/// and fdatasyncs it. Not visible to recovery until a manifest names it.
pub async fn write_whole_file(path: &Path, bytes: &[u8]) -> Result<()> {
    assert!(
        bytes.len().is_multiple_of(ALIGN),
        "invariant: whole files are written aligned"
    );
    faults::check("create", path)?;
    faults::unsynced(path);
    let f = DmaFile::create(path)
        .await
        .map_err(|e| Error::glommio("create", path, e))?;
    let mut pos = 0usize;
    while pos < bytes.len() {
        faults::check("write", path)?;
        let n = (bytes.len() - pos).min(WRITE_CHUNK);
        let mut buf = f.alloc_dma_buffer(n);
        buf.as_bytes_mut().copy_from_slice(&bytes[pos..pos + n]);
        let written = f
            .write_at(buf, pos as u64)
            .await
            .map_err(|e| Error::glommio("write", path, e))?;
        if written == 0 || written % ALIGN != 0 {
            return Err(Error::io(
                "write",
                path,
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write of {written} bytes"),
                ),
            ));
        }
        pos += written;
        glommio::yield_if_needed().await;
    }
    faults::check("fdatasync", path)?;
    f.fdatasync()
        .await
        .map_err(|e| Error::glommio("fdatasync", path, e))?;
    faults::synced(path);
    f.close()
        .await
        .map_err(|e| Error::glommio("close", path, e))?;
    Ok(())
}

/// Opens an existing file for reading.
pub async fn open_read(path: &Path) -> Result<DmaFile> {
    DmaFile::open(path)
        .await
        .map_err(|e| Error::glommio("open", path, e))
}

/// Reads exactly `len` bytes at `offset`; a short read means the file is shorter than its
/// own metadata says, which is corruption.
pub async fn read_exact(f: &DmaFile, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    faults::check("read", path)?;
    let r = f
        .read_at(offset, len)
        .await
        .map_err(|e| Error::glommio("read", path, e))?;
    if r.len() != len {
        return Err(Error::Corruption {
            path: path.to_path_buf(),
            offset,
            detail: format!("short read: {} of {len} bytes", r.len()),
        });
    }
    Ok(r.to_vec())
}

/// Reads a block followed by its crc32 and verifies it.
pub async fn read_checked(f: &DmaFile, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut raw = read_exact(f, path, offset, len + 4).await?;
    let crc = u32::from_le_bytes(raw[len..].try_into().unwrap());
    raw.truncate(len);
    if crc32fast::hash(&raw) != crc {
        return Err(Error::Corruption {
            path: path.to_path_buf(),
            offset,
            detail: format!("block checksum mismatch ({len} bytes)"),
        });
    }
    Ok(raw)
}

/// Renames `from` to `to` and makes the rename durable (fsync of the directory).
pub async fn rename_durable(dir: &Path, from: &Path, to: &Path) -> Result<()> {
    faults::check("rename", from)?;
    faults::renaming(to);
    glommio::io::rename(from, to)
        .await
        .map_err(|e| Error::glommio("rename", from, e))?;
    faults::check("fsync dir", dir)?;
    sync_dir(dir).await?;
    faults::renamed(to);
    Ok(())
}

pub async fn sync_dir(dir: &Path) -> Result<()> {
    let d = Directory::open(dir)
        .await
        .map_err(|e| Error::glommio("open dir", dir, e))?;
    d.sync()
        .await
        .map_err(|e| Error::glommio("fsync dir", dir, e))?;
    d.close()
        .await
        .map_err(|e| Error::glommio("close dir", dir, e))?;
    Ok(())
}

/// Pads `buf` with zeros to a multiple of [`ALIGN`], leaving room for `tail` more bytes.
pub fn pad_for_tail(buf: &mut Vec<u8>, tail: usize) {
    let total = (buf.len() + tail).div_ceil(ALIGN) * ALIGN;
    buf.resize(total - tail, 0);
}

pub fn sst_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:06}.sst"))
}

/// A fault-injecting layer for the crash tests: after a chosen number of I/O calls every
/// call fails, as if the process had died there; `faults::recover` then loses what a
/// real crash may lose (the contents of files never fdatasync'd, renames whose directory
/// was never fsync'd) before the engine is opened again. Compiles to nothing outside tests.
pub mod faults {
    #[cfg(test)]
    pub use imp::*;
    #[cfg(not(test))]
    pub use noop::*;

    #[cfg(not(test))]
    mod noop {
        use std::path::Path;

        #[inline(always)]
        pub fn check(_: &'static str, _: &Path) -> crate::Result<()> {
            Ok(())
        }
        #[inline(always)]
        pub fn unsynced(_: &Path) {}
        #[inline(always)]
        pub fn synced(_: &Path) {}
        #[inline(always)]
        pub fn renaming(_: &Path) {}
        #[inline(always)]
        pub fn renamed(_: &Path) {}
    }

    #[cfg(test)]
    mod imp {
        use std::cell::RefCell;
        use std::path::{Path, PathBuf};

        use crate::{Error, Result};

        #[derive(Default)]
        struct State {
            countdown: Option<u64>,
            crashed: bool,
            unsynced: Vec<PathBuf>,
            /// Renames not yet made durable: the target and its previous contents.
            renames: Vec<(PathBuf, Option<Vec<u8>>)>,
        }

        thread_local! {
            static STATE: RefCell<State> = RefCell::new(State::default());
        }

        /// Crashes at the `n`-th I/O call from now (0 = the next one).
        pub fn arm(n: u64) {
            STATE.with(|s| s.borrow_mut().countdown = Some(n));
        }

        pub fn crashed() -> bool {
            STATE.with(|s| s.borrow().crashed)
        }

        pub fn check(op: &'static str, path: &Path) -> Result<()> {
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                if let Some(n) = s.countdown {
                    if n == 0 {
                        s.crashed = true;
                        s.countdown = None;
                    } else {
                        s.countdown = Some(n - 1);
                    }
                }
                if s.crashed {
                    Err(Error::io(op, path, std::io::Error::other("injected crash")))
                } else {
                    Ok(())
                }
            })
        }

        pub fn unsynced(path: &Path) {
            STATE.with(|s| s.borrow_mut().unsynced.push(path.to_path_buf()));
        }

        pub fn synced(path: &Path) {
            STATE.with(|s| s.borrow_mut().unsynced.retain(|p| p != path));
        }

        pub fn renaming(to: &Path) {
            let old = std::fs::read(to).ok();
            STATE.with(|s| s.borrow_mut().renames.push((to.to_path_buf(), old)));
        }

        pub fn renamed(to: &Path) {
            STATE.with(|s| s.borrow_mut().renames.retain(|(p, _)| p != to));
        }

        /// Applies what the crash lost (each loss decided by `coin`), and disarms.
        pub fn recover(mut coin: impl FnMut() -> bool) {
            let st = STATE.with(|s| std::mem::take(&mut *s.borrow_mut()));
            for p in st.unsynced {
                if let Ok(len) = std::fs::metadata(&p).map(|m| m.len()) {
                    // Unsynced data: torn, lost entirely, or (by luck) all there.
                    if coin() {
                        let _ = std::fs::write(&p, vec![0u8; (len / 2) as usize]);
                    } else if coin() {
                        let _ = std::fs::write(&p, b"");
                    }
                }
            }
            for (p, old) in st.renames.into_iter().rev() {
                if coin() {
                    match old {
                        Some(b) => {
                            let _ = std::fs::write(&p, b);
                        }
                        None => {
                            let _ = std::fs::remove_file(&p);
                        }
                    }
                }
            }
        }
    }
}
