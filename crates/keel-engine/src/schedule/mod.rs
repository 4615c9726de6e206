//! Temporal schedules' time arithmetic: when a schedule acts ([`spec`]), pure. The
//! replicated schedule records, their actions and policies live in
//! [`crate::workflow::scheduler`], behind the same apply seam as every workflow command.

pub mod spec;
