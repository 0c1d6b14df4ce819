"""asyncio requests and body reads (one completion queue per loop), their cancellation, and
cancellation of blocking calls: CancelToken from another thread, Ctrl-C on the main thread."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Coroutine, Iterator, List, Optional, TypeVar

import pytest

import servicepoint
from servicepoint import _aio, _native
from servicepoint import cancel as _cancel

from conftest import RecordingServer, pattern

T = TypeVar("T")


def run(coro: "Coroutine[Any, Any, T]", timeout: float = 30.0) -> T:
    """Runs a coroutine in a fresh event loop, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class SilentServer:
    """Accepts connections and reads requests but never answers (or, given ``reply``,
    answers each request head with those bytes in one write); records each connection and
    whether (and when) the client closed it."""

    def __init__(self, reply: bytes = b"") -> None:
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.received: List[bytes] = []  # bytes received per connection
        self.closed: List[Optional[float]] = []  # monotonic time the client closed, per connection
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return "http://127.0.0.1:{}{}".format(self.port, path)

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            with self.lock:
                index = len(self.received)
                self.received.append(b"")
                self.closed.append(None)
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        conn.settimeout(0.05)
        deadline = time.monotonic() + 30
        with conn:
            while not self._stop and time.monotonic() < deadline:
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    data = b""
                with self.lock:
                    if not data:
                        self.closed[index] = time.monotonic()
                        return
                    heads = (self.received[index] + data).count(b"\r\n\r\n")
                    heads -= self.received[index].count(b"\r\n\r\n")
                    self.received[index] += data
                if self.reply:
                    conn.sendall(self.reply * heads)

    def wait(self, predicate: Any, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.005)
        return False

    def stop(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    srv = SilentServer()
    try:
        yield srv
    finally:
        srv.stop()


def _pending_settles() -> bool:
    """Every operation's callback has fired and its entry (and handle) was released."""
    return not _aio._PENDING


# --- asyncio ---------------------------------------------------------------------------------


def test_async_get_returns_the_body_and_the_server_saw_it(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    async def main() -> Any:
        async with await manager.request_async(
            "GET", server.url("/hello?id=async"), headers={"X-Async": "1"}
        ) as resp:
            return resp.status, resp.header("content-type"), await resp.aread(), resp

    status, ctype, body, resp = run(main())
    assert (status, ctype, body) == (200, "text/plain", b"hello")
    assert resp.closed
    [rec] = server.requests_to("/hello?id=async")
    assert rec.method == "GET" and rec.header("X-Async") == "1"
    assert _pending_settles()


def test_async_post_and_send_async(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    async def main() -> List[bytes]:
        out = []
        async with await manager.post_async(server.url("/echo"), body=b"payload") as resp:
            out.append(await resp.aread())
        with servicepoint.Request("PUT", server.url("/echo"), body="again") as req:
            async with await manager.send_async(req) as resp:
                out.append(await resp.aread())
        return out

    assert run(main()) == [b"payload", b"again"]
    assert [r.body for r in server.requests_to("/echo")] == [b"payload", b"again"]


def test_async_errors_raise_the_binding_exceptions(
    manager: servicepoint.ServicePointManager,
) -> None:
    from conftest import refused_port

    async def main() -> None:
        await manager.get_async("http://127.0.0.1:{}/".format(refused_port()), timeout=5)

    with pytest.raises(servicepoint.ConnectError) as info:
        run(main())
    assert info.value.function == "sp_request_async_queued" and str(info.value)
    with pytest.raises(ValueError):
        run(manager.request_async("POST", "http://127.0.0.1:1/", body=iter([b"x"])))
    assert _pending_settles()


def test_200_concurrent_requests_with_connection_limit_4(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    manager.find_service_point(server.url("/")).connection_limit = 4

    async def one(i: int) -> bytes:
        async with await manager.get_async(server.url("/sleep?ms=2&i={}".format(i))) as resp:
            return await resp.aread()

    async def main() -> List[bytes]:
        return await asyncio.gather(*(one(i) for i in range(200)))

    assert run(main(), timeout=60) == [b"slept"] * 200
    assert len(server.requests_to("/sleep")) == 200
    assert server.connection_count() <= 4
    assert server.max_in_handler <= 4
    assert _pending_settles()


def test_cancel_of_a_queued_request_never_reaches_the_server(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    manager.find_service_point(server.url("/")).connection_limit = 1

    async def main() -> List[bytes]:
        first = asyncio.ensure_future(manager.get_async(server.url("/sleep?ms=300")))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(manager.get_async(server.url("/hello?id=canceled")))
        await asyncio.sleep(0.05)
        assert not queued.done()
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        out = []
        async with await first as resp:
            out.append(await resp.aread())
        async with await manager.get_async(server.url("/hello?id=next")) as resp:
            out.append(await resp.aread())
        await asyncio.sleep(0.05)  # lets the canceled operation's callback run
        return out

    assert run(main()) == [b"slept", b"hello"]
    assert server.requests_to("/hello?id=canceled") == []
    assert len(server.requests_to("/hello?id=next")) == 1
    assert server.connection_count() == 1
    assert _pending_settles()


def test_cancel_of_an_in_flight_request_is_prompt_and_closes_the_connection(
    manager: servicepoint.ServicePointManager, silent: SilentServer
) -> None:
    async def main() -> float:
        task = asyncio.ensure_future(manager.get_async(silent.url("/never"), timeout=30))
        deadline = time.monotonic() + 5
        while not silent.received or b"\r\n\r\n" not in silent.received[0]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        elapsed = time.monotonic() - start
        await asyncio.sleep(0.05)
        return elapsed

    assert run(main()) < 0.5
    assert silent.wait(lambda s: s.closed[0] is not None, timeout=1.0), "connection not closed"
    assert _pending_settles()


def test_cancel_while_a_body_read_waits(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    async def main() -> float:
        resp = await manager.get_async(server.url("/stall_body?ms=3000"))
        assert await resp.aread1() == b"ab"
        task = asyncio.ensure_future(resp.aread1())
        await asyncio.sleep(0.05)
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        elapsed = time.monotonic() - start
        resp.close()
        await asyncio.sleep(0.05)
        return elapsed

    assert run(main()) < 0.5
    assert manager.statistics.busy == 0
    assert _pending_settles()


def test_a_response_that_arrives_as_its_task_is_cancelled_is_freed(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    """The callback has queued the response, the task is cancelled before it runs: the
    binding frees the response, so its connection goes back to the pool."""

    async def main() -> None:
        task = asyncio.ensure_future(manager.get_async(server.url("/hello?id=late")))
        await asyncio.sleep(0)  # the task starts its request
        queue = _aio._QUEUES[asyncio.get_running_loop()]
        length = ctypes.c_size_t()
        deadline = time.monotonic() + 5
        ran = ctypes.c_size_t()
        # Blocks the loop and does the queue's work by hand, running no completion (max 0):
        # the request's socket work runs here, and its completion stays queued.
        while length.value == 0:
            assert time.monotonic() < deadline
            time.sleep(0.002)
            _native.sp_completion_queue_run(queue.handle, 0, ctypes.byref(ran))
            _native.sp_completion_queue_len(queue.handle, ctypes.byref(length))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)

    run(main())
    assert _pending_settles()
    stats = manager.statistics
    assert stats.busy == 0 and stats.open == stats.idle
    with manager.get(server.url("/hello")) as resp:  # the same connection, reused
        assert resp.read() == b"hello" and resp.connection_reused
    assert server.connection_count() == 1


def test_async_body_iteration_of_chunked_and_large_bodies(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    size = 3 * 1024 * 1024 + 17

    async def main() -> Any:
        async with await manager.get_async(server.url("/chunked")) as resp:
            chunked = [c async for c in resp]
            trailer = resp.trailer("X-Checksum")
        async with await manager.get_async(server.url("/big?size={}".format(size))) as resp:
            sizes = []
            parts = []
            async for chunk in resp.aiter_chunks(10000):
                sizes.append(len(chunk))
                parts.append(chunk)
        async with await manager.get_async(server.url("/big?size=100000")) as resp:
            exact = await resp.aread(70000), await resp.aread(70000), await resp.aread(10)
        return chunked, trailer, sizes, b"".join(parts), exact

    chunked, trailer, sizes, big, exact = run(main())
    import hashlib

    assert b"".join(chunked) == pattern(10000)
    assert trailer == hashlib.sha256(pattern(10000)).hexdigest()
    assert big == pattern(size) and max(sizes) <= 10000
    assert exact == (pattern(100000)[:70000], pattern(100000)[70000:], b"")


def test_a_body_that_came_with_its_head_costs_no_asynchronous_read(
    manager: servicepoint.ServicePointManager,
    server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aread takes what has arrived (sp_response_read_now) and waits through an
    asynchronous read only while nothing has: none for a small body sent with its head,
    one for a body whose rest never comes (the server stalls, then closes)."""
    waits = []
    real_read = _aio.read

    async def counted(*args: Any) -> bytes:
        waits.append(args[2])
        return await real_read(*args)

    monkeypatch.setattr(_aio, "read", counted)

    answering = SilentServer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    async def main() -> Any:
        bodies = []
        for _ in range(5):
            async with await manager.get_async(answering.url("/hello")) as resp:
                bodies.append(await resp.aread())
        small_waits = len(waits)
        async with await manager.get_async(server.url("/stall_body?ms=300")) as resp:
            first = await resp.aread1()  # with the head, or moments after: waits or not
            before = len(waits)
            with pytest.raises(servicepoint.ConnectionClosedError):
                await resp.aread()  # nothing more arrives for 300 ms, then the close
        return bodies, small_waits, first, len(waits) - before

    try:
        bodies, small_waits, first, stalled_waits = run(main())
    finally:
        answering.stop()
    assert bodies == [b"hello"] * 5
    assert small_waits == 0
    assert first == b"ab" and stalled_waits == 1
    assert len(answering.received) == 1, "one connection served the five requests"
    assert answering.received[0].count(b"GET /hello ") == 5
    assert len(server.requests_to("/stall_body")) == 1


def test_a_connection_opened_by_an_async_request_is_reused_by_a_blocking_one(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    async def main() -> int:
        async with await manager.get_async(server.url("/hello")) as resp:
            await resp.aread()
            return resp.connection_id

    first = run(main())
    with manager.get(server.url("/hello")) as resp:
        assert resp.read() == b"hello"
        assert resp.connection_reused and resp.connection_id == first
    assert server.connection_count() == 1


def test_one_completion_queue_per_loop(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    async def main() -> int:
        async with await manager.get_async(server.url("/hello")) as resp:
            await resp.aread()
        return _aio._QUEUES[asyncio.get_running_loop()].handle

    results: List[int] = []
    thread = threading.Thread(target=lambda: results.append(run(main())))
    thread.start()
    results.append(run(main()))
    thread.join(30)
    assert len(results) == 2 and results[0] != results[1]


# --- cancellation of blocking calls --------------------------------------------------------


def test_cancel_token_from_another_thread_ends_a_blocking_request(
    manager: servicepoint.ServicePointManager, silent: SilentServer
) -> None:
    token = servicepoint.CancelToken()
    assert not token.canceled
    timer = threading.Timer(0.3, token.cancel)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(servicepoint.CanceledError):
            manager.get(silent.url("/never"), timeout=30, cancel_token=token)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 0.3 + 0.1
    assert token.canceled
    assert silent.wait(lambda s: s.closed and s.closed[0] is not None, timeout=1.0)
    # Stays canceled until reset: fails at once, nothing sent.
    with pytest.raises(servicepoint.CanceledError):
        manager.get(silent.url("/again"), timeout=30, cancel_token=token)
    assert b"/again" not in b"".join(silent.received)
    token.reset()
    assert not token.canceled
    token.close()


def test_cancel_token_ends_a_blocking_body_read(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    token = servicepoint.CancelToken()
    req = servicepoint.Request("GET", server.url("/stall_body?ms=3000"), cancel_token=token)
    assert req.cancel_token is token
    with manager.send(req) as resp:
        assert resp.read1() == b"ab"
        timer = threading.Timer(0.2, token.cancel)
        timer.start()
        start = time.monotonic()
        with pytest.raises(servicepoint.CanceledError):
            resp.read()
        assert time.monotonic() - start < 0.2 + 0.1
    assert manager.statistics.busy == 0


def test_a_blocking_request_on_the_main_thread_arms_the_interrupt_token(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    assert threading.current_thread() is threading.main_thread()
    seen: List[int] = []
    real = _native.sp_request

    def spy(*args: Any) -> Any:
        old = signal.set_wakeup_fd(-1)  # what is installed during the call
        signal.set_wakeup_fd(old, warn_on_full_buffer=False)
        seen.append(old)
        return real(*args)

    _native.sp_request = spy
    try:
        with manager.get(server.url("/hello")) as resp:
            assert resp.read() == b"hello"
        with servicepoint.Request("GET", server.url("/hello")) as req, manager.send(req) as resp:
            assert resp.read() == b"hello"
    finally:
        _native.sp_request = real
    assert seen == [_cancel._Interrupt.fd] * 2 and seen[0] >= 0
    assert signal.set_wakeup_fd(-1) == -1  # restored after the calls


INTERRUPT_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    import servicepoint

    # Ctrl-C raises KeyboardInterrupt even when the test suite was started with SIGINT
    # ignored (as `cmd &` in a script does), which the child would otherwise inherit.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    silent_url, stall_url, good_url = sys.argv[1:4]
    manager = servicepoint.ServicePointManager()
    print("ready", flush=True)
    try:
        manager.get(silent_url, timeout=30)
        print("no interrupt", flush=True)
    except KeyboardInterrupt:
        print("interrupted request", time.monotonic(), flush=True)
    with manager.get(good_url) as resp:
        print("second", resp.status, resp.read().decode(), flush=True)
    resp = manager.get(stall_url)
    assert resp.read1() == b"ab"
    try:
        # Inside the try: a signal that comes before the read starts is caught here too.
        print("reading", flush=True)
        resp.read()
        print("no interrupt", flush=True)
    except KeyboardInterrupt:
        print("interrupted read", time.monotonic(), flush=True)
    resp.close()
    with manager.get(good_url) as resp:
        print("third", resp.status, resp.read().decode(), flush=True)
    print("waiting", flush=True)
    manager.get(silent_url, timeout=30)
    """
)


def test_ctrl_c_interrupts_a_blocking_request_and_the_pool_stays_usable(
    server: RecordingServer, silent: SilentServer, tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(INTERRUPT_CHILD)
    env = dict(os.environ)
    package_root = str(Path(servicepoint.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    child = subprocess.Popen(
        [sys.executable, str(script), silent.url("/never"), server.url("/stall_body?ms=5000"),
         server.url("/hello")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        assert child.stdout is not None
        lines: List[str] = []

        def expect(prefix: str) -> str:
            line = child.stdout.readline().strip()  # type: ignore[union-attr]
            lines.append(line)
            assert line.startswith(prefix), lines
            return line

        def interrupt_after(delay: float) -> float:
            time.sleep(delay)
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            return sent

        def interrupt_when_sent(connection: int) -> float:
            # Once the silent server has the request head, the child is inside the library's
            # blocking call (a fixed delay raced a busy machine's scheduler).
            assert silent.wait(
                lambda s: len(s.received) > connection and b"\r\n\r\n" in s.received[connection],
                timeout=10.0,
            ), "the request reached the server"
            return interrupt_after(0.0)

        expect("ready")
        sent = interrupt_when_sent(0)
        delays = [float(expect("interrupted request").split()[2]) - sent]
        expect("second 200 hello")
        expect("reading")
        sent = interrupt_after(0.3)
        delays.append(float(expect("interrupted read").split()[2]) - sent)
        expect("third 200 hello")
        expect("waiting")
        sent = interrupt_when_sent(1)
        child.wait(timeout=5)
        exited = time.monotonic() - sent
        stderr = child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    for delay in delays:
        assert 0 <= delay < 1.0, delays
    assert exited < 1.0
    assert child.returncode == -signal.SIGINT and "KeyboardInterrupt" in stderr, stderr
    # The request was sent, then its connection closed by the cancel.
    assert silent.wait(lambda s: len(s.closed) >= 1 and s.closed[0] is not None, timeout=1.0)
    print("Ctrl-C delays (request, body read): {:.1f} ms, {:.1f} ms".format(
        delays[0] * 1000, delays[1] * 1000))


def test_interrupt_blocking_calls_can_be_turned_off(
    manager: servicepoint.ServicePointManager, server: RecordingServer
) -> None:
    assert servicepoint.interrupt_blocking_calls(False) is True
    try:
        assert not _cancel.arm()
        with manager.get(server.url("/hello")) as resp:
            assert resp.read() == b"hello"
    finally:
        assert servicepoint.interrupt_blocking_calls(True) is False
    assert _cancel.arm()
    _cancel.disarm()


def test_operations_left_pending_when_the_loop_ends_are_released(
    manager: servicepoint.ServicePointManager, server: RecordingServer, silent: SilentServer
) -> None:
    """asyncio.run cancels the tasks still waiting; once the loop is gone its queue is freed,
    the callbacks run and nothing stays pending or busy."""

    async def main() -> None:
        asyncio.ensure_future(manager.get_async(silent.url("/left")))
        resp = await manager.get_async(server.url("/stall_body?ms=2000"))
        asyncio.ensure_future(resp.aread())
        await asyncio.sleep(0.1)

    asyncio.run(main())
    import gc

    deadline = time.monotonic() + 5
    while (_aio._PENDING or manager.statistics.busy) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert not _aio._PENDING and not _aio._QUEUES
    assert manager.statistics.busy == 0
    assert silent.wait(lambda s: s.closed and s.closed[0] is not None, timeout=1.0)
