//! Queries: a query is recorded and queued for the run's task queue, then handed out one of
//! two ways: as a legacy query task to one workflow poller while the run has no started
//! workflow task, or, if the run's next workflow task starts first, with that task (its
//! `queries`, answered in its completion's `query_results`), so a run whose tasks follow one
//! another (workflow-task heartbeats) is still queryable. Answered, it is read by the
//! querying frontend and then forgotten. A query nobody answers is removed by its
//! `QueryExpiry` deadline, which outlives the run's close: closed runs stay queryable.
//!
//! A query waiting for its run's task does not hold up the queries behind it in the backlog:
//! dispatch looks past waiting entries (a bounded window).
//!
//! Queries change no history and no workflow state; they are replicated only so that any
//! node's pollers can take them and any node can read the answer.

use prost::Message;

use super::apply::{accepted, decode, is_running, not_found, outcome, rejected, Ctx};
use super::model::workflow_outcome::Kind as Outcome;
use super::model::*;
use crate::keys;
use crate::{ReadState, Result, StateStore};

/// Bounds on how long a query may wait for its answer.
const MIN_QUERY_TIMEOUT_MS: u64 = 1_000;
const MAX_QUERY_TIMEOUT_MS: u64 = 10 * 60 * 1_000;
/// Upper bound on stale backlog entries skipped by one dispatch.
const MAX_STALE_SKIPS: usize = 64;

/// Reads a query in flight.
pub fn read_query(
    store: &impl ReadState,
    namespace: &str,
    query_id: &str,
) -> Result<Option<QueryRecord>> {
    let key = keys::query(namespace, query_id);
    store.get(&key)?.map(|b| decode(&key, &b)).transpose()
}

pub(super) fn enqueue<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &EnqueueQuery,
) -> Result<WorkflowOutcome> {
    if c.query_id.is_empty() || c.query_type.is_empty() {
        return Ok(rejected("query id and query type are required"));
    }
    let Some(mut ms) = ctx.resolve(&c.run)? else {
        return Ok(not_found("workflow execution not found"));
    };
    let run = ms.run.clone().expect("named run");
    let key = keys::query(&run.namespace, &c.query_id);
    if ctx.store.get(&key)?.is_some() {
        return Ok(accepted()); // a retried proposal
    }
    let record = QueryRecord {
        query_id: c.query_id.clone(),
        run: Some(run.clone()),
        task_queue: ms.task_queue.clone(),
        query_type: c.query_type.clone(),
        query_args: c.query_args.clone(),
        header: c.header.clone(),
        state: QueryState::Pending as i32,
        ..Default::default()
    };
    ctx.store.put(&key, &record.encode_to_vec());
    let queue = ms.task_queue.clone();
    ctx.enqueue_ref(
        &queue,
        TaskKind::Query,
        TaskRef {
            run: Some(run),
            scheduled_event_id: 0,
            query_id: c.query_id.clone(),
            enqueued_ms: 0,
        },
    )?;
    let timeout = c
        .timeout_ms
        .clamp(MIN_QUERY_TIMEOUT_MS, MAX_QUERY_TIMEOUT_MS);
    let at = ctx.now_ms.saturating_add(timeout);
    ctx.arm(&mut ms, DeadlineKind::QueryExpiry, 0, 0, &c.query_id, at);
    ctx.save(&ms);
    Ok(accepted())
}

/// What dispatch does with the query at the head of a backlog.
enum Head {
    /// Stale (forgotten, expired, run gone): drop it and look further.
    Skip,
    /// Its run has a started workflow task: the query waits (and so do those behind it).
    Wait,
    /// Hand it out.
    Take(Box<(QueryRecord, MutableState)>),
}

/// Whether a query still waits to be handed out: pending, or sent with a workflow task that
/// ended without answering it (failed, timed out, or completed without its result). `ms` is
/// its run, as before any task start in this entry.
fn awaiting(record: &QueryRecord, ms: &MutableState) -> bool {
    if record.state == QueryState::Pending as i32 {
        return true;
    }
    if record.state != QueryState::Dispatched as i32 || record.task_scheduled_event_id == 0 {
        return false;
    }
    let still_out = ms.workflow_task.as_ref().is_some_and(|t| {
        t.started_event_id != 0
            && t.scheduled_event_id == record.task_scheduled_event_id
            && t.attempt == record.task_attempt
    });
    !still_out
}

