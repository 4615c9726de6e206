//! Child workflows: a parent's StartChildWorkflowExecution starts the child in the same apply
//! (Initiated, then Started or Failed, in the parent); the child's close is recorded in the
//! parent in the apply that closes the child; a parent's close applies its parent close
//! policy to the children still running, in the apply that closes the parent. One state
//! machine holds both runs, so every step happens exactly once, failover or not.

use super::apply::{decode, is_running, Ctx};
use super::model::*;
use super::start::{create_run, reuse_refused, NewRun};
use crate::keys;
use crate::{Result, StateStore};

/// Writes Initiated, starts the child (or writes StartChildWorkflowExecutionFailed when its
/// workflow id is taken), then ChildWorkflowExecutionStarted. Returns true: the parent needs
/// a workflow task for the outcome.
pub(super) fn start_child<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    parent: &mut MutableState,
    c: StartChildWorkflow,
    wtc: i64,
) -> Result<bool> {
    let parent_run = parent.run.clone().expect("named run");
    // The command's metadata goes on the parent's Initiated event and on the child's start.
    let user_metadata = ctx.next_user_metadata.clone();
    let task_queue = if c.task_queue.is_empty() {
        parent.task_queue.clone()
    } else {
        c.task_queue.clone()
    };
    let policy = match ParentClosePolicy::try_from(c.parent_close_policy) {
        Ok(ParentClosePolicy::Unspecified) | Err(_) => ParentClosePolicy::Terminate,
        Ok(p) => p,
    };
    let initiated = ctx.append(
        parent,
        Attributes::StartChildWorkflowExecutionInitiated(StartChildWorkflowExecutionInitiated {
            workflow_id: c.workflow_id.clone(),
            workflow_type: c.workflow_type.clone(),
            task_queue: task_queue.clone(),
            input: c.input.clone(),
            execution_timeout_ms: c.execution_timeout_ms,
            run_timeout_ms: c.run_timeout_ms,
            workflow_task_timeout_ms: c.workflow_task_timeout_ms,
            parent_close_policy: policy as i32,
            workflow_task_completed_event_id: wtc,
            id_reuse_policy: c.id_reuse_policy,
            header: c.header.clone(),
            memo: c.memo.clone(),
            control: c.control.clone(),
            search_attributes: c.search_attributes.clone(),
            retry_policy: c.retry_policy.clone(),
            cron_schedule: c.cron_schedule.clone(),
        }),
    );
    let ckey = keys::current_run(&parent_run.namespace, &c.workflow_id);
    let taken = match ctx.store.get(&ckey)? {
        Some(b) => reuse_refused(&decode::<CurrentRun>(&ckey, &b)?, c.id_reuse_policy),
        None => false,
    };
    let child_run = RunKey {
        namespace: parent_run.namespace.clone(),
        workflow_id: c.workflow_id.clone(),
        run_id: c.new_run_id.clone(),
    };
    if taken || super::apply::read_mutable_state(ctx.store, &child_run)?.is_some() {
        ctx.append(
            parent,
            Attributes::StartChildWorkflowExecutionFailed(StartChildWorkflowExecutionFailed {
                workflow_id: c.workflow_id,
                workflow_type: c.workflow_type,
                cause: CHILD_WORKFLOW_ALREADY_EXISTS,
                initiated_event_id: initiated,
                workflow_task_completed_event_id: wtc,
                control: c.control,
            }),
        );
        return Ok(true);
    }
    let root = parent.root.clone().or_else(|| Some(parent_run.clone()));
    // A cron child's first run waits for the schedule's first time (validated with the
    // command), whatever arrives meanwhile, as a cron start does.
    let cron_first = (!c.cron_schedule.is_empty())
        .then(|| super::cron::next_after(&c.cron_schedule, ctx.now_ms).ok())
        .flatten();
    ctx.next_user_metadata.clone_from(&user_metadata);
    let created = create_run(
        ctx,
        NewRun {
            first_execution_run_id: child_run.run_id.clone(),
            run: child_run.clone(),
            workflow_type: c.workflow_type.clone(),
            task_queue,
            input: c.input,
            workflow_task_timeout_ms: c.workflow_task_timeout_ms,
            run_timeout_ms: c.run_timeout_ms,
            execution_timeout_ms: c.execution_timeout_ms,
            execution_expiration_ms: 0,
            identity: String::new(),
            request_id: String::new(),
            header: c.header.clone(),
            memo: c.memo,
            search_attributes: super::search::initial(&c.search_attributes),
            continued_from: String::new(),
            backoff_ms: cron_first.map_or(0, |at| at.saturating_sub(ctx.now_ms)),
            last_completion_result: Vec::new(),
            continued_failure: Vec::new(),
            initiator: 0,
            retention_ms: parent.retention_ms,
            parent: Some(parent_run),
            parent_initiated_event_id: initiated,
            root,
            retry_policy: c.retry_policy.clone(),
            attempt: 1,
            cron_schedule: c.cron_schedule.clone(),
            scheduled_by: String::new(),
        },
    );
    ctx.next_user_metadata.clear();
    let mut child = created?;
    child.user_metadata = user_metadata;
    if let Some(at) = cron_first {
        ctx.arm(&mut child, DeadlineKind::FirstTaskBackoff, 0, 0, "", at);
        child.pending_backoff = true;
    } else {
        ctx.schedule_workflow_task(&mut child, 1)?;
    }
    ctx.save(&child);
    let started = ctx.append(
        parent,
        Attributes::ChildWorkflowExecutionStarted(ChildWorkflowExecutionStarted {
            workflow_id: c.workflow_id.clone(),
            run_id: child_run.run_id.clone(),
            workflow_type: c.workflow_type.clone(),
            initiated_event_id: initiated,
            header: c.header,
        }),
    );
    parent.children.push(ChildInfo {
        initiated_event_id: initiated,
        started_event_id: started,
        workflow_id: c.workflow_id,
        run_id: child_run.run_id,
        workflow_type: c.workflow_type,
        parent_close_policy: policy as i32,
    });
    Ok(true)
}

