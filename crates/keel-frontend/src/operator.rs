//! Temporal's `OperatorService`: the search attribute registry of a namespace (add, remove,
//! list). Registrations are replicated engine commands, so every node answers with the same
//! registry and a failover loses none. The cluster and Nexus RPCs answer UNIMPLEMENTED.

use keel_engine::command::Kind;
use keel_engine::workflow::search::{self, UpdateSearchAttributes};
use keel_engine::workflow::workflow_outcome::Kind as Outcome;
use keel_proto::temporal::operatorservice::v1::operator_service_server::OperatorService;
use keel_proto::temporalio_protos::temporal::api::operatorservice::v1 as op;
use tonic::{Request, Response, Status};

use crate::service::Frontend;
use crate::status::to_status;

/// The namespace an operator request names (Temporal's CLI sends `default` when unset).
fn namespace(ns: &str) -> Result<&str, Status> {
    if ns.is_empty() {
        Err(Status::invalid_argument("Namespace is not set on request."))
    } else {
        Ok(ns)
    }
}

fn answer(o: Outcome) -> Result<(), Status> {
    match o {
        Outcome::Accepted(_) => Ok(()),
        Outcome::NotFound(m) => Err(Status::not_found(m)),
        Outcome::InvalidArgument(m) => Err(Status::invalid_argument(m)),
        Outcome::AlreadyExists(m) => Err(Status::already_exists(m)),
        other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
    }
}

impl Frontend {
    /// Proposes one registry change of a namespace (Temporal's request checks first).
    async fn update_registry(
        &self,
        namespace: &str,
        add: std::collections::BTreeMap<String, i32>,
        remove: Vec<String>,
    ) -> Result<(), Status> {
        let ns = self::namespace(namespace)?;
        self.require_namespace(ns)?;
        if add.is_empty() && remove.is_empty() {
            return Err(Status::invalid_argument(
                "SearchAttributes are not set on request.",
            ));
        }
        let outcome = self
            .propose(Kind::UpdateSearchAttributes(UpdateSearchAttributes {
                namespace: ns.to_string(),
                add,
                remove,
            }))
            .await?;
        answer(outcome)
    }
}

#[tonic::async_trait]
impl OperatorService for Frontend {
    async fn add_search_attributes(
        &self,
        request: Request<op::AddSearchAttributesRequest>,
    ) -> Result<Response<op::AddSearchAttributesResponse>, Status> {
        let r = request.into_inner();
        let add = r.search_attributes.into_iter().collect();
        self.update_registry(&r.namespace, add, Vec::new()).await?;
        Ok(Response::new(op::AddSearchAttributesResponse::default()))
    }

    async fn remove_search_attributes(
        &self,
        request: Request<op::RemoveSearchAttributesRequest>,
    ) -> Result<Response<op::RemoveSearchAttributesResponse>, Status> {
        let r = request.into_inner();
        self.update_registry(&r.namespace, Default::default(), r.search_attributes)
            .await?;
        Ok(Response::new(op::RemoveSearchAttributesResponse::default()))
    }

    async fn list_search_attributes(
        &self,
        request: Request<op::ListSearchAttributesRequest>,
    ) -> Result<Response<op::ListSearchAttributesResponse>, Status> {
        let r = request.into_inner();
        let ns = namespace(&r.namespace)?;
        self.node().linearize().await.map_err(to_status)?;
        let record = self.require_namespace(ns)?;
        Ok(Response::new(list(&record.search_attributes)))
    }
}

/// System and predefined attributes with their types (read-only, listed for every namespace).
fn reserved_types() -> impl Iterator<Item = (String, i32)> {
    search::SYSTEM
        .iter()
        .chain(search::PREDEFINED)
        .map(|(k, t)| (k.to_string(), *t as i32))
}

/// The registry as Temporal lists it: custom attributes, and the system and predefined ones
/// under `system_attributes`.
pub(crate) fn list(
    custom: &std::collections::BTreeMap<String, i32>,
) -> op::ListSearchAttributesResponse {
    op::ListSearchAttributesResponse {
        custom_attributes: custom.iter().map(|(k, t)| (k.clone(), *t)).collect(),
        system_attributes: reserved_types().collect(),
        storage_schema: Default::default(),
    }
}

/// Every attribute name with its type, for the deprecated GetSearchAttributes.
pub(crate) fn all_types(
    custom: &std::collections::BTreeMap<String, i32>,
) -> std::collections::HashMap<String, i32> {
    reserved_types()
        .chain(custom.iter().map(|(k, t)| (k.clone(), *t)))
        .collect()
}
