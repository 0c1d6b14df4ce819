"""Routing of the library's log messages to the :mod:`logging` logger ``servicepoint``.

One ctypes callback serves every manager (it lives as long as the module, so the library can
never call a freed trampoline). A manager's native level is OFF unless set: then the library
does not even format the messages, so logging costs nothing when off.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from typing import Any, Optional, Union

from . import _native as n

#: The logger the library's messages go to.
logger = logging.getLogger("servicepoint")

_TO_PY = {
    n.SP_LOG_ERROR: logging.ERROR,
    n.SP_LOG_WARN: logging.WARNING,
    n.SP_LOG_INFO: logging.INFO,
    n.SP_LOG_DEBUG: logging.DEBUG,
}
_NATIVE_LEVELS = (n.SP_LOG_DEBUG, n.SP_LOG_INFO, n.SP_LOG_WARN, n.SP_LOG_ERROR)

LevelArg = Optional[Union[int, str]]


def _deliver(_userdata: Any, level: int, message: Optional[bytes]) -> None:
    # Runs on the thread whose library call made the event, or on the library's idle reaper
    # thread; nothing may escape into the library.
    try:
        logger.log(_TO_PY.get(level, logging.DEBUG), (message or b"").decode("utf-8", "replace"))
    except BaseException:  # noqa: B902
        pass


CALLBACK = n.sp_log_cb(_deliver)
NO_CALLBACK = n.sp_log_cb()


def py_level(level: LevelArg) -> Optional[int]:
    """A logging level (int or name such as ``"DEBUG"``) or None (off), checked."""
    if level is None:
        return None
    if isinstance(level, str):
        value = logging.getLevelName(level.upper())
        if not isinstance(value, int):
            raise ValueError("unknown logging level {!r}".format(level))
        return value
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError("log level must be a logging level, a level name or None")
    return level


def to_native(level: Optional[int]) -> int:
    """The native level that delivers every message at ``level`` or more severe."""
    if level is None:
        return n.SP_LOG_OFF
    for native in _NATIVE_LEVELS:  # most verbose first
        if _TO_PY[native] >= level:
            return native
    return n.SP_LOG_OFF  # above ERROR (CRITICAL): the library has nothing that severe


def from_native(native: int) -> Optional[int]:
    return _TO_PY.get(native)


def level_from_logger() -> Optional[int]:
    """The most verbose level the ``servicepoint`` logger would emit, or None if logging is
    not configured (no handler anywhere up its hierarchy) or it is disabled for all levels."""
    if not logger.hasHandlers():
        return None
    for native in _NATIVE_LEVELS:
        if logger.isEnabledFor(_TO_PY[native]):
            return _TO_PY[native]
    return None


# Managers with logging on: turned off at interpreter exit, so a library thread (the idle
# reaper) never calls into a finalizing interpreter.
LOGGING: "weakref.WeakSet[Any]" = weakref.WeakSet()


@atexit.register
def _all_off() -> None:
    for manager in list(LOGGING):
        try:
            manager.set_log_level(None)
        except Exception:  # pragma: no cover
            pass
