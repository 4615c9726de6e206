//! A bounded read cache of the apply path: the values of state-machine keys that apply has
//! read (a run's mutable state, queue cursors, namespace records, the replicated clock), kept
//! equal to the database by writing each committed batch through it.
//!
//! Transparent to determinism: it holds exactly what RocksDB holds for its keys, so apply
//! reads the same bytes with or without it; only the cost differs. It lives and dies with
//! the [`super::StateMachine`] (empty after a restart) and is cleared whenever the state is
//! replaced wholesale (a snapshot install). Only the apply path uses it: apply is one task,
//! so nothing else ever sees a value before its batch is in RocksDB.

use std::collections::HashMap;

/// Default bound on the bytes of cached keys and values (per node).
pub const DEFAULT_CAPACITY_BYTES: usize = 2 << 20;

pub struct ApplyCache {
    map: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
    capacity: usize,
}

impl ApplyCache {
    pub fn new(capacity_bytes: usize) -> Self {
        ApplyCache {
            map: HashMap::new(),
            bytes: 0,
            capacity: capacity_bytes,
        }
    }

    /// The committed value of `key`, if cached.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Records a value just read from the database. When full, everything is dropped (the
    /// working set refills it; a simple bound beats bookkeeping per entry here).
    pub fn remember(&mut self, key: &[u8], value: &[u8]) {
        if key.len() + value.len() > self.capacity {
            return;
        }
        if self.bytes + key.len() + value.len() > self.capacity {
            self.clear();
        }
        self.bytes += key.len() + value.len();
        if let Some(old) = self.map.insert(key.to_vec(), value.to_vec()) {
            self.bytes -= key.len() + old.len();
        }
    }

    /// Applies one committed write: a cached key takes its new value (or leaves, if deleted);
    /// keys apply never read stay out.
    pub fn write_through(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Some(cached) = self.map.get_mut(key) else {
            return;
        };
        match value {
            Some(v) if key.len() + v.len() <= self.capacity => {
                self.bytes = self.bytes - cached.len() + v.len();
                cached.clear();
                cached.extend_from_slice(v);
            }
            _ => {
                let old = self.map.remove(key).expect("present");
                self.bytes -= key.len() + old.len();
            }
        }
        if self.bytes > self.capacity {
            self.clear();
        }
    }

    /// Forgets everything (the state was replaced).
    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_keeps_read_keys_current_and_stays_within_its_bound() {
        let mut c = ApplyCache::new(32);
        c.remember(b"ms/1", b"v1");
        assert_eq!(c.get(b"ms/1"), Some(&b"v1"[..]));
        // Written keys that apply read take the new value; others stay out.
        c.write_through(b"ms/1", Some(b"v2"));
        c.write_through(b"hist/1", Some(b"event"));
        assert_eq!(c.get(b"ms/1"), Some(&b"v2"[..]));
        assert_eq!(c.get(b"hist/1"), None);
        // A delete removes it.
        c.write_through(b"ms/1", None);
        assert_eq!(c.get(b"ms/1"), None);
        assert_eq!(c.bytes, 0);
        // Past the bound it starts over; a value larger than the bound is never kept.
        c.remember(b"a", &[0; 20]);
        c.remember(b"b", &[0; 20]);
        assert_eq!(
            (c.get(b"a"), c.get(b"b").map(<[u8]>::len)),
            (None, Some(20))
        );
        c.remember(b"big", &[0; 40]);
        assert_eq!(c.get(b"big"), None);
        assert!(c.bytes <= 32);
    }
}
