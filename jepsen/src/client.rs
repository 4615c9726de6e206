//! What every workload's client shares: the classification of an RPC outcome into the history
//! types, the rate limit, and the per-thread process ids.

use std::time::Duration;

use rand::Rng;
use tonic::Code;

use crate::history::{OpType, Process, Recorder};

/// How long a client waits for one operation before recording it as `info`.
pub const OP_TIMEOUT: Duration = Duration::from_secs(6);

/// The history type of a failed RPC (temporal-compat and jepsen-notes §2: the server contract).
///
/// For an operation with effects: a definite `fail` for bad input, NOT_FOUND, ALREADY_EXISTS,
/// FAILED_PRECONDITION, and UNAVAILABLE that carries `keel-not-proposed`; everything else
/// (deadline, transport error, a commit that timed out) may still take effect: `info`. A read
/// has no effect, so every error is a `fail`.
pub fn classify(status: &tonic::Status, has_effect: bool) -> OpType {
    if !has_effect || never_sent(status) {
        return OpType::Fail;
    }
    match status.code() {
        Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::FailedPrecondition => {
            OpType::Fail
        }
        Code::Unavailable
            if status
                .metadata()
                .get(keel_proto::NOT_PROPOSED_HEADER)
                .is_some_and(|v| v == "true") =>
        {
            OpType::Fail
        }
        _ => OpType::Info,
    }
}

/// Whether the client's own transport failed to connect, so the request never left it.
fn never_sent(status: &tonic::Status) -> bool {
    status.code() == Code::Unavailable
        && (status.message().starts_with("tcp connect error")
            || status.message().starts_with("error trying to connect"))
}

/// Short error text for the history.
pub fn error_text(status: &tonic::Status) -> String {
    let mut m = status.message().to_string();
    m.truncate(160);
    format!("{:?}: {m}", status.code())
}

/// One client thread's identity: a thread whose op ended in `info` continues under a fresh
/// process id (the old one may still have an op in flight forever).
pub struct Thread {
    pub index: u64,
    pub concurrency: u64,
    pub process: u64,
}

impl Thread {
    pub fn new(index: u64, concurrency: u64) -> Thread {
        Thread {
            index,
            concurrency,
            process: index,
        }
    }

    pub fn proc(&self) -> Process {
        Process::Client(self.process)
    }

    /// Records an outcome; an `info` moves the thread to a new process id.
    #[allow(clippy::too_many_arguments)]
    pub fn complete(
        &mut self,
        rec: &Recorder,
        kind: OpType,
        f: &str,
        value: serde_json::Value,
        node: u64,
        error: Option<String>,
    ) {
        rec.record(self.proc(), kind, f, value, Some(node), error);
        if kind == OpType::Info {
            self.process += self.concurrency;
        }
    }
}

impl Thread {
    /// Records a failed RPC as `fail` or `info` ([`classify`]), with its error text.
    pub fn fail(
        &mut self,
        rec: &Recorder,
        f: &str,
        args: serde_json::Value,
        node: u64,
        status: &tonic::Status,
        has_effect: bool,
    ) {
        let kind = classify(status, has_effect);
        self.complete(rec, kind, f, args, node, Some(error_text(status)));
    }
}

/// Sleeps between one thread's ops so that `threads` threads make about `rate` ops/s in all.
pub async fn pace(rate: f64, threads: u64, rng: &mut impl Rng) {
    if rate <= 0.0 {
        return;
    }
    let mean = threads as f64 / rate;
    let d = mean * rng.random_range(0.5..1.5);
    tokio::time::sleep(Duration::from_secs_f64(d)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_that_prove_no_effect_are_failures() {
        let mut not_proposed = tonic::Status::unavailable("no leader");
        not_proposed.metadata_mut().insert(
            keel_proto::NOT_PROPOSED_HEADER,
            tonic::metadata::MetadataValue::from_static("true"),
        );
        assert_eq!(classify(&not_proposed, true), OpType::Fail);
        assert_eq!(
            classify(&tonic::Status::unavailable("leader unreachable"), true),
            OpType::Info
        );
        assert_eq!(
            classify(&tonic::Status::deadline_exceeded("t"), true),
            OpType::Info
        );
        assert_eq!(classify(&tonic::Status::internal("x"), true), OpType::Info);
        assert_eq!(
            classify(&tonic::Status::unavailable("tcp connect error"), true),
            OpType::Fail,
            "never sent"
        );
        assert_eq!(
            classify(
                &tonic::Status::unavailable("leader 3 unreachable: tcp connect error"),
                true
            ),
            OpType::Info,
            "a forward's failure is the server's to classify"
        );
        assert_eq!(
            classify(&tonic::Status::already_exists("x"), true),
            OpType::Fail
        );
        assert_eq!(
            classify(&tonic::Status::deadline_exceeded("t"), false),
            OpType::Fail,
            "a read that failed had no effect"
        );
    }

    #[test]
    fn an_info_moves_the_thread_to_a_new_process() {
        let rec = Recorder::new(None).unwrap();
        let mut t = Thread::new(2, 5);
        t.complete(&rec, OpType::Ok, "read", serde_json::Value::Null, 1, None);
        assert_eq!(t.process, 2);
        t.complete(
            &rec,
            OpType::Info,
            "write",
            serde_json::Value::Null,
            1,
            None,
        );
        assert_eq!(t.process, 7);
        t.complete(
            &rec,
            OpType::Fail,
            "write",
            serde_json::Value::Null,
            1,
            None,
        );
        assert_eq!(t.process, 7);
    }
}
