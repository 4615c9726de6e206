//! The server side of the peer protocol: the peer port ([`serve_peers`]) with the raw
//! transport for AppendEntries and Vote (see `wire`) beside the gRPC `RaftService`.

use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use keel_proto::raft::v1 as pb;
use keel_proto::raft::v1::raft_service_server::RaftService;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

use crate::codec;
use crate::conn::Conn;
use crate::node::RaftNode;
use crate::typ::{Snapshot, SnapshotFile};
use crate::wire;

/// Serves `keel.raft.v1.RaftService` for one node.
pub struct PeerService {
    node: RaftNode,
}

impl PeerService {
    pub(crate) fn new(node: RaftNode) -> Self {
        PeerService { node }
    }

    fn admit(&self, cluster_id: &str) -> Result<(), Status> {
        admit(&self.node, cluster_id)
    }
}

/// Refuses peer requests while fault injection isolates the node, and requests of another
/// cluster.
fn admit(node: &RaftNode, cluster_id: &str) -> Result<(), Status> {
    if node.filter().is_isolated() {
        return Err(Status::unavailable(
            "peer traffic blocked by fault injection",
        ));
    }
    if cluster_id != node.cluster_id() {
        return Err(Status::failed_precondition(format!(
            "cluster id mismatch: this node belongs to {:?}, the request to {cluster_id:?}",
            node.cluster_id()
        )));
    }
    Ok(())
}

fn raft_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("raft: {e}"))
}

