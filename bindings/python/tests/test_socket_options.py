"""The socket settings of .NET's ServicePoint, read back from the connected socket (seed 000:
ReceiveBufferSize 2048 and an infinite lease timeout before the request)."""

from __future__ import annotations

import socket
import time

import pytest

import servicepoint


def _fd_socket(resp: servicepoint.Response) -> socket.socket:
    import ctypes

    from servicepoint import _native as n

    fd = ctypes.c_int32()
    n.sp_response_socket(resp._live(), ctypes.byref(fd))
    return socket.socket(fileno=fd.value)


def test_seed_000_receive_buffer_size_reaches_the_socket(server, manager) -> None:  # type: ignore[no-untyped-def]
    url = server.url("/big?size=100000")
    point = manager.find_service_point(url)
    assert point.receive_buffer_size is None
    point.receive_buffer_size = 2048
    point.connection_lease_timeout = None
    point.set_tcp_keep_alive(True, 7, 3)
    with manager.request("GET", url) as resp:
        s = _fd_socket(resp)
        try:
            assert 2048 <= s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) <= 8192
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
        finally:
            s.detach()  # the descriptor is the library's
        assert len(resp.read()) == 100000
    assert point.receive_buffer_size == 2048
    assert point.tcp_keep_alive == (True, 7.0, 3.0)


def test_rejected_values_change_nothing_and_defaults_come_from_the_manager(server, manager) -> None:  # type: ignore[no-untyped-def]
    manager.use_nagle_algorithm = True
    point = manager.find_service_point(server.url("/"))
    assert point.use_nagle_algorithm is True
    point.receive_buffer_size = 4096
    with pytest.raises(servicepoint.OutOfRangeError):
        point.receive_buffer_size = -2
    assert point.receive_buffer_size == 4096
    with pytest.raises(servicepoint.OutOfRangeError):
        point.set_tcp_keep_alive(True, 0, 1)
    point.connect_timeout = 0.5
    assert point.connect_timeout == 0.5
    point.local_address = "127.0.0.2"
    assert point.local_address == "127.0.0.2:0"
    with manager.request("GET", server.url("/hello")) as resp:
        assert resp.status == 200
    assert server.requests_to("/hello")[-1].client_port > 0
    point.local_address = None
    assert point.local_address is None


def test_expect_100_continue_settings_and_the_header_on_the_wire(server, manager) -> None:  # type: ignore[no-untyped-def]
    assert manager.expect_100_continue is False
    manager.expect_100_continue = True
    point = manager.find_service_point(server.url("/"))
    assert point.expect_100_continue is True
    assert point.expect_100_continue_timeout == 0.35
    point.expect_100_continue_timeout = 0.1
    assert point.expect_100_continue_timeout == 0.1
    with manager.request("POST", server.url("/echo"), body=b"payload") as resp:
        assert resp.read() == b"payload"
    seen = server.requests_to("/echo")[-1]
    assert (seen.header("Expect") or "").lower() == "100-continue"
    assert seen.body == b"payload"
    point.expect_100_continue = False
    with manager.request("POST", server.url("/echo"), body=b"plain") as resp:
        assert resp.read() == b"plain"
    assert server.requests_to("/echo")[-1].header("Expect") is None


def test_resolve_override_and_round_robin_settings(server, manager) -> None:  # type: ignore[no-untyped-def]
    port = int(server.url("/").rsplit(":", 1)[1].split("/")[0])
    assert manager.enable_dns_round_robin is False
    manager.enable_dns_round_robin = True
    assert manager.enable_dns_round_robin is True
    with pytest.raises(servicepoint.ServicePointError):
        manager.set_resolve("pinned.invalid", port, ["not-an-ip"])
    manager.set_resolve("pinned.invalid", port, ["127.0.0.1"])
    assert manager.resolve_overrides == {("pinned.invalid", port): ["127.0.0.1"]}
    with manager.request("GET", f"http://pinned.invalid:{port}/hello") as resp:
        assert resp.status == 200
    assert server.requests_to("/hello")[-1].header("Host") == f"pinned.invalid:{port}"
    # Re-pinned elsewhere: the idle connection to 127.0.0.1 is closed within about a second.
    point = manager.find_service_point(f"http://pinned.invalid:{port}/")
    assert point.statistics.idle == 1
    manager.set_resolve("pinned.invalid", port, ["127.0.0.2"])
    deadline = time.monotonic() + 5
    while point.statistics.closed_address_gone == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert point.statistics.closed_address_gone == 1
    assert point.statistics.open == 0
    manager.set_resolve("pinned.invalid", port, None)
    assert manager.resolve_overrides == {}
