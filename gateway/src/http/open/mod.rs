//! The standard read views of contract §9: a facility as NGSI-LD entities
//! (`GET /v1/facilities/{fid}/ngsi-ld`, mapped by [`ngsi_ld`]) and every
//! facility's status as a DATEX II v3 publication
//! (`GET /v1/datex2/parking-status`, written by [`datex2`]). The handlers
//! read the node; the two modules map, purely.
//!
//! This module must never map anything itself, nor list more than the
//! facilities this node serves (the cluster routing merges the nodes').

pub mod datex2;
pub mod ngsi_ld;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parkme_actors::ActorError;
use parkme_engine::FacilityId;
use parkme_protocol::rest::Facility;

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
#[utoipa::path(get, path = "/v1/facilities/{fid}/ngsi-ld", operation_id = "get_ngsi_ld", tag = "open interfaces",
    summary = "The facility as FIWARE NGSI-LD entities (key-values, dataModel.Parking)",
    description = "One `OffStreetParking` (the facility), one `ParkingGroup` per zone, one `ParkingSpot` per spot of a spot zone; each validates against its type's published Smart Data Models JSON Schema.",
    params(("fid" = String, Path, description = "The facility id: `[A-Za-z0-9._-]{1,64}`.", example = "city-01")),
    security((), ("user" = []), ("admin" = [])),
    responses((status = 200, description = "The entities, each with its `@context`", content_type = "application/ld+json", body = [Object])))]
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

/// `GET /v1/datex2/parking-status`: every facility this node serves (on a
/// cluster node, the cluster routing publishes every node's instead).
#[utoipa::path(get, path = "/v1/datex2/parking-status", operation_id = "get_datex2_parking_status", tag = "open interfaces",
    summary = "Every facility's status as a DATEX II v3 ParkingStatusPublication",
    description = "Per facility a `PlaceStatus`, per zone a `ParkingStatusInformation`, each with its vacant and occupied spaces; valid against the DATEX II v3.6 schemas. 204 when there is no facility (a publication holds at least one status).",
    security((), ("user" = []), ("admin" = [])),
    responses(
        (status = 200, description = "The publication", content_type = "application/xml", body = String),
        (status = 204, description = "No facility to publish"),
    ))]
pub async fn datex2_parking_status(State(app): State<AppState>, _caller: Caller) -> Response {
    let listed = crate::http::facilities::listed(&app).await;
    datex2_answer(&app, listed.facilities).await
}

/// The publication of `facilities`, 204 when there is none.
pub async fn datex2_answer(app: &AppState, facilities: Vec<Facility>) -> Response {
    let at = app.node().now();
    match off_runtime("datex2", move || datex2::parking_status(&facilities, at)).await {
        Ok(Some(body)) => typed(datex2::CONTENT_TYPE, body),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

/// What the tests of both views build their zones from.
#[cfg(test)]
mod fixtures {
    use parkme_engine::{SpotKind, SpotState, ZoneCounts};

    /// The counts of a zone of standard spots in `states`.
    pub fn counts(states: &[SpotState]) -> ZoneCounts {
        let mut counts = ZoneCounts::default();
        for state in states {
            counts.insert(SpotKind::Standard, *state);
        }
        counts
    }
}
