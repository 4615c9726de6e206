//! The network-namespace backend (root only).
//!
//! Topology: a bridge in its own namespace `kj-br`; node `i` in namespace `kj-n<i>` at
//! `10.88.0.<i>/24` on a veth into the bridge; the harness in `kj-ctl` at `10.88.0.254`
//! (the harness re-executes itself there, so the root namespace is never touched). A
//! partition is one atomic nftables batch per node that drops the cut peers' addresses on
//! input and output; heal deletes the table. Every address is inside namespaces this run
//! made; nothing is routed anywhere else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use anyhow::Context;

use crate::grudge::Pair;

/// Namespace the harness runs in.
pub const CTL_NS: &str = "kj-ctl";
const BRIDGE_NS: &str = "kj-br";
const TABLE: &str = "keel_nemesis";

/// A node's namespace name.
pub fn node_ns(id: u64) -> String {
    format!("kj-n{id}")
}

/// A node's address.
pub fn node_ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 88, 0, id as u8))
}

fn run(args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    cmd.stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    });
    cmd.stdout(std::process::Stdio::null());
    cmd.stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "`{}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The namespaces of one run.
pub struct Netns {
    nodes: Vec<u64>,
}

/// Whether this process can build namespaces (root, with `ip` and `nft` installed).
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    for tool in ["ip", "nft"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        if !found {
            return Err(format!("`{tool}` not installed"));
        }
    }
    Ok(())
}

/// Removes every namespace a run may have left (idempotent).
pub fn down(max_nodes: u64) {
    for ns in (1..=max_nodes)
        .map(node_ns)
        .chain([CTL_NS.to_string(), BRIDGE_NS.to_string()])
    {
        let _ = run(&["ip", "netns", "del", &ns], None);
    }
}

impl Netns {
    /// Builds the topology for `nodes`; the caller then runs in [`CTL_NS`].
    pub fn up(nodes: &[u64]) -> anyhow::Result<Netns> {
        down(nodes.iter().copied().max().unwrap_or(0).max(9));
        run(&["ip", "netns", "add", BRIDGE_NS], None)?;
        run(
            &[
                "ip", "-n", BRIDGE_NS, "link", "add", "kjbr0", "type", "bridge",
            ],
            None,
        )?;
        run(&["ip", "-n", BRIDGE_NS, "link", "set", "kjbr0", "up"], None)?;
        let hosts: Vec<(String, u8)> = nodes
            .iter()
            .map(|&i| (node_ns(i), i as u8))
            .chain([(CTL_NS.to_string(), 254)])
            .collect();
        for (ns, octet) in &hosts {
            let inner = format!("kj-{octet}-e");
            let outer = format!("kj-{octet}-b");
            run(&["ip", "netns", "add", ns], None)?;
            run(
                &[
                    "ip", "link", "add", &inner, "netns", ns, "type", "veth", "peer", "name",
                    &outer, "netns", BRIDGE_NS,
                ],
                None,
            )?;
            run(
                &[
                    "ip", "-n", BRIDGE_NS, "link", "set", &outer, "master", "kjbr0", "up",
                ],
                None,
            )?;
            let addr = format!("10.88.0.{octet}/24");
            run(&["ip", "-n", ns, "addr", "add", &addr, "dev", &inner], None)?;
            run(&["ip", "-n", ns, "link", "set", &inner, "up"], None)?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"], None)?;
        }
        Ok(Netns {
            nodes: nodes.to_vec(),
        })
    }

    /// The topology built by [`Netns::up`] in the parent process (the harness re-executes
    /// itself inside [`CTL_NS`] after building it).
    pub fn attach(nodes: &[u64]) -> Netns {
        Netns {
            nodes: nodes.to_vec(),
        }
    }

    /// Installs the drop rules for `cut` (replacing any earlier partition).
    pub async fn partition(&self, cut: &BTreeSet<Pair>) -> anyhow::Result<()> {
        let mut peers: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for &(a, b) in cut {
            peers.entry(a).or_default().push(b);
            peers.entry(b).or_default().push(a);
        }
        self.heal().await?;
        for (node, dropped) in peers {
            let set: Vec<String> = dropped.iter().map(|&p| node_ip(p).to_string()).collect();
            let set = set.join(", ");
            let script = format!(
                "table inet {TABLE} {{\n\
                 chain input {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n\
                 chain output {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n\
                 }}\n"
            );
            let ns = node_ns(node);
            tokio::task::spawn_blocking(move || {
                run(
                    &["ip", "netns", "exec", &ns, "nft", "-f", "-"],
                    Some(&script),
                )
            })
            .await??;
        }
        Ok(())
    }

    /// Deletes every node's drop rules.
    pub async fn heal(&self) -> anyhow::Result<()> {
        let nodes = self.nodes.clone();
        tokio::task::spawn_blocking(move || {
            for n in nodes {
                // Absent when the node was not part of the partition.
                let _ = run(
                    &[
                        "ip",
                        "netns",
                        "exec",
                        &node_ns(n),
                        "nft",
                        "delete",
                        "table",
                        "inet",
                        TABLE,
                    ],
                    None,
                );
            }
        })
        .await?;
        Ok(())
    }
}
