//! Starting runs and the requests that act on a whole run: signal, signal-with-start,
//! cancel request, terminate, run timeout.

use prost::Message;

use super::apply::{
    accepted, decode, is_running, not_found, outcome, rejected, task_started, Ctx,
    DEFAULT_WORKFLOW_TASK_TIMEOUT_MS,
};
use super::model::workflow_outcome::Kind as Outcome;
use super::model::*;
use crate::keys;
use crate::{Result, StateStore};

/// A start either creates a run (state not yet saved) or answers at once.
enum Begin {
    Created(MutableState),
    Answer(WorkflowOutcome),
}

fn begin<S: StateStore>(ctx: &mut Ctx<'_, S>, c: &StartWorkflow) -> Result<Begin> {
    let Some(run) = c.run.clone() else {
        return Ok(Begin::Answer(rejected("start: missing run")));
    };
    for (field, v) in [
        ("namespace", &run.namespace),
        ("workflow_id", &run.workflow_id),
        ("run_id", &run.run_id),
        ("workflow_type", &c.workflow_type),
        ("task_queue", &c.task_queue),
    ] {
        if v.is_empty() {
            return Ok(Begin::Answer(rejected(format!(
                "start: {field} must not be empty"
            ))));
        }
    }
    let Some(namespace) = super::apply::read_namespace(ctx.store, &run.namespace)? else {
        return Ok(Begin::Answer(not_found(format!(
            "namespace {} not found",
            run.namespace
        ))));
    };
    let ckey = keys::current_run(&run.namespace, &run.workflow_id);
    if let Some(b) = ctx.store.get(&ckey)? {
        let current: CurrentRun = decode(&ckey, &b)?;
        let running = current.status == RunStatus::Running as i32;
        if !c.request_id.is_empty() && current.start_request_id == c.request_id {
            // A client retry of the request that started the current run.
            return Ok(Begin::Answer(outcome(Outcome::Started(Started {
                run_id: current.run_id,
                started: false,
            }))));
        }
        let policy =
            IdReusePolicy::try_from(c.id_reuse_policy).unwrap_or(IdReusePolicy::Unspecified);
        let refuse = running
            || match policy {
                IdReusePolicy::RejectDuplicate => true,
                IdReusePolicy::AllowDuplicateFailedOnly => {
                    current.status == RunStatus::Completed as i32
                }
                _ => false,
            };
        if refuse {
            return Ok(Begin::Answer(outcome(Outcome::AlreadyStarted(
                AlreadyStarted {
                    run_id: current.run_id,
                    start_request_id: current.start_request_id,
                },
            ))));
        }
    }
    if crate::workflow::read_mutable_state(ctx.store, &run)?.is_some() {
        return Ok(Begin::Answer(rejected(format!(
            "run id {} is already used",
            run.run_id
        ))));
    }
    let wft_timeout = if c.workflow_task_timeout_ms == 0 {
        DEFAULT_WORKFLOW_TASK_TIMEOUT_MS
    } else {
        c.workflow_task_timeout_ms
    };
    let mut ms = MutableState {
        run: Some(run.clone()),
        status: RunStatus::Running as i32,
        workflow_type: c.workflow_type.clone(),
        task_queue: c.task_queue.clone(),
        next_event_id: 1,
        start_time_ms: ctx.now_ms,
        workflow_task_timeout_ms: wft_timeout,
        start_request_id: c.request_id.clone(),
        run_timeout_ms: c.run_timeout_ms,
        retention_ms: namespace.retention_ms,
        ..Default::default()
    };
    ctx.append(
        &mut ms,
        Attributes::WorkflowExecutionStarted(WorkflowExecutionStarted {
            workflow_type: c.workflow_type.clone(),
            task_queue: c.task_queue.clone(),
            input: c.input.clone(),
            workflow_task_timeout_ms: wft_timeout,
            run_timeout_ms: c.run_timeout_ms,
            execution_timeout_ms: c.execution_timeout_ms,
            identity: c.identity.clone(),
            original_execution_run_id: run.run_id.clone(),
            first_execution_run_id: run.run_id.clone(),
            attempt: 1,
        }),
    );
    let limit = match (c.run_timeout_ms, c.execution_timeout_ms) {
        (0, e) => e,
        (r, 0) => r,
        (r, e) => r.min(e),
    };
    if limit > 0 {
        let at = ctx.now_ms.saturating_add(limit);
        ctx.arm(&mut ms, DeadlineKind::RunTimeout, 0, 0, "", at);
    }
    let current = CurrentRun {
        run_id: run.run_id.clone(),
        status: RunStatus::Running as i32,
        start_request_id: c.request_id.clone(),
    };
    ctx.store.put(&ckey, &current.encode_to_vec());
    ctx.put_visibility(&ms);
    Ok(Begin::Created(ms))
}

pub(super) fn start_workflow<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &StartWorkflow,
) -> Result<WorkflowOutcome> {
    let mut ms = match begin(ctx, c)? {
        Begin::Answer(o) => return Ok(o),
        Begin::Created(ms) => ms,
    };
    ctx.schedule_workflow_task(&mut ms, 1)?;
    ctx.save(&ms);
    Ok(outcome(Outcome::Started(Started {
        run_id: ms.run.expect("named run").run_id,
        started: true,
    })))
}

/// Adds a signal to a running run (dedup by request id); the caller saves.
fn add_signal<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    c: &SignalWorkflow,
) -> Result<()> {
    if !c.request_id.is_empty() {
        if ms.signal_request_ids.contains(&c.request_id) {
            return Ok(()); // a retry of a signal already applied
        }
        ms.signal_request_ids.push(c.request_id.clone());
    }
    ctx.add_event(
        ms,
        Attributes::WorkflowExecutionSignaled(WorkflowExecutionSignaled {
            signal_name: c.signal_name.clone(),
            input: c.input.clone(),
            identity: c.identity.clone(),
            header: c.header.clone(),
            request_id: c.request_id.clone(),
        }),
    );
    ctx.schedule_workflow_task(ms, 1)
}

