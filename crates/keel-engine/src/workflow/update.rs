//! Workflow updates: a validated request/response into a running workflow.
//!
//! An update is **admitted** by a replicated command (so, unlike Temporal, which holds
//! admitted updates in memory, an admitted update survives a leader failover and a restart),
//! goes out with the run's next workflow task as a protocol message (every admitted or
//! already-sent update goes with every new task until the workflow answers it), and comes
//! back in the task's completion as an acceptance (WorkflowExecutionUpdateAccepted), a
//! rejection (no event) and a response (WorkflowExecutionUpdateCompleted), processed where
//! the completion's ProtocolMessage commands put them, the rest after all commands.
//!
//! Each update is a record under `keys::update`, which its waiters watch; the run's mutable
//! state lists its updates (ids, states) for the limits and for deletion with the run.
//! A rejected update's record stays until its `UpdateExpiry` deadline so its waiters can read
//! the rejection; as in Temporal (which keeps no rejection) its id is free again at once: an
//! update with that id is admitted as new.
//!
//! Deliberately not done: Temporal's speculative workflow tasks. An update's task is an
//! ordinary one, so a rejected update leaves WorkflowTaskScheduled/Started/Completed events
//! (but no update event).

use prost::Message;

use super::apply::{decode, is_running, not_found, outcome, rejected, Ctx, Effect};
use super::model::workflow_command::Kind as Cmd;
use super::model::workflow_outcome::Kind as Outcome;
use super::model::*;
use crate::keys;
use crate::{ReadState, Result, StateStore};

/// Temporal's `history.maxInFlightUpdates`.
pub const MAX_IN_FLIGHT_UPDATES: usize = 10;
/// Temporal's `history.maxInFlightUpdatePayloads`.
pub const MAX_IN_FLIGHT_UPDATE_BYTES: u64 = 20 * 1024 * 1024;
/// Temporal's `history.maxTotalUpdates`.
pub const MAX_TOTAL_UPDATES: usize = 2000;
/// How long a rejected update's record stays readable (its waiters, retries of its id).
pub const REJECTED_UPDATE_TTL_MS: u64 = 10 * 60 * 1000;

/// The key of an update of `run` (whose run id is set): also its watch key.
pub fn update_key(run: &RunKey, update_id: &str) -> Vec<u8> {
    keys::update(&run.namespace, &run.workflow_id, &run.run_id, update_id)
}

/// Reads an update of `run` (run id set).
pub fn read_update(
    store: &impl ReadState,
    run: &RunKey,
    update_id: &str,
) -> Result<Option<UpdateRecord>> {
    let key = update_key(run, update_id);
    store.get(&key)?.map(|b| decode(&key, &b)).transpose()
}

fn in_flight(state: i32) -> bool {
    [
        UpdateState::Admitted as i32,
        UpdateState::Sent as i32,
        UpdateState::Accepted as i32,
    ]
    .contains(&state)
}

fn refused(code: RefusalCode, message: impl Into<String>) -> WorkflowOutcome {
    outcome(Outcome::Refused(Refusal {
        code: code as i32,
        message: message.into(),
    }))
}

fn put<S: StateStore>(ctx: &mut Ctx<'_, S>, rec: &UpdateRecord) {
    let run = rec.run.as_ref().expect("an update names its run");
    ctx.store
        .put(&update_key(run, &rec.update_id), &rec.encode_to_vec());
    ctx.effects.push(Effect::UpdateChanged {
        run: run.clone(),
        update_id: rec.update_id.clone(),
    });
}

fn set_state(ms: &mut MutableState, update_id: &str, state: UpdateState) {
    if let Some(i) = ms.updates.iter_mut().find(|u| u.update_id == update_id) {
        i.state = state as i32;
    }
}

