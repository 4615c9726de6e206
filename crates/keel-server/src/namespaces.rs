//! The `default` namespace, which the official SDKs expect to exist.
//!
//! Every node, once started, makes sure `default` is registered: it checks its local state
//! and, if the namespace is missing, proposes `RegisterNamespace` until that commits. The
//! command is idempotent in the engine (a second registration answers AlreadyExists), so
//! several nodes racing, or a node crashing mid-way, cannot register it twice.

use std::time::Duration;

use keel_engine::command::Kind;
use keel_engine::workflow::{read_namespace, RegisterNamespace};
use keel_engine::Command;
use keel_frontend::service::new_uuid;
use keel_raft::RaftNode;
use tokio::sync::watch;

/// Name of the namespace created at cluster start.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Retention of closed runs in the `default` namespace, ms (3 days).
pub const DEFAULT_RETENTION_MS: u64 = 3 * 24 * 3_600 * 1_000;
/// Pause between attempts while no leader can commit the registration.
const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// Registers `default` unless this node's state already has it; returns when it exists or
/// on shutdown.
pub async fn ensure_default(raft: RaftNode, mut shutdown: watch::Receiver<bool>) {
    loop {
        if matches!(read_namespace(raft.state(), DEFAULT_NAMESPACE), Ok(Some(_))) {
            return;
        }
        let cmd = Command {
            kind: Some(Kind::RegisterNamespace(RegisterNamespace {
                name: DEFAULT_NAMESPACE.into(),
                id: new_uuid(),
                description: "created at cluster start".into(),
                retention_ms: DEFAULT_RETENTION_MS,
            })),
        };
        match raft.propose(vec![cmd]).await {
            Ok(_) => {
                tracing::info!("namespace {DEFAULT_NAMESPACE} is registered");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "registering namespace {DEFAULT_NAMESPACE}; will retry")
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(RETRY_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_version_7_and_distinct() {
        let a = super::new_uuid();
        let b = super::new_uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!("89ab".contains(&a[19..20]));
    }
}
