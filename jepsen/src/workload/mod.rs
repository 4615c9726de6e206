//! Workloads: client threads that record every operation, and the checkers of what they did.

pub mod register;
pub mod workflow;
