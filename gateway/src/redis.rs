//! Redis coordination for deployments of more than one node: shared rate
//! limits (a fixed window per key, counted atomically by a Lua script so
//! every node sees the same count) and the Redis check of `/health/`.
//!
//! Redis being down never stops the engine: `/health/` reports it, and the
//! limits fall back to each node's own limiter until it is back. Every key
//! starts with the configured prefix, so tests and tenants can share a
//! server.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

const WINDOW_SCRIPT: &str = r"
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local ttl = redis.call('PTTL', KEYS[1])
return {n, ttl}
";

const TIMEOUT: Duration = Duration::from_millis(500);

/// A lazily (re)connected Redis client.
pub struct Redis {
    client: redis::Client,
    prefix: String,
    connection: Mutex<Option<MultiplexedConnection>>,
    script: redis::Script,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
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

impl Redis {
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix: prefix.to_owned(),
            connection: Mutex::new(None),
            script: redis::Script::new(WINDOW_SCRIPT),
        })
    }

    async fn connection(&self) -> Option<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if slot.is_none() {
            let connect = self.client.get_multiplexed_async_connection();
            *slot = tokio::time::timeout(TIMEOUT, connect).await.ok()?.ok();
        }
        slot.clone()
    }

    async fn forget_connection(&self) {
        *self.connection.lock().await = None;
    }

    /// Whether Redis answers PING.
    pub async fn ping(&self) -> bool {
        let Some(mut conn) = self.connection().await else {
            return false;
        };
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut conn);
        let ok = matches!(tokio::time::timeout(TIMEOUT, ping).await, Ok(Ok(_)));
        if !ok {
            self.forget_connection().await;
        }
        ok
    }

    /// Counts `n` units against `key`'s window of `window`, allowing `limit`.
    pub async fn count(&self, key: &str, n: u32, limit: u32, window: Duration) -> Shared {
        let Some(mut conn) = self.connection().await else {
            return Shared::Unknown;
        };
        let full_key = format!("{}rl:{key}", self.prefix);
        let mut invocation = self.script.key(full_key);
        invocation.arg(n).arg(window.as_millis() as u64);
        let call = invocation.invoke_async::<(i64, i64)>(&mut conn);
        match tokio::time::timeout(TIMEOUT, call).await {
            Ok(Ok((count, ttl_ms))) if count > i64::from(limit) => {
                Shared::Limited((ttl_ms.max(1000) as u64).div_ceil(1000))
            }
            Ok(Ok(_)) => Shared::Allowed,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis rate limit failed; using the local limit");
                self.forget_connection().await;
                Shared::Unknown
            }
            Err(_) => {
                self.forget_connection().await;
                Shared::Unknown
            }
        }
    }
}
