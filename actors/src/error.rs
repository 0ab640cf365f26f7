//! The actors crate's one error type: what a caller of [`crate::Node`] can
//! be told. `is_retryable` separates "try again" (storage down, zone
//! restarting) from permanent refusals.

use parkme_engine::EngineError;
use parkme_storage::StorageError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ActorError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("facility {0} does not exist")]
    UnknownFacility(String),
    #[error("zone {0} does not exist in this facility")]
    UnknownZone(String),
    #[error("the {0} is restarting; retry shortly")]
    Unavailable(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl ActorError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ActorError::Storage(e) => e.is_retryable(),
            ActorError::Unavailable(_) => true,
            _ => false,
        }
    }
}
