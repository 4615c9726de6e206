//! Signals and cancel requests between runs.

use super::*;

fn signal_external(wf: &str, name: &str) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::SignalExternal(SignalExternal {
            workflow_id: wf.into(),
            signal_name: name.into(),
            input: b"hi".to_vec(),
            ..Default::default()
        })),
        user_metadata: Vec::new(),
    }
}

fn cancel_external(wf: &str) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::RequestCancelExternal(RequestCancelExternal {
            workflow_id: wf.into(),
            reason: "enough".into(),
            ..Default::default()
        })),
        user_metadata: Vec::new(),
    }
}

impl Harness {
    /// `target`/`t1` running on its own queue, then `src`/`s1` whose first task sends `cmds`.
    fn send(&mut self, cmds: Vec<WorkflowCommand>) {
        self.apply(Kind::StartWorkflow(StartWorkflow {
            run: Some(run_key("target", "t1")),
            workflow_type: "target".into(),
            task_queue: "tq-target".into(),
            ..Default::default()
        }));
        self.start("src", "s1", "req", IdReusePolicy::Unspecified);
        let wft = self.poll(TaskKind::Workflow);
        let out = self.complete_wft(&token(&wft), cmds);
        assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    }
}

#[test]
fn a_signal_reaches_the_target_once_and_the_sender_records_it() {
    let mut h = Harness::new();
    h.send(vec![signal_external("target", "ping")]);
    assert_eq!(
        h.types("src", "s1")[3..],
        [
            "WorkflowTaskCompleted",
            "SignalExternalWorkflowExecutionInitiated",
            "ExternalWorkflowExecutionSignaled",
            "WorkflowTaskScheduled",
        ]
    );
    let target = h.history("target", "t1");
    let Some(Attributes::WorkflowExecutionSignaled(sig)) =
        target.iter().find_map(|e| match &e.attributes {
            Some(a @ Attributes::WorkflowExecutionSignaled(_)) => Some(a.clone()),
            _ => None,
        })
    else {
        panic!("the target got no signal: {:?}", h.types("target", "t1"));
    };
    assert_eq!(
        (sig.signal_name.as_str(), sig.input.as_slice()),
        ("ping", &b"hi"[..])
    );
    assert_eq!(sig.external, Some(run_key("src", "s1")));
    assert_eq!(
        sig.request_id, "s1-5",
        "deduplicated by sender run and initiated event"
    );
    assert_eq!(h.state("target", "t1").signal_request_ids, ["s1-5"]);
}

#[test]
fn a_signal_or_cancel_to_a_workflow_that_does_not_run_fails() {
    let mut h = Harness::new();
    h.send(vec![
        signal_external("nobody", "ping"),
        cancel_external("nobody"),
    ]);
    let history = h.history("src", "s1");
    let Attributes::SignalExternalWorkflowExecutionFailed(f) = attr(&history, 6) else {
        panic!("{:?}", h.types("src", "s1"));
    };
    assert_eq!(
        (f.cause, f.initiated_event_id),
        (EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND, 5)
    );
    let Attributes::RequestCancelExternalWorkflowExecutionFailed(f) = attr(&history, 8) else {
        panic!("{:?}", h.types("src", "s1"));
    };
    assert_eq!(
        (f.cause, f.initiated_event_id),
        (EXTERNAL_WORKFLOW_EXECUTION_NOT_FOUND, 7)
    );
}

#[test]
fn a_cancel_request_reaches_the_target_and_child_only_spares_a_stranger() {
    let mut h = Harness::new();
    let only_children = WorkflowCommand {
        kind: Some(Cmd::SignalExternal(SignalExternal {
            workflow_id: "target".into(),
            signal_name: "ping".into(),
            child_workflow_only: true,
            ..Default::default()
        })),
        user_metadata: Vec::new(),
    };
    h.send(vec![cancel_external("target"), only_children]);
    let types = h.types("src", "s1");
    assert_eq!(
        types[4..8],
        [
            "RequestCancelExternalWorkflowExecutionInitiated",
            "ExternalWorkflowExecutionCancelRequested",
            "SignalExternalWorkflowExecutionInitiated",
            "SignalExternalWorkflowExecutionFailed",
        ]
    );
    let target = h.state("target", "t1");
    assert!(target.cancel_requested);
    assert!(h
        .types("target", "t1")
        .contains(&"WorkflowExecutionCancelRequested"));
    assert!(!h
        .types("target", "t1")
        .contains(&"WorkflowExecutionSignaled"));
}

#[test]
fn a_run_may_signal_itself() {
    let mut h = Harness::new();
    h.start("src", "s1", "req", IdReusePolicy::Unspecified);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![signal_external("src", "self")]);
    let types = h.types("src", "s1");
    assert_eq!(
        types[3..],
        [
            "WorkflowTaskCompleted",
            "SignalExternalWorkflowExecutionInitiated",
            "WorkflowExecutionSignaled",
            "ExternalWorkflowExecutionSignaled",
            "WorkflowTaskScheduled",
        ]
    );
}
