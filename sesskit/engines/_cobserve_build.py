"""Builds :mod:`sesskit.engines._cobserve` (cffi API mode) from ``_cobserve.c``.

Used by ``setup.py`` at install time.  The extension is optional: where it cannot
be compiled (no C compiler), the libssl engine observes in Python, as before
(:func:`sesskit.engines.libssl.helper_status` says which).  It links against
no OpenSSL and needs no OpenSSL headers (see the C file).
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CDEF = (HERE / "_cobserve.h").read_text()  # the helper's types and functions, shared with the C

ffi = FFI()
ffi.cdef(CDEF)
ffi.set_source(
    "sesskit.engines._cobserve",
    (HERE / "_cobserve.c").read_text(),
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2"],
)

if __name__ == "__main__":  # a quick local build: python sesskit/engines/_cobserve_build.py
    ffi.compile(tmpdir=str(HERE.parents[1] / "build" / "cffi"), verbose=True)
