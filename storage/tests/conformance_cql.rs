//! The conformance suite against a real CQL server, plus the promises
//! specific to the CQL layout (bucketed journal, snapshot trimming,
//! idempotency and booking TTLs). The fencing protocol across processes
//! has its own test binary, `cql_fencing`.
//!
//! The server is `PARKME_TEST_CQL` (`host:port[,host:port]`, default
//! `127.0.0.1:9042`; `scripts/cql-server start` runs one). An unreachable
//! server fails these tests: it never skips them. Each test process works
//! in its own keyspace `parkme_test_<secs>_<pid>_<nanos>`, so runs go in
//! parallel and rerun cleanly; keyspaces of runs older than an hour are
//! dropped when a new run starts.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parkme_engine::{BookingId, Millis, Seq, UserId, ZoneId};
use parkme_storage::conformance::unique_facility;
use parkme_storage::cql::CqlStorage;
use parkme_storage::{Epoch, Storage, Write, ZoneKey};

const STALE_KEYSPACE_SECS: u64 = 3600;

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn server() -> String {
    std::env::var("PARKME_TEST_CQL").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

fn uri() -> &'static str {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| {
        let now = unix_now();
        let keyspace = format!(
            "parkme_test_{}_{}_{}",
            now.as_secs(),
            std::process::id(),
            now.subsec_nanos()
        );
        format!("scylla://{}/{keyspace}", server())
    })
}

/// Drops the keyspaces that test runs older than an hour left behind.
async fn sweep_stale_keyspaces(storage: &CqlStorage) -> Result<(), String> {
    let session = storage.session();
    let rows = session
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await
        .map_err(|e| e.to_string())?
        .into_rows_result()
        .map_err(|e| e.to_string())?;
    let names: Vec<String> = rows
        .rows::<(String,)>()
        .map_err(|e| e.to_string())?
        .filter_map(|r| r.ok().map(|(name,)| name))
        .collect();
    let now = unix_now().as_secs();
    for name in names {
        let Some(rest) = name
            .strip_prefix("parkme_test_")
            .or_else(|| name.strip_prefix("parkme_bench_"))
        else {
            continue;
        };
        let started = rest.split('_').next().and_then(|s| s.parse::<u64>().ok());
        if started.is_some_and(|s| s + STALE_KEYSPACE_SECS < now) {
            // Housekeeping only: a slow server (a DROP can take long under
            // load) must not fail the suite; the next run tries again.
            let mut drop =
                scylla::statement::Statement::new(format!("DROP KEYSPACE IF EXISTS {name}"));
            drop.set_request_timeout(Some(std::time::Duration::from_secs(60)));
            if let Err(e) = session.query_unpaged(drop, ()).await {
                eprintln!("could not drop the stale keyspace {name}: {e}");
            }
        }
    }
    Ok(())
}

/// Creates this process's keyspace once, on a thread of its own: every
/// test has its own runtime, and a driver session lives in the runtime
/// that built it.
fn setup() {
    static SETUP: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = SETUP.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let storage = CqlStorage::connect(uri())
                    .await
                    .map_err(|e| e.to_string())?;
                sweep_stale_keyspaces(&storage).await
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the setup thread panicked".into()))
    });
    if let Err(e) = outcome {
        panic!(
            "the CQL server at {} is required (scripts/cql-server start): {e}",
            server()
        );
    }
}

async fn connect() -> CqlStorage {
    setup();
    CqlStorage::connect(uri())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", uri()))
}

async fn backend() -> (Arc<dyn Storage>, ()) {
    (Arc::new(connect().await), ())
}

parkme_storage::conformance_suite!(backend());

/// A keyspace of its own, for the whole-store promises (`clear`).
async fn fresh_backend() -> (Arc<dyn Storage>, ()) {
    setup();
    let now = unix_now();
    let uri = format!(
        "scylla://{}/parkme_test_{}_{}_{}x",
        server(),
        now.as_secs(),
        std::process::id(),
        now.subsec_nanos()
    );
    let storage = CqlStorage::connect(&uri)
        .await
        .unwrap_or_else(|e| panic!("connecting to {uri}: {e}"));
    (Arc::new(storage), ())
}

parkme_storage::conformance_exclusive_suite!(fresh_backend());

fn zone(tag: &str) -> ZoneKey {
    ZoneKey::new(unique_facility(tag), ZoneId::parse("a").expect("zone id"))
}

fn events(zone: &ZoneKey, epoch: Epoch, seqs: std::ops::RangeInclusive<u64>) -> Vec<Write> {
    seqs.map(|seq| Write::Event {
        zone: zone.clone(),
        epoch,
        seq: Seq(seq),
        bytes: seq.to_be_bytes().to_vec(),
    })
    .collect()
}

