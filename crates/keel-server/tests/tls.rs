//! TLS on the client port with client certificates required (mutual TLS), on a 3-node
//! in-process cluster whose certificates come from the `keel up --tls` generator: a client
//! with a certificate of the cluster's CA is served (gRPC, and the HTTP API, which calls the
//! TLS port itself); a client without a certificate, one with a certificate of another CA,
//! and a plain-text client are refused; a half-configured TLS section is refused at load.

use std::sync::OnceLock;
use std::time::Duration;

use keel_config::{NodeConfig, TlsConfig};
use keel_server::local_cluster::LocalCluster;
use keel_server::tls_certs::{generate, LocalCerts};
use temporalio_protos::temporal::api::workflowservice::v1 as api;
use temporalio_protos::temporal::api::workflowservice::v1::workflow_service_client::WorkflowServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const WAIT: Duration = Duration::from_secs(20);

/// The cluster's CA and certificates, and another CA's, made once per test process.
fn certs() -> &'static (tempfile::TempDir, LocalCerts, LocalCerts) {
    static CERTS: OnceLock<(tempfile::TempDir, LocalCerts, LocalCerts)> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let ours = generate(&dir.path().join("ours"), "keel-test").expect("certificates");
        let theirs = generate(&dir.path().join("theirs"), "elsewhere").expect("certificates");
        (dir, ours, theirs)
    })
}

fn mutual_tls(cfg: &mut NodeConfig) {
    let c = &certs().1;
    cfg.tls = TlsConfig {
        cert: Some(c.node_cert.clone()),
        key: Some(c.node_key.clone()),
        ca: Some(c.ca.clone()),
        require_client_cert: true,
    };
}

fn pem(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).expect("a PEM file")
}

/// A client of `addr` over TLS trusting the cluster's CA, presenting `identity` if any.
async fn tls_client(
    addr: std::net::SocketAddr,
    identity: Option<&LocalCerts>,
) -> Result<WorkflowServiceClient<Channel>, tonic::transport::Error> {
    connect(addr, &certs().1, identity).await
}

/// A client of `addr` over TLS trusting `ca`'s CA, presenting `identity`'s client certificate.
async fn connect(
    addr: std::net::SocketAddr,
    ca: &LocalCerts,
    identity: Option<&LocalCerts>,
) -> Result<WorkflowServiceClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem(&ca.ca)));
    if let Some(c) = identity {
        tls = tls.identity(Identity::from_pem(pem(&c.client_cert), pem(&c.client_key)));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .connect()
        .await?;
    Ok(WorkflowServiceClient::new(channel))
}

async fn system_info(
    client: Result<WorkflowServiceClient<Channel>, tonic::transport::Error>,
) -> Result<(), String> {
    let mut client = client.map_err(|e| format!("connect: {e}"))?;
    client
        .get_system_info(api::GetSystemInfoRequest {})
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_on_the_client_port() -> anyhow::Result<()> {
    let c = LocalCluster::start(3, mutual_tls).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let follower = c.running().into_iter().find(|i| *i != leader).unwrap();
    let addr = c.node(follower).client_addr();
    let (_, ours, theirs) = certs();

    // A client with the cluster CA's certificate: served, through a follower.
    system_info(tls_client(addr, Some(ours)).await)
        .await
        .map_err(|e| anyhow::anyhow!("a good client was refused: {e}"))?;
    let mut good = tls_client(addr, Some(ours)).await?;
    let started = good
        .start_workflow_execution(api::StartWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_id: "tls-1".into(),
            workflow_type: Some(temporalio_protos::temporal::api::common::v1::WorkflowType {
                name: "t".into(),
            }),
            task_queue: Some(temporalio_protos::temporal::api::taskqueue::v1::TaskQueue {
                name: "tq".into(),
                ..Default::default()
            }),
            request_id: "tls-r1".into(),
            ..Default::default()
        })
        .await;
    // The default namespace may still be on its way; the TLS session itself worked.
    if let Err(s) = &started {
        assert_eq!(s.code(), tonic::Code::NotFound, "{s}");
    }

    // No certificate, another CA's certificate, plain text: refused.
    let none = system_info(tls_client(addr, None).await).await;
    assert!(none.is_err(), "a client without a certificate was served");
    let foreign = system_info(tls_client(addr, Some(theirs)).await).await;
    assert!(foreign.is_err(), "a client of another CA was served");
    let plain = async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .connect()
            .await?;
        anyhow::Ok(WorkflowServiceClient::new(channel))
    }
    .await;
    let plain = match plain {
        Ok(mut client) => client
            .get_system_info(api::GetSystemInfoRequest {})
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!plain, "a plain-text client was served");

    // The HTTP port calls the TLS client port with the node's own certificate; the cluster
    // status reaches the other members over TLS too.
    let http = c.node(follower).http_addr().expect("an HTTP port");
    let body = http_get(http, "/api/v1/keel/cluster").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert_eq!(body.matches("\"reachable\":true").count(), 3, "{body}");
    c.shutdown().await;
    Ok(())
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("HTTP port");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[test]
fn a_half_configured_tls_section_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        r#"
cluster-id = "c"
node-id = 1
data-dir = "d"
[network]
peer-addr = "127.0.0.1:1"
client-addr = "127.0.0.1:2"
[tls]
cert = "node.pem"
"#,
    )
    .unwrap();
    let e = NodeConfig::load(&path)
        .expect_err("half a TLS section")
        .to_string();
    assert!(e.contains("tls: cert and key must both be set"), "{e}");
}

