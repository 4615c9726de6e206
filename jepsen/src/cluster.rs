//! Real `keel server` processes: configs, start, SIGKILL, SIGSTOP/SIGCONT, restart, logs,
//! and the admin calls the harness makes (status, digests, clock offsets).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use keel_config::{MemberConfig, NodeConfig, PeerRoute};
use keel_proto::admin::v1 as admin;
use keel_proto::admin::v1::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};

use crate::net::Net;

/// libfaketime's preload library (Debian's `libfaketime` package).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The shipped local node config: the suite runs with the same Raft timings users get.
const SHIPPED: &str = include_str!("../../cluster-configs/local-3/node1.toml");

/// Where one node listens and what it dials.
#[derive(Debug, Clone)]
pub struct NodeAddrs {
    pub peer: SocketAddr,
    pub client: SocketAddr,
    /// Per-peer dial overrides (the proxy backend).
    pub routes: BTreeMap<u64, SocketAddr>,
    /// Network namespace to run in (the netns backend).
    pub netns: Option<String>,
}

/// One node process and its files.
pub struct NodeProc {
    pub id: u64,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    netns: Option<String>,
    /// The libfaketime offset file, when the node runs under libfaketime.
    faketime: Option<PathBuf>,
    child: Option<Child>,
    paused: bool,
    /// Starts so far; a restart begins a new incarnation.
    pub incarnation: u64,
}

impl NodeProc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
    pub fn is_paused(&self) -> bool {
        self.paused
    }
}

/// A cluster of real processes.
pub struct Cluster {
    pub nodes: BTreeMap<u64, NodeProc>,
    pub net: Net,
    keel_bin: PathBuf,
    channels: BTreeMap<u64, Channel>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                signal(c.id(), libc::SIGCONT);
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) on a pid this harness spawned and has not reaped yet.
    unsafe { libc::kill(pid as i32, sig) == 0 }
}

/// Node configs for `addrs`, from the shipped local config's Raft and runtime settings.
pub fn node_configs(
    cluster_id: &str,
    addrs: &BTreeMap<u64, NodeAddrs>,
    dir: &Path,
) -> anyhow::Result<Vec<NodeConfig>> {
    let template = NodeConfig::parse(SHIPPED, Path::new("cluster-configs/local-3/node1.toml"))?;
    let members: Vec<MemberConfig> = addrs
        .iter()
        .map(|(&id, a)| MemberConfig {
            node_id: id,
            peer_addr: a.peer.to_string(),
            client_addr: a.client.to_string(),
        })
        .collect();
    let mut out = Vec::new();
    for (&id, a) in addrs {
        let mut c = template.clone();
        c.cluster_id = cluster_id.to_string();
        c.node_id = id;
        c.data_dir = dir.join(format!("n{id}")).join("data");
        c.network.peer_addr = a.peer.to_string();
        c.network.client_addr = a.client.to_string();
        c.network.metrics_addr = None;
        c.members = members.clone();
        c.testing.allow_clock_offset = true;
        c.testing.peer_routes = a
            .routes
            .iter()
            .map(|(&node_id, addr)| PeerRoute {
                node_id,
                peer_addr: addr.to_string(),
            })
            .collect();
        out.push(c);
    }
    Ok(out)
}

