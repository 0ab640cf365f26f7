//! Building and running the server: storage, node, router, shutdown.
//!
//! `Application::build` wires everything from a [`Config`] and binds the
//! listener (port 0 works: tests ask `port()`); `run_until_stopped` serves
//! (through [`crate::server`]: caps and timeouts) until the shutdown token
//! is cancelled, then drains in order: stop accepting, close websockets
//! (1001), stop the actors (pending commits finish, snapshots are
//! written), drain the group committer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use parkme_actors::{Node, NodeConfig};
use parkme_storage::Storage;
use parkme_storage::embedded::EmbeddedStorage;
use parkme_storage::memory::MemoryStorage;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::http;
use crate::peer::{AllowedOrigins, TrustedProxies};
use crate::rate_limit::{AuthFailures, RateLimits};
use crate::redis::{Redis, RedisSettings};
use crate::server::{self, ServerSettings};
use crate::telemetry;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;

/// At shutdown, how long in-flight requests may take to finish.
const CONNECTION_GRACE: Duration = Duration::from_secs(2);
/// Then, how long stopping the actors and the committer may take. Both
/// together stay under the contract's 10 s from SIGTERM to exit.
const DRAIN_BOUND: Duration = Duration::from_secs(7);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("storage: {0}")]
    Storage(String),
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("redis: {0}")]
    Redis(String),
}

#[derive(Debug)]
struct AppInner {
    node: Node,
    auth: Authenticator,
    limits: RateLimits,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
    storage_kind: &'static str,
    redis: Option<Arc<Redis>>,
    auth_failures: AuthFailures,
    trusted_proxies: TrustedProxies,
    allowed_origins: AllowedOrigins,
    body_timeout: Option<Duration>,
    stream_guard: crate::ws::guard::StreamGuard,
}

/// Shared by every handler; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<AppInner>,
}

