"""The real engine: the system libssl that CPython's ``ssl`` module loaded, via cffi.

Two SSL_CTXs (client, server), an ephemeral self-signed certificate per lab,
and per connection two SSLs joined by memory BIOs.  Python moves the bytes
**one TLS record at a time**, so every session an operation creates can be
seen (DESIGN.md, "Record granularity").  No socket is ever opened.  The
operation frame, the record queues and the public operations are shared with
the pyopenssl engine (:mod:`._frame`); this module says how libssl is observed.

Observation (DESIGN.md, "How the real engines observe"):

- every session seen is pinned by one *observer reference*
  (``SSL_SESSION_up_ref``), so its memory is never read after OpenSSL frees
  it; the reported refcount excludes it, and when the rest reaches 0 the
  session is reported freed and released;
- refcount, cache owner and list links are read at calibrated offsets
  (:mod:`._probe`); cache size and statistics come from ``SSL_CTX_ctrl``;
- only what an operation touched is re-read: the link's sessions before and
  after, sessions a callback announced, and -- when ``SSL_CTX_sess_number``
  says the cache lost sessions nobody touched -- the list tail (eviction and
  flush take from the tail);
- a ``new_session_cb`` that returns 0 (behaviour unchanged) announces cache
  adds and server tickets; no remove callback is ever set (it would make a
  TLS 1.3 server cache stateless tickets).

The observation helper (``_cobserve.c``, compiled at install when a C compiler
is there): ``connect`` -- the two SSLs, their BIOs, both handshakes flight by
flight with a look after each call -- and the three callbacks run in C, with
no Python between flights or inside OpenSSL.  It calls the functions of this
same binding through pointers (one libssl) and does exactly what the Python
path does; Python adopts its pins afterwards (:meth:`LibsslEngine._collect`).
After a connect it also reads the step -- each pinned session's references
and cache owner at the calibrated offsets, whether it is resumable, both
contexts' statistics -- and :meth:`LibsslEngine._connected` records it.
Without it (or with ``SESSKIT_OBSERVER=python``) the Python path runs.

Virtual time: the engine freezes OpenSSL's view of "now" at the lab's start
``E``: any session stamped later is restamped to ``E`` when seen, and
``advance(d)`` moves every live session's time back by ``d``.  Stateless
tickets carry the virtual issue time in their app data, and a ticket
callback ages the server's decrypted copy.  Lookups and auto-flush compare
with the real clock, which runs ahead of ``E`` by the seconds the lab has
lived (see README "Time").
"""

from __future__ import annotations

import os
import struct
import threading
from types import MappingProxyType
from typing import Any

from ..errors import SesskitError
from ..trace import CacheState, Delta, SessionState, SSLState
from . import _libssl_ffi as F
from ._frame import (
    BUF_SIZE,
    SIDES,
    SSL_SENT_SHUTDOWN,
    LiveCounts,
    ObservedSession,
    ObservedSSL,
    ObservingEngine,
)
from .base import LabConfig, OpResult

__all__ = ["LibsslEngine", "live_objects"]

_STAT_KEYS = tuple(k for k in F.CTRL if k != "number")
_STAT_CODES = tuple(F.CTRL[k] for k in _STAT_KEYS)
_NUMBER = F.CTRL["number"]
_CTRL_CODES = (*_STAT_CODES, _NUMBER)  # read in one call by the C helper
_LIVE = LiveCounts()

# -- the observation helper (sesskit/engines/_cobserve.c) ------------------------------
# SESSKIT_OBSERVER: "auto" (default: the C helper if it was compiled), "c" (required),
# "python" (never).  Both observe the same way and give the same numbers.
OBSERVER_ENV = "SESSKIT_OBSERVER"
_helper_lock = threading.Lock()
_helper_mod: Any = None
_helper_error: str | None = None


def _load_helper(lib: Any) -> Any:
    """The compiled helper, given pointers to this process's libssl functions (once); or None."""
    global _helper_mod, _helper_error
    with _helper_lock:
        if _helper_mod is None and _helper_error is None:
            try:
                from . import _cobserve  # type: ignore[attr-defined]
            except ImportError as exc:
                _helper_error = f"the C observation helper was not compiled at install ({exc})"
            else:
                fns = _cobserve.ffi.new("sk_fns *")
                # every field: the very function the ABI binding calls (one libssl), never NULL
                for name, _ in _cobserve.ffi.typeof("sk_fns").fields:
                    setattr(fns, name, _cobserve.ffi.cast("void *", getattr(lib, name)))
                _cobserve.lib.sk_init(fns)
                _helper_mod = _cobserve
        return _helper_mod


