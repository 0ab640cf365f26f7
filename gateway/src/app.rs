//! Building and running the server: storage, node, router, shutdown.
//!
//! `Application::build` wires everything from a [`Config`] and binds the
//! listener (port 0 works: tests ask `port()`); `run_until_stopped` serves
//! (through [`crate::server`]: caps and timeouts) until the shutdown token
//! is cancelled, then drains in order, each step bounded by
//! [`ShutdownBounds`]: stop accepting and let HTTP requests finish; wait
//! for every websocket connection (tracked by one `TaskTracker`: each
//! closes with 1001 once what it dispatched is answered); stop the actors
//! (pending commits finish, snapshots are written) and drain the group
//! committer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use parkme_actors::{Node, NodeConfig};
use parkme_storage::Storage;
use parkme_storage::embedded::EmbeddedStorage;
use parkme_storage::memory::MemoryStorage;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::cluster::{Cluster, ClusterSettings};
use crate::config::Config;
use crate::rate_limit::{AuthFailures, RateLimits};
use crate::redis::{Redis, RedisSettings};
use crate::server::{self, ServerSettings};
use crate::state::{AppInner, AppState};
use crate::{metrics, telemetry};

pub use crate::routes::{BODY_LIMIT, router};

/// How long each step of a shutdown may take; together they stay under
/// the contract's 10 s from SIGTERM to exit.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownBounds {
    /// In-flight HTTP requests finishing.
    pub requests: Duration,
    /// Websocket connections acking what they dispatched and closing.
    pub sockets: Duration,
    /// The actors stopping and the committer draining.
    pub node: Duration,
    /// A cluster node handing its facilities to other nodes (before the
    /// steps above; a node that handed everything over stops at once).
    pub drain: Duration,
}

pub const SHUTDOWN: ShutdownBounds = ShutdownBounds {
    drain: Duration::from_secs(5),
    requests: Duration::from_secs(2),
    sockets: Duration::from_secs(2),
    node: Duration::from_secs(5),
};

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
    #[error("cluster: {0}")]
    Cluster(String),
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
        return crate::cql::open(spec, &config.cql).await;
    }
    Err(GatewayError::Storage(format!(
        "unknown PARKME_STORAGE {:?}: use embedded, memory or scylla://host:port/keyspace",
        parkme_storage::cql::redact_uri(spec)
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
    /// Stops the cluster's coordination shell, last.
    cluster_stop: CancellationToken,
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
        let cluster_settings = ClusterSettings::from_config(&config)?;
        let metrics = telemetry::init_metrics().map_err(GatewayError::Metrics)?;
        let mut background = Vec::new();
        let redis_settings = config
            .redis_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(|url| RedisSettings {
                url: url.to_owned(),
                prefix: config.redis_prefix.clone(),
                timeout: Duration::from_millis(config.redis_timeout_ms.max(1)),
                ca_file: config.redis_ca_file.clone(),
            });
        let redis = match &redis_settings {
            Some(settings) => {
                let (redis, task) = Redis::start(settings, shutdown.clone())
                    .map_err(|e| GatewayError::Redis(e.to_string()))?;
                background.push(task);
                Some(Arc::new(redis))
            }
            None => None,
        };
        let storage = open_storage(&config).await?;
        let storage_kind = storage.name();
        let (fenced_tx, fenced_rx) = tokio::sync::mpsc::unbounded_channel();
        let node_config = NodeConfig {
            key_secret: key_secret(&config),
            snapshot_every: config.snapshot_every,
            booking_retention_days: config.booking_retention_days,
            zone_params: config.zone_params(),
            history_days: config.history_days,
            history_every: std::time::Duration::from_secs(u64::from(config.history_sample_secs)),
            cluster: cluster_settings.is_some(),
            fenced: cluster_settings.as_ref().map(|_| fenced_tx),
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
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| GatewayError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let cluster_stop = CancellationToken::new();
        let cluster = match (cluster_settings, &redis_settings) {
            (Some(settings), Some(redis_settings)) => Some(Cluster::start(
                settings,
                redis_settings,
                node.clone(),
                fenced_rx,
                format!("http://{}:{port}", config.listen.ip()),
                cluster_stop.clone(),
            )?),
            _ => None,
        };
        let state = AppState::from(AppInner {
            cluster,
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
            connections: TaskTracker::new(),
            routes: std::sync::OnceLock::new(),
        });
        background.push(spawn_upkeep(state.clone()));
        if config.demo {
            background.extend(crate::demo::start(&state).await);
        }
        let server = ServerSettings {
            header_timeout: config.header_timeout(),
            idle_timeout: config.idle_timeout(),
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            trusted_proxies: config.trusted_proxies.clone(),
            grace: SHUTDOWN.requests,
        };
        let routes = router(state.clone());
        if state.cluster().is_some() {
            // Only cluster nodes send socket ops through their routes.
            state.set_routes(routes.clone());
        }
        Ok(Self {
            listener,
            router: routes,
            server,
            state,
            committer,
            background,
            cluster_stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until shutdown, then drains, each step bounded.
    pub async fn run_until_stopped(self) -> Result<(), GatewayError> {
        let shutdown = self.state.shutdown().clone();
        // A cluster node hands its facilities over before it stops
        // serving: meanwhile it keeps answering (forwarding) its clients.
        let serve_stop = CancellationToken::new();
        tokio::spawn({
            let serve_stop = serve_stop.clone();
            let cluster = self.state.cluster().cloned();
            async move {
                shutdown.cancelled().await;
                if let Some(cluster) = cluster {
                    tracing::info!("handing facilities to other nodes");
                    cluster.drain(SHUTDOWN.drain).await;
                }
                serve_stop.cancel();
            }
        });
        // Returns once shutdown stopped the accepting and open HTTP
        // connections finished, or their bound ran out (a stalled client
        // must not hold the exit past the contract's 10 s).
        server::serve(self.listener, self.router, self.server, serve_stop).await;
        let sockets = self.state.connections();
        sockets.close();
        tracing::info!(
            open = sockets.len(),
            "stopped accepting; closing websockets"
        );
        if tokio::time::timeout(SHUTDOWN.sockets, sockets.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = sockets.len(),
                "websockets still open after {:?}; stopping anyway",
                SHUTDOWN.sockets
            );
        }
        let drain = async {
            self.state.node().stop().await;
            // The committer drains what is queued once the token is
            // cancelled and every handle is gone.
            let _ = self.committer.await;
        };
        if tokio::time::timeout(SHUTDOWN.node, drain).await.is_err() {
            tracing::warn!(
                "drain did not finish in {:?}; exiting anyway",
                SHUTDOWN.node
            );
        }
        self.cluster_stop.cancel();
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
                    metrics::commit_queue(state.node().commit_queue());
                }
            }
        }
    })
}
