//! **W3 — scale**: many open workflows, each sleeping (an hour by default), on a 3-node
//! cluster; what it costs to hold them and whether the cluster stays serviceable.
//!
//! 1. Starts `--w3-workflows` sleepers through the two nodes that stay up (64 in flight),
//!    and kills one follower (SIGKILL) once `--w3-follower-down-at` of them are armed.
//!    The start rate counts until every sleeper's first workflow task is done (its timer
//!    armed), so it is the rate the whole system sustains, not the client's.
//! 2. Starts `--w3-probes` probe sleepers whose timers come due one after another, 10 ms
//!    apart, `--w3-probe-delay-secs` later — after the restarts below.
//! 3. Builds a snapshot on the leader (time, size), restarts the killed follower and times
//!    its catch-up (its log is behind the leader's purged prefix, so it installs the
//!    snapshot).
//! 4. Kills all three nodes and starts them again: time until the cluster accepts a start,
//!    RSS per node right after.
//! 5. Waits for every probe to finish and checks from their histories that each timer fired
//!    on time (TimerFired − (TimerStarted + duration)) and in deadline order.
//!
//! RSS per node is sampled throughout (peak) and after the restart; disk per node after the
//! starts. Memory must stay bounded by design: the server holds nothing per open run.

use std::sync::atomic::AtomicUsize;

use temporalio_common::protos::temporal::api::enums::v1::{EventType, TaskQueueType};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;

use super::*;

/// First workflow tasks run (not replays): the driver's count of armed sleepers.
static FIRST_TASKS: AtomicU64 = AtomicU64::new(0);

#[workflow]
#[derive(Default)]
pub struct BenchSleepUntil;

#[workflow_methods]
impl BenchSleepUntil {
    /// Sleeps until `fire_at_ms` (Unix ms; at least 1 ms).
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, fire_at_ms: i64) -> WorkflowResult<()> {
        if !ctx.is_replaying() {
            FIRST_TASKS.fetch_add(1, Ordering::Relaxed);
        }
        let now = unix_ms(ctx.workflow_time());
        ctx.timer(Duration::from_millis((fire_at_ms - now).max(1) as u64))
            .await;
        Ok(())
    }
}

fn now_unix_ms() -> i64 {
    unix_ms(Some(SystemTime::now()))
}

#[derive(clap::Args, Debug, Clone)]
pub struct W3Args {
    /// Run W3 (instead of W1/W2) with this many sleepers on 3 nodes.
    #[arg(long = "w3-workflows", default_value_t = 0)]
    pub workflows: usize,
    /// How long each sleeper sleeps, s.
    #[arg(long = "w3-sleep-secs", default_value_t = 3_600)]
    pub sleep_secs: u64,
    /// Fraction of the sleepers armed (first task done) when a follower is killed (it is
    /// restarted after the snapshot, to catch up from it).
    #[arg(long = "w3-follower-down-at", default_value_t = 0.9)]
    pub follower_down_at: f64,
    /// Probe sleepers, whose timers fire after the restarts, 10 ms apart.
    #[arg(long = "w3-probes", default_value_t = 1_000)]
    pub probes: usize,
    /// When the first probe timer comes due, s after the probes start.
    #[arg(long = "w3-probe-delay-secs", default_value_t = 180)]
    pub probe_delay_secs: u64,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct W3Result {
    workload: &'static str,
    nodes: usize,
    workflows: usize,
    start_secs: f64,
    starts_per_sec: f64,
    server_cpu_ms_per_wf: f64,
    peak_rss_mib_per_node: Vec<f64>,
    disk_mib_per_node: Vec<f64>,
    snapshot_build_secs: f64,
    snapshot_mib: f64,
    follower_catch_up_secs: f64,
    follower_installed_snapshot: bool,
    restart_to_first_start_secs: f64,
    rss_mib_per_node_after_restart: Vec<f64>,
    probes: usize,
    probe_fired_late_p50_ms: f64,
    probe_fired_late_p99_ms: f64,
    probe_fired_late_max_ms: f64,
    probe_order_inversions: usize,
    peak_rss_mib_per_node_after_restart: Vec<f64>,
}

fn dir_mib(dir: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if meta.is_dir() {
            std::fs::read_dir(p)
                .map(|d| d.filter_map(|e| e.ok()).map(|e| walk(&e.path())).sum())
                .unwrap_or(0)
        } else {
            meta.len()
        }
    }
    walk(dir) as f64 / (1024.0 * 1024.0)
}

