//! Redis coordination for deployments of more than one node: shared rate
//! limits (a fixed window per key, counted atomically by a Lua script so
//! every node sees the same count) and the Redis check of `/health/`.
//!
//! One background task keeps a multiplexed connection: it connects (with
//! AUTH from the URL, TLS for `rediss://`), and when a request finds the
//! connection broken or silent it connects again, with backoff. Requests
//! never connect and never wait for one another: each takes the current
//! connection (or, while there is none, answers "unknown" at once) and
//! waits for its own reply at most the configured timeout. Redis being
//! down or hung never stops the engine: `/health/` reports it, and the
//! limits fall back to each node's own limiter until it is back. Every key
//! starts with the configured prefix, so tests and tenants can share a
//! server. This module must never log the URL (it may carry a password).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WINDOW_SCRIPT: &str = r"
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local ttl = redis.call('PTTL', KEYS[1])
return {n, ttl}
";

/// How long the background task waits for a connection (TCP, TLS, AUTH).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Backoff between failed connection attempts.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// How to reach Redis.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[[user]:password@]host[:port][/db]` or `rediss://…` (TLS).
    pub url: String,
    pub prefix: String,
    /// Longest a request waits for its reply.
    pub timeout: Duration,
    /// PEM CA bundle for `rediss://` with a private CA.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Why Redis could not be set up (at start; never because it is down).
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("PARKME_REDIS_URL is not a usable Redis URL: {0}")]
    Url(redis::RedisError),
    #[error("could not read the Redis CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("PARKME_REDIS_CA_FILE needs a rediss:// URL: {0}")]
    Tls(redis::RedisError),
}

#[derive(Debug)]
struct Connected {
    id: u64,
    connection: MultiplexedConnection,
}

struct Inner {
    client: redis::Client,
    config: AsyncConnectionConfig,
    prefix: String,
    timeout: Duration,
    current: RwLock<Option<Connected>>,
    /// Woken when a request found the connection broken.
    lost: Notify,
    next_id: AtomicU64,
    script: redis::Script,
}

/// A Redis client kept connected in the background.
pub struct Redis {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.inner.prefix)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// Whether a shared limit allows a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    Allowed,
    /// Limited; retry after this many seconds.
    Limited(u64),
    /// Redis did not answer: the caller falls back to its local limiter.
    Unknown,
}

pub(crate) fn client(settings: &RedisSettings) -> Result<redis::Client, RedisSetupError> {
    // rustls needs a process-wide crypto provider for `rediss://`; a
    // second install (tests, another library) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(path) = &settings.ca_file else {
        return redis::Client::open(settings.url.as_str()).map_err(RedisSetupError::Url);
    };
    let root_cert = std::fs::read(path).map_err(|source| RedisSetupError::CaFile {
        path: path.clone(),
        source,
    })?;
    let info = redis::IntoConnectionInfo::into_connection_info(settings.url.as_str())
        .map_err(RedisSetupError::Url)?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    redis::Client::build_with_tls(info, certificates).map_err(RedisSetupError::Tls)
}

impl Redis {
    /// Parses the settings and starts the task that keeps the connection
    /// (it stops with `shutdown`). Never waits for Redis.
    pub fn start(
        settings: &RedisSettings,
        shutdown: CancellationToken,
    ) -> Result<(Self, JoinHandle<()>), RedisSetupError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(settings.timeout));
        let inner = Arc::new(Inner {
            client: client(settings)?,
            config,
            prefix: settings.prefix.clone(),
            timeout: settings.timeout,
            current: RwLock::new(None),
            lost: Notify::new(),
            next_id: AtomicU64::new(1),
            script: redis::Script::new(WINDOW_SCRIPT),
        });
        crate::metrics::redis_up(false);
        let task = tokio::spawn(keep_connected(Arc::clone(&inner), shutdown));
        Ok((Self { inner }, task))
    }

    /// Whether a connection is up (as far as the last request knows).
    pub fn is_connected(&self) -> bool {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    fn connection(&self) -> Option<(u64, MultiplexedConnection)> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| (c.id, c.connection.clone()))
    }

    /// Drops connection `id` (if still current) and has the background
    /// task connect again.
    fn forget(&self, id: u64) {
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(|c| c.id == id) {
            *current = None;
            crate::metrics::redis_up(false);
            self.inner.lost.notify_one();
        }
    }

    /// Whether Redis answers PING within the request timeout.
    pub async fn ping(&self) -> bool {
        let Some((id, mut connection)) = self.connection() else {
            return false;
        };
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        let ok = matches!(
            tokio::time::timeout(self.inner.timeout, ping).await,
            Ok(Ok(_))
        );
        if !ok {
            self.forget(id);
        }
        ok
    }

    /// Counts `n` units against `key`'s window of `window`, allowing `limit`.
    pub async fn count(&self, key: &str, n: u32, limit: u32, window: Duration) -> Shared {
        let Some((id, mut connection)) = self.connection() else {
            return Shared::Unknown;
        };
        let full_key = format!("{}rl:{key}", self.inner.prefix);
        let mut invocation = self.inner.script.key(full_key);
        invocation.arg(n).arg(window.as_millis() as u64);
        let call = invocation.invoke_async::<(i64, i64)>(&mut connection);
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok((count, ttl_ms))) if count > i64::from(limit) => {
                Shared::Limited((ttl_ms.max(1000) as u64).div_ceil(1000))
            }
            Ok(Ok(_)) => Shared::Allowed,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis rate limit failed; using the local limit");
                self.forget(id);
                Shared::Unknown
            }
            Err(_) => {
                tracing::debug!("redis did not answer in time; using the local limit");
                self.forget(id);
                Shared::Unknown
            }
        }
    }
}

/// Connects whenever there is no connection, with backoff, until shutdown.
async fn keep_connected(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut backoff = RETRY_MIN;
    let mut failing = false;
    loop {
        while inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = inner.lost.notified() => {}
            }
        }
        let connect = inner
            .client
            .get_multiplexed_async_connection_with_config(&inner.config);
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return,
            attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect) => attempt,
        };
        let error = match attempt {
            Ok(Ok(connection)) => {
                let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
                *inner.current.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(Connected { id, connection });
                crate::metrics::redis_up(true);
                tracing::info!("redis connected");
                backoff = RETRY_MIN;
                failing = false;
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {CONNECT_TIMEOUT:?}"),
        };
        if failing {
            tracing::debug!(error = %error, "redis still unreachable");
        } else {
            tracing::warn!(error = %error, "redis unreachable; rate limits fall back to this node's own until it is back");
            failing = true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}
