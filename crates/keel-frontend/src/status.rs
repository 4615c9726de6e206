//! The one place where Keel errors become gRPC statuses for clients and operators, with the
//! codes and typed details the Temporal SDKs expect (temporal-compat.md §6).
//!
//! Not-leader and no-quorum conditions are UNAVAILABLE (retryable), with the leader's client
//! address in the `keel-leader-hint` metadata when it is known.

use keel_proto::prost_wkt_types::Any;
use keel_proto::temporalio_protos::google::rpc::Status as RpcStatus;
use keel_proto::temporalio_protos::temporal::api::errordetails::v1 as details;
use keel_raft::Error;
use prost::Message;
use tonic::{Code, Status};

/// A status whose `google.rpc.Status` details carry one typed Temporal failure.
fn with_detail<M: Message>(code: Code, message: String, full_name: &str, detail: &M) -> Status {
    let rpc = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![Any {
            type_url: format!("type.googleapis.com/{full_name}"),
            value: detail.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, rpc.encode_to_vec().into())
}

/// NOT_FOUND for a missing namespace.
pub fn namespace_not_found(namespace: &str) -> Status {
    with_detail(
        Code::NotFound,
        format!("namespace {namespace} is not found"),
        "temporal.api.errordetails.v1.NamespaceNotFoundFailure",
        &details::NamespaceNotFoundFailure {
            namespace: namespace.to_string(),
        },
    )
}

/// NOT_FOUND for a missing or closed run (signal, cancel, terminate).
pub fn run_not_found(message: String) -> Status {
    with_detail(
        Code::NotFound,
        message,
        "temporal.api.errordetails.v1.NotFoundFailure",
        &details::NotFoundFailure {
            current_cluster: "active".into(),
            active_cluster: "active".into(),
        },
    )
}

/// ALREADY_EXISTS for a workflow id in use; clients read the running run's id from it.
pub fn already_started(start_request_id: String, run_id: String) -> Status {
    with_detail(
        Code::AlreadyExists,
        "Workflow execution is already running".to_string(),
        "temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure",
        &details::WorkflowExecutionAlreadyStartedFailure {
            start_request_id,
            run_id,
            ..Default::default()
        },
    )
}

/// ALREADY_EXISTS for a schedule id in use, with the detail the SDKs read it by (a schedule
/// is a workflow in Temporal, hence WorkflowExecutionAlreadyStartedFailure).
pub fn schedule_exists(message: String) -> Status {
    with_detail(
        Code::AlreadyExists,
        message,
        "temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure",
        &details::WorkflowExecutionAlreadyStartedFailure::default(),
    )
}

/// INVALID_ARGUMENT for a query the workflow failed; SDKs read the failure from the detail.
pub fn query_failed(
    message: String,
    failure: Option<keel_proto::temporalio_protos::temporal::api::failure::v1::Failure>,
) -> Status {
    with_detail(
        Code::InvalidArgument,
        message,
        "temporal.api.errordetails.v1.QueryFailedFailure",
        &details::QueryFailedFailure { failure },
    )
}

/// Causes of RESOURCE_EXHAUSTED that Temporal names in its detail (the SDKs back off on them).
#[derive(Debug, Clone, Copy)]
pub enum Cause {
    ConcurrentLimit,
    BusyWorkflow,
}

/// RESOURCE_EXHAUSTED with Temporal's ResourceExhaustedFailure (scope: namespace).
pub fn resource_exhausted(cause: Cause, message: String) -> Status {
    use keel_proto::temporalio_protos::temporal::api::enums::v1::{
        ResourceExhaustedCause, ResourceExhaustedScope,
    };
    let cause = match cause {
        Cause::ConcurrentLimit => ResourceExhaustedCause::ConcurrentLimit,
        Cause::BusyWorkflow => ResourceExhaustedCause::BusyWorkflow,
    };
    with_detail(
        Code::ResourceExhausted,
        message,
        "temporal.api.errordetails.v1.ResourceExhaustedFailure",
        &details::ResourceExhaustedFailure {
            cause: cause as i32,
            scope: ResourceExhaustedScope::Namespace as i32,
        },
    )
}

/// FAILED_PRECONDITION with WorkflowNotReadyFailure (a run whose workflow task keeps failing).
pub fn workflow_not_ready(message: String) -> Status {
    with_detail(
        Code::FailedPrecondition,
        message,
        "temporal.api.errordetails.v1.WorkflowNotReadyFailure",
        &details::WorkflowNotReadyFailure {},
    )
}

/// ALREADY_EXISTS for a namespace that is registered already.
pub fn namespace_exists(message: String) -> Status {
    with_detail(
        Code::AlreadyExists,
        message,
        "temporal.api.errordetails.v1.NamespaceAlreadyExistsFailure",
        &details::NamespaceAlreadyExistsFailure {},
    )
}

/// Maps a replication-layer error to the status a client receives.
pub fn to_status(e: keel_raft::Error) -> Status {
    let code = match &e {
        Error::NotLeader { .. }
        | Error::NoLeader { .. }
        | Error::LeaderUnreachable { .. }
        | Error::Timeout { .. }
        | Error::ShuttingDown => Code::Unavailable,
        Error::InvalidRequest(_) => Code::InvalidArgument,
        Error::NotEnabled(_) | Error::IdentityMismatch { .. } => Code::FailedPrecondition,
        Error::Decode(_)
        | Error::RocksDb { .. }
        | Error::Corrupted { .. }
        | Error::Io { .. }
        | Error::Raft(_)
        | Error::Engine(_) => Code::Internal,
    };
    let hint = match &e {
        Error::NotLeader {
            leader_client_addr: Some(addr),
            ..
        } => addr.parse().ok(),
        _ => None,
    };
    let not_proposed = matches!(e, Error::NotLeader { .. } | Error::NoLeader { .. });
    let mut status = Status::new(code, e.to_string());
    if not_proposed {
        status.metadata_mut().insert(
            keel_proto::NOT_PROPOSED_HEADER,
            tonic::metadata::MetadataValue::from_static("true"),
        );
    }
    if let Some(hint) = hint {
        status
            .metadata_mut()
            .insert(keel_proto::LEADER_HINT_HEADER, hint);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_is_unavailable_with_a_hint() {
        let s = to_status(Error::NotLeader {
            leader_id: Some(2),
            leader_client_addr: Some("127.0.0.1:7202".into()),
        });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.metadata().get(keel_proto::LEADER_HINT_HEADER).unwrap(),
            "127.0.0.1:7202"
        );
        assert_eq!(
            s.metadata().get(keel_proto::NOT_PROPOSED_HEADER).unwrap(),
            "true"
        );
    }

    #[test]
    fn only_errors_raised_before_proposing_say_not_proposed() {
        let no_leader = to_status(Error::NoLeader { waited_ms: 5 });
        assert!(no_leader
            .metadata()
            .get(keel_proto::NOT_PROPOSED_HEADER)
            .is_some());
        for e in [
            Error::Timeout {
                what: "waiting for the proposal to commit".into(),
                waited_ms: 5,
            },
            Error::LeaderUnreachable {
                leader_id: 1,
                message: "reset".into(),
            },
            Error::ShuttingDown,
        ] {
            let s = to_status(e);
            assert!(
                s.metadata().get(keel_proto::NOT_PROPOSED_HEADER).is_none(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn already_started_carries_the_typed_detail_the_sdks_decode() {
        let s = already_started("req".into(), "run-1".into());
        assert_eq!(s.code(), Code::AlreadyExists);
        let rpc = RpcStatus::decode(s.details()).unwrap();
        assert_eq!(
            rpc.details[0].type_url,
            "type.googleapis.com/temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure"
        );
        let d = details::WorkflowExecutionAlreadyStartedFailure::decode(
            rpc.details[0].value.as_slice(),
        )
        .unwrap();
        assert_eq!(
            (d.start_request_id.as_str(), d.run_id.as_str()),
            ("req", "run-1")
        );
    }

    #[test]
    fn minority_side_errors_are_retryable_and_bad_input_is_not() {
        assert_eq!(
            to_status(Error::NoLeader { waited_ms: 5 }).code(),
            Code::Unavailable
        );
        assert_eq!(
            to_status(Error::InvalidRequest("x".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            to_status(Error::NotEnabled("x".into())).code(),
            Code::FailedPrecondition
        );
    }
}
