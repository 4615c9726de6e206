//! [`RaftNode`]: one node's replication, as the rest of Keel sees it.
//!
//! Writes go through [`RaftNode::propose`]: on the leader they join the proposal batcher
//! (many client commands per log entry, one fsync for many entries); on a follower they are
//! forwarded to the leader; with no leader known they fail with [`Error::NoLeader`] after a
//! bounded wait. Reads are linearizable by default (ReadIndex through the leader, then the
//! local state once it has applied that index) or stale on request.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_engine::{Command, Proposal, ProposalResponse, Response};
use keel_proto::admin::v1 as admin;
use keel_proto::raft::v1::raft_service_server::RaftServiceServer;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{
    ClientWriteError, ForwardToLeader, InitializeError, LinearizableReadError, RaftError,
};
use openraft::raft::{ClientWriteResult, ReadPolicy};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::{Error, Result};
use crate::network::{NetworkFactory, PeerClients, PeerFilter, RpcSettings};
use crate::service::PeerService;
use crate::store::state_machine::{StateDigest, StateReader};
use crate::store::{self};
use crate::typ::{KeelNode, LogId, NodeId, Raft, RaftMetrics, TypeConfig};

/// Most scheduler yields the batcher spends waiting for a batch to fill.
const MAX_LINGER_YIELDS: usize = 16;
/// Bound on proposals queued for the batcher.
const PROPOSAL_QUEUE_CAPACITY: usize = 16_384;

/// Everything a node's replication layer needs to start.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub cluster_id: String,
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub self_node: KeelNode,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_every_entries: u64,
    pub keep_entries_after_snapshot: u64,
    pub purge_batch_size: u64,
    pub max_append_entries: u64,
    pub leader_wait_ms: u64,
    pub max_batch_commands: usize,
    pub max_in_flight_batches: usize,
    pub rpc: RpcSettings,
    pub allow_clock_offset: bool,
}

/// The outcome of a committed and applied proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposed {
    /// One response per proposed command, in order.
    pub responses: Vec<Response>,
    /// Index of the log entry that carried the commands.
    pub log_index: u64,
}

/// Read consistency requested by a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// ReadIndex through the leader: observes every write acknowledged before the read began.
    Linearizable,
    /// This node's applied state as is; may miss recent writes.
    Stale,
}

/// A register read and the applied index it observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRead {
    pub value: Option<Vec<u8>>,
    pub applied_index: u64,
}

struct Pending {
    commands: Vec<Command>,
    reply: oneshot::Sender<Result<(Vec<Response>, LogId)>>,
}

struct Inner {
    settings: RaftSettings,
    watchers: Arc<crate::watch::Watchers>,
    raft: Raft,
    peers: Arc<PeerClients>,
    reader: StateReader,
    committed: Arc<AtomicU64>,
    batch_tx: mpsc::Sender<Pending>,
    clock_offset_ms: Arc<AtomicI64>,
    last_leader_contact: Mutex<Option<Instant>>,
    filter: PeerFilter,
}

