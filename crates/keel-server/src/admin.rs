//! `keel.admin.v1.Admin`: the operator API.

use std::collections::BTreeSet;
use std::time::Duration;

use keel_proto::admin::v1 as pb;
use keel_proto::admin::v1::admin_client::AdminClient;
use keel_proto::admin::v1::admin_server::Admin;
use keel_raft::{KeelNode, RaftNode};
use tonic::{Request, Response, Status};

use keel_frontend::status::to_status;

/// Deadline for asking one member for its status.
const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_secs(1);

pub struct AdminService {
    node: RaftNode,
    /// How to reach the other members' client ports when they serve TLS (files read per
    /// lookup, so reloaded certificates apply).
    tls: keel_config::TlsConfig,
}

impl AdminService {
    pub fn new(node: RaftNode, tls: keel_config::TlsConfig) -> Self {
        AdminService { node, tls }
    }

    fn members(&self) -> Vec<pb::Member> {
        self.node.status().members
    }
}

async fn member_status(
    member: &pb::Member,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<pb::NodeStatus, String> {
    let channel = crate::node::client_endpoint(&member.client_addr, tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(MEMBER_STATUS_TIMEOUT)
        .timeout(MEMBER_STATUS_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let resp = AdminClient::new(channel)
        .node_status(pb::NodeStatusRequest {})
        .await
        .map_err(|s| s.message().to_string())?;
    Ok(resp.into_inner())
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn node_status(
        &self,
        _: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        Ok(Response::new(self.node.status()))
    }

    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let local = self.node.status();
        let lookups = self.members().into_iter().map(|m| {
            let local = local.clone();
            let tls = crate::node::client_tls(&self.tls).map_err(|e| e.to_string());
            async move {
                let result = if m.node_id == local.node_id {
                    Ok(local)
                } else {
                    match tls {
                        Ok(tls) => member_status(&m, tls).await,
                        Err(e) => Err(e),
                    }
                };
                match result {
                    Ok(status) => pb::MemberStatus {
                        member: Some(m),
                        reachable: true,
                        status: Some(status),
                        error: String::new(),
                    },
                    Err(error) => pb::MemberStatus {
                        member: Some(m),
                        reachable: false,
                        status: None,
                        error,
                    },
                }
            }
        });
        let members = futures::future::join_all(lookups).await;
        Ok(Response::new(pb::ClusterStatusResponse {
            local: Some(local),
            members,
        }))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let req = request.into_inner();
        if req.node_id == 0 {
            return Err(Status::invalid_argument("node_id must be > 0"));
        }
        for (field, addr) in [
            ("peer_addr", &req.peer_addr),
            ("client_addr", &req.client_addr),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(Status::invalid_argument(format!(
                    "{field} {addr:?} is not ip:port"
                )));
            }
        }
        let log_index = self
            .node
            .add_learner(
                req.node_id,
                KeelNode {
                    peer_addr: req.peer_addr,
                    client_addr: req.client_addr,
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::MembershipResponse {
            log_index,
            members: self.members(),
        }))
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let req = request.into_inner();
        let voters: BTreeSet<u64> = req.voter_ids.iter().copied().collect();
        if voters.is_empty() {
            return Err(Status::invalid_argument(
                "voter_ids must name at least one node",
            ));
        }
        let log_index = self
            .node
            .change_membership(voters, req.retain)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::MembershipResponse {
            log_index,
            members: self.members(),
        }))
    }

    async fn trigger_snapshot(
        &self,
        _: Request<pb::TriggerSnapshotRequest>,
    ) -> Result<Response<pb::TriggerSnapshotResponse>, Status> {
        let snapshot_index = self.node.trigger_snapshot().await.map_err(to_status)?;
        Ok(Response::new(pb::TriggerSnapshotResponse {
            snapshot_index,
        }))
    }

    async fn state_digest(
        &self,
        _: Request<pb::StateDigestRequest>,
    ) -> Result<Response<pb::StateDigestResponse>, Status> {
        let d = self.node.state_digest().map_err(to_status)?;
        Ok(Response::new(pb::StateDigestResponse {
            applied_index: d.applied_index,
            digest: d.digest_hex,
            key_count: d.key_count,
        }))
    }

    async fn set_namespace_limits(
        &self,
        request: Request<pb::SetNamespaceLimitsRequest>,
    ) -> Result<Response<pb::SetNamespaceLimitsResponse>, Status> {
        use keel_engine::command::Kind;
        use keel_engine::response;
        use keel_engine::workflow::workflow_outcome::Kind as Outcome;
        let r = request.into_inner();
        if r.namespace.is_empty() {
            return Err(Status::invalid_argument("namespace is required"));
        }
        let proposed = self
            .node
            .propose(vec![keel_engine::Command {
                kind: Some(Kind::SetNamespaceLimits(
                    keel_engine::workflow::SetNamespaceLimits {
                        namespace: r.namespace,
                        suggest_continue_as_new_events: r.suggest_continue_as_new_events,
                        suggest_continue_as_new_bytes: r.suggest_continue_as_new_bytes,
                    },
                )),
            }])
            .await
            .map_err(to_status)?;
        match proposed.responses.into_iter().next().and_then(|r| r.kind) {
            Some(response::Kind::Workflow(o)) => match o.kind {
                Some(Outcome::Accepted(_)) => Ok(Response::new(pb::SetNamespaceLimitsResponse {})),
                Some(Outcome::NotFound(m)) => Err(Status::not_found(m)),
                other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
            },
            other => Err(Status::internal(format!("unexpected response {other:?}"))),
        }
    }

    async fn set_clock_offset(
        &self,
        request: Request<pb::SetClockOffsetRequest>,
    ) -> Result<Response<pb::SetClockOffsetResponse>, Status> {
        self.node
            .set_clock_offset(request.into_inner().offset_ms)
            .map_err(to_status)?;
        Ok(Response::new(pb::SetClockOffsetResponse {}))
    }
}