impl Cluster {
    /// Writes configs under `dir` and starts every node; with `faketime`, every node runs
    /// under libfaketime with an offset file the nemesis can rewrite ([`Cluster::set_faketime`]).
    pub fn start(
        keel_bin: &Path,
        dir: &Path,
        cluster_id: &str,
        addrs: BTreeMap<u64, NodeAddrs>,
        net: Net,
        faketime: bool,
    ) -> anyhow::Result<Cluster> {
        anyhow::ensure!(
            !faketime || Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} not found (apt-get install faketime libfaketime; .ci/setup does)"
        );
        let cfgs = node_configs(cluster_id, &addrs, dir)?;
        let mut nodes = BTreeMap::new();
        for c in cfgs {
            let ndir = dir.join(format!("n{}", c.node_id));
            std::fs::create_dir_all(&ndir)?;
            let config = ndir.join("node.toml");
            std::fs::write(&config, toml::to_string(&c)?)?;
            NodeConfig::load(&config).context("generated config validates")?;
            let faketime = if faketime {
                let f = ndir.join("faketime");
                std::fs::write(&f, "+0")?;
                Some(f)
            } else {
                None
            };
            nodes.insert(
                c.node_id,
                NodeProc {
                    id: c.node_id,
                    config,
                    data_dir: c.data_dir.clone(),
                    log: ndir.join("node.log"),
                    client_addr: addrs[&c.node_id].client,
                    peer_addr: addrs[&c.node_id].peer,
                    netns: addrs[&c.node_id].netns.clone(),
                    faketime,
                    child: None,
                    paused: false,
                    incarnation: 0,
                },
            );
        }
        let mut cluster = Cluster {
            nodes,
            net,
            keel_bin: keel_bin.to_path_buf(),
            channels: BTreeMap::new(),
        };
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        self.spawn_with(id, None)
    }

    /// Starts a stopped node with another config file (for the identity fault: the same data
    /// dir under another cluster id).
    pub fn restart_with_config(&mut self, id: u64, config: &Path) -> anyhow::Result<()> {
        self.spawn_with(id, Some(config))
    }

    fn spawn_with(&mut self, id: u64, config: Option<&Path>) -> anyhow::Result<()> {
        let n = self.nodes.get_mut(&id).expect("known node");
        anyhow::ensure!(n.child.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        let mut cmd = match &n.netns {
            Some(ns) => {
                // `ip netns exec` execs the server, so the child's pid is the server's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.keel_bin);
                c
            }
            None => Command::new(&self.keel_bin),
        };
        cmd.arg("server")
            .arg("--config")
            .arg(config.unwrap_or(&n.config))
            .env("RUST_LOG", "info,openraft=warn")
            // An error exit prints its message at once (symbolizing a backtrace of a release
            // binary with debug info takes seconds).
            .env("RUST_LIB_BACKTRACE", "0")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if let Some(f) = &n.faketime {
            // The wall clock only: Instant (monotonic) stays true, as with a bad NTP step.
            cmd.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", f)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("DONT_FAKE_MONOTONIC", "1");
        }
        // SAFETY: prctl(2) only, between fork and exec. The node dies with the harness, so
        // an interrupted run leaves no servers behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting node {id} ({})", self.keel_bin.display()))?;
        n.child = Some(child);
        n.paused = false;
        n.incarnation += 1;
        Ok(())
    }

    /// SIGKILL and reap: no shutdown path runs, as in a crash.
    pub fn kill(&mut self, id: u64) -> bool {
        let n = self.nodes.get_mut(&id).expect("known node");
        let Some(mut c) = n.child.take() else {
            return false;
        };
        let _ = c.kill();
        let _ = c.wait();
        n.paused = false;
        true
    }

    /// Starts a killed node again on its data dir.
    pub fn restart(&mut self, id: u64) -> anyhow::Result<bool> {
        // A node that stopped itself on corrupt data stays down (see `fail_stopped`).
        if self.nodes[&id].is_running() || self.stop_line(id).is_some() {
            return Ok(false);
        }
        self.spawn(id)?;
        Ok(true)
    }

    /// Sets a node's libfaketime wall-clock offset (it takes effect within a second: the
    /// library re-reads the file at most once a second). False when the node does not run
    /// under libfaketime.
    pub fn set_faketime(&self, id: u64, offset_ms: i64) -> bool {
        let Some(f) = &self.nodes[&id].faketime else {
            return false;
        };
        std::fs::write(f, format!("{:+.3}", offset_ms as f64 / 1000.0)).is_ok()
    }

    /// SIGSTOP (every thread stops; peers' TCP stays up).
    pub fn pause(&mut self, id: u64) -> bool {
        let n = self.nodes.get_mut(&id).expect("known node");
        match n.child.as_ref() {
            Some(c) if !n.paused && signal(c.id(), libc::SIGSTOP) => {
                n.paused = true;
                true
            }
            _ => false,
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: u64) -> bool {
        let n = self.nodes.get_mut(&id).expect("known node");
        match n.child.as_ref() {
            Some(c) if n.paused && signal(c.id(), libc::SIGCONT) => {
                n.paused = false;
                true
            }
            _ => false,
        }
    }

    /// Whether a started node has exited by itself; returns its exit status then.
    pub fn exited(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let n = self.nodes.get_mut(&id).expect("known node");
        let status = n.child.as_mut()?.try_wait().ok().flatten()?;
        n.child = None;
        Some(status)
    }

    /// Nodes that stopped themselves on finding corrupt data at run time (Keel's fail-stop:
    /// "stopping this node" in the log of their last start), with that log line. Such a node
    /// stays down: bringing it back is an operator's job (restore or replace), not the
    /// harness's — restoring an old copy of a node that ran since could make it forget votes.
    pub fn fail_stopped(&mut self) -> BTreeMap<u64, String> {
        let mut out = BTreeMap::new();
        for id in self.ids() {
            // Still running (try_wait reaps one that has just exited).
            if self.nodes[&id].child.is_some() && self.exited(id).is_none() {
                continue;
            }
            if let Some(line) = self.stop_line(id) {
                out.insert(id, line);
            }
        }
        out
    }

    /// The fail-stop line in the log of the node's last start, if any.
    pub fn stop_line(&self, id: u64) -> Option<String> {
        let log = std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default();
        let last_start = log.rfind("raft node started").map_or(0, |at| at);
        log[last_start..]
            .lines()
            .find(|l| l.contains("stopping this node"))
            .map(|l| l.chars().take(400).collect())
    }

    /// A lazily connected channel to a node's client port.
    pub fn channel(&mut self, id: u64) -> Channel {
        let addr = self.nodes[&id].client_addr;
        self.channels
            .entry(id)
            .or_insert_with(|| client_channel(addr))
            .clone()
    }

    /// Every node's client channel.
    pub fn channels(&mut self) -> BTreeMap<u64, Channel> {
        self.ids()
            .into_iter()
            .map(|id| (id, self.channel(id)))
            .collect()
    }
}

/// A lazily connected client channel with short connect timeouts.
pub fn client_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("socket addresses are valid URIs")
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_millis(500))
        .keep_alive_timeout(Duration::from_secs(1))
        .connect_lazy()
}

