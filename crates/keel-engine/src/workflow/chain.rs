//! Chains of runs under one workflow id: continue-as-new, and the workflow retry policy,
//! close a run and start the next one in the same apply.

use super::apply::Ctx;
use super::model::*;
use super::start::{create_run, NewRun};
use crate::{Result, StateStore};

/// Temporal's ContinueAsNewInitiator RETRY_POLICY.
const CONTINUE_AS_NEW_INITIATOR_RETRY: i32 = 2;

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
            retry_policy: n.retry_policy.or_else(|| ms.retry_policy.clone()),
            attempt: 1,
        },
    );
    if n.backoff_start_ms > 0 {
        let at = ctx.now_ms.saturating_add(n.backoff_start_ms);
        ctx.arm(&mut next, DeadlineKind::FirstTaskBackoff, 0, 0, "", at);
        next.pending_backoff = true;
    } else {
        ctx.schedule_workflow_task(&mut next, 1)?;
    }
    ctx.save(&next);
    Ok(())
}

/// Temporal's ContinueAsNewInitiator WORKFLOW.
const CONTINUE_AS_NEW_INITIATOR_WORKFLOW: i32 = 1;

/// How a run ends that its retry policy may restart.
pub(super) enum Ending {
    Failed {
        failure: Vec<u8>,
        failure_type: String,
        non_retryable: bool,
        wtc: i64,
    },
    TimedOut,
}

/// Closes a failed or timed-out run. If its retry policy allows another attempt, and the
/// chain's execution timeout leaves time for the backoff, the close event names the next
/// run, which starts in the same apply (same input, attempt + 1) with its first task after
/// the backoff; otherwise the close event says why not.
pub(super) fn close_or_retry<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    ending: Ending,
    next_run_id: &str,
) -> Result<()> {
    let (non_retryable, failure_type) = match &ending {
        Ending::Failed {
            non_retryable,
            failure_type,
            ..
        } => (*non_retryable, failure_type.as_str()),
        Ending::TimedOut => (false, ""),
    };
    let attempt = ms.attempt.max(1);
    let decision = match &ms.retry_policy {
        None => Err(RetryState::RetryPolicyNotSet),
        Some(_) if next_run_id.is_empty() => Err(RetryState::InternalServerError),
        Some(p) => super::retry::backoff(p, attempt, non_retryable, failure_type).and_then(|b| {
            let out_of_time = ms.execution_expiration_ms > 0
                && ctx.now_ms.saturating_add(b) >= ms.execution_expiration_ms;
            if out_of_time {
                Err(RetryState::Timeout)
            } else {
                Ok(b)
            }
        }),
    };
    let (retry_state, new_run) = match decision {
        Ok(_) => (RetryState::InProgress, next_run_id.to_string()),
        // Temporal reports a timeout without a policy as TIMEOUT.
        Err(RetryState::RetryPolicyNotSet) if matches!(ending, Ending::TimedOut) => {
            (RetryState::Timeout, String::new())
        }
        Err(s) => (s, String::new()),
    };
    let (status, failure) = match ending {
        Ending::Failed { failure, wtc, .. } => {
            ctx.append(
                ms,
                Attributes::WorkflowExecutionFailed(WorkflowExecutionFailed {
                    failure: failure.clone(),
                    retry_state: retry_state as i32,
                    workflow_task_completed_event_id: wtc,
                    new_execution_run_id: new_run.clone(),
                }),
            );
            (RunStatus::Failed, failure)
        }
        Ending::TimedOut => {
            ctx.append(
                ms,
                Attributes::WorkflowExecutionTimedOut(WorkflowExecutionTimedOut {
                    retry_state: retry_state as i32,
                    new_execution_run_id: new_run.clone(),
                }),
            );
            (RunStatus::TimedOut, Vec::new())
        }
    };
    ms.new_execution_run_id = new_run.clone();
    ctx.close(ms, status)?;
    let Ok(backoff) = decision else {
        return Ok(());
    };
    let prev = ms.run.clone().expect("named run");
    // The next attempt runs with this run's input.
    let input = super::apply::read_history(ctx.store, &prev, 1, 1)?
        .into_iter()
        .find_map(|e| match e.attributes {
            Some(Attributes::WorkflowExecutionStarted(s)) => Some(s.input),
            _ => None,
        })
        .unwrap_or_default();
    let first = if ms.first_execution_run_id.is_empty() {
        prev.run_id.clone()
    } else {
        ms.first_execution_run_id.clone()
    };
    let mut next = create_run(
        ctx,
        NewRun {
            run: RunKey {
                run_id: new_run,
                ..prev.clone()
            },
            workflow_type: ms.workflow_type.clone(),
            task_queue: ms.task_queue.clone(),
            input,
            workflow_task_timeout_ms: ms.workflow_task_timeout_ms,
            run_timeout_ms: ms.run_timeout_ms,
            execution_timeout_ms: ms.execution_timeout_ms,
            execution_expiration_ms: ms.execution_expiration_ms,
            identity: String::new(),
            request_id: String::new(),
            header: ms.header.clone(),
            memo: ms.memo.clone(),
            first_execution_run_id: first,
            continued_from: prev.run_id,
            backoff_ms: backoff,
            last_completion_result: Vec::new(),
            continued_failure: failure,
            initiator: CONTINUE_AS_NEW_INITIATOR_RETRY,
            retention_ms: ms.retention_ms,
            parent: ms.parent.clone(),
            parent_initiated_event_id: ms.parent_initiated_event_id,
            root: ms.root.clone(),
            retry_policy: ms.retry_policy.clone(),
            attempt: attempt + 1,
        },
    );
    let at = ctx.now_ms.saturating_add(backoff);
    ctx.arm(&mut next, DeadlineKind::FirstTaskBackoff, 0, 0, "", at);
    next.pending_backoff = true;
    ctx.save(&next);
    Ok(())
}
