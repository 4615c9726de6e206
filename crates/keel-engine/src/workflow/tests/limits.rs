//! History limits: a run whose history grows past 51,200 events or 50 MiB is terminated with
//! Temporal's reason, and the write that crossed is answered INVALID_ARGUMENT.

use crate::workflow::limits::{
    COUNT_EXCEEDED, HISTORY_COUNT_LIMIT, HISTORY_SIZE_LIMIT_BYTES, SIZE_EXCEEDED,
};

use super::*;

fn signal_with(h: &mut Harness, input: Vec<u8>) -> Outcome {
    h.apply(Kind::SignalWorkflow(SignalWorkflow {
        run: Some(run_key("wf", "")),
        signal_name: "grow".into(),
        input,
        ..Default::default()
    }))
}

fn assert_terminated_by(h: &Harness, reason: &str) {
    let ms = h.state("wf", "r1");
    assert_eq!(ms.status, RunStatus::Terminated as i32);
    let Some(Attributes::WorkflowExecutionTerminated(t)) = h
        .history("wf", "r1")
        .last()
        .and_then(|e| e.attributes.clone())
    else {
        panic!("not terminated");
    };
    assert_eq!(
        (t.reason.as_str(), t.identity.as_str()),
        (reason, "history-service")
    );
}

#[test]
fn a_history_past_the_size_limit_terminates_the_run() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let chunk = vec![7u8; 1 << 20];
    let mut accepted = 0;
    let last = loop {
        match signal_with(&mut h, chunk.clone()) {
            Outcome::Accepted(_) => accepted += 1,
            other => break other,
        }
        assert!(accepted < 100, "the limit never applied");
    };
    assert!(
        matches!(last, Outcome::InvalidArgument(ref m) if m == SIZE_EXCEEDED),
        "{last:?}"
    );
    // The 50th one-MiB signal crosses 50 MiB: every event carries more than its input.
    assert_eq!(accepted as u64, (HISTORY_SIZE_LIMIT_BYTES >> 20) - 1);
    assert_terminated_by(&h, SIZE_EXCEEDED);
    // Nothing more is written to it.
    assert!(matches!(signal_with(&mut h, vec![1]), Outcome::NotFound(_)));
}

#[test]
fn a_history_past_the_count_limit_terminates_the_run() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    // Started and WorkflowTaskScheduled are events 1 and 2; each signal adds one.
    for _ in 2..HISTORY_COUNT_LIMIT {
        let out = signal_with(&mut h, Vec::new());
        assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    }
    assert_eq!(h.state("wf", "r1").next_event_id - 1, HISTORY_COUNT_LIMIT);
    let out = signal_with(&mut h, Vec::new());
    assert!(
        matches!(out, Outcome::InvalidArgument(ref m) if m == COUNT_EXCEEDED),
        "{out:?}"
    );
    assert_terminated_by(&h, COUNT_EXCEEDED);
}

#[test]
fn a_command_past_the_blob_limit_fails_its_task_and_terminates_the_run() {
    let mut h = Harness::new();
    h.start("wf", "r1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    let message = "ScheduleActivityTaskCommandAttributes.Input exceeds size limit.";
    // The proposer saw the size; a valid command beside it is not applied either.
    let out = h.complete_wft(
        &token(&wft),
        vec![
            timer("t", 1_000),
            WorkflowCommand {
                kind: Some(Cmd::Invalid(InvalidCommand {
                    cause: WorkflowTaskFailedCause::BadScheduleActivityAttributes as i32,
                    message: message.into(),
                    terminate: true,
                })),
                user_metadata: Vec::new(),
            },
        ],
    );
    assert!(
        matches!(out, Outcome::InvalidArgument(ref m) if m == message),
        "{out:?}"
    );
    assert_eq!(
        h.types("wf", "r1"),
        [
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted",
            "WorkflowTaskFailed",
            "WorkflowExecutionTerminated",
        ]
    );
    let history = h.history("wf", "r1");
    let Some(Attributes::WorkflowTaskFailed(f)) = history[3].attributes.clone() else {
        panic!("no WorkflowTaskFailed");
    };
    assert_eq!(
        (f.cause, f.message.as_str()),
        (
            WorkflowTaskFailedCause::BadScheduleActivityAttributes as i32,
            message
        )
    );
    // Temporal's reason, which the SDKs show as the termination message.
    assert_terminated_by(
        &h,
        "BadScheduleActivityAttributes: ScheduleActivityTaskCommandAttributes.Input exceeds size limit.",
    );
    assert!(h.state("wf", "r1").workflow_task.is_none());
}
