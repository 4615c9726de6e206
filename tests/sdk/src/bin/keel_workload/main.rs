//! `keel-workload`: the W1/W2 workloads of `../shared/bench/restate-1.7.12.md` against real
//! `keel` server processes (1 node and a 3-node cluster on this machine), with the official
//! Temporal Rust SDK as worker and client in this process — server, worker and load generator
//! share the machine's cores, as in the peer measurement.
//!
//! - **W1**: a workflow running 10 activities one after another; closed loop with C clients
//!   (C = 1, 16, 64), warm-up then a measured window; workflows/s and start→result latency.
//! - **W1L**: W1 with 10 **local** activities (Temporal's analogue of an inline durable step,
//!   the shape of the peer's `ctx.run` steps): the worker runs them inside the workflow task
//!   and records each as a marker, so a workflow costs one or two workflow tasks.
//! - **W2**: N workflows that each sleep durably 1 s, started as fast as possible; time until
//!   all completed and timer lateness. By default measured as the peer's driver does: the
//!   workflow code records the wall clock right before and right after its sleep in this
//!   process, the driver polls that record (no result is read back through the server), and
//!   lateness is after − before − 1 s, all done the last "after" minus the first start.
//!   `--w2-results sdk` awaits every result through the server instead (lateness in workflow
//!   time, all done at the last close), as this driver did before 2026-12-05.
//!
//! Each server process runs `cores / nodes` runtime worker threads (at least one: one each
//! for the 3-node cluster on 2 cores), as the shipped local cluster configs do.
//!
//! Server RSS is the peak of the summed VmRSS of the server processes, sampled every 200 ms
//! during each workload. CPU per workflow is the CPU time (user + system) the server
//! processes, and this process (SDK worker + load generator), used during a workload divided
//! by the workflows completed in it: it shows which side a 2-core machine runs out of first.
//! Results: one JSON object per measurement in `--json`, a Markdown table on stdout.
//!
//! The SDK compresses requests with gzip by default; `--grpc-compression none` turns that off
//! for this process's connections (the peer's load generator does not compress either). The
//! server compresses only responses of 4 KiB and more, whatever the setting.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use keel_sdk_tests::client_with;
use keel_server::local_cluster::wait_for;
use serde::Serialize;
use temporalio_client::grpc::WorkflowService;
use temporalio_client::tonic::IntoRequest;
use temporalio_client::{
    Client, GrpcCompression, WorkflowGetResultOptions, WorkflowListOptions, WorkflowStartOptions,
};
use temporalio_common::protos::temporal::api::history::v1::history_event;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::runtime::PollerBehavior;
mod w3;

use temporalio_sdk::{
    ActivityOptions, LocalActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext,
    WorkflowResult,
};

const QUEUE: &str = "bench";

#[derive(Parser, Debug)]
#[command(about = "W1/W2 workloads against keel server processes (see the module docs)")]
struct Args {
    /// Topologies to measure (node counts).
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    nodes: Vec<usize>,
    /// W1 concurrencies.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Closed-loop workloads to run at each concurrency: `w1` (activities), `w1l` (local
    /// activities); `''` for none.
    #[arg(long, value_delimiter = ',', default_value = "w1,w1l")]
    workloads: Vec<String>,
    /// Repetitions of every measurement (the table shows the median and [min..max]).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    #[arg(long, default_value_t = 20)]
    window_secs: u64,
    /// W2 workflow count (0 skips W2).
    #[arg(long, default_value_t = 10_000)]
    w2_workflows: usize,
    /// Starts in flight at once during W2.
    #[arg(long, default_value_t = 64)]
    w2_start_concurrency: usize,
    /// How W2 learns of completions: `stats` — the workflow code records the wall clock
    /// before and after its sleep in this process and the driver polls that record, as the
    /// peer's driver polls its service's stats endpoint; `sdk` — every result is awaited
    /// through the server with the SDK's long poll (10,000 history reads on top of the load),
    /// lateness then in workflow time.
    #[arg(long, value_enum, default_value_t = W2Results::Stats)]
    w2_results: W2Results,
    /// The `keel` server binary (default: `keel` next to this executable).
    #[arg(long)]
    keel_bin: Option<PathBuf>,
    /// Print the event timeline of one W1 workflow per topology, and where the latest W2
    /// sleepers lost their time (where the time goes).
    #[arg(long)]
    trace_one: bool,
    /// Most concurrent workflow-task polls (and, separately, activity-task polls) of the worker.
    #[arg(long, default_value_t = 16)]
    pollers: usize,
    /// gRPC compression of the SDK's connections: `gzip` (the SDK's default) or `none`.
    #[arg(long, default_value = "gzip")]
    grpc_compression: String,
    /// TOML appended to every node's config (before its members), e.g.
    /// `[admission]\nmax-resumed-task-wait-ms = 0` to A/B a setting within one build.
    #[arg(long, default_value = "")]
    server_config: String,
    /// Where the JSON lines go.
    #[arg(long, default_value = "keel-workload.json")]
    json: PathBuf,
    #[command(flatten)]
    w3: w3::W3Args,
}

