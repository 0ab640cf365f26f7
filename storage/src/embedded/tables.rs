//! The redb half of the embedded backend: checkpointed journal events,
//! snapshots, epochs, facilities, bookings and idempotency keys, plus the
//! WAL checkpoint marker. Synchronous; callers run it on blocking threads.
//!
//! One process per data directory is enforced by the lock file in
//! `super` (redb's own file lock backs it up).
//!
//! redb refuses everything after one I/O error (a full or read-only
//! disk) until the database is opened again: [`Tables::recheck`] drops
//! a poisoned database and the next use reopens it (redb repairs the
//! file then), so the store comes back by itself when the disk does.
//! This module must never keep serving from a database it knows failed,
//! nor hold a transaction across a reopen.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use parkme_engine::codec;

use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TransactionError,
};

use super::memtable::Generation;
use crate::error::StorageError;
use crate::model::{StoredBooking, StoredKey, ZoneKey};

type ZoneTuple<'a> = (&'a str, &'a str);

/// Journal events in chunks: one row per zone per checkpoint, keyed by the
/// chunk's last seq and the checkpoint that wrote it. Trimming behind a
/// snapshot then deletes a handful of rows instead of one per event.
const JOURNAL: TableDefinition<(&str, &str, u64, u64), &[u8]> =
    TableDefinition::new("journal_chunks");
const SNAPSHOTS: TableDefinition<ZoneTuple, (u64, &[u8])> = TableDefinition::new("snapshots");
const EPOCHS: TableDefinition<ZoneTuple, u64> = TableDefinition::new("epochs");
const FACILITIES: TableDefinition<&str, &[u8]> = TableDefinition::new("facilities");
/// Occupancy samples: `(facility, at)` -> sample (contract §3.1).
const HISTORY: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("history");
const BOOKINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bookings");
/// When a booking record may be forgotten (only records that may).
const BOOKING_FORGET: TableDefinition<&str, i64> = TableDefinition::new("booking_forget_after");
/// The same, ordered by time, so upkeep finds what is due without a scan.
const FORGET_QUEUE: TableDefinition<(i64, &str), ()> = TableDefinition::new("booking_forget_queue");
const IDEMPOTENCY: TableDefinition<(&str, &str), (&str, i64)> = TableDefinition::new("idempotency");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CHECKPOINT: &str = "wal_checkpoint";

pub(super) fn unavailable(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

fn zone_tuple(zone: &ZoneKey) -> ZoneTuple<'_> {
    (zone.facility.as_str(), zone.zone.as_str())
}

/// Events of one zone, `(seq, bytes)` in seq order.
type Chunk<B> = Vec<(u64, B)>;
/// `(checkpoint that wrote a chunk, its last seq)`: later writes win.
type ChunkOrder = (u64, u64);

/// A generation's events grouped per zone, in seq order.
fn chunks(generation: &Generation) -> Vec<(&ZoneKey, Chunk<&[u8]>)> {
    let mut out: Vec<(&ZoneKey, Chunk<&[u8]>)> = Vec::new();
    for ((zone, seq), bytes) in &generation.events {
        match out.last_mut() {
            Some((current, chunk)) if *current == zone => chunk.push((*seq, bytes.as_slice())),
            _ => out.push((zone, vec![(*seq, bytes.as_slice())])),
        }
    }
    out
}

#[derive(Debug)]
pub(super) struct Tables {
    path: PathBuf,
    /// The open database; `None` after an I/O error poisoned it, until
    /// it is opened again (at the next use).
    db: RwLock<Option<Arc<Database>>>,
}

