//! Starting runs and the requests that act on a whole run: signal, signal-with-start,
//! cancel request, terminate, run timeout. [`create_run`] is also how a chain of runs
//! (`chain`) starts its next run.

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
#[allow(clippy::large_enum_variant)] // short-lived: returned once per start
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
    let search_attributes = match super::search::validate(
        &namespace.search_attributes,
        &c.search_attributes,
        &run.namespace,
    ) {
        Ok(typed) => super::search::initial(&typed),
        Err(e) => return Ok(Begin::Answer(rejected(e))),
    };
    let ckey = keys::current_run(&run.namespace, &run.workflow_id);
    if let Some(b) = ctx.store.get(&ckey)? {
        let current: CurrentRun = decode(&ckey, &b)?;
        if !c.request_id.is_empty() && current.start_request_id == c.request_id {
            // A client retry of the request that started the current run.
            return Ok(Begin::Answer(outcome(Outcome::Started(Started {
                run_id: current.run_id,
                started: false,
                eager_task: None,
            }))));
        }
        if current.status == RunStatus::Running as i32 && c.conflict_policy == CONFLICT_USE_EXISTING
        {
            return Ok(Begin::Answer(outcome(Outcome::Started(Started {
                run_id: current.run_id,
                started: false,
                eager_task: None,
            }))));
        }
        let terminate_existing = c.conflict_policy == CONFLICT_TERMINATE_EXISTING
            || c.id_reuse_policy == IdReusePolicy::TerminateIfRunning as i32;
        // (Never for a run id in use: that start is refused below, terminating nothing.)
        if current.status == RunStatus::Running as i32
            && terminate_existing
            && crate::workflow::read_mutable_state(ctx.store, &run)?.is_none()
        {
            terminate_for_new_run(ctx, &run, &current.run_id)?;
        } else if reuse_refused(&current, c.id_reuse_policy) {
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
    // The start's metadata goes on WorkflowExecutionStarted, create_run's first event.
    ctx.next_user_metadata.clone_from(&c.user_metadata);
    let created = create_run(
        ctx,
        NewRun {
            first_execution_run_id: run.run_id.clone(),
            run,
            workflow_type: c.workflow_type.clone(),
            task_queue: c.task_queue.clone(),
            input: c.input.clone(),
            workflow_task_timeout_ms: c.workflow_task_timeout_ms,
            run_timeout_ms: c.run_timeout_ms,
            execution_timeout_ms: c.execution_timeout_ms,
            execution_expiration_ms: 0,
            identity: c.identity.clone(),
            request_id: c.request_id.clone(),
            header: c.header.clone(),
            memo: c.memo.clone(),
            search_attributes,
            continued_from: String::new(),
            // A cron run waits for the schedule's first time (validated before begin).
            backoff_ms: if c.cron_schedule.is_empty() {
                c.start_delay_ms
            } else {
                super::cron::next_after(&c.cron_schedule, ctx.now_ms)
                    .map_or(0, |at| at.saturating_sub(ctx.now_ms))
            },
            last_completion_result: c.last_completion_result.clone(),
            continued_failure: c.continued_failure.clone(),
            initiator: 0,
            retention_ms: namespace.retention_ms,
            parent: None,
            parent_initiated_event_id: 0,
            root: None,
            retry_policy: c.retry_policy.clone(),
            attempt: 1,
            cron_schedule: c.cron_schedule.clone(),
            scheduled_by: c.scheduled_by.clone(),
        },
    );
    ctx.next_user_metadata.clear();
    let mut ms = created?;
    ms.user_metadata.clone_from(&c.user_metadata);
    Ok(Begin::Created(ms))
}

/// Temporal's `Payloads` with one JSON string, for the details of a termination.
#[derive(Clone, PartialEq, prost::Message)]
struct StringPayloads {
    #[prost(message, repeated, tag = "1")]
    payloads: Vec<super::search::Payload>,
}

/// Terminates the running run `current_run_id` of `run`'s workflow id for the start of
/// `run` (conflict policy TERMINATE_EXISTING, reuse policy TERMINATE_IF_RUNNING), with
/// Temporal's reason, details and identity.
fn terminate_for_new_run<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    run: &RunKey,
    current_run_id: &str,
) -> Result<()> {
    let details = StringPayloads {
        payloads: vec![super::search::json_payload(&serde_json::Value::String(
            format!("terminated by new runID: {}", run.run_id),
        ))],
    };
    terminate(
        ctx,
        &TerminateWorkflow {
            run: Some(RunKey {
                run_id: current_run_id.to_string(),
                ..run.clone()
            }),
            identity: "history-service".into(),
            reason: "TerminateIfRunning WorkflowIdReusePolicy".into(),
            details: details.encode_to_vec(),
            first_execution_run_id: String::new(),
        },
    )?;
    Ok(())
}

