"""The public API: :class:`Lab`, :class:`Link`, :class:`Endpoint`, :class:`SessionRef`.

A Lab owns one engine (a real OpenSSL, or the model), checks every request
against the state it has recorded, and appends one :class:`~sesskit.trace.Step`
per operation to ``lab.trace``.  Checks happen *here*, before any engine is
called, so that every engine refuses the same things with the same words and
no bad request ever reaches C.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import TYPE_CHECKING, Any

from .engines.base import ENGINES, TLS_VERSIONS, Engine, LabConfig, OpResult
from .errors import DanglingPointer, InvalidOperation, SesskitError
from .trace import Delta, RefState, Snapshot, SSLState, Trace

if TYPE_CHECKING:
    from .explain import Explainer
    from .trace import SessionState
    from .viewer.widget import Viewer
    from .widgets import Stepper

__all__ = ["Endpoint", "Lab", "Link", "SessionRef"]

_lab_ids = itertools.count(1)


def _make_engine(name: str, config: LabConfig) -> tuple[Engine, str]:
    """The engine called ``name``; for "auto", the best real one (and why not, if not)."""
    if name == "libssl":
        from .engines.libssl import LibsslEngine

        return LibsslEngine(config), ""
    if name == "pyopenssl":
        from .engines.pyopenssl import PyOpenSSLEngine

        return PyOpenSSLEngine(config), ""
    if name == "model":
        from .engines.model import ModelEngine

        return ModelEngine(config), ""
    # "auto" is the real engine that can do every operation (libssl), else the model:
    # pyOpenSSL's OpenSSL lacks SSL_clear and SSL_CTX_flush_sessions, so a story that
    # needs them would break half-way on it. Ask for engine="pyopenssl" by name.
    try:
        return _make_engine("libssl", config)
    except (SesskitError, OSError, ImportError) as exc:
        from .engines.model import ModelEngine

        note = f"no real OpenSSL engine available (libssl: {exc}); showing the model's predictions"
        return ModelEngine(config), note


class Lab:
    """A client SSL_CTX and a server SSL_CTX, and everything made from them.

    Parameters
    ----------
    engine : {"auto", "libssl", "pyopenssl", "model"}
        Which OpenSSL runs the operations.  ``"auto"`` picks the system libssl
        (the one Python's ``ssl`` module loaded) and falls back to the model,
        saying so in ``engine_note``.
    tls : {"1.2", "1.3"}
        The only protocol version both contexts allow.
    tickets : bool
        False sets ``SSL_OP_NO_TICKET`` on the server: a stateful server cache.
    client_cache : bool
        True sets the client context's cache mode to ``SSL_SESS_CACHE_CLIENT``.
        False leaves OpenSSL's default mode, ``SSL_SESS_CACHE_SERVER``, which
        caches nothing on a client.
    cache_size, timeout : int
        ``SSL_CTX_sess_set_cache_size`` and ``SSL_CTX_set_timeout`` of both contexts.
    explain : bool
        With a real engine, also run the model alongside to give each step its
        ``why`` (and to say so when reality differs from the prediction).  The
        model runs when a step is first read from ``lab.trace``, so operations
        whose ``why`` nobody reads cost nothing extra (:mod:`sesskit.explain`).
    """

    def __init__(
        self,
        engine: str = "auto",
        tls: str = "1.3",
        tickets: bool = True,
        client_cache: bool = False,
        cache_size: int = 20480,
        timeout: int = 7200,
        *,
        explain: bool = True,
    ) -> None:
        if engine not in ENGINES:
            raise InvalidOperation(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
        if str(tls) not in TLS_VERSIONS:
            raise InvalidOperation(f'unknown TLS version {tls!r}: choose "1.2" or "1.3"')
        for what, v in (("cache_size", cache_size), ("timeout", timeout)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidOperation(f"{what} must be a whole number >= 0, not {v!r}")
        if timeout == 0:
            raise InvalidOperation(
                "timeout must be > 0 (SSL_CTX_set_timeout(ctx, 0) means 'use the default')"
            )
        self.config = LabConfig(str(tls), bool(tickets), bool(client_cache), cache_size, timeout)
        self.id = next(_lab_ids)
        self._lock = threading.RLock()
        self._engine, self.engine_note = _make_engine(engine, self.config)
        self.engine_name: str = self._engine.name
        self.openssl_version: str = self._engine.openssl_version
        self._closed = False
        self._finalizer = weakref.finalize(self, self._engine.close)
        self._links: list[Link] = []
        self._endpoints: dict[str, Endpoint] = {}
        self._refs: dict[int, SessionRef] = {}
        self._refs_by_session: dict[str, list[SessionRef]] = {}
        self._ref_ids = itertools.count(1)
        self._freed_at: dict[str, int] = {}
        self._ran: tuple[str, tuple[Any, ...]] = ("initial", ())
        self.trace = Trace(
            {
                "engine": self.engine_name,
                "openssl_version": self.openssl_version,
                "config": {
                    "tls": self.config.tls,
                    "tickets": self.config.tickets,
                    "client_cache": self.config.client_cache,
                    "cache_size": self.config.cache_size,
                    "timeout": self.config.timeout,
                },
            }
        )
        why = (
            f"Two SSL_CTXs: client (cache mode {'CLIENT' if client_cache else 'off'}) and "
            f"server (SSL_SESS_CACHE_SERVER{', SSL_OP_NO_TICKET' if not tickets else ''}), "
            f"TLS {tls}, cache size {cache_size}, timeout {timeout} s. Both caches start empty."
        )
        self.trace.append("SSL_CTX_new", "client+server", why, self._engine.initial())
        self._explainer: Explainer | None = None
        if explain and self.engine_name != "model":
            from .explain import Explainer

            # An engine that cannot do everything OpenSSL can (pyOpenSSL cannot age a
            # sealed ticket) says how the model should predict it.
            options = getattr(self._engine, "model_options", {})
            self._explainer = Explainer(self.config, self.trace, **options)

    # -- life cycle ----------------------------------------------------------
    def close(self) -> None:
        """Free every OpenSSL object this lab made (SSLs, sessions, both SSL_CTXs)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._finalizer()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.trace)} steps"
        return f"<sesskit.Lab #{self.id} {self.engine_name} TLS {self.config.tls}, {state}>"

    # -- reading -------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The state after the last step."""
        return self.trace.snapshot(-1)

    @property
    def time(self) -> int:
        """Virtual seconds elapsed (the sum of :meth:`advance` calls)."""
        return self.trace.time

    @property
    def links(self) -> list[Link]:
        return list(self._links)

    @property
    def refs(self) -> list[SessionRef]:
        return list(self._refs.values())

    def endpoint(self, name: str) -> Endpoint:
        """The Endpoint called ``name`` (e.g. ``"c1"``)."""
        try:
            return self._endpoints[name]
        except KeyError:
            raise InvalidOperation(f"this lab has no SSL called {name!r}") from None

    # -- seeing (the widgets load only here) ----------------------------------------
    def show(self, step: int = -1) -> Viewer:
        """The trace so far, drawn in the browser: heap, timeline, steps and whys (a widget).

        ``step`` is the step shown first (-1: the last).  The browser scrubs the history by itself;
        for a PNG/SVG figure use :func:`sesskit.plot.overview` or :func:`sesskit.plot.save`.
        """
        from .viewer import show

        return show(self.trace, step)

    def stepper(self, **options: Any) -> Stepper:
        """A stepper widget: one button per operation, over the viewer of this lab's trace.

        ``options`` go to :class:`sesskit.widgets.Stepper`.
        """
        from .widgets import Stepper

        return Stepper(self, **options)

    # -- operations ----------------------------------------------------------
    def connect(self, resume: SessionRef | None = None) -> Link:
        """A new client SSL and server SSL, and a full handshake between them.

        With ``resume``, ``SSL_set_session(client, resume)`` first: the
        handshake resumes if OpenSSL accepts the session (see ``link.reused``).
        """
        with self._lock:
            self._check_open("SSL_connect")
            label = None
            if resume is not None:
                label = self._check_resume(resume)
            res = self._run("connect", label)
            client, server, reused = res.value
            link = Link(self, len(self._links) + 1, client, server, bool(reused))
            self._links.append(link)
            self._endpoints[client] = link.client
            self._endpoints[server] = link.server
            target = f"{client}↔{server}" + (f" resume {label}" if label else "")
            result = "resumed" if reused else "full handshake"
            self._record("SSL_connect", target, res, result)
            return link

    def advance(self, seconds: int) -> None:
        """Move the virtual clock on: every live session gets ``seconds`` older."""
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise InvalidOperation(f"advance() takes a whole number of seconds >= 0, not {seconds!r}")
        with self._lock:
            self._check_open("advance")
            res = self._run("advance", seconds)
            res.delta = res.delta.merged(Delta(time=self.time + seconds))
            self._record("advance", f"+{seconds}s", res)

    def flush(self, side: str = "server", at: int | None = None) -> None:
        """``SSL_CTX_flush_sessions`` on one side's cache at virtual time ``at`` (default: now)."""
        if side not in ("server", "client"):
            raise InvalidOperation(f'flush(side={side!r}): side is "server" or "client"')
        if at is not None and (isinstance(at, bool) or not isinstance(at, int)):
            raise InvalidOperation(f"flush(at={at!r}): at is a whole number of virtual seconds")
        with self._lock:
            self._check_open("SSL_CTX_flush_sessions")
            when = self.time if at is None else at
            res = self._run("flush", side, when)
            self._record("SSL_CTX_flush_sessions", f"{side} at t={when}", res)

    # -- internals used by Endpoint / SessionRef -----------------------------
    def _check_open(self, op: str) -> None:
        if self._closed:
            raise InvalidOperation(f"can't {op}: this lab is closed (lab.close() freed everything)")

    def _check_resume(self, ref: SessionRef) -> str:
        if not isinstance(ref, SessionRef):
            raise InvalidOperation(f"connect(resume=...) takes a SessionRef, not {type(ref).__name__}")
        if ref._lab is not self:
            raise InvalidOperation(
                f"can't SSL_set_session with {ref.session} from another Lab: SSL_get_session(3) says a "
                "session must only be used with one SSL_CTX, and sesskit keeps that rule (as CPython's ssl "
                "and pyOpenSSL do). OpenSSL 3.0 itself would resume it; what corrupts memory is a session "
                "added to a second context's cache (SSL_CTX_add_session): it has one prev/next/owner"
            )
        state = self.trace.session(ref.session)
        if state.freed:
            raise DanglingPointer(self._dangling_message("SSL_set_session with", ref))
        if state.side != "client":
            raise InvalidOperation(
                f"can't SSL_set_session on a client with {ref.session}: it is a server-side "
                "session, whose session id context is the server's; the client SSL has none, so OpenSSL "
                "fails the handshake ('attempt to reuse session in different context')"
            )
        return ref.session

    def _run(self, op: str, *args: Any) -> OpResult:
        res: OpResult = getattr(self._engine, op)(*args)
        self._ran = (op, args)  # for the explainer, once the step is recorded
        return res

    def _record(self, op: str, target: str, res: OpResult, result: str | None = None) -> None:
        delta = res.delta
        index = len(self.trace)
        ref_changes: dict[int, RefState] = {}
        for label, st in delta.sessions.items():
            if st.freed and label not in self._freed_at:
                self._freed_at[label] = index
                for ref in self._refs_by_session.get(label, ()):
                    old = delta.refs.get(ref.id) or self._ref_state(ref.id)
                    ref_changes[ref.id] = RefState(old.id, old.kind, old.session, old.via, old.released, True)
        for ssl_name, sst in delta.ssls.items():
            if sst.freed and ssl_name not in self._freed_at:
                self._freed_at[ssl_name] = index
        if ref_changes:
            delta = delta.merged(Delta(refs=ref_changes))
        self.trace.append(op, target, res.why or _DEFAULT_WHY.get(op, ""), delta, result)
        if self._explainer is not None:
            # the model explains this step when the trace is next read (sesskit.explain)
            self._explainer.queue(index, *self._ran, res.value)

    def _ref_state(self, ref_id: int) -> RefState:
        return self.trace.ref(ref_id)

    def _dangling_message(self, what: str, ref: SessionRef) -> str:
        step = self._freed_at.get(ref.session)
        when = f" at step {step} ({self.trace[step].op})" if step is not None else ""
        return (
            f"can't {what} {ref.kind} ref #{ref.id}: its session {ref.session} was freed{when}. "
            "In C this pointer now dangles: reading it is a use-after-free (undefined behaviour)."
        )

    def _endpoint_op(self, ep: Endpoint, op: str, cname: str) -> OpResult:
        self._check_open(cname)
        st = self.trace.ssl(ep.name)
        if st.freed:
            step = self._freed_at.get(ep.name)
            raise InvalidOperation(
                f"can't {cname} on {ep.name}: it was freed at step {step} (SSL_free); "
                "in C the SSL pointer now dangles"
            )
        if op in ("read", "shutdown") and st.cleared:
            raise InvalidOperation(
                f"can't {cname} on {ep.name}: SSL_clear reset it for a new handshake, so there "
                "is no connection to read from or shut down"
            )
        return self._run(op, ep.name)

    def _new_ref(self, kind: str, label: str, via: str) -> tuple[SessionRef, Delta]:
        ref = SessionRef(self, next(self._ref_ids), kind, label, via)
        self._refs[ref.id] = ref
        self._refs_by_session.setdefault(label, []).append(ref)
        return ref, Delta(refs={ref.id: RefState(ref.id, kind, label, via)})