/// A running node's replication layer. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RaftNode {
    /// Opens the node's storage and starts Raft. Does not initialize membership; see
    /// [`RaftNode::initialize_if_new`].
    pub async fn start(settings: RaftSettings) -> Result<RaftNode> {
        let (log, sm) = open_store(&settings).await?;
        let reader = sm.reader();
        let watchers = sm.watchers();
        let committed = log.committed_index_handle();
        let config = Config {
            cluster_name: settings.cluster_id.clone(),
            heartbeat_interval: settings.heartbeat_interval_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            max_payload_entries: settings.max_append_entries,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every_entries),
            max_in_snapshot_log_to_keep: settings.keep_entries_after_snapshot,
            purge_batch_size: settings.purge_batch_size,
            // The peer protocol carries no pre-vote RPC: a follower campaigns on its timeout.
            enable_pre_vote: Some(false),
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::InvalidRequest(format!("raft config: {e}")))?;
        let filter = PeerFilter::default();
        let peers = Arc::new(PeerClients::new(
            settings.cluster_id.clone(),
            settings.rpc.clone(),
            filter.clone(),
        ));
        let raft = Raft::new(
            settings.node_id,
            Arc::new(config),
            NetworkFactory::new(peers.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;
        let (batch_tx, batch_rx) = mpsc::channel(PROPOSAL_QUEUE_CAPACITY);
        let clock_offset_ms = Arc::new(AtomicI64::new(0));
        tokio::spawn(run_batcher(
            raft.clone(),
            batch_rx,
            settings.max_batch_commands,
            settings.max_in_flight_batches,
            clock_offset_ms.clone(),
        ));
        tracing::info!(node_id = settings.node_id, cluster_id = %settings.cluster_id, data_dir = %settings.data_dir.display(), "raft node started");
        Ok(RaftNode {
            inner: Arc::new(Inner {
                settings,
                raft,
                peers,
                reader,
                watchers,
                committed,
                batch_tx,
                clock_offset_ms,
                last_leader_contact: Mutex::new(None),
                filter,
            }),
        })
    }

    /// Initializes the cluster's membership with `members` if this node has never been
    /// initialized. Returns whether it did. Safe on every restart: an initialized node
    /// (one with any log or vote) is never initialized again.
    pub async fn initialize_if_new(&self, members: BTreeMap<NodeId, KeelNode>) -> Result<bool> {
        let raft = &self.inner.raft;
        if raft
            .is_initialized()
            .await
            .map_err(|e| Error::Raft(e.to_string()))?
        {
            return Ok(false);
        }
        match raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node_id = self.id(), "initialized cluster membership");
                Ok(true)
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// The tonic service for peer traffic to this node.
    pub fn peer_service(&self) -> RaftServiceServer<PeerService> {
        RaftServiceServer::new(PeerService::new(self.clone()))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// The peer port's TLS, if on.
    pub(crate) fn peer_tls(&self) -> Option<Arc<crate::tls::PeerTls>> {
        self.inner.settings.rpc.tls.clone()
    }

    /// Peer TLS handshakes that failed on this node (0 without peer TLS).
    pub fn peer_tls_refused(&self) -> u64 {
        self.peer_tls().map_or(0, |t| t.refused())
    }

    pub fn id(&self) -> NodeId {
        self.inner.settings.node_id
    }

    pub fn cluster_id(&self) -> &str {
        &self.inner.settings.cluster_id
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The fault-injection switch of this node (tests only).
    pub fn filter(&self) -> &PeerFilter {
        &self.inner.filter
    }

    pub(crate) fn note_leader_contact(&self) {
        *self
            .inner
            .last_leader_contact
            .lock()
            .expect("lock poisoned") = Some(Instant::now());
    }

    pub(crate) fn incoming_snapshot_path(&self, snapshot_id: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        store::snapshot_dir(&self.inner.settings.data_dir)
            .join(format!("incoming-{snapshot_id}-{nanos}.tmp"))
    }

    fn metrics(&self) -> RaftMetrics {
        self.inner.raft.metrics().borrow_watched().clone()
    }

    /// A member's addresses from the current membership.
    pub fn member(&self, id: NodeId) -> Option<KeelNode> {
        self.metrics()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// The current leader, if this node knows one.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.metrics().current_leader
    }

    /// An error telling the caller who the leader is, when known.
    pub fn not_leader(&self) -> Error {
        let leader_id = self.current_leader().filter(|l| *l != self.id());
        Error::NotLeader {
            leader_id,
            leader_client_addr: leader_id
                .and_then(|l| self.member(l))
                .map(|n| n.client_addr),
        }
    }

    /// Runs a call to `leader`, giving it up once another leader is known. A call stuck on a
    /// leader that was replaced (paused, partitioned, dead but not yet noticed by the
    /// transport) then fails at once, so the client retries on the new leader instead of
    /// waiting for keepalives. The old leader may still commit a forwarded write: `what`
    /// says so where it matters.
    async fn unless_replaced<T>(
        &self,
        leader: NodeId,
        what: &str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            r = call => r,
            new = self.leader_replaced(leader) => Err(Error::LeaderUnreachable {
                leader_id: leader,
                message: format!("node {new} became leader while {what}"),
            }),
        }
    }

    /// Resolves once a leader other than `leader` is known (never, while `leader` stays).
    async fn leader_replaced(&self, leader: NodeId) -> NodeId {
        let mut rx = self.inner.raft.metrics();
        loop {
            if let Some(l) = rx
                .borrow_and_update()
                .current_leader
                .filter(|l| *l != leader)
            {
                return l;
            }
            if rx.changed().await.is_err() {
                // The node is shutting down; the request's own path reports that.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits (bounded by `raft.leader-wait-ms`) until some leader is known.
    pub async fn wait_for_leader(&self) -> Result<NodeId> {
        if let Some(l) = self.current_leader() {
            return Ok(l);
        }
        let waited_ms = self.inner.settings.leader_wait_ms;
        self.inner
            .raft
            .wait(Some(Duration::from_millis(waited_ms)))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .ok()
            .and_then(|m| m.current_leader)
            .ok_or(Error::NoLeader { waited_ms })
    }

    /// Replicates `commands` as (part of) one log entry and returns their responses once the
    /// entry is committed and applied. Forwarded to the leader when this node is not it.
    pub async fn propose(&self, commands: Vec<Command>) -> Result<Proposed> {
        if commands.is_empty() {
            return Err(Error::InvalidRequest(
                "a proposal needs at least one command".into(),
            ));
        }
        let leader = self.wait_for_leader().await?;
        if leader == self.id() {
            let (responses, log_id) = self.propose_local(commands).await?;
            return Ok(Proposed {
                responses,
                log_index: log_id.index,
            });
        }
        let node = self
            .member(leader)
            .ok_or(Error::NoLeader { waited_ms: 0 })?;
        let bytes = Proposal {
            proposed_at_ms: 0,
            commands,
        }
        .encode_to_vec();
        let (resp, log_index) = self
            .unless_replaced(
                leader,
                "the request was forwarded; outcome unknown",
                self.inner.peers.forward(leader, &node.peer_addr, bytes),
            )
            .await?;
        let resp = ProposalResponse::decode(resp.as_slice())
            .map_err(|e| Error::Decode(format!("forwarded response: {e}")))?;
        Ok(Proposed {
            responses: resp.responses,
            log_index,
        })
    }

    /// Proposes through this node's batcher; fails with `NotLeader` if it is not the leader.
    pub(crate) async fn propose_local(
        &self,
        commands: Vec<Command>,
    ) -> Result<(Vec<Response>, LogId)> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .batch_tx
            .send(Pending { commands, reply })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        // A leader cut off from its quorum cannot commit; give up after a bound. The outcome
        // is then unknown (the entry may still commit), which callers treat as retryable.
        let wait = self.inner.settings.rpc.forward_timeout;
        match tokio::time::timeout(wait, rx).await {
            Ok(reply) => reply.map_err(|_| Error::ShuttingDown)?,
            Err(_) => Err(Error::Timeout {
                what: "waiting for the proposal to commit (outcome unknown)".into(),
                waited_ms: wait.as_millis() as u64,
            }),
        }
    }

    /// On the leader: confirms leadership with a quorum and returns the index a linearizable
    /// read must observe (the leader has applied it already).
    pub(crate) async fn read_index_local(&self) -> Result<u64> {
        let wait_ms = self.inner.settings.leader_wait_ms;
        match tokio::time::timeout(
            Duration::from_millis(wait_ms),
            self.inner.raft.ensure_linearizable(ReadPolicy::ReadIndex),
        )
        .await
        {
            Err(_) => Err(Error::Timeout {
                what: "confirming leadership with a quorum".into(),
                waited_ms: wait_ms,
            }),
            Ok(Ok(read_log_id)) => Ok(read_log_id.index()),
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                Err(self.forward_error(f))
            }
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(q)))) => {
                Err(Error::Timeout {
                    what: format!("confirming leadership: {q}"),
                    waited_ms: wait_ms,
                })
            }
            Ok(Err(e)) => Err(Error::Raft(e.to_string())),
        }
    }

    fn forward_error(&self, f: ForwardToLeader<TypeConfig>) -> Error {
        Error::NotLeader {
            leader_id: f.leader_id,
            leader_client_addr: f.leader_node.map(|n| n.client_addr),
        }
    }

    /// Waits until this node has applied everything committed before the call (ReadIndex
    /// through the leader); local reads after it are linearizable. Returns the read index.
    pub async fn linearize(&self) -> Result<u64> {
        let leader = self.wait_for_leader().await?;
        let read_index = if leader == self.id() {
            self.read_index_local().await?
        } else {
            let node = self
                .member(leader)
                .ok_or(Error::NoLeader { waited_ms: 0 })?;
            self.unless_replaced(
                leader,
                "asking for a read index",
                self.inner.peers.read_index(leader, &node.peer_addr),
            )
            .await?
        };
        let wait_ms = self.inner.settings.leader_wait_ms;
        self.inner
            .raft
            .wait(Some(Duration::from_millis(wait_ms)))
            .applied_index_at_least(Some(read_index), "read index applied locally")
            .await
            .map_err(|_| Error::Timeout {
                what: format!("applying up to read index {read_index}"),
                waited_ms: wait_ms,
            })?;
        Ok(read_index)
    }

    /// Waits until this node's applied index exceeds `index`, or `timeout` passes; returns
    /// whether it did. For long polls that wait for new state.
    pub async fn wait_applied_beyond(&self, index: u64, timeout: Duration) -> bool {
        self.inner
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index + 1), "new entries applied")
            .await
            .is_ok()
    }

    /// This node's last applied index.
    pub fn applied_index(&self) -> u64 {
        self.metrics().last_applied.map_or(0, |l| l.index)
    }

    /// Reads a register key with the requested consistency.
    pub async fn read_register(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<RegisterRead> {
        if consistency == Consistency::Linearizable {
            self.linearize().await?;
        }
        let (value, applied_index) = self.inner.reader.read_register(key)?;
        Ok(RegisterRead {
            value,
            applied_index,
        })
    }

    /// Adds a non-voting learner and waits until it has caught up. Leader only.
    pub async fn add_learner(&self, id: NodeId, node: KeelNode) -> Result<u64> {
        let resp = self
            .inner
            .raft
            .add_learner(id, node, true)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(resp.log_id.index)
    }

    /// Replaces the voter set; nodes left out become learners if `retain`, else are removed.
    /// Leader only.
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>, retain: bool) -> Result<u64> {
        let resp = self
            .inner
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), retain)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(resp.log_id.index)
    }

    fn write_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Error {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => self.forward_error(f),
            // Appended, then dropped for another leader's log: it may still commit there.
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => Error::LeaderUnreachable {
                leader_id: f.leader_id.unwrap_or(0),
                message: "the write's log entry was replaced by a new leader's log; it may or may not have been committed".into(),
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                Error::InvalidRequest(c.to_string())
            }
            // Keel proposes no preconditions.
            RaftError::APIError(e @ ClientWriteError::PreconditionFailed(_)) => {
                Error::Raft(e.to_string())
            }
            RaftError::Fatal(f) => Error::Raft(f.to_string()),
        }
    }

    /// Builds a snapshot now and waits for it; returns the index it covers.
    pub async fn trigger_snapshot(&self) -> Result<u64> {
        let target = self.metrics().last_applied.map_or(0, |l| l.index);
        self.inner
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        let m = self
            .inner
            .raft
            .wait(Some(Duration::from_secs(60)))
            .metrics(
                |m| m.snapshot.map_or(0, |s| s.index) >= target,
                "snapshot covering the applied index",
            )
            .await
            .map_err(|e| Error::Timeout {
                what: format!("building a snapshot: {e}"),
                waited_ms: 60_000,
            })?;
        Ok(m.snapshot.map_or(0, |s| s.index))
    }

    /// Read access to this node's applied state (no consistency wait: a stale read).
    pub fn state(&self) -> &StateReader {
        &self.inner.reader
    }

    /// Wake-ups for what applies change (see [`crate::watch`]).
    pub fn watchers(&self) -> &crate::watch::Watchers {
        &self.inner.watchers
    }

    /// Digest of this node's state machine.
    pub fn state_digest(&self) -> Result<StateDigest> {
        self.inner.reader.digest()
    }

    /// Shifts the time this node stamps into entries as leader (tests only).
    pub fn set_clock_offset(&self, offset_ms: i64) -> Result<()> {
        if !self.inner.settings.allow_clock_offset {
            return Err(Error::NotEnabled(
                "clock offset is disabled; set testing.allow-clock-offset = true in this node's config".into(),
            ));
        }
        self.inner
            .clock_offset_ms
            .store(offset_ms, Ordering::SeqCst);
        tracing::warn!(
            node_id = self.id(),
            offset_ms,
            "clock offset set (test only)"
        );
        Ok(())
    }

    /// This node's view for the admin API.
    pub fn status(&self) -> admin::NodeStatus {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let members = membership
            .nodes()
            .map(|(id, n)| admin::Member {
                node_id: *id,
                peer_addr: n.peer_addr.clone(),
                client_addr: n.client_addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, l)| admin::Replication {
                        node_id: *id,
                        matched_index: l.map_or(0, |l| l.index),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let last_leader_contact_ms_ago = if m.state == ServerState::Leader {
            m.last_quorum_acked
                .as_ref()
                .map(|t| openraft::Instant::elapsed(&**t).as_millis() as u64)
        } else {
            self.inner
                .last_leader_contact
                .lock()
                .expect("lock poisoned")
                .map(|t| t.elapsed().as_millis() as u64)
        };
        admin::NodeStatus {
            node_id: m.id,
            cluster_id: self.cluster_id().to_string(),
            role: role.to_string(),
            term: m.current_term,
            leader_id: m.current_leader.unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: self.inner.committed.load(Ordering::Relaxed),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            members,
            replication,
            last_leader_contact_ms_ago,
        }
    }

    /// A watch on openraft's metrics, for waiting on conditions (tests, drivers).
    pub fn wait(&self, timeout: Duration) -> openraft::metrics::Wait<TypeConfig> {
        self.inner.raft.wait(Some(timeout))
    }

    /// Stops Raft. Storage closes once the last handle is dropped.
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown reported an error");
        }
    }

    /// Maps an error to the status a peer receives (peer protocol only; the client API maps
    /// errors in the server crate).
    pub(crate) fn to_peer_status(&self, e: Error) -> tonic::Status {
        match e {
            Error::NotLeader {
                leader_client_addr, ..
            } => {
                let mut s = tonic::Status::unavailable(crate::network::NOT_LEADER_MESSAGE);
                if let Some(addr) = leader_client_addr.and_then(|a| a.parse().ok()) {
                    s.metadata_mut()
                        .insert(keel_proto::LEADER_HINT_HEADER, addr);
                }
                s
            }
            Error::InvalidRequest(m) => tonic::Status::invalid_argument(m),
            other => tonic::Status::unavailable(other.to_string()),
        }
    }
}

