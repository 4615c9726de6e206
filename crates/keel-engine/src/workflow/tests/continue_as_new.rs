//! Continue-as-new: the closing run's events, the next run's start, and what carries over.

use super::*;

fn continue_as(run: &str, f: impl FnOnce(&mut ContinueAsNew)) -> WorkflowCommand {
    let mut c = ContinueAsNew {
        new_run_id: run.into(),
        input: b"next".to_vec(),
        ..Default::default()
    };
    f(&mut c);
    WorkflowCommand {
        kind: Some(Cmd::ContinueAsNew(c)),
        user_metadata: Vec::new(),
    }
}

fn started_attrs(h: &Harness, run: &str) -> WorkflowExecutionStarted {
    match attr(&h.history("wf", run), 1) {
        Attributes::WorkflowExecutionStarted(s) => s.clone(),
        other => panic!("not a start: {other:?}"),
    }
}

#[test]
fn continue_as_new_closes_the_run_and_starts_the_next_in_the_same_apply() {
    let mut h = Harness::new();
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf", "r1")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        input: b"first".to_vec(),
        request_id: "req".into(),
        header: b"hdr".to_vec(),
        memo: b"memo".to_vec(),
        ..Default::default()
    }));
    let wft = h.poll(TaskKind::Workflow);
    let out = h.complete_wft(&token(&wft), vec![continue_as("r2", |_| {})]);
    assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    assert_eq!(
        h.types("wf", "r1"),
        [
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted",
            "WorkflowTaskCompleted",
            "WorkflowExecutionContinuedAsNew",
        ]
    );
    let history = h.history("wf", "r1");
    let Attributes::WorkflowExecutionContinuedAsNew(c) = attr(&history, 5) else {
        panic!("not continued");
    };
    assert_eq!(c.new_execution_run_id, "r2");
    assert_eq!(c.workflow_task_completed_event_id, 4);
    assert_eq!(
        (c.workflow_type.as_str(), c.task_queue.as_str()),
        ("hello", TQ)
    );
    assert_eq!(c.input, b"next");
    assert_eq!(
        (c.header.as_slice(), c.memo.as_slice()),
        (&b"hdr"[..], &b"memo"[..])
    );
    let old = h.state("wf", "r1");
    assert_eq!(old.status, RunStatus::ContinuedAsNew as i32);
    assert_eq!(old.new_execution_run_id, "r2");

    // The next run: started and its first task scheduled, in the same entry.
    assert_eq!(
        h.types("wf", "r2"),
        ["WorkflowExecutionStarted", "WorkflowTaskScheduled"]
    );
    let s = started_attrs(&h, "r2");
    assert_eq!(s.continued_execution_run_id, "r1");
    assert_eq!(s.first_execution_run_id, "r1");
    assert_eq!(s.original_execution_run_id, "r2");
    assert_eq!(
        (s.input.as_slice(), s.initiator, s.attempt),
        (&b"next"[..], 1, 1)
    );
    assert_eq!(
        (s.header.as_slice(), s.memo.as_slice()),
        (&b"hdr"[..], &b"memo"[..])
    );

    // The workflow id now means r2: a signal without a run id lands there.
    let out = h.apply(Kind::SignalWorkflow(SignalWorkflow {
        run: Some(run_key("wf", "")),
        signal_name: "s".into(),
        ..Default::default()
    }));
    assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    assert!(h.types("wf", "r2").contains(&"WorkflowExecutionSignaled"));

    // A run that continues again keeps the chain's first run id; set fields replace.
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(
        &token(&wft),
        vec![continue_as("r3", |c| {
            c.workflow_type = "other".into();
            c.memo = b"memo2".to_vec();
        })],
    );
    let s = started_attrs(&h, "r3");
    assert_eq!(s.first_execution_run_id, "r1");
    assert_eq!(s.continued_execution_run_id, "r2");
    assert_eq!(s.workflow_type, "other");
    assert_eq!(
        (s.header.as_slice(), s.memo.as_slice()),
        (&b"hdr"[..], &b"memo2"[..])
    );
    let current = h.state("wf", "r3");
    assert_eq!(current.status, RunStatus::Running as i32);
}

