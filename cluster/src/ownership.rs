//! One node's view of which facilities it owns, as a pure state machine.
//!
//! A thin async shell drives it once per tick (about a second):
//! 1. it announces its [`Member`] record and renews the leases it holds
//!    (Redis, with a TTL of `PARKME_LEASE_MS`), reporting any lease that
//!    turned out to be someone else's through [`Ownership::lost`];
//! 2. it reads the live members, the lease holders and the facility list,
//!    and hands them to [`Ownership::observe`], which answers with
//!    [`Action`]s;
//! 3. it carries the actions out (take a lease, then claim the zones in the
//!    store and start serving; or stop, flush and release) and reports
//!    the outcome through [`Ownership::acquired`] / [`Ownership::released`].
//!
//! The lease only decides who *should* write. Who *can* write is decided
//! by the epoch in the store: an acquire claims a new epoch there before it
//! reads anything, so a holder that lost its lease while paused has every
//! later write refused, and reports that through [`Ownership::lost`].
//!
//! Rules, in the order `observe` applies them:
//! - a facility this node owns whose lease names another live process is
//!   dropped at once (that process acquired it; our writes are fenced);
//! - a facility whose placement moved to another live, `up` node is handed
//!   over (released) — all of them when this node drains;
//! - a facility placed on this node is acquired when its lease is free:
//!   absent, held by a process that is no longer a member, or held by an
//!   earlier incarnation of this very node;
//! - at most `moves_per_round` handoffs and `moves_per_round` acquisitions
//!   are under way at once, so a join or a drain moves facilities in
//!   bounded rounds instead of all at once.
//!
//! When Redis cannot be read the shell simply does not call `observe`:
//! owners keep serving what they hold, and nobody takes anything new.
//!
//! This module must never read a clock, touch the network or the store,
//! or decide anything from a hash map's iteration order.

use std::collections::{BTreeMap, BTreeSet};

use parkme_engine::FacilityId;

use crate::member::{Member, NodeId, NodeName, NodeStatus};
use crate::placement::{Placement, place};

/// Tunables of the ownership rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnershipConfig {
    /// Handoffs, and separately acquisitions, under way at once.
    pub moves_per_round: usize,
}

impl Default for OwnershipConfig {
    fn default() -> Self {
        Self {
            moves_per_round: 16,
        }
    }
}

/// What the shell read from Redis and the store in one tick.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Members whose announcement has not expired.
    pub members: &'a [Member],
    /// The current holder of each facility's lease (absent: free).
    pub leases: &'a BTreeMap<FacilityId, NodeId>,
    /// Every facility in the store.
    pub facilities: &'a BTreeSet<FacilityId>,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Take the lease — set it if absent, or replace `replacing` (a holder
    /// that is gone) with a compare-and-set — then claim the facility in
    /// the store, recover it and serve it. Report with
    /// [`Ownership::acquired`].
    Acquire {
        facility: FacilityId,
        replacing: Option<NodeId>,
    },
    /// Hand over: refuse new requests (retryable), flush, snapshot, stop
    /// the actors, then delete the lease if it is still ours. Report with
    /// [`Ownership::released`].
    Release(FacilityId),
    /// Someone else holds it now: stop serving at once, leave the lease.
    Drop(FacilityId),
}

/// Where this node is with one facility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    Acquiring,
    Owned,
    Releasing,
}

/// This node's ownership state.
#[derive(Debug, Clone)]
pub struct Ownership {
    me: NodeId,
    config: OwnershipConfig,
    draining: bool,
    held: BTreeMap<FacilityId, Holding>,
    /// The placement computed at the last observation.
    placement: Placement,
}

impl Ownership {
    pub fn new(me: NodeId, config: OwnershipConfig) -> Self {
        Self {
            me,
            config,
            draining: false,
            held: BTreeMap::new(),
            placement: Placement::new(),
        }
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    /// Starts the drain (SIGTERM): take nothing new, hand everything over.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Nothing held, in any state: the drain is complete.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn holding(&self, facility: &FacilityId) -> Option<Holding> {
        self.held.get(facility).copied()
    }

    /// Facilities this node serves now.
    pub fn owned(&self) -> impl Iterator<Item = &FacilityId> {
        self.held
            .iter()
            .filter(|(_, h)| **h == Holding::Owned)
            .map(|(f, _)| f)
    }

    /// Every facility held in any state (whose lease the shell renews).
    pub fn held(&self) -> impl Iterator<Item = (&FacilityId, Holding)> {
        self.held.iter().map(|(f, h)| (f, *h))
    }

    /// The owner placement wants for `facility`, as of the last observation.
    pub fn placed(&self, facility: &FacilityId) -> Option<&NodeName> {
        self.placement.get(facility)
    }

