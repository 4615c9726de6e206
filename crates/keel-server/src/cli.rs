//! The `keel` CLI's subcommands other than `server`: `up` (a local 3-node cluster as child
//! processes) and `cluster status`. Data goes to stdout, progress and logs to stderr.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use keel_config::NodeConfig;
use keel_proto::admin::v1 as pb;
use keel_proto::admin::v1::admin_client::AdminClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::local_cluster::wait_for;

/// Connects an admin client to `addr` (`host:port`), over TLS when `tls` is given.
pub async fn admin_client(
    addr: &str,
    timeout: Duration,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> anyhow::Result<AdminClient<tonic::transport::Channel>> {
    let channel = crate::node::client_endpoint(addr, tls)?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(AdminClient::new(channel))
}

/// Fetches the cluster status from the node at `addr`.
pub async fn cluster_status(
    addr: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> anyhow::Result<pb::ClusterStatusResponse> {
    let mut c = admin_client(addr, Duration::from_secs(3), tls).await?;
    Ok(c.cluster_status(pb::ClusterStatusRequest {})
        .await?
        .into_inner())
}

/// A client's TLS settings for the local CA's certificates (`keel up --tls`).
fn local_client_tls(
    certs: &crate::tls_certs::LocalCerts,
) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&certs.ca)?))
        .identity(Identity::from_pem(
            std::fs::read(&certs.client_cert)?,
            std::fs::read(&certs.client_key)?,
        )))
}

fn ms(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| format!("{v}ms"))
}

/// Renders a cluster status as a table.
pub fn format_status(s: &pb::ClusterStatusResponse) -> String {
    let local = s.local.clone().unwrap_or_default();
    let mut out = format!(
        "cluster {}  leader {}  term {}  (as seen by node {})\n",
        local.cluster_id,
        if local.leader_id == 0 {
            "none".to_string()
        } else {
            local.leader_id.to_string()
        },
        local.term,
        local.node_id
    );
    out.push_str(&format!(
        "{:<5} {:<10} {:<6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>14}  {:<21} {:<21}\n",
        "NODE",
        "ROLE",
        "VOTER",
        "TERM",
        "LAST_LOG",
        "COMMIT",
        "APPLIED",
        "SNAPSHOT",
        "PURGED",
        "LAST_CONTACT",
        "CLIENT",
        "PEER"
    ));
    for m in &s.members {
        let member = m.member.clone().unwrap_or_default();
        let voter = if member.voter { "yes" } else { "no" };
        match (&m.status, m.reachable) {
            (Some(st), true) => out.push_str(&format!(
                "{:<5} {:<10} {:<6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>14}  {:<21} {:<21}\n",
                member.node_id,
                st.role,
                voter,
                st.term,
                st.last_log_index,
                st.commit_index,
                st.applied_index,
                st.snapshot_index,
                st.purged_index,
                ms(st.last_leader_contact_ms_ago),
                member.client_addr,
                member.peer_addr
            )),
            _ => out.push_str(&format!(
                "{:<5} {:<10} {:<6} unreachable: {}  {:<21} {:<21}\n",
                member.node_id, "?", voter, m.error, member.client_addr, member.peer_addr
            )),
        }
    }
    out
}

/// Options of `keel up`.
pub struct UpOptions {
    pub configs_dir: PathBuf,
    pub data_dir: Option<PathBuf>,
    pub leader_timeout: Duration,
    /// Mutual TLS on the client and peer ports, with a local CA made (once) under the data
    /// directory.
    pub tls: bool,
}

/// `keel up --tls`: the configs of `configs` with TLS on (client and peer ports), written beside a local CA and its
/// certificates under `base` (made on the first `--tls` start, kept after, so clients'
/// settings stay valid across restarts).
fn with_local_tls(
    configs: Vec<(PathBuf, NodeConfig)>,
    base: &Path,
) -> anyhow::Result<(Vec<(PathBuf, NodeConfig)>, crate::tls_certs::LocalCerts)> {
    let dir = std::path::absolute(base.join("tls"))?;
    let certs = if dir.join("ca.pem").exists() {
        crate::tls_certs::LocalCerts::in_dir(&dir)
    } else {
        let name = configs
            .first()
            .map_or("keel", |(_, c)| c.cluster_id.as_str());
        crate::tls_certs::generate(&dir, name)?
    };
    let out_dir = dir.join("configs");
    std::fs::create_dir_all(&out_dir)?;
    let mut out = Vec::new();
    for (file, mut cfg) in configs {
        cfg.tls = keel_config::TlsConfig {
            cert: Some(certs.node_cert.clone()),
            key: Some(certs.node_key.clone()),
            ca: Some(certs.ca.clone()),
            require_client_cert: true,
        };
        cfg.peer_tls = keel_config::PeerTlsConfig {
            cert: Some(certs.node_cert.clone()),
            key: Some(certs.node_key.clone()),
            ca: Some(certs.ca.clone()),
        };
        let path = out_dir.join(file.file_name().unwrap_or_default());
        std::fs::write(&path, toml::to_string(&cfg)?)?;
        out.push((path, cfg));
    }
    Ok((out, certs))
}

