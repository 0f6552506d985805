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
import weakref
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


LIVE_KINDS = ("SSL_CTX", "SSL", "observer refs", "user refs")


class LiveCounts:
    """How many OpenSSL objects (and references) all engines of one kind hold now.

    Each engine module keeps its own (its ``live_objects()``), so a leak test can
    tell which OpenSSL copy leaked.  Each engine counts in its own dict, under its
    own lock (no shared lock on the operation path); an engine collected with
    objects still counted (never closed) leaves its counts here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: weakref.WeakSet[Any] = weakref.WeakSet()
        self._gone = dict.fromkeys(LIVE_KINDS, 0)

    def counter(self, engine: Any) -> dict[str, int]:
        """The dict ``engine`` counts its objects in."""
        n = dict.fromkeys(LIVE_KINDS, 0)
        with self._lock:
            self._engines.add(engine)
        weakref.finalize(engine, self._fold, n)
        return n

    def _fold(self, n: dict[str, int]) -> None:
        with self._lock:
            for k, v in n.items():
                self._gone[k] += v

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            total = dict(self._gone)
            for engine in list(self._engines):
                for k, v in engine._n.items():
                    total[k] += v
            return total


class ObservedSession:
    """A session sesskit has seen and pins; ``view`` reads its calibrated fields.

    ``addr`` is the engine's dict key for it (``ptr`` itself where cffi
    pointers can serve: they hash and compare by address).  ``view`` is a
    :class:`~sesskit.engines._view.View` of the session with at least
    ``references`` and ``owner`` (the SSL_CTX whose cache holds it, or 0).
    """

    __slots__ = ("addr", "label", "last", "ptr", "side", "view")

    def __init__(self, ptr: Any, addr: Any, side: str, view: Any) -> None:
        self.ptr = ptr
        self.addr = addr
        self.side = side
        self.label = ""
        self.view = view
        self.last: SessionState | None = None


class ObservedSSL:
    """One SSL of a link, its two memory BIOs and the bytes its peer sent it."""

    __slots__ = (
        "cleared",
        "conn",
        "freed",
        "fresh",
        "handshaking",
        "inbox",
        "name",
        "peer",
        "ptr",
        "rbio",
        "result",
        "sess",
        "side",
        "wbio",
    )

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
        self.handshaking = True  # until SSL_do_handshake returns 1: flights go straight to its rbio
        self.fresh = False  # a flight was written to its rbio and not yet processed
        self.result = 0  # what the last SSL_do_handshake returned
        self.sess: ObservedSession | None = None  # its session (s->session) when last looked at

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
        self._n = self._live.counter(self)  # live OpenSSL objects, counted per engine
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
        self._ctx_side: dict[int, str] = {}  # SSL_CTX address -> side (a session's cache owner)

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

    def _observe_caches(self, full_walk: bool, read_stats: bool) -> dict[str, CacheState]:
        """Bring both caches up to date; the states of those that changed (by default, one by one)."""
        caches: dict[str, CacheState] = {}
        for side in SIDES:
            c = self._observe_cache(side, full_walk, read_stats)
            if c is not None:
                caches[side] = c
        return caches

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

    def _collect(self) -> None:
        """Adopt what callbacks announced during the call just made (the C helper's pins)."""

    # -- moving bytes -----------------------------------------------------------------
    def _addr(self, p: Any) -> int:
        return int(self._ffi.cast("uintptr_t", p))

    def _drain(self, ssl: ObservedSSL) -> None:
        """Move what ``ssl`` wrote to its peer.

        While the peer is in its handshake (and nothing is queued for it) the
        flight goes straight into the peer's read BIO: a handshake flight is
        fed whole (see :meth:`connect`).  Anything else waits in the peer's
        ``inbox``, to be fed one record at a time.
        """
        lib, buf, wbio, peer = self._lib, self._buf, ssl.wbio, ssl.peer
        while True:
            n = lib.BIO_read(wbio, buf, BUF_SIZE)  # an empty memory BIO returns -1
            if n <= 0:
                return
            if peer is not None and not peer.freed and not peer.cleared:
                if peer.handshaking and not peer.inbox:
                    lib.BIO_write(peer.rbio, buf, n)
                    peer.fresh = True
                else:
                    peer.inbox += self._ffi.buffer(buf, n)
            if n < BUF_SIZE:
                return

    def _feed(self, ssl: ObservedSSL) -> bool:
        """Give ``ssl`` its next pending record."""
        rec = ssl.next_record()
        if not rec:
            return False
        self._lib.BIO_write(ssl.rbio, rec, len(rec))
        return True

    def _call(self, ssl: ObservedSSL, fn: Any, *args: Any) -> tuple[int, int]:
        """One OpenSSL call on ``ssl``; move what it wrote; look at its session."""
        r = fn(ssl.ptr, *args)
        self._collect()
        err = 0 if r > 0 else self._lib.SSL_get_error(ssl.ptr, r)
        self._drain(ssl)
        self._see_ssl(ssl)
        if self._cb_error is not None:
            self._raise_callback_error()
        return r, err

    def _raise_callback_error(self) -> None:
        """A C callback caught an exception (it must never raise into C): raise it now."""
        exc, self._cb_error = self._cb_error, None
        raise SesskitError(f"observation callback failed: {exc!r}") from exc

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

    def _finish(self, full_walk: bool = False, stats: bool = False, look_again: bool = True) -> Delta:
        """Label what was seen, re-read what was touched, and say what changed.

        ``full_walk`` and ``stats`` are hints to ``_observe_cache``: the cache list
        may have been reordered without being touched (virtual time moved), and
        the statistics may have moved (only handshakes and record processing move
        them).  ``look_again=False``: every SSL of the operation was looked at
        right after the last call that could change its session (a handshake).
        """
        if look_again:
            for x in self._current:
                if not x.freed:
                    self._see_ssl(x)
        # One pass each, with everything it needs in locals: this runs after every
        # operation, right after OpenSSL has had the CPU (and the caches) to itself.
        by_label, n = self._by_label, self._label_no
        for side in SIDES:  # labels: client side first, then server
            for s in self._seen[side]:
                n += 1
                s.label = label = f"S{n}"
                by_label[label] = s
        self._label_no = n
        caches = self._observe_caches(full_walk, stats)
        sessions: dict[str, SessionState] = {}
        read = self._read_session
        for s in list(self._touched.values()):
            if s.ptr is None:  # reported freed before
                continue
            st = read(s)
            if st != s.last:
                s.last = st
                sessions[s.label] = st
        ssls = {n: self._ssl_state(x) for n, x in self._touched_ssls.items()}
        self._current = []
        return Delta(sessions, ssls, caches)

    def _read_session(self, s: S) -> SessionState:
        """A pinned session as it is now (released if only sesskit still holds it)."""
        v = s.view
        refs = v.references - 1  # minus the observer reference
        if refs <= 0:
            return self._release(s)
        owner = v.owner
        return SessionState(
            s.label, s.side, refs, self._ctx_side.get(owner) if owner else None, self._resumable(s)
        )

    def _release(self, s: S) -> SessionState:
        """Drop the observer reference of a session nobody else holds: OpenSSL frees it now."""
        del self._by_addr[s.addr]
        self._lib.SSL_SESSION_free(s.ptr)
        self._n["observer refs"] -= 1
        s.ptr = None
        return SessionState(s.label, s.side, 0, None, False, True)

    def _ssl_state(self, x: ObservedSSL) -> SSLState:
        if x.freed:
            return SSLState(x.name, x.side, None, True, False, x.cleared)
        s = x.sess  # looked at by _finish just before
        sent = bool(self._lib.SSL_get_shutdown(x.ptr) & SSL_SENT_SHUTDOWN)
        return SSLState(x.name, x.side, None if s is None else s.label, False, sent, x.cleared)

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
            self._handshake(c, s)
            reused = bool(lib.SSL_session_reused(c.ptr))
            delta = self._finish(stats=True, look_again=False)  # _hs looked after every call
            return OpResult(delta, (c.name, s.name, reused))

    def _handshake(self, c: ObservedSSL, s: ObservedSSL) -> None:
        """Both handshakes to the end, looking at each SSL after each of its calls.

        A handshake flight is fed whole (:meth:`_drain` writes it straight to the
        peer): no session is made and dropped inside one flight, so the same
        sessions are seen as record by record, and the handshake costs what it
        costs without sesskit.
        """
        c_done, s_done = self._hs(c), False
        while not (c_done and s_done):
            moved = False
            if s.fresh and not s_done:
                s_done, moved = self._hs(s), True
            if c.fresh and not c_done:
                c_done, moved = self._hs(c), True
            if not moved:
                raise SesskitError(self._handshake_failure(c, s))

    def _new_ssl(self, name: str, side: str) -> ObservedSSL:
        x = self._ssl_new(name, side)
        self._n["SSL"] += 1
        self._ssls[name] = x
        return x

    def _hs(self, ssl: ObservedSSL) -> bool:
        """One ``SSL_do_handshake``; True when this side's handshake is done.

        Anything else waits for the peer's next flight; a side that failed writes
        an alert (or nothing), the peer stops too, and the loop in :meth:`connect`
        finds nothing left to feed (:meth:`_handshake_failure` says why).
        """
        ssl.fresh = False
        r = ssl.result = self._lib.SSL_do_handshake(ssl.ptr)
        self._drain(ssl)
        self._see_ssl(ssl)
        if self._cb_error is not None:
            self._raise_callback_error()
        if r == 1:
            ssl.handshaking = False
            return True
        return False

    def _handshake_failure(self, *ssls: ObservedSSL) -> str:
        for x in ssls:
            if x.handshaking:
                err = self._lib.SSL_get_error(x.ptr, x.result)
                if err not in (SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE):
                    return f"SSL_do_handshake on {x.name} failed (error {err}): {self._errors()}"
        names = "↔".join(x.name for x in ssls)
        return f"handshake {names} stalled: {self._errors()}"

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
                self._n["user refs"] += 1
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
        self._n["SSL"] -= 1
        x.conn = x.ptr = x.rbio = x.wbio = x.sess = None
        x.freed = True
        x.inbox.clear()

    def session_free(self, session: str) -> OpResult:
        with self._lock:
            self._begin()
            s = self._by_label[session]
            self._touched[s.addr] = s
            self._lib.SSL_SESSION_free(s.ptr)
            self._user_refs[session] -= 1
            self._n["user refs"] -= 1
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
                    self._n["user refs"] -= 1
            self._user_refs.clear()
            for s in self._by_addr.values():
                lib.SSL_SESSION_free(s.ptr)
                self._n["observer refs"] -= 1
            self._by_addr.clear()
            for ctx in self._ctx.values():
                self._ctx_free(ctx)
                self._n["SSL_CTX"] -= 1
            self._ctx.clear()

    def sessions_alive(self) -> Iterable[str]:
        return [s.label for s in self._by_addr.values()]
