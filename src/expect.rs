//! `Expect: 100-continue` (.NET's `Expect100Continue`): a request with a body sends its head
//! alone and waits for the server's `100 Continue` before the body, so a server that refuses
//! the request (401, 413, 417, ...) does not make the client upload the body for nothing.
//!
//! Off by default (modern .NET's HttpClient, curl below 1 MiB and browsers do not wait either):
//! with a server that never answers 100 it costs a wait per request until learned, and a
//! round trip per request with a body always. Per service point (from the manager's default at
//! creation, as .NET) and per request (a caller's `Expect: 100-continue` header turns it on).
//!
//! The wait ends with `100 Continue` (the body is sent), a final status (the body is not sent:
//! a Content-Length body leaves the connection unusable, so it closes; a chunked one is ended
//! with its last chunk, so it may be reused), or the continue timeout (350 ms, as .NET
//! Framework; the body is sent anyway). A server that let the timeout pass is remembered and
//! not asked again, nor is an HTTP/1.0 server (which cannot answer 100).

use crate::connection::{Connection, earliest};
use crate::http1::MAX_HEAD_BYTES;
use crate::http1::head;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// .NET Framework's `HttpWebRequest.ContinueTimeout`.
pub const DEFAULT_TIMEOUT_MS: i32 = 350;

/// A service point's Expect100Continue setting and what its server taught.
pub struct ExpectContinue {
    enabled: AtomicBool,
    timeout_ms: AtomicI32,
    /// The server let a continue timeout pass (or answered HTTP/1.0): do not ask it again.
    unsupported: AtomicBool,
}

impl ExpectContinue {
    pub fn new(enabled: bool) -> Self {
        ExpectContinue {
            enabled: AtomicBool::new(enabled),
            timeout_ms: AtomicI32::new(DEFAULT_TIMEOUT_MS),
            unsupported: AtomicBool::new(false),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Turning it on again also forgets what the server taught.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Relaxed);
        if on {
            self.unsupported.store(false, Relaxed);
        }
    }

    /// How long a request waits for `100 Continue` (-1: up to the request's timeout).
    pub fn timeout_ms(&self) -> i32 {
        self.timeout_ms.load(Relaxed)
    }

    pub fn set_timeout_ms(&self, ms: i32) {
        self.timeout_ms.store(ms, Relaxed);
    }

    /// True once the server was found not to answer 100.
    pub fn server_unsupported(&self) -> bool {
        self.unsupported.load(Relaxed)
    }

    pub fn mark_unsupported(&self) {
        self.unsupported.store(true, Relaxed);
    }

    /// Whether a request waits for `100 Continue`: it has a body, and it asked (`explicit`)
    /// or the point is on and its server is not known to stay silent.
    pub fn applies(&self, explicit: Option<bool>, has_body: bool) -> bool {
        has_body && explicit.unwrap_or_else(|| self.enabled() && !self.server_unsupported())
    }

    /// When the wait ends: the continue timeout, or the request's deadline if earlier.
    pub fn wait_until(&self, now: Instant, deadline: Option<Instant>) -> Option<Instant> {
        let own = u64::try_from(self.timeout_ms())
            .ok()
            .and_then(|ms| now.checked_add(Duration::from_millis(ms)));
        earliest(own, deadline)
    }
}

/// What ended the wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `100 Continue` arrived (and was consumed): send the body.
    Continue,
    /// A final response began (left in the buffer), or the server closed: do not send the body.
    Final,
    /// Nothing by `until`: send the body anyway.
    Timeout,
}

/// Waits for the server's answer to the head (a step: it can run again after `WouldBlock`).
/// Interim answers other than 100 are skipped.
pub fn await_continue(conn: &mut Connection, until: Option<Instant>) -> std::io::Result<Answer> {
    loop {
        if !conn.buffered().is_empty() {
            match head::parse(conn.buffered()) {
                Ok(Some((h, used))) if h.status == 100 => {
                    conn.consume(used);
                    return Ok(Answer::Continue);
                }
                Ok(Some((h, used))) if (102..200).contains(&h.status) => conn.consume(used),
                // A final status, 101 or a malformed head: reading the response reports it.
                Ok(Some(_)) | Err(_) => return Ok(Answer::Final),
                Ok(None) => {}
            }
        }
        match conn.fill(MAX_HEAD_BYTES, until, true) {
            Ok(0) => return Ok(Answer::Final),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Ok(Answer::Timeout),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_waits() {
        let e = ExpectContinue::new(false);
        assert!(!e.applies(None, true), "off by default");
        assert!(e.applies(Some(true), true), "a request can ask");
        assert!(!e.applies(Some(true), false), "never without a body");
        e.set_enabled(true);
        assert!(e.applies(None, true));
        assert!(!e.applies(Some(false), true), "a request can decline");
        e.mark_unsupported();
        assert!(!e.applies(None, true), "a silent server is not asked again");
        assert!(e.applies(Some(true), true), "unless the request insists");
        e.set_enabled(true);
        assert!(e.applies(None, true), "re-enabling forgets");
    }

    #[test]
    fn the_wait_ends_at_the_earlier_of_timeout_and_deadline() {
        let e = ExpectContinue::new(true);
        let now = Instant::now();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(e.wait_until(now, None), Some(now + ms(350)));
        assert_eq!(e.wait_until(now, Some(now + ms(100))), Some(now + ms(100)));
        e.set_timeout_ms(-1);
        assert_eq!(e.wait_until(now, None), None);
        assert_eq!(e.wait_until(now, Some(now + ms(5))), Some(now + ms(5)));
        e.set_timeout_ms(0);
        assert_eq!(e.wait_until(now, None), Some(now));
    }
}