impl AppState {
    pub fn node(&self) -> &Node {
        &self.inner.node
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

    /// The app socket's per-IP and per-socket limits.
    pub fn stream_guard(&self) -> &crate::ws::guard::StreamGuard {
        &self.inner.stream_guard
    }
}

/// Opens the configured storage backend.
pub async fn open_storage(config: &Config) -> Result<Arc<dyn Storage>, GatewayError> {
    let spec = config.storage.trim();
    if spec == "embedded" {
        let storage = EmbeddedStorage::open(&config.data_dir)
            .map_err(|e| GatewayError::Storage(format!("{} ({})", e, config.data_dir.display())))?;
        return Ok(Arc::new(storage));
    }
    if spec == "memory" {
        tracing::warn!("!!! PARKME_STORAGE=memory: NOTHING IS DURABLE; for tests only !!!");
        eprintln!("WARNING: PARKME_STORAGE=memory keeps everything in memory; for tests only.");
        return Ok(Arc::new(MemoryStorage::new()));
    }
    if spec.starts_with("scylla://") {
        return crate::cql::open(spec).await;
    }
    Err(GatewayError::Storage(format!(
        "unknown PARKME_STORAGE {spec:?}: use embedded, memory or scylla://host:port/keyspace"
    )))
}

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    server: ServerSettings,
    state: AppState,
    committer: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

fn key_secret(config: &Config) -> Vec<u8> {
    [
        &config.sensor_key_secret,
        &config.jwt_secret,
        &config.admin_token,
    ]
    .into_iter()
    .flatten()
    .find(|s| !s.is_empty())
    .map(|s| s.as_bytes().to_vec())
    .unwrap_or_else(|| {
        tracing::warn!("no secret configured: sensor keys change at every restart");
        rand::random::<[u8; 32]>().to_vec()
    })
}

impl Application {
    /// Opens storage, recovers every facility and binds the listener.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Self, GatewayError> {
        let metrics = telemetry::init_metrics().map_err(GatewayError::Metrics)?;
        let mut background = Vec::new();
        let redis = match config.redis_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => {
                let settings = RedisSettings {
                    url: url.to_owned(),
                    prefix: config.redis_prefix.clone(),
                    timeout: Duration::from_millis(config.redis_timeout_ms.max(1)),
                    ca_file: config.redis_ca_file.clone(),
                };
                let (redis, task) = Redis::start(&settings, shutdown.clone())
                    .map_err(|e| GatewayError::Redis(e.to_string()))?;
                background.push(task);
                Some(Arc::new(redis))
            }
            None => None,
        };
        let storage = open_storage(&config).await?;
        let storage_kind = storage.name();
        let node_config = NodeConfig {
            key_secret: key_secret(&config),
            snapshot_every: config.snapshot_every,
            booking_retention_days: config.booking_retention_days,
            zone_params: config.zone_params(),
            ..NodeConfig::default()
        };
        let started = std::time::Instant::now();
        let (node, committer) = Node::start(storage, node_config)
            .await
            .map_err(|e| GatewayError::Storage(e.to_string()))?;
        tracing::info!(
            facilities = node.facility_ids().len(),
            ms = started.elapsed().as_millis() as u64,
            storage = storage_kind,
            "state recovered"
        );
        let state = AppState {
            inner: Arc::new(AppInner {
                node,
                auth: Authenticator::new(
                    config.admin_token.as_deref(),
                    config.jwt_secret.as_deref(),
                    config.jwt_leeway_secs,
                ),
                limits: RateLimits::new(
                    config.rate_anon_per_hour,
                    config.rate_user_per_hour,
                    config.rate_bookings_per_hour,
                    config.rate_sensor_per_sec,
                )
                .shared_through(redis.clone()),
                metrics,
                shutdown: shutdown.clone(),
                storage_kind,
                redis,
                auth_failures: AuthFailures::new(config.rate_auth_failures_per_hour),
                trusted_proxies: config.trusted_proxies.clone(),
                allowed_origins: config.allowed_origins.clone(),
                body_timeout: config.body_timeout(),
                stream_guard: crate::ws::guard::StreamGuard::from_config(&config),
            }),
        };
        background.push(spawn_upkeep(state.clone()));
        if config.demo {
            background.extend(crate::demo::start(&state).await);
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| GatewayError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let server = ServerSettings {
            header_timeout: config.header_timeout(),
            idle_timeout: config.idle_timeout(),
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            trusted_proxies: config.trusted_proxies.clone(),
            grace: CONNECTION_GRACE,
        };
        Ok(Self {
            listener,
            router: router(state.clone()),
            server,
            state,
            committer,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until shutdown, then drains (bounded).
    pub async fn run_until_stopped(self) -> Result<(), GatewayError> {
        let shutdown = self.state.shutdown().clone();
        // Returns once shutdown stopped the accepting and open connections
        // finished, or the grace for them (a stalled client must not hold
        // the exit past the contract's 10 s) ran out.
        server::serve(self.listener, self.router, self.server, shutdown).await;
        tracing::info!("stopped accepting; draining");
        let drain = async {
            self.state.node().stop().await;
            // The committer drains what is queued once the token is
            // cancelled and every handle is gone.
            let _ = self.committer.await;
        };
        if tokio::time::timeout(DRAIN_BOUND, drain).await.is_err() {
            tracing::warn!("drain did not finish in {DRAIN_BOUND:?}; exiting anyway");
        }
        for task in self.background {
            task.abort();
        }
        Ok(())
    }
}

fn spawn_upkeep(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                () = state.shutdown().cancelled() => break,
                _ = tick.tick() => {
                    state.limits().shrink();
                    state.auth_failures().shrink();
                    state.stream_guard().shrink();
                    // Histograms keep raw samples until drained: fold them
                    // into their buckets so memory stays flat between scrapes.
                    state.metrics().run_upkeep();
                    metrics::gauge!("parkme_commit_queue_len").set(state.node().commit_queue() as f64);
                }
            }
        }
    })
}

/// Every route of the contract.
pub fn router(state: AppState) -> Router {
    let security_headers = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("content-security-policy"),
            "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    ];
    let mut router = Router::new()
        .route("/", get(http::ops::dashboard))
        .route("/health", get(http::ops::health))
        .route("/health/", get(http::ops::health))
        .route("/metrics", get(http::ops::metrics))
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
        .route(
            "/v1/bookings/{id}",
            get(http::bookings::get).delete(http::bookings::cancel),
        )
        .route("/v1/admin/backup", get(http::backup::download))
        .merge(crate::ws::routes())
        .fallback(http::ops::not_found)
        .method_not_allowed_fallback(http::ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::guard::guard,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(http::ops::panic_response));
    for (name, value) in security_headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router.with_state(state)
}
