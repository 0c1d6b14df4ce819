//! One request on a service point: take a connection from its group's pool, decide the
//! `Connection` header (keep-alive, lease, request caps), send, read the head, and retry once
//! on a fresh connection when a reused one turns out stale before any response byte.

use crate::connection::{self, CloseReason, Connection};
use crate::error::{Error, ErrorKind, Result};
use crate::http1::body::{self, Framing};
use crate::http1::head::{self, ResponseHead};
use crate::http1::request::{self as encode, BodyFraming, RequestHead};
use crate::origin::Scheme;
use crate::point::ServicePoint;
use crate::pool::Grant;
use crate::request::{Body, BodySource, Request};
use crate::response::{Lease, Response};
use crate::stats::Stats;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USER_AGENT: &str = concat!("servicepoint/", env!("CARGO_PKG_VERSION"));
/// Size of the pieces a streamed request body is read and sent in.
const STREAM_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Request heads are encoded here: no allocation per request on a warm thread.
    static HEAD_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// A failed attempt, and whether it may be retried on a new connection.
struct AttemptError {
    error: Error,
    /// No response byte arrived and the connection was reused: the signature of a stale
    /// keep-alive connection.
    stale: bool,
}

/// Sends `req` on `point` and returns the response once its head has arrived.
pub fn send(
    point: &Arc<ServicePoint>,
    req: &Request,
    keep_alive_default: bool,
) -> Result<Response> {
    point.check_open()?;
    let start = Instant::now();
    let deadline = req.timeout.map(|t| start + t);
    let pool = point.group(&req.group);
    let keep_alive = req.keep_alive.unwrap_or(keep_alive_default);
    let mut retried = false;
    loop {
        let limit = point.connection_limit();
        let (grant, generation) = pool.acquire(limit, point.reuse_rules(), deadline).map_err(
            |q| {
                Error::new(
                    ErrorKind::QueueTimeout,
                    format!(
                        "connection limit queue wait exceeded {} ms for {} ({} busy, {} waiting)",
                        start.elapsed().as_millis(),
                        point.address(),
                        q.busy,
                        q.waiting
                    ),
                )
            },
        )?;
        let mut lease = Lease::new(Arc::clone(point), Arc::clone(&pool));
        let reused = match grant {
            Grant::Idle(conn) => {
                Stats::bump(&point.stats.reuses);
                lease.put(conn);
                true
            }
            Grant::Open => {
                // The lease returns the slot if connecting fails.
                let tls = match point.origin.scheme {
                    Scheme::Https => Some(point.tls.client_config()?),
                    Scheme::Http => None,
                };
                let addrs = point.resolve()?;
                let conn = connection::connect(&point.origin, &addrs, tls, deadline, generation)
                    .inspect_err(|_| point.forget_addresses())?;
                Stats::bump(&point.stats.connections_opened);
                if conn.is_tls() {
                    Stats::bump(if conn.resumed {
                        &point.stats.tls_resumed_handshakes
                    } else {
                        &point.stats.tls_full_handshakes
                    });
                }
                lease.put(conn);
                false
            }
        };
        match attempt(point, req, &mut lease, keep_alive, deadline) {
            Ok((head, framing, close)) => {
                Stats::bump(&point.stats.requests);
                return Ok(Response::new(
                    head,
                    framing,
                    close,
                    lease,
                    req.read_timeout,
                    reused,
                ));
            }
            Err(e) => {
                let stale = e.stale && reused;
                lease.finish(Err(if stale {
                    CloseReason::Stale
                } else {
                    CloseReason::Error
                }));
                if stale && !retried && req.may_retry() {
                    retried = true;
                    Stats::bump(&point.stats.retries);
                    continue;
                }
                let mut error = e.error;
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

/// Why this request must close its connection, decided before sending.
fn close_before(point: &ServicePoint, conn: &Connection, keep_alive: bool) -> Option<CloseReason> {
    let lease = point.lease_timeout_ms();
    let cap = point.max_requests_per_connection();
    if !keep_alive {
        Some(CloseReason::KeepAliveOff)
    } else if lease == 0
        || (lease > 0 && conn.created.elapsed() >= Duration::from_millis(lease as u64))
    {
        Some(CloseReason::Lease)
    } else if (cap > 0 && conn.requests + 1 >= cap as u32) || conn.hint.max == Some(1) {
        Some(CloseReason::MaxRequests)
    } else {
        None
    }
}

/// Why the connection cannot be reused after this response, judged from its head.
fn close_after(head: &ResponseHead, framing: Framing) -> Option<CloseReason> {
    let hint = head.keep_alive_hint();
    if head.server_closes() || framing == Framing::Close {
        Some(CloseReason::ServerClose)
    } else if hint.max == Some(0) {
        Some(CloseReason::MaxRequests)
    } else if hint.timeout.is_some_and(|t| t <= Duration::from_secs(1)) {
        Some(CloseReason::ServerClose)
    } else {
        None
    }
}

type Attempt = (ResponseHead, Framing, Option<CloseReason>);

fn attempt(
    point: &ServicePoint,
    req: &Request,
    lease: &mut Lease,
    keep_alive: bool,
    deadline: Option<Instant>,
) -> std::result::Result<Attempt, AttemptError> {
    let conn = lease.conn();
    let close = close_before(point, conn, keep_alive);
    conn.requests += 1;
    let fail = |error: Error, stale: bool| AttemptError { error, stale };
    let host = point.origin.host_header();
    let io_err =
        |e: std::io::Error| Error::from_io(&e, "sending request", ErrorKind::ResponseTimeout);
    let mut stream = None;
    let framing = match &req.body {
        Body::Empty => BodyFraming::None,
        Body::Bytes(b) => BodyFraming::Length(b.len() as u64),
        Body::Stream(s) => {
            let taken = s.lock().unwrap_or_else(|e| e.into_inner()).take();
            stream = Some(taken.ok_or_else(|| {
                fail(
                    Error::new(
                        ErrorKind::InvalidArgument,
                        "the streamed body was already sent",
                    ),
                    false,
                )
            })?);
            BodyFraming::Chunked
        }
    };
    let head = RequestHead {
        method: &req.method,
        target: &req.target.path_and_query,
        host: &host,
        headers: &req.headers,
        body: framing,
        close: close.is_some(),
    };
    let sent = HEAD_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        encode::encode(&head, USER_AGENT, &mut buf);
        match &req.body {
            Body::Bytes(b) => conn.write_all(&[&buf, b], deadline),
            _ => conn.write_all(&[&buf], deadline),
        }
    });
    // A failed write on a reused connection is as stale as an EOF before the response.
    sent.map_err(|e| fail(io_err(e), true))?;
    if let Some(source) = stream {
        send_stream(conn, source, deadline).map_err(|e| fail(e.sent(), false))?;
    }
    let mut received_any = false;
    let head = head::read_head(conn, deadline, &mut received_any).map_err(|e| {
        let stale = !received_any && e.kind == ErrorKind::ConnectionClosed;
        fail(e.sent(), stale)
    })?;
    let framing = body::framing(&req.method, &head).map_err(|e| fail(e.sent(), false))?;
    conn.hint = head.keep_alive_hint();
    let close = close.or_else(|| close_after(&head, framing));
    Ok((head, framing, close))
}

/// Sends a streamed body with chunked transfer coding.
fn send_stream(
    conn: &mut Connection,
    mut source: Box<dyn BodySource>,
    deadline: Option<Instant>,
) -> Result<()> {
    let mut buf = vec![0u8; STREAM_CHUNK];
    let io_err =
        |e: std::io::Error| Error::from_io(&e, "sending request body", ErrorKind::ResponseTimeout);
    loop {
        let n = source.read(&mut buf).map_err(|m| {
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
        if n == 0 {
            return conn
                .write_all(&[header.as_bytes()], deadline)
                .map_err(io_err);
        }
        conn.write_all(&[header.as_bytes(), &buf[..n], b"\r\n"], deadline)
            .map_err(io_err)?;
    }
}
