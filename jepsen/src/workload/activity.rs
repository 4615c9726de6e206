//! Activities with misbehaving workers (jepsen-notes W4).
//!
//! An activity workflow schedules one activity with a 1 s start-to-close timeout and up to
//! eight attempts. Activity workers poll from random nodes and, per task, answer once
//! (60 %), vanish (15 %: the attempt times out and is retried), answer twice, the second time
//! through another node (15 %), or answer late, after the attempt's timeout (10 %). Every
//! answer carries a unique value `wid#attempt#k`.
//!
//! Checker: an attempt is handed out at most once; a completed activity workflow's history
//! holds exactly one outcome event for its activity; at most one completion is accepted per
//! activity (so never one per attempt, nor a late one after a retry started); an accepted
//! completion is the recorded result; a recorded result was sent and not rejected.
//! Executions of several attempts are counted, not failed: activities are at least once.
//!
//! The same workers run the bank sagas' steps ([`super::bank`]): a step first sends its
//! signal, then answers like any activity; a refused credit fails as non-retryable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use temporalio_protos::temporal::api::common::v1::WorkflowExecution;
use temporalio_protos::temporal::api::failure::v1::{
    failure::FailureInfo, ApplicationFailureInfo, Failure,
};
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1 as api;
use tonic::transport::Channel;

use super::bank::{signal_input, transfer_of, Step, Transfer};
use super::workflow::{
    client_for, payload, req, Final, Found, Options, ACTIVITY, ACTIVITY_TIMEOUT,
};
use crate::checker::CheckResult;
use crate::client::{classify, error_text, OP_TIMEOUT};
use crate::history::{pairs, Op, OpType, Process, Recorder};

/// Activity workers record under process ids from here, one fresh id per answer.
const ACTIVITY_PROCESS_BASE: u64 = 2_000_000;

/// What a worker does with one activity task.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Once,
    Vanish,
    Twice,
    Late,
}

fn behaviour(rng: &mut impl Rng) -> Behaviour {
    match rng.random_range(0..20) {
        0..12 => Behaviour::Once,
        12..15 => Behaviour::Vanish,
        15..18 => Behaviour::Twice,
        _ => Behaviour::Late,
    }
}

/// Sends one completion and records it under its own process id.
#[allow(clippy::too_many_arguments)]
async fn answer(
    ch: Channel,
    node: u64,
    rec: Recorder,
    process: u64,
    token: Vec<u8>,
    identity: String,
    args: serde_json::Value,
) {
    let p = Process::Client(process);
    rec.record(
        p,
        OpType::Invoke,
        "act-complete",
        args.clone(),
        Some(node),
        None,
    );
    let value = args["value"].as_str().unwrap_or_default().to_string();
    let r = client_for(&ch)
        .respond_activity_task_completed(req(
            api::RespondActivityTaskCompletedRequest {
                task_token: token,
                result: Some(payload(&value)),
                identity,
                namespace: "default".into(),
                ..Default::default()
            },
            OP_TIMEOUT,
        ))
        .await;
    let kind = match &r {
        Ok(_) => OpType::Ok,
        Err(s) => classify(s, true),
    };
    rec.record(
        p,
        kind,
        "act-complete",
        args,
        Some(node),
        r.err().map(|s| error_text(&s)),
    );
}

/// Sends a saga step's signal (deduplicated by its request id); true if acknowledged.
async fn bank_signal(
    ch: Channel,
    node: u64,
    rec: &Recorder,
    process: u64,
    step: Step,
    wid: &str,
    t: &Transfer,
) -> bool {
    let (value, request_id) = step.signal(wid, t);
    let account = step.account(t).to_string();
    let args = json!({"wid": wid, "account": account, "value": value});
    let p = Process::Client(process);
    rec.record(
        p,
        OpType::Invoke,
        "bank-signal",
        args.clone(),
        Some(node),
        None,
    );
    let r = client_for(&ch)
        .signal_workflow_execution(req(
            api::SignalWorkflowExecutionRequest {
                namespace: "default".into(),
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: account,
                    run_id: String::new(),
                }),
                signal_name: "bank".into(),
                input: Some(signal_input(&value)),
                identity: "keel-jepsen".into(),
                request_id,
                ..Default::default()
            },
            OP_TIMEOUT,
        ))
        .await;
    let kind = match &r {
        Ok(_) => OpType::Ok,
        Err(s) => classify(s, true),
    };
    rec.record(
        p,
        kind,
        "bank-signal",
        args,
        Some(node),
        r.err().map(|s| error_text(&s)),
    );
    kind == OpType::Ok
}

