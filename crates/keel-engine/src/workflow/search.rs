//! Search attributes and memo: a namespace's registry of custom search attributes, the
//! validation of values against their registered types (Temporal's limits and messages), the
//! `type` metadata stamped on stored values, and the merge of upserts into a run's maps.
//!
//! Values stay Temporal `Payload`s, kept as their encoded bytes (a map entry's payload is
//! never re-encoded unless it is validated and stamped), so what a client sent is what the
//! history and List return. Maps are `BTreeMap`s: encoding is in key order, deterministic.

use std::collections::BTreeMap;

use prost::Message;

use super::apply::{accepted, decode, outcome, rejected, Ctx};
use super::model::workflow_outcome::Kind as Outcome;
use super::model::*;
use crate::error::Result;
use crate::{keys, StateStore};

/// Temporal's `IndexedValueType`, with its numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum IndexedValueType {
    Unspecified = 0,
    Text = 1,
    Keyword = 2,
    Int = 3,
    Double = 4,
    Bool = 5,
    Datetime = 6,
    KeywordList = 7,
}

impl IndexedValueType {
    /// The name Temporal stamps in a payload's `type` metadata and shows in its CLI.
    pub fn name(self) -> &'static str {
        match self {
            IndexedValueType::Unspecified => "Unspecified",
            IndexedValueType::Text => "Text",
            IndexedValueType::Keyword => "Keyword",
            IndexedValueType::Int => "Int",
            IndexedValueType::Double => "Double",
            IndexedValueType::Bool => "Bool",
            IndexedValueType::Datetime => "Datetime",
            IndexedValueType::KeywordList => "KeywordList",
        }
    }
}

use IndexedValueType as T;

/// System search attributes: set by the server, queryable, never written by a client.
pub const SYSTEM: &[(&str, IndexedValueType)] = &[
    ("WorkflowId", T::Keyword),
    ("RunId", T::Keyword),
    ("WorkflowType", T::Keyword),
    ("StartTime", T::Datetime),
    ("ExecutionTime", T::Datetime),
    ("CloseTime", T::Datetime),
    ("ExecutionStatus", T::Keyword),
    ("TaskQueue", T::Keyword),
    ("HistoryLength", T::Int),
    ("ParentWorkflowId", T::Keyword),
    ("ParentRunId", T::Keyword),
    ("RootWorkflowId", T::Keyword),
    ("RootRunId", T::Keyword),
];

/// Predefined search attributes: reserved names a workflow or client may set (the SDKs
/// upsert `TemporalChangeVersion` for patches, for example).
pub const PREDEFINED: &[(&str, IndexedValueType)] = &[
    ("TemporalChangeVersion", T::KeywordList),
    ("BinaryChecksums", T::KeywordList),
    ("BuildIds", T::KeywordList),
    ("BatcherNamespace", T::Keyword),
    ("BatcherUser", T::Keyword),
    ("TemporalScheduledStartTime", T::Datetime),
    ("TemporalScheduledById", T::Keyword),
    ("TemporalSchedulePaused", T::Bool),
    ("TemporalNamespaceDivision", T::Keyword),
    ("TemporalPauseInfo", T::KeywordList),
    ("TemporalReportedProblems", T::KeywordList),
];

/// System attributes of Temporal's that Keel's visibility rows do not hold: reserved, and
/// refused by name in a query rather than matching nothing.
pub const NOT_INDEXED: &[&str] = &[
    "ExecutionDuration",
    "StateTransitionCount",
    "HistorySizeBytes",
];

/// Most search attributes one run may carry (Temporal's default).
pub const MAX_KEYS: usize = 100;
/// Largest encoded value of one search attribute, bytes (Temporal's default).
pub const MAX_VALUE_BYTES: usize = 2 * 1024;
/// Largest total of a run's search attributes, bytes (Temporal's default).
pub const MAX_TOTAL_BYTES: usize = 40 * 1024;
/// Most custom search attributes a namespace may register (Temporal's SQL visibility
/// allows a fixed number of columns per type; Keel's index has no columns, so one limit).
pub const MAX_CUSTOM: usize = 100;

