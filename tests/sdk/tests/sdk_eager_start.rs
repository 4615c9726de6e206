//! Eager workflow start with the official Rust SDK: a client that also runs the worker for
//! the task queue asks for the first workflow task in the start's response
//! (`request_eager_execution`); Keel starts it for that worker in the start's own Raft entry,
//! so the workflow runs without a poll.

use keel_engine::workflow::Attributes;
use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult};

#[workflow]
#[derive(Default)]
pub struct Quick;

#[workflow_methods]
impl Quick {
    #[run]
    pub async fn run(_ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<String> {
        Ok(format!("eager {name}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eager_start_hands_the_first_task_to_the_starting_worker() -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    // One client for the worker and the start: the SDK reserves a task slot of that worker.
    let client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("eager")
        .register_workflow::<Quick>()?
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options)?;
    let scenario = async {
        let h = client
            .start_workflow(
                Quick::run,
                "start".to_string(),
                WorkflowStartOptions::new("eager", "eager-1")
                    .enable_eager_workflow_start(true)
                    .build(),
            )
            .await?;
        let r =
            tokio::time::timeout(WAIT, h.get_result(WorkflowGetResultOptions::default())).await??;
        anyhow::Ok(r)
    };
    assert_eq!(run_with_worker(&mut worker, scenario).await?, "eager start");
    // The first task was started by the start itself, not by a poll.
    let history = keel_sdk_tests::identical_histories(&c, "eager-1").await?;
    let Some(Attributes::WorkflowTaskStarted(first)) = &history[2].attributes else {
        panic!(
            "{:?}",
            history.iter().map(|e| e.event_type()).collect::<Vec<_>>()
        )
    };
    assert_eq!(first.request_id, "eager-start");
    c.shutdown().await;
    Ok(())
}
