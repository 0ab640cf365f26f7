//! Promises of the embedded backend beyond the conformance suite: what a
//! crash leaves behind is recovered, only a torn final WAL frame is ever
//! cut (any other damage fails loudly and drops nothing), one data
//! directory has one process, and upkeep forgets what has expired.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId, ZoneId};
use parkme_storage::embedded::EmbeddedStorage;
use parkme_storage::{Storage, StorageError, Write, ZoneKey};

fn zone() -> ZoneKey {
    ZoneKey::new(
        FacilityId::parse("f1").expect("id"),
        ZoneId::parse("z1").expect("id"),
    )
}

fn event(epoch: parkme_storage::Epoch, seq: u64) -> Write {
    Write::Event {
        zone: zone(),
        epoch,
        seq: Seq(seq),
        bytes: format!("e{seq}").into_bytes(),
    }
}

fn booking_id(id: &str) -> BookingId {
    BookingId::parse(id).expect("id")
}

/// The WAL segments of a data dir, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    found.sort();
    found
}

/// The segment holding the most bytes (the one just written to).
fn written_segment(dir: &Path) -> PathBuf {
    segments(dir)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a WAL segment")
}

fn corrupt_message(outcome: Result<EmbeddedStorage, StorageError>) -> String {
    match outcome {
        Err(StorageError::Corrupt(message)) => message,
        Err(other) => panic!("expected a Corrupt error, got {other:?}"),
        Ok(_) => panic!("a damaged WAL must not open"),
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_a_crash_before_any_checkpoint() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let storage = EmbeddedStorage::open(dir.path()).expect("open");
        let epoch = storage.claim_zone(&zone()).await.expect("claim");
        storage
            .commit(&[event(epoch, 1), event(epoch, 2)])
            .await
            .expect("commit");
        storage
            .commit(&[Write::Booking {
                id: booking_id("b1"),
                bytes: b"booking".to_vec(),
                forget_after: Some(Millis(i64::MAX)),
            }])
            .await
            .expect("commit");
        // Dropped without a checkpoint: only the WAL has these writes.
    }
    let storage = EmbeddedStorage::open(dir.path()).expect("reopen");
    let events = storage.read_events(&zone(), Seq::ZERO).await.expect("read");
    assert_eq!(events.len(), 2);
    let booking = storage.booking(&booking_id("b1")).await.expect("read");
    assert_eq!(booking, Some(b"booking".to_vec()));
}

#[tokio::test]
async fn checkpointed_writes_are_read_from_the_tables_after_reopen() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let storage = EmbeddedStorage::open(dir.path()).expect("open");
        let epoch = storage.claim_zone(&zone()).await.expect("claim");
        storage.commit(&[event(epoch, 1)]).await.expect("commit");
        storage.checkpoint().await.expect("checkpoint");
        storage.commit(&[event(epoch, 2)]).await.expect("commit");
    }
    let storage = EmbeddedStorage::open(dir.path()).expect("reopen");
    let seqs: Vec<u64> = storage
        .read_events(&zone(), Seq::ZERO)
        .await
        .expect("read")
        .iter()
        .map(|(s, _)| s.0)
        .collect();
    assert_eq!(seqs, vec![1, 2]);
}

#[tokio::test]
async fn a_torn_wal_tail_is_cut_off_and_earlier_commits_survive() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let storage = EmbeddedStorage::open(dir.path()).expect("open");
        let epoch = storage.claim_zone(&zone()).await.expect("claim");
        storage.commit(&[event(epoch, 1)]).await.expect("commit");
    }
    // A crash in the middle of the next append leaves half a frame.
    let segment = written_segment(dir.path());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open segment");
    file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9])
        .expect("torn write");
    drop(file);
    let storage = EmbeddedStorage::open(dir.path()).expect("reopen");
    let events = storage.read_events(&zone(), Seq::ZERO).await.expect("read");
    assert_eq!(events, vec![(Seq(1), b"e1".to_vec())]);
    let epoch = storage.claim_zone(&zone()).await.expect("claim");
    storage
        .commit(&[event(epoch, 2)])
        .await
        .expect("commit after recovery");
}

