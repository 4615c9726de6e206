//! Schedules: an interval schedule's actions, the deadline that drives them (a stale or
//! duplicate firing acts on nothing), overlap policies, the catch-up window, pause and
//! unpause, trigger, backfill, limited actions, pause on failure, conflict tokens, delete.

use super::*;
use crate::schedule::spec::{Interval, Spec};
use crate::workflow::invariants_test::Rng;
use crate::workflow::scheduler::*;

const MIN: u64 = 60_000;

fn def(every_ms: u64, overlap_policy: i32) -> ScheduleDef {
    ScheduleDef {
        spec: Some(Spec {
            intervals: vec![Interval {
                every_ms,
                phase_ms: 0,
            }],
            ..Default::default()
        }),
        action: Some(StartWorkflow {
            run: Some(run_key("job", "")),
            workflow_type: "hello".into(),
            task_queue: TQ.into(),
            input: b"in".to_vec(),
            ..Default::default()
        }),
        overlap_policy,
        ..Default::default()
    }
}

impl Harness {
    fn create_schedule(&mut self, id: &str, d: ScheduleDef) -> Outcome {
        self.create_schedule_with(id, d, None)
    }

    fn create_schedule_with(
        &mut self,
        id: &str,
        d: ScheduleDef,
        patch: Option<SchedulePatch>,
    ) -> Outcome {
        self.apply(Kind::CreateSchedule(CreateSchedule {
            namespace: NS.into(),
            schedule_id: id.into(),
            def: Some(d),
            request_id: format!("create-{id}"),
            initial_patch: patch,
            ..Default::default()
        }))
    }

    fn schedule(&self, id: &str) -> ScheduleRecord {
        read_schedule(&self.store, NS, id)
            .expect("read")
            .expect("schedule exists")
    }

    fn fire_with(&mut self, id: &str, d: &Deadline) -> Outcome {
        self.now_ms = self.now_ms.max(d.fire_at_ms);
        self.apply(Kind::FireDeadline(FireDeadline {
            run: Some(timer_run(NS, id)),
            kind: d.kind,
            event_id: d.event_id,
            attempt: d.attempt,
            name: d.name.clone(),
            next_run_id: String::new(),
        }))
    }

    /// Fires the schedule's armed deadline (moving time to it); returns the deadline.
    fn fire_schedule(&mut self, id: &str) -> Deadline {
        let d = self.schedule(id).deadline.expect("an armed deadline");
        assert!(matches!(self.fire_with(id, &d), Outcome::Accepted(_)));
        d
    }

    fn patch_schedule(&mut self, id: &str, p: SchedulePatch) -> Outcome {
        self.apply(Kind::PatchSchedule(PatchSchedule {
            namespace: NS.into(),
            schedule_id: id.into(),
            patch: Some(p),
        }))
    }

    /// Workflow ids the schedule started, in order.
    fn started_ids(&self, id: &str) -> Vec<String> {
        self.schedule(id)
            .recent
            .iter()
            .map(|r| r.workflow_id.clone())
            .collect()
    }

    /// Completes the workflow task of the next queued run with CompleteWorkflowExecution.
    fn complete_next_run(&mut self) {
        let d = self.poll(TaskKind::Workflow);
        self.complete_wft(&token(&d), vec![complete(b"done")]);
    }

    /// Timers-index keys armed for a schedule's pseudo-run.
    fn schedule_timer_keys(&self, id: &str) -> usize {
        self.store
            .iter()
            .filter(|(k, _)| {
                crate::keys::parse_timer(k)
                    .is_some_and(|t| t.workflow_id == id && t.run_id.is_empty())
            })
            .count()
    }
}

fn at(min: u64) -> String {
    format!("job-{}", id_time(min * MIN))
}

