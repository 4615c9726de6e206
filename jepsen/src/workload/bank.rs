//! Bank sagas (jepsen-notes W7): transfers between account workflows, each a saga of
//! activities, whose total must be conserved.
//!
//! - Five account workflows start with 100 each. An account's balance is defined by its
//!   history: the signals `debit:<transfer>:<amount>`, `credit:…` and `refund:…` it received.
//! - A transfer workflow runs the activity `bank-debit` (signals the source account), then
//!   `bank-credit` (signals the destination). A destination that refuses the credit (every
//!   transfer whose amount is a multiple of 5: "account closed") fails it as non-retryable,
//!   and the saga compensates with `bank-refund` to the source. Every activity retries without
//!   limit; its signal carries the request id `<transfer>-<step>`, so a retried or doubled
//!   attempt lands once. The activity workers misbehave as in [`super::activity`].
//!
//! Checker: every signal in an account is a known step of a started transfer, sent to the
//! right account, and lands at most once; each transfer ends committed (debit + credit) or
//! compensated (debit + refund), as its amount decides, or untouched (a start that never
//! ran); a completed transfer is never untouched; and the accounts' total is conserved.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use temporalio_protos::temporal::api::command::v1::Command;
use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;
use temporalio_protos::temporal::api::history::v1::HistoryEvent;

use super::workflow::{complete, payload, payload_text, schedule_activity, Final, Found};
use crate::checker::CheckResult;
use crate::history::{pairs, Op, OpType};

/// The transfer workflow type.
pub const TRANSFER: &str = "jepsen-transfer";
/// Every account's opening balance.
pub const OPENING_BALANCE: i64 = 100;

/// One transfer, the input of its workflow and of each of its activities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub from: String,
    pub to: String,
    pub amount: u64,
}

impl Transfer {
    /// Whether the destination refuses the credit (so the saga compensates).
    pub fn refused(&self) -> bool {
        self.amount.is_multiple_of(5)
    }
}

/// A saga step: the activity type is `bank-<step>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Debit,
    Credit,
    Refund,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Debit => "debit",
            Step::Credit => "credit",
            Step::Refund => "refund",
        }
    }
    pub fn from_activity_type(t: &str) -> Option<Step> {
        Some(match t.strip_prefix("bank-")? {
            "debit" => Step::Debit,
            "credit" => Step::Credit,
            "refund" => Step::Refund,
            _ => return None,
        })
    }
    fn parse(s: &str) -> Option<Step> {
        Step::from_activity_type(&format!("bank-{s}"))
    }
    /// The account the step signals.
    pub fn account(self, t: &Transfer) -> &str {
        match self {
            Step::Credit => &t.to,
            Step::Debit | Step::Refund => &t.from,
        }
    }
    /// The signal a step sends: its value and its request id (the deduplication key).
    pub fn signal(self, wid: &str, t: &Transfer) -> (String, String) {
        (
            format!("{}:{wid}:{}", self.name(), t.amount),
            format!("{wid}-{}", self.name()),
        )
    }
}

/// A transfer workflow task's commands, decided from its history.
pub fn decide(wid: &str, task_queue: &str, events: &[HistoryEvent]) -> Vec<Command> {
    let mut input = None;
    let mut scheduled: BTreeMap<i64, String> = BTreeMap::new();
    let mut state: BTreeMap<String, &str> = BTreeMap::new();
    for e in events {
        match &e.attributes {
            Some(EA::WorkflowExecutionStartedEventAttributes(a)) => input = a.input.clone(),
            Some(EA::ActivityTaskScheduledEventAttributes(a)) => {
                scheduled.insert(e.event_id, a.activity_id.clone());
                state.insert(a.activity_id.clone(), "scheduled");
            }
            Some(EA::ActivityTaskCompletedEventAttributes(a)) => {
                if let Some(id) = scheduled.get(&a.scheduled_event_id) {
                    state.insert(id.clone(), "completed");
                }
            }
            Some(EA::ActivityTaskFailedEventAttributes(a)) => {
                if let Some(id) = scheduled.get(&a.scheduled_event_id) {
                    state.insert(id.clone(), "failed");
                }
            }
            Some(EA::ActivityTaskTimedOutEventAttributes(a)) => {
                if let Some(id) = scheduled.get(&a.scheduled_event_id) {
                    state.insert(id.clone(), "failed");
                }
            }
            _ => {}
        }
    }
    let step = |s: Step| {
        // Unlimited attempts: a step is retried until it is done or refused.
        let t = format!("bank-{}", s.name());
        vec![schedule_activity(
            s.name(),
            &t,
            task_queue,
            input.clone(),
            0,
        )]
    };
    let at = |s: Step| state.get(s.name()).copied();
    match (at(Step::Debit), at(Step::Credit), at(Step::Refund)) {
        (None, _, _) => step(Step::Debit),
        (Some("completed"), None, _) => step(Step::Credit),
        (_, Some("completed"), _) => vec![complete(wid)],
        (_, Some("failed"), None) => step(Step::Refund),
        (_, _, Some("completed")) => vec![complete(wid)],
        _ => Vec::new(),
    }
}

