//! Schedules with the official Rust SDK's schedule client: an interval schedule firing every
//! second, pause with a note (nothing fires), trigger while paused, unpause, delete; a backfill
//! of a past range; overlap SKIP against BUFFER_ONE while a started run stays open; and a
//! leader crash in the middle of a schedule, after which every second has exactly one run —
//! none twice, none skipped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use keel_engine::workflow::scheduler::id_time;
use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use keel_server::local_cluster::wait_for;
use temporalio_client::schedules::{
    BackfillScheduleOptions, CreateScheduleOptions, DeleteScheduleOptions, PauseScheduleOptions,
    ScheduleAction, ScheduleBackfill, ScheduleDescription, ScheduleHandle, ScheduleOverlapPolicy,
    ScheduleSpec, TriggerScheduleOptions, UnpauseScheduleOptions,
};
use temporalio_client::{
    Client, WorkflowGetResultOptions, WorkflowListOptions, WorkflowSignalOptions,
};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

const QUEUE: &str = "sched";

#[workflow]
#[derive(Default)]
pub struct Job {
    released: bool,
}

#[workflow_methods]
impl Job {
    /// `"quick"` completes at once; `"hold"` waits for `release`.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, mode: String) -> WorkflowResult<String> {
        if mode == "hold" {
            ctx.wait_condition(|s| s.released).await?;
        }
        Ok(format!("{mode} done"))
    }

    #[signal]
    pub fn release(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.released = true;
    }
}

fn worker(runtime: &Runtime, client: Client) -> anyhow::Result<Worker> {
    let options = WorkerOptions::new(QUEUE)
        .register_workflow::<Job>()?
        .build();
    Ok(Worker::new(runtime, client, options)?)
}

async fn create(
    client: &Client,
    id: &str,
    mode: &str,
    spec: ScheduleSpec,
    overlap: ScheduleOverlapPolicy,
    paused: bool,
) -> anyhow::Result<ScheduleHandle<Client>> {
    Ok(client
        .create_schedule(
            id,
            CreateScheduleOptions::builder()
                .action(ScheduleAction::start_workflow(
                    Job::run,
                    mode.to_string(),
                    QUEUE,
                    format!("{id}-job"),
                ))
                .spec(spec)
                .overlap_policy(overlap)
                .paused(paused)
                .build(),
        )
        .await?)
}

async fn describe(h: &ScheduleHandle<Client>) -> anyhow::Result<ScheduleDescription> {
    Ok(h.describe(Default::default()).await?)
}

/// Waits until the schedule's description satisfies `pred`; returns it.
async fn describe_until(
    h: &ScheduleHandle<Client>,
    reason: &str,
    pred: impl Fn(&ScheduleDescription) -> bool,
) -> anyhow::Result<ScheduleDescription> {
    wait_for(WAIT, reason, || async {
        describe(h).await.ok().filter(|d| pred(d))
    })
    .await
}

