//! Two-executor tests of the transport over 127.0.0.1: each "server" node runs in its own
//! thread with its own glommio executor, a `Transport` and an accept loop; the test body
//! runs as the client node in another executor. Every test is bounded by a timeout.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chitin_net::wire::{Frame, Handshake, HandshakeAck, Heartbeat};
use chitin_net::{
    CoreId, Endpoint, Error, NodeId, Transport, TransportHandler, TransportOptions, TransportStats,
};
use futures_lite::future::BoxedLocal;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

const CLIENT: Endpoint = Endpoint {
    node: NodeId(1),
    core: CoreId(0),
};
const SERVER: Endpoint = Endpoint {
    node: NodeId(2),
    core: CoreId(0),
};

/// Request methods the test handler knows.
const ECHO: u32 = 1;
const FAIL: u32 = 2;
/// Sleeps for the number of milliseconds in the payload's first byte, then echoes.
const SLOW: u32 = 3;

enum Command {
    Partition(NodeId),
    Heal(NodeId),
}

/// What a server node shares with the test thread.
impl ServerState {
    fn command(&self, cmd: Command) {
        self.commands.lock().unwrap().push_back(cmd);
    }
}

#[derive(Default)]
struct ServerState {
    raft: Mutex<Vec<(Endpoint, u64, Bytes)>>,
    commands: Mutex<VecDeque<Command>>,
    stats: Mutex<TransportStats>,
    stop: AtomicBool,
}

struct Server {
    addr: SocketAddr,
    state: Arc<ServerState>,
    thread: Option<JoinHandle<()>>,
}

struct Handler(Arc<ServerState>);

impl TransportHandler for Handler {
    fn on_raft(&self, from: Endpoint, range_id: u64, message: Bytes) {
        self.0.raft.lock().unwrap().push((from, range_id, message));
    }

    fn on_request(
        &self,
        _from: Endpoint,
        method: u32,
        payload: Bytes,
    ) -> BoxedLocal<Result<Bytes, String>> {
        Box::pin(async move {
            match method {
                ECHO => Ok(payload),
                FAIL => Err(format!(
                    "no such thing: {}",
                    String::from_utf8_lossy(&payload)
                )),
                SLOW => {
                    let ms = payload.first().copied().unwrap_or(0);
                    glommio::timer::sleep(Duration::from_millis(ms as u64)).await;
                    Ok(payload)
                }
                _ => Err("unknown method".into()),
            }
        })
    }
}

fn executor(name: &str) -> LocalExecutorBuilder {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(256 << 10)
}

impl Server {
    /// Starts node 2 on `port` (0 = any).
    fn start(port: u16) -> std::io::Result<Server> {
        Server::start_with(port, false)
    }

