"""The :class:`ServicePoint`: one origin's connections, settings and statistics."""

from __future__ import annotations

import ctypes
from datetime import datetime, timedelta, timezone
from typing import Any, Hashable, Optional, Tuple

from . import _native as n
from ._handle import NativeObject
from .errors import InvalidHandleError, NotFoundError
from .metrics import Histogram, Statistics, read_histogram, read_statistics

__all__ = ["ServicePoint", "Statistics"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ServicePoint(NativeObject):
    """One origin's (scheme, host, port) connections and settings, as in .NET.

    Obtained from :meth:`ServicePointManager.find_service_point`; the same origin always
    gives the same service point (each call returns a new handle object to it). The handle
    keeps the service point alive (it cannot be evicted while open); :meth:`close` frees
    the handle only, the service point stays in its manager. After the manager is closed
    every accessor raises :class:`~servicepoint.errors.ManagerClosedError`.

    Durations are seconds (float), None meaning no limit. Settings apply to all the handles
    of the same service point. Two handles of the same service point compare equal and hash
    the same (even once closed). All methods may be called from any thread.
    """

    def __init__(self, handle: int, manager: Any = None, token: Hashable = None) -> None:
        self._handle: Optional[int] = handle
        # Keeps the manager object alive while a handle is open.
        self._manager = manager
        # Identifies the manager for equality (kept after close; unique while referenced).
        self._token = token
        self._address: Optional[str] = None
        try:
            self._address = self.address
        except BaseException:
            self.close()
            raise

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServicePoint):
            return NotImplemented
        return self._token is other._token and self._address == other._address

    def __hash__(self) -> int:
        return hash((self._token, self._address))

    def _free(self, handle: int) -> None:
        # The service point stays in its manager; only this handle goes.
        n.sp_point_free(handle)

    def _closed_error(self) -> InvalidHandleError:
        return InvalidHandleError(5, "the service point handle is closed")

    def _detach(self) -> None:
        self._manager = None

    @property
    def address(self) -> str:
        """The service point's address, ``"scheme://host[:port]"`` (default port omitted)."""
        if self._address is None:
            text = ctypes.c_char_p()
            n.sp_get_address(self._live(), ctypes.byref(text))
            self._address = (text.value or b"").decode("utf-8", "replace")
        return self._address

    @property
    def connection_limit(self) -> int:
        """ConnectionLimit: the most connections each connection group opens; further
        requests wait in FIFO order. Must be > 0 (else OutOfRangeError, nothing changed)."""
        return self._get(n.sp_get_connection_limit)

    @connection_limit.setter
    def connection_limit(self, value: int) -> None:
        self._set(n.sp_set_connection_limit, value, "connection limit")

    @property
    def connection_lease_timeout(self) -> Optional[float]:
        """ConnectionLeaseTimeout in seconds: None connections live forever (default); 0
        every request carries ``Connection: close`` and gets a new connection; t a
        connection older than t seconds is closed after its next request. Negative:
        OutOfRangeError. Millisecond resolution (rounded up)."""
        return n.from_ms(self._get(n.sp_get_lease_timeout))

    @connection_lease_timeout.setter
    def connection_lease_timeout(self, value: Optional[float]) -> None:
        n.sp_set_lease_timeout(self._live(), n.to_ms(value, "connection_lease_timeout"))

    @property
    def max_idle_time(self) -> Optional[float]:
        """MaxIdleTime in seconds (None = no limit): idle connections older than this are
        closed. Taken from the manager's max_service_point_idle_time at creation."""
        return n.from_ms(self._get(n.sp_get_max_idle_time))

    @max_idle_time.setter
    def max_idle_time(self, value: Optional[float]) -> None:
        n.sp_set_max_idle_time(self._live(), n.to_ms(value, "max_idle_time"))

    @property
    def max_requests_per_connection(self) -> int:
        """Cap on the requests one connection serves (0 = no cap, the default)."""
        return self._get(n.sp_get_max_requests_per_connection)

    @max_requests_per_connection.setter
    def max_requests_per_connection(self, value: int) -> None:
        self._set(n.sp_set_max_requests_per_connection, value, "max requests per connection")

    @property
    def receive_buffer_size(self) -> Optional[int]:
        """ReceiveBufferSize: SO_RCVBUF of new connections in bytes; None for the system's
        default (the default)."""
        v = self._get(n.sp_get_receive_buffer_size)
        return None if v < 0 else v

    @receive_buffer_size.setter
    def receive_buffer_size(self, value: Optional[int]) -> None:
        self._set(n.sp_set_receive_buffer_size, -1 if value is None else value, "receive buffer size")

    @property
    def send_buffer_size(self) -> Optional[int]:
        """SO_SNDBUF of new connections in bytes; None for the system's default."""
        v = self._get(n.sp_get_send_buffer_size)
        return None if v < 0 else v

    @send_buffer_size.setter
    def send_buffer_size(self, value: Optional[int]) -> None:
        self._set(n.sp_set_send_buffer_size, -1 if value is None else value, "send buffer size")

    @property
    def use_nagle_algorithm(self) -> bool:
        """UseNagleAlgorithm for new connections (False by default: TCP_NODELAY)."""
        return bool(self._get(n.sp_get_use_nagle_algorithm))

    @use_nagle_algorithm.setter
    def use_nagle_algorithm(self, on: bool) -> None:
        n.sp_set_use_nagle_algorithm(self._live(), 1 if on else 0)

    def set_tcp_keep_alive(self, enabled: bool, time: float = 0.0, interval: float = 0.0) -> None:
        """SetTcpKeepAlive for new connections: probes after ``time`` seconds idle, then every
        ``interval`` seconds (both > 0 when enabled)."""
        t = n.to_ms(time, "time") if enabled else 0
        i = n.to_ms(interval, "interval") if enabled else 0
        n.sp_set_tcp_keep_alive(self._live(), 1 if enabled else 0, t, i)

    @property
    def tcp_keep_alive(self) -> Tuple[bool, float, float]:
        """(enabled, time, interval) in seconds."""
        e, t, i = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()
        n.sp_get_tcp_keep_alive(self._live(), ctypes.byref(e), ctypes.byref(t), ctypes.byref(i))
        return bool(e.value), t.value / 1000.0, i.value / 1000.0

    @property
    def local_address(self) -> Optional[str]:
        """The local address new connections bind ("IP" or "IP:port"; None: the system
        chooses)."""
        text = n.get_text(n.sp_get_local_address, self._live())
        return text or None

    @local_address.setter
    def local_address(self, value: Optional[str]) -> None:
        n.sp_set_local_address(self._live(), None if value is None else n.encode(value, "local_address"))

    @property
    def connect_timeout(self) -> Optional[float]:
        """How long connecting (and the TLS handshake) may take, in seconds; None: only the
        request timeout bounds it."""
        return n.from_ms(self._get(n.sp_get_connect_timeout))

    @connect_timeout.setter
    def connect_timeout(self, value: Optional[float]) -> None:
        n.sp_set_connect_timeout(self._live(), n.to_ms(value, "connect_timeout"))

    @property
    def expect_100_continue(self) -> bool:
        """Expect100Continue: a request with a body waits for the server's ``100 Continue``
        before sending it (False by default; taken from the manager at creation). A server
        that never answers 100 is not asked again."""
        return bool(self._get(n.sp_get_expect_100_continue))

    @expect_100_continue.setter
    def expect_100_continue(self, on: bool) -> None:
        n.sp_set_expect_100_continue(self._live(), 1 if on else 0)

    @property
    def expect_100_continue_timeout(self) -> Optional[float]:
        """How long a request waits for ``100 Continue`` before sending its body anyway, in
        seconds (0.35 by default, as .NET Framework); None: up to the request's timeout."""
        return n.from_ms(self._get(n.sp_get_expect_100_continue_timeout))

    @expect_100_continue_timeout.setter
    def expect_100_continue_timeout(self, value: Optional[float]) -> None:
        n.sp_set_expect_100_continue_timeout(
            self._live(), n.to_ms(value, "expect_100_continue_timeout")
        )

    @property
    def pipelining(self) -> bool:
        """Pipelining (False by default): with it on, a request that finds the connection
        limit reached and may be pipelined (an idempotent method such as GET or HEAD, no body
        or a bytes body, no Expect: 100-continue, keep-alive on) is written on a busy
        connection behind the request being answered, up to :attr:`pipeline_depth`, instead
        of waiting for the connection to be free; responses come in order. Only to a server
        that answered HTTP/1.1 and has not shown it does not pipeline
        (:attr:`supports_pipelining`). The next response on a connection is read only once
        the previous one's body was read to the end or its response closed: holding a
        response delays those behind it. When a connection ends early, the requests behind
        the last answered one are sent again, once, on another connection. Applies to
        requests queued from now on; a request may override it (``pipelined=``)."""
        return bool(self._get(n.sp_get_pipelining))

    @pipelining.setter
    def pipelining(self, on: bool) -> None:
        n.sp_set_pipelining(self._live(), 1 if on else 0)

    @property
    def pipeline_depth(self) -> int:
        """The most requests in flight on one connection when :attr:`pipelining` is on, the
        one being answered included: 1..64 (default 8; 1 pipelines nothing). Out of range:
        OutOfRangeError, nothing changed."""
        return self._get(n.sp_get_pipeline_depth)

    @pipeline_depth.setter
    def pipeline_depth(self, value: int) -> None:
        self._set(n.sp_set_pipeline_depth, value, "pipeline depth")

    @property
    def current_connections(self) -> int:
        """CurrentConnections: open connections, all groups."""
        return self._get(n.sp_get_current_connections)

    @property
    def idle_since(self) -> datetime:
        """IdleSince: when the service point was created or last finished a request
        (timezone-aware, UTC)."""
        value = ctypes.c_int64()
        n.sp_get_idle_since(self._live(), ctypes.byref(value))
        return _EPOCH + timedelta(milliseconds=value.value)

    @property
    def protocol_version(self) -> str:
        """ProtocolVersion: the HTTP version the server answers with, ``"1.1"`` until a
        response arrives (as .NET), then the last response's (``"1.0"`` or ``"1.1"``)."""
        v = self._get(n.sp_get_protocol_version)
        return "{}.{}".format(v // 10, v % 10)

    @property
    def connection_name(self) -> str:
        """ConnectionName: the scheme, ``"http"`` or ``"https"``."""
        text = ctypes.c_char_p()
        n.sp_get_connection_name(self._live(), ctypes.byref(text))
        return (text.value or b"").decode("ascii")

    @property
    def supports_pipelining(self) -> bool:
        """SupportsPipelining: True until the server shows it does not pipeline (a response
        says HTTP/1.0, a connection ends unannounced after the first pipelined batch, or a
        pipelined request gets an answer out of protocol), then False for good (as .NET
        Framework). Requests are pipelined (:attr:`pipelining`) only while it is True and
        after a response said HTTP/1.1."""
        return bool(self._get(n.sp_get_supports_pipelining))

    @property
    def certificate(self) -> Optional[bytes]:
        """Certificate: the DER bytes of the server's end-entity certificate on the last
        new TLS connection (e.g. for ``ssl.DER_cert_to_PEM_cert`` or ``cryptography``'s
        ``x509.load_der_x509_certificate``); None before the first one and for http."""
        length = ctypes.c_size_t()
        handle = self._live()
        try:
            n.sp_get_certificate(handle, None, 0, ctypes.byref(length))
            # Another thread's new connection may bring another certificate between calls.
            for _ in range(8):
                buf = ctypes.create_string_buffer(length.value)
                cap = length.value
                n.sp_get_certificate(handle, buf, cap, ctypes.byref(length))
                if length.value <= cap:
                    return buf.raw[: length.value]
        except NotFoundError:
            return None
        raise RuntimeError("the certificate kept changing while it was read")

    @property
    def statistics(self) -> Statistics:
        """A snapshot of the service point's statistics, including the open connections by
        state (``open``, ``idle``, ``busy``) and the requests ``waiting``."""
        return read_statistics(n.sp_get_statistics, self._live())

    def queue_wait_histogram(self) -> Histogram:
        """How long each request waited for a connection (seconds; 0 included)."""
        return read_histogram(n.sp_get_histogram, self._live(), n.SP_METRIC_QUEUE_WAIT)

    def connection_lifetime_histogram(self) -> Histogram:
        """How long each closed connection lived, connect to close (seconds)."""
        return read_histogram(n.sp_get_histogram, self._live(), n.SP_METRIC_CONNECTION_LIFETIME)

    def close_connection_group(self, name: str = "") -> bool:
        """CloseConnectionGroup: closes the named group's idle connections now and its busy
        ones when their responses are released. ``""`` is the default group. Returns True
        if the group existed."""
        existed = ctypes.c_int32()
        n.sp_close_connection_group(
            self._live(), n.encode(name, "connection group name"), ctypes.byref(existed)
        )
        return bool(existed.value)

    # --- lifetime ------------------------------------------------------------------------

    def __repr__(self) -> str:
        address = self._address if self._address is not None else "?"
        return "<ServicePoint {}{}>".format(address, " closed" if self._handle is None else "")