async fn admin(
    addr: &str,
) -> anyhow::Result<keel_proto::admin::v1::admin_client::AdminClient<tonic::transport::Channel>> {
    Ok(keel_proto::admin::v1::admin_client::AdminClient::connect(format!("http://{addr}")).await?)
}

async fn node_status(addr: &str) -> anyhow::Result<keel_proto::admin::v1::NodeStatus> {
    Ok(admin(addr)
        .await?
        .node_status(keel_proto::admin::v1::NodeStatusRequest {})
        .await?
        .into_inner())
}

/// The workflow-task backlog of the bench queue (tasks not yet handed to a worker).
async fn backlog(client: &Client) -> anyhow::Result<i64> {
    let mut raw = client.clone();
    let r = WorkflowService::describe_task_queue(
        &mut raw,
        DescribeTaskQueueRequest {
            namespace: "default".into(),
            task_queue: Some(TaskQueue {
                name: QUEUE.into(),
                ..Default::default()
            }),
            task_queue_type: TaskQueueType::Workflow as i32,
            report_stats: true,
            ..Default::default()
        }
        .into_request(),
    )
    .await?
    .into_inner();
    Ok(r.stats.map_or(0, |s| s.approximate_backlog_count))
}

/// Prints progress every 30 s; returns once `until` sleepers are armed.
async fn progress(servers: &Servers, started: &AtomicUsize, began: Instant, until: usize) {
    let mut last = (Instant::now(), 0);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = started.load(Ordering::Relaxed);
        if FIRST_TASKS.load(Ordering::Relaxed) as usize >= until {
            return;
        }
        if last.0.elapsed() >= Duration::from_secs(30) {
            let rss: Vec<u64> = servers
                .children
                .iter()
                .map(|c| rss_kib(c.id()).unwrap_or(0) / 1024)
                .collect();
            eprintln!(
                "   {:>4.0} s: {s} started, {} armed, {:.0}/s, RSS MiB {rss:?}",
                began.elapsed().as_secs_f64(),
                FIRST_TASKS.load(Ordering::Relaxed),
                (s - last.1) as f64 / last.0.elapsed().as_secs_f64(),
            );
            last = (Instant::now(), s);
        }
    }
}

