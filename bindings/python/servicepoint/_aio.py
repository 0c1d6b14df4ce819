"""asyncio support: asynchronous requests and body reads through a completion queue.

Each event loop gets one ``sp_completion_queue`` (made on first use); its descriptor is
watched with ``loop.add_reader``, and the reader runs the queued callbacks, so every
callback runs on the loop's thread and no library thread ever runs Python code.

Two ctypes trampolines (made once, never freed: a ctypes callback must not be freed while it
runs) serve every operation; the ``userdata`` of an operation is a key into ``_PENDING``,
which holds the operation's future, its handle and what must stay alive until its callback
has fired. The callback removes the entry, resolves the future (or, when the awaiting task
was cancelled, frees the response it got) and frees the operation's handle.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import threading
import weakref
from typing import Any, Dict, Optional

from . import _native as n
from . import errors

__all__ = ["send", "read", "read_now"]

#: How many queued callbacks one wake-up of the reader runs (the descriptor stays readable
#: while more remain, so the loop comes back for the rest after other ready callbacks).
_RUN_BATCH = 256

#: Size of each thread's buffer for body bytes that have already arrived.
_NOW_BUFFER = 64 * 1024


class _Queue:
    """The completion queue of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        out = ctypes.c_void_p()
        n.sp_completion_queue_new(ctypes.byref(out))
        self.handle = n.out_handle(out, "sp_completion_queue_new")
        try:
            fd = ctypes.c_int32()
            n.sp_completion_queue_fd(self.handle, ctypes.byref(fd))
            self.fd = fd.value
            self.thread = threading.get_ident()
            loop.add_reader(self.fd, self.drain)
        except BaseException:
            n.sp_completion_queue_free(self.handle)
            raise
        # Freed with the loop (the queue holds no reference to it, so the loop can go):
        # freeing cancels the operations still on it and runs their callbacks at once, where
        # they only release what they hold.
        weakref.finalize(loop, n.sp_completion_queue_free, self.handle)
        self._ran = ctypes.c_size_t()

    def drain(self) -> None:
        n.sp_completion_queue_run(self.handle, _RUN_BATCH, ctypes.byref(self._ran))


_QUEUES: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue]" = (
    weakref.WeakKeyDictionary()
)


#: The loop last asked for (weakly) and its queue (a program usually runs one loop): spares
#: the weak dictionary's lookup on every call.
_LAST: "Optional[tuple[weakref.ref[asyncio.AbstractEventLoop], _Queue]]" = None


def _queue(loop: asyncio.AbstractEventLoop) -> _Queue:
    global _LAST
    last = _LAST
    if last is not None and last[0]() is loop:
        return last[1]
    queue = _QUEUES.get(loop)
    if queue is None:
        queue = _QUEUES[loop] = _Queue(loop)
    _LAST = (weakref.ref(loop), queue)
    return queue


class _Op:
    """An operation whose callback has not fired yet. The future is held weakly (its task
    holds it), so pending operations do not keep a finished loop, and its queue, alive."""

    __slots__ = ("future", "handle", "thread", "owner")

    def __init__(self, future: "asyncio.Future[Any]", thread: int, owner: Any) -> None:
        self.future = weakref.ref(future)
        self.handle = 0
        self.thread = thread
        # Kept alive until the callback: the manager (a request) or the Response (a read).
        self.owner = owner


_PENDING: Dict[int, _Op] = {}
_KEYS = itertools.count(1)


def _error(result: int, function: str) -> errors.ServicePointError:
    """The exception of a callback's error code; the message is the thread's last error
    during the callback."""
    message = n._decode(n.sp_last_error()) or n.strerror(result)
    sent = bool(n.sp_last_error_request_sent())
    return errors.error_from_code(result, message, sent, function)


def _finish(op: _Op) -> None:
    if op.handle:
        handle, op.handle = op.handle, 0
        n.sp_operation_free(handle)


def _waiting(op: Optional[_Op]) -> "Optional[asyncio.Future[Any]]":
    """The operation's future if a task still waits for it on this (the loop's) thread."""
    if op is None or op.thread != threading.get_ident():
        return None
    future = op.future()
    if future is None or future.done():
        return None
    return future


def _discard(op: Optional[_Op], response: int) -> None:
    """Frees a response nobody awaits. On the loop's thread, just after the callback: freed
    inside its callback, a response with a short unread body closes its connection instead
    of draining it back to the pool."""
    future = op.future() if op is not None else None
    if op is not None and future is not None and op.thread == threading.get_ident():
        loop = future.get_loop()
        if not loop.is_closed():
            # A Response: freed by the garbage collector should the loop drop the call.
            loop.call_soon(_response_class()(response, op.owner).close)
            return
    n.sp_response_free(response)


_RESPONSE: Any = None


def _response_class() -> Any:
    """response.Response (imported on first use: that module imports this one)."""
    global _RESPONSE
    if _RESPONSE is None:
        from .response import Response

        _RESPONSE = Response
    return _RESPONSE


