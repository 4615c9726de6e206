//! Property test: random valid command sequences keep the history invariants. Seeded and
//! deterministic; a failing seed is printed and replays exactly. The walk includes
//! continue-as-new, child workflows, external signals / cancels, search attribute upserts and
//! resets: at most one running run per workflow id, and a child's close recorded in its parent
//! exactly once.

use super::model::workflow_command::Kind as Cmd;
use super::model::workflow_outcome::Kind as Outcome;
use super::*;
use crate::command::Kind;
use crate::keys::KeyKind;
use crate::{apply_proposal, response, Command, MemStore, Proposal};

/// `TemporalChangeVersion = ["p-<n>"]`, encoded.
fn change_version(n: usize) -> Vec<u8> {
    use prost::Message;
    let payload = search::Payload {
        metadata: [("encoding".to_string(), b"json/plain".to_vec())].into(),
        data: format!("[\"p-{n}\"]").into_bytes(),
    };
    search::PayloadMap {
        fields: [("TemporalChangeVersion".to_string(), payload.encode_to_vec())].into(),
    }
    .encode_to_vec()
}

/// xorshift64*: enough randomness for choosing steps, no dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORKFLOWS: [&str; 3] = ["w0", "w1", "w2"];
/// Workflow ids children get (one is also a top-level id, so starts conflict).
const CHILDREN: [&str; 3] = ["c0", "c1", "w2"];
const ALL: [&str; 5] = ["w0", "w1", "w2", "c0", "c1"];

struct World {
    store: MemStore,
    now_ms: u64,
    runs: Vec<RunKey>,
    wf_tokens: Vec<TaskToken>,
    act_tokens: Vec<TaskToken>,
    query_tokens: Vec<TaskToken>,
    /// The unwritten events handed out with each transient workflow task.
    transient: Vec<(TaskToken, Vec<HistoryEvent>)>,
    /// Transient tasks completed (their events then written under the ids handed out).
    transient_completed: usize,
    /// Queries answered by the completion of the workflow task they went out with.
    task_answered: usize,
    next_run: u32,
}

impl World {
    /// A fresh run id of `workflow_id`, tracked by the checks.
    fn new_run(&mut self, workflow_id: &str) -> String {
        self.next_run += 1;
        let run_id = format!("run-{}", self.next_run);
        self.runs.push(RunKey {
            namespace: "ns".into(),
            workflow_id: workflow_id.into(),
            run_id: run_id.clone(),
        });
        run_id
    }

