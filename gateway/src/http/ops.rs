//! Operational endpoints: health, metrics, the dashboard page, and the
//! JSON answers for unknown routes, wrong methods and caught panics.

use std::any::Any;
use std::borrow::Cow;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use parkme_protocol::rest::{
    Check, ClusterCheck, FacilitiesCheck, Health, HealthChecks, StorageCheck, up_or_down,
};

use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

#[utoipa::path(get, path = "/health", operation_id = "get_health", tag = "operations",
    summary = "Health of the node, its storage and (when configured) Redis",
    description = "Also served at `/health/`.",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Storage (or configured Redis) down", body = Health),
    ))]
pub async fn health(State(app): State<AppState>) -> Response {
    let storage = tokio::time::timeout(Duration::from_secs(2), app.node().health()).await;
    let storage_ok = matches!(storage, Ok(Ok(())));
    let mut healthy = storage_ok;
    let redis = match app.redis() {
        Some(redis) => {
            let up = redis.ping().await;
            healthy &= up;
            Some(Check {
                status: up_or_down(up),
            })
        }
        None => None,
    };
    let body = Health {
        status: Cow::Borrowed(if healthy { "healthy" } else { "unhealthy" }),
        checks: HealthChecks {
            facilities: FacilitiesCheck {
                status: up_or_down(true),
                count: app.node().facility_ids().len(),
            },
            redis,
            storage: StorageCheck {
                status: up_or_down(storage_ok),
                backend: Cow::Borrowed(app.storage_kind()),
            },
            cluster: app.cluster().map(|cluster| {
                let view = cluster.view();
                let owned = crate::cluster::owned(&view);
                let note = if !cluster.joined() || !view.redis_up {
                    Some("Redis is unreachable: this node cannot take facilities (it keeps what it owns)".to_owned())
                } else if !storage_ok {
                    Some("the store is unreachable: facilities cannot be claimed or written".to_owned())
                } else if owned == 0 {
                    Some("this node owns no facility".to_owned())
                } else {
                    None
                };
                ClusterCheck {
                    status: up_or_down(cluster.joined() && view.redis_up),
                    node: cluster.me().id.to_string(),
                    owned,
                    nodes: view.members.len(),
                    note,
                }
            }),
        },
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", operation_id = "get_metrics", tag = "operations",
    summary = "Prometheus text exposition (families prefixed `parkme_`)",
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    crate::metrics::runtime_tasks(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
    );
    // A few small reads of /proc: off the async threads.
    let _ = tokio::task::spawn_blocking(crate::metrics::sample_process).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics().render(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/", operation_id = "get_dashboard", tag = "operations",
    summary = "The live occupancy dashboard",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
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
    metrics::handler_panicked();
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error",
    )
    .into_response()
}
