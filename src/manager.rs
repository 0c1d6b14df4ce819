//! The manager: one service point per origin, the defaults new service points take, the
//! max-service-points rule, and the reaper task that keeps the table and pools tidy.

use crate::cancel::{self, CancelToken};
use crate::connection::TcpKeepAlive;
use crate::error::{Error, ErrorKind, Result};
use crate::exchange;
use crate::fork::{self, Lock, LockGuard};
use crate::log::Log;
use crate::operation::{self, Deliver, Operation};
use crate::origin::{self, Origin};
use crate::point::{PointDefaults, ServicePoint, ms_to_duration};
use crate::reaper::Reaper;
use crate::request::Request;
use crate::resolve::Resolution;
use crate::response::Response;
use crate::runtime;
use crate::stats::{HistogramSnapshot, Snapshot};
use crate::tls::Tls;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// .NET's ServicePointManager defaults.
pub const DEFAULT_CONNECTION_LIMIT: i32 = 2;
pub const DEFAULT_MAX_IDLE_MS: i32 = 100_000;

/// Service points memoised by the raw `scheme://authority` prefix of the URLs looked up, so a
/// repeated `find` costs one hash lookup instead of a URL parse. Weak, so that an entry does
/// not keep an evicted point alive or count as a user; cleared when it outgrows this.
const ORIGIN_MEMO_MAX: usize = 16 * 1024;

/// Gives each manager an id, so a request description can remember its service point per
/// manager.
static NEXT_MANAGER_ID: AtomicU64 = AtomicU64::new(1);

struct Inner {
    id: u64,
    points: Lock<HashMap<Origin, Arc<ServicePoint>>>,
    origin_memo: Lock<HashMap<String, Weak<ServicePoint>>>,
    default_connection_limit: AtomicI32,
    max_service_points: AtomicI32,
    max_point_idle_ms: AtomicI32,
    keep_alive_default: AtomicBool,
    nagle_default: AtomicBool,
    expect_continue_default: AtomicBool,
    tcp_keep_alive_default: Lock<Option<TcpKeepAlive>>,
    resolution: Arc<Resolution>,
    reaper: Arc<Reaper>,
    tls: Arc<Tls>,
    log: Arc<Log>,
    closed: AtomicBool,
}

pub struct Manager {
    inner: Arc<Inner>,
}

impl Default for Manager {
    fn default() -> Self {
        Self::new()
    }
}

impl Manager {
    pub fn new() -> Self {
        fork::install();
        let inner = Arc::new(Inner {
            id: NEXT_MANAGER_ID.fetch_add(1, Relaxed),
            points: Lock::new(HashMap::new()),
            origin_memo: Lock::new(HashMap::new()),
            default_connection_limit: AtomicI32::new(DEFAULT_CONNECTION_LIMIT),
            max_service_points: AtomicI32::new(0),
            max_point_idle_ms: AtomicI32::new(DEFAULT_MAX_IDLE_MS),
            keep_alive_default: AtomicBool::new(true),
            nagle_default: AtomicBool::new(false),
            expect_continue_default: AtomicBool::new(false),
            tcp_keep_alive_default: Lock::new(None),
            resolution: Arc::new(Resolution::default()),
            reaper: Arc::new(Reaper::default()),
            tls: Arc::new(Tls::default()),
            log: Arc::new(Log::default()),
            closed: AtomicBool::new(false),
        });
        let manager = Manager { inner };
        manager.ensure_reaper();
        manager
    }

    /// Starts the reaper task (again, in a forked child whose runtime lacks it).
    fn ensure_reaper(&self) {
        let weak = Arc::downgrade(&self.inner);
        self.inner
            .reaper
            .ensure_running(move || reap_pass(&*weak.upgrade()?));
    }

