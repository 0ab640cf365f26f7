//! Property tests of the zone state machine.
//!
//! Each test drives a few zones (spot zones with mixed kinds and counter
//! zones) through a random sequence of commands, with a clock that advances
//! as part of the sequence, and checks one promise of the engine after every
//! step. The scenario generator and the driver are shared; each property is
//! a small checker over one [`Step`].

use std::collections::{BTreeMap, BTreeSet};

use parkme_engine::booking::{DEFAULT_HOLD_SECONDS, MAX_HOLD_SECONDS};
use parkme_engine::codec::{decode_stored, encode_stored};
use parkme_engine::{
    BookingId, BookingRequest, BookingStatus, Command, Counts, EngineError, Event, FacilityId,
    Millis, Plate, PlateDirection, Reading, SpotId, SpotKind, SpotLayout, SpotState, UserId,
    ZoneCounts, ZoneId, ZoneLayout, ZoneShape, ZoneSnapshot, ZoneState,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Spot ids a zone's layout may use.
const SPOT_POOL: usize = 10;
/// Booking ids reused across a run, so that commands hit live bookings,
/// finished ones and ids that were never used.
const BOOKING_POOL: usize = 8;
const PLATE_POOL: usize = 4;
/// The clock starts here and only moves forward.
const EPOCH: i64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------
// Scenario vocabulary
// ---------------------------------------------------------------------------

/// A zone's shape as generated: a subset of the spot pool with kinds, or a
/// counter.
#[derive(Debug, Clone)]
enum ShapeGen {
    Spots(Vec<(usize, SpotKind)>),
    Counter { capacity: u32, kind: SpotKind },
}

/// Names a spot: one of the zone's current spots (by position, modulo their
/// number) or an id the zone never has.
#[derive(Debug, Clone, Copy)]
enum SpotRef {
    Listed(usize),
    Unknown(usize),
}

/// Names a booking: a never-used id, one of the zone's live bookings (by
/// position in id order), or an id from a small reused pool.
#[derive(Debug, Clone, Copy)]
enum BookingRef {
    Fresh,
    Live(usize),
    Pool(usize),
}

/// One generated step. References are resolved against the zone's state
/// when the step runs.
#[derive(Debug, Clone)]
enum Op {
    Tick {
        secs: u32,
    },
    Book {
        id: BookingRef,
        kind: Option<SpotKind>,
        spot: Option<SpotRef>,
        hold_seconds: u32,
        plate: usize,
    },
    Cancel {
        id: BookingRef,
    },
    Sense {
        spot: SpotRef,
        occupied: bool,
    },
    Count {
        delta: i32,
    },
    Plate {
        plate: usize,
        direction: PlateDirection,
    },
    SetService {
        spot: SpotRef,
        out_of_service: bool,
    },
    ExpireDue,
    Relayout {
        shape: ShapeGen,
        /// Asks for another zone id, which the zone must refuse.
        rename: bool,
    },
}

#[derive(Debug, Clone)]
struct Scenario {
    zones: Vec<ShapeGen>,
    /// `(zone index, op)`; the index is taken modulo the number of zones.
    ops: Vec<(usize, Op)>,
    /// Where (as a fraction of the journal) the replay test snapshots.
    snapshot_at: f64,
}

fn kind() -> impl Strategy<Value = SpotKind> {
    prop::sample::select(SpotKind::ALL.to_vec())
}

fn shape() -> impl Strategy<Value = ShapeGen> {
    prop_oneof![
        2 => prop::collection::btree_map(0..SPOT_POOL, kind(), 1..=SPOT_POOL)
            .prop_map(|spots| ShapeGen::Spots(spots.into_iter().collect())),
        1 => (0u32..8, kind()).prop_map(|(capacity, kind)| ShapeGen::Counter { capacity, kind }),
    ]
}

fn spot_ref() -> impl Strategy<Value = SpotRef> {
    prop_oneof![
        9 => any::<usize>().prop_map(SpotRef::Listed),
        1 => (0usize..2).prop_map(SpotRef::Unknown),
    ]
}

fn booking_ref(fresh: u32, live: u32, pool: u32) -> impl Strategy<Value = BookingRef> {
    prop_oneof![
        fresh => Just(BookingRef::Fresh),
        live => any::<usize>().prop_map(BookingRef::Live),
        pool => (0..BOOKING_POOL).prop_map(BookingRef::Pool),
    ]
}

fn hold_seconds() -> impl Strategy<Value = u32> {
    prop_oneof![
        12 => 1u32..600,
        4 => Just(DEFAULT_HOLD_SECONDS),
        2 => Just(MAX_HOLD_SECONDS),
        1 => Just(0u32),
        1 => Just(MAX_HOLD_SECONDS + 1),
        1 => Just(u32::MAX),
    ]
}

fn delta() -> impl Strategy<Value = i32> {
    prop_oneof![
        6 => -3i32..=3,
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
        1 => Just(1_000_000_000),
        1 => Just(-1_000_000_000),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![3 => 0u32..120, 1 => 120u32..2_000]
            .prop_map(|secs| Op::Tick { secs }),
        5 => (
            booking_ref(6, 1, 2),
            prop::option::of(kind()),
            prop::option::weighted(0.3, spot_ref()),
            hold_seconds(),
            0..PLATE_POOL,
        )
            .prop_map(|(id, kind, spot, hold_seconds, plate)| Op::Book {
                id,
                kind,
                spot,
                hold_seconds,
                plate,
            }),
        2 => booking_ref(1, 6, 2).prop_map(|id| Op::Cancel { id }),
        6 => (spot_ref(), any::<bool>())
            .prop_map(|(spot, occupied)| Op::Sense { spot, occupied }),
        3 => delta().prop_map(|delta| Op::Count { delta }),
        2 => (0..PLATE_POOL, prop_oneof![Just(PlateDirection::In), Just(PlateDirection::Out)])
            .prop_map(|(plate, direction)| Op::Plate { plate, direction }),
        2 => (spot_ref(), prop::bool::weighted(0.6))
            .prop_map(|(spot, out_of_service)| Op::SetService { spot, out_of_service }),
        2 => Just(Op::ExpireDue),
        1 => (shape(), prop::bool::weighted(0.1))
            .prop_map(|(shape, rename)| Op::Relayout { shape, rename }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(shape(), 1..=3),
        prop::collection::vec((0usize..3, op()), 1..100),
        0.0f64..=1.0,
    )
        .prop_map(|(zones, ops, snapshot_at)| Scenario {
            zones,
            ops,
            snapshot_at,
        })
}

// ---------------------------------------------------------------------------
// Ids, layouts, commands
// ---------------------------------------------------------------------------

fn facility() -> FacilityId {
    FacilityId::parse("F1").expect("valid facility id")
}

fn zone_id(zone: usize) -> ZoneId {
    ZoneId::parse(&format!("Z{zone}")).expect("valid zone id")
}

/// Spot ids are unique in the facility: each zone has its own prefix.
fn spot_id(zone: usize, spot: usize) -> SpotId {
    SpotId::parse(&format!("Z{zone}-S{spot}")).expect("valid spot id")
}

fn booking_id(name: &str) -> BookingId {
    BookingId::parse(name).expect("valid booking id")
}

fn plate(p: usize) -> Plate {
    Plate::parse(&format!("AB-{p}")).expect("valid plate")
}

fn owner() -> UserId {
    UserId::parse("user-1").expect("valid user id")
}

fn layout(zone: usize, shape: &ShapeGen) -> ZoneLayout {
    let shape = match shape {
        ShapeGen::Spots(spots) => ZoneShape::Spots(
            spots
                .iter()
                .map(|&(s, kind)| SpotLayout {
                    id: spot_id(zone, s),
                    kind,
                })
                .collect(),
        ),
        ShapeGen::Counter { capacity, kind } => ZoneShape::Counter {
            capacity: *capacity,
            kind: *kind,
        },
    };
    ZoneLayout {
        id: zone_id(zone),
        name: format!("zone {zone}"),
        shape,
    }
}

/// Turns generated references into ids against the zone's current state.
struct Resolver<'a> {
    zone: usize,
    state: &'a ZoneState,
    fresh: &'a mut usize,
}

impl Resolver<'_> {
    fn spot(&self, spot: SpotRef) -> SpotId {
        let spots = self.state.spots();
        match spot {
            SpotRef::Listed(i) if !spots.is_empty() => spots[i % spots.len()].id.clone(),
            SpotRef::Listed(i) | SpotRef::Unknown(i) => spot_id(self.zone, SPOT_POOL + i % 2),
        }
    }

    fn booking(&mut self, id: BookingRef) -> BookingId {
        let mut live: Vec<&BookingId> = self.state.live_bookings().map(|b| &b.id).collect();
        live.sort();
        match id {
            BookingRef::Live(i) if !live.is_empty() => live[i % live.len()].clone(),
            BookingRef::Live(i) | BookingRef::Pool(i) => {
                booking_id(&format!("B{}", i % BOOKING_POOL))
            }
            BookingRef::Fresh => {
                *self.fresh += 1;
                booking_id(&format!("N{}", self.fresh))
            }
        }
    }

    fn command(&mut self, op: &Op, now: Millis) -> Option<Command> {
        Some(match op {
            Op::Tick { .. } => return None,
            Op::Book {
                id,
                kind,
                spot,
                hold_seconds,
                plate: p,
            } => Command::Book(BookingRequest {
                id: self.booking(*id),
                owner: owner(),
                plate: plate(*p),
                kind: *kind,
                spot: spot.map(|s| self.spot(s)),
                hold_seconds: *hold_seconds,
                now,
            }),
            Op::Cancel { id } => Command::Cancel {
                booking: self.booking(*id),
                now,
            },
            Op::Sense { spot, occupied } => Command::Sense {
                reading: Reading::Spot {
                    spot: self.spot(*spot),
                    occupied: *occupied,
                },
                now,
            },
            Op::Count { delta } => Command::Sense {
                reading: Reading::Count {
                    zone: zone_id(self.zone),
                    delta: *delta,
                },
                now,
            },
            Op::Plate {
                plate: p,
                direction,
            } => Command::Sense {
                reading: Reading::Plate {
                    plate: plate(*p),
                    direction: *direction,
                },
                now,
            },
            Op::SetService {
                spot,
                out_of_service,
            } => Command::SetService {
                spot: self.spot(*spot),
                out_of_service: *out_of_service,
            },
            Op::ExpireDue => Command::ExpireDue { now },
            Op::Relayout { shape, rename } => {
                let mut layout = layout(self.zone, shape);
                if *rename {
                    layout.id = zone_id(self.zone + 100);
                }
                Command::Relayout { layout }
            }
        })
    }
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

/// One executed command, with the zone as it was before and after.
struct Step<'a> {
    now: Millis,
    command: &'a Command,
    before: &'a ZoneState,
    after: &'a ZoneState,
    result: &'a Result<Vec<Event>, EngineError>,
}

