//! The `WorkflowService` implementation.

use keel_engine::command::Kind;
use keel_engine::workflow::{self as wf, workflow_outcome::Kind as Outcome};
use keel_engine::{response, Command};
use keel_proto::temporal::workflowservice::v1::workflow_service_server::WorkflowService;
use keel_proto::temporalio_protos::temporal::api::enums::v1::{
    NamespaceState, WorkflowExecutionStatus,
};
use keel_proto::temporalio_protos::temporal::api::namespace::v1::{
    namespace_info, NamespaceConfig, NamespaceInfo,
};
use keel_proto::temporalio_protos::temporal::api::workflowservice::v1 as api;
use keel_raft::RaftNode;
use std::time::{Duration, Instant};

use keel_proto::temporalio_protos::temporal::api::enums::v1::HistoryEventFilterType;
use keel_proto::temporalio_protos::temporal::api::history::v1::History;
use rand::RngCore;
use tonic::{Request, Response, Status};

use crate::history::to_temporal;

use crate::convert::{duration, duration_ms, encoded, reply};
use crate::status::{
    already_started, namespace_exists, namespace_not_found, run_not_found, to_status,
};

/// Keel's version as reported to clients.
const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Most namespaces one ListNamespaces page returns.
const MAX_NAMESPACES: usize = 1_000;

/// Serves Temporal's WorkflowService on one node.
pub struct Frontend {
    node: RaftNode,
    /// Dispatch proposals in flight from this node's pollers, per backlog.
    pub(crate) dispatching: crate::tasks::InFlight,
    pub(crate) sticky_waiting: crate::tasks::StickyWaiting,
    pub(crate) parked: crate::tasks::Parked,
    pub(crate) pollers: crate::pollers::Pollers,
    pub(crate) admission: crate::admission::Admission,
    namespaces: crate::namespaces::Namespaces,
}

/// Proposes commands together (one log entry, applied in order) through `node`: each one's
/// outcome (or its error) and the entry's index.
pub(crate) async fn propose_all(
    node: &RaftNode,
    kinds: Vec<Kind>,
) -> Result<(Vec<Result<Outcome, Status>>, u64), Status> {
    let commands = kinds
        .into_iter()
        .map(|k| Command { kind: Some(k) })
        .collect();
    let p = node.propose(commands).await.map_err(to_status)?;
    let outcomes = p
        .responses
        .into_iter()
        .map(|r| match r.kind {
            Some(response::Kind::Workflow(o)) => o
                .kind
                .ok_or_else(|| Status::internal("empty workflow outcome")),
            Some(response::Kind::Rejected(r)) => Err(Status::invalid_argument(r.reason)),
            other => Err(Status::internal(format!(
                "unexpected engine response {other:?}"
            ))),
        })
        .collect();
    Ok((outcomes, p.log_index))
}

impl Frontend {
    pub fn new(node: RaftNode) -> Self {
        Frontend {
            node,
            dispatching: Default::default(),
            sticky_waiting: Default::default(),
            parked: Default::default(),
            pollers: Default::default(),
            admission: Default::default(),
            namespaces: Default::default(),
        }
    }

    /// This frontend with `admission` deciding which starts it accepts (default: all).
    pub fn with_admission(mut self, admission: crate::admission::Admission) -> Self {
        self.admission = admission;
        self
    }

    /// Starts this node held back because their task queue's workers were behind.
    pub fn starts_held(&self) -> u64 {
        self.admission.held()
    }

    /// Starts being held back on this node right now.
    pub fn starts_holding(&self) -> u64 {
        self.admission.holding()
    }

    /// Workflow-task polls parked on this node (waiting, open to a sync match) for a queue.
    pub fn parked_polls(&self, namespace: &str, queue: &str) -> usize {
        self.parked.count(namespace, queue)
    }

    pub(crate) fn node(&self) -> &RaftNode {
        &self.node
    }

    /// Proposes one engine command and returns its workflow outcome.
    pub(crate) async fn propose(&self, kind: Kind) -> Result<Outcome, Status> {
        Ok(self.propose_at(kind).await?.0)
    }

    /// Like `propose`, also returning the log index the command committed at.
    pub(crate) async fn propose_at(&self, kind: Kind) -> Result<(Outcome, u64), Status> {
        let (mut outcomes, index) = propose_all(&self.node, vec![kind]).await?;
        Ok((outcomes.pop().expect("one outcome per command")?, index))
    }

    /// The run a request names (an empty run id means the current run) as this node has
    /// applied it; NOT_FOUND with `NotFoundFailure` if there is none.
    pub(crate) fn applied_run(&self, run: &wf::RunKey) -> Result<wf::MutableState, Status> {
        wf::resolve_run(self.node.state(), run)
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| {
                run_not_found(format!("workflow execution {} not found", run.workflow_id))
            })
    }

    /// Like [`Self::applied_run`], after a ReadIndex: a client sees what it wrote through
    /// any node.
    pub(crate) async fn linearized_run(
        &self,
        run: &wf::RunKey,
    ) -> Result<wf::MutableState, Status> {
        self.node.linearize().await.map_err(to_status)?;
        self.applied_run(run)
    }

    pub(crate) fn require_namespace(&self, namespace: &str) -> Result<wf::NamespaceRecord, Status> {
        if namespace.is_empty() {
            return Err(Status::invalid_argument("namespace is required"));
        }
        self.namespaces
            .get(&self.node, namespace)
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| namespace_not_found(namespace))
    }
}

