//! Runs the built `keel` binary as three real processes from the shipped
//! `cluster-configs/local-3` configs (ports rewritten to free ones, data in a temp dir):
//! write through a follower, SIGKILL the leader, write again, restart it, and check that
//! every node's state digest converges.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_config::NodeConfig;
use keel_proto::admin::v1 as admin;
use keel_proto::admin::v1::admin_client::AdminClient;
use keel_proto::kv::v1 as kv;
use keel_proto::kv::v1::kv_client::KvClient;
use keel_server::local_cluster::free_port_below_ephemeral;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);

macro_rules! phase {
    ($($arg:tt)*) => { eprintln!("--- phase: {}", format!($($arg)*)) };
}

fn keel_bin() -> PathBuf {
    keel_server::local_cluster::keel_binary()
}

/// Kills every child on drop, so a failed test leaves no processes behind.
struct Procs {
    children: Vec<Option<Child>>,
    logs: PathBuf,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for i in 1..=self.children.len() {
                let log = self.logs.join(format!("node{i}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!("==== tail of {} ====", log.display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

impl Procs {
    fn start(&mut self, id: usize, config: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("node{id}.log")))
            .expect("log file");
        let child = Command::new(keel_bin())
            .arg("server")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn keel server");
        self.children[id - 1] = Some(child);
    }

    /// SIGKILL: no shutdown path runs, unsynced state is lost as in a real crash.
    fn sigkill(&mut self, id: usize) {
        let mut c = self.children[id - 1].take().expect("running");
        c.kill().expect("SIGKILL");
        c.wait().expect("reap");
    }
}

/// The shipped configs with every address moved to a free port and data in `dir`.
fn rewritten_configs(dir: &Path) -> Vec<(NodeConfig, PathBuf)> {
    // Runtime variable first: right even for a binary reused from another checkout's build.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let shipped = Path::new(&manifest).join("../cluster-configs/local-3");
    let mut cfgs: Vec<NodeConfig> = (1..=3)
        .map(|i| {
            NodeConfig::load(&shipped.join(format!("node{i}.toml"))).expect("shipped config loads")
        })
        .collect();
    let mut map = std::collections::BTreeMap::new();
    for c in &cfgs {
        for a in [&c.network.peer_addr, &c.network.client_addr]
            .into_iter()
            .chain(c.network.metrics_addr.as_ref())
            .chain(c.network.shared_client_addr.as_ref())
            .chain(c.network.http_addr.as_ref())
            .chain(c.network.shared_http_addr.as_ref())
        {
            if map.contains_key(a) {
                continue; // the shared address: one port for all
            }
            map.insert(
                a.clone(),
                format!("127.0.0.1:{}", free_port_below_ephemeral()),
            );
        }
    }
    for c in &mut cfgs {
        c.network.peer_addr = map[&c.network.peer_addr].clone();
        c.network.client_addr = map[&c.network.client_addr].clone();
        c.network.metrics_addr = c.network.metrics_addr.as_ref().map(|m| map[m].clone());
        let moved = |a: &Option<String>| a.as_ref().map(|m| map[m].clone());
        c.network.shared_client_addr = moved(&c.network.shared_client_addr);
        c.network.http_addr = moved(&c.network.http_addr);
        c.network.shared_http_addr = moved(&c.network.shared_http_addr);
        for m in &mut c.members {
            m.peer_addr = map[&m.peer_addr].clone();
            m.client_addr = map[&m.client_addr].clone();
        }
        c.data_dir = dir.join(format!("node{}", c.node_id));
    }
    cfgs.into_iter()
        .map(|c| {
            let path = dir.join(format!("node{}.toml", c.node_id));
            std::fs::write(&path, toml::to_string(&c).expect("serialize")).expect("write config");
            NodeConfig::load(&path).expect("rewritten config validates");
            (c, path)
        })
        .collect()
}

async fn channel(addr: &str) -> Option<Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .ok()
}

async fn wait_for<T, F, Fut>(reason: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for: {reason}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn node_status(addr: &str) -> Option<admin::NodeStatus> {
    let mut c = AdminClient::new(channel(addr).await?);
    c.node_status(admin::NodeStatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// A leader that every listed node agrees on, other than `not`.
async fn agreed_leader(addrs: &[String], not: Option<u64>) -> u64 {
    wait_for("every running node agrees on one (new) leader", || async {
        let mut leader = None;
        for a in addrs {
            let s = node_status(a).await?;
            if s.leader_id == 0
                || Some(s.leader_id) == not
                || leader.is_some_and(|l| l != s.leader_id)
            {
                return None;
            }
            leader = Some(s.leader_id);
        }
        leader
    })
    .await
}

async fn put(addr: &str, key: &str) -> u64 {
    let key = key.to_string();
    wait_for(&format!("put {key} through {addr}"), || async {
        let mut c = KvClient::new(channel(addr).await?);
        let r = c
            .put(kv::PutRequest {
                key: key.clone().into_bytes(),
                value: format!("value-of-{key}").into_bytes(),
            })
            .await;
        match r {
            Ok(r) => Some(r.into_inner().log_index),
            Err(s) => {
                // Only retryable outcomes may be retried; puts are idempotent here.
                assert_eq!(s.code(), tonic::Code::Unavailable, "put {key}: {s}");
                None
            }
        }
    })
    .await
}

async fn http_get(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics endpoint");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_restart_and_digest_convergence_with_shipped_configs() {
    let dir = tempfile::Builder::new()
        .prefix("keel-mp-")
        .tempdir()
        .unwrap();
    let cfgs = rewritten_configs(dir.path());
    let client: Vec<String> = cfgs
        .iter()
        .map(|(c, _)| c.network.client_addr.clone())
        .collect();
    let mut procs = Procs {
        children: (0..3).map(|_| None).collect(),
        logs: dir.path().to_path_buf(),
    };

    phase!("start three keel server processes");
    for (i, (_, path)) in cfgs.iter().enumerate() {
        procs.start(i + 1, path);
    }
    let leader = agreed_leader(&client, None).await as usize;
    let follower = if leader == 1 { 2 } else { 1 };

    phase!("write through follower {follower}");
    let mut keys = Vec::new();
    for i in 0..10 {
        let k = format!("before-{i}");
        put(&client[follower - 1], &k).await;
        keys.push(k);
    }

    phase!("SIGKILL leader {leader}; the survivors elect a new leader and keep writing");
    procs.sigkill(leader);
    let survivors: Vec<String> = (1..=3)
        .filter(|i| *i != leader)
        .map(|i| client[i - 1].clone())
        .collect();
    let new_leader = agreed_leader(&survivors, Some(leader as u64)).await as usize;
    assert_ne!(new_leader, leader);
    let mut last_index = 0;
    for i in 0..10 {
        let k = format!("after-{i}");
        last_index = put(&survivors[i % 2], &k).await;
        keys.push(k);
    }

    phase!("restart node {leader}; all state digests converge");
    procs.start(leader, &cfgs[leader - 1].1);
    let digest = wait_for(
        "identical state digests on all three nodes at the last write",
        || async {
            let mut digests = Vec::new();
            for a in &client {
                let mut c = AdminClient::new(channel(a).await?);
                let d = c
                    .state_digest(admin::StateDigestRequest {})
                    .await
                    .ok()?
                    .into_inner();
                digests.push(d);
            }
            let first = digests[0].clone();
            (first.applied_index >= last_index && digests.iter().all(|d| *d == first))
                .then_some(first)
        },
    )
    .await;
    assert!(digest.key_count >= keys.len() as u64);

    phase!("the restarted node serves every acknowledged write linearizably");
    let mut c = KvClient::new(
        channel(&client[leader - 1])
            .await
            .expect("restarted node up"),
    );
    for k in &keys {
        let r = c
            .get(kv::GetRequest {
                key: k.clone().into_bytes(),
            })
            .await
            .expect("linearizable get")
            .into_inner();
        assert_eq!(
            r.value,
            Some(format!("value-of-{k}").into_bytes()),
            "key {k}"
        );
    }

    phase!("the current leader's metrics endpoint reports raft state");
    // Not necessarily `new_leader`: the restarted node may have campaigned.
    let leader = agreed_leader(&client, None).await as usize;
    let metrics_addr = cfgs[leader - 1]
        .0
        .network
        .metrics_addr
        .clone()
        .expect("shipped configs enable metrics");
    let body = http_get(&metrics_addr, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for name in [
        "keel_raft_term",
        "keel_raft_applied_index",
        "keel_raft_log_append_seconds",
        "keel_raft_apply_batch_seconds",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(name)),
            "metrics lack {name}"
        );
    }
    // The shipped local configs give each node one runtime worker (they share a machine).
    let workers = metric(&body, "keel_runtime_worker_threads") as usize;
    assert_eq!(
        workers,
        cfgs[leader - 1].0.runtime.worker_threads,
        "the runtime has the configured worker threads"
    );
    assert_eq!(workers, 1, "the shipped local configs ask for one");
    // The leader replicates to both followers over the raw peer transport.
    let opened = metric(&body, "keel_raft_peer_connections_opened_total");
    assert!(
        opened >= 2,
        "the leader opened {opened} raw peer connections, expected one per follower at least"
    );
}

/// Starts `keel up EXTRA --configs CONFIGS --data-dir DATA`; returns it and what it printed
/// up to "Ctrl-C stops all nodes" (the status table and the addresses).
async fn keel_up(configs: &Path, data: &Path, extra: &[&str]) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut up = tokio::process::Command::new(keel_bin())
        .arg("up")
        .args(extra)
        .arg("--configs")
        .arg(configs)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn keel up");
    let mut lines = tokio::io::BufReader::new(up.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("keel up reported within the deadline")
            .expect("read stdout")
            .expect("keel up exited before reporting");
        if line.contains("Ctrl-C stops all nodes") {
            return (up, out.join("\n"));
        }
        out.push(line);
    }
}

/// The pid of a running process with `arg` among its arguments.
fn pid_with_arg(arg: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        cmdline
            .split(|b| *b == 0)
            .any(|a| a == arg.as_bytes())
            .then_some(pid)
    })
}