    fn apply(&mut self, kind: Kind) -> Outcome {
        let (resp, _) = apply_proposal(
            &Proposal {
                proposed_at_ms: self.now_ms,
                commands: vec![Command { kind: Some(kind) }],
            },
            &mut self.store,
        )
        .expect("apply never fails on a healthy store");
        match resp.responses.into_iter().next().and_then(|r| r.kind) {
            Some(response::Kind::Workflow(o)) => o.kind.expect("outcome"),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        match rng.below(12) {
            0 => {
                let wf = WORKFLOWS[rng.below(WORKFLOWS.len())];
                self.next_run += 1;
                let run = RunKey {
                    namespace: "ns".into(),
                    workflow_id: wf.into(),
                    run_id: format!("run-{}", self.next_run),
                };
                let policy = [
                    IdReusePolicy::Unspecified,
                    IdReusePolicy::RejectDuplicate,
                    IdReusePolicy::AllowDuplicateFailedOnly,
                ][rng.below(3)];
                self.apply(Kind::StartWorkflow(StartWorkflow {
                    run: Some(run.clone()),
                    workflow_type: "t".into(),
                    task_queue: "q".into(),
                    request_id: format!("req-{}", rng.below(4)),
                    id_reuse_policy: policy as i32,
                    ..Default::default()
                }));
                self.runs.push(run);
            }
            1 | 2 => {
                let kind = if rng.below(2) == 0 {
                    TaskKind::Workflow
                } else {
                    TaskKind::Activity
                };
                if let Outcome::Dispatched(d) = self.apply(Kind::DispatchTask(DispatchTask {
                    namespace: "ns".into(),
                    task_queue: "q".into(),
                    kind: kind as i32,
                    identity: "w".into(),
                    request_id: "r".into(),
                })) {
                    let t = d.token.expect("token");
                    if !d.transient_events.is_empty() {
                        self.transient.push((t.clone(), d.transient_events));
                    }
                    match kind {
                        TaskKind::Workflow => self.wf_tokens.push(t),
                        TaskKind::Activity => self.act_tokens.push(t),
                        TaskKind::Query => unreachable!("queries are polled in step 10"),
                    }
                }
            }
            3 | 4 if !self.wf_tokens.is_empty() => {
                let t = self.wf_tokens[rng.below(self.wf_tokens.len())].clone();
                let mut commands = Vec::new();
                for _ in 0..rng.below(4) {
                    let cmd = match rng.below(8) {
                        0 | 1 => Cmd::ScheduleActivity(ScheduleActivity {
                            activity_id: format!("a{}", rng.below(100)),
                            activity_type: "x".into(),
                            start_to_close_timeout_ms: 1_000,
                            request_eager_execution: rng.below(3) == 0,
                            ..Default::default()
                        }),
                        2 => Cmd::StartTimer(StartTimer {
                            timer_id: format!("t{}", rng.below(3)),
                            start_to_fire_timeout_ms: 1 + rng.below(500) as u64,
                        }),
                        3 => Cmd::CompleteWorkflow(CompleteWorkflow {
                            result: vec![],
                            next_run_id: String::new(),
                        }),
                        // The runs these may create are tracked whether or not they do.
                        4 => Cmd::ContinueAsNew(ContinueAsNew {
                            new_run_id: self.new_run(&t.run.clone().expect("run").workflow_id),
                            backoff_start_ms: [0, 0, 200][rng.below(3)],
                            ..Default::default()
                        }),
                        5 => {
                            let wf = CHILDREN[rng.below(CHILDREN.len())];
                            Cmd::StartChildWorkflow(StartChildWorkflow {
                                workflow_id: wf.into(),
                                workflow_type: "t".into(),
                                parent_close_policy: rng.below(4) as i32,
                                new_run_id: self.new_run(wf),
                                ..Default::default()
                            })
                        }
                        6 => Cmd::SignalExternal(SignalExternal {
                            workflow_id: ALL[rng.below(ALL.len())].into(),
                            signal_name: "s".into(),
                            child_workflow_only: rng.below(4) == 0,
                            ..Default::default()
                        }),
                        _ => Cmd::RequestCancelExternal(RequestCancelExternal {
                            workflow_id: ALL[rng.below(ALL.len())].into(),
                            ..Default::default()
                        }),
                    };
                    commands.push(WorkflowCommand {
                        kind: Some(cmd),
                        user_metadata: Vec::new(),
                    });
                }
                // Some tasks also upsert a predefined search attribute (no registry needed)
                // or, failing the task, nothing.
                if rng.below(6) == 0 {
                    commands.push(WorkflowCommand {
                        kind: Some(Cmd::UpsertSearchAttributes(UpsertSearchAttributes {
                            search_attributes: if rng.below(6) == 0 {
                                Vec::new()
                            } else {
                                change_version(rng.below(3))
                            },
                        })),
                        user_metadata: Vec::new(),
                    });
                }
                // Answers for most queries that went out with this task, and for a random
                // query id that may not have.
                let run = t.run.clone().expect("token names a run");
                let mut ids: Vec<String> = self
                    .store
                    .iter()
                    .filter(|(k, _)| KeyKind::of(k) == Some(KeyKind::Query))
                    .map(|(_, v)| prost::Message::decode(v).expect("query record"))
                    .filter(|q: &QueryRecord| {
                        q.task_scheduled_event_id == t.scheduled_event_id
                            && q.run.as_ref() == Some(&run)
                    })
                    .map(|q| q.query_id)
                    .filter(|_| rng.below(4) != 0)
                    .collect();
                if rng.below(2) == 0 {
                    ids.push(format!("q{}", rng.below(8)));
                }
                let answered: Vec<(String, Option<QueryRecord>)> = ids
                    .into_iter()
                    .map(|id| {
                        let before = read_query(&self.store, "ns", &id).unwrap();
                        (id, before)
                    })
                    .collect();
                let query_results = answered
                    .iter()
                    .map(|(id, _)| AnswerQuery {
                        token: Some(TaskToken {
                            run: Some(run.clone()),
                            kind: TaskKind::Query as i32,
                            query_id: id.clone(),
                            ..Default::default()
                        }),
                        result_type: 1,
                        ..Default::default()
                    })
                    .collect();
                // Update messages, now and then: for the run's in-flight updates in a valid
                // order mostly (accept, then respond, or reject), sometimes any message for
                // any id (which fails the task).
                let mut messages = Vec::new();
                if rng.below(3) == 0 {
                    let flying: Vec<(String, i32)> = read_mutable_state(&self.store, &run)
                        .unwrap()
                        .map(|ms| {
                            ms.updates
                                .iter()
                                .map(|u| (u.update_id.clone(), u.state))
                                .collect()
                        })
                        .unwrap_or_default();
                    let mut bodies: Vec<(String, update_message::Body)> = Vec::new();
                    for (id, state) in flying {
                        let respond = || {
                            update_message::Body::Respond(UpdateResponse {
                                outcome: vec![1],
                                identity: "w".into(),
                            })
                        };
                        let accept = || {
                            update_message::Body::Accept(UpdateAcceptance {
                                accepted_request_sequencing_event_id: 1,
                            })
                        };
                        match (state == UpdateState::Accepted as i32, rng.below(3)) {
                            (true, _) => bodies.push((id, respond())),
                            (false, 0) => bodies.push((
                                id,
                                update_message::Body::Reject(UpdateRejection { outcome: vec![] }),
                            )),
                            (false, 1) => bodies.push((id, accept())),
                            (false, _) => {
                                bodies.push((id.clone(), accept()));
                                bodies.push((id, respond()));
                            }
                        }
                    }
                    if rng.below(4) == 0 {
                        bodies.push((
                            format!("u{}", rng.below(4)),
                            update_message::Body::Reject(UpdateRejection { outcome: vec![] }),
                        ));
                    }
                    for (i, (update_id, body)) in bodies.into_iter().enumerate() {
                        let message_id = format!("m{i}");
                        if !matches!(body, update_message::Body::Reject(_)) {
                            commands.push(WorkflowCommand {
                                kind: Some(Cmd::ProtocolMessage(message_id.clone())),
                                user_metadata: Vec::new(),
                            });
                        }
                        messages.push(UpdateMessage {
                            message_id,
                            update_id,
                            body: Some(body),
                        });
                    }
                }
                let outcome = self.apply(Kind::CompleteWorkflowTask(CompleteWorkflowTask {
                    token: Some(t.clone()),
                    identity: "w".into(),
                    commands,
                    sdk_metadata: vec![],
                    sticky_queue: String::new(),
                    force_create_new_task: rng.below(4) == 0,
                    return_new_task: rng.below(2) == 0,
                    query_results,
                    messages,
                    worker_key: String::new(),
                }));
                let completed = match outcome {
                    Outcome::CompletedWithTasks(e) => {
                        self.act_tokens
                            .extend(e.activities.into_iter().filter_map(|d| d.token));
                        self.wf_tokens
                            .extend(e.workflow_task.into_iter().filter_map(|d| d.token));
                        true
                    }
                    Outcome::Accepted(_) => true,
                    _ => false,
                };
                // A completion answers exactly the queries that went out with its task.
                for (id, before) in &answered {
                    let Some(before) = before else { continue };
                    let was_answered = before.state == QueryState::Answered as i32;
                    let with_this_task = before.state == QueryState::Dispatched as i32
                        && before.run.as_ref() == Some(&run)
                        && before.task_scheduled_event_id == t.scheduled_event_id
                        && before.task_attempt == t.attempt;
                    let after = read_query(&self.store, "ns", id).unwrap();
                    let now_answered =
                        after.is_some_and(|q| q.state == QueryState::Answered as i32);
                    if completed && with_this_task {
                        assert!(now_answered, "{id} went out with {t:?} and was answered");
                        self.task_answered += 1;
                    } else if !was_answered {
                        assert!(!now_answered, "{id} was not out with {t:?}: {before:?}");
                    }
                }
                // A completed transient task wrote exactly the events it was handed out with.
                if let Some((_, handed)) = self.transient.iter().find(|(k, _)| *k == t) {
                    if completed {
                        let run = t.run.as_ref().expect("token names a run");
                        let first = handed[0].event_id;
                        let written = read_history(&self.store, run, first, first + 1).unwrap();
                        assert_eq!(&written, handed, "{run:?}: transient events as handed out");
                        self.transient_completed += 1;
                    }
                }
            }
            5 if !self.act_tokens.is_empty() => {
                let t = self.act_tokens[rng.below(self.act_tokens.len())].clone();
                self.apply(Kind::CompleteActivityTask(CompleteActivityTask {
                    token: Some(t),
                    identity: "w".into(),
                    result: vec![1],
                }));
            }
            6 if !self.runs.is_empty() => {
                let run = self.runs[rng.below(self.runs.len())].clone();
                if let Some(ms) = read_mutable_state(&self.store, &run).unwrap() {
                    if let Some(d) = ms.deadlines.get(rng.below(ms.deadlines.len().max(1))) {
                        self.apply(Kind::FireDeadline(FireDeadline {
                            next_run_id: String::new(),
                            run: Some(run),
                            kind: d.kind,
                            event_id: d.event_id,
                            attempt: d.attempt,
                            name: d.name.clone(),
                        }));
                    }
                }
            }
            7 if !self.act_tokens.is_empty() => {
                let t = self.act_tokens[rng.below(self.act_tokens.len())].clone();
                self.apply(Kind::FailActivityTask(FailActivityTask {
                    token: Some(t),
                    identity: "w".into(),
                    failure: vec![9],
                    failure_type: ["boom", "fatal"][rng.below(2)].into(),
                    non_retryable: rng.below(4) == 0,
                    next_retry_delay_ms: 0,
                }));
            }
            8 if !self.runs.is_empty() => {
                let run = self.runs[rng.below(self.runs.len())].clone();
                // Resets start from closed runs (they still terminate a later running run of
                // the id); resetting running parents would end most children before they
                // finish, and their closes in parents would go uncovered.
                let closed = read_mutable_state(&self.store, &run)
                    .unwrap()
                    .is_some_and(|ms| ms.status != RunStatus::Running as i32);
                let choice = if closed && rng.below(3) == 0 {
                    3
                } else {
                    rng.below(3)
                };
                let kind = match choice {
                    // A reset to one of the run's finished workflow tasks (often refused:
                    // work pending there), or to an arbitrary event.
                    3 => {
                        let finished: Vec<i64> = read_history(&self.store, &run, 1, i64::MAX - 1)
                            .unwrap()
                            .iter()
                            .filter(|e| {
                                matches!(e.attributes, Some(Attributes::WorkflowTaskCompleted(_)))
                            })
                            .map(|e| e.event_id)
                            .collect();
                        let point = if finished.is_empty() || rng.below(4) == 0 {
                            1 + rng.below(12) as i64
                        } else {
                            finished[rng.below(finished.len())]
                        };
                        Kind::ResetWorkflow(super::reset::ResetWorkflow {
                            new_run_id: self.new_run(&run.workflow_id),
                            run: Some(run),
                            workflow_task_finish_event_id: point,
                            reason: "r".into(),
                            request_id: format!("reset-{}", rng.below(3)),
                            identity: "op".into(),
                            reapply_signals: rng.below(2) == 0,
                        })
                    }
                    0 => Kind::SignalWorkflow(SignalWorkflow {
                        run: Some(run),
                        signal_name: "s".into(),
                        request_id: format!("sig-{}", rng.below(5)),
                        ..Default::default()
                    }),
                    1 => Kind::RequestCancelWorkflow(RequestCancelWorkflow {
                        run: Some(run),
                        ..Default::default()
                    }),
                    _ => Kind::TerminateWorkflow(TerminateWorkflow {
                        run: Some(run),
                        reason: "r".into(),
                        ..Default::default()
                    }),
                };
                self.apply(kind);
            }
            9 if !self.wf_tokens.is_empty() => {
                let t = self.wf_tokens[rng.below(self.wf_tokens.len())].clone();
                self.apply(Kind::FailWorkflowTask(FailWorkflowTask {
                    token: Some(t),
                    identity: "w".into(),
                    cause: 0,
                    failure: vec![],
                }));
            }
            10 if !self.runs.is_empty() && rng.below(3) == 0 => {
                let run = self.runs[rng.below(self.runs.len())].clone();
                self.apply(Kind::AdmitUpdate(AdmitUpdate {
                    run: Some(RunKey {
                        run_id: if rng.below(2) == 0 {
                            String::new()
                        } else {
                            run.run_id.clone()
                        },
                        ..run
                    }),
                    first_execution_run_id: String::new(),
                    update_id: format!("u{}", rng.below(4)),
                    request: b"req".to_vec(),
                }));
            }
            10 if !self.runs.is_empty() => match rng.below(4) {
                0 => {
                    let run = self.runs[rng.below(self.runs.len())].clone();
                    self.apply(Kind::EnqueueQuery(EnqueueQuery {
                        run: Some(run),
                        query_id: format!("q{}", rng.below(8)),
                        query_type: "status".into(),
                        timeout_ms: 1 + rng.below(5_000) as u64,
                        ..Default::default()
                    }));
                }
                1 => {
                    if let Outcome::Dispatched(d) = self.apply(Kind::DispatchTask(DispatchTask {
                        namespace: "ns".into(),
                        task_queue: "q".into(),
                        kind: TaskKind::Query as i32,
                        identity: "w".into(),
                        request_id: "r".into(),
                    })) {
                        self.query_tokens.push(d.token.expect("token"));
                    }
                }
                2 if !self.query_tokens.is_empty() => {
                    let t = self.query_tokens[rng.below(self.query_tokens.len())].clone();
                    self.apply(Kind::AnswerQuery(AnswerQuery {
                        token: Some(t),
                        result_type: 1,
                        ..Default::default()
                    }));
                }
                _ => {
                    self.apply(Kind::ForgetQuery(ForgetQuery {
                        namespace: "ns".into(),
                        query_id: format!("q{}", rng.below(8)),
                    }));
                }
            },
            _ => self.now_ms += rng.below(3_000) as u64,
        }
    }

    fn check(&self, closed_lengths: &mut std::collections::BTreeMap<String, usize>) {
        // The namespace's status counts are its visibility rows by status, and each
        // start-time index entry holds the same row as the run's visibility key.
        let mut by_status = [0u64; 8];
        for (k, v) in self.store.iter() {
            match KeyKind::of(k) {
                Some(KeyKind::Visibility) => {
                    let row: VisibilityRecord = prost::Message::decode(v).expect("row");
                    by_status[row.status as usize] += 1;
                }
                Some(KeyKind::VisibilityByStart) => {
                    let (wf, run) = crate::keys::parse_visibility_by_start(k).expect("index key");
                    let run = RunKey {
                        namespace: "ns".into(),
                        workflow_id: wf,
                        run_id: run,
                    };
                    let row = read_visibility(&self.store, &run)
                        .unwrap()
                        .expect("indexed row");
                    assert_eq!(v, prost::Message::encode_to_vec(&row), "{run:?}: index row");
                }
                _ => {}
            }
        }
        let counts = read_status_counts(&self.store, "ns")
            .unwrap()
            .expect("ns is counted from its registration");
        assert_eq!(counts[1..], by_status[1..], "status counts");
        let mut running_per_wf = std::collections::BTreeMap::<String, usize>::new();
        for run in &self.runs {
            let Some(ms) = read_mutable_state(&self.store, run).unwrap() else {
                continue;
            };
            let hist = read_history(&self.store, run, 1, ms.next_event_id).unwrap();
            // An update is accepted at most once and completed at most once, after its
            // acceptance, in every run; its record agrees with the events.
            let mut accepted = std::collections::BTreeMap::<String, i64>::new();
            let mut completed = std::collections::BTreeSet::<String>::new();
            for e in &hist {
                match &e.attributes {
                    Some(Attributes::WorkflowExecutionUpdateAccepted(a)) => {
                        let again = accepted.insert(a.protocol_instance_id.clone(), e.event_id);
                        assert!(
                            again.is_none(),
                            "{run:?}: update {} accepted twice",
                            a.protocol_instance_id
                        );
                    }
                    Some(Attributes::WorkflowExecutionUpdateCompleted(c)) => {
                        assert_eq!(
                            accepted.get(&c.update_id),
                            Some(&c.accepted_event_id),
                            "{run:?}: update {} completed without its acceptance",
                            c.update_id
                        );
                        assert!(
                            completed.insert(c.update_id.clone()),
                            "{run:?}: completed twice"
                        );
                    }
                    _ => {}
                }
            }
            for u in &ms.updates {
                let rec = crate::workflow::read_update(&self.store, run, &u.update_id)
                    .unwrap()
                    .expect("a listed update has its record");
                assert_eq!(rec.state, u.state, "{run:?}: {}", u.update_id);
                if u.state == UpdateState::Accepted as i32 {
                    assert_eq!(accepted.get(&u.update_id), Some(&rec.accepted_event_id));
                }
            }
            // Contiguous ids, and nothing beyond next_event_id - 1.
            let ids: Vec<i64> = hist.iter().map(|e| e.event_id).collect();
            assert_eq!(
                ids,
                (1..ms.next_event_id).collect::<Vec<_>>(),
                "{run:?}: ids contiguous"
            );
            // At most one workflow task scheduled or started at any point.
            let mut open = 0i32;
            for (i, e) in hist.iter().enumerate() {
                match e.event_type() {
                    "WorkflowTaskScheduled" => open += 1,
                    "WorkflowTaskCompleted" | "WorkflowTaskFailed" | "WorkflowTaskTimedOut" => {
                        open -= 1
                    }
                    "WorkflowTaskStarted" => {
                        // Buffered events never land between Started and its outcome.
                        if let Some(next) = hist.get(i + 1) {
                            assert!(
                                matches!(
                                    next.event_type(),
                                    "WorkflowTaskCompleted"
                                        | "WorkflowTaskFailed"
                                        | "WorkflowTaskTimedOut"
                                ),
                                "{run:?}: {} after WorkflowTaskStarted",
                                next.event_type()
                            );
                        }
                    }
                    _ => {}
                }
                assert!(
                    (0..=1).contains(&open),
                    "{run:?}: {open} workflow tasks open"
                );
            }
            if ms.status == RunStatus::Running as i32 {
                // (A run closed from outside may leave a scheduled task behind in history.)
                // A transient retry is not in history: its ids are the next ones to write.
                assert_eq!(
                    open == 1,
                    ms.workflow_task.as_ref().is_some_and(|t| !t.transient),
                    "{run:?}: mutable state agrees with history"
                );
                if let Some(t) = ms.workflow_task.as_ref().filter(|t| t.transient) {
                    assert!(t.attempt > 1, "{run:?}: only retries are transient");
                    assert_eq!(t.scheduled_event_id, ms.next_event_id, "{run:?}");
                    assert!(
                        t.started_event_id == 0 || t.started_event_id == t.scheduled_event_id + 1,
                        "{run:?}: transient started id {}",
                        t.started_event_id
                    );
                }
                *running_per_wf.entry(run.workflow_id.clone()).or_default() += 1;
            } else {
                // A closed run accepts no new events.
                let len = closed_lengths
                    .entry(run.run_id.clone())
                    .or_insert(hist.len());
                assert_eq!(*len, hist.len(), "{run:?}: closed run grew");
                assert!(ms.timers.is_empty() && ms.workflow_task.is_none());
                assert!(
                    ms.deadlines
                        .iter()
                        .all(|d| d.kind == DeadlineKind::Retention as i32
                            || d.kind == DeadlineKind::QueryExpiry as i32
                            || d.kind == DeadlineKind::UpdateExpiry as i32),
                    "{run:?}: a closed run keeps only its retention, query and update deadlines"
                );
            }
            // Every pending timer has its deadline, and every deadline its index entry.
            for t in &ms.timers {
                assert!(
                    ms.deadlines
                        .iter()
                        .any(|d| d.kind == DeadlineKind::UserTimer as i32
                            && d.event_id == t.started_event_id),
                    "{run:?}: timer {} has no deadline",
                    t.timer_id
                );
            }
            for d in &ms.deadlines {
                let key = deadline_key(run, d);
                assert!(
                    self.store.iter().any(|(k, _)| k == key.as_slice()),
                    "{run:?}: deadline {d:?} unindexed"
                );
            }
        }
        for (wf, n) in running_per_wf {
            assert!(n <= 1, "{n} running runs of {wf}");
        }
        // A child's close is recorded in its parent at most once, and exactly once if the
        // parent was still running then; a parent tracks only children still running.
        for run in &self.runs {
            let Some(child) = read_mutable_state(&self.store, run).unwrap() else {
                continue;
            };
            let Some(parent_run) = child.parent.clone() else {
                continue;
            };
            let parent = read_mutable_state(&self.store, &parent_run)
                .unwrap()
                .expect("a child's parent exists");
            // Written, or buffered while the parent's task is started.
            let recorded = read_history(&self.store, &parent_run, 1, parent.next_event_id)
                .unwrap()
                .into_iter()
                .chain(parent.buffered.iter().cloned())
                .filter(|e| match &e.attributes {
                    Some(
                        Attributes::ChildWorkflowExecutionCompleted(c)
                        | Attributes::ChildWorkflowExecutionFailed(c)
                        | Attributes::ChildWorkflowExecutionCanceled(c)
                        | Attributes::ChildWorkflowExecutionTimedOut(c)
                        | Attributes::ChildWorkflowExecutionTerminated(c),
                    ) => c.initiated_event_id == child.parent_initiated_event_id,
                    _ => false,
                })
                .count();
            let tracked = parent
                .children
                .iter()
                .any(|c| c.initiated_event_id == child.parent_initiated_event_id);
            let closed = child.status != RunStatus::Running as i32
                && child.status != RunStatus::ContinuedAsNew as i32;
            assert!(recorded <= 1, "{run:?}: close recorded {recorded} times");
            if child.status == RunStatus::Running as i32 {
                assert_eq!(recorded, 0, "{run:?}: recorded while running");
            }
            if closed && parent.status == RunStatus::Running as i32 {
                let types = |r: &RunKey, n: i64| {
                    read_history(&self.store, r, 1, n)
                        .unwrap()
                        .iter()
                        .map(|e| e.event_type())
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    (recorded, tracked),
                    (1, false),
                    "{run:?}: close not recorded; parent {parent_run:?} {:?}; child {:?}",
                    types(&parent_run, parent.next_event_id),
                    types(run, child.next_event_id)
                );
            }
            if !closed
                && child.status == RunStatus::Running as i32
                && parent.status == RunStatus::Running as i32
            {
                assert!(
                    tracked,
                    "{run:?}: a running child untracked by its running parent"
                );
            }
        }
        // Every index entry belongs to a pending timer (exactly one entry per timer).
        let indexed = self
            .store
            .iter()
            .filter(|(k, _)| KeyKind::of(k) == Some(KeyKind::Timer))
            .count();
        let pending: usize = self
            .runs
            .iter()
            .filter_map(|r| read_mutable_state(&self.store, r).unwrap())
            .map(|ms| ms.deadlines.len())
            .sum();
        assert_eq!(indexed, pending, "timer index entries vs pending deadlines");
        // Every query in flight has exactly one expiry on its run, and every expiry a query.
        let queries: Vec<QueryRecord> = self
            .store
            .iter()
            .filter(|(k, _)| KeyKind::of(k) == Some(KeyKind::Query))
            .map(|(_, v)| prost::Message::decode(v).expect("query record"))
            .collect();
        let expiries: Vec<(RunKey, String)> = self
            .runs
            .iter()
            .filter_map(|r| read_mutable_state(&self.store, r).unwrap())
            .flat_map(|ms| {
                let run = ms.run.clone().unwrap();
                ms.deadlines
                    .into_iter()
                    .filter(|d| d.kind == DeadlineKind::QueryExpiry as i32)
                    .map(move |d| (run.clone(), d.name))
            })
            .collect();
        assert_eq!(queries.len(), expiries.len(), "queries vs query expiries");
        for q in &queries {
            assert!(
                expiries.contains(&(q.run.clone().unwrap(), q.query_id.clone())),
                "query {} has no expiry on its run",
                q.query_id
            );
        }
    }
}

#[test]
fn random_command_sequences_keep_the_history_invariants() {
    let mut seen = std::collections::BTreeMap::<&'static str, usize>::new();
    for seed in 1..=600u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut world = World {
            store: MemStore::new(),
            now_ms: 1_000,
            runs: Vec::new(),
            wf_tokens: Vec::new(),
            act_tokens: Vec::new(),
            query_tokens: Vec::new(),
            transient: Vec::new(),
            transient_completed: 0,
            task_answered: 0,
            next_run: 0,
        };
        world.apply(Kind::RegisterNamespace(RegisterNamespace {
            name: "ns".into(),
            id: "ns-id".into(),
            description: String::new(),
            retention_ms: 60_000,
        }));
        let mut closed = std::collections::BTreeMap::new();
        for step in 0..120 {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                world.step(&mut rng);
                world.check(&mut closed)
            }));
            if let Err(e) = outcome {
                eprintln!("invariant broken: seed {seed}, step {step}");
                std::panic::resume_unwind(e);
            }
        }
        *seen.entry("transient task completed").or_default() += world.transient_completed;
        *seen.entry("query answered by its task").or_default() += world.task_answered;
        for run in &world.runs {
            for e in read_history(&world.store, run, 1, i64::MAX - 1).unwrap() {
                *seen.entry(e.event_type()).or_default() += 1;
                if let Some(Attributes::WorkflowTaskFailed(f)) = &e.attributes {
                    if f.cause == WorkflowTaskFailedCause::ResetWorkflow as i32 {
                        *seen.entry("reset").or_default() += 1;
                    }
                }
            }
        }
    }
    // The walk must actually reach the interesting paths, or the invariants prove little.
    for t in [
        "WorkflowTaskCompleted",
        "WorkflowTaskFailed",
        "ActivityTaskCompleted",
        "TimerFired",
        "WorkflowExecutionCompleted",
        "ActivityTaskFailed",
        "WorkflowExecutionSignaled",
        "WorkflowExecutionCancelRequested",
        "WorkflowExecutionTerminated",
        "transient task completed",
        "query answered by its task",
        "WorkflowExecutionContinuedAsNew",
        "ChildWorkflowExecutionStarted",
        "StartChildWorkflowExecutionFailed",
        "ExternalWorkflowExecutionSignaled",
        "SignalExternalWorkflowExecutionFailed",
        "ExternalWorkflowExecutionCancelRequested",
        "UpsertWorkflowSearchAttributes",
        "reset",
        "WorkflowExecutionUpdateAccepted",
        "WorkflowExecutionUpdateCompleted",
    ] {
        assert!(
            seen.get(t).copied().unwrap_or(0) > 10,
            "{t} seen {:?} times: {seen:?}",
            seen.get(t)
        );
    }
    // Children mostly outlive their parents' walks: fewer closes, still some of each kind.
    for t in [
        "ChildWorkflowExecutionCompleted",
        "ChildWorkflowExecutionTerminated",
    ] {
        assert!(
            seen.get(t).copied().unwrap_or(0) >= 5,
            "{t} seen {:?} times: {seen:?}",
            seen.get(t)
        );
    }
}
