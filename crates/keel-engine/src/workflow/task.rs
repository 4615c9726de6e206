//! Workflow tasks: dispatch (for both kinds), completion with commands, failure, timeout,
//! and the user-timer outcome they react to.

use super::activity;
use super::apply::{
    accepted, decode, is_running, not_found, outcome, rejected, task_started, transient_events, Ctx,
};
use super::model::workflow_command::Kind as Cmd;
use super::model::workflow_outcome::Kind as Outcome;
use super::model::*;
use crate::keys;
use crate::{Result, StateStore};

/// Upper bound on stale backlog entries skipped by one dispatch.
const MAX_STALE_SKIPS: usize = 64;

pub(super) fn dispatch_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &DispatchTask,
) -> Result<WorkflowOutcome> {
    let kind = TaskKind::try_from(c.kind).unwrap_or(TaskKind::Workflow);
    if kind == TaskKind::Query {
        return super::query::dispatch(ctx, c);
    }
    for &backlog in super::apply::backlogs_of(kind) {
        if let Some(found) = dispatch_from(ctx, c, kind, backlog)? {
            return Ok(found);
        }
    }
    Ok(outcome(Outcome::NoTask(Empty {})))
}

/// Hands out the first live entry of one backlog, dropping stale entries before it (at most
/// [`MAX_STALE_SKIPS`]).
fn dispatch_from<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &DispatchTask,
    kind: TaskKind,
    backlog: u8,
) -> Result<Option<WorkflowOutcome>> {
    let ckey = keys::queue_cursor(&c.namespace, &c.task_queue, backlog);
    let mut cursor: QueueCursor = match ctx.store.get(&ckey)? {
        Some(b) => decode(&ckey, &b)?,
        None => return Ok(None),
    };
    let mut found = None;
    for _ in 0..MAX_STALE_SKIPS {
        if cursor.head >= cursor.tail {
            break;
        }
        let ekey = keys::queue_entry(&c.namespace, &c.task_queue, backlog, cursor.head);
        let entry = ctx.store.get(&ekey)?;
        ctx.store.delete(&ekey);
        cursor.head += 1;
        let Some(entry) = entry else { continue };
        let entry: TaskRef = decode(&ekey, &entry)?;
        let Some(run) = entry.run.clone() else {
            continue;
        };
        let Some(mut ms) = super::read_mutable_state(ctx.store, &run)? else {
            continue;
        };
        if !is_running(&ms) {
            continue;
        }
        found = match kind {
            TaskKind::Workflow => start_workflow_task(ctx, &mut ms, &entry, c)?,
            TaskKind::Activity => activity::start_attempt(ctx, &mut ms, &entry, c),
            TaskKind::Query => unreachable!("query dispatch returned above"),
        };
        if found.is_some() {
            ctx.save(&ms);
            cursor.last_dispatch_ms = ctx.now_ms;
            break;
        }
    }
    ctx.store
        .put(&ckey, &prost::Message::encode_to_vec(&cursor));
    Ok(found)
}

/// Starts the run's scheduled (unqueued) workflow task for `identity` in this entry: the
/// task an eager start or a completion asking for the next task returns.
pub(super) fn start_for<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    identity: &str,
    request_id: &str,
) -> Result<Option<Dispatched>> {
    let Some(next) = ms.workflow_task.clone() else {
        return Ok(None);
    };
    let run = ms.run.clone().expect("named run");
    let entry = TaskRef {
        run: Some(run.clone()),
        scheduled_event_id: next.scheduled_event_id,
        query_id: String::new(),
        enqueued_ms: 0,
    };
    let dispatch = DispatchTask {
        namespace: run.namespace.clone(),
        task_queue: ms.task_queue.clone(),
        kind: TaskKind::Workflow as i32,
        identity: identity.to_string(),
        request_id: request_id.to_string(),
    };
    Ok(
        match start_workflow_task(ctx, ms, &entry, &dispatch)?.and_then(|o| o.kind) {
            Some(Outcome::Dispatched(d)) => Some(d),
            _ => None,
        },
    )
}

