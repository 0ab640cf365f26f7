//! Writes the hand-made seed inputs of every fuzz target into
//! `<corpus>/<target>/seed-<n>-<name>` (default corpus: `fuzz/corpus`): valid
//! inputs built by the real encoders: JSON and bincode sensor frames,
//! app ops, a layout, booking bodies, signed tokens, headers, a WAL
//! segment written by the embedded store itself, a zone snapshot and the
//! journal events after it, stored records, a backup file, CQL URIs.
//!
//! Not a fuzz target (cargo-fuzz lists only the `[[bin]]`s named in
//! Cargo.toml), but built with them, so it shares their build.
//! `scripts/fuzz seeds` runs it; `scripts/fuzz cmin` then keeps the
//! corpus small. This program must never write outside the corpus.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use parkme_actors::record::{FacilityRecord, hash_key};
use parkme_engine::codec::{encode_stored, encode_wire};
use parkme_engine::{
    BookingId, BookingRequest, Command, FacilityId, FacilityLayout, Location, Millis, Plate,
    Reading, SpotId, SpotKind, SpotLayout, UserId, ZoneId, ZoneLayout, ZoneShape, ZoneState,
};
use parkme_fuzz::join;
use parkme_protocol::sensor::{Direction, SensorMessage};
use parkme_storage::embedded::EmbeddedStorage;
use parkme_storage::{Epoch, Storage, Write, ZoneKey};

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn id<T>(parse: fn(&str) -> Result<T, parkme_engine::IdError>, raw: &str) -> T {
    parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
}

fn spot_zone() -> ZoneLayout {
    let spot = |raw: &str, kind| SpotLayout {
        id: id(SpotId::parse, raw),
        kind,
    };
    ZoneLayout {
        id: id(ZoneId::parse, "P1"),
        name: "Level 1".into(),
        shape: ZoneShape::Spots(vec![
            spot("P1-001", SpotKind::Standard),
            spot("P1-002", SpotKind::Ev),
            spot("P1-003", SpotKind::Accessible),
        ]),
        reservable: 2,
    }
}

fn counter_zone() -> ZoneLayout {
    ZoneLayout {
        id: id(ZoneId::parse, "P2"),
        name: "Roof".into(),
        shape: ZoneShape::Counter {
            capacity: 40,
            kind: SpotKind::Motorcycle,
        },
        reservable: 10,
    }
}

fn layout() -> FacilityLayout {
    FacilityLayout::new(
        id(FacilityId::parse, "f1"),
        "Main St".into(),
        "Europe/Rome".into(),
        Some(Location {
            lat: 45.07,
            lon: 7.68,
        }),
        vec![spot_zone(), counter_zone()],
    )
    .expect("a valid layout")
}

fn messages() -> Vec<SensorMessage> {
    vec![
        SensorMessage::Spot {
            seq: 1,
            spot: "P1-001".into(),
            occupied: true,
            at: Some(1_700_000_000_000),
        },
        SensorMessage::Count {
            seq: 2,
            zone: "P2".into(),
            delta: -3,
        },
        SensorMessage::Plate {
            seq: 3,
            gate: "north".into(),
            plate: "AB123CD".into(),
            dir: Direction::In,
        },
        SensorMessage::Heartbeat {
            seq: 4,
            sensor: "gw-1".into(),
        },
    ]
}

fn sensor_seeds() -> (Seeds, Seeds) {
    let all = messages();
    let json = vec![
        (
            "spot",
            br#"{"t":"spot","seq":1,"spot":"P1-001","occupied":true}"#.to_vec(),
        ),
        (
            "batch",
            serde_json::to_vec(&all).expect("messages serialize"),
        ),
        (
            "bad-element",
            br#"[{"t":"spot","seq":1,"spot":"a","occupied":true},{"t":"spot","seq":2},7]"#.to_vec(),
        ),
    ];
    let bincode = vec![
        ("spot", encode_wire(&all[0])),
        ("batch", encode_wire(&all)),
        ("heartbeats", encode_wire(&vec![all[3].clone(); 3])),
    ];
    (json, bincode)
}

fn app_op_seeds() -> Seeds {
    vec![
        (
            "subscribe",
            br#"{"op":"subscribe","facility":"f1","detail":"spots","since":4,"req":1}"#.to_vec(),
        ),
        (
            "unsubscribe",
            br#"{"op":"unsubscribe","facility":"f1"}"#.to_vec(),
        ),
        (
            "book",
            br#"{"op":"book","req":"r1","facility":"f1","plate":"ab-123","zone":"P1","kind":"ev","hold_seconds":600,"idempotency_key":"k-1"}"#.to_vec(),
        ),
        (
            "cancel",
            br#"{"op":"cancel","req":{"n":2},"booking":"bk_0123"}"#.to_vec(),
        ),
    ]
}

