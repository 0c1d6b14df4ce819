//! The background reaper: one task per manager on the shared runtime that closes connections
//! idle past their limit promptly, without waiting for a request. It sleeps until the earliest
//! expiry; a release that expires earlier than planned wakes it (rare on the hot path, since
//! reuse pushes expiries later).
//!
//! A pass that panics (a bug) is caught and the loop goes on, so one bad connection cannot
//! stop idle reaping for the whole manager. In a forked child, the task is started again on
//! the child's runtime with a fresh wake-up signal.

use crate::fork::{self, Lock};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Longest sleep between passes, so settings changes are noticed even without a wake-up.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Sentinel: the task was never started.
const NOT_STARTED: u64 = u64::MAX;

pub struct Reaper {
    base: Instant,
    /// Planned wake-up, in microseconds since `base`.
    next_wake: AtomicU64,
    /// The fork generation the task runs in.
    running_in: AtomicU64,
    /// The signal that wakes the task, made anew in a forked child (the parent's may hold a
    /// waiter of a task that no longer runs).
    notify: Lock<(u64, Arc<Notify>)>,
}

impl Default for Reaper {
    fn default() -> Self {
        Reaper {
            base: Instant::now(),
            next_wake: AtomicU64::new(u64::MAX),
            running_in: AtomicU64::new(NOT_STARTED),
            notify: Lock::new((fork::generation(), Arc::new(Notify::new()))),
        }
    }
}

impl Reaper {
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base)
            .as_micros()
            .min(u64::MAX as u128) as u64
    }

    fn notifier(&self) -> Arc<Notify> {
        let mut n = self.notify.lock();
        let now = fork::generation();
        if n.0 != now {
            *n = (now, Arc::new(Notify::new()));
        }
        Arc::clone(&n.1)
    }

    /// Makes sure the reaper runs by `at`.
    pub fn schedule(&self, at: Instant) {
        let t = self.micros(at);
        // A plain load first: releases usually push expiries later, and a read-modify-write on
        // this manager-wide word from every thread would make it a point of contention.
        if self.next_wake.load(Ordering::Acquire) <= t {
            return;
        }
        if self.next_wake.fetch_min(t, Ordering::AcqRel) > t {
            self.wake();
        }
    }

    /// Wakes the task now.
    pub fn wake(&self) {
        self.notifier().notify_one();
    }

    /// Starts the task (once per process generation) with `pass`, which reaps and returns the
    /// next expiry, or `None` to stop (the manager is gone).
    pub fn ensure_running(
        self: &Arc<Self>,
        pass: impl FnMut() -> Option<Option<Instant>> + Send + 'static,
    ) {
        let now = fork::generation();
        let seen = self.running_in.load(Ordering::Acquire);
        if seen == now
            || self
                .running_in
                .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        crate::runtime::handle().spawn(run(Arc::clone(self), pass));
    }
}

/// The task: a pass, then sleep until the earliest expiry (at most `MAX_SLEEP`) or a wake-up.
async fn run(reaper: Arc<Reaper>, mut pass: impl FnMut() -> Option<Option<Instant>> + Send) {
    let notify = reaper.notifier();
    loop {
        let next = match catch_unwind(AssertUnwindSafe(&mut pass)) {
            Ok(None) => return,
            Ok(Some(next)) => next,
            // A bug in a pass: keep reaping (the next pass starts from the pools' state).
            Err(_) => None,
        };
        let cap = Instant::now() + MAX_SLEEP;
        let wake = next.map_or(cap, |n| n.min(cap));
        reaper
            .next_wake
            .store(reaper.micros(wake), Ordering::Release);
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = notify.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_panicking_pass_does_not_stop_the_reaper() {
        let reaper = Arc::new(Reaper::default());
        let (tx, rx) = mpsc::channel();
        let mut calls = 0;
        reaper.ensure_running(move || {
            calls += 1;
            let _ = tx.send(calls);
            if calls == 1 {
                panic!("a bug in the first pass");
            }
            if calls == 3 {
                return None;
            }
            Some(Some(Instant::now()))
        });
        let limit = Duration::from_secs(5);
        assert_eq!(rx.recv_timeout(limit), Ok(1));
        reaper.wake();
        assert_eq!(rx.recv_timeout(limit), Ok(2), "the loop survived the panic");
        assert_eq!(rx.recv_timeout(limit), Ok(3));
    }

    #[test]
    fn far_future_expiries_saturate() {
        let reaper = Reaper::default();
        let far = Instant::now()
            .checked_add(Duration::from_secs(u32::MAX as u64 * 1000))
            .unwrap_or_else(Instant::now);
        reaper.schedule(far);
        reaper.schedule(Instant::now());
    }
}