#[test]
fn an_interval_schedule_starts_one_run_per_time_with_its_search_attributes() {
    let mut h = Harness::new();
    assert!(matches!(
        h.create_schedule("s", def(MIN, 0)),
        Outcome::Schedule(_)
    ));
    let d = h.schedule("s").deadline.expect("armed");
    assert_eq!(d.fire_at_ms, MIN);
    assert_eq!(h.schedule_timer_keys("s"), 1);
    // Not early in replicated time.
    h.now_ms = MIN - 1;
    let early = h.apply(Kind::FireDeadline(FireDeadline {
        run: Some(timer_run(NS, "s")),
        kind: d.kind,
        event_id: d.event_id,
        ..Default::default()
    }));
    assert!(matches!(early, Outcome::InvalidArgument(_)), "{early:?}");
    assert!(h.started_ids("s").is_empty());
    for _ in 0..3 {
        h.fire_schedule("s");
        h.complete_next_run();
    }
    assert_eq!(h.started_ids("s"), vec![at(1), at(2), at(3)]);
    let rec = h.schedule("s");
    assert_eq!(rec.action_count, 3);
    assert!(rec.running.is_empty(), "{:?}", rec.running);
    assert!(rec
        .recent
        .iter()
        .all(|r| r.status == RunStatus::Completed as i32));
    assert_eq!(rec.deadline.as_ref().map(|d| d.fire_at_ms), Some(4 * MIN));
    // The started run names its schedule and carries Temporal's two attributes.
    let ms = h.state(&at(1), &rec.recent[0].run_id);
    assert_eq!(ms.scheduled_by, "s");
    let sa = crate::workflow::search::decode_map(&ms.search_attributes).unwrap();
    let by = crate::workflow::search::decode_value(
        &sa.fields["TemporalScheduledById"],
        crate::workflow::search::IndexedValueType::Keyword,
    )
    .unwrap();
    assert_eq!(by, Some(crate::workflow::search::Value::Str("s".into())));
    assert!(sa.fields.contains_key("TemporalScheduledStartTime"));
}

#[test]
fn a_duplicate_or_stale_firing_starts_nothing() {
    let mut h = Harness::new();
    h.create_schedule("s", def(MIN, overlap::ALLOW_ALL));
    let d = h.fire_schedule("s");
    assert_eq!(h.started_ids("s"), vec![at(1)]);
    // The same FireDeadline again (a new leader re-proposing it) matches no deadline.
    h.now_ms = 5 * MIN;
    assert!(matches!(h.fire_with("s", &d), Outcome::NotFound(_)));
    assert_eq!(h.started_ids("s"), vec![at(1)]);
    // The pending one catches up every time since, once each.
    h.fire_schedule("s");
    assert_eq!(h.started_ids("s"), vec![at(1), at(2), at(3), at(4), at(5)]);
    assert_eq!(h.schedule_timer_keys("s"), 1);
}

#[test]
fn skip_drops_overlapping_times_and_buffer_one_keeps_one() {
    let mut h = Harness::new();
    h.create_schedule("skip", def(MIN, overlap::SKIP));
    h.fire_schedule("skip");
    h.fire_schedule("skip");
    h.fire_schedule("skip");
    let rec = h.schedule("skip");
    assert_eq!(h.started_ids("skip"), vec![at(1)]);
    assert_eq!(rec.overlap_skipped, 2);

    let mut h = Harness::new();
    h.create_schedule("one", def(MIN, overlap::BUFFER_ONE));
    h.fire_schedule("one");
    h.fire_schedule("one");
    h.fire_schedule("one");
    let rec = h.schedule("one");
    assert_eq!(rec.buffered.len(), 1);
    assert_eq!(rec.buffered[0].nominal_ms, 2 * MIN);
    assert_eq!(rec.buffer_dropped, 1);
    // The running one completes: the buffered one starts in the same apply.
    h.complete_next_run();
    assert_eq!(h.started_ids("one"), vec![at(1), at(2)]);
    assert!(h.schedule("one").buffered.is_empty());
}

