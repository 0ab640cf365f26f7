//! The one trait every storage backend implements.
//!
//! Promises every implementation keeps (checked by [`crate::conformance`]):
//! - `commit` is all-or-nothing and durable when it returns `Ok`;
//! - journal reads return events in seq order;
//! - an `Event` write with an epoch older than the zone's current epoch is
//!   refused with [`StorageError::Fenced`] and nothing of its batch lands;
//! - a snapshot at seq `n` lets the journal forget events `<= n`;
//! - a backend never panics on bad stored bytes: it reports `Corrupt`.

use async_trait::async_trait;
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};

use crate::error::StorageError;
use crate::model::{Epoch, Write, ZoneKey};

#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and metrics (`memory`, `embedded`, `scylla`).
    fn name(&self) -> &'static str;

    /// Writes a batch durably, all or nothing.
    async fn commit(&self, writes: &[Write]) -> Result<(), StorageError>;

    /// Journal events of `zone` with seq greater than `after`, in order.
    async fn read_events(
        &self,
        zone: &ZoneKey,
        after: Seq,
    ) -> Result<Vec<(Seq, Vec<u8>)>, StorageError>;

    /// Stores the zone's image at `seq` and retires journal events `<= seq`.
    async fn put_snapshot(
        &self,
        zone: &ZoneKey,
        epoch: Epoch,
        seq: Seq,
        bytes: Vec<u8>,
    ) -> Result<(), StorageError>;

    /// The newest snapshot of a zone.
    async fn latest_snapshot(&self, zone: &ZoneKey)
    -> Result<Option<(Seq, Vec<u8>)>, StorageError>;

    /// Makes the caller the zone's only writer: returns a new epoch greater
    /// than every epoch handed out before for this zone.
    async fn claim_zone(&self, zone: &ZoneKey) -> Result<Epoch, StorageError>;

    /// Forgets a zone's journal and snapshots (the zone left the layout).
    async fn drop_zone(&self, zone: &ZoneKey) -> Result<(), StorageError>;

    /// Creates or replaces a facility record (layout, sensor key hash, ...).
    async fn put_facility(&self, id: &FacilityId, bytes: Vec<u8>) -> Result<(), StorageError>;

    /// Every facility record.
    async fn facilities(&self) -> Result<Vec<(FacilityId, Vec<u8>)>, StorageError>;

    /// A booking record by id.
    async fn booking(&self, id: &BookingId) -> Result<Option<Vec<u8>>, StorageError>;

    /// The booking an unexpired idempotency key created.
    async fn idempotent_booking(
        &self,
        owner: &UserId,
        key: &str,
        now: Millis,
    ) -> Result<Option<BookingId>, StorageError>;

    /// Cheap liveness probe for `/health/`.
    async fn ping(&self) -> Result<(), StorageError>;
}
