//! Temporal's WorkflowService on a 3-node in-process cluster, called with the generated
//! Temporal gRPC client (gzip on, as the SDKs send it) through a follower.

use std::time::Duration;

use keel_server::local_cluster::{wait_for, LocalCluster};
use prost::Message;
use temporalio_protos::google::rpc::Status as RpcStatus;
use temporalio_protos::temporal::api::common::v1::{WorkflowExecution, WorkflowType};
use temporalio_protos::temporal::api::errordetails::v1 as details;
use temporalio_protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_protos::temporal::api::workflowservice::v1 as api;
use temporalio_protos::temporal::api::workflowservice::v1::workflow_service_client::WorkflowServiceClient;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

fn start_request(workflow_id: &str, request_id: &str) -> api::StartWorkflowExecutionRequest {
    api::StartWorkflowExecutionRequest {
        namespace: "default".into(),
        workflow_id: workflow_id.into(),
        workflow_type: Some(WorkflowType {
            name: "hello".into(),
        }),
        task_queue: Some(TaskQueue {
            name: "tq".into(),
            ..Default::default()
        }),
        identity: "test".into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn detail(s: &tonic::Status) -> (String, Vec<u8>) {
    let rpc = RpcStatus::decode(s.details()).expect("google.rpc.Status details");
    let any = rpc.details.into_iter().next().expect("one detail");
    (any.type_url, any.value)
}

/// A normal task queue.
fn normal_queue(name: &str) -> TaskQueue {
    TaskQueue {
        name: name.into(),
        kind: 1,
        ..Default::default()
    }
}

/// Long-polls `queue` for a workflow task, with a client deadline of `secs`.
async fn poll_wft(
    mut client: WorkflowServiceClient<Channel>,
    queue: TaskQueue,
    identity: &str,
    secs: u64,
) -> Result<api::PollWorkflowTaskQueueResponse, tonic::Status> {
    let mut req = tonic::Request::new(api::PollWorkflowTaskQueueRequest {
        namespace: "default".into(),
        task_queue: Some(queue),
        identity: identity.into(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(secs));
    client
        .poll_workflow_task_queue(req)
        .await
        .map(|r| r.into_inner())
}

/// Waits until the cluster has registered the `default` namespace.
async fn default_namespace_exists(client: &WorkflowServiceClient<Channel>) -> anyhow::Result<()> {
    wait_for(WAIT, "the default namespace exists", || {
        let mut client = client.clone();
        async move {
            client
                .describe_namespace(api::DescribeNamespaceRequest {
                    namespace: "default".into(),
                    ..Default::default()
                })
                .await
                .ok()
        }
    })
    .await?;
    Ok(())
}

/// A 3-node cluster, its leader, and a gzip client of a follower.
async fn cluster_with_follower_client(
) -> anyhow::Result<(LocalCluster, u64, WorkflowServiceClient<Channel>)> {
    let c = LocalCluster::start(3, |_| {}).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let follower = c.running().into_iter().find(|i| *i != leader).unwrap();
    let channel = Channel::from_shared(format!("http://{}", c.node(follower).client_addr()))?
        .connect()
        .await?;
    let client: WorkflowServiceClient<Channel> = WorkflowServiceClient::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    Ok((c, leader, client))
}

/// [`cluster_with_follower_client`], once the `default` namespace is registered.
async fn cluster_and_follower_client(
) -> anyhow::Result<(LocalCluster, u64, WorkflowServiceClient<Channel>)> {
    let (c, leader, client) = cluster_with_follower_client().await?;
    default_namespace_exists(&client).await?;
    Ok((c, leader, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_workflow_service_basics_through_a_follower() -> anyhow::Result<()> {
    let (c, leader, mut client) = cluster_with_follower_client().await?;

    let info = client
        .get_system_info(api::GetSystemInfoRequest {})
        .await?
        .into_inner();
    let caps = info.capabilities.expect("capabilities");
    assert!(
        caps.sdk_metadata
            && caps.signal_and_query_header
            && caps.activity_failure_include_heartbeat
    );
    assert!(!caps.build_id_based_versioning);

    let ns = wait_for(WAIT, "the default namespace is describable", || {
        let mut client = client.clone();
        async move {
            client
                .describe_namespace(api::DescribeNamespaceRequest {
                    namespace: "default".into(),
                    ..Default::default()
                })
                .await
                .ok()
        }
    })
    .await?
    .into_inner();
    let info = ns.namespace_info.unwrap();
    assert_eq!((info.name.as_str(), info.id.len()), ("default", 36));
    let limits = info
        .limits
        .expect("limits the SDKs pre-check payloads against");
    assert_eq!(
        (limits.blob_size_limit_error, limits.memo_size_limit_error),
        (2 << 20, 4 << 20),
        "Temporal's 2 MiB per payload; the memo is bounded by the 4 MiB request limit"
    );
    assert_eq!(
        ns.config
            .unwrap()
            .workflow_execution_retention_ttl
            .unwrap()
            .seconds,
        3 * 24 * 3600
    );

    client
        .register_namespace(api::RegisterNamespaceRequest {
            namespace: "orders".into(),
            ..Default::default()
        })
        .await?;
    let err = client
        .register_namespace(api::RegisterNamespaceRequest {
            namespace: "orders".into(),
            ..Default::default()
        })
        .await
        .expect_err("registered twice");
    assert_eq!(err.code(), Code::AlreadyExists);
    let listed = client
        .list_namespaces(api::ListNamespacesRequest::default())
        .await?
        .into_inner();
    let names: Vec<String> = listed
        .namespaces
        .iter()
        .map(|n| n.namespace_info.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(names, ["default", "orders"]);

    let err = client
        .describe_namespace(api::DescribeNamespaceRequest {
            namespace: "missing".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such namespace");
    assert_eq!(err.code(), Code::NotFound);
    let (url, bytes) = detail(&err);
    assert_eq!(
        url,
        "type.googleapis.com/temporal.api.errordetails.v1.NamespaceNotFoundFailure"
    );
    assert_eq!(
        details::NamespaceNotFoundFailure::decode(bytes.as_slice())?.namespace,
        "missing"
    );

    let started = client
        .start_workflow_execution(start_request("wf-1", "req-1"))
        .await?
        .into_inner();
    assert!(started.started && started.run_id.len() == 36);
    let retried = client
        .start_workflow_execution(start_request("wf-1", "req-1"))
        .await?
        .into_inner();
    assert_eq!(
        (retried.run_id.as_str(), retried.started),
        (started.run_id.as_str(), false),
        "a retried start returns the same run"
    );
    let err = client
        .start_workflow_execution(start_request("wf-1", "req-2"))
        .await
        .expect_err("workflow id in use");
    assert_eq!(err.code(), Code::AlreadyExists);
    let (url, bytes) = detail(&err);
    assert_eq!(
        url,
        "type.googleapis.com/temporal.api.errordetails.v1.WorkflowExecutionAlreadyStartedFailure"
    );
    let d = details::WorkflowExecutionAlreadyStartedFailure::decode(bytes.as_slice())?;
    assert_eq!(
        (d.run_id.as_str(), d.start_request_id.as_str()),
        (started.run_id.as_str(), "req-1")
    );

    let execution = Some(WorkflowExecution {
        workflow_id: "wf-1".into(),
        run_id: String::new(),
    });
    client
        .signal_workflow_execution(api::SignalWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: execution.clone(),
            signal_name: "go".into(),
            request_id: "sig-1".into(),
            ..Default::default()
        })
        .await?;
    client
        .terminate_workflow_execution(api::TerminateWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: execution.clone(),
            reason: "done testing".into(),
            ..Default::default()
        })
        .await?;
    let err = client
        .signal_workflow_execution(api::SignalWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: execution,
            signal_name: "late".into(),
            ..Default::default()
        })
        .await
        .expect_err("signal to a closed run");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        detail(&err).0,
        "type.googleapis.com/temporal.api.errordetails.v1.NotFoundFailure"
    );

    // The engine wrote the history on every node.
    let d = c.wait_converged(WAIT).await?;
    assert!(d.key_count > 0);
    let run = keel_engine::workflow::RunKey {
        namespace: "default".into(),
        workflow_id: "wf-1".into(),
        run_id: started.run_id.clone(),
    };
    let history = keel_engine::workflow::read_history(c.node(leader).raft().state(), &run, 1, 100)?;
    let types: Vec<&str> = history.iter().map(|e| e.event_type()).collect();
    assert_eq!(
        types,
        [
            "WorkflowExecutionStarted",
            "WorkflowTaskScheduled",
            "WorkflowExecutionSignaled",
            "WorkflowExecutionTerminated"
        ]
    );

    // History as the SDKs read it: all events, and the close event alone.
    let all = client
        .get_workflow_execution_history(api::GetWorkflowExecutionHistoryRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: "wf-1".into(),
                run_id: String::new(),
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let events = all.history.unwrap().events;
    let ids: Vec<i64> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert!(events
        .iter()
        .all(|e| e.event_time.is_some() && e.attributes.is_some()));
    assert!(all.next_page_token.is_empty());
    let close = client
        .get_workflow_execution_history(api::GetWorkflowExecutionHistoryRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: "wf-1".into(),
                run_id: started.run_id.clone(),
            }),
            history_event_filter_type: 2, // CLOSE_EVENT
            wait_new_event: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let close_events = close.history.unwrap().events;
    assert_eq!(close_events.len(), 1, "exactly the close event");
    assert_eq!(close_events[0].event_id, 4);

    // A long poll on a running run answers before the caller's deadline, then sees new events.
    client
        .start_workflow_execution(start_request("wf-2", "req-w2"))
        .await?;
    let wf2 = Some(WorkflowExecution {
        workflow_id: "wf-2".into(),
        run_id: String::new(),
    });
    let mut poll = tonic::Request::new(api::GetWorkflowExecutionHistoryRequest {
        namespace: "default".into(),
        execution: wf2.clone(),
        history_event_filter_type: 2,
        wait_new_event: true,
        ..Default::default()
    });
    poll.set_timeout(Duration::from_secs(3));
    let started_at = std::time::Instant::now();
    let empty = client
        .get_workflow_execution_history(poll)
        .await?
        .into_inner();
    assert!(
        started_at.elapsed() < Duration::from_secs(3),
        "answered before the deadline"
    );
    assert!(empty.history.unwrap().events.is_empty());
    assert!(
        !empty.next_page_token.is_empty(),
        "a running run keeps the token set"
    );
    let first_page = client
        .get_workflow_execution_history(api::GetWorkflowExecutionHistoryRequest {
            namespace: "default".into(),
            execution: wf2.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(first_page.history.unwrap().events.len(), 2);
    let mut waiter = client.clone();
    let token = {
        let mut t = 3i64.to_be_bytes().to_vec();
        t.extend_from_slice(b"");
        t
    };
    let wait = tokio::spawn({
        let wf2 = wf2.clone();
        async move {
            let mut req = tonic::Request::new(api::GetWorkflowExecutionHistoryRequest {
                namespace: "default".into(),
                execution: wf2,
                next_page_token: token,
                wait_new_event: true,
                ..Default::default()
            });
            req.set_timeout(Duration::from_secs(15));
            waiter.get_workflow_execution_history(req).await
        }
    });
    client
        .signal_workflow_execution(api::SignalWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: wf2.clone(),
            signal_name: "wake".into(),
            ..Default::default()
        })
        .await?;
    let woke = wait.await??.into_inner();
    let new_events = woke.history.unwrap().events;
    assert_eq!(new_events.len(), 1, "{new_events:?}");
    assert_eq!(new_events[0].event_id, 3);

    // A wait for the close event alone sleeps through the run's steps and wakes when it closes.
    use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;
    let mut closer = client.clone();
    let wait_close = tokio::spawn({
        let wf2 = wf2.clone();
        async move {
            let mut req = tonic::Request::new(api::GetWorkflowExecutionHistoryRequest {
                namespace: "default".into(),
                execution: wf2,
                history_event_filter_type: 2,
                wait_new_event: true,
                ..Default::default()
            });
            req.set_timeout(Duration::from_secs(15));
            closer.get_workflow_execution_history(req).await
        }
    });
    client
        .signal_workflow_execution(api::SignalWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: wf2.clone(),
            signal_name: "again".into(),
            ..Default::default()
        })
        .await?;
    client
        .terminate_workflow_execution(api::TerminateWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: wf2,
            reason: "done waiting".into(),
            ..Default::default()
        })
        .await?;
    let closed = wait_close.await??.into_inner();
    let closed = closed.history.unwrap().events;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(
        matches!(
            closed[0].attributes,
            Some(EA::WorkflowExecutionTerminatedEventAttributes(_))
        ),
        "{closed:?}"
    );

    // Updates are served (tests/sdk/tests/sdk_updates.rs); a request naming no execution is
    // refused as Temporal refuses it.
    let err = client
        .update_workflow_execution(api::UpdateWorkflowExecutionRequest {
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .expect_err("no execution named");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t81_tasks_flow_through_polls_and_responses_with_a_durable_timer() -> anyhow::Result<()> {
    use temporalio_protos::temporal::api::command::v1::{
        command::Attributes as CA, Command, CompleteWorkflowExecutionCommandAttributes,
        ScheduleActivityTaskCommandAttributes, StartTimerCommandAttributes,
    };
    use temporalio_protos::temporal::api::common::v1::{ActivityType, Payload, Payloads};
    use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;

    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    let started = client
        .start_workflow_execution(start_request("order-1", "req-o1"))
        .await?
        .into_inner();
    let queue = Some(TaskQueue {
        name: "tq".into(),
        kind: 1,
        ..Default::default()
    });
    let poll_wft = |client: WorkflowServiceClient<Channel>| {
        poll_wft(client, normal_queue("tq"), "worker-1", 5)
    };

    // Task 1: schedule an activity and a 300 ms durable timer.
    let task = poll_wft(client.clone()).await?;
    assert!(!task.task_token.is_empty());
    assert_eq!(
        (
            task.started_event_id,
            task.previous_started_event_id,
            task.attempt
        ),
        (3, 0, 1)
    );
    assert_eq!(task.history.as_ref().unwrap().events.len(), 3);
    let payload = |s: &str| Payloads {
        payloads: vec![Payload {
            data: s.as_bytes().to_vec(),
            ..Default::default()
        }],
    };
    client
        .respond_workflow_task_completed(api::RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token.clone(),
            identity: "worker-1".into(),
            namespace: "default".into(),
            commands: vec![
                Command {
                    command_type: 1,
                    attributes: Some(CA::ScheduleActivityTaskCommandAttributes(
                        ScheduleActivityTaskCommandAttributes {
                            activity_id: "charge".into(),
                            activity_type: Some(ActivityType {
                                name: "charge".into(),
                            }),
                            input: Some(payload("card")),
                            start_to_close_timeout: Some(keel_proto::prost_wkt_types::Duration {
                                seconds: 10,
                                nanos: 0,
                            }),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                },
                Command {
                    command_type: 3,
                    attributes: Some(CA::StartTimerCommandAttributes(
                        StartTimerCommandAttributes {
                            timer_id: "wait".into(),
                            start_to_fire_timeout: Some(keel_proto::prost_wkt_types::Duration {
                                seconds: 0,
                                nanos: 300_000_000,
                            }),
                        },
                    )),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .await?;
    let err = client
        .respond_workflow_task_completed(api::RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token.clone(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .expect_err("a used token");
    assert_eq!(err.code(), Code::NotFound);

    // The activity: polled and completed through the follower.
    let mut req = tonic::Request::new(api::PollActivityTaskQueueRequest {
        namespace: "default".into(),
        task_queue: queue.clone(),
        identity: "worker-1".into(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(5));
    let act = client.poll_activity_task_queue(req).await?.into_inner();
    assert_eq!((act.activity_id.as_str(), act.attempt), ("charge", 1));
    assert_eq!(act.input, Some(payload("card")));
    // Both timeouts are always present, the unset one as 0 (the run has no timeout): the
    // TypeScript worker fails an activity task that lacks either.
    let secs = |d: &Option<keel_proto::prost_wkt_types::Duration>| d.as_ref().map(|d| d.seconds);
    assert_eq!(
        (
            secs(&act.start_to_close_timeout),
            secs(&act.schedule_to_close_timeout)
        ),
        (Some(10), Some(0)),
        "start-to-close as asked, schedule-to-close present and unlimited"
    );
    client
        .respond_activity_task_completed(api::RespondActivityTaskCompletedRequest {
            task_token: act.task_token,
            result: Some(payload("charged")),
            identity: "worker-1".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await?;

    // Workflow tasks until both the activity result and the timer are in history.
    let mut done = false;
    for _ in 0..6 {
        let task = poll_wft(client.clone()).await?;
        if task.task_token.is_empty() {
            continue; // an empty poll (all-default message): poll again
        }
        let events = &task.history.as_ref().unwrap().events;
        let ids: Vec<i64> = events.iter().map(|e| e.event_id).collect();
        assert_eq!(
            ids,
            (1..=task.started_event_id).collect::<Vec<_>>(),
            "history runs 1..=started"
        );
        for e in events {
            if let Some(EA::ActivityTaskScheduledEventAttributes(a)) = &e.attributes {
                assert_eq!(
                    (
                        secs(&a.start_to_close_timeout),
                        secs(&a.schedule_to_start_timeout),
                        secs(&a.schedule_to_close_timeout)
                    ),
                    (Some(10), Some(0), Some(0)),
                    "the scheduled event records the normalized timeouts, unset ones as 0"
                );
            }
        }
        let completed = events.iter().any(|e| {
            matches!(
                e.attributes,
                Some(EA::ActivityTaskCompletedEventAttributes(_))
            )
        });
        let fired = events
            .iter()
            .any(|e| matches!(e.attributes, Some(EA::TimerFiredEventAttributes(_))));
        let commands = if completed && fired {
            vec![Command {
                command_type: 4,
                attributes: Some(CA::CompleteWorkflowExecutionCommandAttributes(
                    CompleteWorkflowExecutionCommandAttributes {
                        result: Some(payload("delivered")),
                    },
                )),
                ..Default::default()
            }]
        } else {
            vec![]
        };
        client
            .respond_workflow_task_completed(api::RespondWorkflowTaskCompletedRequest {
                task_token: task.task_token,
                identity: "worker-1".into(),
                namespace: "default".into(),
                commands,
                ..Default::default()
            })
            .await?;
        if completed && fired {
            done = true;
            break;
        }
    }
    assert!(done, "the timer fired and the activity result arrived");
    let close = client
        .get_workflow_execution_history(api::GetWorkflowExecutionHistoryRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: "order-1".into(),
                run_id: started.run_id,
            }),
            history_event_filter_type: 2,
            wait_new_event: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    match &close.history.unwrap().events[0].attributes {
        Some(EA::WorkflowExecutionCompletedEventAttributes(a)) => {
            assert_eq!(a.result, Some(payload("delivered")))
        }
        other => panic!("{other:?}"),
    }
    c.wait_converged(WAIT).await?;
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t82_signal_with_start_both_ways_and_describe() -> anyhow::Result<()> {
    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    let sws = |request_id: &str| api::SignalWithStartWorkflowExecutionRequest {
        namespace: "default".into(),
        workflow_id: "sws-1".into(),
        workflow_type: Some(WorkflowType {
            name: "hello".into(),
        }),
        task_queue: Some(TaskQueue {
            name: "tq".into(),
            ..Default::default()
        }),
        signal_name: "go".into(),
        request_id: request_id.into(),
        ..Default::default()
    };
    let first = client
        .signal_with_start_workflow_execution(sws("a"))
        .await?
        .into_inner();
    assert!(first.started);
    let second = client
        .signal_with_start_workflow_execution(sws("b"))
        .await?
        .into_inner();
    assert_eq!(
        (second.run_id.as_str(), second.started),
        (first.run_id.as_str(), false),
        "signals the running run"
    );

    let d = client
        .describe_workflow_execution(api::DescribeWorkflowExecutionRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: "sws-1".into(),
                run_id: String::new(),
            }),
        })
        .await?
        .into_inner();
    let info = d.workflow_execution_info.unwrap();
    assert_eq!(info.execution.unwrap().run_id, first.run_id);
    assert_eq!(info.status, 1, "RUNNING");
    // Started, Signaled, WorkflowTaskScheduled, Signaled.
    assert_eq!(info.history_length, 4);
    assert_eq!(
        d.pending_workflow_task.unwrap().state,
        1,
        "scheduled, not started"
    );
    assert_eq!(
        d.execution_config
            .unwrap()
            .default_workflow_task_timeout
            .unwrap()
            .seconds,
        10
    );
    let cluster = client
        .get_cluster_info(api::GetClusterInfoRequest {})
        .await?
        .into_inner();
    assert_eq!(cluster.cluster_id, "keel-test");
    let attrs = client
        .get_search_attributes(api::GetSearchAttributesRequest {})
        .await?
        .into_inner();
    assert!(attrs.keys.contains_key("WorkflowType") && attrs.keys.contains_key("ExecutionStatus"));
    let err = client
        .describe_workflow_execution(api::DescribeWorkflowExecutionRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: "nope".into(),
                run_id: String::new(),
            }),
        })
        .await
        .expect_err("unknown workflow");
    assert_eq!(err.code(), Code::NotFound);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t83_legacy_queries_wait_for_the_started_task_then_answer_fail_reject_or_time_out(
) -> anyhow::Result<()> {
    use temporalio_protos::temporal::api::command::v1::{
        command::Attributes as CA, Command, StartTimerCommandAttributes,
    };
    use temporalio_protos::temporal::api::common::v1::{Payload, Payloads};
    use temporalio_protos::temporal::api::failure::v1::Failure;
    use temporalio_protos::temporal::api::query::v1::WorkflowQuery;

    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    client
        .start_workflow_execution(start_request("q-1", "req-q1"))
        .await?;
    let poll = |client: WorkflowServiceClient<Channel>, secs: u64| {
        poll_wft(client, normal_queue("tq"), "worker-1", secs)
    };
    let query = |mut client: WorkflowServiceClient<Channel>, id: &str, secs: u64| {
        let mut req = tonic::Request::new(api::QueryWorkflowRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: id.into(),
                run_id: String::new(),
            }),
            query: Some(WorkflowQuery {
                query_type: "status".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        req.set_timeout(Duration::from_secs(secs));
        async move { client.query_workflow(req).await.map(|r| r.into_inner()) }
    };

    let task = poll(client.clone(), 5).await?;
    assert_eq!(task.started_event_id, 3);
    // A query arriving while the workflow task is started waits for it to finish.
    let pending = tokio::spawn(query(client.clone(), "q-1", 15));
    let empty = poll(client.clone(), 2).await?;
    assert!(
        empty.task_token.is_empty(),
        "no query task while a workflow task is started"
    );
    client
        .respond_workflow_task_completed(api::RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token.clone(),
            namespace: "default".into(),
            commands: vec![Command {
                command_type: 3,
                attributes: Some(CA::StartTimerCommandAttributes(
                    StartTimerCommandAttributes {
                        timer_id: "long".into(),
                        start_to_fire_timeout: Some(keel_proto::prost_wkt_types::Duration {
                            seconds: 3_600,
                            nanos: 0,
                        }),
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await?;
    let qt = poll(client.clone(), 5).await?;
    assert_eq!(
        qt.query.as_ref().map(|q| q.query_type.as_str()),
        Some("status")
    );
    assert_eq!((qt.started_event_id, qt.previous_started_event_id), (0, 3));
    assert_eq!(qt.history.as_ref().unwrap().events.len(), 5, "full history");
    client
        .respond_query_task_completed(api::RespondQueryTaskCompletedRequest {
            task_token: qt.task_token.clone(),
            completed_type: 2, // FAILED
            error_message: "no such query".into(),
            namespace: "default".into(),
            failure: Some(Failure {
                message: "no such query".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    let failed = pending.await?.expect_err("the worker failed the query");
    assert_eq!(failed.code(), Code::InvalidArgument);
    let (type_url, value) = detail(&failed);
    assert!(type_url.ends_with("temporal.api.errordetails.v1.QueryFailedFailure"));
    let f = details::QueryFailedFailure::decode(value.as_slice())?;
    assert_eq!(f.failure.unwrap().message, "no such query");

    // Answered: the result comes back as sent.
    let pending = tokio::spawn(query(client.clone(), "q-1", 15));
    let qt = poll(client.clone(), 5).await?;
    let result = Payloads {
        payloads: vec![Payload {
            data: b"\"waiting\"".to_vec(),
            ..Default::default()
        }],
    };
    client
        .respond_query_task_completed(api::RespondQueryTaskCompletedRequest {
            task_token: qt.task_token.clone(),
            completed_type: 1, // ANSWERED
            query_result: Some(result.clone()),
            namespace: "default".into(),
            ..Default::default()
        })
        .await?;
    assert_eq!(pending.await??.query_result, Some(result));
    let again = client
        .respond_query_task_completed(api::RespondQueryTaskCompletedRequest {
            task_token: qt.task_token.clone(),
            completed_type: 1,
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .expect_err("a query is answered once");
    assert_eq!(again.code(), Code::NotFound);

    // Nobody polls: DEADLINE_EXCEEDED from the server, before the caller's own deadline.
    let timed_out = query(client.clone(), "q-1", 3)
        .await
        .expect_err("no worker answers");
    assert_eq!(timed_out.code(), Code::DeadlineExceeded);
    assert!(
        timed_out.message().contains("no worker answered"),
        "{timed_out:?}"
    );

    // Closed runs are rejected on request, and unknown workflows are NOT_FOUND.
    client
        .terminate_workflow_execution(api::TerminateWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: Some(WorkflowExecution {
                workflow_id: "q-1".into(),
                run_id: String::new(),
            }),
            reason: "done".into(),
            ..Default::default()
        })
        .await?;
    let mut req = tonic::Request::new(api::QueryWorkflowRequest {
        namespace: "default".into(),
        execution: Some(WorkflowExecution {
            workflow_id: "q-1".into(),
            run_id: String::new(),
        }),
        query: Some(WorkflowQuery {
            query_type: "status".into(),
            ..Default::default()
        }),
        query_reject_condition: 2, // NOT_OPEN
    });
    req.set_timeout(Duration::from_secs(5));
    let rejected = client.query_workflow(req).await?.into_inner();
    assert_eq!(rejected.query_rejected.map(|r| r.status), Some(5)); // TERMINATED
    let missing = query(client.clone(), "nope", 5)
        .await
        .expect_err("unknown workflow");
    assert_eq!(missing.code(), Code::NotFound);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t84_list_and_count_filter_page_and_order_newest_first() -> anyhow::Result<()> {
    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    for i in 0..5 {
        let mut req = start_request(&format!("v-{i}"), &format!("req-v{i}"));
        if i % 2 == 1 {
            req.workflow_type = Some(WorkflowType {
                name: "other".into(),
            });
        }
        client.start_workflow_execution(req).await?;
    }
    client
        .terminate_workflow_execution(api::TerminateWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: Some(WorkflowExecution {
                workflow_id: "v-0".into(),
                run_id: String::new(),
            }),
            ..Default::default()
        })
        .await?;
    let list = |mut client: WorkflowServiceClient<Channel>, query: &str, size: i32, token| {
        let req = api::ListWorkflowExecutionsRequest {
            namespace: "default".into(),
            page_size: size,
            next_page_token: token,
            query: query.into(),
        };
        async move {
            client
                .list_workflow_executions(req)
                .await
                .map(|r| r.into_inner())
        }
    };
    // Runs started in the same millisecond may come in either order: compare as sets, and
    // check the order through the start times returned.
    let ids = |r: &api::ListWorkflowExecutionsResponse| -> std::collections::BTreeSet<String> {
        r.executions
            .iter()
            .map(|e| e.execution.as_ref().unwrap().workflow_id.clone())
            .collect()
    };
    let set = |v: &[&str]| -> std::collections::BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    };

    // Paging through everything: newest first, pages of two, the last token empty.
    let mut seen = Vec::new();
    let mut starts = Vec::new();
    let mut token = Vec::new();
    loop {
        let page = list(client.clone(), "ORDER BY StartTime DESC", 2, token).await?;
        assert!(page.executions.len() <= 2);
        for e in &page.executions {
            seen.push(e.execution.as_ref().unwrap().workflow_id.clone());
            let t = e.start_time.as_ref().unwrap();
            starts.push((t.seconds, t.nanos));
        }
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 5, "each run listed once: {seen:?}");
    assert_eq!(
        seen.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        set(&["v-0", "v-1", "v-2", "v-3", "v-4"])
    );
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );

    let others = list(client.clone(), "WorkflowType = 'other'", 0, vec![]).await?;
    assert_eq!(ids(&others), set(&["v-3", "v-1"]));
    let running_hello = list(
        client.clone(),
        "WorkflowType='hello' and ExecutionStatus = 'Running' AND TaskQueue = \"tq\"",
        0,
        vec![],
    )
    .await?;
    assert_eq!(ids(&running_hello), set(&["v-4", "v-2"]));
    let terminated = list(client.clone(), "ExecutionStatus = 'Terminated'", 0, vec![]).await?;
    assert_eq!(ids(&terminated), set(&["v-0"]));
    assert_eq!(terminated.executions[0].status, 5);
    assert!(terminated.executions[0].close_time.is_some());

    let count = |mut client: WorkflowServiceClient<Channel>, query: &str| {
        let req = api::CountWorkflowExecutionsRequest {
            namespace: "default".into(),
            query: query.into(),
        };
        async move {
            client
                .count_workflow_executions(req)
                .await
                .map(|r| r.into_inner().count)
        }
    };
    assert_eq!(count(client.clone(), "").await?, 5);
    assert_eq!(
        count(client.clone(), "ExecutionStatus = 'Running'").await?,
        4
    );
    assert_eq!(count(client.clone(), "WorkflowId = 'v-3'").await?, 1);

    for bad in [
        "StartTime > '2020-01-01'",
        "NotAnAttribute = 'a' OR WorkflowId = 'b'",
        "WorkflowId LIKE 'a%'",
    ] {
        let err = list(client.clone(), bad, 0, vec![]).await.expect_err(bad);
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
        let err = count(client.clone(), bad).await.expect_err(bad);
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    let err = list(client.clone(), "", 0, b"garbage".to_vec())
        .await
        .expect_err("foreign token");
    assert_eq!(err.code(), Code::InvalidArgument);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t85_activities_complete_fail_and_heartbeat_by_id() -> anyhow::Result<()> {
    use temporalio_protos::temporal::api::command::v1::{
        command::Attributes as CA, Command, ScheduleActivityTaskCommandAttributes,
    };
    use temporalio_protos::temporal::api::common::v1::{ActivityType, Payload, Payloads};
    use temporalio_protos::temporal::api::failure::v1::{
        failure::FailureInfo, ApplicationFailureInfo, Failure,
    };
    use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;

    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    let started = client
        .start_workflow_execution(start_request("byid-1", "req-b1"))
        .await?
        .into_inner();
    let queue = Some(TaskQueue {
        name: "tq".into(),
        kind: 1,
        ..Default::default()
    });
    let task = poll_wft(client.clone(), normal_queue("tq"), "", 5).await?;
    let schedule = |id: &str| Command {
        command_type: 1,
        attributes: Some(CA::ScheduleActivityTaskCommandAttributes(
            ScheduleActivityTaskCommandAttributes {
                activity_id: id.into(),
                activity_type: Some(ActivityType { name: "op".into() }),
                start_to_close_timeout: Some(keel_proto::prost_wkt_types::Duration {
                    seconds: 30,
                    nanos: 0,
                }),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    client
        .respond_workflow_task_completed(api::RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token,
            namespace: "default".into(),
            commands: vec![schedule("a"), schedule("b")],
            ..Default::default()
        })
        .await?;
    for _ in 0..2 {
        let mut req = tonic::Request::new(api::PollActivityTaskQueueRequest {
            namespace: "default".into(),
            task_queue: queue.clone(),
            ..Default::default()
        });
        req.set_timeout(Duration::from_secs(5));
        let t = client.poll_activity_task_queue(req).await?.into_inner();
        assert!(!t.task_token.is_empty(), "both activities started");
    }
    let details = Payloads {
        payloads: vec![Payload {
            data: b"50%".to_vec(),
            ..Default::default()
        }],
    };
    let hb = client
        .record_activity_task_heartbeat_by_id(api::RecordActivityTaskHeartbeatByIdRequest {
            namespace: "default".into(),
            workflow_id: "byid-1".into(),
            activity_id: "a".into(),
            details: Some(details),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(!hb.cancel_requested);
    let by_id = |activity_id: &str| api::RespondActivityTaskCompletedByIdRequest {
        namespace: "default".into(),
        workflow_id: "byid-1".into(),
        run_id: started.run_id.clone(),
        activity_id: activity_id.into(),
        result: Some(Payloads {
            payloads: vec![Payload {
                data: b"done".to_vec(),
                ..Default::default()
            }],
        }),
        ..Default::default()
    };
    client
        .respond_activity_task_completed_by_id(by_id("a"))
        .await?;
    let again = client
        .respond_activity_task_completed_by_id(by_id("a"))
        .await
        .expect_err("completed already");
    assert_eq!(again.code(), Code::NotFound);
    let unknown = client
        .respond_activity_task_completed_by_id(by_id("zzz"))
        .await
        .expect_err("no such activity");
    assert_eq!(unknown.code(), Code::NotFound);
    client
        .respond_activity_task_failed_by_id(api::RespondActivityTaskFailedByIdRequest {
            namespace: "default".into(),
            workflow_id: "byid-1".into(),
            activity_id: "b".into(),
            failure: Some(Failure {
                message: "declined".into(),
                failure_info: Some(FailureInfo::ApplicationFailureInfo(
                    ApplicationFailureInfo {
                        r#type: "Declined".into(),
                        non_retryable: true,
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;

    let history = client
        .get_workflow_execution_history(api::GetWorkflowExecutionHistoryRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: "byid-1".into(),
                run_id: String::new(),
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .history
        .unwrap();
    let completed = history.events.iter().find_map(|e| match &e.attributes {
        Some(EA::ActivityTaskCompletedEventAttributes(a)) => Some(a.clone()),
        _ => None,
    });
    assert_eq!(
        completed
            .and_then(|a| a.result)
            .map(|p| p.payloads[0].data.clone()),
        Some(b"done".to_vec())
    );
    let failed = history.events.iter().find_map(|e| match &e.attributes {
        Some(EA::ActivityTaskFailedEventAttributes(a)) => Some(a.clone()),
        _ => None,
    });
    assert_eq!(
        failed.and_then(|a| a.failure).map(|f| f.message),
        Some("declined".to_string()),
        "a non-retryable failure by id fails the activity"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t86_sticky_polls_get_new_events_only_from_the_worker_that_has_the_run(
) -> anyhow::Result<()> {
    use temporalio_protos::temporal::api::taskqueue::v1::StickyExecutionAttributes;

    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    client
        .start_workflow_execution(start_request("sticky-1", "req-s1"))
        .await?;
    let poll = |client: WorkflowServiceClient<Channel>, sticky: &str| {
        let queue = TaskQueue {
            name: sticky.into(),
            kind: 2, // STICKY
            normal_name: "tq".into(),
        };
        poll_wft(client, queue, "worker", 5)
    };
    let signal = |mut client: WorkflowServiceClient<Channel>, id: &str| {
        let req = api::SignalWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: Some(WorkflowExecution {
                workflow_id: "sticky-1".into(),
                run_id: String::new(),
            }),
            signal_name: "go".into(),
            request_id: id.into(),
            ..Default::default()
        };
        async move { client.signal_workflow_execution(req).await }
    };
    let complete = |mut client: WorkflowServiceClient<Channel>, token: Vec<u8>, sticky: &str| {
        let req = api::RespondWorkflowTaskCompletedRequest {
            task_token: token,
            namespace: "default".into(),
            sticky_attributes: Some(StickyExecutionAttributes {
                worker_task_queue: Some(TaskQueue {
                    name: sticky.into(),
                    kind: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        async move { client.respond_workflow_task_completed(req).await }
    };

    // A sticky poll is served from the normal queue; the first task carries everything.
    let first = poll(client.clone(), "worker-a-sticky").await?;
    assert_eq!(first.history.as_ref().unwrap().events[0].event_id, 1);
    complete(client.clone(), first.task_token, "worker-a-sticky").await?;

    // Worker A's sticky poll gets only what happened since its task (ids 4..).
    signal(client.clone(), "sig-1").await?;
    let second = poll(client.clone(), "worker-a-sticky").await?;
    let ids: Vec<i64> = second
        .history
        .as_ref()
        .unwrap()
        .events
        .iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(second.previous_started_event_id, 3);
    assert_eq!(ids, (4..=second.started_event_id).collect::<Vec<_>>());
    complete(client.clone(), second.task_token, "worker-a-sticky").await?;

    // Another worker's sticky poll gets the full history: it has not seen the run.
    signal(client.clone(), "sig-2").await?;
    let third = poll(client.clone(), "worker-b-sticky").await?;
    let events = &third.history.as_ref().unwrap().events;
    assert_eq!(events[0].event_id, 1);
    assert_eq!(events.last().unwrap().event_id, third.started_event_id);

    // A worker known by its worker_instance_key: its normal-queue polls get only new events
    // too; another worker's normal poll gets everything.
    let mut done = api::RespondWorkflowTaskCompletedRequest {
        task_token: third.task_token,
        namespace: "default".into(),
        worker_instance_key: "key-b".into(),
        ..Default::default()
    };
    client.respond_workflow_task_completed(done.clone()).await?;
    let normal_poll = |mut client: WorkflowServiceClient<Channel>, key: &str| {
        let req = api::PollWorkflowTaskQueueRequest {
            namespace: "default".into(),
            task_queue: Some(TaskQueue {
                name: "tq".into(),
                kind: 1,
                ..Default::default()
            }),
            identity: "worker".into(),
            worker_instance_key: key.into(),
            ..Default::default()
        };
        async move {
            client
                .poll_workflow_task_queue(req)
                .await
                .map(|r| r.into_inner())
        }
    };
    signal(client.clone(), "sig-3").await?;
    let fourth = normal_poll(client.clone(), "key-b").await?;
    let first_id = fourth.history.as_ref().unwrap().events[0].event_id;
    assert_eq!(
        first_id,
        fourth.previous_started_event_id + 1,
        "only new events"
    );
    done.task_token = fourth.task_token;
    client.respond_workflow_task_completed(done).await?;
    signal(client.clone(), "sig-4").await?;
    let fifth = normal_poll(client.clone(), "key-c").await?;
    assert_eq!(fifth.history.as_ref().unwrap().events[0].event_id, 1);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t87_on_the_minority_side_writes_and_linearizable_reads_fail_unavailable_in_bounded_time(
) -> anyhow::Result<()> {
    let (c, leader, mut client) = cluster_and_follower_client().await?;
    client
        .start_workflow_execution(start_request("cp-1", "req-cp1"))
        .await?;
    // The client talks to the first follower; cut it off from its peers once it has applied
    // the start (the start is acknowledged at commit, which may precede its apply there).
    let cut = c.running().into_iter().find(|i| *i != leader).unwrap();
    let cp1 = keel_engine::workflow::RunKey {
        namespace: "default".into(),
        workflow_id: "cp-1".into(),
        run_id: String::new(),
    };
    let cut_state = c.node(cut).raft().clone();
    wait_for(WAIT, "the cut-off node has applied the start", || {
        let state = cut_state.clone();
        let run = cp1.clone();
        async move {
            keel_engine::workflow::resolve_run(state.state(), &run)
                .ok()
                .flatten()
        }
    })
    .await?;
    let bound = Duration::from_millis(c.config(cut).raft.leader_wait_ms) + Duration::from_secs(1);
    c.node(cut).raft().filter().set_isolated(true);

    let started = std::time::Instant::now();
    let err = client
        .start_workflow_execution(start_request("cp-2", "req-cp2"))
        .await
        .expect_err("a start on the minority side");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(
        started.elapsed() < bound,
        "start failed after {:?}",
        started.elapsed()
    );

    let started = std::time::Instant::now();
    let err = client
        .describe_workflow_execution(api::DescribeWorkflowExecutionRequest {
            namespace: "default".into(),
            execution: Some(WorkflowExecution {
                workflow_id: "cp-1".into(),
                run_id: String::new(),
            }),
        })
        .await
        .expect_err("a linearizable read on the minority side");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(
        started.elapsed() < bound,
        "describe failed after {:?}",
        started.elapsed()
    );

    // The pending workflow task is visible in this node's (stale) backlog: handing it out
    // needs a commit, so the poll fails retryably instead of giving the task away.
    let err = poll_wft(client.clone(), normal_queue("tq"), "minority-worker", 10)
        .await
        .expect_err("no task handed out without a quorum");
    assert_eq!(err.code(), Code::Unavailable, "{err}");

    c.node(cut).raft().filter().set_isolated(false);
    c.shutdown().await;
    Ok(())
}

/// A workflow-task poll by "sync-worker" on queue `tq`, once it is parked on `node`.
async fn park_sync_worker_poll(
    c: &LocalCluster,
    node: u64,
    client: &WorkflowServiceClient<Channel>,
) -> anyhow::Result<
    tokio::task::JoinHandle<Result<api::PollWorkflowTaskQueueResponse, tonic::Status>>,
> {
    let waiting = tokio::spawn(poll_wft(
        client.clone(),
        normal_queue("tq"),
        "sync-worker",
        10,
    ));
    let frontend = c.node(node).frontend();
    wait_for(WAIT, "the workflow-task poll is parked", || async {
        (frontend.parked_polls("default", "tq") == 1).then_some(())
    })
    .await?;
    Ok(waiting)
}

/// Checks, right after a request was acknowledged, that workflow `id`'s workflow task is
/// already started on the leader (dispatched in the request's own entry) and that the poll
/// parked on `node` got exactly that task; returns the task's history.
async fn handed_off_in_the_same_entry(
    c: &LocalCluster,
    leader: u64,
    node: u64,
    id: &str,
    waiting: tokio::task::JoinHandle<Result<api::PollWorkflowTaskQueueResponse, tonic::Status>>,
) -> anyhow::Result<Vec<temporalio_protos::temporal::api::history::v1::HistoryEvent>> {
    use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;
    let run = keel_engine::workflow::RunKey {
        namespace: "default".into(),
        workflow_id: id.into(),
        run_id: String::new(),
    };
    let ms = keel_engine::workflow::resolve_run(c.node(leader).raft().state(), &run)?
        .expect("the run exists");
    let wft = ms.workflow_task.expect("a workflow task");
    assert!(
        wft.started_event_id > 0,
        "started in the same entry: {wft:?}"
    );
    let task = waiting.await??;
    assert_eq!(task.started_event_id, wft.started_event_id);
    let events = task.history.expect("history").events;
    match &events.last().expect("events").attributes {
        Some(EA::WorkflowTaskStartedEventAttributes(a)) => assert_eq!(a.identity, "sync-worker"),
        other => panic!("history should end with the started task: {other:?}"),
    }
    assert_eq!(c.node(node).frontend().parked_polls("default", "tq"), 0);
    Ok(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t88_an_activity_completion_hands_the_next_workflow_task_to_a_parked_poll_in_its_own_entry(
) -> anyhow::Result<()> {
    use temporalio_protos::temporal::api::command::v1::{
        command::Attributes as CA, Command, ScheduleActivityTaskCommandAttributes,
    };
    use temporalio_protos::temporal::api::common::v1::ActivityType;
    use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;

    let (c, leader, mut client) = cluster_and_follower_client().await?;
    let follower = c.running().into_iter().find(|i| *i != leader).unwrap();
    client
        .start_workflow_execution(start_request("sm-1", "req-sm1"))
        .await?;
    let task = poll_wft(client.clone(), normal_queue("tq"), "worker-1", 5).await?;
    client
        .respond_workflow_task_completed(api::RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token,
            identity: "worker-1".into(),
            namespace: "default".into(),
            commands: vec![Command {
                command_type: 1,
                attributes: Some(CA::ScheduleActivityTaskCommandAttributes(
                    ScheduleActivityTaskCommandAttributes {
                        activity_id: "a".into(),
                        activity_type: Some(ActivityType { name: "a".into() }),
                        start_to_close_timeout: Some(keel_proto::prost_wkt_types::Duration {
                            seconds: 10,
                            nanos: 0,
                        }),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await?;
    let mut req = tonic::Request::new(api::PollActivityTaskQueueRequest {
        namespace: "default".into(),
        task_queue: Some(normal_queue("tq")),
        identity: "worker-1".into(),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(5));
    let act = client.poll_activity_task_queue(req).await?.into_inner();
    assert!(!act.task_token.is_empty(), "the activity is handed out");

    // A workflow-task poll waits (parked) on the follower the worker talks to.
    let waiting = park_sync_worker_poll(&c, follower, &client).await?;

    client
        .respond_activity_task_completed(api::RespondActivityTaskCompletedRequest {
            task_token: act.task_token,
            identity: "worker-1".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await?;
    // Acknowledged means applied on the leader: the workflow task the completion scheduled
    // is already started there — dispatched in the completion's own entry, not by a later poll.
    let events = handed_off_in_the_same_entry(&c, leader, follower, "sm-1", waiting).await?;
    assert!(events.iter().any(|e| matches!(
        e.attributes,
        Some(EA::ActivityTaskCompletedEventAttributes(_))
    )));
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t89_a_start_hands_the_first_workflow_task_to_a_parked_poll_in_its_own_entry(
) -> anyhow::Result<()> {
    use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;

    let (c, leader, client) = cluster_and_follower_client().await?;
    let follower = c.running().into_iter().find(|i| *i != leader).unwrap();
    // A workflow-task poll waits (parked) on the follower the client talks to.
    let waiting = park_sync_worker_poll(&c, follower, &client).await?;

    client
        .clone()
        .start_workflow_execution(start_request("sm-start", "req-sm-start"))
        .await?;
    // Acknowledged means applied on the leader: the first workflow task is already started
    // there, dispatched in the start's own entry rather than by a later poll.
    let events = handed_off_in_the_same_entry(&c, leader, follower, "sm-start", waiting).await?;
    assert!(matches!(
        events.first().and_then(|e| e.attributes.as_ref()),
        Some(EA::WorkflowExecutionStartedEventAttributes(_))
    ));
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t90_an_unsupported_command_is_refused_naming_it_and_the_task_stays_completable(
) -> anyhow::Result<()> {
    use temporalio_protos::temporal::api::command::v1::{
        command::Attributes as CA, Command, CompleteWorkflowExecutionCommandAttributes,
        ScheduleNexusOperationCommandAttributes,
    };
    use temporalio_protos::temporal::api::enums::v1::{CommandType, EventType};

    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    let started = client
        .start_workflow_execution(start_request("can-1", "req-can-1"))
        .await?
        .into_inner();
    let task = poll_wft(client.clone(), normal_queue("tq"), "worker-1", 5).await?;
    assert!(!task.task_token.is_empty(), "the first workflow task");
    let complete = |commands: Vec<Command>| api::RespondWorkflowTaskCompletedRequest {
        task_token: task.task_token.clone(),
        identity: "worker-1".into(),
        namespace: "default".into(),
        commands,
        ..Default::default()
    };

    let err = client
        .respond_workflow_task_completed(complete(vec![Command {
            command_type: CommandType::ScheduleNexusOperation as i32,
            attributes: Some(CA::ScheduleNexusOperationCommandAttributes(
                ScheduleNexusOperationCommandAttributes::default(),
            )),
            ..Default::default()
        }]))
        .await
        .expect_err("Nexus operations are not implemented");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "SCHEDULE_NEXUS_OPERATION is not supported by this server yet"
    );

    // Nothing was written, and the same task can still be completed.
    let history = |client: &mut WorkflowServiceClient<Channel>| {
        let mut client = client.clone();
        let run_id = started.run_id.clone();
        async move {
            let events = client
                .get_workflow_execution_history(api::GetWorkflowExecutionHistoryRequest {
                    namespace: "default".into(),
                    execution: Some(WorkflowExecution {
                        workflow_id: "can-1".into(),
                        run_id,
                    }),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .history
                .unwrap_or_default()
                .events;
            anyhow::Ok(events.iter().map(|e| e.event_type()).collect::<Vec<_>>())
        }
    };
    assert_eq!(
        history(&mut client).await?,
        vec![
            EventType::WorkflowExecutionStarted,
            EventType::WorkflowTaskScheduled,
            EventType::WorkflowTaskStarted
        ],
        "the refused completion left no events"
    );
    client
        .respond_workflow_task_completed(complete(vec![Command {
            command_type: CommandType::CompleteWorkflowExecution as i32,
            attributes: Some(CA::CompleteWorkflowExecutionCommandAttributes(
                CompleteWorkflowExecutionCommandAttributes::default(),
            )),
            ..Default::default()
        }]))
        .await?;
    assert_eq!(
        history(&mut client).await?.last(),
        Some(&EventType::WorkflowExecutionCompleted)
    );
    c.shutdown().await;
    Ok(())
}

/// An in-process crash is what a dying process is to its clients: the node's connections
/// drop (a parked long poll fails at once instead of running out its budget), and its
/// storage is released, so the node restarts on its data dir straight away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t91_a_crashed_node_drops_its_client_connections_and_restarts_at_once() -> anyhow::Result<()>
{
    let (mut c, leader, client) = cluster_and_follower_client().await?;
    let follower = c.running().into_iter().find(|i| *i != leader).unwrap();
    let parked = tokio::spawn(poll_wft(client.clone(), normal_queue("t91"), "w", 60));
    let frontend = c.node(follower).frontend();
    wait_for(WAIT, "the workflow-task poll is parked", || async {
        (frontend.parked_polls("default", "t91") == 1).then_some(())
    })
    .await?;

    c.crash(follower).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .map_err(|_| anyhow::anyhow!("the parked poll outlived its node's crash by 5 s"))??;
    let status = ended.expect_err("a crashed node answers no poll");
    assert_ne!(status.code(), Code::Ok);

    let restarting = std::time::Instant::now();
    c.restart(follower).await?;
    assert!(
        restarting.elapsed() < Duration::from_secs(5),
        "restart took {:?}: the crashed incarnation held its storage",
        restarting.elapsed()
    );
    c.wait_converged(WAIT).await?;
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_a_heartbeat_completion_returns_the_next_task_with_the_history_its_worker_needs(
) -> anyhow::Result<()> {
    use temporalio_protos::temporal::api::taskqueue::v1::StickyExecutionAttributes;

    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    client
        .start_workflow_execution(start_request("beat-1", "req-b1"))
        .await?;
    let first = poll_wft(client.clone(), normal_queue("tq"), "worker", 5).await?;
    let heartbeat = |mut client: WorkflowServiceClient<Channel>, token: Vec<u8>, sticky: &str| {
        let req = api::RespondWorkflowTaskCompletedRequest {
            task_token: token,
            namespace: "default".into(),
            identity: "worker".into(),
            force_create_new_workflow_task: true,
            return_new_workflow_task: true,
            sticky_attributes: (!sticky.is_empty()).then(|| StickyExecutionAttributes {
                worker_task_queue: Some(TaskQueue {
                    name: sticky.into(),
                    kind: 2,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        async move {
            client
                .respond_workflow_task_completed(req)
                .await
                .map(|r| r.into_inner())
        }
    };
    let ids = |t: &api::PollWorkflowTaskQueueResponse| -> Vec<i64> {
        t.history
            .as_ref()
            .map(|h| h.events.iter().map(|e| e.event_id).collect())
            .unwrap_or_default()
    };

    // Without a sticky queue the worker may not have the run: the full history.
    let second = heartbeat(client.clone(), first.task_token.clone(), "")
        .await?
        .workflow_task
        .expect("the next task is returned");
    assert_eq!(
        (second.started_event_id, second.previous_started_event_id),
        (6, 3)
    );
    assert_eq!(ids(&second), (1..=6).collect::<Vec<_>>());
    assert_eq!(
        second
            .workflow_execution_task_queue
            .as_ref()
            .map(|q| (q.name.as_str(), q.kind)),
        Some(("tq", 1))
    );
    assert_eq!(
        second.workflow_execution.as_ref().unwrap().workflow_id,
        "beat-1"
    );

    // With a sticky queue the worker has the run cached: only what is new.
    let third = heartbeat(client.clone(), second.task_token.clone(), "worker-sticky")
        .await?
        .workflow_task
        .expect("the next task is returned");
    assert_eq!(ids(&third), vec![7, 8, 9]);

    // The spent token is refused; nothing was left for pollers.
    let again = heartbeat(client.clone(), second.task_token, "worker-sticky").await;
    assert_eq!(again.unwrap_err().code(), Code::NotFound);
    let empty = poll_wft(client.clone(), normal_queue("tq"), "other", 1).await?;
    assert!(
        empty.task_token.is_empty(),
        "a returned task is never also in the backlog"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_the_health_service_answers_gzip_compressed_checks() -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let c = LocalCluster::start(1, |_| {}).await?;
    c.wait_for_leader(WAIT).await?;
    let id = c.running()[0];
    let channel = Channel::from_shared(format!("http://{}", c.node(id).client_addr()))?
        .connect()
        .await?;
    // As the Python SDK's check_health sends it: compressed.
    let mut health = HealthClient::new(channel)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let status = health
        .check(HealthCheckRequest {
            service: "temporal.api.workflowservice.v1.WorkflowService".into(),
        })
        .await?
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t94_requests_are_validated_with_temporals_limits_and_messages() -> anyhow::Result<()> {
    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    let mut too_long = start_request(&"w".repeat(1_001), "r-long");
    let e = client
        .start_workflow_execution(too_long.clone())
        .await
        .expect_err("a 1,001-character workflow id");
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "WorkflowId length exceeds limit.")
    );
    too_long.workflow_id = "ok-id".into();
    too_long.workflow_run_timeout = Some(keel_proto::prost_wkt_types::Duration {
        seconds: -5,
        nanos: 0,
    });
    let e = client
        .start_workflow_execution(too_long)
        .await
        .expect_err("a negative run timeout");
    assert_eq!(
        e.message(),
        "An invalid WorkflowRunTimeoutSeconds is set on request."
    );
    let e = client
        .signal_workflow_execution(api::SignalWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: Some(WorkflowExecution {
                workflow_id: "any".into(),
                run_id: "not-a-uuid".into(),
            }),
            signal_name: "s".into(),
            ..Default::default()
        })
        .await
        .expect_err("a malformed run id");
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "Invalid RunId.")
    );
    let e = client
        .poll_workflow_task_queue(api::PollWorkflowTaskQueueRequest {
            namespace: "default".into(),
            task_queue: Some(normal_queue("")),
            ..Default::default()
        })
        .await
        .expect_err("an empty task queue name");
    assert_eq!(e.message(), "TaskQueue is not set on request.");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t95_history_in_reverse_pages_and_delete_removes_a_running_workflow() -> anyhow::Result<()>
{
    use temporalio_protos::temporal::api::enums::v1::EventType;
    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    client
        .start_workflow_execution(start_request("gone-1", "req-gone-1"))
        .await?;
    let execution = Some(WorkflowExecution {
        workflow_id: "gone-1".into(),
        run_id: String::new(),
    });
    let mut seen = Vec::new();
    let mut token = Vec::new();
    loop {
        let page = client
            .get_workflow_execution_history_reverse(
                api::GetWorkflowExecutionHistoryReverseRequest {
                    namespace: "default".into(),
                    execution: execution.clone(),
                    maximum_page_size: 1,
                    next_page_token: token,
                },
            )
            .await?
            .into_inner();
        seen.extend(
            page.history
                .unwrap_or_default()
                .events
                .iter()
                .map(|e| e.event_type()),
        );
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            EventType::WorkflowTaskScheduled,
            EventType::WorkflowExecutionStarted
        ],
        "newest first, one per page"
    );
    client
        .delete_workflow_execution(api::DeleteWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: execution.clone(),
        })
        .await?;
    let e = client
        .describe_workflow_execution(api::DescribeWorkflowExecutionRequest {
            namespace: "default".into(),
            execution: execution.clone(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(e.code(), Code::NotFound);
    let e = client
        .delete_workflow_execution(api::DeleteWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: execution,
        })
        .await
        .expect_err("already deleted");
    assert_eq!(e.code(), Code::NotFound);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_headers_reach_the_workflow_and_its_activities() -> anyhow::Result<()> {
    use temporalio_protos::temporal::api::command::v1::{
        command::Attributes as CA, Command, ScheduleActivityTaskCommandAttributes,
    };
    use temporalio_protos::temporal::api::common::v1::{ActivityType, Header, Payload};
    use temporalio_protos::temporal::api::enums::v1::CommandType;
    use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;
    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    let header = |v: &str| Header {
        fields: [(
            "traceparent".to_string(),
            Payload {
                data: v.as_bytes().to_vec(),
                ..Default::default()
            },
        )]
        .into(),
    };
    let mut start = start_request("headers-1", "req-headers-1");
    start.header = Some(header("from-the-client"));
    client.start_workflow_execution(start).await?;
    let task = poll_wft(client.clone(), normal_queue("tq"), "worker-1", 5).await?;
    let started = task.history.unwrap_or_default().events.into_iter().next();
    let Some(EA::WorkflowExecutionStartedEventAttributes(s)) = started.and_then(|e| e.attributes)
    else {
        panic!("no start event");
    };
    assert_eq!(
        s.header,
        Some(header("from-the-client")),
        "start → workflow"
    );
    client
        .respond_workflow_task_completed(api::RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token,
            identity: "worker-1".into(),
            namespace: "default".into(),
            commands: vec![Command {
                command_type: CommandType::ScheduleActivityTask as i32,
                attributes: Some(CA::ScheduleActivityTaskCommandAttributes(
                    ScheduleActivityTaskCommandAttributes {
                        activity_id: "a".into(),
                        activity_type: Some(ActivityType { name: "act".into() }),
                        task_queue: Some(normal_queue("tq")),
                        start_to_close_timeout: Some(keel_proto::prost_wkt_types::Duration {
                            seconds: 10,
                            nanos: 0,
                        }),
                        header: Some(header("from-the-workflow")),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await?;
    let mut poll = tonic::Request::new(api::PollActivityTaskQueueRequest {
        namespace: "default".into(),
        task_queue: Some(normal_queue("tq")),
        identity: "worker-1".into(),
        ..Default::default()
    });
    poll.set_timeout(Duration::from_secs(5));
    let activity = client.poll_activity_task_queue(poll).await?.into_inner();
    assert_eq!(
        activity.header,
        Some(header("from-the-workflow")),
        "workflow → activity"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t97_an_rpc_keel_has_not_built_is_unimplemented_by_name() -> anyhow::Result<()> {
    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    let e = client
        .reset_activity(api::ResetActivityRequest {
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .expect_err("ResetActivity is not built");
    assert_eq!(e.code(), Code::Unimplemented);
    assert_eq!(
        e.message(),
        "WorkflowService/ResetActivity is not supported by this server yet"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t98_a_namespaces_continue_as_new_threshold_is_set_through_the_admin_api(
) -> anyhow::Result<()> {
    use keel_proto::admin::v1::admin_client::AdminClient;
    use keel_proto::admin::v1::SetNamespaceLimitsRequest;
    use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;
    let (c, leader, client) = cluster_and_follower_client().await?;
    let follower = c.running().into_iter().find(|i| *i != leader).unwrap();
    let mut admin =
        AdminClient::connect(format!("http://{}", c.node(follower).client_addr())).await?;
    let missing = admin
        .set_namespace_limits(SetNamespaceLimitsRequest {
            namespace: "nowhere".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such namespace");
    assert_eq!(missing.code(), Code::NotFound);
    admin
        .set_namespace_limits(SetNamespaceLimitsRequest {
            namespace: "default".into(),
            suggest_continue_as_new_events: 1,
            suggest_continue_as_new_bytes: 0,
        })
        .await?;
    // A run started now is told to continue as new at its first task (3 events > 1).
    let mut starter = client.clone();
    starter
        .start_workflow_execution(start_request("can-limit", "r-can-limit"))
        .await?;
    let task = poll_wft(client.clone(), normal_queue("tq"), "w", 10).await?;
    let started = task
        .history
        .and_then(|h| {
            h.events
                .into_iter()
                .find(|e| e.event_id == task.started_event_id)
        })
        .and_then(|e| e.attributes);
    match started {
        Some(EA::WorkflowTaskStartedEventAttributes(s)) => assert!(s.suggest_continue_as_new),
        other => panic!("no WorkflowTaskStarted: {other:?}"),
    }
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t99_payloads_past_the_blob_limit_are_refused_fail_the_activity_or_end_the_run(
) -> anyhow::Result<()> {
    use temporalio_protos::temporal::api::command::v1::{
        command::Attributes as CA, Command, CompleteWorkflowExecutionCommandAttributes,
        ScheduleActivityTaskCommandAttributes,
    };
    use temporalio_protos::temporal::api::common::v1::{ActivityType, Payload, Payloads};
    use temporalio_protos::temporal::api::enums::v1::{CommandType, WorkflowExecutionStatus};
    use temporalio_protos::temporal::api::history::v1::history_event::Attributes as EA;
    let (c, _leader, mut client) = cluster_and_follower_client().await?;
    // 2 MiB + 1 KiB: past Temporal's blob limit, within the 4 MiB request limit.
    let big = Some(Payloads {
        payloads: vec![Payload {
            data: vec![b'x'; (2 << 20) + 1024],
            ..Default::default()
        }],
    });
    let mut start = start_request("blob-1", "r-blob-1");
    start.input = big.clone();
    let e = client
        .start_workflow_execution(start.clone())
        .await
        .expect_err("a 2 MiB input");
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "Blob data size exceeds limit.")
    );
    start.input = None;
    let run_id = client
        .start_workflow_execution(start)
        .await?
        .into_inner()
        .run_id;
    let execution = Some(WorkflowExecution {
        workflow_id: "blob-1".into(),
        run_id: run_id.clone(),
    });
    let e = client
        .signal_workflow_execution(api::SignalWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: execution.clone(),
            signal_name: "s".into(),
            input: big.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a 2 MiB signal");
    assert_eq!(e.message(), "Blob data size exceeds limit.");

    // An activity result past the limit fails the activity, not retried.
    let task = poll_wft(client.clone(), normal_queue("tq"), "w", 10).await?;
    client
        .respond_workflow_task_completed(api::RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token,
            namespace: "default".into(),
            commands: vec![Command {
                command_type: 1,
                attributes: Some(CA::ScheduleActivityTaskCommandAttributes(
                    ScheduleActivityTaskCommandAttributes {
                        activity_id: "a".into(),
                        activity_type: Some(ActivityType { name: "op".into() }),
                        start_to_close_timeout: Some(keel_proto::prost_wkt_types::Duration {
                            seconds: 30,
                            nanos: 0,
                        }),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await?;
    let mut req = tonic::Request::new(api::PollActivityTaskQueueRequest {
        namespace: "default".into(),
        task_queue: Some(normal_queue("tq")),
        ..Default::default()
    });
    req.set_timeout(Duration::from_secs(10));
    let activity = client.poll_activity_task_queue(req).await?.into_inner();
    assert!(!activity.task_token.is_empty(), "the activity started");
    client
        .respond_activity_task_completed(api::RespondActivityTaskCompletedRequest {
            task_token: activity.task_token,
            namespace: "default".into(),
            result: big.clone(),
            ..Default::default()
        })
        .await?;
    let task = poll_wft(client.clone(), normal_queue("tq"), "w", 10).await?;
    let failed = task
        .history
        .unwrap_or_default()
        .events
        .into_iter()
        .find_map(|e| match e.attributes {
            Some(EA::ActivityTaskFailedEventAttributes(f)) => f.failure,
            _ => None,
        })
        .expect("ActivityTaskFailed");
    assert_eq!(failed.message, "Complete result exceeds size limit.");

    // A workflow result past the limit fails the task and terminates the run.
    let e = client
        .respond_workflow_task_completed(api::RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token,
            namespace: "default".into(),
            commands: vec![Command {
                command_type: CommandType::CompleteWorkflowExecution as i32,
                attributes: Some(CA::CompleteWorkflowExecutionCommandAttributes(
                    CompleteWorkflowExecutionCommandAttributes { result: big },
                )),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect_err("a 2 MiB result");
    assert_eq!(
        e.message(),
        "CompleteWorkflowExecutionCommandAttributes.Result exceeds size limit."
    );
    let d = client
        .describe_workflow_execution(api::DescribeWorkflowExecutionRequest {
            namespace: "default".into(),
            execution: execution.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        d.workflow_execution_info.map(|i| i.status),
        Some(WorkflowExecutionStatus::Terminated as i32)
    );
    let history = client
        .get_workflow_execution_history(api::GetWorkflowExecutionHistoryRequest {
            namespace: "default".into(),
            execution,
            ..Default::default()
        })
        .await?
        .into_inner()
        .history
        .unwrap_or_default()
        .events;
    match history.last().and_then(|e| e.attributes.clone()) {
        Some(EA::WorkflowExecutionTerminatedEventAttributes(t)) => assert_eq!(
            t.reason,
            "BadCompleteWorkflowExecutionAttributes: CompleteWorkflowExecutionCommandAttributes.Result exceeds size limit."
        ),
        other => panic!("not terminated: {other:?}"),
    }
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t100_starts_are_held_back_while_a_polled_queue_leaves_tasks_waiting() -> anyhow::Result<()>
{
    use keel_proto::admin::v1::admin_client::AdminClient;
    use keel_proto::admin::v1::SetClockOffsetRequest;

    // Default limits (250 ms on either backlog's oldest task), a 1 s longest hold.
    let c = LocalCluster::start(3, |cfg| cfg.admission.max_start_hold_ms = 1_000).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    // On the leader, an acknowledged write is applied before the reply: each start below is
    // judged on the state the requests before it left.
    let channel = Channel::from_shared(format!("http://{}", c.node(leader).client_addr()))?
        .connect()
        .await?;
    let client = WorkflowServiceClient::new(channel);
    default_namespace_exists(&client).await?;
    let mut admin =
        AdminClient::connect(format!("http://{}", c.node(leader).client_addr())).await?;
    let start = |id: &str, queue: &str| {
        let mut client = client.clone();
        let req = api::StartWorkflowExecutionRequest {
            task_queue: Some(normal_queue(queue)),
            ..start_request(id, &format!("r-{id}"))
        };
        async move { client.start_workflow_execution(req).await }
    };
    let frontend = || c.node(leader).frontend();

    // A run makes progress on tq, then waits for a worker again (a signal).
    start("adm-1", "tq").await?;
    let task = poll_wft(client.clone(), normal_queue("tq"), "w", 10).await?;
    client
        .clone()
        .respond_workflow_task_completed(api::RespondWorkflowTaskCompletedRequest {
            task_token: task.task_token,
            identity: "w".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await?;
    client
        .clone()
        .signal_workflow_execution(api::SignalWorkflowExecutionRequest {
            namespace: "default".into(),
            workflow_execution: Some(WorkflowExecution {
                workflow_id: "adm-1".into(),
                run_id: String::new(),
            }),
            signal_name: "go".into(),
            request_id: "adm-sig".into(),
            ..Default::default()
        })
        .await?;
    // Within the limits a start goes ahead at once.
    start("adm-2", "tq").await?;
    assert_eq!(frontend().starts_held(), 0);

    // Replicated time moves 1 s on (the leader stamps entries 1 s ahead): the resumed task
    // has waited past its limit. Another queue is not held back, and its start carries the
    // new time.
    admin
        .set_clock_offset(SetClockOffsetRequest { offset_ms: 1_000 })
        .await?;
    start("adm-other", "other").await?;
    let held = tokio::spawn(start("adm-3", "tq"));
    wait_for(
        WAIT,
        "the start on the lagging queue is held back",
        || async { (frontend().starts_holding() == 1).then_some(()) },
    )
    .await?;

    // The worker catches up: the resumed task first, then adm-2's first task. With nothing
    // waiting, the held start goes ahead.
    let resumed = poll_wft(client.clone(), normal_queue("tq"), "w", 10).await?;
    assert_eq!(
        resumed.workflow_execution.map(|e| e.workflow_id).as_deref(),
        Some("adm-1")
    );
    let first = poll_wft(client.clone(), normal_queue("tq"), "w", 10).await?;
    assert_eq!(
        first.workflow_execution.map(|e| e.workflow_id).as_deref(),
        Some("adm-2")
    );
    tokio::time::timeout(WAIT, held).await???;
    assert_eq!(frontend().starts_held(), 1);
    assert_eq!(frontend().starts_holding(), 0);

    // A queue whose pollers stopped taking tasks does not hold starts back: its runs wait.
    // (adm-3 and adm-4's first tasks wait from here on.)
    start("adm-4", "tq").await?;
    admin
        .set_clock_offset(SetClockOffsetRequest { offset_ms: 10_000 })
        .await?;
    start("adm-other-2", "other").await?;
    start("adm-5", "tq").await?;
    assert_eq!(frontend().starts_held(), 1);

    // A poll takes adm-3's task (9 s old); adm-4's is as old and the queue was just
    // drained: behind. A start is held for its longest hold (1 s), then goes ahead anyway.
    let next = poll_wft(client.clone(), normal_queue("tq"), "w", 10).await?;
    assert_eq!(
        next.workflow_execution.map(|e| e.workflow_id).as_deref(),
        Some("adm-3")
    );
    let began = std::time::Instant::now();
    start("adm-6", "tq").await?;
    assert!(
        began.elapsed() >= Duration::from_millis(1_000),
        "held for its longest hold, took {:?}",
        began.elapsed()
    );
    assert_eq!(frontend().starts_held(), 2);
    c.shutdown().await;
    Ok(())
}
