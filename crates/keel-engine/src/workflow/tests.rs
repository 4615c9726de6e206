//! Event sequences of temporal-compat.md §5, asserted exactly: types, ids, back-references
//! and effects.

use super::model::workflow_command::Kind as Cmd;
use super::model::workflow_outcome::Kind as Outcome;
use super::*;
use crate::command::Kind;
use crate::{apply_proposal, response, Command, MemStore, Proposal};

mod children;
mod continue_as_new;
mod external;
mod limits;
mod reset;
mod retry;
mod schedule;
mod search;
mod update;

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
        user_metadata: Vec::new(),
    }
}

fn timer(id: &str, ms: u64) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::StartTimer(StartTimer {
            timer_id: id.into(),
            start_to_fire_timeout_ms: ms,
        })),
        user_metadata: Vec::new(),
    }
}

fn complete(result: &[u8]) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::CompleteWorkflow(CompleteWorkflow {
            result: result.to_vec(),
            next_run_id: String::new(),
        })),
        user_metadata: Vec::new(),
    }
}

impl Harness {
    fn new() -> Self {
        let mut h = Harness {
            store: MemStore::new(),
            now_ms: 1_000,
            effects: Vec::new(),
        };
        h.register(NS, 0);
        h
    }

    /// Applies `kinds` as one proposal (one log entry); returns the effects it left.
    fn apply_entry(&mut self, kinds: Vec<Kind>) -> Vec<Effect> {
        let (_, meta) = apply_proposal(
            &Proposal {
                proposed_at_ms: self.now_ms,
                commands: kinds
                    .into_iter()
                    .map(|k| Command { kind: Some(k) })
                    .collect(),
            },
            &mut self.store,
        )
        .expect("apply");
        meta.effects
    }

