//! The nemesis: seeded faults against the running cluster, each recorded in the history as
//! `installed`, `skipped` (nothing to do, e.g. the backend cannot delay) or `indeterminate`
//! (the action failed half-way), with its targets and whether it hit the leader.
//!
//! A cycle is: quiet for `interval`, one fault for `interval`, its heal. Process faults never
//! take down more than a minority, so a majority can always make progress.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::cluster::{find_leader, set_clock_offset, Cluster};
use crate::disk;
use crate::grudge::{self, Shape};
use crate::history::{OpType, Process, Recorder};

/// A fault family, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Network partitions (grudges of every shape).
    Partition,
    /// SIGKILL of the leader, one node or a minority, then restart.
    Kill,
    /// SIGSTOP of the leader, one node or a minority, then SIGCONT.
    Pause,
    /// The leader's clock bumped or strobed (admin SetClockOffset), then reset.
    Clock,
    /// Every peer link delayed 50 ± 25 ms (proxy backend only).
    Delay,
    /// A node (the leader, or another) removed from the voters under load, then added back
    /// as a learner and promoted.
    Membership,
    /// A follower stopped, its newest WAL / SST / snapshot file damaged (bytes flipped, or
    /// the WAL cut at a random offset), restarted: it must refuse to start (then its saved
    /// copy is put back) or run without serving anything corrupt. Also: a node started
    /// under another cluster id, or on another node's data.
    Corrupt,
    /// The black-box clock check: every node runs under libfaketime, and the leader's (or
    /// another node's) wall clock jumps ±1–5 s, then back. Keel is not told, unlike `clock`.
    Faketime,
}

/// Which nodes a process fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Leader,
    One,
    Minority,
}

/// The undo of an installed fault.
enum Undo {
    Heal,
    Restart(Vec<u64>),
    Resume(Vec<u64>),
    ClockReset(Option<JoinHandle<()>>),
    FaketimeReset(u64),
    AddBack(u64),
    /// Put a corrupted node's saved data dir back if it refused to start.
    Restore {
        node: u64,
        backup: std::path::PathBuf,
        refused: bool,
    },
    DelayStop,
    Nothing,
}

pub struct Nemesis {
    pub cluster: Arc<Mutex<Cluster>>,
    pub rec: Recorder,
    pub faults: Vec<Fault>,
    pub rng: StdRng,
    /// Nodes removed from the membership and not yet added back.
    pub removed: BTreeSet<u64>,
    /// Disk faults so far (offset by a seeded start): picks the next damage mode.
    pub disk_faults: u64,
    /// Faults installed so far. The first fault of a run that can hit the leader always does,
    /// so every run covers a leader failure (coverage would be unknown otherwise).
    pub installed: u64,
}

fn pick_targets(rng: &mut StdRng, ids: &[u64], leader: Option<u64>, target: Target) -> Vec<u64> {
    let mut shuffled = ids.to_vec();
    shuffled.shuffle(rng);
    match (target, leader) {
        (Target::Leader, Some(l)) => vec![l],
        (Target::Leader, None) | (Target::One, _) => vec![shuffled[0]],
        (Target::Minority, _) => {
            let k = ((ids.len() - 1) / 2).max(1);
            let mut t: Vec<u64> = match leader {
                // Include the leader half of the time, so minority faults also hit it.
                Some(l) if rng.random_bool(0.5) => std::iter::once(l)
                    .chain(shuffled.into_iter().filter(|&x| x != l))
                    .take(k)
                    .collect(),
                _ => shuffled.into_iter().take(k).collect(),
            };
            t.sort();
            t
        }
    }
}

impl Nemesis {
    fn record(&self, f: &str, value: serde_json::Value) {
        self.rec
            .record(Process::Nemesis, OpType::Info, f, value, None, None);
    }

