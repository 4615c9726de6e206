//! Keel's frontend: Temporal's `WorkflowService` and `OperatorService` served from a Keel
//! node.
//!
//! It validates requests, turns them into engine commands proposed through
//! [`keel_raft::RaftNode`] (forwarded to the leader when this node is a follower), and maps
//! outcomes and errors to the gRPC codes and typed details the official SDKs expect
//! ([`status`]). RPCs not implemented yet answer UNIMPLEMENTED (generated default stubs).
//!
//! It must not depend on openraft or RocksDB directly, nor on the server crate.

pub mod admission;
mod convert;
mod describe;
pub mod history;
mod namespaces;
pub mod operator;
mod pollers;
mod query;
mod schedule;
pub mod service;
pub mod status;
mod tasks;
mod update;
mod validate;
pub mod visibility;
mod wake;

pub use service::Frontend;
