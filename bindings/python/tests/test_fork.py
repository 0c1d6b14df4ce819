"""fork(): a child process never uses its parent's pooled connections, and its runtime and
idle reaper work (Python multiprocessing with the fork start method, gunicorn --preload)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import List, Tuple

import servicepoint

# Set in the parent before forking; inherited by the children.
_MANAGER: "servicepoint.ServicePointManager | None" = None
_URL = ""


def _child(index: int) -> Tuple[int, int, bool]:
    """Runs in a forked child: requests with bodies of its own, then waits for the reaper."""
    assert _MANAGER is not None
    wrong = 0
    for i in range(200):
        token = "child-{}-{}-{}".format(os.getpid(), index, i).encode()
        with _MANAGER.request("PUT", _URL + "/echo", body=token, timeout=5) as resp:
            if resp.read() != token:
                wrong += 1
    point = _MANAGER.find_service_point(_URL)
    point.max_idle_time = 0.05
    reaped = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not reaped:
        time.sleep(0.02)
        reaped = point.current_connections == 0
    return os.getpid(), wrong, reaped


def test_forked_children_never_share_connections_with_the_parent(server) -> None:  # type: ignore[no-untyped-def]
    global _MANAGER, _URL
    _URL = server.url("").rstrip("/")
    _MANAGER = servicepoint.ServicePointManager()
    try:
        _MANAGER.find_service_point(_URL).connection_limit = 4
        wrong_in_parent: List[bytes] = []
        stop = threading.Event()

        def parent_load() -> None:
            i = 0
            while not stop.is_set() and i < 100000:
                token = "parent-{}".format(i).encode()
                with _MANAGER.request("PUT", _URL + "/echo", body=token, timeout=5) as resp:  # type: ignore[union-attr]
                    body = resp.read()
                if body != token:
                    wrong_in_parent.append(body)
                i += 1

        # Warm the pool, then fork while two parent threads are inside requests.
        with _MANAGER.request("GET", _URL + "/hello") as resp:
            resp.read()
        threads = [threading.Thread(target=parent_load) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(3) as pool:
                results = pool.map_async(_child, range(6)).get(timeout=60)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert len({pid for pid, _, _ in results}) >= 2
        for pid, wrong, reaped in results:
            assert wrong == 0, "child {} got {} bodies of another process".format(pid, wrong)
            assert reaped, "the idle reaper ran in child {}".format(pid)
        assert wrong_in_parent == []
        with _MANAGER.request("PUT", _URL + "/echo", body=b"after") as resp:
            assert resp.read() == b"after"
    finally:
        _MANAGER.close()
        _MANAGER = None
