//! One request on a service point: take a connection from its group's pool, decide the
//! `Connection` header (keep-alive, lease timeout, request caps), send, read the head, and retry once
//! on a fresh connection when a reused one turns out stale before any response byte.
//!
//! With pipelining (see `pipeline`), a request queued at the limit may instead be written by
//! a busy connection's holder (`top_up`) and get that connection when its turn comes
//! (`turn_attempt`: nothing to send, read the response); one whose connection ended before
//! its response is replayed, once, on a new connection.
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
use crate::pipeline::{self, Offer};
use crate::point::ServicePoint;
use crate::pool::{AcquireError, Grant, Pool, Ticket};
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
    // Sent once before: after a stale connection (`fresh`: on a new connection) or as a
    // replay of a pipelined request (on any connection). Either way, never again.
    let mut retried = false;
    let mut fresh = false;
    // Set after a 417: the request goes again without `Expect: 100-continue`.
    let mut no_expect = false;
    // Whether an earlier attempt (before a retry) may have reached the server.
    let mut sent_before_retry = false;
    loop {
        let limit = point.connection_limit();
        // Read once per attempt: the pool's idle checks and the Connection header agree.
        let settings = point.reuse_settings();
        let queued_at = Instant::now();
        let offer = pipeline_offer(point, req, keep_alive, retried || no_expect);
        let (grant, ticket) = match driver
            .acquire(&pool, limit, settings, deadline, offer)
            .await
        {
            Ok(granted) => granted,
            Err(AcquireError::Replay) => {
                // Written behind a response after which the connection ended: once more, on a
                // new connection, not pipelined.
                point.stats.replayed(&req.method);
                retried = true;
                sent_before_retry = true;
                continue;
            }
            Err(e) => return Err(acquire_error(point, e, start)),
        };
        // The Checkout first: from here on, any early return (or a panic) hands the slot back.
        let mut checkout = Checkout::new(Arc::clone(point), Arc::clone(&pool), ticket);
        point.stats.queued(queued_at.elapsed(), limit);
        // A retry after a stale connection never reuses (below). A turn is on a connection
        // that served others.
        let turn = matches!(grant, Grant::Turn(_));
        let reused = turn || (matches!(grant, Grant::Idle(_)) && !fresh);
        // Opening a connection (connect, TLS) is the largest state of the exchange (placed by
        // `P`); a warm request reuses without it.
        let opened = match grant {
            Grant::Idle(conn) | Grant::Turn(conn) if reused => {
                point.stats.reused(&conn);
                checkout.adopt(conn);
                Ok(())
            }
            grant => {
                // A retry (`fresh`) granted an idle connection closes it and uses its slot for
                // a new one: a server that closed one idle connection has likely closed the
                // others of the same age.
                if let Grant::Idle(stale) = grant {
                    point.stats.closed(&stale, CloseReason::Stale);
                }
                P::place(open_new(driver, point, &mut checkout, deadline)).await
            }
        };
        let attempt = match opened {
            // Boxed whatever the placement: only pipelined requests pay for its state.
            Ok(()) if turn => {
                Box::pin(turn_attempt(
                    driver,
                    point,
                    req,
                    &settings,
                    &mut checkout,
                    deadline,
                ))
                .await
            }
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
                if turn && e.error.kind == ErrorKind::Protocol {
                    point.refuse_pipelining("it answered a pipelined request out of protocol");
                }
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
                    fresh = true;
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

/// The error of a request that got no connection.
fn acquire_error(point: &ServicePoint, e: AcquireError, start: Instant) -> Error {
    let waited = start.elapsed().as_millis();
    match e {
        AcquireError::Closed => point.closed_error(),
        AcquireError::Canceled | AcquireError::Replay => {
            cancel::canceled_error("the request (waiting for a connection)")
        }
        AcquireError::Timeout {
            turn_on: Some(id), ..
        } => Error::new(
            ErrorKind::ResponseTimeout,
            format!(
                "timed out after {waited} ms waiting for its turn on pipelined connection {id} to {}: \
                 a response ahead of it was not read to the end or freed in time (the request was sent)",
                point.address(),
            ),
        )
        .sent(),
        AcquireError::Timeout { busy, waiting, .. } => Error::new(
            ErrorKind::QueueTimeout,
            format!(
                "connection limit queue wait exceeded {waited} ms for {} ({busy} busy, {waiting} waiting)",
                point.address(),
            ),
        ),
    }
}

/// The encoded request a queued request carries when it may be pipelined (see
/// `reuse::may_offer`); nothing is encoded when pipelining is off.
fn pipeline_offer(
    point: &ServicePoint,
    req: &Request,
    keep_alive: bool,
    resent: bool,
) -> Option<Offer> {
    let wanted = req.pipelined.unwrap_or_else(|| point.pipelining());
    if !wanted {
        return None;
    }
    let (framing, body): (_, &[u8]) = match &req.body {
        Body::Empty => (BodyFraming::None, &[]),
        Body::Bytes(b) => (BodyFraming::Length(b.len() as u64), b),
        Body::Stream(_) => return None,
    };
    let rule = reuse::PipelineRequest {
        wanted,
        replay: req.replay(),
        expect_continue: point.expect.applies(req.expect_continue, !body.is_empty()),
        keep_alive,
        resent,
        server_qualified: point.server.pipelining_qualified(),
    };
    if !reuse::may_offer(&rule) {
        return None;
    }
    let mut bytes = Vec::with_capacity(256 + body.len());
    encode_head(point, req, framing, false, false, false, &mut bytes);
    bytes.extend_from_slice(body);
    (bytes.len() <= pipeline::MAX_OFFER_BYTES).then(|| Offer {
        bytes,
        head_only: req.method == "HEAD",
    })
}

/// The holder of a connection writes the heads of queued requests that may be pipelined
/// behind its own (see `Pool::take_into_line`): after its request went out, and again when
/// its response head arrived (requests queued meanwhile). A failed write leaves the connection
/// unusable after the holder's response: the close reason it returns.
async fn top_up(
    driver: &Driver,
    point: &ServicePoint,
    holder: (&Pool, &Ticket),
    conn: &mut Connection,
    settings: &reuse::Settings,
    deadline: Option<Instant>,
) -> Option<CloseReason> {
    if !holder.0.has_offers() {
        return None;
    }
    // Boxed: the attempt future of every request would otherwise carry the write's state.
    Box::pin(write_places(
        driver, point, holder, conn, settings, deadline,
    ))
    .await
    .err()
    .map(|_| CloseReason::Error)
}

async fn write_places(
    driver: &Driver,
    point: &ServicePoint,
    (pool, ticket): (&Pool, &Ticket),
    conn: &mut Connection,
    settings: &reuse::Settings,
    deadline: Option<Instant>,
) -> std::io::Result<()> {
    let depth = point.pipeline_depth();
    let now = Instant::now();
    let mut facts = conn.facts();
    let taken = pool.take_into_line(conn, ticket, |in_flight| {
        let ok = reuse::may_pipeline_on(&facts, settings, in_flight, depth, now);
        facts.requests += u32::from(ok);
        ok
    });
    if taken.is_empty() {
        return Ok(());
    }
    let n = taken.len() as u32;
    conn.requests = conn.requests.saturating_add(n);
    let line = conn.line();
    line.sent = line.sent.saturating_add(n);
    let in_flight = 1 + conn.line().waiting();
    point.stats.pipelined(conn, taken.len(), in_flight);
    let parts: Vec<&[u8]> = taken
        .iter()
        .filter_map(|w| w.offer().map(|o| o.bytes.as_slice()))
        .collect();
    let mut progress = 0;
    driver
        .io(conn, deadline, |c| {
            c.send(&parts, &mut progress, deadline, false).map(|_| ())
        })
        .await
}

/// A pipelined request's turn: its head is on the wire; the responses of places that went
/// away are read and dropped, more queued requests are written behind, and its own response
/// head is read. A connection that ends before that response is a stale one (the request is
/// replayed once).
async fn turn_attempt(
    driver: &Driver,
    point: &ServicePoint,
    req: &Request,
    settings: &reuse::Settings,
    checkout: &mut Checkout,
    deadline: Option<Instant>,
) -> std::result::Result<Attempt, AttemptError> {
    let (conn, holder) = checkout.parts();
    let lost = |error: Error| AttemptError {
        error,
        response_started: false,
    };
    while let Some(head_only) = conn.line().skip.pop_front() {
        let keeps = skip_response(driver, conn, head_only, deadline)
            .await
            .map_err(lost)?;
        if !keeps {
            return Err(lost(Error::new(
                ErrorKind::ConnectionClosed,
                "the server ended the pipelined connection before this request's response",
            )));
        }
    }
    let close = top_up(driver, point, holder, conn, settings, deadline).await;
    let (head, framing, facts) = await_final_head(driver, conn, req, deadline).await?;
    let line = conn.line();
    line.answered = line.answered.saturating_add(1);
    let mut close = close.or_else(|| reuse::close_after_response(&facts));
    if close.is_none() {
        close = top_up(driver, point, holder, conn, settings, deadline).await;
    }
    Ok((head, framing, close, false))
}

/// Reads and drops the response of a pipelined request that went away; false when the
/// connection ends after it.
async fn skip_response(
    driver: &Driver,
    conn: &mut Connection,
    head_only: bool,
    deadline: Option<Instant>,
) -> Result<bool> {
    let method = if head_only { "HEAD" } else { "GET" };
    let mut received_any = false;
    let (head, framing) = driver
        .io(conn, deadline, |c| {
            let head = head::read_head(c, deadline, &mut received_any)?;
            let framing = body::framing(method, &head)?;
            Ok((head, framing))
        })
        .await?;
    let facts = head.reuse_facts(framing == Framing::Close);
    conn.hint = facts.hint;
    let line = conn.line();
    line.answered = line.answered.saturating_add(1);
    let mut decoder = body::BodyDecoder::new(framing);
    let mut scratch = vec![0u8; 16 * 1024];
    while !decoder.is_done() {
        driver
            .io(conn, deadline, |c| decoder.read(c, &mut scratch, deadline))
            .await?;
    }
    Ok(reuse::close_after_response(&facts).is_none())
}

/// Opens a new connection into the checkout (the checkout returns the slot if connecting
/// fails).
async fn open_new(
    driver: &Driver,
    point: &Arc<ServicePoint>,
    checkout: &mut Checkout,
    deadline: Option<Instant>,
) -> Result<()> {
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
    let (conn, holder) = checkout.parts();
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
            return match await_final_head(driver, conn, req, deadline).await {
                Ok((head, framing, _)) => {
                    Ok((head, framing, Some(CloseReason::ServerClose), false))
                }
                Err(e) => Err(AttemptError {
                    error: error.sent(),
                    response_started: e.response_started,
                }),
            };
        }
    };
    // Queued requests that may be pipelined go out behind this one, before its answer is read.
    let mut close = close;
    if complete && close.is_none() {
        close = top_up(driver, point, holder, conn, settings, deadline).await;
    }
    let (head, framing, facts) = await_final_head(driver, conn, req, deadline).await?;
    let mut close = if complete {
        close.or_else(|| reuse::close_after_response(&facts))
    } else {
        // The server answered before taking the whole request: the rest of it would be read
        // as the next request, so the connection ends with this response.
        Some(CloseReason::ServerClose)
    };
    let refused = body_withheld && head.status == 417;
    if close.is_none() && !refused {
        close = top_up(driver, point, holder, conn, settings, deadline).await;
    }
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

/// Reads the final response head of a request that was sent (see `read_final_head`) in the
/// style of `driver`, and keeps its Keep-Alive hint on the connection.
async fn await_final_head(
    driver: &Driver,
    conn: &mut Connection,
    req: &Request,
    deadline: Option<Instant>,
) -> std::result::Result<FinalHead, AttemptError> {
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
