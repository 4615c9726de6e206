//! `RaftLogStorage` over the `log` and `raft` column families, with group commit.
//!
//! `append` writes entries to RocksDB without syncing (so they are readable at once, as
//! openraft requires) and hands the flush callback to the WAL syncer thread. The syncer
//! takes every callback queued so far, fsyncs the WAL once, and completes them all: many
//! appends share one fsync, which is what lets throughput grow with concurrency.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use keel_proto::raft::v1 as pb;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use prost::Message;
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use super::{cf, sto_io, CF_LOG, CF_RAFT, KEY_COMMITTED, KEY_PURGED, KEY_VOTE};
use crate::codec;
use crate::error::Result;
use crate::metrics;
use crate::typ::{Entry, LogId, TypeConfig, Vote};

/// Bound on appends waiting for the syncer (a full queue makes `append` wait). openraft keeps
/// a few in flight: one per leader batch (`raft.max-in-flight-batches`) or AppendEntries
/// request. The queue's buffer is allocated and initialized up front (~80 bytes a slot), so it
/// stays small.
const SYNC_QUEUE_CAPACITY: usize = 1_024;

/// The Raft log and vote of one node. Cheap to clone (the log reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    syncer: Arc<Syncer>,
    committed_index: Arc<AtomicU64>,
}

type FlushRequest = (IOFlushed<TypeConfig>, Instant);

/// The WAL-sync thread and its queue. Dropped with the last `LogStore` clone: the queue is
/// closed and the thread joined, so the database handle it holds is released by then.
struct Syncer {
    tx: Option<mpsc::SyncSender<FlushRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn send(&self, req: FlushRequest) -> std::result::Result<(), ()> {
        self.tx.as_ref().ok_or(())?.send(req).map_err(|_| ())
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn no_sync() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(false);
    wo
}

fn sync() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>) -> Result<Self> {
        let (tx, rx) = mpsc::sync_channel(SYNC_QUEUE_CAPACITY);
        let sync_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("keel-wal-sync".into())
            .spawn(move || run_syncer(sync_db, rx))
            .map_err(crate::error::Error::io("spawning the WAL syncer thread"))?;
        let store = LogStore {
            db,
            syncer: Arc::new(Syncer {
                tx: Some(tx),
                thread: Some(thread),
            }),
            committed_index: Arc::new(AtomicU64::new(0)),
        };
        if let Some(c) = store
            .read_log_id(KEY_COMMITTED)
            .map_err(|e| crate::error::Error::Raft(e.to_string()))?
        {
            store.committed_index.store(c.index, Ordering::Relaxed);
        }
        Ok(store)
    }

    /// Index of the last entry this node knows to be committed (0: none).
    pub fn committed_index(&self) -> u64 {
        self.committed_index.load(Ordering::Relaxed)
    }

    pub(crate) fn committed_index_handle(&self) -> Arc<AtomicU64> {
        self.committed_index.clone()
    }

    fn read_log_id(&self, key: &[u8]) -> std::io::Result<Option<LogId>> {
        let raw = self.db.get_cf(cf(&self.db, CF_RAFT), key).map_err(sto_io)?;
        raw.map(|b| {
            pb::LogId::decode(b.as_slice())
                .map(|l| codec::log_id_from_pb(&l))
                .map_err(sto_io)
        })
        .transpose()
    }

    fn last_log_id(&self) -> std::io::Result<Option<LogId>> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_LOG), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(sto_io(e)),
            Some(Ok((_, v))) => {
                let e = codec::decode_entry(&v).map_err(sto_io)?;
                Ok(Some(e.log_id))
            }
        }
    }
}

fn run_syncer(db: Arc<DB>, rx: mpsc::Receiver<FlushRequest>) {
    // Exits when every LogStore clone is dropped.
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let started = Instant::now();
        let result = db.flush_wal(true);
        metrics::wal_fsync(started.elapsed(), waiting.len());
        // openraft's flush notifications are a watermark (the newest flushed IO wins): only
        // the last one of this fsync needs sending, and one send wakes the core once.
        let last_notify = waiting
            .iter()
            .rposition(|(c, _)| matches!(c, IOFlushed::Notify(_)));
        for (i, (callback, appended_at)) in waiting.into_iter().enumerate() {
            metrics::log_append(appended_at.elapsed());
            if matches!(callback, IOFlushed::Notify(_)) && Some(i) != last_notify {
                continue;
            }
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(format!(
                    "fsync of the raft log failed: {e}"
                ))),
            };
            callback.io_completed(r);
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "fsync of the raft log failed; the node cannot make progress");
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::io::Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            cf(&self.db, CF_LOG),
            IteratorMode::From(&index_key(start), rocksdb::Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(sto_io)?;
            let index = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| sto_io("log key is not 8 bytes"))?,
            );
            if !range.contains(&index) {
                break;
            }
            out.push(codec::decode_entry(&v).map_err(sto_io)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> std::io::Result<Option<Vote>> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_RAFT), KEY_VOTE)
            .map_err(sto_io)?;
        raw.map(|b| {
            pb::Vote::decode(b.as_slice())
                .map(|v| codec::vote_from_pb(&v))
                .map_err(sto_io)
        })
        .transpose()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> std::io::Result<LogState<TypeConfig>> {
        let last_purged_log_id = self.read_log_id(KEY_PURGED)?;
        let last_log_id = self.last_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> std::io::Result<()> {
        self.db
            .put_cf_opt(
                cf(&self.db, CF_RAFT),
                KEY_VOTE,
                codec::vote_to_pb(vote).encode_to_vec(),
                &sync(),
            )
            .map_err(sto_io)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> std::io::Result<()> {
        let Some(c) = committed else { return Ok(()) };
        // Not synced: losing it only means re-learning the commit index from the leader.
        self.db
            .put_cf_opt(
                cf(&self.db, CF_RAFT),
                KEY_COMMITTED,
                codec::log_id_to_pb(&c).encode_to_vec(),
                &no_sync(),
            )
            .map_err(sto_io)?;
        self.committed_index.store(c.index, Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> std::io::Result<Option<LogId>> {
        self.read_log_id(KEY_COMMITTED)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> std::io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let log_cf = cf(&self.db, CF_LOG);
        let mut batch = WriteBatch::default();
        for e in entries {
            batch.put_cf(log_cf, index_key(e.log_id.index), codec::encode_entry(&e));
        }
        self.db.write_opt(batch, &no_sync()).map_err(sto_io)?;
        self.syncer
            .send((callback, Instant::now()))
            .map_err(|_| sto_io("the WAL syncer thread has stopped"))?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> std::io::Result<()> {
        // Everything after `last_log_id` goes (everything when `None`).
        let from = last_log_id.map_or(0, |l| l.index + 1);
        tracing::debug!(from_index = from, "truncating conflicting log suffix");
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_LOG), index_key(from), index_key(u64::MAX));
        self.db.write_opt(batch, &sync()).map_err(sto_io)
    }

    async fn purge(&mut self, log_id: LogId) -> std::io::Result<()> {
        tracing::debug!(log_index = log_id.index, "purging log prefix");
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(&self.db, CF_RAFT),
            KEY_PURGED,
            codec::log_id_to_pb(&log_id).encode_to_vec(),
        );
        batch.delete_range_cf(
            cf(&self.db, CF_LOG),
            index_key(0),
            index_key(log_id.index + 1),
        );
        // Synced: this also persists every earlier state-machine write in the shared WAL,
        // so the state is never behind a purged log.
        self.db.write_opt(batch, &sync()).map_err(sto_io)
    }
}
