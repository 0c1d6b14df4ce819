//! One request on a service point: take a connection from its group's pool, decide the
//! `Connection` header (keep-alive, lease timeout, request caps), send, read the head, and retry once
//! on a fresh connection when a reused one turns out stale before any response byte.
//!
//! Written once for blocking and asynchronous requests, as async code over a `Driver` (see
//! `drive`): `send` runs it on the caller's thread, `send_with` on the runtime.

use crate::cancel;
use crate::connection::{CloseReason, Connection, Sent};
use crate::drive::{self, Driver};
use crate::error::{Error, ErrorKind, Result};
use crate::expect::{self, Answer};
use crate::http1::body::{self, Framing};
use crate::http1::head::{self, ResponseHead};
use crate::http1::request::{self as encode, BodyFraming, RequestHead};
use crate::origin::Scheme;
use crate::point::ServicePoint;
use crate::pool::{AcquireError, Grant};
use crate::proxy::Route;
use crate::request::{Body, BodySource, Request};
use crate::response::{Checkout, Delivery, Response};
use crate::reuse;
use crate::stats::Stats;
use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

pub const USER_AGENT: &str = concat!("servicepoint/", env!("CARGO_PKG_VERSION"));
/// Size of the pieces a streamed request body is read and sent in.
const STREAM_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Request heads are encoded here: no allocation per request on a warm thread.
    static HEAD_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// A failed attempt, and whether any response byte had arrived (see `reuse::is_stale`).
struct AttemptError {
    error: Error,
    response_started: bool,
}

/// Sends `req` on `point` and returns the response once its head has arrived; blocks the
/// calling thread.
pub fn send(
    point: &Arc<ServicePoint>,
    req: &Request,
    keep_alive_default: bool,
) -> Result<Response> {
    let driver = Driver::Blocking;
    driver.block(exchange::<Inline>(&driver, point, req, keep_alive_default))
}

/// `send` in the style of `driver` (an asynchronous one: the future is spawned, so its large
/// parts are boxed, see `Heap`).
pub async fn send_with(
    driver: &Driver,
    point: &Arc<ServicePoint>,
    req: &Request,
    keep_alive_default: bool,
) -> Result<Response> {
    exchange::<Heap>(driver, point, req, keep_alive_default).await
}

/// Where the exchange keeps the futures of its large steps (opening a connection, an
/// attempt). A blocking exchange runs on the caller's stack: inline, no allocation. A spawned
/// one boxes them, so that a request waiting in the queue carries only the queue wait's state
/// (a few hundred bytes, not the exchange's kilobytes).
trait Placement {
    type Placed<F: Future>: Future<Output = F::Output>;
    fn place<F: Future>(future: F) -> Self::Placed<F>;
}

struct Inline;

impl Placement for Inline {
    type Placed<F: Future> = F;
    fn place<F: Future>(future: F) -> F {
        future
    }
}

struct Heap;

impl Placement for Heap {
    type Placed<F: Future> = std::pin::Pin<Box<F>>;
    fn place<F: Future>(future: F) -> std::pin::Pin<Box<F>> {
        Box::pin(future)
    }
}

