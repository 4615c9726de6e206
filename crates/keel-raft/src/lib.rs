//! Keel's replication layer: openraft 0.10 (pinned to an exact alpha; see docs/benchmarks.md,
//! "Pipelined log I/O") over RocksDB, with a raw TCP
//! transport for AppendEntries and Vote and tonic for the rest of the peer protocol, leader forwarding, linearizable and stale reads, and snapshots.
//!
//! Key types:
//! - [`RaftNode`]: a running node — propose commands, read, change membership, status;
//! - [`store`]: the RocksDB log store, state machine and snapshot files;
//! - [`network`]: the peer RPC client (replication, snapshot streaming, forwarding);
//! - [`service`]: the peer RPC server ([`service::serve_peers`] runs the peer port);
//! - [`conn`]: accepted connections a node can cut at once (an in-process crash);
//! - [`tls`]: mutual TLS on the peer port against the cluster's CA;
//! - `wire`: the raw framed transport AppendEntries and Vote travel on.
//!
//! openraft types stay inside this crate: the public API speaks Keel's own types and
//! `keel_proto` messages. This crate must not depend on the server, the frontend or the
//! config crate (settings arrive as [`RaftSettings`]).

// openraft's error types (`RaftError`, `StorageError`) are large.
#![allow(clippy::result_large_err)]

mod codec;
pub mod conn;
mod error;
pub mod metrics;
pub mod network;
mod node;
pub mod service;
pub mod store;
pub mod tls;
mod typ;
pub mod watch;
mod wire;

pub use error::{Error, Result};
pub use network::{PeerFilter, RpcSettings};
pub use node::{Consistency, Proposed, RaftNode, RaftSettings, RegisterRead};
pub use store::state_machine::{DirectApplier, StateDigest, StateReader};
pub use tls::PeerTls;
pub use typ::{KeelNode, NodeId};
