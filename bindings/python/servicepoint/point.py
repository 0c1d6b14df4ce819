"""The :class:`ServicePoint`: one origin's connections, settings and statistics."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from . import _native as n
from ._handle import NativeObject
from .errors import InvalidHandleError

__all__ = ["ServicePoint", "Statistics"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Statistics:
    """A snapshot of a service point's statistics (``struct sp_statistics``)."""

    #: Open connections (idle + busy).
    open: int
    #: Idle connections in the pool.
    idle: int
    #: Connections serving a request whose response has not been released.
    busy: int
    #: Requests waiting for a connection.
    waiting: int
    #: Connections opened since the service point was created.
    connections_opened: int
    #: Requests that received a response head.
    requests: int
    #: Requests sent on a reused connection.
    reuses: int
    #: Requests retried on a new connection after a stale reused one failed.
    retries: int
    #: Connections closed because their lease timeout expired.
    closed_lease: int
    #: Connections closed because they were idle longer than the max idle time.
    closed_idle: int
    #: Connections closed because a request had keep-alive off.
    closed_keep_alive_off: int
    #: Connections closed because the server said so (Connection: close, HTTP/1.0, EOF).
    closed_server: int
    #: Idle connections found dead (EOF, reset, stray bytes) when checked before reuse, at no
    #: cost to any request.
    closed_stale: int
    #: Connections closed after an error.
    closed_error: int
    #: Connections closed after their max requests (the server's or the service point's).
    closed_max_requests: int
    #: Connections closed by close_connection_group() or closing the manager.
    closed_group: int
    #: Connections closed because a response was freed with much of its body unread.
    closed_abandoned: int
    #: TLS connections opened with a full handshake.
    tls_full_handshakes: int
    #: TLS connections opened by resuming an earlier session.
    tls_resumed_handshakes: int
    #: Reused connections that failed under a request before any response byte (the server
    #: closed or reset them as the request arrived); the request was retried if allowed.
    closed_in_flight: int


class ServicePoint(NativeObject):
    """One origin's (scheme, host, port) connections and settings, as in .NET.

    Obtained from :meth:`ServicePointManager.find_service_point`; the same origin always
    gives the same service point (each call returns a new handle object to it). The handle
    keeps the service point alive (it cannot be evicted while open); :meth:`close` frees
    the handle only, the service point stays in its manager. After the manager is closed
    every accessor raises :class:`~servicepoint.errors.ManagerClosedError`.

    Millisecond settings use -1 for infinite. Settings apply to all the handles of the same
    service point. All methods may be called from any thread.
    """

    def __init__(self, handle: int, manager: Any = None) -> None:
        self._handle: Optional[int] = handle
        # Keeps the manager object alive while a handle is open.
        self._manager = manager
        self._address: Optional[str] = None

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
    def connection_lease_timeout(self) -> int:
        """ConnectionLeaseTimeout in ms: -1 connections live forever (default); 0 every
        request carries ``Connection: close`` and gets a new connection; N a connection
        older than N ms is closed after its next request. Below -1: OutOfRangeError."""
        return self._get(n.sp_get_lease_timeout)

    @connection_lease_timeout.setter
    def connection_lease_timeout(self, value: int) -> None:
        self._set(n.sp_set_lease_timeout, value, "lease timeout")

    @property
    def max_idle_time(self) -> int:
        """MaxIdleTime in ms (-1 infinite): idle connections older than this are closed."""
        return self._get(n.sp_get_max_idle_time)

    @max_idle_time.setter
    def max_idle_time(self, value: int) -> None:
        self._set(n.sp_set_max_idle_time, value, "max idle time")

    @property
    def max_requests_per_connection(self) -> int:
        """Cap on the requests one connection serves (0 = no cap, the default)."""
        return self._get(n.sp_get_max_requests_per_connection)

    @max_requests_per_connection.setter
    def max_requests_per_connection(self, value: int) -> None:
        self._set(n.sp_set_max_requests_per_connection, value, "max requests per connection")

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
    def statistics(self) -> Statistics:
        """A snapshot of the service point's statistics."""
        raw = n.sp_statistics()
        raw.struct_size = ctypes.sizeof(n.sp_statistics)
        n.sp_get_statistics(self._live(), ctypes.byref(raw))
        return Statistics(**{f.name: int(getattr(raw, f.name)) for f in fields(Statistics)})

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
