//! Disk and identity faults: a node started on a damaged data dir, under another cluster id
//! or on another node's data must refuse to start with a message that names the problem and a non-zero exit code —
//! or, where the damage is caught when read (SST blocks, snapshot chunks carry checksums),
//! run without serving it, which the other checkers judge.

use serde_json::json;

use super::CheckResult;
use crate::history::{Op, Process};

/// Checks every `corrupt` nemesis op.
pub fn check(ops: &[Op]) -> CheckResult {
    let mut r = CheckResult::new("disk-faults");
    let mut seen = 0;
    for o in ops {
        if o.process != Process::Nemesis || o.f != "corrupt" || o.value["outcome"] != "installed" {
            continue;
        }
        seen += 1;
        let mode = o.value["mode"].as_str().unwrap_or("");
        let refused = o.value["result"] == "refused to start";
        let clear = o.value["message"].as_str().is_some_and(|m| !m.is_empty());
        let code = o.value["exit_code"].as_i64();
        r.count(
            &format!("{mode}: {}", o.value["result"].as_str().unwrap_or("?")),
            1,
        );
        if refused {
            if !clear || code == Some(0) {
                r.invalid(json!({"index": o.index, "mode": mode, "problem": "refused to start without a clear error or with exit code 0", "op": o.value}));
            }
        } else {
            match mode {
                "wrong-cluster-id" => r.invalid(json!({"index": o.index, "mode": mode, "problem": "started under another cluster's id", "op": o.value})),
                "foreign-node" => r.invalid(json!({"index": o.index, "mode": mode, "problem": "started on another node's data", "op": o.value})),
                "wal-flip" | "wal-truncate" => r.unknown(json!({"index": o.index, "mode": mode, "problem": "started on a damaged WAL (damage may have missed every record)", "op": o.value})),
                _ => {}
            }
        }
    }
    for o in ops {
        if o.process == Process::Monitor && o.f == "fail-stop" {
            // Damage found at run time: the node stopped itself, naming it.
            r.count("stopped itself on corrupt data at run time", 1);
            if !o.value["message"]
                .as_str()
                .is_some_and(|m| m.contains("corrupted"))
            {
                r.invalid(json!({"index": o.index, "problem": "a node stopped without naming the corruption", "op": o.value}));
            }
        }
    }
    r.summary = format!("{seen} disk or identity faults: {:?}", r.counts);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;
    use crate::history::OpType;

    fn corrupt(mode: &str, result: &str, message: Option<&str>, code: Option<i64>) -> Op {
        Op {
            index: 0,
            time_ns: 0,
            wall_ns: 0,
            process: Process::Nemesis,
            kind: OpType::Info,
            f: "corrupt".into(),
            value: json!({"outcome": "installed", "mode": mode, "result": result, "message": message, "exit_code": code}),
            node: None,
            error: None,
        }
    }

    #[test]
    fn a_clear_refusal_is_valid_and_a_silent_or_wrong_start_is_not() {
        let ok = corrupt(
            "wal-flip",
            "refused to start",
            Some("data dir x is corrupted"),
            Some(1),
        );
        assert_eq!(check(&[ok]).verdict, Verdict::Valid);
        let fine = corrupt("sst-flip", "running", None, None);
        assert_eq!(check(&[fine]).verdict, Verdict::Valid);
        let mute = corrupt("wal-flip", "refused to start", None, Some(1));
        assert_eq!(check(&[mute]).verdict, Verdict::Invalid);
        let zero = corrupt("wal-truncate", "refused to start", Some("x"), Some(0));
        assert_eq!(check(&[zero]).verdict, Verdict::Invalid);
        let imposter = corrupt("wrong-cluster-id", "running", None, None);
        assert_eq!(check(&[imposter]).verdict, Verdict::Invalid);
        let borrowed = corrupt("foreign-node", "running", None, None);
        assert_eq!(check(&[borrowed]).verdict, Verdict::Invalid);
        let refused = corrupt(
            "foreign-node",
            "refused to start",
            Some("data dir x belongs to cluster \"keel-jepsen\" node 2, not node 3"),
            Some(1),
        );
        assert_eq!(check(&[refused]).verdict, Verdict::Valid);
        let stop = |message: &str| Op {
            index: 1,
            time_ns: 0,
            wall_ns: 0,
            process: Process::Monitor,
            kind: OpType::Info,
            f: "fail-stop".into(),
            value: json!({"node": 1, "message": message}),
            node: Some(1),
            error: None,
        };
        let clear = stop(
            "Error: data is corrupted (Corruption: block checksum mismatch); stopping this node",
        );
        assert_eq!(check(&[clear]).verdict, Verdict::Valid);
        assert_eq!(
            check(&[stop("stopping this node")]).verdict,
            Verdict::Invalid
        );
        let lucky = corrupt("wal-flip", "running", None, None);
        assert_eq!(check(&[lucky]).verdict, Verdict::Unknown);
    }
}
