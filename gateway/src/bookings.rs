//! The bookings service: the one path behind `POST /v1/facilities/{fid}/bookings`,
//! `GET`/`DELETE`/`PATCH /v1/bookings/{id}` and the app socket's `book` and
//! `cancel` ops, whatever the transport. It checks who may do what, reads
//! the request into the node's terms, counts the limits and metrics, and
//! asks the node.
//!
//! This is where a request will be either served by this node or
//! forwarded to the facility's owner (cluster mode): the transports call
//! only [`book`], [`booking`], [`cancel`] and [`extend`]. This module must never speak
//! HTTP or websocket itself.

use std::time::Instant;

use parkme_actors::{BookParams, Booked};
use parkme_engine::booking::{DEFAULT_HOLD_SECONDS, MAX_HOLD_SECONDS};
use parkme_engine::{Booking, BookingId, FacilityId, Plate, SpotId, ZoneId};
use parkme_protocol::rest::{BookingInput, ExtendInput, parse_kind, parse_time};
use tracing::Instrument;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::metrics;
use crate::rate_limit::LimitKey;
use crate::state::AppState;

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// An `Idempotency-Key` (header, or the app socket's `idempotency_key`):
/// 1 to 255 visible characters once trimmed.
pub fn checked_idempotency_key(raw: &str) -> ApiResult<String> {
    let key = raw.trim();
    // A tab, a control character or non-ASCII text (which a JSON string on
    // the socket can carry) is refused, not stored.
    let visible = key.chars().all(|c| c == ' ' || c.is_ascii_graphic());
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !visible {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(key.to_owned())
}

/// A booking request in the node's terms (public for the fuzz targets,
/// which check what it accepts).
pub fn params(
    input: BookingInput,
    principal: &Principal,
    key: Option<String>,
) -> ApiResult<BookParams> {
    let owner = principal
        .owner()
        .ok_or_else(|| ApiError::unauthorized("a user token is required to book"))?;
    let plate = Plate::parse(&input.plate)
        .map_err(|e| ApiError::bad_request("invalid_plate", e.to_string()))?;
    let zone = input
        .zone
        .map(|z| ZoneId::parse(&z).map_err(|_| ApiError::unknown("zone", &z)))
        .transpose()?;
    let spot = input
        .spot
        .map(|s| SpotId::parse(&s).map_err(|_| ApiError::unknown("spot", &s)))
        .transpose()?;
    let kind = input
        .kind
        .as_deref()
        .map(|k| parse_kind(Some(k)))
        .transpose()?;
    let hold = input
        .hold_seconds
        .unwrap_or(i64::from(DEFAULT_HOLD_SECONDS));
    let hold_seconds = u32::try_from(hold)
        .ok()
        .filter(|h| (1..=MAX_HOLD_SECONDS).contains(h))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_hold_seconds",
                format!("hold_seconds must be between 1 and {MAX_HOLD_SECONDS}"),
            )
        })?;
    let starts_at = input
        .starts_at
        .as_deref()
        .map(|t| parse_time("starts_at", t))
        .transpose()?;
    let ends_at = input
        .ends_at
        .as_deref()
        .map(|t| parse_time("ends_at", t))
        .transpose()?;
    Ok(BookParams {
        owner,
        plate,
        zone,
        kind,
        spot,
        hold_seconds,
        starts_at,
        ends_at,
        idempotency_key: key,
    })
}

/// Books for `principal` in `facility`: the per-user bookings limit,
/// validation, the durable booking, metrics.
pub async fn book(
    app: &AppState,
    principal: &Principal,
    facility: &FacilityId,
    input: BookingInput,
    idempotency_key: Option<String>,
) -> ApiResult<Booked> {
    let started = Instant::now();
    let span = tracing::debug_span!("book", facility = %facility, booking = tracing::field::Empty);
    let result = async {
        if let Principal::User(user) = principal {
            app.limits()
                .check_shared(LimitKey::UserBookings(user.to_string()))
                .await
                .map_err(ApiError::rate_limited)?;
        }
        let params = params(input, principal, idempotency_key)?;
        let booked = app.node().book(facility, params).await?;
        if let Booked::Created(booking) = &booked {
            tracing::Span::current().record("booking", tracing::field::display(&booking.id));
            tracing::debug!(zone = %booking.zone, "booked");
        }
        Ok(booked)
    }
    .instrument(span)
    .await;
    metrics::booking_answered(outcome(&result), started.elapsed());
    result
}

fn outcome(result: &ApiResult<Booked>) -> &'static str {
    match result {
        Ok(Booked::Created(_)) => "created",
        Ok(Booked::Replayed(_)) => "replayed",
        Err(e) => e.booking_outcome(),
    }
}

/// A booking `principal` may see: 401 anonymous, 404 unknown, 403
/// someone else's.
pub async fn booking(app: &AppState, principal: &Principal, id: &BookingId) -> ApiResult<Booking> {
    let owner = match principal {
        Principal::Anonymous => return Err(ApiError::unauthorized("credentials required")),
        Principal::Admin => None,
        Principal::User(user) => Some(user),
    };
    let booking = app
        .node()
        .booking(id)
        .await?
        .ok_or_else(|| ApiError::unknown("booking", id.as_str()))?;
    if owner.is_some_and(|o| o != &booking.owner) {
        return Err(ApiError::forbidden("this booking belongs to someone else"));
    }
    Ok(booking)
}

/// Moves the end of a live booking's stay for `principal` (its owner or
/// the admin), contract §2.3.
pub async fn extend(
    app: &AppState,
    principal: &Principal,
    id: &BookingId,
    input: ExtendInput,
) -> ApiResult<Booking> {
    let span = tracing::debug_span!("extend", booking = %id);
    async {
        let ends_at = parse_time("ends_at", &input.ends_at)?;
        let booking = booking(app, principal, id).await?;
        Ok(app.node().extend(&booking, ends_at).await?)
    }
    .instrument(span)
    .await
}

/// Cancels a booking for `principal` (its owner or the admin).
pub async fn cancel(app: &AppState, principal: &Principal, id: &BookingId) -> ApiResult<Booking> {
    let span = tracing::debug_span!("cancel", booking = %id);
    async {
        let booking = booking(app, principal, id).await?;
        let cancelled = app.node().cancel(&booking).await?;
        metrics::booking_cancelled();
        Ok(cancelled)
    }
    .instrument(span)
    .await
}
