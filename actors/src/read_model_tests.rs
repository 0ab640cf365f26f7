//! Unit tests of the read model: bounded snapshot builds with gap-free
//! chains, and a copy kept in step from the owner's deltas.

use std::collections::HashMap;

use parkme_engine::{SpotKind, SpotLayout, SpotState, ZoneLayout, ZoneShape, ZoneState};

use super::*;

fn layout() -> FacilityLayout {
    let zone = ZoneLayout {
        id: ZoneId::parse("A").expect("id"),
        name: "A".into(),
        shape: ZoneShape::Spots(
            (0..50)
                .map(|n| SpotLayout {
                    id: SpotId::parse(&format!("A-{n}")).expect("id"),
                    kind: SpotKind::Standard,
                })
                .collect(),
        ),
        reservable: 0,
    };
    FacilityLayout::new(
        FacilityId::parse("f1").expect("id"),
        "F1".into(),
        "UTC".into(),
        None,
        vec![zone],
    )
    .expect("layout")
}

/// A zone's reports as its actor would send them, from a real zone state.
struct Zone {
    state: ZoneState,
}

impl Zone {
    fn new(layout: &FacilityLayout) -> Zone {
        Zone {
            state: ZoneState::new(layout.id.clone(), layout.zones[0].clone()),
        }
    }

    fn report(&self, spots: Vec<SpotView>, full: bool) -> ZoneReport {
        ZoneReport {
            zone: self.state.layout().id.clone(),
            zone_seq: self.state.seq(),
            name: self.state.layout().name.clone(),
            capacity: self.state.capacity(),
            reservable: self.state.layout().reservable,
            counts: self.state.counts().clone(),
            spots,
            full,
        }
    }

    fn full(&self) -> ZoneReport {
        self.report(self.state.spots(), true)
    }

    /// Flips spot `n` and reports the change.
    fn flip(&mut self, n: usize) -> ZoneReport {
        let spot = SpotId::parse(&format!("A-{}", n % 50)).expect("id");
        let occupied = self.state.spot(&spot).expect("spot").state != SpotState::Occupied;
        let command = parkme_engine::Command::Sense {
            reading: parkme_engine::Reading::Spot {
                spot: spot.clone(),
                occupied,
            },
            now: parkme_engine::Millis(0),
        };
        self.state.execute(&command).expect("sensed");
        let view = self.state.spot(&spot).expect("spot");
        self.report(vec![view], false)
    }
}

/// What a subscriber holds after applying its start and catch-up.
fn replay(sub: &Subscription) -> (Seq, HashMap<SpotId, SpotView>) {
    let Start::Snapshot(snapshot) = &sub.start else {
        panic!("a new subscriber starts with a snapshot");
    };
    let mut seq = snapshot.view.seq;
    let mut spots: HashMap<SpotId, SpotView> = snapshot
        .spots
        .iter()
        .map(|s| (s.id.clone(), s.clone()))
        .collect();
    for delta in &sub.catch_up {
        assert_eq!(delta.prev, seq, "catch-up is gap-free");
        seq = delta.seq;
        for spot in &delta.spots {
            spots.insert(spot.id.clone(), spot.clone());
        }
    }
    (seq, spots)
}

fn spots_of(model: &ReadModel) -> HashMap<SpotId, SpotView> {
    model
        .spots(&ZoneId::parse("A").expect("id"))
        .expect("zone")
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect()
}

#[test]
fn a_storm_of_subscribes_to_a_changing_facility_builds_a_bounded_number_of_snapshots() {
    let layout = layout();
    let mut model = ReadModel::new(&layout, Seq::ZERO, false);
    let mut zone = Zone::new(&layout);
    let start = Instant::now();
    assert!(model.zone_changed(zone.full(), start));
    let mut subscribers = Vec::new();
    // One change and one subscribe every millisecond for a second.
    for i in 0..1000u32 {
        let now = start + Duration::from_millis(u64::from(i));
        assert!(model.zone_changed(zone.flip(i as usize * 7), now));
        let sub = model.subscribe(None, now);
        let (seq, spots) = replay(&sub);
        assert_eq!(
            seq,
            model.seq(),
            "snapshot plus catch-up reaches the current seq"
        );
        assert_eq!(spots, spots_of(&model), "and the current state");
        if i % 100 == 0 {
            subscribers.push((seq, sub));
        }
    }
    let bound = u64::from(SNAPSHOT_BURST) + 1000 / SNAPSHOT_EVERY.as_millis() as u64 + 1;
    assert!(
        model.snapshots_built() <= bound,
        "{} snapshots built for 1,000 subscribes (bound {bound})",
        model.snapshots_built()
    );
    // Live deltas continue every subscriber's chain where it left off.
    let later = start + Duration::from_secs(2);
    for i in 0..5 {
        model.zone_changed(zone.flip(i), later);
    }
    for (mut seq, mut sub) in subscribers {
        while let Ok(delta) = sub.updates.try_recv() {
            if delta.seq <= seq {
                continue;
            }
            assert_eq!(delta.prev, seq, "live deltas follow the catch-up");
            seq = delta.seq;
        }
        assert_eq!(seq, model.seq());
    }
}

