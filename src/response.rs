//! A response: its head, its streamed body, and the Checkout of the connection it arrived on.
//! The connection goes back to the pool the moment the body has been read to the end; a
//! response dropped earlier drains a small remainder (so the connection stays usable) or
//! closes the connection.

use crate::cancel::{self, CancelToken};
use crate::connection::{CloseReason, Connection, TlsFacts};
use crate::drive::Driver;
use crate::error::{Error, ErrorKind, Result};
use crate::http1::Fields;
use crate::http1::body::{BodyDecoder, Framing};
use crate::http1::head::ResponseHead;
use crate::pipeline::Line;
use crate::point::ServicePoint;
use crate::pool::{Pool, Ticket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most unread body bytes a dropped response drains to keep its connection.
const DRAIN_MAX_BYTES: u64 = 64 * 1024;
/// Longest a dropped response waits for the rest of its body.
const DRAIN_MAX_WAIT: Duration = Duration::from_millis(100);

/// A connection checked out of a pool. Dropping it without `finish` (an early return, or
/// unwinding from a panic) closes the connection and frees its slot, so no path can leak a
/// slot.
pub struct Checkout {
    point: Arc<ServicePoint>,
    pool: Arc<Pool>,
    ticket: Ticket,
    conn: Option<Connection>,
    finished: bool,
}

impl Checkout {
    pub fn new(point: Arc<ServicePoint>, pool: Arc<Pool>, ticket: Ticket) -> Self {
        Checkout {
            point,
            pool,
            ticket,
            conn: None,
            finished: false,
        }
    }

    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Takes an idle connection granted by the pool (already recorded as busy there).
    pub fn adopt(&mut self, conn: Connection) {
        self.conn = Some(conn);
    }

    /// Takes a newly opened connection; fails if the manager was freed meanwhile (the
    /// connection is then closed by `finish`).
    pub fn put(&mut self, conn: Connection) -> Result<()> {
        let tracked = self.pool.track(&self.ticket, conn.socket());
        self.conn = Some(conn);
        if tracked {
            Ok(())
        } else {
            Err(self.point.closed_error())
        }
    }

    pub fn conn(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("checkout holds a connection")
    }

    /// The connection with the pool and ticket it belongs to (for a holder that takes queued
    /// requests into its line while it uses the connection).
    pub fn parts(&mut self) -> (&mut Connection, (&Pool, &Ticket)) {
        let conn = self.conn.as_mut().expect("checkout holds a connection");
        (conn, (&*self.pool, &self.ticket))
    }

    /// The connection, if it holds one.
    pub fn connection(&self) -> Option<&Connection> {
        self.conn.as_ref()
    }

    /// True when the connection must not be used by this process (see `fork`).
    pub fn is_inherited(&self) -> bool {
        self.conn.as_ref().is_some_and(Connection::is_inherited)
    }

    /// Returns the connection to the pool (`Ok`) or closes it for the given reason. A
    /// connection with pipelined requests behind goes to the next one's turn instead (or, when
    /// it ends, they are replayed).
    pub fn finish(&mut self, outcome: std::result::Result<(), CloseReason>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let limit = self.point.connection_limit();
        let settings = self.point.reuse_settings();
        self.point.touch();
        let mut conn = self.conn.take();
        if let Some(c) = conn.as_mut() {
            c.last_used = Instant::now();
        }
        match conn {
            Some(c) if c.pipelined().is_some_and(Line::in_use) => {
                if let Err(reason) = outcome {
                    if c.pipelined().is_some_and(|l| l.disqualifies(reason)) {
                        self.point.refuse_pipelining(
                            "a connection ended before answering any of its pipelined requests",
                        );
                    }
                }
                self.pool
                    .pass_turn(c, outcome, &self.ticket, limit, &settings)
            }
            conn => self
                .pool
                .release(conn, outcome, &self.ticket, limit, &settings),
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.finish(Err(CloseReason::Error));
    }
}

pub struct Response {
    pub head: ResponseHead,
    /// The body's reader; out while an asynchronous read has it (`take_body`).
    body: Option<BodyReader>,
    pub connection_id: u64,
    pub local_port: u16,
    /// It came on a connection taken from the pool (not one opened for it).
    pub reused: bool,
    /// The request was sent a second time, on a new connection, after a stale one failed.
    pub retried: bool,
    /// The TLS parameters of its connection (`None` for http).
    pub tls: Option<TlsFacts>,
}

/// How a response's request went: on a reused connection, after a retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub reused: bool,
    pub retried: bool,
}

/// A response's body as it streams from its connection, with the connection's Checkout. It
/// can leave its response for an asynchronous read (which then owns the connection alone).
pub struct BodyReader {
    decoder: BodyDecoder,
    checkout: Option<Checkout>,
    /// Set when the connection must close after this response, with the reason.
    close: Option<CloseReason>,
    read_timeout: Option<Duration>,
    /// The request's cancel token, watched by every read.
    cancel: Option<CancelToken>,
    /// A failure met after a read had already taken bytes: those bytes went out first, and
    /// the next read gives the failure.
    deferred: Option<Error>,
}

static NO_TRAILERS: Fields = Fields::new();

impl Response {
    pub(crate) fn new(
        head: ResponseHead,
        framing: Framing,
        close: Option<CloseReason>,
        mut checkout: Checkout,
        read_timeout: Option<Duration>,
        delivery: Delivery,
    ) -> Self {
        let conn = checkout.conn();
        let (connection_id, local_port, tls) = (conn.id, conn.local_port, conn.tls_facts());
        let mut body = BodyReader {
            decoder: BodyDecoder::new(framing),
            checkout: Some(checkout),
            close,
            read_timeout,
            cancel: None,
            deferred: None,
        };
        body.release_if_done();
        Response {
            head,
            body: Some(body),
            connection_id,
            local_port,
            reused: delivery.reused,
            retried: delivery.retried,
            tls,
        }
    }

    /// The socket of the response's connection, for inspection only (getsockopt), while the
    /// response holds it (its body not read to the end).
    pub fn socket(&self) -> Option<&std::net::TcpStream> {
        self.body
            .as_ref()
            .and_then(|b| b.checkout.as_ref())
            .and_then(Checkout::connection)
            .map(|c| &**c.socket())
    }

    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// Trailer fields of a chunked body (available once the body has been read).
    pub fn trailers(&self) -> &Fields {
        self.body
            .as_ref()
            .map_or(&NO_TRAILERS, |b| &b.decoder.trailers)
    }

    /// True once the body has been read to its end.
    pub fn is_complete(&self) -> bool {
        self.body.as_ref().is_some_and(|b| b.decoder.is_done())
    }

    /// Reads body bytes into `buf`; 0 means the end of the body. Blocks; each call waits at
    /// most the request's read timeout.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.body_mut()?.read(buf)
    }

    /// Reads the rest of the body (blocking).
    pub fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.body_mut()?.read_to_end(out)
    }

    /// Reads body bytes that have already arrived, as many as fit in `buf` (what came with the
    /// head, then what the socket holds), never waiting: `Ok(None)` when none have (a read
    /// would wait), `Ok(Some(0))` at the end of the body. Lets an event loop take a body that
    /// came with its head without a round trip through a completion.
    pub fn read_now(&mut self, buf: &mut [u8]) -> Result<Option<usize>> {
        let body = self.body_mut()?;
        let mut filled = 0;
        while filled < buf.len() {
            match body.read_now(&mut buf[filled..]) {
                None if filled == 0 => return Ok(None),
                None | Some(Ok(0)) => break,
                Some(Ok(n)) => filled += n,
                Some(Err(e)) if filled == 0 => return Err(e),
                Some(Err(e)) => {
                    body.deferred = Some(e);
                    break;
                }
            }
        }
        Ok(Some(filled))
    }

    /// The token that cancels reads of this body (its request's).
    pub fn set_cancel(&mut self, token: Option<CancelToken>) {
        if let Some(body) = self.body.as_mut() {
            body.cancel = token;
        }
    }

    /// Lends the body reader to an asynchronous read; `put_body` gives it back.
    pub fn take_body(&mut self) -> Result<BodyReader> {
        self.body.take().ok_or_else(busy)
    }

    pub fn put_body(&mut self, body: BodyReader) {
        self.body = Some(body);
    }

    fn body_mut(&mut self) -> Result<&mut BodyReader> {
        self.body.as_mut().ok_or_else(busy)
    }
}

