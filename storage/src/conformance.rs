//! The storage conformance suite: the promises of [`crate::Storage`], as
//! tests that every backend must pass (memory, embedded, CQL).
//!
//! Each promise is a public async function taking a fresh backend; the
//! [`conformance_suite!`](crate::conformance_suite) macro turns them into
//! one `#[tokio::test]` each for a backend. Every test works under its own
//! fresh facility id, so backends shared between tests (one CQL keyspace)
//! can run them in parallel and rerun them cleanly.
//!
//! This module must never contain backend-specific knowledge.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId, ZoneId};

use crate::backend::Storage;
use crate::error::StorageError;
use crate::model::{Epoch, HistorySample, StoredBooking, StoredKey, Write, ZoneKey};

/// A facility id no other test run has used.
pub fn unique_facility(tag: &str) -> FacilityId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!("t-{tag}-{nanos:x}-{n}-{:x}", std::process::id());
    FacilityId::parse(&id[..id.len().min(64)]).expect("generated ids are valid")
}

fn zone(tag: &str, name: &str) -> ZoneKey {
    ZoneKey::new(
        unique_facility(tag),
        ZoneId::parse(name).expect("valid zone"),
    )
}

fn event(zone: &ZoneKey, epoch: Epoch, seq: u64, bytes: Vec<u8>) -> Write {
    Write::Event {
        zone: zone.clone(),
        epoch,
        seq: Seq(seq),
        bytes,
    }
}

fn payload(seq: u64) -> Vec<u8> {
    format!("event-{seq}").into_bytes()
}

async fn append_range(
    s: &dyn Storage,
    z: &ZoneKey,
    epoch: Epoch,
    seqs: std::ops::RangeInclusive<u64>,
) {
    let writes: Vec<Write> = seqs.map(|n| event(z, epoch, n, payload(n))).collect();
    s.commit(&writes).await.expect("commit");
}

pub async fn append_then_read_back_in_seq_order(s: &dyn Storage) {
    let z = zone("order", "a");
    let epoch = s.claim_zone(&z).await.expect("claim");
    append_range(s, &z, epoch, 1..=5).await;
    append_range(s, &z, epoch, 6..=12).await;
    let events = s.read_events(&z, Seq::ZERO).await.expect("read");
    let seqs: Vec<u64> = events.iter().map(|(seq, _)| seq.0).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    for (seq, bytes) in events {
        assert_eq!(bytes, payload(seq.0));
    }
}

pub async fn reading_from_a_seq_returns_only_the_tail(s: &dyn Storage) {
    let z = zone("tail", "a");
    let epoch = s.claim_zone(&z).await.expect("claim");
    append_range(s, &z, epoch, 1..=20).await;
    let tail = s.read_events(&z, Seq(15)).await.expect("read");
    let seqs: Vec<u64> = tail.iter().map(|(seq, _)| seq.0).collect();
    assert_eq!(seqs, vec![16, 17, 18, 19, 20]);
    assert!(s.read_events(&z, Seq(20)).await.expect("read").is_empty());
}

pub async fn snapshot_then_tail_replay(s: &dyn Storage) {
    let z = zone("snap", "a");
    let epoch = s.claim_zone(&z).await.expect("claim");
    assert_eq!(s.latest_snapshot(&z).await.expect("read"), None);
    append_range(s, &z, epoch, 1..=10).await;
    s.put_snapshot(&z, epoch, Seq(7), b"image-at-7".to_vec())
        .await
        .expect("snapshot");
    append_range(s, &z, epoch, 11..=13).await;
    let (seq, image) = s
        .latest_snapshot(&z)
        .await
        .expect("read")
        .expect("a snapshot");
    assert_eq!((seq, image.as_slice()), (Seq(7), b"image-at-7".as_slice()));
    let tail: Vec<u64> = s
        .read_events(&z, seq)
        .await
        .expect("read")
        .iter()
        .map(|(seq, _)| seq.0)
        .collect();
    assert_eq!(tail, vec![8, 9, 10, 11, 12, 13]);
    s.put_snapshot(&z, epoch, Seq(12), b"image-at-12".to_vec())
        .await
        .expect("snapshot");
    let (seq, _) = s
        .latest_snapshot(&z)
        .await
        .expect("read")
        .expect("a snapshot");
    assert_eq!(seq, Seq(12));
}

