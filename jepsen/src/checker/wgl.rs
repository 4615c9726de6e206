//! Linearizability of one key's history against a compare-and-set register.
//!
//! [`check`] decides whether the reads, writes and compare-and-sets (CAS) recorded for one key
//! can be explained by a *linearization*: one sequential order of the ops, valid for a register
//! that starts absent (`None`), in which every op takes effect at a single instant between its
//! invocation and its completion. Ops whose outcome is unknown (timed out) may take effect at
//! any instant after their invocation, or never.
//!
//! # Algorithm
//!
//! Wing & Gong's search with Lowe's memoization ("Testing for linearizability", 2017; also
//! Horn & Kroening, "Faster linearizability checking via P-compositionality", 2015). The call
//! and return events of the ok ops sit in one doubly-linked list sorted by time. The search
//! scans it from the head:
//!
//! * A call event is a candidate. If the register model accepts the op in the current state (an
//!   ok op must have returned exactly what the model returns), the op is *lifted*: both its
//!   events are unlinked, it is pushed on a stack with the previous register value, and the scan
//!   restarts at the head.
//! * A return event R ends the candidates: the op that returned there must take effect before
//!   any op invoked after R. If nothing before R works, the search backtracks: it pops the last
//!   op, relinks its events (in LIFO order the links restore exactly) and resumes the scan just
//!   after that op's call.
//!
//! The history is linearizable once every ok op is lifted, and is not once the stack is empty
//! at a dead end.
//!
//! # Pruning
//!
//! Three rules cut the orders worth trying without losing any linearization:
//!
//! * An ok candidate that the register accepts now and that never changes the register
//!   wherever it is valid (a read, a failed CAS, a CAS of a value to itself) is lifted as the
//!   only choice: any linearization can be reordered to start with it.
//! * Indeterminate writes and CASes (`ret: None`) have no return event; they sit in a second
//!   list sorted by invocation. They are only ever lifted as a *block* just before an ok
//!   candidate that the register rejects now and accepts after the block: any linearization can
//!   be rewritten into that form (a block before an op that was valid anyway is dropped, or the
//!   op moved ahead of it). Once the plain candidates failed, the search enumerates breadth
//!   first the blocks of indeterminate ops invoked no later than R that reach each register
//!   value, keeping only minimal ones, and tries each with the candidates it enables. So every
//!   step lifts exactly one ok op. Indeterminate reads, having neither effect nor result, are
//!   dropped.
//! * Indeterminate ops that would move the register the same way (identical calls, or a CAS
//!   and a write of the value it sets) are interchangeable once invoked: a block uses only one
//!   of them, a CAS rather than a write (the write can do more later), else the first invoked.
//!
//! # Memoization
//!
//! A configuration is (the set of lifted ops, the register value); from a configuration seen
//! before, the search would only repeat itself, so it is skipped (Lowe). Sets are bitsets
//! (`Vec<u64>`). Since indeterminate ops are optional, a configuration also covers every one
//! with the same ok ops and value and *more* indeterminate ops lifted (those can just be left
//! out), so the memo keeps, per (ok ops, value), the minimal sets of indeterminate ops seen, and
//! skips any configuration that contains one of them.
//!
//! # Two passes
//!
//! Which indeterminate ops were used up is what makes configurations many: paths that spent
//! different ones reach the same ok ops and value with incomparable sets. So [`check`] first
//! runs a *relaxed* search in which indeterminate ops are never used up (any of them may take
//! effect again and again), whose configurations are just (ok ops, value). It accepts every
//! linearizable history, so when it fails the history is not linearizable, and it reports that
//! search's deepest dead end (its prefix stops before an indeterminate op's second use, if any).
//! When the linearization it finds uses no indeterminate op twice, that is a real one. Otherwise
//! the exact search runs, skipping every configuration the relaxed search backtracked from
//! (not completable even with unlimited indeterminate ops, so not with fewer).
//!
//! # Time ties
//!
//! Intervals are closed: op A must precede op B only if A completed strictly before B was
//! invoked. An invocation and a completion at the same instant are concurrent (calls sort before
//! returns at equal times), so no violation ever depends on the clock's resolution.
//!
//! # Budget
//!
//! Each configuration entered, and each block of indeterminate ops considered, is one step (both
//! passes count). Past [`Limits::max_steps`] steps, or past the deadline (checked every 256
//! steps), the answer is [`Outcome::Unknown`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A register value; `None` is "the key does not exist" (the initial state).
pub type Value = Option<u64>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Call {
    Read,
    Write(u64),
    /// Succeeds (and sets `new`) iff the current value equals `expected` (None: key absent).
    Cas {
        expected: Value,
        new: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ret {
    Read(Value),
    Write,
    Cas(bool),
}

impl Call {
    /// The register model: the value after this op takes effect on `value`, and its result.
    pub fn apply(self, value: Value) -> (Value, Ret) {
        match self {
            Call::Read => (value, Ret::Read(value)),
            Call::Write(v) => (Some(v), Ret::Write),
            Call::Cas { expected, new } if value == expected => (Some(new), Ret::Cas(true)),
            Call::Cas { .. } => (value, Ret::Cas(false)),
        }
    }
}

/// One operation on one key. Definitely-failed operations are removed by the caller before
/// checking (they had no effect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Caller's id for the op (e.g. the history index of its invoke), reported in counterexamples.
    pub id: u64,
    pub call: Call,
    /// Invocation time (any monotonic unit, e.g. ns).
    pub invoke: u64,
    /// `Some((completion time, result))` for an op that completed ok; `None` for an
    /// indeterminate op (timed out): it may take effect at any time after `invoke`, or never,
    /// and its result is unknown. Indeterminate reads can simply be ignored by the checker.
    pub ret: Option<(u64, Ret)>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most search steps (state expansions) before giving up with Unknown.
    pub max_steps: u64,
    /// Wall-clock deadline; None = no deadline.
    pub deadline: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Linearizable,
    /// No linearization exists. `op` is the id of an ok op that could not be linearized at the
    /// deepest point the search reached, `explanation` says why in words a person can follow,
    /// `prefix` is the ids of the longest linearizable prefix found (in linearization order,
    /// truncated to the last 20).
    NotLinearizable {
        op: u64,
        explanation: String,
        prefix: Vec<u64>,
    },
    /// The budget ran out (or an entry was malformed).
    Unknown {
        reason: String,
    },
}

/// Checks one key's history (entries in any order).
///
/// A malformed entry (completing before its invocation, or a result of the wrong kind for its
/// call) makes the answer [`Outcome::Unknown`].
pub fn check(entries: &[Entry], limits: &Limits) -> Outcome {
    let mut relaxed = match prepare(entries, false) {
        Ok(search) => search,
        Err(reason) => return Outcome::Unknown { reason },
    };
    match relaxed.run(limits) {
        Err(unknown) => unknown,
        Ok(false) => relaxed.not_linearizable(),
        Ok(true) if !relaxed.path().1 => Outcome::Linearizable,
        Ok(true) => {
            let mut exact = prepare(entries, true).expect("validated above");
            exact.memo = relaxed.dead_configurations();
            exact.steps = relaxed.steps;
            match exact.run(limits) {
                Err(unknown) => unknown,
                Ok(true) => Outcome::Linearizable,
                Ok(false) => exact.not_linearizable(),
            }
        }
    }
}

/// How many ids of the longest linearizable prefix a counterexample reports.
const PREFIX_LEN: usize = 20;

/// List heads: the ok ops' events, and the indeterminate ops' calls.
const MAIN: usize = 0;
const MAYBE: usize = 1;

/// An op as the search sees it.
#[derive(Clone, Copy)]
struct Op {
    id: u64,
    call: Call,
    /// `Some(result)` for an ok op, `None` for an indeterminate one.
    ret: Option<Ret>,
    /// Its index in the bitset of ok ops (in the order of their returns) or of indeterminate
    /// ops.
    bit: usize,
    /// Its call event's node; an ok op's return event is the node `ret_node`.
    call_node: usize,
    ret_node: usize,
}

/// A node of the event lists (each is circular through its head).
#[derive(Clone, Copy)]
enum Node {
    Head,
    /// An ok op's invocation.
    Call(usize),
    /// An ok op's completion.
    Return(usize),
    /// An indeterminate op's invocation.
    Maybe(usize),
}

/// Indeterminate ops that, applied in order, take the register to `value`.
struct Block {
    ops: Vec<usize>,
    value: Value,
}

/// Which candidates the scan of a configuration is trying.
#[derive(Clone, Copy)]
enum Scan {
    /// Ok ops the register accepts as it is.
    Plain,
    /// Ok ops that only the configuration's block number `n` makes acceptable.
    Block(usize),
}

/// One step, to undo on backtracking: a block of indeterminate ops (if any), then ok op `op`.
struct Frame {
    op: usize,
    value_before: Value,
    /// The scan of the configuration below, and its blocks (the `Scan::Block` index points
    /// into them).
    scan: Scan,
    blocks: Vec<Block>,
    /// Lifted as the only op worth trying (see [`Search::forced_op`]): on backtracking, the
    /// configuration below fails too.
    forced: bool,
}

impl Frame {
    fn block(&self) -> &[usize] {
        match self.scan {
            Scan::Plain => &[],
            Scan::Block(n) => &self.blocks[n].ops,
        }
    }
}

/// The deepest dead end met so far: the search's best guess at the culprit.
struct DeadEnd {
    /// Ok ops lifted.
    depth: usize,
    /// The op whose return event was reached unlifted, or a candidate that fit nowhere there.
    op: usize,
    /// Register values at dead ends of this depth blocked by `op`.
    values: Vec<Value>,
    /// Whether `op` would have returned its result at one of them (possibly after a block of
    /// indeterminate ops): then what failed is every way to go on after it.
    fits: bool,
    /// Ids of the lifted ops, last `PREFIX_LEN`.
    prefix: Vec<u64>,
}

struct Search {
    ops: Vec<Op>,
    nodes: Vec<Node>,
    /// Per node: the event's time.
    time: Vec<u64>,
    next: Vec<usize>,
    prev: Vec<usize>,
    ok_count: usize,
    maybe_count: usize,
    /// Whether indeterminate ops are used up once lifted (see [`check`]'s two passes).
    exact: bool,
    /// The bitset of lifted ok ops, in the order of their returns.
    lifted: Vec<u64>,
    /// Room for a configuration's memo key (see [`Search::fill_probe`]).
    probe: Vec<u64>,
    /// The bitset of lifted indeterminate ops (at least one word).
    maybe: Vec<u64>,
    value: Value,
    /// Ok ops not lifted yet.
    remaining: usize,
    /// Per op: how many steps on the stack lift it (more than one only in the relaxed search).
    uses: Vec<u32>,
    stack: Vec<Frame>,
    memo: Memo,
    steps: u64,
    deepest: Option<DeadEnd>,
}

/// Validates the entries and builds the event lists.
fn prepare(entries: &[Entry], exact: bool) -> Result<Search, String> {
    let mut ops = Vec::new();
    let mut ok_events = Vec::new(); // (time, is_return, op)
    let mut maybe_events = Vec::new(); // (invoke, op)
    let (mut ok_count, mut maybe_count) = (0, 0);
    for e in entries {
        let op = ops.len();
        let bit = match e.ret {
            None if e.call == Call::Read => continue,
            None => {
                maybe_events.push((e.invoke, op));
                maybe_count += 1;
                maybe_count - 1
            }
            Some((done, ret)) => {
                if done < e.invoke {
                    return Err(format!(
                        "op {} completed at {done}, before its invocation at {}",
                        e.id, e.invoke
                    ));
                }
                if std::mem::discriminant(&e.call.apply(None).1) != std::mem::discriminant(&ret) {
                    return Err(format!(
                        "op {} is a {:?} but returned {ret:?}",
                        e.id, e.call
                    ));
                }
                ok_events.push((e.invoke, false, op));
                ok_events.push((done, true, op));
                ok_count += 1;
                0 // set below, in the order of returns
            }
        };
        ops.push(Op {
            id: e.id,
            call: e.call,
            ret: e.ret.map(|(_, r)| r),
            bit,
            call_node: 0,
            ret_node: 0,
        });
    }
    ok_events.sort_unstable();
    maybe_events.sort_unstable();

    let mut nodes = vec![Node::Head, Node::Head];
    let mut time = vec![0, 0];
    let mut next = vec![MAIN, MAYBE];
    let mut prev = vec![MAIN, MAYBE];
    let mut append = |head: usize, node: Node, t: u64| {
        let n = nodes.len();
        nodes.push(node);
        time.push(t);
        let last = prev[head];
        next.push(head);
        prev.push(last);
        next[last] = n;
        prev[head] = n;
        n
    };
    let mut returned = 0;
    for (t, is_return, op) in ok_events {
        if is_return {
            ops[op].ret_node = append(MAIN, Node::Return(op), t);
            ops[op].bit = returned;
            returned += 1;
        } else {
            ops[op].call_node = append(MAIN, Node::Call(op), t);
        }
    }
    for (t, op) in maybe_events {
        ops[op].call_node = append(MAYBE, Node::Maybe(op), t);
    }
    let uses = vec![0; ops.len()];
    Ok(Search {
        ops,
        nodes,
        time,
        next,
        prev,
        ok_count,
        maybe_count,
        exact,
        lifted: vec![0; ok_count.div_ceil(64)],
        probe: Vec::new(),
        maybe: vec![0; maybe_count.div_ceil(64).max(1)],
        value: None,
        remaining: ok_count,
        uses,
        stack: Vec::new(),
        memo: Memo::default(),
        steps: 0,
        deepest: None,
    })
}

impl Search {
    /// Searches for a linearization, left on the stack: `Ok(false)` if there is none, `Err` when
    /// the budget ran out.
    fn run(&mut self, limits: &Limits) -> Result<bool, Outcome> {
        self.fill_probe(None);
        self.memo.insert(&self.probe, &self.maybe);
        let mut cur = self.next[MAIN];
        let mut scan = Scan::Plain;
        let mut blocks = Vec::new();
        let mut entered = true;
        loop {
            if self.remaining == 0 {
                return Ok(true);
            }
            // What to try at `cur`: an ok op, with the block index that enables it.
            let mut attempt = None;
            if entered {
                entered = false;
                if let Some(op) = self.forced_op() {
                    attempt = Some((op, None, true));
                }
            }
            if attempt.is_none() {
                match (self.nodes[cur], scan) {
                    (Node::Call(op), Scan::Plain) => attempt = Some((op, None, false)),
                    (Node::Call(op), Scan::Block(n)) if n < blocks.len() => {
                        attempt = Some((op, Some(n), false));
                    }
                    (Node::Return(_), Scan::Plain) => {
                        blocks = self.blocks(self.time[cur], limits)?;
                        (cur, scan) = (self.next[MAIN], Scan::Block(0));
                        continue;
                    }
                    (Node::Return(_), Scan::Block(n)) if n < blocks.len() => {
                        (cur, scan) = (self.next[MAIN], Scan::Block(n + 1));
                        continue;
                    }
                    _ => {}
                }
            }
            if let Some((op, block, forced)) = attempt {
                if let Some(after) = self.accepts(op, block.map(|n| &blocks[n])) {
                    let scan_here = block.map_or(Scan::Plain, Scan::Block);
                    if self.enter(op, after, scan_here, &mut blocks, forced, limits)? {
                        (cur, scan, entered) = (self.next[MAIN], Scan::Plain, true);
                        continue;
                    }
                }
                if !forced {
                    cur = self.next[cur];
                    continue;
                }
            } else {
                self.note_dead_end(&blocks);
            }
            match self.backtrack() {
                Some(frame) => {
                    cur = self.next[self.ops[frame.op].call_node];
                    (scan, blocks) = (frame.scan, frame.blocks);
                }
                None => return Ok(false),
            }
        }
    }

    /// An ok candidate that the register accepts now and that never changes the register
    /// wherever it is valid (a read, a failed CAS, a CAS of a value to itself). It can be moved
    /// to the front of any linearization of the ops left (nothing left must precede it, and the
    /// others see the same values), so the configuration is linearizable iff it is after
    /// lifting the op, and no other candidate needs trying.
    fn forced_op(&self) -> Option<usize> {
        let mut n = self.next[MAIN];
        while let Node::Call(i) = self.nodes[n] {
            let op = self.ops[i];
            let ret = op.ret.expect("an ok op");
            let keeps_value = match (op.call, ret) {
                (Call::Read, _) | (_, Ret::Cas(false)) => true,
                (Call::Cas { expected, new }, _) => expected == Some(new),
                (Call::Write(_), _) => false,
            };
            if keeps_value && op.call.apply(self.value).1 == ret {
                return Some(i);
            }
            n = self.next[n];
        }
        None
    }

    /// The register value after ok op `op` (preceded by `block`), if it returns what it did and,
    /// with a block, only thanks to the block.
    fn accepts(&self, op: usize, block: Option<&Block>) -> Option<Value> {
        let op = self.ops[op];
        let ret = op.ret.expect("an ok op");
        let (after, result) = op.call.apply(block.map_or(self.value, |b| b.value));
        let needs_block = block.is_some() && op.call.apply(self.value).1 != ret;
        (result == ret && (block.is_none() || needs_block)).then_some(after)
    }

    /// The minimal blocks of indeterminate ops invoked by `until` that change the register,
    /// breadth first (so no block found later contains one found earlier for the same value);
    /// `Err` when the budget ran out.
    fn blocks(&mut self, until: u64, limits: &Limits) -> Result<Vec<Block>, Outcome> {
        let mut eligible = Vec::new();
        let mut n = self.next[MAYBE];
        while let Node::Maybe(op) = self.nodes[n] {
            if self.time[n] > until {
                break;
            }
            eligible.push(op);
            n = self.next[n];
        }
        let mut found: Vec<Block> = Vec::new();
        let mut layer = 0..0;
        loop {
            let starts: Vec<(Vec<usize>, Value)> = if found.is_empty() {
                vec![(Vec::new(), self.value)]
            } else {
                found[layer.clone()]
                    .iter()
                    .map(|b| (b.ops.clone(), b.value))
                    .collect()
            };
            let start = found.len();
            for (ops, value) in starts {
                // One op per value reached. Ops that would do the same are interchangeable
                // once invoked, so trying each would only repeat the search. Choose one not
                // lifted yet if there is one (the relaxed search may reuse ops), then a CAS, as
                // it leaves the writes (which can do what it does, and more) available, then
                // the first invoked.
                let mut moves: Vec<(Value, usize)> = Vec::new();
                let rank =
                    |m: usize| (self.uses[m] > 0, matches!(self.ops[m].call, Call::Write(_)));
                for &m in &eligible {
                    let after = self.ops[m].call.apply(value).0;
                    if after == value || after == self.value || ops.contains(&m) {
                        continue;
                    }
                    match moves.iter_mut().find(|(v, _)| *v == after) {
                        Some((_, chosen)) if rank(m) < rank(*chosen) => *chosen = m,
                        Some(_) => {}
                        None => moves.push((after, m)),
                    }
                }
                for (after, m) in moves {
                    let mut ops = ops.clone();
                    ops.push(m);
                    let covered = found
                        .iter()
                        .any(|b| b.value == after && b.ops.iter().all(|o| ops.contains(o)));
                    if !covered {
                        self.step(limits)?;
                        found.push(Block { ops, value: after });
                    }
                }
            }
            if found.len() == start {
                // Blocks reusing ops (in the relaxed search) last: it then finds linearizations
                // that the exact search accepts.
                found.sort_by_key(|b| b.ops.iter().any(|&m| self.uses[m] > 0));
                return Ok(found);
            }
            layer = start..found.len();
        }
    }

    /// Lifts the block (if any) and ok op `op`, leaving the register at `after`, unless a
    /// configuration covering the result was seen; `Err` when the budget ran out.
    fn enter(
        &mut self,
        op: usize,
        after: Value,
        scan: Scan,
        blocks: &mut Vec<Block>,
        forced: bool,
        limits: &Limits,
    ) -> Result<bool, Outcome> {
        let frame = Frame {
            op,
            value_before: self.value,
            scan,
            blocks: std::mem::take(blocks),
            forced,
        };
        self.mark(&frame);
        self.fill_probe(after);
        if !self.memo.insert(&self.probe, &self.maybe) {
            self.mark(&frame);
            *blocks = frame.blocks;
            return Ok(false);
        }
        self.step(limits)?;
        for &m in frame.block() {
            self.uses[m] += 1;
        }
        for &m in self.consumed(&frame) {
            self.unlink(self.ops[m].call_node);
        }
        let op = self.ops[op];
        self.unlink(op.call_node);
        self.unlink(op.ret_node);
        self.remaining -= 1;
        self.value = after;
        self.stack.push(frame);
        Ok(true)
    }

    /// Undoes steps back to the last one that has alternatives, and returns it; `None` when
    /// nothing is left to try.
    fn backtrack(&mut self) -> Option<Frame> {
        while let Some(frame) = self.stack.pop() {
            let op = self.ops[frame.op];
            self.relink(op.ret_node);
            self.relink(op.call_node);
            for &m in self.consumed(&frame).iter().rev() {
                self.relink(self.ops[m].call_node);
            }
            for &m in frame.block() {
                self.uses[m] -= 1;
            }
            self.mark(&frame);
            self.remaining += 1;
            self.value = frame.value_before;
            if !frame.forced {
                return Some(frame);
            }
        }
        None
    }

    /// The indeterminate ops a step uses up: its block in the exact search, none in the relaxed
    /// one.
    fn consumed<'f>(&self, frame: &'f Frame) -> &'f [usize] {
        if self.exact {
            frame.block()
        } else {
            &[]
        }
    }

    /// The ids of the ops on the stack in linearization order, up to the first indeterminate op
    /// lifted a second time (which only the relaxed search does), and whether there is one.
    fn path(&self) -> (Vec<u64>, bool) {
        let mut lifted = vec![false; self.ops.len()];
        let mut ids = Vec::new();
        for frame in &self.stack {
            for &m in frame.block() {
                if std::mem::replace(&mut lifted[m], true) {
                    return (ids, true);
                }
                ids.push(self.ops[m].id);
            }
            ids.push(self.ops[frame.op].id);
        }
        (ids, false)
    }

    /// The relaxed search's memo, less the configurations on its stack: the rest are those it
    /// backtracked from, which not even the relaxed search completes, so the exact one can skip
    /// them whatever indeterminate ops it has left.
    fn dead_configurations(&mut self) -> Memo {
        let mut memo = std::mem::take(&mut self.memo);
        loop {
            self.fill_probe(self.value);
            memo.seen.remove(&self.probe[..]);
            let Some(frame) = self.stack.pop() else {
                return memo;
            };
            flip(&mut self.lifted, self.ops[frame.op].bit);
            self.value = frame.value_before;
        }
    }

    /// Puts in `probe` the memo key of the lifted ok ops with the register at `value`: the
    /// index of the first word of `lifted` that is not full (all ops returning before are
    /// lifted), the words from there to the last nonzero one, then the value in two words.
    /// Short (the ops in flight around the search's frontier), and one per configuration.
    fn fill_probe(&mut self, value: Value) {
        let words = &self.lifted;
        let start = words
            .iter()
            .position(|&w| w != u64::MAX)
            .unwrap_or(words.len());
        let end = words
            .iter()
            .rposition(|&w| w != 0)
            .map_or(start, |last| last + 1);
        self.probe.clear();
        self.probe.push(start as u64);
        self.probe.extend_from_slice(&words[start..end.max(start)]);
        self.probe
            .extend([u64::from(value.is_some()), value.unwrap_or(0)]);
    }

    /// Toggles the bits of a step's ops.
    fn mark(&mut self, frame: &Frame) {
        flip(&mut self.lifted, self.ops[frame.op].bit);
        for &m in self.consumed(frame) {
            flip(&mut self.maybe, self.ops[m].bit);
        }
    }

    fn unlink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = x;
        self.prev[x] = p;
    }

    fn relink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = n;
        self.prev[x] = n;
    }

    /// Counts one step; `Err` when the budget ran out (the clock is read every 256 steps).
    fn step(&mut self, limits: &Limits) -> Result<(), Outcome> {
        self.steps += 1;
        let read_clock = self.steps & 0xff == 0;
        let why = if self.steps > limits.max_steps {
            format!("search gave up after {} steps", limits.max_steps)
        } else if read_clock && limits.deadline.is_some_and(|d| Instant::now() >= d) {
            format!("search passed its deadline after {} steps", self.steps)
        } else {
            return Ok(());
        };
        Err(Outcome::Unknown {
            reason: format!(
                "{why} ({} ok ops, {} indeterminate)",
                self.ok_count, self.maybe_count
            ),
        })
    }

    /// Records a dead end (whose blocks are `blocks`): the op returning first could not be
    /// lifted here, or the search could not go on after it.
    fn note_dead_end(&mut self, blocks: &[Block]) {
        let mut n = self.next[MAIN];
        let op = loop {
            match self.nodes[n] {
                Node::Return(op) => break op,
                _ => n = self.next[n],
            }
        };
        // Whether an op would return its result here, possibly after a block.
        let fits = |op: usize| {
            let Op { call, ret, .. } = self.ops[op];
            let mut values = blocks.iter().map(|b| b.value).chain([self.value]);
            values.any(|v| Some(call.apply(v).1) == ret)
        };
        let (mut op, mut op_fits) = (op, fits(op));
        if op_fits {
            // A candidate that fits nowhere here names the anomaly better.
            let mut n = self.next[MAIN];
            while let Node::Call(candidate) = self.nodes[n] {
                if !fits(candidate) {
                    (op, op_fits) = (candidate, false);
                    break;
                }
                n = self.next[n];
            }
        }
        let depth = self.ok_count - self.remaining;
        match &mut self.deepest {
            Some(d) if d.depth > depth => {}
            Some(d) if d.depth == depth => {
                if d.op == op && !d.values.contains(&self.value) {
                    d.values.push(self.value);
                }
                d.fits |= d.op == op && op_fits;
            }
            _ => {
                let mut prefix = self.path().0;
                prefix.drain(..prefix.len().saturating_sub(PREFIX_LEN));
                self.deepest = Some(DeadEnd {
                    depth,
                    op,
                    values: vec![self.value],
                    fits: op_fits,
                    prefix,
                });
            }
        }
    }

    fn not_linearizable(&mut self) -> Outcome {
        let mut deepest = self.deepest.take().expect("the search met a dead end");
        let op = self.ops[deepest.op];
        let ret = op.ret.expect("only ok ops block the search");
        deepest.values.sort_unstable();
        let held: Vec<String> = deepest.values.iter().map(|v| format!("{v:?}")).collect();
        let call = match op.call {
            Call::Read => "read".to_string(),
            Call::Write(v) => format!("write({v})"),
            Call::Cas { expected, new } => format!("cas({expected:?} -> {new})"),
        };
        let result = match ret {
            Ret::Read(v) => format!("{v:?}"),
            Ret::Write => "ok".to_string(),
            Ret::Cas(b) => b.to_string(),
        };
        let ops = match deepest.depth {
            1 => "1 completed op".to_string(),
            n => format!("{n} completed ops"),
        };
        let mut explanation = if deepest.fits {
            format!(
                "{call} returned {result}, which fits after the longest linearizable prefix \
                 ({ops}), but no linearization goes on from there"
            )
        } else {
            format!(
                "{call} returned {result}, but every linearization of the {ops} before it leaves {}",
                held.join(" or ")
            )
        };
        let needed = match (op.call, ret) {
            (_, Ret::Read(Some(v))) => Some(v),
            (
                Call::Cas {
                    expected: Some(v), ..
                },
                Ret::Cas(true),
            ) => Some(v),
            _ => None,
        };
        if let Some(v) = needed {
            let written = self.ops.iter().any(|o| match o.call {
                Call::Write(w) | Call::Cas { new: w, .. } => {
                    w == v && o.ret != Some(Ret::Cas(false))
                }
                Call::Read => false,
            });
            if !written {
                explanation.push_str(&format!(" (no op in the history writes {v})"));
            }
        }
        Outcome::NotLinearizable {
            op: op.id,
            explanation,
            prefix: deepest.prefix,
        }
    }
}

