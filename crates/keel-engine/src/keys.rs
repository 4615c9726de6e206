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
    /// Current run of a workflow id: (namespace, workflow_id).
    CurrentRun = 0x0010,
    /// Mutable state of a run: (namespace, workflow_id, run_id).
    MutableState = 0x0011,
    /// One history event: (namespace, workflow_id, run_id, event_id).
    History = 0x0012,
    /// Head/tail cursor of a task backlog: (namespace, task_queue, kind).
    QueueCursor = 0x0013,
    /// One backlog entry: (namespace, task_queue, kind, seq).
    QueueEntry = 0x0014,
    /// Pending-deadline index: (fire_at_ms, namespace, workflow_id, run_id, timer kind, id).
    Timer = 0x0015,
    /// A namespace: (name).
    Namespace = 0x0016,
    /// Visibility row of a run: (namespace, workflow_id, run_id).
    Visibility = 0x0017,
    /// Visibility by start time, newest first: (namespace, !start_time_ms, workflow_id, run_id).
    VisibilityByStart = 0x0018,
    /// A query in flight: (namespace, query_id).
    Query = 0x0019,
    /// Runs of a namespace by execution status, u64 big-endian: (namespace, status). Status 0
    /// marks a namespace counted since its registration.
    VisibilityCount = 0x001A,
    /// An update of a run: (namespace, workflow_id, run_id, update_id).
    Update = 0x001B,
    /// A schedule: (namespace, schedule_id).
    Schedule = 0x001C,
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
            [0x00, 0x10] => Some(KeyKind::CurrentRun),
            [0x00, 0x11] => Some(KeyKind::MutableState),
            [0x00, 0x12] => Some(KeyKind::History),
            [0x00, 0x13] => Some(KeyKind::QueueCursor),
            [0x00, 0x14] => Some(KeyKind::QueueEntry),
            [0x00, 0x15] => Some(KeyKind::Timer),
            [0x00, 0x16] => Some(KeyKind::Namespace),
            [0x00, 0x17] => Some(KeyKind::Visibility),
            [0x00, 0x18] => Some(KeyKind::VisibilityByStart),
            [0x00, 0x19] => Some(KeyKind::Query),
            [0x00, 0x1A] => Some(KeyKind::VisibilityCount),
            [0x00, 0x1B] => Some(KeyKind::Update),
            [0x00, 0x1C] => Some(KeyKind::Schedule),
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

/// Appends a length-prefixed (u16 big-endian) string. Lengths are bounded by the frontend;
/// a longer string is an invariant violation.
fn push_str(k: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len())
        .expect("key strings are at most 65535 bytes (validated by the frontend)");
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(s.as_bytes());
}

fn with_kind(kind: KeyKind) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(&kind.prefix());
    k
}

/// Key of the current run of `(namespace, workflow_id)`.
pub fn current_run(namespace: &str, workflow_id: &str) -> Vec<u8> {
    let mut k = with_kind(KeyKind::CurrentRun);
    push_str(&mut k, namespace);
    push_str(&mut k, workflow_id);
    k
}

fn run_fields(k: &mut Vec<u8>, namespace: &str, workflow_id: &str, run_id: &str) {
    push_str(k, namespace);
    push_str(k, workflow_id);
    push_str(k, run_id);
}

/// Key of a run's mutable state.
pub fn mutable_state(namespace: &str, workflow_id: &str, run_id: &str) -> Vec<u8> {
    let mut k = with_kind(KeyKind::MutableState);
    run_fields(&mut k, namespace, workflow_id, run_id);
    k
}

/// Key of one history event; a run's events are contiguous and ordered by id.
pub fn history_event(namespace: &str, workflow_id: &str, run_id: &str, event_id: i64) -> Vec<u8> {
    let mut k = with_kind(KeyKind::History);
    run_fields(&mut k, namespace, workflow_id, run_id);
    k.extend_from_slice(&(event_id as u64).to_be_bytes());
    k
}

/// Prefix of all history events of a run.
pub fn history_prefix(namespace: &str, workflow_id: &str, run_id: &str) -> Vec<u8> {
    let mut k = with_kind(KeyKind::History);
    run_fields(&mut k, namespace, workflow_id, run_id);
    k
}

/// Key of a backlog's cursor.
pub fn queue_cursor(namespace: &str, task_queue: &str, kind: u8) -> Vec<u8> {
    let mut k = with_kind(KeyKind::QueueCursor);
    push_str(&mut k, namespace);
    push_str(&mut k, task_queue);
    k.push(kind);
    k
}

