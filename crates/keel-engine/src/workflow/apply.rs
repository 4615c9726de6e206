//! Applying workflow commands. Deterministic: only the store, the command and the entry time
//! are read.

use prost::Message;

use super::model::workflow_command::Kind as Cmd;
use super::model::workflow_outcome::Kind as Outcome;
use super::model::*;
use crate::error::hex;
use crate::keys::{self, TimerKind};
use crate::{Error, Result, StateStore};

/// Temporal's default workflow task timeout.
pub const DEFAULT_WORKFLOW_TASK_TIMEOUT_MS: u64 = 10_000;

/// What the leader's drivers and waiters need to learn from an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A task was appended to a backlog: wake pollers of that queue.
    TaskQueued {
        namespace: String,
        task_queue: String,
        kind: TaskKind,
    },
    /// A deadline was armed in the timers index.
    TimerArmed { fire_at_ms: u64 },
    /// A run's history grew (wake history long-polls).
    HistoryGrew { run: RunKey, next_event_id: i64 },
    /// A run closed.
    RunClosed { run: RunKey },
}

/// The apply context of one command.
struct Ctx<'a, S: StateStore> {
    store: &'a mut S,
    now_ms: u64,
    effects: &'a mut Vec<Effect>,
}

fn decode<M: Message + Default>(key: &[u8], bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Corrupt {
        key_hex: hex(key),
        message: e.to_string(),
    })
}

fn rejected(msg: impl Into<String>) -> WorkflowOutcome {
    WorkflowOutcome {
        kind: Some(Outcome::InvalidArgument(msg.into())),
    }
}

fn not_found(msg: impl Into<String>) -> WorkflowOutcome {
    WorkflowOutcome {
        kind: Some(Outcome::NotFound(msg.into())),
    }
}

fn accepted() -> WorkflowOutcome {
    WorkflowOutcome {
        kind: Some(Outcome::Accepted(Empty {})),
    }
}

fn state_key(run: &RunKey) -> Vec<u8> {
    keys::mutable_state(&run.namespace, &run.workflow_id, &run.run_id)
}

/// Reads a run's mutable state.
pub fn read_mutable_state(store: &impl StateStore, run: &RunKey) -> Result<Option<MutableState>> {
    let key = state_key(run);
    store.get(&key)?.map(|b| decode(&key, &b)).transpose()
}

/// Reads a run's history events `from..=to` (ids), in order.
pub fn read_history(
    store: &impl StateStore,
    run: &RunKey,
    from: i64,
    to: i64,
) -> Result<Vec<HistoryEvent>> {
    let mut out = Vec::new();
    for id in from.max(1)..=to {
        let key = keys::history_event(&run.namespace, &run.workflow_id, &run.run_id, id);
        match store.get(&key)? {
            Some(b) => out.push(decode(&key, &b)?),
            None => break,
        }
    }
    Ok(out)
}

