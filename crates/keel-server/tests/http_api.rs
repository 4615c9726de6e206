//! Temporal's HTTP API on a node's HTTP port, called over real HTTP/1.1 on a 3-node
//! in-process cluster: JSON in and out in the proto3 mapping, Temporal's paths, the gRPC
//! error mapped to its HTTP status with a `google.rpc.Status` body, and Keel's cluster routes.

use std::time::Duration;

use keel_server::local_cluster::{wait_for, LocalCluster};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

/// One HTTP/1.1 request; returns the status code and the body parsed as JSON (or as a string).
async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("HTTP port");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let code: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_http_api_routes_through_a_follower() -> anyhow::Result<()> {
    let c = LocalCluster::start(3, |_| {}).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let follower = c.running().into_iter().find(|i| *i != leader).unwrap();
    let http = c.node(follower).http_addr().expect("an HTTP port");
    let ns = "/api/v1/namespaces/default";
    wait_for(WAIT, "the default namespace exists", || async {
        (call(http, "GET", ns, None).await.0 == 200).then_some(())
    })
    .await?;

    // namespaces, system and cluster info, search attributes
    let (code, v) = call(http, "GET", "/api/v1/namespaces", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        v["namespaces"][0]["namespaceInfo"]["name"], "default",
        "{v}"
    );
    let (code, v) = call(
        http,
        "POST",
        "/api/v1/namespaces",
        Some(json!({"namespace": "web", "workflowExecutionRetentionPeriod": "86400s"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = call(http, "GET", "/api/v1/namespaces/web", None).await;
    assert_eq!(
        (code, v["config"]["workflowExecutionRetentionTtl"].clone()),
        (200, json!("86400s"))
    );
    let (code, v) = call(http, "GET", "/api/v1/system-info", None).await;
    assert_eq!(code, 200);
    assert_eq!(v["capabilities"]["signalAndQueryHeader"], true, "{v}");
    let (code, _) = call(http, "GET", "/api/v1/cluster-info", None).await;
    assert_eq!(code, 200);
    let (code, v) = call(http, "GET", &format!("{ns}/search-attributes"), None).await;
    assert_eq!(code, 200);
    assert_eq!(
        v["systemAttributes"]["WorkflowId"], "INDEXED_VALUE_TYPE_KEYWORD",
        "{v}"
    );

    // start (payloads as protobuf JSON: base64 data), describe, signal, history, list, count
    let input = json!({"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "InBpenphIg=="}]});
    let (code, started) = call(http, "POST", &format!("{ns}/workflows/web-1"), Some(json!({
        "workflowType": {"name": "order"}, "taskQueue": {"name": "web"}, "input": input, "requestId": "r-web-1",
    }))).await;
    assert_eq!(code, 200, "{started}");
    let run_id = started["runId"].as_str().expect("a run id").to_string();
    let (code, again) = call(http, "POST", &format!("{ns}/workflows/web-1"), Some(json!({
        "workflowType": {"name": "order"}, "taskQueue": {"name": "web"}, "requestId": "r-web-other",
    }))).await;
    assert_eq!(code, 409, "a running id: ALREADY_EXISTS → 409: {again}");
    assert_eq!(
        again["details"][0]["@type"],
        "type.googleapis.com/temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure",
        "{again}"
    );
    let (code, d) = call(http, "GET", &format!("{ns}/workflows/web-1"), None).await;
    assert_eq!(code, 200);
    assert_eq!(
        d["workflowExecutionInfo"]["status"], "WORKFLOW_EXECUTION_STATUS_RUNNING",
        "{d}"
    );
    assert_eq!(
        d["workflowExecutionInfo"]["execution"]["runId"],
        run_id.as_str()
    );
    let (code, _) = call(
        http,
        "POST",
        &format!("{ns}/workflows/web-1/signal/picked-up"),
        Some(json!({"identity": "web"})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, h) = call(
        http,
        "GET",
        &format!("{ns}/workflows/web-1/history?execution.runId={run_id}&maximumPageSize=10"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let types: Vec<&str> = h["history"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
            "EVENT_TYPE_WORKFLOW_TASK_SCHEDULED",
            "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"
        ]
    );
    assert_eq!(
        h["history"]["events"][0]["workflowExecutionStartedEventAttributes"]["input"],
        input
    );
    let (code, r) = call(
        http,
        "GET",
        &format!("{ns}/workflows/web-1/history-reverse"),
        None,
    )
    .await;
    assert_eq!(
        (code, r["history"]["events"][0]["eventType"].clone()),
        (200, json!("EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"))
    );
    let (code, l) = call(
        http,
        "GET",
        &format!("{ns}/workflows?query=WorkflowType%20%3D%20%27order%27"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        l["executions"][0]["execution"]["workflowId"], "web-1",
        "{l}"
    );
    let (code, n) = call(
        http,
        "GET",
        &format!("{ns}/workflow-count?query=ExecutionStatus='Running'"),
        None,
    )
    .await;
    assert_eq!(
        (code, n["count"].clone()),
        (200, json!("1")),
        "int64 prints as a string"
    );
    let (code, q) = call(
        http,
        "GET",
        &format!("{ns}/task-queues/web?taskQueueType=TASK_QUEUE_TYPE_WORKFLOW"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{q}");
    assert_eq!(
        q["stats"]["approximateBacklogCount"], "1",
        "web-1's first workflow task: {q}"
    );
    let (code, e) = call(
        http,
        "GET",
        &format!("{ns}/task-queues/web?reportTaskReachability=true"),
        None,
    )
    .await;
    assert_eq!(
        (code, e["message"].clone()),
        (
            501,
            json!("DescribeTaskQueueRequest.report_task_reachability is not supported by this server yet")
        )
    );

    // cancel, terminate; then errors
    let (code, _) = call(
        http,
        "POST",
        &format!("{ns}/workflows/web-1/cancel"),
        Some(json!({"reason": "web"})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = call(
        http,
        "POST",
        &format!("{ns}/workflows/web-1/terminate"),
        Some(json!({"reason": "from the web"})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, d) = call(http, "GET", &format!("{ns}/workflows/web-1"), None).await;
    assert_eq!(
        (code, d["workflowExecutionInfo"]["status"].clone()),
        (200, json!("WORKFLOW_EXECUTION_STATUS_TERMINATED"))
    );
    let (code, e) = call(
        http,
        "POST",
        &format!("{ns}/workflows/web-1/terminate"),
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 404, "{e}");
    assert_eq!(e["code"], 5);
    let (code, e) = call(
        http,
        "POST",
        &format!("{ns}/workflows/web-1/reset"),
        Some(json!({"workflowTaskFinishEventId": "1", "requestId": "x"})),
    )
    .await;
    assert_eq!(code, 400, "reset to a non-task event: {e}");
    let (code, e) = call(http, "GET", "/api/v1/namespaces/nowhere/workflows/x", None).await;
    assert_eq!(code, 404, "{e}");
    assert_eq!(
        e["details"][0]["@type"],
        "type.googleapis.com/temporal.api.errordetails.v1.NamespaceNotFoundFailure",
        "{e}"
    );
    let (code, e) = call(
        http,
        "POST",
        &format!("{ns}/workflows/w"),
        Some(json!({"workflowTypo": 1})),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        e["message"].as_str().unwrap().contains("workflowTypo"),
        "{e}"
    );
    let (code, e) = call(
        http,
        "POST",
        &format!("{ns}/workflows/w"),
        Some(json!({"workflowType": {"name": "x"}})),
    )
    .await;
    assert_eq!(
        (code, e["message"].clone()),
        (400, json!("TaskQueue is not set on request."))
    );
    let (code, _) = call(http, "GET", "/api/v1/no-such-route", None).await;
    assert_eq!(code, 404);
    let (code, _) = call(http, "DELETE", &format!("{ns}/workflows/web-1"), None).await;
    assert_eq!(code, 405);
    // Worker versioning is not built.
    let (code, e) = call(http, "GET", &format!("{ns}/worker-deployments/d-1"), None).await;
    assert_eq!(
        (code, e["code"].clone()),
        (501, json!(12)),
        "an RPC Keel has not built: {e}"
    );
    // Schedules are routed too: a create without its schedule is Temporal's INVALID_ARGUMENT.
    let (code, e) = call(
        http,
        "POST",
        &format!("{ns}/schedules/s-1"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (code, e["message"].clone()),
        (400, json!("schedule is required"))
    );

    // Keel's cluster routes
    let (code, s) = call(http, "GET", "/api/v1/keel/cluster", None).await;
    assert_eq!(code, 200);
    assert_eq!(s["local"]["leaderId"], leader.to_string(), "{s}");
    assert_eq!(s["members"].as_array().map(Vec::len), Some(3));
    let (code, s) = call(http, "GET", "/api/v1/keel/node", None).await;
    assert_eq!(
        (code, s["nodeId"].clone()),
        (200, json!(follower.to_string()))
    );
    let (code, s) = call(http, "GET", "/api/v1/keel/digest", None).await;
    assert_eq!(code, 200);
    assert_eq!(s["digest"].as_str().map(str::len), Some(64));

    // the UI is served from the same port
    let (code, page) = call(http, "GET", "/", None).await;
    assert_eq!(code, 200);
    assert!(
        page.as_str().is_some_and(|p| p.contains("<title>Keel")),
        "{page}"
    );
    c.shutdown().await;
    Ok(())
}
