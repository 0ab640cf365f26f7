//! The cluster's operational endpoints: `GET /v1/cluster` (admin: who is
//! in the cluster, who owns what, at which epoch) and `GET /health/ready`
//! (200 while this node takes traffic; 503 while it starts or drains).
//!
//! This module must never change the cluster: it only reports.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parkme_protocol::rest::{ClusterFacility, ClusterInfo, ClusterMember, Readiness};

use crate::error::{ApiError, ApiResult};
use crate::extract::Admin;
use crate::state::AppState;

/// `GET /v1/cluster`.
#[utoipa::path(get, path = "/v1/cluster", operation_id = "get_cluster", tag = "operations",
    summary = "The cluster: nodes, and each facility's owner and epoch",
    description = "404 `not_a_cluster` on a single node.",
    security(("admin" = [])),
    responses((status = 200, description = "The cluster view of this node", body = ClusterInfo)))]
pub async fn info(State(app): State<AppState>, _admin: Admin) -> ApiResult<Json<ClusterInfo>> {
    let Some(cluster) = app.cluster() else {
        return Err(ApiError::not_found(
            "not_a_cluster",
            "this process is a single node (a cluster needs PARKME_REDIS_URL and scylla:// storage)",
        ));
    };
    let view = cluster.view();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for holder in view.leases.values() {
        *per_node.entry(holder.to_string()).or_default() += 1;
    }
    let nodes = view
        .members
        .iter()
        .map(|m| ClusterMember {
            id: m.id.name.as_str().to_owned(),
            url: m.url.clone(),
            facilities: per_node.get(&m.id.to_string()).copied().unwrap_or(0),
            status: Cow::Borrowed(m.status.as_str()),
        })
        .collect();
    let mut ids = app.node().stored_facility_ids().await?;
    ids.sort();
    let facilities = ids
        .into_iter()
        .map(|id| ClusterFacility {
            owner: view.owner(&id).map(|m| m.id.name.as_str().to_owned()),
            epoch: view.epochs.get(&id).copied().unwrap_or(0),
            id: id.to_string(),
        })
        .collect();
    Ok(Json(ClusterInfo {
        node: cluster.me().id.name.as_str().to_owned(),
        nodes,
        facilities,
    }))
}

/// `GET /health/ready`: whether a load balancer should send traffic here.
#[utoipa::path(get, path = "/health/ready", operation_id = "get_readiness", tag = "operations",
    summary = "Readiness: false while joining or draining",
    responses(
        (status = 200, description = "Serving", body = Readiness),
        (status = 503, description = "Joining, draining or stopping", body = Readiness),
    ))]
pub async fn ready(State(app): State<AppState>) -> Response {
    let (ready, why) = match app.cluster() {
        None if app.shutdown().is_cancelled() => (false, "stopping"),
        None => (true, "serving"),
        Some(c) if c.is_ready() => (true, "serving"),
        Some(c) if !c.joined() => (false, "joining the cluster (Redis not reached yet)"),
        Some(_) => (false, "draining: handing facilities to other nodes"),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: Cow::Borrowed(if ready { "ready" } else { "not_ready" }),
            detail: Cow::Borrowed(why),
        }),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
pub struct ImageQuery {
    after: Option<u64>,
}

/// `GET /internal/facilities/{fid}/image` (node to node only, signed):
/// the facility's published state for another node's copy of it
/// ([`crate::cluster::fanout`]), bincode; 204 when it is still at
/// `after`, 421 from a node that does not own it. Not part of the public
/// API: any other caller gets 404.
pub async fn image(
    State(app): State<AppState>,
    forwarded: Option<axum::Extension<crate::cluster::routing::Forwarded>>,
    axum::extract::Path(fid): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<ImageQuery>,
) -> Response {
    if forwarded.is_none() || app.cluster().is_none() {
        return ApiError::not_found("not_found", "no such route").into_response();
    }
    let Ok(fid) = parkme_engine::FacilityId::parse(&fid) else {
        return ApiError::unknown("facility", &fid).into_response();
    };
    if !app.node().serves(&fid) {
        return crate::cluster::routing::not_owner();
    }
    let subscription = match app.node().subscribe(&fid, None).await {
        Ok(subscription) => subscription,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let parkme_actors::Start::Snapshot(snapshot) = &subscription.start else {
        return crate::cluster::routing::not_owner();
    };
    let image = parkme_actors::peer::PeerImage::of(snapshot, &subscription.catch_up);
    if query.after == Some(image.seq().0) {
        return StatusCode::NO_CONTENT.into_response();
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        parkme_actors::peer::encode_image(&image),
    )
        .into_response()
}

/// `POST /internal/facilities/{fid}/readings` (node to node only,
/// signed): readings a sensor socket on another node took, applied here
/// as this node's own socket would ([`crate::cluster::relay`]). The body
/// and the answer are bincode: the readings, then per reading `None`
/// (durable) or its refusal. 421 from a node that does not own the
/// facility; the sensor key's refusal (401, 403) as at a handshake.
pub async fn readings(
    State(app): State<AppState>,
    forwarded: Option<axum::Extension<crate::cluster::routing::Forwarded>>,
    axum::extract::Path(fid): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use crate::cluster::relay::{SENSOR_KEY_HEADER, refusal_of};
    use parkme_engine::codec;
    if forwarded.is_none() || app.cluster().is_none() {
        return ApiError::not_found("not_found", "no such route").into_response();
    }
    let Ok(fid) = parkme_engine::FacilityId::parse(&fid) else {
        return ApiError::unknown("facility", &fid).into_response();
    };
    let node = app.node();
    if !node.serves(&fid) {
        return crate::cluster::routing::not_owner();
    }
    let Some(key) = headers.get(SENSOR_KEY_HEADER).and_then(|v| v.to_str().ok()) else {
        return ApiError::unauthorized("a sensor key is required").into_response();
    };
    match node.check_sensor_key(&fid, key) {
        parkme_actors::KeyCheck::Valid => {}
        parkme_actors::KeyCheck::UnknownFacility => return crate::cluster::routing::not_owner(),
        refused => return refusal_of(refused, &fid).into_response(),
    }
    let readings: Vec<parkme_engine::Reading> = match codec::decode_peer(&body) {
        Ok(readings) => readings,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_message",
                format!("unreadable relayed readings: {e}"),
            )
            .into_response();
        }
    };
    let answers: Vec<Option<(String, String)>> = if readings.is_empty() {
        Vec::new()
    } else {
        match node.sense(&fid, readings).await {
            Ok(results) => results
                .into_iter()
                .map(|r| {
                    r.err().map(|e| {
                        let e = ApiError::from(e);
                        (e.code.to_owned(), e.message)
                    })
                })
                .collect(),
            Err(_) if !node.serves(&fid) => return crate::cluster::routing::not_owner(),
            Err(e) => return ApiError::from(e).into_response(),
        }
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        codec::encode_peer(&answers),
    )
        .into_response()
}
