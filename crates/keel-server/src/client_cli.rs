//! `keel workflow …`, `keel namespace …` and `keel cluster …`: a command-line client of the
//! public APIs only (Temporal's WorkflowService and Keel's admin service on the client port),
//! with the verbs and flags of Temporal's CLI. Data goes to stdout (a table, or JSON with
//! `--output json|jsonl`), errors to stderr naming the problem, and the exit code is 1 on any
//! error.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use keel_proto::admin::v1 as admin;
use keel_proto::admin::v1::admin_client::AdminClient;
use serde_json::Value;
use temporalio_protos::temporal::api::common::v1::{Payloads, WorkflowExecution, WorkflowType};
use temporalio_protos::temporal::api::enums::v1::{EventType, HistoryEventFilterType};
use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;
use temporalio_protos::temporal::api::history::v1::HistoryEvent;
use temporalio_protos::temporal::api::query::v1::WorkflowQuery;
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1 as api;
use temporalio_protos::temporal::api::workflowservice::v1::workflow_service_client::WorkflowServiceClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::protojson;

/// Connection and output options every client verb takes.
#[derive(Args, Clone, Debug)]
pub struct ClientOpts {
    /// Client address of any node, `host:port` (`keel up` serves Temporal's default on every
    /// node).
    #[arg(
        long,
        global = true,
        env = "KEEL_ADDRESS",
        default_value = "127.0.0.1:7233",
        alias = "addr"
    )]
    pub address: String,
    /// Namespace.
    #[arg(
        long,
        short = 'n',
        global = true,
        env = "KEEL_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    pub output: Output,
    /// Show payloads as stored (protobuf JSON with base64 data), not decoded.
    #[arg(long, global = true)]
    pub raw: bool,
    /// TLS: the CA that signed the nodes' certificates (turns TLS on).
    #[arg(long, global = true, env = "KEEL_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// TLS: this client's certificate, for clusters that require one (`keel up --tls` does).
    #[arg(long, global = true, env = "KEEL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// TLS: the client certificate's key.
    #[arg(long, global = true, env = "KEEL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// API key, sent as `authorization: Bearer <key>` (for nodes with `[[api-keys]]`).
    #[arg(long, global = true, env = "KEEL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// A client connection: the channel, with the API key (if any) on every call.
type Conn = tonic::service::interceptor::InterceptedService<Channel, ApiKey>;