impl<S: StateStore> Ctx<'_, S> {
    fn save(&mut self, ms: &MutableState) {
        let run = ms.run.as_ref().expect("mutable state names its run");
        self.store.put(&state_key(run), &ms.encode_to_vec());
    }

    /// Appends an event to history now (no buffering).
    fn append(&mut self, ms: &mut MutableState, attributes: Attributes) -> i64 {
        let run = ms.run.clone().expect("mutable state names its run");
        let event = HistoryEvent {
            event_id: ms.next_event_id,
            event_time_ms: self.now_ms,
            attributes: Some(attributes),
        };
        let key = keys::history_event(
            &run.namespace,
            &run.workflow_id,
            &run.run_id,
            event.event_id,
        );
        self.store.put(&key, &event.encode_to_vec());
        ms.next_event_id += 1;
        self.effects.push(Effect::HistoryGrew {
            run,
            next_event_id: ms.next_event_id,
        });
        event.event_id
    }

    /// Adds an event that did not come from the current workflow task: buffered while a task
    /// is started (flushed after its completion), appended otherwise.
    fn add_event(&mut self, ms: &mut MutableState, attributes: Attributes) {
        let started = ms
            .workflow_task
            .as_ref()
            .is_some_and(|t| t.started_event_id != 0);
        if started {
            ms.buffered.push(HistoryEvent {
                event_id: 0,
                event_time_ms: self.now_ms,
                attributes: Some(attributes),
            });
        } else {
            self.append(ms, attributes);
        }
    }

    /// Schedules a workflow task unless one is scheduled or started ("→WFT").
    fn schedule_workflow_task(&mut self, ms: &mut MutableState, attempt: i32) -> Result<()> {
        if ms.workflow_task.is_some() || ms.status != RunStatus::Running as i32 {
            return Ok(());
        }
        let scheduled = self.append(
            ms,
            Attributes::WorkflowTaskScheduled(WorkflowTaskScheduled {
                task_queue: ms.task_queue.clone(),
                start_to_close_timeout_ms: ms.workflow_task_timeout_ms,
                attempt,
            }),
        );
        ms.workflow_task = Some(WorkflowTaskInfo {
            scheduled_event_id: scheduled,
            started_event_id: 0,
            attempt,
        });
        let run = ms.run.clone().expect("named run");
        let queue = ms.task_queue.clone();
        self.enqueue(&run, &queue, TaskKind::Workflow, scheduled)
    }

    fn enqueue(
        &mut self,
        run: &RunKey,
        task_queue: &str,
        kind: TaskKind,
        scheduled_event_id: i64,
    ) -> Result<()> {
        let ckey = keys::queue_cursor(&run.namespace, task_queue, kind as u8);
        let mut cursor: QueueCursor = match self.store.get(&ckey)? {
            Some(b) => decode(&ckey, &b)?,
            None => QueueCursor::default(),
        };
        let ekey = keys::queue_entry(&run.namespace, task_queue, kind as u8, cursor.tail);
        let entry = TaskRef {
            run: Some(run.clone()),
            scheduled_event_id,
        };
        self.store.put(&ekey, &entry.encode_to_vec());
        cursor.tail += 1;
        self.store.put(&ckey, &cursor.encode_to_vec());
        self.effects.push(Effect::TaskQueued {
            namespace: run.namespace.clone(),
            task_queue: task_queue.to_string(),
            kind,
        });
        Ok(())
    }

    /// Appends buffered events in arrival order. An activity outcome buffered together with
    /// its ActivityTaskStarted learns that event's id here.
    fn flush_buffered(&mut self, ms: &mut MutableState) -> bool {
        let buffered = std::mem::take(&mut ms.buffered);
        let any = !buffered.is_empty();
        let mut started_ids: Vec<(i64, i64)> = Vec::new(); // (scheduled id, started id)
        for e in buffered {
            let mut attributes = e.attributes.expect("buffered events have attributes");
            if let Attributes::ActivityTaskCompleted(done) = &mut attributes {
                if done.started_event_id == 0 {
                    if let Some((_, id)) = started_ids
                        .iter()
                        .find(|(s, _)| *s == done.scheduled_event_id)
                    {
                        done.started_event_id = *id;
                    }
                }
            }
            let id = self.append(ms, attributes.clone());
            if let Attributes::ActivityTaskStarted(st) = &attributes {
                started_ids.push((st.scheduled_event_id, id));
            }
        }
        any
    }

    fn close(&mut self, ms: &mut MutableState, status: RunStatus) -> Result<()> {
        ms.status = status as i32;
        ms.close_time_ms = self.now_ms;
        let run = ms.run.clone().expect("named run");
        let ckey = keys::current_run(&run.namespace, &run.workflow_id);
        if let Some(b) = self.store.get(&ckey)? {
            let mut current: CurrentRun = decode(&ckey, &b)?;
            if current.run_id == run.run_id {
                current.status = status as i32;
                self.store.put(&ckey, &current.encode_to_vec());
            }
        }
        for t in std::mem::take(&mut ms.timers) {
            self.store.delete(&keys::timer(
                t.fire_at_ms,
                &run.namespace,
                &run.workflow_id,
                &run.run_id,
                TimerKind::User,
                &t.timer_id,
            ));
        }
        ms.activities.clear();
        self.effects.push(Effect::RunClosed { run });
        Ok(())
    }
}

