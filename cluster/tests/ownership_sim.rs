//! A simulated cluster driving the real ownership state machine: nodes
//! with leases in a simulated Redis (TTLs on a simulated clock) and epochs
//! in a simulated store that refuses stale writers, under random crashes,
//! pauses past the lease, Redis cuts, joins and drains.
//!
//! Promises checked (contract §7):
//! - one writer: the store accepts each facility's writes from one epoch
//!   holder at a time, and a node that wakes from a pause past its lease
//!   gets none of its writes accepted for a facility someone else claimed;
//! - failover and balance: once faults stop, every facility is served by
//!   exactly one live node, the one placement names, with no node above
//!   the load cap, and the assignment then stays put.

use std::collections::{BTreeMap, BTreeSet};

use parkme_cluster::{
    Action, Incarnation, Member, NodeId, NodeName, NodeStatus, Observation, Ownership,
    OwnershipConfig, load_cap, place,
};
use parkme_engine::FacilityId;
use proptest::prelude::*;

const TICK_MS: i64 = 1000;
const LEASE_MS: i64 = 5000;

#[derive(Debug, Default)]
struct Redis {
    members: BTreeMap<NodeId, (Member, i64)>,
    leases: BTreeMap<FacilityId, (NodeId, i64)>,
}

impl Redis {
    fn expire(&mut self, now: i64) {
        self.members.retain(|_, (_, until)| *until > now);
        self.leases.retain(|_, (_, until)| *until > now);
    }

    fn announce(&mut self, member: Member, now: i64) {
        self.members
            .insert(member.id.clone(), (member, now + LEASE_MS));
    }

    /// Extends our lease, or takes it back if it lapsed; false if another
    /// process holds it.
    fn renew(&mut self, facility: &FacilityId, me: &NodeId, now: i64) -> bool {
        match self.leases.get(facility) {
            Some((holder, _)) if holder != me => false,
            _ => {
                self.leases
                    .insert(facility.clone(), (me.clone(), now + LEASE_MS));
                true
            }
        }
    }

    fn take(
        &mut self,
        facility: &FacilityId,
        expected: Option<&NodeId>,
        me: &NodeId,
        now: i64,
    ) -> bool {
        let current = self.leases.get(facility).map(|(h, _)| h);
        if current != expected {
            return false;
        }
        self.leases
            .insert(facility.clone(), (me.clone(), now + LEASE_MS));
        true
    }

    fn release(&mut self, facility: &FacilityId, me: &NodeId) {
        if self.leases.get(facility).is_some_and(|(h, _)| h == me) {
            self.leases.remove(facility);
        }
    }
}

#[derive(Debug, Default)]
struct Store {
    epochs: BTreeMap<FacilityId, u64>,
}

impl Store {
    fn claim(&mut self, facility: &FacilityId) -> u64 {
        let epoch = self.epochs.entry(facility.clone()).or_insert(0);
        *epoch += 1;
        *epoch
    }

    fn write(&self, facility: &FacilityId, epoch: u64) -> bool {
        self.epochs.get(facility) == Some(&epoch)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Running,
    Paused { until: i64 },
    Dead,
}

#[derive(Debug)]
struct SimNode {
    id: NodeId,
    own: Ownership,
    serving: BTreeMap<FacilityId, u64>,
    life: Life,
    redis_cut_until: i64,
    /// Facilities whose writes were refused after this node woke from a
    /// pause past its lease (they must all have been claimed by others).
    fenced_after_pause: usize,
}

impl SimNode {
    fn new(name: &str, incarnation: u64, config: OwnershipConfig) -> Self {
        let id = NodeId::new(
            NodeName::parse(name).expect("name"),
            Incarnation(incarnation),
        );
        Self {
            own: Ownership::new(id.clone(), config),
            id,
            serving: BTreeMap::new(),
            life: Life::Running,
            redis_cut_until: 0,
            fenced_after_pause: 0,
        }
    }

    fn member(&self) -> Member {
        Member {
            id: self.id.clone(),
            url: format!("http://{}", self.id.name),
            status: if self.own.draining() {
                NodeStatus::Leaving
            } else {
                NodeStatus::Up
            },
        }
    }
}

#[derive(Debug, Clone)]
enum Fault {
    Kill(usize),
    Restart(usize),
    Pause(usize, u8),
    CutRedis(usize, u8),
    Join,
    Drain(usize),
    Nothing,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        2 => (0..6usize).prop_map(Fault::Kill),
        2 => (0..6usize).prop_map(Fault::Restart),
        2 => (0..6usize, 1..15u8).prop_map(|(n, k)| Fault::Pause(n, k)),
        2 => (0..6usize, 1..15u8).prop_map(|(n, k)| Fault::CutRedis(n, k)),
        1 => Just(Fault::Join),
        1 => (0..6usize).prop_map(Fault::Drain),
        6 => Just(Fault::Nothing),
    ]
}