/// Whether a new run of a workflow id whose current run is `current` is refused: the
/// current run is still running, or the id reuse policy forbids another run.
pub(super) fn reuse_refused(current: &CurrentRun, id_reuse_policy: i32) -> bool {
    let policy = IdReusePolicy::try_from(id_reuse_policy).unwrap_or(IdReusePolicy::Unspecified);
    current.status == RunStatus::Running as i32
        || match policy {
            IdReusePolicy::RejectDuplicate => true,
            IdReusePolicy::AllowDuplicateFailedOnly => {
                current.status == RunStatus::Completed as i32
            }
            _ => false,
        }
}

/// Everything a new run starts from: a client's start, or the run it continues.
pub(super) struct NewRun {
    pub(super) run: RunKey,
    pub(super) workflow_type: String,
    pub(super) task_queue: String,
    pub(super) input: Vec<u8>,
    /// 0: the default.
    pub(super) workflow_task_timeout_ms: u64,
    pub(super) run_timeout_ms: u64,
    pub(super) execution_timeout_ms: u64,
    /// When the chain's execution timeout ends (0: from `execution_timeout_ms`, now).
    pub(super) execution_expiration_ms: u64,
    pub(super) identity: String,
    pub(super) request_id: String,
    pub(super) header: Vec<u8>,
    pub(super) memo: Vec<u8>,
    /// Encoded `SearchAttributes`, validated and typed, without nulls.
    pub(super) search_attributes: Vec<u8>,
    pub(super) first_execution_run_id: String,
    pub(super) continued_from: String,
    pub(super) backoff_ms: u64,
    pub(super) last_completion_result: Vec<u8>,
    pub(super) continued_failure: Vec<u8>,
    pub(super) initiator: i32,
    pub(super) retention_ms: u64,
    pub(super) retry_policy: Option<RetryPolicy>,
    pub(super) attempt: i32,
    pub(super) cron_schedule: String,
    /// For a child: its parent, the parent's initiated event and the root of the tree.
    pub(super) parent: Option<RunKey>,
    pub(super) parent_initiated_event_id: i64,
    pub(super) root: Option<RunKey>,
    /// The schedule that started the chain (empty: none).
    pub(super) scheduled_by: String,
}

