//! Where a request is served on a cluster node. A route layer: it runs
//! after the router matched a route (so it knows the facility a request
//! is for) and before the handler.
//!
//! - A facility's routes (`/v1/facilities/{fid}` and below) are served
//!   here when this node owns the facility, else forwarded to its owner
//!   (signed, with the client's address, over kept-alive connections);
//!   the owner runs them through its own handlers, so auth, rate limits
//!   and idempotency are exactly the owner's. While a facility has no
//!   owner (a move, a failover) the request waits, up to twice the lease
//!   (at least 10 s), then gets 503 with `Retry-After`; an owner that let the facility go
//!   meanwhile answers 421 and the request goes to the new one.
//! - A new facility (its first `PUT`) gets its record written here; the
//!   node the placement picks starts it, and the `PUT` is then answered by
//!   that owner (201).
//! - `DELETE` and `PATCH /v1/bookings/{id}` go to the owner of the booking's
//!   facility; `GET /v1/bookings/{id}` reads the shared store here.
//! - `GET /v1/facilities` merges this node's list with every owner's, and
//!   `GET /v1/datex2/parking-status` publishes that merged list.
//! - A sensor socket for a facility owned elsewhere gets 503 with
//!   `Retry-After` and the owner's address (its readings must reach the
//!   owner; sockets are not forwarded yet).
//!
//! This module must never answer for a facility it does not own, never
//! forward a request it received from another node (no loops), and never
//! read a client's body past the body limit or its time budget.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parkme_engine::{BookingId, FacilityId};
use parkme_protocol::rest::FacilityList;

use super::Cluster;
use super::signature;
use crate::error::ApiError;
use crate::metrics;
use crate::peer::ClientIp;
use crate::routes::BODY_LIMIT;
use crate::state::AppState;

/// Set by an owner that does not (or no longer) serve the facility of a
/// forwarded request: the forwarder looks again and retries.
pub const NOT_OWNER: &str = "x-parkme-not-owner";
/// Set (internally) on a 503 for a request that did not happen (the
/// facility is not served here, or a zone restarts): safe to resend.
pub const RETRYABLE: &str = "x-parkme-retryable";
/// Set (internally) by the facility PUT handler that wrote the record of
/// a new facility instead of serving it.
pub const RECORD_CREATED: &str = "x-parkme-record-created";

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How often a waiting request looks at the cluster again.
const POLL: Duration = Duration::from_millis(50);
/// One forwarded request's budget.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request waits for a facility to have an owner: a failover
/// takes up to twice the lease; a client would rather wait than retry.
pub fn wait_budget(cluster: &Cluster) -> Duration {
    (2 * cluster.lease()).max(Duration::from_secs(10))
}

/// A request that came signed from another node.
#[derive(Debug, Clone)]
pub struct Forwarded;

/// What a matched route is about.
enum Target {
    Local,
    Facility(FacilityId),
    ChangeBooking(BookingId),
    List,
    Datex,
}