pub async fn large_payloads_round_trip(s: &dyn Storage) {
    let z = zone("large", "a");
    let epoch = s.claim_zone(&z).await.expect("claim");
    let big: Vec<u8> = (0..(2 << 20)).map(|i: u32| (i % 251) as u8).collect();
    s.commit(&[event(&z, epoch, 1, big.clone())])
        .await
        .expect("commit");
    let events = s.read_events(&z, Seq::ZERO).await.expect("read");
    assert_eq!(events.len(), 1);
    assert!(events[0].1 == big, "large event changed on the way");
    s.put_snapshot(&z, epoch, Seq(1), big.clone())
        .await
        .expect("snapshot");
    let (_, image) = s
        .latest_snapshot(&z)
        .await
        .expect("read")
        .expect("a snapshot");
    assert!(image == big, "large snapshot changed on the way");
}

pub async fn reappending_after_a_crash_before_the_ack_is_harmless(s: &dyn Storage) {
    let z = zone("reappend", "a");
    let epoch = s.claim_zone(&z).await.expect("claim");
    append_range(s, &z, epoch, 1..=3).await;
    // The process died after the write but before the ack: the owner
    // recovers with a new epoch and writes the same events again.
    let epoch = s.claim_zone(&z).await.expect("claim");
    append_range(s, &z, epoch, 2..=4).await;
    let seqs: Vec<u64> = s
        .read_events(&z, Seq::ZERO)
        .await
        .expect("read")
        .iter()
        .map(|(seq, _)| seq.0)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

pub async fn a_second_writer_for_the_same_zone_is_refused(s: &dyn Storage) {
    let z = zone("fence", "a");
    let old = s.claim_zone(&z).await.expect("claim");
    append_range(s, &z, old, 1..=2).await;
    let new = s.claim_zone(&z).await.expect("claim");
    assert!(new > old, "epochs must increase");
    let other = zone("fence-other", "b");
    let other_epoch = s.claim_zone(&other).await.expect("claim");
    let booking = BookingId::parse(unique_facility("fenced-booking").as_str()).expect("valid");
    let owner = UserId::parse(unique_facility("fenced-owner").as_str()).expect("valid");
    // A batch mixing a stale write with good ones lands nothing.
    let stale = vec![
        event(&other, other_epoch, 1, payload(1)),
        Write::Booking {
            id: booking.clone(),
            bytes: b"x".to_vec(),
            forget_after: None,
        },
        Write::Idempotency {
            owner: owner.clone(),
            key: "k".into(),
            booking: booking.clone(),
            expires_at: Millis(i64::MAX),
            replaces: None,
        },
        event(&z, old, 3, payload(3)),
    ];
    match s.commit(&stale).await {
        Err(StorageError::Fenced { .. }) => {}
        other => panic!("a stale writer must be fenced, got {other:?}"),
    }
    assert!(
        s.read_events(&other, Seq::ZERO)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(s.booking(&booking).await.expect("read"), None);
    let key = s.idempotent_booking(&owner, "k", Millis(0)).await;
    assert_eq!(key.expect("read"), None);
    let stale_snapshot = s.put_snapshot(&z, old, Seq(2), b"old".to_vec()).await;
    assert!(matches!(stale_snapshot, Err(StorageError::Fenced { .. })));
    append_range(s, &z, new, 3..=3).await;
    assert_eq!(s.read_events(&z, Seq::ZERO).await.expect("read").len(), 3);
}

pub async fn zones_do_not_see_each_others_events(s: &dyn Storage) {
    let facility = unique_facility("iso");
    let a = ZoneKey::new(facility.clone(), ZoneId::parse("a").expect("valid"));
    let b = ZoneKey::new(facility, ZoneId::parse("b").expect("valid"));
    let ea = s.claim_zone(&a).await.expect("claim");
    let eb = s.claim_zone(&b).await.expect("claim");
    s.commit(&[
        event(&a, ea, 1, payload(1)),
        event(&b, eb, 1, b"b1".to_vec()),
    ])
    .await
    .expect("commit");
    let read_a = s.read_events(&a, Seq::ZERO).await.expect("read");
    let read_b = s.read_events(&b, Seq::ZERO).await.expect("read");
    assert_eq!(read_a, vec![(Seq(1), payload(1))]);
    assert_eq!(read_b, vec![(Seq(1), b"b1".to_vec())]);
}

pub async fn booking_records_are_found_by_id(s: &dyn Storage) {
    let id = BookingId::parse(unique_facility("bk").as_str()).expect("valid");
    assert_eq!(s.booking(&id).await.expect("read"), None);
    s.commit(&[Write::Booking {
        id: id.clone(),
        bytes: b"v1".to_vec(),
        forget_after: None,
    }])
    .await
    .expect("commit");
    s.commit(&[Write::Booking {
        id: id.clone(),
        bytes: b"v2".to_vec(),
        forget_after: None,
    }])
    .await
    .expect("commit");
    assert_eq!(s.booking(&id).await.expect("read"), Some(b"v2".to_vec()));
}

pub async fn idempotency_keys_are_scoped_to_their_owner_and_expire(s: &dyn Storage) {
    let tag = unique_facility("idem");
    let alice = UserId::parse(&format!("alice-{tag}")).expect("valid");
    let bob = UserId::parse(&format!("bob-{tag}")).expect("valid");
    let booking = BookingId::parse("idem-booking").expect("valid");
    s.commit(&[Write::Idempotency {
        owner: alice.clone(),
        key: "retry-1".into(),
        booking: booking.clone(),
        expires_at: Millis(10_000),
        replaces: None,
    }])
    .await
    .expect("commit");
    let found = s.idempotent_booking(&alice, "retry-1", Millis(5_000)).await;
    assert_eq!(found.expect("read"), Some(booking));
    assert_eq!(
        s.idempotent_booking(&bob, "retry-1", Millis(5_000))
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        s.idempotent_booking(&alice, "retry-2", Millis(5_000))
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        s.idempotent_booking(&alice, "retry-1", Millis(10_001))
            .await
            .expect("read"),
        None
    );
}

pub async fn facility_records_round_trip(s: &dyn Storage) {
    let id = unique_facility("fac");
    s.put_facility(&id, b"layout-1".to_vec(), None)
        .await
        .expect("put");
    s.put_facility(&id, b"layout-2".to_vec(), None)
        .await
        .expect("put");
    let all = s.facilities().await.expect("list");
    let mine: Vec<&Vec<u8>> = all
        .iter()
        .filter(|(f, _)| f == &id)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(mine, vec![&b"layout-2".to_vec()]);
    assert_eq!(
        s.facility(&id).await.expect("read"),
        Some(b"layout-2".to_vec()),
        "one record reads by key"
    );
    let never = unique_facility("never");
    assert_eq!(s.facility(&never).await.expect("read"), None);
}

pub async fn a_facility_record_takes_writes_only_under_its_newest_fence(s: &dyn Storage) {
    let id = unique_facility("fenced");
    assert_eq!(
        s.claim_facility(&id).await.expect("claim"),
        None,
        "no record, nothing to claim"
    );
    assert_eq!(
        s.facility(&id).await.expect("read"),
        None,
        "a claim makes no record"
    );
    s.put_facility(&id, b"first".to_vec(), None)
        .await
        .expect("the first record");
    let old = s
        .claim_facility(&id)
        .await
        .expect("claim")
        .expect("a fence");
    s.put_facility(&id, b"by-old".to_vec(), Some(old))
        .await
        .expect("the owner writes");
    let new = s
        .claim_facility(&id)
        .await
        .expect("claim")
        .expect("a fence");
    assert!(new.0 > old.0, "fences grow: {old:?} then {new:?}");
    match s.put_facility(&id, b"late".to_vec(), Some(old)).await {
        Err(StorageError::Fenced { current, ours, .. }) => {
            assert_eq!((current, ours), (new.0, old.0));
        }
        other => panic!("a deposed owner's write must be fenced: {other:?}"),
    }
    assert_eq!(
        s.facility(&id).await.expect("read"),
        Some(b"by-old".to_vec())
    );
    s.put_facility(&id, b"by-new".to_vec(), Some(new))
        .await
        .expect("the new owner writes");
    assert_eq!(
        s.facility(&id).await.expect("read"),
        Some(b"by-new".to_vec())
    );
    let listed: Vec<_> = s
        .facilities()
        .await
        .expect("list")
        .into_iter()
        .filter(|(f, _)| f == &id)
        .collect();
    assert_eq!(listed.len(), 1);
}

pub async fn history_samples_read_back_by_range_across_days_and_purge_by_age(s: &dyn Storage) {
    let id = unique_facility("hist");
    let other = unique_facility("hist-other");
    let day = 86_400_000;
    // Three days apart, and one of another facility between them.
    let ats = [
        Millis(10 * day + 5),
        Millis(11 * day + 7),
        Millis(12 * day + 9),
    ];
    let keep = Millis(i64::MAX / 2);
    let sample = |facility: &FacilityId, at: Millis, byte: u8| HistorySample {
        facility: facility.clone(),
        at,
        bytes: vec![byte],
        keep_until: keep,
    };
    let mut batch: Vec<HistorySample> = ats
        .iter()
        .enumerate()
        .map(|(i, at)| sample(&id, *at, i as u8))
        .collect();
    batch.push(sample(&other, Millis(11 * day), 9));
    s.put_history(batch).await.expect("samples");
    // Written again at the same instant: replaced.
    s.put_history(vec![sample(&id, ats[1], 7)])
        .await
        .expect("sample");
    let all = s
        .history(&id, Millis(0), Millis(20 * day))
        .await
        .expect("read");
    assert_eq!(
        all,
        vec![(ats[0], vec![0]), (ats[1], vec![7]), (ats[2], vec![2])]
    );
    let middle = s
        .history(&id, Millis(11 * day), Millis(12 * day + 9))
        .await
        .expect("read");
    assert_eq!(
        middle,
        vec![(ats[1], vec![7]), (ats[2], vec![2])],
        "bounds are inclusive"
    );
    assert!(
        s.history(&id, Millis(5), Millis(4))
            .await
            .expect("read")
            .is_empty()
    );
    s.purge_history(Millis(11 * day)).await.expect("purge");
    let kept = s
        .history(&id, Millis(0), Millis(20 * day))
        .await
        .expect("read");
    // A store that expires samples by TTL keeps them until then.
    assert!(kept.len() == 2 || kept.len() == 3, "{kept:?}");
    assert_eq!(kept.last(), Some(&(ats[2], vec![2])));
}

pub async fn dropping_a_zone_forgets_its_journal_and_snapshot(s: &dyn Storage) {
    let z = zone("drop", "a");
    let epoch = s.claim_zone(&z).await.expect("claim");
    append_range(s, &z, epoch, 1..=4).await;
    s.put_snapshot(&z, epoch, Seq(2), b"img".to_vec())
        .await
        .expect("snapshot");
    s.drop_zone(&z).await.expect("drop");
    assert!(s.read_events(&z, Seq::ZERO).await.expect("read").is_empty());
    assert_eq!(s.latest_snapshot(&z).await.expect("read"), None);
}

pub async fn a_healthy_backend_answers_ping(s: &dyn Storage) {
    s.ping().await.expect("ping");
}

/// The first seq of the second journal bucket of the CQL layout; every
/// backend must treat it like any other seq.
const BOUNDARY: u64 = 4096;

pub async fn a_commit_across_a_bucket_boundary_lands_whole(s: &dyn Storage) {
    let z = zone("boundary", "a");
    let epoch = s.claim_zone(&z).await.expect("claim");
    append_range(s, &z, epoch, 1..=BOUNDARY - 10).await;
    // One commit from just below the boundary to well above it.
    append_range(s, &z, epoch, BOUNDARY - 9..=BOUNDARY + 20).await;
    append_range(s, &z, epoch, BOUNDARY + 21..=BOUNDARY + 21).await;
    let seqs: Vec<u64> = s
        .read_events(&z, Seq(BOUNDARY - 20))
        .await
        .expect("read")
        .iter()
        .map(|(seq, _)| seq.0)
        .collect();
    assert_eq!(seqs, (BOUNDARY - 19..=BOUNDARY + 21).collect::<Vec<_>>());

    // A stale writer's commit across the boundary lands in neither bucket.
    let newer = s.claim_zone(&z).await.expect("claim");
    assert!(newer > epoch);
    let stale: Vec<Write> = (BOUNDARY + 22..=2 * BOUNDARY + 5)
        .map(|n| event(&z, epoch, n, payload(n)))
        .collect();
    match s.commit(&stale).await {
        Err(StorageError::Fenced { .. }) => {}
        other => panic!("a stale writer must be fenced, got {other:?}"),
    }
    let tail = s.read_events(&z, Seq(BOUNDARY + 21)).await.expect("read");
    assert!(tail.is_empty(), "nothing of the stale commit landed");
    append_range(s, &z, newer, BOUNDARY + 22..=2 * BOUNDARY + 5).await;
    let tail = s.read_events(&z, Seq(BOUNDARY + 21)).await.expect("read");
    assert_eq!(tail.len() as u64, BOUNDARY - 16);
}

pub async fn racing_claims_get_distinct_epochs_and_only_the_newest_writes(s: &dyn Storage) {
    let z = zone("race", "a");
    let claims = futures_util::future::join_all((0..6).map(|_| s.claim_zone(&z))).await;
    let mut won: Vec<Epoch> = claims.into_iter().filter_map(Result::ok).collect();
    assert!(!won.is_empty(), "some claim wins");
    let count = won.len();
    won.sort_unstable();
    won.dedup();
    assert_eq!(won.len(), count, "every successful claim has its own epoch");
    let last = s.claim_zone(&z).await.expect("claim");
    assert!(
        won.iter().all(|e| *e < last),
        "a later claim gets a newer epoch"
    );
    for older in &won {
        let refused = s.commit(&[event(&z, *older, 1, payload(1))]).await;
        assert!(
            matches!(refused, Err(StorageError::Fenced { .. })),
            "epoch {older:?} must be fenced after {last:?}, got {refused:?}"
        );
    }
    append_range(s, &z, last, 1..=2).await;
    assert_eq!(s.read_events(&z, Seq::ZERO).await.expect("read").len(), 2);
}

pub async fn groups_of_one_commit_succeed_or_fail_on_their_own(s: &dyn Storage) {
    let good = zone("groups", "good");
    let fenced = zone("groups", "fenced");
    let good_epoch = s.claim_zone(&good).await.expect("claim");
    let old = s.claim_zone(&fenced).await.expect("claim");
    s.claim_zone(&fenced).await.expect("claim");
    let booking = |tag: &str| BookingId::parse(unique_facility(tag).as_str()).expect("valid");
    let (kept, lost, alone) = (booking("kept"), booking("lost"), booking("alone"));
    let record = |id: &BookingId| Write::Booking {
        id: id.clone(),
        bytes: b"record".to_vec(),
        forget_after: None,
    };
    let first = vec![event(&good, good_epoch, 1, payload(1)), record(&kept)];
    let second = vec![event(&fenced, old, 1, payload(1)), record(&lost)];
    let third = vec![record(&alone)];
    let outcomes = s.commit_groups(&[&first, &second, &third]).await;
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0], Ok(()));
    assert!(matches!(outcomes[1], Err(StorageError::Fenced { .. })));
    assert_eq!(outcomes[2], Ok(()));
    assert_eq!(
        s.read_events(&good, Seq::ZERO).await.expect("read").len(),
        1
    );
    assert!(
        s.read_events(&fenced, Seq::ZERO)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(s.booking(&kept).await.expect("read").is_some());
    assert_eq!(s.booking(&lost).await.expect("read"), None);
    assert!(s.booking(&alone).await.expect("read").is_some());
}

pub async fn an_older_snapshot_never_replaces_a_newer_one(s: &dyn Storage) {
    let z = zone("snaporder", "a");
    let epoch = s.claim_zone(&z).await.expect("claim");
    append_range(s, &z, epoch, 1..=12).await;
    s.put_snapshot(&z, epoch, Seq(10), b"image-at-10".to_vec())
        .await
        .expect("snapshot");
    // Landing late, out of order: ignored.
    s.put_snapshot(&z, epoch, Seq(5), b"image-at-5".to_vec())
        .await
        .expect("an older snapshot is ignored, not an error");
    s.put_snapshot(&z, epoch, Seq(10), b"again-at-10".to_vec())
        .await
        .expect("the same seq again is ignored");
    let latest = s.latest_snapshot(&z).await.expect("read");
    assert_eq!(latest, Some((Seq(10), b"image-at-10".to_vec())));
    let tail: Vec<u64> = s
        .read_events(&z, Seq(10))
        .await
        .expect("read")
        .iter()
        .map(|(seq, _)| seq.0)
        .collect();
    assert_eq!(
        tail,
        vec![11, 12],
        "the tail after the newest snapshot is kept"
    );
    // A newer writer's snapshot moves on; the old writer's is refused.
    let newer = s.claim_zone(&z).await.expect("claim");
    let stale = s.put_snapshot(&z, epoch, Seq(12), b"stale".to_vec()).await;
    assert!(
        matches!(stale, Err(StorageError::Fenced { .. })),
        "{stale:?}"
    );
    s.put_snapshot(&z, newer, Seq(12), b"image-at-12".to_vec())
        .await
        .expect("snapshot");
    let latest = s.latest_snapshot(&z).await.expect("read");
    assert_eq!(latest, Some((Seq(12), b"image-at-12".to_vec())));
}

pub async fn upkeep_forgets_booking_records_past_their_forget_after(s: &dyn Storage) {
    let id = |tag: &str| BookingId::parse(unique_facility(tag).as_str()).expect("valid");
    let (ended, retained, live) = (id("ended"), id("retained"), id("live"));
    let now = Millis::system_now();
    let write = |id: &BookingId, forget_after| Write::Booking {
        id: id.clone(),
        bytes: b"record".to_vec(),
        forget_after,
    };
    s.commit(&[
        write(&ended, Some(Millis(now.0 - 1))),
        write(&retained, Some(now.plus_secs(86_400))),
        write(&live, None),
    ])
    .await
    .expect("commit");
    // Backends that expire rows themselves (CQL TTLs) do so within a
    // second or two; the others on the next upkeep.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        s.upkeep(Millis::system_now()).await.expect("upkeep");
        if s.booking(&ended).await.expect("read").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ended booking was never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(s.booking(&retained).await.expect("read").is_some());
    assert!(s.booking(&live).await.expect("read").is_some());
    // Written again without a forget time, a record stays.
    s.commit(&[write(&retained, None)]).await.expect("commit");
    s.upkeep(Millis(i64::MAX)).await.expect("upkeep");
    assert!(s.booking(&retained).await.expect("read").is_some());
}

async fn listed_zones(s: &dyn Storage) -> Vec<ZoneKey> {
    s.zones().try_collect().await.expect("list zones")
}

async fn listed_bookings(s: &dyn Storage) -> Vec<StoredBooking> {
    s.bookings().try_collect().await.expect("list bookings")
}

async fn listed_keys(s: &dyn Storage) -> Vec<StoredKey> {
    s.idempotency_keys().try_collect().await.expect("list keys")
}

pub async fn every_zone_with_state_is_listed_once(s: &dyn Storage) {
    let facility = unique_facility("zlist");
    let key = |z: &str| ZoneKey::new(facility.clone(), ZoneId::parse(z).expect("valid"));
    let (journaled, snapshotted, claimed, dropped) = (key("j"), key("s"), key("c"), key("d"));
    for zone in [&journaled, &snapshotted, &dropped] {
        let epoch = s.claim_zone(zone).await.expect("claim");
        append_range(s, zone, epoch, 1..=3).await;
        if zone == &snapshotted {
            s.put_snapshot(zone, epoch, Seq(3), b"img".to_vec())
                .await
                .expect("snapshot");
        }
    }
    s.claim_zone(&claimed).await.expect("claim");
    s.drop_zone(&dropped).await.expect("drop");
    let mut mine: Vec<ZoneKey> = listed_zones(s)
        .await
        .into_iter()
        .filter(|z| z.facility == facility)
        .collect();
    mine.sort();
    assert_eq!(mine, vec![journaled, snapshotted]);
}

pub async fn every_booking_record_is_listed_once_with_its_forget_time(s: &dyn Storage) {
    let tag = unique_facility("blist");
    // More than a page of any backend's listing.
    let count = 2500;
    let forget = Millis::system_now().plus_secs(86_400);
    let writes: Vec<Write> = (0..count)
        .map(|i| Write::Booking {
            id: BookingId::parse(&format!("{tag}-{i}")).expect("valid"),
            bytes: format!("record-{i}").into_bytes(),
            forget_after: (i % 2 == 0).then_some(forget),
        })
        .collect();
    s.commit(&writes).await.expect("commit");
    let prefix = format!("{tag}-");
    let mut seen: BTreeMap<String, StoredBooking> = BTreeMap::new();
    for booking in listed_bookings(s).await {
        if booking.id.as_str().starts_with(&prefix) {
            let again = seen.insert(booking.id.as_str().to_owned(), booking);
            assert!(again.is_none(), "a record was listed twice");
        }
    }
    assert_eq!(seen.len(), count);
    for i in 0..count {
        let booking = &seen[&format!("{tag}-{i}")];
        assert_eq!(booking.bytes, format!("record-{i}").into_bytes());
        match booking.forget_after {
            // TTL backends know it to the second.
            Some(at) if i % 2 == 0 => assert!((at.0 - forget.0).abs() <= 2_000, "{at:?}"),
            None if i % 2 == 1 => {}
            other => panic!("record {i}: forget_after {other:?}"),
        }
    }
}

pub async fn every_idempotency_key_is_listed_once(s: &dyn Storage) {
    let tag = unique_facility("klist");
    let owner = UserId::parse(&format!("u-{tag}")).expect("valid");
    let expires_at = Millis::system_now().plus_secs(3600);
    let writes: Vec<Write> = (0..20)
        .map(|i| Write::Idempotency {
            owner: owner.clone(),
            key: format!("key-{i}"),
            booking: BookingId::parse(&format!("b-{i}")).expect("valid"),
            expires_at,
            replaces: None,
        })
        .collect();
    s.commit(&writes).await.expect("commit");
    let mut mine: Vec<StoredKey> = listed_keys(s)
        .await
        .into_iter()
        .filter(|k| k.owner == owner)
        .collect();
    mine.sort_by(|a, b| a.key.cmp(&b.key));
    let mut expected: Vec<StoredKey> = (0..20)
        .map(|i| StoredKey {
            owner: owner.clone(),
            key: format!("key-{i}"),
            booking: BookingId::parse(&format!("b-{i}")).expect("valid"),
            expires_at,
        })
        .collect();
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(mine, expected);
}

/// Whole-store promises: run only on a store of their own (see
/// [`conformance_exclusive_suite!`](crate::conformance_exclusive_suite)).
pub async fn clearing_forgets_every_record_but_keeps_fencing(s: &dyn Storage) {
    assert!(
        listed_zones(s).await.is_empty(),
        "a fresh store lists no zone"
    );
    assert!(listed_bookings(s).await.is_empty(), "nor a booking");
    assert!(listed_keys(s).await.is_empty(), "nor a key");
    assert!(s.facilities().await.expect("list").is_empty());

    let z = zone("clear", "a");
    let old = s.claim_zone(&z).await.expect("claim");
    append_range(s, &z, old, 1..=5).await;
    s.put_snapshot(&z, old, Seq(3), b"img".to_vec())
        .await
        .expect("snapshot");
    let booking = BookingId::parse("clear-booking").expect("valid");
    let owner = UserId::parse("clear-owner").expect("valid");
    s.commit(&[
        Write::Booking {
            id: booking.clone(),
            bytes: b"record".to_vec(),
            forget_after: None,
        },
        Write::Idempotency {
            owner: owner.clone(),
            key: "k".into(),
            booking: booking.clone(),
            expires_at: Millis::system_now().plus_secs(3600),
            replaces: None,
        },
    ])
    .await
    .expect("commit");
    s.put_facility(&z.facility, b"layout".to_vec(), None)
        .await
        .expect("put");

    s.clear().await.expect("clear");
    assert!(listed_zones(s).await.is_empty());
    assert!(listed_bookings(s).await.is_empty());
    assert!(listed_keys(s).await.is_empty());
    assert!(s.facilities().await.expect("list").is_empty());
    assert!(s.read_events(&z, Seq::ZERO).await.expect("read").is_empty());
    assert_eq!(s.latest_snapshot(&z).await.expect("read"), None);
    assert_eq!(s.booking(&booking).await.expect("read"), None);
    let key = s.idempotent_booking(&owner, "k", Millis(0)).await;
    assert_eq!(key.expect("read"), None);

    // Fencing survives: a claim after the clear is newer than any before,
    // and the writer from before is refused.
    let new = s.claim_zone(&z).await.expect("claim");
    assert!(new > old, "{new:?} after {old:?}");
    let stale = s.commit(&[event(&z, old, 1, payload(1))]).await;
    assert!(
        matches!(stale, Err(StorageError::Fenced { .. })),
        "{stale:?}"
    );
    append_range(s, &z, new, 1..=2).await;
    assert_eq!(s.read_events(&z, Seq::ZERO).await.expect("read").len(), 2);
    assert_eq!(listed_zones(s).await, vec![z]);
}

/// Expands to one `#[tokio::test]` per whole-store promise; `$make` must
/// build a store no other test uses.
#[macro_export]
macro_rules! conformance_exclusive_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make;
            clearing_forgets_every_record_but_keeps_fencing,
        );
    };
}