/// The activity input's transfer.
pub fn transfer_of(
    input: &Option<temporalio_protos::temporal::api::common::v1::Payloads>,
) -> Option<Transfer> {
    serde_json::from_str(&payload_text(input)?).ok()
}

/// The signal payload of a step (for the activity worker).
pub fn signal_input(value: &str) -> temporalio_protos::temporal::api::common::v1::Payloads {
    payload(value)
}

/// The bank checker.
pub fn check(ops: &[Op], fin: &Final) -> CheckResult {
    let mut r = CheckResult::new("bank");
    let mut transfers: BTreeMap<&str, (OpType, Transfer)> = BTreeMap::new();
    for p in pairs(ops, |f| f == "start") {
        if p.invoke.value["type"] != TRANSFER {
            continue;
        }
        let (Some(wid), Ok(t)) = (
            p.invoke.value["wid"].as_str(),
            serde_json::from_value::<Transfer>(p.invoke.value["transfer"].clone()),
        ) else {
            continue;
        };
        transfers.insert(wid, (p.outcome(), t));
    }
    if fin.accounts.is_empty() && !transfers.is_empty() {
        r.unknown(json!({"problem": "no account was read"}));
    }
    let mut balances: BTreeMap<&str, i64> = BTreeMap::new();
    let mut applied: BTreeMap<(&str, Step), u32> = BTreeMap::new();
    for (account, got) in &fin.accounts {
        let Some(got) = got else {
            r.unknown(json!({"account": account, "problem": "account history never read"}));
            continue;
        };
        let balance = balances.entry(account).or_insert(OPENING_BALANCE);
        for v in got {
            let parts: Vec<&str> = v.splitn(3, ':').collect();
            let parsed = match parts.as_slice() {
                [s, wid, amount] => Step::parse(s)
                    .zip(Some(*wid))
                    .zip(amount.parse::<i64>().ok()),
                _ => None,
            };
            let Some(((step, wid), amount)) = parsed else {
                r.invalid(
                    json!({"account": account, "signal": v, "problem": "a signal no saga sends"}),
                );
                continue;
            };
            let Some((_, t)) = transfers.get(wid) else {
                r.invalid(json!({"account": account, "signal": v, "problem": "a step of a transfer never started"}));
                continue;
            };
            if step.account(t) != account || amount != t.amount as i64 {
                r.invalid(json!({"account": account, "signal": v, "transfer": t,
                    "problem": "a step landed in the wrong account or with the wrong amount"}));
                continue;
            }
            *balance += match step {
                Step::Debit => -amount,
                Step::Credit | Step::Refund => amount,
            };
            *applied.entry((wid, step)).or_default() += 1;
        }
    }
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    let all_read = fin.accounts.values().all(Option::is_some);
    // With an account unread no saga can be judged (the verdict is already unknown).
    for (wid, (outcome, t)) in transfers.iter().filter(|_| all_read) {
        let n = |s: Step| applied.get(&(*wid, s)).copied().unwrap_or(0);
        let (d, c, f) = (n(Step::Debit), n(Step::Credit), n(Step::Refund));
        if d > 1 || c > 1 || f > 1 {
            r.invalid(json!({"wid": wid, "debits": d, "credits": c, "refunds": f,
                "problem": "a saga step landed more than once"}));
            continue;
        }
        let completed = matches!(fin.workflows.get(*wid), Some(Found::Run { status: 2, .. }));
        let state = match (d, c, f) {
            (1, 1, 0) if !t.refused() => "committed",
            (1, 0, 1) if t.refused() => "compensated",
            (0, 0, 0) if !completed => "untouched",
            _ if !completed => {
                r.unknown(json!({"wid": wid, "debits": d, "credits": c, "refunds": f,
                    "problem": "a saga still running after the recovery window"}));
                "running"
            }
            _ => {
                r.invalid(json!({"wid": wid, "transfer": t, "debits": d, "credits": c, "refunds": f,
                    "problem": "a completed saga is neither committed nor compensated as its amount decides"}));
                "broken"
            }
        };
        if *outcome == OpType::Fail && state != "untouched" {
            r.invalid(json!({"wid": wid, "problem": "a definitely-failed start moved money"}));
        }
        *states.entry(state).or_default() += 1;
    }
    let total: i64 = balances.values().sum();
    let expected = OPENING_BALANCE * fin.accounts.len() as i64;
    // Money in flight is not lost: the total is judged once every saga has settled.
    let settled = !states.contains_key("running");
    if settled && all_read && total != expected {
        r.invalid(
            json!({"total": total, "expected": expected, "balances": balances,
            "problem": "money not conserved"}),
        );
    }
    for (s, n) in &states {
        r.count(s, *n);
    }
    r.summary = format!(
        "{} transfers {:?}; total {total} of {expected}",
        transfers.len(),
        states
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;
    use crate::history::Process;

    fn op(i: u64, p: u64, kind: OpType, value: serde_json::Value) -> Op {
        Op {
            index: i,
            time_ns: i * 1000,
            wall_ns: 0,
            process: Process::Client(p),
            kind,
            f: "start".into(),
            value,
            node: Some(1),
            error: None,
        }
    }

    /// Transfer t1 (a → b, 7: committed) and t2 (b → a, 10: refused, compensated).
    fn history() -> Vec<Op> {
        let t1 = json!({"from": "a", "to": "b", "amount": 7});
        let t2 = json!({"from": "b", "to": "a", "amount": 10});
        vec![
            op(
                0,
                0,
                OpType::Invoke,
                json!({"wid": "t1", "type": TRANSFER, "transfer": t1}),
            ),
            op(1, 0, OpType::Ok, json!({"wid": "t1"})),
            op(
                2,
                1,
                OpType::Invoke,
                json!({"wid": "t2", "type": TRANSFER, "transfer": t2}),
            ),
            op(3, 1, OpType::Ok, json!({"wid": "t2"})),
        ]
    }

    fn fin(a: &[&str], b: &[&str]) -> Final {
        let mut f = Final::default();
        for (acct, got) in [("a", a), ("b", b)] {
            f.accounts.insert(
                acct.into(),
                Some(got.iter().map(|s| s.to_string()).collect()),
            );
        }
        for wid in ["t1", "t2"] {
            f.workflows.insert(
                wid.into(),
                Found::Run {
                    run_id: format!("r-{wid}"),
                    status: 2,
                    result: Some(wid.into()),
                    timers_fired: 0,
                    activity_ends: Vec::new(),
                },
            );
        }
        f
    }

    const B: [&str; 3] = ["credit:t1:7", "debit:t2:10", "refund:t2:10"];

    #[test]
    fn committed_and_compensated_sagas_conserve_money() {
        let r = check(&history(), &fin(&["debit:t1:7"], &B));
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.counts["committed"], 1);
        assert_eq!(r.counts["compensated"], 1);
    }

    #[test]
    fn lost_doubled_or_misrouted_steps_are_invalid() {
        let cases: [(&[&str], &[&str]); 5] = [
            // t1's credit lost: money vanished.
            (&["debit:t1:7"], &["debit:t2:10", "refund:t2:10"]),
            // t1's debit landed twice.
            (&["debit:t1:7", "debit:t1:7"], &B),
            // t2 credited although the destination refused.
            (
                &["debit:t1:7", "credit:t2:10"],
                &["credit:t1:7", "debit:t2:10"],
            ),
            // t1's credit landed in the source account.
            (
                &["debit:t1:7", "credit:t1:7"],
                &["debit:t2:10", "refund:t2:10"],
            ),
            // A step of a transfer nobody started.
            (&["debit:t1:7", "debit:t9:1"], &B),
        ];
        for (a, b) in cases {
            let r = check(&history(), &fin(a, b));
            assert_eq!(r.verdict, Verdict::Invalid, "{a:?} {b:?}: {r:?}");
        }
    }

    #[test]
    fn a_saga_still_running_is_unknown_and_an_unread_account_too() {
        let mut f = fin(&["debit:t1:7"], &["debit:t2:10", "refund:t2:10"]);
        f.workflows.insert("t1".into(), Found::Absent);
        let r = check(&history(), &f);
        assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
        let mut unread = fin(&["debit:t1:7"], &B);
        unread.accounts.insert("b".into(), None);
        assert_eq!(check(&history(), &unread).verdict, Verdict::Unknown);
    }
}