#[tokio::test]
async fn a_bad_checksum_before_acknowledged_frames_fails_loudly_and_drops_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let first_frame_len;
    {
        let storage = EmbeddedStorage::open(dir.path()).expect("open");
        let epoch = storage.claim_zone(&zone()).await.expect("claim");
        storage.commit(&[event(epoch, 1)]).await.expect("commit");
        first_frame_len = std::fs::metadata(written_segment(dir.path()))
            .expect("size")
            .len();
        storage.commit(&[event(epoch, 2)]).await.expect("commit");
        storage.commit(&[event(epoch, 3)]).await.expect("commit");
    }
    let segment = written_segment(dir.path());
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let size = bytes.len();
    // Flip a payload byte of the second frame; the third is intact.
    let at = usize::try_from(first_frame_len).expect("fits") + 10;
    bytes[at] ^= 0xff;
    std::fs::write(&segment, &bytes).expect("damage");

    let message = corrupt_message(EmbeddedStorage::open(dir.path()));
    let name = segment.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(message.contains(name), "names the segment: {message}");
    assert!(
        message.contains(&format!("offset {first_frame_len}")),
        "names the offset: {message}"
    );
    assert!(
        message.contains("checksum"),
        "says what was found: {message}"
    );
    let after = std::fs::metadata(&segment).expect("size").len();
    assert_eq!(after as usize, size, "nothing was cut");
}

#[tokio::test]
async fn a_torn_frame_in_an_older_wal_segment_fails_loudly() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let storage = EmbeddedStorage::open(dir.path()).expect("open");
        let epoch = storage.claim_zone(&zone()).await.expect("claim");
        storage
            .commit(&[event(epoch, 1), event(epoch, 2)])
            .await
            .expect("commit");
    }
    {
        // Reopening starts a new segment; this commit goes there.
        let storage = EmbeddedStorage::open(dir.path()).expect("reopen");
        let epoch = storage.claim_zone(&zone()).await.expect("claim");
        storage.commit(&[event(epoch, 3)]).await.expect("commit");
    }
    let all = segments(dir.path());
    assert!(all.len() >= 2, "two segments: {all:?}");
    let older = all
        .iter()
        .find(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .expect("a written older segment")
        .clone();
    assert_ne!(Some(&older), all.last());
    let len = std::fs::metadata(&older).expect("size").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&older)
        .expect("open");
    file.set_len(len - 3).expect("truncate");
    drop(file);
    let message = corrupt_message(EmbeddedStorage::open(dir.path()));
    let name = older.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(message.contains(name), "names the older segment: {message}");
}

#[tokio::test]
async fn a_second_open_of_the_same_data_dir_is_refused_naming_the_directory() {
    let dir = tempfile::tempdir().expect("dir");
    let first = EmbeddedStorage::open(dir.path()).expect("open");
    match EmbeddedStorage::open(dir.path()) {
        Err(StorageError::Unavailable(message)) => {
            assert!(
                message.contains(&dir.path().display().to_string()),
                "names the directory: {message}"
            );
            assert!(message.contains("in use"), "{message}");
        }
        other => panic!("a second open must be refused, got {other:?}"),
    }
    drop(first);
    EmbeddedStorage::open(dir.path()).expect("open once the first is gone");
}

#[tokio::test]
async fn a_reappended_event_reads_back_as_its_latest_write_across_checkpoints() {
    let dir = tempfile::tempdir().expect("dir");
    let storage = EmbeddedStorage::open(dir.path()).expect("open");
    let epoch = storage.claim_zone(&zone()).await.expect("claim");
    storage
        .commit(&[event(epoch, 1), event(epoch, 2), event(epoch, 3)])
        .await
        .expect("commit");
    storage.checkpoint().await.expect("checkpoint");
    let epoch = storage.claim_zone(&zone()).await.expect("claim");
    let rewrite = Write::Event {
        zone: zone(),
        epoch,
        seq: Seq(2),
        bytes: b"again".to_vec(),
    };
    storage
        .commit(&[rewrite, event(epoch, 4)])
        .await
        .expect("commit");
    storage.checkpoint().await.expect("checkpoint");
    let events = storage.read_events(&zone(), Seq(1)).await.expect("read");
    assert_eq!(
        events,
        vec![
            (Seq(2), b"again".to_vec()),
            (Seq(3), b"e3".to_vec()),
            (Seq(4), b"e4".to_vec())
        ]
    );
    storage
        .put_snapshot(&zone(), epoch, Seq(3), b"image".to_vec())
        .await
        .expect("snapshot");
    let tail = storage.read_events(&zone(), Seq(3)).await.expect("read");
    assert_eq!(tail, vec![(Seq(4), b"e4".to_vec())]);
}

