//! Temporal's schedule RPCs: CreateSchedule, DescribeSchedule, UpdateSchedule, PatchSchedule,
//! DeleteSchedule, ListSchedules, ListScheduleMatchingTimes.
//!
//! A request's `Schedule` is validated and turned into the engine's definition
//! (`wf::scheduler::ScheduleDef`): every spelling of its times (structured calendars,
//! calendar strings, cron strings, intervals) into one `spec::Spec`, its start action into a
//! `StartWorkflow` template (the same checks as StartWorkflowExecution). The `Schedule` is
//! also kept as sent, with its specs normalized as Temporal does (calendar and cron strings
//! become structured calendars, `@every` an interval; a retry policy gets its defaults), so
//! Describe answers what the client wrote with the live state laid over it.

use keel_engine::command::Kind;
use keel_engine::keys;
use keel_engine::schedule::spec::{self, Spec};
use keel_engine::schedule::text::{self, Field};
use keel_engine::workflow::scheduler::{self as sch, ScheduleDef, ScheduleRecord};
use keel_engine::workflow::{self as wf, workflow_outcome::Kind as Outcome};
use keel_proto::prost_wkt_types::Timestamp;
use keel_proto::temporalio_protos::temporal::api::common::v1::{
    Memo, SearchAttributes, WorkflowExecution, WorkflowType,
};
use keel_proto::temporalio_protos::temporal::api::schedule::v1 as s;
use keel_proto::temporalio_protos::temporal::api::workflowservice::v1 as api;
use prost::Message;
use tonic::Status;

use crate::convert::{decoded, duration, duration_ms, encoded, opt_timestamp, timestamp};
use crate::service::Frontend;
use crate::status::{run_not_found, to_status};

/// How many future action times Describe and List show (Temporal's).
const FUTURE_TIMES: usize = 10;
/// Most schedules one ListSchedules page holds.
const MAX_LIST_PAGE: usize = 1000;
/// Most times ListScheduleMatchingTimes returns.
const MAX_MATCHING_TIMES: usize = 1000;
/// Temporal's longest schedule id.
const MAX_ID_LEN: usize = 1000;
/// Temporal's smallest catch-up window; shorter ones are raised to it.
const MIN_CATCHUP_WINDOW_MS: u64 = 10_000;

fn invalid(m: impl Into<String>) -> Status {
    Status::invalid_argument(m.into())
}

fn ts_ms(t: &Option<Timestamp>) -> u64 {
    t.as_ref().map_or(0, |t| {
        (t.seconds.max(0) as u64) * 1000 + (t.nanos.max(0) as u64) / 1_000_000
    })
}

fn to_range(r: &s::Range) -> spec::Range {
    spec::Range {
        start: r.start,
        end: r.end,
        step: r.step,
    }
}

fn from_range(r: &spec::Range) -> s::Range {
    s::Range {
        start: r.start,
        end: r.end,
        step: r.step,
    }
}

fn check_ranges(field: Field, ranges: &[s::Range]) -> Result<Vec<spec::Range>, Status> {
    ranges
        .iter()
        .map(|r| {
            let r = to_range(r);
            text::check_range(field, &r).map_err(invalid)?;
            Ok(r)
        })
        .collect()
}

fn calendar(c: &s::StructuredCalendarSpec) -> Result<spec::Calendar, Status> {
    Ok(spec::Calendar {
        second: check_ranges(Field::Second, &c.second)?,
        minute: check_ranges(Field::Minute, &c.minute)?,
        hour: check_ranges(Field::Hour, &c.hour)?,
        day_of_month: check_ranges(Field::DayOfMonth, &c.day_of_month)?,
        month: check_ranges(Field::Month, &c.month)?,
        year: check_ranges(Field::Year, &c.year)?,
        day_of_week: check_ranges(Field::DayOfWeek, &c.day_of_week)?,
    })
}

