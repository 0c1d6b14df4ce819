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
use crate::proxy::{self, Bypass, EnvProxies, Override, Proxy, Route};
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

/// The service point table: direct points by origin (looked up without building a key), and
/// points reached through a proxy by (point origin, proxy).
#[derive(Default)]
struct Table {
    direct: HashMap<Origin, Arc<ServicePoint>>,
    proxied: HashMap<(Origin, Arc<Proxy>), Arc<ServicePoint>>,
}

impl Table {
    fn len(&self) -> usize {
        self.direct.len() + self.proxied.len()
    }

    fn values(&self) -> impl Iterator<Item = &Arc<ServicePoint>> {
        self.direct.values().chain(self.proxied.values())
    }

    fn get(&self, origin: &Origin, route: &Route) -> Option<&Arc<ServicePoint>> {
        match route.proxy() {
            None => self.direct.get(origin),
            Some(p) => self.proxied.get(&(origin.clone(), Arc::clone(p))),
        }
    }

    fn insert(&mut self, point: Arc<ServicePoint>) {
        match point.route.proxy() {
            None => self.direct.insert(point.origin.clone(), point),
            Some(p) => self
                .proxied
                .insert((point.origin.clone(), Arc::clone(p)), point),
        };
    }

    fn retain(&mut self, mut keep: impl FnMut(&Arc<ServicePoint>) -> bool) {
        self.direct.retain(|_, p| keep(p));
        self.proxied.retain(|_, p| keep(p));
    }

    fn drain(&mut self) -> Vec<Arc<ServicePoint>> {
        let direct = self.direct.drain().map(|(_, p)| p);
        direct.chain(self.proxied.drain().map(|(_, p)| p)).collect()
    }
}

struct Inner {
    id: u64,
    points: Lock<Table>,
    /// Proxy, bypass list and environment proxies; read only when `proxy_active` is set or a
    /// request names its own proxy, so the direct path takes no lock for it.
    proxy: Lock<proxy::Settings>,
    proxy_active: AtomicBool,
    /// Bumped by every proxy setting: a request description's remembered point is only good
    /// for the epoch it was found in.
    route_epoch: AtomicU64,
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
            points: Lock::new(Table::default()),
            proxy: Lock::new(proxy::Settings::default()),
            proxy_active: AtomicBool::new(false),
            route_epoch: AtomicU64::new(0),
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

    fn points(&self) -> LockGuard<'_, Table> {
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

    /// FindServicePoint(uri, proxy): the point a request for `uri` uses when `proxy` says
    /// how to reach it (`Override::Manager`: the manager's proxy settings decide). Not
    /// memoised (a proxied point's key is (proxy, origin)).
    pub fn find_with_proxy(&self, uri: &str, proxy: &Override) -> Result<Arc<ServicePoint>> {
        self.ensure_reaper();
        let target = origin::parse(uri)?;
        self.find_routed(&target.origin, proxy)
    }

    /// The point for `origin` reached as `choice` and the manager's settings say.
    fn find_routed(&self, origin: &Origin, choice: &Override) -> Result<Arc<ServicePoint>> {
        if matches!(choice, Override::Manager) && !self.inner.proxy_active.load(Relaxed) {
            return self.find_origin(origin);
        }
        let proxy = proxy::choose(&self.inner.proxy.lock(), choice, origin);
        let (route, point_origin) = Route::to(origin, proxy);
        self.find_point(&point_origin, route)
    }

    /// The direct service point of `origin`.
    pub fn find_origin(&self, origin: &Origin) -> Result<Arc<ServicePoint>> {
        self.find_point(origin, Route::Direct)
    }

