"""pyOpenSSL's OpenSSL: its cffi ``lib``, and a probe calibrated by real handshakes.

pyOpenSSL runs on the OpenSSL statically linked into cryptography's
``_rust.abi3.so`` (OPENSSL_FACTS.md, "Two OpenSSL copies in one process").
Its cffi ``lib`` lacks ``SSL_SESSION_up_ref``, ``SSL_SESSION_new``,
``SSL_CTX_add_session``, ``SSL_CTX_ctrl``, ``SSL_SESSION_is_resumable`` and
``SSL_SESSION_get/set_time``, so :func:`._probe.calibrate` cannot run on it.
Instead every field is found by doing real handshakes between calibration
contexts and diffing the bytes:

- ``references``: the word that follows ``SSL_get1_session`` / ``SSL_SESSION_free``
  (:func:`._probe.refcount_offset`), on a client and a server session;
- ``owner``: the word equal to the server SSL_CTX's address on a cached
  session and 0 on an uncached one; ``prev``/``next`` from two cached sessions;
  the cache head/tail inside the SSL_CTX are where a lone session's links point;
- ``not_resumable``: the int that goes 0 -> 1 when a dirty ``SSL_free`` removes
  a cached session (checked on two sessions);
- ``session_id_length`` / ``ticklen`` / ``time`` / ``timeout`` / ``calc_timeout``:
  the words equal to what ``i2d_SSL_SESSION`` (public DER) says, on sessions
  that differ in them;
- ``stats``: the 11-int block whose accept/connect/hit/miss/timeout/cache_full
  words count exactly the handshakes, resumptions, misses, expiries and
  evictions calibration caused; ``session_cache_size``: the size_t holding the
  default 20480 that, set to 2, makes the cache keep 1 and count cache_full.

Everything is confirmed by behaviour before use; :class:`CalibrationError`
names what failed.  Nothing here touches the system libssl: no pointer
crosses between the two copies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import CalibrationError, SesskitError
from ._probe import _ptr, _usable, _words32, _words64, refcount_offset

__all__ = ["STATS", "PyOffsets", "PyOpenSSLLib", "load"]

# struct ssl_ctx_st.stats, in the order of every OpenSSL from 1.1.1 to 4.0 (ssl/ssl_local.h)
STATS = (
    "connect",
    "connect_renegotiate",
    "connect_good",
    "accept",
    "accept_renegotiate",
    "accept_good",
    "misses",
    "timeouts",
    "cache_full",
    "hits",
    "cb_hits",
)
_STAT = {name: 4 * i for i, name in enumerate(STATS)}
DEFAULT_CACHE_SIZE = 20480
SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE = 2, 3
LIBC_CDEF = "size_t malloc_usable_size(void *ptr);"


@dataclass(frozen=True)
class PyOffsets:
    """Byte offsets found by calibration (session fields, then SSL_CTX fields)."""

    references: int
    owner: int
    next: int
    prev: int
    not_resumable: int
    session_id_length: int
    ticklen: int
    time: int
    timeout: int
    calc_timeout: int
    time_unit: int  # 10**9 for OSSL_TIME (3.3+), 1 for time_t
    ctx_head: int
    ctx_tail: int
    ctx_cache_size: int
    ctx_stats: int


@dataclass(frozen=True)
class PyOpenSSLLib:
    ffi: Any
    lib: Any
    libc: Any
    SSL: Any  # the OpenSSL.SSL module
    version: str
    pyopenssl_version: str
    offsets: PyOffsets
    view: Any  # a _view.View of ssl_session_st: the fields the engine reads


_lock = threading.Lock()
_loaded: PyOpenSSLLib | None = None


def session_view(offs: PyOffsets) -> Any:
    """The session fields the engine reads, at their calibrated offsets."""
    from ._view import View

    return View(
        {
            "references": (offs.references, "int"),
            "owner": (offs.owner, "uintptr_t"),
            "not_resumable": (offs.not_resumable, "int"),
            "session_id_length": (offs.session_id_length, "size_t"),
            "ticklen": (offs.ticklen, "size_t"),
            "time": (offs.time, "uint64_t"),
        }
    )


def load() -> PyOpenSSLLib:
    """pyOpenSSL's OpenSSL, bound and calibrated (once per process)."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def _load() -> PyOpenSSLLib:
    try:
        import OpenSSL
        from cffi import FFI
        from OpenSSL import SSL
        from OpenSSL._util import ffi, lib
    except ImportError as exc:  # pragma: no cover - pyOpenSSL is a dependency
        raise SesskitError(f"the pyopenssl engine needs pyOpenSSL: {exc}") from exc
    libc_ffi = FFI()
    libc_ffi.cdef(LIBC_CDEF)
    libc = libc_ffi.dlopen(None)
    version = ffi.string(lib.OpenSSL_version(0)).decode()
    offsets = calibrate(ffi, lib, libc, SSL)
    return PyOpenSSLLib(ffi, lib, libc, SSL, version, OpenSSL.__version__, offsets, session_view(offsets))