fn structured(c: &spec::Calendar, comment: String) -> s::StructuredCalendarSpec {
    let ranges = |v: &[spec::Range]| v.iter().map(from_range).collect();
    s::StructuredCalendarSpec {
        second: ranges(&c.second),
        minute: ranges(&c.minute),
        hour: ranges(&c.hour),
        day_of_month: ranges(&c.day_of_month),
        month: ranges(&c.month),
        year: ranges(&c.year),
        day_of_week: ranges(&c.day_of_week),
        comment,
    }
}

fn calendar_from_text(c: &s::CalendarSpec) -> Result<s::StructuredCalendarSpec, Status> {
    let f = |field, t: &str| text::parse_field(field, t).map_err(invalid);
    let cal = spec::Calendar {
        second: f(Field::Second, &c.second)?,
        minute: f(Field::Minute, &c.minute)?,
        hour: f(Field::Hour, &c.hour)?,
        day_of_month: f(Field::DayOfMonth, &c.day_of_month)?,
        month: f(Field::Month, &c.month)?,
        year: f(Field::Year, &c.year)?,
        day_of_week: f(Field::DayOfWeek, &c.day_of_week)?,
    };
    Ok(structured(&cal, c.comment.clone()))
}

/// Temporal's spec normalized (text spellings compiled) and the engine's spec it means.
// `exclude_calendar` is deprecated in favour of the structured form, and still accepted.
#[allow(deprecated)]
fn compile_spec(sp: &s::ScheduleSpec) -> Result<(s::ScheduleSpec, Spec), Status> {
    if !sp.timezone_data.is_empty() {
        return Err(invalid(
            "schedule spec timezone_data is not supported by this server yet (use timezone_name)",
        ));
    }
    let mut norm = sp.clone();
    norm.calendar.clear();
    norm.cron_string.clear();
    norm.exclude_calendar.clear();
    for c in &sp.calendar {
        norm.structured_calendar.push(calendar_from_text(c)?);
    }
    for c in &sp.exclude_calendar {
        norm.exclude_structured_calendar
            .push(calendar_from_text(c)?);
    }
    for c in &sp.cron_string {
        let parsed = text::parse_cron(c).map_err(invalid)?;
        if let Some(tz) = parsed.time_zone {
            if !norm.timezone_name.is_empty() && norm.timezone_name != tz {
                return Err(invalid(format!(
                    "cron string {c:?} names time zone {tz} and the spec names {}",
                    norm.timezone_name
                )));
            }
            norm.timezone_name = tz;
        }
        match parsed.cron {
            text::Cron::Calendar(cal, comment) => {
                norm.structured_calendar.push(structured(&cal, comment))
            }
            text::Cron::Interval(i) => norm.interval.push(s::IntervalSpec {
                interval: Some(duration(i.every_ms)),
                phase: (i.phase_ms > 0).then(|| duration(i.phase_ms)),
            }),
        }
    }
    let mut intervals = Vec::new();
    for i in &norm.interval {
        let negative = |d: &Option<keel_proto::prost_wkt_types::Duration>| {
            d.as_ref().is_some_and(|d| d.seconds < 0 || d.nanos < 0)
        };
        if negative(&i.interval) || negative(&i.phase) {
            return Err(invalid("schedule interval and phase must not be negative"));
        }
        let every_ms = duration_ms(&i.interval);
        if every_ms < 1000 {
            return Err(invalid("schedule interval must be at least one second"));
        }
        let phase_ms = duration_ms(&i.phase);
        if phase_ms >= every_ms {
            return Err(invalid(
                "schedule interval phase must be less than the interval",
            ));
        }
        intervals.push(spec::Interval { every_ms, phase_ms });
    }
    if sp
        .jitter
        .as_ref()
        .is_some_and(|d| d.seconds < 0 || d.nanos < 0)
    {
        return Err(invalid("schedule jitter must not be negative"));
    }
    let engine = Spec {
        calendars: norm
            .structured_calendar
            .iter()
            .map(calendar)
            .collect::<Result<_, _>>()?,
        intervals,
        exclusions: norm
            .exclude_structured_calendar
            .iter()
            .map(calendar)
            .collect::<Result<_, _>>()?,
        start_ms: ts_ms(&sp.start_time),
        end_ms: ts_ms(&sp.end_time),
        jitter_ms: duration_ms(&sp.jitter),
        time_zone: norm.timezone_name.clone(),
    };
    spec::time_zone(&engine).map_err(invalid)?;
    if engine.end_ms > 0 && engine.end_ms < engine.start_ms {
        return Err(invalid("schedule end time is before its start time"));
    }
    Ok((norm, engine))
}

