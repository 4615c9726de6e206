//! Replicated commands and their responses, prost-encoded in the Raft log.
//!
//! Tags are part of the on-disk format: never reuse a retired tag.

/// What one Raft log entry carries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Proposal {
    /// The leader's wall-clock time when it proposed the entry, in ms since the Unix epoch.
    /// Apply never uses it directly; see [`crate::entry_time_ms`].
    #[prost(uint64, tag = "1")]
    pub proposed_at_ms: u64,
    /// Commands applied in order, atomically with the entry.
    #[prost(message, repeated, tag = "2")]
    pub commands: Vec<Command>,
}

/// A short summary for logs (openraft prints entries' payloads).
impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "proposal at {} ms with {} command(s)",
            self.proposed_at_ms,
            self.commands.len()
        )
    }
}

/// One replicated command.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    #[prost(
        oneof = "command::Kind",
        tags = "1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36"
    )]
    pub kind: Option<command::Kind>,
}

pub mod command {
    /// Every command kind.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        RegisterPut(super::RegisterPut),
        #[prost(message, tag = "2")]
        RegisterCas(super::RegisterCas),
        #[prost(message, tag = "3")]
        RegisterDelete(super::RegisterDelete),
        #[prost(message, tag = "10")]
        StartWorkflow(crate::workflow::StartWorkflow),
        #[prost(message, tag = "11")]
        DispatchTask(crate::workflow::DispatchTask),
        #[prost(message, tag = "12")]
        CompleteWorkflowTask(crate::workflow::CompleteWorkflowTask),
        #[prost(message, tag = "13")]
        CompleteActivityTask(crate::workflow::CompleteActivityTask),
        #[prost(message, tag = "14")]
        FireDeadline(crate::workflow::FireDeadline),
        #[prost(message, tag = "15")]
        FailWorkflowTask(crate::workflow::FailWorkflowTask),
        #[prost(message, tag = "16")]
        FailActivityTask(crate::workflow::FailActivityTask),
        #[prost(message, tag = "17")]
        RecordHeartbeat(crate::workflow::RecordHeartbeat),
        #[prost(message, tag = "18")]
        CancelActivityTask(crate::workflow::CancelActivityTask),
        #[prost(message, tag = "19")]
        SignalWorkflow(crate::workflow::SignalWorkflow),
        #[prost(message, tag = "20")]
        SignalWithStart(crate::workflow::SignalWithStart),
        #[prost(message, tag = "21")]
        RequestCancelWorkflow(crate::workflow::RequestCancelWorkflow),
        #[prost(message, tag = "22")]
        TerminateWorkflow(crate::workflow::TerminateWorkflow),
        #[prost(message, tag = "23")]
        RegisterNamespace(crate::workflow::RegisterNamespace),
        #[prost(message, tag = "24")]
        EnqueueQuery(crate::workflow::EnqueueQuery),
        #[prost(message, tag = "25")]
        AnswerQuery(crate::workflow::AnswerQuery),
        #[prost(message, tag = "26")]
        ForgetQuery(crate::workflow::ForgetQuery),
        #[prost(message, tag = "27")]
        DeleteWorkflow(crate::workflow::DeleteWorkflow),
        #[prost(message, tag = "28")]
        UpdateSearchAttributes(crate::workflow::search::UpdateSearchAttributes),
        #[prost(message, tag = "29")]
        ResetWorkflow(crate::workflow::reset::ResetWorkflow),
        #[prost(message, tag = "30")]
        SetNamespaceLimits(crate::workflow::SetNamespaceLimits),
        #[prost(message, tag = "31")]
        AdmitUpdate(crate::workflow::AdmitUpdate),
        #[prost(message, tag = "32")]
        StartWithUpdate(crate::workflow::StartWithUpdate),
        #[prost(message, tag = "33")]
        CreateSchedule(crate::workflow::scheduler::CreateSchedule),
        #[prost(message, tag = "34")]
        UpdateSchedule(crate::workflow::scheduler::UpdateSchedule),
        #[prost(message, tag = "35")]
        PatchSchedule(crate::workflow::scheduler::PatchSchedule),
        #[prost(message, tag = "36")]
        DeleteSchedule(crate::workflow::scheduler::DeleteSchedule),
    }
}

impl Command {
    /// A register put.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Command {
            kind: Some(command::Kind::RegisterPut(RegisterPut {
                key: key.into(),
                value: value.into(),
            })),
        }
    }

    /// A register compare-and-set; `expected = None` means "the key must not exist".
    pub fn cas(
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Self {
        Command {
            kind: Some(command::Kind::RegisterCas(RegisterCas {
                key: key.into(),
                expected,
                value: value.into(),
            })),
        }
    }

    /// A register delete.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Command {
            kind: Some(command::Kind::RegisterDelete(RegisterDelete {
                key: key.into(),
            })),
        }
    }
}

/// Set `key` to `value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterPut {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// Set `key` to `value` if its current value equals `expected` (absent: key must not exist).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterCas {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub expected: Option<Vec<u8>>,
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
}

/// Remove `key`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterDelete {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// Responses of one [`Proposal`], index-aligned with its commands.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProposalResponse {
    #[prost(message, repeated, tag = "1")]
    pub responses: Vec<Response>,
}

/// The result of one command.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(oneof = "response::Kind", tags = "1, 2, 3")]
    pub kind: Option<response::Kind>,
}

pub mod response {
    /// Every response kind.
    #[derive(Clone, PartialEq, prost::Oneof)]
    // Built once per command and moved, never stored in bulk: boxing buys nothing.
    #[allow(clippy::large_enum_variant)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        RegisterWrite(super::RegisterWrite),
        #[prost(message, tag = "2")]
        Rejected(super::Rejected),
        #[prost(message, tag = "3")]
        Workflow(crate::workflow::WorkflowOutcome),
    }
}

/// Outcome of a register write.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegisterWrite {
    /// False only when a compare-and-set's expectation did not hold (nothing was written).
    #[prost(bool, tag = "1")]
    pub succeeded: bool,
    /// The value before the command (absent: the key did not exist).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub previous: Option<Vec<u8>>,
}

/// A command the state machine refused as invalid; nothing was written.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Rejected {
    #[prost(string, tag = "1")]
    pub reason: String,
}