/// Key of one backlog entry.
pub fn queue_entry(namespace: &str, task_queue: &str, kind: u8, seq: u64) -> Vec<u8> {
    let mut k = with_kind(KeyKind::QueueEntry);
    push_str(&mut k, namespace);
    push_str(&mut k, task_queue);
    k.push(kind);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Key of a query in flight.
pub fn query(namespace: &str, query_id: &str) -> Vec<u8> {
    let mut k = with_kind(KeyKind::Query);
    push_str(&mut k, namespace);
    push_str(&mut k, query_id);
    k
}

/// Key of an update of a run.
pub fn update(namespace: &str, workflow_id: &str, run_id: &str, update_id: &str) -> Vec<u8> {
    let mut k = with_kind(KeyKind::Update);
    run_fields(&mut k, namespace, workflow_id, run_id);
    push_str(&mut k, update_id);
    k
}

/// Key of a schedule.
pub fn schedule(namespace: &str, schedule_id: &str) -> Vec<u8> {
    let mut k = schedule_prefix(namespace);
    push_str(&mut k, schedule_id);
    k
}

/// Prefix of every schedule key of `namespace` (in schedule id order within a length).
pub fn schedule_prefix(namespace: &str) -> Vec<u8> {
    let mut k = with_kind(KeyKind::Schedule);
    push_str(&mut k, namespace);
    k
}

/// Key of a namespace record.
pub fn namespace(name: &str) -> Vec<u8> {
    let mut k = with_kind(KeyKind::Namespace);
    push_str(&mut k, name);
    k
}

/// Key of a run's visibility row.
pub fn visibility(namespace: &str, workflow_id: &str, run_id: &str) -> Vec<u8> {
    let mut k = with_kind(KeyKind::Visibility);
    run_fields(&mut k, namespace, workflow_id, run_id);
    k
}

/// Key of a namespace's count of runs in `status` (0: the namespace's "counted" marker).
pub fn visibility_count(namespace: &str, status: u8) -> Vec<u8> {
    let mut k = with_kind(KeyKind::VisibilityCount);
    push_str(&mut k, namespace);
    k.push(status);
    k
}

/// Prefix of a namespace's start-time index.
pub fn visibility_by_start_prefix(namespace: &str) -> Vec<u8> {
    let mut k = with_kind(KeyKind::VisibilityByStart);
    push_str(&mut k, namespace);
    k
}

/// Key in a namespace's start-time index; newer runs sort first (ORDER BY StartTime DESC).
pub fn visibility_by_start(
    namespace: &str,
    start_time_ms: u64,
    workflow_id: &str,
    run_id: &str,
) -> Vec<u8> {
    let mut k = visibility_by_start_prefix(namespace);
    k.extend_from_slice(&(!start_time_ms).to_be_bytes());
    push_str(&mut k, workflow_id);
    push_str(&mut k, run_id);
    k
}

/// The (workflow_id, run_id) of a key built by [`visibility_by_start`]; `None` if it is not
/// one.
pub fn parse_visibility_by_start(key: &[u8]) -> Option<(String, String)> {
    if KeyKind::of(key)? != KeyKind::VisibilityByStart {
        return None;
    }
    let mut r = &key[2..];
    take_str(&mut r)?; // namespace
    take(&mut r, 8)?; // !start_time_ms
    let workflow_id = take_str(&mut r)?;
    let run_id = take_str(&mut r)?;
    r.is_empty().then_some((workflow_id, run_id))
}

/// Key of one pending deadline. Sorted by fire time first, so the leader's timer driver
/// reads the next due deadlines with one forward scan from the [`KeyKind::Timer`] prefix.
/// `kind` is the model's deadline kind; `event_id`, `attempt` and `name` identify the
/// deadline within its run.
#[allow(clippy::too_many_arguments)]
pub fn timer(
    fire_at_ms: u64,
    namespace: &str,
    workflow_id: &str,
    run_id: &str,
    kind: u8,
    event_id: i64,
    attempt: i32,
    name: &str,
) -> Vec<u8> {
    let mut k = with_kind(KeyKind::Timer);
    k.extend_from_slice(&fire_at_ms.to_be_bytes());
    run_fields(&mut k, namespace, workflow_id, run_id);
    k.push(kind);
    k.extend_from_slice(&(event_id as u64).to_be_bytes());
    k.extend_from_slice(&(attempt as u32).to_be_bytes());
    push_str(&mut k, name);
    k
}

/// The end (exclusive) of the timers-index keys due by `now_ms`: the index from its prefix up
/// to this key holds exactly the deadlines with `fire_at_ms <= now_ms`.
pub fn timers_due_end(now_ms: u64) -> Vec<u8> {
    let mut k = with_kind(KeyKind::Timer);
    k.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
    k
}

/// The fields of a timers-index key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerKey {
    pub fire_at_ms: u64,
    pub namespace: String,
    pub workflow_id: String,
    pub run_id: String,
    pub kind: u8,
    pub event_id: i64,
    pub attempt: i32,
    pub name: String,
}

