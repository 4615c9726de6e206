//! ListWorkflowExecutions and CountWorkflowExecutions over the replicated visibility rows,
//! with Temporal's list-filter language (its SQL-like subset):
//!
//! ```text
//! query   := [expr] [ORDER BY StartTime DESC] | [expr] GROUP BY ExecutionStatus (count only)
//! expr    := term (OR term)*          term := factor (AND factor)*
//! factor  := '(' expr ')' | field op value | field [NOT] IN '(' value, ... ')'
//!          | field [NOT] BETWEEN value AND value | field [NOT] STARTS_WITH value
//!          | field IS [NOT] NULL
//! op      := = | != | <> | < | <= | > | >=
//! field   := a system attribute (WorkflowId, WorkflowType, ExecutionStatus, StartTime, …),
//!            a predefined one, or a custom attribute registered in the namespace; `quoted`
//! value   := 'string' | "string" | number | true | false
//! ```
//!
//! Values are typed by the field (a Datetime compares RFC 3339 times, an Int numbers, a
//! KeywordList matches if any element does, a Text matches if every word of the value is
//! one of its words, case-insensitively). A missing attribute satisfies only `IS NULL`.
//! Keywords are case-insensitive; anything else is INVALID_ARGUMENT naming what was not
//! understood. Results are newest first (the start-time index's order). A page scans a
//! bounded number of index entries, so a selective filter may return a short page with a
//! token to continue.

use std::collections::BTreeMap;

use keel_engine::keys;
use keel_engine::workflow as wf;
use keel_engine::workflow::search::{self, IndexedValueType, Value};
use keel_proto::temporalio_protos::temporal::api::common::v1::{
    Payload, WorkflowExecution, WorkflowType,
};
use keel_proto::temporalio_protos::temporal::api::workflow::v1::WorkflowExecutionInfo;
use keel_proto::temporalio_protos::temporal::api::workflowservice::v1 as api;
use tonic::Status;

use crate::convert::{decoded, opt_timestamp};
use keel_raft::StateReader;

use crate::service::Frontend;
use crate::status::to_status;

/// Default and largest page of ListWorkflowExecutions.
const MAX_PAGE: usize = 1_000;
/// Most index entries one list page (or one count step) reads.
const SCAN_BUDGET: usize = 10_000;

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

fn status_name(status: i32) -> &'static str {
    STATUSES
        .iter()
        .find(|(_, s)| *s as i32 == status)
        .map_or("Unspecified", |(n, _)| n)
}

/// A field of a filter, with the type its values compare as.
#[derive(Debug, Clone, PartialEq)]
struct FieldRef {
    name: String,
    ty: IndexedValueType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(FieldRef, Op, Value),
    In(FieldRef, Vec<Value>, bool),
    Between(FieldRef, Value, Value, bool),
    StartsWith(FieldRef, String, bool),
    IsNull(FieldRef, bool),
}

/// A parsed query: an optional filter and, for counts, whether to group by status.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filter {
    expr: Option<Expr>,
    group_by_status: bool,
}

/// A visibility row with its search attributes decoded by the namespace's registry.
struct Row<'a> {
    row: &'a wf::VisibilityRecord,
    attributes: BTreeMap<String, Vec<u8>>,
}

impl Row<'_> {
    fn value(&self, f: &FieldRef) -> Option<Value> {
        let r = self.row;
        let s = |v: &str| (!v.is_empty()).then(|| Value::Str(v.to_string()));
        let t = |ms: u64| (ms > 0).then(|| Value::Time(ms as i64 * 1_000_000));
        match f.name.as_str() {
            "WorkflowId" => s(&r.workflow_id),
            "RunId" => s(&r.run_id),
            "WorkflowType" => s(&r.workflow_type),
            "TaskQueue" => s(&r.task_queue),
            "ExecutionStatus" => s(status_name(r.status)),
            "StartTime" => t(r.start_time_ms),
            "CloseTime" => t(r.close_time_ms),
            "ExecutionTime" => t(r.execution_time_ms.max(r.start_time_ms)),
            "HistoryLength" => Some(Value::Int(r.history_length)),
            "ParentWorkflowId" => r.parent.as_ref().and_then(|p| s(&p.workflow_id)),
            "ParentRunId" => r.parent.as_ref().and_then(|p| s(&p.run_id)),
            "RootWorkflowId" => r.root.as_ref().and_then(|p| s(&p.workflow_id)),
            "RootRunId" => r.root.as_ref().and_then(|p| s(&p.run_id)),
            name => self
                .attributes
                .get(name)
                .and_then(|p| search::decode_value(p, f.ty).ok().flatten()),
        }
    }
}

