//! The embedded on-disk backend (the default): a write-ahead log in front
//! of a redb database, all under the data directory.
//!
//! - A commit appends one framed batch to the active WAL segment and
//!   `fdatasync`s it (one sequential write and one sync per group commit),
//!   then makes it readable through the in-memory *memtable*.
//! - About once a second (or every 32 MiB) a checkpoint freezes the
//!   memtable, starts a new WAL segment, writes the frozen generation into
//!   redb in one transaction together with the new checkpoint marker, and
//!   deletes the segments it covered.
//! - Opening replays every segment at or after the checkpoint marker, so a
//!   `kill -9` loses nothing that was acknowledged.
//!
//! Snapshots, epochs and facility records go straight to redb (they are
//! rare). redb's exclusive file lock keeps a second process out of the
//! directory. All file I/O runs on tokio's blocking pool.
//!
//! This module must never acknowledge a commit before its WAL frame is
//! synced, and never delete a segment before its contents are in redb.

mod memtable;
mod tables;
mod wal;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parkme_engine::codec;
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};

use self::memtable::{Generation, MemTable};
use self::tables::{Tables, unavailable};
use self::wal::Wal;
use crate::backend::Storage;
use crate::error::StorageError;
use crate::model::{Epoch, Write, ZoneKey};

/// Checkpoint when the memtable holds this many bytes...
const CHECKPOINT_BYTES: usize = 32 << 20;
/// ...or when this long has passed since the last checkpoint.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    tables: Tables,
    wal: Mutex<Wal>,
    mem: Mutex<MemTable>,
    /// Current epoch of every claimed zone (mirrors the redb table).
    epochs: Mutex<HashMap<ZoneKey, u64>>,
    /// Serializes redb writers that touch journal rows (checkpoint,
    /// snapshot, drop).
    writer: Mutex<()>,
    checkpointing: AtomicBool,
    last_checkpoint: Mutex<Instant>,
}

/// The WAL + redb store.
#[derive(Debug, Clone)]
pub struct EmbeddedStorage {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_epochs(epochs: &HashMap<ZoneKey, u64>, writes: &[Write]) -> Result<(), StorageError> {
    for (zone, epoch) in writes.iter().filter_map(Write::zone) {
        epoch.admit(zone, epochs.get(zone).copied().unwrap_or(0))?;
    }
    Ok(())
}

impl EmbeddedStorage {
    /// Opens (or creates) the store in `dir` and replays the WAL.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let tables = Tables::open(dir)?;
        let checkpoint = tables.checkpoint()?;
        let mut mem = MemTable::default();
        let mut next = checkpoint;
        let mut replayed = 0usize;
        for segment in wal::segments(dir).map_err(unavailable)? {
            next = next.max(segment + 1);
            if segment < checkpoint {
                continue;
            }
            for frame in wal::read_segment(dir, segment).map_err(unavailable)? {
                let writes: Vec<Write> = codec::decode_stored(&frame)
                    .map_err(|e| StorageError::Corrupt(format!("WAL segment {segment}: {e}")))?;
                replayed += writes.len();
                mem.active.apply(&writes);
            }
        }
        if replayed > 0 {
            tracing::info!(writes = replayed, "replayed the write-ahead log");
        }
        let wal = Wal::create(dir, next).map_err(unavailable)?;
        let epochs = tables.epochs()?.into_iter().collect();
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                tables,
                wal: Mutex::new(wal),
                mem: Mutex::new(mem),
                epochs: Mutex::new(epochs),
                writer: Mutex::new(()),
                checkpointing: AtomicBool::new(false),
                last_checkpoint: Mutex::new(Instant::now()),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs blocking work off the async threads.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StorageError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| StorageError::Unavailable(format!("storage task failed: {e}")))?
    }

    /// Writes the memtable into redb now (also used at shutdown).
    pub async fn checkpoint(&self) -> Result<(), StorageError> {
        self.blocking(checkpoint).await
    }

    fn maybe_checkpoint(&self) {
        let due = {
            let bytes = lock(&self.inner.mem).active.bytes;
            bytes >= CHECKPOINT_BYTES
                || (bytes > 0 && lock(&self.inner.last_checkpoint).elapsed() >= CHECKPOINT_EVERY)
        };
        if !due || self.inner.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = checkpoint(&inner) {
                tracing::warn!(error = %e, "checkpoint failed; will retry");
            }
            inner.checkpointing.store(false, Ordering::Release);
        });
    }

    /// Deletes idempotency keys that expired before `now`.
    pub async fn purge_expired_keys(&self, now: Millis) -> Result<u64, StorageError> {
        self.blocking(move |inner| inner.tables.purge_expired_keys(now))
            .await
    }
}

/// Freezes the memtable, rotates the WAL, writes the frozen generation to
/// redb and deletes the segments it covered.
fn checkpoint(inner: &Inner) -> Result<(), StorageError> {
    let _writer = lock(&inner.writer);
    checkpoint_locked(inner)
}

/// [`checkpoint`], for a caller that holds the writer lock.
fn checkpoint_locked(inner: &Inner) -> Result<(), StorageError> {
    let started = Instant::now();
    let (frozen, next) = {
        let mut wal = lock(&inner.wal);
        let mut mem = lock(&inner.mem);
        if mem.active.is_empty() {
            *lock(&inner.last_checkpoint) = Instant::now();
            return Ok(());
        }
        let next = wal.rotate().map_err(unavailable)?;
        let frozen = Arc::new(std::mem::take(&mut mem.active));
        mem.frozen = Some(Arc::clone(&frozen));
        (frozen, next)
    };
    let flushed = inner.tables.flush(&frozen, next);
    {
        let mut mem = lock(&inner.mem);
        mem.frozen = None;
        if flushed.is_err() {
            // Keep serving what the failed flush held; the WAL still has it.
            merge_back(&mut mem.active, &frozen);
        }
    }
    flushed?;
    lock(&inner.wal).delete_before(next).map_err(unavailable)?;
    *lock(&inner.last_checkpoint) = Instant::now();
    metrics::histogram!("parkme_checkpoint_seconds").record(started.elapsed().as_secs_f64());
    Ok(())
}

