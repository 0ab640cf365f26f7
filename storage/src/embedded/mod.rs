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
//! rare). All file I/O runs on tokio's blocking pool.
//!
//! Nothing fences two processes here (epochs only order the writers of
//! one process), so one data directory has one process: opening takes an
//! exclusive lock on `parkme.lock` in it, held for the life of the store,
//! and a second open fails with a message naming the directory.
//!
//! This module must never acknowledge a commit before its WAL frame is
//! synced, never delete a segment before its contents are in redb, and
//! never touch the directory without holding its lock.

mod logged;
mod memtable;
mod tables;
mod wal;

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use parkme_engine::codec;
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};

use self::logged::Logged;
use self::memtable::{Generation, MemTable};
use self::tables::{Tables, unavailable};
use self::wal::Wal;
use crate::backend::{Listing, Storage};
use crate::error::StorageError;
use crate::model::{Epoch, HistorySample, StoredBooking, StoredKey, Upkeep, Write, ZoneKey};

/// The file whose lock marks a data directory as in use.
pub const LOCK_FILE: &str = "parkme.lock";

/// Items per page of a listing (one redb read transaction each).
const LISTING_PAGE: usize = 1024;

/// Checkpoint when the memtable holds this many bytes...
const CHECKPOINT_BYTES: usize = 32 << 20;
/// ...or when this long has passed since the last checkpoint.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Holds the directory's exclusive lock until the store is dropped.
    _lock: File,
    tables: Tables,
    wal: Mutex<Wal>,
    mem: Mutex<MemTable>,
    /// Current epoch of every claimed zone (mirrors the redb table).
    epochs: Mutex<HashMap<ZoneKey, u64>>,
    /// Facility record fences (in memory: see `record_fence`).
    fences: Mutex<crate::record_fence::RecordFences>,
    /// Serializes redb writers that touch journal rows (checkpoint,
    /// snapshot, drop).
    writer: Mutex<()>,
    checkpointing: AtomicBool,
    /// The last WAL append failed: `ping` then checks that the directory
    /// takes a synced write again before it says storage is up.
    write_failed: AtomicBool,
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

/// Takes the directory's exclusive lock, or says which directory is in
/// use (and by which process, as far as the lock file tells).
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            StorageError::Unavailable(format!("cannot open lock file {}: {e}", path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            return Err(StorageError::Unavailable(format!(
                "data directory {} is in use by another parkme process{holder}: \
                 one directory serves one process; stop the other one or choose \
                 another PARKME_DATA_DIR",
                dir.display()
            )));
        }
        Err(TryLockError::Error(e)) => {
            return Err(StorageError::Unavailable(format!(
                "cannot lock data directory {} ({}): {e}",
                dir.display(),
                path.display()
            )));
        }
    }
    // Who holds it, for the message above; the lock is what counts.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

fn wal_error(e: wal::WalError) -> StorageError {
    match e {
        wal::WalError::Corrupt { .. } => StorageError::Corrupt(e.to_string()),
        wal::WalError::Io { .. } => StorageError::Unavailable(e.to_string()),
    }
}

/// The writes of one WAL frame's payload (one commit).
fn decode_frame(segment: u64, payload: &[u8]) -> Result<Vec<Write>, StorageError> {
    let logged: Vec<Logged> = codec::decode_stable(payload)
        .map_err(|e| StorageError::Corrupt(format!("WAL segment {segment}: {e}")))?;
    Ok(logged.into_iter().map(Write::from).collect())
}

/// The payload of the WAL frame that commits `writes`.
fn frame_payload<'a>(writes: impl IntoIterator<Item = &'a Write>) -> Vec<u8> {
    let logged: Vec<Logged> = writes.into_iter().map(Logged::from).collect();
    codec::encode_stored(&logged)
}

/// The file `ping` writes, syncs and removes to tell whether the data
/// directory takes writes again after a failed one.
const PROBE_FILE: &str = "health.probe";

