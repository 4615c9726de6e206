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
/// A tick scans from this far behind the previous tick's clock, not from the index's start:
/// fired deadlines leave RocksDB tombstones at the head of the index (until compaction), and
/// re-reading all of them 50 times a second is what made long benchmark runs slow down. A
/// deadline is armed at its entry's time plus its duration, so it lands behind the floor only
/// when apply lags by more than this; the periodic full scan picks such stragglers up.
const FLOOR_SLACK_MS: u64 = 1_000;
/// How often a tick scans the index from its start anyway (and after gaining leadership).
const FULL_SCAN_EVERY: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The due deadlines with `from_ms <= fire time <= now_ms`, as commands (at most
/// [`WINDOW`]). Reads only that part of the index (it sorts by fire time), never the future.
fn due_commands(raft: &RaftNode, from_ms: u64, now_ms: u64) -> Vec<Command> {
    let start = match from_ms {
        0 => KeyKind::Timer.prefix().to_vec(),
        t => keys::timers_due_end(t - 1),
    };
    let rows = match raft
        .state()
        .scan_range(&start, &keys::timers_due_end(now_ms), WINDOW)
    {
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
    // Scan floor (fire time); 0 = from the index's start.
    let mut floor_ms = 0;
    let mut last_full = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        if raft.current_leader() != Some(raft.id()) {
            floor_ms = 0;
            continue;
        }
        if last_full.elapsed() >= FULL_SCAN_EVERY {
            floor_ms = 0;
        }
        if floor_ms == 0 {
            last_full = std::time::Instant::now();
        }
        let now = now_ms();
        let due = due_commands(&raft, floor_ms, now);
        let n = due.len();
        let fired = n == 0 || raft.propose(due).await.map_err(|e| {
            tracing::debug!(error = %e, deadlines = n, "firing deadlines failed; retrying next tick");
        }).is_ok();
        // Everything due before `now` was read and fired: the next tick may start near it.
        if fired && n < WINDOW {
            floor_ms = now.saturating_sub(FLOOR_SLACK_MS).max(1);
        }
    }
}
