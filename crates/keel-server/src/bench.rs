//! `keel bench raft`: register writes on an in-process 3-node cluster (real tonic peer
//! transport, real RocksDB with fsync), closed loop at several concurrency levels.
//!
//! Proposers call the leader's replication API directly, so the figures measure the
//! replicated core (batching, group commit, replication, apply), not a client's gRPC stack.
//! Output: one JSON object per level on stdout; a Markdown table on stderr.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_engine::Command;

use crate::local_cluster::LocalCluster;

/// Options of the raft benchmark.
#[derive(Debug, Clone)]
pub struct RaftBenchOptions {
    pub nodes: u64,
    pub concurrency: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
    pub value_bytes: usize,
}

/// Result of one concurrency level.
#[derive(Debug, Clone)]
pub struct RaftBenchResult {
    pub concurrency: usize,
    pub commits: u64,
    pub commits_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl RaftBenchResult {
    pub fn to_json(&self, nodes: u64) -> String {
        format!(
            "{{\"bench\":\"raft-register-put\",\"nodes\":{nodes},\"concurrency\":{},\"commits\":{},\"commits_per_sec\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
            self.concurrency, self.commits, self.commits_per_sec, self.p50_ms, self.p99_ms
        )
    }
}

fn percentile(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i] as f64 / 1000.0
}

/// Runs the benchmark and prints its results.
pub async fn run_raft_bench(opts: RaftBenchOptions) -> anyhow::Result<Vec<RaftBenchResult>> {
    let cluster = LocalCluster::start(opts.nodes, |c| {
        c.raft.heartbeat_interval_ms = 100;
        c.raft.election_timeout_min_ms = 1000;
        c.raft.election_timeout_max_ms = 2000;
    })
    .await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    eprintln!("bench: {}-node cluster up, leader {leader}", opts.nodes);
    let node = cluster.node(leader).raft().clone();
    let value = Arc::new(vec![b'x'; opts.value_bytes]);
    let mut results = Vec::new();
    for &c in &opts.concurrency {
        let start = Instant::now();
        let measure_from = start + opts.warmup;
        let end = measure_from + opts.duration;
        let mut tasks = Vec::new();
        for worker in 0..c {
            let node = node.clone();
            let value = value.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                loop {
                    let t = Instant::now();
                    if t >= end {
                        break;
                    }
                    let key = format!("bench/{worker}/{}", i % 1024);
                    node.propose(vec![Command::put(key, value.as_slice())])
                        .await?;
                    let done = Instant::now();
                    if t >= measure_from && done <= end {
                        lat.push(done.duration_since(t).as_micros() as u64);
                    }
                    i += 1;
                }
                anyhow::Ok(lat)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        all.sort_unstable();
        let r = RaftBenchResult {
            concurrency: c,
            commits: all.len() as u64,
            commits_per_sec: all.len() as f64 / opts.duration.as_secs_f64(),
            p50_ms: percentile(&all, 0.50),
            p99_ms: percentile(&all, 0.99),
        };
        println!("{}", r.to_json(opts.nodes));
        results.push(r);
    }
    eprintln!("\n| nodes | proposers | commits/s | p50 ms | p99 ms |\n|---|---|---|---|---|");
    for r in &results {
        eprintln!(
            "| {} | {} | {:.0} | {:.2} | {:.2} |",
            opts.nodes, r.concurrency, r.commits_per_sec, r.p50_ms, r.p99_ms
        );
    }
    eprintln!(
        "\nreplication internals (all nodes, whole run):\n{}",
        internals_summary()
    );
    cluster.shutdown().await;
    Ok(results)
}

/// Means of the replication layer's histograms, to see where commit latency goes.
fn internals_summary() -> String {
    let mut registry = prometheus_client::registry::Registry::with_prefix("keel");
    keel_raft::metrics::register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode to string");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(f64::NAN)
    };
    let mut out = String::new();
    for (metric, scale, unit) in [
        ("keel_raft_wal_fsync_seconds", 1e3, "ms"),
        ("keel_raft_wal_fsync_batch_appends", 1.0, "appends"),
        ("keel_raft_log_append_seconds", 1e3, "ms"),
        ("keel_raft_apply_batch_seconds", 1e3, "ms"),
    ] {
        let (sum, count) = (
            value(&format!("{metric}_sum ")),
            value(&format!("{metric}_count ")),
        );
        out.push_str(&format!(
            "  {metric}: count {count:.0}, mean {:.3} {unit}\n",
            sum / count * scale
        ));
    }
    out
}

// ------------------------------------------------------------------ engine apply benchmark

use keel_engine::command::Kind;
use keel_engine::workflow::{
    self as wf, workflow_command::Kind as Cmd, workflow_outcome::Kind as Outcome,
};
use keel_engine::{MemStore, Proposal, ProposalResponse};

