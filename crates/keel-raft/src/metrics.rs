//! Metrics of the replication layer (Prometheus). Names live here and nowhere else.
//!
//! They are process-wide: one `keel server` process is one node. (An in-process test
//! cluster therefore sums its nodes.)

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

struct Metrics {
    log_append_seconds: Histogram,
    wal_fsync_seconds: Histogram,
    wal_fsync_batch_appends: Histogram,
    apply_batch_seconds: Histogram,
    proposal_seconds: Histogram,
    proposal_batch_commands: Histogram,
    applied_entries: Counter,
    snapshot_build_seconds: Histogram,
    peer_connections_opened: Counter,
    peer_tls_refused: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    log_append_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
    wal_fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
    wal_fsync_batch_appends: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
    apply_batch_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 16)),
    proposal_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
    proposal_batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
    applied_entries: Counter::default(),
    snapshot_build_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
    peer_connections_opened: Counter::default(),
    peer_tls_refused: Counter::default(),
});

/// Registers this crate's metrics under the `raft` prefix: in a registry prefixed `keel`
/// (the node's endpoint) they are `keel_raft_*`.
pub fn register(registry: &mut Registry) {
    let m = &*METRICS;
    let r = registry.sub_registry_with_prefix("raft");
    r.register(
        "log_append_seconds",
        "Time from a log append to its fsync completing",
        m.log_append_seconds.clone(),
    );
    r.register(
        "wal_fsync_seconds",
        "Duration of one WAL fsync",
        m.wal_fsync_seconds.clone(),
    );
    r.register(
        "wal_fsync_batch_appends",
        "Log appends made durable by one WAL fsync (group commit)",
        m.wal_fsync_batch_appends.clone(),
    );
    r.register(
        "apply_batch_seconds",
        "Time to apply one batch of committed entries",
        m.apply_batch_seconds.clone(),
    );
    r.register(
        "proposal_seconds",
        "Time from the leader proposing a batch of commands to their applied responses \
         (replication, fsyncs, commit and apply)",
        m.proposal_seconds.clone(),
    );
    r.register(
        "proposal_batch_commands",
        "Client commands carried by one proposed log entry",
        m.proposal_batch_commands.clone(),
    );
    r.register(
        "applied_entries",
        "Entries applied to the state machine",
        m.applied_entries.clone(),
    );
    r.register(
        "snapshot_build_seconds",
        "Time to build one snapshot",
        m.snapshot_build_seconds.clone(),
    );
    r.register(
        "peer_connections_opened",
        "Raw peer-transport connections (AppendEntries, Vote) this node opened; a steady \
         climb means calls are timing out or peers restarting",
        m.peer_connections_opened.clone(),
    );
    r.register(
        "peer_tls_refused",
        "Peer connections whose TLS handshake failed, either side (a certificate of another \
         CA or none, a host name the certificate does not carry, plain text on a TLS port)",
        m.peer_tls_refused.clone(),
    );
}

/// Raw peer-transport connections opened by this process so far.
pub fn peer_connections_opened() -> u64 {
    METRICS.peer_connections_opened.get()
}

pub(crate) fn peer_connection_opened() {
    METRICS.peer_connections_opened.inc();
}

pub(crate) fn peer_tls_refused() {
    METRICS.peer_tls_refused.inc();
}

pub(crate) fn log_append(d: Duration) {
    METRICS.log_append_seconds.observe(d.as_secs_f64());
}

pub(crate) fn wal_fsync(d: Duration, appends: usize) {
    METRICS.wal_fsync_seconds.observe(d.as_secs_f64());
    METRICS.wal_fsync_batch_appends.observe(appends as f64);
}

pub(crate) fn apply_batch(d: Duration, entries: usize) {
    METRICS.apply_batch_seconds.observe(d.as_secs_f64());
    METRICS.applied_entries.inc_by(entries as u64);
}

pub(crate) fn proposal(d: Duration, commands: usize) {
    METRICS.proposal_seconds.observe(d.as_secs_f64());
    METRICS.proposal_batch_commands.observe(commands as f64);
}

pub(crate) fn snapshot_built(d: Duration) {
    METRICS.snapshot_build_seconds.observe(d.as_secs_f64());
}
