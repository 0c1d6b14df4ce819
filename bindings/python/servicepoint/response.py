"""The :class:`Response` of a request: head, streamed body, trailers."""

from __future__ import annotations

import ctypes
from typing import Any, AsyncIterator, Iterator, List, Optional, Tuple

from . import _aio
from . import _native as n
from . import cancel as _cancel
from ._handle import NativeObject
from .errors import InvalidHandleError, NotFoundError

__all__ = ["Response", "DEFAULT_CHUNK_SIZE"]

#: Default chunk size of ``for chunk in response`` / :meth:`Response.iter_chunks`.
DEFAULT_CHUNK_SIZE = 64 * 1024


class Response(NativeObject):
    """A response: status, headers (wire order, repeats kept) and a body read as a stream.

    The connection that carries the response stays taken (it counts against the service
    point's connection limit) until the body has been read to the end or the response is
    closed, so close responses promptly, best with ``with``::

        with manager.request("GET", url) as resp:
            data = resp.read()

    :meth:`close` frees the native response: a fully read body has already returned the
    connection to the pool; a short unread remainder is drained so the connection can be
    reused, a long one closes the connection. Closing twice is safe. The head (status,
    reason, headers) stays readable after :meth:`close`, and so do the connection details
    (connection_id, connection_reused, local_port, retried) and the TLS details
    (tls_version, tls_cipher_suite, tls_resumed) once one of their group was read before
    it; body reads and trailers do not.

    Instances are created by :meth:`ServicePointManager.request`, not directly. A response
    may move between threads, but should not be read from two threads at once.
    """

    def __init__(self, handle: int, owner: Any = None) -> None:
        self._handle: Optional[int] = handle
        # Keeps the manager object alive while the response is (its finalizer would free it).
        self._owner = owner
        self._eof = False
        self._headers: Optional[List[Tuple[str, str]]] = None
        self._conn: Optional[Tuple[int, bool, int, bool]] = None
        self._tls: Optional[Tuple[Optional[str], Optional[str], Optional[bool]]] = None
        # True when the body's reads watch the interrupt token (sent from the main thread):
        # Ctrl-C then ends a blocking read at once.
        self._interruptible = False
        try:
            # One call copies the whole head (it stays readable after close); it is parsed
            # on first use. Connection details are fetched when first asked for.
            text, length = ctypes.c_char_p(), ctypes.c_size_t()
            n.sp_response_head(handle, ctypes.byref(text), ctypes.byref(length))
            self._head = ctypes.string_at(text, length.value)
            line = self._head[: self._head.index(b"\r\n")]
            version, status, reason = (line.split(b" ", 2) + [b""])[:3]
            self._status = int(status)
            self._http_version = 10 if version == b"HTTP/1.0" else 11
            self._reason = n.decode_field(reason)
        except BaseException:
            self.close()
            raise

    def _fields(self) -> List[Tuple[str, str]]:
        if self._headers is None:
            lines = self._head.split(b"\r\n")[1:]
            fields = []
            for line in lines:
                if not line:
                    break
                name, _, value = line.partition(b": ")
                fields.append((n.decode_field(name), n.decode_field(value)))
            self._headers = fields
        return self._headers

    def _connection(self) -> Tuple[int, bool, int, bool]:
        if self._conn is None:
            if self._handle is None:
                raise InvalidHandleError(
                    5, "the response was closed before its connection details were read"
                )
            conn_id = ctypes.c_uint64()
            n.sp_response_connection_id(self._handle, ctypes.byref(conn_id))
            self._conn = (
                conn_id.value,
                bool(self._get(n.sp_response_connection_reused)),
                self._get(n.sp_response_local_port),
                bool(self._get(n.sp_response_retried)),
            )
        return self._conn

    def _tls_facts(self) -> Tuple[Optional[str], Optional[str], Optional[bool]]:
        if self._tls is None:
            if self._handle is None:
                raise InvalidHandleError(
                    5, "the response was closed before its TLS details were read"
                )
            try:
                version = self._get(n.sp_response_tls_version)
            except NotFoundError:
                self._tls = (None, None, None)  # plain http
                return self._tls
            suite = ctypes.c_char_p()
            n.sp_response_tls_cipher_suite(self._handle, ctypes.byref(suite))
            self._tls = (
                "{}.{}".format(version // 10, version % 10),
                (suite.value or b"").decode("ascii"),
                bool(self._get(n.sp_response_tls_resumed)),
            )
        return self._tls

    # --- head ----------------------------------------------------------------------------

    def _free(self, handle: int) -> None:
        n.sp_response_free(handle)

    def _closed_error(self) -> InvalidHandleError:
        return InvalidHandleError(5, "the response is closed")

    def _detach(self) -> None:
        self._owner = None

    @property
    def status(self) -> int:
        """The status code, e.g. 200."""
        return self._status

    @property
    def reason(self) -> str:
        """The reason phrase, e.g. ``"OK"`` (may be empty)."""
        return self._reason

    @property
    def http_version(self) -> str:
        """The response's HTTP version: ``"1.0"`` or ``"1.1"``."""
        return "{}.{}".format(self._http_version // 10, self._http_version % 10)

    @property
    def headers(self) -> List[Tuple[str, str]]:
        """The header fields as (name, value) pairs in wire order, names as received,
        repeats kept (a copy)."""
        return list(self._fields())

    def header(self, name: str) -> Optional[str]:
        """The first value of header field ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self._fields():
            if key.lower() == wanted:
                return value
        return None

    def header_all(self, name: str) -> List[str]:
        """Every value of header field ``name`` (case-insensitive), in wire order."""
        wanted = name.lower()
        return [value for key, value in self._fields() if key.lower() == wanted]

    @property
    def connection_id(self) -> int:
        """Id of the connection that served the response (unique in the process; equal ids
        mean a reused connection)."""
        return self._connection()[0]

    @property
    def connection_reused(self) -> bool:
        """True if the response came on a reused (kept-alive) connection."""
        return self._connection()[1]

    @property
    def local_port(self) -> int:
        """The client-side port of the connection (the peer port the server saw)."""
        return self._connection()[2]

    @property
    def retried(self) -> bool:
        """True if the request was sent a second time, on a new connection, after a reused
        connection turned out stale (the server closed it as the request arrived)."""
        return self._connection()[3]

    @property
    def tls_version(self) -> Optional[str]:
        """The TLS version the response's connection negotiated, ``"1.2"`` or ``"1.3"``
        (as ``ServicePointManager.min_tls_version`` spells them); None for http."""
        return self._tls_facts()[0]

    @property
    def tls_cipher_suite(self) -> Optional[str]:
        """The negotiated cipher suite by its IANA name, e.g. ``"TLS_AES_256_GCM_SHA384"``;
        None for http."""
        return self._tls_facts()[1]

    @property
    def tls_resumed(self) -> Optional[bool]:
        """True if the connection's TLS handshake resumed an earlier session, False for a
        full handshake; None for http."""
        return self._tls_facts()[2]

    def trailer(self, name: str) -> Optional[str]:
        """The first value of trailer field ``name`` of a chunked body (case-insensitive),
        or None. Trailers are known once the body has been read to the end."""
        value = ctypes.c_char_p()
        try:
            n.sp_response_trailer(
                self._live(), n.encode(name, "trailer name"), ctypes.byref(value)
            )
        except NotFoundError:
            return None
        return n.decode_field(value.value)

    # --- body ----------------------------------------------------------------------------

    def _read_into(self, address: int, size: int) -> int:
        """One sp_response_read into ``size`` bytes at ``address``; 0 means end of body."""
        if self._eof or size <= 0:
            return 0
        got = ctypes.c_size_t()
        if self._interruptible:
            _cancel.call(n.sp_response_read, self._live(), address, size, ctypes.byref(got))
        else:
            n.sp_response_read(self._live(), address, size, ctypes.byref(got))
        if got.value == 0:
            self._eof = True
        return got.value

    def read(self, size: int = -1) -> bytes:
        """Reads the body.

        ``size < 0`` (the default) reads everything up to the end of the body.
        ``size >= 0`` reads until ``size`` bytes or the end of the body, whichever comes
        first; ``b""`` means the end. Each wait is bounded by the request's read timeout
        (:class:`~servicepoint.errors.ReadTimeoutError`).
        """
        self._live()
        if size is None or size < 0:
            if self._eof:
                return b""
            data = ctypes.c_void_p()
            length = ctypes.c_size_t()
            if self._interruptible:
                _cancel.call(
                    n.sp_response_read_all, self._live(), ctypes.byref(data), ctypes.byref(length)
                )
            else:
                n.sp_response_read_all(self._live(), ctypes.byref(data), ctypes.byref(length))
            self._eof = True
            if not length.value or not data.value:
                return b""
            return ctypes.string_at(data.value, length.value)
        if size == 0:
            return b""
        buf = ctypes.create_string_buffer(size)
        base = ctypes.addressof(buf)
        filled = 0
        while filled < size:
            got = self._read_into(base + filled, size - filled)
            if got == 0:
                break
            filled += got
        return ctypes.string_at(base, filled)

    def read1(self, size: int = DEFAULT_CHUNK_SIZE) -> bytes:
        """Reads at most ``size`` bytes with a single wait: whatever has arrived (at least
        one byte), or ``b""`` at the end of the body."""
        if size is None or size < 0:
            size = DEFAULT_CHUNK_SIZE
        self._live()
        if size == 0:
            return b""
        buf = ctypes.create_string_buffer(size)
        got = self._read_into(ctypes.addressof(buf), size)
        return ctypes.string_at(buf, got)

    def readinto(self, buffer: Any) -> int:
        """Reads into a writable bytes-like object with a single wait; returns the number
        of bytes stored, 0 at the end of the body."""
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise TypeError("readinto() needs a writable buffer")
        self._live()
        if len(view) == 0:
            return 0
        array = (ctypes.c_char * len(view)).from_buffer(view)
        try:
            return self._read_into(ctypes.addressof(array), len(view))
        finally:
            del array
            view.release()

    def iter_chunks(self, size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Yields the body in chunks of at most ``size`` bytes as they arrive, until the
        end of the body."""
        if size <= 0:
            raise ValueError("chunk size must be > 0")
        while True:
            chunk = self.read1(size)
            if not chunk:
                return
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        return self.iter_chunks(DEFAULT_CHUNK_SIZE)

    # --- body, asyncio ------------------------------------------------------------------

    async def aread1(self, size: int = DEFAULT_CHUNK_SIZE) -> bytes:
        """:meth:`read1` for asyncio: at most ``size`` bytes, whatever has arrived (at least
        one byte), or ``b""`` at the end of the body, without blocking the event loop.
        Cancelling the awaiting task cancels the read (the connection is then closed)."""
        if size is None or size < 0:
            size = DEFAULT_CHUNK_SIZE
        handle = self._live()
        if size == 0 or self._eof:
            return b""
        chunk = self._arrived(handle, size)
        if chunk is not None:
            return chunk
        chunk = await _aio.read(self, handle, size)
        if not chunk:
            self._eof = True
        return chunk

    def _arrived(self, handle: int, size: int) -> Optional[bytes]:
        """Up to ``size`` body bytes that have already arrived (b"" at the end), or None
        when none have: then an asynchronous read waits for them."""
        chunk, done = _aio.read_now(handle, size)
        if done:
            self._eof = True
        return chunk if chunk or done else None

    async def aread(self, size: int = -1) -> bytes:
        """:meth:`read` for asyncio: ``size < 0`` (the default) reads up to the end of the
        body, ``size >= 0`` until ``size`` bytes or the end; ``b""`` means the end."""
        self._live()
        parts: List[bytes] = []
        if size is None or size < 0:
            while True:
                chunk = await self.aread1(DEFAULT_CHUNK_SIZE)
                if chunk:
                    parts.append(chunk)
                if self._eof:
                    return b"".join(parts)
        left = size
        while left > 0:
            chunk = await self.aread1(left)
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    async def aiter_chunks(self, size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """:meth:`iter_chunks` for asyncio (``async for chunk in resp.aiter_chunks()``)."""
        if size <= 0:
            raise ValueError("chunk size must be > 0")
        while True:
            chunk = await self.aread1(size)
            if not chunk:
                return
            yield chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.aiter_chunks(DEFAULT_CHUNK_SIZE)

    async def __aenter__(self) -> "Response":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        conn = self._conn
        return "<Response [{} {}]{}{}{}>".format(
            self._status,
            self._reason,
            " connection={}".format(conn[0]) if conn else "",
            " reused" if conn and conn[1] else "",
            " closed" if self._handle is None else "",
        )
