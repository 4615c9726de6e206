//! `RaftStateMachine` over the `sm` column family: applies entries through the engine and
//! builds / installs snapshots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::TryStreamExt;
use keel_engine::keys::{self, MetaKey};
use keel_engine::{ProposalResponse, ReadState, StateStore};
use keel_proto::raft::v1 as pb;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use prost::Message;
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use super::apply_cache::ApplyCache;
use super::snapshot::{self, hex, StateHasher};
use super::{cf, sto_io, CF_RAFT, CF_SM, KEY_INSTALLING};
use crate::codec;
use crate::error::{Error, Result};
use crate::metrics;
use crate::typ::{
    Entry, LogId, Snapshot, SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig,
};

/// The latest snapshot this node holds.
#[derive(Debug, Clone)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    path: PathBuf,
}

/// The state machine of one node.
pub struct StateMachine {
    db: Arc<DB>,
    snapshot_dir: PathBuf,
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
    /// Woken with the watch keys of every applied batch's effects.
    watchers: Arc<crate::watch::Watchers>,
    /// What apply read lately, kept current by its commits; cleared by a snapshot install.
    cache: ApplyCache,
}

/// Read-only access to the applied state, shared with the node's read paths.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<DB>,
}

/// A digest of the whole state machine at one applied index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDigest {
    pub applied_index: u64,
    pub digest_hex: String,
    pub key_count: u64,
}

/// Turns off RocksDB's per-thread perf counters on the calling thread: each counter update is
/// a thread-local access (with a shared librocksdb a dynamic TLS lookup, once about a tenth of
/// apply's CPU in `keel bench engine`). Keel exports its own metrics instead.
fn without_perf_counters() {
    rocksdb::perf::set_perf_stats(rocksdb::perf::PerfStatsLevel::Disable);
}

/// Pending writes of one apply batch; reads see them before the (cached) database.
struct BatchStore<'a> {
    db: &'a DB,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The apply path's read cache, if any (see [`ApplyCache`]).
    cache: Option<std::cell::RefCell<&'a mut ApplyCache>>,
}

fn sm_get(db: &DB, key: &[u8]) -> keel_engine::Result<Option<Vec<u8>>> {
    db.get_cf(cf(db, CF_SM), key).map_err(|e| {
        crate::error::stop_on_corruption("reading the state machine", &e);
        keel_engine::Error::StoreRead {
            key_hex: hex(key),
            message: e.to_string(),
        }
    })
}

impl ReadState for BatchStore<'_> {
    fn get(&self, key: &[u8]) -> keel_engine::Result<Option<Vec<u8>>> {
        if let Some(v) = self.pending.get(key) {
            return Ok(v.clone());
        }
        let Some(cache) = &self.cache else {
            return sm_get(self.db, key);
        };
        if let Some(v) = cache.borrow().get(key) {
            return Ok(Some(v.to_vec()));
        }
        let v = sm_get(self.db, key)?;
        if let Some(v) = &v {
            cache.borrow_mut().remember(key, v);
        }
        Ok(v)
    }
}

/// Reads of the latest applied state (each `get` on its own; for single-key reads).
impl ReadState for StateReader {
    fn get(&self, key: &[u8]) -> keel_engine::Result<Option<Vec<u8>>> {
        sm_get(&self.db, key)
    }
}

impl<'a> BatchStore<'a> {
    /// A batch reading `db` directly.
    fn new(db: &'a DB) -> Self {
        BatchStore {
            db,
            pending: BTreeMap::new(),
            cache: None,
        }
    }

    /// A batch reading `db` through `cache`, which its commit keeps current.
    fn cached(db: &'a DB, cache: &'a mut ApplyCache) -> Self {
        BatchStore {
            cache: Some(std::cell::RefCell::new(cache)),
            ..BatchStore::new(db)
        }
    }

