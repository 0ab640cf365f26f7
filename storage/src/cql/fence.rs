//! Fencing in the data: the epoch of a zone's writer lives in the very
//! partitions it writes, as the `static` column `owner_epoch` of every
//! journal bucket, and every append is a conditional batch
//! `... IF owner_epoch = E` inside one bucket. The zone's *head* (the
//! statics of its snapshot partition) holds the claim counter
//! (`owner_epoch`), the newest snapshot seq (`latest_seq`) and the highest
//! bucket ever established (`journal_top`). `storage/SCHEMA.md` states the
//! protocol and the argument that no interleaving loses an acknowledged
//! write; this module is that protocol:
//!
//! - [`CqlStorage::claim`]: one compare-and-set moves the head's epoch from
//!   `e` to `e + 1` (only if the whole head is as read), then every bucket
//!   from the one after the newest snapshot up to `journal_top` is raised
//!   to the new epoch. An older writer can neither append to those (their
//!   condition fails) nor establish a bucket above them (that needs a
//!   compare-and-set on the head with its own epoch, which fails too).
//! - [`CqlStorage::write_zone`]: a zone's events of one commit, bucket by
//!   bucket in seq order, each bucket one conditional batch (per 4 MiB); a
//!   bucket above `journal_top` is established first: head
//!   `journal_top = b IF owner_epoch = E AND journal_top = b - 1`, then the
//!   bucket's own epoch.
//!
//! This module must never write to `zone_journal` without a condition on
//! `owner_epoch`, never send a bucket's batch before the lower buckets of
//! the same commit applied, and never report an unanswered transaction as
//! applied.

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use scylla::statement::batch::{Batch, BatchStatement, BatchType};

use super::CqlStorage;
use super::driver::{exec_error, first_row, from_i64, lwt_answer, lwt_error, to_i64};
use super::plan::{EventRow, ZonePlan, bucket_of, chunks, first_failure};
use crate::error::StorageError;
use crate::model::{Epoch, ZoneKey};

/// Compare-and-set rounds on the zone head before a claim gives up (only
/// racing claimers, snapshots or bucket creations make a round fail).
const CLAIM_ATTEMPTS: usize = 32;
/// Rounds on one bucket's epoch before giving up.
const FENCE_ATTEMPTS: usize = 16;
/// Buckets a claim fences at once.
const FENCE_PARALLEL: usize = 16;

/// What this process knows of one zone.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZoneFence {
    /// The newest epoch seen for the zone (claimed here, or learnt from a
    /// refusal): a write with an older one is refused before it is sent.
    pub newest: Epoch,
    /// The highest journal bucket fenced with `newest`, if this process
    /// holds that epoch (`-1`: none yet).
    pub top: Option<i64>,
    /// The newest snapshot seq the claim of `newest` saw (`-1`: none):
    /// buckets wholly at or below it are dead, never written again.
    pub floor: i64,
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

    /// The top bucket this process holds of `zone` under `epoch`.
    pub fn top(&self, zone: &ZoneKey, epoch: Epoch) -> Option<i64> {
        self.zones
            .get(zone)
            .filter(|f| f.newest == epoch)
            .and_then(|f| f.top)
    }

    /// A newer epoch exists for `zone` (ours or another writer's).
    pub fn learn(&mut self, zone: &ZoneKey, epoch: Epoch) {
        let fence = self.zones.entry(zone.clone()).or_default();
        if epoch > fence.newest {
            *fence = ZoneFence {
                newest: epoch,
                top: None,
                floor: -1,
            };
        }
    }

    /// The newest snapshot seq seen when `epoch` was claimed or adopted.
    pub fn set_floor(&mut self, zone: &ZoneKey, epoch: Epoch, floor: i64) {
        if let Some(fence) = self.zones.get_mut(zone).filter(|f| f.newest == epoch) {
            fence.floor = floor;
        }
    }

    pub fn floor(&self, zone: &ZoneKey, epoch: Epoch) -> i64 {
        self.zones
            .get(zone)
            .filter(|f| f.newest == epoch)
            .map_or(-1, |f| f.floor)
    }

    pub fn hold(&mut self, zone: &ZoneKey, epoch: Epoch, top: i64) {
        let fence = self.zones.entry(zone.clone()).or_default();
        if epoch >= fence.newest {
            let floor = if epoch == fence.newest {
                fence.floor
            } else {
                -1
            };
            *fence = ZoneFence {
                newest: epoch,
                top: Some(top),
                floor,
            };
        }
    }

    /// Forgets what is held of `zone` (it was dropped), keeping its epoch.
    pub fn release(&mut self, zone: &ZoneKey) {
        if let Some(fence) = self.zones.get_mut(zone) {
            fence.top = None;
        }
    }
}

