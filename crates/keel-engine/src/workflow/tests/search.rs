//! Search attributes and memo: the namespace registry, validation at start and in commands,
//! upserts and memo modifications, and what a continued run carries.

use prost::Message;

use super::*;
use crate::workflow::search::{
    decode_map, IndexedValueType, Payload, PayloadMap, UpdateSearchAttributes,
};

fn json(data: &str) -> Vec<u8> {
    Payload {
        metadata: [("encoding".to_string(), b"json/plain".to_vec())].into(),
        data: data.as_bytes().to_vec(),
    }
    .encode_to_vec()
}

fn null() -> Vec<u8> {
    Payload {
        metadata: [("encoding".to_string(), b"binary/null".to_vec())].into(),
        data: Vec::new(),
    }
    .encode_to_vec()
}

fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    PayloadMap {
        fields: entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
    .encode_to_vec()
}

/// Each key of an encoded map with its JSON data.
fn contents(encoded: &[u8]) -> Vec<(String, String)> {
    decode_map(encoded)
        .unwrap()
        .fields
        .into_iter()
        .map(|(k, v)| {
            let p = Payload::decode(v.as_slice()).unwrap();
            (k, String::from_utf8(p.data).unwrap())
        })
        .collect()
}

fn add(h: &mut Harness, attrs: &[(&str, IndexedValueType)]) -> Outcome {
    h.apply(Kind::UpdateSearchAttributes(UpdateSearchAttributes {
        namespace: NS.into(),
        add: attrs
            .iter()
            .map(|(k, t)| (k.to_string(), *t as i32))
            .collect(),
        remove: Vec::new(),
    }))
}

fn start_with(h: &mut Harness, wf: &str, run: &str, search_attributes: Vec<u8>) -> Outcome {
    h.apply(Kind::StartWorkflow(StartWorkflow {
        run: Some(run_key(wf, run)),
        workflow_type: "hello".into(),
        task_queue: TQ.into(),
        request_id: format!("req-{run}"),
        memo: map(&[("note", json("\"first\""))]),
        search_attributes,
        ..Default::default()
    }))
}

fn upsert(sa: Vec<u8>) -> WorkflowCommand {
    WorkflowCommand {
        kind: Some(Cmd::UpsertSearchAttributes(UpsertSearchAttributes {
            search_attributes: sa,
        })),
        user_metadata: Vec::new(),
    }
}

#[test]
fn the_registry_adds_idempotently_and_refuses_reserved_conflicting_and_unknown() {
    let mut h = Harness::new();
    let ok = add(&mut h, &[("Customer", IndexedValueType::Keyword)]);
    assert!(matches!(ok, Outcome::Accepted(_)), "{ok:?}");
    // The same name and type again is a no-op, as in Temporal.
    let again = add(&mut h, &[("Customer", IndexedValueType::Keyword)]);
    assert!(matches!(again, Outcome::Accepted(_)), "{again:?}");
    for (attrs, why) in [
        (
            vec![("Customer", IndexedValueType::Int)],
            "already exists with a different type",
        ),
        (
            vec![("WorkflowId", IndexedValueType::Keyword)],
            "reserved by system",
        ),
        (
            vec![("TemporalAnything", IndexedValueType::Keyword)],
            "reserved by system",
        ),
        (
            vec![("X", IndexedValueType::Unspecified)],
            "Unknown search attribute type",
        ),
    ] {
        match add(&mut h, &attrs) {
            Outcome::InvalidArgument(m) => assert!(m.contains(why), "{m}"),
            other => panic!("{attrs:?}: {other:?}"),
        }
    }
    let ns = read_namespace(&h.store, NS).unwrap().unwrap();
    assert_eq!(
        ns.search_attributes.into_iter().collect::<Vec<_>>(),
        [("Customer".to_string(), IndexedValueType::Keyword as i32)]
    );
    let gone = h.apply(Kind::UpdateSearchAttributes(UpdateSearchAttributes {
        namespace: NS.into(),
        add: Default::default(),
        remove: vec!["Nope".into()],
    }));
    assert!(
        matches!(gone, Outcome::NotFound(ref m) if m.contains("Nope")),
        "{gone:?}"
    );
}

