//! Applying workflow commands: the shared context (history append, buffering, workflow task
//! scheduling, backlogs, deadlines, closing) and the dispatcher. Deterministic: only the
//! store, the command and the entry time are read.

use prost::Message;

use super::model::workflow_outcome::Kind as Outcome;
use super::model::*;
use super::{activity, query, start, task};
use crate::error::hex;
use crate::keys;
use crate::{Error, ReadState, Result, StateStore};

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
    DeadlineArmed { fire_at_ms: u64 },
    /// A run's history grew (wake history long-polls).
    HistoryGrew {
        run: RunKey,
        next_event_id: i64,
        history_size_bytes: u64,
    },
    /// A run closed.
    RunClosed { run: RunKey },
    /// A closed run's data was deleted after its retention.
    RunDeleted { run: RunKey },
    /// A query was answered (wake the frontend waiting for it).
    QueryAnswered { namespace: String, query_id: String },
    /// A started workflow task ended: queries held back for it may go now.
    QueriesUnblocked {
        namespace: String,
        task_queue: String,
    },
    /// An update moved on (admitted, sent, accepted, completed, rejected, aborted): wake
    /// the frontends waiting for it.
    UpdateChanged { run: RunKey, update_id: String },
    /// A namespace's record was written (registered, limits or search attributes changed):
    /// caches of it are stale.
    NamespaceChanged { name: String },
}

impl Effect {
    /// The keys long polls wait on for this effect (see `keel_raft::watch`): a run's history
    /// and status, its closing, a backlog, or a query.
    pub fn watch_keys(&self, out: &mut impl Extend<Vec<u8>>) {
        match self {
            Effect::HistoryGrew { run, .. } => out.extend([watch_run(run)]),
            // Closing wakes the run's history waiters and those waiting for its close only
            // (a client's result: it is not woken by each step of the run).
            Effect::RunClosed { run } | Effect::RunDeleted { run } => {
                out.extend([watch_run(run), watch_run_closed(run)])
            }
            Effect::TaskQueued {
                namespace,
                task_queue,
                kind,
            } => out.extend([watch_queue(namespace, task_queue, *kind)]),
            Effect::QueriesUnblocked {
                namespace,
                task_queue,
            } => out.extend([watch_queue(namespace, task_queue, TaskKind::Query)]),
            Effect::QueryAnswered {
                namespace,
                query_id,
            } => out.extend([keys::query(namespace, query_id)]),
            Effect::UpdateChanged { run, update_id } => {
                out.extend([super::update::update_key(run, update_id)])
            }
            Effect::NamespaceChanged { name } => out.extend([watch_namespace(name)]),
            Effect::DeadlineArmed { .. } => {}
        }
    }
}

/// The backlogs holding tasks of `kind` (workflow tasks wait in two).
pub(super) fn backlogs_of(kind: TaskKind) -> &'static [u8] {
    match kind {
        TaskKind::Workflow => &WORKFLOW_BACKLOGS,
        TaskKind::Activity => &[TaskKind::Activity as u8],
        TaskKind::Query => &[TaskKind::Query as u8],
    }
}

/// Drops the wake-ups of backlogs that have nothing to hand out once a whole proposal is
/// applied, so a queue's pollers are woken only when one of them can take something:
/// - a task queued and handed out in the same entry (an eager activity, a workflow task
///   dispatched to the poll a completion took) leaves nothing for the other pollers;
/// - every ended workflow task may unblock held-back queries, but almost always there are
///   none; waking every workflow-task poller of the queue to find that out was most of a
///   lightly loaded node's polling cost.
pub fn drop_spent_wakeups(store: &impl ReadState, effects: &mut Vec<Effect>) -> Result<()> {
    let mut keep = Vec::with_capacity(effects.len());
    for e in effects.iter() {
        keep.push(match e {
            Effect::TaskQueued {
                namespace,
                task_queue,
                kind: TaskKind::Query,
            }
            | Effect::QueriesUnblocked {
                namespace,
                task_queue,
            } => super::query::query_ready(store, namespace, task_queue)?,
            Effect::TaskQueued {
                namespace,
                task_queue,
                kind,
            } => backlog_len(store, namespace, task_queue, *kind)? > 0,
            _ => true,
        });
    }
    let mut keep = keep.into_iter();
    effects.retain(|_| keep.next().unwrap_or(true));
    Ok(())
}

