//! Engine history events → Temporal `HistoryEvent`s.
//!
//! The engine stores payloads, failures and headers as the encoded bytes of Temporal's
//! messages; they are decoded here and placed in the attributes of the matching event type.

use keel_engine::workflow::{self as wf, Attributes as A};
use keel_proto::temporalio_protos::temporal::api::common::v1::{
    ActivityType, Header, Payloads, WorkflowExecution, WorkflowType,
};
use keel_proto::temporalio_protos::temporal::api::enums::v1::EventType;
use keel_proto::temporalio_protos::temporal::api::failure::v1::Failure;
use keel_proto::temporalio_protos::temporal::api::history::v1::{
    self as h, history_event::Attributes as T,
};
use keel_proto::temporalio_protos::temporal::api::sdk::v1::WorkflowTaskCompletedMetadata;
use keel_proto::temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use prost::Message;

use crate::convert::{decoded, duration, opt_timestamp, timestamp};

/// Ranges of fewer events than this are read with point lookups, longer ones with a scan.
const POINT_READS_UP_TO: i64 = 16;

/// Events `from..=to` of `run` as this node has applied them, in order; stops at the first
/// missing event. A few events (a sticky task's new ones) are read with one batch of point
/// lookups, more with one range scan (not a point read per event).
pub fn read_events(
    state: &keel_raft::StateReader,
    run: &wf::RunKey,
    from: i64,
    to: i64,
) -> Result<Vec<wf::HistoryEvent>, tonic::Status> {
    let from = from.max(1);
    if to < from {
        return Ok(Vec::new());
    }
    let key = |id: i64| {
        keel_engine::keys::history_event(&run.namespace, &run.workflow_id, &run.run_id, id)
    };
    let decode = |v: &[u8]| {
        wf::HistoryEvent::decode(v)
            .map_err(|e| tonic::Status::internal(format!("corrupt history event: {e}")))
    };
    let read_err = |e: keel_raft::Error| tonic::Status::internal(format!("reading history: {e}"));
    let mut out = Vec::with_capacity((to - from + 1) as usize);
    if to - from < POINT_READS_UP_TO {
        // The few new events of a sticky task: point lookups.
        let keys: Vec<Vec<u8>> = (from..=to).map(key).collect();
        for v in state.get_many(&keys).map_err(read_err)? {
            // Stop at the first gap, like the scan below.
            let Some(v) = v else { break };
            out.push(decode(&v)?);
        }
        return Ok(out);
    }
    let rows = state
        .scan_range(&key(from), &key(to + 1), (to - from + 1) as usize)
        .map_err(read_err)?;
    for (k, v) in rows {
        // A history key ends with its event id (big-endian); stop at the first gap.
        let expected = (from + out.len() as i64) as u64;
        if !k.ends_with(&expected.to_be_bytes()) {
            break;
        }
        out.push(decode(&v)?);
    }
    Ok(out)
}

fn payloads(bytes: &[u8]) -> Option<Payloads> {
    decoded(bytes)
}

fn failure(bytes: &[u8]) -> Option<Failure> {
    decoded(bytes)
}

fn queue(name: &str) -> Option<TaskQueue> {
    Some(TaskQueue {
        name: name.to_string(),
        kind: 1, // NORMAL
        ..Default::default()
    })
}

fn opt_duration(ms: u64) -> Option<keel_proto::prost_wkt_types::Duration> {
    (ms > 0).then(|| duration(ms))
}

/// Converts one stored event for the wire.
pub fn to_temporal(e: &wf::HistoryEvent, run: &wf::RunKey) -> h::HistoryEvent {
    let (event_type, attributes) = match e.attributes.as_ref() {
        None => (EventType::Unspecified, None),
        Some(a) => {
            let (t, attrs) = attributes(a, run);
            (t, Some(attrs))
        }
    };
    h::HistoryEvent {
        event_id: e.event_id,
        event_time: Some(timestamp(e.event_time_ms)),
        event_type: event_type as i32,
        attributes,
        user_metadata: decoded(&e.user_metadata),
        ..Default::default()
    }
}

