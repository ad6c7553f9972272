//! Criterion benchmarks of the channels between and within cores: the round trip of one
//! message through glommio's `shared_channel` (the bounded SPSC channel of the node's core
//! mesh, src/node/mod.rs) between two executors on two threads, and, as a baseline, through
//! `local_channel` between two tasks of one executor.
//!
//! Cross-executor: `shared_channel::new_bounded(4096)` each way, an echo executor on its
//! own thread; unpinned (`Placement::Unbound`, the node's default) and pinned (CPU 0 for
//! this thread, CPU 1 for the echo: `chitin start --pin`), each with executors that park at
//! once when idle and with the node's `spin_before_park(50 µs)`.
//!
//! Note: glommio 0.9 silently ignores `spin_before_park` on an executor that is not bound
//! to a CPU (`LocalExecutor::new` sets it to `None` without a CPU binding), so the unpinned
//! `spin_50us` variant measures the same thing as `parked`. The pinned variants run last,
//! because pinning binds Criterion's thread to CPU 0 for the rest of the process.
//!
//! Run: `cargo bench -p chitin-bench --bench spsc`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::channels::local_channel;
use glommio::channels::shared_channel::{self, ConnectedReceiver, ConnectedSender};
use glommio::{ExecutorJoinHandle, LocalExecutor, LocalExecutorBuilder, Placement};

fn builder(name: &str, placement: Placement, spin: Option<Duration>) -> LocalExecutorBuilder {
    let b = LocalExecutorBuilder::new(placement)
        .name(name)
        .io_memory(1 << 20);
    match spin {
        Some(s) => b.spin_before_park(s),
        None => b,
    }
}

/// This thread's executor connected to an echo executor on another thread.
struct CrossCore {
    ex: LocalExecutor,
    ends: Option<(ConnectedSender<u64>, ConnectedReceiver<u64>)>,
    echo: Option<ExecutorJoinHandle<()>>,
}

impl CrossCore {
    /// `cpus`: the CPUs of this thread and of the echo thread, or `None` for unbound.
    fn new(cpus: Option<(usize, usize)>, spin: Option<Duration>) -> CrossCore {
        let (main_at, echo_at) = match cpus {
            Some((m, e)) => (Placement::Fixed(m), Placement::Fixed(e)),
            None => (Placement::Unbound, Placement::Unbound),
        };
        let (to_echo, from_main) = shared_channel::new_bounded::<u64>(4096);
        let (to_main, from_echo) = shared_channel::new_bounded::<u64>(4096);
        let echo = builder("spsc-echo", echo_at, spin)
            .spawn(move || async move {
                let rx = from_main.connect().await;
                let tx = to_main.connect().await;
                while let Some(v) = rx.recv().await {
                    if tx.send(v + 1).await.is_err() {
                        break;
                    }
                }
            })
            .expect("spawn echo executor");
        let ex = builder("spsc-main", main_at, spin)
            .make()
            .expect("executor");
        let ends = ex.run(async { (to_echo.connect().await, from_echo.connect().await) });
        CrossCore {
            ex,
            ends: Some(ends),
            echo: Some(echo),
        }
    }

    fn round_trips(&self, iters: u64) -> Duration {
        let (tx, rx) = self.ends.as_ref().unwrap();
        self.ex.run(async {
            let t = Instant::now();
            for i in 0..iters {
                tx.send(i).await.expect("send");
                assert_eq!(rx.recv().await, Some(i + 1));
            }
            t.elapsed()
        })
    }
}

impl Drop for CrossCore {
    fn drop(&mut self) {
        // Closing our sender ends the echo loop.
        let ends = self.ends.take();
        self.ex.run(async move { drop(ends) });
        if let Some(h) = self.echo.take() {
            let _ = h.join();
        }
    }
}

fn spsc(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc_round_trip");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    let ex = builder("spsc-local", Placement::Unbound, None)
        .make()
        .expect("executor");
    g.bench_function("local_channel_same_executor", |b| {
        b.iter_custom(|iters| {
            ex.run(async {
                let (to_echo, from_main) = local_channel::new_bounded::<u64>(4096);
                let (to_main, from_echo) = local_channel::new_bounded::<u64>(4096);
                let echo = glommio::spawn_local(async move {
                    while let Some(v) = from_main.recv().await {
                        if to_main.send(v + 1).await.is_err() {
                            break;
                        }
                    }
                });
                let t = Instant::now();
                for i in 0..iters {
                    to_echo.send(i).await.expect("send");
                    assert_eq!(from_echo.recv().await, Some(i + 1));
                }
                let el = t.elapsed();
                drop(to_echo);
                echo.await;
                el
            })
        })
    });
    let spin = Some(Duration::from_micros(50));
    for (name, cpus, spin) in [
        ("unpinned_parked", None, None),
        ("unpinned_spin_50us", None, spin),
        ("pinned_parked", Some((0, 1)), None),
        ("pinned_spin_50us", Some((0, 1)), spin),
    ] {
        let cc = CrossCore::new(cpus, spin);
        g.bench_function(
            BenchmarkId::new("shared_channel_cross_executor", name),
            |b| b.iter_custom(|iters| cc.round_trips(iters)),
        );
    }
    g.finish();
}

criterion_group!(benches, spsc);
criterion_main!(benches);
