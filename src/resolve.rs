//! Name resolution for a service point, cached for the manager's DNS refresh timeout (.NET's
//! `ServicePointManager.DnsRefreshTimeout`, 120 s by default): a new connection after a lease
//! expiry then costs no `getaddrinfo`, yet a changed DNS record is picked up within the
//! refresh time. A failed connect drops the cached addresses.
//!
//! The manager's [`Resolution`] settings apply to all its points at once: the refresh timeout,
//! `EnableDnsRoundRobin` (new connections start at successive addresses) and resolve
//! overrides (curl's `CURLOPT_RESOLVE`: host and port pinned to addresses, no lookup).
//!
//! Idle connections follow the answer: once it is older than the refresh timeout, the reaper
//! looks the name up again in the background, and an idle connection whose address left the
//! answer (or the pinned addresses) is closed, so that new back ends get traffic without a
//! lease timeout cutting every connection.

use crate::error::{Error, ErrorKind, Result};
use crate::fork::Lock;
use crate::origin::Origin;
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// .NET's default DnsRefreshTimeout.
pub const DEFAULT_DNS_REFRESH_MS: i32 = 120_000;

/// Shortest time between two background refreshes of one name (a refresh timeout of 0 caches
/// nothing for new connections, yet must not make the reaper look the name up at every pass).
pub const MIN_BACKGROUND_REFRESH: Duration = Duration::from_secs(1);

/// A name lookup: host and port to addresses (`getaddrinfo` unless the manager was given
/// another, e.g. a service-discovery client or a test's scripted answers).
pub type Resolver = dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>> + Send + Sync;

/// Pinned addresses by (lower-case host, port).
type Pins = std::collections::HashMap<(String, u16), Arc<[SocketAddr]>>;

/// A manager's name-resolution settings, shared by its service points.
pub struct Resolution {
    pub refresh_ms: std::sync::atomic::AtomicI32,
    pub round_robin: std::sync::atomic::AtomicBool,
    overrides: Lock<Pins>,
    resolver: Lock<Option<Arc<Resolver>>>,
}

impl Default for Resolution {
    fn default() -> Self {
        Resolution {
            refresh_ms: std::sync::atomic::AtomicI32::new(DEFAULT_DNS_REFRESH_MS),
            round_robin: std::sync::atomic::AtomicBool::new(false),
            overrides: Lock::new(std::collections::HashMap::new()),
            resolver: Lock::new(None),
        }
    }
}

impl Resolution {
    /// Pins `host:port` to `addrs` (their ports are the origin's), or removes the pin (`None`).
    pub fn set_override(&self, host: &str, port: u16, addrs: Option<Vec<std::net::IpAddr>>) {
        let key = (host.trim_matches(['[', ']']).to_ascii_lowercase(), port);
        let mut map = self.overrides.lock();
        match addrs {
            Some(ips) => {
                let list: Arc<[SocketAddr]> = ips
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect();
                map.insert(key, list);
            }
            None => {
                map.remove(&key);
            }
        }
    }

    /// The pinned addresses of an origin, if any.
    pub fn pinned(&self, origin: &Origin) -> Option<Arc<[SocketAddr]>> {
        let map = self.overrides.lock();
        if map.is_empty() {
            return None;
        }
        map.get(&(origin.connect_host().to_string(), origin.port))
            .cloned()
    }

    /// Replaces `getaddrinfo` for every lookup of this manager (`None` restores it).
    pub fn set_resolver(&self, resolver: Option<Arc<Resolver>>) {
        *self.resolver.lock() = resolver;
    }

    /// Looks an origin up with the manager's resolver.
    pub fn lookup(&self, origin: &Origin) -> Result<Arc<[SocketAddr]>> {
        let custom = self.resolver.lock().clone();
        let host = origin.connect_host();
        let found = match custom {
            Some(resolve) => resolve(host, origin.port),
            None => (host, origin.port).to_socket_addrs().map(Iterator::collect),
        };
        let addrs: Vec<SocketAddr> = found
            .map_err(|e| Error::new(ErrorKind::Dns, format!("cannot resolve '{host}': {e}")))?;
        if addrs.is_empty() {
            return Err(Error::new(
                ErrorKind::Dns,
                format!("'{host}' resolved to no address"),
            ));
        }
        Ok(addrs.into())
    }

