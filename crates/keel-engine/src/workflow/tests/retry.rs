//! The workflow retry policy: failed and timed-out runs start their next attempt.

use super::*;

fn fail(next: &str, failure_type: &str) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::FailWorkflow(FailWorkflow {
            failure: b"boom".to_vec(),
            failure_type: failure_type.into(),
            non_retryable: false,
            next_run_id: next.into(),
        })),
        user_metadata: Vec::new(),
    }
}

impl Harness {
    fn start_retrying(&mut self, max_attempts: i32, non_retryable: &[&str]) {
        self.apply(Kind::StartWorkflow(StartWorkflow {
            run: Some(run_key("wf", "r1")),
            workflow_type: "hello".into(),
            task_queue: TQ.into(),
            input: b"same input".to_vec(),
            retry_policy: Some(RetryPolicy {
                initial_interval_ms: 1_000,
                backoff_coefficient: 2.0,
                maximum_attempts: max_attempts,
                non_retryable_error_types: non_retryable.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }

    fn close_event(&self, run: &str) -> Attributes {
        self.history("wf", run)
            .last()
            .and_then(|e| e.attributes.clone())
            .expect("events")
    }
}

#[test]
fn a_failed_run_retries_after_its_backoff_with_the_same_input_until_attempts_run_out() {
    let mut h = Harness::new();
    h.start_retrying(3, &[]);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![fail("r2", "Flaky")]);
    let Attributes::WorkflowExecutionFailed(f) = h.close_event("r1") else {
        panic!("not failed: {:?}", h.types("wf", "r1"));
    };
    assert_eq!(f.retry_state, RetryState::InProgress as i32);
    assert_eq!(f.new_execution_run_id, "r2");
    assert_eq!(h.state("wf", "r1").status, RunStatus::Failed as i32);

    // Attempt 2: same input, started now, first task after the 1 s backoff.
    assert_eq!(h.types("wf", "r2"), ["WorkflowExecutionStarted"]);
    let history = h.history("wf", "r2");
    let Attributes::WorkflowExecutionStarted(s) = attr(&history, 1) else {
        panic!("no start");
    };
    assert_eq!((s.attempt, s.initiator), (2, 2));
    assert_eq!(s.input, b"same input");
    assert_eq!(s.continued_failure, b"boom");
    assert_eq!(s.first_workflow_task_backoff_ms, 1_000);
    assert_eq!(
        (
            s.first_execution_run_id.as_str(),
            s.continued_execution_run_id.as_str()
        ),
        ("r1", "r1")
    );
    assert!(h.poll(TaskKind::Workflow).is_none());
    h.fire("wf", "r2", DeadlineKind::FirstTaskBackoff);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![fail("r3", "Flaky")]);
    // Attempt 3 waits 2 s (coefficient 2), then fails for good.
    let next = h.state("wf", "r3");
    assert_eq!(next.attempt, 3);
    assert_eq!(
        next.deadlines
            .iter()
            .find(|d| d.kind == DeadlineKind::FirstTaskBackoff as i32)
            .map(|d| d.fire_at_ms - h.now_ms),
        Some(2_000)
    );
    h.fire("wf", "r3", DeadlineKind::FirstTaskBackoff);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![fail("r4", "Flaky")]);
    let Attributes::WorkflowExecutionFailed(f) = h.close_event("r3") else {
        panic!("not failed");
    };
    assert_eq!(f.retry_state, RetryState::MaximumAttemptsReached as i32);
    assert!(f.new_execution_run_id.is_empty());
    assert!(read_mutable_state(&h.store, &run_key("wf", "r4"))
        .expect("read")
        .is_none());
}

#[test]
fn a_non_retryable_failure_type_is_not_retried() {
    let mut h = Harness::new();
    h.start_retrying(0, &["Fatal"]);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![fail("r2", "Fatal")]);
    let Attributes::WorkflowExecutionFailed(f) = h.close_event("r1") else {
        panic!("not failed");
    };
    assert_eq!(f.retry_state, RetryState::NonRetryableFailure as i32);
    assert!(read_mutable_state(&h.store, &run_key("wf", "r2"))
        .expect("read")
        .is_none());
}

#[test]
fn a_timed_out_run_retries_and_without_a_policy_reports_timeout() {
    let mut h = Harness::new();
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf", "r1")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        run_timeout_ms: 5_000,
        retry_policy: Some(RetryPolicy {
            initial_interval_ms: 500,
            ..Default::default()
        }),
        ..Default::default()
    }));
    let ms = h.state("wf", "r1");
    let d = ms
        .deadlines
        .iter()
        .find(|d| d.kind == DeadlineKind::RunTimeout as i32)
        .expect("run timeout")
        .clone();
    h.now_ms = d.fire_at_ms;
    h.apply(Kind::FireDeadline(FireDeadline {
        run: Some(run_key("wf", "r1")),
        kind: d.kind,
        event_id: d.event_id,
        attempt: d.attempt,
        name: d.name,
        next_run_id: "r2".into(),
    }));
    let Attributes::WorkflowExecutionTimedOut(t) = h.close_event("r1") else {
        panic!("not timed out: {:?}", h.types("wf", "r1"));
    };
    assert_eq!(
        (t.retry_state, t.new_execution_run_id.as_str()),
        (RetryState::InProgress as i32, "r2")
    );
    assert_eq!(h.state("wf", "r2").attempt, 2);

    let mut plain = Harness::new();
    plain.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf", "p1")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        run_timeout_ms: 5_000,
        ..Default::default()
    }));
    plain.fire("wf", "p1", DeadlineKind::RunTimeout);
    let Attributes::WorkflowExecutionTimedOut(t) = plain.close_event("p1") else {
        panic!("not timed out");
    };
    assert_eq!(t.retry_state, RetryState::Timeout as i32);
}