async fn exchange<P: Placement>(
    driver: &Driver,
    point: &Arc<ServicePoint>,
    req: &Request,
    keep_alive_default: bool,
) -> Result<Response> {
    point.check_open()?;
    driver.check("the request")?;
    let start = Instant::now();
    let deadline = req.timeout.and_then(|t| start.checked_add(t));
    let pool = point.group(&req.group);
    let keep_alive = req.keep_alive.unwrap_or(keep_alive_default);
    let mut retried = false;
    // Set after a 417: the request goes again without `Expect: 100-continue`.
    let mut no_expect = false;
    // Whether an earlier attempt (before a retry) may have reached the server.
    let mut sent_before_retry = false;
    loop {
        let limit = point.connection_limit();
        // Read once per attempt: the pool's idle checks and the Connection header agree.
        let settings = point.reuse_settings();
        let queued_at = Instant::now();
        let (grant, ticket) = driver
            .acquire(&pool, limit, settings, deadline)
            .await
            .map_err(|e| match e {
                    AcquireError::Closed => point.closed_error(),
                    AcquireError::Canceled => cancel::canceled_error("the request (waiting for a connection)"),
                    AcquireError::Timeout { busy, waiting } => Error::new(
                        ErrorKind::QueueTimeout,
                        format!(
                            "connection limit queue wait exceeded {} ms for {} ({busy} busy, {waiting} waiting)",
                            start.elapsed().as_millis(),
                            point.address(),
                        ),
                    ),
                })?;
        // The Checkout first: from here on, any early return (or a panic) hands the slot back.
        let mut checkout = Checkout::new(Arc::clone(point), Arc::clone(&pool), ticket);
        point.stats.queued(queued_at.elapsed(), limit);
        // A retry never reuses: `open_or_reuse` opens a new connection for it.
        let reused = matches!(grant, Grant::Idle(_)) && !retried;
        // Opening a connection (connect, TLS) is the largest state of the exchange (placed by
        // `P`); a warm request reuses without it.
        let opened = match grant {
            Grant::Idle(conn) if !retried => {
                point.stats.reused(&conn);
                checkout.adopt(conn);
                Ok(())
            }
            grant => {
                P::place(open_or_reuse(
                    driver,
                    point,
                    &mut checkout,
                    grant,
                    retried,
                    deadline,
                ))
                .await
            }
        };
        let attempt = match opened {
            Ok(()) => {
                P::place(attempt(
                    driver,
                    point,
                    req,
                    &settings,
                    &mut checkout,
                    keep_alive,
                    no_expect,
                    deadline,
                ))
                .await
            }
            Err(error) => Err(AttemptError {
                error,
                response_started: false,
            }),
        };
        match attempt {
            Ok((_, _, close, true)) if !no_expect && matches!(req.body, Body::Bytes(_)) => {
                // 417: the server refuses the expectation; RFC 9110 says to repeat the request
                // without it (its body was never sent). The server is not asked again.
                point.expect.mark_unsupported();
                checkout.finish(Err(close.unwrap_or(CloseReason::ServerClose)));
                no_expect = true;
                continue;
            }
            Ok((head, framing, close, _)) => {
                Stats::bump(&point.stats.requests);
                point.server.responded(head.minor_version);
                return Ok(Response::new(
                    head,
                    framing,
                    close,
                    checkout,
                    req.read_timeout,
                    Delivery { reused, retried },
                ));
            }
            Err(e) => {
                let failure = reuse::Failure {
                    reused,
                    response_started: e.response_started,
                    connection_lost: e.error.kind.is_connection_lost(),
                };
                checkout.finish(Err(if reuse::is_stale(&failure) {
                    CloseReason::InFlight
                } else {
                    CloseReason::Error
                }));
                let mut error = e.error;
                error.may_have_reached_server |= sent_before_retry;
                if driver.is_canceled() {
                    let sent = error.may_have_reached_server;
                    error = cancel::canceled_error("the request");
                    error.may_have_reached_server = sent;
                } else if point.is_closed() {
                    let sent = error.may_have_reached_server;
                    error = point.closed_error();
                    error.may_have_reached_server = sent;
                } else if reuse::may_retry(&failure, &req.replay(), retried) {
                    retried = true;
                    sent_before_retry = error.may_have_reached_server;
                    point.stats.retried(&req.method, &error.message);
                    continue;
                }
                if error.may_have_reached_server {
                    error.message.push_str(&format!(
                        " ({} {}: the request was sent, the server may have processed it)",
                        req.method,
                        point.address()
                    ));
                }
                return Err(error);
            }
        }
    }
}