/// The engine's definition of a `Schedule`, and the `Schedule` as Describe returns it.
fn definition(
    ns: &wf::NamespaceRecord,
    schedule: &Option<s::Schedule>,
) -> Result<ScheduleDef, Status> {
    let namespace = ns.name.as_str();
    let Some(schedule) = schedule else {
        return Err(invalid("schedule is required"));
    };
    let mut norm = schedule.clone();
    let (norm_spec, engine_spec) = compile_spec(&schedule.spec.clone().unwrap_or_default())?;
    norm.spec = Some(norm_spec);
    let Some(s::schedule_action::Action::StartWorkflow(mut info)) =
        schedule.action.as_ref().and_then(|a| a.action.clone())
    else {
        return Err(invalid("schedule action is required (start_workflow)"));
    };
    if info.versioning_override.is_some() {
        return Err(invalid(
            "schedule action versioning_override is not supported by this server yet",
        ));
    }
    if let Some(p) = info.retry_policy.as_mut() {
        // Temporal's defaults, filled in so Describe shows what applies.
        if duration_ms(&p.initial_interval) == 0 {
            p.initial_interval = Some(duration(1000));
        }
        if p.backoff_coefficient == 0.0 {
            p.backoff_coefficient = 2.0;
        }
        if duration_ms(&p.maximum_interval) == 0 {
            p.maximum_interval = Some(duration(100 * duration_ms(&p.initial_interval)));
        }
    }
    // Typed as Temporal stores them (each value's `type` metadata), so Describe shows the
    // types even of attributes the client sent untyped.
    if let Some(sa) = &info.search_attributes {
        let typed = wf::search::validate(&ns.search_attributes, &sa.encode_to_vec(), namespace)
            .map_err(invalid)?;
        info.search_attributes = decoded::<SearchAttributes>(&typed);
    }
    norm.action = Some(s::ScheduleAction {
        action: Some(s::schedule_action::Action::StartWorkflow(info.clone())),
    });
    let start = api::StartWorkflowExecutionRequest {
        namespace: namespace.to_string(),
        workflow_id: info.workflow_id.clone(),
        workflow_type: info.workflow_type.clone(),
        task_queue: info.task_queue.clone(),
        input: info.input.clone(),
        workflow_execution_timeout: info.workflow_execution_timeout,
        workflow_run_timeout: info.workflow_run_timeout,
        workflow_task_timeout: info.workflow_task_timeout,
        workflow_id_reuse_policy: info.workflow_id_reuse_policy,
        retry_policy: info.retry_policy.clone(),
        cron_schedule: info.cron_schedule.clone(),
        memo: info.memo.clone(),
        search_attributes: info.search_attributes.clone(),
        header: info.header.clone(),
        user_metadata: info.user_metadata.clone(),
        priority: info.priority,
        request_id: String::new(),
        ..Default::default()
    };
    let action = crate::service::start_command(&start)?;
    let policies = schedule.policies.unwrap_or_default();
    overlap_ok(policies.overlap_policy)?;
    if policies.keep_original_workflow_id {
        return Err(invalid(
            "schedule policy keep_original_workflow_id is not supported by this server yet",
        ));
    }
    let catchup = match duration_ms(&policies.catchup_window) {
        0 => 0,
        w => w.max(MIN_CATCHUP_WINDOW_MS),
    };
    let state = schedule.state.clone().unwrap_or_default();
    Ok(ScheduleDef {
        spec: Some(engine_spec),
        action: Some(action),
        overlap_policy: policies.overlap_policy,
        catchup_window_ms: catchup,
        pause_on_failure: policies.pause_on_failure,
        paused: state.paused,
        notes: state.notes,
        limited_actions: state.limited_actions,
        remaining_actions: state.remaining_actions,
        temporal: norm.encode_to_vec(),
    })
}