    fn points(&self) -> LockGuard<'_, HashMap<Origin, Arc<ServicePoint>>> {
        self.inner.points.lock()
    }

    /// The service point for the URI's origin, created with the current defaults if needed.
    pub fn find(&self, uri: &str) -> Result<Arc<ServicePoint>> {
        self.ensure_reaper();
        let Some(prefix) = origin::authority_prefix(uri) else {
            return self.find_origin(&origin::parse(uri)?.origin);
        };
        let memoised = self
            .inner
            .origin_memo
            .lock()
            .get(prefix)
            .and_then(Weak::upgrade);
        if let Some(point) = memoised.filter(|p| !p.is_closed()) {
            return Ok(point);
        }
        let point = self.find_origin(&origin::parse(prefix)?.origin)?;
        let mut memo = self.inner.origin_memo.lock();
        if memo.len() >= ORIGIN_MEMO_MAX {
            memo.clear();
        }
        memo.insert(prefix.to_string(), Arc::downgrade(&point));
        Ok(point)
    }

    pub fn find_origin(&self, origin: &Origin) -> Result<Arc<ServicePoint>> {
        if self.inner.closed.load(Relaxed) {
            return Err(Error::new(
                ErrorKind::ManagerClosed,
                format!("the manager was freed; no service point for {origin}"),
            ));
        }
        let mut points = self.points();
        if let Some(p) = points.get(origin) {
            return Ok(Arc::clone(p));
        }
        let max = self.max_service_points();
        if max > 0 && points.len() >= max as usize {
            evict_one(&mut points, origin)?;
        }
        let defaults = PointDefaults {
            connection_limit: self.default_connection_limit(),
            max_idle_ms: self.max_point_idle_ms(),
            nagle: self.inner.nagle_default.load(Relaxed),
            expect_continue: self.inner.expect_continue_default.load(Relaxed),
            tcp_keep_alive: *self.inner.tcp_keep_alive_default.lock(),
        };
        let point = Arc::new(ServicePoint::new(
            origin.clone(),
            defaults,
            Arc::clone(&self.inner.reaper),
            Arc::clone(&self.inner.tls),
            Arc::clone(&self.inner.resolution),
            Arc::clone(&self.inner.log),
        ));
        points.insert(origin.clone(), Arc::clone(&point));
        Ok(point)
    }

    /// Sends a request on its origin's service point; blocks until the response head arrives.
    /// The description's cancel token, if any, ends the wait early.
    pub fn send(&self, req: &Request) -> Result<Response> {
        runtime::ensure_blocking_allowed()?;
        let point = self.point_for(req)?;
        let keep_alive = self.keep_alive_default();
        let mut resp = match &req.cancel {
            None => exchange::send(&point, req, keep_alive)?,
            Some(t) => cancel::watching(&[t], || exchange::send(&point, req, keep_alive))?,
        };
        resp.set_cancel(req.cancel.clone());
        Ok(resp)
    }

    /// Sends a request without blocking: the exchange runs on the runtime, and `complete`
    /// receives the response (once its head arrived) or the error, exactly once, as `deliver`
    /// says. `token` cancels it (as does the description's own token).
    pub fn send_async(
        &self,
        req: Arc<Request>,
        token: CancelToken,
        deliver: Deliver,
        complete: impl FnOnce(Result<Response>) + Send + 'static,
    ) -> Result<Operation> {
        let point = self.point_for(&req)?;
        let keep_alive = self.keep_alive_default();
        let mut tokens = vec![token.clone()];
        tokens.extend(req.cancel.clone());
        let driver = deliver.driver(tokens);
        let work = async move {
            let mut resp = exchange::send_with(&driver, &point, &req, keep_alive).await?;
            resp.set_cancel(req.cancel.clone());
            Ok(resp)
        };
        Ok(operation::spawn(token, work, deliver, complete))
    }

    /// The request's service point (cached in the description after its first send).
    fn point_for(&self, req: &Request) -> Result<Arc<ServicePoint>> {
        self.ensure_reaper();
        if let Some(point) = req.cached_point(self.inner.id) {
            return Ok(point);
        }
        let point = self.find_origin(&req.target.origin)?;
        req.cache_point(self.inner.id, &point);
        Ok(point)
    }

    pub fn default_connection_limit(&self) -> i32 {
        self.inner.default_connection_limit.load(Relaxed)
    }

    /// Applies to service points created from now on, as in .NET.
    pub fn set_default_connection_limit(&self, limit: i32) -> Result<()> {
        if limit <= 0 {
            return Err(out_of_range(
                "default connection limit",
                limit,
                "must be > 0",
            ));
        }
        self.inner.default_connection_limit.store(limit, Relaxed);
        Ok(())
    }

    pub fn max_service_points(&self) -> i32 {
        self.inner.max_service_points.load(Relaxed)
    }

    /// 0 means no limit.
    pub fn set_max_service_points(&self, max: i32) -> Result<()> {
        if max < 0 {
            return Err(out_of_range("max service points", max, "must be >= 0"));
        }
        self.inner.max_service_points.store(max, Relaxed);
        Ok(())
    }

    pub fn max_point_idle_ms(&self) -> i32 {
        self.inner.max_point_idle_ms.load(Relaxed)
    }

    /// Max idle time new service points take, and how long an unused service point lives.
    pub fn set_max_point_idle_time(&self, ms: i32) -> Result<()> {
        if ms < -1 {
            return Err(out_of_range(
                "max service point idle time",
                ms,
                "must be >= -1",
            ));
        }
        self.inner.max_point_idle_ms.store(ms, Relaxed);
        self.inner.reaper.wake();
        Ok(())
    }

    pub fn keep_alive_default(&self) -> bool {
        self.inner.keep_alive_default.load(Relaxed)
    }

    /// Keep-alive for requests that do not say (seed 004's `KeepAliveDefaultValue`).
    pub fn set_keep_alive_default(&self, on: bool) {
        self.inner.keep_alive_default.store(on, Relaxed);
    }

    /// UseNagleAlgorithm for service points created from now on (off by default, as modern
    /// .NET: TCP_NODELAY).
    pub fn set_use_nagle_algorithm(&self, on: bool) {
        self.inner.nagle_default.store(on, Relaxed);
    }

    pub fn use_nagle_algorithm(&self) -> bool {
        self.inner.nagle_default.load(Relaxed)
    }

    /// EnableDnsRoundRobin: new connections of every service point start at successive
    /// addresses of their host (off: always the first address first).
    pub fn set_dns_round_robin(&self, on: bool) {
        self.inner.resolution.round_robin.store(on, Relaxed);
    }

    pub fn dns_round_robin(&self) -> bool {
        self.inner.resolution.round_robin.load(Relaxed)
    }

    /// Pins `host:port` to `addresses` (IP literals) for every new connection of this manager,
    /// without a lookup (curl's CURLOPT_RESOLVE); `None` removes the pin.
    pub fn set_resolve_override(
        &self,
        host: &str,
        port: u16,
        addresses: Option<&[std::net::IpAddr]>,
    ) -> Result<()> {
        if host.is_empty() {
            return Err(Error::new(ErrorKind::InvalidArgument, "empty host"));
        }
        if addresses.is_some_and(|a| a.is_empty()) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "no address to pin the host to (NULL removes a pin)",
            ));
        }
        self.inner
            .resolution
            .set_override(host, port, addresses.map(<[_]>::to_vec));
        Ok(())
    }

    /// The pins, one `host:port=addr,addr` line each.
    pub fn resolve_overrides(&self) -> String {
        self.inner.resolution.describe_overrides()
    }

    /// Expect100Continue for service points created from now on (off by default; see
    /// `expect`).
    pub fn set_expect_100_continue(&self, on: bool) {
        self.inner.expect_continue_default.store(on, Relaxed);
    }

    pub fn expect_100_continue(&self) -> bool {
        self.inner.expect_continue_default.load(Relaxed)
    }

    /// SetTcpKeepAlive for service points created from now on (times in ms, > 0 when enabled).
    pub fn set_tcp_keep_alive(&self, enabled: bool, time_ms: i32, interval_ms: i32) -> Result<()> {
        *self.inner.tcp_keep_alive_default.lock() =
            crate::point::tcp_keep_alive(enabled, time_ms, interval_ms)?;
        Ok(())
    }

    /// (enabled, time ms, interval ms) new service points take.
    pub fn tcp_keep_alive(&self) -> (bool, i32, i32) {
        crate::point::keep_alive_parts(*self.inner.tcp_keep_alive_default.lock())
    }

    /// Where the manager's log messages go (off by default).
    pub fn log(&self) -> &Log {
        &self.inner.log
    }

    /// Statistics summed over the manager's service points, with the queue-wait and
    /// connection-lifetime histograms merged (the manager-wide figures).
    pub fn statistics(&self) -> (Snapshot, HistogramSnapshot, HistogramSnapshot) {
        let points: Vec<Arc<ServicePoint>> = self.points().values().cloned().collect();
        let mut total = Snapshot::default();
        let (mut queue, mut lifetime) =
            (HistogramSnapshot::default(), HistogramSnapshot::default());
        for p in points {
            total.add(&p.statistics());
            queue.merge(&p.stats.queue_wait.snapshot());
            lifetime.merge(&p.stats.connection_lifetime.snapshot());
        }
        (total, queue, lifetime)
    }

    /// The TLS settings shared by the manager's https service points.
    pub fn tls(&self) -> &Tls {
        &self.inner.tls
    }

    pub fn dns_refresh_ms(&self) -> i32 {
        self.inner.resolution.refresh_ms.load(Relaxed)
    }

    /// How long resolved addresses are reused for new connections (.NET's DnsRefreshTimeout;
    /// -1 no expiry, 0 resolve for every new connection). Applies to every service point.
    pub fn set_dns_refresh_timeout(&self, ms: i32) -> Result<()> {
        if ms < -1 {
            return Err(out_of_range("DNS refresh timeout", ms, "must be >= -1"));
        }
        self.inner.resolution.refresh_ms.store(ms, Relaxed);
        Ok(())
    }

    /// Number of service points in the table.
    pub fn service_point_count(&self) -> usize {
        self.points().len()
    }

    /// Closes every connection and detaches every service point; outstanding service point
    /// handles then fail with `ManagerClosed`.
    pub fn close(&self) {
        if self.inner.closed.swap(true, Relaxed) {
            return;
        }
        let points: Vec<_> = self.points().drain().map(|(_, p)| p).collect();
        for p in points {
            p.close();
        }
        self.inner.reaper.wake();
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.close();
    }
}

