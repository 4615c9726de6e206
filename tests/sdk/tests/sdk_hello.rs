//! The official Temporal Rust SDK (`temporalio-sdk` worker, `temporalio-client` client),
//! unmodified, against a 3-node in-process Keel cluster: the worker and the client talk to
//! different nodes, both followers where possible.

use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct HelloWorkflow;

#[workflow_methods]
impl HelloWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<String> {
        let greeting = ctx
            .execute_activity(
                Greetings::greet,
                name,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?;
        Ok(greeting)
    }
}

pub struct Greetings;

#[activities]
impl Greetings {
    #[activity]
    pub async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
        Ok(format!("Hello, {name}!"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_world_with_one_activity_worker_and_client_on_different_nodes() -> anyhow::Result<()>
{
    let (c, _leader, followers) = cluster().await?;

    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("hello")
        .register_workflow::<HelloWorkflow>()?
        .register_activities(Greetings)
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;

    let starter = client_for(c.node(followers[1]).client_addr()).await?;
    let scenario = async {
        let handle = starter
            .start_workflow(
                HelloWorkflow::run,
                "Keel".to_string(),
                WorkflowStartOptions::new("hello", "hello-1").build(),
            )
            .await?;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await;
    assert_eq!(result?, "Hello, Keel!");
    c.shutdown().await;
    Ok(())
}

#[workflow]
#[derive(Default)]
pub struct TenSteps;

#[workflow_methods]
impl TenSteps {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, start: String) -> WorkflowResult<String> {
        let mut value = start;
        for _ in 0..10 {
            value = ctx
                .execute_activity(
                    Greetings::greet,
                    value,
                    ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
                )
                .await?;
        }
        Ok(value)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sequential_activities_complete_in_order() -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let follower = followers[0];
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let client = client_for(c.node(follower).client_addr()).await?;
    let options = WorkerOptions::new("ten")
        .register_workflow::<TenSteps>()?
        .register_activities(Greetings)
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options)?;
    let scenario = async {
        let handle = client
            .start_workflow(
                TenSteps::run,
                "x".to_string(),
                WorkflowStartOptions::new("ten", "ten-1").build(),
            )
            .await?;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await;
    let expected = (0..10).fold("x".to_string(), |v, _| format!("Hello, {v}!"));
    assert_eq!(result?, expected);
    c.wait_converged(WAIT).await?;
    c.shutdown().await;
    Ok(())
}