/// Options of `keel bench engine`.
#[derive(Debug, Clone)]
pub struct EngineBenchOptions {
    /// Workflows per run.
    pub workflows: usize,
    /// Workflows advanced together; one proposal each per apply batch.
    pub batch: usize,
    /// Activity counts of the workloads (1 = hello world).
    pub activities: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Start,
    PollWorkflowTask,
    CompleteWorkflowTask,
    PollActivity,
    CompleteActivity,
    Done,
}

/// Drives one workflow of `activities` sequential activities, one command at a time.
struct Driver {
    run: wf::RunKey,
    queue: String,
    activities: usize,
    done: usize,
    phase: Phase,
    token: Option<wf::TaskToken>,
}

impl Driver {
    fn new(i: usize, activities: usize) -> Self {
        Driver {
            run: wf::RunKey {
                namespace: "bench".into(),
                workflow_id: format!("wf-{i}"),
                run_id: format!("run-{i}"),
            },
            queue: format!("q-{i}"),
            activities,
            done: 0,
            phase: Phase::Start,
            token: None,
        }
    }

    fn command(&self) -> Kind {
        let poll = |kind: wf::TaskKind| {
            Kind::DispatchTask(wf::DispatchTask {
                namespace: "bench".into(),
                task_queue: self.queue.clone(),
                kind: kind as i32,
                identity: "bench".into(),
                request_id: "r".into(),
            })
        };
        match self.phase {
            Phase::Start => Kind::StartWorkflow(wf::StartWorkflow {
                run: Some(self.run.clone()),
                workflow_type: "bench".into(),
                task_queue: self.queue.clone(),
                input: vec![0; 64],
                request_id: self.run.run_id.clone(),
                ..Default::default()
            }),
            Phase::PollWorkflowTask => poll(wf::TaskKind::Workflow),
            Phase::PollActivity => poll(wf::TaskKind::Activity),
            Phase::CompleteWorkflowTask => {
                let cmd = if self.done < self.activities {
                    Cmd::ScheduleActivity(wf::ScheduleActivity {
                        activity_id: format!("a{}", self.done),
                        activity_type: "step".into(),
                        input: vec![0; 64],
                        start_to_close_timeout_ms: 10_000,
                        ..Default::default()
                    })
                } else {
                    Cmd::CompleteWorkflow(wf::CompleteWorkflow {
                        result: vec![0; 64],
                        next_run_id: String::new(),
                    })
                };
                Kind::CompleteWorkflowTask(wf::CompleteWorkflowTask {
                    token: self.token.clone(),
                    identity: "bench".into(),
                    commands: vec![wf::WorkflowCommand {
                        kind: Some(cmd),
                        user_metadata: Vec::new(),
                    }],
                    sdk_metadata: vec![],
                    sticky_queue: String::new(),
                    ..Default::default()
                })
            }
            Phase::CompleteActivity => Kind::CompleteActivityTask(wf::CompleteActivityTask {
                token: self.token.clone(),
                identity: "bench".into(),
                result: vec![0; 64],
            }),
            Phase::Done => unreachable!("a finished driver proposes nothing"),
        }
    }

    fn observe(&mut self, r: &ProposalResponse) -> anyhow::Result<()> {
        let outcome = match r.responses.first().and_then(|x| x.kind.clone()) {
            Some(keel_engine::response::Kind::Workflow(o)) => o.kind,
            other => anyhow::bail!("unexpected response {other:?}"),
        };
        self.phase = match (self.phase, outcome) {
            (Phase::Start, Some(Outcome::Started(_))) => Phase::PollWorkflowTask,
            (Phase::PollWorkflowTask, Some(Outcome::Dispatched(d))) => {
                self.token = d.token;
                Phase::CompleteWorkflowTask
            }
            (Phase::CompleteWorkflowTask, Some(Outcome::Accepted(_)))
                if self.done < self.activities =>
            {
                Phase::PollActivity
            }
            (Phase::CompleteWorkflowTask, Some(Outcome::Accepted(_))) => Phase::Done,
            (Phase::PollActivity, Some(Outcome::Dispatched(d))) => {
                self.token = d.token;
                Phase::CompleteActivity
            }
            (Phase::CompleteActivity, Some(Outcome::Accepted(_))) => {
                self.done += 1;
                Phase::PollWorkflowTask
            }
            (phase, other) => anyhow::bail!(
                "workflow {} in {phase:?} got {other:?}",
                self.run.workflow_id
            ),
        };
        Ok(())
    }
}

