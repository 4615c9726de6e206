//! QueryWorkflow and RespondQueryTaskCompleted.
//!
//! A query is proposed as `EnqueueQuery`; any node's workflow pollers take it (see
//! `tasks.rs`) as a legacy query task, or it goes out with the run's next workflow task (that
//! task's `queries`, answered in RespondWorkflowTaskCompleted's `query_results`); the worker's
//! answer is proposed as `AnswerQuery` (or with the completion), and the node serving the
//! query waits until its applied state holds the answer, then proposes `ForgetQuery`. A query
//! nobody answers gets DEADLINE_EXCEEDED before the caller's deadline and is forgotten too
//! (and expires on its own should this node die first).

use std::time::{Duration, Instant};

use keel_engine::command::Kind;
use keel_engine::workflow as wf;
use keel_proto::temporalio_protos::temporal::api::common::v1::Payloads;
use keel_proto::temporalio_protos::temporal::api::enums::v1::{
    QueryRejectCondition, QueryResultType, WorkflowExecutionStatus,
};
use keel_proto::temporalio_protos::temporal::api::failure::v1::Failure;
use keel_proto::temporalio_protos::temporal::api::query::v1::QueryRejected;
use keel_proto::temporalio_protos::temporal::api::workflowservice::v1 as api;
use tonic::Status;

use crate::convert::{decoded, encoded};
use crate::service::{new_uuid, run_key, run_outcome, Frontend};
use crate::status::query_failed;
use crate::wake::Watch;

/// Extra time a query record outlives its caller's wait, so a slow answer is not refused
/// while the caller is still waiting.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// Whether `condition` rejects a query on a run in `status` (open runs never are).
fn rejects(condition: i32, status: i32) -> bool {
    if status == WorkflowExecutionStatus::Running as i32 {
        return false;
    }
    match QueryRejectCondition::try_from(condition) {
        Ok(QueryRejectCondition::NotOpen) => status != WorkflowExecutionStatus::Running as i32,
        Ok(QueryRejectCondition::NotCompletedCleanly) => {
            status != WorkflowExecutionStatus::Completed as i32
        }
        _ => false,
    }
}

impl Frontend {
    pub(crate) async fn run_query(
        &self,
        r: api::QueryWorkflowRequest,
        budget: Duration,
    ) -> Result<api::QueryWorkflowResponse, Status> {
        let deadline = Instant::now() + budget;
        self.require_namespace(&r.namespace)?;
        let run = run_key(&r.namespace, &r.execution)?;
        let query = r
            .query
            .ok_or_else(|| Status::invalid_argument("query is required"))?;
        if query.query_type.is_empty() {
            return Err(Status::invalid_argument("query_type is required"));
        }
        let ms = self.linearized_run(&run).await?;
        if rejects(r.query_reject_condition, ms.status) {
            return Ok(api::QueryWorkflowResponse {
                query_rejected: Some(QueryRejected { status: ms.status }),
                ..Default::default()
            });
        }
        let query_id = new_uuid();
        let (outcome, log_index) = self
            .propose_at(Kind::EnqueueQuery(wf::EnqueueQuery {
                run: ms.run.clone(),
                query_id: query_id.clone(),
                query_type: query.query_type,
                query_args: encoded(&query.query_args),
                header: encoded(&query.header),
                timeout_ms: (budget + EXPIRY_MARGIN).as_millis() as u64,
            }))
            .await?;
        run_outcome(outcome)?;
        // The enqueue may have committed through the leader: wait until it is applied here.
        self.node()
            .wait_applied_beyond(log_index.saturating_sub(1), budget)
            .await;
        let answer = self.await_answer(&r.namespace, &query_id, deadline).await;
        // Forget the query whatever happened; should this fail, its expiry removes it.
        let _ = self
            .propose(Kind::ForgetQuery(wf::ForgetQuery {
                namespace: r.namespace.clone(),
                query_id,
            }))
            .await;
        let record = answer?;
        if record.result_type == QueryResultType::Answered as i32 {
            return Ok(api::QueryWorkflowResponse {
                query_result: decoded::<Payloads>(&record.result),
                ..Default::default()
            });
        }
        let failure = decoded::<Failure>(&record.failure);
        Err(query_failed(record.error_message, failure))
    }

    /// Waits until this node has applied the query's answer.
    async fn await_answer(
        &self,
        namespace: &str,
        query_id: &str,
        deadline: Instant,
    ) -> Result<wf::QueryRecord, Status> {
        let watch = Watch::new(self.node(), &[wf::watch_query(namespace, query_id)]);
        loop {
            let armed = watch.arm();
            let record = wf::read_query(self.node().state(), namespace, query_id)
                .map_err(|e| Status::internal(e.to_string()))?;
            match record {
                Some(r) if r.state == wf::QueryState::Answered as i32 => return Ok(r),
                Some(_) => {}
                // Not applied here within the wait, or expired: either way worth a retry.
                None => {
                    return Err(Status::unavailable(
                        "query not found on this node (not yet applied, or expired); retry",
                    ))
                }
            }
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(
                    "query timed out: no worker answered it in time",
                ));
            }
            armed.wait(deadline).await;
        }
    }

    pub(crate) async fn respond_query_task(
        &self,
        r: api::RespondQueryTaskCompletedRequest,
    ) -> Result<api::RespondQueryTaskCompletedResponse, Status> {
        let token = crate::tasks::decode_token(&r.task_token)?;
        if token.kind != wf::TaskKind::Query as i32 {
            return Err(Status::invalid_argument("not a query task token"));
        }
        let result_type = match QueryResultType::try_from(r.completed_type) {
            Ok(t @ (QueryResultType::Answered | QueryResultType::Failed)) => t as i32,
            _ => return Err(Status::invalid_argument("completed_type is required")),
        };
        let outcome = self
            .propose(Kind::AnswerQuery(wf::AnswerQuery {
                token: Some(token),
                result_type,
                result: encoded(&r.query_result),
                error_message: r.error_message,
                failure: encoded(&r.failure),
            }))
            .await?;
        crate::tasks::accepted(outcome)?;
        Ok(api::RespondQueryTaskCompletedResponse::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_conditions_follow_temporal() {
        let running = WorkflowExecutionStatus::Running as i32;
        let completed = WorkflowExecutionStatus::Completed as i32;
        let failed = WorkflowExecutionStatus::Failed as i32;
        let none = QueryRejectCondition::None as i32;
        let not_open = QueryRejectCondition::NotOpen as i32;
        let not_clean = QueryRejectCondition::NotCompletedCleanly as i32;
        assert!(!rejects(none, failed));
        assert!(!rejects(not_open, running));
        assert!(rejects(not_open, completed));
        assert!(!rejects(not_clean, completed));
        assert!(rejects(not_clean, failed));
        assert!(!rejects(not_clean, running), "open runs are always queried");
    }
}