/// The type of `name` for a run in a namespace with `registry` (custom attributes), if the
/// name may be written by a client.
pub fn writable_type(registry: &BTreeMap<String, i32>, name: &str) -> Option<IndexedValueType> {
    if let Some(t) = registry.get(name) {
        return IndexedValueType::try_from(*t).ok();
    }
    PREDEFINED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The type of any queryable search attribute: system, predefined or custom.
pub fn queryable_type(registry: &BTreeMap<String, i32>, name: &str) -> Option<IndexedValueType> {
    SYSTEM
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .or_else(|| writable_type(registry, name))
}

fn reserved(name: &str) -> bool {
    SYSTEM.iter().chain(PREDEFINED).any(|(n, _)| *n == name)
        || NOT_INDEXED.contains(&name)
        || ["NamespaceId", "Memo", "MemoEncoding", "VisibilityTaskKey"].contains(&name)
        || name.starts_with("Temporal")
}

// ------------------------------------------------------------------------------ payloads

/// Temporal's `Payload` (`metadata` map, `data`), for reading and stamping values.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    #[prost(btree_map = "string, bytes", tag = "1")]
    pub metadata: BTreeMap<String, Vec<u8>>,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// A `json/plain` payload holding `value`, as the SDKs' default data converter writes it.
pub fn json_payload(value: &serde_json::Value) -> Payload {
    Payload {
        metadata: [("encoding".to_string(), b"json/plain".to_vec())].into(),
        data: value.to_string().into_bytes(),
    }
}

/// Temporal's `Memo` and `SearchAttributes` (both a map of payloads at field 1), with each
/// payload kept as its encoded bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PayloadMap {
    #[prost(btree_map = "string, bytes", tag = "1")]
    pub fields: BTreeMap<String, Vec<u8>>,
}

/// Decodes an encoded map; empty bytes are the empty map.
pub fn decode_map(bytes: &[u8]) -> std::result::Result<PayloadMap, String> {
    PayloadMap::decode(bytes).map_err(|e| format!("malformed payload map: {e}"))
}

/// A decoded search attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Nanoseconds since the Unix epoch.
    Time(i64),
    List(Vec<Value>),
}

/// What a payload holds, as JSON (`None`: a null payload, which an upsert uses to remove).
/// As in Temporal, empty data or `null` is null whatever the metadata says (the Rust SDK
/// unsets with a payload that has neither data nor metadata).
fn payload_json(p: &Payload) -> std::result::Result<Option<serde_json::Value>, String> {
    if p.data.is_empty() || p.data == b"null" {
        return Ok(None);
    }
    let encoding = p.metadata.get("encoding").map(|e| e.as_slice());
    match encoding {
        Some(b"binary/null") => Ok(None),
        Some(b"json/plain") => match serde_json::from_slice(&p.data) {
            Ok(serde_json::Value::Null) => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(format!("not valid JSON: {e}")),
        },
        Some(other) => Err(format!(
            "unsupported encoding {:?} (search attribute values are json/plain)",
            String::from_utf8_lossy(other)
        )),
        None => Err("payload has no encoding metadata".into()),
    }
}

/// Parses an RFC 3339 time to nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

fn scalar(v: &serde_json::Value, t: IndexedValueType) -> Option<Value> {
    use serde_json::Value as J;
    match (t, v) {
        (T::Keyword | T::Text | T::KeywordList, J::String(s)) => Some(Value::Str(s.clone())),
        (T::Int, J::Number(n)) => n.as_i64().map(Value::Int),
        (T::Double, J::Number(n)) => n.as_f64().map(Value::Double),
        (T::Bool, J::Bool(b)) => Some(Value::Bool(*b)),
        (T::Datetime, J::String(s)) => parse_time(s).map(Value::Time),
        _ => None,
    }
}

/// Decodes one payload as a value of type `t`: `Ok(None)` for a null payload or an empty
/// list (an upsert's "remove"), `Err` naming what is wrong.
pub fn decode_value(
    payload: &[u8],
    t: IndexedValueType,
) -> std::result::Result<Option<Value>, String> {
    let p = Payload::decode(payload).map_err(|e| format!("malformed payload: {e}"))?;
    value_of(&p, t)
}

