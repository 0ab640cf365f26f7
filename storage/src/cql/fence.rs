//! Fencing in the data: the epoch of a zone's writer lives in the very
//! partitions it writes, as the `static` column `owner_epoch` of every
//! journal bucket, and every append is a conditional batch
//! `... IF owner_epoch = E` inside one bucket. `storage/SCHEMA.md` states
//! the protocol and the argument that no interleaving loses an
//! acknowledged write; this module is that protocol:
//!
//! - [`CqlStorage::claim`]: take the next epoch from the zone's counter
//!   (a compare-and-set on the zone's snapshot partition), raise every
//!   listed bucket to it, then walk up from the top bucket until one is
//!   empty (or fresh), so the writer before can reach no bucket unfenced;
//! - [`CqlStorage::write_zone`]: a zone's events of one commit, bucket by
//!   bucket in seq order, each bucket one conditional batch (per 4 MiB),
//!   establishing a new bucket only after an append to the one below it
//!   applied.
//!
//! This module must never write to `zone_journal` without a condition on
//! `owner_epoch`, never send a bucket's batch before the lower buckets of
//! the same commit applied, and never report an unanswered transaction as
//! applied.

use std::collections::HashMap;

use futures_util::future::join_all;
use scylla::statement::batch::{Batch, BatchStatement, BatchType};

use super::CqlStorage;
use super::driver::{all_rows, exec_error, first_row, from_i64, lwt_answer, lwt_error, to_i64};
use super::plan::{EventRow, ZonePlan, bucket_of, chunks};
use crate::error::StorageError;
use crate::model::{Epoch, ZoneKey};

/// Compare-and-set rounds on the zone counter before a claim gives up.
const CLAIM_ATTEMPTS: usize = 32;
/// Rounds on one bucket's epoch before giving up (only racing claimers
/// make a round fail).
const FENCE_ATTEMPTS: usize = 16;
/// Buckets a claim walks up before giving up: each step means another
/// writer established a bucket during the claim, so a handful is plenty.
const WALK_LIMIT: i64 = 64;

/// What this process knows of one zone.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZoneFence {
    /// The newest epoch seen for the zone (claimed here, or learnt from a
    /// refusal): a write with an older one is refused before it is sent.
    pub newest: Epoch,
    /// The buckets this process holds under `newest`, if it claimed it.
    pub held: Option<Held>,
}

/// The journal buckets a claim holds: every listed bucket up to `top` is
/// fenced with its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The highest bucket fenced with our epoch (where appends go, or the
    /// spare one above the last written).
    pub top: i64,
    /// Whether an append of ours into `top` applied: only then may
    /// `top + 1` be established.
    pub top_written: bool,
}

/// Per-zone fencing knowledge of this process.
#[derive(Debug, Default)]
pub struct Fences {
    zones: HashMap<ZoneKey, ZoneFence>,
}

impl Fences {
    pub fn newest(&self, zone: &ZoneKey) -> Option<Epoch> {
        self.zones.get(zone).map(|f| f.newest)
    }

    /// What this process holds of `zone` under `epoch`.
    pub fn held(&self, zone: &ZoneKey, epoch: Epoch) -> Option<Held> {
        self.zones
            .get(zone)
            .filter(|f| f.newest == epoch)
            .and_then(|f| f.held)
    }

    /// A newer epoch exists for `zone` (ours or another writer's).
    pub fn learn(&mut self, zone: &ZoneKey, epoch: Epoch) {
        let fence = self.zones.entry(zone.clone()).or_default();
        if epoch > fence.newest {
            *fence = ZoneFence {
                newest: epoch,
                held: None,
            };
        }
    }

    pub fn hold(&mut self, zone: &ZoneKey, epoch: Epoch, held: Held) {
        let fence = self.zones.entry(zone.clone()).or_default();
        if epoch >= fence.newest {
            *fence = ZoneFence {
                newest: epoch,
                held: Some(held),
            };
        }
    }

    /// Forgets what is held of `zone` (it was dropped), keeping its epoch.
    pub fn release(&mut self, zone: &ZoneKey) {
        if let Some(fence) = self.zones.get_mut(zone) {
            fence.held = None;
        }
    }
}

