//! Property tests of the zone state machine.
//!
//! Each test drives a few zones (spot zones with mixed kinds and counter
//! zones, each with a reservation quota and short liveness, lead and grace
//! periods) through a random sequence of commands: bookings, advance
//! reservations, cancels, extensions, readings, heartbeats, counts, plate
//! reads, service changes, layout changes, restarts, and a clock that
//! advances as part of the sequence, with the zone's timer firing at its
//! `next_deadline`. After every step one promise of the engine is checked.
//! The scenario generator and the driver are shared; each property is a
//! small checker over one [`Step`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parkme_engine::booking::{DEFAULT_HOLD_SECONDS, MAX_HOLD_SECONDS, MAX_LEAD_MS, MAX_WINDOW_MS};
use parkme_engine::codec::{decode_stored, encode_stored};
use parkme_engine::liveness::{MAX_SLOT_MS, SLOTS_PER_PERIOD};
use parkme_engine::{
    Booking, BookingId, BookingRequest, BookingStatus, Command, Counts, EngineError, Event,
    FacilityId, Millis, Plate, PlateDirection, Reading, SpotId, SpotKind, SpotLayout, SpotState,
    UserId, WindowError, ZoneCounts, ZoneId, ZoneLayout, ZoneParams, ZoneShape, ZoneSnapshot,
    ZoneState,
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
const DAY_SECS: i64 = 86_400;

// ---------------------------------------------------------------------------
// Scenario vocabulary
// ---------------------------------------------------------------------------

/// A zone's shape as generated: a subset of the spot pool with kinds, or a
/// counter; and its quota, as a fraction of its size (above 1: too large).
#[derive(Debug, Clone)]
struct ZoneGen {
    shape: ShapeGen,
    quota: f64,
}

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
/// when the step runs; times are seconds from the step's `now`.
#[derive(Debug, Clone)]
enum Op {
    /// The clock advances (no command).
    Advance {
        secs: u32,
    },
    Book {
        id: BookingRef,
        kind: Option<SpotKind>,
        spot: Option<SpotRef>,
        hold_seconds: u32,
        plate: usize,
        ends_in: Option<i64>,
    },
    Reserve {
        id: BookingRef,
        kind: Option<SpotKind>,
        /// Rarely: names a spot, which a reservation may not.
        spot: Option<SpotRef>,
        hold_seconds: u32,
        plate: usize,
        starts_in: i64,
        /// `None`: no `ends_at` at all.
        lasts: Option<i64>,
    },
    Cancel {
        id: BookingRef,
    },
    Extend {
        id: BookingRef,
        ends_in: i64,
    },
    Sense {
        spot: SpotRef,
        occupied: bool,
    },
    Heartbeat {
        spot: SpotRef,
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
    /// `Tick` at the current time.
    Tick,
    /// The zone's timer fires: the clock moves to `next_deadline` (when
    /// later) and the zone ticks.
    Timer,
    Relayout {
        zone: ZoneGen,
        /// Asks for another zone id, which the zone must refuse.
        rename: bool,
    },
    /// The zone is restored from its snapshot and started again.
    Restart,
}

#[derive(Debug, Clone)]
struct Scenario {
    zones: Vec<ZoneGen>,
    params: ZoneParams,
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

fn zone_gen() -> impl Strategy<Value = ZoneGen> {
    let quota = prop_oneof![3 => 0.0f64..=1.0, 1 => Just(0.0), 1 => Just(1.0)];
    (shape(), quota).prop_map(|(shape, quota)| ZoneGen { shape, quota })
}

fn params() -> impl Strategy<Value = ZoneParams> {
    (
        prop_oneof![1 => Just(0u32), 4 => 20u32..600],
        0u32..600,
        0u32..300,
    )
        .prop_map(|(stale_secs, lead_secs, grace_secs)| ZoneParams {
            stale_secs,
            lead_secs,
            grace_secs,
        })
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

/// Seconds from now to a window's start: mostly soon, sometimes now or in
/// the past, sometimes past the 30-day limit.
fn starts_in() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 1i64..3_000,
        1 => -100i64..=0,
        1 => Just(MAX_LEAD_MS / 1000),
        1 => (MAX_LEAD_MS / 1000 + 1)..(MAX_LEAD_MS / 1000 + 100),
    ]
}

/// A window's length in seconds: mostly minutes, sometimes empty or
/// negative, sometimes over the 7-day limit.
fn lasts() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        8 => (60i64..4_000).prop_map(Some),
        1 => (-100i64..=0).prop_map(Some),
        1 => Just(Some(MAX_WINDOW_MS / 1000)),
        1 => ((MAX_WINDOW_MS / 1000 + 1)..(MAX_WINDOW_MS / 1000 + 100)).prop_map(Some),
        1 => Just(None),
    ]
}

