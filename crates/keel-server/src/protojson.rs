//! Protobuf JSON (the proto3 canonical mapping: lowerCamelCase names, enum names, 64-bit
//! integers and bytes as strings) of Temporal's and Keel's messages, driven by the descriptor
//! sets the binary already embeds for gRPC reflection. Used by the CLI's JSON output and by
//! the HTTP API, so both print exactly what Temporal's HTTP API prints for the same message.

use std::sync::OnceLock;

use base64::Engine;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};
use serde_json::Value;

/// Temporal's API (WorkflowService, OperatorService and every message they use).
pub fn temporal_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(keel_proto::temporal::FILE_DESCRIPTOR_SET)
            .expect("the embedded Temporal descriptor set decodes")
    })
}

/// Keel's own API (admin, kv, raft).
pub fn keel_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(keel_proto::FILE_DESCRIPTOR_SET)
            .expect("the embedded Keel descriptor set decodes")
    })
}

/// The descriptor of a message by its full protobuf name.
pub fn descriptor(full_name: &str) -> Option<MessageDescriptor> {
    temporal_pool()
        .get_message_by_name(full_name)
        .or_else(|| keel_pool().get_message_by_name(full_name))
}

/// Encoded protobuf bytes of message `full_name` → its JSON.
pub fn bytes_to_json(full_name: &str, bytes: &[u8]) -> anyhow::Result<Value> {
    let desc = descriptor(full_name)
        .ok_or_else(|| anyhow::anyhow!("no message type {full_name} in the descriptor sets"))?;
    let message = DynamicMessage::decode(desc, bytes)?;
    dynamic_to_json(&message)
}

/// A dynamic message → JSON, default-valued fields left out (as Temporal's HTTP API does).
pub fn dynamic_to_json(message: &DynamicMessage) -> anyhow::Result<Value> {
    let options = SerializeOptions::new().skip_default_fields(true);
    Ok(message.serialize_with_options(serde_json::value::Serializer, &options)?)
}

/// A typed message → JSON.
pub fn to_json<M: prost::Message>(full_name: &str, message: &M) -> anyhow::Result<Value> {
    bytes_to_json(full_name, &message.encode_to_vec())
}

/// JSON → a dynamic message of `desc` (unknown fields refused, so a typo is an error).
pub fn json_to_dynamic(desc: MessageDescriptor, json: &Value) -> anyhow::Result<DynamicMessage> {
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    Ok(DynamicMessage::deserialize_with_options(
        desc, json, &options,
    )?)
}

/// Replaces, everywhere in `v`, each Temporal `Payload` (`{"metadata": {"encoding": …},
/// "data": …}`) whose encoding Keel can read — `json/plain`, `binary/null`, `text/plain`,
/// `binary/plain` when it is UTF-8 — by its value. Other payloads stay as they are.
pub fn decode_payloads(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(decoded) = decoded_payload(map) {
                *v = decoded;
                return;
            }
            for (_, x) in map.iter_mut() {
                decode_payloads(x);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(decode_payloads),
        _ => {}
    }
}

fn decoded_payload(map: &serde_json::Map<String, Value>) -> Option<Value> {
    if map.keys().any(|k| k != "metadata" && k != "data") {
        return None;
    }
    let b64 = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str()?)
            .ok()
    };
    let metadata = map.get("metadata")?.as_object()?;
    let encoding = String::from_utf8(b64(metadata.get("encoding")?)?).ok()?;
    let data = match map.get("data") {
        Some(d) => b64(d)?,
        None => Vec::new(),
    };
    match encoding.as_str() {
        "json/plain" => serde_json::from_slice(&data).ok(),
        "binary/null" => Some(Value::Null),
        "text/plain" | "binary/plain" => String::from_utf8(data).ok().map(Value::String),
        _ => None,
    }
}

/// A `json/plain` payload of `value`, as the SDKs' default data converter writes it.
pub fn json_payload(
    value: &Value,
) -> keel_proto::temporalio_protos::temporal::api::common::v1::Payload {
    keel_proto::temporalio_protos::temporal::api::common::v1::Payload {
        metadata: [("encoding".to_string(), b"json/plain".to_vec())]
            .into_iter()
            .collect(),
        data: serde_json::to_vec(value).expect("a JSON value serializes"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::temporalio_protos::temporal::api::common::v1::{Payloads, WorkflowExecution};

    #[test]
    fn messages_print_as_proto3_json_and_json_payloads_decode() {
        let execution = WorkflowExecution {
            workflow_id: "order-42".into(),
            run_id: String::new(),
        };
        assert_eq!(
            to_json("temporal.api.common.v1.WorkflowExecution", &execution).unwrap(),
            serde_json::json!({"workflowId": "order-42"})
        );
        let payloads = Payloads {
            payloads: vec![json_payload(
                &serde_json::json!({"item": "pizza", "qty": 2}),
            )],
        };
        let mut v = to_json("temporal.api.common.v1.Payloads", &payloads).unwrap();
        assert!(v["payloads"][0]["data"].is_string(), "raw: base64 bytes");
        decode_payloads(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"payloads": [{"item": "pizza", "qty": 2}]})
        );
        let desc = descriptor("temporal.api.common.v1.WorkflowExecution").unwrap();
        assert!(json_to_dynamic(desc.clone(), &serde_json::json!({"workflowId": "w"})).is_ok());
        assert!(
            json_to_dynamic(desc, &serde_json::json!({"workflowID": "w"})).is_err(),
            "unknown fields are refused"
        );
    }
}