fn out_of_range(what: &str, value: i32, rule: &str) -> Error {
    Error::new(
        ErrorKind::OutOfRange,
        format!("{what} {value} is out of range ({rule})"),
    )
}

/// True when nothing outside the table uses the point: no handle, no request, no busy
/// connection.
fn unused(point: &Arc<ServicePoint>) -> bool {
    Arc::strong_count(point) == 1 && point.is_quiet()
}

/// Makes room for `incoming` by evicting the unused service point idle the longest.
fn evict_one(points: &mut HashMap<Origin, Arc<ServicePoint>>, incoming: &Origin) -> Result<()> {
    let victim = points
        .iter()
        .filter(|(_, p)| unused(p))
        .max_by_key(|(_, p)| p.idle_for())
        .map(|(k, _)| k.clone());
    match victim {
        Some(key) => {
            if let Some(p) = points.remove(&key) {
                p.close();
            }
            Ok(())
        }
        None => Err(Error::new(
            ErrorKind::TooManyServicePoints,
            format!(
                "cannot add a service point for {incoming}: all {} service points are in use",
                points.len()
            ),
        )),
    }
}

/// One pass of the reaper: closes idle connections past their limit and drops service points
/// that have been unused for the manager's max service point idle time. Returns the earliest
/// next expiry, or `None` once the manager is closed (the task ends). The table stays locked
/// while the pass looks (a reference to a point taken out of it would make the point look in
/// use to `evict_one` meanwhile), but the sockets are closed after it is unlocked.
fn reap_pass(inner: &Inner) -> Option<Option<Instant>> {
    if inner.closed.load(Relaxed) {
        return None;
    }
    let mut expired = Vec::new();
    let next = reap_points(inner, &mut expired);
    drop(expired);
    Some(next)
}

fn reap_points(inner: &Inner, expired: &mut Vec<crate::connection::Connection>) -> Option<Instant> {
    let mut points = inner.points.lock();
    let next = points.values().filter_map(|p| p.reap(expired)).min();
    if let Some(max_idle) = ms_to_duration(inner.max_point_idle_ms.load(Relaxed)) {
        points.retain(|_, p| {
            let gone = unused(p) && p.current_connections() == 0 && p.idle_for() >= max_idle;
            if gone {
                p.close();
            }
            !gone
        });
    }
    next
}
