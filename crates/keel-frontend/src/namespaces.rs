//! Namespace records as this node has applied them, decoded once: every request names a
//! namespace, and reading and decoding its record per request cost ~1.5% of a leader's CPU.
//! A cached record is used while its key's notification counter
//! ([`keel_raft::watch::Watchers::version`]) still reads what it read before the record was:
//! the engine notifies the key on every write of the record (`Effect::NamespaceChanged`) and a
//! snapshot install notifies everything, so a changed record is re-read on its next use. Only
//! namespaces that exist are cached (a bounded set).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use keel_engine::workflow as wf;
use keel_raft::RaftNode;

struct Cached {
    record: wf::NamespaceRecord,
    version: Arc<AtomicU64>,
    seen: u64,
}

#[derive(Default)]
pub(crate) struct Namespaces {
    cached: Mutex<HashMap<String, Cached>>,
}

impl Namespaces {
    /// The record of `name` as of this node's applied state; `None` if there is none.
    pub(crate) fn get(
        &self,
        node: &RaftNode,
        name: &str,
    ) -> keel_engine::Result<Option<wf::NamespaceRecord>> {
        if let Some(c) = self.cached.lock().expect("namespace cache lock").get(name) {
            if c.version.load(Ordering::Acquire) == c.seen {
                return Ok(Some(c.record.clone()));
            }
        }
        // The counter first: a write after this load moves it, and the copy is re-read.
        let version = node.watchers().version(&wf::watch_namespace(name));
        let seen = version.load(Ordering::Acquire);
        let Some(record) = wf::read_namespace(node.state(), name)? else {
            return Ok(None);
        };
        self.cached.lock().expect("namespace cache lock").insert(
            name.to_string(),
            Cached {
                record: record.clone(),
                version,
                seen,
            },
        );
        Ok(Some(record))
    }
}
