//! Booking endpoints: create (idempotent with `Idempotency-Key`), read,
//! cancel, over [`crate::bookings`]. Only the owner (the JWT `sub`) or the
//! admin may read or cancel.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parkme_actors::Booked;
use parkme_engine::{BookingId, FacilityId};
use parkme_protocol::rest::{Booking, BookingInput};

use crate::bookings::{self, checked_idempotency_key};
use crate::error::ApiResult;
use crate::extract::{Caller, Id, JsonBody, SignedIn};
use crate::state::AppState;

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    checked_idempotency_key(key).map(Some)
}

/// `POST /v1/facilities/{fid}/bookings`: 201 created, 200 replayed.
pub async fn create(
    State(app): State<AppState>,
    SignedIn(caller): SignedIn,
    Id(facility): Id<FacilityId>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<BookingInput>,
) -> ApiResult<(StatusCode, Json<Booking>)> {
    let key = idempotency_key(&headers)?;
    Ok(
        match bookings::book(&app, &caller.principal, &facility, input, key).await? {
            Booked::Created(booking) => (StatusCode::CREATED, Json((&booking).into())),
            Booked::Replayed(booking) => (StatusCode::OK, Json((&booking).into())),
        },
    )
}

pub async fn get(
    State(app): State<AppState>,
    caller: Caller,
    Id(id): Id<BookingId>,
) -> ApiResult<Json<Booking>> {
    let booking = bookings::booking(&app, &caller.principal, &id).await?;
    Ok(Json((&booking).into()))
}

pub async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Id(id): Id<BookingId>,
) -> ApiResult<Json<Booking>> {
    let cancelled = bookings::cancel(&app, &caller.principal, &id).await?;
    Ok(Json((&cancelled).into()))
}
