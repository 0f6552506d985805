"""A calibrated, self-checking reader of fields OpenSSL has no getter for.

OpenSSL exposes no refcount getter and no "which cache holds this session"
getter, and the layout of ``struct ssl_session_st`` changes even inside patch
releases (OPENSSL_FACTS.md).  So nothing here is hard-coded: each offset is
*found* by doing something with a public function and diffing the bytes.

- ``references``: the single aligned 4-byte word that rises by exactly 1 per
  ``SSL_SESSION_up_ref`` and falls back per ``SSL_SESSION_free`` -- checked on
  two sessions and twice each.
- ``owner``: the single pointer-sized word that becomes the SSL_CTX's address
  on ``SSL_CTX_add_session`` and NULL again on ``SSL_CTX_remove_session``.
- ``prev``/``next``: the words that point at the neighbouring session after two
  sessions are added to one cache (OpenSSL keeps the newest at the head).

Every calibration is confirmed before use and :class:`CalibrationError` is
raised, naming what failed, if anything is ambiguous.  Callers must read only
sessions they hold a reference to (freed memory can look plausible).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import CalibrationError

__all__ = ["Offsets", "calibrate", "refcount_offset"]

_SCAN_BYTES = 4096  # far larger than any ssl_session_st seen (928 bytes on 4.0)


@dataclass(frozen=True)
class Offsets:
    references: int
    owner: int
    next: int
    prev: int
    scanned: int


def _usable(libc: Any, ffi: Any, p: Any) -> int:
    return min(_SCAN_BYTES, int(libc.malloc_usable_size(ffi.cast("void *", p))))


def _words32(ffi: Any, p: Any, n: int) -> tuple[int, ...]:
    return struct.unpack_from(f"<{n // 4}i", ffi.buffer(ffi.cast("char *", p), n)[:])


def _words64(ffi: Any, p: Any, n: int) -> tuple[int, ...]:
    return struct.unpack_from(f"<{n // 8}Q", ffi.buffer(ffi.cast("char *", p), n)[:])


def _refcount_candidates(
    lib: Any, ffi: Any, libc: Any, sess: Any, up: Callable[[], object] | None = None
) -> list[int]:
    """Words that follow two up_refs and two frees exactly.

    ``up`` takes one reference on ``sess`` (default ``SSL_SESSION_up_ref``; a
    library without it can pass ``SSL_get1_session`` on an SSL holding ``sess``).
    Frees happen only once a word has risen by 2: if up_ref did not work, freeing
    would destroy the session under us.
    """
    take = up if up is not None else (lambda: lib.SSL_SESSION_up_ref(sess))
    n = _usable(libc, ffi, sess)
    w0 = _words32(ffi, sess, n)
    take()
    w1 = _words32(ffi, sess, n)
    take()
    w2 = _words32(ffi, sess, n)
    rose = [i for i in range(len(w0)) if w1[i] == w0[i] + 1 and w2[i] == w0[i] + 2]
    if not rose:  # up_ref changed nothing we can see: do not free what we cannot count
        return []
    lib.SSL_SESSION_free(sess)
    w3 = _words32(ffi, sess, n)
    lib.SSL_SESSION_free(sess)
    w4 = _words32(ffi, sess, n)
    return [i * 4 for i in rose if w3[i] == w0[i] + 1 and w4[i] == w0[i]]


def refcount_offset(lib: Any, ffi: Any, libc: Any, sessions: list[tuple[Any, Callable[[], object]]]) -> int:
    """The one word that counts references on every ``(session, up)`` pair given.

    For libraries without ``SSL_SESSION_up_ref``/``SSL_SESSION_new`` (pyOpenSSL's
    OpenSSL): the caller brings live sessions and a way to take a reference.
    """
    found = [set(_refcount_candidates(lib, ffi, libc, s, up)) for s, up in sessions]
    common = sorted(set.intersection(*found)) if found else []
    if len(common) != 1:
        raise CalibrationError(
            f"cannot locate SSL_SESSION.references: candidates {[sorted(f) for f in found]} "
            "(expected exactly one word that follows SSL_get1_session/SSL_SESSION_free)"
        )
    return common[0]


def _new_session(lib: Any, ffi: Any, sid: bytes) -> Any:
    s = lib.SSL_SESSION_new()
    if s == ffi.NULL:
        raise CalibrationError("SSL_SESSION_new failed during calibration")
    if lib.SSL_SESSION_set1_id(s, sid, len(sid)) != 1:
        raise CalibrationError("SSL_SESSION_set1_id failed during calibration")
    return s


def calibrate(lib: Any, ffi: Any, libc: Any) -> Offsets:
    """Find and confirm every offset on this library, or raise CalibrationError."""

    def addr(p: Any) -> int:
        return int(ffi.cast("uintptr_t", p))

    ctx = lib.SSL_CTX_new(lib.TLS_server_method())
    if ctx == ffi.NULL:
        raise CalibrationError("SSL_CTX_new failed during calibration")
    made: list[Any] = []
    try:
        a, b, c = (_new_session(lib, ffi, bytes([i]) * 32) for i in (1, 2, 3))
        made += [a, b, c]
        # --- references ------------------------------------------------------
        ca, cb = (_refcount_candidates(lib, ffi, libc, s) for s in (a, b))
        common = sorted(set(ca) & set(cb))
        if len(common) != 1:
            raise CalibrationError(
                f"cannot locate SSL_SESSION.references: candidates {ca} and {cb} "
                "(expected exactly one word that follows up_ref/free)"
            )
        ref_off = common[0]

        def refs(p: Any) -> int:
            return int(ffi.cast("int *", ffi.cast("char *", p) + ref_off)[0])

        if refs(a) != 1 or refs(b) != 1:
            raise CalibrationError(f"SSL_SESSION_new should have refcount 1, read {refs(a)}/{refs(b)}")
        # --- owner ------------------------------------------------------------
        n = _usable(libc, ffi, a)
        before = _words64(ffi, a, n)
        if lib.SSL_CTX_add_session(ctx, a) != 1:
            raise CalibrationError("SSL_CTX_add_session failed during calibration")
        after = _words64(ffi, a, n)
        owner = [i * 8 for i in range(len(after)) if after[i] == addr(ctx) and before[i] != addr(ctx)]
        if len(owner) != 1:
            raise CalibrationError(f"cannot locate SSL_SESSION.owner: candidates {owner}")
        owner_off = owner[0]
        if refs(a) != 2:
            raise CalibrationError(
                f"a cached session should have refcount 2 (SSL_CTX_add_session), read {refs(a)}"
            )
        # --- next / prev ------------------------------------------------------
        lib.SSL_CTX_add_session(ctx, b)  # b is newer (same expiry: goes to the head)
        wa, wb = _words64(ffi, a, n), _words64(ffi, b, n)
        nxt = [i * 8 for i in range(len(wb)) if wb[i] == addr(a)]
        prv = [i * 8 for i in range(len(wa)) if wa[i] == addr(b)]
        if len(nxt) != 1 or len(prv) != 1:
            raise CalibrationError(f"cannot locate SSL_SESSION.next/prev: candidates {nxt} / {prv}")
        offs = Offsets(ref_off, owner_off, nxt[0], prv[0], n)
        # --- confirm with a third session and removals ------------------------
        lib.SSL_CTX_add_session(ctx, c)
        if _ptr(ffi, c, offs.next) != addr(b) or _ptr(ffi, b, offs.prev) != addr(c):
            raise CalibrationError("next/prev links did not follow a third SSL_CTX_add_session")
        if lib.SSL_CTX_ctrl(ctx, 20, 0, ffi.NULL) != 3:  # SSL_CTRL_SESS_NUMBER
            raise CalibrationError("SSL_CTX_sess_number disagrees with three additions")
        lib.SSL_CTX_remove_session(ctx, b)
        if _ptr(ffi, b, owner_off) != 0 or _ptr(ffi, c, offs.next) != addr(a) or refs(b) != 1:
            raise CalibrationError("owner/links/refcount did not follow SSL_CTX_remove_session")
        if lib.SSL_SESSION_is_resumable(b) != 0:
            raise CalibrationError("SSL_CTX_remove_session should mark the session not resumable")
        return offs
    finally:
        lib.SSL_CTX_free(ctx)  # flushes whatever is still cached
        for s in made:
            lib.SSL_SESSION_free(s)


def _ptr(ffi: Any, p: Any, off: int) -> int:
    return int(ffi.cast("uintptr_t *", ffi.cast("char *", p) + off)[0])
