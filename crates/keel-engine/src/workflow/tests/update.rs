//! Workflow updates: the events an accepted and completed update writes, a rejection that
//! writes none, deduplication by id, delivery with the next task, server-side rejection of
//! an unanswered update, the per-run limits, and what closing a run does to updates.

use super::*;
use crate::workflow::update::{MAX_IN_FLIGHT_UPDATES, REJECTED_UPDATE_TTL_MS};

fn admit(h: &mut Harness, id: &str) -> Outcome {
    h.apply(Kind::AdmitUpdate(AdmitUpdate {
        run: Some(run_key("wf", "")),
        first_execution_run_id: String::new(),
        update_id: id.into(),
        request: format!("request-{id}").into_bytes(),
    }))
}

fn accept(id: &str) -> UpdateMessage {
    UpdateMessage {
        message_id: format!("{id}/request/accept"),
        update_id: id.into(),
        body: Some(update_message::Body::Accept(UpdateAcceptance {
            accepted_request_sequencing_event_id: 5,
        })),
    }
}

fn respond(id: &str, outcome: &[u8]) -> UpdateMessage {
    UpdateMessage {
        message_id: format!("{id}/request/complete"),
        update_id: id.into(),
        body: Some(update_message::Body::Respond(UpdateResponse {
            outcome: outcome.to_vec(),
            identity: "worker".into(),
        })),
    }
}

fn reject(id: &str) -> UpdateMessage {
    UpdateMessage {
        message_id: format!("{id}/request/reject"),
        update_id: id.into(),
        body: Some(update_message::Body::Reject(UpdateRejection {
            outcome: b"rejected".to_vec(),
        })),
    }
}

fn protocol(m: &UpdateMessage) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::ProtocolMessage(m.message_id.clone())),
        user_metadata: Vec::new(),
    }
}

impl Harness {
    fn complete_with(
        &mut self,
        d: &Option<Dispatched>,
        commands: Vec<WorkflowCommand>,
        messages: Vec<UpdateMessage>,
    ) -> Outcome {
        self.apply(Kind::CompleteWorkflowTask(CompleteWorkflowTask {
            token: Some(token(d)),
            identity: "worker".into(),
            commands,
            messages,
            ..Default::default()
        }))
    }

    fn update(&self, id: &str) -> Option<UpdateRecord> {
        let run = self.state("wf", "r1").run.expect("run");
        crate::workflow::read_update(&self.store, &run, id).expect("read")
    }
}

fn state(rec: &UpdateRecord) -> UpdateState {
    UpdateState::try_from(rec.state).expect("a state")
}

#[test]
fn an_accepted_and_completed_update_writes_its_two_events_in_command_order() {
    let mut h = Harness::new();
    h.started_with(vec![]);
    let out = admit(&mut h, "u1");
    assert!(
        matches!(out, Outcome::Update(ref r) if state(r) == UpdateState::Admitted),
        "{out:?}"
    );
    let wft = h.poll(TaskKind::Workflow);
    let d = wft.as_ref().expect("a task for the update");
    assert_eq!(d.updates.len(), 1);
    assert_eq!(d.updates[0].update_id, "u1");
    assert_eq!(d.updates[0].request, b"request-u1");
    let (a, r) = (accept("u1"), respond("u1", b"result"));
    assert!(matches!(
        h.complete_with(
            &wft,
            vec![protocol(&a), timer("t", 1_000), protocol(&r)],
            vec![a, r]
        ),
        Outcome::Accepted(_)
    ));
    let types = h.types("wf", "r1");
    assert_eq!(
        types[4..],
        [
            "WorkflowTaskScheduled",
            "WorkflowTaskStarted",
            "WorkflowTaskCompleted",
            "WorkflowExecutionUpdateAccepted",
            "TimerStarted",
            "WorkflowExecutionUpdateCompleted",
        ]
    );
    let history = h.history("wf", "r1");
    let Attributes::WorkflowExecutionUpdateAccepted(acc) = attr(&history, 8) else {
        panic!("{types:?}")
    };
    assert_eq!(acc.protocol_instance_id, "u1");
    assert_eq!(acc.accepted_request_message_id, "u1/request");
    assert_eq!(acc.accepted_request, b"request-u1");
    let Attributes::WorkflowExecutionUpdateCompleted(done) = attr(&history, 10) else {
        panic!("{types:?}")
    };
    assert_eq!(
        (done.accepted_event_id, done.outcome.as_slice()),
        (8, &b"result"[..])
    );
    let rec = h.update("u1").expect("record");
    assert_eq!(state(&rec), UpdateState::Completed);
    assert_eq!((rec.accepted_event_id, rec.completed_event_id), (8, 10));
    // A retry of the id gets the first outcome and schedules nothing.
    let again = admit(&mut h, "u1");
    assert!(
        matches!(again, Outcome::Update(ref r) if r.outcome == b"result"),
        "{again:?}"
    );
    assert!(h.state("wf", "r1").workflow_task.is_none());
}