fn layout_seeds() -> Seeds {
    let body = serde_json::to_vec_pretty(&parkme_fuzz::layout_json(&layout())).expect("json");
    vec![
        ("full", body),
        (
            "minimal",
            br#"{"zones":[{"id":"A","spots":[{"id":"A-1"}]},{"id":"B","capacity":10}]}"#.to_vec(),
        ),
    ]
}

fn booking_seeds() -> Seeds {
    vec![
        (
            "zone",
            join(&[
                b"key-1",
                br#"{"plate":"AB123CD","zone":"P1","kind":"ev","hold_seconds":900}"#,
            ]),
        ),
        (
            "spot",
            join(&[b"\x01", br#"{"plate":"xy-9","spot":"P1-002"}"#]),
        ),
    ]
}

fn jwt_seeds() -> Seeds {
    let jose = br#"{"alg":"HS256","typ":"JWT"}"#;
    let claims = br#"{"sub":"alice","exp":4102444800,"nbf":1700000000}"#;
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(jose),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(b"fuzz-secret");
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256)
        .expect("HS256 signs");
    let raw = |header: String| [&[0u8][..], &join(&[header.as_bytes()])].concat();
    vec![
        ("admin", raw("Bearer root-token".into())),
        ("token", raw(format!("Bearer {message}.{signature}"))),
        ("signed", [&[1u8][..], &join(&[jose, claims])].concat()),
        (
            "other-secret",
            [&[2u8][..], &join(&[jose, claims])].concat(),
        ),
    ]
}

fn header_seeds() -> Seeds {
    let lines = "x-forwarded-for: 1.1.1.1, 203.0.113.9\n\
                 x-forwarded-for: 192.0.2.7, [fd00::5]:443\n\
                 origin: https://app.example.com\n\
                 host: parkme.example.com\n\
                 authorization: Bearer abc.def\n\
                 idempotency-key: k-1";
    vec![(
        "proxied",
        join(&[
            lines.as_bytes(),
            b"10.0.0.0/8, 192.0.2.7, fd00::/8",
            b"https://app.example.com, *",
        ]),
    )]
}

/// A small zone's history: its snapshot after a booking, and the events
/// after that snapshot, all as stored.
fn zone_history() -> (Vec<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let facility = id(FacilityId::parse, "f1");
    let mut zone = ZoneState::new(facility, spot_zone());
    let now = Millis(1_700_000_000_000);
    let book = |n: u32, spot: Option<&str>| {
        Command::Book(BookingRequest {
            id: id(BookingId::parse, &format!("bk_{n:04}")),
            owner: id(UserId::parse, "alice"),
            plate: id(Plate::parse, "AB123CD"),
            kind: None,
            spot: spot.map(|s| id(SpotId::parse, s)),
            hold_seconds: 900,
            starts_at: None,
            ends_at: None,
            now,
        })
    };
    // An advance reservation of [now + 1 h, now + 3 h).
    let reserve = |n: u32| {
        Command::Book(BookingRequest {
            id: id(BookingId::parse, &format!("bk_{n:04}")),
            owner: id(UserId::parse, "alice"),
            plate: id(Plate::parse, "RS-1"),
            kind: None,
            spot: None,
            hold_seconds: 900,
            starts_at: Some(now.plus_secs(3600)),
            ends_at: Some(now.plus_secs(3 * 3600)),
            now,
        })
    };
    let mut before = Vec::new();
    for command in [
        book(1, None),
        Command::Sense {
            reading: Reading::Spot {
                spot: id(SpotId::parse, "P1-003"),
                occupied: true,
            },
            now,
        },
    ] {
        for (event, _) in zone.execute(&command).expect("the command applies") {
            before.push(encode_stored(&event));
        }
    }
    let image = encode_stored(&zone.snapshot());
    let mut after = Vec::new();
    for command in [
        book(2, Some("P1-002")),
        reserve(3),
        Command::Sense {
            reading: Reading::Spot {
                spot: id(SpotId::parse, "P1-001"),
                occupied: true,
            },
            now,
        },
        Command::Cancel {
            booking: id(BookingId::parse, "bk_0002"),
            now,
        },
        Command::SetService {
            spot: id(SpotId::parse, "P1-002"),
            out_of_service: true,
            now,
        },
        Command::Relayout {
            layout: ZoneLayout {
                shape: ZoneShape::Spots(vec![
                    SpotLayout {
                        id: id(SpotId::parse, "P1-001"),
                        kind: SpotKind::Standard,
                    },
                    SpotLayout {
                        id: id(SpotId::parse, "P1-009"),
                        kind: SpotKind::Compact,
                    },
                ]),
                ..spot_zone()
            },
            now,
        },
        Command::Tick {
            now: now.plus_secs(901),
        },
        Command::Tick {
            now: now.plus_secs(3 * 3600 + 1),
        },
    ] {
        for (event, _) in zone.execute(&command).expect("the command applies") {
            after.push(encode_stored(&event));
        }
    }
    (image, before, after)
}

fn recovery_seeds() -> (Seeds, Vec<Vec<u8>>) {
    let (image, before, after) = zone_history();
    let mut with_image: Vec<&[u8]> = vec![&image];
    with_image.extend(after.iter().map(Vec::as_slice));
    let mut fresh: Vec<&[u8]> = vec![b""];
    fresh.extend(before.iter().chain(&after).map(Vec::as_slice));
    let seeds = vec![
        ("snapshot-then-events", join(&with_image)),
        ("fresh-then-events", join(&fresh)),
    ];
    let mut events = before;
    events.extend(after);
    (seeds, events)
}

fn record_seeds(events: &[Vec<u8>]) -> Seeds {
    let mut zone = ZoneState::new(id(FacilityId::parse, "f1"), counter_zone());
    let booked = zone
        .execute(&Command::Book(BookingRequest {
            id: id(BookingId::parse, "bk_0009"),
            owner: id(UserId::parse, "bob"),
            plate: id(Plate::parse, "ZZ-1"),
            kind: None,
            spot: None,
            hold_seconds: 60,
            starts_at: None,
            ends_at: None,
            now: Millis(5),
        }))
        .expect("a counter booking");
    let booking = booked
        .into_iter()
        .find_map(|(_, effect)| effect.booking)
        .expect("the booking");
    let record = FacilityRecord {
        layout: layout(),
        sensor_key_hash: hash_key("sk_seed"),
        seq_base: 12,
        created_at: Millis(1),
        updated_at: Millis(2),
        sensor_key_generation: 1,
    };
    let mut seeds: Seeds = events
        .iter()
        .take(4)
        .map(|event| ("event", [&[0u8][..], event].concat()))
        .collect();
    seeds.push(("booking", [&[1u8][..], &encode_stored(&booking)].concat()));
    seeds.push(("facility", [&[2u8][..], &record.encode()].concat()));
    seeds
}

/// A WAL segment as the embedded store writes it: open a store in a
/// scratch directory, commit a few groups, read the segment file back
/// before any checkpoint moves it into redb.
fn wal_seed(events: &[Vec<u8>]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let zone = ZoneKey::new(id(FacilityId::parse, "f1"), id(ZoneId::parse, "P1"));
    let commits: Vec<Vec<Write>> = vec![
        events
            .iter()
            .take(2)
            .enumerate()
            .map(|(i, bytes)| Write::Event {
                zone: zone.clone(),
                epoch: Epoch(1),
                seq: parkme_engine::Seq(i as u64 + 1),
                bytes: bytes.clone(),
            })
            .collect(),
        vec![
            Write::Booking {
                id: id(BookingId::parse, "bk_0001"),
                bytes: vec![1, 2, 3],
                forget_after: None,
            },
            Write::Idempotency {
                owner: id(UserId::parse, "alice"),
                key: "k-1".into(),
                booking: id(BookingId::parse, "bk_0001"),
                expires_at: Millis(86_400_000),
                replaces: None,
            },
        ],
        vec![Write::Booking {
            id: id(BookingId::parse, "bk_0002"),
            bytes: vec![4],
            forget_after: Some(Millis(7)),
        }],
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = EmbeddedStorage::open(dir.path()).expect("the store opens");
        store.claim_zone(&zone).await.expect("claimed");
        for writes in &commits {
            store.commit(writes).await.expect("committed");
        }
        let segment = std::fs::read_dir(dir.path())
            .expect("the data directory")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "log"))
            .max()
            .expect("a WAL segment");
        std::fs::read(segment).expect("the segment reads")
    })
}

