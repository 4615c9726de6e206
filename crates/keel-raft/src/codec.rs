//! Conversions between openraft's types and Keel's protobuf messages.
//!
//! One encoding serves both the wire (peer RPCs) and the disk (log entries, metadata),
//! so what a follower stores is byte-for-byte what the leader sent.

use std::collections::{BTreeMap, BTreeSet};

use keel_proto::raft::v1 as pb;
use openraft::EntryPayload;
use prost::Message;

use crate::error::{Error, Result};
use crate::typ::{
    Entry, KeelNode, LeaderId, LogId, Membership, SnapshotMeta, StoredMembership, Vote,
};

pub fn vote_to_pb(v: &Vote) -> pb::Vote {
    pb::Vote {
        term: v.leader_id.term,
        node_id: v.leader_id.node_id,
        committed: v.committed,
    }
}

pub fn vote_from_pb(v: &pb::Vote) -> Vote {
    let mut vote = Vote::new(v.term, v.node_id);
    vote.committed = v.committed;
    vote
}

pub fn log_id_to_pb(l: &LogId) -> pb::LogId {
    pb::LogId {
        term: l.leader_id.term,
        node_id: l.leader_id.node_id,
        index: l.index,
    }
}

pub fn log_id_from_pb(l: &pb::LogId) -> LogId {
    LogId::new(
        LeaderId {
            term: l.term,
            node_id: l.node_id,
        },
        l.index,
    )
}

pub fn opt_log_id_to_pb(l: &Option<LogId>) -> Option<pb::LogId> {
    l.as_ref().map(log_id_to_pb)
}

pub fn opt_log_id_from_pb(l: &Option<pb::LogId>) -> Option<LogId> {
    l.as_ref().map(log_id_from_pb)
}

pub fn node_to_pb(n: &KeelNode) -> pb::Node {
    pb::Node {
        peer_addr: n.peer_addr.clone(),
        client_addr: n.client_addr.clone(),
    }
}

pub fn node_from_pb(n: &pb::Node) -> KeelNode {
    KeelNode {
        peer_addr: n.peer_addr.clone(),
        client_addr: n.client_addr.clone(),
    }
}

pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m
            .get_joint_config()
            .iter()
            .map(|c| pb::NodeIdSet {
                ids: c.iter().copied().collect(),
            })
            .collect(),
        nodes: m.nodes().map(|(id, n)| (*id, node_to_pb(n))).collect(),
    }
}

pub fn membership_from_pb(m: &pb::Membership) -> Result<Membership> {
    let configs: Vec<BTreeSet<u64>> = m
        .configs
        .iter()
        .map(|c| c.ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<u64, KeelNode> = m
        .nodes
        .iter()
        .map(|(id, n)| (*id, node_from_pb(n)))
        .collect();
    Membership::new(configs, nodes).map_err(|e| Error::Decode(format!("membership: {e}")))
}

pub fn stored_membership_to_pb(m: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: opt_log_id_to_pb(m.log_id()),
        membership: Some(membership_to_pb(m.membership())),
    }
}

pub fn stored_membership_from_pb(m: &pb::StoredMembership) -> Result<StoredMembership> {
    Ok(StoredMembership::new(
        opt_log_id_from_pb(&m.log_id),
        m.membership
            .as_ref()
            .map(membership_from_pb)
            .transpose()?
            .unwrap_or_default(),
    ))
}

pub fn entry_to_pb(e: &Entry) -> pb::Entry {
    let payload = match &e.payload {
        EntryPayload::Blank => pb::entry::Payload::Blank(pb::Empty {}),
        EntryPayload::Normal(p) => pb::entry::Payload::Normal(p.encode_to_vec()),
        EntryPayload::Membership(m) => pb::entry::Payload::Membership(membership_to_pb(m)),
    };
    pb::Entry {
        log_id: Some(log_id_to_pb(&e.log_id)),
        payload: Some(payload),
    }
}

