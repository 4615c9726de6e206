//! Workflow and activity tasks: long polls (dispatch is a replicated command, so a task goes
//! to exactly one poller and survives failover), completions, failures, heartbeats.
//!
//! Temporal commands are converted to engine commands here; payloads, failures and headers
//! travel as the encoded bytes of Temporal's messages.

use std::time::{Duration, Instant};

use keel_engine::command::Kind;
use keel_engine::workflow::{
    self as wf, workflow_command::Kind as Cmd, workflow_outcome::Kind as Outcome,
};
use keel_engine::ReadState;
use keel_proto::temporalio_protos::temporal::api::command::v1::{
    command::Attributes as CA, Command, ContinueAsNewWorkflowExecutionCommandAttributes,
    StartChildWorkflowExecutionCommandAttributes,
};
use keel_proto::temporalio_protos::temporal::api::common::v1::{
    ActivityType, Header, Payloads, RetryPolicy, WorkflowExecution, WorkflowType,
};
use keel_proto::temporalio_protos::temporal::api::enums::v1::CommandType;
use keel_proto::temporalio_protos::temporal::api::failure::v1::{failure::FailureInfo, Failure};
use keel_proto::temporalio_protos::temporal::api::history::v1::{
    History, MarkerRecordedEventAttributes,
};
use keel_proto::temporalio_protos::temporal::api::query::v1::WorkflowQuery;
use keel_proto::temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use keel_proto::temporalio_protos::temporal::api::workflowservice::v1 as api;
use prost::Message;
use tonic::Status;

use crate::convert::{decoded, duration, duration_ms, encoded, timestamp};
use crate::history::to_temporal;
use crate::service::Frontend;
use crate::wake::Watch;

/// Encodes an engine task token for the wire (opaque to SDKs).
pub fn encode_token(t: &wf::TaskToken) -> Vec<u8> {
    t.encode_to_vec()
}

/// Decodes a task token; a garbled one is NOT_FOUND, like a stale one.
pub fn decode_token(bytes: &[u8]) -> Result<wf::TaskToken, Status> {
    let t =
        wf::TaskToken::decode(bytes).map_err(|_| Status::not_found("task token not recognized"))?;
    if t.run.is_none() {
        return Err(Status::not_found("task token not recognized"));
    }
    Ok(t)
}

/// Dispatch proposals in flight per backlog `(namespace, queue, kind)` on one node. Pollers
/// propose only while fewer are in flight than tasks wait, so one new task wakes many pollers
/// but costs one dispatch proposal from this node, not one per poller.
#[derive(Default)]
pub struct InFlight(
    std::sync::Mutex<std::collections::BTreeMap<(String, String, wf::TaskKind), u64>>,
);

/// A claimed dispatch slot; released on drop. A release that did not hand out a task wakes
/// the backlog's other pollers (the task may still be there for them).
struct Claim<'a> {
    table: &'a InFlight,
    watchers: &'a keel_raft::watch::Watchers,
    key: (String, String, wf::TaskKind),
    took_task: bool,
}

impl InFlight {
    fn claim<'a>(
        &'a self,
        watchers: &'a keel_raft::watch::Watchers,
        key: (String, String, wf::TaskKind),
        available: u64,
    ) -> Option<Claim<'a>> {
        let mut t = self.0.lock().expect("in-flight table lock");
        let n = t.entry(key.clone()).or_default();
        if *n >= available {
            return None;
        }
        *n += 1;
        Some(Claim {
            table: self,
            watchers,
            key,
            took_task: false,
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        {
            let mut t = self.table.0.lock().expect("in-flight table lock");
            if let Some(n) = t.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    t.remove(&self.key);
                }
            }
        }
        if !self.took_task {
            let (ns, queue, kind) = &self.key;
            self.watchers.notify(&wf::watch_queue(ns, queue, *kind));
        }
    }
}

/// Sticky workflow-task polls waiting on this node per `(namespace, queue)`, not counting
/// those proposing a dispatch. While one waits, normal polls leave workflow tasks to it: its
/// worker probably has the run cached and then gets only the new events, where a normal poll
/// would ship (and the SDK decode) the whole history.
#[derive(Default)]
pub struct StickyWaiting(std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>);

/// One waiting sticky poll; on drop, the last one leaving wakes the queue's normal polls.
struct StickyGuard<'a> {
    table: &'a StickyWaiting,
    watchers: &'a keel_raft::watch::Watchers,
    key: (String, String),
}

impl StickyWaiting {
    fn enter<'a>(
        &'a self,
        watchers: &'a keel_raft::watch::Watchers,
        namespace: &str,
        queue: &str,
    ) -> StickyGuard<'a> {
        let key = (namespace.to_string(), queue.to_string());
        *self
            .0
            .lock()
            .expect("sticky table lock")
            .entry(key.clone())
            .or_default() += 1;
        StickyGuard {
            table: self,
            watchers,
            key,
        }
    }

    fn any(&self, namespace: &str, queue: &str) -> bool {
        let t = self.0.lock().expect("sticky table lock");
        t.contains_key(&(namespace.to_string(), queue.to_string()))
    }
}

impl Drop for StickyGuard<'_> {
    fn drop(&mut self) {
        let last = {
            let mut t = self.table.0.lock().expect("sticky table lock");
            match t.get_mut(&self.key) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => {
                    t.remove(&self.key);
                    true
                }
            }
        };
        if last {
            let (ns, queue) = &self.key;
            self.watchers
                .notify(&wf::watch_queue(ns, queue, wf::TaskKind::Workflow));
        }
    }
}

/// A workflow task dispatched to a parked poll inside a start's or completion's own log
/// entry, with that entry's index.
struct Handoff(wf::Dispatched, u64);

/// How long past its deadline a poll that a start or completion took waits for the handoff
/// (that request's commit); should it not come, the task is retried after its start-to-close
/// timeout like any task whose poller vanished.
const HANDOFF_GRACE: Duration = Duration::from_millis(500);

/// Workflow-task polls waiting on this node, per `(namespace, queue)`, that a request on this
/// node hands a task to directly ("sync match", [`Frontend::propose_with_handoff`]): a start or
/// an activity completion that schedules a workflow task proposes, in the same log entry, the
/// dispatch to a parked poll, saving a commit and a poll round. Sticky polls are taken first.
#[derive(Default)]
pub struct Parked {
    next_id: std::sync::atomic::AtomicU64,
    polls: std::sync::Mutex<std::collections::BTreeMap<(String, String), Vec<ParkedPoll>>>,
}