#[test]
fn buffer_all_runs_every_time_one_after_another() {
    let mut h = Harness::new();
    h.create_schedule("all", def(MIN, overlap::BUFFER_ALL));
    for _ in 0..3 {
        h.fire_schedule("all");
    }
    assert_eq!(h.schedule("all").buffered.len(), 2);
    h.complete_next_run();
    h.complete_next_run();
    h.complete_next_run();
    assert_eq!(h.started_ids("all"), vec![at(1), at(2), at(3)]);
}

#[test]
fn terminate_other_replaces_the_running_workflow_and_cancel_other_asks_it_to_stop() {
    let mut h = Harness::new();
    h.create_schedule("t", def(MIN, overlap::TERMINATE_OTHER));
    h.fire_schedule("t");
    h.fire_schedule("t");
    let rec = h.schedule("t");
    assert_eq!(h.started_ids("t"), vec![at(1), at(2)]);
    assert_eq!(rec.recent[0].status, RunStatus::Terminated as i32);
    assert_eq!(rec.running.len(), 1);
    assert_eq!(rec.running[0].workflow_id, at(2));

    let mut h = Harness::new();
    h.create_schedule("c", def(MIN, overlap::CANCEL_OTHER));
    h.fire_schedule("c");
    h.fire_schedule("c");
    let rec = h.schedule("c");
    let first = &rec.recent[0];
    assert!(h.state(&at(1), &first.run_id).cancel_requested);
    assert_eq!(
        rec.buffered.len(),
        1,
        "waits for the cancelled run to close"
    );
}

#[test]
fn times_older_than_the_catchup_window_are_counted_missed() {
    let mut h = Harness::new();
    let mut d = def(MIN, overlap::ALLOW_ALL);
    d.catchup_window_ms = 2 * MIN + 1;
    h.create_schedule("s", d);
    let armed = h.schedule("s").deadline.unwrap();
    // The cluster was down until minute 10: minutes 8, 9, 10 are inside the window.
    h.now_ms = 10 * MIN;
    assert!(matches!(h.fire_with("s", &armed), Outcome::Accepted(_)));
    let rec = h.schedule("s");
    assert_eq!(h.started_ids("s"), vec![at(8), at(9), at(10)]);
    assert_eq!(rec.missed_catchup_window, 7);
    assert_eq!(rec.deadline.unwrap().fire_at_ms, 11 * MIN);
}

#[test]
fn pause_disarms_unpause_resumes_without_catching_up_and_trigger_runs_while_paused() {
    let mut h = Harness::new();
    h.create_schedule("s", def(MIN, overlap::ALLOW_ALL));
    h.patch_schedule(
        "s",
        SchedulePatch {
            pause: "maintenance".into(),
            ..Default::default()
        },
    );
    let rec = h.schedule("s");
    assert!(rec.def.as_ref().unwrap().paused);
    assert_eq!(rec.def.as_ref().unwrap().notes, "maintenance");
    assert!(rec.deadline.is_none());
    assert_eq!(h.schedule_timer_keys("s"), 0);
    // Triggered while paused: runs at once.
    h.now_ms = 3 * MIN + 500;
    h.patch_schedule(
        "s",
        SchedulePatch {
            trigger: Some(TriggerNow::default()),
            ..Default::default()
        },
    );
    assert_eq!(
        h.started_ids("s"),
        vec![format!("job-{}", id_time(h.now_ms))]
    );
    h.patch_schedule(
        "s",
        SchedulePatch {
            unpause: "back".into(),
            ..Default::default()
        },
    );
    let rec = h.schedule("s");
    assert!(!rec.def.as_ref().unwrap().paused);
    assert_eq!(rec.deadline.unwrap().fire_at_ms, 4 * MIN);
    h.fire_schedule("s");
    assert_eq!(
        h.started_ids("s").len(),
        2,
        "minutes 1-3 passed while paused"
    );
}

