//! One test run: start the cluster, drive the workload under the nemesis, heal, read the
//! final state, check, write `results.json` and `report.html`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use crate::checker::{self, CheckResult, Verdict};
use crate::client::Thread;
use crate::cluster::{self, Cluster, NodeAddrs};
use crate::history::{Op, OpType, Process, Recorder};
use crate::nemesis::{Fault, Nemesis};
use crate::net::{netns, proxy, Net};
use crate::workload::{activity, register, workflow};

/// A workload, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Linearizable get/put/CAS on keel.kv.v1 (plus opted-in stale reads).
    Register,
    /// Workflows through the Temporal API: start → complete, signals exactly once.
    Workflow,
}

/// The network backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Namespaces + nftables when root, else the proxy.
    Auto,
    Proxy,
    Netns,
}

/// Everything that defines a run (written to config.json; a run replays from it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub name: String,
    pub nodes: u64,
    pub workloads: Vec<Workload>,
    pub faults: Vec<Fault>,
    pub time_limit_s: u64,
    pub interval_s: u64,
    pub recovery_s: u64,
    pub rate: f64,
    pub concurrency: u64,
    pub backend: Backend,
    pub seed: u64,
    pub keel_bin: PathBuf,
    pub store: PathBuf,
    /// The run is expected to come out invalid (the canary build).
    #[serde(default)]
    pub expect_invalid: bool,
}

/// What a run concluded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub test: String,
    pub seed: u64,
    pub git_rev: String,
    pub backend: String,
    pub nodes: u64,
    pub duration_s: f64,
    pub verdict: Verdict,
    pub checkers: Vec<CheckResult>,
    pub coverage: serde_json::Value,
    pub failover_ms: serde_json::Value,
    pub dir: PathBuf,
}

fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `YYYYmmddTHHMMSSZ` for now (UTC).
pub fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Progress on stderr.
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[keel-jepsen] {}", format!($($arg)*)) };
}
pub(crate) use progress;

/// Builds the network and node addresses for the chosen backend.
async fn network(cfg: &RunConfig, ids: &[u64]) -> anyhow::Result<(Net, BTreeMap<u64, NodeAddrs>)> {
    let mut rng = rand::rng();
    match cfg.backend {
        Backend::Netns => {
            let net = netns::Netns::attach(ids);
            let addrs = ids
                .iter()
                .map(|&i| {
                    let ip = netns::node_ip(i);
                    (
                        i,
                        NodeAddrs {
                            peer: (ip, 7101).into(),
                            client: (ip, 7201).into(),
                            routes: BTreeMap::new(),
                            netns: Some(netns::node_ns(i)),
                        },
                    )
                })
                .collect();
            Ok((Net::Netns(net), addrs))
        }
        Backend::Proxy | Backend::Auto => {
            let lo: std::net::IpAddr = [127, 0, 0, 1].into();
            let mut peers = BTreeMap::new();
            let mut clients = BTreeMap::new();
            for &i in ids {
                peers.insert(
                    i,
                    std::net::SocketAddr::new(lo, cluster::free_port(lo, &mut rng)?),
                );
                clients.insert(
                    i,
                    std::net::SocketAddr::new(lo, cluster::free_port(lo, &mut rng)?),
                );
            }
            let (p, links) = proxy::Proxy::start(&peers).await?;
            let addrs = ids
                .iter()
                .map(|&i| {
                    let routes = links
                        .iter()
                        .filter(|((from, _), _)| *from == i)
                        .map(|((_, to), a)| (*to, *a))
                        .collect();
                    (
                        i,
                        NodeAddrs {
                            peer: peers[&i],
                            client: clients[&i],
                            routes,
                            netns: None,
                        },
                    )
                })
                .collect();
            Ok((Net::Proxy(p), addrs))
        }
    }
}

