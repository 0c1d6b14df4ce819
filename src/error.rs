//! The core's error type: a kind (which maps one-to-one onto a C result code), a message that
//! names what failed, and whether a failed request may have reached the server.

use std::fmt;
use std::io;

/// What went wrong, at the granularity a caller can act on. The FFI layer maps each kind to
/// its own `sp_result` code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    OutOfRange,
    InvalidUrl,
    UnsupportedScheme,
    Dns,
    Connect,
    ConnectTimeout,
    QueueTimeout,
    ResponseTimeout,
    ReadTimeout,
    TlsCertificate,
    TlsHandshake,
    TlsUnknownIssuer,
    TlsExpired,
    TlsHostnameMismatch,
    TlsNotTls,
    Protocol,
    ConnectionClosed,
    /// The peer reset the connection (RST), as opposed to closing it in order.
    ConnectionReset,
    Io,
    TooManyServicePoints,
    Canceled,
    WrongThread,
    ManagerClosed,
    BodySource,
    /// The proxy asked for credentials (407) or refused the ones given, answering `CONNECT`.
    ProxyAuth,
    /// The proxy refused to open a tunnel (`CONNECT` answered with another non-2xx status).
    ProxyConnect,
    /// A bug: a panic inside the library, caught.
    Internal,
}

/// A failure of the core, with enough context to be read by a person.
#[derive(Clone, Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// True when request bytes were written before the failure, so the server may have acted on
    /// the request. Always false for failures before a connection was obtained.
    pub may_have_reached_server: bool,
}

pub type Result<T> = std::result::Result<T, Error>;

impl ErrorKind {
    /// True when the connection ended under the request (closed or reset): on a reused
    /// connection before any response byte, the signature of a stale one.
    pub fn is_connection_lost(self) -> bool {
        matches!(
            self,
            ErrorKind::ConnectionClosed | ErrorKind::ConnectionReset
        )
    }
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            may_have_reached_server: false,
        }
    }

    /// Marks the error as having happened after request bytes left the client.
    pub fn sent(mut self) -> Self {
        self.may_have_reached_server = true;
        self
    }

    /// Maps an I/O error during an exchange; timeouts become `timeout_kind`.
    pub fn from_io(err: &io::Error, what: &str, timeout_kind: ErrorKind) -> Self {
        // A step's wait that would block: the error is dropped and the step runs again, and
        // formatting a message for it was the largest single cost of an asynchronous request.
        if err.kind() == io::ErrorKind::WouldBlock && crate::connection::step_would_block() {
            return Error::new(timeout_kind, String::new());
        }
        // A TLS failure after the handshake (an alert, a bad record) travels as an io::Error.
        if err
            .get_ref()
            .is_some_and(|inner| inner.is::<crate::connection::Canceled>())
        {
            return Error::new(ErrorKind::Canceled, format!("{what}: canceled"));
        }
        if err
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return Error::new(ErrorKind::TlsHandshake, format!("{what}: TLS: {err}"));
        }
        let kind = match err.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => timeout_kind,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                ErrorKind::ConnectionReset
            }
            io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => ErrorKind::ConnectionClosed,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{what}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
