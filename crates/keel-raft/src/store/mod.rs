//! RocksDB storage of one node: the Raft log, Raft metadata and the state machine, in one
//! RocksDB instance (one WAL, so a log fsync also persists earlier state-machine writes).
//!
//! Column families:
//! - `log`: entry index (u64 big-endian) → protobuf `keel.raft.v1.Entry`;
//! - `raft`: vote, committed and purged log ids, and the data dir's identity;
//! - `sm`: the state machine, keyed by [`keel_engine::keys`]; includes the last applied log
//!   id and membership, written in the same `WriteBatch` as the entries' effects.
//!
//! Snapshots are files under `<data-dir>/snapshots` ([`snapshot`]).

pub(crate) mod apply_cache;
pub(crate) mod log_store;
pub mod snapshot;
pub mod state_machine;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DBCompressionType, Options, DB};

use crate::error::{Error, Result};
use crate::typ::NodeId;

pub use log_store::LogStore;
pub use state_machine::StateMachine;

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_RAFT: &str = "raft";
pub(crate) const CF_SM: &str = "sm";

pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_PURGED: &[u8] = b"purged";
/// Names the snapshot file whose install into the state machine began and has not finished.
pub(crate) const KEY_INSTALLING: &[u8] = b"installing_snapshot";
const KEY_CLUSTER_ID: &[u8] = b"cluster_id";
const KEY_NODE_ID: &[u8] = b"node_id";

/// Opens (or creates) a node's storage and checks that the data dir belongs to this
/// cluster and node.
pub fn open(
    data_dir: &Path,
    cluster_id: &str,
    node_id: NodeId,
) -> Result<(LogStore, StateMachine)> {
    std::fs::create_dir_all(data_dir).map_err(Error::io(format!(
        "creating data dir {}",
        data_dir.display()
    )))?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    // Any corruption in the WAL fails the open. RocksDB's default (point-in-time recovery)
    // replays up to the first bad record and silently drops the rest, and the rest may hold
    // fsynced Raft votes and log entries: a node that forgot its vote can vote twice in one
    // term (tolerate-corrupted-tail drops them too; only absolute consistency refuses). This
    // mode rules out recycled WAL files (RocksDB turns recycling off), which used to save the
    // inode-size update in each fsync. See docs/fault-injection.md, "Bugs found".
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
    let cfs = [CF_LOG, CF_RAFT, CF_SM]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db_path = data_dir.join("db");
    let cfs: Vec<ColumnFamilyDescriptor> = cfs.collect();
    // A node reopened in the same process waits (bounded) for the previous incarnation's
    // background threads to drop their handles and release RocksDB's LOCK.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let db = loop {
        let cfs = cfs
            .iter()
            .map(|d| ColumnFamilyDescriptor::new(d.name(), cf_options(d.name())));
        match DB::open_cf_descriptors(&opts, &db_path, cfs) {
            Err(e)
                if e.to_string().contains("lock hold by current process")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) if e.kind() == rocksdb::ErrorKind::Corruption => {
                return Err(Error::Corrupted {
                    data_dir: data_dir.display().to_string(),
                    detail: e.to_string(),
                })
            }
            other => {
                break other.map_err(Error::rocks(format!("opening {}", db_path.display())))?
            }
        }
    };
    let db = Arc::new(db);
    check_identity(&db, data_dir, cluster_id, node_id)?;
    let snapshot_dir = data_dir.join("snapshots");
    std::fs::create_dir_all(&snapshot_dir)
        .map_err(Error::io(format!("creating {}", snapshot_dir.display())))?;
    let log = LogStore::new(db.clone())?;
    let sm = StateMachine::open(db, snapshot_dir)?;
    Ok((log, sm))
}

/// Memtable size of the state machine's column family. 8 MiB instead of 16 (for it and the
/// log) saved ~15 MiB of RSS per node under load at unchanged throughput, CPU and apply speed
/// (alternating A/B, docs/benchmarks.md "Server RSS").
const SM_MEMTABLE_BYTES: usize = 8 << 20;

/// Memtable size of the log's column family.
const LOG_MEMTABLE_BYTES: usize = 4 << 20;

/// Compression of the state machine's levels: none for level 0 to 2, Snappy below.
const SM_COMPRESSION_PER_LEVEL: [DBCompressionType; 7] = [
    DBCompressionType::None,
    DBCompressionType::None,
    DBCompressionType::None,
    DBCompressionType::Snappy,
    DBCompressionType::Snappy,
    DBCompressionType::Snappy,
    DBCompressionType::Snappy,
];

