//! Leader drivers: the timer driver fires due deadlines (user timers, task and activity
//! timeouts, retry backoffs, run timeouts, retention) by proposing `FireDeadline` commands.
//! They act only by proposing; apply decides (and never fires early in replicated time).
//! Every node runs the loop, and only the current leader acts, so a new leader takes over
//! from replicated state alone.

use std::time::Duration;

use keel_engine::command::Kind;
use keel_engine::keys::{self, KeyKind};
use keel_engine::workflow::{DeadlineKind, FireDeadline, RunKey};
use keel_engine::Command;
use keel_raft::RaftNode;
use tokio::sync::watch;

/// Longest the leader waits between looks for due deadlines (a deadline armed during the
/// wait may be this late).
const TICK: Duration = Duration::from_millis(20);
/// Shortest wait between looks, so a stream of deadlines a millisecond apart is fired in
/// small batches rather than one proposal each.
const MIN_WAIT: Duration = Duration::from_millis(1);
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
                // A run timeout may start a retry: its run id is made here, by the proposer.
                next_run_id: if i32::from(t.kind) == DeadlineKind::RunTimeout as i32 {
                    keel_frontend::service::new_uuid()
                } else {
                    String::new()
                },
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
    let mut wait = TICK;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if raft.current_leader() != Some(raft.id()) {
            floor_ms = 0;
            wait = TICK;
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
        wait = if !fired {
            TICK // the proposal failed (leadership moving?): retry at the usual pace
        } else {
            let after = now_ms();
            wait_before_next_look(after, next_deadline(&raft, now, after), n < WINDOW)
        };
    }
}

/// The earliest deadline after `fired_up_to` that falls due before the next full tick
/// from `now_ms`, if any.
fn next_deadline(raft: &RaftNode, fired_up_to: u64, now_ms: u64) -> Option<u64> {
    let horizon = now_ms + TICK.as_millis() as u64;
    let rows = raft
        .state()
        .scan_range(
            &keys::timers_due_end(fired_up_to),
            &keys::timers_due_end(horizon),
            1,
        )
        .ok()?;
    rows.first()
        .and_then(|(k, _)| keys::parse_timer(k))
        .map(|t| t.fire_at_ms)
}

/// How long the driver sleeps: until the next deadline when one falls due within a tick
/// (so a timer fires at its deadline, not up to a tick late), at once when this look left
/// due deadlines unread (a full window), else a full tick.
fn wait_before_next_look(now_ms: u64, next: Option<u64>, caught_up: bool) -> Duration {
    if !caught_up {
        return MIN_WAIT;
    }
    match next {
        Some(at) => Duration::from_millis(at.saturating_sub(now_ms)).clamp(MIN_WAIT, TICK),
        None => TICK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_wakes_at_the_next_deadline_within_a_tick() {
        assert_eq!(wait_before_next_look(1_000, None, true), TICK);
        assert_eq!(
            wait_before_next_look(1_000, Some(1_007), true),
            Duration::from_millis(7)
        );
        assert_eq!(
            wait_before_next_look(1_000, Some(1_000), true),
            MIN_WAIT,
            "due now"
        );
        assert_eq!(
            wait_before_next_look(1_000, Some(990), true),
            MIN_WAIT,
            "overdue"
        );
        assert_eq!(wait_before_next_look(1_000, Some(5_000), true), TICK);
        assert_eq!(
            wait_before_next_look(1_000, Some(1_007), false),
            MIN_WAIT,
            "deadlines left unfired are looked at again at once"
        );
    }
}