#[tokio::test]
async fn a_dropped_zone_stays_dropped_after_a_crash() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let storage = EmbeddedStorage::open(dir.path()).expect("open");
        let epoch = storage.claim_zone(&zone()).await.expect("claim");
        storage
            .commit(&[event(epoch, 1), event(epoch, 2)])
            .await
            .expect("commit");
        storage.checkpoint().await.expect("checkpoint");
        // One more that only the WAL holds, then the drop.
        storage.commit(&[event(epoch, 3)]).await.expect("commit");
        storage.drop_zone(&zone()).await.expect("drop");
        assert!(
            storage
                .read_events(&zone(), Seq::ZERO)
                .await
                .expect("read")
                .is_empty()
        );
        // Dropped without a checkpoint after the drop.
    }
    let storage = EmbeddedStorage::open(dir.path()).expect("reopen");
    let events = storage.read_events(&zone(), Seq::ZERO).await.expect("read");
    assert!(
        events.is_empty(),
        "a dropped zone came back from the WAL: {events:?}"
    );
}

#[tokio::test]
async fn upkeep_purges_expired_idempotency_keys_and_due_bookings_for_good() {
    let dir = tempfile::tempdir().expect("dir");
    let owner = UserId::parse("u1").expect("id");
    {
        let storage = EmbeddedStorage::open(dir.path()).expect("open");
        storage
            .commit(&[
                Write::Idempotency {
                    owner: owner.clone(),
                    key: "k".into(),
                    booking: booking_id("b1"),
                    expires_at: Millis(1_000),
                    replaces: None,
                },
                Write::Booking {
                    id: booking_id("b1"),
                    bytes: b"ended".to_vec(),
                    forget_after: Some(Millis(5_000)),
                },
                Write::Booking {
                    id: booking_id("b2"),
                    bytes: b"live".to_vec(),
                    forget_after: None,
                },
            ])
            .await
            .expect("commit");
        let early = storage.upkeep(Millis(500)).await.expect("upkeep");
        assert_eq!((early.idempotency_keys, early.bookings), (0, 0));
        // Asked as of an earlier time, the key is still there on disk.
        let found = storage.idempotent_booking(&owner, "k", Millis(0)).await;
        assert_eq!(found.expect("read"), Some(booking_id("b1")));

        let purged = storage.upkeep(Millis(1_000)).await.expect("upkeep");
        assert_eq!((purged.idempotency_keys, purged.bookings), (1, 0));
        let found = storage.idempotent_booking(&owner, "k", Millis(0)).await;
        assert_eq!(found.expect("read"), None, "purged, not just expired");
        assert!(
            storage
                .booking(&booking_id("b1"))
                .await
                .expect("read")
                .is_some()
        );

        let forgotten = storage.upkeep(Millis(5_000)).await.expect("upkeep");
        assert_eq!(forgotten.bookings, 1);
        assert_eq!(
            storage.booking(&booking_id("b1")).await.expect("read"),
            None
        );
    }
    let storage = EmbeddedStorage::open(dir.path()).expect("reopen");
    assert_eq!(
        storage.booking(&booking_id("b1")).await.expect("read"),
        None
    );
    assert!(
        storage
            .booking(&booking_id("b2"))
            .await
            .expect("read")
            .is_some()
    );
    let later = storage.upkeep(Millis(i64::MAX)).await.expect("upkeep");
    assert_eq!(later.bookings, 0, "a record without a forget time stays");
}