/// Writes a new run's WorkflowExecutionStarted, arms its run timeout (its own, capped by
/// what is left of the chain's execution timeout) and makes it the workflow id's current
/// run. The caller schedules the first workflow task and saves.
pub(super) fn create_run<S: StateStore>(ctx: &mut Ctx<'_, S>, n: NewRun) -> Result<MutableState> {
    let wft_timeout = if n.workflow_task_timeout_ms == 0 {
        DEFAULT_WORKFLOW_TASK_TIMEOUT_MS
    } else {
        n.workflow_task_timeout_ms
    };
    let expiration = match (n.execution_expiration_ms, n.execution_timeout_ms) {
        (0, 0) => 0,
        (0, t) => ctx.now_ms.saturating_add(t),
        (at, _) => at,
    };
    let mut ms = MutableState {
        run: Some(n.run.clone()),
        status: RunStatus::Running as i32,
        workflow_type: n.workflow_type.clone(),
        task_queue: n.task_queue.clone(),
        next_event_id: 1,
        start_time_ms: ctx.now_ms,
        workflow_task_timeout_ms: wft_timeout,
        start_request_id: n.request_id.clone(),
        run_timeout_ms: n.run_timeout_ms,
        retention_ms: n.retention_ms,
        header: n.header.clone(),
        memo: n.memo.clone(),
        search_attributes: n.search_attributes.clone(),
        first_execution_run_id: n.first_execution_run_id.clone(),
        execution_timeout_ms: n.execution_timeout_ms,
        execution_expiration_ms: expiration,
        continued_from_run_id: n.continued_from.clone(),
        execution_time_ms: ctx.now_ms.saturating_add(n.backoff_ms),
        parent: n.parent.clone(),
        parent_initiated_event_id: n.parent_initiated_event_id,
        root: n.root.clone(),
        retry_policy: n.retry_policy.clone(),
        attempt: n.attempt.max(1),
        cron_schedule: n.cron_schedule.clone(),
        scheduled_by: n.scheduled_by.clone(),
        ..Default::default()
    };
    ctx.append(
        &mut ms,
        Attributes::WorkflowExecutionStarted(WorkflowExecutionStarted {
            workflow_type: n.workflow_type,
            task_queue: n.task_queue,
            input: n.input,
            workflow_task_timeout_ms: wft_timeout,
            run_timeout_ms: n.run_timeout_ms,
            execution_timeout_ms: n.execution_timeout_ms,
            identity: n.identity,
            original_execution_run_id: n.run.run_id.clone(),
            first_execution_run_id: n.first_execution_run_id,
            attempt: n.attempt.max(1),
            continued_execution_run_id: n.continued_from,
            header: n.header,
            memo: n.memo,
            search_attributes: n.search_attributes,
            first_workflow_task_backoff_ms: n.backoff_ms,
            execution_expiration_ms: expiration,
            last_completion_result: n.last_completion_result,
            continued_failure: n.continued_failure,
            initiator: n.initiator,
            parent: n.parent,
            parent_initiated_event_id: n.parent_initiated_event_id,
            root: n.root,
            retry_policy: n.retry_policy,
            cron_schedule: n.cron_schedule,
        }),
    );
    arm_run_timeout(ctx, &mut ms);
    let current = CurrentRun {
        run_id: n.run.run_id.clone(),
        status: RunStatus::Running as i32,
        start_request_id: n.request_id,
    };
    ctx.store.put(
        &keys::current_run(&n.run.namespace, &n.run.workflow_id),
        &current.encode_to_vec(),
    );
    if let Some(ns) = super::apply::read_namespace(ctx.store, &n.run.namespace)? {
        ms.suggest_continue_as_new_events = ns.suggest_continue_as_new_events;
        ms.suggest_continue_as_new_bytes = ns.suggest_continue_as_new_bytes;
    }
    ctx.count_status(&n.run, RunStatus::Running as i32, 1)?;
    ctx.put_visibility(&ms);
    Ok(ms)
}

/// Arms a new run's run timeout: its own from now, capped by what is left of the chain's
/// execution timeout (none if neither is set).
pub(super) fn arm_run_timeout<S: StateStore>(ctx: &mut Ctx<'_, S>, ms: &mut MutableState) {
    let run_end = (ms.run_timeout_ms > 0).then(|| ctx.now_ms.saturating_add(ms.run_timeout_ms));
    let end = match (run_end, ms.execution_expiration_ms) {
        (None, 0) => None,
        (None, e) => Some(e),
        (Some(r), 0) => Some(r),
        (Some(r), e) => Some(r.min(e)),
    };
    if let Some(at) = end {
        ctx.arm(ms, DeadlineKind::RunTimeout, 0, 0, "", at.max(ctx.now_ms));
    }
}

