//! Admission of new runs: a start is held back (backpressure, not refusal) while its task
//! queue's workers fall behind, so that a burst of starts slows down at the client instead
//! of delaying every run that waits for a worker (a timer fired, an activity completed).
//!
//! The signal is read from this node's applied state, in replicated time (no clock of this
//! node is involved, so skewed clocks cannot trip it): the oldest workflow task of the queue
//! has waited longer than its limit — one limit for *resumed* tasks (runs in flight), one for
//! first tasks of new runs — and the queue has handed a workflow task to a poller within
//! [`DRAINED_WITHIN_MS`] (someone drains it, just not fast enough). A queue nobody polls
//! never holds starts back: its runs wait for workers, as in Temporal.
//!
//! Held starts wait in arrival order, one gate per queue; the first in line re-reads the
//! signal every [`RECHECK`] and goes ahead as soon as the queue has caught up, or when its
//! hold reaches the limit (then it is admitted anyway: a start is never refused for a
//! backlog, so callers see added latency, never an error Temporal would not give).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_engine::workflow as wf;
use keel_engine::ReadState;
use tonic::Status;

/// A queue that handed out no workflow task for this long (replicated time) has no active
/// pollers.
pub const DRAINED_WITHIN_MS: u64 = 5_000;

/// How often the first held start of a queue re-reads the signal.
pub const RECHECK: Duration = Duration::from_millis(2);

/// Limits on how long a queue's workflow tasks may wait before starts on it are held back,
/// ms (0 = no limit), and on how long one start is held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// On the oldest resumed workflow task (a run in flight waiting for a worker again).
    pub resumed_wait_ms: u64,
    /// On the oldest first workflow task of a new run.
    pub new_wait_ms: u64,
    /// Longest hold of one start (also at most half the caller's deadline).
    pub max_hold_ms: u64,
}

type Gate = Arc<tokio::sync::Mutex<()>>;

/// This node's admission policy, its per-queue gates and what it held back.
#[derive(Debug, Default)]
pub struct Admission {
    limits: Limits,
    gates: Mutex<BTreeMap<(String, String), Gate>>,
    held: AtomicU64,
    holding: AtomicU64,
}

/// Counts a start as holding while it lives.
struct Holding<'a>(&'a AtomicU64);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// A policy holding starts back while a queue's tasks wait past `limits`.
    pub fn new(limits: Limits) -> Self {
        Admission {
            limits,
            ..Default::default()
        }
    }

    /// Starts this node has held back so far.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Starts being held back right now.
    pub fn holding(&self) -> u64 {
        self.holding.load(Ordering::Relaxed)
    }

    /// Returns when a new run on `queue` may start: at once while the queue keeps up (as
    /// `state`, this node's applied state, tells), else once it has caught up or the hold
    /// reached its limit (`deadline`: the caller's, if it sent one).
    pub async fn admit(
        &self,
        state: &(impl ReadState + Sync),
        namespace: &str,
        queue: &str,
        deadline: Option<Duration>,
    ) -> Result<(), Status> {
        if self.limits.resumed_wait_ms == 0 && self.limits.new_wait_ms == 0 {
            return Ok(());
        }
        let behind = || -> Result<bool, Status> {
            let waits = wf::workflow_task_waits(state, namespace, queue).map_err(|e| {
                Status::internal(format!("reading the backlog of task queue {queue:?}: {e}"))
            })?;
            let over = overloaded(&waits, self.limits);
            if let Some((what, waited_ms, limit_ms)) = over {
                tracing::trace!(queue, what, waited_ms, limit_ms, "start held back");
            }
            Ok(over.is_some())
        };
        // Nobody held anywhere and the queue keeps up: go ahead (the common case, without
        // touching the gates).
        if self.gates.lock().expect("admission gates lock").is_empty() && !behind()? {
            return Ok(());
        }
        let gate = self.gate(namespace, queue);
        // Nobody held on this queue and it keeps up: go ahead.
        let keeps_up = match gate.try_lock() {
            Ok(_free) => !behind()?,
            Err(_) => false,
        };
        if keeps_up {
            self.forget_idle(namespace, queue, gate);
            return Ok(());
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        self.holding.fetch_add(1, Ordering::Relaxed);
        let _holding = Holding(&self.holding);
        let hold = Duration::from_millis(self.limits.max_hold_ms)
            .min(deadline.map_or(Duration::MAX, |d| d / 2));
        let until = Instant::now() + hold;
        // In line behind earlier held starts; admitted anyway once the hold is over.
        let Ok(first) = tokio::time::timeout_at(until.into(), gate.lock()).await else {
            self.forget_idle(namespace, queue, gate);
            return Ok(());
        };
        while Instant::now() < until && behind()? {
            tokio::time::sleep(RECHECK).await;
        }
        drop(first);
        self.forget_idle(namespace, queue, gate);
        Ok(())
    }

    fn gate(&self, namespace: &str, queue: &str) -> Gate {
        let mut gates = self.gates.lock().expect("admission gates lock");
        gates
            .entry((namespace.to_string(), queue.to_string()))
            .or_default()
            .clone()
    }

    /// Drops a queue's gate once nobody holds or waits on it (the map stays as small as the
    /// set of queues with starts in progress).
    fn forget_idle(&self, namespace: &str, queue: &str, gate: Gate) {
        let mut gates = self.gates.lock().expect("admission gates lock");
        // The map's reference and ours: nobody else is using it.
        if Arc::strong_count(&gate) == 2 {
            gates.remove(&(namespace.to_string(), queue.to_string()));
        }
    }
}