    /// The pins as `host:port=addr,addr` lines (for a getter).
    pub fn describe_overrides(&self) -> String {
        let map = self.overrides.lock();
        let mut lines: Vec<String> = map
            .iter()
            .map(|((h, p), a)| {
                let ips: Vec<String> = a.iter().map(|s| s.ip().to_string()).collect();
                format!("{h}:{p}={}", ips.join(","))
            })
            .collect();
        lines.sort();
        lines.join("\n")
    }
}

/// Addresses in the order a new connection tries them: the families interleaved, starting
/// with the first address's (RFC 8305 section 4: a dead family costs one attempt, not all of
/// its addresses), and with round robin starting at the `turn`-th.
pub fn connect_order(addrs: &[SocketAddr], round_robin: bool, turn: usize) -> Vec<SocketAddr> {
    let mut order = addrs.to_vec();
    if round_robin && !order.is_empty() {
        let k = turn % order.len();
        order.rotate_left(k);
    }
    let Some(first) = order.first().map(SocketAddr::is_ipv6) else {
        return order;
    };
    let (mut same, mut other): (VecDeque<_>, VecDeque<_>) =
        order.into_iter().partition(|a| a.is_ipv6() == first);
    let mut interleaved = Vec::with_capacity(same.len() + other.len());
    while !same.is_empty() || !other.is_empty() {
        interleaved.extend(same.pop_front());
        interleaved.extend(other.pop_front());
    }
    interleaved
}

/// When an answer fetched at `fetched` is looked up again in the background (for idle
/// connections to follow it): after the refresh timeout, at least [`MIN_BACKGROUND_REFRESH`]
/// after the last lookup; never with -1 (no expiry).
pub fn background_refresh_at(fetched: Instant, refresh_ms: i32) -> Option<Instant> {
    if refresh_ms < 0 {
        return None;
    }
    let wait = Duration::from_millis(refresh_ms as u64).max(MIN_BACKGROUND_REFRESH);
    fetched.checked_add(wait)
}

/// True when a connection to `peer` no longer matches the name's `answer`.
pub fn address_left(peer: SocketAddr, answer: &[SocketAddr]) -> bool {
    !answer
        .iter()
        .any(|a| a.ip() == peer.ip() && a.port() == peer.port())
}

#[derive(Default)]
pub struct AddressCache {
    /// The last answer, kept after it went stale (idle connections are checked against it)
    /// and when it was fetched.
    entry: Lock<Option<(Instant, Arc<[SocketAddr]>)>>,
    /// A background refresh is under way.
    refreshing: std::sync::atomic::AtomicBool,
    /// Held by an asynchronous lookup, so that requests opening connections at once share one
    /// lookup (and one blocking-pool thread) instead of one each.
    pub lookup: tokio::sync::Mutex<()>,
}

/// An IP literal needs no lookup (and never blocks).
pub fn is_ip_literal(origin: &Origin) -> bool {
    origin.connect_host().parse::<std::net::IpAddr>().is_ok()
}

impl AddressCache {
    /// The origin's addresses: cached ones younger than `refresh_ms` (-1: no expiry, 0: no
    /// caching), else a fresh lookup.
    pub fn resolve(
        &self,
        resolution: &Resolution,
        origin: &Origin,
        refresh_ms: i32,
    ) -> Result<Arc<[SocketAddr]>> {
        if let Some(addrs) = self.cached(refresh_ms) {
            return Ok(addrs);
        }
        let addrs = resolution.lookup(origin)?;
        *self.entry.lock() = Some((Instant::now(), Arc::clone(&addrs)));
        Ok(addrs)
    }

    /// The last answer, fresh or stale, and when it was fetched.
    pub fn latest(&self) -> Option<(Instant, Arc<[SocketAddr]>)> {
        self.entry.lock().clone()
    }