fn overlap_ok(policy: i32) -> Result<i32, Status> {
    if (0..=6).contains(&policy) {
        Ok(policy)
    } else {
        Err(invalid(format!("unknown schedule overlap policy {policy}")))
    }
}

fn patch(p: &Option<s::SchedulePatch>) -> Result<Option<sch::SchedulePatch>, Status> {
    let Some(p) = p else { return Ok(None) };
    if !p.pause.is_empty() && !p.unpause.is_empty() {
        return Err(invalid("a schedule patch cannot both pause and unpause"));
    }
    let trigger = match &p.trigger_immediately {
        Some(t) => Some(sch::TriggerNow {
            overlap_policy: overlap_ok(t.overlap_policy)?,
            scheduled_time_ms: ts_ms(&t.scheduled_time),
        }),
        None => None,
    };
    let backfills = p
        .backfill_request
        .iter()
        .map(|b| {
            let (start_ms, end_ms) = (ts_ms(&b.start_time), ts_ms(&b.end_time));
            if b.start_time.is_none() || b.end_time.is_none() || end_ms < start_ms {
                return Err(invalid(
                    "a backfill needs a start time and an end time not before it",
                ));
            }
            Ok(sch::Backfill {
                start_ms,
                end_ms,
                overlap_policy: overlap_ok(b.overlap_policy)?,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(sch::SchedulePatch {
        trigger,
        backfills,
        pause: p.pause.clone(),
        unpause: p.unpause.clone(),
    }))
}

fn check_id(namespace: &str, id: &str) -> Result<(), Status> {
    if namespace.is_empty() {
        return Err(invalid("namespace is required"));
    }
    if id.is_empty() {
        return Err(invalid("schedule_id is required"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(invalid("schedule_id exceeds length limit"));
    }
    Ok(())
}

fn token_bytes(t: i64) -> Vec<u8> {
    t.to_be_bytes().to_vec()
}

fn not_found() -> Status {
    run_not_found("schedule not found".into())
}

/// The outcome of a create, update or patch.
fn saved(o: Outcome) -> Result<ScheduleRecord, Status> {
    match o {
        Outcome::Schedule(rec) => Ok(rec),
        Outcome::AlreadyExists(m) => Err(crate::status::schedule_exists(m)),
        Outcome::NotFound(m) if m.starts_with("namespace") => Err(Status::not_found(m)),
        Outcome::NotFound(_) => Err(not_found()),
        Outcome::InvalidArgument(m) => Err(invalid(m)),
        Outcome::Refused(r) => Err(Status::failed_precondition(r.message)),
        other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
    }
}

fn action_result(a: &sch::ActionResult) -> s::ScheduleActionResult {
    s::ScheduleActionResult {
        schedule_time: Some(timestamp(a.schedule_time_ms)),
        actual_time: Some(timestamp(a.actual_time_ms)),
        start_workflow_result: Some(WorkflowExecution {
            workflow_id: a.workflow_id.clone(),
            run_id: a.run_id.clone(),
        }),
        start_workflow_status: a.status,
    }
}

/// The schedule's next action times from `now_ms` (at most [`FUTURE_TIMES`], fewer when its
/// remaining actions are fewer).
fn future_times(rec: &ScheduleRecord, now_ms: u64) -> Vec<Timestamp> {
    let Some(def) = &rec.def else {
        return Vec::new();
    };
    let mut n = FUTURE_TIMES;
    if def.limited_actions {
        n = n.min(def.remaining_actions.max(0) as usize);
    }
    let spec = def.spec.clone().unwrap_or_default();
    let from = now_ms.max(rec.processed_until_ms);
    spec::times_between(&spec, &rec.schedule_id, from, u64::MAX, n)
        .unwrap_or_default()
        .into_iter()
        .map(|t| timestamp(t.actual_ms))
        .collect()
}

/// The `Schedule` as sent, with the live state laid over it.
fn schedule_of(rec: &ScheduleRecord) -> s::Schedule {
    let def = rec.def.clone().unwrap_or_default();
    let mut schedule = s::Schedule::decode(def.temporal.as_slice()).unwrap_or_default();
    schedule.state = Some(s::ScheduleState {
        notes: def.notes,
        paused: def.paused,
        limited_actions: def.limited_actions,
        remaining_actions: def.remaining_actions,
    });
    schedule
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The schedule as a visibility row, for ListSchedules' query: its id as `WorkflowId`, its
/// action's type, its search attributes plus `TemporalSchedulePaused`.
fn as_row(rec: &ScheduleRecord) -> wf::VisibilityRecord {
    let def = rec.def.clone().unwrap_or_default();
    let mut sa = wf::search::decode_map(&rec.search_attributes).unwrap_or_default();
    sa.fields.insert(
        "TemporalSchedulePaused".into(),
        wf::search::json_payload(&serde_json::Value::Bool(def.paused)).encode_to_vec(),
    );
    wf::VisibilityRecord {
        workflow_id: rec.schedule_id.clone(),
        workflow_type: def
            .action
            .as_ref()
            .map(|a| a.workflow_type.clone())
            .unwrap_or_default(),
        status: wf::RunStatus::Running as i32,
        start_time_ms: rec.create_time_ms,
        search_attributes: sa.encode_to_vec(),
        memo: rec.memo.clone(),
        ..Default::default()
    }
}

impl Frontend {
    fn read_schedule(&self, namespace: &str, id: &str) -> Result<ScheduleRecord, Status> {
        sch::read_schedule(self.node().state(), namespace, id)
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(not_found)
    }

    pub(crate) async fn create_schedule(
        &self,
        r: api::CreateScheduleRequest,
    ) -> Result<api::CreateScheduleResponse, Status> {
        check_id(&r.namespace, &r.schedule_id)?;
        let ns = self.require_namespace(&r.namespace)?;
        crate::validate::request_id(&r.request_id)?;
        let def = definition(&ns, &r.schedule)?;
        let rec = saved(
            self.propose(Kind::CreateSchedule(sch::CreateSchedule {
                namespace: r.namespace.clone(),
                schedule_id: r.schedule_id.clone(),
                def: Some(def),
                memo: encoded(&r.memo),
                search_attributes: encoded(&r.search_attributes),
                request_id: if r.request_id.is_empty() {
                    crate::service::new_uuid()
                } else {
                    r.request_id.clone()
                },
                initial_patch: patch(&r.initial_patch)?,
            }))
            .await?,
        )?;
        Ok(api::CreateScheduleResponse {
            conflict_token: token_bytes(rec.conflict_token),
        })
    }

    pub(crate) async fn describe_schedule(
        &self,
        r: api::DescribeScheduleRequest,
    ) -> Result<api::DescribeScheduleResponse, Status> {
        check_id(&r.namespace, &r.schedule_id)?;
        self.require_namespace(&r.namespace)?;
        self.node().linearize().await.map_err(to_status)?;
        let rec = self.read_schedule(&r.namespace, &r.schedule_id)?;
        let info = s::ScheduleInfo {
            action_count: rec.action_count,
            missed_catchup_window: rec.missed_catchup_window,
            overlap_skipped: rec.overlap_skipped,
            buffer_dropped: rec.buffer_dropped,
            buffer_size: rec.buffered.len() as i64,
            running_workflows: rec
                .running
                .iter()
                .map(|r| WorkflowExecution {
                    workflow_id: r.workflow_id.clone(),
                    run_id: r.run_id.clone(),
                })
                .collect(),
            recent_actions: rec.recent.iter().map(action_result).collect(),
            future_action_times: future_times(&rec, now_ms()),
            create_time: opt_timestamp(rec.create_time_ms),
            update_time: (rec.update_time_ms > rec.create_time_ms)
                .then(|| timestamp(rec.update_time_ms)),
            ..Default::default()
        };
        Ok(api::DescribeScheduleResponse {
            schedule: Some(schedule_of(&rec)),
            info: Some(info),
            memo: decoded::<Memo>(&rec.memo),
            search_attributes: decoded::<SearchAttributes>(&rec.search_attributes),
            conflict_token: token_bytes(rec.conflict_token),
        })
    }

    pub(crate) async fn update_schedule(
        &self,
        r: api::UpdateScheduleRequest,
    ) -> Result<api::UpdateScheduleResponse, Status> {
        check_id(&r.namespace, &r.schedule_id)?;
        let ns = self.require_namespace(&r.namespace)?;
        let def = definition(&ns, &r.schedule)?;
        let conflict_token = match r.conflict_token.len() {
            0 => None,
            8 => Some(i64::from_be_bytes(
                r.conflict_token[..8].try_into().expect("8 bytes"),
            )),
            _ => return Err(Status::failed_precondition("mismatched conflict token")),
        };
        saved(
            self.propose(Kind::UpdateSchedule(sch::UpdateSchedule {
                namespace: r.namespace.clone(),
                schedule_id: r.schedule_id.clone(),
                def: Some(def),
                conflict_token,
                search_attributes: r.search_attributes.as_ref().map(Message::encode_to_vec),
                memo: r.memo.as_ref().map(Message::encode_to_vec),
            }))
            .await?,
        )?;
        Ok(api::UpdateScheduleResponse {})
    }

    pub(crate) async fn patch_schedule(
        &self,
        r: api::PatchScheduleRequest,
    ) -> Result<api::PatchScheduleResponse, Status> {
        check_id(&r.namespace, &r.schedule_id)?;
        self.require_namespace(&r.namespace)?;
        saved(
            self.propose(Kind::PatchSchedule(sch::PatchSchedule {
                namespace: r.namespace.clone(),
                schedule_id: r.schedule_id.clone(),
                patch: patch(&r.patch)?,
            }))
            .await?,
        )?;
        Ok(api::PatchScheduleResponse {})
    }

    pub(crate) async fn delete_schedule(
        &self,
        r: api::DeleteScheduleRequest,
    ) -> Result<api::DeleteScheduleResponse, Status> {
        check_id(&r.namespace, &r.schedule_id)?;
        self.require_namespace(&r.namespace)?;
        match self
            .propose(Kind::DeleteSchedule(sch::DeleteSchedule {
                namespace: r.namespace.clone(),
                schedule_id: r.schedule_id.clone(),
            }))
            .await?
        {
            Outcome::Accepted(_) => Ok(api::DeleteScheduleResponse {}),
            Outcome::NotFound(_) => Err(not_found()),
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    pub(crate) async fn list_schedules(
        &self,
        r: api::ListSchedulesRequest,
    ) -> Result<api::ListSchedulesResponse, Status> {
        let ns = self.require_namespace(&r.namespace)?;
        let filter = crate::visibility::parse(&r.query, &ns.search_attributes)
            .map_err(|m| invalid(format!("invalid query: {m}")))?;
        self.node().linearize().await.map_err(to_status)?;
        let want = match r.maximum_page_size {
            n if n <= 0 => MAX_LIST_PAGE,
            n => (n as usize).min(MAX_LIST_PAGE),
        };
        let prefix = keys::schedule_prefix(&r.namespace);
        if !r.next_page_token.is_empty() && !r.next_page_token.starts_with(&prefix) {
            return Err(invalid("malformed next_page_token"));
        }
        let from = if r.next_page_token.is_empty() {
            prefix.clone()
        } else {
            r.next_page_token.clone()
        };
        let now = now_ms();
        let mut schedules = Vec::new();
        let mut next_page_token = Vec::new();
        let mut cursor = from;
        'scan: loop {
            let rows = self
                .node()
                .state()
                .scan_from(&prefix, &cursor, 256)
                .map_err(to_status)?;
            let exhausted = rows.len() < 256;
            for (k, v) in &rows {
                if schedules.len() == want {
                    next_page_token = k.clone();
                    break 'scan;
                }
                let rec = ScheduleRecord::decode(v.as_slice())
                    .map_err(|e| Status::internal(format!("schedule record: {e}")))?;
                if !filter.matches(&as_row(&rec)) {
                    continue;
                }
                let def = rec.def.clone().unwrap_or_default();
                let schedule = schedule_of(&rec);
                schedules.push(s::ScheduleListEntry {
                    schedule_id: rec.schedule_id.clone(),
                    memo: decoded::<Memo>(&rec.memo),
                    search_attributes: decoded::<SearchAttributes>(&rec.search_attributes),
                    info: Some(s::ScheduleListInfo {
                        spec: schedule.spec,
                        workflow_type: def.action.as_ref().map(|a| WorkflowType {
                            name: a.workflow_type.clone(),
                        }),
                        notes: def.notes.clone(),
                        paused: def.paused,
                        recent_actions: rec.recent.iter().map(action_result).collect(),
                        future_action_times: future_times(&rec, now),
                        ..Default::default()
                    }),
                });
            }
            match rows.last() {
                Some((k, _)) if !exhausted => {
                    cursor = k.clone();
                    cursor.push(0);
                }
                _ => break,
            }
        }
        Ok(api::ListSchedulesResponse {
            schedules,
            next_page_token,
        })
    }

    pub(crate) async fn list_schedule_matching_times(
        &self,
        r: api::ListScheduleMatchingTimesRequest,
    ) -> Result<api::ListScheduleMatchingTimesResponse, Status> {
        check_id(&r.namespace, &r.schedule_id)?;
        self.require_namespace(&r.namespace)?;
        if r.start_time.is_none() || r.end_time.is_none() {
            return Err(invalid("start_time and end_time are required"));
        }
        self.node().linearize().await.map_err(to_status)?;
        let rec = self.read_schedule(&r.namespace, &r.schedule_id)?;
        let spec = rec.def.and_then(|d| d.spec).unwrap_or_default();
        let (start, end) = (ts_ms(&r.start_time), ts_ms(&r.end_time));
        let times = spec::times_between(
            &spec,
            &r.schedule_id,
            start.saturating_sub(1),
            end,
            MAX_MATCHING_TIMES,
        )
        .map_err(invalid)?;
        Ok(api::ListScheduleMatchingTimesResponse {
            start_time: times.iter().map(|t| timestamp(t.actual_ms)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: i32, end: i32, step: i32) -> s::Range {
        s::Range { start, end, step }
    }

    #[test]
    fn cron_and_calendar_strings_become_structured_calendars() {
        let sp = s::ScheduleSpec {
            cron_string: vec!["0 12 * * MON".into(), "@every 10m/1m".into()],
            calendar: vec![s::CalendarSpec {
                hour: "9-17/2".into(),
                day_of_week: "MON-FRI".into(),
                comment: "office".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (norm, engine) = compile_spec(&sp).unwrap();
        assert!(norm.cron_string.is_empty() && norm.calendar.is_empty());
        assert_eq!(norm.structured_calendar.len(), 2);
        let office = &norm.structured_calendar[0];
        assert_eq!(office.hour, vec![range(9, 17, 2)]);
        assert_eq!(office.comment, "office");
        let cron = &norm.structured_calendar[1];
        assert_eq!(cron.hour, vec![range(12, 12, 0)]);
        assert_eq!(cron.day_of_week, vec![range(1, 1, 0)]);
        assert_eq!(norm.interval.len(), 1);
        assert_eq!(engine.intervals[0].every_ms, 600_000);
        assert_eq!(engine.intervals[0].phase_ms, 60_000);
        assert_eq!(engine.calendars.len(), 2);
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        let bad = |sp: s::ScheduleSpec| compile_spec(&sp).unwrap_err().message().to_string();
        assert!(bad(s::ScheduleSpec {
            cron_string: vec!["* *".into()],
            ..Default::default()
        })
        .contains("fields"));
        assert!(bad(s::ScheduleSpec {
            structured_calendar: vec![s::StructuredCalendarSpec {
                hour: vec![range(25, 0, 0)],
                ..Default::default()
            }],
            ..Default::default()
        })
        .contains("hour"));
        assert!(bad(s::ScheduleSpec {
            timezone_name: "Mars/Olympus".into(),
            ..Default::default()
        })
        .contains("time zone"));
        assert!(bad(s::ScheduleSpec {
            interval: vec![s::IntervalSpec {
                interval: Some(duration(60_000)),
                phase: Some(duration(60_000)),
            }],
            ..Default::default()
        })
        .contains("phase"));
    }
}
