//! Test scaffolding: run an async test body on a glommio executor of its own, in a fresh
//! temporary directory that is removed afterwards, with a time limit.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// How long one test may run before it is declared hung.
const TIME_LIMIT: Duration = Duration::from_secs(180);

/// Runs `body(dir)` on a new `LocalExecutor` in its own thread, with `dir` a unique empty
/// directory; panics (re-raising the body's panic) on failure or after [`TIME_LIMIT`], and
/// removes `dir` at the end.
pub(crate) fn run_in_dir<F, Fut>(name: &str, body: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let dir = std::env::temp_dir().join(format!(
        "chitin-test-{name}-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread_name = name.to_string();
    let handle = std::thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            let ex = LocalExecutorBuilder::new(Placement::Unbound)
                .name(&thread_name)
                .io_memory(1 << 20)
                .make()
                .expect("build executor");
            ex.run(body(d));
            let _ = tx.send(());
        })
        .unwrap();
    let outcome = rx.recv_timeout(TIME_LIMIT);
    if outcome.is_err() && !handle.is_finished() {
        panic!("test {name} exceeded {TIME_LIMIT:?} (directory left at {dir:?})");
    }
    let joined = handle.join();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = joined {
        std::panic::resume_unwind(panic);
    }
}

/// A small deterministic PRNG (xorshift64*) so model tests replay from a seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}