/// Which task waited past its limit while the queue is being drained: (what, waited, limit).
fn overloaded(w: &wf::WorkflowTaskWaits, limits: Limits) -> Option<(&'static str, u64, u64)> {
    if w.since_dispatch_ms? > DRAINED_WITHIN_MS {
        return None;
    }
    let over = |waited: Option<u64>, limit: u64| waited.filter(|&ms| limit > 0 && ms > limit);
    if let Some(ms) = over(w.oldest_resumed_ms, limits.resumed_wait_ms) {
        return Some(("a resumed workflow task", ms, limits.resumed_wait_ms));
    }
    over(w.oldest_new_ms, limits.new_wait_ms).map(|ms| {
        (
            "the first workflow task of a new run",
            ms,
            limits.new_wait_ms,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits(resumed: Option<u64>, new: Option<u64>, since: Option<u64>) -> wf::WorkflowTaskWaits {
        wf::WorkflowTaskWaits {
            oldest_resumed_ms: resumed,
            oldest_new_ms: new,
            since_dispatch_ms: since,
        }
    }

    const BOTH: Limits = Limits {
        resumed_wait_ms: 250,
        new_wait_ms: 1_000,
        max_hold_ms: 2_000,
    };

    #[test]
    fn only_a_drained_queue_whose_oldest_task_waited_past_its_limit_is_behind() {
        // Empty backlogs, or heads older than the records.
        assert_eq!(overloaded(&waits(None, None, Some(0)), BOTH), None);
        // Within the limits.
        assert_eq!(
            overloaded(&waits(Some(250), Some(1_000), Some(0)), BOTH),
            None
        );
        // Over one while pollers take tasks: behind, naming which and the wait.
        assert_eq!(
            overloaded(&waits(Some(251), None, Some(10)), BOTH),
            Some(("a resumed workflow task", 251, 250))
        );
        assert_eq!(
            overloaded(&waits(None, Some(1_001), Some(DRAINED_WITHIN_MS)), BOTH),
            Some(("the first workflow task of a new run", 1_001, 1_000))
        );
        // A limit of 0 is no limit.
        let resumed_only = Limits {
            new_wait_ms: 0,
            ..BOTH
        };
        assert_eq!(
            overloaded(&waits(None, Some(60_000), Some(0)), resumed_only),
            None
        );
        // Nobody polled lately, or ever: the runs wait for workers, starts go ahead.
        assert_eq!(
            overloaded(
                &waits(Some(60_000), Some(60_000), Some(DRAINED_WITHIN_MS + 1)),
                BOTH
            ),
            None
        );
        assert_eq!(
            overloaded(&waits(Some(60_000), Some(60_000), None), BOTH),
            None
        );
    }
}
