//! The backup crate's one error type. A refused file ([`BackupError::Refused`])
//! or a non-empty target ([`BackupError::NotEmpty`]) is permanent;
//! storage and I/O failures may pass ([`BackupError::is_retryable`]).

use std::path::PathBuf;

use parkme_actors::ActorError;
use parkme_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file is not a whole, unaltered backup this version can read.
    #[error("{path}: refused: {reason}; nothing was written")]
    Refused { path: PathBuf, reason: String },
    /// A backup stream (file body or server response) is not well formed.
    #[error("backup stream at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    /// The target store holds data and `--force` was not given.
    #[error(
        "the target storage is not empty ({0}); restore only into an empty store, \
         or pass --force to wipe it first"
    )]
    NotEmpty(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Actor(#[from] ActorError),
    /// The store changed in a way the backup cannot follow (a layout
    /// replaced again and again while it was being read).
    #[error("{0}")]
    Unsettled(String),
}

impl BackupError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BackupError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            BackupError::Storage(e) => e.is_retryable(),
            BackupError::Actor(e) => e.is_retryable(),
            BackupError::Io { .. } | BackupError::Unsettled(_) => true,
            _ => false,
        }
    }
}
