//! Schedules: replicated records that start workflows at the times of their spec
//! ([`crate::schedule::spec`]) under Temporal's policies.
//!
//! A schedule's next action is one deadline in the same timers index as every run deadline,
//! under the pseudo-run (namespace, schedule id, empty run id) with kind
//! [`DeadlineKind::ScheduleAction`], so the leader's timer driver fires it with
//! `FireDeadline` and nothing about a schedule lives only in a leader's memory:
//! - a firing acts on every spec time after `processed_until_ms` whose (jittered) time has
//!   come, then moves `processed_until_ms` past them, in the same apply: a failover or a
//!   duplicate `FireDeadline` (its generation no longer matches) can neither repeat nor skip
//!   a time; times older than the catch-up window are counted as missed;
//! - what to start goes through a buffer that the overlap policy reads against the
//!   schedule's running workflows (SKIP, BUFFER_ONE, BUFFER_ALL, CANCEL_OTHER,
//!   TERMINATE_OTHER, ALLOW_ALL); a started run's chain notifies its schedule when it closes
//!   (`on_run_closed`), which starts what was buffered behind it and pauses on failure;
//! - started workflows get the id `<action workflow id>-<nominal time, RFC 3339>` and
//!   `TemporalScheduledById` / `TemporalScheduledStartTime`; their run ids derive from the
//!   schedule and its start count (deterministic, as apply must be).
//!
//! Manual actions (trigger immediately, backfills) run whatever the pause and the remaining
//! actions say, as in Temporal.

use prost::Message;

use super::apply::{deadline_key, decode, not_found, outcome, rejected, Ctx};
use super::model::workflow_outcome::Kind as Outcome;
use super::model::*;
use super::search::{json_payload, PayloadMap};
use crate::schedule::spec::{self, Spec};
use crate::{keys, ReadState, Result, StateStore};

/// Temporal's `ScheduleOverlapPolicy` numbering.
pub mod overlap {
    pub const UNSPECIFIED: i32 = 0;
    pub const SKIP: i32 = 1;
    pub const BUFFER_ONE: i32 = 2;
    pub const BUFFER_ALL: i32 = 3;
    pub const CANCEL_OTHER: i32 = 4;
    pub const TERMINATE_OTHER: i32 = 5;
    pub const ALLOW_ALL: i32 = 6;
}

/// Most recent actions a schedule remembers (Temporal's).
pub const MAX_RECENT: usize = 10;
/// Most starts waiting in a schedule's buffer (Temporal's); more are dropped and counted.
pub const MAX_BUFFER: usize = 1000;
/// Temporal's default catch-up window (one year).
pub const DEFAULT_CATCHUP_WINDOW_MS: u64 = 365 * 24 * 3_600_000;
/// Most spec times one firing looks at; the rest wait for the next firing (armed at once).
const MAX_TIMES_PER_FIRING: usize = 1000;
/// Temporal's `WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE`, which scheduled starts use.
const REUSE_ALLOW_DUPLICATE: i32 = 1;

/// What a schedule is: when (spec), what (a start template), how (policies) and its state.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScheduleDef {
    #[prost(message, optional, tag = "1")]
    pub spec: Option<Spec>,
    /// The start every action makes; its workflow id is the base of the started ids and its
    /// run id is unused.
    #[prost(message, optional, tag = "2")]
    pub action: Option<StartWorkflow>,
    /// [`overlap`]; unspecified is SKIP.
    #[prost(int32, tag = "3")]
    pub overlap_policy: i32,
    /// 0: [`DEFAULT_CATCHUP_WINDOW_MS`].
    #[prost(uint64, tag = "4")]
    pub catchup_window_ms: u64,
    #[prost(bool, tag = "5")]
    pub pause_on_failure: bool,
    #[prost(bool, tag = "6")]
    pub paused: bool,
    #[prost(string, tag = "7")]
    pub notes: String,
    #[prost(bool, tag = "8")]
    pub limited_actions: bool,
    #[prost(int64, tag = "9")]
    pub remaining_actions: i64,
    /// Temporal's `Schedule` message as the client sent it (specs normalized), returned by
    /// Describe with the live state laid over it. Apply never reads it.
    #[prost(bytes = "vec", tag = "10")]
    pub temporal: Vec<u8>,
}