/// Writes and syncs a page to a probe file in `dir`, then removes it: a
/// full or read-only disk fails here.
fn probe_write(dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(PROBE_FILE);
    let written = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(&[0; 4096])?;
            file.sync_data()
        });
    let removed = std::fs::remove_file(&path);
    written.and(removed).map_err(|e| {
        StorageError::Unavailable(format!(
            "data directory {} does not take writes: {e}",
            dir.display()
        ))
    })
}

/// Decodes one WAL segment's bytes as opening the store replays them,
/// without touching any file: the writes of each intact commit frame, in
/// order. `newest` says whether it is the newest segment, the only one
/// whose torn final frame may be cut (and is, silently, here); any other
/// damage is [`StorageError::Corrupt`] with what was found and where.
///
/// For fuzzing and inspection tools: opening the store calls the same
/// checks on the segment files it finds.
pub fn decode_wal_segment(data: &[u8], newest: bool) -> Result<Vec<Vec<Write>>, StorageError> {
    let checked = wal::check(Path::new("(in memory)"), data, newest).map_err(wal_error)?;
    checked
        .frames
        .into_iter()
        .map(|payload| decode_frame(0, payload))
        .collect()
}

/// The bytes one commit of `writes` appends to a WAL segment (frame
/// header and payload): the inverse of [`decode_wal_segment`] for one
/// frame, for tests, fuzzing and seed corpora. Empty `writes` still make
/// a (non-empty) frame.
pub fn encode_wal_frame(writes: &[Write]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = wal::encode_frame(&frame_payload(writes), &mut out) {
        debug_assert!(false, "a commit frame could not be encoded: {e}");
    }
    out
}

/// Whether another process (or another open store) holds `dir`: the
/// holder's pid as its lock file tells, or `Some("")` when it does not
/// say. `None` when the directory is free or holds no store yet.
pub fn lock_holder(dir: &Path) -> Option<String> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Some(holder.trim().to_owned())
        }
        Err(TryLockError::Error(_)) => None,
    }
}