#[test]
fn a_start_validates_and_types_its_search_attributes() {
    let mut h = Harness::new();
    add(
        &mut h,
        &[
            ("Customer", IndexedValueType::Keyword),
            ("Amount", IndexedValueType::Int),
        ],
    );
    let bad = start_with(&mut h, "wf", "r0", map(&[("Amount", json("\"ten\""))]));
    assert!(
        matches!(bad, Outcome::InvalidArgument(ref m) if m.contains("Amount of type Int")),
        "{bad:?}"
    );
    let unknown = start_with(&mut h, "wf", "r0", map(&[("Other", json("1"))]));
    assert!(
        matches!(unknown, Outcome::InvalidArgument(ref m) if m.contains("no mapping defined for search attribute Other")),
        "{unknown:?}"
    );
    assert!(read_mutable_state(&h.store, &run_key("wf", "r0"))
        .unwrap()
        .is_none());
    let ok = start_with(
        &mut h,
        "wf",
        "r1",
        map(&[("Customer", json("\"acme\"")), ("Amount", json("5"))]),
    );
    assert!(matches!(ok, Outcome::Started(_)), "{ok:?}");
    let Attributes::WorkflowExecutionStarted(s) = attr(&h.history("wf", "r1"), 1).clone() else {
        panic!("no start");
    };
    let typed = decode_map(&s.search_attributes).unwrap();
    let p = Payload::decode(typed.fields["Amount"].as_slice()).unwrap();
    assert_eq!(p.metadata["type"], b"Int");
    let row = read_visibility(&h.store, &run_key("wf", "r1"))
        .unwrap()
        .unwrap();
    assert_eq!(row.search_attributes, s.search_attributes);
    assert_eq!(contents(&row.memo), [("note".into(), "\"first\"".into())]);
}

#[test]
fn upserts_and_memo_changes_write_events_state_and_the_visibility_row() {
    let mut h = Harness::new();
    add(
        &mut h,
        &[
            ("Customer", IndexedValueType::Keyword),
            ("Amount", IndexedValueType::Int),
        ],
    );
    start_with(
        &mut h,
        "wf",
        "r1",
        map(&[("Customer", json("\"acme\"")), ("Amount", json("5"))]),
    );
    let wft = h.poll(TaskKind::Workflow);
    let out = h.complete_wft(
        &token(&wft),
        vec![
            upsert(map(&[("Amount", json("7")), ("Customer", null())])),
            WorkflowCommand {
                kind: Some(Cmd::ModifyProperties(ModifyProperties {
                    upserted_memo: map(&[("note", null()), ("next", json("2"))]),
                })),
                user_metadata: Vec::new(),
            },
        ],
    );
    assert!(matches!(out, Outcome::Accepted(_)), "{out:?}");
    assert_eq!(
        h.types("wf", "r1")[4..],
        [
            "UpsertWorkflowSearchAttributes",
            "WorkflowPropertiesModified"
        ]
    );
    let Attributes::UpsertWorkflowSearchAttributes(u) = attr(&h.history("wf", "r1"), 5).clone()
    else {
        panic!("no upsert");
    };
    assert_eq!(u.workflow_task_completed_event_id, 4);
    let ms = h.state("wf", "r1");
    assert_eq!(
        contents(&ms.search_attributes),
        [("Amount".into(), "7".into())]
    );
    assert_eq!(contents(&ms.memo), [("next".into(), "2".into())]);
    let row = read_visibility(&h.store, &run_key("wf", "r1"))
        .unwrap()
        .unwrap();
    assert_eq!(row.search_attributes, ms.search_attributes);
    assert_eq!(row.memo, ms.memo);

    // A continue-as-new without attributes carries the current (upserted) ones and memo.
    h.signal("s1");
    let wft = h.poll(TaskKind::Workflow);
    h.complete_wft(
        &token(&wft),
        vec![WorkflowCommand {
            kind: Some(Cmd::ContinueAsNew(ContinueAsNew {
                new_run_id: "r2".into(),
                ..Default::default()
            })),
            user_metadata: Vec::new(),
        }],
    );
    let next = h.state("wf", "r2");
    assert_eq!(
        contents(&next.search_attributes),
        [("Amount".into(), "7".into())]
    );
    assert_eq!(contents(&next.memo), [("next".into(), "2".into())]);
}

