//! The reservation windows of one zone, answering "how many windows cover
//! the busiest instant of `[s, e)`?" in O(log n).
//!
//! A window `[a, b)` is two endpoints: `+1` at `a`, `-1` at `b`. The number
//! of windows covering instant `t` is the sum of the deltas at keys `≤ t`.
//! The tree is a treap over distinct keys; each node keeps its key's net
//! delta, how many endpoints sit on it, and two aggregates of its subtree
//! in key order: the sum of the deltas and the largest non-empty prefix
//! sum. The busiest instant of `[s, e)` is then the sum before `s` plus the
//! best prefix of the keys in `[s, e)` (or nothing, when no endpoint sits
//! exactly on `s`). Insert, remove and query each walk O(log n) nodes.
//!
//! Priorities come from a randomly seeded hash of the key (as std's
//! `HashMap` seeds its hasher), so no sequence of windows a client can
//! choose unbalances the tree; equality compares contents, never shape.
//!
//! This module must never allocate per query, and never decide anything:
//! the zone asks, the zone refuses.

use std::hash::{BuildHasher, RandomState};

use crate::ids::Millis;

const NIL: u32 = u32::MAX;
/// The best prefix of an empty sequence: below any real sum, far from
/// overflow.
const NONE: i64 = i64::MIN / 4;

#[derive(Debug, Clone)]
struct Node {
    key: i64,
    delta: i64,
    /// Endpoints on this key; the node goes when it reaches 0.
    refs: u32,
    prio: u64,
    left: u32,
    right: u32,
    sum: i64,
    best: i64,
}

/// `(sum, best non-empty prefix)` of a run of keys.
#[derive(Debug, Clone, Copy)]
struct Agg {
    sum: i64,
    best: i64,
}

impl Agg {
    const EMPTY: Agg = Agg { sum: 0, best: NONE };

    fn point(delta: i64) -> Agg {
        Agg {
            sum: delta,
            best: delta,
        }
    }

    fn then(self, next: Agg) -> Agg {
        let continued = if next.best == NONE {
            NONE
        } else {
            self.sum + next.best
        };
        Agg {
            sum: self.sum + next.sum,
            best: self.best.max(continued),
        }
    }
}

/// A multiset of half-open windows `[start, end)`.
#[derive(Clone)]
pub struct Intervals {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    windows: usize,
    seed: RandomState,
}

impl Default for Intervals {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            windows: 0,
            seed: RandomState::new(),
        }
    }
}

impl std::fmt::Debug for Intervals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intervals")
            .field("windows", &self.windows)
            .field("keys", &(self.nodes.len() - self.free.len()))
            .finish()
    }
}

impl PartialEq for Intervals {
    fn eq(&self, other: &Self) -> bool {
        self.windows == other.windows && self.keys().eq(other.keys())
    }
}

impl Intervals {
    /// How many windows it holds.
    pub fn len(&self) -> usize {
        self.windows
    }

    pub fn is_empty(&self) -> bool {
        self.windows == 0
    }

    /// Adds `[start, end)`; an empty window (`end <= start`) is ignored.
    pub fn insert(&mut self, start: Millis, end: Millis) {
        if end <= start {
            debug_assert!(false, "empty window {start:?}..{end:?}");
            return;
        }
        self.root = self.add(self.root, start.0, 1, 1);
        self.root = self.add(self.root, end.0, -1, 1);
        self.windows += 1;
    }

    /// Removes one `[start, end)` added before.
    pub fn remove(&mut self, start: Millis, end: Millis) {
        if end <= start || !self.has_key(start.0) || !self.has_key(end.0) {
            debug_assert!(false, "removing a window never added {start:?}..{end:?}");
            return;
        }
        self.root = self.add(self.root, start.0, -1, -1);
        self.root = self.add(self.root, end.0, 1, -1);
        self.windows -= 1;
    }

    /// The most windows covering one instant of `[start, end)` (0 for an
    /// empty range).
    pub fn busiest(&self, start: Millis, end: Millis) -> u32 {
        if end <= start {
            return 0;
        }
        let before = self.sum_below(start.0);
        let within = self.fold(self.root, start.0, end.0, false, false);
        // With no endpoint on `start` itself, the instant `start` holds
        // exactly what came before it.
        let within = if self.has_key(start.0) {
            within
        } else {
            Agg::point(0).then(within)
        };
        clamp(before + within.best)
    }

    /// The most windows covering any one instant.
    pub fn busiest_ever(&self) -> u32 {
        match self.nodes.get(self.root as usize) {
            Some(root) => clamp(root.best),
            None => 0,
        }
    }

    fn agg(&self, t: u32) -> Agg {
        match self.nodes.get(t as usize) {
            Some(n) => Agg {
                sum: n.sum,
                best: n.best,
            },
            None => Agg::EMPTY,
        }
    }

    fn prio(&self, t: u32) -> u64 {
        self.nodes.get(t as usize).map_or(0, |n| n.prio)
    }