fn start_workflow_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    entry: &TaskRef,
    c: &DispatchTask,
) -> Result<Option<WorkflowOutcome>> {
    let Some(task) = ms.workflow_task.clone() else {
        return Ok(None);
    };
    if task.scheduled_event_id != entry.scheduled_event_id || task.started_event_id != 0 {
        return Ok(None);
    }
    let queries = super::query::attach_to_task(ctx, ms, task.scheduled_event_id, task.attempt)?;
    let updates = super::update::attach(ctx, ms, task.scheduled_event_id, task.attempt)?;
    let (started, transient_events) = if task.transient {
        // Nothing is written: the worker gets the two events under the ids they will have.
        let started = WorkflowTaskInfo {
            started_event_id: task.scheduled_event_id + 1,
            started_time_ms: ctx.now_ms,
            started_identity: c.identity.clone(),
            started_request_id: c.request_id.clone(),
            ..task.clone()
        };
        let events = transient_events(ms, &started);
        ms.workflow_task = Some(started);
        (task.scheduled_event_id + 1, events)
    } else {
        let started = ctx.append(
            ms,
            Attributes::WorkflowTaskStarted(ms.task_started_event(
                task.scheduled_event_id,
                &c.identity,
                &c.request_id,
            )),
        );
        ms.workflow_task = Some(WorkflowTaskInfo {
            started_event_id: started,
            ..task.clone()
        });
        (started, Vec::new())
    };
    let at = ctx.now_ms.saturating_add(ms.workflow_task_timeout_ms);
    ctx.arm(
        ms,
        DeadlineKind::WorkflowTaskStartToClose,
        task.scheduled_event_id,
        task.attempt,
        "",
        at,
    );
    Ok(Some(outcome(Outcome::Dispatched(Dispatched {
        token: Some(TaskToken {
            run: ms.run.clone(),
            kind: TaskKind::Workflow as i32,
            scheduled_event_id: task.scheduled_event_id,
            started_event_id: started,
            attempt: task.attempt,
            query_id: String::new(),
            workflow_task_queue: String::new(),
        }),
        workflow_type: ms.workflow_type.clone(),
        started_event_id: started,
        previous_started_event_id: ms.previous_started_event_id,
        attempt: task.attempt,
        last_event_id: started,
        sticky_queue: ms.sticky_queue.clone(),
        sticky_worker_key: ms.sticky_worker_key.clone(),
        transient_events,
        task_queue: ms.task_queue.clone(),
        queries,
        updates,
        ..Default::default()
    }))))
}

/// Loads the run a token names if the token is still current (else `None`: NOT_FOUND).
pub(super) fn load_for_token<S: StateStore>(
    ctx: &Ctx<'_, S>,
    token: &Option<TaskToken>,
) -> Result<Option<(TaskToken, MutableState)>> {
    let Some(token) = token.clone() else {
        return Ok(None);
    };
    let Some(run) = token.run.clone() else {
        return Ok(None);
    };
    let Some(ms) = super::read_mutable_state(ctx.store, &run)? else {
        return Ok(None);
    };
    if !is_running(&ms) {
        return Ok(None);
    }
    Ok(Some((token, ms)))
}

/// The started workflow task a token names, if it is still the current one.
fn current_task(token: &TaskToken, ms: &MutableState) -> Option<WorkflowTaskInfo> {
    let task = ms.workflow_task.clone()?;
    (token.kind == TaskKind::Workflow as i32
        && task.scheduled_event_id == token.scheduled_event_id
        && task.started_event_id == token.started_event_id
        && task.started_event_id != 0
        && task.attempt == token.attempt)
        .then_some(task)
}

/// Why a completion carrying a command this server does not implement is refused.
pub fn unsupported_command(name: &str) -> String {
    format!("{name} is not supported by this server yet")
}

