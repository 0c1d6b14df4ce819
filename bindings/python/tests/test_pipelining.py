"""HTTP/1.1 pipelining (ServicePoint.pipelining, pipeline_depth, the ``pipelined`` request
option): the settings, and what the recording server saw when requests queue at limit 1
behind a slow one."""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from typing import Any, Dict, List, Optional, Union

import pytest

import servicepoint
from servicepoint import Request, ServicePoint, ServicePointManager, _native

from conftest import RecordingServer

#: How long the first request of a batch takes at the server (seconds).
SLOW_MS = 300


def test_pipelining_settings_and_their_validation(manager: ServicePointManager) -> None:
    with manager.find_service_point("http://a.example/") as point:
        assert point.pipelining is False  # off by default
        assert point.pipeline_depth == 8
        for bad in (0, 65, -1):
            with pytest.raises(servicepoint.OutOfRangeError) as info:
                point.pipeline_depth = bad
            assert info.value.code == 4
            assert info.value.code_name == "SP_E_OUT_OF_RANGE"
            assert isinstance(info.value, ValueError)
        assert point.pipeline_depth == 8  # a rejected value changes nothing
        with pytest.raises(servicepoint.OutOfRangeError):
            point.pipeline_depth = 2**40  # does not even fit int32_t
        with pytest.raises(TypeError):
            point.pipeline_depth = 2.5  # type: ignore[assignment]
        for depth in (1, 64, 6):
            point.pipeline_depth = depth
            assert point.pipeline_depth == depth
        point.pipelining = True
        assert point.pipelining is True
        # Settings belong to the service point, not to the handle.
        with manager.find_service_point("http://a.example/other") as again:
            assert again.pipelining is True and again.pipeline_depth == 6
        point.pipelining = False
        assert point.pipelining is False
        # The library itself refuses anything but 0 and 1.
        with pytest.raises(servicepoint.OutOfRangeError):
            _native.sp_set_pipelining(point._live(), 2)
        assert point.pipelining is False


def _native_pipelined(req: Request) -> int:
    value = ctypes.c_int32(-5)
    _native.sp_http_request_get_pipelined(req._live(), ctypes.byref(value))
    return value.value


def test_request_pipelined_option_reaches_the_description() -> None:
    url = "http://a.example/"
    cases: List[Any] = [(None, None, -1), (True, True, 1), (False, False, 0), (1, True, 1), (0, False, 0)]
    for given, kept, native in cases:
        with Request("GET", url, pipelined=given) as req:
            assert req.pipelined is kept
            assert _native_pipelined(req) == native
    with Request("GET", url) as req:
        assert req.pipelined is None and _native_pipelined(req) == -1
        with pytest.raises(servicepoint.OutOfRangeError):
            _native.sp_http_request_set_pipelined(req._live(), 3)
        _native.sp_http_request_set_pipelined(req._live(), -1)
        assert _native_pipelined(req) == -1


def _limit_one(manager: ServicePointManager, server: RecordingServer, on: bool) -> ServicePoint:
    """The server's service point at connection limit 1 with pipelining ``on``, after one
    warm-up GET (a server qualifies for pipelining by answering HTTP/1.1)."""
    point = manager.find_service_point(server.url("/"))
    point.connection_limit = 1
    point.pipelining = on
    with manager.request("GET", server.url("/whoami?warm-up"), timeout=10) as resp:
        assert resp.read() == b"/whoami?warm-up"
        assert resp.http_version == "1.1"
    return point


def _wait_for(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.002)


def _batch(
    manager: ServicePointManager,
    server: RecordingServer,
    tag: str,
    count: int = 5,
    **options: Any,
) -> Dict[str, Union[bytes, BaseException]]:
    """Sends a slow GET, waits until the server has it, then ``count`` GETs from as many
    threads (which find the connection busy at limit 1); returns each path's body."""
    results: Dict[str, Union[bytes, BaseException]] = {}
    lock = threading.Lock()

    def fetch(path: str, **kwargs: Any) -> None:
        try:
            with manager.request("GET", server.url(path), timeout=20, read_timeout=20, **kwargs) as resp:
                assert resp.status == 200
                body: Union[bytes, BaseException] = resp.read()
        except BaseException as exc:  # reported by the test thread
            body = exc
        with lock:
            results[path] = body

    slow_path = "/sleep?ms={}&{}".format(SLOW_MS, tag)
    slow_before = len(server.requests_to("/sleep"))
    threads = [threading.Thread(target=fetch, args=(slow_path,))]
    threads[0].start()
    _wait_for(lambda: len(server.requests_to("/sleep")) > slow_before, "the slow request")
    for i in range(count):
        t = threading.Thread(target=fetch, args=("/whoami?{}-{}".format(tag, i),), kwargs=options)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert results.pop(slow_path) == b"slept"
    return results