    fn register(&mut self, name: &str, retention_ms: u64) -> Outcome {
        self.apply(Kind::RegisterNamespace(RegisterNamespace {
            name: name.into(),
            id: format!("id-{name}"),
            description: String::new(),
            retention_ms,
        }))
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
            sticky_queue: String::new(),
            ..Default::default()
        }))
    }

    /// Completes with RespondWorkflowTaskCompleted's `force_create_new_workflow_task` and
    /// `return_new_workflow_task` flags.
    fn complete_wft_asking(
        &mut self,
        token: &TaskToken,
        commands: Vec<WorkflowCommand>,
        force_create_new_task: bool,
        return_new_task: bool,
    ) -> Outcome {
        self.apply(Kind::CompleteWorkflowTask(CompleteWorkflowTask {
            token: Some(token.clone()),
            identity: "worker".into(),
            commands,
            sdk_metadata: b"flags".to_vec(),
            sticky_queue: String::new(),
            force_create_new_task,
            return_new_task,
            query_results: Vec::new(),
            messages: Vec::new(),
            worker_key: String::new(),
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
        .contains(&Effect::DeadlineArmed { fire_at_ms: 2_000 }));
    let fire = |h: &mut Harness| {
        h.apply(Kind::FireDeadline(FireDeadline {
            next_run_id: String::new(),
            run: Some(run_key("wf", "r1")),
            kind: DeadlineKind::UserTimer as i32,
            event_id: 5,
            attempt: 0,
            name: "t1".into(),
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
    // The retry is transient: nothing written after the failure.
    assert_eq!(
        h2.types("wf", "r1"),
        [
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted",
            "WorkflowTaskFailed"
        ]
    );
    let hist = h2.history("wf", "r1");
    match &hist[3].attributes {
        Some(Attributes::WorkflowTaskFailed(f)) => {
            assert_eq!(
                f.cause,
                WorkflowTaskFailedCause::StartTimerDuplicateId as i32
            );
            assert_eq!((f.scheduled_event_id, f.started_event_id), (2, 3));
        }
        other => panic!("{other:?}"),
    }
    let next = h2.poll(TaskKind::Workflow).unwrap();
    assert_eq!((next.attempt, next.previous_started_event_id), (2, 0));
    match &next.transient_events[0].attributes {
        Some(Attributes::WorkflowTaskScheduled(s)) => assert_eq!(s.attempt, 2),
        other => panic!("{other:?}"),
    }
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
fn a_task_heartbeat_starts_the_next_task_for_the_same_worker_without_any_new_event() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow); // 2, 3
    h.now_ms += 1_600;
    let next = match h.complete_wft_asking(&token(&wft), vec![], true, true) {
        Outcome::CompletedWithTasks(t) => t.workflow_task.expect("the next task is returned"),
        other => panic!("expected the returned task, got {other:?}"),
    };
    assert_eq!(
        h.types("wf", "r1")[3..],
        [
            "WorkflowTaskCompleted",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted"
        ]
    );
    assert_eq!(
        (
            next.started_event_id,
            next.previous_started_event_id,
            next.last_event_id,
            next.attempt
        ),
        (6, 3, 6, 1)
    );
    assert_eq!(next.task_queue, TQ);
    assert!(
        h.poll(TaskKind::Workflow).is_none(),
        "a returned task never sits in the backlog for another poller"
    );
    let ms = h.state("wf", "r1");
    let task = ms.workflow_task.clone().expect("a started task");
    assert_eq!((task.scheduled_event_id, task.started_event_id), (5, 6));
    assert!(
        ms.deadlines
            .iter()
            .any(|d| d.kind == DeadlineKind::WorkflowTaskStartToClose as i32
                && d.event_id == 5
                && d.fire_at_ms == h.now_ms + ms.workflow_task_timeout_ms),
        "the returned task times out like a polled one: {:?}",
        ms.deadlines
    );
    assert!(
        matches!(h.complete_wft(&token(&wft), vec![]), Outcome::NotFound(_)),
        "the heartbeated token is spent"
    );
    assert!(matches!(
        h.complete_wft(&token(&Some(next)), vec![complete(b"done")]),
        Outcome::Accepted(_)
    ));
}

#[test]
fn force_create_alone_queues_the_task_and_return_new_alone_creates_none() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    assert!(matches!(
        h.complete_wft_asking(&token(&wft), vec![], true, false),
        Outcome::Accepted(_)
    ));
    let polled = h.poll(TaskKind::Workflow);
    assert_eq!(
        polled.as_ref().map(|d| d.started_event_id),
        Some(6),
        "the forced task is polled from the backlog"
    );
    assert!(matches!(
        h.complete_wft_asking(&token(&polled), vec![timer("t", 100)], false, true),
        Outcome::Accepted(_)
    ));
    assert!(
        h.state("wf", "r1").workflow_task.is_none(),
        "nothing asked for a task, so none is returned"
    );
}

#[test]
fn a_returned_task_carries_the_events_buffered_while_the_completed_one_ran() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![activity("a")]); // 5
    let a = h.poll(TaskKind::Activity);
    let wft2 = {
        h.complete_activity(&token(&a), b"A"); // 6, 7 → WFT 8
        h.poll(TaskKind::Workflow) // 9
    };
    h.apply(Kind::SignalWorkflow(SignalWorkflow {
        run: Some(run_key("wf", "r1")),
        signal_name: "go".into(),
        request_id: "sig-1".into(),
        ..Default::default()
    }));
    let next = match h.complete_wft_asking(&token(&wft2), vec![], false, true) {
        Outcome::CompletedWithTasks(t) => t.workflow_task.expect("the signal asks for a task"),
        other => panic!("expected the returned task, got {other:?}"),
    };
    let types = h.types("wf", "r1");
    assert_eq!(
        types[9..],
        [
            "WorkflowTaskCompleted",
            "WorkflowExecutionSignaled",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted"
        ]
    );
    assert_eq!(
        (next.previous_started_event_id, next.last_event_id),
        (9, 13)
    );
}

#[test]
fn a_completion_that_closes_the_run_returns_no_task() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    assert!(matches!(
        h.complete_wft_asking(&token(&wft), vec![complete(b"done")], true, true),
        Outcome::Accepted(_)
    ));
    assert_eq!(
        h.types("wf", "r1").last(),
        Some(&"WorkflowExecutionCompleted")
    );
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
        user_metadata: Vec::new(),
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
fn an_unsupported_command_fails_the_task_naming_it_and_applies_nothing() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    let unsupported = WorkflowCommand {
        kind: Some(Cmd::Unsupported(
            "CONTINUE_AS_NEW_WORKFLOW_EXECUTION".into(),
        )),
        user_metadata: Vec::new(),
    };
    match h.complete_wft(&token(&wft), vec![activity("a1"), unsupported]) {
        Outcome::InvalidArgument(m) => assert_eq!(
            m,
            "CONTINUE_AS_NEW_WORKFLOW_EXECUTION is not supported by this server yet"
        ),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    let hist = h.history("wf", "r1");
    match &hist[3].attributes {
        Some(Attributes::WorkflowTaskFailed(f)) => assert_eq!(
            f.message, "CONTINUE_AS_NEW_WORKFLOW_EXECUTION is not supported by this server yet",
            "the history names the command too"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        h.poll(TaskKind::Activity).is_none(),
        "the task's other commands are not applied"
    );
}

#[test]
fn activity_timeouts_are_normalized_like_temporal() {
    let base = ScheduleActivity {
        activity_id: "a".into(),
        activity_type: "t".into(),
        ..Default::default()
    };
    let n = super::task::normalize_for_tests(
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
    let n = super::task::normalize_for_tests(
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
    let n = super::task::normalize_for_tests(
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
    assert!(super::task::normalize_for_tests(&base, 0).is_err());
}

#[test]
fn every_event_kind_survives_encoding_even_with_default_fields() {
    use prost::Message;
    // A oneof tag missing from the field's tag list decodes as "no attributes": check all.
    let all = vec![
        Attributes::WorkflowExecutionStarted(Default::default()),
        Attributes::WorkflowTaskScheduled(Default::default()),
        Attributes::WorkflowTaskStarted(Default::default()),
        Attributes::WorkflowTaskCompleted(Default::default()),
        Attributes::WorkflowTaskFailed(Default::default()),
        Attributes::ActivityTaskScheduled(Default::default()),
        Attributes::ActivityTaskStarted(Default::default()),
        Attributes::ActivityTaskCompleted(Default::default()),
        Attributes::TimerStarted(Default::default()),
        Attributes::TimerFired(Default::default()),
        Attributes::WorkflowExecutionCompleted(Default::default()),
        Attributes::WorkflowTaskTimedOut(Default::default()),
        Attributes::ActivityTaskFailed(Default::default()),
        Attributes::ActivityTaskTimedOut(Default::default()),
        Attributes::ActivityTaskCancelRequested(Default::default()),
        Attributes::ActivityTaskCanceled(Default::default()),
        Attributes::TimerCanceled(Default::default()),
        Attributes::WorkflowExecutionSignaled(Default::default()),
        Attributes::WorkflowExecutionCancelRequested(Default::default()),
        Attributes::WorkflowExecutionCanceled(Default::default()),
        Attributes::WorkflowExecutionFailed(Default::default()),
        Attributes::WorkflowExecutionTerminated(Default::default()),
        Attributes::WorkflowExecutionTimedOut(Default::default()),
        Attributes::MarkerRecorded(Default::default()),
        Attributes::WorkflowExecutionContinuedAsNew(Default::default()),
        Attributes::StartChildWorkflowExecutionInitiated(Default::default()),
        Attributes::StartChildWorkflowExecutionFailed(Default::default()),
        Attributes::ChildWorkflowExecutionStarted(Default::default()),
        Attributes::ChildWorkflowExecutionCompleted(Default::default()),
        Attributes::ChildWorkflowExecutionFailed(Default::default()),
        Attributes::ChildWorkflowExecutionCanceled(Default::default()),
        Attributes::ChildWorkflowExecutionTimedOut(Default::default()),
        Attributes::ChildWorkflowExecutionTerminated(Default::default()),
        Attributes::SignalExternalWorkflowExecutionInitiated(Default::default()),
        Attributes::SignalExternalWorkflowExecutionFailed(Default::default()),
        Attributes::ExternalWorkflowExecutionSignaled(Default::default()),
        Attributes::RequestCancelExternalWorkflowExecutionInitiated(Default::default()),
        Attributes::RequestCancelExternalWorkflowExecutionFailed(Default::default()),
        Attributes::ExternalWorkflowExecutionCancelRequested(Default::default()),
        Attributes::UpsertWorkflowSearchAttributes(Default::default()),
        Attributes::WorkflowPropertiesModified(Default::default()),
    ];
    let names: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|a| {
            HistoryEvent {
                attributes: Some(a.clone()),
                ..Default::default()
            }
            .event_type()
        })
        .collect();
    assert_eq!(names.len(), all.len(), "every variant listed once");
    for a in all {
        let e = HistoryEvent {
            event_id: 0,
            event_time_ms: 0,
            attributes: Some(a.clone()),
            user_metadata: Vec::new(),
        };
        let back = HistoryEvent::decode(e.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.attributes, Some(a));
    }
}

#[test]
fn every_command_kind_survives_encoding_even_with_default_fields() {
    use prost::Message;
    let all = vec![
        Kind::RegisterPut(Default::default()),
        Kind::RegisterCas(Default::default()),
        Kind::RegisterDelete(Default::default()),
        Kind::StartWorkflow(Default::default()),
        Kind::DispatchTask(Default::default()),
        Kind::CompleteWorkflowTask(Default::default()),
        Kind::CompleteActivityTask(Default::default()),
        Kind::FireDeadline(Default::default()),
        Kind::FailWorkflowTask(Default::default()),
        Kind::FailActivityTask(Default::default()),
        Kind::RecordHeartbeat(Default::default()),
        Kind::CancelActivityTask(Default::default()),
        Kind::SignalWorkflow(Default::default()),
        Kind::SignalWithStart(Default::default()),
        Kind::RequestCancelWorkflow(Default::default()),
        Kind::TerminateWorkflow(Default::default()),
        Kind::RegisterNamespace(Default::default()),
        Kind::DeleteWorkflow(Default::default()),
        Kind::EnqueueQuery(Default::default()),
        Kind::AnswerQuery(Default::default()),
        Kind::ForgetQuery(Default::default()),
        Kind::UpdateSearchAttributes(Default::default()),
        Kind::ResetWorkflow(Default::default()),
        Kind::SetNamespaceLimits(Default::default()),
    ];
    for k in all {
        let c = Command {
            kind: Some(k.clone()),
        };
        assert_eq!(
            Command::decode(c.encode_to_vec().as_slice()).unwrap().kind,
            Some(k)
        );
    }
    for k in [
        Cmd::ScheduleActivity(Default::default()),
        Cmd::StartTimer(Default::default()),
        Cmd::CompleteWorkflow(Default::default()),
        Cmd::CancelTimer(Default::default()),
        Cmd::RequestCancelActivity(Default::default()),
        Cmd::FailWorkflow(Default::default()),
        Cmd::CancelWorkflow(Default::default()),
        Cmd::RecordMarker(Default::default()),
        Cmd::Unsupported("START_CHILD_WORKFLOW_EXECUTION".into()),
        Cmd::ContinueAsNew(Default::default()),
        Cmd::StartChildWorkflow(Default::default()),
        Cmd::SignalExternal(Default::default()),
        Cmd::RequestCancelExternal(Default::default()),
        Cmd::UpsertSearchAttributes(Default::default()),
        Cmd::ModifyProperties(Default::default()),
        Cmd::Invalid(Default::default()),
    ] {
        let c = WorkflowCommand {
            kind: Some(k.clone()),
            user_metadata: Vec::new(),
        };
        assert_eq!(
            WorkflowCommand::decode(c.encode_to_vec().as_slice())
                .unwrap()
                .kind,
            Some(k)
        );
    }
}

// ------------------------------------------------------------------ Tier 2 flows

impl Harness {
    fn fire(&mut self, wf: &str, run: &str, kind: DeadlineKind) -> Outcome {
        let ms = self.state(wf, run);
        let d = ms
            .deadlines
            .iter()
            .find(|d| d.kind == kind as i32)
            .unwrap_or_else(|| panic!("no {kind:?} deadline in {:?}", ms.deadlines))
            .clone();
        self.now_ms = self.now_ms.max(d.fire_at_ms);
        self.apply(Kind::FireDeadline(FireDeadline {
            next_run_id: String::new(),
            run: Some(run_key(wf, run)),
            kind: d.kind,
            event_id: d.event_id,
            attempt: d.attempt,
            name: d.name,
        }))
    }

    fn fail_activity(
        &mut self,
        token: &TaskToken,
        failure_type: &str,
        non_retryable: bool,
    ) -> Outcome {
        self.apply(Kind::FailActivityTask(FailActivityTask {
            token: Some(token.clone()),
            identity: "worker".into(),
            failure: b"boom".to_vec(),
            failure_type: failure_type.into(),
            non_retryable,
            next_retry_delay_ms: 0,
        }))
    }

    /// Starts a run and completes its first workflow task with `commands`.
    fn started_with(&mut self, commands: Vec<WorkflowCommand>) {
        self.start("wf", "r1", "req", IdReusePolicy::Unspecified);
        let wft = self.poll(TaskKind::Workflow);
        assert!(matches!(
            self.complete_wft(&token(&wft), commands),
            Outcome::Accepted(_)
        ));
    }

    fn signal(&mut self, request_id: &str) -> Outcome {
        self.apply(Kind::SignalWorkflow(SignalWorkflow {
            run: Some(run_key("wf", "")),
            signal_name: "go".into(),
            input: b"sig".to_vec(),
            identity: "client".into(),
            request_id: request_id.into(),
            header: vec![],
        }))
    }
}

fn activity_with(id: &str, f: impl FnOnce(&mut ScheduleActivity)) -> WorkflowCommand {
    let mut a = ScheduleActivity {
        activity_id: id.into(),
        activity_type: "greet".into(),
        start_to_close_timeout_ms: 5_000,
        ..Default::default()
    };
    f(&mut a);
    WorkflowCommand {
        kind: Some(Cmd::ScheduleActivity(a)),
        user_metadata: Vec::new(),
    }
}

fn attr(h: &[HistoryEvent], id: i64) -> &Attributes {
    h[(id - 1) as usize]
        .attributes
        .as_ref()
        .expect("attributes")
}

#[test]
fn a_failed_activity_is_retried_after_its_backoff_without_events_then_succeeds() {
    let mut h = Harness::new();
    h.started_with(vec![activity("a")]);
    let first = h.poll(TaskKind::Activity);
    assert!(matches!(
        h.fail_activity(&token(&first), "boom", false),
        Outcome::Accepted(_)
    ));
    assert_eq!(h.types("wf", "r1").len(), 5, "a retry writes no events");
    assert!(
        h.poll(TaskKind::Activity).is_none(),
        "not before the backoff"
    );
    let retry = h
        .state("wf", "r1")
        .deadlines
        .iter()
        .find(|d| d.kind == DeadlineKind::ActivityRetry as i32)
        .cloned()
        .unwrap();
    assert_eq!(
        retry.fire_at_ms,
        h.now_ms + 1_000,
        "default initial interval"
    );
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::ActivityRetry),
        Outcome::Accepted(_)
    ));
    let second = h.poll(TaskKind::Activity).expect("attempt 2 dispatched");
    assert_eq!(second.attempt, 2);
    assert!(matches!(
        h.complete_activity(&token(&Some(second)), b"ok"),
        Outcome::Accepted(_)
    ));
    assert!(
        matches!(
            h.complete_activity(&token(&first), b"late"),
            Outcome::NotFound(_)
        ),
        "attempt 1's token is stale"
    );
    let hist = h.history("wf", "r1");
    match (attr(&hist, 6), attr(&hist, 7)) {
        (Attributes::ActivityTaskStarted(s), Attributes::ActivityTaskCompleted(c)) => {
            assert_eq!((s.attempt, s.last_failure.as_slice()), (2, &b"boom"[..]));
            assert_eq!((c.scheduled_event_id, c.started_event_id), (5, 6));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn non_retryable_failures_and_exhausted_attempts_fail_the_activity() {
    let mut h = Harness::new();
    h.started_with(vec![
        activity_with("a", |_| {}),
        activity_with("b", |a| {
            a.retry_policy = Some(RetryPolicy {
                non_retryable_error_types: vec!["Fatal".into()],
                ..Default::default()
            })
        }),
        activity_with("c", |a| {
            a.retry_policy = Some(RetryPolicy {
                maximum_attempts: 1,
                ..Default::default()
            })
        }),
    ]);
    let (a, b, c) = (
        h.poll(TaskKind::Activity),
        h.poll(TaskKind::Activity),
        h.poll(TaskKind::Activity),
    );
    h.fail_activity(&token(&a), "x", true);
    h.fail_activity(&token(&b), "Fatal", false);
    h.fail_activity(&token(&c), "x", false);
    let states: Vec<i32> = h
        .history("wf", "r1")
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::ActivityTaskFailed(f)) => Some(f.retry_state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![
            RetryState::NonRetryableFailure as i32,
            RetryState::NonRetryableFailure as i32,
            RetryState::MaximumAttemptsReached as i32
        ]
    );
    assert!(h.state("wf", "r1").activities.is_empty());
}

#[test]
fn activity_timeouts_fire_as_replicated_deadlines() {
    let mut h = Harness::new();
    h.started_with(vec![activity_with("stc", |a| {
        a.start_to_close_timeout_ms = 200;
        a.retry_policy = Some(RetryPolicy {
            maximum_attempts: 1,
            ..Default::default()
        });
    })]);
    let stc = h.poll(TaskKind::Activity).unwrap();
    assert_eq!(stc.activity.as_ref().unwrap().activity_id, "stc");
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::ActivityStartToClose),
        Outcome::Accepted(_)
    ));
    let hist = h.history("wf", "r1");
    let timed_out: Vec<(i32, i32, i64)> = hist
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::ActivityTaskTimedOut(t)) => {
                Some((t.timeout_type, t.retry_state, t.started_event_id))
            }
            _ => None,
        })
        .collect();
    assert_eq!(timed_out.len(), 1);
    assert_eq!(timed_out[0].0, TimeoutType::StartToClose as i32);
    assert_eq!(timed_out[0].1, RetryState::MaximumAttemptsReached as i32);
    assert!(
        timed_out[0].2 > 0,
        "it had started: ActivityTaskStarted precedes the timeout"
    );

    let mut h = Harness::new();
    h.started_with(vec![activity_with("s2s", |a| {
        a.schedule_to_start_timeout_ms = 100
    })]);
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::ActivityScheduleToStart),
        Outcome::Accepted(_)
    ));
    assert_eq!(
        h.types("wf", "r1")[5..],
        ["ActivityTaskTimedOut", "WorkflowTaskScheduled"],
        "never started: no Started event"
    );
    assert!(
        h.poll(TaskKind::Activity).is_none(),
        "the stale backlog entry is skipped"
    );
}

