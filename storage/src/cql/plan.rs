//! What one group commit sends: its events grouped by journal partition,
//! partition batches capped in size, idempotency TTLs, and how the
//! outcomes of concurrent writes combine into one answer.

use std::collections::BTreeMap;

use parkme_engine::Millis;

use super::driver::to_i64;
use super::schema::BUCKET_SIZE;
use crate::error::StorageError;
use crate::model::{Epoch, Write, ZoneKey};

/// Most payload bytes in one partition batch; a larger group is split so a
/// single mutation stays well under the server's limit (half a commit log
/// segment: 8 MiB on the test server, 16 MiB by default).
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Idempotency keys live this much past `expires_at` (covers clock skew
/// between the caller's `now` and this host's clock; reads check
/// `expires_at` themselves).
const IDEMPOTENCY_GRACE_SECS: i64 = 3600;
/// Cassandra's and Scylla's largest TTL (20 years).
const MAX_TTL_SECS: i64 = 630_720_000;

/// The events of one journal partition in one commit.
#[derive(Debug)]
pub struct Partition<'a> {
    pub zone: &'a ZoneKey,
    pub bucket: i64,
    pub epoch: Epoch,
    pub rows: Vec<EventRow<'a>>,
}

/// `(facility, zone, bucket, seq, epoch, payload)`, as bound to
/// `insert_event`.
pub type EventRow<'a> = (&'a str, &'a str, i64, i64, i64, &'a [u8]);

pub fn bucket_size() -> i64 {
    // 4096 fits in an i64; the cast cannot truncate.
    BUCKET_SIZE as i64
}

pub fn bucket_of(seq: i64) -> i64 {
    seq.div_euclid(bucket_size())
}

/// Groups a commit's events by journal partition.
pub fn partitions(writes: &[Write]) -> Result<Vec<Partition<'_>>, StorageError> {
    let mut parts: BTreeMap<(&ZoneKey, i64), Partition<'_>> = BTreeMap::new();
    for write in writes {
        let Write::Event {
            zone,
            epoch,
            seq,
            bytes,
        } = write
        else {
            continue;
        };
        let seq = to_i64(seq.0, "seq")?;
        let bucket = bucket_of(seq);
        let part = parts.entry((zone, bucket)).or_insert_with(|| Partition {
            zone,
            bucket,
            epoch: *epoch,
            rows: Vec::new(),
        });
        part.epoch = part.epoch.max(*epoch);
        let row = (
            zone.facility.as_str(),
            zone.zone.as_str(),
            bucket,
            seq,
            to_i64(epoch.0, "epoch")?,
            bytes.as_slice(),
        );
        part.rows.push(row);
    }
    Ok(parts.into_values().collect())
}

/// Splits one partition's rows into batches of at most [`MAX_BATCH_BYTES`]
/// of payload (a larger single event goes alone).
pub fn chunks<'r, 'a>(rows: &'r [EventRow<'a>]) -> Vec<&'r [EventRow<'a>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        if i > start && bytes + row.5.len() > MAX_BATCH_BYTES {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += row.5.len();
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// An idempotency record's TTL: until `expires_at` plus a grace period,
/// clamped to what the server accepts.
pub fn idempotency_ttl(expires_at: Millis, now: Millis) -> i32 {
    let remaining_ms = expires_at.0.saturating_sub(now.0).max(0);
    let secs = (remaining_ms / 1000 + i64::from(remaining_ms % 1000 != 0))
        .saturating_add(IDEMPOTENCY_GRACE_SECS);
    i32::try_from(secs.clamp(IDEMPOTENCY_GRACE_SECS, MAX_TTL_SECS)).unwrap_or(i32::MAX)
}

/// The first `Fenced` error if any (the most telling), else the first error.
pub fn first_failure(outcomes: Vec<Result<(), StorageError>>) -> Result<(), StorageError> {
    let mut first = None;
    for outcome in outcomes {
        match outcome {
            Ok(()) => {}
            Err(e @ StorageError::Fenced { .. }) => return Err(e),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use parkme_engine::{BookingId, FacilityId, Seq, ZoneId};

    use super::*;

    fn row(seq: i64) -> EventRow<'static> {
        ("f", "z", bucket_of(seq), seq, 1, b"event")
    }

    #[test]
    fn buckets_hold_bucket_size_consecutive_seqs() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(4095), 0);
        assert_eq!(bucket_of(4096), 1);
        assert_eq!(bucket_of(3 * 4096 + 7), 3);
    }

    #[test]
    fn partitions_group_events_by_zone_and_bucket() {
        let zone = |z: &str| {
            ZoneKey::new(
                FacilityId::parse("f").expect("id"),
                ZoneId::parse(z).expect("id"),
            )
        };
        let event = |z: &str, epoch: u64, seq: u64| Write::Event {
            zone: zone(z),
            epoch: Epoch(epoch),
            seq: Seq(seq),
            bytes: vec![1],
        };
        let writes = vec![
            event("a", 1, 4095),
            event("a", 2, 4096),
            event("b", 1, 1),
            Write::Booking {
                id: BookingId::parse("b1").expect("id"),
                bytes: vec![],
            },
            event("a", 1, 4094),
        ];
        let parts = partitions(&writes).expect("partitions");
        let shape: Vec<(&str, i64, u64, Vec<i64>)> = parts
            .iter()
            .map(|p| {
                let seqs = p.rows.iter().map(|r| r.3).collect();
                (p.zone.zone.as_str(), p.bucket, p.epoch.0, seqs)
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a", 0, 1, vec![4095, 4094]),
                ("a", 1, 2, vec![4096]),
                ("b", 0, 1, vec![1]),
            ]
        );
        let too_big = vec![Write::Event {
            zone: zone("a"),
            epoch: Epoch(1),
            seq: Seq(u64::MAX),
            bytes: vec![],
        }];
        assert!(matches!(
            partitions(&too_big),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn chunks_cap_payload_bytes_and_keep_every_row() {
        let big = vec![0u8; MAX_BATCH_BYTES / 2 + 1];
        let rows: Vec<EventRow<'_>> = (0..5)
            .map(|seq| ("f", "z", 0, seq, 1, big.as_slice()))
            .collect();
        let sizes: Vec<usize> = chunks(&rows).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1, 1, 1]);
        let small: Vec<EventRow<'_>> = (0..1000).map(row).collect();
        assert_eq!(chunks(&small).len(), 1);
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn idempotency_ttls_cover_the_key_life_plus_grace() {
        let now = Millis(1_000_000);
        assert_eq!(idempotency_ttl(Millis(0), now), 3600, "expired: grace only");
        assert_eq!(idempotency_ttl(now.plus_secs(86_400), now), 86_400 + 3600);
        assert_eq!(idempotency_ttl(Millis(now.0 + 1), now), 3601, "rounded up");
        assert_eq!(idempotency_ttl(Millis(i64::MAX), now), 630_720_000);
    }

    #[test]
    fn fenced_outcomes_win_over_other_failures() {
        let fenced = StorageError::Fenced {
            zone: "f/z".into(),
            current: 2,
            ours: 1,
        };
        let outcomes = vec![
            Ok(()),
            Err(StorageError::Unavailable("x".into())),
            Err(fenced.clone()),
        ];
        assert_eq!(first_failure(outcomes), Err(fenced));
        assert_eq!(first_failure(vec![Ok(()), Ok(())]), Ok(()));
    }
}
