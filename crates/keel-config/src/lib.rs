//! Keel node configuration: one TOML file per node (see `cluster-configs/`).
//!
//! [`NodeConfig::load`] parses (kebab-case keys, unknown fields rejected) and then
//! [`NodeConfig::validate`]s, reporting every problem with the field it concerns. Every
//! field documents its unit and default.
//!
//! This crate must not depend on any other Keel crate, openraft, tonic or RocksDB: it is
//! plain data shared by the server and the CLI.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {path}:\n  - {}", problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// One node's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeConfig {
    /// Name of the cluster. Written into the data dir on first start; a data dir of another
    /// cluster, and peer RPCs carrying another cluster id, are refused. Required.
    pub cluster_id: String,
    /// This node's id, unique in the cluster, > 0. Required.
    pub node_id: u64,
    /// Directory of this node's RocksDB and snapshots. Relative paths are resolved against the
    /// working directory. Overridable with `keel server --data-dir`. Required.
    pub data_dir: PathBuf,
    /// Listening addresses.
    pub network: NetworkConfig,
    /// The cluster's initial voters. On the first start of the node with the lowest id in
    /// this list, membership is initialized with exactly these nodes; later starts never
    /// re-initialize. Empty for a node that will join later as a learner. Default: empty.
    #[serde(default)]
    pub members: Vec<MemberConfig>,
    /// Raft timing, snapshot and log-purge policy.
    #[serde(default)]
    pub raft: RaftConfig,
    /// Peer RPC transport settings.
    #[serde(default)]
    pub rpc: RpcConfig,
    /// The node process's async runtime.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// TLS on the client port. Absent: plain text (the default for local runs).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Mutual TLS on the peer port. Absent: plain text.
    #[serde(default)]
    pub peer_tls: PeerTlsConfig,
    /// API keys the client port requires (`authorization: Bearer <key>`), each scoped to
    /// namespaces. Empty (the default): no key needed.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// When starts are refused to protect the runs already in flight.
    #[serde(default)]
    pub admission: AdmissionConfig,
    /// Switches meant for tests only.
    #[serde(default)]
    pub testing: TestingConfig,
}

/// Admission of new workflow runs (docs/configuration.md "Admission").
///
/// A StartWorkflowExecution is held back (answered later, never refused) while its task
/// queue's workers fall behind: the oldest waiting workflow task has waited longer than its
/// limit, although the queue's pollers have taken tasks in the last seconds. A queue nobody
/// polls never holds starts (its runs wait for workers, as in Temporal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AdmissionConfig {
    /// Limit on the wait of the oldest *resumed* workflow task (a run that made progress and
    /// waits for a worker again: a timer fired, an activity completed, a signal came), ms;
    /// 0 = none. Default: 25.
    pub max_resumed_task_wait_ms: u64,
    /// Limit on the wait of the oldest first workflow task of a new run, ms; 0 = none.
    /// Default: 25.
    pub max_new_task_wait_ms: u64,
    /// Longest hold of one start, ms (also at most half the caller's deadline); it then
    /// goes ahead. Default: 2000.
    pub max_start_hold_ms: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_resumed_task_wait_ms: 25,
            max_new_task_wait_ms: 25,
            max_start_hold_ms: 2_000,
        }
    }
}

/// TLS on the client port (and on the shared client address, which serves the same): PEM
/// files, relative paths resolved against the working directory. Either `cert` and `key`
/// are both set (TLS on) or neither; a node refuses to start with half a section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TlsConfig {
    /// The node's certificate chain. Default: absent.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The certificate's private key. Default: absent.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The cluster's CA: with `require-client-cert`, clients must present a certificate it
    /// signed (mutual TLS); the node's HTTP port also verifies the client port with it.
    /// Default: absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `ca`. Default: false.
    #[serde(default)]
    pub require_client_cert: bool,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }
}

