"""The :class:`Request`: a reusable request description (method, URL, headers, body,
per-request options) owning one native ``sp_http_request``."""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

from . import _native as n
from ._handle import NativeObject
from . import cancel as _cancel
from .cancel import CancelToken
from .errors import InvalidHandleError

__all__ = ["Request", "HeadersArg", "BodyArg", "DEFAULT_TIMEOUT", "DEFAULT_READ_TIMEOUT"]

HeaderValue = Union[str, bytes, int]
#: Request headers: a mapping or an iterable of (name, value) pairs (repeats allowed).
HeadersArg = Optional[Union[Mapping[str, HeaderValue], Iterable[Tuple[str, HeaderValue]]]]
#: Request body: bytes-like (sent with Content-Length), str (UTF-8), a binary file-like
#: object with ``read(n)``, or an iterable of bytes chunks (both streamed, chunked).
BodyArg = Optional[Union[bytes, bytearray, memoryview, str, Any, Iterable[bytes]]]

#: The default time for getting a response head, in seconds (the library's default).
DEFAULT_TIMEOUT: float = 100.0
#: The default time each body read may wait, in seconds (the library's default).
DEFAULT_READ_TIMEOUT: float = 300.0


def _to_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(
        "request body chunks must be bytes-like or str, not {}".format(type(chunk).__name__)
    )


class BodyReader:
    """Adapts a file-like object or an iterable of chunks to sp_body_read_cb.

    The callback runs on the thread that called sp_request() (ctypes re-acquires the GIL
    for it). Any exception is stored and reported to the library as a non-zero return,
    which aborts the request with SP_E_BODY_SOURCE; the send then raises it as the cause of
    a BodySourceError.
    """

    def __init__(self, source: Any) -> None:
        self.error: Optional[BaseException] = None
        self._pending = b""
        self._read: Optional[Callable[[int], Any]] = None
        self._chunks: Optional[Iterator[Any]] = None
        if callable(getattr(source, "read", None)):
            self._read = source.read
        else:
            self._chunks = iter(source)
        # Keep the ctypes trampoline referenced as long as the request description.
        self.callback = n.sp_body_read_cb(self._callback)

    def _next(self, cap: int) -> bytes:
        while not self._pending:
            if self._read is not None:
                chunk = _to_bytes(self._read(cap))
                if not chunk:
                    return b""
            else:
                assert self._chunks is not None
                try:
                    chunk = _to_bytes(next(self._chunks))
                except StopIteration:
                    return b""
            self._pending = chunk  # empty chunks are skipped: 0 would mean end of body
        data, self._pending = self._pending[:cap], self._pending[cap:]
        return data

    def _callback(self, userdata: Any, buf: Optional[int], cap: int, out_n: Any) -> int:
        try:
            data = self._next(cap) if cap > 0 else b""
            if data:
                if not buf:
                    raise ValueError("the library passed a NULL body buffer")
                ctypes.memmove(buf, data, len(data))
            out_n[0] = len(data)
            return 0
        except BaseException as exc:  # noqa: B902 - must never unwind into the library
            self.error = exc
            return 1