/// Applies one workflow command at replicated time `now_ms`.
pub fn apply(
    cmd: &crate::command::Kind,
    now_ms: u64,
    store: &mut impl StateStore,
    effects: &mut Vec<Effect>,
) -> Result<WorkflowOutcome> {
    use crate::command::Kind;
    let mut ctx = Ctx {
        store,
        now_ms,
        effects,
    };
    match cmd {
        Kind::StartWorkflow(c) => start_workflow(&mut ctx, c),
        Kind::DispatchTask(c) => dispatch_task(&mut ctx, c),
        Kind::CompleteWorkflowTask(c) => complete_workflow_task(&mut ctx, c),
        Kind::CompleteActivityTask(c) => complete_activity_task(&mut ctx, c),
        Kind::FireTimer(c) => fire_timer(&mut ctx, c),
        Kind::RegisterPut(_) | Kind::RegisterCas(_) | Kind::RegisterDelete(_) => {
            unreachable!("register commands are applied by the register module")
        }
    }
}

fn start_workflow<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &StartWorkflow,
) -> Result<WorkflowOutcome> {
    let Some(run) = c.run.clone() else {
        return Ok(rejected("start: missing run"));
    };
    for (field, v) in [
        ("namespace", &run.namespace),
        ("workflow_id", &run.workflow_id),
        ("run_id", &run.run_id),
        ("workflow_type", &c.workflow_type),
        ("task_queue", &c.task_queue),
    ] {
        if v.is_empty() {
            return Ok(rejected(format!("start: {field} must not be empty")));
        }
    }
    let ckey = keys::current_run(&run.namespace, &run.workflow_id);
    if let Some(b) = ctx.store.get(&ckey)? {
        let current: CurrentRun = decode(&ckey, &b)?;
        let running = current.status == RunStatus::Running as i32;
        let retry = !c.request_id.is_empty() && current.start_request_id == c.request_id;
        if retry {
            return Ok(WorkflowOutcome {
                kind: Some(Outcome::Started(Started {
                    run_id: current.run_id,
                    started: false,
                })),
            });
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
            return Ok(WorkflowOutcome {
                kind: Some(Outcome::AlreadyStarted(AlreadyStarted {
                    run_id: current.run_id,
                    start_request_id: current.start_request_id,
                })),
            });
        }
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
    ctx.schedule_workflow_task(&mut ms, 1)?;
    ctx.save(&ms);
    let current = CurrentRun {
        run_id: run.run_id.clone(),
        status: RunStatus::Running as i32,
        start_request_id: c.request_id.clone(),
    };
    ctx.store.put(&ckey, &current.encode_to_vec());
    Ok(WorkflowOutcome {
        kind: Some(Outcome::Started(Started {
            run_id: run.run_id,
            started: true,
        })),
    })
}

/// Upper bound on stale backlog entries skipped by one dispatch.
const MAX_STALE_SKIPS: usize = 64;

fn dispatch_task<S: StateStore>(ctx: &mut Ctx<'_, S>, c: &DispatchTask) -> Result<WorkflowOutcome> {
    let kind = TaskKind::try_from(c.kind).unwrap_or(TaskKind::Workflow);
    let ckey = keys::queue_cursor(&c.namespace, &c.task_queue, kind as u8);
    let mut cursor: QueueCursor = match ctx.store.get(&ckey)? {
        Some(b) => decode(&ckey, &b)?,
        None => {
            return Ok(WorkflowOutcome {
                kind: Some(Outcome::NoTask(Empty {})),
            })
        }
    };
    let mut outcome = None;
    for _ in 0..MAX_STALE_SKIPS {
        if cursor.head >= cursor.tail {
            break;
        }
        let ekey = keys::queue_entry(&c.namespace, &c.task_queue, kind as u8, cursor.head);
        let entry = ctx.store.get(&ekey)?;
        ctx.store.delete(&ekey);
        cursor.head += 1;
        let Some(entry) = entry else { continue };
        let entry: TaskRef = decode(&ekey, &entry)?;
        let Some(run) = entry.run.clone() else {
            continue;
        };
        let Some(mut ms) = read_mutable_state(ctx.store, &run)? else {
            continue;
        };
        if ms.status != RunStatus::Running as i32 {
            continue;
        }
        outcome = match kind {
            TaskKind::Workflow => start_workflow_task(ctx, &mut ms, &entry, c),
            TaskKind::Activity => start_activity_task(ctx, &mut ms, &entry, c),
        };
        if outcome.is_some() {
            ctx.save(&ms);
            break;
        }
    }
    ctx.store.put(&ckey, &cursor.encode_to_vec());
    Ok(outcome.unwrap_or(WorkflowOutcome {
        kind: Some(Outcome::NoTask(Empty {})),
    }))
}

fn start_workflow_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    entry: &TaskRef,
    c: &DispatchTask,
) -> Option<WorkflowOutcome> {
    let task = ms.workflow_task.clone()?;
    if task.scheduled_event_id != entry.scheduled_event_id || task.started_event_id != 0 {
        return None;
    }
    let started = ctx.append(
        ms,
        Attributes::WorkflowTaskStarted(WorkflowTaskStarted {
            scheduled_event_id: task.scheduled_event_id,
            identity: c.identity.clone(),
            request_id: c.request_id.clone(),
        }),
    );
    ms.workflow_task = Some(WorkflowTaskInfo {
        started_event_id: started,
        ..task.clone()
    });
    Some(WorkflowOutcome {
        kind: Some(Outcome::Dispatched(Dispatched {
            token: Some(TaskToken {
                run: ms.run.clone(),
                kind: TaskKind::Workflow as i32,
                scheduled_event_id: task.scheduled_event_id,
                started_event_id: started,
                attempt: task.attempt,
            }),
            workflow_type: ms.workflow_type.clone(),
            started_event_id: started,
            previous_started_event_id: ms.previous_started_event_id,
            attempt: task.attempt,
            activity: None,
        })),
    })
}

