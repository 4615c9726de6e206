//! Leader drivers: the timer driver fires due deadlines (user timers, task and activity
//! timeouts, retry backoffs, run timeouts, retention) by proposing `FireDeadline` commands.
//! They act only by proposing; apply decides (and never fires early in replicated time).
//! Every node runs the loop, and only the current leader acts, so a new leader takes over
//! from replicated state alone.

use std::time::Duration;

use keel_engine::command::Kind;
use keel_engine::keys::{self, KeyKind};
use keel_engine::workflow::{FireDeadline, RunKey};
use keel_engine::Command;
use keel_raft::RaftNode;
use tokio::sync::watch;

/// How often the leader looks for due deadlines.
const TICK: Duration = Duration::from_millis(20);
/// Most deadlines read (and fired) per tick: the driver never loads the whole index.
const WINDOW: usize = 512;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The due deadlines at the head of the timers index, as commands. Reads only keys due by
/// `now_ms` (the index sorts by fire time), never the pending future.
fn due_commands(raft: &RaftNode, now_ms: u64) -> Vec<Command> {
    let rows = match raft.state().scan_range(
        &KeyKind::Timer.prefix(),
        &keys::timers_due_end(now_ms),
        WINDOW,
    ) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "timer driver could not read the timers index");
            return Vec::new();
        }
    };
    rows.iter()
        .filter_map(|(k, _)| keys::parse_timer(k))
        .map(|t| Command {
            kind: Some(Kind::FireDeadline(FireDeadline {
                run: Some(RunKey {
                    namespace: t.namespace,
                    workflow_id: t.workflow_id,
                    run_id: t.run_id,
                }),
                kind: t.kind as i32,
                event_id: t.event_id,
                attempt: t.attempt,
                name: t.name,
            })),
        })
        .collect()
}

/// Runs until shutdown.
pub async fn run_timer_driver(raft: RaftNode, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        if raft.current_leader() != Some(raft.id()) {
            continue;
        }
        let due = due_commands(&raft, now_ms());
        if due.is_empty() {
            continue;
        }
        let n = due.len();
        if let Err(e) = raft.propose(due).await {
            tracing::debug!(error = %e, deadlines = n, "firing deadlines failed; retrying next tick");
        }
    }
}
