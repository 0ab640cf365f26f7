//! The CQL backend: ScyllaDB or any CQL-compatible cluster (Cassandra 5 in
//! the tests), selected by `PARKME_STORAGE=scylla://host:port,.../keyspace`.
//!
//! - `uri`: the `scylla://` URI and [`CqlOptions`] (replication,
//!   consistency, timeouts).
//! - `schema`: the tables (created if missing) and prepared statements;
//!   `storage/SCHEMA.md` documents the layout and why it is shaped so.
//! - `plan`: what one commit sends (events grouped by journal partition,
//!   batch size caps, idempotency TTLs) and how its outcomes combine.
//! - `driver`: driver errors to [`StorageError`] kinds, typed rows,
//!   lightweight-transaction answers.
//!
//! # Writes
//! A [`Storage::commit`] is one group commit: the epochs of its zones are
//! read first (at `SERIAL`), then every write is sent at once, one
//! `UNLOGGED` batch per journal partition (a batch inside one partition is
//! applied atomically and costs one mutation) and one statement per
//! booking or idempotency record, all prepared, routed token-aware by the
//! driver, and awaited together. `Ok` means every replica set acknowledged
//! at the configured consistency.
//!
//! # Tombstones
//! Deletes in Cassandra/Scylla write tombstones that every read has to
//! step over until compaction purges them after `gc_grace_seconds`. A
//! journal trimmed by `DELETE ... WHERE seq <= n` would leave a range
//! tombstone at the head of the very partition every replay and every
//! append touches, piling up one per snapshot. So the journal is bucketed:
//! partition `(facility, zone, seq / 4096)`. A snapshot at seq `n` drops
//! only the buckets that lie entirely at or below `n`, each with a single
//! partition-level deletion of a partition that is never written or read
//! again; the hot bucket is never deleted from. The small
//! `journal_buckets` index (one row per bucket) gets one row tombstone per
//! 4096 events, below the range any replay reads. Snapshots are clustered
//! newest first, so reading the latest stops at the first live row, and
//! the old ones are deleted by key (a few row tombstones behind it, never
//! scanned by that read). Idempotency keys expire by TTL and are never
//! deleted; no write ever binds a null (a null is a tombstone too).
//!
//! # Fencing, and its window
//! [`Storage::claim_zone`] bumps `zone_epochs` with lightweight
//! transactions (`INSERT ... IF NOT EXISTS`, then `UPDATE ... IF epoch = ?`
//! until it wins), so epochs strictly increase even with racing claimers.
//! A commit or snapshot reads its zones' epochs at `SERIAL` (a Paxos read:
//! it sees every completed claim, and completes one in flight) and refuses
//! the whole batch with [`StorageError::Fenced`] before writing anything.
//! What remains is a window between that read and the arrival of the
//! writes: a claim that completes inside it does not stop writes already
//! checked, so a deposed writer's commit already past its check (one, with
//! one group committer per process) can land after a new owner claimed,
//! within one request timeout; its next commit is fenced. A new
//! owner therefore should claim first and read the journal after, and it
//! overwrites any seq it writes itself. Closing the window entirely would
//! need every journal write to be a Paxos round.
//!
//! # Failures
//! Connection errors, timeouts, `Unavailable`/`Overloaded` answers map to
//! [`StorageError::Unavailable`] (retryable); schema or statement errors to
//! [`StorageError::Corrupt`]. A failed commit may have landed in part (the
//! batches of other partitions are not rolled back): the group committer
//! poisons its zones and their owners recover from what is durable, which
//! is the same situation as a crash before the ack.
//!
//! This module must never acknowledge a commit before every one of its
//! writes was acknowledged, and never range-delete inside a journal
//! partition.

mod driver;
mod plan;
mod schema;
mod uri;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::TryStreamExt;
use futures_util::future::{BoxFuture, FutureExt, join_all};
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::ExecutionError;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchStatement, BatchType};

