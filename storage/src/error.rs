//! The storage crate's one error type. [`StorageError::is_retryable`] tells
//! a transient outage (retry later, answer 503) from a permanent refusal.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The backend cannot be reached or did not answer in time.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Another writer claimed the zone with a newer epoch.
    #[error("zone {zone} is owned by a newer writer (epoch {current}, ours {ours})")]
    Fenced {
        zone: String,
        current: u64,
        ours: u64,
    },
    /// An earlier commit of this zone failed; its owner must recover first.
    #[error("zone {0} must recover after a failed commit")]
    Poisoned(String),
    /// Stored bytes or schema are not what this version understands.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// The backend refused this client: its login failed or TLS could not
    /// be established (the message names which, never a secret). Permanent
    /// until the configuration or the cluster's certificates change.
    #[error("storage refused the connection: {0}")]
    Refused(String),
    /// The committer is shutting down.
    #[error("storage is shutting down")]
    Closed,
}

impl StorageError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Unavailable(_) | StorageError::Poisoned(_) | StorageError::Closed
        )
    }
}
