//! Durable sleep and signals with the official SDK, and a leader crash in the middle of the
//! sleep: the new leader's timer driver fires the timer and the workflow completes.

use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use temporalio_client::{WorkflowGetResultOptions, WorkflowSignalOptions, WorkflowStartOptions};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct SleepThenCount {
    count: i32,
}

#[workflow_methods]
impl SleepThenCount {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, target: i32) -> WorkflowResult<i32> {
        ctx.timer(Duration::from_millis(1_500)).await;
        ctx.wait_condition(|s| s.count >= target).await?;
        Ok(ctx.state(|s| s.count))
    }

    #[signal]
    pub fn add(&mut self, _ctx: &mut SyncWorkflowContext<Self>, n: i32) {
        self.count += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_sleep_and_signals_survive_a_leader_crash() -> anyhow::Result<()> {
    let (mut c, leader, followers) = cluster().await?;

    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("durable")
        .register_workflow::<SleepThenCount>()?
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let starter = client_for(c.node(followers[1]).client_addr()).await?;

    let scenario = async {
        let handle = starter
            .start_workflow(
                SleepThenCount::run,
                4,
                WorkflowStartOptions::new("durable", "sleepy-1").build(),
            )
            .await?;
        handle
            .signal(SleepThenCount::add, 2, WorkflowSignalOptions::default())
            .await?;
        // The leader dies while the workflow sleeps; the survivors elect a new one.
        c.crash(leader).await;
        handle
            .signal(SleepThenCount::add, 2, WorkflowSignalOptions::default())
            .await?;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await;
    assert_eq!(result?, 4);
    let digest = c.wait_converged(WAIT).await?;
    assert!(digest.applied_index > 0);
    c.shutdown().await;
    Ok(())
}
