//! Writes that are durable in the WAL but not yet checkpointed into the
//! tables. Reads look here first (newest generation first), then in the
//! tables.

use std::collections::{BTreeMap, HashMap};

use parkme_engine::{BookingId, Millis, Seq, UserId};

use crate::model::{Write, ZoneKey};

/// One generation of un-checkpointed writes.
#[derive(Debug, Default)]
pub(super) struct Generation {
    pub events: BTreeMap<(ZoneKey, u64), Vec<u8>>,
    /// Booking records with the time each may be forgotten after.
    pub bookings: HashMap<BookingId, (Vec<u8>, Option<Millis>)>,
    pub idempotency: HashMap<(UserId, String), (BookingId, Millis)>,
    pub bytes: usize,
}

impl Generation {
    pub fn apply(&mut self, writes: &[Write]) {
        for write in writes {
            self.bytes += write.size();
            match write {
                Write::Event {
                    zone, seq, bytes, ..
                } => {
                    self.events.insert((zone.clone(), seq.0), bytes.clone());
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
    }

    pub fn events_after(&self, zone: &ZoneKey, after: Seq, into: &mut BTreeMap<u64, Vec<u8>>) {
        let start = (zone.clone(), after.0.saturating_add(1));
        let end = (zone.clone(), u64::MAX);
        for ((_, seq), bytes) in self.events.range(start..=end) {
            into.insert(*seq, bytes.clone());
        }
    }

    pub fn forget_events(&mut self, zone: &ZoneKey, up_to: Seq) {
        let start = (zone.clone(), 0);
        let end = (zone.clone(), up_to.0);
        let doomed: Vec<(ZoneKey, u64)> = self
            .events
            .range(start..=end)
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.events.remove(&key);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.bookings.is_empty() && self.idempotency.is_empty()
    }
}

/// The active generation takes new writes; the frozen one is being
/// checkpointed.
#[derive(Debug, Default)]
pub(super) struct MemTable {
    pub active: Generation,
    pub frozen: Option<std::sync::Arc<Generation>>,
}

impl MemTable {
    fn generations(&self) -> impl Iterator<Item = &Generation> {
        std::iter::once(&self.active).chain(self.frozen.as_deref())
    }

    pub fn booking(&self, id: &BookingId) -> Option<Vec<u8>> {
        self.generations()
            .find_map(|g| g.bookings.get(id).map(|(bytes, _)| bytes.clone()))
    }

    pub fn idempotency(&self, owner: &UserId, key: &str) -> Option<(BookingId, Millis)> {
        let lookup = (owner.clone(), key.to_owned());
        self.generations()
            .find_map(|g| g.idempotency.get(&lookup).cloned())
    }

    /// Events after `after`, newest generation winning.
    pub fn events_after(&self, zone: &ZoneKey, after: Seq, into: &mut BTreeMap<u64, Vec<u8>>) {
        if let Some(frozen) = &self.frozen {
            frozen.events_after(zone, after, into);
        }
        self.active.events_after(zone, after, into);
    }
}
