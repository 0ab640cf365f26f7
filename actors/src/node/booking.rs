//! Bookings through the node: the zones a request may go to, idempotent
//! retries (one key at a time, striped locks), cancellation, and reading a
//! booking back from the durable table.
//!
//! This module must never decide whether a spot is free: the zone that
//! owns it does, in its mailbox.

use parkme_engine::codec;
use parkme_engine::{
    Booking, BookingId, BookingRequest, EngineError, FacilityId, Millis, Plate, SpotId, SpotKind,
    UserId, ZoneId,
};
use rand::Rng;

use super::{FacilityHandle, FacilityMsg, Node, ask};
use crate::error::ActorError;
use crate::facility::Routes;
use crate::zone::{self, ZoneMsg};

/// What a booking caller asks for.
#[derive(Debug, Clone)]
pub struct BookParams {
    pub owner: UserId,
    pub plate: Plate,
    pub zone: Option<ZoneId>,
    pub kind: Option<SpotKind>,
    pub spot: Option<SpotId>,
    pub hold_seconds: u32,
    /// Set: an advance reservation of `[starts_at, ends_at)` (§2.2).
    pub starts_at: Option<Millis>,
    /// The end of the stay (§2.3; required with `starts_at`).
    pub ends_at: Option<Millis>,
    pub idempotency_key: Option<String>,
}

/// How a booking request ended.
#[derive(Debug, Clone)]
pub enum Booked {
    Created(Booking),
    /// The idempotency key had already created this booking.
    Replayed(Booking),
}

/// A new opaque booking id: a millisecond timestamp and a random tail.
/// Ids minted close together sort close together, which keeps inserts
/// into the stores' booking index local.
pub fn new_booking_id(now: Millis) -> BookingId {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let id = format!("bk_{:011x}{tail}", now.0.max(0));
    BookingId::parse(&id).expect("generated ids are valid")
}

fn stripe(owner: &UserId, key: &str, stripes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    owner.hash(&mut h);
    key.hash(&mut h);
    (h.finish() as usize) % stripes.max(1)
}