/// A new UUID string (run ids, namespace ids, update ids), made by the proposer.
pub fn new_uuid() -> String {
    // UUIDv7 (RFC 9562), as Temporal makes run ids: 48 bits of Unix ms, then random bits;
    // ids made later sort later.
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = (b[6] & 0x0f) | 0x70;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn describe(ns: &wf::NamespaceRecord) -> api::DescribeNamespaceResponse {
    api::DescribeNamespaceResponse {
        namespace_info: Some(NamespaceInfo {
            name: ns.name.clone(),
            state: NamespaceState::Registered as i32,
            description: ns.description.clone(),
            id: ns.id.clone(),
            // The SDKs pre-check payloads against these: Temporal's 2 MiB per payload (which
            // Keel enforces) and, for the memo, the request limit that bounds it.
            limits: Some(namespace_info::Limits {
                blob_size_limit_error: crate::validate::BLOB_SIZE_LIMIT_BYTES as i64,
                memo_size_limit_error: MAX_REQUEST_BYTES as i64,
                workflow_task_completion_size_limit_error: 0,
            }),
            // Workflow updates, waited on synchronously (COMPLETED) or to ACCEPTED.
            capabilities: Some(namespace_info::Capabilities {
                sync_update: true,
                async_update: true,
                ..Default::default()
            }),
            // The schedule RPCs.
            supports_schedules: true,
            ..Default::default()
        }),
        config: Some(NamespaceConfig {
            workflow_execution_retention_ttl: Some(duration(ns.retention_ms)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Validates a start request and builds its engine command (with a fresh run id).
pub(crate) fn start_command(
    r: &api::StartWorkflowExecutionRequest,
) -> Result<wf::StartWorkflow, Status> {
    let workflow_type = r
        .workflow_type
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let task_queue = r
        .task_queue
        .as_ref()
        .map(|q| q.name.clone())
        .unwrap_or_default();
    crate::validate::workflow_id(&r.workflow_id)?;
    crate::validate::workflow_type(&workflow_type)?;
    crate::validate::task_queue(&task_queue)?;
    crate::validate::request_id(&r.request_id)?;
    crate::validate::identity(&r.identity)?;
    crate::validate::start_timeouts(
        &r.workflow_execution_timeout,
        &r.workflow_run_timeout,
        &r.workflow_task_timeout,
    )?;
    crate::validate::blob(&r.input)?;
    if let Some(p) = &r.retry_policy {
        validate_retry_policy(p)?;
    }
    if !r.cron_schedule.is_empty() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if wf::cron::next_after(&r.cron_schedule, now_ms).is_err() {
            return Err(Status::invalid_argument("Invalid CronSchedule."));
        }
        if duration_ms(&r.workflow_start_delay) > 0 {
            return Err(Status::invalid_argument(
                "CronSchedule and WorkflowStartDelay may not be used together.",
            ));
        }
    }
    // What would change the start's behaviour and is not built is refused by name.
    let priority_set = r.priority.as_ref().is_some_and(|p| {
        p != &keel_proto::temporalio_protos::temporal::api::common::v1::Priority::default()
    });
    for (set, field) in [
        (!r.completion_callbacks.is_empty(), "completion_callbacks"),
        (r.versioning_override.is_some(), "versioning_override"),
        (r.on_conflict_options.is_some(), "on_conflict_options"),
        (r.time_skipping_config.is_some(), "time_skipping_config"),
        (priority_set, "priority"),
        (!r.links.is_empty(), "links"),
    ] {
        if set {
            return Err(Status::invalid_argument(format!(
                "{field} is not supported by this server yet"
            )));
        }
    }
    if !(0..=3).contains(&r.workflow_id_conflict_policy) {
        return Err(Status::invalid_argument(format!(
            "unknown workflow_id_conflict_policy {}",
            r.workflow_id_conflict_policy
        )));
    }
    if r.workflow_start_delay
        .as_ref()
        .is_some_and(|d| d.seconds < 0 || d.nanos < 0)
    {
        return Err(Status::invalid_argument(
            "WorkflowStartDelay cannot be negative.",
        ));
    }
    Ok(wf::StartWorkflow {
        run: Some(wf::RunKey {
            namespace: r.namespace.clone(),
            workflow_id: r.workflow_id.clone(),
            run_id: new_uuid(),
        }),
        workflow_type,
        task_queue,
        input: encoded(&r.input),
        workflow_task_timeout_ms: duration_ms(&r.workflow_task_timeout),
        run_timeout_ms: duration_ms(&r.workflow_run_timeout),
        execution_timeout_ms: duration_ms(&r.workflow_execution_timeout),
        identity: r.identity.clone(),
        request_id: r.request_id.clone(),
        id_reuse_policy: r.workflow_id_reuse_policy,
        header: encoded(&r.header),
        memo: encoded(&r.memo),
        retry_policy: r
            .retry_policy
            .as_ref()
            .map(crate::tasks::retry_policy_from_temporal),
        start_delay_ms: duration_ms(&r.workflow_start_delay),
        cron_schedule: r.cron_schedule.clone(),
        // Validated against the namespace's registry (and typed) at apply.
        search_attributes: encoded(&r.search_attributes),
        conflict_policy: r.workflow_id_conflict_policy,
        eager: r.request_eager_execution,
        scheduled_by: String::new(),
        last_completion_result: Vec::new(),
        continued_failure: Vec::new(),
        user_metadata: encoded(&r.user_metadata),
    })
}

/// Temporal's checks of a retry policy, with its messages.
pub(crate) fn validate_retry_policy(
    p: &keel_proto::temporalio_protos::temporal::api::common::v1::RetryPolicy,
) -> Result<(), Status> {
    let negative = |d: &Option<keel_proto::prost_wkt_types::Duration>| {
        d.as_ref().is_some_and(|d| d.seconds < 0 || d.nanos < 0)
    };
    let problem = if negative(&p.initial_interval) {
        Some("InitialInterval cannot be negative on retry policy.")
    } else if p.backoff_coefficient != 0.0 && p.backoff_coefficient < 1.0 {
        Some("BackoffCoefficient cannot be less than 1 on retry policy.")
    } else if negative(&p.maximum_interval) {
        Some("MaximumInterval cannot be negative on retry policy.")
    } else if duration_ms(&p.maximum_interval) > 0
        && duration_ms(&p.maximum_interval) < duration_ms(&p.initial_interval)
    {
        Some("MaximumInterval cannot be less than InitialInterval on retry policy.")
    } else if p.maximum_attempts < 0 {
        Some("MaximumAttempts cannot be negative on retry policy.")
    } else {
        None
    };
    match problem {
        Some(m) => Err(Status::invalid_argument(m)),
        None => Ok(()),
    }
}

/// Maps the outcome of a start (or signal-with-start) to its result or Temporal error.
fn started(o: Outcome, namespace: &str) -> Result<wf::Started, Status> {
    match o {
        Outcome::Started(s) => Ok(s),
        Outcome::AlreadyStarted(a) => Err(already_started(a.start_request_id, a.run_id)),
        Outcome::NotFound(_) => Err(namespace_not_found(namespace)),
        Outcome::InvalidArgument(m) => Err(Status::invalid_argument(m)),
        other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
    }
}

/// Maps the outcome of a command aimed at an existing run.
pub(crate) fn run_outcome(o: Outcome) -> Result<(), Status> {
    match o {
        Outcome::Accepted(_) => Ok(()),
        Outcome::NotFound(m) => Err(run_not_found(m)),
        Outcome::InvalidArgument(m) => Err(Status::invalid_argument(m)),
        other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub(crate) fn run_key(
    namespace: &str,
    execution: &Option<keel_proto::temporalio_protos::temporal::api::common::v1::WorkflowExecution>,
) -> Result<wf::RunKey, Status> {
    let e = crate::validate::execution(execution)?;
    Ok(wf::RunKey {
        namespace: namespace.to_string(),
        workflow_id: e.workflow_id.clone(),
        run_id: e.run_id.clone(),
    })
}

/// Largest request Keel accepts, bytes. Larger ones get RESOURCE_EXHAUSTED with the message
/// prefix the SDKs recognize (core then fails a workflow task as GRPC_MESSAGE_TOO_LARGE instead
/// of retrying); the transport's own decode limit is far higher so this answer is the one seen.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Passes `m` through, or refuses it when its encoding exceeds [`MAX_REQUEST_BYTES`].
fn within_limit<M: prost::Message>(m: M) -> Result<M, Status> {
    let len = m.encoded_len();
    if len > MAX_REQUEST_BYTES {
        return Err(Status::resource_exhausted(format!(
            "grpc: received message larger than max ({len} vs. {MAX_REQUEST_BYTES})"
        )));
    }
    Ok(m)
}

/// Longest a long poll is held (temporal-compat.md §0 rule 3).
const MAX_LONG_POLL: Duration = Duration::from_secs(60);
/// Default and largest history page.
const MAX_HISTORY_PAGE: i64 = 1_000;

/// How long a long poll may wait: `min(60 s, grpc-timeout − 1 s)`, so the empty answer
/// always reaches the caller before its deadline.
fn long_poll_budget<T>(req: &Request<T>) -> Duration {
    request_deadline(req)
        .unwrap_or(MAX_LONG_POLL)
        .saturating_sub(Duration::from_secs(1))
        .min(MAX_LONG_POLL)
}

/// The caller's deadline (its `grpc-timeout`), if it sent one.
fn request_deadline<T>(req: &Request<T>) -> Option<Duration> {
    req.metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
}

/// Parses gRPC's `grpc-timeout` header value (e.g. `70S`, `11000m`).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3_600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// History page token: the next event id and the run it belongs to.
fn page_token(next_event_id: i64, run_id: &str) -> Vec<u8> {
    let mut t = next_event_id.to_be_bytes().to_vec();
    t.extend_from_slice(run_id.as_bytes());
    t
}

fn parse_page_token(t: &[u8]) -> Result<(i64, String), Status> {
    if t.len() < 8 {
        return Err(Status::invalid_argument("malformed next_page_token"));
    }
    let id = i64::from_be_bytes(t[..8].try_into().expect("8 bytes"));
    let run = String::from_utf8(t[8..].to_vec())
        .map_err(|_| Status::invalid_argument("malformed next_page_token"))?;
    Ok((id, run))
}

#[tonic::async_trait]
impl WorkflowService for Frontend {
    async fn poll_workflow_task_queue(
        &self,
        request: Request<api::PollWorkflowTaskQueueRequest>,
    ) -> Result<Response<api::PollWorkflowTaskQueueResponse>, Status> {
        let budget = long_poll_budget(&request);
        Ok(reply(
            self.poll_workflow_task(request.into_inner(), budget)
                .await?,
        ))
    }

    async fn poll_activity_task_queue(
        &self,
        request: Request<api::PollActivityTaskQueueRequest>,
    ) -> Result<Response<api::PollActivityTaskQueueResponse>, Status> {
        let budget = long_poll_budget(&request);
        Ok(reply(
            self.poll_activity_task(request.into_inner(), budget)
                .await?,
        ))
    }

    async fn describe_task_queue(
        &self,
        request: Request<api::DescribeTaskQueueRequest>,
    ) -> Result<Response<api::DescribeTaskQueueResponse>, Status> {
        use keel_proto::temporalio_protos::temporal::api::taskqueue::v1::{
            PollerInfo, TaskQueueStats, TaskQueueStatus,
        };
        let r = request.into_inner();
        self.require_namespace(&r.namespace)?;
        // What this answer cannot honour is refused by name, never answered in another shape.
        #[allow(deprecated)]
        let unsupported = [
            ("api_mode ENHANCED", r.api_mode != 0 && r.api_mode != 1),
            ("versions", r.versions.is_some()),
            ("task_queue_types", !r.task_queue_types.is_empty()),
            ("report_task_reachability", r.report_task_reachability),
            ("report_config", r.report_config),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(Status::unimplemented(format!(
                "DescribeTaskQueueRequest.{field} is not supported by this server yet"
            )));
        }
        let queue = r.task_queue.unwrap_or_default();
        crate::validate::task_queue(&queue.name)?;
        // Temporal's TASK_QUEUE_TYPE_WORKFLOW = 1, ACTIVITY = 2 (unspecified: workflow).
        let kind = match r.task_queue_type {
            0 | 1 => wf::TaskKind::Workflow,
            2 => wf::TaskKind::Activity,
            other => {
                return Err(Status::invalid_argument(format!(
                    "task queue type {other} is not supported by this server yet"
                )))
            }
        };
        let backlog = wf::backlog_len(self.node().state(), &r.namespace, &queue.name, kind)
            .map_err(|e| Status::internal(e.to_string()))?;
        let pollers = self
            .pollers
            .recent(&r.namespace, &queue.name, kind as u8)
            .into_iter()
            .map(|(identity, at)| PollerInfo {
                last_access_time: Some(at.into()),
                identity,
                ..Default::default()
            })
            .collect();
        #[allow(deprecated)]
        Ok(reply(api::DescribeTaskQueueResponse {
            pollers,
            stats: Some(TaskQueueStats {
                approximate_backlog_count: backlog as i64,
                ..Default::default()
            }),
            task_queue_status: Some(TaskQueueStatus {
                backlog_count_hint: backlog as i64,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn respond_workflow_task_completed(
        &self,
        request: Request<api::RespondWorkflowTaskCompletedRequest>,
    ) -> Result<Response<api::RespondWorkflowTaskCompletedResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        let token = crate::tasks::decode_token(&r.task_token)?;
        let commands: Vec<wf::WorkflowCommand> = r
            .commands
            .iter()
            .map(crate::tasks::convert_command)
            .collect();
        // Refused before anything is written: the task stays started, so the worker may still
        // complete it, and an SDK that replays and sends the command again (at once, in a
        // loop) adds no history until the task times out. The engine refuses it as well.
        if let Some(name) = commands.iter().find_map(|c| match &c.kind {
            Some(wf::workflow_command::Kind::Unsupported(name)) => Some(name),
            _ => None,
        }) {
            return Err(Status::invalid_argument(wf::unsupported_command(name)));
        }
        let sticky_queue = r
            .sticky_attributes
            .as_ref()
            .and_then(|a| a.worker_task_queue.as_ref())
            .map(|q| q.name.clone())
            .unwrap_or_default();
        // Answers to the queries that went out with this task (the engine takes the run
        // from the completed task; each token only names its query).
        let messages = crate::update::convert_messages(&r.messages)?;
        let worker_key = r.worker_instance_key.clone();
        let query_results = r
            .query_results
            .iter()
            .map(|(query_id, a)| wf::AnswerQuery {
                token: Some(wf::TaskToken {
                    kind: wf::TaskKind::Query as i32,
                    query_id: query_id.clone(),
                    ..Default::default()
                }),
                result_type: a.result_type,
                result: encoded(&a.answer),
                error_message: a.error_message.clone(),
                failure: encoded(&a.failure),
            })
            .collect();
        let (outcome, log_index) = self
            .propose_at(Kind::CompleteWorkflowTask(wf::CompleteWorkflowTask {
                token: Some(token),
                identity: r.identity,
                commands,
                sdk_metadata: encoded(&r.sdk_metadata),
                sticky_queue: sticky_queue.clone(),
                force_create_new_task: r.force_create_new_workflow_task,
                return_new_task: r.return_new_workflow_task,
                query_results,
                messages,
                worker_key: worker_key.clone(),
            }))
            .await?;
        // Activities the worker asked to run eagerly, and the run's next workflow task if
        // it asked for that, come back already started.
        let tasks = match outcome {
            Outcome::CompletedWithTasks(t) => t,
            other => {
                crate::tasks::accepted(other)?;
                wf::CompletionTasks::default()
            }
        };
        let activity_tasks = tasks
            .activities
            .iter()
            .map(|d| crate::tasks::activity_task(&r.namespace, d))
            .collect();
        let workflow_task = match tasks.workflow_task {
            // The worker's sticky queue, if it has one, holds the run: only new events.
            Some(d) => {
                let poller = crate::tasks::Poller {
                    sticky_queue: Some(sticky_queue.as_str()).filter(|s| !s.is_empty()),
                    worker_key: &worker_key,
                };
                match self.workflow_task_response(d, log_index, poller).await {
                    Ok(task) => Some(task),
                    // The completion is committed: report it, not this. The new task, started
                    // but never delivered, times out and is retried like a lost response.
                    Err(e) => {
                        tracing::warn!(error = %e, "a returned workflow task could not be read; it is retried after its timeout");
                        None
                    }
                }
            }
            None => None,
        };
        Ok(reply(api::RespondWorkflowTaskCompletedResponse {
            activity_tasks,
            workflow_task,
            ..Default::default()
        }))
    }

    async fn respond_workflow_task_failed(
        &self,
        request: Request<api::RespondWorkflowTaskFailedRequest>,
    ) -> Result<Response<api::RespondWorkflowTaskFailedResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        let token = crate::tasks::decode_token(&r.task_token)?;
        let outcome = self
            .propose(Kind::FailWorkflowTask(wf::FailWorkflowTask {
                token: Some(token),
                identity: r.identity,
                cause: r.cause,
                failure: encoded(&r.failure),
            }))
            .await?;
        crate::tasks::accepted(outcome)?;
        Ok(reply(api::RespondWorkflowTaskFailedResponse::default()))
    }

    async fn respond_activity_task_completed(
        &self,
        request: Request<api::RespondActivityTaskCompletedRequest>,
    ) -> Result<Response<api::RespondActivityTaskCompletedResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        let token = crate::tasks::decode_token(&r.task_token)?;
        self.complete_activity(token, r.identity, &r.result).await?;
        Ok(reply(api::RespondActivityTaskCompletedResponse::default()))
    }

    async fn respond_activity_task_completed_by_id(
        &self,
        request: Request<api::RespondActivityTaskCompletedByIdRequest>,
    ) -> Result<Response<api::RespondActivityTaskCompletedByIdResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        let token = self
            .activity_token(&r.namespace, &r.workflow_id, &r.run_id, &r.activity_id)
            .await?;
        self.complete_activity(token, r.identity, &r.result).await?;
        Ok(reply(
            api::RespondActivityTaskCompletedByIdResponse::default(),
        ))
    }

    async fn respond_activity_task_failed(
        &self,
        request: Request<api::RespondActivityTaskFailedRequest>,
    ) -> Result<Response<api::RespondActivityTaskFailedResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        let token = crate::tasks::decode_token(&r.task_token)?;
        self.fail_activity(token, r.identity, &r.failure).await?;
        Ok(reply(api::RespondActivityTaskFailedResponse::default()))
    }

    async fn respond_activity_task_failed_by_id(
        &self,
        request: Request<api::RespondActivityTaskFailedByIdRequest>,
    ) -> Result<Response<api::RespondActivityTaskFailedByIdResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        let token = self
            .activity_token(&r.namespace, &r.workflow_id, &r.run_id, &r.activity_id)
            .await?;
        self.fail_activity(token, r.identity, &r.failure).await?;
        Ok(reply(api::RespondActivityTaskFailedByIdResponse::default()))
    }

    async fn respond_activity_task_canceled(
        &self,
        request: Request<api::RespondActivityTaskCanceledRequest>,
    ) -> Result<Response<api::RespondActivityTaskCanceledResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        let token = crate::tasks::decode_token(&r.task_token)?;
        self.cancel_activity(token, r.identity, &r.details).await?;
        Ok(reply(api::RespondActivityTaskCanceledResponse::default()))
    }

    async fn respond_activity_task_canceled_by_id(
        &self,
        request: Request<api::RespondActivityTaskCanceledByIdRequest>,
    ) -> Result<Response<api::RespondActivityTaskCanceledByIdResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        let token = self
            .activity_token(&r.namespace, &r.workflow_id, &r.run_id, &r.activity_id)
            .await?;
        self.cancel_activity(token, r.identity, &r.details).await?;
        Ok(reply(
            api::RespondActivityTaskCanceledByIdResponse::default(),
        ))
    }

    async fn record_activity_task_heartbeat(
        &self,
        request: Request<api::RecordActivityTaskHeartbeatRequest>,
    ) -> Result<Response<api::RecordActivityTaskHeartbeatResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        let token = crate::tasks::decode_token(&r.task_token)?;
        let cancel_requested = self.heartbeat(token, &r.details).await?;
        Ok(reply(api::RecordActivityTaskHeartbeatResponse {
            cancel_requested,
            ..Default::default()
        }))
    }

    async fn record_activity_task_heartbeat_by_id(
        &self,
        request: Request<api::RecordActivityTaskHeartbeatByIdRequest>,
    ) -> Result<Response<api::RecordActivityTaskHeartbeatByIdResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        let token = self
            .activity_token(&r.namespace, &r.workflow_id, &r.run_id, &r.activity_id)
            .await?;
        let cancel_requested = self.heartbeat(token, &r.details).await?;
        Ok(reply(api::RecordActivityTaskHeartbeatByIdResponse {
            cancel_requested,
            ..Default::default()
        }))
    }

    async fn list_workflow_executions(
        &self,
        request: Request<api::ListWorkflowExecutionsRequest>,
    ) -> Result<Response<api::ListWorkflowExecutionsResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        self.node.linearize().await.map_err(to_status)?;
        Ok(reply(self.list_executions(r)?))
    }

    async fn count_workflow_executions(
        &self,
        request: Request<api::CountWorkflowExecutionsRequest>,
    ) -> Result<Response<api::CountWorkflowExecutionsResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        self.node.linearize().await.map_err(to_status)?;
        Ok(reply(self.count_executions(r)?))
    }

    async fn query_workflow(
        &self,
        request: Request<api::QueryWorkflowRequest>,
    ) -> Result<Response<api::QueryWorkflowResponse>, Status> {
        let budget = long_poll_budget(&request);
        let r = within_limit(request.into_inner())?;
        Ok(reply(self.run_query(r, budget).await?))
    }

    async fn create_schedule(
        &self,
        request: Request<api::CreateScheduleRequest>,
    ) -> Result<Response<api::CreateScheduleResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        Ok(reply(Frontend::create_schedule(self, r).await?))
    }

    async fn describe_schedule(
        &self,
        request: Request<api::DescribeScheduleRequest>,
    ) -> Result<Response<api::DescribeScheduleResponse>, Status> {
        Ok(reply(
            Frontend::describe_schedule(self, request.into_inner()).await?,
        ))
    }

    async fn update_schedule(
        &self,
        request: Request<api::UpdateScheduleRequest>,
    ) -> Result<Response<api::UpdateScheduleResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        Ok(reply(Frontend::update_schedule(self, r).await?))
    }

    async fn patch_schedule(
        &self,
        request: Request<api::PatchScheduleRequest>,
    ) -> Result<Response<api::PatchScheduleResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        Ok(reply(Frontend::patch_schedule(self, r).await?))
    }

    async fn delete_schedule(
        &self,
        request: Request<api::DeleteScheduleRequest>,
    ) -> Result<Response<api::DeleteScheduleResponse>, Status> {
        Ok(reply(
            Frontend::delete_schedule(self, request.into_inner()).await?,
        ))
    }

    async fn list_schedules(
        &self,
        request: Request<api::ListSchedulesRequest>,
    ) -> Result<Response<api::ListSchedulesResponse>, Status> {
        Ok(reply(
            Frontend::list_schedules(self, request.into_inner()).await?,
        ))
    }

    async fn list_schedule_matching_times(
        &self,
        request: Request<api::ListScheduleMatchingTimesRequest>,
    ) -> Result<Response<api::ListScheduleMatchingTimesResponse>, Status> {
        Ok(reply(
            Frontend::list_schedule_matching_times(self, request.into_inner()).await?,
        ))
    }

    async fn update_workflow_execution(
        &self,
        request: Request<api::UpdateWorkflowExecutionRequest>,
    ) -> Result<Response<api::UpdateWorkflowExecutionResponse>, Status> {
        let budget = long_poll_budget(&request);
        let r = within_limit(request.into_inner())?;
        Ok(reply(self.update_workflow(r, budget).await?))
    }

    async fn execute_multi_operation(
        &self,
        request: Request<api::ExecuteMultiOperationRequest>,
    ) -> Result<Response<api::ExecuteMultiOperationResponse>, Status> {
        let budget = long_poll_budget(&request);
        let r = within_limit(request.into_inner())?;
        Ok(reply(self.update_with_start(r, budget).await?))
    }

    async fn poll_workflow_execution_update(
        &self,
        request: Request<api::PollWorkflowExecutionUpdateRequest>,
    ) -> Result<Response<api::PollWorkflowExecutionUpdateResponse>, Status> {
        let budget = long_poll_budget(&request);
        let r = within_limit(request.into_inner())?;
        Ok(reply(self.poll_update(r, budget).await?))
    }

    async fn respond_query_task_completed(
        &self,
        request: Request<api::RespondQueryTaskCompletedRequest>,
    ) -> Result<Response<api::RespondQueryTaskCompletedResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        Ok(reply(self.respond_query_task(r).await?))
    }

    async fn signal_with_start_workflow_execution(
        &self,
        request: Request<api::SignalWithStartWorkflowExecutionRequest>,
    ) -> Result<Response<api::SignalWithStartWorkflowExecutionResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        self.require_namespace(&r.namespace)?;
        crate::validate::signal_name(&r.signal_name)?;
        crate::validate::blob(&r.signal_input)?;
        // A running run is signalled (USE_EXISTING, the default) or, under TERMINATE_EXISTING
        // (or the reuse policy TERMINATE_IF_RUNNING), terminated and replaced by a new run that
        // gets the signal; FAIL is not a valid choice for signal-with-start in Temporal.
        if r.workflow_id_conflict_policy == 1 {
            return Err(Status::invalid_argument(
                "workflow_id_conflict_policy WORKFLOW_ID_CONFLICT_POLICY_FAIL is not a valid option for SignalWithStartWorkflowExecution",
            ));
        }
        let start = start_command(&api::StartWorkflowExecutionRequest {
            namespace: r.namespace.clone(),
            workflow_id: r.workflow_id.clone(),
            workflow_type: r.workflow_type.clone(),
            task_queue: r.task_queue.clone(),
            input: r.input.clone(),
            workflow_execution_timeout: r.workflow_execution_timeout,
            workflow_run_timeout: r.workflow_run_timeout,
            workflow_task_timeout: r.workflow_task_timeout,
            identity: r.identity.clone(),
            request_id: r.request_id.clone(),
            workflow_id_reuse_policy: r.workflow_id_reuse_policy,
            header: r.header.clone(),
            memo: r.memo.clone(),
            retry_policy: r.retry_policy.clone(),
            cron_schedule: r.cron_schedule.clone(),
            search_attributes: r.search_attributes.clone(),
            workflow_start_delay: r.workflow_start_delay,
            workflow_id_conflict_policy: r.workflow_id_conflict_policy,
            // Checked (and refused by name when not built) like a start's.
            user_metadata: r.user_metadata.clone(),
            versioning_override: r.versioning_override.clone(),
            priority: r.priority,
            links: r.links.clone(),
            ..Default::default()
        })?;
        let namespace = r.namespace.clone();
        let signal = wf::SignalWorkflow {
            run: Some(wf::RunKey {
                namespace: r.namespace,
                workflow_id: r.workflow_id,
                run_id: String::new(),
            }),
            signal_name: r.signal_name,
            input: encoded(&r.signal_input),
            identity: r.identity,
            request_id: r.request_id,
            header: encoded(&r.header),
        };
        let queue = start.task_queue.clone();
        let outcome = self
            .propose_with_handoff(
                Kind::SignalWithStart(wf::SignalWithStart {
                    start: Some(start),
                    signal: Some(signal),
                }),
                &namespace,
                &queue,
            )
            .await?;
        let started = started(outcome, &namespace)?;
        Ok(reply(api::SignalWithStartWorkflowExecutionResponse {
            run_id: started.run_id,
            started: started.started,
            ..Default::default()
        }))
    }

    async fn describe_workflow_execution(
        &self,
        request: Request<api::DescribeWorkflowExecutionRequest>,
    ) -> Result<Response<api::DescribeWorkflowExecutionResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        self.require_namespace(&r.namespace)?;
        let run = run_key(&r.namespace, &r.execution)?;
        let ms = self.linearized_run(&run).await?;
        Ok(reply(crate::describe::describe_execution(&ms)))
    }

    async fn get_cluster_info(
        &self,
        _: Request<api::GetClusterInfoRequest>,
    ) -> Result<Response<api::GetClusterInfoResponse>, Status> {
        Ok(reply(api::GetClusterInfoResponse {
            server_version: SERVER_VERSION.into(),
            cluster_id: self.node.cluster_id().to_string(),
            cluster_name: self.node.cluster_id().to_string(),
            history_shard_count: 1, // one Raft group
            persistence_store: "rocksdb".into(),
            visibility_store: "rocksdb".into(),
            ..Default::default()
        }))
    }

    async fn get_search_attributes(
        &self,
        _: Request<api::GetSearchAttributesRequest>,
    ) -> Result<Response<api::GetSearchAttributesResponse>, Status> {
        // The request names no namespace: system and predefined attributes, and the custom
        // ones of `default` (OperatorService ListSearchAttributes is per namespace).
        self.node.linearize().await.map_err(to_status)?;
        let custom = wf::read_namespace(self.node.state(), "default")
            .map_err(|e| Status::internal(e.to_string()))?
            .map(|n| n.search_attributes)
            .unwrap_or_default();
        Ok(reply(api::GetSearchAttributesResponse {
            keys: crate::operator::all_types(&custom),
        }))
    }

    async fn shutdown_worker(
        &self,
        _: Request<api::ShutdownWorkerRequest>,
    ) -> Result<Response<api::ShutdownWorkerResponse>, Status> {
        Ok(reply(api::ShutdownWorkerResponse::default()))
    }

    async fn get_workflow_execution_history(
        &self,
        request: Request<api::GetWorkflowExecutionHistoryRequest>,
    ) -> Result<Response<api::GetWorkflowExecutionHistoryResponse>, Status> {
        let budget = long_poll_budget(&request);
        let deadline = Instant::now() + budget;
        let r = within_limit(request.into_inner())?;
        self.require_namespace(&r.namespace)?;
        let mut run = run_key(&r.namespace, &r.execution)?;
        let mut from = 1;
        if !r.next_page_token.is_empty() {
            let (id, run_id) = parse_page_token(&r.next_page_token)?;
            from = id;
            run.run_id = run_id;
        }
        let close_only = r.history_event_filter_type == HistoryEventFilterType::CloseEvent as i32;
        let page = if r.maximum_page_size <= 0 {
            MAX_HISTORY_PAGE
        } else {
            (r.maximum_page_size as i64).min(MAX_HISTORY_PAGE)
        };
        // Linearizable: a client that just wrote through another node sees its write. The
        // run is named once; the wait is woken by changes to it only, armed before each read
        // (a wait for the close event only by its closing, not by each step of the run).
        let named = self
            .linearized_run(&run)
            .await?
            .run
            .expect("stored runs are named");
        let wake_on = if close_only {
            wf::watch_run_closed(&named)
        } else {
            wf::watch_run(&named)
        };
        let watch = crate::wake::Watch::new(&self.node, &[wake_on]);
        loop {
            let armed = watch.arm();
            let state = self.node.state();
            let ms = self.applied_run(&named)?;
            let key = &named;
            let last = ms.next_event_id - 1;
            let running = ms.status == wf::RunStatus::Running as i32;
            let events: Vec<wf::HistoryEvent> = if close_only {
                if running {
                    Vec::new()
                } else {
                    crate::history::read_events(state, key, last, last)?
                }
            } else if from <= last {
                crate::history::read_events(state, key, from, (from + page - 1).min(last))?
            } else {
                Vec::new()
            };
            let waiting = r.wait_new_event && running && events.is_empty();
            if waiting && Instant::now() < deadline {
                armed.wait(deadline).await;
                continue;
            }
            let next = events.last().map_or(from, |e| e.event_id + 1);
            let more = !close_only && next <= last;
            // While the run is open a waiting caller keeps polling with a non-empty token.
            let token = if more || (r.wait_new_event && running) {
                page_token(next, &key.run_id)
            } else {
                Vec::new()
            };
            let history = History {
                events: events.iter().map(|e| to_temporal(e, key)).collect(),
            };
            return Ok(reply(api::GetWorkflowExecutionHistoryResponse {
                history: Some(history),
                next_page_token: token,
                ..Default::default()
            }));
        }
    }

    async fn get_system_info(
        &self,
        _: Request<api::GetSystemInfoRequest>,
    ) -> Result<Response<api::GetSystemInfoResponse>, Status> {
        Ok(reply(api::GetSystemInfoResponse {
            server_version: SERVER_VERSION.into(),
            capabilities: Some(api::get_system_info_response::Capabilities {
                signal_and_query_header: true,
                internal_error_differentiation: true,
                activity_failure_include_heartbeat: true,
                encoded_failure_attributes: true,
                sdk_metadata: true,
                // ModifyWorkflowProperties (workflow.upsert_memo) and Count's GROUP BY
                // ExecutionStatus (docs/tier3.md).
                upsert_memo: true,
                count_group_by_execution_status: true,
                // request_eager_execution on StartWorkflowExecution (docs/temporal-api.md).
                eager_workflow_start: true,
                // The schedule RPCs (docs/temporal-api.md).
                supports_schedules: true,
                ..Default::default()
            }),
        }))
    }

    async fn describe_namespace(
        &self,
        request: Request<api::DescribeNamespaceRequest>,
    ) -> Result<Response<api::DescribeNamespaceResponse>, Status> {
        let ns = self.require_namespace(&request.into_inner().namespace)?;
        Ok(reply(describe(&ns)))
    }

    async fn list_namespaces(
        &self,
        _: Request<api::ListNamespacesRequest>,
    ) -> Result<Response<api::ListNamespacesResponse>, Status> {
        let rows = self
            .node
            .state()
            .scan_prefix(
                &keel_engine::keys::KeyKind::Namespace.prefix(),
                MAX_NAMESPACES,
            )
            .map_err(to_status)?;
        let mut records = rows
            .iter()
            .map(|(_, v)| prost::Message::decode(v.as_slice()))
            .collect::<Result<Vec<wf::NamespaceRecord>, _>>()
            .map_err(|e| Status::internal(format!("corrupt namespace record: {e}")))?;
        records.sort_by(|a, b| a.name.cmp(&b.name));
        let namespaces = records.iter().map(describe).collect();
        Ok(reply(api::ListNamespacesResponse {
            namespaces,
            next_page_token: vec![],
        }))
    }

    async fn register_namespace(
        &self,
        request: Request<api::RegisterNamespaceRequest>,
    ) -> Result<Response<api::RegisterNamespaceResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        if r.namespace.is_empty() {
            return Err(Status::invalid_argument("namespace is required"));
        }
        let outcome = self
            .propose(Kind::RegisterNamespace(wf::RegisterNamespace {
                name: r.namespace,
                id: new_uuid(),
                description: r.description,
                retention_ms: duration_ms(&r.workflow_execution_retention_period),
            }))
            .await?;
        match outcome {
            Outcome::Accepted(_) => Ok(reply(api::RegisterNamespaceResponse {})),
            Outcome::AlreadyExists(m) => Err(namespace_exists(m)),
            Outcome::InvalidArgument(m) => Err(Status::invalid_argument(m)),
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn start_workflow_execution(
        &self,
        request: Request<api::StartWorkflowExecutionRequest>,
    ) -> Result<Response<api::StartWorkflowExecutionResponse>, Status> {
        let deadline = request_deadline(&request);
        let r = within_limit(request.into_inner())?;
        self.require_namespace(&r.namespace)?;
        let start = start_command(&r)?;
        let queue = start.task_queue.clone();
        // Backpressure: held while the queue's workers are behind (see `admission`).
        self.admission
            .admit(self.node().state(), &r.namespace, &queue, deadline)
            .await?;
        // Eager start: the first task comes back in this response, started for the caller's
        // worker (best effort, as in Temporal: none when the first task is not due at once).
        let (outcome, log_index) = if start.eager {
            self.propose_at(Kind::StartWorkflow(start)).await?
        } else {
            // A workflow-task poll parked here gets the first task in the start's own entry.
            let outcome = self
                .propose_with_handoff(Kind::StartWorkflow(start), &r.namespace, &queue)
                .await?;
            (outcome, 0)
        };
        let started = started(outcome, &r.namespace)?;
        let eager_workflow_task = match started.eager_task {
            Some(d) => Some(
                self.workflow_task_response(*d, log_index, Default::default())
                    .await?,
            ),
            None => None,
        };
        Ok(reply(api::StartWorkflowExecutionResponse {
            run_id: started.run_id,
            started: started.started,
            status: WorkflowExecutionStatus::Running as i32,
            eager_workflow_task,
            ..Default::default()
        }))
    }

    async fn signal_workflow_execution(
        &self,
        request: Request<api::SignalWorkflowExecutionRequest>,
    ) -> Result<Response<api::SignalWorkflowExecutionResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        self.require_namespace(&r.namespace)?;
        let run = run_key(&r.namespace, &r.workflow_execution)?;
        crate::validate::signal_name(&r.signal_name)?;
        crate::validate::request_id(&r.request_id)?;
        crate::validate::blob(&r.input)?;
        let outcome = self
            .propose(Kind::SignalWorkflow(wf::SignalWorkflow {
                run: Some(run),
                signal_name: r.signal_name,
                input: encoded(&r.input),
                identity: r.identity,
                request_id: r.request_id,
                header: encoded(&r.header),
            }))
            .await?;
        run_outcome(outcome)?;
        Ok(reply(api::SignalWorkflowExecutionResponse::default()))
    }

    async fn request_cancel_workflow_execution(
        &self,
        request: Request<api::RequestCancelWorkflowExecutionRequest>,
    ) -> Result<Response<api::RequestCancelWorkflowExecutionResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        self.require_namespace(&r.namespace)?;
        let run = run_key(&r.namespace, &r.workflow_execution)?;
        let outcome = self
            .propose(Kind::RequestCancelWorkflow(wf::RequestCancelWorkflow {
                run: Some(run),
                identity: r.identity,
                reason: r.reason,
                request_id: r.request_id,
                first_execution_run_id: r.first_execution_run_id,
            }))
            .await?;
        run_outcome(outcome)?;
        Ok(reply(api::RequestCancelWorkflowExecutionResponse::default()))
    }

    async fn terminate_workflow_execution(
        &self,
        request: Request<api::TerminateWorkflowExecutionRequest>,
    ) -> Result<Response<api::TerminateWorkflowExecutionResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        self.require_namespace(&r.namespace)?;
        let run = run_key(&r.namespace, &r.workflow_execution)?;
        let outcome = self
            .propose(Kind::TerminateWorkflow(wf::TerminateWorkflow {
                run: Some(run),
                identity: r.identity,
                reason: r.reason,
                details: encoded(&r.details),
                first_execution_run_id: r.first_execution_run_id,
            }))
            .await?;
        run_outcome(outcome)?;
        Ok(reply(api::TerminateWorkflowExecutionResponse::default()))
    }

    async fn delete_workflow_execution(
        &self,
        request: Request<api::DeleteWorkflowExecutionRequest>,
    ) -> Result<Response<api::DeleteWorkflowExecutionResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        self.require_namespace(&r.namespace)?;
        let run = run_key(&r.namespace, &r.workflow_execution)?;
        let outcome = self
            .propose(Kind::DeleteWorkflow(wf::DeleteWorkflow {
                run: Some(run),
                identity: String::new(),
            }))
            .await?;
        match outcome {
            Outcome::NotFound(_) => Err(run_not_found(format!(
                "workflow execution {} not found",
                r.workflow_execution.unwrap_or_default().workflow_id
            ))),
            o => run_outcome(o).map(|_| reply(api::DeleteWorkflowExecutionResponse::default())),
        }
    }

    /// A new run from a workflow task of an old one (docs/tier3.md "Reset").
    async fn reset_workflow_execution(
        &self,
        request: Request<api::ResetWorkflowExecutionRequest>,
    ) -> Result<Response<api::ResetWorkflowExecutionResponse>, Status> {
        use keel_proto::temporalio_protos::temporal::api::enums::v1::{
            ResetReapplyExcludeType as Exclude, ResetReapplyType as Reapply,
        };
        let r = within_limit(request.into_inner())?;
        self.require_namespace(&r.namespace)?;
        let run = run_key(&r.namespace, &r.workflow_execution)?;
        crate::validate::request_id(&r.request_id)?;
        crate::validate::identity(&r.identity)?;
        if r.workflow_task_finish_event_id <= 0 {
            return Err(Status::invalid_argument(
                "WorkflowTaskFinishEventId is not set on request.",
            ));
        }
        if !r.post_reset_operations.is_empty() {
            return Err(Status::invalid_argument(
                "post_reset_operations is not supported by this server yet",
            ));
        }
        // The SDKs and CLIs still send the deprecated reapply type: NONE reapplies nothing.
        #[allow(deprecated)]
        let reapply = Reapply::try_from(r.reset_reapply_type).unwrap_or(Reapply::Unspecified);
        let excluded = |t: Exclude| r.reset_reapply_exclude_types.contains(&(t as i32));
        let outcome = self
            .propose(Kind::ResetWorkflow(wf::reset::ResetWorkflow {
                run: Some(run.clone()),
                workflow_task_finish_event_id: r.workflow_task_finish_event_id,
                new_run_id: new_uuid(),
                reason: r.reason,
                request_id: if r.request_id.is_empty() {
                    new_uuid()
                } else {
                    r.request_id
                },
                identity: r.identity,
                reapply_signals: reapply != Reapply::None && !excluded(Exclude::Signal),
            }))
            .await?;
        match outcome {
            Outcome::Started(s) => Ok(reply(api::ResetWorkflowExecutionResponse {
                run_id: s.run_id,
            })),
            Outcome::NotFound(_) => Err(run_not_found(format!(
                "workflow execution {} not found",
                run.workflow_id
            ))),
            o => run_outcome(o).map(|_| reply(api::ResetWorkflowExecutionResponse::default())),
        }
    }

    /// Newest events first, a page at a time (a closed or open run alike: no waiting).
    async fn get_workflow_execution_history_reverse(
        &self,
        request: Request<api::GetWorkflowExecutionHistoryReverseRequest>,
    ) -> Result<Response<api::GetWorkflowExecutionHistoryReverseResponse>, Status> {
        let r = within_limit(request.into_inner())?;
        self.require_namespace(&r.namespace)?;
        let mut run = run_key(&r.namespace, &r.execution)?;
        let named = self
            .linearized_run(&run)
            .await?
            .run
            .expect("stored runs are named");
        run.run_id = named.run_id.clone();
        let ms = self.applied_run(&named)?;
        // The token holds the id of the newest event not yet returned.
        let last = if r.next_page_token.is_empty() {
            ms.next_event_id - 1
        } else {
            let (id, run_id) = parse_page_token(&r.next_page_token)?;
            if run_id != named.run_id {
                return Err(Status::invalid_argument(
                    "RunId in the request does not match the NextPageToken.",
                ));
            }
            id
        };
        let page = if r.maximum_page_size <= 0 {
            MAX_HISTORY_PAGE
        } else {
            (r.maximum_page_size as i64).min(MAX_HISTORY_PAGE)
        };
        let first = (last - page + 1).max(1);
        let mut events = if last >= 1 {
            crate::history::read_events(self.node.state(), &named, first, last)?
        } else {
            Vec::new()
        };
        events.reverse();
        let token = if first > 1 {
            page_token(first - 1, &named.run_id)
        } else {
            Vec::new()
        };
        Ok(reply(api::GetWorkflowExecutionHistoryReverseResponse {
            history: Some(History {
                events: events.iter().map(|e| to_temporal(e, &named)).collect(),
            }),
            next_page_token: token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_version_7_uuids_carrying_their_time() {
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let before = now();
        let id = new_uuid();
        let after = now();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(&id[14..15], "7", "version 7: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "RFC variant: {id}"
        );
        let ms = u64::from_str_radix(&id[..13].replace('-', ""), 16).unwrap();
        assert!(
            (before..=after).contains(&ms),
            "{ms} not in {before}..={after}"
        );
    }

    #[test]
    fn a_start_asking_for_what_is_not_built_is_refused_by_name() {
        use keel_proto::temporalio_protos::temporal::api::common::v1::Priority;
        let base = api::StartWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_id: "w".into(),
            workflow_type: Some(Default::default()),
            task_queue: Some(Default::default()),
            ..Default::default()
        };
        let mut named_type = base.clone();
        named_type.workflow_type.as_mut().unwrap().name = "t".into();
        named_type.task_queue.as_mut().unwrap().name = "q".into();
        let refused = |f: &dyn Fn(&mut api::StartWorkflowExecutionRequest)| {
            let mut r = named_type.clone();
            f(&mut r);
            start_command(&r).err().map(|e| e.message().to_string())
        };
        assert_eq!(
            refused(&|r| r.priority = Some(Priority {
                priority_key: 2,
                ..Default::default()
            }))
            .as_deref(),
            Some("priority is not supported by this server yet")
        );
        assert_eq!(refused(&|r| r.priority = Some(Priority::default())), None);
        assert_eq!(
            refused(&|r| r.links = vec![Default::default()]).as_deref(),
            Some("links is not supported by this server yet")
        );
        // TERMINATE_EXISTING is built; an unknown policy is refused.
        assert_eq!(refused(&|r| r.workflow_id_conflict_policy = 3), None);
        assert_eq!(
            refused(&|r| r.workflow_id_conflict_policy = 9).as_deref(),
            Some("unknown workflow_id_conflict_policy 9")
        );
        let ok = start_command(&{
            let mut r = named_type.clone();
            r.workflow_id_conflict_policy = 2;
            r.request_eager_execution = true;
            r
        })
        .expect("USE_EXISTING and eager are served");
        assert_eq!((ok.conflict_policy, ok.eager), (2, true));
    }

    #[test]
    fn grpc_timeouts_parse_and_long_polls_end_a_second_early() {
        assert_eq!(parse_grpc_timeout("70S"), Some(Duration::from_secs(70)));
        assert_eq!(parse_grpc_timeout("11000m"), Some(Duration::from_secs(11)));
        assert_eq!(parse_grpc_timeout("x"), None);
        let mut req = Request::new(());
        req.metadata_mut()
            .insert("grpc-timeout", "70S".parse().unwrap());
        assert_eq!(long_poll_budget(&req), MAX_LONG_POLL);
        req.metadata_mut()
            .insert("grpc-timeout", "11S".parse().unwrap());
        assert_eq!(long_poll_budget(&req), Duration::from_secs(10));
    }

    #[test]
    fn page_tokens_round_trip() {
        assert_eq!(
            parse_page_token(&page_token(42, "run-1")).unwrap(),
            (42, "run-1".to_string())
        );
        assert!(parse_page_token(b"short").is_err());
    }
}