pub fn entry_from_pb(e: &pb::Entry) -> Result<Entry> {
    let log_id = e
        .log_id
        .as_ref()
        .ok_or_else(|| Error::Decode("log entry without log_id".into()))?;
    let payload = match &e.payload {
        Some(pb::entry::Payload::Blank(_)) => EntryPayload::Blank,
        Some(pb::entry::Payload::Normal(bytes)) => {
            EntryPayload::Normal(keel_engine::Proposal::decode(bytes.as_slice()).map_err(
                |err| Error::Decode(format!("proposal at index {}: {err}", log_id.index)),
            )?)
        }
        Some(pb::entry::Payload::Membership(m)) => EntryPayload::Membership(membership_from_pb(m)?),
        None => {
            return Err(Error::Decode(format!(
                "entry {} without payload",
                log_id.index
            )))
        }
    };
    Ok(Entry {
        log_id: log_id_from_pb(log_id),
        payload,
    })
}

pub fn encode_entry(e: &Entry) -> Vec<u8> {
    entry_to_pb(e).encode_to_vec()
}

pub fn decode_entry(bytes: &[u8]) -> Result<Entry> {
    let pb = pb::Entry::decode(bytes).map_err(|e| Error::Decode(format!("log entry: {e}")))?;
    entry_from_pb(&pb)
}

/// A snapshot's name: the log position it covers (snapshots at one position hold the same
/// state, which apply derives from the log alone).
pub fn snapshot_id(m: &SnapshotMeta) -> String {
    match &m.last_log_id {
        Some(l) => format!(
            "{:020}-{}-{}",
            l.index, l.leader_id.term, l.leader_id.node_id
        ),
        None => format!("{:020}-0-0", 0),
    }
}

/// A vote from the wire; a missing one is the initial vote (term 0).
pub fn opt_vote_from_pb(v: &Option<pb::Vote>) -> Vote {
    v.as_ref()
        .map(vote_from_pb)
        .unwrap_or_else(|| Vote::new(0, 0))
}

pub fn snapshot_meta_to_pb(m: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        last_log_id: opt_log_id_to_pb(&m.last_log_id),
        last_membership: Some(stored_membership_to_pb(&m.last_membership)),
        snapshot_id: snapshot_id(m),
    }
}

pub fn snapshot_meta_from_pb(m: &pb::SnapshotMeta) -> Result<SnapshotMeta> {
    Ok(SnapshotMeta {
        last_log_id: opt_log_id_from_pb(&m.last_log_id),
        last_membership: m
            .last_membership
            .as_ref()
            .map(stored_membership_from_pb)
            .transpose()?
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lid(term: u64, node: u64, index: u64) -> LogId {
        log_id_from_pb(&pb::LogId {
            term,
            node_id: node,
            index,
        })
    }

    #[test]
    fn entries_round_trip_through_protobuf() {
        let nodes: BTreeMap<u64, KeelNode> = (1..=3)
            .map(|i| {
                (
                    i,
                    KeelNode {
                        peer_addr: format!("127.0.0.1:{i}"),
                        client_addr: format!("127.0.0.1:1{i}"),
                    },
                )
            })
            .collect();
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2]), BTreeSet::from([1, 2, 3])],
            nodes,
        )
        .unwrap();
        let entries = vec![
            Entry {
                log_id: lid(1, 1, 1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: lid(2, 3, 2),
                payload: EntryPayload::Normal(keel_engine::Proposal {
                    proposed_at_ms: 77,
                    commands: vec![keel_engine::Command::put("k", "v")],
                }),
            },
            Entry {
                log_id: lid(2, 3, 3),
                payload: EntryPayload::Membership(membership),
            },
        ];
        for e in &entries {
            assert_eq!(&decode_entry(&encode_entry(e)).unwrap(), e);
        }
        let mut v = Vote::new(5, 2);
        v.committed = true;
        assert_eq!(vote_from_pb(&vote_to_pb(&v)), v);
    }

    #[test]
    fn a_garbled_entry_is_an_error() {
        assert!(decode_entry(&[0xff, 0xff, 0xff]).is_err());
        assert!(entry_from_pb(&pb::Entry::default()).is_err());
    }
}
