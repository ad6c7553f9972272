//! Cluster membership: who the nodes are, which of them hold replicas, and how a cluster
//! comes to be (`chitin start --join …` on every node, then `chitin init` once).
//!
//! # Bootstrap
//!
//! 1. Each node starts with `--join A,B,C` and no cluster state: its cores open their
//!    stores and listen (SQL and node transport share the port), but serve no ranges.
//! 2. `chitin init --host A` calls [`METHOD_INIT`] on A. A probes every address of its join
//!    list ([`METHOD_PROBE`], retried for a while: nodes may still be starting), numbers the
//!    nodes (itself 1, the others in join-list order), picks the replica set — the first
//!    `num_replicas` (3) nodes — and a random cluster id, sends each node its
//!    [`ClusterState`] ([`METHOD_ASSIGN`]), then adopts its own.
//! 3. A node that receives its state persists it (`cluster-state` in the store, written to
//!    a temporary file, synced, renamed) and starts serving. From then on a restart reads
//!    the file.
//!
//! `start-single-node` writes a one-node state on first start.
//!
//! # Replica sets
//!
//! [`ClusterState::voters`] are the *initial* replicas: every range is born with a replica
//! on each of them (from the shared seed, `kv::replica::RAFT_INIT_INDEX`). From then on a
//! range's replicas are its raft configuration, changed by the allocator on the range's
//! leader (`kv::store::Store::allocate`, driven once a second by `node::cluster`): a voter on
//! a node dead longer than `server.time_until_store_dead`, or decommissioning, is replaced
//! by one on the least-loaded live member in one joint-consensus change; the new replica
//! starts empty and is sent a snapshot. Each replica keeps its configuration durable in the
//! engine (`RaftStateRecord`), so a restart does not fall back to the initial set.
//!
//! # Invariants
//!
//! - A node's id never changes once persisted; an ASSIGN for another cluster is refused.
//! - Every replica of a range is on core `range % cores` of its node (DESIGN §2: a range
//!   lives on one core per node).
//! - Only an initial voter creates a range's replica for a local request; other nodes get
//!   one only when a leader adds them (they answer `NotLeader` with no hint otherwise, and
//!   the gateway asks another node).
//!
//! # Implementation caveats
//!
//! - A node started with `--join` after `init` asks a member to admit it
//!   ([`METHOD_JOIN`]): the member takes the next node id by inserting the node's record
//!   into the system range (`node::settings::member_key`; the insert fails if another join
//!   took that id, and it tries the next), adds it to its state and answers with the new
//!   node's state. Every node reads the records once a second and adds new members to its
//!   own state file. A new node holds no replica until the allocator places some there.
//! - Each node keeps its member list in its own state file; the system range's records
//!   only announce members added after `init`.
//! - Liveness is each node's own view (heartbeats from core 0 once a second), not a
//!   replicated liveness range with epochs: two leaders may briefly disagree on whether a
//!   node is dead; each only changes the ranges it leads, one change at a time.
//! - A replica removed while its node was down stays on that node, idle (no replica GC).

use std::net::SocketAddr;
use std::path::Path;

use crate::error::{Error, Result};

/// Forwarded KV request ([`crate::kv::codec`]) to the range's leader.
pub const METHOD_KV: u32 = 1;
/// Who are you: `initialized|uninitialized`, advertise address, cores.
pub const METHOD_PROBE: u32 = 100;
/// Initialize the cluster from this node (called by `chitin init`).
pub const METHOD_INIT: u32 = 101;
/// Adopt this cluster state (called by the initializing node).
pub const METHOD_ASSIGN: u32 = 102;
/// The node's cluster state and liveness view (`chitin node status`).
pub const METHOD_STATUS: u32 = 103;
/// Fault injection on this node's transports, for tests: `partition N`, `heal`.
pub const METHOD_FAULT: u32 = 104;
/// `decommission N` / `recommission N` (called by `chitin node decommission`).
pub const METHOD_DECOMMISSION: u32 = 105;
/// `ADDR CORES`: a node started with `--join` after `init` asks to be admitted; the answer
/// is its [`ClusterState`].
pub const METHOD_JOIN: u32 = 106;
/// `drain N`: node N refuses new SQL connections and moves its leases away; answered
/// once it leads no range (or after a time limit) with what is left. A node asked about
/// another forwards the request to it.
pub const METHOD_DRAIN: u32 = 107;
/// `waits`: the node's lock wait-for edges (waiter, holder) as little-endian u64 pairs, for
/// other nodes' deadlock detection ([`crate::kv::deadlock`]).
pub const METHOD_WAITS: u32 = 108;
/// One chunk of a streamed raft snapshot ([`crate::kv::snapshot`]), to the core that owns
/// the range: `range | stream id | seq | versions`; answered `ok` once spooled.
pub const METHOD_SNAPSHOT_CHUNK: u32 = 109;

/// Default replica count of a range.
pub const DEFAULT_NUM_REPLICAS: usize = 3;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub addr: SocketAddr,
    pub cores: usize,
}

/// What a node knows of its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterState {
    pub cluster_id: u64,
    /// This node's id (≥ 1).
    pub node_id: u64,
    /// The nodes holding a replica of every range.
    pub voters: Vec<u64>,
    pub members: Vec<Member>,
}

