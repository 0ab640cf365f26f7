//! An in-memory backend. For tests only: nothing survives the process, and
//! the binary says so loudly when it is selected.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures_util::StreamExt;
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};

use crate::backend::{Listing, Storage};
use crate::error::StorageError;
use crate::model::{Epoch, HistorySample, StoredBooking, StoredKey, Upkeep, Write, ZoneKey};

#[derive(Debug, Default)]
struct Inner {
    journal: BTreeMap<(ZoneKey, Seq), Vec<u8>>,
    snapshots: HashMap<ZoneKey, (Seq, Vec<u8>)>,
    epochs: HashMap<ZoneKey, Epoch>,
    facilities: BTreeMap<FacilityId, Vec<u8>>,
    fences: crate::record_fence::RecordFences,
    history: BTreeMap<(FacilityId, i64), Vec<u8>>,
    /// Booking records and the time after which each may be forgotten.
    bookings: HashMap<BookingId, (Vec<u8>, Option<Millis>)>,
    idempotency: HashMap<(UserId, String), (BookingId, Millis)>,
}

impl Inner {
    fn check_epoch(&self, zone: &ZoneKey, ours: Epoch) -> Result<(), StorageError> {
        ours.admit(zone, self.epochs.get(zone).copied().unwrap_or_default().0)
    }

    /// One group, all or nothing: every epoch is checked before anything
    /// is applied.
    fn commit(&mut self, writes: &[Write]) -> Result<(), StorageError> {
        for (zone, epoch) in writes.iter().filter_map(Write::zone) {
            self.check_epoch(zone, epoch)?;
        }
        for write in writes {
            match write {
                Write::Event {
                    zone, seq, bytes, ..
                } => {
                    self.journal.insert((zone.clone(), *seq), bytes.clone());
                }
                Write::Booking {
                    id,
                    bytes,
                    forget_after,
                } => {
                    self.bookings
                        .insert(id.clone(), (bytes.clone(), *forget_after));
                }
                Write::Idempotency {
                    owner,
                    key,
                    booking,
                    expires_at,
                    ..
                } => {
                    self.idempotency
                        .insert((owner.clone(), key.clone()), (booking.clone(), *expires_at));
                }
            }
        }
        Ok(())
    }
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

#[async_trait]
impl Storage for MemoryStorage {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn commit(&self, writes: &[Write]) -> Result<(), StorageError> {
        self.lock().commit(writes)
    }

    async fn commit_groups(&self, groups: &[&[Write]]) -> Vec<Result<(), StorageError>> {
        let mut inner = self.lock();
        groups.iter().map(|group| inner.commit(group)).collect()
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
        inner.check_epoch(zone, epoch)?;
        if inner
            .snapshots
            .get(zone)
            .is_some_and(|(held, _)| *held >= seq)
        {
            return Ok(());
        }
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

    async fn put_facility(
        &self,
        id: &FacilityId,
        bytes: Vec<u8>,
        fence: Option<Epoch>,
    ) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.fences.admit(id, fence)?;
        inner.facilities.insert(id.clone(), bytes);
        Ok(())
    }

    async fn put_history(&self, samples: Vec<HistorySample>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        for s in samples {
            inner.history.insert((s.facility, s.at.0), s.bytes);
        }
        Ok(())
    }

    async fn history(
        &self,
        id: &FacilityId,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(Millis, Vec<u8>)>, StorageError> {
        if from > to {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .history
            .range((id.clone(), from.0)..=(id.clone(), to.0))
            .map(|((_, at), bytes)| (Millis(*at), bytes.clone()))
            .collect())
    }

    async fn purge_history(&self, before: Millis) -> Result<u64, StorageError> {
        let mut inner = self.lock();
        let was = inner.history.len();
        inner.history.retain(|(_, at), _| *at >= before.0);
        Ok((was - inner.history.len()) as u64)
    }

    async fn claim_facility(&self, id: &FacilityId) -> Result<Option<Epoch>, StorageError> {
        let mut inner = self.lock();
        if !inner.facilities.contains_key(id) {
            return Ok(None);
        }
        Ok(Some(inner.fences.claim(id)))
    }

    async fn facilities(&self) -> Result<Vec<(FacilityId, Vec<u8>)>, StorageError> {
        Ok(self
            .lock()
            .facilities
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn facility(&self, id: &FacilityId) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().facilities.get(id).cloned())
    }

    async fn booking(&self, id: &BookingId) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().bookings.get(id).map(|(bytes, _)| bytes.clone()))
    }

    async fn idempotency_binding(
        &self,
        owner: &UserId,
        key: &str,
    ) -> Result<Option<(BookingId, Millis)>, StorageError> {
        Ok(self
            .lock()
            .idempotency
            .get(&(owner.clone(), key.to_owned()))
            .cloned())
    }

    async fn upkeep(&self, now: Millis) -> Result<Upkeep, StorageError> {
        let mut inner = self.lock();
        let (keys, bookings) = (inner.idempotency.len(), inner.bookings.len());
        inner
            .idempotency
            .retain(|_, (_, expires_at)| *expires_at > now);
        inner
            .bookings
            .retain(|_, (_, forget_after)| forget_after.is_none_or(|at| at > now));
        Ok(Upkeep {
            idempotency_keys: (keys - inner.idempotency.len()) as u64,
            bookings: (bookings - inner.bookings.len()) as u64,
        })
    }

    // The listings copy under the lock: this backend holds everything in
    // memory anyway.
    fn zones(&self) -> Listing<'_, ZoneKey> {
        let zones: std::collections::BTreeSet<ZoneKey> = {
            let inner = self.lock();
            inner
                .snapshots
                .keys()
                .cloned()
                .chain(inner.journal.keys().map(|(zone, _)| zone.clone()))
                .collect()
        };
        futures_util::stream::iter(zones.into_iter().map(Ok)).boxed()
    }

    fn bookings(&self) -> Listing<'_, StoredBooking> {
        let bookings: Vec<StoredBooking> = self
            .lock()
            .bookings
            .iter()
            .map(|(id, (bytes, forget_after))| StoredBooking {
                id: id.clone(),
                bytes: bytes.clone(),
                forget_after: *forget_after,
            })
            .collect();
        futures_util::stream::iter(bookings.into_iter().map(Ok)).boxed()
    }

    fn idempotency_keys(&self) -> Listing<'_, StoredKey> {
        let keys: Vec<StoredKey> = self
            .lock()
            .idempotency
            .iter()
            .map(|((owner, key), (booking, expires_at))| StoredKey {
                owner: owner.clone(),
                key: key.clone(),
                booking: booking.clone(),
                expires_at: *expires_at,
            })
            .collect();
        futures_util::stream::iter(keys.into_iter().map(Ok)).boxed()
    }

    async fn clear(&self) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.journal.clear();
        inner.snapshots.clear();
        inner.facilities.clear();
        inner.bookings.clear();
        inner.idempotency.clear();
        inner.history.clear();
        Ok(())
    }

    async fn ping(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
