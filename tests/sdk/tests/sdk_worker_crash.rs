//! A worker that takes a workflow task and dies without answering: after the workflow-task
//! timeout the task is scheduled again and an official-SDK worker on another node finishes
//! the workflow. The doomed worker takes the first retry too, so the SDK worker gets a
//! transient attempt (events handed out, not written) and completes it.
//!
//! The crashed worker is a raw poller (what the server sees of a worker process killed
//! mid-task: a started task and then silence); the surviving worker is the SDK's.

use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use temporalio_client::grpc::WorkflowService;
use temporalio_client::tonic::IntoRequest;
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1 as api;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{Runtime, Worker, WorkerOptions, WorkflowContext, WorkflowResult};

#[workflow]
#[derive(Default)]
pub struct Resilient;

#[workflow_methods]
impl Resilient {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, name: String) -> WorkflowResult<String> {
        ctx.timer(Duration::from_millis(100)).await;
        Ok(format!("{name} survived"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_taken_by_a_crashed_worker_times_out_and_another_worker_finishes_it(
) -> anyhow::Result<()> {
    let (c, leader, followers) = cluster().await?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let mut options = WorkflowStartOptions::new("crashy", "crash-1").build();
    options.task_timeout = Some(Duration::from_secs(2));
    let handle = client
        .start_workflow(Resilient::run, "order".to_string(), options)
        .await?;

    // The doomed worker (on the leader's node) takes the first task and never answers.
    let mut doomed = client_for(c.node(leader).client_addr()).await?;
    let mut poll = api::PollWorkflowTaskQueueRequest {
        namespace: "default".into(),
        task_queue: Some(TaskQueue {
            name: "crashy".into(),
            kind: 1,
            ..Default::default()
        }),
        identity: "doomed-worker".into(),
        ..Default::default()
    }
    .into_request();
    poll.set_timeout(Duration::from_secs(10));
    let taken = WorkflowService::poll_workflow_task_queue(&mut doomed, poll)
        .await?
        .into_inner();
    assert_eq!(
        taken.started_event_id, 3,
        "the doomed worker holds the first task"
    );
    // After the timeout it takes the retry too. A retry is transient (as in Temporal): its
    // Scheduled and Started events end the history sent, under the ids they will get, but
    // are not written unless it completes.
    let mut poll = api::PollWorkflowTaskQueueRequest {
        namespace: "default".into(),
        task_queue: Some(TaskQueue {
            name: "crashy".into(),
            kind: 1,
            ..Default::default()
        }),
        identity: "doomed-worker".into(),
        ..Default::default()
    }
    .into_request();
    poll.set_timeout(Duration::from_secs(10));
    let retry = WorkflowService::poll_workflow_task_queue(&mut doomed, poll)
        .await?
        .into_inner();
    assert_eq!((retry.attempt, retry.started_event_id), (2, 6));
    let tail: Vec<(i64, i32)> = retry
        .history
        .as_ref()
        .map(|h| {
            h.events
                .iter()
                .map(|e| (e.event_id, e.event_type))
                .collect()
        })
        .unwrap_or_default();
    // 4 WorkflowTaskTimedOut, 5 WorkflowTaskScheduled, 6 WorkflowTaskStarted.
    assert_eq!(
        tail[3..],
        [(4, 8), (5, 5), (6, 6)],
        "history sent: {tail:?}"
    );
    drop(doomed);

    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let worker_options = WorkerOptions::new("crashy")
        .register_workflow::<Resilient>()?
        .build();
    let mut worker = Worker::new(&runtime, worker_client, worker_options)?;
    let scenario = async {
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        anyhow::Ok(result)
    };
    let result = run_with_worker(&mut worker, scenario).await;
    assert_eq!(result?, "order survived");

    let history = keel_sdk_tests::history_of(&client, "crash-1").await?;
    let timed_out: Vec<i64> = history
        .events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::WorkflowTaskTimedOutEventAttributes(t)) => Some(t.started_event_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        timed_out,
        [3],
        "the first attempt's timeout is written, the retry's is not"
    );
    match &history.events[4].attributes {
        Some(Attributes::WorkflowTaskScheduledEventAttributes(s)) => {
            assert_eq!(
                s.attempt, 3,
                "the SDK worker completed attempt 3, written as 5"
            )
        }
        other => panic!("event 5: {other:?}"),
    }
    let identities: Vec<&str> = history
        .events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::WorkflowTaskStartedEventAttributes(s)) => Some(s.identity.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(identities.first(), Some(&"doomed-worker"));
    assert!(
        identities[1..].iter().all(|i| *i != "doomed-worker"),
        "later tasks went to the surviving worker: {identities:?}"
    );
    c.shutdown().await;
    Ok(())
}
