//! openraft type configuration and aliases. openraft types never leave this crate.

use std::fmt;
use std::path::PathBuf;

use openraft::type_config::alias;

openraft::declare_raft_types!(
    /// Keel's openraft type configuration.
    pub TypeConfig:
        D = keel_engine::Proposal,
        R = keel_engine::ProposalResponse,
        NodeId = u64,
        Node = KeelNode,
        AsyncRuntime = openraft::TokioRuntime,
);

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
pub type LeaderId = alias::CommittedLeaderIdOf<TypeConfig>;
pub type LogId = alias::LogIdOf<TypeConfig>;
pub type Vote = alias::VoteOf<TypeConfig>;
pub type Entry = alias::EntryOf<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, KeelNode>;
pub type StoredMembership = alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = alias::SnapshotOf<TypeConfig, SnapshotFile>;
pub type Raft = openraft::Raft<TypeConfig, crate::store::StateMachine>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
