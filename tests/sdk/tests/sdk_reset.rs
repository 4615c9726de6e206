//! ResetWorkflowExecution with the official Rust SDK: a workflow that waited for a signal and
//! ran an activity is reset to its first workflow task; the SDK worker replays the copied
//! prefix, sees the reset marker and the reapplied signal, runs the activity again, and the
//! new run completes with the new result while the base run keeps its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, history_of_run, run_with_worker, WAIT};
use temporalio_client::grpc::WorkflowService;
use temporalio_client::tonic::IntoRequest;
use temporalio_client::{WorkflowGetResultOptions, WorkflowSignalOptions, WorkflowStartOptions};
use temporalio_common::protos::temporal::api::common::v1::WorkflowExecution;
use temporalio_common::protos::temporal::api::enums::v1::{EventType, WorkflowTaskFailedCause};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes as EA;
use temporalio_common::protos::temporal::api::workflowservice::v1::ResetWorkflowExecutionRequest;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext,
    WorkflowResult,
};

/// How often the activity ran (one test process runs this one scenario).
static STAMPS: AtomicUsize = AtomicUsize::new(0);

#[workflow]
#[derive(Default)]
pub struct Stamped {
    word: Option<String>,
}

#[workflow_methods]
impl Stamped {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<String> {
        ctx.wait_condition(|s| s.word.is_some()).await?;
        let word = ctx.state(|s| s.word.clone().unwrap_or_default());
        let options = ActivityOptions::start_to_close_timeout(Duration::from_secs(10));
        Ok(ctx.execute_activity(Stamper::stamp, word, options).await?)
    }

    #[signal]
    pub fn say(&mut self, _ctx: &mut SyncWorkflowContext<Self>, word: String) {
        self.word = Some(word);
    }
}

pub struct Stamper;

#[activities]
impl Stamper {
    #[activity]
    pub async fn stamp(_ctx: ActivityContext, word: String) -> Result<String, ActivityError> {
        Ok(format!("{word}-{}", STAMPS.fetch_add(1, Ordering::SeqCst)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_to_the_first_task_runs_the_workflow_again_with_its_signal() -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("reset")
        .register_workflow::<Stamped>()?
        .register_activities(Stamper)
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;

    let scenario = async {
        let handle = client
            .start_workflow(
                Stamped::run,
                (),
                WorkflowStartOptions::new("reset", "stamped-1").build(),
            )
            .await?;
        handle
            .signal(
                Stamped::say,
                "hello".to_string(),
                WorkflowSignalOptions::default(),
            )
            .await?;
        let first =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        let base = history_of_run(&client, "stamped-1", "").await?;
        let base_run_id = handle.run_id().unwrap_or_default().to_string();
        let first_task_done = base
            .events
            .iter()
            .find(|e| e.event_type == EventType::WorkflowTaskCompleted as i32)
            .map(|e| e.event_id)
            .ok_or_else(|| anyhow::anyhow!("no completed workflow task"))?;
        let mut raw = client.clone();
        let reset = WorkflowService::reset_workflow_execution(
            &mut raw,
            ResetWorkflowExecutionRequest {
                namespace: "default".into(),
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: "stamped-1".into(),
                    run_id: base_run_id.clone(),
                }),
                reason: "rerun after the fix".into(),
                workflow_task_finish_event_id: first_task_done,
                request_id: "reset-stamped-1".into(),
                ..Default::default()
            }
            .into_request(),
        )
        .await?
        .into_inner();
        let again = client.get_workflow_handle::<Stamped>("stamped-1");
        let second =
            tokio::time::timeout(WAIT, again.get_result(WorkflowGetResultOptions::default()))
                .await??;
        let new_history = history_of_run(&client, "stamped-1", &reset.run_id).await?;
        anyhow::Ok((first, second, base_run_id, reset.run_id, new_history))
    };
    let (first, second, base_run_id, new_run_id, new_history) =
        run_with_worker(&mut worker, scenario).await?;

    assert_eq!(first, "hello-0");
    assert_eq!(second, "hello-1", "the new run ran the activity again");
    assert_ne!(new_run_id, base_run_id);
    let marker = new_history
        .events
        .iter()
        .find_map(|e| match &e.attributes {
            Some(EA::WorkflowTaskFailedEventAttributes(f)) => Some(f.clone()),
            _ => None,
        })
        .expect("the reset marker");
    assert_eq!(marker.cause, WorkflowTaskFailedCause::ResetWorkflow as i32);
    assert_eq!(
        (marker.base_run_id.as_str(), marker.new_run_id.as_str()),
        (base_run_id.as_str(), new_run_id.as_str())
    );
    let signals = new_history
        .events
        .iter()
        .filter(|e| e.event_type == EventType::WorkflowExecutionSignaled as i32)
        .count();
    assert_eq!(
        signals, 1,
        "the signal after the reset point was reapplied once"
    );
    Ok(())
}
