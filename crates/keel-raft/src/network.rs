//! The client side of the peer protocol: openraft's `RaftNetwork`, plus the forwarding calls
//! a follower makes to the leader.
//!
//! AppendEntries and Vote go over the raw transport (`wire`): each openraft client (one per
//! replication stream, election or leadership check) holds one TCP connection while it
//! lives, taken from a small per-peer pool or opened with a short connect timeout, and
//! dropped on any error or timeout, so a healed partition reconnects on the next RPC.
//! Snapshots, forwarding and read-index use one lazily connected HTTP/2 channel per peer
//! address, with keepalive pings so a dead connection is noticed within about a second.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_proto::raft::v1 as pb;
use keel_proto::raft::v1::raft_service_client::RaftServiceClient;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use prost::Message;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::codec;
use crate::error::{Error, Result};
use crate::tls::{GrpcConnector, PeerStream, PeerTls};
use crate::typ::{KeelNode, NodeId, Snapshot, SnapshotFile, TypeConfig, Vote};
use crate::wire;

/// Message of the UNAVAILABLE status a node returns to a forwarded request when it is not
/// the leader (the peer protocol's marker for "retry elsewhere, nothing was proposed").
pub(crate) const NOT_LEADER_MESSAGE: &str = "not the leader";

/// Transport settings for peer connections.
#[derive(Debug, Clone)]
pub struct RpcSettings {
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub request_timeout: Duration,
    pub forward_timeout: Duration,
    pub snapshot_chunk_bytes: usize,
    /// Addresses to dial instead of a peer's membership address (fault-injection proxies).
    pub peer_routes: BTreeMap<NodeId, String>,
    /// Mutual TLS on every peer connection (see [`crate::tls`]); `None`: plain text.
    pub tls: Option<Arc<PeerTls>>,
}

impl RpcSettings {
    /// The address to dial for `target`, whose membership address is `addr`.
    pub fn route<'a>(&'a self, target: NodeId, addr: &'a str) -> &'a str {
        self.peer_routes.get(&target).map_or(addr, String::as_str)
    }
}

/// A switch that cuts this node off from its peers, both directions. For fault-injection
/// tests of an in-process cluster; a real deployment never sets it.
#[derive(Debug, Clone, Default)]
pub struct PeerFilter(Arc<AtomicBool>);

impl PeerFilter {
    pub fn set_isolated(&self, isolated: bool) {
        self.0.store(isolated, Ordering::SeqCst);
    }

