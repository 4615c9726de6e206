//! Temporal schedules (in progress, issue 17): for now, when a schedule acts ([`spec`]).
//! The replicated schedule state, its actions and policies, driven by the leader's timer
//! driver, come next behind the same apply seam.

pub mod spec;