    /// With `handoff`, the accept loop reads the handshake itself and serves the socket
    /// through the detach/attach path a node uses to hand a socket to another core.
    fn start_with(port: u16, handoff: bool) -> std::io::Result<Server> {
        let state = Arc::new(ServerState::default());
        let (tx, rx) = mpsc::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            executor("server")
                .spawn(move || async move {
                    let listener = match TcpListener::bind(("127.0.0.1", port)) {
                        Ok(l) => l,
                        Err(e) => {
                            tx.send(Err(std::io::Error::other(e.to_string()))).unwrap();
                            return;
                        }
                    };
                    tx.send(Ok(listener.local_addr().unwrap())).unwrap();
                    let transport = Transport::new(SERVER, TransportOptions::default());
                    let handler: Rc<dyn TransportHandler> = Rc::new(Handler(st.clone()));
                    let accept = {
                        let transport = transport.clone();
                        async move {
                            loop {
                                let Ok(mut stream) = listener.accept().await else {
                                    continue;
                                };
                                if !handoff {
                                    transport.accept(stream, handler.clone());
                                    continue;
                                }
                                let Ok(hs) = Handshake::read_exact_from(&mut stream).await else {
                                    continue;
                                };
                                let std_stream = chitin_net::detach_stream(stream).unwrap();
                                transport.serve_std(std_stream, hs, handler.clone());
                            }
                        }
                    };
                    let control = async {
                        while !st.stop.load(Ordering::SeqCst) {
                            while let Some(cmd) = st.commands.lock().unwrap().pop_front() {
                                match cmd {
                                    Command::Partition(n) => transport.fault().partition(n),
                                    Command::Heal(n) => transport.fault().heal(n),
                                }
                            }
                            *st.stats.lock().unwrap() = transport.stats();
                            glommio::timer::sleep(Duration::from_millis(2)).await;
                        }
                    };
                    futures_lite::future::or(accept, control).await;
                    transport.close().await;
                    assert_eq!(transport.task_count(), 0);
                })
                .unwrap()
                .join()
                .unwrap();
        });
        let addr = rx.recv().unwrap()?;
        Ok(Server {
            addr,
            state,
            thread: Some(thread),
        })
    }

    fn received(&self) -> Vec<(Endpoint, u64, Bytes)> {
        self.state.raft.lock().unwrap().clone()
    }

    fn stats(&self) -> TransportStats {
        self.state.stats.lock().unwrap().clone()
    }

    fn stop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `body` as the client node in its own executor, failing the test after `limit`.
fn run_client<F, Fut>(limit: Duration, body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    executor("client")
        .spawn(move || async move {
            let timed_out = futures_lite::future::or(
                async {
                    body().await;
                    false
                },
                async {
                    glommio::timer::sleep(limit).await;
                    true
                },
            )
            .await;
            assert!(!timed_out, "test exceeded {limit:?}");
        })
        .unwrap()
        .join()
        .unwrap();
}

fn client(server: SocketAddr) -> Transport {
    client_with(server, TransportOptions::default())
}

fn client_with(server: SocketAddr, options: TransportOptions) -> Transport {
    let t = Transport::new(CLIENT, options);
    t.set_peer_addr(SERVER.node, server);
    t
}

/// Polls `cond` every 2 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    cond()
}

const WAIT: Duration = Duration::from_secs(5);
const LIMIT: Duration = Duration::from_secs(20);

fn seq(i: u32) -> Bytes {
    Bytes::copy_from_slice(&i.to_le_bytes())
}

