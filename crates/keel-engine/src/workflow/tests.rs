//! Event sequences of temporal-compat.md §5, asserted exactly: types, ids, back-references
//! and effects.

use super::model::workflow_command::Kind as Cmd;
use super::model::workflow_outcome::Kind as Outcome;
use super::*;
use crate::command::Kind;
use crate::{apply_proposal, response, Command, MemStore, Proposal};

const NS: &str = "default";
const TQ: &str = "tq";

struct Harness {
    store: MemStore,
    now_ms: u64,
    effects: Vec<Effect>,
}

fn run_key(wf: &str, run: &str) -> RunKey {
    RunKey {
        namespace: NS.into(),
        workflow_id: wf.into(),
        run_id: run.into(),
    }
}

fn activity(id: &str) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::ScheduleActivity(ScheduleActivity {
            activity_id: id.into(),
            activity_type: "greet".into(),
            input: b"in".to_vec(),
            start_to_close_timeout_ms: 5_000,
            ..Default::default()
        })),
    }
}

fn timer(id: &str, ms: u64) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::StartTimer(StartTimer {
            timer_id: id.into(),
            start_to_fire_timeout_ms: ms,
        })),
    }
}

fn complete(result: &[u8]) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::CompleteWorkflow(CompleteWorkflow {
            result: result.to_vec(),
        })),
    }
}

impl Harness {
    fn new() -> Self {
        Harness {
            store: MemStore::new(),
            now_ms: 1_000,
            effects: Vec::new(),
        }
    }

    fn apply(&mut self, kind: Kind) -> Outcome {
        let (resp, meta) = apply_proposal(
            &Proposal {
                proposed_at_ms: self.now_ms,
                commands: vec![Command { kind: Some(kind) }],
            },
            &mut self.store,
        )
        .expect("apply");
        self.effects.extend(meta.effects);
        match resp.responses.into_iter().next().and_then(|r| r.kind) {
            Some(response::Kind::Workflow(o)) => o.kind.expect("outcome kind"),
            other => panic!("expected a workflow outcome, got {other:?}"),
        }
    }

    fn start(&mut self, wf: &str, run: &str, request_id: &str, policy: IdReusePolicy) -> Outcome {
        self.apply(Kind::StartWorkflow(StartWorkflow {
            run: Some(run_key(wf, run)),
            workflow_type: "hello".into(),
            task_queue: TQ.into(),
            input: b"world".to_vec(),
            identity: "starter".into(),
            request_id: request_id.into(),
            id_reuse_policy: policy as i32,
            ..Default::default()
        }))
    }

    fn poll(&mut self, kind: TaskKind) -> Option<Dispatched> {
        match self.apply(Kind::DispatchTask(DispatchTask {
            namespace: NS.into(),
            task_queue: TQ.into(),
            kind: kind as i32,
            identity: "worker".into(),
            request_id: format!("req-{}", self.now_ms),
        })) {
            Outcome::Dispatched(d) => Some(d),
            Outcome::NoTask(_) => None,
            other => panic!("poll: {other:?}"),
        }
    }

    fn complete_wft(&mut self, token: &TaskToken, commands: Vec<WorkflowCommand>) -> Outcome {
        self.apply(Kind::CompleteWorkflowTask(CompleteWorkflowTask {
            token: Some(token.clone()),
            identity: "worker".into(),
            commands,
            sdk_metadata: b"flags".to_vec(),
        }))
    }

    fn complete_activity(&mut self, token: &TaskToken, result: &[u8]) -> Outcome {
        self.apply(Kind::CompleteActivityTask(CompleteActivityTask {
            token: Some(token.clone()),
            identity: "worker".into(),
            result: result.to_vec(),
        }))
    }

    fn history(&self, wf: &str, run: &str) -> Vec<HistoryEvent> {
        read_history(&self.store, &run_key(wf, run), 1, i64::MAX - 1).expect("history")
    }

    fn types(&self, wf: &str, run: &str) -> Vec<&'static str> {
        self.history(wf, run)
            .iter()
            .map(HistoryEvent::event_type)
            .collect()
    }

    fn state(&self, wf: &str, run: &str) -> MutableState {
        read_mutable_state(&self.store, &run_key(wf, run))
            .expect("read")
            .expect("exists")
    }
}

fn token(d: &Option<Dispatched>) -> TaskToken {
    d.as_ref().expect("a task").token.clone().expect("token")
}

