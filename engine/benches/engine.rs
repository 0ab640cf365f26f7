//! Throughput of the engine core: sensor events (with sensor liveness on,
//! as served, and off), entry/exit counts, bookings, advance reservations
//! against zones holding 1k, 10k and 100k of them, and snapshot
//! encode/decode.
//!
//! Run with
//! `cargo bench -p parkme-engine --bench engine -- --warm-up-time 1 --measurement-time 3`.
//! The target is at least 2M sensor events per second per core through
//! `ZoneState::execute(Command::Sense)`, and a reservation request whose
//! cost grows with the logarithm of the reservations the zone holds.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use parkme_engine::codec::{decode_stored, encode_stored};
use parkme_engine::{
    BookingId, BookingRequest, Command, Event, FacilityId, Millis, Plate, SpotId, SpotKind,
    SpotLayout, UserId, ZoneId, ZoneLayout, ZoneParams, ZoneShape, ZoneSnapshot, ZoneState,
};

const NOW: Millis = Millis(1_700_000_000_000);

fn spot_zone(count: usize) -> ZoneState {
    let kinds = [
        SpotKind::Standard,
        SpotKind::Standard,
        SpotKind::Standard,
        SpotKind::Compact,
        SpotKind::Ev,
        SpotKind::Accessible,
    ];
    let spots = (0..count)
        .map(|i| SpotLayout {
            id: SpotId::parse(&format!("P1-{i:05}")).expect("valid spot id"),
            kind: kinds[i % kinds.len()],
        })
        .collect();
    let layout = ZoneLayout {
        id: ZoneId::parse("P1").expect("valid zone id"),
        name: "level 1".into(),
        shape: ZoneShape::Spots(spots),
        reservable: count as u32,
    };
    let mut zone = ZoneState::new(FacilityId::parse("F1").expect("valid facility id"), layout);
    // As served: liveness on (an hour), contract defaults.
    zone.start(ZoneParams::default(), NOW);
    zone
}

fn counter_zone(capacity: u32) -> ZoneState {
    let layout = ZoneLayout {
        id: ZoneId::parse("P2").expect("valid zone id"),
        name: "surface".into(),
        shape: ZoneShape::Counter {
            capacity,
            kind: SpotKind::Standard,
        },
        reservable: 0,
    };
    ZoneState::new(FacilityId::parse("F1").expect("valid facility id"), layout)
}

fn spot_ids(zone: &ZoneState) -> Vec<SpotId> {
    zone.spots().into_iter().map(|s| s.id).collect()
}

/// Every spot reported occupied, then every spot reported vacant: each
/// command changes the spot's state (no idempotent no-ops).
fn sense_commands(zone: &ZoneState) -> Vec<Command> {
    let ids = spot_ids(zone);
    [true, false]
        .into_iter()
        .flat_map(|occupied| {
            ids.iter().map(move |spot| Command::Sense {
                spot: spot.clone(),
                occupied,
                now: NOW,
            })
        })
        .collect()
}

fn request(id: &BookingId, spot: Option<SpotId>) -> BookingRequest {
    BookingRequest {
        id: id.clone(),
        owner: UserId::parse("user-1").expect("valid user id"),
        plate: Plate::parse("AB123CD").expect("valid plate"),
        kind: None,
        spot,
        hold_seconds: 900,
        starts_at: None,
        ends_at: None,
        now: NOW,
    }
}

fn booking_ids(n: usize) -> Vec<BookingId> {
    (0..n)
        .map(|i| BookingId::parse(&format!("bk-{i:08}")).expect("valid booking id"))
        .collect()
}