// ------------------------------------------------------------------ workflows

#[workflow]
#[derive(Default)]
pub struct BenchTen;

#[workflow_methods]
impl BenchTen {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, start: u32) -> WorkflowResult<u32> {
        let mut v = start;
        for _ in 0..10 {
            v = ctx
                .execute_activity(
                    BenchSteps::step,
                    v,
                    ActivityOptions::start_to_close_timeout(Duration::from_secs(30)),
                )
                .await?;
        }
        Ok(v)
    }
}

#[workflow]
#[derive(Default)]
pub struct BenchTenLocal;

#[workflow_methods]
impl BenchTenLocal {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, start: u32) -> WorkflowResult<u32> {
        let mut v = start;
        for _ in 0..10 {
            v = ctx
                .execute_local_activity(
                    BenchSteps::step,
                    v,
                    LocalActivityOptions::builder()
                        .start_to_close_timeout(Duration::from_secs(30))
                        .build(),
                )
                .await?;
        }
        Ok(v)
    }
}

#[workflow]
#[derive(Default)]
pub struct BenchSleep;

#[workflow_methods]
impl BenchSleep {
    /// Sleeps 1 s; returns the lateness in ms (workflow time after − before − 1 s). Sleeper
    /// `i` also records the wall clock right before and right after its sleep in
    /// [`SLEEPS`] (first record wins, so a replay changes nothing), as the peer's service does.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, i: u64) -> WorkflowResult<i64> {
        SLEEPS.before(i);
        let before = ctx.workflow_time();
        ctx.timer(Duration::from_secs(1)).await;
        SLEEPS.after(i);
        let after = ctx.workflow_time();
        Ok(unix_ms(after) - unix_ms(before) - 1_000)
    }
}

/// What the W2 sleepers of the current run saw, by index: wall-clock µs before and after
/// the sleep. This process's stand-in for the peer's stats
/// endpoint: completions are learnt without reading anything back from the server.
static SLEEPS: SleepLog = SleepLog(std::sync::Mutex::new(None));

struct SleepLog(std::sync::Mutex<Option<SleepRecords>>);

#[derive(Default)]
struct SleepRecords {
    before_us: std::collections::HashMap<u64, u64>,
    after_us: std::collections::HashMap<u64, u64>,
}

/// Microseconds since the Unix epoch.
fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

impl SleepLog {
    fn reset(&self) {
        *self.0.lock().expect("sleep log") = Some(SleepRecords::default());
    }

    fn before(&self, i: u64) {
        if let Some(r) = self.0.lock().expect("sleep log").as_mut() {
            r.before_us
                .entry(i)
                .or_insert_with(|| unix_us(SystemTime::now()));
        }
    }

    fn after(&self, i: u64) {
        let now = unix_us(SystemTime::now());
        if let Some(r) = self.0.lock().expect("sleep log").as_mut() {
            if r.before_us.contains_key(&i) {
                r.after_us.entry(i).or_insert(now);
            }
        }
    }

    fn done(&self) -> usize {
        self.0
            .lock()
            .expect("sleep log")
            .as_ref()
            .map_or(0, |r| r.after_us.len())
    }

    /// (lateness ms = after − before − 1 s, index) of every completed sleeper, and the latest
    /// completion, µs.
    fn completions(&self) -> (Vec<(f64, u64)>, u64) {
        let guard = self.0.lock().expect("sleep log");
        let Some(r) = guard.as_ref() else {
            return (Vec::new(), 0);
        };
        let latest = r.after_us.values().copied().max().unwrap_or(0);
        let lateness = r
            .after_us
            .iter()
            .filter_map(|(i, &after)| {
                let before = *r.before_us.get(i)?; // present: `after` requires it
                Some(((after as f64 - before as f64) / 1e3 - 1_000.0, *i))
            })
            .collect();
        (lateness, latest)
    }
}

pub struct BenchSteps;

#[activities]
impl BenchSteps {
    #[activity]
    pub async fn step(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        Ok(n + 1)
    }
}

// ------------------------------------------------------------------ servers