/// Temporal's activity timeout normalization; `Err` is the task failure message.
pub(super) fn normalize_activity(
    a: &ScheduleActivity,
    run_timeout_ms: u64,
) -> std::result::Result<ScheduleActivity, String> {
    if a.activity_id.is_empty() || a.activity_type.is_empty() {
        return Err("ScheduleActivityTask needs activity_id and activity_type".into());
    }
    let mut n = a.clone();
    if n.schedule_to_close_timeout_ms == 0 && n.start_to_close_timeout_ms == 0 {
        return Err(
            "ScheduleActivityTask needs start_to_close or schedule_to_close timeout".into(),
        );
    }
    let cap = |v: u64, limit: u64| {
        if limit > 0 && (v == 0 || v > limit) {
            limit
        } else {
            v
        }
    };
    if n.schedule_to_close_timeout_ms > 0 {
        n.schedule_to_start_timeout_ms = cap(
            n.schedule_to_start_timeout_ms,
            n.schedule_to_close_timeout_ms,
        );
        n.start_to_close_timeout_ms =
            cap(n.start_to_close_timeout_ms, n.schedule_to_close_timeout_ms);
    } else {
        n.schedule_to_close_timeout_ms = run_timeout_ms;
        if n.schedule_to_start_timeout_ms == 0 {
            n.schedule_to_start_timeout_ms = run_timeout_ms;
        }
    }
    if run_timeout_ms > 0 {
        n.schedule_to_close_timeout_ms = cap(n.schedule_to_close_timeout_ms, run_timeout_ms);
        n.schedule_to_start_timeout_ms = cap(n.schedule_to_start_timeout_ms, run_timeout_ms);
        n.start_to_close_timeout_ms = cap(n.start_to_close_timeout_ms, run_timeout_ms);
    }
    if n.start_to_close_timeout_ms > 0 && n.heartbeat_timeout_ms > n.start_to_close_timeout_ms {
        n.heartbeat_timeout_ms = n.start_to_close_timeout_ms;
    }
    Ok(n)
}

type Invalid = (WorkflowTaskFailedCause, String);