#[test]
fn raft_is_delivered_in_order_and_batched() {
    let server = Server::start(0).unwrap();
    let addr = server.addr;
    let state = server.state.clone();
    run_client(LIMIT, move || async move {
        let t = client(addr);
        // All sends happen before the writer task runs, so they must leave as few frames.
        for i in 0..1000u32 {
            assert!(t.send_raft(SERVER, (i % 7) as u64, seq(i)));
        }
        assert_eq!(t.stats().queue_depth, vec![(SERVER, 1000)]);
        assert!(eventually(WAIT, || state.raft.lock().unwrap().len() == 1000).await);
        // Then a trickle, one message at a time.
        for i in 1000..1100u32 {
            t.send_raft(SERVER, 1, seq(i));
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
        assert!(eventually(WAIT, || state.raft.lock().unwrap().len() == 1100).await);
        let stats = t.stats();
        assert_eq!(stats.raft_sent, 1100);
        assert!(stats.frames_sent < 1000, "no batching: {stats:?}");
        assert_eq!(stats.dials, 1);
        assert_eq!(stats.queue_depth, vec![(SERVER, 0)]);
        t.close().await;
        assert_eq!(t.task_count(), 0);
    });
    let got = server.received();
    for (i, (from, range, msg)) in got.iter().enumerate() {
        assert_eq!(*from, CLIENT);
        assert_eq!(
            msg.as_ref(),
            &(i as u32).to_le_bytes(),
            "message {i} out of order"
        );
        if i < 1000 {
            assert_eq!(*range, (i % 7) as u64);
        }
    }
    // The first 1000 arrived in a handful of frames on the server side too.
    assert!(eventually_blocking(|| server.stats().raft_received == 1100));
    let s = server.stats();
    assert!(s.frames_received < 1000, "{s:?}");
}

#[test]
fn raft_queue_full_drops_and_counts() {
    let server = Server::start(0).unwrap();
    let addr = server.addr;
    let state = server.state.clone();
    run_client(LIMIT, move || async move {
        let opts = TransportOptions {
            raft_queue_len: 10,
            ..Default::default()
        };
        let t = client_with(addr, opts);
        let queued = (0..25u32)
            .filter(|i| t.send_raft(SERVER, 1, seq(*i)))
            .count();
        assert_eq!(queued, 10);
        assert_eq!(t.stats().raft_dropped_queue_full, 15);
        assert!(eventually(WAIT, || state.raft.lock().unwrap().len() == 10).await);
        t.close().await;
    });
}

#[test]
fn call_round_trip_remote_error_and_heartbeat() {
    // Served through the hand-off path (detach to a std socket, attach, serve).
    let server = Server::start_with(0, true).unwrap();
    let addr = server.addr;
    run_client(LIMIT, move || async move {
        let t = client(addr);
        t.set_epoch(7);
        let got = t
            .call(SERVER, ECHO, Bytes::from_static(b"hello"), WAIT)
            .await
            .unwrap();
        assert_eq!(got.as_ref(), b"hello");

        let err = t
            .call(SERVER, FAIL, Bytes::from_static(b"k"), WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Remote(m) if m == "no such thing: k"),
            "{err:?}"
        );

        // Many concurrent calls multiplexed on one connection, answered out of order.
        let mut tasks = Vec::new();
        for i in 0..50u8 {
            let t = t.clone();
            tasks.push(glommio::spawn_local(async move {
                let payload = Bytes::from(vec![50 - i, i]);
                let got = t.call(SERVER, SLOW, payload.clone(), WAIT).await.unwrap();
                assert_eq!(got, payload);
            }));
        }
        for task in tasks {
            task.await;
        }

        let before = Instant::now();
        let reply = t.heartbeat(SERVER, WAIT).await.unwrap();
        assert_eq!(reply.node_id, SERVER.node.0);
        assert!(t.last_heard(SERVER.node).unwrap() >= before);
        assert!(t.last_heard(NodeId(99)).is_none());
        let stats = t.stats();
        assert_eq!((stats.calls_ok, stats.calls_failed), (52, 1));
        assert_eq!(stats.dials, 1);
        t.close().await;
    });
}

#[test]
fn call_timeout_then_connection_still_works() {
    let server = Server::start(0).unwrap();
    let addr = server.addr;
    run_client(LIMIT, move || async move {
        let t = client(addr);
        let err = t
            .call(
                SERVER,
                SLOW,
                Bytes::from(vec![200u8]),
                Duration::from_millis(30),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
        // The late reply is dropped; the connection serves the next call.
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let got = t
            .call(SERVER, ECHO, Bytes::from_static(b"x"), WAIT)
            .await
            .unwrap();
        assert_eq!(got.as_ref(), b"x");
        assert_eq!(t.stats().dials, 1);
        t.close().await;
    });
}

#[test]
fn unreachable_and_unknown_destinations_are_unavailable() {
    // A port with nothing listening: bind, note the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    run_client(LIMIT, move || async move {
        let t = client(dead);
        let err = t.call(SERVER, ECHO, Bytes::new(), WAIT).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
        assert!(err.is_retryable());
        let err = t
            .call((NodeId(5), CoreId(0)), ECHO, Bytes::new(), WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("no address")),
            "{err:?}"
        );
        assert!(t.stats().dial_failures >= 2);
        t.close().await;
        assert_eq!(t.task_count(), 0);
        let err = t.call(SERVER, ECHO, Bytes::new(), WAIT).await.unwrap_err();
        assert!(matches!(err, Error::Closed));
        assert!(!t.send_raft(SERVER, 1, Bytes::new()));
    });
}

