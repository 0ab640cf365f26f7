//! An in-memory backend. For tests only: nothing survives the process, and
//! the binary says so loudly when it is selected.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};

use crate::backend::Storage;
use crate::error::StorageError;
use crate::model::{Epoch, Write, ZoneKey};

#[derive(Debug, Default)]
struct Inner {
    journal: BTreeMap<(ZoneKey, Seq), Vec<u8>>,
    snapshots: HashMap<ZoneKey, (Seq, Vec<u8>)>,
    epochs: HashMap<ZoneKey, Epoch>,
    facilities: BTreeMap<FacilityId, Vec<u8>>,
    bookings: HashMap<BookingId, Vec<u8>>,
    idempotency: HashMap<(UserId, String), (BookingId, Millis)>,
}

/// Keeps everything in a mutex-guarded map.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    inner: Mutex<Inner>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock can only come from a bug in this
        // file; recover the data rather than poisoning every later call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn check_epoch(
    epochs: &HashMap<ZoneKey, Epoch>,
    zone: &ZoneKey,
    ours: Epoch,
) -> Result<(), StorageError> {
    ours.admit(zone, epochs.get(zone).copied().unwrap_or_default().0)
}

#[async_trait]
impl Storage for MemoryStorage {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn commit(&self, writes: &[Write]) -> Result<(), StorageError> {
        let mut inner = self.lock();
        for (zone, epoch) in writes.iter().filter_map(Write::zone) {
            check_epoch(&inner.epochs, zone, epoch)?;
        }
        for write in writes {
            match write {
                Write::Event {
                    zone, seq, bytes, ..
                } => {
                    inner.journal.insert((zone.clone(), *seq), bytes.clone());
                }
                Write::Booking { id, bytes } => {
                    inner.bookings.insert(id.clone(), bytes.clone());
                }
                Write::Idempotency {
                    owner,
                    key,
                    booking,
                    expires_at,
                } => {
                    inner
                        .idempotency
                        .insert((owner.clone(), key.clone()), (booking.clone(), *expires_at));
                }
            }
        }
        Ok(())
    }

    async fn read_events(
        &self,
        zone: &ZoneKey,
        after: Seq,
    ) -> Result<Vec<(Seq, Vec<u8>)>, StorageError> {
        let inner = self.lock();
        let start = (zone.clone(), after.next());
        let end = (zone.clone(), Seq(u64::MAX));
        Ok(inner
            .journal
            .range(start..=end)
            .map(|((_, seq), bytes)| (*seq, bytes.clone()))
            .collect())
    }

    async fn put_snapshot(
        &self,
        zone: &ZoneKey,
        epoch: Epoch,
        seq: Seq,
        bytes: Vec<u8>,
    ) -> Result<(), StorageError> {
        let mut inner = self.lock();
        check_epoch(&inner.epochs, zone, epoch)?;
        inner.snapshots.insert(zone.clone(), (seq, bytes));
        let keep = inner.journal.split_off(&(zone.clone(), seq.next()));
        inner.journal.retain(|(z, _), _| z != zone);
        inner.journal.extend(keep);
        Ok(())
    }

    async fn latest_snapshot(
        &self,
        zone: &ZoneKey,
    ) -> Result<Option<(Seq, Vec<u8>)>, StorageError> {
        Ok(self.lock().snapshots.get(zone).cloned())
    }

    async fn claim_zone(&self, zone: &ZoneKey) -> Result<Epoch, StorageError> {
        let mut inner = self.lock();
        let epoch = inner.epochs.entry(zone.clone()).or_default();
        epoch.0 += 1;
        Ok(*epoch)
    }

    async fn drop_zone(&self, zone: &ZoneKey) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.journal.retain(|(z, _), _| z != zone);
        inner.snapshots.remove(zone);
        Ok(())
    }

    async fn put_facility(&self, id: &FacilityId, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.lock().facilities.insert(id.clone(), bytes);
        Ok(())
    }

    async fn facilities(&self) -> Result<Vec<(FacilityId, Vec<u8>)>, StorageError> {
        Ok(self
            .lock()
            .facilities
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn booking(&self, id: &BookingId) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().bookings.get(id).cloned())
    }

    async fn idempotent_booking(
        &self,
        owner: &UserId,
        key: &str,
        now: Millis,
    ) -> Result<Option<BookingId>, StorageError> {
        let inner = self.lock();
        Ok(inner
            .idempotency
            .get(&(owner.clone(), key.to_owned()))
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(id, _)| id.clone()))
    }

    async fn ping(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