/// Server processes of one topology; killed (and their data removed) on drop.
struct Servers {
    children: Vec<Child>,
    client_addrs: Vec<String>,
    metrics_addrs: Vec<String>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// CPU time of processes killed by [`Servers::kill`], ms (counted in [`Servers::cpu_ms`]).
    retired_cpu_ms: f64,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A loopback address on a port no other process is handed before our server binds it.
fn free_addr() -> String {
    format!(
        "127.0.0.1:{}",
        keel_server::local_cluster::free_port_below_ephemeral()
    )
}

fn keel_bin(arg: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = arg {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let bin = exe.parent().context("executable dir")?.join("keel");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it (cargo build --release --bin keel) or pass --keel-bin",
        bin.display()
    );
    Ok(bin)
}

impl Servers {
    fn spawn(n: usize, bin: &Path, extra_config: &str) -> anyhow::Result<Servers> {
        let dir = tempfile::tempdir()?;
        let mut peers = Vec::new();
        let mut metrics_addrs = Vec::new();
        for _ in 0..n {
            peers.push((free_addr(), free_addr()));
            metrics_addrs.push(free_addr());
        }
        let members: String = peers
            .iter()
            .enumerate()
            .map(|(i, (peer, client))| {
                format!(
                    "\n[[members]]\nnode-id = {}\npeer-addr = \"{peer}\"\nclient-addr = \"{client}\"\n",
                    i + 1
                )
            })
            .collect();
        // Each node gets its share of the machine's cores as runtime workers (at least one),
        // as the local cluster configs do: more runnable threads than cores only adds
        // context switches.
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let workers = (cores / n).max(1);
        for (i, ((peer, client), metrics)) in peers.iter().zip(&metrics_addrs).enumerate() {
            let id = i + 1;
            let config = format!(
                "cluster-id = \"keel-bench\"\nnode-id = {id}\ndata-dir = \"{}\"\n\n\
                 [network]\npeer-addr = \"{peer}\"\nclient-addr = \"{client}\"\n\
                 metrics-addr = \"{metrics}\"\n\n\
                 [raft]\nheartbeat-interval-ms = 100\nelection-timeout-min-ms = 600\n\
                 election-timeout-max-ms = 1200\nsnapshot-every-entries = 20000\n\
                 keep-entries-after-snapshot = 5000\n\n[runtime]\nworker-threads = {workers}\n\
                 {extra_config}{members}",
                dir.path().join(format!("node{id}")).display()
            );
            std::fs::write(dir.path().join(format!("node{id}.toml")), config)?;
        }
        let mut servers = Servers {
            children: Vec::new(),
            client_addrs: peers.into_iter().map(|(_, c)| c).collect(),
            metrics_addrs,
            bin: bin.to_path_buf(),
            dir,
            retired_cpu_ms: 0.0,
        };
        for i in 0..n {
            let child = servers.launch(i)?;
            servers.children.push(child);
        }
        Ok(servers)
    }

    /// Starts node `i + 1`'s process on its config and data dir (its log appended to).
    fn launch(&self, i: usize) -> anyhow::Result<Child> {
        let id = i + 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{id}.log")))?;
        Command::new(&self.bin)
            .arg("server")
            .arg("--config")
            .arg(self.dir.path().join(format!("node{id}.toml")))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))
    }

    /// Kills node `i + 1` (SIGKILL: a crash, nothing flushed on the way out).
    fn kill(&mut self, i: usize) {
        self.retired_cpu_ms += cpu_ms(self.children[i].id()).unwrap_or(0.0);
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
    }

    /// Starts node `i + 1` again after [`Servers::kill`].
    fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.children[i] = self.launch(i)?;
        Ok(())
    }

    /// Node `i + 1`'s data dir.
    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{}", i + 1))
    }

    /// Summed CPU time (user + system) the server processes have used so far, ms.
    fn cpu_ms(&self) -> f64 {
        self.retired_cpu_ms
            + self
                .children
                .iter()
                .filter_map(|c| cpu_ms(c.id()))
                .sum::<f64>()
    }

    /// Summed resident set of the server processes, MiB.
    fn rss_mib(&self) -> f64 {
        self.children
            .iter()
            .filter_map(|c| rss_kib(c.id()))
            .sum::<u64>() as f64
            / 1024.0
    }
}

/// CPU time (utime + stime) a process has used so far, ms; `/proc` counts in USER_HZ
/// ticks, 100 per second on Linux.
fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 * 10.0)
}

/// Sums of the nodes' proposal histograms (`keel_raft_proposal_*`): seconds, proposals,
/// commands. Only the leader proposes (followers forward), so this is the leader's.
fn proposals(servers: &Servers) -> (f64, f64, f64) {
    let mut totals = (0.0, 0.0, 0.0);
    for addr in &servers.metrics_addrs {
        let Ok(text) = scrape(addr) else { continue };
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(name), Some(v)) = (f.next(), f.next().and_then(|v| v.parse::<f64>().ok()))
            else {
                continue;
            };
            match name {
                "keel_raft_proposal_seconds_sum" => totals.0 += v,
                "keel_raft_proposal_seconds_count" => totals.1 += v,
                "keel_raft_proposal_batch_commands_sum" => totals.2 += v,
                _ => {}
            }
        }
    }
    totals
}