fn child_execution(workflow_id: &str, run_id: &str) -> Option<WorkflowExecution> {
    Some(WorkflowExecution {
        workflow_id: workflow_id.to_string(),
        run_id: run_id.to_string(),
    })
}

fn execution_of(run: &Option<wf::RunKey>) -> Option<WorkflowExecution> {
    run.as_ref().map(|r| WorkflowExecution {
        workflow_id: r.workflow_id.clone(),
        run_id: r.run_id.clone(),
    })
}

fn wtype(name: &str) -> Option<WorkflowType> {
    Some(WorkflowType {
        name: name.to_string(),
    })
}

fn attributes(a: &A, run: &wf::RunKey) -> (EventType, T) {
    let workflow_id = run.workflow_id.as_str();
    let namespace = run.namespace.clone();
    match a {
        A::WorkflowExecutionStarted(x) => (
            EventType::WorkflowExecutionStarted,
            T::WorkflowExecutionStartedEventAttributes(
                h::WorkflowExecutionStartedEventAttributes {
                    workflow_type: Some(WorkflowType {
                        name: x.workflow_type.clone(),
                    }),
                    task_queue: queue(&x.task_queue),
                    input: payloads(&x.input),
                    workflow_execution_timeout: opt_duration(x.execution_timeout_ms),
                    workflow_run_timeout: opt_duration(x.run_timeout_ms),
                    workflow_task_timeout: Some(duration(x.workflow_task_timeout_ms)),
                    original_execution_run_id: x.original_execution_run_id.clone(),
                    identity: x.identity.clone(),
                    first_execution_run_id: x.first_execution_run_id.clone(),
                    attempt: x.attempt,
                    workflow_id: workflow_id.to_string(),
                    continued_execution_run_id: x.continued_execution_run_id.clone(),
                    header: decoded(&x.header),
                    memo: decoded(&x.memo),
                    search_attributes: decoded(&x.search_attributes),
                    first_workflow_task_backoff: opt_duration(x.first_workflow_task_backoff_ms),
                    workflow_execution_expiration_time: opt_timestamp(x.execution_expiration_ms),
                    last_completion_result: payloads(&x.last_completion_result),
                    continued_failure: failure(&x.continued_failure),
                    initiator: x.initiator,
                    parent_workflow_namespace: x
                        .parent
                        .as_ref()
                        .map(|p| p.namespace.clone())
                        .unwrap_or_default(),
                    parent_workflow_execution: execution_of(&x.parent),
                    parent_initiated_event_id: x.parent_initiated_event_id,
                    root_workflow_execution: execution_of(&x.root),
                    retry_policy: x
                        .retry_policy
                        .as_ref()
                        .map(crate::tasks::retry_policy_to_temporal),
                    cron_schedule: x.cron_schedule.clone(),
                    ..Default::default()
                },
            ),
        ),
        A::WorkflowTaskScheduled(x) => (
            EventType::WorkflowTaskScheduled,
            T::WorkflowTaskScheduledEventAttributes(h::WorkflowTaskScheduledEventAttributes {
                task_queue: queue(&x.task_queue),
                start_to_close_timeout: Some(duration(x.start_to_close_timeout_ms)),
                attempt: x.attempt,
            }),
        ),
        A::WorkflowTaskStarted(x) => (
            EventType::WorkflowTaskStarted,
            T::WorkflowTaskStartedEventAttributes(h::WorkflowTaskStartedEventAttributes {
                scheduled_event_id: x.scheduled_event_id,
                identity: x.identity.clone(),
                request_id: x.request_id.clone(),
                history_size_bytes: x.history_size_bytes as i64,
                suggest_continue_as_new: x.suggest_continue_as_new,
                ..Default::default()
            }),
        ),
        A::WorkflowTaskCompleted(x) => (
            EventType::WorkflowTaskCompleted,
            T::WorkflowTaskCompletedEventAttributes(h::WorkflowTaskCompletedEventAttributes {
                scheduled_event_id: x.scheduled_event_id,
                started_event_id: x.started_event_id,
                identity: x.identity.clone(),
                sdk_metadata: decoded::<WorkflowTaskCompletedMetadata>(&x.sdk_metadata),
                ..Default::default()
            }),
        ),
        A::WorkflowTaskFailed(x) => (
            EventType::WorkflowTaskFailed,
            T::WorkflowTaskFailedEventAttributes(h::WorkflowTaskFailedEventAttributes {
                scheduled_event_id: x.scheduled_event_id,
                started_event_id: x.started_event_id,
                cause: x.cause,
                failure: failure(&x.failure).or_else(|| {
                    (!x.message.is_empty()).then(|| Failure {
                        message: x.message.clone(),
                        ..Default::default()
                    })
                }),
                identity: x.identity.clone(),
                base_run_id: x.base_run_id.clone(),
                new_run_id: x.new_run_id.clone(),
                ..Default::default()
            }),
        ),
        A::WorkflowTaskTimedOut(x) => (
            EventType::WorkflowTaskTimedOut,
            T::WorkflowTaskTimedOutEventAttributes(h::WorkflowTaskTimedOutEventAttributes {
                scheduled_event_id: x.scheduled_event_id,
                started_event_id: x.started_event_id,
                timeout_type: x.timeout_type,
            }),
        ),
        A::ActivityTaskScheduled(x) => (
            EventType::ActivityTaskScheduled,
            T::ActivityTaskScheduledEventAttributes(h::ActivityTaskScheduledEventAttributes {
                activity_id: x.activity_id.clone(),
                activity_type: Some(ActivityType {
                    name: x.activity_type.clone(),
                }),
                task_queue: queue(&x.task_queue),
                input: payloads(&x.input),
                // The normalized timeouts, always present (0: none), as Temporal records them.
                schedule_to_close_timeout: Some(duration(x.schedule_to_close_timeout_ms)),
                schedule_to_start_timeout: Some(duration(x.schedule_to_start_timeout_ms)),
                start_to_close_timeout: Some(duration(x.start_to_close_timeout_ms)),
                heartbeat_timeout: opt_duration(x.heartbeat_timeout_ms),
                workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                header: decoded::<Header>(&x.header),
                ..Default::default()
            }),
        ),
        A::ActivityTaskStarted(x) => (
            EventType::ActivityTaskStarted,
            T::ActivityTaskStartedEventAttributes(h::ActivityTaskStartedEventAttributes {
                scheduled_event_id: x.scheduled_event_id,
                identity: x.identity.clone(),
                request_id: x.request_id.clone(),
                attempt: x.attempt,
                last_failure: failure(&x.last_failure),
                ..Default::default()
            }),
        ),
        A::ActivityTaskCompleted(x) => (
            EventType::ActivityTaskCompleted,
            T::ActivityTaskCompletedEventAttributes(h::ActivityTaskCompletedEventAttributes {
                result: payloads(&x.result),
                scheduled_event_id: x.scheduled_event_id,
                started_event_id: x.started_event_id,
                identity: x.identity.clone(),
                ..Default::default()
            }),
        ),
        A::ActivityTaskFailed(x) => (
            EventType::ActivityTaskFailed,
            T::ActivityTaskFailedEventAttributes(h::ActivityTaskFailedEventAttributes {
                failure: failure(&x.failure),
                scheduled_event_id: x.scheduled_event_id,
                started_event_id: x.started_event_id,
                identity: x.identity.clone(),
                retry_state: x.retry_state,
                ..Default::default()
            }),
        ),
        A::ActivityTaskTimedOut(x) => (
            EventType::ActivityTaskTimedOut,
            T::ActivityTaskTimedOutEventAttributes(h::ActivityTaskTimedOutEventAttributes {
                failure: Some(timeout_failure(x)),
                scheduled_event_id: x.scheduled_event_id,
                started_event_id: x.started_event_id,
                retry_state: x.retry_state,
            }),
        ),
        A::ActivityTaskCancelRequested(x) => (
            EventType::ActivityTaskCancelRequested,
            T::ActivityTaskCancelRequestedEventAttributes(
                h::ActivityTaskCancelRequestedEventAttributes {
                    scheduled_event_id: x.scheduled_event_id,
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                },
            ),
        ),
        A::ActivityTaskCanceled(x) => (
            EventType::ActivityTaskCanceled,
            T::ActivityTaskCanceledEventAttributes(h::ActivityTaskCanceledEventAttributes {
                details: payloads(&x.details),
                latest_cancel_requested_event_id: x.latest_cancel_requested_event_id,
                scheduled_event_id: x.scheduled_event_id,
                started_event_id: x.started_event_id,
                identity: x.identity.clone(),
                ..Default::default()
            }),
        ),
        A::TimerStarted(x) => (
            EventType::TimerStarted,
            T::TimerStartedEventAttributes(h::TimerStartedEventAttributes {
                timer_id: x.timer_id.clone(),
                start_to_fire_timeout: Some(duration(x.start_to_fire_timeout_ms)),
                workflow_task_completed_event_id: x.workflow_task_completed_event_id,
            }),
        ),
        A::TimerFired(x) => (
            EventType::TimerFired,
            T::TimerFiredEventAttributes(h::TimerFiredEventAttributes {
                timer_id: x.timer_id.clone(),
                started_event_id: x.started_event_id,
            }),
        ),
        A::TimerCanceled(x) => (
            EventType::TimerCanceled,
            T::TimerCanceledEventAttributes(h::TimerCanceledEventAttributes {
                timer_id: x.timer_id.clone(),
                started_event_id: x.started_event_id,
                workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                identity: x.identity.clone(),
            }),
        ),
        A::WorkflowExecutionSignaled(x) => (
            EventType::WorkflowExecutionSignaled,
            T::WorkflowExecutionSignaledEventAttributes(
                h::WorkflowExecutionSignaledEventAttributes {
                    signal_name: x.signal_name.clone(),
                    input: payloads(&x.input),
                    identity: x.identity.clone(),
                    header: decoded::<Header>(&x.header),
                    request_id: x.request_id.clone(),
                    external_workflow_execution: execution_of(&x.external),
                    ..Default::default()
                },
            ),
        ),
        A::WorkflowExecutionCancelRequested(x) => (
            EventType::WorkflowExecutionCancelRequested,
            T::WorkflowExecutionCancelRequestedEventAttributes(
                h::WorkflowExecutionCancelRequestedEventAttributes {
                    cause: x.cause.clone(),
                    identity: x.identity.clone(),
                    external_initiated_event_id: x.external_initiated_event_id,
                    external_workflow_execution: execution_of(&x.external),
                },
            ),
        ),
        A::WorkflowExecutionCanceled(x) => (
            EventType::WorkflowExecutionCanceled,
            T::WorkflowExecutionCanceledEventAttributes(
                h::WorkflowExecutionCanceledEventAttributes {
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    details: payloads(&x.details),
                },
            ),
        ),
        A::WorkflowExecutionCompleted(x) => (
            EventType::WorkflowExecutionCompleted,
            T::WorkflowExecutionCompletedEventAttributes(
                h::WorkflowExecutionCompletedEventAttributes {
                    result: payloads(&x.result),
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    new_execution_run_id: x.new_execution_run_id.clone(),
                },
            ),
        ),
        A::WorkflowExecutionFailed(x) => (
            EventType::WorkflowExecutionFailed,
            T::WorkflowExecutionFailedEventAttributes(h::WorkflowExecutionFailedEventAttributes {
                failure: failure(&x.failure),
                retry_state: x.retry_state,
                workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                new_execution_run_id: x.new_execution_run_id.clone(),
            }),
        ),
        A::WorkflowExecutionContinuedAsNew(x) => (
            EventType::WorkflowExecutionContinuedAsNew,
            T::WorkflowExecutionContinuedAsNewEventAttributes(
                h::WorkflowExecutionContinuedAsNewEventAttributes {
                    new_execution_run_id: x.new_execution_run_id.clone(),
                    workflow_type: Some(WorkflowType {
                        name: x.workflow_type.clone(),
                    }),
                    task_queue: queue(&x.task_queue),
                    input: payloads(&x.input),
                    workflow_run_timeout: opt_duration(x.run_timeout_ms),
                    workflow_task_timeout: opt_duration(x.workflow_task_timeout_ms),
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    backoff_start_interval: opt_duration(x.backoff_start_ms),
                    // Temporal's ContinueAsNewInitiator WORKFLOW: the only initiator so far.
                    initiator: 1,
                    last_completion_result: payloads(&x.last_completion_result),
                    header: decoded(&x.header),
                    memo: decoded(&x.memo),
                    ..Default::default()
                },
            ),
        ),
        A::StartChildWorkflowExecutionInitiated(x) => (
            EventType::StartChildWorkflowExecutionInitiated,
            T::StartChildWorkflowExecutionInitiatedEventAttributes(
                h::StartChildWorkflowExecutionInitiatedEventAttributes {
                    namespace,
                    workflow_id: x.workflow_id.clone(),
                    workflow_type: wtype(&x.workflow_type),
                    task_queue: queue(&x.task_queue),
                    input: payloads(&x.input),
                    workflow_execution_timeout: opt_duration(x.execution_timeout_ms),
                    workflow_run_timeout: opt_duration(x.run_timeout_ms),
                    workflow_task_timeout: opt_duration(x.workflow_task_timeout_ms),
                    parent_close_policy: x.parent_close_policy,
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    workflow_id_reuse_policy: x.id_reuse_policy,
                    header: decoded(&x.header),
                    memo: decoded(&x.memo),
                    search_attributes: decoded(&x.search_attributes),
                    retry_policy: x
                        .retry_policy
                        .as_ref()
                        .map(crate::tasks::retry_policy_to_temporal),
                    cron_schedule: x.cron_schedule.clone(),
                    ..Default::default()
                },
            ),
        ),
        A::StartChildWorkflowExecutionFailed(x) => (
            EventType::StartChildWorkflowExecutionFailed,
            T::StartChildWorkflowExecutionFailedEventAttributes(
                h::StartChildWorkflowExecutionFailedEventAttributes {
                    namespace,
                    workflow_id: x.workflow_id.clone(),
                    workflow_type: wtype(&x.workflow_type),
                    cause: x.cause,
                    initiated_event_id: x.initiated_event_id,
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    ..Default::default()
                },
            ),
        ),
        A::ChildWorkflowExecutionStarted(x) => (
            EventType::ChildWorkflowExecutionStarted,
            T::ChildWorkflowExecutionStartedEventAttributes(
                h::ChildWorkflowExecutionStartedEventAttributes {
                    namespace,
                    initiated_event_id: x.initiated_event_id,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    workflow_type: wtype(&x.workflow_type),
                    header: decoded(&x.header),
                    ..Default::default()
                },
            ),
        ),
        A::ChildWorkflowExecutionCompleted(x) => (
            EventType::ChildWorkflowExecutionCompleted,
            T::ChildWorkflowExecutionCompletedEventAttributes(
                h::ChildWorkflowExecutionCompletedEventAttributes {
                    result: payloads(&x.result),
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    workflow_type: wtype(&x.workflow_type),
                    initiated_event_id: x.initiated_event_id,
                    started_event_id: x.started_event_id,
                    ..Default::default()
                },
            ),
        ),
        A::ChildWorkflowExecutionFailed(x) => (
            EventType::ChildWorkflowExecutionFailed,
            T::ChildWorkflowExecutionFailedEventAttributes(
                h::ChildWorkflowExecutionFailedEventAttributes {
                    failure: failure(&x.failure),
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    workflow_type: wtype(&x.workflow_type),
                    initiated_event_id: x.initiated_event_id,
                    started_event_id: x.started_event_id,
                    retry_state: x.retry_state,
                    ..Default::default()
                },
            ),
        ),
        A::ChildWorkflowExecutionCanceled(x) => (
            EventType::ChildWorkflowExecutionCanceled,
            T::ChildWorkflowExecutionCanceledEventAttributes(
                h::ChildWorkflowExecutionCanceledEventAttributes {
                    details: payloads(&x.details),
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    workflow_type: wtype(&x.workflow_type),
                    initiated_event_id: x.initiated_event_id,
                    started_event_id: x.started_event_id,
                    ..Default::default()
                },
            ),
        ),
        A::ChildWorkflowExecutionTimedOut(x) => (
            EventType::ChildWorkflowExecutionTimedOut,
            T::ChildWorkflowExecutionTimedOutEventAttributes(
                h::ChildWorkflowExecutionTimedOutEventAttributes {
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    workflow_type: wtype(&x.workflow_type),
                    initiated_event_id: x.initiated_event_id,
                    started_event_id: x.started_event_id,
                    retry_state: x.retry_state,
                    ..Default::default()
                },
            ),
        ),
        A::ChildWorkflowExecutionTerminated(x) => (
            EventType::ChildWorkflowExecutionTerminated,
            T::ChildWorkflowExecutionTerminatedEventAttributes(
                h::ChildWorkflowExecutionTerminatedEventAttributes {
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    workflow_type: wtype(&x.workflow_type),
                    initiated_event_id: x.initiated_event_id,
                    started_event_id: x.started_event_id,
                    ..Default::default()
                },
            ),
        ),
        A::SignalExternalWorkflowExecutionInitiated(x) => (
            EventType::SignalExternalWorkflowExecutionInitiated,
            T::SignalExternalWorkflowExecutionInitiatedEventAttributes(
                h::SignalExternalWorkflowExecutionInitiatedEventAttributes {
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    signal_name: x.signal_name.clone(),
                    input: payloads(&x.input),
                    child_workflow_only: x.child_workflow_only,
                    header: decoded(&x.header),
                    ..Default::default()
                },
            ),
        ),
        A::SignalExternalWorkflowExecutionFailed(x) => (
            EventType::SignalExternalWorkflowExecutionFailed,
            T::SignalExternalWorkflowExecutionFailedEventAttributes(
                h::SignalExternalWorkflowExecutionFailedEventAttributes {
                    cause: x.cause,
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    initiated_event_id: x.initiated_event_id,
                    ..Default::default()
                },
            ),
        ),
        A::ExternalWorkflowExecutionSignaled(x) => (
            EventType::ExternalWorkflowExecutionSignaled,
            T::ExternalWorkflowExecutionSignaledEventAttributes(
                h::ExternalWorkflowExecutionSignaledEventAttributes {
                    initiated_event_id: x.initiated_event_id,
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    ..Default::default()
                },
            ),
        ),
        A::RequestCancelExternalWorkflowExecutionInitiated(x) => (
            EventType::RequestCancelExternalWorkflowExecutionInitiated,
            T::RequestCancelExternalWorkflowExecutionInitiatedEventAttributes(
                h::RequestCancelExternalWorkflowExecutionInitiatedEventAttributes {
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    child_workflow_only: x.child_workflow_only,
                    reason: x.reason.clone(),
                    ..Default::default()
                },
            ),
        ),
        A::RequestCancelExternalWorkflowExecutionFailed(x) => (
            EventType::RequestCancelExternalWorkflowExecutionFailed,
            T::RequestCancelExternalWorkflowExecutionFailedEventAttributes(
                h::RequestCancelExternalWorkflowExecutionFailedEventAttributes {
                    cause: x.cause,
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    initiated_event_id: x.initiated_event_id,
                    ..Default::default()
                },
            ),
        ),
        A::ExternalWorkflowExecutionCancelRequested(x) => (
            EventType::ExternalWorkflowExecutionCancelRequested,
            T::ExternalWorkflowExecutionCancelRequestedEventAttributes(
                h::ExternalWorkflowExecutionCancelRequestedEventAttributes {
                    initiated_event_id: x.initiated_event_id,
                    namespace,
                    workflow_execution: child_execution(&x.workflow_id, &x.run_id),
                    ..Default::default()
                },
            ),
        ),
        A::WorkflowExecutionTerminated(x) => (
            EventType::WorkflowExecutionTerminated,
            T::WorkflowExecutionTerminatedEventAttributes(
                h::WorkflowExecutionTerminatedEventAttributes {
                    reason: x.reason.clone(),
                    details: payloads(&x.details),
                    identity: x.identity.clone(),
                },
            ),
        ),
        A::WorkflowExecutionTimedOut(x) => (
            EventType::WorkflowExecutionTimedOut,
            T::WorkflowExecutionTimedOutEventAttributes(
                h::WorkflowExecutionTimedOutEventAttributes {
                    retry_state: x.retry_state,
                    new_execution_run_id: x.new_execution_run_id.clone(),
                },
            ),
        ),
        A::MarkerRecorded(x) => (
            EventType::MarkerRecorded,
            T::MarkerRecordedEventAttributes(h::MarkerRecordedEventAttributes {
                marker_name: x.marker_name.clone(),
                // The details map is stored as the bytes of a MarkerRecorded message that
                // holds only it.
                details: decoded::<h::MarkerRecordedEventAttributes>(&x.details)
                    .map(|m| m.details)
                    .unwrap_or_default(),
                workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                header: decoded::<Header>(&x.header),
                failure: failure(&x.failure),
            }),
        ),
        A::UpsertWorkflowSearchAttributes(x) => (
            EventType::UpsertWorkflowSearchAttributes,
            T::UpsertWorkflowSearchAttributesEventAttributes(
                h::UpsertWorkflowSearchAttributesEventAttributes {
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    search_attributes: decoded(&x.search_attributes),
                },
            ),
        ),
        A::WorkflowPropertiesModified(x) => (
            EventType::WorkflowPropertiesModified,
            T::WorkflowPropertiesModifiedEventAttributes(
                h::WorkflowPropertiesModifiedEventAttributes {
                    workflow_task_completed_event_id: x.workflow_task_completed_event_id,
                    upserted_memo: decoded(&x.upserted_memo),
                },
            ),
        ),
        A::WorkflowExecutionUpdateAccepted(x) => (
            EventType::WorkflowExecutionUpdateAccepted,
            T::WorkflowExecutionUpdateAcceptedEventAttributes(
                h::WorkflowExecutionUpdateAcceptedEventAttributes {
                    protocol_instance_id: x.protocol_instance_id.clone(),
                    accepted_request_message_id: x.accepted_request_message_id.clone(),
                    accepted_request_sequencing_event_id: x.accepted_request_sequencing_event_id,
                    accepted_request: decoded(&x.accepted_request),
                },
            ),
        ),
        A::WorkflowExecutionUpdateCompleted(x) => (
            EventType::WorkflowExecutionUpdateCompleted,
            T::WorkflowExecutionUpdateCompletedEventAttributes(
                h::WorkflowExecutionUpdateCompletedEventAttributes {
                    meta: Some(
                        keel_proto::temporalio_protos::temporal::api::update::v1::Meta {
                            update_id: x.update_id.clone(),
                            identity: x.identity.clone(),
                        },
                    ),
                    accepted_event_id: x.accepted_event_id,
                    outcome: decoded(&x.outcome),
                },
            ),
        ),
    }
}

