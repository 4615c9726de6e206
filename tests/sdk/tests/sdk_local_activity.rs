//! A local activity that runs longer than the workflow-task timeout. The SDK keeps its task
//! alive by completing it with `force_create_new_workflow_task` (a workflow-task heartbeat,
//! at 80% of the timeout) and takes the next task from the completion's response; the server
//! must create and hand out that task even though no event arrived. The run always has a
//! started task meanwhile, so a query goes out with the next task (its `queries`) and is
//! answered in that task's completion.

use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, history_of, run_with_worker, WAIT};
use keel_server::local_cluster::wait_for;
use temporalio_client::{WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowStartOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    LocalActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowContextView,
    WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct SlowLocal {
    phase: String,
}

#[workflow_methods]
impl SlowLocal {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, millis: u64) -> WorkflowResult<String> {
        ctx.state_mut(|s| s.phase = "working".into());
        let done = ctx
            .execute_local_activity(
                Slow::work,
                millis,
                LocalActivityOptions::builder()
                    .start_to_close_timeout(Duration::from_secs(30))
                    .build(),
            )
            .await?;
        ctx.state_mut(|s| s.phase = "done".into());
        Ok(done)
    }

    #[query]
    pub fn phase(&self, _ctx: &WorkflowContextView) -> String {
        self.phase.clone()
    }
}

pub struct Slow;

#[activities]
impl Slow {
    /// Takes `millis` of wall time (the work being simulated, not a wait for state).
    #[activity]
    pub async fn work(_ctx: ActivityContext, millis: u64) -> Result<String, ActivityError> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(format!("worked {millis} ms"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_activity_longer_than_the_task_timeout_completes_through_task_heartbeats(
) -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("slow-local")
        .register_workflow::<SlowLocal>()?
        .register_activities(Slow)
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;

    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let scenario = async {
        let mut options = WorkflowStartOptions::new("slow-local", "slow-local-1").build();
        // Heartbeats every 1.6 s; the activity spans about five of them.
        options.task_timeout = Some(Duration::from_secs(2));
        let handle = client
            .start_workflow(SlowLocal::run, 8_000u64, options)
            .await?;
        // From the first heartbeat on, every moment has a started task until the activity
        // ends: the query must still be answered, and while it works. It goes out with the
        // next heartbeat task, so within two heartbeats (3.2 s) of the first, well before
        // the activity's 8 s are up.
        wait_for(WAIT, "a workflow-task heartbeat completed", || async {
            let history = history_of(&client, "slow-local-1").await.ok()?;
            let completed = history
                .events
                .iter()
                .filter(|e| {
                    matches!(
                        e.attributes,
                        Some(Attributes::WorkflowTaskCompletedEventAttributes(_))
                    )
                })
                .count();
            (completed >= 1).then_some(())
        })
        .await?;
        let phase = handle
            .query(SlowLocal::phase, (), WorkflowQueryOptions::default())
            .await?;
        anyhow::ensure!(
            phase == "working",
            "queried during the local activity, got {phase:?}"
        );
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await;
    assert_eq!(result?, "worked 8000 ms");

    let history = history_of(&client, "slow-local-1").await?;
    let count = |pred: fn(&Attributes) -> bool| {
        history
            .events
            .iter()
            .filter(|e| e.attributes.as_ref().is_some_and(pred))
            .count()
    };
    assert_eq!(
        count(|a| matches!(a, Attributes::WorkflowTaskTimedOutEventAttributes(_))),
        0,
        "no task timed out: the heartbeats kept it alive"
    );
    assert!(
        count(|a| matches!(a, Attributes::WorkflowTaskCompletedEventAttributes(_))) >= 3,
        "heartbeats, and the task recording the result"
    );
    assert_eq!(
        count(|a| matches!(a, Attributes::MarkerRecordedEventAttributes(_))),
        1,
        "the local activity's result is recorded once"
    );
    c.shutdown().await;
    Ok(())
}
