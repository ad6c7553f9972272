//! Which catalog versions this node's open transactions still use.
//!
//! An online schema change (a new index that writers must maintain before it is
//! backfilled) is safe only once no transaction anywhere still writes with the catalog from
//! before the change: such a writer would add rows the backfill has already passed without
//! their index entries. Every transaction pins, when it begins and before its first
//! statement reads the catalog, the catalog version its core had cached (no statement of
//! it can plan with an older one); the pin is a guard inside the [`crate::txn::Txn`], so it
//! goes away however the transaction ends. Pinning first closes the race with another
//! core's [`drained`]: a transaction not pinned yet will read the new catalog.
//!
//! Each core counts its pins by version in a map of its own and publishes the oldest
//! version still pinned in one atomic ([`NodeShared::oldest_catalog`]): the hot path
//! touches no lock shared across cores. [`drained`] reads the atomics of all cores.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use super::{CoreCtx, NodeShared};

/// One core's open transactions, counted by the catalog version each began with.
#[derive(Default)]
pub struct CorePins {
    by_version: std::cell::RefCell<BTreeMap<u64, u32>>,
}

/// Held by a transaction for its life (see the module essay).
pub struct CatalogPin {
    ctx: Rc<CoreCtx>,
    version: u64,
}

impl std::fmt::Debug for CatalogPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CatalogPin(core {}, version {})",
            self.ctx.core, self.version
        )
    }
}

/// Pins the catalog version a statement on this core plans with: the older of the
/// version the core has cached and the node's current one (a cache loaded just before a
/// schema change may hold the old descriptors under the old version).
pub fn pin(ctx: &CoreCtx) -> CatalogPin {
    let current = ctx.shared.catalog_version.load(Ordering::SeqCst);
    let version = ctx
        .catalog
        .borrow()
        .as_ref()
        .map_or(current, |c| c.version.min(current));
    let mut m = ctx.pins.by_version.borrow_mut();
    *m.entry(version).or_insert(0) += 1;
    publish(ctx, &m);
    CatalogPin {
        ctx: ctx.rc(),
        version,
    }
}

impl Drop for CatalogPin {
    fn drop(&mut self) {
        let mut m = self.ctx.pins.by_version.borrow_mut();
        if let Some(n) = m.get_mut(&self.version) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.version);
            }
        }
        publish(&self.ctx, &m);
    }
}

fn publish(ctx: &CoreCtx, m: &BTreeMap<u64, u32>) {
    let oldest = m.keys().next().copied().unwrap_or(u64::MAX);
    ctx.shared.oldest_catalog[ctx.core].store(oldest, Ordering::SeqCst);
}

/// Whether no transaction on this node still uses a catalog older than `version`.
pub fn drained(shared: &NodeShared, version: u64) -> bool {
    shared
        .oldest_catalog
        .iter()
        .all(|o| o.load(Ordering::SeqCst) >= version)
}
