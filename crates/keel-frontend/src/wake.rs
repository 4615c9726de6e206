//! Waiting for applied changes by watch key (`keel_raft::watch`): a long poll arms its
//! wake-ups, reads state, and sleeps only if nothing it needs is there, so a change between
//! the read and the sleep is never missed and unrelated applies never wake it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use keel_raft::RaftNode;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// The notifiers of a set of watch keys.
pub struct Watch {
    notifies: Vec<Arc<Notify>>,
}

/// Armed wake-ups: created before reading state, awaited after.
pub struct Armed<'a> {
    futures: Vec<Pin<Box<Notified<'a>>>>,
}

impl Watch {
    pub fn new(node: &RaftNode, keys: &[Vec<u8>]) -> Watch {
        Watch {
            notifies: keys.iter().map(|k| node.watchers().watch(k)).collect(),
        }
    }

    /// Arms the wake-ups; call before reading the state they guard.
    pub fn arm(&self) -> Armed<'_> {
        let mut futures: Vec<Pin<Box<Notified<'_>>>> = self
            .notifies
            .iter()
            .map(|n| Box::pin(n.notified()))
            .collect();
        for f in &mut futures {
            f.as_mut().enable();
        }
        Armed { futures }
    }
}

impl Armed<'_> {
    /// Sleeps until one of the keys is notified (since arming) or `deadline`.
    pub async fn wait(self, deadline: Instant) {
        let _ = tokio::time::timeout_at(deadline.into(), futures::future::select_all(self.futures))
            .await;
    }
}
