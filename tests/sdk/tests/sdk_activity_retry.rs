//! Activity failure → retry with backoff → success, with the official SDK.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_common::RetryPolicy;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

/// Attempts seen by the flaky activity (one test process runs one workflow).
static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

#[workflow]
#[derive(Default)]
pub struct RetryWorkflow;

#[workflow_methods]
impl RetryWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: String) -> WorkflowResult<String> {
        let mut options = ActivityOptions::start_to_close_timeout(Duration::from_secs(10));
        options.retry_policy = Some(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(100))
                .backoff_coefficient(2.0)
                .build(),
        );
        Ok(ctx.execute_activity(Flaky::charge, input, options).await?)
    }
}

pub struct Flaky;

#[activities]
impl Flaky {
    /// Fails its first two attempts, then succeeds.
    #[activity]
    pub async fn charge(_ctx: ActivityContext, card: String) -> Result<String, ActivityError> {
        let attempt = ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
        if attempt < 3 {
            return Err(anyhow::anyhow!("card processor unavailable (attempt {attempt})").into());
        }
        Ok(format!("charged {card} on attempt {attempt}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_activity_is_retried_with_backoff_until_it_succeeds() -> anyhow::Result<()> {
    let (c, leader, followers) = cluster().await?;
    let follower = followers[0];
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let client = client_for(c.node(follower).client_addr()).await?;
    let options = WorkerOptions::new("retry")
        .register_workflow::<RetryWorkflow>()?
        .register_activities(Flaky)
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options)?;
    let scenario = async {
        let handle = client
            .start_workflow(
                RetryWorkflow::run,
                "4242".to_string(),
                WorkflowStartOptions::new("retry", "retry-1").build(),
            )
            .await?;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await;
    assert_eq!(result?, "charged 4242 on attempt 3");
    assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 3);
    // Retries wrote no events: one ActivityTaskStarted, with attempt 3.
    let run = keel_engine::workflow::resolve_run(
        c.node(leader).raft().state(),
        &keel_engine::workflow::RunKey {
            namespace: "default".into(),
            workflow_id: "retry-1".into(),
            run_id: String::new(),
        },
    )?
    .expect("the run exists");
    let key = run.run.clone().unwrap();
    let history = keel_engine::workflow::read_history(
        c.node(leader).raft().state(),
        &key,
        1,
        run.next_event_id,
    )?;
    let started: Vec<i32> = history
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(keel_engine::workflow::Attributes::ActivityTaskStarted(s)) => Some(s.attempt),
            _ => None,
        })
        .collect();
    assert_eq!(started, [3]);
    c.shutdown().await;
    Ok(())
}