struct Sim {
    now: i64,
    redis: Redis,
    store: Store,
    nodes: Vec<SimNode>,
    facilities: BTreeSet<FacilityId>,
    config: OwnershipConfig,
    next_incarnation: u64,
    /// Actions taken since the counter was last reset.
    moves: usize,
}

impl Sim {
    fn new(nodes: usize, facilities: usize, config: OwnershipConfig) -> Self {
        let mut sim = Self {
            now: 0,
            redis: Redis::default(),
            store: Store::default(),
            nodes: Vec::new(),
            facilities: (0..facilities)
                .map(|i| FacilityId::parse(&format!("f{i}")).expect("id"))
                .collect(),
            config,
            next_incarnation: 1,
            moves: 0,
        };
        for _ in 0..nodes {
            sim.join();
        }
        sim
    }

    fn join(&mut self) {
        let name = format!("n{}", self.nodes.len());
        let node = SimNode::new(&name, self.next_incarnation, self.config);
        self.next_incarnation += 1;
        self.nodes.push(node);
    }

    fn apply(&mut self, fault: &Fault) {
        let n = self.nodes.len();
        match *fault {
            Fault::Kill(i) => self.nodes[i % n].life = Life::Dead,
            Fault::Restart(i) => {
                let i = i % n;
                if self.nodes[i].life == Life::Dead {
                    let name = self.nodes[i].id.name.to_string();
                    self.nodes[i] = SimNode::new(&name, self.next_incarnation, self.config);
                    self.next_incarnation += 1;
                }
            }
            Fault::Pause(i, ticks) => {
                let node = &mut self.nodes[i % n];
                if node.life == Life::Running {
                    node.life = Life::Paused {
                        until: self.now + i64::from(ticks) * TICK_MS,
                    };
                }
            }
            Fault::CutRedis(i, ticks) => {
                self.nodes[i % n].redis_cut_until = self.now + i64::from(ticks) * TICK_MS;
            }
            Fault::Join => {
                if n < 8 {
                    self.join();
                }
            }
            Fault::Drain(i) => self.nodes[i % n].own.drain(),
            Fault::Nothing => {}
        }
    }

    fn tick(&mut self) {
        self.now += TICK_MS;
        self.redis.expire(self.now);
        for i in 0..self.nodes.len() {
            self.step(i);
        }
    }

    fn step(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        let woke = match node.life {
            Life::Dead => return,
            Life::Paused { until } if until > now => return,
            Life::Paused { .. } => {
                node.life = Life::Running;
                true
            }
            Life::Running => false,
        };
        if woke {
            // A paused process resumes where it stopped, often in the
            // middle of a commit: its first writes go out before it looks
            // at Redis again.
            Self::serve(&self.store, node, true);
        }
        if node.redis_cut_until <= now {
            self.redis.announce(node.member(), now);
            let held: Vec<FacilityId> = node.own.held().map(|(f, _)| f.clone()).collect();
            for facility in held {
                if !self.redis.renew(&facility, &node.id, now) && node.own.lost(&facility) {
                    node.serving.remove(&facility);
                }
            }
            let members: Vec<Member> = self
                .redis
                .members
                .values()
                .map(|(m, _)| m.clone())
                .collect();
            let leases: BTreeMap<FacilityId, NodeId> = self
                .redis
                .leases
                .iter()
                .map(|(f, (h, _))| (f.clone(), h.clone()))
                .collect();
            let actions = node.own.observe(Observation {
                members: &members,
                leases: &leases,
                facilities: &self.facilities,
            });
            for action in actions {
                match action {
                    Action::Acquire {
                        facility,
                        replacing,
                    } => {
                        self.moves += 1;
                        let ok = self
                            .redis
                            .take(&facility, replacing.as_ref(), &node.id, now);
                        if ok {
                            let epoch = self.store.claim(&facility);
                            node.serving.insert(facility.clone(), epoch);
                        }
                        node.own.acquired(&facility, ok);
                    }
                    Action::Release(facility) => {
                        self.moves += 1;
                        node.serving.remove(&facility);
                        self.redis.release(&facility, &node.id);
                        node.own.released(&facility);
                    }
                    Action::Drop(facility) => {
                        node.serving.remove(&facility);
                    }
                }
            }
        }
        Self::serve(&self.store, node, false);
        if node.own.draining() && node.own.is_empty() {
            node.life = Life::Dead;
        }
    }

