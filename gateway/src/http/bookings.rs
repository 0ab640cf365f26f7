//! Booking endpoints: create (idempotent with `Idempotency-Key`), read,
//! cancel. Only the owner (the JWT `sub`) or the admin may read or cancel.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parkme_actors::{BookParams, Booked};
use parkme_engine::booking::{DEFAULT_HOLD_SECONDS, MAX_HOLD_SECONDS};
use parkme_engine::{Booking, BookingId, Plate, SpotId, ZoneId};
use serde_json::Value;

use super::facility_id;
use crate::app::AppState;
use crate::auth::Principal;
use crate::dto::{BookingInput, booking_json, parse_kind};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Ids, JsonBody, SignedIn};
use crate::rate_limit::LimitKey;

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The request's `Idempotency-Key`, checked as
/// [`checked_idempotency_key`] checks it; `None` when absent. A value
/// that is not visible ASCII reads as empty, so it is refused.
pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    checked_idempotency_key(key).map(Some)
}

/// An `Idempotency-Key` (header, or the app socket's `idempotency_key`):
/// 1 to 255 visible ASCII characters (spaces allowed inside) once
/// trimmed. A tab, a control character or non-ASCII text (which a JSON
/// string on the socket can carry) is refused, not stored.
pub fn checked_idempotency_key(raw: &str) -> ApiResult<String> {
    let key = raw.trim();
    let visible = key.chars().all(|c| c == ' ' || c.is_ascii_graphic());
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !visible {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(key.to_owned())
}

/// Validates a booking body (HTTP or the app socket's `book` op) for
/// `principal`: the parameters the node books with, or the contract's
/// refusal (`invalid_plate`, `unknown_zone`, `invalid_hold_seconds`...).
/// Pure: reads no state, so it is also the fuzz targets' entry.
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
        .map(|z| {
            ZoneId::parse(&z).map_err(|_| {
                ApiError::not_found("unknown_zone", format!("zone {z:?} does not exist"))
            })
        })
        .transpose()?;
    let spot = input
        .spot
        .map(|s| {
            SpotId::parse(&s).map_err(|_| {
                ApiError::not_found("unknown_spot", format!("spot {s:?} does not exist"))
            })
        })
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
    Ok(BookParams {
        owner,
        plate,
        zone,
        kind,
        spot,
        hold_seconds,
        idempotency_key: key,
    })
}

fn outcome_label(result: &Result<Booked, ApiError>) -> &'static str {
    match result {
        Ok(Booked::Created(_)) => "created",
        Ok(Booked::Replayed(_)) => "replayed",
        Err(e) if e.code == "no_spot_available" => "no_spot_available",
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        Err(_) => "rejected",
    }
}

/// Books for `principal` in facility `fid`: the one path behind
/// `POST /v1/facilities/{fid}/bookings` and the app socket's `book` op
/// (per-user bookings limit, validation, durable booking, metrics).
pub async fn book_as(
    app: &AppState,
    principal: &Principal,
    fid: &str,
    input: BookingInput,
    idempotency_key: Option<String>,
) -> ApiResult<Booked> {
    let started = Instant::now();
    let result = async {
        if let Principal::User(user) = principal {
            app.limits()
                .check_shared(LimitKey::UserBookings(user.to_string()))
                .await
                .map_err(ApiError::rate_limited)?;
        }
        let id = facility_id(fid)?;
        let params = params(input, principal, idempotency_key)?;
        app.node().book(&id, params).await.map_err(ApiError::from)
    }
    .await;
    metrics::counter!("parkme_bookings_total", "outcome" => outcome_label(&result)).increment(1);
    metrics::histogram!("parkme_booking_latency_seconds").record(started.elapsed().as_secs_f64());
    if let Ok(Booked::Created(booking)) = &result {
        tracing::debug!(booking = %booking.id, facility = %booking.facility, zone = %booking.zone, "booked");
    }
    result
}

pub async fn create(
    State(app): State<AppState>,
    SignedIn(caller): SignedIn,
    Ids(fid): Ids<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<BookingInput>,
) -> ApiResult<Response> {
    let key = idempotency_key(&headers)?;
    match book_as(&app, &caller.principal, &fid, input, key).await? {
        Booked::Created(booking) => {
            Ok((StatusCode::CREATED, Json(booking_json(&booking))).into_response())
        }
        Booked::Replayed(booking) => {
            Ok((StatusCode::OK, Json(booking_json(&booking))).into_response())
        }
    }
}

/// Loads a booking the caller may see: 401 anonymous, 404 unknown, 403
/// someone else's.
async fn owned_booking(app: &AppState, principal: &Principal, raw: &str) -> ApiResult<Booking> {
    let owner = match principal {
        Principal::Anonymous => return Err(ApiError::unauthorized("credentials required")),
        Principal::Admin => None,
        Principal::User(user) => Some(user),
    };
    let not_found =
        || ApiError::not_found("unknown_booking", format!("booking {raw:?} does not exist"));
    let id = BookingId::parse(raw).map_err(|_| not_found())?;
    let booking = app.node().booking(&id).await?.ok_or_else(not_found)?;
    if owner.is_some_and(|o| o != &booking.owner) {
        return Err(ApiError::forbidden("this booking belongs to someone else"));
    }
    Ok(booking)
}

/// Cancels booking `raw` for `principal` (its owner or the admin): the one
/// path behind `DELETE /v1/bookings/{id}` and the app socket's `cancel` op.
pub async fn cancel_as(app: &AppState, principal: &Principal, raw: &str) -> ApiResult<Booking> {
    let booking = owned_booking(app, principal, raw).await?;
    let cancelled = app.node().cancel(&booking).await?;
    metrics::counter!("parkme_bookings_total", "outcome" => "cancelled").increment(1);
    Ok(cancelled)
}

pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> ApiResult<Json<Value>> {
    let booking = owned_booking(&app, &caller.principal, &id).await?;
    Ok(Json(booking_json(&booking)))
}

pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Ids(id): Ids<String>,
) -> ApiResult<Json<Value>> {
    let cancelled = cancel_as(&app, &caller.principal, &id).await?;
    Ok(Json(booking_json(&cancelled)))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn an_idempotency_key_is_1_to_255_visible_ascii_characters() {
        assert_eq!(
            checked_idempotency_key("  order 42-a ").ok().as_deref(),
            Some("order 42-a")
        );
        assert!(checked_idempotency_key(&"k".repeat(255)).is_ok());
        // Found by the booking_body fuzz target: a tab passed as visible.
        for refused in [
            "",
            "   ",
            "at\t1",
            "a\u{0}b",
            "clé",
            "a\u{7f}",
            &"k".repeat(256),
        ] {
            let error = checked_idempotency_key(refused).expect_err(refused);
            assert_eq!(error.code, "invalid_idempotency_key", "{refused:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            "idempotency-key",
            HeaderValue::from_bytes(b"at\t1").expect("a header value"),
        );
        assert!(idempotency_key(&headers).is_err());
        headers.insert("idempotency-key", HeaderValue::from_static("k-1"));
        assert_eq!(idempotency_key(&headers).ok(), Some(Some("k-1".into())));
    }
}