#[test]
fn heartbeats_keep_details_across_a_retry_and_carry_cancel_requests() {
    let mut h = Harness::new();
    h.started_with(vec![activity_with("a", |a| a.heartbeat_timeout_ms = 1_000)]);
    let first = h.poll(TaskKind::Activity);
    let hb = |h: &mut Harness, t: &TaskToken, d: &[u8]| {
        h.apply(Kind::RecordHeartbeat(RecordHeartbeat {
            token: Some(t.clone()),
            details: d.to_vec(),
        }))
    };
    assert!(matches!(
        hb(&mut h, &token(&first), b"50%"),
        Outcome::Heartbeat(HeartbeatRecorded {
            cancel_requested: false
        })
    ));
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::ActivityHeartbeat),
        Outcome::Accepted(_)
    ));
    h.fire("wf", "r1", DeadlineKind::ActivityRetry);
    let second = h.poll(TaskKind::Activity).unwrap();
    assert_eq!(second.attempt, 2);
    assert_eq!(
        second.activity.as_ref().unwrap().heartbeat_details,
        b"50%",
        "details survive the retry"
    );
    assert!(
        matches!(hb(&mut h, &token(&first), b"x"), Outcome::NotFound(_)),
        "old attempt's token"
    );

    // The workflow asks to cancel the running activity.
    let second = Some(second);
    h.complete_activity(&token(&second), b"done"); // → WFT
    let mut h = Harness::new();
    h.started_with(vec![activity("a"), activity("b")]);
    let a = h.poll(TaskKind::Activity);
    h.complete_activity(&token(&a), b"A");
    let b = h.poll(TaskKind::Activity);
    let wft = h.poll(TaskKind::Workflow);
    let cancel_b = WorkflowCommand {
        kind: Some(Cmd::RequestCancelActivity(RequestCancelActivity {
            scheduled_event_id: 6,
        })),
        user_metadata: Vec::new(),
    };
    assert!(matches!(
        h.complete_wft(&token(&wft), vec![cancel_b]),
        Outcome::Accepted(_)
    ));
    assert!(matches!(
        hb(&mut h, &token(&b), b""),
        Outcome::Heartbeat(HeartbeatRecorded {
            cancel_requested: true
        })
    ));
    let canceled = h.apply(Kind::CancelActivityTask(CancelActivityTask {
        token: Some(token(&b)),
        identity: "worker".into(),
        details: b"bye".to_vec(),
    }));
    assert!(matches!(canceled, Outcome::Accepted(_)));
    let types = h.types("wf", "r1");
    assert_eq!(
        types[10..],
        [
            "WorkflowTaskCompleted",
            "ActivityTaskCancelRequested",
            "ActivityTaskStarted",
            "ActivityTaskCanceled",
            "WorkflowTaskScheduled"
        ]
    );
    let hist = h.history("wf", "r1");
    match attr(&hist, 14) {
        Attributes::ActivityTaskCanceled(c) => assert_eq!(
            (
                c.latest_cancel_requested_event_id,
                c.scheduled_event_id,
                c.started_event_id
            ),
            (12, 6, 13)
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn canceling_an_activity_that_never_started_cancels_it_at_once() {
    let mut h = Harness::new();
    h.started_with(vec![activity("a"), timer("t", 10)]);
    h.fire("wf", "r1", DeadlineKind::UserTimer);
    let wft = h.poll(TaskKind::Workflow);
    let cancel = WorkflowCommand {
        kind: Some(Cmd::RequestCancelActivity(RequestCancelActivity {
            scheduled_event_id: 5,
        })),
        user_metadata: Vec::new(),
    };
    h.complete_wft(&token(&wft), vec![cancel]);
    assert_eq!(
        h.types("wf", "r1")[9..],
        [
            "WorkflowTaskCompleted",
            "ActivityTaskCancelRequested",
            "ActivityTaskCanceled",
            "WorkflowTaskScheduled"
        ]
    );
    assert!(h.poll(TaskKind::Activity).is_none());
}

#[test]
fn signals_before_during_and_after_a_task_and_their_dedup() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    assert!(matches!(h.signal("s1"), Outcome::Accepted(_))); // before the task starts: appended
    assert!(matches!(h.signal("s1"), Outcome::Accepted(_))); // a retry: deduplicated
    let wft = h.poll(TaskKind::Workflow);
    h.signal("s2"); // while started: buffered
    h.complete_wft(&token(&wft), vec![]);
    assert_eq!(
        h.types("wf", "r1"),
        [
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowExecutionSignaled",
            "WorkflowTaskStarted",
            "WorkflowTaskCompleted",
            "WorkflowExecutionSignaled",
            "WorkflowTaskScheduled"
        ]
    );
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![complete(b"")]);
    assert!(matches!(h.signal("s3"), Outcome::NotFound(ref m) if m.contains("already completed")));
}

