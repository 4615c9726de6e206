//! Who polled which task queue on this node, and when: the pollers `DescribeTaskQueue` lists
//! (Temporal lists those seen in the last few minutes). Node-local, like the polls themselves;
//! the backlog it reports beside them is the replicated, cluster-wide one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How long a poller stays listed after its last poll (Temporal: 5 minutes).
pub const POLLER_TTL: Duration = Duration::from_secs(300);

type Key = (String, String, u8);
/// Identity → when it last polled (monotonic, for expiry; wall, for the answer).
type LastSeen = BTreeMap<String, (Instant, SystemTime)>;

#[derive(Default)]
pub struct Pollers {
    seen: Mutex<BTreeMap<Key, LastSeen>>,
}

impl Pollers {
    /// Records a poll of `queue` for tasks of `kind` by `identity`.
    pub fn seen(&self, namespace: &str, queue: &str, kind: u8, identity: &str) {
        let mut seen = self.seen.lock().expect("pollers lock");
        let now = Instant::now();
        let by = seen
            .entry((namespace.to_string(), queue.to_string(), kind))
            .or_default();
        by.insert(identity.to_string(), (now, SystemTime::now()));
        by.retain(|_, (at, _)| now.duration_since(*at) < POLLER_TTL);
    }

    /// The pollers of a queue seen within [`POLLER_TTL`], most recent first.
    pub fn recent(&self, namespace: &str, queue: &str, kind: u8) -> Vec<(String, SystemTime)> {
        let seen = self.seen.lock().expect("pollers lock");
        let now = Instant::now();
        let mut out: Vec<(String, SystemTime)> = seen
            .get(&(namespace.to_string(), queue.to_string(), kind))
            .into_iter()
            .flatten()
            .filter(|(_, (at, _))| now.duration_since(*at) < POLLER_TTL)
            .map(|(id, (_, wall))| (id.clone(), *wall))
            .collect();
        out.sort_by_key(|x| std::cmp::Reverse(x.1));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pollers_are_listed_per_queue_and_kind() {
        let p = Pollers::default();
        p.seen("default", "tq", 1, "worker-a");
        p.seen("default", "tq", 1, "worker-b");
        p.seen("default", "tq", 2, "worker-a");
        p.seen("default", "other", 1, "worker-c");
        let wf: Vec<String> = p
            .recent("default", "tq", 1)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(wf.len(), 2);
        assert!(wf.contains(&"worker-a".to_string()) && wf.contains(&"worker-b".to_string()));
        assert_eq!(p.recent("default", "tq", 2).len(), 1);
        assert!(p.recent("elsewhere", "tq", 1).is_empty());
    }
}
