"""The real engine on pyOpenSSL: its Context/Connection objects, its own OpenSSL.

pyOpenSSL does not use the libssl that Python's ``ssl`` module loaded: it runs
on the OpenSSL statically linked into cryptography (here 4.0.x, beside the
system 3.0.x; OPENSSL_FACTS.md "Two OpenSSL copies in one process").  This
engine drives that copy only through pyOpenSSL's objects and pyOpenSSL's own
cffi ``lib``: two ``OpenSSL.SSL.Context`` (client, server) and per link two
``OpenSSL.SSL.Connection(ctx, None)`` joined by their memory BIOs.  No pointer
from it ever reaches the system libssl bindings, or the other way round.

It follows the libssl engine's contract (DESIGN.md) and shares its operation
frame (:mod:`._frame`), so both produce the same snapshots for the same
operations.  What this engine observes differently:

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

from typing import Any

from ..errors import SesskitError, UnsupportedOperation
from ..trace import CacheState
from . import _pyossl as P
from ._frame import LiveCounts, ObservedSession, ObservedSSL, ObservingEngine
from .base import LabConfig, OpResult

__all__ = ["PyOpenSSLEngine", "live_objects"]

_STAT_SLOTS = [(name, i) for i, name in enumerate(P.STATS) if "renegotiate" not in name]
_LIVE = LiveCounts()


def live_objects() -> dict[str, int]:
    """How many OpenSSL objects (and references) all pyopenssl engines hold now."""
    return _LIVE.snapshot()


def unsupported(op: str, why: str) -> UnsupportedOperation:
    return UnsupportedOperation(
        f"can't {op} on the pyopenssl engine: {why}. "
        'Use Lab(engine="libssl") (the system libssl through cffi), which has it.'
    )


class _Sess(ObservedSession):
    """A session of pyOpenSSL's copy, keyed by its address (``view``: see ``_pyossl.session_view``)."""

    __slots__ = ()


