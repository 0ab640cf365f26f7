//! Every route of the contract and the layers around them: the guard
//! (client address, failed-auth limit), a trace span per request, the
//! body limit, panics as JSON 500s, security headers.
//!
//! This module must never hold a handler's logic: it only wires.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::http;
use crate::state::AppState;
use crate::ws;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;

const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        HeaderName::from_static("content-security-policy"),
        "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    ),
];

/// One span per request, with its method and route (not the raw path:
/// ids are fields of the spans below it).
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |path| path.as_str());
    tracing::debug_span!("request", method = %request.method(), route)
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/", get(http::ops::dashboard))
        .route("/health", get(http::ops::health))
        .route("/health/", get(http::ops::health))
        .route("/health/ready", get(http::cluster::ready))
        .route("/v1/cluster", get(http::cluster::info))
        .route(
            "/internal/facilities/{fid}/image",
            get(http::cluster::image),
        )
        .route(
            "/internal/facilities/{fid}/readings",
            axum::routing::post(http::cluster::readings),
        )
        .route("/metrics", get(http::ops::metrics))
        .route("/openapi.json", get(http::openapi::document))
        .route("/v1/facilities", get(http::facilities::list))
        .route(
            "/v1/facilities/{fid}",
            get(http::facilities::get).put(http::facilities::put),
        )
        .route(
            "/v1/facilities/{fid}/zones/{zid}/spots",
            get(http::facilities::spots),
        )
        .route(
            "/v1/facilities/{fid}/spots/{sid}/service",
            put(http::facilities::service),
        )
        .route(
            "/v1/facilities/{fid}/sensor-key",
            post(http::facilities::rotate_sensor_key),
        )
        .route(
            "/v1/facilities/{fid}/bookings",
            post(http::bookings::create),
        )
        .route("/v1/facilities/{fid}/history", get(http::history::get))
        .route("/v1/facilities/{fid}/ngsi-ld", get(http::open::ngsi_ld))
        .route(
            "/v1/datex2/parking-status",
            get(http::open::datex2_parking_status),
        )
        .route(
            "/v1/bookings/{id}",
            get(http::bookings::get)
                .delete(http::bookings::cancel)
                .patch(http::bookings::extend),
        )
        .route("/v1/admin/backup", get(http::backup::download))
        .route("/v1/sensors/{fid}", get(ws::sensor::handshake))
        .route("/v1/stream", get(ws::stream::handshake))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::cluster::routing::route,
        ))
        .fallback(http::ops::not_found)
        .method_not_allowed_fallback(http::ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::guard::guard,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(http::ops::panic_response));
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router.with_state(state)
}
