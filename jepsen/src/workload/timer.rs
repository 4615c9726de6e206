//! The timer checker (jepsen-notes W5): every timer fires exactly once and never early.
//!
//! A timer workflow's worker starts one timer of D ms in its first task (the `complete` op
//! carries `cmd: start-timer`), then completes the workflow in the task that shows
//! TimerFired (its `poll` op carries `timer_fired: true`). The timer started when one of
//! those completions was applied, so no earlier than the first such invoke `t0`; it may not
//! be seen fired before `t0 + D − ε`.
//!
//! Keel stamps time from the leader's clock into the log entry, so a leader whose clock runs
//! ahead fires timers early by its skew: that is the stated trade-off, and ε is the skew the
//! nemesis injected (twice the largest offset: a timer may start under one offset and fire
//! under the opposite one) plus 50 ms. With no clock faults ε is 50 ms. Early is measured on
//! the machine's wall clock, which Keel's nodes stamp replicated time from: it need not run at
//! the monotonic clock's rate, and a run on a VM whose wall clock gained on the monotonic one
//! would otherwise see timers "early" that were on time in the time Keel keeps. Lateness is
//! reported on the monotonic clock (what a caller waits).

use std::collections::BTreeMap;

use serde_json::json;

use super::workflow::{Final, Found, TIMER};
use crate::checker::CheckResult;
use crate::history::{pairs, Op, OpType, Process};

const BASE_EPSILON_MS: u64 = 50;