    pub fn is_isolated(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Idle raw-transport connections kept per peer address (leadership checks run as many at
/// once as there are concurrent linearizable reads).
const IDLE_RAW_PER_PEER: usize = 32;

/// Connections to every peer, shared by replication and forwarding.
pub struct PeerClients {
    cluster_id: String,
    settings: RpcSettings,
    filter: PeerFilter,
    channels: Mutex<BTreeMap<String, Channel>>,
    /// Raw-transport connections no client is using, each between two calls (never
    /// half-read). openraft makes a fresh client per peer for every leadership check of a
    /// linearizable read; without this each of those would connect anew.
    idle_raw: Mutex<BTreeMap<String, Vec<BufReader<PeerStream>>>>,
}

impl PeerClients {
    pub fn new(cluster_id: String, settings: RpcSettings, filter: PeerFilter) -> Self {
        PeerClients {
            cluster_id,
            settings,
            filter,
            channels: Mutex::new(BTreeMap::new()),
            idle_raw: Mutex::new(BTreeMap::new()),
        }
    }

    fn take_idle(&self, addr: &str) -> Option<BufReader<PeerStream>> {
        self.idle_raw
            .lock()
            .expect("idle connection lock poisoned")
            .get_mut(addr)?
            .pop()
    }

    fn put_idle(&self, addr: &str, conn: BufReader<PeerStream>) {
        let mut idle = self.idle_raw.lock().expect("idle connection lock poisoned");
        let list = idle.entry(addr.to_string()).or_default();
        if list.len() < IDLE_RAW_PER_PEER {
            list.push(conn);
        }
    }

    pub fn settings(&self) -> &RpcSettings {
        &self.settings
    }

    fn client(&self, addr: &str) -> std::result::Result<RaftServiceClient<Channel>, tonic::Status> {
        if self.filter.is_isolated() {
            return Err(tonic::Status::unavailable(
                "peer traffic blocked by fault injection",
            ));
        }
        let mut channels = self.channels.lock().expect("channel map lock poisoned");
        if let Some(c) = channels.get(addr) {
            return Ok(RaftServiceClient::new(c.clone()));
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| tonic::Status::invalid_argument(format!("bad peer address {addr}: {e}")))?
            .connect_timeout(self.settings.connect_timeout)
            .http2_keep_alive_interval(self.settings.keepalive_interval)
            .keep_alive_timeout(self.settings.keepalive_timeout)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let channel = match &self.settings.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(GrpcConnector {
                tls: tls.clone(),
                addr: addr.to_string(),
                connect_timeout: self.settings.connect_timeout,
            }),
            None => endpoint.connect_lazy(),
        };
        channels.insert(addr.to_string(), channel.clone());
        Ok(RaftServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout);
        req
    }

    /// Sends a client proposal to the leader; returns the encoded response and log index.
    pub async fn forward(
        &self,
        leader: NodeId,
        addr: &str,
        proposal: Vec<u8>,
    ) -> Result<(Vec<u8>, u64)> {
        let mut client = self
            .client(self.settings.route(leader, addr))
            .map_err(|s| unreachable(leader, s))?;
        let req = self.request(
            pb::ForwardRequest {
                cluster_id: self.cluster_id.clone(),
                proposal,
            },
            self.settings.forward_timeout,
        );
        let resp = client
            .forward(req)
            .await
            .map_err(|s| remote(leader, s))?
            .into_inner();
        Ok((resp.response, resp.log_id.map_or(0, |l| l.index)))
    }

    /// Asks the leader for a read index.
    pub async fn read_index(&self, leader: NodeId, addr: &str) -> Result<u64> {
        let mut client = self
            .client(self.settings.route(leader, addr))
            .map_err(|s| unreachable(leader, s))?;
        let req = self.request(
            pb::ReadIndexRequest {
                cluster_id: self.cluster_id.clone(),
            },
            self.settings.request_timeout,
        );
        let resp = client
            .read_index(req)
            .await
            .map_err(|s| remote(leader, s))?
            .into_inner();
        Ok(resp.read_index)
    }
}

fn unreachable(leader: NodeId, s: tonic::Status) -> Error {
    Error::LeaderUnreachable {
        leader_id: leader,
        message: s.message().to_string(),
    }
}

/// Maps an error status from the leader back to the error it stands for.
fn remote(leader: NodeId, s: tonic::Status) -> Error {
    match s.code() {
        tonic::Code::Unavailable if s.message() == NOT_LEADER_MESSAGE => Error::NotLeader {
            leader_id: None,
            leader_client_addr: s
                .metadata()
                .get(keel_proto::LEADER_HINT_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        },
        tonic::Code::InvalidArgument => Error::InvalidRequest(s.message().to_string()),
        _ => unreachable(leader, s),
    }
}

/// openraft's factory of per-target network clients.
pub struct NetworkFactory {
    peers: Arc<PeerClients>,
}

impl NetworkFactory {
    pub fn new(peers: Arc<PeerClients>) -> Self {
        NetworkFactory { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &KeelNode) -> PeerNetwork {
        PeerNetwork {
            target,
            addr: self
                .peers
                .settings()
                .route(target, &node.peer_addr)
                .to_string(),
            peers: self.peers.clone(),
            conn: None,
        }
    }
}

/// openraft's client for one peer.
pub struct PeerNetwork {
    target: NodeId,
    addr: String,
    peers: Arc<PeerClients>,
    /// The raw-transport connection, between calls only: a call takes it out and puts it
    /// back when its response has been read, so a call abandoned half-way (openraft drops
    /// the future on timeout or shutdown) leaves no half-read connection behind. Returned to
    /// the pool in [`PeerClients`] when openraft drops this client.
    conn: Option<BufReader<PeerStream>>,
}

impl PeerNetwork {
    /// One request/response on the raw transport, within `ttl` (connecting included). A
    /// connection reused from the pool that turns out dead (the peer restarted) is replaced
    /// by a fresh one once: AppendEntries and Vote may be delivered twice.
    async fn call(
        &mut self,
        frame: Vec<u8>,
        ttl: Duration,
    ) -> std::result::Result<Vec<u8>, tonic::Status> {
        if self.peers.filter.is_isolated() {
            return Err(tonic::Status::unavailable(
                "peer traffic blocked by fault injection",
            ));
        }
        let reused = self
            .conn
            .take()
            .or_else(|| self.peers.take_idle(&self.addr));
        let connect_timeout = self.peers.settings.connect_timeout;
        let tls = self.peers.settings.tls.clone();
        let addr = self.addr.clone();
        let exchange = async move {
            let mut reused = reused;
            loop {
                let retry_allowed = reused.is_some();
                let (mut conn, fresh) = match reused.take() {
                    Some(c) => (c, false),
                    None => (connect(&addr, connect_timeout, tls.as_deref()).await?, true),
                };
                match exchange(&mut conn, fresh, &frame).await {
                    Ok((tag, body)) => return Ok::<_, std::io::Error>((conn, tag, body)),
                    Err(e) if retry_allowed => {
                        tracing::debug!(peer = %addr, error = %e, "reused peer connection failed; reconnecting");
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(ttl, exchange).await {
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer from {} within {ttl:?}",
                self.addr
            ))),
            Ok(Err(e)) => Err(tonic::Status::unavailable(format!(
                "peer {} at {}: {e}",
                self.target, self.addr
            ))),
            Ok(Ok((conn, tag, body))) => {
                self.conn = Some(conn);
                wire::response_result(tag, body)
            }
        }
    }
}

impl Drop for PeerNetwork {
    fn drop(&mut self) {
        // Only a connection between calls is ever here (see `conn`).
        if let Some(conn) = self.conn.take() {
            self.peers.put_idle(&self.addr, conn);
        }
    }
}

/// A TCP connection to `addr` within `timeout`, Nagle off.
pub(crate) async fn connect_tcp(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {addr} timed out"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A raw-transport connection to `addr`: TCP, then the TLS handshake if `tls` (within the
/// same `timeout`).
async fn connect(
    addr: &str,
    timeout: Duration,
    tls: Option<&PeerTls>,
) -> std::io::Result<BufReader<PeerStream>> {
    let tcp = connect_tcp(addr, timeout).await?;
    let stream = match tls {
        None => PeerStream::Plain(tcp),
        Some(tls) => {
            let handshake = tls.connect(addr, tcp, false);
            let s = tokio::time::timeout(timeout, handshake)
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("TLS handshake with {addr} timed out"),
                    )
                })??;
            PeerStream::Tls(Box::new(s))
        }
    };
    crate::metrics::peer_connection_opened();
    Ok(BufReader::new(stream))
}

/// Writes one request frame (after the preface on a fresh connection) and reads its response.
async fn exchange(
    conn: &mut BufReader<PeerStream>,
    fresh: bool,
    frame: &[u8],
) -> std::io::Result<(u8, Vec<u8>)> {
    use tokio::io::AsyncWriteExt;
    if fresh {
        conn.get_mut().write_all(wire::MAGIC).await?;
    }
    conn.get_mut().write_all(frame).await?;
    wire::read_frame(conn).await?.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the peer closed the connection",
        )
    })
}

