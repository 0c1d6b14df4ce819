"""Metrics snapshots: :class:`Statistics` (counters and open connections by state) and
:class:`Histogram` (queue wait, connection lifetime), of a service point or a whole manager.
Durations are in seconds, like every duration of the Python API."""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Tuple

from . import _native as n

__all__ = ["Statistics", "Histogram", "BUCKET_BOUNDS"]


@dataclass(frozen=True)
class Statistics:
    """A snapshot of the statistics of a service point (:attr:`ServicePoint.statistics`) or
    summed over a manager's service points (:attr:`ServicePointManager.statistics`)
    (``struct sp_statistics``)."""

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
    #: Idle connections closed because their address left the host's DNS answer (looked up
    #: again after the DNS refresh timeout) or its resolve override.
    closed_address_gone: int
    #: Requests written on a busy connection behind another (:attr:`ServicePoint.pipelining`).
    pipelined: int
    #: Pipelined requests sent again on another connection because theirs ended before their
    #: response (each at most once).
    pipeline_replays: int

    @property
    def active(self) -> int:
        """Connections in use (an alias of :attr:`busy`)."""
        return self.busy


_STAT_FIELDS = tuple(f.name for f in fields(Statistics))


def read_statistics(getter: Callable[[Any, Any], Any], handle: int) -> Statistics:
    """Calls ``sp_get_statistics`` or ``sp_manager_get_statistics`` on ``handle``."""
    raw = n.sp_statistics()
    raw.struct_size = ctypes.sizeof(n.sp_statistics)
    getter(handle, ctypes.byref(raw))
    return Statistics(**{name: int(getattr(raw, name)) for name in _STAT_FIELDS})


def _bound(index: int) -> float:
    us = int(n.sp_histogram_bound_us(index))
    return math.inf if us >= 2**64 - 1 else us / 1e6


#: The upper bound (seconds, inclusive) of each histogram bucket; the last is ``math.inf``.
BUCKET_BOUNDS: Tuple[float, ...] = tuple(_bound(i) for i in range(n.SP_HISTOGRAM_BUCKETS))


@dataclass(frozen=True)
class Histogram:
    """A histogram of durations (seconds): ``count`` observations summing to ``sum``;
    ``buckets[i]`` of them were at most ``bounds[i]`` and more than ``bounds[i - 1]`` (not
    cumulative; the last bound is ``math.inf``)."""

    #: Number of observations.
    count: int
    #: Their sum, in seconds.
    sum: float
    #: The upper bound of each bucket in seconds (:data:`BUCKET_BOUNDS`).
    bounds: Tuple[float, ...]
    #: The number of observations in each bucket.
    buckets: Tuple[int, ...]

    @property
    def mean(self) -> float:
        """The mean duration in seconds (0.0 without observations)."""
        return self.sum / self.count if self.count else 0.0

    def cumulative(self) -> Tuple[Tuple[float, int], ...]:
        """(upper bound, observations at most that long) pairs, Prometheus ``le`` style."""
        total = 0
        out = []
        for bound, count in zip(self.bounds, self.buckets):
            total += count
            out.append((bound, total))
        return tuple(out)


def read_histogram(getter: Callable[[Any, int, Any], Any], handle: int, which: int) -> Histogram:
    """Calls ``sp_get_histogram`` or ``sp_manager_get_histogram`` on ``handle``."""
    raw = n.sp_histogram()
    raw.struct_size = ctypes.sizeof(n.sp_histogram)
    getter(handle, which, ctypes.byref(raw))
    count = min(int(raw.bucket_count), n.SP_HISTOGRAM_BUCKETS)
    return Histogram(
        count=int(raw.count),
        sum=raw.sum_us / 1e6,
        bounds=BUCKET_BOUNDS[:count],
        buckets=tuple(int(raw.buckets[i]) for i in range(count)),
    )
