//! Temporal's HTTP API (the JSON mapping of WorkflowService and OperatorService that Temporal's
//! frontend serves since 1.22) plus a few read routes of Keel's admin service, and the
//! built-in web UI, on a node's HTTP port.
//!
//! Routes come from the `google.api.http` annotations in Temporal's own service definitions
//! (the descriptor set the binary embeds), so every annotated RPC has its route with no
//! hand-written table. A request is turned into the RPC's protobuf message (path variables,
//! query parameters, the JSON body, all in the proto3 JSON mapping), sent as a gRPC call to
//! this node's own client port — so it meets exactly the validation, forwarding and error
//! mapping a gRPC client meets — and the reply is printed as proto3 JSON. A gRPC error becomes
//! the HTTP status grpc-gateway gives its code, with a `google.rpc.Status` JSON body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::{Buf, BufMut, Bytes};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use prost_reflect::{
    DynamicMessage, Kind, MessageDescriptor, MethodDescriptor, ReflectMessage, Value as PValue,
};
use serde_json::Value;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::protojson;

/// One route: an HTTP method and path template bound to an RPC.
#[derive(Clone, Debug)]
pub struct Route {
    pub http_method: Method,
    /// Path segments: a literal, or a variable naming a (possibly nested) request field.
    pub segments: Vec<Segment>,
    /// Whether the JSON body is the request message (`body: "*"`).
    pub body: bool,
    pub rpc: MethodDescriptor,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{execution.workflow_id}`: the field path; `rest` for `{name=**}`.
    Var {
        field: String,
        rest: bool,
    },
}

impl Route {
    /// The template as written, e.g. `/api/v1/namespaces/{namespace}/workflows`.
    pub fn template(&self) -> String {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => format!("/{l}"),
                Segment::Var { field, .. } => format!("/{{{field}}}"),
            })
            .collect()
    }

    /// The path variables' values if `path` matches.
    fn matches(&self, path: &[&str]) -> Option<Vec<(String, String)>> {
        let mut vars = Vec::new();
        let mut i = 0;
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => {
                    if path.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                    i += 1;
                }
                Segment::Var { field, rest: false } => {
                    let v = path.get(i).filter(|v| !v.is_empty())?;
                    vars.push((field.clone(), percent_decode(v, false)));
                    i += 1;
                }
                Segment::Var { field, rest: true } => {
                    let v = path[i.min(path.len())..].join("/");
                    vars.push((field.clone(), percent_decode(&v, false)));
                    i = path.len();
                }
            }
        }
        (i == path.len()).then_some(vars)
    }
}

fn parse_template(t: &str) -> Vec<Segment> {
    t.trim_start_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(v) => {
                    let (field, pattern) = v.split_once('=').unwrap_or((v, "*"));
                    Segment::Var {
                        field: field.to_string(),
                        rest: pattern.contains("**"),
                    }
                }
                None => Segment::Literal(s.to_string()),
            },
        )
        .collect()
}

/// Keel's own read routes (the admin service has no HTTP annotations of its own).
const KEEL_ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/keel/cluster", "ClusterStatus"),
    ("GET", "/api/v1/keel/node", "NodeStatus"),
    ("GET", "/api/v1/keel/digest", "StateDigest"),
];

/// Every route, built once from the descriptor sets: Temporal's `/api/v1/…` bindings of
/// WorkflowService and OperatorService (the legacy un-prefixed bindings too), then Keel's.
pub fn routes() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let pool = protojson::temporal_pool();
        let http = pool
            .get_extension_by_name("google.api.http")
            .expect("Temporal's descriptor set carries the google.api.http annotation");
        let mut out = Vec::new();
        for service in [
            "temporal.api.workflowservice.v1.WorkflowService",
            "temporal.api.operatorservice.v1.OperatorService",
        ] {
            let Some(service) = pool.get_service_by_name(service) else {
                continue;
            };
            for rpc in service.methods() {
                let options = rpc.options();
                if !options.has_extension(&http) {
                    continue;
                }
                let rule = options.get_extension(&http);
                let Some(rule) = rule.as_message() else {
                    continue;
                };
                let mut rules = vec![rule.clone()];
                if let Some(extra) = rule.get_field_by_name("additional_bindings") {
                    if let Some(list) = extra.as_list() {
                        rules.extend(list.iter().filter_map(|v| v.as_message().cloned()));
                    }
                }
                for r in rules {
                    if let Some(route) = route_of(&r, &rpc) {
                        out.push(route);
                    }
                }
            }
        }
        let admin = protojson::keel_pool()
            .get_service_by_name("keel.admin.v1.Admin")
            .expect("the admin service");
        for (m, path, name) in KEEL_ROUTES {
            let rpc = admin
                .methods()
                .find(|x| x.name() == *name)
                .expect("a Keel admin method");
            out.push(Route {
                http_method: Method::from_bytes(m.as_bytes()).expect("an HTTP method"),
                segments: parse_template(path),
                body: false,
                rpc,
            });
        }
        out
    })
}

fn route_of(rule: &DynamicMessage, rpc: &MethodDescriptor) -> Option<Route> {
    for (field, method) in [
        ("get", Method::GET),
        ("post", Method::POST),
        ("put", Method::PUT),
        ("delete", Method::DELETE),
        ("patch", Method::PATCH),
    ] {
        let template = rule.get_field_by_name(field)?;
        let template = template.as_str()?;
        if template.is_empty() {
            continue;
        }
        let body = rule
            .get_field_by_name("body")
            .is_some_and(|b| b.as_str() == Some("*"));
        return Some(Route {
            http_method: method,
            segments: parse_template(template),
            body,
            rpc: rpc.clone(),
        });
    }
    None
}

/// Path variables: (field path, value).
pub type Vars = Vec<(String, String)>;

/// The route and path variables for a request, or whether the path exists under another
/// method (405) or not at all (404).
pub fn find(method: &Method, path: &str) -> Result<(&'static Route, Vars), StatusCode> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut other_method = false;
    for r in routes() {
        if let Some(vars) = r.matches(&parts) {
            if r.http_method == *method {
                return Ok((r, vars));
            }
            other_method = true;
        }
    }
    Err(if other_method {
        StatusCode::METHOD_NOT_ALLOWED
    } else {
        StatusCode::NOT_FOUND
    })
}

/// `%XX` escapes decoded; in a query string (`plus_is_space`) `+` is a space.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds the RPC request from the route's path variables, the query string and the body.
pub fn build_request(
    route: &Route,
    vars: &[(String, String)],
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, String> {
    let desc = route.rpc.input();
    let mut message = if route.body && !body.iter().all(u8::is_ascii_whitespace) {
        let json: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        protojson::json_to_dynamic(desc.clone(), &json).map_err(|e| format!("{e}"))?
    } else {
        DynamicMessage::new(desc.clone())
    };
    if !route.body {
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            set_path(
                &mut message,
                &percent_decode(k, true),
                &percent_decode(v, true),
            )?;
        }
    }
    for (field, value) in vars {
        set_path(&mut message, field, value)?;
    }
    Ok(message)
}

/// Sets `a.b.c` (proto or JSON names) to a scalar given as text.
fn set_path(message: &mut DynamicMessage, path: &str, text: &str) -> Result<(), String> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let desc: MessageDescriptor = message.descriptor();
    let field = desc
        .get_field_by_name(head)
        .or_else(|| desc.get_field_by_json_name(head))
        .ok_or_else(|| format!("{} has no field {head:?}", desc.name()))?;
    match rest {
        Some(rest) => {
            let Kind::Message(_) = field.kind() else {
                return Err(format!("{head:?} is not a message"));
            };
            let child = message.get_field_mut(&field);
            let PValue::Message(child) = child else {
                return Err(format!("{head:?} is not a message"));
            };
            set_path(child, rest, text)
        }
        None => {
            let value = scalar(&field.kind(), text)
                .ok_or_else(|| format!("{text:?} is not a valid value for {head:?}"))?;
            if field.is_list() {
                if let PValue::List(items) = message.get_field_mut(&field) {
                    items.push(value);
                }
            } else {
                message.set_field(&field, value);
            }
            Ok(())
        }
    }
}

fn scalar(kind: &Kind, text: &str) -> Option<PValue> {
    use base64::Engine;
    Some(match kind {
        Kind::String => PValue::String(text.to_string()),
        Kind::Bool => PValue::Bool(text.parse().ok()?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => PValue::I32(text.parse().ok()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => PValue::I64(text.parse().ok()?),
        Kind::Uint32 | Kind::Fixed32 => PValue::U32(text.parse().ok()?),
        Kind::Uint64 | Kind::Fixed64 => PValue::U64(text.parse().ok()?),
        Kind::Float => PValue::F32(text.parse().ok()?),
        Kind::Double => PValue::F64(text.parse().ok()?),
        Kind::Bytes => PValue::Bytes(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
                .ok()?,
        )),
        Kind::Enum(e) => PValue::EnumNumber(match text.parse::<i32>() {
            Ok(n) => n,
            Err(_) => e.get_value_by_name(text)?.number(),
        }),
        Kind::Message(_) => return None,
    })
}

/// Passes raw protobuf bytes through tonic's gRPC client.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// The HTTP status grpc-gateway (and so Temporal's HTTP API) answers a gRPC code with.
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code as C;
    match code {
        C::Ok => StatusCode::OK,
        C::Cancelled => StatusCode::from_u16(499).expect("499"),
        C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => StatusCode::BAD_REQUEST,
        C::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        C::NotFound => StatusCode::NOT_FOUND,
        C::AlreadyExists | C::Aborted => StatusCode::CONFLICT,
        C::PermissionDenied => StatusCode::FORBIDDEN,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        C::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::Unknown | C::Internal | C::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A `google.rpc.Status` body: code, message and the typed details the gRPC error carried.
fn error_body(status: &tonic::Status) -> Value {
    let from_details = (!status.details().is_empty())
        .then(|| protojson::bytes_to_json("google.rpc.Status", status.details()).ok())
        .flatten();
    from_details.unwrap_or_else(|| {
        serde_json::json!({
            "code": status.code() as i32,
            "message": status.message(),
            "details": [],
        })
    })
}

/// Serves the HTTP API and the UI, calling this node's client port.
pub struct HttpApi {
    target: SocketAddr,
    tls: keel_config::TlsConfig,
    /// The plain-text channel (TLS channels are made per call, with the files as they are).
    plain: Channel,
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Full::new(body.into()))
        .expect("a valid response")
}

fn json_response(status: StatusCode, v: &Value) -> http::Response<Body> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(v).expect("JSON serializes"),
    )
}

fn plain_error(status: StatusCode, code: tonic::Code, message: &str) -> http::Response<Body> {
    json_response(
        status,
        &serde_json::json!({"code": code as i32, "message": message, "details": []}),
    )
}

impl HttpApi {
    /// `client` is this node's client address (a wildcard address is reached on loopback),
    /// `tls` the node's TLS settings, with which it reaches its own TLS client port.
    pub fn new(client: SocketAddr, tls: keel_config::TlsConfig) -> HttpApi {
        let target = if client.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), client.port())
        } else {
            client
        };
        let plain = crate::node::client_endpoint(&target.to_string(), None)
            .expect("a valid loopback URI")
            .connect_lazy();
        HttpApi { target, tls, plain }
    }

    /// The channel to the client port: with TLS, built from the certificate files as they
    /// are now (so a reload applies).
    fn channel(&self) -> crate::Result<Channel> {
        let Some(tls) = crate::node::client_tls(&self.tls)? else {
            return Ok(self.plain.clone());
        };
        let endpoint = crate::node::client_endpoint(&self.target.to_string(), Some(tls))
            .map_err(|e| crate::Error::Tls(e.to_string()))?;
        Ok(endpoint.connect_lazy())
    }

    async fn handle(&self, req: http::Request<Incoming>) -> http::Response<Body> {
        let path = req.uri().path().to_string();
        if req.method() == Method::GET {
            if let Some(page) = crate::web_ui::asset(&path) {
                return page;
            }
        }
        let (route, vars) = match find(req.method(), &path) {
            Ok(found) => found,
            Err(status) => {
                return plain_error(
                    status,
                    if status == StatusCode::NOT_FOUND {
                        tonic::Code::NotFound
                    } else {
                        tonic::Code::Unimplemented
                    },
                    &format!("no route for {} {path}", req.method()),
                )
            }
        };
        let query = req.uri().query().map(str::to_string);
        let authorization = req.headers().get(http::header::AUTHORIZATION).cloned();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return plain_error(
                    StatusCode::BAD_REQUEST,
                    tonic::Code::InvalidArgument,
                    &format!("reading the body: {e}"),
                )
            }
        };
        let message = match build_request(route, &vars, query.as_deref(), &body) {
            Ok(m) => m,
            Err(e) => {
                return plain_error(StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, &e)
            }
        };
        let mut grpc_request = tonic::Request::new(prost::Message::encode_to_vec(&message));
        if let Some(a) = authorization {
            if let Ok(v) = a.to_str().unwrap_or_default().parse() {
                grpc_request.metadata_mut().insert("authorization", v);
            }
        }
        let rpc_path = format!(
            "/{}/{}",
            route.rpc.parent_service().full_name(),
            route.rpc.name()
        );
        let channel = match self.channel() {
            Ok(c) => c,
            Err(e) => {
                return plain_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    tonic::Code::Internal,
                    &format!("reaching this node's TLS client port: {e}"),
                )
            }
        };
        let mut grpc = tonic::client::Grpc::new(channel);
        if let Err(e) = grpc.ready().await {
            return plain_error(
                StatusCode::SERVICE_UNAVAILABLE,
                tonic::Code::Unavailable,
                &format!("this node's client port is not serving: {e}"),
            );
        }
        let path = http::uri::PathAndQuery::try_from(rpc_path).expect("a valid RPC path");
        match grpc.unary(grpc_request, path, RawCodec).await {
            Ok(reply) => {
                match protojson::bytes_to_json(route.rpc.output().full_name(), &reply.into_inner())
                {
                    Ok(v) => json_response(StatusCode::OK, &v),
                    Err(e) => plain_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        tonic::Code::Internal,
                        &format!("printing the reply: {e}"),
                    ),
                }
            }
            Err(status) => json_response(http_status(status.code()), &error_body(&status)),
        }
    }
}

/// Serves `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    api: Arc<HttpApi>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let api = api.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_annotated_rpc_has_its_api_v1_route_and_paths_resolve_back_to_it() {
        let pool = protojson::temporal_pool();
        let http = pool.get_extension_by_name("google.api.http").unwrap();
        let service = pool
            .get_service_by_name("temporal.api.workflowservice.v1.WorkflowService")
            .unwrap();
        let annotated: Vec<_> = service
            .methods()
            .filter(|m| m.options().has_extension(&http))
            .collect();
        assert!(annotated.len() > 50, "{} annotated RPCs", annotated.len());
        for m in annotated {
            let mine: Vec<&Route> = routes()
                .iter()
                .filter(|r| r.rpc.full_name() == m.full_name())
                .collect();
            let v1 = mine
                .iter()
                .find(|r| r.template().starts_with("/api/v1/"))
                .unwrap_or_else(|| panic!("{} has no /api/v1 route", m.name()));
            // A concrete path built from the template resolves to this RPC (or to one whose
            // template is identical, which Temporal does not have).
            let path: String = v1
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Literal(l) => format!("/{l}"),
                    Segment::Var { .. } => "/x-1".to_string(),
                })
                .collect();
            let (found, vars) = find(&v1.http_method, &path).expect("resolves");
            assert_eq!(found.template(), v1.template(), "{path}");
            assert!(vars.iter().all(|(_, v)| v == "x-1"));
        }
    }

    #[test]
    fn a_request_is_built_from_path_query_and_body() {
        let (route, vars) = find(
            &Method::GET,
            "/api/v1/namespaces/default/workflows/order%2042/history",
        )
        .expect("the history route");
        assert_eq!(route.rpc.name(), "GetWorkflowExecutionHistory");
        let m = build_request(
            route,
            &vars,
            Some("execution.runId=r-1&waitNewEvent=true&historyEventFilterType=HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT&maximumPageSize=5"),
            b"",
        )
        .unwrap();
        let json = protojson::dynamic_to_json(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "namespace": "default",
                "execution": {"workflowId": "order 42", "runId": "r-1"},
                "maximumPageSize": 5,
                "waitNewEvent": true,
                "historyEventFilterType": "HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT",
            })
        );
        let (route, vars) =
            find(&Method::POST, "/api/v1/namespaces/default/workflows/w-1").expect("start");
        assert_eq!(route.rpc.name(), "StartWorkflowExecution");
        let m = build_request(
            route,
            &vars,
            None,
            br#"{"workflowType": {"name": "hello"}, "taskQueue": {"name": "tq"}}"#,
        )
        .unwrap();
        let json = protojson::dynamic_to_json(&m).unwrap();
        assert_eq!(json["workflowId"], "w-1");
        assert_eq!(json["workflowType"]["name"], "hello");
        assert!(build_request(route, &vars, None, b"{\"nope\": 1}").is_err());
        assert_eq!(
            find(&Method::DELETE, "/api/v1/namespaces/default/workflows/w-1").unwrap_err(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            find(&Method::GET, "/api/v1/nothing-here").unwrap_err(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(http_status(tonic::Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(tonic::Code::AlreadyExists),
            StatusCode::CONFLICT
        );
    }
}