/// The `Failure` of an activity timeout: timeout info with the last heartbeat details, and
/// the last attempt's failure as its cause.
fn timeout_failure(x: &wf::ActivityTaskTimedOut) -> Failure {
    use keel_proto::temporalio_protos::temporal::api::enums::v1::TimeoutType;
    use keel_proto::temporalio_protos::temporal::api::failure::v1::{
        failure::FailureInfo, TimeoutFailureInfo,
    };
    // Temporal's wording, which SDK users assert on: "activity Heartbeat timeout".
    let kind = match TimeoutType::try_from(x.timeout_type) {
        Ok(TimeoutType::StartToClose) => "StartToClose",
        Ok(TimeoutType::ScheduleToStart) => "ScheduleToStart",
        Ok(TimeoutType::ScheduleToClose) => "ScheduleToClose",
        Ok(TimeoutType::Heartbeat) => "Heartbeat",
        _ => "Unspecified",
    };
    Failure {
        message: format!("activity {kind} timeout"),
        cause: failure(&x.last_failure).map(Box::new),
        failure_info: Some(FailureInfo::TimeoutFailureInfo(TimeoutFailureInfo {
            timeout_type: x.timeout_type,
            last_heartbeat_details: payloads(&x.last_heartbeat_details),
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_timeouts_read_as_temporals() {
        for (t, message) in [
            (
                wf::TimeoutType::StartToClose,
                "activity StartToClose timeout",
            ),
            (
                wf::TimeoutType::ScheduleToStart,
                "activity ScheduleToStart timeout",
            ),
            (
                wf::TimeoutType::ScheduleToClose,
                "activity ScheduleToClose timeout",
            ),
            (wf::TimeoutType::Heartbeat, "activity Heartbeat timeout"),
        ] {
            let f = timeout_failure(&wf::ActivityTaskTimedOut {
                timeout_type: t as i32,
                ..Default::default()
            });
            assert_eq!(f.message, message);
        }
    }

    #[test]
    fn event_ids_times_types_and_payloads_come_through() {
        let input = Payloads {
            payloads: vec![
                keel_proto::temporalio_protos::temporal::api::common::v1::Payload {
                    data: br#""world""#.to_vec(),
                    ..Default::default()
                },
            ],
        };
        let e = wf::HistoryEvent {
            event_id: 1,
            event_time_ms: 1_500,
            attributes: Some(A::WorkflowExecutionStarted(wf::WorkflowExecutionStarted {
                workflow_type: "hello".into(),
                task_queue: "tq".into(),
                input: input.encode_to_vec(),
                workflow_task_timeout_ms: 10_000,
                attempt: 1,
                ..Default::default()
            })),
            user_metadata: Vec::new(),
        };
        let t = to_temporal(
            &e,
            &wf::RunKey {
                namespace: "default".into(),
                workflow_id: "wf-1".into(),
                run_id: "r".into(),
            },
        );
        assert_eq!(
            (t.event_id, t.event_type),
            (1, EventType::WorkflowExecutionStarted as i32)
        );
        assert_eq!(t.event_time.unwrap().seconds, 1);
        match t.attributes {
            Some(T::WorkflowExecutionStartedEventAttributes(a)) => {
                assert_eq!(a.input, Some(input));
                assert_eq!(a.workflow_task_timeout.unwrap().seconds, 10);
                assert_eq!(a.task_queue.unwrap().kind, 1);
                assert_eq!(a.workflow_id, "wf-1");
            }
            other => panic!("{other:?}"),
        }
    }
}
