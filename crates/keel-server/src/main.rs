//! The `keel` binary: `keel server`, `keel up`, `keel workflow | namespace | cluster …`,
//! `keel bench …`, `keel completion`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel_config::NodeConfig;
use keel_server::client_cli::{ClientOpts, ClusterCmd, NamespaceCmd, WorkflowCmd};
use keel_server::node::{Listeners, Node};

/// RocksDB allocates through glibc's malloc, which gives every thread that allocates its own
/// arena (up to 8 per core); their free memory stays resident. Two arenas took ~3 MiB per
/// node off under load at unchanged CPU (docs/benchmarks.md "Server RSS"). Called before any
/// thread exists.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// mimalloc instead of glibc's malloc for Rust's allocations: glibc's allocator was ~15% of
/// every node's CPU under load (docs/benchmarks.md "Server CPU per workflow").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `keel --version`: the crate version, the git revision built and the Temporal API served.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        format!(
            "{} (git {}; Temporal API: {})",
            env!("CARGO_PKG_VERSION"),
            env!("KEEL_GIT_REVISION"),
            keel_proto::TEMPORAL_API
        )
    })
}

#[derive(Parser)]
#[command(
    name = "keel",
    version = version(),
    about = "Keel: a Raft-replicated durable-execution server"
)]
struct Cli {
    /// Log format on stderr: "text" or "json". Filter with RUST_LOG (default: info).
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node.
    Server {
        /// The node's TOML config.
        #[arg(long)]
        config: PathBuf,
        /// Overrides the config's data-dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run the local 3-node cluster as child processes until Ctrl-C.
    Up {
        /// Directory of node configs (default: cluster-configs/local-3, or the built-in copy
        /// of it written to data/keel-local-3/configs when run outside a checkout).
        #[arg(long)]
        configs: Option<PathBuf>,
        /// Base data directory; node N uses BASE/nodeN (default: each config's data-dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Mutual TLS on the client ports: a local CA and certificates are made (once) under
        /// the data directory, and the client settings to use are printed.
        #[arg(long)]
        tls: bool,
    },
    /// Workflow executions: start, list, count, describe, show, result, signal, query,
    /// cancel, terminate, reset.
    Workflow {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: WorkflowCmd,
    },
    /// Namespaces: list, describe, register.
    Namespace {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: NamespaceCmd,
    },
    /// Schedules: create, list, describe, trigger, toggle (pause / unpause), backfill, delete.
    Schedule {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: keel_server::schedule_cli::ScheduleCmd,
    },
    /// Cluster operations: status, add-learner, promote, remove, snapshot, digest.
    Cluster {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Make a new API key for `[[api-keys]]`: prints the key (once; only its SHA-256 goes
    /// into the config) and the config entry to add to every node.
    ApiKey {
        #[command(subcommand)]
        cmd: ApiKeyCmd,
    },
    /// Print a shell completion script (e.g. `keel completion bash > /etc/bash_completion.d/keel`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
}

#[derive(Subcommand)]
enum ApiKeyCmd {
    /// A new random key.
    Create {
        /// Who holds the key (shown in refusals and logs).
        #[arg(long)]
        name: String,
        /// A namespace the key may use (repeat for more; `*` for all and the cluster RPCs).
        #[arg(long = "namespace", short = 'n', required = true)]
        namespaces: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Apply throughput of the workflow engine on the in-memory store and on RocksDB (one core).
    Engine {
        #[arg(long, default_value_t = 2000)]
        workflows: usize,
        /// Workflows advanced together (one WriteBatch per step on RocksDB).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Comma-separated activity counts (1 = hello world).
        #[arg(long, default_value = "1,10", value_delimiter = ',')]
        activities: Vec<usize>,
    },
    /// List and Count on RocksDB state with many runs (apply's indexes and counts).
    Visibility {
        #[arg(long, default_value_t = 1_000_000)]
        runs: usize,
    },
    /// Register writes on an in-process cluster: commits/s and latency per concurrency.
    Raft {
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Comma-separated proposer counts.
        #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
        concurrency: Vec<usize>,
        /// Measured seconds per level.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Warm-up seconds per level.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        #[arg(long, default_value_t = 64)]
        value_bytes: usize,
    },
}

fn init_tracing(format: &str) {
    use std::io::IsTerminal;
    // openraft logs every vote and election at info; keep those at warn unless asked.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    match cli.cmd {
        Cmd::Server { config, data_dir } => {
            // The config sizes the runtime, so it is read before the runtime exists.
            let mut cfg = NodeConfig::load(&config)?;
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if cfg.runtime.worker_threads > 0 {
                runtime.worker_threads(cfg.runtime.worker_threads);
            }
            runtime.build()?.block_on(server(cfg, config))
        }
        cmd => runtime.build()?.block_on(run(cmd)),
    }
}

async fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Server { .. } => unreachable!("`keel server` builds its own runtime"),
        Cmd::Up {
            configs,
            data_dir,
            tls,
        } => {
            keel_server::cli::up(keel_server::cli::UpOptions {
                configs_dir: match configs {
                    Some(dir) => dir,
                    None => keel_server::cli::default_configs_dir()?,
                },
                data_dir,
                leader_timeout: Duration::from_secs(30),
                tls,
            })
            .await
        }
        Cmd::Workflow { opts, cmd } => client(keel_server::client_cli::workflow(&opts, cmd).await),
        Cmd::Namespace { opts, cmd } => {
            client(keel_server::client_cli::namespace(&opts, cmd).await)
        }
        Cmd::Cluster { opts, cmd } => client(keel_server::client_cli::cluster(&opts, cmd).await),
        Cmd::Schedule { opts, cmd } => {
            client(keel_server::schedule_cli::schedule(&opts, cmd).await)
        }
        Cmd::ApiKey {
            cmd: ApiKeyCmd::Create { name, namespaces },
        } => {
            print!("{}", keel_server::api_keys::create(&name, &namespaces)?);
            Ok(())
        }
        Cmd::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "keel", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Bench {
            cmd:
                BenchCmd::Engine {
                    workflows,
                    batch,
                    activities,
                },
        } => keel_server::bench::run_engine_bench(keel_server::bench::EngineBenchOptions {
            workflows,
            batch,
            activities,
        }),
        Cmd::Bench {
            cmd: BenchCmd::Visibility { runs },
        } => keel_server::bench::run_visibility_bench(keel_server::bench::VisibilityBenchOptions {
            runs,
        }),
        Cmd::Bench {
            cmd:
                BenchCmd::Raft {
                    nodes,
                    concurrency,
                    seconds,
                    warmup,
                    value_bytes,
                },
        } => {
            keel_server::bench::run_raft_bench(keel_server::bench::RaftBenchOptions {
                nodes,
                concurrency,
                warmup: Duration::from_secs(warmup),
                duration: Duration::from_secs(seconds),
                value_bytes,
            })
            .await?;
            Ok(())
        }
    }
}

/// A client verb's outcome: an error is printed as one line naming the problem, exit code 1.
fn client(result: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(e) = result {
        eprintln!("keel: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

async fn server(cfg: NodeConfig, config: PathBuf) -> anyhow::Result<()> {
    #[cfg(feature = "jepsen-canary")]
    tracing::warn!(
        "UNSAFE BUILD (feature jepsen-canary): kv reads skip ReadIndex; for fault-injection tests only"
    );
    let listeners = Listeners::bind(&cfg).await?;
    let node = Node::start(cfg, listeners)
        .await
        .with_context(|| format!("starting the node of {}", config.display()))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT: shutting down");
                break;
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM: shutting down");
                break;
            }
            _ = hup.recv() => match node.reload_tls() {
                Ok(true) => tracing::info!("SIGHUP: TLS certificates reloaded; new connections use them"),
                Ok(false) => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: TLS reload failed; the current certificates stay"),
            },
        }
    }
    node.shutdown().await;
    Ok(())
}
