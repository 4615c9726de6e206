//! openraft type configuration and aliases. openraft types never leave this crate.

use std::fmt;
use std::io::Cursor;
use std::path::PathBuf;

openraft::declare_raft_types!(
    /// Keel's openraft type configuration.
    pub TypeConfig:
        D = keel_engine::Proposal,
        R = keel_engine::ProposalResponse,
        NodeId = u64,
        Node = KeelNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

// `declare_raft_types!` refers to `Cursor` in its defaults.
#[allow(dead_code)]
type _UsesCursor = Cursor<Vec<u8>>;

/// A cluster member's addresses, stored in the replicated membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeelNode {
    /// Raft and forwarding traffic.
    pub peer_addr: String,
    /// Clients and operators.
    pub client_addr: String,
}

impl fmt::Display for KeelNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer={} client={}", self.peer_addr, self.client_addr)
    }
}

/// A snapshot on disk (format in [`crate::store::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, KeelNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, KeelNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, KeelNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, KeelNode>;
