//! The built-in web UI: static assets embedded in the binary, served by every node's HTTP
//! port at `/` and `/ui/…`; the pages call the HTTP API of the same node.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;

const INDEX: &str = include_str!("../ui/index.html");
const APP: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

/// The asset at `path`, if there is one.
pub fn asset(path: &str) -> Option<http::Response<Full<Bytes>>> {
    let (content_type, body) = match path {
        "/" | "/ui" | "/ui/" | "/ui/index.html" => ("text/html; charset=utf-8", INDEX),
        "/ui/app.js" => ("text/javascript; charset=utf-8", APP),
        "/ui/style.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    Some(
        http::Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("a valid response"),
    )
}