#[test]
fn signal_with_start_starts_or_signals() {
    let mut h = Harness::new();
    let sws = |h: &mut Harness, run: &str| {
        h.apply(Kind::SignalWithStart(SignalWithStart {
            start: Some(StartWorkflow {
                run: Some(run_key("wf", run)),
                workflow_type: "hello".into(),
                task_queue: TQ.into(),
                request_id: format!("req-{run}"),
                ..Default::default()
            }),
            signal: Some(SignalWorkflow {
                run: Some(run_key("wf", "")),
                signal_name: "go".into(),
                ..Default::default()
            }),
        }))
    };
    match sws(&mut h, "r1") {
        Outcome::Started(s) => assert_eq!((s.run_id.as_str(), s.started), ("r1", true)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.types("wf", "r1"),
        [
            "WorkflowExecutionStarted",
            "WorkflowExecutionSignaled",
            "WorkflowTaskScheduled"
        ]
    );
    match sws(&mut h, "r2") {
        Outcome::Started(s) => assert_eq!((s.run_id.as_str(), s.started), ("r1", false)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.types("wf", "r1").len(),
        4,
        "signaled the running run; no second task scheduled"
    );
}

#[test]
fn a_cancel_request_leads_to_canceled_and_is_idempotent() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let cancel = |h: &mut Harness| {
        h.apply(Kind::RequestCancelWorkflow(RequestCancelWorkflow {
            run: Some(run_key("wf", "r1")),
            identity: "client".into(),
            reason: "stop".into(),
            request_id: "c1".into(),
            first_execution_run_id: String::new(),
        }))
    };
    assert!(matches!(cancel(&mut h), Outcome::Accepted(_)));
    assert!(matches!(cancel(&mut h), Outcome::Accepted(_)));
    let wft = h.poll(TaskKind::Workflow);
    let cw = WorkflowCommand {
        kind: Some(Cmd::CancelWorkflow(CancelWorkflow {
            details: b"d".to_vec(),
        })),
        user_metadata: Vec::new(),
    };
    h.complete_wft(&token(&wft), vec![cw]);
    assert_eq!(
        h.types("wf", "r1"),
        [
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowExecutionCancelRequested",
            "WorkflowTaskStarted",
            "WorkflowTaskCompleted",
            "WorkflowExecutionCanceled"
        ]
    );
    assert_eq!(h.state("wf", "r1").status, RunStatus::Canceled as i32);
}

#[test]
fn terminating_while_a_task_is_started_force_fails_it_and_flushes_the_buffer() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.signal("s");
    let out = h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
        run: Some(run_key("wf", "")),
        identity: "admin".into(),
        reason: "bye".into(),
        details: vec![],
        first_execution_run_id: String::new(),
    }));
    assert!(matches!(out, Outcome::Accepted(_)));
    assert_eq!(
        h.types("wf", "r1")[3..],
        [
            "WorkflowTaskFailed",
            "WorkflowExecutionSignaled",
            "WorkflowExecutionTerminated"
        ]
    );
    let hist = h.history("wf", "r1");
    match attr(&hist, 4) {
        Attributes::WorkflowTaskFailed(f) => {
            assert_eq!(f.cause, WorkflowTaskFailedCause::ForceCloseCommand as i32)
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(h.complete_wft(&token(&wft), vec![]), Outcome::NotFound(_)),
        "open tokens turn stale"
    );
    assert!(
        h.state("wf", "r1").deadlines.is_empty(),
        "no timeouts left armed"
    );
}

impl Harness {
    fn fail_wft(&mut self, d: &Option<Dispatched>) -> Outcome {
        self.apply(Kind::FailWorkflowTask(FailWorkflowTask {
            token: Some(token(d)),
            identity: "worker".into(),
            cause: 0,
            failure: b"panic".to_vec(),
        }))
    }

    /// Starts a run whose first workflow task fails: the retry (attempt 2) is scheduled.
    fn started_with_a_failed_task(&mut self) {
        self.start("wf", "r1", "req", IdReusePolicy::Unspecified);
        let wft = self.poll(TaskKind::Workflow);
        assert!(matches!(self.fail_wft(&wft), Outcome::Accepted(_)));
    }
}

const FIRST_ATTEMPT: [&str; 4] = [
    "WorkflowExecutionStarted",
    "WorkflowTaskScheduled",
    "WorkflowTaskStarted",
    "WorkflowTaskFailed",
];

#[test]
fn workflow_task_retries_are_transient_until_one_completes() {
    let mut h = Harness::new();
    h.started_with_a_failed_task();
    assert_eq!(
        h.types("wf", "r1"),
        FIRST_ATTEMPT,
        "the first failure is written"
    );

    h.now_ms += 7;
    let second = h.poll(TaskKind::Workflow).unwrap();
    assert_eq!((second.attempt, second.started_event_id), (2, 6));
    assert_eq!(
        second.last_event_id, 6,
        "the history sent ends at the Started id"
    );
    let handed: Vec<_> = second
        .transient_events
        .iter()
        .map(|e| (e.event_id, e.event_type()))
        .collect();
    assert_eq!(
        handed,
        [(5, "WorkflowTaskScheduled"), (6, "WorkflowTaskStarted")]
    );
    assert_eq!(
        h.types("wf", "r1"),
        FIRST_ATTEMPT,
        "handing it out writes nothing"
    );

    // The worker stays silent: the timeout writes nothing either; attempt 3 gets the same ids.
    let before = h.now_ms;
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::WorkflowTaskStartToClose),
        Outcome::Accepted(_)
    ));
    assert_eq!(h.now_ms, before + DEFAULT_WORKFLOW_TASK_TIMEOUT_MS);
    assert_eq!(h.types("wf", "r1"), FIRST_ATTEMPT);
    let third = h.poll(TaskKind::Workflow).unwrap();
    assert_eq!((third.attempt, third.started_event_id), (3, 6));
    assert!(matches!(
        h.complete_wft(&token(&Some(second)), vec![]),
        Outcome::NotFound(_)
    ));
    // Attempt 3 fails too: still nothing written.
    assert!(matches!(h.fail_wft(&Some(third)), Outcome::Accepted(_)));
    assert_eq!(h.types("wf", "r1"), FIRST_ATTEMPT);

    // Attempt 4 completes: its events are written under the ids and times handed out.
    let fourth = h.poll(TaskKind::Workflow).unwrap();
    assert_eq!(fourth.attempt, 4);
    h.now_ms += 5;
    assert!(matches!(
        h.complete_wft(&token(&Some(fourth.clone())), vec![complete(b"ok")]),
        Outcome::Accepted(_)
    ));
    let hist = h.history("wf", "r1");
    assert_eq!(&hist[4..6], fourth.transient_events.as_slice());
    match (&hist[4].attributes, &hist[6].attributes) {
        (
            Some(Attributes::WorkflowTaskScheduled(s)),
            Some(Attributes::WorkflowTaskCompleted(c)),
        ) => {
            assert_eq!(s.attempt, 4);
            assert_eq!((c.scheduled_event_id, c.started_event_id), (5, 6));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.types("wf", "r1")[4..],
        [
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted",
            "WorkflowTaskCompleted",
            "WorkflowExecutionCompleted"
        ]
    );
}

#[test]
fn an_event_arriving_for_a_scheduled_retry_writes_the_retry_first() {
    let mut h = Harness::new();
    h.started_with_a_failed_task();
    assert!(matches!(h.signal("s1"), Outcome::Accepted(_)));
    assert_eq!(
        h.types("wf", "r1")[4..],
        ["WorkflowTaskScheduled", "WorkflowExecutionSignaled"],
        "the retry's Scheduled keeps id 5 and the signal follows it"
    );
    let retry = h.poll(TaskKind::Workflow).unwrap();
    assert_eq!((retry.attempt, retry.started_event_id), (2, 7));
    assert!(retry.transient_events.is_empty(), "now a written task");
    assert_eq!(h.types("wf", "r1")[6], "WorkflowTaskStarted");
}

