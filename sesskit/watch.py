"""Watch your own pyOpenSSL objects: the sessions behind them, step by step.

:func:`watch` attaches to the ``OpenSSL.SSL`` Contexts, Connections and
Sessions *your* code made and records a :class:`~sesskit.Trace` of their
SSL_SESSIONs -- refcounts, cache membership, resumability, cache statistics --
read from pyOpenSSL's own OpenSSL, the way the ``pyopenssl`` engine reads them
(calibrated offsets, observer references; see :mod:`sesskit.engines.pyopenssl`).
It answers "why did my session not resume?":

- ``conn.get_session()`` returns a :class:`OpenSSL.SSL.Session` that owns a
  ``SSL_get1_session`` reference (shown as a ``get1`` ref); the session is
  freed when the Session object is garbage-collected, not before;
- a Connection that is garbage-collected is ``SSL_free``'d; if it never called
  ``shutdown()`` that close is *dirty*: its session is removed from the cache
  and marked not resumable -- the next ``set_session`` silently does a full
  handshake;
- a Session keeps its Context alive (``Session._context``), and with it the
  Context's cache.

The watcher holds only weak references to your objects, so it never changes
when Python frees them; it pins each SSL_SESSION it has seen with one observer
reference (never shown in the counts) so that it never reads freed memory.

Example
-------
>>> w = sesskit.watch(server=server_ctx, client=client_ctx)   # doctest: +SKIP
>>> w.add(client_conn, server_conn)                            # doctest: +SKIP
>>> ...  # your handshake; every wrapped call records a step
>>> w.snapshot("after handshake").sessions                    # doctest: +SKIP
>>> w.trace                                                    # doctest: +SKIP
"""

from __future__ import annotations

import sys
import threading
import types
import weakref
from typing import Any

from .errors import InvalidOperation, SesskitError
from .trace import CacheState, Delta, RefState, SessionState, Snapshot, SSLState, Trace

__all__ = ["WRAPPED", "Watch", "watch"]

#: Connection methods that process records or change sessions: wrapped to snapshot after each call.
WRAPPED = (
    "do_handshake",
    "recv",
    "read",
    "recv_into",
    "send",
    "write",
    "sendall",
    "shutdown",
    "set_session",
    "get_session",
)
_SENT_SHUTDOWN = 1


def watch(*objects: Any, server: Any = None, client: Any = None, wrap: bool = True) -> Watch:
    """Start watching pyOpenSSL objects; returns a :class:`Watch`.

    Parameters
    ----------
    *objects : OpenSSL.SSL.Connection or OpenSSL.SSL.Session
        Connections and Sessions to follow (more with :meth:`Watch.add`).
    server, client : OpenSSL.SSL.Context, optional
        The server and client Contexts: their session caches are shown, and
        they tell which side each Connection is.
    wrap : bool
        Record a step after each call of a Connection method that can change a
        session (:data:`WRAPPED`); otherwise steps are taken only by
        :meth:`Watch.snapshot`.

    Returns
    -------
    Watch
        Call :meth:`Watch.snapshot` at any point; read :attr:`Watch.trace`.
    """
    return Watch(*objects, server=server, client=client, wrap=wrap)


class _Pinned:
    __slots__ = ("label", "last", "ptr", "side", "words")

    def __init__(self, ptr: Any, side: str, words: dict[str, Any]) -> None:
        self.ptr = ptr
        self.side = side
        self.words = words
        self.label = ""
        self.last: SessionState | None = None


class _Conn:
    __slots__ = ("freed", "name", "ref", "sent", "side")

    def __init__(self, conn: Any, name: str, side: str) -> None:
        self.ref = weakref.ref(conn)
        self.name = name
        self.side = side
        self.freed = False
        self.sent = False


class _SessionObj:
    __slots__ = ("id", "label", "ref", "released", "via")

    def __init__(self, obj: Any, ref_id: int, via: str) -> None:
        self.ref = weakref.ref(obj)
        self.id = ref_id
        self.via = via
        self.label = ""
        self.released = False