/// UpdateWorkflowExecution's replicated half: admit the update (or find it: a retried id).
pub(super) fn admit<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &AdmitUpdate,
) -> Result<WorkflowOutcome> {
    if c.update_id.is_empty() {
        return Ok(rejected("update id is required"));
    }
    let Some(mut ms) = ctx.resolve(&c.run)? else {
        return Ok(not_found(super::start::never_existed(&c.run)));
    };
    if !c.first_execution_run_id.is_empty() && ms.chain_first_run_id() != c.first_execution_run_id {
        return Ok(not_found("workflow execution not found"));
    }
    let run = ms.run.clone().expect("named run");
    // A known id answers with what it became, before any limit (retries are never refused);
    // a rejected one is forgotten, as Temporal keeps no rejection: the id is new again.
    match read_update(ctx.store, &run, &c.update_id)? {
        Some(rec) if rec.state == UpdateState::Rejected as i32 && is_running(&ms) => {
            ctx.disarm(&mut ms, |d| {
                d.kind == DeadlineKind::UpdateExpiry as i32 && d.name == c.update_id
            });
        }
        Some(rec) => return Ok(outcome(Outcome::Update(rec))),
        None => {}
    }
    if !is_running(&ms) {
        return Ok(not_found("workflow execution already completed"));
    }
    if ms.workflow_task.as_ref().is_some_and(|t| t.attempt >= 3) {
        return Ok(refused(
            RefusalCode::WorkflowNotReady,
            "Unable to perform workflow execution update due to Workflow Task in failed state.",
        ));
    }
    let flying: Vec<&UpdateInfo> = ms.updates.iter().filter(|u| in_flight(u.state)).collect();
    if flying.len() >= MAX_IN_FLIGHT_UPDATES {
        return Ok(refused(
            RefusalCode::ConcurrentLimit,
            format!(
                "limit on number of concurrent in-flight updates has been reached ({MAX_IN_FLIGHT_UPDATES})"
            ),
        ));
    }
    let bytes: u64 = flying.iter().map(|u| u.request_bytes).sum::<u64>() + c.request.len() as u64;
    if bytes >= MAX_IN_FLIGHT_UPDATE_BYTES {
        return Ok(refused(
            RefusalCode::ConcurrentLimit,
            format!(
                "limit on total payload size of in-flight updates has been reached ({MAX_IN_FLIGHT_UPDATE_BYTES} bytes)"
            ),
        ));
    }
    let total = ms
        .updates
        .iter()
        .filter(|u| in_flight(u.state) || u.state == UpdateState::Completed as i32)
        .count();
    if total >= MAX_TOTAL_UPDATES {
        return Ok(refused(
            RefusalCode::FailedPrecondition,
            format!(
                "The limit on the total number of distinct updates in this workflow has been reached ({MAX_TOTAL_UPDATES}). Make sure any duplicate updates share an Update ID so the server can deduplicate them, and consider rejecting updates that you aren't going to process. You can also Continue-as-New to avoid this; we recommend you check Continue-as-New Suggested in your Workflow."
            ),
        ));
    }
    let rec = UpdateRecord {
        update_id: c.update_id.clone(),
        run: Some(run),
        state: UpdateState::Admitted as i32,
        request: c.request.clone(),
        admitted_time_ms: ctx.now_ms,
        ..Default::default()
    };
    put(ctx, &rec);
    ms.updates.push(UpdateInfo {
        update_id: c.update_id.clone(),
        state: UpdateState::Admitted as i32,
        request_bytes: c.request.len() as u64,
    });
    // With a task scheduled the update goes with it; with one started, with the next (the
    // completion schedules it: see `after_completion`).
    ctx.schedule_workflow_task(&mut ms, 1)?;
    ctx.save(&ms);
    Ok(outcome(Outcome::Update(rec)))
}