    /// Claims the one background refresh (false: one is under way).
    pub fn start_refresh(&self) -> bool {
        !self
            .refreshing
            .swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// Ends a background refresh; a failed lookup keeps the last answer (a resolver outage
    /// must not close every idle connection).
    pub fn end_refresh(&self, found: Result<Arc<[SocketAddr]>>) {
        if let Ok(addrs) = found {
            *self.entry.lock() = Some((Instant::now(), addrs));
        }
        self.refreshing
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// The cached addresses, if still fresh (no lookup).
    pub fn cached(&self, refresh_ms: i32) -> Option<Arc<[SocketAddr]>> {
        if refresh_ms == 0 {
            return None;
        }
        let entry = self.entry.lock();
        let (at, addrs) = entry.as_ref()?;
        let fresh = refresh_ms < 0 || at.elapsed() < Duration::from_millis(refresh_ms as u64);
        fresh.then(|| Arc::clone(addrs))
    }

    /// Forgets the cached addresses (after a failed connect, so the next one looks up again).
    pub fn forget(&self) {
        *self.entry.lock() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_interleave_and_round_robin_rotates() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let resolved = [
            a("[::1]:80"),
            a("[::2]:80"),
            a("127.0.0.1:80"),
            a("127.0.0.2:80"),
        ];
        assert_eq!(
            connect_order(&resolved, false, 0),
            [
                a("[::1]:80"),
                a("127.0.0.1:80"),
                a("[::2]:80"),
                a("127.0.0.2:80")
            ]
        );
        let v4 = [a("127.0.0.1:80"), a("127.0.0.2:80"), a("127.0.0.3:80")];
        assert_eq!(connect_order(&v4, false, 5), v4);
        assert_eq!(
            connect_order(&v4, true, 1),
            [a("127.0.0.2:80"), a("127.0.0.3:80"), a("127.0.0.1:80")]
        );
        assert!(connect_order(&[], true, 3).is_empty());
    }

    #[test]
    fn caches_for_the_refresh_time_and_forgets() {
        let origin = crate::origin::parse("http://127.0.0.1:9/")
            .unwrap()
            .origin
            .clone();
        let cache = AddressCache::default();
        let dns = Resolution::default();
        let a = cache.resolve(&dns, &origin, 60_000).unwrap();
        let b = cache.resolve(&dns, &origin, 60_000).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "second lookup served from the cache");
        let c = cache.resolve(&dns, &origin, 0).unwrap();
        assert!(!Arc::ptr_eq(&b, &c), "refresh 0 never caches");
        cache.forget();
        let d = cache.resolve(&dns, &origin, -1).unwrap();
        assert!(!Arc::ptr_eq(&c, &d));
        assert_eq!(&*d, &["127.0.0.1:9".parse().unwrap()]);
    }

    #[test]
    fn background_refreshes_follow_the_refresh_timeout() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(background_refresh_at(t0, 120_000), Some(t0 + s(120)));
        assert_eq!(
            background_refresh_at(t0, 0),
            Some(t0 + MIN_BACKGROUND_REFRESH)
        );
        assert_eq!(
            background_refresh_at(t0, 10),
            Some(t0 + MIN_BACKGROUND_REFRESH)
        );
        assert_eq!(background_refresh_at(t0, -1), None);
    }

    #[test]
    fn a_connection_matches_an_answer_by_address_and_port() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let answer = [a("127.0.0.1:80"), a("[::1]:80")];
        assert!(!address_left(a("127.0.0.1:80"), &answer));
        assert!(!address_left(a("[::1]:80"), &answer));
        assert!(address_left(a("127.0.0.2:80"), &answer));
        assert!(address_left(a("127.0.0.1:81"), &answer));
        assert!(address_left(a("127.0.0.1:80"), &[]));
    }

    #[test]
    fn a_custom_resolver_answers_and_its_errors_are_dns_errors() {
        let origin = crate::origin::parse("http://backend.test:8080/")
            .unwrap()
            .origin
            .clone();
        let dns = Resolution::default();
        dns.set_resolver(Some(Arc::new(|host: &str, port| {
            assert_eq!((host, port), ("backend.test", 8080));
            Ok(vec![SocketAddr::from(([127, 0, 0, 9], port))])
        })));
        assert_eq!(
            &*dns.lookup(&origin).unwrap(),
            &["127.0.0.9:8080".parse().unwrap()]
        );
        dns.set_resolver(Some(Arc::new(|_: &str, _| Ok(Vec::new()))));
        assert_eq!(dns.lookup(&origin).unwrap_err().kind, ErrorKind::Dns);
        dns.set_resolver(Some(Arc::new(|_: &str, _| {
            Err(std::io::Error::other("SERVFAIL"))
        })));
        let e = dns.lookup(&origin).unwrap_err();
        assert!(e.message.contains("SERVFAIL"), "{}", e.message);
    }

    #[test]
    fn unknown_hosts_are_dns_errors() {
        let origin = crate::origin::parse("http://no-such-host.invalid/")
            .unwrap()
            .origin
            .clone();
        let e = AddressCache::default()
            .resolve(&Resolution::default(), &origin, 1000)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Dns);
        assert!(e.message.contains("no-such-host.invalid"));
    }
}
