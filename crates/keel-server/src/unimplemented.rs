//! Names the RPC in an UNIMPLEMENTED answer. The generated servers answer an RPC Keel has not
//! built with `UNIMPLEMENTED: Not yet implemented`, which tells a caller nothing; this layer
//! rewrites that message (and the empty one tonic gives an unknown method) to
//! `<Service>/<Method> is not supported by this server yet`, so an SDK user sees which call is
//! missing. Any other answer passes through untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};

/// The tower layer (applied to every service on the client port).
#[derive(Debug, Clone, Copy, Default)]
pub struct NameUnimplementedLayer;

impl<S> tower_layer::Layer<S> for NameUnimplementedLayer {
    type Service = NameUnimplemented<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NameUnimplemented { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct NameUnimplemented<S> {
    inner: S,
}

/// The message for an unimplemented answer to `path` (`/pkg.Service/Method`).
fn message_for(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').rsplitn(2, '/');
    let method = parts.next().unwrap_or_default();
    let service = parts
        .next()
        .and_then(|s| s.rsplit('.').next())
        .unwrap_or_default();
    format!("{service}/{method} is not supported by this server yet")
}

/// Rewrites the status message of an UNIMPLEMENTED trailers-only response that says nothing.
fn name_it<B>(path: &str, mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    let unimplemented = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"12");
    let uninformative = headers.get("grpc-message").is_none_or(|m| {
        m.as_bytes().is_empty()
            || m.as_bytes() == b"Not%20yet%20implemented"
            || m.as_bytes() == b"Not yet implemented"
    });
    if unimplemented && uninformative {
        // Printable ASCII (paths are), so no percent-encoding is needed beyond spaces, which
        // the gRPC spec allows unencoded.
        if let Ok(v) = HeaderValue::from_str(&message_for(path)) {
            headers.insert("grpc-message", v);
        }
    }
    response
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for NameUnimplemented<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().to_string();
        let answer = self.inner.call(request);
        Box::pin(async move { answer.await.map(|r| name_it(&path, r)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: &str, message: Option<&str>) -> Response<()> {
        let mut r = Response::new(());
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_str(code).unwrap());
        if let Some(m) = message {
            r.headers_mut()
                .insert("grpc-message", HeaderValue::from_str(m).unwrap());
        }
        r
    }

    fn message(r: &Response<()>) -> Option<&str> {
        r.headers()
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
    }

    #[test]
    fn an_uninformative_unimplemented_answer_names_the_rpc() {
        let path = "/temporal.api.workflowservice.v1.WorkflowService/ResetActivity";
        for m in [Some("Not%20yet%20implemented"), Some(""), None] {
            let r = name_it(path, status("12", m));
            assert_eq!(
                message(&r),
                Some("WorkflowService/ResetActivity is not supported by this server yet"),
                "{m:?}"
            );
        }
    }

    #[test]
    fn every_other_answer_passes_through() {
        let path = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";
        let named = name_it(
            path,
            status("12", Some("post_reset_operations is not supported")),
        );
        assert_eq!(
            message(&named),
            Some("post_reset_operations is not supported")
        );
        let ok = name_it(path, status("0", None));
        assert_eq!(message(&ok), None);
        let invalid = name_it(path, status("3", Some("bad")));
        assert_eq!(message(&invalid), Some("bad"));
    }
}
