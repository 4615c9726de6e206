//! Keel's protobuf and gRPC definitions, generated from `proto/` at the workspace root.
//!
//! - [`raft::v1`]: the peer protocol (replication, snapshots, leader forwarding);
//! - [`admin::v1`]: the operator API;
//! - [`kv::v1`]: the replicated key-value register used by tests and benchmarks;
//! - [`temporal`]: server traits of Temporal's WorkflowService and OperatorService, generated
//!   from the descriptor set that `temporalio-protos` exports (its messages are reused as is).
//!
//! This crate only holds generated code and descriptor sets for gRPC reflection. It must not
//! depend on openraft, RocksDB or any other Keel crate.

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

/// Server traits of Temporal's services; messages are `temporalio_protos::temporal::…`.
pub mod temporal {
    pub mod workflowservice {
        pub mod v1 {
            tonic::include_proto!("temporal.api.workflowservice.v1");
        }
    }
    pub mod operatorservice {
        pub mod v1 {
            tonic::include_proto!("temporal.api.operatorservice.v1");
        }
    }
    /// Encoded `FileDescriptorSet` of Temporal's API, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/temporal_descriptor.bin"));
}

/// The Temporal API this build serves: the pinned `temporalio-protos` release whose
/// WorkflowService and OperatorService definitions it implements.
pub const TEMPORAL_API: &str = "temporalio-protos 0.10.2";

pub use prost_wkt_types;
pub use temporalio_protos;

/// Encoded `FileDescriptorSet` of every Keel proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/keel_descriptor.bin"));

/// Request header with which a caller opts into a stale (local, non-linearizable) read.
pub const READ_CONSISTENCY_HEADER: &str = "keel-read-consistency";
/// Value of [`READ_CONSISTENCY_HEADER`] that selects a stale read.
pub const READ_CONSISTENCY_STALE: &str = "stale";
/// Response metadata key carrying the leader's client address when a node is not the leader.
pub const LEADER_HINT_HEADER: &str = "keel-leader-hint";
/// Response metadata key set (to "true") on an error status when the request was certainly
/// not proposed to the log (no leader known, or the node asked was not the leader): the
/// write did not and will not take effect, so a client may count it as failed, not unknown.
pub const NOT_PROPOSED_HEADER: &str = "keel-not-proposed";
