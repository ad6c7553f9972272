//! Identifiers of transport endpoints.

use std::fmt;

/// A node of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

/// A core (glommio executor) within a node; cores are numbered from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CoreId(pub u32);

/// One end of the transport: a core of a node. Raft messages for a range go to the core
/// that owns the range, so this, not the node, is the unit of addressing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Endpoint {
    pub node: NodeId,
    pub core: CoreId,
}

impl Endpoint {
    pub fn new(node: NodeId, core: CoreId) -> Endpoint {
        Endpoint { node, core }
    }
}

impl From<(NodeId, CoreId)> for Endpoint {
    fn from((node, core): (NodeId, CoreId)) -> Endpoint {
        Endpoint { node, core }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for CoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.core)
    }
}