type RpcErr = RPCError<TypeConfig>;

fn rpc_err(s: tonic::Status) -> RpcErr {
    match s.code() {
        // Connection refused / reset / blocked: back off briefly (see `backoff`).
        tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&s)),
        _ => RPCError::Network(NetworkError::new(&s)),
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<AppendEntriesResponse<TypeConfig>, RpcErr> {
        let req = pb::AppendEntriesRequest {
            cluster_id: self.peers.cluster_id.clone(),
            vote: Some(codec::vote_to_pb(&rpc.vote)),
            prev_log_id: codec::opt_log_id_to_pb(&rpc.prev_log_id),
            entries: rpc.entries.iter().map(codec::entry_to_pb).collect(),
            leader_commit: codec::opt_log_id_to_pb(&rpc.leader_commit),
        };
        let raw = self
            .call(
                wire::message_frame(wire::Tag::AppendEntries as u8, &req),
                option.hard_ttl(),
            )
            .await
            .map_err(rpc_err)?;
        let resp = pb::AppendEntriesResponse::decode(raw.as_slice()).map_err(|e| {
            rpc_err(tonic::Status::internal(format!(
                "append-entries response: {e}"
            )))
        })?;
        use pb::append_entries_response::Result as R;
        Ok(match resp.result {
            Some(R::Success(_)) => AppendEntriesResponse::Success,
            Some(R::PartialSuccess(p)) => {
                AppendEntriesResponse::PartialSuccess(codec::opt_log_id_from_pb(&p.matching))
            }
            Some(R::Conflict(_)) => AppendEntriesResponse::Conflict,
            Some(R::HigherVote(v)) => AppendEntriesResponse::HigherVote(codec::vote_from_pb(&v)),
            None => {
                return Err(RPCError::Network(NetworkError::new(
                    &tonic::Status::internal("append-entries response without result"),
                )))
            }
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> std::result::Result<VoteResponse<TypeConfig>, RpcErr> {
        let req = pb::VoteRequest {
            cluster_id: self.peers.cluster_id.clone(),
            vote: Some(codec::vote_to_pb(&rpc.vote)),
            last_log_id: codec::opt_log_id_to_pb(&rpc.last_log_id),
        };
        let raw = self
            .call(
                wire::message_frame(wire::Tag::Vote as u8, &req),
                option.hard_ttl(),
            )
            .await
            .map_err(rpc_err)?;
        let resp = pb::VoteResponse::decode(raw.as_slice())
            .map_err(|e| rpc_err(tonic::Status::internal(format!("vote response: {e}"))))?;
        Ok(VoteResponse {
            vote: codec::opt_vote_from_pb(&resp.vote),
            vote_granted: resp.vote_granted,
            last_log_id: codec::opt_log_id_from_pb(&resp.last_log_id),
        })
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> std::result::Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let net_err = |e: &dyn std::fmt::Display| {
            StreamingError::Network(NetworkError::new(&tonic::Status::unavailable(
                e.to_string(),
            )))
        };
        let mut client = self.peers.client(&self.addr).map_err(|s| net_err(&s))?;
        let path = snapshot.snapshot.path.clone();
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| net_err(&format!("opening snapshot {}: {e}", path.display())))?;
        let header = pb::SnapshotHeader {
            cluster_id: self.peers.cluster_id.clone(),
            vote: Some(codec::vote_to_pb(&vote)),
            meta: Some(codec::snapshot_meta_to_pb(&snapshot.meta)),
        };
        let chunk_bytes = self.peers.settings.snapshot_chunk_bytes;
        tracing::info!(target_node = self.target, snapshot_id = %codec::snapshot_id(&snapshot.meta), "streaming snapshot");
        let chunks = snapshot_chunks(file, header, chunk_bytes);
        let send = client.install_snapshot(chunks);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            resp = send => {
                let resp = resp.map_err(|s| net_err(&s))?.into_inner();
                Ok(SnapshotResponse { vote: codec::opt_vote_from_pb(&resp.vote) })
            }
        }
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(100))))
    }
}

