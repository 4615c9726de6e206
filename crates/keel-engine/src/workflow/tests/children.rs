//! Child workflows: start, the child's close in its parent, id conflicts, close policies.

use super::*;

const CHILD_TQ: &str = "tq-child";

fn start_child(wf: &str, run: &str, policy: ParentClosePolicy) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::StartChildWorkflow(StartChildWorkflow {
            workflow_id: wf.into(),
            workflow_type: "child".into(),
            task_queue: CHILD_TQ.into(),
            input: b"in".to_vec(),
            parent_close_policy: policy as i32,
            new_run_id: run.into(),
            ..Default::default()
        })),
        user_metadata: Vec::new(),
    }
}

impl Harness {
    fn poll_queue(&mut self, queue: &str) -> Option<Dispatched> {
        match self.apply(Kind::DispatchTask(DispatchTask {
            namespace: NS.into(),
            task_queue: queue.into(),
            kind: TaskKind::Workflow as i32,
            identity: "worker".into(),
            request_id: format!("req-{queue}-{}", self.now_ms),
        })) {
            Outcome::Dispatched(d) => Some(d),
            Outcome::NoTask(_) => None,
            other => panic!("poll: {other:?}"),
        }
    }

    /// A parent `p`/`r1` whose first task started the given children.
    fn parent_with(&mut self, children: Vec<WorkflowCommand>) {
        self.start("p", "r1", "req", IdReusePolicy::Unspecified);
        let wft = self.poll(TaskKind::Workflow);
        let out = self.complete_wft(&token(&wft), children);
        assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    }
}

#[test]
fn a_child_starts_in_the_same_apply_and_its_result_lands_in_the_parent_once() {
    let mut h = Harness::new();
    h.parent_with(vec![start_child("c", "c1", ParentClosePolicy::Unspecified)]);
    assert_eq!(
        h.types("p", "r1")[3..],
        [
            "WorkflowTaskCompleted",
            "StartChildWorkflowExecutionInitiated",
            "ChildWorkflowExecutionStarted",
            "WorkflowTaskScheduled",
        ]
    );
    let history = h.history("p", "r1");
    let Attributes::StartChildWorkflowExecutionInitiated(i) = attr(&history, 5) else {
        panic!("no initiated event");
    };
    assert_eq!(
        i.parent_close_policy,
        ParentClosePolicy::Terminate as i32,
        "the default"
    );
    assert_eq!(i.workflow_task_completed_event_id, 4);
    let Attributes::ChildWorkflowExecutionStarted(st) = attr(&history, 6) else {
        panic!("no started event");
    };
    assert_eq!((st.run_id.as_str(), st.initiated_event_id), ("c1", 5));

    // The child: its own run on its own queue, knowing its parent and root.
    assert_eq!(
        h.types("c", "c1"),
        ["WorkflowExecutionStarted", "WorkflowTaskScheduled"]
    );
    let child_history = h.history("c", "c1");
    let Attributes::WorkflowExecutionStarted(cs) = attr(&child_history, 1) else {
        panic!("no start");
    };
    assert_eq!(cs.parent, Some(run_key("p", "r1")));
    assert_eq!(cs.root, Some(run_key("p", "r1")));
    assert_eq!(
        (cs.parent_initiated_event_id, cs.task_queue.as_str()),
        (5, CHILD_TQ)
    );

    // The parent's task for the start; then the child completes.
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), Vec::new());
    let child_task = h.poll_queue(CHILD_TQ);
    h.complete_wft(&token(&child_task), vec![complete(b"child result")]);
    let history = h.history("p", "r1");
    let Some(Attributes::ChildWorkflowExecutionCompleted(done)) =
        history.iter().rev().find_map(|e| match &e.attributes {
            Some(a @ Attributes::ChildWorkflowExecutionCompleted(_)) => Some(a.clone()),
            _ => None,
        })
    else {
        panic!("no completion in the parent: {:?}", h.types("p", "r1"));
    };
    assert_eq!(done.result, b"child result");
    assert_eq!((done.initiated_event_id, done.started_event_id), (5, 6));
    assert!(h.state("p", "r1").children.is_empty());
    assert_eq!(
        h.types("p", "r1")
            .iter()
            .filter(|t| t.starts_with("ChildWorkflowExecutionCompleted"))
            .count(),
        1
    );
    assert_eq!(h.types("p", "r1").last(), Some(&"WorkflowTaskScheduled"));
}

