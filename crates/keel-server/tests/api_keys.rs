//! API keys on the client port (`[[api-keys]]`) on a 3-node in-process cluster: no key or
//! an unknown key is UNAUTHENTICATED; a key scoped to a namespace is served there and refused
//! (PERMISSION_DENIED, naming the key) in another namespace, for cluster-wide RPCs and for
//! the key-value API, whether the request is plain or gzip-compressed; a key of all
//! namespaces is served everywhere; health and node status need none; the HTTP API passes
//! the caller's key through (401 / 403 / 200); the CLI sends `--api-key`.

use std::net::SocketAddr;
use std::time::Duration;

use keel_config::{ApiKeyConfig, NodeConfig};
use keel_proto::admin::v1 as admin;
use keel_proto::admin::v1::admin_client::AdminClient;
use keel_proto::kv::v1 as kv;
use keel_proto::kv::v1::kv_client::KvClient;
use keel_server::api_keys::sha256_hex;
use keel_server::local_cluster::{wait_for, LocalCluster};
use temporalio_protos::temporal::api::common::v1::WorkflowType;
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1 as api;
use temporalio_protos::temporal::api::workflowservice::v1::workflow_service_client::WorkflowServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);
const ORDERS_KEY: &str = "k-orders-3f9a";
const ADMIN_KEY: &str = "k-admin-77c1";

fn with_keys(cfg: &mut NodeConfig) {
    cfg.api_keys = vec![
        ApiKeyConfig {
            name: "orders-service".into(),
            sha256: sha256_hex(ORDERS_KEY),
            namespaces: vec!["orders".into()],
        },
        ApiKeyConfig {
            name: "ops".into(),
            sha256: sha256_hex(ADMIN_KEY),
            namespaces: vec!["*".into()],
        },
    ];
}

/// Sends `authorization: Bearer <key>` when there is a key.
#[derive(Clone)]
struct Auth(Option<&'static str>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(k) = self.0 {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        Ok(r)
    }
}

fn bearer(key: Option<&'static str>) -> Auth {
    Auth(key)
}

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("client port")
}

async fn workflows(
    addr: SocketAddr,
    key: Option<&'static str>,
) -> WorkflowServiceClient<InterceptedService<Channel, Auth>> {
    WorkflowServiceClient::with_interceptor(channel(addr).await, bearer(key))
}

fn start(namespace: &str, id: &str) -> api::StartWorkflowExecutionRequest {
    api::StartWorkflowExecutionRequest {
        namespace: namespace.into(),
        workflow_id: id.into(),
        workflow_type: Some(WorkflowType { name: "t".into() }),
        task_queue: Some(TaskQueue {
            name: "tq".into(),
            ..Default::default()
        }),
        request_id: format!("r-{id}"),
        ..Default::default()
    }
}