fn sensors(c: &mut Criterion) {
    let mut group = c.benchmark_group("sense");
    // Each benchmark starts from an all-vacant zone, so that every command
    // (and every full pass over `commands`) really changes state.
    let vacant = spot_zone(1_000);
    let commands = sense_commands(&vacant);

    group.throughput(Throughput::Elements(1));
    group.bench_function("execute_1000_spots", |b| {
        let mut zone = vacant.clone();
        let mut next = commands.iter().cycle();
        b.iter(|| {
            let command = next.next().expect("cycle is endless");
            black_box(zone.execute(black_box(command)).expect("sense succeeds"));
        });
    });

    // The same without liveness (`PARKME_SENSOR_STALE_SECS=0`).
    let mut unwatched = vacant.clone();
    unwatched.start(
        ZoneParams {
            stale_secs: 0,
            ..ZoneParams::default()
        },
        NOW,
    );
    group.bench_function("execute_1000_spots_liveness_off", |b| {
        let mut zone = unwatched.clone();
        let mut next = commands.iter().cycle();
        b.iter(|| {
            let command = next.next().expect("cycle is endless");
            black_box(zone.execute(black_box(command)).expect("sense succeeds"));
        });
    });

    // A heartbeat of a live spot: the hearing clock only.
    let beats: Vec<Command> = spot_ids(&vacant)
        .into_iter()
        .map(|spot| Command::Heartbeat { spot, now: NOW })
        .collect();
    group.bench_function("heartbeat_1000_spots", |b| {
        let mut zone = vacant.clone();
        let mut next = beats.iter().cycle();
        b.iter(|| {
            let command = next.next().expect("cycle is endless");
            black_box(
                zone.execute(black_box(command))
                    .expect("heartbeat succeeds"),
            );
        });
    });

    group.throughput(Throughput::Elements(commands.len() as u64));
    group.bench_function("execute_batch_2000", |b| {
        let mut zone = vacant.clone();
        b.iter(|| {
            for command in &commands {
                black_box(zone.execute(black_box(command)).expect("sense succeeds"));
            }
        });
    });

    // The replay path: events already decided, applied in order.
    let events: Vec<Event> = {
        let mut probe = vacant.clone();
        commands
            .iter()
            .flat_map(|c| probe.execute(c).expect("sense succeeds"))
            .map(|(event, _)| event)
            .collect()
    };
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("apply_batch_2000", |b| {
        let mut zone = vacant.clone();
        b.iter(|| {
            for event in &events {
                black_box(zone.apply(black_box(event)));
            }
        });
    });

    // Re-sent states decide to nothing: the cost of an idempotent report.
    let resent = &commands[commands.len() / 2..];
    group.throughput(Throughput::Elements(resent.len() as u64));
    group.bench_function("decide_unchanged_batch_1000", |b| {
        b.iter(|| {
            for command in resent {
                black_box(vacant.decide(black_box(command)).expect("sense succeeds"));
            }
        });
    });
    group.finish();
}

fn counts(c: &mut Criterion) {
    let mut group = c.benchmark_group("count");
    let mut zone = counter_zone(1_000_000);
    let commands: Vec<Command> = [1, -1]
        .into_iter()
        .map(|delta| Command::Count { delta, now: NOW })
        .collect();
    group.throughput(Throughput::Elements(1));
    group.bench_function("execute", |b| {
        let mut next = commands.iter().cycle();
        b.iter(|| {
            let command = next.next().expect("cycle is endless");
            black_box(zone.execute(black_box(command)).expect("count succeeds"));
        });
    });
    group.finish();
}

