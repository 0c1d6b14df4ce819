"""The :class:`ServicePointManager`: service points per origin, defaults, and requests."""

from __future__ import annotations

import ctypes
import math
import threading
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from . import _native as n
from ._handle import NativeObject
from .errors import BodySourceError, ManagerClosedError, OutOfRangeError
from .point import ServicePoint
from .response import Response

__all__ = ["ServicePointManager", "HeadersArg", "BodyArg"]

HeaderValue = Union[str, bytes, int]
#: Request headers: a mapping or an iterable of (name, value) pairs (repeats allowed).
HeadersArg = Optional[Union[Mapping[str, HeaderValue], Iterable[Tuple[str, HeaderValue]]]]
#: Request body: bytes-like (sent with Content-Length), str (UTF-8), a binary file-like
#: object with ``read(n)``, or an iterable of bytes chunks (both streamed, chunked).
BodyArg = Optional[Union[bytes, bytearray, memoryview, str, Any, Iterable[bytes]]]


def _ms(seconds: Optional[float], what: str) -> Optional[int]:
    """Seconds (float) -> int32 milliseconds; None -> None (library default);
    math.inf -> -1 (infinite). Rounds up so a tiny positive timeout is not 0."""
    if seconds is None:
        return None
    if isinstance(seconds, bool):
        raise TypeError("{} must be a number of seconds or None".format(what))
    value = float(seconds)
    if math.isnan(value) or value < 0:
        raise OutOfRangeError(4, "{} must be >= 0 seconds (or None or math.inf)".format(what))
    if math.isinf(value):
        return n.SP_INFINITE
    return min(int(math.ceil(value * 1000.0)), 2**31 - 1)


def _to_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(
        "request body chunks must be bytes-like or str, not {}".format(type(chunk).__name__)
    )


class _BodyReader:
    """Adapts a file-like object or an iterable of chunks to sp_body_read_cb.

    The callback runs on the thread that called sp_request() (ctypes re-acquires the GIL
    for it). Any exception is stored and reported to the library as a non-zero return,
    which aborts the request with SP_E_BODY_SOURCE; :meth:`ServicePointManager.request`
    then raises it as the cause of a BodySourceError.
    """

    def __init__(self, source: Any) -> None:
        self.error: Optional[BaseException] = None
        self._pending = b""
        self._read: Optional[Callable[[int], Any]] = None
        self._chunks: Optional[Iterator[Any]] = None
        if callable(getattr(source, "read", None)):
            self._read = source.read
        else:
            self._chunks = iter(source)
        # Keep the ctypes trampoline referenced until the request has been sent.
        self.callback = n.sp_body_read_cb(self._callback)

    def _next(self, cap: int) -> bytes:
        while not self._pending:
            if self._read is not None:
                chunk = _to_bytes(self._read(cap))
                if not chunk:
                    return b""
            else:
                assert self._chunks is not None
                try:
                    chunk = _to_bytes(next(self._chunks))
                except StopIteration:
                    return b""
            self._pending = chunk  # empty chunks are skipped: 0 would mean end of body
        data, self._pending = self._pending[:cap], self._pending[cap:]
        return data

    def _callback(self, userdata: Any, buf: Optional[int], cap: int, out_n: Any) -> int:
        try:
            data = self._next(cap) if cap > 0 else b""
            if data:
                if not buf:
                    raise ValueError("the library passed a NULL body buffer")
                ctypes.memmove(buf, data, len(data))
            out_n[0] = len(data)
            return 0
        except BaseException as exc:  # noqa: B902 - must never unwind into the library
            self.error = exc
            return 1


