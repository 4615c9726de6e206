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
    let mut registry = prometheus_client::registry::Registry::default();
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
