//! Anti-vacuity and failover time.
//!
//! A run is only evidence if its faults hit what matters: coverage is *unknown* unless some
//! installed fault targeted the leader and leadership changed at least once. Failover time is
//! measured from each installed leader fault to the first acknowledged write invoked after it
//! (jepsen-notes §2: the majority's recovery), reported as p50/p99.

use std::collections::BTreeSet;

use serde_json::json;

use super::CheckResult;
use crate::history::{pairs, Op, OpType, Process};

/// Client ops that write.
pub fn is_write(f: &str) -> bool {
    matches!(
        f,
        "write" | "cas" | "start" | "signal" | "complete" | "probe"
    )
}

/// Nemesis ops that end a fault rather than start one.
pub fn is_heal(f: &str) -> bool {
    matches!(
        f,
        "heal" | "restart" | "resume" | "clock-reset" | "delay-stop" | "add-node" | "restore"
    )
}

/// Installed nemesis ops that hit the leader, by time.
fn leader_faults(ops: &[Op]) -> Vec<&Op> {
    ops.iter()
        .filter(|o| {
            o.process == Process::Nemesis
                && o.value["outcome"] == "installed"
                && o.value["leader_hit"] == true
        })
        .collect()
}

/// (leader, term) changes seen by the monitor.
pub fn leader_changes(ops: &[Op]) -> u64 {
    let mut seen: BTreeSet<(u64, u64)> = BTreeSet::new();
    for o in ops {
        if o.process == Process::Monitor && o.f == "leader" {
            if let (Some(l), Some(t)) = (o.value["leader"].as_u64(), o.value["term"].as_u64()) {
                seen.insert((l, t));
            }
        }
    }
    let terms: BTreeSet<u64> = seen.iter().map(|s| s.1).collect();
    (terms.len() as u64).saturating_sub(1)
}

/// Milliseconds from each leader fault to the first ok write invoked after it (faults with no
/// such write are left out).
pub fn failover_samples(ops: &[Op]) -> Vec<f64> {
    let writes: Vec<(u64, u64)> = pairs(ops, is_write)
        .into_iter()
        .filter(|p| p.outcome() == OpType::Ok)
        .map(|p| (p.invoke.time_ns, p.complete.expect("ok").time_ns))
        .collect();
    leader_faults(ops)
        .into_iter()
        .filter_map(|f| {
            writes
                .iter()
                .filter(|(inv, _)| *inv >= f.time_ns)
                .map(|(_, done)| *done)
                .min()
                .map(|done| (done - f.time_ns) as f64 / 1e6)
        })
        .collect()
}

/// The `q` quantile (0..=1) of `xs`, nearest rank.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

/// The coverage checker.
pub fn check(ops: &[Op]) -> CheckResult {
    let mut r = CheckResult::new("coverage");
    let faults = leader_faults(ops);
    let changes = leader_changes(ops);
    let installed = ops
        .iter()
        .filter(|o| {
            o.process == Process::Nemesis && o.value["outcome"] == "installed" && !is_heal(&o.f)
        })
        .count() as u64;
    r.count("faults_installed", installed);
    r.count("leader_faults", faults.len() as u64);
    r.count("leader_changes", changes);
    if faults.is_empty() {
        r.unknown(json!({"problem": "no installed fault targeted the leader"}));
    }
    if changes == 0 {
        r.unknown(json!({"problem": "leadership never changed"}));
    }
    r.summary = format!(
        "{installed} faults installed, {} on the leader, {changes} leader changes",
        faults.len()
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;

    fn op(
        i: u64,
        t_ms: u64,
        process: Process,
        kind: OpType,
        f: &str,
        value: serde_json::Value,
    ) -> Op {
        Op {
            index: i,
            time_ns: t_ms * 1_000_000,
            wall_ns: 0,
            process,
            kind,
            f: f.into(),
            value,
            node: Some(1),
            error: None,
        }
    }

    fn run(leader_hit: bool, terms: &[u64]) -> Vec<Op> {
        let mut h = vec![op(
            0,
            100,
            Process::Nemesis,
            OpType::Info,
            "kill",
            json!({"outcome": "installed", "targets": [1], "leader_hit": leader_hit}),
        )];
        for (i, t) in terms.iter().enumerate() {
            h.push(op(
                1 + i as u64,
                50 + 100 * i as u64,
                Process::Monitor,
                OpType::Info,
                "leader",
                json!({"leader": 1 + i as u64, "term": t}),
            ));
        }
        h.push(op(
            10,
            200,
            Process::Client(0),
            OpType::Invoke,
            "write",
            json!({}),
        ));
        h.push(op(
            11,
            900,
            Process::Client(0),
            OpType::Ok,
            "write",
            json!({}),
        ));
        h.push(op(
            12,
            950,
            Process::Client(1),
            OpType::Invoke,
            "write",
            json!({}),
        ));
        h.push(op(
            13,
            1000,
            Process::Client(1),
            OpType::Ok,
            "write",
            json!({}),
        ));
        h
    }

    #[test]
    fn a_run_that_killed_the_leader_and_saw_a_new_one_is_covered() {
        let h = run(true, &[1, 2]);
        assert_eq!(check(&h).verdict, Verdict::Valid);
        assert_eq!(failover_samples(&h), vec![800.0]);
    }

    #[test]
    fn missing_leader_fault_or_leader_change_is_unknown() {
        assert_eq!(check(&run(false, &[1, 2])).verdict, Verdict::Unknown);
        assert_eq!(check(&run(true, &[1, 1])).verdict, Verdict::Unknown);
        assert!(failover_samples(&run(false, &[1, 2])).is_empty());
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let xs = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&xs, 0.5), Some(3.0));
        assert_eq!(quantile(&xs, 0.99), Some(5.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
