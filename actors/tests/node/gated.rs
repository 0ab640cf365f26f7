//! A storage whose commits wait at a gate the test opens: the one way to
//! hold a write in flight for as long as a test needs. It can also refuse
//! facility record writes, as a storage outage would.
//!
//! `Storage` is an `async_trait`; this crate has no `async-trait`
//! dependency, so the methods are written in their expanded form and
//! delegate to a memory backend.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};
use parkme_storage::backend::Listing;
use parkme_storage::memory::MemoryStorage;
use parkme_storage::{
    Epoch, HistorySample, Storage, StorageError, StoredBooking, StoredKey, Upkeep, Write, ZoneKey,
};
use tokio::sync::watch;

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

#[derive(Debug)]
pub struct GatedStorage {
    inner: MemoryStorage,
    open: watch::Receiver<bool>,
    /// Commits waiting at the gate.
    waiting: watch::Sender<usize>,
    /// Facility record writes fail while set.
    refuse_records: Arc<AtomicBool>,
}

/// The test's side of the gate.
#[derive(Debug)]
pub struct Gate {
    open: watch::Sender<bool>,
    waiting: watch::Receiver<usize>,
    refuse_records: Arc<AtomicBool>,
}

impl Gate {
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Makes facility record writes fail (`true`) or work again.
    pub fn refuse_records(&self, refuse: bool) {
        self.refuse_records.store(refuse, Ordering::SeqCst);
    }

    /// Waits until `n` commits are held at the closed gate.
    pub async fn held(&mut self, n: usize) {
        self.waiting
            .wait_for(|w| *w >= n)
            .await
            .expect("storage alive");
    }
}

pub fn gated() -> (Arc<GatedStorage>, Gate) {
    let (open_tx, open_rx) = watch::channel(true);
    let (waiting_tx, waiting_rx) = watch::channel(0);
    let refuse_records = Arc::new(AtomicBool::new(false));
    let storage = GatedStorage {
        inner: MemoryStorage::new(),
        open: open_rx,
        waiting: waiting_tx,
        refuse_records: Arc::clone(&refuse_records),
    };
    let gate = Gate {
        open: open_tx,
        waiting: waiting_rx,
        refuse_records,
    };
    (Arc::new(storage), gate)
}

impl Storage for GatedStorage {
    fn name(&self) -> &'static str {
        "gated-memory"
    }

    fn commit<'s, 'w, 'f>(&'s self, writes: &'w [Write]) -> Fut<'f, ()>
    where
        's: 'f,
        'w: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let mut open = self.open.clone();
            if !*open.borrow() {
                self.waiting.send_modify(|w| *w += 1);
                let _ = open.wait_for(|o| *o).await;
                self.waiting.send_modify(|w| *w -= 1);
            }
            self.inner.commit(writes).await
        })
    }

    fn read_events<'s, 'z, 'f>(
        &'s self,
        zone: &'z ZoneKey,
        after: Seq,
    ) -> Fut<'f, Vec<(Seq, Vec<u8>)>>
    where
        's: 'f,
        'z: 'f,
        Self: 'f,
    {
        self.inner.read_events(zone, after)
    }

    fn put_snapshot<'s, 'z, 'f>(
        &'s self,
        zone: &'z ZoneKey,
        epoch: Epoch,
        seq: Seq,
        bytes: Vec<u8>,
    ) -> Fut<'f, ()>
    where
        's: 'f,
        'z: 'f,
        Self: 'f,
    {
        self.inner.put_snapshot(zone, epoch, seq, bytes)
    }

    fn latest_snapshot<'s, 'z, 'f>(&'s self, zone: &'z ZoneKey) -> Fut<'f, Option<(Seq, Vec<u8>)>>
    where
        's: 'f,
        'z: 'f,
        Self: 'f,
    {
        self.inner.latest_snapshot(zone)
    }

    fn claim_zone<'s, 'z, 'f>(&'s self, zone: &'z ZoneKey) -> Fut<'f, Epoch>
    where
        's: 'f,
        'z: 'f,
        Self: 'f,
    {
        self.inner.claim_zone(zone)
    }

    fn drop_zone<'s, 'z, 'f>(&'s self, zone: &'z ZoneKey) -> Fut<'f, ()>
    where
        's: 'f,
        'z: 'f,
        Self: 'f,
    {
        self.inner.drop_zone(zone)
    }

    fn put_facility<'s, 'i, 'f>(
        &'s self,
        id: &'i FacilityId,
        bytes: Vec<u8>,
        fence: Option<Epoch>,
    ) -> Fut<'f, ()>
    where
        's: 'f,
        'i: 'f,
        Self: 'f,
    {
        if self.refuse_records.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(StorageError::Unavailable(
                    "facility records refused by the test".into(),
                ))
            });
        }
        self.inner.put_facility(id, bytes, fence)
    }

    fn put_history<'s, 'f>(&'s self, samples: Vec<HistorySample>) -> Fut<'f, ()>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.put_history(samples)
    }

    fn history<'s, 'i, 'f>(
        &'s self,
        id: &'i FacilityId,
        from: Millis,
        to: Millis,
    ) -> Fut<'f, Vec<(Millis, Vec<u8>)>>
    where
        's: 'f,
        'i: 'f,
        Self: 'f,
    {
        self.inner.history(id, from, to)
    }

    fn purge_history<'s, 'f>(&'s self, before: Millis) -> Fut<'f, u64>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.purge_history(before)
    }

    fn claim_facility<'s, 'i, 'f>(&'s self, id: &'i FacilityId) -> Fut<'f, Option<Epoch>>
    where
        's: 'f,
        'i: 'f,
        Self: 'f,
    {
        self.inner.claim_facility(id)
    }

    fn facilities<'s, 'f>(&'s self) -> Fut<'f, Vec<(FacilityId, Vec<u8>)>>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.facilities()
    }

    fn facility<'s, 'i, 'f>(&'s self, id: &'i FacilityId) -> Fut<'f, Option<Vec<u8>>>
    where
        's: 'f,
        'i: 'f,
        Self: 'f,
    {
        self.inner.facility(id)
    }

    fn booking<'s, 'i, 'f>(&'s self, id: &'i BookingId) -> Fut<'f, Option<Vec<u8>>>
    where
        's: 'f,
        'i: 'f,
        Self: 'f,
    {
        self.inner.booking(id)
    }

    fn idempotency_binding<'s, 'o, 'k, 'f>(
        &'s self,
        owner: &'o UserId,
        key: &'k str,
    ) -> Fut<'f, Option<(BookingId, Millis)>>
    where
        's: 'f,
        'o: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.inner.idempotency_binding(owner, key)
    }

    fn upkeep<'s, 'f>(&'s self, now: Millis) -> Fut<'f, Upkeep>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.upkeep(now)
    }

    fn zones(&self) -> Listing<'_, ZoneKey> {
        self.inner.zones()
    }

    fn bookings(&self) -> Listing<'_, StoredBooking> {
        self.inner.bookings()
    }

    fn idempotency_keys(&self) -> Listing<'_, StoredKey> {
        self.inner.idempotency_keys()
    }

    fn clear<'s, 'f>(&'s self) -> Fut<'f, ()>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.clear()
    }

    fn ping<'s, 'f>(&'s self) -> Fut<'f, ()>
    where
        's: 'f,
        Self: 'f,
    {
        self.inner.ping()
    }
}