/// Update-with-start, atomically: an update already known to the workflow id's current run
/// answers as it is; a running current run that this start names (its request id) or the
/// conflict policy USE_EXISTING takes the update; otherwise the start runs (FAIL: the
/// running run answers ALREADY_EXISTS) and the new run takes the update before its first
/// workflow task, which then carries it.
pub(super) fn start_with_update<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &StartWithUpdate,
) -> Result<WorkflowOutcome> {
    let (Some(start), Some(update)) = (&c.start, &c.update) else {
        return Ok(rejected("update-with-start needs a start and an update"));
    };
    let Some(run) = &start.run else {
        return Ok(rejected("start: missing run"));
    };
    let both = |run_id: String, started: bool, status: RunStatus, update: WorkflowOutcome| {
        outcome(Outcome::StartedWithUpdate(StartedWithUpdate {
            started: Some(Started {
                run_id,
                started,
                eager_task: None,
            }),
            update: Some(Box::new(update)),
            run_status: status as i32,
        }))
    };
    let current = RunKey {
        run_id: String::new(),
        ..run.clone()
    };
    if let Some(ms) = ctx.resolve(&Some(current))? {
        let cur = ms.run.clone().expect("named run");
        let status = RunStatus::try_from(ms.status).unwrap_or(RunStatus::Unspecified);
        let known = read_update(ctx.store, &cur, &update.update_id)?;
        // An update the workflow completed answers as it is, running run or closed; one the
        // server ended (the run closed under it) does not: the start decides, as if new.
        if let Some(rec) = known.as_ref().filter(|r| {
            r.state == UpdateState::Completed as i32
                && r.server_outcome == UpdateServerOutcome::None as i32
        }) {
            return Ok(both(
                cur.run_id,
                false,
                status,
                outcome(Outcome::Update(rec.clone())),
            ));
        }
        let in_flight = known.as_ref().is_some_and(|r| in_flight(r.state));
        let same_request = !start.request_id.is_empty() && start.request_id == ms.start_request_id;
        if is_running(&ms)
            && (in_flight || same_request || start.conflict_policy == CONFLICT_USE_EXISTING)
        {
            let admitted = admit(
                ctx,
                &AdmitUpdate {
                    run: Some(cur.clone()),
                    ..update.clone()
                },
            )?;
            return Ok(both(cur.run_id, false, status, admitted));
        }
    }
    let started = match super::start::start_workflow(ctx, start)?.kind {
        Some(Outcome::Started(s)) => s,
        other => return Ok(WorkflowOutcome { kind: other }),
    };
    let target = RunKey {
        run_id: started.run_id.clone(),
        ..run.clone()
    };
    let status = super::read_mutable_state(ctx.store, &target)?
        .and_then(|m| RunStatus::try_from(m.status).ok())
        .unwrap_or(RunStatus::Running);
    let admitted = admit(
        ctx,
        &AdmitUpdate {
            run: Some(target),
            ..update.clone()
        },
    )?;
    Ok(both(started.run_id, started.started, status, admitted))
}

/// The updates that go out with a workflow task starting now: every admitted one and every
/// one sent before and not answered (its task failed or timed out), in admission order.
pub(super) fn attach<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    scheduled_event_id: i64,
    attempt: i32,
) -> Result<Vec<UpdateDelivery>> {
    let run = ms.run.clone().expect("named run");
    let mut out = Vec::new();
    for info in ms.updates.iter_mut() {
        if info.state != UpdateState::Admitted as i32 && info.state != UpdateState::Sent as i32 {
            continue;
        }
        let Some(mut rec) = read_update(ctx.store, &run, &info.update_id)? else {
            continue;
        };
        rec.state = UpdateState::Sent as i32;
        rec.sent_scheduled_event_id = scheduled_event_id;
        rec.sent_attempt = attempt;
        put(ctx, &rec);
        info.state = UpdateState::Sent as i32;
        out.push(UpdateDelivery {
            update_id: rec.update_id,
            request: rec.request,
        });
    }
    Ok(out)
}

fn state_name(state: i32) -> &'static str {
    match UpdateState::try_from(state).unwrap_or(UpdateState::Unspecified) {
        UpdateState::Unspecified => "Unspecified",
        UpdateState::Admitted => "Admitted",
        UpdateState::Sent => "Sent",
        UpdateState::Accepted => "Accepted",
        UpdateState::Completed => "Completed",
        UpdateState::Rejected => "Rejected",
        UpdateState::Aborted => "Aborted",
    }
}