fn busy() -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        "an asynchronous read of this response's body is in progress",
    )
}

impl BodyReader {
    /// Blocking read (see `Response::read`).
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.decoder.is_done() || buf.is_empty() {
            return Ok(0);
        }
        crate::runtime::ensure_blocking_allowed()?;
        let driver = Driver::Blocking;
        let token = self.cancel.clone();
        cancel::watching(token.as_ref(), || {
            driver.block(self.read_with(&driver, buf))
        })
    }

    /// The cancel token of the request this body answers, if any.
    pub fn cancel_token(&self) -> Option<&CancelToken> {
        self.cancel.as_ref()
    }

    /// Reads body bytes into `buf` in the style of `driver`; 0 means the end of the body.
    pub async fn read_with(&mut self, driver: &Driver, buf: &mut [u8]) -> Result<usize> {
        let deadline = match self.before_read(buf) {
            Ok(Some(deadline)) => deadline,
            Ok(None) => return Ok(0),
            Err(e) => return Err(e),
        };
        let read = match (driver.check("the body read"), self.checkout.as_mut()) {
            (Ok(()), Some(checkout)) => {
                let decoder = &mut self.decoder;
                driver
                    .io(checkout.conn(), deadline, |c| {
                        decoder.read(c, buf, deadline)
                    })
                    .await
            }
            (Err(e), _) => Err(e),
            (Ok(()), None) => Ok(0),
        };
        self.after_read(read)
    }

    /// Reads what can be had without waiting: `None` when the read would have to wait (nothing
    /// changed then), else its outcome as `read_with` gives it. Lets an asynchronous read whose
    /// bytes already arrived complete without a task.
    pub fn read_now(&mut self, buf: &mut [u8]) -> Option<Result<usize>> {
        let deadline = match self.before_read(buf) {
            Ok(Some(deadline)) => deadline,
            Ok(None) => return Some(Ok(0)),
            Err(e) => return Some(Err(e)),
        };
        // A canceled request's body is not read on, as a waiting read would not be.
        if self.cancel.as_ref().is_some_and(CancelToken::is_canceled) {
            return Some(self.after_read(Err(cancel::canceled_error("the body read"))));
        }
        let checkout = self.checkout.as_mut()?;
        let (conn, decoder) = (checkout.conn(), &mut self.decoder);
        let (read, pending) =
            crate::connection::run_step(None, || decoder.read(conn, buf, deadline));
        if pending.is_some() {
            return None;
        }
        Some(self.after_read(read))
    }

    /// Checks that the body can be read: `Ok(None)` at its end, else the read's deadline.
    fn before_read(&mut self, buf: &[u8]) -> Result<Option<Option<Instant>>> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        if self.decoder.is_done() || buf.is_empty() {
            return Ok(None);
        }
        // The manager was freed: its connections are shut down, and a body read fails the same
        // way whether or not the rest of the body happened to be buffered already.
        if self.point_closed() {
            return Err(self.point_closed_error().sent());
        }
        let Some(checkout) = self.checkout.as_ref() else {
            return Err(Error::new(
                ErrorKind::ConnectionClosed,
                "the response's connection was already closed after an error",
            ));
        };
        if checkout.is_inherited() {
            return Err(Error::new(
                ErrorKind::ConnectionClosed,
                "the response belongs to the parent process (fork): its connection is not used here",
            ));
        }
        Ok(Some(
            self.read_timeout
                .and_then(|t| Instant::now().checked_add(t)),
        ))
    }

    /// A read's outcome: the connection goes back at the end of the body, or closes after a
    /// failure.
    fn after_read(&mut self, read: Result<usize>) -> Result<usize> {
        match read {
            Ok(n) => {
                self.release_if_done();
                Ok(n)
            }
            Err(e) => {
                // The request was sent and answered: whatever fails now, the server saw it.
                let e = if self.point_closed() {
                    self.point_closed_error()
                } else {
                    e
                }
                .sent();
                // A timed-out read leaves the body position unknown to the caller's protocol
                // only if bytes were lost; none are, but the connection can't be trusted after
                // a framing error, and a timeout (or a cancel) leaves it mid-body: close it
                // either way.
                if let Some(mut checkout) = self.checkout.take() {
                    checkout.finish(Err(CloseReason::Error));
                }
                Err(e)
            }
        }
    }

    /// Reads the rest of the body.
    /// Reads into `out`'s own memory, growing it by what the framing announces (or 16 KiB at
    /// a time): no scratch buffer to clear and copy through.
    pub fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<()> {
        const STEP: u64 = 16 * 1024;
        loop {
            if self.decoder.is_done() {
                self.release_if_done();
                return Ok(());
            }
            let want = self
                .decoder
                .known_remaining()
                .map_or(STEP, |n| n.clamp(1, 64 << 20)) as usize;
            let start = out.len();
            out.resize(start + want, 0);
            let read = self.read(&mut out[start..]);
            let n = *read.as_ref().unwrap_or(&0);
            out.truncate(start + n);
            if read? == 0 {
                return Ok(());
            }
        }
    }

    /// True once the body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.decoder.is_done()
    }

    /// Body bytes still to come when the framing says (Content-Length); `None` otherwise.
    pub fn known_remaining(&self) -> Option<u64> {
        self.decoder.known_remaining()
    }

    fn point_closed(&self) -> bool {
        self.checkout.as_ref().is_some_and(|l| l.point.is_closed())
    }

    fn point_closed_error(&self) -> Error {
        match self.checkout.as_ref() {
            Some(l) => l.point.closed_error(),
            None => Error::new(ErrorKind::ManagerClosed, "the manager was freed"),
        }
    }

    fn release_if_done(&mut self) {
        if self.decoder.is_done() {
            if let Some(mut checkout) = self.checkout.take() {
                checkout.finish(self.close.map_or(Ok(()), Err));
            }
        }
    }

    /// Reads and discards a short unread remainder so the connection can be reused.
    fn drain(&mut self) -> bool {
        if self
            .decoder
            .known_remaining()
            .is_some_and(|n| n > DRAIN_MAX_BYTES)
            || self.close.is_some()
        {
            return false;
        }
        let Some(checkout) = self.checkout.as_mut() else {
            return false;
        };
        // A connection of the parent process is never read. Inside a callback (or on a
        // runtime thread) nothing may wait: only what has already arrived is drained.
        if checkout.is_inherited() {
            return false;
        }
        let may_wait = crate::runtime::ensure_blocking_allowed().is_ok();
        let deadline = Some(Instant::now() + DRAIN_MAX_WAIT);
        let mut scratch = [0u8; 8 * 1024];
        let mut drained = 0u64;
        while !self.decoder.is_done() && drained <= DRAIN_MAX_BYTES {
            let conn = checkout.conn();
            let decoder = &mut self.decoder;
            let read = if may_wait {
                decoder.read(conn, &mut scratch, deadline)
            } else {
                // A wait fails at once (`WouldBlock`) instead of blocking.
                crate::connection::run_step(None, || decoder.read(conn, &mut scratch, deadline)).0
            };
            match read {
                Ok(0) => break,
                Ok(n) => drained += n as u64,
                Err(_) => return false,
            }
        }
        self.decoder.is_done()
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        if self.checkout.is_none() {
            return;
        }
        if self.drain() {
            self.release_if_done();
        } else if let Some(mut checkout) = self.checkout.take() {
            checkout.finish(Err(self.close.unwrap_or(CloseReason::Abandoned)));
        }
    }
}