#[test]
fn events_buffered_during_a_retry_are_written_when_it_fails_and_the_next_one_follows() {
    let mut h = Harness::new();
    h.started_with_a_failed_task();
    let retry = h.poll(TaskKind::Workflow);
    assert!(matches!(h.signal("s1"), Outcome::Accepted(_)));
    assert_eq!(h.types("wf", "r1"), FIRST_ATTEMPT, "buffered while started");
    assert!(matches!(h.fail_wft(&retry), Outcome::Accepted(_)));
    assert_eq!(
        h.types("wf", "r1")[4..],
        ["WorkflowExecutionSignaled"],
        "the failed retry writes nothing; the buffered signal is flushed"
    );
    let next = h.poll(TaskKind::Workflow).unwrap();
    assert_eq!((next.attempt, next.started_event_id), (3, 7));
    assert_eq!(next.transient_events[0].event_id, 6);
}

#[test]
fn terminating_during_a_retry_writes_only_the_termination() {
    let mut h = Harness::new();
    h.started_with_a_failed_task();
    let retry = h.poll(TaskKind::Workflow);
    assert!(matches!(
        h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
            run: Some(run_key("wf", "r1")),
            reason: "stop".into(),
            ..Default::default()
        })),
        Outcome::Accepted(_)
    ));
    assert_eq!(h.types("wf", "r1")[4..], ["WorkflowExecutionTerminated"]);
    assert!(matches!(
        h.complete_wft(&token(&retry), vec![]),
        Outcome::NotFound(_)
    ));
}

#[test]
fn a_retry_sending_invalid_commands_again_is_left_to_time_out() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let first = h.poll(TaskKind::Workflow);
    let dup = || vec![timer("t1", 10), timer("t1", 20)];
    assert!(matches!(
        h.complete_wft(&token(&first), dup()),
        Outcome::InvalidArgument(_)
    ));
    let retry = h.poll(TaskKind::Workflow);
    assert!(matches!(
        h.complete_wft(&token(&retry), dup()),
        Outcome::InvalidArgument(_)
    ));
    assert!(
        h.poll(TaskKind::Workflow).is_none(),
        "no new attempt before the timeout"
    );
    assert_eq!(
        h.types("wf", "r1").len(),
        4,
        "nothing written for the retry"
    );
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::WorkflowTaskStartToClose),
        Outcome::Accepted(_)
    ));
    assert_eq!(h.poll(TaskKind::Workflow).unwrap().attempt, 3);
}

#[test]
fn run_timeout_closes_the_run_and_retention_deletes_it() {
    let mut h = Harness {
        store: MemStore::new(),
        now_ms: 1_000,
        effects: Vec::new(),
    };
    h.register(NS, 86_400_000);
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf", "r1")),
        workflow_type: "t".into(),
        task_queue: TQ.into(),
        run_timeout_ms: 60_000,
        request_id: "req".into(),
        ..Default::default()
    }));
    let row = read_visibility(&h.store, &run_key("wf", "r1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.status, row.workflow_type.as_str()),
        (RunStatus::Running as i32, "t")
    );
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::RunTimeout),
        Outcome::Accepted(_)
    ));
    assert_eq!(
        h.types("wf", "r1").last(),
        Some(&"WorkflowExecutionTimedOut")
    );
    assert_eq!(h.state("wf", "r1").status, RunStatus::TimedOut as i32);
    let retention = h.state("wf", "r1").deadlines;
    assert_eq!(retention.len(), 1);
    assert_eq!(retention[0].fire_at_ms, h.now_ms + 86_400_000);
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::Retention),
        Outcome::Accepted(_)
    ));
    assert!(read_mutable_state(&h.store, &run_key("wf", "r1"))
        .unwrap()
        .is_none());
    assert!(h.history("wf", "r1").is_empty());
    assert!(h.effects.contains(&Effect::RunDeleted {
        run: run_key("wf", "r1")
    }));
    use crate::keys::KeyKind as K;
    let leftovers: Vec<_> = h
        .store
        .iter()
        .filter(|(k, _)| {
            !matches!(
                K::of(k),
                Some(K::Meta | K::QueueCursor | K::QueueEntry | K::Namespace | K::VisibilityCount)
            )
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "only backlog bookkeeping and counts may remain: {leftovers:?}"
    );
    // The counts are back to zero runs.
    assert_eq!(
        read_status_counts(&h.store, NS).unwrap(),
        Some([0; 8]),
        "no run left to count"
    );
}

#[test]
fn a_timer_can_be_canceled() {
    let mut h = Harness::new();
    h.started_with(vec![timer("t", 1_000), timer("u", 5)]);
    h.fire("wf", "r1", DeadlineKind::UserTimer); // "t" or "u": whichever is listed first
    let wft = h.poll(TaskKind::Workflow);
    let pending = h.state("wf", "r1").timers[0].timer_id.clone();
    let cancel = WorkflowCommand {
        kind: Some(Cmd::CancelTimer(CancelTimer { timer_id: pending })),
        user_metadata: Vec::new(),
    };
    assert!(matches!(
        h.complete_wft(&token(&wft), vec![cancel]),
        Outcome::Accepted(_)
    ));
    assert_eq!(h.types("wf", "r1").last(), Some(&"TimerCanceled"));
    assert!(h
        .state("wf", "r1")
        .deadlines
        .iter()
        .all(|d| d.kind != DeadlineKind::UserTimer as i32));
}

#[test]
fn namespaces_are_registered_once_and_required_for_starts() {
    let mut h = Harness::new();
    assert!(matches!(h.register(NS, 5), Outcome::AlreadyExists(_)));
    assert_eq!(
        read_namespace(&h.store, NS).unwrap().unwrap().retention_ms,
        0,
        "the first registration stands"
    );
    let out = h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(RunKey {
            namespace: "nope".into(),
            workflow_id: "wf".into(),
            run_id: "r".into(),
        }),
        workflow_type: "t".into(),
        task_queue: TQ.into(),
        ..Default::default()
    }));
    assert!(
        matches!(out, Outcome::NotFound(ref m) if m.contains("namespace nope")),
        "{out:?}"
    );
}

#[test]
fn schedule_to_close_bounds_all_attempts_together() {
    let mut h = Harness::new();
    h.started_with(vec![activity_with("a", |a| {
        a.schedule_to_close_timeout_ms = 3_000;
        a.start_to_close_timeout_ms = 1_000;
    })]);
    let first = h.poll(TaskKind::Activity);
    h.fail_activity(&token(&first), "boom", false); // retried after 1 s
    h.fire("wf", "r1", DeadlineKind::ActivityRetry);
    let second = h.poll(TaskKind::Activity);
    assert_eq!(second.as_ref().unwrap().attempt, 2);
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::ActivityScheduleToClose),
        Outcome::Accepted(_)
    ));
    let hist = h.history("wf", "r1");
    assert_eq!(
        h.types("wf", "r1")[5..],
        [
            "ActivityTaskStarted",
            "ActivityTaskTimedOut",
            "WorkflowTaskScheduled"
        ]
    );
    match (attr(&hist, 6), attr(&hist, 7)) {
        (Attributes::ActivityTaskStarted(s), Attributes::ActivityTaskTimedOut(t)) => {
            assert_eq!((s.attempt, s.last_failure.as_slice()), (2, &b"boom"[..]));
            assert_eq!(
                (t.timeout_type, t.retry_state, t.started_event_id),
                (
                    TimeoutType::ScheduleToClose as i32,
                    RetryState::Timeout as i32,
                    6
                )
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.complete_activity(&token(&second), b"late"),
        Outcome::NotFound(_)
    ));
    assert!(
        h.state("wf", "r1")
            .deadlines
            .iter()
            .all(|d| d.event_id != 5),
        "no activity deadline left"
    );
}

// ------------------------------------------------------------------ queries

impl Harness {
    fn query(&mut self, wf: &str, query_id: &str) -> Outcome {
        self.apply(Kind::EnqueueQuery(EnqueueQuery {
            run: Some(run_key(wf, "")),
            query_id: query_id.into(),
            query_type: "getStatus".into(),
            query_args: b"args".to_vec(),
            header: vec![],
            timeout_ms: 30_000,
        }))
    }

    fn answer(&mut self, token: &TaskToken, result: &[u8]) -> Outcome {
        self.apply(Kind::AnswerQuery(AnswerQuery {
            token: Some(token.clone()),
            result_type: 1,
            result: result.to_vec(),
            ..Default::default()
        }))
    }

    fn query_record(&self, query_id: &str) -> Option<QueryRecord> {
        read_query(&self.store, NS, query_id).expect("read query")
    }

    fn query_ready(&self) -> bool {
        query_ready(&self.store, NS, TQ).expect("query_ready")
    }