def header_pairs(headers: HeadersArg) -> List[Tuple[Any, Any]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    pairs = []
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError(
                "headers must be a mapping or an iterable of (name, value) pairs"
            ) from None
        pairs.append((name, value))
    return pairs


def body_bytes(body: Any) -> Optional[bytes]:
    """The body as bytes if it is str or bytes-like, else None (a stream)."""
    if isinstance(body, str):
        return body.encode("utf-8")
    try:  # any bytes-like object (bytes, bytearray, memoryview, array, ...)
        return memoryview(body).tobytes()
    except TypeError:
        return None


def new_native(
    method: str,
    url: str,
    headers: List[Tuple[Any, Any]],
    data: Optional[bytes],
    timeout_ms: int,
    read_timeout_ms: int,
    keep_alive: Optional[bool],
    connection_group: Optional[str],
    retryable: bool,
    proxy: Optional[str] = None,
    pipelined: Optional[bool] = None,
) -> int:
    """Creates and fills an sp_http_request; returns its handle (freed on error)."""
    req = ctypes.c_void_p()
    n.sp_http_request_new(n.encode(method, "method"), n.encode(url, "url"), ctypes.byref(req))
    handle = n.out_handle(req, "sp_http_request_new")
    try:
        for name, value in headers:
            n.sp_http_request_add_header(
                handle,
                n.encode(name, "header name"),
                n.encode(
                    value if isinstance(value, (str, bytes, bytearray)) else str(value),
                    "header value",
                ),
            )
        if data is not None:
            n.sp_http_request_set_body(handle, data, len(data))
        if timeout_ms != 100_000:
            n.sp_http_request_set_timeout(handle, timeout_ms)
        if read_timeout_ms != 300_000:
            n.sp_http_request_set_read_timeout(handle, read_timeout_ms)
        if keep_alive is not None:
            n.sp_http_request_set_keep_alive(handle, 1 if keep_alive else 0)
        if connection_group:
            n.sp_http_request_set_connection_group(
                handle, n.encode(connection_group, "connection group")
            )
        if retryable:
            n.sp_http_request_set_retryable(handle, 1)
        if proxy is not None:
            n.sp_http_request_set_proxy(handle, n.encode(proxy, "proxy"))
        if pipelined is not None:
            n.sp_http_request_set_pipelined(handle, 1 if pipelined else 0)
    except BaseException:
        n.sp_http_request_free(handle)
        raise
    return handle


class Request(NativeObject):
    """A request description, built once and sent any number of times, from any thread,
    with :meth:`ServicePointManager.send` (or :meth:`send`)::

        req = servicepoint.Request("GET", url, headers={"Accept": "application/json"},
                                   timeout=5.0)
        for _ in range(1000):
            with manager.send(req) as resp:
                data = resp.read()

    It owns one native request description holding every option, so a send costs one
    library call (``sp_request``) whatever the options.

    Args:
        method: e.g. ``"GET"``.
        url: an absolute http(s) URL.
        headers: a mapping or an iterable of (name, value) pairs, sent in order.
            Host and User-Agent replace the library's; Content-Length and
            Transfer-Encoding are refused (the body sets them); ``Connection: close``
            turns keep-alive off.
        body: bytes-like or str (UTF-8), sent with Content-Length (reusable); or a binary
            file-like object (``read(n)``) or an iterable of bytes chunks, streamed with
            chunked transfer coding: such a request can be sent once, and is never retried
            automatically.
        timeout: seconds for getting the response head, including the wait for a
            connection, connecting and sending (default 100); None = no limit.
        read_timeout: seconds each body read may wait (default 300); None = no limit.
        keep_alive: False sends ``Connection: close`` and does not reuse the connection;
            None takes the manager's :attr:`~ServicePointManager.keep_alive_default`.
        connection_group: name of the connection group (its own pool); None/"" = default.
        retryable: mark a non-idempotent request (POST, PATCH) safe to resend once on a
            new connection when a reused connection fails before any response byte.
            Idempotent methods with a replayable body are always retried so.
        cancel_token: a :class:`~servicepoint.CancelToken` that sends of this request, and
            body reads of their responses, watch: canceling it (from any thread) ends them
            with CanceledError. Such a request is not ended by Ctrl-C through the interrupt
            token (see :mod:`servicepoint.cancel`).
        proxy: this request's own proxy (HttpWebRequest.Proxy): None for the manager's
            :attr:`~ServicePointManager.proxy` settings, ``""`` for a direct connection, else
            a proxy URL (the manager's bypass list still applies).
        pipelined: whether this request may be pipelined (HttpWebRequest.Pipelined): True
            even on a service point with :attr:`~ServicePoint.pipelining` off, False never,
            None (the default) as its service point says. The other conditions still apply
            (a POST or a streamed body is never pipelined).

    Durations are seconds (int or float, millisecond resolution, rounded up); negative
    ones raise OutOfRangeError. Close it (or use ``with``) to free the native description
    early; the garbage collector frees it otherwise.
    """

    def __init__(
        self,
        method: str,
        url: str,
        headers: HeadersArg = None,
        body: BodyArg = None,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        read_timeout: Optional[float] = DEFAULT_READ_TIMEOUT,
        keep_alive: Optional[bool] = None,
        connection_group: Optional[str] = None,
        retryable: bool = False,
        cancel_token: Optional[CancelToken] = None,
        proxy: Optional[str] = None,
        pipelined: Optional[bool] = None,
    ) -> None:
        self._handle: Optional[int] = None
        self._reader: Optional[BodyReader] = None
        self._used = False
        self._lock: Optional[threading.Lock] = None
        self._timeout_ms = n.to_ms(timeout, "timeout")
        self._read_timeout_ms = n.to_ms(read_timeout, "read_timeout")
        self._method = method
        self._url = url
        self._headers = header_pairs(headers)
        data = body_bytes(body) if body is not None else None
        self._body = data
        self._keep_alive = None if keep_alive is None else bool(keep_alive)
        self._connection_group = connection_group or ""
        self._retryable = bool(retryable)
        self._proxy = proxy
        self._pipelined = None if pipelined is None else bool(pipelined)
        handle = new_native(
            method, url, self._headers, data, self._timeout_ms, self._read_timeout_ms,
            self._keep_alive, self._connection_group, self._retryable, proxy,
            self._pipelined,
        )
        self._handle = handle
        # The CancelToken object (the description keeps the native token alive itself).
        self._cancel_token = cancel_token
        # Whether the description watches the process's interrupt token (set once, when
        # built or first sent on the main thread without a cancel token of its own).
        self._interruptible = False
        try:
            if cancel_token is not None:
                n.sp_http_request_set_cancel_token(handle, cancel_token._live())
            else:
                self._watch_interrupts()
        except BaseException:
            self.close()
            raise
        if body is not None and data is None:
            reader = BodyReader(body)
            n.sp_http_request_set_body_reader(handle, reader.callback, None)
            self._reader = reader
            self._lock = threading.Lock()

    def _free(self, handle: int) -> None:
        n.sp_http_request_free(handle)
        # The reader (and its trampoline) may go only once the description is freed.
        self._reader = None

    def _closed_error(self) -> InvalidHandleError:
        return InvalidHandleError(5, "the request is closed")

    def _watch_interrupts(self) -> bool:
        """On the main thread, makes the description watch the interrupt token (once), so
        that Ctrl-C can end its blocking sends there; returns whether it does."""
        if not self._interruptible and self._cancel_token is None:
            token = _cancel.interrupt_token()
            if token:
                n.sp_http_request_set_cancel_token(self._live(), token)
                self._interruptible = True
        return self._interruptible

    def _take_stream(self) -> Optional[BodyReader]:
        """For a streamed body: marks it used (a stream can be sent once) and returns its
        reader; None for a request without one."""
        if self._lock is None:
            return None
        with self._lock:
            if self._used:
                raise ValueError("a request with a streamed body can be sent only once")
            self._used = True
        return self._reader

    def send(self, manager: Any) -> Any:
        """Same as ``manager.send(self)``."""
        return manager.send(self)

    # --- what was asked for (read-only) --------------------------------------------------

    @property
    def method(self) -> str:
        return self._method

    @property
    def url(self) -> str:
        return self._url

    @property
    def headers(self) -> List[Tuple[Any, Any]]:
        """The header fields as given, as (name, value) pairs (a copy)."""
        return list(self._headers)

    @property
    def body(self) -> Optional[bytes]:
        """The body if it is bytes (or str), None if none or streamed."""
        return self._body

    @property
    def timeout(self) -> Optional[float]:
        """Seconds for getting the response head; None = no limit."""
        return n.from_ms(self._timeout_ms)

    @property
    def read_timeout(self) -> Optional[float]:
        """Seconds each body read may wait; None = no limit."""
        return n.from_ms(self._read_timeout_ms)

    @property
    def keep_alive(self) -> Optional[bool]:
        return self._keep_alive

    @property
    def connection_group(self) -> str:
        return self._connection_group

    @property
    def retryable(self) -> bool:
        return self._retryable

    @property
    def proxy(self) -> Optional[str]:
        """Its own proxy as given: None (the manager's settings), "" (direct) or a URL."""
        return self._proxy

    @property
    def pipelined(self) -> Optional[bool]:
        """Whether it may be pipelined as given: True, False, or None (as its service point
        says)."""
        return self._pipelined

    @property
    def cancel_token(self) -> Optional[CancelToken]:
        """The :class:`~servicepoint.CancelToken` given, or None."""
        return self._cancel_token

    def __repr__(self) -> str:
        return "<Request {} {}{}>".format(
            self._method, self._url, " closed" if self._handle is None else ""
        )