pub(crate) struct ParkedPoll {
    id: u64,
    identity: String,
    sticky: bool,
    tx: tokio::sync::oneshot::Sender<Handoff>,
}

/// A poll's place in [`Parked`]; dropped, it leaves (unless a completion took it).
struct ParkedGuard<'a> {
    table: &'a Parked,
    key: (String, String),
    id: u64,
}

impl Parked {
    fn park<'a>(
        &'a self,
        namespace: &str,
        queue: &str,
        identity: &str,
        sticky: bool,
    ) -> (ParkedGuard<'a>, tokio::sync::oneshot::Receiver<Handoff>) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let key = (namespace.to_string(), queue.to_string());
        self.polls
            .lock()
            .expect("parked table lock")
            .entry(key.clone())
            .or_default()
            .push(ParkedPoll {
                id,
                identity: identity.to_string(),
                sticky,
                tx,
            });
        (
            ParkedGuard {
                table: self,
                key,
                id,
            },
            rx,
        )
    }

    /// How many polls are parked on a queue.
    pub(crate) fn count(&self, namespace: &str, queue: &str) -> usize {
        let t = self.polls.lock().expect("parked table lock");
        t.get(&(namespace.to_string(), queue.to_string()))
            .map_or(0, Vec::len)
    }

    /// Takes one parked poll of the queue, a sticky one if any.
    fn take(&self, namespace: &str, queue: &str) -> Option<ParkedPoll> {
        let mut t = self.polls.lock().expect("parked table lock");
        let key = (namespace.to_string(), queue.to_string());
        let polls = t.get_mut(&key)?;
        // Entries never hold an empty list.
        let i = polls.iter().position(|p| p.sticky).unwrap_or(0);
        let p = polls.swap_remove(i);
        if polls.is_empty() {
            t.remove(&key);
        }
        Some(p)
    }
}

impl ParkedGuard<'_> {
    /// Leaves the table; false if a completion took this poll (its handoff is on the way).
    fn leave(self) -> bool {
        self.remove()
    }

    /// Removes this poll's entry if it is still there.
    fn remove(&self) -> bool {
        let mut t = self.table.polls.lock().expect("parked table lock");
        let Some(polls) = t.get_mut(&self.key) else {
            return false;
        };
        let Some(i) = polls.iter().position(|p| p.id == self.id) else {
            return false;
        };
        polls.swap_remove(i);
        if polls.is_empty() {
            t.remove(&self.key);
        }
        true
    }
}

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        // After `leave` this finds nothing to remove.
        self.remove();
    }
}

/// Outcome of a mutating task request: `Ok` for Accepted, the Temporal error otherwise.
pub fn accepted(o: Outcome) -> Result<(), Status> {
    match o {
        Outcome::Accepted(_) => Ok(()),
        Outcome::NotFound(m) => Err(Status::not_found(m)),
        Outcome::InvalidArgument(m) => Err(Status::invalid_argument(m)),
        other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
    }
}

/// How many dispatches of `kind` on this queue would make progress now, as this node has
/// applied the state.
fn ready(state: &impl ReadState, namespace: &str, queue: &str, kind: wf::TaskKind) -> u64 {
    match kind {
        wf::TaskKind::Query => wf::query_ready(state, namespace, queue).unwrap_or(false) as u64,
        // As this node has applied it; workflow tasks wait in two backlogs.
        _ => wf::backlog_len(state, namespace, queue, kind).unwrap_or(0),
    }
}

