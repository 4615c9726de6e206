//! The food-delivery order workflow with the official SDK: charge → wait up to a timeout for
//! "picked up" (else refund) → wait up to a timeout for "delivered" (else refund) → sleep →
//! notify. `getStatus` is queried while the order runs and after it completed; both outcomes
//! of a condition-with-timeout are exercised. Worker and client talk to different followers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use keel_server::local_cluster::wait_for;
use serde::{Deserialize, Serialize};
use temporalio_client::{
    WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

static CHARGES: AtomicUsize = AtomicUsize::new(0);
static REFUNDS: AtomicUsize = AtomicUsize::new(0);
static NOTIFICATIONS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub pickup_timeout_ms: u64,
    pub delivery_timeout_ms: u64,
}

#[workflow]
#[derive(Default)]
pub struct FoodDelivery {
    status: String,
    picked_up: bool,
    delivered: bool,
}

fn step() -> ActivityOptions {
    ActivityOptions::start_to_close_timeout(Duration::from_secs(10))
}

#[workflow_methods]
impl FoodDelivery {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, order: Order) -> WorkflowResult<String> {
        ctx.execute_activity(Kitchen::charge, order.id.clone(), step())
            .await?;
        ctx.state_mut(|s| s.status = "charged".into());

        let picked_up = temporalio_sdk::workflows::select! {
            r = ctx.wait_condition(|s| s.picked_up) => { r?; true },
            _ = ctx.timer(Duration::from_millis(order.pickup_timeout_ms)) => false,
        };
        if !picked_up {
            ctx.execute_activity(Kitchen::refund, order.id.clone(), step())
                .await?;
            ctx.state_mut(|s| s.status = "refunded: not picked up".into());
            return Ok(ctx.state(|s| s.status.clone()));
        }
        ctx.state_mut(|s| s.status = "picked up".into());

        let delivered = temporalio_sdk::workflows::select! {
            r = ctx.wait_condition(|s| s.delivered) => { r?; true },
            _ = ctx.timer(Duration::from_millis(order.delivery_timeout_ms)) => false,
        };
        if !delivered {
            ctx.execute_activity(Kitchen::refund, order.id.clone(), step())
                .await?;
            ctx.state_mut(|s| s.status = "refunded: not delivered".into());
            return Ok(ctx.state(|s| s.status.clone()));
        }
        ctx.state_mut(|s| s.status = "delivered".into());
        ctx.timer(Duration::from_millis(300)).await;
        ctx.execute_activity(Kitchen::notify, order.id.clone(), step())
            .await?;
        ctx.state_mut(|s| s.status = "completed".into());
        Ok(ctx.state(|s| s.status.clone()))
    }

    #[signal]
    pub fn picked_up(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _courier: String) {
        self.picked_up = true;
    }

    #[signal]
    pub fn delivered(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _courier: String) {
        self.delivered = true;
    }

    #[query]
    pub fn get_status(&self, _ctx: &WorkflowContextView) -> String {
        self.status.clone()
    }
}

pub struct Kitchen;

#[activities]
impl Kitchen {
    #[activity]
    pub async fn charge(_ctx: ActivityContext, order: String) -> Result<String, ActivityError> {
        CHARGES.fetch_add(1, Ordering::SeqCst);
        Ok(format!("charged {order}"))
    }

    #[activity]
    pub async fn refund(_ctx: ActivityContext, order: String) -> Result<String, ActivityError> {
        REFUNDS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("refunded {order}"))
    }

    #[activity]
    pub async fn notify(_ctx: ActivityContext, order: String) -> Result<String, ActivityError> {
        NOTIFICATIONS.fetch_add(1, Ordering::SeqCst);
        Ok(format!("notified {order}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_delivered_and_its_status_is_queryable_while_running_and_after(
) -> anyhow::Result<()> {
    let (c, leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("food")
        .register_workflow::<FoodDelivery>()?
        .register_activities(Kitchen)
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let leader_client = client_for(c.node(leader).client_addr()).await?;

    let scenario = async {
        let order = Order {
            id: "order-1".into(),
            pickup_timeout_ms: 60_000,
            delivery_timeout_ms: 60_000,
        };
        let handle = client
            .start_workflow(
                FoodDelivery::run,
                order,
                WorkflowStartOptions::new("food", "order-1").build(),
            )
            .await?;
        let status = || async {
            handle
                .query(
                    FoodDelivery::get_status,
                    (),
                    WorkflowQueryOptions::default(),
                )
                .await
        };
        // Queried while running: the charge is done and the order waits for the courier.
        wait_for(WAIT, "the order reports it was charged", || async {
            (status().await.ok()? == "charged").then_some(())
        })
        .await?;
        handle
            .signal(
                FoodDelivery::picked_up,
                "courier-7".to_string(),
                WorkflowSignalOptions::default(),
            )
            .await?;
        wait_for(WAIT, "the order reports it was picked up", || async {
            (status().await.ok()? == "picked up").then_some(())
        })
        .await?;
        handle
            .signal(
                FoodDelivery::delivered,
                "courier-7".to_string(),
                WorkflowSignalOptions::default(),
            )
            .await?;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        // Queried after completion, through another node than the one that started it.
        let after = leader_client
            .get_workflow_handle::<FoodDelivery>("order-1")
            .query(
                FoodDelivery::get_status,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?;
        anyhow::Ok((result, after))
    };
    let outcome = run_with_worker(&mut worker, scenario).await;
    let (result, after) = outcome?;
    assert_eq!(result, "completed");
    assert_eq!(after, "completed", "getStatus answers after completion");
    assert_eq!(CHARGES.load(Ordering::SeqCst), 1);
    assert_eq!(REFUNDS.load(Ordering::SeqCst), 0);
    assert_eq!(NOTIFICATIONS.load(Ordering::SeqCst), 1);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_nobody_picks_up_is_refunded_after_the_timeout() -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("food")
        .register_workflow::<FoodDelivery>()?
        .register_activities(Kitchen)
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;

    let scenario = async {
        let order = Order {
            id: "order-2".into(),
            pickup_timeout_ms: 1_000,
            delivery_timeout_ms: 60_000,
        };
        let handle = client
            .start_workflow(
                FoodDelivery::run,
                order,
                WorkflowStartOptions::new("food", "order-2").build(),
            )
            .await?;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        let after = handle
            .query(
                FoodDelivery::get_status,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?;
        anyhow::Ok((result, after))
    };
    let outcome = run_with_worker(&mut worker, scenario).await;
    let (result, after) = outcome?;
    assert_eq!(result, "refunded: not picked up");
    assert_eq!(after, "refunded: not picked up");
    assert_eq!(CHARGES.load(Ordering::SeqCst), 1);
    assert_eq!(REFUNDS.load(Ordering::SeqCst), 1);
    assert_eq!(NOTIFICATIONS.load(Ordering::SeqCst), 0);
    c.shutdown().await;
    Ok(())
}