#[test]
fn a_rejected_update_writes_no_update_event_and_its_record_expires() {
    let mut h = Harness::new();
    h.started_with(vec![]);
    admit(&mut h, "u1");
    let wft = h.poll(TaskKind::Workflow);
    h.complete_with(&wft, vec![], vec![reject("u1")]);
    let types = h.types("wf", "r1");
    assert!(!types.iter().any(|t| t.contains("Update")), "{types:?}");
    let rec = h.update("u1").expect("kept for its waiters");
    assert_eq!(
        (state(&rec), rec.outcome.as_slice()),
        (UpdateState::Rejected, &b"rejected"[..])
    );
    assert!(
        h.state("wf", "r1").updates.is_empty(),
        "a rejection counts toward no limit"
    );
    // The record expires; the id is free at once (Temporal keeps no rejection).
    let before = h.now_ms;
    h.fire("wf", "r1", DeadlineKind::UpdateExpiry);
    assert_eq!(h.now_ms, before + REJECTED_UPDATE_TTL_MS);
    assert!(h.update("u1").is_none());
    admit(&mut h, "u2");
    let wft = h.poll(TaskKind::Workflow);
    h.complete_with(&wft, vec![], vec![reject("u2")]);
    let again = admit(&mut h, "u2");
    assert!(
        matches!(again, Outcome::Update(ref r) if state(r) == UpdateState::Admitted),
        "{again:?}"
    );
    assert!(
        !h.state("wf", "r1")
            .deadlines
            .iter()
            .any(|d| d.kind == DeadlineKind::UpdateExpiry as i32),
        "the old rejection's expiry no longer applies"
    );
}

#[test]
fn an_update_admitted_while_a_task_runs_goes_with_the_next_task() {
    let mut h = Harness::new();
    h.started_with(vec![]);
    h.signal("s1");
    let wft = h.poll(TaskKind::Workflow);
    assert!(wft.as_ref().unwrap().updates.is_empty());
    admit(&mut h, "u1");
    assert_eq!(
        h.state("wf", "r1")
            .workflow_task
            .as_ref()
            .map(|t| t.started_event_id != 0),
        Some(true),
        "no second task while one is started"
    );
    h.complete_wft(&token(&wft), vec![]);
    let next = h.poll(TaskKind::Workflow);
    assert_eq!(
        next.as_ref().expect("the next task").updates[0].update_id,
        "u1"
    );
}

#[test]
fn an_update_the_worker_leaves_unanswered_is_rejected_by_the_server() {
    let mut h = Harness::new();
    h.started_with(vec![]);
    admit(&mut h, "u1");
    let wft = h.poll(TaskKind::Workflow);
    h.complete_with(&wft, vec![], vec![]);
    let rec = h.update("u1").expect("record");
    assert_eq!(state(&rec), UpdateState::Rejected);
    assert_eq!(
        rec.server_outcome,
        UpdateServerOutcome::UnprocessedUpdate as i32
    );
}