/// Tasks of `kind` waiting on a queue (stale entries included: dispatch skips them).
pub fn backlog_len(
    store: &impl ReadState,
    namespace: &str,
    task_queue: &str,
    kind: TaskKind,
) -> Result<u64> {
    let mut n = 0;
    for &b in backlogs_of(kind) {
        let key = keys::queue_cursor(namespace, task_queue, b);
        if let Some(bytes) = store.get(&key)? {
            let c: QueueCursor = decode(&key, &bytes)?;
            n += c.tail.saturating_sub(c.head);
        }
    }
    Ok(n)
}

/// How a queue's workflow tasks are being drained, in replicated time: how long the oldest
/// task of each workflow-task backlog has waited, and how long ago either last handed a task
/// to a poller.
///
/// Outside apply, on a node's applied state: the admission signal of starts
/// (`keel_frontend`) reads it to tell a queue whose pollers fall behind from one nobody
/// polls.
pub fn workflow_task_waits(
    store: &impl ReadState,
    namespace: &str,
    task_queue: &str,
) -> Result<WorkflowTaskWaits> {
    let now = crate::apply::last_applied_time_ms(store)?;
    let mut waits = WorkflowTaskWaits::default();
    let mut last_dispatch_ms = 0;
    for backlog in WORKFLOW_BACKLOGS {
        let ckey = keys::queue_cursor(namespace, task_queue, backlog);
        let Some(bytes) = store.get(&ckey)? else {
            continue;
        };
        let cursor: QueueCursor = decode(&ckey, &bytes)?;
        last_dispatch_ms = last_dispatch_ms.max(cursor.last_dispatch_ms);
        if cursor.head >= cursor.tail {
            continue;
        }
        let ekey = keys::queue_entry(namespace, task_queue, backlog, cursor.head);
        let Some(bytes) = store.get(&ekey)? else {
            continue;
        };
        let head: TaskRef = decode(&ekey, &bytes)?;
        // 0: queued before Keel recorded the time.
        let waited = (head.enqueued_ms > 0).then(|| now.saturating_sub(head.enqueued_ms));
        if backlog == RESUMED_WORKFLOW_BACKLOG {
            waits.oldest_resumed_ms = waited;
        } else {
            waits.oldest_new_ms = waited;
        }
    }
    waits.since_dispatch_ms = (last_dispatch_ms > 0).then(|| now.saturating_sub(last_dispatch_ms));
    Ok(waits)
}

/// See [`workflow_task_waits`]; `None`s where a backlog is empty or nothing was handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkflowTaskWaits {
    /// Replicated time since the oldest resumed workflow task (of a run that made progress
    /// and waits for a worker again) was queued.
    pub oldest_resumed_ms: Option<u64>,
    /// Replicated time since the oldest first workflow task of a new run was queued.
    pub oldest_new_ms: Option<u64>,
    /// Replicated time since the queue last handed a workflow task to a poller.
    pub since_dispatch_ms: Option<u64>,
}

/// Watch key of a run's history and status.
pub fn watch_run(run: &RunKey) -> Vec<u8> {
    state_key(run)
}

/// Watch key of a run's closing or deletion only (not a stored key: the run's state key
/// with a marker byte after its self-delimiting fields).
pub fn watch_run_closed(run: &RunKey) -> Vec<u8> {
    let mut k = state_key(run);
    k.push(b'c');
    k
}

/// Watch key of a namespace's record (notified whenever it is written).
pub fn watch_namespace(name: &str) -> Vec<u8> {
    keys::namespace(name)
}

/// Watch key of a backlog.
pub fn watch_queue(namespace: &str, task_queue: &str, kind: TaskKind) -> Vec<u8> {
    keys::queue_cursor(namespace, task_queue, kind as u8)
}

/// Watch key of a query's answer.
pub fn watch_query(namespace: &str, query_id: &str) -> Vec<u8> {
    keys::query(namespace, query_id)
}

/// The apply context of one command.
pub(super) struct Ctx<'a, S: StateStore> {
    pub store: &'a mut S,
    pub now_ms: u64,
    pub effects: &'a mut Vec<Effect>,
    /// `UserMetadata` for the next event [`Ctx::append`] writes (a start's or a command's;
    /// set just before it is applied, cleared after).
    pub next_user_metadata: Vec<u8>,
}

pub(super) fn decode<M: Message + Default>(key: &[u8], bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Corrupt {
        key_hex: hex(key),
        message: e.to_string(),
    })
}

pub(super) fn outcome(kind: Outcome) -> WorkflowOutcome {
    WorkflowOutcome { kind: Some(kind) }
}

pub(super) fn rejected(msg: impl Into<String>) -> WorkflowOutcome {
    outcome(Outcome::InvalidArgument(msg.into()))
}