/// Runs `keel up`: starts one `keel server` child per config in `configs_dir`, waits for a
/// leader, prints addresses and status, streams prefixed logs, and stops all on Ctrl-C.
pub async fn up(opts: UpOptions) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&opts.configs_dir)
        .with_context(|| format!("reading {}", opts.configs_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no *.toml configs in {}",
        opts.configs_dir.display()
    );
    let configs: Vec<(PathBuf, NodeConfig)> = files
        .into_iter()
        .map(|f| NodeConfig::load(&f).map(|c| (f, c)))
        .collect::<Result<_, _>>()?;
    let mut tls_certs = None;
    let configs = if opts.tls {
        let base = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data/keel-local-3"));
        let (configs, certs) = with_local_tls(configs, &base)?;
        tls_certs = Some(certs);
        configs
    } else {
        configs
    };
    let exe = std::env::current_exe().context("locating the keel binary")?;
    let mut children: Vec<(u64, Child)> = Vec::new();
    let mut restart_hints: Vec<(u64, String)> = Vec::new();
    for (file, cfg) in &configs {
        let data_dir = match &opts.data_dir {
            Some(base) => base.join(format!("node{}", cfg.node_id)),
            None => cfg.data_dir.clone(),
        };
        restart_hints.push((
            cfg.node_id,
            format!(
                "{} server --config {} --data-dir {}",
                exe.display(),
                file.display(),
                data_dir.display()
            ),
        ));
        let mut cmd = Command::new(&exe);
        // The nodes stop with `keel up`, also when it is killed outright.
        // SAFETY: prctl in the forked child before exec; async-signal-safe, touches no memory
        // of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        cmd.arg("server")
            .arg("--config")
            .arg(file)
            .arg("--data-dir")
            .arg(&data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting node {}", cfg.node_id))?;
        let prefix = format!("[node{}]", cfg.node_id);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(prefix_lines(prefix.clone(), BufReader::new(out)));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(prefix_lines(prefix, BufReader::new(err)));
        }
        eprintln!(
            "started node {} (pid {}) data={} client={} peer={}",
            cfg.node_id,
            child.id().unwrap_or(0),
            data_dir.display(),
            cfg.network.client_addr,
            cfg.network.peer_addr
        );
        children.push((cfg.node_id, child));
    }
    let addrs: Vec<String> = configs
        .iter()
        .map(|(_, c)| c.network.client_addr.clone())
        .collect();
    let client_tls = match &tls_certs {
        Some(c) => Some(local_client_tls(c)?),
        None => None,
    };
    let wait = wait_for(
        opts.leader_timeout,
        "a leader elected and known to every node",
        || {
            let addrs = addrs.clone();
            let client_tls = client_tls.clone();
            async move {
                let s = cluster_status(&addrs[0], client_tls).await.ok()?;
                let leader = s.local.as_ref()?.leader_id;
                let all = s
                    .members
                    .iter()
                    .all(|m| m.status.as_ref().is_some_and(|st| st.leader_id == leader));
                (leader != 0 && all && s.members.len() == addrs.len()).then_some(s)
            }
        },
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let all_exited = futures::future::join_all(children.iter_mut().map(|(_, c)| c.wait()));
    let status = tokio::select! {
        s = wait => s,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow::anyhow!("terminated")),
        _ = all_exited => Err(anyhow::anyhow!(
            "every node exited before a leader was elected (their errors are above)"
        )),
    };
    match status {
        Ok(s) => {
            println!("{}", format_status(&s));
            let shared: std::collections::BTreeSet<&String> = configs
                .iter()
                .filter_map(|(_, c)| c.network.shared_client_addr.as_ref())
                .collect();
            for a in &shared {
                println!("SDK address:      {a} (Temporal's default; any live node answers)");
            }
            let web: std::collections::BTreeSet<&String> = configs
                .iter()
                .filter_map(|(_, c)| {
                    c.network
                        .shared_http_addr
                        .as_ref()
                        .or(c.network.http_addr.as_ref())
                })
                .collect();
            for a in web {
                println!("web UI, HTTP API: http://{a}/  (Temporal's /api/v1/...)");
            }
            println!("client addresses: {}", addrs.join(", "));
            if let Some(c) = &tls_certs {
                println!(
                    "TLS (mutual): every client needs the CA and a client certificate:\n  \
                     CA          {}\n  certificate {}\n  key         {}\n  \
                     CLI:    export KEEL_TLS_CA={} KEEL_TLS_CERT={} KEEL_TLS_KEY={}\n  \
                     Python: Client.connect(\"localhost:7233\", tls=TLSConfig(server_root_ca_cert=open(CA, \"rb\").read(), client_cert=open(CERT, \"rb\").read(), client_private_key=open(KEY, \"rb\").read()))",
                    c.ca.display(),
                    c.client_cert.display(),
                    c.client_key.display(),
                    c.ca.display(),
                    c.client_cert.display(),
                    c.client_key.display(),
                );
            }
            println!("status any time:  keel cluster status   (workflows: keel workflow list)");
            println!("Ctrl-C stops all nodes.");
        }
        Err(e) => {
            eprintln!("keel up: {e:#}");
            stop_all(&mut children).await;
            return Err(e);
        }
    }
    // A node that dies (killed to try a failover, say) leaves the others serving: the
    // cluster stays available while a majority lives. `keel up` ends on Ctrl-C, SIGTERM,
    // or when no node is left.
    while !children.is_empty() {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopping all nodes");
                break;
            }
            _ = term.recv() => {
                eprintln!("SIGTERM: stopping all nodes");
                break;
            }
            (id, code) = first_exit(&mut children) => {
                children.retain(|(i, _)| *i != id);
                let restart = restart_hints
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, h)| h.as_str())
                    .unwrap_or_default();
                eprintln!(
                    "node {id} exited ({code}); the other {} keep serving while they are a majority. Restart it with: {restart}",
                    children.len()
                );
            }
        }
    }
    stop_all(&mut children).await;
    Ok(())
}

