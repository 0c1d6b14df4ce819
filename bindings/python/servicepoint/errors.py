"""Exceptions raised by the servicepoint binding.

Every failing library call raises a subclass of :class:`ServicePointError`, chosen by the
``sp_result`` code the C function returned (see ``include/servicepoint.h``). The exception
carries the code, the detailed message from ``sp_last_error()`` (read on the calling thread
right after the failing call) and, from ``sp_last_error_request_sent()``, whether the request
may have reached the server.

Where a builtin exception has the same meaning the class derives from it too, so generic
handlers keep working: argument errors are :class:`ValueError`, network failures are
:class:`ConnectionError`, timeouts are the builtin :class:`TimeoutError`.
"""

from __future__ import annotations

import builtins
from typing import Dict, Optional, Tuple, Type

__all__ = [
    "ServicePointError",
    "InvalidArgumentError",
    "NullPointerError",
    "InvalidUtf8Error",
    "OutOfRangeError",
    "InvalidHandleError",
    "InvalidUrlError",
    "UnsupportedSchemeError",
    "DnsError",
    "ConnectError",
    "ServicePointTimeoutError",
    "ConnectTimeoutError",
    "QueueTimeoutError",
    "ResponseTimeoutError",
    "ReadTimeoutError",
    "TlsError",
    "TlsCertificateError",
    "TlsHandshakeError",
    "TlsUnknownIssuerError",
    "TlsCertificateExpiredError",
    "TlsHostnameMismatchError",
    "TlsNotTlsError",
    "ProtocolError",
    "ConnectionClosedError",
    "IoError",
    "TooManyServicePointsError",
    "CanceledError",
    "WrongThreadError",
    "PanicError",
    "NotFoundError",
    "ManagerClosedError",
    "BodySourceError",
    "ServicePointConnectionResetError",
    "ProxyError",
    "ProxyAuthenticationRequiredError",
    "ProxyConnectError",
    "ERROR_CODES",
    "error_class",
    "error_from_code",
]