#[test]
fn a_trigger_at_create_runs_in_the_create() {
    let mut h = Harness::new();
    let mut d = def(MIN, 0);
    d.paused = true;
    h.create_schedule_with(
        "s",
        d,
        Some(SchedulePatch {
            trigger: Some(TriggerNow::default()),
            ..Default::default()
        }),
    );
    let rec = h.schedule("s");
    assert_eq!(rec.action_count, 1);
    assert!(rec.deadline.is_none(), "paused");
}

#[test]
fn a_backfill_acts_on_every_time_of_the_range_both_ends_included() {
    let mut h = Harness::new();
    let mut d = def(MIN, 0);
    d.paused = true;
    h.create_schedule("s", d);
    h.now_ms = 100 * MIN;
    h.patch_schedule(
        "s",
        SchedulePatch {
            backfills: vec![Backfill {
                start_ms: 10 * MIN,
                end_ms: 12 * MIN,
                overlap_policy: overlap::ALLOW_ALL,
            }],
            ..Default::default()
        },
    );
    assert_eq!(h.started_ids("s"), vec![at(10), at(11), at(12)]);
    // With BUFFER_ALL the range runs one after another.
    h.patch_schedule(
        "s",
        SchedulePatch {
            backfills: vec![Backfill {
                start_ms: 20 * MIN,
                end_ms: 21 * MIN,
                overlap_policy: overlap::BUFFER_ALL,
            }],
            ..Default::default()
        },
    );
    assert_eq!(h.schedule("s").buffered.len(), 2);
}

#[test]
fn limited_actions_stop_the_schedule_and_manual_actions_do_not_count() {
    let mut h = Harness::new();
    let mut d = def(MIN, overlap::ALLOW_ALL);
    d.limited_actions = true;
    d.remaining_actions = 2;
    h.create_schedule("s", d);
    h.patch_schedule(
        "s",
        SchedulePatch {
            trigger: Some(TriggerNow::default()),
            ..Default::default()
        },
    );
    h.fire_schedule("s");
    h.fire_schedule("s");
    let rec = h.schedule("s");
    assert_eq!(rec.action_count, 3);
    assert_eq!(rec.def.as_ref().unwrap().remaining_actions, 0);
    assert!(rec.deadline.is_none());
    assert_eq!(h.schedule_timer_keys("s"), 0);
}

#[test]
fn a_failed_run_pauses_a_schedule_that_asks_for_it() {
    let mut h = Harness::new();
    let mut d = def(MIN, overlap::SKIP);
    d.pause_on_failure = true;
    h.create_schedule("s", d);
    h.fire_schedule("s");
    let task = h.poll(TaskKind::Workflow);
    h.complete_wft(
        &token(&task),
        vec![WorkflowCommand {
            kind: Some(Cmd::FailWorkflow(FailWorkflow {
                failure: b"boom".to_vec(),
                ..Default::default()
            })),
            user_metadata: Vec::new(),
        }],
    );
    let rec = h.schedule("s");
    assert!(rec.def.as_ref().unwrap().paused);
    assert_eq!(
        rec.def.as_ref().unwrap().notes,
        format!("paused due to workflow failure: {}: Failed", at(1))
    );
    assert!(rec.deadline.is_none());
    assert_eq!(rec.recent[0].status, RunStatus::Failed as i32);
}