/// A node's own status, or `None` when it does not answer within `timeout`.
pub async fn node_status(ch: &Channel, timeout: Duration) -> Option<admin::NodeStatus> {
    let mut c = AdminClient::new(ch.clone());
    let mut req = tonic::Request::new(admin::NodeStatusRequest {});
    req.set_timeout(timeout);
    tokio::time::timeout(timeout, c.node_status(req))
        .await
        .ok()?
        .ok()
        .map(|r| r.into_inner())
}

/// A node's state digest, or why there is none.
pub async fn digest(ch: &Channel, timeout: Duration) -> Result<admin::StateDigestResponse, String> {
    let mut c = AdminClient::new(ch.clone());
    let mut req = tonic::Request::new(admin::StateDigestRequest {});
    req.set_timeout(timeout);
    match tokio::time::timeout(timeout, c.state_digest(req)).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

/// Sends a membership change to the leader, following leadership for up to `within`.
/// `add`: add `node` as a learner (it catches up first) then make every node in `voters` a
/// voter; otherwise make `voters` (without `node`) the voter set.
pub async fn change_membership(
    channels: &BTreeMap<u64, Channel>,
    node: (u64, SocketAddr, SocketAddr),
    voters: Vec<u64>,
    add: bool,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    let mut learner_added = !add;
    let mut last_err = String::from("no leader found");
    while tokio::time::Instant::now() < deadline {
        let Some((leader, _)) = find_leader(channels).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut c = AdminClient::new(channels[&leader].clone());
        if !learner_added {
            let mut req = tonic::Request::new(admin::AddLearnerRequest {
                node_id: node.0,
                peer_addr: node.1.to_string(),
                client_addr: node.2.to_string(),
            });
            req.set_timeout(Duration::from_secs(10));
            match c.add_learner(req).await {
                Ok(_) => learner_added = true,
                Err(s) => {
                    last_err = format!("add learner {} via {leader}: {}", node.0, s.message());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let mut req = tonic::Request::new(admin::ChangeMembershipRequest {
            voter_ids: voters.clone(),
            retain: false,
        });
        req.set_timeout(Duration::from_secs(5));
        match c.change_membership(req).await {
            Ok(_) => return Ok(()),
            Err(s) => {
                last_err = format!("change voters to {voters:?} via {leader}: {}", s.message());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    anyhow::bail!("membership change not done within {within:?}: {last_err}")
}

/// Asks a node to build a snapshot now.
pub async fn trigger_snapshot(ch: &Channel) -> anyhow::Result<u64> {
    let mut c = AdminClient::new(ch.clone());
    let mut req = tonic::Request::new(admin::TriggerSnapshotRequest {});
    req.set_timeout(Duration::from_secs(5));
    Ok(c.trigger_snapshot(req).await?.into_inner().snapshot_index)
}

/// Sets a node's clock offset (test-only admin RPC).
pub async fn set_clock_offset(ch: &Channel, offset_ms: i64) -> anyhow::Result<()> {
    let mut c = AdminClient::new(ch.clone());
    let mut req = tonic::Request::new(admin::SetClockOffsetRequest { offset_ms });
    req.set_timeout(Duration::from_secs(2));
    c.set_clock_offset(req).await?;
    Ok(())
}

/// The leader as the nodes report it: the claim with the highest term among the answers.
pub async fn find_leader(channels: &BTreeMap<u64, Channel>) -> Option<(u64, u64)> {
    let answers = futures::future::join_all(
        channels
            .values()
            .map(|ch| node_status(ch, Duration::from_millis(300))),
    )
    .await;
    answers
        .into_iter()
        .flatten()
        .filter(|s| s.leader_id != 0)
        .max_by_key(|s| s.term)
        .map(|s| (s.leader_id, s.term))
}

/// A free TCP port on `ip`, below Linux's ephemeral range so that no outgoing connection is
/// handed it between this probe and the server's bind.
pub fn free_port(ip: std::net::IpAddr, rng: &mut impl rand::Rng) -> anyhow::Result<u16> {
    for _ in 0..200 {
        let port = rng.random_range(20_000..32_000);
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port found on {ip}")
}
