//! Continue-as-new with the official Rust SDK: a workflow that continues itself a thousand
//! times, the client following the chain to the last run's result, the chain visible in the
//! histories, and the memo carried from run to run.

use keel_sdk_tests::{client_for, cluster, history_of_run, run_with_worker, WAIT};
use temporalio_client::{WorkflowDescribeOptions, WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes as EA;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ContinueAsNewOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

const RUNS: u32 = 1_000;

#[workflow]
#[derive(Default)]
pub struct CountUp;

#[workflow_methods]
impl CountUp {
    /// Run `n` of the chain: the last returns its number, every other continues as `n + 1`.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, n: u32) -> WorkflowResult<u32> {
        if n >= RUNS {
            return Ok(n);
        }
        match ctx.continue_as_new(n + 1, ContinueAsNewOptions::default())? {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_a_thousand_runs_is_followed_to_the_last_result() -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("chain")
        .register_workflow::<CountUp>()?
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let starter = client_for(c.node(followers[1]).client_addr()).await?;
    let scenario = async {
        let handle = starter
            .start_workflow(
                CountUp::run,
                1,
                WorkflowStartOptions::new("chain", "chain-1").build(),
            )
            .await?;
        let first_run = handle.run_id().expect("the started run").to_string();
        let result = tokio::time::timeout(
            WAIT * 4,
            handle.get_result(WorkflowGetResultOptions::default()),
        )
        .await??;
        let described = handle.describe(WorkflowDescribeOptions::default()).await?;
        anyhow::Ok((first_run, result, described))
    };
    let (first_run, result, described) = run_with_worker(&mut worker, scenario).await?;
    assert_eq!(
        result, RUNS,
        "the client followed the chain to the last run"
    );

    // The first run closed with ContinuedAsNew naming the second; the second says where it
    // came from; the last run knows the chain's first run.
    let first = history_of_run(&starter, "chain-1", &first_run).await?;
    let Some(EA::WorkflowExecutionContinuedAsNewEventAttributes(close)) =
        first.events.last().and_then(|e| e.attributes.clone())
    else {
        panic!(
            "the first run did not continue as new: {:?}",
            first.events.last()
        );
    };
    let second = history_of_run(&starter, "chain-1", &close.new_execution_run_id).await?;
    let Some(EA::WorkflowExecutionStartedEventAttributes(started)) =
        second.events.first().and_then(|e| e.attributes.clone())
    else {
        panic!("the second run has no start");
    };
    assert_eq!(started.continued_execution_run_id, first_run);
    assert_eq!(started.first_execution_run_id, first_run);
    // The handle names the first run: Describe shows it closed as continued-as-new.
    let info = described
        .raw_description
        .workflow_execution_info
        .expect("execution info");
    assert_eq!(info.first_run_id, first_run);
    assert_eq!(info.status, WorkflowExecutionStatus::ContinuedAsNew as i32);
    // The workflow id's current run is the last of the chain and knows its first.
    let last = history_of_run(&starter, "chain-1", "").await?;
    let Some(EA::WorkflowExecutionStartedEventAttributes(started)) =
        last.events.first().and_then(|e| e.attributes.clone())
    else {
        panic!("the last run has no start");
    };
    assert_eq!(started.first_execution_run_id, first_run);
    assert!(matches!(
        last.events.last().and_then(|e| e.attributes.clone()),
        Some(EA::WorkflowExecutionCompletedEventAttributes(_))
    ));
    c.shutdown().await;
    Ok(())
}
