//! Signals and cancel requests one run sends another (SignalExternalWorkflowExecution,
//! RequestCancelExternalWorkflowExecution). Both runs live in this state machine, so the
//! target is reached in the apply of the sender's task: the sender writes Initiated, then
//! Signaled / CancelRequested (the target got it) or Failed (no such running workflow). The
//! signal's request id is `<sender run>-<initiated event>`, so the target dedups it like any
//! client retry.

use super::apply::{is_running, Ctx};
use super::model::*;
use crate::{Result, StateStore};

/// The running target of an external command: the sender itself (kept in memory by the
/// caller) or another run, loaded. `None` if there is no such running workflow (or, with
/// `child_only`, it is not the sender's child).
enum Target {
    Itself,
    Other(Box<MutableState>),
}

fn find<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    sender: &MutableState,
    workflow_id: &str,
    run_id: &str,
    child_only: bool,
) -> Result<Option<Target>> {
    let me = sender.run.clone().expect("named run");
    let key = RunKey {
        namespace: me.namespace.clone(),
        workflow_id: workflow_id.to_string(),
        run_id: run_id.to_string(),
    };
    let Some(target) = ctx.resolve(&Some(key))?.filter(is_running) else {
        return Ok(None);
    };
    if child_only && target.parent.as_ref() != Some(&me) {
        return Ok(None);
    }
    if target.run.as_ref() == Some(&me) {
        return Ok(Some(Target::Itself));
    }
    Ok(Some(Target::Other(Box::new(target))))
}

/// SignalExternalWorkflowExecution; returns true (the sender needs a task for the outcome).
pub(super) fn signal<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    c: SignalExternal,
    wtc: i64,
) -> Result<bool> {
    let initiated = ctx.append(
        ms,
        Attributes::SignalExternalWorkflowExecutionInitiated(ExternalInitiated {
            workflow_id: c.workflow_id.clone(),
            run_id: c.run_id.clone(),
            signal_name: c.signal_name.clone(),
            input: c.input.clone(),
            header: c.header.clone(),
            child_workflow_only: c.child_workflow_only,
            workflow_task_completed_event_id: wtc,
            reason: String::new(),
        }),
    );
    let me = ms.run.clone().expect("named run");
    let sent = SignalWorkflow {
        run: None,
        signal_name: c.signal_name,
        input: c.input,
        identity: String::new(),
        request_id: format!("{}-{initiated}", me.run_id),
        header: c.header,
    };
    let delivered = match find(ctx, ms, &c.workflow_id, &c.run_id, c.child_workflow_only)? {
        None => false,
        Some(Target::Itself) => {
            super::start::record_signal(ctx, ms, &sent, Some(me));
            true
        }
        Some(Target::Other(mut target)) => {
            super::start::add_signal(ctx, &mut target, &sent, Some(me))?;
            ctx.save(&target);
            true
        }
    };
    let attributes = if delivered {
        Attributes::ExternalWorkflowExecutionSignaled(ExternalDone {
            workflow_id: c.workflow_id,
            run_id: c.run_id,
            initiated_event_id: initiated,
        })
    } else {
        Attributes::SignalExternalWorkflowExecutionFailed(ExternalFailed {
            workflow_id: c.workflow_id,
            run_id: c.run_id,
            cause: EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND,
            initiated_event_id: initiated,
            workflow_task_completed_event_id: wtc,
        })
    };
    ctx.append(ms, attributes);
    Ok(true)
}

/// RequestCancelExternalWorkflowExecution; returns true (the sender needs a task).
pub(super) fn request_cancel<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    c: RequestCancelExternal,
    wtc: i64,
) -> Result<bool> {
    let initiated = ctx.append(
        ms,
        Attributes::RequestCancelExternalWorkflowExecutionInitiated(ExternalInitiated {
            workflow_id: c.workflow_id.clone(),
            run_id: c.run_id.clone(),
            child_workflow_only: c.child_workflow_only,
            workflow_task_completed_event_id: wtc,
            reason: c.reason.clone(),
            ..Default::default()
        }),
    );
    let me = ms.run.clone().expect("named run");
    let requested = WorkflowExecutionCancelRequested {
        cause: c.reason.clone(),
        identity: String::new(),
        external: Some(me),
        external_initiated_event_id: initiated,
    };
    let delivered = match find(ctx, ms, &c.workflow_id, &c.run_id, c.child_workflow_only)? {
        None => false,
        Some(Target::Itself) => {
            // The completing task schedules the next one.
            if !ms.cancel_requested {
                ms.cancel_requested = true;
                ctx.add_event(ms, Attributes::WorkflowExecutionCancelRequested(requested));
            }
            true
        }
        Some(Target::Other(mut target)) => {
            cancel_requested(ctx, &mut target, requested)?;
            ctx.save(&target);
            true
        }
    };
    let attributes = if delivered {
        Attributes::ExternalWorkflowExecutionCancelRequested(ExternalDone {
            workflow_id: c.workflow_id,
            run_id: c.run_id,
            initiated_event_id: initiated,
        })
    } else {
        Attributes::RequestCancelExternalWorkflowExecutionFailed(ExternalFailed {
            workflow_id: c.workflow_id,
            run_id: c.run_id,
            cause: EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND,
            initiated_event_id: initiated,
            workflow_task_completed_event_id: wtc,
        })
    };
    ctx.append(ms, attributes);
    Ok(true)
}

/// Marks a running target cancel-requested (once: a second request changes nothing).
fn cancel_requested<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    target: &mut MutableState,
    requested: WorkflowExecutionCancelRequested,
) -> Result<()> {
    if target.cancel_requested {
        return Ok(());
    }
    target.cancel_requested = true;
    ctx.add_event(
        target,
        Attributes::WorkflowExecutionCancelRequested(requested),
    );
    ctx.schedule_workflow_task(target, 1)
}
