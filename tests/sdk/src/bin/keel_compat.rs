//! `keel-compat`: runs checks written with other languages' official Temporal SDKs against
//! a 3-node in-process Keel cluster. Each check is a command; it gets two node addresses as
//! its last arguments, a follower for its worker and the other follower for its client, so
//! every call of the check is forwarded to the leader. `tests/compat/run` installs the SDKs
//! and runs the Python and TypeScript checks through this; the exit code is non-zero if any
//! check fails or outlives `--timeout-secs`. With `--crash-leader-after-ms N`, the leader
//! is crashed N ms into each check (its connections cut, as when a process dies) and
//! restarted once another node leads, so every check also runs through a failover.

use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Runs SDK checks against a 3-node Keel cluster (see the module docs)")]
struct Args {
    /// How long one check may take.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Crash the leader this long into each check, and restart it once a new leader is
    /// elected.
    #[arg(long)]
    crash_leader_after_ms: Option<u64>,
    /// The checks: each a command line (split on whitespace) to which the worker's and the
    /// client's node addresses are appended.
    #[arg(required = true)]
    checks: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (mut cluster, leader, followers) = keel_sdk_tests::cluster().await?;
    let worker = cluster.node(followers[0]).client_addr().to_string();
    let client = cluster.node(followers[1]).client_addr().to_string();
    eprintln!("keel-compat: leader node {leader}; worker on {worker}, client on {client}");
    let mut failed = Vec::new();
    for check in &args.checks {
        let mut words = check.split_whitespace();
        let program = words
            .next()
            .ok_or_else(|| anyhow::anyhow!("an empty check command"))?;
        eprintln!("keel-compat: running {check}");
        let began = Instant::now();
        let mut child = tokio::process::Command::new(program)
            .args(words)
            .arg(&worker)
            .arg(&client)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {program}: {e}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
        let wait = tokio::time::timeout_at(deadline, child.wait());
        tokio::pin!(wait);
        let result = match args.crash_leader_after_ms {
            None => wait.await,
            Some(ms) => tokio::select! {
                r = &mut wait => {
                    eprintln!("keel-compat: the check ended before the leader's crash at {ms} ms");
                    r
                }
                // The crash's moment in the scenario (not a wait for state).
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {
                    fail_over(&mut cluster).await?;
                    wait.await
                }
            },
        };
        let outcome = match result {
            Ok(Ok(status)) if status.success() => None,
            Ok(Ok(status)) => Some(format!("exited with {status}")),
            Ok(Err(e)) => Some(format!("could not be awaited: {e}")),
            Err(_) => Some(format!("still running after {} s", args.timeout_secs)),
        };
        match outcome {
            None => eprintln!("keel-compat: PASS {check} ({:.1?})", began.elapsed()),
            Some(why) => {
                eprintln!("keel-compat: FAIL {check}: {why}");
                failed.push(check.clone());
            }
        }
    }
    cluster.shutdown().await;
    anyhow::ensure!(failed.is_empty(), "failed checks: {failed:?}");
    eprintln!("keel-compat: all {} checks passed", args.checks.len());
    Ok(())
}

/// Crashes the leader, waits for another node to lead, and restarts the crashed node.
async fn fail_over(cluster: &mut keel_server::local_cluster::LocalCluster) -> anyhow::Result<()> {
    let old = cluster.wait_for_leader(keel_sdk_tests::WAIT).await?;
    let crashed_at = Instant::now();
    cluster.crash(old).await;
    let new = cluster.wait_for_leader(keel_sdk_tests::WAIT).await?;
    let elected = crashed_at.elapsed();
    cluster.restart(old).await?;
    eprintln!(
        "keel-compat: crashed leader {old}; node {new} leads after {elected:.1?}; {old} restarted"
    );
    Ok(())
}