/// Manual actions and pause changes (Temporal's `SchedulePatch`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SchedulePatch {
    #[prost(message, optional, tag = "1")]
    pub trigger: Option<TriggerNow>,
    #[prost(message, repeated, tag = "2")]
    pub backfills: Vec<Backfill>,
    /// Non-empty: pause, with this note.
    #[prost(string, tag = "3")]
    pub pause: String,
    /// Non-empty: unpause, with this note.
    #[prost(string, tag = "4")]
    pub unpause: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TriggerNow {
    #[prost(int32, tag = "1")]
    pub overlap_policy: i32,
    /// The nominal time the action is for (0: now).
    #[prost(uint64, tag = "2")]
    pub scheduled_time_ms: u64,
}

/// Every spec time in `start_ms..=end_ms`, acted on now.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Backfill {
    #[prost(uint64, tag = "1")]
    pub start_ms: u64,
    #[prost(uint64, tag = "2")]
    pub end_ms: u64,
    #[prost(int32, tag = "3")]
    pub overlap_policy: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateSchedule {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub schedule_id: String,
    #[prost(message, optional, tag = "3")]
    pub def: Option<ScheduleDef>,
    /// Encoded Temporal `Memo` of the schedule itself.
    #[prost(bytes = "vec", tag = "4")]
    pub memo: Vec<u8>,
    /// Encoded Temporal `SearchAttributes` of the schedule itself (validated at apply).
    #[prost(bytes = "vec", tag = "5")]
    pub search_attributes: Vec<u8>,
    /// A retry of the create that made the schedule answers it instead of ALREADY_EXISTS.
    #[prost(string, tag = "6")]
    pub request_id: String,
    #[prost(message, optional, tag = "7")]
    pub initial_patch: Option<SchedulePatch>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateSchedule {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub schedule_id: String,
    #[prost(message, optional, tag = "3")]
    pub def: Option<ScheduleDef>,
    /// When set, the update applies only if the schedule's token still equals it.
    #[prost(int64, optional, tag = "4")]
    pub conflict_token: Option<i64>,
    /// When set, replaces the schedule's search attributes.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub search_attributes: Option<Vec<u8>>,
    /// When set, replaces the schedule's memo.
    #[prost(bytes = "vec", optional, tag = "6")]
    pub memo: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PatchSchedule {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub schedule_id: String,
    #[prost(message, optional, tag = "3")]
    pub patch: Option<SchedulePatch>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteSchedule {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub schedule_id: String,
}

/// A start waiting for the overlap policy to let it go.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BufferedStart {
    #[prost(uint64, tag = "1")]
    pub nominal_ms: u64,
    #[prost(uint64, tag = "2")]
    pub actual_ms: u64,
    /// 0: the schedule's policy at the time it is processed.
    #[prost(int32, tag = "3")]
    pub overlap_policy: i32,
    /// Trigger-immediately or backfill.
    #[prost(bool, tag = "4")]
    pub manual: bool,
}

/// A workflow the schedule started whose chain has not closed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScheduledRun {
    #[prost(string, tag = "1")]
    pub workflow_id: String,
    /// The chain's first run.
    #[prost(string, tag = "2")]
    pub run_id: String,
    #[prost(bool, tag = "3")]
    pub cancel_requested: bool,
}

/// One action taken (Temporal's `ScheduleActionResult`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ActionResult {
    #[prost(uint64, tag = "1")]
    pub schedule_time_ms: u64,
    #[prost(uint64, tag = "2")]
    pub actual_time_ms: u64,
    #[prost(string, tag = "3")]
    pub workflow_id: String,
    #[prost(string, tag = "4")]
    pub run_id: String,
    /// The started chain's status as last known (`RunStatus`).
    #[prost(enumeration = "RunStatus", tag = "5")]
    pub status: i32,
}

