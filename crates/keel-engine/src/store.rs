//! The state machine's view of storage.

use std::collections::BTreeMap;

use crate::Result;

/// Read access to state-machine data: what apply reads, and what the server reads
/// (histories, mutable state, visibility) outside apply.
pub trait ReadState {
    /// Reads the current value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

/// Ordered key-value storage the engine reads and writes during apply.
///
/// # Correctness
/// - A `get` observes every `put`/`delete` made earlier through the same store, including
///   writes of the current, not yet committed batch.
/// - Writes become durable together, atomically with the applied log index, when the caller
///   commits the batch; the engine never sees a partially written batch after a restart.
pub trait StateStore: ReadState {
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]);
    /// Removes `key` (no-op if absent).
    fn delete(&mut self, key: &[u8]);
}

/// In-memory [`StateStore`] for tests and benchmarks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemStore {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.data.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }
}

impl ReadState for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.data.get(key).cloned())
    }
}

impl StateStore for MemStore {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.data.insert(key.to_vec(), value.to_vec());
    }

    fn delete(&mut self, key: &[u8]) {
        self.data.remove(key);
    }
}
