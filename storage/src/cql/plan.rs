//! What one group commit sends, decided before anything is sent: which
//! groups are refused outright (a writer known to be stale), the events of
//! the others grouped per zone and journal bucket, partition batches
//! capped in size, record TTLs, and how outcomes combine.
//!
//! Pure functions; nothing here talks to the cluster.

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
/// The latest expiry Cassandra accepts under its default overflow policy
/// (`REJECT`, CASSANDRA-14092): 2038-01-19T03:14:06Z, less a day of margin
/// for clock skew between this host and the server.
const LATEST_EXPIRY_SECS: i64 = i32::MAX as i64 - 86_400;

/// One event as bound to `append_event`:
/// `(epoch, payload, facility, zone, bucket, seq, expected owner_epoch)`.
pub type EventRow<'a> = (i64, &'a [u8], &'a str, &'a str, i64, i64, i64);

/// The events one zone writes in one commit, by journal bucket, and the
/// groups that wait for them.
#[derive(Debug)]
pub struct ZonePlan<'a> {
    pub zone: &'a ZoneKey,
    pub epoch: Epoch,
    pub buckets: BTreeMap<i64, Vec<EventRow<'a>>>,
}

/// A group commit, decided.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Per group: `Some` when it is refused before anything is sent.
    pub refused: Vec<Option<StorageError>>,
    /// Per group: the zone plans (indexes into `zones`) it depends on.
    pub zones_of: Vec<Vec<usize>>,
    pub zones: Vec<ZonePlan<'a>>,
}

pub fn bucket_size() -> i64 {
    // 4096 fits in an i64; the cast cannot truncate.
    BUCKET_SIZE as i64
}

pub fn bucket_of(seq: i64) -> i64 {
    seq.div_euclid(bucket_size())
}

/// Plans a group commit. `known` is the newest epoch this process knows
/// for a zone: a group writing a zone with an older epoch (than that, or
/// than another group of the same commit) is refused with `Fenced`
/// without being sent, so it lands nothing. That is a shortcut, never the
/// fence: the fence is the condition in the data.
pub fn plan<'a>(groups: &[&'a [Write]], known: impl Fn(&ZoneKey) -> Option<Epoch>) -> Plan<'a> {
    let mut newest: BTreeMap<&ZoneKey, Epoch> = BTreeMap::new();
    for (zone, epoch) in groups.iter().flat_map(|g| g.iter().filter_map(Write::zone)) {
        let entry = newest
            .entry(zone)
            .or_insert_with(|| known(zone).unwrap_or(epoch));
        *entry = (*entry).max(epoch);
    }
    let mut refused: Vec<Option<StorageError>> = groups
        .iter()
        .map(|group| {
            group
                .iter()
                .filter_map(Write::zone)
                .find_map(|(zone, ours)| {
                    let current = newest.get(zone).copied().unwrap_or(ours);
                    (ours < current).then(|| StorageError::Fenced {
                        zone: zone.to_string(),
                        current: current.0,
                        ours: ours.0,
                    })
                })
        })
        .collect();
    let mut zones: Vec<ZonePlan<'a>> = Vec::new();
    let mut index: BTreeMap<&ZoneKey, usize> = BTreeMap::new();
    let mut zones_of = vec![Vec::new(); groups.len()];
    for (i, group) in groups.iter().enumerate() {
        if refused[i].is_some() {
            continue;
        }
        let rows = match event_rows(group) {
            Ok(rows) => rows,
            Err(e) => {
                refused[i] = Some(e);
                continue;
            }
        };
        for (zone, epoch, row) in rows {
            let at = *index.entry(zone).or_insert_with(|| {
                zones.push(ZonePlan {
                    zone,
                    epoch,
                    buckets: BTreeMap::new(),
                });
                zones.len() - 1
            });
            zones[at].buckets.entry(row.4).or_default().push(row);
            if !zones_of[i].contains(&at) {
                zones_of[i].push(at);
            }
        }
    }
    for plan in &mut zones {
        for rows in plan.buckets.values_mut() {
            rows.sort_by_key(|row| row.5);
        }
    }
    Plan {
        refused,
        zones_of,
        zones,
    }
}

type Row<'a> = (&'a ZoneKey, Epoch, EventRow<'a>);

fn event_rows(group: &[Write]) -> Result<Vec<Row<'_>>, StorageError> {
    let mut rows = Vec::new();
    for write in group {
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
        let e = to_i64(epoch.0, "epoch")?;
        let row = (
            e,
            bytes.as_slice(),
            zone.facility.as_str(),
            zone.zone.as_str(),
            bucket_of(seq),
            seq,
            e,
        );
        rows.push((zone, *epoch, row));
    }
    Ok(rows)
}

