//! The workflow workload (jepsen-notes W1, W3, W4 and W5) through Temporal's
//! WorkflowService, with the generated gRPC client acting as both client and worker (no SDK in
//! the way).
//!
//! - Clients start workflows (unique ids and request ids) of three types and send unique
//!   signals to a few long-lived "collector" workflows. A plain workflow completes on its
//!   first task; a timer workflow first sleeps on a timer of 1–5 s; an activity workflow first
//!   runs one activity with retries and a short start-to-close timeout ([`super::activity`]).
//!   Every one of them completes with its own id as the result.
//! - Workers poll workflow tasks from random nodes and decide from the task's history, as an
//!   SDK would; collector tasks are completed with no commands.
//! - After the heal, final reads (with retries, within the recovery window) fetch every
//!   started workflow's outcome and every collector's history.
//!
//! Checkers: an acknowledged start is never lost and completes with its result; a failed
//! start left nothing; a workflow task is handed out at most once (by run, started event id
//! and attempt); each acknowledged signal appears exactly once, an indeterminate one at most
//! once, a failed one never, nothing unknown appears, and signals acknowledged one before the
//! other was sent appear in that order. Timers and activities have their own checkers
//! ([`super::timer`], [`super::activity`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use temporalio_protos::temporal::api::command::v1::{
    command::Attributes as CA, Command, CompleteWorkflowExecutionCommandAttributes,
    ScheduleActivityTaskCommandAttributes, StartTimerCommandAttributes,
};
use temporalio_protos::temporal::api::common::v1::{ActivityType, RetryPolicy};
use temporalio_protos::temporal::api::common::v1::{
    Payload, Payloads, WorkflowExecution, WorkflowType,
};
use temporalio_protos::temporal::api::enums::v1::CommandType;
use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;
use temporalio_protos::temporal::api::history::v1::HistoryEvent;
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1 as api;
use temporalio_protos::temporal::api::workflowservice::v1::workflow_service_client::WorkflowServiceClient;
use tonic::transport::Channel;

use crate::checker::CheckResult;
use crate::client::{classify, error_text, pace, Thread, OP_TIMEOUT};
use crate::history::{pairs, Op, OpType, Process, Recorder};
use crate::run::progress;

const NAMESPACE: &str = "default";
/// Temporal's "completed" execution status.
const STATUS_COMPLETED: i32 = 2;
/// Workers record under process ids from here, apart from client threads.
const WORKER_PROCESS_BASE: u64 = 1_000_000;
/// Workflow types the clients start.
pub const PLAIN: &str = "jepsen";
pub const TIMER: &str = "jepsen-timer";
pub const ACTIVITY: &str = "jepsen-activity";
/// The activity's start-to-close timeout; late answers come after it.
pub const ACTIVITY_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Attempts before the activity times out for good (the workflow completes either way).
const ACTIVITY_ATTEMPTS: i32 = 8;

/// Workflow workload settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub task_queue: String,
    pub id_prefix: String,
    pub collectors: u64,
    /// Bank accounts for the transfer sagas ([`super::bank`]).
    pub accounts: u64,
}

impl Options {
    fn collector(&self, k: u64) -> String {
        format!("{}-collector-{k}", self.id_prefix)
    }
    pub(crate) fn account(&self, k: u64) -> String {
        format!("{}-account-{k}", self.id_prefix)
    }
}

pub(crate) fn req<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

pub(crate) fn payload(s: &str) -> Payloads {
    Payloads {
        payloads: vec![Payload {
            data: s.as_bytes().to_vec(),
            ..Default::default()
        }],
    }
}

pub(crate) fn payload_text(p: &Option<Payloads>) -> Option<String> {
    p.as_ref()?
        .payloads
        .first()
        .map(|p| String::from_utf8_lossy(&p.data).into_owned())
}

