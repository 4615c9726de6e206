//! Workflow cancellation and termination requested through the official client.

use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use keel_server::local_cluster::{wait_for, LocalCluster};
use temporalio_client::{
    WorkflowCancelOptions, WorkflowGetResultOptions, WorkflowStartOptions, WorkflowTerminateOptions,
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult};

#[workflow]
#[derive(Default)]
pub struct LongSleep;

#[workflow_methods]
impl LongSleep {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        ctx.timer(Duration::from_secs(3_600)).await;
        Ok(())
    }
}

fn last_event(c: &LocalCluster, node: u64, workflow_id: &str) -> anyhow::Result<(String, i32)> {
    let state = c.node(node).raft().state();
    let ms = keel_engine::workflow::resolve_run(
        state,
        &keel_engine::workflow::RunKey {
            namespace: "default".into(),
            workflow_id: workflow_id.into(),
            run_id: String::new(),
        },
    )?
    .expect("run exists");
    let key = ms.run.clone().unwrap();
    let history = keel_engine::workflow::read_history(
        state,
        &key,
        ms.next_event_id - 1,
        ms.next_event_id - 1,
    )?;
    Ok((history[0].event_type().to_string(), ms.status))
}

fn event_types(c: &LocalCluster, node: u64, workflow_id: &str) -> anyhow::Result<Vec<String>> {
    let state = c.node(node).raft().state();
    let ms = keel_engine::workflow::resolve_run(
        state,
        &keel_engine::workflow::RunKey {
            namespace: "default".into(),
            workflow_id: workflow_id.into(),
            run_id: String::new(),
        },
    )?
    .expect("run exists");
    let key = ms.run.clone().unwrap();
    Ok(
        keel_engine::workflow::read_history(state, &key, 1, ms.next_event_id)?
            .iter()
            .map(|e| e.event_type().to_string())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_and_termination_close_sleeping_workflows() -> anyhow::Result<()> {
    let (c, leader, followers) = cluster().await?;
    let follower = followers[0];
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let client = client_for(c.node(follower).client_addr()).await?;
    let options = WorkerOptions::new("sleepers")
        .register_workflow::<LongSleep>()?
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options)?;
    let scenario = async {
        let canceled = client
            .start_workflow(
                LongSleep::run,
                (),
                WorkflowStartOptions::new("sleepers", "cancel-me").build(),
            )
            .await?;
        let terminated = client
            .start_workflow(
                LongSleep::run,
                (),
                WorkflowStartOptions::new("sleepers", "terminate-me").build(),
            )
            .await?;
        // Wait until the worker has run the first task (the timer is started).
        wait_for(WAIT, "both workflows started their timers", || async {
            let ok = ["cancel-me", "terminate-me"].iter().all(|w| {
                last_event(&c, leader, w)
                    .map(|(t, _)| t == "TimerStarted")
                    .unwrap_or(false)
            });
            ok.then_some(())
        })
        .await?;
        canceled
            .cancel(
                WorkflowCancelOptions::builder()
                    .reason("changed my mind".to_string())
                    .build(),
            )
            .await?;
        terminated
            .terminate(
                WorkflowTerminateOptions::builder()
                    .reason("operator".to_string())
                    .build(),
            )
            .await?;
        let r1 = tokio::time::timeout(
            WAIT,
            canceled.get_result(WorkflowGetResultOptions::default()),
        )
        .await?;
        let r2 = tokio::time::timeout(
            WAIT,
            terminated.get_result(WorkflowGetResultOptions::default()),
        )
        .await?;
        anyhow::Ok((r1.is_ok(), r2.is_err()))
    };
    let outcome = run_with_worker(&mut worker, scenario).await;
    // This workflow treats cancellation as "stop sleeping and finish": the request reached it
    // (its hour-long timer ended at once) and it completed; termination fails the result.
    assert_eq!(outcome?, (true, true));
    assert_eq!(
        last_event(&c, leader, "cancel-me")?,
        ("WorkflowExecutionCompleted".to_string(), 2)
    );
    assert!(event_types(&c, leader, "cancel-me")?
        .contains(&"WorkflowExecutionCancelRequested".to_string()));
    assert_eq!(
        last_event(&c, leader, "terminate-me")?,
        ("WorkflowExecutionTerminated".to_string(), 5)
    );
    c.shutdown().await;
    Ok(())
}