def make_cert() -> tuple[Any, Any]:
    """An ephemeral self-signed certificate and key (cryptography objects)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from .libssl import _make_cert  # DER bytes; imports nothing of the system libssl

    cert, key = _make_cert()
    return x509.load_der_x509_certificate(cert), serialization.load_der_private_key(key, None)


# -- DER (public: i2d_SSL_SESSION) ---------------------------------------------------
def _tlv(b: bytes, i: int) -> tuple[int, bytes, int]:
    tag, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[i : i + k], "big")
        i += k
    return tag, b[i : i + n], i + n


def der_fields(ffi: Any, lib: Any, sess: Any) -> dict[str, Any]:
    """Session id, ticket, time and timeout as ``i2d_SSL_SESSION`` encodes them."""
    n = lib.i2d_SSL_SESSION(sess, ffi.NULL)
    if n <= 0:
        raise CalibrationError("i2d_SSL_SESSION failed during calibration")
    buf = ffi.new("unsigned char[]", n)
    lib.i2d_SSL_SESSION(sess, ffi.new("unsigned char **", buf))
    _, body, _ = _tlv(bytes(ffi.buffer(buf, n)), 0)
    out: dict[str, Any] = {"ticket": b""}
    i = index = 0
    while i < len(body):
        tag, val, i = _tlv(body, i)
        if index == 3:
            out["session_id"] = val
        if tag in (0xA1, 0xA2):
            out["time" if tag == 0xA1 else "timeout"] = int.from_bytes(_tlv(val, 0)[1], "big")
        if tag == 0xAA:
            out["ticket"] = _tlv(val, 0)[1]
        index += 1
    return out


# -- a small pyOpenSSL handshake harness (calibration only) -----------------------------
class _Harness:
    def __init__(self, ffi: Any, lib: Any, libc: Any, SSL: Any) -> None:
        self.ffi, self.lib, self.libc, self.SSL = ffi, lib, libc, SSL
        self.cert, self.key = make_cert()
        self.buf = ffi.new("char[]", 1 << 16)

    def server(self, tls: str, no_ticket: bool, timeout: int = 7200) -> Any:
        SSL = self.SSL
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        v = SSL.TLS1_2_VERSION if tls == "1.2" else SSL.TLS1_3_VERSION
        ctx.set_min_proto_version(v)
        ctx.set_max_proto_version(v)
        ctx.use_certificate(self.cert)
        ctx.use_privatekey(self.key)
        ctx.set_session_id(b"sesskit")
        ctx.set_timeout(timeout)
        if no_ticket:
            ctx.set_options(SSL.OP_NO_TICKET)
        return ctx

    def client(self, tls: str) -> Any:
        SSL = self.SSL
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        v = SSL.TLS1_2_VERSION if tls == "1.2" else SSL.TLS1_3_VERSION
        ctx.set_min_proto_version(v)
        ctx.set_max_proto_version(v)
        return ctx

    def _move(self, a: Any, b: Any) -> bool:
        moved = False
        while True:
            n = self.lib.BIO_read(a._from_ssl, self.buf, 1 << 16)
            if n <= 0:
                return moved
            self.lib.BIO_write(b._into_ssl, self.buf, n)
            moved = True

    def pump(self, a: Any, b: Any) -> None:
        while self._move(a, b) | self._move(b, a):
            pass

    def _step(self, conn: Any) -> bool:
        r = self.lib.SSL_do_handshake(conn._ssl)
        if r == 1:
            return True
        if self.lib.SSL_get_error(conn._ssl, r) in (SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE):
            return False
        raise CalibrationError("a calibration handshake failed")

    def handshake(self, cctx: Any, sctx: Any, resume: Any = None) -> tuple[Any, Any]:
        SSL = self.SSL
        c, s = SSL.Connection(cctx, None), SSL.Connection(sctx, None)
        c.set_connect_state()
        s.set_accept_state()
        if resume is not None and self.lib.SSL_set_session(c._ssl, resume) != 1:
            raise CalibrationError("SSL_set_session failed during calibration")
        done = (False, False)
        for _ in range(20):
            done = (self._step(c), done[1])
            self.pump(c, s)
            done = (done[0], self._step(s))
            self.pump(c, s)
            if all(done):
                break
        if not all(done):
            raise CalibrationError("a calibration handshake stalled")
        self.lib.SSL_read(c._ssl, self.buf, 1 << 16)  # TLS 1.3 tickets, if any
        self.lib.ERR_clear_error()
        return c, s

    def close(self, c: Any, s: Any) -> None:
        for _ in range(2):
            for conn in (c, s):
                self.lib.SSL_shutdown(conn._ssl)
                self.pump(c, s)
        self.lib.ERR_clear_error()

    def free(self, *conns: Any) -> None:
        for conn in conns:
            self.ffi.release(conn._ssl)  # SSL_free now (pyOpenSSL's ffi.gc destructor)


def _one(what: str, found: Iterator[int] | list[int]) -> int:
    found = sorted(set(found))
    if len(found) != 1:
        raise CalibrationError(f"cannot locate {what}: candidates {found}")
    return found[0]


def calibrate(ffi: Any, lib: Any, libc: Any, SSL: Any) -> PyOffsets:
    """Find and confirm every offset on pyOpenSSL's OpenSSL, or raise CalibrationError."""
    h = _Harness(ffi, lib, libc, SSL)
    keep: list[Any] = []  # Connections and contexts alive until the end
    held: list[Any] = []  # session references calibration took
    try:
        return _calibrate(h, keep, held)
    finally:
        for p in held:
            lib.SSL_SESSION_free(p)
        for obj in keep:
            if isinstance(obj, SSL.Connection):
                h.free(obj)