/// Checks every command before anything is written: a task either applies whole or fails.
fn validate(
    ms: &MutableState,
    registry: &std::collections::BTreeMap<String, i32>,
    commands: &[WorkflowCommand],
) -> std::result::Result<Vec<Cmd>, Invalid> {
    let namespace = ms.run.as_ref().map_or("", |r| r.namespace.as_str());
    let typed = |sa: &[u8]| {
        super::search::validate(registry, sa, namespace)
            .map_err(|m| (WorkflowTaskFailedCause::BadSearchAttributes, m))
    };
    let mut out = Vec::with_capacity(commands.len());
    let mut new_timers: Vec<&str> = Vec::new();
    let mut canceled_timers: Vec<&str> = Vec::new();
    let closes = commands.iter().any(|c| {
        matches!(
            c.kind,
            Some(Cmd::CompleteWorkflow(_))
                | Some(Cmd::FailWorkflow(_))
                | Some(Cmd::CancelWorkflow(_))
                | Some(Cmd::ContinueAsNew(_))
        )
    });
    if closes && !ms.buffered.is_empty() {
        return Err((
            WorkflowTaskFailedCause::UnhandledCommand,
            "UnhandledCommand".into(),
        ));
    }
    for c in commands {
        let Some(kind) = &c.kind else {
            return Err((
                WorkflowTaskFailedCause::Unspecified,
                "a command has no attributes".into(),
            ));
        };
        match kind {
            Cmd::Unsupported(name) => {
                return Err((
                    WorkflowTaskFailedCause::Unspecified,
                    unsupported_command(name),
                ));
            }
            Cmd::Invalid(x) => {
                let cause = WorkflowTaskFailedCause::try_from(x.cause)
                    .unwrap_or(WorkflowTaskFailedCause::Unspecified);
                return Err((cause, x.message.clone()));
            }
            Cmd::ScheduleActivity(a) => {
                let n = normalize_activity(a, ms.run_timeout_ms)
                    .map_err(|m| (WorkflowTaskFailedCause::BadScheduleActivityAttributes, m))?;
                out.push(Cmd::ScheduleActivity(n));
                continue;
            }
            Cmd::StartTimer(t) => {
                // A zero timeout is a timer due at once, as in Temporal (the SDKs send it for
                // `sleep(0)`); negative ones are refused by the frontend.
                if t.timer_id.is_empty() {
                    return Err((
                        WorkflowTaskFailedCause::BadStartTimerAttributes,
                        "TimerId is not set on StartTimerCommand.".into(),
                    ));
                }
                let live = ms.timers.iter().any(|x| x.timer_id == t.timer_id)
                    && !canceled_timers.contains(&t.timer_id.as_str());
                if live || new_timers.contains(&t.timer_id.as_str()) {
                    return Err((
                        WorkflowTaskFailedCause::StartTimerDuplicateId,
                        format!("timer id {:?} is already in use", t.timer_id),
                    ));
                }
                new_timers.push(&t.timer_id);
            }
            Cmd::CancelTimer(t) => {
                let known = ms.timers.iter().any(|x| x.timer_id == t.timer_id)
                    || new_timers.contains(&t.timer_id.as_str());
                if !known {
                    return Err((
                        WorkflowTaskFailedCause::BadCancelTimerAttributes,
                        format!("no pending timer {:?}", t.timer_id),
                    ));
                }
                new_timers.retain(|x| *x != t.timer_id);
                canceled_timers.push(&t.timer_id);
            }
            Cmd::RequestCancelActivity(r) => {
                if !ms
                    .activities
                    .iter()
                    .any(|a| a.scheduled_event_id == r.scheduled_event_id)
                {
                    return Err((
                        WorkflowTaskFailedCause::BadRequestCancelActivityAttributes,
                        format!(
                            "no pending activity scheduled at event {}",
                            r.scheduled_event_id
                        ),
                    ));
                }
            }
            Cmd::SignalExternal(x) => {
                if x.workflow_id.is_empty() || x.signal_name.is_empty() {
                    return Err((
                        WorkflowTaskFailedCause::BadSignalWorkflowExecutionAttributes,
                        "SignalExternalWorkflowExecution needs workflow_id and signal_name".into(),
                    ));
                }
            }
            Cmd::RequestCancelExternal(x) => {
                if x.workflow_id.is_empty() {
                    return Err((
                        WorkflowTaskFailedCause::BadRequestCancelExternalWorkflowExecutionAttributes,
                        "RequestCancelExternalWorkflowExecution needs workflow_id".into(),
                    ));
                }
            }
            Cmd::StartChildWorkflow(c) => {
                if c.workflow_id.is_empty() || c.workflow_type.is_empty() || c.new_run_id.is_empty()
                {
                    return Err((
                        WorkflowTaskFailedCause::BadStartChildExecutionAttributes,
                        "StartChildWorkflowExecution needs workflow_id and workflow_type".into(),
                    ));
                }
                if !c.cron_schedule.is_empty()
                    && super::cron::next_after(&c.cron_schedule, ms.start_time_ms).is_err()
                {
                    return Err((
                        WorkflowTaskFailedCause::BadStartChildExecutionAttributes,
                        "Invalid CronSchedule.".into(),
                    ));
                }
                let search_attributes = typed(&c.search_attributes)?;
                out.push(Cmd::StartChildWorkflow(StartChildWorkflow {
                    search_attributes,
                    ..c.clone()
                }));
                continue;
            }
            Cmd::ContinueAsNew(n) => {
                if n.new_run_id.is_empty() {
                    return Err((
                        WorkflowTaskFailedCause::BadContinueAsNewAttributes,
                        "ContinueAsNew needs a new run id".into(),
                    ));
                }
                let search_attributes = typed(&n.search_attributes)?;
                out.push(Cmd::ContinueAsNew(ContinueAsNew {
                    search_attributes,
                    ..n.clone()
                }));
                continue;
            }
            Cmd::UpsertSearchAttributes(u) => {
                let search_attributes = typed(&u.search_attributes)?;
                if search_attributes.is_empty() {
                    return Err((
                        WorkflowTaskFailedCause::BadSearchAttributes,
                        "SearchAttributes is not set on UpsertWorkflowSearchAttributesCommand."
                            .into(),
                    ));
                }
                out.push(Cmd::UpsertSearchAttributes(UpsertSearchAttributes {
                    search_attributes,
                }));
                continue;
            }
            Cmd::ModifyProperties(m) => {
                let fields = super::search::decode_map(&m.upserted_memo).map_err(|e| {
                    (
                        WorkflowTaskFailedCause::BadModifyWorkflowPropertiesAttributes,
                        e,
                    )
                })?;
                if fields.fields.is_empty() {
                    return Err((
                        WorkflowTaskFailedCause::BadModifyWorkflowPropertiesAttributes,
                        "UpsertedMemo is not set on ModifyWorkflowPropertiesCommand.".into(),
                    ));
                }
            }
            Cmd::CompleteWorkflow(_)
            | Cmd::FailWorkflow(_)
            | Cmd::CancelWorkflow(_)
            | Cmd::RecordMarker(_)
            // Checked against the completion's messages by `update::validate`.
            | Cmd::ProtocolMessage(_) => {}
        }
        out.push(kind.clone());
    }
    Ok(out)
}