/// A schedule's replicated record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScheduleRecord {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub schedule_id: String,
    #[prost(message, optional, tag = "3")]
    pub def: Option<ScheduleDef>,
    #[prost(bytes = "vec", tag = "4")]
    pub memo: Vec<u8>,
    /// Typed, as validated.
    #[prost(bytes = "vec", tag = "5")]
    pub search_attributes: Vec<u8>,
    #[prost(string, tag = "6")]
    pub request_id: String,
    /// Changes with every update (Temporal's conflict token).
    #[prost(int64, tag = "7")]
    pub conflict_token: i64,
    #[prost(uint64, tag = "8")]
    pub create_time_ms: u64,
    #[prost(uint64, tag = "9")]
    pub update_time_ms: u64,
    /// Every spec time up to this one (nominal) has been acted on, counted as missed, or
    /// passed while paused.
    #[prost(uint64, tag = "10")]
    pub processed_until_ms: u64,
    /// The armed next action, if any.
    #[prost(message, optional, tag = "11")]
    pub deadline: Option<Deadline>,
    /// Bumped at every arming: a stale `FireDeadline` matches no deadline.
    #[prost(int64, tag = "12")]
    pub generation: i64,
    #[prost(message, repeated, tag = "13")]
    pub buffered: Vec<BufferedStart>,
    #[prost(message, repeated, tag = "14")]
    pub running: Vec<ScheduledRun>,
    /// Newest last, at most [`MAX_RECENT`].
    #[prost(message, repeated, tag = "15")]
    pub recent: Vec<ActionResult>,
    #[prost(int64, tag = "16")]
    pub action_count: i64,
    #[prost(int64, tag = "17")]
    pub missed_catchup_window: i64,
    #[prost(int64, tag = "18")]
    pub overlap_skipped: i64,
    #[prost(int64, tag = "19")]
    pub buffer_dropped: i64,
    /// Starts attempted so far (seeds the started runs' ids).
    #[prost(uint64, tag = "20")]
    pub starts: u64,
    /// The last completed action's result, and the failure of the last failed action since
    /// (cleared by a completion): handed to every start, as Temporal does.
    #[prost(bytes = "vec", tag = "21")]
    pub last_completion_result: Vec<u8>,
    #[prost(bytes = "vec", tag = "22")]
    pub continued_failure: Vec<u8>,
}

impl ScheduleRecord {
    fn def(&self) -> &ScheduleDef {
        self.def
            .as_ref()
            .expect("a schedule record has its definition")
    }

    fn def_mut(&mut self) -> &mut ScheduleDef {
        self.def.get_or_insert_with(Default::default)
    }
}

/// The pseudo-run a schedule's deadline is armed under.
pub fn timer_run(namespace: &str, schedule_id: &str) -> RunKey {
    RunKey {
        namespace: namespace.to_string(),
        workflow_id: schedule_id.to_string(),
        run_id: String::new(),
    }
}

/// Reads a schedule.
pub fn read_schedule(
    store: &impl ReadState,
    namespace: &str,
    schedule_id: &str,
) -> Result<Option<ScheduleRecord>> {
    let key = keys::schedule(namespace, schedule_id);
    store.get(&key)?.map(|b| decode(&key, &b)).transpose()
}

fn save<S: StateStore>(ctx: &mut Ctx<'_, S>, rec: &ScheduleRecord) {
    ctx.store.put(
        &keys::schedule(&rec.namespace, &rec.schedule_id),
        &rec.encode_to_vec(),
    );
}

fn saved(rec: ScheduleRecord) -> WorkflowOutcome {
    outcome(Outcome::Schedule(rec))
}

/// Why a definition cannot be acted on, if it cannot.
fn invalid_def(def: &Option<ScheduleDef>) -> Option<String> {
    let Some(def) = def else {
        return Some("schedule: missing definition".into());
    };
    let Some(spec) = &def.spec else {
        return Some("schedule: missing spec".into());
    };
    if let Err(e) = spec::time_zone(spec) {
        return Some(e);
    }
    let Some(action) = &def.action else {
        return Some("schedule: missing action".into());
    };
    let base = action.run.as_ref().map_or("", |r| r.workflow_id.as_str());
    for (field, v) in [
        ("workflow_id", base),
        ("workflow_type", &action.workflow_type),
        ("task_queue", &action.task_queue),
    ] {
        if v.is_empty() {
            return Some(format!("schedule action: {field} must not be empty"));
        }
    }
    None
}

