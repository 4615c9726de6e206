//! ListWorkflowExecutions and CountWorkflowExecutions over the replicated visibility rows,
//! with the subset of Temporal's list-filter language in temporal-compat.md §5:
//!
//! ```text
//! [Field = 'value' (AND Field = 'value')*] [ORDER BY StartTime DESC]
//! Field: WorkflowId | WorkflowType | ExecutionStatus | TaskQueue | RunId
//! ```
//!
//! Keywords are case-insensitive, values are single- or double-quoted; anything else is
//! INVALID_ARGUMENT naming what was not understood. Results are newest first (the start-time
//! index's order). A page scans a bounded number of index entries, so a selective filter may
//! return a short page with a token to continue.

use keel_engine::keys;
use keel_engine::workflow as wf;
use keel_proto::temporalio_protos::temporal::api::common::v1::{WorkflowExecution, WorkflowType};
use keel_proto::temporalio_protos::temporal::api::workflow::v1::WorkflowExecutionInfo;
use keel_proto::temporalio_protos::temporal::api::workflowservice::v1 as api;
use tonic::Status;

use crate::convert::opt_timestamp;
use crate::service::Frontend;
use crate::status::to_status;

/// Default and largest page of ListWorkflowExecutions.
const MAX_PAGE: usize = 1_000;
/// Most index entries one list page (or one count step) reads.
const SCAN_BUDGET: usize = 10_000;

/// A field a filter may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    WorkflowId,
    WorkflowType,
    ExecutionStatus,
    TaskQueue,
    RunId,
}

/// A parsed filter: every condition must hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filter {
    conditions: Vec<(Field, String)>,
}

/// Temporal's names of execution statuses, by the engine's (= Temporal's) numbers.
const STATUSES: [(&str, wf::RunStatus); 7] = [
    ("Running", wf::RunStatus::Running),
    ("Completed", wf::RunStatus::Completed),
    ("Failed", wf::RunStatus::Failed),
    ("Canceled", wf::RunStatus::Canceled),
    ("Terminated", wf::RunStatus::Terminated),
    ("ContinuedAsNew", wf::RunStatus::ContinuedAsNew),
    ("TimedOut", wf::RunStatus::TimedOut),
];

impl Filter {
    fn matches(&self, row: &wf::VisibilityRecord) -> bool {
        self.conditions.iter().all(|(field, value)| match field {
            Field::WorkflowId => row.workflow_id == *value,
            Field::WorkflowType => row.workflow_type == *value,
            Field::TaskQueue => row.task_queue == *value,
            Field::RunId => row.run_id == *value,
            Field::ExecutionStatus => STATUSES
                .iter()
                .any(|(name, s)| name == value && *s as i32 == row.status),
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Eq,
}

fn tokenize(q: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '=' {
            chars.next();
            out.push(Token::Eq);
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next() {
                    Some(x) if x == c => break,
                    Some(x) => v.push(x),
                    None => return Err(format!("unterminated string starting with {c}")),
                }
            }
            out.push(Token::Quoted(v));
        } else if c.is_alphanumeric() || c == '_' {
            let mut w = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_alphanumeric() || x == '_' {
                    w.push(x);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Token::Word(w));
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(out)
}

fn keyword(t: Option<&Token>, k: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(k))
}

/// Parses a list/count query; `Err` is the INVALID_ARGUMENT message.
pub fn parse(query: &str) -> Result<Filter, String> {
    let tokens = tokenize(query)?;
    let mut filter = Filter::default();
    let mut i = 0;
    let at_order_by = |i: usize| keyword(tokens.get(i), "ORDER");
    if !tokens.is_empty() && !at_order_by(0) {
        loop {
            let field = match tokens.get(i) {
                Some(Token::Word(w)) => match w.as_str() {
                    "WorkflowId" => Field::WorkflowId,
                    "WorkflowType" => Field::WorkflowType,
                    "ExecutionStatus" => Field::ExecutionStatus,
                    "TaskQueue" => Field::TaskQueue,
                    "RunId" => Field::RunId,
                    other => {
                        return Err(format!(
                            "unsupported filter field {other:?} (supported: WorkflowId, \
                             WorkflowType, ExecutionStatus, TaskQueue, RunId)"
                        ))
                    }
                },
                other => return Err(format!("expected a field name, found {other:?}")),
            };
            if tokens.get(i + 1) != Some(&Token::Eq) {
                return Err(format!(
                    "only '=' comparisons are supported (after {field:?})"
                ));
            }
            let value = match tokens.get(i + 2) {
                Some(Token::Quoted(v)) => v.clone(),
                other => return Err(format!("expected a quoted value, found {other:?}")),
            };
            if field == Field::ExecutionStatus && !STATUSES.iter().any(|(n, _)| *n == value) {
                return Err(format!("unknown ExecutionStatus {value:?}"));
            }
            filter.conditions.push((field, value));
            i += 3;
            if keyword(tokens.get(i), "AND") {
                i += 1;
                continue;
            }
            break;
        }
    }
    if i < tokens.len() {
        let order = ["ORDER", "BY", "StartTime", "DESC"];
        let ok = tokens.len() - i == order.len()
            && order
                .iter()
                .enumerate()
                .all(|(j, k)| keyword(tokens.get(i + j), k));
        if !ok {
            return Err(
                "unsupported query: only AND of '=' conditions and ORDER BY StartTime DESC"
                    .to_string(),
            );
        }
    }
    Ok(filter)
}

fn info(row: &wf::VisibilityRecord) -> WorkflowExecutionInfo {
    WorkflowExecutionInfo {
        execution: Some(WorkflowExecution {
            workflow_id: row.workflow_id.clone(),
            run_id: row.run_id.clone(),
        }),
        r#type: Some(WorkflowType {
            name: row.workflow_type.clone(),
        }),
        start_time: opt_timestamp(row.start_time_ms),
        execution_time: opt_timestamp(row.start_time_ms),
        close_time: opt_timestamp(row.close_time_ms),
        status: row.status,
        history_length: row.history_length,
        task_queue: row.task_queue.clone(),
        ..Default::default()
    }
}