/// Mutual TLS on the peer port: every connection between nodes, both ways, presents a
/// certificate of the cluster's CA, and a dialled node's certificate must also name the host
/// of its `peer-addr` (an IP address or DNS name in its subject alternative names). A node
/// without such a certificate cannot join, vote or read. All three files or none; the
/// certificate is used as server and client certificate (both extended key usages).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PeerTlsConfig {
    /// The node's certificate chain. Default: absent.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The certificate's private key. Default: absent.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The cluster's CA, which peers' certificates must chain to. Default: absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// One API key of the client port. Only the key's SHA-256 is configured (`keel api-key
/// create` prints a new key and its entry), so a leaked config file leaks no key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key (appears in refusals and logs). Required, unique.
    pub name: String,
    /// SHA-256 of the key, 64 lowercase hex digits. Required, unique.
    pub sha256: String,
    /// Namespaces the key may use; `"*"`: all, and the cluster-wide RPCs (listing or
    /// registering namespaces, cluster administration). Required, not empty.
    pub namespaces: Vec<String>,
}

impl PeerTlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }
}

/// The node process's async runtime (`keel server` only; in-process test clusters share their
/// test's runtime).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads of the node's runtime; 0 means one per CPU. Set it to the node's share
    /// of the machine when several nodes share one (the local 3-node configs use 1 on the
    /// 2-core reference machine): more runnable threads than cores cost context switches on
    /// every hand-off. Default: 0.
    pub worker_threads: usize,
}

/// Most worker threads a node's runtime may be given.
pub const MAX_WORKER_THREADS: usize = 1024;

/// Listening addresses of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NetworkConfig {
    /// Address for peer traffic (Raft replication, leader forwarding), `host:port`. Required.
    pub peer_addr: String,
    /// Address for clients and operators (admin, kv, health, reflection), `host:port`. Required.
    pub client_addr: String,
    /// Address of the Prometheus `/metrics` HTTP endpoint, `host:port`; absent disables it.
    /// Default: absent.
    #[serde(default)]
    pub metrics_addr: Option<String>,
    /// A client address several nodes of one machine share, `host:port` (e.g. Temporal's
    /// default `127.0.0.1:7233`): each node also listens there with `SO_REUSEPORT`, so the
    /// kernel spreads new connections over the live nodes and a dead node's listener goes
    /// with it. Serves exactly what `client-addr` serves. Default: absent.
    #[serde(default)]
    pub shared_client_addr: Option<String>,
    /// Address of the HTTP port, `host:port`: Temporal's HTTP API (`/api/v1/…`), Keel's
    /// cluster routes (`/api/v1/keel/…`) and the web UI (`/`). Absent disables it.
    /// Default: absent.
    #[serde(default)]
    pub http_addr: Option<String>,
    /// An HTTP address several nodes of one machine share with `SO_REUSEPORT` (as
    /// `shared-client-addr`; Temporal's HTTP default is `127.0.0.1:7243`). Default: absent.
    #[serde(default)]
    pub shared_http_addr: Option<String>,
}

/// One initial cluster member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MemberConfig {
    /// The member's node id. Required.
    pub node_id: u64,
    /// The member's `network.peer-addr`. Required.
    pub peer_addr: String,
    /// The member's `network.client-addr`. Required.
    pub client_addr: String,
}

/// Raft settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RaftConfig {
    /// Leader heartbeat interval, ms. Default: 100.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout, ms. Default: 600.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout, ms. Default: 1200.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot once this many entries were applied since the last one, entries.
    /// Default: 20000.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind the latest snapshot (so briefly lagging followers
    /// catch up from the log, not a snapshot), entries. Default: 5000.
    pub keep_entries_after_snapshot: u64,
    /// Entries purged per purge step, entries. Default: 1024.
    pub purge_batch_size: u64,
    /// Most entries sent in one AppendEntries RPC, entries. Default: 512.
    pub max_append_entries: u64,
    /// Size of one snapshot chunk on the wire, bytes. Default: 1048576 (1 MiB).
    pub snapshot_chunk_bytes: u64,
    /// Longest a proposal or read waits for a leader to be known before it fails with
    /// UNAVAILABLE, ms. Default: 2000.
    pub leader_wait_ms: u64,
    /// Most client commands batched into one log entry, commands. Default: 256.
    pub max_batch_commands: u64,
    /// Batches the leader may have proposed but not yet committed, batches. A few batches in
    /// flight keep the log and the followers busy while each batch stays large (openraft
    /// merges appends waiting for one fsync). Default: 3.
    pub max_in_flight_batches: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 600,
            election_timeout_max_ms: 1200,
            snapshot_every_entries: 20_000,
            keep_entries_after_snapshot: 5_000,
            purge_batch_size: 1024,
            max_append_entries: 512,
            snapshot_chunk_bytes: 1 << 20,
            leader_wait_ms: 2_000,
            max_batch_commands: 256,
            max_in_flight_batches: 3,
        }
    }
}

