//! UpdateWorkflowExecution and PollWorkflowExecutionUpdate, and the update protocol messages
//! of workflow tasks (engine side: `keel_engine::workflow::update`).
//!
//! An update is admitted by a replicated `AdmitUpdate`; the node serving the call then waits
//! until its applied state shows the stage the caller asked for (ACCEPTED or COMPLETED) or
//! Temporal's 20 s soft timeout passes, when it answers with the stage reached so far (the
//! SDKs then poll). Any node can serve the wait and the poll: the update's record is
//! replicated state.

use std::time::{Duration, Instant};

use keel_engine::command::Kind;
use keel_engine::workflow as wf;
use keel_proto::prost_wkt_types::Any;
use keel_proto::temporalio_protos::temporal::api::common::v1::WorkflowExecution;
use keel_proto::temporalio_protos::temporal::api::enums::v1::UpdateWorkflowExecutionLifecycleStage as Stage;
use keel_proto::temporalio_protos::temporal::api::failure::v1::{
    failure::FailureInfo, ApplicationFailureInfo, Failure,
};
use keel_proto::temporalio_protos::temporal::api::protocol::v1::{
    message, Message as ProtocolMessage,
};
use keel_proto::temporalio_protos::temporal::api::update::v1 as upd;
use keel_proto::temporalio_protos::temporal::api::workflowservice::v1 as api;
use prost::Message;
use tonic::Status;

use crate::convert::encoded;
use crate::service::{new_uuid, run_key, Frontend};
use crate::wake::Watch;

/// Temporal's `history.longPollExpirationInterval`: the longest an update call waits for
/// its stage before answering with the stage reached.
const SOFT_TIMEOUT: Duration = Duration::from_secs(20);

const REQUEST_TYPE: &str = "type.googleapis.com/temporal.api.update.v1.Request";
const UPDATE_PROTOCOL: &str = "temporal.api.update.v1";

/// The protocol messages of a workflow task carrying `updates`, sequenced after the event
/// before its WorkflowTaskStarted.
pub(crate) fn task_messages(
    updates: &[wf::UpdateDelivery],
    started_event_id: i64,
) -> Vec<ProtocolMessage> {
    updates
        .iter()
        .map(|u| ProtocolMessage {
            id: format!("{}/request", u.update_id),
            protocol_instance_id: u.update_id.clone(),
            body: Some(Any {
                type_url: REQUEST_TYPE.into(),
                value: u.request.clone(),
            }),
            sequencing_id: Some(message::SequencingId::EventId(started_event_id - 1)),
        })
        .collect()
}

fn body_type(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
}

/// A completion's messages in the engine's terms. A message of another protocol or with no
/// body is refused.
pub(crate) fn convert_messages(
    messages: &[ProtocolMessage],
) -> Result<Vec<wf::UpdateMessage>, Status> {
    let bad =
        |m: &ProtocolMessage, e: String| Status::invalid_argument(format!("message {}: {e}", m.id));
    messages
        .iter()
        .map(|m| {
            let any = m
                .body
                .as_ref()
                .ok_or_else(|| bad(m, "nil message body".into()))?;
            let name = body_type(any);
            let protocol = name.rsplit_once('.').map_or("", |(p, _)| p);
            if protocol != UPDATE_PROTOCOL {
                return Err(bad(m, format!("unsupported protocol type {protocol}")));
            }
            let body = match name {
                "temporal.api.update.v1.Acceptance" => {
                    let a = upd::Acceptance::decode(any.value.as_slice())
                        .map_err(|e| bad(m, e.to_string()))?;
                    wf::update_message::Body::Accept(wf::UpdateAcceptance {
                        accepted_request_sequencing_event_id: a
                            .accepted_request_sequencing_event_id,
                    })
                }
                "temporal.api.update.v1.Rejection" => {
                    let r = upd::Rejection::decode(any.value.as_slice())
                        .map_err(|e| bad(m, e.to_string()))?;
                    wf::update_message::Body::Reject(wf::UpdateRejection {
                        outcome: upd::Outcome {
                            value: r.failure.map(upd::outcome::Value::Failure),
                        }
                        .encode_to_vec(),
                    })
                }
                "temporal.api.update.v1.Response" => {
                    let r = upd::Response::decode(any.value.as_slice())
                        .map_err(|e| bad(m, e.to_string()))?;
                    let meta = r.meta.unwrap_or_default();
                    if r.outcome.is_none() {
                        return Err(bad(
                            m,
                            "invalid *update.Response: outcome is not set".into(),
                        ));
                    }
                    if meta.update_id != m.protocol_instance_id {
                        return Err(bad(
                            m,
                            format!(
                                "invalid *update.Response: meta.update_id != {}",
                                m.protocol_instance_id
                            ),
                        ));
                    }
                    wf::update_message::Body::Respond(wf::UpdateResponse {
                        outcome: encoded(&r.outcome),
                        identity: meta.identity,
                    })
                }
                other => return Err(bad(m, format!("unknown update message type {other}"))),
            };
            Ok(wf::UpdateMessage {
                message_id: m.id.clone(),
                update_id: m.protocol_instance_id.clone(),
                body: Some(body),
            })
        })
        .collect()
}