/// Checks a completion's protocol messages and ProtocolMessage commands before anything is
/// written: the message a command names exists, each message's update is in flight in this
/// run and in a state that takes it. `Some(message)` fails the task with
/// BadUpdateWorkflowExecutionMessage.
pub(super) fn validate(
    ms: &MutableState,
    commands: &[WorkflowCommand],
    messages: &[UpdateMessage],
) -> Option<String> {
    let mut order: Vec<&UpdateMessage> = Vec::new();
    for c in commands {
        if let Some(Cmd::ProtocolMessage(id)) = &c.kind {
            if id.is_empty() {
                return Some("MessageID is not set on ProtocolMessageCommand.".into());
            }
            match messages.iter().find(|m| &m.message_id == id) {
                Some(m) => order.push(m),
                None => {
                    return Some(format!(
                        "ProtocolMessageCommand referenced absent message ID {id}"
                    ))
                }
            }
        }
    }
    for m in messages {
        if !order.iter().any(|o| o.message_id == m.message_id) {
            order.push(m);
        }
    }
    let mut states: Vec<(String, i32)> = ms
        .updates
        .iter()
        .filter(|u| in_flight(u.state))
        .map(|u| (u.update_id.clone(), u.state))
        .collect();
    for m in order {
        let Some(slot) = states.iter_mut().find(|(id, _)| *id == m.update_id) else {
            return Some(format!(
                "update {} wasn't found on the server. This is most likely a transient error which will be resolved automatically by retries",
                m.update_id
            ));
        };
        let (kind, allowed, next) = match &m.body {
            Some(update_message::Body::Accept(_)) => (
                "Acceptance",
                slot.1 == UpdateState::Admitted as i32 || slot.1 == UpdateState::Sent as i32,
                UpdateState::Accepted as i32,
            ),
            Some(update_message::Body::Reject(_)) => (
                "Rejection",
                slot.1 == UpdateState::Admitted as i32 || slot.1 == UpdateState::Sent as i32,
                UpdateState::Rejected as i32,
            ),
            Some(update_message::Body::Respond(_)) => (
                "Response",
                slot.1 == UpdateState::Accepted as i32,
                UpdateState::Completed as i32,
            ),
            None => return Some(format!("message {}: nil message body", m.message_id)),
        };
        if !allowed {
            return Some(format!(
                "invalid state transition attempted for Update {}: received *update.{kind} message while in state {}",
                m.update_id,
                state_name(slot.1)
            ));
        }
        slot.1 = next;
    }
    None
}

/// Applies one validated protocol message (a run still open).
pub(super) fn process<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    m: &UpdateMessage,
) -> Result<()> {
    let run = ms.run.clone().expect("named run");
    let Some(mut rec) = read_update(ctx.store, &run, &m.update_id)? else {
        return Ok(()); // validated: unreachable
    };
    match &m.body {
        Some(update_message::Body::Accept(a)) => {
            let id = ctx.append(
                ms,
                Attributes::WorkflowExecutionUpdateAccepted(UpdateAccepted {
                    protocol_instance_id: rec.update_id.clone(),
                    accepted_request_message_id: format!("{}/request", rec.update_id),
                    accepted_request_sequencing_event_id: a.accepted_request_sequencing_event_id,
                    accepted_request: rec.request.clone(),
                }),
            );
            rec.state = UpdateState::Accepted as i32;
            rec.accepted_event_id = id;
            set_state(ms, &rec.update_id, UpdateState::Accepted);
        }
        Some(update_message::Body::Reject(r)) => {
            rec.state = UpdateState::Rejected as i32;
            rec.outcome = r.outcome.clone();
            reject(ctx, ms, &rec.update_id);
        }
        Some(update_message::Body::Respond(r)) => {
            let id = ctx.append(
                ms,
                Attributes::WorkflowExecutionUpdateCompleted(UpdateCompleted {
                    update_id: rec.update_id.clone(),
                    identity: r.identity.clone(),
                    accepted_event_id: rec.accepted_event_id,
                    outcome: r.outcome.clone(),
                }),
            );
            rec.state = UpdateState::Completed as i32;
            rec.completed_event_id = id;
            rec.outcome = r.outcome.clone();
            set_state(ms, &rec.update_id, UpdateState::Completed);
        }
        None => return Ok(()),
    }
    put(ctx, &rec);
    Ok(())
}