/// [`decode_value`] of a decoded payload.
fn value_of(p: &Payload, t: IndexedValueType) -> std::result::Result<Option<Value>, String> {
    let Some(json) = payload_json(p)? else {
        return Ok(None);
    };
    let bad = || format!("{json} is not a valid value of type {}", t.name());
    match &json {
        serde_json::Value::Array(items) => {
            // Temporal accepts a list for every type but Text (a multi-valued attribute).
            if t == T::Text {
                return Err(bad());
            }
            if items.is_empty() {
                return Ok(None);
            }
            let values: Option<Vec<Value>> = items.iter().map(|x| scalar(x, t)).collect();
            values.map(|v| Some(Value::List(v))).ok_or_else(bad)
        }
        other => scalar(other, t)
            .map(|v| match t {
                T::KeywordList => Some(Value::List(vec![v])),
                _ => Some(v),
            })
            .ok_or_else(bad),
    }
}

/// Validates an encoded `SearchAttributes` of a start, continue-as-new, child or upsert
/// against the namespace's registry and Temporal's limits; returns it with every value's
/// `type` metadata stamped (as Temporal stores them) and `Err` with Temporal's message.
/// Null values stay (an upsert removes with them; [`merge`] drops them).
pub fn validate(
    registry: &BTreeMap<String, i32>,
    encoded: &[u8],
    namespace: &str,
) -> std::result::Result<Vec<u8>, String> {
    let map = decode_map(encoded)?;
    if map.fields.len() > MAX_KEYS {
        return Err(format!(
            "number of search attributes {} exceeds limit {MAX_KEYS}",
            map.fields.len()
        ));
    }
    let mut out = PayloadMap::default();
    let mut total = 0usize;
    for (name, bytes) in map.fields {
        let Some(t) = writable_type(registry, &name) else {
            return Err(if reserved(&name) {
                format!("{name} attribute can't be set in SearchAttributes")
            } else {
                format!("Namespace {namespace} has no mapping defined for search attribute {name}")
            });
        };
        let invalid = |e: String| {
            format!(
                "invalid value for search attribute {name} of type {}: {e}",
                t.name()
            )
        };
        let mut p = Payload::decode(bytes.as_slice())
            .map_err(|e| invalid(format!("malformed payload: {e}")))?;
        value_of(&p, t).map_err(invalid)?;
        p.metadata
            .insert("type".into(), t.name().as_bytes().to_vec());
        let stamped = p.encode_to_vec();
        if stamped.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "search attribute {name} value size {} exceeds size limit {MAX_VALUE_BYTES}",
                stamped.len()
            ));
        }
        total += name.len() + stamped.len();
        out.fields.insert(name, stamped);
    }
    if total > MAX_TOTAL_BYTES {
        return Err(format!(
            "total size of search attributes {total} exceeds size limit {MAX_TOTAL_BYTES}"
        ));
    }
    Ok(out.encode_to_vec())
}

/// Whether an encoded payload removes its key in an upsert: a null payload, JSON `null` or
/// an empty list.
pub fn removes(payload: &[u8]) -> bool {
    let Ok(p) = Payload::decode(payload) else {
        return false;
    };
    match payload_json(&p) {
        Ok(None) => true,
        Ok(Some(serde_json::Value::Array(a))) => a.is_empty(),
        _ => false,
    }
}

/// `current` with `upsert` applied: each key of `upsert` replaces the current value, or
/// removes it when its payload is null / an empty list. Both are encoded maps.
pub fn merge(current: &[u8], upsert: &[u8]) -> Vec<u8> {
    let mut map = decode_map(current).unwrap_or_default();
    for (k, v) in decode_map(upsert).unwrap_or_default().fields {
        if removes(&v) {
            map.fields.remove(&k);
        } else {
            map.fields.insert(k, v);
        }
    }
    if map.fields.is_empty() {
        Vec::new()
    } else {
        map.encode_to_vec()
    }
}

