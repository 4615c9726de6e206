//! `keel-jepsen`: Keel's fault-injection suite, on Jepsen's model — real `keel server`
//! processes, seeded client generators, a nemesis injecting faults (partitions, process kills
//! and pauses, clock skew, link delay), one recorded history, and checkers that say valid,
//! invalid or unknown.
//!
//! It drives Keel only through its public gRPC APIs (Temporal's WorkflowService,
//! `keel.kv.v1`, `keel.admin.v1`) and the process and network boundary; it must not depend on
//! Keel's server, engine or Raft crates, so it tests the binary users run.

pub mod checker;
pub mod client;
pub mod cluster;
pub mod disk;
pub mod grudge;
pub mod history;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod run;
pub mod suite;
pub mod workload;