    fn expiries(&self, wf: &str, run: &str) -> usize {
        self.state(wf, run)
            .deadlines
            .iter()
            .filter(|d| d.kind == DeadlineKind::QueryExpiry as i32)
            .count()
    }
}

#[test]
fn a_query_is_dispatched_once_answered_read_and_forgotten_without_touching_history() {
    let mut h = Harness::new();
    h.started_with(vec![timer("t", 60_000)]);
    let before = h.history("wf", "r1");
    assert!(matches!(h.query("wf", "q1"), Outcome::Accepted(_)));
    assert!(matches!(h.query("wf", "q1"), Outcome::Accepted(_)), "retry");
    assert_eq!(
        h.expiries("wf", "r1"),
        1,
        "a retried enqueue arms nothing new"
    );
    assert!(h.query_ready());
    let d = h.poll(TaskKind::Query).expect("the query is handed out");
    let q = d.query.clone().expect("query attached");
    assert_eq!(
        (q.query_type.as_str(), q.query_args.as_slice()),
        ("getStatus", &b"args"[..])
    );
    assert_eq!(
        (
            d.started_event_id,
            d.previous_started_event_id,
            d.last_event_id
        ),
        (0, 3, 5),
        "no started task; history to the TimerStarted event"
    );
    assert_eq!(token(&Some(d.clone())).query_id, "q1");
    assert!(h.poll(TaskKind::Query).is_none(), "handed out once");
    assert!(
        h.poll(TaskKind::Workflow).is_none(),
        "no workflow task created"
    );
    assert!(matches!(
        h.answer(&token(&Some(d.clone())), b"ok"),
        Outcome::Accepted(_)
    ));
    assert!(
        matches!(
            h.answer(&token(&Some(d.clone())), b"again"),
            Outcome::NotFound(_)
        ),
        "a second answer is refused"
    );
    let r = h
        .query_record("q1")
        .expect("answered query kept until forgotten");
    assert_eq!(
        (r.state, r.result.as_slice()),
        (QueryState::Answered as i32, &b"ok"[..])
    );
    assert!(matches!(
        h.apply(Kind::ForgetQuery(ForgetQuery {
            namespace: NS.into(),
            query_id: "q1".into(),
        })),
        Outcome::Accepted(_)
    ));
    assert!(h.query_record("q1").is_none());
    assert_eq!(h.expiries("wf", "r1"), 0, "forgetting disarms the expiry");
    assert_eq!(
        h.history("wf", "r1"),
        before,
        "queries never change history"
    );
}

#[test]
fn a_query_waits_while_the_run_has_a_started_workflow_task() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    assert!(matches!(h.query("wf", "q1"), Outcome::Accepted(_)));
    assert!(
        !h.query_ready(),
        "pollers must not spin on a query that cannot go yet"
    );
    assert!(h.poll(TaskKind::Query).is_none());
    assert!(matches!(
        h.complete_wft(&token(&wft), vec![timer("t", 60_000)]),
        Outcome::Accepted(_)
    ));
    assert!(h.query_ready());
    let d = h
        .poll(TaskKind::Query)
        .expect("dispatched once the task completed");
    assert_eq!((d.previous_started_event_id, d.last_event_id), (3, 5));
}

/// An answer carried by a workflow-task completion (`query_results`).
fn task_answer(query_id: &str, result: &[u8]) -> AnswerQuery {
    AnswerQuery {
        token: Some(TaskToken {
            run: Some(run_key("wf", "r1")),
            kind: TaskKind::Query as i32,
            query_id: query_id.into(),
            ..Default::default()
        }),
        result_type: 1,
        result: result.to_vec(),
        ..Default::default()
    }
}

#[test]
fn a_query_held_back_by_a_started_task_goes_out_with_the_next_task_and_its_completion_answers_it() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    assert!(matches!(h.query("wf", "q1"), Outcome::Accepted(_)));
    // A workflow-task heartbeat: the run always has a started task from here on.
    let next = match h.complete_wft_asking(&token(&wft), vec![], true, true) {
        Outcome::CompletedWithTasks(t) => t.workflow_task.expect("returned task"),
        other => panic!("{other:?}"),
    };
    let sent: Vec<_> = next.queries.iter().map(|q| q.query_id.as_str()).collect();
    assert_eq!(sent, ["q1"], "the query rides with the next task");
    assert_eq!(next.queries[0].query_type, "getStatus");
    assert!(
        !h.query_ready() && h.poll(TaskKind::Query).is_none(),
        "out with the task: not also a query task"
    );
    h.effects.clear();
    let done = h.apply(Kind::CompleteWorkflowTask(CompleteWorkflowTask {
        token: Some(token(&Some(next))),
        identity: "worker".into(),
        query_results: vec![task_answer("q1", b"busy"), task_answer("other", b"x")],
        ..Default::default()
    }));
    assert!(matches!(done, Outcome::Accepted(_)), "{done:?}");
    let r = h.query_record("q1").expect("kept until forgotten");
    assert_eq!(
        (r.state, r.result_type, r.result.as_slice()),
        (QueryState::Answered as i32, 1, &b"busy"[..])
    );
    assert!(
        h.effects.iter().any(|e| matches!(
            e,
            Effect::QueryAnswered { query_id, .. } if query_id == "q1"
        )),
        "the querying frontend is woken"
    );
    assert!(
        h.query_record("other").is_none(),
        "unknown answers are ignored"
    );
}

#[test]
fn a_query_sent_with_a_task_that_ends_unanswered_is_handed_out_again() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    assert!(matches!(h.query("wf", "q1"), Outcome::Accepted(_)));
    assert!(
        !h.query_ready(),
        "a run whose task is scheduled answers with that task, not a query task"
    );
    let wft = h.poll(TaskKind::Workflow).expect("task");
    assert_eq!(wft.queries.len(), 1, "the task takes the query");
    h.fire("wf", "r1", DeadlineKind::WorkflowTaskStartToClose);
    assert!(
        h.query_ready(),
        "the task timed out: no task is started, so the query can go on its own"
    );
    let d = h.poll(TaskKind::Query).expect("handed out as a query task");
    assert_eq!(token(&Some(d.clone())).query_id, "q1");
    let retry = h.poll(TaskKind::Workflow).expect("the retried task");
    assert!(
        retry.queries.is_empty(),
        "a query out as a query task is not sent again"
    );
    assert!(matches!(
        h.answer(&token(&Some(d)), b"ok"),
        Outcome::Accepted(_)
    ));
}

#[test]
fn a_query_held_back_on_one_run_does_not_hold_up_the_queries_behind_it() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let busy = h.poll(TaskKind::Workflow);
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("idle", "r2")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        request_id: "req-idle".into(),
        ..Default::default()
    }));
    let idle = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&idle), vec![timer("t", 60_000)]);
    assert!(matches!(h.query("wf", "q-busy"), Outcome::Accepted(_)));
    assert!(matches!(h.query("idle", "q-idle"), Outcome::Accepted(_)));
    assert!(h.query_ready(), "the second query can go");
    let d = h
        .poll(TaskKind::Query)
        .expect("dispatched past the waiting one");
    assert_eq!(token(&Some(d)).query_id, "q-idle");
    assert!(!h.query_ready() && h.poll(TaskKind::Query).is_none());
    h.complete_wft(&token(&busy), vec![timer("t", 60_000)]);
    let d = h.poll(TaskKind::Query).expect("its task ended");
    assert_eq!(token(&Some(d)).query_id, "q-busy");
    assert!(h.poll(TaskKind::Query).is_none(), "each handed out once");
}

#[test]
fn closed_runs_stay_queryable_and_unanswered_queries_expire() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    assert!(matches!(h.query("wf", "q-open"), Outcome::Accepted(_)));
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![complete(b"done")]);
    assert_eq!(
        h.expiries("wf", "r1"),
        1,
        "a query's expiry survives the close"
    );
    let d = h
        .poll(TaskKind::Query)
        .expect("closed run's query handed out");
    assert_eq!(d.last_event_id, 5, "full history including the completion");
    assert!(matches!(h.query("wf", "q-closed"), Outcome::Accepted(_)));
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::QueryExpiry),
        Outcome::Accepted(_)
    ));
    assert!(
        h.query_record("q-open").is_none(),
        "the unanswered query expired"
    );
    assert!(
        matches!(h.answer(&token(&Some(d)), b"late"), Outcome::NotFound(_)),
        "an answer after expiry is refused"
    );
    assert!(h.query_record("q-closed").is_some());
    assert!(matches!(h.query("nope", "q3"), Outcome::NotFound(_)));
}