fn ms(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

fn buffer_size(d: &ScheduleDescription) -> i64 {
    d.raw().info.as_ref().map_or(0, |i| i.buffer_size)
}

fn buffer_dropped(d: &ScheduleDescription) -> i64 {
    d.raw().info.as_ref().map_or(0, |i| i.buffer_dropped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_schedule_fires_each_second_pauses_triggers_unpauses_and_is_deleted(
) -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let client = client_for(c.node(followers[0]).client_addr()).await?;
    let mut w = worker(&runtime, client.clone())?;
    let scenario = async {
        let h = create(
            &client,
            "every-second",
            "quick",
            ScheduleSpec::from_interval(Duration::from_secs(1)),
            ScheduleOverlapPolicy::Skip,
            false,
        )
        .await?;
        let d = describe_until(&h, "three actions", |d| d.action_count() >= 3).await?;
        let recent = d.recent_actions();
        let times: Vec<u64> = recent.iter().map(|a| ms(a.schedule_time)).collect();
        for pair in times.windows(2) {
            assert_eq!(pair[1] - pair[0], 1000, "one action per second: {times:?}");
        }
        for a in &recent[..3] {
            assert_eq!(
                a.workflow_id,
                format!("every-second-job-{}", id_time(ms(a.schedule_time)))
            );
            let result = tokio::time::timeout(
                WAIT,
                client
                    .get_workflow_handle::<Job>(a.workflow_id.clone())
                    .get_result(WorkflowGetResultOptions::default()),
            )
            .await??;
            assert_eq!(result, "quick done");
        }

        // Paused with a note: nothing is armed, so only the trigger acts until unpaused.
        h.pause(Some("maintenance"), PauseScheduleOptions::default())
            .await?;
        let paused = describe(&h).await?;
        assert!(paused.paused());
        assert_eq!(paused.note(), Some("maintenance"));
        let n = paused.action_count();
        // The trigger's workflow id carries this second; the last scheduled run may carry it
        // too, and an id still in use loses the action (as in Temporal): let that run end.
        let last = paused.recent_actions().last().cloned().expect("actions");
        tokio::time::timeout(
            WAIT,
            client
                .get_workflow_handle::<Job>(last.workflow_id)
                .get_result(WorkflowGetResultOptions::default()),
        )
        .await??;
        h.trigger(
            ScheduleOverlapPolicy::AllowAll,
            TriggerScheduleOptions::default(),
        )
        .await?;
        let triggered = describe(&h).await?;
        assert_eq!(triggered.action_count(), n + 1, "the trigger alone acted");
        assert!(triggered.paused());

        h.unpause(Some("back"), UnpauseScheduleOptions::default())
            .await?;
        let resumed =
            describe_until(&h, "actions after unpausing", |d| d.action_count() >= n + 3).await?;
        assert!(!resumed.paused());
        assert_eq!(resumed.note(), Some("back"));
        assert_eq!(resumed.future_action_times().len(), 10);

        h.delete(DeleteScheduleOptions::default()).await?;
        let gone = h.describe(Default::default()).await;
        anyhow::Ok(gone.err().map(|e| e.to_string()))
    };
    let gone = run_with_worker(&mut w, scenario).await?;
    let gone = gone.expect("describing a deleted schedule fails");
    assert!(gone.to_lowercase().contains("not found"), "{gone}");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_starts_every_time_of_a_past_range() -> anyhow::Result<()> {
    let (c, leader, _followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let client = client_for(c.node(leader).client_addr()).await?;
    let mut w = worker(&runtime, client.clone())?;
    let scenario = async {
        let h = create(
            &client,
            "backfilled",
            "quick",
            ScheduleSpec::from_interval(Duration::from_secs(60)),
            ScheduleOverlapPolicy::Skip,
            true,
        )
        .await?;
        // 2020-01-20T04:30:00Z ..= 04:32:00Z: three minutes, both ends included.
        let start = UNIX_EPOCH + Duration::from_secs(1_579_494_600);
        h.backfill(
            [
                ScheduleBackfill::new(start, start + Duration::from_secs(120))
                    .overlap_policy(ScheduleOverlapPolicy::AllowAll)
                    .build(),
            ],
            BackfillScheduleOptions::default(),
        )
        .await?;
        let d = describe(&h).await?;
        let mut ids: Vec<String> = d
            .recent_actions()
            .into_iter()
            .map(|a| a.workflow_id)
            .collect();
        ids.sort();
        for id in &ids {
            tokio::time::timeout(
                WAIT,
                client
                    .get_workflow_handle::<Job>(id.clone())
                    .get_result(WorkflowGetResultOptions::default()),
            )
            .await??;
        }
        h.delete(DeleteScheduleOptions::default()).await?;
        anyhow::Ok((d.action_count(), d.paused(), ids))
    };
    let (count, paused, ids) = run_with_worker(&mut w, scenario).await?;
    assert_eq!(count, 3);
    assert!(paused, "a backfill runs whatever the pause says");
    assert_eq!(
        ids,
        [
            "backfilled-job-2020-01-20T04:30:00Z",
            "backfilled-job-2020-01-20T04:31:00Z",
            "backfilled-job-2020-01-20T04:32:00Z",
        ]
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_drops_overlapping_times_and_buffer_one_runs_one_after_the_open_run(
) -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;
    let mut w = worker(&runtime, client.clone())?;
    let scenario = async {
        let every = ScheduleSpec::from_interval(Duration::from_secs(1));
        let skip = create(
            &client,
            "skip",
            "hold",
            every.clone(),
            ScheduleOverlapPolicy::Skip,
            false,
        )
        .await?;
        let one = create(
            &client,
            "one",
            "hold",
            every,
            ScheduleOverlapPolicy::BufferOne,
            false,
        )
        .await?;
        let s = describe_until(&skip, "SKIP skipped two times", |d| {
            d.overlap_skipped() >= 2
        })
        .await?;
        assert_eq!(s.action_count(), 1);
        assert_eq!(buffer_size(&s), 0);
        let o = describe_until(&one, "BUFFER_ONE dropped a time", |d| {
            buffer_dropped(d) >= 1
        })
        .await?;
        assert_eq!(o.action_count(), 1);
        assert_eq!(buffer_size(&o), 1, "one start waits");
        assert_eq!(o.overlap_skipped(), 0);

        // Release both open runs.
        let released_at = ms(Some(SystemTime::now()));
        for d in [&s, &o] {
            let first = &d.recent_actions()[0];
            client
                .get_workflow_handle::<Job>(first.workflow_id.clone())
                .signal(Job::release, (), WorkflowSignalOptions::default())
                .await?;
        }
        // BUFFER_ONE: the waiting start runs as soon as the open run closes, for its own
        // (earlier) time, the second one of the schedule.
        let o = describe_until(&one, "the buffered start ran", |d| d.action_count() >= 2).await?;
        let first = ms(o.recent_actions()[0].schedule_time);
        assert_eq!(ms(o.recent_actions()[1].schedule_time), first + 1000);
        // SKIP: nothing waited; the next run is for a time after the release.
        let s = describe_until(&skip, "the next time ran", |d| d.action_count() >= 2).await?;
        assert!(ms(s.recent_actions()[1].schedule_time) + 1000 >= released_at);
        for h in [&skip, &one] {
            h.delete(DeleteScheduleOptions::default()).await?;
        }
        anyhow::Ok(())
    };
    run_with_worker(&mut w, scenario).await?;
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_crash_neither_repeats_nor_skips_a_scheduled_time() -> anyhow::Result<()> {
    let (mut c, leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let client = client_for(c.node(followers[0]).client_addr()).await?;
    let mut w = worker(&runtime, client.clone())?;
    let scenario = async {
        let h = create(
            &client,
            "steady",
            "quick",
            ScheduleSpec::from_interval(Duration::from_secs(1)),
            ScheduleOverlapPolicy::AllowAll,
            false,
        )
        .await?;
        let d = describe_until(&h, "three actions", |d| d.action_count() >= 3).await?;
        let first = ms(d.recent_actions()[0].schedule_time);
        c.crash(leader).await;
        c.wait_for_leader(WAIT).await?;
        let d = describe_until(&h, "more actions under the new leader", |d| {
            d.action_count() >= 8
        })
        .await?;
        h.pause(Some("counted"), PauseScheduleOptions::default())
            .await?;
        let total = describe(&h).await?.action_count() as usize;
        assert!(total >= 8, "{d:?}");
        // Every run the schedule started, from visibility (runs of a reused id included).
        let runs = wait_for(WAIT, "visibility shows every started run", || async {
            let rows: Vec<_> = client
                .list_workflows(
                    "TemporalScheduledById = 'steady'",
                    WorkflowListOptions::default(),
                )
                .try_collect()
                .await
                .ok()?;
            (rows.len() >= total).then_some(rows)
        })
        .await?;
        let mut ids: Vec<String> = runs.iter().map(|r| r.id().to_string()).collect();
        ids.sort();
        anyhow::Ok((first, total, ids))
    };
    let (first, total, ids) = run_with_worker(&mut w, scenario).await?;
    let expected: Vec<String> = (0..total as u64)
        .map(|k| format!("steady-job-{}", id_time(first + k * 1000)))
        .collect();
    assert_eq!(ids, expected, "one run for each second, none twice");
    c.shutdown().await;
    Ok(())
}
