//! Facility endpoints: layout PUT/GET, listing, spots, service flag,
//! sensor key rotation.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parkme_engine::{SpotId, ZoneId};
use serde_json::{Value, json};

use super::facility_id;
use crate::app::AppState;
use crate::dto::{LayoutInput, ServiceInput, facility_json};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, Caller, Ids, JsonBody};

pub async fn put(
    State(app): State<AppState>,
    _admin: Admin,
    fid: Result<Ids<String>, ApiError>,
    JsonBody(input): JsonBody<LayoutInput>,
) -> ApiResult<Response> {
    let invalid = |e: String| ApiError::bad_request("invalid_id", e);
    let Ids(fid) = fid.map_err(|_| invalid("a facility id must be valid UTF-8".into()))?;
    let id = parkme_engine::FacilityId::parse(&fid).map_err(|e| invalid(e.to_string()))?;
    let layout = input.into_layout(id.clone())?;
    let (view, created) = app.node().put_facility(layout).await?;
    let mut body = facility_json(&view);
    if let Value::Object(map) = &mut body {
        map.insert("sensor_key".into(), json!(app.node().sensor_key(&id)?));
    }
    tracing::info!(facility = %id, created, "layout stored");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

pub async fn get(
    State(app): State<AppState>,
    _caller: Caller,
    Ids(fid): Ids<String>,
) -> ApiResult<Json<Value>> {
    let id = facility_id(&fid)?;
    let view = app.node().facility(&id).await?;
    Ok(Json(facility_json(&view)))
}

pub async fn list(State(app): State<AppState>, _caller: Caller) -> ApiResult<Json<Value>> {
    let mut facilities = Vec::new();
    for id in app.node().facility_ids() {
        // A facility removed meanwhile is simply not listed.
        if let Ok(view) = app.node().facility(&id).await {
            facilities.push(facility_json(&view));
        }
    }
    Ok(Json(json!({ "facilities": facilities })))
}

pub async fn spots(
    State(app): State<AppState>,
    _caller: Caller,
    Ids((fid, zid)): Ids<(String, String)>,
) -> ApiResult<Json<Value>> {
    let id = facility_id(&fid)?;
    let zone = ZoneId::parse(&zid)
        .map_err(|_| ApiError::not_found("unknown_zone", format!("zone {zid:?} does not exist")))?;
    let spots = app.node().spots(&id, &zone).await?;
    Ok(Json(json!({ "spots": spots })))
}

pub async fn service(
    State(app): State<AppState>,
    _admin: Admin,
    Ids((fid, sid)): Ids<(String, String)>,
    JsonBody(input): JsonBody<ServiceInput>,
) -> ApiResult<Json<Value>> {
    let id = facility_id(&fid)?;
    let spot = SpotId::parse(&sid)
        .map_err(|_| ApiError::not_found("unknown_spot", format!("spot {sid:?} does not exist")))?;
    let view = app
        .node()
        .set_service(&id, &spot, input.out_of_service)
        .await?;
    Ok(Json(json!(view)))
}

/// `POST /v1/facilities/{fid}/sensor-key`: a new key; the old one is
/// refused from now on and sockets that came with it are closed.
pub async fn rotate_sensor_key(
    State(app): State<AppState>,
    _admin: Admin,
    Ids(fid): Ids<String>,
) -> ApiResult<Json<Value>> {
    let id = facility_id(&fid)?;
    let key = app.node().rotate_sensor_key(&id).await?;
    tracing::info!(facility = %id, "sensor key rotated by the admin");
    Ok(Json(json!({"facility": id, "sensor_key": key})))
}