#[test]
fn retention_deletes_a_closed_runs_pending_queries() {
    let mut h = Harness::new();
    h.register("short", 1_000);
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(RunKey {
            namespace: "short".into(),
            workflow_id: "wf".into(),
            run_id: "r1".into(),
        }),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        request_id: "req".into(),
        ..Default::default()
    }));
    h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
        run: Some(RunKey {
            namespace: "short".into(),
            workflow_id: "wf".into(),
            run_id: String::new(),
        }),
        ..Default::default()
    }));
    let run = RunKey {
        namespace: "short".into(),
        workflow_id: "wf".into(),
        run_id: "r1".into(),
    };
    assert!(matches!(
        h.apply(Kind::EnqueueQuery(EnqueueQuery {
            run: Some(run.clone()),
            query_id: "q".into(),
            query_type: "getStatus".into(),
            timeout_ms: 600_000,
            ..Default::default()
        })),
        Outcome::Accepted(_)
    ));
    let retention = read_mutable_state(&h.store, &run)
        .unwrap()
        .unwrap()
        .deadlines
        .into_iter()
        .find(|d| d.kind == DeadlineKind::Retention as i32)
        .expect("retention armed");
    h.now_ms = retention.fire_at_ms;
    assert!(matches!(
        h.apply(Kind::FireDeadline(FireDeadline {
            next_run_id: String::new(),
            run: Some(run),
            kind: retention.kind,
            ..Default::default()
        })),
        Outcome::Accepted(_)
    ));
    assert!(read_query(&h.store, "short", "q").unwrap().is_none());
}

#[test]
fn an_eagerly_requested_activity_starts_with_the_completion_and_skips_the_backlog() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    let eager = activity_with("a1", |a| a.request_eager_execution = true);
    let other_queue = activity_with("a2", |a| {
        a.request_eager_execution = true;
        a.task_queue = "elsewhere".into();
    });
    let started = match h.complete_wft(&token(&wft), vec![eager, other_queue]) {
        Outcome::CompletedWithTasks(e) => e.activities,
        other => panic!("expected eager activities, got {other:?}"),
    };
    assert_eq!(
        started.len(),
        1,
        "only an activity on the workflow's own queue runs eagerly"
    );
    let a = started[0].activity.clone().unwrap();
    assert_eq!((a.activity_id.as_str(), a.started), ("a1", true));
    assert!(
        h.poll(TaskKind::Activity).is_none(),
        "no backlog entry for the eager one"
    );
    let ms = h.state("wf", "r1");
    assert!(
        !ms.deadlines
            .iter()
            .any(|d| d.kind == DeadlineKind::ActivityScheduleToStart as i32
                && d.event_id == a.scheduled_event_id),
        "an eager start has no schedule-to-start deadline"
    );
    assert!(matches!(
        h.complete_activity(&token(&Some(started[0].clone())), b"hi"),
        Outcome::Accepted(_)
    ));
    assert_eq!(
        h.types("wf", "r1")[4..],
        [
            "ActivityTaskScheduled",
            "ActivityTaskScheduled",
            "ActivityTaskStarted",
            "ActivityTaskCompleted",
            "WorkflowTaskScheduled",
        ]
    );
}

#[test]
fn tasks_of_runs_under_way_are_dispatched_before_first_tasks_of_new_runs() {
    let mut h = Harness::new();
    h.start("old", "r1", "req-old", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![timer("t1", 1_000)]);
    // Two new runs queue their first tasks before the old run's timer fires.
    h.start("new1", "r1", "req-new1", IdReusePolicy::Unspecified);
    h.start("new2", "r1", "req-new2", IdReusePolicy::Unspecified);
    assert!(matches!(
        h.fire("old", "r1", DeadlineKind::UserTimer),
        Outcome::Accepted(_)
    ));
    let order: Vec<String> = std::iter::from_fn(|| h.poll(TaskKind::Workflow))
        .map(|d| token(&Some(d)).run.expect("run").workflow_id)
        .collect();
    assert_eq!(order, ["old", "new1", "new2"], "resumed first, then FIFO");
}

#[test]
fn a_task_queued_and_dispatched_in_one_entry_wakes_no_pollers() {
    let mut h = Harness::new();
    let start = |id: &str| {
        Kind::StartWorkflow(StartWorkflow {
            run: Some(run_key(id, "run")),
            workflow_type: "hello".into(),
            task_queue: TQ.into(),
            identity: "starter".into(),
            request_id: format!("req-{id}"),
            ..Default::default()
        })
    };
    let dispatch = Kind::DispatchTask(DispatchTask {
        namespace: NS.into(),
        task_queue: TQ.into(),
        kind: TaskKind::Workflow as i32,
        identity: "worker".into(),
        request_id: "poll-1".into(),
    });
    let queued = Effect::TaskQueued {
        namespace: NS.into(),
        task_queue: TQ.into(),
        kind: TaskKind::Workflow,
    };
    // Queued and handed out in the same entry: the backlog is empty again, nobody to wake.
    let effects = h.apply_entry(vec![start("wf1"), dispatch.clone()]);
    assert!(!effects.contains(&queued), "{effects:?}");
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::HistoryGrew { .. })));
    // Queued and left waiting: the queue's pollers are woken.
    let effects = h.apply_entry(vec![start("wf2")]);
    assert!(effects.contains(&queued), "{effects:?}");
    // Two queued, one handed out: one still waits, so the wake-up stays.
    let effects = h.apply_entry(vec![start("wf3"), start("wf4"), dispatch]);
    assert!(effects.contains(&queued), "{effects:?}");
}

#[test]
fn query_pollers_are_woken_only_when_a_query_can_be_handed_out() {
    let mut h = Harness::new();
    let query_wakes = |effects: &[Effect]| {
        effects
            .iter()
            .filter(|e| {
                let mut keys = Vec::new();
                e.watch_keys(&mut keys);
                keys.contains(&watch_queue(NS, TQ, TaskKind::Query))
            })
            .count()
    };
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.effects.clear();
    h.complete_wft(&token(&wft), vec![timer("t", 60_000)]);
    assert_eq!(query_wakes(&h.effects), 0, "no query waits: nobody to wake");

    h.fire("wf", "r1", DeadlineKind::UserTimer);
    let wft = h.poll(TaskKind::Workflow);
    h.effects.clear();
    assert!(matches!(h.query("wf", "q1"), Outcome::Accepted(_)));
    assert_eq!(
        query_wakes(&h.effects),
        0,
        "held back behind the started task: nothing to hand out yet"
    );
    h.complete_wft(&token(&wft), vec![timer("t2", 60_000)]);
    assert_eq!(
        query_wakes(&h.effects),
        1,
        "the ended task lets the query go"
    );
    assert!(h.poll(TaskKind::Query).is_some());
}

#[test]
fn a_workflow_that_never_existed_is_not_found_by_its_id_and_a_closed_one_is_completed() {
    let mut h = Harness::new();
    let signal = |run: RunKey| {
        Kind::SignalWorkflow(SignalWorkflow {
            run: Some(run),
            signal_name: "s".into(),
            ..Default::default()
        })
    };
    let terminate = |run: RunKey| {
        Kind::TerminateWorkflow(TerminateWorkflow {
            run: Some(run),
            ..Default::default()
        })
    };
    for kind in [signal(run_key("nope", "")), terminate(run_key("nope", ""))] {
        match h.apply(kind) {
            Outcome::NotFound(m) => assert_eq!(m, "workflow not found for ID: nope"),
            other => panic!("{other:?}"),
        }
    }
    match h.apply(signal(run_key("nope", "r9"))) {
        Outcome::NotFound(m) => assert_eq!(
            m,
            "workflow execution not found for ID: nope and run ID: r9"
        ),
        other => panic!("{other:?}"),
    }
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    h.apply(terminate(run_key("wf", "r1")));
    for kind in [signal(run_key("wf", "")), terminate(run_key("wf", "r1"))] {
        match h.apply(kind) {
            Outcome::NotFound(m) => assert_eq!(m, "workflow execution already completed"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_eager_start_returns_the_first_task_started_for_the_caller_and_queues_nothing() {
    let mut h = Harness::new();
    let out = h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf", "r1")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        identity: "starter-worker".into(),
        request_id: "req".into(),
        eager: true,
        ..Default::default()
    }));
    let Outcome::Started(s) = out else {
        panic!("{out:?}")
    };
    let d = s.eager_task.expect("the first task");
    assert_eq!((d.started_event_id, d.attempt), (3, 1));
    assert_eq!(
        h.types("wf", "r1"),
        [
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted"
        ]
    );
    let Some(Attributes::WorkflowTaskStarted(st)) = &h.history("wf", "r1")[2].attributes else {
        panic!()
    };
    assert_eq!(st.identity, "starter-worker");
    assert!(h.poll(TaskKind::Workflow).is_none(), "nothing was queued");
    // The token completes the task like a polled one.
    let token = d.token.clone().expect("token");
    assert!(matches!(
        h.complete_wft(&token, vec![complete(b"done")]),
        Outcome::Accepted(_)
    ));
    // A start with a delay is not eager: its first task is not due yet.
    let delayed = h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf2", "r1")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        request_id: "req2".into(),
        start_delay_ms: 1_000,
        eager: true,
        ..Default::default()
    }));
    assert!(matches!(delayed, Outcome::Started(ref s) if s.eager_task.is_none()));
}