use self::driver::{
    all_rows, exec_error, first_row, from_i64, lwt_outcome, pager_error, rows_error, session_error,
    to_i64,
};
use self::plan::{
    EventRow, Partition, bucket_of, bucket_size, chunks, first_failure, idempotency_ttl, partitions,
};
pub use self::schema::BUCKET_SIZE;
use self::schema::Statements;
pub use self::uri::{CqlOptions, CqlUri, CqlUriError, Replication};
use crate::backend::Storage;
use crate::error::StorageError;
use crate::model::{Epoch, Write, ZoneKey};

/// Lightweight-transaction rounds `claim_zone` tries before giving up.
const CLAIM_ATTEMPTS: usize = 32;
/// Extra snapshot rows looked at when trimming, to sweep leftovers of an
/// earlier trim that failed half way.
const SNAPSHOT_SWEEP: usize = 8;

/// One in-flight write of a commit.
type InFlight<'a> = BoxFuture<'a, Result<QueryResult, ExecutionError>>;

/// Why [`CqlStorage::connect`] failed: a bad URI (permanent) or a cluster
/// that could not be reached or set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CqlConnectError {
    #[error(transparent)]
    Uri(#[from] CqlUriError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl CqlConnectError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, CqlConnectError::Storage(e) if e.is_retryable())
    }
}

/// The CQL store: one driver session (connection pools to every node,
/// token-aware routing) and the prepared statements.
pub struct CqlStorage {
    session: Session,
    st: Statements,
    target: CqlUri,
    /// The journal bucket this process last indexed per zone, and under
    /// which epoch: within one epoch only this process writes the zone, so
    /// the index row needs writing once per bucket, not once per commit.
    indexed: Mutex<HashMap<ZoneKey, (Epoch, i64)>>,
}

