//! Mutual TLS on the peer port (`[peer-tls]`), on in-process clusters whose certificates
//! come from the `keel up --tls` generator: the cluster elects, replicates and serves with
//! every peer connection under TLS (the raw transport and gRPC alike); a peer presenting a
//! certificate of another CA, no certificate, or plain text cannot read (ReadIndex) or vote;
//! a node whose certificate another CA signed cannot join as a learner; certificates are
//! reloaded in place; a half-configured section is refused at load.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use keel_config::{NodeConfig, PeerTlsConfig};
use keel_proto::admin::v1 as admin;
use keel_proto::admin::v1::admin_client::AdminClient;
use keel_proto::kv::v1 as kv;
use keel_proto::kv::v1::kv_client::KvClient;
use keel_proto::raft::v1 as raftpb;
use keel_proto::raft::v1::raft_service_client::RaftServiceClient;
use keel_server::local_cluster::{wait_for, LocalCluster};
use keel_server::tls_certs::{generate, LocalCerts};
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

fn peer_tls_of(c: &LocalCerts) -> PeerTlsConfig {
    PeerTlsConfig {
        cert: Some(c.node_cert.clone()),
        key: Some(c.node_key.clone()),
        ca: Some(c.ca.clone()),
    }
}

/// Every node with the cluster CA's certificate, except node 4 with another CA's.
fn peer_tls(cfg: &mut NodeConfig) {
    let (_, ours, theirs) = certs();
    cfg.peer_tls = peer_tls_of(if cfg.node_id == 4 { theirs } else { ours });
}

fn pem(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).expect("a PEM file")
}

async fn plain(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("client port")
}

/// A gRPC peer client of the peer port `addr`: TLS trusting the cluster's CA and presenting
/// `identity`'s node certificate, or plain text when `tls` is false.
async fn peer_client(
    addr: SocketAddr,
    tls: bool,
    identity: Option<&LocalCerts>,
) -> Result<RaftServiceClient<Channel>, tonic::transport::Error> {
    peer_client_trusting(addr, &certs().1, tls, identity).await
}

/// Like [`peer_client`], trusting `trust`'s CA.
async fn peer_client_trusting(
    addr: SocketAddr,
    trust: &LocalCerts,
    tls: bool,
    identity: Option<&LocalCerts>,
) -> Result<RaftServiceClient<Channel>, tonic::transport::Error> {
    let mut endpoint =
        Endpoint::from_shared(format!("{}://{addr}", if tls { "https" } else { "http" }))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5));
    if tls {
        let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem(&trust.ca)));
        if let Some(c) = identity {
            cfg = cfg.identity(Identity::from_pem(pem(&c.node_cert), pem(&c.node_key)));
        }
        endpoint = endpoint.tls_config(cfg)?;
    }
    Ok(RaftServiceClient::new(endpoint.connect().await?))
}