#[test]
fn continuing_while_a_signal_is_buffered_is_an_unhandled_command() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.apply(Kind::SignalWorkflow(SignalWorkflow {
        run: Some(run_key("wf", "")),
        signal_name: "s".into(),
        ..Default::default()
    }));
    let out = h.complete_wft(&token(&wft), vec![continue_as("r2", |_| {})]);
    assert!(
        matches!(out, Outcome::InvalidArgument(ref m) if m == "UnhandledCommand"),
        "{out:?}"
    );
    assert_eq!(h.state("wf", "r1").status, RunStatus::Running as i32);
    assert!(read_mutable_state(&h.store, &run_key("wf", "r2"))
        .expect("read")
        .is_none());
}

#[test]
fn a_continue_as_new_without_a_run_id_fails_the_task_with_bad_attributes() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    let out = h.complete_wft(&token(&wft), vec![continue_as("", |_| {})]);
    assert!(matches!(out, Outcome::InvalidArgument(_)), "{out:?}");
    let history = h.history("wf", "r1");
    let Attributes::WorkflowTaskFailed(f) = attr(&history, 4) else {
        panic!("task not failed");
    };
    assert_eq!(
        f.cause,
        WorkflowTaskFailedCause::BadContinueAsNewAttributes as i32
    );
}

#[test]
fn a_backoff_delays_the_next_runs_first_task_in_replicated_time() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(
        &token(&wft),
        vec![continue_as("r2", |c| c.backoff_start_ms = 5_000)],
    );
    assert_eq!(h.types("wf", "r2"), ["WorkflowExecutionStarted"]);
    assert_eq!(
        started_attrs(&h, "r2").first_workflow_task_backoff_ms,
        5_000
    );
    assert!(
        h.poll(TaskKind::Workflow).is_none(),
        "no task before the backoff"
    );
    h.fire("wf", "r2", DeadlineKind::FirstTaskBackoff);
    assert_eq!(
        h.types("wf", "r2"),
        ["WorkflowExecutionStarted", "WorkflowTaskScheduled"]
    );
    assert!(h.poll(TaskKind::Workflow).is_some());
}

#[test]
fn the_execution_timeout_spans_the_chain() {
    let mut h = Harness::new();
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf", "r1")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        execution_timeout_ms: 10_000,
        run_timeout_ms: 8_000,
        ..Default::default()
    }));
    let started_at = h.now_ms;
    h.now_ms += 4_000;
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![continue_as("r2", |_| {})]);
    let next = h.state("wf", "r2");
    let timeout = next
        .deadlines
        .iter()
        .find(|d| d.kind == DeadlineKind::RunTimeout as i32)
        .expect("run timeout armed");
    // The run's own 8 s would end at +12 s; the execution's 10 s end at +10 s.
    assert_eq!(timeout.fire_at_ms, started_at + 10_000);
    assert_eq!(next.execution_expiration_ms, started_at + 10_000);
    h.fire("wf", "r2", DeadlineKind::RunTimeout);
    assert_eq!(h.state("wf", "r2").status, RunStatus::TimedOut as i32);
}

#[test]
fn task_started_events_carry_the_history_size_and_suggest_continuing_past_the_limit() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    let history = h.history("wf", "r1");
    let Attributes::WorkflowTaskStarted(first) = attr(&history, 3) else {
        panic!("no started event");
    };
    assert!(first.history_size_bytes > 0, "{first:?}");
    assert!(!first.suggest_continue_as_new);
    h.complete_wft(&token(&wft), Vec::new());
    for i in 0..SUGGEST_CONTINUE_AS_NEW_EVENTS {
        h.apply(Kind::SignalWorkflow(SignalWorkflow {
            run: Some(run_key("wf", "")),
            signal_name: "s".into(),
            request_id: format!("sig-{i}"),
            ..Default::default()
        }));
    }
    let wft = h.poll(TaskKind::Workflow).expect("a task");
    let history = h.history("wf", "r1");
    let Attributes::WorkflowTaskStarted(late) = attr(&history, wft.started_event_id) else {
        panic!("no started event");
    };
    assert!(late.suggest_continue_as_new, "{late:?}");
    assert!(late.history_size_bytes > first.history_size_bytes * 100);
    assert_eq!(
        late.history_size_bytes,
        h.state("wf", "r1").history_size_bytes - {
            // The started event itself is counted once it is written.
            use prost::Message;
            history.last().expect("events").encoded_len() as u64
        }
    );
}