impl std::fmt::Debug for CqlStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CqlStorage")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl CqlStorage {
    /// Parses a `scylla://` URI, connects, and creates the keyspace and
    /// tables that are missing.
    pub async fn connect(uri: &str) -> Result<Self, CqlConnectError> {
        Ok(Self::connect_to(CqlUri::parse(uri)?).await?)
    }

    /// Connects to a parsed target (options adjusted by the caller).
    pub async fn connect_to(target: CqlUri) -> Result<Self, StorageError> {
        let options = &target.options;
        let profile = ExecutionProfile::builder()
            .consistency(options.consistency)
            .serial_consistency(Some(options.serial_consistency))
            .request_timeout(Some(options.request_timeout))
            .build();
        let builder = SessionBuilder::new()
            .known_nodes(&target.hosts)
            .connection_timeout(options.connect_timeout)
            .default_execution_profile_handle(profile.into_handle());
        // The driver bounds each connection attempt; this bounds the whole
        // start (name resolution, metadata fetch) as well.
        let bound = options.connect_timeout * 3;
        let session = tokio::time::timeout(bound, builder.build())
            .await
            .map_err(|_| {
                StorageError::Unavailable(format!(
                    "no CQL node of {target} answered within {bound:?}"
                ))
            })?
            .map_err(|e| session_error(&target, &e))?;
        schema::create(&session, &target).await?;
        let st = Statements::prepare(&session, &target).await?;
        tracing::info!(target_uri = %target, "connected to the CQL cluster");
        Ok(Self {
            session,
            st,
            target,
            indexed: Mutex::new(HashMap::new()),
        })
    }

    /// The keyspace this store lives in.
    pub fn keyspace(&self) -> &str {
        &self.target.keyspace
    }

    /// The driver session, for tools and tests (e.g. dropping a keyspace).
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn indexed(&self) -> MutexGuard<'_, HashMap<ZoneKey, (Epoch, i64)>> {
        // Only plain map operations run under this lock: recover from a
        // poisoned lock rather than failing every later commit.
        self.indexed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The zone's current epoch, read through Paxos (0 if never claimed).
    async fn current_epoch(&self, zone: &ZoneKey) -> Result<u64, StorageError> {
        let result = self
            .session
            .execute_unpaged(&self.st.read_epoch, key(zone))
            .await
            .map_err(|e| exec_error("reading a zone epoch", &e))?;
        match first_row::<(i64,)>(result, "zone epoch")? {
            Some((epoch,)) => from_i64(epoch, "zone epoch"),
            None => Ok(0),
        }
    }

    /// Refuses the writes if any zone among them was claimed by a newer
    /// epoch; reads the epochs of all zones concurrently.
    async fn check_epochs<'z>(
        &self,
        zones: impl IntoIterator<Item = (&'z ZoneKey, Epoch)>,
    ) -> Result<(), StorageError> {
        let mut oldest: BTreeMap<&ZoneKey, Epoch> = BTreeMap::new();
        for (zone, epoch) in zones {
            let entry = oldest.entry(zone).or_insert(epoch);
            *entry = (*entry).min(epoch);
        }
        let checks = oldest.into_iter().map(|(zone, ours)| async move {
            let current = self.current_epoch(zone).await?;
            ours.admit(zone, current)
        });
        first_failure(join_all(checks).await)
    }

    /// Makes sure every journal partition about to be written is listed
    /// in `journal_buckets` before its events land, so a reader never
    /// misses a bucket.
    async fn index_buckets(&self, parts: &[Partition<'_>]) -> Result<(), StorageError> {
        let missing: Vec<&Partition<'_>> = {
            let indexed = self.indexed();
            parts
                .iter()
                .filter(|p| indexed.get(p.zone) != Some(&(p.epoch, p.bucket)))
                .collect()
        };
        let writes = missing.iter().map(|p| async move {
            let values = (p.zone.facility.as_str(), p.zone.zone.as_str(), p.bucket);
            self.session
                .execute_unpaged(&self.st.index_bucket, values)
                .await
                .map_err(|e| exec_error("indexing a journal bucket", &e))?;
            self.indexed().insert(p.zone.clone(), (p.epoch, p.bucket));
            Ok(())
        });
        first_failure(join_all(writes).await)
    }

    /// The zone's journal buckets at or above `from`, ascending.
    async fn buckets_from(&self, zone: &ZoneKey, from: i64) -> Result<Vec<i64>, StorageError> {
        let values = (zone.facility.as_str(), zone.zone.as_str(), from);
        let result = self
            .session
            .execute_unpaged(&self.st.select_buckets_from, values)
            .await
            .map_err(|e| exec_error("listing journal buckets", &e))?;
        Ok(all_rows::<(i64,)>(result, "journal bucket")?
            .into_iter()
            .map(|(b,)| b)
            .collect())
    }

    /// Deletes journal partitions whole, then their index rows.
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

    /// After a snapshot at `seq`: keeps the newest snapshots, deletes the
    /// older ones by key, and drops journal buckets wholly at or below `seq`.
    async fn retire(&self, zone: &ZoneKey, seq: i64) -> Result<(), StorageError> {
        let kept = self.target.options.snapshots_kept.max(1);
        let scan = i32::try_from(kept + SNAPSHOT_SWEEP).unwrap_or(i32::MAX);
        let values = (zone.facility.as_str(), zone.zone.as_str(), scan);
        let result = self
            .session
            .execute_unpaged(&self.st.select_snapshot_seqs, values)
            .await
            .map_err(|e| exec_error("listing snapshots", &e))?;
        let seqs = all_rows::<(i64,)>(result, "snapshot seq")?;
        let deletes = seqs.iter().skip(kept).map(|&(old,)| {
            let values = (zone.facility.as_str(), zone.zone.as_str(), old);
            self.session
                .execute_unpaged(&self.st.delete_snapshot, values)
        });
        for outcome in join_all(deletes).await {
            outcome.map_err(|e| exec_error("deleting an old snapshot", &e))?;
        }

        // Bucket b holds seqs [b * B, (b + 1) * B): it is wholly <= seq when
        // (b + 1) * B <= seq + 1.
        let first_live = seq.saturating_add(1) / bucket_size();
        let values = (zone.facility.as_str(), zone.zone.as_str(), first_live);
        let result = self
            .session
            .execute_unpaged(&self.st.select_buckets_below, values)
            .await
            .map_err(|e| exec_error("listing journal buckets", &e))?;
        let dead: Vec<i64> = all_rows::<(i64,)>(result, "journal bucket")?
            .into_iter()
            .map(|(b,)| b)
            .collect();
        debug_assert!(
            dead.iter()
                .all(|b| (b + 1).saturating_mul(bucket_size()) <= seq.saturating_add(1))
        );
        if dead.is_empty() {
            return Ok(());
        }
        {
            let mut indexed = self.indexed();
            if indexed.get(zone).is_some_and(|(_, b)| *b < first_live) {
                indexed.remove(zone);
            }
        }
        self.drop_buckets(zone, &dead).await
    }

    /// One `UNLOGGED` batch per chunk of more than one event of a journal
    /// partition (single events go as plain statements).
    fn partition_batches<'p, 'a>(
        &self,
        parts: &'p [Partition<'a>],
    ) -> Vec<(Batch, &'p [EventRow<'a>])> {
        parts
            .iter()
            .flat_map(|p| chunks(&p.rows))
            .filter(|rows| rows.len() > 1)
            .map(|rows| {
                let statement = BatchStatement::PreparedStatement(self.st.insert_event.clone());
                let mut batch =
                    Batch::new_with_statements(BatchType::Unlogged, vec![statement; rows.len()]);
                batch.set_is_idempotent(true);
                (batch, rows)
            })
            .collect()
    }

    /// One statement per booking or idempotency record of a commit.
    fn record_sends<'a>(&'a self, writes: &'a [Write], sends: &mut Vec<InFlight<'a>>) {
        let now = wall_clock();
        for write in writes {
            match write {
                Write::Event { .. } => {}
                Write::Booking { id, bytes } => {
                    let values = (id.as_str(), bytes.as_slice());
                    let send = self
                        .session
                        .execute_unpaged(&self.st.upsert_booking, values);
                    sends.push(send.boxed());
                }
                Write::Idempotency {
                    owner,
                    key,
                    booking,
                    expires_at,
                } => {
                    let values = (
                        owner.as_str(),
                        key.as_str(),
                        booking.as_str(),
                        expires_at.0,
                        idempotency_ttl(*expires_at, now),
                    );
                    let send = self
                        .session
                        .execute_unpaged(&self.st.upsert_idempotency, values);
                    sends.push(send.boxed());
                }
            }
        }
    }

    /// One round of the claim: `Ok(Some(epoch))` when won, `Ok(None)` with
    /// `seen` updated when another claimer got there first.
    async fn try_claim(
        &self,
        zone: &ZoneKey,
        seen: &mut Option<i64>,
    ) -> Result<Option<Epoch>, StorageError> {
        let (facility, zone_id) = key(zone);
        let (won, epoch, current) = match *seen {
            None => {
                let result = self
                    .session
                    .execute_unpaged(&self.st.insert_first_epoch, (facility, zone_id))
                    .await
                    .map_err(|e| exec_error("claiming a zone", &e))?;
                let (applied, current) = lwt_outcome(result)?;
                (applied, 1, current)
            }
            Some(expected) => {
                let next = expected
                    .checked_add(1)
                    .ok_or_else(|| StorageError::Corrupt(format!("epoch of {zone} overflows")))?;
                let values = (next, facility, zone_id, expected);
                let result = self
                    .session
                    .execute_unpaged(&self.st.bump_epoch, values)
                    .await
                    .map_err(|e| exec_error("claiming a zone", &e))?;
                let (applied, current) = lwt_outcome(result)?;
                (applied, next, current)
            }
        };
        if won {
            return Ok(Some(Epoch(from_i64(epoch, "zone epoch")?)));
        }
        // Lost: `current` is what the row holds now (none if it vanished).
        *seen = current;
        Ok(None)
    }
}

