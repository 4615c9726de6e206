//! Every verb of the `keel` CLI (`workflow`, `namespace`, `schedule`, `cluster`, `completion`,
//! `--version`), run as the real binary against a 3-node in-process cluster whose workflows run
//! on an official-SDK worker: the output names what it shows, JSON output parses, payloads are
//! decoded (raw with `--raw`), and errors exit 1 naming the problem.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use keel_server::local_cluster::wait_for;
use serde_json::Value;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct Order {
    status: String,
    delivered: bool,
}

#[workflow_methods]
impl Order {
    #[run(name = "order")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, item: String) -> WorkflowResult<String> {
        let charged = ctx
            .execute_activity(
                Shop::charge,
                item.clone(),
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?;
        ctx.state_mut(|s| s.status = charged);
        ctx.wait_condition(|s| s.delivered).await?;
        Ok(format!("{item} delivered"))
    }

    #[signal(name = "delivered")]
    pub fn delivered(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _to: String) {
        self.delivered = true;
    }

    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> String {
        self.status.clone()
    }

    #[update(name = "tip")]
    pub fn tip(&mut self, _ctx: &mut SyncWorkflowContext<Self>, amount: u32) -> String {
        self.status = format!("{} + tip {amount}", self.status);
        self.status.clone()
    }

    #[update_validator(tip)]
    pub fn check_tip(
        &self,
        _ctx: &WorkflowContextView,
        amount: &u32,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if *amount > 100 {
            return Err("a tip over 100".into());
        }
        Ok(())
    }
}

pub struct Shop;

#[activities]
impl Shop {
    #[activity]
    pub async fn charge(_ctx: ActivityContext, item: String) -> Result<String, ActivityError> {
        Ok(format!("charged for {item}"))
    }
}

fn keel_bin() -> PathBuf {
    keel_server::local_cluster::keel_binary()
}

/// Runs `keel ARGS --address ADDRESS`; returns the output (stdout and stderr as text).
async fn keel(address: &str, args: &[&str]) -> (Output, String, String) {
    let out = tokio::process::Command::new(keel_bin())
        .args(args)
        .env("KEEL_ADDRESS", address)
        .env_remove("KEEL_NAMESPACE")
        .output()
        .await
        .expect("run keel");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out, stdout, stderr)
}

/// Runs a verb that must succeed; returns its stdout.
async fn ok(address: &str, args: &[&str]) -> String {
    let (out, stdout, stderr) = keel(address, args).await;
    assert!(
        out.status.success(),
        "keel {args:?} failed ({}): {stderr}",
        out.status
    );
    stdout
}