/// A ReadIndex (a linearizable read's first step) asked of `addr` as a peer.
async fn read_index(
    client: Result<RaftServiceClient<Channel>, tonic::transport::Error>,
) -> Result<u64, String> {
    let mut client = client.map_err(|e| format!("connect: {e}"))?;
    client
        .read_index(raftpb::ReadIndexRequest {
            cluster_id: "keel-test".into(),
        })
        .await
        .map(|r| r.into_inner().read_index)
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// A vote request for a far-future term, as a candidate would send it.
async fn vote(
    client: Result<RaftServiceClient<Channel>, tonic::transport::Error>,
) -> Result<bool, String> {
    let mut client = client.map_err(|e| format!("connect: {e}"))?;
    client
        .vote(raftpb::VoteRequest {
            cluster_id: "keel-test".into(),
            vote: Some(raftpb::Vote {
                term: 1_000_000,
                node_id: 9,
                committed: false,
            }),
            last_log_id: None,
        })
        .await
        .map(|r| r.into_inner().vote_granted)
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_talk_over_mutual_tls_and_refuse_everyone_else() -> anyhow::Result<()> {
    let c = LocalCluster::start(3, peer_tls).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let follower = c.running().into_iter().find(|i| *i != leader).unwrap();

    // A write through a follower: forwarded to the leader over TLS gRPC, replicated over
    // the TLS raw transport, applied everywhere.
    let mut kv = KvClient::new(plain(c.node(follower).client_addr()).await);
    let w = kv
        .put(kv::PutRequest {
            key: "k".into(),
            value: "v".into(),
        })
        .await?
        .into_inner();
    c.wait_applied(w.log_index, WAIT).await?;

    let (_, ours, theirs) = certs();
    let peer = c.node(leader).peer_addr();
    // Positive control: a peer with the cluster CA's certificate gets a read index.
    let index = read_index(peer_client(peer, true, Some(ours)).await)
        .await
        .map_err(|e| anyhow::anyhow!("a member's certificate was refused: {e}"))?;
    assert!(index >= w.log_index, "read index {index} < {}", w.log_index);

    // Another CA's certificate, no certificate, plain text: no read, no vote.
    for (what, tls, identity) in [
        ("another CA's certificate", true, Some(theirs)),
        ("no certificate", true, None),
        ("plain text", false, None),
    ] {
        let r = read_index(peer_client(peer, tls, identity).await).await;
        assert!(r.is_err(), "{what}: read index served: {r:?}");
        let v = vote(peer_client(peer, tls, identity).await).await;
        assert!(v.is_err(), "{what}: vote answered: {v:?}");
    }
    // None of that disturbed the leader (a granted far-future vote would have).
    assert_eq!(c.wait_for_leader(WAIT).await?, leader);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_ca_cannot_join() -> anyhow::Result<()> {
    let mut c = LocalCluster::start(3, peer_tls).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let n4 = c.start_joining_node(4).await?;
    let (p4, c4) = (n4.peer_addr().to_string(), n4.client_addr().to_string());
    let mut adm = AdminClient::new(plain(c.node(leader).client_addr()).await);
    // The membership change itself commits among the voters; replicating to node 4 then
    // fails on every attempt: the leader refuses node 4's certificate (and node 4 the
    // leader's).
    adm.add_learner(admin::AddLearnerRequest {
        node_id: 4,
        peer_addr: p4,
        client_addr: c4,
    })
    .await?;
    let refused = |id: u64| c.node(id).raft().peer_tls_refused();
    wait_for(
        WAIT,
        "the leader and node 4 refuse 3 handshakes each",
        || async { (refused(leader) >= 3 && refused(4) >= 3).then_some(()) },
    )
    .await?;
    assert_eq!(
        c.node(4).raft().applied_index(),
        0,
        "node 4 applied entries of a cluster whose CA it lacks"
    );
    // Node 4 never acknowledged anything: the leader has no matched index for it.
    let status = c.node(leader).raft().status();
    let n4 = status
        .replication
        .iter()
        .find(|r| r.node_id == 4)
        .expect("the leader replicates to its learner");
    assert_eq!(n4.matched_index, 0, "{n4:?}");
    c.shutdown().await;
    Ok(())
}

/// The peer files live here so the reload test can replace them.
fn rotating_dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        install(&certs().1, dir.path());
        dir
    })
    .path()
}

fn install(c: &LocalCerts, dir: &std::path::Path) {
    for (from, to) in [
        (&c.node_cert, "node.pem"),
        (&c.node_key, "node-key.pem"),
        (&c.ca, "ca.pem"),
    ] {
        std::fs::copy(from, dir.join(to)).expect("copy a PEM file");
    }
}

fn rotating_peer_tls(cfg: &mut NodeConfig) {
    let d = rotating_dir();
    cfg.peer_tls = PeerTlsConfig {
        cert: Some(d.join("node.pem")),
        key: Some(d.join("node-key.pem")),
        ca: Some(d.join("ca.pem")),
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_certificates_are_reloaded_in_place() -> anyhow::Result<()> {
    let c = LocalCluster::start(1, rotating_peer_tls).await?;
    c.wait_for_leader(WAIT).await?;
    let peer = c.node(1).peer_addr();
    let (_, ours, theirs) = certs();
    read_index(peer_client(peer, true, Some(ours)).await)
        .await
        .map_err(|e| anyhow::anyhow!("before the rotation: {e}"))?;
    // The node now trusts only the other CA (and presents its certificate).
    install(theirs, rotating_dir());
    assert!(c.node(1).reload_tls()?, "TLS is configured");
    read_index(peer_client_trusting(peer, theirs, true, Some(theirs)).await)
        .await
        .map_err(|e| anyhow::anyhow!("the new CA's peer after the reload: {e}"))?;
    let refused = read_index(peer_client(peer, true, Some(ours)).await).await;
    assert!(
        refused.is_err(),
        "the old CA's peer was served: {refused:?}"
    );
    // A broken file leaves the current certificates in place.
    std::fs::write(rotating_dir().join("ca.pem"), "not a certificate").unwrap();
    assert!(c.node(1).reload_tls().is_err());
    read_index(peer_client_trusting(peer, theirs, true, Some(theirs)).await)
        .await
        .map_err(|e| anyhow::anyhow!("after a failed reload: {e}"))?;
    c.shutdown().await;
    Ok(())
}

#[test]
fn a_half_configured_peer_tls_section_is_refused() {
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
[peer-tls]
cert = "node.pem"
key = "node-key.pem"
"#,
    )
    .unwrap();
    let e = NodeConfig::load(&path)
        .expect_err("half a peer TLS section")
        .to_string();
    assert!(
        e.contains("peer-tls: cert, key and ca must all be set"),
        "{e}"
    );
}