    /// Runs fault cycles until `stop` fires, then heals everything.
    pub async fn run(mut self, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if sleep_or_stop(interval, &mut stop).await {
                break;
            }
            // The first fault is one that can take the leader out, when the run has one.
            let leader_faults: Vec<Fault> = self
                .faults
                .iter()
                .copied()
                .filter(|f| {
                    matches!(
                        f,
                        Fault::Partition | Fault::Kill | Fault::Pause | Fault::Membership
                    )
                })
                .collect();
            let pool = if self.installed == 0 && !leader_faults.is_empty() {
                &leader_faults
            } else {
                &self.faults
            };
            let Some(&fault) = pool.choose(&mut self.rng) else {
                break;
            };
            let undo = self.install(fault).await;
            let stopped = sleep_or_stop(interval, &mut stop).await;
            self.undo(undo).await;
            if stopped {
                break;
            }
        }
        self.heal_all().await;
    }

    async fn install(&mut self, fault: Fault) -> Undo {
        let (ids, channels) = {
            let mut c = self.cluster.lock().await;
            (c.ids(), c.channels())
        };
        let leader = find_leader(&channels).await.map(|l| l.0);
        let first = self.installed == 0;
        self.installed += 1;
        let target = if first {
            Target::Leader
        } else {
            *[Target::Leader, Target::One, Target::Minority]
                .choose(&mut self.rng)
                .expect("non-empty")
        };
        match fault {
            Fault::Partition => {
                let shape = if first {
                    Shape::LeaderAlone
                } else {
                    *Shape::ALL.choose(&mut self.rng).expect("non-empty")
                };
                let cut = grudge::cuts(shape, &ids, leader, &mut self.rng);
                let majority = ids.len() / 2 + 1;
                let leader_hit = leader.is_some_and(|l| {
                    grudge::views(&ids, &cut)
                        .into_iter()
                        .any(|(n, seen)| n == l && seen.len() < majority)
                });
                let pairs: Vec<[u64; 2]> = cut.iter().map(|&(a, b)| [a, b]).collect();
                let result = self.cluster.lock().await.net.partition(&cut).await;
                let outcome = if result.is_ok() {
                    "installed"
                } else {
                    "indeterminate"
                };
                self.record(
                    "partition",
                    json!({"outcome": outcome, "shape": shape.name(), "cut": pairs,
                           "leader": leader, "leader_hit": leader_hit,
                           "error": result.err().map(|e| e.to_string())}),
                );
                Undo::Heal
            }
            Fault::Kill | Fault::Pause => {
                let targets = pick_targets(&mut self.rng, &ids, leader, target);
                let leader_hit = leader.is_some_and(|l| targets.contains(&l));
                let mut done = Vec::new();
                {
                    let mut c = self.cluster.lock().await;
                    for &t in &targets {
                        let ok = if fault == Fault::Kill {
                            c.kill(t)
                        } else {
                            c.pause(t)
                        };
                        if ok {
                            done.push(t);
                        }
                    }
                }
                let outcome = match done.len() {
                    0 => "skipped",
                    n if n == targets.len() => "installed",
                    _ => "indeterminate",
                };
                let f = if fault == Fault::Kill {
                    "kill"
                } else {
                    "pause"
                };
                self.record(
                    f,
                    json!({"outcome": outcome, "targets": done, "target": format!("{target:?}").to_lowercase(),
                           "leader": leader, "leader_hit": leader_hit && !done.is_empty()}),
                );
                if fault == Fault::Kill {
                    Undo::Restart(done)
                } else {
                    Undo::Resume(done)
                }
            }
            Fault::Clock => {
                let Some(l) = leader else {
                    self.record(
                        "clock-bump",
                        json!({"outcome": "skipped", "reason": "no leader"}),
                    );
                    return Undo::Nothing;
                };
                let ch = self.cluster.lock().await.channel(l);
                let strobe = self.rng.random_bool(0.5);
                let delta: i64 = self.rng.random_range(200..=5_000)
                    * if self.rng.random_bool(0.5) { 1 } else { -1 };
                if strobe {
                    let ch2 = ch.clone();
                    let task = tokio::spawn(async move {
                        let mut flip = false;
                        loop {
                            let _ = set_clock_offset(&ch2, if flip { delta } else { 0 }).await;
                            flip = !flip;
                            tokio::time::sleep(Duration::from_millis(150)).await;
                        }
                    });
                    self.record(
                        "clock-strobe",
                        json!({"outcome": "installed", "targets": [l], "offset_ms": delta, "leader_hit": false}),
                    );
                    Undo::ClockReset(Some(task))
                } else {
                    let r = set_clock_offset(&ch, delta).await;
                    self.record(
                        "clock-bump",
                        json!({"outcome": if r.is_ok() {"installed"} else {"indeterminate"},
                               "targets": [l], "offset_ms": delta, "leader_hit": false,
                               "error": r.err().map(|e| e.to_string())}),
                    );
                    Undo::ClockReset(None)
                }
            }
            Fault::Membership => {
                let victim = pick_targets(&mut self.rng, &ids, leader, target)[0];
                let voters: Vec<u64> = ids.iter().copied().filter(|&i| i != victim).collect();
                let addr = self.node_addrs(victim).await;
                let r = crate::cluster::change_membership(
                    &channels,
                    addr,
                    voters,
                    false,
                    Duration::from_secs(10),
                )
                .await;
                // A change that timed out may still commit: treat the node as removed, so
                // the undo adds it back either way.
                self.removed.insert(victim);
                self.record(
                    "remove-node",
                    json!({"outcome": if r.is_ok() {"installed"} else {"indeterminate"},
                           "targets": [victim], "leader": leader,
                           "leader_hit": leader == Some(victim) && r.is_ok(),
                           "error": r.err().map(|e| format!("{e:#}"))}),
                );
                Undo::AddBack(victim)
            }
            Fault::Corrupt => self.corrupt(&ids, leader, &channels).await,
            Fault::Faketime => {
                let victim = pick_targets(&mut self.rng, &ids, leader, Target::One)[0];
                let victim = if self.rng.random_bool(0.5) {
                    leader.unwrap_or(victim)
                } else {
                    victim
                };
                let delta: i64 = self.rng.random_range(1_000..=5_000)
                    * if self.rng.random_bool(0.5) { 1 } else { -1 };
                let ok = self.cluster.lock().await.set_faketime(victim, delta);
                self.record(
                    "faketime",
                    json!({"outcome": if ok {"installed"} else {"skipped"}, "targets": [victim],
                           "offset_ms": delta, "leader": leader, "leader_hit": false,
                           "reason": if ok {None} else {Some("node not under libfaketime")}}),
                );
                if ok {
                    Undo::FaketimeReset(victim)
                } else {
                    Undo::Nothing
                }
            }
            Fault::Delay => {
                let ok = self.cluster.lock().await.net.delay(50, 25);
                self.record(
                    "delay",
                    json!({"outcome": if ok {"installed"} else {"skipped"}, "delay_ms": 50, "jitter_ms": 25,
                           "leader_hit": false, "reason": if ok {None} else {Some("backend cannot delay (no netem)")}}),
                );
                if ok {
                    Undo::DelayStop
                } else {
                    Undo::Nothing
                }
            }
        }
    }

    async fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Heal => {
                let r = self.cluster.lock().await.net.heal().await;
                self.record(
                    "heal",
                    json!({"outcome": if r.is_ok() {"installed"} else {"indeterminate"}}),
                );
            }
            Undo::Restart(ids) => {
                let mut started = Vec::new();
                let mut errors = Vec::new();
                {
                    let mut c = self.cluster.lock().await;
                    for id in ids {
                        match c.restart(id) {
                            Ok(true) => started.push(id),
                            Ok(false) => {}
                            Err(e) => errors.push(format!("node {id}: {e:#}")),
                        }
                    }
                }
                self.record(
                    "restart",
                    json!({"outcome": if errors.is_empty() {"installed"} else {"indeterminate"},
                           "targets": started, "errors": errors}),
                );
            }
            Undo::Resume(ids) => {
                let mut resumed = Vec::new();
                {
                    let mut c = self.cluster.lock().await;
                    for id in ids {
                        if c.resume(id) {
                            resumed.push(id);
                        }
                    }
                }
                self.record(
                    "resume",
                    json!({"outcome": "installed", "targets": resumed}),
                );
            }
            Undo::ClockReset(task) => {
                if let Some(t) = task {
                    t.abort();
                }
                self.reset_clocks().await;
            }
            Undo::FaketimeReset(id) => {
                let ok = self.cluster.lock().await.set_faketime(id, 0);
                self.record(
                    "faketime-reset",
                    json!({"outcome": if ok {"installed"} else {"indeterminate"}, "targets": [id]}),
                );
            }
            Undo::AddBack(id) => self.add_back(id).await,
            Undo::Restore {
                node,
                backup,
                refused,
            } => {
                // A node that exited after the check refused all the same — unless it had
                // started and then stopped itself on finding the damage (fail-stop): it ran
                // since the copy was taken, so putting the copy back could make it forget
                // votes; it stays down, as an operator would leave it until replaced.
                let (exited, stopped) = {
                    let mut c = self.cluster.lock().await;
                    (c.exited(node).is_some(), c.stop_line(node).is_some())
                };
                let refused = refused || (exited && !stopped);
                let result = if refused {
                    let mut c = self.cluster.lock().await;
                    let data_dir = c.nodes[&node].data_dir.clone();
                    std::fs::remove_dir_all(&data_dir)
                        .and_then(|_| std::fs::rename(&backup, &data_dir))
                        .map_err(anyhow::Error::from)
                        .and_then(|_| c.restart(node).map(|_| ()))
                } else {
                    std::fs::remove_dir_all(&backup).map_err(anyhow::Error::from)
                };
                self.record(
                    "restore",
                    json!({"outcome": if result.is_ok() {"installed"} else {"indeterminate"},
                           "targets": [node], "restored_backup": refused,
                           "error": result.err().map(|e| format!("{e:#}"))}),
                );
            }
            Undo::DelayStop => {
                self.cluster.lock().await.net.heal().await.ok();
                self.record("delay-stop", json!({"outcome": "installed"}));
            }
            Undo::Nothing => {}
        }
    }

    /// The disk fault: stop a follower, keep a copy of its data dir, damage one file,
    /// restart it and see whether it refuses (with a message naming the damage) or runs.
    async fn corrupt(
        &mut self,
        ids: &[u64],
        leader: Option<u64>,
        channels: &std::collections::BTreeMap<u64, tonic::transport::Channel>,
    ) -> Undo {
        let followers: Vec<u64> = ids.iter().copied().filter(|&i| Some(i) != leader).collect();
        let Some(&victim) = followers.choose(&mut self.rng) else {
            self.record(
                "corrupt",
                json!({"outcome": "skipped", "reason": "no follower"}),
            );
            return Undo::Nothing;
        };
        // A snapshot gives the snapshot mode a file to damage.
        let _ = crate::cluster::trigger_snapshot(&channels[&victim]).await;
        // Modes in turn (from a seeded start), so a run with five disk faults tries each.
        const MODES: [disk::Mode; 6] = [
            disk::Mode::WalFlip,
            disk::Mode::WrongCluster,
            disk::Mode::SnapshotFlip,
            disk::Mode::ForeignNode,
            disk::Mode::WalTruncate,
            disk::Mode::SstFlip,
        ];
        if self.disk_faults == 0 {
            self.disk_faults = self.rng.random_range(0..MODES.len() as u64);
        }
        let mode = MODES[(self.disk_faults % MODES.len() as u64) as usize];
        self.disk_faults += 1;
        if mode == disk::Mode::WrongCluster {
            return self.wrong_cluster(victim).await;
        }
        if mode == disk::Mode::ForeignNode {
            let donors: Vec<u64> = followers.iter().copied().filter(|&i| i != victim).collect();
            let donor = donors.choose(&mut self.rng).copied();
            return self.foreign_node(victim, donor).await;
        }
        let (data_dir, log) = {
            let mut c = self.cluster.lock().await;
            c.kill(victim);
            let n = &c.nodes[&victim];
            (n.data_dir.clone(), n.log.clone())
        };
        let backup = data_dir.with_extension("before-corrupt");
        let _ = std::fs::remove_dir_all(&backup);
        if let Err(e) = disk::copy_dir(&data_dir, &backup) {
            let _ = self.cluster.lock().await.restart(victim);
            self.record("corrupt", json!({"outcome": "skipped", "targets": [victim], "reason": format!("backup failed: {e}")}));
            return Undo::Nothing;
        }
        let damaged = disk::damage(&data_dir, mode, &mut self.rng);
        let Ok(file) = damaged else {
            let _ = std::fs::remove_dir_all(&backup);
            let _ = self.cluster.lock().await.restart(victim);
            self.record(
                "corrupt",
                json!({"outcome": "skipped", "targets": [victim], "mode": mode.name(),
                       "reason": damaged.err().map(|e| e.to_string())}),
            );
            return Undo::Nothing;
        };
        let log_len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let started = self.cluster.lock().await.restart(victim);
        let exit = self.exit_or_serving(victim).await;
        let message = disk::new_log_text(&log, log_len)
            .lines()
            .rev()
            .find(|l| l.contains("corrupted") || l.contains("refusing") || l.contains("Error:"))
            .map(|l| l.chars().take(400).collect::<String>());
        let refused = exit.is_some();
        self.record(
            "corrupt",
            json!({"outcome": if started.is_ok() {"installed"} else {"indeterminate"},
                   "targets": [victim], "mode": mode.name(), "file": file.display().to_string(),
                   "result": if refused {"refused to start"} else {"running"},
                   "exit_code": exit.and_then(|s| s.code()), "message": message,
                   "leader_hit": false}),
        );
        Undo::Restore {
            node: victim,
            backup,
            refused,
        }
    }

    /// Starts a follower on its own data dir but under another cluster id: it must exit with
    /// an error naming both ids. Then it is started normally again.
    async fn wrong_cluster(&mut self, victim: u64) -> Undo {
        let (config, log) = {
            let mut c = self.cluster.lock().await;
            c.kill(victim);
            let n = &c.nodes[&victim];
            (n.config.clone(), n.log.clone())
        };
        let other = config.with_extension("wrong-cluster.toml");
        let written = std::fs::read_to_string(&config).map(|text| {
            text.replace(
                "cluster-id = \"keel-jepsen\"",
                "cluster-id = \"keel-jepsen-other\"",
            )
        });
        let log_len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let started = match written.and_then(|text| std::fs::write(&other, text)) {
            Ok(()) => self
                .cluster
                .lock()
                .await
                .restart_with_config(victim, &other),
            Err(e) => Err(e.into()),
        };
        let exit = self.exit_or_serving(victim).await;
        if exit.is_none() {
            // It must not serve under the wrong identity: stop it.
            self.cluster.lock().await.kill(victim);
        }
        let message = disk::new_log_text(&log, log_len)
            .lines()
            .find(|l| l.contains("belongs to cluster"))
            .map(|l| l.trim().chars().take(400).collect::<String>());
        self.record(
            "corrupt",
            json!({"outcome": if started.is_ok() {"installed"} else {"indeterminate"},
                   "targets": [victim], "mode": disk::Mode::WrongCluster.name(),
                   "result": if exit.is_some() {"refused to start"} else {"running"},
                   "exit_code": exit.and_then(|s| s.code()), "message": message,
                   "leader_hit": false}),
        );
        Undo::Restart(vec![victim])
    }

    /// Starts a follower on a copy of another node's data dir (an operator's slip): it must
    /// exit with an error naming the node the data belongs to. The donor is stopped for the
    /// copy (a live RocksDB cannot be copied consistently) and restarted at once, so on three
    /// nodes the leader is briefly alone; with no second follower the fault is skipped.
    async fn foreign_node(&mut self, victim: u64, donor: Option<u64>) -> Undo {
        let mode = disk::Mode::ForeignNode.name();
        let Some(donor) = donor else {
            self.record(
                "corrupt",
                json!({"outcome": "skipped", "targets": [victim], "mode": mode,
                       "reason": "no second follower to take data from"}),
            );
            return Undo::Nothing;
        };
        let (config, log, foreign) = {
            let mut c = self.cluster.lock().await;
            c.kill(victim);
            c.kill(donor);
            let copy = c.nodes[&victim]
                .data_dir
                .with_extension(format!("from-n{donor}"));
            let _ = std::fs::remove_dir_all(&copy);
            let copied = disk::copy_dir(&c.nodes[&donor].data_dir, &copy);
            let restarted = c.restart(donor);
            let n = &c.nodes[&victim];
            match (copied, restarted) {
                (Ok(()), Ok(_)) => (n.config.clone(), n.log.clone(), copy),
                (copied, restarted) => {
                    let _ = c.restart(victim);
                    drop(c);
                    self.record(
                        "corrupt",
                        json!({"outcome": "skipped", "targets": [victim], "mode": mode,
                               "reason": format!("copy: {copied:?}, donor restart: {restarted:?}")}),
                    );
                    return Undo::Nothing;
                }
            }
        };
        let other = config.with_extension("foreign.toml");
        let written = std::fs::read_to_string(&config).map(|text| {
            text.lines()
                .map(|l| {
                    if l.starts_with("data-dir = ") {
                        format!("data-dir = {:?}", foreign.display().to_string())
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
        let log_len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let started = match written.and_then(|text| std::fs::write(&other, text)) {
            Ok(()) => self
                .cluster
                .lock()
                .await
                .restart_with_config(victim, &other),
            Err(e) => Err(e.into()),
        };
        let exit = self.exit_or_serving(victim).await;
        if exit.is_none() {
            // It must not serve as another node: stop it.
            self.cluster.lock().await.kill(victim);
        }
        let message = disk::new_log_text(&log, log_len)
            .lines()
            .find(|l| l.contains("belongs to cluster"))
            .map(|l| l.trim().chars().take(400).collect::<String>());
        let _ = std::fs::remove_dir_all(&foreign);
        self.record(
            "corrupt",
            json!({"outcome": if started.is_ok() {"installed"} else {"indeterminate"},
                   "targets": [victim], "donor": donor, "mode": mode,
                   "result": if exit.is_some() {"refused to start"} else {"running"},
                   "exit_code": exit.and_then(|s| s.code()), "message": message,
                   "leader_hit": false}),
        );
        Undo::Restart(vec![victim])
    }

    /// After a restart on damaged or foreign data: the exit status if the node exits, `None`
    /// once it answers status requests (up to 20 s; a node that does neither is taken as
    /// running, and the restore step looks again).
    async fn exit_or_serving(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let ch = self.cluster.lock().await.channel(id);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.cluster.lock().await.exited(id) {
                return Some(status);
            }
            if crate::cluster::node_status(&ch, Duration::from_millis(200))
                .await
                .is_some()
            {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    async fn node_addrs(&self, id: u64) -> (u64, std::net::SocketAddr, std::net::SocketAddr) {
        let c = self.cluster.lock().await;
        let n = &c.nodes[&id];
        (id, n.peer_addr, n.client_addr)
    }

    /// Adds a removed node back: learner first (it catches up), then voter.
    async fn add_back(&mut self, id: u64) {
        let (ids, channels) = {
            let mut c = self.cluster.lock().await;
            (c.ids(), c.channels())
        };
        let addr = self.node_addrs(id).await;
        let r =
            crate::cluster::change_membership(&channels, addr, ids, true, Duration::from_secs(30))
                .await;
        if r.is_ok() {
            self.removed.remove(&id);
        }
        self.record(
            "add-node",
            json!({"outcome": if r.is_ok() {"installed"} else {"indeterminate"}, "targets": [id],
                   "error": r.err().map(|e| format!("{e:#}"))}),
        );
    }

    async fn reset_clocks(&mut self) {
        let channels = self.cluster.lock().await.channels();
        let mut failed = BTreeSet::new();
        for (id, ch) in channels {
            if set_clock_offset(&ch, 0).await.is_err() {
                failed.insert(id);
            }
        }
        self.record(
            "clock-reset",
            json!({"outcome": if failed.is_empty() {"installed"} else {"indeterminate"}, "failed": failed}),
        );
    }

    /// The final heal: every link open, every process running and resumed, clocks reset.
    pub async fn heal_all(&mut self) {
        let mut restarted = Vec::new();
        let mut resumed = Vec::new();
        let net = {
            let mut c = self.cluster.lock().await;
            for id in c.ids() {
                if c.resume(id) {
                    resumed.push(id);
                }
                if let Ok(true) = c.restart(id) {
                    restarted.push(id);
                }
            }
            c.net.heal().await
        };
        self.record(
            "heal",
            json!({"outcome": if net.is_ok() {"installed"} else {"indeterminate"},
                   "final": true, "restarted": restarted, "resumed": resumed}),
        );
        if self.faults.contains(&Fault::Clock) {
            self.reset_clocks().await;
        }
        for id in self.removed.clone() {
            self.add_back(id).await;
        }
    }
}

/// Sleeps for `d`; returns true if `stop` fired first.
async fn sleep_or_stop(d: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn process_faults_never_take_a_majority() {
        let mut rng = StdRng::seed_from_u64(4);
        for n in [3u64, 5] {
            let ids: Vec<u64> = (1..=n).collect();
            for _ in 0..50 {
                let t = pick_targets(&mut rng, &ids, Some(2), Target::Minority);
                assert!(!t.is_empty() && (t.len() as u64) < n / 2 + 1, "{t:?}");
            }
            assert_eq!(
                pick_targets(&mut rng, &ids, Some(2), Target::Leader),
                vec![2]
            );
            assert_eq!(pick_targets(&mut rng, &ids, None, Target::One).len(), 1);
        }
    }
}
