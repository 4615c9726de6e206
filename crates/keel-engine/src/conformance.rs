//! Store conformance: the checks every [`StateStore`] implementation must pass, run by this
//! crate against [`MemStore`](crate::MemStore) and by the replication crate against RocksDB.
//!
//! - [`check_store_semantics`]: get / put / delete / read-your-writes;
//! - [`run_workflow_scenario`]: a fixed workflow scenario (start, tasks, activity retry,
//!   signal, timer, completion) driven through `apply`; two stores must return identical
//!   outcomes and end with identical contents.

use crate::command::Kind;
use crate::workflow::workflow_command::Kind as Cmd;
use crate::workflow::workflow_outcome::Kind as Outcome;
use crate::workflow::*;
use crate::{response, Command, Proposal, ProposalResponse, StateStore};

/// Panics unless `store` (empty) behaves as a key-value map with read-your-writes.
pub fn check_store_semantics<S: StateStore>(store: &mut S) {
    let get = |s: &S, k: &[u8]| s.get(k).expect("get succeeds");
    assert_eq!(get(store, b"k"), None, "missing key");
    store.put(b"k", b"v1");
    assert_eq!(
        get(store, b"k"),
        Some(b"v1".to_vec()),
        "read your own write"
    );
    store.put(b"k", b"v2");
    assert_eq!(get(store, b"k"), Some(b"v2".to_vec()), "overwrite");
    store.put(b"\x00\xff", b"");
    assert_eq!(
        get(store, b"\x00\xff"),
        Some(Vec::new()),
        "binary key, empty value"
    );
    store.delete(b"k");
    assert_eq!(get(store, b"k"), None, "deleted");
    store.delete(b"never");
    assert_eq!(
        get(store, b"never"),
        None,
        "deleting a missing key is a no-op"
    );
    store.put(b"k", b"v3");
    assert_eq!(get(store, b"k"), Some(b"v3".to_vec()), "put after delete");
}

fn one(kind: Kind, now_ms: u64) -> Proposal {
    Proposal {
        proposed_at_ms: now_ms,
        commands: vec![Command { kind: Some(kind) }],
    }
}

fn outcome_of(r: &ProposalResponse) -> Outcome {
    match r.responses.first().and_then(|x| x.kind.clone()) {
        Some(response::Kind::Workflow(o)) => o.kind.expect("outcome kind"),
        other => panic!("expected a workflow outcome, got {other:?}"),
    }
}

fn dispatched(r: &ProposalResponse) -> TaskToken {
    match outcome_of(r) {
        Outcome::Dispatched(d) => d.token.expect("token"),
        other => panic!("expected a task, got {other:?}"),
    }
}