fn bookings(c: &mut Criterion) {
    let mut group = c.benchmark_group("booking");

    // Book any spot, then cancel it: one booking per iteration.
    let mut zone = spot_zone(1_000);
    let id = &booking_ids(1)[0];
    let book = Command::Book(request(id, None));
    let cancel = Command::Cancel {
        booking: id.clone(),
        now: NOW,
    };
    group.throughput(Throughput::Elements(1));
    group.bench_function("book_then_cancel_1000_spots", |b| {
        b.iter(|| {
            black_box(zone.execute(black_box(&book)).expect("a spot is free"));
            black_box(zone.execute(black_box(&cancel)).expect("cancel succeeds"));
        });
    });

    // Fill a 2,500-spot zone, one booking per spot, from empty to full.
    let empty = spot_zone(2_500);
    let fill: Vec<Command> = booking_ids(2_500)
        .iter()
        .map(|id| Command::Book(request(id, None)))
        .collect();
    group.throughput(Throughput::Elements(fill.len() as u64));
    group.bench_function("fill_2500_spots", |b| {
        b.iter_batched(
            || empty.clone(),
            |mut zone| {
                for command in &fill {
                    black_box(zone.execute(black_box(command)).expect("a spot is free"));
                }
                zone
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

/// A 2,500-spot zone mid-day: a third occupied, a fifth booked.
fn busy_zone() -> ZoneState {
    let mut zone = spot_zone(2_500);
    for (i, spot) in spot_ids(&zone).into_iter().enumerate() {
        if i % 3 == 0 {
            let sense = Command::Sense {
                spot,
                occupied: true,
                now: NOW,
            };
            zone.execute(&sense).expect("sense succeeds");
        }
    }
    for id in booking_ids(500) {
        zone.execute(&Command::Book(request(&id, None)))
            .expect("a spot is free");
    }
    zone
}

const HOUR_MS: i64 = 3_600_000;

/// A reservation of one hour starting `offset_ms` after the first hour.
fn reservation(id: &BookingId, offset_ms: i64) -> Command {
    let starts_at = Millis(NOW.0 + HOUR_MS + offset_ms);
    Command::Book(BookingRequest {
        starts_at: Some(starts_at),
        ends_at: Some(Millis(starts_at.0 + HOUR_MS)),
        ..request(id, None)
    })
}

/// Spreads the `i`-th of `n` windows over 29 days, in a scrambled order.
fn spread(i: usize, n: usize) -> i64 {
    let span = 29 * 24 * HOUR_MS;
    let scrambled = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % n as u64;
    (scrambled as i64) * (span / n as i64)
}

/// A 1,000-spot zone with a quota of 1,000 holding `n` one-hour
/// reservations spread over four weeks (a few hundred overlap at most).
fn reserved_zone(n: usize) -> ZoneState {
    let mut zone = spot_zone(1_000);
    for (i, id) in booking_ids(n).iter().enumerate() {
        zone.execute(&reservation(id, spread(i, n)))
            .expect("the quota holds them");
    }
    zone
}

fn reservations(c: &mut Criterion) {
    let mut group = c.benchmark_group("reservation");
    group.throughput(Throughput::Elements(1));
    for n in [1_000, 10_000, 100_000] {
        let mut zone = reserved_zone(n);
        let id = BookingId::parse("new-reservation").expect("valid booking id");
        let cancel = Command::Cancel {
            booking: id.clone(),
            now: NOW,
        };
        // Requests land all over the four weeks, among the others.
        let requests: Vec<Command> = (0..64)
            .map(|i| reservation(&id, spread(i * 7 + 3, 64)))
            .collect();
        group.bench_function(format!("reserve_then_cancel_{n}_held"), |b| {
            let mut next = requests.iter().cycle();
            b.iter(|| {
                let request = next.next().expect("cycle is endless");
                black_box(zone.execute(black_box(request)).expect("fits the quota"));
                black_box(zone.execute(black_box(&cancel)).expect("cancel succeeds"));
            });
        });
        group.bench_function(format!("decide_reservation_{n}_held"), |b| {
            let mut next = requests.iter().cycle();
            b.iter(|| {
                let request = next.next().expect("cycle is endless");
                black_box(zone.decide(black_box(request)).expect("fits the quota"));
            });
        });
    }
    group.finish();
}

fn snapshots(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_2500_spots");
    let zone = busy_zone();
    let snapshot = zone.snapshot();
    let bytes = encode_stored(&snapshot);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("take", |b| b.iter(|| black_box(zone.snapshot())));
    group.bench_function("encode", |b| {
        b.iter(|| black_box(encode_stored(black_box(&snapshot))))
    });
    group.bench_function("decode", |b| {
        b.iter(|| black_box(decode_stored::<ZoneSnapshot>(black_box(&bytes)).expect("decodes")))
    });
    group.bench_function("restore", |b| {
        b.iter_batched(
            || snapshot.clone(),
            |snapshot| black_box(ZoneState::restore(snapshot)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, sensors, counts, bookings, reservations, snapshots);
criterion_main!(benches);