/// ε for this history: 50 ms plus twice the largest clock offset any nemesis op installed.
pub fn epsilon_ms(ops: &[Op]) -> u64 {
    let skew = ops
        .iter()
        .filter(|o| o.process == Process::Nemesis)
        .filter_map(|o| o.value["offset_ms"].as_i64())
        .map(|ms| ms.unsigned_abs())
        .max()
        .unwrap_or(0);
    BASE_EPSILON_MS + 2 * skew
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The timers checker.
pub fn check(ops: &[Op], fin: &Final) -> CheckResult {
    let mut r = CheckResult::new("timers");
    let eps_ms = epsilon_ms(ops);
    // run id → (earliest invoke of a completion that starts the timer, its wall clock, D, wid)
    let mut started: BTreeMap<&str, (u64, u64, u64, &str)> = BTreeMap::new();
    for p in pairs(ops, |f| f == "complete") {
        let v = &p.invoke.value;
        if v["cmd"] != "start-timer" {
            continue;
        }
        let (Some(run), Some(d), Some(wid)) = (
            v["run_id"].as_str(),
            v["timer_ms"].as_u64(),
            v["wid"].as_str(),
        ) else {
            continue;
        };
        let e = started
            .entry(run)
            .or_insert((p.invoke.time_ns, p.invoke.wall_ns, d, wid));
        if p.invoke.time_ns < e.0 {
            (e.0, e.1) = (p.invoke.time_ns, p.invoke.wall_ns);
        }
    }
    let mut seen: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for o in ops {
        if o.f == "poll" && o.kind == OpType::Ok && o.value["timer_fired"] == true {
            if let Some(run) = o.value["run_id"].as_str() {
                seen.entry(run).or_insert((o.time_ns, o.wall_ns));
            }
        }
    }
    let mut lateness_ms: Vec<i64> = Vec::new();
    for (run, &(t_seen, wall_seen)) in &seen {
        let Some(&(t0, wall0, d, wid)) = started.get(run) else {
            r.invalid(
                json!({"run_id": run, "problem": "a timer fired that no workflow task started"}),
            );
            continue;
        };
        let late = t_seen as i64 - (t0 + d * 1_000_000) as i64;
        // Early is judged on the wall clock Keel stamps replicated time from (the monotonic
        // clock when the history has no wall times).
        let late_wall = if wall0 > 0 && wall_seen > 0 {
            wall_seen as i64 - (wall0 + d * 1_000_000) as i64
        } else {
            late
        };
        if late_wall < -((eps_ms * 1_000_000) as i64) {
            r.invalid(
                json!({"wid": wid, "run_id": run, "timer_ms": d, "epsilon_ms": eps_ms,
                "early_by_ms": -late_wall / 1_000_000,
                "early_by_monotonic_ms": -late / 1_000_000, "problem": "timer fired early"}),
            );
        }
        lateness_ms.push(late / 1_000_000);
    }
    // Exactly one TimerFired in every completed timer workflow's history.
    let mut completed = 0u64;
    for p in pairs(ops, |f| f == "start") {
        if p.invoke.value["type"] != TIMER {
            continue;
        }
        let Some(wid) = p.invoke.value["wid"].as_str() else {
            continue;
        };
        if let Some(Found::Run {
            status: 2,
            timers_fired,
            ..
        }) = fin.workflows.get(wid)
        {
            completed += 1;
            if *timers_fired != 1 {
                r.invalid(json!({"wid": wid, "timers_fired": timers_fired,
                    "problem": "a completed timer workflow's history does not hold exactly one TimerFired"}));
            }
        }
    }
    lateness_ms.sort_unstable();
    r.count("fired", seen.len() as u64);
    r.count("completed", completed);
    // How far the wall clock moved against the monotonic one over the run (0 without wall
    // times): the environment's share of any timer's earliness by the monotonic clock.
    let drift_ms = match (
        ops.iter().find(|o| o.wall_ns > 0),
        ops.iter().rev().find(|o| o.wall_ns > 0),
    ) {
        (Some(a), Some(b)) => {
            ((b.wall_ns as i64 - a.wall_ns as i64) - (b.time_ns as i64 - a.time_ns as i64))
                / 1_000_000
        }
        _ => 0,
    };
    r.count("wall_clock_drift_ms", drift_ms.unsigned_abs());
    r.summary = format!(
        "{} timers seen fired ({completed} workflows completed); lateness p50 {} ms, p99 {} ms, max {} ms; ε {eps_ms} ms; wall clock {drift_ms:+} ms against the monotonic one",
        seen.len(),
        percentile(&lateness_ms, 0.5),
        percentile(&lateness_ms, 0.99),
        lateness_ms.last().copied().unwrap_or(0),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;
    use crate::workload::workflow::ActivityEnd;

    const WALL_EPOCH_NS: u64 = 1_700_000_000_000_000_000;

    fn op(i: u64, ms: u64, p: Process, kind: OpType, f: &str, value: serde_json::Value) -> Op {
        Op {
            index: i,
            time_ns: ms * 1_000_000,
            // The wall clock reads the same as the monotonic one here, from an epoch.
            wall_ns: WALL_EPOCH_NS + ms * 1_000_000,
            process: p,
            kind,
            f: f.into(),
            value,
            node: Some(1),
            error: None,
        }
    }

    /// A timer workflow `w` of 1000 ms: started at 0, timer command at 10 ms, seen at `seen`.
    fn history(seen_ms: u64) -> Vec<Op> {
        let c = Process::Client;
        vec![
            op(
                0,
                0,
                c(0),
                OpType::Invoke,
                "start",
                json!({"wid": "w", "type": TIMER}),
            ),
            op(
                1,
                1,
                c(0),
                OpType::Ok,
                "start",
                json!({"wid": "w", "run_id": "r"}),
            ),
            op(
                2,
                10,
                c(9),
                OpType::Invoke,
                "complete",
                json!({"wid": "w", "run_id": "r", "cmd": "start-timer", "timer_ms": 1000}),
            ),
            op(
                3,
                12,
                c(9),
                OpType::Ok,
                "complete",
                json!({"wid": "w", "run_id": "r"}),
            ),
            op(
                4,
                seen_ms,
                c(9),
                OpType::Ok,
                "poll",
                json!({"wid": "w", "run_id": "r", "timer_fired": true}),
            ),
        ]
    }

    fn fin(fired: u32) -> Final {
        let mut f = Final::default();
        f.workflows.insert(
            "w".into(),
            Found::Run {
                run_id: "r".into(),
                status: 2,
                result: Some("w".into()),
                timers_fired: fired,
                activity_ends: Vec::<ActivityEnd>::new(),
            },
        );
        f
    }

    #[test]
    fn a_timer_seen_after_its_duration_is_valid() {
        let r = check(&history(1_020), &fin(1));
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.counts["fired"], 1);
        // Within ε of the due time is still valid.
        assert_eq!(check(&history(980), &fin(1)).verdict, Verdict::Valid);
    }

    #[test]
    fn an_early_timer_is_invalid_unless_the_nemesis_skewed_a_clock_that_much() {
        let h = history(700);
        assert_eq!(check(&h, &fin(1)).verdict, Verdict::Invalid);
        let mut skewed = h.clone();
        skewed.push(op(
            5,
            20,
            Process::Nemesis,
            OpType::Info,
            "clock-bump",
            json!({"outcome": "installed", "offset_ms": -200}),
        ));
        assert_eq!(epsilon_ms(&skewed), 450);
        assert_eq!(check(&skewed, &fin(1)).verdict, Verdict::Valid);
    }

    #[test]
    fn early_is_judged_on_the_wall_clock_keel_stamps_time_from() {
        // The wall clock gained 400 ms on the monotonic one while the timer ran: seen 700 ms
        // after it started by the monotonic clock, 1,100 ms by the wall clock. On time.
        let mut h = history(700);
        h[4].wall_ns += 400 * 1_000_000;
        assert_eq!(check(&h, &fin(1)).verdict, Verdict::Valid);
        // The other way round (on time by the monotonic clock, early by the wall clock, which
        // Keel's replicated time follows) is early.
        let mut h = history(1_100);
        h[4].wall_ns -= 400 * 1_000_000;
        let r = check(&h, &fin(1));
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
        // Without wall times (older histories) the monotonic clock decides.
        let mut h = history(700);
        h.iter_mut().for_each(|o| o.wall_ns = 0);
        assert_eq!(check(&h, &fin(1)).verdict, Verdict::Invalid);
    }

    #[test]
    fn a_timer_fired_twice_or_never_in_a_completed_workflow_is_invalid() {
        assert_eq!(check(&history(1_100), &fin(2)).verdict, Verdict::Invalid);
        assert_eq!(check(&history(1_100), &fin(0)).verdict, Verdict::Invalid);
    }

    #[test]
    fn a_fired_timer_nobody_started_is_invalid() {
        let mut h = history(1_100);
        h.remove(2);
        h.remove(2);
        assert_eq!(check(&h, &fin(1)).verdict, Verdict::Invalid);
    }
}
