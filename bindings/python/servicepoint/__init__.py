"""servicepoint: Python bindings (ctypes) for libservicepoint, an HTTP/1.1 connection
manager in the model of .NET's ServicePoint / ServicePointManager.

Example::

    import servicepoint

    with servicepoint.ServicePointManager() as manager:
        point = manager.find_service_point("http://example.com/")
        point.connection_lease_timeout = 60.0     # seconds; None no limit, 0 no reuse
        with manager.get("http://example.com/", timeout=5.0) as resp:
            print(resp.status, resp.header("content-type"))
            body = resp.read()
        req = servicepoint.Request("GET", "http://example.com/", timeout=5.0)
        with manager.send(req) as resp:           # reusable, one library call per send
            body = resp.read()

With asyncio::

    async with await manager.request_async("GET", url) as resp:
        body = await resp.aread()

Every duration is in seconds (int or float), None meaning no limit.

The shared library is found through ``$SERVICEPOINT_LIB``, bundled in the package (what
``pip install`` puts there), in the repository's ``target/release`` or ``target/debug``,
or by ``ctypes.util.find_library``
(see :mod:`servicepoint._native`). Importing fails with ImportError if it cannot be found
or its ABI version is not the one this binding was written for.
"""

from __future__ import annotations

from . import _native
from . import errors as _errors
from .cancel import CancelToken, interrupt_blocking_calls
from .errors import *  # noqa: F403 - every exception class, as listed in errors.__all__
from .manager import ServicePointManager
from .metrics import BUCKET_BOUNDS, Histogram, Statistics
from .point import ServicePoint
from .request import DEFAULT_READ_TIMEOUT, DEFAULT_TIMEOUT, Request
from .response import Response

__version__ = "0.1.0"

#: The ABI version this binding was written for (checked against sp_abi_version()).
ABI_VERSION: int = _native.ABI_VERSION
#: No limit, for every duration (the same as None; kept for readability).
INFINITE: None = None
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
    "Histogram",
    "BUCKET_BOUNDS",
    "Request",
    "DEFAULT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "Response",
    "CancelToken",
    "interrupt_blocking_calls",
]
# The exception classes (errors.__all__ also lists its lookup helpers, which stay there).
__all__ += [name for name in _errors.__all__ if name.endswith("Error")]
