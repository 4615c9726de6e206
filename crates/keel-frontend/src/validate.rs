//! Request validation with Temporal's limits and messages (its frontend's), before anything
//! is proposed: ids, types, queues and names are required and at most 1,000 characters, run
//! ids are UUIDs, timeouts are not negative.

use keel_proto::prost_wkt_types::Duration;
use keel_proto::temporalio_protos::temporal::api::common::v1::WorkflowExecution;
use tonic::Status;

/// Temporal's default `limit.maxIDLength`.
pub const MAX_ID_LENGTH: usize = 1000;

fn check(value: &str, required: bool, not_set: &str, too_long: &str) -> Result<(), Status> {
    if required && value.is_empty() {
        return Err(Status::invalid_argument(not_set));
    }
    if value.chars().count() > MAX_ID_LENGTH {
        return Err(Status::invalid_argument(too_long));
    }
    Ok(())
}

pub fn workflow_id(v: &str) -> Result<(), Status> {
    check(
        v,
        true,
        "WorkflowId is not set on request.",
        "WorkflowId length exceeds limit.",
    )
}

pub fn workflow_type(v: &str) -> Result<(), Status> {
    check(
        v,
        true,
        "WorkflowType is not set on request.",
        "WorkflowType length exceeds limit.",
    )
}

pub fn task_queue(v: &str) -> Result<(), Status> {
    check(
        v,
        true,
        "TaskQueue is not set on request.",
        "TaskQueue length exceeds limit.",
    )
}

pub fn signal_name(v: &str) -> Result<(), Status> {
    check(
        v,
        true,
        "SignalName is not set on request.",
        "SignalName length exceeds limit.",
    )
}

/// Temporal's default `limit.blobSize.error` (2 MiB): the largest payload one request or
/// command may carry.
pub const BLOB_SIZE_LIMIT_BYTES: usize = 2 * 1024 * 1024;

/// A request's payloads (`None` counts as empty) within the blob limit, with Temporal's
/// frontend message.
pub fn blob<M: prost::Message>(payloads: &Option<M>) -> Result<(), Status> {
    if payloads.as_ref().map_or(0, |p| p.encoded_len()) > BLOB_SIZE_LIMIT_BYTES {
        return Err(Status::invalid_argument("Blob data size exceeds limit."));
    }
    Ok(())
}

/// Optional, but bounded.
pub fn request_id(v: &str) -> Result<(), Status> {
    check(v, false, "", "RequestId length exceeds limit.")
}

/// Optional, but bounded.
pub fn identity(v: &str) -> Result<(), Status> {
    check(v, false, "", "Identity length exceeds limit.")
}

/// Empty (the current run) or a UUID.
pub fn run_id(v: &str) -> Result<(), Status> {
    if v.is_empty() || is_uuid(v) {
        Ok(())
    } else {
        Err(Status::invalid_argument("Invalid RunId."))
    }
}

/// A workflow execution named by a request.
pub fn execution(e: &Option<WorkflowExecution>) -> Result<&WorkflowExecution, Status> {
    let e = e
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("Execution is not set on request."))?;
    workflow_id(&e.workflow_id)?;
    run_id(&e.run_id)?;
    Ok(e)
}

/// A start's three timeouts: none negative.
pub fn start_timeouts(
    execution: &Option<Duration>,
    run: &Option<Duration>,
    task: &Option<Duration>,
) -> Result<(), Status> {
    let negative = |d: &Option<Duration>| d.as_ref().is_some_and(|d| d.seconds < 0 || d.nanos < 0);
    if negative(execution) {
        return Err(Status::invalid_argument(
            "An invalid WorkflowExecutionTimeoutSeconds is set on request.",
        ));
    }
    if negative(run) {
        return Err(Status::invalid_argument(
            "An invalid WorkflowRunTimeoutSeconds is set on request.",
        ));
    }
    if negative(task) {
        return Err(Status::invalid_argument(
            "An invalid WorkflowTaskTimeoutSeconds is set on request.",
        ));
    }
    Ok(())
}

/// 8-4-4-4-12 hexadecimal digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_messages_are_temporals() {
        assert!(workflow_id("order-42").is_ok());
        assert_eq!(
            workflow_id("").unwrap_err().message(),
            "WorkflowId is not set on request."
        );
        let long = "x".repeat(MAX_ID_LENGTH + 1);
        assert_eq!(
            workflow_id(&long).unwrap_err().message(),
            "WorkflowId length exceeds limit."
        );
        assert!(workflow_id(&"x".repeat(MAX_ID_LENGTH)).is_ok());
        assert_eq!(
            task_queue("").unwrap_err().message(),
            "TaskQueue is not set on request."
        );
        assert!(request_id("").is_ok());
        assert!(request_id(&long).is_err());
        assert!(run_id("").is_ok());
        assert!(run_id("8f7a2c3e-1b2d-4e5f-8a9b-0c1d2e3f4a5b").is_ok());
        assert_eq!(run_id("run-1").unwrap_err().message(), "Invalid RunId.");
        let minus = Some(Duration {
            seconds: -1,
            nanos: 0,
        });
        assert_eq!(
            start_timeouts(&None, &minus, &None).unwrap_err().message(),
            "An invalid WorkflowRunTimeoutSeconds is set on request."
        );
        assert!(start_timeouts(&None, &None, &None).is_ok());
        assert_eq!(
            execution(&None).unwrap_err().message(),
            "Execution is not set on request."
        );
    }
}
