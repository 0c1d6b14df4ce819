"""The base of the objects that own one library handle (manager, service point, response):
the lifetime rules in one place (the handle is freed exactly once, by :meth:`close`, a
``with`` block or the garbage collector) and the int32 accessors of the C ABI."""

from __future__ import annotations

import ctypes
from typing import Any, Optional, TypeVar

from . import _native as n
from .errors import InvalidHandleError, ServicePointError

_Self = TypeVar("_Self", bound="NativeObject")


class NativeObject:
    """Owns ``self._handle`` (None once closed). Subclasses say how to free it."""

    _handle: Optional[int]

    def _free(self, handle: int) -> None:
        raise NotImplementedError

    def _closed_error(self) -> ServicePointError:
        """What using the object after :meth:`close` raises."""
        return InvalidHandleError(5, "the {} is closed".format(type(self).__name__))

    def _detach(self) -> None:
        """Drops the references the object keeps while open (called by :meth:`close`)."""

    def _live(self) -> int:
        handle = self._handle
        if handle is None:
            raise self._closed_error()
        return handle

    def _get(self, func: Any) -> int:
        value = ctypes.c_int32()
        func(self._live(), ctypes.byref(value))
        return value.value

    def _set(self, func: Any, value: Any, what: str) -> None:
        func(self._live(), n.to_i32(value, what))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._handle is None

    def close(self) -> None:
        """Frees the native object. Safe to call twice."""
        handle, self._handle = self._handle, None
        self._detach()
        if handle:
            self._free(handle)

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Guarded: during interpreter shutdown module globals may already be gone.
        try:
            handle, self._handle = self.__dict__.get("_handle"), None
            if handle:
                self._free(handle)
        except Exception:  # pragma: no cover
            pass