fn head(store: &impl ReadState, namespace: &str, entry: &TaskRef) -> Result<Head> {
    let Some(record) = read_query(store, namespace, &entry.query_id)? else {
        return Ok(Head::Skip);
    };
    let legacy_dispatched =
        record.state == QueryState::Dispatched as i32 && record.task_scheduled_event_id == 0;
    if record.state == QueryState::Answered as i32 || legacy_dispatched {
        return Ok(Head::Skip);
    }
    let Some(run) = record.run.clone() else {
        return Ok(Head::Skip);
    };
    let Some(ms) = super::read_mutable_state(store, &run)? else {
        return Ok(Head::Skip);
    };
    // A run with a workflow task scheduled or started answers with that task (Temporal
    // holds the query for it too: the worker then sees the query after the task's events,
    // never against a history it is about to extend) — unless the task is a retry of a
    // failed or timed-out one, which may never succeed: then the query goes on its own. A
    // query out with the started task waits as well: should that task end unanswered, the
    // entry hands it out.
    let held = ms
        .workflow_task
        .as_ref()
        .is_some_and(|t| t.started_event_id != 0 || !t.transient);
    if is_running(&ms) && held {
        return Ok(Head::Wait);
    }
    if !awaiting(&record, &ms) {
        return Ok(Head::Skip);
    }
    Ok(Head::Take(Box::new((record, ms))))
}

/// Hands the run's waiting queries out with the workflow task being started (scheduled at
/// `scheduled_event_id`, `attempt`); `ms` as before that start.
pub(super) fn attach_to_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &MutableState,
    scheduled_event_id: i64,
    attempt: i32,
) -> Result<Vec<QueryRecord>> {
    let run = ms.run.as_ref().expect("named run");
    let mut attached = Vec::new();
    // Every query of the run in flight has its expiry armed on the run.
    for d in &ms.deadlines {
        if d.kind != DeadlineKind::QueryExpiry as i32 {
            continue;
        }
        let Some(mut record) = read_query(ctx.store, &run.namespace, &d.name)? else {
            continue;
        };
        if !awaiting(&record, ms) {
            continue;
        }
        // Its backlog entry stays: dispatch skips it while the task holds it, and hands it
        // out as a query task should the task end unanswered.
        record.state = QueryState::Dispatched as i32;
        record.task_scheduled_event_id = scheduled_event_id;
        record.task_attempt = attempt;
        ctx.store.put(
            &keys::query(&run.namespace, &record.query_id),
            &record.encode_to_vec(),
        );
        attached.push(record);
    }
    Ok(attached)
}

/// Whether a query dispatch on this queue would make progress now (hand out a query or drop
/// stale entries). Pollers propose a dispatch only then, so a query waiting for a run's
/// workflow task to finish causes no stream of empty proposals.
pub fn query_ready(store: &impl ReadState, namespace: &str, task_queue: &str) -> Result<bool> {
    let ckey = keys::queue_cursor(namespace, task_queue, TaskKind::Query as u8);
    let Some(b) = store.get(&ckey)? else {
        return Ok(false);
    };
    let cursor: QueueCursor = decode(&ckey, &b)?;
    let end = cursor.tail.min(cursor.head + MAX_STALE_SKIPS as u64);
    for pos in cursor.head..end {
        let ekey = keys::queue_entry(namespace, task_queue, TaskKind::Query as u8, pos);
        let decision = match store.get(&ekey)? {
            Some(b) => head(store, namespace, &decode(&ekey, &b)?)?,
            None => Head::Skip,
        };
        match decision {
            Head::Take(_) => return Ok(true),
            // Dropping stale entries at the head moves the cursor: progress.
            Head::Skip if pos == cursor.head => return Ok(true),
            Head::Skip | Head::Wait => {}
        }
    }
    Ok(false)
}

pub(super) fn dispatch<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &DispatchTask,
) -> Result<WorkflowOutcome> {
    let kind = TaskKind::Query as u8;
    let ckey = keys::queue_cursor(&c.namespace, &c.task_queue, kind);
    let mut cursor: QueueCursor = match ctx.store.get(&ckey)? {
        Some(b) => decode(&ckey, &b)?,
        None => return Ok(outcome(Outcome::NoTask(Empty {}))),
    };
    let mut found = None;
    // Entries up to the first waiting one are consumed (the cursor moves past them); after
    // it, a taken or stale entry leaves a hole, skipped when the cursor gets there.
    let mut at_head = true;
    let end = cursor.tail.min(cursor.head + MAX_STALE_SKIPS as u64);
    for pos in cursor.head..end {
        let ekey = keys::queue_entry(&c.namespace, &c.task_queue, kind, pos);
        let decision = match ctx.store.get(&ekey)? {
            Some(b) => head(ctx.store, &c.namespace, &decode(&ekey, &b)?)?,
            None => Head::Skip,
        };
        match decision {
            Head::Wait => at_head = false,
            Head::Skip => ctx.store.delete(&ekey),
            Head::Take(taken) => {
                ctx.store.delete(&ekey);
                let (mut record, ms) = *taken;
                record.state = QueryState::Dispatched as i32;
                record.task_scheduled_event_id = 0;
                record.task_attempt = 0;
                ctx.store.put(
                    &keys::query(&c.namespace, &record.query_id),
                    &record.encode_to_vec(),
                );
                found = Some(outcome(Outcome::Dispatched(Dispatched {
                    token: Some(TaskToken {
                        run: record.run.clone(),
                        kind: TaskKind::Query as i32,
                        query_id: record.query_id.clone(),
                        ..Default::default()
                    }),
                    workflow_type: ms.workflow_type.clone(),
                    started_event_id: 0,
                    previous_started_event_id: ms.previous_started_event_id,
                    attempt: 1,
                    activity: None,
                    last_event_id: ms.next_event_id - 1,
                    query: Some(Box::new(record)),
                    sticky_queue: String::new(),
                    task_queue: ms.task_queue.clone(),
                    // A query runs on the written history only.
                    transient_events: Vec::new(),
                    queries: Vec::new(),
                    updates: Vec::new(),
                    sticky_worker_key: String::new(),
                })));
            }
        }
        if at_head {
            cursor.head = pos + 1;
        }
        if found.is_some() {
            break;
        }
    }
    ctx.store.put(&ckey, &cursor.encode_to_vec());
    Ok(found.unwrap_or(outcome(Outcome::NoTask(Empty {}))))
}

