//! Workflow updates with the official Rust SDK: accepted and completed with the handler's
//! result, a retried update id answered with the first outcome, a validator's rejection
//! (no update event in history), an update sent while no worker runs (delivered once one
//! starts), an update admitted before the leader crashes, completed after, and
//! update-with-start both ways (starting the workflow, and using the running one).

use keel_engine::workflow::{resolve_run, RunKey};
use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use keel_server::local_cluster::wait_for;
use temporalio_client::errors::WorkflowUpdateError;
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowGetResultOptions, WorkflowIdConflictPolicy,
    WorkflowStartOptions, WorkflowUpdateWithStartOptions,
};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext, WorkflowContextView,
    WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct Counter {
    total: i64,
    done: bool,
}

#[workflow_methods]
impl Counter {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<i64> {
        ctx.wait_condition(|s| s.done).await?;
        Ok(ctx.state(|s| s.total))
    }

    #[update]
    pub fn add(&mut self, _ctx: &mut SyncWorkflowContext<Self>, n: i64) -> i64 {
        self.total += n;
        self.total
    }

    #[update_validator(add)]
    pub fn check_add(
        &self,
        _ctx: &WorkflowContextView,
        n: &i64,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if *n < 0 {
            return Err(format!("negative amount {n}").into());
        }
        Ok(())
    }

    #[update]
    pub fn finish(&mut self, _ctx: &mut SyncWorkflowContext<Self>) -> i64 {
        self.done = true;
        self.total
    }
}

fn worker_options() -> anyhow::Result<temporalio_sdk::WorkerOptions> {
    Ok(WorkerOptions::new("updates")
        .register_workflow::<Counter>()?
        .build())
}