fn duration(d: Duration) -> keel_proto::prost_wkt_types::Duration {
    keel_proto::prost_wkt_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn start_request(
    opts: &Options,
    wid: &str,
    wtype: &str,
    request_id: &str,
) -> api::StartWorkflowExecutionRequest {
    api::StartWorkflowExecutionRequest {
        namespace: NAMESPACE.into(),
        workflow_id: wid.into(),
        workflow_type: Some(WorkflowType { name: wtype.into() }),
        task_queue: Some(TaskQueue {
            name: opts.task_queue.clone(),
            kind: 1,
            ..Default::default()
        }),
        identity: "keel-jepsen".into(),
        request_id: request_id.into(),
        workflow_task_timeout: Some(keel_proto::prost_wkt_types::Duration {
            seconds: 4,
            nanos: 0,
        }),
        ..Default::default()
    }
}

pub(crate) fn client_for(ch: &Channel) -> WorkflowServiceClient<Channel> {
    WorkflowServiceClient::new(ch.clone())
}

/// Waits for the `default` namespace and starts the collector and account workflows (both
/// passive: their tasks complete with no commands; their histories are what is checked).
pub async fn setup(opts: &Options, channels: &BTreeMap<u64, Channel>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let ch = channels.values().next().expect("a node");
    let passive = (0..opts.collectors)
        .map(|k| opts.collector(k))
        .chain((0..opts.accounts).map(|k| opts.account(k)));
    for wid in passive {
        loop {
            let r = client_for(ch)
                .start_workflow_execution(req(
                    start_request(opts, &wid, "collector", &format!("{wid}-start")),
                    OP_TIMEOUT,
                ))
                .await;
            match r {
                Ok(_) => break,
                Err(s) if Instant::now() < deadline => {
                    progress!("setup: starting {wid}: {}", error_text(&s));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(s) => anyhow::bail!("setup: could not start {wid}: {}", error_text(&s)),
            }
        }
    }
    Ok(())
}

/// One client thread: starts workflows and sends signals until `stop`.
pub async fn client(
    mut thread: Thread,
    opts: Options,
    channels: BTreeMap<u64, Channel>,
    rec: Recorder,
    seed: u64,
    rate: f64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed ^ thread.index.wrapping_mul(0x2545_f491));
    let nodes: Vec<u64> = channels.keys().copied().collect();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        pace(rate, thread.concurrency, &mut rng).await;
        n += 1;
        let node = nodes[rng.random_range(0..nodes.len())];
        let mut c = client_for(&channels[&node]);
        if rng.random_bool(0.5) {
            let wid = format!("{}-w{}-{n}", opts.id_prefix, thread.index);
            let request_id = format!("{wid}-r");
            let (wtype, timer_ms, transfer) = match rng.random_range(0..10) {
                0 | 1 => (TIMER, Some(rng.random_range(1_000..=5_000u64)), None),
                2 | 3 => (ACTIVITY, None, None),
                4 | 5 if opts.accounts >= 2 => {
                    let from = rng.random_range(0..opts.accounts);
                    let to = (from + rng.random_range(1..opts.accounts)) % opts.accounts;
                    let t = super::bank::Transfer {
                        from: opts.account(from),
                        to: opts.account(to),
                        amount: rng.random_range(1..=50u64),
                    };
                    (super::bank::TRANSFER, None, Some(t))
                }
                _ => (PLAIN, None, None),
            };
            let args = json!({"wid": wid, "request_id": request_id, "type": wtype,
                              "timer_ms": timer_ms, "transfer": transfer});
            rec.record(
                thread.proc(),
                OpType::Invoke,
                "start",
                args.clone(),
                Some(node),
                None,
            );
            let mut start = start_request(&opts, &wid, wtype, &request_id);
            start.input = match (&timer_ms, &transfer) {
                (Some(ms), _) => Some(payload(&ms.to_string())),
                (_, Some(t)) => Some(payload(&serde_json::to_string(t).expect("json"))),
                _ => None,
            };
            match c.start_workflow_execution(req(start, OP_TIMEOUT)).await {
                Ok(r) => {
                    let mut v = args;
                    v["run_id"] = json!(r.into_inner().run_id);
                    thread.complete(&rec, OpType::Ok, "start", v, node, None);
                }
                Err(s) => thread.fail(&rec, "start", args, node, &s, true),
            }
        } else {
            let k = rng.random_range(0..opts.collectors);
            let wid = opts.collector(k);
            let value = format!("s{}-{n}", thread.index);
            let args = json!({"wid": wid, "value": value});
            rec.record(
                thread.proc(),
                OpType::Invoke,
                "signal",
                args.clone(),
                Some(node),
                None,
            );
            let r = c
                .signal_workflow_execution(req(
                    api::SignalWorkflowExecutionRequest {
                        namespace: NAMESPACE.into(),
                        workflow_execution: Some(WorkflowExecution {
                            workflow_id: wid.clone(),
                            run_id: String::new(),
                        }),
                        signal_name: "jepsen".into(),
                        input: Some(payload(&value)),
                        identity: "keel-jepsen".into(),
                        request_id: format!("{wid}-{value}"),
                        ..Default::default()
                    },
                    OP_TIMEOUT,
                ))
                .await;
            match r {
                Ok(_) => thread.complete(&rec, OpType::Ok, "signal", args, node, None),
                Err(s) => thread.fail(&rec, "signal", args, node, &s, true),
            }
        }
    }
}