class PyOpenSSLEngine(ObservingEngine[_Sess]):
    """Engine over pyOpenSSL and the OpenSSL inside cryptography (see module docstring)."""

    name = "pyopenssl"
    #: How :class:`sesskit.model.Model` must be set up to predict this engine (rule "sealed_ticket").
    model_options: dict[str, Any] = {"ticket_aging": False}  # noqa: RUF012 - read-only
    _live = _LIVE

    def __init__(self, config: LabConfig) -> None:
        self._L = L = P.load()
        self.openssl_version: str = f"{L.version} (pyOpenSSL {L.pyopenssl_version})"
        self._ffi, self._lib, self._off = L.ffi, L.lib, L.offsets
        self._view = L.view
        self._SSL = L.SSL
        self._config = config
        self._init_frame(P.now())  # OpenSSL's frozen "now" (see libssl.py, virtual time)
        self._open(*P.make_cert())

    # -- set-up ----------------------------------------------------------------
    def _make_ctx(self, side: str, cert: Any, key: Any) -> None:
        SSL, cfg = self._SSL, self._config
        server = side == "server"
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD if server else SSL.TLS_CLIENT_METHOD)
        self._n["SSL_CTX"] += 1
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
            if cfg.server_sid_ctx is not None:
                ctx.set_session_id(cfg.server_sid_ctx)
            if not cfg.tickets:
                ctx.set_options(SSL.OP_NO_TICKET)
            if cfg.verify_peer:  # asks for a client certificate; the client sends none, which is accepted
                ctx.set_verify(SSL.VERIFY_PEER)
        elif cfg.client_cache:
            ctx.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)
        self._ctx_addr[side] = self._addr(ctx._context)
        self._ctx_side[self._addr(ctx._context)] = side

    def _ssl_new(self, name: str, side: str) -> ObservedSSL:
        conn = self._SSL.Connection(self._ctx[side], None)  # SSL_new + two memory BIOs
        (conn.set_accept_state if side == "server" else conn.set_connect_state)()
        return ObservedSSL(name, side, conn._ssl, conn._into_ssl, conn._from_ssl, conn)

    # -- observation -------------------------------------------------------------
    def _see_ssl(self, ssl: ObservedSSL) -> None:
        """Look at an SSL after a call: pin its session if new (observer reference)."""
        self._touched_ssls[ssl.name] = ssl
        if ssl.freed:
            return
        lib, ffi = self._lib, self._ffi
        ptr = lib.SSL_get_session(ssl.ptr)
        ssl.sess = None
        if ptr == ffi.NULL:
            return
        a = self._addr(ptr)
        s = self._by_addr.get(a)
        if s is None:
            new = self._new_sess(ptr, a, ssl.side)  # before the pin: nothing can fail after it
            got = lib.SSL_get1_session(ssl.ptr)  # the observer reference
            if got != ptr:  # cannot happen: the SSL is ours and single-threaded
                lib.SSL_SESSION_free(got)
                raise SesskitError("observation inconsistent: SSL_get1_session and SSL_get_session differ")
            self._n["observer refs"] += 1
            self._by_addr[a] = s = new
            self._seen[ssl.side].append(s)
        self._restamp(s)
        self._touched[a] = s
        ssl.sess = s

    def _new_sess(self, p: Any, a: int, side: str) -> _Sess:
        return _Sess(p, a, side, self._view.at(a))

    def _restamp(self, s: _Sess) -> None:
        # Stamped "now" (later than E) by OpenSSL: "now" is E on the virtual scale.
        unit = self._off.time_unit
        if s.view.time > self._epoch * unit:
            P.set_time(self._ffi, s.ptr, self._off, self._epoch)

    def _session_at(self, p: Any) -> _Sess:
        return self._by_addr[self._addr(p)]

    def _resumable(self, s: _Sess) -> bool:
        # SSL_SESSION_is_resumable: !not_resumable && (session_id_length || ext.ticklen)
        v = s.view
        return not v.not_resumable and bool(v.session_id_length or v.ticklen)

    def _error_string(self, e: int) -> str:
        reason = self._lib.ERR_reason_error_string(e)
        return self._ffi.string(reason).decode() if reason != self._ffi.NULL else hex(e)

    def _stats_of(self, side: str) -> dict[str, int]:
        ffi = self._ffi
        ctx = self._ctx[side]._context
        words = ffi.cast("int *", ffi.cast("char *", ctx) + self._off.ctx_stats)
        return {name: int(words[i]) for name, i in _STAT_SLOTS}

    def _observe_cache(self, side: str, full_walk: bool, read_stats: bool) -> CacheState | None:
        """Walk the cache list (every member is held by the cache: safe to read).

        The whole list and the statistics are read after every operation, so the
        hints of the frame (``full_walk``, ``read_stats``) are not needed.
        """
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

    def _full_cache(self, side: str) -> CacheState:
        self._observe_cache(side, True, True)
        order = self._order[side]
        state = self._cache_last[side] = CacheState(side, len(order), tuple(order), self._stats_of(side))
        return state

    # -- what pyOpenSSL's lib lacks, and how it frees and ages -------------------------
    def clear(self, ssl: str) -> OpResult:
        raise unsupported(f"SSL_clear({ssl})", "pyOpenSSL binds no SSL_clear")

    def flush(self, side: str, at: int) -> OpResult:
        raise unsupported(f"SSL_CTX_flush_sessions({side})", "pyOpenSSL binds no SSL_CTX_flush_sessions")

    def _ssl_free(self, ptr: Any) -> None:
        # pyOpenSSL frees the SSL when the Connection is collected; release runs that
        # destructor (SSL_free, which also frees both BIOs) now, deterministically.
        self._ffi.release(ptr)

    def _ctx_free(self, ctx: Any) -> None:
        self._ffi.release(ctx._context)  # SSL_CTX_free now

    def _age(self, s: _Sess, seconds: int) -> None:
        ffi, off = self._ffi, self._off
        P.set_time(ffi, s.ptr, off, P.session_time(ffi, s.ptr, off) - seconds)
        self._touched[s.addr] = s  # re-read every aged session (libssl re-walks its cache lists instead)