pub(super) fn create<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &CreateSchedule,
) -> Result<WorkflowOutcome> {
    if let Some(e) = invalid_def(&c.def) {
        return Ok(rejected(e));
    }
    let Some(ns) = super::apply::read_namespace(ctx.store, &c.namespace)? else {
        return Ok(not_found(format!("namespace {} not found", c.namespace)));
    };
    if let Some(existing) = read_schedule(ctx.store, &c.namespace, &c.schedule_id)? {
        if !c.request_id.is_empty() && existing.request_id == c.request_id {
            return Ok(saved(existing));
        }
        return Ok(outcome(Outcome::AlreadyExists(
            "schedule with this ID is already registered".into(),
        )));
    }
    let search_attributes =
        match super::search::validate(&ns.search_attributes, &c.search_attributes, &c.namespace) {
            Ok(typed) => super::search::initial(&typed),
            Err(e) => return Ok(rejected(e)),
        };
    let mut rec = ScheduleRecord {
        namespace: c.namespace.clone(),
        schedule_id: c.schedule_id.clone(),
        def: c.def.clone(),
        memo: c.memo.clone(),
        search_attributes,
        request_id: c.request_id.clone(),
        conflict_token: 1,
        create_time_ms: ctx.now_ms,
        update_time_ms: ctx.now_ms,
        processed_until_ms: ctx.now_ms,
        ..Default::default()
    };
    if let Some(p) = &c.initial_patch {
        apply_patch(ctx, &mut rec, p);
    }
    step(ctx, &mut rec)?;
    save(ctx, &rec);
    Ok(saved(rec))
}

pub(super) fn update<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &UpdateSchedule,
) -> Result<WorkflowOutcome> {
    if let Some(e) = invalid_def(&c.def) {
        return Ok(rejected(e));
    }
    let Some(mut rec) = read_schedule(ctx.store, &c.namespace, &c.schedule_id)? else {
        return Ok(not_found("schedule not found"));
    };
    if c.conflict_token.is_some_and(|t| t != rec.conflict_token) {
        return Ok(outcome(Outcome::Refused(Refusal {
            code: RefusalCode::FailedPrecondition as i32,
            message: "mismatched conflict token".into(),
        })));
    }
    if let Some(sa) = &c.search_attributes {
        let Some(ns) = super::apply::read_namespace(ctx.store, &c.namespace)? else {
            return Ok(not_found(format!("namespace {} not found", c.namespace)));
        };
        rec.search_attributes =
            match super::search::validate(&ns.search_attributes, sa, &c.namespace) {
                Ok(typed) => super::search::initial(&typed),
                Err(e) => return Ok(rejected(e)),
            };
    }
    if let Some(memo) = &c.memo {
        rec.memo = memo.clone();
    }
    rec.def = c.def.clone();
    rec.conflict_token += 1;
    rec.update_time_ms = ctx.now_ms;
    // A new spec acts from now on: times it would have had before the update are not due.
    rec.processed_until_ms = rec.processed_until_ms.max(ctx.now_ms);
    step(ctx, &mut rec)?;
    save(ctx, &rec);
    Ok(saved(rec))
}

pub(super) fn patch<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &PatchSchedule,
) -> Result<WorkflowOutcome> {
    let Some(mut rec) = read_schedule(ctx.store, &c.namespace, &c.schedule_id)? else {
        return Ok(not_found("schedule not found"));
    };
    if let Some(p) = &c.patch {
        apply_patch(ctx, &mut rec, p);
    }
    step(ctx, &mut rec)?;
    save(ctx, &rec);
    Ok(saved(rec))
}

