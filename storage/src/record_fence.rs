//! Facility record fences for the in-process backends (embedded, memory):
//! the newest fence handed out per facility, and the check a fenced record
//! write makes against it. Only this process writes such a store (the
//! embedded one refuses a second open of its directory), so the fences
//! live in memory; a restart starts them afresh, as every writer of the
//! old process is gone with it.
//!
//! This module must never write a record itself: the backend writes it
//! while it holds the fences, so no claim falls between check and write.

use std::collections::HashMap;

use parkme_engine::FacilityId;

use crate::error::StorageError;
use crate::model::Epoch;

#[derive(Debug, Default)]
pub struct RecordFences(HashMap<FacilityId, u64>);

impl RecordFences {
    /// A new fence for `id`, greater than every one before.
    pub fn claim(&mut self, id: &FacilityId) -> Epoch {
        let next = self.0.entry(id.clone()).or_default();
        *next += 1;
        Epoch(*next)
    }

    /// Whether a write under `fence` may land now (`None`: unconditional).
    pub fn admit(&self, id: &FacilityId, fence: Option<Epoch>) -> Result<(), StorageError> {
        let Some(ours) = fence else {
            return Ok(());
        };
        let current = self.0.get(id).copied().unwrap_or(0);
        if ours.0 != current {
            return Err(StorageError::Fenced {
                zone: format!("facility record {id}"),
                current,
                ours: ours.0,
            });
        }
        Ok(())
    }
}