fn start_activity_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    entry: &TaskRef,
    c: &DispatchTask,
) -> Option<WorkflowOutcome> {
    let a = ms
        .activities
        .iter_mut()
        .find(|a| a.scheduled_event_id == entry.scheduled_event_id && !a.started)?;
    // Like Temporal, starting an attempt changes only mutable state; ActivityTaskStarted is
    // written with the attempt's outcome, so retries add no events.
    a.started = true;
    a.started_time_ms = ctx.now_ms;
    a.started_identity = c.identity.clone();
    a.request_id = c.request_id.clone();
    let activity = a.clone();
    Some(WorkflowOutcome {
        kind: Some(Outcome::Dispatched(Dispatched {
            token: Some(TaskToken {
                run: ms.run.clone(),
                kind: TaskKind::Activity as i32,
                scheduled_event_id: activity.scheduled_event_id,
                started_event_id: 0,
                attempt: activity.attempt,
            }),
            workflow_type: ms.workflow_type.clone(),
            started_event_id: 0,
            previous_started_event_id: ms.previous_started_event_id,
            attempt: activity.attempt,
            activity: Some(activity),
        })),
    })
}

/// Loads the run a token names if the token is still current (else `None`: NOT_FOUND).
fn load_for_token<S: StateStore>(
    ctx: &Ctx<'_, S>,
    token: &Option<TaskToken>,
) -> Result<Option<(TaskToken, MutableState)>> {
    let Some(token) = token.clone() else {
        return Ok(None);
    };
    let Some(run) = token.run.clone() else {
        return Ok(None);
    };
    let Some(ms) = read_mutable_state(ctx.store, &run)? else {
        return Ok(None);
    };
    if ms.status != RunStatus::Running as i32 {
        return Ok(None);
    }
    Ok(Some((token, ms)))
}