_DEFAULT_WHY = {
    "SSL_connect": "A handshake over memory BIOs.",
    "SSL_get0_session": "SSL_get0_session returns the SSL's session without taking a reference.",
    "SSL_get1_session": "SSL_get1_session returns the SSL's session and takes a reference (+1).",
    "SSL_read": "SSL_read processes the records waiting for this SSL.",
    "SSL_shutdown": "SSL_shutdown sends close_notify.",
    "SSL_clear": "SSL_clear resets the SSL for a new handshake.",
    "SSL_free": "SSL_free drops the SSL's reference to its session.",
    "SSL_SESSION_free": "SSL_SESSION_free drops one reference.",
    "advance": "The virtual clock moved on.",
    "SSL_CTX_flush_sessions": "SSL_CTX_flush_sessions removes expired sessions from the cache.",
}


class Link:
    """One connection: a client Endpoint and a server Endpoint."""

    def __init__(self, lab: Lab, index: int, client: str, server: str, reused: bool) -> None:
        self.lab = lab
        self.index = index
        self.client = Endpoint(lab, client, "client")
        self.server = Endpoint(lab, server, "server")
        self.reused = reused

    def __repr__(self) -> str:
        how = "resumed" if self.reused else "full handshake"
        return f"<Link {self.client.name}↔{self.server.name} {how}>"