/// The body of `GET /metrics` from a node's metrics endpoint.
fn scrape(addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// What one measurement cost: CPU per workflow (servers, this process), and the leader's
/// mean proposal latency (propose → applied: the commit each step waits for) and batching.
#[derive(Debug, Clone, Copy)]
struct Costs {
    server_cpu_ms_per_wf: f64,
    sdk_cpu_ms_per_wf: f64,
    mean_commit_ms: f64,
    commands_per_entry: f64,
}

/// CPU time used and proposals made between `start` and `per_workflow`.
struct CostMeter {
    server_ms: f64,
    own_ms: f64,
    proposals: (f64, f64, f64),
}

impl CostMeter {
    fn start(servers: &Servers) -> CostMeter {
        CostMeter {
            server_ms: servers.cpu_ms(),
            own_ms: cpu_ms(std::process::id()).unwrap_or(0.0),
            proposals: proposals(servers),
        }
    }

    fn per_workflow(self, servers: &Servers, workflows: usize) -> Costs {
        let n = workflows.max(1) as f64;
        let (secs, count, commands) = proposals(servers);
        let count = (count - self.proposals.1).max(1.0);
        Costs {
            server_cpu_ms_per_wf: (servers.cpu_ms() - self.server_ms) / n,
            sdk_cpu_ms_per_wf: (cpu_ms(std::process::id()).unwrap_or(0.0) - self.own_ms) / n,
            mean_commit_ms: (secs - self.proposals.0) * 1e3 / count,
            commands_per_entry: (commands - self.proposals.2) / count,
        }
    }
}

/// VmRSS of a process, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Clients of every node, once each node serves the `default` namespace.
async fn connect_all(
    servers: &Servers,
    compression: GrpcCompression,
) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::new();
    for addr in &servers.client_addrs {
        let sock: std::net::SocketAddr = addr.parse()?;
        let reason = format!("the node at {addr} serves the default namespace");
        let client = wait_for(Duration::from_secs(60), &reason, || async {
            let client = client_with(sock, compression).await.ok()?;
            let mut raw = client.clone();
            WorkflowService::describe_namespace(
                &mut raw,
                DescribeNamespaceRequest {
                    namespace: "default".into(),
                    ..Default::default()
                }
                .into_request(),
            )
            .await
            .ok()?;
            Some(client)
        })
        .await?;
        clients.push(client);
    }
    Ok(clients)
}