/// The stream of messages carrying one snapshot file: header first, CRC-32 per chunk,
/// and a final message with the whole file's length and CRC-32.
fn snapshot_chunks(
    file: tokio::fs::File,
    header: pb::SnapshotHeader,
    chunk_bytes: usize,
) -> impl futures::Stream<Item = pb::SnapshotChunk> {
    struct State {
        file: Option<tokio::fs::File>,
        header: Option<pb::SnapshotHeader>,
        total: crc32fast::Hasher,
        len: u64,
    }
    let state = State {
        file: Some(file),
        header: Some(header),
        total: crc32fast::Hasher::new(),
        len: 0,
    };
    futures::stream::unfold(state, move |mut st| async move {
        let file = st.file.as_mut()?;
        let mut buf = vec![0u8; chunk_bytes];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    // Ending the stream without `done` makes the receiver discard it.
                    tracing::warn!(error = %e, "reading snapshot for streaming failed");
                    return None;
                }
            }
        }
        buf.truncate(filled);
        st.total.update(&buf);
        st.len += filled as u64;
        let done = filled < chunk_bytes;
        let msg = pb::SnapshotChunk {
            header: st.header.take(),
            crc32: crc32fast::hash(&buf),
            data: buf,
            done,
            total_len: if done { st.len } else { 0 },
            total_crc32: if done { st.total.clone().finalize() } else { 0 },
        };
        if done {
            st.file = None;
        }
        Some((msg, st))
    })
}