/// Peer RPC transport settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RpcConfig {
    /// TCP connect timeout to a peer, ms. Default: 300.
    pub connect_timeout_ms: u64,
    /// HTTP/2 keepalive ping interval on peer connections, ms. Default: 500.
    pub keepalive_interval_ms: u64,
    /// A peer connection whose keepalive ping is unanswered this long is closed, ms. Default: 1000.
    pub keepalive_timeout_ms: u64,
    /// Deadline of an AppendEntries or Vote RPC, ms. Default: 1000.
    pub request_timeout_ms: u64,
    /// Deadline of a forwarded write or read-index request, ms. Default: 5000.
    pub forward_timeout_ms: u64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            connect_timeout_ms: 300,
            keepalive_interval_ms: 500,
            keepalive_timeout_ms: 1_000,
            request_timeout_ms: 1_000,
            forward_timeout_ms: 5_000,
        }
    }
}

/// Test-only switches. Never enable them in production.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TestingConfig {
    /// Allow the admin API's SetClockOffset, which shifts the time this node stamps into
    /// entries as leader (for clock-skew fault injection). Default: false.
    pub allow_clock_offset: bool,
    /// Dial these peers at another address than the one in the cluster membership: the
    /// fault-injection harness puts a per-link TCP proxy between each pair of nodes and
    /// routes each node's outgoing peer connections through its own proxies. Default: empty.
    pub peer_routes: Vec<PeerRoute>,
}

/// One entry of `testing.peer-routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PeerRoute {
    /// The peer this route is for. Required.
    pub node_id: u64,
    /// Address this node dials for that peer's peer port, `host:port`. Required.
    pub peer_addr: String,
}