pub(super) fn signal<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &SignalWorkflow,
) -> Result<WorkflowOutcome> {
    if c.signal_name.is_empty() {
        return Ok(rejected("signal_name must not be empty"));
    }
    let Some(mut ms) = ctx.resolve(&c.run)?.filter(is_running) else {
        return Ok(not_found("workflow execution already completed"));
    };
    add_signal(ctx, &mut ms, c)?;
    ctx.save(&ms);
    Ok(accepted())
}

pub(super) fn signal_with_start<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &SignalWithStart,
) -> Result<WorkflowOutcome> {
    let (Some(start), Some(sig)) = (&c.start, &c.signal) else {
        return Ok(rejected("signal-with-start needs start and signal"));
    };
    if sig.signal_name.is_empty() {
        return Ok(rejected("signal_name must not be empty"));
    }
    let Some(run) = &start.run else {
        return Ok(rejected("start: missing run"));
    };
    let current = RunKey {
        run_id: String::new(),
        ..run.clone()
    };
    if let Some(mut ms) = ctx.resolve(&Some(current))?.filter(is_running) {
        add_signal(ctx, &mut ms, sig)?;
        ctx.save(&ms);
        return Ok(outcome(Outcome::Started(Started {
            run_id: ms.run.expect("named run").run_id,
            started: false,
        })));
    }
    let mut ms = match begin(ctx, start)? {
        Begin::Answer(o) => return Ok(o),
        Begin::Created(ms) => ms,
    };
    // Started, Signaled, then WorkflowTaskScheduled.
    add_signal(ctx, &mut ms, sig)?;
    ctx.save(&ms);
    Ok(outcome(Outcome::Started(Started {
        run_id: ms.run.expect("named run").run_id,
        started: true,
    })))
}

pub(super) fn request_cancel<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &RequestCancelWorkflow,
) -> Result<WorkflowOutcome> {
    let Some(mut ms) = ctx.resolve(&c.run)?.filter(is_running) else {
        return Ok(not_found("workflow execution already completed"));
    };
    if ms.cancel_requested {
        return Ok(accepted()); // idempotent
    }
    ms.cancel_requested = true;
    ctx.add_event(
        &mut ms,
        Attributes::WorkflowExecutionCancelRequested(WorkflowExecutionCancelRequested {
            cause: c.reason.clone(),
            identity: c.identity.clone(),
        }),
    );
    ctx.schedule_workflow_task(&mut ms, 1)?;
    ctx.save(&ms);
    Ok(accepted())
}

/// Before a run is closed from outside a workflow task: a started task fails with
/// FORCE_CLOSE_COMMAND (a transient retry is dropped unwritten) and the buffered events are
/// flushed.
fn force_close_started_task<S: StateStore>(ctx: &mut Ctx<'_, S>, ms: &mut MutableState) {
    if ms.workflow_task.as_ref().is_some_and(|t| t.transient) {
        // A retry under way is dropped unwritten.
        ctx.drop_transient_task(ms);
        ctx.flush_buffered(ms);
    } else if task_started(ms) {
        let t = ms.workflow_task.clone().expect("started task");
        ctx.append(
            ms,
            Attributes::WorkflowTaskFailed(WorkflowTaskFailed {
                scheduled_event_id: t.scheduled_event_id,
                started_event_id: t.started_event_id,
                cause: WorkflowTaskFailedCause::ForceCloseCommand as i32,
                ..Default::default()
            }),
        );
        ms.workflow_task = None;
        ctx.flush_buffered(ms);
    }
}

pub(super) fn terminate<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &TerminateWorkflow,
) -> Result<WorkflowOutcome> {
    let Some(mut ms) = ctx.resolve(&c.run)?.filter(is_running) else {
        return Ok(not_found("workflow execution already completed"));
    };
    force_close_started_task(ctx, &mut ms);
    ctx.append(
        &mut ms,
        Attributes::WorkflowExecutionTerminated(WorkflowExecutionTerminated {
            reason: c.reason.clone(),
            details: c.details.clone(),
            identity: c.identity.clone(),
        }),
    );
    ctx.close(&mut ms, RunStatus::Terminated)?;
    ctx.save(&ms);
    Ok(accepted())
}

pub(super) fn run_timed_out<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
) -> Result<()> {
    force_close_started_task(ctx, ms);
    ctx.append(
        ms,
        Attributes::WorkflowExecutionTimedOut(WorkflowExecutionTimedOut {
            retry_state: RetryState::Timeout as i32,
        }),
    );
    ctx.close(ms, RunStatus::TimedOut)
}

pub(super) fn register_namespace<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &RegisterNamespace,
) -> Result<WorkflowOutcome> {
    if c.name.is_empty() || c.id.is_empty() {
        return Ok(rejected("namespace name and id must not be empty"));
    }
    if super::apply::read_namespace(ctx.store, &c.name)?.is_some() {
        return Ok(outcome(Outcome::AlreadyExists(format!(
            "namespace {} already exists",
            c.name
        ))));
    }
    let record = NamespaceRecord {
        name: c.name.clone(),
        id: c.id.clone(),
        description: c.description.clone(),
        retention_ms: c.retention_ms,
        registered_time_ms: ctx.now_ms,
    };
    ctx.store
        .put(&keys::namespace(&c.name), &record.encode_to_vec());
    Ok(accepted())
}