def helper_status() -> str:
    """Which observer a new libssl engine uses, and why: ``"C helper"`` or ``"Python (...)"``."""
    choice = os.environ.get(OBSERVER_ENV, "auto").lower()
    if choice == "python":
        return f"Python ({OBSERVER_ENV}=python)"
    if _load_helper(F.load().lib) is not None:
        return "C helper"
    return f"Python ({_helper_error})"


def _choose_helper(lib: Any) -> Any:
    choice = os.environ.get(OBSERVER_ENV, "auto").lower()
    if choice not in ("auto", "c", "python"):
        raise SesskitError(f"{OBSERVER_ENV} must be auto, c or python, not {choice!r}")
    if choice == "python":
        return None
    mod = _load_helper(lib)
    if mod is None and choice == "c":
        raise SesskitError(f"{OBSERVER_ENV}=c, but {_helper_error}; reinstall sesskit with a C compiler")
    return mod


def live_objects() -> dict[str, int]:
    """How many OpenSSL objects (and references) all libssl engines hold now."""
    return _LIVE.snapshot()


def _make_cert() -> tuple[bytes, bytes]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sesskit.invalid")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.DER),
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )


class _Sess(ObservedSession):
    """A libssl session: the pointer is its own key; ``view.prev`` is its cache list link."""

    __slots__ = ()


