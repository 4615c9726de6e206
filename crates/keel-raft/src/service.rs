//! The server side of the peer protocol.

use std::pin::Pin;

use futures::StreamExt;
use keel_proto::raft::v1 as pb;
use keel_proto::raft::v1::raft_service_server::RaftService;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use prost::Message;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::codec;
use crate::node::RaftNode;
use crate::typ::{Snapshot, SnapshotFile};

/// Serves `keel.raft.v1.RaftService` for one node.
pub struct PeerService {
    node: RaftNode,
}

impl PeerService {
    pub(crate) fn new(node: RaftNode) -> Self {
        PeerService { node }
    }

    fn admit(&self, cluster_id: &str) -> Result<(), Status> {
        if self.node.filter().is_isolated() {
            return Err(Status::unavailable(
                "peer traffic blocked by fault injection",
            ));
        }
        if cluster_id != self.node.cluster_id() {
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: this node belongs to {:?}, the request to {cluster_id:?}",
                self.node.cluster_id()
            )));
        }
        Ok(())
    }
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
        let req = request.into_inner();
        self.admit(&req.cluster_id)?;
        let entries = req
            .entries
            .iter()
            .map(codec::entry_from_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let rpc = AppendEntriesRequest {
            vote: req
                .vote
                .as_ref()
                .map(codec::vote_from_pb)
                .unwrap_or_default(),
            prev_log_id: codec::opt_log_id_from_pb(&req.prev_log_id),
            leader_commit: codec::opt_log_id_from_pb(&req.leader_commit),
            entries,
        };
        let resp = self
            .node
            .raft()
            .append_entries(rpc)
            .await
            .map_err(raft_status)?;
        if matches!(
            resp,
            AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_)
        ) {
            self.node.note_leader_contact();
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
        Ok(Response::new(pb::AppendEntriesResponse {
            result: Some(result),
        }))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let req = request.into_inner();
        self.admit(&req.cluster_id)?;
        let rpc = VoteRequest {
            vote: req
                .vote
                .as_ref()
                .map(codec::vote_from_pb)
                .unwrap_or_default(),
            last_log_id: codec::opt_log_id_from_pb(&req.last_log_id),
        };
        let resp = self.node.raft().vote(rpc).await.map_err(raft_status)?;
        Ok(Response::new(pb::VoteResponse {
            vote: Some(codec::vote_to_pb(&resp.vote)),
            vote_granted: resp.vote_granted,
            last_log_id: codec::opt_log_id_to_pb(&resp.last_log_id),
        }))
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
            .ok_or_else(|| Status::invalid_argument("snapshot header has no meta"))?;
        let vote = header
            .vote
            .as_ref()
            .map(codec::vote_from_pb)
            .unwrap_or_default();
        let path = self.node.incoming_snapshot_path(&meta.snapshot_id);
        let receive = receive_snapshot_file(&path, first, &mut stream).await;
        if let Err(e) = receive {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        tracing::info!(snapshot_id = %meta.snapshot_id, "received snapshot; installing");
        let snapshot = Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { path: path.clone() }),
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
