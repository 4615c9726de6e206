//! The shared front door (`network.shared-client-addr`, 127.0.0.1:7233 under `keel up`): an
//! SDK worker and client that know only the shared address keep working when the node behind
//! their connection crashes — the dead node's listener goes with it, and the SDK's reconnect
//! lands on a survivor.

use std::time::Duration;

use keel_sdk_tests::{client_for, run_with_worker, WAIT};
use keel_server::local_cluster::{wait_for, LocalCluster};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct Greeter;

#[workflow_methods]
impl Greeter {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<String> {
        // Long enough that the crash lands between the two activities.
        let first = ctx
            .execute_activity(
                Greetings::greet,
                name,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?;
        ctx.timer(Duration::from_millis(1500)).await;
        Ok(ctx
            .execute_activity(
                Greetings::greet,
                first,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?)
    }
}

pub struct Greetings;

#[activities]
impl Greetings {
    #[activity]
    pub async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
        Ok(format!("Hello, {name}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_and_client_on_the_shared_address_survive_the_crash_of_their_node(
) -> anyhow::Result<()> {
    let mut c = LocalCluster::start_sharing_client_addr(3, |_| {}).await?;
    c.wait_for_leader(WAIT).await?;
    let shared = c.shared_client_addr().expect("a shared address");
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(shared).await?;
    let options = WorkerOptions::new("front-door")
        .register_workflow::<Greeter>()?
        .register_activities(Greetings)
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let client = client_for(shared).await?;
    let scenario = async {
        let handle = client
            .start_workflow(
                Greeter::run,
                "Keel".to_string(),
                WorkflowStartOptions::new("front-door", "front-door-1").build(),
            )
            .await?;
        // The kernel put the SDK's connections on some nodes; crash one that holds one.
        let victim = wait_for(WAIT, "a node holds an SDK connection", || async {
            c.running()
                .into_iter()
                .find(|id| c.node(*id).shared_client_connections() > 0)
        })
        .await?;
        c.crash(victim).await;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await?;
    assert_eq!(result, "Hello, Hello, Keel");
    let after: usize = c
        .running()
        .iter()
        .map(|id| c.node(*id).shared_client_connections())
        .sum();
    assert!(after > 0, "the SDK reconnected through the shared address");
    c.shutdown().await;
    Ok(())
}