pub(super) fn start_workflow<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &StartWorkflow,
) -> Result<WorkflowOutcome> {
    // A cron run's first task waits for the schedule's first time, whatever arrives.
    let cron_start = if c.cron_schedule.is_empty() {
        None
    } else {
        match super::cron::next_after(&c.cron_schedule, ctx.now_ms) {
            Ok(at) => Some(at),
            Err(e) => return Ok(rejected(format!("invalid cron schedule: {e}"))),
        }
    };
    let mut ms = match begin(ctx, c)? {
        Begin::Answer(o) => return Ok(o),
        Begin::Created(ms) => ms,
    };
    if let Some(at) = cron_start {
        ctx.arm(&mut ms, DeadlineKind::FirstTaskBackoff, 0, 0, "", at);
        ms.pending_backoff = true;
    } else if c.start_delay_ms > 0 {
        let at = ctx.now_ms.saturating_add(c.start_delay_ms);
        ctx.arm(&mut ms, DeadlineKind::FirstTaskBackoff, 0, 0, "", at);
    } else if c.eager {
        // The first task skips the backlog: it is started for the caller right here.
        ctx.schedule_workflow_task_queued(&mut ms, 1, false)?;
        let eager_task = super::task::start_for(ctx, &mut ms, &c.identity, "eager-start")?;
        ctx.save(&ms);
        return Ok(outcome(Outcome::Started(Started {
            run_id: ms.run.expect("named run").run_id,
            started: true,
            eager_task: eager_task.map(Box::new),
        })));
    } else {
        ctx.schedule_workflow_task(&mut ms, 1)?;
    }
    ctx.save(&ms);
    Ok(outcome(Outcome::Started(Started {
        run_id: ms.run.expect("named run").run_id,
        started: true,
        eager_task: None,
    })))
}

/// Adds a signal to a running run (dedup by request id) and schedules a workflow task; the
/// caller saves. `external` is the run that signalled with SignalExternalWorkflowExecution.
pub(super) fn add_signal<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    c: &SignalWorkflow,
    external: Option<RunKey>,
) -> Result<()> {
    if record_signal(ctx, ms, c, external) {
        ctx.schedule_workflow_task(ms, 1)?;
    }
    Ok(())
}

/// The event half of [`add_signal`]: for a run signalling itself while its task completes
/// (the completion schedules the next task). False for a retry of a signal already applied.
pub(super) fn record_signal<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    c: &SignalWorkflow,
    external: Option<RunKey>,
) -> bool {
    if !c.request_id.is_empty() {
        if ms.signal_request_ids.contains(&c.request_id) {
            return false; // a retry of a signal already applied
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
            external,
        }),
    );
    true
}

/// NOT_FOUND's message for a run that is not there at all (Temporal's wording; a closed run
/// answers "workflow execution already completed").
pub(super) fn never_existed(run: &Option<RunKey>) -> String {
    match run {
        Some(r) if !r.run_id.is_empty() => format!(
            "workflow execution not found for ID: {} and run ID: {}",
            r.workflow_id, r.run_id
        ),
        Some(r) => format!("workflow not found for ID: {}", r.workflow_id),
        None => "workflow execution not found".into(),
    }
}

pub(super) fn signal<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &SignalWorkflow,
) -> Result<WorkflowOutcome> {
    if c.signal_name.is_empty() {
        return Ok(rejected("signal_name must not be empty"));
    }
    let mut ms = match ctx.resolve(&c.run)? {
        Some(ms) if is_running(&ms) => ms,
        Some(_) => return Ok(not_found("workflow execution already completed")),
        None => return Ok(not_found(never_existed(&c.run))),
    };
    add_signal(ctx, &mut ms, c, None)?;
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
    // Under TERMINATE_EXISTING / TERMINATE_IF_RUNNING the running run is replaced (in
    // `begin`) and the new one gets the signal; otherwise the running run is signalled.
    let replaces = start.conflict_policy == CONFLICT_TERMINATE_EXISTING
        || start.id_reuse_policy == IdReusePolicy::TerminateIfRunning as i32;
    let running = if replaces {
        None
    } else {
        ctx.resolve(&Some(current))?.filter(is_running)
    };
    if let Some(mut ms) = running {
        add_signal(ctx, &mut ms, sig, None)?;
        ctx.save(&ms);
        return Ok(outcome(Outcome::Started(Started {
            run_id: ms.run.expect("named run").run_id,
            started: false,
            eager_task: None,
        })));
    }
    let mut ms = match begin(ctx, start)? {
        Begin::Answer(o) => return Ok(o),
        Begin::Created(ms) => ms,
    };
    // Started, Signaled, then WorkflowTaskScheduled: the signal cuts any start delay short
    // (the delay's deadline then finds the run under way and does nothing).
    add_signal(ctx, &mut ms, sig, None)?;
    ctx.save(&ms);
    Ok(outcome(Outcome::Started(Started {
        run_id: ms.run.expect("named run").run_id,
        started: true,
        eager_task: None,
    })))
}