pub(super) fn not_found(msg: impl Into<String>) -> WorkflowOutcome {
    outcome(Outcome::NotFound(msg.into()))
}

pub(super) fn accepted() -> WorkflowOutcome {
    outcome(Outcome::Accepted(Empty {}))
}

fn state_key(run: &RunKey) -> Vec<u8> {
    keys::mutable_state(&run.namespace, &run.workflow_id, &run.run_id)
}

/// Reads a run's mutable state.
pub fn read_mutable_state(store: &impl ReadState, run: &RunKey) -> Result<Option<MutableState>> {
    let key = state_key(run);
    store.get(&key)?.map(|b| decode(&key, &b)).transpose()
}

/// The run a read request names; an empty run id means the workflow id's current run.
pub fn resolve_run(store: &impl ReadState, run: &RunKey) -> Result<Option<MutableState>> {
    let mut run = run.clone();
    if run.run_id.is_empty() {
        let key = keys::current_run(&run.namespace, &run.workflow_id);
        let Some(b) = store.get(&key)? else {
            return Ok(None);
        };
        run.run_id = decode::<CurrentRun>(&key, &b)?.run_id;
    }
    read_mutable_state(store, &run)
}

/// Reads a namespace record.
pub fn read_namespace(store: &impl ReadState, name: &str) -> Result<Option<NamespaceRecord>> {
    let key = keys::namespace(name);
    store.get(&key)?.map(|b| decode(&key, &b)).transpose()
}

/// Writes a namespace's record, telling the caches of it (every write of a namespace record
/// goes through here).
pub(super) fn put_namespace<S: StateStore>(ctx: &mut Ctx<'_, S>, record: &NamespaceRecord) {
    ctx.store
        .put(&keys::namespace(&record.name), &record.encode_to_vec());
    ctx.effects.push(Effect::NamespaceChanged {
        name: record.name.clone(),
    });
}

/// Reads a run's visibility row.
/// A namespace's count of runs by execution status (index = Temporal's status number), or
/// `None` if the namespace was registered before Keel kept counts (then only a scan counts).
pub fn read_status_counts(store: &impl ReadState, namespace: &str) -> Result<Option<[u64; 8]>> {
    let read = |status: u8| -> Result<Option<u64>> {
        let key = keys::visibility_count(namespace, status);
        Ok(store
            .get(&key)?
            .filter(|b| b.len() == 8)
            .map(|b| u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))))
    };
    if read(0)?.is_none() {
        return Ok(None);
    }
    let mut counts = [0u64; 8];
    for (status, c) in counts.iter_mut().enumerate().skip(1) {
        *c = read(status as u8)?.unwrap_or(0);
    }
    Ok(Some(counts))
}

pub fn read_visibility(store: &impl ReadState, run: &RunKey) -> Result<Option<VisibilityRecord>> {
    let key = keys::visibility(&run.namespace, &run.workflow_id, &run.run_id);
    store.get(&key)?.map(|b| decode(&key, &b)).transpose()
}

