//! Wake-ups keyed by what an apply changed. The state machine notifies the key of every
//! effect an applied batch had (once the batch is readable); long polls wait on the keys they
//! care about instead of re-reading state after every apply.
//!
//! Keys are opaque bytes chosen by the engine (`keel_engine::workflow::Effect::watch_keys`).
//! Entries are weak: a key nobody waits on costs nothing after its last waiter leaves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// The registry of keys someone waits on.
#[derive(Default)]
pub struct Watchers {
    keys: Mutex<Keys>,
}

/// Both tables under one lock: a notify (once per changed key in every apply) takes it once.
#[derive(Default)]
struct Keys {
    waiters: HashMap<Vec<u8>, Weak<Notify>>,
    /// Notification counters of keys whose guarded state someone caches ([`Watchers::version`]).
    versions: HashMap<Vec<u8>, Arc<AtomicU64>>,
}

impl Watchers {
    /// The notifier of `key`. Enable a `notified()` future on it *before* reading the state it
    /// guards, so no change between the read and the wait is missed.
    pub fn watch(&self, key: &[u8]) -> Arc<Notify> {
        let map = &mut self.keys.lock().expect("watchers lock").waiters;
        if let Some(n) = map.get(key).and_then(Weak::upgrade) {
            return n;
        }
        // Drop dead entries now and then so the map stays the size of the live waiters.
        if map.len() >= 1_024 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let n = Arc::new(Notify::new());
        map.insert(key.to_vec(), Arc::downgrade(&n));
        n
    }

    /// A counter of `key`'s notifications (and of every [`Self::notify_all`]), for caching
    /// the state the key guards: load it *before* reading that state; the cached copy is
    /// current while the counter still reads the loaded value. Kept for the node's lifetime,
    /// so only for keys of a bounded set (namespaces).
    pub fn version(&self, key: &[u8]) -> Arc<AtomicU64> {
        let mut keys = self.keys.lock().expect("watchers lock");
        keys.versions.entry(key.to_vec()).or_default().clone()
    }

    /// Wakes every waiter of `key`.
    pub fn notify(&self, key: &[u8]) {
        let n = {
            let mut keys = self.keys.lock().expect("watchers lock");
            if let Some(v) = keys.versions.get(key) {
                v.fetch_add(1, Ordering::Release);
            }
            match keys.waiters.get(key).map(Weak::upgrade) {
                Some(Some(n)) => Some(n),
                Some(None) => {
                    keys.waiters.remove(key);
                    None
                }
                None => None,
            }
        };
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter (the whole state changed, e.g. a snapshot was installed).
    pub fn notify_all(&self) {
        let live: Vec<Arc<Notify>> = {
            let keys = self.keys.lock().expect("watchers lock");
            for v in keys.versions.values() {
                v.fetch_add(1, Ordering::Release);
            }
            keys.waiters.values().filter_map(Weak::upgrade).collect()
        };
        for n in live {
            n.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_notify_wakes_the_waiters_of_its_key_only() {
        let w = Arc::new(Watchers::default());
        let a = w.watch(b"a");
        let b = w.watch(b"b");
        let wa = a.notified();
        let wb = b.notified();
        tokio::pin!(wa, wb);
        wa.as_mut().enable();
        wb.as_mut().enable();
        w.notify(b"a");
        tokio::time::timeout(Duration::from_secs(5), wa)
            .await
            .expect("the waiter of a wakes");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), wb)
                .await
                .is_err(),
            "the waiter of b sleeps on"
        );
    }

    #[test]
    fn a_version_counts_the_notifies_of_its_key_and_of_everything() {
        let w = Watchers::default();
        let a = w.version(b"a");
        assert!(Arc::ptr_eq(&a, &w.version(b"a")), "one counter per key");
        let before = a.load(Ordering::Acquire);
        w.notify(b"b");
        assert_eq!(a.load(Ordering::Acquire), before, "another key's notify");
        w.notify(b"a");
        assert_eq!(a.load(Ordering::Acquire), before + 1);
        w.notify_all();
        assert_eq!(a.load(Ordering::Acquire), before + 2);
    }

    #[test]
    fn entries_die_with_their_last_waiter() {
        let w = Watchers::default();
        let a = w.watch(b"a");
        drop(a);
        w.notify(b"a"); // dead entry: removed, no panic
        assert!(!w.keys.lock().unwrap().waiters.contains_key(&b"a"[..]));
    }
}
