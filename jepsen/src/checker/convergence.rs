//! Convergence (jepsen-notes W6): after the heal every node reaches the same applied index
//! with the same state digest, and no node's commit or applied index ever went backwards
//! within one process lifetime (a restarted process may start lower: its state machine
//! writes are not fsynced; the log is).

use std::collections::BTreeMap;

use serde_json::json;

use super::CheckResult;

/// What the final convergence wait saw: node → (applied index, digest), or `None` when the
/// node never answered.
pub type Digests = BTreeMap<u64, Option<(u64, String)>>;

/// Checks the final digests and the regressions the monitor observed.
pub fn check(digests: &Digests, regressions: &[serde_json::Value]) -> CheckResult {
    let mut r = CheckResult::new("convergence");
    for reg in regressions {
        r.invalid(reg.clone());
    }
    let answered: Vec<(u64, u64, &str)> = digests
        .iter()
        .filter_map(|(&n, d)| d.as_ref().map(|(i, h)| (n, *i, h.as_str())))
        .collect();
    if answered.len() < digests.len() {
        let silent: Vec<u64> = digests
            .iter()
            .filter(|(_, d)| d.is_none())
            .map(|(&n, _)| n)
            .collect();
        r.unknown(json!({"problem": "nodes never answered a digest request", "nodes": silent}));
    }
    let indexes: std::collections::BTreeSet<u64> = answered.iter().map(|a| a.1).collect();
    if indexes.len() > 1 {
        r.unknown(json!({"problem": "nodes did not reach one applied index within the recovery window", "applied": answered.iter().map(|a| (a.0, a.1)).collect::<Vec<_>>()}));
    } else {
        let hashes: std::collections::BTreeSet<&str> = answered.iter().map(|a| a.2).collect();
        if hashes.len() > 1 {
            r.invalid(json!({"problem": "state digests differ at the same applied index", "digests": answered.iter().map(|a| json!({"node": a.0, "applied": a.1, "digest": a.2})).collect::<Vec<_>>()}));
        }
    }
    r.count("nodes", answered.len() as u64);
    r.count("regressions", regressions.len() as u64);
    r.summary = match (indexes.iter().next(), indexes.len()) {
        (Some(i), 1) => format!(
            "{} nodes at applied index {i}; {} regressions",
            answered.len(),
            regressions.len()
        ),
        _ => format!(
            "{} nodes answered; {} regressions",
            answered.len(),
            regressions.len()
        ),
    };
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;

    fn d(entries: &[(u64, Option<(u64, &str)>)]) -> Digests {
        entries
            .iter()
            .map(|(n, v)| (*n, v.map(|(i, h)| (i, h.to_string()))))
            .collect()
    }

    #[test]
    fn equal_digests_at_one_index_converge() {
        let r = check(
            &d(&[
                (1, Some((9, "aa"))),
                (2, Some((9, "aa"))),
                (3, Some((9, "aa"))),
            ]),
            &[],
        );
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    }

    #[test]
    fn different_digests_at_one_index_are_invalid() {
        let r = check(
            &d(&[
                (1, Some((9, "aa"))),
                (2, Some((9, "bb"))),
                (3, Some((9, "aa"))),
            ]),
            &[],
        );
        assert_eq!(r.verdict, Verdict::Invalid);
    }

    #[test]
    fn no_common_index_or_a_silent_node_is_unknown() {
        let r = check(&d(&[(1, Some((9, "aa"))), (2, Some((8, "bb")))]), &[]);
        assert_eq!(r.verdict, Verdict::Unknown);
        let r = check(&d(&[(1, Some((9, "aa"))), (2, None)]), &[]);
        assert_eq!(r.verdict, Verdict::Unknown);
    }

    #[test]
    fn a_regression_is_invalid() {
        let r = check(
            &d(&[(1, Some((9, "aa")))]),
            &[json!({"node": 1, "commit": [9, 7]})],
        );
        assert_eq!(r.verdict, Verdict::Invalid);
    }
}