/// Seconds from now to a stay's end: mostly ahead, sometimes past.
fn ends_in() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => 1i64..5_000,
        1 => -200i64..=0,
        1 => (7 * DAY_SECS)..(7 * DAY_SECS + 10),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![3 => 0u32..120, 1 => 120u32..2_000]
            .prop_map(|secs| Op::Advance { secs }),
        4 => (
            booking_ref(6, 1, 2),
            prop::option::of(kind()),
            prop::option::weighted(0.3, spot_ref()),
            hold_seconds(),
            0..PLATE_POOL,
            prop::option::weighted(0.3, ends_in()),
        )
            .prop_map(|(id, kind, spot, hold_seconds, plate, ends_in)| Op::Book {
                id,
                kind,
                spot,
                hold_seconds,
                plate,
                ends_in,
            }),
        4 => (
            booking_ref(6, 1, 2),
            prop::option::weighted(0.5, kind()),
            prop::option::weighted(0.05, spot_ref()),
            hold_seconds(),
            0..PLATE_POOL,
            starts_in(),
            lasts(),
        )
            .prop_map(|(id, kind, spot, hold_seconds, plate, starts_in, lasts)| Op::Reserve {
                id,
                kind,
                spot,
                hold_seconds,
                plate,
                starts_in,
                lasts,
            }),
        2 => booking_ref(1, 6, 2).prop_map(|id| Op::Cancel { id }),
        2 => (booking_ref(1, 6, 2), ends_in()).prop_map(|(id, ends_in)| Op::Extend { id, ends_in }),
        6 => (spot_ref(), any::<bool>())
            .prop_map(|(spot, occupied)| Op::Sense { spot, occupied }),
        2 => spot_ref().prop_map(|spot| Op::Heartbeat { spot }),
        3 => delta().prop_map(|delta| Op::Count { delta }),
        2 => (0..PLATE_POOL, prop_oneof![Just(PlateDirection::In), Just(PlateDirection::Out)])
            .prop_map(|(plate, direction)| Op::Plate { plate, direction }),
        2 => (spot_ref(), prop::bool::weighted(0.6))
            .prop_map(|(spot, out_of_service)| Op::SetService { spot, out_of_service }),
        1 => Just(Op::Tick),
        4 => Just(Op::Timer),
        1 => (zone_gen(), prop::bool::weighted(0.1))
            .prop_map(|(zone, rename)| Op::Relayout { zone, rename }),
        1 => Just(Op::Restart),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(zone_gen(), 1..=3),
        params(),
        prop::collection::vec((0usize..3, op()), 1..120),
        0.0f64..=1.0,
    )
        .prop_map(|(zones, params, ops, snapshot_at)| Scenario {
            zones,
            params,
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

fn secs(now: Millis, secs: i64) -> Millis {
    Millis(now.0 + secs * 1000)
}

fn layout(zone: usize, generated: &ZoneGen) -> ZoneLayout {
    let (shape, size) = match &generated.shape {
        ShapeGen::Spots(spots) => (
            ZoneShape::Spots(
                spots
                    .iter()
                    .map(|&(s, kind)| SpotLayout {
                        id: spot_id(zone, s),
                        kind,
                    })
                    .collect(),
            ),
            spots.len() as u32,
        ),
        ShapeGen::Counter { capacity, kind } => (
            ZoneShape::Counter {
                capacity: *capacity,
                kind: *kind,
            },
            *capacity,
        ),
    };
    ZoneLayout {
        id: zone_id(zone),
        name: format!("zone {zone}"),
        shape,
        reservable: (f64::from(size) * generated.quota).round() as u32,
    }
}

/// A zone's first layout: its quota always fits.
fn initial_layout(zone: usize, generated: &ZoneGen) -> ZoneLayout {
    let mut layout = layout(zone, generated);
    layout.reservable = layout.reservable.min(layout.size() as u32);
    layout
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
            Op::Advance { .. } | Op::Timer | Op::Restart => return None,
            Op::Book {
                id,
                kind,
                spot,
                hold_seconds,
                plate: p,
                ends_in,
            } => Command::Book(BookingRequest {
                id: self.booking(*id),
                owner: owner(),
                plate: plate(*p),
                kind: *kind,
                spot: spot.map(|s| self.spot(s)),
                hold_seconds: *hold_seconds,
                starts_at: None,
                ends_at: ends_in.map(|s| secs(now, s)),
                now,
            }),
            Op::Reserve {
                id,
                kind,
                spot,
                hold_seconds,
                plate: p,
                starts_in,
                lasts,
            } => Command::Book(BookingRequest {
                id: self.booking(*id),
                owner: owner(),
                plate: plate(*p),
                kind: *kind,
                spot: spot.map(|s| self.spot(s)),
                hold_seconds: *hold_seconds,
                starts_at: Some(secs(now, *starts_in)),
                ends_at: lasts.map(|l| secs(now, starts_in + l)),
                now,
            }),
            Op::Cancel { id } => Command::Cancel {
                booking: self.booking(*id),
                now,
            },
            Op::Extend { id, ends_in } => Command::Extend {
                booking: self.booking(*id),
                ends_at: secs(now, *ends_in),
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
            Op::Heartbeat { spot } => Command::Heartbeat {
                spot: self.spot(*spot),
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
                now,
            },
            Op::Tick => Command::Tick { now },
            Op::Relayout { zone, rename } => {
                let mut layout = layout(self.zone, zone);
                if *rename {
                    layout.id = zone_id(self.zone + 100);
                }
                Command::Relayout { layout, now }
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
    params: ZoneParams,
    command: &'a Command,
    before: &'a ZoneState,
    after: &'a ZoneState,
    result: &'a Result<Vec<Event>, EngineError>,
    /// When each spot of the zone was last heard of (the test's model of
    /// the hearing clock), after the step.
    heard: &'a HashMap<SpotId, Millis>,
}

/// A zone under test: its state, its initial layout, its journal and the
/// model of its hearing clock.
struct Driven {
    initial: ZoneLayout,
    state: ZoneState,
    journal: Vec<Event>,
    heard: HashMap<SpotId, Millis>,
}

impl Driven {
    /// Every spot's clock starts at `now` (start, restart, new layout).
    fn restart_clocks(&mut self, now: Millis) {
        self.heard = self
            .state
            .spots()
            .into_iter()
            .map(|s| (s.id, now))
            .collect();
    }
}

/// Runs a scenario, calling `check` after every executed command. Returns the
/// driven zones so that end-of-run properties can inspect their journals.
fn drive(
    scenario: &Scenario,
    mut check: impl FnMut(&Step<'_>) -> Result<(), TestCaseError>,
) -> Result<Vec<Driven>, TestCaseError> {
    let mut now = Millis(EPOCH);
    let params = scenario.params;
    let mut zones: Vec<Driven> = scenario
        .zones
        .iter()
        .enumerate()
        .map(|(i, generated)| {
            let initial = initial_layout(i, generated);
            let mut state = ZoneState::new(facility(), initial.clone());
            state.start(params, now);
            let mut zone = Driven {
                state,
                initial,
                journal: Vec::new(),
                heard: HashMap::new(),
            };
            zone.restart_clocks(now);
            zone
        })
        .collect();
    let mut fresh = 0;
    for (target, op) in &scenario.ops {
        let z = target % zones.len();
        let zone = &mut zones[z];
        let command = match op {
            Op::Advance { secs } => {
                now = now.plus_secs(*secs);
                continue;
            }
            Op::Restart => {
                zone.state = ZoneState::restore(zone.state.snapshot());
                zone.state.start(params, now);
                zone.restart_clocks(now);
                continue;
            }
            Op::Timer => {
                if let Some(at) = zone.state.next_deadline() {
                    now = now.max(at);
                }
                Command::Tick { now }
            }
            op => {
                let mut resolver = Resolver {
                    zone: z,
                    state: &zone.state,
                    fresh: &mut fresh,
                };
                let Some(command) = resolver.command(op, now) else {
                    continue;
                };
                command
            }
        };
        let before = zone.state.clone();
        let result = zone
            .state
            .execute(&command)
            .map(|applied| applied.into_iter().map(|(e, _)| e).collect::<Vec<_>>());
        if let Ok(events) = &result {
            zone.journal.extend(events.iter().cloned());
            if events.iter().any(|e| matches!(e, Event::Relaid { .. })) {
                zone.restart_clocks(now);
            }
            match &command {
                Command::Sense {
                    reading: Reading::Spot { spot, .. },
                    ..
                }
                | Command::Heartbeat { spot, .. } => {
                    zone.heard.insert(spot.clone(), now);
                }
                _ => {}
            }
        }
        check(&Step {
            now,
            params,
            command: &command,
            before: &before,
            after: &zone.state,
            result: &result,
            heard: &zone.heard,
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
// Models and checkers
// ---------------------------------------------------------------------------

fn sum(c: &Counts) -> u32 {
    c.available + c.reserved + c.occupied + c.out_of_service + c.unknown
}

/// The most live reservations covering one instant, counted the slow way
/// over `[from, to)`.
fn busiest(zone: &ZoneState, from: Millis, to: Millis) -> u32 {
    let windows: Vec<(Millis, Millis)> = zone
        .live_bookings()
        .filter_map(|b| b.starts_at.zip(b.ends_at))
        .collect();
    let mut instants = vec![from];
    instants.extend(
        windows
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .filter(|&t| from < t && t < to),
    );
    instants
        .into_iter()
        .filter(|&t| t < to)
        .map(|t| windows.iter().filter(|&&(a, b)| a <= t && t < b).count() as u32)
        .max()
        .unwrap_or(0)
}

fn busiest_ever(zone: &ZoneState) -> u32 {
    busiest(zone, Millis(i64::MIN / 2), Millis(i64::MAX / 2))
}

/// Whether `booking` (a reservation) could be given a spot (unit) that is
/// free in `zone` now.
fn fits_now(zone: &ZoneState, booking: &Booking) -> bool {
    if zone.is_counter() {
        return zone.counts().overall.available > 0;
    }
    zone.spots()
        .iter()
        .any(|s| s.state == SpotState::Available && booking.kind.is_none_or(|k| k == s.kind))
}

/// `SCHEDULED` reservations whose lead time has come by `now`.
fn due(zone: &ZoneState, now: Millis, params: ZoneParams) -> impl Iterator<Item = &Booking> {
    zone.live_bookings().filter(move |b| {
        b.status == BookingStatus::Scheduled
            && b.starts_at
                .is_some_and(|s| s.0 - i64::from(params.lead_secs) * 1000 <= now.0)
    })
}

fn check_counts_add_up(zone: &ZoneState) -> Result<(), TestCaseError> {
    if zone.is_counter() {
        return Ok(());
    }
    let counts = zone.counts();
    prop_assert_eq!(counts.overall.total as usize, zone.spots().len());
    prop_assert_eq!(counts.overall.total, sum(&counts.overall));
    let mut by_kind_total = Counts::default();
    let spots = zone.spots();
    for kind in SpotKind::ALL {
        let c = &counts.by_kind[kind.index()];
        prop_assert_eq!(c.total, sum(c), "kind {:?}", kind);
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
    prop_assert_eq!(c.unknown, 0, "counter zones have no liveness");
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

/// Every live booking of a spot zone that holds a spot names a spot of the
/// zone, that spot shows the booking, and no spot shows a booking that is
/// not live; `SCHEDULED` reservations hold none.
fn check_bookings_and_spots_agree(zone: &ZoneState) -> Result<(), TestCaseError> {
    let mut held: BTreeMap<SpotId, BookingId> = BTreeMap::new();
    for booking in zone.live_bookings() {
        match (&booking.spot, zone.is_counter(), booking.status) {
            (None, _, BookingStatus::Scheduled) => {}
            (Some(_), _, BookingStatus::Scheduled) => {
                return Err(TestCaseError::fail(format!(
                    "scheduled booking {} holds a spot",
                    booking.id
                )));
            }
            (None, true, _) => {}
            (Some(spot), false, status) => {
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
                prop_assert_eq!(view.overstay, booking.overstay);
                let allowed: &[SpotState] = match status {
                    BookingStatus::Confirmed => &[SpotState::Reserved],
                    _ => &[SpotState::Reserved, SpotState::Occupied, SpotState::Unknown],
                };
                prop_assert!(
                    allowed.contains(&view.state),
                    "{:?} booking {} on a {:?} spot",
                    status,
                    booking.id,
                    view.state
                );
            }
            (spot, counter, _) => {
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
        prop_assert!(!view.overstay || view.booking.is_some());
    }
    Ok(())
}

/// Which window error the contract expects for a new booking, if any.
fn expected_window_error(request: &BookingRequest) -> Option<WindowError> {
    let now = request.now.0;
    match (request.starts_at, request.ends_at) {
        (None, None) => None,
        (Some(_), None) => Some(WindowError::MissingEnd),
        (Some(s), Some(_)) if s.0 <= now => Some(WindowError::StartsInPast),
        (Some(s), Some(_)) if s.0 > now + MAX_LEAD_MS => Some(WindowError::StartsTooFarAhead),
        (Some(s), Some(e)) if e <= s => Some(WindowError::EndsBeforeStart),
        (Some(s), Some(e)) if e.0 > s.0 + MAX_WINDOW_MS => Some(WindowError::TooLong),
        (Some(_), Some(_)) => None,
        (None, Some(e)) if e.0 <= now => Some(WindowError::EndsInPast),
        (None, Some(e)) if e.0 > now + MAX_WINDOW_MS => Some(WindowError::TooLong),
        (None, Some(_)) => None,
    }
}

// ---------------------------------------------------------------------------
// Properties checked after every step
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Spot zones: total = available + reserved + occupied + out_of_service
    /// + unknown, overall and per kind, and the counts match the spots one
    /// by one.
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

    /// A booking (immediate or a reservation taking its spot) is only ever
    /// given a spot that is AVAILABLE at that point of the step: never
    /// UNKNOWN, OCCUPIED, OUT_OF_SERVICE or already RESERVED; a unit only
    /// while one is available.
    #[test]
    fn never_books_an_unknown_occupied_or_out_of_service_spot(scenario in scenario()) {
        drive(&scenario, |step| {
            // Events applied one by one, so each is checked against the
            // state just before it.
            let mut replay = step.before.clone();
            for event in events(step) {
                let given = match event {
                    Event::BookingConfirmed(booking) => {
                        prop_assert!(replay.booking(&booking.id).is_none(),
                            "booking {} confirmed while already live", booking.id);
                        Some(&booking.spot)
                    }
                    Event::BookingPlaced { id, spot, .. } => {
                        let status = replay.booking(id).map(|b| b.status);
                        prop_assert_eq!(status, Some(BookingStatus::Scheduled));
                        Some(spot)
                    }
                    _ => None,
                };
                match given {
                    Some(Some(spot)) => {
                        let view = replay.spot(spot);
                        prop_assert!(view.is_some(), "booked unknown spot {}", spot);
                        let view = view.expect("checked above");
                        prop_assert_eq!(view.state, SpotState::Available, "spot {}", spot);
                    }
                    Some(None) => {
                        prop_assert!(replay.is_counter());
                        prop_assert!(replay.counts().overall.available > 0);
                    }
                    None => {}
                }
                replay.apply(event);
            }
            Ok(())
        })?;
    }

    /// A confirmed booking's spot becomes RESERVED, held by that booking;
    /// an accepted reservation is SCHEDULED with no spot.
    #[test]
    fn a_confirmed_booking_reserves_its_spot(scenario in scenario()) {
        drive(&scenario, |step| {
            for event in events(step) {
                let booking = match event {
                    Event::BookingConfirmed(booking) => {
                        prop_assert_eq!(booking.status, BookingStatus::Confirmed);
                        prop_assert!(booking.starts_at.is_none());
                        booking.clone()
                    }
                    Event::BookingScheduled(booking) => {
                        prop_assert_eq!(booking.status, BookingStatus::Scheduled);
                        prop_assert!(booking.spot.is_none());
                        let (starts, ends) = booking.window().expect("a reservation has a window");
                        prop_assert!(step.now < starts && starts < ends);
                        prop_assert!(booking.expires_at > starts);
                        continue;
                    }
                    Event::BookingPlaced { id, .. } => {
                        let Some(placed) = step.after.booking(id) else { continue };
                        if placed.status != BookingStatus::Confirmed {
                            continue;
                        }
                        let starts = placed.starts_at.expect("a placed reservation has a start");
                        prop_assert!(placed.expires_at > starts, "expires_at = starts_at + hold");
                        placed.clone()
                    }
                    _ => continue,
                };
                prop_assert_eq!(booking.created_at <= step.now, true);
                prop_assert!(booking.expires_at > booking.created_at);
                let now_held = step.after.booking(&booking.id);
                if let (Some(spot), Some(held)) = (&booking.spot, now_held)
                    && held.status == BookingStatus::Confirmed
                {
                    let view = step.after.spot(spot).expect("booked spot exists");
                    prop_assert_eq!(view.state, SpotState::Reserved);
                    prop_assert_eq!(view.booking.as_ref(), Some(&booking.id));
                }
            }
            Ok(())
        })?;
    }

    /// The zone's live bookings are exactly the SCHEDULED, CONFIRMED and
    /// ACTIVE ones, and each moves only along the lifecycle.
    #[test]
    fn live_bookings_move_only_along_the_lifecycle(scenario in scenario()) {
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
                    Event::BookingConfirmed(b) | Event::BookingScheduled(b) => {
                        prop_assert!(model.insert(key(&b.id), b.status).is_none());
                    }
                    Event::BookingPlaced { id, .. } => {
                        let status = model.get_mut(&key(id));
                        prop_assert_eq!(status.as_deref(), Some(&BookingStatus::Scheduled));
                        if let Some(status) = status {
                            *status = BookingStatus::Confirmed;
                        }
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
                        let was = model.remove(&key(id));
                        prop_assert!(
                            matches!(was, Some(BookingStatus::Confirmed | BookingStatus::Scheduled)),
                            "{:?} ended from {:?}", event, was
                        );
                    }
                    Event::BookingOverstayed { id, .. } => {
                        prop_assert_eq!(model.get(&key(id)), Some(&BookingStatus::Active));
                    }
                    Event::BookingExtended { id, .. } => {
                        prop_assert!(model.contains_key(&key(id)));
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

    /// Only CONFIRMED bookings and reservations still waiting expire, only
    /// by a tick, only once their no-show deadline has passed; a tick
    /// leaves no overdue one behind.
    #[test]
    fn expired_bookings_were_held_or_waiting_and_past_expires_at(scenario in scenario()) {
        drive(&scenario, |step| {
            for event in events(step) {
                let Event::BookingExpired { id, at } = event else { continue };
                let by_tick = matches!(step.command, Command::Tick { .. });
                prop_assert!(by_tick, "expired by {:?}", step.command);
                let before = step.before.booking(id);
                prop_assert!(before.is_some(), "expired booking {} was not live", id);
                let before = before.expect("checked above");
                prop_assert!(matches!(before.status, BookingStatus::Confirmed | BookingStatus::Scheduled));
                prop_assert!(*at >= before.expires_at);
                prop_assert!(step.after.booking(id).is_none());
            }
            if let Command::Tick { now } = step.command {
                let overdue = step
                    .after
                    .live_bookings()
                    .filter(|b| b.status != BookingStatus::Active && b.expires_at <= *now)
                    .count();
                prop_assert_eq!(overdue, 0);
            }
            Ok(())
        })?;
    }

    /// At no instant does a zone hold more live reservations than its
    /// quota, and a reservation is refused `no_capacity` exactly when
    /// taking it would break that (or the zone has no spot of its kind).
    #[test]
    fn never_more_overlapping_reservations_than_the_quota(scenario in scenario()) {
        drive(&scenario, |step| {
            prop_assert!(busiest_ever(step.after) <= step.after.reservable(),
                "{} overlapping, quota {}", busiest_ever(step.after), step.after.reservable());
            prop_assert_eq!(step.after.reserved_between(Millis(i64::MIN / 2), Millis(i64::MAX / 2)),
                busiest_ever(step.after));
            let Command::Book(request) = step.command else { return Ok(()) };
            if !request.is_reservation() || step.before.booking(&request.id).is_some()
                || request.hold_seconds == 0 || request.hold_seconds > MAX_HOLD_SECONDS
            {
                return Ok(());
            }
            if request.spot.is_some() {
                prop_assert_eq!(step.result, &Err(EngineError::ReservationNamesSpot));
                return Ok(());
            }
            if let Some(error) = expected_window_error(request) {
                prop_assert_eq!(step.result, &Err(EngineError::InvalidWindow(error)));
                return Ok(());
            }
            let (starts, ends) = (request.starts_at.expect("set"), request.ends_at.expect("set"));
            let full = busiest(step.before, starts, ends) >= step.before.reservable();
            let kind_missing = request.kind.is_some() && !step.before.has_kind(request.kind);
            if full || kind_missing {
                prop_assert_eq!(step.result, &Err(EngineError::NoCapacity));
            } else {
                prop_assert!(step.result.is_ok(), "refused {:?}", step.result);
            }
            Ok(())
        })?;
    }

    /// Reservations take their spot at lead time: a reservation is placed
    /// only once its lead time has come, a tick leaves no due reservation
    /// waiting while a fitting spot (unit) is free, an immediate booking
    /// never takes a spot a due reservation could have had, and whatever
    /// is due after any step makes the zone's next deadline due too.
    #[test]
    fn reservations_take_the_first_fitting_spot_from_their_lead_time(scenario in scenario()) {
        drive(&scenario, |step| {
            let lead = i64::from(step.params.lead_secs) * 1000;
            for event in events(step) {
                if let Event::BookingPlaced { id, at, .. } = event {
                    let before = step.before.booking(id).expect("placed booking was live");
                    let starts = before.starts_at.expect("a reservation");
                    prop_assert!(starts.0 - lead <= at.0, "placed before its lead time");
                }
            }
            let strict = match step.command {
                Command::Tick { .. } => true,
                Command::Book(request) => !request.is_reservation() && step.result.is_ok(),
                _ => false,
            };
            let left = due(step.after, step.now, step.params).find(|b| fits_now(step.after, b));
            if let Some(waiting) = left {
                prop_assert!(!strict, "{} waits with a fitting spot free after {:?}", waiting.id, step.command);
                let next = step.after.next_deadline();
                prop_assert!(next.is_some_and(|at| at <= step.now),
                    "{} waits with a spot free and the next deadline is {:?}", waiting.id, next);
            }
            Ok(())
        })?;
    }

    /// The one deadline query and the one deadline command agree: after a
    /// tick the next deadline lies in the future (no busy loop), and while
    /// the next deadline lies in the future a tick has nothing to do.
    #[test]
    fn a_tick_does_exactly_what_next_deadline_announced(scenario in scenario()) {
        drive(&scenario, |step| {
            let next = step.after.next_deadline();
            if let Command::Tick { now } = step.command {
                prop_assert!(next.is_none_or(|at| at > *now), "next deadline {:?} at {:?}", next, now);
            }
            if next.is_none_or(|at| at > step.now) {
                let idle = step.after.decide(&Command::Tick { now: step.now });
                prop_assert_eq!(idle, Ok(Vec::new()));
            }
            Ok(())
        })?;
    }

    /// Liveness: a spot goes stale only by a tick, only once it has not
    /// been heard of (reading or heartbeat) for the staleness period, and
    /// at most one wheel slot later; its next reading or heartbeat makes
    /// it live again, and nothing else does; a stale spot shows UNKNOWN
    /// unless RESERVED or OUT_OF_SERVICE; counter zones never go stale.
    #[test]
    fn spots_go_unknown_exactly_when_their_sensor_falls_silent(scenario in scenario()) {
        drive(&scenario, |step| {
            let stale_ms = i64::from(step.params.stale_secs) * 1000;
            let slot_ms = (stale_ms / SLOTS_PER_PERIOD).clamp(1, MAX_SLOT_MS);
            for event in events(step) {
                let Event::SpotStale { spot } = event else { continue };
                let by_tick = matches!(step.command, Command::Tick { .. });
                prop_assert!(by_tick, "{} went stale by {:?}", spot, step.command);
                prop_assert!(stale_ms > 0, "liveness is off");
                let heard = step.heard.get(spot).copied().unwrap_or(Millis(EPOCH));
                prop_assert!(heard.0 + stale_ms <= step.now.0, "{} heard of at {:?}", spot, heard);
            }
            let images = step.after.snapshot().spots;
            // Stale until heard again: only a reading or a heartbeat of the
            // spot itself makes a stale spot live.
            let stale_before: BTreeSet<SpotId> = step
                .before
                .spots()
                .into_iter()
                .zip(step.before.snapshot().spots)
                .filter(|(_, image)| image.stale)
                .map(|(view, _)| view.id)
                .collect();
            for (view, image) in step.after.spots().iter().zip(&images) {
                if stale_before.contains(&view.id) && !image.stale {
                    let heard = matches!(
                        step.command,
                        Command::Sense {
                    reading: Reading::Spot { spot, .. },
                    ..
                } | Command::Heartbeat { spot, .. } if spot == &view.id
                    );
                    prop_assert!(heard, "{} live again by {:?}", view.id, step.command);
                }
            }
            for (view, image) in step.after.spots().iter().zip(&images) {
                if image.stale {
                    let shows = match view.state {
                        SpotState::Reserved | SpotState::OutOfService => true,
                        SpotState::Unknown => true,
                        SpotState::Available => false,
                        SpotState::Occupied => false,
                    };
                    prop_assert!(shows, "stale spot {} shows {:?}", view.id, view.state);
                } else {
                    prop_assert_ne!(view.state, SpotState::Unknown);
                }
                let heard_now = match step.command {
                    Command::Sense {
                    reading: Reading::Spot { spot, .. },
                    ..
                } | Command::Heartbeat { spot, .. } => spot == &view.id,
                    _ => false,
                };
                if heard_now && step.result.is_ok() {
                    prop_assert!(!image.stale, "{} heard of and still stale", view.id);
                }
                if let Command::Tick { now } = step.command
                    && stale_ms > 0
                {
                    let heard = step.heard.get(&view.id).copied().unwrap_or(Millis(EPOCH));
                    if heard.0 + stale_ms + slot_ms <= now.0 {
                        prop_assert!(image.stale, "{} silent since {:?} but live at {:?}", view.id, heard, now);
                    }
                }
            }
            Ok(())
        })?;
    }

    /// Stays: an ACTIVE booking overstays only a tick at least the grace
    /// period after its end, once per stay (an extension starts a new
    /// one); a tick leaves none overdue unflagged. Extensions get the
    /// contract's answers and change nothing when refused.
    #[test]
    fn overstays_are_flagged_once_and_extensions_follow_the_rules(scenario in scenario()) {
        let mut flagged: BTreeSet<(ZoneId, BookingId)> = BTreeSet::new();
        drive(&scenario, |step| {
            let grace = i64::from(step.params.grace_secs) * 1000;
            for event in events(step) {
                match event {
                    Event::BookingOverstayed { id, at } => {
                        let before = step.before.booking(id).expect("overstaying booking was live");
                        prop_assert_eq!(before.status, BookingStatus::Active);
                        prop_assert!(!before.overstay);
                        let ends = before.ends_at.expect("a stay with an end");
                        prop_assert!(ends.0 + grace <= at.0);
                        prop_assert!(flagged.insert((step.after.id().clone(), id.clone())), "counted twice");
                    }
                    Event::BookingExtended { id, .. } => {
                        flagged.remove(&(step.after.id().clone(), id.clone()));
                    }
                    _ => {}
                }
            }
            if let Command::Tick { now } = step.command {
                let overdue = step.after.live_bookings().find(|b| {
                    b.status == BookingStatus::Active && !b.overstay
                        && b.ends_at.is_some_and(|e| e.0 + grace <= now.0)
                });
                prop_assert!(overdue.is_none(), "{:?} overdue", overdue);
            }
            let Command::Extend { booking, ends_at, now } = step.command else { return Ok(()) };
            let Some(found) = step.before.booking(booking) else {
                prop_assert_eq!(step.result, &Err(EngineError::UnknownBooking(booking.clone())));
                return Ok(());
            };
            let expected = if ends_at <= now {
                Some(EngineError::InvalidWindow(WindowError::EndsInPast))
            } else if found.starts_at.is_some_and(|s| *ends_at <= s) {
                Some(EngineError::InvalidWindow(WindowError::EndsBeforeStart))
            } else if ends_at.0 > found.starts_at.unwrap_or(*now).0 + MAX_WINDOW_MS {
                Some(EngineError::InvalidWindow(WindowError::TooLong))
            } else if let Some((_, old_end)) = found.window()
                && *ends_at > old_end
                && busiest(step.before, old_end, *ends_at) >= step.before.reservable()
            {
                Some(EngineError::NoCapacity)
            } else {
                None
            };
            match expected {
                Some(error) => {
                    prop_assert_eq!(step.result, &Err(error));
                    prop_assert_eq!(step.after, step.before);
                }
                None => {
                    prop_assert!(step.result.is_ok(), "refused {:?}", step.result);
                    let after = step.after.booking(booking).expect("still live");
                    prop_assert_eq!(after.ends_at, Some(*ends_at));
                    prop_assert!(!after.overstay);
                }
            }
            Ok(())
        })?;
    }

    /// A layout change of the zone is refused exactly when it would strand
    /// a live booking (a booked spot the new layout drops, or any live
    /// booking when the zone changes between spots and a counter), when
    /// its quota exceeds the zone, or when it would leave more reservations
    /// than the new quota at some instant. Another zone id is invalid.
    #[test]
    fn a_relayout_is_refused_exactly_when_it_would_strand_a_booking_or_a_promise(scenario in scenario()) {
        drive(&scenario, |step| {
            let Command::Relayout { layout, .. } = step.command else {
                return Ok(());
            };
            if layout.id != *step.before.id() {
                prop_assert!(matches!(step.result, Err(EngineError::InvalidLayout(_))));
                return Ok(());
            }
            if layout == step.before.layout() {
                prop_assert_eq!(step.result, &Ok(Vec::new()));
                return Ok(());
            }
            if u64::from(layout.reservable) > layout.size() {
                prop_assert!(matches!(step.result, Err(EngineError::InvalidLayout(_))), "{:?}", step.result);
                prop_assert_eq!(step.after, step.before);
                return Ok(());
            }
            let held = busiest_ever(step.before);
            if layout.reservable < held {
                let refused = EngineError::ReservationsOverQuota {
                    zone: layout.id.clone(),
                    held,
                    quota: layout.reservable,
                };
                prop_assert_eq!(step.result, &Err(refused));
                return Ok(());
            }
            let becomes_counter = matches!(layout.shape, ZoneShape::Counter { .. });
            let shape_changes = step.before.is_counter() != becomes_counter;
            let stranded = |booking: &Booking| {
                shape_changes
                    || match (&booking.spot, &layout.shape) {
                        (Some(spot), ZoneShape::Spots(spots)) => !spots.iter().any(|s| &s.id == spot),
                        _ => false,
                    }
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
                    prop_assert!(strands);
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
                    prop_assert!(zone.live_bookings().any(|b| b.spot.is_none()));
                }
                Err(other) => prop_assert!(false, "unexpected refusal {:?}", other),
            }
            Ok(())
        })?;
    }

    /// `decide` changes nothing, and `execute` applies exactly what `decide`
    /// returns, advancing `seq` once per event; a refused command changes
    /// nothing at all.
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

    /// Re-sending a sensor state, a heartbeat or a service state that is
    /// already in place changes nothing (state-based idempotency).
    #[test]
    fn repeated_sensor_and_service_reports_are_harmless(scenario in scenario()) {
        drive(&scenario, |step| {
            let repeatable = matches!(
                step.command,
                Command::Sense {
                    reading: Reading::Spot { .. },
                    ..
                } | Command::Heartbeat { .. }
                    | Command::SetService { .. }
                    | Command::Relayout { .. }
                    | Command::Extend { .. }
            );
            if repeatable && step.result.is_ok() {
                prop_assert_eq!(step.after.decide(step.command), Ok(Vec::new()));
            }
            Ok(())
        })?;
    }

    /// Entry/exit counts move occupancy only: they never activate, complete
    /// or otherwise touch a booking, except that a unit they free goes to
    /// a waiting reservation.
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
                let allowed = matches!(event, Event::Counted { .. } | Event::BookingPlaced { .. });
                prop_assert!(allowed, "a count caused {:?}", event);
            }
            let held = |zone: &ZoneState| {
                let mut ids: Vec<_> = zone
                    .live_bookings()
                    .filter(|b| b.status == BookingStatus::Active)
                    .map(|b| b.id.clone())
                    .collect();
                ids.sort();
                ids
            };
            prop_assert_eq!(held(step.before), held(step.after));
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
            for booking in step.after.live_bookings() {
                let bytes = encode_stored(booking);
                prop_assert_eq!(&decode_stored::<Booking>(&bytes), &Ok(booking.clone()));
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
// Journals no decide wrote: apply is total
// ---------------------------------------------------------------------------

/// One change to a journal, as a damaged or foreign journal might hold it.
#[derive(Debug, Clone)]
enum Tamper {
    /// The event at the index again, at the end (a confirmation written
    /// twice, a placement replayed after the booking moved on).
    Repeat(prop::sample::Index),
    /// The event at the index is lost.
    Drop(prop::sample::Index),
    /// Two events change places.
    Swap(prop::sample::Index, prop::sample::Index),
    /// A booking event at the index again under a new id: a second
    /// booking on the same spot, a placement of an id that never waited.
    Rename(prop::sample::Index),
    /// A reservation placed on a spot (or unit) of the zone, by position;
    /// the spot may be held already.
    PlaceOn(prop::sample::Index, prop::sample::Index),
    /// A window turned inside out.
    EmptyWindow(prop::sample::Index),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    use prop::sample::Index;
    prop_oneof![
        3 => any::<Index>().prop_map(Tamper::Repeat),
        1 => any::<Index>().prop_map(Tamper::Drop),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Tamper::Swap(a, b)),
        2 => any::<Index>().prop_map(Tamper::Rename),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Tamper::PlaceOn(a, b)),
        1 => any::<Index>().prop_map(Tamper::EmptyWindow),
    ]
}

fn renamed(booking: &Booking, n: usize) -> Booking {
    Booking {
        id: booking_id(&format!("tampered-{n}")),
        ..booking.clone()
    }
}

/// The journal with the tampers done to it, in order.
fn tampered(journal: &[Event], zone: &ZoneState, tampers: &[Tamper]) -> Vec<Event> {
    let mut journal = journal.to_vec();
    let spots: Vec<Option<SpotId>> = if zone.is_counter() {
        vec![None]
    } else {
        zone.spots().into_iter().map(|s| Some(s.id)).collect()
    };
    for (n, tamper) in tampers.iter().enumerate() {
        if journal.is_empty() {
            break;
        }
        let at = |i: &prop::sample::Index| i.index(journal.len());
        match tamper {
            Tamper::Repeat(i) => journal.push(journal[at(i)].clone()),
            Tamper::Drop(i) => {
                journal.remove(at(i));
            }
            Tamper::Swap(a, b) => {
                let (a, b) = (at(a), at(b));
                journal.swap(a, b);
            }
            Tamper::Rename(i) => {
                let event = match &journal[at(i)] {
                    Event::BookingConfirmed(b) => Event::BookingConfirmed(renamed(b, n)),
                    Event::BookingScheduled(b) => Event::BookingScheduled(renamed(b, n)),
                    Event::BookingPlaced { spot, at, .. } => Event::BookingPlaced {
                        id: booking_id(&format!("tampered-{n}")),
                        spot: spot.clone(),
                        at: *at,
                    },
                    other => other.clone(),
                };
                journal.push(event);
            }
            Tamper::PlaceOn(i, spot) => {
                let id = journal[..=at(i)].iter().rev().find_map(|e| match e {
                    Event::BookingScheduled(b) | Event::BookingConfirmed(b) => Some(b.id.clone()),
                    _ => None,
                });
                if let (Some(id), false) = (id, spots.is_empty()) {
                    journal.push(Event::BookingPlaced {
                        id,
                        spot: spots[spot.index(spots.len())].clone(),
                        at: Millis(EPOCH),
                    });
                }
            }
            Tamper::EmptyWindow(i) => {
                let i = at(i);
                match &mut journal[i] {
                    Event::BookingConfirmed(b) | Event::BookingScheduled(b) => {
                        if let Some((s, e)) = b.window() {
                            b.starts_at = Some(e);
                            b.ends_at = Some(s);
                        }
                    }
                    Event::BookingExtended { ends_at, .. } => *ends_at = Millis(i64::MIN),
                    _ => {}
                }
            }
        }
    }
    journal
}

/// What holds whatever the journal: no spot held by two live bookings, a
/// spot shows exactly the booking that holds it, counts are the recount
/// and add up, the quota's index matches the live windows, and the state
/// survives its own snapshot.
fn check_structure(zone: &ZoneState) -> Result<(), TestCaseError> {
    let mut held: BTreeMap<SpotId, BookingId> = BTreeMap::new();
    for booking in zone.live_bookings() {
        match (&booking.spot, zone.is_counter()) {
            (Some(spot), false) if booking.status != BookingStatus::Scheduled => {
                let previous = held.insert(spot.clone(), booking.id.clone());
                prop_assert!(
                    previous.is_none(),
                    "spot {} held by {:?} and {}",
                    spot,
                    previous,
                    booking.id
                );
                let view = zone.spot(spot);
                prop_assert_eq!(view.and_then(|v| v.booking), Some(booking.id.clone()));
            }
            (None, false) => prop_assert_eq!(booking.status, BookingStatus::Scheduled),
            (None, true) => {}
            (spot, counter) => {
                prop_assert!(false, "{} on {:?}, counter={}", booking.id, spot, counter)
            }
        }
        if let Some((s, e)) = booking.window() {
            prop_assert!(s < e, "{} has an empty window", booking.id);
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
    prop_assert_eq!(zone.counts(), &zone.recount());
    check_counts_add_up(zone)?;
    if zone.is_counter() {
        check_counter(zone)?;
    }
    prop_assert_eq!(
        zone.reserved_between(Millis(i64::MIN / 2), Millis(i64::MAX / 2)),
        busiest_ever(zone)
    );
    let restored = ZoneState::restore(zone.snapshot());
    prop_assert_eq!(&restored, zone);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// `apply` is total: whatever a journal holds (events repeated,
    /// dropped, swapped, renamed, placements on held spots, empty
    /// windows), applying it never panics, never puts two live bookings
    /// on one spot, keeps counts and indexes in step, advances the seq
    /// once per event, and replays to the same state twice.
    #[test]
    fn applying_any_journal_never_panics_nor_double_books(
        scenario in scenario(),
        tampers in prop::collection::vec(tamper(), 1..24),
    ) {
        let zones = drive(&scenario, |_| Ok(()))?;
        for zone in zones {
            let journal = tampered(&zone.journal, &zone.state, &tampers);
            let mut replayed = ZoneState::new(facility(), zone.initial.clone());
            for (i, event) in journal.iter().enumerate() {
                let before = replayed.clone();
                let admitted = replayed.admits(event);
                replayed.apply(event);
                prop_assert_eq!(replayed.seq().0, i as u64 + 1);
                if !admitted {
                    let mut unchanged = before.clone();
                    unchanged.replay(replayed.seq(), &Event::Counted { requested: 0, applied: 0 })
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(&replayed, &unchanged, "a refused {:?} changed the zone", event);
                }
                check_structure(&replayed)?;
            }
            let mut again = ZoneState::new(facility(), zone.initial.clone());
            for event in &journal {
                again.apply(event);
            }
            prop_assert_eq!(&again, &replayed);
        }
    }

    /// Format-1 records still decode: every event, booking and snapshot
    /// a format-1 binary could have written (no window, no quota, no
    /// stale spot, no reservation events), written in format 1, decodes to
    /// the value it stands for, and such a snapshot restores to the live
    /// zone.
    #[test]
    fn format_1_records_still_decode_to_the_same_values(scenario in scenario()) {
        use parkme_engine::codec::encode_stored_as_format1;
        drive(&scenario, |step| {
            for event in events(step) {
                if let Some(old) = old_event(event) {
                    let bytes = encode_stored_as_format1(&old);
                    prop_assert_eq!(&decode_stored::<Event>(&bytes), &Ok(event.clone()));
                }
            }
            for booking in step.after.live_bookings() {
                if let Some(old) = old_booking(booking) {
                    let bytes = encode_stored_as_format1(&old);
                    prop_assert_eq!(&decode_stored::<Booking>(&bytes), &Ok(booking.clone()));
                }
            }
            if let Some(old) = old_snapshot(&step.after.snapshot()) {
                let bytes = encode_stored_as_format1(&old);
                let decoded = decode_stored::<ZoneSnapshot>(&bytes);
                prop_assert_eq!(&decoded, &Ok(step.after.snapshot()));
                let restored = ZoneState::restore(decoded.expect("checked above"));
                prop_assert_eq!(&restored, step.after);
            }
            Ok(())
        })?;
    }
}

/// The format-1 shape of a booking, when format 1 could say it.
fn old_booking(b: &Booking) -> Option<parkme_engine::format1::Booking> {
    let representable = b.starts_at.is_none()
        && b.ends_at.is_none()
        && !b.overstay
        && b.status != BookingStatus::Scheduled;
    representable.then_some(())?;
    Some(parkme_engine::format1::Booking {
        id: b.id.clone(),
        facility: b.facility.clone(),
        zone: b.zone.clone(),
        spot: b.spot.clone(),
        kind: b.kind?,
        plate: b.plate.clone(),
        owner: b.owner.clone(),
        status: b.status,
        created_at: b.created_at,
        expires_at: b.expires_at,
        updated_at: b.updated_at,
    })
}

fn old_layout(layout: &ZoneLayout) -> Option<parkme_engine::format1::ZoneLayout> {
    (layout.reservable == 0).then(|| parkme_engine::format1::ZoneLayout {
        id: layout.id.clone(),
        name: layout.name.clone(),
        shape: layout.shape.clone(),
    })
}

fn old_event(event: &Event) -> Option<parkme_engine::format1::Event> {
    use parkme_engine::format1::Event as Old;
    Some(match event.clone() {
        Event::SpotSensed { spot, occupied } => Old::SpotSensed { spot, occupied },
        Event::ServiceChanged {
            spot,
            out_of_service,
        } => Old::ServiceChanged {
            spot,
            out_of_service,
        },
        Event::Counted { requested, applied } => Old::Counted { requested, applied },
        Event::BookingConfirmed(b) => Old::BookingConfirmed(old_booking(&b)?),
        Event::BookingActivated { id, at } => Old::BookingActivated { id, at },
        Event::BookingCompleted { id, at } => Old::BookingCompleted { id, at },
        Event::BookingExpired { id, at } => Old::BookingExpired { id, at },
        Event::BookingCancelled { id, at } => Old::BookingCancelled { id, at },
        Event::Relaid { layout } => Old::Relaid {
            layout: old_layout(&layout)?,
        },
        Event::SpotStale { .. }
        | Event::SpotHeard { .. }
        | Event::BookingScheduled(_)
        | Event::BookingPlaced { .. }
        | Event::BookingOverstayed { .. }
        | Event::BookingExtended { .. } => return None,
    })
}

fn old_snapshot(snapshot: &ZoneSnapshot) -> Option<parkme_engine::format1::ZoneSnapshot> {
    if snapshot.spots.iter().any(|s| s.stale) {
        return None;
    }
    Some(parkme_engine::format1::ZoneSnapshot {
        facility: snapshot.facility.clone(),
        layout: old_layout(&snapshot.layout)?,
        seq: snapshot.seq,
        spots: snapshot
            .spots
            .iter()
            .map(|s| (s.occupied, s.out_of_service))
            .collect(),
        counter_occupied: snapshot.counter_occupied,
        live: snapshot
            .live
            .iter()
            .map(old_booking)
            .collect::<Option<_>>()?,
        clamped: snapshot.clamped,
    })
}

// ---------------------------------------------------------------------------
// Examples: regressions and the contract's promises one by one
// ---------------------------------------------------------------------------

const NOW: Millis = Millis(EPOCH);

/// A spot zone with liveness off, lead 900 s and grace 600 s.
fn spots_zone(spots: &[SpotKind], reservable: u32) -> ZoneState {
    zone_with(spots, reservable, 0)
}

/// A spot zone whose sensors go stale after an hour.
fn live_zone(spots: &[SpotKind]) -> ZoneState {
    zone_with(spots, 0, 3600)
}

fn zone_with(spots: &[SpotKind], reservable: u32, stale_secs: u32) -> ZoneState {
    let generated = ZoneGen {
        shape: ShapeGen::Spots(spots.iter().copied().enumerate().collect()),
        quota: 0.0,
    };
    let mut layout = layout(0, &generated);
    layout.reservable = reservable;
    let mut zone = ZoneState::new(facility(), layout);
    zone.start(
        ZoneParams {
            stale_secs,
            lead_secs: 900,
            grace_secs: 600,
        },
        NOW,
    );
    zone
}

fn one_spot_zone() -> ZoneState {
    spots_zone(&[SpotKind::Standard, SpotKind::Ev], 0)
}

fn counter(capacity: u32, reservable: u32) -> ZoneState {
    let layout = ZoneLayout {
        id: zone_id(0),
        name: "surface".into(),
        shape: ZoneShape::Counter {
            capacity,
            kind: SpotKind::Standard,
        },
        reservable,
    };
    let mut zone = ZoneState::new(facility(), layout);
    zone.start(ZoneParams::default(), NOW);
    zone
}

fn request(id: &str, now: Millis) -> BookingRequest {
    BookingRequest {
        id: booking_id(id),
        owner: owner(),
        plate: plate(0),
        kind: None,
        spot: None,
        hold_seconds: 60,
        starts_at: None,
        ends_at: None,
        now,
    }
}

fn book(id: &str, spot: usize, now: i64) -> Command {
    Command::Book(BookingRequest {
        spot: Some(spot_id(0, spot)),
        ..request(id, Millis(now))
    })
}

fn reserve(id: &str, starts_at: Millis, ends_at: Millis) -> Command {
    Command::Book(BookingRequest {
        starts_at: Some(starts_at),
        ends_at: Some(ends_at),
        ..request(id, NOW)
    })
}

fn hours(h: i64) -> Millis {
    Millis(EPOCH + h * 3_600_000)
}

fn status(zone: &ZoneState, id: &str) -> Option<BookingStatus> {
    zone.booking(&booking_id(id)).map(|b| b.status)
}

fn state(zone: &ZoneState, spot: usize) -> Option<SpotState> {
    zone.spot(&spot_id(0, spot)).map(|s| s.state)
}

fn tick(zone: &mut ZoneState, now: Millis) -> Vec<Event> {
    zone.execute(&Command::Tick { now })
        .expect("a tick is never refused")
        .into_iter()
        .map(|(e, _)| e)
        .collect()
}

fn sense(zone: &mut ZoneState, spot: usize, occupied: bool, now: Millis) -> Vec<Event> {
    let command = Command::Sense {
        reading: Reading::Spot {
            spot: spot_id(0, spot),
            occupied,
        },
        now,
    };
    zone.execute(&command)
        .expect("a known spot")
        .into_iter()
        .map(|(e, _)| e)
        .collect()
}

/// Runs a command that must be refused with `error` and change nothing.
fn refused(zone: &mut ZoneState, command: &Command, error: EngineError) {
    let before = zone.clone();
    assert_eq!(zone.execute(command).map(|_| ()), Err(error));
    assert_eq!(zone, &before);
    assert_eq!(zone.seq(), before.seq());
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
    assert_eq!(state(&zone, 1), Some(SpotState::Reserved));
}

#[test]
fn a_silent_spot_goes_unknown_and_its_next_reading_gives_the_reported_state() {
    let mut zone = live_zone(&[SpotKind::Standard, SpotKind::Standard]);
    // Spot 1 keeps talking; spot 0 falls silent.
    sense(&mut zone, 0, true, NOW);
    for minute in 1..=70 {
        let now = secs(NOW, minute * 60);
        let command = Command::Heartbeat {
            spot: spot_id(0, 1),
            now,
        };
        assert_eq!(zone.execute(&command).map(|e| e.len()), Ok(0));
        if zone.next_deadline().is_some_and(|at| at <= now) {
            tick(&mut zone, now);
        }
    }
    assert_eq!(state(&zone, 0), Some(SpotState::Unknown));
    assert_eq!(state(&zone, 1), Some(SpotState::Available));
    let counts = zone.counts().overall;
    assert_eq!((counts.unknown, counts.available, counts.total), (1, 1, 2));
    // Never given to a booking.
    refused(
        &mut zone,
        &book("B1", 0, hours(2).0),
        EngineError::SpotNotAvailable(spot_id(0, 0)),
    );
    // The next reading gives the reported state, even an unchanged one.
    let events = sense(&mut zone, 0, true, hours(2));
    assert_eq!(
        events,
        vec![Event::SpotSensed {
            spot: spot_id(0, 0),
            occupied: true
        }]
    );
    assert_eq!(state(&zone, 0), Some(SpotState::Occupied));
}

#[test]
fn reserved_and_out_of_service_spots_keep_their_state_when_silent() {
    let mut zone = live_zone(&[SpotKind::Standard, SpotKind::Standard]);
    assert!(zone.execute(&book("B1", 0, EPOCH)).is_ok());
    let service = Command::SetService {
        spot: spot_id(0, 1),
        out_of_service: true,
        now: NOW,
    };
    assert!(zone.execute(&service).is_ok());
    // Hold 60 s: the no-show expires at the first tick, staleness later.
    let events = tick(&mut zone, secs(NOW, 3700));
    assert!(events.iter().any(|e| matches!(e, Event::SpotStale { .. })));
    assert_eq!(state(&zone, 1), Some(SpotState::OutOfService));
    // Spot 0 was released by the no-show and is silent: unknown.
    assert_eq!(status(&zone, "B1"), None);
    assert_eq!(state(&zone, 0), Some(SpotState::Unknown));
    let mut held = live_zone(&[SpotKind::Standard]);
    let long = Command::Book(BookingRequest {
        hold_seconds: 86_400,
        spot: Some(spot_id(0, 0)),
        ..request("B2", NOW)
    });
    assert!(held.execute(&long).is_ok());
    let events = tick(&mut held, secs(NOW, 3700));
    assert_eq!(
        events,
        vec![Event::SpotStale {
            spot: spot_id(0, 0)
        }]
    );
    assert_eq!(state(&held, 0), Some(SpotState::Reserved));
}

#[test]
fn a_restart_starts_every_clock_afresh() {
    let mut zone = live_zone(&[SpotKind::Standard]);
    let mut restarted = ZoneState::restore(zone.snapshot());
    restarted.start(zone.params(), hours(5));
    // Silent for five hours before the restart, yet live after it.
    assert_eq!(tick(&mut restarted, hours(5)), Vec::new());
    assert_eq!(state(&restarted, 0), Some(SpotState::Available));
    assert!(restarted.next_deadline().is_some_and(|at| at >= hours(6)));
    // The zone that kept running saw the silence.
    assert!(!tick(&mut zone, hours(5)).is_empty());
    assert_eq!(state(&zone, 0), Some(SpotState::Unknown));
}

#[test]
fn counter_zones_have_no_liveness() {
    let mut zone = counter(5, 0);
    let beat = Command::Heartbeat {
        spot: spot_id(0, 0),
        now: NOW,
    };
    refused(&mut zone, &beat, EngineError::WrongZoneShape("counter"));
    assert_eq!(zone.next_deadline(), None);
    assert_eq!(tick(&mut zone, hours(100)), Vec::new());
}

#[test]
fn a_reservation_is_scheduled_then_takes_a_spot_at_lead_time() {
    let mut zone = spots_zone(&[SpotKind::Standard, SpotKind::Ev], 1);
    let applied = zone
        .execute(&reserve("R1", hours(2), hours(4)))
        .expect("fits the quota");
    let booking = applied[0].1.booking.clone().expect("the reservation");
    assert_eq!(booking.status, BookingStatus::Scheduled);
    assert_eq!(booking.spot, None);
    assert_eq!(booking.starts_at, Some(hours(2)));
    assert_eq!(booking.ends_at, Some(hours(4)));
    assert_eq!(booking.expires_at, secs(hours(2), 60));
    // Lead time 900 s before the start.
    let lead = Millis(hours(2).0 - 900_000);
    assert_eq!(zone.next_deadline(), Some(lead));
    assert_eq!(tick(&mut zone, Millis(lead.0 - 1)), Vec::new());
    let events = tick(&mut zone, lead);
    assert_eq!(
        events,
        vec![Event::BookingPlaced {
            id: booking_id("R1"),
            spot: Some(spot_id(0, 0)),
            at: lead
        }]
    );
    assert_eq!(status(&zone, "R1"), Some(BookingStatus::Confirmed));
    assert_eq!(state(&zone, 0), Some(SpotState::Reserved));
    // The driver arrives: ACTIVE as any booking.
    sense(&mut zone, 0, true, hours(2));
    assert_eq!(status(&zone, "R1"), Some(BookingStatus::Active));
}

#[test]
fn a_full_quota_refuses_overlapping_windows_only() {
    let mut zone = spots_zone(&[SpotKind::Standard; 3], 2);
    assert!(zone.execute(&reserve("R1", hours(1), hours(3))).is_ok());
    assert!(zone.execute(&reserve("R2", hours(2), hours(4))).is_ok());
    refused(
        &mut zone,
        &reserve("R3", Millis(hours(2).0 + 1), hours(5)),
        EngineError::NoCapacity,
    );
    // Windows that do not overlap never compete; touching is not overlapping.
    assert!(zone.execute(&reserve("R4", hours(3), hours(5))).is_ok());
    assert!(zone.execute(&reserve("R5", hours(4), hours(6))).is_ok());
    assert_eq!(zone.reserved_between(hours(0), hours(10)), 2);
    // Cancelling a scheduled reservation frees its share at once.
    let cancel = Command::Cancel {
        booking: booking_id("R2"),
        now: NOW,
    };
    assert!(zone.execute(&cancel).is_ok());
    assert!(
        zone.execute(&reserve("R3", Millis(hours(2).0 + 1), hours(3)))
            .is_ok()
    );
    // No quota at all: every reservation is refused.
    let mut none = spots_zone(&[SpotKind::Standard], 0);
    refused(
        &mut none,
        &reserve("R1", hours(1), hours(2)),
        EngineError::NoCapacity,
    );
}

#[test]
fn a_waiting_reservation_takes_the_first_freed_spot_before_any_immediate_booking() {
    let mut zone = spots_zone(&[SpotKind::Standard], 1);
    sense(&mut zone, 0, true, NOW);
    assert!(zone.execute(&reserve("R1", hours(1), hours(2))).is_ok());
    // Lead time: no spot free, it waits.
    let lead = Millis(hours(1).0 - 900_000);
    assert_eq!(tick(&mut zone, lead), Vec::new());
    assert!(zone.next_deadline().is_none_or(|at| at > lead));
    // The car leaves: in the same decide the spot goes to the reservation.
    let events = sense(&mut zone, 0, false, secs(lead, 10));
    assert_eq!(
        events,
        vec![
            Event::SpotSensed {
                spot: spot_id(0, 0),
                occupied: false
            },
            Event::BookingPlaced {
                id: booking_id("R1"),
                spot: Some(spot_id(0, 0)),
                at: secs(lead, 10)
            }
        ]
    );
    refused(
        &mut zone,
        &Command::Book(request("B1", secs(lead, 11))),
        EngineError::NoSpotAvailable,
    );
}

#[test]
fn an_immediate_booking_lets_a_due_reservation_go_first() {
    let mut zone = spots_zone(&[SpotKind::Standard, SpotKind::Standard], 1);
    assert!(zone.execute(&reserve("R1", hours(1), hours(2))).is_ok());
    // Past the lead time, before the zone's timer fired.
    let late = Millis(hours(1).0 - 60_000);
    let applied = zone
        .execute(&Command::Book(request("B1", late)))
        .expect("one spot left");
    let events: Vec<Event> = applied.into_iter().map(|(e, _)| e).collect();
    assert!(matches!(&events[0], Event::BookingPlaced { id, .. } if id == &booking_id("R1")));
    assert!(matches!(&events[1], Event::BookingConfirmed(b) if b.spot == Some(spot_id(0, 1))));
}

#[test]
fn a_reservation_still_waiting_at_its_no_show_deadline_expires() {
    let mut zone = spots_zone(&[SpotKind::Standard], 1);
    sense(&mut zone, 0, true, NOW);
    assert!(zone.execute(&reserve("R1", hours(1), hours(2))).is_ok());
    tick(&mut zone, Millis(hours(1).0 - 900_000));
    let deadline = secs(hours(1), 60);
    assert_eq!(zone.next_deadline(), Some(deadline));
    let events = tick(&mut zone, deadline);
    assert_eq!(
        events,
        vec![Event::BookingExpired {
            id: booking_id("R1"),
            at: deadline
        }]
    );
}

#[test]
fn a_restart_honours_every_lead_time_that_passed_while_down() {
    let mut zone = spots_zone(&[SpotKind::Standard; 3], 3);
    for (i, minutes) in [0, 10, 14].into_iter().enumerate() {
        let id = format!("R{i}");
        let starts = secs(hours(1), minutes * 60);
        assert!(zone.execute(&reserve(&id, starts, hours(3))).is_ok());
    }
    // Down from before the first lead time until after the third.
    let back = Millis(hours(1).0 - 1);
    let mut restarted = ZoneState::restore(zone.snapshot());
    restarted.start(zone.params(), back);
    assert!(restarted.next_deadline().is_some_and(|at| at <= back));
    let placed = tick(&mut restarted, back)
        .into_iter()
        .filter(|e| matches!(e, Event::BookingPlaced { .. }))
        .count();
    assert_eq!(placed, 3);
}

#[test]
fn counter_zones_reserve_units() {
    let mut zone = counter(2, 1);
    assert!(zone.execute(&reserve("R1", hours(1), hours(2))).is_ok());
    refused(
        &mut zone,
        &reserve("R2", hours(1), hours(2)),
        EngineError::NoCapacity,
    );
    let events = tick(&mut zone, Millis(hours(1).0 - 900_000));
    assert!(matches!(
        &events[..],
        [Event::BookingPlaced { spot: None, .. }]
    ));
    assert_eq!(zone.counts().overall.reserved, 1);
    assert_eq!(zone.counts().overall.available, 1);
    let other_kind = Command::Book(BookingRequest {
        kind: Some(SpotKind::Ev),
        starts_at: Some(hours(3)),
        ends_at: Some(hours(4)),
        ..request("R3", NOW)
    });
    refused(&mut zone, &other_kind, EngineError::NoCapacity);
}

#[test]
fn an_active_booking_overstays_once_after_the_grace_period() {
    let mut zone = spots_zone(&[SpotKind::Standard], 0);
    let stay = Command::Book(BookingRequest {
        spot: Some(spot_id(0, 0)),
        ends_at: Some(hours(1)),
        ..request("B1", NOW)
    });
    assert!(zone.execute(&stay).is_ok());
    sense(&mut zone, 0, true, secs(NOW, 30));
    let due = secs(hours(1), 600);
    assert_eq!(zone.next_deadline(), Some(due));
    assert_eq!(tick(&mut zone, Millis(due.0 - 1)), Vec::new());
    assert_eq!(
        tick(&mut zone, due),
        vec![Event::BookingOverstayed {
            id: booking_id("B1"),
            at: due
        }]
    );
    assert_eq!(
        zone.booking(&booking_id("B1")).map(|b| b.overstay),
        Some(true)
    );
    assert_eq!(zone.spot(&spot_id(0, 0)).map(|s| s.overstay), Some(true));
    // Counted once: later ticks say nothing more.
    assert!(zone.next_deadline().is_none_or(|at| at > due));
    assert_eq!(tick(&mut zone, hours(3)), Vec::new());
    // An extension into the future ends the overstay.
    let extend = Command::Extend {
        booking: booking_id("B1"),
        ends_at: hours(4),
        now: hours(3),
    };
    assert!(zone.execute(&extend).is_ok());
    assert_eq!(zone.spot(&spot_id(0, 0)).map(|s| s.overstay), Some(false));
}

#[test]
fn bad_windows_get_their_errors_and_change_nothing() {
    let mut zone = spots_zone(&[SpotKind::Standard; 2], 2);
    let cases = [
        (NOW, hours(1), WindowError::StartsInPast),
        (Millis(EPOCH - 1), hours(1), WindowError::StartsInPast),
        (
            Millis(EPOCH + MAX_LEAD_MS + 1),
            Millis(EPOCH + MAX_LEAD_MS + 2),
            WindowError::StartsTooFarAhead,
        ),
        (hours(2), hours(1), WindowError::EndsBeforeStart),
        (hours(2), hours(2), WindowError::EndsBeforeStart),
        (
            hours(1),
            Millis(hours(1).0 + MAX_WINDOW_MS + 1),
            WindowError::TooLong,
        ),
    ];
    for (starts, ends, error) in cases {
        refused(
            &mut zone,
            &reserve("R1", starts, ends),
            EngineError::InvalidWindow(error),
        );
    }
    let no_end = Command::Book(BookingRequest {
        starts_at: Some(hours(1)),
        ..request("R1", NOW)
    });
    refused(
        &mut zone,
        &no_end,
        EngineError::InvalidWindow(WindowError::MissingEnd),
    );
    let past_stay = Command::Book(BookingRequest {
        ends_at: Some(NOW),
        ..request("B1", NOW)
    });
    refused(
        &mut zone,
        &past_stay,
        EngineError::InvalidWindow(WindowError::EndsInPast),
    );
    let named = Command::Book(BookingRequest {
        spot: Some(spot_id(0, 0)),
        starts_at: Some(hours(1)),
        ends_at: Some(hours(2)),
        ..request("R1", NOW)
    });
    refused(&mut zone, &named, EngineError::ReservationNamesSpot);
}

#[test]
fn extensions_are_checked_against_the_window_and_the_quota() {
    let mut zone = spots_zone(&[SpotKind::Standard; 2], 1);
    assert!(zone.execute(&reserve("R1", hours(1), hours(2))).is_ok());
    assert!(zone.execute(&reserve("R2", hours(3), hours(4))).is_ok());
    let extend = |ends_at: Millis, now: Millis| Command::Extend {
        booking: booking_id("R1"),
        ends_at,
        now,
    };
    refused(
        &mut zone,
        &extend(NOW, NOW),
        EngineError::InvalidWindow(WindowError::EndsInPast),
    );
    refused(
        &mut zone,
        &extend(hours(1), NOW),
        EngineError::InvalidWindow(WindowError::EndsBeforeStart),
    );
    refused(
        &mut zone,
        &extend(Millis(hours(3).0 + 1), NOW),
        EngineError::NoCapacity,
    );
    // Up to the next reservation's start fits, and shortening always does.
    assert!(zone.execute(&extend(hours(3), NOW)).is_ok());
    assert!(zone.execute(&extend(Millis(hours(1).0 + 1), NOW)).is_ok());
    // An ended booking is no longer the zone's: the owner of the booking
    // table answers `not_live` from the stored status.
    let cancel = Command::Cancel {
        booking: booking_id("R2"),
        now: NOW,
    };
    assert!(zone.execute(&cancel).is_ok());
    let ended = Command::Extend {
        booking: booking_id("R2"),
        ends_at: hours(5),
        now: NOW,
    };
    refused(
        &mut zone,
        &ended,
        EngineError::UnknownBooking(booking_id("R2")),
    );
    assert_eq!(
        EngineError::NotLive(BookingStatus::Cancelled).code(),
        "not_live"
    );
}

#[test]
fn a_quota_is_never_negative_nor_larger_than_the_zone() {
    assert!(matches!(
        ZoneLayout::parse_reservable(&zone_id(0), -1),
        Err(EngineError::InvalidLayout(_))
    ));
    assert!(matches!(
        ZoneLayout::parse_reservable(&zone_id(0), i64::from(u32::MAX) + 1),
        Err(EngineError::InvalidLayout(_))
    ));
    assert_eq!(ZoneLayout::parse_reservable(&zone_id(0), 3), Ok(3));
    let mut zone = spots_zone(&[SpotKind::Standard; 2], 1);
    let mut too_many = zone.layout().clone();
    too_many.reservable = 3;
    assert!(too_many.check_reservable().is_err());
    let relayout = Command::Relayout {
        layout: too_many.clone(),
        now: NOW,
    };
    let before = zone.clone();
    assert!(matches!(
        zone.execute(&relayout),
        Err(EngineError::InvalidLayout(_))
    ));
    assert_eq!(zone, before);
    let declared = parkme_engine::FacilityLayout::new(
        facility(),
        "F1".into(),
        "UTC".into(),
        None,
        vec![too_many],
    );
    assert!(matches!(declared, Err(EngineError::InvalidLayout(_))));
    // Lowering the quota below the reservations it holds is a conflict.
    assert!(zone.execute(&reserve("R1", hours(1), hours(2))).is_ok());
    let mut lower = zone.layout().clone();
    lower.reservable = 0;
    refused(
        &mut zone,
        &Command::Relayout {
            layout: lower,
            now: NOW,
        },
        EngineError::ReservationsOverQuota {
            zone: zone_id(0),
            held: 1,
            quota: 0,
        },
    );
}

#[test]
fn a_journal_confirming_a_live_booking_again_changes_nothing() {
    let mut zone = one_spot_zone();
    let applied = zone.execute(&book("b1", 0, EPOCH)).expect("spot 0 is free");
    let confirmed = applied[0].0.clone();
    assert!(matches!(confirmed, Event::BookingConfirmed(_)));
    let once = zone.clone();

    // The same confirmation again (a journal written twice): a no-op.
    assert!(!zone.admits(&confirmed));
    let effect = zone.apply(&confirmed);
    assert_eq!(effect, parkme_engine::zone::Effect::default());
    assert_eq!(zone.seq(), once.seq().next());
    assert_eq!(zone.snapshot().live, once.snapshot().live);
    assert_eq!(zone.counts(), once.counts());

    // The same booking on the other spot: still one booking, on spot 0.
    let Event::BookingConfirmed(mut moved) = confirmed.clone() else {
        unreachable!("checked above")
    };
    moved.spot = Some(spot_id(0, 1));
    zone.apply(&Event::BookingConfirmed(moved));
    assert_eq!(state(&zone, 0), Some(SpotState::Reserved));
    assert_eq!(state(&zone, 1), Some(SpotState::Available));
    assert_eq!(
        zone.booking(&booking_id("b1")).and_then(|b| b.spot.clone()),
        Some(spot_id(0, 0))
    );
    assert_eq!(zone.counts(), &zone.recount());
}

#[test]
fn a_journal_giving_a_held_spot_to_a_second_booking_is_skipped() {
    let mut zone = one_spot_zone();
    let applied = zone.execute(&book("b1", 0, EPOCH)).expect("spot 0 is free");
    let Event::BookingConfirmed(first) = applied[0].0.clone() else {
        unreachable!("an immediate booking is confirmed")
    };
    let second = Booking {
        id: booking_id("b2"),
        ..first
    };
    zone.apply(&Event::BookingConfirmed(second));
    assert_eq!(status(&zone, "b2"), None);
    assert_eq!(
        zone.spot(&spot_id(0, 0)).and_then(|s| s.booking),
        Some(booking_id("b1"))
    );

    // A reservation placed on the held spot keeps waiting.
    let mut zone = spots_zone(&[SpotKind::Standard], 1);
    zone.execute(&book("b1", 0, EPOCH)).expect("spot 0 is free");
    zone.execute(&reserve("r1", hours(2), hours(3)))
        .expect("the quota has room");
    let place = Event::BookingPlaced {
        id: booking_id("r1"),
        spot: Some(spot_id(0, 0)),
        at: NOW,
    };
    assert!(!zone.admits(&place));
    zone.apply(&place);
    assert_eq!(status(&zone, "r1"), Some(BookingStatus::Scheduled));
    assert_eq!(
        zone.spot(&spot_id(0, 0)).and_then(|s| s.booking),
        Some(booking_id("b1"))
    );
}

#[test]
fn a_damaged_snapshot_never_restores_two_live_bookings_on_one_spot() {
    let mut zone = spots_zone(&[SpotKind::Standard, SpotKind::Standard], 1);
    zone.execute(&book("b1", 0, EPOCH)).expect("spot 0 is free");
    zone.execute(&reserve("r1", hours(2), hours(3)))
        .expect("the quota has room");
    let mut snapshot = zone.snapshot();
    let first = snapshot
        .live
        .iter()
        .find(|b| b.id == booking_id("b1"))
        .cloned()
        .expect("b1 is live");
    // A second booking on the same spot, created later; one on a spot the
    // layout lacks; a reservation holding a spot; a window ending first.
    snapshot.live.push(Booking {
        id: booking_id("b2"),
        created_at: Millis(first.created_at.0 + 1),
        ..first.clone()
    });
    snapshot.live.push(Booking {
        id: booking_id("b3"),
        spot: Some(SpotId::parse("nowhere").expect("id")),
        ..first.clone()
    });
    let scheduled = snapshot
        .live
        .iter()
        .find(|b| b.id == booking_id("r1"))
        .cloned()
        .expect("r1 is live");
    snapshot.live.push(Booking {
        id: booking_id("r2"),
        spot: Some(spot_id(0, 1)),
        ..scheduled.clone()
    });
    snapshot.live.push(Booking {
        id: booking_id("r3"),
        ends_at: scheduled.starts_at,
        ..scheduled
    });
    let restored = ZoneState::restore(snapshot);
    for dropped in ["b2", "b3", "r2", "r3"] {
        assert_eq!(status(&restored, dropped), None, "{dropped} is left out");
    }
    assert_eq!(status(&restored, "b1"), Some(BookingStatus::Confirmed));
    assert_eq!(status(&restored, "r1"), Some(BookingStatus::Scheduled));
    assert_eq!(
        restored.spot(&spot_id(0, 0)).and_then(|s| s.booking),
        Some(booking_id("b1"))
    );
    assert_eq!(restored.counts(), &restored.recount());
    // What is left is a state the engine writes: it round-trips.
    assert_eq!(ZoneState::restore(restored.snapshot()), restored);
}