def _on_response(userdata: Optional[int], result: int, response: Optional[int]) -> None:
    op = _PENDING.pop(userdata or 0, None)
    try:
        future = _waiting(op)
        if op is None or future is None:
            # Nobody waits any more (the task was cancelled, or the loop is gone): the
            # response must not leak.
            if response:
                _discard(op, response)
            return
        if result != n.SP_OK:
            future.set_exception(_error(result, "sp_request_async_queued"))
            return
        try:
            if not response:
                raise errors.PanicError(22, "sp_request_async_queued gave SP_OK but no response")
            resp = _response_class()(response, op.owner)
        except BaseException as exc:  # Response() frees the handle when it fails
            future.set_exception(exc)
            return
        future.set_result(resp)
    except BaseException:  # pragma: no cover - a callback must never unwind into the library
        pass
    finally:
        if op is not None:
            _finish(op)


def _on_read(userdata: Optional[int], result: int, data: Optional[int], length: int) -> None:
    op = _PENDING.pop(userdata or 0, None)
    try:
        future = _waiting(op)
        if future is None:
            return
        if result != n.SP_OK:
            future.set_exception(_error(result, "sp_response_read_async_queued"))
        elif length and data:
            future.set_result(ctypes.string_at(data, length))  # data: valid only now
        else:
            future.set_result(b"")
    except BaseException:  # pragma: no cover - a callback must never unwind into the library
        pass
    finally:
        if op is not None:
            _finish(op)


_RESPONSE_CALLBACK = n.sp_response_callback(_on_response)
_READ_CALLBACK = n.sp_read_callback(_on_read)


async def _wait(key: int, op: _Op, future: "asyncio.Future[Any]") -> Any:
    """Awaits the operation's future; a cancelled task cancels the operation (its callback
    then frees what it gets) or, if the result came first, closes it."""
    try:
        return await future
    except asyncio.CancelledError:
        if key in _PENDING:
            if op.handle:
                try:
                    n.sp_operation_cancel(op.handle)
                except errors.ServicePointError:  # pragma: no cover - already finished
                    pass
        elif future.done() and not future.cancelled() and future.exception() is None:
            result = future.result()
            close = getattr(result, "close", None)
            if close is not None:
                close()
        raise


async def send(owner: Any, manager: int, request: int) -> Any:
    """sp_request_async_queued on the running loop's queue; returns the Response."""
    loop = asyncio.get_running_loop()
    queue = _queue(loop)
    future = loop.create_future()
    op = _Op(future, queue.thread, owner)
    key = next(_KEYS)
    _PENDING[key] = op
    out = ctypes.c_void_p()
    try:
        n.sp_request_async_queued(
            manager, request, queue.handle, _RESPONSE_CALLBACK, key, ctypes.byref(out)
        )
    except BaseException:
        _PENDING.pop(key, None)  # the callback is never called after an error
        raise
    op.handle = out.value or 0
    if key not in _PENDING:  # pragma: no cover - the callback already ran
        _finish(op)
    return await _wait(key, op, future)


class _NowBuffer(threading.local):
    """What read_now reads into, one per thread, reused."""

    def __init__(self) -> None:
        self.buffer = ctypes.create_string_buffer(_NOW_BUFFER)
        self.address = ctypes.addressof(self.buffer)
        self.got = ctypes.c_size_t()
        self.done = ctypes.c_int32()
        self.got_p = ctypes.pointer(self.got)
        self.done_p = ctypes.pointer(self.done)


_NOW = _NowBuffer()


def read_now(response: int, size: int) -> "tuple[bytes, bool]":
    """sp_response_read_now of up to ``size`` bytes: the bytes that have already arrived
    (b"" if none) and whether the body has ended. Never waits, so a body that came with its
    head costs no completion."""
    now = _NOW
    n.sp_response_read_now(
        response, now.address, min(size, _NOW_BUFFER), now.got_p, now.done_p
    )
    got = now.got.value
    return (ctypes.string_at(now.address, got) if got else b""), bool(now.done.value)


async def read(owner: Any, response: int, size: int) -> bytes:
    """sp_response_read_async_queued of up to ``size`` bytes; b"" at the end of the body."""
    loop = asyncio.get_running_loop()
    queue = _queue(loop)
    future = loop.create_future()
    op = _Op(future, queue.thread, owner)
    key = next(_KEYS)
    _PENDING[key] = op
    out = ctypes.c_void_p()
    try:
        n.sp_response_read_async_queued(
            response, queue.handle, size, _READ_CALLBACK, key, ctypes.byref(out)
        )
    except BaseException:
        _PENDING.pop(key, None)
        raise
    op.handle = out.value or 0
    if key not in _PENDING:  # pragma: no cover - the callback already ran
        _finish(op)
    result: bytes = await _wait(key, op, future)
    return result
