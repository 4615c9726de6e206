//! Layout of every state-machine key. Nothing else in Keel builds or parses these bytes.
//!
//! A key is a 2-byte big-endian [`KeyKind`] prefix followed by the kind's own fields
//! (integers big-endian, so byte order is numeric order). Retired kinds keep their number
//! forever so bytes are never reused with another meaning.

/// The table a key belongs to.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyKind {
    /// Replication metadata kept with the state (applied log id, membership, time).
    Meta = 0x0000,
    /// The key-value register: the user's key bytes follow the prefix.
    Register = 0x0001,
}

impl KeyKind {
    /// The 2-byte prefix of this kind.
    pub const fn prefix(self) -> [u8; 2] {
        (self as u16).to_be_bytes()
    }

    /// Parses the kind of a key, if it is a known one.
    pub fn of(key: &[u8]) -> Option<KeyKind> {
        match key.get(..2)? {
            [0x00, 0x00] => Some(KeyKind::Meta),
            [0x00, 0x01] => Some(KeyKind::Register),
            _ => None,
        }
    }
}

/// Fixed metadata entries under [`KeyKind::Meta`].
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// Encoded last applied log id (owned by the replication layer).
    LastAppliedLogId = 1,
    /// Encoded last applied membership (owned by the replication layer).
    LastMembership = 2,
    /// Replicated time of the last applied entry, u64 big-endian ms.
    LastAppliedTime = 3,
}

/// Key of a metadata entry.
pub fn meta(which: MetaKey) -> Vec<u8> {
    let mut k = KeyKind::Meta.prefix().to_vec();
    k.extend_from_slice(&(which as u16).to_be_bytes());
    k
}

/// Key of a register entry.
pub fn register(user_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + user_key.len());
    k.extend_from_slice(&KeyKind::Register.prefix());
    k.extend_from_slice(user_key);
    k
}

/// The user key of a register key, or `None` if `key` is not a register key.
pub fn parse_register(key: &[u8]) -> Option<&[u8]> {
    (KeyKind::of(key)? == KeyKind::Register).then(|| &key[2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_keys_round_trip_and_sort_after_meta() {
        for user in [&b""[..], b"a", b"\x00\xff", b"zzz"] {
            let k = register(user);
            assert_eq!(parse_register(&k), Some(user));
            assert!(meta(MetaKey::LastAppliedTime) < k, "meta sorts first");
        }
        assert_eq!(parse_register(&meta(MetaKey::LastAppliedLogId)), None);
        assert_eq!(KeyKind::of(&[0x00]), None);
    }

    #[test]
    fn register_key_order_follows_user_key_order() {
        let mut users: Vec<&[u8]> = vec![b"b", b"a", b"ab", b"", b"\xff"];
        let mut keys: Vec<Vec<u8>> = users.iter().map(|u| register(u)).collect();
        users.sort();
        keys.sort();
        let back: Vec<&[u8]> = keys.iter().map(|k| parse_register(k).unwrap()).collect();
        assert_eq!(back, users);
    }
}
