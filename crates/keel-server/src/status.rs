//! The one place where Keel errors become gRPC statuses for clients and operators.
//!
//! Not-leader and no-quorum conditions are UNAVAILABLE (retryable), with the leader's client
//! address in the `keel-leader-hint` metadata when it is known.

use keel_raft::Error;
use tonic::{Code, Status};

/// Maps a replication-layer error to the status a client receives.
pub fn to_status(e: keel_raft::Error) -> Status {
    let code = match &e {
        Error::NotLeader { .. }
        | Error::NoLeader { .. }
        | Error::LeaderUnreachable { .. }
        | Error::Timeout { .. }
        | Error::ShuttingDown => Code::Unavailable,
        Error::InvalidRequest(_) => Code::InvalidArgument,
        Error::NotEnabled(_) | Error::IdentityMismatch { .. } => Code::FailedPrecondition,
        Error::Decode(_)
        | Error::RocksDb { .. }
        | Error::Io { .. }
        | Error::Raft(_)
        | Error::Engine(_) => Code::Internal,
    };
    let hint = match &e {
        Error::NotLeader {
            leader_client_addr: Some(addr),
            ..
        } => addr.parse().ok(),
        _ => None,
    };
    let mut status = Status::new(code, e.to_string());
    if let Some(hint) = hint {
        status
            .metadata_mut()
            .insert(keel_proto::LEADER_HINT_HEADER, hint);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_is_unavailable_with_a_hint() {
        let s = to_status(Error::NotLeader {
            leader_id: Some(2),
            leader_client_addr: Some("127.0.0.1:7202".into()),
        });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.metadata().get(keel_proto::LEADER_HINT_HEADER).unwrap(),
            "127.0.0.1:7202"
        );
    }

    #[test]
    fn minority_side_errors_are_retryable_and_bad_input_is_not() {
        assert_eq!(
            to_status(Error::NoLeader { waited_ms: 5 }).code(),
            Code::Unavailable
        );
        assert_eq!(
            to_status(Error::InvalidRequest("x".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            to_status(Error::NotEnabled("x".into())).code(),
            Code::FailedPrecondition
        );
    }
}