/// The value of an unlabelled metric in a `/metrics` body.
fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metrics lack {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_up_starts_three_nodes_reports_a_leader_and_stops_them_on_ctrl_c() {
    let dir = tempfile::Builder::new()
        .prefix("keel-up-")
        .tempdir()
        .unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir(&configs).unwrap();
    let cfgs = rewritten_configs(&configs);
    phase!("keel up prints the status table once a leader is elected");
    let (mut up, text) = keel_up(&configs, &dir.path().join("data"), &[]).await;
    assert!(text.contains("cluster keel-local-3  leader "), "{text}");
    let shared = cfgs[0]
        .0
        .network
        .shared_client_addr
        .clone()
        .expect("shared");
    assert!(
        text.contains(&format!("SDK address:      {shared}")),
        "{text}"
    );
    assert_eq!(
        text.matches(" leader ").count() + text.matches(" follower ").count(),
        4,
        "{text}"
    );
    let leader = agreed_leader(
        &cfgs
            .iter()
            .map(|(c, _)| c.network.client_addr.clone())
            .collect::<Vec<_>>(),
        None,
    )
    .await;
    assert!((1..=3).contains(&leader));

    phase!("a SIGKILLed node leaves the other two serving under keel up");
    let victim = cfgs[0].1.display().to_string();
    let pid = pid_with_arg(&victim).expect("node 1's process");
    // SAFETY: signalling a process this test started (through keel up).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let survivors: Vec<String> = cfgs[1..]
        .iter()
        .map(|(c, _)| c.network.client_addr.clone())
        .collect();
    agreed_leader(&survivors, Some(1)).await;
    put(&survivors[0], "after-a-node-died").await;
    assert!(
        up.try_wait().expect("keel up's status").is_none(),
        "keel up kept running"
    );

    phase!("SIGINT stops every node and keel up itself");
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(up.id().expect("running") as i32, libc::SIGINT);
    }
    let status = tokio::time::timeout(WAIT, up.wait())
        .await
        .expect("keel up exits")
        .unwrap();
    assert!(status.success(), "keel up exited with {status}");
    for (c, _) in &cfgs {
        assert!(
            std::net::TcpStream::connect(&c.network.client_addr).is_err(),
            "node {} still listening after keel up stopped",
            c.node_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_client_address_outlives_a_sigkilled_node() {
    let dir = tempfile::Builder::new()
        .prefix("keel-shared-")
        .tempdir()
        .unwrap();
    let cfgs = rewritten_configs(dir.path());
    let shared = cfgs[0]
        .0
        .network
        .shared_client_addr
        .clone()
        .expect("shipped configs share one");
    assert!(cfgs
        .iter()
        .all(|(c, _)| c.network.shared_client_addr.as_ref() == Some(&shared)));
    let client: Vec<String> = cfgs
        .iter()
        .map(|(c, _)| c.network.client_addr.clone())
        .collect();
    let mut procs = Procs {
        children: (0..3).map(|_| None).collect(),
        logs: dir.path().to_path_buf(),
    };
    phase!("three processes listen on one shared address");
    for (i, (_, path)) in cfgs.iter().enumerate() {
        procs.start(i + 1, path);
    }
    agreed_leader(&client, None).await;
    // New connections spread over the nodes: every node answers on the shared address.
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    wait_for("every node answered on the shared address", || async {
        let id = node_status(&shared).await?.node_id;
        let mut seen = seen.lock().unwrap();
        seen.insert(id);
        (seen.len() == 3).then_some(())
    })
    .await;

    phase!("SIGKILL one node; every new connection lands on a survivor");
    let victim = node_status(&shared).await.expect("shared answers").node_id;
    procs.sigkill(victim as usize);
    for _ in 0..30 {
        let s = node_status(&shared).await.expect("a survivor answers");
        assert_ne!(s.node_id, victim, "a dead node's listener is gone with it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_up_tls_serves_mutual_tls_and_the_cli_uses_it() {
    let dir = tempfile::Builder::new()
        .prefix("keel-up-tls-")
        .tempdir()
        .unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir(&configs).unwrap();
    let cfgs = rewritten_configs(&configs);
    let data = dir.path().join("data");
    phase!("keel up --tls prints the client settings once a leader is elected");
    let (mut up, text) = keel_up(&configs, &data, &["--tls"]).await;
    let tls = data.join("tls");
    assert!(text.contains("TLS (mutual)"), "{text}");
    assert!(
        text.contains(&format!("KEEL_TLS_CA={}", tls.join("ca.pem").display())),
        "{text}"
    );
    // The nodes elected that leader over mutual TLS on the peer port too.
    for (_, file) in &cfgs {
        let written = tls.join("configs").join(file.file_name().unwrap());
        let toml = std::fs::read_to_string(&written).expect("a written config");
        assert!(toml.contains("[peer-tls]"), "{}: {toml}", written.display());
    }

    phase!(
        "the CLI with the printed settings is served; without a client certificate it is refused"
    );
    let addr = cfgs[0].0.network.client_addr.clone();
    let cli = |with_cert: bool| {
        let mut c = std::process::Command::new(keel_bin());
        c.args(["cluster", "status", "--address", &addr])
            .env("KEEL_TLS_CA", tls.join("ca.pem"));
        if with_cert {
            c.env("KEEL_TLS_CERT", tls.join("client.pem"))
                .env("KEEL_TLS_KEY", tls.join("client-key.pem"));
        }
        c.output().expect("run keel")
    };
    let ok = cli(true);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("cluster keel-local-3  leader "), "{stdout}");
    let refused = cli(false);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!("the connection to {addr} failed"))
            && stderr.contains("--tls-cert"),
        "{stderr}"
    );
    let plain = std::process::Command::new(keel_bin())
        .args(["cluster", "status", "--address", &addr])
        .env_remove("KEEL_TLS_CA")
        .output()
        .expect("run keel");
    assert_eq!(
        plain.status.code(),
        Some(1),
        "a plain-text client is refused"
    );

    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(up.id().expect("running") as i32, libc::SIGINT);
    }
    let status = tokio::time::timeout(WAIT, up.wait())
        .await
        .expect("keel up exits")
        .unwrap();
    assert!(status.success(), "keel up exited with {status}");
}