fn target(parts: &Parts, params: Option<&RawPathParams>) -> Target {
    let path = parts.uri.path();
    let param = |name: &str| {
        params.and_then(|p| {
            p.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
    };
    if path == "/v1/facilities" || path == "/v1/facilities/" {
        return Target::List;
    }
    if path == "/v1/datex2/parking-status" {
        return Target::Datex;
    }
    if path.starts_with("/v1/facilities/") {
        return match param("fid").and_then(|f| FacilityId::parse(&f).ok()) {
            Some(fid) => Target::Facility(fid),
            None => Target::Local,
        };
    }
    // Sensor sockets are served on any node (`super::relay`): local.
    if path.starts_with("/v1/bookings/") && matches!(parts.method, Method::DELETE | Method::PATCH) {
        return match param("id").and_then(|b| BookingId::parse(&b).ok()) {
            Some(id) => Target::ChangeBooking(id),
            None => Target::Local,
        };
    }
    Target::Local
}

pub async fn route(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(cluster) = app.cluster().cloned() else {
        let mut response = next.run(request).await;
        response.headers_mut().remove(RETRYABLE);
        return response;
    };
    let (mut parts, body) = request.into_parts();
    let params = {
        use axum::extract::FromRequestParts;
        RawPathParams::from_request_parts(&mut parts, &())
            .await
            .ok()
    };
    let target = target(&parts, params.as_ref());
    let forwarded = parts.extensions.get::<Forwarded>().is_some();
    let request = Request::from_parts(parts, body);
    if forwarded {
        // The other node thinks this one owns the facility.
        if let Target::Facility(fid) = &target
            && !app.node().serves(fid)
        {
            return not_owner();
        }
        let mut response = next.run(request).await;
        if response.headers_mut().remove(RETRYABLE).is_some() {
            // It did not happen here (the facility moved on, or a zone
            // restarts): the forwarder looks again and resends.
            return not_owner();
        }
        return response;
    }
    let mut response = match target {
        Target::Local => next.run(request).await,
        Target::Facility(fid) => to_owner(&app, &cluster, fid, request, next).await,
        Target::ChangeBooking(id) => match app.node().booking(&id).await {
            Ok(Some(booking)) => to_owner(&app, &cluster, booking.facility, request, next).await,
            // Unknown (404) or the store is down (503): as the owner would.
            _ => next.run(request).await,
        },
        Target::List => list(&app, &cluster, request, next).await,
        Target::Datex => datex(&app, &cluster, request, next).await,
    };
    response.headers_mut().remove(RETRYABLE);
    response
}

pub fn not_owner() -> Response {
    let mut response = ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "not_owner",
        "this node does not own the facility",
    )
    .into_response();
    response
        .headers_mut()
        .insert(NOT_OWNER, HeaderValue::from_static("1"));
    response
}

fn moving(fid: &FacilityId, owner: Option<&str>, why: &str) -> Response {
    let message = match owner {
        Some(url) => format!("facility {fid} is served by {url}; {why}"),
        None => format!("facility {fid} is moving between nodes; retry shortly"),
    };
    let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_owner", message);
    error.retry_after = Some(1);
    error.into_response()
}

/// Reads a client's body, within the body limit and its time budget.
async fn buffer(app: &AppState, body: Body) -> Result<Bytes, Response> {
    let read = axum::body::to_bytes(body, BODY_LIMIT);
    let read = match app.body_timeout() {
        Some(budget) => match tokio::time::timeout(budget, read).await {
            Ok(read) => read,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body took too long to arrive",
                )
                .into_response());
            }
        },
        None => read.await,
    };
    read.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {BODY_LIMIT} bytes"),
        )
        .into_response()
    })
}

fn rebuild(parts: &Parts, body: &Bytes) -> Request {
    let mut request = Request::new(Body::from(body.clone()));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    *request.extensions_mut() = parts.extensions.clone();
    request
}