#[test]
fn hello_world_with_one_activity_has_the_exact_event_sequence() {
    let mut h = Harness::new();
    assert!(matches!(
        h.start("wf", "r1", "req", IdReusePolicy::Unspecified),
        Outcome::Started(Started { started: true, .. })
    ));
    let wft = h.poll(TaskKind::Workflow);
    let d = wft.as_ref().unwrap();
    assert_eq!(
        (d.started_event_id, d.previous_started_event_id, d.attempt),
        (3, 0, 1)
    );
    assert!(matches!(
        h.complete_wft(&token(&wft), vec![activity("a1")]),
        Outcome::Accepted(_)
    ));
    let act = h.poll(TaskKind::Activity);
    let a = act.as_ref().unwrap().activity.clone().unwrap();
    assert_eq!(
        (a.activity_id.as_str(), a.scheduled_event_id, a.attempt),
        ("a1", 5, 1)
    );
    h.now_ms += 10;
    assert!(matches!(
        h.complete_activity(&token(&act), b"hi"),
        Outcome::Accepted(_)
    ));
    let wft2 = h.poll(TaskKind::Workflow);
    let d2 = wft2.as_ref().unwrap();
    assert_eq!((d2.started_event_id, d2.previous_started_event_id), (9, 3));
    assert!(matches!(
        h.complete_wft(&token(&wft2), vec![complete(b"done")]),
        Outcome::Accepted(_)
    ));

    assert_eq!(
        h.types("wf", "r1"),
        vec![
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted",
            "WorkflowTaskCompleted",
            "ActivityTaskScheduled",
            "ActivityTaskStarted",
            "ActivityTaskCompleted",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted",
            "WorkflowTaskCompleted",
            "WorkflowExecutionCompleted",
        ]
    );
    let hist = h.history("wf", "r1");
    let ids: Vec<i64> = hist.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, (1..=11).collect::<Vec<_>>(), "contiguous from 1");
    match &hist[0].attributes {
        Some(Attributes::WorkflowExecutionStarted(s)) => {
            assert_eq!(s.workflow_task_timeout_ms, DEFAULT_WORKFLOW_TASK_TIMEOUT_MS);
            assert_eq!((s.original_execution_run_id.as_str(), s.attempt), ("r1", 1));
        }
        other => panic!("{other:?}"),
    }
    match &hist[3].attributes {
        Some(Attributes::WorkflowTaskCompleted(c)) => {
            assert_eq!((c.scheduled_event_id, c.started_event_id), (2, 3));
            assert_eq!(c.sdk_metadata, b"flags", "sdk_metadata persisted verbatim");
        }
        other => panic!("{other:?}"),
    }
    match &hist[4].attributes {
        Some(Attributes::ActivityTaskScheduled(s)) => {
            assert_eq!(s.workflow_task_completed_event_id, 4)
        }
        other => panic!("{other:?}"),
    }
    match (&hist[5].attributes, &hist[6].attributes) {
        (Some(Attributes::ActivityTaskStarted(s)), Some(Attributes::ActivityTaskCompleted(c))) => {
            assert_eq!(
                (s.scheduled_event_id, s.attempt, s.identity.as_str()),
                (5, 1, "worker")
            );
            assert_eq!(
                (
                    c.scheduled_event_id,
                    c.started_event_id,
                    c.result.as_slice()
                ),
                (5, 6, &b"hi"[..])
            );
        }
        other => panic!("{other:?}"),
    }
    match &hist[10].attributes {
        Some(Attributes::WorkflowExecutionCompleted(c)) => {
            assert_eq!(c.workflow_task_completed_event_id, 10)
        }
        other => panic!("{other:?}"),
    }
    assert!(hist[6].event_time_ms > hist[5].event_time_ms - 1 && hist[6].event_time_ms == 1_010);
    let ms = h.state("wf", "r1");
    assert_eq!(ms.status, RunStatus::Completed as i32);
    assert!(ms.workflow_task.is_none() && ms.activities.is_empty());
    assert!(h.effects.contains(&Effect::RunClosed {
        run: run_key("wf", "r1")
    }));
    assert!(h.effects.contains(&Effect::TaskQueued {
        namespace: NS.into(),
        task_queue: TQ.into(),
        kind: TaskKind::Activity
    }));

    // Tokens of a closed run are stale.
    assert!(matches!(
        h.complete_wft(&token(&wft2), vec![]),
        Outcome::NotFound(_)
    ));
    assert!(h.poll(TaskKind::Workflow).is_none());
}