/// A validated workflow command, ready to be written.
enum Valid<'a> {
    Activity(ScheduleActivity),
    Timer(&'a StartTimer),
    Complete(&'a CompleteWorkflow),
}

/// Temporal's activity timeout normalization; `Err` is the task failure message.
fn normalize_activity(
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
        n.schedule_to_start_timeout_ms = if n.schedule_to_start_timeout_ms == 0 {
            run_timeout_ms
        } else {
            n.schedule_to_start_timeout_ms
        };
    }
    if run_timeout_ms > 0 {
        n.schedule_to_close_timeout_ms = cap(n.schedule_to_close_timeout_ms, run_timeout_ms);
        n.schedule_to_start_timeout_ms = cap(n.schedule_to_start_timeout_ms, run_timeout_ms);
        n.start_to_close_timeout_ms = cap(n.start_to_close_timeout_ms, run_timeout_ms);
    }
    if n.heartbeat_timeout_ms > n.start_to_close_timeout_ms && n.start_to_close_timeout_ms > 0 {
        n.heartbeat_timeout_ms = n.start_to_close_timeout_ms;
    }
    Ok(n)
}

fn validate<'a>(
    ms: &MutableState,
    commands: &'a [WorkflowCommand],
) -> std::result::Result<Vec<Valid<'a>>, (WorkflowTaskFailedCause, String)> {
    let mut out = Vec::with_capacity(commands.len());
    let mut new_timers: Vec<&str> = Vec::new();
    for c in commands {
        match &c.kind {
            Some(Cmd::ScheduleActivity(a)) => {
                let n = normalize_activity(a, ms.run_timeout_ms)
                    .map_err(|m| (WorkflowTaskFailedCause::BadScheduleActivityAttributes, m))?;
                out.push(Valid::Activity(n));
            }
            Some(Cmd::StartTimer(t)) => {
                if t.timer_id.is_empty() || t.start_to_fire_timeout_ms == 0 {
                    return Err((
                        WorkflowTaskFailedCause::BadStartTimerAttributes,
                        "StartTimer needs timer_id and a positive start_to_fire_timeout".into(),
                    ));
                }
                if ms.timers.iter().any(|x| x.timer_id == t.timer_id)
                    || new_timers.contains(&t.timer_id.as_str())
                {
                    return Err((
                        WorkflowTaskFailedCause::StartTimerDuplicateId,
                        format!("timer id {:?} is already in use", t.timer_id),
                    ));
                }
                new_timers.push(&t.timer_id);
                out.push(Valid::Timer(t));
            }
            Some(Cmd::CompleteWorkflow(cw)) => out.push(Valid::Complete(cw)),
            None => {
                return Err((
                    WorkflowTaskFailedCause::Unspecified,
                    "a command has no attributes".into(),
                ));
            }
        }
    }
    Ok(out)
}