pub(super) fn delete<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &DeleteSchedule,
) -> Result<WorkflowOutcome> {
    let Some(mut rec) = read_schedule(ctx.store, &c.namespace, &c.schedule_id)? else {
        return Ok(not_found("schedule not found"));
    };
    disarm(ctx, &mut rec);
    ctx.store
        .delete(&keys::schedule(&rec.namespace, &rec.schedule_id));
    Ok(super::apply::accepted())
}

/// The schedule's armed deadline fired (the timer driver's `FireDeadline`).
pub(super) fn fire<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &FireDeadline,
) -> Result<WorkflowOutcome> {
    let Some(run) = &c.run else {
        return Ok(rejected("fire deadline: missing run"));
    };
    let Some(mut rec) = read_schedule(ctx.store, &run.namespace, &run.workflow_id)? else {
        return Ok(not_found("no such schedule"));
    };
    let Some(d) = rec.deadline.clone().filter(|d| {
        d.kind == c.kind && d.event_id == c.event_id && d.attempt == c.attempt && d.name == c.name
    }) else {
        return Ok(not_found("deadline not pending"));
    };
    if d.fire_at_ms > ctx.now_ms {
        return Ok(rejected(format!(
            "deadline due at {} ms, entry time is {} ms",
            d.fire_at_ms, ctx.now_ms
        )));
    }
    step(ctx, &mut rec)?;
    save(ctx, &rec);
    Ok(super::apply::accepted())
}

/// A run's chain closed (called from `Ctx::close`, the run's state not yet saved): if a
/// schedule started it, the schedule records the status, pauses on failure when asked, and
/// starts what its overlap policy held back.
pub(super) fn on_run_closed<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    ms: &MutableState,
    status: RunStatus,
) -> Result<()> {
    if ms.scheduled_by.is_empty() || !ms.new_execution_run_id.is_empty() {
        return Ok(());
    }
    let run = ms.run.as_ref().expect("named run");
    let Some(mut rec) = read_schedule(ctx.store, &run.namespace, &ms.scheduled_by)? else {
        return Ok(()); // deleted since
    };
    let first = ms.chain_first_run_id().to_string();
    // The close event is the run's last.
    let last =
        super::apply::read_history(ctx.store, run, ms.next_event_id - 1, ms.next_event_id - 1)?;
    match last.into_iter().next().and_then(|e| e.attributes) {
        Some(Attributes::WorkflowExecutionCompleted(c)) => {
            rec.last_completion_result = c.result;
            rec.continued_failure.clear();
        }
        Some(Attributes::WorkflowExecutionFailed(f)) => rec.continued_failure = f.failure,
        _ => {}
    }
    for r in rec.recent.iter_mut() {
        if r.workflow_id == run.workflow_id && r.run_id == first {
            r.status = status as i32;
        }
    }
    let Some(pos) = rec
        .running
        .iter()
        .position(|r| r.workflow_id == run.workflow_id && r.run_id == first)
    else {
        save(ctx, &rec);
        return Ok(());
    };
    rec.running.remove(pos);
    if rec.def().pause_on_failure && matches!(status, RunStatus::Failed | RunStatus::TimedOut) {
        let def = rec.def_mut();
        def.paused = true;
        let status = if status == RunStatus::Failed {
            "Failed"
        } else {
            "TimedOut"
        };
        def.notes = format!(
            "paused due to workflow failure: {}: {status}",
            run.workflow_id
        );
    }
    process_buffer(ctx, &mut rec)?;
    arm(ctx, &mut rec, false);
    save(ctx, &rec);
    Ok(())
}

