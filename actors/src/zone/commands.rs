//! The commands that change a zone, one method each: booking, cancelling,
//! a spot's service flag, sensor readings, the zone's timer (hold expiry,
//! sensor liveness, reservation lead times, overstays). Each applies at
//! once in memory, then queues its journal writes and a typed [`Pending`]
//! reply that the pump answers once they are durable.
//!
//! This module must never answer a caller itself, except to refuse a
//! command the engine refused (nothing was applied).

use parkme_engine::{
    Booking, BookingId, BookingRequest, Command, EngineError, Event, Millis, Reading, SpotId,
    SpotView,
};
use parkme_storage::Write;
use tokio::sync::oneshot;

use super::pump::Pending;
use super::{Applied, Reply, ZoneActorState};
use crate::error::ActorError;

/// The booking the last of `applied` touched.
fn last_booking(applied: &[Applied]) -> Option<Booking> {
    applied
        .iter()
        .rev()
        .find_map(|(_, effect)| effect.booking.clone())
}

fn refuse<T>(reply: Reply<T>, error: EngineError) {
    let _ = reply.send(Err(error.into()));
}

impl ZoneActorState {
    pub(super) async fn book(
        &mut self,
        request: BookingRequest,
        idempotency: Option<super::KeyClaim>,
        reply: Reply<Booking>,
    ) {
        let owner = request.owner.clone();
        let applied = match self.zone.execute(&Command::Book(request)) {
            Ok(applied) => applied,
            Err(e) => return refuse(reply, e),
        };
        let booking = last_booking(&applied);
        let extra = match (idempotency, &booking) {
            (Some(claim), Some(booking)) => vec![Write::Idempotency {
                owner,
                key: claim.key,
                booking: booking.id.clone(),
                expires_at: claim.expires_at,
                replaces: claim.replaces,
            }],
            _ => Vec::new(),
        };
        self.commit_applied(applied, extra, Pending::Booking { reply, booking })
            .await;
    }

    pub(super) async fn cancel(&mut self, booking: BookingId, reply: Reply<Booking>) {
        let command = Command::Cancel {
            booking,
            now: self.now(),
        };
        let applied = match self.zone.execute(&command) {
            Ok(applied) => applied,
            Err(e) => return refuse(reply, e),
        };
        let booking = last_booking(&applied);
        self.commit_applied(applied, Vec::new(), Pending::Booking { reply, booking })
            .await;
    }

    pub(super) async fn extend(
        &mut self,
        booking: BookingId,
        ends_at: Millis,
        reply: Reply<Booking>,
    ) {
        let command = Command::Extend {
            booking: booking.clone(),
            ends_at,
            now: self.now(),
        };
        let applied = match self.zone.execute(&command) {
            Ok(applied) => applied,
            Err(e) => return refuse(reply, e),
        };
        // The same end again changes nothing: the booking as it is.
        let booking = last_booking(&applied).or_else(|| self.zone.booking(&booking).cloned());
        self.commit_applied(applied, Vec::new(), Pending::Booking { reply, booking })
            .await;
    }

    pub(super) async fn find(&mut self, booking: BookingId, reply: Reply<Booking>) {
        let Some(held) = self.zone.booking(&booking).cloned() else {
            return refuse(reply, EngineError::UnknownBooking(booking));
        };
        let record = vec![self.context.booking_record(&held)];
        self.commit_applied(
            Vec::new(),
            record,
            Pending::Booking {
                reply,
                booking: Some(held),
            },
        )
        .await;
    }

    pub(super) async fn set_service(
        &mut self,
        spot: SpotId,
        out_of_service: bool,
        reply: Reply<SpotView>,
    ) {
        let before = self.zone.spot(&spot);
        let command = Command::SetService {
            spot: spot.clone(),
            out_of_service,
            now: self.now(),
        };
        let applied = match self.zone.execute(&command) {
            Ok(applied) => applied,
            Err(e) => return refuse(reply, e),
        };
        let view = self.zone.spot(&spot).or(before);
        self.commit_applied(applied, Vec::new(), Pending::Spot { reply, view })
            .await;
    }

    pub(super) async fn sense(
        &mut self,
        readings: Vec<Reading>,
        reply: oneshot::Sender<Vec<Result<(), ActorError>>>,
    ) {
        let now = self.now();
        let mut results = Vec::with_capacity(readings.len());
        let mut applied = Vec::new();
        for reading in readings {
            let command = match reading {
                // Routed here because it names one of this zone's spots.
                Reading::Heartbeat { sensor } => match SpotId::parse(&sensor) {
                    Ok(spot) => Command::Heartbeat { spot, now },
                    Err(_) => {
                        results.push(Ok(()));
                        continue;
                    }
                },
                reading => Command::Sense { reading, now },
            };
            // `execute`, not decide + apply: a reading that changes nothing
            // still keeps its spot's sensor live.
            match self.zone.execute(&command) {
                Ok(done) => {
                    applied.extend(done);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e.into())),
            }
        }
        self.commit_applied(applied, Vec::new(), Pending::Sense { reply, results })
            .await;
    }

    pub(super) async fn expire(&mut self) {
        let command = Command::Tick { now: self.now() };
        match self.zone.execute(&command) {
            Ok(applied) => {
                let count = |what: fn(&Event) -> bool| {
                    applied.iter().filter(|(event, _)| what(event)).count() as u64
                };
                let expired = count(|e| matches!(e, Event::BookingExpired { .. }));
                let overstayed = count(|e| matches!(e, Event::BookingOverstayed { .. }));
                self.commit_applied(
                    applied,
                    Vec::new(),
                    Pending::Expiry {
                        expired,
                        overstayed,
                    },
                )
                .await;
            }
            Err(e) => tracing::warn!(zone = %self.key, error = %e, "expiry refused"),
        }
    }
}