#[tonic::async_trait]
impl RaftService for PeerService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        append_entries(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        vote(&self.node, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let header = first
            .header
            .clone()
            .ok_or_else(|| Status::invalid_argument("first snapshot chunk has no header"))?;
        self.admit(&header.cluster_id)?;
        let meta = header
            .meta
            .as_ref()
            .map(codec::snapshot_meta_from_pb)
            .ok_or_else(|| Status::invalid_argument("snapshot header has no meta"))?
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let vote = codec::opt_vote_from_pb(&header.vote);
        let path = self.node.incoming_snapshot_path(&codec::snapshot_id(&meta));
        let receive = receive_snapshot_file(&path, first, &mut stream).await;
        if let Err(e) = receive {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        tracing::info!(snapshot_id = %codec::snapshot_id(&meta), "received snapshot; installing");
        let snapshot = Snapshot {
            meta,
            snapshot: SnapshotFile { path: path.clone() },
        };
        let resp = self.node.raft().install_full_snapshot(vote, snapshot).await;
        let _ = tokio::fs::remove_file(&path).await; // moved away on success
        let resp = resp.map_err(raft_status)?;
        Ok(Response::new(pb::InstallSnapshotResponse {
            vote: Some(codec::vote_to_pb(&resp.vote)),
        }))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let req = request.into_inner();
        self.admit(&req.cluster_id)?;
        let proposal = keel_engine::Proposal::decode(req.proposal.as_slice())
            .map_err(|e| Status::invalid_argument(format!("forwarded proposal: {e}")))?;
        let (responses, log_id) = self
            .node
            .propose_local(proposal.commands)
            .await
            .map_err(|e| self.node.to_peer_status(e))?;
        Ok(Response::new(pb::ForwardResponse {
            response: keel_engine::ProposalResponse { responses }.encode_to_vec(),
            log_id: Some(codec::log_id_to_pb(&log_id)),
        }))
    }

    async fn read_index(
        &self,
        request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        let req = request.into_inner();
        self.admit(&req.cluster_id)?;
        let read_index = self
            .node
            .read_index_local()
            .await
            .map_err(|e| self.node.to_peer_status(e))?;
        Ok(Response::new(pb::ReadIndexResponse {
            read_index,
            leader_id: self.node.id(),
        }))
    }
}

async fn append_entries(
    node: &RaftNode,
    req: pb::AppendEntriesRequest,
) -> Result<pb::AppendEntriesResponse, Status> {
    admit(node, &req.cluster_id)?;
    let entries = req
        .entries
        .iter()
        .map(codec::entry_from_pb)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let rpc = AppendEntriesRequest {
        vote: codec::opt_vote_from_pb(&req.vote),
        prev_log_id: codec::opt_log_id_from_pb(&req.prev_log_id),
        leader_commit: codec::opt_log_id_from_pb(&req.leader_commit),
        entries,
    };
    let resp = node.raft().append_entries(rpc).await.map_err(raft_status)?;
    if matches!(
        resp,
        AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)
    ) {
        node.note_leader_contact();
    }
    use pb::append_entries_response::Result as R;
    let result = match resp {
        AppendEntriesResponse::Success => R::Success(pb::Empty {}),
        AppendEntriesResponse::PartialSuccess(m) => R::PartialSuccess(pb::PartialSuccess {
            matching: codec::opt_log_id_to_pb(&m),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Empty {}),
        AppendEntriesResponse::HigherVote(v) => R::HigherVote(codec::vote_to_pb(&v)),
    };
    Ok(pb::AppendEntriesResponse {
        result: Some(result),
    })
}

async fn vote(node: &RaftNode, req: pb::VoteRequest) -> Result<pb::VoteResponse, Status> {
    admit(node, &req.cluster_id)?;
    let rpc = VoteRequest {
        vote: codec::opt_vote_from_pb(&req.vote),
        last_log_id: codec::opt_log_id_from_pb(&req.last_log_id),
        // Keel does not transfer leadership, so no vote request is part of one.
        leadership_transfer: false,
    };
    let resp = node.raft().vote(rpc).await.map_err(raft_status)?;
    Ok(pb::VoteResponse {
        vote: Some(codec::vote_to_pb(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: codec::opt_log_id_to_pb(&resp.last_log_id),
    })
}

/// How long a new peer connection may stay silent before its protocol is known.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the peer port until `shutdown` turns true: connections opening with
/// [`wire::MAGIC`] get the raw transport (AppendEntries, Vote), every other connection the
/// gRPC `RaftService` (snapshots, forwarding, read-index, and the Raft RPCs too).
///
/// gRPC connections are tracked in `tracked` (cut by an in-process crash; raw ones end with
/// this future).
pub async fn serve_peers(
    node: RaftNode,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    tracked: crate::conn::Connections,
) -> Result<(), tonic::transport::Error> {
    let (grpc_tx, grpc_rx) = mpsc::channel::<std::io::Result<Conn>>(64);
    let mut grpc_shutdown = shutdown.clone();
    let grpc = tonic::transport::Server::builder()
        .add_service(node.peer_service())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::ReceiverStream::new(grpc_rx),
            async move { stopped(&mut grpc_shutdown).await },
        );
    // Connection tasks live in a set owned by this future, so they end with it: a node
    // whose tasks are aborted (an in-process crash) drops its peer connections mid-request.
    let accept = async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let stream = tokio::select! {
                _ = stopped(&mut shutdown) => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: keep serving the connections
                        // that exist, and try again shortly.
                        tracing::warn!(error = %e, "accepting a peer connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            while conns.try_join_next().is_some() {}
            let _ = stream.set_nodelay(true);
            let node = node.clone();
            let grpc_tx = grpc_tx.clone();
            let shutdown = shutdown.clone();
            let tracker = tracked.clone();
            conns.spawn(async move {
                if let Some(tls) = node.peer_tls() {
                    return serve_tls(node, tls, stream, grpc_tx, shutdown, tracker).await;
                }
                let mut first = [0u8; 1];
                match tokio::time::timeout(SNIFF_TIMEOUT, stream.peek(&mut first)).await {
                    Ok(Ok(1)) if first[0] == wire::MAGIC[0] => {
                        serve_raw(node, stream, shutdown).await;
                    }
                    Ok(Ok(1)) => {
                        let _ = grpc_tx.send(tracker.track(stream).map(Conn::Plain)).await;
                    }
                    // Closed, failed or silent before saying anything.
                    _ => {}
                }
            });
        }
        // Ends the raw connections and the sniffing (whose senders keep the gRPC server's
        // incoming stream open) at once; the node is going away.
        drop(grpc_tx);
        conns.shutdown().await;
    };
    let ((), served) = tokio::join!(accept, grpc);
    served
}

/// A peer connection under TLS: the handshake (a client certificate of the cluster's CA
/// required), then the protocol the client named in ALPN.
async fn serve_tls(
    node: RaftNode,
    tls: std::sync::Arc<crate::tls::PeerTls>,
    stream: TcpStream,
    grpc_tx: mpsc::Sender<std::io::Result<Conn>>,
    shutdown: watch::Receiver<bool>,
    tracker: crate::conn::Connections,
) {
    let peer = stream.peer_addr().ok();
    let Ok(tracked) = tracker.track(stream) else {
        return;
    };
    match tokio::time::timeout(SNIFF_TIMEOUT, tls.acceptor().accept(tracked)).await {
        Ok(Ok(s)) if s.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_RAW) => {
            serve_raw(node, s, shutdown).await;
        }
        Ok(Ok(s)) => {
            let _ = grpc_tx.send(Ok(Conn::Tls(Box::new(s)))).await;
        }
        Ok(Err(e)) => {
            tls.count_refused();
            tracing::warn!(peer = ?peer, error = %e, "refused a peer connection: TLS handshake failed");
        }
        Err(_) => tracing::debug!(peer = ?peer, "a peer TLS handshake timed out"),
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// One raw-transport connection: read a request, answer it, repeat, until the peer closes
/// the connection, sends something malformed, or the node shuts down.
async fn serve_raw<S: AsyncRead + AsyncWrite + Unpin>(
    node: RaftNode,
    stream: S,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut stream = tokio::io::BufReader::new(stream);
    let mut magic = [0u8; 4];
    if stream.read_exact(&mut magic).await.is_err() || &magic != wire::MAGIC {
        tracing::debug!("peer connection with an unknown preface; closing it");
        return;
    }
    let serve = async {
        loop {
            let (tag, body) = match wire::read_frame(&mut stream).await {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "reading a peer frame failed; closing the connection");
                    return;
                }
            };
            let answer = match wire::Tag::from_u8(tag) {
                Some(wire::Tag::AppendEntries) => {
                    match pb::AppendEntriesRequest::decode(body.as_slice()) {
                        Ok(req) => append_entries(&node, req)
                            .await
                            .map(|r| wire::message_frame(wire::OK, &r)),
                        Err(e) => Err(Status::invalid_argument(format!(
                            "append-entries request: {e}"
                        ))),
                    }
                }
                Some(wire::Tag::Vote) => match pb::VoteRequest::decode(body.as_slice()) {
                    Ok(req) => vote(&node, req)
                        .await
                        .map(|r| wire::message_frame(wire::OK, &r)),
                    Err(e) => Err(Status::invalid_argument(format!("vote request: {e}"))),
                },
                None => Err(Status::unimplemented(format!(
                    "unknown peer request tag {tag}"
                ))),
            };
            let frame = answer.unwrap_or_else(|status| wire::error_frame(&status));
            if let Err(e) = stream.get_mut().write_all(&frame).await {
                tracing::debug!(error = %e, "writing a peer response failed; closing the connection");
                return;
            }
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = stopped(&mut shutdown) => {}
    }
}

type ChunkStream = Streaming<pb::SnapshotChunk>;

async fn receive_snapshot_file(
    path: &std::path::Path,
    first: pb::SnapshotChunk,
    stream: &mut ChunkStream,
) -> Result<(), Status> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Status::internal(format!("creating {}: {e}", path.display())))?;
    let mut total = crc32fast::Hasher::new();
    let mut len = 0u64;
    let mut next = Some(first);
    while let Some(chunk) = next.take() {
        if crc32fast::hash(&chunk.data) != chunk.crc32 {
            return Err(Status::data_loss(format!(
                "snapshot chunk at offset {len} failed its CRC check"
            )));
        }
        total.update(&chunk.data);
        len += chunk.data.len() as u64;
        file.write_all(&chunk.data)
            .await
            .map_err(|e| Status::internal(format!("writing {}: {e}", path.display())))?;
        if chunk.done {
            if chunk.total_len != len || chunk.total_crc32 != total.clone().finalize() {
                return Err(Status::data_loss(
                    "assembled snapshot failed its length/CRC check",
                ));
            }
            file.sync_all()
                .await
                .map_err(|e| Status::internal(format!("syncing {}: {e}", path.display())))?;
            return Ok(());
        }
        next = Some(
            Pin::new(&mut *stream)
                .next()
                .await
                .ok_or_else(|| Status::aborted("snapshot stream ended before its last chunk"))??,
        );
    }
    Err(Status::aborted(
        "snapshot stream ended before its last chunk",
    ))
}
