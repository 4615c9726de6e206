//! In-process 3-node clusters on real tonic and RocksDB (temp dirs, OS-chosen ports).
//! Each test is a sequence of phases announced with `phase!`; every wait is on a condition
//! with a timeout and a reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keel_proto::admin::v1 as admin;
use keel_proto::admin::v1::admin_client::AdminClient;
use keel_proto::kv::v1 as kv;
use keel_proto::kv::v1::kv_client::KvClient;
use keel_proto::raft::v1 as raftpb;
use keel_proto::raft::v1::raft_service_client::RaftServiceClient;
use keel_server::local_cluster::{wait_for, LocalCluster};
use tonic::transport::Channel;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

macro_rules! phase {
    ($($arg:tt)*) => { eprintln!("--- phase: {}", format!($($arg)*)) };
}

async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect to a running node")
}

/// Sends one request on the raw peer transport by hand (preface, then `u32` length, tag,
/// protobuf body) and returns the response's tag byte and body as text.
async fn raw_peer_call(
    addr: SocketAddr,
    preface: &[u8; 4],
    tag: u8,
    msg: &impl prost::Message,
) -> anyhow::Result<(u8, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let body = msg.encode_to_vec();
    let mut out = preface.to_vec();
    out.extend(((body.len() + 1) as u32).to_be_bytes());
    out.push(tag);
    out.extend(body);
    s.write_all(&out).await?;
    let mut head = [0u8; 5];
    tokio::time::timeout(WAIT, s.read_exact(&mut head))
        .await?
        .map_err(|e| anyhow::anyhow!("the peer closed the connection: {e}"))?;
    let mut rest = vec![0u8; u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize - 1];
    s.read_exact(&mut rest).await?;
    Ok((head[4], String::from_utf8_lossy(&rest).into_owned()))
}

async fn kv_client(addr: SocketAddr) -> KvClient<Channel> {
    KvClient::new(channel(addr).await)
}

async fn admin_client(addr: SocketAddr) -> AdminClient<Channel> {
    AdminClient::new(channel(addr).await)
}

async fn put(c: &mut KvClient<Channel>, key: &str, value: &str) -> kv::WriteResponse {
    c.put(kv::PutRequest {
        key: key.into(),
        value: value.into(),
    })
    .await
    .unwrap_or_else(|s| panic!("put {key}: {s}"))
    .into_inner()
}

fn get_request(key: &str, stale: bool) -> tonic::Request<kv::GetRequest> {
    let mut req = tonic::Request::new(kv::GetRequest { key: key.into() });
    if stale {
        req.metadata_mut().insert(
            keel_proto::READ_CONSISTENCY_HEADER,
            keel_proto::READ_CONSISTENCY_STALE.parse().unwrap(),
        );
    }
    req
}

