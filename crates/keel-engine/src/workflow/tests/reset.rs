//! ResetWorkflowExecution: the copied prefix, the reset marker, reapplied signals, the
//! terminated base, and the points that are refused.

use crate::workflow::reset::ResetWorkflow;

use super::*;

fn reset_to(point: i64, new_run: &str, request_id: &str, reapply_signals: bool) -> Kind {
    Kind::ResetWorkflow(ResetWorkflow {
        run: Some(run_key("wf", "r1")),
        workflow_task_finish_event_id: point,
        new_run_id: new_run.into(),
        reason: "bad deploy".into(),
        request_id: request_id.into(),
        identity: "operator".into(),
        reapply_signals,
    })
}

/// `wf`/`r1`: an activity scheduled by the first task and completed, a signal, and the
/// second task completed with nothing: 11 events.
fn run_with_history(h: &mut Harness) {
    h.started_with(vec![activity("a1")]);
    let act = h.poll(TaskKind::Activity);
    h.complete_activity(&token(&act), b"done");
    h.signal("sig-1");
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![]);
    assert_eq!(h.types("wf", "r1").len(), 11, "{:?}", h.types("wf", "r1"));
}

#[test]
fn a_reset_to_the_first_task_copies_the_prefix_reapplies_signals_and_terminates_the_base() {
    let mut h = Harness::new();
    run_with_history(&mut h);
    h.now_ms += 5_000;
    let out = h.apply(reset_to(4, "r2", "reset-1", true));
    assert!(
        matches!(out, Outcome::Started(ref s) if s.run_id == "r2" && s.started),
        "{out:?}"
    );
    assert_eq!(
        h.types("wf", "r2"),
        [
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted",
            "WorkflowTaskFailed",
            "WorkflowExecutionSignaled",
            "WorkflowTaskScheduled",
        ]
    );
    let old = h.history("wf", "r1");
    let new = h.history("wf", "r2");
    assert_eq!(old[..3], new[..3], "the prefix is copied verbatim");
    let Attributes::WorkflowTaskFailed(f) = attr(&new, 4).clone() else {
        panic!("no reset marker");
    };
    assert_eq!(f.cause, WorkflowTaskFailedCause::ResetWorkflow as i32);
    assert_eq!((f.scheduled_event_id, f.started_event_id), (2, 3));
    assert_eq!(
        (f.base_run_id.as_str(), f.new_run_id.as_str()),
        ("r1", "r2")
    );
    assert_eq!(f.message, "bad deploy");
    let Attributes::WorkflowExecutionSignaled(s) = attr(&new, 5).clone() else {
        panic!("no reapplied signal");
    };
    assert_eq!(
        (s.signal_name.as_str(), s.input.as_slice()),
        ("go", &b"sig"[..])
    );

    // The base run is terminated; the new run is current and its task goes out.
    assert_eq!(h.state("wf", "r1").status, RunStatus::Terminated as i32);
    assert_eq!(
        h.types("wf", "r1").last(),
        Some(&"WorkflowExecutionTerminated")
    );
    let ms = h.state("wf", "r2");
    assert_eq!(ms.status, RunStatus::Running as i32);
    assert_eq!(
        ms.signal_request_ids,
        ["sig-1"],
        "a resent signal stays deduplicated"
    );
    let wft = h.poll(TaskKind::Workflow).expect("the new run's task");
    assert_eq!(
        wft.token.as_ref().and_then(|t| t.run.clone()),
        Some(run_key("wf", "r2"))
    );
    assert!(matches!(h.signal("sig-1"), Outcome::Accepted(_)));
    assert_eq!(
        h.state("wf", "r2").buffered.len(),
        0,
        "the duplicate was dropped"
    );

    // The same request again answers with the run it made.
    let again = h.apply(reset_to(4, "r3", "reset-1", true));
    assert!(
        matches!(again, Outcome::Started(ref s) if s.run_id == "r2" && !s.started),
        "{again:?}"
    );
}

#[test]
fn signals_are_not_reapplied_when_excluded() {
    let mut h = Harness::new();
    run_with_history(&mut h);
    h.apply(reset_to(4, "r2", "reset-1", false));
    assert_eq!(
        h.types("wf", "r2")[3..],
        ["WorkflowTaskFailed", "WorkflowTaskScheduled"]
    );
}