/// A backup of one facility (a zone with its booking, a counter zone, a
/// booking record, an idempotency key): as its entries (mode 1 of the
/// `backup_file` target) and as the whole file (mode 0).
fn backup_seeds() -> Seeds {
    use parkme_backup::format::{
        Begin, BookingEntry, FacilityEntry, KeyEntry, ZoneEntry, encode_header,
    };
    use parkme_backup::{BodyWriter, Entry, Silent};

    let facility = id(FacilityId::parse, "f1");
    let record = FacilityRecord {
        layout: layout(),
        sensor_key_hash: hash_key("sk_seed"),
        seq_base: 0,
        created_at: Millis(1),
        updated_at: Millis(2),
        sensor_key_generation: 1,
    };
    let now = Millis(1_700_000_000_000);
    let mut entries = vec![
        Entry::Begin(Begin {
            created_at: now,
            source: "embedded".into(),
            parkme_version: "0.1.0".into(),
            planned_facilities: 1,
            planned_zones: 2,
        }),
        Entry::Facility(FacilityEntry {
            id: facility.clone(),
            record: record.encode(),
        }),
    ];
    let mut booked = None;
    for layout in [spot_zone(), counter_zone()] {
        let mut zone = ZoneState::new(facility.clone(), layout.clone());
        if booked.is_none() {
            let events = zone
                .execute(&Command::Book(BookingRequest {
                    id: id(BookingId::parse, "bk_0001"),
                    owner: id(UserId::parse, "alice"),
                    plate: id(Plate::parse, "AB123CD"),
                    kind: None,
                    spot: None,
                    hold_seconds: 900,
                    starts_at: None,
                    ends_at: None,
                    now,
                }))
                .expect("a booking");
            booked = events.into_iter().find_map(|(_, effect)| effect.booking);
        }
        let snapshot = zone.snapshot();
        entries.push(Entry::Zone(ZoneEntry {
            facility: facility.clone(),
            zone: layout.id.clone(),
            seq: snapshot.seq,
            spots: snapshot.spots.len() as u64,
            live: snapshot.live.len() as u64,
            snapshot: encode_stored(&snapshot),
        }));
    }
    let booking = booked.expect("the booking");
    entries.push(Entry::Booking(BookingEntry {
        id: booking.id.clone(),
        record: encode_stored(&booking),
        forget_after: None,
    }));
    entries.push(Entry::Key(KeyEntry {
        owner: booking.owner.clone(),
        key: "k-1".into(),
        booking: booking.id.clone(),
        expires_at: now.plus_secs(86_400),
    }));
    let encoded: Vec<Vec<u8>> = entries.iter().map(encode_stored).collect();
    let parts: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let file = runtime.block_on(async {
        let mut body = BodyWriter::new(Vec::new(), std::sync::Arc::new(Silent));
        for entry in &entries {
            body.entry(entry).await.expect("an entry");
        }
        let end = Entry::End(body.counts().clone());
        body.entry(&end).await.expect("the end");
        let (bytes, header) = body.finish().await.expect("the body");
        let header = header.expect("a header");
        [&encode_header(&header)[..], &bytes].concat()
    });
    vec![
        ("entries", [&[1u8][..], &join(&parts)].concat()),
        ("file", [&[0u8][..], &file].concat()),
    ]
}

