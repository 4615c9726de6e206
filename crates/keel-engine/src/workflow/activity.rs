//! Activities: scheduling, attempts, completion, failure with retries, heartbeats,
//! cancellation and the four timeouts.
//!
//! Like Temporal, an attempt's start changes only mutable state; ActivityTaskStarted is
//! written together with the activity's final outcome, so retries add no events.

use super::apply::{
    accepted, is_running, not_found, outcome, task_started, Ctx, PENDING_STARTED_ID,
};
use super::model::workflow_outcome::Kind as Outcome;
use super::model::*;
use super::task::load_for_token;
use crate::{Result, StateStore};

const ACTIVITY_KINDS: [DeadlineKind; 5] = [
    DeadlineKind::ActivityScheduleToStart,
    DeadlineKind::ActivityStartToClose,
    DeadlineKind::ActivityScheduleToClose,
    DeadlineKind::ActivityHeartbeat,
    DeadlineKind::ActivityRetry,
];

fn is_activity_deadline(d: &Deadline, scheduled_event_id: i64) -> bool {
    d.event_id == scheduled_event_id && ACTIVITY_KINDS.iter().any(|k| *k as i32 == d.kind)
}

/// Writes ActivityTaskScheduled for a validated command and enqueues attempt 1.
/// Schedules an activity; returns its scheduled id when it is to be started eagerly (by the
/// completing worker) instead of queued.
pub(super) fn schedule<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    n: ScheduleActivity,
    wtc: i64,
) -> Result<Option<i64>> {
    let task_queue = if n.task_queue.is_empty() {
        ms.task_queue.clone()
    } else {
        n.task_queue.clone()
    };
    let scheduled = ctx.append(
        ms,
        Attributes::ActivityTaskScheduled(ActivityTaskScheduled {
            activity_id: n.activity_id.clone(),
            activity_type: n.activity_type.clone(),
            task_queue: task_queue.clone(),
            input: n.input.clone(),
            header: n.header.clone(),
            schedule_to_close_timeout_ms: n.schedule_to_close_timeout_ms,
            schedule_to_start_timeout_ms: n.schedule_to_start_timeout_ms,
            start_to_close_timeout_ms: n.start_to_close_timeout_ms,
            heartbeat_timeout_ms: n.heartbeat_timeout_ms,
            workflow_task_completed_event_id: wtc,
            retry_policy: n.retry_policy.clone(),
        }),
    );
    let info = ActivityInfo {
        scheduled_event_id: scheduled,
        activity_id: n.activity_id,
        activity_type: n.activity_type,
        task_queue,
        input: n.input,
        schedule_to_close_timeout_ms: n.schedule_to_close_timeout_ms,
        schedule_to_start_timeout_ms: n.schedule_to_start_timeout_ms,
        start_to_close_timeout_ms: n.start_to_close_timeout_ms,
        heartbeat_timeout_ms: n.heartbeat_timeout_ms,
        attempt: 1,
        scheduled_time_ms: ctx.now_ms,
        first_scheduled_time_ms: ctx.now_ms,
        retry_policy: n.retry_policy,
        header: n.header,
        ..Default::default()
    };
    if info.schedule_to_close_timeout_ms > 0 {
        let at = ctx.now_ms.saturating_add(info.schedule_to_close_timeout_ms);
        ctx.arm(
            ms,
            DeadlineKind::ActivityScheduleToClose,
            scheduled,
            0,
            "",
            at,
        );
    }
    let eager = n.request_eager_execution && info.task_queue == ms.task_queue;
    ms.activities.push(info);
    if eager {
        // Started by the caller in this same apply: no backlog entry, no schedule-to-start.
        return Ok(Some(scheduled));
    }
    enqueue_attempt(ctx, ms, scheduled).map(|_| None)
}

/// Puts the activity's current attempt in its backlog and arms schedule-to-start.
pub(super) fn enqueue_attempt<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    scheduled_event_id: i64,
) -> Result<()> {
    let a = find(ms, scheduled_event_id)
        .expect("the activity is pending")
        .clone();
    if a.schedule_to_start_timeout_ms > 0 {
        let at = ctx.now_ms.saturating_add(a.schedule_to_start_timeout_ms);
        ctx.arm(
            ms,
            DeadlineKind::ActivityScheduleToStart,
            scheduled_event_id,
            a.attempt,
            "",
            at,
        );
    }
    let run = ms.run.clone().expect("named run");
    ctx.enqueue(&run, &a.task_queue, TaskKind::Activity, scheduled_event_id)
}

