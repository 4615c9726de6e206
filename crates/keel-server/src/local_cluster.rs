//! An in-process cluster of real nodes (real tonic servers on loopback ports chosen by the
//! OS, real RocksDB in a temp dir), for tests and the raft benchmark.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use keel_config::{MemberConfig, NetworkConfig, NodeConfig, RaftConfig, RpcConfig, TestingConfig};
use tokio::net::TcpListener;

use crate::node::{Listeners, Node};

/// A loopback port free now, below the kernel's ephemeral range, for a server process that
/// binds it later (and again on restart): in the meantime no outgoing connection or `bind(0)`
/// of another process is handed it, as those draw from the ephemeral range.
pub fn free_port_below_ephemeral() -> u16 {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    // Start at a pseudo-random offset (time and pid) so parallel tests rarely probe alike.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let span = u32::from(high - low);
    (0..span)
        .map(|i| low + ((seed.wrapping_add(i.wrapping_mul(7_919))) % span) as u16)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below the ephemeral range")
}

/// The `keel` binary of the build running the calling test (`KEEL_BIN` overrides it): a test
/// executable lives in `target/<profile>/deps/`, the binary in `target/<profile>/`. Workspace
/// test runs build it.
pub fn keel_binary() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("KEEL_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir")
        .join("keel");
    assert!(
        bin.exists(),
        "{} not built; run the workspace tests (they build it) or set KEEL_BIN",
        bin.display()
    );
    bin
}

