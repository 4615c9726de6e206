//! Checkers: each turns the history (and what the final reads saw) into a verdict.
//!
//! Verdicts merge as Jepsen's do: invalid beats unknown beats valid.

pub mod convergence;
pub mod coverage;
pub mod disk_faults;
pub mod wgl;

use serde::{Deserialize, Serialize};

/// A checker's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Valid,
    Unknown,
    Invalid,
}

impl Verdict {
    pub fn merge(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    /// The process exit code for a run with this verdict.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unknown => 2,
        }
    }
}

/// Most counterexamples kept per checker.
pub const MAX_EXAMPLES: usize = 20;

/// One checker's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    pub summary: String,
    #[serde(default)]
    pub counts: std::collections::BTreeMap<String, u64>,
    #[serde(default)]
    pub counterexamples: Vec<serde_json::Value>,
}

impl CheckResult {
    pub fn new(name: &str) -> CheckResult {
        CheckResult {
            name: name.to_string(),
            verdict: Verdict::Valid,
            summary: String::new(),
            counts: Default::default(),
            counterexamples: Vec::new(),
        }
    }

    /// Marks the result invalid and keeps the example (up to [`MAX_EXAMPLES`]).
    pub fn invalid(&mut self, example: serde_json::Value) {
        self.verdict = Verdict::Invalid;
        self.example(example);
    }

    /// Marks the result unknown (unless already invalid) and keeps the example.
    pub fn unknown(&mut self, example: serde_json::Value) {
        self.verdict = self.verdict.merge(Verdict::Unknown);
        self.example(example);
    }

    pub fn example(&mut self, example: serde_json::Value) {
        if self.counterexamples.len() < MAX_EXAMPLES {
            self.counterexamples.push(example);
        }
        *self.counts.entry("problems".into()).or_default() += 1;
    }

    pub fn count(&mut self, key: &str, n: u64) {
        *self.counts.entry(key.to_string()).or_default() += n;
    }
}
