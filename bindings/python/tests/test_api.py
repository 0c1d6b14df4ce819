"""Issue 14 for Python: one duration unit (seconds, None = no limit), the reusable Request,
ServicePoint equality, Response.retried, logging to the ``servicepoint`` logger, metrics
(statistics and histograms per service point and manager), and the installed package."""

from __future__ import annotations

import ctypes
import logging
import math
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import servicepoint
from servicepoint import Request, ServicePointManager, _native

from conftest import RecordingServer

PACKAGE_DIR = Path(servicepoint.__file__).resolve().parent


# --- durations -------------------------------------------------------------------------------


def _native_timeouts(req: Request) -> List[int]:
    out = []
    for getter in (_native.sp_http_request_get_timeout, _native.sp_http_request_get_read_timeout):
        value = ctypes.c_int32()
        getter(req._live(), ctypes.byref(value))
        out.append(value.value)
    return out


def test_durations_are_seconds_with_none_for_no_limit(manager: ServicePointManager) -> None:
    with Request("GET", "http://a.example/") as req:
        assert req.timeout == 100.0 and req.read_timeout == 300.0
        assert _native_timeouts(req) == [100_000, 300_000]
    with Request("GET", "http://a.example/", timeout=None, read_timeout=2.5) as req:
        assert req.timeout is None and req.read_timeout == 2.5
        assert _native_timeouts(req) == [-1, 2500]
    with Request("GET", "http://a.example/", timeout=0.0001, read_timeout=0) as req:
        assert _native_timeouts(req) == [1, 0]  # rounded up to the millisecond; 0 stays 0
    with Request("GET", "http://a.example/", timeout=math.inf) as req:
        assert req.timeout is None
    for bad in (-1, -0.001, float("nan"), 2**31 / 1000):
        with pytest.raises(servicepoint.OutOfRangeError):
            Request("GET", "http://a.example/", timeout=bad)
        with pytest.raises(servicepoint.OutOfRangeError):
            manager.get("http://a.example/", read_timeout=bad)
    with pytest.raises(TypeError):
        Request("GET", "http://a.example/", timeout="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Request("GET", "http://a.example/", timeout=True)
    assert servicepoint.INFINITE is None

    point = manager.find_service_point("http://a.example/")
    for name in ("connection_lease_timeout", "max_idle_time"):
        setattr(point, name, 0.25)
        assert getattr(point, name) == 0.25
        setattr(point, name, None)
        assert getattr(point, name) is None
        with pytest.raises(servicepoint.OutOfRangeError):
            setattr(point, name, -1)


# --- Request ---------------------------------------------------------------------------------


def test_request_object_is_reusable(manager: ServicePointManager, server: RecordingServer) -> None:
    req = Request(
        "POST", server.url("/echo"), headers=[("X-One", "1"), ("Content-Type", "text/x")],
        body=b"payload", timeout=5, read_timeout=5, retryable=True,
    )
    assert (req.method, req.url, req.body, req.retryable) == (
        "POST", server.url("/echo"), b"payload", True,
    )
    ports = set()
    for i in range(4):
        resp = manager.send(req) if i % 2 == 0 else req.send(manager)
        with resp:
            assert resp.read() == b"payload"
            ports.add(resp.local_port)
    recs = server.requests_to("/echo")
    assert len(recs) == 4
    assert all(r.method == "POST" and r.body == b"payload" and not r.chunked for r in recs)
    assert all(r.header("X-One") == "1" and r.header("Content-Type") == "text/x" for r in recs)
    assert server.connection_count() == 1 and len(ports) == 1
    req.close()
    req.close()
    with pytest.raises(servicepoint.InvalidHandleError):
        manager.send(req)


def test_send_makes_one_library_call(
    manager: ServicePointManager, server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Dict[str, int] = {}
    for name in list(_native.FUNCTIONS):
        if name.startswith("sp_http_request_") or name == "sp_request":
            real = getattr(_native, name)

            def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
                calls[_name] = calls.get(_name, 0) + 1
                return _real(*args)

            monkeypatch.setattr(_native, name, counted)
    req = Request("GET", server.url("/hello"), headers={"X-A": "b"}, timeout=5, read_timeout=7,
                  keep_alive=True, connection_group="g")
    calls.clear()
    for _ in range(5):
        with manager.send(req) as resp:
            assert resp.read() == b"hello"
    assert calls == {"sp_request": 5}
    # The convenience call with options uses a cached description too.
    calls.clear()
    for _ in range(5):
        with manager.get(server.url("/hello"), timeout=5, read_timeout=7) as resp:
            resp.read()
    assert calls.get("sp_http_request_new") == 1 and calls["sp_request"] == 5
    assert calls.get("sp_http_request_set_timeout") == 1
    assert all(r.header("X-A") == "b" for r in server.requests_to("/hello")[:5])


def test_streamed_request_body_is_sent_once(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    req = Request("POST", server.url("/echo"), body=iter([b"ab", b"cd"]), timeout=5)
    assert req.body is None
    with manager.send(req) as resp:
        assert resp.read() == b"abcd"
    with pytest.raises(ValueError):
        manager.send(req)
    recs = server.requests_to("/echo")
    assert len(recs) == 1 and recs[0].chunked and recs[0].body == b"abcd"


def test_request_arguments_are_checked_before_sending(server: RecordingServer) -> None:
    with pytest.raises(servicepoint.InvalidArgumentError):
        Request("GET", server.url("/hello"), headers={"Content-Length": "3"})
    with pytest.raises(servicepoint.UnsupportedSchemeError):
        Request("GET", "ftp://a.example/")
    assert server.requests_to("/hello") == []


# --- ServicePoint equality -------------------------------------------------------------------


def test_service_points_compare_equal(manager: ServicePointManager) -> None:
    a = manager.find_service_point("http://a.example/x")
    b = manager.find_service_point("HTTP://A.example:80/y?z")
    c = manager.find_service_point("http://b.example/")
    assert a is not b and a == b and hash(a) == hash(b)
    assert a != c and len({a, b, c}) == 2
    b.close()
    assert a == b  # a closed handle still names its service point
    with ServicePointManager() as other:
        d = other.find_service_point("http://a.example/")
        assert d != a and d.address == a.address
    assert a != "http://a.example"


# --- Response.retried --------------------------------------------------------------------------


class _StaleServer:
    """Answers the first request of its first connection with keep-alive, then reads the
    second request on it and closes without answering (a server that closed the connection
    as the request arrived); later connections answer every request."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.requests = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _read_head(self, conn: socket.socket, buf: bytearray) -> bool:
        while b"\r\n\r\n" not in buf:
            data = conn.recv(4096)
            if not data:
                return False
            buf += data
        del buf[: buf.index(b"\r\n\r\n") + 4]
        with self.lock:
            self.requests += 1
        return True

    def _serve(self, conn: socket.socket, first: bool) -> None:
        buf = bytearray()
        with conn:
            served = 0
            while self._read_head(conn, buf):
                if first and served == 1:
                    return  # close under the request
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                served += 1

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                first = self.connections == 1
            threading.Thread(target=self._serve, args=(conn, first), daemon=True).start()


def test_response_tells_whether_it_was_retried(manager: ServicePointManager) -> None:
    srv = _StaleServer()
    url = "http://127.0.0.1:{}/".format(srv.port)
    try:
        req = Request("GET", url, timeout=5)
        with manager.send(req) as first:
            assert first.read() == b"ok" and first.retried is False
        with manager.send(req) as second:
            assert second.read() == b"ok"
            assert second.retried is True
        assert second.retried is True  # readable after close once read
        with manager.send(req) as third:
            assert third.read() == b"ok" and third.retried is False
        assert srv.connections == 2 and srv.requests == 4
        assert manager.find_service_point(url).statistics.retries == 1
    finally:
        srv.sock.close()


# --- logging -----------------------------------------------------------------------------------


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(PACKAGE_DIR.parent)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_logging_is_off_unless_configured() -> None:
    code = "import logging, servicepoint as s{}; print(s.ServicePointManager().log_level)"
    assert _run(code.format("")) == "None"
    assert _run(code.format("; logging.basicConfig(level=logging.INFO)")) == "20"
    assert _run(code.format("; logging.basicConfig(level=logging.INFO)"
                            "; logging.getLogger('servicepoint').setLevel(logging.DEBUG)")) == "10"
    assert _run(code.format("; logging.basicConfig(level=logging.CRITICAL)")) == "None"


def test_messages_go_to_the_servicepoint_logger(
    server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="servicepoint")
    with ServicePointManager() as manager:
        assert manager.log_level == logging.DEBUG  # taken from the logger at creation
        point = manager.find_service_point(server.url())
        point.connection_lease_timeout = 0
        for _ in range(2):
            with manager.get(server.url("/hello")) as resp:
                resp.read()
        records = [r for r in caplog.records if r.name == "servicepoint"]
        assert records, "no log records"
        levels = {r.levelno for r in records}
        assert logging.INFO in levels and logging.DEBUG in levels
        ports = {str(p) for p in server.connections}
        assert any(any(p in r.getMessage() for p in ports) for r in records)

        manager.set_log_level("warning")
        assert manager.log_level == logging.WARNING
        manager.set_log_level(None)
        assert manager.log_level is None
        caplog.clear()
        with manager.get(server.url("/hello")) as resp:
            resp.read()
        assert [r for r in caplog.records if r.name == "servicepoint"] == []
        with pytest.raises(ValueError):
            manager.set_log_level("LOUD")


def test_a_failing_log_handler_never_breaks_requests(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    seen: List[str] = []

    class Nasty(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())
            try:
                # A blocking call of the library from inside its callback is refused.
                manager.get(server.url("/hello"))
            except servicepoint.WrongThreadError:
                seen.append("wrong-thread")
            raise RuntimeError("handler failure")

    logger = logging.getLogger("servicepoint")
    handler = Nasty()
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    old_raise = logging.raiseExceptions
    logging.raiseExceptions = False
    try:
        manager.set_log_level(logging.DEBUG)
        point = manager.find_service_point(server.url())
        point.connection_lease_timeout = 0
        for _ in range(3):
            with manager.get(server.url("/hello")) as resp:
                assert resp.read() == b"hello"
    finally:
        manager.set_log_level(None)
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logging.raiseExceptions = old_raise
    assert seen and "wrong-thread" in seen
    assert len(server.requests_to("/hello")) == 3


# --- metrics -----------------------------------------------------------------------------------


def test_statistics_and_histograms(manager: ServicePointManager, server: RecordingServer) -> None:
    bounds = servicepoint.BUCKET_BOUNDS
    assert len(bounds) == 20 and bounds[0] == 0.0001 and bounds[-1] == math.inf
    assert list(bounds) == sorted(bounds)

    point = manager.find_service_point(server.url())
    empty = point.queue_wait_histogram()
    assert empty.count == 0 and empty.sum == 0.0 and empty.mean == 0.0
    for _ in range(3):
        with manager.get(server.url("/hello")) as resp:
            resp.read()
    with manager.get(server.url("/hello")) as held:
        stats = manager.statistics
        assert (stats.open, stats.busy, stats.active, stats.idle) == (1, 1, 1, 0)
        assert point.statistics.busy == 1
        held.read()
    stats = manager.statistics
    assert (stats.open, stats.idle, stats.busy, stats.requests) == (1, 1, 0, 4)
    assert stats.connections_opened == server.connection_count() == 1

    queue = point.queue_wait_histogram()
    assert queue.count == 4 and sum(queue.buckets) == 4 and queue.bounds == bounds
    assert 0 <= queue.sum < 5 and queue.cumulative()[-1] == (math.inf, 4)
    assert manager.queue_wait_histogram() == queue  # one service point: the same figures

    assert point.connection_lifetime_histogram().count == 0
    point.close_connection_group("")
    lifetime = point.connection_lifetime_histogram()
    assert lifetime.count == 1 and lifetime.sum > 0
    assert manager.connection_lifetime_histogram().count == 1
    assert manager.statistics.open == 0 and manager.statistics.closed_group == 1


def test_manager_metrics_sum_over_service_points(
    manager: ServicePointManager, server: RecordingServer
) -> None:
    other = RecordingServer().start()
    try:
        for srv in (server, other, other):
            with manager.get(srv.url("/hello")) as resp:
                resp.read()
        assert manager.statistics.requests == 3
        assert manager.statistics.open == 2
        assert manager.queue_wait_histogram().count == 3
        assert manager.find_service_point(other.url()).queue_wait_histogram().count == 2
    finally:
        other.stop()


# --- the installed package -----------------------------------------------------------------------


def test_installed_package_loads_its_bundled_library() -> None:
    """tests/run-all.sh runs the tests against the wheel installed in a fresh venv, with
    SERVICEPOINT_TEST_INSTALLED=1: the package must come from site-packages and load the
    library bundled in it, with no environment variable."""
    if os.environ.get("SERVICEPOINT_TEST_INSTALLED") != "1":
        pytest.skip("not testing an installed wheel (SERVICEPOINT_TEST_INSTALLED unset)")
    assert "SERVICEPOINT_LIB" not in os.environ
    assert "site-packages" in PACKAGE_DIR.parts, PACKAGE_DIR
    assert Path(sys.prefix) in PACKAGE_DIR.parents
    library = Path(servicepoint.LIBRARY_PATH)
    assert library.parent.resolve() == PACKAGE_DIR
    assert library.name.startswith("libservicepoint.so")
