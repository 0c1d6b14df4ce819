"""HTTPS through the binding against a Python ``ssl`` server whose certificate comes from a
CA generated for the test with the openssl command (the server records the SNI it saw)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

import servicepoint

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _pki(tmp: Path) -> Tuple[Path, Path, Path]:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "2", "-subj", "/CN=binding test CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (tmp / "ext.cnf").write_text("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    return tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5

    def do_GET(self) -> None:
        body = b"over tls"
        if self.path == "/tls":  # what the server negotiated
            conn = self.connection
            body = "{} {} {}".format(conn.version(), conn.cipher()[0], conn.session_reused).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Tuple[str, Path, List[str]]]:
    ca, cert, key = _pki(tmp_path)
    seen_sni: List[str] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.sni_callback = lambda sock, name, _ctx: seen_sni.append(name) and None
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "https://localhost:{}/".format(server.server_address[1]), ca, seen_sni
    finally:
        server.shutdown()
        server.server_close()


def test_ca_file_makes_the_certificate_trusted(tls_server: Tuple[str, Path, List[str]]) -> None:
    url, ca, seen_sni = tls_server
    with servicepoint.ServicePointManager() as manager:
        manager.add_ca_file(str(ca))
        with manager.request("GET", url) as resp:
            assert resp.status == 200 and resp.read() == b"over tls"
    assert seen_sni == ["localhost"]


def test_read_only_facts_match_the_server(tls_server: Tuple[str, Path, List[str]]) -> None:
    url, ca, _ = tls_server
    server_pem = (ca.parent / "server.pem").read_text()
    with servicepoint.ServicePointManager() as manager:
        manager.add_ca_file(str(ca))
        with manager.find_service_point(url) as point:
            assert point.connection_name == "https"
            assert point.certificate is None  # no connection yet
            point.connection_lease_timeout = 0  # a new connection per request
            for resumed in (False, True):
                with manager.request("GET", url + "tls") as resp:
                    version, cipher, reused = resp.read().decode().split(" ")
                    assert resp.tls_version == version.replace("TLSv", "")
                    # OpenSSL names TLS 1.3 suites as IANA does.
                    if version == "TLSv1.3":
                        assert resp.tls_cipher_suite == cipher
                    assert resp.tls_resumed is resumed
                    assert reused == str(resumed)
                # Still readable after close.
                assert resp.tls_version == version.replace("TLSv", "")
            assert point.certificate == ssl.PEM_cert_to_DER_cert(server_pem)
            assert point.protocol_version == "1.1"


def test_unknown_issuer_is_its_own_exception(tls_server: Tuple[str, Path, List[str]]) -> None:
    url, _ca, _ = tls_server
    with servicepoint.ServicePointManager() as manager:
        manager.system_roots = False
        with pytest.raises(servicepoint.TlsUnknownIssuerError) as info:
            manager.request("GET", url)
        assert "localhost" in info.value.message


def test_validator_sees_the_chain_and_decides(tls_server: Tuple[str, Path, List[str]]) -> None:
    url, ca, _ = tls_server
    seen: List[Tuple[str, int, int]] = []

    def validator(host: str, chain: List[bytes], builtin: int) -> bool:
        seen.append((host, len(chain), builtin))
        return True

    with servicepoint.ServicePointManager() as manager:
        manager.set_certificate_validator(validator)
        with manager.request("GET", url) as resp:
            assert resp.read() == b"over tls"
        assert seen and seen[0][0] == "localhost" and seen[0][2] == 26  # unknown issuer
        manager.set_certificate_validator(lambda host, chain, builtin: False)
        manager.find_service_point(url).connection_lease_timeout = 0
        with pytest.raises(servicepoint.TlsCertificateError):
            manager.request("GET", url)


def test_tls_options_are_validated() -> None:
    with servicepoint.ServicePointManager() as manager:
        with pytest.raises(servicepoint.InvalidArgumentError):
            manager.add_ca_pem(b"not a certificate")
        with pytest.raises(servicepoint.InvalidArgumentError):
            manager.add_ca_file("/nonexistent/ca.pem")
        with pytest.raises(ValueError):
            manager.min_tls_version = "1.1"
        manager.min_tls_version = "1.3"
