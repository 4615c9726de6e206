//! API keys on the client port (`[[api-keys]]`): with any configured, every RPC must carry
//! `authorization: Bearer <key>` (what the Temporal SDKs send for their `api_key` option),
//! and a key scoped to namespaces may only name those.
//!
//! - No key, or one not configured: UNAUTHENTICATED.
//! - A key of all namespaces (`"*"`): everything.
//! - A scoped key: RPCs whose request has a `namespace` field (found in the services'
//!   descriptors, so every Temporal RPC is covered without a list here) when that names one
//!   of its namespaces; `GetSystemInfo` (the SDKs' connect call). Anything else — listing
//!   or registering namespaces outside its scope, cluster RPCs, the key-value API — is
//!   PERMISSION_DENIED, naming the key and what it lacks.
//! - Exempt, no key needed: gRPC health and reflection, and `Admin/NodeStatus` and
//!   `Admin/ClusterStatus` (topology only: ids, addresses, roles, indexes; load balancers,
//!   `keel up`, the shared-address guard and the cluster page call them).
//!
//! Reading the namespace means decoding the (unary) request body once more here; keys of
//! all namespaces and clusters without keys pay nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body_util::BodyExt;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
use sha2::{Digest, Sha256};
use tonic::body::Body;
use tonic::Status;

/// Largest request body read to find its namespace (larger ones are refused).
const MAX_INSPECTED_BODY: usize = 64 << 20;

/// RPCs any valid key may call, whatever its scope.
const ANY_KEY: &[&str] = &["/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo"];

/// RPCs that need no key.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.")
        || path == "/keel.admin.v1.Admin/NodeStatus"
        || path == "/keel.admin.v1.Admin/ClusterStatus"
}

struct Key {
    name: String,
    /// `None`: all namespaces.
    namespaces: Option<BTreeSet<String>>,
}

/// The configured keys, by SHA-256.
pub struct ApiKeys {
    by_hash: BTreeMap<[u8; 32], Arc<Key>>,
}

/// Hex SHA-256 of `key`, as `[[api-keys]] sha256` holds it.
pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `keel api-key create`: a new random key and the `[[api-keys]]` entry holding its hash.
pub fn create(name: &str, namespaces: &[String]) -> anyhow::Result<String> {
    use base64::Engine;
    use rand::RngCore;
    let entry = keel_config::ApiKeyConfig {
        name: name.to_string(),
        sha256: String::new(),
        namespaces: namespaces.to_vec(),
    };
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let key = format!(
        "keel_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let entry = keel_config::ApiKeyConfig {
        sha256: sha256_hex(&key),
        ..entry
    };
    let toml = toml::to_string(&BTreeMap::from([("api-keys", vec![entry])]))?;
    Ok(format!(
        "# API key for {name:?} (shown once; Keel keeps only its SHA-256):\n\
         #   {key}\n\
         # Clients: --api-key / KEEL_API_KEY for the CLI, the SDKs' api_key option.\n\
         # Add to every node's config, then restart the nodes one at a time:\n{toml}"
    ))
}

fn from_hex(h: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if h.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl ApiKeys {
    /// `None` when no key is configured (the client port is open).
    pub fn new(cfg: &[keel_config::ApiKeyConfig]) -> Option<Arc<ApiKeys>> {
        if cfg.is_empty() {
            return None;
        }
        let by_hash = cfg
            .iter()
            .filter_map(|k| {
                let hash = from_hex(&k.sha256)?;
                let namespaces = if k.namespaces.iter().any(|n| n == "*") {
                    None
                } else {
                    Some(k.namespaces.iter().cloned().collect())
                };
                Some((
                    hash,
                    Arc::new(Key {
                        name: k.name.clone(),
                        namespaces,
                    }),
                ))
            })
            .collect();
        Some(Arc::new(ApiKeys { by_hash }))
    }

    fn authenticate(&self, headers: &http::HeaderMap) -> Result<Arc<Key>, Status> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Status::unauthenticated(
                "this server requires an API key: send it as `authorization: Bearer <key>` (the SDKs' api_key option)",
            ));
        };
        let value = value.to_str().unwrap_or_default();
        let key = match value.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => {
                return Err(Status::unauthenticated(
                    "the authorization header must be `Bearer <API key>`",
                ))
            }
        };
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_hash
            .get(&hash)
            .cloned()
            .ok_or_else(|| Status::unauthenticated("invalid API key"))
    }
}

