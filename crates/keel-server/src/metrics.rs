//! The Prometheus `/metrics` endpoint of a node (HTTP/1.1).
//!
//! Replication gauges are read from the node's status at scrape time; histograms and
//! counters come from `keel_raft::metrics`.

use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use keel_raft::RaftNode;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

struct Gauges {
    term: Gauge,
    leader_id: Gauge,
    is_leader: Gauge,
    last_log_index: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    purged_index: Gauge,
    worker_threads: Gauge,
}

struct Exporter {
    node: RaftNode,
    frontend: Arc<keel_frontend::Frontend>,
    registry: Registry,
    gauges: Gauges,
    starts_held: prometheus_client::metrics::counter::Counter,
}

impl Exporter {
    fn new(node: RaftNode, frontend: Arc<keel_frontend::Frontend>) -> Self {
        let mut registry = Registry::with_prefix("keel");
        let gauges = Gauges {
            term: Gauge::default(),
            leader_id: Gauge::default(),
            is_leader: Gauge::default(),
            last_log_index: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            snapshot_index: Gauge::default(),
            purged_index: Gauge::default(),
            worker_threads: Gauge::default(),
        };
        let g = &gauges;
        for (name, help, gauge) in [
            ("raft_term", "Current Raft term", &g.term),
            (
                "raft_leader_id",
                "Node id of the known leader (0: none)",
                &g.leader_id,
            ),
            (
                "raft_is_leader",
                "1 if this node is the leader",
                &g.is_leader,
            ),
            (
                "raft_last_log_index",
                "Index of the last log entry",
                &g.last_log_index,
            ),
            (
                "raft_commit_index",
                "Index of the last known committed entry",
                &g.commit_index,
            ),
            (
                "raft_applied_index",
                "Index of the last applied entry",
                &g.applied_index,
            ),
            (
                "raft_snapshot_index",
                "Index covered by the latest snapshot",
                &g.snapshot_index,
            ),
            (
                "raft_purged_index",
                "Index of the last purged log entry",
                &g.purged_index,
            ),
            (
                "runtime_worker_threads",
                "Worker threads of the node's async runtime (config runtime.worker-threads)",
                &g.worker_threads,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        keel_raft::metrics::register(&mut registry);
        let starts_held = prometheus_client::metrics::counter::Counter::default();
        registry.register(
            "frontend_starts_held",
            "Workflow starts this node held back because their task queue's workers were behind (config admission)",
            starts_held.clone(),
        );
        Exporter {
            node,
            frontend,
            registry,
            gauges,
            starts_held,
        }
    }

    fn render(&self) -> String {
        let s = self.node.status();
        let g = &self.gauges;
        let set = |gauge: &Gauge, v: u64| {
            gauge.set(v as i64);
        };
        set(&g.term, s.term);
        set(&g.leader_id, s.leader_id);
        set(&g.is_leader, u64::from(s.role == "leader"));
        set(&g.last_log_index, s.last_log_index);
        set(&g.commit_index, s.commit_index);
        set(&g.applied_index, s.applied_index);
        set(&g.snapshot_index, s.snapshot_index);
        set(&g.purged_index, s.purged_index);
        set(
            &g.worker_threads,
            tokio::runtime::Handle::current().metrics().num_workers() as u64,
        );
        let held = self.frontend.starts_held();
        self.starts_held
            .inc_by(held.saturating_sub(self.starts_held.get()));
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Serves `/metrics` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    node: RaftNode,
    frontend: Arc<keel_frontend::Frontend>,
    shutdown: impl Future<Output = ()>,
) {
    let exporter = Arc::new(Exporter::new(node, frontend));
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    continue;
                }
            },
        };
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let exporter = exporter.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .body(Full::new(Bytes::from(exporter.render())))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"see /metrics\n")))
                    };
                    Ok::<_, std::convert::Infallible>(
                        resp.expect("static response parts are valid"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
