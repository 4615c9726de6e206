//! One Keel node: replication plus the servers on its peer, client and metrics ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use keel_config::NodeConfig;
use keel_proto::admin::v1::admin_server::AdminServer;
use keel_proto::kv::v1::kv_server::KvServer;
use keel_proto::temporal::operatorservice::v1::operator_service_server::OperatorServiceServer;
use keel_proto::temporal::workflowservice::v1::workflow_service_server::WorkflowServiceServer;
use keel_raft::{KeelNode, RaftNode, RaftSettings, RpcSettings};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tracing::Instrument;

use crate::admin::AdminService;
use crate::error::{Error, Result};
use crate::kv::KvService;

/// Decode/encode limit of Temporal messages (tonic's 4 MiB default is below what histories
/// and payloads need; clients retry tonic's OUT_OF_RANGE forever).
const MAX_TEMPORAL_MESSAGE_BYTES: usize = 128 << 20;

/// Bound sockets of a node. Binding is separate from starting so tests can bind port 0 and
/// learn the addresses before any node starts.
pub struct Listeners {
    pub peer: TcpListener,
    pub client: TcpListener,
    pub metrics: Option<TcpListener>,
    /// `network.shared-client-addr`, bound with `SO_REUSEPORT`.
    pub shared_client: Option<TcpListener>,
    /// `network.http-addr` and `network.shared-http-addr` (the HTTP API and the web UI).
    pub http: Option<TcpListener>,
    pub shared_http: Option<TcpListener>,
}

/// Binds `addr` so that other processes (the other nodes of a local cluster) may bind it too:
/// the kernel spreads incoming connections over the live listeners.
pub fn bind_shared(addr: &str) -> std::io::Result<TcpListener> {
    let sock_addr: SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = if sock_addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(sock_addr)?;
    socket.listen(1024)
}

impl Listeners {
    /// Binds the addresses of `cfg.network`.
    pub async fn bind(cfg: &NodeConfig) -> Result<Listeners> {
        let bind = |what: &'static str, addr: String| async move {
            TcpListener::bind(&addr)
                .await
                .map_err(|source| Error::Bind { what, addr, source })
        };
        Ok(Listeners {
            peer: bind("network.peer-addr", cfg.network.peer_addr.clone()).await?,
            client: bind("network.client-addr", cfg.network.client_addr.clone()).await?,
            metrics: match &cfg.network.metrics_addr {
                Some(a) => Some(bind("network.metrics-addr", a.clone()).await?),
                None => None,
            },
            shared_client: match &cfg.network.shared_client_addr {
                Some(a) => Some(check_shared_owner(cfg, a).await.and_then(|()| {
                    bind_shared(a).map_err(|source| Error::Bind {
                        what: "network.shared-client-addr",
                        addr: a.clone(),
                        source,
                    })
                })?),
                None => None,
            },
            http: match &cfg.network.http_addr {
                Some(a) => Some(bind("network.http-addr", a.clone()).await?),
                None => None,
            },
            shared_http: match &cfg.network.shared_http_addr {
                Some(a) => Some(bind_shared(a).map_err(|source| Error::Bind {
                    what: "network.shared-http-addr",
                    addr: a.clone(),
                    source,
                })?),
                None => None,
            },
        })
    }
}

/// Refuses a shared client address already served by another cluster's nodes: with
/// `SO_REUSEPORT` the kernel would spread clients over both clusters (two `keel up` on one
/// machine). Nothing listening, or a node of this cluster, is fine.
async fn check_shared_owner(cfg: &NodeConfig, addr: &str) -> Result<()> {
    use keel_proto::admin::v1::admin_client::AdminClient;
    use keel_proto::admin::v1::NodeStatusRequest;
    let probe = Duration::from_millis(500);
    match tokio::time::timeout(probe, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => {}
        _ => return Ok(()), // refused or silent: nobody serves it
    }
    let tls = client_tls(&cfg.tls)?;
    let status = async {
        let channel = client_endpoint(addr, tls)
            .map_err(|e| e.to_string())?
            .connect_timeout(probe)
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        AdminClient::new(channel)
            .node_status(NodeStatusRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.message().to_string())
    }
    .await;
    match status {
        Ok(s) if s.cluster_id == cfg.cluster_id => Ok(()),
        Ok(s) => Err(Error::SharedAddrTaken {
            addr: addr.to_string(),
            by: format!("node {} of cluster {:?}", s.node_id, s.cluster_id),
        }),
        // No definite answer (a node of this cluster still starting, a TLS mismatch, another
        // program): bind, but say so.
        Err(e) => {
            tracing::warn!(%addr, error = %e, "something already listens on the shared client address and did not say which cluster it serves");
            Ok(())
        }
    }
}

