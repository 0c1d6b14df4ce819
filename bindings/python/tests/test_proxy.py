"""HTTP proxies from Python: the manager's proxy, bypass list and environment opt-in, a
request's own proxy, FindServicePoint(uri, proxy), and requests through a small recording
proxy (absolute form, Basic credentials, 407 to CONNECT)."""

from __future__ import annotations

import base64
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest

import servicepoint
from servicepoint import ServicePointManager

from conftest import RecordingServer

CREDENTIALS = "user:p%40ss"
BASIC = "Basic " + base64.b64encode(b"user:p@ss").decode()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: "RecordingProxy"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _record(self) -> bool:
        auth = self.headers.get("Proxy-Authorization")
        self.server.seen.append((self.requestline, auth))
        if self.server.require is not None and auth != self.server.require:
            self.send_response(407)
            self.send_header("Proxy-Authenticate", 'Basic realm="test"')
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"auth")
            return False
        return True

    def do_CONNECT(self) -> None:
        if self._record():
            self.send_response(403, "No Tunnels Here")
            self.send_header("Content-Length", "0")
            self.end_headers()

    def do_GET(self) -> None:
        if not self._record():
            return
        url = urlsplit(self.path)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-authorization"}
            conn.request("GET", url.path + ("?" + url.query if url.query else ""), headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class RecordingProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, require: Optional[str] = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.require = require
        self.seen: List[Tuple[str, Optional[str]]] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, credentials: Optional[str] = None) -> str:
        user = credentials + "@" if credentials else ""
        return "http://{}127.0.0.1:{}".format(user, self.server_address[1])


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    p = RecordingProxy(require=BASIC)
    yield p
    p.shutdown()
    p.server_close()


def test_settings_round_trip(manager: ServicePointManager) -> None:
    assert manager.proxy is None
    assert manager.proxy_bypass == "localhost, 127.0.0.0/8, ::1"
    assert manager.use_environment_proxy is False
    manager.proxy = "u%40x:pw@Proxy.Example:3128"
    assert manager.proxy == "http://u%40x:pw@proxy.example:3128"
    with pytest.raises(servicepoint.UnsupportedSchemeError):
        manager.proxy = "socks5://h:1080"
    with pytest.raises(servicepoint.InvalidUrlError):
        manager.proxy = "http://h/path"
    manager.proxy = None
    assert manager.proxy is None
    manager.proxy_bypass = ".corp.example;10.0.0.0/8"
    assert manager.proxy_bypass == ".corp.example, 10.0.0.0/8"
    with pytest.raises(servicepoint.InvalidArgumentError):
        manager.proxy_bypass = "10.0.0.0/99"
    assert servicepoint.error_class(31) is servicepoint.ProxyAuthenticationRequiredError
    assert issubclass(servicepoint.ProxyConnectError, ConnectionError)


def test_plain_http_through_the_proxy_in_absolute_form(
    manager: ServicePointManager, server: RecordingServer, proxy: RecordingProxy
) -> None:
    manager.proxy = proxy.url(CREDENTIALS)
    with manager.get(server.url("/hello")) as resp:
        assert resp.status == 200
        direct_body = resp.read()
    assert proxy.seen == [], "loopback is bypassed by default"
    manager.proxy_bypass = ""
    for _ in range(2):
        with manager.get(server.url("/hello?via=proxy")) as resp:
            assert resp.status == 200
            assert resp.read() == direct_body
    line, auth = proxy.seen[0]
    assert line == "GET {} HTTP/1.1".format(server.url("/hello?via=proxy"))
    assert auth == BASIC
    assert server.requests_to("/hello")[-1].header("Proxy-Authorization") is None
    # One service point, the proxy's, served them (FindServicePoint(uri, proxy)).
    point = manager.find_service_point_with_proxy(server.url("/"))
    assert point.address == "http://127.0.0.1:{}".format(proxy.server_address[1])
    assert point.statistics.requests == 2
    assert manager.find_service_point_with_proxy(server.url("/"), "") == manager.find_service_point(
        server.url("/")
    )
    # A request's own "" is direct.
    before = len(proxy.seen)
    with manager.get(server.url("/hello"), proxy="") as resp:
        assert resp.status == 200
    assert len(proxy.seen) == before


def test_a_407_to_connect_raises_its_own_error(
    manager: ServicePointManager, proxy: RecordingProxy
) -> None:
    manager.proxy_bypass = ""
    req = servicepoint.Request("GET", "https://127.0.0.1:9/", proxy=proxy.url())
    assert req.proxy == proxy.url()
    with pytest.raises(servicepoint.ProxyAuthenticationRequiredError) as info:
        manager.send(req)
    assert "407" in str(info.value)
    assert info.value.request_sent is False
    manager.proxy = proxy.url(CREDENTIALS)
    with pytest.raises(servicepoint.ProxyConnectError) as info:
        manager.get("https://127.0.0.1:9/")
    assert "403 No Tunnels Here" in str(info.value)
    assert [line for line, _ in proxy.seen] == ["CONNECT 127.0.0.1:9 HTTP/1.1"] * 2
