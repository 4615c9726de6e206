//! Chains of runs under one workflow id: continue-as-new closes a run and starts the next
//! one in the same apply. (Workflow retries and cron will start their next runs here too.)

use super::apply::Ctx;
use super::model::*;
use super::start::{create_run, NewRun};
use crate::{Result, StateStore};

/// ContinueAsNewWorkflowExecution, in the apply of the workflow task that asked for it:
/// closes the run with WorkflowExecutionContinuedAsNew and starts the next one (same
/// workflow id, the proposer's run id) as the id's current run, so nothing sent to the
/// workflow id in between can miss both. Unset fields keep the closing run's values; the
/// execution timeout spans the chain.
pub(super) fn continue_as_new<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    n: ContinueAsNew,
    wtc: i64,
) -> Result<()> {
    let prev = ms.run.clone().expect("named run");
    let or = |new: &str, old: &str| {
        if new.is_empty() {
            old.to_string()
        } else {
            new.to_string()
        }
    };
    let or_bytes = |new: &[u8], old: &[u8]| {
        if new.is_empty() {
            old.to_vec()
        } else {
            new.to_vec()
        }
    };
    let or_ms = |new: u64, old: u64| if new == 0 { old } else { new };
    let workflow_type = or(&n.workflow_type, &ms.workflow_type);
    let task_queue = or(&n.task_queue, &ms.task_queue);
    let run_timeout_ms = or_ms(n.run_timeout_ms, ms.run_timeout_ms);
    let wft_timeout = or_ms(n.workflow_task_timeout_ms, ms.workflow_task_timeout_ms);
    let header = or_bytes(&n.header, &ms.header);
    let memo = or_bytes(&n.memo, &ms.memo);
    ctx.append(
        ms,
        Attributes::WorkflowExecutionContinuedAsNew(WorkflowExecutionContinuedAsNew {
            new_execution_run_id: n.new_run_id.clone(),
            workflow_type: workflow_type.clone(),
            task_queue: task_queue.clone(),
            input: n.input.clone(),
            run_timeout_ms,
            workflow_task_timeout_ms: wft_timeout,
            workflow_task_completed_event_id: wtc,
            backoff_start_ms: n.backoff_start_ms,
            header: header.clone(),
            memo: memo.clone(),
            last_completion_result: n.last_completion_result.clone(),
            failure: n.failure.clone(),
        }),
    );
    ms.new_execution_run_id = n.new_run_id.clone();
    ctx.close(ms, RunStatus::ContinuedAsNew)?;
    let first = if ms.first_execution_run_id.is_empty() {
        prev.run_id.clone()
    } else {
        ms.first_execution_run_id.clone()
    };
    let mut next = create_run(
        ctx,
        NewRun {
            run: RunKey {
                run_id: n.new_run_id,
                ..prev.clone()
            },
            workflow_type,
            task_queue,
            input: n.input,
            workflow_task_timeout_ms: wft_timeout,
            run_timeout_ms,
            execution_timeout_ms: ms.execution_timeout_ms,
            execution_expiration_ms: ms.execution_expiration_ms,
            identity: String::new(),
            request_id: String::new(),
            header,
            memo,
            first_execution_run_id: first,
            continued_from: prev.run_id,
            backoff_ms: n.backoff_start_ms,
            last_completion_result: n.last_completion_result,
            continued_failure: n.failure,
            initiator: CONTINUE_AS_NEW_INITIATOR_WORKFLOW,
            retention_ms: ms.retention_ms,
            // A continued child stays its parent's child.
            parent: ms.parent.clone(),
            parent_initiated_event_id: ms.parent_initiated_event_id,
            root: ms.root.clone(),
        },
    );
    if n.backoff_start_ms > 0 {
        let at = ctx.now_ms.saturating_add(n.backoff_start_ms);
        ctx.arm(&mut next, DeadlineKind::FirstTaskBackoff, 0, 0, "", at);
    } else {
        ctx.schedule_workflow_task(&mut next, 1)?;
    }
    ctx.save(&next);
    Ok(())
}

/// Temporal's ContinueAsNewInitiator WORKFLOW.
const CONTINUE_AS_NEW_INITIATOR_WORKFLOW: i32 = 1;