class Endpoint:
    """One SSL object (client or server side of a Link)."""

    def __init__(self, lab: Lab, name: str, side: str) -> None:
        self._lab = lab
        self.name = name
        self.side = side

    def __repr__(self) -> str:
        st = self.state
        return f"<Endpoint {self.name} session={st.session} {'freed' if st.freed else 'alive'}>"

    @property
    def state(self) -> SSLState:
        return self._lab.trace.ssl(self.name)

    @property
    def freed(self) -> bool:
        return self.state.freed

    @property
    def session(self) -> str | None:
        """Label of the session this SSL points at now (``s->session``), or None."""
        return self.state.session

    def _session_getter(self, kind: str) -> SessionRef | None:
        lab = self._lab
        cname = f"SSL_{kind}_session"
        with lab._lock:
            res = lab._endpoint_op(self, kind, cname)
            label = res.value
            ref = None
            if label is not None:
                ref, refs = lab._new_ref(kind, label, self.name)
                res.delta = res.delta.merged(refs)
            lab._record(cname, self.name, res, label or "NULL")
            return ref

    def get0_session(self) -> SessionRef | None:
        """``SSL_get0_session``: a borrowed pointer (no refcount change), or None."""
        return self._session_getter("get0")

    def get1_session(self) -> SessionRef | None:
        """``SSL_get1_session``: +1 reference you must release with ``ref.free()``; or None."""
        return self._session_getter("get1")

    def _op(self, op: str, cname: str) -> None:
        with self._lab._lock:
            res = self._lab._endpoint_op(self, op, cname)
            self._lab._record(cname, self.name, res)

    def read(self) -> None:
        """``SSL_read`` until no record is left (TLS 1.3 tickets, close_notify)."""
        self._op("read", "SSL_read")

    def shutdown(self) -> None:
        """``SSL_shutdown``: send close_notify (a second call also reads the peer's)."""
        self._op("shutdown", "SSL_shutdown")

    def clear(self) -> None:
        """``SSL_clear``: reset for a new handshake; a "bad" session is removed and dropped."""
        self._op("clear", "SSL_clear")

    def free(self) -> None:
        """``SSL_free``: drop the SSL (and its reference to its session)."""
        self._op("free", "SSL_free")


