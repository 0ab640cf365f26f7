//! The standard read views of contract §9: a facility as NGSI-LD entities
//! (`GET /v1/facilities/{fid}/ngsi-ld`, mapped by [`ngsi_ld`]) and every
//! facility's status as a DATEX II v3 publication
//! (`GET /v1/datex2/parking-status`, written by [`datex2`]). The handlers
//! read the node; the two modules map, purely.
//!
//! This module must never map anything itself, nor list more than the
//! facilities this node knows.

pub mod datex2;
pub mod ngsi_ld;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parkme_actors::ActorError;
use parkme_engine::FacilityId;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Id};
use crate::state::AppState;

/// `body` as `content_type`.
fn typed(content_type: &'static str, body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// What cannot come from any request: an encoder that failed in memory.
fn encoding_failed(what: &'static str, error: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %error, what, "encoding a read view failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
}

/// `GET /v1/facilities/{fid}/ngsi-ld`: the facility's counts, then the
/// spots of each spot zone (each zone read after the counts; a zone
/// removed in between is simply left out).
pub async fn ngsi_ld(
    State(app): State<AppState>,
    _caller: Caller,
    Id(id): Id<FacilityId>,
) -> ApiResult<Response> {
    let view = app.node().facility(&id).await?;
    let mut spots = Vec::new();
    for zone in view.zones.iter().filter(|zone| zone.capacity.is_none()) {
        match app.node().spots(&id, &zone.id).await {
            Ok(zone_spots) => spots.extend(zone_spots),
            Err(ActorError::UnknownZone(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let entities = ngsi_ld::entities(&view, &spots, app.node().now());
    let body = serde_json::to_vec(&entities).map_err(|e| encoding_failed("ngsi-ld", &e))?;
    Ok(typed(ngsi_ld::CONTENT_TYPE, body))
}

/// `GET /v1/datex2/parking-status`: every facility this node knows (a
/// facility removed meanwhile is not listed), 204 when it knows none.
pub async fn datex2_parking_status(
    State(app): State<AppState>,
    _caller: Caller,
) -> ApiResult<Response> {
    let mut facilities = Vec::new();
    for id in app.node().facility_ids() {
        if let Ok(view) = app.node().facility(&id).await {
            facilities.push(view);
        }
    }
    match datex2::parking_status(&facilities, app.node().now()) {
        Ok(Some(body)) => Ok(typed(datex2::CONTENT_TYPE, body)),
        Ok(None) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(encoding_failed("datex2", &e)),
    }
}