/// After a run closed (its close event written, its state not yet saved): a child records
/// its close in its parent, and a parent applies its close policy to its running children.
pub(super) fn on_close<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    status: RunStatus,
) -> Result<()> {
    // A child that continued as new, or whose retry policy started another attempt, is
    // still running as its next run.
    if ms.new_execution_run_id.is_empty() {
        notify_parent(ctx, ms, status)?;
    }
    if !ms.children.is_empty() {
        // Saved first: the children closed below must find their parent closed, and leave
        // it alone.
        let children = std::mem::take(&mut ms.children);
        ctx.save(ms);
        for child in children {
            apply_close_policy(ctx, &ms.run.clone().expect("named run"), child)?;
        }
    }
    Ok(())
}

fn notify_parent<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    child: &MutableState,
    status: RunStatus,
) -> Result<()> {
    let Some(parent_run) = child.parent.clone() else {
        return Ok(());
    };
    let Some(mut parent) = super::apply::read_mutable_state(ctx.store, &parent_run)? else {
        return Ok(());
    };
    if !is_running(&parent) {
        return Ok(());
    }
    let Some(pos) = parent
        .children
        .iter()
        .position(|c| c.initiated_event_id == child.parent_initiated_event_id)
    else {
        return Ok(());
    };
    let info = parent.children.remove(pos);
    let run = child.run.clone().expect("named run");
    let mut closed = ChildClosed {
        workflow_id: run.workflow_id.clone(),
        run_id: run.run_id.clone(),
        workflow_type: info.workflow_type,
        initiated_event_id: info.initiated_event_id,
        started_event_id: info.started_event_id,
        ..Default::default()
    };
    // The child's close event is its last.
    let last = super::apply::read_history(
        ctx.store,
        &run,
        child.next_event_id - 1,
        child.next_event_id - 1,
    )?;
    match last.into_iter().next().and_then(|e| e.attributes) {
        Some(Attributes::WorkflowExecutionCompleted(x)) => closed.result = x.result,
        Some(Attributes::WorkflowExecutionFailed(x)) => {
            closed.failure = x.failure;
            closed.retry_state = x.retry_state;
        }
        Some(Attributes::WorkflowExecutionCanceled(x)) => closed.details = x.details,
        Some(Attributes::WorkflowExecutionTimedOut(x)) => closed.retry_state = x.retry_state,
        _ => {}
    }
    let attributes = match status {
        RunStatus::Completed => Attributes::ChildWorkflowExecutionCompleted(closed),
        RunStatus::Failed => Attributes::ChildWorkflowExecutionFailed(closed),
        RunStatus::Canceled => Attributes::ChildWorkflowExecutionCanceled(closed),
        RunStatus::TimedOut => Attributes::ChildWorkflowExecutionTimedOut(closed),
        RunStatus::Terminated => Attributes::ChildWorkflowExecutionTerminated(closed),
        _ => return Ok(()),
    };
    ctx.add_event(&mut parent, attributes);
    ctx.schedule_workflow_task(&mut parent, 1)?;
    ctx.save(&parent);
    Ok(())
}

/// TERMINATE (the default) terminates a running child, REQUEST_CANCEL asks it to cancel,
/// ABANDON leaves it running. The child is its workflow id's current run if that run
/// descends from the started one (it may have continued as new).
fn apply_close_policy<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    parent: &RunKey,
    child: ChildInfo,
) -> Result<()> {
    let current = RunKey {
        namespace: parent.namespace.clone(),
        workflow_id: child.workflow_id.clone(),
        run_id: String::new(),
    };
    let Some(ms) = ctx.resolve(&Some(current))? else {
        return Ok(());
    };
    let still_ours = is_running(&ms)
        && ms.parent.as_ref() == Some(parent)
        && ms.parent_initiated_event_id == child.initiated_event_id;
    if !still_ours {
        return Ok(());
    }
    let run = ms.run.clone();
    match ParentClosePolicy::try_from(child.parent_close_policy) {
        Ok(ParentClosePolicy::Abandon) => {}
        Ok(ParentClosePolicy::RequestCancel) => {
            super::start::request_cancel(
                ctx,
                &RequestCancelWorkflow {
                    run,
                    reason: "by parent close policy".into(),
                    ..Default::default()
                },
            )?;
        }
        _ => {
            super::start::terminate(
                ctx,
                &TerminateWorkflow {
                    run,
                    reason: "by parent close policy".into(),
                    ..Default::default()
                },
            )?;
        }
    }
    Ok(())
}
