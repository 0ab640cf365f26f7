//! What the storage layer stores, independent of any backend.

use std::fmt;

use bincode::{Decode, Encode};

use parkme_engine::{BookingId, FacilityId, Millis, Seq, UserId, ZoneId};

/// A zone's journal and snapshots are keyed by facility and zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct ZoneKey {
    pub facility: FacilityId,
    pub zone: ZoneId,
}

impl ZoneKey {
    pub fn new(facility: FacilityId, zone: ZoneId) -> Self {
        Self { facility, zone }
    }
}

impl fmt::Display for ZoneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.facility, self.zone)
    }
}

/// A writer's fencing token for one zone: a write carrying an epoch older
/// than the zone's current one is refused, so two owners can never fork a
/// zone's history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The fencing rule every backend applies: a writer whose epoch is
    /// older than the zone's `current` one is refused.
    pub fn admit(self, zone: &ZoneKey, current: u64) -> Result<(), crate::error::StorageError> {
        if self.0 < current {
            return Err(crate::error::StorageError::Fenced {
                zone: zone.to_string(),
                current,
                ours: self.0,
            });
        }
        Ok(())
    }
}

/// One durable change. A commit writes a group of them all or none; a
/// group commit writes many groups at once (see [`crate::Storage`]).
///
/// This is the API, not a stored format: each backend keeps its own
/// encoding (the embedded WAL has a versioned one of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Appends a journal event at `seq` (re-appending the same seq is
    /// harmless: it overwrites with the same bytes).
    Event {
        zone: ZoneKey,
        epoch: Epoch,
        seq: Seq,
        bytes: Vec<u8>,
    },
    /// Upserts a booking record; the record names its facility and zone, so
    /// this table is also the booking id → location index. A record with
    /// `forget_after` set may be forgotten by the store once that time has
    /// passed (the writer sets it when the record reached its final state);
    /// without it the record is kept until it is written again.
    Booking {
        id: BookingId,
        bytes: Vec<u8>,
        forget_after: Option<Millis>,
    },
    /// Remembers which booking an idempotency key created, until `expires_at`.
    Idempotency {
        owner: UserId,
        key: String,
        booking: BookingId,
        expires_at: Millis,
        /// Written with the events of its booking: what the key must still
        /// be for this claim to land (`None`: absent; else the binding the
        /// caller read, expired or naming a booking that never landed).
        /// A store with other writers (CQL) refuses the commit otherwise,
        /// so a claim made by an owner that was replaced meanwhile cannot
        /// overwrite the key of a retry its successor already booked.
        replaces: Option<(BookingId, Millis)>,
    },
}

impl Write {
    pub fn zone(&self) -> Option<(&ZoneKey, Epoch)> {
        match self {
            Write::Event { zone, epoch, .. } => Some((zone, *epoch)),
            _ => None,
        }
    }

    /// Approximate payload size, for batching limits.
    pub fn size(&self) -> usize {
        match self {
            Write::Event { bytes, .. } | Write::Booking { bytes, .. } => bytes.len() + 64,
            Write::Idempotency { key, .. } => key.len() + 96,
        }
    }
}

/// A booking record as a listing returns it ([`crate::Storage::bookings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBooking {
    pub id: BookingId,
    pub bytes: Vec<u8>,
    /// When the store may forget the record (`None`: kept until rewritten).
    /// Backends that expire records by TTL report it to the second.
    pub forget_after: Option<Millis>,
}

impl StoredBooking {
    /// The write that stores this record again.
    pub fn into_write(self) -> Write {
        Write::Booking {
            id: self.id,
            bytes: self.bytes,
            forget_after: self.forget_after,
        }
    }
}

/// One occupancy sample of a facility (contract §3.1), opaque to storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySample {
    pub facility: FacilityId,
    pub at: Millis,
    pub bytes: Vec<u8>,
    /// Kept at least until then.
    pub keep_until: Millis,
}

/// An idempotency key as a listing returns it
/// ([`crate::Storage::idempotency_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub owner: UserId,
    pub key: String,
    pub booking: BookingId,
    pub expires_at: Millis,
}

impl StoredKey {
    /// The write that stores this key again.
    pub fn into_write(self) -> Write {
        Write::Idempotency {
            owner: self.owner,
            key: self.key,
            booking: self.booking,
            expires_at: self.expires_at,
            replaces: None,
        }
    }
}

/// What one run of [`crate::Storage::upkeep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upkeep {
    /// Idempotency keys past their `expires_at`.
    pub idempotency_keys: u64,
    /// Booking records past their `forget_after`.
    pub bookings: u64,
}
