//! Temporal schedules' time arithmetic: when a schedule acts ([`spec`]) and Temporal's text spellings of it ([`text`]), pure. The
//! replicated schedule records, their actions and policies live in
//! [`crate::workflow::scheduler`], behind the same apply seam as every workflow command.

pub mod spec;
pub mod text;
