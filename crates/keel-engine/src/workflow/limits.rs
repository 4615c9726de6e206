//! History limits: a run whose history outgrows Temporal's default limits (51,200 events or
//! 50 MiB) is terminated with Temporal's reason and identity, in the apply whose write crossed
//! the limit, and that write's caller is answered INVALID_ARGUMENT with the reason — so an
//! unbounded workflow cannot grow one Raft-replicated history without end.
//!
//! A command whose payload is past the blob limit (checked by the proposer, which sees the
//! Temporal message) fails its workflow task and terminates the run the same way.
//!
//! Temporal checks the stored size before a write (the write that crosses the size limit
//! succeeds and terminates the run at its next write) and refuses a write that would cross the
//! count limit; Keel keeps the crossing write for both and terminates at once, so a history may
//! end a few events past 51,200.

use std::collections::BTreeMap;

use super::apply::{is_running, Ctx, Effect};
use super::model::*;
use crate::{Result, StateStore};

/// Most events a run's history may hold (Temporal's `limit.historyCount.error`).
pub const HISTORY_COUNT_LIMIT: i64 = 51_200;
/// Largest history of a run, bytes of Keel's event encoding (Temporal's
/// `limit.historySize.error`, 50 MB).
pub const HISTORY_SIZE_LIMIT_BYTES: u64 = 50 * 1024 * 1024;

/// Temporal's termination reasons and identity.
pub const COUNT_EXCEEDED: &str = "Workflow history count exceeds limit.";
pub const SIZE_EXCEEDED: &str = "Workflow history size exceeds limit.";
const IDENTITY: &str = "history-service";

/// Terminates every still-running run whose history grew past a limit in `effects` (the
/// effects of one command); returns the reason if it terminated any.
pub(super) fn enforce<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    effects_from: usize,
) -> Result<Option<&'static str>> {
    // Only runs past a limit are read (the effect carries the counts).
    let grown: BTreeMap<(String, String, String), RunKey> = ctx.effects[effects_from..]
        .iter()
        .filter_map(|e| match e {
            Effect::HistoryGrew {
                run,
                next_event_id,
                history_size_bytes,
            } if next_event_id - 1 > HISTORY_COUNT_LIMIT
                || *history_size_bytes > HISTORY_SIZE_LIMIT_BYTES =>
            {
                Some((
                    (
                        run.namespace.clone(),
                        run.workflow_id.clone(),
                        run.run_id.clone(),
                    ),
                    run.clone(),
                ))
            }
            _ => None,
        })
        .collect();
    let mut terminated = None;
    for run in grown.into_values() {
        let Some(mut ms) = super::read_mutable_state(ctx.store, &run)?.filter(is_running) else {
            continue;
        };
        let reason = if ms.next_event_id - 1 > HISTORY_COUNT_LIMIT {
            COUNT_EXCEEDED
        } else if ms.history_size_bytes > HISTORY_SIZE_LIMIT_BYTES {
            SIZE_EXCEEDED
        } else {
            continue;
        };
        super::start::force_close_started_task(ctx, &mut ms);
        ctx.append(
            &mut ms,
            Attributes::WorkflowExecutionTerminated(WorkflowExecutionTerminated {
                reason: reason.into(),
                details: Vec::new(),
                identity: IDENTITY.into(),
            }),
        );
        ctx.close(&mut ms, RunStatus::Terminated)?;
        ctx.save(&ms);
        terminated = Some(reason);
    }
    Ok(terminated)
}

/// Fails the started task `task` with `cause` and terminates the run with Temporal's reason
/// `"{Cause}: {message}"` (e.g. "BadScheduleActivityAttributes: ScheduleActivityTaskCommand
/// Attributes.Input exceeds size limit."), which the SDKs surface as the termination message.
pub(super) fn terminate_for_command<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    task: &WorkflowTaskInfo,
    cause: WorkflowTaskFailedCause,
    message: &str,
    identity: &str,
) -> Result<()> {
    ctx.disarm(ms, |d| {
        d.kind == DeadlineKind::WorkflowTaskStartToClose as i32
    });
    if task.transient {
        super::start::force_close_started_task(ctx, ms);
    } else {
        ctx.append(
            ms,
            Attributes::WorkflowTaskFailed(WorkflowTaskFailed {
                scheduled_event_id: task.scheduled_event_id,
                started_event_id: task.started_event_id,
                cause: cause as i32,
                message: message.to_string(),
                identity: identity.to_string(),
                ..Default::default()
            }),
        );
        ms.workflow_task = None;
        ctx.flush_buffered(ms);
    }
    ctx.append(
        ms,
        Attributes::WorkflowExecutionTerminated(WorkflowExecutionTerminated {
            // Debug prints the variant name, as Temporal's Go enums print.
            reason: format!("{cause:?}: {message}"),
            details: Vec::new(),
            identity: IDENTITY.into(),
        }),
    );
    ctx.close(ms, RunStatus::Terminated)?;
    ctx.save(ms);
    Ok(())
}