/// Puts a connection in the checkout: the idle one granted, or a new one (the checkout returns the
/// slot if connecting fails). A retry (`fresh`) always gets a new connection: the idle one
/// granted is closed and its slot used to open one, since a server that closed one idle
/// connection has likely closed the others of the same age.
async fn open_or_reuse(
    driver: &Driver,
    point: &Arc<ServicePoint>,
    checkout: &mut Checkout,
    grant: Grant,
    fresh: bool,
    deadline: Option<Instant>,
) -> Result<()> {
    let grant = match grant {
        Grant::Idle(conn) if fresh => {
            point.stats.closed(&conn, CloseReason::Stale);
            drop(conn);
            Grant::Open
        }
        other => other,
    };
    let conn = match grant {
        Grant::Idle(conn) => {
            point.stats.reused(&conn);
            checkout.adopt(conn);
            return Ok(());
        }
        Grant::Open => {
            let tls = match point.origin.scheme {
                Scheme::Https => Some(point.tls.client_config()?),
                Scheme::Http => None,
            };
            let addrs = point.connect_order(&driver.resolve(point, deadline).await?);
            let (pool, ticket) = (Arc::clone(checkout.pool()), *checkout.ticket());
            let mut track = |s: &Arc<std::net::TcpStream>| pool.track(&ticket, s);
            let tunnel = match &point.route {
                Route::Tunnel(proxy) => Some(&**proxy),
                _ => None,
            };
            let conn = drive::connect(
                driver,
                &point.origin,
                tunnel,
                &addrs,
                tls,
                &point.socket_options(),
                deadline,
                ticket.generation,
                &mut track,
            )
            .await
            .inspect_err(|e| {
                if !matches!(e.kind, ErrorKind::ManagerClosed | ErrorKind::Canceled) {
                    point.forget_addresses()
                }
            })?;
            point.stats.opened(&conn);
            point.server.connected(&conn);
            conn
        }
    };
    checkout.put(conn)
}

/// The response head, its framing, why the connection closes after it (if it does), and
/// whether the server refused the request's `Expect: 100-continue` (417) before its body.
type Attempt = (ResponseHead, Framing, Option<CloseReason>, bool);
type FinalHead = (ResponseHead, Framing, reuse::ResponseFacts);

