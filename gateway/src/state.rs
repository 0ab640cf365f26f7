//! What every handler shares: the node, auth, limits, metrics, the
//! shutdown token and the connection tracker. A leaf: it is built by
//! [`crate::app`] and read by everything else.
//!
//! This module must never hold live domain state: that is the node's.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use parkme_actors::Node;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::peer::{AllowedOrigins, TrustedProxies};
use crate::rate_limit::{AuthFailures, RateLimits};
use crate::redis::Redis;
use crate::ws::guard::StreamGuard;

#[derive(Debug)]
pub struct AppInner {
    pub node: Node,
    pub auth: Authenticator,
    pub limits: RateLimits,
    pub metrics: PrometheusHandle,
    pub shutdown: CancellationToken,
    pub storage_kind: &'static str,
    pub redis: Option<Arc<Redis>>,
    pub auth_failures: AuthFailures,
    pub trusted_proxies: TrustedProxies,
    pub allowed_origins: AllowedOrigins,
    pub body_timeout: Option<Duration>,
    pub stream_guard: StreamGuard,
    /// Every websocket connection, waited for (bounded) at shutdown.
    pub connections: TaskTracker,
    /// Cluster mode only.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The node's own routes, for app-socket ops that must go exactly as
    /// their HTTP twins (cluster mode: to the facility's owner).
    pub routes: std::sync::OnceLock<axum::Router>,
}

/// Shared by every handler; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<AppInner>,
}

impl From<AppInner> for AppState {
    fn from(inner: AppInner) -> Self {
        AppState {
            inner: Arc::new(inner),
        }
    }
}

impl AppState {
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The node's routes, once built.
    pub fn routes(&self) -> Option<&axum::Router> {
        self.inner.routes.get()
    }

    /// Keeps the node's routes (once, at start-up).
    pub fn set_routes(&self, routes: axum::Router) {
        let _ = self.inner.routes.set(routes);
    }
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }
    pub fn limits(&self) -> &RateLimits {
        &self.inner.limits
    }
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }
    pub fn storage_kind(&self) -> &'static str {
        self.inner.storage_kind
    }
    pub fn redis(&self) -> Option<&Redis> {
        self.inner.redis.as_deref()
    }
    pub fn auth_failures(&self) -> &AuthFailures {
        &self.inner.auth_failures
    }
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.inner.trusted_proxies
    }
    pub fn allowed_origins(&self) -> &AllowedOrigins {
        &self.inner.allowed_origins
    }
    /// How long a request body may take to arrive.
    pub fn body_timeout(&self) -> Option<Duration> {
        self.inner.body_timeout
    }

    /// Every websocket connection task: each handshake tracks its
    /// connection here, and shutdown waits for them.
    pub fn connections(&self) -> &TaskTracker {
        &self.inner.connections
    }

    /// This node's part in the cluster (cluster mode only).
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.inner.cluster.as_ref()
    }

    /// The app socket's per-IP and per-socket limits.
    pub fn stream_guard(&self) -> &StreamGuard {
        &self.inner.stream_guard
    }
}