#[test]
fn a_quiet_facility_builds_one_snapshot_for_every_subscriber() {
    let layout = layout();
    let mut model = ReadModel::new(&layout, Seq::ZERO, false);
    let mut zone = Zone::new(&layout);
    let now = Instant::now();
    model.zone_changed(zone.full(), now);
    model.zone_changed(zone.flip(1), now);
    let first = model.subscribe(None, now);
    for _ in 0..100 {
        let again = model.subscribe(None, now);
        let (Start::Snapshot(a), Start::Snapshot(b)) = (&first.start, &again.start) else {
            panic!("snapshots");
        };
        assert!(Arc::ptr_eq(a, b));
        assert!(again.catch_up.is_empty());
    }
    assert_eq!(model.snapshots_built(), 1);
}

/// The same delta, as a copy would receive it over the wire.
fn received(delta: &Delta) -> Delta {
    Delta {
        facility: delta.facility.clone(),
        prev: delta.prev,
        seq: delta.seq,
        zones: delta.zones.clone(),
        spots: delta.spots.clone(),
        relaid: delta.relaid,
        published_at: delta.published_at,
        edge: Default::default(),
    }
}

#[test]
fn a_copy_fed_the_owners_deltas_shows_what_the_owner_shows() {
    let layout = layout();
    let now = Instant::now();
    let mut owner = ReadModel::new(&layout, Seq(5), true);
    let mut zone = Zone::new(&layout);
    owner.zone_changed(zone.full(), now);
    let mut copy = ReadModel::new(&layout, Seq(5), false);
    copy.zone_changed(zone.full(), now);
    let mut feed = owner.subscribe(Some(owner.seq()), now);
    for i in 0..20 {
        owner.zone_changed(zone.flip(i * 3), now);
    }
    let mut relaid = layout.clone();
    relaid.name = "renamed".into();
    owner.relayout(&relaid, owner.seq().0, vec![zone.full()], now);
    owner.zone_changed(zone.flip(4), now);
    while let Ok(delta) = feed.updates.try_recv() {
        copy.apply_delta(received(&delta)).expect("in order");
    }
    assert_eq!(copy.seq(), owner.seq());
    assert_eq!(copy.view().zones, owner.view().zones);
    assert_eq!(spots_of(&copy), spots_of(&owner));
    let stale = Delta {
        prev: Seq(1),
        ..received(&owner.history[0])
    };
    assert_eq!(
        copy.apply_delta(stale),
        Err(Gap {
            have: copy.seq(),
            prev: Seq(1)
        })
    );
}

#[test]
fn booking_candidates_put_zones_with_room_first_in_layout_order() {
    let mut layout = layout();
    let mut second = layout.zones[0].clone();
    second.id = ZoneId::parse("B").expect("id");
    second.shape = ZoneShape::Counter {
        capacity: 0,
        kind: SpotKind::Standard,
    };
    layout.zones.insert(0, second);
    let mut model = ReadModel::new(&layout, Seq::ZERO, false);
    let now = Instant::now();
    let b = ZoneState::new(layout.id.clone(), layout.zones[0].clone());
    let a = Zone::new(&FacilityLayout {
        zones: vec![layout.zones[1].clone()],
        ..layout.clone()
    });
    model.zone_changed(a.full(), now);
    model.zone_changed(
        ZoneReport {
            zone: b.layout().id.clone(),
            zone_seq: b.seq(),
            name: "B".into(),
            capacity: b.capacity(),
            reservable: 0,
            counts: b.counts().clone(),
            spots: Vec::new(),
            full: true,
        },
        now,
    );
    assert!(model.is_ready());
    let ids: Vec<String> = model
        .candidates(None)
        .iter()
        .map(|z| z.to_string())
        .collect();
    assert_eq!(ids, ["A", "B"]);
}