/// Trigger, backfills, then pause / unpause, as Temporal orders a patch.
fn apply_patch<S: StateStore>(ctx: &mut Ctx<'_, S>, rec: &mut ScheduleRecord, p: &SchedulePatch) {
    if let Some(t) = &p.trigger {
        let nominal = if t.scheduled_time_ms > 0 {
            t.scheduled_time_ms
        } else {
            ctx.now_ms
        };
        push_buffer(
            rec,
            BufferedStart {
                nominal_ms: nominal,
                actual_ms: ctx.now_ms,
                overlap_policy: t.overlap_policy,
                manual: true,
            },
        );
    }
    for b in &p.backfills {
        let spec = rec.def().spec.clone().unwrap_or_default();
        // Both ends inclusive (Temporal 1.24 on).
        let times = spec::times_between(
            &spec,
            &rec.schedule_id,
            b.start_ms.saturating_sub(1),
            b.end_ms,
            MAX_BUFFER,
        )
        .unwrap_or_default();
        for t in times {
            push_buffer(
                rec,
                BufferedStart {
                    nominal_ms: t.nominal_ms,
                    actual_ms: ctx.now_ms,
                    overlap_policy: b.overlap_policy,
                    manual: true,
                },
            );
        }
    }
    if !p.pause.is_empty() {
        let def = rec.def_mut();
        def.paused = true;
        def.notes = p.pause.clone();
    }
    if !p.unpause.is_empty() {
        let def = rec.def_mut();
        def.paused = false;
        def.notes = p.unpause.clone();
        // Times that passed while paused are not caught up.
        rec.processed_until_ms = rec.processed_until_ms.max(ctx.now_ms);
    }
}

fn push_buffer(rec: &mut ScheduleRecord, b: BufferedStart) {
    if rec.buffered.len() >= MAX_BUFFER {
        rec.buffer_dropped += 1;
    } else {
        rec.buffered.push(b);
    }
}

/// Takes the due spec times, starts what the overlap policy allows, re-arms.
fn step<S: StateStore>(ctx: &mut Ctx<'_, S>, rec: &mut ScheduleRecord) -> Result<()> {
    let more = take_due_times(ctx, rec);
    process_buffer(ctx, rec)?;
    arm(ctx, rec, more);
    Ok(())
}

/// Moves every spec time whose moment has come into the buffer (or counts it missed);
/// returns whether times are left for another firing.
fn take_due_times<S: StateStore>(ctx: &mut Ctx<'_, S>, rec: &mut ScheduleRecord) -> bool {
    let def = rec.def();
    if def.paused {
        rec.processed_until_ms = rec.processed_until_ms.max(ctx.now_ms);
        return false;
    }
    let (spec, limited) = (def.spec.clone().unwrap_or_default(), def.limited_actions);
    let window = match def.catchup_window_ms {
        0 => DEFAULT_CATCHUP_WINDOW_MS,
        w => w,
    };
    for _ in 0..MAX_TIMES_PER_FIRING {
        let Ok(Some(t)) = spec::next_after(&spec, &rec.schedule_id, rec.processed_until_ms) else {
            return false;
        };
        if t.actual_ms > ctx.now_ms {
            return false;
        }
        rec.processed_until_ms = t.nominal_ms;
        if ctx.now_ms - t.actual_ms > window {
            rec.missed_catchup_window += 1;
            continue;
        }
        if limited {
            let def = rec.def_mut();
            if def.remaining_actions <= 0 {
                continue;
            }
            def.remaining_actions -= 1;
        }
        push_buffer(
            rec,
            BufferedStart {
                nominal_ms: t.nominal_ms,
                actual_ms: t.actual_ms,
                overlap_policy: overlap::UNSPECIFIED,
                manual: false,
            },
        );
    }
    true
}

fn disarm<S: StateStore>(ctx: &mut Ctx<'_, S>, rec: &mut ScheduleRecord) {
    if let Some(d) = rec.deadline.take() {
        let run = timer_run(&rec.namespace, &rec.schedule_id);
        ctx.store.delete(&deadline_key(&run, &d));
    }
}

/// Arms the next action: at once when `more` times are due, else at the spec's next time;
/// none while paused, out of actions or past the spec's end.
fn arm<S: StateStore>(ctx: &mut Ctx<'_, S>, rec: &mut ScheduleRecord, more: bool) {
    disarm(ctx, rec);
    let def = rec.def();
    if def.paused || (def.limited_actions && def.remaining_actions <= 0) {
        return;
    }
    let at = if more {
        ctx.now_ms
    } else {
        let spec = def.spec.clone().unwrap_or_default();
        match spec::next_after(&spec, &rec.schedule_id, rec.processed_until_ms) {
            Ok(Some(t)) => t.actual_ms,
            _ => return,
        }
    };
    rec.generation += 1;
    let d = Deadline {
        kind: DeadlineKind::ScheduleAction as i32,
        event_id: rec.generation,
        attempt: 0,
        name: String::new(),
        fire_at_ms: at,
    };
    let run = timer_run(&rec.namespace, &rec.schedule_id);
    ctx.store.put(&deadline_key(&run, &d), &[]);
    ctx.effects
        .push(super::apply::Effect::DeadlineArmed { fire_at_ms: at });
    rec.deadline = Some(d);
}