/// A rejected update leaves the run's list (it counts toward no limit) and its record is
/// kept until its expiry.
fn reject<S: StateStore>(ctx: &mut Ctx<'_, S>, ms: &mut MutableState, update_id: &str) {
    ms.updates.retain(|u| u.update_id != update_id);
    let at = ctx.now_ms.saturating_add(REJECTED_UPDATE_TTL_MS);
    ctx.arm(ms, DeadlineKind::UpdateExpiry, 0, 0, update_id, at);
}

/// After a completed workflow task's commands and messages: an update the task carried
/// that the worker did not answer is rejected by the server (Temporal's UnprocessedUpdate),
/// unless the task was a heartbeat. Returns whether updates wait for a new task (admitted
/// while this one ran).
pub(super) fn after_completion<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    task: &WorkflowTaskInfo,
    heartbeat: bool,
) -> Result<bool> {
    if !is_running(ms) {
        return Ok(false);
    }
    let run = ms.run.clone().expect("named run");
    let mut waiting = false;
    let ids: Vec<(String, i32)> = ms
        .updates
        .iter()
        .map(|u| (u.update_id.clone(), u.state))
        .collect();
    for (id, state) in ids {
        if state == UpdateState::Admitted as i32 {
            waiting = true;
        }
        if state != UpdateState::Sent as i32 || heartbeat {
            continue;
        }
        let Some(mut rec) = read_update(ctx.store, &run, &id)? else {
            continue;
        };
        if rec.sent_scheduled_event_id != task.scheduled_event_id
            || rec.sent_attempt != task.attempt
        {
            waiting = true; // sent with an earlier task: goes again
            continue;
        }
        rec.state = UpdateState::Rejected as i32;
        rec.server_outcome = UpdateServerOutcome::UnprocessedUpdate as i32;
        put(ctx, &rec);
        reject(ctx, ms, &id);
    }
    Ok(waiting)
}

/// The run closed: updates not yet accepted end with an error for their waiters (a retry
/// reaches the new run when there is one); accepted ones complete with Temporal's
/// AcceptedUpdateCompletedWorkflow failure. No event either way.
pub(super) fn on_close<S: StateStore>(ctx: &mut Ctx<'_, S>, ms: &mut MutableState) -> Result<()> {
    let run = ms.run.clone().expect("named run");
    let continuing = !ms.new_execution_run_id.is_empty();
    for info in ms.updates.iter_mut() {
        if !in_flight(info.state) {
            continue;
        }
        let Some(mut rec) = read_update(ctx.store, &run, &info.update_id)? else {
            continue;
        };
        if info.state == UpdateState::Accepted as i32 {
            rec.state = UpdateState::Completed as i32;
            rec.server_outcome = UpdateServerOutcome::AcceptedUpdateCompletedWorkflow as i32;
            info.state = UpdateState::Completed as i32;
        } else {
            rec.state = UpdateState::Aborted as i32;
            rec.abort = if continuing {
                UpdateAbort::Continuing
            } else {
                UpdateAbort::ClosingWorkflow
            } as i32;
            info.state = UpdateState::Aborted as i32;
        }
        put(ctx, &rec);
    }
    Ok(())
}

/// A rejected update's expiry: its record goes.
pub(super) fn expired<S: StateStore>(ctx: &mut Ctx<'_, S>, ms: &MutableState, d: &Deadline) {
    let run = ms.run.clone().expect("named run");
    ctx.store.delete(&update_key(&run, &d.name));
}

/// Deletes every update record of a run being deleted (retention).
pub(super) fn delete_all<S: StateStore>(ctx: &mut Ctx<'_, S>, ms: &MutableState) {
    let run = ms.run.clone().expect("named run");
    for u in &ms.updates {
        ctx.store.delete(&update_key(&run, &u.update_id));
    }
    for d in &ms.deadlines {
        if d.kind == DeadlineKind::UpdateExpiry as i32 {
            ctx.store.delete(&update_key(&run, &d.name));
        }
    }
}