/// Opens a raw connection, optionally with a valid handshake, writes `bytes`, and returns
/// whether the server closed the connection (EOF or reset) within 5 s.
fn raw_connection_closed(addr: SocketAddr, handshake: bool, bytes: &[u8]) -> bool {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if handshake {
        s.write_all(&Handshake::new(0, Endpoint::new(NodeId(9), CoreId(0)), SERVER).encode())
            .unwrap();
        let mut ack = [0u8];
        s.read_exact(&mut ack).unwrap();
        assert_eq!(
            HandshakeAck::from_byte(ack[0]),
            Some(HandshakeAck::Accepted)
        );
    }
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn bad_input_closes_only_that_connection() {
    let server = Server::start(0).unwrap();
    let addr = server.addr;
    let state = server.state.clone();
    run_client(LIMIT, move || async move {
        let t = client(addr);
        t.send_raft(SERVER, 1, seq(0));
        assert!(eventually(WAIT, || state.raft.lock().unwrap().len() == 1).await);

        // Raw sockets block, so drive them from a plain thread.
        let raw = std::thread::spawn(move || {
            let mut heartbeat = Vec::new();
            let hb = Frame {
                body: Some(chitin_net::wire::frame::Body::Heartbeat(
                    Heartbeat::default(),
                )),
            };
            chitin_net::frame::encode_frame(&hb, 1 << 20, &mut heartbeat).unwrap();
            [
                // Not our magic (a pgwire SSLRequest, then junk).
                raw_connection_closed(
                    addr,
                    false,
                    &[
                        0, 0, 0, 8, 4, 210, 22, 47, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                        15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33,
                        34, 35, 36,
                    ],
                ),
                // An oversize length prefix.
                raw_connection_closed(addr, true, &u32::MAX.to_le_bytes()),
                // A body that is not a frame.
                raw_connection_closed(addr, true, &[4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
                // A frame only a server may send.
                raw_connection_closed(addr, true, &{
                    let mut b = Vec::new();
                    let f = Frame {
                        body: Some(chitin_net::wire::frame::Body::Response(Default::default())),
                    };
                    chitin_net::frame::encode_frame(&f, 1 << 20, &mut b).unwrap();
                    b
                }),
                // A handshake for another core is refused.
                {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    let hs = Handshake::new(0, CLIENT, Endpoint::new(SERVER.node, CoreId(3)));
                    s.write_all(&hs.encode()).unwrap();
                    let mut ack = [0u8];
                    s.read_exact(&mut ack).unwrap();
                    HandshakeAck::from_byte(ack[0]) == Some(HandshakeAck::WrongCore)
                        && s.read(&mut ack).map(|n| n == 0).unwrap_or(true)
                },
            ]
        });
        while !raw.is_finished() {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(raw.join().unwrap(), [true; 5]);

        // The transport's own connection and the listener are unaffected.
        t.send_raft(SERVER, 1, seq(1));
        assert!(eventually(WAIT, || state.raft.lock().unwrap().len() == 2).await);
        assert_eq!(t.call(SERVER, ECHO, seq(2), WAIT).await.unwrap(), seq(2));
        assert_eq!(t.stats().dials, 1);
        t.close().await;
    });
    assert!(eventually_blocking(|| server.stats().connection_errors >= 5));
}

fn eventually_blocking(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn peer_restart_reconnects_with_backoff() {
    let mut server = Server::start(0).unwrap();
    let addr = server.addr;
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (start_tx, start_rx) = mpsc::channel::<()>();
    let (restarted_tx, restarted_rx) = mpsc::channel::<(SocketAddr, Arc<ServerState>)>();
    let first_state = server.state.clone();
    // The test thread stops and restarts the server when the client asks.
    let client_thread = std::thread::spawn(move || {
        run_client(LIMIT, move || async move {
            let opts = TransportOptions {
                backoff_initial: Duration::from_millis(10),
                backoff_max: Duration::from_millis(100),
                connect_timeout: Duration::from_millis(200),
                handshake_timeout: Duration::from_millis(200),
                ..Default::default()
            };
            let t = client_with(addr, opts);
            t.send_raft(SERVER, 1, seq(0));
            assert!(eventually(WAIT, || first_state.raft.lock().unwrap().len() == 1).await);
            // A slow call that the shutdown interrupts: it fails as Unavailable.
            let slow = {
                let t = t.clone();
                glommio::spawn_local(async move {
                    t.call(SERVER, SLOW, Bytes::from(vec![250u8]), WAIT).await
                })
            };
            glommio::timer::sleep(Duration::from_millis(20)).await;
            stop_tx.send(()).unwrap();
            let err = slow.await.unwrap_err();
            assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
            // While the peer is down, dials fail and back off; queued raft messages wait.
            t.send_raft(SERVER, 1, seq(1));
            assert!(eventually(WAIT, || t.stats().dial_failures >= 3).await);
            start_tx.send(()).unwrap();
            let (new_addr, state) = loop {
                if let Ok(x) = restarted_rx.try_recv() {
                    break x;
                }
                glommio::timer::sleep(Duration::from_millis(5)).await;
            };
            t.set_peer_addr(SERVER.node, new_addr);
            // Messages sent after the restart arrive; the one queued during the outage
            // may or may not (it stays queued, so here it normally does).
            t.send_raft(SERVER, 1, seq(2));
            assert!(
                eventually(WAIT, || {
                    state
                        .raft
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|(_, _, m)| *m == seq(2))
                })
                .await
            );
            assert_eq!(t.call(SERVER, ECHO, seq(3), WAIT).await.unwrap(), seq(3));
            let stats = t.stats();
            assert_eq!(stats.reconnects, 1, "{stats:?}");
            assert_eq!(stats.dials, 2);
            t.close().await;
        });
    });
    stop_rx.recv().unwrap();
    server.stop();
    start_rx.recv().unwrap();
    // Same port if the OS allows, else a new one (the client learns it like a node would).
    let server2 = Server::start(addr.port())
        .or_else(|_| Server::start(0))
        .unwrap();
    restarted_tx
        .send((server2.addr, server2.state.clone()))
        .unwrap();
    client_thread.join().unwrap();
    let got = server2.received();
    let order: Vec<_> = got.iter().map(|(_, _, m)| m.clone()).collect();
    assert!(
        order == vec![seq(1), seq(2)] || order == vec![seq(2)],
        "{order:?}"
    );
}

#[test]
fn partition_drops_both_ways_and_heal_restores() {
    let server = Server::start(0).unwrap();
    let addr = server.addr;
    let state = server.state.clone();
    let server_stats = server.state.clone();
    run_client(LIMIT, move || async move {
        let t = client(addr);
        let delivered = |n: usize| {
            let state = state.clone();
            move || state.raft.lock().unwrap().len() == n
        };
        t.send_raft(SERVER, 1, seq(0));
        assert!(eventually(WAIT, delivered(1)).await);

        // Outbound rule on the client: dropped at send.
        t.fault().partition(SERVER.node);
        assert!(!t.send_raft(SERVER, 1, seq(1)));
        let err = t
            .call(SERVER, ECHO, seq(1), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
        assert_eq!(t.stats().raft_dropped_fault, 1);
        t.fault().heal(SERVER.node);
        t.send_raft(SERVER, 1, seq(2));
        assert!(eventually(WAIT, delivered(2)).await);

        // Inbound rule on the server: dropped at receive.
        state.command(Command::Partition(CLIENT.node));
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert!(t.send_raft(SERVER, 1, seq(3)));
        let err = t
            .call(SERVER, ECHO, seq(3), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
        assert!(
            eventually(WAIT, || server_stats
                .stats
                .lock()
                .unwrap()
                .raft_dropped_fault
                == 1)
            .await
        );
        assert_eq!(state.raft.lock().unwrap().len(), 2);
        state.command(Command::Heal(CLIENT.node));
        glommio::timer::sleep(Duration::from_millis(20)).await;
        t.send_raft(SERVER, 1, seq(4));
        assert!(eventually(WAIT, delivered(3)).await);
        assert_eq!(t.call(SERVER, ECHO, seq(5), WAIT).await.unwrap(), seq(5));

        // Delay: messages still arrive, in order, after the delay.
        t.fault().delay(SERVER.node, Duration::from_millis(60));
        let start = Instant::now();
        assert_eq!(t.call(SERVER, ECHO, seq(6), WAIT).await.unwrap(), seq(6));
        assert!(start.elapsed() >= Duration::from_millis(60));
        t.fault().heal_all();
        t.close().await;
    });
    let got: Vec<_> = server.received().into_iter().map(|(_, _, m)| m).collect();
    assert_eq!(got, vec![seq(0), seq(2), seq(4)]);
}

#[test]
fn messages_queued_while_the_writer_is_busy_form_one_batch() {
    let server = Server::start(0).unwrap();
    let addr = server.addr;
    let state = server.state.clone();
    run_client(LIMIT, move || async move {
        let queue = glommio::executor().create_task_queue(
            glommio::Shares::default(),
            glommio::Latency::NotImportant,
            "raft-io",
        );
        let opts = TransportOptions {
            task_queue: Some(queue),
            ..Default::default()
        };
        let t = client_with(addr, opts);
        assert_eq!(t.call(SERVER, ECHO, seq(0), WAIT).await.unwrap(), seq(0));
        // The delay keeps the writer busy before its next write; everything sent meanwhile,
        // one message at a time with yields in between, must leave as one frame.
        t.fault().delay(SERVER.node, Duration::from_millis(100));
        let before = t.stats().frames_sent;
        for i in 0..50u32 {
            t.send_raft(SERVER, 1, seq(i));
            glommio::timer::sleep(Duration::from_micros(500)).await;
        }
        assert!(eventually(WAIT, || state.raft.lock().unwrap().len() == 50).await);
        let frames = t.stats().frames_sent - before;
        assert!(frames <= 2, "50 messages in {frames} frames");
        t.fault().heal_all();
        t.close().await;
    });
}

#[test]
fn in_flight_bound_then_close_fails_waiting_calls() {
    let server = Server::start(0).unwrap();
    let addr = server.addr;
    run_client(LIMIT, move || async move {
        let opts = TransportOptions {
            max_in_flight_calls: 4,
            ..Default::default()
        };
        let t = client_with(addr, opts);
        // More concurrent calls than permits: they wait, then all succeed.
        let mut tasks = Vec::new();
        for i in 0..20u8 {
            let t = t.clone();
            tasks.push(glommio::spawn_local(async move {
                t.call(SERVER, SLOW, Bytes::from(vec![5, i]), WAIT).await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().len(), 2);
        }
        // Four calls hold every permit for a long time, a fifth waits for one; close fails
        // them all with Closed rather than leaving them to time out.
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let t = t.clone();
            tasks.push(glommio::spawn_local(async move {
                t.call(SERVER, SLOW, Bytes::from(vec![250u8]), WAIT).await
            }));
        }
        glommio::timer::sleep(Duration::from_millis(30)).await;
        let start = Instant::now();
        t.close().await;
        for task in tasks {
            let err = task.await.unwrap_err();
            assert!(matches!(err, Error::Closed), "{err:?}");
        }
        assert!(start.elapsed() < Duration::from_millis(200));
        assert_eq!(t.task_count(), 0);
    });
}