/// A zone under test: its state, its initial layout and its journal.
struct Driven {
    initial: ZoneLayout,
    state: ZoneState,
    journal: Vec<Event>,
}

/// Runs a scenario, calling `check` after every executed command. Returns the
/// driven zones so that end-of-run properties can inspect their journals.
fn drive(
    scenario: &Scenario,
    mut check: impl FnMut(&Step<'_>) -> Result<(), TestCaseError>,
) -> Result<Vec<Driven>, TestCaseError> {
    let mut zones: Vec<Driven> = scenario
        .zones
        .iter()
        .enumerate()
        .map(|(i, shape)| {
            let initial = layout(i, shape);
            Driven {
                state: ZoneState::new(facility(), initial.clone()),
                initial,
                journal: Vec::new(),
            }
        })
        .collect();
    let mut now = Millis(EPOCH);
    let mut fresh = 0;
    for (target, op) in &scenario.ops {
        if let Op::Tick { secs } = op {
            now = now.plus_secs(*secs);
            continue;
        }
        let z = target % zones.len();
        let zone = &mut zones[z];
        let mut resolver = Resolver {
            zone: z,
            state: &zone.state,
            fresh: &mut fresh,
        };
        let Some(command) = resolver.command(op, now) else {
            continue;
        };
        let before = zone.state.clone();
        let result = zone
            .state
            .execute(&command)
            .map(|applied| applied.into_iter().map(|(e, _)| e).collect::<Vec<_>>());
        if let Ok(events) = &result {
            zone.journal.extend(events.iter().cloned());
        }
        check(&Step {
            now,
            command: &command,
            before: &before,
            after: &zone.state,
            result: &result,
        })?;
    }
    Ok(zones)
}

fn events<'a>(step: &'a Step<'_>) -> &'a [Event] {
    step.result.as_deref().unwrap_or(&[])
}

/// 256 cases per property (proptest's default; `PROPTEST_CASES` overrides it
/// for a longer hunt).
fn config() -> ProptestConfig {
    ProptestConfig::default()
}

// ---------------------------------------------------------------------------
// Checkers
// ---------------------------------------------------------------------------

fn sum(c: &Counts) -> u32 {
    c.available + c.reserved + c.occupied + c.out_of_service
}

fn check_counts_add_up(zone: &ZoneState) -> Result<(), TestCaseError> {
    if zone.is_counter() {
        return Ok(());
    }
    let counts = zone.counts();
    prop_assert_eq!(counts.overall.total as usize, zone.spots().len());
    prop_assert_eq!(counts.overall.total, sum(&counts.overall));
    let mut by_kind_total = Counts::default();
    for kind in SpotKind::ALL {
        let c = &counts.by_kind[kind.index()];
        prop_assert_eq!(c.total, sum(c), "kind {:?}", kind);
        let spots = zone.spots();
        for state in SpotState::ALL {
            let n = spots
                .iter()
                .filter(|s| s.kind == kind && s.state == state)
                .count();
            prop_assert_eq!(
                c.get(state) as usize,
                n,
                "kind {:?} state {:?}",
                kind,
                state
            );
        }
        by_kind_total.add(c);
    }
    prop_assert_eq!(by_kind_total, counts.overall);
    Ok(())
}

fn check_counter(zone: &ZoneState) -> Result<(), TestCaseError> {
    let Some(capacity) = zone.capacity() else {
        return Ok(());
    };
    let c = zone.counts().overall;
    let confirmed = zone
        .live_bookings()
        .filter(|b| b.status == BookingStatus::Confirmed)
        .count() as u32;
    prop_assert_eq!(c.total, capacity);
    prop_assert!(c.occupied <= capacity);
    prop_assert_eq!(c.reserved, confirmed);
    prop_assert_eq!(c.out_of_service, 0);
    prop_assert_eq!(
        i64::from(c.available),
        (i64::from(capacity) - i64::from(c.occupied) - i64::from(c.reserved)).max(0)
    );
    let kind = match &zone.layout().shape {
        ZoneShape::Counter { kind, .. } => *kind,
        ZoneShape::Spots(_) => unreachable!("a counter zone has a counter layout"),
    };
    let mut expected = ZoneCounts {
        overall: c,
        ..ZoneCounts::default()
    };
    expected.by_kind[kind.index()] = c;
    prop_assert_eq!(zone.counts(), &expected);
    Ok(())
}

/// Every live booking of a spot zone names a spot of the zone, that spot
/// shows the booking, and no spot shows a booking that is not live.
fn check_bookings_and_spots_agree(zone: &ZoneState) -> Result<(), TestCaseError> {
    let mut held: BTreeMap<SpotId, BookingId> = BTreeMap::new();
    for booking in zone.live_bookings() {
        match (&booking.spot, zone.is_counter()) {
            (None, true) => {}
            (Some(spot), false) => {
                let previous = held.insert(spot.clone(), booking.id.clone());
                prop_assert!(
                    previous.is_none(),
                    "spot {} held by {:?} and {}",
                    spot,
                    previous,
                    booking.id
                );
                let view = zone.spot(spot);
                prop_assert!(
                    view.is_some(),
                    "booking {} on unknown spot {}",
                    booking.id,
                    spot
                );
                let view = view.expect("checked above");
                prop_assert_eq!(view.booking.as_ref(), Some(&booking.id));
                let allowed: &[SpotState] = match booking.status {
                    BookingStatus::Confirmed => &[SpotState::Reserved],
                    _ => &[SpotState::Reserved, SpotState::Occupied],
                };
                prop_assert!(
                    allowed.contains(&view.state),
                    "{:?} booking {} on a {:?} spot",
                    booking.status,
                    booking.id,
                    view.state
                );
            }
            (spot, counter) => {
                return Err(TestCaseError::fail(format!(
                    "booking {} has spot {spot:?} in a zone where counter={counter}",
                    booking.id
                )));
            }
        }
    }
    for view in zone.spots() {
        prop_assert_eq!(
            held.get(&view.id),
            view.booking.as_ref(),
            "spot {}",
            view.id
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Properties checked after every step
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Spot zones: total = available + reserved + occupied + out_of_service,
    /// overall and per kind, and the counts match the spots one by one.
    #[test]
    fn counts_add_up_per_zone_and_per_kind(scenario in scenario()) {
        drive(&scenario, |step| check_counts_add_up(step.after))?;
    }

    /// The incrementally kept counts always equal a full recount.
    #[test]
    fn incremental_counts_equal_a_full_recount(scenario in scenario()) {
        drive(&scenario, |step| {
            prop_assert_eq!(step.after.counts(), &step.after.recount());
            Ok(())
        })?;
    }

    /// Counter zones: occupied stays in [0, capacity] and
    /// available = capacity − occupied − reserved, floored at 0.
    #[test]
    fn counter_zone_available_is_capacity_minus_held_floored_at_zero(scenario in scenario()) {
        drive(&scenario, |step| check_counter(step.after))?;
    }

    /// No spot is ever held by two live bookings, and spots and bookings
    /// agree on who holds what.
    #[test]
    fn never_two_live_bookings_on_one_spot(scenario in scenario()) {
        drive(&scenario, |step| check_bookings_and_spots_agree(step.after))?;
    }

    /// A new booking is only ever confirmed on a spot that was AVAILABLE
    /// just before (never OCCUPIED, OUT_OF_SERVICE or already RESERVED).
    #[test]
    fn never_books_an_occupied_or_out_of_service_spot(scenario in scenario()) {
        drive(&scenario, |step| {
            for event in events(step) {
                let Event::BookingConfirmed(booking) = event else { continue };
                prop_assert!(step.before.booking(&booking.id).is_none(),
                    "booking {} confirmed while already live", booking.id);
                match &booking.spot {
                    Some(spot) => {
                        let before = step.before.spot(spot);
                        prop_assert!(before.is_some(), "booked unknown spot {}", spot);
                        let before = before.expect("checked above");
                        prop_assert_eq!(before.state, SpotState::Available, "spot {}", spot);
                    }
                    None => {
                        prop_assert!(step.before.is_counter());
                        prop_assert!(step.before.counts().overall.available > 0);
                    }
                }
            }
            Ok(())
        })?;
    }

    /// A confirmed booking's spot becomes RESERVED, held by that booking.
    #[test]
    fn a_confirmed_booking_reserves_its_spot(scenario in scenario()) {
        drive(&scenario, |step| {
            for event in events(step) {
                let Event::BookingConfirmed(booking) = event else { continue };
                prop_assert_eq!(booking.status, BookingStatus::Confirmed);
                prop_assert_eq!(booking.created_at, step.now);
                prop_assert!(booking.expires_at > booking.created_at);
                prop_assert_eq!(step.after.booking(&booking.id), Some(booking));
                if let Some(spot) = &booking.spot {
                    let view = step.after.spot(spot).expect("booked spot exists");
                    prop_assert_eq!(view.state, SpotState::Reserved);
                    prop_assert_eq!(view.booking.as_ref(), Some(&booking.id));
                }
            }
            Ok(())
        })?;
    }

    /// The zone's live bookings are exactly the CONFIRMED and ACTIVE ones:
    /// every confirmed booking stays live until an event finishes it.
    #[test]
    fn live_bookings_are_exactly_confirmed_or_active(scenario in scenario()) {
        let mut model: BTreeMap<(ZoneId, BookingId), BookingStatus> = BTreeMap::new();
        drive(&scenario, |step| {
            let zone = step.after.id().clone();
            if matches!(step.command, Command::Relayout { .. }) && step.result.is_ok() {
                // A relayout keeps every live booking (it refuses otherwise).
                let before: BTreeSet<_> = step.before.live_bookings().map(|b| &b.id).collect();
                let after: BTreeSet<_> = step.after.live_bookings().map(|b| &b.id).collect();
                prop_assert_eq!(before, after);
            }
            for event in events(step) {
                let key = |id: &BookingId| (zone.clone(), id.clone());
                match event {
                    Event::BookingConfirmed(b) => {
                        prop_assert!(model.insert(key(&b.id), b.status).is_none());
                    }
                    Event::BookingActivated { id, .. } => {
                        let status = model.get_mut(&key(id));
                        prop_assert_eq!(status.as_deref(), Some(&BookingStatus::Confirmed));
                        if let Some(status) = status {
                            *status = BookingStatus::Active;
                        }
                    }
                    Event::BookingCompleted { id, .. } => {
                        prop_assert_eq!(model.remove(&key(id)), Some(BookingStatus::Active));
                    }
                    Event::BookingExpired { id, .. } | Event::BookingCancelled { id, .. } => {
                        prop_assert_eq!(model.remove(&key(id)), Some(BookingStatus::Confirmed));
                    }
                    _ => {}
                }
            }
            let live: BTreeMap<_, _> = step
                .after
                .live_bookings()
                .map(|b| ((zone.clone(), b.id.clone()), b.status))
                .collect();
            let modelled: BTreeMap<_, _> = model
                .iter()
                .filter(|((z, _), _)| z == &zone)
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            prop_assert!(live.values().all(|s| s.is_live()));
            prop_assert_eq!(live, modelled);
            Ok(())
        })?;
    }

    /// Only CONFIRMED bookings expire, only once their deadline has passed,
    /// and `ExpireDue` leaves no overdue CONFIRMED booking behind.
    #[test]
    fn expired_bookings_were_confirmed_and_past_expires_at(scenario in scenario()) {
        drive(&scenario, |step| {
            for event in events(step) {
                let Event::BookingExpired { id, at } = event else { continue };
                let by_expiry = matches!(step.command, Command::ExpireDue { .. });
                prop_assert!(by_expiry, "expired by {:?}", step.command);
                let before = step.before.booking(id);
                prop_assert!(before.is_some(), "expired booking {} was not live", id);
                let before = before.expect("checked above");
                prop_assert_eq!(before.status, BookingStatus::Confirmed);
                prop_assert!(*at >= before.expires_at);
                prop_assert!(step.after.booking(id).is_none());
            }
            if let Command::ExpireDue { now } = step.command {
                let overdue = step
                    .after
                    .live_bookings()
                    .filter(|b| b.status == BookingStatus::Confirmed && b.expires_at <= *now)
                    .count();
                prop_assert_eq!(overdue, 0);
            }
            let next = step
                .after
                .live_bookings()
                .filter(|b| b.status == BookingStatus::Confirmed)
                .map(|b| b.expires_at)
                .min();
            prop_assert_eq!(step.after.next_expiry(), next);
            Ok(())
        })?;
    }

    /// A layout change of the zone is refused, as a conflict, exactly when
    /// it would strand a live booking: a booked spot the new layout drops,
    /// or any live booking when the zone changes between spots and a
    /// counter. The refusal names a spot (or, for a counter zone, the
    /// zone) that really holds one. Another zone id is invalid.
    #[test]
    fn a_relayout_is_refused_exactly_when_it_would_strand_a_live_booking(scenario in scenario()) {
        drive(&scenario, |step| {
            let Command::Relayout { layout } = step.command else {
                return Ok(());
            };
            if layout.id != *step.before.id() {
                prop_assert!(matches!(step.result, Err(EngineError::InvalidLayout(_))));
                return Ok(());
            }
            let stranded = |booking: &parkme_engine::Booking| match (&booking.spot, &layout.shape) {
                (Some(spot), ZoneShape::Spots(spots)) => !spots.iter().any(|s| &s.id == spot),
                (Some(_), ZoneShape::Counter { .. }) | (None, ZoneShape::Spots(_)) => true,
                (None, ZoneShape::Counter { .. }) => false,
            };
            let strands = step.before.live_bookings().any(stranded);
            match step.result {
                Ok(_) => prop_assert!(!strands, "accepted although it strands a booking"),
                Err(EngineError::SpotHasLiveBooking(spot)) => {
                    let held = step
                        .before
                        .live_bookings()
                        .find(|b| b.spot.as_ref() == Some(spot));
                    prop_assert!(held.is_some_and(stranded), "{} strands nothing", spot);
                }
                Err(EngineError::ZoneHasLiveBooking(zone)) => {
                    prop_assert_eq!(zone, step.before.id());
                    prop_assert!(step.before.is_counter() && strands);
                }
                Err(other) => prop_assert!(false, "unexpected refusal {:?}", other),
            }
            Ok(())
        })?;
    }

    /// A zone may leave its facility's layout only while it holds no live
    /// booking, and the refusal names what it holds.
    #[test]
    fn a_zone_may_be_removed_only_while_it_holds_no_live_booking(scenario in scenario()) {
        drive(&scenario, |step| {
            let zone = step.after;
            match zone.check_removal() {
                Ok(()) => prop_assert_eq!(zone.live_bookings().count(), 0),
                Err(EngineError::SpotHasLiveBooking(spot)) => {
                    let held = zone.spot(&spot).and_then(|s| s.booking);
                    prop_assert!(held.is_some_and(|id| zone.booking(&id).is_some()));
                }
                Err(EngineError::ZoneHasLiveBooking(id)) => {
                    prop_assert_eq!(&id, zone.id());
                    prop_assert!(zone.is_counter() && zone.live_bookings().count() > 0);
                }
                Err(other) => prop_assert!(false, "unexpected refusal {:?}", other),
            }
            Ok(())
        })?;
    }

    /// `decide` changes nothing, and `execute` applies exactly what `decide`
    /// returns, advancing `seq` once per event.
    #[test]
    fn decide_never_mutates(scenario in scenario()) {
        drive(&scenario, |step| {
            let copy = step.before.clone();
            let decided = copy.decide(step.command);
            prop_assert_eq!(&copy, step.before);
            prop_assert_eq!(&decided, step.result);
            let applied = events(step).len() as u64;
            prop_assert_eq!(step.after.seq().0, step.before.seq().0 + applied);
            if step.result.as_ref().is_ok_and(Vec::is_empty) || step.result.is_err() {
                prop_assert_eq!(step.after, step.before);
            }
            Ok(())
        })?;
    }

    /// Re-sending a sensor state or a service state that is already in
    /// place changes nothing (state-based idempotency).
    #[test]
    fn repeated_sensor_and_service_reports_are_harmless(scenario in scenario()) {
        drive(&scenario, |step| {
            let repeatable = matches!(
                step.command,
                Command::Sense {
                    reading: Reading::Spot { .. },
                    ..
                } | Command::SetService { .. }
                    | Command::Relayout { .. }
            );
            if repeatable && step.result.is_ok() {
                prop_assert_eq!(step.after.decide(step.command), Ok(Vec::new()));
            }
            Ok(())
        })?;
    }

    /// Entry/exit counts move occupancy only: they never activate, complete
    /// or otherwise touch a booking.
    #[test]
    fn counts_alone_never_activate_a_booking(scenario in scenario()) {
        drive(&scenario, |step| {
            if !matches!(
                step.command,
                Command::Sense {
                    reading: Reading::Count { .. },
                    ..
                }
            ) {
                return Ok(());
            }
            for event in events(step) {
                let counted = matches!(event, Event::Counted { .. });
                prop_assert!(counted, "a count caused {:?}", event);
            }
            let before: Vec<_> = step.before.snapshot().live;
            prop_assert_eq!(before, step.after.snapshot().live);
            Ok(())
        })?;
    }

    /// Every event and every snapshot survives the stored codec, and a
    /// snapshot restores to the identical zone.
    #[test]
    fn stored_codec_round_trips_events_and_snapshots(scenario in scenario()) {
        drive(&scenario, |step| {
            for event in events(step) {
                let bytes = encode_stored(event);
                prop_assert_eq!(&decode_stored::<Event>(&bytes), &Ok(event.clone()));
            }
            let snapshot = step.after.snapshot();
            let bytes = encode_stored(&snapshot);
            let decoded = decode_stored::<ZoneSnapshot>(&bytes);
            prop_assert_eq!(&decoded, &Ok(snapshot.clone()));
            let restored = ZoneState::restore(decoded.expect("checked above"));
            prop_assert_eq!(&restored, step.after);
            prop_assert_eq!(restored.snapshot(), snapshot);
            Ok(())
        })?;
    }

    /// Replaying a zone's journal rebuilds the identical state: from
    /// `ZoneState::new`, and from a mid-journal snapshot plus the tail
    /// (with the already-snapshotted events skipped by seq).
    #[test]
    fn replaying_the_journal_rebuilds_identical_state(scenario in scenario()) {
        let zones = drive(&scenario, |_| Ok(()))?;
        for zone in zones {
            let mut replayed = ZoneState::new(facility(), zone.initial.clone());
            let cut = (zone.journal.len() as f64 * scenario.snapshot_at) as usize;
            let mut snapshot = replayed.snapshot();
            for (i, event) in zone.journal.iter().enumerate() {
                if i == cut {
                    snapshot = replayed.snapshot();
                }
                replayed.apply(event);
            }
            if cut == zone.journal.len() {
                snapshot = replayed.snapshot();
            }
            prop_assert_eq!(&replayed, &zone.state);
            prop_assert_eq!(replayed.snapshot(), zone.state.snapshot());

            let bytes = encode_stored(&snapshot);
            let mut recovered =
                ZoneState::restore(decode_stored(&bytes).expect("snapshot decodes"));
            prop_assert_eq!(recovered.seq().0, cut as u64);
            for (i, event) in zone.journal.iter().enumerate() {
                let seq = parkme_engine::Seq(i as u64 + 1);
                let replay = recovered.replay(seq, event);
                prop_assert!(replay.is_ok(), "replay of seq {} failed: {:?}", seq, replay);
            }
            prop_assert_eq!(&recovered, &zone.state);
            prop_assert_eq!(recovered.snapshot(), zone.state.snapshot());

            // A gap in the journal is refused; an old seq is skipped.
            let any = Event::Counted { requested: 1, applied: 1 };
            let gap = recovered.replay(zone.state.seq().next().next(), &any);
            let refused = matches!(gap, Err(EngineError::OutOfOrder { .. }));
            prop_assert!(refused, "a gap was not refused: {:?}", gap);
            prop_assert_eq!(recovered.replay(zone.state.seq(), &any), Ok(()));
            prop_assert_eq!(&recovered, &zone.state);
        }
    }
}

// ---------------------------------------------------------------------------
// Regression examples found by the properties
// ---------------------------------------------------------------------------

fn one_spot_zone() -> ZoneState {
    ZoneState::new(
        facility(),
        layout(
            0,
            &ShapeGen::Spots(vec![(0, SpotKind::Standard), (1, SpotKind::Ev)]),
        ),
    )
}

fn book(id: &str, spot: usize, now: i64) -> Command {
    Command::Book(BookingRequest {
        id: booking_id(id),
        owner: owner(),
        plate: plate(0),
        kind: None,
        spot: Some(spot_id(0, spot)),
        hold_seconds: 60,
        now: Millis(now),
    })
}

/// A booking id that is already live must not be confirmed a second time:
/// that would leave its first spot RESERVED by a booking that no longer
/// holds it, and a restore from snapshot would disagree with the live state.
#[test]
fn a_live_booking_id_cannot_be_booked_twice() {
    let mut zone = one_spot_zone();
    let first = zone.execute(&book("B7", 0, EPOCH));
    assert!(first.is_ok());
    let before = zone.clone();
    let second = zone.execute(&book("B7", 1, EPOCH + 1));
    assert!(second.is_err(), "second confirm of a live id: {second:?}");
    assert_eq!(zone, before);
    assert_eq!(ZoneState::restore(zone.snapshot()), zone);
}

/// Once a booking is finished its id is no longer live and may be reused.
#[test]
fn a_finished_booking_id_may_be_reused() {
    let mut zone = one_spot_zone();
    assert!(zone.execute(&book("B7", 0, EPOCH)).is_ok());
    let cancel = Command::Cancel {
        booking: booking_id("B7"),
        now: Millis(EPOCH),
    };
    assert!(zone.execute(&cancel).is_ok());
    assert!(zone.execute(&book("B7", 1, EPOCH + 1)).is_ok());
    assert_eq!(
        zone.spot(&spot_id(0, 1)).map(|s| s.state),
        Some(SpotState::Reserved)
    );
}