fn find(ms: &MutableState, scheduled_event_id: i64) -> Option<&ActivityInfo> {
    ms.activities
        .iter()
        .find(|a| a.scheduled_event_id == scheduled_event_id)
}

fn find_mut(ms: &mut MutableState, scheduled_event_id: i64) -> Option<&mut ActivityInfo> {
    ms.activities
        .iter_mut()
        .find(|a| a.scheduled_event_id == scheduled_event_id)
}

/// Dispatch of an activity attempt (a poll): record it started, arm its timeouts.
pub(super) fn start_attempt<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    entry: &TaskRef,
    c: &DispatchTask,
) -> Option<WorkflowOutcome> {
    let now = ctx.now_ms;
    let a = find_mut(ms, entry.scheduled_event_id).filter(|a| !a.started)?;
    a.started = true;
    a.started_time_ms = now;
    a.started_identity = c.identity.clone();
    a.request_id = c.request_id.clone();
    let a = a.clone();
    ctx.disarm(ms, |d| {
        d.kind == DeadlineKind::ActivityScheduleToStart as i32 && d.event_id == a.scheduled_event_id
    });
    if a.start_to_close_timeout_ms > 0 {
        ctx.arm(
            ms,
            DeadlineKind::ActivityStartToClose,
            a.scheduled_event_id,
            a.attempt,
            "",
            now.saturating_add(a.start_to_close_timeout_ms),
        );
    }
    if a.heartbeat_timeout_ms > 0 {
        ctx.arm(
            ms,
            DeadlineKind::ActivityHeartbeat,
            a.scheduled_event_id,
            a.attempt,
            "",
            now.saturating_add(a.heartbeat_timeout_ms),
        );
    }
    Some(outcome(Outcome::Dispatched(Dispatched {
        token: Some(TaskToken {
            run: ms.run.clone(),
            kind: TaskKind::Activity as i32,
            scheduled_event_id: a.scheduled_event_id,
            started_event_id: 0,
            attempt: a.attempt,
            query_id: String::new(),
            workflow_task_queue: ms.task_queue.clone(),
        }),
        workflow_type: ms.workflow_type.clone(),
        started_event_id: 0,
        previous_started_event_id: ms.previous_started_event_id,
        attempt: a.attempt,
        activity: Some(a),
        ..Default::default()
    })))
}

/// The started attempt a token names, if it is still current.
fn attempt_for<S: StateStore>(
    ctx: &Ctx<'_, S>,
    token: &Option<TaskToken>,
) -> Result<Option<(MutableState, ActivityInfo)>> {
    let Some((token, ms)) = load_for_token(ctx, token)? else {
        return Ok(None);
    };
    if token.kind != TaskKind::Activity as i32 {
        return Ok(None);
    }
    let a = find(&ms, token.scheduled_event_id)
        .filter(|a| a.started && a.attempt == token.attempt)
        .cloned();
    Ok(a.map(|a| (ms, a)))
}

/// Ends the activity with its final events (Started, then `outcome_event`) and →WFT.
fn finish<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    a: &ActivityInfo,
    outcome_event: Attributes,
) -> Result<()> {
    ms.activities
        .retain(|x| x.scheduled_event_id != a.scheduled_event_id);
    ctx.disarm(ms, |d| is_activity_deadline(d, a.scheduled_event_id));
    if a.started {
        let will_buffer = task_started(ms);
        let started_id = ms.next_event_id;
        ctx.add_event(
            ms,
            Attributes::ActivityTaskStarted(ActivityTaskStarted {
                scheduled_event_id: a.scheduled_event_id,
                identity: a.started_identity.clone(),
                request_id: a.request_id.clone(),
                attempt: a.attempt,
                last_failure: a.last_failure.clone(),
            }),
        );
        let started_id = if will_buffer {
            PENDING_STARTED_ID
        } else {
            started_id
        };
        ctx.add_event(ms, with_started_id(outcome_event, started_id));
    } else {
        ctx.add_event(ms, outcome_event);
    }
    ctx.schedule_workflow_task(ms, 1)
}

fn with_started_id(mut e: Attributes, id: i64) -> Attributes {
    match &mut e {
        Attributes::ActivityTaskCompleted(x) => x.started_event_id = id,
        Attributes::ActivityTaskFailed(x) => x.started_event_id = id,
        Attributes::ActivityTaskTimedOut(x) => x.started_event_id = id,
        Attributes::ActivityTaskCanceled(x) => x.started_event_id = id,
        _ => {}
    }
    e
}

