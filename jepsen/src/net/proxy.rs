//! The userspace network backend: one TCP proxy listener per directed node link, on loopback.
//!
//! Node `a` dials node `b`'s peer port through the listener of link a→b (its config's
//! `testing.peer-routes`), so every peer connection crosses exactly one proxy, whose mode the
//! nemesis sets: open; blackhole (bytes are held, both directions, until the mode changes:
//! a partition); reset (live connections are closed and new ones refused at once); delay ±
//! jitter (order kept). No root needed, and the only way to add latency on a kernel without
//! `sch_netem`. Client traffic goes to the nodes directly and is never affected.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a link does to its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Open,
    /// Hold every byte until the mode changes (a partition that TCP rides out).
    Blackhole,
    /// Close live connections and refuse new ones (a partition with RSTs).
    Reset,
    /// Deliver each chunk `delay ± jitter` after it was read, in order.
    Delay {
        delay_ms: u64,
        jitter_ms: u64,
    },
}

/// One directed link's listener.
struct Link {
    mode: watch::Sender<LinkMode>,
    task: JoinHandle<()>,
}

/// All links of a cluster. Dropping it stops every listener.
pub struct Proxy {
    links: BTreeMap<(u64, u64), Link>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for l in self.links.values() {
            l.task.abort();
        }
    }
}

impl Proxy {
    /// Starts one listener per directed link `(from, to)`, each forwarding to `targets[to]`.
    /// Returns the proxy and the address node `from` must dial for `to`.
    pub async fn start(
        targets: &BTreeMap<u64, SocketAddr>,
    ) -> anyhow::Result<(Proxy, BTreeMap<(u64, u64), SocketAddr>)> {
        let mut links = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for &from in targets.keys() {
            for (&to, &target) in targets {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addrs.insert((from, to), listener.local_addr()?);
                let (tx, rx) = watch::channel(LinkMode::Open);
                let task = tokio::spawn(serve(listener, target, rx));
                links.insert((from, to), Link { mode: tx, task });
            }
        }
        Ok((Proxy { links }, addrs))
    }

    /// Sets the mode of link `from → to`.
    pub fn set(&self, from: u64, to: u64, mode: LinkMode) {
        if let Some(l) = self.links.get(&(from, to)) {
            l.mode.send_replace(mode);
        }
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_pair(&self, a: u64, b: u64, mode: LinkMode) {
        self.set(a, b, mode);
        self.set(b, a, mode);
    }

    /// Every link open.
    pub fn heal(&self) {
        for l in self.links.values() {
            l.mode.send_replace(LinkMode::Open);
        }
    }

    /// Sets every link.
    pub fn set_all(&self, mode: LinkMode) {
        for l in self.links.values() {
            l.mode.send_replace(mode);
        }
    }
}

async fn serve(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<LinkMode>) {
    loop {
        let Ok((down, _)) = listener.accept().await else {
            continue;
        };
        if *mode.borrow() == LinkMode::Reset {
            drop(down);
            continue;
        }
        let mode = mode.clone();
        tokio::spawn(async move {
            let Ok(Ok(up)) =
                tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await
            else {
                return;
            };
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let (dr, dw) = down.into_split();
            let (ur, uw) = up.into_split();
            let mut a = tokio::spawn(pump(dr, uw, mode.clone()));
            let mut b = tokio::spawn(pump(ur, dw, mode));
            // When either direction ends, close both (as a reset link does).
            tokio::select! {
                _ = &mut a => {}
                _ = &mut b => {}
            }
            a.abort();
            b.abort();
        });
    }
}

/// Copies one direction, applying the link's mode to each chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<LinkMode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // Delivery time of the previous chunk: delayed chunks never overtake each other.
    let mut last_due = tokio::time::Instant::now();
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == LinkMode::Reset {
                    return;
                }
                continue;
            }
        };
        // Hold while blackholed; give up on reset.
        loop {
            let m = *mode.borrow_and_update();
            match m {
                LinkMode::Reset => return,
                LinkMode::Blackhole => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
                LinkMode::Open => break,
                LinkMode::Delay {
                    delay_ms,
                    jitter_ms,
                } => {
                    let jitter = if jitter_ms == 0 {
                        0i64
                    } else {
                        rand::rng().random_range(-(jitter_ms as i64)..=(jitter_ms as i64))
                    };
                    let d = Duration::from_millis((delay_ms as i64 + jitter).max(0) as u64);
                    let due = (tokio::time::Instant::now() + d).max(last_due);
                    last_due = due;
                    tokio::time::sleep_until(due).await;
                    break;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server; returns its address.
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    loop {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&b[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, timeout: Duration) -> Option<Duration> {
        let t = Instant::now();
        s.write_all(b"ping").await.ok()?;
        let mut b = [0u8; 4];
        match tokio::time::timeout(timeout, s.read_exact(&mut b)).await {
            Ok(Ok(_)) => Some(t.elapsed()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn blackhole_holds_delay_delays_reset_refuses() {
        let target = echo().await;
        let targets = BTreeMap::from([(1, target), (2, target)]);
        let (proxy, addrs) = Proxy::start(&targets).await.unwrap();
        let mut s = TcpStream::connect(addrs[&(1, 2)]).await.unwrap();
        assert!(round_trip(&mut s, Duration::from_secs(2)).await.is_some());

        proxy.set(1, 2, LinkMode::Blackhole);
        assert!(
            round_trip(&mut s, Duration::from_millis(300))
                .await
                .is_none(),
            "blackholed link answered"
        );
        proxy.heal();
        // The held ping is delivered after the heal; its echo arrives.
        let mut b = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut b))
            .await
            .expect("held bytes delivered after heal")
            .unwrap();

        proxy.set(
            1,
            2,
            LinkMode::Delay {
                delay_ms: 100,
                jitter_ms: 0,
            },
        );
        let rtt = round_trip(&mut s, Duration::from_secs(2)).await.unwrap();
        assert!(
            rtt >= Duration::from_millis(190),
            "rtt {rtt:?} < 2 x 100 ms"
        );

        proxy.set(1, 2, LinkMode::Reset);
        let mut b = [0u8; 4];
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b))
            .await
            .expect("reset closes the live connection");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        // The other direction's link is unaffected.
        let mut other = TcpStream::connect(addrs[&(2, 1)]).await.unwrap();
        assert!(round_trip(&mut other, Duration::from_secs(2))
            .await
            .is_some());
    }
}