/// A zone's head as read through Paxos.
#[derive(Debug, Clone, Copy)]
struct Head {
    epoch: Option<i64>,
    latest_seq: i64,
    journal_top: i64,
}

impl CqlStorage {
    /// Makes the caller the zone's writer; see the module docs. Fails with
    /// `Fenced` if a newer claim overtook this one while it fenced.
    pub(super) async fn claim(&self, zone: &ZoneKey) -> Result<Epoch, StorageError> {
        let (epoch, head) = self.next_epoch(zone).await?;
        self.fences().learn(zone, epoch);
        // Every bucket an older writer may still append to; index them
        // too (a writer that died between the head and the index left one
        // unlisted), so what lands in them is read back.
        let live: Vec<i64> =
            (bucket_of(head.latest_seq.saturating_add(1))..=head.journal_top).collect();
        let fenced: Vec<Result<(), StorageError>> = stream::iter(live)
            .map(|bucket| async move {
                self.index_bucket(zone, bucket).await?;
                match self.fence_bucket(zone, bucket, epoch).await? {
                    None => Ok(()),
                    Some(current) => Err(self.superseded(zone, current, epoch)),
                }
            })
            .buffer_unordered(FENCE_PARALLEL)
            .collect()
            .await;
        first_failure(fenced)?;
        self.fences().hold(zone, epoch, head.journal_top);
        self.fences().set_floor(zone, epoch, head.latest_seq);
        tracing::debug!(zone = %zone, epoch = epoch.0, top = head.journal_top, "claimed zone");
        Ok(epoch)
    }

    fn superseded(&self, zone: &ZoneKey, current: u64, ours: Epoch) -> StorageError {
        self.fences().learn(zone, Epoch(current));
        StorageError::Fenced {
            zone: zone.to_string(),
            current,
            ours: ours.0,
        }
    }

    async fn read_head(&self, zone: &ZoneKey) -> Result<Head, StorageError> {
        let values = (zone.facility.as_str(), zone.zone.as_str());
        let result = self
            .session
            .execute_unpaged(&self.st.read_head, values)
            .await
            .map_err(|e| exec_error("reading a zone's head", &e))?;
        let row = first_row::<(Option<i64>, Option<i64>, Option<i64>)>(result, "zone head")?;
        let (epoch, latest_seq, journal_top) = row.unwrap_or((None, None, None));
        Ok(Head {
            epoch,
            latest_seq: latest_seq.unwrap_or(-1),
            journal_top: journal_top.unwrap_or(-1),
        })
    }