class SessionRef:
    """A pointer to an SSL_SESSION held by the user (from get0 or get1)."""

    def __init__(self, lab: Lab, id: int, kind: str, session: str, via: str) -> None:
        self._lab = lab
        self.id = id
        self.kind = kind
        self.session = session
        self.via = via

    def __repr__(self) -> str:
        extra = " dangling" if self.dangling else (" released" if self.released else "")
        return f"<SessionRef #{self.id} {self.kind} {self.session} via {self.via}{extra}>"

    @property
    def released(self) -> bool:
        """True once this get1 ref was given back with :meth:`free`."""
        return self._lab.trace.ref(self.id).released

    @property
    def dangling(self) -> bool:
        """True once the session it points to was freed."""
        return bool(self._lab.trace.session(self.session).freed)

    def _live(self, what: str) -> SessionState:
        st = self._lab.trace.session(self.session)
        if st.freed:
            raise DanglingPointer(self._lab._dangling_message(f"read {what} through", self))
        return st

    @property
    def refcount(self) -> int:
        """References to the session now (OpenSSL's count, without sesskit's own)."""
        return self._live("refcount").refcount

    @property
    def in_cache(self) -> bool:
        return self._live("in_cache").cache is not None

    @property
    def resumable(self) -> bool:
        """``SSL_SESSION_is_resumable``."""
        return self._live("resumable").resumable

    def free(self) -> None:
        """``SSL_SESSION_free``: give back the reference a get1 took."""
        lab = self._lab
        with lab._lock:
            lab._check_open("SSL_SESSION_free")
            if self.kind == "get0":
                raise InvalidOperation(
                    f"can't SSL_SESSION_free get0 ref #{self.id} ({self.session}): SSL_get0_session "
                    "took no reference, so freeing it would drop someone else's (the SSL's or the "
                    "cache's) and leave them dangling"
                )
            if self.released:
                raise InvalidOperation(
                    f"can't SSL_SESSION_free get1 ref #{self.id} ({self.session}) twice: its "
                    "reference was already given back (a double free in C)"
                )
            res = lab._run("session_free", self.session)
            old = lab._ref_state(self.id)
            res.delta = res.delta.merged(
                Delta(refs={self.id: RefState(old.id, old.kind, old.session, old.via, True, old.dangling)})
            )
            lab._record("SSL_SESSION_free", f"{self.session} (ref #{self.id})", res)