/// Translates a node config into the replication layer's settings.
pub fn raft_settings(cfg: &NodeConfig) -> RaftSettings {
    let r = &cfg.raft;
    let rpc = &cfg.rpc;
    RaftSettings {
        cluster_id: cfg.cluster_id.clone(),
        node_id: cfg.node_id,
        data_dir: cfg.data_dir.clone(),
        self_node: KeelNode {
            peer_addr: cfg.network.peer_addr.clone(),
            client_addr: cfg.network.client_addr.clone(),
        },
        heartbeat_interval_ms: r.heartbeat_interval_ms,
        election_timeout_min_ms: r.election_timeout_min_ms,
        election_timeout_max_ms: r.election_timeout_max_ms,
        snapshot_every_entries: r.snapshot_every_entries,
        keep_entries_after_snapshot: r.keep_entries_after_snapshot,
        purge_batch_size: r.purge_batch_size,
        max_append_entries: r.max_append_entries,
        leader_wait_ms: r.leader_wait_ms,
        max_batch_commands: r.max_batch_commands as usize,
        max_in_flight_batches: r.max_in_flight_batches as usize,
        rpc: RpcSettings {
            connect_timeout: Duration::from_millis(rpc.connect_timeout_ms),
            keepalive_interval: Duration::from_millis(rpc.keepalive_interval_ms),
            keepalive_timeout: Duration::from_millis(rpc.keepalive_timeout_ms),
            request_timeout: Duration::from_millis(rpc.request_timeout_ms),
            forward_timeout: Duration::from_millis(rpc.forward_timeout_ms),
            snapshot_chunk_bytes: r.snapshot_chunk_bytes as usize,
            peer_routes: cfg
                .testing
                .peer_routes
                .iter()
                .map(|r| (r.node_id, r.peer_addr.clone()))
                .collect(),
            tls: None,
        },
        allow_clock_offset: cfg.testing.allow_clock_offset,
    }
}

/// A running node.
pub struct Node {
    raft: RaftNode,
    frontend: std::sync::Arc<keel_frontend::Frontend>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    connections: keel_raft::conn::Connections,
    peer_addr: SocketAddr,
    client_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shared_client_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    tls: Option<std::sync::Arc<crate::tls_server::ReloadingTls>>,
    peer_tls: Option<(
        keel_config::PeerTlsConfig,
        std::sync::Arc<keel_raft::PeerTls>,
    )>,
}

impl Node {
    /// Starts replication and all servers; on the first start of the bootstrap node,
    /// initializes the cluster's membership.
    pub async fn start(cfg: NodeConfig, listeners: Listeners) -> Result<Node> {
        let span = tracing::info_span!("node", node_id = cfg.node_id);
        let peer_tls = if cfg.peer_tls.enabled() {
            let (server, client) = crate::tls_server::peer_configs(&cfg.peer_tls)?;
            Some(keel_raft::PeerTls::new(server, client))
        } else {
            None
        };
        let mut settings = raft_settings(&cfg);
        settings.rpc.tls = peer_tls.clone();
        let raft = RaftNode::start(settings).instrument(span.clone()).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let addr = |l: &TcpListener, what: &'static str| {
            l.local_addr().map_err(|source| Error::Bind {
                what,
                addr: String::new(),
                source,
            })
        };
        let peer_addr = addr(&listeners.peer, "network.peer-addr")?;
        let client_addr = addr(&listeners.client, "network.client-addr")?;
        let metrics_addr = match &listeners.metrics {
            Some(l) => Some(addr(l, "network.metrics-addr")?),
            None => None,
        };
        let shared_client_addr = match &listeners.shared_client {
            Some(l) => Some(addr(l, "network.shared-client-addr")?),
            None => None,
        };
        let mut tasks = Vec::new();

