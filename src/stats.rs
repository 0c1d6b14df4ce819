//! Per-service-point counters. Gauges (open, idle, busy, waiting) are read from the pools
//! when a snapshot is taken; these are the cumulative counts.

use crate::connection::{CLOSE_REASONS, CloseReason};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct Stats {
    pub connections_opened: AtomicU64,
    pub requests: AtomicU64,
    pub reuses: AtomicU64,
    pub retries: AtomicU64,
    pub tls_full_handshakes: AtomicU64,
    pub tls_resumed_handshakes: AtomicU64,
    closes: [AtomicU64; CLOSE_REASONS],
}

impl Stats {
    pub fn closed(&self, reason: CloseReason) {
        self.closes[reason as usize].fetch_add(1, Relaxed);
    }

    pub fn closes(&self, reason: CloseReason) -> u64 {
        self.closes[reason as usize].load(Relaxed)
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// A consistent-enough copy of a service point's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub open: u64,
    pub idle: u64,
    pub busy: u64,
    pub waiting: u64,
    pub connections_opened: u64,
    pub requests: u64,
    pub reuses: u64,
    pub retries: u64,
    pub closed_lease: u64,
    pub closed_idle: u64,
    pub closed_keep_alive_off: u64,
    pub closed_server: u64,
    pub closed_stale: u64,
    pub closed_in_flight: u64,
    pub closed_error: u64,
    pub closed_max_requests: u64,
    pub closed_group: u64,
    pub closed_abandoned: u64,
    pub tls_full_handshakes: u64,
    pub tls_resumed_handshakes: u64,
}

impl Stats {
    /// Fills the cumulative fields of a snapshot.
    pub fn snapshot(&self, open: u64, idle: u64, waiting: u64) -> Snapshot {
        Snapshot {
            open,
            idle,
            busy: open.saturating_sub(idle),
            waiting,
            connections_opened: self.connections_opened.load(Relaxed),
            requests: self.requests.load(Relaxed),
            reuses: self.reuses.load(Relaxed),
            retries: self.retries.load(Relaxed),
            closed_lease: self.closes(CloseReason::Lease),
            closed_idle: self.closes(CloseReason::Idle),
            closed_keep_alive_off: self.closes(CloseReason::KeepAliveOff),
            closed_server: self.closes(CloseReason::ServerClose),
            closed_stale: self.closes(CloseReason::Stale),
            closed_in_flight: self.closes(CloseReason::InFlight),
            closed_error: self.closes(CloseReason::Error),
            closed_max_requests: self.closes(CloseReason::MaxRequests),
            closed_group: self.closes(CloseReason::GroupClosed)
                + self.closes(CloseReason::ManagerClosed),
            closed_abandoned: self.closes(CloseReason::Abandoned),
            tls_full_handshakes: self.tls_full_handshakes.load(Relaxed),
            tls_resumed_handshakes: self.tls_resumed_handshakes.load(Relaxed),
        }
    }
}