/// Adds `authorization: Bearer <key>` to every call when a key is given.
#[derive(Clone)]
pub struct ApiKey(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for ApiKey {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

fn api_key(o: &ClientOpts) -> anyhow::Result<ApiKey> {
    Ok(ApiKey(match &o.api_key {
        Some(k) => Some(
            format!("Bearer {k}")
                .parse()
                .context("--api-key: not a valid header value")?,
        ),
        None => None,
    }))
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// One pretty JSON document (protobuf JSON, as Temporal's HTTP API prints).
    Json,
    /// One JSON object per line (a row, an event).
    Jsonl,
}

/// Names a workflow execution.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Workflow id.
    #[arg(long, short = 'w')]
    pub workflow_id: String,
    /// Run id (default: the latest run).
    #[arg(long, short = 'r', default_value = "")]
    pub run_id: String,
}

#[derive(Subcommand, Debug)]
pub enum WorkflowCmd {
    /// Start a workflow execution; prints its workflow and run ids.
    Start {
        /// Workflow type.
        #[arg(long = "type")]
        workflow_type: String,
        /// Task queue its worker polls.
        #[arg(long, short = 't')]
        task_queue: String,
        /// Workflow id (default: a fresh UUID).
        #[arg(long, short = 'w')]
        workflow_id: Option<String>,
        /// An argument as JSON; repeat for several.
        #[arg(long, short = 'i')]
        input: Vec<String>,
        /// Execution timeout, e.g. `90s`, `10m`, `2h` (default: none).
        #[arg(long, value_parser = parse_duration)]
        execution_timeout: Option<Duration>,
        /// Run timeout (default: none).
        #[arg(long, value_parser = parse_duration)]
        run_timeout: Option<Duration>,
    },
    /// List workflow executions, newest first.
    List {
        /// Visibility query, e.g. `WorkflowType = 'order' AND ExecutionStatus = 'Running'`.
        #[arg(long, short = 'q', default_value = "")]
        query: String,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Count workflow executions (add `GROUP BY ExecutionStatus` for counts per status).
    Count {
        #[arg(long, short = 'q', default_value = "")]
        query: String,
    },
    /// Status, timing and pending work of one execution.
    Describe {
        #[command(flatten)]
        target: Target,
    },
    /// The event history; `--follow` prints new events until the run closes.
    Show {
        #[command(flatten)]
        target: Target,
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Wait for the run (and the runs it continues as) to close; print its result.
    Result {
        #[command(flatten)]
        target: Target,
    },
    /// Send a signal.
    Signal {
        #[command(flatten)]
        target: Target,
        /// Signal name.
        #[arg(long)]
        name: String,
        #[arg(long, short = 'i')]
        input: Vec<String>,
    },
    /// Send an update and wait for its result (a validator's rejection is an error).
    Update {
        #[command(flatten)]
        target: Target,
        /// Update name.
        #[arg(long)]
        name: String,
        #[arg(long, short = 'i')]
        input: Vec<String>,
        /// Update id (a retry with the same id gets the first outcome). Default: a new UUID.
        #[arg(long)]
        update_id: Option<String>,
    },
    /// Run a query on the workflow's worker.
    Query {
        #[command(flatten)]
        target: Target,
        /// Query type.
        #[arg(long, alias = "type")]
        name: String,
        #[arg(long, short = 'i')]
        input: Vec<String>,
    },
    /// Request cancellation.
    Cancel {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Terminate at once.
    Terminate {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Reset to a workflow-task-completed event: a new run replays up to it.
    Reset {
        #[command(flatten)]
        target: Target,
        /// The WorkflowTaskCompleted event id to reset to.
        #[arg(long, conflicts_with = "to")]
        event_id: Option<i64>,
        /// Or a point by name.
        #[arg(long = "type", value_enum)]
        to: Option<ResetPoint>,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ResetPoint {
    /// The first completed workflow task.
    FirstWorkflowTask,
    /// The last completed workflow task.
    LastWorkflowTask,
}

#[derive(Subcommand, Debug)]
pub enum NamespaceCmd {
    /// List namespaces.
    List,
    /// One namespace's settings and capabilities.
    Describe {
        /// Namespace name (default: --namespace).
        name: Option<String>,
    },
    /// Register a namespace.
    Register {
        name: String,
        /// Retention of closed runs, e.g. `72h`.
        #[arg(long, value_parser = parse_duration, default_value = "72h")]
        retention: Duration,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Every member's role, term and indexes.
    Status,
    /// Add a node (started with no members) as a non-voting learner.
    AddLearner {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        peer_addr: String,
        #[arg(long)]
        client_addr: String,
    },
    /// Make a learner a voter.
    Promote {
        #[arg(long)]
        node_id: u64,
    },
    /// Remove a node from the cluster.
    Remove {
        #[arg(long)]
        node_id: u64,
    },
    /// Build a snapshot on the node addressed now.
    Snapshot,
    /// The addressed node's state digest (identical on every node at one applied index).
    Digest,
}

/// Parses `500ms`, `90s`, `10m`, `2h`, `3d` (or plain seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 10m or 2h"))?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (ms, s, m, h, d)")),
    };
    Ok(Duration::from_millis(n * ms))
}

pub(crate) fn proto_duration(d: Duration) -> keel_proto::prost_wkt_types::Duration {
    keel_proto::prost_wkt_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

async fn channel(o: &ClientOpts, address: &str) -> anyhow::Result<Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read =
        |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let tls = match &o.tls_ca {
        Some(ca) => {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&o.tls_cert, &o.tls_key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            Some(tls)
        }
        None => None,
    };
    crate::node::client_endpoint(address, tls)?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| {
            format!(
                "no Keel node answers at {address} (is `keel up` running? set --address or KEEL_ADDRESS)"
            )
        })
}

pub(crate) async fn workflow_client(o: &ClientOpts) -> anyhow::Result<WorkflowServiceClient<Conn>> {
    Ok(
        WorkflowServiceClient::with_interceptor(channel(o, &o.address).await?, api_key(o)?)
            .max_decoding_message_size(128 << 20),
    )
}

/// An RPC error as the user should read it: what was not found, refused or unreachable.
pub(crate) fn explain(
    status: tonic::Status,
    o: &ClientOpts,
    target: Option<&Target>,
) -> anyhow::Error {
    let message = status.message();
    match (status.code(), target) {
        (Code::Unauthenticated, _) if o.api_key.is_none() => {
            anyhow::anyhow!("{message} (pass --api-key or set KEEL_API_KEY)")
        }
        (Code::NotFound, Some(t))
            if message.contains("not found") || message.contains("workflow") =>
        {
            let run = if t.run_id.is_empty() {
                String::new()
            } else {
                format!(" (run {})", t.run_id)
            };
            anyhow::anyhow!(
                "workflow {}{run} not found in namespace {}",
                t.workflow_id,
                o.namespace
            )
        }
        (Code::NotFound, None) if message.contains("amespace") => {
            anyhow::anyhow!("namespace {} not found ({message})", o.namespace)
        }
        // The connection itself failed or was cut (a refused TLS handshake shows up as any
        // of these, depending on when the server's alert arrives).
        (Code::Unknown | Code::Unavailable | Code::Cancelled, _)
            if [
                "transport error",
                "operation was canceled",
                "connect",
                "h2 protocol error",
            ]
            .iter()
            .any(|m| message.contains(m)) =>
        {
            anyhow::anyhow!(
                "the connection to {} failed ({message}): if the cluster runs TLS, give --tls-ca, and --tls-cert / --tls-key when it requires client certificates",
                o.address
            )
        }
        (Code::Unavailable, _) => anyhow::anyhow!(
            "the cluster at {} is unavailable: {message} (a majority of nodes may be down)",
            o.address
        ),
        (code, _) => anyhow::anyhow!("{code:?}: {message}"),
    }
}

pub(crate) fn payloads(inputs: &[String]) -> anyhow::Result<Option<Payloads>> {
    if inputs.is_empty() {
        return Ok(None);
    }
    let payloads = inputs
        .iter()
        .map(|s| {
            serde_json::from_str::<Value>(s)
                .map(|v| protojson::json_payload(&v))
                .with_context(|| format!("--input {s:?} is not JSON (quote strings: '\"text\"')"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(Payloads { payloads }))
}

fn execution(t: &Target) -> Option<WorkflowExecution> {
    Some(WorkflowExecution {
        workflow_id: t.workflow_id.clone(),
        run_id: t.run_id.clone(),
    })
}

/// A message as JSON, payloads decoded unless `--raw`.
pub(crate) fn json<M: prost::Message>(
    o: &ClientOpts,
    full_name: &str,
    m: &M,
) -> anyhow::Result<Value> {
    let mut v = protojson::to_json(full_name, m)?;
    if !o.raw {
        protojson::decode_payloads(&mut v);
    }
    Ok(v)
}

pub(crate) fn print_json(o: &ClientOpts, v: &Value) {
    if o.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(v).expect("JSON prints"));
    } else {
        println!("{v}");
    }
}

/// Aligned columns; the last column is not padded.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == n {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `WORKFLOW_EXECUTION_STATUS_RUNNING` → `Running`.
pub(crate) fn status_name(v: &Value) -> String {
    let raw = s(v);
    let tail = raw
        .strip_prefix("WORKFLOW_EXECUTION_STATUS_")
        .unwrap_or(&raw);
    let mut out = String::new();
    for word in tail.split('_') {
        let mut c = word.chars();
        if let Some(f) = c.next() {
            out.push(f);
            out.extend(c.flat_map(char::to_lowercase));
        }
    }
    out
}

pub async fn workflow(o: &ClientOpts, cmd: WorkflowCmd) -> anyhow::Result<()> {
    let mut client = workflow_client(o).await?;
    let ns = o.namespace.clone();
    match cmd {
        WorkflowCmd::Start {
            workflow_type,
            task_queue,
            workflow_id,
            input,
            execution_timeout,
            run_timeout,
        } => {
            let request_id = crate::client_cli::uuid();
            let workflow_id = workflow_id.unwrap_or_else(crate::client_cli::uuid);
            let r = client
                .start_workflow_execution(api::StartWorkflowExecutionRequest {
                    namespace: ns,
                    workflow_id: workflow_id.clone(),
                    workflow_type: Some(WorkflowType {
                        name: workflow_type,
                    }),
                    task_queue: Some(TaskQueue {
                        name: task_queue,
                        ..Default::default()
                    }),
                    input: payloads(&input)?,
                    workflow_execution_timeout: execution_timeout.map(proto_duration),
                    workflow_run_timeout: run_timeout.map(proto_duration),
                    identity: identity(),
                    request_id,
                    ..Default::default()
                })
                .await
                .map_err(|e| explain(e, o, None))?
                .into_inner();
            match o.output {
                Output::Table => println!("workflow {workflow_id} started, run {}", r.run_id),
                _ => print_json(
                    o,
                    &serde_json::json!({"workflowId": workflow_id, "runId": r.run_id}),
                ),
            }
        }
        WorkflowCmd::List { query, limit } => {
            let mut rows = Vec::new();
            let mut token = Vec::new();
            'pages: loop {
                let page = client
                    .list_workflow_executions(api::ListWorkflowExecutionsRequest {
                        namespace: ns.clone(),
                        page_size: limit.min(1000) as i32,
                        next_page_token: token,
                        query: query.clone(),
                    })
                    .await
                    .map_err(|e| explain(e, o, None))?
                    .into_inner();
                for info in &page.executions {
                    if rows.len() == limit {
                        break 'pages;
                    }
                    rows.push(json(
                        o,
                        "temporal.api.workflow.v1.WorkflowExecutionInfo",
                        info,
                    )?);
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            match o.output {
                Output::Table => print!(
                    "{}",
                    table(
                        &["WORKFLOW ID", "RUN ID", "TYPE", "STATUS", "START", "CLOSE"],
                        &rows
                            .iter()
                            .map(|r| vec![
                                s(&r["execution"]["workflowId"]),
                                s(&r["execution"]["runId"]),
                                s(&r["type"]["name"]),
                                status_name(&r["status"]),
                                s(&r["startTime"]),
                                s(&r["closeTime"]),
                            ])
                            .collect::<Vec<_>>()
                    )
                ),
                Output::Json => print_json(o, &Value::Array(rows)),
                Output::Jsonl => rows.iter().for_each(|r| print_json(o, r)),
            }
        }
        WorkflowCmd::Count { query } => {
            let r = client
                .count_workflow_executions(api::CountWorkflowExecutionsRequest {
                    namespace: ns,
                    query,
                })
                .await
                .map_err(|e| explain(e, o, None))?
                .into_inner();
            match o.output {
                Output::Table => {
                    println!("{}", r.count);
                    for g in &r.groups {
                        let v = json(
                            o,
                            "temporal.api.workflowservice.v1.CountWorkflowExecutionsResponse.AggregationGroup",
                            g,
                        )?;
                        let values: Vec<String> = v["groupValues"]
                            .as_array()
                            .map_or(Vec::new(), |a| a.iter().map(s).collect());
                        println!("  {}: {}", values.join(","), g.count);
                    }
                }
                _ => print_json(
                    o,
                    &json(
                        o,
                        "temporal.api.workflowservice.v1.CountWorkflowExecutionsResponse",
                        &r,
                    )?,
                ),
            }
        }
        WorkflowCmd::Describe { target } => {
            let r = client
                .describe_workflow_execution(api::DescribeWorkflowExecutionRequest {
                    namespace: ns,
                    execution: execution(&target),
                })
                .await
                .map_err(|e| explain(e, o, Some(&target)))?
                .into_inner();
            let v = json(
                o,
                "temporal.api.workflowservice.v1.DescribeWorkflowExecutionResponse",
                &r,
            )?;
            if o.output != Output::Table {
                print_json(o, &v);
                return Ok(());
            }
            let info = &v["workflowExecutionInfo"];
            for (k, val) in [
                ("Workflow id", s(&info["execution"]["workflowId"])),
                ("Run id", s(&info["execution"]["runId"])),
                ("Type", s(&info["type"]["name"])),
                ("Task queue", s(&info["taskQueue"])),
                ("Status", status_name(&info["status"])),
                ("Start time", s(&info["startTime"])),
                ("Execution time", s(&info["executionTime"])),
                ("Close time", s(&info["closeTime"])),
                ("History length", s(&info["historyLength"])),
                ("Parent", s(&info["parentExecution"]["workflowId"])),
                ("Memo", s(&info["memo"]["fields"])),
                (
                    "Search attributes",
                    s(&info["searchAttributes"]["indexedFields"]),
                ),
            ] {
                if !val.is_empty() {
                    println!("{k:<18} {val}");
                }
            }
            if let Some(acts) = v["pendingActivities"].as_array() {
                println!("\nPending activities:");
                print!(
                    "{}",
                    table(
                        &["ACTIVITY ID", "TYPE", "STATE", "ATTEMPT", "LAST FAILURE"],
                        &acts
                            .iter()
                            .map(|a| vec![
                                s(&a["activityId"]),
                                s(&a["activityType"]["name"]),
                                s(&a["state"]).replace("PENDING_ACTIVITY_STATE_", ""),
                                s(&a["attempt"]),
                                s(&a["lastFailure"]["message"]),
                            ])
                            .collect::<Vec<_>>()
                    )
                );
            }
            if let Some(children) = v["pendingChildren"].as_array() {
                println!("\nPending children:");
                for c in children {
                    println!("  {} ({})", s(&c["workflowId"]), s(&c["workflowTypeName"]));
                }
            }
        }
        WorkflowCmd::Show { target, follow } => {
            show(o, &mut client, &target, follow).await?;
        }
        WorkflowCmd::Result { target } => {
            result(o, &mut client, target).await?;
        }
        WorkflowCmd::Signal {
            target,
            name,
            input,
        } => {
            client
                .signal_workflow_execution(api::SignalWorkflowExecutionRequest {
                    namespace: ns,
                    workflow_execution: execution(&target),
                    signal_name: name.clone(),
                    input: payloads(&input)?,
                    identity: identity(),
                    request_id: uuid(),
                    ..Default::default()
                })
                .await
                .map_err(|e| explain(e, o, Some(&target)))?;
            done(o, &format!("signal {name} sent to {}", target.workflow_id));
        }
        WorkflowCmd::Update {
            target,
            name,
            input,
            update_id,
        } => {
            use temporalio_protos::temporal::api::update::v1 as upd;
            let request = api::UpdateWorkflowExecutionRequest {
                namespace: ns.clone(),
                workflow_execution: execution(&target),
                wait_policy: Some(upd::WaitPolicy {
                    lifecycle_stage: 3, // COMPLETED
                }),
                request: Some(upd::Request {
                    meta: Some(upd::Meta {
                        update_id: update_id.unwrap_or_else(uuid),
                        identity: identity(),
                    }),
                    input: Some(upd::Input {
                        name: name.clone(),
                        args: payloads(&input)?,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            // The server answers with the stage reached after its long-poll interval; ask
            // again (same update id: the same update) until it has an outcome.
            let outcome = loop {
                let r = client
                    .update_workflow_execution(request.clone())
                    .await
                    .map_err(|e| explain(e, o, Some(&target)))?
                    .into_inner();
                if let Some(outcome) = r.outcome {
                    break outcome;
                }
            };
            match outcome.value {
                Some(upd::outcome::Value::Success(p)) => {
                    let v = json(o, "temporal.api.common.v1.Payloads", &p)?;
                    print_result(o, &v);
                }
                Some(upd::outcome::Value::Failure(f)) => {
                    anyhow::bail!("update {name} failed: {}", f.message)
                }
                None => anyhow::bail!("update {name}: the server sent no outcome"),
            }
        }
        WorkflowCmd::Query {
            target,
            name,
            input,
        } => {
            let r = client
                .query_workflow(api::QueryWorkflowRequest {
                    namespace: ns,
                    execution: execution(&target),
                    query: Some(WorkflowQuery {
                        query_type: name,
                        query_args: payloads(&input)?,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map_err(|e| explain(e, o, Some(&target)))?
                .into_inner();
            if let Some(rejected) = &r.query_rejected {
                anyhow::bail!(
                    "query rejected: the workflow's status is {}",
                    status_name(&Value::String(
                        temporalio_protos::temporal::api::enums::v1::WorkflowExecutionStatus::try_from(rejected.status)
                            .map(|s| s.as_str_name().to_string())
                            .unwrap_or_default()
                    ))
                );
            }
            let v = match &r.query_result {
                Some(p) => json(o, "temporal.api.common.v1.Payloads", p)?,
                None => Value::Null,
            };
            print_result(o, &v);
        }
        WorkflowCmd::Cancel { target, reason } => {
            client
                .request_cancel_workflow_execution(api::RequestCancelWorkflowExecutionRequest {
                    namespace: ns,
                    workflow_execution: execution(&target),
                    identity: identity(),
                    request_id: uuid(),
                    reason,
                    ..Default::default()
                })
                .await
                .map_err(|e| explain(e, o, Some(&target)))?;
            done(
                o,
                &format!("cancellation of {} requested", target.workflow_id),
            );
        }
        WorkflowCmd::Terminate { target, reason } => {
            client
                .terminate_workflow_execution(api::TerminateWorkflowExecutionRequest {
                    namespace: ns,
                    workflow_execution: execution(&target),
                    reason,
                    identity: identity(),
                    ..Default::default()
                })
                .await
                .map_err(|e| explain(e, o, Some(&target)))?;
            done(o, &format!("workflow {} terminated", target.workflow_id));
        }
        WorkflowCmd::Reset {
            target,
            event_id,
            to,
            reason,
        } => {
            let event_id = match (event_id, to) {
                (Some(id), _) => id,
                (None, Some(point)) => {
                    let completed: Vec<i64> = history(o, &mut client, &target)
                        .await?
                        .iter()
                        .filter(|e| e.event_type == EventType::WorkflowTaskCompleted as i32)
                        .map(|e| e.event_id)
                        .collect();
                    let pick = match point {
                        ResetPoint::FirstWorkflowTask => completed.first(),
                        ResetPoint::LastWorkflowTask => completed.last(),
                    };
                    *pick.ok_or_else(|| {
                        anyhow::anyhow!(
                            "workflow {} has no completed workflow task to reset to",
                            target.workflow_id
                        )
                    })?
                }
                (None, None) => anyhow::bail!("reset needs --event-id or --type"),
            };
            let r = client
                .reset_workflow_execution(api::ResetWorkflowExecutionRequest {
                    namespace: ns,
                    workflow_execution: execution(&target),
                    reason,
                    workflow_task_finish_event_id: event_id,
                    request_id: uuid(),
                    ..Default::default()
                })
                .await
                .map_err(|e| explain(e, o, Some(&target)))?
                .into_inner();
            match o.output {
                Output::Table => println!(
                    "workflow {} reset to event {event_id}: new run {}",
                    target.workflow_id, r.run_id
                ),
                _ => print_json(o, &serde_json::json!({"runId": r.run_id})),
            }
        }
    }
    Ok(())
}

pub(crate) fn done(o: &ClientOpts, message: &str) {
    match o.output {
        Output::Table => println!("{message}"),
        _ => print_json(o, &serde_json::json!({"ok": true, "message": message})),
    }
}

/// A result value: one payload prints as itself, several as a list.
fn print_result(o: &ClientOpts, payloads: &Value) {
    let v = match payloads.get("payloads").and_then(Value::as_array) {
        Some(items) if items.len() == 1 => items[0].clone(),
        Some(items) => Value::Array(items.clone()),
        None => Value::Null,
    };
    match o.output {
        Output::Table => println!("{}", serde_json::to_string_pretty(&v).expect("JSON prints")),
        _ => print_json(o, &v),
    }
}

/// The whole history of a run.
async fn history(
    o: &ClientOpts,
    client: &mut WorkflowServiceClient<Conn>,
    target: &Target,
) -> anyhow::Result<Vec<HistoryEvent>> {
    let mut events = Vec::new();
    let mut token = Vec::new();
    loop {
        let page = client
            .get_workflow_execution_history(api::GetWorkflowExecutionHistoryRequest {
                namespace: o.namespace.clone(),
                execution: execution(target),
                next_page_token: token,
                ..Default::default()
            })
            .await
            .map_err(|e| explain(e, o, Some(target)))?
            .into_inner();
        events.extend(page.history.unwrap_or_default().events);
        if page.next_page_token.is_empty() {
            return Ok(events);
        }
        token = page.next_page_token;
    }
}

/// `EVENT_TYPE_WORKFLOW_TASK_COMPLETED` → `WorkflowTaskCompleted`.
fn event_name(e: &HistoryEvent) -> String {
    EventType::try_from(e.event_type)
        .map(|t| status_name(&Value::String(t.as_str_name().replace("EVENT_TYPE_", ""))))
        .unwrap_or_else(|_| format!("Event{}", e.event_type))
}

/// The event's attributes as compact JSON (payloads decoded unless `--raw`).
fn event_details(o: &ClientOpts, e: &HistoryEvent) -> anyhow::Result<(Value, String)> {
    let v = json(o, "temporal.api.history.v1.HistoryEvent", e)?;
    let details = v
        .as_object()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.ends_with("EventAttributes"))
                .map(|(_, a)| a.to_string())
        })
        .unwrap_or_default();
    Ok((v, details))
}

fn print_event(o: &ClientOpts, e: &HistoryEvent) -> anyhow::Result<()> {
    let (v, details) = event_details(o, e)?;
    match o.output {
        Output::Table => {
            let time = s(&v["eventTime"]);
            let mut details = details;
            if details.chars().count() > 160 {
                details = details.chars().take(157).collect::<String>() + "...";
            }
            println!(
                "{:>5}  {:<30}  {:<32}  {details}",
                e.event_id,
                time,
                event_name(e)
            );
        }
        _ => println!("{v}"),
    }
    Ok(())
}

async fn show(
    o: &ClientOpts,
    client: &mut WorkflowServiceClient<Conn>,
    target: &Target,
    follow: bool,
) -> anyhow::Result<()> {
    if o.output == Output::Json && !follow {
        let events = history(o, client, target).await?;
        let all: Vec<Value> = events
            .iter()
            .map(|e| json(o, "temporal.api.history.v1.HistoryEvent", e))
            .collect::<anyhow::Result<_>>()?;
        print_json(o, &serde_json::json!({"events": all}));
        return Ok(());
    }
    if o.output == Output::Table {
        println!("{:>5}  {:<30}  {:<32}  DETAILS", "ID", "TIME", "TYPE");
    }
    let mut token = Vec::new();
    loop {
        let page = client
            .get_workflow_execution_history(api::GetWorkflowExecutionHistoryRequest {
                namespace: o.namespace.clone(),
                execution: execution(target),
                next_page_token: token,
                wait_new_event: follow,
                history_event_filter_type: HistoryEventFilterType::AllEvent as i32,
                ..Default::default()
            })
            .await
            .map_err(|e| explain(e, o, Some(target)))?
            .into_inner();
        for e in page.history.unwrap_or_default().events {
            print_event(o, &e)?;
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

/// Follows the run and its continuations to the last close event; prints the result, or
/// fails with the run's failure, cancellation, termination or timeout.
async fn result(
    o: &ClientOpts,
    client: &mut WorkflowServiceClient<Conn>,
    mut target: Target,
) -> anyhow::Result<()> {
    loop {
        let page = client
            .get_workflow_execution_history(api::GetWorkflowExecutionHistoryRequest {
                namespace: o.namespace.clone(),
                execution: execution(&target),
                wait_new_event: true,
                history_event_filter_type: HistoryEventFilterType::CloseEvent as i32,
                ..Default::default()
            })
            .await
            .map_err(|e| explain(e, o, Some(&target)))?
            .into_inner();
        let Some(close) = page.history.unwrap_or_default().events.pop() else {
            continue; // the long poll ended before the run closed
        };
        let id = target.workflow_id.clone();
        match close.attributes {
            Some(EA::WorkflowExecutionCompletedEventAttributes(a)) => {
                if !a.new_execution_run_id.is_empty() {
                    target.run_id = a.new_execution_run_id; // cron: the next run
                    continue;
                }
                let v = match &a.result {
                    Some(p) => json(o, "temporal.api.common.v1.Payloads", p)?,
                    None => Value::Null,
                };
                print_result(o, &v);
                return Ok(());
            }
            Some(EA::WorkflowExecutionContinuedAsNewEventAttributes(a)) => {
                target.run_id = a.new_execution_run_id;
            }
            Some(EA::WorkflowExecutionFailedEventAttributes(a)) => {
                if !a.new_execution_run_id.is_empty() {
                    target.run_id = a.new_execution_run_id; // retried
                    continue;
                }
                let message = a.failure.map(|f| f.message).unwrap_or_default();
                anyhow::bail!("workflow {id} failed: {message}");
            }
            Some(EA::WorkflowExecutionTimedOutEventAttributes(a)) => {
                if !a.new_execution_run_id.is_empty() {
                    target.run_id = a.new_execution_run_id;
                    continue;
                }
                anyhow::bail!("workflow {id} timed out");
            }
            Some(EA::WorkflowExecutionCanceledEventAttributes(_)) => {
                anyhow::bail!("workflow {id} was canceled")
            }
            Some(EA::WorkflowExecutionTerminatedEventAttributes(a)) => {
                anyhow::bail!("workflow {id} was terminated: {}", a.reason)
            }
            other => anyhow::bail!("unexpected close event {other:?}"),
        }
    }
}

pub async fn namespace(o: &ClientOpts, cmd: NamespaceCmd) -> anyhow::Result<()> {
    let mut client = workflow_client(o).await?;
    match cmd {
        NamespaceCmd::List => {
            let r = client
                .list_namespaces(api::ListNamespacesRequest {
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .map_err(|e| explain(e, o, None))?
                .into_inner();
            let rows: Vec<Value> = r
                .namespaces
                .iter()
                .map(|n| {
                    json(
                        o,
                        "temporal.api.workflowservice.v1.DescribeNamespaceResponse",
                        n,
                    )
                })
                .collect::<anyhow::Result<_>>()?;
            match o.output {
                Output::Table => print!(
                    "{}",
                    table(
                        &["NAME", "STATE", "RETENTION", "DESCRIPTION"],
                        &rows
                            .iter()
                            .map(|n| vec![
                                s(&n["namespaceInfo"]["name"]),
                                s(&n["namespaceInfo"]["state"]).replace("NAMESPACE_STATE_", ""),
                                s(&n["config"]["workflowExecutionRetentionTtl"]),
                                s(&n["namespaceInfo"]["description"]),
                            ])
                            .collect::<Vec<_>>()
                    )
                ),
                Output::Json => print_json(o, &Value::Array(rows)),
                Output::Jsonl => rows.iter().for_each(|r| print_json(o, r)),
            }
        }
        NamespaceCmd::Describe { name } => {
            let name = name.unwrap_or_else(|| o.namespace.clone());
            let r = client
                .describe_namespace(api::DescribeNamespaceRequest {
                    namespace: name.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| match e.code() {
                    Code::NotFound => anyhow::anyhow!("namespace {name} not found"),
                    _ => explain(e, o, None),
                })?
                .into_inner();
            let v = json(
                o,
                "temporal.api.workflowservice.v1.DescribeNamespaceResponse",
                &r,
            )?;
            match o.output {
                Output::Table => {
                    println!("{}", serde_json::to_string_pretty(&v).expect("JSON prints"))
                }
                _ => print_json(o, &v),
            }
        }
        NamespaceCmd::Register {
            name,
            retention,
            description,
        } => {
            client
                .register_namespace(api::RegisterNamespaceRequest {
                    namespace: name.clone(),
                    description,
                    workflow_execution_retention_period: Some(proto_duration(retention)),
                    ..Default::default()
                })
                .await
                .map_err(|e| match e.code() {
                    Code::AlreadyExists => anyhow::anyhow!("namespace {name} already exists"),
                    _ => explain(e, o, None),
                })?;
            done(o, &format!("namespace {name} registered"));
        }
    }
    Ok(())
}

/// An admin client of the leader (membership changes are made there), found through the
/// node at `--address`.
async fn leader_admin(o: &ClientOpts) -> anyhow::Result<AdminClient<Conn>> {
    let mut admin = AdminClient::with_interceptor(channel(o, &o.address).await?, api_key(o)?);
    let s = admin
        .cluster_status(admin::ClusterStatusRequest {})
        .await
        .map_err(|e| explain(e, o, None))?
        .into_inner();
    let leader = s.local.as_ref().map_or(0, |l| l.leader_id);
    let address = s
        .members
        .iter()
        .filter_map(|m| m.member.as_ref())
        .find(|m| m.node_id == leader)
        .map(|m| m.client_addr.clone())
        .ok_or_else(|| anyhow::anyhow!("the cluster has no leader now; try again shortly"))?;
    Ok(AdminClient::with_interceptor(
        channel(o, &address).await?,
        api_key(o)?,
    ))
}

pub async fn cluster(o: &ClientOpts, cmd: ClusterCmd) -> anyhow::Result<()> {
    let mut admin = AdminClient::with_interceptor(channel(o, &o.address).await?, api_key(o)?);
    let status = |e: tonic::Status| explain(e, o, None);
    if matches!(
        cmd,
        ClusterCmd::AddLearner { .. } | ClusterCmd::Promote { .. } | ClusterCmd::Remove { .. }
    ) {
        admin = leader_admin(o).await?;
    }
    match cmd {
        ClusterCmd::Status => {
            let s = admin
                .cluster_status(admin::ClusterStatusRequest {})
                .await
                .map_err(status)?
                .into_inner();
            match o.output {
                Output::Table => print!("{}", crate::cli::format_status(&s)),
                _ => print_json(
                    o,
                    &protojson::to_json("keel.admin.v1.ClusterStatusResponse", &s)?,
                ),
            }
        }
        ClusterCmd::AddLearner {
            node_id,
            peer_addr,
            client_addr,
        } => {
            let r = admin
                .add_learner(admin::AddLearnerRequest {
                    node_id,
                    peer_addr,
                    client_addr,
                })
                .await
                .map_err(status)?
                .into_inner();
            membership(o, &format!("node {node_id} added as a learner"), &r)?;
        }
        ClusterCmd::Promote { node_id } | ClusterCmd::Remove { node_id } => {
            let promote = matches!(cmd, ClusterCmd::Promote { .. });
            let s = admin
                .cluster_status(admin::ClusterStatusRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let members: Vec<admin::Member> =
                s.members.iter().filter_map(|m| m.member.clone()).collect();
            anyhow::ensure!(
                members.iter().any(|m| m.node_id == node_id),
                "node {node_id} is not a member of the cluster (see `keel cluster status`)"
            );
            let mut voters: Vec<u64> = members
                .iter()
                .filter(|m| m.voter && m.node_id != node_id)
                .map(|m| m.node_id)
                .collect();
            if promote {
                voters.push(node_id);
            }
            let r = admin
                .change_membership(admin::ChangeMembershipRequest {
                    voter_ids: voters,
                    // Promote keeps everyone else as they are; remove drops the node.
                    retain: promote,
                })
                .await
                .map_err(status)?
                .into_inner();
            let what = if promote {
                "promoted to voter"
            } else {
                "removed"
            };
            membership(o, &format!("node {node_id} {what}"), &r)?;
        }
        ClusterCmd::Snapshot => {
            let r = admin
                .trigger_snapshot(admin::TriggerSnapshotRequest {})
                .await
                .map_err(status)?
                .into_inner();
            match o.output {
                Output::Table => println!("snapshot at index {}", r.snapshot_index),
                _ => print_json(
                    o,
                    &protojson::to_json("keel.admin.v1.TriggerSnapshotResponse", &r)?,
                ),
            }
        }
        ClusterCmd::Digest => {
            let r = admin
                .state_digest(admin::StateDigestRequest {})
                .await
                .map_err(status)?
                .into_inner();
            match o.output {
                Output::Table => println!(
                    "applied {}  keys {}  digest {}",
                    r.applied_index, r.key_count, r.digest
                ),
                _ => print_json(
                    o,
                    &protojson::to_json("keel.admin.v1.StateDigestResponse", &r)?,
                ),
            }
        }
    }
    Ok(())
}

fn membership(o: &ClientOpts, message: &str, r: &admin::MembershipResponse) -> anyhow::Result<()> {
    match o.output {
        Output::Table => {
            println!("{message} (log index {})", r.log_index);
            for m in &r.members {
                let role = if m.voter { "voter" } else { "learner" };
                println!(
                    "  node {} {role} client={} peer={}",
                    m.node_id, m.client_addr, m.peer_addr
                );
            }
        }
        _ => print_json(
            o,
            &protojson::to_json("keel.admin.v1.MembershipResponse", r)?,
        ),
    }
    Ok(())
}

/// Who this CLI is in the histories it writes.
pub(crate) fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{}@{host} keel-cli", std::process::id())
}

/// A random (version 4) UUID.
pub fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        h(0..4),
        h(4..6),
        &h(6..8)[1..],
        8 | (b[8] & 0x3),
        &h(8..10)[1..],
        h(10..16)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_uuids() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
        let u = uuid();
        assert_eq!(u.len(), 36, "{u}");
        assert_eq!(
            u.split('-').map(str::len).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert_ne!(uuid(), u);
    }

    #[test]
    fn statuses_read_as_temporals_cli_prints_them() {
        assert_eq!(
            status_name(&Value::String(
                "WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW".into()
            )),
            "ContinuedAsNew"
        );
    }
}