#[test]
fn an_update_sent_with_a_failed_task_goes_again_with_the_retry() {
    let mut h = Harness::new();
    h.started_with(vec![]);
    admit(&mut h, "u1");
    let wft = h.poll(TaskKind::Workflow);
    h.fail_wft(&wft);
    let retry = h.poll(TaskKind::Workflow);
    let d = retry.as_ref().expect("the retry");
    assert_eq!((d.attempt, d.updates.len()), (2, 1));
    let a = accept("u1");
    h.complete_with(&retry, vec![protocol(&a)], vec![a]);
    assert_eq!(state(&h.update("u1").unwrap()), UpdateState::Accepted);
}

#[test]
fn in_flight_updates_are_limited_per_run_but_retries_never_are() {
    let mut h = Harness::new();
    h.started_with(vec![]);
    for i in 0..MAX_IN_FLIGHT_UPDATES {
        assert!(matches!(
            admit(&mut h, &format!("u{i}")),
            Outcome::Update(_)
        ));
    }
    let out = admit(&mut h, "one-too-many");
    assert!(
        matches!(out, Outcome::Refused(ref r) if r.code == RefusalCode::ConcurrentLimit as i32
            && r.message == "limit on number of concurrent in-flight updates has been reached (10)"),
        "{out:?}"
    );
    assert!(
        matches!(admit(&mut h, "u0"), Outcome::Update(_)),
        "a retry is answered"
    );
}

#[test]
fn closing_the_run_aborts_admitted_updates_and_fails_accepted_ones() {
    let mut h = Harness::new();
    h.started_with(vec![]);
    admit(&mut h, "accepted");
    let wft = h.poll(TaskKind::Workflow);
    let a = accept("accepted");
    h.complete_with(&wft, vec![protocol(&a)], vec![a]);
    admit(&mut h, "admitted");
    h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
        run: Some(run_key("wf", "")),
        reason: "done".into(),
        ..Default::default()
    }));
    let acc = h.update("accepted").unwrap();
    assert_eq!(state(&acc), UpdateState::Completed);
    assert_eq!(
        acc.server_outcome,
        UpdateServerOutcome::AcceptedUpdateCompletedWorkflow as i32
    );
    let adm = h.update("admitted").unwrap();
    assert_eq!(
        (state(&adm), adm.abort),
        (UpdateState::Aborted, UpdateAbort::ClosingWorkflow as i32)
    );
    let types = h.types("wf", "r1");
    assert!(
        !types.contains(&"WorkflowExecutionUpdateCompleted"),
        "{types:?}"
    );
    // A new update on the closed run: NOT_FOUND; a known id still answers.
    let out = admit(&mut h, "late");
    assert!(
        matches!(out, Outcome::NotFound(ref m) if m == "workflow execution already completed"),
        "{out:?}"
    );
    assert!(matches!(admit(&mut h, "accepted"), Outcome::Update(_)));
}

#[test]
fn a_bad_update_message_fails_the_task_with_its_cause() {
    let mut h = Harness::new();
    h.started_with(vec![]);
    admit(&mut h, "u1");
    let wft = h.poll(TaskKind::Workflow);
    // A response before any acceptance.
    let r = respond("u1", b"x");
    let out = h.complete_with(&wft, vec![protocol(&r)], vec![r]);
    assert!(
        matches!(out, Outcome::InvalidArgument(ref m) if m.contains("received *update.Response message while in state Sent")),
        "{out:?}"
    );
    let history = h.history("wf", "r1");
    let Attributes::WorkflowTaskFailed(f) = &history.last().unwrap().attributes.clone().unwrap()
    else {
        panic!("{:?}", h.types("wf", "r1"))
    };
    assert_eq!(
        f.cause,
        WorkflowTaskFailedCause::BadUpdateWorkflowExecutionMessage as i32
    );
    // The update goes again with the retry; a command naming an absent message fails it too.
    let retry = h.poll(TaskKind::Workflow);
    assert_eq!(retry.as_ref().unwrap().updates.len(), 1);
    let out = h.complete_with(
        &retry,
        vec![WorkflowCommand {
            kind: Some(Cmd::ProtocolMessage("nope".into())),
            user_metadata: Vec::new(),
        }],
        vec![],
    );
    assert!(
        matches!(out, Outcome::InvalidArgument(ref m) if m == "ProtocolMessageCommand referenced absent message ID nope"),
        "{out:?}"
    );
}