/// Per-column-family tuning, each measured with `keel bench engine` (docs/benchmarks.md).
fn cf_options(name: &str) -> Options {
    let mut o = Options::default();
    if name == CF_SM {
        // Apply reads state point-wise, many of them for keys that do not exist yet (new
        // runs, backlog entries): a whole-key bloom filter on the memtable answers those
        // without walking the skiplist.
        o.set_memtable_whole_key_filtering(true);
        o.set_memtable_prefix_bloom_ratio(0.1);
        // Small memtables keep skiplist walks short and resident memory low; flushed tables
        // answer through bloom filters.
        o.set_write_buffer_size(SM_MEMTABLE_BYTES);
        // Level 1 sized like level 0 (4 memtables at the default compaction trigger), as
        // RocksDB's tuning guide asks: its 256 MiB default fits its 64 MiB memtables, and with
        // 8 MiB ones every L0 → L1 compaction rewrote a level 1 up to 8× the data it merged
        // (run keys are spread over the whole key space, so each L0 file overlaps all of L1).
        // With it, compaction CPU fell ~25% and its longest job ~20% (docs/benchmarks.md).
        o.set_max_bytes_for_level_base(4 * SM_MEMTABLE_BYTES as u64);
        o.set_target_file_size_base(SM_MEMTABLE_BYTES as u64);
        let mut t = rocksdb::BlockBasedOptions::default();
        t.set_bloom_filter(10.0, false);
        o.set_block_based_table_factory(&t);
        // Levels 0 to 2 (up to ~380 MiB per node at these sizes) are rewritten by every
        // compaction that passes through them: compressing them cost ~5% of a node's CPU
        // under load. The levels below, which hold most of a long-lived node's data, keep
        // Snappy. Tables written compressed by earlier builds stay readable either way.
        o.set_compression_per_level(&SM_COMPRESSION_PER_LEVEL);
    }
    if name == CF_LOG {
        // The log is appended, read back while it replicates and applies, and purged behind
        // each snapshot: RocksDB's 64 MiB default memtable only made it resident memory,
        // and 4 MiB took another ~3 MiB per node off at unchanged CPU.
        o.set_write_buffer_size(LOG_MEMTABLE_BYTES);
        // Log tables live until the next snapshot purges them (about a minute under load):
        // compressing them saves no disk that matters.
        o.set_compression_type(DBCompressionType::None);
    }
    o
}

fn check_identity(db: &DB, data_dir: &Path, cluster_id: &str, node_id: NodeId) -> Result<()> {
    let cf = cf(db, CF_RAFT);
    let found_cluster = db
        .get_cf(cf, KEY_CLUSTER_ID)
        .map_err(Error::rocks("reading data dir identity"))?;
    let found_node = db
        .get_cf(cf, KEY_NODE_ID)
        .map_err(Error::rocks("reading data dir identity"))?;
    match (found_cluster, found_node) {
        (None, None) => {
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(cf, KEY_CLUSTER_ID, cluster_id.as_bytes());
            batch.put_cf(cf, KEY_NODE_ID, node_id.to_be_bytes());
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            db.write_opt(batch, &wo)
                .map_err(Error::rocks("writing data dir identity"))
        }
        (Some(c), Some(n)) => {
            let found_cluster = String::from_utf8_lossy(&c).into_owned();
            let found_node = n
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Decode("stored node id".into()))?;
            if found_cluster == cluster_id && found_node == node_id {
                Ok(())
            } else {
                Err(Error::IdentityMismatch {
                    data_dir: data_dir.display().to_string(),
                    found_cluster,
                    found_node,
                    cluster: cluster_id.to_string(),
                    node: node_id,
                })
            }
        }
        _ => Err(Error::Decode(format!(
            "data dir {} has a partial identity record",
            data_dir.display()
        ))),
    }
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .unwrap_or_else(|| panic!("column family {name} is created at open"))
}

/// Where a data dir keeps its snapshots.
pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// A storage failure as the `io::Error` openraft's storage traits return.
pub(crate) fn sto_io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod suite_test;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typ::Vote;

    #[test]
    fn a_data_dir_of_another_cluster_or_node_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), "alpha", 1).expect("first open claims the dir"));
        drop(open(dir.path(), "alpha", 1).expect("same identity reopens"));
        let err = open(dir.path(), "beta", 1).err().expect("other cluster");
        let msg = err.to_string();
        assert!(matches!(err, Error::IdentityMismatch { .. }), "{msg}");
        assert!(
            msg.contains("\"alpha\"") && msg.contains("\"beta\""),
            "{msg}"
        );
        let err = open(dir.path(), "alpha", 2).err().expect("other node id");
        assert!(
            err.to_string().contains("node 1") && err.to_string().contains("node 2"),
            "{err}"
        );
    }

    /// Flips bytes in the middle of a node's newest WAL file, as a disk or filesystem fault
    /// would, returning the file.
    fn corrupt_newest_wal(data_dir: &Path) -> PathBuf {
        let wal = std::fs::read_dir(data_dir.join("db"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .expect("a WAL file");
        let mut bytes = std::fs::read(&wal).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&wal, bytes).unwrap();
        wal
    }

    #[tokio::test]
    async fn a_corrupted_wal_is_refused_never_silently_truncated() {
        use openraft::storage::{RaftLogReader, RaftLogStorage};
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _sm) = open(dir.path(), "alpha", 1).unwrap();
            for term in 1..=400u64 {
                log.save_vote(&Vote::new(term, 1)).await.unwrap();
            }
        }
        let wal = corrupt_newest_wal(dir.path());
        match open(dir.path(), "alpha", 1) {
            // Refusing is right: the operator learns the data dir is damaged.
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    matches!(e, Error::Corrupted { .. }) && msg.contains("refusing to start"),
                    "the error names the corruption: {msg}"
                );
            }
            // Starting is right only if nothing fsynced was lost: a node that forgot its
            // vote could vote twice in one term.
            Ok((mut log, _sm)) => {
                let vote = log.read_vote().await.unwrap();
                assert_eq!(
                    vote,
                    Some(Vote::new(400, 1)),
                    "{} was corrupted and the store opened with an older vote",
                    wal.display()
                );
            }
        }
    }
}
