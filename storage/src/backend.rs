//! The one trait every storage backend implements.
//!
//! Promises every implementation keeps (checked by `conformance`, feature `testsuite`):
//! - a group of writes is durable when its commit returns `Ok`, and `Ok`
//!   is never returned for a group that did not land whole;
//! - the groups of one [`Storage::commit_groups`] succeed or fail each on
//!   its own (a fenced group does not fail the others);
//! - journal reads return events in seq order;
//! - an `Event` write whose epoch is no longer the zone's current one is
//!   refused with [`StorageError::Fenced`], and nothing of a group that a
//!   stale writer sends lands (no event, no booking, no idempotency key);
//! - a snapshot at seq `n` lets the journal forget events `<= n`, and a
//!   snapshot never replaces one with a higher seq (an older one is
//!   ignored);
//! - [`Storage::upkeep`] forgets expired idempotency keys and booking
//!   records past their `forget_after`;
//! - a backend never panics on bad stored bytes: it reports `Corrupt`;
//! - the listings ([`Storage::zones`], [`Storage::bookings`],
//!   [`Storage::idempotency_keys`]) stream in bounded memory and name every
//!   item stored before the listing began exactly once (unless it was
//!   forgotten or dropped meanwhile), in a version at least as new as the
//!   one stored then; items written while a listing runs may or may not
//!   appear;
//! - [`Storage::clear`] forgets every record but keeps fencing: an epoch
//!   handed out before the clear is still refused after a newer claim,
//!   and a claim after it still gets a newer epoch than any before.
//!
//! What "lands whole" can mean for a backend without transactions across
//! partitions (CQL) is spelled out in `storage/SCHEMA.md`: a group whose
//! commit failed may have landed a prefix of its zone's events (exactly as
//! if the process had crashed before the ack); never a hole, never its
//! booking or idempotency records.

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId};

use crate::error::StorageError;
use crate::model::{Epoch, HistorySample, StoredBooking, StoredKey, Upkeep, Write, ZoneKey};

/// A listing: items one by one, fetched page by page.
pub type Listing<'a, T> = BoxStream<'a, Result<T, StorageError>>;

#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and metrics (`memory`, `embedded`, `scylla`).
    fn name(&self) -> &'static str;

    /// Writes one group durably, all or nothing.
    async fn commit(&self, writes: &[Write]) -> Result<(), StorageError>;

    /// Writes several independent groups in one go (a group commit), each
    /// with its own outcome, in the order given. A group of a zone whose
    /// earlier group in the same call failed fails too (never a hole in a
    /// zone's journal). Backends that can share the cost (one fsync, one
    /// round trip per partition) override this; the default commits the
    /// groups one after another.
    async fn commit_groups(&self, groups: &[&[Write]]) -> Vec<Result<(), StorageError>> {
        let mut failed: Vec<&ZoneKey> = Vec::new();
        let mut outcomes = Vec::with_capacity(groups.len());
        for group in groups {
            let zones = || group.iter().filter_map(Write::zone).map(|(zone, _)| zone);
            let outcome = match zones().find(|zone| failed.contains(zone)) {
                Some(zone) => Err(StorageError::Poisoned(zone.to_string())),
                None => self.commit(group).await,
            };
            if outcome.is_err() {
                failed.extend(zones());
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Journal events of `zone` with seq greater than `after`, in order.
    async fn read_events(
        &self,
        zone: &ZoneKey,
        after: Seq,
    ) -> Result<Vec<(Seq, Vec<u8>)>, StorageError>;

    /// Stores the zone's image at `seq` and retires journal events `<= seq`.
    /// Refused with `Fenced` for a writer that is no longer the zone's
    /// owner; ignored (`Ok`) when the store already holds a snapshot at
    /// `seq` or later, so snapshots landing out of order never go back.
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
    /// `fence`: cluster mode, the fence the owner claimed with
    /// [`Storage::claim_facility`]; the write lands only while it is still
    /// the record's newest fence ([`StorageError::Fenced`] otherwise:
    /// nothing was written). `None`: unconditional (one node, or the first
    /// record of a facility no node serves yet).
    async fn put_facility(
        &self,
        id: &FacilityId,
        bytes: Vec<u8>,
        fence: Option<Epoch>,
    ) -> Result<(), StorageError>;

    /// Makes the caller the only writer of an existing facility record:
    /// returns a fence greater than every fence handed out before for it,
    /// after which a write under an older fence is refused. Claim before
    /// reading the record: what an older owner wrote is then either read
    /// or refused. `UnknownFacility`-like absence is `Ok(None)`.
    async fn claim_facility(&self, id: &FacilityId) -> Result<Option<Epoch>, StorageError>;

    /// Every facility record.
    async fn facilities(&self) -> Result<Vec<(FacilityId, Vec<u8>)>, StorageError>;

    /// One facility record, by key (never a listing: a request naming an
    /// unknown id costs one lookup).
    async fn facility(&self, id: &FacilityId) -> Result<Option<Vec<u8>>, StorageError>;

    /// A booking record by id.
    async fn booking(&self, id: &BookingId) -> Result<Option<Vec<u8>>, StorageError>;

    /// The booking an unexpired idempotency key created.
    async fn idempotent_booking(
        &self,
        owner: &UserId,
        key: &str,
        now: Millis,
    ) -> Result<Option<BookingId>, StorageError> {
        Ok(self
            .idempotency_binding(owner, key)
            .await?
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(id, _)| id))
    }

    /// An idempotency key as stored, expired or not: the booking it names
    /// and when it expires. What a new claim of the key must still find
    /// there ([`Write::Idempotency`]'s `replaces`).
    async fn idempotency_binding(
        &self,
        owner: &UserId,
        key: &str,
    ) -> Result<Option<(BookingId, Millis)>, StorageError>;

    /// Stores occupancy samples (contract §3.1), all in one write where the
    /// backend can. A second sample of a facility at the same `at` replaces
    /// the first.
    async fn put_history(&self, samples: Vec<HistorySample>) -> Result<(), StorageError>;

    /// The samples of a facility taken in `[from, to]`, oldest first.
    async fn history(
        &self,
        id: &FacilityId,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(Millis, Vec<u8>)>, StorageError>;

    /// Forgets samples taken before `before` (backends that expire rows by
    /// TTL do nothing); returns how many went.
    async fn purge_history(&self, before: Millis) -> Result<u64, StorageError>;

    /// Housekeeping, run periodically by the node: forgets idempotency keys
    /// that expired before `now` and booking records whose `forget_after`
    /// is before `now`. Backends whose server expires rows itself (CQL
    /// `USING TTL`) report nothing here.
    async fn upkeep(&self, now: Millis) -> Result<Upkeep, StorageError>;

    /// Every zone that holds a snapshot or journal events (a dropped or
    /// merely claimed zone holds neither), each once, in no promised order.
    fn zones(&self) -> Listing<'_, ZoneKey>;

    /// Every booking record with its forget time, each once, in no
    /// promised order.
    fn bookings(&self) -> Listing<'_, StoredBooking>;

    /// Every stored idempotency key (expired ones not yet purged included:
    /// callers filter on `expires_at`), each once, in no promised order.
    fn idempotency_keys(&self) -> Listing<'_, StoredKey>;

    /// Forgets everything: facility records, every zone's journal and
    /// snapshots, booking records and idempotency keys. Zone epochs are
    /// kept, so fencing holds across it. For `parkme restore --force`
    /// only: never while a server uses the store.
    async fn clear(&self) -> Result<(), StorageError>;

    /// Cheap liveness probe for `/health/`.
    async fn ping(&self) -> Result<(), StorageError>;
}