pub(super) fn complete_workflow_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &CompleteWorkflowTask,
) -> Result<WorkflowOutcome> {
    let Some((token, mut ms)) = load_for_token(ctx, &c.token)? else {
        return Ok(not_found("workflow task not found"));
    };
    let Some(task) = current_task(&token, &ms) else {
        return Ok(not_found("workflow task not found"));
    };
    let registry = match &ms.run {
        Some(run) => super::apply::read_namespace(ctx.store, &run.namespace)?
            .map(|n| n.search_attributes)
            .unwrap_or_default(),
        None => Default::default(),
    };
    // A command past the blob limit ends the run, as in Temporal: retrying cannot help.
    if let Some(x) = c.commands.iter().find_map(|c| match &c.kind {
        Some(Cmd::Invalid(x)) if x.terminate => Some(x),
        _ => None,
    }) {
        let cause = WorkflowTaskFailedCause::try_from(x.cause)
            .unwrap_or(WorkflowTaskFailedCause::Unspecified);
        super::limits::terminate_for_command(ctx, &mut ms, &task, cause, &x.message, &c.identity)?;
        return Ok(rejected(x.message.clone()));
    }
    let checked =
        validate(&ms, &registry, &c.commands).and_then(|v| {
            match super::update::validate(&ms, &c.commands, &c.messages) {
                None => Ok(v),
                Some(m) => Err((
                    WorkflowTaskFailedCause::BadUpdateWorkflowExecutionMessage,
                    m,
                )),
            }
        });
    let commands = match checked {
        Ok(v) => v,
        // A retry that sends invalid commands again is left to time out, as in Temporal: an
        // SDK that replays and resends at once would otherwise loop without pause.
        Err((cause, message))
            if task.attempt > 1 && cause != WorkflowTaskFailedCause::UnhandledCommand =>
        {
            return Ok(rejected(message));
        }
        Err((cause, message)) => {
            fail_started_task(
                ctx,
                &mut ms,
                &task,
                cause,
                message.clone(),
                &c.identity,
                Vec::new(),
            )?;
            ctx.save(&ms);
            return Ok(rejected(message));
        }
    };
    // Like everything else a completion carries, query answers count only if it is accepted.
    let run = ms.run.clone().expect("named run");
    super::query::answer_from_task(ctx, &run, &task, &c.query_results)?;
    ctx.disarm(&mut ms, |d| {
        d.kind == DeadlineKind::WorkflowTaskStartToClose as i32
    });
    let wtc = ctx.append(
        &mut ms,
        Attributes::WorkflowTaskCompleted(WorkflowTaskCompleted {
            scheduled_event_id: task.scheduled_event_id,
            started_event_id: task.started_event_id,
            identity: c.identity.clone(),
            sdk_metadata: c.sdk_metadata.clone(),
        }),
    );
    ms.workflow_task = None;
    ms.previous_started_event_id = task.started_event_id;
    ms.sticky_queue = c.sticky_queue.clone();
    ms.sticky_worker_key = c.worker_key.clone();
    let mut needs_task = false;
    let mut eager = Vec::new();
    let mut processed: Vec<&str> = Vec::new();
    for (cmd, user_metadata) in commands
        .into_iter()
        .zip(c.commands.iter().map(|c| &c.user_metadata))
    {
        if !is_running(&ms) {
            break; // nothing follows a close command
        }
        // The command's first event carries its metadata; nothing else may.
        ctx.next_user_metadata.clone_from(user_metadata);
        let applied = apply_one(ctx, &mut ms, cmd, wtc, c, &mut eager, &mut processed);
        ctx.next_user_metadata.clear();
        needs_task |= applied?;
    }
    // Messages no command placed (rejections, above all) come after every command.
    for m in &c.messages {
        if is_running(&ms) && !processed.contains(&m.message_id.as_str()) {
            super::update::process(ctx, &mut ms, m)?;
        }
    }
    needs_task |= super::update::after_completion(ctx, &mut ms, &task, c.force_create_new_task)?;
    needs_task |= ctx.flush_buffered(&mut ms);
    // A heartbeat (force_create) asks for a task with no new event: the SDK keeps working on
    // the run (a long local activity) and must not let the task time out.
    if needs_task || c.force_create_new_task {
        ctx.schedule_workflow_task_queued(&mut ms, 1, !c.return_new_task)?;
    }
    // Eager activities start now for the completing worker (a run closed by a later command
    // dropped them).
    let mut started = Vec::new();
    if is_running(&ms) {
        let run = ms.run.clone().expect("named run");
        for scheduled_event_id in eager {
            let entry = TaskRef {
                run: Some(run.clone()),
                scheduled_event_id,
                query_id: String::new(),
                enqueued_ms: 0,
            };
            let dispatch = DispatchTask {
                namespace: run.namespace.clone(),
                task_queue: ms.task_queue.clone(),
                kind: TaskKind::Activity as i32,
                identity: c.identity.clone(),
                request_id: format!("eager-{wtc}-{scheduled_event_id}"),
            };
            if let Some(Outcome::Dispatched(d)) =
                activity::start_attempt(ctx, &mut ms, &entry, &dispatch).and_then(|o| o.kind)
            {
                started.push(d);
            }
        }
    }
    // The new task goes straight back to the completing worker, never through the backlog;
    // started last, so its history holds every event of this completion.
    let workflow_task = match &ms.workflow_task {
        Some(next) if c.return_new_task && next.started_event_id == 0 => {
            let entry = TaskRef {
                run: ms.run.clone(),
                scheduled_event_id: next.scheduled_event_id,
                query_id: String::new(),
                enqueued_ms: 0,
            };
            let dispatch = DispatchTask {
                namespace: entry.run.as_ref().expect("named run").namespace.clone(),
                task_queue: ms.task_queue.clone(),
                kind: TaskKind::Workflow as i32,
                identity: c.identity.clone(),
                request_id: format!("returned-{wtc}"),
            };
            match start_workflow_task(ctx, &mut ms, &entry, &dispatch)?.and_then(|o| o.kind) {
                Some(Outcome::Dispatched(d)) => Some(d),
                _ => None,
            }
        }
        _ => None,
    };
    ctx.save(&ms);
    if started.is_empty() && workflow_task.is_none() {
        return Ok(accepted());
    }
    Ok(outcome(Outcome::CompletedWithTasks(CompletionTasks {
        activities: started,
        workflow_task,
    })))
}