/// Serves a facility's request on its owner, waiting out a move.
async fn to_owner(
    app: &AppState,
    cluster: &Cluster,
    fid: FacilityId,
    request: Request,
    next: Next,
) -> Response {
    let arrived = chrono::Utc::now();
    let (mut parts, body) = request.into_parts();
    let body = match buffer(app, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // Resent to a new owner, a booking must not happen twice: one the
    // client sent without a key gets one for the life of this request (a
    // replay of it is the client's first answer, 201).
    let mut created = false;
    let booking = parts.method == Method::POST && parts.uri.path().ends_with("/bookings");
    // An attempt went out whose outcome this node does not know.
    let mut resent = false;
    if booking && !parts.headers.contains_key(IDEMPOTENCY_KEY) {
        let key = format!("fwd-{}", hex::encode(rand::random::<[u8; 16]>()));
        if let Ok(value) = HeaderValue::from_str(&key) {
            parts.headers.insert(IDEMPOTENCY_KEY, value);
            created = true;
        }
    }
    let deadline = Instant::now() + wait_budget(cluster);
    let mut checked_exists = false;
    let mut last_owner: Option<String> = None;
    loop {
        let view = cluster.view();
        let owner = view.owner(&fid).cloned();
        match owner {
            _ if app.node().serves(&fid) && cluster.owns(&fid) => {
                let mut response = next.clone().run(rebuild(&parts, &body)).await;
                // Refused as retryable because the facility left this node
                // meanwhile: it did not happen; serve it where it went.
                let retry =
                    response.headers_mut().remove(RETRYABLE).is_some() && !app.node().serves(&fid);
                if !retry {
                    let response = if booking && resent && !created {
                        own_replay(response, arrived).await
                    } else {
                        response
                    };
                    return finish(response, created);
                }
            }
            Some(member) if member.id == cluster.me().id => {}
            Some(member) => {
                last_owner = Some(member.url.clone());
                let sent = forward(cluster, &member.url, &parts, &body);
                tokio::pin!(sent);
                // An owner that stops answering (paused, cut off) loses its
                // lease: then this request goes to the next owner. What the
                // old one may still do with it is fenced by the store, and a
                // booking carries an idempotency key, so a retry never books
                // twice.
                let answer = loop {
                    tokio::select! {
                        answer = &mut sent => break Some(answer),
                        () = tokio::time::sleep(POLL) => {
                            let holder = cluster.view().owner(&fid).map(|m| m.id.clone());
                            if holder.as_ref() != Some(&member.id) {
                                break None;
                            }
                        }
                    }
                };
                match answer {
                    Some(Ok(response)) if response.headers().contains_key(NOT_OWNER) => {}
                    Some(Ok(response)) => {
                        metrics::forwarded("http");
                        let response = if booking && resent && !created {
                            own_replay(response, arrived).await
                        } else {
                            response
                        };
                        return finish(response, created);
                    }
                    Some(Err(e)) => {
                        resent = true;
                        tracing::debug!(facility = %fid, owner = %member.url, error = %e, "forwarding failed; looking again");
                    }
                    None => {
                        resent = true;
                        tracing::info!(facility = %fid, owner = %member.url, "owner changed while a forwarded request was in flight; resending");
                    }
                }
            }
            None if !checked_exists => {
                checked_exists = true;
                if !app.node().is_known(&fid).await {
                    // Not in the store: the handler answers as a single
                    // node would (401, 404), or, for a PUT, writes the
                    // new facility's record.
                    let response = next.clone().run(rebuild(&parts, &body)).await;
                    let Some(marker) = response.headers().get(RECORD_CREATED) else {
                        return response;
                    };
                    created = marker.as_bytes() == b"1";
                    cluster.nudge(&fid).await;
                }
            }
            None => {}
        }
        if Instant::now() >= deadline {
            return moving(&fid, last_owner.as_deref(), "retry shortly");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A booking this node resent after an attempt whose outcome it never
/// learned, answered as a replay (200) of a booking created after the
/// request arrived here: that booking is this request's own earlier
/// attempt, so the client gets the answer of a creation (201).
async fn own_replay(response: Response, arrived: chrono::DateTime<chrono::Utc>) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut head, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return ApiError::from(parkme_actors::ActorError::Unavailable("facility")).into_response();
    };
    let created_at = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["created_at"].as_str().map(str::to_owned))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
    if created_at.is_some_and(|c| {
        c.with_timezone(&chrono::Utc) >= arrived - chrono::Duration::milliseconds(1)
    }) {
        head.status = StatusCode::CREATED;
    }
    Response::from_parts(head, Body::from(bytes))
}

/// A new facility's PUT (and a booking replayed under the key this node
/// minted for it) answers 201 wherever it was served.
fn finish(mut response: Response, created: bool) -> Response {
    response.headers_mut().remove(RECORD_CREATED);
    if created && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::CREATED;
    }
    response
}

/// Headers that describe one hop, not the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    ) || name.as_str() == signature::PEER_HEADER
        || name.as_str() == signature::CLIENT_IP_HEADER
}