impl Tables {
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join("parkme.redb");
        let db = Database::create(&path).map_err(unavailable)?;
        let txn = db.begin_write().map_err(unavailable)?;
        {
            txn.open_table(JOURNAL).map_err(unavailable)?;
            txn.open_table(SNAPSHOTS).map_err(unavailable)?;
            txn.open_table(EPOCHS).map_err(unavailable)?;
            txn.open_table(FACILITIES).map_err(unavailable)?;
            txn.open_table(HISTORY).map_err(unavailable)?;
            txn.open_table(BOOKINGS).map_err(unavailable)?;
            txn.open_table(BOOKING_FORGET).map_err(unavailable)?;
            txn.open_table(FORGET_QUEUE).map_err(unavailable)?;
            txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
            txn.open_table(META).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)?;
        Ok(Self {
            path,
            db: RwLock::new(Some(Arc::new(db))),
        })
    }

    /// The database, opened again first if an I/O error poisoned it.
    fn db(&self) -> Result<Arc<Database>, StorageError> {
        if let Some(db) = self.db.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(Arc::clone(db));
        }
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(Arc::clone(db));
        }
        let db = Database::create(&self.path).map_err(|e| {
            StorageError::Unavailable(format!(
                "reopening {} after an I/O error: {e}",
                self.path.display()
            ))
        })?;
        tracing::info!(path = %self.path.display(), "reopened the database after an I/O error");
        let db = Arc::new(db);
        *slot = Some(Arc::clone(&db));
        Ok(db)
    }

    /// Called after an operation failed: redb refuses every later read
    /// and write once an I/O error happened (until the database is opened
    /// again), so a poisoned database is dropped here and reopened at the
    /// next use. That is what lets the store recover by itself once the
    /// disk has room or is writable again.
    pub fn recheck(&self) {
        let Some(db) = self
            .db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Arc::clone)
        else {
            return;
        };
        // `begin_write` checks for an earlier I/O error first; a healthy
        // database's transaction is aborted at once, having written
        // nothing.
        let poisoned = matches!(
            db.begin_write(),
            Err(TransactionError::Storage(
                redb::StorageError::PreviousIo | redb::StorageError::Io(_)
            ))
        );
        if poisoned {
            tracing::warn!(path = %self.path.display(), "the database hit an I/O error; reopening it");
            let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
            if slot
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &db))
            {
                *slot = None;
            }
        }
    }

    /// WAL segments below this id are fully contained in the tables.
    pub fn checkpoint(&self) -> Result<u64, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(META).map_err(unavailable)?;
        Ok(table
            .get(CHECKPOINT)
            .map_err(unavailable)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Writes a frozen memtable generation and moves the checkpoint to
    /// `next_segment`, in one durable transaction.
    pub fn flush(&self, generation: &Generation, next_segment: u64) -> Result<(), StorageError> {
        let mut txn = self.db()?.begin_write().map_err(unavailable)?;
        txn.set_durability(Durability::Immediate)
            .map_err(unavailable)?;
        {
            let mut journal = txn.open_table(JOURNAL).map_err(unavailable)?;
            for (zone, chunk) in chunks(generation) {
                let Some(&(last, _)) = chunk.last() else {
                    continue;
                };
                let bytes = codec::encode_stored(&chunk);
                journal
                    .insert(
                        (
                            zone.facility.as_str(),
                            zone.zone.as_str(),
                            last,
                            next_segment,
                        ),
                        bytes.as_slice(),
                    )
                    .map_err(unavailable)?;
            }
            let mut bookings = txn.open_table(BOOKINGS).map_err(unavailable)?;
            let mut forget = txn.open_table(BOOKING_FORGET).map_err(unavailable)?;
            let mut queue = txn.open_table(FORGET_QUEUE).map_err(unavailable)?;
            for (id, (bytes, forget_after)) in &generation.bookings {
                bookings
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
                match forget_after {
                    Some(at) => {
                        forget.insert(id.as_str(), at.0).map_err(unavailable)?;
                        queue.insert((at.0, id.as_str()), ()).map_err(unavailable)?;
                    }
                    // A queue entry left behind is skipped: it no longer
                    // matches the record's time.
                    None => {
                        forget.remove(id.as_str()).map_err(unavailable)?;
                    }
                }
            }
            let mut keys = txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
            for ((owner, key), (booking, expires_at)) in &generation.idempotency {
                keys.insert(
                    (owner.as_str(), key.as_str()),
                    (booking.as_str(), expires_at.0),
                )
                .map_err(unavailable)?;
            }
            let mut meta = txn.open_table(META).map_err(unavailable)?;
            meta.insert(CHECKPOINT, next_segment).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)
    }

    /// Events of `zone` after `after`; a later chunk wins for a seq that
    /// was written twice (re-appended after a crash).
    pub fn events(
        &self,
        zone: &ZoneKey,
        after: Seq,
    ) -> Result<BTreeMap<u64, Vec<u8>>, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(JOURNAL).map_err(unavailable)?;
        let (f, z) = zone_tuple(zone);
        // ((checkpoint that wrote it, last seq), events)
        let mut chunks: Vec<(ChunkOrder, Chunk<Vec<u8>>)> = Vec::new();
        let range = table
            .range((f, z, after.0.saturating_add(1), 0)..=(f, z, u64::MAX, u64::MAX))
            .map_err(unavailable)?;
        for item in range {
            let (key, value) = item.map_err(unavailable)?;
            let (_, _, last, written) = key.value();
            let chunk: Chunk<Vec<u8>> = codec::decode_stable(value.value())
                .map_err(|e| StorageError::Corrupt(format!("journal chunk of {zone}: {e}")))?;
            chunks.push(((written, last), chunk));
        }
        chunks.sort_by_key(|(order, _)| *order);
        let mut events = BTreeMap::new();
        for (_, chunk) in chunks {
            events.extend(chunk.into_iter().filter(|(seq, _)| *seq > after.0));
        }
        Ok(events)
    }

    /// Stores a snapshot and forgets the journal up to its seq; returns
    /// `false` (and changes nothing) when the stored snapshot is at `seq`
    /// or later.
    pub fn put_snapshot(
        &self,
        zone: &ZoneKey,
        seq: Seq,
        bytes: &[u8],
    ) -> Result<bool, StorageError> {
        let txn = self.db()?.begin_write().map_err(unavailable)?;
        {
            let mut snapshots = txn.open_table(SNAPSHOTS).map_err(unavailable)?;
            let held = snapshots
                .get(zone_tuple(zone))
                .map_err(unavailable)?
                .map(|v| v.value().0);
            if held.is_some_and(|held| held >= seq.0) {
                return Ok(false);
            }
            snapshots
                .insert(zone_tuple(zone), (seq.0, bytes))
                .map_err(unavailable)?;
            let mut journal = txn.open_table(JOURNAL).map_err(unavailable)?;
            let (f, z) = zone_tuple(zone);
            journal
                .retain_in((f, z, 0, 0)..=(f, z, seq.0, u64::MAX), |_, _| false)
                .map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)?;
        Ok(true)
    }

    pub fn latest_snapshot(&self, zone: &ZoneKey) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(SNAPSHOTS).map_err(unavailable)?;
        let found = table.get(zone_tuple(zone)).map_err(unavailable)?;
        Ok(found.map(|v| {
            let (seq, bytes) = v.value();
            (Seq(seq), bytes.to_vec())
        }))
    }

    pub fn epochs(&self) -> Result<Vec<(ZoneKey, u64)>, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(EPOCHS).map_err(unavailable)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(unavailable)? {
            let (key, value) = item.map_err(unavailable)?;
            let (f, z) = key.value();
            let zone = ZoneKey::new(
                FacilityId::parse(f).map_err(|e| StorageError::Corrupt(e.to_string()))?,
                parkme_engine::ZoneId::parse(z)
                    .map_err(|e| StorageError::Corrupt(e.to_string()))?,
            );
            out.push((zone, value.value()));
        }
        Ok(out)
    }

    pub fn put_epoch(&self, zone: &ZoneKey, epoch: u64) -> Result<(), StorageError> {
        let txn = self.db()?.begin_write().map_err(unavailable)?;
        {
            let mut epochs = txn.open_table(EPOCHS).map_err(unavailable)?;
            epochs
                .insert(zone_tuple(zone), epoch)
                .map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)
    }

    pub fn drop_zone(&self, zone: &ZoneKey) -> Result<(), StorageError> {
        let txn = self.db()?.begin_write().map_err(unavailable)?;
        {
            let (f, z) = zone_tuple(zone);
            let mut journal = txn.open_table(JOURNAL).map_err(unavailable)?;
            journal
                .retain_in((f, z, 0, 0)..=(f, z, u64::MAX, u64::MAX), |_, _| false)
                .map_err(unavailable)?;
            let mut snapshots = txn.open_table(SNAPSHOTS).map_err(unavailable)?;
            snapshots.remove((f, z)).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)
    }

    pub fn put_facility(&self, id: &FacilityId, bytes: &[u8]) -> Result<(), StorageError> {
        let txn = self.db()?.begin_write().map_err(unavailable)?;
        {
            let mut table = txn.open_table(FACILITIES).map_err(unavailable)?;
            table.insert(id.as_str(), bytes).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)
    }

    pub fn facilities(&self) -> Result<Vec<(FacilityId, Vec<u8>)>, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(FACILITIES).map_err(unavailable)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(unavailable)? {
            let (key, value) = item.map_err(unavailable)?;
            let id = FacilityId::parse(key.value())
                .map_err(|e| StorageError::Corrupt(format!("facility key: {e}")))?;
            out.push((id, value.value().to_vec()));
        }
        Ok(out)
    }

    pub fn put_history(&self, samples: &[crate::model::HistorySample]) -> Result<(), StorageError> {
        let txn = self.db()?.begin_write().map_err(unavailable)?;
        {
            let mut table = txn.open_table(HISTORY).map_err(unavailable)?;
            for s in samples {
                table
                    .insert((s.facility.as_str(), s.at.0), s.bytes.as_slice())
                    .map_err(unavailable)?;
            }
        }
        txn.commit().map_err(unavailable)
    }

    pub fn history(
        &self,
        id: &FacilityId,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StorageError> {
        if from > to {
            return Ok(Vec::new());
        }
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(HISTORY).map_err(unavailable)?;
        let mut out = Vec::new();
        for item in table
            .range((id.as_str(), from)..=(id.as_str(), to))
            .map_err(unavailable)?
        {
            let (key, value) = item.map_err(unavailable)?;
            out.push((key.value().1, value.value().to_vec()));
        }
        Ok(out)
    }

    /// Drops every facility's samples before `before`, one range per
    /// facility (no scan of what is kept).
    pub fn purge_history(&self, before: i64) -> Result<u64, StorageError> {
        let facilities: Vec<FacilityId> =
            self.facilities()?.into_iter().map(|(id, _)| id).collect();
        let txn = self.db()?.begin_write().map_err(unavailable)?;
        let mut purged = 0;
        {
            let mut table = txn.open_table(HISTORY).map_err(unavailable)?;
            for id in &facilities {
                let range = (id.as_str(), i64::MIN)..(id.as_str(), before);
                let old: Vec<i64> = table
                    .range(range)
                    .map_err(unavailable)?
                    .map(|item| item.map(|(key, _)| key.value().1))
                    .collect::<Result<_, _>>()
                    .map_err(unavailable)?;
                for at in old {
                    table.remove((id.as_str(), at)).map_err(unavailable)?;
                    purged += 1;
                }
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(purged)
    }

    pub fn facility(&self, id: &FacilityId) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(FACILITIES).map_err(unavailable)?;
        let found = table.get(id.as_str()).map_err(unavailable)?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    pub fn booking(&self, id: &BookingId) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(BOOKINGS).map_err(unavailable)?;
        let found = table.get(id.as_str()).map_err(unavailable)?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    pub fn idempotent_booking(
        &self,
        owner: &UserId,
        key: &str,
    ) -> Result<Option<(BookingId, Millis)>, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
        let Some(found) = table.get((owner.as_str(), key)).map_err(unavailable)? else {
            return Ok(None);
        };
        let (booking, expires_at) = found.value();
        let booking = BookingId::parse(booking)
            .map_err(|e| StorageError::Corrupt(format!("idempotency record: {e}")))?;
        Ok(Some((booking, Millis(expires_at))))
    }

    /// Forgets the booking records whose `forget_after` is at or before
    /// `now`, in one transaction.
    pub fn forget_bookings(&self, now: Millis) -> Result<u64, StorageError> {
        let txn = self.db()?.begin_write().map_err(unavailable)?;
        let mut forgotten = 0;
        {
            let mut queue = txn.open_table(FORGET_QUEUE).map_err(unavailable)?;
            let mut forget = txn.open_table(BOOKING_FORGET).map_err(unavailable)?;
            let mut bookings = txn.open_table(BOOKINGS).map_err(unavailable)?;
            let mut due: Vec<(i64, String)> = Vec::new();
            for item in queue
                .range((i64::MIN, "")..(now.0.saturating_add(1), ""))
                .map_err(unavailable)?
            {
                let (key, _) = item.map_err(unavailable)?;
                let (at, id) = key.value();
                due.push((at, id.to_owned()));
            }
            for (at, id) in due {
                queue.remove((at, id.as_str())).map_err(unavailable)?;
                let current = forget
                    .get(id.as_str())
                    .map_err(unavailable)?
                    .map(|v| v.value());
                if current == Some(at) {
                    forget.remove(id.as_str()).map_err(unavailable)?;
                    bookings.remove(id.as_str()).map_err(unavailable)?;
                    forgotten += 1;
                }
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(forgotten)
    }

    /// Deletes idempotency keys that expired at or before `now`.
    pub fn purge_expired_keys(&self, now: Millis) -> Result<u64, StorageError> {
        let txn = self.db()?.begin_write().map_err(unavailable)?;
        let removed;
        {
            let mut table = txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
            let before = table.len().map_err(unavailable)?;
            table
                .retain(|_, (_, expires_at)| expires_at > now.0)
                .map_err(unavailable)?;
            removed = before.saturating_sub(table.len().map_err(unavailable)?);
        }
        txn.commit().map_err(unavailable)?;
        Ok(removed)
    }

    /// Up to `limit` zones holding a snapshot or journal chunks, in key
    /// order, after `after`.
    pub fn zones_after(
        &self,
        after: Option<&ZoneKey>,
        limit: usize,
    ) -> Result<Vec<ZoneKey>, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let mut found: BTreeSet<(String, String)> = BTreeSet::new();
        let start = after.map(|z| (z.facility.as_str(), z.zone.as_str()));
        {
            let snapshots = txn.open_table(SNAPSHOTS).map_err(unavailable)?;
            let lower = start.map_or(Bound::Unbounded, Bound::Excluded);
            for item in snapshots
                .range::<ZoneTuple>((lower, Bound::Unbounded))
                .map_err(unavailable)?
                .take(limit)
            {
                let (key, _) = item.map_err(unavailable)?;
                let (f, z) = key.value();
                found.insert((f.to_owned(), z.to_owned()));
            }
        }
        let journal = txn.open_table(JOURNAL).map_err(unavailable)?;
        // Distinct zones of the chunk table: one lookup per zone, jumping
        // past every chunk of the zone just found.
        let mut lower: Bound<(String, String)> = match start {
            Some((f, z)) => Bound::Excluded((f.to_owned(), z.to_owned())),
            None => Bound::Unbounded,
        };
        let mut zones_seen = 0;
        while zones_seen < limit {
            let next = {
                let mut range = match &lower {
                    Bound::Excluded((f, z)) => journal
                        .range::<(&str, &str, u64, u64)>((
                            Bound::Excluded((f.as_str(), z.as_str(), u64::MAX, u64::MAX)),
                            Bound::Unbounded,
                        ))
                        .map_err(unavailable)?,
                    _ => journal
                        .range::<(&str, &str, u64, u64)>(..)
                        .map_err(unavailable)?,
                };
                match range.next() {
                    Some(item) => {
                        let (key, _) = item.map_err(unavailable)?;
                        let (f, z, _, _) = key.value();
                        Some((f.to_owned(), z.to_owned()))
                    }
                    None => None,
                }
            };
            let Some(zone) = next else { break };
            found.insert(zone.clone());
            lower = Bound::Excluded(zone);
            zones_seen += 1;
        }
        found
            .into_iter()
            .take(limit)
            .map(|(f, z)| {
                Ok(ZoneKey::new(
                    FacilityId::parse(&f)
                        .map_err(|e| StorageError::Corrupt(format!("stored zone key: {e}")))?,
                    parkme_engine::ZoneId::parse(&z)
                        .map_err(|e| StorageError::Corrupt(format!("stored zone key: {e}")))?,
                ))
            })
            .collect()
    }

    /// Up to `limit` booking records in id order after `after`.
    pub fn bookings_after(
        &self,
        after: Option<&BookingId>,
        limit: usize,
    ) -> Result<Vec<StoredBooking>, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let bookings = txn.open_table(BOOKINGS).map_err(unavailable)?;
        let forget = txn.open_table(BOOKING_FORGET).map_err(unavailable)?;
        let lower = after.map_or(Bound::Unbounded, |id| Bound::Excluded(id.as_str()));
        let mut out = Vec::with_capacity(limit);
        for item in bookings
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(unavailable)?
            .take(limit)
        {
            let (key, value) = item.map_err(unavailable)?;
            let id = BookingId::parse(key.value())
                .map_err(|e| StorageError::Corrupt(format!("stored booking id: {e}")))?;
            let forget_after = forget
                .get(key.value())
                .map_err(unavailable)?
                .map(|v| Millis(v.value()));
            out.push(StoredBooking {
                id,
                bytes: value.value().to_vec(),
                forget_after,
            });
        }
        Ok(out)
    }

    /// Up to `limit` idempotency keys in `(owner, key)` order after `after`.
    pub fn keys_after(
        &self,
        after: Option<&(UserId, String)>,
        limit: usize,
    ) -> Result<Vec<StoredKey>, StorageError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
        let lower = after.map_or(Bound::Unbounded, |(owner, key)| {
            Bound::Excluded((owner.as_str(), key.as_str()))
        });
        let mut out = Vec::with_capacity(limit);
        for item in table
            .range::<(&str, &str)>((lower, Bound::Unbounded))
            .map_err(unavailable)?
            .take(limit)
        {
            let (key, value) = item.map_err(unavailable)?;
            let (owner, key) = key.value();
            let (booking, expires_at) = value.value();
            let corrupt = |e: parkme_engine::IdError| {
                StorageError::Corrupt(format!("stored idempotency key: {e}"))
            };
            out.push(StoredKey {
                owner: UserId::parse(owner).map_err(corrupt)?,
                key: key.to_owned(),
                booking: BookingId::parse(booking).map_err(corrupt)?,
                expires_at: Millis(expires_at),
            });
        }
        Ok(out)
    }

    /// Empties every table but the epochs and moves the checkpoint marker
    /// to `next_segment`, in one durable transaction: the WAL segments
    /// before it are never replayed again.
    pub fn clear(&self, next_segment: u64) -> Result<(), StorageError> {
        let mut txn = self.db()?.begin_write().map_err(unavailable)?;
        txn.set_durability(Durability::Immediate)
            .map_err(unavailable)?;
        txn.delete_table(JOURNAL).map_err(unavailable)?;
        txn.delete_table(SNAPSHOTS).map_err(unavailable)?;
        txn.delete_table(FACILITIES).map_err(unavailable)?;
        txn.delete_table(BOOKINGS).map_err(unavailable)?;
        txn.delete_table(BOOKING_FORGET).map_err(unavailable)?;
        txn.delete_table(FORGET_QUEUE).map_err(unavailable)?;
        txn.delete_table(IDEMPOTENCY).map_err(unavailable)?;
        txn.delete_table(HISTORY).map_err(unavailable)?;
        {
            txn.open_table(HISTORY).map_err(unavailable)?;
            txn.open_table(JOURNAL).map_err(unavailable)?;
            txn.open_table(SNAPSHOTS).map_err(unavailable)?;
            txn.open_table(FACILITIES).map_err(unavailable)?;
            txn.open_table(BOOKINGS).map_err(unavailable)?;
            txn.open_table(BOOKING_FORGET).map_err(unavailable)?;
            txn.open_table(FORGET_QUEUE).map_err(unavailable)?;
            txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
            let mut meta = txn.open_table(META).map_err(unavailable)?;
            meta.insert(CHECKPOINT, next_segment).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)
    }

    pub fn ping(&self) -> Result<(), StorageError> {
        self.db()?.begin_read().map(|_| ()).map_err(unavailable)
    }
}
