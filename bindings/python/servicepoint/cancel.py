"""Cancellation of blocking calls: the :class:`CancelToken` (explicit, from another thread)
and the interrupt token that lets Ctrl-C end a blocking call on the main thread at once.

Ctrl-C: Python runs signal handlers only between bytecodes, so a thread blocked in the
library would see its KeyboardInterrupt only once the call returns (up to the request's
timeout). While a blocking call (a send, a body read) runs on the main thread, the write end
of the interrupt token's pipe is installed with :func:`signal.set_wakeup_fd`: the C-level
signal handler writes a byte to it, which cancels the call (SP_E_CANCELED, the connection
closed, the pool left usable); back in Python the signal's handler runs and raises
KeyboardInterrupt. Skipped (behaviour as before) off the main thread, while an asyncio loop
runs in the thread, and when someone else has set a wakeup descriptor.
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import threading
from typing import Any, Optional

from . import _native as n
from ._handle import NativeObject
from .errors import InvalidHandleError

__all__ = ["CancelToken", "interrupt_blocking_calls"]


class CancelToken(NativeObject):
    """Cancels the requests and body reads that watch it, from any thread (the
    ``HttpWebRequest.Abort`` case): pass it as ``cancel_token=`` to a request; :meth:`cancel`
    then ends the blocking send (or a body read of its response) at once with
    :class:`~servicepoint.CanceledError` (a queued request leaves the queue unsent, one in
    flight closes its connection). Asynchronous requests watch it too.

    The token stays canceled (later requests fail at once) until :meth:`reset`. Close it (or
    let the garbage collector do it) to free the native token; requests that use it keep
    what they need.
    """

    def __init__(self) -> None:
        out = ctypes.c_void_p()
        n.sp_cancel_token_new(ctypes.byref(out))
        self._handle: Optional[int] = n.out_handle(out, "sp_cancel_token_new")

    def _free(self, handle: int) -> None:
        n.sp_cancel_token_free(handle)

    def _closed_error(self) -> InvalidHandleError:
        return InvalidHandleError(5, "the cancel token is closed")

    def cancel(self) -> None:
        """Cancels every request and body read watching the token, now and until
        :meth:`reset`. Safe from any thread."""
        n.sp_cancel_token_cancel(self._live())

    def reset(self) -> None:
        """Makes the token usable again: requests started from now on are not canceled."""
        n.sp_cancel_token_reset(self._live())

    @property
    def canceled(self) -> bool:
        """True once :meth:`cancel` was called (until :meth:`reset`)."""
        return bool(self._get(n.sp_cancel_token_is_canceled))

    def __repr__(self) -> str:
        if self._handle is None:
            return "<CancelToken closed>"
        return "<CancelToken{}>".format(" canceled" if self.canceled else "")


# --- Ctrl-C during blocking calls on the main thread ---------------------------------------

_MAIN_THREAD = threading.main_thread().ident
_get_running_loop = asyncio._get_running_loop


class _Interrupt:
    """The process's interrupt token (created on first use) and its wakeup descriptor."""

    handle: int = 0
    fd: int = -1
    failed = False
    enabled = True


def interrupt_blocking_calls(enabled: bool) -> bool:
    """Turns on (the default) or off the Ctrl-C mechanism for blocking calls on the main
    thread (each armed call costs two ``signal.set_wakeup_fd`` calls, about 2 us). Off,
    a signal is handled only when the blocking call returns. Returns the previous setting."""
    previous, _Interrupt.enabled = _Interrupt.enabled, bool(enabled)
    return previous


def interrupt_token() -> int:
    """The interrupt token's handle for a description sent from the main thread, or 0 when
    not on the main thread (or no token could be made)."""
    if threading.get_ident() != _MAIN_THREAD or _Interrupt.failed:
        return 0
    if not _Interrupt.handle:
        try:
            out = ctypes.c_void_p()
            n.sp_cancel_token_new(ctypes.byref(out))
            handle = n.out_handle(out, "sp_cancel_token_new")
            fd = ctypes.c_int32()
            n.sp_cancel_token_wakeup_fd(handle, ctypes.byref(fd))
        except Exception:
            _Interrupt.failed = True
            return 0
        _Interrupt.fd = fd.value
        _Interrupt.handle = handle
    return _Interrupt.handle


def arm() -> bool:
    """Installs the interrupt token's wakeup descriptor for one blocking call; False (nothing
    changed) off the main thread, while an asyncio loop runs here, or when another wakeup
    descriptor is set. A True return must be followed by :func:`disarm`."""
    if (
        threading.get_ident() != _MAIN_THREAD
        or _get_running_loop() is not None
        or not _Interrupt.enabled
    ):
        return False
    if not _Interrupt.handle and not interrupt_token():
        return False
    try:
        old = signal.set_wakeup_fd(_Interrupt.fd, warn_on_full_buffer=False)
    except (ValueError, OSError):
        return False
    if old != -1 and old != _Interrupt.fd:  # ours: left by an interrupted arm/call
        # Someone else's (their warn_on_full_buffer setting cannot be read back; False is
        # what asyncio and trio use).
        signal.set_wakeup_fd(old, warn_on_full_buffer=False)
        return False
    return True


def disarm(failed: bool = False) -> None:
    """Removes the wakeup descriptor again. After a failed call (``failed``: a CanceledError,
    or the KeyboardInterrupt of a signal that arrived as the call returned), resets the
    token if a signal canceled it, so the next call is not canceled. Not checked after a
    successful call (a poll(2) per call): a signal that arrives then raises in the caller's
    frame (the failed path) unless its handler does not raise; its byte then makes the next
    armed call fail at once with CanceledError (which resets the token)."""
    signal.set_wakeup_fd(-1)
    if failed:
        flag = ctypes.c_int32()
        n.sp_cancel_token_is_canceled(_Interrupt.handle, ctypes.byref(flag))
        if flag.value:
            n.sp_cancel_token_reset(_Interrupt.handle)


def call(func: Any, *args: Any) -> Any:
    """``func(*args)`` (a blocking library call) with Ctrl-C able to end it on the main
    thread. A cancel caused by a signal whose handler raised (KeyboardInterrupt) propagates
    that exception; if the handler did not raise, the library's CanceledError does."""
    if not arm():
        return func(*args)
    try:
        # A signal's handler runs (and KeyboardInterrupt is raised) at the first bytecode
        # after the C call returns: inside the errcheck, or just below.
        result = func(*args)
    except BaseException:
        disarm(True)
        raise
    disarm()
    return result
