//! Result codes of the C ABI and their mapping from the core's error kinds.

use crate::error::ErrorKind;
use std::ffi::CStr;

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
    /// The proxy answered the CONNECT of an https request with 407 Proxy Authentication
    /// Required: no credentials, or wrong ones (sp_last_error() has its status line).
    SP_E_PROXY_AUTH_REQUIRED = 31,
    /// The proxy refused to open a tunnel: its answer to CONNECT was not 2xx (sp_last_error()
    /// has its status line).
    SP_E_PROXY_CONNECT = 32,
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
            ErrorKind::Internal => SP_E_PANIC,
            ErrorKind::TooManyServicePoints => SP_E_TOO_MANY_SERVICE_POINTS,
            ErrorKind::Canceled => SP_E_CANCELED,
            ErrorKind::WrongThread => SP_E_WRONG_THREAD,
            ErrorKind::ManagerClosed => SP_E_MANAGER_CLOSED,
            ErrorKind::BodySource => SP_E_BODY_SOURCE,
            ErrorKind::ProxyAuth => SP_E_PROXY_AUTH_REQUIRED,
            ErrorKind::ProxyConnect => SP_E_PROXY_CONNECT,
        }
    }

    /// The fixed text of this code. An exhaustive match: a new code cannot lack one.
    pub fn text(self) -> &'static CStr {
        use sp_result::*;
        match self {
            SP_OK => c"success",
            SP_E_INVALID_ARGUMENT => c"invalid argument",
            SP_E_NULL_POINTER => c"NULL pointer argument",
            SP_E_INVALID_UTF8 => c"string is not valid UTF-8",
            SP_E_OUT_OF_RANGE => c"value out of range",
            SP_E_INVALID_HANDLE => c"invalid, freed or wrong-kind handle",
            SP_E_INVALID_URL => c"invalid URL",
            SP_E_UNSUPPORTED_SCHEME => c"unsupported URL scheme",
            SP_E_DNS => c"host name resolution failed",
            SP_E_CONNECT => c"connection failed",
            SP_E_CONNECT_TIMEOUT => c"connect timed out",
            SP_E_QUEUE_TIMEOUT => c"timed out waiting for a connection (connection limit queue)",
            SP_E_RESPONSE_TIMEOUT => c"timed out waiting for the response",
            SP_E_READ_TIMEOUT => c"timed out reading the response body",
            SP_E_TLS_CERTIFICATE => c"TLS certificate rejected",
            SP_E_TLS_HANDSHAKE => c"TLS handshake failed",
            SP_E_PROTOCOL => c"HTTP protocol error",
            SP_E_CONNECTION_CLOSED => c"connection closed before the response was complete",
            SP_E_IO => c"socket I/O error",
            SP_E_TOO_MANY_SERVICE_POINTS => c"too many service points",
            SP_E_CANCELED => c"canceled",
            SP_E_WRONG_THREAD => c"blocking call from a library thread",
            SP_E_PANIC => c"internal error (panic caught)",
            SP_E_NOT_FOUND => c"not found",
            SP_E_MANAGER_CLOSED => c"the manager was freed",
            SP_E_BODY_SOURCE => c"request body callback failed",
            SP_E_TLS_UNKNOWN_ISSUER => c"TLS certificate issued by an unknown authority",
            SP_E_TLS_CERT_EXPIRED => c"TLS certificate expired or not yet valid",
            SP_E_TLS_HOSTNAME_MISMATCH => c"TLS certificate does not match the host name",
            SP_E_TLS_NOT_TLS => c"server answered in plain HTTP, not TLS",
            SP_E_CONNECTION_RESET => c"connection reset by the server",
            SP_E_PROXY_AUTH_REQUIRED => c"proxy authentication required (407)",
            SP_E_PROXY_CONNECT => c"the proxy refused the tunnel (CONNECT)",
        }
    }
}

impl TryFrom<i32> for sp_result {
    type Error = i32;
    /// The code with this number (codes are contiguous from 0; a unit test checks that every
    /// variant round-trips), or the number back if no code has it.
    fn try_from(code: i32) -> Result<Self, i32> {
        use sp_result::*;
        Ok(match code {
            0 => SP_OK,
            1 => SP_E_INVALID_ARGUMENT,
            2 => SP_E_NULL_POINTER,
            3 => SP_E_INVALID_UTF8,
            4 => SP_E_OUT_OF_RANGE,
            5 => SP_E_INVALID_HANDLE,
            6 => SP_E_INVALID_URL,
            7 => SP_E_UNSUPPORTED_SCHEME,
            8 => SP_E_DNS,
            9 => SP_E_CONNECT,
            10 => SP_E_CONNECT_TIMEOUT,
            11 => SP_E_QUEUE_TIMEOUT,
            12 => SP_E_RESPONSE_TIMEOUT,
            13 => SP_E_READ_TIMEOUT,
            14 => SP_E_TLS_CERTIFICATE,
            15 => SP_E_TLS_HANDSHAKE,
            16 => SP_E_PROTOCOL,
            17 => SP_E_CONNECTION_CLOSED,
            18 => SP_E_IO,
            19 => SP_E_TOO_MANY_SERVICE_POINTS,
            20 => SP_E_CANCELED,
            21 => SP_E_WRONG_THREAD,
            22 => SP_E_PANIC,
            23 => SP_E_NOT_FOUND,
            24 => SP_E_MANAGER_CLOSED,
            25 => SP_E_BODY_SOURCE,
            26 => SP_E_TLS_UNKNOWN_ISSUER,
            27 => SP_E_TLS_CERT_EXPIRED,
            28 => SP_E_TLS_HOSTNAME_MISMATCH,
            29 => SP_E_TLS_NOT_TLS,
            30 => SP_E_CONNECTION_RESET,
            31 => SP_E_PROXY_AUTH_REQUIRED,
            32 => SP_E_PROXY_CONNECT,
            _ => return Err(code),
        })
    }
}

/// The text `sp_strerror` gives for any number: a code's own, or "unknown result code".
pub fn strerror(code: i32) -> &'static CStr {
    sp_result::try_from(code).map_or(c"unknown result code", sp_result::text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last code; bump it when appending one (the test below then checks it).
    const LAST: sp_result = sp_result::SP_E_PROXY_CONNECT;

    #[test]
    fn every_code_round_trips_and_has_a_text() {
        for code in 0..=LAST as i32 {
            let v = sp_result::try_from(code).expect("codes are contiguous");
            assert_eq!(v as i32, code);
            assert_ne!(strerror(code), c"unknown result code");
        }
        for code in [LAST as i32 + 1, -1, i32::MIN, i32::MAX] {
            assert_eq!(sp_result::try_from(code), Err(code));
            assert_eq!(strerror(code), c"unknown result code");
        }
    }
}