fn wall_clock() -> Millis {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    Millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn key(zone: &ZoneKey) -> (&str, &str) {
    (zone.facility.as_str(), zone.zone.as_str())
}

#[async_trait]
impl Storage for CqlStorage {
    fn name(&self) -> &'static str {
        "scylla"
    }

    async fn commit(&self, writes: &[Write]) -> Result<(), StorageError> {
        if writes.is_empty() {
            return Ok(());
        }
        let parts = partitions(writes)?;
        self.check_epochs(writes.iter().filter_map(Write::zone))
            .await?;
        self.index_buckets(&parts).await?;

        let batches = self.partition_batches(&parts);
        let mut sends: Vec<InFlight<'_>> = Vec::new();
        for (batch, rows) in &batches {
            sends.push(self.session.batch(batch, *rows).boxed());
        }
        for rows in parts.iter().flat_map(|p| chunks(&p.rows)) {
            if let [row] = rows {
                let single = self.session.execute_unpaged(&self.st.insert_event, *row);
                sends.push(single.boxed());
            }
        }
        self.record_sends(writes, &mut sends);
        let outcomes = join_all(sends).await;
        first_failure(
            outcomes
                .into_iter()
                .map(|o| o.map(drop).map_err(|e| exec_error("committing", &e)))
                .collect(),
        )
    }

    async fn read_events(
        &self,
        zone: &ZoneKey,
        after: Seq,
    ) -> Result<Vec<(Seq, Vec<u8>)>, StorageError> {
        let Ok(after) = i64::try_from(after.0) else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        for bucket in self
            .buckets_from(zone, bucket_of(after.saturating_add(1)))
            .await?
        {
            let values = (zone.facility.as_str(), zone.zone.as_str(), bucket, after);
            let mut rows = self
                .session
                .execute_iter(self.st.select_events.clone(), values)
                .await
                .map_err(|e| pager_error("reading the journal", &e))?
                .rows_stream::<(i64, Vec<u8>)>()
                .map_err(|e| rows_error("journal", e))?;
            while let Some((seq, bytes)) = rows
                .try_next()
                .await
                .map_err(|e| StorageError::Unavailable(format!("reading the journal: {e}")))?
            {
                events.push((Seq(from_i64(seq, "seq")?), bytes));
            }
        }
        debug_assert!(events.windows(2).all(|w| w[0].0 < w[1].0));
        Ok(events)
    }

    async fn put_snapshot(
        &self,
        zone: &ZoneKey,
        epoch: Epoch,
        seq: Seq,
        bytes: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.check_epochs([(zone, epoch)]).await?;
        let seq = to_i64(seq.0, "seq")?;
        let values = (
            zone.facility.as_str(),
            zone.zone.as_str(),
            seq,
            bytes.as_slice(),
        );
        self.session
            .execute_unpaged(&self.st.insert_snapshot, values)
            .await
            .map_err(|e| exec_error("writing a snapshot", &e))?;
        // The snapshot is durable; trimming is housekeeping that the next
        // snapshot retries, so its failure does not fail the snapshot.
        if let Err(e) = self.retire(zone, seq).await {
            tracing::warn!(zone = %zone, seq, error = %e, "could not trim behind a snapshot");
        }
        Ok(())
    }

    async fn latest_snapshot(
        &self,
        zone: &ZoneKey,
    ) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let result = self
            .session
            .execute_unpaged(&self.st.select_latest_snapshot, key(zone))
            .await
            .map_err(|e| exec_error("reading a snapshot", &e))?;
        match first_row::<(i64, Vec<u8>)>(result, "snapshot")? {
            Some((seq, bytes)) => Ok(Some((Seq(from_i64(seq, "snapshot seq")?), bytes))),
            None => Ok(None),
        }
    }

    async fn claim_zone(&self, zone: &ZoneKey) -> Result<Epoch, StorageError> {
        let mut seen = None;
        for _ in 0..CLAIM_ATTEMPTS {
            if let Some(epoch) = self.try_claim(zone, &mut seen).await? {
                tracing::debug!(zone = %zone, epoch = epoch.0, "claimed zone");
                return Ok(epoch);
            }
        }
        Err(StorageError::Unavailable(format!(
            "claiming zone {zone} lost {CLAIM_ATTEMPTS} races in a row"
        )))
    }

    async fn drop_zone(&self, zone: &ZoneKey) -> Result<(), StorageError> {
        let buckets = self.buckets_from(zone, 0).await?;
        self.drop_buckets(zone, &buckets).await?;
        self.indexed().remove(zone);
        let (index, snapshots) = tokio::join!(
            self.session
                .execute_unpaged(&self.st.unindex_zone, key(zone)),
            self.session
                .execute_unpaged(&self.st.delete_snapshots, key(zone)),
        );
        index.map_err(|e| exec_error("dropping a zone's journal index", &e))?;
        snapshots.map_err(|e| exec_error("dropping a zone's snapshots", &e))?;
        Ok(())
    }

    async fn put_facility(&self, id: &FacilityId, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.session
            .execute_unpaged(&self.st.upsert_facility, (id.as_str(), bytes.as_slice()))
            .await
            .map_err(|e| exec_error("writing a facility", &e))?;
        Ok(())
    }

    async fn facilities(&self) -> Result<Vec<(FacilityId, Vec<u8>)>, StorageError> {
        let mut rows = self
            .session
            .execute_iter(self.st.select_facilities.clone(), ())
            .await
            .map_err(|e| pager_error("listing facilities", &e))?
            .rows_stream::<(String, Vec<u8>)>()
            .map_err(|e| rows_error("facility", e))?;
        let mut facilities = Vec::new();
        while let Some((id, bytes)) = rows
            .try_next()
            .await
            .map_err(|e| StorageError::Unavailable(format!("listing facilities: {e}")))?
        {
            let id = FacilityId::parse(&id)
                .map_err(|e| StorageError::Corrupt(format!("stored facility id {id:?}: {e}")))?;
            facilities.push((id, bytes));
        }
        facilities.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(facilities)
    }

    async fn booking(&self, id: &BookingId) -> Result<Option<Vec<u8>>, StorageError> {
        let result = self
            .session
            .execute_unpaged(&self.st.select_booking, (id.as_str(),))
            .await
            .map_err(|e| exec_error("reading a booking", &e))?;
        Ok(first_row::<(Vec<u8>,)>(result, "booking")?.map(|(bytes,)| bytes))
    }

    async fn idempotent_booking(
        &self,
        owner: &UserId,
        key: &str,
        now: Millis,
    ) -> Result<Option<BookingId>, StorageError> {
        let result = self
            .session
            .execute_unpaged(&self.st.select_idempotency, (owner.as_str(), key))
            .await
            .map_err(|e| exec_error("reading an idempotency key", &e))?;
        let Some((booking, expires_at)) = first_row::<(String, i64)>(result, "idempotency key")?
        else {
            return Ok(None);
        };
        if expires_at <= now.0 {
            return Ok(None);
        }
        BookingId::parse(&booking)
            .map(Some)
            .map_err(|e| StorageError::Corrupt(format!("stored booking id {booking:?}: {e}")))
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.session
            .execute_unpaged(&self.st.ping, ())
            .await
            .map_err(|e| StorageError::Unavailable(format!("ping: {e}")))?;
        Ok(())
    }
}
