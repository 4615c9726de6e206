//! Signals and cancel requests between workflows with the official Rust SDK: a sender
//! signals a receiver started by a client, and its cancel request to a workflow that does not
//! exist fails inside the workflow, as in Temporal.

use keel_sdk_tests::{client_for, cluster, history_of, run_with_worker, WAIT};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes as EA;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    Runtime, SignalWorkflowOptions, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext,
    WorkflowResult,
};

#[workflow]
#[derive(Default)]
pub struct Receiver {
    got: Option<String>,
}

#[workflow_methods]
impl Receiver {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<String> {
        ctx.wait_condition(|s| s.got.is_some()).await?;
        Ok(ctx.state(|s| s.got.clone().unwrap_or_default()))
    }

    #[signal]
    pub fn deliver(&mut self, _ctx: &mut SyncWorkflowContext<Self>, v: String) {
        self.got = Some(v);
    }
}

#[workflow]
#[derive(Default)]
pub struct Sender;

#[workflow_methods]
impl Sender {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, receiver: String) -> WorkflowResult<String> {
        ctx.external_workflow(receiver, None)
            .signal(
                Receiver::deliver,
                "hello from the sender".to_string(),
                SignalWorkflowOptions::default(),
            )
            .await?;
        let cancel = ctx
            .external_workflow("nobody-runs-this", None)
            .cancel(Some("try".into()))
            .await;
        Ok(format!(
            "signalled; cancel of a stranger failed: {}",
            cancel.is_err()
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_signals_another_and_a_cancel_to_nobody_fails() -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let mut worker = Worker::new(
        &runtime,
        worker_client,
        WorkerOptions::new("external")
            .register_workflow::<Receiver>()?
            .register_workflow::<Sender>()?
            .build(),
    )?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let scenario = async {
        let receiver = client
            .start_workflow(
                Receiver::run,
                (),
                WorkflowStartOptions::new("external", "receiver-1").build(),
            )
            .await?;
        let sender = client
            .start_workflow(
                Sender::run,
                "receiver-1".to_string(),
                WorkflowStartOptions::new("external", "sender-1").build(),
            )
            .await?;
        let sent =
            tokio::time::timeout(WAIT, sender.get_result(WorkflowGetResultOptions::default()))
                .await??;
        let got = tokio::time::timeout(
            WAIT,
            receiver.get_result(WorkflowGetResultOptions::default()),
        )
        .await??;
        anyhow::Ok((sent, got))
    };
    let (sent, got) = run_with_worker(&mut worker, scenario).await?;
    assert_eq!(sent, "signalled; cancel of a stranger failed: true");
    assert_eq!(got, "hello from the sender");
    let receiver = history_of(&client, "receiver-1").await?;
    let signaled = receiver
        .events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(EA::WorkflowExecutionSignaledEventAttributes(s)) => Some(s.clone()),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(signaled.len(), 1, "the signal landed once");
    assert_eq!(
        signaled[0]
            .external_workflow_execution
            .as_ref()
            .map(|e| e.workflow_id.as_str()),
        Some("sender-1")
    );
    c.shutdown().await;
    Ok(())
}