/// Reads a run's history events `from..=to` (ids), in order, stopping at the last one.
pub fn read_history(
    store: &impl ReadState,
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

/// The timers-index key of a run's deadline.
pub fn deadline_key(run: &RunKey, d: &Deadline) -> Vec<u8> {
    keys::timer(
        d.fire_at_ms,
        &run.namespace,
        &run.workflow_id,
        &run.run_id,
        d.kind as u8,
        d.event_id,
        d.attempt,
        &d.name,
    )
}

pub(super) fn is_running(ms: &MutableState) -> bool {
    ms.status == RunStatus::Running as i32
}

/// The unwritten events of a transient workflow task: Scheduled, and Started once handed out.
pub(super) fn transient_events(ms: &MutableState, task: &WorkflowTaskInfo) -> Vec<HistoryEvent> {
    let mut events = vec![HistoryEvent {
        event_id: task.scheduled_event_id,
        event_time_ms: task.scheduled_time_ms,
        attributes: Some(Attributes::WorkflowTaskScheduled(WorkflowTaskScheduled {
            task_queue: ms.task_queue.clone(),
            start_to_close_timeout_ms: ms.workflow_task_timeout_ms,
            attempt: task.attempt,
        })),
        user_metadata: Vec::new(),
    }];
    if task.started_event_id != 0 {
        events.push(HistoryEvent {
            event_id: task.started_event_id,
            event_time_ms: task.started_time_ms,
            attributes: Some(Attributes::WorkflowTaskStarted(ms.task_started_event(
                task.scheduled_event_id,
                &task.started_identity,
                &task.started_request_id,
            ))),
            user_metadata: Vec::new(),
        });
    }
    events
}

pub(super) fn task_started(ms: &MutableState) -> bool {
    ms.workflow_task
        .as_ref()
        .is_some_and(|t| t.started_event_id != 0)
}

impl<S: StateStore> Ctx<'_, S> {
    pub fn save(&mut self, ms: &MutableState) {
        let run = ms.run.as_ref().expect("mutable state names its run");
        self.store.put(&state_key(run), &ms.encode_to_vec());
    }

    /// The run a request names; an empty run id means the workflow id's current run.
    pub fn resolve(&mut self, run: &Option<RunKey>) -> Result<Option<MutableState>> {
        let Some(run) = run else { return Ok(None) };
        let mut run = run.clone();
        if run.run_id.is_empty() {
            let key = keys::current_run(&run.namespace, &run.workflow_id);
            let Some(b) = self.store.get(&key)? else {
                return Ok(None);
            };
            run.run_id = decode::<CurrentRun>(&key, &b)?.run_id;
        }
        read_mutable_state(self.store, &run)
    }

    /// Appends an event to history now (no buffering); returns its id. A transient workflow
    /// task's events are written first, so the ids handed out with it stay true.
    pub fn append(&mut self, ms: &mut MutableState, attributes: Attributes) -> i64 {
        let user_metadata = std::mem::take(&mut self.next_user_metadata);
        self.write_transient_task(ms);
        self.append_at(ms, attributes, self.now_ms, user_metadata)
    }

    /// Ends a transient attempt that failed or timed out: nothing is written (held-back
    /// queries may go now, as after a written task outcome).
    pub fn drop_transient_task(&mut self, ms: &mut MutableState) {
        ms.workflow_task = None;
        let run = ms.run.as_ref().expect("named run");
        self.effects.push(Effect::QueriesUnblocked {
            namespace: run.namespace.clone(),
            task_queue: ms.task_queue.clone(),
        });
    }

    /// Turns a transient workflow task into a normal one: writes its Scheduled (and, if it
    /// was handed out, Started) event with the ids and times the worker was given.
    pub fn write_transient_task(&mut self, ms: &mut MutableState) {
        let Some(task) = ms.workflow_task.as_mut().filter(|t| t.transient) else {
            return;
        };
        task.transient = false;
        let task = task.clone();
        for event in transient_events(ms, &task) {
            let id = self.append_at(
                ms,
                event.attributes.expect("transient events have attributes"),
                event.event_time_ms,
                Vec::new(),
            );
            debug_assert_eq!(id, event.event_id, "a transient task's ids are kept");
        }
    }

    fn append_at(
        &mut self,
        ms: &mut MutableState,
        attributes: Attributes,
        time_ms: u64,
        user_metadata: Vec<u8>,
    ) -> i64 {
        let run = ms.run.clone().expect("mutable state names its run");
        let event = HistoryEvent {
            event_id: ms.next_event_id,
            event_time_ms: time_ms,
            attributes: Some(attributes),
            user_metadata,
        };
        let key = keys::history_event(
            &run.namespace,
            &run.workflow_id,
            &run.run_id,
            event.event_id,
        );
        let ends_task = matches!(
            event.attributes,
            Some(
                Attributes::WorkflowTaskCompleted(_)
                    | Attributes::WorkflowTaskFailed(_)
                    | Attributes::WorkflowTaskTimedOut(_)
            )
        );
        let encoded = event.encode_to_vec();
        ms.history_size_bytes += encoded.len() as u64;
        self.store.put(&key, &encoded);
        ms.next_event_id += 1;
        if ends_task {
            self.effects.push(Effect::QueriesUnblocked {
                namespace: run.namespace.clone(),
                task_queue: ms.task_queue.clone(),
            });
        }
        self.effects.push(Effect::HistoryGrew {
            run,
            next_event_id: ms.next_event_id,
            history_size_bytes: ms.history_size_bytes,
        });
        event.event_id
    }

    /// Adds an event that did not come from the current workflow task: buffered while a task
    /// is started (flushed after its completion), appended otherwise.
    pub fn add_event(&mut self, ms: &mut MutableState, attributes: Attributes) {
        if task_started(ms) {
            ms.buffered.push(HistoryEvent {
                event_id: 0,
                event_time_ms: self.now_ms,
                attributes: Some(attributes),
                user_metadata: Vec::new(),
            });
        } else {
            self.append(ms, attributes);
        }
    }

    /// Appends buffered events in arrival order. An activity outcome buffered together with
    /// its ActivityTaskStarted learns that event's id here. Returns whether any were flushed.
    pub fn flush_buffered(&mut self, ms: &mut MutableState) -> bool {
        let buffered = std::mem::take(&mut ms.buffered);
        let any = !buffered.is_empty();
        let mut started_ids: Vec<(i64, i64)> = Vec::new(); // (scheduled id, started id)
        for e in buffered {
            let mut attributes = e.attributes.expect("buffered events have attributes");
            let started_ref = match &mut attributes {
                Attributes::ActivityTaskCompleted(x) => {
                    Some((x.scheduled_event_id, &mut x.started_event_id))
                }
                Attributes::ActivityTaskFailed(x) => {
                    Some((x.scheduled_event_id, &mut x.started_event_id))
                }
                Attributes::ActivityTaskTimedOut(x) => {
                    Some((x.scheduled_event_id, &mut x.started_event_id))
                }
                Attributes::ActivityTaskCanceled(x) => {
                    Some((x.scheduled_event_id, &mut x.started_event_id))
                }
                _ => None,
            };
            if let Some((scheduled, started)) = started_ref {
                if *started == PENDING_STARTED_ID {
                    *started = started_ids
                        .iter()
                        .find(|(s, _)| *s == scheduled)
                        .map(|(_, id)| *id)
                        .expect("a buffered activity outcome follows its buffered Started event");
                }
            }
            let scheduled_of_started = match &attributes {
                Attributes::ActivityTaskStarted(st) => Some(st.scheduled_event_id),
                _ => None,
            };
            let id = self.append(ms, attributes);
            if let Some(s) = scheduled_of_started {
                started_ids.push((s, id));
            }
        }
        any
    }

    /// Schedules a workflow task unless one is scheduled or started ("→WFT").
    pub fn schedule_workflow_task(&mut self, ms: &mut MutableState, attempt: i32) -> Result<()> {
        self.schedule_workflow_task_queued(ms, attempt, true)
    }

    /// [`Self::schedule_workflow_task`]; without `enqueue` the task gets no backlog entry
    /// (the caller starts it in the same entry).
    pub fn schedule_workflow_task_queued(
        &mut self,
        ms: &mut MutableState,
        attempt: i32,
        enqueue: bool,
    ) -> Result<()> {
        // A run waiting out a continue-as-new or retry backoff gets its first task when the
        // backoff ends, whatever arrives meanwhile.
        if ms.workflow_task.is_some() || !is_running(ms) || ms.pending_backoff {
            return Ok(());
        }
        // A retry is transient: nothing is written until it completes (see WorkflowTaskInfo).
        let transient = attempt > 1;
        let scheduled = if transient {
            ms.next_event_id
        } else {
            self.append(
                ms,
                Attributes::WorkflowTaskScheduled(WorkflowTaskScheduled {
                    task_queue: ms.task_queue.clone(),
                    start_to_close_timeout_ms: ms.workflow_task_timeout_ms,
                    attempt,
                }),
            )
        };
        ms.workflow_task = Some(WorkflowTaskInfo {
            scheduled_event_id: scheduled,
            started_event_id: 0,
            attempt,
            transient,
            scheduled_time_ms: if transient { self.now_ms } else { 0 },
            ..Default::default()
        });
        if !enqueue {
            return Ok(());
        }
        let run = ms.run.clone().expect("named run");
        let queue = ms.task_queue.clone();
        let backlog = if ms.previous_started_event_id > 0 {
            RESUMED_WORKFLOW_BACKLOG
        } else {
            TaskKind::Workflow as u8
        };
        self.enqueue_in(
            &queue,
            TaskKind::Workflow,
            backlog,
            TaskRef {
                run: Some(run),
                scheduled_event_id: scheduled,
                query_id: String::new(),
                enqueued_ms: 0,
            },
        )
    }

    pub fn enqueue(
        &mut self,
        run: &RunKey,
        task_queue: &str,
        kind: TaskKind,
        scheduled_event_id: i64,
    ) -> Result<()> {
        self.enqueue_ref(
            task_queue,
            kind,
            TaskRef {
                run: Some(run.clone()),
                scheduled_event_id,
                query_id: String::new(),
                enqueued_ms: 0,
            },
        )
    }

    /// Appends an entry to the tail of the backlog of `kind` and wakes that queue's pollers.
    pub fn enqueue_ref(&mut self, task_queue: &str, kind: TaskKind, entry: TaskRef) -> Result<()> {
        self.enqueue_in(task_queue, kind, kind as u8, entry)
    }

    /// Appends an entry to the tail of backlog `backlog` (a `TaskKind` byte, or
    /// [`RESUMED_WORKFLOW_BACKLOG`]) and wakes the pollers of `kind` on that queue.
    fn enqueue_in(
        &mut self,
        task_queue: &str,
        kind: TaskKind,
        backlog: u8,
        mut entry: TaskRef,
    ) -> Result<()> {
        entry.enqueued_ms = self.now_ms;
        let namespace = entry
            .run
            .as_ref()
            .expect("entry names a run")
            .namespace
            .clone();
        let ckey = keys::queue_cursor(&namespace, task_queue, backlog);
        let mut cursor: QueueCursor = match self.store.get(&ckey)? {
            Some(b) => decode(&ckey, &b)?,
            None => QueueCursor::default(),
        };
        let ekey = keys::queue_entry(&namespace, task_queue, backlog, cursor.tail);
        self.store.put(&ekey, &entry.encode_to_vec());
        cursor.tail += 1;
        self.store.put(&ckey, &cursor.encode_to_vec());
        self.effects.push(Effect::TaskQueued {
            namespace,
            task_queue: task_queue.to_string(),
            kind,
        });
        Ok(())
    }

    /// Arms a deadline: recorded in mutable state and in the timers index, together.
    pub fn arm(
        &mut self,
        ms: &mut MutableState,
        kind: DeadlineKind,
        event_id: i64,
        attempt: i32,
        name: &str,
        fire_at_ms: u64,
    ) {
        let d = Deadline {
            kind: kind as i32,
            event_id,
            attempt,
            name: name.to_string(),
            fire_at_ms,
        };
        let run = ms.run.clone().expect("named run");
        self.store.put(&deadline_key(&run, &d), &[]);
        ms.deadlines.push(d);
        self.effects.push(Effect::DeadlineArmed { fire_at_ms });
    }

    /// Disarms every deadline matching `pred`.
    pub fn disarm(&mut self, ms: &mut MutableState, pred: impl Fn(&Deadline) -> bool) {
        let run = ms.run.clone().expect("named run");
        let (gone, kept): (Vec<Deadline>, Vec<Deadline>) = std::mem::take(&mut ms.deadlines)
            .into_iter()
            .partition(|d| pred(d));
        for d in &gone {
            self.store.delete(&deadline_key(&run, d));
        }
        ms.deadlines = kept;
    }

    /// Closes the run: every pending deadline but query and update expiries is disarmed,
    /// in-flight updates end (see `update::on_close`), retention
    /// armed, the current-run pointer updated; open task tokens turn stale.
    pub fn close(&mut self, ms: &mut MutableState, status: RunStatus) -> Result<()> {
        ms.status = status as i32;
        ms.close_time_ms = self.now_ms;
        ms.workflow_task = None;
        ms.activities.clear();
        ms.timers.clear();
        self.disarm(ms, |d| {
            d.kind != DeadlineKind::QueryExpiry as i32
                && d.kind != DeadlineKind::UpdateExpiry as i32
        });
        super::update::on_close(self, ms)?;
        let run = ms.run.clone().expect("named run");
        let ckey = keys::current_run(&run.namespace, &run.workflow_id);
        if let Some(b) = self.store.get(&ckey)? {
            let mut current: CurrentRun = decode(&ckey, &b)?;
            if current.run_id == run.run_id {
                current.status = status as i32;
                self.store.put(&ckey, &current.encode_to_vec());
            }
        }
        if ms.retention_ms > 0 {
            let at = self.now_ms.saturating_add(ms.retention_ms);
            self.arm(ms, DeadlineKind::Retention, 0, 0, "", at);
        }
        self.count_status(&run, RunStatus::Running as i32, -1)?;
        self.count_status(&run, status as i32, 1)?;
        self.put_visibility(ms);
        self.effects.push(Effect::RunClosed { run });
        super::children::on_close(self, ms, status)?;
        super::scheduler::on_run_closed(self, ms, status)
    }

    /// Adds `delta` to the namespace's count of runs in `status` (see [`read_status_counts`]).
    pub fn count_status(&mut self, run: &RunKey, status: i32, delta: i64) -> Result<()> {
        let key = keys::visibility_count(&run.namespace, status as u8);
        let now = match self.store.get(&key)? {
            Some(b) if b.len() == 8 => u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            _ => 0,
        };
        let next = now.saturating_add_signed(delta);
        self.store.put(&key, &next.to_be_bytes());
        Ok(())
    }

    /// Writes the run's visibility row (start, close, search attribute and memo upserts), also
    /// as the value of its start-time index entry, so a List scan reads rows in index order
    /// without a point read per run.
    pub fn put_visibility(&mut self, ms: &MutableState) {
        let run = ms.run.as_ref().expect("named run");
        let row = VisibilityRecord {
            workflow_id: run.workflow_id.clone(),
            run_id: run.run_id.clone(),
            workflow_type: ms.workflow_type.clone(),
            task_queue: ms.task_queue.clone(),
            status: ms.status,
            start_time_ms: ms.start_time_ms,
            close_time_ms: ms.close_time_ms,
            history_length: ms.next_event_id - 1,
            search_attributes: ms.search_attributes.clone(),
            memo: ms.memo.clone(),
            execution_time_ms: ms.execution_time_ms,
            parent: ms.parent.clone(),
            root: ms.root.clone(),
        };
        let encoded = row.encode_to_vec();
        self.store.put(
            &keys::visibility(&run.namespace, &run.workflow_id, &run.run_id),
            &encoded,
        );
        self.store.put(
            &keys::visibility_by_start(
                &run.namespace,
                ms.start_time_ms,
                &run.workflow_id,
                &run.run_id,
            ),
            &encoded,
        );
    }

    /// Deletes a closed run's history, state and current-run pointer (retention).
    pub fn delete_run(&mut self, ms: &mut MutableState) -> Result<()> {
        let run = ms.run.clone().expect("named run");
        for d in &ms.deadlines {
            if d.kind == DeadlineKind::QueryExpiry as i32 {
                self.store.delete(&keys::query(&run.namespace, &d.name));
            }
        }
        super::update::delete_all(self, ms);
        self.disarm(ms, |_| true);
        for id in 1..ms.next_event_id {
            self.store.delete(&keys::history_event(
                &run.namespace,
                &run.workflow_id,
                &run.run_id,
                id,
            ));
        }
        self.store.delete(&state_key(&run));
        self.count_status(&run, ms.status, -1)?;
        self.store.delete(&keys::visibility(
            &run.namespace,
            &run.workflow_id,
            &run.run_id,
        ));
        self.store.delete(&keys::visibility_by_start(
            &run.namespace,
            ms.start_time_ms,
            &run.workflow_id,
            &run.run_id,
        ));
        let ckey = keys::current_run(&run.namespace, &run.workflow_id);
        if let Some(b) = self.store.get(&ckey)? {
            if decode::<CurrentRun>(&ckey, &b)?.run_id == run.run_id {
                self.store.delete(&ckey);
            }
        }
        self.effects.push(Effect::RunDeleted { run });
        Ok(())
    }
}

