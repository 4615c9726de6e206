//! Errors of the replication layer.

use crate::typ::NodeId;

/// Replication-layer errors. The server maps them to gRPC codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot decode {0}")]
    Decode(String),
    #[error("rocksdb failed while {context}: {source}")]
    RocksDb {
        context: String,
        source: rocksdb::Error,
    },
    #[error("i/o failed while {context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(
        "data dir {data_dir} belongs to cluster {found_cluster:?} node {found_node}, \
         but this node is configured as cluster {cluster:?} node {node}; \
         point data-dir elsewhere or fix cluster-id/node-id"
    )]
    IdentityMismatch {
        data_dir: String,
        found_cluster: String,
        found_node: NodeId,
        cluster: String,
        node: NodeId,
    },
    #[error(
        "data dir {data_dir} is corrupted ({detail}); refusing to start, because serving \
         from it could forget acknowledged Raft state. Restore the data dir from a backup, \
         or remove this node from the cluster and add a new node with an empty data dir \
         under a new node id"
    )]
    Corrupted { data_dir: String, detail: String },
    #[error("this node is not the leader (leader: {leader_id:?} at {leader_client_addr:?})")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_client_addr: Option<String>,
    },
    #[error("no leader known after waiting {waited_ms} ms (this node may be on the minority side of a partition)")]
    NoLeader { waited_ms: u64 },
    #[error("leader {leader_id} unreachable: {message}")]
    LeaderUnreachable { leader_id: NodeId, message: String },
    #[error("timed out after {waited_ms} ms while {what}")]
    Timeout { what: String, waited_ms: u64 },
    #[error("raft: {0}")]
    Raft(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("not enabled: {0}")]
    NotEnabled(String),
    #[error("the state machine failed: {0}")]
    Engine(#[from] keel_engine::Error),
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn rocks(context: impl Into<String>) -> impl FnOnce(rocksdb::Error) -> Error {
        let context = context.into();
        move |source| {
            stop_on_corruption(&context, &source);
            Error::RocksDb { context, source }
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// Corruption found at run time (a block whose checksum fails, a damaged record) stops the
/// node at once, with exit status 1 and the advice it gets when refusing to start on a
/// damaged data dir: a node must never serve reads or replicate from state it cannot trust,
/// and carrying on would leave it answering some requests and failing others. Its peers
/// keep the cluster going; the operator restores the data dir or replaces the node.
pub(crate) fn stop_on_corruption(context: &str, e: &rocksdb::Error) {
    if e.kind() != rocksdb::ErrorKind::Corruption {
        return;
    }
    let message = format!(
        "data is corrupted ({e}) while {context}; stopping this node, because serving or \
         replicating from it could spread corrupt state. Restore the data dir from a backup, \
         or remove this node from the cluster and add a new node with an empty data dir \
         under a new node id"
    );
    tracing::error!("{message}");
    eprintln!("Error: {message}");
    std::process::exit(1);
}
