//! Snapshots and what goes with them: storing one (fenced, and never
//! over a newer one), reading the newest, trimming old snapshots and the
//! journal buckets a snapshot made dead, and dropping a zone.
//!
//! A snapshot partition's `owner_epoch` is also the zone's claim counter
//! (`super::fence`), so a snapshot is stored only by the zone's current
//! writer: one conditional batch that inserts the row, moves
//! `latest_seq` forward and deletes the oldest rows beyond the ones kept,
//! applied only `IF owner_epoch = E AND latest_seq < seq`.
//!
//! This module must never write to `zone_snapshots` without a condition,
//! and never drop a journal bucket that holds a seq above a durable
//! snapshot.

use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchStatement, BatchType};

use super::CqlStorage;
use super::driver::{all_rows, exec_error, first_row, from_i64, lwt_answer, lwt_error, to_i64};
use super::plan::{bucket_size, first_failure};
use crate::error::StorageError;
use crate::model::{Epoch, ZoneKey};
use futures_util::future::join_all;
use parkme_engine::Seq;

/// Extra snapshot rows looked at when trimming, to sweep leftovers of an
/// earlier trim that did not apply.
const SNAPSHOT_SWEEP: usize = 8;
/// Most snapshot rows a zone drop deletes in one batch.
const DROP_SCAN: i32 = 256;

type Row<'a> = Box<dyn SerializeRow + Send + Sync + 'a>;

impl CqlStorage {
    /// The seqs of a zone's snapshot rows, newest first.
    async fn snapshot_seqs(&self, zone: &ZoneKey, limit: i32) -> Result<Vec<i64>, StorageError> {
        let values = (zone.facility.as_str(), zone.zone.as_str(), limit);
        let result = self
            .session
            .execute_unpaged(&self.st.select_snapshot_seqs, values)
            .await
            .map_err(|e| exec_error("listing snapshots", &e))?;
        Ok(all_rows::<(i64,)>(result, "snapshot seq")?
            .into_iter()
            .map(|(s,)| s)
            .collect())
    }

    /// A conditional batch on a zone's snapshot partition.
    fn snapshot_batch(&self, statements: Vec<BatchStatement>) -> Batch {
        let mut batch = Batch::new_with_statements(BatchType::Unlogged, statements);
        batch.set_serial_consistency(Some(self.target.options.serial_consistency));
        batch.set_is_idempotent(false);
        batch
    }