    /// Writes the batch's changes as one (unsynced) RocksDB `WriteBatch`; the log's group
    /// commit makes it durable (see `store` module docs). The cache takes them only once
    /// RocksDB has (a failed write leaves it as the database is).
    fn commit(self) -> std::result::Result<(), rocksdb::Error> {
        let sm = cf(self.db, CF_SM);
        let mut batch = WriteBatch::default();
        for (k, v) in &self.pending {
            match v {
                Some(v) => batch.put_cf(sm, k, v),
                None => batch.delete_cf(sm, k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db.write_opt(batch, &wo)?;
        if let Some(cache) = self.cache {
            let cache = cache.into_inner();
            for (k, v) in &self.pending {
                cache.write_through(k, v.as_deref());
            }
        }
        Ok(())
    }
}

impl StateStore for BatchStore<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.pending.insert(key.to_vec(), Some(value.to_vec()));
    }

    fn delete(&mut self, key: &[u8]) {
        self.pending.insert(key.to_vec(), None);
    }
}

fn read_meta_log_id(get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>>) -> Result<Option<LogId>> {
    get(&keys::meta(MetaKey::LastAppliedLogId))?
        .map(|b| {
            pb::LogId::decode(b.as_slice())
                .map(|l| codec::log_id_from_pb(&l))
                .map_err(|e| Error::Decode(format!("last applied log id: {e}")))
        })
        .transpose()
}

fn read_meta_membership(
    get: impl Fn(&[u8]) -> Result<Option<Vec<u8>>>,
) -> Result<StoredMembership> {
    Ok(get(&keys::meta(MetaKey::LastMembership))?
        .map(|b| {
            pb::StoredMembership::decode(b.as_slice())
                .map_err(|e| Error::Decode(format!("last membership: {e}")))
                .and_then(|m| codec::stored_membership_from_pb(&m))
        })
        .transpose()?
        .unwrap_or_default())
}

/// Bytes of records per RocksDB write batch while a snapshot is installed: an install holds
/// about this much in memory, whatever the snapshot's size.
const INSTALL_BATCH_BYTES: usize = 16 << 20;

/// Replaces the whole state with the records of a verified snapshot file, in write batches of
/// [`INSTALL_BATCH_BYTES`]; returns the record count. Crash-safe without one atomic batch: a
/// marker naming the file is synced in the raft column family before the state is touched,
/// and removed by the last batch (synced, so every earlier unsynced batch in the shared WAL is
/// durable with it). [`StateMachine::open`] finishes an install the marker says was cut short,
/// before anything reads the state. Readers gated on the applied index (every linearizable
/// read) see the new state only when openraft reports the install done. Returns the record
/// and write-batch counts.
fn install_from_file(db: &DB, path: &Path) -> Result<(u64, u64)> {
    let (raft, sm) = (cf(db, CF_RAFT), cf(db, CF_SM));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    db.put_cf_opt(raft, KEY_INSTALLING, name.as_bytes(), &synced)
        .map_err(Error::rocks("marking a snapshot install as begun"))?;
    let unsynced = WriteOptions::default();
    let mut batch = WriteBatch::default();
    let mut batches = 1;
    // Every key sorts between these bounds.
    batch.delete_range_cf(sm, &[][..], &[0xffu8; 32][..]);
    let (_, count, _) = snapshot::read_verified(path, |k, v| {
        batch.put_cf(sm, k, v);
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            db.write_opt(std::mem::take(&mut batch), &unsynced)
                .map_err(Error::rocks("installing a snapshot batch"))?;
            batches += 1;
        }
        Ok(())
    })?;
    batch.delete_cf(raft, KEY_INSTALLING);
    db.write_opt(batch, &synced)
        .map_err(Error::rocks("finishing a snapshot install"))?;
    Ok((count, batches))
}

impl StateMachine {
    pub(crate) fn open(db: Arc<DB>, snapshot_dir: PathBuf) -> Result<Self> {
        let interrupted = db
            .get_cf(cf(&db, CF_RAFT), KEY_INSTALLING)
            .map_err(Error::rocks("reading the snapshot install marker"))?;
        if let Some(name) = interrupted {
            let path = snapshot_dir.join(String::from_utf8_lossy(&name).as_ref());
            tracing::warn!(snapshot = %path.display(), "finishing a snapshot install interrupted by a stop");
            if !path.exists() {
                return Err(Error::Corrupted {
                    data_dir: snapshot_dir.display().to_string(),
                    detail: format!(
                        "a snapshot install was interrupted and its file {} is gone",
                        path.display()
                    ),
                });
            }
            install_from_file(&db, &path)?;
        }
        let current = latest_snapshot(&snapshot_dir)?;
        Ok(StateMachine {
            db,
            snapshot_dir,
            current: Arc::new(Mutex::new(current)),
            watchers: Default::default(),
            cache: ApplyCache::new(super::apply_cache::DEFAULT_CAPACITY_BYTES),
        })
    }

