//! Per-service-point observations: cumulative counters, histograms (time in the queue,
//! connection lifetimes), and the log messages that explain each decision. Every connection
//! event goes through one method here, so counters, histograms and log always agree. Gauges
//! (open, idle, busy, waiting) are read from the pools when a snapshot is taken.

use crate::connection::{CLOSE_REASONS, CloseReason, Connection};
use crate::log::{Level, Log, QUEUE_WAIT_THRESHOLD};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the histogram buckets, in microseconds; the last bucket has no bound.
pub const BUCKET_BOUNDS_US: [u64; BUCKETS - 1] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
];
pub const BUCKETS: usize = 20;

/// A histogram of durations with fixed buckets (`BUCKET_BOUNDS_US`), updated with atomics.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

/// A copy of a histogram: observation count, their sum, and the count per bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub count: u64,
    pub sum_us: u64,
    pub buckets: [u64; BUCKETS],
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = BUCKET_BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: [u64; BUCKETS] = std::array::from_fn(|i| self.buckets[i].load(Relaxed));
        HistogramSnapshot {
            count: buckets.iter().sum(),
            sum_us: self.sum_us.load(Relaxed),
            buckets,
        }
    }
}

impl HistogramSnapshot {
    /// Adds another histogram's observations (for manager-wide figures).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub connections_opened: AtomicU64,
    pub requests: AtomicU64,
    pub reuses: AtomicU64,
    pub retries: AtomicU64,
    pub tls_full_handshakes: AtomicU64,
    pub tls_resumed_handshakes: AtomicU64,
    pub pipelined: AtomicU64,
    pub replays: AtomicU64,
    closes: [AtomicU64; CLOSE_REASONS],
    /// Time requests spent waiting for a connection (every request, 0 included).
    pub queue_wait: Histogram,
    /// How long connections lived, from connect to close.
    pub connection_lifetime: Histogram,
    /// The manager's log, and the origin messages name.
    log: Arc<Log>,
    origin: String,
}

/// Why a connection was closed, in words.
pub fn reason_text(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Lease => "its lease timeout (connection age) ran out",
        CloseReason::Idle => "it was idle for its limit",
        CloseReason::KeepAliveOff => "keep-alive was off",
        CloseReason::ServerClose => {
            "the server ends it (Connection: close, HTTP/1.0 or a close-delimited body)"
        }
        CloseReason::Stale => "it was found closed or reset by the server before reuse",
        CloseReason::Error => "of an error",
        CloseReason::MaxRequests => "it served its maximum number of requests",
        CloseReason::GroupClosed => "its connection group was closed",
        CloseReason::ManagerClosed => "its manager was freed",
        CloseReason::Abandoned => "its response was freed with much of the body unread",
        CloseReason::InFlight => "the server closed it as a request arrived",
        CloseReason::AddressGone => "its address left the host's DNS answer",
    }
}