#[test]
fn a_child_whose_id_is_taken_fails_to_start() {
    let mut h = Harness::new();
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key("busy", "b1")),
        workflow_type: "other".into(),
        task_queue: "tq-busy".into(),
        ..Default::default()
    }));
    h.parent_with(vec![start_child("busy", "c1", ParentClosePolicy::Abandon)]);
    let history = h.history("p", "r1");
    let Attributes::StartChildWorkflowExecutionFailed(f) = attr(&history, 6) else {
        panic!("not failed: {:?}", h.types("p", "r1"));
    };
    assert_eq!(f.cause, CHILD_WORKFLOW_ALREADY_EXISTS);
    assert_eq!(f.initiated_event_id, 5);
    assert!(read_mutable_state(&h.store, &run_key("busy", "c1"))
        .expect("read")
        .is_none());
    assert_eq!(h.state("busy", "b1").status, RunStatus::Running as i32);
}

#[test]
fn a_failed_child_is_recorded_as_failed_and_a_canceled_one_as_canceled() {
    let mut h = Harness::new();
    h.parent_with(vec![
        start_child("c", "c1", ParentClosePolicy::Abandon),
        start_child("d", "d1", ParentClosePolicy::Abandon),
    ]);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), Vec::new());
    let c = h.poll_queue(CHILD_TQ);
    let d = h.poll_queue(CHILD_TQ);
    let fail = WorkflowCommand {
        kind: Some(Cmd::FailWorkflow(FailWorkflow {
            failure: b"boom".to_vec(),
            ..Default::default()
        })),
        user_metadata: Vec::new(),
    };
    h.complete_wft(&token(&c), vec![fail]);
    h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
        run: Some(run_key("d", "")),
        reason: "stop".into(),
        ..Default::default()
    }));
    drop(d);
    let types = h.types("p", "r1");
    assert!(types.contains(&"ChildWorkflowExecutionFailed"), "{types:?}");
    assert!(
        types.contains(&"ChildWorkflowExecutionTerminated"),
        "{types:?}"
    );
    let failed = h
        .history("p", "r1")
        .into_iter()
        .find_map(|e| match e.attributes {
            Some(Attributes::ChildWorkflowExecutionFailed(x)) => Some(x),
            _ => None,
        })
        .expect("failed event");
    assert_eq!(failed.failure, b"boom");
}

#[test]
fn a_closing_parent_applies_each_childs_close_policy() {
    let mut h = Harness::new();
    h.parent_with(vec![
        start_child("t", "t1", ParentClosePolicy::Terminate),
        start_child("c", "c1", ParentClosePolicy::RequestCancel),
        start_child("a", "a1", ParentClosePolicy::Abandon),
    ]);
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![complete(b"parent done")]);
    assert_eq!(h.state("p", "r1").status, RunStatus::Completed as i32);
    assert_eq!(h.state("t", "t1").status, RunStatus::Terminated as i32);
    let t_history = h.history("t", "t1");
    let Some(Attributes::WorkflowExecutionTerminated(term)) =
        t_history.last().and_then(|e| e.attributes.clone())
    else {
        panic!("not terminated");
    };
    assert_eq!(term.reason, "by parent close policy");
    assert_eq!(h.state("c", "c1").status, RunStatus::Running as i32);
    assert!(h
        .types("c", "c1")
        .contains(&"WorkflowExecutionCancelRequested"));
    assert_eq!(h.state("a", "a1").status, RunStatus::Running as i32);
    assert!(!h
        .types("a", "a1")
        .contains(&"WorkflowExecutionCancelRequested"));
    // The closed parent records nothing about the children it closed.
    assert_eq!(
        h.types("p", "r1").last(),
        Some(&"WorkflowExecutionCompleted")
    );
}