        // Connections the node cuts when it crashes in-process (see `keel_raft::conn`).
        let connections = keel_raft::conn::Connections::default();
        let peer = keel_raft::service::serve_peers(
            raft.clone(),
            listeners.peer,
            shutdown_rx.clone(),
            connections.clone(),
        );
        tasks.push(tokio::spawn(
            async move {
                if let Err(e) = peer.await {
                    tracing::error!(error = %e, "peer server failed");
                }
            }
            .instrument(span.clone()),
        ));

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<AdminServer<AdminService>>().await;
        health.set_serving::<KvServer<KvService>>().await;
        health
            .set_serving::<WorkflowServiceServer<keel_frontend::Frontend>>()
            .await;
        health
            .set_serving::<OperatorServiceServer<keel_frontend::Frontend>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(keel_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(keel_proto::temporal::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| Error::Reflection(e.to_string()))?;
        let frontend =
            std::sync::Arc::new(keel_frontend::Frontend::new(raft.clone()).with_admission(
                keel_frontend::admission::Admission::new(keel_frontend::admission::Limits {
                    resumed_wait_ms: cfg.admission.max_resumed_task_wait_ms,
                    new_wait_ms: cfg.admission.max_new_task_wait_ms,
                    max_hold_ms: cfg.admission.max_start_hold_ms,
                }),
            ));
        // The shared address serves the same services through the same tracked connections.
        let incoming = {
            use futures::StreamExt;
            let own = connections.incoming(listeners.client).boxed();
            match listeners.shared_client {
                Some(l) => futures::stream::select(own, connections.incoming(l)).boxed(),
                None => own,
            }
        };
        let tls = crate::tls_server::ReloadingTls::new(&cfg.tls)?;
        let incoming = {
            use futures::StreamExt;
            use keel_raft::conn::Conn;
            match &tls {
                Some(t) => t.clone().incoming(incoming).boxed(),
                None => incoming.map(|c| c.map(Conn::Plain)).boxed(),
            }
        };
        let client = tonic::transport::Server::builder()
            .layer(crate::unimplemented::NameUnimplementedLayer)
            .layer(crate::api_keys::ApiKeyLayer {
                keys: crate::api_keys::ApiKeys::new(&cfg.api_keys),
            })
            // Every service on the client port takes gzip: the Python SDK's check_health sends
            // it compressed.
            .add_service(
                health_service
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip),
            )
            .add_service(
                reflection
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip),
            )
            .add_service(
                AdminServer::new(AdminService::new(raft.clone(), cfg.tls.clone()))
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip),
            )
            .add_service(
                WorkflowServiceServer::from_arc(frontend.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip)
                    .max_decoding_message_size(MAX_TEMPORAL_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_TEMPORAL_MESSAGE_BYTES),
            )
            .add_service(
                OperatorServiceServer::from_arc(frontend.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip),
            )
            .add_service(
                KvServer::new(KvService::new(raft.clone()))
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip),
            )
            .serve_with_incoming_shutdown(incoming, signalled(shutdown_rx.clone()));
        tasks.push(tokio::spawn(
            async move {
                if let Err(e) = client.await {
                    tracing::error!(error = %e, "client server failed");
                }
            }
            .instrument(span.clone()),
        ));

        let http_addr = match &listeners.http {
            Some(l) => Some(addr(l, "network.http-addr")?),
            None => None,
        };
        let api = std::sync::Arc::new(crate::http_api::HttpApi::new(client_addr, cfg.tls.clone()));
        for l in [listeners.http, listeners.shared_http]
            .into_iter()
            .flatten()
        {
            tasks.push(tokio::spawn(
                crate::http_api::serve(l, api.clone(), signalled(shutdown_rx.clone()))
                    .instrument(span.clone()),
            ));
        }

        if let Some(l) = listeners.metrics {
            tasks.push(tokio::spawn(
                crate::metrics::serve(
                    l,
                    raft.clone(),
                    frontend.clone(),
                    signalled(shutdown_rx.clone()),
                )
                .instrument(span.clone()),
            ));
        }

        tasks.push(tokio::spawn(
            crate::namespaces::ensure_default(raft.clone(), shutdown_rx.clone())
                .instrument(span.clone()),
        ));
        tasks.push(tokio::spawn(
            crate::drivers::run_timer_driver(raft.clone(), shutdown_rx.clone())
                .instrument(span.clone()),
        ));

        if cfg.is_bootstrap_node() {
            let members: BTreeMap<u64, KeelNode> = cfg
                .members
                .iter()
                .map(|m| {
                    (
                        m.node_id,
                        KeelNode {
                            peer_addr: m.peer_addr.clone(),
                            client_addr: m.client_addr.clone(),
                        },
                    )
                })
                .collect();
            raft.initialize_if_new(members)
                .instrument(span.clone())
                .await?;
        }
        tracing::info!(node_id = cfg.node_id, %peer_addr, %client_addr, ?metrics_addr, ?shared_client_addr, ?http_addr, "node serving");
        Ok(Node {
            raft,
            frontend,
            shutdown,
            tasks,
            connections,
            peer_addr,
            client_addr,
            metrics_addr,
            shared_client_addr,
            http_addr,
            tls,
            peer_tls: peer_tls.map(|t| (cfg.peer_tls.clone(), t)),
        })
    }

    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// This node's Temporal frontend (tests inspect its node-local matching state).
    pub fn frontend(&self) -> &keel_frontend::Frontend {
        &self.frontend
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn shared_client_addr(&self) -> Option<SocketAddr> {
        self.shared_client_addr
    }

    /// Reads the certificates, keys and CAs of the client port and the peer port again
    /// (SIGHUP): new connections use them, open ones keep theirs. Returns whether any TLS is
    /// on. An error leaves the current ones in place (both are read before either changes).
    pub fn reload_tls(&self) -> Result<bool> {
        let peer = match &self.peer_tls {
            Some((cfg, _)) => Some(crate::tls_server::peer_configs(cfg)?),
            None => None,
        };
        if let Some(t) = &self.tls {
            t.reload()?;
        }
        if let (Some((_, live)), Some((server, client))) = (&self.peer_tls, peer) {
            live.replace(server, client);
        }
        Ok(self.tls.is_some() || self.peer_tls.is_some())
    }

    /// The HTTP API and web UI address, if configured.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Open client connections this node accepted on the shared client address.
    pub fn shared_client_connections(&self) -> usize {
        self.shared_client_addr
            .map_or(0, |a| self.connections.open_on(a))
    }

    /// Stops serving (in-flight requests finish), then stops Raft.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.raft.shutdown().await;
        tracing::info!(node_id = self.raft.id(), "node stopped");
    }

    /// Stops abruptly, like a crashed process: connections are dropped mid-request.
    pub async fn crash(self) {
        for t in &self.tasks {
            t.abort();
        }
        // Connection tasks outlive the server tasks: cut their sockets, as a dying process
        // would, so clients see it and in-flight requests release the node's state.
        self.connections.cut_all();
        for t in self.tasks {
            let _ = t.await;
        }
        self.raft.shutdown().await;
        tracing::info!(node_id = self.raft.id(), "node crashed (in-process)");
    }
}

