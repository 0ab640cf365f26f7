//! App tasks: a user with a JWT who watches its facility (its stream runs
//! beside it, see [`crate::stream`]) and, until the run ends, books a spot
//! in the bookable zone (HTTP or the app socket), then meets a fate:
//! arrives (its spot's sensor reports the car, it stays, it leaves),
//! cancels, or never shows. Everything the server confirms goes into the
//! app's [`BookingEvent`] log for [`crate::checks::check_bookings`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;

use crate::api::{ApiFailure, Confirmation};
use crate::checks::{BookingEvent, Micros};
use crate::cli::BookVia;
use crate::ctx::Ctx;
use crate::model::exponential;
use crate::scenario::{BOOKABLE_ZONE, Fate};
use crate::sensors::{Receipt, SensorCommand};
use crate::stats::{latency_histogram, record};
use crate::stream::StreamHandle;
use crate::wire;

/// An app never acts on a hold with less than this left.
const HOLD_MARGIN: Duration = Duration::from_millis(500);
/// How long a booking or cancel over the app socket may take.
const WS_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct AppOutcome {
    pub events: Vec<BookingEvent>,
    pub booking_latency: Histogram<u64>,
    pub attempt_latency: Histogram<u64>,
    pub attempts: u64,
    pub created: u64,
    pub full: u64,
    pub arrivals: u64,
    pub cancels: u64,
    pub no_shows: u64,
}

struct App {
    ctx: Arc<Ctx>,
    index: usize,
    facility: usize,
    user: String,
    token: String,
    stream: StreamHandle,
    rng: StdRng,
    requests: u64,
    out: AppOutcome,
}

/// How a booking was made (a cancel goes the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Http,
    Socket,
}

pub async fn run_app(
    ctx: Arc<Ctx>,
    index: usize,
    token: String,
    stream: StreamHandle,
) -> AppOutcome {
    let facility = ctx.plan.app_facility(index, ctx.facilities.len());
    let mut app = App {
        facility,
        user: format!("{}-u{index}", ctx.run_id),
        token,
        stream,
        rng: StdRng::seed_from_u64(ctx.seed ^ (index as u64).wrapping_mul(0x9e37_79b9)),
        requests: 0,
        index,
        ctx,
        out: AppOutcome {
            events: Vec::new(),
            booking_latency: latency_histogram(),
            attempt_latency: latency_histogram(),
            attempts: 0,
            created: 0,
            full: 0,
            arrivals: 0,
            cancels: 0,
            no_shows: 0,
        },
    };
    app.run().await;
    app.out
}

impl App {
    async fn run(&mut self) {
        // Let the stream subscribe first, like an app opening its map.
        let settle = Duration::from_millis(self.rng.random_range(0..200));
        if !self.pause(settle).await {
            return;
        }
        while !self.ctx.stop.is_cancelled() {
            let intensity = self.ctx.plan.intensity(self.ctx.progress());
            let mean = self.ctx.plan.think.as_secs_f64() / intensity;
            let think = Duration::from_secs_f64(exponential(&mut self.rng, mean).min(600.0));
            if !self.pause(think).await {
                return;
            }
            let channel = match self.ctx.book_via {
                BookVia::Http => Channel::Http,
                BookVia::Ws => Channel::Socket,
                BookVia::Mixed if self.rng.random_bool(0.5) => Channel::Http,
                BookVia::Mixed => Channel::Socket,
            };
            self.requests += 1;
            self.out.attempts += 1;
            self.ctx
                .live
                .booking_attempts
                .fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = self.book(channel).await;
            let answered = Instant::now();
            match result {
                Ok(booking) => {
                    record(&mut self.out.attempt_latency, answered - started);
                    record(&mut self.out.booking_latency, answered - started);
                    self.out.created += 1;
                    self.ctx
                        .live
                        .bookings_created
                        .fetch_add(1, Ordering::Relaxed);
                    self.meet_fate(booking, channel, answered).await;
                }
                Err(failure) => {
                    if failure.status.is_some() {
                        record(&mut self.out.attempt_latency, answered - started);
                    }
                    self.ctx.live.error(&failure.code);
                    let pause = if failure.code == "no_spot_available" {
                        self.out.full += 1;
                        let base = self.ctx.plan.retry_after_full.as_secs_f64();
                        Duration::from_secs_f64(base * self.rng.random_range(0.5..1.5))
                    } else if let Some(wait) = failure.retry_after {
                        wait.min(Duration::from_secs(1))
                    } else {
                        Duration::from_millis(200)
                    };
                    if !self.pause(pause).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sleeps unless the run stops first; `false` = stop.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.ctx.stop.cancelled() => false,
        }
    }

    fn plate(&mut self) -> String {
        format!(
            "LT{:04}-{:04}",
            self.index % 10_000,
            self.rng.random_range(0..10_000)
        )
    }

    async fn book(&mut self, channel: Channel) -> Result<Confirmation, ApiFailure> {
        let plate = self.plate();
        let ctx = Arc::clone(&self.ctx);
        let facility = &ctx.facilities[self.facility].id;
        let hold = self.ctx.hold.as_secs().max(1);
        match channel {
            Channel::Http => {
                let key = format!("{}-{}", self.user, self.requests);
                self.ctx
                    .api
                    .book(&self.token, facility, BOOKABLE_ZONE, &plate, hold, &key)
                    .await
            }
            Channel::Socket => {
                let req = format!("b{}", self.requests);
                let op = wire::book_op(&req, facility, BOOKABLE_ZONE, &plate, hold);
                let reply = self.ask(req, op).await?;
                reply
                    .booking
                    .as_ref()
                    .and_then(Confirmation::from_json)
                    .ok_or_else(|| failure("ws_malformed_booking"))
            }
        }
    }

    /// Sends an op on the app socket and waits for the reply to its `req`.
    async fn ask(&self, req: String, op: String) -> Result<wire::StreamMsg, ApiFailure> {
        let (tx, rx) = oneshot::channel();
        self.stream
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(req.clone(), tx);
        if self.stream.ops.send(op).await.is_err() {
            return Err(failure("ws_stream_gone"));
        }
        let reply = tokio::time::timeout(WS_REPLY_TIMEOUT, rx).await;
        let reply = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(failure("ws_stream_gone")),
            Err(_) => {
                self.stream
                    .pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&req);
                return Err(failure("ws_reply_timeout"));
            }
        };
        if reply.t == "error" {
            let code = reply.code.unwrap_or_else(|| "ws_error".into());
            return Err(ApiFailure {
                status: Some(0),
                code,
                retry_after: None,
            });
        }
        Ok(reply)
    }