fn cql_seeds() -> Seeds {
    vec![
        ("contract", b"scylla://host1:9042,host2:9042/keyspace".to_vec()),
        (
            "options",
            b"scylla://db1,[::1]:19042/ParkMe?replication=eu1:3,us-east:2&consistency=local_quorum&serial=local_serial"
                .to_vec(),
        ),
    ]
}

fn write(corpus: &Path, target: &str, seeds: &Seeds) {
    let dir = corpus.join(target);
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    for (i, (name, bytes)) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}-{name}")), bytes).expect("a seed is written");
    }
    println!("{target}: {} seeds", seeds.len());
}

fn main() {
    let corpus: PathBuf = std::env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
        PathBuf::from,
    );
    let (json, bincode) = sensor_seeds();
    let (recovery, events) = recovery_seeds();
    let wal = wal_seed(&events);
    let decoded = parkme_storage::embedded::decode_wal_segment(&wal, true)
        .expect("the store's own segment decodes");
    assert_eq!(decoded.len(), 3, "one frame per commit");
    write(&corpus, "sensor_json", &json);
    write(&corpus, "sensor_bincode", &bincode);
    write(&corpus, "app_op", &app_op_seeds());
    write(&corpus, "layout", &layout_seeds());
    write(&corpus, "booking_body", &booking_seeds());
    write(&corpus, "jwt", &jwt_seeds());
    write(&corpus, "headers", &header_seeds());
    write(&corpus, "wal_segment", &vec![("store", wal)]);
    write(&corpus, "zone_recovery", &recovery);
    write(&corpus, "stored_record", &record_seeds(&events));
    write(&corpus, "backup_file", &backup_seeds());
    write(&corpus, "cql_uri", &cql_seeds());
}