fn server_failure(message: &str, failure_type: &str) -> Failure {
    Failure {
        message: message.into(),
        source: "Server".into(),
        failure_info: Some(FailureInfo::ApplicationFailureInfo(
            ApplicationFailureInfo {
                r#type: failure_type.into(),
                non_retryable: true,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// The stage an update record has reached and its outcome if it has one; an aborted update
/// is its waiters' error.
fn stage_of(rec: &wf::UpdateRecord) -> Result<(Stage, Option<upd::Outcome>), Status> {
    use wf::UpdateState as S;
    let outcome = || -> Option<upd::Outcome> {
        match wf::UpdateServerOutcome::try_from(rec.server_outcome) {
            Ok(wf::UpdateServerOutcome::UnprocessedUpdate) => Some(upd::Outcome {
                value: Some(upd::outcome::Value::Failure(server_failure(
                    "Workflow Update is rejected because it wasn't processed by worker. Probably, Workflow Update is not supported by the worker.",
                    "UnprocessedUpdate",
                ))),
            }),
            Ok(wf::UpdateServerOutcome::AcceptedUpdateCompletedWorkflow) => Some(upd::Outcome {
                value: Some(upd::outcome::Value::Failure(server_failure(
                    "Workflow Update failed because the Workflow completed before the Update completed.",
                    "AcceptedUpdateCompletedWorkflow",
                ))),
            }),
            _ => upd::Outcome::decode(rec.outcome.as_slice()).ok(),
        }
    };
    Ok(match S::try_from(rec.state).unwrap_or(S::Unspecified) {
        S::Admitted | S::Sent | S::Unspecified => (Stage::Admitted, None),
        S::Accepted => (Stage::Accepted, None),
        S::Completed | S::Rejected => (Stage::Completed, outcome()),
        S::Aborted => {
            return Err(
                match wf::UpdateAbort::try_from(rec.abort).unwrap_or(wf::UpdateAbort::None) {
                    wf::UpdateAbort::Continuing => crate::status::resource_exhausted(
                        crate::status::Cause::BusyWorkflow,
                        "workflow operation can not be applied because workflow is closing".into(),
                    ),
                    _ => crate::status::run_not_found(
                        "workflow update was aborted by closing workflow".into(),
                    ),
                },
            )
        }
    })
}

impl Frontend {
    pub(crate) async fn update_workflow(
        &self,
        r: api::UpdateWorkflowExecutionRequest,
        budget: Duration,
    ) -> Result<api::UpdateWorkflowExecutionResponse, Status> {
        self.require_namespace(&r.namespace)?;
        let run = run_key(&r.namespace, &r.workflow_execution)?;
        let p = prepare(r.request, r.wait_policy)?;
        let deadline = Instant::now() + budget.min(SOFT_TIMEOUT);
        let (outcome, log_index) = self
            .propose_at(Kind::AdmitUpdate(wf::AdmitUpdate {
                run: Some(run),
                first_execution_run_id: r.first_execution_run_id,
                update_id: p.update_id.clone(),
                request: p.request,
            }))
            .await?;
        let rec = admitted(outcome)?;
        self.answer(rec, log_index, p.wanted, deadline).await
    }

    /// Waits for the admitted update `rec` (admitted by the entry at `log_index`) to reach
    /// `wanted`, and answers as UpdateWorkflowExecution does.
    async fn answer(
        &self,
        rec: wf::UpdateRecord,
        log_index: u64,
        wanted: Stage,
        deadline: Instant,
    ) -> Result<api::UpdateWorkflowExecutionResponse, Status> {
        self.node()
            .wait_applied_beyond(log_index.saturating_sub(1), Duration::from_secs(5))
            .await;
        let run = rec.run.clone().expect("an update names its run");
        let (stage, outcome) = self
            .await_stage(&run, &rec.update_id, wanted, deadline)
            .await?;
        Ok(api::UpdateWorkflowExecutionResponse {
            update_ref: Some(update_ref(&run, &rec.update_id)),
            outcome,
            stage: stage as i32,
            ..Default::default()
        })
    }

    /// ExecuteMultiOperation: exactly [start, update] on one workflow id (update-with-start).
    pub(crate) async fn update_with_start(
        &self,
        r: api::ExecuteMultiOperationRequest,
        budget: Duration,
    ) -> Result<api::ExecuteMultiOperationResponse, Status> {
        use api::execute_multi_operation_request::operation::Operation as Op;
        use api::execute_multi_operation_response::{response::Response as Reply, Response};
        self.require_namespace(&r.namespace)?;
        let ops: Vec<Option<Op>> = r.operations.into_iter().map(|o| o.operation).collect();
        let (start, update) = match <[Option<Op>; 2]>::try_from(ops) {
            Ok([Some(Op::StartWorkflow(s)), Some(Op::UpdateWorkflow(u))]) => (s, u),
            _ => {
                return Err(Status::invalid_argument(
                    "Operations have to be exactly [Start, Update].",
                ))
            }
        };
        let start_checked = check_start_op(&r.namespace, &start);
        let update_checked = check_update_op(&r.namespace, &start, &update);
        let (start_cmd, p) = match (start_checked, update_checked) {
            (Ok(s), Ok(p)) => (s, p),
            (s, p) => return Err(multi_op_failure(s.err().map(|e| *e), p.err().map(|e| *e))),
        };
        let deadline = Instant::now() + budget.min(SOFT_TIMEOUT);
        let (outcome, log_index) = self
            .propose_at(Kind::StartWithUpdate(wf::StartWithUpdate {
                start: Some(start_cmd),
                update: Some(wf::AdmitUpdate {
                    run: None,
                    first_execution_run_id: String::new(),
                    update_id: p.update_id.clone(),
                    request: p.request,
                }),
            }))
            .await?;
        use wf::workflow_outcome::Kind as O;
        let both = match outcome {
            O::StartedWithUpdate(b) => b,
            O::AlreadyStarted(a) => {
                return Err(multi_op_failure(
                    Some(crate::status::already_started(a.start_request_id, a.run_id)),
                    None,
                ))
            }
            O::InvalidArgument(m) => {
                return Err(multi_op_failure(Some(Status::invalid_argument(m)), None))
            }
            O::NotFound(m) => {
                return Err(multi_op_failure(
                    Some(crate::status::run_not_found(m)),
                    None,
                ))
            }
            other => return Err(Status::internal(format!("unexpected outcome {other:?}"))),
        };
        let started = both.started.unwrap_or_default();
        let run_status = both.run_status;
        let admission = both
            .update
            .and_then(|o| o.kind)
            .ok_or_else(|| Status::internal("update-with-start without an update outcome"))?;
        let rec = admitted(admission).map_err(|e| multi_op_failure(None, Some(e)))?;
        let updated = self
            .answer(rec, log_index, p.wanted, deadline)
            .await
            .map_err(|e| multi_op_failure(None, Some(e)))?;
        Ok(api::ExecuteMultiOperationResponse {
            responses: vec![
                Response {
                    response: Some(Reply::StartWorkflow(api::StartWorkflowExecutionResponse {
                        run_id: started.run_id,
                        started: started.started,
                        // Keel's run statuses use Temporal's numbering.
                        status: run_status,
                        ..Default::default()
                    })),
                },
                Response {
                    response: Some(Reply::UpdateWorkflow(updated)),
                },
            ],
        })
    }

    pub(crate) async fn poll_update(
        &self,
        r: api::PollWorkflowExecutionUpdateRequest,
        budget: Duration,
    ) -> Result<api::PollWorkflowExecutionUpdateResponse, Status> {
        self.require_namespace(&r.namespace)?;
        let asked = r
            .update_ref
            .ok_or_else(|| Status::invalid_argument("UpdateRef is not set on request."))?;
        let run = run_key(&r.namespace, &asked.workflow_execution)?;
        let ms = self.linearized_run(&run).await?;
        let run = ms.run.expect("named run");
        let update_id = asked.update_id;
        let not_found = || Status::not_found(format!("update {update_id:?} not found"));
        let rec = wf::read_update(self.node().state(), &run, &update_id)
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(not_found)?;
        if rec.state == wf::UpdateState::Rejected as i32 {
            // Temporal keeps no rejected update: polling one finds nothing.
            return Err(not_found());
        }
        let wanted = Stage::try_from(r.wait_policy.map_or(0, |w| w.lifecycle_stage))
            .unwrap_or(Stage::Unspecified);
        let deadline = Instant::now() + budget.min(SOFT_TIMEOUT);
        let (stage, outcome) = self.await_stage(&run, &update_id, wanted, deadline).await?;
        Ok(api::PollWorkflowExecutionUpdateResponse {
            outcome,
            stage: stage as i32,
            update_ref: Some(update_ref(&run, &update_id)),
        })
    }

    /// Waits until this node's applied state shows the update at `wanted` (a stage up to
    /// ADMITTED: no wait) or `deadline` passes; answers with the stage reached.
    async fn await_stage(
        &self,
        run: &wf::RunKey,
        update_id: &str,
        wanted: Stage,
        deadline: Instant,
    ) -> Result<(Stage, Option<upd::Outcome>), Status> {
        let watch = Watch::new(self.node(), &[wf::update_key(run, update_id)]);
        loop {
            let armed = watch.arm();
            let rec = wf::read_update(self.node().state(), run, update_id)
                .map_err(|e| Status::internal(e.to_string()))?
                .ok_or_else(|| Status::unavailable("update not yet applied on this node; retry"))?;
            let (stage, outcome) = stage_of(&rec)?;
            if stage as i32 >= wanted as i32 || Instant::now() >= deadline {
                return Ok((stage, outcome));
            }
            armed.wait(deadline).await;
        }
    }
}

/// An update request checked as Temporal's frontend does, its id filled in if empty.
struct Prepared {
    update_id: String,
    wanted: Stage,
    /// Encoded `update.v1.Request`.
    request: Vec<u8>,
}

fn prepare(
    request: Option<upd::Request>,
    wait_policy: Option<upd::WaitPolicy>,
) -> Result<Prepared, Status> {
    let mut request =
        request.ok_or_else(|| Status::invalid_argument("Update request is not set on request."))?;
    let mut meta = request
        .meta
        .take()
        .ok_or_else(|| Status::invalid_argument("Update meta is not set on request."))?;
    if meta.update_id.len() > crate::validate::MAX_ID_LENGTH {
        return Err(Status::invalid_argument("UpdateId length exceeds limit."));
    }
    if meta.update_id.is_empty() {
        meta.update_id = new_uuid();
    }
    let input = request
        .input
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("Update input is not set on request."))?;
    if input.name.is_empty() {
        return Err(Status::invalid_argument(
            "Update name is not set on request.",
        ));
    }
    crate::validate::blob(&input.args)?;
    if !request.completion_callbacks.is_empty() {
        return Err(Status::invalid_argument(
            "request.completion_callbacks is not supported by this server",
        ));
    }
    let wanted = match Stage::try_from(wait_policy.map_or(0, |w| w.lifecycle_stage)) {
        Ok(Stage::Unspecified) | Err(_) => Stage::Completed,
        Ok(Stage::Admitted) => {
            return Err(Status::permission_denied(
                "UpdateWorkflowExecution issued asynchronously and waiting on update admitted is not supported.",
            ))
        }
        Ok(s) => s,
    };
    let update_id = meta.update_id.clone();
    request.meta = Some(meta);
    Ok(Prepared {
        update_id,
        wanted,
        request: request.encode_to_vec(),
    })
}

/// The start of an update-with-start, checked: a plain start's checks and Temporal's extra
/// refusals.
fn check_start_op(
    namespace: &str,
    s: &api::StartWorkflowExecutionRequest,
) -> Result<wf::StartWorkflow, Box<Status>> {
    let refuse = |m: &str| Err(Box::new(Status::invalid_argument(m)));
    if !s.namespace.is_empty() && s.namespace != namespace {
        return refuse("Operation namespace did not match request's namespace.");
    }
    if !s.cron_schedule.is_empty() {
        return refuse("CronSchedule is not allowed.");
    }
    if s.request_eager_execution {
        return refuse("RequestEagerExecution is not supported.");
    }
    if s.workflow_start_delay
        .as_ref()
        .is_some_and(|d| d.seconds != 0 || d.nanos != 0)
    {
        return refuse("WorkflowStartDelay is not supported.");
    }
    let mut s = s.clone();
    s.namespace = namespace.to_string();
    crate::service::start_command(&s).map_err(Box::new)
}

fn check_update_op(
    namespace: &str,
    start: &api::StartWorkflowExecutionRequest,
    u: &api::UpdateWorkflowExecutionRequest,
) -> Result<Prepared, Box<Status>> {
    let refuse = |m: &str| Err(Box::new(Status::invalid_argument(m)));
    if !u.namespace.is_empty() && u.namespace != namespace {
        return refuse("Operation namespace did not match request's namespace.");
    }
    let execution = u.workflow_execution.clone().unwrap_or_default();
    if execution.workflow_id != start.workflow_id {
        return refuse("WorkflowId is not consistent with previous operation(s).");
    }
    if !execution.run_id.is_empty() {
        return refuse("RunId is not allowed.");
    }
    if !u.first_execution_run_id.is_empty() {
        return refuse("FirstExecutionRunId is not allowed.");
    }
    prepare(u.request.clone(), u.wait_policy).map_err(Box::new)
}

/// Temporal's error for a failed update-with-start: `Update-with-Start could not be
/// executed.` with one status per operation; an operation without an error of its own was
/// aborted.
fn multi_op_failure(start: Option<Status>, update: Option<Status>) -> Status {
    use keel_proto::temporalio_protos::google::rpc::Status as RpcStatus;
    use keel_proto::temporalio_protos::temporal::api::errordetails::v1::{
        multi_operation_execution_failure::OperationStatus, MultiOperationExecutionFailure,
    };
    let status_of = |s: &Option<Status>| -> OperationStatus {
        match s {
            Some(s) => {
                let details = RpcStatus::decode(s.details())
                    .map(|d| d.details)
                    .unwrap_or_default();
                OperationStatus {
                    code: s.code() as i32,
                    message: s.message().to_string(),
                    details,
                }
            }
            None => OperationStatus {
                code: tonic::Code::Aborted as i32,
                message: "Operation was aborted.".into(),
                details: vec![Any {
                    type_url:
                        "type.googleapis.com/temporal.api.failure.v1.MultiOperationExecutionAborted"
                            .into(),
                    value: vec![],
                }],
            },
        }
    };
    let code = start
        .as_ref()
        .or(update.as_ref())
        .map_or(tonic::Code::Aborted, |s| s.code());
    let message = "Update-with-Start could not be executed.".to_string();
    let detail = MultiOperationExecutionFailure {
        statuses: vec![status_of(&start), status_of(&update)],
    };
    let rpc = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![Any {
            type_url:
                "type.googleapis.com/temporal.api.errordetails.v1.MultiOperationExecutionFailure"
                    .into(),
            value: detail.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, rpc.encode_to_vec().into())
}

fn update_ref(run: &wf::RunKey, update_id: &str) -> upd::UpdateRef {
    upd::UpdateRef {
        workflow_execution: Some(WorkflowExecution {
            workflow_id: run.workflow_id.clone(),
            run_id: run.run_id.clone(),
        }),
        update_id: update_id.to_string(),
    }
}

/// The admitted (or found) update, or the refusal as Temporal words it.
fn admitted(o: wf::workflow_outcome::Kind) -> Result<wf::UpdateRecord, Status> {
    use wf::workflow_outcome::Kind as O;
    match o {
        O::Update(rec) => Ok(rec),
        O::NotFound(m) => Err(crate::status::run_not_found(m)),
        O::InvalidArgument(m) => Err(Status::invalid_argument(m)),
        O::Refused(r) => Err(match wf::RefusalCode::try_from(r.code) {
            Ok(wf::RefusalCode::ConcurrentLimit) => {
                crate::status::resource_exhausted(crate::status::Cause::ConcurrentLimit, r.message)
            }
            Ok(wf::RefusalCode::BusyWorkflow) => {
                crate::status::resource_exhausted(crate::status::Cause::BusyWorkflow, r.message)
            }
            Ok(wf::RefusalCode::WorkflowNotReady) => crate::status::workflow_not_ready(r.message),
            _ => Status::failed_precondition(r.message),
        }),
        other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::temporalio_protos::google::rpc::Status as RpcStatus;
    use keel_proto::temporalio_protos::temporal::api::errordetails::v1::MultiOperationExecutionFailure;

    fn start(id: &str) -> api::StartWorkflowExecutionRequest {
        api::StartWorkflowExecutionRequest {
            workflow_id: id.into(),
            workflow_type: Some(Default::default()),
            task_queue: Some(Default::default()),
            ..Default::default()
        }
    }

    fn update(id: &str) -> api::UpdateWorkflowExecutionRequest {
        api::UpdateWorkflowExecutionRequest {
            workflow_execution: Some(WorkflowExecution {
                workflow_id: id.into(),
                run_id: String::new(),
            }),
            request: Some(upd::Request {
                meta: Some(upd::Meta::default()),
                input: Some(upd::Input {
                    name: "add".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn update_with_start_operations_are_checked_with_temporals_messages() {
        let msg = |r: Result<Prepared, Box<Status>>| r.err().map(|e| e.message().to_string());
        assert_eq!(
            msg(check_update_op("ns", &start("a"), &update("b"))).as_deref(),
            Some("WorkflowId is not consistent with previous operation(s).")
        );
        let mut u = update("a");
        u.first_execution_run_id = "r".into();
        assert_eq!(
            msg(check_update_op("ns", &start("a"), &u)).as_deref(),
            Some("FirstExecutionRunId is not allowed.")
        );
        let p = check_update_op("ns", &start("a"), &update("a"))
            .ok()
            .unwrap();
        assert!(!p.update_id.is_empty(), "an empty update id is filled in");
        assert_eq!(p.wanted, Stage::Completed);
        let mut s = start("a");
        s.cron_schedule = "* * * * *".into();
        assert_eq!(
            check_start_op("ns", &s).err().unwrap().message(),
            "CronSchedule is not allowed."
        );
    }

    #[test]
    fn a_failed_update_with_start_names_each_operations_status() {
        let s = multi_op_failure(Some(Status::already_exists("running")), None);
        assert_eq!(s.code(), tonic::Code::AlreadyExists);
        assert_eq!(s.message(), "Update-with-Start could not be executed.");
        let rpc = RpcStatus::decode(s.details()).unwrap();
        let failure =
            MultiOperationExecutionFailure::decode(rpc.details[0].value.as_slice()).unwrap();
        let codes: Vec<i32> = failure.statuses.iter().map(|x| x.code).collect();
        assert_eq!(
            codes,
            [
                tonic::Code::AlreadyExists as i32,
                tonic::Code::Aborted as i32
            ]
        );
        assert_eq!(failure.statuses[1].message, "Operation was aborted.");
    }
}