fn flip(bits: &mut [u64], i: usize) {
    bits[i / 64] ^= 1 << (i % 64);
}

/// Configurations seen: per key (lifted ok ops, value), the minimal bitsets of lifted
/// indeterminate ops, flattened.
#[derive(Default)]
struct Memo {
    seen: HashMap<Box<[u64]>, Vec<u64>, BuildHasherDefault<WordHasher>>,
}

impl Memo {
    /// Records a configuration; false if one that covers it was seen already.
    fn insert(&mut self, key: &[u64], maybe: &[u64]) -> bool {
        let Some(sets) = self.seen.get_mut(key) else {
            self.seen.insert(key.into(), maybe.to_vec());
            return true;
        };
        let w = maybe.len();
        let subset = |a: &[u64], b: &[u64]| a.iter().zip(b).all(|(x, y)| x & !y == 0);
        if sets.chunks_exact(w).any(|s| subset(s, maybe)) {
            return false;
        }
        // Drop the sets this one covers, then add it.
        let mut kept = 0;
        for i in 0..sets.len() / w {
            if !subset(maybe, &sets[i * w..(i + 1) * w]) {
                sets.copy_within(i * w..(i + 1) * w, kept * w);
                kept += 1;
            }
        }
        sets.truncate(kept * w);
        sets.extend_from_slice(maybe);
        true
    }
}

