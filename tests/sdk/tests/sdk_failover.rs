//! Leader failover under official-SDK workloads: the leader crashes in the middle of a
//! ten-activity workflow and of a sleeping workflow. Both complete, no activity completion is
//! recorded twice, and the surviving nodes hold identical histories.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_engine::workflow::{resolve_run, Attributes, RunKey};
use keel_sdk_tests::{client_for, cluster, identical_histories, run_with_worker, WAIT};
use keel_server::local_cluster::{wait_for, LocalCluster};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

/// Activity executions seen by this test process.
static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);

#[workflow]
#[derive(Default)]
pub struct Pipeline;

#[workflow_methods]
impl Pipeline {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, mode: String) -> WorkflowResult<u32> {
        let mut value = 0u32;
        if mode == "sleep" {
            ctx.timer(Duration::from_secs(2)).await;
            return Ok(value);
        }
        for _ in 0..10 {
            value = ctx
                .execute_activity(
                    Steps::step,
                    value,
                    ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
                )
                .await?;
        }
        Ok(value)
    }
}

pub struct Steps;

#[activities]
impl Steps {
    /// Slow enough that the crash lands mid-workflow.
    #[activity]
    pub async fn step(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        EXECUTIONS.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(n + 1)
    }
}

/// Runs `mode` with the worker and the client on the two followers, crashing the leader once
/// `crash_when` holds; returns the result and the (identical) surviving history.
async fn run_with_crash(
    mode: &str,
    crash_when: impl Fn(&LocalCluster) -> bool,
) -> anyhow::Result<(u32, Vec<keel_engine::workflow::HistoryEvent>)> {
    let (mut c, leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("failover")
        .register_workflow::<Pipeline>()?
        .register_activities(Steps)
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let workflow_id = format!("failover-{mode}");
    let scenario = async {
        let handle = client
            .start_workflow(
                Pipeline::run,
                mode.to_string(),
                WorkflowStartOptions::new("failover", &workflow_id).build(),
            )
            .await?;
        wait_for(WAIT, "the workflow is under way", || async {
            crash_when(&c).then_some(())
        })
        .await?;
        c.crash(leader).await;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await;
    let result = result?;
    let history = identical_histories(&c, &workflow_id).await?;
    c.shutdown().await;
    Ok((result, history))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_crash_mid_way_through_ten_activities_loses_and_repeats_nothing(
) -> anyhow::Result<()> {
    let (result, history) =
        run_with_crash("activities", |_| EXECUTIONS.load(Ordering::SeqCst) >= 3).await?;
    assert_eq!(result, 10);
    let scheduled: Vec<i64> = history
        .iter()
        .filter(|e| matches!(e.attributes, Some(Attributes::ActivityTaskScheduled(_))))
        .map(|e| e.event_id)
        .collect();
    let completed: Vec<i64> = history
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::ActivityTaskCompleted(a)) => Some(a.scheduled_event_id),
            _ => None,
        })
        .collect();
    assert_eq!(scheduled.len(), 10);
    assert_eq!(completed.len(), 10, "one completion per activity");
    assert_eq!(
        completed.iter().copied().collect::<BTreeSet<_>>(),
        scheduled.iter().copied().collect::<BTreeSet<_>>(),
        "every scheduled activity completed exactly once"
    );
    assert!(EXECUTIONS.load(Ordering::SeqCst) >= 10);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_crash_during_a_durable_sleep_fires_the_timer_once() -> anyhow::Result<()> {
    // Crash once the timer is armed (the first workflow task completed with it).
    let (result, history) = run_with_crash("sleep", |c| {
        c.running().iter().any(|id| {
            let state = c.node(*id).raft().state();
            let run = RunKey {
                namespace: "default".into(),
                workflow_id: "failover-sleep".into(),
                run_id: String::new(),
            };
            resolve_run(state, &run)
                .ok()
                .flatten()
                .is_some_and(|ms| !ms.timers.is_empty())
        })
    })
    .await?;
    assert_eq!(result, 0);
    let fired = history
        .iter()
        .filter(|e| matches!(e.attributes, Some(Attributes::TimerFired(_))))
        .count();
    assert_eq!(fired, 1);
    assert!(matches!(
        history.last().and_then(|e| e.attributes.as_ref()),
        Some(Attributes::WorkflowExecutionCompleted(_))
    ));
    Ok(())
}
