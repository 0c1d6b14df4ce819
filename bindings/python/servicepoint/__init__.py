"""servicepoint: Python bindings (ctypes) for libservicepoint, an HTTP/1.1 connection
manager in the model of .NET's ServicePoint / ServicePointManager.

Example::

    import servicepoint

    with servicepoint.ServicePointManager() as manager:
        point = manager.find_service_point("http://example.com/")
        point.connection_lease_timeout = 60_000       # ms; -1 infinite, 0 no reuse
        with manager.request("GET", "http://example.com/", timeout=5.0) as resp:
            print(resp.status, resp.header("content-type"))
            body = resp.read()

The shared library is found through ``$SERVICEPOINT_LIB``, beside the package, in the
repository's ``target/release`` or ``target/debug``, or by ``ctypes.util.find_library``
(see :mod:`servicepoint._native`). Importing fails with ImportError if it cannot be found
or its ABI version is not the one this binding was written for.
"""

from __future__ import annotations

from . import _native
from .errors import (
    BodySourceError,
    CanceledError,
    ConnectError,
    ConnectionClosedError,
    ConnectTimeoutError,
    DnsError,
    InvalidArgumentError,
    InvalidHandleError,
    InvalidUrlError,
    InvalidUtf8Error,
    IoError,
    ManagerClosedError,
    NotFoundError,
    NullPointerError,
    OutOfRangeError,
    PanicError,
    ProtocolError,
    QueueTimeoutError,
    ReadTimeoutError,
    ResponseTimeoutError,
    ServicePointError,
    ServicePointTimeoutError,
    TlsCertificateError,
    TlsError,
    TlsHandshakeError,
    TlsUnknownIssuerError,
    TlsCertificateExpiredError,
    TlsHostnameMismatchError,
    TlsNotTlsError,
    TooManyServicePointsError,
    UnsupportedSchemeError,
    WrongThreadError,
)
from .manager import ServicePointManager
from .point import ServicePoint, Statistics
from .response import Response

__version__ = "0.1.0"

#: The ABI version this binding was written for (checked against sp_abi_version()).
ABI_VERSION: int = _native.ABI_VERSION
#: The infinite duration for every millisecond setting.
INFINITE: int = _native.SP_INFINITE
#: Path of the loaded shared library.
LIBRARY_PATH: str = _native.LIBRARY_PATH


def library_version() -> str:
    """The loaded library's version string, e.g. ``"servicepoint/0.1.0"``."""
    return _native.library_version()


__all__ = [
    "ABI_VERSION",
    "INFINITE",
    "LIBRARY_PATH",
    "library_version",
    "ServicePointManager",
    "ServicePoint",
    "Statistics",
    "Response",
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
]