    /// Decides what to do given one tick's observation.
    pub fn observe(&mut self, seen: Observation<'_>) -> Vec<Action> {
        let live: BTreeSet<&NodeId> = seen.members.iter().map(|m| &m.id).collect();
        let mut eligible: Vec<NodeName> = seen
            .members
            .iter()
            .filter(|m| m.status == NodeStatus::Up)
            .filter(|m| !(self.draining && m.id.name == self.me.name))
            .map(|m| m.id.name.clone())
            .collect();
        eligible.sort();
        eligible.dedup();
        self.placement = place(seen.facilities, &eligible);
        let mut actions = Vec::new();
        self.drop_lost(seen, &live, &mut actions);
        self.hand_over(&eligible, &mut actions);
        self.acquire(seen, &live, &mut actions);
        actions
    }

    fn drop_lost(
        &mut self,
        seen: Observation<'_>,
        live: &BTreeSet<&NodeId>,
        actions: &mut Vec<Action>,
    ) {
        let lost: Vec<FacilityId> = self
            .held
            .iter()
            .filter(|(_, h)| **h == Holding::Owned)
            .filter(|(f, _)| {
                seen.leases
                    .get(*f)
                    .is_some_and(|holder| holder != &self.me && live.contains(holder))
            })
            .map(|(f, _)| f.clone())
            .collect();
        for facility in lost {
            self.held.remove(&facility);
            actions.push(Action::Drop(facility));
        }
    }

    fn hand_over(&mut self, eligible: &[NodeName], actions: &mut Vec<Action>) {
        let in_flight = self.count(Holding::Releasing);
        let budget = self.config.moves_per_round.saturating_sub(in_flight);
        let leaving: Vec<FacilityId> = self
            .held
            .iter()
            .filter(|(_, h)| **h == Holding::Owned)
            .filter(|(f, _)| {
                self.placement
                    .get(*f)
                    .is_some_and(|n| n != &self.me.name && eligible.contains(n))
            })
            .map(|(f, _)| f.clone())
            .take(budget)
            .collect();
        for facility in leaving {
            self.held.insert(facility.clone(), Holding::Releasing);
            actions.push(Action::Release(facility));
        }
    }

    fn acquire(
        &mut self,
        seen: Observation<'_>,
        live: &BTreeSet<&NodeId>,
        actions: &mut Vec<Action>,
    ) {
        if self.draining {
            return;
        }
        let in_flight = self.count(Holding::Acquiring);
        let budget = self.config.moves_per_round.saturating_sub(in_flight);
        let mine = self
            .placement
            .iter()
            .filter(|(f, n)| *n == &self.me.name && !self.held.contains_key(*f))
            .map(|(f, _)| f);
        let mut wanted = Vec::new();
        for facility in mine {
            if wanted.len() >= budget {
                break;
            }
            let free = match seen.leases.get(facility) {
                None => Some(None),
                Some(holder) if holder == &self.me => Some(Some(holder.clone())),
                Some(holder) if self.me.is_former_self_of(holder) => Some(Some(holder.clone())),
                Some(holder) if !live.contains(holder) => Some(Some(holder.clone())),
                Some(_) => None,
            };
            if let Some(replacing) = free {
                wanted.push((facility.clone(), replacing));
            }
        }
        for (facility, replacing) in wanted {
            self.held.insert(facility.clone(), Holding::Acquiring);
            actions.push(Action::Acquire {
                facility,
                replacing,
            });
        }
    }

    fn count(&self, holding: Holding) -> usize {
        self.held.values().filter(|h| **h == holding).count()
    }

    /// The outcome of an [`Action::Acquire`]: `true` when the lease was
    /// taken and the facility is being served.
    pub fn acquired(&mut self, facility: &FacilityId, ok: bool) {
        if self.held.get(facility) != Some(&Holding::Acquiring) {
            return;
        }
        if ok {
            self.held.insert(facility.clone(), Holding::Owned);
        } else {
            self.held.remove(facility);
        }
    }

    /// An [`Action::Release`] finished: the facility is no longer served
    /// here and its lease is released.
    pub fn released(&mut self, facility: &FacilityId) {
        if self.held.get(facility) == Some(&Holding::Releasing) {
            self.held.remove(facility);
        }
    }