#[test]
fn a_timer_fires_only_once_its_deadline_has_passed_in_replicated_time() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![timer("t1", 1_000)]);
    assert!(h
        .effects
        .contains(&Effect::TimerArmed { fire_at_ms: 2_000 }));
    let fire = |h: &mut Harness| {
        h.apply(Kind::FireTimer(FireTimer {
            run: Some(run_key("wf", "r1")),
            timer_id: "t1".into(),
            started_event_id: 5,
        }))
    };
    h.now_ms = 1_999;
    assert!(
        matches!(fire(&mut h), Outcome::InvalidArgument(_)),
        "not early"
    );
    assert_eq!(h.types("wf", "r1").len(), 5);
    h.now_ms = 2_000;
    assert!(matches!(fire(&mut h), Outcome::Accepted(_)));
    assert!(matches!(fire(&mut h), Outcome::NotFound(_)), "fires once");
    let hist = h.history("wf", "r1");
    assert_eq!(
        hist.iter()
            .map(HistoryEvent::event_type)
            .collect::<Vec<_>>()[4..],
        ["TimerStarted", "TimerFired", "WorkflowTaskScheduled"]
    );
    match &hist[5].attributes {
        Some(Attributes::TimerFired(f)) => {
            assert_eq!((f.timer_id.as_str(), f.started_event_id), ("t1", 5))
        }
        other => panic!("{other:?}"),
    }
    assert!(h.state("wf", "r1").timers.is_empty());
}

#[test]
fn a_duplicate_timer_id_fails_the_task_and_the_next_attempt_is_scheduled() {
    let mut h2 = Harness::new();
    h2.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h2.poll(TaskKind::Workflow);
    let out = h2.complete_wft(&token(&wft), vec![timer("t1", 10), timer("t1", 20)]);
    assert!(
        matches!(out, Outcome::InvalidArgument(ref m) if m.contains("already in use")),
        "{out:?}"
    );
    assert_eq!(
        h2.types("wf", "r1"),
        [
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted",
            "WorkflowTaskFailed",
            "WorkflowTaskScheduled"
        ]
    );
    let hist = h2.history("wf", "r1");
    match (&hist[3].attributes, &hist[4].attributes) {
        (Some(Attributes::WorkflowTaskFailed(f)), Some(Attributes::WorkflowTaskScheduled(s))) => {
            assert_eq!(
                f.cause,
                WorkflowTaskFailedCause::StartTimerDuplicateId as i32
            );
            assert_eq!((f.scheduled_event_id, f.started_event_id), (2, 3));
            assert_eq!(s.attempt, 2);
        }
        other => panic!("{other:?}"),
    }
    let next = h2.poll(TaskKind::Workflow).unwrap();
    assert_eq!((next.attempt, next.previous_started_event_id), (2, 0));
    assert!(
        h2.state("wf", "r1").timers.is_empty(),
        "a failed task starts no timer"
    );
}

#[test]
fn events_arriving_while_a_task_is_started_are_buffered_and_flushed_after_its_commands() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![activity("a"), activity("b")]); // 5, 6
    let a = h.poll(TaskKind::Activity);
    let b = h.poll(TaskKind::Activity);
    h.complete_activity(&token(&a), b"A"); // 7, 8 → WFT 9
    let wft2 = h.poll(TaskKind::Workflow); // 10 started
    h.complete_activity(&token(&b), b"B"); // buffered
    assert_eq!(
        h.types("wf", "r1").len(),
        10,
        "nothing after WorkflowTaskStarted"
    );
    assert_eq!(h.state("wf", "r1").buffered.len(), 2);
    h.complete_wft(&token(&wft2), vec![timer("t", 100)]);
    let types = h.types("wf", "r1");
    assert_eq!(
        types[9..],
        [
            "WorkflowTaskStarted",
            "WorkflowTaskCompleted",
            "TimerStarted",
            "ActivityTaskStarted",
            "ActivityTaskCompleted",
            "WorkflowTaskScheduled"
        ]
    );
    let hist = h.history("wf", "r1");
    match &hist[13].attributes {
        Some(Attributes::ActivityTaskCompleted(c)) => {
            assert_eq!((c.scheduled_event_id, c.started_event_id), (6, 13))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn closing_while_events_are_buffered_is_an_unhandled_command() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![activity("a"), activity("b")]);
    let a = h.poll(TaskKind::Activity);
    let b = h.poll(TaskKind::Activity);
    h.complete_activity(&token(&a), b"A");
    let wft2 = h.poll(TaskKind::Workflow);
    h.complete_activity(&token(&b), b"B");
    let out = h.complete_wft(&token(&wft2), vec![complete(b"early")]);
    assert!(
        matches!(out, Outcome::InvalidArgument(ref m) if m == "UnhandledCommand"),
        "{out:?}"
    );
    let types = h.types("wf", "r1");
    assert_eq!(
        types[10..],
        [
            "WorkflowTaskFailed",
            "ActivityTaskStarted",
            "ActivityTaskCompleted",
            "WorkflowTaskScheduled"
        ]
    );
    let ms = h.state("wf", "r1");
    assert_eq!(ms.status, RunStatus::Running as i32);
    assert_eq!(ms.workflow_task.as_ref().map(|t| t.attempt), Some(1));
}