    /// One write per facility served, fenced by the store.
    fn serve(store: &Store, node: &mut SimNode, woke: bool) {
        let refused: Vec<FacilityId> = node
            .serving
            .iter()
            .filter(|(f, epoch)| !store.write(f, **epoch))
            .map(|(f, _)| f.clone())
            .collect();
        for facility in refused {
            if woke {
                node.fenced_after_pause += 1;
            }
            node.serving.remove(&facility);
            node.own.lost(&facility);
        }
    }

    fn live_up(&self) -> Vec<&SimNode> {
        self.nodes
            .iter()
            .filter(|n| n.life != Life::Dead && !n.own.draining())
            .collect()
    }
}

fn check_settled(sim: &Sim) -> Result<(), TestCaseError> {
    let live = sim.live_up();
    let names: Vec<NodeName> = live.iter().map(|n| n.id.name.clone()).collect();
    let placement = place(&sim.facilities, &names);
    let cap = load_cap(sim.facilities.len(), names.len());
    for facility in &sim.facilities {
        let servers: Vec<&SimNode> = sim
            .nodes
            .iter()
            .filter(|n| n.life != Life::Dead && n.serving.contains_key(facility))
            .collect();
        if names.is_empty() {
            continue;
        }
        prop_assert_eq!(
            servers.len(),
            1,
            "{} served by {} nodes",
            facility,
            servers.len()
        );
        let server = servers[0];
        prop_assert_eq!(
            Some(&server.id.name),
            placement.get(facility),
            "{} on the wrong node",
            facility
        );
        prop_assert!(sim.store.write(facility, server.serving[facility]));
    }
    for node in &live {
        prop_assert!(node.serving.len() <= cap, "{} over the cap", node.id);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_facility_settles_on_one_live_owner_within_the_load_cap(
        nodes in 1..5usize,
        facilities in 0..40usize,
        moves in 1..6usize,
        faults in proptest::collection::vec(fault(), 0..60),
    ) {
        let config = OwnershipConfig { moves_per_round: moves };
        let mut sim = Sim::new(nodes, facilities, config);
        for fault in &faults {
            sim.apply(fault);
            sim.tick();
        }
        // Faults stop: paused nodes wake, cuts heal. Enough time for every
        // lease to lapse and every bounded round of moves to finish.
        let rounds = 2 * (facilities / moves + 2) as i64 + 2 * LEASE_MS / TICK_MS + 20;
        for _ in 0..rounds {
            sim.tick();
        }
        check_settled(&sim)?;
        // And then it stays put.
        sim.moves = 0;
        for _ in 0..10 {
            sim.tick();
        }
        prop_assert_eq!(sim.moves, 0, "placement kept moving after settling");
        check_settled(&sim)?;
    }

    #[test]
    fn a_node_paused_past_its_lease_gets_no_write_accepted_for_a_taken_facility(
        facilities in 1..30usize,
        pause in 8..20u8,
    ) {
        let mut sim = Sim::new(3, facilities, OwnershipConfig::default());
        for _ in 0..10 {
            sim.tick();
        }
        let owned_before = sim.nodes[0].serving.len();
        sim.apply(&Fault::Pause(0, pause));
        for _ in 0..(i64::from(pause) + 1) {
            sim.tick();
        }
        // Its facilities were taken over while it slept; on waking, every
        // write it tried for them was refused, and it serves none of them.
        let node = &sim.nodes[0];
        prop_assert_eq!(node.fenced_after_pause, owned_before);
        for facility in node.serving.keys() {
            prop_assert!(sim.store.write(facility, node.serving[facility]));
        }
    }
}

#[test]
fn a_joining_node_takes_its_share_in_bounded_rounds() {
    let config = OwnershipConfig { moves_per_round: 4 };
    let mut sim = Sim::new(2, 60, config);
    for _ in 0..40 {
        sim.tick();
    }
    check_settled(&sim).expect("settled with two nodes");
    sim.join();
    let mut ticks = 0;
    loop {
        sim.tick();
        ticks += 1;
        if check_settled(&sim).is_ok() {
            break;
        }
        assert!(
            ticks < 60,
            "joining node still short of its share after {ticks} ticks"
        );
    }
    // 60 facilities, a third of them move, 4 at a time: a handful of rounds.
    assert!(ticks <= 15, "took {ticks} ticks");
}

#[test]
fn a_drain_hands_everything_over_before_the_node_leaves() {
    let mut sim = Sim::new(3, 30, OwnershipConfig::default());
    for _ in 0..20 {
        sim.tick();
    }
    sim.apply(&Fault::Drain(1));
    for _ in 0..10 {
        sim.tick();
    }
    assert_eq!(sim.nodes[1].life, Life::Dead, "drained node exits");
    check_settled(&sim).expect("the others serve everything");
}