/// Samples the servers' RSS every 200 ms until stopped: the peak of their sum, and each
/// process's own peak.
struct RssSampler {
    /// Peak KiB per process, then the peak of the sum.
    peaks: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    fn start(servers: &Servers) -> RssSampler {
        let pids: Vec<u32> = servers.children.iter().map(|c| c.id()).collect();
        let peaks: Arc<Vec<AtomicU64>> =
            Arc::new((0..=pids.len()).map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peaks.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mut sum = 0;
                for (i, pid) in pids.iter().enumerate() {
                    let kib = rss_kib(*pid).unwrap_or(0);
                    p[i].fetch_max(kib, Ordering::Relaxed);
                    sum += kib;
                }
                p[pids.len()].fetch_max(sum, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        RssSampler { peaks, stop }
    }

    /// Stops; the peaks in MiB, per process then of the sum.
    fn stop(self) -> Vec<f64> {
        self.stop.store(true, Ordering::Relaxed);
        self.peaks
            .iter()
            .map(|k| k.load(Ordering::Relaxed) as f64 / 1024.0)
            .collect()
    }

    /// Stops; the peak of the summed RSS, MiB.
    fn finish(self) -> f64 {
        self.stop().last().copied().unwrap_or(0.0)
    }

    /// Stops; each process's peak RSS, MiB.
    fn finish_per_node(self) -> Vec<f64> {
        let mut peaks = self.stop();
        peaks.pop();
        peaks
    }
}

/// Milliseconds since the Unix epoch of a workflow time (0 if absent).
fn unix_ms(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

// ------------------------------------------------------------------ workloads

#[derive(Serialize, Clone, Debug)]
struct W1Result {
    /// `W1` or `W1L`.
    workload: &'static str,
    nodes: usize,
    concurrency: usize,
    run: usize,
    completed: usize,
    workflows_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_rss_mib: f64,
    server_cpu_ms_per_wf: f64,
    sdk_cpu_ms_per_wf: f64,
    mean_commit_ms: f64,
    commands_per_entry: f64,
}

#[derive(Serialize, Clone, Debug)]
struct W2Result {
    workload: &'static str,
    nodes: usize,
    run: usize,
    workflows: usize,
    all_done_secs: f64,
    lateness_p50_ms: f64,
    lateness_p99_ms: f64,
    server_rss_mib: f64,
    server_cpu_ms_per_wf: f64,
    sdk_cpu_ms_per_wf: f64,
    mean_commit_ms: f64,
    commands_per_entry: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

async fn w1(
    clients: &[Client],
    servers: &Servers,
    local: bool,
    concurrency: usize,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<(usize, f64, f64, f64, f64, Costs)> {
    let sampler = RssSampler::start(servers);
    let cpu = CostMeter::start(servers);
    let finished = AtomicU64::new(0);
    let t0 = Instant::now();
    let measure_from = t0 + warmup;
    let end = measure_from + window;
    let loops = (0..concurrency).map(|i| {
        let client = clients[i % clients.len()].clone();
        let finished = &finished;
        async move {
            let mut samples = Vec::new();
            while Instant::now() < end {
                let id = format!("w1-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
                let began = Instant::now();
                let options = WorkflowStartOptions::new(QUEUE, &id).build();
                let v = if local {
                    client
                        .start_workflow(BenchTenLocal::run, 0, options)
                        .await?
                        .get_result(WorkflowGetResultOptions::default())
                        .await?
                } else {
                    client
                        .start_workflow(BenchTen::run, 0, options)
                        .await?
                        .get_result(WorkflowGetResultOptions::default())
                        .await?
                };
                anyhow::ensure!(v == 10, "workflow {id} returned {v}");
                let done = Instant::now();
                finished.fetch_add(1, Ordering::Relaxed);
                if began >= measure_from && done <= end {
                    samples.push((done - began).as_secs_f64() * 1e3);
                }
            }
            anyhow::Ok(samples)
        }
    });
    let per_loop = futures::future::try_join_all(loops).await?;
    let rss = sampler.finish();
    let cpu = cpu.per_workflow(servers, finished.load(Ordering::Relaxed) as usize);
    let mut lat: Vec<f64> = per_loop.into_iter().flatten().collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let n = lat.len();
    Ok((
        n,
        n as f64 / window.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        rss,
        cpu,
    ))
}

/// How W2 learns that its sleepers completed (`--w2-results`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum W2Results {
    /// From [`SLEEPS`], recorded by the workflow code in this process (the peer's method).
    Stats,
    /// Each result awaited through the server with the SDK's long poll.
    Sdk,
}

/// Longest W2 may take to complete before the driver gives up.
const W2_TIMEOUT: Duration = Duration::from_secs(300);

#[allow(clippy::too_many_arguments)]
async fn w2(
    clients: &[Client],
    servers: &Servers,
    count: usize,
    start_concurrency: usize,
    run: usize,
    results_by: W2Results,
    explain: bool,
) -> anyhow::Result<(f64, f64, f64, f64, Costs)> {
    let sampler = RssSampler::start(servers);
    let cpu = CostMeter::start(servers);
    let prefix = format!("w2-r{run}-");
    SLEEPS.reset();
    let started_at = SystemTime::now();
    let t0_us = unix_us(started_at);
    futures::stream::iter(0..count)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            let id = format!("{prefix}{i}");
            async move {
                client
                    .start_workflow(
                        BenchSleep::run,
                        i as u64,
                        WorkflowStartOptions::new(QUEUE, &id).build(),
                    )
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(start_concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let mut results: Vec<(f64, String)>;
    // All done, s, where the method tells it (else from the close times below).
    let mut all_done = None;
    match results_by {
        W2Results::Stats => {
            // Poll this process's record, as the peer's driver polls its stats endpoint.
            wait_for(
                W2_TIMEOUT,
                "every W2 sleeper resumed after its sleep",
                || async { (SLEEPS.done() >= count).then_some(()) },
            )
            .await?;
            let (lateness, latest_us) = SLEEPS.completions();
            all_done = Some(latest_us.saturating_sub(t0_us) as f64 / 1e6);
            results = lateness
                .into_iter()
                .map(|(ms, i)| (ms, format!("{prefix}{i}")))
                .collect();
        }
        W2Results::Sdk => {
            // Every result, awaited with the SDK's long poll on the run's close.
            results = futures::stream::iter(0..count)
                .map(|i| {
                    let client = clients[i % clients.len()].clone();
                    let id = format!("{prefix}{i}");
                    async move {
                        client
                            .get_workflow_handle::<BenchSleep>(&id)
                            .get_result(WorkflowGetResultOptions::default())
                            .await
                            .map(|ms| (ms as f64, id))
                    }
                })
                .buffer_unordered(start_concurrency)
                .try_collect()
                .await?;
        }
    }
    let rss = sampler.finish();
    let cpu = cpu.per_workflow(servers, count);
    // Every sleeper closed, completed (also after the stats method: its record is the
    // workflow code's word, the server's is this).
    let closes = wait_for(W2_TIMEOUT, "every W2 sleeper closed as completed", || {
        let client = clients[0].clone();
        let prefix = prefix.clone();
        async move {
            let rows: Vec<_> = client
                .list_workflows(
                    "WorkflowType = 'BenchSleep'",
                    WorkflowListOptions::default(),
                )
                .try_collect()
                .await
                .ok()?;
            let closes: Vec<SystemTime> = rows
                .iter()
                .filter(|r| r.id().starts_with(&prefix))
                .filter(|r| r.status() == temporalio_client::WorkflowExecutionStatus::Completed)
                .filter_map(|r| r.close_time())
                .collect();
            (closes.len() == count).then_some(closes)
        }
    })
    .await?;
    let all_done = match all_done {
        Some(s) => s,
        None => closes
            .iter()
            .max()
            .context("no closed sleepers")?
            .duration_since(started_at)
            .unwrap_or_default()
            .as_secs_f64(),
    };
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    if explain {
        explain_lateness(&clients[0], &results, (t0_us / 1_000) as i64).await?;
    }
    let lateness: Vec<f64> = results.into_iter().map(|(ms, _)| ms).collect();
    Ok((
        all_done,
        percentile(&lateness, 0.50),
        percentile(&lateness, 0.99),
        rss,
        cpu,
    ))
}

/// Splits the lateness of the latest 1% of W2 sleepers (and of every 100th, for contrast)
/// into its parts, from their histories: the first workflow task held by the worker until
/// its completion started the timer, the timer firing after its deadline, and the fired
/// timer's workflow task waiting to be handed out. It also says when (ms after the first
/// start, `t0`) their timers fired and their resumed tasks were handed out: a narrow span
/// of hand-outs after a wide span of firings is a stall, two similar spans a queue.
async fn explain_lateness(
    client: &Client,
    sorted: &[(f64, String)],
    t0: i64,
) -> anyhow::Result<()> {
    use temporalio_common::protos::temporal::api::enums::v1::EventType;
    let worst = sorted.len() / 100;
    let groups = [
        (
            "every 100th",
            sorted.iter().step_by(100).collect::<Vec<_>>(),
        ),
        (
            "latest 1%",
            sorted.iter().rev().take(worst.max(1)).collect(),
        ),
    ];
    for (name, group) in groups {
        let mut parts: [Vec<f64>; 3] = Default::default();
        let (mut fired_at, mut handed_at) = (Vec::new(), Vec::new());
        for (_, id) in &group {
            let history = keel_sdk_tests::history_of(client, id).await?;
            let at = |t: EventType, after: i64| {
                history.events.iter().find_map(|e| {
                    (e.event_type() == t && e.event_id > after).then(|| (e.event_id, event_ms(e)))
                })
            };
            let Some((first_task, task_started)) = at(EventType::WorkflowTaskStarted, 0) else {
                continue;
            };
            let Some((timer, timer_started)) = at(EventType::TimerStarted, first_task) else {
                continue;
            };
            let Some((fired, timer_fired)) = at(EventType::TimerFired, timer) else {
                continue;
            };
            let Some((_, resumed)) = at(EventType::WorkflowTaskStarted, fired) else {
                continue;
            };
            parts[0].push((timer_started - task_started) as f64);
            parts[1].push((timer_fired - timer_started - 1_000) as f64);
            parts[2].push((resumed - timer_fired) as f64);
            fired_at.push(timer_fired - t0);
            handed_at.push(resumed - t0);
        }
        let span = |v: &[i64]| {
            let (lo, hi) = (v.iter().min(), v.iter().max());
            lo.zip(hi)
                .map_or("-".to_string(), |(lo, hi)| format!("{lo}..{hi}"))
        };
        let p = |v: &mut Vec<f64>, q: f64| {
            v.sort_by(|a, b| a.total_cmp(b));
            percentile(v, q)
        };
        eprintln!(
            "   W2 {name} ({} runs), p50 / max ms: first task held {:.0} / {:.0}, timer fired late {:.0} / {:.0}, resumed task waited {:.0} / {:.0}; timers fired at {} ms, resumed tasks handed out at {} ms after the first start",
            parts[0].len(),
            p(&mut parts[0], 0.5),
            p(&mut parts[0], 1.0),
            p(&mut parts[1], 0.5),
            p(&mut parts[1], 1.0),
            p(&mut parts[2], 0.5),
            p(&mut parts[2], 1.0),
            span(&fired_at),
            span(&handed_at),
        );
    }
    Ok(())
}

/// An event's time, ms since the Unix epoch (0 if absent).
fn event_ms(e: &temporalio_common::protos::temporal::api::history::v1::HistoryEvent) -> i64 {
    e.event_time
        .as_ref()
        .map_or(0, |t| t.seconds * 1_000 + i64::from(t.nanos) / 1_000_000)
}

/// Runs one W1 workflow alone and prints its history with the gap before each event.
async fn trace_one(client: &Client) -> anyhow::Result<()> {
    let began = Instant::now();
    let handle = client
        .start_workflow(
            BenchTen::run,
            0,
            WorkflowStartOptions::new(QUEUE, "w1-trace").build(),
        )
        .await?;
    handle
        .get_result(WorkflowGetResultOptions::default())
        .await?;
    eprintln!("   trace: one W1 workflow took {:?}", began.elapsed());
    let history = keel_sdk_tests::history_of(client, "w1-trace").await?;
    let mut prev = None;
    for e in &history.events {
        let t = event_ms(e);
        // An activity started by the completing worker itself (eager execution) has the
        // engine's "eager-" request id.
        let how = match &e.attributes {
            Some(history_event::Attributes::ActivityTaskStartedEventAttributes(a)) => {
                format!(" ({})", a.request_id)
            }
            _ => String::new(),
        };
        eprintln!(
            "   {:>3} +{:>3} ms {:?}{how}",
            e.event_id,
            prev.map_or(0, |p| t - p),
            e.event_type()
        );
        prev = Some(t);
    }
    Ok(())
}

// ------------------------------------------------------------------ report

fn median_range(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn markdown(w1s: &[W1Result], w2s: &[W2Result], nodes: &[usize], cs: &[usize]) -> String {
    let mut out = String::from(
        "| workload | C | workflows/s | p50 ms | p99 ms | server RSS MiB (sum) | CPU ms/wf server + SDK | commit ms (cmds/entry) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (w, &n, &c) in ["W1", "W1L"].iter().flat_map(|w| {
        nodes
            .iter()
            .flat_map(move |n| cs.iter().map(move |c| (*w, n, c)))
    }) {
        let rows: Vec<&W1Result> = w1s
            .iter()
            .filter(|r| r.workload == w && r.nodes == n && r.concurrency == c)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let (tput, lo, hi) = median_range(rows.iter().map(|r| r.workflows_per_sec).collect());
        let (p50, _, _) = median_range(rows.iter().map(|r| r.p50_ms).collect());
        let (p99, _, _) = median_range(rows.iter().map(|r| r.p99_ms).collect());
        let (rss, _, _) = median_range(rows.iter().map(|r| r.server_rss_mib).collect());
        let (scpu, _, _) = median_range(rows.iter().map(|r| r.server_cpu_ms_per_wf).collect());
        let (wcpu, _, _) = median_range(rows.iter().map(|r| r.sdk_cpu_ms_per_wf).collect());
        let (commit, _, _) = median_range(rows.iter().map(|r| r.mean_commit_ms).collect());
        let (cpe, _, _) = median_range(rows.iter().map(|r| r.commands_per_entry).collect());
        out.push_str(&format!(
            "| {w} {n} node{} | {c} | {tput:.1} [{lo:.0}..{hi:.0}] | {p50:.1} | {p99:.1} | {rss:.0} | {scpu:.1} + {wcpu:.1} | {commit:.2} ({cpe:.1}) |\n",
            if n == 1 { "" } else { "s" }
        ));
    }
    if !w2s.is_empty() {
        out.push_str(
            "\n| W2 | all done | lateness p50 | lateness p99 | RSS MiB | CPU ms/wf server + SDK | commit ms (cmds/entry) |\n|---|---|---|---|---|---|---|\n",
        );
        for &n in nodes {
            let rows: Vec<&W2Result> = w2s.iter().filter(|r| r.nodes == n).collect();
            if rows.is_empty() {
                continue;
            }
            let (done, lo, hi) = median_range(rows.iter().map(|r| r.all_done_secs).collect());
            let (p50, _, _) = median_range(rows.iter().map(|r| r.lateness_p50_ms).collect());
            let (p99, _, _) = median_range(rows.iter().map(|r| r.lateness_p99_ms).collect());
            let (rss, _, _) = median_range(rows.iter().map(|r| r.server_rss_mib).collect());
            let (scpu, _, _) = median_range(rows.iter().map(|r| r.server_cpu_ms_per_wf).collect());
            let (wcpu, _, _) = median_range(rows.iter().map(|r| r.sdk_cpu_ms_per_wf).collect());
            let (commit, _, _) = median_range(rows.iter().map(|r| r.mean_commit_ms).collect());
            let (cpe, _, _) = median_range(rows.iter().map(|r| r.commands_per_entry).collect());
            out.push_str(&format!(
                "| {n} node{} ({} × sleep 1 s) | {done:.1} s [{lo:.1}..{hi:.1}] | {p50:.0} ms | {p99:.0} ms | {rss:.0} | {scpu:.1} + {wcpu:.1} | {commit:.2} ({cpe:.1}) |\n",
                if n == 1 { "" } else { "s" },
                rows[0].workflows
            ));
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = keel_bin(&args.keel_bin)?;
    let compression = match args.grpc_compression.as_str() {
        "gzip" => GrpcCompression::Gzip,
        "none" => GrpcCompression::None,
        other => anyhow::bail!("--grpc-compression must be gzip or none, not {other:?}"),
    };
    let workloads: Vec<&'static str> = args
        .workloads
        .iter()
        // `--workloads ''` runs W2 alone.
        .filter(|w| !w.is_empty())
        .map(|w| match w.as_str() {
            "w1" => Ok("W1"),
            "w1l" => Ok("W1L"),
            other => Err(anyhow::anyhow!(
                "--workloads takes w1 and w1l, not {other:?}"
            )),
        })
        .collect::<anyhow::Result<_>>()?;
    let mut json = std::fs::File::create(&args.json)
        .with_context(|| format!("creating {}", args.json.display()))?;
    if args.w3.workflows > 0 {
        let r = w3::run(&args.w3, &bin, compression, args.pollers).await?;
        use std::io::Write;
        writeln!(json, "{}", serde_json::to_string(&r)?)?;
        println!("{}", w3::markdown(&r));
        return Ok(());
    }
    let mut w1s = Vec::new();
    let mut w2s = Vec::new();
    for &nodes in &args.nodes {
        eprintln!("== {nodes} node(s): starting servers");
        let servers = Servers::spawn(nodes, &bin, &args.server_config)?;
        let clients = connect_all(&servers, compression).await?;
        eprintln!("   ready; idle server RSS {:.0} MiB", servers.rss_mib());
        let runtime = Runtime::from_current_tokio(Default::default())?;
        let options = WorkerOptions::new(QUEUE)
            .register_workflow::<BenchTen>()?
            .register_workflow::<BenchTenLocal>()?
            .register_workflow::<BenchSleep>()?
            .register_activities(BenchSteps)
            // W2 keeps 10,000 runs open at once: cache them all (the default, 1,000, would
            // evict and make the SDK refetch and replay histories).
            .max_cached_workflows(args.w2_workflows.max(1_000))
            .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(args.pollers))
            .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(args.pollers))
            .build();
        // The worker talks to the first node, the clients to every node in turn.
        let mut worker = Worker::new(&runtime, clients[0].clone(), options)?;
        let stop = worker.shutdown_handle();
        let load = async {
            if args.trace_one {
                trace_one(&clients[0]).await?;
            }
            for run in 1..=args.runs {
                for (workload, &c) in workloads
                    .iter()
                    .flat_map(|w| args.concurrency.iter().map(move |c| (*w, c)))
                {
                    let (completed, tput, p50, p99, rss, costs) = w1(
                        &clients,
                        &servers,
                        workload == "W1L",
                        c,
                        Duration::from_secs(args.warmup_secs),
                        Duration::from_secs(args.window_secs),
                    )
                    .await?;
                    let r = W1Result {
                        workload,
                        nodes,
                        concurrency: c,
                        run,
                        completed,
                        workflows_per_sec: tput,
                        p50_ms: p50,
                        p99_ms: p99,
                        server_rss_mib: rss,
                        server_cpu_ms_per_wf: costs.server_cpu_ms_per_wf,
                        sdk_cpu_ms_per_wf: costs.sdk_cpu_ms_per_wf,
                        mean_commit_ms: costs.mean_commit_ms,
                        commands_per_entry: costs.commands_per_entry,
                    };
                    eprintln!("   {r:?}");
                    w1s.push(r);
                }
                if args.w2_workflows > 0 {
                    let (done, p50, p99, rss, costs) = w2(
                        &clients,
                        &servers,
                        args.w2_workflows,
                        args.w2_start_concurrency,
                        run,
                        args.w2_results,
                        args.trace_one,
                    )
                    .await?;
                    let r = W2Result {
                        workload: "W2",
                        nodes,
                        run,
                        workflows: args.w2_workflows,
                        all_done_secs: done,
                        lateness_p50_ms: p50,
                        lateness_p99_ms: p99,
                        server_rss_mib: rss,
                        server_cpu_ms_per_wf: costs.server_cpu_ms_per_wf,
                        sdk_cpu_ms_per_wf: costs.sdk_cpu_ms_per_wf,
                        mean_commit_ms: costs.mean_commit_ms,
                        commands_per_entry: costs.commands_per_entry,
                    };
                    eprintln!("   {r:?}");
                    w2s.push(r);
                }
            }
            stop();
            anyhow::Ok(())
        };
        let (worker_result, load_result) = tokio::join!(worker.run(), load);
        load_result?;
        worker_result?;
        drop(servers);
    }
    use std::io::Write;
    for r in &w1s {
        writeln!(json, "{}", serde_json::to_string(r)?)?;
    }
    for r in &w2s {
        writeln!(json, "{}", serde_json::to_string(r)?)?;
    }
    println!("{}", markdown(&w1s, &w2s, &args.nodes, &args.concurrency));
    Ok(())
}
