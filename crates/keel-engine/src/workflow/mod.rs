//! Workflow executions: Temporal's history state machine.
//!
//! Commands ([`model`]) are applied by [`apply`] against mutable state, history, task
//! backlogs and the timers index in the [`crate::StateStore`]; each call returns a
//! [`WorkflowOutcome`] for the proposer and [`Effect`]s for the leader's drivers.
//!
//! Modules: `apply` (shared context, deadlines, dispatcher), `start` (start, signal,
//! signal-with-start, cancel request, terminate, run timeout), `task` (dispatch, workflow
//! task completion / failure / timeout, timers), `activity` (attempts, retries, heartbeats,
//! cancellation, timeouts), `query` (queries: legacy query tasks, or sent with a workflow task),
//! `chain` (continue-as-new: one run closes and the next starts in the same apply),
//! `children` (child workflows: start, close recorded in the parent, parent close policies),
//! `external` (signals and cancel requests from one run to another), `cron` (schedules),
//! `retry` (retry policy arithmetic), `search` (search attributes and memo: registry,
//! validation, upserts), `reset` (a new run from a workflow task of an old one), `limits` (history count and size),
//! `update` (workflow updates: admitted, sent with a task, accepted / rejected / completed),
//! `scheduler` (schedules: replicated records whose actions the timer driver fires).

mod activity;
mod apply;
mod chain;
mod children;
pub mod cron;
mod external;
pub mod limits;
pub mod model;
mod query;
pub mod reset;
mod retry;
pub mod scheduler;
pub mod search;
mod start;
mod task;
pub mod update;

#[cfg(test)]
mod invariants_test;
#[cfg(test)]
mod tests;

pub use apply::{
    apply, backlog_len, deadline_key, drop_spent_wakeups, read_history, read_mutable_state,
    read_namespace, read_status_counts, read_visibility, resolve_run, watch_namespace, watch_query,
    watch_queue, watch_run, watch_run_closed, workflow_task_waits, Effect, WorkflowTaskWaits,
    DEFAULT_WORKFLOW_TASK_TIMEOUT_MS,
};
pub use model::*;
pub use query::{query_ready, read_query};
pub use task::unsupported_command;
pub use update::{read_update, update_key};