    pub(super) async fn store_snapshot(
        &self,
        zone: &ZoneKey,
        epoch: Epoch,
        seq: Seq,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        let (f, z) = (zone.facility.as_str(), zone.zone.as_str());
        let seq = to_i64(seq.0, "seq")?;
        let e = to_i64(epoch.0, "epoch")?;
        let kept = self.target.options.snapshots_kept.max(1);
        let scan = i32::try_from(kept + SNAPSHOT_SWEEP).unwrap_or(i32::MAX);
        // The new row plus the newest `kept - 1` older ones stay.
        let doomed: Vec<i64> = self
            .snapshot_seqs(zone, scan)
            .await?
            .into_iter()
            .filter(|s| *s < seq)
            .skip(kept - 1)
            .collect();
        let mut statements = vec![
            BatchStatement::PreparedStatement(self.st.insert_snapshot.clone()),
            BatchStatement::PreparedStatement(self.st.publish_snapshot.clone()),
        ];
        let mut values: Vec<Row<'_>> = vec![
            Box::new((f, z, seq, e, bytes)),
            Box::new((seq, f, z, e, seq)),
        ];
        for old in doomed {
            statements.push(BatchStatement::PreparedStatement(
                self.st.delete_snapshot.clone(),
            ));
            values.push(Box::new((f, z, old)));
        }
        let result = self
            .session
            .batch(&self.snapshot_batch(statements), values)
            .await
            .map_err(|err| lwt_error(&format!("storing a snapshot of {zone}"), &err))?;
        let answer = lwt_answer(result)?;
        if !answer.applied {
            let owner = answer.bigint("owner_epoch");
            if owner != Some(e) {
                let current = owner.map_or(Ok(0), |o| from_i64(o, "epoch"))?;
                if current > epoch.0 {
                    self.fences().learn(zone, Epoch(current));
                }
                return Err(StorageError::Fenced {
                    zone: zone.to_string(),
                    current,
                    ours: epoch.0,
                });
            }
            // Ours, but a snapshot at `seq` or later is already there.
            tracing::debug!(
                zone = %zone,
                seq,
                latest = answer.bigint("latest_seq"),
                "ignored a snapshot older than the stored one"
            );
            return Ok(());
        }
        // The snapshot is durable; dropping the buckets it made dead is
        // housekeeping that the next snapshot retries.
        if let Err(e) = self.drop_dead_buckets(zone, seq).await {
            tracing::warn!(zone = %zone, seq, error = %e, "could not trim behind a snapshot");
        }
        Ok(())
    }

    pub(super) async fn newest_snapshot(
        &self,
        zone: &ZoneKey,
    ) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let values = (zone.facility.as_str(), zone.zone.as_str());
        let result = self
            .session
            .execute_unpaged(&self.st.select_latest_snapshot, values)
            .await
            .map_err(|e| exec_error("reading a snapshot", &e))?;
        match first_row::<(i64, Vec<u8>)>(result, "snapshot")? {
            Some((seq, bytes)) => Ok(Some((Seq(from_i64(seq, "snapshot seq")?), bytes))),
            None => Ok(None),
        }
    }

    /// Drops the journal buckets that lie wholly at or below `seq`: dead,
    /// since every writer appends above the newest snapshot.
    async fn drop_dead_buckets(&self, zone: &ZoneKey, seq: i64) -> Result<(), StorageError> {
        // Bucket b holds seqs [b * B, (b + 1) * B): it is wholly <= seq when
        // (b + 1) * B <= seq + 1.
        let first_live = seq.saturating_add(1) / bucket_size();
        let dead: Vec<i64> = self
            .buckets_from(zone, 0)
            .await?
            .into_iter()
            .filter(|b| *b < first_live)
            .collect();
        debug_assert!(
            dead.iter()
                .all(|b| (b + 1).saturating_mul(bucket_size()) <= seq.saturating_add(1))
        );
        self.drop_buckets(zone, &dead).await
    }

    /// Deletes journal partitions whole (plain partition deletions: only
    /// ever of dead buckets or of a zone being dropped), then their index
    /// rows.
    async fn drop_buckets(&self, zone: &ZoneKey, buckets: &[i64]) -> Result<(), StorageError> {
        let drops = buckets.iter().map(|&bucket| async move {
            let values = (zone.facility.as_str(), zone.zone.as_str(), bucket);
            self.session
                .execute_unpaged(&self.st.delete_bucket, values)
                .await
                .map_err(|e| exec_error("dropping a journal bucket", &e))?;
            self.session
                .execute_unpaged(&self.st.unindex_bucket, values)
                .await
                .map_err(|e| exec_error("unindexing a journal bucket", &e))?;
            Ok(())
        });
        first_failure(join_all(drops).await)
    }

    /// Forgets a zone: claims it first (so no writer of it can append any
    /// more), then deletes its buckets and snapshots, keeping the claim
    /// counter so a zone re-created under the same id never reuses an
    /// epoch.
    pub(super) async fn forget_zone(&self, zone: &ZoneKey) -> Result<(), StorageError> {
        let epoch = self.claim(zone).await?;
        let buckets = self.buckets_from(zone, 0).await?;
        self.drop_buckets(zone, &buckets).await?;
        let (f, z) = (zone.facility.as_str(), zone.zone.as_str());
        self.session
            .execute_unpaged(&self.st.unindex_zone, (f, z))
            .await
            .map_err(|e| exec_error("dropping a zone's journal index", &e))?;
        let e = to_i64(epoch.0, "epoch")?;
        let mut statements = vec![BatchStatement::PreparedStatement(
            self.st.reset_snapshots.clone(),
        )];
        let mut values: Vec<Row<'_>> = vec![Box::new((f, z, e))];
        for old in self.snapshot_seqs(zone, DROP_SCAN).await? {
            statements.push(BatchStatement::PreparedStatement(
                self.st.delete_snapshot.clone(),
            ));
            values.push(Box::new((f, z, old)));
        }
        let result = self
            .session
            .batch(&self.snapshot_batch(statements), values)
            .await
            .map_err(|err| lwt_error(&format!("dropping the snapshots of {zone}"), &err))?;
        let answer = lwt_answer(result)?;
        if !answer.applied {
            let current = answer.bigint("owner_epoch").unwrap_or(0);
            return Err(StorageError::Fenced {
                zone: zone.to_string(),
                current: u64::try_from(current).unwrap_or(0),
                ours: epoch.0,
            });
        }
        self.fences().release(zone);
        Ok(())
    }
}