/// Runs a verb that must fail with exit code 1; returns its stderr.
async fn fails(address: &str, args: &[&str]) -> String {
    let (out, stdout, stderr) = keel(address, args).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "keel {args:?} should fail: {stdout}{stderr}"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cli_verb_against_a_cluster_with_an_sdk_worker() -> anyhow::Result<()> {
    let (mut c, leader, followers) = cluster().await?;
    let addr = c.node(followers[0]).client_addr().to_string();
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[1]).client_addr()).await?;
    let options = WorkerOptions::new("cli")
        .register_workflow::<Order>()?
        .register_activities(Shop)
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let a = addr.as_str();

    let scenario = async {
        // start, query, list, count, describe
        let out = ok(
            a,
            &[
                "workflow",
                "start",
                "--type",
                "order",
                "-t",
                "cli",
                "-w",
                "order-42",
                "-i",
                "\"pizza\"",
            ],
        )
        .await;
        assert!(out.starts_with("workflow order-42 started, run "), "{out}");
        wait_for(WAIT, "the worker charged the order", || async {
            let (o, stdout, _) = keel(
                a,
                &["workflow", "query", "-w", "order-42", "--name", "status"],
            )
            .await;
            (o.status.success() && stdout.trim() == "\"charged for pizza\"").then_some(())
        })
        .await?;
        let out = ok(a, &["workflow", "list", "-q", "WorkflowId = 'order-42'"]).await;
        let mut lines = out.lines();
        assert!(
            lines.next().unwrap_or("").starts_with("WORKFLOW ID"),
            "{out}"
        );
        let row = lines.next().unwrap_or("");
        assert!(
            row.starts_with("order-42") && row.contains(" order ") && row.contains("Running"),
            "{out}"
        );
        let rows: Vec<Value> = ok(a, &["workflow", "list", "-o", "jsonl"])
            .await
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["execution"]["workflowId"], "order-42");
        assert_eq!(ok(a, &["workflow", "count"]).await.trim(), "1");
        let out = ok(a, &["workflow", "count", "-q", "GROUP BY ExecutionStatus"]).await;
        assert!(out.contains("Running: 1"), "{out}");
        let out = ok(a, &["workflow", "describe", "-w", "order-42"]).await;
        assert!(out.contains("Status             Running"), "{out}");
        assert!(out.contains("Task queue         cli"), "{out}");

        // update: the handler's result; a validator's rejection exits 1 naming it
        let out = ok(
            a,
            &[
                "workflow", "update", "-w", "order-42", "--name", "tip", "-i", "5",
            ],
        )
        .await;
        assert_eq!(out.trim(), "\"charged for pizza + tip 5\"");
        let (o, _, err) = keel(
            a,
            &[
                "workflow", "update", "-w", "order-42", "--name", "tip", "-i", "500",
            ],
        )
        .await;
        assert_eq!(o.status.code(), Some(1));
        assert!(err.contains("update tip failed: a tip over 100"), "{err}");

        // show --follow streams until the close; signal; result
        let follow = tokio::process::Command::new(keel_bin())
            .args([
                "workflow",
                "show",
                "-w",
                "order-42",
                "--follow",
                "--address",
                a,
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let out = ok(
            a,
            &[
                "workflow",
                "signal",
                "-w",
                "order-42",
                "--name",
                "delivered",
                "-i",
                "\"door\"",
            ],
        )
        .await;
        assert_eq!(out.trim(), "signal delivered sent to order-42");
        let out = ok(a, &["workflow", "result", "-w", "order-42"]).await;
        assert_eq!(out.trim(), "\"pizza delivered\"");
        let followed = tokio::time::timeout(WAIT, follow.wait_with_output()).await??;
        let followed = String::from_utf8_lossy(&followed.stdout).to_string();
        for event in [
            "WorkflowExecutionStarted",
            "ActivityTaskCompleted",
            "WorkflowExecutionSignaled",
            "WorkflowExecutionUpdateCompleted",
            "WorkflowExecutionCompleted",
        ] {
            assert!(
                followed.contains(event),
                "--follow printed no {event}: {followed}"
            );
        }
        assert!(
            followed.contains("\"pizza delivered\""),
            "decoded result: {followed}"
        );

        // JSON history: payloads decoded, or raw
        let history: Value = serde_json::from_str(
            &ok(a, &["workflow", "show", "-w", "order-42", "-o", "json"]).await,
        )?;
        let started = &history["events"][0]["workflowExecutionStartedEventAttributes"];
        assert_eq!(started["input"]["payloads"][0], "pizza");
        let raw: Value = serde_json::from_str(
            &ok(
                a,
                &["workflow", "show", "-w", "order-42", "-o", "json", "--raw"],
            )
            .await,
        )?;
        let payload =
            &raw["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0];
        assert_eq!(
            payload["data"], "InBpenphIg==",
            "base64 of \"pizza\" as stored"
        );

        // reset to the first workflow task: the signal is reapplied, the new run completes
        let out = ok(
            a,
            &[
                "workflow",
                "reset",
                "-w",
                "order-42",
                "--type",
                "first-workflow-task",
                "--reason",
                "again",
            ],
        )
        .await;
        assert!(
            out.starts_with("workflow order-42 reset to event 4: new run "),
            "{out}"
        );
        let out = ok(a, &["workflow", "result", "-w", "order-42"]).await;
        assert_eq!(out.trim(), "\"pizza delivered\"");

        // terminate and cancel; result reports them and exits 1
        for id in ["order-43", "order-44"] {
            ok(
                a,
                &[
                    "workflow", "start", "--type", "order", "-t", "cli", "-w", id, "-i", "\"tea\"",
                ],
            )
            .await;
        }
        let out = ok(
            a,
            &[
                "workflow",
                "terminate",
                "-w",
                "order-43",
                "--reason",
                "stop",
            ],
        )
        .await;
        assert_eq!(out.trim(), "workflow order-43 terminated");
        let err = fails(a, &["workflow", "result", "-w", "order-43"]).await;
        assert_eq!(err.trim(), "keel: workflow order-43 was terminated: stop");
        let out = ok(a, &["workflow", "cancel", "-w", "order-44"]).await;
        assert_eq!(out.trim(), "cancellation of order-44 requested");
        let err = fails(a, &["workflow", "result", "-w", "order-44"]).await;
        assert_eq!(err.trim(), "keel: workflow order-44 was canceled");

        // errors name the problem
        let err = fails(a, &["workflow", "describe", "-w", "nope"]).await;
        assert_eq!(
            err.trim(),
            "keel: workflow nope not found in namespace default"
        );
        let err = fails(
            a,
            &[
                "workflow", "start", "--type", "order", "-t", "cli", "-i", "{oops",
            ],
        )
        .await;
        assert!(err.contains("--input \"{oops\" is not JSON"), "{err}");
        let err = fails("127.0.0.1:1", &["workflow", "list"]).await;
        assert!(err.contains("no Keel node answers at 127.0.0.1:1"), "{err}");
        anyhow::Ok(())
    };
    run_with_worker(&mut worker, scenario).await?;

    // namespaces
    let out = ok(
        a,
        &[
            "namespace",
            "register",
            "cli-ns",
            "--retention",
            "24h",
            "--description",
            "from the CLI",
        ],
    )
    .await;
    assert_eq!(out.trim(), "namespace cli-ns registered");
    let err = fails(a, &["namespace", "register", "cli-ns"]).await;
    assert_eq!(err.trim(), "keel: namespace cli-ns already exists");
    let out = ok(a, &["namespace", "list"]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("cli-ns") && l.contains("86400s") && l.contains("from the CLI")),
        "{out}"
    );
    let described: Value =
        serde_json::from_str(&ok(a, &["namespace", "describe", "cli-ns", "-o", "json"]).await)?;
    assert_eq!(described["namespaceInfo"]["name"], "cli-ns");
    let err = fails(a, &["namespace", "describe", "nowhere"]).await;
    assert_eq!(err.trim(), "keel: namespace nowhere not found");
    let err = fails(a, &["workflow", "list", "-n", "nowhere"]).await;
    assert!(err.contains("namespace nowhere not found"), "{err}");

    // schedule
    let out = ok(
        a,
        &[
            "schedule",
            "create",
            "-s",
            "cli-sched",
            "--interval",
            "1h",
            "--type",
            "order",
            "-t",
            "cli",
            "-w",
            "cli-sched-wf",
            "-i",
            "\"book\"",
            "--paused",
        ],
    )
    .await;
    assert_eq!(out.trim(), "schedule cli-sched created");
    let err = fails(
        a,
        &[
            "schedule",
            "create",
            "-s",
            "cli-sched",
            "--cron",
            "@daily",
            "--type",
            "order",
            "-t",
            "cli",
            "-w",
            "x",
        ],
    )
    .await;
    assert!(err.contains("already registered"), "{err}");
    let err = fails(
        a,
        &[
            "schedule",
            "create",
            "-s",
            "bad",
            "--cron",
            "61 * * * *",
            "--type",
            "order",
            "-t",
            "cli",
            "-w",
            "x",
        ],
    )
    .await;
    assert!(err.contains("minute value 61 is out of range"), "{err}");
    let out = ok(a, &["schedule", "list"]).await;
    assert!(
        out.lines()
            .any(|l| l.starts_with("cli-sched") && l.contains("order") && l.contains("true")),
        "{out}"
    );
    let out = ok(a, &["schedule", "trigger", "-s", "cli-sched"]).await;
    assert_eq!(out.trim(), "schedule cli-sched triggered");
    let out = ok(
        a,
        &[
            "schedule",
            "toggle",
            "-s",
            "cli-sched",
            "--unpause",
            "--reason",
            "go",
        ],
    )
    .await;
    assert_eq!(out.trim(), "schedule cli-sched unpaused");
    let out = ok(
        a,
        &[
            "schedule",
            "backfill",
            "-s",
            "cli-sched",
            "--start-time",
            "2020-01-01T00:00:00Z",
            "--end-time",
            "2020-01-01T02:00:00Z",
            "--overlap-policy",
            "allow-all",
        ],
    )
    .await;
    assert_eq!(out.trim(), "schedule cli-sched backfilled");
    let described: Value = serde_json::from_str(
        &ok(
            a,
            &["schedule", "describe", "-s", "cli-sched", "-o", "json"],
        )
        .await,
    )?;
    assert_eq!(described["info"]["actionCount"], "4", "{described}");
    assert_eq!(described["schedule"]["state"]["notes"], "go");
    let out = ok(a, &["schedule", "describe", "-s", "cli-sched"]).await;
    assert!(out.contains("paused      false (go)"), "{out}");
    assert!(out.contains("cli-sched-wf-2020-01-01T01:00:00Z"), "{out}");
    let out = ok(a, &["schedule", "delete", "-s", "cli-sched"]).await;
    assert_eq!(out.trim(), "schedule cli-sched deleted");
    let err = fails(a, &["schedule", "describe", "-s", "cli-sched"]).await;
    assert!(err.contains("schedule not found"), "{err}");

    // cluster
    let out = ok(a, &["cluster", "status"]).await;
    assert!(out.contains(&format!("leader {leader}")), "{out}");
    let out = ok(a, &["cluster", "snapshot"]).await;
    assert!(out.starts_with("snapshot at index "), "{out}");
    let digest: Value = serde_json::from_str(&ok(a, &["cluster", "digest", "-o", "json"]).await)?;
    assert_eq!(
        digest["digest"].as_str().map(str::len),
        Some(64),
        "{digest}"
    );
    let joining = c.start_joining_node(4).await?;
    let (peer, client) = (
        joining.peer_addr().to_string(),
        joining.client_addr().to_string(),
    );
    let out = ok(
        a,
        &[
            "cluster",
            "add-learner",
            "--node-id",
            "4",
            "--peer-addr",
            &peer,
            "--client-addr",
            &client,
        ],
    )
    .await;
    assert!(out.starts_with("node 4 added as a learner"), "{out}");
    assert!(out.contains("node 4 learner"), "{out}");
    let out = ok(a, &["cluster", "promote", "--node-id", "4"]).await;
    assert!(out.contains("node 4 voter"), "{out}");
    let out = ok(a, &["cluster", "remove", "--node-id", "4"]).await;
    assert!(
        out.starts_with("node 4 removed") && !out.contains("node 4 voter"),
        "{out}"
    );
    let err = fails(a, &["cluster", "promote", "--node-id", "9"]).await;
    assert!(err.contains("node 9 is not a member"), "{err}");

    // completions and version
    let out = ok(a, &["completion", "bash"]).await;
    assert!(
        out.contains("_keel") && out.contains("workflow"),
        "a bash completion script"
    );
    let out = ok(a, &["--version"]).await;
    assert!(
        out.starts_with("keel ")
            && out.contains("(git ")
            && out.contains("Temporal API: temporalio-protos"),
        "{out}"
    );
    c.shutdown().await;
    Ok(())
}