fn complete_workflow_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &CompleteWorkflowTask,
) -> Result<WorkflowOutcome> {
    let Some((token, mut ms)) = load_for_token(ctx, &c.token)? else {
        return Ok(not_found("workflow task not found"));
    };
    let Some(task) = ms.workflow_task.clone() else {
        return Ok(not_found("workflow task not found"));
    };
    if token.kind != TaskKind::Workflow as i32
        || task.scheduled_event_id != token.scheduled_event_id
        || task.started_event_id != token.started_event_id
        || task.started_event_id == 0
        || task.attempt != token.attempt
    {
        return Ok(not_found("workflow task not found"));
    }
    let closes = c
        .commands
        .iter()
        .any(|x| matches!(x.kind, Some(Cmd::CompleteWorkflow(_))));
    let verdict = if closes && !ms.buffered.is_empty() {
        Err((
            WorkflowTaskFailedCause::UnhandledCommand,
            "UnhandledCommand".to_string(),
        ))
    } else {
        validate(&ms, &c.commands)
    };
    let valid = match verdict {
        Ok(v) => v,
        Err((cause, message)) => {
            return fail_workflow_task(ctx, ms, &task, cause, message, &c.identity)
        }
    };
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
    let run = ms.run.clone().expect("named run");
    for v in valid {
        if ms.status != RunStatus::Running as i32 {
            break; // nothing follows a close command
        }
        match v {
            Valid::Activity(n) => {
                let task_queue = if n.task_queue.is_empty() {
                    ms.task_queue.clone()
                } else {
                    n.task_queue.clone()
                };
                let scheduled = ctx.append(
                    &mut ms,
                    Attributes::ActivityTaskScheduled(ActivityTaskScheduled {
                        activity_id: n.activity_id.clone(),
                        activity_type: n.activity_type.clone(),
                        task_queue: task_queue.clone(),
                        input: n.input.clone(),
                        schedule_to_close_timeout_ms: n.schedule_to_close_timeout_ms,
                        schedule_to_start_timeout_ms: n.schedule_to_start_timeout_ms,
                        start_to_close_timeout_ms: n.start_to_close_timeout_ms,
                        heartbeat_timeout_ms: n.heartbeat_timeout_ms,
                        workflow_task_completed_event_id: wtc,
                    }),
                );
                ms.activities.push(ActivityInfo {
                    scheduled_event_id: scheduled,
                    activity_id: n.activity_id,
                    activity_type: n.activity_type,
                    task_queue: task_queue.clone(),
                    input: n.input,
                    schedule_to_close_timeout_ms: n.schedule_to_close_timeout_ms,
                    schedule_to_start_timeout_ms: n.schedule_to_start_timeout_ms,
                    start_to_close_timeout_ms: n.start_to_close_timeout_ms,
                    heartbeat_timeout_ms: n.heartbeat_timeout_ms,
                    attempt: 1,
                    scheduled_time_ms: ctx.now_ms,
                    ..Default::default()
                });
                ctx.enqueue(&run, &task_queue, TaskKind::Activity, scheduled)?;
            }
            Valid::Timer(t) => {
                let started = ctx.append(
                    &mut ms,
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
                let tkey = keys::timer(
                    fire_at_ms,
                    &run.namespace,
                    &run.workflow_id,
                    &run.run_id,
                    TimerKind::User,
                    &t.timer_id,
                );
                ctx.store.put(&tkey, &started.to_be_bytes());
                ctx.effects.push(Effect::TimerArmed { fire_at_ms });
            }
            Valid::Complete(cw) => {
                ctx.append(
                    &mut ms,
                    Attributes::WorkflowExecutionCompleted(WorkflowExecutionCompleted {
                        result: cw.result.clone(),
                        workflow_task_completed_event_id: wtc,
                    }),
                );
                ctx.close(&mut ms, RunStatus::Completed)?;
            }
        }
    }
    if ctx.flush_buffered(&mut ms) {
        ctx.schedule_workflow_task(&mut ms, 1)?;
    }
    ctx.save(&ms);
    Ok(accepted())
}

/// Fails the started workflow task: WorkflowTaskFailed, flush buffered events, schedule the
/// next attempt. The caller gets INVALID_ARGUMENT with `message`.
fn fail_workflow_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    mut ms: MutableState,
    task: &WorkflowTaskInfo,
    cause: WorkflowTaskFailedCause,
    message: String,
    identity: &str,
) -> Result<WorkflowOutcome> {
    ctx.append(
        &mut ms,
        Attributes::WorkflowTaskFailed(WorkflowTaskFailed {
            scheduled_event_id: task.scheduled_event_id,
            started_event_id: task.started_event_id,
            cause: cause as i32,
            message: message.clone(),
            identity: identity.to_string(),
        }),
    );
    ms.workflow_task = None;
    ctx.flush_buffered(&mut ms);
    let next_attempt = if cause == WorkflowTaskFailedCause::UnhandledCommand {
        1
    } else {
        task.attempt + 1
    };
    ctx.schedule_workflow_task(&mut ms, next_attempt)?;
    ctx.save(&ms);
    Ok(rejected(message))
}