/// The journal buckets `zone_buckets` lists for a zone.
async fn listed_buckets(s: &CqlStorage, z: &ZoneKey) -> Vec<i64> {
    let query = format!(
        "SELECT bucket FROM {}.zone_buckets WHERE facility = ? AND zone = ?",
        s.keyspace()
    );
    let rows = s
        .session()
        .query_unpaged(query, (z.facility.as_str(), z.zone.as_str()))
        .await
        .expect("query")
        .into_rows_result()
        .expect("rows");
    rows.rows::<(i64,)>()
        .expect("typed rows")
        .map(|r| r.expect("row").0)
        .collect()
}

async fn rows_in_bucket(s: &CqlStorage, z: &ZoneKey, bucket: i64) -> usize {
    let query = format!(
        "SELECT seq FROM {}.zone_journal WHERE facility = ? AND zone = ? AND bucket = ? AND seq >= 0",
        s.keyspace()
    );
    s.session()
        .query_unpaged(query, (z.facility.as_str(), z.zone.as_str(), bucket))
        .await
        .expect("query")
        .into_rows_result()
        .expect("rows")
        .rows_num()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journals_span_buckets_and_snapshots_drop_only_whole_buckets() {
    let s = connect().await;
    let z = zone("buckets");
    let epoch = s.claim_zone(&z).await.expect("claim");
    for start in (1..=10_000).step_by(1000) {
        s.commit(&events(&z, epoch, start..=start + 999))
            .await
            .expect("commit");
    }
    let all = s.read_events(&z, Seq::ZERO).await.expect("read");
    let seqs: Vec<u64> = all.iter().map(|(seq, _)| seq.0).collect();
    assert_eq!(seqs, (1..=10_000).collect::<Vec<_>>());
    assert!(all.iter().all(|(seq, b)| b == &seq.0.to_be_bytes()));
    assert_eq!(listed_buckets(&s, &z).await, vec![0, 1, 2]);

    // 9000 lies inside bucket 2 (8192..=12287): buckets 0 and 1 go whole,
    // bucket 2 is not touched.
    s.put_snapshot(&z, epoch, Seq(9000), b"image".to_vec())
        .await
        .expect("snapshot");
    assert_eq!(listed_buckets(&s, &z).await, vec![2]);
    assert_eq!(rows_in_bucket(&s, &z, 0).await, 0);
    assert_eq!(rows_in_bucket(&s, &z, 1).await, 0);
    assert_eq!(rows_in_bucket(&s, &z, 2).await, 10_000 - 8192 + 1);
    let tail: Vec<u64> = s
        .read_events(&z, Seq(9000))
        .await
        .expect("read")
        .iter()
        .map(|(seq, _)| seq.0)
        .collect();
    assert_eq!(tail, (9001..=10_000).collect::<Vec<_>>());
    let from_start = s.read_events(&z, Seq::ZERO).await.expect("read");
    assert_eq!(from_start.first().map(|(seq, _)| seq.0), Some(8192));
    assert_eq!(from_start.len(), 10_000 - 8192 + 1);

    // A snapshot on a bucket's last seq drops that bucket too.
    s.commit(&events(&z, epoch, 10_001..=12_300))
        .await
        .expect("commit");
    s.put_snapshot(&z, epoch, Seq(12_287), b"image".to_vec())
        .await
        .expect("snapshot");
    assert_eq!(listed_buckets(&s, &z).await, vec![3]);
    s.commit(&events(&z, epoch, 12_301..=12_302))
        .await
        .expect("commit");
    let tail = s.read_events(&z, Seq(12_287)).await.expect("read");
    assert_eq!(tail.len(), 12_302 - 12_287);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_restored_at_a_high_seq_opens_only_the_bucket_it_writes() {
    let s = connect().await;
    let z = zone("restored");
    // A restore: a claim and a snapshot at a high seq, no journal.
    let restorer = s.claim_zone(&z).await.expect("claim");
    s.put_snapshot(&z, restorer, Seq(100_000), b"image".to_vec())
        .await
        .expect("snapshot");
    // The next owner's first event lands in bucket 24 (100_001 / 4096)
    // without opening the 24 dead buckets below it.
    let owner = s.claim_zone(&z).await.expect("claim");
    s.commit(&events(&z, owner, 100_001..=100_003))
        .await
        .expect("commit");
    assert_eq!(listed_buckets(&s, &z).await, vec![24]);
    let tail = s.read_events(&z, Seq(100_000)).await.expect("read");
    assert_eq!(tail.len(), 3);
    // The old writer is still fenced out of it.
    let stale = s.commit(&events(&z, restorer, 100_004..=100_004)).await;
    assert!(
        matches!(stale, Err(parkme_storage::StorageError::Fenced { .. })),
        "{stale:?}"
    );
    // And a later claim fences the bucket it opened.
    let next = s.claim_zone(&z).await.expect("claim");
    let stale = s.commit(&events(&z, owner, 100_004..=100_004)).await;
    assert!(
        matches!(stale, Err(parkme_storage::StorageError::Fenced { .. })),
        "{stale:?}"
    );
    s.commit(&events(&z, next, 100_004..=100_004))
        .await
        .expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_newest_snapshots_are_kept() {
    let s = connect().await;
    let z = zone("snapkeep");
    let epoch = s.claim_zone(&z).await.expect("claim");
    for seq in 1..=6 {
        s.put_snapshot(&z, epoch, Seq(seq * 10), vec![seq as u8])
            .await
            .expect("snapshot");
    }
    let query = format!(
        "SELECT seq FROM {}.zone_snapshots WHERE facility = ? AND zone = ? AND seq >= 0",
        s.keyspace()
    );
    let kept: Vec<i64> = s
        .session()
        .query_unpaged(query, (z.facility.as_str(), z.zone.as_str()))
        .await
        .expect("query")
        .into_rows_result()
        .expect("rows")
        .rows::<(i64,)>()
        .expect("typed rows")
        .map(|r| r.expect("row").0)
        .collect();
    assert_eq!(kept, vec![60, 50, 40]);
    let latest = s.latest_snapshot(&z).await.expect("read");
    assert_eq!(latest, Some((Seq(60), vec![6])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_expire_by_ttl_after_their_deadline() {
    let s = connect().await;
    let tag = unique_facility("ttl");
    let owner = UserId::parse(&format!("u-{tag}")).expect("user id");
    let now_ms = i64::try_from(unix_now().as_millis()).expect("millis");
    s.commit(&[Write::Idempotency {
        owner: owner.clone(),
        key: "k".into(),
        booking: BookingId::parse("b-ttl").expect("booking id"),
        expires_at: Millis(now_ms + 86_400_000),
        replaces: None,
    }])
    .await
    .expect("commit");
    let query = format!(
        "SELECT TTL(booking) FROM {}.idempotency WHERE owner = ? AND idem_key = ?",
        s.keyspace()
    );
    let (ttl,): (Option<i32>,) = s
        .session()
        .query_unpaged(query, (owner.as_str(), "k"))
        .await
        .expect("query")
        .into_rows_result()
        .expect("rows")
        .single_row()
        .expect("one row");
    let ttl = ttl.expect("a TTL");
    assert!(
        (86_400..=86_400 + 3600).contains(&ttl),
        "TTL {ttl} should cover a day plus the grace hour"
    );
    let found = s
        .idempotent_booking(&owner, "k", Millis(now_ms))
        .await
        .expect("read");
    assert_eq!(found, Some(BookingId::parse("b-ttl").expect("booking id")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_bookings_are_written_with_a_ttl_until_their_forget_after() {
    let s = connect().await;
    let tag = unique_facility("bttl");
    let (ended, live) = (
        BookingId::parse(&format!("e-{tag}")).expect("booking id"),
        BookingId::parse(&format!("l-{tag}")).expect("booking id"),
    );
    let now_ms = i64::try_from(unix_now().as_millis()).expect("millis");
    s.commit(&[
        Write::Booking {
            id: ended.clone(),
            bytes: b"ended".to_vec(),
            forget_after: Some(Millis(now_ms + 400 * 86_400_000)),
        },
        Write::Booking {
            id: live.clone(),
            bytes: b"live".to_vec(),
            forget_after: None,
        },
    ])
    .await
    .expect("commit");
    let ttl = |id: BookingId| {
        let s = &s;
        async move {
            let query = format!(
                "SELECT TTL(payload) FROM {}.bookings WHERE id = ?",
                s.keyspace()
            );
            let (ttl,): (Option<i32>,) = s
                .session()
                .query_unpaged(query, (id.as_str(),))
                .await
                .expect("query")
                .into_rows_result()
                .expect("rows")
                .single_row()
                .expect("one row");
            ttl
        }
    };
    let ended_ttl = ttl(ended).await.expect("an ended booking has a TTL");
    assert!(
        (400 * 86_400 - 60..=400 * 86_400).contains(&ended_ttl),
        "TTL {ended_ttl} should run to the forget time"
    );
    assert_eq!(ttl(live).await, None, "a live booking has none");
}
