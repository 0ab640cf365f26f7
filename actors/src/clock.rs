//! The node's clock. Wall-clock milliseconds derived from tokio's monotonic
//! clock, so that tests can pause and advance time (`tokio::time::pause`)
//! and hold expiry runs on virtual time.

use std::time::{SystemTime, UNIX_EPOCH};

use parkme_engine::Millis;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_start: i64,
    start: Instant,
}

impl Clock {
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        Self {
            wall_at_start: wall,
            start: Instant::now(),
        }
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