/// Placeholder started id of a buffered activity outcome whose Started event is buffered
/// with it; replaced by the real id at flush.
pub(super) const PENDING_STARTED_ID: i64 = -1;

/// Applies one workflow command at replicated time `now_ms`.
pub fn apply(
    cmd: &crate::command::Kind,
    now_ms: u64,
    store: &mut impl StateStore,
    effects: &mut Vec<Effect>,
) -> Result<WorkflowOutcome> {
    let mut ctx = Ctx {
        store,
        now_ms,
        effects,
        next_user_metadata: Vec::new(),
    };
    let effects_from = ctx.effects.len();
    let out = dispatch(&mut ctx, cmd)?;
    // A history that grew past Temporal's limits ends here (see `limits`).
    Ok(match super::limits::enforce(&mut ctx, effects_from)? {
        Some(reason) => rejected(reason),
        None => out,
    })
}

fn dispatch<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    cmd: &crate::command::Kind,
) -> Result<WorkflowOutcome> {
    use crate::command::Kind;
    match cmd {
        Kind::StartWorkflow(c) => start::start_workflow(ctx, c),
        Kind::SignalWorkflow(c) => start::signal(ctx, c),
        Kind::SignalWithStart(c) => start::signal_with_start(ctx, c),
        Kind::RequestCancelWorkflow(c) => start::request_cancel(ctx, c),
        Kind::TerminateWorkflow(c) => start::terminate(ctx, c),
        Kind::DeleteWorkflow(c) => start::delete(ctx, c),
        Kind::DispatchTask(c) => task::dispatch_task(ctx, c),
        Kind::CompleteWorkflowTask(c) => task::complete_workflow_task(ctx, c),
        Kind::FailWorkflowTask(c) => task::fail_workflow_task_request(ctx, c),
        Kind::CompleteActivityTask(c) => activity::complete(ctx, c),
        Kind::FailActivityTask(c) => activity::fail(ctx, c),
        Kind::RecordHeartbeat(c) => activity::heartbeat(ctx, c),
        Kind::CancelActivityTask(c) => activity::canceled(ctx, c),
        Kind::FireDeadline(c) => fire_deadline(ctx, c),
        Kind::RegisterNamespace(c) => start::register_namespace(ctx, c),
        Kind::EnqueueQuery(c) => query::enqueue(ctx, c),
        Kind::AnswerQuery(c) => query::answer(ctx, c),
        Kind::ForgetQuery(c) => query::forget(ctx, c),
        Kind::UpdateSearchAttributes(c) => super::search::update_registry(ctx, c),
        Kind::ResetWorkflow(c) => super::reset::reset(ctx, c),
        Kind::SetNamespaceLimits(c) => start::set_namespace_limits(ctx, c),
        Kind::AdmitUpdate(c) => super::update::admit(ctx, c),
        Kind::StartWithUpdate(c) => super::update::start_with_update(ctx, c),
        Kind::CreateSchedule(c) => super::scheduler::create(ctx, c),
        Kind::UpdateSchedule(c) => super::scheduler::update(ctx, c),
        Kind::PatchSchedule(c) => super::scheduler::patch(ctx, c),
        Kind::DeleteSchedule(c) => super::scheduler::delete(ctx, c),
        Kind::RegisterPut(_) | Kind::RegisterCas(_) | Kind::RegisterDelete(_) => {
            unreachable!("register commands are applied by the register module")
        }
    }
}

