"""Behaviour against a recording loopback server: what the server observed."""

from __future__ import annotations

import gc
import hashlib
import io
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Iterator, List

import pytest

import servicepoint
from servicepoint import ServicePointManager

from conftest import RecordingServer, pattern, refused_port


# --- service points ------------------------------------------------------------------------


def test_same_origin_gives_same_service_point(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    port = server.port
    a = manager.find_service_point("http://127.0.0.1:{}/a".format(port))
    b = manager.find_service_point("HTTP://127.0.0.1:{}/b/c?q=1#f".format(port))
    c = manager.find_service_point("http://user:pw@127.0.0.1:{}".format(port))
    assert a.address == b.address == c.address == "http://127.0.0.1:{}".format(port)
    assert manager.service_point_count == 1
    a.connection_limit = 7  # one service point: settings are shared by its handles
    assert b.connection_limit == 7 and c.connection_limit == 7

    d = manager.find_service_point("http://Example.COM/")
    e = manager.find_service_point("http://example.com:80/other")
    assert d.address == e.address == "http://example.com"
    assert manager.service_point_count == 2
    f = manager.find_service_point("http://example.com:8080/")
    assert f.address == "http://example.com:8080"
    assert manager.service_point_count == 3
    for p in (a, b, c, d, e, f):
        p.close()
    assert manager.service_point_count == 3  # closing handles keeps the points


def test_manager_settings(manager: ServicePointManager) -> None:
    assert manager.default_connection_limit == 2
    assert manager.max_service_points == 0
    assert manager.max_service_point_idle_time == 100.0
    assert manager.keep_alive_default is True
    assert manager.service_point_count == 0
    assert manager.dns_refresh_timeout == 120.0
    manager.dns_refresh_timeout = 0
    assert manager.dns_refresh_timeout == 0
    with pytest.raises(servicepoint.OutOfRangeError):
        manager.dns_refresh_timeout = -2
    manager.dns_refresh_timeout = None
    assert manager.dns_refresh_timeout is None
    manager.dns_refresh_timeout = 0.0015  # millisecond resolution, rounded up
    assert manager.dns_refresh_timeout == 0.002

    manager.default_connection_limit = 5
    manager.max_service_points = 10
    manager.max_service_point_idle_time = None
    manager.keep_alive_default = False
    assert manager.default_connection_limit == 5
    assert manager.max_service_points == 10
    assert manager.max_service_point_idle_time is None
    assert manager.keep_alive_default is False

    with pytest.raises(servicepoint.OutOfRangeError):
        manager.default_connection_limit = 0
    with pytest.raises(servicepoint.OutOfRangeError):
        manager.max_service_points = -1
    with pytest.raises(servicepoint.OutOfRangeError):
        manager.max_service_point_idle_time = -1  # no -1 for infinite any more: None
    with pytest.raises(servicepoint.OutOfRangeError):
        manager.max_service_point_idle_time = float("nan")
    with pytest.raises(servicepoint.OutOfRangeError):
        manager.max_service_point_idle_time = 2**31 / 1000  # more than int32 ms
    with pytest.raises(TypeError):
        manager.max_service_point_idle_time = "5"  # type: ignore[assignment]
    manager.max_service_point_idle_time = float("inf")  # the same as None
    assert manager.max_service_point_idle_time is None
    with pytest.raises(ValueError):  # does not fit int32: refused before ctypes truncates
        manager.default_connection_limit = 2**32 + 3
    with pytest.raises(TypeError):
        manager.default_connection_limit = "3"  # type: ignore[assignment]
    assert manager.default_connection_limit == 5
    assert manager.max_service_points == 10

    point = manager.find_service_point("http://a.example/")
    assert point.connection_limit == 5  # takes the default at creation
    assert point.max_idle_time is None


def test_service_point_settings(manager: ServicePointManager) -> None:
    with manager.find_service_point("http://a.example/") as point:
        assert point.connection_lease_timeout is None
        assert point.max_requests_per_connection == 0
        assert point.current_connections == 0
        point.connection_lease_timeout = 5
        point.max_idle_time = 1.234
        point.max_requests_per_connection = 9
        assert point.connection_lease_timeout == 5.0
        assert point.max_idle_time == 1.234
        assert point.max_requests_per_connection == 9

        with pytest.raises(servicepoint.OutOfRangeError) as info:
            point.connection_lease_timeout = -2
        assert isinstance(info.value, ValueError)
        assert info.value.code == 4 and "-2" in str(info.value)
        assert point.connection_lease_timeout == 5.0  # unchanged
        with pytest.raises(servicepoint.OutOfRangeError):
            point.connection_limit = 0
        with pytest.raises(servicepoint.OutOfRangeError):
            point.max_idle_time = -5
        with pytest.raises(servicepoint.OutOfRangeError):
            point.max_requests_per_connection = -1
        assert point.max_idle_time == 1.234
        assert point.max_requests_per_connection == 9


def test_idle_since_and_statistics(manager: ServicePointManager, server: RecordingServer) -> None:
    before = datetime.now(timezone.utc)
    point = manager.find_service_point(server.url())
    since = point.idle_since
    assert since.tzinfo is not None and since.utcoffset() == timedelta(0)
    assert abs((since - before).total_seconds()) < 5
    stats = point.statistics
    assert stats.requests == 0 and stats.open == 0
    for _ in range(3):
        with manager.request("GET", server.url("/hello")) as resp:
            assert resp.read() == b"hello"
    stats = point.statistics
    assert stats.requests == 3
    assert stats.connections_opened == 1
    assert stats.reuses == 2
    assert stats.open == 1 and stats.idle == 1 and stats.busy == 0
    assert point.current_connections == 1
    assert point.idle_since >= since


def test_max_service_points(manager: ServicePointManager, server: RecordingServer) -> None:
    manager.max_service_points = 1
    first = manager.find_service_point("http://127.0.0.1:{}/".format(server.port))
    with pytest.raises(servicepoint.TooManyServicePointsError):
        manager.find_service_point("http://localhost:{}/".format(server.port))
    first.close()  # no handle, no busy connection: evictable
    second = manager.find_service_point("http://localhost:{}/".format(server.port))
    assert second.address == "http://localhost:{}".format(server.port)
    assert manager.service_point_count == 1
    second.close()


# --- connection reuse ----------------------------------------------------------------------


def test_sequential_gets_use_one_connection(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    ids = set()
    ports = set()
    for i in range(20):
        with manager.request("GET", server.url("/hello?i={}".format(i))) as resp:
            assert resp.status == 200
            assert resp.read() == b"hello"
            assert resp.connection_reused == (i > 0)
            ids.add(resp.connection_id)
            ports.add(resp.local_port)
    assert len(server.requests_to("/hello")) == 20
    assert server.connection_count() == 1
    assert len(ids) == 1
    assert ports == set(server.connections)  # the client port the server saw
    for rec in server.requests_to("/hello"):
        assert (rec.header("Connection") or "").lower() != "close"


def test_lease_timeout_zero_closes_each_connection(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    point = manager.find_service_point(server.url())
    point.connection_lease_timeout = 0
    for _ in range(5):
        with manager.request("GET", server.url("/hello")) as resp:
            assert resp.read() == b"hello"
            assert not resp.connection_reused
    recs = server.requests_to("/hello")
    assert len(recs) == 5
    assert all((r.header("Connection") or "").lower() == "close" for r in recs)
    assert server.connection_count() == 5
    assert len({r.client_port for r in recs}) == 5
    assert point.statistics.connections_opened == 5


def test_keep_alive_off(manager: ServicePointManager, server: RecordingServer) -> None:
    for _ in range(3):
        with manager.request("GET", server.url("/hello"), keep_alive=False) as resp:
            resp.read()
    manager.keep_alive_default = False
    with manager.request("GET", server.url("/hello")) as resp:
        resp.read()
    recs = server.requests_to("/hello")
    assert [(r.header("Connection") or "").lower() for r in recs] == ["close"] * 4
    assert server.connection_count() == 4


def test_max_requests_per_connection(manager: ServicePointManager, server: RecordingServer) -> None:
    point = manager.find_service_point(server.url())
    point.max_requests_per_connection = 3
    for _ in range(6):
        with manager.request("GET", server.url("/hello")) as resp:
            resp.read()
    recs = server.requests_to("/hello")
    closes = [(r.header("Connection") or "").lower() == "close" for r in recs]
    assert closes == [False, False, True, False, False, True]
    assert server.connection_count() == 2


def test_server_connection_close_is_honoured(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    with manager.request("GET", server.url("/close")) as resp:
        assert resp.read() == b"bye"
    with manager.request("GET", server.url("/hello")) as resp:
        assert resp.read() == b"hello"
        assert not resp.connection_reused
    assert server.connection_count() == 2


def test_stale_idle_connection_is_replaced(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    """The server closes a kept-alive connection without saying so: the next request
    (also a POST, which is never resent) goes out on a new connection."""
    for method, path, body in (("GET", "/hello", None), ("POST", "/echo", b"p")):
        with manager.request("GET", server.url("/drop"), timeout=5) as resp:
            assert resp.read() == b"dropped"
        time.sleep(0.1)  # let the server's FIN arrive
        with manager.request(method, server.url(path), body=body, timeout=5) as resp:
            assert resp.read() in (b"hello", b"p")
            assert not resp.connection_reused
    assert server.connection_count() == 3


def test_http10_and_bodiless_responses(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    with manager.request("GET", server.url("/http10"), timeout=5, read_timeout=5) as resp:
        assert resp.http_version == "1.0"
        assert resp.read() == b"old-school"  # delimited by close
    with manager.request("HEAD", server.url("/hello"), timeout=5, read_timeout=5) as resp:
        assert resp.status == 200 and resp.header("Content-Length") == "5"
        assert resp.read() == b""
    with manager.request("GET", server.url("/nocontent"), timeout=5, read_timeout=5) as resp:
        assert resp.status == 204 and resp.read() == b""
        assert resp.connection_reused  # HEAD and 204 left the connection reusable
    assert server.connection_count() == 2


def test_read_only_facts_follow_the_responses(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    with manager.find_service_point(server.url("/")) as point:
        assert point.connection_name == "http"
        assert point.protocol_version == "1.1"  # before any response, as .NET
        assert point.supports_pipelining
        assert point.certificate is None  # no TLS
        with manager.request("GET", server.url("/hello"), timeout=5) as resp:
            assert resp.read() == b"hello"
            assert (resp.tls_version, resp.tls_cipher_suite, resp.tls_resumed) == (None, None, None)
        assert point.protocol_version == "1.1"
        with manager.request("GET", server.url("/http10"), timeout=5, read_timeout=5) as resp:
            assert resp.read() == b"old-school"
        assert point.protocol_version == "1.0"
        assert not point.supports_pipelining
        with manager.request("GET", server.url("/hello"), timeout=5) as resp:
            resp.read()
        # The version is the last response's; pipelining stays off.
        assert point.protocol_version == "1.1"
        assert not point.supports_pipelining
    assert [r.path for r in server.requests] == ["/hello", "/http10", "/hello"]


def test_idle_connections_are_reaped(manager: ServicePointManager, server: RecordingServer) -> None:
    point = manager.find_service_point(server.url())
    point.max_idle_time = 0.1
    with manager.request("GET", server.url("/hello")) as resp:
        resp.read()
    assert point.current_connections == 1
    deadline = time.monotonic() + 3
    while point.current_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert point.current_connections == 0
    assert point.statistics.closed_idle == 1


def test_connection_groups(manager: ServicePointManager, server: RecordingServer) -> None:
    point = manager.find_service_point(server.url())
    for group in ("a", "b", "a", "b"):
        with manager.request("GET", server.url("/hello"), connection_group=group) as resp:
            resp.read()
    assert server.connection_count() == 2
    assert point.current_connections == 2
    assert point.close_connection_group("a") is True
    assert point.close_connection_group("no-such-group") is False
    assert point.current_connections == 1
    with manager.request("GET", server.url("/hello"), connection_group="b") as resp:
        resp.read()
        assert resp.connection_reused
    assert server.connection_count() == 2


# --- bodies --------------------------------------------------------------------------------


def test_streaming_read_of_1mb_is_byte_exact(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    expected = pattern(1 << 20)
    with manager.request("GET", server.url("/big?size={}".format(1 << 20))) as resp:
        assert resp.header("content-length") == str(1 << 20)
        chunks = list(resp.iter_chunks(16384))
        assert all(0 < len(c) <= 16384 for c in chunks)
        assert len(chunks) >= 64
        assert b"".join(chunks) == expected
        assert resp.read() == b"" and resp.read(10) == b""  # at the end
    # read(n) returns exactly n until the end.
    with manager.request("GET", server.url("/big?size=100000")) as resp:
        parts = []
        for _ in range(200):  # bounded
            part = resp.read(7000)
            if not part:
                break
            parts.append(part)
        assert [len(p) for p in parts] == [7000] * 14 + [2000]
        assert b"".join(parts) == pattern(100000)
    # Partial reads, then read() gives the rest.
    with manager.request("GET", server.url("/big?size=300000")) as resp:
        head = resp.read(1000)
        rest = resp.read()
        assert head + rest == pattern(300000)
    # Plain iteration and readinto.
    with manager.request("GET", server.url("/big?size=50000")) as resp:
        assert b"".join(resp) == pattern(50000)
    with manager.request("GET", server.url("/big?size=50000")) as resp:
        buf = bytearray(50000)
        view = memoryview(buf)
        filled = 0
        for _ in range(10000):
            got = resp.readinto(view[filled:])
            if got == 0:
                break
            filled += got
        assert filled == 50000 and bytes(buf) == pattern(50000)
        assert resp.readinto(bytearray(10)) == 0
    assert server.connection_count() == 1  # all bodies read to the end: one connection


def test_post_body_is_echoed(manager: ServicePointManager, server: RecordingServer) -> None:
    payload = pattern(200000)
    with manager.request(
        "POST",
        server.url("/echo"),
        headers={"Content-Type": "application/x-test"},
        body=payload,
    ) as resp:
        assert resp.status == 200
        assert resp.header("Content-Type") == "application/x-test"
        assert resp.read() == payload
    rec = server.requests_to("/echo")[-1]
    assert rec.method == "POST" and rec.body == payload and not rec.chunked
    assert rec.header("Content-Length") == str(len(payload))
    with manager.post(server.url("/echo"), body="h\u00e9llo") as resp:  # str: UTF-8
        assert resp.read() == "h\u00e9llo".encode("utf-8")
    with manager.request("PUT", server.url("/echo"), body=b"") as resp:
        assert resp.read() == b""
    import array

    with manager.request("POST", server.url("/echo"), body=array.array("B", b"arr")) as resp:
        assert resp.read() == b"arr"  # any bytes-like object is a fixed body
    assert not server.requests_to("/echo")[-1].chunked


def test_streamed_body_from_generator_is_echoed(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    pieces = [b"first,", b"", bytearray(b"second,"), pattern(300000), memoryview(b"last")]

    def gen() -> Iterator[bytes]:
        for piece in pieces:
            yield piece

    expected = b"".join(bytes(p) for p in pieces)
    with manager.request("POST", server.url("/echo"), body=gen()) as resp:
        assert resp.read() == expected
    rec = server.requests_to("/echo")[-1]
    assert rec.chunked and rec.body == expected
    assert rec.header("Content-Length") is None
    assert (rec.header("Transfer-Encoding") or "").lower() == "chunked"

    # A binary file-like object is streamed too.
    with manager.request("POST", server.url("/echo"), body=io.BytesIO(pattern(70000))) as resp:
        assert resp.read() == pattern(70000)
    assert server.requests_to("/echo")[-1].chunked
    # An empty generator is an empty chunked body.
    with manager.request("POST", server.url("/echo"), body=iter(())) as resp:
        assert resp.read() == b""


def test_body_source_error_keeps_the_cause(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    def broken() -> Iterator[bytes]:
        yield b"some"
        raise RuntimeError("disk on fire")

    with pytest.raises(servicepoint.BodySourceError) as info:
        manager.request("POST", server.url("/echo"), body=broken(), timeout=5)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "disk on fire" in str(info.value.__cause__)
    with pytest.raises(servicepoint.BodySourceError) as info:
        manager.request("POST", server.url("/echo"), body=[b"ok", 42], timeout=5)
    assert isinstance(info.value.__cause__, TypeError)
    # The manager is still usable.
    with manager.request("GET", server.url("/hello")) as resp:
        assert resp.read() == b"hello"


def test_chunked_response_with_trailer(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    with manager.request("GET", server.url("/chunked")) as resp:
        assert resp.header("Transfer-Encoding") == "chunked"
        body = resp.read()
        assert body == pattern(10000)
        assert resp.trailer("x-checksum") == hashlib.sha256(body).hexdigest()
        assert resp.trailer("X-Missing") is None


# --- heads ---------------------------------------------------------------------------------


def test_response_head(manager: ServicePointManager, server: RecordingServer) -> None:
    with manager.request("GET", server.url("/headers")) as resp:
        assert resp.status == 200
        assert resp.reason == "OK"
        assert resp.http_version == "1.1"
        names = [name for name, _ in resp.headers]
        # Wire order, repeats kept, names as received.
        i = names.index("X-Mixed-Case")
        assert names[i : i + 4] == ["X-Mixed-Case", "Set-Cookie", "Set-Cookie", "X-Unicode"]
        assert resp.header("x-mixed-case") == "one"
        assert resp.header("SET-COOKIE") == "a=1"
        assert resp.header_all("set-cookie") == ["a=1", "b=2"]
        assert resp.header("X-Unicode") == "caf\u00e9"  # ISO-8859-1 on the wire
        assert resp.header("X-Nope") is None
        assert resp.read() == b"h"
    with manager.request("GET", server.url("/no-such-route")) as resp:
        assert resp.status == 404  # a status is data, not an error
        resp.read()


def test_request_headers_arrive_in_order(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    with manager.request(
        "GET",
        server.url("/hello"),
        headers=[("X-Rep", "1"), ("Accept", "text/plain"), ("X-Rep", "2"), ("X-Num", 5)],
    ) as resp:
        resp.read()
    with manager.request(
        "GET", server.url("/hello"), headers={"User-Agent": "pytest-agent", "Host": "h.example"}
    ) as resp:
        resp.read()
    first, second = server.requests_to("/hello")[-2:]
    reps = [v for k, v in first.headers if k.lower() == "x-rep"]
    assert reps == ["1", "2"]
    assert first.header("Accept") == "text/plain" and first.header("X-Num") == "5"
    assert second.header("User-Agent") == "pytest-agent"
    assert second.header("Host") == "h.example"


def test_bad_request_arguments(manager: ServicePointManager, server: RecordingServer) -> None:
    with pytest.raises(servicepoint.InvalidArgumentError):
        manager.request("GET", server.url("/hello"), headers={"Bad Name": "x"})
    with pytest.raises(servicepoint.InvalidArgumentError):
        manager.request("GET", server.url("/hello"), headers={"X-A": "a\r\nInjected: 1"})
    with pytest.raises(servicepoint.InvalidArgumentError):
        manager.request("GET", server.url("/hello"), headers={"Content-Length": "3"})
    with pytest.raises(servicepoint.InvalidArgumentError):
        manager.request("GE T", server.url("/hello"))
    with pytest.raises(ValueError):
        manager.request("GET", server.url("/hello"), timeout=-1)
    assert server.requests_to("/hello") == []  # nothing was sent


# --- errors --------------------------------------------------------------------------------


def test_refused_port_raises_connect_error(manager: ServicePointManager) -> None:
    url = "http://127.0.0.1:{}/".format(refused_port())
    with pytest.raises(servicepoint.ConnectError) as info:
        manager.request("GET", url, timeout=5)
    err = info.value
    assert isinstance(err, ConnectionError)
    assert err.code == 9
    assert str(err) and len(str(err)) > 5
    assert err.request_sent is False


def test_unsupported_scheme_and_invalid_url(manager: ServicePointManager) -> None:
    with pytest.raises(servicepoint.UnsupportedSchemeError) as info:
        manager.find_service_point("ftp://example.com/file")
    assert info.value.code == 7 and str(info.value)
    with pytest.raises(servicepoint.UnsupportedSchemeError):
        manager.request("GET", "ftp://example.com/file")
    with pytest.raises(servicepoint.InvalidUrlError):
        manager.find_service_point("not a url")
    with pytest.raises(servicepoint.InvalidUrlError):
        manager.request("GET", "http://")
    assert manager.service_point_count == 0


def test_response_timeout(manager: ServicePointManager, server: RecordingServer) -> None:
    start = time.monotonic()
    with pytest.raises(servicepoint.ResponseTimeoutError) as info:
        manager.request("GET", server.url("/sleep?ms=1500"), timeout=0.2)
    assert time.monotonic() - start < 1.2
    assert isinstance(info.value, TimeoutError)  # the builtin
    assert info.value.request_sent is True


def test_read_timeout(manager: ServicePointManager, server: RecordingServer) -> None:
    with manager.request("GET", server.url("/stall-body?ms=1500"), read_timeout=0.2) as resp:
        start = time.monotonic()
        with pytest.raises(servicepoint.ReadTimeoutError):
            resp.read()
        assert time.monotonic() - start < 1.2


def test_unreleased_response_holds_its_connection(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    point = manager.find_service_point(server.url())
    point.connection_limit = 1
    held = manager.request("GET", server.url("/big?size=1000000"))  # body not read
    assert point.statistics.busy == 1
    with pytest.raises(servicepoint.QueueTimeoutError) as info:
        manager.request("GET", server.url("/hello"), timeout=0.3)
    assert info.value.request_sent is False
    assert isinstance(info.value, TimeoutError)
    held.close()  # releases the connection
    with manager.request("GET", server.url("/hello"), timeout=5) as resp:
        assert resp.read() == b"hello"


def test_garbage_collected_response_releases_its_connection(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    point = manager.find_service_point(server.url())
    point.connection_limit = 1
    resp = manager.request("GET", server.url("/hello"))
    del resp
    gc.collect()
    with manager.request("GET", server.url("/hello"), timeout=5) as resp:
        assert resp.read() == b"hello"


# --- lifetime ------------------------------------------------------------------------------


def test_double_close_is_safe(server: RecordingServer) -> None:
    manager = ServicePointManager()
    point = manager.find_service_point(server.url())
    resp = manager.request("GET", server.url("/hello"))
    resp.close()
    resp.close()
    assert resp.closed and resp.status == 200  # the head stays readable
    with pytest.raises(servicepoint.InvalidHandleError):
        resp.read()
    with pytest.raises(servicepoint.InvalidHandleError):
        resp.trailer("x")
    point.close()
    point.close()
    with pytest.raises(servicepoint.InvalidHandleError):
        point.connection_limit
    manager.close()
    manager.close()
    assert manager.closed
    with pytest.raises(servicepoint.ManagerClosedError):
        manager.find_service_point(server.url())
    with pytest.raises(servicepoint.ManagerClosedError):
        manager.request("GET", server.url("/hello"))
    with manager:  # exiting a closed manager is fine too
        pass


def test_service_point_after_manager_close(server: RecordingServer) -> None:
    manager = ServicePointManager()
    point = manager.find_service_point(server.url())
    assert point.address == server.url().rstrip("/")
    manager.close()
    with pytest.raises(servicepoint.ManagerClosedError) as info:
        point.connection_limit
    assert info.value.code == 24 and str(info.value)
    with pytest.raises(servicepoint.ManagerClosedError):
        point.connection_lease_timeout = 10
    with pytest.raises(servicepoint.ManagerClosedError):
        point.statistics
    with pytest.raises(servicepoint.ManagerClosedError):
        point.close_connection_group("")
    point.close()


def test_response_body_fails_after_manager_close(server: RecordingServer) -> None:
    """Closing the manager shuts its connections down: a response's body read then fails
    with ManagerClosedError (DESIGN: outstanding handles return an error; the C and C#
    tests check the same), and the response can still be closed."""
    manager = ServicePointManager()
    resp = manager.request("GET", server.url("/big?size=200000"))
    manager.close()
    with pytest.raises(servicepoint.ManagerClosedError):
        resp.read()
    resp.close()


def test_unclosed_objects_at_interpreter_exit(server: RecordingServer) -> None:
    """Finalizers at shutdown neither crash nor print errors."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import servicepoint\n"
        "m = servicepoint.ServicePointManager()\n"
        "p = m.find_service_point({url!r})\n"
        "r = m.request('GET', {url!r} + 'big?size=100000')\n"
        "r2 = m.request('GET', {url!r} + 'hello')\n"
        "r2.close(); r2.close()\n"
        "print('done')\n"
    ).format(url=server.url("/"))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(servicepoint.__file__).resolve().parents[1])
    env.setdefault("SERVICEPOINT_LIB", servicepoint.LIBRARY_PATH)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert proc.stderr == ""


# --- threads -------------------------------------------------------------------------------


def test_threads_share_one_manager_concurrently(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    manager.default_connection_limit = 4
    barrier = threading.Barrier(4, timeout=10)
    bodies: List[bytes] = []
    failures: List[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait()
            with manager.request("GET", server.url("/sleep?ms=300"), timeout=10) as resp:
                body = resp.read()
            with lock:
                bodies.append(body)
        except BaseException as exc:  # reported below
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    elapsed = time.monotonic() - start
    assert not failures, failures
    assert bodies == [b"slept"] * 4
    assert elapsed < 0.9, "4 x 300 ms requests took {:.3f} s: not concurrent".format(elapsed)
    assert server.connection_count() <= 4
    assert server.max_in_handler >= 2  # the server really had requests in parallel