impl EmbeddedStorage {
    /// Opens (or creates) the store in `dir` and replays the WAL. Fails if
    /// another process (or another open store) holds the directory.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock = lock_dir(dir)?;
        let tables = Tables::open(dir)?;
        let checkpoint = tables.checkpoint()?;
        let mut mem = MemTable::default();
        let mut next = checkpoint;
        let mut replayed = 0usize;
        let segments = wal::segments(dir).map_err(unavailable)?;
        let newest = segments.last().copied();
        for segment in segments {
            next = next.max(segment + 1);
            if segment < checkpoint {
                continue;
            }
            let frames =
                wal::read_segment(dir, segment, Some(segment) == newest).map_err(wal_error)?;
            for frame in frames {
                let writes = decode_frame(segment, &frame)?;
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
                _lock: lock,
                tables,
                wal: Mutex::new(wal),
                mem: Mutex::new(mem),
                epochs: Mutex::new(epochs),
                fences: Mutex::default(),
                writer: Mutex::new(()),
                checkpointing: AtomicBool::new(false),
                write_failed: AtomicBool::new(false),
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
        tokio::task::spawn_blocking(move || {
            let done = work(&inner);
            if matches!(done, Err(StorageError::Unavailable(_))) {
                inner.tables.recheck();
            }
            done
        })
        .await
        .map_err(|e| StorageError::Unavailable(format!("storage task failed: {e}")))?
    }

    /// Writes the memtable into redb now (also used at shutdown).
    pub async fn checkpoint(&self) -> Result<(), StorageError> {
        self.blocking(checkpoint).await
    }

    /// A listing of the tables, page by page after a checkpoint: what was
    /// committed before it started is in the tables by then, and each
    /// page is one read transaction, so memory stays at one page.
    fn listing<T, C, F, K>(&self, page: F, cursor: K) -> Listing<'static, T>
    where
        T: Send + 'static,
        C: Send + 'static,
        F: Fn(&Inner, Option<&C>) -> Result<Vec<T>, StorageError> + Send + Sync + 'static,
        K: Fn(&T) -> C + Send + Sync + 'static,
    {
        enum Step<C> {
            Start,
            After(Option<C>),
            Done,
        }
        let store = self.clone();
        let page = Arc::new(page);
        let cursor = Arc::new(cursor);
        futures_util::stream::try_unfold(Step::Start, move |step| {
            let store = store.clone();
            let page = Arc::clone(&page);
            let cursor = Arc::clone(&cursor);
            async move {
                let after = match step {
                    Step::Done => return Ok(None),
                    Step::Start => {
                        store.checkpoint().await?;
                        None
                    }
                    Step::After(after) => after,
                };
                let items = store
                    .blocking(move |inner| page(inner, after.as_ref()))
                    .await?;
                let next = match items.last() {
                    _ if items.len() < LISTING_PAGE => Step::Done,
                    Some(last) => Step::After(Some(cursor(last))),
                    None => Step::Done,
                };
                Ok(Some((items, next)))
            }
        })
        .map_ok(|items| futures_util::stream::iter(items.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
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
                inner.tables.recheck();
            }
            inner.checkpointing.store(false, Ordering::Release);
        });
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
    crate::metrics::checkpointed(started.elapsed());
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

/// Forgets everything but the epochs: the memtable is dropped and the
/// WAL rotated, then one redb transaction empties the tables and moves
/// the checkpoint past every older segment, so a restart replays none of
/// what was forgotten. Commits wait meanwhile (the WAL lock).
fn clear(inner: &Inner) -> Result<(), StorageError> {
    let _writer = lock(&inner.writer);
    let mut wal = lock(&inner.wal);
    let mut mem = lock(&inner.mem);
    debug_assert!(mem.frozen.is_none(), "checkpoints hold the writer lock");
    let next = wal.rotate().map_err(unavailable)?;
    inner.tables.clear(next)?;
    mem.active = Generation::default();
    mem.frozen = None;
    wal.delete_before(next).map_err(unavailable)?;
    Ok(())
}

/// Appends the groups that pass the fencing check as one WAL frame (one
/// fsync for all of them) and makes them readable; the others are refused.
fn commit_groups(inner: &Inner, groups: &[Vec<Write>]) -> Vec<Result<(), StorageError>> {
    let mut wal = lock(&inner.wal);
    let mut outcomes: Vec<Result<(), StorageError>> = {
        let epochs = lock(&inner.epochs);
        groups.iter().map(|g| check_epochs(&epochs, g)).collect()
    };
    let accepted: Vec<&Vec<Write>> = groups
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(group, _)| group)
        .collect();
    if accepted.is_empty() {
        return outcomes;
    }
    let payload = frame_payload(accepted.iter().flat_map(|g| g.iter()));
    let appended = wal.append(&payload);
    inner
        .write_failed
        .store(appended.is_err(), Ordering::Release);
    match appended {
        Ok(()) => {
            let mut mem = lock(&inner.mem);
            for group in accepted {
                mem.active.apply(group);
            }
        }
        Err(e) => {
            let failed = StorageError::Unavailable(format!("appending to the WAL: {e}"));
            for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *outcome = Err(failed.clone());
            }
        }
    }
    outcomes
}