/// What one pass over the buffer decided.
#[derive(Default)]
struct Plan {
    start: Vec<BufferedStart>,
    wait: Vec<BufferedStart>,
    cancel: bool,
    terminate: bool,
    skipped: i64,
    dropped: i64,
}

fn plan(rec: &ScheduleRecord) -> Plan {
    let mut p = Plan::default();
    let mut running = !rec.running.is_empty();
    let default = match rec.def().overlap_policy {
        overlap::UNSPECIFIED => overlap::SKIP,
        o => o,
    };
    for b in &rec.buffered {
        let policy = match b.overlap_policy {
            overlap::UNSPECIFIED => default,
            o => o,
        };
        if policy == overlap::ALLOW_ALL {
            p.start.push(b.clone());
            continue;
        }
        if !running {
            running = true;
            p.start.push(b.clone());
            continue;
        }
        match policy {
            overlap::BUFFER_ONE if p.wait.is_empty() => p.wait.push(b.clone()),
            overlap::BUFFER_ONE => p.dropped += 1,
            overlap::BUFFER_ALL => p.wait.push(b.clone()),
            overlap::CANCEL_OTHER => {
                p.cancel = true;
                p.wait.push(b.clone());
            }
            overlap::TERMINATE_OTHER => {
                p.terminate = true;
                p.wait.push(b.clone());
            }
            _ => p.skipped += 1, // SKIP (and unknown numbers, refused by the frontend)
        }
    }
    p
}

/// Starts what the overlap policy lets go; cancels or terminates what it says to.
fn process_buffer<S: StateStore>(ctx: &mut Ctx<'_, S>, rec: &mut ScheduleRecord) -> Result<()> {
    if rec.buffered.is_empty() {
        return Ok(());
    }
    let mut p = plan(rec);
    if p.terminate && p.start.is_empty() {
        terminate_running(ctx, rec)?;
        p = plan(rec);
    }
    rec.buffered = p.wait;
    rec.overlap_skipped += p.skipped;
    rec.buffer_dropped += p.dropped;
    for b in &p.start {
        start_action(ctx, rec, b)?;
    }
    if p.cancel {
        cancel_running(ctx, rec)?;
    }
    Ok(())
}

fn cancel_running<S: StateStore>(ctx: &mut Ctx<'_, S>, rec: &mut ScheduleRecord) -> Result<()> {
    for r in rec.running.iter_mut().filter(|r| !r.cancel_requested) {
        r.cancel_requested = true;
        super::start::request_cancel(
            ctx,
            &RequestCancelWorkflow {
                run: Some(RunKey {
                    namespace: rec.namespace.clone(),
                    workflow_id: r.workflow_id.clone(),
                    run_id: String::new(),
                }),
                first_execution_run_id: r.run_id.clone(),
                reason: "cancelled by the schedule's overlap policy".into(),
                identity: format!("schedule {}", rec.schedule_id),
                ..Default::default()
            },
        )?;
    }
    Ok(())
}

/// Terminates the running workflows. They leave `running` first (and the record is saved),
/// so their close notifications find nothing to do but record the status.
fn terminate_running<S: StateStore>(ctx: &mut Ctx<'_, S>, rec: &mut ScheduleRecord) -> Result<()> {
    let runs = std::mem::take(&mut rec.running);
    save(ctx, rec);
    for r in runs {
        super::start::terminate(
            ctx,
            &TerminateWorkflow {
                run: Some(RunKey {
                    namespace: rec.namespace.clone(),
                    workflow_id: r.workflow_id.clone(),
                    run_id: String::new(),
                }),
                first_execution_run_id: r.run_id.clone(),
                reason: "terminated by the schedule's overlap policy".into(),
                identity: format!("schedule {}", rec.schedule_id),
                ..Default::default()
            },
        )?;
    }
    if let Some(again) = read_schedule(ctx.store, &rec.namespace, &rec.schedule_id)? {
        rec.recent = again.recent;
    }
    Ok(())
}