fn merge_back(active: &mut Generation, frozen: &Generation) {
    for (key, bytes) in &frozen.events {
        active
            .events
            .entry(key.clone())
            .or_insert_with(|| bytes.clone());
    }
    for (key, bytes) in &frozen.bookings {
        active
            .bookings
            .entry(key.clone())
            .or_insert_with(|| bytes.clone());
    }
    for (key, value) in &frozen.idempotency {
        active
            .idempotency
            .entry(key.clone())
            .or_insert_with(|| value.clone());
    }
    active.bytes += frozen.bytes;
}

#[async_trait]
impl Storage for EmbeddedStorage {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn commit(&self, writes: &[Write]) -> Result<(), StorageError> {
        let payload = codec::encode_stored(&writes);
        let writes = writes.to_vec();
        self.blocking(move |inner| {
            let mut wal = lock(&inner.wal);
            check_epochs(&lock(&inner.epochs), &writes)?;
            wal.append(&payload).map_err(unavailable)?;
            lock(&inner.mem).active.apply(&writes);
            Ok(())
        })
        .await?;
        self.maybe_checkpoint();
        Ok(())
    }

    async fn read_events(
        &self,
        zone: &ZoneKey,
        after: Seq,
    ) -> Result<Vec<(Seq, Vec<u8>)>, StorageError> {
        let zone = zone.clone();
        self.blocking(move |inner| {
            // Memtable first: entries only ever move from it to the tables.
            let mut events = BTreeMap::new();
            lock(&inner.mem).events_after(&zone, after, &mut events);
            for (seq, bytes) in inner.tables.events(&zone, after)? {
                events.entry(seq).or_insert(bytes);
            }

            Ok(events
                .into_iter()
                .map(|(seq, bytes)| (Seq(seq), bytes))
                .collect())
        })
        .await
    }

    async fn put_snapshot(
        &self,
        zone: &ZoneKey,
        epoch: Epoch,
        seq: Seq,
        bytes: Vec<u8>,
    ) -> Result<(), StorageError> {
        let zone = zone.clone();
        self.blocking(move |inner| {
            let _writer = lock(&inner.writer);
            let current = lock(&inner.epochs).get(&zone).copied().unwrap_or(0);
            epoch.admit(&zone, current)?;
            inner.tables.put_snapshot(&zone, seq, &bytes)?;
            lock(&inner.mem).active.forget_events(&zone, seq);
            Ok(())
        })
        .await
    }

    async fn latest_snapshot(
        &self,
        zone: &ZoneKey,
    ) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let zone = zone.clone();
        self.blocking(move |inner| inner.tables.latest_snapshot(&zone))
            .await
    }

    async fn claim_zone(&self, zone: &ZoneKey) -> Result<Epoch, StorageError> {
        let zone = zone.clone();
        self.blocking(move |inner| {
            // Holding the WAL lock orders the claim with commits' checks.
            let _wal = lock(&inner.wal);
            let mut epochs = lock(&inner.epochs);
            let next = epochs.get(&zone).copied().unwrap_or(0) + 1;
            inner.tables.put_epoch(&zone, next)?;
            epochs.insert(zone, next);
            Ok(Epoch(next))
        })
        .await
    }

    async fn drop_zone(&self, zone: &ZoneKey) -> Result<(), StorageError> {
        let zone = zone.clone();
        self.blocking(move |inner| {
            let _writer = lock(&inner.writer);
            // The WAL may still hold events of the zone, which a restart
            // would replay: move them into the tables first, so that the
            // drop below is the last word on them.
            checkpoint_locked(inner)?;
            inner.tables.drop_zone(&zone)?;
            lock(&inner.mem).active.forget_events(&zone, Seq(u64::MAX));
            Ok(())
        })
        .await
    }

    async fn put_facility(&self, id: &FacilityId, bytes: Vec<u8>) -> Result<(), StorageError> {
        let id = id.clone();
        self.blocking(move |inner| inner.tables.put_facility(&id, &bytes))
            .await
    }

    async fn facilities(&self) -> Result<Vec<(FacilityId, Vec<u8>)>, StorageError> {
        self.blocking(|inner| inner.tables.facilities()).await
    }

    async fn booking(&self, id: &BookingId) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(bytes) = lock(&self.inner.mem).booking(id) {
            return Ok(Some(bytes));
        }
        let id = id.clone();
        self.blocking(move |inner| inner.tables.booking(&id)).await
    }

    async fn idempotent_booking(
        &self,
        owner: &UserId,
        key: &str,
        now: Millis,
    ) -> Result<Option<BookingId>, StorageError> {
        let found = lock(&self.inner.mem).idempotency(owner, key);
        let found = match found {
            Some(found) => Some(found),
            None => {
                let owner = owner.clone();
                let key = key.to_owned();
                self.blocking(move |inner| inner.tables.idempotent_booking(&owner, &key))
                    .await?
            }
        };
        Ok(found
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(id, _)| id))
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.blocking(|inner| inner.tables.ping()).await
    }
}