    fn pull(&mut self, t: u32) {
        let (left, right, delta) = {
            let n = &self.nodes[t as usize];
            (n.left, n.right, n.delta)
        };
        let agg = self.agg(left).then(Agg::point(delta)).then(self.agg(right));
        let n = &mut self.nodes[t as usize];
        n.sum = agg.sum;
        n.best = agg.best;
    }

    fn alloc(&mut self, key: i64, delta: i64) -> u32 {
        let node = Node {
            key,
            delta,
            refs: 1,
            prio: self.seed.hash_one(key),
            left: NIL,
            right: NIL,
            sum: delta,
            best: delta,
        };
        match self.free.pop() {
            Some(t) => {
                self.nodes[t as usize] = node;
                t
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// Adds `delta` (and `refs` endpoints) at `key` in the subtree `t`;
    /// returns the subtree's new root.
    fn add(&mut self, t: u32, key: i64, delta: i64, refs: i32) -> u32 {
        let Some(node) = self.nodes.get_mut(t as usize) else {
            return if refs > 0 {
                self.alloc(key, delta)
            } else {
                NIL
            };
        };
        if key == node.key {
            node.delta += delta;
            node.refs = node.refs.saturating_add_signed(refs);
            if node.refs == 0 {
                let (left, right) = (node.left, node.right);
                self.free.push(t);
                return self.merge(left, right);
            }
            self.pull(t);
            return t;
        }
        let (node_key, left, right) = (node.key, node.left, node.right);
        let mut root = t;
        if key < node_key {
            let left = self.add(left, key, delta, refs);
            self.nodes[t as usize].left = left;
            if left != NIL && self.prio(left) > self.prio(t) {
                root = self.rotate_right(t);
            }
        } else {
            let right = self.add(right, key, delta, refs);
            self.nodes[t as usize].right = right;
            if right != NIL && self.prio(right) > self.prio(t) {
                root = self.rotate_left(t);
            }
        }
        if root == t {
            self.pull(t);
        }
        root
    }

    fn rotate_right(&mut self, t: u32) -> u32 {
        let l = self.nodes[t as usize].left;
        self.nodes[t as usize].left = self.nodes[l as usize].right;
        self.nodes[l as usize].right = t;
        self.pull(t);
        self.pull(l);
        l
    }

    fn rotate_left(&mut self, t: u32) -> u32 {
        let r = self.nodes[t as usize].right;
        self.nodes[t as usize].right = self.nodes[r as usize].left;
        self.nodes[r as usize].left = t;
        self.pull(t);
        self.pull(r);
        r
    }

    /// Joins two subtrees, every key of `a` below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.prio(a) > self.prio(b) {
            let right = self.nodes[a as usize].right;
            let merged = self.merge(right, b);
            self.nodes[a as usize].right = merged;
            self.pull(a);
            a
        } else {
            let left = self.nodes[b as usize].left;
            let merged = self.merge(a, left);
            self.nodes[b as usize].left = merged;
            self.pull(b);
            b
        }
    }

    fn has_key(&self, key: i64) -> bool {
        let mut t = self.root;
        while let Some(n) = self.nodes.get(t as usize) {
            if key == n.key {
                return true;
            }
            t = if key < n.key { n.left } else { n.right };
        }
        false
    }

    /// The sum of the deltas at keys below `key`: the windows covering the
    /// instant just before it.
    fn sum_below(&self, key: i64) -> i64 {
        let mut sum = 0;
        let mut t = self.root;
        while let Some(n) = self.nodes.get(t as usize) {
            if n.key < key {
                sum += self.agg(n.left).sum + n.delta;
                t = n.right;
            } else {
                t = n.left;
            }
        }
        sum
    }

    /// The aggregate of the keys of subtree `t` in `[lo, hi)`; `lo_ok` /
    /// `hi_ok` say the whole subtree is known to be above `lo` / below
    /// `hi`. Walks at most two root-to-leaf paths.
    fn fold(&self, t: u32, lo: i64, hi: i64, lo_ok: bool, hi_ok: bool) -> Agg {
        let Some(n) = self.nodes.get(t as usize) else {
            return Agg::EMPTY;
        };
        if lo_ok && hi_ok {
            return self.agg(t);
        }
        if n.key < lo {
            return self.fold(n.right, lo, hi, lo_ok, hi_ok);
        }
        if n.key >= hi {
            return self.fold(n.left, lo, hi, lo_ok, hi_ok);
        }
        self.fold(n.left, lo, hi, lo_ok, true)
            .then(Agg::point(n.delta))
            .then(self.fold(n.right, lo, hi, true, hi_ok))
    }

    /// `(key, delta, refs)` in key order.
    fn keys(&self) -> impl Iterator<Item = (i64, i64, u32)> + '_ {
        let mut stack = Vec::new();
        let mut t = self.root;
        std::iter::from_fn(move || {
            while let Some(n) = self.nodes.get(t as usize) {
                stack.push(t);
                t = n.left;
            }
            let top = stack.pop()?;
            let n = &self.nodes[top as usize];
            t = n.right;
            Some((n.key, n.delta, n.refs))
        })
    }
}

