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

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "KEEL_CORRUPTION_CHILD_DIR";

    /// Reads every key of the database in `dir` the way the store does, errors mapped by
    /// [`Error::rocks`].
    fn read_all(dir: &std::path::Path) -> Result<usize> {
        let db = rocksdb::DB::open_default(dir).map_err(Error::rocks("opening"))?;
        let mut n = 0;
        for item in db.iterator(rocksdb::IteratorMode::Start) {
            item.map_err(Error::rocks("iterating the state machine"))?;
            n += 1;
        }
        Ok(n)
    }

    /// The parent writes a database, flushes it to an SST and flips bytes in the middle of
    /// it; a child process (this test binary, re-run) reads it and must stop with exit
    /// status 1 naming the corruption, never return an error and carry on.
    #[test]
    fn corruption_found_while_reading_stops_the_process() {
        if let Some(dir) = std::env::var_os(CHILD) {
            let outcome = read_all(std::path::Path::new(&dir));
            // Only reached if the corruption went unnoticed or did not stop the process.
            println!("child carried on: {outcome:?}");
            std::process::exit(0);
        }
        let dir = tempfile::tempdir().unwrap();
        {
            let mut opts = rocksdb::Options::default();
            opts.create_if_missing(true);
            opts.set_compression_type(rocksdb::DBCompressionType::None);
            let db = rocksdb::DB::open(&opts, dir.path()).unwrap();
            for i in 0..20_000u32 {
                db.put(i.to_be_bytes(), [7u8; 100]).unwrap();
            }
            db.flush().unwrap();
        }
        let sst = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "sst"))
            .expect("an SST file");
        let mut bytes = std::fs::read(&sst).unwrap();
        let mid = bytes.len() / 3;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&sst, bytes).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "error::tests::corruption_found_while_reading_stops_the_process",
                "--nocapture",
            ])
            .env(CHILD, dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "stdout: {} stderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.contains("data is corrupted") && stderr.contains("stopping this node"),
            "{stderr}"
        );
    }
}