pub(super) fn answer<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &AnswerQuery,
) -> Result<WorkflowOutcome> {
    let Some(token) = c.token.as_ref() else {
        return Ok(not_found("task token not recognized"));
    };
    let (Some(run), true) = (token.run.as_ref(), token.kind == TaskKind::Query as i32) else {
        return Ok(not_found("not a query task token"));
    };
    let key = keys::query(&run.namespace, &token.query_id);
    let Some(mut record) = read_query(ctx.store, &run.namespace, &token.query_id)? else {
        return Ok(not_found("query not found (expired or already answered)"));
    };
    if record.state != QueryState::Dispatched as i32 {
        return Ok(not_found("query already answered"));
    }
    record.state = QueryState::Answered as i32;
    record.result_type = c.result_type;
    record.result = c.result.clone();
    record.error_message = c.error_message.clone();
    record.failure = c.failure.clone();
    ctx.store.put(&key, &record.encode_to_vec());
    ctx.effects.push(super::apply::Effect::QueryAnswered {
        namespace: run.namespace.clone(),
        query_id: token.query_id.clone(),
    });
    Ok(accepted())
}

/// Records the answers a workflow task's completion carries for the queries that went out
/// with it (`task`, the completed task); answers for any other query are ignored.
pub(super) fn answer_from_task<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    run: &RunKey,
    task: &WorkflowTaskInfo,
    answers: &[AnswerQuery],
) -> Result<()> {
    for a in answers {
        let Some(query_id) = a.token.as_ref().map(|t| t.query_id.as_str()) else {
            continue;
        };
        let Some(mut record) = read_query(ctx.store, &run.namespace, query_id)? else {
            continue;
        };
        let sent_with_task = record.state == QueryState::Dispatched as i32
            && record.run.as_ref() == Some(run)
            && record.task_scheduled_event_id == task.scheduled_event_id
            && record.task_attempt == task.attempt;
        if !sent_with_task {
            continue;
        }
        record.state = QueryState::Answered as i32;
        record.result_type = a.result_type;
        record.result = a.result.clone();
        record.error_message = a.error_message.clone();
        record.failure = a.failure.clone();
        ctx.store.put(
            &keys::query(&run.namespace, query_id),
            &record.encode_to_vec(),
        );
        ctx.effects.push(super::apply::Effect::QueryAnswered {
            namespace: run.namespace.clone(),
            query_id: query_id.to_string(),
        });
    }
    Ok(())
}

pub(super) fn forget<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &ForgetQuery,
) -> Result<WorkflowOutcome> {
    let Some(record) = read_query(ctx.store, &c.namespace, &c.query_id)? else {
        return Ok(accepted());
    };
    ctx.store.delete(&keys::query(&c.namespace, &c.query_id));
    if let Some(run) = record.run.as_ref() {
        if let Some(mut ms) = super::read_mutable_state(ctx.store, run)? {
            ctx.disarm(&mut ms, |d| {
                d.kind == DeadlineKind::QueryExpiry as i32 && d.name == c.query_id
            });
            ctx.save(&ms);
        }
    }
    Ok(accepted())
}

/// The query's expiry fired (its deadline is already disarmed): remove it.
pub(super) fn expired<S: StateStore>(ctx: &mut Ctx<'_, S>, ms: &MutableState, d: &Deadline) {
    let run = ms.run.as_ref().expect("named run");
    ctx.store.delete(&keys::query(&run.namespace, &d.name));
}
