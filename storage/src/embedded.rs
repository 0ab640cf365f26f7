//! The embedded on-disk backend: one redb file under the data directory.
//!
//! Every `commit` is one redb write transaction with immediate durability
//! (one fsync); the group committer in front of it makes a burst of writes
//! from many zones share that fsync. redb takes an exclusive lock on the
//! file, so two processes can never write the same data directory.
//!
//! All redb calls block, so each runs on tokio's blocking pool. This module
//! must never be called from a hot loop without the group committer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::backend::Storage;
use crate::error::StorageError;
use crate::model::{Epoch, Write, ZoneKey};

type ZoneTuple<'a> = (&'a str, &'a str);

const JOURNAL: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("journal");
const SNAPSHOTS: TableDefinition<ZoneTuple, (u64, &[u8])> = TableDefinition::new("snapshots");
const EPOCHS: TableDefinition<ZoneTuple, u64> = TableDefinition::new("epochs");
const FACILITIES: TableDefinition<&str, &[u8]> = TableDefinition::new("facilities");
const BOOKINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bookings");
const IDEMPOTENCY: TableDefinition<(&str, &str), (&str, i64)> = TableDefinition::new("idempotency");

/// The redb-backed store.
#[derive(Debug, Clone)]
pub struct EmbeddedStorage {
    db: Arc<Database>,
    path: PathBuf,
}

fn unavailable(e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

fn zone_tuple(zone: &ZoneKey) -> ZoneTuple<'_> {
    (zone.facility.as_str(), zone.zone.as_str())
}

impl EmbeddedStorage {
    /// Opens (or creates) `dir/parkme.redb`, creating `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let path = dir.join("parkme.redb");
        let db = Database::create(&path).map_err(unavailable)?;
        let txn = db.begin_write().map_err(unavailable)?;
        {
            txn.open_table(JOURNAL).map_err(unavailable)?;
            txn.open_table(SNAPSHOTS).map_err(unavailable)?;
            txn.open_table(EPOCHS).map_err(unavailable)?;
            txn.open_table(FACILITIES).map_err(unavailable)?;
            txn.open_table(BOOKINGS).map_err(unavailable)?;
            txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)?;
        Ok(Self {
            db: Arc::new(db),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking redb work off the async threads.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StorageError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| StorageError::Unavailable(format!("storage task failed: {e}")))?
    }

    /// Deletes idempotency keys that expired before `now`.
    pub async fn purge_expired_keys(&self, now: Millis) -> Result<usize, StorageError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let removed;
            {
                let mut table = txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
                let before = table.len().map_err(unavailable)?;
                table
                    .retain(|_, (_, expires_at)| expires_at > now.0)
                    .map_err(unavailable)?;
                removed = before.saturating_sub(table.len().map_err(unavailable)?) as usize;
            }
            txn.commit().map_err(unavailable)?;
            Ok(removed)
        })
        .await
    }
}

fn check_epoch(
    epochs: &impl ReadableTable<ZoneTuple<'static>, u64>,
    zone: &ZoneKey,
    ours: Epoch,
) -> Result<(), StorageError> {
    let current = epochs
        .get(zone_tuple(zone))
        .map_err(unavailable)?
        .map(|v| v.value())
        .unwrap_or(0);
    if ours.0 < current {
        return Err(StorageError::Fenced {
            zone: zone.to_string(),
            current,
            ours: ours.0,
        });
    }
    Ok(())
}