#[test]
fn deleting_a_running_parent_terminates_it_removes_it_and_applies_its_close_policy() {
    let mut h = Harness::new();
    h.parent_with(vec![start_child("t", "t1", ParentClosePolicy::Terminate)]);
    let out = h.apply(Kind::DeleteWorkflow(DeleteWorkflow {
        run: Some(run_key("p", "")),
        identity: "admin".into(),
    }));
    assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    assert!(read_mutable_state(&h.store, &run_key("p", "r1"))
        .expect("read")
        .is_none());
    assert!(h.history("p", "r1").is_empty(), "history removed");
    assert_eq!(h.state("t", "t1").status, RunStatus::Terminated as i32);
    let again = h.apply(Kind::DeleteWorkflow(DeleteWorkflow {
        run: Some(run_key("p", "")),
        identity: "admin".into(),
    }));
    assert!(matches!(again, Outcome::NotFound(_)), "{again:?}");
}

fn child_with(wf: &str, run: &str, f: impl FnOnce(&mut StartChildWorkflow)) -> WorkflowCommand {
    let mut c = StartChildWorkflow {
        workflow_id: wf.into(),
        workflow_type: "child".into(),
        task_queue: CHILD_TQ.into(),
        new_run_id: run.into(),
        ..Default::default()
    };
    f(&mut c);
    WorkflowCommand {
        kind: Some(Cmd::StartChildWorkflow(c)),
        user_metadata: Vec::new(),
    }
}

#[test]
fn a_child_with_a_retry_policy_is_retried_and_its_parent_sees_only_the_last_attempt() {
    let mut h = Harness::new();
    let policy = RetryPolicy {
        initial_interval_ms: 1_000,
        backoff_coefficient: 2.0,
        maximum_attempts: 3,
        ..Default::default()
    };
    h.parent_with(vec![child_with("c", "c1", |c| {
        c.retry_policy = Some(policy.clone())
    })]);
    let Attributes::StartChildWorkflowExecutionInitiated(i) =
        attr(&h.history("p", "r1"), 5).clone()
    else {
        panic!("no initiated event");
    };
    assert_eq!(i.retry_policy.as_ref(), Some(&policy));
    let wft = h.poll_queue(CHILD_TQ);
    let out = h.complete_wft(
        &token(&wft),
        vec![WorkflowCommand {
            kind: Some(Cmd::FailWorkflow(FailWorkflow {
                failure: b"boom".to_vec(),
                failure_type: "Flaky".into(),
                non_retryable: false,
                next_run_id: "c2".into(),
            })),
            user_metadata: Vec::new(),
        }],
    );
    assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    let parent_types = h.types("p", "r1");
    assert!(
        !parent_types.contains(&"ChildWorkflowExecutionFailed"),
        "a retried attempt is not the child's close: {parent_types:?}"
    );
    // The second attempt keeps its parent and succeeds after the backoff.
    let second = h.state("c", "c2");
    assert_eq!(second.parent, Some(run_key("p", "r1")));
    assert_eq!(second.attempt, 2);
    h.fire("c", "c2", DeadlineKind::FirstTaskBackoff);
    let wft = h.poll_queue(CHILD_TQ);
    h.complete_wft(&token(&wft), vec![complete(b"second time")]);
    let closes: Vec<_> = h
        .types("p", "r1")
        .into_iter()
        .filter(|t| {
            t.starts_with("ChildWorkflowExecution") && *t != "ChildWorkflowExecutionStarted"
        })
        .collect();
    assert_eq!(closes, ["ChildWorkflowExecutionCompleted"]);
}