impl Node {
    /// Books a spot (or a unit of a counter zone) in a facility.
    pub async fn book(&self, id: &FacilityId, params: BookParams) -> Result<Booked, ActorError> {
        let handle = self.handle(id)?;
        let now = self.inner.clock.now();
        let (_guard, replaces) = match &params.idempotency_key {
            Some(key) => {
                let stripe = stripe(&params.owner, key, self.inner.idempotency_locks.len());
                let guard = self.inner.idempotency_locks[stripe].lock().await;
                let found = self
                    .storage()
                    .idempotency_binding(&params.owner, key)
                    .await?;
                if let Some((existing, expires_at)) = &found
                    && *expires_at > now
                {
                    if let Some(booking) = self.booking(existing).await? {
                        return Ok(Booked::Replayed(booking));
                    }
                    if let Some(booking) = self.held_by_a_zone(&handle, existing).await? {
                        return Ok(Booked::Replayed(booking));
                    }
                }
                // Expired, or naming a booking that never landed: the new
                // booking claims the key only if it is still so.
                (Some(guard), found)
            }
            None => (None, None),
        };
        let routes = handle.shared.routes();
        let zones = self.booking_zones(&handle, &routes, &params).await?;
        let idempotency = params.idempotency_key.clone().map(|key| {
            let ttl = self.inner.config.idempotency_ttl_secs;
            zone::KeyClaim {
                key,
                expires_at: now.plus_secs(ttl),
                replaces: replaces.clone(),
            }
        });
        let request = BookingRequest {
            id: new_booking_id(now),
            owner: params.owner.clone(),
            plate: params.plate.clone(),
            kind: params.kind,
            spot: params.spot.clone(),
            hold_seconds: params.hold_seconds,
            starts_at: params.starts_at,
            ends_at: params.ends_at,
            now,
        };
        // A reservation refused by every zone for want of quota is
        // `no_capacity`; otherwise, `no_spot_available`.
        let mut refusal = if request.is_reservation() {
            EngineError::NoCapacity
        } else {
            EngineError::NoSpotAvailable
        };
        for zone in zones {
            let Some(actor) = routes.zones.get(&zone) else {
                continue;
            };
            let request = request.clone();
            let idempotency = idempotency.clone();
            let result = zone::ask(actor, |reply| ZoneMsg::Book {
                request,
                idempotency,
                reply,
            })
            .await;
            match result {
                Ok(booking) => return Ok(Booked::Created(booking)),
                Err(ActorError::Engine(EngineError::NoCapacity)) => continue,
                Err(ActorError::Engine(EngineError::NoSpotAvailable)) => {
                    refusal = EngineError::NoSpotAvailable;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(refusal.into())
    }

    /// The live booking `id` if a zone of the facility holds it. A key's
    /// first attempt may have reached the journal and not the booking
    /// table (the writer died, or the record write failed): its zone
    /// knows it, and writes the record again before answering.
    async fn held_by_a_zone(
        &self,
        handle: &FacilityHandle,
        id: &BookingId,
    ) -> Result<Option<Booking>, ActorError> {
        let routes = handle.shared.routes();
        for zone in routes.zones.values() {
            let booking = id.clone();
            match zone::ask(zone, |reply| ZoneMsg::Find { booking, reply }).await {
                Ok(found) => return Ok(Some(found)),
                Err(ActorError::Engine(EngineError::UnknownBooking(_))) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The zones to try, in order.
    async fn booking_zones(
        &self,
        handle: &FacilityHandle,
        routes: &Routes,
        params: &BookParams,
    ) -> Result<Vec<ZoneId>, ActorError> {
        if let Some(spot) = &params.spot {
            let zone = routes
                .spots
                .get(spot)
                .ok_or_else(|| EngineError::UnknownSpot(spot.clone()))?;
            if params.zone.as_ref().is_some_and(|z| z != zone) {
                return Err(EngineError::UnknownSpot(spot.clone()).into());
            }
            return Ok(vec![zone.clone()]);
        }
        if let Some(zone) = &params.zone {
            if !routes.zones.contains_key(zone) {
                return Err(ActorError::UnknownZone(zone.to_string()));
            }
            return Ok(vec![zone.clone()]);
        }
        let kind = params.kind;
        ask(&handle.actor, |reply| FacilityMsg::Candidates {
            kind,
            reply,
        })
        .await
    }

    /// Cancels a `CONFIRMED` booking.
    pub async fn cancel(&self, booking: &Booking) -> Result<Booking, ActorError> {
        let routes = self.handle(&booking.facility)?.shared.routes();
        let zone = routes
            .zones
            .get(&booking.zone)
            .ok_or_else(|| EngineError::UnknownBooking(booking.id.clone()))?;
        let id = booking.id.clone();
        match zone::ask(zone, |reply| ZoneMsg::Cancel { booking: id, reply }).await {
            Err(ActorError::Engine(EngineError::UnknownBooking(_))) => {
                // No longer live in its zone: it already ended.
                let status = self
                    .booking(&booking.id)
                    .await?
                    .map(|b| b.status)
                    .unwrap_or(booking.status);
                Err(EngineError::InvalidTransition(status).into())
            }
            other => other,
        }
    }

    /// Moves the end of a live booking's stay (`PATCH /v1/bookings/{id}`):
    /// its zone re-checks the quota; an ended booking is `not_live`.
    pub async fn extend(&self, booking: &Booking, ends_at: Millis) -> Result<Booking, ActorError> {
        let routes = self.handle(&booking.facility)?.shared.routes();
        let ended = |status| ActorError::Engine(EngineError::NotLive(status));
        if !booking.is_live() {
            return Err(ended(booking.status));
        }
        let zone = routes
            .zones
            .get(&booking.zone)
            .ok_or_else(|| ended(booking.status))?;
        let id = booking.id.clone();
        let asked = zone::ask(zone, |reply| ZoneMsg::Extend {
            booking: id,
            ends_at,
            reply,
        })
        .await;
        match asked {
            Err(ActorError::Engine(EngineError::UnknownBooking(_))) => {
                // No longer live in its zone: it ended meanwhile.
                let status = self
                    .booking(&booking.id)
                    .await?
                    .map(|b| b.status)
                    .unwrap_or(booking.status);
                Err(ended(status))
            }
            other => other,
        }
    }

    /// A booking by id, from the durable booking table.
    pub async fn booking(&self, id: &BookingId) -> Result<Option<Booking>, ActorError> {
        let Some(bytes) = self.storage().booking(id).await? else {
            return Ok(None);
        };
        codec::decode_stored(&bytes)
            .map(Some)
            .map_err(|e| ActorError::Corrupt(format!("booking {id}: {e}")))
    }
}
