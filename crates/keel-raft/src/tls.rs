//! Mutual TLS on the peer port.
//!
//! With [`PeerTls`] set in [`RpcSettings`](crate::RpcSettings), every peer connection, in
//! both directions, is TLS with certificates of the cluster's CA on both ends: a node
//! accepts a connection only from a client certificate that CA signed, and dials a peer only
//! if the peer's certificate chains to that CA and names the host it dialled. A process
//! without such a certificate can therefore neither send a node AppendEntries or Vote nor
//! fetch snapshots, forward proposals or ask for read indexes (it cannot join, vote or
//! read), and cannot pose as a member to receive the log.
//!
//! One peer port carries two protocols; under TLS the client names its protocol in ALPN
//! ([`ALPN_RAW`] for the raw transport, `h2` for gRPC) instead of the first plain-text byte
//! the server sniffs otherwise. The configurations are swapped in place by
//! [`PeerTls::replace`] (SIGHUP): new connections use the new ones, open ones keep theirs.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// ALPN protocol id of the raw transport (AppendEntries, Vote) under TLS.
pub const ALPN_RAW: &[u8] = b"keel-raft-raw/1";
/// ALPN protocol id of gRPC (HTTP/2).
pub const ALPN_GRPC: &[u8] = b"h2";

#[derive(Clone)]
struct Configs {
    server: Arc<rustls::ServerConfig>,
    raw_client: Arc<rustls::ClientConfig>,
    grpc_client: Arc<rustls::ClientConfig>,
}

/// The peer port's TLS configurations (server and client side), replaceable in place.
pub struct PeerTls {
    current: RwLock<Configs>,
    refused: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

fn configs(server: rustls::ServerConfig, client: rustls::ClientConfig) -> Configs {
    let mut server = server;
    server.alpn_protocols = vec![ALPN_RAW.to_vec(), ALPN_GRPC.to_vec()];
    let mut raw = client.clone();
    raw.alpn_protocols = vec![ALPN_RAW.to_vec()];
    let mut grpc = client;
    grpc.alpn_protocols = vec![ALPN_GRPC.to_vec()];
    Configs {
        server: Arc::new(server),
        raw_client: Arc::new(raw),
        grpc_client: Arc::new(grpc),
    }
}

impl PeerTls {
    /// `server` must require client certificates of the cluster's CA and `client` present
    /// this node's certificate and trust only that CA; ALPN is set here.
    pub fn new(server: rustls::ServerConfig, client: rustls::ClientConfig) -> Arc<PeerTls> {
        Arc::new(PeerTls {
            current: RwLock::new(configs(server, client)),
            refused: Default::default(),
        })
    }

    /// Replaces both configurations (a certificate reload).
    pub fn replace(&self, server: rustls::ServerConfig, client: rustls::ClientConfig) {
        *self.current.write().expect("peer TLS lock poisoned") = configs(server, client);
    }

    /// Handshakes that failed on this node, as client or server.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_refused(&self) {
        self.refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::peer_tls_refused();
    }

    fn current(&self) -> Configs {
        self.current.read().expect("peer TLS lock poisoned").clone()
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current().server)
    }

    /// Handshakes as a client of `addr` on `tcp`, for the raw transport or for gRPC.
    pub(crate) async fn connect(
        &self,
        addr: &str,
        tcp: TcpStream,
        grpc: bool,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let c = self.current();
        let config = if grpc { c.grpc_client } else { c.raw_client };
        let r = tokio_rustls::TlsConnector::from(config)
            .connect(server_name(addr)?, tcp)
            .await;
        if let Err(e) = &r {
            self.count_refused();
            tracing::warn!(peer = %addr, error = %e, "peer TLS handshake failed");
        }
        r
    }
}

/// The name a peer's certificate must carry: the host part of its address (an IP address or
/// a DNS name).
pub(crate) fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("peer address {addr}: not a host name for TLS: {e}"),
        )
    })
}

/// A dialled peer connection, plain or TLS.
pub(crate) enum PeerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// tonic's connector for a peer's gRPC channel under TLS: TCP (Nagle off, connect timeout),
/// then the handshake with the configuration current at that moment.
#[derive(Clone)]
pub(crate) struct GrpcConnector {
    pub tls: Arc<PeerTls>,
    pub addr: String,
    pub connect_timeout: std::time::Duration,
}

type Io = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower_service::Service<tonic::codegen::http::Uri> for GrpcConnector {
    type Response = Io;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<Io>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: tonic::codegen::http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = crate::network::connect_tcp(&this.addr, this.connect_timeout).await?;
            let tls = this.tls.connect(&this.addr, tcp, true).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_from_peer_addresses() {
        let name = |a: &str| server_name(a).map(|n| n.to_str().into_owned());
        assert_eq!(name("127.0.0.1:7001").unwrap(), "127.0.0.1");
        assert_eq!(name("[::1]:7001").unwrap(), "::1");
        assert_eq!(
            name("node-2.keel.internal:7001").unwrap(),
            "node-2.keel.internal"
        );
        assert!(name("not a host:7001").is_err());
    }
}
