//! Network fault backends. Both cut node-to-node links only; clients always reach every node.
//!
//! - [`proxy`]: a userspace per-link TCP proxy on loopback (no root): partitions (blackhole or
//!   reset) and delay ± jitter.
//! - [`netns`]: one network namespace per node on a private bridge, partitions as nftables
//!   drop rules inside each node's namespace (root): the kernel drops the packets, as a real
//!   partition does.

pub mod netns;
pub mod proxy;

use std::collections::BTreeSet;

use crate::grudge::Pair;

/// The backend a run uses.
pub enum Net {
    Proxy(proxy::Proxy),
    Netns(netns::Netns),
}

impl Net {
    pub fn name(&self) -> &'static str {
        match self {
            Net::Proxy(_) => "proxy",
            Net::Netns(_) => "netns",
        }
    }

    /// Cuts every pair in `cut` (both directions); other links are left as they are.
    pub async fn partition(&self, cut: &BTreeSet<Pair>) -> anyhow::Result<()> {
        match self {
            Net::Proxy(p) => {
                for &(a, b) in cut {
                    p.set_pair(a, b, proxy::LinkMode::Blackhole);
                }
                Ok(())
            }
            Net::Netns(n) => n.partition(cut).await,
        }
    }

    /// Restores every link.
    pub async fn heal(&self) -> anyhow::Result<()> {
        match self {
            Net::Proxy(p) => {
                p.heal();
                Ok(())
            }
            Net::Netns(n) => n.heal().await,
        }
    }

    /// Delays every peer link by `delay_ms ± jitter_ms` each way. `false`: the backend
    /// cannot (this kernel has no netem, so only the proxy can).
    pub fn delay(&self, delay_ms: u64, jitter_ms: u64) -> bool {
        match self {
            Net::Proxy(p) => {
                p.set_all(proxy::LinkMode::Delay {
                    delay_ms,
                    jitter_ms,
                });
                true
            }
            Net::Netns(_) => false,
        }
    }
}