#[allow(clippy::too_many_arguments)]
async fn attempt(
    driver: &Driver,
    point: &ServicePoint,
    req: &Request,
    settings: &reuse::Settings,
    checkout: &mut Checkout,
    keep_alive: bool,
    no_expect: bool,
    deadline: Option<Instant>,
) -> std::result::Result<Attempt, AttemptError> {
    let conn = checkout.conn();
    let facts = conn.facts();
    let close = reuse::close_before_send(&facts, settings, keep_alive, Instant::now());
    let announce = reuse::announce_keep_alive(&facts, close.is_some());
    conn.requests = conn.requests.saturating_add(1);
    let sent_before = conn.bytes_sent;
    let mut stream = None;
    let framing = match &req.body {
        Body::Empty => BodyFraming::None,
        Body::Bytes(b) => BodyFraming::Length(b.len() as u64),
        Body::Stream(s) => {
            stream = Some(s.lock().take().ok_or_else(|| AttemptError {
                error: Error::new(
                    ErrorKind::InvalidArgument,
                    "the streamed body was already sent",
                ),
                response_started: false,
            })?);
            BodyFraming::Chunked
        }
    };
    // Expect: 100-continue for a body, unless the server is known not to answer 100 (or is
    // HTTP/1.0), or it refused the expectation (417) on an earlier attempt.
    let has_body = match &req.body {
        Body::Empty => false,
        Body::Bytes(b) => !b.is_empty(),
        Body::Stream(_) => true,
    };
    let expect = !no_expect
        && point.expect.applies(req.expect_continue, has_body)
        && point.server.protocol_version() != (1, 0);
    // The thread's head buffer, taken for the send (an asynchronous send may end on another
    // thread) and put back after.
    let mut buf = HEAD_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    encode_head(
        point,
        req,
        framing,
        close.is_some(),
        announce,
        expect,
        &mut buf,
    );
    let sent = {
        let parts: &[&[u8]] = match &req.body {
            Body::Bytes(b) if !expect => &[&buf, b],
            _ => &[&buf],
        };
        send_all(driver, conn, parts, deadline).await
    };
    HEAD_BUF.with(|b| *b.borrow_mut() = buf);
    let io_err =
        |e: std::io::Error| Error::from_io(&e, "sending request", ErrorKind::ResponseTimeout);
    // With the expectation, the server's word decides whether the body goes.
    let mut body_withheld = false;
    let send_body = match sent {
        Ok(true) if expect => {
            let until = point.expect.wait_until(Instant::now(), deadline);
            match driver
                .io(conn, until, |c| expect::await_continue(c, until))
                .await
            {
                Ok(Answer::Continue) => Ok(true),
                Ok(Answer::Timeout) => {
                    point.expect.mark_unsupported();
                    Ok(true)
                }
                Ok(Answer::Final) => {
                    body_withheld = true;
                    Ok(false)
                }
                Err(e) => Err(io_err(e)),
            }
        }
        other => other.map_err(io_err),
    };
    let sent = match send_body {
        Ok(true) => match (&req.body, stream) {
            (_, Some(source)) => send_stream(driver, conn, source, deadline).await,
            (Body::Bytes(b), None) if expect => {
                send_all(driver, conn, &[b], deadline).await.map_err(io_err)
            }
            _ => Ok(true),
        },
        // Refused before the body: a chunked body is ended empty so the connection's framing
        // holds (a Content-Length one cannot be, and the connection closes after the answer).
        Ok(false) if body_withheld && stream.is_some() => {
            send_all(driver, conn, &[b"0\r\n\r\n"], deadline)
                .await
                .map_err(io_err)
        }
        other => other,
    };
    // Whether the request went out whole; a failed or cut-short send may still have drawn an
    // answer (a 413 before the body was read): look for it before reporting the failure.
    let complete = match sent {
        Ok(complete) => complete,
        Err(error) => {
            if conn.bytes_sent == sent_before {
                // Nothing left the client (on a reused connection, a lost one is stale).
                return Err(AttemptError {
                    error,
                    response_started: false,
                });
            }
            if !error.kind.is_connection_lost() && error.kind != ErrorKind::Io {
                return Err(AttemptError {
                    error: error.sent(),
                    response_started: false,
                });
            }
            let mut received_any = false;
            let answer = driver
                .io(conn, deadline, |c| {
                    read_final_head(c, req, deadline, &mut received_any)
                })
                .await;
            match answer {
                Ok((head, framing, facts)) => {
                    conn.hint = facts.hint;
                    return Ok((head, framing, Some(CloseReason::ServerClose), false));
                }
                Err((_, response_started)) => {
                    return Err(AttemptError {
                        error: error.sent(),
                        response_started,
                    });
                }
            }
        }
    };
    let mut received_any = false;
    let (head, framing, facts) = driver
        .io(conn, deadline, |c| {
            read_final_head(c, req, deadline, &mut received_any)
        })
        .await
        .map_err(|(e, response_started)| AttemptError {
            error: e.sent(),
            response_started,
        })?;
    conn.hint = facts.hint;
    let close = if complete {
        close.or_else(|| reuse::close_after_response(&facts))
    } else {
        // The server answered before taking the whole request: the rest of it would be read
        // as the next request, so the connection ends with this response.
        Some(CloseReason::ServerClose)
    };
    let refused = body_withheld && head.status == 417;
    Ok((head, framing, close, refused))
}

