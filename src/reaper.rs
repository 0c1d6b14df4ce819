//! The background reaper: one task per manager on the shared runtime that closes connections
//! idle past their limit promptly, without waiting for a request. It sleeps until the earliest
//! expiry; a release that expires earlier than planned wakes it (rare on the hot path, since
//! reuse pushes expiries later).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Longest sleep between passes, so settings changes are noticed even without a wake-up.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);

pub struct Reaper {
    base: Instant,
    /// Planned wake-up, in microseconds since `base`.
    next_wake: AtomicU64,
    pub notify: Notify,
}

impl Default for Reaper {
    fn default() -> Self {
        Reaper {
            base: Instant::now(),
            next_wake: AtomicU64::new(u64::MAX),
            notify: Notify::new(),
        }
    }
}

impl Reaper {
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_micros() as u64
    }

    /// Makes sure the reaper runs by `at`.
    pub fn schedule(&self, at: Instant) {
        let t = self.micros(at);
        if self.next_wake.fetch_min(t, Ordering::AcqRel) > t {
            self.notify.notify_one();
        }
    }

    /// Records the reaper's next planned pass.
    pub fn planned(&self, at: Instant) {
        self.next_wake.store(self.micros(at), Ordering::Release);
    }
}