impl Stats {
    pub fn new(log: Arc<Log>, origin: String) -> Self {
        Stats {
            log,
            origin,
            ..Stats::default()
        }
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn closes(&self, reason: CloseReason) -> u64 {
        self.closes[reason as usize].load(Relaxed)
    }

    /// A connection was opened.
    pub fn opened(&self, conn: &Connection) {
        Stats::bump(&self.connections_opened);
        if conn.is_tls() {
            Stats::bump(if conn.resumed {
                &self.tls_resumed_handshakes
            } else {
                &self.tls_full_handshakes
            });
        }
        let tls = match (conn.is_tls(), conn.resumed) {
            (false, _) => "",
            (true, false) => ", TLS full handshake",
            (true, true) => ", TLS resumed session",
        };
        self.log.emit(
            Level::Info,
            format_args!(
                "connection {} opened to {} ({}) from local port {}{tls}",
                conn.id, self.origin, conn.peer, conn.local_port
            ),
        );
    }

    /// An idle connection serves another request.
    pub fn reused(&self, conn: &Connection) {
        Stats::bump(&self.reuses);
        self.log.emit(
            Level::Debug,
            format_args!(
                "connection {} to {} reused for request {}",
                conn.id,
                self.origin,
                conn.requests + 1
            ),
        );
    }

    /// A connection was closed for `reason`.
    pub fn closed(&self, conn: &Connection, reason: CloseReason) {
        self.closes[reason as usize].fetch_add(1, Relaxed);
        let lived = conn.created.elapsed();
        self.connection_lifetime.record(lived);
        let level = match reason {
            CloseReason::Error | CloseReason::InFlight | CloseReason::Abandoned => Level::Info,
            _ => Level::Debug,
        };
        self.log.emit(
            level,
            format_args!(
                "connection {} to {} closed after {} request(s) and {} ms because {}",
                conn.id,
                self.origin,
                conn.requests,
                lived.as_millis(),
                reason_text(reason)
            ),
        );
    }

    /// A request is sent again on a new connection.
    pub fn retried(&self, method: &str, cause: &str) {
        Stats::bump(&self.retries);
        self.log.emit(
            Level::Warn,
            format_args!(
                "{method} {} retried on a new connection: {cause}",
                self.origin
            ),
        );
    }

    /// `n` queued requests were written behind others on connection `conn`.
    pub fn pipelined(&self, conn: &Connection, n: usize, in_flight: usize) {
        self.pipelined.fetch_add(n as u64, Relaxed);
        self.log.emit(
            Level::Debug,
            format_args!(
                "connection {} to {}: {n} request(s) pipelined, {in_flight} in flight",
                conn.id, self.origin
            ),
        );
    }

    /// A pipelined request is sent again: its connection ended before its response.
    pub fn replayed(&self, method: &str) {
        Stats::bump(&self.replays);
        self.log.emit(
            Level::Info,
            format_args!(
                "{method} {} replayed on another connection: its pipelined connection ended before its response",
                self.origin
            ),
        );
    }

    /// The server showed that it does not pipeline; `why` says how.
    pub fn pipelining_refused(&self, why: &str) {
        self.log.emit(
            Level::Warn,
            format_args!(
                "{} is no longer sent pipelined requests: {why}",
                self.origin
            ),
        );
    }

    /// A request waited `waited` for a connection.
    pub fn queued(&self, waited: Duration, busy_limit: usize) {
        self.queue_wait.record(waited);
        if waited >= QUEUE_WAIT_THRESHOLD {
            self.log.emit(
                Level::Info,
                format_args!(
                    "a request to {} waited {} ms for a connection (limit {busy_limit})",
                    self.origin,
                    waited.as_millis()
                ),
            );
        }
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
    pub closed_address_gone: u64,
    pub pipelined: u64,
    pub pipeline_replays: u64,
}

impl Snapshot {
    /// Adds another point's figures (for manager-wide totals).
    pub fn add(&mut self, o: &Snapshot) {
        let fields: [(&mut u64, u64); 23] = [
            (&mut self.open, o.open),
            (&mut self.idle, o.idle),
            (&mut self.busy, o.busy),
            (&mut self.waiting, o.waiting),
            (&mut self.connections_opened, o.connections_opened),
            (&mut self.requests, o.requests),
            (&mut self.reuses, o.reuses),
            (&mut self.retries, o.retries),
            (&mut self.closed_lease, o.closed_lease),
            (&mut self.closed_idle, o.closed_idle),
            (&mut self.closed_keep_alive_off, o.closed_keep_alive_off),
            (&mut self.closed_server, o.closed_server),
            (&mut self.closed_stale, o.closed_stale),
            (&mut self.closed_in_flight, o.closed_in_flight),
            (&mut self.closed_error, o.closed_error),
            (&mut self.closed_max_requests, o.closed_max_requests),
            (&mut self.closed_group, o.closed_group),
            (&mut self.closed_abandoned, o.closed_abandoned),
            (&mut self.tls_full_handshakes, o.tls_full_handshakes),
            (&mut self.tls_resumed_handshakes, o.tls_resumed_handshakes),
            (&mut self.closed_address_gone, o.closed_address_gone),
            (&mut self.pipelined, o.pipelined),
            (&mut self.pipeline_replays, o.pipeline_replays),
        ];
        for (a, b) in fields {
            *a = a.saturating_add(b);
        }
    }
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
            closed_address_gone: self.closes(CloseReason::AddressGone),
            pipelined: self.pipelined.load(Relaxed),
            pipeline_replays: self.replays.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::default();
        for us in [0u64, 100, 101, 999_999, 1_000_000, u64::MAX] {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 6);
        assert_eq!((s.buckets[0], s.buckets[1]), (2, 1), "≤100 µs, ≤250 µs");
        assert_eq!(s.buckets[12], 2, "≤1 s");
        assert_eq!(s.buckets[BUCKETS - 1], 1, "the last bucket is unbounded");
        let mut m = s;
        m.merge(&s);
        assert_eq!(m.count, 12);
    }
}