fn start_with_update(h: &mut Harness, run: &str, update_id: &str, policy: i32) -> Outcome {
    h.apply(Kind::StartWithUpdate(StartWithUpdate {
        start: Some(StartWorkflow {
            run: Some(run_key("wf", run)),
            workflow_type: "hello".into(),
            task_queue: TQ.into(),
            request_id: format!("req-{run}"),
            conflict_policy: policy,
            ..Default::default()
        }),
        update: Some(AdmitUpdate {
            run: None,
            first_execution_run_id: String::new(),
            update_id: update_id.into(),
            request: b"req".to_vec(),
        }),
    }))
}

fn parts(o: &Outcome) -> (String, bool, Option<UpdateState>) {
    match o {
        Outcome::StartedWithUpdate(s) => {
            let st = s.started.clone().expect("started");
            let u = match s.update.as_deref().and_then(|u| u.kind.clone()) {
                Some(Outcome::Update(r)) => Some(state(&r)),
                _ => None,
            };
            (st.run_id, st.started, u)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn update_with_start_starts_and_admits_atomically_or_uses_the_running_run() {
    let mut h = Harness::new();
    let first = start_with_update(&mut h, "r1", "u1", 0);
    assert_eq!(
        parts(&first),
        ("r1".into(), true, Some(UpdateState::Admitted))
    );
    // The first workflow task carries the update.
    let wft = h.poll(TaskKind::Workflow);
    assert_eq!(wft.as_ref().unwrap().updates[0].update_id, "u1");
    // The same update id again: answered from the running run, nothing started.
    let again = start_with_update(&mut h, "r2", "u1", 0);
    assert_eq!(parts(&again), ("r1".into(), false, Some(UpdateState::Sent)));
    // Another update, conflict policy FAIL: the running run refuses the start.
    let fail = start_with_update(&mut h, "r3", "u2", 0);
    assert!(
        matches!(fail, Outcome::AlreadyStarted(ref a) if a.run_id == "r1"),
        "{fail:?}"
    );
    assert!(h.update("u2").is_none(), "a failed start admits nothing");
    // USE_EXISTING: the update goes to the running run.
    let existing = start_with_update(&mut h, "r4", "u2", CONFLICT_USE_EXISTING);
    assert_eq!(
        parts(&existing),
        ("r1".into(), false, Some(UpdateState::Admitted))
    );
}

#[test]
fn update_with_start_does_not_attach_to_an_update_its_closed_run_never_completed() {
    let mut h = Harness::new();
    start_with_update(&mut h, "r1", "u1", 0);
    let wft = h.poll(TaskKind::Workflow);
    let a = accept("u1");
    h.complete_with(&wft, vec![protocol(&a), complete(b"done")], vec![a]);
    assert_eq!(
        h.update("u1").unwrap().server_outcome,
        UpdateServerOutcome::AcceptedUpdateCompletedWorkflow as i32
    );
    // The run is closed and u1 has no outcome of the workflow's: a new run takes it.
    let out = start_with_update(&mut h, "r2", "u1", 0);
    assert_eq!(
        parts(&out),
        ("r2".into(), true, Some(UpdateState::Admitted))
    );
}
