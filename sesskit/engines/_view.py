"""A typed window on the calibrated fields of a C object: one cast per object.

OpenSSL has no getter for a session's refcount or cache owner, so the real
engines read them at offsets the probe calibrated.  Instead of one pointer
per field, a :class:`View` declares a C struct with exactly those fields at
exactly those offsets (padding in between), so a session needs a single
cast and its fields are read by name.  The view is declared in its own cffi
FFI, never in the one bound to an OpenSSL copy, and checked with
``offsetof`` before use.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from ..errors import CalibrationError

__all__ = ["View"]

_names = itertools.count(1)


class View:
    """``fields``: name -> (offset, C type), e.g. ``{"references": (720, "int")}``."""

    def __init__(self, fields: Mapping[str, tuple[int, str]]) -> None:
        from cffi import FFI

        ffi = FFI()
        name = f"sesskit_view_{next(_names)}"
        parts: list[str] = []
        at = 0
        for i, (field, (offset, ctype)) in enumerate(sorted(fields.items(), key=lambda kv: kv[1][0])):
            if offset < at:
                raise CalibrationError(f"calibrated field {field} at {offset} overlaps the one before it")
            if offset > at:
                parts.append(f"char _pad{i}[{offset - at}];")
            parts.append(f"{ctype} {field};")
            at = offset + ffi.sizeof(ctype)
        ffi.cdef(f"struct {name} {{ {' '.join(parts)} }};")
        for field, (offset, _) in fields.items():
            if ffi.offsetof(f"struct {name}", field) != offset:
                raise CalibrationError(f"calibrated field {field} at {offset} is not aligned for its type")
        self._ffi = ffi
        self._type = ffi.typeof(f"struct {name} *")
        self._cast = ffi._backend.cast  # FFI.cast, without its type-string parsing: runs per session

    def at(self, pointer: Any) -> Any:
        """The fields of the object at ``pointer`` (a cdata pointer of any FFI, or an address)."""
        return self._cast(self._type, pointer)
