//! Facility endpoints: layout PUT/GET, listing, spots, service flag,
//! sensor key rotation.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use parkme_engine::{FacilityId, SpotId, ZoneId};
use parkme_protocol::rest::{
    Facility, FacilityList, FacilityWithKey, LayoutInput, SensorKey, ServiceInput, Spot, SpotList,
};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, Caller, Id, Ids, JsonBody};
use crate::state::AppState;
use crate::wire;

/// `PUT /v1/facilities/{fid}`: 201 created, 200 replaced. An id that is
/// not valid is the operator's mistake here (400), not an unknown one.
#[utoipa::path(put, path = "/v1/facilities/{fid}", operation_id = "put_facility", tag = "facilities",
    summary = "Create or replace a facility's layout",
    description = "All or nothing: either the whole new layout is served, or the old one stays. 409 if it would drop a spot with a live booking. The answer carries the facility's sensor key.",
    params(("fid" = String, Path, description = "The facility id: `[A-Za-z0-9._-]{1,64}`.", example = "city-01")),
    request_body = LayoutInput,
    security(("admin" = [])),
    responses(
        (status = 200, description = "Replaced", body = FacilityWithKey),
        (status = 201, description = "Created", body = FacilityWithKey),
    ))]
pub async fn put(
    State(app): State<AppState>,
    _admin: Admin,
    fid: Result<Ids<String>, ApiError>,
    JsonBody(input): JsonBody<LayoutInput>,
) -> ApiResult<(StatusCode, Json<FacilityWithKey>)> {
    let invalid = |e: String| ApiError::bad_request("invalid_id", e);
    let Ids(fid) = fid.map_err(|_| invalid("a facility id must be valid UTF-8".into()))?;
    let id = FacilityId::parse(&fid).map_err(|e| invalid(e.to_string()))?;
    let layout = input.into_layout(id.clone())?;
    if app.cluster().is_some() && !app.node().serves(&id) {
        // A cluster node that does not own the facility got here only if
        // no node serves it yet: write its record; the cluster routing
        // has its owner answer.
        let created = app.node().create_record(layout).await?;
        let marker = if created { "1" } else { "0" };
        return Err(ApiError::new(
            StatusCode::ACCEPTED,
            "record_created",
            "the facility's record is written; its owner answers",
        )
        .with_header(crate::cluster::routing::RECORD_CREATED, marker));
    }
    let (view, created) = app.node().put_facility(layout).await?;
    let body = FacilityWithKey {
        facility: wire::facility(&view),
        sensor_key: app.node().sensor_key(&id)?,
    };
    tracing::info!(facility = %id, created, "layout stored");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)))
}

#[utoipa::path(get, path = "/v1/facilities/{fid}", operation_id = "get_facility", tag = "facilities",
    summary = "A facility's zones and counts, at one seq",
    params(("fid" = String, Path, description = "The facility id: `[A-Za-z0-9._-]{1,64}`.", example = "city-01")),
    security((), ("user" = []), ("admin" = [])),
    responses((status = 200, description = "The facility", body = Facility)))]
pub async fn get(
    State(app): State<AppState>,
    _caller: Caller,
    Id(id): Id<FacilityId>,
) -> ApiResult<Json<Facility>> {
    let view = app.node().facility(&id).await?;
    Ok(Json(wire::facility(&view)))
}

#[utoipa::path(get, path = "/v1/facilities", operation_id = "list_facilities", tag = "facilities",
    summary = "Every facility with its per-zone counts",
    security((), ("user" = []), ("admin" = [])),
    responses((status = 200, description = "The facilities", body = FacilityList)))]
pub async fn list(State(app): State<AppState>, _caller: Caller) -> ApiResult<Json<FacilityList>> {
    Ok(Json(listed(&app).await))
}

/// The facilities this node serves, in its order (a facility removed
/// meanwhile is simply not listed).
pub async fn listed(app: &AppState) -> FacilityList {
    let mut facilities = Vec::new();
    for id in app.node().facility_ids() {
        if let Ok(view) = app.node().facility(&id).await {
            facilities.push(wire::facility(&view));
        }
    }
    FacilityList { facilities }
}

#[utoipa::path(get, path = "/v1/facilities/{fid}/zones/{zid}/spots", operation_id = "list_spots", tag = "facilities",
    summary = "Every spot of a zone with its state",
    params(("fid" = String, Path, description = "The facility id: `[A-Za-z0-9._-]{1,64}`.", example = "city-01"), ("zid" = String, Path, description = "The zone id: `[A-Za-z0-9._-]{1,64}`.", example = "A")),
    security((), ("user" = []), ("admin" = [])),
    responses((status = 200, description = "The spots", body = SpotList)))]
pub async fn spots(
    State(app): State<AppState>,
    _caller: Caller,
    Id((id, zone)): Id<(FacilityId, ZoneId)>,
) -> ApiResult<Json<SpotList>> {
    let spots = app.node().spots(&id, &zone).await?;
    Ok(Json(SpotList {
        spots: wire::spots(&spots),
    }))
}

#[utoipa::path(put, path = "/v1/facilities/{fid}/spots/{sid}/service", operation_id = "set_spot_service", tag = "facilities",
    summary = "Take a spot out of service, or back in",
    params(("fid" = String, Path, description = "The facility id: `[A-Za-z0-9._-]{1,64}`.", example = "city-01"), ("sid" = String, Path, description = "The spot id: `[A-Za-z0-9._-]{1,64}`.", example = "A-001")),
    request_body = ServiceInput,
    security(("admin" = [])),
    responses((status = 200, description = "The spot", body = Spot)))]
pub async fn service(
    State(app): State<AppState>,
    _admin: Admin,
    Id((id, spot)): Id<(FacilityId, SpotId)>,
    JsonBody(input): JsonBody<ServiceInput>,
) -> ApiResult<Json<Spot>> {
    let view = app
        .node()
        .set_service(&id, &spot, input.out_of_service)
        .await?;
    Ok(Json((&view).into()))
}

/// `POST /v1/facilities/{fid}/sensor-key`: a new key; the old one is
/// refused from now on and sockets that came with it are closed.
#[utoipa::path(post, path = "/v1/facilities/{fid}/sensor-key", operation_id = "rotate_sensor_key", tag = "facilities",
    summary = "Rotate the facility's sensor key",
    description = "Returns a new key; the old one is refused from now on and sensor sockets opened with it are closed.",
    params(("fid" = String, Path, description = "The facility id: `[A-Za-z0-9._-]{1,64}`.", example = "city-01")),
    security(("admin" = [])),
    responses((status = 200, description = "The new key", body = SensorKey)))]
pub async fn rotate_sensor_key(
    State(app): State<AppState>,
    _admin: Admin,
    Id(id): Id<FacilityId>,
) -> ApiResult<Json<SensorKey>> {
    let key = app.node().rotate_sensor_key(&id).await?;
    tracing::info!(facility = %id, "sensor key rotated by the admin");
    Ok(Json(SensorKey {
        facility: id.to_string(),
        sensor_key: key,
    }))
}