#[test]
fn starts_are_idempotent_by_request_id_and_follow_the_reuse_policy() {
    let mut h = Harness::new();
    assert!(matches!(
        h.start("wf", "r1", "req-1", IdReusePolicy::Unspecified),
        Outcome::Started(Started { started: true, .. })
    ));
    match h.start("wf", "r-retry", "req-1", IdReusePolicy::Unspecified) {
        Outcome::Started(s) => assert_eq!((s.run_id.as_str(), s.started), ("r1", false)),
        other => panic!("{other:?}"),
    }
    match h.start("wf", "r2", "req-2", IdReusePolicy::AllowDuplicate) {
        Outcome::AlreadyStarted(a) => assert_eq!(
            (a.run_id.as_str(), a.start_request_id.as_str()),
            ("r1", "req-1")
        ),
        other => panic!("{other:?}"),
    }
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![complete(b"")]);
    assert!(matches!(
        h.start("wf", "r3", "req-3", IdReusePolicy::RejectDuplicate),
        Outcome::AlreadyStarted(_)
    ));
    assert!(matches!(
        h.start("wf", "r3", "req-3", IdReusePolicy::AllowDuplicateFailedOnly),
        Outcome::AlreadyStarted(_)
    ));
    assert!(matches!(
        h.start("wf", "r3", "req-3", IdReusePolicy::Unspecified),
        Outcome::Started(Started { started: true, .. })
    ));
    assert_eq!(h.state("wf", "r3").status, RunStatus::Running as i32);
    assert_eq!(h.state("wf", "r1").status, RunStatus::Completed as i32);
    assert!(read_mutable_state(&h.store, &run_key("wf", "r2"))
        .unwrap()
        .is_none());
}

#[test]
fn stale_and_replayed_tokens_are_not_found_and_never_apply_twice() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    assert!(matches!(
        h.complete_wft(&token(&wft), vec![activity("a")]),
        Outcome::Accepted(_)
    ));
    assert!(matches!(
        h.complete_wft(&token(&wft), vec![activity("a")]),
        Outcome::NotFound(_)
    ));
    let act = h.poll(TaskKind::Activity);
    let mut wrong_attempt = token(&act);
    wrong_attempt.attempt = 2;
    assert!(matches!(
        h.complete_activity(&wrong_attempt, b"x"),
        Outcome::NotFound(_)
    ));
    assert!(matches!(
        h.complete_activity(&token(&act), b"x"),
        Outcome::Accepted(_)
    ));
    assert!(matches!(
        h.complete_activity(&token(&act), b"x"),
        Outcome::NotFound(_)
    ));
    let completions = h
        .types("wf", "r1")
        .iter()
        .filter(|t| **t == "ActivityTaskCompleted")
        .count();
    assert_eq!(completions, 1);
}

#[test]
fn an_activity_without_timeouts_fails_the_task_with_bad_attributes() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    let bad = WorkflowCommand {
        kind: Some(Cmd::ScheduleActivity(ScheduleActivity {
            activity_id: "a".into(),
            activity_type: "t".into(),
            ..Default::default()
        })),
    };
    assert!(matches!(
        h.complete_wft(&token(&wft), vec![bad]),
        Outcome::InvalidArgument(_)
    ));
    let hist = h.history("wf", "r1");
    match &hist[3].attributes {
        Some(Attributes::WorkflowTaskFailed(f)) => assert_eq!(
            f.cause,
            WorkflowTaskFailedCause::BadScheduleActivityAttributes as i32
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        h.poll(TaskKind::Activity).is_none(),
        "nothing was scheduled"
    );
}

#[test]
fn activity_timeouts_are_normalized_like_temporal() {
    let base = ScheduleActivity {
        activity_id: "a".into(),
        activity_type: "t".into(),
        ..Default::default()
    };
    let n = super::apply::normalize_for_tests(
        &ScheduleActivity {
            schedule_to_close_timeout_ms: 100,
            heartbeat_timeout_ms: 500,
            ..base.clone()
        },
        0,
    )
    .unwrap();
    assert_eq!(
        (
            n.schedule_to_start_timeout_ms,
            n.start_to_close_timeout_ms,
            n.heartbeat_timeout_ms
        ),
        (100, 100, 100)
    );
    let n = super::apply::normalize_for_tests(
        &ScheduleActivity {
            start_to_close_timeout_ms: 50,
            ..base.clone()
        },
        1_000,
    )
    .unwrap();
    assert_eq!(
        (
            n.schedule_to_close_timeout_ms,
            n.schedule_to_start_timeout_ms,
            n.start_to_close_timeout_ms
        ),
        (1_000, 1_000, 50)
    );
    let n = super::apply::normalize_for_tests(
        &ScheduleActivity {
            start_to_close_timeout_ms: 5_000,
            ..base.clone()
        },
        1_000,
    )
    .unwrap();
    assert_eq!(
        n.start_to_close_timeout_ms, 1_000,
        "capped by the run timeout"
    );
    assert!(super::apply::normalize_for_tests(&base, 0).is_err());
}