/// Temporal's spelling of a nominal time in a started workflow id: RFC 3339, UTC, seconds.
pub fn id_time(ms: u64) -> String {
    chrono::DateTime::from_timestamp((ms / 1000) as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A run id for a schedule's `n`th start: UUIDv7-shaped (the entry time in its first 48
/// bits), the rest a hash of the schedule and `n` — deterministic, as apply must be, and
/// unique per schedule.
fn run_id(now_ms: u64, rec: &ScheduleRecord, n: u64) -> String {
    let parts: [&[u8]; 4] = [
        rec.namespace.as_bytes(),
        rec.schedule_id.as_bytes(),
        &rec.create_time_ms.to_be_bytes(),
        &n.to_be_bytes(),
    ];
    let h = spec::fnv1a(&parts);
    let g = spec::fnv1a(&[&h.to_be_bytes(), parts[0], parts[1], parts[2], parts[3]]);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    bytes[6..14].copy_from_slice(&h.to_be_bytes());
    bytes[14..].copy_from_slice(&g.to_be_bytes()[..2]);
    bytes[6] = 0x70 | (bytes[6] & 0x0f);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Starts one action: the template with the time-stamped workflow id, a derived run id
/// and the two scheduling search attributes. A workflow id still in use loses the action,
/// as in Temporal.
fn start_action<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    rec: &mut ScheduleRecord,
    b: &BufferedStart,
) -> Result<()> {
    let Some(mut cmd) = rec.def().action.clone() else {
        return Ok(());
    };
    rec.starts += 1;
    let base = cmd.run.as_ref().map_or("", |r| r.workflow_id.as_str());
    let workflow_id = format!("{base}-{}", id_time(b.nominal_ms));
    let run_id = run_id(ctx.now_ms, rec, rec.starts);
    let mut sa = super::search::decode_map(&cmd.search_attributes).unwrap_or_default();
    sa.fields.insert(
        "TemporalScheduledById".into(),
        json_payload(&serde_json::Value::String(rec.schedule_id.clone())).encode_to_vec(),
    );
    let start_time = chrono::DateTime::from_timestamp_millis(b.nominal_ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    sa.fields.insert(
        "TemporalScheduledStartTime".into(),
        json_payload(&serde_json::Value::String(start_time)).encode_to_vec(),
    );
    cmd.search_attributes = PayloadMap { fields: sa.fields }.encode_to_vec();
    cmd.run = Some(RunKey {
        namespace: rec.namespace.clone(),
        workflow_id: workflow_id.clone(),
        run_id: run_id.clone(),
    });
    cmd.request_id = run_id.clone();
    cmd.id_reuse_policy = REUSE_ALLOW_DUPLICATE;
    cmd.conflict_policy = 0;
    cmd.eager = false;
    cmd.scheduled_by = rec.schedule_id.clone();
    cmd.last_completion_result = rec.last_completion_result.clone();
    cmd.continued_failure = rec.continued_failure.clone();
    let out = super::start::start_workflow(ctx, &cmd)?;
    let Some(Outcome::Started(s)) = out.kind else {
        return Ok(());
    };
    if !s.started {
        return Ok(());
    }
    rec.action_count += 1;
    rec.running.push(ScheduledRun {
        workflow_id: workflow_id.clone(),
        run_id: s.run_id.clone(),
        cancel_requested: false,
    });
    rec.recent.push(ActionResult {
        schedule_time_ms: b.nominal_ms,
        actual_time_ms: ctx.now_ms,
        workflow_id,
        run_id: s.run_id,
        status: RunStatus::Running as i32,
    });
    if rec.recent.len() > MAX_RECENT {
        let extra = rec.recent.len() - MAX_RECENT;
        rec.recent.drain(..extra);
    }
    Ok(())
}
