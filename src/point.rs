//! One service point: an origin's settings, its connection groups and its statistics.

use crate::connection::CloseReason;
use crate::connection::{SocketOptions, TcpKeepAlive};
use crate::error::{Error, ErrorKind, Result};
use crate::expect::ExpectContinue;
use crate::fork::Lock;
use crate::log::Log;
use crate::origin::Origin;
use crate::pool::Pool;
use crate::proxy::Route;
use crate::reaper::Reaper;
use crate::resolve::{AddressCache, Resolution};
use crate::reuse;
use crate::server_facts::ServerFacts;
use crate::stats::{Snapshot, Stats};
use crate::tls::Tls;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The settings a service point takes from its manager when it is created.
#[derive(Clone, Copy, Debug)]
pub struct PointDefaults {
    pub connection_limit: i32,
    pub max_idle_ms: i32,
    /// The manager's UseNagleAlgorithm and SetTcpKeepAlive.
    pub nagle: bool,
    /// The manager's Expect100Continue.
    pub expect_continue: bool,
    pub tcp_keep_alive: Option<TcpKeepAlive>,
}

pub struct ServicePoint {
    /// The origin it serves; for plain http through a proxy, the proxy's (the point is the
    /// proxy's, as .NET's `FindServicePoint(uri, proxy)`).
    pub origin: Origin,
    /// Direct, forwarding through a proxy, or tunnelling through one.
    pub route: Route,
    /// Where its connections go: the origin, or the proxy of a tunnel.
    dial: Origin,
    address: String,
    /// The `Host` header value, computed once (not per request).
    host_header: String,
    connection_limit: AtomicI32,
    lease_timeout_ms: AtomicI32,
    max_idle_ms: AtomicI32,
    max_requests_per_connection: AtomicI32,
    /// Pipelining (off by default) and its depth per connection.
    pipelining: AtomicBool,
    pipeline_depth: AtomicI32,
    /// Socket settings for new connections (read once per connect).
    socket_options: Lock<SocketOptions>,
    default_group: Arc<Pool>,
    groups: Lock<HashMap<String, Arc<Pool>>>,
    pub stats: Arc<Stats>,
    /// What responses and handshakes told about the server (ProtocolVersion,
    /// SupportsPipelining, Certificate).
    pub server: ServerFacts,
    /// Expect100Continue and what the server taught about it.
    pub expect: ExpectContinue,
    reaper: Arc<Reaper>,
    /// The manager's TLS settings (used by https points).
    pub tls: Arc<Tls>,
    /// The manager's name-resolution settings, shared by its points.
    resolution: Arc<Resolution>,
    /// Counts new connections, for DNS round robin.
    connect_turn: AtomicU64,
    addresses: AddressCache,
    closed: AtomicBool,
    /// Unix time (ms) when the point was created or last finished a request.
    idle_since_unix_ms: AtomicU64,
    /// Same moment on the monotonic clock, in ms since `created`.
    last_activity_ms: AtomicU64,
    created: Instant,
}

/// Converts a -1-or-more millisecond setting to an optional duration (-1 is infinite).
pub fn ms_to_duration(ms: i32) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn buffer_size(bytes: i32, what: &str) -> Result<Option<u32>> {
    match bytes {
        -1 => Ok(None),
        n if n >= 0 => Ok(Some(n as u32)),
        n => Err(out_of_range(what, n, "must be >= -1")),
    }
}

/// Validates SetTcpKeepAlive's arguments as .NET does (time and interval > 0 when enabled).
pub fn tcp_keep_alive(
    enabled: bool,
    time_ms: i32,
    interval_ms: i32,
) -> Result<Option<TcpKeepAlive>> {
    if !enabled {
        return Ok(None);
    }
    if time_ms <= 0 || interval_ms <= 0 {
        return Err(Error::new(
            ErrorKind::OutOfRange,
            format!("TCP keep-alive time {time_ms} ms and interval {interval_ms} ms must be > 0"),
        ));
    }
    Ok(Some(TcpKeepAlive {
        time: Duration::from_millis(time_ms as u64),
        interval: Duration::from_millis(interval_ms as u64),
    }))
}

