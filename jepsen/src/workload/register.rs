//! The register workload (jepsen-notes W8): get / put / compare-and-set on a few keys of
//! `keel.kv.v1`, every written value unique, reads linearizable (ReadIndex) unless a read
//! opts into `keel-read-consistency: stale`.
//!
//! Checkers: [`check_linearizable`] runs WGL per key against a CAS register;
//! [`check_stale_reads`] holds stale reads to what they promise — the value the register had
//! at the applied index the read reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::kv::v1 as kv;
use keel_proto::kv::v1::kv_client::KvClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tonic::transport::Channel;

use crate::checker::wgl::{self, Call, Entry, Limits, Outcome, Ret};
use crate::checker::CheckResult;
use crate::client::{pace, Thread, OP_TIMEOUT};
use crate::history::{pairs, Op, OpType, Recorder};

/// Register workload settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub keys: u64,
    /// Fraction of reads sent as stale reads.
    pub stale_fraction: f64,
    pub key_prefix: String,
}

fn key_bytes(prefix: &str, k: u64) -> Vec<u8> {
    format!("{prefix}/k{k}").into_bytes()
}

fn parse_value(v: &Option<Vec<u8>>) -> Result<Option<u64>, String> {
    match v {
        None => Ok(None),
        Some(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("unparseable value {b:?}")),
    }
}

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(OP_TIMEOUT);
    r
}

/// One client thread: runs until `stop`.
#[allow(clippy::too_many_arguments)]
pub async fn client(
    mut thread: Thread,
    opts: Options,
    channels: BTreeMap<u64, Channel>,
    rec: Recorder,
    seed: u64,
    rate: f64,
    next_value: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (thread.index.wrapping_mul(0x9e37_79b9)));
    let nodes: Vec<u64> = channels.keys().copied().collect();
    // The last value this thread saw per key: CAS expects it, so many CAS succeed.
    let mut seen: BTreeMap<u64, Option<u64>> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        pace(rate, thread.concurrency, &mut rng).await;
        let k = rng.random_range(0..opts.keys);
        let node = nodes[rng.random_range(0..nodes.len())];
        let mut c = KvClient::new(channels[&node].clone());
        let key = key_bytes(&opts.key_prefix, k);
        let roll: f64 = rng.random();
        if roll < 0.4 {
            let stale = rng.random_bool(opts.stale_fraction.clamp(0.0, 1.0));
            let f = if stale { "read-stale" } else { "read" };
            rec.record(
                thread.proc(),
                OpType::Invoke,
                f,
                json!({"key": k}),
                Some(node),
                None,
            );
            let mut req = request(kv::GetRequest { key });
            if stale {
                req.metadata_mut().insert(
                    keel_proto::READ_CONSISTENCY_HEADER,
                    tonic::metadata::MetadataValue::from_static(keel_proto::READ_CONSISTENCY_STALE),
                );
            }
            match c.get(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    match parse_value(&r.value) {
                        Ok(v) => {
                            seen.insert(k, v);
                            thread.complete(
                                &rec,
                                OpType::Ok,
                                f,
                                json!({"key": k, "value": v, "applied": r.applied_index}),
                                node,
                                None,
                            );
                        }
                        Err(e) => {
                            thread.complete(&rec, OpType::Info, f, json!({"key": k}), node, Some(e))
                        }
                    }
                }
                Err(s) => thread.fail(&rec, f, json!({"key": k}), node, &s, false),
            }
        } else {
            let v = next_value.fetch_add(1, Ordering::Relaxed);
            let cas = roll >= 0.7;
            let (f, args) = if cas {
                let expected = seen.get(&k).copied().flatten();
                ("cas", json!({"key": k, "expected": expected, "new": v}))
            } else {
                ("write", json!({"key": k, "value": v}))
            };
            rec.record(
                thread.proc(),
                OpType::Invoke,
                f,
                args.clone(),
                Some(node),
                None,
            );
            let value = v.to_string().into_bytes();
            let result = if cas {
                let expected = seen.get(&k).copied().flatten();
                c.compare_and_set(request(kv::CompareAndSetRequest {
                    key,
                    expected: expected.map(|e| e.to_string().into_bytes()),
                    value,
                }))
                .await
            } else {
                c.put(request(kv::PutRequest { key, value })).await
            };
            match result {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.succeeded {
                        seen.insert(k, Some(v));
                    }
                    let mut out = args;
                    out["succeeded"] = json!(r.succeeded);
                    out["index"] = json!(r.log_index);
                    thread.complete(&rec, OpType::Ok, f, out, node, None);
                }
                Err(s) => thread.fail(&rec, f, args, node, &s, true),
            }
        }
    }
}