class ServicePointManager(NativeObject):
    """A connection manager, like .NET's ServicePointManager, but an instance: it owns one
    service point per origin (scheme, host, port) and the defaults new service points take.

    Defaults are .NET's: connection limit 2, max service point idle time 100000 ms, max
    service points 0 (no limit), keep-alive on. Use as a context manager or call
    :meth:`close`; closing closes idle connections now and busy ones when their responses
    are released, and makes open :class:`ServicePoint` handles raise ManagerClosedError.

    Every method may be called from any thread, concurrently; blocking calls release the
    GIL, so threads sharing one manager make progress in parallel.
    """

    def __init__(self) -> None:
        handle = ctypes.c_void_p()
        n.sp_manager_new(ctypes.byref(handle))
        self._handle: Optional[int] = n.out_handle(handle, "sp_manager_new")
        self._validator: Any = None
        self._local = threading.local()

    def _free(self, handle: int) -> None:
        n.sp_manager_free(handle)

    def _closed_error(self) -> ManagerClosedError:
        return ManagerClosedError(24, "the manager is closed")

    def _detach(self) -> None:
        # This thread's cached request descriptions (other threads' go with those threads).
        cache = getattr(self.__dict__.get("_local"), "requests", None)
        if cache is not None:
            cache.clear()

    # --- settings ------------------------------------------------------------------------

    @property
    def default_connection_limit(self) -> int:
        """DefaultConnectionLimit: the connection limit service points created from now on
        take (existing ones keep theirs). Must be > 0."""
        return self._get(n.sp_manager_get_default_connection_limit)

    @default_connection_limit.setter
    def default_connection_limit(self, value: int) -> None:
        self._set(n.sp_manager_set_default_connection_limit, value, "default connection limit")

    @property
    def max_service_points(self) -> int:
        """MaxServicePoints (0 = no limit). When full, a new origin evicts an unused
        service point (no busy connection, no open handle), else TooManyServicePointsError."""
        return self._get(n.sp_manager_get_max_service_points)

    @max_service_points.setter
    def max_service_points(self, value: int) -> None:
        self._set(n.sp_manager_set_max_service_points, value, "max service points")

    @property
    def max_service_point_idle_time(self) -> int:
        """MaxServicePointIdleTime in ms (-1 infinite): the max idle time new service
        points take, and how long an unused service point stays in the table."""
        return self._get(n.sp_manager_get_max_service_point_idle_time)

    @max_service_point_idle_time.setter
    def max_service_point_idle_time(self, value: int) -> None:
        self._set(n.sp_manager_set_max_service_point_idle_time, value, "max service point idle time")

    @property
    def keep_alive_default(self) -> bool:
        """Keep-alive for requests that do not set their own (default True)."""
        return bool(self._get(n.sp_manager_get_keep_alive_default))

    @keep_alive_default.setter
    def keep_alive_default(self, value: bool) -> None:
        n.sp_manager_set_keep_alive_default(self._live(), 1 if value else 0)

    @property
    def dns_refresh_timeout(self) -> int:
        """DnsRefreshTimeout in ms (default 120000, -1 no expiry, 0 resolve for every new
        connection): how long resolved addresses are reused for new connections."""
        return self._get(n.sp_manager_get_dns_refresh_timeout)

    @dns_refresh_timeout.setter
    def dns_refresh_timeout(self, value: int) -> None:
        self._set(n.sp_manager_set_dns_refresh_timeout, value, "dns_refresh_timeout")

    @property
    def service_point_count(self) -> int:
        """The number of service points the manager holds."""
        return self._get(n.sp_manager_get_service_point_count)

    # --- TLS --------------------------------------------------------------------------------

    def add_ca_pem(self, pem: Union[bytes, str]) -> None:
        """Trusts the CA certificates in a PEM string/bytes for https, besides the system's
        trust store (unless :attr:`system_roots` is off)."""
        data = pem.encode("ascii") if isinstance(pem, str) else bytes(pem)
        n.sp_manager_add_ca_pem(self._live(), data, len(data))

    def add_ca_file(self, path: str) -> None:
        """Trusts the CA certificates in a PEM file."""
        n.sp_manager_add_ca_file(self._live(), n.encode(str(path), "path"))

    @property
    def ca_count(self) -> int:
        """How many CA certificates were added with :meth:`add_ca_pem`/:meth:`add_ca_file`
        (the system's trust store not counted)."""
        return self._get(n.sp_manager_get_ca_count)

    @property
    def system_roots(self) -> bool:
        """Use the system's trust store (True, the default) or only the added CAs."""
        return bool(self._get(n.sp_manager_get_system_roots))

    @system_roots.setter
    def system_roots(self, on: bool) -> None:
        n.sp_manager_set_system_roots(self._live(), 1 if on else 0)

    def set_client_certificate(self, cert_pem: Union[bytes, str], key_pem: Union[bytes, str]) -> None:
        """The client certificate chain and private key (PEM) for mutual TLS."""
        cert = cert_pem.encode("ascii") if isinstance(cert_pem, str) else bytes(cert_pem)
        key = key_pem.encode("ascii") if isinstance(key_pem, str) else bytes(key_pem)
        n.sp_manager_set_client_certificate(self._live(), cert, len(cert), key, len(key))

    @property
    def has_client_certificate(self) -> bool:
        """Whether a client certificate was set with :meth:`set_client_certificate`."""
        return bool(self._get(n.sp_manager_has_client_certificate))

    @property
    def min_tls_version(self) -> str:
        """The lowest TLS version offered, '1.2' (the default) or '1.3'."""
        return {12: "1.2", 13: "1.3"}[self._get(n.sp_manager_get_min_tls_version)]

    @min_tls_version.setter
    def min_tls_version(self, version: str) -> None:
        codes = {"1.2": 12, "1.3": 13}
        if version not in codes:
            raise ValueError("min_tls_version must be '1.2' or '1.3'")
        n.sp_manager_set_min_tls_version(self._live(), codes[version])

    @property
    def has_certificate_validator(self) -> bool:
        """Whether a certificate validation callback is installed."""
        return bool(self._get(n.sp_manager_has_certificate_validator))

    def set_certificate_validator(
        self, validator: Optional[Callable[[str, List[bytes], int], bool]]
    ) -> None:
        """Installs (or with None removes) a certificate validation callback, for tests and
        private networks: ``validator(host, der_chain, builtin_code) -> bool`` where
        ``builtin_code`` is 0 if the built-in verification accepted the chain, else its error
        code (e.g. 26 for an unknown issuer). Exceptions in it count as a rejection. It runs on
        full handshakes: a connection resuming a session of this manager is not checked again
        until a TLS option is set (which starts a fresh session cache)."""
        if validator is None:
            n.sp_manager_set_certificate_validator(self._live(), n.sp_cert_validator_cb(), None)
            self._validator = None
            return

        def trampoline(_user: Any, host: bytes, certs: Any, lens: Any, count: int, code: int) -> int:
            try:
                chain = [ctypes.string_at(certs[i], lens[i]) for i in range(count)]
                return 1 if validator(host.decode("utf-8", "replace"), chain, int(code)) else 0
            except BaseException:  # a callback must never unwind into the library
                return 0

        callback = n.sp_cert_validator_cb(trampoline)
        n.sp_manager_set_certificate_validator(self._live(), callback, None)
        # Keep the trampoline alive as long as the library may call it.
        self._validator = callback

    # --- service points and requests -----------------------------------------------------

    def find_service_point(self, uri: str) -> ServicePoint:
        """FindServicePoint: the service point of the URI's origin, created if needed.

        Scheme and host compare case-insensitively and default ports are filled in; path,
        query and user info are ignored. Raises InvalidUrlError, UnsupportedSchemeError,
        TooManyServicePointsError, ManagerClosedError.
        """
        point = ctypes.c_void_p()
        n.sp_find(self._live(), n.encode(uri, "uri"), ctypes.byref(point))
        return ServicePoint(n.out_handle(point, "sp_find"), self)

    def request(
        self,
        method: str,
        url: str,
        headers: HeadersArg = None,
        body: BodyArg = None,
        timeout: Optional[float] = None,
        read_timeout: Optional[float] = None,
        keep_alive: Optional[bool] = None,
        connection_group: Optional[str] = None,
        retryable: bool = False,
    ) -> Response:
        """Sends a request on a pooled connection of the URL's service point and waits for
        the response head (the body is read from the returned :class:`Response`).

        Args:
            method: e.g. ``"GET"``.
            url: an absolute http(s) URL.
            headers: a mapping or an iterable of (name, value) pairs, sent in order.
                Host and User-Agent replace the library's; Content-Length and
                Transfer-Encoding are refused (the body sets them); ``Connection: close``
                turns keep-alive off.
            body: bytes-like or str (UTF-8), sent with Content-Length; or a binary
                file-like object (``read(n)``) or an iterable of bytes chunks, streamed with
                chunked transfer coding (never retried automatically).
            timeout: seconds for getting the response head, including the wait for a
                connection, connecting and sending; None = library default (100 s);
                ``math.inf`` = no limit.
            read_timeout: seconds each body read may wait; None = library default (300 s).
            keep_alive: False sends ``Connection: close`` and does not reuse the connection;
                None takes the manager's :attr:`keep_alive_default`.
            connection_group: name of the connection group (its own pool); None/"" = default.
            retryable: mark a non-idempotent request (POST, PATCH) safe to resend once on a
                new connection when a reused connection fails before any response byte.
                Idempotent methods with a replayable body are always retried so.

        Returns:
            The response. Close it (or use ``with``) to release its connection.

        Raises:
            ServicePointError subclasses: InvalidArgumentError, InvalidUrlError,
            UnsupportedSchemeError, DnsError, ConnectError, the TimeoutError subclasses,
            ProtocolError, ConnectionClosedError, IoError, BodySourceError (with the body
            source's exception as ``__cause__``), ... ``request_sent`` tells whether the
            server may have seen the request.
        """
        manager = self._live()
        if (
            headers is None and body is None and timeout is None and read_timeout is None
            and keep_alive is None and not connection_group and not retryable
        ):
            return self._plain_request(manager, method, url)
        timeout_ms = _ms(timeout, "timeout")
        read_timeout_ms = _ms(read_timeout, "read_timeout")
        req = ctypes.c_void_p()
        n.sp_http_request_new(n.encode(method, "method"), n.encode(url, "url"), ctypes.byref(req))
        handle = n.out_handle(req, "sp_http_request_new")
        reader: Optional[_BodyReader] = None
        try:
            for name, value in _header_pairs(headers):
                n.sp_http_request_add_header(
                    handle,
                    n.encode(name, "header name"),
                    n.encode(value if isinstance(value, (str, bytes, bytearray)) else str(value),
                             "header value"),
                )
            if body is not None:
                data: Optional[bytes] = None
                if isinstance(body, str):
                    data = body.encode("utf-8")
                else:
                    try:  # any bytes-like object (bytes, bytearray, memoryview, array, ...)
                        data = memoryview(body).tobytes()  # type: ignore[arg-type]
                    except TypeError:
                        data = None
                if data is not None:
                    n.sp_http_request_set_body(handle, data, len(data))
                else:
                    reader = _BodyReader(body)
                    n.sp_http_request_set_body_reader(handle, reader.callback, None)
            if timeout_ms is not None:
                n.sp_http_request_set_timeout(handle, timeout_ms)
            if read_timeout_ms is not None:
                n.sp_http_request_set_read_timeout(handle, read_timeout_ms)
            if keep_alive is not None:
                n.sp_http_request_set_keep_alive(handle, 1 if keep_alive else 0)
            if connection_group:
                n.sp_http_request_set_connection_group(
                    handle, n.encode(connection_group, "connection group")
                )
            if retryable:
                n.sp_http_request_set_retryable(handle, 1)
            resp = ctypes.c_void_p()
            try:
                n.sp_request(manager, handle, ctypes.byref(resp))
            except BodySourceError as exc:
                cause = reader.error if reader is not None else None
                if cause is not None and not isinstance(cause, Exception):
                    raise cause from None  # KeyboardInterrupt, SystemExit: pass through
                if cause is not None:
                    raise exc from cause
                raise
        finally:
            n.sp_http_request_free(handle)
            # The reader (and its trampoline) may go only after sp_request returned.
            reader = None
        return Response(n.out_handle(resp, "sp_request"), self)

    def _plain_request(self, manager: int, method: str, url: str) -> Response:
        """``request(method, url)`` with every option at its default: reuses a request
        description cached for this thread (a description is used by one thread at a time,
        and creating one per call costs more than the request's own library work)."""
        cache: Optional[_RequestCache] = getattr(self._local, "requests", None)
        if cache is None:
            cache = self._local.requests = _RequestCache()
        handle = cache.get(method, url)
        resp = ctypes.c_void_p()
        n.sp_request(manager, handle, ctypes.byref(resp))
        return Response(n.out_handle(resp, "sp_request"), self)

    def get(self, url: str, **kwargs: Any) -> Response:
        """Shorthand for ``request("GET", url, **kwargs)``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, body: BodyArg = None, **kwargs: Any) -> Response:
        """Shorthand for ``request("POST", url, body=body, **kwargs)``."""
        return self.request("POST", url, body=body, **kwargs)

    # --- lifetime ------------------------------------------------------------------------

    def __repr__(self) -> str:
        return "<ServicePointManager{}>".format(" closed" if self._handle is None else "")


class _RequestCache:
    """One thread's request descriptions for plain requests, by (method, url); bounded,
    and freed with the thread (or when evicted), never shared between threads."""

    LIMIT = 64

    def __init__(self) -> None:
        self._handles: Dict[Tuple[str, str], int] = {}

    def get(self, method: str, url: str) -> int:
        key = (method, url)
        handle = self._handles.get(key)
        if handle is None:
            if len(self._handles) >= self.LIMIT:
                self.clear()
            req = ctypes.c_void_p()
            n.sp_http_request_new(n.encode(method, "method"), n.encode(url, "url"), ctypes.byref(req))
            handle = self._handles[key] = n.out_handle(req, "sp_http_request_new")
        return handle

    def clear(self) -> None:
        handles, self._handles = self._handles, {}
        for handle in handles.values():
            n.sp_http_request_free(handle)

    def __del__(self) -> None:
        try:
            self.clear()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _header_pairs(headers: HeadersArg) -> List[Tuple[Any, Any]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    pairs = []
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError("headers must be a mapping or an iterable of (name, value) pairs") from None
        pairs.append((name, value))
    return pairs