/// Drives the scenario through `apply` (which must apply and durably commit one proposal
/// per call) and returns every response in order.
pub fn run_workflow_scenario(
    apply: &mut dyn FnMut(Proposal) -> ProposalResponse,
) -> Vec<ProposalResponse> {
    let mut out = Vec::new();
    let mut t = 1_000u64;
    let mut step = |p: Proposal, out: &mut Vec<ProposalResponse>| {
        let r = apply(p);
        out.push(r.clone());
        r
    };
    let run = RunKey {
        namespace: "conf".into(),
        workflow_id: "wf".into(),
        run_id: "run-1".into(),
    };
    let poll = |kind: TaskKind| {
        Kind::DispatchTask(DispatchTask {
            namespace: "conf".into(),
            task_queue: "q".into(),
            kind: kind as i32,
            identity: "w".into(),
            request_id: "r".into(),
        })
    };
    step(
        one(
            Kind::RegisterNamespace(RegisterNamespace {
                name: "conf".into(),
                id: "conf-id".into(),
                description: String::new(),
                retention_ms: 10_000,
            }),
            t,
        ),
        &mut out,
    );
    step(
        one(
            Kind::StartWorkflow(StartWorkflow {
                run: Some(run.clone()),
                workflow_type: "t".into(),
                task_queue: "q".into(),
                input: b"in".to_vec(),
                request_id: "start".into(),
                ..Default::default()
            }),
            t,
        ),
        &mut out,
    );
    let wft = dispatched(&step(one(poll(TaskKind::Workflow), t), &mut out));
    let commands = vec![
        WorkflowCommand {
            kind: Some(Cmd::ScheduleActivity(ScheduleActivity {
                activity_id: "a".into(),
                activity_type: "x".into(),
                start_to_close_timeout_ms: 5_000,
                ..Default::default()
            })),
            user_metadata: Vec::new(),
        },
        WorkflowCommand {
            kind: Some(Cmd::StartTimer(StartTimer {
                timer_id: "t".into(),
                start_to_fire_timeout_ms: 100,
            })),
            user_metadata: Vec::new(),
        },
    ];
    step(
        one(
            Kind::CompleteWorkflowTask(CompleteWorkflowTask {
                token: Some(wft),
                identity: "w".into(),
                commands,
                sdk_metadata: vec![],
                sticky_queue: String::new(),
                ..Default::default()
            }),
            t,
        ),
        &mut out,
    );
    let act = dispatched(&step(one(poll(TaskKind::Activity), t), &mut out));
    step(
        one(
            Kind::SignalWorkflow(SignalWorkflow {
                run: Some(run.clone()),
                signal_name: "s".into(),
                request_id: "sig".into(),
                ..Default::default()
            }),
            t,
        ),
        &mut out,
    );
    step(
        one(
            Kind::FailActivityTask(FailActivityTask {
                token: Some(act),
                identity: "w".into(),
                failure: b"boom".to_vec(),
                ..Default::default()
            }),
            t,
        ),
        &mut out,
    );
    t += 1_000;
    step(
        one(
            Kind::FireDeadline(FireDeadline {
                next_run_id: String::new(),
                run: Some(run.clone()),
                kind: DeadlineKind::ActivityRetry as i32,
                event_id: 5,
                attempt: 2,
                name: String::new(),
            }),
            t,
        ),
        &mut out,
    );
    let act2 = dispatched(&step(one(poll(TaskKind::Activity), t), &mut out));
    step(
        one(
            Kind::CompleteActivityTask(CompleteActivityTask {
                token: Some(act2),
                identity: "w".into(),
                result: b"ok".to_vec(),
            }),
            t,
        ),
        &mut out,
    );
    step(
        one(
            Kind::FireDeadline(FireDeadline {
                next_run_id: String::new(),
                run: Some(run.clone()),
                kind: DeadlineKind::UserTimer as i32,
                event_id: 6,
                attempt: 0,
                name: "t".into(),
            }),
            t,
        ),
        &mut out,
    );
    let wft2 = dispatched(&step(one(poll(TaskKind::Workflow), t), &mut out));
    step(
        one(
            Kind::CompleteWorkflowTask(CompleteWorkflowTask {
                token: Some(wft2),
                identity: "w".into(),
                commands: vec![WorkflowCommand {
                    kind: Some(Cmd::CompleteWorkflow(CompleteWorkflow {
                        result: b"done".to_vec(),
                        next_run_id: String::new(),
                    })),
                    user_metadata: Vec::new(),
                }],
                sdk_metadata: vec![],
                sticky_queue: String::new(),
                ..Default::default()
            }),
            t,
        ),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{apply_proposal, MemStore};

    #[test]
    fn the_memory_store_conforms() {
        check_store_semantics(&mut MemStore::new());
    }

    #[test]
    fn the_scenario_completes_the_workflow() {
        let mut store = MemStore::new();
        let responses =
            run_workflow_scenario(&mut |p| apply_proposal(&p, &mut store).expect("apply").0);
        assert!(matches!(
            outcome_of(responses.last().unwrap()),
            Outcome::Accepted(_)
        ));
        let run = RunKey {
            namespace: "conf".into(),
            workflow_id: "wf".into(),
            run_id: "run-1".into(),
        };
        let ms = read_mutable_state(&store, &run).unwrap().unwrap();
        assert_eq!(ms.status, RunStatus::Completed as i32);
        let types: Vec<&str> = read_history(&store, &run, 1, ms.next_event_id)
            .unwrap()
            .iter()
            .map(HistoryEvent::event_type)
            .collect();
        assert_eq!(
            types,
            [
                "WorkflowExecutionStarted",
                "WorkflowTaskScheduled",
                "WorkflowTaskStarted",
                "WorkflowTaskCompleted",
                "ActivityTaskScheduled",
                "TimerStarted",
                "WorkflowExecutionSignaled",
                "WorkflowTaskScheduled",
                "ActivityTaskStarted",
                "ActivityTaskCompleted",
                "TimerFired",
                "WorkflowTaskStarted",
                "WorkflowTaskCompleted",
                "WorkflowExecutionCompleted",
            ]
        );
    }
}