#[test]
fn a_point_that_is_not_a_finished_task_or_leaves_a_child_running_is_refused_by_name() {
    let mut h = Harness::new();
    run_with_history(&mut h);
    match h.apply(reset_to(5, "r2", "x", true)) {
        Outcome::InvalidArgument(m) => assert!(m.contains("not the end of a started"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A third task starts a child; a signal brings a fourth task, which ends with the child
    // still running: a reset there would leave it behind.
    h.signal("sig-2");
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(
        &token(&wft),
        vec![WorkflowCommand {
            kind: Some(Cmd::StartChildWorkflow(StartChildWorkflow {
                workflow_id: "kid".into(),
                workflow_type: "child".into(),
                task_queue: "kids".into(),
                new_run_id: "kid-1".into(),
                ..Default::default()
            })),
            user_metadata: Vec::new(),
        }],
    );
    h.signal("sig-3");
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![]);
    let last_completed = last_completed_task(&h);
    match h.apply(reset_to(last_completed, "r2", "x", true)) {
        Outcome::InvalidArgument(m) => {
            assert!(m.contains("child workflow kid (initiated at event"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.state("wf", "r1").status,
        RunStatus::Running as i32,
        "nothing changed"
    );
    assert!(read_mutable_state(&h.store, &run_key("wf", "r2"))
        .unwrap()
        .is_none());
}

fn last_completed_task(h: &Harness) -> i64 {
    h.history("wf", "r1")
        .iter()
        .rev()
        .find(|e| matches!(e.attributes, Some(Attributes::WorkflowTaskCompleted(_))))
        .map(|e| e.event_id)
        .expect("a completed task")
}

#[test]
fn pending_timers_are_rearmed_and_pending_activities_scheduled_again() {
    let mut h = Harness::new();
    run_with_history(&mut h);
    // A third task schedules activity a2 and starts a 60 s timer; a signal brings a fourth
    // task, which ends with both pending.
    h.signal("sig-2");
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![activity("a2"), timer("t1", 60_000)]);
    let fire_at = h.state("wf", "r1").timers[0].fire_at_ms;
    h.signal("sig-3");
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(&token(&wft), vec![]);
    // The base's attempt of a2 is handed out before the reset (its token then goes stale).
    let stale = h.poll(TaskKind::Activity).expect("a2's first attempt");
    h.now_ms += 1_000;
    let out = h.apply(reset_to(last_completed_task(&h), "r2", "reset-2", true));
    assert!(matches!(out, Outcome::Started(_)), "{out:?}");
    let ms = h.state("wf", "r2");
    assert_eq!(
        ms.timers
            .iter()
            .map(|t| (t.timer_id.as_str(), t.fire_at_ms))
            .collect::<Vec<_>>(),
        [("t1", fire_at)],
        "the timer keeps its fire time"
    );
    assert_eq!(
        ms.activities
            .iter()
            .map(|a| (a.activity_id.as_str(), a.attempt, a.started))
            .collect::<Vec<_>>(),
        [("a2", 1, false)]
    );
    // The base run's attempt is stale; the new run's attempt goes out and completes.
    assert!(matches!(
        h.complete_activity(&token(&Some(stale)), b"late"),
        Outcome::NotFound(_)
    ));
    // The new run's first task goes first in the queue; then a2's new attempt.
    let wft = h.poll(TaskKind::Workflow).expect("the new run's task");
    assert_eq!(
        wft.token.as_ref().and_then(|t| t.run.clone()),
        Some(run_key("wf", "r2"))
    );
    let act = h.poll(TaskKind::Activity).expect("a2 scheduled again");
    assert_eq!(
        act.token.as_ref().and_then(|t| t.run.clone()),
        Some(run_key("wf", "r2"))
    );
    h.complete_wft(&token(&Some(wft)), vec![]);
    assert!(matches!(
        h.complete_activity(&token(&Some(act)), b"done again"),
        Outcome::Accepted(_)
    ));
    // The timer fires at its original time in the new run.
    assert!(matches!(
        h.fire("wf", "r2", DeadlineKind::UserTimer),
        Outcome::Accepted(_)
    ));
    assert!(h.types("wf", "r2").contains(&"TimerFired"));
    assert!(h.now_ms >= fire_at);
}

#[test]
fn a_workflow_task_started_event_names_the_point_right_after_it() {
    let new_run = |point: i64| {
        let mut h = Harness::new();
        run_with_history(&mut h);
        let out = h.apply(reset_to(point, "r2", "reset-1", true));
        assert!(matches!(out, Outcome::Started(_)), "{point}: {out:?}");
        h.types("wf", "r2")
    };
    // Event 3 is the first task's WorkflowTaskStarted, 4 its WorkflowTaskCompleted.
    assert_eq!(new_run(3), new_run(4));
}