fn fire_deadline<S: StateStore>(ctx: &mut Ctx<'_, S>, c: &FireDeadline) -> Result<WorkflowOutcome> {
    if c.kind == DeadlineKind::ScheduleAction as i32 {
        return super::scheduler::fire(ctx, c);
    }
    let Some(run) = c.run.clone() else {
        return Ok(rejected("fire deadline: missing run"));
    };
    let Some(mut ms) = read_mutable_state(ctx.store, &run)? else {
        return Ok(not_found("no such run"));
    };
    let matches = |d: &Deadline| {
        d.kind == c.kind && d.event_id == c.event_id && d.attempt == c.attempt && d.name == c.name
    };
    let Some(d) = ms.deadlines.iter().find(|d| matches(d)).cloned() else {
        return Ok(not_found("deadline not pending"));
    };
    if d.fire_at_ms > ctx.now_ms {
        // Never early in replicated time: the driver retries once the deadline has passed.
        return Ok(rejected(format!(
            "deadline due at {} ms, entry time is {} ms",
            d.fire_at_ms, ctx.now_ms
        )));
    }
    ctx.disarm(&mut ms, |x| matches(x));
    let kind = DeadlineKind::try_from(c.kind).unwrap_or(DeadlineKind::Unspecified);
    match kind {
        DeadlineKind::UserTimer => task::timer_fired(ctx, &mut ms, &d)?,
        DeadlineKind::WorkflowTaskStartToClose => task::workflow_task_timed_out(ctx, &mut ms, &d)?,
        DeadlineKind::ActivityScheduleToStart
        | DeadlineKind::ActivityStartToClose
        | DeadlineKind::ActivityScheduleToClose
        | DeadlineKind::ActivityHeartbeat => activity::timed_out(ctx, &mut ms, &d, kind)?,
        DeadlineKind::ActivityRetry => activity::retry_due(ctx, &mut ms, &d)?,
        DeadlineKind::RunTimeout => start::run_timed_out(ctx, &mut ms, &c.next_run_id)?,
        // A signal during a start delay already started the run's first task.
        DeadlineKind::FirstTaskBackoff if ms.previous_started_event_id == 0 => {
            ms.pending_backoff = false;
            ctx.schedule_workflow_task(&mut ms, 1)?
        }
        DeadlineKind::FirstTaskBackoff => {}
        DeadlineKind::QueryExpiry => query::expired(ctx, &ms, &d),
        DeadlineKind::UpdateExpiry => super::update::expired(ctx, &ms, &d),
        DeadlineKind::Retention => {
            ctx.delete_run(&mut ms)?;
            return Ok(accepted());
        }
        DeadlineKind::Unspecified | DeadlineKind::ScheduleAction => {
            return Ok(rejected("deadline of unknown kind"))
        }
    }
    ctx.save(&ms);
    Ok(accepted())
}