/// Runs `workflows` workflows to completion, `batch` at a time; returns (commands, seconds
/// spent in apply).
fn drive(
    opts: &EngineBenchOptions,
    activities: usize,
    apply: &mut dyn FnMut(&[Proposal]) -> anyhow::Result<Vec<ProposalResponse>>,
) -> anyhow::Result<(u64, f64)> {
    let mut t = 1_000u64;
    let register = Proposal {
        proposed_at_ms: t,
        commands: vec![keel_engine::Command {
            kind: Some(Kind::RegisterNamespace(wf::RegisterNamespace {
                name: "bench".into(),
                id: "bench-id".into(),
                description: String::new(),
                retention_ms: 0,
            })),
        }],
    };
    apply(&[register])?;
    let mut next = 0;
    let mut active: Vec<Driver> = Vec::new();
    let (mut commands, mut spent) = (0u64, 0f64);
    while next < opts.workflows || !active.is_empty() {
        while active.len() < opts.batch && next < opts.workflows {
            active.push(Driver::new(next, activities));
            next += 1;
        }
        t += 1;
        let proposals: Vec<Proposal> = active
            .iter()
            .map(|d| Proposal {
                proposed_at_ms: t,
                commands: vec![keel_engine::Command {
                    kind: Some(d.command()),
                }],
            })
            .collect();
        let started = Instant::now();
        let responses = apply(&proposals)?;
        spent += started.elapsed().as_secs_f64();
        commands += proposals.len() as u64;
        for (d, r) in active.iter_mut().zip(&responses) {
            d.observe(r)?;
        }
        active.retain(|d| d.phase != Phase::Done);
    }
    Ok((commands, spent))
}