#[test]
fn a_signal_during_a_backoff_waits_for_it() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(
        &token(&wft),
        vec![continue_as("r2", |c| c.backoff_start_ms = 5_000)],
    );
    h.apply(Kind::SignalWorkflow(SignalWorkflow {
        run: Some(run_key("wf", "")),
        signal_name: "early".into(),
        ..Default::default()
    }));
    assert_eq!(
        h.types("wf", "r2"),
        ["WorkflowExecutionStarted", "WorkflowExecutionSignaled"]
    );
    assert!(h.poll(TaskKind::Workflow).is_none(), "the backoff holds");
    h.fire("wf", "r2", DeadlineKind::FirstTaskBackoff);
    assert!(h.poll(TaskKind::Workflow).is_some());
}

#[test]
fn a_terminate_naming_the_chain_reaches_its_current_run_and_no_other() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![continue_as("r2", |_| {})]);
    let terminate = |h: &mut Harness, first: &str| {
        h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
            run: Some(run_key("wf", "r1")),
            reason: "stop".into(),
            first_execution_run_id: first.into(),
            ..Default::default()
        }))
    };
    // Another chain's first run: NOT_FOUND, nothing changes.
    assert!(matches!(terminate(&mut h, "r0"), Outcome::NotFound(_)));
    assert_eq!(h.state("wf", "r2").status, RunStatus::Running as i32);
    // This chain's: the current run (r2), though the request named r1.
    assert!(matches!(terminate(&mut h, "r1"), Outcome::Accepted(_)));
    assert_eq!(h.state("wf", "r2").status, RunStatus::Terminated as i32);
}

#[test]
fn a_namespaces_own_thresholds_apply_to_runs_started_after_they_are_set() {
    let mut h = Harness::new();
    h.start("old", "r0", "req-0", IdReusePolicy::Unspecified);
    let out = h.apply(Kind::SetNamespaceLimits(SetNamespaceLimits {
        namespace: NS.into(),
        suggest_continue_as_new_events: 8,
        suggest_continue_as_new_bytes: 0,
    }));
    assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    let missing = h.apply(Kind::SetNamespaceLimits(SetNamespaceLimits {
        namespace: "nowhere".into(),
        ..Default::default()
    }));
    assert!(matches!(missing, Outcome::NotFound(_)), "{missing:?}");
    h.start("wf", "r1", "req-1", IdReusePolicy::Unspecified);
    assert_eq!(h.state("wf", "r1").suggest_continue_as_new_events, 8);
    assert_eq!(
        h.state("old", "r0").suggest_continue_as_new_events,
        0,
        "a run started before keeps the defaults"
    );
    h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
        run: Some(run_key("old", "r0")),
        ..Default::default()
    }));
    // Past 8 events the new run's task suggests continuing as new.
    let mut suggested = false;
    for i in 0..4 {
        let wft = h.poll(TaskKind::Workflow).expect("a task");
        let run = wft.token.as_ref().and_then(|t| t.run.clone()).expect("run");
        let history = read_history(&h.store, &run, 1, i64::MAX - 1).unwrap();
        if let Attributes::WorkflowTaskStarted(s) = attr(&history, wft.started_event_id) {
            if run.workflow_id == "wf" {
                suggested |= s.suggest_continue_as_new;
            } else {
                assert!(!s.suggest_continue_as_new, "the old run keeps 4,096");
            }
        }
        h.complete_wft(&token(&Some(wft)), Vec::new());
        h.apply(Kind::SignalWorkflow(SignalWorkflow {
            run: Some(run_key(&run.workflow_id, "")),
            signal_name: "s".into(),
            request_id: format!("sig-{i}"),
            ..Default::default()
        }));
    }
    assert!(suggested, "{:?}", h.types("wf", "r1"));
}