async fn start_sleepers(
    clients: &[Client],
    ids: impl Iterator<Item = (String, i64)>,
    started: &AtomicUsize,
) -> anyhow::Result<()> {
    futures::stream::iter(ids.enumerate())
        .map(|(i, (id, fire_at))| {
            let client = clients[i % clients.len()].clone();
            async move {
                client
                    .start_workflow(
                        BenchSleepUntil::run,
                        fire_at,
                        WorkflowStartOptions::new(QUEUE, &id).build(),
                    )
                    .await
                    .map(|_| started.fetch_add(1, Ordering::Relaxed))
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

pub async fn run(
    args: &W3Args,
    bin: &Path,
    compression: GrpcCompression,
    pollers: usize,
) -> anyhow::Result<W3Result> {
    let n = args.workflows;
    let mut out = W3Result {
        workload: "W3",
        nodes: 3,
        workflows: n,
        probes: args.probes,
        ..Default::default()
    };
    eprintln!("== W3: {n} sleepers on 3 nodes");
    let mut servers = Servers::spawn(3, bin, "")?;
    let clients = connect_all(&servers, compression).await?;
    let leader_of = |s: &keel_proto::admin::v1::NodeStatus| s.leader_id as usize;
    let leader = wait_for(Duration::from_secs(30), "a leader is known", || async {
        let s = node_status(&servers.client_addrs[0]).await.ok()?;
        (s.leader_id != 0).then(|| leader_of(&s))
    })
    .await?;
    // The follower to kill: not the leader, not node 1 (the worker's node).
    let victim = if leader == 3 { 1 } else { 2 }; // index: node 2 or node 3
    eprintln!(
        "   leader node {leader}; node {} goes down at {:.0}%",
        victim + 1,
        args.follower_down_at * 100.0
    );
    let live: Vec<Client> = clients
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, c)| c.clone())
        .collect();

    let runtime = Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new(QUEUE)
        .register_workflow::<BenchSleepUntil>()?
        .max_cached_workflows(2_000)
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(pollers))
        .build();
    let mut worker = Worker::new(&runtime, clients[0].clone(), options)?;
    let stop = worker.shutdown_handle();
    let servers_ref = &mut servers;
    let load = async move {
        let servers = servers_ref;
        // ---- 1. starts
        let rss = RssSampler::start(servers);
        let cpu = CostMeter::start(servers);
        let began = Instant::now();
        let started = AtomicUsize::new(0);
        let fire_at = now_unix_ms() + args.sleep_secs as i64 * 1_000;
        let kill_at = (n as f64 * args.follower_down_at) as usize;
        let starts = start_sleepers(
            &live,
            (0..n).map(|i| (format!("w3-{i}"), fire_at)),
            &started,
        );
        // The follower goes down once `kill_at` are armed, while starts may still be running
        // (through the nodes that stay up): SIGKILL by pid here, reaped by `kill` below.
        let kill_watch = async {
            progress(servers, &started, began, kill_at).await;
            eprintln!(
                "   {} armed, {} started: killing node {}",
                FIRST_TASKS.load(Ordering::Relaxed),
                started.load(Ordering::Relaxed),
                victim + 1
            );
            let pid = servers.children[victim].id().to_string();
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()?;
            anyhow::ensure!(status.success(), "kill -KILL {pid} failed: {status}");
            anyhow::Ok(())
        };
        tokio::try_join!(starts, kill_watch)?;
        servers.kill(victim);
        let armed_reason = format!("all {n} sleepers ran their first workflow task");
        wait_for(Duration::from_secs(600), &armed_reason, || async {
            (FIRST_TASKS.load(Ordering::Relaxed) as usize >= n
                && backlog(&live[0]).await.ok()? == 0)
                .then_some(())
        })
        .await?;
        out.start_secs = began.elapsed().as_secs_f64();
        out.starts_per_sec = n as f64 / out.start_secs;
        out.server_cpu_ms_per_wf = cpu.per_workflow(servers, n).server_cpu_ms_per_wf;
        out.disk_mib_per_node = (0..3).map(|i| dir_mib(&servers.data_dir(i))).collect();
        eprintln!(
            "   {n} armed in {:.0} s ({:.0}/s); disk MiB per node {:?}",
            out.start_secs, out.starts_per_sec, out.disk_mib_per_node
        );

        // ---- 2. probes, due after the restarts
        let first_due = now_unix_ms() + args.probe_delay_secs as i64 * 1_000;
        let probe_ids: Vec<(String, i64)> = (0..args.probes)
            .map(|j| (format!("w3-probe-{j}"), first_due + 10 * j as i64))
            .collect();
        start_sleepers(&live, probe_ids.iter().cloned(), &AtomicUsize::new(0)).await?;

        // ---- 3. snapshot on the leader, follower catch-up
        let leader_addr = servers.client_addrs[leader - 1].clone();
        let t = Instant::now();
        let snap_index = admin(&leader_addr)
            .await?
            .trigger_snapshot(keel_proto::admin::v1::TriggerSnapshotRequest {})
            .await?
            .into_inner()
            .snapshot_index;
        out.snapshot_build_secs = t.elapsed().as_secs_f64();
        out.snapshot_mib = std::fs::read_dir(servers.data_dir(leader - 1).join("snapshots"))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0) as f64
            / (1024.0 * 1024.0);
        let leader_status = node_status(&leader_addr).await?;
        eprintln!(
            "   snapshot at index {snap_index}: {:.1} s, {:.0} MiB; leader purged to {}",
            out.snapshot_build_secs, out.snapshot_mib, leader_status.purged_index
        );
        let target = leader_status.applied_index;
        let t = Instant::now();
        servers.restart(victim)?;
        let victim_addr = servers.client_addrs[victim].clone();
        let caught_up = wait_for(
            Duration::from_secs(900),
            "the restarted follower applied what the leader had",
            || async {
                let s = node_status(&victim_addr).await.ok()?;
                (s.applied_index >= target).then_some(s)
            },
        )
        .await?;
        out.follower_catch_up_secs = t.elapsed().as_secs_f64();
        out.follower_installed_snapshot = caught_up.snapshot_index >= snap_index;
        eprintln!(
            "   follower caught up in {:.1} s (its snapshot index {}, installed the leader's: {})",
            out.follower_catch_up_secs, caught_up.snapshot_index, out.follower_installed_snapshot
        );
        out.peak_rss_mib_per_node = rss.finish_per_node();

        // ---- 4. whole-cluster crash and restart
        for i in 0..3 {
            servers.kill(i);
        }
        let t = Instant::now();
        for i in 0..3 {
            servers.restart(i)?;
        }
        let rss = RssSampler::start(servers);
        wait_for(
            Duration::from_secs(600),
            "the restarted cluster accepts a start",
            || async {
                clients[0]
                    .start_workflow(
                        BenchSleepUntil::run,
                        now_unix_ms(),
                        WorkflowStartOptions::new(QUEUE, "w3-after-restart").build(),
                    )
                    .await
                    .ok()
            },
        )
        .await?;
        out.restart_to_first_start_secs = t.elapsed().as_secs_f64();
        out.rss_mib_per_node_after_restart = servers
            .children
            .iter()
            .map(|c| rss_kib(c.id()).unwrap_or(0) as f64 / 1024.0)
            .collect();
        eprintln!(
            "   restarted cluster accepted a start after {:.1} s; RSS MiB per node {:?}",
            out.restart_to_first_start_secs, out.rss_mib_per_node_after_restart
        );

        // ---- 5. the probes fire on time and in order
        let last_due = first_due + 10 * args.probes as i64;
        eprintln!(
            "   waiting for the probes (due in {:.0} s)",
            (last_due - now_unix_ms()) as f64 / 1e3
        );
        futures::stream::iter(&probe_ids)
            .map(|(id, _)| {
                let client = clients[0].clone();
                async move {
                    client
                        .get_workflow_handle::<BenchSleepUntil>(id)
                        .get_result(WorkflowGetResultOptions::default())
                        .await
                }
            })
            .buffer_unordered(64)
            .try_collect::<Vec<_>>()
            .await?;
        let mut fired: Vec<(i64, i64)> = Vec::new(); // (deadline, fired), ms
        for (id, _) in &probe_ids {
            let h = keel_sdk_tests::history_of(&clients[0], id).await?;
            let started = h.events.iter().find_map(|e| match &e.attributes {
                Some(Attributes::TimerStartedEventAttributes(a)) => Some((
                    event_ms(e),
                    a.start_to_fire_timeout
                        .as_ref()
                        .map_or(0, |d| d.seconds * 1_000 + i64::from(d.nanos) / 1_000_000),
                )),
                _ => None,
            });
            let fired_at = h
                .events
                .iter()
                .find(|e| e.event_type() == EventType::TimerFired)
                .map(event_ms);
            let (Some((at, dur)), Some(f)) = (started, fired_at) else {
                anyhow::bail!("probe {id} has no started and fired timer");
            };
            fired.push((at + dur, f));
        }
        fired.sort();
        out.probe_order_inversions = fired.windows(2).filter(|w| w[1].1 < w[0].1).count();
        let mut late: Vec<f64> = fired.iter().map(|(d, f)| (f - d) as f64).collect();
        late.sort_by(|a, b| a.total_cmp(b));
        out.probe_fired_late_p50_ms = percentile(&late, 0.5);
        out.probe_fired_late_p99_ms = percentile(&late, 0.99);
        out.probe_fired_late_max_ms = percentile(&late, 1.0);
        out.peak_rss_mib_per_node_after_restart = rss.finish_per_node();
        eprintln!("   {out:?}");
        stop();
        anyhow::Ok(out)
    };
    let (worker_result, load_result) = tokio::join!(worker.run(), load);
    let out = load_result?;
    worker_result?;
    drop(servers);
    Ok(out)
}

