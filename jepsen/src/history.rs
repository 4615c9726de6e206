//! The run's history: one JSON object per line (JSONL), in the order events happened.
//!
//! Every client operation appears twice: an `invoke` when it is sent, then exactly one
//! completion: `ok` (it took effect), `fail` (it definitely did not) or `info` (unknown: a
//! timeout or a transport error; it may take effect at any later time, or never). Nemesis
//! operations and monitor samples (the leader each node reports) are single `info` events in
//! the same history, so checkers and plots see faults on the same clock.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Who performed an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Process {
    /// A client thread. A thread whose op ended in `info` continues under a fresh id.
    Client(u64),
    /// The fault injector.
    Nemesis,
    /// The harness's observer of cluster state (leaders, indexes).
    Monitor,
}

/// The type of a history event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One history event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, from 0.
    pub index: u64,
    /// Monotonic nanoseconds since the run started.
    pub time_ns: u64,
    /// The machine's wall clock at the same moment, nanoseconds since the Unix epoch (0 in
    /// histories recorded before it was kept). Keel stamps replicated time from the same wall
    /// clock, which need not run at the monotonic clock's rate (this kind of VM's has been
    /// seen gaining 0.5%): "never early in replicated time" is judged on this clock.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wall_ns: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: OpType,
    /// What was done: `read`, `write`, `cas`, `start`, `signal`, … for clients; `partition`,
    /// `heal`, `kill`, `restart`, `pause`, `resume`, `clock-bump`, `clock-reset`, … for the
    /// nemesis; `leader` for the monitor.
    pub f: String,
    /// Arguments on `invoke`, results on `ok`; free-form per workload.
    #[serde(default)]
    pub value: serde_json::Value,
    /// The node the operation was sent to (clients), or that reported (monitor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// Error text for `fail` and `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Appends events to an in-memory history and to its JSONL file as they happen, so a run
/// that dies still leaves what it recorded.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<RecorderInner>>,
    start: Instant,
}

struct RecorderInner {
    ops: Vec<Op>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    /// The first failed write to the file, reported by [`Recorder::finish`].
    write_error: Option<std::io::Error>,
}

impl Recorder {
    /// A recorder writing to `path` (created or truncated); `None` keeps the history in memory
    /// only.
    pub fn new(path: Option<&Path>) -> std::io::Result<Recorder> {
        let file = match path {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
            None => None,
        };
        Ok(Recorder {
            inner: Arc::new(Mutex::new(RecorderInner {
                ops: Vec::new(),
                file,
                write_error: None,
            })),
            start: Instant::now(),
        })
    }

    /// Nanoseconds since the recorder was created.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The instant time 0 of the history corresponds to.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one event now and returns its time.
    pub fn record(
        &self,
        process: Process,
        kind: OpType,
        f: &str,
        value: serde_json::Value,
        node: Option<u64>,
        error: Option<String>,
    ) -> u64 {
        let mut inner = self.inner.lock().expect("history lock");
        // Time is read under the lock so that history order and time order agree.
        let time_ns = self.now_ns();
        let wall_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let op = Op {
            index: inner.ops.len() as u64,
            time_ns,
            wall_ns,
            process,
            kind,
            f: f.to_string(),
            value,
            node,
            error,
        };
        if let Some(file) = inner.file.as_mut() {
            // A failed history write fails the run: `finish` returns the first one.
            let written = serde_json::to_writer(&mut *file, &op)
                .map_err(std::io::Error::from)
                .and_then(|_| file.write_all(b"\n"));
            if let Err(e) = written {
                inner.write_error.get_or_insert(e);
            }
        }
        inner.ops.push(op);
        time_ns
    }

    /// Flushes the file and returns a copy of everything recorded, or the first write error.
    pub fn finish(&self) -> std::io::Result<Vec<Op>> {
        let mut inner = self.inner.lock().expect("history lock");
        if let Some(e) = inner.write_error.take() {
            return Err(e);
        }
        if let Some(file) = inner.file.as_mut() {
            file.flush()?;
        }
        Ok(inner.ops.clone())
    }

    /// A copy of the events recorded so far.
    pub fn snapshot(&self) -> Vec<Op> {
        self.inner.lock().expect("history lock").ops.clone()
    }
}

/// Reads a JSONL history file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Op>> {
    let f = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("opening history {}: {e}", path.display()))?;
    let mut ops = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op: Op = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), n + 1))?;
        ops.push(op);
    }
    Ok(ops)
}

/// A client operation with its completion, paired from a history.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed<'a> {
    pub invoke: &'a Op,
    /// `None` when the history ends before the operation completed (treated as `info`).
    pub complete: Option<&'a Op>,
}

impl Completed<'_> {
    /// The completion type; an operation that never completed counts as `info`.
    pub fn outcome(&self) -> OpType {
        self.complete.map_or(OpType::Info, |c| c.kind)
    }
}

/// Pairs each client `invoke` with the next completion of the same process, for the ops whose
/// `f` passes `filter`. Events of other processes and of the nemesis are skipped.
pub fn pairs<'a>(ops: &'a [Op], filter: impl Fn(&str) -> bool) -> Vec<Completed<'a>> {
    let mut open: std::collections::BTreeMap<u64, usize> = Default::default();
    let mut out: Vec<Completed<'a>> = Vec::new();
    for op in ops {
        let Process::Client(p) = op.process else {
            continue;
        };
        if !filter(&op.f) {
            continue;
        }
        match op.kind {
            OpType::Invoke => {
                open.insert(p, out.len());
                out.push(Completed {
                    invoke: op,
                    complete: None,
                });
            }
            _ => {
                if let Some(i) = open.remove(&p) {
                    out[i].complete = Some(op);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_through_jsonl_and_pair_by_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let rec = Recorder::new(Some(&path)).unwrap();
        rec.record(
            Process::Client(0),
            OpType::Invoke,
            "write",
            json!(1),
            Some(1),
            None,
        );
        rec.record(
            Process::Client(1),
            OpType::Invoke,
            "read",
            json!(null),
            Some(2),
            None,
        );
        rec.record(
            Process::Nemesis,
            OpType::Info,
            "kill",
            json!({"targets": [1]}),
            None,
            None,
        );
        rec.record(
            Process::Client(1),
            OpType::Ok,
            "read",
            json!(1),
            Some(2),
            None,
        );
        let mem = rec.finish().unwrap();
        let file = read(&path).unwrap();
        assert_eq!(mem, file);
        assert!(file.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        let p = pairs(&file, |_| true);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].invoke.f, "write");
        assert_eq!(p[0].outcome(), OpType::Info, "never completed");
        assert_eq!(p[1].complete.unwrap().value, json!(1));
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(line.contains(r#""process":"nemesis""#), "{line}");
        assert!(line.contains(r#""process":{"client":0}"#), "{line}");
    }
}
