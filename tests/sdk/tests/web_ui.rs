//! The built-in web UI in a real headless browser (Chromium from the OS packages, driven over
//! the W3C WebDriver protocol by chromedriver): the workflow list, a workflow's history as a
//! table and as a timeline, an action (terminate, through its prompt and confirmation), the
//! task queues with their pollers and the cluster page — against a 3-node cluster with an
//! official-SDK worker. Skipped, saying so, where no browser is installed.
//! `KEEL_UI_SCREENSHOTS=docs/ui` also writes a screenshot of each page there.

use std::path::PathBuf;
use std::time::Duration;

use keel_engine::workflow::{resolve_run, RunKey, RunStatus};
use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use keel_server::local_cluster::{free_port_below_ephemeral, wait_for};
use serde_json::{json, Value};
use temporalio_client::{WorkflowGetResultOptions, WorkflowSignalOptions, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext,
    WorkflowResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[workflow]
#[derive(Default)]
pub struct UiOrder {
    delivered: bool,
}

#[workflow_methods]
impl UiOrder {
    #[run(name = "ui-order")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, item: String) -> WorkflowResult<String> {
        ctx.execute_activity(
            UiShop::charge,
            item.clone(),
            ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
        )
        .await?;
        ctx.timer(Duration::from_millis(200)).await;
        ctx.wait_condition(|s| s.delivered).await?;
        Ok(format!("{item} delivered"))
    }

    #[signal(name = "delivered")]
    pub fn delivered(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _to: String) {
        self.delivered = true;
    }
}

pub struct UiShop;

#[activities]
impl UiShop {
    #[activity]
    pub async fn charge(_ctx: ActivityContext, item: String) -> Result<String, ActivityError> {
        Ok(format!("charged for {item}"))
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

/// One HTTP/1.1 exchange with chromedriver; the JSON `value` of its answer.
async fn wd(port: u16, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    // chromedriver keeps the connection open: read the head, then Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, mut body) = loop {
        let n = s.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "chromedriver closed the connection mid-response");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                String::from_utf8_lossy(&raw[..i]).to_string(),
                raw[i + 4..].to_vec(),
            );
        }
    };
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| anyhow::anyhow!("no Content-Length: {head}"))?;
    while body.len() < length {
        let n = s.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "chromedriver closed the connection mid-body");
        body.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&body[..length]).to_string();
    let start = body
        .find('{')
        .ok_or_else(|| anyhow::anyhow!("no JSON: {head}"))?;
    let end = body
        .rfind('}')
        .ok_or_else(|| anyhow::anyhow!("no JSON: {head}"))?;
    let v: Value = serde_json::from_str(&body[start..=end])?;
    if !head.starts_with("HTTP/1.1 200") {
        anyhow::bail!("{method} {path}: {head}: {v}");
    }
    Ok(v["value"].clone())
}

