//! Conversions between Temporal's API types and the engine's.

use keel_proto::prost_wkt_types::{Duration, Timestamp};
use prost::Message;

/// A protobuf duration in ms (negative durations count as 0; sub-ms parts are dropped).
pub fn duration_ms(d: &Option<Duration>) -> u64 {
    match d {
        Some(d) if d.seconds > 0 || d.nanos > 0 => {
            (d.seconds.max(0) as u64) * 1_000 + (d.nanos.max(0) as u64) / 1_000_000
        }
        _ => 0,
    }
}

/// A ms count as a protobuf duration.
pub fn duration(ms: u64) -> Duration {
    Duration {
        seconds: (ms / 1_000) as i64,
        nanos: ((ms % 1_000) * 1_000_000) as i32,
    }
}

/// Ms since the Unix epoch as a protobuf timestamp.
pub fn timestamp(ms: u64) -> Timestamp {
    Timestamp {
        seconds: (ms / 1_000) as i64,
        nanos: ((ms % 1_000) * 1_000_000) as i32,
    }
}

/// Like [`timestamp`], absent for 0 ("never", e.g. an open run's close time).
pub fn opt_timestamp(ms: u64) -> Option<Timestamp> {
    (ms > 0).then(|| timestamp(ms))
}

/// An optional Temporal message (payloads, failure, header, metadata) as the opaque bytes the
/// engine stores; empty when absent.
pub fn encoded<M: Message>(m: &Option<M>) -> Vec<u8> {
    m.as_ref().map(Message::encode_to_vec).unwrap_or_default()
}

/// The Temporal message stored as `bytes` by [`encoded`]: absent when empty (or, should the
/// bytes not decode, absent too: the engine stores only what it was given).
pub fn decoded<M: Message + Default>(bytes: &[u8]) -> Option<M> {
    if bytes.is_empty() {
        return None;
    }
    M::decode(bytes).ok()
}

/// Responses smaller than this go out uncompressed even when the caller accepts gzip: a
/// deflate stream costs a fresh compressor (hundreds of KiB zeroed) on our side and an
/// inflater on the SDK's, which outweighs the bytes saved on a small message. Larger ones
/// (histories, pages) are compressed when the caller accepts it (temporal-compat.md §1).
pub const COMPRESS_FROM_BYTES: usize = 4 * 1024;

/// Wraps an RPC's answer, compressing it only when it is large enough to be worth it.
pub fn reply<M: Message>(m: M) -> tonic::Response<M> {
    let small = m.encoded_len() < COMPRESS_FROM_BYTES;
    let mut r = tonic::Response::new(m);
    if small {
        r.disable_compression();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_at_ms_precision() {
        assert_eq!(duration_ms(&Some(duration(12_345))), 12_345);
        assert_eq!(duration_ms(&None), 0);
        assert_eq!(
            duration_ms(&Some(Duration {
                seconds: -5,
                nanos: 0
            })),
            0
        );
    }

    #[test]
    fn only_large_replies_are_compressed() {
        use tonic::codec::SingleMessageCompressionOverride as O;
        let small = reply(Timestamp {
            seconds: 1,
            nanos: 0,
        });
        assert_eq!(small.extensions().get::<O>(), Some(&O::Disable));
        let large = reply(keel_proto::prost_wkt_types::Value {
            kind: Some(keel_proto::prost_wkt_types::value::Kind::StringValue(
                "x".repeat(COMPRESS_FROM_BYTES),
            )),
        });
        assert_eq!(large.extensions().get::<O>(), None);
    }
}