class LibsslEngine(ObservingEngine[_Sess]):
    """Engine over the process's own libssl (see module docstring)."""

    name = "libssl"
    _live = _LIVE

    def __init__(self, config: LabConfig) -> None:
        self._L = L = F.load()
        self.openssl_version: str = L.version
        self.library_path = L.path
        self._ffi, self._lib = L.ffi, L.lib
        self._view = L.view
        self._config = config
        self._init_frame(int(L.libc.time(self._ffi.NULL)))
        self._mem = self._lib.BIO_s_mem()
        self._members: dict[str, set[str]] = {"client": set(), "server": set()}
        self._stats: dict[str, list[int]] = {}  # SSL_CTX_ctrl values, in _STAT_KEYS order
        self._stats_view: dict[str, MappingProxyType[str, int]] = {}  # the same, as reported
        self._members_tuple: dict[str, tuple[str, ...]] = {"client": (), "server": ()}
        self._t_void_p = self._ffi.typeof("void *")
        self._C = _choose_helper(self._lib)
        self.observer = "C helper" if self._C is not None else "Python"
        if self._C is not None:
            self._init_helper()
        cert, key = _make_cert()
        self._callbacks = self._make_callbacks() if self._C is None else self._helper_callbacks()
        self._open(cert, key)

    def _init_helper(self) -> None:
        cffi = self._C.ffi
        self._st = st = cffi.new("sk_state *")
        st.epoch = self._epoch
        st.now = self._now
        self._cl = cl = cffi.new("sk_link *")
        self._cl_bufs = [cffi.new("char[]", BUF_SIZE) for _ in range(3)]  # kept alive with the link
        cl.out[0], cl.out[1], cl.buf = self._cl_bufs
        cl.out_cap = cl.buf_size = BUF_SIZE
        self._ctrl_codes = cffi.new("int[]", _CTRL_CODES)
        self._number_code = cffi.new("int[]", [_NUMBER])
        self._ctrl_out = cffi.new("long[]", 2 * len(_CTRL_CODES))
        self._ctrl_ctxs = cffi.new("void *[2]")  # client, server: set as they are made
        offsets = self._L.offsets  # what the helper reads after a connect (read_step)
        st.off_refs, st.off_owner = offsets.references, offsets.owner
        st.ncodes = len(_CTRL_CODES)
        st.codes[0 : len(_CTRL_CODES)] = _CTRL_CODES

    def _helper_callbacks(self) -> tuple[Any, Any, Any, Any]:
        """The helper's C callbacks, typed for the ABI binding (no Python runs inside OpenSSL)."""
        ffi, C = self._ffi, self._C
        new = ffi.cast("int(*)(SSL *, SSL_SESSION *)", C.ffi.addressof(C.lib, "sk_new_session_cb"))
        gen = ffi.cast("int(*)(SSL *, void *)", C.ffi.addressof(C.lib, "sk_ticket_gen_cb"))
        dec = ffi.cast(
            "int(*)(SSL *, SSL_SESSION *, const unsigned char *, size_t, int, void *)",
            C.ffi.addressof(C.lib, "sk_ticket_dec_cb"),
        )
        return new, new, gen, dec

    # -- set-up ----------------------------------------------------------------
    def _make_ctx(self, side: str, cert: bytes, key: bytes) -> None:
        lib, ffi, cfg = self._lib, self._ffi, self._config
        server = side == "server"
        ctx = lib.SSL_CTX_new(lib.TLS_server_method() if server else lib.TLS_client_method())
        if ctx == ffi.NULL:
            raise SesskitError(f"SSL_CTX_new failed: {self._errors()}")
        self._n["SSL_CTX"] += 1
        v = F.TLS_VERSION[cfg.tls]
        lib.SSL_CTX_ctrl(ctx, F.SSL_CTRL_SET_MIN_PROTO_VERSION, v, ffi.NULL)
        lib.SSL_CTX_ctrl(ctx, F.SSL_CTRL_SET_MAX_PROTO_VERSION, v, ffi.NULL)
        lib.SSL_CTX_set_timeout(ctx, cfg.timeout)
        lib.SSL_CTX_ctrl(ctx, F.SSL_CTRL_SET_SESS_CACHE_SIZE, cfg.cache_size, ffi.NULL)
        if server:
            sid = cfg.server_sid_ctx
            ok = (
                lib.SSL_CTX_use_certificate_ASN1(ctx, len(cert), cert) == 1
                and lib.SSL_CTX_use_PrivateKey_ASN1(F.EVP_PKEY_EC, ctx, key, len(key)) == 1
                and lib.SSL_CTX_check_private_key(ctx) == 1
                and (sid is None or lib.SSL_CTX_set_session_id_context(ctx, sid, len(sid)) == 1)
            )
            if not ok:
                lib.SSL_CTX_free(ctx)
                self._n["SSL_CTX"] -= 1
                raise SesskitError(f"cannot set up the server SSL_CTX: {self._errors()}")
            if not cfg.tickets:
                lib.SSL_CTX_set_options(ctx, F.SSL_OP_NO_TICKET)
            if cfg.verify_peer:  # asks for a client certificate; the client sends none, which is accepted
                lib.SSL_CTX_set_verify(ctx, F.SSL_VERIFY_PEER, ffi.NULL)
            arg = ffi.NULL if self._C is None else self._st
            lib.SSL_CTX_set_session_ticket_cb(ctx, self._callbacks[2], self._callbacks[3], arg)
        elif cfg.client_cache:
            lib.SSL_CTX_ctrl(ctx, F.SSL_CTRL_SET_SESS_CACHE_MODE, F.SSL_SESS_CACHE_CLIENT, ffi.NULL)
        if self._C is not None:  # the helper's callbacks find the lab's state through the SSL_CTX
            lib.SSL_CTX_set_ex_data(ctx, 0, self._st)
            self._st.ctx[1 if server else 0] = self._ctrl_ctxs[1 if server else 0] = ctx
        lib.SSL_CTX_sess_set_new_cb(ctx, self._callbacks[1 if server else 0])
        self._stats[side] = []
        self._ctx[side] = ctx
        self._ctx_addr[side] = self._addr(ctx)
        self._ctx_side[self._addr(ctx)] = side

    def _make_callbacks(self) -> tuple[Any, Any, Any, Any]:
        ffi, lib = self._ffi, self._lib

        def new_cb(side: str) -> Any:
            def on_new(ssl: Any, sess: Any) -> int:
                try:
                    self._see(sess, side)
                except BaseException as exc:  # never raise into C; raised after the call
                    self._cb_error = exc
                    try:  # noqa: SIM105 -- once more: an interrupt must not lose a session only this sees
                        self._see(sess, side)
                    except BaseException:
                        pass
                return 0  # the library drops the reference it took for us: behaviour unchanged

            return ffi.callback("int(SSL *, SSL_SESSION *)", on_new, error=0)

        def on_gen(ssl: Any, arg: Any) -> int:
            # Stamp the virtual time of the session into the (sealed) ticket.
            try:
                sess = lib.SSL_get_session(ssl)
                if sess != ffi.NULL:
                    vt = min(lib.SSL_SESSION_get_time(sess), self._epoch) - self._epoch + self._now
                    data = struct.pack("<q", vt)
                    lib.SSL_SESSION_set1_ticket_appdata(sess, data, len(data))
            except BaseException as exc:
                self._cb_error = exc
            return 1

        def on_dec(ssl: Any, sess: Any, keyname: Any, n: int, status: int, arg: Any) -> int:
            # Age the decrypted copy by the virtual clock; never change the ticket's status.
            if status not in (F.SSL_TICKET_SUCCESS, F.SSL_TICKET_SUCCESS_RENEW):
                return F.SSL_TICKET_RETURN_IGNORE_RENEW  # keeps EMPTY / NO_DECRYPT as they are
            try:
                pp, plen = ffi.new("void **"), ffi.new("size_t *")
                got = sess != ffi.NULL and lib.SSL_SESSION_get0_ticket_appdata(sess, pp, plen) == 1
                if got and plen[0] == 8:
                    (vt,) = struct.unpack("<q", ffi.buffer(pp[0], 8)[:])
                    lib.SSL_SESSION_set_time(sess, self._epoch - (self._now - vt))
            except BaseException as exc:
                self._cb_error = exc
            if status == F.SSL_TICKET_SUCCESS:
                return F.SSL_TICKET_RETURN_USE
            return F.SSL_TICKET_RETURN_USE_RENEW

        return (
            new_cb("client"),
            new_cb("server"),
            ffi.callback("int(SSL *, void *)", on_gen, error=1),
            ffi.callback(
                "int(SSL *, SSL_SESSION *, const unsigned char *, size_t, int, void *)",
                on_dec,
                error=F.SSL_TICKET_RETURN_IGNORE_RENEW,
            ),
        )

    # -- observation -------------------------------------------------------------
    def _see(self, ptr: Any, side: str) -> _Sess | None:
        """Note a session pointer that is live right now (pin it if new)."""
        if ptr == self._ffi.NULL:
            return None
        s = self._by_addr.get(ptr)
        if s is None:
            new = _Sess(ptr, ptr, side, self._view.at(ptr))  # cffi pointers: a stable dict key
            # from the pin to its bookkeeping no Python function runs (issue 16)
            self._lib.SSL_SESSION_up_ref(ptr)  # the observer reference
            self._n["observer refs"] += 1
            self._by_addr[ptr] = s = new
            self._seen[side].append(s)
        if self._lib.SSL_SESSION_get_time(ptr) > self._epoch:
            # stamped "now" by OpenSSL: "now" is E on the virtual scale
            self._lib.SSL_SESSION_set_time(ptr, self._epoch)
        self._touched[ptr] = s
        return s

    def _collect(self) -> None:
        """Adopt the observer references the helper took during the last call."""
        st = self._st if self._C is not None else None
        if st is None or not (st.n or st.overflow):
            return
        self._adopt_pins()

    def _adopt_pins(self) -> list[tuple[_Sess, int]]:
        """Take over the helper's pins, in the order taken: each session, and its pins then (1 or 2).

        A new session keeps the pin as its observer reference; one pinned
        already has the helper's second reference dropped.  The helper's
        ``void *`` pointers hash and compare by address, like the binding's
        own, and pass as ``SSL_SESSION *`` to it: keys and pointers alike.
        From the first pin taken over to ``st.n = 0`` no Python function runs,
        so an exception finds every pin adopted once, or none (issue 16).
        """
        st, unpack = self._st, self._C.ffi.unpack
        n = st.n
        seen, sides = unpack(st.seen, n), unpack(st.side, n)
        by_addr, seen_by_side, touched = self._by_addr, self._seen, self._touched
        lib, count = self._lib, self._n
        adopted: list[tuple[_Sess, int]] = []
        fresh: list[_Sess] = []
        make = object.__new__
        for p, side_no in zip(seen, sides, strict=True):
            s = by_addr.get(p)
            if s is None:
                s = make(_Sess)
                s.ptr = s.addr = p
                s.side = side = SIDES[side_no]
                s.label, s.view, s.last = "", None, None  # its view is made just below
                by_addr[p] = s
                seen_by_side[side].append(s)
                count["observer refs"] += 1
                adopted.append((s, 1))
                fresh.append(s)
            else:
                lib.SSL_SESSION_free(p)
                adopted.append((s, 2))
            touched[p] = s
        st.n = 0
        if fresh:  # (an exception before this leaves views to make: _full_state makes them)
            at = self._view.at
            for s in fresh:
                s.view = at(s.ptr)
        if st.overflow:
            st.overflow = 0
            raise SesskitError("observation overflow: one call made more sessions than the helper can pin")
        return adopted

    def _full_state(self) -> Delta:
        at = self._view.at
        for s in self._by_addr.values():
            if s.view is None:
                s.view = at(s.ptr)
        return super()._full_state()

    def _full_cache(self, side: str) -> CacheState:
        lib, null, ctx = self._lib, self._ffi.NULL, self._ctx[side]
        *stats, number = [lib.SSL_CTX_ctrl(ctx, code, 0, null) for code in _CTRL_CODES]
        self._touched = {s.addr: s for s in self._by_addr.values()}
        order = self._walk(side, self._ctx_addr[side])
        if len(order) != number:
            raise SesskitError(
                f"observation inconsistent: SSL_CTX_sess_number says {number} sessions in the "
                f"{side} cache, the list sesskit follows has {len(order)}"
            )
        self._order[side] = order
        self._members[side] = set(order)
        members = self._members_tuple[side] = tuple(order)
        return CacheState(side, number, members, self._new_stats(side, stats))

    def connect(self, resume: str | None = None, client: str | None = None) -> OpResult:
        """The frame's ``connect``, with the SSLs made, both handshakes run and the step read by the C helper.

        The same calls in the same order as :meth:`ObservingEngine.connect`
        (``SSL_new``, memory BIOs, ``SSL_set_session``, the handshake loop of
        :meth:`ObservingEngine._handshake`, each SSL looked at after each of its
        calls), with no Python between flights; then the helper reads what
        :meth:`_finish` would read (``read_step``), and :meth:`_connected`
        turns it into the step.
        """
        if self._C is None or client is not None:  # a reconnect: the frame's calls, pins collected after each
            return super().connect(resume, client)
        with self._lock:
            self._links += 1
            self._opstate = op = ["connect", (resume,), 0, None, self._links]
            self.op_seq += 1
            c, s, made = self._helper_connect(op)
            return OpResult(self._connected(c, s, made[6], made[7]), (c.name, s.name, bool(self._cl.reused)))

    def _connect(self, op: list[Any]) -> None:
        """Picked up after an exception (:meth:`recover`): the helper's connect, if it did not run."""
        if self._C is None or (len(op[1]) > 1 and op[1][1] is not None):
            super()._connect(op)
        else:
            if not op[2]:
                self._helper_connect(op)
            self._collect()  # its pins, if they were not adopted yet

    def _helper_connect(self, op: list[Any]) -> tuple[ObservedSSL, ObservedSSL, list[Any]]:
        """``sk_connect`` for link ``op[4]``; the SSLs it made owned at once (``op[2]`` = 1)."""
        C, k, resume = self._C, op[4], op[1][0]
        c = ObservedSSL(f"c{k}", "client", None, None, None)
        s = ObservedSSL(f"s{k}", "server", None, None, None)
        c.peer, s.peer = s, c
        c.handshaking = s.handshaking = False
        self._begin()
        target = None
        if resume is not None:
            target = self._by_label[resume]
            self._touched[target.addr] = target
        cl, ctx = self._cl, self._ctx
        args = ctx["client"], ctx["server"], self._mem, self._ffi.NULL if target is None else target.ptr
        rc = C.lib.sk_connect(self._st, cl, *args)
        # from here to op[2] = 1 no Python function runs: what the helper made is owned, or the call
        # did not happen (issue 16: an interrupt here leaked two SSLs per connect)
        made = C.ffi.unpack(cl.made, 8)  # ssl, rbio, wbio, session: the client's, then the server's
        c.ptr, c.rbio, c.wbio = made[0], made[2], made[4]
        s.ptr, s.rbio, s.wbio = made[1], made[3], made[5]
        for x in (c, s) if made[0] and made[1] else (c,) if made[0] else (s,) if made[1] else ():
            self._ssls[x.name] = x
            self._n["SSL"] += 1
        out_len = cl.out_len
        for i, x in enumerate((c, s)):
            if out_len[i]:  # not a handshake flight (a TLS 1.3 ticket): fed record by record later
                x.inbox += C.ffi.buffer(cl.out[i], out_len[i])
        op[2], op[3] = 1, made
        if rc != 1:
            self._connect_failed(rc, c, s, made, resume)
        return c, s, made

    def _connect_failed(
        self, rc: int, c: ObservedSSL, s: ObservedSSL, made: list[Any], resume: str | None
    ) -> None:
        """The helper's connect did not finish: adopt its pins, say why (what it made is owned)."""
        if rc == -4:
            raise SesskitError(f"SSL_new/BIO_new failed: {self._errors()}")
        self._current = [c, s]
        if rc == -5:
            raise SesskitError(f"SSL_set_session({c.name}, {resume}) failed: {self._errors()}")
        self._collect()
        for i, x in enumerate((c, s)):
            p = made[6 + i]
            x.sess = self._by_addr[p] if p else None
        raise SesskitError(self._helper_failure(rc, c, s))

    def _connected(self, c: ObservedSSL, s: ObservedSSL, c_sess: Any, s_sess: Any) -> Delta:
        """The step of a connect the helper ran and read: :meth:`_collect` and :meth:`_finish` in one.

        The same steps -- adopt the pins, label the new sessions (client side
        first), follow the caches, report the touched sessions and both SSLs --
        on the values the helper read right after the handshake.  A session the
        cache walk touches besides them (evicted) is read here, as
        :meth:`_finish` does.
        """
        st = self._st
        info = self._C.ffi.unpack(st.info, 4 * st.n)
        adopted = self._adopt_pins()
        by_addr, touched = self._by_addr, self._touched
        # pointer -> (references besides sesskit's, cache, resumable)
        read: dict[Any, tuple[int, int, int]] = {}
        placing: tuple[list[_Sess], list[_Sess], list[_Sess]] = ([], [], [])
        columns = info[1::4], info[2::4], info[3::4]  # references, cache, resumable
        for (x, pins), refs, owner, resumable in zip(adopted, *columns, strict=True):
            refs -= pins  # the helper read the references with its pins in
            read[x.addr] = (refs, owner, resumable)
            if refs > 0 and owner >= 0:
                placing[owner].append(x)
        self._label_seen()  # labels: client side first
        c.sess = by_addr[c_sess] if c_sess else None  # seen, so pinned, by the helper
        s.sess = by_addr[s_sess] if s_sess else None
        caches = self._connected_caches(placing)
        sessions: dict[str, SessionState] = {}
        for p, x in list(touched.items()):
            if x.ptr is None:  # reported freed before
                continue
            got = read.get(p)
            if got is None:  # evicted: touched by the cache walk
                state = self._read_session(x)
            elif got[0] <= 0:
                state = self._release(x)
            else:
                cache = SIDES[got[1]] if 0 <= got[1] < 2 else None
                state = SessionState(x.label, x.side, got[0], cache, bool(got[2]))
            if state != x.last:
                x.last = state
                sessions[x.label] = state
        shutdown = self._cl.shutdown  # read by the helper after the handshake
        ssls = {}
        for i, ssl in enumerate((c, s)):
            on = None if ssl.sess is None else ssl.sess.label
            ssls[ssl.name] = SSLState(ssl.name, ssl.side, on, False, bool(shutdown[i] & SSL_SENT_SHUTDOWN))
        return Delta(sessions, ssls, caches)

    def _connected_caches(self, placing: tuple[list[_Sess], ...]) -> dict[str, CacheState]:
        """Both caches after a connect, from the statistics and sizes the helper read."""
        k = len(_CTRL_CODES)
        ctrl = self._C.ffi.unpack(self._st.ctrl, 2 * k)
        caches: dict[str, CacheState] = {}
        for i, side in enumerate(SIDES):
            stats, number = ctrl[i * k : (i + 1) * k - 1], ctrl[(i + 1) * k - 1]
            members = self._members[side]
            if (
                placing[i]
                or number != len(self._order[side])
                or (members and any(s.label in members for s in self._touched.values()))
            ):
                c = self._cache_state(side, False, stats, number, placing[i])
                if c is not None:
                    caches[side] = c
            elif stats != self._stats[side]:  # the same list (most connects): only the statistics moved
                caches[side] = CacheState(
                    side, number, self._members_tuple[side], self._new_stats(side, stats)
                )
        return caches

    def _helper_failure(self, rc: int, c: ObservedSSL, s: ObservedSSL) -> str:
        cl = self._cl
        for i, x in enumerate((c, s)):
            x.result, x.handshaking, x.fresh = cl.result[i], bool(cl.handshaking[i]), bool(cl.fresh[i])
        if rc == 0:  # stalled: a side failed, or waits for bytes that never come
            return self._handshake_failure(c, s)
        return f"the C observation helper failed (code {rc}) in handshake {c.name}↔{s.name}"

    def _set_now(self, now: int) -> None:
        self._now = now
        if self._C is not None:
            self._st.now = now  # the helper's ticket callbacks read the virtual clock

    def _see_ssl(self, ssl: ObservedSSL) -> None:
        self._touched_ssls[ssl.name] = ssl
        if ssl.ptr is not None:
            ssl.sess = self._see(self._lib.SSL_get_session(ssl.ptr), ssl.side)

    def _session_at(self, p: Any) -> _Sess:
        return self._by_addr[p]

    def _resumable(self, s: _Sess) -> bool:
        return bool(self._lib.SSL_SESSION_is_resumable(s.ptr))

    def _error_string(self, e: int) -> str:
        buf = self._ffi.new("char[256]")
        self._lib.ERR_error_string_n(e, buf, 256)
        return self._ffi.string(buf).decode()

    def _observe_caches(self, full_walk: bool, read_stats: bool) -> dict[str, CacheState]:
        """Bring both caches' member lists up to date; the states of those that changed.

        The statistics are re-read (``SSL_CTX_ctrl``) only when the operation can
        have moved them (``read_stats``); the sizes are always read.  Each touched
        session's cache owner is read once, for both caches.
        """
        if len(self._ctx) < 2:  # closing, or failed while opening
            return {}
        read_stats = read_stats or not self._stats["client"]
        if self._C is not None:  # both contexts in one call
            codes = self._ctrl_codes if read_stats else self._number_code
            n = len(_CTRL_CODES) if read_stats else 1
            self._C.lib.sk_ctrl_many(self._ctrl_ctxs, 2, codes, n, self._ctrl_out)
            values = self._C.ffi.unpack(self._ctrl_out, 2 * n)
            read = {"client": values[:n], "server": values[n:]}
        else:
            ctrl, null, ctx = self._lib.SSL_CTX_ctrl, self._ffi.NULL, self._ctx
            codes_py = _CTRL_CODES if read_stats else (_NUMBER,)
            read = {side: [ctrl(ctx[side], code, 0, null) for code in codes_py] for side in SIDES}
        placing: dict[str, list[_Sess]] = {"client": [], "server": []}
        if not full_walk:
            ctx_side = self._ctx_side
            for s in self._touched.values():
                if s.label and s.ptr is not None:
                    owner = s.view.owner
                    if owner and s.view.references > 1:
                        side = ctx_side.get(owner)
                        if side is not None:
                            placing[side].append(s)
        caches: dict[str, CacheState] = {}
        for side in SIDES:
            *stats, number = read[side]
            if not (read_stats or full_walk or placing[side]) and number == len(self._order[side]):
                members = self._members[side]
                if not members or not any(s.label in members for s in self._touched.values()):
                    continue  # the same size, nothing of it touched, statistics not moved: unchanged
            c = self._cache_state(side, full_walk, stats if read_stats else None, number, placing[side])
            if c is not None:
                caches[side] = c
        return caches

    def _cache_state(
        self, side: str, full_walk: bool, stats: list[int] | None, number: int, placing: list[_Sess]
    ) -> CacheState | None:
        """One cache after the operation (``stats`` None: not re-read); None if nothing changed."""
        last_stats = self._stats[side]
        if stats is None:
            stats = last_stats
        order = self._order[side]
        ctx_addr = self._ctx_addr[side]
        new_order = (
            self._walk(side, ctx_addr) if full_walk else self._update_order(side, ctx_addr, number, placing)
        )
        if len(new_order) != number:
            raise SesskitError(
                f"observation inconsistent: SSL_CTX_sess_number says {number} sessions in the "
                f"{side} cache, the list sesskit follows has {len(new_order)}"
            )
        moved = new_order is not order and new_order != order
        if not moved and stats == last_stats:
            return None
        if moved:
            self._order[side] = new_order
            self._members[side] = set(new_order)
            self._members_tuple[side] = tuple(new_order)
        view = self._new_stats(side, stats) if stats != last_stats else self._stats_view[side]
        # unchanged parts are passed on as the very same objects: nothing is copied twice
        return CacheState(side, number, self._members_tuple[side], view)

    def _new_stats(self, side: str, stats: list[int]) -> MappingProxyType[str, int]:
        """Keep the statistics just read for ``side``; the read-only mapping a CacheState reports."""
        self._stats[side] = stats
        view = self._stats_view[side] = MappingProxyType(dict(zip(_STAT_KEYS, stats, strict=True)))
        return view

    def _owned(self, s: _Sess, ctx_addr: int) -> bool:
        return s.ptr is not None and s.view.owner == ctx_addr and s.view.references > 1

    def _update_order(self, side: str, ctx_addr: int, number: int, placing: list[_Sess]) -> list[str]:
        """The cache list after this operation, re-reading only what it touched.

        ``placing``: the touched sessions this cache holds now.  Returns the very
        same list object when nothing changed (no copy: the cost of an operation
        that leaves the cache alone does not grow with the cache).
        """
        current = self._order[side]
        members = self._members[side]
        leaving = [s for s in self._touched.values() if s.label in members] if members else []
        if not leaving and not placing and number == len(current):
            return current
        order = list(current)
        for s in leaving:
            order.remove(s.label)
        # Sessions nobody touched can only have left from the tail side (eviction,
        # flush) or by an expired lookup: walk from the tail until the count agrees.
        i = len(order) - 1
        while len(order) + len(placing) > number and i >= 0:
            s = self._by_label[order[i]]
            if not self._owned(s, ctx_addr):
                del order[i]
                self._touched[s.addr] = s
            i -= 1
        return self._place(order, placing)

    def _place(self, order: list[str], placing: list[_Sess]) -> list[str]:
        """Insert sessions after the neighbour their ``prev`` link points at."""
        pending = {s.addr: s for s in placing}
        while pending:
            progress = False
            for a, s in list(pending.items()):
                prev = self._ffi.cast(self._t_void_p, s.view.prev)
                if prev in pending:
                    continue
                p = self._by_addr.get(prev)
                if p is None or not p.label or p.label not in order:
                    order.insert(0, s.label)  # prev points into the SSL_CTX: the head
                else:
                    order.insert(order.index(p.label) + 1, s.label)
                del pending[a]
                progress = True
            if not progress:
                raise SesskitError("observation inconsistent: cache list links form a cycle")
        return order

    def _walk(self, side: str, ctx_addr: int) -> list[str]:
        members = [self._by_label[x] for x in self._order[side]]
        members += [s for s in self._touched.values() if s.label and s.label not in self._order[side]]
        members = [s for s in members if self._owned(s, ctx_addr)]
        return self._place([], members)

    # -- what only libssl can do, and how it frees and ages --------------------------
    def _ssl_new(self, name: str, side: str) -> ObservedSSL:
        lib, ffi = self._lib, self._ffi
        ptr = lib.SSL_new(self._ctx[side])
        rbio, wbio = lib.BIO_new(self._mem), lib.BIO_new(self._mem)
        if ptr == ffi.NULL or rbio == ffi.NULL or wbio == ffi.NULL:
            raise SesskitError(f"SSL_new/BIO_new failed: {self._errors()}")
        lib.SSL_set_bio(ptr, rbio, wbio)  # the SSL owns both BIOs from here on
        (lib.SSL_set_accept_state if side == "server" else lib.SSL_set_connect_state)(ptr)
        return ObservedSSL(name, side, ptr, rbio, wbio)

    def clear(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl, "clear")
            self._clear(x, self._opstate)
            return OpResult(self._finish())

    def _clear(self, x: ObservedSSL, op: list[Any]) -> None:
        if not op[2]:
            ok = self._lib.SSL_clear(x.ptr) == 1
            op[2] = 1
            x.cleared = True
            x.inbox.clear()
            if not ok:
                raise SesskitError(f"SSL_clear({x.name}) failed: {self._errors()}")

    def _recover_on(self, name: str, x: ObservedSSL, op: list[Any]) -> None:
        if name == "clear":
            self._clear(x, op)
        else:
            super()._recover_on(name, x, op)

    def flush(self, side: str, at: int) -> OpResult:
        with self._lock:
            self._opstate = op = ["flush", (side, at), 0, None, None]
            self.op_seq += 1
            self._begin()
            self._flush(op)
            return OpResult(self._finish())

    def _flush(self, op: list[Any]) -> None:
        if not op[2]:
            side, at = op[1]
            self._lib.SSL_CTX_flush_sessions(self._ctx[side], self._epoch + (at - self._now))
            op[2] = 1

    def _ssl_free(self, ptr: Any) -> None:
        self._lib.SSL_free(ptr)

    def _ctx_free(self, ctx: Any) -> None:
        self._lib.SSL_CTX_free(ctx)

    def _age(self, s: _Sess, seconds: int) -> None:
        lib = self._lib
        lib.SSL_SESSION_set_time(s.ptr, lib.SSL_SESSION_get_time(s.ptr) - seconds)