/// A fast hash for word slices (multiply-rotate, as in FxHash, with a final mix).
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    fn finish(&self) -> u64 {
        let h = (self.0 ^ (self.0 >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

    fn ok(id: u64, call: Call, invoke: u64, done: u64, ret: Ret) -> Entry {
        Entry {
            id,
            call,
            invoke,
            ret: Some((done, ret)),
        }
    }

    fn info(id: u64, call: Call, invoke: u64) -> Entry {
        Entry {
            id,
            call,
            invoke,
            ret: None,
        }
    }

    fn cas(expected: Value, new: u64) -> Call {
        Call::Cas { expected, new }
    }

    fn run(entries: &[Entry]) -> Outcome {
        let limits = Limits {
            max_steps: 1_000_000,
            deadline: None,
        };
        check(entries, &limits)
    }

    fn assert_linearizable(entries: &[Entry]) {
        assert_eq!(run(entries), Outcome::Linearizable, "{entries:?}");
    }

    /// The culprit op of a history that must not be linearizable.
    fn culprit(entries: &[Entry]) -> u64 {
        match run(entries) {
            Outcome::NotLinearizable { op, .. } => op,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn empty_and_indeterminate_only_histories() {
        assert_linearizable(&[]);
        assert_linearizable(&[info(0, Call::Write(1), 0), info(1, Call::Read, 1)]);
    }

    #[test]
    fn sequential_history() {
        assert_linearizable(&[
            ok(0, Call::Read, 0, 1, Ret::Read(None)),
            ok(1, cas(None, 1), 2, 3, Ret::Cas(true)),
            ok(2, cas(None, 2), 4, 5, Ret::Cas(false)),
            ok(3, Call::Read, 6, 7, Ret::Read(Some(1))),
            ok(4, cas(Some(1), 2), 8, 9, Ret::Cas(true)),
            ok(5, Call::Write(3), 10, 11, Ret::Write),
            ok(6, cas(Some(2), 4), 12, 13, Ret::Cas(false)),
            ok(7, Call::Read, 14, 15, Ret::Read(Some(3))),
        ]);
    }

    #[test]
    fn entries_in_any_order() {
        assert_linearizable(&[
            ok(2, Call::Read, 4, 5, Ret::Read(Some(2))),
            ok(0, Call::Write(1), 0, 1, Ret::Write),
            ok(1, Call::Write(2), 2, 3, Ret::Write),
        ]);
    }

    #[test]
    fn read_overlapping_a_write_sees_either_value() {
        for seen in [None, Some(1)] {
            // The read lies inside the write, and the write inside the read.
            assert_linearizable(&[
                ok(0, Call::Write(1), 0, 10, Ret::Write),
                ok(1, Call::Read, 2, 5, Ret::Read(seen)),
            ]);
            assert_linearizable(&[
                ok(0, Call::Read, 0, 10, Ret::Read(seen)),
                ok(1, Call::Write(1), 2, 5, Ret::Write),
            ]);
        }
    }

    #[test]
    fn concurrent_reads_must_agree_on_order() {
        // Two reads overlapping a write may see old then new, but not new then old once the
        // first read completed before the second began.
        assert_linearizable(&[
            ok(0, Call::Write(1), 0, 10, Ret::Write),
            ok(1, Call::Read, 1, 2, Ret::Read(None)),
            ok(2, Call::Read, 3, 4, Ret::Read(Some(1))),
        ]);
        let history = [
            ok(0, Call::Write(1), 0, 10, Ret::Write),
            ok(1, Call::Read, 1, 2, Ret::Read(Some(1))),
            ok(2, Call::Read, 3, 4, Ret::Read(None)),
        ];
        assert_eq!(culprit(&history), 2);
    }

    #[test]
    fn concurrent_cas_race_has_one_winner() {
        assert_linearizable(&[
            ok(0, Call::Write(0), 0, 1, Ret::Write),
            ok(1, cas(Some(0), 1), 2, 6, Ret::Cas(true)),
            ok(2, cas(Some(0), 2), 3, 5, Ret::Cas(false)),
            ok(3, Call::Read, 7, 8, Ret::Read(Some(1))),
        ]);
    }

    #[test]
    fn indeterminate_write_that_reads_observe() {
        assert_linearizable(&[
            ok(0, Call::Write(1), 0, 1, Ret::Write),
            info(1, Call::Write(5), 2),
            ok(2, Call::Read, 3, 4, Ret::Read(Some(1))),
            ok(3, Call::Read, 10, 11, Ret::Read(Some(5))),
            ok(4, Call::Write(6), 12, 13, Ret::Write),
            ok(5, Call::Read, 14, 15, Ret::Read(Some(6))),
        ]);
    }

    #[test]
    fn indeterminate_write_that_nobody_observes() {
        assert_linearizable(&[
            info(0, Call::Write(5), 0),
            ok(1, Call::Read, 10, 11, Ret::Read(None)),
            ok(2, Call::Write(1), 12, 13, Ret::Write),
            ok(3, Call::Read, 14, 15, Ret::Read(Some(1))),
        ]);
    }

    #[test]
    fn indeterminate_ops_chain() {
        // Only the indeterminate write then the indeterminate CAS explain the read.
        assert_linearizable(&[
            info(0, cas(Some(7), 8), 0),
            info(1, Call::Write(7), 1),
            ok(2, Call::Read, 5, 6, Ret::Read(Some(8))),
        ]);
    }

    #[test]
    fn indeterminate_op_cannot_act_before_its_invocation() {
        let history = [
            ok(0, Call::Read, 0, 1, Ret::Read(Some(5))),
            info(1, Call::Write(5), 2),
        ];
        assert_eq!(culprit(&history), 0);
    }

    #[test]
    fn indeterminate_write_takes_effect_once() {
        let history = [
            info(0, Call::Write(5), 0),
            ok(1, Call::Write(1), 1, 2, Ret::Write),
            ok(2, Call::Read, 3, 4, Ret::Read(Some(5))),
            ok(3, Call::Write(2), 5, 6, Ret::Write),
            ok(4, Call::Read, 7, 8, Ret::Read(Some(5))),
        ];
        match run(&history) {
            Outcome::NotLinearizable {
                op,
                explanation,
                prefix,
            } => {
                assert_eq!(op, 4);
                assert_eq!(prefix, [1, 0, 2, 3]);
                assert_eq!(
                    explanation,
                    "read returned Some(5), but every linearization of the 3 completed ops \
                     before it leaves Some(2)"
                );
            }
            other => panic!("expected a violation, got {other:?}"),
        }
        // A second identical write can serve the second read.
        let mut history = history.to_vec();
        history.push(info(5, Call::Write(5), 0));
        assert_linearizable(&history);
    }

    #[test]
    fn indeterminate_ops_cannot_serve_two_needs() {
        // The indeterminate write of 1 serves the CAS, so nothing is left for the read of 1.
        let history = [
            info(1, Call::Write(1), 4),
            ok(5, cas(Some(1), 0), 14, 22, Ret::Cas(true)),
            ok(12, Call::Write(0), 40, 44, Ret::Write),
            ok(13, Call::Read, 42, 48, Ret::Read(Some(1))),
            ok(16, Call::Read, 54, 56, Ret::Read(Some(0))),
        ];
        let Outcome::NotLinearizable {
            op, explanation, ..
        } = run(&history)
        else {
            panic!("expected a violation");
        };
        assert_eq!(op, 13);
        assert_eq!(
            explanation,
            "read returned Some(1), but every linearization of the 1 completed op before it \
             leaves Some(0)"
        );
        // The indeterminate CAS serves either read of 2, and then the failed CAS needs the
        // indeterminate write of 0 just after the write of 1, leaving the other read no 2.
        let history = [
            ok(2, Call::Write(1), 5, 6, Ret::Write),
            info(3, cas(Some(1), 2), 8),
            ok(4, Call::Read, 10, 13, Ret::Read(Some(2))),
            info(6, Call::Write(0), 17),
            ok(11, Call::Write(1), 33, 34, Ret::Write),
            ok(12, cas(Some(1), 1), 35, 36, Ret::Cas(false)),
            ok(13, Call::Read, 38, 40, Ret::Read(Some(2))),
        ];
        assert_eq!(
            run(&history),
            Outcome::NotLinearizable {
                op: 12,
                explanation: "cas(Some(1) -> 1) returned false, which fits after the longest \
                              linearizable prefix (3 completed ops), but no linearization goes on \
                              from there"
                    .into(),
                prefix: vec![2, 3, 4, 11],
            }
        );
    }

    #[test]
    fn indeterminate_reads_are_ignored() {
        assert_linearizable(&[
            ok(0, Call::Write(1), 0, 1, Ret::Write),
            info(1, Call::Read, 2),
            ok(2, Call::Read, 3, 4, Ret::Read(Some(1))),
        ]);
    }

    #[test]
    fn equal_times_count_as_concurrent() {
        assert_linearizable(&[
            ok(0, Call::Write(1), 0, 5, Ret::Write),
            ok(1, Call::Read, 5, 6, Ret::Read(None)),
        ]);
    }

    #[test]
    fn stale_read() {
        let history = [
            ok(0, Call::Write(1), 0, 1, Ret::Write),
            ok(1, Call::Read, 2, 3, Ret::Read(None)),
        ];
        assert_eq!(culprit(&history), 1);
    }

    #[test]
    fn read_of_a_value_never_written() {
        let history = [
            ok(0, Call::Write(1), 0, 1, Ret::Write),
            ok(1, Call::Write(2), 2, 3, Ret::Write),
            ok(2, Call::Read, 4, 5, Ret::Read(Some(7))),
        ];
        match run(&history) {
            Outcome::NotLinearizable {
                op,
                explanation,
                prefix,
            } => {
                assert_eq!(op, 2);
                assert_eq!(prefix, [0, 1]);
                assert_eq!(
                    explanation,
                    "read returned Some(7), but every linearization of the 2 completed ops \
                     before it leaves Some(2) (no op in the history writes 7)"
                );
            }
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn two_cas_from_the_same_value() {
        let history = [
            ok(0, Call::Write(0), 0, 1, Ret::Write),
            ok(1, cas(Some(0), 1), 2, 3, Ret::Cas(true)),
            ok(2, cas(Some(0), 2), 4, 5, Ret::Cas(true)),
        ];
        assert_eq!(culprit(&history), 2);
        // Concurrently, either one is the second.
        let history = [
            ok(0, Call::Write(0), 0, 1, Ret::Write),
            ok(1, cas(Some(0), 1), 2, 5, Ret::Cas(true)),
            ok(2, cas(Some(0), 2), 3, 6, Ret::Cas(true)),
        ];
        assert!([1, 2].contains(&culprit(&history)));
    }

    #[test]
    fn lost_write() {
        let history = [
            ok(0, Call::Write(1), 0, 1, Ret::Write),
            ok(1, Call::Write(2), 2, 3, Ret::Write),
            ok(2, Call::Read, 4, 5, Ret::Read(Some(1))),
        ];
        assert_eq!(culprit(&history), 2);
    }

    #[test]
    fn cas_result_contradicts_the_value() {
        let history = [
            ok(0, Call::Write(1), 0, 1, Ret::Write),
            ok(1, cas(Some(2), 3), 2, 3, Ret::Cas(true)),
        ];
        assert_eq!(culprit(&history), 1);
        let history = [
            ok(0, Call::Write(1), 0, 1, Ret::Write),
            ok(1, cas(Some(1), 3), 2, 3, Ret::Cas(false)),
        ];
        assert_eq!(culprit(&history), 1);
    }

    #[test]
    fn malformed_entries_are_unknown() {
        for bad in [
            ok(0, Call::Write(1), 5, 4, Ret::Write),
            ok(0, Call::Read, 0, 1, Ret::Write),
        ] {
            assert!(matches!(run(&[bad]), Outcome::Unknown { .. }));
        }
    }

    /// Many concurrent writes and a read nobody could have caused: exponentially many
    /// configurations to rule out.
    fn pathological() -> Vec<Entry> {
        let mut history: Vec<Entry> = (0..20)
            .map(|i| ok(i, Call::Write(i), 0, 100, Ret::Write))
            .collect();
        history.push(ok(20, Call::Read, 101, 102, Ret::Read(Some(999))));
        history
    }

    #[test]
    fn budget_exhaustion_is_unknown() {
        let limits = Limits {
            max_steps: 1000,
            deadline: None,
        };
        let Outcome::Unknown { reason } = check(&pathological(), &limits) else {
            panic!("expected Unknown");
        };
        assert_eq!(
            reason,
            "search gave up after 1000 steps (21 ok ops, 0 indeterminate)"
        );
        let limits = Limits {
            max_steps: u64::MAX,
            deadline: Some(Instant::now()),
        };
        assert!(matches!(
            check(&pathological(), &limits),
            Outcome::Unknown { .. }
        ));
    }

    #[test]
    fn outcome_serializes_for_reports() {
        let outcome = Outcome::NotLinearizable {
            op: 3,
            explanation: "why".into(),
            prefix: vec![1, 2],
        };
        assert_eq!(
            serde_json::to_string(&outcome).unwrap(),
            r#"{"NotLinearizable":{"op":3,"explanation":"why","prefix":[1,2]}}"#
        );
        let entry = info(1, cas(None, 2), 3);
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), entry);
    }

    /// The register as a stateright reference object.
    #[derive(Clone, Debug)]
    struct Model(Value);

    impl SequentialSpec for Model {
        type Op = Call;
        type Ret = Ret;

        fn invoke(&mut self, call: &Call) -> Ret {
            let (value, ret) = call.apply(self.0);
            self.0 = value;
            ret
        }
    }

    /// An op of a simulated history, with the stateright thread that ran it. Like a Jepsen
    /// process, a thread whose op ended indeterminate carries on as a new thread.
    struct SimOp {
        entry: Entry,
        thread: (usize, usize),
    }

    struct Sim {
        procs: usize,
        ops: usize,
        values: u64,
        /// One in `crash` steps of an op in flight abandons it (it becomes indeterminate).
        crash: u32,
    }

    /// A value in `None, Some(0), …, Some(values - 1)`.
    fn any_value(values: u64, pick: &mut impl FnMut(u32) -> u32) -> Value {
        let x = u64::from(pick(values as u32 + 1));
        (x < values).then_some(x)
    }

    /// Runs random ops on a register, each taking effect at a random instant of its interval
    /// (so the history is linearizable), with random timings and abandoned ops that take effect
    /// later or never. `pick(n)` chooses in `0..n`.
    fn simulate(sim: &Sim, pick: &mut impl FnMut(u32) -> u32) -> Vec<SimOp> {
        let mut value = None;
        let mut time = 0;
        let mut out: Vec<SimOp> = Vec::new();
        let mut generation = vec![0; sim.procs];
        // Per process: the index in `out` of its op in flight, and its result once applied.
        let mut in_flight: Vec<Option<(usize, Option<Ret>)>> = vec![None; sim.procs];
        // Abandoned ops that have not taken effect yet.
        let mut zombies: Vec<usize> = Vec::new();
        loop {
            let mut actors: Vec<usize> = (0..sim.procs)
                .filter(|&p| in_flight[p].is_some() || out.len() < sim.ops)
                .collect();
            if !zombies.is_empty() {
                actors.push(sim.procs);
            }
            if actors.is_empty() {
                return out;
            }
            let p = actors[pick(actors.len() as u32) as usize];
            if p == sim.procs {
                let z = zombies.swap_remove(pick(zombies.len() as u32) as usize);
                if pick(2) == 0 {
                    value = out[z].entry.call.apply(value).0;
                }
                continue;
            }
            match in_flight[p] {
                None => {
                    time += 1 + u64::from(pick(3));
                    let call = match pick(4) {
                        0 | 1 => Call::Read,
                        2 => Call::Write(u64::from(pick(sim.values as u32))),
                        _ => cas(
                            any_value(sim.values, pick),
                            u64::from(pick(sim.values as u32)),
                        ),
                    };
                    in_flight[p] = Some((out.len(), None));
                    out.push(SimOp {
                        entry: info(out.len() as u64, call, time),
                        thread: (p, generation[p]),
                    });
                }
                Some((i, result)) if pick(sim.crash) == sim.crash - 1 => {
                    if result.is_none() {
                        zombies.push(i);
                    }
                    in_flight[p] = None;
                    generation[p] += 1;
                }
                Some((i, Some(ret))) => {
                    time += 1 + u64::from(pick(3));
                    out[i].entry.ret = Some((time, ret));
                    in_flight[p] = None;
                }
                Some((i, None)) => {
                    let (after, ret) = out[i].entry.call.apply(value);
                    value = after;
                    in_flight[p] = Some((i, Some(ret)));
                }
            }
        }
    }

    /// Changes one ok op's result (or a write's value), which often breaks linearizability.
    fn perturb(ops: &mut [SimOp], values: u64, pick: &mut impl FnMut(u32) -> u32) {
        let done: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].entry.ret.is_some())
            .collect();
        if done.is_empty() {
            return;
        }
        let entry = &mut ops[done[pick(done.len() as u32) as usize]].entry;
        match (&mut entry.call, &mut entry.ret) {
            (Call::Write(v), _) => *v = (*v + 1 + u64::from(pick(values as u32 - 1))) % values,
            (_, Some((_, Ret::Read(v)))) => {
                let code = |v: Value| v.unwrap_or(values);
                let shifted = (code(*v) + 1 + u64::from(pick(values as u32))) % (values + 1);
                *v = (shifted < values).then_some(shifted);
            }
            (_, Some((_, Ret::Cas(b)))) => *b = !*b,
            _ => unreachable!("only completed ops are perturbed"),
        }
    }

    /// Stateright's verdict. It has no clock: it learns real-time order from the sequence of
    /// invocations and returns, and treats an op invoked but never returned as in flight: it
    /// may take effect after its invocation, or never, with any result.
    fn stateright_says(ops: &[SimOp]) -> bool {
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            events.push((op.entry.invoke, false, i));
            if let Some((done, _)) = op.entry.ret {
                events.push((done, true, i));
            }
        }
        events.sort_unstable();
        let mut tester = LinearizabilityTester::new(Model(None));
        for (_, is_return, i) in events {
            let SimOp { entry, thread } = &ops[i];
            if is_return {
                tester.on_return(*thread, entry.ret.unwrap().1).unwrap();
            } else {
                tester.on_invoke(*thread, entry.call).unwrap();
            }
        }
        tester.is_consistent()
    }

    const SMALL_VALUES: u64 = 3;

    /// A history of at most 3 processes and 8 ops, perturbed or not, driven by `pick`.
    fn small_history(perturbed: bool, pick: &mut impl FnMut(u32) -> u32) -> Vec<SimOp> {
        let sim = Sim {
            procs: 1 + pick(3) as usize,
            ops: 1 + pick(8) as usize,
            values: SMALL_VALUES,
            crash: 6,
        };
        let mut ops = simulate(&sim, pick);
        if perturbed {
            perturb(&mut ops, SMALL_VALUES, pick);
        }
        ops
    }

    /// Compares with stateright; returns whether the history is linearizable.
    fn cross_check(ops: &[SimOp], perturbed: bool) -> bool {
        let entries: Vec<Entry> = ops.iter().map(|o| o.entry.clone()).collect();
        let ours = match run(&entries) {
            Outcome::Linearizable => true,
            Outcome::NotLinearizable { .. } => false,
            Outcome::Unknown { reason } => panic!("{reason}: {entries:?}"),
        };
        assert_eq!(ours, stateright_says(ops), "{entries:?}");
        assert!(
            ours || perturbed,
            "a simulated history must be linearizable"
        );
        ours
    }

    /// `pick(n)` from a xorshift generator.
    fn seeded(seed: u64) -> impl FnMut(u32) -> u32 {
        let mut x = (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        move |n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(n)) as u32
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn agrees_with_stateright(
            choices in prop::collection::vec(any::<u8>(), 0..120),
            perturbed in any::<bool>(),
        ) {
            let mut choices = choices.into_iter();
            let mut pick = |n: u32| choices.next().map_or(0, |b| u32::from(b) % n);
            cross_check(&small_history(perturbed, &mut pick), perturbed);
        }
    }

    #[test]
    fn generated_histories_are_of_both_kinds() {
        let total = 400;
        let linearizable = (0..total)
            .filter(|&seed| {
                let perturbed = seed % 2 == 1;
                let mut pick = seeded(seed + 1);
                cross_check(&small_history(perturbed, &mut pick), perturbed)
            })
            .count();
        assert!(
            (total / 2 + 20..total - 20).contains(&(linearizable as u64)),
            "{linearizable} of {total} linearizable"
        );
    }

    /// 500 ops of 8 clients over 5 values, about 20 of them indeterminate writes or CASes.
    fn large_history(seed: u64, perturbed: bool) -> Vec<Entry> {
        let sim = Sim {
            procs: 8,
            ops: 500,
            values: 5,
            crash: 25,
        };
        let mut pick = seeded(seed);
        let mut ops = simulate(&sim, &mut pick);
        if perturbed {
            perturb(&mut ops, sim.values, &mut pick);
        }
        ops.into_iter().map(|o| o.entry).collect()
    }

    #[test]
    fn large_histories_within_budget() {
        let limits = Limits {
            max_steps: 100_000,
            deadline: None,
        };
        for seed in 1..=5 {
            let history = large_history(seed, false);
            let maybe = history
                .iter()
                .filter(|e| e.ret.is_none() && e.call != Call::Read);
            let n = maybe.count();
            assert!((5..=40).contains(&n), "seed {seed}: {n}");
            assert_eq!(check(&history, &limits), Outcome::Linearizable);
            let outcome = check(&large_history(seed, true), &limits);
            assert!(!matches!(outcome, Outcome::Unknown { .. }), "{outcome:?}");
        }
    }

    #[test]
    #[ignore = "timing: run with `cargo test --release -- --ignored`"]
    fn large_histories_take_well_under_a_second() {
        let limits = Limits {
            max_steps: u64::MAX,
            deadline: None,
        };
        for seed in 1..=100 {
            for perturbed in [false, true] {
                let history = large_history(seed, perturbed);
                let start = Instant::now();
                check(&history, &limits);
                let took = start.elapsed();
                assert!(took.as_millis() < 250, "seed {seed}: {took:?}");
            }
        }
    }
}