/// How one bucket's epoch stands after we fenced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fenced {
    /// It carries our epoch; `fresh` when we established it (so it is
    /// certainly empty).
    Ours { fresh: bool },
    /// A newer writer holds it.
    Newer(u64),
}

impl CqlStorage {
    /// Makes the caller the zone's writer; see the module docs.
    pub(super) async fn claim(&self, zone: &ZoneKey) -> Result<Epoch, StorageError> {
        let (epoch, latest_seq) = self.next_epoch(zone).await?;
        self.fences().learn(zone, epoch);
        let listed = self.buckets_from(zone, 0).await?;
        let fenced = join_all(listed.iter().map(|&b| self.fence_bucket(zone, b, epoch))).await;
        for outcome in fenced {
            if let Fenced::Newer(current) = outcome? {
                return Err(self.superseded(zone, current, epoch));
            }
        }
        // Walk up from the top: stop at a bucket that holds nothing (its
        // writer could not have gone past it: a writer establishes a bucket
        // only after an append below it applied) or that we established.
        let mut at = match listed.last() {
            Some(&top) if !self.has_events(zone, top).await? => {
                return Ok(self.hold(zone, epoch, top));
            }
            Some(&top) => top + 1,
            None => bucket_of(latest_seq.saturating_add(1)),
        };
        for _ in 0..WALK_LIMIT {
            self.index_bucket(zone, at).await?;
            match self.fence_bucket(zone, at, epoch).await? {
                Fenced::Newer(current) => return Err(self.superseded(zone, current, epoch)),
                Fenced::Ours { fresh: true } => return Ok(self.hold(zone, epoch, at)),
                Fenced::Ours { fresh: false } => {
                    if !self.has_events(zone, at).await? {
                        return Ok(self.hold(zone, epoch, at));
                    }
                    at += 1;
                }
            }
        }
        Err(StorageError::Unavailable(format!(
            "claiming {zone}: another writer kept extending its journal for {WALK_LIMIT} buckets"
        )))
    }

    fn hold(&self, zone: &ZoneKey, epoch: Epoch, top: i64) -> Epoch {
        let held = Held {
            top,
            top_written: false,
        };
        self.fences().hold(zone, epoch, held);
        tracing::debug!(zone = %zone, epoch = epoch.0, top, "claimed zone");
        epoch
    }

    fn superseded(&self, zone: &ZoneKey, current: u64, ours: Epoch) -> StorageError {
        self.fences().learn(zone, Epoch(current));
        StorageError::Fenced {
            zone: zone.to_string(),
            current,
            ours: ours.0,
        }
    }

    /// Takes the next epoch from the zone's counter (the `owner_epoch` of
    /// its snapshot partition), with the newest snapshot seq seen then.
    async fn next_epoch(&self, zone: &ZoneKey) -> Result<(Epoch, i64), StorageError> {
        let (facility, zone_id) = (zone.facility.as_str(), zone.zone.as_str());
        for _ in 0..CLAIM_ATTEMPTS {
            let head = self
                .session
                .execute_unpaged(&self.st.read_head, (facility, zone_id))
                .await
                .map_err(|e| exec_error("reading a zone's epoch", &e))?;
            let head = first_row::<(Option<i64>, Option<i64>)>(head, "zone head")?;
            let (current, latest_seq) = head.unwrap_or((None, None));
            let latest_seq = latest_seq.unwrap_or(-1);
            let (result, next) = match current {
                None => (
                    self.session
                        .execute_unpaged(&self.st.first_claim, (facility, zone_id))
                        .await,
                    1,
                ),
                Some(current) => {
                    let next = current.checked_add(1).ok_or_else(|| {
                        StorageError::Corrupt(format!("epoch of {zone} overflows"))
                    })?;
                    let values = (next, facility, zone_id, current);
                    (
                        self.session
                            .execute_unpaged(&self.st.next_claim, values)
                            .await,
                        next,
                    )
                }
            };
            let result = result.map_err(|e| lwt_error("claiming a zone", &e))?;
            if lwt_answer(result)?.applied {
                return Ok((Epoch(from_i64(next, "zone epoch")?), latest_seq));
            }
        }
        Err(StorageError::Unavailable(format!(
            "claiming zone {zone} lost {CLAIM_ATTEMPTS} races in a row"
        )))
    }