/// Encodes the request head into `buf`. Through a forwarding proxy: the absolute form, the
/// origin's Host and the proxy's credentials (a plain function, so that nothing of this is
/// kept in the exchange's asynchronous state).
#[allow(clippy::too_many_arguments)]
fn encode_head(
    point: &ServicePoint,
    req: &Request,
    body: BodyFraming,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    buf: &mut Vec<u8>,
) {
    let forward = match &point.route {
        Route::Forward(proxy) => Some((
            format!("{}{}", req.target.origin, req.target.path_and_query),
            req.target.origin.host_header(),
            proxy.authorization.as_deref(),
        )),
        _ => None,
    };
    let (target, host, proxy_authorization) = match &forward {
        Some((target, host, auth)) => (target.as_str(), host.as_str(), *auth),
        None => (
            req.target.path_and_query.as_str(),
            point.host_header(),
            None,
        ),
    };
    let head = RequestHead {
        method: &req.method,
        target,
        host,
        headers: &req.headers,
        body,
        close,
        keep_alive,
        expect_continue,
        proxy_authorization,
    };
    encode::encode(&head, USER_AGENT, buf);
}

/// Reads the final response head, decides its body framing and gathers what the reuse rules
/// need from it (once per response); on failure, tells whether any response byte had arrived
/// (`received_any` keeps that across re-runs of the step).
fn read_final_head(
    conn: &mut Connection,
    req: &Request,
    deadline: Option<Instant>,
    received_any: &mut bool,
) -> std::result::Result<FinalHead, (Error, bool)> {
    let head = head::read_head(conn, deadline, received_any).map_err(|e| (e, *received_any))?;
    let framing = body::framing(&req.method, &head).map_err(|e| (e, true))?;
    let facts = head.reuse_facts(framing == Framing::Close);
    Ok((head, framing, facts))
}

/// Sends `parts` in the style of `driver` (see `send_watching`).
async fn send_all(
    driver: &Driver,
    conn: &mut Connection,
    parts: &[&[u8]],
    deadline: Option<Instant>,
) -> std::io::Result<bool> {
    let mut progress = 0;
    driver
        .io(conn, deadline, |c| {
            send_watching(c, parts, &mut progress, deadline)
        })
        .await
}

/// Sends request bytes from `progress` on; returns false when the server answered (or closed)
/// before taking them all, so the caller stops sending and reads the answer. Interim 1xx
/// answers that arrive meanwhile are skipped and sending goes on.
fn send_watching(
    conn: &mut Connection,
    parts: &[&[u8]],
    progress: &mut usize,
    deadline: Option<Instant>,
) -> std::io::Result<bool> {
    loop {
        match conn.send(parts, progress, deadline, true)? {
            Sent::All => return Ok(true),
            Sent::Interrupted => {
                if !head::skip_interim(conn)? {
                    return Ok(false);
                }
            }
        }
    }
}

/// Sends a streamed body with chunked transfer coding; false when the server answered before
/// the end of it.
async fn send_stream(
    driver: &Driver,
    conn: &mut Connection,
    mut source: Box<dyn BodySource>,
    deadline: Option<Instant>,
) -> Result<bool> {
    let mut buf = vec![0u8; STREAM_CHUNK];
    let io_err =
        |e: std::io::Error| Error::from_io(&e, "sending request body", ErrorKind::ResponseTimeout);
    loop {
        let n = crate::callback::run(|| source.read(&mut buf)).map_err(|m| {
            Error::new(
                ErrorKind::BodySource,
                format!("request body source failed: {m}"),
            )
        })?;
        if n > buf.len() {
            return Err(Error::new(
                ErrorKind::BodySource,
                "request body source overran its buffer",
            ));
        }
        let header = encode::chunk_header(n);
        let parts: &[&[u8]] = if n == 0 {
            &[header.as_bytes()]
        } else {
            &[header.as_bytes(), &buf[..n], b"\r\n"]
        };
        if !send_all(driver, conn, parts, deadline)
            .await
            .map_err(io_err)?
        {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}