/// The search attributes a new run starts with: `encoded` (validated) without nulls.
pub fn initial(encoded: &[u8]) -> Vec<u8> {
    merge(&[], encoded)
}

// ---------------------------------------------------------------------- the registry

/// OperatorService AddSearchAttributes / RemoveSearchAttributes on one namespace.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateSearchAttributes {
    #[prost(string, tag = "1")]
    pub namespace: String,
    /// Attributes to add, by name, with their `IndexedValueType`.
    #[prost(btree_map = "string, int32", tag = "2")]
    pub add: BTreeMap<String, i32>,
    #[prost(string, repeated, tag = "3")]
    pub remove: Vec<String>,
}

/// Applies a registry change: all of it or, with Temporal's message, none of it. Adding an
/// attribute that exists with the same type is a no-op, as in Temporal; with another type it
/// is refused (Temporal skips it silently, leaving the caller to believe the new type holds),
/// and removing an unknown one is NOT_FOUND, as the OperatorService contract documents
/// (Temporal's SQL store skips it).
pub(super) fn update_registry<S: StateStore>(
    ctx: &mut Ctx<'_, S>,
    c: &UpdateSearchAttributes,
) -> Result<WorkflowOutcome> {
    let key = keys::namespace(&c.namespace);
    let Some(bytes) = ctx.store.get(&key)? else {
        return Ok(outcome(Outcome::NotFound(format!(
            "Namespace {} is not found.",
            c.namespace
        ))));
    };
    let mut ns: NamespaceRecord = decode(&key, &bytes)?;
    if c.add.is_empty() && c.remove.is_empty() {
        return Ok(rejected("SearchAttributes are not set on request."));
    }
    for (name, t) in &c.add {
        if name.is_empty() {
            return Ok(rejected("Search attribute name is not set on request."));
        }
        if reserved(name) {
            return Ok(rejected(format!(
                "Search attribute {name} is reserved by system."
            )));
        }
        match IndexedValueType::try_from(*t) {
            Ok(T::Unspecified) | Err(_) => {
                return Ok(rejected(format!("Unknown search attribute type: {t}.")))
            }
            Ok(_) => {}
        }
        if let Some(existing) = ns.search_attributes.get(name) {
            if existing != t {
                return Ok(rejected(format!(
                    "Search attribute {name} already exists with a different type."
                )));
            }
        }
    }
    for name in &c.remove {
        if !ns.search_attributes.contains_key(name) {
            return Ok(outcome(Outcome::NotFound(format!(
                "Search attribute {name} doesn't exist."
            ))));
        }
    }
    for (name, t) in &c.add {
        ns.search_attributes.insert(name.clone(), *t);
    }
    for name in &c.remove {
        ns.search_attributes.remove(name);
    }
    if ns.search_attributes.len() > MAX_CUSTOM {
        return Ok(rejected(format!(
            "Unable to create search attributes: cannot have more than {MAX_CUSTOM} search \
             attributes in namespace {}.",
            c.namespace
        )));
    }
    super::apply::put_namespace(ctx, &ns);
    Ok(accepted())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(encoding: &str, data: &str) -> Vec<u8> {
        Payload {
            metadata: [("encoding".to_string(), encoding.as_bytes().to_vec())].into(),
            data: data.as_bytes().to_vec(),
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

    fn registry() -> BTreeMap<String, i32> {
        [
            ("CustomKeyword", T::Keyword),
            ("CustomInt", T::Int),
            ("CustomDatetime", T::Datetime),
            ("CustomList", T::KeywordList),
            ("CustomText", T::Text),
        ]
        .into_iter()
        .map(|(k, t)| (k.to_string(), t as i32))
        .collect()
    }

    #[test]
    fn values_decode_by_their_registered_type() {
        let j = |d: &str| payload("json/plain", d);
        assert_eq!(
            decode_value(&j("\"a\""), T::Keyword).unwrap(),
            Some(Value::Str("a".into()))
        );
        assert_eq!(
            decode_value(&j("42"), T::Int).unwrap(),
            Some(Value::Int(42))
        );
        assert_eq!(
            decode_value(&j("1.5"), T::Double).unwrap(),
            Some(Value::Double(1.5))
        );
        assert_eq!(
            decode_value(&j("\"1970-01-01T00:00:01Z\""), T::Datetime).unwrap(),
            Some(Value::Time(1_000_000_000))
        );
        assert_eq!(
            decode_value(&j("\"x\""), T::KeywordList).unwrap(),
            Some(Value::List(vec![Value::Str("x".into())]))
        );
        assert_eq!(decode_value(&j("[]"), T::KeywordList).unwrap(), None);
        assert_eq!(
            decode_value(&payload("binary/null", ""), T::Int).unwrap(),
            None
        );
        for (data, t) in [
            ("\"a\"", T::Int),
            ("1.5", T::Int),
            ("1", T::Bool),
            ("\"yesterday\"", T::Datetime),
            ("[\"a\"]", T::Text),
            ("[1, \"a\"]", T::Int),
        ] {
            assert!(decode_value(&j(data), t).is_err(), "{data} as {t:?}");
        }
        assert!(decode_value(&payload("binary/plain", "x"), T::Keyword).is_err());
        // The Rust SDK's unset: no metadata, no data.
        assert_eq!(
            decode_value(&Payload::default().encode_to_vec(), T::Int).unwrap(),
            None
        );
        assert!(removes(&Payload::default().encode_to_vec()));
    }

    #[test]
    fn validation_names_the_attribute_and_stamps_the_type() {
        let reg = registry();
        let ok = validate(
            &reg,
            &map(&[
                ("CustomKeyword", payload("json/plain", "\"v\"")),
                ("TemporalChangeVersion", payload("json/plain", "[\"p-1\"]")),
            ]),
            "default",
        )
        .unwrap();
        let stamped = decode_map(&ok).unwrap();
        let p = Payload::decode(stamped.fields["CustomKeyword"].as_slice()).unwrap();
        assert_eq!(p.metadata["type"], b"Keyword");
        assert_eq!(p.data, b"\"v\"");
        let err = validate(
            &reg,
            &map(&[("Nope", payload("json/plain", "1"))]),
            "default",
        )
        .unwrap_err();
        assert_eq!(
            err,
            "Namespace default has no mapping defined for search attribute Nope"
        );
        let err = validate(
            &reg,
            &map(&[("WorkflowId", payload("json/plain", "\"x\""))]),
            "ns",
        )
        .unwrap_err();
        assert_eq!(err, "WorkflowId attribute can't be set in SearchAttributes");
        let err = validate(
            &reg,
            &map(&[("CustomInt", payload("json/plain", "\"x\""))]),
            "ns",
        )
        .unwrap_err();
        assert!(
            err.starts_with("invalid value for search attribute CustomInt of type Int"),
            "{err}"
        );
        let big = format!("\"{}\"", "x".repeat(MAX_VALUE_BYTES));
        let err = validate(
            &reg,
            &map(&[("CustomKeyword", payload("json/plain", &big))]),
            "ns",
        )
        .unwrap_err();
        assert!(err.contains("exceeds size limit"), "{err}");
    }

    #[test]
    fn an_upsert_replaces_adds_and_removes() {
        let current = map(&[
            ("A", payload("json/plain", "1")),
            ("B", payload("json/plain", "2")),
            ("C", payload("json/plain", "3")),
        ]);
        let upsert = map(&[
            ("A", payload("json/plain", "10")),
            ("B", payload("binary/null", "")),
            ("C", payload("json/plain", "[]")),
            ("D", payload("json/plain", "4")),
        ]);
        let merged = decode_map(&merge(&current, &upsert)).unwrap();
        let keys: Vec<_> = merged.fields.keys().cloned().collect();
        assert_eq!(keys, ["A", "D"]);
        assert_eq!(merged.fields["A"], payload("json/plain", "10"));
        assert!(merge(
            &current,
            &map(&[
                ("A", payload("binary/null", "")),
                ("B", payload("binary/null", "")),
                ("C", payload("binary/null", "")),
            ])
        )
        .is_empty());
    }
}