    /// Raises one bucket's epoch to ours (or establishes it with ours when
    /// it has none).
    async fn fence_bucket(
        &self,
        zone: &ZoneKey,
        bucket: i64,
        epoch: Epoch,
    ) -> Result<Fenced, StorageError> {
        let e = to_i64(epoch.0, "epoch")?;
        let (facility, zone_id) = (zone.facility.as_str(), zone.zone.as_str());
        for _ in 0..FENCE_ATTEMPTS {
            let raised = self
                .session
                .execute_unpaged(&self.st.raise_bucket, (e, facility, zone_id, bucket, e))
                .await
                .map_err(|err| lwt_error("fencing a journal bucket", &err))?;
            let raised = lwt_answer(raised)?;
            let current = match (raised.applied, raised.bigint("owner_epoch")) {
                (true, _) => return Ok(Fenced::Ours { fresh: false }),
                (false, Some(current)) => current,
                (false, None) => match self.establish(zone, bucket, epoch).await? {
                    None => return Ok(Fenced::Ours { fresh: true }),
                    Some(current) => current,
                },
            };
            match current.cmp(&e) {
                std::cmp::Ordering::Equal => return Ok(Fenced::Ours { fresh: false }),
                std::cmp::Ordering::Greater => {
                    return Ok(Fenced::Newer(from_i64(current, "epoch")?));
                }
                // Changed under us by a racing claimer: look again.
                std::cmp::Ordering::Less => {}
            }
        }
        Err(StorageError::Unavailable(format!(
            "fencing bucket {bucket} of {zone} lost {FENCE_ATTEMPTS} races in a row"
        )))
    }

    /// Gives a bucket that has no epoch ours: `None` when that applied,
    /// else the epoch it has now.
    async fn establish(
        &self,
        zone: &ZoneKey,
        bucket: i64,
        epoch: Epoch,
    ) -> Result<Option<i64>, StorageError> {
        let e = to_i64(epoch.0, "epoch")?;
        let values = (e, zone.facility.as_str(), zone.zone.as_str(), bucket);
        let result = self
            .session
            .execute_unpaged(&self.st.establish_bucket, values)
            .await
            .map_err(|err| lwt_error("establishing a journal bucket", &err))?;
        let answer = lwt_answer(result)?;
        if answer.applied {
            return Ok(None);
        }
        // Not applied means it has an epoch now; a null here would be a
        // server answering nonsense.
        answer.bigint("owner_epoch").map(Some).ok_or_else(|| {
            StorageError::Unavailable(format!("bucket {bucket} of {zone}: no epoch and no claim"))
        })
    }

    /// Whether a bucket holds any event, read through Paxos (so it sees
    /// every append that will ever apply before our fence).
    async fn has_events(&self, zone: &ZoneKey, bucket: i64) -> Result<bool, StorageError> {
        let values = (zone.facility.as_str(), zone.zone.as_str(), bucket, i64::MIN);
        let result = self
            .session
            .execute_unpaged(&self.st.bucket_has_events, values)
            .await
            .map_err(|e| exec_error("reading a journal bucket", &e))?;
        Ok(!all_rows::<(i64,)>(result, "journal seq")?.is_empty())
    }

    /// The epoch a bucket carries, read through Paxos.
    async fn bucket_epoch(&self, zone: &ZoneKey, bucket: i64) -> Result<Option<i64>, StorageError> {
        let values = (zone.facility.as_str(), zone.zone.as_str(), bucket);
        let result = self
            .session
            .execute_unpaged(&self.st.bucket_epoch, values)
            .await
            .map_err(|e| exec_error("reading a bucket's epoch", &e))?;
        Ok(first_row::<(Option<i64>,)>(result, "bucket epoch")?.and_then(|(e,)| e))
    }

    pub(super) async fn index_bucket(
        &self,
        zone: &ZoneKey,
        bucket: i64,
    ) -> Result<(), StorageError> {
        let values = (zone.facility.as_str(), zone.zone.as_str(), bucket);
        self.session
            .execute_unpaged(&self.st.index_bucket, values)
            .await
            .map_err(|e| exec_error("indexing a journal bucket", &e))?;
        Ok(())
    }