fn write_all(txn: &redb::WriteTransaction, writes: &[Write]) -> Result<(), StorageError> {
    let epochs = txn.open_table(EPOCHS).map_err(unavailable)?;
    let mut journal = txn.open_table(JOURNAL).map_err(unavailable)?;
    let mut bookings = txn.open_table(BOOKINGS).map_err(unavailable)?;
    let mut keys = txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
    let mut checked: Option<(&ZoneKey, Epoch)> = None;
    for write in writes {
        match write {
            Write::Event {
                zone,
                epoch,
                seq,
                bytes,
            } => {
                if checked != Some((zone, *epoch)) {
                    check_epoch(&epochs, zone, *epoch)?;
                    checked = Some((zone, *epoch));
                }
                journal
                    .insert((zone.facility.as_str(), zone.zone.as_str(), seq.0), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            Write::Booking { id, bytes } => {
                bookings
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            Write::Idempotency {
                owner,
                key,
                booking,
                expires_at,
            } => {
                keys.insert(
                    (owner.as_str(), key.as_str()),
                    (booking.as_str(), expires_at.0),
                )
                .map_err(unavailable)?;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Storage for EmbeddedStorage {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn commit(&self, writes: &[Write]) -> Result<(), StorageError> {
        let writes = writes.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            match write_all(&txn, &writes) {
                Ok(()) => txn.commit().map_err(unavailable),
                Err(e) => {
                    txn.abort().map_err(unavailable)?;
                    Err(e)
                }
            }
        })
        .await
    }

    async fn read_events(
        &self,
        zone: &ZoneKey,
        after: Seq,
    ) -> Result<Vec<(Seq, Vec<u8>)>, StorageError> {
        let zone = zone.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(JOURNAL).map_err(unavailable)?;
            let (f, z) = zone_tuple(&zone);
            let range = table
                .range((f, z, after.0.saturating_add(1))..=(f, z, u64::MAX))
                .map_err(unavailable)?;
            range
                .map(|item| {
                    let (key, value) = item.map_err(unavailable)?;
                    Ok((Seq(key.value().2), value.value().to_vec()))
                })
                .collect()
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
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let epochs = txn.open_table(EPOCHS).map_err(unavailable)?;
                check_epoch(&epochs, &zone, epoch)?;
                let mut snapshots = txn.open_table(SNAPSHOTS).map_err(unavailable)?;
                snapshots
                    .insert(zone_tuple(&zone), (seq.0, bytes.as_slice()))
                    .map_err(unavailable)?;
                let mut journal = txn.open_table(JOURNAL).map_err(unavailable)?;
                let (f, z) = zone_tuple(&zone);
                journal
                    .retain_in((f, z, 0)..=(f, z, seq.0), |_, _| false)
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn latest_snapshot(
        &self,
        zone: &ZoneKey,
    ) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        let zone = zone.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(SNAPSHOTS).map_err(unavailable)?;
            let found = table.get(zone_tuple(&zone)).map_err(unavailable)?;
            Ok(found.map(|v| {
                let (seq, bytes) = v.value();
                (Seq(seq), bytes.to_vec())
            }))
        })
        .await
    }

    async fn claim_zone(&self, zone: &ZoneKey) -> Result<Epoch, StorageError> {
        let zone = zone.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let next;
            {
                let mut epochs = txn.open_table(EPOCHS).map_err(unavailable)?;
                let current = epochs
                    .get(zone_tuple(&zone))
                    .map_err(unavailable)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                next = current + 1;
                epochs
                    .insert(zone_tuple(&zone), next)
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(Epoch(next))
        })
        .await
    }

    async fn drop_zone(&self, zone: &ZoneKey) -> Result<(), StorageError> {
        let zone = zone.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let (f, z) = zone_tuple(&zone);
                let mut journal = txn.open_table(JOURNAL).map_err(unavailable)?;
                journal
                    .retain_in((f, z, 0)..=(f, z, u64::MAX), |_, _| false)
                    .map_err(unavailable)?;
                let mut snapshots = txn.open_table(SNAPSHOTS).map_err(unavailable)?;
                snapshots.remove((f, z)).map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn put_facility(&self, id: &FacilityId, bytes: Vec<u8>) -> Result<(), StorageError> {
        let id = id.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(FACILITIES).map_err(unavailable)?;
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn facilities(&self) -> Result<Vec<(FacilityId, Vec<u8>)>, StorageError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(FACILITIES).map_err(unavailable)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(unavailable)? {
                let (key, value) = item.map_err(unavailable)?;
                let id = FacilityId::parse(key.value())
                    .map_err(|e| StorageError::Corrupt(format!("facility key: {e}")))?;
                out.push((id, value.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn booking(&self, id: &BookingId) -> Result<Option<Vec<u8>>, StorageError> {
        let id = id.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(BOOKINGS).map_err(unavailable)?;
            let found = table.get(id.as_str()).map_err(unavailable)?;
            Ok(found.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn idempotent_booking(
        &self,
        owner: &UserId,
        key: &str,
        now: Millis,
    ) -> Result<Option<BookingId>, StorageError> {
        let owner = owner.clone();
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(IDEMPOTENCY).map_err(unavailable)?;
            let Some(found) = table
                .get((owner.as_str(), key.as_str()))
                .map_err(unavailable)?
            else {
                return Ok(None);
            };
            let (booking, expires_at) = found.value();
            if expires_at <= now.0 {
                return Ok(None);
            }
            BookingId::parse(booking)
                .map(Some)
                .map_err(|e| StorageError::Corrupt(format!("idempotency record: {e}")))
        })
        .await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(unavailable))
            .await
    }
}
