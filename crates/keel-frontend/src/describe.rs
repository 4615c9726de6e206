//! DescribeWorkflowExecution from mutable state.

use keel_engine::workflow as wf;
use keel_proto::temporalio_protos::temporal::api::common::v1::{
    ActivityType, Payloads, WorkflowExecution, WorkflowType,
};
use keel_proto::temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use keel_proto::temporalio_protos::temporal::api::workflow::v1::{
    PendingActivityInfo, PendingChildExecutionInfo, PendingWorkflowTaskInfo,
    WorkflowExecutionConfig, WorkflowExecutionInfo,
};
use keel_proto::temporalio_protos::temporal::api::workflowservice::v1 as api;

use crate::convert::{decoded, duration, opt_timestamp};

fn execution_of(run: &Option<wf::RunKey>) -> Option<WorkflowExecution> {
    run.as_ref().map(|r| WorkflowExecution {
        workflow_id: r.workflow_id.clone(),
        run_id: r.run_id.clone(),
    })
}

/// Builds the describe response of a run.
pub fn describe_execution(ms: &wf::MutableState) -> api::DescribeWorkflowExecutionResponse {
    let run = ms.run.clone().unwrap_or_default();
    let pending_activities = ms
        .activities
        .iter()
        .map(|a| PendingActivityInfo {
            activity_id: a.activity_id.clone(),
            activity_type: Some(ActivityType {
                name: a.activity_type.clone(),
            }),
            // PendingActivityState: 1 scheduled, 2 started, 3 cancel requested.
            state: if a.cancel_requested {
                3
            } else if a.started {
                2
            } else {
                1
            },
            heartbeat_details: decoded::<Payloads>(&a.heartbeat_details),
            last_heartbeat_time: opt_timestamp(a.last_heartbeat_time_ms),
            last_started_time: opt_timestamp(a.started_time_ms),
            attempt: a.attempt,
            scheduled_time: opt_timestamp(a.scheduled_time_ms),
            last_worker_identity: a.started_identity.clone(),
            ..Default::default()
        })
        .collect();
    let pending_workflow_task = ms.workflow_task.as_ref().map(|t| PendingWorkflowTaskInfo {
        // PendingWorkflowTaskState: 1 scheduled, 2 started.
        state: if t.started_event_id != 0 { 2 } else { 1 },
        attempt: t.attempt,
        ..Default::default()
    });
    api::DescribeWorkflowExecutionResponse {
        execution_config: Some(WorkflowExecutionConfig {
            task_queue: Some(TaskQueue {
                name: ms.task_queue.clone(),
                kind: 1,
                ..Default::default()
            }),
            workflow_run_timeout: (ms.run_timeout_ms > 0).then(|| duration(ms.run_timeout_ms)),
            default_workflow_task_timeout: Some(duration(ms.workflow_task_timeout_ms)),
            user_metadata: decoded(&ms.user_metadata),
            ..Default::default()
        }),
        workflow_execution_info: Some(WorkflowExecutionInfo {
            execution: Some(WorkflowExecution {
                workflow_id: run.workflow_id.clone(),
                run_id: run.run_id.clone(),
            }),
            r#type: Some(WorkflowType {
                name: ms.workflow_type.clone(),
            }),
            start_time: opt_timestamp(ms.start_time_ms),
            close_time: opt_timestamp(ms.close_time_ms),
            status: ms.status,
            history_length: ms.next_event_id - 1,
            task_queue: ms.task_queue.clone(),
            memo: crate::convert::decoded(&ms.memo),
            search_attributes: crate::convert::decoded(&ms.search_attributes),
            execution_time: opt_timestamp(ms.execution_time_ms.max(ms.start_time_ms)),
            first_run_id: ms.first_execution_run_id.clone(),
            history_size_bytes: ms.history_size_bytes as i64,
            parent_execution: execution_of(&ms.parent),
            root_execution: execution_of(&ms.root),
            ..Default::default()
        }),
        pending_children: ms
            .children
            .iter()
            .map(|c| PendingChildExecutionInfo {
                workflow_id: c.workflow_id.clone(),
                run_id: c.run_id.clone(),
                workflow_type_name: c.workflow_type.clone(),
                initiated_id: c.initiated_event_id,
                parent_close_policy: c.parent_close_policy,
            })
            .collect(),
        pending_activities,
        pending_workflow_task,
        ..Default::default()
    }
}
