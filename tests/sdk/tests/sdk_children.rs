//! Child workflows with the official Rust SDK: a parent starts a child on another task queue
//! and returns its result; a second child that outlives its parent is terminated by the
//! default parent close policy; the child's start names its parent and root.

use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, history_of, run_with_worker, WAIT};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes as EA;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ChildWorkflowOptions, Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct Child;

#[workflow_methods]
impl Child {
    #[run]
    pub async fn run(_ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<String> {
        Ok(format!("child says hello to {name}"))
    }
}

#[workflow]
#[derive(Default)]
pub struct Sleeper;

#[workflow_methods]
impl Sleeper {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        ctx.timer(Duration::from_secs(3_600)).await;
        Ok(())
    }
}

#[workflow]
#[derive(Default)]
pub struct Parent;

#[workflow_methods]
impl Parent {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<String> {
        let child = ctx
            .start_child_workflow(
                Child::run,
                name.clone(),
                ChildWorkflowOptions::builder()
                    .workflow_id(format!("child-of-{name}"))
                    .task_queue("children-other".to_string())
                    .build(),
            )
            .await?;
        let said = child.result().await?;
        // Started and left running: the parent's close terminates it.
        ctx.start_child_workflow(
            Sleeper::run,
            (),
            ChildWorkflowOptions::workflow_id(format!("sleeper-of-{name}")),
        )
        .await?;
        Ok(said)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_on_another_queue_returns_its_result_and_a_leftover_child_is_terminated(
) -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let parent_client = client_for(c.node(followers[0]).client_addr()).await?;
    let child_client = client_for(c.node(followers[1]).client_addr()).await?;
    let mut parents = Worker::new(
        &runtime,
        parent_client.clone(),
        WorkerOptions::new("children")
            .register_workflow::<Parent>()?
            .register_workflow::<Sleeper>()?
            .build(),
    )?;
    let mut children = Worker::new(
        &runtime,
        child_client,
        WorkerOptions::new("children-other")
            .register_workflow::<Child>()?
            .build(),
    )?;
    let scenario = async {
        let handle = parent_client
            .start_workflow(
                Parent::run,
                "keel".to_string(),
                WorkflowStartOptions::new("children", "parent-1").build(),
            )
            .await?;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await;
        anyhow::Ok(result??)
    };
    let both = async {
        let stop_children = children.shutdown_handle();
        let (parent_result, child_result) = tokio::join!(
            run_with_worker(&mut parents, async {
                let r = scenario.await;
                stop_children();
                r
            }),
            children.run()
        );
        child_result?;
        parent_result
    };
    let result = both.await?;
    assert_eq!(result, "child says hello to keel");

    // The child's start names its parent and root; the leftover child was terminated by the
    // parent close policy; the parent recorded the child's completion.
    let child = history_of(&parent_client, "child-of-keel").await?;
    let Some(EA::WorkflowExecutionStartedEventAttributes(started)) =
        child.events.first().and_then(|e| e.attributes.clone())
    else {
        panic!("the child has no start");
    };
    let parent_exec = started.parent_workflow_execution.expect("a parent");
    assert_eq!(parent_exec.workflow_id, "parent-1");
    assert_eq!(
        started.root_workflow_execution.expect("a root").workflow_id,
        "parent-1"
    );
    let sleeper = history_of(&parent_client, "sleeper-of-keel").await?;
    let Some(EA::WorkflowExecutionTerminatedEventAttributes(t)) =
        sleeper.events.last().and_then(|e| e.attributes.clone())
    else {
        panic!(
            "the leftover child was not terminated: {:?}",
            sleeper.events.last()
        );
    };
    assert_eq!(t.reason, "by parent close policy");
    let parent = history_of(&parent_client, "parent-1").await?;
    let completions = parent
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.attributes,
                Some(EA::ChildWorkflowExecutionCompletedEventAttributes(_))
            )
        })
        .count();
    assert_eq!(completions, 1);
    c.shutdown().await;
    Ok(())
}

#[workflow]
#[derive(Default)]
pub struct SlowChild;

#[workflow_methods]
impl SlowChild {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, n: u32) -> WorkflowResult<u32> {
        ctx.timer(Duration::from_millis(1_500)).await;
        Ok(n * 10)
    }
}

#[workflow]
#[derive(Default)]
pub struct FanOut;

#[workflow_methods]
impl FanOut {
    /// Three children at once; their results summed.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<u32> {
        let mut started = Vec::new();
        for i in 1..=3u32 {
            started.push(
                ctx.start_child_workflow(
                    SlowChild::run,
                    i,
                    ChildWorkflowOptions::workflow_id(format!("fan-child-{i}")),
                )
                .await?,
            );
        }
        let mut sum = 0;
        for child in started {
            sum += child.result().await?;
        }
        Ok(sum)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_complete_in_their_parent_exactly_once_through_a_leader_crash(
) -> anyhow::Result<()> {
    let (mut c, leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let mut worker = Worker::new(
        &runtime,
        worker_client,
        WorkerOptions::new("fan")
            .register_workflow::<FanOut>()?
            .register_workflow::<SlowChild>()?
            .build(),
    )?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let scenario = async {
        let handle = client
            .start_workflow(
                FanOut::run,
                (),
                WorkflowStartOptions::new("fan", "fan-parent").build(),
            )
            .await?;
        // The children are sleeping on their timers when the leader dies.
        keel_server::local_cluster::wait_for(WAIT, "three children started", || async {
            let h = history_of(&client, "fan-parent").await.ok()?;
            let started = h
                .events
                .iter()
                .filter(|e| {
                    matches!(
                        e.attributes,
                        Some(EA::ChildWorkflowExecutionStartedEventAttributes(_))
                    )
                })
                .count();
            (started == 3).then_some(())
        })
        .await?;
        c.crash(leader).await;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await?;
    assert_eq!(result, 60);
    let parent = history_of(&client, "fan-parent").await?;
    let completions = parent
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.attributes,
                Some(EA::ChildWorkflowExecutionCompletedEventAttributes(_))
            )
        })
        .count();
    assert_eq!(completions, 3, "each child's completion recorded once");
    c.wait_converged(WAIT).await?;
    c.shutdown().await;
    Ok(())
}