/// A node whose certificate files are replaced, then reloaded (what SIGHUP does).
fn rotating_dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        install(&certs().1, dir.path());
        dir
    })
    .path()
}

/// Copies a CA's node certificate, key and CA into `dir` under fixed names.
fn install(c: &LocalCerts, dir: &std::path::Path) {
    for (from, to) in [
        (&c.node_cert, "node.pem"),
        (&c.node_key, "node-key.pem"),
        (&c.ca, "ca.pem"),
    ] {
        std::fs::copy(from, dir.join(to)).expect("copy a PEM file");
    }
}

fn rotating_tls(cfg: &mut NodeConfig) {
    let d = rotating_dir();
    cfg.tls = TlsConfig {
        cert: Some(d.join("node.pem")),
        key: Some(d.join("node-key.pem")),
        ca: Some(d.join("ca.pem")),
        require_client_cert: true,
    };
}

/// A client trusting `ca`'s CA and presenting its client certificate.
async fn client_of(
    addr: std::net::SocketAddr,
    ca: &LocalCerts,
) -> Result<WorkflowServiceClient<Channel>, tonic::transport::Error> {
    connect(addr, ca, Some(ca)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reloaded_in_place() -> anyhow::Result<()> {
    let c = LocalCluster::start(1, rotating_tls).await?;
    c.wait_for_leader(WAIT).await?;
    let addr = c.node(1).client_addr();
    let (_, ours, theirs) = certs();
    system_info(client_of(addr, ours).await)
        .await
        .map_err(|e| anyhow::anyhow!("before the rotation: {e}"))?;
    // Rotate to another CA's files; nothing changes until the reload.
    install(theirs, rotating_dir());
    assert!(system_info(client_of(addr, theirs).await).await.is_err());
    assert!(c.node(1).reload_tls()?, "TLS is configured");
    system_info(client_of(addr, theirs).await)
        .await
        .map_err(|e| anyhow::anyhow!("after the reload: {e}"))?;
    assert!(
        system_info(client_of(addr, ours).await).await.is_err(),
        "the old CA's clients are refused after the reload"
    );
    // The HTTP port reaches the TLS client port with the reloaded files too.
    let http = c.node(1).http_addr().expect("an HTTP port");
    let body = http_get(http, "/api/v1/keel/node").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    // A broken file leaves the current certificates in place.
    std::fs::write(rotating_dir().join("node.pem"), "not a certificate").unwrap();
    assert!(c.node(1).reload_tls().is_err());
    system_info(client_of(addr, theirs).await)
        .await
        .map_err(|e| anyhow::anyhow!("after a failed reload: {e}"))?;
    c.shutdown().await;
    Ok(())
}