/// Polls `cond` until it returns `Some`, failing with `reason` after `timeout`. The poll
/// interval is short; this waits on a condition, it does not guess a duration.
pub async fn wait_for<T, F, Fut>(timeout: Duration, reason: &str, mut cond: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for: {reason}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A cluster of in-process nodes sharing one temp dir.
pub struct LocalCluster {
    dir: tempfile::TempDir,
    configs: BTreeMap<u64, NodeConfig>,
    nodes: BTreeMap<u64, Node>,
    tune: fn(&mut NodeConfig),
    /// `network.shared-client-addr` of every node, if the cluster shares one.
    shared_client: Option<String>,
}

async fn loopback() -> anyhow::Result<TcpListener> {
    Ok(TcpListener::bind("127.0.0.1:0").await?)
}

impl LocalCluster {
    /// Starts `n` voters (ids 1..=n); `tune` adjusts every node's config first.
    pub async fn start(n: u64, tune: fn(&mut NodeConfig)) -> anyhow::Result<LocalCluster> {
        Self::start_inner(n, tune, false).await
    }

    /// Like [`start`](Self::start), and every node also serves clients on one shared
    /// loopback address (`SO_REUSEPORT`, as `keel up` does on 127.0.0.1:7233); see
    /// [`shared_client_addr`](Self::shared_client_addr).
    pub async fn start_sharing_client_addr(
        n: u64,
        tune: fn(&mut NodeConfig),
    ) -> anyhow::Result<LocalCluster> {
        Self::start_inner(n, tune, true).await
    }

    /// The client address all nodes share, if they do.
    pub fn shared_client_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared_client.as_ref().and_then(|a| a.parse().ok())
    }

    async fn start_inner(
        n: u64,
        tune: fn(&mut NodeConfig),
        shared: bool,
    ) -> anyhow::Result<LocalCluster> {
        let shared_client = if shared {
            // Outside the ephemeral range: nothing else is handed it before the nodes bind it.
            Some(format!("127.0.0.1:{}", free_port_below_ephemeral()))
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("keel-cluster-").tempdir()?;
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            listeners.insert(id, (loopback().await?, loopback().await?));
        }
        let members: Vec<MemberConfig> = listeners
            .iter()
            .map(|(id, (p, c))| {
                Ok(MemberConfig {
                    node_id: *id,
                    peer_addr: p.local_addr()?.to_string(),
                    client_addr: c.local_addr()?.to_string(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let mut cluster = LocalCluster {
            dir,
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            tune,
            shared_client,
        };
        for (id, (peer, client)) in listeners {
            cluster.launch(id, peer, client, members.clone()).await?;
        }
        Ok(cluster)
    }

    /// Starts node `id` on already bound listeners.
    async fn launch(
        &mut self,
        id: u64,
        peer: TcpListener,
        client: TcpListener,
        members: Vec<MemberConfig>,
    ) -> anyhow::Result<&Node> {
        let http = loopback().await?;
        let mut cfg = self.config_for(id, &peer, &client, members)?;
        cfg.network.http_addr = Some(http.local_addr()?.to_string());
        self.configs.insert(id, cfg.clone());
        let listeners = Listeners {
            peer,
            client,
            metrics: None,
            shared_client: match &cfg.network.shared_client_addr {
                Some(a) => Some(crate::node::bind_shared(a)?),
                None => None,
            },
            http: Some(http),
            shared_http: None,
        };
        let node = Node::start(cfg, listeners).await?;
        self.nodes.insert(id, node);
        Ok(&self.nodes[&id])
    }

    fn config_for(
        &self,
        id: u64,
        peer: &TcpListener,
        client: &TcpListener,
        members: Vec<MemberConfig>,
    ) -> anyhow::Result<NodeConfig> {
        let mut cfg = NodeConfig {
            cluster_id: "keel-test".into(),
            node_id: id,
            data_dir: self.dir.path().join(format!("node{id}")),
            network: NetworkConfig {
                peer_addr: peer.local_addr()?.to_string(),
                client_addr: client.local_addr()?.to_string(),
                metrics_addr: None,
                shared_client_addr: self.shared_client.clone(),
                http_addr: None,
                shared_http_addr: None,
            },
            members,
            raft: RaftConfig {
                heartbeat_interval_ms: 50,
                election_timeout_min_ms: 300,
                // A wide spread makes split votes rare, so failover fits in two timeouts.
                election_timeout_max_ms: 900,
                ..RaftConfig::default()
            },
            rpc: RpcConfig::default(),
            runtime: Default::default(),
            tls: Default::default(),
            peer_tls: Default::default(),
            api_keys: Vec::new(),
            admission: Default::default(),
            testing: TestingConfig {
                allow_clock_offset: true,
                ..TestingConfig::default()
            },
        };
        (self.tune)(&mut cfg);
        cfg.validate(std::path::Path::new("<in-process>"))?;
        Ok(cfg)
    }

    /// Starts a node that is not an initial member (to be added as a learner).
    pub async fn start_joining_node(&mut self, id: u64) -> anyhow::Result<&Node> {
        let (peer, client) = (loopback().await?, loopback().await?);
        self.launch(id, peer, client, Vec::new()).await
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    pub fn config(&self, id: u64) -> &NodeConfig {
        &self.configs[&id]
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// Crashes a node (in-process: servers aborted, Raft stopped, storage closed).
    pub async fn crash(&mut self, id: u64) {
        if let Some(n) = self.nodes.remove(&id) {
            n.crash().await;
        }
    }

    /// Restarts a stopped node on its old addresses and data dir.
    pub async fn restart(&mut self, id: u64) -> anyhow::Result<&Node> {
        anyhow::ensure!(!self.nodes.contains_key(&id), "node {id} is running");
        let cfg = self.configs[&id].clone();
        let listeners = Listeners::bind(&cfg).await?;
        let node = Node::start(cfg, listeners).await?;
        self.nodes.insert(id, node);
        Ok(&self.nodes[&id])
    }

    /// Waits until every running node agrees on one leader that is itself running.
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        wait_for(
            timeout,
            "all running nodes agree on a running leader",
            || async {
                let leaders: Vec<Option<u64>> = self
                    .nodes
                    .values()
                    .map(|n| n.raft().current_leader())
                    .collect();
                match leaders.first() {
                    Some(Some(l))
                        if leaders.iter().all(|x| *x == Some(*l)) && self.nodes.contains_key(l) =>
                    {
                        Some(*l)
                    }
                    _ => None,
                }
            },
        )
        .await
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> anyhow::Result<()> {
        for (id, n) in &self.nodes {
            n.raft()
                .wait(timeout)
                .applied_index_at_least(Some(index), "applied")
                .await
                .map_err(|e| anyhow::anyhow!("node {id} did not apply index {index}: {e}"))?;
        }
        Ok(())
    }

    /// Waits until every running node's state digest is identical; returns it.
    pub async fn wait_converged(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<keel_raft::StateDigest> {
        wait_for(
            timeout,
            "identical state digests on all running nodes",
            || async {
                let digests: Vec<_> = self
                    .nodes
                    .values()
                    .map(|n| n.raft().state_digest().ok())
                    .collect::<Option<Vec<_>>>()?;
                let first = digests.first()?.clone();
                digests.iter().all(|d| *d == first).then_some(first)
            },
        )
        .await
    }

    /// Stops every node gracefully.
    pub async fn shutdown(mut self) {
        for (_, n) in std::mem::take(&mut self.nodes) {
            n.shutdown().await;
        }
    }
}