    fn find_point(&self, origin: &Origin, route: Route) -> Result<Arc<ServicePoint>> {
        if self.inner.closed.load(Relaxed) {
            return Err(Error::new(
                ErrorKind::ManagerClosed,
                format!("the manager was freed; no service point for {origin}"),
            ));
        }
        let mut points = self.points();
        if let Some(p) = points.get(origin, &route) {
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
            route,
            defaults,
            Arc::clone(&self.inner.reaper),
            Arc::clone(&self.inner.tls),
            Arc::clone(&self.inner.resolution),
            Arc::clone(&self.inner.log),
        ));
        points.insert(Arc::clone(&point));
        Ok(point)
    }

    /// Sends a request on its origin's service point; blocks until the response head arrives.
    /// The description's cancel token, if any, ends the wait early.
    pub fn send(&self, req: &Request) -> Result<Response> {
        runtime::ensure_blocking_allowed()?;
        let point = self.point_for(req)?;
        let keep_alive = self.keep_alive_default();
        let mut resp = cancel::watching(req.cancel.as_ref(), || {
            exchange::send(&point, req, keep_alive)
        })?;
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
        let epoch = self.inner.route_epoch.load(Relaxed);
        if let Some(point) = req.cached_point(self.inner.id, epoch) {
            return Ok(point);
        }
        let point = self.find_routed(&req.target.origin, &req.proxy)?;
        req.cache_point(self.inner.id, epoch, &point);
        Ok(point)
    }

    /// Applies a change to the proxy settings (new requests route by them; pooled
    /// connections of the old routes stay until idle).
    fn change_proxy(&self, change: impl FnOnce(&mut proxy::Settings)) {
        let mut settings = self.inner.proxy.lock();
        change(&mut settings);
        self.inner
            .proxy_active
            .store(settings.proxy.is_some() || settings.env.is_some(), Relaxed);
        self.inner.route_epoch.fetch_add(1, Relaxed);
    }

    /// The manager-wide proxy (.NET's `ServicePointManager`/`WebRequest.DefaultWebProxy`):
    /// `None` or an empty string for direct connections.
    pub fn set_proxy(&self, url: Option<&str>) -> Result<()> {
        let proxy = match url.map(str::trim) {
            None | Some("") => None,
            Some(u) => Some(Arc::new(Proxy::parse(u)?)),
        };
        self.change_proxy(|s| s.proxy = proxy);
        Ok(())
    }

    /// The proxy URL as normalised (credentials included), or "" when none is set.
    pub fn proxy(&self) -> String {
        let settings = self.inner.proxy.lock();
        settings
            .proxy
            .as_ref()
            .map_or(String::new(), |p| p.url().to_string())
    }

    /// The bypass list (default: loopback, `proxy::DEFAULT_BYPASS`); replaces the whole list.
    pub fn set_proxy_bypass(&self, list: &str) -> Result<()> {
        let bypass = Bypass::parse(list)?;
        self.change_proxy(|s| s.bypass = bypass);
        Ok(())
    }

    pub fn proxy_bypass(&self) -> String {
        self.inner.proxy.lock().bypass.text().to_string()
    }

    /// Opts in to `http_proxy`/`https_proxy`/`all_proxy`/`no_proxy` (read now, from the
    /// process's environment); a proxy set with `set_proxy` takes precedence.
    pub fn set_use_environment_proxy(&self, on: bool) -> Result<()> {
        let env = if on {
            Some(EnvProxies::from_process()?)
        } else {
            None
        };
        self.change_proxy(|s| s.env = env);
        Ok(())
    }

    pub fn use_environment_proxy(&self) -> bool {
        self.inner.proxy.lock().env.is_some()
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

    /// Replaces `getaddrinfo` for this manager's name lookups (`None` restores it): a
    /// service-discovery client, or a test's scripted answers. It runs on a blocking thread
    /// (the caller's, or the runtime's blocking pool when a deadline or cancel applies) and
    /// is not bounded by anything but the request deadline. Resolve overrides still come first.
    pub fn set_resolver(&self, resolver: Option<Arc<crate::resolve::Resolver>>) {
        self.inner.resolution.set_resolver(resolver);
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
        let points = self.points().drain();
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
fn evict_one(points: &mut Table, incoming: &Origin) -> Result<()> {
    let victim = points
        .values()
        .filter(|p| unused(p))
        .max_by_key(|p| p.idle_for())
        .map(Arc::clone);
    match victim {
        Some(victim) => {
            points.retain(|p| !Arc::ptr_eq(p, &victim));
            victim.close();
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
    let now = Instant::now();
    let next = points.values().filter_map(|p| p.tend(expired, now)).min();
    if let Some(max_idle) = ms_to_duration(inner.max_point_idle_ms.load(Relaxed)) {
        points.retain(|p| {
            let gone = unused(p) && p.current_connections() == 0 && p.idle_for() >= max_idle;
            if gone {
                p.close();
            }
            !gone
        });
    }
    next
}