async fn first_exit(children: &mut [(u64, Child)]) -> (u64, String) {
    let waits = children.iter_mut().map(|(id, c)| {
        let id = *id;
        Box::pin(async move {
            let code = c
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            (id, code)
        })
    });
    futures::future::select_all(waits).await.0
}

async fn prefix_lines<R: tokio::io::AsyncBufRead + Unpin>(prefix: String, reader: R) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{prefix} {line}");
    }
}

async fn stop_all(children: &mut [(u64, Child)]) {
    for (_, c) in children.iter() {
        if let Some(pid) = c.id() {
            // SAFETY: sending SIGTERM to a child we spawned; no memory is involved.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
    for (id, c) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), c.wait()).await {
            Ok(Ok(s)) => eprintln!("node {id} stopped ({s})"),
            _ => {
                eprintln!("node {id} did not stop within 10s; killing it");
                let _ = c.kill().await;
            }
        }
    }
}

/// The shipped three-node local configs, built into the binary so `keel up` works from any
/// directory, not only a checkout.
const EMBEDDED_LOCAL_3: [(&str, &str); 3] = [
    (
        "node1.toml",
        include_str!("../../../cluster-configs/local-3/node1.toml"),
    ),
    (
        "node2.toml",
        include_str!("../../../cluster-configs/local-3/node2.toml"),
    ),
    (
        "node3.toml",
        include_str!("../../../cluster-configs/local-3/node3.toml"),
    ),
];

/// Where `keel up` writes the built-in configs when no `cluster-configs/local-3` is found.
const MATERIALIZED_CONFIGS: &str = "data/keel-local-3/configs";

/// Resolves `keel up`'s default configs dir: `cluster-configs/local-3` under the working
/// directory; else the checkout the binary was built from, if it is still there; else the
/// built-in copy, written to `data/keel-local-3/configs` (next to the data it configures).
pub fn default_configs_dir() -> anyhow::Result<PathBuf> {
    let rel = Path::new("cluster-configs/local-3");
    if rel.is_dir() {
        return Ok(rel.to_path_buf());
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-configs/local-3");
    if built_from.is_dir() {
        return Ok(built_from);
    }
    materialize_configs(Path::new(MATERIALIZED_CONFIGS))
}

/// Writes the built-in configs into `dir` (created if missing; existing files are left as
/// the user may have edited them) and returns it.
pub fn materialize_configs(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in EMBEDDED_LOCAL_3 {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_configs_are_the_shipped_three_node_cluster_and_keep_user_edits() {
        let dir = tempfile::tempdir().unwrap();
        let out = materialize_configs(&dir.path().join("configs")).unwrap();
        let mut ids: Vec<u64> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| NodeConfig::load(&e.unwrap().path()).unwrap().node_id)
            .collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3]);
        let node1 = out.join("node1.toml");
        let edited = std::fs::read_to_string(&node1)
            .unwrap()
            .replace("heartbeat-interval-ms = 50", "heartbeat-interval-ms = 75");
        std::fs::write(&node1, &edited).unwrap();
        materialize_configs(&out).unwrap();
        assert_eq!(std::fs::read_to_string(&node1).unwrap(), edited);
        assert_eq!(
            NodeConfig::load(&node1).unwrap().raft.heartbeat_interval_ms,
            75
        );
    }
}