    /// Moves the head's epoch on by one, only if nothing else in the head
    /// moved since it was read: the head returned is the one the new epoch
    /// was taken on.
    async fn next_epoch(&self, zone: &ZoneKey) -> Result<(Epoch, Head), StorageError> {
        let (facility, zone_id) = (zone.facility.as_str(), zone.zone.as_str());
        for _ in 0..CLAIM_ATTEMPTS {
            let head = self.read_head(zone).await?;
            let (result, next) = match head.epoch {
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
                    let values = (
                        next,
                        facility,
                        zone_id,
                        current,
                        head.latest_seq,
                        head.journal_top,
                    );
                    let sent = self.session.execute_unpaged(&self.st.next_claim, values);
                    (sent.await, next)
                }
            };
            let result = result.map_err(|e| lwt_error("claiming a zone", &e))?;
            if lwt_answer(result)?.applied {
                let head = Head {
                    epoch: Some(next),
                    ..head
                };
                return Ok((Epoch(from_i64(next, "zone epoch")?), head));
            }
        }
        Err(StorageError::Unavailable(format!(
            "claiming zone {zone} lost {CLAIM_ATTEMPTS} races in a row"
        )))
    }

    /// Raises one bucket's epoch to ours, or establishes it with ours when
    /// it has none: `None` when it carries ours now, else the newer epoch
    /// that holds it.
    async fn fence_bucket(
        &self,
        zone: &ZoneKey,
        bucket: i64,
        epoch: Epoch,
    ) -> Result<Option<u64>, StorageError> {
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
                (true, _) => return Ok(None),
                (false, Some(current)) => current,
                (false, None) => {
                    let values = (e, facility, zone_id, bucket);
                    let established = self
                        .session
                        .execute_unpaged(&self.st.establish_bucket, values)
                        .await
                        .map_err(|err| lwt_error("establishing a journal bucket", &err))?;
                    let established = lwt_answer(established)?;
                    if established.applied {
                        return Ok(None);
                    }
                    // Someone established it first: look again.
                    match established.bigint("owner_epoch") {
                        Some(current) => current,
                        None => continue,
                    }
                }
            };
            match current.cmp(&e) {
                std::cmp::Ordering::Equal => return Ok(None),
                std::cmp::Ordering::Greater => return Ok(Some(from_i64(current, "epoch")?)),
                // Changed under us by a racing claimer: look again.
                std::cmp::Ordering::Less => {}
            }
        }
        Err(StorageError::Unavailable(format!(
            "fencing bucket {bucket} of {zone} lost {FENCE_ATTEMPTS} races in a row"
        )))
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
        }
        Ok(())
    }

    /// Makes sure `bucket` carries our epoch before appending to it,
    /// establishing the buckets above our top one by one, except dead ones:
    /// buckets wholly at or below the newest snapshot our claim saw are
    /// never written, so the top jumps past them (a restored zone has a
    /// snapshot at a high seq and no journal).
    async fn ensure_held(
        &self,
        zone: &ZoneKey,
        epoch: Epoch,
        bucket: i64,
    ) -> Result<(), StorageError> {
        let top = self.fences().top(zone, epoch);
        let mut top = match top {
            Some(top) => top,
            None => self.adopt(zone, epoch).await?,
        };
        let first_live = bucket_of(self.fences().floor(zone, epoch).saturating_add(1));
        while top < bucket {
            let next = if top + 1 < first_live && first_live <= bucket {
                first_live
            } else {
                top + 1
            };
            self.extend(zone, epoch, top, next).await?;
            top = next;
            self.fences().hold(zone, epoch, top);
        }
        Ok(())
    }

    /// Establishes bucket `next` (above our top `from`, with only dead
    /// buckets between) for our epoch: index row, then the head's
    /// `journal_top`, then the bucket's own epoch.
    async fn extend(
        &self,
        zone: &ZoneKey,
        epoch: Epoch,
        from: i64,
        next: i64,
    ) -> Result<(), StorageError> {
        let e = to_i64(epoch.0, "epoch")?;
        let (facility, zone_id) = (zone.facility.as_str(), zone.zone.as_str());
        self.index_bucket(zone, next).await?;
        let values = (next, facility, zone_id, e, from);
        let result = self
            .session
            .execute_unpaged(&self.st.extend_journal, values)
            .await
            .map_err(|err| lwt_error(&format!("opening bucket {next} of {zone}"), &err))?;
        let answer = lwt_answer(result)?;
        if !answer.applied {
            let owner = answer.bigint("owner_epoch");
            if owner != Some(e) {
                let current = owner.map_or(Ok(0), |o| from_i64(o, "epoch"))?;
                return Err(if current > epoch.0 {
                    self.superseded(zone, current, epoch)
                } else {
                    StorageError::Fenced {
                        zone: zone.to_string(),
                        current,
                        ours: epoch.0,
                    }
                });
            }
            // Only our epoch moves the head's top now; a top already at
            // `next` or past is our own earlier attempt whose answer was lost.
            if answer.bigint("journal_top").is_none_or(|top| top < next) {
                return Err(StorageError::Unavailable(format!(
                    "the journal head of {zone} does not match this writer; the zone must recover"
                )));
            }
        }
        match self.fence_bucket(zone, next, epoch).await? {
            None => Ok(()),
            Some(current) => Err(self.superseded(zone, current, epoch)),
        }
    }

    /// Takes up an epoch this process did not claim itself (claimed through
    /// another handle): refused unless it is the zone's current one.
    async fn adopt(&self, zone: &ZoneKey, epoch: Epoch) -> Result<i64, StorageError> {
        let head = self.read_head(zone).await?;
        let current = head.epoch.map_or(Ok(0), |e| from_i64(e, "epoch"))?;
        if current != epoch.0 {
            if current > epoch.0 {
                self.fences().learn(zone, Epoch(current));
            }
            return Err(StorageError::Fenced {
                zone: zone.to_string(),
                current,
                ours: epoch.0,
            });
        }
        self.fences().hold(zone, epoch, head.journal_top);
        self.fences().set_floor(zone, epoch, head.latest_seq);
        Ok(head.journal_top)
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
        let current = answer
            .bigint("owner_epoch")
            .map_or(Ok(0), |o| from_i64(o, "epoch"))?;
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
