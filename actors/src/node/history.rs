//! The node's occupancy history (contract §3.1): a sampler that stores
//! every served facility's counts each `history_every` (kept
//! `history_days`, older samples purged hourly), and the read of a range
//! of samples.
//!
//! This module must never decide what a point of an answer holds: that is
//! [`crate::history`]'s pure code.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parkme_engine::{FacilityId, Millis};
use parkme_storage::HistorySample;
use tokio_util::sync::CancellationToken;

use super::{FacilityMsg, Inner, Node, ask};
use crate::error::ActorError;
use crate::history::Sample;

const DAY_MS: i64 = 86_400_000;
/// How often samples past their retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

impl Node {
    /// The stored samples of facility `id` taken in `[from, to]` (clamped
    /// to what the retention keeps), oldest first.
    pub async fn history_samples(
        &self,
        id: &FacilityId,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(Millis, Vec<u8>)>, ActorError> {
        self.handle(id)?;
        let oldest = Millis(
            self.inner
                .clock
                .now()
                .0
                .saturating_sub(i64::from(self.inner.config.history_days) * DAY_MS),
        );
        let from = from.max(oldest);
        Ok(self.storage().history(id, from, to).await?)
    }

    /// Stores samples `(facility, at, sample)` taken earlier (history
    /// imported from elsewhere, or the demo's synthetic day), in one write.
    pub async fn record_history(
        &self,
        samples: Vec<(FacilityId, Millis, Sample)>,
    ) -> Result<(), ActorError> {
        let days = i64::from(self.inner.config.history_days);
        let samples = samples
            .into_iter()
            .map(|(facility, at, sample)| HistorySample {
                facility,
                at,
                bytes: sample.encode(),
                keep_until: Millis(at.0.saturating_add(days * DAY_MS)),
            })
            .collect();
        Ok(self.storage().put_history(samples).await?)
    }

    /// How often facilities are sampled.
    pub fn history_every(&self) -> Duration {
        self.inner.config.history_every
    }

    /// Stores one sample of every facility this node serves, taken now.
    async fn sample_all(&self) {
        let now = self.inner.clock.now();
        let keep_until = Millis(
            now.0
                .saturating_add(i64::from(self.inner.config.history_days) * DAY_MS),
        );
        let handles: Vec<_> = self
            .inner
            .facilities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, h)| (id.clone(), Arc::clone(h)))
            .collect();
        let mut samples = Vec::with_capacity(handles.len());
        for (id, handle) in handles {
            let Ok(view) = ask(&handle.actor, FacilityMsg::View).await else {
                continue;
            };
            samples.push(HistorySample {
                facility: id,
                at: now,
                bytes: Sample::of(&view).encode(),
                keep_until,
            });
        }
        if samples.is_empty() {
            return;
        }
        let count = samples.len();
        if let Err(e) = self.storage().put_history(samples).await {
            tracing::warn!(facilities = count, error = %e, "could not store history samples");
        }
    }
}

/// Samples every `every` until `stopping` (holding the node weakly, so
/// it never keeps a stopped node alive).
pub(super) async fn sampler(node: Weak<Inner>, every: Duration, stopping: CancellationToken) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut purged_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stopping.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(inner) = node.upgrade() else { return };
        let node = Node { inner };
        node.sample_all().await;
        if purged_at.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
            purged_at = Some(tokio::time::Instant::now());
            let days = i64::from(node.inner.config.history_days);
            let before = Millis(node.inner.clock.now().0.saturating_sub(days * DAY_MS));
            match node.storage().purge_history(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(samples = n, "forgot history past its retention"),
                Err(e) => tracing::warn!(error = %e, "history purge failed; will retry"),
            }
        }
    }
}
