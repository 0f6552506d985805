"""What the two real engines share: the operation frame around every OpenSSL call.

:mod:`.libssl` (the system libssl through cffi) and :mod:`.pyopenssl` (the
OpenSSL inside cryptography, through pyOpenSSL) drive two different copies of
OpenSSL, but observe them the same way (DESIGN.md, "How the real engines
observe"), so that both produce the same snapshots for the same operations:

- per link, two SSLs joined by memory BIOs; Python moves the bytes between
  them and, outside the handshake, **one TLS record at a time**, so every
  session an operation creates is seen before a later record can drop it;
- every session seen is pinned by one *observer reference*, so its memory is
  never read after OpenSSL frees it; the reported refcount excludes it, and
  when the rest reaches 0 the session is reported freed and the observer
  reference is dropped;
- an operation is framed by :meth:`ObservingEngine._begin` and
  :meth:`ObservingEngine._finish`: the SSLs it works on are looked at after
  every call (:meth:`ObservingEngine._call`), new sessions get labels in the
  order first seen (client side first, then server), and only what it
  touched is re-read -- observation costs what the operation changed, not
  what is alive.

What really differs is left to small hooks each engine implements: how a
session is found and pinned (``_see_ssl``), whether it is resumable, how the
caches are followed and the statistics read (``_observe_cache``), how the C
objects are freed, how a session's time is moved (virtual time) and which
operations the engine cannot do (``clear``/``flush``).

Nothing here holds a pointer of either copy: each engine passes its own
``ffi``/``lib``, and a pointer never crosses between them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from ..errors import SesskitError
from ..trace import CacheState, Delta, SessionState, SSLState
from .base import OpResult

# The same in every OpenSSL from 1.1.1 to 4.0, in both copies (OPENSSL_FACTS.md "Control constants").
SSL_SENT_SHUTDOWN = 1
SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE, SSL_ERROR_ZERO_RETURN = 2, 3, 6
SIDES = ("client", "server")  # labels are given in this order
RECORD_HEADER = 5
BUF_SIZE = 1 << 17


class LiveCounts:
    """How many OpenSSL objects (and references) all engines of one kind hold now.

    Each engine module keeps its own (its ``live_objects()``), so a leak test can
    tell which OpenSSL copy leaked.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = {"SSL_CTX": 0, "SSL": 0, "observer refs": 0, "user refs": 0}

    def add(self, kind: str, n: int) -> None:
        with self._lock:
            self._n[kind] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._n)


class ObservedSession:
    """A session sesskit has seen and pins; ``*word`` point at calibrated offsets.

    ``addr`` is the engine's dict key for it (``ptr`` itself where cffi
    pointers can serve: they hash and compare by address).
    """

    __slots__ = ("addr", "label", "last", "ownerword", "ptr", "refword", "side")

    def __init__(self, ptr: Any, addr: Any, side: str, refword: Any, ownerword: Any) -> None:
        self.ptr = ptr
        self.addr = addr
        self.side = side
        self.label = ""
        self.refword = refword
        self.ownerword = ownerword
        self.last: SessionState | None = None


class ObservedSSL:
    """One SSL of a link, its two memory BIOs and the bytes its peer sent it."""

    __slots__ = ("cleared", "conn", "freed", "inbox", "name", "peer", "ptr", "rbio", "side", "wbio")

    def __init__(self, name: str, side: str, ptr: Any, rbio: Any, wbio: Any, conn: Any = None) -> None:
        self.name = name
        self.side = side
        self.ptr = ptr
        self.rbio = rbio
        self.wbio = wbio
        self.conn = conn  # a Python object owning the SSL and its BIOs (pyOpenSSL's Connection), if any
        self.inbox = bytearray()  # bytes sent to this SSL, not yet fed to it
        self.peer: ObservedSSL | None = None
        self.freed = False
        self.cleared = False

    def next_record(self) -> bytes | None:
        if len(self.inbox) < RECORD_HEADER:
            return None
        n = RECORD_HEADER + ((self.inbox[3] << 8) | self.inbox[4])
        if len(self.inbox) < n:
            return None
        rec = bytes(self.inbox[:n])
        del self.inbox[:n]
        return rec