/// One worker: polls workflow tasks and completes them until `stop`.
pub async fn worker(
    i: u64,
    opts: Options,
    channels: BTreeMap<u64, Channel>,
    rec: Recorder,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x3077 ^ i);
    let nodes: Vec<u64> = channels.keys().copied().collect();
    let mut process = WORKER_PROCESS_BASE + i;
    let identity = format!("keel-jepsen-worker-{i}");
    while !stop.load(Ordering::Relaxed) {
        let node = nodes[rng.random_range(0..nodes.len())];
        let mut c = client_for(&channels[&node]);
        let poll = c
            .poll_workflow_task_queue(req(
                api::PollWorkflowTaskQueueRequest {
                    namespace: NAMESPACE.into(),
                    task_queue: Some(TaskQueue {
                        name: opts.task_queue.clone(),
                        kind: 1,
                        ..Default::default()
                    }),
                    identity: identity.clone(),
                    ..Default::default()
                },
                Duration::from_secs(3),
            ))
            .await;
        let task = match poll {
            Ok(t) => t.into_inner(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if task.task_token.is_empty() {
            continue;
        }
        let exec = task.workflow_execution.clone().unwrap_or_default();
        let wtype = task.workflow_type.clone().unwrap_or_default().name;
        let events = task
            .history
            .as_ref()
            .map(|h| h.events.as_slice())
            .unwrap_or(&[]);
        let (commands, note) = decide(&wtype, &exec.workflow_id, &opts.task_queue, events);
        let mut handed = json!({"wid": exec.workflow_id, "run_id": exec.run_id,
                            "started": task.started_event_id, "attempt": task.attempt, "type": wtype});
        if note["timer_fired"] == json!(true) {
            handed["timer_fired"] = json!(true);
        }
        rec.record(
            Process::Client(process),
            OpType::Invoke,
            "poll",
            json!({}),
            Some(node),
            None,
        );
        rec.record(
            Process::Client(process),
            OpType::Ok,
            "poll",
            handed,
            Some(node),
            None,
        );
        let mut args = json!({"wid": exec.workflow_id, "run_id": exec.run_id, "started": task.started_event_id});
        if let Some(cmd) = note.get("cmd") {
            args["cmd"] = cmd.clone();
            args["timer_ms"] = note["timer_ms"].clone();
        }
        let node = nodes[rng.random_range(0..nodes.len())];
        let mut c = client_for(&channels[&node]);
        rec.record(
            Process::Client(process),
            OpType::Invoke,
            "complete",
            args.clone(),
            Some(node),
            None,
        );
        let r = c
            .respond_workflow_task_completed(req(
                api::RespondWorkflowTaskCompletedRequest {
                    task_token: task.task_token,
                    identity: identity.clone(),
                    namespace: NAMESPACE.into(),
                    commands,
                    ..Default::default()
                },
                OP_TIMEOUT,
            ))
            .await;
        let kind = match &r {
            Ok(_) => OpType::Ok,
            Err(s) => classify(s, true),
        };
        rec.record(
            Process::Client(process),
            kind,
            "complete",
            args,
            Some(node),
            r.err().map(|s| error_text(&s)),
        );
        if kind == OpType::Info {
            process += 1000;
        }
    }
}

fn command(t: CommandType, a: CA) -> Command {
    Command {
        command_type: t as i32,
        attributes: Some(a),
        ..Default::default()
    }
}

pub(crate) fn complete(wid: &str) -> Command {
    command(
        CommandType::CompleteWorkflowExecution,
        CA::CompleteWorkflowExecutionCommandAttributes(
            CompleteWorkflowExecutionCommandAttributes {
                result: Some(payload(wid)),
            },
        ),
    )
}

/// ScheduleActivityTask with the workload's timeouts: 1 s start-to-close, retries from
/// 100 ms doubling to 1 s, `attempts` at most (0: unlimited).
pub(crate) fn schedule_activity(
    activity_id: &str,
    activity_type: &str,
    task_queue: &str,
    input: Option<Payloads>,
    attempts: i32,
) -> Command {
    command(
        CommandType::ScheduleActivityTask,
        CA::ScheduleActivityTaskCommandAttributes(ScheduleActivityTaskCommandAttributes {
            activity_id: activity_id.into(),
            activity_type: Some(ActivityType {
                name: activity_type.into(),
            }),
            task_queue: Some(TaskQueue {
                name: task_queue.into(),
                kind: 1,
                ..Default::default()
            }),
            input,
            start_to_close_timeout: Some(duration(ACTIVITY_TIMEOUT)),
            retry_policy: Some(RetryPolicy {
                initial_interval: Some(duration(Duration::from_millis(100))),
                backoff_coefficient: 2.0,
                maximum_interval: Some(duration(Duration::from_secs(1))),
                maximum_attempts: attempts,
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
}

/// A workflow task's commands, decided from its history as an SDK would (Keel hands out the
/// full history: no sticky queues), and a note for the history: `{"timer_fired": true}` when
/// the task shows a fired timer, `{"cmd": "start-timer", "timer_ms": D}` when it starts one.
fn decide(
    wtype: &str,
    wid: &str,
    task_queue: &str,
    events: &[HistoryEvent],
) -> (Vec<Command>, serde_json::Value) {
    let has = |f: fn(&EA) -> bool| events.iter().any(|e| e.attributes.as_ref().is_some_and(f));
    match wtype {
        PLAIN => (vec![complete(wid)], json!({})),
        TIMER => {
            if has(|a| matches!(a, EA::TimerFiredEventAttributes(_))) {
                (vec![complete(wid)], json!({"timer_fired": true}))
            } else if has(|a| matches!(a, EA::TimerStartedEventAttributes(_))) {
                (Vec::new(), json!({}))
            } else {
                let ms: u64 = events
                    .iter()
                    .find_map(|e| match &e.attributes {
                        Some(EA::WorkflowExecutionStartedEventAttributes(a)) => {
                            payload_text(&a.input)?.parse().ok()
                        }
                        _ => None,
                    })
                    .unwrap_or(1_000);
                let start = command(
                    CommandType::StartTimer,
                    CA::StartTimerCommandAttributes(StartTimerCommandAttributes {
                        timer_id: "t".into(),
                        start_to_fire_timeout: Some(duration(Duration::from_millis(ms))),
                    }),
                );
                (vec![start], json!({"cmd": "start-timer", "timer_ms": ms}))
            }
        }
        ACTIVITY => {
            if has(|a| {
                matches!(
                    a,
                    EA::ActivityTaskCompletedEventAttributes(_)
                        | EA::ActivityTaskFailedEventAttributes(_)
                        | EA::ActivityTaskTimedOutEventAttributes(_)
                        | EA::ActivityTaskCanceledEventAttributes(_)
                )
            }) {
                (vec![complete(wid)], json!({}))
            } else if has(|a| matches!(a, EA::ActivityTaskScheduledEventAttributes(_))) {
                (Vec::new(), json!({}))
            } else {
                let schedule =
                    schedule_activity("a", "jepsen-act", task_queue, None, ACTIVITY_ATTEMPTS);
                (vec![schedule], json!({"cmd": "schedule-activity"}))
            }
        }
        super::bank::TRANSFER => (super::bank::decide(wid, task_queue, events), json!({})),
        _ => (Vec::new(), json!({})),
    }
}

/// What the final reads found for one started workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Found {
    /// NOT_FOUND.
    Absent,
    /// The current run: id, status, and, when completed, its result, how many TimerFired
    /// events and which activity outcome events its history holds.
    Run {
        run_id: String,
        status: i32,
        result: Option<String>,
        #[serde(default)]
        timers_fired: u32,
        #[serde(default)]
        activity_ends: Vec<ActivityEnd>,
    },
    /// No read succeeded.
    Unreadable(String),
}

/// An activity's outcome event: `completed` (with its result), `failed`, `timed-out` or
/// `canceled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityEnd {
    pub kind: String,
    pub result: Option<String>,
}

/// The final reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Final {
    pub workflows: BTreeMap<String, Found>,
    /// Collector → the signal values in history order (None: history unreadable).
    pub signals: BTreeMap<String, Option<Vec<String>>>,
    /// Account → the signal values in history order (None: history unreadable).
    #[serde(default)]
    pub accounts: BTreeMap<String, Option<Vec<String>>>,
}

async fn history(
    c: &mut WorkflowServiceClient<Channel>,
    wid: &str,
) -> Result<Vec<HistoryEvent>, tonic::Status> {
    let mut events = Vec::new();
    let mut token = Vec::new();
    loop {
        let page = c
            .get_workflow_execution_history(req(
                api::GetWorkflowExecutionHistoryRequest {
                    namespace: NAMESPACE.into(),
                    execution: Some(WorkflowExecution {
                        workflow_id: wid.into(),
                        run_id: String::new(),
                    }),
                    next_page_token: token,
                    ..Default::default()
                },
                OP_TIMEOUT,
            ))
            .await?
            .into_inner();
        events.extend(page.history.map(|h| h.events).unwrap_or_default());
        if page.next_page_token.is_empty() {
            return Ok(events);
        }
        token = page.next_page_token;
    }
}

async fn read_workflow(c: &mut WorkflowServiceClient<Channel>, wid: &str) -> Found {
    let d = c
        .describe_workflow_execution(req(
            api::DescribeWorkflowExecutionRequest {
                namespace: NAMESPACE.into(),
                execution: Some(WorkflowExecution {
                    workflow_id: wid.into(),
                    run_id: String::new(),
                }),
            },
            OP_TIMEOUT,
        ))
        .await;
    let info = match d {
        Ok(d) => d.into_inner().workflow_execution_info.unwrap_or_default(),
        Err(s) if s.code() == tonic::Code::NotFound => return Found::Absent,
        Err(s) => return Found::Unreadable(error_text(&s)),
    };
    let run_id = info.execution.map(|e| e.run_id).unwrap_or_default();
    let (mut result, mut timers_fired, mut activity_ends) = (None, 0, Vec::new());
    if info.status == STATUS_COMPLETED {
        let events = match history(c, wid).await {
            Ok(events) => events,
            Err(s) => return Found::Unreadable(error_text(&s)),
        };
        for e in &events {
            let end = |kind: &str, result: Option<String>| ActivityEnd {
                kind: kind.into(),
                result,
            };
            match &e.attributes {
                Some(EA::WorkflowExecutionCompletedEventAttributes(a)) => {
                    result = payload_text(&a.result)
                }
                Some(EA::TimerFiredEventAttributes(_)) => timers_fired += 1,
                Some(EA::ActivityTaskCompletedEventAttributes(a)) => {
                    activity_ends.push(end("completed", payload_text(&a.result)))
                }
                Some(EA::ActivityTaskFailedEventAttributes(_)) => {
                    activity_ends.push(end("failed", None))
                }
                Some(EA::ActivityTaskTimedOutEventAttributes(_)) => {
                    activity_ends.push(end("timed-out", None))
                }
                Some(EA::ActivityTaskCanceledEventAttributes(_)) => {
                    activity_ends.push(end("canceled", None))
                }
                _ => {}
            }
        }
    }
    Found::Run {
        run_id,
        status: info.status,
        result,
        timers_fired,
        activity_ends,
    }
}

fn settled(found: &Found, acked: bool) -> bool {
    match found {
        Found::Run { status, .. } => *status == STATUS_COMPLETED,
        Found::Absent => !acked,
        Found::Unreadable(_) => false,
    }
}

/// Reads every started workflow until each has settled (completed, or absent when its start
/// was not acknowledged) or `within` passes; then every collector's signals.
pub async fn final_reads(
    opts: &Options,
    channels: &BTreeMap<u64, Channel>,
    rec: &Recorder,
    within: Duration,
) -> Final {
    let ops = rec.snapshot();
    let mut pending: BTreeMap<String, bool> = BTreeMap::new();
    for p in pairs(&ops, |f| f == "start") {
        if let Some(w) = p.invoke.value["wid"].as_str() {
            if p.outcome() != OpType::Fail || !pending.contains_key(w) {
                pending.insert(w.to_string(), p.outcome() == OpType::Ok);
            }
        }
    }
    let deadline = Instant::now() + within;
    let nodes: Vec<Channel> = channels.values().cloned().collect();
    let mut fin = Final::default();
    let mut round = 0usize;
    loop {
        let mut still = BTreeMap::new();
        for (w, acked) in &pending {
            let mut c = client_for(&nodes[round % nodes.len()]);
            round += 1;
            let found = read_workflow(&mut c, w).await;
            if !settled(&found, *acked) {
                still.insert(w.clone(), *acked);
            }
            fin.workflows.insert(w.clone(), found);
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let passive = (0..opts.collectors)
        .map(|k| (true, opts.collector(k)))
        .chain((0..opts.accounts).map(|k| (false, opts.account(k))));
    for (is_collector, wid) in passive {
        let mut got = None;
        while got.is_none() && Instant::now() < deadline + Duration::from_secs(5) {
            let mut c = client_for(&nodes[round % nodes.len()]);
            round += 1;
            if let Ok(events) = history(&mut c, &wid).await {
                got = Some(
                    events
                        .iter()
                        .filter_map(|e| match &e.attributes {
                            Some(EA::WorkflowExecutionSignaledEventAttributes(a)) => {
                                payload_text(&a.input)
                            }
                            _ => None,
                        })
                        .collect(),
                );
            } else {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        if is_collector {
            fin.signals.insert(wid, got);
        } else {
            fin.accounts.insert(wid, got);
        }
    }
    fin
}

/// The workflow checkers.
pub fn check(ops: &[Op], fin: &Final) -> Vec<CheckResult> {
    vec![
        check_starts(ops, fin),
        check_tasks(ops),
        check_signals(ops, fin),
        super::timer::check(ops, fin),
        super::activity::check(ops, fin),
        super::bank::check(ops, fin),
    ]
}

/// Acknowledged starts are never lost and finish; failed starts leave nothing.
pub fn check_starts(ops: &[Op], fin: &Final) -> CheckResult {
    let mut r = CheckResult::new("workflow-starts");
    for p in pairs(ops, |f| f == "start") {
        let Some(wid) = p.invoke.value["wid"].as_str() else {
            continue;
        };
        let outcome = p.outcome();
        r.count(&format!("{outcome:?}").to_lowercase(), 1);
        let found = fin.workflows.get(wid);
        let ex = |problem: &str| json!({"wid": wid, "start_index": p.invoke.index, "problem": problem, "found": found});
        match (outcome, found) {
            (_, Some(Found::Unreadable(_))) | (OpType::Ok | OpType::Info, None) => {
                r.unknown(ex("never read after the heal"))
            }
            (OpType::Fail, None) | (OpType::Fail, Some(Found::Absent)) => {}
            (OpType::Fail, Some(Found::Run { .. })) => {
                r.invalid(ex("a definitely-failed start created a run"))
            }
            (OpType::Ok, Some(Found::Absent)) => r.invalid(ex("acknowledged start lost")),
            (OpType::Info, Some(Found::Absent)) => {}
            (
                _,
                Some(Found::Run {
                    run_id,
                    status,
                    result,
                    ..
                }),
            ) => {
                let acked_run = p.complete.and_then(|c| c.value["run_id"].as_str());
                if outcome == OpType::Ok && acked_run != Some(run_id.as_str()) {
                    r.invalid(ex("the workflow's run is not the acknowledged run"));
                } else if *status != STATUS_COMPLETED {
                    r.invalid(ex("not completed within the recovery window"));
                } else if result.as_deref() != Some(wid) {
                    r.invalid(ex("completed with another result"));
                } else {
                    r.count("completed", 1);
                }
            }
            (OpType::Invoke, _) => {}
        }
    }
    r.summary = format!("{:?}", r.counts);
    r
}

/// A workflow task (run, started event id, attempt) is handed out at most once, and a run's
/// completing task is accepted at most once.
pub fn check_tasks(ops: &[Op]) -> CheckResult {
    let mut r = CheckResult::new("workflow-tasks");
    let mut handed: BTreeMap<(String, i64, i64), u64> = BTreeMap::new();
    for o in ops {
        if o.f == "poll" && o.kind == OpType::Ok {
            let key = (
                o.value["run_id"].as_str().unwrap_or("").to_string(),
                o.value["started"].as_i64().unwrap_or(-1),
                o.value["attempt"].as_i64().unwrap_or(-1),
            );
            if let Some(first) = handed.insert(key.clone(), o.index) {
                r.invalid(json!({"problem": "workflow task handed out twice", "run_id": key.0,
                                 "started_event_id": key.1, "attempt": key.2, "first": first, "again": o.index}));
            }
        }
    }
    r.count("tasks", handed.len() as u64);
    r.summary = format!("{} workflow tasks handed out", handed.len());
    r
}

/// A sent signal: outcome, invoke time, completion time, collector.
type Sent = (OpType, u64, Option<u64>, String);

/// Signals land exactly once (ok), at most once (info), never (fail), nothing unknown, and
/// in acknowledgement order.
pub fn check_signals(ops: &[Op], fin: &Final) -> CheckResult {
    let mut r = CheckResult::new("signals");
    let mut sent: BTreeMap<String, Sent> = BTreeMap::new();
    for p in pairs(ops, |f| f == "signal") {
        if let (Some(v), Some(w)) = (
            p.invoke.value["value"].as_str(),
            p.invoke.value["wid"].as_str(),
        ) {
            sent.insert(
                v.to_string(),
                (
                    p.outcome(),
                    p.invoke.time_ns,
                    p.complete.map(|c| c.time_ns),
                    w.to_string(),
                ),
            );
        }
    }
    let mut delivered = 0u64;
    for (wid, got) in &fin.signals {
        let Some(got) = got else {
            r.unknown(json!({"wid": wid, "problem": "collector history never read"}));
            continue;
        };
        let mut pos: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, v) in got.iter().enumerate() {
            pos.entry(v.as_str()).or_default().push(i);
        }
        for (v, at) in &pos {
            match sent.get(*v) {
                None => r.invalid(json!({"wid": wid, "value": v, "problem": "signal never sent appeared"})),
                Some((OpType::Fail, ..)) => {
                    r.invalid(json!({"wid": wid, "value": v, "problem": "definitely-failed signal delivered"}))
                }
                Some(_) if at.len() > 1 => {
                    r.invalid(json!({"wid": wid, "value": v, "times": at.len(), "problem": "signal delivered more than once"}))
                }
                Some((_, _, _, to)) if to != wid => {
                    r.invalid(json!({"wid": wid, "value": v, "problem": "signal delivered to another workflow"}))
                }
                Some(_) => delivered += 1,
            }
        }
        let mine: Vec<(&String, &Sent)> = sent.iter().filter(|(_, s)| &s.3 == wid).collect();
        for (v, s) in &mine {
            if s.0 == OpType::Ok && !pos.contains_key(v.as_str()) {
                r.invalid(json!({"wid": wid, "value": v, "problem": "acknowledged signal lost"}));
            }
        }
        // Real-time order among acknowledged signals.
        let acked: Vec<(&String, u64, u64, usize)> = mine
            .iter()
            .filter(|(_, s)| s.0 == OpType::Ok)
            .filter_map(|(v, s)| Some((*v, s.1, s.2?, *pos.get(v.as_str())?.first()?)))
            .collect();
        for a in &acked {
            for b in &acked {
                if a.2 < b.1 && a.3 > b.3 {
                    r.invalid(json!({"wid": wid, "first": a.0, "then": b.0,
                        "problem": "signal acknowledged before another was sent appears after it"}));
                }
            }
        }
    }
    let unread: BTreeSet<&String> = fin
        .signals
        .iter()
        .filter(|(_, g)| g.is_none())
        .map(|(w, _)| w)
        .collect();
    r.count("delivered", delivered);
    r.count("sent", sent.len() as u64);
    r.summary = format!(
        "{delivered} of {} signals delivered; {} collectors unread",
        sent.len(),
        unread.len()
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;

    fn op(i: u64, p: u64, kind: OpType, f: &str, value: serde_json::Value) -> Op {
        Op {
            index: i,
            time_ns: i * 1000,
            wall_ns: 0,
            process: Process::Client(p),
            kind,
            f: f.into(),
            value,
            node: Some(1),
            error: None,
        }
    }

    fn run(status: i32, result: &str, run_id: &str) -> Found {
        Found::Run {
            run_id: run_id.into(),
            status,
            result: Some(result.into()),
            timers_fired: 0,
            activity_ends: Vec::new(),
        }
    }

    #[test]
    fn starts_acknowledged_must_complete_and_failed_must_be_absent() {
        let h = vec![
            op(0, 0, OpType::Invoke, "start", json!({"wid": "a"})),
            op(
                1,
                0,
                OpType::Ok,
                "start",
                json!({"wid": "a", "run_id": "r1"}),
            ),
            op(2, 1, OpType::Invoke, "start", json!({"wid": "b"})),
            op(3, 1, OpType::Fail, "start", json!({"wid": "b"})),
            op(4, 2, OpType::Invoke, "start", json!({"wid": "c"})),
            op(5, 2, OpType::Info, "start", json!({"wid": "c"})),
        ];
        let mut fin = Final::default();
        fin.workflows
            .insert("a".into(), run(STATUS_COMPLETED, "a", "r1"));
        fin.workflows.insert("b".into(), Found::Absent);
        fin.workflows.insert("c".into(), Found::Absent);
        assert_eq!(check_starts(&h, &fin).verdict, Verdict::Valid);

        let mut lost = fin.clone();
        lost.workflows.insert("a".into(), Found::Absent);
        assert_eq!(check_starts(&h, &lost).verdict, Verdict::Invalid);
        let mut stuck = fin.clone();
        stuck.workflows.insert("a".into(), run(1, "a", "r1"));
        assert_eq!(check_starts(&h, &stuck).verdict, Verdict::Invalid);
        let mut other_run = fin.clone();
        other_run
            .workflows
            .insert("a".into(), run(STATUS_COMPLETED, "a", "r2"));
        assert_eq!(check_starts(&h, &other_run).verdict, Verdict::Invalid);
        let mut ghost = fin.clone();
        ghost
            .workflows
            .insert("b".into(), run(STATUS_COMPLETED, "b", "r3"));
        assert_eq!(check_starts(&h, &ghost).verdict, Verdict::Invalid);
        let mut unread = fin;
        unread
            .workflows
            .insert("a".into(), Found::Unreadable("x".into()));
        assert_eq!(check_starts(&h, &unread).verdict, Verdict::Unknown);
    }

    #[test]
    fn a_task_handed_out_twice_is_invalid() {
        let poll = |i, p| {
            op(
                i,
                p,
                OpType::Ok,
                "poll",
                json!({"run_id": "r", "started": 3, "attempt": 1}),
            )
        };
        let retry = op(
            9,
            2,
            OpType::Ok,
            "poll",
            json!({"run_id": "r", "started": 3, "attempt": 2}),
        );
        assert_eq!(
            check_tasks(&[poll(0, 1), retry.clone()]).verdict,
            Verdict::Valid
        );
        assert_eq!(
            check_tasks(&[poll(0, 1), poll(1, 2)]).verdict,
            Verdict::Invalid
        );
    }

    #[test]
    fn signals_exactly_once_and_in_order() {
        let h = vec![
            op(
                0,
                0,
                OpType::Invoke,
                "signal",
                json!({"wid": "c", "value": "s1"}),
            ),
            op(
                1,
                0,
                OpType::Ok,
                "signal",
                json!({"wid": "c", "value": "s1"}),
            ),
            op(
                2,
                0,
                OpType::Invoke,
                "signal",
                json!({"wid": "c", "value": "s2"}),
            ),
            op(
                3,
                0,
                OpType::Ok,
                "signal",
                json!({"wid": "c", "value": "s2"}),
            ),
            op(
                4,
                1,
                OpType::Invoke,
                "signal",
                json!({"wid": "c", "value": "s3"}),
            ),
            op(
                5,
                1,
                OpType::Info,
                "signal",
                json!({"wid": "c", "value": "s3"}),
            ),
            op(
                6,
                2,
                OpType::Invoke,
                "signal",
                json!({"wid": "c", "value": "s4"}),
            ),
            op(
                7,
                2,
                OpType::Fail,
                "signal",
                json!({"wid": "c", "value": "s4"}),
            ),
        ];
        let fin = |vals: &[&str]| Final {
            workflows: Default::default(),
            signals: BTreeMap::from([(
                "c".to_string(),
                Some(vals.iter().map(|s| s.to_string()).collect()),
            )]),
            accounts: BTreeMap::new(),
        };
        assert_eq!(
            check_signals(&h, &fin(&["s1", "s2"])).verdict,
            Verdict::Valid
        );
        assert_eq!(
            check_signals(&h, &fin(&["s1", "s3", "s2"])).verdict,
            Verdict::Valid
        );
        for bad in [
            vec!["s1"],             // lost
            vec!["s1", "s2", "s2"], // duplicated
            vec!["s2", "s1"],       // reordered
            vec!["s1", "s2", "s4"], // failed one delivered
            vec!["s1", "s2", "zz"], // never sent
        ] {
            let r = check_signals(&h, &fin(&bad));
            assert_eq!(r.verdict, Verdict::Invalid, "{bad:?}: {r:?}");
        }
        let unread = Final {
            workflows: Default::default(),
            signals: BTreeMap::from([("c".to_string(), None)]),
            accounts: BTreeMap::new(),
        };
        assert_eq!(check_signals(&h, &unread).verdict, Verdict::Unknown);
    }
}