#[test]
fn a_start_delay_holds_the_first_task_unless_a_signal_comes_first() {
    let mut h = Harness::new();
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf", "r1")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        start_delay_ms: 3_000,
        ..Default::default()
    }));
    assert_eq!(h.types("wf", "r1"), ["WorkflowExecutionStarted"]);
    let started_at = h.now_ms;
    assert_eq!(h.state("wf", "r1").execution_time_ms, started_at + 3_000);
    assert!(h.poll(TaskKind::Workflow).is_none());
    h.fire("wf", "r1", DeadlineKind::FirstTaskBackoff);
    assert!(h.poll(TaskKind::Workflow).is_some());

    // A signal during the delay starts the run at once; the delay then changes nothing.
    let mut h = Harness::new();
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf", "r1")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        start_delay_ms: 3_000,
        ..Default::default()
    }));
    h.apply(Kind::SignalWorkflow(SignalWorkflow {
        run: Some(run_key("wf", "")),
        signal_name: "wake".into(),
        ..Default::default()
    }));
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), Vec::new());
    let before = h.types("wf", "r1").len();
    h.fire("wf", "r1", DeadlineKind::FirstTaskBackoff);
    assert_eq!(h.types("wf", "r1").len(), before, "no second first task");
}

fn start_cron(h: &mut Harness, schedule: &str) -> Outcome {
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("wf", "r1")),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        input: b"tick".to_vec(),
        cron_schedule: schedule.into(),
        ..Default::default()
    }))
}

#[test]
fn a_cron_workflow_runs_at_each_scheduled_time_and_carries_its_last_result() {
    let mut h = Harness::new();
    h.now_ms = 60_000 * 10 + 15_000; // 00:10:15 on day 0
    start_cron(&mut h, "* * * * *");
    // The first run waits for 00:11:00.
    let history = h.history("wf", "r1");
    let Attributes::WorkflowExecutionStarted(s) = attr(&history, 1) else {
        panic!("no start");
    };
    assert_eq!(
        (s.first_workflow_task_backoff_ms, s.cron_schedule.as_str()),
        (45_000, "* * * * *")
    );
    assert!(h.poll(TaskKind::Workflow).is_none());
    h.fire("wf", "r1", DeadlineKind::FirstTaskBackoff);
    assert_eq!(h.now_ms, 660_000);
    let wft = h.poll(TaskKind::Workflow);
    h.now_ms += 5_000;
    h.complete_wft(
        &token(&wft),
        vec![WorkflowCommand {
            kind: Some(Cmd::CompleteWorkflow(CompleteWorkflow {
                result: b"first".to_vec(),
                next_run_id: "r2".into(),
            })),
            user_metadata: Vec::new(),
        }],
    );
    let Attributes::WorkflowExecutionCompleted(c) = h.close_event("r1") else {
        panic!("not completed");
    };
    assert_eq!(c.new_execution_run_id, "r2");
    let history = h.history("wf", "r2");
    let Attributes::WorkflowExecutionStarted(s) = attr(&history, 1) else {
        panic!("no start");
    };
    // Completed at 00:11:05; the next run waits for 00:12:00.
    assert_eq!(s.first_workflow_task_backoff_ms, 55_000);
    assert_eq!(
        (s.last_completion_result.as_slice(), s.initiator),
        (&b"first"[..], 3)
    );
    assert_eq!(s.input, b"tick");

    // A terminated cron workflow stops.
    h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
        run: Some(run_key("wf", "")),
        reason: "stop".into(),
        ..Default::default()
    }));
    assert_eq!(h.state("wf", "r2").status, RunStatus::Terminated as i32);
}

#[test]
fn a_failed_cron_run_still_schedules_the_next_and_a_bad_schedule_is_refused() {
    let mut h = Harness::new();
    start_cron(&mut h, "@every 10s");
    h.fire("wf", "r1", DeadlineKind::FirstTaskBackoff);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![fail("r2", "Boom")]);
    let Attributes::WorkflowExecutionFailed(f) = h.close_event("r1") else {
        panic!("not failed");
    };
    assert_eq!(
        (f.retry_state, f.new_execution_run_id.as_str()),
        (RetryState::RetryPolicyNotSet as i32, "r2")
    );
    assert_eq!(h.state("wf", "r2").status, RunStatus::Running as i32);

    let mut h = Harness::new();
    let out = start_cron(&mut h, "every tuesday");
    assert!(matches!(out, Outcome::InvalidArgument(_)), "{out:?}");
}