fn with_id(id: &str) -> WorkflowExecuteUpdateOptions {
    WorkflowExecuteUpdateOptions::builder()
        .update_id(id.to_string())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_complete_dedupe_and_a_validator_rejects_without_an_event() -> anyhow::Result<()> {
    let (c, leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let mut worker = Worker::new(
        &runtime,
        client_for(c.node(followers[0]).client_addr()).await?,
        worker_options()?,
    )?;
    let client = client_for(c.node(leader).client_addr()).await?;
    let scenario = async {
        let h = client
            .start_workflow(
                Counter::run,
                (),
                WorkflowStartOptions::new("updates", "counter-1").build(),
            )
            .await?;
        let a = h.execute_update(Counter::add, 5, with_id("a")).await?;
        let b = h.execute_update(Counter::add, 3, with_id("b")).await?;
        let b_again = h.execute_update(Counter::add, 3, with_id("b")).await?;
        let rejected = h.execute_update(Counter::add, -1, with_id("neg")).await;
        let finished = h
            .execute_update(Counter::finish, (), with_id("finish"))
            .await?;
        let result =
            tokio::time::timeout(WAIT, h.get_result(WorkflowGetResultOptions::default())).await??;
        anyhow::Ok((a, b, b_again, rejected, finished, result))
    };
    let (a, b, b_again, rejected, finished, result) =
        run_with_worker(&mut worker, scenario).await?;
    assert_eq!((a, b, b_again, finished, result), (5, 8, 8, 8, 8));
    match rejected {
        Err(WorkflowUpdateError::Failed(f)) => {
            assert!(f.message.contains("negative amount -1"), "{f:?}")
        }
        other => panic!("expected the validator's rejection, got {other:?}"),
    }
    let events: Vec<i32> = keel_sdk_tests::history_of(&client, "counter-1")
        .await?
        .events
        .iter()
        .map(|e| e.event_type)
        .collect();
    let count = |t: EventType| events.iter().filter(|e| **e == t as i32).count();
    assert_eq!(
        count(EventType::WorkflowExecutionUpdateAccepted),
        3,
        "{events:?}"
    );
    assert_eq!(
        count(EventType::WorkflowExecutionUpdateCompleted),
        3,
        "{events:?}"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_sent_while_no_worker_runs_completes_once_one_starts() -> anyhow::Result<()> {
    let (c, leader, followers) = cluster().await?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let h = client
        .start_workflow(
            Counter::run,
            (),
            WorkflowStartOptions::new("updates", "counter-2").build(),
        )
        .await?;
    // Admitted (replicated) while nothing polls; the call waits.
    let pending = tokio::spawn({
        let h = client.get_workflow_handle::<Counter>("counter-2");
        async move { h.execute_update(Counter::add, 7, with_id("early")).await }
    });
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let mut worker = Worker::new(
        &runtime,
        client_for(c.node(leader).client_addr()).await?,
        worker_options()?,
    )?;
    let scenario = async {
        let early = tokio::time::timeout(WAIT, pending).await???;
        h.execute_update(Counter::finish, (), with_id("finish"))
            .await?;
        anyhow::Ok(early)
    };
    assert_eq!(run_with_worker(&mut worker, scenario).await?, 7);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_admitted_before_a_leader_crash_completes_after_it() -> anyhow::Result<()> {
    let (mut c, leader, followers) = cluster().await?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let h = client
        .start_workflow(
            Counter::run,
            (),
            WorkflowStartOptions::new("updates", "counter-3").build(),
        )
        .await?;
    let pending = tokio::spawn({
        let h = client.get_workflow_handle::<Counter>("counter-3");
        async move {
            h.execute_update(Counter::add, 11, with_id("survivor"))
                .await
        }
    });
    // Once every node holds the admitted update, the leader crashes.
    for id in c.running() {
        let state = c.node(id).raft().state().clone();
        wait_for(WAIT, "every node holds the admitted update", || {
            let state = state.clone();
            async move {
                let run = RunKey {
                    namespace: "default".into(),
                    workflow_id: "counter-3".into(),
                    run_id: String::new(),
                };
                resolve_run(&state, &run)
                    .ok()
                    .flatten()
                    .filter(|ms| ms.updates.iter().any(|u| u.update_id == "survivor"))
            }
        })
        .await?;
    }
    c.crash(leader).await;
    c.wait_for_leader(WAIT).await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let mut worker = Worker::new(
        &runtime,
        client_for(c.node(followers[0]).client_addr()).await?,
        worker_options()?,
    )?;
    let scenario = async {
        let survived = tokio::time::timeout(WAIT, pending).await???;
        h.execute_update(Counter::finish, (), with_id("finish"))
            .await?;
        anyhow::Ok(survived)
    };
    assert_eq!(run_with_worker(&mut worker, scenario).await?, 11);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_with_start_starts_the_workflow_or_updates_the_running_one() -> anyhow::Result<()> {
    let (c, leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let mut worker = Worker::new(
        &runtime,
        client_for(c.node(followers[0]).client_addr()).await?,
        worker_options()?,
    )?;
    let client = client_for(c.node(leader).client_addr()).await?;
    let options = |update_id: &str| {
        WorkflowUpdateWithStartOptions::new(
            "updates",
            "cart-1",
            WorkflowIdConflictPolicy::UseExisting,
        )
        .update_id(update_id.to_string())
        .build()
    };
    let scenario = async {
        // No such workflow: one atomic operation starts it and runs the update first.
        let first = client
            .execute_update_with_start_workflow(Counter::run, (), Counter::add, 4, options("first"))
            .await?;
        // Running: the same call (another update) lands on the running run.
        let second = client
            .execute_update_with_start_workflow(
                Counter::run,
                (),
                Counter::add,
                6,
                options("second"),
            )
            .await?;
        let h = client.get_workflow_handle::<Counter>("cart-1");
        h.execute_update(Counter::finish, (), with_id("finish"))
            .await?;
        let result =
            tokio::time::timeout(WAIT, h.get_result(WorkflowGetResultOptions::default())).await??;
        anyhow::Ok((first, second, result))
    };
    assert_eq!(run_with_worker(&mut worker, scenario).await?, (4, 10, 10));
    // One run did all of it.
    let events = keel_sdk_tests::history_of(&client, "cart-1").await?.events;
    let starts = events
        .iter()
        .filter(|e| e.event_type == EventType::WorkflowExecutionStarted as i32)
        .count();
    assert_eq!(starts, 1);
    c.shutdown().await;
    Ok(())
}