/// Runs the engine benchmark on the in-memory store and on RocksDB; prints JSON lines on
/// stdout and a Markdown table on stderr.
pub fn run_engine_bench(opts: EngineBenchOptions) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &activities in &opts.activities {
        let mut mem = MemStore::new();
        let (n, secs) = drive(&opts, activities, &mut |ps| {
            ps.iter()
                .map(|p| Ok(keel_engine::apply_proposal(p, &mut mem)?.0))
                .collect()
        })?;
        rows.push(("memory", activities, n, secs));
        let dir = tempfile::Builder::new()
            .prefix("keel-engine-bench-")
            .tempdir()?;
        let mut rocks = keel_raft::DirectApplier::open(dir.path())?;
        let (n, secs) = drive(&opts, activities, &mut |ps| Ok(rocks.apply_batch(ps)?))?;
        rows.push(("rocksdb", activities, n, secs));
    }
    eprintln!("\n| store | workflow | commands | applied commands/s |\n|---|---|---|---|");
    for (store, activities, n, secs) in rows {
        let rate = n as f64 / secs;
        println!(
            "{{\"bench\":\"engine-apply\",\"store\":\"{store}\",\"activities\":{activities},\"workflows\":{},\"batch\":{},\"commands\":{n},\"commands_per_sec\":{rate:.0}}}",
            opts.workflows, opts.batch
        );
        eprintln!(
            "| {store} | {activities} activit{} | {n} | {rate:.0} |",
            if activities == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}

/// Options of the visibility benchmark.
#[derive(Debug, Clone)]
pub struct VisibilityBenchOptions {
    /// Runs written (90% closed, 10% running).
    pub runs: usize,
}

/// `keel bench visibility`: writes `runs` runs through the engine onto RocksDB (ten workflow
/// types, a custom Keyword attribute with 1,000 values, nine in ten closed), then times the
/// frontend's List and Count on that state: a first page, a selective filter paged to the end,
/// and counts from apply's status counts and by a scan. JSON lines on stdout, a table on stderr.
pub fn run_visibility_bench(opts: VisibilityBenchOptions) -> anyhow::Result<()> {
    use keel_engine::command::Kind;
    use keel_engine::workflow as wf;
    use keel_proto::temporalio_protos::temporal::api::common::v1::{Payload, SearchAttributes};
    use keel_proto::temporalio_protos::temporal::api::workflowservice::v1 as api;
    use prost::Message;

    let dir = tempfile::Builder::new()
        .prefix("keel-visibility-bench-")
        .tempdir()?;
    let mut rocks = keel_raft::DirectApplier::open(dir.path())?;
    let mut t = 1_000u64;
    let proposal = |t: u64, kinds: Vec<Kind>| Proposal {
        proposed_at_ms: t,
        commands: kinds
            .into_iter()
            .map(|k| keel_engine::Command { kind: Some(k) })
            .collect(),
    };
    rocks.apply_batch(&[proposal(
        t,
        vec![
            Kind::RegisterNamespace(wf::RegisterNamespace {
                name: "bench".into(),
                id: "bench-id".into(),
                description: String::new(),
                retention_ms: 0,
            }),
            Kind::UpdateSearchAttributes(wf::search::UpdateSearchAttributes {
                namespace: "bench".into(),
                add: [(
                    "Customer".to_string(),
                    wf::search::IndexedValueType::Keyword as i32,
                )]
                .into(),
                remove: Vec::new(),
            }),
        ],
    )])?;
    let customer = |i: usize| {
        SearchAttributes {
            indexed_fields: [(
                "Customer".to_string(),
                Payload {
                    metadata: [("encoding".to_string(), b"json/plain".to_vec())].into(),
                    data: format!("\"c-{}\"", i % 1000).into_bytes(),
                    ..Default::default()
                },
            )]
            .into(),
        }
        .encode_to_vec()
    };
    let run = |i: usize| wf::RunKey {
        namespace: "bench".into(),
        workflow_id: format!("wf-{i}"),
        run_id: format!("run-{i}"),
    };
    let write_started = Instant::now();
    const PER_BATCH: usize = 500;
    for first in (0..opts.runs).step_by(PER_BATCH) {
        t += 1;
        let mut kinds = Vec::with_capacity(2 * PER_BATCH);
        for i in first..(first + PER_BATCH).min(opts.runs) {
            kinds.push(Kind::StartWorkflow(wf::StartWorkflow {
                run: Some(run(i)),
                workflow_type: format!("type-{}", i % 10),
                task_queue: format!("q-{}", i % 10),
                request_id: format!("req-{i}"),
                search_attributes: customer(i),
                ..Default::default()
            }));
            if i % 10 != 9 {
                kinds.push(Kind::TerminateWorkflow(wf::TerminateWorkflow {
                    run: Some(run(i)),
                    reason: "bench".into(),
                    ..Default::default()
                }));
            }
        }
        rocks.apply_batch(&[proposal(t, kinds)])?;
    }
    let write_secs = write_started.elapsed().as_secs_f64();
    let state = rocks.reader();
    let ns = wf::read_namespace(&state, "bench")?
        .ok_or_else(|| anyhow::anyhow!("the namespace was not registered"))?;

    let mut rows: Vec<(String, String, f64, i64)> = Vec::new();
    let mut timed = |what: &str, query: &str, f: &mut dyn FnMut() -> anyhow::Result<i64>| {
        let started = Instant::now();
        let n = f()?;
        rows.push((
            what.to_string(),
            query.to_string(),
            started.elapsed().as_secs_f64() * 1000.0,
            n,
        ));
        anyhow::Ok(())
    };
    let list_page = |query: &str, token: Vec<u8>| {
        keel_frontend::visibility::list(
            &state,
            &ns,
            api::ListWorkflowExecutionsRequest {
                namespace: "bench".into(),
                page_size: 1000,
                next_page_token: token,
                query: query.into(),
            },
        )
        .map_err(|s| anyhow::anyhow!("list: {}", s.message()))
    };
    let count = |query: &str| {
        keel_frontend::visibility::count(
            &state,
            &ns,
            api::CountWorkflowExecutionsRequest {
                namespace: "bench".into(),
                query: query.into(),
            },
        )
        .map(|r| r.count)
        .map_err(|s| anyhow::anyhow!("count: {}", s.message()))
    };
    timed("list: first page of 1000", "", &mut || {
        Ok(list_page("", Vec::new())?.executions.len() as i64)
    })?;
    let selective = "WorkflowType = 'type-3' AND Customer = 'c-13'";
    timed(
        "list: a selective filter, every page",
        selective,
        &mut || {
            let (mut token, mut found) = (Vec::new(), 0);
            loop {
                let page = list_page(selective, token)?;
                found += page.executions.len() as i64;
                if page.next_page_token.is_empty() {
                    return Ok(found);
                }
                token = page.next_page_token;
            }
        },
    )?;
    for q in [
        "",
        "ExecutionStatus = 'Running'",
        "GROUP BY ExecutionStatus",
    ] {
        timed("count: from status counts", q, &mut || count(q))?;
    }
    for q in ["WorkflowType = 'type-3'", "Customer = 'c-13'"] {
        timed("count: by a scan", q, &mut || count(q))?;
    }

    eprintln!(
        "\nwrote {} runs in {write_secs:.1} s\n\n| operation | query | ms | result |\n|---|---|---|---|",
        opts.runs
    );
    for (what, query, ms, n) in rows {
        println!(
            "{{\"bench\":\"visibility\",\"runs\":{},\"operation\":{what:?},\"query\":{query:?},\"ms\":{ms:.1},\"result\":{n}}}",
            opts.runs
        );
        eprintln!("| {what} | `{query}` | {ms:.1} | {n} |");
    }
    Ok(())
}
