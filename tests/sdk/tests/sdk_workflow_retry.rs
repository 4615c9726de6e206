//! Workflow retries and cron with the official Rust SDK: a workflow that fails its first two
//! attempts succeeds on the third, the client following the runs; one that always fails
//! stops after its maximum attempts and the client gets the failure; a cron workflow fires
//! every second until it is terminated.

use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, history_of, run_with_worker, WAIT};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes as EA;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ApplicationFailure, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
    WorkflowTermination,
};

#[workflow]
#[derive(Default)]
pub struct Flaky;

#[workflow_methods]
impl Flaky {
    /// Fails until attempt `succeed_on`.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, succeed_on: u32) -> WorkflowResult<String> {
        let attempt = ctx.info().attempt();
        if attempt < succeed_on {
            return Err(WorkflowTermination::failed_application(
                ApplicationFailure::new(anyhow::anyhow!("attempt {attempt} fails")),
            ));
        }
        Ok(format!("succeeded on attempt {attempt}"))
    }
}

fn retry(max: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(200))
        .backoff_coefficient(1.0)
        .maximum_attempts(max)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_workflow_is_retried_to_success_and_to_exhaustion() -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let mut worker = Worker::new(
        &runtime,
        worker_client,
        WorkerOptions::new("wf-retry")
            .register_workflow::<Flaky>()?
            .build(),
    )?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let scenario = async {
        let ok = client
            .start_workflow(
                Flaky::run,
                3,
                WorkflowStartOptions::new("wf-retry", "flaky-ok")
                    .retry_policy(retry(5))
                    .build(),
            )
            .await?;
        let ok = tokio::time::timeout(WAIT, ok.get_result(WorkflowGetResultOptions::default()))
            .await??;
        let exhausted = client
            .start_workflow(
                Flaky::run,
                10,
                WorkflowStartOptions::new("wf-retry", "flaky-exhausted")
                    .retry_policy(retry(2))
                    .build(),
            )
            .await?;
        let exhausted = tokio::time::timeout(
            WAIT,
            exhausted.get_result(WorkflowGetResultOptions::default()),
        )
        .await?;
        anyhow::Ok((ok, exhausted.is_err()))
    };
    let (ok, exhausted_failed) = run_with_worker(&mut worker, scenario).await?;
    assert_eq!(ok, "succeeded on attempt 3");
    assert!(exhausted_failed, "two failed attempts end in a failure");
    // The last run of the exhausted one says why it stopped: maximum attempts (4).
    let last = history_of(&client, "flaky-exhausted").await?;
    let Some(EA::WorkflowExecutionFailedEventAttributes(f)) =
        last.events.last().and_then(|e| e.attributes.clone())
    else {
        panic!("not failed: {:?}", last.events.last());
    };
    assert_eq!(f.retry_state, 4, "RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED");
    assert!(f.new_execution_run_id.is_empty());
    c.shutdown().await;
    Ok(())
}

#[workflow]
#[derive(Default)]
pub struct Tick;

#[workflow_methods]
impl Tick {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<u32> {
        Ok(ctx.info().attempt())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_workflow_fires_on_schedule_until_terminated() -> anyhow::Result<()> {
    use keel_server::local_cluster::wait_for;
    use temporalio_client::{WorkflowCountOptions, WorkflowTerminateOptions};
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let mut worker = Worker::new(
        &runtime,
        worker_client,
        WorkerOptions::new("cron")
            .register_workflow::<Tick>()?
            .build(),
    )?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let scenario = async {
        client
            .start_workflow(
                Tick::run,
                (),
                WorkflowStartOptions::new("cron", "cron-1")
                    .cron_schedule("@every 1s".to_string())
                    .build(),
            )
            .await?;
        // Three scheduled runs completed, one second apart.
        wait_for(WAIT, "three cron runs completed", || async {
            let n = client
                .count_workflows(
                    "WorkflowId = 'cron-1' AND ExecutionStatus = 'Completed'",
                    WorkflowCountOptions::default(),
                )
                .await
                .ok()?
                .count();
            (n >= 3).then_some(())
        })
        .await?;
        client
            .get_workflow_handle::<Tick>("cron-1")
            .terminate(WorkflowTerminateOptions::builder().reason("enough").build())
            .await?;
        anyhow::Ok(())
    };
    run_with_worker(&mut worker, scenario).await?;
    // The current run was terminated; the one before it completed and named it.
    let last = history_of(&client, "cron-1").await?;
    let Some(EA::WorkflowExecutionStartedEventAttributes(started)) =
        last.events.first().and_then(|e| e.attributes.clone())
    else {
        panic!("no start");
    };
    assert_eq!(started.cron_schedule, "@every 1s");
    assert_eq!(
        started.initiator, 3,
        "CONTINUE_AS_NEW_INITIATOR_CRON_SCHEDULE"
    );
    assert!(started.last_completion_result.is_some());
    assert!(matches!(
        last.events.last().and_then(|e| e.attributes.clone()),
        Some(EA::WorkflowExecutionTerminatedEventAttributes(_))
    ));
    c.shutdown().await;
    Ok(())
}