def _calibrate(h: _Harness, keep: list[Any], held: list[Any]) -> PyOffsets:
    ffi, lib, libc = h.ffi, h.lib, h.libc

    def addr(p: Any) -> int:
        return int(ffi.cast("uintptr_t", p))

    def sess(conn: Any) -> Any:
        return lib.SSL_get_session(conn._ssl)

    def get1(conn: Any) -> Any:
        p = lib.SSL_get1_session(conn._ssl)
        held.append(p)
        return p

    s12, c12 = h.server("1.2", no_ticket=True), h.client("1.2")
    keep += [s12, c12]
    sctx = addr(s12._context)
    c1, s1 = h.handshake(c12, s12)
    keep += [c1, s1]
    sp, cp = sess(s1), sess(c1)

    # -- references: two up (SSL_get1_session) and two SSL_SESSION_free on each ----
    def up_on(conn: Any, p: Any) -> Callable[[], object]:
        def up() -> object:
            q = lib.SSL_get1_session(conn._ssl)
            if q != p:
                lib.SSL_SESSION_free(q)
                raise CalibrationError("SSL_get1_session returned another session than SSL_get_session")
            return q

        return up

    ref = refcount_offset(lib, ffi, libc, [(sp, up_on(s1, sp)), (cp, up_on(c1, cp))])

    def i32(p: Any, off: int) -> int:
        return int(ffi.cast("int *", ffi.cast("char *", p) + off)[0])

    if (i32(sp, ref), i32(cp, ref)) != (2, 1):
        raise CalibrationError(
            f"a cached server session should count 2 references and a client one 1, "
            f"read {i32(sp, ref)}/{i32(cp, ref)}"
        )
    n = _usable(libc, ffi, sp)
    ws, wc = _words64(ffi, sp, n), _words64(ffi, cp, n)
    owner = _one("SSL_SESSION.owner", (i * 8 for i in range(len(ws)) if ws[i] == sctx and wc[i] == 0))

    # -- prev / next, and the cache head and tail inside the SSL_CTX -------------------
    c2, s2 = h.handshake(c12, s12)
    keep += [c2, s2]
    sp2 = sess(s2)
    w1, w2 = _words64(ffi, sp, n), _words64(ffi, sp2, n)
    nxt = _one("SSL_SESSION.next", (i * 8 for i in range(len(w2)) if w2[i] == addr(sp)))
    prv = _one("SSL_SESSION.prev", (i * 8 for i in range(len(w1)) if w1[i] == addr(sp2)))
    head, tail = _ptr(ffi, sp2, prv) - sctx, _ptr(ffi, sp, nxt) - sctx
    ctx_n = _usable(libc, ffi, s12._context)
    if not (0 < head < ctx_n and 0 < tail < ctx_n):
        raise CalibrationError(f"cache list sentinels outside the SSL_CTX: head {head}, tail {tail}")
    if _ptr(ffi, s12._context, head) != addr(sp2) or _ptr(ffi, s12._context, tail) != addr(sp):
        raise CalibrationError("SSL_CTX cache head/tail do not point at the newest/oldest session")

    # -- stats: 2 full handshakes so far on s12 / c12 -------------------------------------
    stats = _find_stats(ffi, libc, s12._context, c12._context, 2)

    # -- session id length, ticket length, times (against i2d_SSL_SESSION) ------------------
    s12t, c12t = h.server("1.2", no_ticket=False, timeout=301), h.client("1.2")
    s13, c13 = h.server("1.3", no_ticket=False), h.client("1.3")
    keep += [s12t, c12t, s13, c13]
    c3, s3 = h.handshake(c12t, s12t)
    c4, s4 = h.handshake(c13, s13)
    keep += [c3, s3, c4, s4]
    sid_len = _find_sid_length(ffi, lib, sp, sess(s3), n)
    tick = _find_ticklen(ffi, lib, [sess(c3), sess(c4)], cp, n)
    t_off, to_off, calc_off, unit = _find_times(ffi, lib, sp, sess(s3), n)

    # -- not_resumable: a dirty SSL_free removes a cached session and marks it ---------------
    cands: set[int] | None = None
    for conn, p in ((s1, sp), (s2, sp2)):
        get1(conn)
        before = _words32(ffi, p, n)
        h.free(conn)
        keep.remove(conn)
        after = _words32(ffi, p, n)
        found = {i * 4 for i in range(len(before)) if before[i] == 0 and after[i] == 1 and i * 4 != ref}
        cands = found if cands is None else cands & found
        if i32(p, ref) != 1 or _ptr(ffi, p, owner) != 0:
            raise CalibrationError("a dirty SSL_free did not remove the cached session (refcount/owner)")
    not_res = _one("SSL_SESSION.not_resumable", sorted(cands or ()))
    if _ptr(ffi, s12._context, head) != 0:
        raise CalibrationError("the SSL_CTX cache head should be NULL once the cache is empty")

    # -- the stats block by behaviour: a miss, a hit ------------------------------------------
    c5, s5 = h.handshake(c12, s12, resume=sess(c1))  # its server session was removed: a miss
    keep += [c5, s5]
    h.close(c5, s5)
    c6, s6 = h.handshake(c12, s12, resume=sess(c5))  # cached and clean: a hit
    keep += [c6, s6]
    if not lib.SSL_session_reused(s6._ssl):
        raise CalibrationError("a clean session did not resume during calibration")
    _expect_stats(ffi, s12._context, stats, dict(accept=4, accept_good=4, misses=1, hits=1))
    _expect_stats(ffi, c12._context, stats, dict(connect=4, connect_good=4, misses=1, hits=1))

    offs = PyOffsets(
        ref, owner, nxt, prv, not_res, sid_len, tick, t_off, to_off, calc_off, unit, head, tail, 0, stats
    )
    # -- session_cache_size: set to 2, the cache keeps 1 and counts cache_full ----------------
    size_off = _find_cache_size(h, keep, offs)
    offs = PyOffsets(**{**offs.__dict__, "ctx_cache_size": size_off})
    _check_expiry(h, keep, offs)
    return offs