fn read_pem(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::TlsFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// An endpoint of the client port at `addr` (`host:port`): `https` with `tls`, else `http`.
pub fn client_endpoint(
    addr: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> std::result::Result<tonic::transport::Endpoint, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))?;
    match tls {
        Some(tls) => endpoint.tls_config(tls),
        None => Ok(endpoint),
    }
}

/// How this node's HTTP port reaches its own TLS client port: trusting the cluster CA and,
/// when client certificates are required, presenting the node's own.
///
/// Reads the files on every call, so a reload of the certificates reaches these clients too.
pub fn client_tls(t: &keel_config::TlsConfig) -> Result<Option<tonic::transport::ClientTlsConfig>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let (Some(cert), Some(key)) = (&t.cert, &t.key) else {
        return Ok(None);
    };
    let mut tls = ClientTlsConfig::new();
    match &t.ca {
        Some(ca) => tls = tls.ca_certificate(Certificate::from_pem(read_pem("tls.ca", ca)?)),
        // Without a CA the node's own certificate is the trust anchor (self-signed).
        None => tls = tls.ca_certificate(Certificate::from_pem(read_pem("tls.cert", cert)?)),
    }
    if t.require_client_cert {
        tls = tls.identity(Identity::from_pem(
            read_pem("tls.cert", cert)?,
            read_pem("tls.key", key)?,
        ));
    }
    Ok(Some(tls))
}

async fn signalled(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
