//! Named sets of runs. `ci` fits a 2-core CI machine in a few minutes and includes the canary,
//! which must come out INVALID; `full` is every fault set × seeds × 3 and 5 nodes, each run
//! driving every workload at once (they share the cluster, so each sees the others' load).

use std::path::{Path, PathBuf};

use crate::checker::Verdict;
use crate::nemesis::Fault;
use crate::run::{progress, Backend, RunConfig, Workload};

/// Common settings of a suite's runs.
pub struct SuiteOptions {
    pub keel_bin: PathBuf,
    pub canary_bin: PathBuf,
    pub store: PathBuf,
    pub backend: Backend,
    pub seed: u64,
    pub seeds: u64,
    /// Cluster sizes of the full suite (3, 5 or both).
    pub sizes: Vec<u64>,
    /// Seconds of load per full-suite run.
    pub time_limit_s: u64,
}

fn cfg(
    o: &SuiteOptions,
    name: &str,
    nodes: u64,
    workloads: &[Workload],
    faults: &[Fault],
    time_limit_s: u64,
    seed: u64,
) -> RunConfig {
    RunConfig {
        name: name.into(),
        nodes,
        workloads: workloads.to_vec(),
        faults: faults.to_vec(),
        time_limit_s,
        interval_s: 5,
        recovery_s: 30,
        rate: 60.0,
        concurrency: 4,
        backend: o.backend,
        seed,
        keel_bin: o.keel_bin.clone(),
        store: o.store.clone(),
        expect_invalid: false,
    }
}

/// The CI suite's runs.
pub fn ci(o: &SuiteOptions) -> Vec<RunConfig> {
    use Fault::*;
    use Workload::*;
    let both = [Register, Workflow];
    let mut canary = cfg(
        o,
        "ci-canary-register",
        3,
        &[Register],
        &[Partition],
        30,
        o.seed,
    );
    canary.keel_bin = o.canary_bin.clone();
    canary.expect_invalid = true;
    vec![
        cfg(
            o,
            "ci-membership",
            3,
            &[Register],
            &[Membership],
            30,
            o.seed + 2,
        ),
        cfg(
            o,
            "ci-partition-kill",
            3,
            &both,
            &[Partition, Kill],
            40,
            o.seed,
        ),
        cfg(
            o,
            "ci-pause-clock",
            3,
            &both,
            &[Pause, Clock],
            40,
            o.seed + 1,
        ),
        canary,
    ]
}

/// The full suite's runs.
pub fn full(o: &SuiteOptions) -> Vec<RunConfig> {
    use Fault::*;
    use Workload::*;
    let fault_sets: Vec<(&str, Vec<Fault>)> = vec![
        ("partition", vec![Partition]),
        ("kill", vec![Kill]),
        ("pause", vec![Pause]),
        ("clock", vec![Clock, Faketime, Kill]),
        ("delay", vec![Delay, Partition]),
        ("membership", vec![Membership]),
        ("corrupt", vec![Corrupt, Kill]),
        (
            "all",
            vec![
                Partition, Kill, Pause, Clock, Faketime, Delay, Membership, Corrupt,
            ],
        ),
    ];
    let mut runs = Vec::new();
    for &nodes in &o.sizes {
        for (fname, faults) in &fault_sets {
            for s in 0..o.seeds {
                let name = format!("full-{nodes}n-{fname}");
                let mut c = cfg(
                    o,
                    &name,
                    nodes,
                    &[Register, Workflow],
                    faults,
                    o.time_limit_s,
                    o.seed + s,
                );
                // Latency needs the proxy: this kernel has no netem.
                if faults.contains(&Delay) {
                    c.backend = Backend::Proxy;
                }
                runs.push(c);
            }
        }
    }
    runs
}

/// Runs `runs` one after the other; prints one line per run and the closing
/// `N passed, N failed`. A run passes when its verdict is what it expects (valid, or invalid
/// for the canary).
pub async fn run_all(runs: Vec<RunConfig>) -> anyhow::Result<bool> {
    let mut lines = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for cfg in runs {
        let expect = if cfg.expect_invalid {
            Verdict::Invalid
        } else {
            Verdict::Valid
        };
        let name = cfg.name.clone();
        let seed = cfg.seed;
        let line = match crate::run::run(cfg).await {
            Ok(res) => {
                crate::run::print_summary(&res);
                let ok = res.verdict == expect;
                if ok {
                    passed += 1;
                } else {
                    failed += 1;
                }
                format!(
                    "{:<32} seed {seed:<6} {:<8} (expected {}) {} failover p50 {} p99 {} ms  {}",
                    name,
                    format!("{:?}", res.verdict).to_lowercase(),
                    format!("{expect:?}").to_lowercase(),
                    if ok { "PASS" } else { "FAIL" },
                    res.failover_ms["p50"],
                    res.failover_ms["p99"],
                    res.dir.display()
                )
            }
            Err(e) => {
                failed += 1;
                format!("{name:<32} seed {seed:<6} harness error: {e:#}  FAIL")
            }
        };
        progress!("{line}");
        lines.push(line);
    }
    println!("== suite");
    for l in &lines {
        println!("{l}");
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

/// `<dir of keel_bin>/keel-canary`.
pub fn default_canary(keel_bin: &Path) -> PathBuf {
    keel_bin.with_file_name("keel-canary")
}