#[test]
fn a_cron_child_waits_for_its_schedule_and_a_bad_schedule_fails_the_parent_task() {
    let mut h = Harness::new();
    h.parent_with(vec![child_with("c", "c1", |c| {
        c.cron_schedule = "@every 1m".into()
    })]);
    assert_eq!(h.types("c", "c1"), ["WorkflowExecutionStarted"]);
    let child = h.state("c", "c1");
    assert!(child.pending_backoff);
    assert_eq!(child.cron_schedule, "@every 1m");
    assert!(
        h.poll_queue(CHILD_TQ).is_none(),
        "nothing before the schedule's time"
    );
    h.fire("c", "c1", DeadlineKind::FirstTaskBackoff);
    assert!(h.poll_queue(CHILD_TQ).is_some());

    // (The first parent's pending task would take the next poll.)
    h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
        run: Some(run_key("p", "r1")),
        ..Default::default()
    }));
    // An invalid schedule, and a command the proposer found invalid, fail the parent's task.
    for (wf, cmd, cause, message) in [
        (
            "p2",
            child_with("c2", "c2r", |c| c.cron_schedule = "every tuesday".into()),
            WorkflowTaskFailedCause::BadStartChildExecutionAttributes,
            "Invalid CronSchedule.",
        ),
        (
            "p3",
            WorkflowCommand {
                kind: Some(Cmd::Invalid(InvalidCommand {
                    cause: WorkflowTaskFailedCause::BadStartChildExecutionAttributes as i32,
                    message: "MaximumAttempts cannot be negative on retry policy.".into(),
                    terminate: false,
                })),
                user_metadata: Vec::new(),
            },
            WorkflowTaskFailedCause::BadStartChildExecutionAttributes,
            "MaximumAttempts cannot be negative on retry policy.",
        ),
    ] {
        h.start(wf, "r1", &format!("req-{wf}"), IdReusePolicy::Unspecified);
        let wft = h.poll(TaskKind::Workflow);
        let out = h.complete_wft(&token(&wft), vec![cmd]);
        assert!(
            matches!(out, Outcome::InvalidArgument(ref m) if m == message),
            "{out:?}"
        );
        let Attributes::WorkflowTaskFailed(f) = attr(&h.history(wf, "r1"), 4).clone() else {
            panic!("no WorkflowTaskFailed: {:?}", h.types(wf, "r1"));
        };
        assert_eq!((f.cause, f.message.as_str()), (cause as i32, message));
        h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
            run: Some(run_key(wf, "r1")),
            ..Default::default()
        }));
    }
}

#[test]
fn a_child_commands_user_metadata_is_on_the_initiated_event_and_the_childs_start() {
    let mut h = Harness::new();
    let mut cmd = start_child("c", "c1", ParentClosePolicy::Abandon);
    cmd.user_metadata = b"child-summary".to_vec();
    h.parent_with(vec![cmd]);
    let initiated = h
        .history("p", "r1")
        .into_iter()
        .find(|e| e.event_type() == "StartChildWorkflowExecutionInitiated")
        .expect("initiated");
    assert_eq!(initiated.user_metadata, b"child-summary");
    let child = h.history("c", "c1");
    assert_eq!(child[0].event_type(), "WorkflowExecutionStarted");
    assert_eq!(child[0].user_metadata, b"child-summary");
    assert!(child[1..].iter().all(|e| e.user_metadata.is_empty()));
    assert_eq!(h.state("c", "c1").user_metadata, b"child-summary");
    // The parent's events after the Initiated one carry none.
    let after: Vec<_> = h
        .history("p", "r1")
        .into_iter()
        .filter(|e| e.event_id > initiated.event_id)
        .collect();
    assert!(
        after.iter().all(|e| e.user_metadata.is_empty()),
        "{after:?}"
    );
}
