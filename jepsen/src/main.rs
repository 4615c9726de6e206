//! `keel-jepsen`: run one fault-injection test, a suite, or rebuild a run's report.
//!
//! Exit codes: 0 valid, 1 invalid, 2 unknown (a suite: 0 when every run is as expected);
//! 3 for a harness error. The last line of a run or suite is `N passed, N failed`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel_jepsen::nemesis::Fault;
use keel_jepsen::net::netns;
use keel_jepsen::run::{self, Backend, RunConfig, Workload};
use keel_jepsen::suite;

/// Set in the re-executed harness that already runs inside the control namespace.
const IN_NETNS_ENV: &str = "KEEL_JEPSEN_IN_NETNS";

#[derive(Parser)]
#[command(
    name = "keel-jepsen",
    about = "Fault-injection tests of real keel processes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// The `keel` binary (release build). Default: $KEEL_BIN, else `keel` beside this binary.
    #[arg(long)]
    keel_bin: Option<PathBuf>,
    /// Where runs are stored (`<store>/<test>/<utc>/`).
    #[arg(long, default_value = "jepsen/store")]
    store: PathBuf,
    /// Network backend.
    #[arg(long = "net", value_enum, default_value = "auto")]
    backend: Backend,
    /// Seed of the generators and the nemesis; a failing run replays with its seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// One run.
    Run {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "run")]
        name: String,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        #[arg(long, value_enum, value_delimiter = ',', default_value = "register")]
        workload: Vec<Workload>,
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "partition,kill"
        )]
        nemesis: Vec<Fault>,
        /// No faults at all (to measure spurious elections; coverage is then unknown).
        #[arg(long)]
        no_faults: bool,
        /// Seconds of load under faults.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        /// Seconds between a fault and its heal, and between faults.
        #[arg(long, default_value_t = 5)]
        interval: u64,
        /// Recovery window R after the heal, seconds.
        #[arg(long, default_value_t = 30)]
        recovery: u64,
        /// Client operations per second, all threads together.
        #[arg(long, default_value_t = 60.0)]
        rate: f64,
        /// Client threads per workload.
        #[arg(long, default_value_t = 4)]
        concurrency: u64,
    },
    /// A named suite: `ci` (a few minutes, includes the canary) or `full`.
    Suite {
        #[command(flatten)]
        common: Common,
        #[arg(value_parser = ["ci", "full"])]
        which: String,
        /// The canary build (`--features jepsen-canary`). Default: `keel-canary` beside keel.
        #[arg(long)]
        canary_bin: Option<PathBuf>,
        /// Seeds per combination (full suite).
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Cluster sizes of the full suite.
        #[arg(long, value_delimiter = ',', default_value = "3,5")]
        sizes: Vec<u64>,
        /// Seconds of load per full-suite run.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
    },
    /// Rebuilds a run's report.html from its history.jsonl and results.json.
    Report { run_dir: PathBuf },
    /// Removes network namespaces a killed run may have left.
    NetDown,
}

fn default_keel_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("KEEL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("keel"))
}

fn resolve_backend(b: Backend) -> Backend {
    match b {
        Backend::Auto => match netns::available() {
            Ok(()) => Backend::Netns,
            Err(why) => {
                eprintln!("[keel-jepsen] backend: proxy (network namespaces unavailable: {why})");
                Backend::Proxy
            }
        },
        other => other,
    }
}

/// With the netns backend, builds the namespaces and re-executes this command inside the
/// control namespace; returns its exit code. `None`: go on in this process.
fn enter_netns(backend: Backend, max_nodes: u64) -> anyhow::Result<Option<i32>> {
    if backend != Backend::Netns || std::env::var_os(IN_NETNS_ENV).is_some() {
        return Ok(None);
    }
    netns::available().map_err(|why| anyhow::anyhow!("--net netns: {why}"))?;
    let ids: Vec<u64> = (1..=max_nodes).collect();
    netns::Netns::up(&ids).context("building network namespaces")?;
    eprintln!(
        "[keel-jepsen] backend: netns (nodes in kj-n1..kj-n{max_nodes}, harness in {})",
        netns::CTL_NS
    );
    let exe = std::env::current_exe()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", netns::CTL_NS])
        .arg(exe)
        .args(args)
        .env(IN_NETNS_ENV, "1")
        .status();
    netns::down(max_nodes.max(9));
    Ok(Some(status?.code().unwrap_or(3)))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

async fn main_inner() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            common,
            name,
            nodes,
            workload,
            nemesis,
            no_faults,
            time_limit,
            interval,
            recovery,
            rate,
            concurrency,
        } => {
            anyhow::ensure!((3..=9).contains(&nodes), "--nodes must be 3..=9");
            let backend = resolve_backend(common.backend);
            if let Some(code) = enter_netns(backend, nodes)? {
                return Ok(code);
            }
            let keel_bin = absolute(&common.keel_bin.map_or_else(default_keel_bin, Ok)?);
            anyhow::ensure!(
                keel_bin.exists(),
                "keel binary {} not found (build it: cargo build --release -p keel-server)",
                keel_bin.display()
            );
            let cfg = RunConfig {
                name,
                nodes,
                workloads: workload,
                faults: if no_faults { Vec::new() } else { nemesis },
                time_limit_s: time_limit,
                interval_s: interval,
                recovery_s: recovery,
                rate,
                concurrency,
                backend,
                seed: common.seed,
                keel_bin,
                store: absolute(&common.store),
                expect_invalid: false,
            };
            let res = run::run(cfg).await?;
            run::print_summary(&res);
            Ok(res.verdict.exit_code())
        }
        Cmd::Suite {
            common,
            which,
            canary_bin,
            seeds,
            sizes,
            time_limit,
        } => {
            anyhow::ensure!(
                sizes.iter().all(|n| (3..=5).contains(n)),
                "--sizes takes cluster sizes from 3 to 5"
            );
            let backend = resolve_backend(common.backend);
            if let Some(code) = enter_netns(backend, 5)? {
                return Ok(code);
            }
            let keel_bin = absolute(&common.keel_bin.map_or_else(default_keel_bin, Ok)?);
            let canary_bin =
                absolute(&canary_bin.unwrap_or_else(|| suite::default_canary(&keel_bin)));
            for b in [&keel_bin, &canary_bin] {
                anyhow::ensure!(
                    b.exists(),
                    "{} not found (see docs/fault-injection.md for the build commands)",
                    b.display()
                );
            }
            let o = suite::SuiteOptions {
                keel_bin,
                canary_bin,
                store: absolute(&common.store),
                backend,
                seed: common.seed,
                seeds,
                sizes,
                time_limit_s: time_limit,
            };
            let runs = if which == "ci" {
                suite::ci(&o)
            } else {
                suite::full(&o)
            };
            let ok = suite::run_all(runs).await?;
            Ok(if ok { 0 } else { 1 })
        }
        Cmd::Report { run_dir } => {
            let ops = keel_jepsen::history::read(&run_dir.join("history.jsonl"))?;
            let results: serde_json::Value = serde_json::from_slice(
                &std::fs::read(run_dir.join("results.json")).context("reading results.json")?,
            )?;
            let out = run_dir.join("report.html");
            std::fs::write(&out, keel_jepsen::report::render(&ops, &results))?;
            println!("{}", out.display());
            Ok(0)
        }
        Cmd::NetDown => {
            netns::down(9);
            Ok(0)
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match rt.block_on(main_inner()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keel-jepsen: {e:#}");
            3
        }
    };
    std::process::exit(code);
}