struct Browser {
    port: u16,
    session: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(chromium: PathBuf, driver: PathBuf) -> anyhow::Result<Browser> {
        let port = free_port_below_ephemeral();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        wait_for(WAIT, "chromedriver is ready", || async {
            let v = wd(port, "GET", "/status", None).await.ok()?;
            v["ready"].as_bool().filter(|r| *r)
        })
        .await?;
        let profile = tempfile::tempdir()?;
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", format!("--user-data-dir={}", profile.path().display())],
        }}}});
        let v = wd(port, "POST", "/session", Some(caps)).await?;
        let session = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no session: {v}"))?
            .to_string();
        Ok(Browser {
            port,
            session,
            _driver: child,
            _profile: profile,
        })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        wd(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
        .await
    }

    async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.call("POST", "/url", Some(json!({"url": url}))).await?;
        Ok(())
    }

    /// Evaluates `script` (a function body) in the page.
    async fn eval(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Waits until `script` returns a truthy value; returns it.
    async fn until(&self, reason: &str, script: &str) -> anyhow::Result<Value> {
        wait_for(WAIT, reason, || async {
            let v = self.eval(script).await.ok()?;
            let truthy = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
            truthy.then_some(v)
        })
        .await
    }

    async fn screenshot(&self, name: &str) -> anyhow::Result<()> {
        let Some(dir) = std::env::var_os("KEEL_UI_SCREENSHOTS") else {
            return Ok(());
        };
        use base64::Engine;
        let png = self.call("GET", "/screenshot", None).await?;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default())?;
        std::fs::create_dir_all(&dir)?;
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), bytes)?;
        Ok(())
    }

    /// Answers the open prompt (if `text`) and accepts it.
    async fn accept_dialog(&self, text: Option<&str>) -> anyhow::Result<()> {
        wait_for(WAIT, "a dialog is open", || async {
            self.call("GET", "/alert/text", None).await.ok()
        })
        .await?;
        if let Some(t) = text {
            self.call("POST", "/alert/text", Some(json!({"text": t})))
                .await?;
        }
        self.call("POST", "/alert/accept", Some(json!({}))).await?;
        Ok(())
    }

    async fn close(self) {
        let _ = wd(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_a_headless_browser() -> anyhow::Result<()> {
    let (Some(chromium), Some(driver)) = (
        on_path("chromium").or_else(|| on_path("google-chrome")),
        on_path("chromedriver"),
    ) else {
        println!("skipped: no browser (install chromium and chromium-driver)");
        return Ok(());
    };
    let (c, leader, followers) = cluster().await?;
    // Worker and browser on the same node: pollers are listed by the node they poll.
    let node = c.node(followers[0]);
    let http = node.http_addr().expect("an HTTP port");
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new("ui")
        .register_workflow::<UiOrder>()?
        .register_activities(UiShop)
        .build();
    let mut worker = Worker::new(&runtime, client_for(node.client_addr()).await?, options)?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let browser = Browser::start(chromium, driver).await?;
    let base = format!("http://{http}/ui/");

    let scenario = async {
        let done = client
            .start_workflow(
                UiOrder::run,
                "pizza".to_string(),
                WorkflowStartOptions::new("ui", "ui-order-1").build(),
            )
            .await?;
        client
            .start_workflow(
                UiOrder::run,
                "tea".to_string(),
                WorkflowStartOptions::new("ui", "ui-order-2").build(),
            )
            .await?;
        done.signal(
            UiOrder::delivered,
            "door".to_string(),
            WorkflowSignalOptions::default(),
        )
        .await?;
        done.get_result(WorkflowGetResultOptions::default()).await?;

        // The list, live: both workflows with their statuses, and the counts per status.
        browser.open(&format!("{base}#/workflows")).await?;
        let rows = browser
            .until(
                "the list shows both workflows",
                "const t = document.getElementById('rows')?.innerText || '';
                 return t.includes('ui-order-1') && t.includes('Completed') && t.includes('ui-order-2') && t.includes('Running') ? t : null;",
            )
            .await?;
        assert!(rows.as_str().unwrap_or("").contains("ui-order"), "{rows}");
        browser
            .until(
                "the counts per status",
                "return document.getElementById('counts')?.innerText.includes('Completed');",
            )
            .await?;
        browser.screenshot("workflows").await?;

        // A workflow's history: table, decoded payloads, result; then the timeline.
        browser
            .open(&format!("{base}#/workflow/ui-order-1/"))
            .await?;
        let history = browser
            .until(
                "the history table",
                "const t = document.getElementById('history')?.innerText || '';
                 return t.includes('WorkflowExecutionCompleted') ? t : null;",
            )
            .await?;
        let history = history.as_str().unwrap_or("");
        for e in [
            "ActivityTaskCompleted",
            "TimerFired",
            "WorkflowExecutionSignaled",
        ] {
            assert!(history.contains(e), "no {e} in {history}");
        }
        assert!(
            history.contains("\"charged for pizza\""),
            "payloads are decoded: {history}"
        );
        let summary = browser
            .eval("return document.querySelector('.panel').innerText;")
            .await?;
        assert!(
            summary
                .as_str()
                .unwrap_or("")
                .contains("\"pizza delivered\""),
            "{summary}"
        );
        browser.screenshot("workflow").await?;
        browser
            .open(&format!("{base}#/workflow/ui-order-1/?view=timeline"))
            .await?;
        let bars = browser
            .until("the timeline", "const n = document.querySelectorAll('.timeline .bar').length; return n >= 3 ? n : null;")
            .await?;
        assert!(bars.as_u64().unwrap_or(0) >= 3, "{bars}");
        let labels = browser
            .eval("return document.querySelector('.timeline').innerText;")
            .await?;
        assert!(
            labels.as_str().unwrap_or("").contains("activity"),
            "{labels}"
        );
        browser.screenshot("timeline").await?;

        // An action behind its prompt and confirmation: terminate the running one.
        browser
            .open(&format!("{base}#/workflow/ui-order-2/"))
            .await?;
        browser
            .until(
                "the terminate button",
                "const b = document.getElementById('a-terminate'); return b && !b.disabled;",
            )
            .await?;
        browser
            .eval("document.getElementById('a-terminate').click(); return true;")
            .await?;
        browser
            .accept_dialog(Some("stopped from the browser test"))
            .await?;
        browser.accept_dialog(None).await?;
        browser
            .until(
                "the status shows Terminated",
                "return document.querySelector('.panel')?.innerText.includes('Terminated');",
            )
            .await?;
        let run = RunKey {
            namespace: "default".into(),
            workflow_id: "ui-order-2".into(),
            run_id: String::new(),
        };
        wait_for(WAIT, "the run is terminated on the server", || async {
            let ms = resolve_run(c.node(leader).raft().state(), &run).ok()??;
            (ms.status == RunStatus::Terminated as i32).then_some(())
        })
        .await?;

        // Task queues: the worker polling this node, and the backlog.
        browser.open(&format!("{base}#/task-queues")).await?;
        let queues = browser
            .until(
                "the task queue and its pollers",
                "const t = document.getElementById('tq-rows')?.innerText || '';
                 return t.includes('ui') && t.includes('workflow') && t.includes('activity') && !t.includes('none') ? t : null;",
            )
            .await?;
        assert!(
            queues.as_str().unwrap_or("").contains('@'),
            "a worker identity: {queues}"
        );
        browser.screenshot("task-queues").await?;
        anyhow::Ok(())
    };
    run_with_worker(&mut worker, scenario).await?;

    // The cluster page: three nodes, the leader, live.
    browser.open(&format!("{base}#/cluster")).await?;
    let members = browser
        .until(
            "three members and the leader",
            "const rows = document.querySelectorAll('#members tr');
             const leader = document.getElementById('leader')?.innerText;
             return rows.length === 3 && leader && leader !== 'none' ? leader : null;",
        )
        .await?;
    assert_eq!(members, json!(format!("node {leader}")));
    let roles = browser
        .eval("return document.getElementById('members').innerText;")
        .await?;
    let roles = roles.as_str().unwrap_or("");
    assert_eq!(roles.matches("leader").count(), 1, "{roles}");
    assert_eq!(roles.matches("follower").count(), 2, "{roles}");
    browser
        .until(
            "the commit sparkline",
            "return document.querySelector('svg.spark') !== null;",
        )
        .await?;
    browser.screenshot("cluster").await?;
    browser.close().await;
    c.shutdown().await;
    Ok(())
}