pub(super) fn complete<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &CompleteActivityTask,
) -> Result<WorkflowOutcome> {
    let Some((mut ms, a)) = attempt_for(ctx, &c.token)? else {
        return Ok(not_found("activity task not found"));
    };
    finish(
        ctx,
        &mut ms,
        &a,
        Attributes::ActivityTaskCompleted(ActivityTaskCompleted {
            result: c.result.clone(),
            scheduled_event_id: a.scheduled_event_id,
            started_event_id: 0,
            identity: c.identity.clone(),
        }),
    )?;
    ctx.save(&ms);
    Ok(accepted())
}

/// The backoff before attempt `attempt + 1`, or why there is none: the policy's, unless the
/// schedule-to-close timeout would pass first.
fn next_backoff(
    a: &ActivityInfo,
    now_ms: u64,
    non_retryable: bool,
    failure_type: &str,
    override_ms: u64,
) -> std::result::Result<u64, RetryState> {
    let p = a.retry_policy.clone().unwrap_or_default();
    let policy = super::retry::backoff(&p, a.attempt, non_retryable, failure_type)?;
    let backoff = if override_ms > 0 { override_ms } else { policy };
    if a.schedule_to_close_timeout_ms > 0
        && now_ms.saturating_add(backoff)
            > a.first_scheduled_time_ms
                .saturating_add(a.schedule_to_close_timeout_ms)
    {
        return Err(RetryState::Timeout);
    }
    Ok(backoff)
}

/// Moves a failed attempt to the next one after `backoff_ms`: no events.
fn retry_later<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    scheduled_event_id: i64,
    last_failure: Vec<u8>,
    backoff_ms: u64,
) {
    let now = ctx.now_ms;
    let a = find_mut(ms, scheduled_event_id).expect("the activity is pending");
    let old_attempt = a.attempt;
    a.attempt += 1;
    a.started = false;
    a.started_time_ms = 0;
    a.started_identity.clear();
    a.request_id.clear();
    a.last_failure = last_failure;
    a.cancel_requested = false;
    let attempt = a.attempt;
    ctx.disarm(ms, |d| {
        d.event_id == scheduled_event_id
            && d.attempt == old_attempt
            && (d.kind == DeadlineKind::ActivityStartToClose as i32
                || d.kind == DeadlineKind::ActivityHeartbeat as i32)
    });
    ctx.arm(
        ms,
        DeadlineKind::ActivityRetry,
        scheduled_event_id,
        attempt,
        "",
        now.saturating_add(backoff_ms),
    );
}

pub(super) fn fail<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &FailActivityTask,
) -> Result<WorkflowOutcome> {
    let Some((mut ms, a)) = attempt_for(ctx, &c.token)? else {
        return Ok(not_found("activity task not found"));
    };
    match next_backoff(
        &a,
        ctx.now_ms,
        c.non_retryable,
        &c.failure_type,
        c.next_retry_delay_ms,
    ) {
        Ok(backoff) => retry_later(
            ctx,
            &mut ms,
            a.scheduled_event_id,
            c.failure.clone(),
            backoff,
        ),
        Err(retry_state) => finish(
            ctx,
            &mut ms,
            &a,
            Attributes::ActivityTaskFailed(ActivityTaskFailed {
                failure: c.failure.clone(),
                scheduled_event_id: a.scheduled_event_id,
                started_event_id: 0,
                identity: c.identity.clone(),
                retry_state: retry_state as i32,
            }),
        )?,
    }
    ctx.save(&ms);
    Ok(accepted())
}

pub(super) fn heartbeat<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &RecordHeartbeat,
) -> Result<WorkflowOutcome> {
    let Some((mut ms, a)) = attempt_for(ctx, &c.token)? else {
        return Ok(not_found("activity task not found"));
    };
    let now = ctx.now_ms;
    let info = find_mut(&mut ms, a.scheduled_event_id).expect("found above");
    info.heartbeat_details = c.details.clone();
    info.last_heartbeat_time_ms = now;
    if a.heartbeat_timeout_ms > 0 {
        ctx.disarm(&mut ms, |d| {
            d.kind == DeadlineKind::ActivityHeartbeat as i32 && d.event_id == a.scheduled_event_id
        });
        ctx.arm(
            &mut ms,
            DeadlineKind::ActivityHeartbeat,
            a.scheduled_event_id,
            a.attempt,
            "",
            now.saturating_add(a.heartbeat_timeout_ms),
        );
    }
    ctx.save(&ms);
    Ok(outcome(Outcome::Heartbeat(HeartbeatRecorded {
        cancel_requested: a.cancel_requested,
    })))
}