/// The running run a cancel or terminate names: with `first_execution_run_id`, the workflow
/// id's current run, which must belong to that chain (else NOT_FOUND, as Temporal answers).
fn target_run<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    run: &Option<RunKey>,
    first_execution_run_id: &str,
) -> Result<std::result::Result<MutableState, WorkflowOutcome>> {
    let run = match run {
        Some(r) if !first_execution_run_id.is_empty() => Some(RunKey {
            run_id: String::new(),
            ..r.clone()
        }),
        other => other.clone(),
    };
    let ms = match ctx.resolve(&run)? {
        Some(ms) if is_running(&ms) => ms,
        Some(_) => return Ok(Err(not_found("workflow execution already completed"))),
        None => return Ok(Err(not_found(never_existed(&run)))),
    };
    if !first_execution_run_id.is_empty() && ms.chain_first_run_id() != first_execution_run_id {
        return Ok(Err(not_found("workflow execution not found")));
    }
    Ok(Ok(ms))
}

pub(super) fn request_cancel<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &RequestCancelWorkflow,
) -> Result<WorkflowOutcome> {
    let mut ms = match target_run(ctx, &c.run, &c.first_execution_run_id)? {
        Ok(ms) => ms,
        Err(answer) => return Ok(answer),
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
            ..Default::default()
        }),
    );
    ctx.schedule_workflow_task(&mut ms, 1)?;
    ctx.save(&ms);
    Ok(accepted())
}

/// Before a run is closed from outside a workflow task: a started task fails with
/// FORCE_CLOSE_COMMAND (a transient retry is dropped unwritten) and the buffered events are
/// flushed.
pub(super) fn force_close_started_task<S: StateStore>(ctx: &mut Ctx<'_, S>, ms: &mut MutableState) {
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

/// DeleteWorkflowExecution: terminates the run if it is running (its parent close policy
/// applies to its children), then removes it as retention would.
pub(super) fn delete<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &DeleteWorkflow,
) -> Result<WorkflowOutcome> {
    let Some(ms) = ctx.resolve(&c.run)? else {
        return Ok(not_found("workflow execution not found"));
    };
    if is_running(&ms) {
        terminate(
            ctx,
            &TerminateWorkflow {
                run: ms.run.clone(),
                identity: c.identity.clone(),
                reason: "Delete workflow execution".into(),
                details: Vec::new(),
                first_execution_run_id: String::new(),
            },
        )?;
    }
    let Some(mut ms) = ctx.resolve(&ms.run)? else {
        return Ok(accepted());
    };
    ctx.delete_run(&mut ms)?;
    Ok(accepted())
}

pub(super) fn terminate<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &TerminateWorkflow,
) -> Result<WorkflowOutcome> {
    let mut ms = match target_run(ctx, &c.run, &c.first_execution_run_id)? {
        Ok(ms) => ms,
        Err(answer) => return Ok(answer),
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

/// The run (or execution) timeout fired; a retry policy may start the next attempt as
/// `next_run_id`.
pub(super) fn run_timed_out<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    next_run_id: &str,
) -> Result<()> {
    force_close_started_task(ctx, ms);
    super::chain::close_or_retry(ctx, ms, super::chain::Ending::TimedOut, next_run_id)
}

pub(super) fn set_namespace_limits<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &SetNamespaceLimits,
) -> Result<WorkflowOutcome> {
    let key = keys::namespace(&c.namespace);
    let Some(bytes) = ctx.store.get(&key)? else {
        return Ok(not_found(format!(
            "Namespace {} is not found.",
            c.namespace
        )));
    };
    let mut ns: NamespaceRecord = decode(&key, &bytes)?;
    ns.suggest_continue_as_new_events = c.suggest_continue_as_new_events;
    ns.suggest_continue_as_new_bytes = c.suggest_continue_as_new_bytes;
    super::apply::put_namespace(ctx, &ns);
    Ok(accepted())
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
        search_attributes: Default::default(),
        suggest_continue_as_new_events: 0,
        suggest_continue_as_new_bytes: 0,
    };
    super::apply::put_namespace(ctx, &record);
    // Runs are counted by status from the start (see `read_status_counts`).
    ctx.store
        .put(&keys::visibility_count(&c.name, 0), &1u64.to_be_bytes());
    Ok(accepted())
}