/// Samples every node's status; records leader changes and checks that commit and applied
/// indexes never go backwards within one process lifetime.
async fn monitor(
    cluster: Arc<Mutex<Cluster>>,
    rec: Recorder,
    stop: Arc<AtomicBool>,
    regressions: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    let mut last: BTreeMap<u64, (u64, u64, u64, u64, u64)> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let (channels, before) = {
            let mut c = cluster.lock().await;
            let inc: BTreeMap<u64, u64> =
                c.nodes.iter().map(|(&i, n)| (i, n.incarnation)).collect();
            (c.channels(), inc)
        };
        let answers = futures::future::join_all(channels.iter().map(|(&id, ch)| async move {
            (
                id,
                cluster::node_status(ch, Duration::from_millis(300)).await,
            )
        }))
        .await;
        let after: BTreeMap<u64, u64> = {
            let c = cluster.lock().await;
            c.nodes.iter().map(|(&i, n)| (i, n.incarnation)).collect()
        };
        for (id, s) in answers {
            let Some(s) = s else { continue };
            if before[&id] != after[&id] {
                continue; // restarted while asked: the answer's incarnation is unclear
            }
            let inc = after[&id];
            let prev = last.get(&id).copied();
            if let Some((pinc, term, leader, commit, applied)) = prev {
                if pinc == inc && (s.commit_index < commit || s.applied_index < applied) {
                    regressions.lock().expect("lock").push(json!({
                        "node": id, "incarnation": inc,
                        "commit": [commit, s.commit_index], "applied": [applied, s.applied_index]}));
                }
                if term == s.term && leader == s.leader_id && pinc == inc {
                    last.insert(
                        id,
                        (inc, s.term, s.leader_id, s.commit_index, s.applied_index),
                    );
                    continue;
                }
            }
            last.insert(
                id,
                (inc, s.term, s.leader_id, s.commit_index, s.applied_index),
            );
            rec.record(
                Process::Monitor,
                OpType::Info,
                "leader",
                json!({"leader": if s.leader_id == 0 { None } else { Some(s.leader_id) },
                       "term": s.term, "role": s.role, "commit": s.commit_index,
                       "applied": s.applied_index}),
                Some(id),
                None,
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every node reports the same applied index twice in a row, then reads digests.
/// Polls every node's state digest until all agree (or `within` passes). Nodes that
/// fail-stopped on corrupt data are left out: they are down by design.
async fn converge(
    cluster: &Arc<Mutex<Cluster>>,
    within: Duration,
    errors: &mut BTreeMap<u64, String>,
) -> checker::convergence::Digests {
    let deadline = Instant::now() + within;
    let channels = cluster.lock().await.channels();
    let mut last = checker::convergence::Digests::new();
    loop {
        let stopped = cluster.lock().await.fail_stopped();
        let answers =
            futures::future::join_all(
                channels
                    .iter()
                    .filter(|(id, _)| !stopped.contains_key(id))
                    .map(|(&id, ch)| async move {
                        (id, cluster::digest(ch, Duration::from_secs(2)).await)
                    }),
            )
            .await;
        for (id, a) in &answers {
            if let Err(e) = a {
                errors.insert(*id, e.clone());
            }
        }
        let now: checker::convergence::Digests = answers
            .into_iter()
            .map(|(id, a)| (id, a.ok().map(|d| (d.applied_index, d.digest))))
            .collect();
        let indexes: std::collections::BTreeSet<u64> =
            now.values().flatten().map(|d| d.0).collect();
        let all = now.values().all(Option::is_some);
        if (all && indexes.len() == 1 && now == last) || Instant::now() >= deadline {
            return now;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Liveness after the heal: every node served an ok op in the last part of the post-heal
/// window (jepsen-notes §1, Restate's rule).
fn check_after_heal(ops: &[Op], since_ns: u64, nodes: &[u64]) -> CheckResult {
    let mut r = CheckResult::new("liveness-after-heal");
    let mut served: BTreeMap<u64, u64> = BTreeMap::new();
    for o in ops {
        if matches!(o.process, Process::Client(_)) && o.kind == OpType::Ok && o.time_ns >= since_ns
        {
            if let Some(n) = o.node {
                *served.entry(n).or_default() += 1;
            }
        }
    }
    for &n in nodes {
        let c = served.get(&n).copied().unwrap_or(0);
        r.count(&format!("node{n}_ok"), c);
        if c == 0 {
            r.invalid(
                json!({"node": n, "problem": "served no successful operation after the heal"}),
            );
        }
    }
    r.summary = format!("ok ops per node after the heal: {served:?}");
    r
}

/// Runs one test and returns its results (also written under the run's directory).
pub async fn run(cfg: RunConfig) -> anyhow::Result<Results> {
    let started = Instant::now();
    let dir = cfg.store.join(&cfg.name).join(utc_stamp());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&cfg)?)?;
    let ids: Vec<u64> = (1..=cfg.nodes).collect();
    let (net, addrs) = network(&cfg, &ids).await?;
    let backend = net.name().to_string();
    progress!(
        "{}: {} nodes, backend {backend}, seed {}, dir {}",
        cfg.name,
        cfg.nodes,
        cfg.seed,
        dir.display()
    );
    let rec = Recorder::new(Some(&dir.join("history.jsonl")))?;
    let faketime = cfg.faults.contains(&Fault::Faketime);
    let cluster = Cluster::start(&cfg.keel_bin, &dir, "keel-jepsen", addrs, net, faketime)?;
    let cluster = Arc::new(Mutex::new(cluster));
    let channels = cluster.lock().await.channels();

    // Setup: a leader, then the workloads' fixtures.
    let setup_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if cluster::find_leader(&channels).await.is_some() {
            break;
        }
        for id in ids.clone() {
            if let Some(status) = cluster.lock().await.exited(id) {
                let log = std::fs::read_to_string(dir.join(format!("n{id}/node.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                anyhow::bail!(
                    "node {id} exited during setup ({status}); its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        anyhow::ensure!(
            Instant::now() < setup_deadline,
            "no leader within 30 s of starting the cluster"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tag = format!("{}-{}", cfg.seed, utc_stamp());
    let wf_opts = workflow::Options {
        task_queue: format!("jepsen-{tag}"),
        id_prefix: format!("jepsen-{tag}"),
        collectors: 3,
        accounts: 5,
    };
    if cfg.workloads.contains(&Workload::Workflow) {
        workflow::setup(&wf_opts, &channels).await?;
    }

    // The workload under the nemesis.
    let stop_clients = Arc::new(AtomicBool::new(false));
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let (stop_nemesis, stop_rx) = tokio::sync::watch::channel(false);
    let regressions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mon = tokio::spawn(monitor(
        cluster.clone(),
        rec.clone(),
        stop_monitor.clone(),
        regressions.clone(),
    ));
    let mut tasks = Vec::new();
    let mut workers = Vec::new();
    let stop_workers = Arc::new(AtomicBool::new(false));
    let next_value = Arc::new(AtomicU64::new(1));
    let per_workload = cfg.concurrency.max(1);
    let n_workloads = cfg.workloads.len() as u64;
    let concurrency = per_workload * n_workloads;
    for (w_i, w) in cfg.workloads.iter().enumerate() {
        let rate = cfg.rate / n_workloads as f64;
        for t in 0..per_workload {
            let index = w_i as u64 * per_workload + t;
            let thread = Thread::new(index, concurrency);
            let (ch, rec, stop) = (channels.clone(), rec.clone(), stop_clients.clone());
            match w {
                Workload::Register => tasks.push(tokio::spawn(register::client(
                    thread,
                    register::Options {
                        keys: 8,
                        stale_fraction: 0.2,
                        key_prefix: format!("jepsen/{tag}"),
                    },
                    ch,
                    rec,
                    cfg.seed,
                    rate,
                    next_value.clone(),
                    stop,
                ))),
                Workload::Workflow => tasks.push(tokio::spawn(workflow::client(
                    thread,
                    wf_opts.clone(),
                    ch,
                    rec,
                    cfg.seed,
                    rate,
                    stop,
                ))),
            }
        }
        if *w == Workload::Workflow {
            let next_process = Arc::new(AtomicU64::new(0));
            for i in 0..2 {
                workers.push(tokio::spawn(workflow::worker(
                    i,
                    wf_opts.clone(),
                    channels.clone(),
                    rec.clone(),
                    cfg.seed,
                    stop_workers.clone(),
                )));
                workers.push(tokio::spawn(activity::worker(
                    i,
                    wf_opts.clone(),
                    channels.clone(),
                    rec.clone(),
                    cfg.seed,
                    stop_workers.clone(),
                    next_process.clone(),
                )));
            }
        }
    }
    for (&node, ch) in &channels {
        tasks.push(tokio::spawn(register::probe(
            node,
            ch.clone(),
            format!("jepsen/{tag}"),
            rec.clone(),
            next_value.clone(),
            stop_clients.clone(),
        )));
    }
    let nemesis = Nemesis {
        cluster: cluster.clone(),
        rec: rec.clone(),
        faults: cfg.faults.clone(),
        rng: StdRng::seed_from_u64(cfg.seed),
        installed: 0,
        removed: Default::default(),
        disk_faults: 0,
    };
    let nem = tokio::spawn(nemesis.run(Duration::from_secs(cfg.interval_s), stop_rx));
    let limit = Duration::from_secs(cfg.time_limit_s);
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        tokio::time::sleep(Duration::from_secs(5).min(limit.saturating_sub(t0.elapsed()))).await;
        let h = rec.snapshot();
        let oks = h.iter().filter(|o| o.kind == OpType::Ok).count();
        let faults = h.iter().filter(|o| o.process == Process::Nemesis).count();
        progress!(
            "{}: {:>3.0}s ops ok {oks}, nemesis events {faults}",
            cfg.name,
            t0.elapsed().as_secs_f64()
        );
    }
    // Heal, then keep the clients going for a while: the healed cluster must serve again.
    let _ = stop_nemesis.send(true);
    nem.await.context("nemesis task")?;
    let healed_at = rec.now_ns();
    let settle = Duration::from_secs(cfg.recovery_s.clamp(4, 10));
    progress!(
        "{}: healed; clients run {}s more",
        cfg.name,
        settle.as_secs()
    );
    tokio::time::sleep(settle).await;
    let window_start = healed_at + (settle.as_nanos() as u64) / 2;
    // Clients stop now; workers keep completing tasks through the final reads, so every
    // acknowledged workflow can finish within the recovery window.
    stop_clients.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }

    // Final reads and convergence.
    let recovery = Duration::from_secs(cfg.recovery_s);
    let mut results: Vec<CheckResult> = Vec::new();
    let wf_final = if cfg.workloads.contains(&Workload::Workflow) {
        progress!("{}: final workflow reads", cfg.name);
        Some(workflow::final_reads(&wf_opts, &channels, &rec, recovery).await)
    } else {
        None
    };
    stop_workers.store(true, Ordering::Relaxed);
    for t in workers {
        let _ = t.await;
    }
    progress!("{}: waiting for convergence", cfg.name);
    let mut digest_errors = BTreeMap::new();
    let digests = converge(&cluster, recovery, &mut digest_errors).await;
    // Nodes that stopped themselves on corrupt data: recorded, and left out of the liveness
    // check (the disk-faults checker judges the stop).
    let fail_stopped = cluster.lock().await.fail_stopped();
    for (node, line) in &fail_stopped {
        rec.record(
            Process::Monitor,
            OpType::Info,
            "fail-stop",
            json!({"node": node, "message": line}),
            Some(*node),
            None,
        );
    }
    stop_monitor.store(true, Ordering::Relaxed);
    let _ = mon.await;
    let ops = rec.finish()?;

    // Checks.
    progress!("{}: checking {} events", cfg.name, ops.len());
    if cfg.workloads.contains(&Workload::Register) {
        results.push(register::check_linearizable(&ops, Duration::from_secs(60)));
        results.push(register::check_stale_reads(&ops));
    }
    if let Some(fin) = &wf_final {
        results.extend(workflow::check(&ops, fin));
    }
    let regressions = regressions.lock().expect("lock").clone();
    let mut conv = checker::convergence::check(&digests, &regressions);
    for (node, e) in digest_errors {
        if digests.get(&node).is_some_and(Option::is_none) {
            conv.example(json!({"node": node, "last_digest_error": e}));
        }
    }
    results.push(conv);
    let live: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| !fail_stopped.contains_key(id))
        .collect();
    results.push(check_after_heal(&ops, window_start, &live));
    if cfg.faults.contains(&Fault::Corrupt) {
        results.push(checker::disk_faults::check(&ops));
    }
    let coverage = checker::coverage::check(&ops);
    let coverage_json = json!(coverage.counts);
    results.push(coverage);
    let samples = checker::coverage::failover_samples(&ops);
    let failover = json!({
        "p50": checker::coverage::quantile(&samples, 0.5),
        "p99": checker::coverage::quantile(&samples, 0.99),
        "max": checker::coverage::quantile(&samples, 1.0),
        "samples": samples.len(),
        "samples_ms": samples,
    });
    let verdict = results
        .iter()
        .fold(Verdict::Valid, |v, r| v.merge(r.verdict));
    let res = Results {
        test: cfg.name.clone(),
        seed: cfg.seed,
        git_rev: git_rev(),
        backend,
        nodes: cfg.nodes,
        duration_s: started.elapsed().as_secs_f64(),
        verdict,
        checkers: results,
        coverage: coverage_json,
        failover_ms: failover,
        dir: dir.clone(),
    };
    write_outputs(&dir, &ops, &res)?;
    // Stop the processes before returning (logs stay).
    drop(cluster);
    if res.verdict == Verdict::Valid {
        remove_data_dirs(&dir, &ids);
    }
    Ok(res)
}

/// After a valid run the nodes' data dirs (about 75 MB a node, mostly RocksDB's preallocated
/// files) go; config, history, results, report and node logs stay. A run that is not valid
/// keeps everything for the post-mortem. (A ten-seed `suite full` would otherwise leave
/// some 50 GB behind.)
fn remove_data_dirs(dir: &Path, ids: &[u64]) {
    for id in ids {
        let node = dir.join(format!("n{id}"));
        let Ok(entries) = std::fs::read_dir(&node) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "data" || name.starts_with("data.") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Writes results.json and report.html, and points `latest` at the run.
pub fn write_outputs(dir: &Path, ops: &[Op], res: &Results) -> anyhow::Result<()> {
    let value = serde_json::to_value(res)?;
    std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(&value)?)?;
    std::fs::write(dir.join("report.html"), crate::report::render(ops, &value))?;
    if let Some(parent) = dir.parent() {
        let latest = parent.join("latest");
        let _ = std::fs::remove_file(&latest);
        if let Some(name) = dir.file_name() {
            let _ = std::os::unix::fs::symlink(name, &latest);
        }
    }
    Ok(())
}

/// Prints one line per checker and the closing `N passed, N failed` line.
pub fn print_summary(res: &Results) {
    for c in &res.checkers {
        println!(
            "{:<24} {:<8} {}",
            c.name,
            format!("{:?}", c.verdict).to_lowercase(),
            c.summary
        );
        for e in c.counterexamples.iter().take(3) {
            println!("    e.g. {e}");
        }
    }
    println!(
        "failover ms: p50 {} p99 {} ({} samples)",
        res.failover_ms["p50"], res.failover_ms["p99"], res.failover_ms["samples"]
    );
    println!(
        "verdict: {}  ({})",
        format!("{:?}", res.verdict).to_lowercase(),
        res.dir.join("report.html").display()
    );
    let passed = res
        .checkers
        .iter()
        .filter(|c| c.verdict == Verdict::Valid)
        .count();
    println!("{passed} passed, {} failed", res.checkers.len() - passed);
}
