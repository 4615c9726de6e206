//! Accepted connections a node can cut all at once.
//!
//! tonic spawns a task per connection (and hyper one per request) that outlives the server
//! future, so aborting a node's tasks leaves its clients connected to a node that no longer
//! exists, and their long polls holding its storage open. A node that stops *abruptly* (an
//! in-process crash in tests) therefore shuts every tracked socket down, which is what a
//! dying process does to them: clients see the connection drop, the connection tasks end,
//! and in-flight requests are dropped with them.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// The open connections of one node (cheap to clone; clones share the set).
#[derive(Clone, Default)]
pub struct Connections {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// A second handle on each open socket, to shut it down from outside its task.
    open: BTreeMap<u64, std::net::TcpStream>,
    cut: bool,
}

impl Connections {
    /// Tracks an accepted connection until it is dropped. A connection accepted after
    /// [`cut_all`](Self::cut_all) is shut down at once.
    pub fn track(&self, stream: TcpStream) -> io::Result<Tracked> {
        use std::os::fd::AsFd;
        let handle = std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?);
        let mut inner = self.inner.lock().expect("connections lock poisoned");
        if inner.cut {
            let _ = handle.shutdown(std::net::Shutdown::Both);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.open.insert(id, handle);
        Ok(Tracked {
            stream,
            id,
            conns: self.clone(),
        })
    }

    /// Accepts connections on `listener` (Nagle off) and tracks them: the incoming stream
    /// of a tonic server. A failed accept (out of file descriptors and the like) is logged
    /// and retried shortly, keeping the connections that exist.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> impl futures::Stream<Item = io::Result<Tracked>> + Send + 'static {
        futures::stream::unfold((listener, self.clone()), |(listener, conns)| async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let tracked = conns.track(stream);
                        return Some((tracked, (listener, conns)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                }
            }
        })
    }

    /// How many open connections were accepted on the local address `local`.
    pub fn open_on(&self, local: std::net::SocketAddr) -> usize {
        let inner = self.inner.lock().expect("connections lock poisoned");
        inner
            .open
            .values()
            .filter(|s| s.local_addr().is_ok_and(|a| a == local))
            .count()
    }

    /// Shuts down every open connection (and any accepted later).
    pub fn cut_all(&self) {
        let mut inner = self.inner.lock().expect("connections lock poisoned");
        inner.cut = true;
        for (_, s) in std::mem::take(&mut inner.open) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A tracked connection: a TCP stream that leaves its [`Connections`] when dropped.
pub struct Tracked {
    stream: TcpStream,
    id: u64,
    conns: Connections,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Runs before `stream` closes its descriptor, so a concurrent `cut_all` never
        // touches a socket that is gone.
        if let Ok(mut inner) = self.conns.inner.lock() {
            inner.open.remove(&self.id);
        }
    }
}

impl Connected for Tracked {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// An accepted connection, plain or after its TLS handshake: one type for a tonic server
/// either way (the client port, and the peer port's gRPC side).
pub enum Conn {
    Plain(Tracked),
    Tls(Box<tokio_rustls::server::TlsStream<Tracked>>),
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Conn::Plain(c) => c.connect_info(),
            Conn::Tls(c) => c.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_write(cx, buf),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_flush(cx),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Conn::Tls(c) => Pin::new(c.as_mut()).poll_shutdown(cx),
        }
    }
}
