//! Activity failure modes with the official SDK: a non-retryable error, start-to-close and
//! heartbeat timeouts, heartbeat details carried into the next attempt, and cancellation of a
//! running activity by its workflow. One test per mode; each counts what its activity saw.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use keel_server::local_cluster::wait_for;
use temporalio_client::{WorkflowGetResultOptions, WorkflowSignalOptions, WorkflowStartOptions};
use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
use temporalio_common::RetryPolicy;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::ActivityExecutionError;
use temporalio_sdk::{
    ActivityCancellationType, ActivityOptions, CancellableFuture, Runtime, SyncWorkflowContext,
    Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

/// Attempts the test's activity started (each test runs in its own process).
static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
static CANCEL_SEEN: AtomicBool = AtomicBool::new(false);

/// What the workflow saw of an activity failure, as a short string the tests compare.
fn describe(e: &ActivityExecutionError) -> String {
    if let ActivityExecutionError::Cancelled(_) = e {
        return "canceled".into();
    }
    let cause = e.failure().and_then(|f| f.cause.as_deref());
    match cause.and_then(|c| c.failure_info.as_ref()) {
        Some(FailureInfo::TimeoutFailureInfo(t)) => format!("timeout:{}", t.timeout_type),
        Some(FailureInfo::ApplicationFailureInfo(a)) => {
            format!("application:{}", a.non_retryable)
        }
        other => format!("other:{other:?}"),
    }
}

#[workflow]
#[derive(Default)]
pub struct Scenario {
    cancel: bool,
}

#[workflow_methods]
impl Scenario {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, mode: String) -> WorkflowResult<String> {
        let retry = |max: u32| {
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(100))
                .backoff_coefficient(1.0)
                .maximum_attempts(max)
                .build()
        };
        let outcome = match mode.as_str() {
            "non-retryable" => {
                // Unlimited attempts: only the error's own flag stops the retries.
                let mut o = ActivityOptions::start_to_close_timeout(Duration::from_secs(10));
                o.retry_policy = Some(retry(0));
                ctx.execute_activity(Ops::declined, (), o).await
            }
            "start-to-close" => {
                let mut o = ActivityOptions::start_to_close_timeout(Duration::from_millis(800));
                o.retry_policy = Some(retry(2));
                ctx.execute_activity(Ops::hangs, (), o).await
            }
            "heartbeat" => {
                let mut o = ActivityOptions::start_to_close_timeout(Duration::from_secs(30));
                o.heartbeat_timeout = Some(Duration::from_secs(1));
                o.retry_policy = Some(retry(3));
                ctx.execute_activity(Ops::resumable, (), o).await
            }
            "cancel" => {
                let mut o = ActivityOptions::start_to_close_timeout(Duration::from_secs(30));
                o.heartbeat_timeout = Some(Duration::from_secs(1));
                o.cancellation_type = ActivityCancellationType::WaitCancellationCompleted;
                let act = ctx.execute_activity(Ops::cancellable, (), o);
                let mut act = std::pin::pin!(act);
                let finished = temporalio_sdk::workflows::select! {
                    r = act.as_mut() => Some(r),
                    _ = ctx.wait_condition(|s| s.cancel) => None,
                };
                match finished {
                    Some(r) => r,
                    None => {
                        act.cancel();
                        act.await
                    }
                }
            }
            other => return Ok(format!("unknown mode {other}")),
        };
        Ok(match outcome {
            Ok(v) => format!("ok:{v}"),
            Err(e) => describe(&e),
        })
    }

    #[signal]
    pub fn cancel_activity(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _why: String) {
        self.cancel = true;
    }
}

pub struct Ops;

#[activities]
impl Ops {
    /// Fails with a non-retryable application error.
    #[activity]
    pub async fn declined(_ctx: ActivityContext) -> Result<String, ActivityError> {
        ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        Err(ActivityError::application(
            temporalio_sdk::ApplicationFailure::non_retryable(anyhow::anyhow!("card declined")),
        ))
    }

    /// Never finishes in time (its late result is refused as stale).
    #[activity]
    pub async fn hangs(_ctx: ActivityContext) -> Result<String, ActivityError> {
        ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok("too late".into())
    }

    /// First attempt: records progress 5, then stops heartbeating (heartbeat timeout).
    /// Later attempts resume from the recorded progress.
    #[activity]
    pub async fn resumable(ctx: ActivityContext) -> Result<String, ActivityError> {
        let attempt = ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
        let progress: Option<u32> = ctx.heartbeat_details().deserialize()?;
        if attempt == 1 {
            ctx.record_heartbeat(5u32).await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            return Ok("first attempt finished late".into());
        }
        Ok(format!("attempt {attempt} resumed from {progress:?}"))
    }

    /// Heartbeats until the workflow cancels it, then reports the cancellation.
    #[activity]
    pub async fn cancellable(ctx: ActivityContext) -> Result<String, ActivityError> {
        ATTEMPTS.fetch_add(1, Ordering::SeqCst);
        for _ in 0..300 {
            if ctx.is_cancelled() {
                CANCEL_SEEN.store(true, Ordering::SeqCst);
                return Err(ActivityError::cancelled());
            }
            ctx.record_heartbeat(()).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok("never cancelled".into())
    }
}

/// Runs the scenario workflow in `mode` with a worker and a client on different followers;
/// `during` runs alongside (with the client and the workflow id) before the result is read.
async fn run_mode<F, Fut>(mode: &str, during: F) -> anyhow::Result<String>
where
    F: FnOnce(temporalio_client::Client, String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("failures")
        .register_workflow::<Scenario>()?
        .register_activities(Ops)
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let workflow_id = format!("scenario-{mode}");
    let scenario = async {
        let handle = client
            .start_workflow(
                Scenario::run,
                mode.to_string(),
                WorkflowStartOptions::new("failures", &workflow_id).build(),
            )
            .await?;
        during(client.clone(), workflow_id.clone()).await?;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await;
    let result = result?;
    c.shutdown().await;
    Ok(result)
}

async fn nothing(_: temporalio_client::Client, _: String) -> anyhow::Result<()> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_retryable_error_fails_the_activity_at_once() -> anyhow::Result<()> {
    let result = run_mode("non-retryable", nothing).await?;
    assert_eq!(result, "application:true");
    assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 1, "never retried");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_to_close_timeouts_retry_then_fail_the_activity() -> anyhow::Result<()> {
    let result = run_mode("start-to-close", nothing).await?;
    assert_eq!(result, "timeout:1", "TIMEOUT_TYPE_START_TO_CLOSE");
    assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 2, "both attempts ran");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_timeout_retries_and_the_details_reach_the_next_attempt() -> anyhow::Result<()>
{
    let result = run_mode("heartbeat", nothing).await?;
    assert_eq!(result, "ok:attempt 2 resumed from Some(5)");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_cancels_its_running_activity() -> anyhow::Result<()> {
    let result = run_mode("cancel", |client, workflow_id| async move {
        wait_for(WAIT, "the activity is running", || async {
            (ATTEMPTS.load(Ordering::SeqCst) > 0).then_some(())
        })
        .await?;
        client
            .get_workflow_handle::<Scenario>(&workflow_id)
            .signal(
                Scenario::cancel_activity,
                "customer changed their mind".to_string(),
                WorkflowSignalOptions::default(),
            )
            .await?;
        Ok(())
    })
    .await?;
    assert_eq!(result, "canceled");
    assert!(
        CANCEL_SEEN.load(Ordering::SeqCst),
        "the activity saw the cancellation"
    );
    Ok(())
}