fn clamp(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The same question answered the slow way: every instant where the
    /// count can change inside `[s, e)`, counted window by window.
    fn naive(windows: &[(i64, i64)], s: i64, e: i64) -> u32 {
        if e <= s {
            return 0;
        }
        let mut instants = vec![s];
        instants.extend(
            windows
                .iter()
                .flat_map(|&(a, b)| [a, b])
                .filter(|&t| s < t && t < e),
        );
        instants
            .into_iter()
            .map(|t| windows.iter().filter(|&&(a, b)| a <= t && t < b).count() as u32)
            .max()
            .unwrap_or(0)
    }

    impl Intervals {
        /// Heap order, search order, refs and aggregates, node by node.
        fn check(&self) {
            fn walk(tree: &Intervals, t: u32, lo: i64, hi: i64) -> Agg {
                let Some(n) = tree.nodes.get(t as usize) else {
                    return Agg::EMPTY;
                };
                assert!(lo <= n.key && n.key <= hi, "search order");
                assert!(n.refs > 0, "empty node kept");
                for child in [n.left, n.right] {
                    assert!(tree.prio(child) <= n.prio || child == NIL, "heap order");
                }
                let agg = walk(tree, n.left, lo, n.key - 1)
                    .then(Agg::point(n.delta))
                    .then(walk(tree, n.right, n.key + 1, hi));
                assert_eq!((agg.sum, agg.best), (n.sum, n.best), "aggregates");
                agg
            }
            let agg = walk(self, self.root, i64::MIN, i64::MAX);
            assert_eq!(agg.sum, 0, "every window closes");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64, i64),
        /// Removes the n-th window held (modulo their number).
        Remove(usize),
        Query(i64, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // A small key range, so that endpoints share keys often.
        prop_oneof![
            4 => (0i64..40, 1i64..12).prop_map(|(s, len)| Op::Insert(s, s + len)),
            2 => any::<usize>().prop_map(Op::Remove),
            4 => (-2i64..45, -2i64..45).prop_map(|(s, e)| Op::Query(s, e)),
        ]
    }

    proptest! {
        #[test]
        fn busiest_matches_a_naive_count(ops in prop::collection::vec(op(), 1..200)) {
            let mut tree = Intervals::default();
            let mut model: Vec<(i64, i64)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(s, e) => {
                        tree.insert(Millis(s), Millis(e));
                        model.push((s, e));
                    }
                    Op::Remove(n) if !model.is_empty() => {
                        let (s, e) = model.swap_remove(n % model.len());
                        tree.remove(Millis(s), Millis(e));
                    }
                    Op::Remove(_) => {}
                    Op::Query(s, e) => {
                        prop_assert_eq!(tree.busiest(Millis(s), Millis(e)), naive(&model, s, e));
                    }
                }
                tree.check();
                prop_assert_eq!(tree.len(), model.len());
                prop_assert_eq!(tree.busiest_ever(), naive(&model, i64::MIN / 2, i64::MAX / 2));
            }
            // Equality is by contents: the same windows inserted in another
            // order (with another seed, so another shape) are equal.
            let mut again = Intervals::default();
            for &(s, e) in model.iter().rev() {
                again.insert(Millis(s), Millis(e));
            }
            prop_assert_eq!(&again, &tree);
        }
    }

    #[test]
    fn windows_that_touch_do_not_overlap() {
        let mut tree = Intervals::default();
        tree.insert(Millis(10), Millis(20));
        tree.insert(Millis(20), Millis(30));
        assert_eq!(tree.busiest(Millis(0), Millis(100)), 1);
        assert_eq!(tree.busiest(Millis(20), Millis(21)), 1);
        assert_eq!(tree.busiest(Millis(19), Millis(21)), 1);
        assert_eq!(tree.busiest(Millis(30), Millis(40)), 0);
        tree.insert(Millis(15), Millis(25));
        assert_eq!(tree.busiest(Millis(0), Millis(100)), 2);
        assert_eq!(tree.busiest(Millis(25), Millis(100)), 1);
        tree.remove(Millis(15), Millis(25));
        tree.remove(Millis(10), Millis(20));
        tree.remove(Millis(20), Millis(30));
        assert!(tree.is_empty());
        assert_eq!(tree.nodes.len(), tree.free.len());
    }

    #[test]
    fn a_hundred_thousand_sorted_windows_keep_the_tree_shallow() {
        let mut tree = Intervals::default();
        for i in 0..100_000i64 {
            tree.insert(Millis(i * 10), Millis(i * 10 + 15));
        }
        fn depth(tree: &Intervals, t: u32) -> usize {
            match tree.nodes.get(t as usize) {
                Some(n) => 1 + depth(tree, n.left).max(depth(tree, n.right)),
                None => 0,
            }
        }
        assert!(
            depth(&tree, tree.root) < 100,
            "depth {}",
            depth(&tree, tree.root)
        );
        assert_eq!(tree.busiest_ever(), 2);
    }
}