impl Frontend {
    /// Long-polls backlogs (`kinds` in order of preference): proposes a dispatch only when a
    /// backlog (as this node has applied it) can hand something out, otherwise waits for new
    /// state until `deadline`. A `sticky` poll is preferred for workflow tasks over normal
    /// polls waiting on this node ([`StickyWaiting`]).
    pub(crate) async fn poll(
        &self,
        namespace: &str,
        queue: &str,
        kinds: &[wf::TaskKind],
        identity: &str,
        sticky: bool,
        deadline: Instant,
    ) -> Result<Option<(wf::Dispatched, u64)>, Status> {
        let keys: Vec<Vec<u8>> = kinds
            .iter()
            .map(|k| wf::watch_queue(namespace, queue, *k))
            .collect();
        let watch = Watch::new(self.node(), &keys);
        let waiting = || {
            sticky.then(|| {
                self.sticky_waiting
                    .enter(self.node().watchers(), namespace, queue)
            })
        };
        let mut waiting_sticky = waiting();
        loop {
            let armed = watch.arm();
            for &kind in kinds {
                if kind == wf::TaskKind::Workflow
                    && !sticky
                    && self.sticky_waiting.any(namespace, queue)
                {
                    continue;
                }
                let available = ready(self.node().state(), namespace, queue, kind);
                let key = (namespace.to_string(), queue.to_string(), kind);
                let Some(mut claim) =
                    self.dispatching
                        .claim(self.node().watchers(), key, available)
                else {
                    continue;
                };
                // Proposing, no longer waiting: normal polls may take the next task.
                drop(waiting_sticky.take());
                let (outcome, log_index) = self
                    .propose_at(Kind::DispatchTask(wf::DispatchTask {
                        namespace: namespace.to_string(),
                        task_queue: queue.to_string(),
                        kind: kind as i32,
                        identity: identity.to_string(),
                        request_id: crate::service::new_uuid(),
                    }))
                    .await?;
                if let Outcome::Dispatched(d) = outcome {
                    claim.took_task = true;
                    return Ok(Some((d, log_index)));
                }
                if waiting_sticky.is_none() {
                    waiting_sticky = waiting();
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            if !kinds.contains(&wf::TaskKind::Workflow) {
                armed.wait(deadline).await;
                continue;
            }
            // Parked while waiting: a completion on this node may hand us a task directly.
            let (parked, mut handoff) = self.parked.park(namespace, queue, identity, sticky);
            tokio::select! {
                _ = armed.wait(deadline) => {}
                h = &mut handoff => match h {
                    Ok(Handoff(d, index)) => return Ok(Some((d, index))),
                    // The completion found no task for us: look again.
                    Err(_) => continue,
                },
            }
            if !parked.leave() {
                let grace = deadline.max(Instant::now()) + HANDOFF_GRACE;
                if let Ok(Ok(Handoff(d, index))) =
                    tokio::time::timeout_at(grace.into(), handoff).await
                {
                    return Ok(Some((d, index)));
                }
            }
        }
    }

    pub(crate) async fn poll_workflow_task(
        &self,
        r: api::PollWorkflowTaskQueueRequest,
        budget: Duration,
    ) -> Result<api::PollWorkflowTaskQueueResponse, Status> {
        self.require_namespace(&r.namespace)?;
        let deadline = Instant::now() + budget;
        let mut queue = r.task_queue.unwrap_or_default();
        crate::validate::task_queue(&queue.name)?;
        let listed = if queue.kind == 2 && !queue.normal_name.is_empty() {
            &queue.normal_name
        } else {
            &queue.name
        };
        self.pollers.seen(
            &r.namespace,
            listed,
            wf::TaskKind::Workflow as u8,
            &r.identity,
        );
        let sticky_name = (queue.kind == 2).then(|| queue.name.clone());
        // Keel keeps no separate sticky backlogs: a sticky poll is served from its worker's
        // normal queue, so all of a worker's pollers take tasks (temporal-compat.md §4), and
        // it is preferred over normal polls so the run's cached owner gets only new events.
        // Without a normal name it is parked until its budget ends, never rejected (§0 rule 8).
        if queue.kind == 2 {
            if queue.normal_name.is_empty() {
                tokio::time::sleep_until(deadline.into()).await;
                return Ok(api::PollWorkflowTaskQueueResponse::default());
            }
            queue.name = std::mem::take(&mut queue.normal_name);
            queue.kind = 1;
        }
        // Queries first: they are short and a caller is waiting on each.
        let Some((d, log_index)) = self
            .poll(
                &r.namespace,
                &queue.name,
                &[wf::TaskKind::Query, wf::TaskKind::Workflow],
                &r.identity,
                sticky_name.is_some(),
                deadline,
            )
            .await?
        else {
            return Ok(api::PollWorkflowTaskQueueResponse::default());
        };
        let poller = Poller {
            sticky_queue: sticky_name.as_deref(),
            worker_key: &r.worker_instance_key,
        };
        self.workflow_task_response(d, log_index, poller).await
    }

    /// The poll response for a started workflow task (or a legacy query task) `d` that the
    /// entry at `log_index` handed out to `poller`.
    pub(crate) async fn workflow_task_response(
        &self,
        d: wf::Dispatched,
        log_index: u64,
        poller: Poller<'_>,
    ) -> Result<api::PollWorkflowTaskQueueResponse, Status> {
        // The dispatch may have committed through the leader: read history once applied here.
        self.node()
            .wait_applied_beyond(log_index.saturating_sub(1), Duration::from_secs(5))
            .await;
        let token = d.token.clone().expect("dispatch returns a token");
        let run = token.run.clone().expect("token names a run");
        // Only the new events for the worker that completed the run's last task (it has the
        // run cached; should it have evicted it, the SDK fetches the full history): its sticky
        // queue's polls, and its normal-queue polls too, known by `worker_instance_key`.
        // Everyone else gets the full history.
        let owner = poller.sticky_queue.is_some_and(|s| s == d.sticky_queue)
            || (!poller.worker_key.is_empty() && poller.worker_key == d.sticky_worker_key);
        let first = if owner && d.query.is_none() && d.previous_started_event_id > 0 {
            d.previous_started_event_id + 1
        } else {
            1
        };
        // A retried task's Scheduled and Started events are not written yet: they end the
        // history as the engine handed them out.
        let written_last = d.last_event_id - d.transient_events.len() as i64;
        let mut events =
            crate::history::read_events(self.node().state(), &run, first, written_last)?;
        if events.len() as i64 != written_last - first + 1 {
            return Err(Status::unavailable(
                "history not yet applied on this node; retry",
            ));
        }
        events.extend(d.transient_events.iter().cloned());
        // A legacy query task: `query` set, no started task (temporal-compat.md §5).
        let query = d.query.as_deref().map(workflow_query);
        // Queries that go out with this workflow task, answered in its completion.
        let queries = d
            .queries
            .iter()
            .map(|q| (q.query_id.clone(), workflow_query(q)))
            .collect();
        let times = events.last().map(|e| e.event_time_ms).unwrap_or(0);
        Ok(api::PollWorkflowTaskQueueResponse {
            task_token: encode_token(&token),
            workflow_execution: Some(WorkflowExecution {
                workflow_id: run.workflow_id.clone(),
                run_id: run.run_id.clone(),
            }),
            workflow_type: Some(WorkflowType {
                name: d.workflow_type.clone(),
            }),
            previous_started_event_id: d.previous_started_event_id,
            started_event_id: d.started_event_id,
            attempt: d.attempt,
            history: Some(History {
                events: events.iter().map(|e| to_temporal(e, &run)).collect(),
            }),
            workflow_execution_task_queue: Some(TaskQueue {
                name: d.task_queue.clone(),
                kind: 1,
                ..Default::default()
            }),
            scheduled_time: Some(timestamp(times)),
            started_time: Some(timestamp(times)),
            query,
            queries,
            messages: crate::update::task_messages(&d.updates, d.started_event_id),
            ..Default::default()
        })
    }

    pub(crate) async fn poll_activity_task(
        &self,
        r: api::PollActivityTaskQueueRequest,
        budget: Duration,
    ) -> Result<api::PollActivityTaskQueueResponse, Status> {
        self.require_namespace(&r.namespace)?;
        let deadline = Instant::now() + budget;
        let queue = r.task_queue.unwrap_or_default();
        crate::validate::task_queue(&queue.name)?;
        self.pollers.seen(
            &r.namespace,
            &queue.name,
            wf::TaskKind::Activity as u8,
            &r.identity,
        );
        let Some((d, _)) = self
            .poll(
                &r.namespace,
                &queue.name,
                &[wf::TaskKind::Activity],
                &r.identity,
                false,
                deadline,
            )
            .await?
        else {
            return Ok(api::PollActivityTaskQueueResponse::default());
        };
        Ok(activity_task(&r.namespace, &d))
    }
}

fn workflow_query(q: &wf::QueryRecord) -> WorkflowQuery {
    WorkflowQuery {
        query_type: q.query_type.clone(),
        query_args: decoded::<Payloads>(&q.query_args),
        header: decoded::<Header>(&q.header),
    }
}

/// The poll response of a started activity attempt (polled, or started eagerly).
pub fn activity_task(namespace: &str, d: &wf::Dispatched) -> api::PollActivityTaskQueueResponse {
    let token = d.token.clone().expect("dispatch returns a token");
    let run = token.run.clone().expect("token names a run");
    let a = d
        .activity
        .clone()
        .expect("activity dispatch carries the activity");
    let ms = |v: u64| (v > 0).then(|| duration(v));
    api::PollActivityTaskQueueResponse {
        task_token: encode_token(&token),
        workflow_namespace: namespace.to_string(),
        workflow_type: Some(WorkflowType {
            name: d.workflow_type.clone(),
        }),
        workflow_execution: Some(WorkflowExecution {
            workflow_id: run.workflow_id.clone(),
            run_id: run.run_id.clone(),
        }),
        activity_type: Some(ActivityType {
            name: a.activity_type.clone(),
        }),
        activity_id: a.activity_id.clone(),
        input: decoded::<Payloads>(&a.input),
        heartbeat_details: decoded::<Payloads>(&a.heartbeat_details),
        scheduled_time: Some(timestamp(a.first_scheduled_time_ms)),
        current_attempt_scheduled_time: Some(timestamp(a.scheduled_time_ms)),
        started_time: Some(timestamp(a.started_time_ms)),
        attempt: a.attempt,
        // Always present, 0 meaning none (as Temporal sends them): the TypeScript worker
        // rejects an activity task that lacks either.
        schedule_to_close_timeout: Some(duration(a.schedule_to_close_timeout_ms)),
        start_to_close_timeout: Some(duration(a.start_to_close_timeout_ms)),
        heartbeat_timeout: ms(a.heartbeat_timeout_ms),
        retry_policy: a.retry_policy.as_ref().map(retry_policy_to_temporal),
        header: decoded::<Header>(&a.header),
        ..Default::default()
    }
}

/// Activity completions, failures, cancellations and heartbeats: by task token or by id.
impl Frontend {
    /// The token of an activity's current started attempt, named by ids (the …ById RPCs).
    pub(crate) async fn activity_token(
        &self,
        namespace: &str,
        workflow_id: &str,
        run_id: &str,
        activity_id: &str,
    ) -> Result<wf::TaskToken, Status> {
        self.require_namespace(namespace)?;
        for (field, v) in [("workflow_id", workflow_id), ("activity_id", activity_id)] {
            if v.is_empty() {
                return Err(Status::invalid_argument(format!("{field} is required")));
            }
        }
        let ms = self
            .linearized_run(&wf::RunKey {
                namespace: namespace.to_string(),
                workflow_id: workflow_id.to_string(),
                run_id: run_id.to_string(),
            })
            .await?;
        let a = ms
            .activities
            .iter()
            .find(|a| a.activity_id == activity_id)
            .ok_or_else(|| Status::not_found(format!("activity {activity_id} not found")))?;
        if !a.started {
            return Err(Status::not_found(format!(
                "activity {activity_id} has no started attempt"
            )));
        }
        Ok(wf::TaskToken {
            run: ms.run.clone(),
            kind: wf::TaskKind::Activity as i32,
            scheduled_event_id: a.scheduled_event_id,
            started_event_id: 0,
            attempt: a.attempt,
            query_id: String::new(),
            workflow_task_queue: ms.task_queue.clone(),
        })
    }

    pub(crate) async fn complete_activity(
        &self,
        token: wf::TaskToken,
        identity: String,
        result: &Option<Payloads>,
    ) -> Result<(), Status> {
        // As Temporal: a result past the blob limit fails the activity (not retried) instead.
        if crate::validate::blob(result).is_err() {
            return self
                .fail_activity(token, identity, &Some(blob_failure(RESULT_TOO_LARGE)))
                .await;
        }
        let run = token.run.clone().expect("decoded tokens name a run");
        // Sync match: the completion usually schedules the run's next workflow task, on the
        // queue its token names (tokens from before that field, or made by id, name none).
        let queue = if token.workflow_task_queue.is_empty() {
            wf::read_mutable_state(self.node().state(), &run)
                .ok()
                .flatten()
                .map(|ms| ms.task_queue)
        } else {
            Some(token.workflow_task_queue.clone())
        };
        let complete = Kind::CompleteActivityTask(wf::CompleteActivityTask {
            token: Some(token),
            identity,
            result: encoded(result),
        });
        let outcome = match queue {
            Some(q) => {
                self.propose_with_handoff(complete, &run.namespace, &q)
                    .await?
            }
            None => self.propose(complete).await?,
        };
        accepted(outcome)
    }

    /// Proposes `kind` (a command that usually queues a workflow task on `queue`, like a
    /// start or an activity completion) and, when a workflow-task poll is parked on this
    /// node for that queue ("sync match"), a dispatch to it in the same log entry, saving
    /// a commit and a poll round. Returns `kind`'s outcome.
    pub(crate) async fn propose_with_handoff(
        &self,
        kind: Kind,
        namespace: &str,
        queue: &str,
    ) -> Result<Outcome, Status> {
        let Some(poll) = self.parked.take(namespace, queue) else {
            return self.propose(kind).await;
        };
        let dispatch = Kind::DispatchTask(wf::DispatchTask {
            namespace: namespace.to_string(),
            task_queue: queue.to_string(),
            kind: wf::TaskKind::Workflow as i32,
            identity: poll.identity.clone(),
            request_id: crate::service::new_uuid(),
        });
        // Its own task: the handoff happens even if this request is cancelled meanwhile. On
        // error, or if nothing was there to dispatch, `poll` is dropped, and the parked poll,
        // seeing no handoff, looks again.
        let node = self.node().clone();
        let proposal = tokio::spawn(async move {
            let (mut outcomes, index) =
                crate::service::propose_all(&node, vec![kind, dispatch]).await?;
            if let Some(Ok(Outcome::Dispatched(d))) = outcomes.pop() {
                if poll.tx.send(Handoff(d, index)).is_err() {
                    tracing::warn!(
                        identity = %poll.identity,
                        "a workflow task was dispatched to a poll that had gone; it is retried after its start-to-close timeout"
                    );
                }
            }
            outcomes.pop().expect("one outcome per command")
        });
        proposal
            .await
            .map_err(|e| Status::internal(format!("proposal task failed: {e}")))?
    }

    pub(crate) async fn fail_activity(
        &self,
        token: wf::TaskToken,
        identity: String,
        failure: &Option<Failure>,
    ) -> Result<(), Status> {
        let too_large;
        let failure = if crate::validate::blob(failure).is_err() {
            too_large = Some(blob_failure(FAILURE_TOO_LARGE));
            &too_large
        } else {
            failure
        };
        let (failure_type, non_retryable, next_retry_delay_ms) = failure_facts(failure);
        let outcome = self
            .propose(Kind::FailActivityTask(wf::FailActivityTask {
                token: Some(token),
                identity,
                failure: encoded(failure),
                failure_type,
                non_retryable,
                next_retry_delay_ms,
            }))
            .await?;
        accepted(outcome)
    }

    pub(crate) async fn cancel_activity(
        &self,
        token: wf::TaskToken,
        identity: String,
        details: &Option<Payloads>,
    ) -> Result<(), Status> {
        let outcome = self
            .propose(Kind::CancelActivityTask(wf::CancelActivityTask {
                token: Some(token),
                identity,
                details: encoded(details),
            }))
            .await?;
        accepted(outcome)
    }

    /// Records a heartbeat; returns whether the workflow asked to cancel the activity.
    pub(crate) async fn heartbeat(
        &self,
        token: wf::TaskToken,
        details: &Option<Payloads>,
    ) -> Result<bool, Status> {
        // As Temporal: details past the blob limit fail the activity (not retried).
        if crate::validate::blob(details).is_err() {
            let identity = String::new();
            self.fail_activity(token, identity, &Some(blob_failure(DETAILS_TOO_LARGE)))
                .await?;
            return Ok(false);
        }
        let outcome = self
            .propose(Kind::RecordHeartbeat(wf::RecordHeartbeat {
                token: Some(token),
                details: encoded(details),
            }))
            .await?;
        match outcome {
            Outcome::Heartbeat(h) => Ok(h.cancel_requested),
            other => accepted(other).map(|_| false),
        }
    }
}

/// Temporal's messages for an activity's payload past the blob limit.
const RESULT_TOO_LARGE: &str = "Complete result exceeds size limit.";
const FAILURE_TOO_LARGE: &str = "Failure exceeds size limit.";
const DETAILS_TOO_LARGE: &str = "Heartbeat details exceed size limit.";

/// The non-retryable server failure that replaces an activity's oversized payload.
fn blob_failure(message: &str) -> Failure {
    use keel_proto::temporalio_protos::temporal::api::failure::v1::ServerFailureInfo;
    Failure {
        message: message.to_string(),
        source: "Keel".to_string(),
        failure_info: Some(FailureInfo::ServerFailureInfo(ServerFailureInfo {
            non_retryable: true,
        })),
        ..Default::default()
    }
}

pub(crate) fn retry_policy_to_temporal(p: &wf::RetryPolicy) -> RetryPolicy {
    RetryPolicy {
        initial_interval: (p.initial_interval_ms > 0).then(|| duration(p.initial_interval_ms)),
        backoff_coefficient: p.backoff_coefficient,
        maximum_interval: (p.maximum_interval_ms > 0).then(|| duration(p.maximum_interval_ms)),
        maximum_attempts: p.maximum_attempts,
        non_retryable_error_types: p.non_retryable_error_types.clone(),
    }
}

pub(crate) fn retry_policy_from_temporal(p: &RetryPolicy) -> wf::RetryPolicy {
    wf::RetryPolicy {
        initial_interval_ms: duration_ms(&p.initial_interval),
        backoff_coefficient: p.backoff_coefficient,
        maximum_interval_ms: duration_ms(&p.maximum_interval),
        maximum_attempts: p.maximum_attempts,
        non_retryable_error_types: p.non_retryable_error_types.clone(),
    }
}

/// Who a workflow task goes to: a poll of a worker's sticky queue (its name), and the
/// worker's `worker_instance_key` (empty when the SDK sends none).
#[derive(Clone, Copy, Default)]
pub(crate) struct Poller<'a> {
    pub sticky_queue: Option<&'a str>,
    pub worker_key: &'a str,
}

/// One Temporal command as an engine command. A kind Keel does not implement becomes
/// `Unsupported` with its type name, which fails the workflow task (INVALID_ARGUMENT, and a
/// WorkflowTaskFailed event naming it) instead of being dropped; a command without
/// attributes fails it too, and so does one whose attributes belong to another command type
/// (Temporal reads the attributes of the declared type and finds them unset).
pub fn convert_command(c: &Command) -> wf::WorkflowCommand {
    if let Some(a) = c
        .attributes
        .as_ref()
        .filter(|a| attributes_type(a) as i32 != c.command_type)
    {
        tracing::warn!(
            command_type = c.command_type,
            attributes = ?attributes_type(a),
            "a command's attributes belong to another command type"
        );
        return wf::WorkflowCommand {
            kind: None,
            user_metadata: Vec::new(),
        };
    }
    if let Some((cause, message)) = c.attributes.as_ref().and_then(oversized) {
        return wf::WorkflowCommand {
            kind: Some(Cmd::Invalid(wf::InvalidCommand {
                cause: cause as i32,
                message: message.to_string(),
                terminate: true,
            })),
            user_metadata: Vec::new(),
        };
    }
    let kind = match &c.attributes {
        Some(CA::ScheduleActivityTaskCommandAttributes(a)) => {
            Some(Cmd::ScheduleActivity(wf::ScheduleActivity {
                activity_id: a.activity_id.clone(),
                activity_type: a
                    .activity_type
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                task_queue: a
                    .task_queue
                    .as_ref()
                    .map(|q| q.name.clone())
                    .unwrap_or_default(),
                input: encoded(&a.input),
                schedule_to_close_timeout_ms: duration_ms(&a.schedule_to_close_timeout),
                schedule_to_start_timeout_ms: duration_ms(&a.schedule_to_start_timeout),
                start_to_close_timeout_ms: duration_ms(&a.start_to_close_timeout),
                heartbeat_timeout_ms: duration_ms(&a.heartbeat_timeout),
                retry_policy: a.retry_policy.as_ref().map(retry_policy_from_temporal),
                request_eager_execution: a.request_eager_execution,
                header: encoded(&a.header),
            }))
        }
        Some(CA::StartTimerCommandAttributes(t))
            if t.start_to_fire_timeout
                .as_ref()
                .is_some_and(|d| d.seconds < 0 || d.nanos < 0) =>
        {
            Some(Cmd::Invalid(wf::InvalidCommand {
                cause: wf::WorkflowTaskFailedCause::BadStartTimerAttributes as i32,
                message: "An invalid StartToFireTimeout is set on StartTimerCommand: negative."
                    .into(),
                terminate: false,
            }))
        }
        Some(CA::StartTimerCommandAttributes(t)) => Some(Cmd::StartTimer(wf::StartTimer {
            timer_id: t.timer_id.clone(),
            start_to_fire_timeout_ms: duration_ms(&t.start_to_fire_timeout),
        })),
        Some(CA::CancelTimerCommandAttributes(t)) => Some(Cmd::CancelTimer(wf::CancelTimer {
            timer_id: t.timer_id.clone(),
        })),
        Some(CA::CompleteWorkflowExecutionCommandAttributes(x)) => {
            Some(Cmd::CompleteWorkflow(wf::CompleteWorkflow {
                result: encoded(&x.result),
                next_run_id: crate::service::new_uuid(),
            }))
        }
        Some(CA::FailWorkflowExecutionCommandAttributes(x)) => {
            let (failure_type, non_retryable, _) = failure_facts(&x.failure);
            Some(Cmd::FailWorkflow(wf::FailWorkflow {
                failure: encoded(&x.failure),
                failure_type,
                non_retryable,
                next_run_id: crate::service::new_uuid(),
            }))
        }
        Some(CA::CancelWorkflowExecutionCommandAttributes(x)) => {
            Some(Cmd::CancelWorkflow(wf::CancelWorkflow {
                details: encoded(&x.details),
            }))
        }
        Some(CA::RequestCancelActivityTaskCommandAttributes(x)) => {
            Some(Cmd::RequestCancelActivity(wf::RequestCancelActivity {
                scheduled_event_id: x.scheduled_event_id,
            }))
        }
        Some(CA::RecordMarkerCommandAttributes(m)) => Some(Cmd::RecordMarker(wf::RecordMarker {
            marker_name: m.marker_name.clone(),
            // Stored as a MarkerRecorded message holding only the details map.
            details: MarkerRecordedEventAttributes {
                details: m.details.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            header: encoded(&m.header),
            failure: encoded(&m.failure),
        })),
        Some(CA::ContinueAsNewWorkflowExecutionCommandAttributes(a)) => Some(continue_as_new(a)),
        Some(CA::StartChildWorkflowExecutionCommandAttributes(a)) => Some(start_child(a)),
        Some(CA::SignalExternalWorkflowExecutionCommandAttributes(a)) => {
            let execution = a.execution.clone().unwrap_or_default();
            Some(Cmd::SignalExternal(wf::SignalExternal {
                workflow_id: execution.workflow_id,
                run_id: execution.run_id,
                signal_name: a.signal_name.clone(),
                input: encoded(&a.input),
                header: encoded(&a.header),
                child_workflow_only: a.child_workflow_only,
            }))
        }
        Some(CA::RequestCancelExternalWorkflowExecutionCommandAttributes(a)) => {
            Some(Cmd::RequestCancelExternal(wf::RequestCancelExternal {
                workflow_id: a.workflow_id.clone(),
                run_id: a.run_id.clone(),
                child_workflow_only: a.child_workflow_only,
                reason: a.reason.clone(),
            }))
        }
        Some(CA::UpsertWorkflowSearchAttributesCommandAttributes(a)) => {
            Some(Cmd::UpsertSearchAttributes(wf::UpsertSearchAttributes {
                search_attributes: encoded(&a.search_attributes),
            }))
        }
        Some(CA::ModifyWorkflowPropertiesCommandAttributes(a)) => {
            Some(Cmd::ModifyProperties(wf::ModifyProperties {
                upserted_memo: encoded(&a.upserted_memo),
            }))
        }
        Some(CA::ProtocolMessageCommandAttributes(a)) => {
            Some(Cmd::ProtocolMessage(a.message_id.clone()))
        }
        Some(_) => Some(Cmd::Unsupported(
            c.command_type()
                .as_str_name()
                .trim_start_matches("COMMAND_TYPE_")
                .to_string(),
        )),
        None => None,
    };
    wf::WorkflowCommand {
        kind,
        user_metadata: encoded(&c.user_metadata),
    }
}

/// ContinueAsNewWorkflowExecution with a fresh run id for the next run.
fn continue_as_new(a: &ContinueAsNewWorkflowExecutionCommandAttributes) -> Cmd {
    Cmd::ContinueAsNew(wf::ContinueAsNew {
        new_run_id: crate::service::new_uuid(),
        workflow_type: a
            .workflow_type
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        task_queue: a
            .task_queue
            .as_ref()
            .map(|q| q.name.clone())
            .unwrap_or_default(),
        input: encoded(&a.input),
        run_timeout_ms: duration_ms(&a.workflow_run_timeout),
        workflow_task_timeout_ms: duration_ms(&a.workflow_task_timeout),
        backoff_start_ms: duration_ms(&a.backoff_start_interval),
        header: encoded(&a.header),
        memo: encoded(&a.memo),
        last_completion_result: encoded(&a.last_completion_result),
        failure: encoded(&a.failure),
        retry_policy: a.retry_policy.as_ref().map(retry_policy_from_temporal),
        cron_schedule: a.cron_schedule.clone(),
        search_attributes: encoded(&a.search_attributes),
    })
}

/// A command's payload past the blob limit: the task-failure cause and Temporal's message
/// (the run is then terminated with both).
fn oversized(a: &CA) -> Option<(wf::WorkflowTaskFailedCause, &'static str)> {
    use wf::WorkflowTaskFailedCause as C;
    let over = |size: usize| size > crate::validate::BLOB_SIZE_LIMIT_BYTES;
    let len = |p: &Option<Payloads>| p.as_ref().map_or(0, |p| p.encoded_len());
    let (size, cause, message) = match a {
        CA::ScheduleActivityTaskCommandAttributes(x) => (
            len(&x.input),
            C::BadScheduleActivityAttributes,
            "ScheduleActivityTaskCommandAttributes.Input exceeds size limit.",
        ),
        CA::CompleteWorkflowExecutionCommandAttributes(x) => (
            len(&x.result),
            C::BadCompleteWorkflowExecutionAttributes,
            "CompleteWorkflowExecutionCommandAttributes.Result exceeds size limit.",
        ),
        CA::FailWorkflowExecutionCommandAttributes(x) => (
            x.failure.as_ref().map_or(0, |f| f.encoded_len()),
            C::BadFailWorkflowExecutionAttributes,
            "FailWorkflowExecutionCommandAttributes.Failure exceeds size limit.",
        ),
        CA::CancelWorkflowExecutionCommandAttributes(x) => (
            len(&x.details),
            C::BadCancelWorkflowExecutionAttributes,
            "CancelWorkflowExecutionCommandAttributes.Details exceeds size limit.",
        ),
        CA::RecordMarkerCommandAttributes(x) => (
            x.details.values().map(|p| p.encoded_len()).sum(),
            C::BadRecordMarkerAttributes,
            "RecordMarkerCommandAttributes.Details exceeds size limit.",
        ),
        CA::ContinueAsNewWorkflowExecutionCommandAttributes(x) => (
            len(&x.input),
            C::BadContinueAsNewAttributes,
            "ContinueAsNewWorkflowExecutionCommandAttributes.Input exceeds size limit.",
        ),
        CA::StartChildWorkflowExecutionCommandAttributes(x) => (
            len(&x.input),
            C::BadStartChildExecutionAttributes,
            "StartChildWorkflowExecutionCommandAttributes.Input exceeds size limit.",
        ),
        CA::SignalExternalWorkflowExecutionCommandAttributes(x) => (
            len(&x.input),
            C::BadSignalWorkflowExecutionAttributes,
            "SignalExternalWorkflowExecutionCommandAttributes.Input exceeds size limit.",
        ),
        _ => return None,
    };
    over(size).then_some((cause, message))
}

/// StartChildWorkflowExecution with a fresh run id for the child, in the parent's namespace
/// (the command's `namespace` is deprecated in Temporal's API); a retry policy Temporal
/// would refuse fails the task with its message.
fn start_child(a: &StartChildWorkflowExecutionCommandAttributes) -> Cmd {
    if let Some(Err(e)) = a
        .retry_policy
        .as_ref()
        .map(crate::service::validate_retry_policy)
    {
        return Cmd::Invalid(wf::InvalidCommand {
            cause: wf::WorkflowTaskFailedCause::BadStartChildExecutionAttributes as i32,
            message: e.message().to_string(),
            terminate: false,
        });
    }
    Cmd::StartChildWorkflow(wf::StartChildWorkflow {
        workflow_id: a.workflow_id.clone(),
        workflow_type: a
            .workflow_type
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        task_queue: a
            .task_queue
            .as_ref()
            .map(|q| q.name.clone())
            .unwrap_or_default(),
        input: encoded(&a.input),
        execution_timeout_ms: duration_ms(&a.workflow_execution_timeout),
        run_timeout_ms: duration_ms(&a.workflow_run_timeout),
        workflow_task_timeout_ms: duration_ms(&a.workflow_task_timeout),
        parent_close_policy: a.parent_close_policy,
        id_reuse_policy: a.workflow_id_reuse_policy,
        header: encoded(&a.header),
        memo: encoded(&a.memo),
        new_run_id: crate::service::new_uuid(),
        control: a.control.clone(),
        search_attributes: encoded(&a.search_attributes),
        retry_policy: a.retry_policy.as_ref().map(retry_policy_from_temporal),
        cron_schedule: a.cron_schedule.clone(),
    })
}

/// The command type an attributes variant belongs to.
fn attributes_type(a: &CA) -> CommandType {
    use CommandType as T;
    match a {
        CA::ScheduleActivityTaskCommandAttributes(_) => T::ScheduleActivityTask,
        CA::StartTimerCommandAttributes(_) => T::StartTimer,
        CA::CompleteWorkflowExecutionCommandAttributes(_) => T::CompleteWorkflowExecution,
        CA::FailWorkflowExecutionCommandAttributes(_) => T::FailWorkflowExecution,
        CA::RequestCancelActivityTaskCommandAttributes(_) => T::RequestCancelActivityTask,
        CA::CancelTimerCommandAttributes(_) => T::CancelTimer,
        CA::CancelWorkflowExecutionCommandAttributes(_) => T::CancelWorkflowExecution,
        CA::RequestCancelExternalWorkflowExecutionCommandAttributes(_) => {
            T::RequestCancelExternalWorkflowExecution
        }
        CA::RecordMarkerCommandAttributes(_) => T::RecordMarker,
        CA::ContinueAsNewWorkflowExecutionCommandAttributes(_) => T::ContinueAsNewWorkflowExecution,
        CA::StartChildWorkflowExecutionCommandAttributes(_) => T::StartChildWorkflowExecution,
        CA::SignalExternalWorkflowExecutionCommandAttributes(_) => {
            T::SignalExternalWorkflowExecution
        }
        CA::UpsertWorkflowSearchAttributesCommandAttributes(_) => T::UpsertWorkflowSearchAttributes,
        CA::ProtocolMessageCommandAttributes(_) => T::ProtocolMessage,
        CA::ModifyWorkflowPropertiesCommandAttributes(_) => T::ModifyWorkflowProperties,
        CA::ScheduleNexusOperationCommandAttributes(_) => T::ScheduleNexusOperation,
        CA::RequestCancelNexusOperationCommandAttributes(_) => T::RequestCancelNexusOperation,
    }
}

/// The fields of an activity failure that decide retries.
pub fn failure_facts(f: &Option<Failure>) -> (String, bool, u64) {
    match f.as_ref().and_then(|f| f.failure_info.as_ref()) {
        Some(FailureInfo::ApplicationFailureInfo(a)) => (
            a.r#type.clone(),
            a.non_retryable,
            duration_ms(&a.next_retry_delay),
        ),
        Some(FailureInfo::ServerFailureInfo(s)) => (String::new(), s.non_retryable, 0),
        _ => (String::new(), false, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_the_blob_limit_terminates_with_temporals_cause_and_message() {
        use keel_proto::temporalio_protos::temporal::api::command::v1::CompleteWorkflowExecutionCommandAttributes;
        use keel_proto::temporalio_protos::temporal::api::common::v1::Payload;
        let complete = |bytes: usize| Command {
            command_type: CommandType::CompleteWorkflowExecution as i32,
            attributes: Some(CA::CompleteWorkflowExecutionCommandAttributes(
                CompleteWorkflowExecutionCommandAttributes {
                    result: Some(Payloads {
                        payloads: vec![Payload {
                            data: vec![0; bytes],
                            ..Default::default()
                        }],
                    }),
                },
            )),
            ..Default::default()
        };
        assert!(matches!(
            convert_command(&complete(1 << 20)).kind,
            Some(Cmd::CompleteWorkflow(_))
        ));
        assert_eq!(
            convert_command(&complete(crate::validate::BLOB_SIZE_LIMIT_BYTES)).kind,
            Some(Cmd::Invalid(wf::InvalidCommand {
                cause: wf::WorkflowTaskFailedCause::BadCompleteWorkflowExecutionAttributes as i32,
                message: "CompleteWorkflowExecutionCommandAttributes.Result exceeds size limit."
                    .into(),
                terminate: true,
            }))
        );
    }

    #[test]
    fn a_command_keel_does_not_implement_is_kept_by_its_type_name() {
        use keel_proto::temporalio_protos::temporal::api::command::v1::{
            ContinueAsNewWorkflowExecutionCommandAttributes,
            ScheduleNexusOperationCommandAttributes,
        };
        use keel_proto::temporalio_protos::temporal::api::enums::v1::CommandType;
        let c = Command {
            command_type: CommandType::ScheduleNexusOperation as i32,
            attributes: Some(CA::ScheduleNexusOperationCommandAttributes(
                ScheduleNexusOperationCommandAttributes::default(),
            )),
            ..Default::default()
        };
        assert_eq!(
            convert_command(&c).kind,
            Some(Cmd::Unsupported("SCHEDULE_NEXUS_OPERATION".into()))
        );
        // A continue-as-new is converted, with a fresh run id.
        let can = Command {
            command_type: CommandType::ContinueAsNewWorkflowExecution as i32,
            attributes: Some(CA::ContinueAsNewWorkflowExecutionCommandAttributes(
                ContinueAsNewWorkflowExecutionCommandAttributes {
                    cron_schedule: "@every 1m".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        assert!(matches!(
            convert_command(&can).kind,
            Some(Cmd::ContinueAsNew(ref n)) if n.new_run_id.len() == 36 && n.cron_schedule == "@every 1m"
        ));
        let empty = Command::default();
        assert_eq!(convert_command(&empty).kind, None, "no attributes, no kind");
        // A child's retry policy Temporal would refuse becomes an invalid command that fails
        // the task with Temporal's message; a valid one, and a cron schedule, go through.
        let child = |maximum_attempts: i32| Command {
            command_type: CommandType::StartChildWorkflowExecution as i32,
            attributes: Some(CA::StartChildWorkflowExecutionCommandAttributes(
                StartChildWorkflowExecutionCommandAttributes {
                    workflow_id: "c".into(),
                    retry_policy: Some(RetryPolicy {
                        maximum_attempts,
                        ..Default::default()
                    }),
                    cron_schedule: "@hourly".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        assert_eq!(
            convert_command(&child(-1)).kind,
            Some(Cmd::Invalid(wf::InvalidCommand {
                cause: wf::WorkflowTaskFailedCause::BadStartChildExecutionAttributes as i32,
                message: "MaximumAttempts cannot be negative on retry policy.".into(),
                terminate: false,
            }))
        );
        assert!(matches!(
            convert_command(&child(2)).kind,
            Some(Cmd::StartChildWorkflow(ref c))
                if c.retry_policy.as_ref().map(|p| p.maximum_attempts) == Some(2)
                    && c.cron_schedule == "@hourly"
        ));
    }

    #[test]
    fn the_engines_causes_and_policies_are_numbered_as_temporal_numbers_them() {
        use keel_proto::temporalio_protos::temporal::api::enums::v1::WorkflowTaskFailedCause as T;
        use wf::WorkflowTaskFailedCause as K;
        for (keel, temporal) in [
            (K::Unspecified, T::Unspecified),
            (K::UnhandledCommand, T::UnhandledCommand),
            (
                K::BadScheduleActivityAttributes,
                T::BadScheduleActivityAttributes,
            ),
            (
                K::BadRequestCancelActivityAttributes,
                T::BadRequestCancelActivityAttributes,
            ),
            (K::BadStartTimerAttributes, T::BadStartTimerAttributes),
            (K::BadCancelTimerAttributes, T::BadCancelTimerAttributes),
            (
                K::BadCompleteWorkflowExecutionAttributes,
                T::BadCompleteWorkflowExecutionAttributes,
            ),
            (K::BadContinueAsNewAttributes, T::BadContinueAsNewAttributes),
            (K::StartTimerDuplicateId, T::StartTimerDuplicateId),
            (K::ForceCloseCommand, T::ForceCloseCommand),
            (K::BadSearchAttributes, T::BadSearchAttributes),
            (K::ResetWorkflow, T::ResetWorkflow),
            (
                K::BadModifyWorkflowPropertiesAttributes,
                T::BadModifyWorkflowPropertiesAttributes,
            ),
            (
                K::BadSignalWorkflowExecutionAttributes,
                T::BadSignalWorkflowExecutionAttributes,
            ),
            (
                K::BadStartChildExecutionAttributes,
                T::BadStartChildExecutionAttributes,
            ),
        ] {
            assert_eq!(keel as i32, temporal as i32, "{keel:?}");
        }
        use keel_proto::temporalio_protos::temporal::api::enums::v1::ParentClosePolicy as TP;
        use wf::ParentClosePolicy as KP;
        for (keel, temporal) in [
            (KP::Unspecified, TP::Unspecified),
            (KP::Terminate, TP::Terminate),
            (KP::Abandon, TP::Abandon),
            (KP::RequestCancel, TP::RequestCancel),
        ] {
            assert_eq!(keel as i32, temporal as i32, "{keel:?}");
        }
    }

    #[test]
    fn attributes_of_another_command_type_count_as_none() {
        use keel_proto::temporalio_protos::temporal::api::command::v1::CompleteWorkflowExecutionCommandAttributes;
        use keel_proto::temporalio_protos::temporal::api::enums::v1::CommandType;
        let complete = |t: CommandType| Command {
            command_type: t as i32,
            attributes: Some(CA::CompleteWorkflowExecutionCommandAttributes(
                CompleteWorkflowExecutionCommandAttributes::default(),
            )),
            ..Default::default()
        };
        assert!(matches!(
            convert_command(&complete(CommandType::CompleteWorkflowExecution)).kind,
            Some(Cmd::CompleteWorkflow(_))
        ));
        assert_eq!(
            convert_command(&complete(CommandType::RequestCancelActivityTask)).kind,
            None
        );
        assert_eq!(
            convert_command(&complete(CommandType::Unspecified)).kind,
            None
        );
    }

    #[test]
    fn a_completion_takes_a_sticky_parked_poll_first_and_each_poll_once() {
        let parked = Parked::default();
        let (normal, _rx1) = parked.park("ns", "q", "normal", false);
        let (sticky, mut rx2) = parked.park("ns", "q", "sticky", true);
        assert!(parked.take("ns", "other").is_none(), "queues are separate");
        let first = parked.take("ns", "q").expect("a parked poll");
        assert_eq!(first.identity, "sticky");
        // The taken poll learns it was taken when it leaves; the handoff reaches it.
        assert!(!sticky.leave(), "taken, not left");
        assert!(first.tx.send(Handoff(wf::Dispatched::default(), 7)).is_ok());
        assert!(matches!(rx2.try_recv(), Ok(Handoff(_, 7))));
        // The other poll leaves untaken; nothing is left to take.
        assert!(normal.leave());
        assert!(parked.take("ns", "q").is_none());
    }

    #[test]
    fn a_dropped_poll_is_never_handed_a_task() {
        let parked = Parked::default();
        let (guard, rx) = parked.park("ns", "q", "gone", false);
        drop(guard);
        drop(rx);
        assert!(
            parked.take("ns", "q").is_none(),
            "a cancelled poll leaves the table"
        );
    }
}
