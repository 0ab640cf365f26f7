//! Promises of the embedded backend beyond the conformance suite: what a
//! crash leaves behind is recovered, a torn WAL tail is cut off, and one
//! data directory has one writer.

use std::io::Write as _;

use parkme_engine::{BookingId, FacilityId, Seq, ZoneId};
use parkme_storage::embedded::EmbeddedStorage;
use parkme_storage::{Storage, Write, ZoneKey};

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
                id: BookingId::parse("b1").expect("id"),
                bytes: b"booking".to_vec(),
            }])
            .await
            .expect("commit");
        // Dropped without a checkpoint: only the WAL has these writes.
    }
    let storage = EmbeddedStorage::open(dir.path()).expect("reopen");
    let events = storage.read_events(&zone(), Seq::ZERO).await.expect("read");
    assert_eq!(events.len(), 2);
    let booking = storage
        .booking(&BookingId::parse("b1").expect("id"))
        .await
        .expect("read");
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
    let segment = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a WAL segment");
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
async fn a_second_process_cannot_open_the_same_data_dir() {
    let dir = tempfile::tempdir().expect("dir");
    let _first = EmbeddedStorage::open(dir.path()).expect("open");
    assert!(EmbeddedStorage::open(dir.path()).is_err());
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
