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
        "fed",
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
        self.fresh = side == "client"  # a flight (for a client: the start) waits to be processed
        self.fed = False  # a record was written to its rbio and not yet processed
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


def _client_of(op: list[Any]) -> str:
    """The client SSL of a connect: a new ``c<link>``, or the one ``connect(client=...)`` named."""
    args = op[1]
    return str(args[1]) if len(args) > 1 and args[1] is not None else f"c{op[4]}"


def _label_number(s: ObservedSession) -> int:
    return int(s.label[1:]) if s.label else 1 << 62


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
        self._user_refs: dict[S, int] = {}  # references the user took with get1, by session
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
        # The operation under way, for recover(): [name, args, calls made, last result, extra];
        # op_seq counts operations begun (a Lab compares it to tell "never began").
        self._opstate: list[Any] = ["initial", (), 0, None, None]
        self.op_seq = 0

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
        ssl.fed = True
        return True

    def _call(self, ssl: ObservedSSL, fn: Any, *args: Any) -> tuple[int, int]:
        """One OpenSSL call on ``ssl``; move what it wrote; look at its session."""
        r = fn(ssl.ptr, *args)
        ssl.fed = False
        op = self._opstate
        op[2] += 1
        op[3] = r
        self._collect()
        err = 0 if r > 0 else self._lib.SSL_get_error(ssl.ptr, r)
        self._after_call(ssl)
        return r, err

    def _after_call(self, ssl: ObservedSSL) -> None:
        """What follows each call: move what it wrote, look at its session (again: harmless)."""
        self._drain(ssl)
        self._see_ssl(ssl)
        if self._cb_error is not None:
            self._raise_callback_error()

    def _raise_callback_error(self) -> None:
        """A C callback caught an exception (it must never raise into C): raise it now."""
        exc, self._cb_error = self._cb_error, None
        assert exc is not None
        if not isinstance(exc, Exception):  # KeyboardInterrupt and the like: as they are
            raise exc
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
        self._label_seen()
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

    def _label_seen(self) -> None:
        """Label the sessions first seen in this operation: client side first, then server."""
        by_label, n = self._by_label, self._label_no
        for side in SIDES:
            for s in self._seen[side]:
                if not s.label:
                    n += 1
                    s.label = label = f"S{n}"
                    by_label[label] = s
        self._label_no = n
        self._seen = {"client": [], "server": []}

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

    def connect(self, resume: str | None = None, client: str | None = None) -> OpResult:
        with self._lock:
            self._links += 1
            self._opstate = op = ["connect", (resume, client), 0, None, self._links]
            self.op_seq += 1
            self._connect(op)
            c, s = self._ssls[_client_of(op)], self._ssls[f"s{op[4]}"]
            delta = self._finish(stats=True, look_again=False)  # _hs looked after every call
            return OpResult(delta, (c.name, s.name, bool(self._lib.SSL_session_reused(c.ptr))))

    def _connect(self, op: list[Any]) -> None:
        """The SSLs of link ``op[4]`` made (those not made yet), then the handshake run (or resumed).

        ``op[2]`` is 1 once ``SSL_set_session`` succeeded.  Everything here can be
        picked up where an exception left it (:meth:`recover`).
        """
        k, resume = op[4], op[1][0]
        again = _client_of(op) != f"c{k}"  # an SSL reset by SSL_clear, connected again
        if again:
            c = self._ssls[_client_of(op)]
            if c.cleared:  # re-armed for a new handshake, once: its old server is no longer its peer
                if c.peer is not None and c.peer.peer is c:
                    c.peer.peer = None
                c.peer = None
                c.inbox.clear()
                c.fed, c.handshaking, c.fresh, c.cleared = False, True, True, False
        else:
            c = self._ssls.get(f"c{k}") or self._new_ssl(f"c{k}", "client")
        s = self._ssls.get(f"s{k}") or self._new_ssl(f"s{k}", "server")
        if c.peer is None:
            c.peer, s.peer = s, c
            self._begin(c, s)
        else:  # picked up again: look at both, move what they wrote
            self._current = [c, s]
            for x in (c, s):
                self._after_call(x)
        if resume is not None and not op[2]:
            target = self._by_label[resume]
            self._touched[target.addr] = target
            if self._lib.SSL_set_session(c.ptr, target.ptr) != 1:
                raise SesskitError(f"SSL_set_session({c.name}, {resume}) failed: {self._errors()}")
            op[2] = 1
            self._see_ssl(c)
        self._handshake(c, s)

    def _handshake(self, c: ObservedSSL, s: ObservedSSL) -> None:
        """Both handshakes to the end, looking at each SSL after each of its calls.

        A handshake flight is fed whole (:meth:`_drain` writes it straight to the
        peer): no session is made and dropped inside one flight, so the same
        sessions are seen as record by record, and the handshake costs what it
        costs without sesskit.  The client starts (it is ``fresh`` when made).
        """
        while c.handshaking or s.handshaking:
            moved = False
            if s.fresh and s.handshaking:
                self._hs(s)
                moved = True
            if c.fresh and c.handshaking:
                self._hs(c)
                moved = True
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
        if r == 1:
            ssl.handshaking = False
        self._collect()  # the C helper's pins, when its callbacks are in place (a reconnect)
        self._after_call(ssl)
        return r == 1

    def _handshake_failure(self, *ssls: ObservedSSL) -> str:
        for x in ssls:
            if x.handshaking:
                err = self._lib.SSL_get_error(x.ptr, x.result)
                if err not in (SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE):
                    return f"SSL_do_handshake on {x.name} failed (error {err}): {self._errors()}"
        names = "↔".join(x.name for x in ssls)
        return f"handshake {names} stalled: {self._errors()}"

    def _op(self, name: str, op: str, *args: Any) -> ObservedSSL:
        """Begin operation ``op`` on SSL ``name`` (noted for :meth:`recover`)."""
        self._opstate = [op, (name, *args), 0, None, None]
        self.op_seq += 1
        x = self._ssls[name]
        self._begin(x)
        return x

    def get0(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl, "get0")
            delta = self._finish()
            return OpResult(delta, self._label_of(self._lib.SSL_get_session(x.ptr)))

    def _label_of(self, p: Any) -> str | None:
        return None if p == self._ffi.NULL else self._session_at(p).label

    def get1(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl, "get1")
            self._get1(x, self._opstate)
            delta = self._finish()
            return OpResult(delta, self._label_of(self._opstate[3]))

    def _get1(self, x: ObservedSSL, op: list[Any]) -> None:
        """``SSL_get1_session``, and the reference it took counted (once, whatever interrupts)."""
        if not op[2]:
            p = self._lib.SSL_get1_session(x.ptr)
            op[2], op[3] = 1, p
        p = op[3]
        if p != self._ffi.NULL and op[2] == 1:
            s = self._session_at(p)  # seen (pinned) when the operation began
            self._user_refs[s] = self._user_refs.get(s, 0) + 1
            self._n["user refs"] += 1
            op[2] = 2

    def read(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl, "read")
            self._read(x)
            return OpResult(self._finish(stats=True))

    def _read(self, x: ObservedSSL) -> None:
        """``SSL_read`` record by record, until none is left (picked up where it stopped)."""
        while x.fed or self._feed(x):
            r, err = self._call(x, self._lib.SSL_read, self._buf, BUF_SIZE)
            if r <= 0 and err not in (SSL_ERROR_WANT_READ, SSL_ERROR_ZERO_RETURN):
                self._lib.ERR_clear_error()
                break

    def shutdown(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl, "shutdown")
            self._shutdown(x, self._opstate)
            return OpResult(self._finish(stats=True))

    def _shutdown(self, x: ObservedSSL, op: list[Any]) -> None:
        lib = self._lib
        if op[4] is None:  # the first call (send close_notify), or a later one (read the peer's)?
            op[4] = not lib.SSL_get_shutdown(x.ptr) & SSL_SENT_SHUTDOWN
        if op[4]:
            if not op[2]:
                self._call(x, lib.SSL_shutdown)
        elif op[3] != 1:
            while x.fed or self._feed(x):
                r, _ = self._call(x, lib.SSL_shutdown)
                if r == 1:
                    break
        lib.ERR_clear_error()

    def set_session(self, ssl: str, session: str) -> OpResult:
        with self._lock:
            x = self._op(ssl, "set_session", session)
            self._set_session(x, self._opstate)
            return OpResult(self._finish())

    def _set_session(self, x: ObservedSSL, op: list[Any]) -> None:
        """``SSL_set_session`` on an existing SSL (once, whatever interrupts)."""
        target = self._by_label[op[1][1]]
        self._touched[target.addr] = target
        if not op[2]:
            ok = self._lib.SSL_set_session(x.ptr, target.ptr) == 1
            op[2] = 1
            if not ok:
                raise SesskitError(f"SSL_set_session({x.name}, {target.label}) failed: {self._errors()}")
        self._see_ssl(x)

    def free(self, ssl: str) -> OpResult:
        with self._lock:
            x = self._op(ssl, "free")
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
            self._opstate = op = ["session_free", (session,), 0, None, None]
            self.op_seq += 1
            self._begin()
            self._session_free(op)
            return OpResult(self._finish())

    def _session_free(self, op: list[Any]) -> None:
        s = self._by_label[op[1][0]]
        self._touched[s.addr] = s
        if not op[2]:
            self._lib.SSL_SESSION_free(s.ptr)
            self._user_refs[s] -= 1
            self._n["user refs"] -= 1
            op[2] = 1

    def advance(self, seconds: int) -> OpResult:
        with self._lock:
            # op[2]: how many sessions were aged; op[3]: their order; op[4]: the clock after
            self._opstate = op = ["advance", (seconds,), 0, None, self._now + seconds]
            self.op_seq += 1
            self._begin()
            self._advance(op)
            return OpResult(self._finish(full_walk=True))

    def _advance(self, op: list[Any]) -> None:
        """Age every live session in label order (so eviction order is reproducible), then move the clock."""
        seconds = op[1][0]
        if op[3] is None:
            op[3] = sorted(self._by_addr.values(), key=_label_number)
        order = op[3]
        i = op[2]
        while i < len(order):
            self._age(order[i], seconds)
            i += 1
            op[2] = i
        self._set_now(op[4])

    def _set_now(self, now: int) -> None:
        """The virtual clock (the engine's callbacks read it)."""
        self._now = now

    # -- an operation interrupted --------------------------------------------------------
    def recover(self) -> OpResult:
        """Finish the operation an exception interrupted; everything as it is now, and its value.

        Every operation notes how far it got (``_opstate``) next to each OpenSSL call that
        changes something, with no Python function called in between, so an exception
        raised at any call leaves it resumable: this does what is left (the rest of a
        handshake, of the records, of the aging), adopts any pins, labels every session
        seen, and then looks at *everything*: the delta returned holds the state of every
        session, SSL and cache (the Lab keeps what differs from its trace).
        """
        with self._lock:
            self._collect()
            op = self._opstate
            name, args = op[0], op[1]
            value: Any = None
            if name == "connect":
                self._connect(op)
                c = self._ssls[_client_of(op)]
                value = (c.name, f"s{op[4]}", bool(self._lib.SSL_session_reused(c.ptr)))
            elif name == "advance":
                self._advance(op)
            elif name == "session_free":
                self._session_free(op)
            elif name == "flush":
                self._flush(op)
            elif name != "initial":
                x = self._ssls[args[0]]
                self._current = [x]
                if name == "free":
                    if not x.freed:
                        self._free_ssl(x)
                else:
                    self._after_call(x)
                    self._recover_on(name, x, op)
                    if name == "get0":
                        value = self._label_of(self._lib.SSL_get_session(x.ptr))
            self._label_seen()
            delta = self._full_state()
            if name == "get1":
                value = self._label_of(op[3])
            self._current = []
            return OpResult(delta, value)

    def _recover_on(self, name: str, x: ObservedSSL, op: list[Any]) -> None:
        """The rest of an operation on one SSL (``clear`` is the engine's own)."""
        if name == "get1":
            self._get1(x, op)
        elif name == "read":
            self._read(x)
        elif name == "shutdown":
            self._shutdown(x, op)
        elif name == "set_session":
            self._set_session(x, op)

    def _full_state(self) -> Delta:
        """Every session, SSL and cache as it is now (after :meth:`recover` finished an operation)."""
        for x in self._ssls.values():
            if not x.freed:
                self._see_ssl(x)
        self._label_seen()  # sessions only now seen
        sessions: dict[str, SessionState] = {}
        for label, s in self._by_label.items():
            if s.ptr is None:
                st = SessionState(label, s.side, 0, None, False, True)
            else:
                self._touched[s.addr] = s
                st = self._read_session(s)
            s.last = sessions[label] = st
        caches = {side: self._full_cache(side) for side in SIDES}
        ssls = {name: self._ssl_state(x) for name, x in self._ssls.items()}
        self._touched = {}
        return Delta(sessions, ssls, caches)

    def _full_cache(self, side: str) -> CacheState:
        """One cache, walked whole, with its statistics read again."""
        raise NotImplementedError

    def _flush(self, op: list[Any]) -> None:
        """``SSL_CTX_flush_sessions`` of ``flush`` (engines that have it), if not made yet."""
        raise NotImplementedError

    # -- teardown ------------------------------------------------------------------
    def close(self) -> None:
        """Free every SSL, every reference sesskit or its user holds, and both SSL_CTXs.

        Each object is forgotten as it is freed: if an exception stops it, calling it
        again goes on where it stopped.
        """
        with self._lock:
            if self._closed:
                return
            self._collect()
            lib, n = self._lib, self._n
            for x in list(self._ssls.values()):
                if not x.freed:
                    self._free_ssl(x)
            refs = self._user_refs
            while refs:
                s = next(iter(refs))
                while refs[s] > 0:
                    lib.SSL_SESSION_free(s.ptr)
                    n["user refs"] -= 1
                    refs[s] -= 1
                del refs[s]
            pins = self._by_addr
            while pins:
                _, s = pins.popitem()
                lib.SSL_SESSION_free(s.ptr)
                n["observer refs"] -= 1
            ctxs = self._ctx
            while ctxs:
                side = next(iter(ctxs))
                self._ctx_free(ctxs[side])
                del ctxs[side]
                n["SSL_CTX"] -= 1
            self._closed = True

    def sessions_alive(self) -> Iterable[str]:
        return [s.label for s in self._by_addr.values()]
