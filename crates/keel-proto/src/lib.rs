//! Keel's protobuf and gRPC definitions, generated from `proto/` at the workspace root.
//!
//! - [`raft::v1`]: the peer protocol (replication, snapshots, leader forwarding);
//! - [`admin::v1`]: the operator API;
//! - [`kv::v1`]: the replicated key-value register used by tests and benchmarks.
//!
//! This crate only holds generated code and the descriptor set for gRPC reflection. It must
//! not depend on openraft, RocksDB or any other Keel crate.

#![allow(clippy::all)]

pub mod raft {
    pub mod v1 {
        tonic::include_proto!("keel.raft.v1");
    }
}

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("keel.admin.v1");
    }
}

pub mod kv {
    pub mod v1 {
        tonic::include_proto!("keel.kv.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Keel proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/keel_descriptor.bin"));

/// Request header with which a caller opts into a stale (local, non-linearizable) read.
pub const READ_CONSISTENCY_HEADER: &str = "keel-read-consistency";
/// Value of [`READ_CONSISTENCY_HEADER`] that selects a stale read.
pub const READ_CONSISTENCY_STALE: &str = "stale";
/// Response metadata key carrying the leader's client address when a node is not the leader.
pub const LEADER_HINT_HEADER: &str = "keel-leader-hint";