/// RequestCancelActivityTask from a workflow task; returns whether a task is needed now.
pub(super) fn request_cancel<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    scheduled_event_id: i64,
    wtc: i64,
) -> Result<bool> {
    let requested = ctx.append(
        ms,
        Attributes::ActivityTaskCancelRequested(ActivityTaskCancelRequested {
            scheduled_event_id,
            workflow_task_completed_event_id: wtc,
        }),
    );
    let a = find(ms, scheduled_event_id)
        .expect("validated: the activity is pending")
        .clone();
    if a.started {
        // The worker learns it from its next heartbeat and answers with RespondActivityTaskCanceled.
        let info = find_mut(ms, scheduled_event_id).expect("pending");
        info.cancel_requested = true;
        info.cancel_requested_event_id = requested;
        return Ok(false);
    }
    ms.activities
        .retain(|x| x.scheduled_event_id != scheduled_event_id);
    ctx.disarm(ms, |d| is_activity_deadline(d, scheduled_event_id));
    ctx.append(
        ms,
        Attributes::ActivityTaskCanceled(ActivityTaskCanceled {
            details: Vec::new(),
            latest_cancel_requested_event_id: requested,
            scheduled_event_id,
            started_event_id: 0,
            identity: String::new(),
        }),
    );
    Ok(true)
}

/// RespondActivityTaskCanceled.
pub(super) fn canceled<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &CancelActivityTask,
) -> Result<WorkflowOutcome> {
    let Some((mut ms, a)) = attempt_for(ctx, &c.token)? else {
        return Ok(not_found("activity task not found"));
    };
    finish(
        ctx,
        &mut ms,
        &a,
        Attributes::ActivityTaskCanceled(ActivityTaskCanceled {
            details: c.details.clone(),
            latest_cancel_requested_event_id: a.cancel_requested_event_id,
            scheduled_event_id: a.scheduled_event_id,
            started_event_id: 0,
            identity: c.identity.clone(),
        }),
    )?;
    ctx.save(&ms);
    Ok(accepted())
}

/// A retry backoff elapsed: the next attempt joins the backlog.
pub(super) fn retry_due<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    d: &Deadline,
) -> Result<()> {
    match find(ms, d.event_id) {
        Some(a) if a.attempt == d.attempt && !a.started && is_running(ms) => {
            enqueue_attempt(ctx, ms, d.event_id)
        }
        _ => Ok(()),
    }
}

/// One of the four activity timeouts fired.
pub(super) fn timed_out<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &mut MutableState,
    d: &Deadline,
    kind: DeadlineKind,
) -> Result<()> {
    let Some(a) = find(ms, d.event_id).cloned() else {
        return Ok(());
    };
    let (timeout_type, applies, retryable) = match kind {
        DeadlineKind::ActivityScheduleToStart => (
            TimeoutType::ScheduleToStart,
            !a.started && a.attempt == d.attempt,
            false,
        ),
        DeadlineKind::ActivityStartToClose => (
            TimeoutType::StartToClose,
            a.started && a.attempt == d.attempt,
            true,
        ),
        DeadlineKind::ActivityHeartbeat => (
            TimeoutType::Heartbeat,
            a.started && a.attempt == d.attempt,
            true,
        ),
        _ => (TimeoutType::ScheduleToClose, true, false),
    };
    if !applies {
        return Ok(());
    }
    if retryable {
        if let Ok(backoff) = next_backoff(&a, ctx.now_ms, false, "", 0) {
            retry_later(ctx, ms, a.scheduled_event_id, Vec::new(), backoff);
            return Ok(());
        }
    }
    let retry_state = if retryable {
        next_backoff(&a, ctx.now_ms, false, "", 0)
            .err()
            .unwrap_or(RetryState::Timeout)
    } else {
        RetryState::Timeout
    };
    finish(
        ctx,
        ms,
        &a,
        Attributes::ActivityTaskTimedOut(ActivityTaskTimedOut {
            timeout_type: timeout_type as i32,
            last_heartbeat_details: a.heartbeat_details.clone(),
            last_failure: a.last_failure.clone(),
            scheduled_event_id: a.scheduled_event_id,
            started_event_id: 0,
            retry_state: retry_state as i32,
        }),
    )
}
