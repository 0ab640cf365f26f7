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

/// `encode` on a blocking thread. Its failure cannot come from any
/// request (an encoder that failed in memory, or panicked): logged, and
/// a 500 without details.
async fn off_runtime<T, E>(
    what: &'static str,
    encode: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> ApiResult<T>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let failed = |error: &dyn std::fmt::Display| {
        tracing::error!(error = %error, what, "encoding a read view failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        )
    };
    match tokio::task::spawn_blocking(encode).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(failed(&e)),
        Err(e) => Err(failed(&e)),
    }
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
    let mut spots = ngsi_ld::SpotsByZone::new();
    for zone in view.zones.iter().filter(|zone| zone.capacity.is_none()) {
        match app.node().spots(&id, &zone.id).await {
            Ok(zone_spots) => {
                spots.insert(zone.id.clone(), zone_spots);
            }
            Err(ActorError::UnknownZone(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let at = app.node().now();
    // A facility may hold 200,000 spots: map and encode off the runtime.
    let body = off_runtime("ngsi-ld", move || {
        serde_json::to_vec(&ngsi_ld::entities(&view, &spots, at))
    })
    .await?;
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
    let at = app.node().now();
    let body = off_runtime("datex2", move || datex2::parking_status(&facilities, at)).await?;
    Ok(match body {
        Some(body) => typed(datex2::CONTENT_TYPE, body),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}