impl NodeConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<NodeConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg = Self::parse(&text, path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Parses TOML text (no validation); `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<NodeConfig> {
        toml::from_str(text).map_err(|e| Error::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks every rule and reports all problems at once, each naming its field.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let mut p = Vec::new();
        if self.cluster_id.is_empty()
            || !self
                .cluster_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            p.push(format!(
                "cluster-id: {:?} must be non-empty and use only letters, digits, '-', '_' or '.'",
                self.cluster_id
            ));
        }
        if self.node_id == 0 {
            p.push("node-id: must be > 0".to_string());
        }
        if self.data_dir.as_os_str().is_empty() {
            p.push("data-dir: must not be empty".to_string());
        }
        check_addr(&mut p, "network.peer-addr", &self.network.peer_addr);
        check_addr(&mut p, "network.client-addr", &self.network.client_addr);
        if let Some(m) = &self.network.metrics_addr {
            check_addr(&mut p, "network.metrics-addr", m);
        }
        if let Some(a) = &self.network.http_addr {
            check_addr(&mut p, "network.http-addr", a);
        }
        if let Some(a) = &self.network.shared_http_addr {
            check_addr(&mut p, "network.shared-http-addr", a);
        }
        if let Some(a) = &self.network.shared_client_addr {
            check_addr(&mut p, "network.shared-client-addr", a);
            if [&self.network.peer_addr, &self.network.client_addr].contains(&a) {
                p.push(
                    "network.shared-client-addr: must differ from peer-addr and client-addr"
                        .to_string(),
                );
            }
        }
        let t = &self.tls;
        if t.cert.is_some() != t.key.is_some() {
            p.push(
                "tls: cert and key must both be set, or neither (a half-configured TLS section)"
                    .to_string(),
            );
        }
        if t.require_client_cert && t.ca.is_none() {
            p.push("tls.require-client-cert: needs tls.ca, the CA client certificates are checked against".to_string());
        }
        if (t.ca.is_some() || t.require_client_cert) && !t.enabled() {
            p.push("tls: ca and require-client-cert need cert and key (TLS on)".to_string());
        }
        let pt = &self.peer_tls;
        let set = [&pt.cert, &pt.key, &pt.ca]
            .iter()
            .filter(|f| f.is_some())
            .count();
        if set != 0 && set != 3 {
            p.push(
                "peer-tls: cert, key and ca must all be set, or none (a half-configured TLS section)"
                    .to_string(),
            );
        }
        self.validate_api_keys(&mut p);
        if self.network.peer_addr == self.network.client_addr {
            p.push("network.client-addr: must differ from network.peer-addr".to_string());
        }
        self.validate_members(&mut p);
        self.validate_raft(&mut p);
        let r = &self.rpc;
        for (name, v) in [
            ("rpc.connect-timeout-ms", r.connect_timeout_ms),
            ("rpc.keepalive-interval-ms", r.keepalive_interval_ms),
            ("rpc.keepalive-timeout-ms", r.keepalive_timeout_ms),
            ("rpc.request-timeout-ms", r.request_timeout_ms),
            ("rpc.forward-timeout-ms", r.forward_timeout_ms),
        ] {
            if v == 0 {
                p.push(format!("{name}: must be > 0"));
            }
        }
        let mut routed = BTreeSet::new();
        for (i, r) in self.testing.peer_routes.iter().enumerate() {
            check_addr(
                &mut p,
                &format!("testing.peer-routes[{i}].peer-addr"),
                &r.peer_addr,
            );
            if r.node_id == 0 || r.node_id == self.node_id {
                p.push(format!(
                    "testing.peer-routes[{i}].node-id: {} must be another node's id",
                    r.node_id
                ));
            }
            if !routed.insert(r.node_id) {
                p.push(format!(
                    "testing.peer-routes[{i}].node-id: duplicate route for node {}",
                    r.node_id
                ));
            }
        }
        if self.runtime.worker_threads > MAX_WORKER_THREADS {
            p.push(format!(
                "runtime.worker-threads: {} exceeds {MAX_WORKER_THREADS} (0 means one per CPU)",
                self.runtime.worker_threads
            ));
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid {
                path: origin.to_path_buf(),
                problems: p,
            })
        }
    }

    fn validate_api_keys(&self, p: &mut Vec<String>) {
        let mut names = std::collections::BTreeSet::new();
        let mut hashes = std::collections::BTreeSet::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            let at = format!("api-keys[{i}]");
            if k.name.trim().is_empty() {
                p.push(format!("{at}.name: must not be empty"));
            } else if !names.insert(k.name.as_str()) {
                p.push(format!("{at}.name: {:?} is used twice", k.name));
            }
            let hex = k.sha256.len() == 64
                && k.sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                p.push(format!(
                    "{at}.sha256: must be the key's SHA-256 as 64 lowercase hex digits (keel api-key create prints it)"
                ));
            } else if !hashes.insert(k.sha256.as_str()) {
                p.push(format!("{at}.sha256: the same key is configured twice"));
            }
            if k.namespaces.is_empty() || k.namespaces.iter().any(|n| n.trim().is_empty()) {
                p.push(format!(
                    "{at}.namespaces: list the namespaces the key may use, or \"*\" for all"
                ));
            }
        }
    }

    fn validate_members(&self, p: &mut Vec<String>) {
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.node_id == 0 {
                p.push(format!("members[{i}].node-id: must be > 0"));
            }
            if !ids.insert(m.node_id) {
                p.push(format!("members[{i}].node-id: duplicate id {}", m.node_id));
            }
            check_addr(p, &format!("members[{i}].peer-addr"), &m.peer_addr);
            check_addr(p, &format!("members[{i}].client-addr"), &m.client_addr);
            for (field, a) in [("peer-addr", &m.peer_addr), ("client-addr", &m.client_addr)] {
                if !addrs.insert(a.clone()) {
                    p.push(format!("members[{i}].{field}: address {a} is used twice"));
                }
            }
        }
        if let Some(me) = self.members.iter().find(|m| m.node_id == self.node_id) {
            if me.peer_addr != self.network.peer_addr || me.client_addr != self.network.client_addr
            {
                p.push(format!(
                    "members: the entry for node-id {} must repeat network.peer-addr and network.client-addr",
                    self.node_id
                ));
            }
        } else if !self.members.is_empty() {
            p.push(format!(
                "members: must include this node (node-id {}) or be empty for a node that joins later",
                self.node_id
            ));
        }
    }

    fn validate_raft(&self, p: &mut Vec<String>) {
        let r = &self.raft;
        if r.heartbeat_interval_ms == 0 {
            p.push("raft.heartbeat-interval-ms: must be > 0".to_string());
        }
        if r.election_timeout_min_ms <= r.heartbeat_interval_ms {
            p.push(format!(
                "raft.election-timeout-min-ms: {} must exceed raft.heartbeat-interval-ms ({})",
                r.election_timeout_min_ms, r.heartbeat_interval_ms
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            p.push(format!(
                "raft.election-timeout-max-ms: {} must exceed raft.election-timeout-min-ms ({})",
                r.election_timeout_max_ms, r.election_timeout_min_ms
            ));
        }
        for (name, v) in [
            ("raft.snapshot-every-entries", r.snapshot_every_entries),
            ("raft.purge-batch-size", r.purge_batch_size),
            ("raft.max-append-entries", r.max_append_entries),
            ("raft.snapshot-chunk-bytes", r.snapshot_chunk_bytes),
            ("raft.leader-wait-ms", r.leader_wait_ms),
            ("raft.max-batch-commands", r.max_batch_commands),
            ("raft.max-in-flight-batches", r.max_in_flight_batches),
        ] {
            if v == 0 {
                p.push(format!("{name}: must be > 0"));
            }
        }
    }

    /// The node with the lowest id among `members` initializes the cluster.
    pub fn is_bootstrap_node(&self) -> bool {
        self.members.iter().map(|m| m.node_id).min() == Some(self.node_id)
    }
}

fn check_addr(p: &mut Vec<String>, field: &str, value: &str) {
    if value.parse::<SocketAddr>().is_err() {
        p.push(format!(
            "{field}: {value:?} is not an ip:port socket address"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_configs() -> Vec<PathBuf> {
        // The runtime variable (set by cargo and nextest) is right even when a binary built
        // from another checkout is reused from a shared target dir.
        let manifest = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let root = Path::new(&manifest).join("../../cluster-configs");
        let mut out = Vec::new();
        for dir in std::fs::read_dir(&root).expect("cluster-configs exists") {
            let dir = dir.unwrap().path();
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "toml") {
                    out.push(f);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_shipped_config_parses_and_validates() {
        let files = shipped_configs();
        assert!(
            files.len() >= 8,
            "expected local-3 and local-5, found {files:?}"
        );
        for f in &files {
            NodeConfig::load(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }

    #[test]
    fn shipped_clusters_agree_on_their_members() {
        let mut by_dir: std::collections::BTreeMap<PathBuf, Vec<NodeConfig>> = Default::default();
        for f in shipped_configs() {
            by_dir
                .entry(f.parent().unwrap().to_path_buf())
                .or_default()
                .push(NodeConfig::load(&f).unwrap());
        }
        for (dir, cfgs) in by_dir {
            let first = &cfgs[0];
            for c in &cfgs {
                assert_eq!(c.members, first.members, "{}", dir.display());
                assert_eq!(c.cluster_id, first.cluster_id, "{}", dir.display());
            }
            let ids: BTreeSet<u64> = cfgs.iter().map(|c| c.node_id).collect();
            assert_eq!(
                ids.len(),
                cfgs.len(),
                "{}: distinct node ids",
                dir.display()
            );
            assert_eq!(
                cfgs.iter().filter(|c| c.is_bootstrap_node()).count(),
                1,
                "{}: exactly one bootstrap node",
                dir.display()
            );
        }
    }

    const GOOD: &str = r#"
cluster-id = "c1"
node-id = 1
data-dir = "d"
[network]
peer-addr = "127.0.0.1:1"
client-addr = "127.0.0.1:2"
[[members]]
node-id = 1
peer-addr = "127.0.0.1:1"
client-addr = "127.0.0.1:2"
"#;

    fn parse(text: &str) -> Result<NodeConfig> {
        let c = NodeConfig::parse(text, Path::new("t.toml"))?;
        c.validate(Path::new("t.toml"))?;
        Ok(c)
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.raft, RaftConfig::default());
        assert_eq!(c.rpc, RpcConfig::default());
        assert_eq!(c.runtime.worker_threads, 0, "one worker per CPU unless set");
        assert!(!c.testing.allow_clock_offset);
        assert!(c.is_bootstrap_node());
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let err = parse(&GOOD.replace("[network]", "[network]\npeer-adr = \"x\"")).unwrap_err();
        assert!(err.to_string().contains("peer-adr"), "{err}");
        let err = parse(&format!("{GOOD}\n[raft]\nelection-timeout = 5\n")).unwrap_err();
        assert!(err.to_string().contains("election-timeout"), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let err = parse(&GOOD.replace("node-id = 1\ndata-dir", "data-dir")).unwrap_err();
        assert!(err.to_string().contains("node-id"), "{err}");
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let bad = GOOD
            .replace("cluster-id = \"c1\"", "cluster-id = \"bad id\"")
            .replace(
                "client-addr = \"127.0.0.1:2\"\n[[members]]",
                "client-addr = \"nope\"\n[[members]]",
            )
            + "[raft]\nheartbeat-interval-ms = 700\n[runtime]\nworker-threads = 5000\n";
        let err = parse(&bad).unwrap_err();
        let msg = err.to_string();
        for field in [
            "cluster-id",
            "runtime.worker-threads: 5000 exceeds 1024",
            "network.client-addr",
            "raft.election-timeout-min-ms",
            "members: the entry for node-id 1",
        ] {
            assert!(msg.contains(field), "missing {field} in:\n{msg}");
        }
    }

    #[test]
    fn members_must_include_self_and_be_unique() {
        let bad = GOOD.replace("node-id = 1\npeer-addr", "node-id = 2\npeer-addr");
        let msg = parse(&bad).unwrap_err().to_string();
        assert!(msg.contains("must include this node"), "{msg}");
        let dup = format!("{GOOD}\n[[members]]\nnode-id = 1\npeer-addr = \"127.0.0.1:3\"\nclient-addr = \"127.0.0.1:4\"\n");
        let msg = parse(&dup).unwrap_err().to_string();
        assert!(msg.contains("duplicate id 1"), "{msg}");
    }

    #[test]
    fn peer_routes_name_another_node_once_with_an_address() {
        let ok = format!(
            "{GOOD}\n[testing]\n[[testing.peer-routes]]\nnode-id = 2\npeer-addr = \"127.0.0.1:9\"\n"
        );
        let c = parse(&ok).unwrap();
        assert_eq!(
            c.testing.peer_routes,
            vec![PeerRoute {
                node_id: 2,
                peer_addr: "127.0.0.1:9".into()
            }]
        );
        let bad = format!(
            "{GOOD}\n[testing]\n[[testing.peer-routes]]\nnode-id = 1\npeer-addr = \"x\"\n\
             [[testing.peer-routes]]\nnode-id = 3\npeer-addr = \"127.0.0.1:9\"\n\
             [[testing.peer-routes]]\nnode-id = 3\npeer-addr = \"127.0.0.1:8\"\n"
        );
        let msg = parse(&bad).unwrap_err().to_string();
        for want in [
            "testing.peer-routes[0].node-id: 1 must be another node's id",
            "testing.peer-routes[0].peer-addr",
            "testing.peer-routes[2].node-id: duplicate route for node 3",
        ] {
            assert!(msg.contains(want), "missing {want} in:\n{msg}");
        }
    }
}