#[test]
fn updates_need_the_current_conflict_token_and_create_is_idempotent_by_request_id() {
    let mut h = Harness::new();
    let Outcome::Schedule(rec) = h.create_schedule("s", def(MIN, 0)) else {
        panic!("created")
    };
    // The same create again (a client retry) answers the schedule; another is refused.
    assert!(matches!(
        h.create_schedule("s", def(MIN, 0)),
        Outcome::Schedule(_)
    ));
    let other = h.apply(Kind::CreateSchedule(CreateSchedule {
        namespace: NS.into(),
        schedule_id: "s".into(),
        def: Some(def(MIN, 0)),
        request_id: "another".into(),
        ..Default::default()
    }));
    assert!(matches!(other, Outcome::AlreadyExists(_)), "{other:?}");
    let update = |token: Option<i64>| {
        Kind::UpdateSchedule(UpdateSchedule {
            namespace: NS.into(),
            schedule_id: "s".into(),
            def: Some(def(2 * MIN, 0)),
            conflict_token: token,
            search_attributes: None,
            memo: None,
        })
    };
    let Outcome::Schedule(after) = h.apply(update(Some(rec.conflict_token))) else {
        panic!("updated")
    };
    assert_ne!(after.conflict_token, rec.conflict_token);
    assert_eq!(after.deadline.unwrap().fire_at_ms, 2 * MIN);
    match h.apply(update(Some(rec.conflict_token))) {
        Outcome::Refused(r) => assert_eq!(r.message, "mismatched conflict token"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(h.apply(update(None)), Outcome::Schedule(_)));
}

#[test]
fn delete_removes_the_schedule_and_its_deadline_and_leaves_its_runs_alone() {
    let mut h = Harness::new();
    h.create_schedule("s", def(MIN, 0));
    let d = h.fire_schedule("s");
    let run_id = h.schedule("s").recent[0].run_id.clone();
    let out = h.apply(Kind::DeleteSchedule(DeleteSchedule {
        namespace: NS.into(),
        schedule_id: "s".into(),
    }));
    assert!(matches!(out, Outcome::Accepted(_)));
    assert!(read_schedule(&h.store, NS, "s").unwrap().is_none());
    assert_eq!(h.schedule_timer_keys("s"), 0);
    assert!(matches!(h.fire_with("s", &d), Outcome::NotFound(_)));
    // The run it started goes on and closes without a schedule to tell.
    h.complete_next_run();
    assert_eq!(h.state(&at(1), &run_id).status, RunStatus::Completed as i32);
}

/// Property: whatever order firings (stale and duplicate ones included), time jumps past the
/// catch-up window, triggers and run completions or failures come in, a schedule starts at
/// most one run per nominal time, keeps exactly one armed timer, and accounts for every spec
/// time it passed exactly once: started, skipped, dropped, still buffered or missed.
#[test]
fn a_schedule_never_starts_two_runs_for_one_time_nor_loses_one() {
    let policies = [
        overlap::SKIP,
        overlap::BUFFER_ONE,
        overlap::BUFFER_ALL,
        overlap::CANCEL_OTHER,
        overlap::TERMINATE_OTHER,
        overlap::ALLOW_ALL,
    ];
    // What the walks exercised, summed: each must have happened for the test to mean much.
    let (mut stale, mut missed, mut skipped, mut started) = (0, 0, 0, 0);
    for seed in 1..=60u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut h = Harness::new();
        let policy = policies[(seed % policies.len() as u64) as usize];
        let mut d = def(MIN, policy);
        d.catchup_window_ms = 5 * MIN;
        let created_at = h.now_ms;
        h.create_schedule("p", d);
        let mut fired: Vec<Deadline> = Vec::new();
        let mut triggers = 0i64;
        for step in 0..120 {
            match rng.below(10) {
                0..=2 => {
                    // Time passes (sometimes beyond the catch-up window), then the timer
                    // driver fires whatever is armed.
                    h.now_ms += rng.below(8 * MIN as usize) as u64;
                    if let Some(d) = h.schedule("p").deadline {
                        if d.fire_at_ms <= h.now_ms {
                            let out = h.fire_with("p", &d);
                            assert!(matches!(out, Outcome::Accepted(_)), "seed {seed}: {out:?}");
                            fired.push(d);
                        }
                    }
                }
                3 if !fired.is_empty() => {
                    // A stale or duplicate FireDeadline (a new leader re-proposing one).
                    let d = fired[rng.below(fired.len())].clone();
                    let out = h.fire_with("p", &d);
                    assert!(matches!(out, Outcome::NotFound(_)), "seed {seed}: {out:?}");
                    stale += 1;
                }
                4 => {
                    // A manual trigger at a time no spec time shares (half past a minute).
                    triggers += 1;
                    let at = (h.now_ms / MIN) * MIN + MIN / 2 + triggers as u64 * 1000;
                    h.patch_schedule(
                        "p",
                        SchedulePatch {
                            trigger: Some(TriggerNow {
                                overlap_policy: overlap::ALLOW_ALL,
                                scheduled_time_ms: at,
                            }),
                            ..Default::default()
                        },
                    );
                }
                _ => {
                    // A worker finishes (or fails) the oldest queued workflow task.
                    if let Some(task) = h.poll(TaskKind::Workflow) {
                        let cmd = if rng.below(4) == 0 {
                            WorkflowCommand {
                                kind: Some(Cmd::FailWorkflow(FailWorkflow {
                                    failure: b"boom".to_vec(),
                                    ..Default::default()
                                })),
                                user_metadata: Vec::new(),
                            }
                        } else {
                            complete(b"done")
                        };
                        h.complete_wft(&token(&Some(task)), vec![cmd]);
                    }
                }
            }
            let rec = h.schedule("p");
            let ctx = format!("seed {seed} step {step} policy {policy}");
            // One run per workflow id, i.e. per nominal time.
            let mut ids: Vec<&String> = rec.recent.iter().map(|r| &r.workflow_id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), rec.recent.len(), "{ctx}: {:?}", rec.recent);
            for r in &rec.recent {
                let ckey = crate::keys::current_run(NS, &r.workflow_id);
                let current: CurrentRun = prost::Message::decode(
                    crate::ReadState::get(&h.store, &ckey)
                        .unwrap()
                        .unwrap()
                        .as_slice(),
                )
                .unwrap();
                assert_eq!(
                    current.run_id, r.run_id,
                    "{ctx}: a second run of {}",
                    r.workflow_id
                );
            }
            // Exactly the armed deadline is in the timers index.
            assert_eq!(
                h.schedule_timer_keys("p"),
                usize::from(rec.deadline.is_some()),
                "{ctx}"
            );
            // Every spec time passed is accounted for once.
            let spec = rec.def.as_ref().unwrap().spec.clone().unwrap();
            let passed = crate::schedule::spec::times_between(
                &spec,
                "p",
                created_at,
                rec.processed_until_ms,
                usize::MAX,
            )
            .unwrap()
            .len() as i64;
            let manual_waiting = rec.buffered.iter().filter(|b| b.manual).count() as i64;
            let scheduled_started = rec.action_count - (triggers - manual_waiting);
            let accounted = scheduled_started
                + rec.overlap_skipped
                + rec.buffer_dropped
                + (rec.buffered.len() as i64 - manual_waiting)
                + rec.missed_catchup_window;
            assert_eq!(accounted, passed, "{ctx}: {rec:?}");
        }
        let rec = h.schedule("p");
        missed += rec.missed_catchup_window;
        skipped += rec.overlap_skipped + rec.buffer_dropped;
        started += rec.action_count;
    }
    assert!(
        stale > 0 && missed > 0 && skipped > 0 && started > 0,
        "stale {stale}, missed {missed}, skipped {skipped}, started {started}"
    );
}

#[test]
fn the_next_action_gets_the_last_completion_result() {
    let mut h = Harness::new();
    h.create_schedule("s", def(MIN, overlap::SKIP));
    h.fire_schedule("s");
    h.complete_next_run(); // completes with "done"
    h.fire_schedule("s");
    let second = h.schedule("s").recent[1].clone();
    let started = h.history(&second.workflow_id, &second.run_id);
    let Some(Attributes::WorkflowExecutionStarted(s)) = &started[0].attributes else {
        panic!("{:?}", started[0])
    };
    assert_eq!(s.last_completion_result, b"done");
}