/// Sends a request to another node and brings its answer back.
async fn forward(
    cluster: &Cluster,
    base: &str,
    parts: &Parts,
    body: &Bytes,
) -> Result<Response, reqwest::Error> {
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 2);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let client = parts
        .extensions
        .get::<ClientIp>()
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), |c| c.0);
    signature::sign(
        &mut headers,
        cluster.secret(),
        &cluster.me().id.to_string(),
        client,
    );
    let answer = cluster
        .client()
        .request(parts.method.clone(), format!("{base}{path}"))
        .headers(headers)
        .body(body.clone())
        .timeout(FORWARD_TIMEOUT)
        .send()
        .await?;
    let status = answer.status();
    let mut response_headers = HeaderMap::with_capacity(answer.headers().len());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response_headers.append(name.clone(), value.clone());
        }
    }
    let bytes = answer.bytes().await?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    Ok(response)
}

/// `GET /v1/facilities` on a cluster node: this node's facilities and
/// every other owner's ([`merged`]).
async fn list(app: &AppState, cluster: &Cluster, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = match buffer(app, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let local = || async {
        let local = next.clone().run(rebuild(&parts, &body)).await;
        if local.status() != StatusCode::OK {
            return Err(local);
        }
        let bytes = axum::body::to_bytes(local.into_body(), usize::MAX)
            .await
            .map_err(|_| unavailable())?;
        serde_json::from_slice::<FacilityList>(&bytes).map_err(|_| unavailable())
    };
    match merged(app, cluster, &parts, &body, local).await {
        Ok(merged) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            axum::Json(merged),
        )
            .into_response(),
        Err(response) => response,
    }
}

/// `GET /v1/datex2/parking-status` on a cluster node: the publication of
/// every facility of the cluster, from the same merged list as
/// `GET /v1/facilities`. The node's own answer comes first, so a
/// credential it refuses is refused here too.
async fn datex(app: &AppState, cluster: &Cluster, request: Request, next: Next) -> Response {
    let (mut parts, _) = request.into_parts();
    let local = next.run(rebuild(&parts, &Bytes::new())).await;
    if !local.status().is_success() {
        return local;
    }
    parts.method = Method::GET;
    parts.uri = axum::http::Uri::from_static("/v1/facilities");
    let body = Bytes::new();
    let local = || async { Ok(crate::http::facilities::listed(app).await) };
    match merged(app, cluster, &parts, &body, local).await {
        Ok(merged) => crate::http::open::datex2_answer(app, merged.facilities)
            .await
            .into_response(),
        Err(response) => response,
    }
}

fn unavailable() -> Response {
    ApiError::from(parkme_actors::ActorError::Unavailable("facility")).into_response()
}

/// This node's facilities (`local`) and every other owner's (`parts`, a
/// `GET /v1/facilities`, forwarded to each), merged in id order. Waits
/// (up to twice the lease) for facilities that are moving, so none is
/// left out.
async fn merged<F, Fut>(
    app: &AppState,
    cluster: &Cluster,
    parts: &Parts,
    body: &Bytes,
    local: F,
) -> Result<FacilityList, Response>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<FacilityList, Response>>,
{
    let deadline = Instant::now() + wait_budget(cluster);
    loop {
        let mut merged = local().await?;
        let view = cluster.view();
        let mut owners: Vec<&parkme_cluster::Member> = view
            .members
            .iter()
            .filter(|m| m.id != cluster.me().id && view.leases.values().any(|h| *h == m.id))
            .collect();
        owners.dedup_by(|a, b| a.id == b.id);
        let mut complete = true;
        for owner in owners {
            match forward(cluster, &owner.url, parts, body).await {
                Ok(answer) if answer.status() == StatusCode::OK => {
                    metrics::forwarded("list");
                    let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX).await;
                    match bytes
                        .ok()
                        .and_then(|b| serde_json::from_slice::<FacilityList>(&b).ok())
                    {
                        Some(theirs) => merged.facilities.extend(theirs.facilities),
                        None => complete = false,
                    }
                }
                _ => complete = false,
            }
        }
        merged.facilities.sort_by(|a, b| a.id.cmp(&b.id));
        merged.facilities.dedup_by(|a, b| a.id == b.id);
        let known = app.node().known_count();
        if (complete && merged.facilities.len() >= known) || Instant::now() >= deadline {
            return Ok(merged);
        }
        tokio::time::sleep(POLL).await;
    }
}