    /// The store refused our writes (fenced) or a renewal found the lease
    /// in other hands: the facility is no longer ours. Returns whether it
    /// was held (the shell then stops serving it).
    pub fn lost(&mut self, facility: &FacilityId) -> bool {
        self.held.remove(facility).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::Incarnation;

    fn fid(s: &str) -> FacilityId {
        FacilityId::parse(s).expect("facility id")
    }

    fn node(name: &str, inc: u64) -> NodeId {
        NodeId::new(NodeName::parse(name).expect("name"), Incarnation(inc))
    }

    fn member(id: &NodeId, status: NodeStatus) -> Member {
        Member {
            id: id.clone(),
            url: format!("http://{}", id.name),
            status,
        }
    }

    fn facilities(n: usize) -> BTreeSet<FacilityId> {
        (0..n).map(|i| fid(&format!("f{i}"))).collect()
    }

    #[test]
    fn a_lone_node_acquires_everything_in_bounded_rounds() {
        let me = node("a", 1);
        let mut own = Ownership::new(me.clone(), OwnershipConfig { moves_per_round: 4 });
        let all = facilities(10);
        let members = [member(&me, NodeStatus::Up)];
        let leases = BTreeMap::new();
        let seen = Observation {
            members: &members,
            leases: &leases,
            facilities: &all,
        };
        let first = own.observe(seen);
        assert_eq!(first.len(), 4);
        assert!(own.observe(seen).is_empty(), "four still in flight");
        for action in first {
            let Action::Acquire {
                facility,
                replacing,
            } = action
            else {
                panic!("expected acquire, got {action:?}");
            };
            assert_eq!(replacing, None);
            own.acquired(&facility, true);
        }
        assert_eq!(own.owned().count(), 4);
        assert_eq!(own.observe(seen).len(), 4);
    }

    #[test]
    fn a_lease_held_by_a_live_member_is_not_taken() {
        let me = node("a", 1);
        let other = node("b", 1);
        let mut own = Ownership::new(me.clone(), OwnershipConfig::default());
        let all = facilities(20);
        let members = [member(&me, NodeStatus::Up), member(&other, NodeStatus::Up)];
        let leases: BTreeMap<FacilityId, NodeId> =
            all.iter().map(|f| (f.clone(), other.clone())).collect();
        let actions = own.observe(Observation {
            members: &members,
            leases: &leases,
            facilities: &all,
        });
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn leases_of_dead_holders_and_former_selves_are_taken_over() {
        let me = node("a", 2);
        let former = node("a", 1);
        let dead = node("b", 1);
        let mut own = Ownership::new(me.clone(), OwnershipConfig::default());
        let all = facilities(6);
        let members = [member(&me, NodeStatus::Up)];
        let leases: BTreeMap<FacilityId, NodeId> = all
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    f.clone(),
                    if i % 2 == 0 {
                        former.clone()
                    } else {
                        dead.clone()
                    },
                )
            })
            .collect();
        let actions = own.observe(Observation {
            members: &members,
            leases: &leases,
            facilities: &all,
        });
        assert_eq!(actions.len(), 6);
        for action in actions {
            let Action::Acquire {
                facility,
                replacing,
            } = action
            else {
                panic!("expected acquire");
            };
            assert_eq!(replacing.as_ref(), leases.get(&facility));
        }
    }

    #[test]
    fn a_draining_node_hands_over_and_takes_nothing() {
        let me = node("a", 1);
        let other = node("b", 1);
        let mut own = Ownership::new(me.clone(), OwnershipConfig { moves_per_round: 2 });
        let all = facilities(5);
        for f in &all {
            own.held.insert(f.clone(), Holding::Owned);
        }
        own.drain();
        let members = [
            member(&me, NodeStatus::Leaving),
            member(&other, NodeStatus::Up),
        ];
        let leases: BTreeMap<FacilityId, NodeId> =
            all.iter().map(|f| (f.clone(), me.clone())).collect();
        let seen = Observation {
            members: &members,
            leases: &leases,
            facilities: &all,
        };
        let actions = own.observe(seen);
        assert_eq!(actions.len(), 2);
        assert!(actions.iter().all(|a| matches!(a, Action::Release(_))));
        assert!(own.observe(seen).is_empty(), "two handoffs in flight");
        for a in actions {
            if let Action::Release(f) = a {
                own.released(&f);
            }
        }
        assert_eq!(own.observe(seen).len(), 2);
    }

    #[test]
    fn a_draining_last_node_keeps_serving() {
        let me = node("a", 1);
        let mut own = Ownership::new(me.clone(), OwnershipConfig::default());
        let all = facilities(3);
        for f in &all {
            own.held.insert(f.clone(), Holding::Owned);
        }
        own.drain();
        let members = [member(&me, NodeStatus::Leaving)];
        let leases = BTreeMap::new();
        let actions = own.observe(Observation {
            members: &members,
            leases: &leases,
            facilities: &all,
        });
        assert!(actions.is_empty());
        assert_eq!(own.owned().count(), 3);
    }

    #[test]
    fn an_owned_facility_leased_to_another_live_process_is_dropped() {
        let me = node("a", 1);
        let other = node("b", 1);
        let mut own = Ownership::new(me.clone(), OwnershipConfig::default());
        let f = fid("f0");
        own.held.insert(f.clone(), Holding::Owned);
        let all: BTreeSet<FacilityId> = [f.clone()].into();
        let members = [member(&me, NodeStatus::Up), member(&other, NodeStatus::Up)];
        let leases: BTreeMap<FacilityId, NodeId> = [(f.clone(), other)].into();
        let actions = own.observe(Observation {
            members: &members,
            leases: &leases,
            facilities: &all,
        });
        assert!(actions.contains(&Action::Drop(f.clone())));
        assert_eq!(own.holding(&f), None);
    }
}
