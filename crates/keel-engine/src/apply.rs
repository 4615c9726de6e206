//! Applying one committed log entry's [`Proposal`] to the state.

use crate::commands::{command::Kind, response, RegisterWrite, Rejected};
use crate::error::hex;
use crate::keys::{self, MetaKey};
use crate::{Command, Error, Proposal, ProposalResponse, ReadState, Response, Result, StateStore};

/// What apply derived for an entry, for the caller's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMeta {
    /// The replicated time the entry was applied at, ms since the Unix epoch.
    pub entry_time_ms: u64,
    /// What the leader's drivers and waiters must react to, in apply order.
    pub effects: Vec<crate::workflow::Effect>,
}

/// Replicated time of an entry: the proposer's clock, but never earlier than the entry
/// before it, so time never goes backwards across leader changes or skewed clocks.
pub fn entry_time_ms(proposed_at_ms: u64, last_applied_time_ms: u64) -> u64 {
    proposed_at_ms.max(last_applied_time_ms)
}

/// The replicated time of the last applied entry (0 before the first).
pub fn last_applied_time_ms(store: &impl ReadState) -> Result<u64> {
    let key = keys::meta(MetaKey::LastAppliedTime);
    match store.get(&key)? {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| Error::Corrupt {
                key_hex: hex(&key),
                message: format!("expected 8 bytes, found {}", v.len()),
            })?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// Applies every command of `proposal` in order and advances the replicated time.
///
/// Deterministic: the result depends only on `proposal` and the store's contents.
pub fn apply_proposal(
    proposal: &Proposal,
    store: &mut impl StateStore,
) -> Result<(ProposalResponse, AppliedMeta)> {
    let entry_time_ms = entry_time_ms(proposal.proposed_at_ms, last_applied_time_ms(store)?);
    let mut responses = Vec::with_capacity(proposal.commands.len());
    let mut effects = Vec::new();
    for cmd in &proposal.commands {
        responses.push(apply_command(cmd, entry_time_ms, store, &mut effects)?);
    }
    crate::workflow::drop_spent_wakeups(store, &mut effects)?;
    store.put(
        &keys::meta(MetaKey::LastAppliedTime),
        &entry_time_ms.to_be_bytes(),
    );
    Ok((
        ProposalResponse { responses },
        AppliedMeta {
            entry_time_ms,
            effects,
        },
    ))
}

fn apply_command(
    cmd: &Command,
    now_ms: u64,
    store: &mut impl StateStore,
    effects: &mut Vec<crate::workflow::Effect>,
) -> Result<Response> {
    let kind = match &cmd.kind {
        None => return Ok(rejected("command has no kind (unknown to this version?)")),
        Some(kind) => kind,
    };
    let write = match kind {
        Kind::RegisterPut(put) => {
            let key = keys::register(&put.key);
            let previous = store.get(&key)?;
            store.put(&key, &put.value);
            RegisterWrite {
                succeeded: true,
                previous,
            }
        }
        Kind::RegisterCas(cas) => {
            let key = keys::register(&cas.key);
            let previous = store.get(&key)?;
            let succeeded = previous == cas.expected;
            if succeeded {
                store.put(&key, &cas.value);
            }
            RegisterWrite {
                succeeded,
                previous,
            }
        }
        Kind::RegisterDelete(del) => {
            let key = keys::register(&del.key);
            let previous = store.get(&key)?;
            if previous.is_some() {
                store.delete(&key);
            }
            RegisterWrite {
                succeeded: true,
                previous,
            }
        }
        workflow => {
            let outcome = crate::workflow::apply(workflow, now_ms, store, effects)?;
            return Ok(Response {
                kind: Some(response::Kind::Workflow(outcome)),
            });
        }
    };
    Ok(Response {
        kind: Some(response::Kind::RegisterWrite(write)),
    })
}

fn rejected(reason: &str) -> Response {
    Response {
        kind: Some(response::Kind::Rejected(Rejected {
            reason: reason.to_string(),
        })),
    }
}

/// Reads a register value (for local reads after the caller established consistency).
pub fn read_register(store: &impl ReadState, user_key: &[u8]) -> Result<Option<Vec<u8>>> {
    store.get(&keys::register(user_key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;

    fn write(r: &Response) -> &RegisterWrite {
        match &r.kind {
            Some(response::Kind::RegisterWrite(w)) => w,
            other => panic!("expected a register write, got {other:?}"),
        }
    }

    fn proposal(at: u64, commands: Vec<Command>) -> Proposal {
        Proposal {
            proposed_at_ms: at,
            commands,
        }
    }

    #[test]
    fn put_cas_delete_follow_register_semantics() {
        let mut s = MemStore::new();
        let (r, _) = apply_proposal(
            &proposal(
                10,
                vec![
                    Command::put("k", "1"),
                    Command::cas("k", Some(b"0".to_vec()), "2"),
                    Command::cas("k", Some(b"1".to_vec()), "3"),
                    Command::cas("new", None, "x"),
                    Command::cas("new", None, "y"),
                    Command::delete("k"),
                    Command::delete("k"),
                ],
            ),
            &mut s,
        )
        .unwrap();
        let w: Vec<(bool, Option<&[u8]>)> = r
            .responses
            .iter()
            .map(|r| (write(r).succeeded, write(r).previous.as_deref()))
            .collect();
        assert_eq!(
            w,
            vec![
                (true, None),
                (false, Some(&b"1"[..])),
                (true, Some(&b"1"[..])),
                (true, None),
                (false, Some(&b"x"[..])),
                (true, Some(&b"3"[..])),
                (true, None),
            ]
        );
        assert_eq!(read_register(&s, b"k").unwrap(), None);
        assert_eq!(read_register(&s, b"new").unwrap(), Some(b"x".to_vec()));
    }

    #[test]
    fn replicated_time_never_goes_backwards() {
        let mut s = MemStore::new();
        let (_, m1) = apply_proposal(&proposal(1_000, vec![]), &mut s).unwrap();
        // A new leader whose clock is behind proposes an earlier time.
        let (_, m2) = apply_proposal(&proposal(400, vec![]), &mut s).unwrap();
        let (_, m3) = apply_proposal(&proposal(1_500, vec![]), &mut s).unwrap();
        assert_eq!(
            (m1.entry_time_ms, m2.entry_time_ms, m3.entry_time_ms),
            (1_000, 1_000, 1_500)
        );
        assert_eq!(last_applied_time_ms(&s).unwrap(), 1_500);
    }

    #[test]
    fn a_command_without_kind_is_rejected_and_writes_nothing() {
        let mut s = MemStore::new();
        let (r, _) = apply_proposal(&proposal(1, vec![Command { kind: None }]), &mut s).unwrap();
        assert!(matches!(
            r.responses[0].kind,
            Some(response::Kind::Rejected(_))
        ));
        let keys: Vec<_> = s.iter().map(|(k, _)| k.to_vec()).collect();
        assert_eq!(keys, vec![keys::meta(MetaKey::LastAppliedTime)]);
    }

    #[test]
    fn same_log_gives_same_state() {
        let log: Vec<Proposal> = (0..50u64)
            .map(|i| {
                let key = format!("k{}", i % 7);
                let cmd = match i % 3 {
                    0 => Command::put(key.clone(), i.to_string()),
                    1 => Command::cas(key.clone(), Some((i - 1).to_string().into_bytes()), "c"),
                    _ => Command::delete(key.clone()),
                };
                proposal(1_000 - i, vec![cmd])
            })
            .collect();
        let run = || {
            let mut s = MemStore::new();
            for p in &log {
                apply_proposal(p, &mut s).unwrap();
            }
            s
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn corrupt_time_is_an_error_not_a_guess() {
        let mut s = MemStore::new();
        s.put(&keys::meta(MetaKey::LastAppliedTime), b"bad");
        let err = apply_proposal(&proposal(1, vec![]), &mut s).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