def _ints(ffi: Any, p: Any, off: int, n: int) -> tuple[int, ...]:
    return tuple(int(x) for x in ffi.cast("int *", ffi.cast("char *", p) + off)[0:n])


def _find_stats(ffi: Any, libc: Any, sctx: Any, cctx: Any, k: int) -> int:
    """The stats block: server accept/accept_good == k, client connect/connect_good == k."""
    n = min(_usable(libc, ffi, sctx), _usable(libc, ffi, cctx))
    ws, wc = _words32(ffi, sctx, n), _words32(ffi, cctx, n)
    span = len(STATS)
    found = []
    for i in range(len(ws) - span):
        srv, cli = ws[i : i + span], wc[i : i + span]
        want_s = tuple(k if j in (3, 5) else 0 for j in range(span))
        want_c = tuple(k if j in (0, 2) else 0 for j in range(span))
        if srv == want_s and cli == want_c:
            found.append(i * 4)
    return _one("SSL_CTX.stats", found)


def _expect_stats(ffi: Any, ctx: Any, base: int, want: dict[str, int]) -> None:
    got = dict(zip(STATS, _ints(ffi, ctx, base, len(STATS)), strict=True))
    exp = {k: want.get(k, 0) for k in STATS}
    if got != exp:
        raise CalibrationError(f"SSL_CTX.stats did not follow the calibration handshakes: read {got}")


