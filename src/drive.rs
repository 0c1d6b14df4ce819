//! How a request waits: on the caller's thread (blocking) or on the runtime's reactor
//! (asynchronous). The exchange is written once, as async code over a [`Driver`]:
//!
//! - `Blocking` never suspends: every wait is a `poll(2)` inside the I/O step, so the future
//!   completes on its first poll ([`Driver::block`]) and the blocking path keeps its cost.
//! - `Async` runs each I/O step without blocking (`connection::run_step`); a step that would
//!   wait reports what it waits for, the task awaits that readiness (or the deadline, or a
//!   cancel) and runs the step again. Steps are written to be re-run: they keep their progress
//!   in the connection or in variables outside the step.
//!
//! Both share the pool's FIFO queue, the reuse rules and the statistics.

use crate::cancel::{self, CancelToken};
use crate::connection::{self, Connecting, Connection, Fault, Socket, SocketOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::http1::{head, request as encode};
use crate::local::Local;
use crate::origin::{Origin, Scheme};
use crate::point::ServicePoint;
use crate::pool::{AcquireError, Grant, Pool, Ticket};
use crate::proxy::Proxy;
use crate::reuse::Settings;
use rustls::ClientConfig;
use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The waiting style of one request (or body read).
pub enum Driver {
    /// On the caller's thread; cancel tokens are watched through `cancel::watching`.
    Blocking,
    /// On the runtime, ended early by any of these tokens.
    Async(Vec<CancelToken>),
    /// On the thread that drains a completion queue (`local`), ended early by these tokens.
    Local(Vec<CancelToken>, Arc<Local>),
}

impl Driver {
    /// Runs a future of this driver's code to its end. For `Blocking` that is one poll: it
    /// never suspends.
    pub fn block<F: Future>(&self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(out) => out,
            Poll::Pending => unreachable!("blocking driver code never suspends"),
        }
    }

    /// True when a token of this request was canceled.
    pub fn is_canceled(&self) -> bool {
        match self {
            Driver::Blocking => cancel::watched_canceled(),
            Driver::Async(tokens) | Driver::Local(tokens, _) => {
                tokens.iter().any(CancelToken::is_canceled)
            }
        }
    }

    /// Fails with `Canceled` once a token was canceled.
    pub fn check(&self, what: &str) -> Result<()> {
        if self.is_canceled() {
            return Err(cancel::canceled_error(what));
        }
        Ok(())
    }

    /// Resolves when a token is canceled (never for a blocking driver). Boxed, one allocation
    /// per wait: inline, the watch of three tokens would enlarge every pending operation's
    /// state (memory per pending request is bounded); one box per token and a list of them,
    /// as before, cost three or four allocations per wait.
    fn canceled(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let tokens = match self {
            Driver::Async(tokens) | Driver::Local(tokens, _) => tokens.as_slice(),
            Driver::Blocking => &[],
        };
        // An operation watches one to three tokens (its own, its description's, its queue's).
        match tokens {
            // A zero-sized future: no allocation.
            [] => Box::pin(std::future::pending()),
            [a] => Box::pin(a.canceled()),
            [a, b] => Box::pin(async move {
                tokio::select! {
                    biased;
                    () = a.canceled() => {}
                    () = b.canceled() => {}
                }
            }),
            [a, b, c] => Box::pin(async move {
                tokio::select! {
                    biased;
                    () = a.canceled() => {}
                    () = b.canceled() => {}
                    () = c.canceled() => {}
                }
            }),
            more => Box::pin(futures_select_all(
                more.iter().map(|t| Box::pin(t.canceled())),
            )),
        }
    }

    /// Runs an I/O step on `socket` until it no longer waits (see the module's doc).
    pub async fn io<S: Socket, T>(
        &self,
        socket: &mut S,
        deadline: Option<Instant>,
        mut step: impl FnMut(&mut S) -> T,
    ) -> T {
        if matches!(self, Driver::Blocking) {
            return step(socket);
        }
        let mut fault = None;
        // What the queue's epoll saw ready last time (for `run_step_level`).
        let mut seen = None;
        loop {
            if self.is_canceled() {
                fault = Some(Fault::Canceled);
            }
            let (out, pending) = match self {
                Driver::Local(..) => {
                    connection::run_step_level(fault, seen.take(), || step(socket))
                }
                _ => connection::run_step(fault, || step(socket)),
            };
            let Some(pending) = pending else {
                return out;
            };
            drop(out);
            let ready = async {
                match self {
                    Driver::Local(_, local) => {
                        let known = socket.reactor().registered_with(local.id(), pending.fd);
                        local
                            .ready(pending.fd, pending.events, deadline, known)
                            .await
                            .map(|bits| {
                                bits.map(|events| connection::Pending {
                                    fd: pending.fd,
                                    events,
                                })
                            })
                    }
                    _ => socket
                        .reactor()
                        .ready(pending, deadline)
                        .await
                        .map(|()| None),
                }
            };
            tokio::select! {
                biased;
                ready = ready => match ready {
                    Ok(bits) => seen = bits,
                    Err(_) => fault = Some(Fault::NoReactor),
                },
                () = self.canceled() => fault = Some(Fault::Canceled),
            }
        }
    }

    /// Resolves at `deadline` (never without one): on the runtime's timers, or on the
    /// completion queue's.
    async fn sleep_until(&self, deadline: Option<Instant>) {
        match (deadline, self) {
            (None, _) => std::future::pending().await,
            (Some(d), Driver::Local(_, local)) => local.sleep_until(d).await,
            (Some(d), _) => tokio::time::sleep_until(d.into()).await,
        }
    }

    /// Waits until one of the connecting sockets is writable (or in error), `until` passes, or
    /// (then failing) the request is canceled.
    async fn wait_any_writable(
        &self,
        racers: &mut [(SocketAddr, Connecting)],
        until: Option<Instant>,
    ) -> Result<()> {
        let canceled = || cancel::canceled_error("the connect");
        match self {
            Driver::Blocking => {
                let mut fds = racer_pollfds(racers);
                fds.extend(cancel::watched_fd().map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                }));
                let ms = connection::poll_timeout_ms(until);
                // SAFETY: `fds` holds valid pollfds for the duration of the call.
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
                if cancel::watched_canceled() {
                    return Err(canceled());
                }
                Ok(())
            }
            Driver::Async(_) => {
                let waits = racers.iter_mut().map(|(_, c)| {
                    let pending = connection::Pending {
                        fd: c.fd(),
                        events: libc::POLLOUT,
                    };
                    Box::pin(async move {
                        let _ = c.reactor().ready(pending, until).await;
                    })
                });
                tokio::select! {
                    biased;
                    () = futures_select_all(waits) => Ok(()),
                    () = self.canceled() => Err(canceled()),
                }
            }
            Driver::Local(_, local) => {
                let waits = racers.iter().map(|(_, c)| {
                    let ready = local.ready(c.fd(), libc::POLLOUT, until, false);
                    Box::pin(async move {
                        let _ = ready.await;
                    })
                });
                tokio::select! {
                    biased;
                    () = futures_select_all(waits) => Ok(()),
                    () = self.canceled() => Err(canceled()),
                }
            }
        }
    }

    /// A grant from the pool: waits in its FIFO queue (the thread, or the task).
    pub async fn acquire(
        &self,
        pool: &Pool,
        limit: usize,
        settings: Settings,
        deadline: Option<Instant>,
        offer: Option<crate::pipeline::Offer>,
    ) -> std::result::Result<(Grant, Ticket), AcquireError> {
        if matches!(self, Driver::Blocking) {
            return pool.acquire(limit, &settings, deadline, offer);
        }
        if self.is_canceled() {
            return Err(AcquireError::Canceled);
        }
        let sleep = self.sleep_until(deadline);
        let turn_on = {
            let mut acquire = std::pin::pin!(pool.acquire_async(limit, settings, offer));
            tokio::select! {
                biased;
                () = self.canceled() => return Err(AcquireError::Canceled),
                granted = &mut acquire => {
                    // A grant that reached a request canceled meanwhile goes to the next one.
                    if granted.is_ok() && self.is_canceled() {
                        pool.give_back(granted, limit, &settings);
                        return Err(AcquireError::Canceled);
                    }
                    return granted;
                }
                () = sleep => {}
            }
            acquire.turn_on()
        };
        // Out of time: the request left the queue (or its line) as `acquire` dropped.
        Err(pool.timeout(turn_on))
    }

    /// The point's addresses. An asynchronous request looks them up on the runtime's blocking
    /// pool when they are not cached (`getaddrinfo` cannot be awaited).
    pub async fn resolve(
        &self,
        point: &Arc<ServicePoint>,
        deadline: Option<Instant>,
    ) -> Result<Arc<[SocketAddr]>> {
        if let Some(addrs) = point.cached_addresses() {
            return Ok(addrs);
        }
        if crate::resolve::is_ip_literal(point.dial()) {
            return point.resolve();
        }
        if matches!(self, Driver::Blocking) {
            return resolve_blocking(point, deadline);
        }
        // One lookup at a time per point; the others find its result in the cache.
        let _lookup = tokio::select! {
            biased;
            guard = point.address_cache().lookup.lock() => guard,
            () = self.canceled() => return Err(cancel::canceled_error("the name lookup")),
        };
        if let Some(addrs) = point.cached_addresses() {
            return Ok(addrs);
        }
        let p = Arc::clone(point);
        let lookup = crate::runtime::handle().spawn_blocking(move || p.resolve());
        let sleep = self.sleep_until(deadline);
        tokio::select! {
            biased;
            found = lookup => found.unwrap_or_else(|e| {
                Err(Error::new(ErrorKind::Dns, format!("name lookup failed: {e}")))
            }),
            () = self.canceled() => Err(cancel::canceled_error("the name lookup")),
            () = sleep => Err(lookup_timed_out(point)),
        }
    }
}

