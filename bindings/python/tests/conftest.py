"""Fixtures: a recording loopback HTTP/1.1 server and a manager.

The server (a ThreadingHTTPServer on 127.0.0.1, port 0, in a daemon thread, speaking
HTTP/1.1 so keep-alive works) records every accepted connection (the client port) and every
request (method, path, headers in order, client port, body), so tests assert what the
server observed, not only what the client reports.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

import servicepoint


@lru_cache(maxsize=None)
def pattern(size: int) -> bytes:
    """Deterministic, non-repeating bytes (SHA-256 blocks of a counter)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: List[Tuple[str, str]]
    client_port: int
    body: bytes
    chunked: bool

    def header(self, name: str) -> Optional[str]:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end after this (bounds the handler threads)
    server: "RecordingServer"

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle on the server side plus the client's delayed ACK add ~40 ms to
        # every response written in two pieces (head, then body).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    # --- request side ----------------------------------------------------------------

    def _read_body(self) -> Tuple[bytes, bool]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = bytearray()
            for _ in range(1_000_000):  # bounded
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    for _ in range(1000):  # trailer section up to the empty line
                        if self.rfile.readline(65537) in (b"\r\n", b"\n", b""):
                            break
                    break
                data += self.rfile.read(size)
                self.rfile.readline(3)
            return bytes(data), True
        length = int(self.headers.get("Content-Length") or 0)
        return (self.rfile.read(length) if length else b""), False

    def _handle(self) -> None:
        body, chunked = self._read_body()
        rec = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=list(self.headers.items()),
            client_port=self.client_address[1],
            body=body,
            chunked=chunked,
        )
        with self.server.lock:
            self.server.requests.append(rec)
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = getattr(self, "route_" + parts.path.strip("/").replace("-", "_"), None)
        if route is None:
            self._send(404, b"not found")
        else:
            route(query, rec)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def do_HEAD(self) -> None:
        self._handle()

    # --- response side ---------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        headers: Optional[List[Tuple[str, str]]] = None,
    ) -> None:
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def route_hello(self, query: dict, rec: RecordedRequest) -> None:
        self._send(200, b"hello", [("Content-Type", "text/plain")])

    def route_sleep(self, query: dict, rec: RecordedRequest) -> None:
        ms = min(int(query.get("ms", "100")), 5000)
        with self.server.lock:
            self.server.in_handler += 1
            self.server.max_in_handler = max(self.server.max_in_handler, self.server.in_handler)
        try:
            time.sleep(ms / 1000.0)
        finally:
            with self.server.lock:
                self.server.in_handler -= 1
        self._send(200, b"slept")

    def route_whoami(self, query: dict, rec: RecordedRequest) -> None:
        """Answers with the request's path and query: tells each request's response apart."""
        self._send(200, rec.path.encode("utf-8"), [("Content-Type", "text/plain")])

    def route_big(self, query: dict, rec: RecordedRequest) -> None:
        data = pattern(int(query.get("size", "1048576")))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for start in range(0, len(data), 65536):  # several writes
            self.wfile.write(data[start : start + 65536])

    def route_echo(self, query: dict, rec: RecordedRequest) -> None:
        self._send(
            200,
            rec.body,
            [("Content-Type", rec.header("Content-Type") or "application/octet-stream")],
        )

    def route_headers(self, query: dict, rec: RecordedRequest) -> None:
        self._send(
            200,
            b"h",
            [
                ("X-Mixed-Case", "one"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("X-Unicode", "caf\u00e9"),
            ],
        )

    def route_chunked(self, query: dict, rec: RecordedRequest) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Trailer", "X-Checksum")
        self.end_headers()
        payload = pattern(10000)
        for start in range(0, len(payload), 3000):
            piece = payload[start : start + 3000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        digest = hashlib.sha256(payload).hexdigest()
        self.wfile.write(b"0\r\nX-Checksum: " + digest.encode() + b"\r\n\r\n")

    def route_close(self, query: dict, rec: RecordedRequest) -> None:
        self._send(200, b"bye", [("Connection", "close")])
        self.close_connection = True

    def route_nocontent(self, query: dict, rec: RecordedRequest) -> None:
        self.send_response(204)
        self.end_headers()

    def route_drop(self, query: dict, rec: RecordedRequest) -> None:
        """Answers with keep-alive semantics, then silently closes the connection."""
        self._send(200, b"dropped")
        self.close_connection = True

    def route_http10(self, query: dict, rec: RecordedRequest) -> None:
        """An HTTP/1.0 response without keep-alive, body delimited by close."""
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold-school")
        self.close_connection = True

    def route_stall_body(self, query: dict, rec: RecordedRequest) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "10")
        self.end_headers()
        self.wfile.write(b"ab")
        self.wfile.flush()
        time.sleep(min(int(query.get("ms", "1500")), 5000) / 1000.0)
        self.close_connection = True


class RecordingServer(ThreadingHTTPServer):
    """Loopback HTTP/1.1 server recording connections and requests."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: List[int] = []  # client port of each accepted connection
        self.requests: List[RecordedRequest] = []
        self.in_handler = 0
        self.max_in_handler = 0
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    def process_request(self, request: socket.socket, client_address: Tuple[str, int]) -> None:
        with self.lock:
            self.connections.append(client_address[1])
        super().process_request(request, client_address)

    def handle_error(self, request: object, client_address: Tuple[str, int]) -> None:
        # A client that gave up (timeout tests) breaks the pipe: expected, keep quiet.
        import sys

        exc = sys.exc_info()[1]
        if not isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def url(self, path: str = "/") -> str:
        return "http://127.0.0.1:{}{}".format(self.port, path)

    def requests_to(self, path_prefix: str) -> List[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def connection_count(self) -> int:
        with self.lock:
            return len(self.connections)

    def start(self) -> "RecordingServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def manager() -> Iterator[servicepoint.ServicePointManager]:
    with servicepoint.ServicePointManager() as mgr:
        yield mgr


def refused_port() -> int:
    """A loopback port with nothing listening (bound then closed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port