impl Frontend {
    /// Matching rows from the start-time index, from `from` on, reading at most `budget`
    /// index entries; returns them with the key to resume at (`None`: index exhausted).
    fn scan_visibility(
        &self,
        namespace: &str,
        filter: &Filter,
        from: &[u8],
        want: usize,
        budget: usize,
    ) -> Result<(Vec<wf::VisibilityRecord>, Option<Vec<u8>>), Status> {
        let prefix = keys::visibility_by_start_prefix(namespace);
        let state = self.node().state();
        let entries = state.scan_from(&prefix, from, budget).map_err(to_status)?;
        let exhausted = entries.len() < budget;
        let mut rows = Vec::new();
        for (k, _) in &entries {
            if rows.len() == want {
                return Ok((rows, Some(k.clone())));
            }
            let Some(run) = keys::parse_visibility_by_start(k) else {
                continue;
            };
            let run = wf::RunKey {
                namespace: namespace.to_string(),
                workflow_id: run.0,
                run_id: run.1,
            };
            // A row deleted (retention) since the index was read is skipped.
            if let Some(row) =
                wf::read_visibility(state, &run).map_err(|e| Status::internal(e.to_string()))?
            {
                if filter.matches(&row) {
                    rows.push(row);
                }
            }
        }
        let resume = if exhausted {
            None
        } else {
            // Resume just after the last key read.
            entries.last().map(|(k, _)| {
                let mut next = k.clone();
                next.push(0);
                next
            })
        };
        Ok((rows, resume))
    }

    pub(crate) fn list_executions(
        &self,
        r: api::ListWorkflowExecutionsRequest,
    ) -> Result<api::ListWorkflowExecutionsResponse, Status> {
        self.require_namespace(&r.namespace)?;
        let filter = parse(&r.query).map_err(Status::invalid_argument)?;
        let want = match r.page_size {
            n if n <= 0 => MAX_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let prefix = keys::visibility_by_start_prefix(&r.namespace);
        if !r.next_page_token.is_empty() && !r.next_page_token.starts_with(&prefix) {
            return Err(Status::invalid_argument("malformed next_page_token"));
        }
        let from = if r.next_page_token.is_empty() {
            prefix
        } else {
            r.next_page_token
        };
        let (rows, resume) =
            self.scan_visibility(&r.namespace, &filter, &from, want, SCAN_BUDGET)?;
        Ok(api::ListWorkflowExecutionsResponse {
            executions: rows.iter().map(info).collect(),
            next_page_token: resume.unwrap_or_default(),
        })
    }

    pub(crate) fn count_executions(
        &self,
        r: api::CountWorkflowExecutionsRequest,
    ) -> Result<api::CountWorkflowExecutionsResponse, Status> {
        self.require_namespace(&r.namespace)?;
        let filter = parse(&r.query).map_err(Status::invalid_argument)?;
        let mut from = keys::visibility_by_start_prefix(&r.namespace);
        let mut count = 0i64;
        loop {
            let (rows, resume) =
                self.scan_visibility(&r.namespace, &filter, &from, usize::MAX, SCAN_BUDGET)?;
            count += rows.len() as i64;
            match resume {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(api::CountWorkflowExecutionsResponse {
            count,
            groups: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(wf: &str, ty: &str, status: wf::RunStatus) -> wf::VisibilityRecord {
        wf::VisibilityRecord {
            workflow_id: wf.into(),
            run_id: "r".into(),
            workflow_type: ty.into(),
            task_queue: "tq".into(),
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn the_supported_subset_parses_and_filters() {
        assert_eq!(parse("").unwrap(), Filter::default());
        assert_eq!(
            parse("  order by StartTime desc ").unwrap(),
            Filter::default()
        );
        let f = parse(
            "WorkflowType = 'Order' and ExecutionStatus=\"Running\" AND TaskQueue = 'tq' \
             ORDER BY StartTime DESC",
        )
        .unwrap();
        assert!(f.matches(&row("a", "Order", wf::RunStatus::Running)));
        assert!(!f.matches(&row("a", "Order", wf::RunStatus::Completed)));
        assert!(!f.matches(&row("a", "Other", wf::RunStatus::Running)));
        let f = parse("WorkflowId = 'a b'").unwrap();
        assert!(f.matches(&row("a b", "x", wf::RunStatus::Failed)));
        assert!(!f.matches(&row("a", "x", wf::RunStatus::Failed)));
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for (q, why) in [
            ("StartTime > '2020'", "unexpected character"),
            ("CustomField = 'x'", "unsupported filter field"),
            ("WorkflowId = x", "quoted value"),
            ("WorkflowId = 'x' OR WorkflowId = 'y'", "unsupported query"),
            ("ExecutionStatus = 'Sleeping'", "unknown ExecutionStatus"),
            ("WorkflowId = 'x", "unterminated"),
            ("ORDER BY StartTime ASC", "unsupported query"),
            ("WorkflowId != 'x'", "unexpected character"),
        ] {
            let err = parse(q).expect_err(q);
            assert!(err.contains(why), "{q}: {err}");
        }
    }
}
