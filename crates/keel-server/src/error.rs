//! Errors of node startup and the CLI's library parts.

/// Server errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] keel_config::Error),
    #[error(transparent)]
    Raft(#[from] keel_raft::Error),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(String),
    #[error("reading {what} {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error(
        "network.shared-client-addr {addr} is already served by {by}; nodes of different \
         clusters must not share one address (clients would reach either cluster)"
    )]
    SharedAddrTaken { addr: String, by: String },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