def _find_sid_length(ffi: Any, lib: Any, with_id: Any, without: Any, n: int) -> int:
    sid = der_fields(ffi, lib, with_id)["session_id"]
    if len(sid) < 16 or der_fields(ffi, lib, without)["session_id"] != b"":
        raise CalibrationError("calibration sessions do not have the session ids expected")
    raw = bytes(ffi.buffer(ffi.cast("char *", with_id), n))
    at = _one(
        "SSL_SESSION.session_id", [i for i in range(0, n - len(sid), 8) if raw[i : i + len(sid)] == sid]
    )
    off = at - 8  # size_t session_id_length; unsigned char session_id[32] (every 1.1.1-4.0 layout)
    if _ptr(ffi, with_id, off) != len(sid) or _ptr(ffi, without, off) != 0:
        raise CalibrationError("SSL_SESSION.session_id_length does not match i2d_SSL_SESSION")
    return off


def _find_ticklen(ffi: Any, lib: Any, with_ticket: list[Any], without: Any, n: int) -> int:
    cands: set[int] | None = None
    wn = _words64(ffi, without, n)
    if der_fields(ffi, lib, without)["ticket"]:
        raise CalibrationError("a ticketless calibration session carries a ticket")
    for p in with_ticket:
        length = len(der_fields(ffi, lib, p)["ticket"])
        if not length:
            raise CalibrationError("a calibration session did not receive a ticket")
        w = _words64(ffi, p, n)
        found = {i * 8 for i in range(len(w)) if w[i] == length and wn[i] == 0}
        cands = found if cands is None else cands & found
    return _one("SSL_SESSION.ext.ticklen", sorted(cands or ()))


