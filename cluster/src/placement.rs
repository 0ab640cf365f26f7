//! Which node should own each facility: rendezvous (highest random weight)
//! hashing over the nodes that take work, with a load cap.
//!
//! Every node computes the same answer from the same inputs (the facility
//! list in storage and the live members in Redis), so there is no leader
//! and no placement table to keep consistent. Plain rendezvous hashing
//! moves few facilities when a node joins or leaves (only those whose top
//! choice changed) but its loads vary like a binomial draw; the cap
//! (`⌊1.2 · F / N⌋ + 1`, within the contract's "mean + 20 % + 1") sends a
//! facility to its next choice when its first is full, walking facilities
//! in id order so the result stays deterministic.
//!
//! The hash is FNV-1a with a SplitMix64 finalizer, written out here so it
//! never changes with a compiler or library release (a silent change would
//! make nodes of two versions disagree on every owner).
//!
//! This module must never depend on time, randomness or iteration order
//! of hash maps.

use std::collections::BTreeMap;

use parkme_engine::FacilityId;

use crate::member::NodeName;

/// The owner each facility should have.
pub type Placement = BTreeMap<FacilityId, NodeName>;

/// The most facilities one node is given when `facilities` are spread over
/// `nodes` nodes: `⌊1.2 · F / N⌋ + 1` (0 nodes: 0).
pub fn load_cap(facilities: usize, nodes: usize) -> usize {
    if nodes == 0 {
        return 0;
    }
    facilities * 6 / (5 * nodes) + 1
}

/// The rendezvous weight of `node` for `facility`.
pub fn weight(facility: &FacilityId, node: &NodeName) -> u64 {
    let mut h = fnv1a(0xcbf2_9ce4_8422_2325, facility.as_str().as_bytes());
    h = fnv1a(h, &[0xff]);
    h = fnv1a(h, node.as_str().as_bytes());
    splitmix64(h)
}

/// `nodes` ranked for `facility`, best first (ties broken by name).
pub fn ranking<'n>(facility: &FacilityId, nodes: &'n [NodeName]) -> Vec<&'n NodeName> {
    let mut ranked: Vec<(u64, &NodeName)> =
        nodes.iter().map(|n| (weight(facility, n), n)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.into_iter().map(|(_, n)| n).collect()
}

/// Places every facility on one of `nodes` (duplicates in `nodes` are
/// ignored). With no nodes, nothing is placed.
pub fn place<'f>(
    facilities: impl IntoIterator<Item = &'f FacilityId>,
    nodes: &[NodeName],
) -> Placement {
    let mut nodes: Vec<NodeName> = nodes.to_vec();
    nodes.sort();
    nodes.dedup();
    let mut facilities: Vec<&FacilityId> = facilities.into_iter().collect();
    facilities.sort();
    facilities.dedup();
    let mut placement = Placement::new();
    if nodes.is_empty() {
        return placement;
    }
    let cap = load_cap(facilities.len(), nodes.len());
    let mut load: BTreeMap<&NodeName, usize> = nodes.iter().map(|n| (n, 0)).collect();
    for facility in facilities {
        let chosen = ranking(facility, &nodes)
            .into_iter()
            .find(|n| load.get(n).copied().unwrap_or(0) < cap);
        // cap * nodes > facilities, so some node always has room.
        debug_assert!(chosen.is_some(), "load cap leaves no room");
        if let Some(node) = chosen {
            *load.entry(node).or_default() += 1;
            placement.insert(facility.clone(), node.clone());
        }
    }
    placement
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fid(s: &str) -> FacilityId {
        FacilityId::parse(s).expect("facility id")
    }

    fn name(s: &str) -> NodeName {
        NodeName::parse(s).expect("node name")
    }

    #[test]
    fn the_hash_is_pinned() {
        // If this changes, nodes of two releases disagree on every owner.
        assert_eq!(
            weight(&fid("f1"), &name("parkme-0")),
            weight(&fid("f1"), &name("parkme-0"))
        );
        assert_eq!(fnv1a(0xcbf2_9ce4_8422_2325, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn no_nodes_places_nothing() {
        assert!(place([&fid("a")], &[]).is_empty());
        assert_eq!(load_cap(10, 0), 0);
    }

    #[test]
    fn the_cap_stays_within_mean_plus_twenty_percent_plus_one() {
        for f in 0..500 {
            for n in 1..12 {
                let cap = load_cap(f, n);
                // cap <= 1.2 f / n + 1, in integers: 5 n cap <= 6 f + 5 n.
                assert!(5 * n * cap <= 6 * f + 5 * n, "f={f} n={n}");
                assert!(cap * n > f, "room for all, f={f} n={n}");
            }
        }
    }
}
