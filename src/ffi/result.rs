//! Result codes of the C ABI and their mapping from the core's error kinds.

use crate::error::ErrorKind;

/// Result of every fallible function: `SP_OK` (0) or an error code. Codes are only ever
/// appended, never renumbered. `sp_strerror()` gives a fixed text for a code and
/// `sp_last_error()` the detailed message of the calling thread's last failure.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum sp_result {
    /// Success.
    SP_OK = 0,
    /// An argument is not acceptable (e.g. an invalid method or header name).
    SP_E_INVALID_ARGUMENT = 1,
    /// A required pointer argument is NULL.
    SP_E_NULL_POINTER = 2,
    /// A string argument is not valid UTF-8.
    SP_E_INVALID_UTF8 = 3,
    /// A numeric setting is outside its valid range; nothing was changed.
    SP_E_OUT_OF_RANGE = 4,
    /// The handle is NULL, freed, of another kind, or was never issued.
    SP_E_INVALID_HANDLE = 5,
    /// The URL cannot be parsed or has no host.
    SP_E_INVALID_URL = 6,
    /// The URL's scheme is neither http nor https.
    SP_E_UNSUPPORTED_SCHEME = 7,
    /// The host name could not be resolved.
    SP_E_DNS = 8,
    /// The TCP connection could not be established (refused, unreachable).
    SP_E_CONNECT = 9,
    /// Establishing the connection took longer than the request's timeout.
    SP_E_CONNECT_TIMEOUT = 10,
    /// The request waited in the service point's queue for longer than its timeout.
    SP_E_QUEUE_TIMEOUT = 11,
    /// The response head did not arrive within the request's timeout.
    SP_E_RESPONSE_TIMEOUT = 12,
    /// A body read did not complete within the request's read timeout.
    SP_E_READ_TIMEOUT = 13,
    /// The server's TLS certificate was rejected.
    SP_E_TLS_CERTIFICATE = 14,
    /// The TLS handshake failed.
    SP_E_TLS_HANDSHAKE = 15,
    /// The server sent something that is not valid HTTP/1.x, or exceeds the limits.
    SP_E_PROTOCOL = 16,
    /// The connection closed before the response was complete.
    SP_E_CONNECTION_CLOSED = 17,
    /// Another socket error.
    SP_E_IO = 18,
    /// The manager is at its max service points and none can be evicted.
    SP_E_TOO_MANY_SERVICE_POINTS = 19,
    /// The operation was canceled.
    SP_E_CANCELED = 20,
    /// A blocking call was made from a library thread (inside a callback).
    SP_E_WRONG_THREAD = 21,
    /// An internal error (a Rust panic) was caught; the message has details.
    SP_E_PANIC = 22,
    /// The looked-up item (e.g. a header) does not exist.
    SP_E_NOT_FOUND = 23,
    /// The service point's manager was freed.
    SP_E_MANAGER_CLOSED = 24,
    /// The request body callback reported an error.
    SP_E_BODY_SOURCE = 25,
    /// TLS: the server's certificate was issued by an authority that is not trusted.
    SP_E_TLS_UNKNOWN_ISSUER = 26,
    /// TLS: the server's certificate has expired or is not valid yet.
    SP_E_TLS_CERT_EXPIRED = 27,
    /// TLS: the server's certificate is not valid for the host name.
    SP_E_TLS_HOSTNAME_MISMATCH = 28,
    /// TLS: the server answered in plain HTTP (an http port used with https://).
    SP_E_TLS_NOT_TLS = 29,
    /// The server reset the connection (RST) before the response was complete.
    SP_E_CONNECTION_RESET = 30,
}

impl sp_result {
    pub fn from_kind(kind: ErrorKind) -> Self {
        use sp_result::*;
        match kind {
            ErrorKind::InvalidArgument => SP_E_INVALID_ARGUMENT,
            ErrorKind::OutOfRange => SP_E_OUT_OF_RANGE,
            ErrorKind::InvalidUrl => SP_E_INVALID_URL,
            ErrorKind::UnsupportedScheme => SP_E_UNSUPPORTED_SCHEME,
            ErrorKind::Dns => SP_E_DNS,
            ErrorKind::Connect => SP_E_CONNECT,
            ErrorKind::ConnectTimeout => SP_E_CONNECT_TIMEOUT,
            ErrorKind::QueueTimeout => SP_E_QUEUE_TIMEOUT,
            ErrorKind::ResponseTimeout => SP_E_RESPONSE_TIMEOUT,
            ErrorKind::ReadTimeout => SP_E_READ_TIMEOUT,
            ErrorKind::TlsCertificate => SP_E_TLS_CERTIFICATE,
            ErrorKind::TlsHandshake => SP_E_TLS_HANDSHAKE,
            ErrorKind::TlsUnknownIssuer => SP_E_TLS_UNKNOWN_ISSUER,
            ErrorKind::TlsExpired => SP_E_TLS_CERT_EXPIRED,
            ErrorKind::TlsHostnameMismatch => SP_E_TLS_HOSTNAME_MISMATCH,
            ErrorKind::TlsNotTls => SP_E_TLS_NOT_TLS,
            ErrorKind::Protocol => SP_E_PROTOCOL,
            ErrorKind::ConnectionClosed => SP_E_CONNECTION_CLOSED,
            ErrorKind::ConnectionReset => SP_E_CONNECTION_RESET,
            ErrorKind::Io => SP_E_IO,
            ErrorKind::TooManyServicePoints => SP_E_TOO_MANY_SERVICE_POINTS,
            ErrorKind::Canceled => SP_E_CANCELED,
            ErrorKind::WrongThread => SP_E_WRONG_THREAD,
            ErrorKind::ManagerClosed => SP_E_MANAGER_CLOSED,
            ErrorKind::BodySource => SP_E_BODY_SOURCE,
        }
    }

    /// Fixed text for a code (NUL-terminated, static).
    pub fn text(code: i32) -> &'static str {
        match code {
            0 => "success\0",
            1 => "invalid argument\0",
            2 => "NULL pointer argument\0",
            3 => "string is not valid UTF-8\0",
            4 => "value out of range\0",
            5 => "invalid, freed or wrong-kind handle\0",
            6 => "invalid URL\0",
            7 => "unsupported URL scheme\0",
            8 => "host name resolution failed\0",
            9 => "connection failed\0",
            10 => "connect timed out\0",
            11 => "timed out waiting for a connection (connection limit queue)\0",
            12 => "timed out waiting for the response\0",
            13 => "timed out reading the response body\0",
            14 => "TLS certificate rejected\0",
            15 => "TLS handshake failed\0",
            16 => "HTTP protocol error\0",
            17 => "connection closed before the response was complete\0",
            18 => "socket I/O error\0",
            19 => "too many service points\0",
            20 => "canceled\0",
            21 => "blocking call from a library thread\0",
            22 => "internal error (panic caught)\0",
            23 => "not found\0",
            24 => "the manager was freed\0",
            25 => "request body callback failed\0",
            26 => "TLS certificate issued by an unknown authority\0",
            27 => "TLS certificate expired or not yet valid\0",
            28 => "TLS certificate does not match the host name\0",
            29 => "server answered in plain HTTP, not TLS\0",
            30 => "connection reset by the server\0",
            _ => "unknown result code\0",
        }
    }
}