/// Splits one partition's rows into batches of at most [`MAX_BATCH_BYTES`]
/// of payload (a larger single event goes alone).
pub fn chunks<'r, 'a>(rows: &'r [EventRow<'a>]) -> Vec<&'r [EventRow<'a>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        if i > start && bytes + row.1.len() > MAX_BATCH_BYTES {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += row.1.len();
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

fn ttl_secs(remaining_ms: i64, extra_secs: i64, now: Millis) -> i32 {
    let remaining_ms = remaining_ms.max(0);
    let secs =
        (remaining_ms / 1000 + i64::from(remaining_ms % 1000 != 0)).saturating_add(extra_secs);
    let until_latest = LATEST_EXPIRY_SECS.saturating_sub(now.0.div_euclid(1000));
    let cap = MAX_TTL_SECS.min(until_latest).max(1);
    i32::try_from(secs.clamp(1, cap)).unwrap_or(i32::MAX)
}

/// An idempotency record's TTL: until `expires_at` plus a grace period,
/// clamped to what the server accepts.
pub fn idempotency_ttl(expires_at: Millis, now: Millis) -> i32 {
    ttl_secs(
        expires_at.0.saturating_sub(now.0),
        IDEMPOTENCY_GRACE_SECS,
        now,
    )
    .max(3600)
}

/// A booking record's TTL: until its `forget_after` (at least a second: a
/// TTL of 0 would mean "forever").
pub fn forget_ttl(forget_after: Millis, now: Millis) -> i32 {
    ttl_secs(forget_after.0.saturating_sub(now.0), 0, now)
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
        (1, b"event", "f", "z", bucket_of(seq), seq, 1)
    }

    fn zone(z: &str) -> ZoneKey {
        ZoneKey::new(
            FacilityId::parse("f").expect("id"),
            ZoneId::parse(z).expect("id"),
        )
    }

    fn event(z: &str, epoch: u64, seq: u64) -> Write {
        Write::Event {
            zone: zone(z),
            epoch: Epoch(epoch),
            seq: Seq(seq),
            bytes: vec![1],
        }
    }

    #[test]
    fn buckets_hold_bucket_size_consecutive_seqs() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(4095), 0);
        assert_eq!(bucket_of(4096), 1);
        assert_eq!(bucket_of(3 * 4096 + 7), 3);
    }

    #[test]
    fn plans_group_events_by_zone_and_bucket_in_seq_order() {
        let first = vec![event("a", 2, 4095), event("b", 1, 1)];
        let second = vec![
            event("a", 2, 4096),
            Write::Booking {
                id: BookingId::parse("b1").expect("id"),
                bytes: vec![],
                forget_after: None,
            },
            event("a", 2, 4094),
        ];
        let groups: Vec<&[Write]> = vec![&first, &second];
        let plan = super::plan(&groups, |_| None);
        assert!(plan.refused.iter().all(Option::is_none));
        type Shape<'a> = (&'a str, u64, Vec<(i64, Vec<i64>)>);
        let shape: Vec<Shape<'_>> = plan
            .zones
            .iter()
            .map(|p| {
                let buckets = p
                    .buckets
                    .iter()
                    .map(|(b, rows)| (*b, rows.iter().map(|r| r.5).collect()))
                    .collect();
                (p.zone.zone.as_str(), p.epoch.0, buckets)
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a", 2, vec![(0, vec![4094, 4095]), (1, vec![4096])]),
                ("b", 1, vec![(0, vec![1])]),
            ]
        );
        assert_eq!(plan.zones_of, vec![vec![0, 1], vec![0]]);
    }

    #[test]
    fn a_group_with_an_epoch_known_to_be_stale_is_refused_whole() {
        let stale = vec![event("a", 1, 3), event("b", 5, 1)];
        let fresh = vec![event("a", 2, 3)];
        let other = vec![event("b", 5, 2)];
        let groups: Vec<&[Write]> = vec![&stale, &fresh, &other];
        let plan = super::plan(&groups, |_| None);
        assert!(matches!(
            plan.refused[0],
            Some(StorageError::Fenced {
                current: 2,
                ours: 1,
                ..
            })
        ));
        assert!(plan.refused[1].is_none() && plan.refused[2].is_none());
        let rows: usize = plan
            .zones
            .iter()
            .flat_map(|z| z.buckets.values())
            .map(Vec::len)
            .sum();
        assert_eq!(rows, 2, "nothing of the stale group is planned");
        let known = super::plan(&[&fresh[..]], |_| Some(Epoch(3)));
        assert!(known.refused[0].is_some(), "older than the epoch held here");
        let too_big = [event("a", 1, u64::MAX)];
        let plan = super::plan(&[&too_big[..]], |_| None);
        assert!(matches!(plan.refused[0], Some(StorageError::Corrupt(_))));
    }

    #[test]
    fn chunks_cap_payload_bytes_and_keep_every_row() {
        let big = vec![0u8; MAX_BATCH_BYTES / 2 + 1];
        let rows: Vec<EventRow<'_>> = (0..5)
            .map(|seq| (1, big.as_slice(), "f", "z", 0, seq, 1))
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
        // Found by the fencing test on Cassandra 5: from late 2026, 20
        // years would expire after 2038, which the server refuses.
        let late_2026 = Millis(1_796_000_000_000);
        let ttl = i64::from(idempotency_ttl(Millis(i64::MAX), late_2026));
        assert_eq!(ttl, LATEST_EXPIRY_SECS - 1_796_000_000);
    }

    #[test]
    fn booking_ttls_run_until_forget_after_and_never_mean_forever() {
        let now = Millis(1_000_000);
        assert_eq!(forget_ttl(now.plus_secs(400 * 86_400), now), 400 * 86_400);
        assert_eq!(forget_ttl(Millis(0), now), 1, "already due: gone at once");
        assert_eq!(forget_ttl(Millis(now.0 + 1), now), 1);
        assert_eq!(forget_ttl(Millis(i64::MAX), now), 630_720_000);
        let late_2026 = Millis(1_796_000_000_000);
        assert!(
            1_796_000_000 + i64::from(forget_ttl(Millis(i64::MAX), late_2026))
                <= i64::from(i32::MAX)
        );
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
