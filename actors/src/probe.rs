//! The steps of a layout change, and (feature `testing` only) a probe that
//! lets a test stop a change at any step: let it go on, make it fail
//! there, or leave it waiting while the test crashes the node.
//!
//! This module must never change what a layout change does when no probe
//! is installed; the binary never enables `testing`.

use parkme_engine::ZoneId;

/// Where a layout change stands (see [`crate::facility`] for the protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayoutStep {
    /// Every zone the change touches checked it and holds its commands;
    /// new zones are not started yet.
    Prepared,
    /// New zones are started (not yet routed); the new facility record,
    /// the commit point, is about to be written.
    Committing,
    /// The new record is durable: the change will complete, now or after
    /// a restart.
    Committed,
    /// About to tell this zone to adopt its new layout.
    ZoneCommit(ZoneId),
    /// The facility serves the new layout; removed zones are about to be
    /// stopped and their storage dropped.
    Applied,
}

/// What a probed layout change does at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAction {
    /// Go on.
    Continue,
    /// Fail here as storage would. Up to `Committing` the change is
    /// abandoned; at `Committed` the record write counts as failed although
    /// it landed (the ambiguous outcome); at `ZoneCommit` the zone panics
    /// instead of adopting its layout. Elsewhere it is ignored.
    Fail,
}

#[cfg(feature = "testing")]
pub use hook::{Probe, RelayoutProbe};

#[cfg(feature = "testing")]
mod hook {
    use std::sync::{Arc, Mutex};

    use tokio::sync::{mpsc, oneshot};

    use super::{RelayoutStep, StepAction};

    type Stop = (RelayoutStep, oneshot::Sender<StepAction>);

    /// The node's end of the probe, shared by its facilities.
    #[derive(Debug, Clone, Default)]
    pub struct Probe(Arc<Mutex<Option<mpsc::UnboundedSender<Stop>>>>);

    impl Probe {
        /// Installs a new probe (replacing any earlier one).
        pub fn install(&self) -> RelayoutProbe {
            let (tx, rx) = mpsc::unbounded_channel();
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
            RelayoutProbe { rx }
        }

        /// Reports a step and waits for the test's answer; without a probe
        /// (or once the test dropped its end) the change goes on.
        pub async fn at(&self, step: RelayoutStep) -> StepAction {
            let tx = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let Some(tx) = tx else {
                return StepAction::Continue;
            };
            let (answer, rx) = oneshot::channel();
            if tx.send((step, answer)).is_err() {
                return StepAction::Continue;
            }
            rx.await.unwrap_or(StepAction::Continue)
        }
    }

    /// The test's end: each step a layout change reaches, with the answer
    /// it waits for. Dropping an answer lets the change go on; keeping it
    /// unanswered leaves the change waiting there.
    #[derive(Debug)]
    pub struct RelayoutProbe {
        rx: mpsc::UnboundedReceiver<Stop>,
    }

    impl RelayoutProbe {
        pub async fn next(&mut self) -> Option<(RelayoutStep, oneshot::Sender<StepAction>)> {
            self.rx.recv().await
        }
    }
}
