//! Operational endpoints: health, metrics, the dashboard page, and the
//! JSON answers for unknown routes, wrong methods and caught panics.

use std::any::Any;
use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::dto::Health;
use crate::error::ApiError;

pub async fn health(State(app): State<AppState>) -> Response {
    let mut checks = BTreeMap::new();
    let storage = tokio::time::timeout(Duration::from_secs(2), app.node().health()).await;
    let storage_ok = matches!(storage, Ok(Ok(())));
    checks.insert(
        "storage",
        json!({"status": if storage_ok { "up" } else { "down" }, "backend": app.storage_kind()}),
    );
    let mut healthy = storage_ok;
    if let Some(redis) = app.redis() {
        let redis = redis.ping().await;
        healthy &= redis;
        checks.insert(
            "redis",
            json!({"status": if redis { "up" } else { "down" }}),
        );
    }
    checks.insert(
        "facilities",
        json!({"status": "up", "count": app.node().facility_ids().len()}),
    );
    let body = Health {
        status: if healthy { "healthy" } else { "unhealthy" },
        checks,
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics().render(),
    )
        .into_response()
}

pub async fn dashboard() -> Response {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Html(crate::dashboard::PAGE),
    )
        .into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Last line of defence: a panic in a handler becomes a JSON 500 (and is
/// a bug to fix).
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(detail, "handler panicked");
    metrics::counter!("parkme_handler_panics_total").increment(1);
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
    .into_response()
}