/// Parses a key built by [`timer`]; `None` if it is not one.
pub fn parse_timer(key: &[u8]) -> Option<TimerKey> {
    if KeyKind::of(key)? != KeyKind::Timer {
        return None;
    }
    let mut r = &key[2..];
    let fire_at_ms = u64::from_be_bytes(take(&mut r, 8)?.try_into().ok()?);
    let namespace = take_str(&mut r)?;
    let workflow_id = take_str(&mut r)?;
    let run_id = take_str(&mut r)?;
    let kind = *take(&mut r, 1)?.first()?;
    let event_id = u64::from_be_bytes(take(&mut r, 8)?.try_into().ok()?) as i64;
    let attempt = u32::from_be_bytes(take(&mut r, 4)?.try_into().ok()?) as i32;
    let name = take_str(&mut r)?;
    r.is_empty().then_some(TimerKey {
        fire_at_ms,
        namespace,
        workflow_id,
        run_id,
        kind,
        event_id,
        attempt,
        name,
    })
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Some(head)
}

fn take_str(r: &mut &[u8]) -> Option<String> {
    let len = u16::from_be_bytes(take(r, 2)?.try_into().ok()?) as usize;
    String::from_utf8(take(r, len)?.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_by_start_keys_parse_and_sort_newest_first() {
        let old = visibility_by_start("ns", 1_000, "wf", "r1");
        let new = visibility_by_start("ns", 2_000, "wf-2", "r2");
        assert!(new < old, "newer starts sort first");
        assert!(old.starts_with(&visibility_by_start_prefix("ns")));
        assert_eq!(
            parse_visibility_by_start(&new),
            Some(("wf-2".to_string(), "r2".to_string()))
        );
        assert_eq!(parse_visibility_by_start(&namespace("ns")), None);
    }

    #[test]
    fn the_due_end_splits_the_timers_index_at_now() {
        let due = timer(1_000, "ns", "wf", "r", 1, 5, 1, "t");
        let later = timer(1_001, "", "", "", 0, 0, 0, "");
        assert!(KeyKind::Timer.prefix().to_vec() <= due);
        assert!(due < timers_due_end(1_000) && timers_due_end(1_000) <= later);
        assert!(timers_due_end(999) <= due);
    }

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
    fn timers_sort_by_fire_time_then_run() {
        let a = timer(5, "ns", "zzz", "r", 1, 7, 1, "t");
        let b = timer(6, "ns", "aaa", "r", 1, 7, 1, "t");
        let c = timer(256, "ns", "aaa", "r", 1, 7, 1, "t");
        assert!(a < b && b < c);
        assert_eq!(KeyKind::of(&a), Some(KeyKind::Timer));
        let parsed = parse_timer(&c).expect("parses");
        assert_eq!(
            parsed,
            TimerKey {
                fire_at_ms: 256,
                namespace: "ns".into(),
                workflow_id: "aaa".into(),
                run_id: "r".into(),
                kind: 1,
                event_id: 7,
                attempt: 1,
                name: "t".into(),
            }
        );
        assert_eq!(parse_timer(&c[..c.len() - 1]), None, "truncated");
        assert_eq!(parse_timer(&register(b"x")), None);
    }

    #[test]
    fn history_keys_order_by_event_id_within_a_run() {
        let ids = [1i64, 2, 255, 256, 70_000];
        let keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|i| history_event("ns", "wf", "run", *i))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert!(keys
            .iter()
            .all(|k| k.starts_with(&history_prefix("ns", "wf", "run"))));
        // Length prefixes keep one workflow id from being a prefix of another's keys.
        assert!(
            !history_event("ns", "wf1", "run", 1).starts_with(&history_prefix("ns", "wf", "run"))
        );
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
