//! The coordination crate's one error type. Redis being unreachable, slow
//! or refusing is retryable: the shell tries again at its next tick, and
//! owners keep serving what they hold meanwhile.

#[derive(Debug, Clone, thiserror::Error)]
pub enum CoordError {
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("redis: {0}")]
    Redis(String),
}

impl CoordError {
    /// Every coordination failure is worth retrying at the next tick.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

impl From<redis::RedisError> for CoordError {
    fn from(e: redis::RedisError) -> Self {
        CoordError::Redis(e.to_string())
    }
}