    /// Writes one zone's events of a commit: bucket after bucket in seq
    /// order, so what lands of a failed commit is always a prefix.
    pub(super) async fn write_zone(&self, plan: &ZonePlan<'_>) -> Result<(), StorageError> {
        for (&bucket, rows) in &plan.buckets {
            self.ensure_held(plan.zone, plan.epoch, bucket).await?;
            for chunk in chunks(rows) {
                self.append(plan.zone, plan.epoch, bucket, chunk).await?;
            }
            let mut fences = self.fences();
            if let Some(held) = fences.held(plan.zone, plan.epoch)
                && held.top == bucket
            {
                let written = Held {
                    top_written: true,
                    ..held
                };
                fences.hold(plan.zone, plan.epoch, written);
            }
        }
        Ok(())
    }

    /// Makes sure `bucket` is fenced with our epoch before appending to
    /// it, establishing the buckets above our top one by one.
    async fn ensure_held(
        &self,
        zone: &ZoneKey,
        epoch: Epoch,
        bucket: i64,
    ) -> Result<(), StorageError> {
        let held = self.fences().held(zone, epoch);
        let mut held = match held {
            Some(held) => held,
            None => self.adopt(zone, epoch).await?,
        };
        while held.top < bucket {
            let next = held.top + 1;
            let below_written = held.top_written
                || (self.bucket_epoch(zone, held.top).await? == Some(to_i64(epoch.0, "epoch")?)
                    && self.has_events(zone, held.top).await?);
            if !below_written {
                return Err(StorageError::Corrupt(format!(
                    "journal of {zone}: events for bucket {next} while bucket {} holds none \
                     (seqs must be contiguous)",
                    held.top
                )));
            }
            self.index_bucket(zone, next).await?;
            match self.establish(zone, next, epoch).await? {
                None => {}
                Some(current) if current == to_i64(epoch.0, "epoch")? => {}
                Some(current) if current > to_i64(epoch.0, "epoch")? => {
                    return Err(self.superseded(zone, from_i64(current, "epoch")?, epoch));
                }
                Some(current) => {
                    // Only a writer that went past our claim could have done
                    // this; the zone's next claim fences it properly.
                    return Err(StorageError::Unavailable(format!(
                        "bucket {next} of {zone} carries the older epoch {current}; \
                         the zone must recover"
                    )));
                }
            }
            held = Held {
                top: next,
                top_written: false,
            };
            self.fences().hold(zone, epoch, held);
        }
        Ok(())
    }

    /// Takes up an epoch this process did not claim itself (claimed through
    /// another handle): its top bucket is the highest listed one.
    async fn adopt(&self, zone: &ZoneKey, epoch: Epoch) -> Result<Held, StorageError> {
        let listed = self.buckets_from(zone, 0).await?;
        let top = listed.last().copied().ok_or_else(|| {
            StorageError::Unavailable(format!(
                "zone {zone} was never claimed with epoch {}",
                epoch.0
            ))
        })?;
        let held = Held {
            top,
            top_written: false,
        };
        self.fences().hold(zone, epoch, held);
        Ok(held)
    }

    /// One conditional batch: every event of the chunk, applied only if
    /// the bucket still carries our epoch.
    async fn append(
        &self,
        zone: &ZoneKey,
        epoch: Epoch,
        bucket: i64,
        rows: &[EventRow<'_>],
    ) -> Result<(), StorageError> {
        let statement = BatchStatement::PreparedStatement(self.st.append_event.clone());
        let mut batch =
            Batch::new_with_statements(BatchType::Unlogged, vec![statement; rows.len()]);
        batch.set_serial_consistency(Some(self.target.options.serial_consistency));
        batch.set_is_idempotent(false);
        let result = self
            .session
            .batch(&batch, rows)
            .await
            .map_err(|e| lwt_error(&format!("appending to bucket {bucket} of {zone}"), &e))?;
        let answer = lwt_answer(result)?;
        if answer.applied {
            return Ok(());
        }
        let current = answer.bigint("owner_epoch").unwrap_or(0);
        let current = u64::try_from(current).unwrap_or(0);
        if current > epoch.0 {
            self.fences().learn(zone, Epoch(current));
        }
        Err(StorageError::Fenced {
            zone: zone.to_string(),
            current,
            ours: epoch.0,
        })
    }
}