/// (enabled, time ms, interval ms) of a keep-alive setting.
pub fn keep_alive_parts(k: Option<TcpKeepAlive>) -> (bool, i32, i32) {
    match k {
        None => (false, 0, 0),
        Some(k) => (
            true,
            k.time.as_millis().min(i32::MAX as u128) as i32,
            k.interval.as_millis().min(i32::MAX as u128) as i32,
        ),
    }
}

fn out_of_range(what: &str, value: i32, rule: &str) -> Error {
    Error::new(
        ErrorKind::OutOfRange,
        format!("{what} {value} is out of range ({rule})"),
    )
}

impl ServicePoint {
    pub fn new(
        origin: Origin,
        route: Route,
        defaults: PointDefaults,
        reaper: Arc<Reaper>,
        tls: Arc<Tls>,
        resolution: Arc<Resolution>,
        log: Arc<Log>,
    ) -> Self {
        let stats = Arc::new(Stats::new(log, origin.to_string()));
        let dial = match &route {
            Route::Tunnel(p) => p.origin.clone(),
            _ => origin.clone(),
        };
        ServicePoint {
            address: origin.to_string(),
            host_header: origin.host_header(),
            origin,
            route,
            dial,
            connection_limit: AtomicI32::new(defaults.connection_limit),
            lease_timeout_ms: AtomicI32::new(-1),
            max_idle_ms: AtomicI32::new(defaults.max_idle_ms),
            max_requests_per_connection: AtomicI32::new(0),
            pipelining: AtomicBool::new(false),
            pipeline_depth: AtomicI32::new(crate::pipeline::DEFAULT_DEPTH),
            socket_options: Lock::new(SocketOptions {
                nagle: defaults.nagle,
                keep_alive: defaults.tcp_keep_alive,
                ..SocketOptions::default()
            }),
            default_group: Arc::new(Pool::new(Arc::clone(&stats), Arc::clone(&reaper))),
            groups: Lock::new(HashMap::new()),
            stats,
            server: ServerFacts::default(),
            expect: ExpectContinue::new(defaults.expect_continue),
            reaper,
            tls,
            resolution,
            connect_turn: AtomicU64::new(0),
            addresses: AddressCache::default(),
            closed: AtomicBool::new(false),
            idle_since_unix_ms: AtomicU64::new(unix_ms()),
            last_activity_ms: AtomicU64::new(0),
            created: Instant::now(),
        }
    }

    /// The `Host` header value: host, and the port unless it is the scheme's default.
    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// Where its connections go (the proxy of a tunnel, else the origin).
    pub fn dial(&self) -> &Origin {
        &self.dial
    }