async fn open_store(s: &RaftSettings) -> Result<(store::LogStore, store::StateMachine)> {
    let (dir, cluster, node) = (s.data_dir.clone(), s.cluster_id.clone(), s.node_id);
    tokio::task::spawn_blocking(move || store::open(&dir, &cluster, node))
        .await
        .map_err(|e| Error::Raft(format!("opening storage panicked: {e}")))?
}

async fn run_batcher(
    raft: Raft,
    mut rx: mpsc::Receiver<Pending>,
    max_commands: usize,
    max_in_flight: usize,
    clock_offset_ms: Arc<AtomicI64>,
) {
    let in_flight = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let mut prev_batch = 1;
    while let Some(first) = rx.recv().await {
        // Waiting for a slot lets more proposals queue up and join this batch.
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        let mut batch = vec![first];
        let mut n = batch[0].commands.len();
        // Linger while proposers answered by the previous batch are still re-proposing: up
        // to the previous batch's size, only as long as each yield brings more. An idle
        // proposer (previous batch of 1) never waits.
        let mut yields = 0;
        loop {
            while n < max_commands {
                match rx.try_recv() {
                    Ok(p) => {
                        n += p.commands.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            if n >= max_commands || n >= prev_batch || yields >= MAX_LINGER_YIELDS {
                break;
            }
            let before = n;
            tokio::task::yield_now().await;
            yields += 1;
            if rx.is_empty() && n == before && yields > 1 {
                break;
            }
        }
        prev_batch = n;
        let offset = clock_offset_ms.load(Ordering::Relaxed);
        let proposed_at_ms = (now_ms() as i64).saturating_add(offset).max(0) as u64;
        let proposed_at = Instant::now();
        let mut commands = Vec::with_capacity(n);
        let mut counts = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for p in batch {
            counts.push(p.commands.len());
            commands.extend(p.commands);
            replies.push(p.reply);
        }
        // Answered from apply (the entry's slot is released with it): each proposer gets its
        // commands' responses, or the batch's error.
        let reply = crate::typ::Reply::new(move |result: ClientWriteResult<TypeConfig>| {
            drop(permit);
            match result {
                Ok(resp) => {
                    crate::metrics::proposal(proposed_at.elapsed(), n);
                    assert_eq!(
                        resp.data.responses.len(),
                        n,
                        "apply returns one response per proposed command"
                    );
                    let mut responses = resp.data.responses.into_iter();
                    for (reply, count) in replies.into_iter().zip(counts) {
                        let mine: Vec<Response> = responses.by_ref().take(count).collect();
                        let _ = reply.send(Ok((mine, resp.log_id)));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let err = match &e {
                            ClientWriteError::ForwardToLeader(f) => Error::NotLeader {
                                leader_id: f.leader_id,
                                leader_client_addr: f
                                    .leader_node
                                    .as_ref()
                                    .map(|n| n.client_addr.clone()),
                            },
                            other => Error::Raft(other.to_string()),
                        };
                        let _ = reply.send(Err(err));
                    }
                }
            }
        });
        // Only a stopped Raft core refuses the hand-over; the reply is dropped with it, and
        // its proposers learn that the node is shutting down.
        if let Err(fatal) = raft
            .client_write_ff(
                Proposal {
                    proposed_at_ms,
                    commands,
                },
                Some(reply),
            )
            .await
        {
            tracing::warn!(error = %fatal, "the Raft core refused a proposal batch");
        }
    }
}
