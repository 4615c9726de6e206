//! Chains of runs under one workflow id: continue-as-new, the workflow retry policy and cron
//! schedules close a run and start the next one in the same apply.

use super::apply::Ctx;
use super::model::*;
use super::start::{create_run, NewRun};
use crate::{Result, StateStore};

/// Temporal's ContinueAsNewInitiator RETRY_POLICY and CRON_SCHEDULE.
const CONTINUE_AS_NEW_INITIATOR_RETRY: i32 = 2;
const CONTINUE_AS_NEW_INITIATOR_CRON: i32 = 3;

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
            search_attributes: if n.search_attributes.is_empty() {
                ms.search_attributes.clone()
            } else {
                super::search::initial(&n.search_attributes)
            },
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
            cron_schedule: if n.cron_schedule.is_empty() {
                ms.cron_schedule.clone()
            } else {
                n.cron_schedule
            },
            scheduled_by: ms.scheduled_by.clone(),
        },
    )?;
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
    // No retry: a cron schedule starts its next run instead.
    let cron = match &decision {
        Err(_) if !next_run_id.is_empty() => cron_backoff(ctx, ms),
        _ => None,
    };
    let (retry_state, new_run) = match decision {
        Ok(_) => (RetryState::InProgress, next_run_id.to_string()),
        // Temporal reports a timeout without a policy as TIMEOUT.
        Err(RetryState::RetryPolicyNotSet) if matches!(ending, Ending::TimedOut) => (
            RetryState::Timeout,
            cron.map(|_| next_run_id.to_string()).unwrap_or_default(),
        ),
        Err(s) => (s, cron.map(|_| next_run_id.to_string()).unwrap_or_default()),
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
    match (decision, cron) {
        (Ok(backoff), _) => next_run(
            ctx,
            ms,
            NextRun {
                run_id: new_run,
                backoff_ms: backoff,
                attempt: attempt + 1,
                initiator: CONTINUE_AS_NEW_INITIATOR_RETRY,
                last_completion_result: Vec::new(),
                continued_failure: failure,
            },
        ),
        (Err(_), Some(backoff)) => next_run(
            ctx,
            ms,
            NextRun {
                run_id: new_run,
                backoff_ms: backoff,
                attempt: 1,
                initiator: CONTINUE_AS_NEW_INITIATOR_CRON,
                last_completion_result: Vec::new(),
                continued_failure: failure,
            },
        ),
        (Err(_), None) => Ok(()),
    }
}

/// Completes a run; a cron schedule starts its next run, at the schedule's next time, with
/// this run's result as `last_completion_result`.
pub(super) fn complete<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    result: Vec<u8>,
    wtc: i64,
    next_run_id: &str,
) -> Result<()> {
    let cron = if next_run_id.is_empty() {
        None
    } else {
        cron_backoff(ctx, ms)
    };
    let new_run = cron.map(|_| next_run_id.to_string()).unwrap_or_default();
    ctx.append(
        ms,
        Attributes::WorkflowExecutionCompleted(WorkflowExecutionCompleted {
            result: result.clone(),
            workflow_task_completed_event_id: wtc,
            new_execution_run_id: new_run.clone(),
        }),
    );
    ms.new_execution_run_id = new_run.clone();
    ctx.close(ms, RunStatus::Completed)?;
    match cron {
        Some(backoff) => next_run(
            ctx,
            ms,
            NextRun {
                run_id: new_run,
                backoff_ms: backoff,
                attempt: 1,
                initiator: CONTINUE_AS_NEW_INITIATOR_CRON,
                last_completion_result: result,
                continued_failure: Vec::new(),
            },
        ),
        None => Ok(()),
    }
}

/// Time until the run's cron schedule next fires, if it has one and the chain's execution
/// timeout leaves room for it.
fn cron_backoff<S: StateStore>(ctx: &Ctx<'_, S>, ms: &MutableState) -> Option<u64> {
    if ms.cron_schedule.is_empty() {
        return None;
    }
    let at = super::cron::next_after(&ms.cron_schedule, ctx.now_ms).ok()?;
    if ms.execution_expiration_ms > 0 && at >= ms.execution_expiration_ms {
        return None;
    }
    Some(at.saturating_sub(ctx.now_ms))
}

/// What differs between a retry's and a cron schedule's next run.
struct NextRun {
    run_id: String,
    backoff_ms: u64,
    attempt: i32,
    initiator: i32,
    last_completion_result: Vec<u8>,
    continued_failure: Vec<u8>,
}

/// Starts the run that follows the closed `ms` (a retry attempt or a cron run): same input,
/// type, queue, timeouts, header, memo, parent, retry policy and schedule; its first task
/// after `backoff_ms`, whatever arrives meanwhile.
fn next_run<S: StateStore>(ctx: &mut Ctx<'_, S>, ms: &MutableState, n: NextRun) -> Result<()> {
    let prev = ms.run.clone().expect("named run");
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
                run_id: n.run_id,
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
            search_attributes: ms.search_attributes.clone(),
            first_execution_run_id: first,
            continued_from: prev.run_id,
            backoff_ms: n.backoff_ms,
            last_completion_result: n.last_completion_result,
            continued_failure: n.continued_failure,
            initiator: n.initiator,
            retention_ms: ms.retention_ms,
            parent: ms.parent.clone(),
            parent_initiated_event_id: ms.parent_initiated_event_id,
            root: ms.root.clone(),
            retry_policy: ms.retry_policy.clone(),
            attempt: n.attempt,
            cron_schedule: ms.cron_schedule.clone(),
            scheduled_by: ms.scheduled_by.clone(),
        },
    )?;
    let at = ctx.now_ms.saturating_add(n.backoff_ms);
    ctx.arm(&mut next, DeadlineKind::FirstTaskBackoff, 0, 0, "", at);
    next.pending_backoff = true;
    ctx.save(&next);
    Ok(())
}