/// One command of a completion: activities (which may start eagerly) and protocol messages
/// (processed in command order) here, the rest by [`apply_command`]. Returns whether the run
/// needs a new workflow task.
fn apply_one<'c, S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    cmd: Cmd,
    wtc: i64,
    c: &'c CompleteWorkflowTask,
    eager: &mut Vec<i64>,
    processed: &mut Vec<&'c str>,
) -> Result<bool> {
    match cmd {
        Cmd::ScheduleActivity(n) => {
            eager.extend(activity::schedule(ctx, ms, n, wtc)?);
            Ok(false)
        }
        Cmd::ProtocolMessage(id) => {
            if let Some(m) = c.messages.iter().find(|m| m.message_id == id) {
                super::update::process(ctx, ms, m)?;
                processed.push(&m.message_id);
            }
            Ok(false)
        }
        cmd => apply_command(ctx, ms, cmd, wtc, &c.identity),
    }
}

/// Writes one validated command's event(s); returns whether a new workflow task is needed.
fn apply_command<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    cmd: Cmd,
    wtc: i64,
    identity: &str,
) -> Result<bool> {
    match cmd {
        // Validation fails the task on an unsupported or invalid command: none reaches here.
        Cmd::Unsupported(_) | Cmd::Invalid(_) => Ok(false),
        // Processed by the completion loop, which has the messages.
        Cmd::ProtocolMessage(_) => Ok(false),
        Cmd::ContinueAsNew(n) => super::chain::continue_as_new(ctx, ms, n, wtc).map(|_| false),
        Cmd::StartChildWorkflow(c) => super::children::start_child(ctx, ms, c, wtc),
        Cmd::SignalExternal(x) => super::external::signal(ctx, ms, x, wtc),
        Cmd::RequestCancelExternal(x) => super::external::request_cancel(ctx, ms, x, wtc),
        // Eager starts are handled by the completion itself; here the activity is queued.
        Cmd::ScheduleActivity(mut n) => {
            n.request_eager_execution = false;
            activity::schedule(ctx, ms, n, wtc).map(|_| false)
        }
        Cmd::StartTimer(t) => {
            let started = ctx.append(
                ms,
                Attributes::TimerStarted(TimerStarted {
                    timer_id: t.timer_id.clone(),
                    start_to_fire_timeout_ms: t.start_to_fire_timeout_ms,
                    workflow_task_completed_event_id: wtc,
                }),
            );
            let fire_at_ms = ctx.now_ms.saturating_add(t.start_to_fire_timeout_ms);
            ms.timers.push(TimerInfo {
                timer_id: t.timer_id.clone(),
                started_event_id: started,
                fire_at_ms,
            });
            ctx.arm(
                ms,
                DeadlineKind::UserTimer,
                started,
                0,
                &t.timer_id,
                fire_at_ms,
            );
            Ok(false)
        }
        Cmd::CancelTimer(t) => {
            let pos = ms
                .timers
                .iter()
                .position(|x| x.timer_id == t.timer_id)
                .expect("validated: the timer is pending");
            let timer = ms.timers.remove(pos);
            ctx.disarm(ms, |d| {
                d.kind == DeadlineKind::UserTimer as i32 && d.event_id == timer.started_event_id
            });
            ctx.append(
                ms,
                Attributes::TimerCanceled(TimerCanceled {
                    timer_id: timer.timer_id,
                    started_event_id: timer.started_event_id,
                    workflow_task_completed_event_id: wtc,
                    identity: identity.to_string(),
                }),
            );
            Ok(false)
        }
        Cmd::RequestCancelActivity(r) => {
            activity::request_cancel(ctx, ms, r.scheduled_event_id, wtc)
        }
        Cmd::UpsertSearchAttributes(u) => {
            ms.search_attributes =
                super::search::merge(&ms.search_attributes, &u.search_attributes);
            ctx.append(
                ms,
                Attributes::UpsertWorkflowSearchAttributes(SearchAttributesUpserted {
                    workflow_task_completed_event_id: wtc,
                    search_attributes: u.search_attributes,
                }),
            );
            ctx.put_visibility(ms);
            Ok(false)
        }
        Cmd::ModifyProperties(m) => {
            ms.memo = super::search::merge(&ms.memo, &m.upserted_memo);
            ctx.append(
                ms,
                Attributes::WorkflowPropertiesModified(PropertiesModified {
                    workflow_task_completed_event_id: wtc,
                    upserted_memo: m.upserted_memo,
                }),
            );
            ctx.put_visibility(ms);
            Ok(false)
        }
        Cmd::RecordMarker(m) => {
            ctx.append(
                ms,
                Attributes::MarkerRecorded(MarkerRecorded {
                    marker_name: m.marker_name,
                    details: m.details,
                    workflow_task_completed_event_id: wtc,
                    header: m.header,
                    failure: m.failure,
                }),
            );
            Ok(false)
        }
        Cmd::CompleteWorkflow(cw) => {
            super::chain::complete(ctx, ms, cw.result, wtc, &cw.next_run_id).map(|_| false)
        }
        Cmd::FailWorkflow(f) => {
            let ending = super::chain::Ending::Failed {
                failure: f.failure,
                failure_type: f.failure_type,
                non_retryable: f.non_retryable,
                wtc,
            };
            super::chain::close_or_retry(ctx, ms, ending, &f.next_run_id).map(|_| false)
        }
        Cmd::CancelWorkflow(cw) => {
            ctx.append(
                ms,
                Attributes::WorkflowExecutionCanceled(WorkflowExecutionCanceled {
                    workflow_task_completed_event_id: wtc,
                    details: cw.details,
                }),
            );
            ctx.close(ms, RunStatus::Canceled).map(|_| false)
        }
    }
}