S = TypeVar("S", bound=ObservedSession)


class ObservingEngine(Generic[S]):
    """The operation frame, the record queues and the public operations of a real engine.

    A subclass sets ``_ffi``/``_lib`` to its own OpenSSL copy, calls
    :meth:`_init_frame`, opens its two SSL_CTXs with :meth:`_open`, and
    implements the hooks below (they raise ``NotImplementedError`` here) and
    ``clear``/``flush``, which only one engine can perform.
    """

    _live: LiveCounts
    _ffi: Any
    _lib: Any

    def _init_frame(self, epoch: int) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._buf = self._ffi.new("char[]", BUF_SIZE)
        self._epoch = epoch  # OpenSSL's frozen "now"
        self._now = 0  # virtual seconds
        self._by_addr: dict[Any, S] = {}
        self._by_label: dict[str, S] = {}
        self._label_no = 0
        self._user_refs: dict[str, int] = {}
        self._ssls: dict[str, ObservedSSL] = {}
        self._links = 0
        self._order: dict[str, list[str]] = {"client": [], "server": []}
        self._cache_last: dict[str, CacheState] = {}
        self._seen: dict[str, list[S]] = {"client": [], "server": []}
        self._touched: dict[Any, S] = {}
        self._touched_ssls: dict[str, ObservedSSL] = {}
        self._cb_error: BaseException | None = None  # raised by a C callback, re-raised after the call
        self._current: list[ObservedSSL] = []
        self._ctx: dict[str, Any] = {}
        self._ctx_addr: dict[str, int] = {}

    def _open(self, cert: Any, key: Any) -> None:
        """Make both SSL_CTXs (``_make_ctx`` registers each); on failure free what was made."""
        try:
            for side in SIDES:
                self._make_ctx(side, cert, key)
        except BaseException:
            self.close()
            raise

    # -- hooks: what each engine does its own way ----------------------------------
    def _make_ctx(self, side: str, cert: Any, key: Any) -> None:
        """Set up the SSL_CTX of ``side``, count it, register it in ``_ctx`` and ``_ctx_addr``."""
        raise NotImplementedError

    def _ssl_new(self, name: str, side: str) -> ObservedSSL:
        """``SSL_new`` on the SSL_CTX of ``side``, over two memory BIOs, in its role."""
        raise NotImplementedError

    def _see_ssl(self, ssl: ObservedSSL) -> None:
        """Look at an SSL after a call: note it, pin its session if new, mark it touched."""
        raise NotImplementedError

    def _session_at(self, p: Any) -> S:
        """The (already pinned) session at pointer ``p``."""
        raise NotImplementedError

    def _resumable(self, s: S) -> bool:
        """``SSL_SESSION_is_resumable`` of a pinned session."""
        raise NotImplementedError

    def _observe_cache(self, side: str, full_walk: bool, read_stats: bool) -> CacheState | None:
        """Bring the cache of ``side`` up to date; return its state if it changed."""
        raise NotImplementedError

    def _age(self, s: S, seconds: int) -> None:
        """Move the session's time ``seconds`` back (virtual time runs forward)."""
        raise NotImplementedError

    def _ssl_free(self, ptr: Any) -> None:
        """``SSL_free`` (which frees the BIOs too)."""
        raise NotImplementedError

    def _ctx_free(self, ctx: Any) -> None:
        """``SSL_CTX_free``."""
        raise NotImplementedError

    def _error_string(self, e: int) -> str:
        """One error code of OpenSSL's queue, in words."""
        raise NotImplementedError

    # -- moving bytes -----------------------------------------------------------------
    def _addr(self, p: Any) -> int:
        return int(self._ffi.cast("uintptr_t", p))

    def _drain(self, ssl: ObservedSSL) -> None:
        read, buf, wbio, peer = self._lib.BIO_read, self._buf, ssl.wbio, ssl.peer
        while True:
            n = read(wbio, buf, BUF_SIZE)  # an empty memory BIO returns -1
            if n <= 0:
                return
            if peer is not None and not peer.freed and not peer.cleared:
                peer.inbox += self._ffi.buffer(buf, n)
            if n < BUF_SIZE:
                return

    def _feed(self, ssl: ObservedSSL, whole: bool = False) -> bool:
        """Give ``ssl`` its next pending record (or everything pending)."""
        if whole:
            rec = bytes(ssl.inbox)
            ssl.inbox.clear()
        else:
            rec = ssl.next_record() or b""
        if not rec:
            return False
        self._lib.BIO_write(ssl.rbio, rec, len(rec))
        return True

    def _call(self, ssl: ObservedSSL, fn: Any, *args: Any) -> tuple[int, int]:
        """One OpenSSL call on ``ssl``; move what it wrote; look at its session."""
        r = fn(ssl.ptr, *args)
        err = 0 if r > 0 else self._lib.SSL_get_error(ssl.ptr, r)
        self._drain(ssl)
        self._see_ssl(ssl)
        if self._cb_error is not None:
            exc, self._cb_error = self._cb_error, None
            raise SesskitError(f"observation callback failed: {exc!r}") from exc
        return r, err

    def _errors(self) -> str:
        """Drain OpenSSL's error queue into one line."""
        out = []
        while True:
            e = self._lib.ERR_get_error()
            if not e:
                break
            out.append(self._error_string(e))
        return "; ".join(out) or "no OpenSSL error queued"

    # -- operation frame -----------------------------------------------------------
    def _begin(self, *ssls: ObservedSSL) -> None:
        self._seen = {"client": [], "server": []}
        self._touched = {}
        self._touched_ssls = {}
        self._current = [x for x in ssls if x is not None]
        for x in self._current:
            self._see_ssl(x)

    def _finish(self, full_walk: bool = False, stats: bool = False) -> Delta:
        """Label what was seen, re-read what was touched, and say what changed.

        ``full_walk`` and ``stats`` are hints to ``_observe_cache``: the cache list
        may have been reordered without being touched (virtual time moved), and
        the statistics may have moved (only handshakes and record processing move
        them).
        """
        for x in self._current:
            if not x.freed:
                self._see_ssl(x)
        for side in SIDES:  # labels: client side first, then server
            for s in self._seen[side]:
                self._label_no += 1
                s.label = f"S{self._label_no}"
                self._by_label[s.label] = s
        caches: dict[str, CacheState] = {}
        for side in SIDES:
            c = self._observe_cache(side, full_walk, stats)
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
                self._lib.SSL_SESSION_free(s.ptr)  # drop the observer reference: really freed now
                self._live.add("observer refs", -1)
                s.ptr = None
        ssls = {n: self._ssl_state(x) for n, x in self._touched_ssls.items()}
        self._current = []
        return Delta(sessions=sessions, ssls=ssls, caches=caches)

    def _read(self, s: S) -> SessionState:
        if s.ptr is None:
            assert s.last is not None
            return s.last
        refs = int(s.refword[0]) - 1  # minus the observer reference
        if refs <= 0:
            return SessionState(s.label, s.side, 0, None, False, True)
        owner = int(s.ownerword[0])
        cache = None
        if owner:
            for side, ctx_addr in self._ctx_addr.items():
                if owner == ctx_addr:
                    cache = side
        return SessionState(s.label, s.side, refs, cache, self._resumable(s))

    def _ssl_state(self, x: ObservedSSL) -> SSLState:
        if x.freed:
            return SSLState(x.name, x.side, None, True, False, x.cleared)
        p = self._lib.SSL_get_session(x.ptr)
        label = None if p == self._ffi.NULL else self._session_at(p).label
        sent = bool(self._lib.SSL_get_shutdown(x.ptr) & SSL_SENT_SHUTDOWN)
        return SSLState(x.name, x.side, label, False, sent, x.cleared)

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
                # A handshake flight is fed whole: no session is made and dropped inside
                # one flight, so the same sessions are seen as record by record (and the
                # handshake costs what it costs without sesskit).
                if not s_done and self._feed(s, whole=True):
                    s_done, moved = self._hs(s), True
                if not c_done and self._feed(c, whole=True):
                    c_done, moved = self._hs(c), True
                if not moved:
                    raise SesskitError(f"handshake {c.name}↔{s.name} stalled: {self._errors()}")
            reused = bool(lib.SSL_session_reused(c.ptr))
            delta = self._finish(stats=True)
            return OpResult(delta, (c.name, s.name, reused))

    def _new_ssl(self, name: str, side: str) -> ObservedSSL:
        x = self._ssl_new(name, side)
        self._live.add("SSL", 1)
        self._ssls[name] = x
        return x

    def _hs(self, ssl: ObservedSSL) -> bool:
        r, err = self._call(ssl, self._lib.SSL_do_handshake)
        if r == 1:
            return True
        if err in (SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE):
            return False
        raise SesskitError(f"SSL_do_handshake on {ssl.name} failed (error {err}): {self._errors()}")

    def _op(self, name: str) -> ObservedSSL:
        x = self._ssls[name]
        self._begin(x)
        return x

    def get0(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl)
            p = self._lib.SSL_get_session(x.ptr)
            delta = self._finish()
            return OpResult(delta, None if p == self._ffi.NULL else self._session_at(p).label)

    def get1(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl)
            p = self._lib.SSL_get1_session(x.ptr)
            label = None
            if p != self._ffi.NULL:
                s = self._session_at(p)  # seen (pinned) when the operation began
                delta = self._finish()
                label = s.label
                self._user_refs[label] = self._user_refs.get(label, 0) + 1
                self._live.add("user refs", 1)
            else:
                delta = self._finish()
            return OpResult(delta, label)

    def read(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl)
            while self._feed(x):
                r, err = self._call(x, self._lib.SSL_read, self._buf, BUF_SIZE)
                if r <= 0 and err not in (SSL_ERROR_WANT_READ, SSL_ERROR_ZERO_RETURN):
                    self._lib.ERR_clear_error()
                    break
            return OpResult(self._finish(stats=True))

    def shutdown(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl)
            lib = self._lib
            if not lib.SSL_get_shutdown(x.ptr) & SSL_SENT_SHUTDOWN:
                self._call(x, lib.SSL_shutdown)
            else:
                while self._feed(x):
                    r, _ = self._call(x, lib.SSL_shutdown)
                    if r == 1:
                        break
            lib.ERR_clear_error()
            return OpResult(self._finish(stats=True))

    def free(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl)
            self._free_ssl(x)
            return OpResult(self._finish())

    def _free_ssl(self, x: ObservedSSL) -> None:
        self._ssl_free(x.ptr)  # also frees its BIOs: never touch them again
        self._live.add("SSL", -1)
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
            self._live.add("user refs", -1)
            return OpResult(self._finish())

    def advance(self, seconds: int) -> OpResult:
        with self._lock:
            self._begin()
            self._now += seconds
            for s in sorted(self._by_addr.values(), key=lambda s: int(s.label[1:])):
                self._age(s, seconds)
            return OpResult(self._finish(full_walk=True))

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
                    self._live.add("user refs", -1)
            self._user_refs.clear()
            for s in self._by_addr.values():
                lib.SSL_SESSION_free(s.ptr)
                self._live.add("observer refs", -1)
            self._by_addr.clear()
            for ctx in self._ctx.values():
                self._ctx_free(ctx)
                self._live.add("SSL_CTX", -1)
            self._ctx.clear()

    def sessions_alive(self) -> Iterable[str]:
        return [s.label for s in self._by_addr.values()]