    async fn meet_fate(&mut self, booking: Confirmation, channel: Channel, answered: Instant) {
        let expires_at = self.ctx.wall_ms_to_micros(booking.expires_at_ms);
        self.out.events.push(BookingEvent::Confirmed {
            booking: booking.id.clone(),
            facility: booking.facility.clone(),
            spot: booking.spot.clone(),
            answered_at: self.ctx.micros(answered),
            expires_at,
        });
        let left = self.hold_left(expires_at);
        let mut fate = self.ctx.plan.fate(self.rng.random_range(0.0..1.0));
        if fate == Fate::NoShow && left > self.ctx.hold * 2 + Duration::from_secs(5) {
            // The server held longer than asked (its default): do not leave
            // a spot blocked past the run; the user cancels instead.
            fate = Fate::Cancel;
        }
        let spot = booking
            .spot
            .as_deref()
            .and_then(|s| self.ctx.facilities[self.facility].index.get(s).copied());
        match (fate, spot) {
            (Fate::Arrive, Some(spot)) if left > HOLD_MARGIN * 2 => {
                self.arrive(&booking, spot, left).await;
            }
            (Fate::Cancel | Fate::Arrive, _) if left > HOLD_MARGIN => {
                self.cancel(&booking, channel, left).await;
            }
            _ => {
                self.out.no_shows += 1;
                // Nobody comes: the hold runs out on its own.
                let _ = self.pause(left + Duration::from_millis(200)).await;
            }
        }
    }

    /// Time left before `expires_at` less the margin.
    fn hold_left(&self, expires_at: Micros) -> Duration {
        let now = self.ctx.micros(Instant::now());
        Duration::from_micros(expires_at.saturating_sub(now)).saturating_sub(HOLD_MARGIN)
    }

    async fn arrive(&mut self, booking: &Confirmation, spot: usize, left: Duration) {
        let drive = left
            .min(self.ctx.hold)
            .mul_f64(self.rng.random_range(0.1..0.4) * self.ctx.plan.fate_pace);
        if !self.pause(drive).await {
            // The run ended on the way: this car never comes.
            self.out.no_shows += 1;
            return;
        }
        if self.hold_left(self.ctx.wall_ms_to_micros(booking.expires_at_ms)) < HOLD_MARGIN {
            self.out.no_shows += 1;
            return;
        }
        let receipt = self.report(spot, true).await;
        if let Some(acked_at) = receipt.acked_at {
            self.out.arrivals += 1;
            self.out.events.push(BookingEvent::Arrived {
                booking: booking.id.clone(),
                acked_at,
            });
        }
        if receipt.sent_at.is_none() {
            return;
        }
        // Stay a while (the run's end sends everyone home).
        let stay = self
            .ctx
            .hold
            .mul_f64(self.rng.random_range(0.5..1.5) * self.ctx.plan.fate_pace);
        let _ = self.pause(stay).await;
        let left = self.report(spot, false).await;
        if let Some(sent_at) = left.sent_at {
            self.out.events.push(BookingEvent::Released {
                booking: booking.id.clone(),
                sent_at,
            });
        }
    }

    /// Asks the spot's sensor to report it; waits for the ack (or the end).
    async fn report(&self, spot: usize, occupied: bool) -> Receipt {
        let facility = &self.ctx.facilities[self.facility];
        let Some(sender) = facility.commander(spot) else {
            return Receipt::default();
        };
        let (reply, rx) = oneshot::channel();
        let command = SensorCommand {
            spot,
            occupied,
            reply,
        };
        if sender.send(command).await.is_err() {
            return Receipt::default();
        }
        rx.await.unwrap_or_default()
    }

    async fn cancel(&mut self, booking: &Confirmation, channel: Channel, left: Duration) {
        let wait = left
            .min(self.ctx.hold)
            .mul_f64(self.rng.random_range(0.1..0.6) * self.ctx.plan.fate_pace);
        let _ = self.pause(wait).await;
        let sent_at = self.ctx.micros(Instant::now());
        self.out.events.push(BookingEvent::Released {
            booking: booking.id.clone(),
            sent_at,
        });
        self.out.cancels += 1;
        let result = match channel {
            Channel::Http => self.ctx.api.cancel(&self.token, &booking.id).await,
            Channel::Socket => {
                self.requests += 1;
                let req = format!("c{}", self.requests);
                let op = wire::cancel_op(&req, &booking.id);
                self.ask(req, op).await.map(drop)
            }
        };
        if let Err(f) = result {
            self.ctx.live.error(&format!("cancel_{}", f.code));
        }
    }
}

fn failure(code: &str) -> ApiFailure {
    ApiFailure {
        status: None,
        code: code.into(),
        retry_after: None,
    }
}