fn cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Time(x), Value::Time(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::Double(y)) => (*x as f64).partial_cmp(y),
        (Value::Double(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        _ => None,
    }
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether a stored value equals a query value: any element of a list, every word of a
/// text.
fn equals(ty: IndexedValueType, stored: &Value, wanted: &Value) -> bool {
    match (stored, ty) {
        (Value::List(items), _) => items.iter().any(|x| equals(ty, x, wanted)),
        (Value::Str(text), IndexedValueType::Text) => match wanted {
            Value::Str(w) => {
                let have = words(text);
                words(w).iter().all(|x| have.contains(x))
            }
            _ => false,
        },
        _ => cmp(stored, wanted) == Some(std::cmp::Ordering::Equal),
    }
}

fn compare(stored: &Value, op: Op, wanted: &Value) -> bool {
    use std::cmp::Ordering::*;
    match stored {
        Value::List(items) => items.iter().any(|x| compare(x, op, wanted)),
        _ => matches!(
            (op, cmp(stored, wanted)),
            (Op::Lt, Some(Less))
                | (Op::Le, Some(Less | Equal))
                | (Op::Gt, Some(Greater))
                | (Op::Ge, Some(Greater | Equal))
        ),
    }
}

impl Expr {
    fn eval(&self, row: &Row<'_>) -> bool {
        match self {
            Expr::And(a, b) => a.eval(row) && b.eval(row),
            Expr::Or(a, b) => a.eval(row) || b.eval(row),
            Expr::IsNull(f, negated) => row.value(f).is_none() != *negated,
            Expr::Cmp(f, op, v) => match row.value(f) {
                None => false,
                Some(stored) => match op {
                    Op::Eq => equals(f.ty, &stored, v),
                    Op::Ne => !equals(f.ty, &stored, v),
                    _ => compare(&stored, *op, v),
                },
            },
            Expr::In(f, values, negated) => match row.value(f) {
                None => false,
                Some(stored) => values.iter().any(|v| equals(f.ty, &stored, v)) != *negated,
            },
            Expr::Between(f, lo, hi, negated) => match row.value(f) {
                None => false,
                Some(stored) => {
                    (compare(&stored, Op::Ge, lo) && compare(&stored, Op::Le, hi)) != *negated
                }
            },
            Expr::StartsWith(f, prefix, negated) => match row.value(f) {
                None => false,
                Some(Value::Str(s)) => s.starts_with(prefix.as_str()) != *negated,
                Some(Value::List(items)) => {
                    items
                        .iter()
                        .any(|x| matches!(x, Value::Str(s) if s.starts_with(prefix.as_str())))
                        != *negated
                }
                Some(_) => false,
            },
        }
    }
}

impl Filter {
    pub(crate) fn matches(&self, row: &wf::VisibilityRecord) -> bool {
        let Some(expr) = &self.expr else {
            return true;
        };
        let attributes = search::decode_map(&row.search_attributes)
            .map(|m| m.fields)
            .unwrap_or_default();
        expr.eval(&Row { row, attributes })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    /// A backquoted field name.
    Name(String),
    Quoted(String),
    Number(String),
    Op(&'static str),
    Open,
    Close,
    Comma,
}

fn tokenize(q: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two = |op: &'static str| (op, 2);
        let op = match (c, next) {
            ('!', Some('=')) => Some(two("!=")),
            ('<', Some('>')) => Some(two("!=")),
            ('<', Some('=')) => Some(two("<=")),
            ('>', Some('=')) => Some(two(">=")),
            ('<', _) => Some(("<", 1)),
            ('>', _) => Some((">", 1)),
            ('=', _) => Some(("=", 1)),
            _ => None,
        };
        if let Some((op, len)) = op {
            out.push(Token::Op(op));
            i += len;
        } else if c == '(' {
            out.push(Token::Open);
            i += 1;
        } else if c == ')' {
            out.push(Token::Close);
            i += 1;
        } else if c == ',' {
            out.push(Token::Comma);
            i += 1;
        } else if c == '\'' || c == '"' || c == '`' {
            let mut v = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    Some('\\') if chars.get(i + 1).is_some() => {
                        v.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&x) if x == c => {
                        i += 1;
                        break;
                    }
                    Some(&x) => {
                        v.push(x);
                        i += 1;
                    }
                    None => return Err(format!("unterminated string starting with {c}")),
                }
            }
            out.push(if c == '`' {
                Token::Name(v)
            } else {
                Token::Quoted(v)
            });
        } else if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) {
            let mut v = String::from(c);
            i += 1;
            while let Some(&x) = chars.get(i) {
                if x.is_ascii_digit() || x == '.' || x == 'e' || x == 'E' {
                    v.push(x);
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(Token::Number(v));
        } else if c.is_alphanumeric() || c == '_' {
            let mut w = String::new();
            while let Some(&x) = chars.get(i) {
                if x.is_alphanumeric() || x == '_' {
                    w.push(x);
                    i += 1;
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

fn is_keyword(t: Option<&Token>, k: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(k))
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    registry: &'a BTreeMap<String, i32>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn keyword(&mut self, k: &str) -> bool {
        if is_keyword(self.peek(), k) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, k: &str) -> Result<(), String> {
        if self.keyword(k) {
            Ok(())
        } else {
            Err(format!("expected {k}, found {}", self.found()))
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the query".into(),
            Some(Token::Word(w) | Token::Number(w)) => format!("{w:?}"),
            Some(Token::Name(w)) => format!("`{w}`"),
            Some(Token::Quoted(w)) => format!("'{w}'"),
            Some(Token::Op(o)) => format!("{o:?}"),
            Some(Token::Open) => "'('".into(),
            Some(Token::Close) => "')'".into(),
            Some(Token::Comma) => "','".into(),
        }
    }

    fn at_clause_end(&self) -> bool {
        self.peek().is_none()
            || is_keyword(self.peek(), "ORDER")
            || is_keyword(self.peek(), "GROUP")
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        while self.keyword("OR") {
            left = Expr::Or(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, String> {
        let mut left = self.factor()?;
        while self.keyword("AND") {
            left = Expr::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn field(&mut self) -> Result<FieldRef, String> {
        let name = match self.peek() {
            Some(Token::Word(w) | Token::Name(w)) => w.clone(),
            _ => {
                return Err(format!(
                    "expected a search attribute name, found {}",
                    self.found()
                ))
            }
        };
        self.at += 1;
        if search::NOT_INDEXED.contains(&name.as_str()) {
            return Err(format!(
                "invalid expression: search attribute {name} is not indexed by this server"
            ));
        }
        let ty = search::queryable_type(self.registry, &name).ok_or_else(|| {
            format!("invalid expression: column name '{name}' is not a valid search attribute")
        })?;
        Ok(FieldRef { name, ty })
    }

    fn value(&mut self, f: &FieldRef) -> Result<Value, String> {
        let token = self.peek().cloned();
        self.at += 1;
        let bad = |what: &str| {
            format!(
                "invalid value {what} for search attribute {} of type {}",
                f.name,
                f.ty.name()
            )
        };
        use IndexedValueType as T;
        match (f.ty, token) {
            (T::Keyword | T::Text | T::KeywordList, Some(Token::Quoted(v))) => {
                if f.name == "ExecutionStatus" && !STATUSES.iter().any(|(n, _)| *n == v) {
                    return Err(format!(
                        "invalid expression: invalid ExecutionStatus value '{v}'"
                    ));
                }
                Ok(Value::Str(v))
            }
            (T::Int, Some(Token::Number(n) | Token::Quoted(n))) => {
                n.parse().map(Value::Int).map_err(|_| bad(&n))
            }
            (T::Double, Some(Token::Number(n) | Token::Quoted(n))) => {
                n.parse().map(Value::Double).map_err(|_| bad(&n))
            }
            (T::Bool, Some(Token::Word(w) | Token::Quoted(w))) => {
                match w.to_ascii_lowercase().as_str() {
                    "true" => Ok(Value::Bool(true)),
                    "false" => Ok(Value::Bool(false)),
                    _ => Err(bad(&w)),
                }
            }
            (T::Datetime, Some(Token::Quoted(v))) => {
                search::parse_time(&v).map(Value::Time).ok_or_else(|| {
                    format!("invalid expression: unable to parse datetime '{v}' (RFC 3339)")
                })
            }
            (T::Datetime, Some(Token::Number(n))) => {
                n.parse().map(Value::Time).map_err(|_| bad(&n))
            }
            (_, None) => Err(format!(
                "expected a value for {}, found the end of the query",
                f.name
            )),
            (_, Some(t)) => {
                self.at -= 1;
                let found = self.found();
                self.at += 1;
                let _ = t;
                Err(bad(&found))
            }
        }
    }

    fn factor(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let e = self.expr()?;
            if self.peek() != Some(&Token::Close) {
                return Err(format!("expected ')', found {}", self.found()));
            }
            self.at += 1;
            return Ok(e);
        }
        let f = self.field()?;
        // Temporal's limits: a KeywordList takes =, !=, IN; a Text =, !=; Bool no ranges.
        let allowed = |op: &str| -> Result<(), String> {
            let ok = match f.ty {
                IndexedValueType::KeywordList => matches!(op, "=" | "!=" | "in" | "not in"),
                IndexedValueType::Text => matches!(op, "=" | "!="),
                IndexedValueType::Bool => matches!(op, "=" | "!="),
                _ => true,
            };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "invalid expression: operator '{op}' not supported for {} type search \
                     attribute in `{}`",
                    f.ty.name(),
                    f.name
                ))
            }
        };
        if let Some(Token::Op(op)) = self.peek().cloned() {
            self.at += 1;
            allowed(op)?;
            let op = match op {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                _ => Op::Ge,
            };
            let v = self.value(&f)?;
            return Ok(Expr::Cmp(f, op, v));
        }
        if self.keyword("IS") {
            let negated = self.keyword("NOT");
            self.expect_keyword("NULL")?;
            return Ok(Expr::IsNull(f, negated));
        }
        let negated = self.keyword("NOT");
        if is_keyword(self.peek(), "IN") {
            allowed(if negated { "not in" } else { "in" })?;
        } else if is_keyword(self.peek(), "BETWEEN") {
            allowed("between")?;
        } else if is_keyword(self.peek(), "STARTS_WITH") {
            allowed("starts_with")?;
        }
        if self.keyword("IN") {
            if self.peek() != Some(&Token::Open) {
                return Err(format!("expected '(' after IN, found {}", self.found()));
            }
            self.at += 1;
            let mut values = vec![self.value(&f)?];
            while self.peek() == Some(&Token::Comma) {
                self.at += 1;
                values.push(self.value(&f)?);
            }
            if self.peek() != Some(&Token::Close) {
                return Err(format!("expected ')' closing IN, found {}", self.found()));
            }
            self.at += 1;
            return Ok(Expr::In(f, values, negated));
        }
        if self.keyword("BETWEEN") {
            let lo = self.value(&f)?;
            self.expect_keyword("AND")?;
            let hi = self.value(&f)?;
            return Ok(Expr::Between(f, lo, hi, negated));
        }
        if self.keyword("STARTS_WITH") {
            if f.ty != IndexedValueType::Keyword {
                return Err(format!(
                    "invalid expression: operator 'starts_with' not supported for {} type \
                     search attribute in `{}`",
                    f.ty.name(),
                    f.name
                ));
            }
            return match self.value(&f)? {
                Value::Str(p) => Ok(Expr::StartsWith(f, p, negated)),
                _ => Err("STARTS_WITH needs a string".into()),
            };
        }
        Err(format!(
            "expected an operator after {} (=, !=, <, <=, >, >=, IN, BETWEEN, STARTS_WITH, IS \
             NULL), found {}",
            f.name,
            self.found()
        ))
    }
}

/// Parses a list/count query against the namespace's registry of custom search attributes;
/// `Err` is the INVALID_ARGUMENT message.
pub fn parse(query: &str, registry: &BTreeMap<String, i32>) -> Result<Filter, String> {
    let mut p = Parser {
        tokens: tokenize(query)?,
        at: 0,
        registry,
    };
    let mut filter = Filter::default();
    if !p.at_clause_end() {
        filter.expr = Some(p.expr()?);
    }
    if p.keyword("ORDER") {
        p.expect_keyword("BY")?;
        // Results come in the start-time index's order: that one order is accepted.
        let ok = p.keyword("StartTime") && p.keyword("DESC");
        if !ok {
            return Err(
                "operation is not supported: 'ORDER BY' clause (results are always \
                 in ORDER BY StartTime DESC)"
                    .into(),
            );
        }
    } else if p.keyword("GROUP") {
        p.expect_keyword("BY")?;
        if !p.keyword("ExecutionStatus") {
            return Err(format!(
                "operation is not supported: 'GROUP BY' clause is not supported for search \
                 attribute {} (only ExecutionStatus)",
                p.found()
            ));
        }
        filter.group_by_status = true;
    }
    if p.peek().is_some() {
        return Err(format!("unexpected {} in the query", p.found()));
    }
    Ok(filter)
}

fn info(row: &wf::VisibilityRecord) -> WorkflowExecutionInfo {
    let execution_of = |r: &Option<wf::RunKey>| {
        r.as_ref().map(|r| WorkflowExecution {
            workflow_id: r.workflow_id.clone(),
            run_id: r.run_id.clone(),
        })
    };
    WorkflowExecutionInfo {
        execution: Some(WorkflowExecution {
            workflow_id: row.workflow_id.clone(),
            run_id: row.run_id.clone(),
        }),
        r#type: Some(WorkflowType {
            name: row.workflow_type.clone(),
        }),
        start_time: opt_timestamp(row.start_time_ms),
        execution_time: opt_timestamp(row.execution_time_ms.max(row.start_time_ms)),
        close_time: opt_timestamp(row.close_time_ms),
        status: row.status,
        history_length: row.history_length,
        task_queue: row.task_queue.clone(),
        memo: decoded(&row.memo),
        search_attributes: decoded(&row.search_attributes),
        parent_namespace_id: String::new(),
        parent_execution: execution_of(&row.parent),
        root_execution: execution_of(&row.root),
        ..Default::default()
    }
}

/// Matching rows from the start-time index, from `from` on, reading at most `budget` index
/// entries; returns them with the key to resume at (`None`: index exhausted).
fn scan_visibility(
    state: &StateReader,
    namespace: &str,
    filter: &Filter,
    from: &[u8],
    want: usize,
    budget: usize,
) -> Result<(Vec<wf::VisibilityRecord>, Option<Vec<u8>>), Status> {
    let prefix = keys::visibility_by_start_prefix(namespace);
    let entries = state.scan_from(&prefix, from, budget).map_err(to_status)?;
    let exhausted = entries.len() < budget;
    let mut rows = Vec::new();
    for (k, v) in &entries {
        if rows.len() == want {
            return Ok((rows, Some(k.clone())));
        }
        // The index entry holds the row; entries written before it did are read by key.
        let row = if v.is_empty() {
            let Some(run) = keys::parse_visibility_by_start(k) else {
                continue;
            };
            let run = wf::RunKey {
                namespace: namespace.to_string(),
                workflow_id: run.0,
                run_id: run.1,
            };
            wf::read_visibility(state, &run).map_err(|e| Status::internal(e.to_string()))?
        } else {
            Some(
                <wf::VisibilityRecord as prost::Message>::decode(v.as_slice())
                    .map_err(|e| Status::internal(format!("visibility index entry: {e}")))?,
            )
        };
        if let Some(row) = row.filter(|row| filter.matches(row)) {
            rows.push(row);
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

/// One ListWorkflowExecutions page of namespace `ns`, as `state` has applied it.
pub fn list(
    state: &StateReader,
    ns: &wf::NamespaceRecord,
    r: api::ListWorkflowExecutionsRequest,
) -> Result<api::ListWorkflowExecutionsResponse, Status> {
    let filter = parse(&r.query, &ns.search_attributes).map_err(invalid_query)?;
    if filter.group_by_status {
        return Err(invalid_query(
            "operation is not supported: 'GROUP BY' clause".into(),
        ));
    }
    let want = match r.page_size {
        n if n <= 0 => MAX_PAGE,
        n => (n as usize).min(MAX_PAGE),
    };
    let prefix = keys::visibility_by_start_prefix(&ns.name);
    if !r.next_page_token.is_empty() && !r.next_page_token.starts_with(&prefix) {
        return Err(Status::invalid_argument("malformed next_page_token"));
    }
    let from = if r.next_page_token.is_empty() {
        prefix
    } else {
        r.next_page_token
    };
    let (rows, resume) = scan_visibility(state, &ns.name, &filter, &from, want, SCAN_BUDGET)?;
    Ok(api::ListWorkflowExecutionsResponse {
        executions: rows.iter().map(info).collect(),
        next_page_token: resume.unwrap_or_default(),
    })
}

/// CountWorkflowExecutions of namespace `ns`, as `state` has applied it: from apply's status
/// counts when the filter allows (O(1)), else by a scan of the namespace's rows (O(runs)).
pub fn count(
    state: &StateReader,
    ns: &wf::NamespaceRecord,
    r: api::CountWorkflowExecutionsRequest,
) -> Result<api::CountWorkflowExecutionsResponse, Status> {
    let filter = parse(&r.query, &ns.search_attributes).map_err(invalid_query)?;
    if let Some(answer) = count_from_counters(state, &ns.name, &filter)? {
        return Ok(answer);
    }
    let mut from = keys::visibility_by_start_prefix(&ns.name);
    let mut count = 0i64;
    let mut by_status: BTreeMap<i32, i64> = BTreeMap::new();
    loop {
        let (rows, resume) =
            scan_visibility(state, &ns.name, &filter, &from, usize::MAX, SCAN_BUDGET)?;
        count += rows.len() as i64;
        for row in &rows {
            *by_status.entry(row.status).or_default() += 1;
        }
        match resume {
            Some(next) => from = next,
            None => break,
        }
    }
    Ok(count_response(count, filter.group_by_status, by_status))
}

/// Counts without a scan when the filter is at most `ExecutionStatus = '…'` (with or without
/// GROUP BY): apply keeps the namespace's runs counted by status. `None`: the filter needs the
/// scan, or the namespace predates the counts.
fn count_from_counters(
    state: &StateReader,
    namespace: &str,
    filter: &Filter,
) -> Result<Option<api::CountWorkflowExecutionsResponse>, Status> {
    let only: Option<Option<i32>> = match &filter.expr {
        None => Some(None),
        Some(Expr::Cmp(f, Op::Eq, Value::Str(name))) if f.name == "ExecutionStatus" => STATUSES
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| Some(*s as i32)),
        _ => None,
    };
    let Some(only) = only else {
        return Ok(None);
    };
    let Some(counts) =
        wf::read_status_counts(state, namespace).map_err(|e| Status::internal(e.to_string()))?
    else {
        return Ok(None);
    };
    let selected: Vec<(i32, i64)> = (1..counts.len() as i32)
        .filter(|s| only.is_none_or(|o| o == *s))
        .map(|s| (s, counts[s as usize] as i64))
        .collect();
    let count = selected.iter().map(|(_, c)| c).sum();
    let nonzero = selected.into_iter().filter(|(_, c)| *c > 0);
    Ok(Some(count_response(count, filter.group_by_status, nonzero)))
}

impl Frontend {
    pub(crate) fn list_executions(
        &self,
        r: api::ListWorkflowExecutionsRequest,
    ) -> Result<api::ListWorkflowExecutionsResponse, Status> {
        let ns = self.require_namespace(&r.namespace)?;
        list(self.node().state(), &ns, r)
    }

    pub(crate) fn count_executions(
        &self,
        r: api::CountWorkflowExecutionsRequest,
    ) -> Result<api::CountWorkflowExecutionsResponse, Status> {
        let ns = self.require_namespace(&r.namespace)?;
        count(self.node().state(), &ns, r)
    }
}

/// A Count answer; with GROUP BY ExecutionStatus, one group per (status, count) in order.
fn count_response(
    count: i64,
    group_by_status: bool,
    by_status: impl IntoIterator<Item = (i32, i64)>,
) -> api::CountWorkflowExecutionsResponse {
    let groups = if group_by_status {
        by_status
            .into_iter()
            .map(
                |(status, count)| api::count_workflow_executions_response::AggregationGroup {
                    group_values: vec![keyword_payload(status_name(status))],
                    count,
                },
            )
            .collect()
    } else {
        Vec::new()
    };
    api::CountWorkflowExecutionsResponse { count, groups }
}

/// A JSON string payload typed Keyword, as Temporal returns group values.
fn keyword_payload(s: &str) -> Payload {
    Payload {
        metadata: [
            ("encoding".to_string(), b"json/plain".to_vec()),
            ("type".to_string(), b"Keyword".to_vec()),
        ]
        .into(),
        data: serde_json::to_vec(s).unwrap_or_default(),
        ..Default::default()
    }
}

fn invalid_query(message: String) -> Status {
    Status::invalid_argument(format!("invalid query: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn row(wf: &str, ty: &str, status: wf::RunStatus) -> wf::VisibilityRecord {
        wf::VisibilityRecord {
            workflow_id: wf.into(),
            run_id: "r".into(),
            workflow_type: ty.into(),
            task_queue: "tq".into(),
            status: status as i32,
            start_time_ms: 1_700_000_000_000,
            ..Default::default()
        }
    }

    fn registry() -> BTreeMap<String, i32> {
        [
            ("Customer", IndexedValueType::Keyword),
            ("Amount", IndexedValueType::Int),
            ("Score", IndexedValueType::Double),
            ("Vip", IndexedValueType::Bool),
            ("Due", IndexedValueType::Datetime),
            ("Tags", IndexedValueType::KeywordList),
            ("Notes", IndexedValueType::Text),
        ]
        .into_iter()
        .map(|(k, t)| (k.to_string(), t as i32))
        .collect()
    }

    fn with_attributes(
        mut r: wf::VisibilityRecord,
        attrs: &[(&str, &str)],
    ) -> wf::VisibilityRecord {
        let map = search::PayloadMap {
            fields: attrs
                .iter()
                .map(|(k, json)| {
                    let p = search::Payload {
                        metadata: [("encoding".to_string(), b"json/plain".to_vec())].into(),
                        data: json.as_bytes().to_vec(),
                    };
                    (k.to_string(), p.encode_to_vec())
                })
                .collect(),
        };
        r.search_attributes = map.encode_to_vec();
        r
    }

    fn check(q: &str, r: &wf::VisibilityRecord) -> bool {
        parse(q, &registry())
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .matches(r)
    }

    #[test]
    fn system_fields_filter_as_before() {
        let reg = registry();
        assert_eq!(parse("", &reg).unwrap(), Filter::default());
        assert_eq!(
            parse("  order by StartTime desc ", &reg).unwrap(),
            Filter::default()
        );
        let q = "WorkflowType = 'Order' and ExecutionStatus=\"Running\" AND TaskQueue = 'tq' \
                 ORDER BY StartTime DESC";
        assert!(check(q, &row("a", "Order", wf::RunStatus::Running)));
        assert!(!check(q, &row("a", "Order", wf::RunStatus::Completed)));
        assert!(!check(q, &row("a", "Other", wf::RunStatus::Running)));
        assert!(check(
            "WorkflowId = 'a b'",
            &row("a b", "x", wf::RunStatus::Failed)
        ));
        assert!(!check(
            "WorkflowId = 'a b'",
            &row("a", "x", wf::RunStatus::Failed)
        ));
        let r = row("a", "x", wf::RunStatus::Failed);
        assert!(check("WorkflowId != 'b' AND WorkflowId <> 'c'", &r));
        assert!(check(
            "WorkflowId = 'b' OR (WorkflowType = 'x' AND RunId = 'r')",
            &r
        ));
        assert!(!check("WorkflowId = 'b' OR WorkflowType = 'y'", &r));
        assert!(check("ExecutionStatus IN ('Failed', 'TimedOut')", &r));
        assert!(check("ExecutionStatus NOT IN ('Running')", &r));
        assert!(check("WorkflowId STARTS_WITH 'a'", &r));
        assert!(check("StartTime > '2023-01-01T00:00:00Z'", &r));
        assert!(check(
            "StartTime BETWEEN '2023-11-14T00:00:00Z' AND '2023-11-15T00:00:00Z'",
            &r
        ));
        assert!(!check("StartTime < '2023-01-01T00:00:00+01:00'", &r));
        assert!(check("CloseTime IS NULL AND ParentWorkflowId IS NULL", &r));
        assert!(!check("CloseTime IS NOT NULL", &r));
    }

    #[test]
    fn custom_attributes_compare_by_their_type() {
        let r = with_attributes(
            row("a", "x", wf::RunStatus::Running),
            &[
                ("Customer", "\"acme\""),
                ("Amount", "250"),
                ("Score", "0.5"),
                ("Vip", "true"),
                ("Due", "\"2030-01-01T00:00:00Z\""),
                ("Tags", "[\"red\", \"blue\"]"),
                ("Notes", "\"Shipped by Air Freight\""),
            ],
        );
        for q in [
            "Customer = 'acme'",
            "`Customer` = 'acme'",
            "Amount > 100 AND Amount <= 250",
            "Amount BETWEEN 200 AND 300",
            "Amount IN (1, 250)",
            "Score < 1",
            "Score >= 0.5",
            "Vip = true",
            "Due > '2029-12-31T23:59:59Z'",
            "Tags = 'blue'",
            "Tags IN ('green', 'red')",
            "Notes = 'air shipped'",
            "Customer STARTS_WITH 'ac'",
            "Customer IS NOT NULL",
        ] {
            assert!(check(q, &r), "{q} should match");
        }
        for q in [
            "Customer = 'other'",
            "Amount > 250",
            "Amount NOT BETWEEN 200 AND 300",
            "Vip = false",
            "Tags = 'green'",
            "Notes = 'sea freight'",
            "Customer NOT STARTS_WITH 'ac'",
        ] {
            assert!(!check(q, &r), "{q} should not match");
        }
        // A run without the attribute matches only IS NULL (as in SQL).
        let bare = row("b", "x", wf::RunStatus::Running);
        assert!(check("Customer IS NULL", &bare));
        assert!(!check("Customer != 'acme'", &bare));
        assert!(!check("Amount < 1000", &bare));
    }

    #[test]
    fn group_by_status_parses_for_counts() {
        let f = parse("WorkflowType = 'x' GROUP BY ExecutionStatus", &registry()).unwrap();
        assert!(f.group_by_status);
        assert_eq!(keyword_payload("Running").data, b"\"Running\"".to_vec());
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for (q, why) in [
            (
                "CustomField = 'x'",
                "column name 'CustomField' is not a valid search attribute",
            ),
            ("ExecutionDuration > 5", "not indexed by this server"),
            ("Tags > 'a'", "operator '>' not supported for KeywordList"),
            ("Notes IN ('a')", "operator 'in' not supported for Text"),
            (
                "Vip BETWEEN true AND false",
                "operator 'between' not supported for Bool",
            ),
            ("WorkflowId = x", "invalid value"),
            ("Amount = 'ten'", "invalid value"),
            (
                "StartTime > 'yesterday'",
                "unable to parse datetime 'yesterday'",
            ),
            (
                "ExecutionStatus = 'Sleeping'",
                "invalid ExecutionStatus value 'Sleeping'",
            ),
            ("WorkflowId = 'x", "unterminated"),
            ("ORDER BY StartTime ASC", "'ORDER BY' clause"),
            ("ORDER BY Amount DESC", "'ORDER BY' clause"),
            (
                "GROUP BY WorkflowType",
                "'GROUP BY' clause is not supported for search",
            ),
            ("WorkflowId LIKE 'x%'", "expected an operator"),
            ("(WorkflowId = 'x'", "expected ')'"),
            ("WorkflowId = 'x' WorkflowType = 'y'", "unexpected"),
            (
                "Amount STARTS_WITH '1'",
                "'starts_with' not supported for Int",
            ),
            ("WorkflowId = 'x' AND", "expected a search attribute name"),
            ("WorkflowId ~ 'x'", "unexpected character"),
        ] {
            let err = parse(q, &registry()).expect_err(q);
            assert!(err.contains(why), "{q}: {err}");
        }
    }
}
