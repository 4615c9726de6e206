//! The pure, deterministic core of Keel: the replicated state machine's logic.
//!
//! Every node applies the same committed log through [`apply_proposal`] and so reaches the
//! same state. To make that true this crate does no I/O and reads no clock, RNG or hash-map
//! iteration order: time comes from the log entry ([`entry_time_ms`]), ids come from the
//! proposer inside the [`Command`], and all state goes through the narrow [`StateStore`]
//! trait (RocksDB in production, [`MemStore`] in tests).
//!
//! Key types:
//! - [`Proposal`]: what one Raft log entry carries — the leader's proposal time and a batch of
//!   [`Command`]s (batching is how many concurrent writers share one fsync);
//! - [`Response`]: per-command result; domain rejections are values, not errors;
//! - [`keys`]: the one module that lays out every state-machine key.
//!
//! Schedules' time computation lives in [`schedule`].
//!
//! Commands: a key-value register (put / compare-and-set / delete, for tests and the
//! fault-injection workload) and the [`workflow`] state machine (Temporal's model).
//!
//! This crate must not depend on tokio, tonic, RocksDB or openraft (CI checks `cargo tree`).

mod apply;
mod commands;
pub mod conformance;
mod error;
pub mod keys;
pub mod schedule;
mod store;
pub mod workflow;

pub use apply::{apply_proposal, entry_time_ms, last_applied_time_ms, read_register, AppliedMeta};
pub use commands::{
    command, response, Command, Proposal, ProposalResponse, RegisterCas, RegisterDelete,
    RegisterPut, RegisterWrite, Rejected, Response,
};
pub use error::{Error, Result};
pub use store::{MemStore, ReadState, StateStore};