#[test]
fn an_invalid_upsert_fails_the_task_with_bad_search_attributes() {
    let mut h = Harness::new();
    add(&mut h, &[("Amount", IndexedValueType::Int)]);
    for (wf, sa, why) in [
        ("a", map(&[("Amount", json("\"x\""))]), "Amount of type Int"),
        (
            "b",
            map(&[("Undeclared", json("1"))]),
            "no mapping defined for search attribute Undeclared",
        ),
        ("c", Vec::new(), "SearchAttributes is not set"),
    ] {
        start_with(&mut h, wf, "r1", Vec::new());
        let wft = h.poll(TaskKind::Workflow);
        let out = h.complete_wft(&token(&wft), vec![upsert(sa)]);
        assert!(
            matches!(out, Outcome::InvalidArgument(ref m) if m.contains(why)),
            "{out:?}"
        );
        let failed = h
            .history(wf, "r1")
            .into_iter()
            .find_map(|e| match e.attributes {
                Some(Attributes::WorkflowTaskFailed(f)) => Some(f),
                _ => None,
            })
            .expect("WorkflowTaskFailed");
        assert_eq!(
            failed.cause,
            WorkflowTaskFailedCause::BadSearchAttributes as i32
        );
        assert!(failed.message.contains(why), "{}", failed.message);
        assert!(h.state(wf, "r1").search_attributes.is_empty());
        // Its retry would take the next poll of the queue.
        h.apply(Kind::TerminateWorkflow(TerminateWorkflow {
            run: Some(run_key(wf, "r1")),
            ..Default::default()
        }));
    }
}

#[test]
fn every_write_of_a_namespace_record_tells_its_caches() {
    let changed = |effects: &[Effect], name: &str| {
        effects.contains(&Effect::NamespaceChanged {
            name: name.to_string(),
        })
    };
    let mut h = Harness::new();
    h.effects.clear();
    assert!(matches!(h.register("other", 0), Outcome::Accepted(_)));
    assert!(changed(&h.effects, "other"), "registered: {:?}", h.effects);

    h.effects.clear();
    assert!(matches!(
        add(&mut h, &[("CustomKeyword", IndexedValueType::Keyword)]),
        Outcome::Accepted(_)
    ));
    assert!(
        changed(&h.effects, NS),
        "search attribute added: {:?}",
        h.effects
    );

    h.effects.clear();
    assert!(matches!(
        h.apply(Kind::SetNamespaceLimits(SetNamespaceLimits {
            namespace: NS.into(),
            suggest_continue_as_new_events: 100,
            suggest_continue_as_new_bytes: 0,
        })),
        Outcome::Accepted(_)
    ));
    assert!(changed(&h.effects, NS), "limits set: {:?}", h.effects);

    // Refused: nothing written, nothing to tell.
    h.effects.clear();
    assert!(!matches!(h.register("other", 0), Outcome::Accepted(_)));
    assert!(!changed(&h.effects, "other"), "{:?}", h.effects);

    let mut keys = Vec::new();
    Effect::NamespaceChanged { name: NS.into() }.watch_keys(&mut keys);
    assert_eq!(keys, vec![watch_namespace(NS)]);
}
