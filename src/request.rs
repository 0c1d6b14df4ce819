//! A request description: what to send, and the per-request policy (keep-alive, timeouts,
//! connection group, retry permission). Reusable, and sendable from several threads at once
//! (sending takes `&Request`); a streamed body is read once, by the first send.

use crate::cancel::CancelToken;
use crate::error::{Error, ErrorKind, Result};
use crate::fork::Lock;
use crate::http1::{Header, has_token, is_idempotent, is_token};
use crate::origin::{self, Target};
use crate::point::ServicePoint;
use crate::proxy::Override;
use std::borrow::Cow;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// .NET's HttpWebRequest.Timeout default: time to get the response head, including waiting
/// for a connection.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100_000);
/// .NET's ReadWriteTimeout default: each body read.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_millis(300_000);

/// Supplies a streamed request body; sent with chunked transfer coding.
pub trait BodySource: Send {
    /// Fills `buf`; returns 0 at the end of the body, or an error message.
    fn read(&mut self, buf: &mut [u8]) -> std::result::Result<usize, String>;
}

#[derive(Clone)]
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// Consumed by the first send; a request with a streamed body is never retried.
    Stream(Arc<Lock<Option<Box<dyn BodySource>>>>),
}

impl Body {
    pub fn stream(source: Box<dyn BodySource>) -> Body {
        Body::Stream(Arc::new(Lock::new(Some(source))))
    }
}

/// A service point remembered for the manager with this id, in this routing epoch.
type PointByManager = (u64, u64, Weak<ServicePoint>);

/// Cloned only when a setter changes a description that a send is using (copy on write).
#[derive(Clone)]
pub struct Request {
    /// Common methods borrow a static name: a description costs one allocation less.
    pub method: Cow<'static, str>,
    pub target: Arc<Target>,
    pub headers: Vec<Header>,
    pub body: Body,
    /// `None`: the manager's default.
    pub keep_alive: Option<bool>,
    /// Time to the response head, queue wait included; `None` is infinite.
    pub timeout: Option<Duration>,
    /// Time each body read may wait; `None` is infinite.
    pub read_timeout: Option<Duration>,
    /// Connection group; empty for the default group.
    pub group: String,
    /// Allows a retry on a fresh connection even for non-idempotent methods.
    pub retryable: bool,
    /// Cancels the sends of this description and the reads of their responses.
    pub cancel: Option<CancelToken>,
    /// Wait for `100 Continue` before the body: `None` as the service point says.
    pub expect_continue: Option<bool>,
    /// May be pipelined: `None` as the service point says.
    pub pipelined: Option<bool>,
    /// Its own proxy choice (default: the manager's). Set with `set_proxy`.
    pub proxy: Override,
    /// The service point it was last sent through, by manager id: a repeated send skips the
    /// manager's table (and its lock). Shared by copies of the description.
    point_cache: Arc<Lock<Option<PointByManager>>>,
}

/// The method's name, static for the methods RFC 9110 defines.
fn method_name(method: &str) -> Cow<'static, str> {
    const KNOWN: [&str; 8] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
    ];
    match KNOWN.iter().find(|&&k| k == method) {
        Some(&k) => Cow::Borrowed(k),
        None => Cow::Owned(method.to_string()),
    }
}

impl Request {
    /// A request for `method` (a token, e.g. GET) and an absolute http(s) URL.
    pub fn new(method: &str, url: &str) -> Result<Self> {
        if !is_token(method) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("invalid method '{method}'"),
            ));
        }
        Ok(Request {
            method: method_name(method),
            target: origin::parse(url)?,
            headers: Vec::new(),
            body: Body::Empty,
            keep_alive: None,
            timeout: Some(DEFAULT_TIMEOUT),
            read_timeout: Some(DEFAULT_READ_TIMEOUT),
            group: String::new(),
            retryable: false,
            cancel: None,
            expect_continue: None,
            pipelined: None,
            proxy: Override::Manager,
            point_cache: Arc::default(),
        })
    }

    /// Adds a header field (repeats allowed). Framing headers are the library's to set; so is
    /// `Connection`: `close` turns keep-alive off, `keep-alive` on, other tokens are dropped.
    pub fn add_header(&mut self, name: &str, value: &[u8]) -> Result<()> {
        if !is_token(name) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("invalid header name '{name}'"),
            ));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "header '{name}' value contains a control character (only HTAB is allowed)"
                ),
            ));
        }
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("'{name}' is set by the library from the body"),
            ));
        }
        if name.eq_ignore_ascii_case("expect")
            && value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
        {
            // The library waits for the 100 it asks for (see `expect`).
            self.expect_continue = Some(true);
            return Ok(());
        }
        if name.eq_ignore_ascii_case("connection") {
            // The library owns this header (it manages the connection): `close` turns
            // keep-alive off for this request, `keep-alive` turns it on; other tokens are not
            // sent.
            if has_token(value, "close") {
                self.keep_alive = Some(false);
            } else if has_token(value, "keep-alive") {
                self.keep_alive = Some(true);
            }
            return Ok(());
        }
        self.headers.push(Header {
            name: name.to_string(),
            value: value.trim_ascii().to_vec(),
        });
        Ok(())
    }

    /// The service point this description was last sent through on manager `manager_id`, if
    /// it is still in use.
    pub fn cached_point(&self, manager_id: u64, epoch: u64) -> Option<Arc<ServicePoint>> {
        match &*self.point_cache.lock() {
            Some((id, e, point)) if *id == manager_id && *e == epoch => {
                point.upgrade().filter(|p| !p.is_closed())
            }
            _ => None,
        }
    }

    pub fn cache_point(&self, manager_id: u64, epoch: u64, point: &Arc<ServicePoint>) {
        *self.point_cache.lock() = Some((manager_id, epoch, Arc::downgrade(point)));
    }

    /// The request's own proxy: `None` the manager's settings, `""` direct, else a proxy URL
    /// (the manager's bypass list still applies).
    pub fn set_proxy(&mut self, url: Option<&str>) -> Result<()> {
        self.proxy = Override::parse(url)?;
        // Its remembered point was found by the old choice (and copies keep theirs).
        self.point_cache = Arc::default();
        Ok(())
    }

    /// What makes this request safe to send again (`reuse::may_retry` decides).
    pub fn replay(&self) -> crate::reuse::Replay {
        crate::reuse::Replay {
            idempotent: is_idempotent(&self.method),
            replayable_body: !matches!(self.body, Body::Stream(_)),
            marked_retryable: self.retryable,
        }
    }
}
