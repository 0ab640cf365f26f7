//! The node's clock. Wall-clock milliseconds derived from tokio's monotonic
//! clock, so that tests can pause and advance time (`tokio::time::pause`)
//! and hold expiry runs on virtual time.
//!
//! It reads the system clock once, at start, and from then on only
//! counts monotonic time: a step of the system clock (an operator's
//! `date -s`, an NTP step, a VM restored from a snapshot) changes no hold,
//! stay or expiry of a running node; the node takes the new time at its
//! next restart. [`Clock::offset`] says how far the system clock has moved
//! away since start (the node logs and exports it). This module must
//! never let the node's time go backwards.

use parkme_engine::Millis;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start: i64,
    start: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            wall_at_start: Millis::system_now().0,
            start: Instant::now(),
        }
    }

    /// The system clock minus the node's clock, in milliseconds: zero but
    /// for drift until the system clock is stepped, then the step.
    pub fn offset(&self) -> i64 {
        Millis::system_now().0.saturating_sub(self.now().0)
    }

    pub fn now(&self) -> Millis {
        Millis(self.wall_at_start + self.start.elapsed().as_millis() as i64)
    }

    /// How long from now until `at` (zero if past).
    pub fn until(&self, at: Millis) -> std::time::Duration {
        let ms = at.0.saturating_sub(self.now().0).max(0) as u64;
        std::time::Duration::from_millis(ms)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