/// A failover probe pinned to one node: a blind write every 50 ms to a key no checker reads,
/// so the time from a fault to the majority's first acknowledged write is measured by a
/// client that is never itself stuck behind the workload's pacing.
pub async fn probe(
    node: u64,
    channel: Channel,
    key_prefix: String,
    rec: Recorder,
    next_value: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut thread = Thread::new(PROBE_PROCESS_BASE + node, 1_000);
    let key = format!("{key_prefix}/probe{node}").into_bytes();
    while !stop.load(Ordering::Relaxed) {
        let v = next_value.fetch_add(1, Ordering::Relaxed);
        let args = json!({"value": v});
        rec.record(
            thread.proc(),
            OpType::Invoke,
            "probe",
            args.clone(),
            Some(node),
            None,
        );
        let mut req = tonic::Request::new(kv::PutRequest {
            key: key.clone(),
            value: v.to_string().into_bytes(),
        });
        req.set_timeout(Duration::from_secs(2));
        match KvClient::new(channel.clone()).put(req).await {
            Ok(_) => thread.complete(&rec, OpType::Ok, "probe", args, node, None),
            Err(s) => thread.fail(&rec, "probe", args, node, &s, true),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Probes record under process ids from here.
const PROBE_PROCESS_BASE: u64 = 2_000_000;

fn is_register_op(f: &str) -> bool {
    matches!(f, "read" | "read-stale" | "write" | "cas")
}

fn u(v: &serde_json::Value) -> Option<u64> {
    v.as_u64()
}

/// Per-key WGL entries from the history (failed ops and stale reads left out).
pub fn entries(ops: &[Op]) -> BTreeMap<u64, Vec<Entry>> {
    let mut by_key: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
    for p in pairs(ops, is_register_op) {
        let inv = p.invoke;
        if inv.f == "read-stale" {
            continue;
        }
        let Some(k) = u(&inv.value["key"]) else {
            continue;
        };
        let call = match inv.f.as_str() {
            "read" => Call::Read,
            "write" => match u(&inv.value["value"]) {
                Some(v) => Call::Write(v),
                None => continue,
            },
            _ => match u(&inv.value["new"]) {
                Some(new) => Call::Cas {
                    expected: u(&inv.value["expected"]),
                    new,
                },
                None => continue,
            },
        };
        let ret = match p.outcome() {
            OpType::Fail | OpType::Invoke => continue,
            // An indeterminate read had no effect and constrains nothing.
            OpType::Info if call == Call::Read => continue,
            OpType::Info => None,
            OpType::Ok => {
                let c = p.complete.expect("ok has a completion");
                let r = match call {
                    Call::Read => Ret::Read(u(&c.value["value"])),
                    Call::Write(_) => Ret::Write,
                    Call::Cas { .. } => Ret::Cas(c.value["succeeded"].as_bool().unwrap_or(false)),
                };
                Some((c.time_ns, r))
            }
        };
        by_key.entry(k).or_default().push(Entry {
            id: inv.index,
            call,
            invoke: inv.time_ns,
            ret,
        });
    }
    by_key
}

/// WGL per key; `budget` bounds the whole check (then unknown).
pub fn check_linearizable(ops: &[Op], budget: Duration) -> CheckResult {
    let mut r = CheckResult::new("register-linearizable");
    let by_key = entries(ops);
    let deadline = Instant::now() + budget;
    let mut total = 0u64;
    for (k, es) in &by_key {
        total += es.len() as u64;
        r.count(
            "indeterminate",
            es.iter().filter(|e| e.ret.is_none()).count() as u64,
        );
        match wgl::check(
            es,
            &Limits {
                max_steps: 5_000_000,
                deadline: Some(deadline),
            },
        ) {
            Outcome::Linearizable => r.count("linearizable_keys", 1),
            Outcome::NotLinearizable {
                op,
                explanation,
                prefix,
            } => r.invalid(
                json!({"key": k, "op_index": op, "explanation": explanation, "prefix": prefix}),
            ),
            Outcome::Unknown { reason } => r.unknown(json!({"key": k, "reason": reason})),
        }
    }
    r.count("ops", total);
    r.summary = format!(
        "{} keys, {total} ops checked (WGL, CAS register)",
        by_key.len()
    );
    r
}

/// Stale reads promise the register's value at the applied index they report: the value of
/// the last acknowledged write at or below it. Exact when the key has no indeterminate
/// writes; otherwise the value must at least have been written (by an op invoked before the
/// read returned) at an index ≤ the read's, or be the initial absent value.
pub fn check_stale_reads(ops: &[Op]) -> CheckResult {
    let mut r = CheckResult::new("register-stale-reads");
    // key → (index, value) of acknowledged effective writes.
    let mut writes: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    let mut uncertain: BTreeMap<u64, bool> = BTreeMap::new();
    // value → invoke time, for every attempted write.
    let mut invoked_at: BTreeMap<u64, u64> = BTreeMap::new();
    let all = pairs(ops, is_register_op);
    for p in &all {
        let inv = p.invoke;
        let Some(k) = u(&inv.value["key"]) else {
            continue;
        };
        let v = match inv.f.as_str() {
            "write" => u(&inv.value["value"]),
            "cas" => u(&inv.value["new"]),
            _ => continue,
        };
        let Some(v) = v else { continue };
        invoked_at.insert(v, inv.time_ns);
        match p.outcome() {
            OpType::Ok => {
                let c = p.complete.expect("ok");
                if c.value["succeeded"].as_bool() == Some(true) {
                    if let Some(i) = u(&c.value["index"]) {
                        writes.entry(k).or_default().push((i, v));
                    }
                }
            }
            OpType::Info => {
                uncertain.insert(k, true);
            }
            _ => {}
        }
    }
    for w in writes.values_mut() {
        w.sort();
    }
    let mut checked = 0;
    for p in &all {
        if p.invoke.f != "read-stale" || p.outcome() != OpType::Ok {
            continue;
        }
        let c = p.complete.expect("ok");
        let (Some(k), Some(applied)) = (u(&c.value["key"]), u(&c.value["applied"])) else {
            continue;
        };
        checked += 1;
        let got = u(&c.value["value"]);
        let ws = writes.get(&k).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(v) = got {
            match invoked_at.get(&v) {
                None => {
                    r.invalid(json!({"key": k, "read_index": p.invoke.index, "value": v, "problem": "value never written"}));
                    continue;
                }
                Some(&t) if t > c.time_ns => {
                    r.invalid(json!({"key": k, "read_index": p.invoke.index, "value": v, "problem": "value written only after the read returned"}));
                    continue;
                }
                _ => {}
            }
            if let Some(&(i, _)) = ws.iter().find(|(_, wv)| *wv == v) {
                if i > applied {
                    r.invalid(json!({"key": k, "read_index": p.invoke.index, "value": v, "applied": applied, "written_at": i, "problem": "read saw a write from after its applied index"}));
                    continue;
                }
            }
        }
        if uncertain.get(&k).copied().unwrap_or(false) {
            continue;
        }
        // Exact: the value(s) of the highest acknowledged index ≤ applied (one entry may hold
        // several writes of the key; the order inside it is not recorded).
        let top = ws
            .iter()
            .rev()
            .find(|(i, _)| *i <= applied)
            .map(|(i, _)| *i);
        let allowed: Vec<Option<u64>> = match top {
            None => vec![None],
            Some(t) => ws
                .iter()
                .filter(|(i, _)| *i == t)
                .map(|(_, v)| Some(*v))
                .collect(),
        };
        if !allowed.contains(&got) {
            r.invalid(json!({"key": k, "read_index": p.invoke.index, "value": got, "applied": applied, "expected_one_of": allowed, "problem": "not the register's value at the reported applied index"}));
        }
    }
    r.count("stale_reads", checked);
    r.summary = format!("{checked} stale reads held to their applied index");
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Verdict;
    use crate::history::Process;

    /// A history builder: (process, type, f, value, time).
    fn h(events: &[(u64, OpType, &str, serde_json::Value)]) -> Vec<Op> {
        events
            .iter()
            .enumerate()
            .map(|(i, (p, t, f, v))| Op {
                index: i as u64,
                time_ns: i as u64 * 10,
                wall_ns: 0,
                process: Process::Client(*p),
                kind: *t,
                f: f.to_string(),
                value: v.clone(),
                node: Some(1),
                error: None,
            })
            .collect()
    }

    use OpType::*;

    #[test]
    fn a_read_of_an_overwritten_value_is_not_linearizable() {
        let good = h(&[
            (0, Invoke, "write", json!({"key": 1, "value": 5})),
            (
                0,
                Ok,
                "write",
                json!({"key": 1, "value": 5, "succeeded": true, "index": 3}),
            ),
            (1, Invoke, "read", json!({"key": 1})),
            (1, Ok, "read", json!({"key": 1, "value": 5, "applied": 3})),
        ]);
        assert_eq!(
            check_linearizable(&good, Duration::from_secs(5)).verdict,
            Verdict::Valid
        );
        let bad = h(&[
            (0, Invoke, "write", json!({"key": 1, "value": 5})),
            (
                0,
                Ok,
                "write",
                json!({"key": 1, "value": 5, "succeeded": true, "index": 3}),
            ),
            (0, Invoke, "write", json!({"key": 1, "value": 6})),
            (
                0,
                Ok,
                "write",
                json!({"key": 1, "value": 6, "succeeded": true, "index": 4}),
            ),
            (1, Invoke, "read", json!({"key": 1})),
            (1, Ok, "read", json!({"key": 1, "value": 5, "applied": 3})),
        ]);
        let r = check_linearizable(&bad, Duration::from_secs(5));
        assert_eq!(r.verdict, Verdict::Invalid, "{r:?}");
        assert_eq!(r.counterexamples[0]["key"], 1);
    }

    #[test]
    fn failed_writes_are_ignored_and_indeterminate_ones_may_land() {
        let hist = h(&[
            (0, Invoke, "write", json!({"key": 2, "value": 7})),
            (0, Fail, "write", json!({"key": 2, "value": 7})),
            (1, Invoke, "write", json!({"key": 2, "value": 8})),
            (1, Info, "write", json!({"key": 2, "value": 8})),
            (2, Invoke, "read", json!({"key": 2})),
            (2, Ok, "read", json!({"key": 2, "value": 8, "applied": 9})),
        ]);
        assert_eq!(
            check_linearizable(&hist, Duration::from_secs(5)).verdict,
            Verdict::Valid
        );
        let saw_failed = h(&[
            (0, Invoke, "write", json!({"key": 2, "value": 7})),
            (0, Fail, "write", json!({"key": 2, "value": 7})),
            (2, Invoke, "read", json!({"key": 2})),
            (2, Ok, "read", json!({"key": 2, "value": 7, "applied": 9})),
        ]);
        assert_eq!(
            check_linearizable(&saw_failed, Duration::from_secs(5)).verdict,
            Verdict::Invalid,
            "a definitely-failed write was observed"
        );
    }

    #[test]
    fn stale_reads_must_match_their_applied_index() {
        let base = [
            (0, Invoke, "write", json!({"key": 1, "value": 5})),
            (
                0,
                Ok,
                "write",
                json!({"key": 1, "value": 5, "succeeded": true, "index": 3}),
            ),
            (0, Invoke, "write", json!({"key": 1, "value": 6})),
            (
                0,
                Ok,
                "write",
                json!({"key": 1, "value": 6, "succeeded": true, "index": 7}),
            ),
        ];
        let mut good = base.to_vec();
        good.extend([
            (1, Invoke, "read-stale", json!({"key": 1})),
            (
                1,
                Ok,
                "read-stale",
                json!({"key": 1, "value": 5, "applied": 5}),
            ),
            (1, Invoke, "read-stale", json!({"key": 1})),
            (
                1,
                Ok,
                "read-stale",
                json!({"key": 1, "value": null, "applied": 2}),
            ),
        ]);
        let r = check_stale_reads(&h(&good));
        assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
        assert_eq!(r.counts["stale_reads"], 2);
        // Stale but not linearizable reads are fine for the stale checker, and WGL skips them.
        assert_eq!(
            check_linearizable(&h(&good), Duration::from_secs(5)).verdict,
            Verdict::Valid
        );

        for (value, applied) in [
            (json!(6), 5),
            (json!(5), 8),
            (json!(99), 9),
            (json!(null), 4),
        ] {
            let mut bad = base.to_vec();
            bad.extend([
                (1, Invoke, "read-stale", json!({"key": 1})),
                (
                    1,
                    Ok,
                    "read-stale",
                    json!({"key": 1, "value": value, "applied": applied}),
                ),
            ]);
            let r = check_stale_reads(&h(&bad));
            assert_eq!(
                r.verdict,
                Verdict::Invalid,
                "value {value} at {applied}: {r:?}"
            );
        }
    }
}