/// Fails the started workflow task: WorkflowTaskFailed, flush buffered events, schedule the
/// next attempt (attempt 1 again after UnhandledCommand, which is not the worker's fault).
fn fail_started_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    task: &WorkflowTaskInfo,
    cause: WorkflowTaskFailedCause,
    message: String,
    identity: &str,
    failure: Vec<u8>,
) -> Result<()> {
    ctx.disarm(ms, |d| {
        d.kind == DeadlineKind::WorkflowTaskStartToClose as i32
    });
    if task.transient && cause != WorkflowTaskFailedCause::UnhandledCommand {
        // A retry failing again writes nothing (UnhandledCommand is not the worker's fault:
        // that outcome is written, after the attempt's own events).
        ctx.drop_transient_task(ms);
        ms.sticky_queue.clear();
        ms.sticky_worker_key.clear();
        ctx.flush_buffered(ms);
        return ctx.schedule_workflow_task(ms, task.attempt + 1);
    }
    ctx.append(
        ms,
        Attributes::WorkflowTaskFailed(WorkflowTaskFailed {
            scheduled_event_id: task.scheduled_event_id,
            started_event_id: task.started_event_id,
            cause: cause as i32,
            message,
            identity: identity.to_string(),
            failure,
            ..Default::default()
        }),
    );
    ms.workflow_task = None;
    ms.sticky_queue.clear(); // the worker may have lost the run
    ctx.flush_buffered(ms);
    let next_attempt = if cause == WorkflowTaskFailedCause::UnhandledCommand {
        1
    } else {
        task.attempt + 1
    };
    ctx.schedule_workflow_task(ms, next_attempt)
}

