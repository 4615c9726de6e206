//! openraft type configuration and aliases. openraft types never leave this crate.

use std::fmt;
use std::path::PathBuf;

use openraft::type_config::alias;

/// Keel's openraft type configuration: openraft's defaults, spelled out because
/// `declare_raft_types!` cannot name a generic responder.
#[derive(Debug, Clone, Copy, Default, Eq, PartialEq, Ord, PartialOrd)]
pub struct TypeConfig {}

impl openraft::RaftTypeConfig for TypeConfig {
    type D = keel_engine::Proposal;
    type R = keel_engine::ProposalResponse;
    type NodeId = u64;
    type Node = KeelNode;
    type Term = u64;
    type LeaderId = openraft::impls::leader_id_adv::LeaderId<Self::Term, Self::NodeId>;
    type Vote = openraft::impls::Vote<Self::LeaderId>;
    type Payload = openraft::EntryPayload<Self::D, Self::NodeId, Self::Node>;
    type Entry =
        openraft::Entry<<Self::LeaderId as openraft::vote::RaftLeaderId>::Committed, Self::Payload>;
    type Responder<T>
        = Reply<T>
    where
        T: openraft::OptionalSend + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: openraft::OptionalSend + 'static;
    type AsyncRuntime = openraft::TokioRuntime;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}

/// What openraft calls with a write's result once its entry is applied (or refused): a
/// closure from the proposal batcher, which answers each proposer of the batch right there
/// in apply, with no task of its own woken in between (one hand-off less per commit).
pub struct Reply<T>(Box<dyn FnOnce(T) + Send + 'static>);

impl<T> Reply<T> {
    pub fn new(f: impl FnOnce(T) + Send + 'static) -> Self {
        Reply(Box::new(f))
    }
}

impl<T: Send + 'static> openraft::raft::responder::Responder<TypeConfig, T> for Reply<T> {
    fn on_complete(self, result: T) {
        (self.0)(result)
    }
}

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
