//! Describe, list and count with the official SDK's client: a completed and a running
//! workflow, filtered by type and status.

use futures::TryStreamExt;
use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use temporalio_client::{
    WorkflowCountOptions, WorkflowDescribeOptions, WorkflowExecutionStatus,
    WorkflowGetResultOptions, WorkflowListOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct Quick;

#[workflow_methods]
impl Quick {
    #[run]
    pub async fn run(_ctx: &mut WorkflowContext<Self>, n: i32) -> WorkflowResult<i32> {
        Ok(n + 1)
    }
}

#[workflow]
#[derive(Default)]
pub struct Waiter {
    released: bool,
}

#[workflow_methods]
impl Waiter {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<String> {
        ctx.wait_condition(|s| s.released).await?;
        Ok("released".into())
    }

    #[signal]
    pub fn release(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _why: String) {
        self.released = true;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_list_and_count_see_running_and_completed_workflows() -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("vis")
        .register_workflow::<Quick>()?
        .register_workflow::<Waiter>()?
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;

    let scenario = async {
        let quick = client
            .start_workflow(
                Quick::run,
                41,
                WorkflowStartOptions::new("vis", "quick-1").build(),
            )
            .await?;
        let answer =
            tokio::time::timeout(WAIT, quick.get_result(WorkflowGetResultOptions::default()))
                .await??;
        let waiter = client
            .start_workflow(
                Waiter::run,
                (),
                WorkflowStartOptions::new("vis", "waiter-1").build(),
            )
            .await?;

        let d = waiter.describe(WorkflowDescribeOptions::default()).await?;
        let described = (
            d.id().to_string(),
            d.workflow_type().to_string(),
            d.status(),
            d.task_queue().to_string(),
        );
        let running: Vec<_> = client
            .list_workflows(
                "ExecutionStatus = 'Running'",
                WorkflowListOptions::default(),
            )
            .try_collect()
            .await?;
        let quick_rows: Vec<_> = client
            .list_workflows(
                "WorkflowType = 'Quick' ORDER BY StartTime DESC",
                WorkflowListOptions::default(),
            )
            .try_collect()
            .await?;
        let all = client
            .count_workflows("", WorkflowCountOptions::default())
            .await?
            .count();
        let bad = client
            .count_workflows("Nonsense > 3", WorkflowCountOptions::default())
            .await;

        waiter
            .signal(
                Waiter::release,
                "done".to_string(),
                WorkflowSignalOptions::default(),
            )
            .await?;
        let released =
            tokio::time::timeout(WAIT, waiter.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok((
            answer,
            described,
            running,
            quick_rows,
            all,
            bad.is_err(),
            released,
        ))
    };
    let outcome = run_with_worker(&mut worker, scenario).await;
    let (answer, described, running, quick_rows, all, bad_refused, released) = outcome?;
    assert_eq!(answer, 42);
    assert_eq!(
        described,
        (
            "waiter-1".to_string(),
            "Waiter".to_string(),
            WorkflowExecutionStatus::Running,
            "vis".to_string()
        )
    );
    let ids: Vec<&str> = running.iter().map(|w| w.id()).collect();
    assert_eq!(ids, ["waiter-1"]);
    assert_eq!(quick_rows.len(), 1);
    assert_eq!(quick_rows[0].id(), "quick-1");
    assert_eq!(quick_rows[0].status(), WorkflowExecutionStatus::Completed);
    assert!(quick_rows[0].close_time().is_some());
    assert!(quick_rows[0].history_length() >= 5);
    assert_eq!(all, 2);
    assert!(bad_refused, "an unsupported query is refused");
    assert_eq!(released, "released");
    c.shutdown().await;
    Ok(())
}