/// The input message of the RPC at `path` if it has a string `namespace` field.
fn namespaced_input(path: &str) -> Option<MessageDescriptor> {
    let (service, method) = path.trim_start_matches('/').rsplit_once('/')?;
    let pools = [
        crate::protojson::temporal_pool(),
        crate::protojson::keel_pool(),
    ];
    let svc = pools.iter().find_map(|p| p.get_service_by_name(service))?;
    let input = svc.methods().find(|m| m.name() == method)?.input();
    let field = input.get_field_by_name("namespace")?;
    matches!(field.kind(), prost_reflect::Kind::String).then_some(input)
}

/// The `namespace` of a unary gRPC request body (one length-prefixed message, gzip if
/// flagged).
fn namespace_of(
    body: &[u8],
    encoding: Option<&str>,
    input: &MessageDescriptor,
) -> Result<String, Status> {
    let bad = |what: &str| Status::invalid_argument(format!("malformed gRPC request: {what}"));
    if body.len() < 5 {
        return Err(bad("no message frame"));
    }
    let mut header = &body[..5];
    let compressed = header.get_u8() == 1;
    let len = header.get_u32() as usize;
    let msg = body
        .get(5..5 + len)
        .ok_or_else(|| bad("short message frame"))?;
    let decompressed;
    let msg = if compressed {
        if encoding != Some("gzip") {
            return Err(Status::unimplemented(format!(
                "request compression {encoding:?} (gzip is supported)"
            )));
        }
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(msg), &mut out)
            .map_err(|e| bad(&format!("gzip: {e}")))?;
        decompressed = out;
        decompressed.as_slice()
    } else {
        msg
    };
    let m = DynamicMessage::decode(input.clone(), msg).map_err(|e| bad(&e.to_string()))?;
    Ok(match m.get_field_by_name("namespace").as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    })
}

fn refuse(status: Status) -> Response<Body> {
    status.into_http()
}

fn not_in_scope(key: &Key, what: String) -> Status {
    let scope: Vec<&str> = key
        .namespaces
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    Status::permission_denied(format!(
        "API key {:?} (namespaces {}) may not {what}",
        key.name,
        scope.join(", ")
    ))
}

/// The tower layer; `keys: None` passes everything through.
#[derive(Clone, Default)]
pub struct ApiKeyLayer {
    pub keys: Option<Arc<ApiKeys>>,
}