    /// The wake-up registry this state machine notifies after each applied batch.
    pub fn watchers(&self) -> Arc<crate::watch::Watchers> {
        self.watchers.clone()
    }

    /// A read handle on the applied state.
    pub fn reader(&self) -> StateReader {
        StateReader {
            db: self.db.clone(),
        }
    }
}

/// Finds the newest complete snapshot file and removes leftovers of interrupted transfers.
fn latest_snapshot(dir: &std::path::Path) -> Result<Option<CurrentSnapshot>> {
    let mut best: Option<CurrentSnapshot> = None;
    let entries =
        std::fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    for entry in entries {
        let path = entry.map_err(Error::io("listing snapshots"))?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("snap") => {
                let meta = snapshot::read_meta(&path)?;
                if best
                    .as_ref()
                    .is_none_or(|b| b.meta.last_log_id < meta.last_log_id)
                {
                    best = Some(CurrentSnapshot { meta, path });
                }
            }
            Some("tmp") => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
    Ok(best)
}

/// Keeps the newest two snapshot files (a follower may still be streaming the older one).
fn prune_snapshots(dir: &std::path::Path, keep: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut snaps: Vec<(Option<LogId>, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snap") && p != keep)
        .filter_map(|p| snapshot::read_meta(&p).ok().map(|m| (m.last_log_id, p)))
        .collect();
    snaps.sort();
    snaps.pop(); // the newest other than `keep`
    for (_, p) in snaps {
        let _ = std::fs::remove_file(p);
    }
}

fn snapshot_file_name(meta: &SnapshotMeta) -> String {
    format!("{}.snap", codec::snapshot_id(meta))
}

impl StateReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(cf(&self.db, CF_SM), key)
            .map_err(Error::rocks("reading the state machine"))
    }

    /// The last applied log index (0: nothing applied).
    pub fn applied_index(&self) -> Result<u64> {
        Ok(read_meta_log_id(|k| self.get(k))?.map_or(0, |l| l.index))
    }

    /// Every key and value under `prefix`, in key order, from one consistent view; at most
    /// `limit` entries.
    pub fn scan_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_from(prefix, prefix, limit)
    }

    /// Like [`Self::scan_prefix`], starting at the first key `>= from` (paging).
    pub fn scan_from(
        &self,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let snap = self.db.snapshot();
        let sm = cf(&self.db, CF_SM);
        let mut out = Vec::new();
        let start = if from < prefix { prefix } else { from };
        let it = snap.iterator_cf(sm, IteratorMode::From(start, rocksdb::Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(Error::rocks("scanning the state machine"))?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// The values of `keys` (`None`: absent), from one consistent view. Point lookups: each
    /// skips memtables and files by their bloom filters, where a scan opens an iterator on
    /// every memtable and level-0 file, so this is the cheaper read for a handful of keys.
    pub fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let sm = cf(&self.db, CF_SM);
        self.db
            .multi_get_cf(keys.iter().map(|k| (sm, k.as_slice())))
            .into_iter()
            .map(|r| r.map_err(Error::rocks("reading the state machine")))
            .collect()
    }

    /// Keys and values in `[start, end)`, in key order, from one consistent view; at most
    /// `limit`. RocksDB stops at `end` itself, so nothing past it is read.
    pub fn scan_range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let snap = self.db.snapshot();
        let sm = cf(&self.db, CF_SM);
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(end.to_vec());
        let mut out = Vec::new();
        let it = snap.iterator_cf_opt(
            sm,
            opts,
            IteratorMode::From(start, rocksdb::Direction::Forward),
        );
        for item in it {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(Error::rocks("scanning the state machine"))?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Reads a register key and the applied index it reflects, from one consistent view.
    pub fn read_register(&self, user_key: &[u8]) -> Result<(Option<Vec<u8>>, u64)> {
        let snap = self.db.snapshot();
        let sm = cf(&self.db, CF_SM);
        let get = |k: &[u8]| {
            snap.get_cf(sm, k)
                .map_err(Error::rocks("reading the state machine"))
        };
        let applied = read_meta_log_id(get)?.map_or(0, |l| l.index);
        let value = get(&keys::register(user_key))?;
        Ok((value, applied))
    }

    /// SHA-256 over every state-machine key and value in key order, with the applied index
    /// it covers (both from one consistent view).
    pub fn digest(&self) -> Result<StateDigest> {
        let snap = self.db.snapshot();
        let sm = cf(&self.db, CF_SM);
        let mut hasher = StateHasher::default();
        let mut applied_index = 0;
        for item in snap.iterator_cf(sm, IteratorMode::Start) {
            let (k, v) = item.map_err(Error::rocks("iterating the state machine"))?;
            if *k == *keys::meta(MetaKey::LastAppliedLogId) {
                applied_index = pb::LogId::decode(&*v)
                    .map_err(|e| Error::Decode(format!("last applied log id: {e}")))?
                    .index;
            }
            hasher.add(&k, &v);
        }
        let (key_count, sha) = hasher.finish();
        Ok(StateDigest {
            applied_index,
            digest_hex: hex(&sha),
            key_count,
        })
    }
}

/// Builds a snapshot from a RocksDB snapshot taken when the builder was created.
pub struct SnapshotBuilder {
    result: Option<tokio::sync::oneshot::Receiver<Result<CurrentSnapshot>>>,
    current: Arc<Mutex<Option<CurrentSnapshot>>>,
    snapshot_dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> std::io::Result<Snapshot> {
        let rx = self
            .result
            .take()
            .ok_or_else(|| sto_io("snapshot builder used twice"))?;
        let built = rx
            .await
            .map_err(|_| sto_io("snapshot build thread died"))?
            .map_err(sto_io)?;
        tracing::info!(snapshot_id = %codec::snapshot_id(&built.meta), log_index = ?built.meta.last_log_id.map(|l| l.index), "built snapshot");
        *self.current.lock().expect("snapshot lock poisoned") = Some(built.clone());
        prune_snapshots(&self.snapshot_dir, &built.path);
        Ok(Snapshot {
            meta: built.meta,
            snapshot: SnapshotFile { path: built.path },
        })
    }
}

fn build_from_db(
    db: &DB,
    snapshot_dir: &std::path::Path,
    taken: std::sync::mpsc::Sender<()>,
) -> Result<CurrentSnapshot> {
    let started = Instant::now();
    let snap = db.snapshot();
    // Apply may continue now: everything below reads the point-in-time view.
    let _ = taken.send(());
    let sm = cf(db, CF_SM);
    let get = |k: &[u8]| {
        snap.get_cf(sm, k)
            .map_err(Error::rocks("reading the state machine"))
    };
    let last_log_id = read_meta_log_id(get)?;
    let last_membership = read_meta_membership(get)?;
    let meta = SnapshotMeta {
        last_log_id,
        last_membership,
    };
    let tmp = snapshot_dir.join(format!("{}.tmp", codec::snapshot_id(&meta)));
    let records = snap
        .iterator_cf(sm, IteratorMode::Start)
        .map(|r| r.map_err(Error::rocks("iterating the state machine")));
    snapshot::write(&tmp, &meta, records)?;
    let path = snapshot_dir.join(snapshot_file_name(&meta));
    std::fs::rename(&tmp, &path).map_err(Error::io(format!("renaming {}", tmp.display())))?;
    metrics::snapshot_built(started.elapsed());
    Ok(CurrentSnapshot { meta, path })
}

impl StateMachine {
    /// Applies committed entries through the engine in one RocksDB write batch; one response
    /// per entry, in order.
    fn apply_entries(&mut self, entries: Vec<Entry>) -> std::io::Result<Vec<ProposalResponse>> {
        let started = Instant::now();
        without_perf_counters();
        let mut store = BatchStore::cached(&self.db, &mut self.cache);
        let mut responses = Vec::new();
        let mut last = None;
        let mut membership = None;
        let mut woken = std::collections::BTreeSet::new();
        for e in entries {
            let _span = tracing::trace_span!(
                "apply",
                log_index = e.log_id.index,
                term = e.log_id.leader_id.term
            )
            .entered();
            match &e.payload {
                EntryPayload::Blank => responses.push(ProposalResponse::default()),
                EntryPayload::Normal(p) => {
                    let (r, meta) = keel_engine::apply_proposal(p, &mut store)
                        .map_err(|err| sto_io(format!("applying entry {}: {err}", e.log_id)))?;
                    for effect in &meta.effects {
                        effect.watch_keys(&mut woken);
                    }
                    responses.push(r);
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(e.log_id), m.clone()));
                    responses.push(ProposalResponse::default());
                }
            }
            last = Some(e.log_id);
        }
        let Some(last) = last else {
            return Ok(responses);
        };
        store.put(
            &keys::meta(MetaKey::LastAppliedLogId),
            &codec::log_id_to_pb(&last).encode_to_vec(),
        );
        if let Some(m) = membership {
            store.put(
                &keys::meta(MetaKey::LastMembership),
                &codec::stored_membership_to_pb(&m).encode_to_vec(),
            );
        }
        store
            .commit()
            .map_err(|e| sto_io(format!("writing entries up to {last}: {e}")))?;
        // Readable now: wake whoever waits on what changed.
        for key in &woken {
            self.watchers.notify(key);
        }
        metrics::apply_batch(started.elapsed(), responses.len());
        Ok(responses)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> std::io::Result<(Option<LogId>, StoredMembership)> {
        let reader = self.reader();
        let get = |k: &[u8]| reader.get(k);
        let last = read_meta_log_id(get).map_err(sto_io)?;
        let membership = read_meta_membership(get).map_err(sto_io)?;
        Ok((last, membership))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> std::io::Result<()>
    where
        Strm: futures::Stream<Item = std::io::Result<EntryResponder<TypeConfig>>>
            + Unpin
            + OptionalSend,
    {
        // One RocksDB batch for what is committed now; the clients are answered once it is
        // written.
        let batch: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let (entries, responders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let responses = self.apply_entries(entries)?;
        for (responder, response) in responders.into_iter().zip(responses) {
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let (taken_tx, taken_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let db = self.db.clone();
        let dir = self.snapshot_dir.clone();
        let spawned = std::thread::Builder::new()
            .name("keel-snapshot".into())
            .spawn(move || {
                let _ = done_tx.send(build_from_db(&db, &dir, taken_tx));
            });
        if spawned.is_ok() {
            // Wait until the point-in-time view exists, so it matches the applied state now.
            let _ = taken_rx.recv();
        }
        SnapshotBuilder {
            result: Some(done_rx),
            current: self.current.clone(),
            snapshot_dir: self.snapshot_dir.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> std::io::Result<()> {
        let started = Instant::now();
        let id = codec::snapshot_id(meta);
        let read_err = |e: Error| sto_io(format!("reading snapshot {id}: {e}"));
        let write_err = |e: Error| sto_io(format!("installing snapshot {id}: {e}"));
        // Verify the whole file before touching the state; the install below writes it in
        // bounded batches, so a bad trailer found at its end would come too late.
        let (file_meta, _, _) =
            snapshot::read_verified(&snapshot.path, |_, _| Ok(())).map_err(read_err)?;
        if file_meta.last_log_id != meta.last_log_id {
            return Err(read_err(Error::Decode(format!(
                "snapshot file covers {:?} but its metadata says {:?}",
                file_meta.last_log_id, meta.last_log_id
            ))));
        }
        // Keep the file under its final name first: an interrupted install is finished
        // from it when the node restarts.
        let path = self.snapshot_dir.join(snapshot_file_name(meta));
        if snapshot.path != path {
            if snapshot.path.starts_with(&self.snapshot_dir) {
                std::fs::rename(&snapshot.path, &path)
            } else {
                std::fs::copy(&snapshot.path, &path).map(|_| ())
            }
            .and_then(|()| std::fs::File::open(&path)?.sync_all())
            .and_then(|()| std::fs::File::open(&self.snapshot_dir)?.sync_all())?;
        }
        // The state is replaced: nothing cached holds any more (cleared first, so a failed
        // install cannot leave stale values behind either).
        self.cache.clear();
        let (count, _) = install_from_file(&self.db, &path).map_err(write_err)?;
        tracing::info!(snapshot_id = %id, records = count, elapsed_ms = started.elapsed().as_millis() as u64, "installed snapshot");
        *self.current.lock().expect("snapshot lock poisoned") = Some(CurrentSnapshot {
            meta: meta.clone(),
            path: path.clone(),
        });
        prune_snapshots(&self.snapshot_dir, &path);
        // Everything may have changed.
        self.watchers.notify_all();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> std::io::Result<Option<Snapshot>> {
        let current = self.current.lock().expect("snapshot lock poisoned").clone();
        Ok(current.map(|c| Snapshot {
            meta: c.meta,
            snapshot: SnapshotFile { path: c.path },
        }))
    }
}

/// Applies proposals to a RocksDB state machine outside Raft, one `WriteBatch` per call, as
/// the Raft apply path does for a batch of committed entries. For benchmarks and tools.
pub struct DirectApplier {
    sm: StateMachine,
    _log: crate::store::LogStore,
}

impl DirectApplier {
    /// Opens (or creates) a state machine in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        let (log, sm) = crate::store::open(dir, "direct-apply", 1)?;
        Ok(DirectApplier { sm, _log: log })
    }

    /// A reader of the applied state (what a node's frontend reads).
    pub fn reader(&self) -> StateReader {
        self.sm.reader()
    }

    /// Applies `proposals` in order and commits them together.
    pub fn apply_batch(
        &mut self,
        proposals: &[keel_engine::Proposal],
    ) -> Result<Vec<ProposalResponse>> {
        without_perf_counters();
        let sm = &mut self.sm;
        let mut store = BatchStore::cached(&sm.db, &mut sm.cache);
        let mut out = Vec::with_capacity(proposals.len());
        for p in proposals {
            out.push(keel_engine::apply_proposal(p, &mut store)?.0);
        }
        store
            .commit()
            .map_err(Error::rocks("committing an apply batch"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod conformance_test {
    //! The engine's store conformance checks on RocksDB (the apply path's batch store).

    use keel_engine::conformance::{check_store_semantics, run_workflow_scenario};
    use keel_engine::{apply_proposal, MemStore, ReadState};
    use rocksdb::IteratorMode;

    use super::{cf, BatchStore, CF_SM};

    fn open() -> (tempfile::TempDir, super::StateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let (_log, sm) = crate::store::open(dir.path(), "conformance", 1).unwrap();
        (dir, sm)
    }

    #[test]
    fn the_rocksdb_batch_store_conforms_within_and_across_batches() {
        let (_dir, sm) = open();
        let mut batch = BatchStore::new(&sm.db);
        check_store_semantics(&mut batch);
        batch.commit().unwrap();
        let after = BatchStore::new(&sm.db);
        assert_eq!(
            after.get(b"k").unwrap(),
            Some(b"v3".to_vec()),
            "committed writes are read back"
        );
        assert_eq!(after.get(b"\x00\xff").unwrap(), Some(Vec::new()));
        assert_eq!(sm.reader().get(b"k").unwrap(), Some(b"v3".to_vec()));
    }

    #[test]
    fn the_workflow_scenario_gives_identical_outcomes_and_contents_on_rocksdb_and_memory() {
        let mut mem = MemStore::new();
        let on_memory = run_workflow_scenario(&mut |p| apply_proposal(&p, &mut mem).unwrap().0);
        let (_dir, sm) = open();
        // Through the apply path's cache, kept across batches as a node keeps it.
        let mut cache = super::ApplyCache::new(1 << 20);
        let on_rocks = run_workflow_scenario(&mut |p| {
            let mut batch = BatchStore::cached(&sm.db, &mut cache);
            let (r, _) = apply_proposal(&p, &mut batch).unwrap();
            batch.commit().unwrap();
            r
        });
        assert_eq!(on_memory, on_rocks, "outcomes");
        let rocks: Vec<(Vec<u8>, Vec<u8>)> = sm
            .db
            .iterator_cf(cf(&sm.db, CF_SM), IteratorMode::Start)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        let memory: Vec<(Vec<u8>, Vec<u8>)> =
            mem.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert!(memory.len() > 20, "the scenario wrote state");
        assert_eq!(rocks, memory, "contents");
    }
}

#[cfg(test)]
mod install_test {
    //! Snapshot installs in bounded batches, and their completion after a stop.

    use openraft::storage::RaftStateMachine;
    use openraft::RaftSnapshotBuilder;

    use super::*;

    /// Enough state that an install takes several write batches.
    const RECORDS: usize = 24_000;
    const VALUE_BYTES: usize = 2_048;

    fn open(dir: &Path) -> StateMachine {
        crate::store::open(dir, "install", 1).unwrap().1
    }

    fn put(sm: &StateMachine, key: &[u8], value: &[u8]) {
        sm.db.put_cf(cf(&sm.db, CF_SM), key, value).unwrap();
    }

    fn marker(sm: &StateMachine) -> Option<Vec<u8>> {
        sm.db.get_cf(cf(&sm.db, CF_RAFT), KEY_INSTALLING).unwrap()
    }

    /// A source state machine with [`RECORDS`] records and its snapshot.
    async fn source(dir: &Path) -> (StateMachine, Snapshot) {
        let mut sm = open(dir);
        for i in 0..RECORDS {
            let value = vec![(i % 251) as u8; VALUE_BYTES];
            put(&sm, format!("rec-{i:08}").as_bytes(), &value);
        }
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        (sm, snap)
    }

    #[tokio::test]
    async fn an_install_replaces_the_state_in_bounded_batches() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, snap) = source(a.path()).await;
        let total = (RECORDS * VALUE_BYTES) as f64;
        assert!(
            total > 2.5 * INSTALL_BATCH_BYTES as f64,
            "the state spans several install batches"
        );
        let mut dst = open(b.path());
        put(&dst, b"stale-key", b"from before the snapshot");
        // Hand the snapshot over the way a receiving node does: a file of its own.
        let incoming = SnapshotFile {
            path: dst.snapshot_dir.join("incoming-test.tmp"),
        };
        std::fs::copy(&snap.snapshot.path, &incoming.path).unwrap();
        dst.install_snapshot(&snap.meta, incoming).await.unwrap();
        assert_eq!(
            dst.reader().digest().unwrap(),
            src.reader().digest().unwrap(),
            "the installed state is the source's, key for key (the stale key is gone)"
        );
        assert_eq!(marker(&dst), None, "a finished install leaves no marker");
        let current = dst.get_current_snapshot().await.unwrap().expect("kept");
        assert_eq!(current.meta, snap.meta);
        // The same install again, counted: many batches, none above the bound by more than
        // one record.
        let (records, batches) = install_from_file(&dst.db, &current.snapshot.path).unwrap();
        assert_eq!(records as usize, RECORDS);
        assert!(
            batches as f64 >= total / (INSTALL_BATCH_BYTES + VALUE_BYTES + 64) as f64,
            "{batches} batches for {total} bytes"
        );
        assert_eq!(
            dst.reader().digest().unwrap(),
            src.reader().digest().unwrap()
        );
    }

    #[tokio::test]
    async fn an_install_cut_short_is_finished_when_the_node_opens() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, snap) = source(a.path()).await;
        let name = snapshot_file_name(&snap.meta);
        {
            // The state a stop leaves mid-install: the marker synced, the file under its
            // final name, the old state partly replaced.
            let dst = open(b.path());
            std::fs::copy(&snap.snapshot.path, dst.snapshot_dir.join(&name)).unwrap();
            put(&dst, b"stale-key", b"old");
            put(&dst, b"rec-00000007", b"half-written");
            dst.db
                .put_cf(cf(&dst.db, CF_RAFT), KEY_INSTALLING, name.as_bytes())
                .unwrap();
        }
        let dst = open(b.path());
        assert_eq!(
            dst.reader().digest().unwrap(),
            src.reader().digest().unwrap(),
            "opening finished the install"
        );
        assert_eq!(marker(&dst), None);
        drop(dst);

        // Without its file the install cannot be finished: refuse to start on half a state.
        {
            let dst = open(b.path());
            dst.db
                .put_cf(cf(&dst.db, CF_RAFT), KEY_INSTALLING, b"gone.snap")
                .unwrap();
        }
        let err = crate::store::open(b.path(), "install", 1)
            .err()
            .expect("refused");
        assert!(
            matches!(err, Error::Corrupted { .. }) && err.to_string().contains("gone.snap"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_corrupt_file_is_refused_before_the_state_is_touched() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (_src, snap) = source(a.path()).await;
        let mut dst = open(b.path());
        put(&dst, b"kept", b"v");
        let before = dst.reader().digest().unwrap();
        let incoming = SnapshotFile {
            path: dst.snapshot_dir.join("incoming-test.tmp"),
        };
        let mut bytes = std::fs::read(&snap.snapshot.path).unwrap();
        // A flipped byte in the last record: found only by the trailer's digest.
        let near_end = bytes.len() - 100;
        bytes[near_end] ^= 0x01;
        std::fs::write(&incoming.path, bytes).unwrap();
        let err = dst
            .install_snapshot(&snap.meta, incoming)
            .await
            .expect_err("corrupt");
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert_eq!(dst.reader().digest().unwrap(), before, "state untouched");
        assert_eq!(marker(&dst), None);
    }
}
