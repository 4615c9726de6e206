//! Signals with the official SDK: sent before any worker polls, sent concurrently from two
//! nodes while workflow tasks run (so they land before, during and between tasks), and
//! signal-with-start both starting a workflow and signalling the running one. Every signal is
//! delivered exactly once.

use futures::future::try_join_all;
use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use temporalio_client::{WorkflowGetResultOptions, WorkflowSignalOptions, WorkflowStartOptions};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct Tally {
    total: i64,
    count: u32,
}

#[workflow_methods]
impl Tally {
    /// Completes with the sum of the first `expected` signals.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, expected: u32) -> WorkflowResult<(u32, i64)> {
        ctx.wait_condition(|s| s.count >= expected).await?;
        Ok(ctx.state(|s| (s.count, s.total)))
    }

    #[signal]
    pub fn add(&mut self, _ctx: &mut SyncWorkflowContext<Self>, n: i64) {
        self.total += n;
        self.count += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_before_the_first_task_and_while_tasks_run_are_each_delivered_once(
) -> anyhow::Result<()> {
    let (c, leader, followers) = cluster().await?;
    let client_a = client_for(c.node(followers[1]).client_addr()).await?;
    let client_b = client_for(c.node(leader).client_addr()).await?;

    // Before any worker exists: the first workflow task carries these three.
    let handle = client_a
        .start_workflow(
            Tally::run,
            23,
            WorkflowStartOptions::new("tally", "tally-1").build(),
        )
        .await?;
    for n in 1..=3 {
        handle
            .signal(Tally::add, n, WorkflowSignalOptions::default())
            .await?;
    }

    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("tally")
        .register_workflow::<Tally>()?
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let scenario = async {
        // Twenty more, concurrently through two nodes, while the worker runs tasks.
        let sends = (10..30i64).map(|n| {
            let client = if n % 2 == 0 { &client_a } else { &client_b };
            let h = client.get_workflow_handle::<Tally>("tally-1");
            async move {
                h.signal(Tally::add, n, WorkflowSignalOptions::default())
                    .await
            }
        });
        try_join_all(sends).await?;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await;
    let (count, total) = result?;
    assert_eq!(count, 23);
    assert_eq!(total, 1 + 2 + 3 + (10..30).sum::<i64>());
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_with_start_starts_a_workflow_then_signals_the_running_one() -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("tally")
        .register_workflow::<Tally>()?
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let scenario = async {
        let first = client
            .signal_with_start_workflow(
                Tally::run,
                2,
                Tally::add,
                40,
                WorkflowStartOptions::new("tally", "sws-1").build(),
            )
            .await?;
        let second = client
            .signal_with_start_workflow(
                Tally::run,
                2,
                Tally::add,
                2,
                WorkflowStartOptions::new("tally", "sws-1").build(),
            )
            .await?;
        let result =
            tokio::time::timeout(WAIT, first.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok((
            first.run_id().map(str::to_owned),
            second.run_id().map(str::to_owned),
            result,
        ))
    };
    let outcome = run_with_worker(&mut worker, scenario).await;
    let (first_run, second_run, result) = outcome?;
    assert!(first_run.is_some());
    assert_eq!(
        first_run, second_run,
        "the second call signalled the running run"
    );
    assert_eq!(result, (2, 42));
    c.shutdown().await;
    Ok(())
}