impl<S> tower_layer::Layer<S> for ApiKeyLayer {
    type Service = RequireApiKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireApiKey {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct RequireApiKey<S> {
    inner: S,
    keys: Option<Arc<ApiKeys>>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower_service::Service<Request<Body>> for RequireApiKey<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(keys) = self.keys.clone() else {
            return Box::pin(self.inner.call(request));
        };
        let path = request.uri().path().to_string();
        if exempt(&path) {
            return Box::pin(self.inner.call(request));
        }
        let key = match keys.authenticate(request.headers()) {
            Ok(k) => k,
            Err(status) => return Box::pin(async move { Ok(refuse(status)) }),
        };
        let Some(scope) = key.namespaces.clone() else {
            return Box::pin(self.inner.call(request));
        };
        if ANY_KEY.contains(&path.as_str()) {
            return Box::pin(self.inner.call(request));
        }
        let method = path.rsplit('/').next().unwrap_or_default().to_string();
        let Some(input) = namespaced_input(&path) else {
            let status = not_in_scope(
                &key,
                format!("call {method}, which is not scoped to a namespace (it needs a key of all namespaces, \"*\")"),
            );
            return Box::pin(async move { Ok(refuse(status)) });
        };
        // The ready service is the one to call; a clone takes its place (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes: Bytes = match http_body_util::Limited::new(body, MAX_INSPECTED_BODY)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return Ok(refuse(Status::invalid_argument(format!(
                        "reading the request: {e}"
                    ))))
                }
            };
            let encoding = parts
                .headers
                .get("grpc-encoding")
                .and_then(|v| v.to_str().ok());
            let namespace = match namespace_of(&bytes, encoding, &input) {
                Ok(n) => n,
                Err(status) => return Ok(refuse(status)),
            };
            if !scope.contains(&namespace) {
                return Ok(refuse(not_in_scope(
                    &key,
                    format!("use namespace {namespace:?} ({method})"),
                )));
            }
            inner
                .call(Request::from_parts(
                    parts,
                    Body::new(http_body_util::Full::new(bytes)),
                ))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workflow_service_rpc_with_a_namespace_field_is_found() {
        let svc = crate::protojson::temporal_pool()
            .get_service_by_name("temporal.api.workflowservice.v1.WorkflowService")
            .expect("the service");
        let mut scoped = 0;
        for m in svc.methods() {
            let path = format!("/{}/{}", svc.full_name(), m.name());
            let has = m.input().get_field_by_name("namespace").is_some();
            assert_eq!(namespaced_input(&path).is_some(), has, "{path}");
            scoped += usize::from(has);
        }
        assert!(scoped > 50, "only {scoped} namespaced RPCs");
        assert!(namespaced_input(
            "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution"
        )
        .is_some());
        assert!(namespaced_input(
            "/temporal.api.workflowservice.v1.WorkflowService/ListNamespaces"
        )
        .is_none());
        assert!(namespaced_input("/keel.kv.v1.Kv/Put").is_none());
    }

    #[test]
    fn the_namespace_is_read_from_plain_and_gzip_frames() {
        use prost::Message;
        use temporalio_protos::temporal::api::workflowservice::v1 as api;
        let input = namespaced_input(
            "/temporal.api.workflowservice.v1.WorkflowService/SignalWorkflowExecution",
        )
        .unwrap();
        let msg = api::SignalWorkflowExecutionRequest {
            namespace: "orders".into(),
            signal_name: "s".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let frame = |flag: u8, m: &[u8]| {
            let mut f = vec![flag];
            f.extend_from_slice(&(m.len() as u32).to_be_bytes());
            f.extend_from_slice(m);
            f
        };
        assert_eq!(
            namespace_of(&frame(0, &msg), None, &input).unwrap(),
            "orders"
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &msg).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            namespace_of(&frame(1, &gz), Some("gzip"), &input).unwrap(),
            "orders"
        );
        assert_eq!(
            namespace_of(&frame(1, &gz), Some("zstd"), &input)
                .unwrap_err()
                .code(),
            tonic::Code::Unimplemented
        );
        assert_eq!(
            namespace_of(&[0, 0], None, &input).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn keys_are_matched_by_their_hash() {
        let keys = ApiKeys::new(&[keel_config::ApiKeyConfig {
            name: "orders-team".into(),
            sha256: sha256_hex("secret-1"),
            namespaces: vec!["orders".into()],
        }])
        .unwrap();
        let headers = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        let k = keys.authenticate(&headers("Bearer secret-1")).ok().unwrap();
        assert_eq!(k.name, "orders-team");
        assert!(keys.authenticate(&headers("bearer secret-1")).is_ok());
        for bad in ["Bearer secret-2", "secret-1", "Basic secret-1"] {
            let e = keys.authenticate(&headers(bad)).err().unwrap();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        let e = keys.authenticate(&http::HeaderMap::new()).err().unwrap();
        assert!(e.message().contains("requires an API key"), "{e}");
    }
}