/// Fails an activity attempt as non-retryable ("account closed").
#[allow(clippy::too_many_arguments)]
async fn refuse(
    ch: Channel,
    node: u64,
    rec: Recorder,
    process: u64,
    token: Vec<u8>,
    identity: String,
    args: serde_json::Value,
) {
    let p = Process::Client(process);
    rec.record(
        p,
        OpType::Invoke,
        "act-fail",
        args.clone(),
        Some(node),
        None,
    );
    let r = client_for(&ch)
        .respond_activity_task_failed(req(
            api::RespondActivityTaskFailedRequest {
                task_token: token,
                failure: Some(Failure {
                    message: "account closed".into(),
                    failure_info: Some(FailureInfo::ApplicationFailureInfo(
                        ApplicationFailureInfo {
                            r#type: "AccountClosed".into(),
                            non_retryable: true,
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }),
                identity,
                namespace: "default".into(),
                ..Default::default()
            },
            OP_TIMEOUT,
        ))
        .await;
    let kind = match &r {
        Ok(_) => OpType::Ok,
        Err(s) => classify(s, true),
    };
    rec.record(
        p,
        kind,
        "act-fail",
        args,
        Some(node),
        r.err().map(|s| error_text(&s)),
    );
}

/// One activity worker: polls activity tasks and answers them (or not) until `stop`. Late
/// answers still pending at `stop` are abandoned (their invoke stays open: indeterminate).
pub async fn worker(
    i: u64,
    opts: Options,
    channels: BTreeMap<u64, Channel>,
    rec: Recorder,
    seed: u64,
    stop: Arc<AtomicBool>,
    next_process: Arc<AtomicU64>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xac71 ^ i);
    let nodes: Vec<u64> = channels.keys().copied().collect();
    let identity = format!("keel-jepsen-activity-worker-{i}");
    let mut late = tokio::task::JoinSet::new();
    let fresh = || ACTIVITY_PROCESS_BASE + next_process.fetch_add(1, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        while late.try_join_next().is_some() {}
        let node = nodes[rng.random_range(0..nodes.len())];
        let poll = client_for(&channels[&node])
            .poll_activity_task_queue(req(
                api::PollActivityTaskQueueRequest {
                    namespace: "default".into(),
                    task_queue: Some(TaskQueue {
                        name: opts.task_queue.clone(),
                        kind: 1,
                        ..Default::default()
                    }),
                    identity: identity.clone(),
                    ..Default::default()
                },
                Duration::from_secs(3),
            ))
            .await;
        let task = match poll {
            Ok(t) => t.into_inner(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if task.task_token.is_empty() {
            continue;
        }
        let exec = task.workflow_execution.clone().unwrap_or_default();
        let b = behaviour(&mut rng);
        let activity_type = task.activity_type.clone().unwrap_or_default().name;
        let handed = json!({"wid": exec.workflow_id, "run_id": exec.run_id,
            "activity_id": task.activity_id, "activity_type": activity_type, "attempt": task.attempt,
            "behaviour": format!("{b:?}").to_lowercase()});
        let p = Process::Client(fresh());
        rec.record(p, OpType::Invoke, "act-poll", json!({}), Some(node), None);
        rec.record(p, OpType::Ok, "act-poll", handed, Some(node), None);
        // A saga step first does its work: the signal to an account.
        if let Some(step) = Step::from_activity_type(&activity_type) {
            let Some(t) = transfer_of(&task.input) else {
                continue;
            };
            let (n, ch) = {
                let n = nodes[rng.random_range(0..nodes.len())];
                (n, channels[&n].clone())
            };
            if step == Step::Credit && t.refused() {
                refuse(ch, n, rec.clone(), fresh(), task.task_token.clone(), identity.clone(),
                       json!({"wid": exec.workflow_id, "run_id": exec.run_id, "attempt": task.attempt})).await;
                continue;
            }
            if !bank_signal(ch, n, &rec, fresh(), step, &exec.workflow_id, &t).await {
                // Not known to have landed: the attempt times out and is retried.
                continue;
            }
        }
        let args = |k: u32| {
            json!({"wid": exec.workflow_id, "run_id": exec.run_id, "attempt": task.attempt,
                   "value": format!("{}#{}#{k}", exec.workflow_id, task.attempt)})
        };
        let pick = |rng: &mut StdRng| {
            let n = nodes[rng.random_range(0..nodes.len())];
            (n, channels[&n].clone())
        };
        match b {
            Behaviour::Vanish => {}
            Behaviour::Once | Behaviour::Twice => {
                let (n, ch) = pick(&mut rng);
                let token = task.task_token.clone();
                answer(
                    ch,
                    n,
                    rec.clone(),
                    fresh(),
                    token,
                    identity.clone(),
                    args(0),
                )
                .await;
                if b == Behaviour::Twice {
                    let (n, ch) = pick(&mut rng);
                    let token = task.task_token.clone();
                    answer(
                        ch,
                        n,
                        rec.clone(),
                        fresh(),
                        token,
                        identity.clone(),
                        args(1),
                    )
                    .await;
                }
            }
            Behaviour::Late => {
                let (n, ch) = pick(&mut rng);
                let (rec, process, token, identity, args) = (
                    rec.clone(),
                    fresh(),
                    task.task_token.clone(),
                    identity.clone(),
                    args(0),
                );
                late.spawn(async move {
                    tokio::time::sleep(ACTIVITY_TIMEOUT + Duration::from_millis(300)).await;
                    answer(ch, n, rec, process, token, identity, args).await;
                });
            }
        }
    }
    late.abort_all();
    while late.join_next().await.is_some() {}
}

/// The activities checker.
pub fn check(ops: &[Op], fin: &Final) -> CheckResult {
    let mut r = CheckResult::new("activities");
    // Attempts handed out, per run.
    let mut handed: BTreeMap<(&str, &str, i64), u64> = BTreeMap::new();
    let mut attempts: BTreeMap<&str, i64> = BTreeMap::new();
    for o in ops {
        if o.f != "act-poll" || o.kind != OpType::Ok {
            continue;
        }
        let (Some(run), Some(attempt)) = (o.value["run_id"].as_str(), o.value["attempt"].as_i64())
        else {
            continue;
        };
        let activity = o.value["activity_id"].as_str().unwrap_or("");
        if let Some(first) = handed.insert((run, activity, attempt), o.index) {
            r.invalid(
                json!({"run_id": run, "activity_id": activity, "attempt": attempt,
                "first": first, "again": o.index, "problem": "activity attempt handed out twice"}),
            );
        }
        if o.value.get("activity_type").is_some() && o.value["activity_type"] != "jepsen-act" {
            continue;
        }
        let a = attempts.entry(run).or_default();
        *a = (*a).max(attempt);
    }
    // Completions sent, per workflow id: (outcome, value).
    let mut sent: BTreeMap<&str, Vec<(OpType, &str)>> = BTreeMap::new();
    for p in pairs(ops, |f| f == "act-complete") {
        let v = &p.invoke.value;
        if let (Some(wid), Some(value)) = (v["wid"].as_str(), v["value"].as_str()) {
            sent.entry(wid).or_default().push((p.outcome(), value));
        }
    }
    for list in sent.values() {
        for (kind, _) in list {
            r.count(&format!("answers-{kind:?}").to_lowercase(), 1);
        }
    }
    let mut checked = 0u64;
    for p in pairs(ops, |f| f == "start") {
        if p.invoke.value["type"] != ACTIVITY {
            continue;
        }
        let Some(wid) = p.invoke.value["wid"].as_str() else {
            continue;
        };
        let mine = sent.get(wid).map(Vec::as_slice).unwrap_or(&[]);
        let oks: Vec<&str> = mine
            .iter()
            .filter(|(k, _)| *k == OpType::Ok)
            .map(|(_, v)| *v)
            .collect();
        if oks.len() > 1 {
            r.invalid(json!({"wid": wid, "accepted": oks,
                "problem": "more than one completion accepted for one activity"}));
        }
        let Some(Found::Run {
            status: 2,
            activity_ends,
            run_id,
            ..
        }) = fin.workflows.get(wid)
        else {
            continue;
        };
        checked += 1;
        if attempts.get(run_id.as_str()).is_some_and(|&a| a > 1) {
            r.count("retried", 1);
        }
        let [end] = activity_ends.as_slice() else {
            r.invalid(json!({"wid": wid, "outcomes": activity_ends,
                "problem": "a completed activity workflow's history does not hold exactly one activity outcome"}));
            continue;
        };
        r.count(&end.kind, 1);
        if let Some(ok) = oks.first() {
            if end.kind != "completed" || end.result.as_deref() != Some(*ok) {
                r.invalid(json!({"wid": wid, "accepted": ok, "recorded": end,
                    "problem": "an accepted completion is not the recorded outcome"}));
            }
        }
        if let (true, Some(value)) = (end.kind == "completed", end.result.as_deref()) {
            match mine.iter().find(|(_, v)| *v == value) {
                None => r.invalid(json!({"wid": wid, "recorded": value,
                    "problem": "the recorded result was never sent"})),
                Some((OpType::Fail, _)) => r.invalid(json!({"wid": wid, "recorded": value,
                    "problem": "a rejected completion was recorded"})),
                Some(_) => {}
            }
        }
    }
    r.count("workflows", checked);
    r.summary = format!("{checked} activity workflows checked; {:?}", r.counts);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;
    use crate::workload::workflow::ActivityEnd;

    fn op(i: u64, p: u64, kind: OpType, f: &str, value: serde_json::Value) -> Op {
        Op {
            index: i,
            time_ns: i * 1000,
            wall_ns: 0,
            process: Process::Client(p),
            kind,
            f: f.into(),
            value,
            node: Some(1),
            error: None,
        }
    }

    fn answer_op(i: u64, p: u64, kind: OpType, value: &str) -> [Op; 2] {
        let v = json!({"wid": "w", "run_id": "r", "value": value});
        [
            op(i, p, OpType::Invoke, "act-complete", v.clone()),
            op(i + 1, p, kind, "act-complete", v),
        ]
    }

    /// Attempt 1 answered late (rejected), attempt 2 answered twice (first accepted).
    fn history() -> Vec<Op> {
        let mut h = vec![
            op(
                0,
                0,
                OpType::Invoke,
                "start",
                json!({"wid": "w", "type": ACTIVITY}),
            ),
            op(
                1,
                0,
                OpType::Ok,
                "start",
                json!({"wid": "w", "run_id": "r"}),
            ),
            op(
                2,
                10,
                OpType::Ok,
                "act-poll",
                json!({"run_id": "r", "activity_id": "a", "attempt": 1}),
            ),
            op(
                3,
                11,
                OpType::Ok,
                "act-poll",
                json!({"run_id": "r", "activity_id": "a", "attempt": 2}),
            ),
        ];
        h.extend(answer_op(4, 12, OpType::Ok, "w#2#0"));
        h.extend(answer_op(6, 13, OpType::Fail, "w#2#1"));
        h.extend(answer_op(8, 14, OpType::Fail, "w#1#0"));
        h
    }

    fn fin(ends: &[(&str, Option<&str>)]) -> Final {
        let mut f = Final::default();
        f.workflows.insert(
            "w".into(),
            Found::Run {
                run_id: "r".into(),
                status: 2,
                result: Some("w".into()),
                timers_fired: 0,
                activity_ends: ends
                    .iter()
                    .map(|(k, v)| ActivityEnd {
                        kind: k.to_string(),
                        result: v.map(str::to_string),
                    })
                    .collect(),
            },
        );
        f
    }

    #[test]
    fn one_accepted_completion_recorded_is_valid() {
        let r = check(&history(), &fin(&[("completed", Some("w#2#0"))]));
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.counts["retried"], 1);
    }

    #[test]
    fn a_second_accepted_completion_is_invalid() {
        let mut h = history();
        h[7].kind = OpType::Ok;
        let r = check(&h, &fin(&[("completed", Some("w#2#0"))]));
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
    }

    #[test]
    fn the_recorded_outcome_must_be_the_accepted_one() {
        for ends in [
            vec![("completed", Some("w#1#0"))], // the rejected late answer recorded
            vec![("completed", Some("w#9#9"))], // never sent
            vec![("timed-out", None)],          // accepted answer lost
            vec![("completed", Some("w#2#0")), ("timed-out", None)], // two outcomes
            vec![],                             // none
        ] {
            let r = check(&history(), &fin(&ends));
            assert_eq!(r.verdict, Verdict::Invalid, "{ends:?}: {r:?}");
        }
    }

    #[test]
    fn an_attempt_handed_out_twice_is_invalid() {
        let mut h = history();
        h.push(op(
            20,
            15,
            OpType::Ok,
            "act-poll",
            json!({"run_id": "r", "activity_id": "a", "attempt": 2}),
        ));
        let r = check(&h, &fin(&[("completed", Some("w#2#0"))]));
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
        // Another activity's attempt 2 of the same run is not a repeat.
        let mut other = history();
        other.push(op(
            20,
            15,
            OpType::Ok,
            "act-poll",
            json!({"run_id": "r", "activity_id": "b", "attempt": 2}),
        ));
        let r = check(&other, &fin(&[("completed", Some("w#2#0"))]));
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    }

    #[test]
    fn an_indeterminate_answer_may_be_the_recorded_one() {
        let mut h = history();
        h[5].kind = OpType::Info;
        let r = check(&h, &fin(&[("completed", Some("w#2#0"))]));
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        // …and an activity that timed out for good with no answer accepted is fine too.
        let r = check(&h, &fin(&[("timed-out", None)]));
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    }
}