def _assert_own_bodies(results: Dict[str, Union[bytes, BaseException]], tag: str, count: int) -> None:
    assert sorted(results) == sorted("/whoami?{}-{}".format(tag, i) for i in range(count))
    for path, body in results.items():
        if isinstance(body, BaseException):
            raise body
        assert body == path.encode(), (path, body)


def test_queued_gets_are_pipelined_on_one_connection(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    point = _limit_one(manager, server, True)
    assert point.supports_pipelining
    before = point.statistics
    assert before.pipelined == 0 and before.pipeline_replays == 0
    results = _batch(manager, server, "on")
    _assert_own_bodies(results, "on", 5)
    stats = point.statistics
    assert stats.pipelined >= 1, stats
    assert stats.pipeline_replays == 0
    assert stats.connections_opened == 1
    # The server saw every request on one connection, each exactly once.
    assert server.connection_count() == 1
    assert len({r.client_port for r in server.requests}) == 1
    assert len(server.requests) == 1 + 1 + 5
    assert sorted(r.path for r in server.requests_to("/whoami?on-")) == sorted(results)
    assert point.supports_pipelining  # the server pipelined fine
    assert manager.statistics.pipelined == stats.pipelined


def test_a_request_can_refuse_or_ask_for_pipelining(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    point = _limit_one(manager, server, True)
    # pipelined=False: the queued requests wait for the connection as without pipelining.
    results = _batch(manager, server, "never", pipelined=False)
    _assert_own_bodies(results, "never", 5)
    assert point.statistics.pipelined == 0
    assert server.connection_count() == 1
    # pipelined=True on a service point with pipelining off: those requests are pipelined.
    point.pipelining = False
    results = _batch(manager, server, "asked", pipelined=True)
    _assert_own_bodies(results, "asked", 5)
    stats = point.statistics
    assert stats.pipelined >= 1, stats
    assert stats.pipeline_replays == 0
    assert server.connection_count() == 1
    # And with it off and no say of their own, nothing more is pipelined.
    results = _batch(manager, server, "off")
    _assert_own_bodies(results, "off", 5)
    assert point.statistics.pipelined == stats.pipelined
    assert server.connection_count() == 1


def test_a_post_is_never_pipelined(manager: ServicePointManager, server: RecordingServer) -> None:
    point = _limit_one(manager, server, True)
    results: Dict[int, Optional[bytes]] = {}

    def post(i: int) -> None:
        with manager.post(server.url("/echo"), body=b"post-%d" % i, timeout=20, pipelined=True) as resp:
            results[i] = resp.read()

    slow = threading.Thread(
        target=lambda: manager.request("GET", server.url("/sleep?ms=200"), timeout=20).close()
    )
    slow.start()
    _wait_for(lambda: len(server.requests_to("/sleep")) == 1, "the slow request")
    threads = [threading.Thread(target=post, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in [slow] + threads:
        t.join(30)
    assert results == {i: b"post-%d" % i for i in range(3)}
    assert point.statistics.pipelined == 0


def test_async_requests_are_pipelined(manager: ServicePointManager, server: RecordingServer) -> None:
    point = _limit_one(manager, server, False)
    req = Request("GET", server.url("/whoami?shared"), timeout=20, pipelined=True)

    async def main() -> List[bytes]:
        async def fetch(path: str, **kwargs: Any) -> bytes:
            async with await manager.request_async("GET", server.url(path), timeout=20, **kwargs) as resp:
                return await resp.aread()

        async def send() -> bytes:
            async with await manager.send_async(req) as resp:
                return await resp.aread()

        slow = asyncio.ensure_future(fetch("/sleep?ms={}".format(SLOW_MS)))
        while not server.requests_to("/sleep"):
            await asyncio.sleep(0.002)
        rest = [fetch("/whoami?a-{}".format(i), pipelined=True) for i in range(4)]
        bodies = await asyncio.gather(slow, *rest, send(), send())
        return list(bodies)

    bodies = asyncio.run(asyncio.wait_for(main(), 30))
    req.close()
    assert bodies[0] == b"slept"
    assert bodies[1:5] == [b"/whoami?a-%d" % i for i in range(4)]
    assert bodies[5:] == [b"/whoami?shared"] * 2
    stats = point.statistics
    assert stats.pipelined >= 1, stats
    assert stats.pipeline_replays == 0
    assert server.connection_count() == 1