fn others(all: &[u64], but: u64) -> Vec<u64> {
    all.iter().copied().filter(|i| *i != but).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_writes_replicate_and_survive_a_leader_crash() -> anyhow::Result<()> {
    let mut c = LocalCluster::start(3, |_| {}).await?;
    let election_max = Duration::from_millis(c.config(1).raft.election_timeout_max_ms);
    let leader = c.wait_for_leader(WAIT).await?;
    let follower = others(&c.running(), leader)[0];

    phase!("writes sent to follower {follower} are forwarded to leader {leader} and replicate");
    let mut client = kv_client(c.node(follower).client_addr()).await;
    let mut acked = BTreeMap::new();
    for i in 0..20 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        let w = put(&mut client, &k, &v).await;
        assert!(w.succeeded && w.log_index > 0);
        acked.insert(k, v);
    }
    let d = c.wait_converged(WAIT).await?;
    assert!(
        d.applied_index >= 20,
        "applied {} after 20 writes",
        d.applied_index
    );

    phase!("crash leader {leader}; a new leader within two election timeouts");
    let crashed_at = Instant::now();
    c.crash(leader).await;
    let new_leader = c.wait_for_leader(WAIT).await?;
    let took = crashed_at.elapsed();
    assert_ne!(new_leader, leader);
    assert!(
        took <= 2 * election_max,
        "new leader after {took:?}, more than two election timeouts ({election_max:?} each)"
    );

    phase!("every acknowledged write is readable (linearizably) from both survivors");
    for id in c.running() {
        let mut client = kv_client(c.node(id).client_addr()).await;
        for (k, v) in &acked {
            let r = client.get(get_request(k, false)).await?.into_inner();
            assert_eq!(r.value.as_deref(), Some(v.as_bytes()), "node {id} key {k}");
            assert!(!r.stale);
        }
    }

    phase!("writes continue with two of three nodes");
    let mut client = kv_client(c.node(new_leader).client_addr()).await;
    for i in 20..30 {
        put(&mut client, &format!("k{i}"), &format!("v{i}")).await;
    }

    phase!("the crashed node restarts and catches up; the bootstrap node never re-initializes");
    c.restart(leader).await?;
    let d = c.wait_converged(WAIT).await?;
    assert!(d.applied_index >= 30);
    let members = c.node(1).raft().status().members;
    assert_eq!(members.len(), 3);
    let again = c
        .node(1)
        .raft()
        .initialize_if_new(
            members
                .iter()
                .map(|m| {
                    (
                        m.node_id,
                        keel_raft::KeelNode {
                            peer_addr: m.peer_addr.clone(),
                            client_addr: m.client_addr.clone(),
                        },
                    )
                })
                .collect(),
        )
        .await?;
    assert!(!again, "an initialized node must not initialize again");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_leadership_checks_of_linearizable_reads_reuse_peer_connections() -> anyhow::Result<()>
{
    let c = LocalCluster::start(3, |_| {}).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let mut client = kv_client(c.node(leader).client_addr()).await;
    put(&mut client, "k", "v").await;
    // openraft makes a fresh peer client for each follower on every leadership check; each
    // used to open a TCP connection (and leave it in TIME_WAIT) when dropped.
    let before = keel_raft::metrics::peer_connections_opened();
    const READS: u64 = 200;
    for _ in 0..READS {
        let r = client.get(get_request("k", false)).await?.into_inner();
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        assert!(!r.stale);
    }
    let opened = keel_raft::metrics::peer_connections_opened() - before;
    assert!(
        opened < 20,
        "{READS} linearizable reads opened {opened} peer connections (pool: at most a few)"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_a_node_that_missed_a_purged_range_catches_up_by_snapshot() -> anyhow::Result<()> {
    let mut c = LocalCluster::start(3, |cfg| {
        cfg.raft.snapshot_every_entries = 20;
        cfg.raft.keep_entries_after_snapshot = 0;
        cfg.raft.purge_batch_size = 1;
    })
    .await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let lagger = others(&c.running(), leader)[0];

    phase!("node {lagger} goes down");
    let lagger_last = c.node(lagger).raft().status().last_log_index;
    c.crash(lagger).await;

    phase!("100 writes; the leader snapshots and purges past node {lagger}'s log");
    let mut client = kv_client(c.node(leader).client_addr()).await;
    for i in 0..100 {
        put(&mut client, &format!("s{i}"), &"x".repeat(100)).await;
    }
    let leader_raft = c.node(leader).raft().clone();
    wait_for(
        WAIT,
        "leader purged beyond the lagging node's last log entry",
        || {
            let s = leader_raft.status();
            async move { (s.purged_index > lagger_last + 50).then_some(()) }
        },
    )
    .await?;

    phase!("node {lagger} restarts and catches up by installing a snapshot");
    c.restart(lagger).await?;
    let d = c.wait_converged(WAIT).await?;
    assert!(d.applied_index >= 100);
    let s = c.node(lagger).raft().status();
    assert!(
        s.snapshot_index > lagger_last,
        "node {lagger} has a snapshot at {} (log ended at {lagger_last})",
        s.snapshot_index
    );
    let mut client = kv_client(c.node(lagger).client_addr()).await;
    let r = client.get(get_request("s0", true)).await?.into_inner();
    assert_eq!(r.value.as_deref(), Some("x".repeat(100).as_bytes()));
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_a_learner_is_added_and_promoted_and_a_node_is_removed() -> anyhow::Result<()> {
    let mut c = LocalCluster::start(3, |_| {}).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let mut client = kv_client(c.node(leader).client_addr()).await;
    put(&mut client, "before", "1").await;

    phase!("node 4 starts empty and is added as a learner");
    let n4 = c.start_joining_node(4).await?;
    let (p4, c4) = (n4.peer_addr().to_string(), n4.client_addr().to_string());
    let mut adm = admin_client(c.node(leader).client_addr()).await;
    let r = adm
        .add_learner(admin::AddLearnerRequest {
            node_id: 4,
            peer_addr: p4,
            client_addr: c4,
        })
        .await?
        .into_inner();
    let m4 = r
        .members
        .iter()
        .find(|m| m.node_id == 4)
        .expect("node 4 is a member");
    assert!(!m4.voter, "a learner does not vote");
    c.wait_converged(WAIT).await?;

    phase!("node 4 is promoted to voter");
    let r = adm
        .change_membership(admin::ChangeMembershipRequest {
            voter_ids: vec![1, 2, 3, 4],
            retain: false,
        })
        .await?
        .into_inner();
    assert!(r.members.iter().all(|m| m.voter), "{:?}", r.members);
    put(&mut client, "after-promote", "1").await;

    phase!("a follower is removed");
    let removed = others(&[1, 2, 3], leader)[0];
    let voters: Vec<u64> = others(&[1, 2, 3, 4], removed);
    let r = adm
        .change_membership(admin::ChangeMembershipRequest {
            voter_ids: voters.clone(),
            retain: false,
        })
        .await?
        .into_inner();
    let ids: Vec<u64> = r.members.iter().map(|m| m.node_id).collect();
    assert_eq!(ids, voters, "node {removed} is gone from the membership");
    c.crash(removed).await;
    let w = put(&mut client, "after-remove", "1").await;
    c.wait_applied(w.log_index, WAIT).await?;
    let d = c.wait_converged(WAIT).await?;
    assert!(d.applied_index >= w.log_index);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_a_partitioned_node_fails_linearizable_reads_fast_and_serves_stale_ones(
) -> anyhow::Result<()> {
    let c = LocalCluster::start(3, |_| {}).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let cut = others(&c.running(), leader)[0];
    let leader_wait = Duration::from_millis(c.config(cut).raft.leader_wait_ms);
    let mut to_leader = kv_client(c.node(leader).client_addr()).await;
    let w1 = put(&mut to_leader, "k", "v1").await;
    c.wait_applied(w1.log_index, WAIT).await?;

    phase!("node {cut} is cut off from its peers");
    c.node(cut).raft().filter().set_isolated(true);
    let mut to_cut = kv_client(c.node(cut).client_addr()).await;
    let started = Instant::now();
    let err = to_cut
        .get(get_request("k", false))
        .await
        .expect_err("linearizable read on a partitioned node");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(
        started.elapsed() < leader_wait + Duration::from_secs(1),
        "failed after {:?}",
        started.elapsed()
    );
    let err = to_cut
        .put(kv::PutRequest {
            key: "k".into(),
            value: "lost".into(),
        })
        .await
        .expect_err("a write on the minority side");
    assert_eq!(err.code(), Code::Unavailable, "{err}");

    phase!("a stale read on node {cut} answers with the index it was served at");
    let r = to_cut.get(get_request("k", true)).await?.into_inner();
    assert!(r.stale);
    assert_eq!(r.value.as_deref(), Some(&b"v1"[..]));
    assert!(r.applied_index >= w1.log_index);

    phase!("the majority keeps writing; node {cut}'s stale reads lag behind");
    let w2 = put(&mut to_leader, "k", "v2").await;
    let r = to_cut.get(get_request("k", true)).await?.into_inner();
    assert_eq!(
        r.value.as_deref(),
        Some(&b"v1"[..]),
        "node {cut} cannot have seen v2"
    );
    assert!(r.applied_index < w2.log_index);

    phase!("heal: node {cut} catches up and serves linearizable reads again");
    c.node(cut).raft().filter().set_isolated(false);
    c.wait_applied(w2.log_index, WAIT).await?;
    let r = wait_for(WAIT, "a linearizable read on the healed node", || {
        let mut to_cut = to_cut.clone();
        async move { to_cut.get(get_request("k", false)).await.ok() }
    })
    .await?
    .into_inner();
    assert_eq!(r.value.as_deref(), Some(&b"v2"[..]));
    assert!(!r.stale);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_foreign_cluster_ids_and_disabled_test_hooks_are_refused() -> anyhow::Result<()> {
    let c = LocalCluster::start(3, |cfg| cfg.testing.allow_clock_offset = cfg.node_id != 2).await?;
    c.wait_for_leader(WAIT).await?;

    phase!("a peer RPC carrying another cluster id is rejected");
    let foreign = raftpb::VoteRequest {
        cluster_id: "someone-else".into(),
        vote: Some(raftpb::Vote {
            term: 99,
            node_id: 7,
            committed: false,
        }),
        last_log_id: None,
    };
    let mut peer = RaftServiceClient::new(channel(c.node(1).peer_addr()).await);
    let err = peer
        .vote(foreign.clone())
        .await
        .expect_err("foreign cluster id");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("cluster id mismatch"), "{err}");
    assert_eq!(
        c.node(1).raft().status().term,
        c.node(2).raft().status().term,
        "the foreign vote changed nothing"
    );

    phase!("the raw peer transport refuses it too, and closes on a bad preface");
    let (code, message) = raw_peer_call(c.node(1).peer_addr(), b"KRP1", 2, &foreign).await?;
    assert_eq!(code, Code::FailedPrecondition as u8, "{message}");
    assert!(message.contains("cluster id mismatch"), "{message}");
    let (code, message) = raw_peer_call(c.node(1).peer_addr(), b"KRP1", 77, &foreign).await?;
    assert_eq!(code, Code::Unimplemented as u8, "unknown tag: {message}");
    let err = raw_peer_call(c.node(1).peer_addr(), b"KXYZ", 2, &foreign)
        .await
        .expect_err("a wrong preface gets no answer");
    assert!(err.to_string().contains("closed"), "{err}");
    assert_eq!(
        c.node(1).raft().status().term,
        c.node(2).raft().status().term,
        "the foreign votes changed nothing"
    );
    put(
        &mut kv_client(c.node(1).client_addr()).await,
        "after-raw",
        "v",
    )
    .await;

    phase!("the clock-offset hook works only where the config enables it");
    let mut adm1 = admin_client(c.node(1).client_addr()).await;
    adm1.set_clock_offset(admin::SetClockOffsetRequest { offset_ms: 1_000 })
        .await?;
    let mut adm2 = admin_client(c.node(2).client_addr()).await;
    let err = adm2
        .set_clock_offset(admin::SetClockOffsetRequest { offset_ms: 1_000 })
        .await
        .expect_err("disabled on node 2");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

    phase!("bad client input gets INVALID_ARGUMENT");
    let mut k = kv_client(c.node(1).client_addr()).await;
    let err = k
        .put(kv::PutRequest {
            key: vec![],
            value: vec![],
        })
        .await
        .expect_err("empty key");
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut req = tonic::Request::new(kv::GetRequest { key: "k".into() });
    req.metadata_mut().insert(
        keel_proto::READ_CONSISTENCY_HEADER,
        "sometimes".parse().unwrap(),
    );
    assert_eq!(
        k.get(req).await.expect_err("bad header").code(),
        Code::InvalidArgument
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_cluster_status_and_digests_report_every_member() -> anyhow::Result<()> {
    let c = LocalCluster::start(3, |_| {}).await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let mut k = kv_client(c.node(leader).client_addr()).await;
    let w = put(&mut k, "a", "b").await;
    c.wait_applied(w.log_index, WAIT).await?;
    let follower = others(&c.running(), leader)[0];
    let mut adm = admin_client(c.node(follower).client_addr()).await;
    let s = adm
        .cluster_status(admin::ClusterStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(s.local.as_ref().unwrap().leader_id, leader);
    assert_eq!(s.members.len(), 3);
    for m in &s.members {
        assert!(m.reachable, "{m:?}");
        let st = m.status.as_ref().unwrap();
        assert!(
            st.applied_index >= w.log_index && st.commit_index >= w.log_index,
            "{st:?}"
        );
        assert_eq!(st.role == "leader", st.node_id == leader);
    }
    let leader_status = s
        .members
        .iter()
        .find(|m| m.member.as_ref().unwrap().node_id == leader)
        .unwrap();
    assert_eq!(leader_status.status.as_ref().unwrap().replication.len(), 3);
    let d = adm
        .state_digest(admin::StateDigestRequest {})
        .await?
        .into_inner();
    assert_eq!(d.digest.len(), 64);
    assert!(d.applied_index >= w.log_index);
    let snap = adm
        .trigger_snapshot(admin::TriggerSnapshotRequest {})
        .await?
        .into_inner();
    assert!(snap.snapshot_index >= w.log_index);
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t45_an_isolated_leader_stops_acknowledging_and_the_majority_moves_on() -> anyhow::Result<()>
{
    let mut c = LocalCluster::start(3, |cfg| cfg.rpc.forward_timeout_ms = 1_500).await?;
    let old = c.wait_for_leader(WAIT).await?;
    let commit_wait = Duration::from_millis(c.config(old).rpc.forward_timeout_ms);

    phase!("leader {old} is cut off: its writes time out as UNAVAILABLE, never as success");
    c.node(old).raft().filter().set_isolated(true);
    let mut to_old = kv_client(c.node(old).client_addr()).await;
    let started = Instant::now();
    let err = to_old
        .put(kv::PutRequest {
            key: "k".into(),
            value: "from-isolated".into(),
        })
        .await
        .expect_err("an isolated leader cannot commit");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(
        started.elapsed() < commit_wait + Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    phase!("the majority elects a new leader and commits");
    let rest = others(&c.running(), old);
    let new_leader = wait_for(WAIT, "the majority agrees on a new leader", || {
        let leaders: Vec<Option<u64>> = rest
            .iter()
            .map(|i| c.node(*i).raft().current_leader())
            .collect();
        async move {
            match leaders[0] {
                Some(l) if l != old && leaders.iter().all(|x| *x == Some(l)) => Some(l),
                _ => None,
            }
        }
    })
    .await?;
    let mut to_new = kv_client(c.node(new_leader).client_addr()).await;
    let w = put(&mut to_new, "k", "from-majority").await;

    phase!("heal: the old leader rejoins as follower and converges on the majority's history");
    c.node(old).raft().filter().set_isolated(false);
    c.wait_applied(w.log_index, WAIT).await?;
    let d = c.wait_converged(WAIT).await?;
    assert!(d.applied_index >= w.log_index);
    let r = kv_client(c.node(old).client_addr())
        .await
        .get(get_request("k", true))
        .await?
        .into_inner();
    // The isolated write was never acknowledged; whether it survived depends on the log,
    // but the majority's later write is what every node reads now.
    assert_eq!(r.value.as_deref(), Some(&b"from-majority"[..]));
    c.crash(old).await;
    c.shutdown().await;
    Ok(())
}

/// Drives one workflow through the replicated log: start, then alternately dispatch and
/// complete tasks through `node`, so every node applies the same workflow commands.
async fn run_workflow_through(
    node: &keel_raft::RaftNode,
    wf: &str,
    activities: usize,
) -> anyhow::Result<()> {
    use keel_engine::command::Kind;
    use keel_engine::workflow::{
        self as w, workflow_command::Kind as Cmd, workflow_outcome::Kind as Outcome,
    };
    let one = |kind: Kind| async move {
        let p = node
            .propose(vec![keel_engine::Command { kind: Some(kind) }])
            .await?;
        match p.responses.into_iter().next().and_then(|r| r.kind) {
            Some(keel_engine::response::Kind::Workflow(o)) => anyhow::Ok(o.kind.expect("outcome")),
            other => anyhow::bail!("unexpected response {other:?}"),
        }
    };
    wait_for(WAIT, "the default namespace is registered", || async {
        keel_engine::workflow::read_namespace(node.state(), "default")
            .ok()
            .flatten()
    })
    .await?;
    let run = w::RunKey {
        namespace: "default".into(),
        workflow_id: wf.into(),
        run_id: format!("{wf}-run"),
    };
    one(Kind::StartWorkflow(w::StartWorkflow {
        run: Some(run.clone()),
        workflow_type: "wf".into(),
        task_queue: format!("q-{wf}"),
        request_id: format!("{wf}-req"),
        ..Default::default()
    }))
    .await?;
    let poll = |kind: w::TaskKind| {
        let queue = format!("q-{wf}");
        async move {
            match one(Kind::DispatchTask(w::DispatchTask {
                namespace: "default".into(),
                task_queue: queue,
                kind: kind as i32,
                identity: "test".into(),
                request_id: "r".into(),
            }))
            .await?
            {
                Outcome::Dispatched(d) => anyhow::Ok(d.token.expect("token")),
                other => anyhow::bail!("poll: {other:?}"),
            }
        }
    };
    for i in 0..=activities {
        let wft = poll(w::TaskKind::Workflow).await?;
        let cmd = if i < activities {
            Cmd::ScheduleActivity(w::ScheduleActivity {
                activity_id: format!("a{i}"),
                activity_type: "step".into(),
                start_to_close_timeout_ms: 10_000,
                ..Default::default()
            })
        } else {
            Cmd::CompleteWorkflow(w::CompleteWorkflow {
                result: b"ok".to_vec(),
                next_run_id: String::new(),
            })
        };
        let out = one(Kind::CompleteWorkflowTask(w::CompleteWorkflowTask {
            token: Some(wft),
            identity: "test".into(),
            commands: vec![w::WorkflowCommand {
                kind: Some(cmd),
                user_metadata: Vec::new(),
            }],
            sdk_metadata: vec![],
            sticky_queue: String::new(),
            ..Default::default()
        }))
        .await?;
        anyhow::ensure!(
            matches!(out, Outcome::Accepted(_)),
            "complete workflow task: {out:?}"
        );
        if i < activities {
            let act = poll(w::TaskKind::Activity).await?;
            one(Kind::CompleteActivityTask(w::CompleteActivityTask {
                token: Some(act),
                identity: "test".into(),
                result: vec![i as u8],
            }))
            .await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_workflow_commands_give_identical_state_on_every_node_including_after_snapshot_install(
) -> anyhow::Result<()> {
    let mut c = LocalCluster::start(3, |cfg| {
        cfg.raft.snapshot_every_entries = 30;
        cfg.raft.keep_entries_after_snapshot = 0;
        cfg.raft.purge_batch_size = 1;
    })
    .await?;
    let leader = c.wait_for_leader(WAIT).await?;
    let follower = others(&c.running(), leader)[0];

    phase!("every node registers the default namespace at start, exactly once");
    let leader_raft = c.node(leader).raft().clone();
    let ns = wait_for(WAIT, "the default namespace is registered", || async {
        keel_engine::workflow::read_namespace(leader_raft.state(), "default")
            .ok()
            .flatten()
    })
    .await?;
    assert_eq!(
        ns.retention_ms,
        keel_server::namespaces::DEFAULT_RETENTION_MS
    );

    phase!("a 3-activity workflow driven through follower {follower} replicates identically");
    run_workflow_through(&c.node(follower).raft().clone(), "wf-1", 3).await?;
    let d1 = c.wait_converged(WAIT).await?;

    phase!("node {follower} misses two workflows whose log is purged; it catches up by snapshot");
    let lagger_last = c.node(follower).raft().status().last_log_index;
    c.crash(follower).await;
    let leader_raft = c.node(leader).raft().clone();
    run_workflow_through(&leader_raft, "wf-2", 5).await?;
    run_workflow_through(&leader_raft, "wf-3", 5).await?;
    wait_for(
        WAIT,
        "the leader purged past the lagging node's log",
        || {
            let s = leader_raft.status();
            async move { (s.purged_index > lagger_last).then_some(()) }
        },
    )
    .await?;
    c.restart(follower).await?;
    let d2 = c.wait_converged(WAIT).await?;
    assert!(d2.applied_index > d1.applied_index && d2.key_count > d1.key_count);
    assert!(
        c.node(follower).raft().status().snapshot_index > lagger_last,
        "caught up by snapshot"
    );
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_may_not_join_a_shared_client_address() -> anyhow::Result<()> {
    let c = LocalCluster::start_sharing_client_addr(1, |_| {}).await?;
    c.wait_for_leader(Duration::from_secs(20)).await?;
    let shared = c.shared_client_addr().expect("shared").to_string();
    let mut other = c.config(1).clone();
    other.cluster_id = "another-cluster".into();
    other.network.peer_addr = "127.0.0.1:0".into();
    other.network.client_addr = "127.0.0.1:0".into();
    other.network.http_addr = None;
    let e = match keel_server::node::Listeners::bind(&other).await {
        Ok(_) => anyhow::bail!("a node of another cluster bound the shared address"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(&format!(
            "{shared} is already served by node 1 of cluster \"keel-test\""
        )),
        "{e}"
    );
    // A node of the same cluster may (a restart binds it again while the others serve).
    let mut same = c.config(1).clone();
    same.network.peer_addr = "127.0.0.1:0".into();
    same.network.client_addr = "127.0.0.1:0".into();
    same.network.http_addr = None;
    assert!(keel_server::node::Listeners::bind(&same).await.is_ok());
    c.shutdown().await;
    Ok(())
}