/// RespondWorkflowTaskFailed from the worker.
pub(super) fn fail_workflow_task_request<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &FailWorkflowTask,
) -> Result<WorkflowOutcome> {
    let Some((token, mut ms)) = load_for_token(ctx, &c.token)? else {
        return Ok(not_found("workflow task not found"));
    };
    let Some(task) = current_task(&token, &ms) else {
        return Ok(not_found("workflow task not found"));
    };
    let cause =
        WorkflowTaskFailedCause::try_from(c.cause).unwrap_or(WorkflowTaskFailedCause::Unspecified);
    fail_started_task(
        ctx,
        &mut ms,
        &task,
        cause,
        String::new(),
        &c.identity,
        c.failure.clone(),
    )?;
    ctx.save(&ms);
    Ok(accepted())
}

pub(super) fn workflow_task_timed_out<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    d: &Deadline,
) -> Result<()> {
    let Some(task) = ms.workflow_task.clone() else {
        return Ok(());
    };
    if !task_started(ms) || task.scheduled_event_id != d.event_id || task.attempt != d.attempt {
        return Ok(());
    }
    if task.transient {
        // A retry timing out again writes nothing.
        ctx.drop_transient_task(ms);
        ms.sticky_queue.clear();
        ms.sticky_worker_key.clear();
        ctx.flush_buffered(ms);
        return ctx.schedule_workflow_task(ms, task.attempt + 1);
    }
    ctx.append(
        ms,
        Attributes::WorkflowTaskTimedOut(WorkflowTaskTimedOut {
            scheduled_event_id: task.scheduled_event_id,
            started_event_id: task.started_event_id,
            timeout_type: TimeoutType::StartToClose as i32,
        }),
    );
    ms.workflow_task = None;
    ms.sticky_queue.clear(); // the worker may be gone
    ctx.flush_buffered(ms);
    ctx.schedule_workflow_task(ms, task.attempt + 1)
}

pub(super) fn timer_fired<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    d: &Deadline,
) -> Result<()> {
    let Some(pos) = ms
        .timers
        .iter()
        .position(|t| t.started_event_id == d.event_id)
    else {
        return Ok(());
    };
    let t = ms.timers.remove(pos);
    ctx.add_event(
        ms,
        Attributes::TimerFired(TimerFired {
            timer_id: t.timer_id,
            started_event_id: t.started_event_id,
        }),
    );
    ctx.schedule_workflow_task(ms, 1)
}

#[cfg(test)]
pub(super) fn normalize_for_tests(
    a: &ScheduleActivity,
    run_timeout_ms: u64,
) -> std::result::Result<ScheduleActivity, String> {
    normalize_activity(a, run_timeout_ms)
}