fn lookup_timed_out(point: &ServicePoint) -> Error {
    Error::new(
        ErrorKind::ConnectTimeout,
        format!("name lookup for {} timed out", point.address()),
    )
}

/// A lookup on the caller's thread cannot be interrupted: with a deadline (or a cancel token
/// watched), it runs on the runtime's blocking pool and the caller waits for it no longer than
/// the deadline (the lookup still fills the cache when it ends).
fn resolve_blocking(
    point: &Arc<ServicePoint>,
    deadline: Option<Instant>,
) -> Result<Arc<[SocketAddr]>> {
    let watched = cancel::watched_fd().is_some();
    if deadline.is_none() && !watched {
        return point.resolve();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let p = Arc::clone(point);
    crate::runtime::handle().spawn_blocking(move || {
        let _ = tx.send(p.resolve());
    });
    loop {
        if cancel::watched_canceled() {
            return Err(cancel::canceled_error("the name lookup"));
        }
        let slice = std::time::Duration::from_millis(20);
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(slice),
            None => slice,
        };
        match rx.recv_timeout(wait) {
            Ok(found) => return found,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::new(ErrorKind::Dns, "name lookup failed"));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(lookup_timed_out(point));
                }
            }
        }
    }
}

/// How long one address may take when others are left to try: its share of the time left
/// (at least 250 ms, RFC 8305's connection attempt delay; 10 s without a deadline), so a dead
/// address cannot use up the whole connect timeout.
fn attempt_deadline(deadline: Option<Instant>, addresses_left: usize) -> Option<Instant> {
    if addresses_left <= 1 {
        return deadline;
    }
    let now = Instant::now();
    let share = match deadline {
        Some(d) => (d.saturating_duration_since(now) / addresses_left as u32)
            .max(std::time::Duration::from_millis(250)),
        None => std::time::Duration::from_secs(10),
    };
    connection::earliest(now.checked_add(share), deadline)
}