def _find_times(ffi: Any, lib: Any, a: Any, b: Any, n: int) -> tuple[int, int, int, int]:
    """time, timeout, calc_timeout (== time + timeout) on two sessions of different timeouts."""
    da, db = der_fields(ffi, lib, a), der_fields(ffi, lib, b)
    if da["timeout"] == db["timeout"]:
        raise CalibrationError("calibration sessions should differ in timeout")
    wa, wb = _words64(ffi, a, n), _words64(ffi, b, n)
    for unit in (10**9, 1):
        to = [i for i in range(len(wa)) if wa[i] == da["timeout"] * unit and wb[i] == db["timeout"] * unit]
        tm = [i for i in range(len(wa)) if wa[i] // unit == da["time"] and wb[i] // unit == db["time"]]
        if len(to) != 1 or not tm:
            continue
        t, o = to[0], None
        tm = [i for i in tm if any(wa[j] == wa[i] + wa[t] and wb[j] == wb[i] + wb[t] for j in range(len(wa)))]
        if len(tm) == 1:
            c = [j for j in range(len(wa)) if wa[j] == wa[tm[0]] + wa[t] and wb[j] == wb[tm[0]] + wb[t]]
            o = c[0] if len(c) == 1 else None
        if o is not None:
            return tm[0] * 8, t * 8, o * 8, unit
    raise CalibrationError("cannot locate SSL_SESSION.time/timeout/calc_timeout from i2d_SSL_SESSION")


def _find_cache_size(h: _Harness, keep: list[Any], offs: PyOffsets) -> int:
    ffi = h.ffi
    s, c = h.server("1.2", no_ticket=True), h.client("1.2")
    keep += [s, c]
    base = ffi.cast("char *", s._context)
    cands = [o for o in range(0, offs.ctx_head, 8) if _ptr(ffi, s._context, o) == DEFAULT_CACHE_SIZE]
    off = _one("SSL_CTX.session_cache_size", cands)
    ffi.cast("size_t *", base + off)[0] = 2  # what SSL_CTX_sess_set_cache_size(ctx, 2) writes
    for _ in range(2):
        keep += list(h.handshake(c, s))
    if cache_walk(ffi, s._context, offs) != 1:
        raise CalibrationError("a cache of size 2 should hold 1 session (3.0+ holds N-1)")
    _expect_stats(ffi, s._context, offs.ctx_stats, dict(accept=2, accept_good=2, cache_full=1))
    return off


def _check_expiry(h: _Harness, keep: list[Any], offs: PyOffsets) -> None:
    """Moving a cached session's time back makes its lookup time out (what advance relies on)."""
    ffi, lib = h.ffi, h.lib
    s, c = h.server("1.2", no_ticket=True, timeout=100), h.client("1.2")
    keep += [s, c]
    c1, s1 = h.handshake(c, s)
    keep += [c1, s1]
    h.close(c1, s1)
    p = lib.SSL_get_session(s1._ssl)
    set_time(ffi, p, offs, session_time(ffi, p, offs) - 200)
    c2, s2 = h.handshake(c, s, resume=lib.SSL_get_session(c1._ssl))
    keep += [c2, s2]
    if lib.SSL_session_reused(s2._ssl):
        raise CalibrationError("a session moved 200 s back with a 100 s timeout still resumed")
    _expect_stats(ffi, s._context, offs.ctx_stats, dict(accept=2, accept_good=2, timeouts=1))


# -- readers and writers used by the engine and by watch() ------------------------------
def cache_walk(ffi: Any, ctx: Any, offs: PyOffsets, limit: int = 1 << 22) -> int:
    return len(cache_members(ffi, ctx, offs, limit))


def cache_members(ffi: Any, ctx: Any, offs: PyOffsets, limit: int = 1 << 22) -> list[int]:
    """Addresses of the cached sessions, head (latest expiry) first.

    Every listed session is held by the cache, so reading it is safe as long as
    nothing else uses the SSL_CTX meanwhile.
    """
    base = int(ffi.cast("uintptr_t", ctx))
    stop = base + offs.ctx_tail
    p = _ptr(ffi, ctx, offs.ctx_head)
    out: list[int] = []
    while p and p != stop:
        out.append(p)
        if len(out) > limit:
            raise SesskitError("observation inconsistent: the cache list does not end")
        p = int(ffi.cast("uintptr_t *", p + offs.next)[0])
    return out


def session_time(ffi: Any, p: Any, offs: PyOffsets) -> int:
    """``SSL_SESSION_get_time``: whole seconds since the epoch."""
    return _ptr(ffi, p, offs.time) // offs.time_unit


def set_time(ffi: Any, p: Any, offs: PyOffsets, t: int) -> None:
    """``SSL_SESSION_set_time`` without its list re-sort (pyOpenSSL does not bind it).

    Writes ``time`` (whole seconds, as set_time does) and ``calc_timeout =
    time + timeout`` (saturating, as ``ossl_time_add``).  Callers move every
    member of a cache alike, so the list stays sorted.
    """
    base = ffi.cast("char *", p)
    tm = max(t, 0) * offs.time_unit
    timeout = int(ffi.cast("uint64_t *", base + offs.timeout)[0])
    ffi.cast("uint64_t *", base + offs.time)[0] = tm
    ffi.cast("uint64_t *", base + offs.calc_timeout)[0] = min(tm + timeout, (1 << 64) - 1)


def now() -> int:
    return int(time.time())