pub fn markdown(r: &W3Result) -> String {
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    format!(
        "| W3 (3 nodes) | {} open sleepers |\n|---|---|\n\
         | started and armed | {:.0} s ({:.0}/s), server CPU {:.2} ms per workflow |\n\
         | peak RSS per node | {} MiB |\n\
         | disk per node | {} MiB |\n\
         | snapshot | {:.0} MiB, built in {:.1} s |\n\
         | follower catch-up (snapshot installed: {}) | {:.1} s |\n\
         | whole-cluster restart → first start accepted | {:.1} s; RSS per node then {} MiB, peak while probes fired {} MiB |\n\
         | {} probe timers after the restart: fired late p50 / p99 / max | {:.0} / {:.0} / {:.0} ms, {} out of order |\n",
        r.workflows,
        r.start_secs,
        r.starts_per_sec,
        r.server_cpu_ms_per_wf,
        list(&r.peak_rss_mib_per_node),
        list(&r.disk_mib_per_node),
        r.snapshot_mib,
        r.snapshot_build_secs,
        r.follower_installed_snapshot,
        r.follower_catch_up_secs,
        r.restart_to_first_start_secs,
        list(&r.rss_mib_per_node_after_restart),
        list(&r.peak_rss_mib_per_node_after_restart),
        r.probes,
        r.probe_fired_late_p50_ms,
        r.probe_fired_late_p99_ms,
        r.probe_fired_late_max_ms,
        r.probe_order_inversions,
    )
}
