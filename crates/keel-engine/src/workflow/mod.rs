//! Workflow executions: Temporal's history state machine.
//!
//! Commands ([`model`]) are applied by [`apply`] against mutable state, history and task
//! backlogs in the [`crate::StateStore`]; each call returns a [`WorkflowOutcome`] for the
//! proposer and [`Effect`]s for the leader's drivers.

mod apply;
#[cfg(test)]
mod invariants_test;
pub mod model;
#[cfg(test)]
mod tests;

pub use apply::{
    apply, read_history, read_mutable_state, Effect, DEFAULT_WORKFLOW_TASK_TIMEOUT_MS,
};
pub use model::*;
