//! `keel schedule …`: create, list, describe, trigger, pause, unpause, backfill and delete
//! schedules through Temporal's WorkflowService, with the flags of Temporal's CLI
//! (`--schedule-id`, `--cron`, `--interval`, `--overlap-policy`, …).

use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde_json::Value;
use temporalio_protos::temporal::api::common::v1::WorkflowType;
use temporalio_protos::temporal::api::schedule::v1 as s;
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflow::v1::NewWorkflowExecutionInfo;
use temporalio_protos::temporal::api::workflowservice::v1 as api;

use crate::client_cli::{
    done, explain, identity, json, parse_duration, payloads, print_json, proto_duration, s as text,
    table, uuid, workflow_client, ClientOpts, Output,
};

/// Temporal's overlap policies, as its CLI spells them.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    Skip,
    BufferOne,
    BufferAll,
    CancelOther,
    TerminateOther,
    AllowAll,
}

impl Overlap {
    fn number(self) -> i32 {
        match self {
            Overlap::Skip => 1,
            Overlap::BufferOne => 2,
            Overlap::BufferAll => 3,
            Overlap::CancelOther => 4,
            Overlap::TerminateOther => 5,
            Overlap::AllowAll => 6,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCmd {
    /// Create a schedule that starts a workflow at the times of its spec.
    Create {
        #[arg(long, short = 's')]
        schedule_id: String,
        /// A cron string (`0 12 * * MON`, `@daily`, `@every 10m`); repeat for several.
        #[arg(long)]
        cron: Vec<String>,
        /// An interval, optionally with a phase: `10m`, `1h/15m`; repeat for several.
        #[arg(long)]
        interval: Vec<String>,
        /// IANA time zone of the cron strings (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        /// Workflow type the action starts.
        #[arg(long = "type")]
        workflow_type: String,
        #[arg(long, short = 't')]
        task_queue: String,
        /// Workflow id of the started runs (each gets `-<time>` appended).
        #[arg(long, short = 'w')]
        workflow_id: String,
        /// An argument as JSON; repeat for several.
        #[arg(long, short = 'i')]
        input: Vec<String>,
        #[arg(long, value_enum, default_value = "skip")]
        overlap_policy: Overlap,
        /// How late a missed time may still act, e.g. `10m` (default: a year).
        #[arg(long, value_parser = parse_duration)]
        catchup_window: Option<Duration>,
        /// Pause when a started workflow fails or times out.
        #[arg(long)]
        pause_on_failure: bool,
        /// Stop after this many scheduled actions.
        #[arg(long)]
        remaining_actions: Option<i64>,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// List schedules.
    List {
        /// Visibility query over the schedules' search attributes.
        #[arg(long, short = 'q', default_value = "")]
        query: String,
    },
    /// Spec, action, state and recent / next actions of one schedule.
    Describe {
        #[arg(long, short = 's')]
        schedule_id: String,
    },
    /// Act once now.
    Trigger {
        #[arg(long, short = 's')]
        schedule_id: String,
        #[arg(long, value_enum)]
        overlap_policy: Option<Overlap>,
    },
    /// Pause or unpause (with `--unpause`).
    Toggle {
        #[arg(long, short = 's')]
        schedule_id: String,
        #[arg(long)]
        unpause: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Act on every time of the spec in a past range, e.g. `--start-time 2026-01-01T00:00:00Z`.
    Backfill {
        #[arg(long, short = 's')]
        schedule_id: String,
        #[arg(long)]
        start_time: String,
        #[arg(long)]
        end_time: String,
        #[arg(long, value_enum)]
        overlap_policy: Option<Overlap>,
    },
    /// Delete (workflows it started keep running).
    Delete {
        #[arg(long, short = 's')]
        schedule_id: String,
    },
}

fn timestamp(rfc3339: &str) -> anyhow::Result<keel_proto::prost_wkt_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map_err(|e| anyhow::anyhow!("{rfc3339:?} is not a time like 2026-01-01T00:00:00Z: {e}"))?;
    Ok(keel_proto::prost_wkt_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

fn interval(spec: &str) -> anyhow::Result<s::IntervalSpec> {
    let (every, phase) = match spec.split_once('/') {
        Some((e, p)) => (e, Some(p)),
        None => (spec, None),
    };
    let every = parse_duration(every).map_err(anyhow::Error::msg)?;
    let phase = phase
        .map(parse_duration)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    Ok(s::IntervalSpec {
        interval: Some(proto_duration(every)),
        phase: phase.map(proto_duration),
    })
}

fn patch_request(o: &ClientOpts, id: String, patch: s::SchedulePatch) -> api::PatchScheduleRequest {
    api::PatchScheduleRequest {
        namespace: o.namespace.clone(),
        schedule_id: id,
        patch: Some(patch),
        identity: identity(),
        request_id: uuid(),
    }
}

pub async fn schedule(o: &ClientOpts, cmd: ScheduleCmd) -> anyhow::Result<()> {
    let mut client = workflow_client(o).await?;
    let ns = o.namespace.clone();
    match cmd {
        ScheduleCmd::Create {
            schedule_id,
            cron,
            interval: intervals,
            time_zone,
            workflow_type,
            task_queue,
            workflow_id,
            input,
            overlap_policy,
            catchup_window,
            pause_on_failure,
            remaining_actions,
            paused,
            notes,
        } => {
            anyhow::ensure!(
                !cron.is_empty() || !intervals.is_empty(),
                "a schedule needs --cron or --interval"
            );
            let schedule = s::Schedule {
                spec: Some(s::ScheduleSpec {
                    cron_string: cron,
                    interval: intervals
                        .iter()
                        .map(|i| interval(i))
                        .collect::<anyhow::Result<_>>()?,
                    timezone_name: time_zone.unwrap_or_default(),
                    ..Default::default()
                }),
                action: Some(s::ScheduleAction {
                    action: Some(s::schedule_action::Action::StartWorkflow(
                        NewWorkflowExecutionInfo {
                            workflow_id,
                            workflow_type: Some(WorkflowType {
                                name: workflow_type,
                            }),
                            task_queue: Some(TaskQueue {
                                name: task_queue,
                                ..Default::default()
                            }),
                            input: payloads(&input)?,
                            ..Default::default()
                        },
                    )),
                }),
                policies: Some(s::SchedulePolicies {
                    overlap_policy: overlap_policy.number(),
                    catchup_window: catchup_window.map(proto_duration),
                    pause_on_failure,
                    keep_original_workflow_id: false,
                }),
                state: Some(s::ScheduleState {
                    notes,
                    paused,
                    limited_actions: remaining_actions.is_some(),
                    remaining_actions: remaining_actions.unwrap_or(0),
                }),
            };
            client
                .create_schedule(api::CreateScheduleRequest {
                    namespace: ns,
                    schedule_id: schedule_id.clone(),
                    schedule: Some(schedule),
                    identity: identity(),
                    request_id: uuid(),
                    ..Default::default()
                })
                .await
                .map_err(|e| explain(e, o, None))?;
            done(o, &format!("schedule {schedule_id} created"));
        }
        ScheduleCmd::List { query } => {
            let mut rows = Vec::new();
            let mut token = Vec::new();
            loop {
                let page = client
                    .list_schedules(api::ListSchedulesRequest {
                        namespace: ns.clone(),
                        maximum_page_size: 1000,
                        next_page_token: token,
                        query: query.clone(),
                    })
                    .await
                    .map_err(|e| explain(e, o, None))?
                    .into_inner();
                for e in &page.schedules {
                    rows.push(json(o, "temporal.api.schedule.v1.ScheduleListEntry", e)?);
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            match o.output {
                Output::Table => print!(
                    "{}",
                    table(
                        &[
                            "SCHEDULE ID",
                            "WORKFLOW TYPE",
                            "PAUSED",
                            "NOTES",
                            "NEXT ACTION"
                        ],
                        &rows
                            .iter()
                            .map(|r| vec![
                                text(&r["scheduleId"]),
                                text(&r["info"]["workflowType"]["name"]),
                                r["info"]["paused"].as_bool().unwrap_or(false).to_string(),
                                text(&r["info"]["notes"]),
                                text(&r["info"]["futureActionTimes"][0]),
                            ])
                            .collect::<Vec<_>>()
                    )
                ),
                Output::Json => print_json(o, &Value::Array(rows)),
                Output::Jsonl => rows.iter().for_each(|r| print_json(o, r)),
            }
        }
        ScheduleCmd::Describe { schedule_id } => {
            let r = client
                .describe_schedule(api::DescribeScheduleRequest {
                    namespace: ns,
                    schedule_id: schedule_id.clone(),
                })
                .await
                .map_err(|e| explain(e, o, None))?
                .into_inner();
            let v = json(
                o,
                "temporal.api.workflowservice.v1.DescribeScheduleResponse",
                &r,
            )?;
            match o.output {
                Output::Table => {
                    let state = &v["schedule"]["state"];
                    let info = &v["info"];
                    println!("schedule    {schedule_id}");
                    println!(
                        "paused      {}{}",
                        state["paused"].as_bool().unwrap_or(false),
                        match text(&state["notes"]) {
                            n if n.is_empty() => String::new(),
                            n => format!(" ({n})"),
                        }
                    );
                    println!(
                        "actions     {}",
                        info["actionCount"].as_str().unwrap_or("0")
                    );
                    let count = |k: &str| info[k].as_str().unwrap_or("0").to_string();
                    println!(
                        "skipped     {} overlapping, {} missed, {} dropped",
                        count("overlapSkipped"),
                        count("missedCatchupWindow"),
                        count("bufferDropped")
                    );
                    let recent: Vec<Vec<String>> = info["recentActions"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|x| {
                                    vec![
                                        text(&x["scheduleTime"]),
                                        text(&x["startWorkflowResult"]["workflowId"]),
                                        crate::client_cli::status_name(&x["startWorkflowStatus"]),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if !recent.is_empty() {
                        print!(
                            "{}",
                            table(&["SCHEDULED", "WORKFLOW ID", "STATUS"], &recent)
                        );
                    }
                    if let Some(next) = info["futureActionTimes"].as_array() {
                        let next: Vec<String> = next.iter().map(text).collect();
                        println!("next        {}", next.join(", "));
                    }
                }
                _ => print_json(o, &v),
            }
        }
        ScheduleCmd::Trigger {
            schedule_id,
            overlap_policy,
        } => {
            let patch = s::SchedulePatch {
                trigger_immediately: Some(s::TriggerImmediatelyRequest {
                    overlap_policy: overlap_policy.map_or(0, Overlap::number),
                    scheduled_time: None,
                }),
                ..Default::default()
            };
            client
                .patch_schedule(patch_request(o, schedule_id.clone(), patch))
                .await
                .map_err(|e| explain(e, o, None))?;
            done(o, &format!("schedule {schedule_id} triggered"));
        }
        ScheduleCmd::Toggle {
            schedule_id,
            unpause,
            reason,
        } => {
            let note = if reason.is_empty() {
                format!(
                    "{} with keel schedule toggle",
                    if unpause { "Unpaused" } else { "Paused" }
                )
            } else {
                reason
            };
            let patch = if unpause {
                s::SchedulePatch {
                    unpause: note,
                    ..Default::default()
                }
            } else {
                s::SchedulePatch {
                    pause: note,
                    ..Default::default()
                }
            };
            client
                .patch_schedule(patch_request(o, schedule_id.clone(), patch))
                .await
                .map_err(|e| explain(e, o, None))?;
            done(
                o,
                &format!(
                    "schedule {schedule_id} {}",
                    if unpause { "unpaused" } else { "paused" }
                ),
            );
        }
        ScheduleCmd::Backfill {
            schedule_id,
            start_time,
            end_time,
            overlap_policy,
        } => {
            let patch = s::SchedulePatch {
                backfill_request: vec![s::BackfillRequest {
                    start_time: Some(timestamp(&start_time)?),
                    end_time: Some(timestamp(&end_time)?),
                    overlap_policy: overlap_policy.map_or(0, Overlap::number),
                }],
                ..Default::default()
            };
            client
                .patch_schedule(patch_request(o, schedule_id.clone(), patch))
                .await
                .map_err(|e| explain(e, o, None))?;
            done(o, &format!("schedule {schedule_id} backfilled"));
        }
        ScheduleCmd::Delete { schedule_id } => {
            client
                .delete_schedule(api::DeleteScheduleRequest {
                    namespace: ns,
                    schedule_id: schedule_id.clone(),
                    identity: identity(),
                })
                .await
                .map_err(|e| explain(e, o, None))?;
            done(o, &format!("schedule {schedule_id} deleted"));
        }
    }
    Ok(())
}
