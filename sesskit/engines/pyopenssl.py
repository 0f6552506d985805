"""The real engine on pyOpenSSL: its Context/Connection objects, its own OpenSSL.

pyOpenSSL does not use the libssl that Python's ``ssl`` module loaded: it runs
on the OpenSSL statically linked into cryptography (here 4.0.x, beside the
system 3.0.x; OPENSSL_FACTS.md "Two OpenSSL copies in one process").  This
engine drives that copy only through pyOpenSSL's objects and pyOpenSSL's own
cffi ``lib``: two ``OpenSSL.SSL.Context`` (client, server) and per link two
``OpenSSL.SSL.Connection(ctx, None)`` joined by their memory BIOs.  No pointer
from it ever reaches the system libssl bindings, or the other way round.

It follows the libssl engine's contract (DESIGN.md), so both produce the same
snapshots for the same operations:

- bytes move **one TLS record at a time** after the handshake; the SSLs an
  operation touched are looked at after every call, and sessions get labels
  in the order first seen (client side first);
- every session seen is pinned by one *observer reference*, taken with
  ``SSL_get1_session`` on the SSL that holds it (pyOpenSSL's lib has no
  ``SSL_SESSION_up_ref``); the reported refcount excludes it;
- refcount, cache owner, ``not_resumable``, id and ticket lengths, the cache
  list and the statistics are read at offsets :mod:`._pyossl` calibrated and
  confirmed by real handshakes (pyOpenSSL's lib has no ``SSL_CTX_ctrl`` and no
  ``SSL_SESSION_is_resumable``); the cache size is the length of the list;
- no callback is registered at all (pyOpenSSL's lib has no new/remove session
  callbacks): a session is seen when an SSL holds it after a call.

What pyOpenSSL's OpenSSL cannot do here, and what the engine does instead:

- ``SSL_clear`` and ``SSL_CTX_flush_sessions`` are not in pyOpenSSL's lib:
  :class:`~sesskit.UnsupportedOperation` (the libssl engine has them).
- ``SSL_CTX_sess_set_cache_size``: the calibrated ``session_cache_size`` field
  is written (what the ctrl writes; calibration proved size 2 keeps 1).
- ``SSL_SESSION_set_time``: virtual time writes the calibrated ``time`` and
  ``calc_timeout`` fields.  That is set_time without its list re-sort; since
  ``advance`` moves every cached session alike, each list stays sorted.
- ``SSL_CTX_set_session_ticket_cb`` is not bound either, so a *sealed*
  (stateless) ticket cannot be aged: the server's decrypted copy is as fresh
  as the real clock says.  ``advance`` still ages every session object; the
  model reproduces this with ``Model(ticket_aging=False)``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from ..errors import SesskitError, UnsupportedOperation
from ..trace import CacheState, Delta, SessionState, SSLState
from . import _pyossl as P
from .base import LabConfig, OpResult

__all__ = ["PyOpenSSLEngine", "live_objects"]

_RECORD_HEADER = 5
_BUF_SIZE = 1 << 17
_SSL_SENT_SHUTDOWN = 1
_WANT_READ, _WANT_WRITE, _ZERO_RETURN = 2, 3, 6
_STAT_SLOTS = [(name, i) for i, name in enumerate(P.STATS) if "renegotiate" not in name]
_live_lock = threading.Lock()
_live = {"SSL_CTX": 0, "SSL": 0, "observer refs": 0, "user refs": 0}


def live_objects() -> dict[str, int]:
    """How many OpenSSL objects (and references) all pyopenssl engines hold now."""
    with _live_lock:
        return dict(_live)


def _count(kind: str, n: int) -> None:
    with _live_lock:
        _live[kind] += n


def unsupported(op: str, why: str) -> UnsupportedOperation:
    return UnsupportedOperation(
        f"can't {op} on the pyopenssl engine: {why}. "
        'Use Lab(engine="libssl") (the system libssl through cffi), which has it.'
    )


class _Sess:
    __slots__ = ("addr", "label", "last", "ptr", "side", "w")

    def __init__(self, ptr: Any, addr: int, side: str, words: dict[str, Any]) -> None:
        self.ptr = ptr
        self.addr = addr
        self.side = side
        self.label = ""
        self.w = words
        self.last: SessionState | None = None


class _SSL:
    __slots__ = ("conn", "freed", "inbox", "name", "peer", "ptr", "rbio", "side", "wbio")

    def __init__(self, name: str, side: str, conn: Any) -> None:
        self.name = name
        self.side = side
        self.conn = conn  # the pyOpenSSL Connection (owns the SSL and its BIOs)
        self.ptr = conn._ssl
        self.rbio = conn._into_ssl
        self.wbio = conn._from_ssl
        self.inbox = bytearray()
        self.peer: _SSL | None = None
        self.freed = False

    def next_record(self) -> bytes | None:
        if len(self.inbox) < _RECORD_HEADER:
            return None
        n = _RECORD_HEADER + ((self.inbox[3] << 8) | self.inbox[4])
        if len(self.inbox) < n:
            return None
        rec = bytes(self.inbox[:n])
        del self.inbox[:n]
        return rec


class PyOpenSSLEngine:
    """Engine over pyOpenSSL and the OpenSSL inside cryptography (see module docstring)."""

    name = "pyopenssl"
    #: How :class:`sesskit.model.Model` must be set up to predict this engine (rule "sealed_ticket").
    model_options: dict[str, Any] = {"ticket_aging": False}  # noqa: RUF012 - read-only

    def __init__(self, config: LabConfig) -> None:
        self._L = L = P.load()
        self.openssl_version: str = f"{L.version} (pyOpenSSL {L.pyopenssl_version})"
        self._ffi, self._lib, self._off = L.ffi, L.lib, L.offsets
        self._SSL = L.SSL
        self._config = config
        self._lock = threading.RLock()
        self._closed = False
        self._buf = self._ffi.new("char[]", _BUF_SIZE)
        self._epoch = P.now()  # OpenSSL's frozen "now" (see libssl.py, virtual time)
        self._now = 0
        self._by_addr: dict[int, _Sess] = {}
        self._by_label: dict[str, _Sess] = {}
        self._label_no = 0
        self._user_refs: dict[str, int] = {}
        self._ssls: dict[str, _SSL] = {}
        self._links = 0
        self._order: dict[str, list[str]] = {"client": [], "server": []}
        self._cache_last: dict[str, CacheState] = {}
        self._seen: dict[str, list[_Sess]] = {"client": [], "server": []}
        self._touched: dict[int, _Sess] = {}
        self._touched_ssls: dict[str, _SSL] = {}
        self._current: list[_SSL] = []
        self._ctx: dict[str, Any] = {}  # pyOpenSSL Contexts
        self._ctx_addr: dict[str, int] = {}
        cert, key = P.make_cert()
        try:
            for side in ("client", "server"):
                ctx = self._make_ctx(side, cert, key)
                self._ctx[side] = ctx
                self._ctx_addr[side] = self._addr(ctx._context)
        except BaseException:
            self.close()
            raise

    # -- set-up ----------------------------------------------------------------
    def _make_ctx(self, side: str, cert: Any, key: Any) -> Any:
        SSL, cfg = self._SSL, self._config
        server = side == "server"
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD if server else SSL.TLS_CLIENT_METHOD)
        _count("SSL_CTX", 1)
        self._ctx[side] = ctx  # so that close() frees it even if set-up fails below
        v = SSL.TLS1_2_VERSION if cfg.tls == "1.2" else SSL.TLS1_3_VERSION
        ctx.set_min_proto_version(v)
        ctx.set_max_proto_version(v)
        ctx.set_timeout(cfg.timeout)
        if cfg.cache_size != P.DEFAULT_CACHE_SIZE:
            # pyOpenSSL binds no SSL_CTX_sess_set_cache_size: write the field it sets
            # (calibration proved that size 2 then keeps 1 session and counts cache_full).
            base = self._ffi.cast("char *", ctx._context)
            self._ffi.cast("size_t *", base + self._off.ctx_cache_size)[0] = cfg.cache_size
        if server:
            ctx.use_certificate(cert)
            ctx.use_privatekey(key)
            ctx.check_privatekey()
            ctx.set_session_id(b"sesskit")
            if not cfg.tickets:
                ctx.set_options(SSL.OP_NO_TICKET)
        elif cfg.client_cache:
            ctx.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)
        return ctx

    # -- low-level helpers -------------------------------------------------------
    def _addr(self, p: Any) -> int:
        return int(self._ffi.cast("uintptr_t", p))

    def _words(self, p: Any) -> dict[str, Any]:
        ffi, off = self._ffi, self._off
        base = ffi.cast("char *", p)
        return {
            "refs": ffi.cast("int *", base + off.references),
            "owner": ffi.cast("uintptr_t *", base + off.owner),
            "not_resumable": ffi.cast("int *", base + off.not_resumable),
            "sid_len": ffi.cast("size_t *", base + off.session_id_length),
            "ticklen": ffi.cast("size_t *", base + off.ticklen),
            "time": ffi.cast("uint64_t *", base + off.time),
        }

    def _see_ssl(self, ssl: _SSL) -> None:
        """Look at an SSL after a call: pin its session if new (observer reference)."""
        self._touched_ssls[ssl.name] = ssl
        if ssl.freed:
            return
        lib, ffi = self._lib, self._ffi
        ptr = lib.SSL_get_session(ssl.ptr)
        if ptr == ffi.NULL:
            return
        a = self._addr(ptr)
        s = self._by_addr.get(a)
        if s is None:
            got = lib.SSL_get1_session(ssl.ptr)  # the observer reference
            if got != ptr:  # cannot happen: the SSL is ours and single-threaded
                lib.SSL_SESSION_free(got)
                raise SesskitError("observation inconsistent: SSL_get1_session and SSL_get_session differ")
            _count("observer refs", 1)
            s = _Sess(ptr, a, ssl.side, self._words(ptr))
            self._by_addr[a] = s
            self._seen[ssl.side].append(s)
        self._restamp(s)
        self._touched[a] = s

    def _restamp(self, s: _Sess) -> None:
        # Stamped "now" (later than E) by OpenSSL: "now" is E on the virtual scale.
        unit = self._off.time_unit
        if int(s.w["time"][0]) > self._epoch * unit:
            P.set_time(self._ffi, s.ptr, self._off, self._epoch)

    def _drain(self, ssl: _SSL) -> None:
        read, buf, peer = self._lib.BIO_read, self._buf, ssl.peer
        while True:
            n = read(ssl.wbio, buf, _BUF_SIZE)
            if n <= 0:
                return
            if peer is not None and not peer.freed:
                peer.inbox += self._ffi.buffer(buf, n)
            if n < _BUF_SIZE:
                return

    def _feed(self, ssl: _SSL, whole: bool = False) -> bool:
        if whole:
            rec = bytes(ssl.inbox)
            ssl.inbox.clear()
        else:
            rec = ssl.next_record() or b""
        if not rec:
            return False
        self._lib.BIO_write(ssl.rbio, rec, len(rec))
        return True

    def _call(self, ssl: _SSL, fn: Any, *args: Any) -> tuple[int, int]:
        r = fn(ssl.ptr, *args)
        err = 0 if r > 0 else self._lib.SSL_get_error(ssl.ptr, r)
        self._drain(ssl)
        self._see_ssl(ssl)
        return r, err

    def _errors(self) -> str:
        out = []
        lib, ffi = self._lib, self._ffi
        while True:
            e = lib.ERR_get_error()
            if not e:
                break
            reason = lib.ERR_reason_error_string(e)
            out.append(ffi.string(reason).decode() if reason != ffi.NULL else hex(e))
        return "; ".join(out) or "no OpenSSL error queued"

    # -- operation frame -----------------------------------------------------------
    def _begin(self, *ssls: _SSL) -> None:
        self._seen = {"client": [], "server": []}
        self._touched = {}
        self._touched_ssls = {}
        self._current = list(ssls)
        for x in self._current:
            self._see_ssl(x)

    def _finish(self) -> Delta:
        for x in self._current:
            self._see_ssl(x)
        for side in ("client", "server"):
            for s in self._seen[side]:
                self._label_no += 1
                s.label = f"S{self._label_no}"
                self._by_label[s.label] = s
        caches: dict[str, CacheState] = {}
        for side in ("client", "server"):
            c = self._observe_cache(side)
            if c is not None:
                caches[side] = c
        sessions: dict[str, SessionState] = {}
        for s in list(self._touched.values()):
            st = self._read(s)
            if st != s.last:
                s.last = st
                sessions[s.label] = st
            if st.freed and s.ptr is not None:
                del self._by_addr[s.addr]
                self._lib.SSL_SESSION_free(s.ptr)  # drop the observer reference: freed now
                _count("observer refs", -1)
                s.ptr = None
        ssls = {n: self._ssl_state(x) for n, x in self._touched_ssls.items()}
        self._current = []
        return Delta(sessions=sessions, ssls=ssls, caches=caches)

    def _read(self, s: _Sess) -> SessionState:
        if s.ptr is None:
            assert s.last is not None
            return s.last
        w = s.w
        refs = int(w["refs"][0]) - 1  # minus the observer reference
        if refs <= 0:
            return SessionState(s.label, s.side, 0, None, False, True)
        owner = int(w["owner"][0])
        cache = None
        for side, ctx_addr in self._ctx_addr.items():
            if owner and owner == ctx_addr:
                cache = side
        # SSL_SESSION_is_resumable: !not_resumable && (session_id_length || ext.ticklen)
        resumable = not int(w["not_resumable"][0]) and bool(int(w["sid_len"][0]) or int(w["ticklen"][0]))
        return SessionState(s.label, s.side, refs, cache, resumable)

    def _ssl_state(self, x: _SSL) -> SSLState:
        if x.freed:
            return SSLState(x.name, x.side, None, True, False, False)
        p = self._lib.SSL_get_session(x.ptr)
        label = None if p == self._ffi.NULL else self._by_addr[self._addr(p)].label
        sent = bool(self._lib.SSL_get_shutdown(x.ptr) & _SSL_SENT_SHUTDOWN)
        return SSLState(x.name, x.side, label, False, sent, False)

    def _stats_of(self, side: str) -> dict[str, int]:
        ffi = self._ffi
        ctx = self._ctx[side]._context
        words = ffi.cast("int *", ffi.cast("char *", ctx) + self._off.ctx_stats)
        return {name: int(words[i]) for name, i in _STAT_SLOTS}

    def _observe_cache(self, side: str) -> CacheState | None:
        """Walk the cache list (every member is held by the cache: safe to read)."""
        ctx = self._ctx.get(side)
        if ctx is None:
            return None
        addrs = P.cache_members(self._ffi, ctx._context, self._off)
        order = []
        for a in addrs:
            s = self._by_addr.get(a)
            if s is None or not s.label:
                raise SesskitError(
                    f"observation inconsistent: the {side} cache holds a session sesskit never saw"
                )
            order.append(s.label)
        old = self._order[side]
        if order != old:
            for label in set(old) ^ set(order):  # left or joined without being touched
                s = self._by_label[label]
                self._touched[s.addr] = s
            self._order[side] = order
        state = CacheState(side, len(order), tuple(order), self._stats_of(side))
        if state == self._cache_last.get(side):
            return None
        self._cache_last[side] = state
        return state

    # -- public operations ---------------------------------------------------------
    def initial(self) -> Delta:
        with self._lock:
            self._begin()
            return self._finish()

    def connect(self, resume: str | None = None) -> OpResult:
        with self._lock:
            self._links += 1
            k = self._links
            c = self._new_ssl(f"c{k}", "client")
            s = self._new_ssl(f"s{k}", "server")
            c.peer, s.peer = s, c
            self._begin(c, s)
            lib = self._lib
            if resume is not None:
                target = self._by_label[resume]
                self._touched[target.addr] = target
                if lib.SSL_set_session(c.ptr, target.ptr) != 1:
                    raise SesskitError(f"SSL_set_session({c.name}, {resume}) failed: {self._errors()}")
                self._see_ssl(c)
            c_done = self._hs(c)
            s_done = False
            for _ in range(1000):
                if c_done and s_done:
                    break
                moved = False
                if not s_done and self._feed(s, whole=True):
                    s_done, moved = self._hs(s), True
                if not c_done and self._feed(c, whole=True):
                    c_done, moved = self._hs(c), True
                if not moved:
                    raise SesskitError(f"handshake {c.name}↔{s.name} stalled: {self._errors()}")
            reused = bool(lib.SSL_session_reused(c.ptr))
            return OpResult(self._finish(), (c.name, s.name, reused))

    def _new_ssl(self, name: str, side: str) -> _SSL:
        conn = self._SSL.Connection(self._ctx[side], None)  # SSL_new + two memory BIOs
        (conn.set_accept_state if side == "server" else conn.set_connect_state)()
        _count("SSL", 1)
        x = _SSL(name, side, conn)
        self._ssls[name] = x
        return x

    def _hs(self, ssl: _SSL) -> bool:
        r, err = self._call(ssl, self._lib.SSL_do_handshake)
        if r == 1:
            return True
        if err in (_WANT_READ, _WANT_WRITE):
            return False
        raise SesskitError(f"SSL_do_handshake on {ssl.name} failed (error {err}): {self._errors()}")

    def _op(self, name: str) -> _SSL:
        x = self._ssls[name]
        self._begin(x)
        return x

    def get0(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl)
            p = self._lib.SSL_get_session(x.ptr)
            delta = self._finish()
            return OpResult(delta, None if p == self._ffi.NULL else self._by_addr[self._addr(p)].label)

    def get1(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl)
            p = self._lib.SSL_get1_session(x.ptr)
            label = None
            if p != self._ffi.NULL:
                s = self._by_addr[self._addr(p)]  # seen (pinned) when the operation began
                delta = self._finish()
                label = s.label
                self._user_refs[label] = self._user_refs.get(label, 0) + 1
                _count("user refs", 1)
            else:
                delta = self._finish()
            return OpResult(delta, label)

    def read(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl)
            while self._feed(x):
                r, err = self._call(x, self._lib.SSL_read, self._buf, _BUF_SIZE)
                if r <= 0 and err not in (_WANT_READ, _ZERO_RETURN):
                    self._lib.ERR_clear_error()
                    break
            return OpResult(self._finish())

    def shutdown(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl)
            lib = self._lib
            if not lib.SSL_get_shutdown(x.ptr) & _SSL_SENT_SHUTDOWN:
                self._call(x, lib.SSL_shutdown)
            else:
                while self._feed(x):
                    r, _ = self._call(x, lib.SSL_shutdown)
                    if r == 1:
                        break
            lib.ERR_clear_error()
            return OpResult(self._finish())

    def clear(self, ssl: str) -> OpResult:
        raise unsupported(f"SSL_clear({ssl})", "pyOpenSSL binds no SSL_clear")

    def flush(self, side: str, at: int) -> OpResult:
        raise unsupported(f"SSL_CTX_flush_sessions({side})", "pyOpenSSL binds no SSL_CTX_flush_sessions")

    def free(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl)
            self._free_ssl(x)
            return OpResult(self._finish())

    def _free_ssl(self, x: _SSL) -> None:
        # pyOpenSSL frees the SSL when the Connection is collected; release runs that
        # destructor (SSL_free, which also frees both BIOs) now, deterministically.
        self._ffi.release(x.conn._ssl)
        _count("SSL", -1)
        x.conn = x.ptr = x.rbio = x.wbio = None
        x.freed = True
        x.inbox.clear()

    def session_free(self, session: str) -> OpResult:
        with self._lock:
            self._begin()
            s = self._by_label[session]
            self._touched[s.addr] = s
            self._lib.SSL_SESSION_free(s.ptr)
            self._user_refs[session] -= 1
            _count("user refs", -1)
            return OpResult(self._finish())

    def advance(self, seconds: int) -> OpResult:
        with self._lock:
            self._begin()
            self._now += seconds
            ffi, off = self._ffi, self._off
            for s in sorted(self._by_addr.values(), key=lambda s: int(s.label[1:])):
                P.set_time(ffi, s.ptr, off, P.session_time(ffi, s.ptr, off) - seconds)
                self._touched[s.addr] = s
            return OpResult(self._finish())

    # -- teardown ------------------------------------------------------------------
    def close(self) -> None:
        """Free every SSL, every reference sesskit or its user holds, and both SSL_CTXs."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lib = self._lib
            for x in self._ssls.values():
                if not x.freed:
                    self._free_ssl(x)
            for label, n in self._user_refs.items():
                s = self._by_label[label]
                for _ in range(n):
                    lib.SSL_SESSION_free(s.ptr)
                    _count("user refs", -1)
            self._user_refs.clear()
            for s in self._by_addr.values():
                lib.SSL_SESSION_free(s.ptr)
                _count("observer refs", -1)
            self._by_addr.clear()
            for ctx in self._ctx.values():
                self._ffi.release(ctx._context)  # SSL_CTX_free now
                _count("SSL_CTX", -1)
            self._ctx.clear()

    def sessions_alive(self) -> Iterable[str]:
        return [s.label for s in self._by_addr.values()]
