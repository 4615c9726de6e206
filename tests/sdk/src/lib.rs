//! Shared setup of the official-SDK compatibility tests (the tests live in `tests/`).

use std::time::Duration;

use keel_server::local_cluster::{wait_for, LocalCluster};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, GrpcCompression, Url,
};

/// Runs `worker` while `scenario` runs and stops it when the scenario ends, also when it
/// fails, so a failing test reports its error instead of waiting on a worker nobody stops.
/// The scenario's error comes first; then the worker's.
pub async fn run_with_worker<T>(
    worker: &mut temporalio_sdk::Worker,
    scenario: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let stop = worker.shutdown_handle();
    let scenario = async move {
        let result = scenario.await;
        stop();
        result
    };
    let (worker_result, result) = tokio::join!(worker.run(), scenario);
    let value = result?;
    worker_result?;
    Ok(value)
}

/// Deadline of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// A client of the `default` namespace connected to the node at `addr`, built the way an
/// application builds one.
pub async fn client_for(addr: std::net::SocketAddr) -> anyhow::Result<Client> {
    client_with(addr, GrpcCompression::default()).await
}

/// Like [`client_for`], with the given gRPC compression of the connection.
pub async fn client_with(
    addr: std::net::SocketAddr,
    compression: GrpcCompression,
) -> anyhow::Result<Client> {
    let url = Url::parse(&format!("http://{addr}"))?;
    let connection = Connection::connect(
        ConnectionOptions::new(url)
            .grpc_compression(compression)
            .build(),
    )
    .await?;
    Ok(Client::new(
        connection,
        ClientOptions::new("default").build(),
    )?)
}

/// A started 3-node cluster whose `default` namespace is registered; returns it with the
/// leader's id and the followers' ids.
pub async fn cluster() -> anyhow::Result<(LocalCluster, u64, Vec<u64>)> {
    let c = LocalCluster::start(3, |_| {}).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let followers: Vec<u64> = c.running().into_iter().filter(|i| *i != leader).collect();
    let raft = c.node(leader).raft().clone();
    wait_for(WAIT, "the default namespace is registered", || async {
        keel_engine::workflow::read_namespace(raft.state(), "default")
            .ok()
            .flatten()
    })
    .await?;
    Ok((c, leader, followers))
}

/// Waits until every running node holds the same state, then returns the history of
/// `workflow_id`'s current run as each node stores it, after checking they are identical.
pub async fn identical_histories(
    c: &LocalCluster,
    workflow_id: &str,
) -> anyhow::Result<Vec<keel_engine::workflow::HistoryEvent>> {
    use keel_engine::workflow::{read_history, resolve_run, RunKey};
    c.wait_converged(WAIT).await?;
    let mut histories = Vec::new();
    for id in c.running() {
        let state = c.node(id).raft().state();
        let ms = resolve_run(
            state,
            &RunKey {
                namespace: "default".into(),
                workflow_id: workflow_id.into(),
                run_id: String::new(),
            },
        )?
        .ok_or_else(|| anyhow::anyhow!("node {id} has no run of {workflow_id}"))?;
        let run = ms.run.clone().expect("named run");
        histories.push((id, read_history(state, &run, 1, ms.next_event_id - 1)?));
    }
    let (first_id, first) = histories
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no running node"))?;
    for (id, h) in &histories[1..] {
        anyhow::ensure!(
            h == &first,
            "history of {workflow_id} differs between nodes {first_id} and {id}"
        );
    }
    Ok(first)
}

/// The first page of the current run's history of `workflow_id`, read through the client's
/// raw WorkflowService (what the SDK itself calls).
pub async fn history_of(
    client: &Client,
    workflow_id: &str,
) -> anyhow::Result<temporalio_common::protos::temporal::api::history::v1::History> {
    history_of_run(client, workflow_id, "").await
}

/// Like [`history_of`], for the run `run_id` (empty: the current run).
pub async fn history_of_run(
    client: &Client,
    workflow_id: &str,
    run_id: &str,
) -> anyhow::Result<temporalio_common::protos::temporal::api::history::v1::History> {
    use temporalio_client::grpc::WorkflowService;
    use temporalio_client::tonic::IntoRequest;
    use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
    use temporalio_common::protos::temporal::api::workflowservice::v1::GetWorkflowExecutionHistoryRequest;
    let mut raw = client.clone();
    Ok(WorkflowService::get_workflow_execution_history(
        &mut raw,
        GetWorkflowExecutionHistoryRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: workflow_id.into(),
                run_id: run_id.into(),
            }),
            ..Default::default()
        }
        .into_request(),
    )
    .await?
    .into_inner()
    .history
    .unwrap_or_default())
}
