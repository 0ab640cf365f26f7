//! The middleware every request passes before its handler:
//!
//! - it settles the client address once ([`ClientIp`], through the
//!   trusted proxies) for the rate limits and handlers;
//! - a websocket upgrade from a browser page whose `Origin` is neither
//!   the server's own nor allowed is refused, 403 `origin_not_allowed`
//!   (cross-site websocket hijacking);
//! - failed authentication is limited per client address: a request that
//!   presents credentials (a bearer token, a sensor key, `?key=`,
//!   `?token=`) and is answered 401 counts one failure; an address past
//!   its budget gets 429 with `Retry-After` for every request that
//!   presents credentials, before they are even checked.
//!
//! This module must never read a request body, nor log a credential.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::cluster::routing::Forwarded;
use crate::cluster::signature::{self, Peer};
use crate::error::ApiError;
use crate::peer::{ClientIp, OriginCheck};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
struct CredentialQuery {
    key: Option<String>,
    token: Option<String>,
}

/// Whether a request carries credentials of any kind, read the way the
/// handlers read them.
fn presents_credentials(headers: &HeaderMap, uri: &Uri) -> bool {
    if headers.contains_key(header::AUTHORIZATION) || headers.contains_key("x-sensor-key") {
        return true;
    }
    uri.query().is_some()
        && Query::<CredentialQuery>::try_from_uri(uri).is_ok_and(|Query(q)| {
            q.key.is_some_and(|k| !k.is_empty()) || q.token.is_some_and(|t| !t.is_empty())
        })
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The TCP peer of a request (loopback when served without one, as in
/// in-process tests).
fn peer(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

pub async fn guard(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let ip = app
        .trusted_proxies()
        .client_ip(peer(&request), request.headers());
    // A request another node forwarded carries its client's address,
    // signed; that node already spent the client's failed-auth budget.
    if let Some(cluster) = app.cluster() {
        match signature::verify(request.headers(), cluster.secret()) {
            Peer::Client => {}
            Peer::Node { client, .. } => {
                request.extensions_mut().insert(ClientIp(client));
                request.extensions_mut().insert(Forwarded);
                return next.run(request).await;
            }
            Peer::Forged => {
                tracing::warn!(client = %ip, "request with a node signature that does not verify");
                if let Err(wait) = app.auth_failures().failed(ip) {
                    return ApiError::rate_limited(wait).into_response();
                }
                return ApiError::unauthorized("the node signature does not verify")
                    .into_response();
            }
        }
    }
    if request.headers().contains_key(signature::PEER_HEADER) {
        // Outside cluster mode it means nothing; never let it through.
        request.headers_mut().remove(signature::PEER_HEADER);
        request.headers_mut().remove(signature::CLIENT_IP_HEADER);
    }
    request.extensions_mut().insert(ClientIp(ip));

    if is_websocket_upgrade(request.headers())
        && app.allowed_origins().check(request.headers()) == OriginCheck::Refused
    {
        tracing::info!(client = %ip, "websocket from a foreign origin refused");
        return ApiError::forbidden("this page's origin may not open websockets here")
            .with_code("origin_not_allowed")
            .into_response();
    }

    let credentials = presents_credentials(request.headers(), request.uri());
    if credentials && let Err(wait) = app.auth_failures().check(ip) {
        crate::metrics::rate_limited();
        return ApiError::rate_limited(wait).into_response();
    }
    let response = next.run(request).await;
    if credentials
        && response.status() == StatusCode::UNAUTHORIZED
        && let Err(wait) = app.auth_failures().failed(ip)
    {
        tracing::info!(client = %ip, "failed authentication budget spent");
        return ApiError::rate_limited(wait).into_response();
    }
    response
}