fn code<T>(r: &Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_and_scoped_to_namespaces() -> anyhow::Result<()> {
    let c = LocalCluster::start(3, with_keys).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let addr = c.node(leader).client_addr();

    // No key, an unknown key: UNAUTHENTICATED. Health and node status need none.
    let r = workflows(addr, None)
        .await
        .get_system_info(api::GetSystemInfoRequest {})
        .await;
    assert_eq!(code(&r), Code::Unauthenticated, "{r:?}");
    let r = workflows(addr, Some("k-nope"))
        .await
        .get_system_info(api::GetSystemInfoRequest {})
        .await;
    assert_eq!(code(&r), Code::Unauthenticated, "{r:?}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(addr).await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await?;
    AdminClient::new(channel(addr).await)
        .node_status(admin::NodeStatusRequest {})
        .await?;

    // The key of all namespaces registers "orders" and lists namespaces.
    let mut ops = workflows(addr, Some(ADMIN_KEY)).await;
    ops.register_namespace(api::RegisterNamespaceRequest {
        namespace: "orders".into(),
        ..Default::default()
    })
    .await?;
    ops.list_namespaces(api::ListNamespacesRequest::default())
        .await?;

    // The orders key: connects (GetSystemInfo), starts in "orders" ...
    let mut orders = workflows(addr, Some(ORDERS_KEY)).await;
    orders.get_system_info(api::GetSystemInfoRequest {}).await?;
    wait_for(WAIT, "a start in namespace orders is served", || {
        let mut orders = orders.clone();
        async move {
            orders
                .start_workflow_execution(start("orders", "o-1"))
                .await
                .ok()
        }
    })
    .await?;
    // ... and nothing else.
    let r = orders
        .start_workflow_execution(start("default", "d-1"))
        .await;
    assert_eq!(code(&r), Code::PermissionDenied, "{r:?}");
    let m = r.unwrap_err().message().to_string();
    assert!(
        m.contains("\"orders-service\"") && m.contains("\"default\""),
        "{m}"
    );
    let r = orders
        .list_namespaces(api::ListNamespacesRequest::default())
        .await;
    assert_eq!(code(&r), Code::PermissionDenied, "{r:?}");
    let r = KvClient::with_interceptor(channel(addr).await, bearer(Some(ORDERS_KEY)))
        .put(kv::PutRequest {
            key: "k".into(),
            value: "v".into(),
        })
        .await;
    assert_eq!(code(&r), Code::PermissionDenied, "{r:?}");
    let r = KvClient::with_interceptor(channel(addr).await, bearer(Some(ADMIN_KEY)))
        .put(kv::PutRequest {
            key: "k".into(),
            value: "v".into(),
        })
        .await;
    assert_eq!(code(&r), Code::Ok, "{r:?}");

    // Compressed requests are read for their namespace too.
    let mut gz = workflows(addr, Some(ORDERS_KEY))
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let r = gz.start_workflow_execution(start("default", "d-2")).await;
    assert_eq!(code(&r), Code::PermissionDenied, "{r:?}");
    gz.start_workflow_execution(start("orders", "o-2")).await?;

    // The HTTP API passes the caller's key through.
    let http = c.node(leader).http_addr().expect("an HTTP port");
    let get = |path: &'static str, key: Option<&'static str>| http_get(http, path, key);
    let r = get("/api/v1/namespaces/orders/workflows", None).await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = get("/api/v1/namespaces/default/workflows", Some(ORDERS_KEY)).await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = get("/api/v1/namespaces/orders/workflows", Some(ORDERS_KEY)).await;
    assert!(r.starts_with("HTTP/1.1 200") && r.contains("o-1"), "{r}");

    // The CLI sends --api-key; without one it says how to pass it.
    let cli = |key: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keel"));
        cmd.args([
            "workflow",
            "list",
            "-n",
            "orders",
            "--address",
            &addr.to_string(),
        ])
        .env_remove("KEEL_API_KEY");
        if let Some(k) = key {
            cmd.args(["--api-key", k]);
        }
        cmd.output().expect("run keel")
    };
    let ok = cli(Some(ORDERS_KEY));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success() && out.contains("o-1"), "{out}");
    let refused = cli(None);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("--api-key"), "{err}");
    c.shutdown().await;
    Ok(())
}

async fn http_get(addr: SocketAddr, path: &str, key: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("HTTP port");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[test]
fn a_malformed_key_entry_is_refused_at_load() {
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
[[api-keys]]
name = "x"
sha256 = "not-a-hash"
namespaces = []
"#,
    )
    .unwrap();
    let e = NodeConfig::load(&path)
        .expect_err("a bad key entry")
        .to_string();
    assert!(e.contains("api-keys[0].sha256"), "{e}");
    assert!(e.contains("api-keys[0].namespaces"), "{e}");
}

#[test]
fn keel_api_key_create_prints_a_key_and_the_entry_holding_its_hash() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "api-key", "create", "--name", "ci", "-n", "orders", "-n", "default",
        ])
        .output()
        .expect("run keel");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("keel_"))
        .map(|k| format!("keel_{k}"))
        .unwrap_or_else(|| panic!("no key printed: {text}"));
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(rename = "api-keys")]
        api_keys: Vec<ApiKeyConfig>,
    }
    let doc: Doc = toml::from_str(&text).expect("the printed entry is valid config");
    assert_eq!(doc.api_keys.len(), 1);
    let entry = &doc.api_keys[0];
    assert_eq!(entry.name, "ci");
    assert_eq!(entry.namespaces, ["orders", "default"]);
    assert_eq!(
        entry.sha256,
        sha256_hex(&key),
        "the entry holds the key's hash, not the key"
    );
    assert!(!text.contains(&format!("sha256 = \"{key}")));
}
