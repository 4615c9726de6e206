//! History limits: a run whose history outgrows Temporal's default limits (51,200 events or
//! 50 MiB) is terminated with Temporal's reason and identity, in the apply whose write crossed
//! the limit, and that write's caller is answered INVALID_ARGUMENT with the reason — so an
//! unbounded workflow cannot grow one Raft-replicated history without end.
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