#[async_trait]
impl Storage for EmbeddedStorage {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn commit(&self, writes: &[Write]) -> Result<(), StorageError> {
        let mut outcomes = self.commit_groups(&[writes]).await;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(StorageError::Unavailable("no commit outcome".into())))
    }

    async fn commit_groups(&self, groups: &[&[Write]]) -> Vec<Result<(), StorageError>> {
        let owned: Vec<Vec<Write>> = groups.iter().map(|g| g.to_vec()).collect();
        let count = owned.len();
        let outcomes = self
            .blocking(move |inner| Ok(commit_groups(inner, &owned)))
            .await
            .unwrap_or_else(|e| vec![Err(e); count]);
        self.maybe_checkpoint();
        outcomes
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
            if inner.tables.put_snapshot(&zone, seq, &bytes)? {
                lock(&inner.mem).active.forget_events(&zone, seq);
            }
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

    async fn put_facility(
        &self,
        id: &FacilityId,
        bytes: Vec<u8>,
        fence: Option<Epoch>,
    ) -> Result<(), StorageError> {
        let id = id.clone();
        self.blocking(move |inner| {
            let fences = lock(&inner.fences);
            fences.admit(&id, fence)?;
            inner.tables.put_facility(&id, &bytes)
        })
        .await
    }

    async fn put_history(&self, samples: Vec<HistorySample>) -> Result<(), StorageError> {
        self.blocking(move |inner| inner.tables.put_history(&samples))
            .await
    }

    async fn history(
        &self,
        id: &FacilityId,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(Millis, Vec<u8>)>, StorageError> {
        let id = id.clone();
        let rows = self
            .blocking(move |inner| inner.tables.history(&id, from.0, to.0))
            .await?;
        Ok(rows.into_iter().map(|(at, b)| (Millis(at), b)).collect())
    }

    async fn purge_history(&self, before: Millis) -> Result<u64, StorageError> {
        self.blocking(move |inner| inner.tables.purge_history(before.0))
            .await
    }

    async fn claim_facility(&self, id: &FacilityId) -> Result<Option<Epoch>, StorageError> {
        let id = id.clone();
        self.blocking(move |inner| {
            let mut fences = lock(&inner.fences);
            Ok(inner.tables.facility(&id)?.map(|_| fences.claim(&id)))
        })
        .await
    }

    async fn facilities(&self) -> Result<Vec<(FacilityId, Vec<u8>)>, StorageError> {
        self.blocking(|inner| inner.tables.facilities()).await
    }

    async fn facility(&self, id: &FacilityId) -> Result<Option<Vec<u8>>, StorageError> {
        let id = id.clone();
        self.blocking(move |inner| inner.tables.facility(&id)).await
    }

    async fn booking(&self, id: &BookingId) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(bytes) = lock(&self.inner.mem).booking(id) {
            return Ok(Some(bytes));
        }
        let id = id.clone();
        self.blocking(move |inner| inner.tables.booking(&id)).await
    }

    async fn idempotency_binding(
        &self,
        owner: &UserId,
        key: &str,
    ) -> Result<Option<(BookingId, Millis)>, StorageError> {
        if let Some(found) = lock(&self.inner.mem).idempotency(owner, key) {
            return Ok(Some(found));
        }
        let owner = owner.clone();
        let key = key.to_owned();
        self.blocking(move |inner| inner.tables.idempotent_booking(&owner, &key))
            .await
    }

    async fn upkeep(&self, now: Millis) -> Result<Upkeep, StorageError> {
        self.blocking(move |inner| {
            // What is still only in the memtable is purged from the tables
            // once checkpointed: checkpoint first.
            checkpoint(inner)?;
            Ok(Upkeep {
                idempotency_keys: inner.tables.purge_expired_keys(now)?,
                bookings: inner.tables.forget_bookings(now)?,
            })
        })
        .await
    }

    fn zones(&self) -> Listing<'_, ZoneKey> {
        self.listing(
            |inner, after| inner.tables.zones_after(after, LISTING_PAGE),
            ZoneKey::clone,
        )
    }

    fn bookings(&self) -> Listing<'_, StoredBooking> {
        self.listing(
            |inner, after| inner.tables.bookings_after(after, LISTING_PAGE),
            |b: &StoredBooking| b.id.clone(),
        )
    }

    fn idempotency_keys(&self) -> Listing<'_, StoredKey> {
        self.listing(
            |inner, after| inner.tables.keys_after(after, LISTING_PAGE),
            |k: &StoredKey| (k.owner.clone(), k.key.clone()),
        )
    }

    async fn clear(&self) -> Result<(), StorageError> {
        self.blocking(clear).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.blocking(|inner| {
            inner.tables.ping()?;
            // Reads alone would say "up" on a full or read-only disk:
            // once a write failed, up means a write can be made again.
            if inner.write_failed.load(Ordering::Acquire) {
                probe_write(&inner.dir)?;
                lock(&inner.wal).heal().map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }
}
