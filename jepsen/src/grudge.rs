//! Partition shapes ("grudges"), pure and seeded: which node pairs lose their link.
//!
//! Cuts are symmetric (a pair either talks or not): over TCP a one-way drop stalls both
//! directions of every connection anyway. On 3 nodes a majorities-ring, in which every node
//! sees a majority but no two see the same one, needs one-way links; its symmetric form is the
//! bridge (one pair cut, the third node sees both), which is what it becomes there.

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A partition shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// One random node cut off from all others.
    One,
    /// The leader cut off from all others.
    LeaderAlone,
    /// A random minority and majority.
    Halves,
    /// Every node sees a majority, no two the same one (needs ≥ 5 nodes; bridge on 3).
    MajoritiesRing,
    /// Two halves joined by one node that sees both.
    Bridge,
}

impl Shape {
    pub const ALL: [Shape; 5] = [
        Shape::One,
        Shape::LeaderAlone,
        Shape::Halves,
        Shape::MajoritiesRing,
        Shape::Bridge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::One => "one",
            Shape::LeaderAlone => "leader-alone",
            Shape::Halves => "halves",
            Shape::MajoritiesRing => "majorities-ring",
            Shape::Bridge => "bridge",
        }
    }
}

/// An unordered node pair, smaller id first.
pub type Pair = (u64, u64);

fn pair(a: u64, b: u64) -> Pair {
    (a.min(b), a.max(b))
}

/// Every pair between `a` and `b`.
fn between(a: &[u64], b: &[u64]) -> BTreeSet<Pair> {
    let mut out = BTreeSet::new();
    for &x in a {
        for &y in b {
            if x != y {
                out.insert(pair(x, y));
            }
        }
    }
    out
}

/// The pairs to cut for `shape` over `nodes` (ids, ≥ 3). `leader` is used by
/// [`Shape::LeaderAlone`] (a random node when unknown).
pub fn cuts(
    shape: Shape,
    nodes: &[u64],
    leader: Option<u64>,
    rng: &mut impl Rng,
) -> BTreeSet<Pair> {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let n = nodes.len();
    match shape {
        Shape::One | Shape::LeaderAlone => {
            let alone = match (shape, leader) {
                (Shape::LeaderAlone, Some(l)) if nodes.contains(&l) => l,
                _ => shuffled[0],
            };
            let rest: Vec<u64> = nodes.iter().copied().filter(|&x| x != alone).collect();
            between(&[alone], &rest)
        }
        Shape::Halves => {
            let (minority, majority) = shuffled.split_at(n / 2);
            between(minority, majority)
        }
        Shape::Bridge => {
            // [a .. | b | .. c]: the bridge node b keeps both sides.
            let side = (n - 1) / 2;
            let (left, rest) = shuffled.split_at(side);
            let right = &rest[1..];
            between(left, right)
        }
        Shape::MajoritiesRing => {
            if n < 5 {
                return cuts(Shape::Bridge, nodes, leader, rng);
            }
            // Nodes on a shuffled ring keep the links to their nearest neighbours on both
            // sides, ⌈⌊n/2⌋ / 2⌉ each way: on 5 nodes each sees itself and its two
            // neighbours, a majority, and the five views all differ.
            let reach = (n / 2).div_ceil(2);
            let mut cut = BTreeSet::new();
            for i in 0..n {
                for j in (i + 1)..n {
                    let d = (j - i).min(n - (j - i));
                    if d > reach {
                        cut.insert(pair(shuffled[i], shuffled[j]));
                    }
                }
            }
            cut
        }
    }
}

/// The nodes each node can reach (itself included) under `cut`.
pub fn views(nodes: &[u64], cut: &BTreeSet<Pair>) -> Vec<(u64, BTreeSet<u64>)> {
    nodes
        .iter()
        .map(|&a| {
            let seen = nodes
                .iter()
                .copied()
                .filter(|&b| a == b || !cut.contains(&pair(a, b)))
                .collect();
            (a, seen)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn majority(n: usize) -> usize {
        n / 2 + 1
    }

    #[test]
    fn one_and_leader_alone_isolate_exactly_one_node() {
        let nodes = [1, 2, 3, 4, 5];
        let mut rng = StdRng::seed_from_u64(1);
        let c = cuts(Shape::LeaderAlone, &nodes, Some(4), &mut rng);
        for (node, seen) in views(&nodes, &c) {
            if node == 4 {
                assert_eq!(seen, BTreeSet::from([4]));
            } else {
                assert_eq!(seen.len(), 4, "node {node} sees {seen:?}");
            }
        }
        let c = cuts(Shape::One, &nodes, None, &mut rng);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn halves_leave_one_majority_side() {
        for seed in 0..20 {
            let nodes = [1, 2, 3, 4, 5];
            let c = cuts(
                Shape::Halves,
                &nodes,
                None,
                &mut StdRng::seed_from_u64(seed),
            );
            let v = views(&nodes, &c);
            let big: Vec<_> = v.iter().filter(|(_, s)| s.len() >= 3).collect();
            assert_eq!(big.len(), 3, "seed {seed}: {v:?}");
            let small: Vec<_> = v.iter().filter(|(_, s)| s.len() == 2).collect();
            assert_eq!(small.len(), 2, "seed {seed}: {v:?}");
        }
    }

    #[test]
    fn majorities_ring_gives_every_node_a_different_majority() {
        for seed in 0..20 {
            let nodes = [1, 2, 3, 4, 5];
            let c = cuts(
                Shape::MajoritiesRing,
                &nodes,
                None,
                &mut StdRng::seed_from_u64(seed),
            );
            let v = views(&nodes, &c);
            let sets: BTreeSet<_> = v.iter().map(|(_, s)| s.clone()).collect();
            assert_eq!(sets.len(), 5, "seed {seed}: all views differ: {v:?}");
            for (node, seen) in &v {
                assert_eq!(
                    seen.len(),
                    majority(5),
                    "seed {seed}: node {node} sees {seen:?}"
                );
            }
        }
    }

    #[test]
    fn bridge_has_one_node_that_sees_everyone() {
        for n in [3usize, 5] {
            let nodes: Vec<u64> = (1..=n as u64).collect();
            for seed in 0..10 {
                let c = cuts(
                    Shape::Bridge,
                    &nodes,
                    None,
                    &mut StdRng::seed_from_u64(seed),
                );
                let v = views(&nodes, &c);
                let full: Vec<_> = v.iter().filter(|(_, s)| s.len() == n).collect();
                assert_eq!(full.len(), 1, "n {n} seed {seed}: {v:?}");
                for (node, seen) in &v {
                    assert!(
                        seen.len() >= majority(n),
                        "n {n}: node {node} sees {seen:?}"
                    );
                }
            }
        }
        // On 3 nodes the ring is the bridge.
        let nodes = [1, 2, 3];
        let c = cuts(
            Shape::MajoritiesRing,
            &nodes,
            None,
            &mut StdRng::seed_from_u64(3),
        );
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn shapes_are_deterministic_for_a_seed() {
        let nodes = [1, 2, 3, 4, 5];
        for shape in Shape::ALL {
            let a = cuts(shape, &nodes, Some(2), &mut StdRng::seed_from_u64(9));
            let b = cuts(shape, &nodes, Some(2), &mut StdRng::seed_from_u64(9));
            assert_eq!(a, b, "{}", shape.name());
            assert!(!a.is_empty(), "{}", shape.name());
        }
    }
}
