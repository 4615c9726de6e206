//! `keel.kv.v1.Kv`: the replicated key-value register.

use keel_engine::{response, Command};
use keel_proto::kv::v1 as pb;
use keel_proto::kv::v1::kv_server::Kv;
use keel_raft::{Consistency, RaftNode};
use tonic::{Request, Response, Status};

use keel_frontend::status::to_status;

/// Largest accepted key, bytes.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// Largest accepted value, bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

pub struct KvService {
    node: RaftNode,
}

impl KvService {
    pub fn new(node: RaftNode) -> Self {
        KvService { node }
    }

    async fn write(&self, cmd: Command) -> Result<Response<pb::WriteResponse>, Status> {
        let proposed = self.node.propose(vec![cmd]).await.map_err(to_status)?;
        let resp = proposed
            .responses
            .into_iter()
            .next()
            .ok_or_else(|| Status::internal("no response for a proposed command"))?;
        match resp.kind {
            Some(response::Kind::RegisterWrite(w)) => Ok(Response::new(pb::WriteResponse {
                succeeded: w.succeeded,
                previous: w.previous,
                log_index: proposed.log_index,
            })),
            Some(response::Kind::Rejected(r)) => Err(Status::invalid_argument(r.reason)),
            Some(response::Kind::Workflow(_)) | None => Err(Status::internal(
                "a register command got a response of another kind",
            )),
        }
    }
}

fn check(key: &[u8], value: Option<&[u8]>) -> Result<(), Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Status::invalid_argument(format!(
            "key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if let Some(v) = value {
        if v.len() > MAX_VALUE_BYTES {
            return Err(Status::resource_exhausted(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                v.len()
            )));
        }
    }
    Ok(())
}

fn consistency<T>(req: &Request<T>) -> Result<Consistency, Status> {
    match req.metadata().get(keel_proto::READ_CONSISTENCY_HEADER) {
        None => Ok(Consistency::Linearizable),
        Some(v) => match v.to_str() {
            Ok(keel_proto::READ_CONSISTENCY_STALE) => Ok(Consistency::Stale),
            Ok("linearizable") => Ok(Consistency::Linearizable),
            _ => Err(Status::invalid_argument(format!(
                "{}: expected \"stale\" or \"linearizable\"",
                keel_proto::READ_CONSISTENCY_HEADER
            ))),
        },
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        check(&r.key, Some(&r.value))?;
        self.write(Command::put(r.key, r.value)).await
    }

    async fn compare_and_set(
        &self,
        request: Request<pb::CompareAndSetRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        check(&r.key, Some(&r.value))?;
        self.write(Command::cas(r.key, r.expected, r.value)).await
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.into_inner();
        check(&r.key, None)?;
        self.write(Command::delete(r.key)).await
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let consistency = consistency(&request)?;
        // The fault-injection canary: a build that serves every read from local state, as
        // if it were linearizable. `keel-jepsen` must report such a build INVALID.
        #[cfg(feature = "jepsen-canary")]
        let (consistency, claimed) = (Consistency::Stale, consistency);
        #[cfg(not(feature = "jepsen-canary"))]
        let claimed = consistency;
        let key = request.into_inner().key;
        check(&key, None)?;
        let read = self
            .node
            .read_register(&key, consistency)
            .await
            .map_err(to_status)?;
        let mut resp = Response::new(pb::GetResponse {
            value: read.value,
            applied_index: read.applied_index,
            stale: claimed == Consistency::Stale,
        });
        resp.metadata_mut().insert(
            "keel-applied-index",
            read.applied_index
                .to_string()
                .parse()
                .expect("digits are valid metadata"),
        );
        Ok(resp)
    }
}
