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

pub async fn get(
    State(app): State<AppState>,
    _caller: Caller,
    Id(id): Id<FacilityId>,
) -> ApiResult<Json<Facility>> {
    let view = app.node().facility(&id).await?;
    Ok(Json(wire::facility(&view)))
}

pub async fn list(State(app): State<AppState>, _caller: Caller) -> ApiResult<Json<FacilityList>> {
    let mut facilities = Vec::new();
    for id in app.node().facility_ids() {
        // A facility removed meanwhile is simply not listed.
        if let Ok(view) = app.node().facility(&id).await {
            facilities.push(wire::facility(&view));
        }
    }
    Ok(Json(FacilityList { facilities }))
}

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
