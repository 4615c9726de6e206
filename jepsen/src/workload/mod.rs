//! Workloads: client threads that record every operation, and the checkers of what they did.

pub mod activity;
pub mod bank;
pub mod register;
pub mod timer;
pub mod workflow;