#[test]
fn a_zero_duration_timer_is_started_and_fires_at_once() {
    let mut h = Harness::new();
    h.started_with(vec![timer("t0", 0)]);
    let ms = h.state("wf", "r1");
    let d = ms
        .deadlines
        .iter()
        .find(|d| d.kind == DeadlineKind::UserTimer as i32)
        .expect("armed");
    assert_eq!(d.fire_at_ms, h.now_ms, "due at once");
    assert!(matches!(
        h.fire("wf", "r1", DeadlineKind::UserTimer),
        Outcome::Accepted(_)
    ));
    assert!(h.types("wf", "r1").contains(&"TimerFired"));
}

#[test]
fn user_metadata_of_the_start_and_of_each_command_lands_on_its_first_event_only() {
    let mut h = Harness::new();
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf", "r1")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        user_metadata: b"start-summary".to_vec(),
        ..Default::default()
    }));
    let d = h.poll(TaskKind::Workflow);
    let mut with_summary = timer("t1", 1_000);
    with_summary.user_metadata = b"timer-summary".to_vec();
    // An activity without metadata after it: nothing of the timer's leaks onto it.
    h.complete_wft(&token(&d), vec![with_summary, activity("a1")]);
    let history = h.history("wf", "r1");
    let meta: Vec<(&str, &[u8])> = history
        .iter()
        .map(|e| (e.event_type(), e.user_metadata.as_slice()))
        .collect();
    assert_eq!(
        meta,
        vec![
            ("WorkflowExecutionStarted", &b"start-summary"[..]),
            ("WorkflowTaskScheduled", &b""[..]),
            ("WorkflowTaskStarted", &b""[..]),
            ("WorkflowTaskCompleted", &b""[..]),
            ("TimerStarted", &b"timer-summary"[..]),
            ("ActivityTaskScheduled", &b""[..]),
        ]
    );
    assert_eq!(h.state("wf", "r1").user_metadata, b"start-summary");
}

#[test]
fn terminate_existing_and_terminate_if_running_replace_the_running_run_in_one_apply() {
    let mut h = Harness::new();
    let start = |run: &str, request: &str, conflict: i32, reuse: IdReusePolicy| {
        Kind::StartWorkflow(StartWorkflow {
            run: Some(run_key("wf", run)),
            workflow_type: "hello".into(),
            task_queue: TQ.into(),
            request_id: request.into(),
            conflict_policy: conflict,
            id_reuse_policy: reuse as i32,
            ..Default::default()
        })
    };
    h.apply(start("r1", "q1", 0, IdReusePolicy::AllowDuplicate));
    // FAIL (the default) refuses; TERMINATE_EXISTING replaces.
    let refused = h.apply(start("r2", "q2", 0, IdReusePolicy::AllowDuplicate));
    assert!(matches!(refused, Outcome::AlreadyStarted(_)), "{refused:?}");
    let out = h.apply(start(
        "r2",
        "q2",
        CONFLICT_TERMINATE_EXISTING,
        IdReusePolicy::AllowDuplicate,
    ));
    assert!(
        matches!(out, Outcome::Started(Started { started: true, .. })),
        "{out:?}"
    );
    assert_eq!(h.state("wf", "r1").status, RunStatus::Terminated as i32);
    let Some(Attributes::WorkflowExecutionTerminated(t)) = h
        .history("wf", "r1")
        .last()
        .and_then(|e| e.attributes.clone())
    else {
        panic!("r1 ends terminated")
    };
    assert_eq!(t.reason, "TerminateIfRunning WorkflowIdReusePolicy");
    assert!(String::from_utf8_lossy(&t.details).contains("terminated by new runID: r2"));
    assert_eq!(h.state("wf", "r2").status, RunStatus::Running as i32);
    // The reuse policy TERMINATE_IF_RUNNING does the same.
    let out = h.apply(start("r3", "q3", 0, IdReusePolicy::TerminateIfRunning));
    assert!(
        matches!(out, Outcome::Started(Started { started: true, .. })),
        "{out:?}"
    );
    assert_eq!(h.state("wf", "r2").status, RunStatus::Terminated as i32);
    assert_eq!(h.state("wf", "r3").status, RunStatus::Running as i32);
}

#[test]
fn signal_with_start_under_terminate_existing_replaces_the_running_run() {
    let mut h = Harness::new();
    let sws = |h: &mut Harness, run: &str, conflict: i32| {
        h.apply(Kind::SignalWithStart(SignalWithStart {
            start: Some(StartWorkflow {
                run: Some(run_key("wf", run)),
                workflow_type: "hello".into(),
                task_queue: TQ.into(),
                request_id: format!("req-{run}"),
                conflict_policy: conflict,
                ..Default::default()
            }),
            signal: Some(SignalWorkflow {
                run: Some(run_key("wf", "")),
                signal_name: "go".into(),
                request_id: format!("sig-{run}"),
                ..Default::default()
            }),
        }))
    };
    sws(&mut h, "r1", 0);
    match sws(&mut h, "r2", CONFLICT_TERMINATE_EXISTING) {
        Outcome::Started(s) => assert_eq!((s.run_id.as_str(), s.started), ("r2", true)),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.state("wf", "r1").status, RunStatus::Terminated as i32);
    assert_eq!(
        h.types("wf", "r2"),
        [
            "WorkflowExecutionStarted",
            "WorkflowExecutionSignaled",
            "WorkflowTaskScheduled"
        ],
        "the new run gets the signal"
    );
}

#[test]
fn backlog_waits_are_measured_in_replicated_time_from_queueing_and_the_last_dispatch() {
    let mut h = Harness::new();
    let waits = |h: &Harness| workflow_task_waits(&h.store, NS, TQ).expect("waits");
    assert_eq!(waits(&h), WorkflowTaskWaits::default());
    // Two runs' first tasks queued at 1,000 and 1,100; nothing handed out yet.
    h.start("wf", "r1", "req-1", IdReusePolicy::Unspecified);
    h.now_ms = 1_100;
    h.start("wf2", "r2", "req-2", IdReusePolicy::Unspecified);
    h.now_ms = 1_300;
    h.register("other-ns", 0); // any entry moves replicated time on
    assert_eq!(
        waits(&h),
        WorkflowTaskWaits {
            oldest_resumed_ms: None,
            oldest_new_ms: Some(300),
            since_dispatch_ms: None,
        }
    );
    // A poll at 1,300 takes the oldest; the next one has waited 200 ms.
    let wft = h.poll(TaskKind::Workflow);
    assert_eq!(
        waits(&h),
        WorkflowTaskWaits {
            oldest_resumed_ms: None,
            oldest_new_ms: Some(200),
            since_dispatch_ms: Some(0),
        }
    );
    // r1 made progress and waits for a worker again (a signal at 1,500): a resumed task.
    h.complete_wft(&token(&wft), vec![]);
    h.now_ms = 1_500;
    h.apply(Kind::SignalWorkflow(SignalWorkflow {
        run: Some(run_key("wf", "r1")),
        signal_name: "go".into(),
        request_id: "sig".into(),
        ..Default::default()
    }));
    h.now_ms = 1_900;
    h.register("third-ns", 0);
    assert_eq!(
        waits(&h),
        WorkflowTaskWaits {
            oldest_resumed_ms: Some(400),
            oldest_new_ms: Some(800),
            since_dispatch_ms: Some(600),
        }
    );
    // Resumed tasks go first; both backlogs empty, the queue was drained just now.
    assert_eq!(
        h.poll(TaskKind::Workflow)
            .and_then(|d| d.token)
            .and_then(|t| t.run),
        Some(run_key("wf", "r1"))
    );
    h.poll(TaskKind::Workflow).expect("r2's first task");
    assert_eq!(
        waits(&h),
        WorkflowTaskWaits {
            oldest_resumed_ms: None,
            oldest_new_ms: None,
            since_dispatch_ms: Some(0),
        }
    );
}

#[test]
fn a_runs_steps_wake_its_history_waiters_and_only_its_close_wakes_close_waiters() {
    let run = run_key("wf", "r1");
    let keys = |e: Effect| {
        let mut k = Vec::new();
        e.watch_keys(&mut k);
        k
    };
    let grew = keys(Effect::HistoryGrew {
        run: run.clone(),
        next_event_id: 7,
        history_size_bytes: 100,
    });
    assert_eq!(
        grew,
        vec![watch_run(&run)],
        "a step wakes history waiters only"
    );
    for closing in [
        Effect::RunClosed { run: run.clone() },
        Effect::RunDeleted { run: run.clone() },
    ] {
        let k = keys(closing);
        assert!(k.contains(&watch_run(&run)) && k.contains(&watch_run_closed(&run)));
    }
    assert_ne!(
        watch_run_closed(&run),
        watch_run_closed(&run_key("wf", "r10")),
        "runs do not share a close key"
    );
    assert_ne!(watch_run_closed(&run), watch_run(&run));
}
