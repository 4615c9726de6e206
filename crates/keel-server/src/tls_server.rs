//! TLS on the client port with certificates that can be reloaded in place (SIGHUP): each
//! accepted connection is handshaken with the configuration current at that moment, so a
//! reload changes what new connections see and leaves open ones alone.

use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use keel_raft::conn::{Conn, Tracked};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// Longest a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client port's TLS configuration, reloadable.
pub struct ReloadingTls {
    cfg: keel_config::TlsConfig,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{what}: {e}"))
}

fn read_certs(field: &str, path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let what = || format!("{field} {}", path.display());
    CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(&what(), e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| tls_err(&what(), e))
}

fn read_key(field: &str, path: &std::path::Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| tls_err(&format!("{field} {}", path.display()), e))
}

fn read_roots(field: &str, path: &std::path::Path) -> Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(field, path)? {
        roots
            .add(c)
            .map_err(|e| tls_err(&format!("{field} {}", path.display()), e))?;
    }
    Ok(Arc::new(roots))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the PEM files of `cfg` into a server configuration (HTTP/2 only, as gRPC needs).
fn build(cfg: &keel_config::TlsConfig) -> Result<Arc<rustls::ServerConfig>> {
    let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) else {
        return Err(Error::Tls("tls.cert and tls.key are not set".into()));
    };
    let certs = read_certs("tls.cert", cert)?;
    let key = read_key("tls.key", key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?;
    let builder = match (&cfg.ca, cfg.require_client_cert) {
        (Some(ca), true) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                read_roots("tls.ca", ca)?,
                provider(),
            )
            .build()
            .map_err(|e| tls_err("client verifier", e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("certificate and key", e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The peer port's server and client configurations from `[peer-tls]`: both present the
/// node's certificate and accept only certificates of the cluster's CA.
pub fn peer_configs(
    cfg: &keel_config::PeerTlsConfig,
) -> Result<(rustls::ServerConfig, rustls::ClientConfig)> {
    let (Some(cert), Some(key), Some(ca)) = (&cfg.cert, &cfg.key, &cfg.ca) else {
        return Err(Error::Tls(
            "peer-tls: cert, key and ca are not all set".into(),
        ));
    };
    let certs = read_certs("peer-tls.cert", cert)?;
    let key = read_key("peer-tls.key", key)?;
    let roots = read_roots("peer-tls.ca", ca)?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| tls_err("peer-tls client verifier", e))?;
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| tls_err("peer-tls certificate and key", e))?;
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| tls_err("peer-tls certificate and key", e))?;
    Ok((server, client))
}

impl ReloadingTls {
    /// `None` when TLS is off.
    pub fn new(cfg: &keel_config::TlsConfig) -> Result<Option<Arc<ReloadingTls>>> {
        if !cfg.enabled() {
            return Ok(None);
        }
        Ok(Some(Arc::new(ReloadingTls {
            cfg: cfg.clone(),
            current: RwLock::new(build(cfg)?),
        })))
    }

    /// Reads the files again; on an error the current configuration stays.
    pub fn reload(&self) -> Result<()> {
        let next = build(&self.cfg)?;
        *self.current.write().expect("TLS config lock") = next;
        Ok(())
    }

    /// TLS connections from plain ones: each handshake runs on its own task, so a slow
    /// client holds up no other. Ends when the server drops the stream.
    pub fn incoming(
        self: Arc<Self>,
        plain: impl Stream<Item = io::Result<Tracked>> + Send + 'static,
    ) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut plain = Box::pin(plain);
            loop {
                let conn = tokio::select! {
                    _ = tx.closed() => return,
                    c = plain.next() => match c {
                        Some(c) => c,
                        None => return,
                    },
                };
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        continue;
                    }
                };
                let config = self.current.read().expect("TLS config lock").clone();
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send(Ok(Conn::Tls(Box::new(s)))).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "a TLS handshake failed"),
                        Err(_) => tracing::debug!("a TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}