    /// `scheme://host[:port]`, the default port omitted.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// ConnectionName: the scheme, "http" or "https".
    pub fn connection_name(&self) -> &'static str {
        self.origin.scheme.as_str()
    }

    pub fn connection_limit(&self) -> usize {
        self.connection_limit.load(Relaxed).max(1) as usize
    }

    pub fn set_connection_limit(&self, limit: i32) -> Result<()> {
        if limit <= 0 {
            return Err(out_of_range("connection limit", limit, "must be > 0"));
        }
        self.connection_limit.store(limit, Relaxed);
        for pool in self.pools() {
            pool.limit_changed(limit as usize);
        }
        Ok(())
    }

    pub fn lease_timeout_ms(&self) -> i32 {
        self.lease_timeout_ms.load(Relaxed)
    }

    /// -1: connections live forever; 0: one request per connection; N: a connection older
    /// than N ms is closed after its next request. Applies to existing connections.
    pub fn set_lease_timeout(&self, ms: i32) -> Result<()> {
        if ms < -1 {
            return Err(out_of_range("lease timeout", ms, "must be >= -1"));
        }
        self.lease_timeout_ms.store(ms, Relaxed);
        Ok(())
    }

    pub fn max_idle_ms(&self) -> i32 {
        self.max_idle_ms.load(Relaxed)
    }

    pub fn set_max_idle_time(&self, ms: i32) -> Result<()> {
        if ms < -1 {
            return Err(out_of_range("max idle time", ms, "must be >= -1"));
        }
        self.max_idle_ms.store(ms, Relaxed);
        self.reaper.wake();
        Ok(())
    }

    /// 0 means no cap on the requests one connection serves.
    pub fn max_requests_per_connection(&self) -> i32 {
        self.max_requests_per_connection.load(Relaxed)
    }

    pub fn set_max_requests_per_connection(&self, n: i32) -> Result<()> {
        if n < 0 {
            return Err(out_of_range(
                "max requests per connection",
                n,
                "must be >= 0",
            ));
        }
        self.max_requests_per_connection.store(n, Relaxed);
        Ok(())
    }

    /// Pipelining: requests queued at the connection limit may be written on a busy
    /// connection behind the one being answered (see `pipeline`). Off by default.
    pub fn set_pipelining(&self, on: bool) {
        self.pipelining.store(on, Relaxed);
    }

    pub fn pipelining(&self) -> bool {
        self.pipelining.load(Relaxed)
    }

    /// The server showed that it does not pipeline (`why`): no request is pipelined to it
    /// again, and the first such verdict is counted and logged.
    pub fn refuse_pipelining(&self, why: &str) {
        if self.server.refuse_pipelining() {
            self.stats.pipelining_refused(why);
        }
    }

    /// Most requests in flight on one connection, the one being answered included (1..=64;
    /// 1 pipelines nothing).
    pub fn set_pipeline_depth(&self, depth: i32) -> Result<()> {
        if !(1..=crate::pipeline::MAX_DEPTH).contains(&depth) {
            return Err(out_of_range(
                "pipeline depth",
                depth,
                &format!("must be 1..={}", crate::pipeline::MAX_DEPTH),
            ));
        }
        self.pipeline_depth.store(depth, Relaxed);
        Ok(())
    }

    pub fn pipeline_depth(&self) -> usize {
        self.pipeline_depth.load(Relaxed) as usize
    }

    /// The socket settings new connections get.
    pub fn socket_options(&self) -> SocketOptions {
        self.socket_options.lock().clone()
    }

    /// ReceiveBufferSize: SO_RCVBUF of new connections in bytes, -1 for the system's default.
    pub fn set_receive_buffer_size(&self, bytes: i32) -> Result<()> {
        let v = buffer_size(bytes, "receive buffer size")?;
        self.socket_options.lock().receive_buffer = v;
        Ok(())
    }

    pub fn receive_buffer_size(&self) -> i32 {
        self.socket_options
            .lock()
            .receive_buffer
            .map_or(-1, |n| n as i32)
    }

    /// SO_SNDBUF of new connections in bytes, -1 for the system's default.
    pub fn set_send_buffer_size(&self, bytes: i32) -> Result<()> {
        let v = buffer_size(bytes, "send buffer size")?;
        self.socket_options.lock().send_buffer = v;
        Ok(())
    }

    pub fn send_buffer_size(&self) -> i32 {
        self.socket_options
            .lock()
            .send_buffer
            .map_or(-1, |n| n as i32)
    }

    /// UseNagleAlgorithm for new connections (off by default: TCP_NODELAY).
    pub fn set_use_nagle_algorithm(&self, on: bool) {
        self.socket_options.lock().nagle = on;
    }

    pub fn use_nagle_algorithm(&self) -> bool {
        self.socket_options.lock().nagle
    }

    /// SetTcpKeepAlive(enabled, time, interval) for new connections; time and interval in ms,
    /// both > 0 when enabled (as .NET validates).
    pub fn set_tcp_keep_alive(&self, enabled: bool, time_ms: i32, interval_ms: i32) -> Result<()> {
        let v = tcp_keep_alive(enabled, time_ms, interval_ms)?;
        self.socket_options.lock().keep_alive = v;
        Ok(())
    }

    /// (enabled, time ms, interval ms); 0 and 0 when disabled.
    pub fn tcp_keep_alive(&self) -> (bool, i32, i32) {
        keep_alive_parts(self.socket_options.lock().keep_alive)
    }

    /// The local address (port 0: any) new connections bind before connecting; `None` lets
    /// the system choose (BindIPEndPointDelegate with a fixed answer).
    pub fn set_local_address(&self, local: Option<std::net::SocketAddr>) {
        self.socket_options.lock().bind = local;
    }

    pub fn local_address(&self) -> Option<std::net::SocketAddr> {
        self.socket_options.lock().bind
    }

    /// How long a connect (and TLS handshake) may take, in ms; -1 for the request timeout only.
    pub fn set_connect_timeout(&self, ms: i32) -> Result<()> {
        if ms == 0 || ms < -1 {
            return Err(out_of_range("connect timeout", ms, "must be -1 or > 0"));
        }
        self.socket_options.lock().connect_timeout = ms_to_duration(ms);
        Ok(())
    }

    pub fn connect_timeout_ms(&self) -> i32 {
        self.socket_options
            .lock()
            .connect_timeout
            .map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32)
    }

    /// The settings the reuse rules read, as they are now.
    pub fn reuse_settings(&self) -> reuse::Settings {
        reuse::Settings {
            lease_timeout_ms: self.lease_timeout_ms(),
            max_idle: ms_to_duration(self.max_idle_ms()),
            max_requests_per_connection: self.max_requests_per_connection(),
        }
    }

    /// The pool of a connection group; the empty name is the default group.
    pub fn group(&self, name: &str) -> Arc<Pool> {
        if name.is_empty() {
            return Arc::clone(&self.default_group);
        }
        let mut groups = self.groups.lock();
        Arc::clone(groups.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Pool::new(Arc::clone(&self.stats), Arc::clone(&self.reaper)))
        }))
    }

    fn pools(&self) -> Vec<Arc<Pool>> {
        let groups = self.groups.lock();
        std::iter::once(Arc::clone(&self.default_group))
            .chain(groups.values().cloned())
            .collect()
    }

    /// Closes a group's idle connections now and its busy ones when released; the busy ones
    /// keep their slots until then, so the group's limit still holds. Returns whether the group
    /// existed.
    pub fn close_connection_group(&self, name: &str) -> bool {
        let pool = if name.is_empty() {
            Some(Arc::clone(&self.default_group))
        } else {
            self.groups.lock().get(name).cloned()
        };
        match pool {
            Some(pool) => {
                pool.close_all(CloseReason::GroupClosed, self.connection_limit(), false);
                true
            }
            None => false,
        }
    }

    /// Closes every connection (idle now, busy ones shut down so their requests end at once),
    /// fails waiting requests, and refuses further use.
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
        for pool in self.pools() {
            pool.close_all(CloseReason::ManagerClosed, self.connection_limit(), true);
        }
    }

    /// The addresses connections go to (the origin's, or the proxy's): pinned by the
    /// manager, or cached for its DNS refresh timeout, or looked up.
    pub fn resolve(&self) -> Result<Arc<[std::net::SocketAddr]>> {
        if let Some(addrs) = self.resolution.pinned(&self.dial) {
            return Ok(addrs);
        }
        self.addresses.resolve(
            &self.resolution,
            &self.dial,
            self.resolution.refresh_ms.load(Relaxed),
        )
    }

    /// The addresses a new connection tries, in order (rotated per connection with DNS round
    /// robin on).
    pub fn connect_order(&self, addrs: &[std::net::SocketAddr]) -> Vec<std::net::SocketAddr> {
        let round_robin = self.resolution.round_robin.load(Relaxed);
        let turn = if round_robin {
            self.connect_turn.fetch_add(1, Relaxed) as usize
        } else {
            0
        };
        crate::resolve::connect_order(addrs, round_robin, turn)
    }

    /// The address cache (for the asynchronous lookup's lock).
    pub fn address_cache(&self) -> &AddressCache {
        &self.addresses
    }

    /// The cached addresses, when fresh (no lookup, never blocks).
    pub fn cached_addresses(&self) -> Option<Arc<[std::net::SocketAddr]>> {
        if let Some(addrs) = self.resolution.pinned(&self.dial) {
            return Some(addrs);
        }
        self.addresses
            .cached(self.resolution.refresh_ms.load(Relaxed))
    }

    /// Drops the cached addresses (a connect to them failed).
    pub fn forget_addresses(&self) {
        self.addresses.forget();
    }

    /// The reaper's pass over the point: takes out expired idle connections and those whose
    /// address the name no longer resolves to (into `expired`, closed by the caller outside
    /// any lock); returns when the point next needs a pass.
    pub fn tend(
        self: &Arc<Self>,
        expired: &mut Vec<crate::connection::Connection>,
        now: Instant,
    ) -> Option<Instant> {
        let pools = self.pools();
        let next_expiry = self.reap(&pools, expired);
        let next_lookup = self.retire_moved(&pools, expired, now);
        crate::connection::earliest(next_expiry, next_lookup)
    }

    /// Keeps idle connections on the addresses the name resolves to now: closes (into
    /// `expired`) those whose address left the pinned addresses or the last answer, and starts
    /// a background lookup once that answer is older than the DNS refresh timeout. Returns when
    /// the next lookup is due. Points without idle connections look nothing up.
    fn retire_moved(
        self: &Arc<Self>,
        pools: &[Arc<Pool>],
        expired: &mut Vec<crate::connection::Connection>,
        now: Instant,
    ) -> Option<Instant> {
        if crate::resolve::is_ip_literal(&self.dial) || !pools.iter().any(|p| p.has_idle()) {
            return None;
        }
        let (answer, due) = match self.resolution.pinned(&self.dial) {
            Some(pins) => (pins, None),
            None => {
                let (fetched, answer) = self.addresses.latest()?;
                let refresh_ms = self.resolution.refresh_ms.load(Relaxed);
                (
                    answer,
                    crate::resolve::background_refresh_at(fetched, refresh_ms),
                )
            }
        };
        for pool in pools {
            pool.close_idle_if(CloseReason::AddressGone, expired, |conn| {
                crate::resolve::address_left(conn.peer, &answer)
            });
        }
        match due {
            Some(at) if at <= now => {
                self.refresh_addresses();
                None
            }
            due => due,
        }
    }

    /// Looks the name up again on the runtime's blocking pool (one lookup at a time), then
    /// wakes the reaper to act on the answer.
    fn refresh_addresses(self: &Arc<Self>) {
        if !self.addresses.start_refresh() {
            return;
        }
        let point = Arc::clone(self);
        crate::runtime::handle().spawn_blocking(move || {
            let found = point.resolution.lookup(&point.dial);
            point.addresses.end_refresh(found);
            point.reaper.wake();
        });
    }

    /// True once the point was evicted or its manager freed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Relaxed) {
            return Err(self.closed_error());
        }
        Ok(())
    }

    /// The error of a request cut short because the point's manager was freed.
    pub fn closed_error(&self) -> Error {
        Error::new(
            ErrorKind::ManagerClosed,
            format!(
                "service point {} belongs to a manager that was freed",
                self.address
            ),
        )
    }

    /// Takes out expired idle connections (into `expired`); returns the earliest next expiry.
    fn reap(
        &self,
        pools: &[Arc<Pool>],
        expired: &mut Vec<crate::connection::Connection>,
    ) -> Option<Instant> {
        let settings = self.reuse_settings();
        pools
            .iter()
            .filter_map(|p| p.reap(&settings, expired))
            .min()
    }

    /// Records the end of a request (for `idle_since`).
    pub fn touch(&self) {
        // Stores only when the millisecond changed: threads finishing requests on one point
        // at once do not all write its cache line.
        let now = unix_ms();
        if self.idle_since_unix_ms.load(Relaxed) == now {
            return;
        }
        self.idle_since_unix_ms.store(now, Relaxed);
        self.last_activity_ms.store(
            self.created.elapsed().as_millis().min(u64::MAX as u128) as u64,
            Relaxed,
        );
    }

    /// Unix time in ms of creation or of the last finished request.
    pub fn idle_since_unix_ms(&self) -> u64 {
        self.idle_since_unix_ms.load(Relaxed)
    }

    /// How long ago the point was last used.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity_ms.load(Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    /// Open connections across all groups.
    pub fn current_connections(&self) -> usize {
        self.pools().iter().map(|p| p.counts().0).sum()
    }

    /// True when no connection of the point is busy and no request waits.
    pub fn is_quiet(&self) -> bool {
        self.pools().iter().all(|p| {
            let (open, idle, waiting) = p.counts();
            open == idle && waiting == 0
        })
    }

    pub fn statistics(&self) -> Snapshot {
        let (mut open, mut idle, mut waiting) = (0, 0, 0);
        for pool in self.pools() {
            let (o, i, w) = pool.counts();
            open += o as u64;
            idle += i as u64;
            waiting += w as u64;
        }
        self.stats.snapshot(open, idle, waiting)
    }
}
