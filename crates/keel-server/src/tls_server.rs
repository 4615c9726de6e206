//! TLS on the client port with certificates that can be reloaded in place (SIGHUP): each
//! accepted connection is handshaken with the configuration current at that moment, so a
//! reload changes what new connections see and leaves open ones alone.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use keel_raft::conn::Tracked;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, TcpConnectInfo};

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

/// Reads the PEM files of `cfg` into a server configuration (HTTP/2 only, as gRPC needs).
fn build(cfg: &keel_config::TlsConfig) -> Result<Arc<rustls::ServerConfig>> {
    let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) else {
        return Err(Error::Tls("tls.cert and tls.key are not set".into()));
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(&format!("tls.cert {}", cert.display()), e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| tls_err(&format!("tls.cert {}", cert.display()), e))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_err(&format!("tls.key {}", key.display()), e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?;
    let builder = match (&cfg.ca, cfg.require_client_cert) {
        (Some(ca), true) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| tls_err(&format!("tls.ca {}", ca.display()), e))?
            {
                let c = c.map_err(|e| tls_err(&format!("tls.ca {}", ca.display()), e))?;
                roots
                    .add(c)
                    .map_err(|e| tls_err(&format!("tls.ca {}", ca.display()), e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
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
    ) -> impl Stream<Item = io::Result<TlsConn>> + Send + 'static {
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
                            let _ = tx.send(Ok(TlsConn(s))).await;
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

/// A client connection after its handshake.
pub struct TlsConn(tokio_rustls::server::TlsStream<Tracked>);

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A client-port connection, plain or TLS (one type for the server either way).
pub enum ClientConn {
    Plain(Tracked),
    Tls(Box<TlsConn>),
}

impl Connected for ClientConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            ClientConn::Plain(c) => c.connect_info(),
            ClientConn::Tls(c) => c.connect_info(),
        }
    }
}

impl AsyncRead for ClientConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientConn::Plain(c) => Pin::new(c).poll_read(cx, buf),
            ClientConn::Tls(c) => Pin::new(c.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientConn::Plain(c) => Pin::new(c).poll_write(cx, buf),
            ClientConn::Tls(c) => Pin::new(c.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientConn::Plain(c) => Pin::new(c).poll_flush(cx),
            ClientConn::Tls(c) => Pin::new(c.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientConn::Plain(c) => Pin::new(c).poll_shutdown(cx),
            ClientConn::Tls(c) => Pin::new(c.as_mut()).poll_shutdown(cx),
        }
    }
}
