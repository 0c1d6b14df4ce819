"""The :class:`ServicePointManager`: service points per origin, defaults, and requests."""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _aio, _logging
from . import _native as n
from . import cancel as _cancel
from .cancel import CancelToken
from ._handle import NativeObject
from .errors import BodySourceError, ManagerClosedError
from .metrics import Histogram, Statistics, read_histogram, read_statistics
from .point import ServicePoint
from .request import (
    DEFAULT_READ_TIMEOUT,
    DEFAULT_TIMEOUT,
    BodyArg,
    HeadersArg,
    Request,
    body_bytes,
    new_native,
)
from .response import Response

__all__ = ["ServicePointManager"]

#: Key of a cached request description: (method, url) for every option at its default, else
#: (method, url, timeout_ms, read_timeout_ms, keep_alive, connection_group, retryable, proxy,
#: pipelined).
_CacheKey = Tuple[Any, ...]


class ServicePointManager(NativeObject):
    """A connection manager, like .NET's ServicePointManager, but an instance: it owns one
    service point per origin (scheme, host, port) and the defaults new service points take.

    Defaults are .NET's: connection limit 2, max service point idle time 100 s, max
    service points 0 (no limit), keep-alive on. Durations are seconds (int or float,
    millisecond resolution, rounded up), None meaning no limit. Use as a context manager or call
    :meth:`close`; closing closes idle connections now and busy ones when their responses
    are released, and makes open :class:`ServicePoint` handles raise ManagerClosedError.

    Every method may be called from any thread, concurrently; blocking calls release the
    GIL, so threads sharing one manager make progress in parallel.

    The library's log messages go to the :mod:`logging` logger ``servicepoint`` at the level
    it is enabled for when the manager is created (off, at no cost, when logging is not
    configured); see :meth:`set_log_level` and :meth:`sync_log_level`.
    """

    def __init__(self) -> None:
        handle = ctypes.c_void_p()
        n.sp_manager_new(ctypes.byref(handle))
        self._handle: Optional[int] = n.out_handle(handle, "sp_manager_new")
        self._validator: Any = None
        self._local = threading.local()
        # Identifies this manager for ServicePoint equality (outlives the handle).
        self._token = object()
        self.sync_log_level()

    def _free(self, handle: int) -> None:
        n.sp_manager_free(handle)

    def _closed_error(self) -> ManagerClosedError:
        return ManagerClosedError(24, "the manager is closed")

    def _detach(self) -> None:
        # This thread's cached request descriptions (other threads' go with those threads).
        local = self.__dict__.get("_local")
        for name in ("requests", "async_requests"):
            cache = getattr(local, name, None)
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
    def max_service_point_idle_time(self) -> Optional[float]:
        """MaxServicePointIdleTime in seconds (default 100; None = no limit): the max idle
        time new service points take, and how long an unused service point stays in the
        table."""
        return n.from_ms(self._get(n.sp_manager_get_max_service_point_idle_time))

    @max_service_point_idle_time.setter
    def max_service_point_idle_time(self, value: Optional[float]) -> None:
        n.sp_manager_set_max_service_point_idle_time(
            self._live(), n.to_ms(value, "max_service_point_idle_time")
        )

    @property
    def keep_alive_default(self) -> bool:
        """Keep-alive for requests that do not set their own (default True)."""
        return bool(self._get(n.sp_manager_get_keep_alive_default))

    @keep_alive_default.setter
    def keep_alive_default(self, value: bool) -> None:
        n.sp_manager_set_keep_alive_default(self._live(), 1 if value else 0)

    @property
    def dns_refresh_timeout(self) -> Optional[float]:
        """DnsRefreshTimeout in seconds (default 120, None no expiry, 0 resolve for every
        new connection): how long resolved addresses are reused for new connections."""
        return n.from_ms(self._get(n.sp_manager_get_dns_refresh_timeout))

    @dns_refresh_timeout.setter
    def dns_refresh_timeout(self, value: Optional[float]) -> None:
        n.sp_manager_set_dns_refresh_timeout(self._live(), n.to_ms(value, "dns_refresh_timeout"))

    @property
    def proxy(self) -> Optional[str]:
        """The manager-wide proxy, ``"http://[user[:password]@]host[:port]"`` (normalised;
        user and password percent-encoded, sent as Basic credentials), or None for direct
        connections (the default). Plain http goes to the proxy in absolute form, pooled
        on the proxy's service point for every origin behind it; https goes through a
        ``CONNECT`` tunnel, one service point per (proxy, origin), with TLS to the origin.
        Origins on :attr:`proxy_bypass` go direct. Raises InvalidUrlError,
        UnsupportedSchemeError (not an http:// proxy)."""
        return n.get_text(n.sp_manager_get_proxy, self._live()) or None

    @proxy.setter
    def proxy(self, value: Optional[str]) -> None:
        n.sp_manager_set_proxy(self._live(), None if value is None else n.encode(value, "proxy"))

    @property
    def proxy_bypass(self) -> str:
        """The bypass list: origins that go direct (default ``"localhost, 127.0.0.0/8,
        ::1"``). Entries separated by commas, semicolons or spaces: ``*``, a host and its
        subdomains (``example.com``, ``.example.com``), an IP address or CIDR block, each
        with an optional ``:port``, and ``<local>`` (names without a dot). ``""`` sends
        loopback through the proxy too. Raises InvalidArgumentError for a bad entry."""
        return n.get_text(n.sp_manager_get_proxy_bypass, self._live())

    @proxy_bypass.setter
    def proxy_bypass(self, value: str) -> None:
        n.sp_manager_set_proxy_bypass(self._live(), n.encode(value, "proxy_bypass"))

    @property
    def use_environment_proxy(self) -> bool:
        """Opt-in (default False) to ``http_proxy``, ``https_proxy``, ``all_proxy`` and
        ``no_proxy`` (lower case first, then upper case), read when set to True; a
        :attr:`proxy` set on the manager takes precedence."""
        return bool(self._get(n.sp_manager_get_use_environment_proxy))

    @use_environment_proxy.setter
    def use_environment_proxy(self, value: bool) -> None:
        n.sp_manager_set_use_environment_proxy(self._live(), 1 if value else 0)

    @property
    def service_point_count(self) -> int:
        """The number of service points the manager holds."""
        return self._get(n.sp_manager_get_service_point_count)

    # --- logging and metrics ---------------------------------------------------------------

    @property
    def log_level(self) -> Optional[int]:
        """The :mod:`logging` level from which the library's messages are passed to the
        ``servicepoint`` logger (``logging.DEBUG`` .. ``logging.ERROR``), None when off."""
        level = ctypes.c_int32()
        n.sp_manager_get_log_level(self._live(), ctypes.byref(level))
        return _logging.from_native(level.value)

    def set_log_level(self, level: Union[int, str, None]) -> None:
        """Passes the library's messages at ``level`` (a :mod:`logging` level or its name)
        and above to the logger ``servicepoint``; None turns logging off (the library then
        does not produce messages at all). Connection opens are INFO, reuses and closes
        DEBUG (INFO after errors), retries WARNING, queue waits of 100 ms or more INFO.

        Messages are logged on the thread whose call caused them, or on the library's idle
        reaper thread; a handler must not call this manager's blocking methods (they raise
        WrongThreadError there) and should be quick."""
        native = _logging.to_native(_logging.py_level(level))
        handle = self._live()
        if native == n.SP_LOG_OFF:
            n.sp_manager_set_log_callback(handle, n.SP_LOG_OFF, _logging.NO_CALLBACK, None)
            _logging.LOGGING.discard(self)
        else:
            n.sp_manager_set_log_callback(handle, native, _logging.CALLBACK, None)
            _logging.LOGGING.add(self)

    def sync_log_level(self) -> Optional[int]:
        """Sets :attr:`log_level` from the ``servicepoint`` logger: the most verbose level
        it is enabled for, or off if logging is not configured (no handler) or disabled
        for those levels. Done when the manager is created; call it again after changing
        the logging configuration. Returns the level set."""
        level = _logging.level_from_logger()
        if level is not None or self.__dict__.get("_logging_on"):
            self.set_log_level(level)
        self._logging_on = level is not None
        return level

    @property
    def statistics(self) -> Statistics:
        """The statistics summed over the manager's service points: open connections by
        state (``open``, ``idle``, ``busy``), requests waiting, requests, closes by reason."""
        return read_statistics(n.sp_manager_get_statistics, self._live())

    def queue_wait_histogram(self) -> Histogram:
        """How long each request waited for a connection (seconds), all service points."""
        return read_histogram(n.sp_manager_get_histogram, self._live(), n.SP_METRIC_QUEUE_WAIT)

    def connection_lifetime_histogram(self) -> Histogram:
        """How long each closed connection lived (seconds), all service points."""
        return read_histogram(
            n.sp_manager_get_histogram, self._live(), n.SP_METRIC_CONNECTION_LIFETIME
        )

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
    def use_nagle_algorithm(self) -> bool:
        """UseNagleAlgorithm that service points created from now on take (False by default:
        TCP_NODELAY)."""
        return bool(self._get(n.sp_manager_get_use_nagle_algorithm))

    @use_nagle_algorithm.setter
    def use_nagle_algorithm(self, on: bool) -> None:
        n.sp_manager_set_use_nagle_algorithm(self._live(), 1 if on else 0)

    @property
    def enable_dns_round_robin(self) -> bool:
        """EnableDnsRoundRobin: each new connection starts at the next of its host's
        addresses (False by default: the order resolved). Applies to every service point."""
        return bool(self._get(n.sp_manager_get_enable_dns_round_robin))

    @enable_dns_round_robin.setter
    def enable_dns_round_robin(self, on: bool) -> None:
        n.sp_manager_set_enable_dns_round_robin(self._live(), 1 if on else 0)

    def set_resolve(self, host: str, port: int, addresses: Optional[Sequence[str]]) -> None:
        """Pins ``host:port`` to IP ``addresses`` (tried in that order) for every new
        connection, without a lookup (curl's CURLOPT_RESOLVE); None removes the pin."""
        n.sp_manager_set_resolve(
            self._live(),
            n.encode(host, "host"),
            port,
            None if addresses is None else n.encode(",".join(addresses), "addresses"),
        )

    @property
    def resolve_overrides(self) -> Dict[Tuple[str, int], List[str]]:
        """The pins set with :meth:`set_resolve`, by (host, port)."""
        text = n.get_text(n.sp_manager_get_resolve, self._live())
        pins: Dict[Tuple[str, int], List[str]] = {}
        for line in filter(None, text.split("\n")):
            key, _, addrs = line.partition("=")
            host, _, port = key.rpartition(":")
            pins[(host, int(port))] = addrs.split(",")
        return pins

    @property
    def expect_100_continue(self) -> bool:
        """Expect100Continue that service points created from now on take (False by
        default)."""
        return bool(self._get(n.sp_manager_get_expect_100_continue))

    @expect_100_continue.setter
    def expect_100_continue(self, on: bool) -> None:
        n.sp_manager_set_expect_100_continue(self._live(), 1 if on else 0)

    def set_tcp_keep_alive(self, enabled: bool, time: float = 0.0, interval: float = 0.0) -> None:
        """SetTcpKeepAlive for service points created from now on (seconds, > 0 when
        enabled)."""
        t = n.to_ms(time, "time") if enabled else 0
        i = n.to_ms(interval, "interval") if enabled else 0
        n.sp_manager_set_tcp_keep_alive(self._live(), 1 if enabled else 0, t, i)

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
        TooManyServicePointsError, ManagerClosedError. Every call returns a new handle
        object; handles of the same service point compare equal.
        """
        point = ctypes.c_void_p()
        n.sp_find(self._live(), n.encode(uri, "uri"), ctypes.byref(point))
        return ServicePoint(n.out_handle(point, "sp_find"), self, self._token)

    def find_service_point_with_proxy(self, uri: str, proxy: Optional[str] = None) -> ServicePoint:
        """FindServicePoint(uri, proxy): the service point a request for ``uri`` uses
        through ``proxy``: None for the manager's proxy settings, ``""`` for direct, else a
        proxy URL (the bypass list applies). For plain http through a proxy it is the
        proxy's service point (its address is the proxy's); for https, the tunnel's."""
        point = ctypes.c_void_p()
        n.sp_find_with_proxy(
            self._live(), n.encode(uri, "uri"),
            None if proxy is None else n.encode(proxy, "proxy"), ctypes.byref(point),
        )
        return ServicePoint(n.out_handle(point, "sp_find_with_proxy"), self, self._token)

    def send(self, request: Request) -> Response:
        """Sends a :class:`Request` on a pooled connection of its URL's service point and
        waits for the response head (the body is read from the returned :class:`Response`).
        Costs one library call whatever the request's options. See :meth:`request` for the
        errors."""
        manager = self._live()
        handle = request._live()
        if request._lock is not None:
            return self._send_stream(manager, request, handle)
        resp = ctypes.c_void_p()
        if request._cancel_token is None and _cancel.arm():
            return self._send_interruptible(manager, request, handle, resp)
        n.sp_request(manager, handle, ctypes.byref(resp))
        return Response(n.out_handle(resp, "sp_request"), self)

    def _send_interruptible(
        self, manager: int, request: Request, handle: int, resp: ctypes.c_void_p
    ) -> Response:
        """sp_request on the main thread, armed (see servicepoint.cancel): the description
        watches the interrupt token, so Ctrl-C ends the send (and its response's reads)."""
        try:
            request._watch_interrupts()
            n.sp_request(manager, handle, ctypes.byref(resp))
        except BaseException:
            _cancel.disarm(True)
            raise
        _cancel.disarm()
        response = Response(n.out_handle(resp, "sp_request"), self)
        response._interruptible = True
        return response

    def _send_stream(self, manager: int, request: Request, handle: int) -> Response:
        reader = request._take_stream()
        resp = ctypes.c_void_p()
        try:
            if request._cancel_token is None and _cancel.arm():
                return self._send_interruptible(manager, request, handle, resp)
            n.sp_request(manager, handle, ctypes.byref(resp))
        except BodySourceError as exc:
            cause = reader.error if reader is not None else None
            if cause is not None and not isinstance(cause, Exception):
                raise cause from None  # KeyboardInterrupt, SystemExit: pass through
            if cause is not None:
                raise exc from cause
            raise
        return Response(n.out_handle(resp, "sp_request"), self)

    def request(
        self,
        method: str,
        url: str,
        headers: HeadersArg = None,
        body: BodyArg = None,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        read_timeout: Optional[float] = DEFAULT_READ_TIMEOUT,
        keep_alive: Optional[bool] = None,
        connection_group: Optional[str] = None,
        retryable: bool = False,
        cancel_token: Optional[CancelToken] = None,
        proxy: Optional[str] = None,
        pipelined: Optional[bool] = None,
    ) -> Response:
        """Sends a request on a pooled connection of the URL's service point and waits for
        the response head (the body is read from the returned :class:`Response`).

        The arguments are those of :class:`Request`: ``timeout`` (default 100) and
        ``read_timeout`` (default 300) are seconds, None meaning no limit. A request
        without headers and body reuses a native description cached for this thread (by
        method, URL and options); otherwise one is built for the call. To send the same
        request many times, build a :class:`Request` once and :meth:`send` it.

        Returns:
            The response. Close it (or use ``with``) to release its connection.

        Raises:
            ServicePointError subclasses: InvalidArgumentError, InvalidUrlError,
            UnsupportedSchemeError, DnsError, ConnectError, the TimeoutError subclasses,
            ProtocolError, ConnectionClosedError, IoError, BodySourceError (with the body
            source's exception as ``__cause__``), ... ``request_sent`` tells whether the
            server may have seen the request. OutOfRangeError (a ValueError) for a negative
            duration. CanceledError when ``cancel_token`` was canceled. On the main thread,
            Ctrl-C ends the wait at once with KeyboardInterrupt (see :mod:`servicepoint.cancel`).
        """
        manager = self._live()
        if headers is None and body is None and cancel_token is None:
            key = _cache_key(
                method, url, timeout, read_timeout, keep_alive, connection_group, retryable,
                proxy, pipelined,
            )
            cache: Optional[_RequestCache] = getattr(self._local, "requests", None)
            if cache is None:
                cache = self._local.requests = _RequestCache(_cancel.interrupt_token())
            handle = cache.get(key)
            resp = ctypes.c_void_p()
            if cache.token and _cancel.arm():
                try:
                    n.sp_request(manager, handle, ctypes.byref(resp))
                except BaseException:
                    _cancel.disarm(True)
                    raise
                _cancel.disarm()
                response = Response(n.out_handle(resp, "sp_request"), self)
                response._interruptible = True
                return response
            n.sp_request(manager, handle, ctypes.byref(resp))
            return Response(n.out_handle(resp, "sp_request"), self)
        with Request(
            method, url, headers, body, timeout, read_timeout, keep_alive,
            connection_group, retryable, cancel_token, proxy, pipelined,
        ) as req:
            return self.send(req)

    def get(self, url: str, **kwargs: Any) -> Response:
        """Shorthand for ``request("GET", url, **kwargs)``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, body: BodyArg = None, **kwargs: Any) -> Response:
        """Shorthand for ``request("POST", url, body=body, **kwargs)``."""
        return self.request("POST", url, body=body, **kwargs)

    # --- asyncio -----------------------------------------------------------------------------

    async def send_async(self, request: Request) -> Response:
        """:meth:`send` for asyncio: sends the request without blocking the event loop and
        returns the :class:`Response` once its head has arrived (read its body with
        :meth:`Response.aread`, :meth:`Response.aread1` or ``async for``). The request
        waits in the same queue as blocking ones and follows the same rules (connection
        limit, reuse, timeouts, retries).

        Cancelling the awaiting task cancels the request: still queued, it leaves the queue
        unsent; in flight, its connection is closed. A streamed body (file-like or iterable)
        is not supported here (ValueError). Raises what :meth:`request` raises.
        """
        manager = self._live()
        handle = request._live()
        if request._lock is not None:
            raise ValueError("send_async does not take a request with a streamed body")
        response: Response = await _aio.send(self, manager, handle)
        return response

    async def request_async(
        self,
        method: str,
        url: str,
        headers: HeadersArg = None,
        body: BodyArg = None,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        read_timeout: Optional[float] = DEFAULT_READ_TIMEOUT,
        keep_alive: Optional[bool] = None,
        connection_group: Optional[str] = None,
        retryable: bool = False,
        cancel_token: Optional[CancelToken] = None,
        proxy: Optional[str] = None,
        pipelined: Optional[bool] = None,
    ) -> Response:
        """:meth:`request` for asyncio (same arguments): ``resp = await
        manager.request_async("GET", url)``. See :meth:`send_async`. The body must be
        bytes-like or str."""
        if body is not None and body_bytes(body) is None:
            raise ValueError("request_async takes a bytes-like or str body, not a stream")
        if headers is None and body is None and cancel_token is None:
            manager = self._live()
            key = _cache_key(
                method, url, timeout, read_timeout, keep_alive, connection_group, retryable,
                proxy, pipelined,
            )
            response: Response = await _aio.send(self, manager, self._async_request(key))
            return response
        with Request(
            method, url, headers, body, timeout, read_timeout, keep_alive,
            connection_group, retryable, cancel_token, proxy, pipelined,
        ) as req:
            return await self.send_async(req)

    async def get_async(self, url: str, **kwargs: Any) -> Response:
        """Shorthand for ``await request_async("GET", url, **kwargs)``."""
        if not kwargs:  # the common case, without the detour
            manager = self._live()
            response: Response = await _aio.send(self, manager, self._async_request(("GET", url)))
            return response
        return await self.request_async("GET", url, **kwargs)

    def _async_request(self, key: _CacheKey) -> int:
        """This thread's cached description for asynchronous sends of ``key``. Without the
        interrupt token: an event loop handles Ctrl-C by cancelling tasks, whose operations
        are then cancelled."""
        cache: Optional[_RequestCache] = getattr(self._local, "async_requests", None)
        if cache is None:
            cache = self._local.async_requests = _RequestCache()
        return cache.get(key)

    async def post_async(self, url: str, body: BodyArg = None, **kwargs: Any) -> Response:
        """Shorthand for ``await request_async("POST", url, body=body, **kwargs)``."""
        return await self.request_async("POST", url, body=body, **kwargs)

    # --- lifetime ------------------------------------------------------------------------

    def __repr__(self) -> str:
        return "<ServicePointManager{}>".format(" closed" if self._handle is None else "")


def _cache_key(
    method: str,
    url: str,
    timeout: Optional[float],
    read_timeout: Optional[float],
    keep_alive: Optional[bool],
    connection_group: Optional[str],
    retryable: bool,
    proxy: Optional[str],
    pipelined: Optional[bool],
) -> _CacheKey:
    """The key of a request without headers and body in a :class:`_RequestCache`."""
    if (
        timeout == DEFAULT_TIMEOUT and read_timeout == DEFAULT_READ_TIMEOUT
        and keep_alive is None and not connection_group and not retryable
        and proxy is None and pipelined is None
    ):
        return (method, url)
    return (
        method, url, n.to_ms(timeout, "timeout"), n.to_ms(read_timeout, "read_timeout"),
        None if keep_alive is None else bool(keep_alive), connection_group or "",
        bool(retryable), proxy, None if pipelined is None else bool(pipelined),
    )


class _RequestCache:
    """One thread's request descriptions for requests without headers and body, by
    (method, url, options); bounded, and freed with the thread (or when evicted)."""

    LIMIT = 64

    def __init__(self, token: int = 0) -> None:
        self._handles: Dict[_CacheKey, int] = {}
        #: The interrupt token set on every description (main thread), else 0.
        self.token = token

    def get(self, key: _CacheKey) -> int:
        handle = self._handles.get(key)
        if handle is None:
            if len(self._handles) >= self.LIMIT:
                self.clear()
            if len(key) == 2:
                handle = new_native(key[0], key[1], [], None, 100_000, 300_000, None, None, False)
            else:
                handle = new_native(key[0], key[1], [], None, *key[2:])
            if self.token:
                try:
                    n.sp_http_request_set_cancel_token(handle, self.token)
                except BaseException:
                    n.sp_http_request_free(handle)
                    raise
            self._handles[key] = handle
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