class ServicePointError(Exception):
    """Base class of every error the library reports.

    Attributes:
        code: the ``sp_result`` code (e.g. 9 for ``SP_E_CONNECT``).
        message: the detailed message (``sp_last_error()``), or the fixed text of the code.
        request_sent: True if the failed request may have reached the server (request bytes
            were sent); use it to decide whether a non-idempotent request may be resent.
        function: name of the C function that failed, when known.
    """

    #: Name of the C constant this class stands for (``None`` for the base class).
    code_name: Optional[str] = None

    def __init__(
        self,
        code: int,
        message: str,
        request_sent: bool = False,
        function: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.code: int = int(code)
        self.message: str = message
        self.request_sent: bool = bool(request_sent)
        self.function: Optional[str] = function

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return "{}(code={}, message={!r}, request_sent={})".format(
            type(self).__name__, self.code, self.message, self.request_sent
        )

    def __reduce__(self) -> Tuple[object, ...]:
        return (type(self), (self.code, self.message, self.request_sent, self.function))


class InvalidArgumentError(ServicePointError, ValueError):
    """SP_E_INVALID_ARGUMENT: an argument is not acceptable (e.g. a bad header name)."""

    code_name = "SP_E_INVALID_ARGUMENT"


class NullPointerError(InvalidArgumentError):
    """SP_E_NULL_POINTER: a required pointer argument was NULL (a binding bug if seen)."""

    code_name = "SP_E_NULL_POINTER"


class InvalidUtf8Error(InvalidArgumentError):
    """SP_E_INVALID_UTF8: a string argument is not valid UTF-8."""

    code_name = "SP_E_INVALID_UTF8"


class OutOfRangeError(ServicePointError, ValueError):
    """SP_E_OUT_OF_RANGE: a numeric setting is outside its valid range; nothing was changed."""

    code_name = "SP_E_OUT_OF_RANGE"


class InvalidHandleError(ServicePointError):
    """SP_E_INVALID_HANDLE: the handle is NULL, freed, of another kind, or never issued."""

    code_name = "SP_E_INVALID_HANDLE"


class InvalidUrlError(ServicePointError, ValueError):
    """SP_E_INVALID_URL: the URL cannot be parsed or has no host."""

    code_name = "SP_E_INVALID_URL"


class UnsupportedSchemeError(ServicePointError, ValueError):
    """SP_E_UNSUPPORTED_SCHEME: the URL's scheme is neither http nor https (or https
    without TLS support)."""

    code_name = "SP_E_UNSUPPORTED_SCHEME"


class DnsError(ServicePointError, ConnectionError):
    """SP_E_DNS: the host name could not be resolved."""

    code_name = "SP_E_DNS"


class ConnectError(ServicePointError, ConnectionError):
    """SP_E_CONNECT: the TCP connection could not be established (refused, unreachable)."""

    code_name = "SP_E_CONNECT"


class ServicePointTimeoutError(ServicePointError, builtins.TimeoutError):
    """Base of the four timeout errors; also the builtin :class:`TimeoutError`."""


class ConnectTimeoutError(ServicePointTimeoutError, ConnectError):
    """SP_E_CONNECT_TIMEOUT: establishing the connection took longer than the timeout.
    Also a :class:`ConnectError`."""

    code_name = "SP_E_CONNECT_TIMEOUT"


class QueueTimeoutError(ServicePointTimeoutError):
    """SP_E_QUEUE_TIMEOUT: the request waited for a free connection (connection limit
    reached) longer than its timeout. The request was not sent."""

    code_name = "SP_E_QUEUE_TIMEOUT"


class ResponseTimeoutError(ServicePointTimeoutError):
    """SP_E_RESPONSE_TIMEOUT: the response head did not arrive within the timeout."""

    code_name = "SP_E_RESPONSE_TIMEOUT"


class ReadTimeoutError(ServicePointTimeoutError):
    """SP_E_READ_TIMEOUT: a body read did not complete within the read timeout."""

    code_name = "SP_E_READ_TIMEOUT"


class TlsError(ServicePointError, ConnectionError):
    """Base of the TLS errors."""


class TlsCertificateError(TlsError):
    """SP_E_TLS_CERTIFICATE: the server's TLS certificate was rejected."""

    code_name = "SP_E_TLS_CERTIFICATE"


class TlsHandshakeError(TlsError):
    """SP_E_TLS_HANDSHAKE: the TLS handshake failed."""

    code_name = "SP_E_TLS_HANDSHAKE"


class TlsUnknownIssuerError(TlsCertificateError):
    """SP_E_TLS_UNKNOWN_ISSUER: the certificate was issued by an authority that is not trusted."""

    code_name = "SP_E_TLS_UNKNOWN_ISSUER"


class TlsCertificateExpiredError(TlsCertificateError):
    """SP_E_TLS_CERT_EXPIRED: the certificate has expired or is not valid yet."""

    code_name = "SP_E_TLS_CERT_EXPIRED"


class TlsHostnameMismatchError(TlsCertificateError):
    """SP_E_TLS_HOSTNAME_MISMATCH: the certificate is not valid for the host name."""

    code_name = "SP_E_TLS_HOSTNAME_MISMATCH"


class TlsNotTlsError(TlsHandshakeError):
    """SP_E_TLS_NOT_TLS: the server answered in plain HTTP (an http port used with https://)."""

    code_name = "SP_E_TLS_NOT_TLS"


class ProtocolError(ServicePointError):
    """SP_E_PROTOCOL: the server sent something that is not valid HTTP/1.x or exceeds
    the limits."""

    code_name = "SP_E_PROTOCOL"


class ConnectionClosedError(ServicePointError, ConnectionError):
    """SP_E_CONNECTION_CLOSED: the connection closed before the response was complete."""

    code_name = "SP_E_CONNECTION_CLOSED"


class IoError(ServicePointError, ConnectionError):
    """SP_E_IO: another socket error."""

    code_name = "SP_E_IO"


class TooManyServicePointsError(ServicePointError):
    """SP_E_TOO_MANY_SERVICE_POINTS: the manager is at its max service points and none
    can be evicted."""

    code_name = "SP_E_TOO_MANY_SERVICE_POINTS"


class CanceledError(ServicePointError):
    """SP_E_CANCELED: the operation was canceled."""

    code_name = "SP_E_CANCELED"


class WrongThreadError(ServicePointError, RuntimeError):
    """SP_E_WRONG_THREAD: a blocking call was made from a library thread (a callback)."""

    code_name = "SP_E_WRONG_THREAD"


class PanicError(ServicePointError, RuntimeError):
    """SP_E_PANIC: an internal error (a Rust panic) was caught; the message has details."""

    code_name = "SP_E_PANIC"


class NotFoundError(ServicePointError, LookupError):
    """SP_E_NOT_FOUND: the looked-up item does not exist. The binding turns it into
    ``None`` for header and trailer lookups."""

    code_name = "SP_E_NOT_FOUND"


class ManagerClosedError(ServicePointError):
    """SP_E_MANAGER_CLOSED: the service point's manager was closed (freed)."""

    code_name = "SP_E_MANAGER_CLOSED"


class BodySourceError(ServicePointError):
    """SP_E_BODY_SOURCE: producing the streamed request body failed. When the body came
    from Python (a file or an iterable that raised), the original exception is the
    ``__cause__``."""

    code_name = "SP_E_BODY_SOURCE"


class ServicePointConnectionResetError(ConnectionClosedError, builtins.ConnectionResetError):
    """SP_E_CONNECTION_RESET: the server reset the connection (RST) before the response was
    complete. Also a :class:`ConnectionClosedError` (the code it had before ABI 2) and the
    builtin :class:`ConnectionResetError` (named so as not to shadow it)."""

    code_name = "SP_E_CONNECTION_RESET"


class ProxyError(ServicePointError, ConnectionError):
    """Base of the errors of a proxy's answer to ``CONNECT`` (an https request through an
    http proxy). The message has the proxy's status line."""


class ProxyAuthenticationRequiredError(ProxyError):
    """SP_E_PROXY_AUTH_REQUIRED: the proxy answered ``CONNECT`` with 407: no credentials in
    the proxy URL, or wrong ones. (For plain http the proxy's 407 is the response.)"""

    code_name = "SP_E_PROXY_AUTH_REQUIRED"


class ProxyConnectError(ProxyError):
    """SP_E_PROXY_CONNECT: the proxy refused to open the tunnel (its answer to ``CONNECT``
    was not 2xx)."""

    code_name = "SP_E_PROXY_CONNECT"


#: ``sp_result`` code -> exception class, for every error code in the header (ABI 2).
ERROR_CODES: Dict[int, Type[ServicePointError]] = {
    1: InvalidArgumentError,
    2: NullPointerError,
    3: InvalidUtf8Error,
    4: OutOfRangeError,
    5: InvalidHandleError,
    6: InvalidUrlError,
    7: UnsupportedSchemeError,
    8: DnsError,
    9: ConnectError,
    10: ConnectTimeoutError,
    11: QueueTimeoutError,
    12: ResponseTimeoutError,
    13: ReadTimeoutError,
    14: TlsCertificateError,
    15: TlsHandshakeError,
    16: ProtocolError,
    17: ConnectionClosedError,
    18: IoError,
    19: TooManyServicePointsError,
    20: CanceledError,
    21: WrongThreadError,
    22: PanicError,
    23: NotFoundError,
    24: ManagerClosedError,
    25: BodySourceError,
    26: TlsUnknownIssuerError,
    27: TlsCertificateExpiredError,
    28: TlsHostnameMismatchError,
    29: TlsNotTlsError,
    30: ServicePointConnectionResetError,
    31: ProxyAuthenticationRequiredError,
    32: ProxyConnectError,
}


def error_class(code: int) -> Type[ServicePointError]:
    """The exception class for an ``sp_result`` code (the base class for unknown codes,
    which a newer library may append)."""
    return ERROR_CODES.get(int(code), ServicePointError)


def error_from_code(
    code: int,
    message: str,
    request_sent: bool = False,
    function: Optional[str] = None,
) -> ServicePointError:
    """Builds (does not raise) the exception for an ``sp_result`` code."""
    return error_class(code)(code, message, request_sent, function)