/// Expands to one `#[tokio::test]` per promise for the backend that
/// `$make` (an async expression yielding `(Arc<dyn Storage>, guard)`) builds.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make;
            append_then_read_back_in_seq_order,
            reading_from_a_seq_returns_only_the_tail,
            snapshot_then_tail_replay,
            large_payloads_round_trip,
            reappending_after_a_crash_before_the_ack_is_harmless,
            a_second_writer_for_the_same_zone_is_refused,
            zones_do_not_see_each_others_events,
            booking_records_are_found_by_id,
            idempotency_keys_are_scoped_to_their_owner_and_expire,
            facility_records_round_trip,
            a_facility_record_takes_writes_only_under_its_newest_fence,
            history_samples_read_back_by_range_across_days_and_purge_by_age,
            dropping_a_zone_forgets_its_journal_and_snapshot,
            a_healthy_backend_answers_ping,
            a_commit_across_a_bucket_boundary_lands_whole,
            racing_claims_get_distinct_epochs_and_only_the_newest_writes,
            groups_of_one_commit_succeed_or_fail_on_their_own,
            an_older_snapshot_never_replaces_a_newer_one,
            upkeep_forgets_booking_records_past_their_forget_after,
            every_zone_with_state_is_listed_once,
            every_booking_record_is_listed_once_with_its_forget_time,
            every_idempotency_key_is_listed_once,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::conformance::$name(&*storage).await;
            }
        )*
    };
}