fn complete_activity_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &CompleteActivityTask,
) -> Result<WorkflowOutcome> {
    let Some((token, mut ms)) = load_for_token(ctx, &c.token)? else {
        return Ok(not_found("activity task not found"));
    };
    let pos = ms.activities.iter().position(|a| {
        a.scheduled_event_id == token.scheduled_event_id && a.started && a.attempt == token.attempt
    });
    let Some(pos) = pos.filter(|_| token.kind == TaskKind::Activity as i32) else {
        return Ok(not_found("activity task not found"));
    };
    let a = ms.activities.remove(pos);
    // Both events are new events: buffered if a workflow task is started.
    let started_id = if ms
        .workflow_task
        .as_ref()
        .is_some_and(|t| t.started_event_id != 0)
    {
        None
    } else {
        Some(ms.next_event_id)
    };
    ctx.add_event(
        &mut ms,
        Attributes::ActivityTaskStarted(ActivityTaskStarted {
            scheduled_event_id: a.scheduled_event_id,
            identity: a.started_identity.clone(),
            request_id: a.request_id.clone(),
            attempt: a.attempt,
        }),
    );
    // A buffered Started gets its id at flush: the Completed event right after it.
    let started_event_id = started_id.unwrap_or(0);
    ctx.add_event(
        &mut ms,
        Attributes::ActivityTaskCompleted(ActivityTaskCompleted {
            result: c.result.clone(),
            scheduled_event_id: a.scheduled_event_id,
            started_event_id,
            identity: c.identity.clone(),
        }),
    );
    ctx.schedule_workflow_task(&mut ms, 1)?;
    ctx.save(&ms);
    Ok(accepted())
}

fn fire_timer<S: StateStore>(ctx: &mut Ctx<'_, S>, c: &FireTimer) -> Result<WorkflowOutcome> {
    let Some(run) = c.run.clone() else {
        return Ok(rejected("fire timer: missing run"));
    };
    let Some(mut ms) = read_mutable_state(ctx.store, &run)? else {
        return Ok(not_found("no such run"));
    };
    let pos = ms
        .timers
        .iter()
        .position(|t| t.timer_id == c.timer_id && t.started_event_id == c.started_event_id);
    let Some(pos) = pos.filter(|_| ms.status == RunStatus::Running as i32) else {
        return Ok(not_found("timer not pending"));
    };
    if ms.timers[pos].fire_at_ms > ctx.now_ms {
        // Never early in replicated time: the driver retries once the deadline has passed.
        return Ok(rejected(format!(
            "timer {:?} is due at {} ms, entry time is {} ms",
            c.timer_id, ms.timers[pos].fire_at_ms, ctx.now_ms
        )));
    }
    let t = ms.timers.remove(pos);
    ctx.store.delete(&keys::timer(
        t.fire_at_ms,
        &run.namespace,
        &run.workflow_id,
        &run.run_id,
        TimerKind::User,
        &t.timer_id,
    ));
    ctx.add_event(
        &mut ms,
        Attributes::TimerFired(TimerFired {
            timer_id: t.timer_id,
            started_event_id: t.started_event_id,
        }),
    );
    ctx.schedule_workflow_task(&mut ms, 1)?;
    ctx.save(&ms);
    Ok(accepted())
}

#[cfg(test)]
pub(super) fn normalize_for_tests(
    a: &ScheduleActivity,
    run_timeout_ms: u64,
) -> std::result::Result<ScheduleActivity, String> {
    normalize_activity(a, run_timeout_ms)
}
