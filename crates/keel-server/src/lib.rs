//! Keel's composition root: a node's servers (peer, client, metrics) around its
//! replication layer, the operator and key-value APIs, and the `keel` CLI's building blocks.
//!
//! Modules:
//! - [`node`]: start and stop one node from a [`keel_config::NodeConfig`];
//! - [`admin`], [`kv`]: the client-port gRPC services (errors map to gRPC codes in
//!   `keel_frontend::status`);
//! - [`http_api`]: Temporal's HTTP API and Keel's read routes; [`web_ui`]: the embedded UI;
//! - [`api_keys`]: `authorization: Bearer` keys scoped to namespaces on the client port;
//! - [`tls_server`], [`tls_certs`]: TLS of the client and peer ports, `keel up --tls`'s CA;
//! - [`metrics`]: the Prometheus endpoint; [`namespaces`]: the `default` namespace;
//! - [`local_cluster`]: an in-process cluster for tests and benchmarks;
//! - [`cli`]: `keel up`, `keel bench raft`; [`client_cli`]: `keel workflow | namespace |
//!   cluster …`, a client of the public APIs; [`protojson`]: protobuf JSON of both APIs.
//!
//! This crate wires; it must not hold replication or state-machine logic (that lives in
//! `keel-raft` and `keel-engine`), and it never touches openraft types.

pub mod admin;
pub mod api_keys;
pub mod bench;
pub mod cli;
pub mod client_cli;
pub mod drivers;
mod error;
pub mod http_api;
pub mod kv;
pub mod local_cluster;
pub mod metrics;
pub mod namespaces;
pub mod node;
pub mod protojson;
pub mod schedule_cli;
pub mod tls_certs;
pub mod tls_server;
pub mod unimplemented;
pub mod web_ui;

pub use error::{Error, Result};