impl ClusterState {
    /// A cluster of one node.
    pub fn single(addr: SocketAddr, cores: usize) -> ClusterState {
        ClusterState {
            cluster_id: random_id(),
            node_id: 1,
            voters: vec![1],
            members: vec![Member { id: 1, addr, cores }],
        }
    }

    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// `cluster_id N\nnode_id N\nvoters 1,2,3\nmember ID ADDR CORES\n…`
    pub fn encode(&self) -> String {
        let mut s = format!(
            "cluster_id {}\nnode_id {}\nvoters {}\n",
            self.cluster_id,
            self.node_id,
            self.voters
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        for m in &self.members {
            s.push_str(&format!("member {} {} {}\n", m.id, m.addr, m.cores));
        }
        s
    }

    pub fn decode(text: &str) -> Result<ClusterState> {
        let bad = |line: &str| Error::internal(format!("corrupt cluster state line: {line:?}"));
        let mut st = ClusterState {
            cluster_id: 0,
            node_id: 0,
            voters: Vec::new(),
            members: Vec::new(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("cluster_id"), Some(v)) => {
                    st.cluster_id = v.parse().map_err(|_| bad(line))?
                }
                (Some("node_id"), Some(v)) => st.node_id = v.parse().map_err(|_| bad(line))?,
                (Some("voters"), Some(v)) => {
                    st.voters = v
                        .split(',')
                        .map(|x| x.parse().map_err(|_| bad(line)))
                        .collect::<Result<_>>()?
                }
                (Some("member"), Some(id)) => {
                    let addr = words.next().ok_or_else(|| bad(line))?;
                    let cores = words.next().ok_or_else(|| bad(line))?;
                    st.members.push(Member {
                        id: id.parse().map_err(|_| bad(line))?,
                        addr: addr.parse().map_err(|_| bad(line))?,
                        cores: cores.parse().map_err(|_| bad(line))?,
                    });
                }
                _ => return Err(bad(line)),
            }
        }
        let valid = st.cluster_id != 0
            && st.node_id != 0
            && !st.voters.is_empty()
            && st.voters.iter().all(|v| st.member(*v).is_some())
            && st.members.iter().all(|m| m.cores >= 1);
        if !valid {
            return Err(Error::internal("incomplete cluster state"));
        }
        Ok(st)
    }

    /// Reads the state persisted in `store`, if any.
    pub fn load(store: &Path) -> Result<Option<ClusterState>> {
        match std::fs::read_to_string(store.join(STATE_FILE)) {
            Ok(text) => Ok(Some(ClusterState::decode(&text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::internal(format!("cannot read cluster state: {e}"))),
        }
    }

    /// Persists the state in `store` durably (temporary file, fsync, rename, directory
    /// fsync). Cold path: blocking file I/O.
    pub fn save(&self, store: &Path) -> Result<()> {
        write_durably(store, STATE_FILE, self.encode().as_bytes())
            .map_err(|e| Error::internal(format!("cannot write cluster state: {e}")))
    }
}

/// Replaces the file `name` in the directory `dir` with `bytes`, all or nothing, across
/// crashes: written to a temporary file, synced, renamed over, and the directory synced.
pub fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

const STATE_FILE: &str = "cluster-state";

/// A random non-zero id (cluster ids): time and process mixed through splitmix64.
pub fn random_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut z = nanos ^ ((std::process::id() as u64) << 32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// A node's answer to [`METHOD_PROBE`].
#[derive(Debug, PartialEq, Eq)]
pub struct Probe {
    pub cluster_id: u64,
    pub node_id: u64,
    pub addr: SocketAddr,
    pub cores: usize,
}

impl Probe {
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.cluster_id, self.node_id, self.addr, self.cores
        )
    }

    pub fn decode(text: &str) -> Result<Probe> {
        let bad = || Error::internal(format!("bad probe answer {text:?}"));
        let w: Vec<&str> = text.split_whitespace().collect();
        if w.len() != 4 {
            return Err(bad());
        }
        Ok(Probe {
            cluster_id: w[0].parse().map_err(|_| bad())?,
            node_id: w[1].parse().map_err(|_| bad())?,
            addr: w[2].parse().map_err(|_| bad())?,
            cores: w[3].parse().map_err(|_| bad())?,
        })
    }
}

/// Numbers the nodes of a new cluster: the initializing node (`me`) is 1, the others
/// follow in the order given (duplicates of an address dropped); the first `replicas`
/// are the voters.
pub fn plan_cluster(
    me: (SocketAddr, usize),
    others: &[(SocketAddr, usize)],
    replicas: usize,
) -> ClusterState {
    let mut members = vec![Member {
        id: 1,
        addr: me.0,
        cores: me.1,
    }];
    for (addr, cores) in others {
        if members.iter().any(|m| m.addr == *addr) {
            continue;
        }
        members.push(Member {
            id: members.len() as u64 + 1,
            addr: *addr,
            cores: *cores,
        });
    }
    let voters = members.iter().take(replicas.max(1)).map(|m| m.id).collect();
    ClusterState {
        cluster_id: random_id(),
        node_id: 1,
        voters,
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let a: SocketAddr = "127.0.0.1:26257".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:26258".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:26259".parse().unwrap();
        let d: SocketAddr = "127.0.0.1:26260".parse().unwrap();
        let st = plan_cluster((a, 2), &[(b, 2), (a, 2), (c, 1), (d, 2)], 3);
        assert_eq!(st.voters, vec![1, 2, 3]);
        assert_eq!(st.members.len(), 4);
        assert_eq!(st.member(3).unwrap().addr, c);
        assert_eq!(ClusterState::decode(&st.encode()).unwrap(), st);
        assert!(
            ClusterState::decode("cluster_id 1\nnode_id 1\nvoters 2\nmember 1 127.0.0.1:1 1")
                .is_err()
        );
        assert!(ClusterState::decode("cluster_id x").is_err());
        assert!(ClusterState::decode("").is_err());
        let p = Probe {
            cluster_id: 0,
            node_id: 0,
            addr: a,
            cores: 2,
        };
        assert_eq!(Probe::decode(&p.encode()).unwrap(), p);
    }
}