class Watch:
    """A recorder attached to pyOpenSSL objects (made by :func:`watch`).

    Attributes
    ----------
    trace : Trace
        One step per snapshot: ``op`` is the pyOpenSSL call (e.g.
        ``"Connection.do_handshake"``) or ``"snapshot"``; ``why`` says what
        changed in words (refcounts, resumability, caches, frees by GC).
    openssl_version : str
        pyOpenSSL's OpenSSL, e.g. ``"OpenSSL 4.0.3 ... (pyOpenSSL 26.4.0)"``.
    """

    def __init__(self, *objects: Any, server: Any = None, client: Any = None, wrap: bool = True) -> None:
        from .engines import _pyossl

        self._P = _pyossl
        L = _pyossl.load()
        self._L = L
        self._ffi, self._lib, self._off = L.ffi, L.lib, L.offsets
        self.openssl_version = f"{L.version} (pyOpenSSL {L.pyopenssl_version})"
        self._wrap = wrap
        self._lock = threading.RLock()
        self._closed = False
        self._ctxs: dict[str, weakref.ref[Any]] = {}
        self._ctx_alive: dict[str, bool] = {}
        self._conns: list[_Conn] = []
        self._by_conn: dict[int, _Conn] = {}
        self._sessions: list[_SessionObj] = []
        self._pinned: dict[int, _Pinned] = {}
        self._labels = 0
        self._ref_ids = 0
        self._order: dict[str, tuple[str, ...]] = {}
        self._cache_last: dict[str, CacheState] = {}
        self._events: list[str] = []
        scratch = self._lib.SSL_CTX_new(self._lib.TLS_method())  # to pin sessions no SSL holds
        if scratch == self._ffi.NULL:
            raise SesskitError("SSL_CTX_new failed (pyOpenSSL's OpenSSL)")
        self._scratch = scratch
        self._finalizer = weakref.finalize(self, _release, self._lib, scratch, self._pinned)
        self.trace = Trace({"engine": "pyopenssl (watch)", "openssl_version": self.openssl_version})
        for side, ctx in (("server", server), ("client", client)):
            if ctx is not None:
                self._add_context(side, ctx)
        self._add(objects)
        self._record("watch", "your objects", "sesskit started watching.")

    # -- adding objects --------------------------------------------------------------
    def add(self, *objects: Any) -> Watch:
        """Follow more Connections or Sessions (a Session also comes from wrapped ``get_session``)."""
        with self._lock:
            self._check_open()
            self._add(objects)
            return self

    def _add(self, objects: tuple[Any, ...]) -> None:
        SSL = self._L.SSL
        for obj in objects:
            if isinstance(obj, SSL.Connection):
                self._add_connection(obj)
            elif isinstance(obj, SSL.Session):
                self._add_session(obj, "Session")
            elif isinstance(obj, SSL.Context):
                raise InvalidOperation("pass Contexts by side: watch(server=ctx) or watch(client=ctx)")
            else:
                raise InvalidOperation(
                    f"watch() follows pyOpenSSL Connection and Session objects, not {type(obj).__name__}"
                )

    def _add_context(self, side: str, ctx: Any) -> None:
        if not isinstance(ctx, self._L.SSL.Context):
            raise InvalidOperation(f"{side}= takes an OpenSSL.SSL.Context, not {type(ctx).__name__}")
        self._ctxs[side] = weakref.ref(ctx)
        self._ctx_alive[side] = True

    def _side_of(self, ctx: Any) -> str | None:
        for side, ref in self._ctxs.items():
            if ref() is ctx:
                return side
        return None

    def _add_connection(self, conn: Any) -> None:
        if id(conn) in self._by_conn and self._by_conn[id(conn)].ref() is conn:
            return
        side = self._side_of(conn.get_context())
        if side is None:
            raise InvalidOperation(
                "this Connection's Context is not watched: say which side it is, "
                "watch(server=ctx) or watch(client=ctx)"
            )
        k = 1 + sum(c.side == side for c in self._conns)
        x = _Conn(conn, f"{side[0]}{k}", side)
        self._conns.append(x)
        self._by_conn[id(conn)] = x
        if self._wrap:
            for name in WRAPPED:
                setattr(conn, name, self._wrapper(x, name, getattr(type(conn), name)))

    def _add_session(self, obj: Any, via: str) -> None:
        if any(s.ref() is obj for s in self._sessions):
            return
        self._ref_ids += 1
        self._sessions.append(_SessionObj(obj, self._ref_ids, via))

    def _wrapper(self, x: _Conn, name: str, method: Any) -> Any:
        # Holds the Connection weakly: a strong reference here would make a cycle
        # (conn.__dict__ -> wrapper -> conn) and delay the SSL_free GC does.
        ref = x.ref
        watcher = weakref.ref(self)

        def call(*args: Any, **kwargs: Any) -> Any:
            conn = ref()
            assert conn is not None  # it is calling us
            result: Any = None
            try:
                result = method(conn, *args, **kwargs)
            except Exception as exc:
                w = watcher()
                if w is not None and not w._closed:
                    w._after_call(conn, x, name, args, None, type(exc).__name__)
                raise
            w = watcher()
            if w is not None and not w._closed:
                w._after_call(conn, x, name, args, result, None)
            return result

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    def _after_call(
        self, conn: Any, x: _Conn, name: str, args: tuple[Any, ...], result: Any, err: str | None
    ) -> None:
        with self._lock:
            if name == "get_session" and result is not None:
                self._add_session(result, f"{x.name}.get_session()")
            if name == "set_session" and args:
                self._add_session(args[0], "Session")
            outcome: str | None = err
            if err is None and name == "do_handshake":
                reused = bool(self._lib.SSL_session_reused(conn._ssl))
                outcome = "resumed" if reused else "full handshake"
            elif err is None:
                outcome = None if result is None or name == "get_session" else repr(result)[:40]
            self._record(f"Connection.{name}", x.name, "", outcome)

    # -- observation ---------------------------------------------------------------------
    def snapshot(self, note: str = "") -> Snapshot:
        """Read everything watched now, record a step (``op="snapshot"``), return the state.

        Parameters
        ----------
        note : str
            Your words for this moment, e.g. ``"after del conn"``; kept as the step's target.
        """
        with self._lock:
            self._check_open()
            self._record("snapshot", note or "now", "")
            return self.trace.snapshot(-1)

    def _record(self, op: str, target: str, lead: str, result: str | None = None) -> None:
        before = {k: v for k, v in self.trace._sessions.items()}
        delta = self._observe()
        why = " ".join(p for p in (lead, *self._events, _describe(before, delta)) if p)
        self._events = []
        self.trace.append(op, target, why, delta, result)

    def _observe(self) -> Delta:
        new: dict[str, list[_Pinned]] = {"client": [], "server": []}
        ssls: dict[str, SSLState] = {}
        holds: list[tuple[_Conn, int | None]] = []
        lib, ffi = self._lib, self._ffi
        for x in sorted(self._conns, key=lambda c: c.side != "client"):
            conn = x.ref()
            if conn is None:
                if not x.freed:
                    x.freed = True
                    how = "clean: it had sent close_notify" if x.sent else "dirty: no shutdown() first"
                    self._events.append(
                        f"{x.name}'s Connection was garbage-collected, so pyOpenSSL called SSL_free ({how})."
                    )
                    ssls[x.name] = SSLState(x.name, x.side, None, True, x.sent)
                continue
            p = lib.SSL_get_session(conn._ssl)
            a = None if p == ffi.NULL else self._pin(p, x.side, new, via_ssl=conn._ssl)
            x.sent = bool(lib.SSL_get_shutdown(conn._ssl) & _SENT_SHUTDOWN)
            holds.append((x, a))
        for side, ref in self._ctxs.items():
            ctx = ref()
            if ctx is not None:
                for a in self._P.cache_members(ffi, ctx._context, self._off):
                    self._pin(ffi.cast("SSL_SESSION *", a), side, new)
        objs: list[tuple[_SessionObj, int]] = []
        for s in self._sessions:
            obj = s.ref()
            if obj is not None and not s.label:
                side = self._side_of(obj._context) or "client"
                objs.append((s, self._pin(ffi.cast("SSL_SESSION *", obj._session), side, new)))
        for side in ("client", "server"):  # labels: client side first, then server, in order seen
            for pin in new[side]:
                self._labels += 1
                pin.label = f"S{self._labels}"
        for s, a in objs:
            s.label = self._pinned[a].label
        for x, a in holds:
            ssls[x.name] = SSLState(
                x.name, x.side, None if a is None else self._pinned[a].label, False, x.sent
            )
        return Delta(
            sessions=self._read_sessions(), ssls=ssls, caches=self._read_caches(), refs=self._read_refs()
        )

    def _pin(self, p: Any, side: str, new: dict[str, list[_Pinned]], via_ssl: Any = None) -> int:
        """The address of a live session, pinned with an observer reference if it is new."""
        a = int(self._ffi.cast("uintptr_t", p))
        if a in self._pinned:
            return a
        lib, ffi = self._lib, self._ffi
        words = _words(ffi, p, self._off)
        before = int(words["refs"][0])
        if via_ssl is not None:
            got = lib.SSL_get1_session(via_ssl)
        else:
            # No SSL holds it (a cached session, a Session object's): SSL_SESSION_up_ref is not
            # bound, so a scratch SSL takes the reference: SSL_set_session (+1), get1 (+1), and
            # SSL_free of an SSL that never started a handshake (-1; its session is not "bad").
            ssl = lib.SSL_new(self._scratch)
            if ssl == ffi.NULL:
                raise SesskitError("SSL_new failed while pinning a session")
            lib.SSL_set_session(ssl, p)
            got = lib.SSL_get1_session(ssl)
            lib.SSL_free(ssl)
        if got != p or int(words["refs"][0]) != before + 1:
            raise SesskitError("observation inconsistent: taking an observer reference did not add one")
        pin = _Pinned(ffi.cast("SSL_SESSION *", p), side, words)
        self._pinned[a] = pin
        new[side].append(pin)
        return a

    def _read_sessions(self) -> dict[str, SessionState]:
        out: dict[str, SessionState] = {}
        ctx_addr = {}
        for side, ref in self._ctxs.items():
            ctx = ref()
            if ctx is not None:
                ctx_addr[int(self._ffi.cast("uintptr_t", ctx._context))] = side
        for a, pin in list(self._pinned.items()):
            w = pin.words
            refs = int(w["refs"][0]) - 1
            if refs <= 0:
                st = SessionState(pin.label, pin.side, 0, None, False, True)
                del self._pinned[a]
                self._lib.SSL_SESSION_free(pin.ptr)  # our observer reference: really freed now
            else:
                resumable = not int(w["not_resumable"][0]) and bool(
                    int(w["sid_len"][0]) or int(w["ticklen"][0])
                )
                cache = ctx_addr.get(int(w["owner"][0])) if int(w["owner"][0]) else None
                st = SessionState(pin.label, pin.side, refs, cache, resumable)
            if st != pin.last:
                pin.last = out[pin.label] = st
        return out

    def _read_caches(self) -> dict[str, CacheState]:
        out: dict[str, CacheState] = {}
        ffi = self._ffi
        for side, ref in self._ctxs.items():
            ctx = ref()
            if ctx is None:
                if self._ctx_alive[side]:
                    self._ctx_alive[side] = False
                    self._events.append(
                        f"The {side} Context was freed (SSL_CTX_free flushes its whole cache): "
                        "no Connection or Session object kept it alive any more."
                    )
                state = CacheState(side, 0, (), dict(self._cache_last.get(side, CacheState(side)).stats))
            else:
                members = tuple(
                    self._pinned[a].label for a in self._P.cache_members(ffi, ctx._context, self._off)
                )
                words = ffi.cast("int *", ffi.cast("char *", ctx._context) + self._off.ctx_stats)
                stats = {n: int(words[i]) for i, n in enumerate(self._P.STATS) if "renegotiate" not in n}
                state = CacheState(side, len(members), members, stats)
            if state != self._cache_last.get(side):
                self._cache_last[side] = out[side] = state
        return out

    def _read_refs(self) -> dict[int, RefState]:
        out: dict[int, RefState] = {}
        for s in self._sessions:
            if not s.label:
                continue
            released = s.ref() is None
            if released and not s.released:
                self._events.append(
                    f"The Session object of {s.via} was garbage-collected: pyOpenSSL gave back its "
                    f"get1 reference to {s.label} (SSL_SESSION_free)."
                )
            s.released = released
            st = RefState(s.id, "get1", s.label, s.via, released)
            if self.trace._refs.get(s.id) != st:
                out[s.id] = st
        return out

    # -- life cycle ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise InvalidOperation("this watch is closed")

    def close(self) -> None:
        """Stop watching: unwrap the Connections and give back every observer reference."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for x in self._conns:
                conn = x.ref()
                if conn is not None and self._wrap:
                    for name in WRAPPED:
                        conn.__dict__.pop(name, None)
            self._finalizer()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<sesskit.Watch {len(self._conns)} connections, {len(self.trace)} steps>"


def _words(ffi: Any, p: Any, off: Any) -> dict[str, Any]:
    base = ffi.cast("char *", p)
    return {
        "refs": ffi.cast("int *", base + off.references),
        "owner": ffi.cast("uintptr_t *", base + off.owner),
        "not_resumable": ffi.cast("int *", base + off.not_resumable),
        "sid_len": ffi.cast("size_t *", base + off.session_id_length),
        "ticklen": ffi.cast("size_t *", base + off.ticklen),
    }


def _release(lib: Any, scratch: Any, pinned: dict[int, _Pinned]) -> None:
    for pin in pinned.values():
        lib.SSL_SESSION_free(pin.ptr)
    pinned.clear()
    lib.SSL_CTX_free(scratch)


def _describe(before: dict[str, SessionState], delta: Delta) -> str:
    """What changed, in words: refcounts, resumability, cache moves, frees."""
    parts = []
    for label, st in delta.sessions.items():
        old = before.get(label)
        if old is None:
            where = f", in the {st.cache} cache" if st.cache else ""
            parts.append(f"{label} ({st.side}) seen: refcount {st.refcount}{where}")
            continue
        if st.freed:
            parts.append(f"{label} {old.refcount} → 0, freed")
            continue
        if st.refcount != old.refcount:
            parts.append(f"{label} {old.refcount} → {st.refcount}")
        if old.resumable and not st.resumable:
            parts.append(f"{label} is no longer resumable")
        if old.cache != st.cache:
            parts.append(
                f"{label} left the {old.cache} cache" if old.cache else f"{label} joined the {st.cache} cache"
            )
    return ("Changes: " + "; ".join(parts) + ".") if parts else ""


class _CallableModule(types.ModuleType):
    """``import sesskit.watch`` binds this module where ``sesskit.watch`` (the function) was
    expected: let the module be called like the function."""

    def __call__(self, *objects: Any, **kwargs: Any) -> Watch:
        return watch(*objects, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
