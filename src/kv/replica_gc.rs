//! Replica GC: destroying replicas their group no longer has.
//!
//! A node that was down (or cut off) while the allocator replaced its replicas comes back
//! with those replicas still in its store: they know nothing of their removal (the
//! configuration change that removed them never reached them), so they know no leader,
//! campaign in vain with pre-vote, count as unavailable ranges and keep their log and
//! data. A replica that did apply its own removal stands outside its configuration and
//! sits idle the same way. Nothing in raft tells such a replica to go.
//!
//! So each core's GC queue (run by `node::cluster::follow` every [`EVERY`]) looks for
//! replicas that have known no leader, or stood outside their own configuration, for
//! [`AFTER`] ([`Store::gc_candidates`]), and asks the range's leader for its members
//! ([`KvRequest::Describe`], answered only by a serving leader, whose applied configuration
//! is authoritative; the ordinary routing finds it). When this node is not among them
//! (voters, learners, outgoing voters), the replica is destroyed
//! ([`Store::destroy_replica`]): from memory, its raft log, its raft-state, prepare and
//! fence records, and its span's data; a record remembers the range is gone here, so no
//! request starts it again from the initial seed (CockroachDB's replica tombstone). A
//! replica found still a member is not asked about again for [`RECHECK`].
//!
//! Safety: a replica is destroyed only if no raft message reached it between the question
//! and the destruction. Being added back to the group takes a configuration change the
//! leader applies before it sends the new member anything; a replica destroyed in that
//! window had acknowledged nothing in the new configuration, and the leader's next message
//! creates an empty replica that a snapshot fills, like any new member's.
//!
//! Caveats: a range merged away has no leader to ask (its replicas on live nodes go with
//! the merge); a replica of such a range left on a node that was down during the merge is
//! not collected. The check costs one request per suspect replica per [`RECHECK`].
//!
//! [`Store::gc_candidates`]: super::store::Store::gc_candidates
//! [`Store::destroy_replica`]: super::store::Store::destroy_replica

use std::time::Duration;

use super::{KvRequest, KvResponse};
use crate::node::CoreCtx;

/// How often each core's GC queue looks for suspect replicas.
pub const EVERY: Duration = Duration::from_secs(2);
/// How long a replica must have known no leader (or stood outside its configuration)
/// before the queue asks about it: well past an election's few hundred milliseconds.
pub const AFTER: Duration = Duration::from_secs(10);
/// A replica found still a member is not asked about again for this long.
pub const RECHECK: Duration = Duration::from_secs(60);
/// How long one question may take (the routing looks for the leader meanwhile).
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The nodes `Describe`'s answer names as members (voters, learners, outgoing voters).
pub fn members(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<u64> {
    rows.iter()
        .filter(|(role, _)| matches!(role.as_slice(), b"voter" | b"learner" | b"outgoing"))
        .filter_map(|(_, id)| id.as_slice().try_into().ok().map(u64::from_be_bytes))
        .collect()
}

/// One round of this core's GC queue; answers how many replicas it destroyed.
pub async fn gc_queue(ctx: &CoreCtx) -> usize {
    let me = ctx
        .shared
        .node_id
        .load(std::sync::atomic::Ordering::Relaxed);
    if ctx.shared.cluster().is_none() || me == 0 {
        return 0;
    }
    let mut destroyed = 0;
    for (range, seen) in ctx.store.gc_candidates(AFTER, RECHECK) {
        let ask = async { Some(ctx.send(KvRequest::Describe { range }).await) };
        let expire = async {
            glommio::timer::sleep(ASK_TIMEOUT).await;
            None
        };
        let answer = match futures_lite::future::or(ask, expire).await {
            Some(Ok(KvResponse::Rows(rows))) => rows,
            // No leader found (a minority partition, the range gone): ask again later.
            _ => continue,
        };
        let members = members(&answer);
        if members.is_empty() || members.contains(&me) {
            ctx.store.gc_keep(range);
            continue;
        }
        match ctx.store.destroy_replica(range, seen).await {
            Ok(true) => {
                destroyed += 1;
                eprintln!(
                    "core {}: destroyed the replica of {range}: its group ({members:?}) no longer has node {me}",
                    ctx.core
                );
            }
            Ok(false) => {}
            Err(e) => eprintln!("core {}: replica GC of {range}: {e}", ctx.core),
        }
    }
    destroyed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_voters_learners_and_outgoing_voters() {
        let id = |n: u64| n.to_be_bytes().to_vec();
        let rows = vec![
            (b"voter".to_vec(), id(1)),
            (b"learner".to_vec(), id(4)),
            (b"outgoing".to_vec(), id(3)),
            (b"bytes".to_vec(), id(99)),
            (b"qps".to_vec(), id(7)),
        ];
        assert_eq!(members(&rows), vec![1, 4, 3]);
    }
}