/// Resolves when the first of `futures` does.
async fn futures_select_all<F: Future<Output = ()> + Unpin>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(|cx| {
        for f in futures.iter_mut() {
            if std::pin::Pin::new(f).poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Connects to the first of `addrs` that answers, opens a `CONNECT` tunnel to `origin` when
/// `tunnel` names the proxy that `addrs` belong to, and, for https, completes the TLS handshake
/// with `tls` (SNI and certificate checked against the origin's name). `track` is shown each socket before it connects (the pool keeps it so that
/// freeing the manager can abort the connect); it returns false when the pool is closed. The
/// connect timeout in `options`, if any, shortens the deadline of the connect and handshake.
#[allow(clippy::too_many_arguments)]
pub async fn connect(
    driver: &Driver,
    origin: &Origin,
    tunnel: Option<&Proxy>,
    addrs: &[SocketAddr],
    tls: Option<Arc<ClientConfig>>,
    options: &SocketOptions,
    deadline: Option<Instant>,
    generation: u64,
    track: &mut (dyn FnMut(&Arc<TcpStream>) -> bool + Send),
) -> Result<Connection> {
    let deadline = connection::connect_deadline(options, deadline);
    // A tunnel's addresses are its proxy's: say so in a connect error.
    let failed = |addr: SocketAddr, e: &std::io::Error| {
        let mut error = connection::connect_error(origin, addr, e);
        if let Some(proxy) = tunnel {
            error.message.push_str(&format!(" (through {proxy})"));
        }
        error
    };
    let mixed = addrs.iter().any(SocketAddr::is_ipv6) && addrs.iter().any(SocketAddr::is_ipv4);
    let connected = if mixed {
        race(driver, origin, addrs, options, deadline, track, &failed).await?
    } else {
        in_turn(driver, origin, addrs, options, deadline, track, &failed).await?
    };
    let mut conn = connected.into_connection(generation);
    if let Some(proxy) = tunnel {
        open_tunnel(driver, &mut conn, origin, proxy, deadline).await?;
    }
    if origin.scheme == Scheme::Https {
        let config =
            tls.ok_or_else(|| Error::new(ErrorKind::TlsHandshake, "no TLS configuration"))?;
        conn.start_tls(origin, config)?;
        driver
            .io(&mut conn, deadline, |c| {
                c.continue_handshake(origin, deadline)
            })
            .await?;
    }
    Ok(conn)
}

/// The error of a connect the freeing of the manager cut short (`track` said so).
fn manager_freed(origin: &Origin) -> Error {
    Error::new(
        ErrorKind::ManagerClosed,
        format!("the manager of {origin} was freed"),
    )
}

/// Tries `addrs` one after the other (one address family), each with its share of the time
/// left; the first that connects is returned.
#[allow(clippy::too_many_arguments)]
async fn in_turn(
    driver: &Driver,
    origin: &Origin,
    addrs: &[SocketAddr],
    options: &SocketOptions,
    deadline: Option<Instant>,
    track: &mut (dyn FnMut(&Arc<TcpStream>) -> bool + Send),
    failed: &(dyn Fn(SocketAddr, &std::io::Error) -> Error + Sync),
) -> Result<Connecting> {
    let mut last = None;
    for (i, &addr) in addrs.iter().enumerate() {
        let attempt = attempt_deadline(deadline, addrs.len() - i);
        let mut connecting = match Connecting::start(addr, options) {
            Ok(c) => c,
            Err(e) => {
                last = Some(failed(addr, &e));
                continue;
            }
        };
        if !track(connecting.socket()) {
            return Err(manager_freed(origin));
        }
        match driver
            .io(&mut connecting, attempt, |c| c.finish(attempt))
            .await
        {
            Ok(()) => return Ok(connecting),
            Err(e) => {
                let error = failed(addr, &e);
                if error.kind == ErrorKind::Canceled {
                    return Err(error);
                }
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::new(
            ErrorKind::Dns,
            format!("no address to connect to for {origin}"),
        )
    }))
}

/// RFC 8305's connection attempt delay: the next address starts this long after the last one
/// if neither has connected.
const ATTEMPT_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// Happy Eyeballs (RFC 8305) for a host with IPv6 and IPv4 addresses (`addrs` interleaved by
/// family): the attempts start one after the other, 250 ms apart or as soon as one fails, and
/// keep running side by side; the first to connect wins and the others are closed.
#[allow(clippy::too_many_arguments)]
async fn race(
    driver: &Driver,
    origin: &Origin,
    addrs: &[SocketAddr],
    options: &SocketOptions,
    deadline: Option<Instant>,
    track: &mut (dyn FnMut(&Arc<TcpStream>) -> bool + Send),
    failed: &(dyn Fn(SocketAddr, &std::io::Error) -> Error + Sync),
) -> Result<Connecting> {
    let mut racers: Vec<(SocketAddr, Connecting)> = Vec::new();
    let mut next = 0;
    let mut next_start = Instant::now();
    let mut last = None;
    loop {
        driver.check("the connect")?;
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            let e = std::io::Error::from(std::io::ErrorKind::TimedOut);
            return Err(match racers.first() {
                Some((addr, _)) => failed(*addr, &e),
                None => last.unwrap_or_else(|| failed(addrs[0], &e)),
            });
        }
        if next < addrs.len() && (racers.is_empty() || now >= next_start) {
            let addr = addrs[next];
            next += 1;
            next_start = now + ATTEMPT_DELAY;
            match Connecting::start(addr, options) {
                Ok(c) => {
                    if !track(c.socket()) {
                        return Err(manager_freed(origin));
                    }
                    racers.push((addr, c));
                }
                Err(e) => last = Some(failed(addr, &e)),
            }
            continue;
        }
        if racers.is_empty() {
            return Err(
                last.unwrap_or_else(|| Error::new(ErrorKind::Connect, "no address could be tried"))
            );
        }
        let wake = (next < addrs.len()).then_some(next_start);
        let until = connection::earliest(wake, deadline);
        driver.wait_any_writable(&mut racers, until).await?;
        for i in writable(&racers).into_iter().rev() {
            let (addr, connecting) = racers.remove(i);
            match connecting.check() {
                Ok(()) => return Ok(connecting),
                Err(e) => last = Some(failed(addr, &e)),
            }
        }
    }
}

/// One pollfd per racer, waiting for it to connect (writable) or fail.
fn racer_pollfds(racers: &[(SocketAddr, Connecting)]) -> Vec<libc::pollfd> {
    racers
        .iter()
        .map(|(_, c)| libc::pollfd {
            fd: c.fd(),
            events: libc::POLLOUT,
            revents: 0,
        })
        .collect()
}

/// The racers whose sockets are writable (connected) or in error now (one `poll(2)`).
fn writable(racers: &[(SocketAddr, Connecting)]) -> Vec<usize> {
    let mut fds = racer_pollfds(racers);
    // SAFETY: `fds` holds valid pollfds for the duration of the call; zero timeout.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    fds.iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .map(|(i, _)| i)
        .collect()
}

/// Asks the proxy on `conn` for a tunnel to `origin` (`CONNECT host:port`, with the proxy's
/// credentials) and reads its answer: 2xx opens the tunnel; 407 is `ProxyAuth`, any other
/// status `ProxyConnect`, both with the proxy's status line. Two restartable steps.
async fn open_tunnel(
    driver: &Driver,
    conn: &mut Connection,
    origin: &Origin,
    proxy: &Proxy,
    deadline: Option<Instant>,
) -> Result<()> {
    let mut request = Vec::new();
    encode::encode_connect(
        &Proxy::authority(origin),
        proxy.authorization.as_deref(),
        crate::exchange::USER_AGENT,
        &mut request,
    );
    let mut progress = 0;
    let io_error = |e: std::io::Error, what: &str| {
        Error::from_io(
            &e,
            &format!("{what} ({proxy}, tunnel to {origin})"),
            ErrorKind::ConnectTimeout,
        )
    };
    driver
        .io(conn, deadline, |c| {
            c.send(&[&request], &mut progress, deadline, false)
        })
        .await
        .map_err(|e| io_error(e, "sending CONNECT"))?;
    let mut received_any = false;
    let answer = driver
        .io(conn, deadline, |c| {
            head::read_head(c, deadline, &mut received_any)
        })
        .await
        .map_err(|mut e| {
            e.message = format!(
                "{proxy}, CONNECT {}: {}",
                Proxy::authority(origin),
                e.message
            );
            if e.kind == ErrorKind::ResponseTimeout {
                e.kind = ErrorKind::ConnectTimeout;
            }
            e
        })?;
    let status_line = format!(
        "HTTP/1.{} {} {}",
        answer.minor_version, answer.status, answer.reason
    );
    let refused = |kind, why: &str| {
        Err(Error::new(
            kind,
            format!(
                "{proxy} {why} the tunnel to {} (CONNECT answered '{status_line}')",
                Proxy::authority(origin)
            ),
        ))
    };
    match answer.status {
        200..=299 if conn.buffered().is_empty() => Ok(()),
        200..=299 => Err(Error::new(
            ErrorKind::Protocol,
            format!("{proxy} sent bytes after its answer to CONNECT, before the tunnel's TLS"),
        )),
        407 if proxy.authorization.is_some() => {
            refused(ErrorKind::ProxyAuth, "rejected the credentials for")
        }
        407 => refused(
            ErrorKind::ProxyAuth,
            "wants credentials (none in the proxy URL) for",
        ),
        _ => refused(ErrorKind::ProxyConnect, "refused"),
    }
}
