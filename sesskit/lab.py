"""The public API: :class:`Lab`, :class:`Link`, :class:`Endpoint`, :class:`SessionRef`.

A Lab owns one engine (a real OpenSSL, or the model), checks every request
against the state it has recorded, and appends one :class:`~sesskit.trace.Step`
per operation to ``lab.trace``.  Checks happen *here*, before any engine is
called, so that every engine refuses the same things with the same words and
no bad request ever reaches C.
"""

from __future__ import annotations

import _signal
import itertools
import operator
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from .engines.base import ENGINES, TLS_VERSIONS, Engine, LabConfig, OpResult
from .errors import DanglingPointer, InvalidOperation, SesskitError
from .trace import MAX_TIME, Delta, RefState, Snapshot, SSLState, Step, Trace

if TYPE_CHECKING:
    from .explain import Explainer
    from .trace import SessionState
    from .viewer.widget import Viewer
    from .widgets import Stepper

__all__ = ["MAX_CACHE_SIZE", "MAX_TIME", "Endpoint", "Lab", "Link", "SessionRef"]

_lab_ids = itertools.count(1)

# signal.getsignal/signal convert handlers to and from enums in Python (a dozen calls); every
# operation reads and sets the SIGINT handler twice, so it calls the C functions under them.
_getsignal: Callable[[int], Any] = getattr(_signal, "getsignal", signal.getsignal)
_setsignal: Callable[[int, Any], Any] = getattr(_signal, "signal", signal.signal)
_SIGINT = int(signal.SIGINT)

# SSL_CTX_sess_set_cache_size takes a C long (SSL_CTX_ctrl's larg): 2**31 - 1 fits one on every
# platform OpenSSL runs on (a long is 32 bits on 64-bit Windows), and no lab comes near it.
MAX_CACHE_SIZE = 2**31 - 1
# SSL_MAX_SID_CTX_LENGTH (include/openssl/ssl.h, every version): SSL_CTX_set_session_id_context refuses more.
SID_CTX_MAX = 32


class _Interrupts:
    """Ctrl-C waits until the operation under way is recorded (main thread; a context manager).

    Python runs a SIGINT handler between any two bytecodes, so a KeyboardInterrupt could land
    between an OpenSSL call and the bookkeeping of what it did (issue 16).  During an operation
    the handler only notes the signal; when the outermost operation ends, the handler that was
    in place is restored and, if a signal came, called (Python's default raises
    KeyboardInterrupt) -- after the step is recorded.  If a handler cannot be installed (not the
    main thread, or a handler Python did not install) operations run as before.

    The operations under way are their frames: an operation whose ``__exit__`` never ran (an
    exception raised as it was called) is dropped once its frame is no longer running, so a
    later Ctrl-C is never held back by it.
    """

    frames: ClassVar[list[FrameType]] = []  # the operations under way, outermost first
    pending = False
    saved: Any = None  # the handler in place before the outermost operation
    main = threading.main_thread().ident

    def __enter__(self) -> None:
        cls = _Interrupts
        if threading.get_ident() != cls.main:
            return
        frames = cls.frames
        if not frames:
            current = _getsignal(_SIGINT)
            if current is None:  # not installed from Python: leave it alone
                return
            if current is not _on_sigint:
                cls.saved = current
                _setsignal(_SIGINT, _on_sigint)
        frames.append(sys._getframe(1))

    def __exit__(self, *exc: object) -> None:
        cls = _Interrupts
        frames = cls.frames
        if threading.get_ident() != cls.main or not frames:
            return
        if frames[-1] is sys._getframe(1):
            frames.pop()
        if frames:
            _running(frames)
        if not frames:
            _setsignal(_SIGINT, cls.saved)
            if cls.pending:
                cls.pending = False
                _forward(cls.saved, signal.SIGINT, None)


def _running(frames: list[FrameType]) -> None:
    """Keep only the frames still running (on this thread's stack)."""
    stack = set()
    f: FrameType | None = sys._getframe(1)
    while f is not None:
        stack.add(id(f))
        f = f.f_back
    frames[:] = [f for f in frames if id(f) in stack]


def _on_sigint(signum: int, frame: Any) -> None:
    cls = _Interrupts
    _running(cls.frames)
    if cls.frames:
        cls.pending = True  # delivered when the operation ends
    else:  # no operation under way: restore the handler, and do what it does
        signal.signal(signal.SIGINT, cls.saved)
        _forward(cls.saved, signum, frame)


def _forward(handler: Any, signum: int, frame: Any) -> None:
    """Do what ``handler`` would have done with SIGINT."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.raise_signal(signal.SIGINT)
    # SIG_IGN: nothing


_DEFERRED = _Interrupts()


def _whole(what: str, v: object, lo: int, hi: int, unit: str = "") -> int:
    """``v`` as an int in ``lo..hi`` (bools and non-integers refused), or InvalidOperation."""
    if isinstance(v, bool):
        raise InvalidOperation(f"{what} must be a whole number{unit}, not the bool {v!r}")
    try:
        n = operator.index(v)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidOperation(f"{what} must be a whole number{unit}, not {v!r}") from None
    if not lo <= n <= hi:
        raise InvalidOperation(f"{what} must be in {lo}..{hi}{unit}, not {n}")
    return n


def _check_settings(settings: dict[str, Any]) -> None:
    """Refuse a bad Lab setting before any OpenSSL object exists (issue 16, point 3)."""
    engine, tls = settings["engine"], settings["tls"]
    if not isinstance(engine, str) or engine not in ENGINES:
        raise InvalidOperation(f"unknown engine {engine!r}: choose one of {', '.join(map(repr, ENGINES))}")
    if not isinstance(tls, str) or tls not in TLS_VERSIONS:
        raise InvalidOperation(f'unknown TLS version {tls!r}: tls is the string "1.2" or "1.3"')
    for what in ("tickets", "client_cache", "explain"):
        v = settings[what]
        if type(v) is not bool:
            hint = f" (any non-empty string, even {v!r}, would mean True)" if isinstance(v, str) else ""
            raise InvalidOperation(f"{what} must be True or False, not {v!r}{hint}")
    _whole("cache_size", settings["cache_size"], 0, MAX_CACHE_SIZE, " (0 means unlimited)")
    if settings["timeout"] == 0 and type(settings["timeout"]) is int:
        raise InvalidOperation("timeout must be > 0 (SSL_CTX_set_timeout(ctx, 0) means 'use the default')")
    _whole("timeout", settings["timeout"], 1, MAX_TIME, " seconds")
    v = settings["verify_peer"]
    if type(v) is not bool:
        raise InvalidOperation(f"verify_peer must be True or False, not {v!r}")
    sid = settings["server_sid_ctx"]
    if type(sid) is str:  # the trace's meta records it as text (JSON has no bytes): one character per byte
        try:
            sid = sid.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidOperation(
                f"server_sid_ctx {settings['server_sid_ctx']!r}: a str must hold characters U+0000..U+00FF, "
                "each taken as one byte (as the trace's meta records it); or give bytes"
            ) from None
    if sid is not None and (type(sid) is not bytes or not 1 <= len(sid) <= SID_CTX_MAX):
        what = f"{len(sid)} bytes" if type(sid) in (bytes, str) else repr(sid)
        raise InvalidOperation(
            f"server_sid_ctx must be None (no session id context) or 1..{SID_CTX_MAX} bytes "
            f"(SSL_MAX_SID_CTX_LENGTH, SSL_CTX_set_session_id_context(3)), not {what}"
        )
    if v and sid is None and settings["tickets"]:
        raise InvalidOperation(
            "verify_peer=True with server_sid_ctx=None needs tickets=False: in OpenSSL 3.0 a server with "
            "SSL_VERIFY_PEER and no session id context fails the handshake of every ticket resumption "
            "('session id context uninitialized', SSL_R_SESSION_ID_CONTEXT_UNINITIALIZED, "
            "ssl_get_prev_session in ssl/ssl_sess.c), and sesskit records no failed handshake. With "
            "tickets=False you see the other half of the rule: such a server caches nothing "
            "(ssl_update_cache in ssl/ssl_lib.c), so nothing resumes. Or set a server_sid_ctx "
            "(SSL_CTX_set_session_id_context(3))"
        )


class _Plan(NamedTuple):
    """How a Lab records one operation, computed before anything is changed."""

    target: str
    result: str | None = None
    extra: Delta | None = None  # merged into the engine's delta (the user's refs)
    links: tuple[Link, ...] = ()
    refs: tuple[SessionRef, ...] = ()
    value: Any = None


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

    Every setting is checked before any OpenSSL object exists: a bool must be a bool (the
    string "False" is refused, not taken for True), ``tls`` the string "1.2" or "1.3".  A bad
    one raises :class:`~sesskit.InvalidOperation` naming it.

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
        ``SSL_CTX_sess_set_cache_size`` and ``SSL_CTX_set_timeout`` of both contexts:
        ``0 <= cache_size <= MAX_CACHE_SIZE`` (0: unlimited) and ``1 <= timeout <=
        MAX_TIME`` seconds (ten years, the range of the virtual clock).
    server_sid_ctx : bytes, str or None
        The server context's session id context (``SSL_CTX_set_session_id_context``, 1 to 32
        bytes), stamped into every session it makes; a server resumes only a session whose
        context matches its own (``ssl_get_prev_session``).  None sets none (OpenSSL's default).
        A str is taken as latin-1 bytes, as ``trace.meta["config"]`` records it.  A server-side
        session given to a client is refused unless this is None: with a context OpenSSL fails that
        handshake; without one it is what OpenSSL does (a TLS 1.2 stateful server resumes it).
    verify_peer : bool
        True sets ``SSL_VERIFY_PEER`` on the server (it asks for a client certificate; the client
        sends none, which the server accepts).  Without a session id context such a server caches
        nothing (``ssl_update_cache``) and fails any ticket resumption, so ``verify_peer=True``
        with ``server_sid_ctx=None`` needs ``tickets=False`` (OpenSSL 3.0).
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
        server_sid_ctx: bytes | str | None = b"sesskit",
        verify_peer: bool = False,
        explain: bool = True,
    ) -> None:
        _check_settings(dict(locals()))
        cache_size, timeout = operator.index(cache_size), operator.index(timeout)
        if isinstance(server_sid_ctx, str):  # checked above: latin-1 text, one character per byte
            server_sid_ctx = server_sid_ctx.encode("latin-1")
        self.config = LabConfig(tls, tickets, client_cache, cache_size, timeout, server_sid_ctx, verify_peer)
        self.id = next(_lab_ids)
        self._lock = threading.RLock()
        self._closed = False
        self._broken = ""  # why the lab can no longer be trusted (an unrecoverable interruption)
        with _DEFERRED:
            self._engine, self.engine_note = _make_engine(engine, self.config)
            try:
                self._finalizer = weakref.finalize(self, self._engine.close)
                self._start(tls, tickets, client_cache, cache_size, timeout, explain)
            except BaseException:
                self._engine.close()
                raise

    def _start(
        self, tls: str, tickets: bool, client_cache: bool, cache_size: int, timeout: int, explain: bool
    ) -> None:
        self.engine_name: str = self._engine.name
        self.openssl_version: str = self._engine.openssl_version
        self._links: list[Link] = []
        self._endpoints: dict[str, Endpoint] = {}
        self._refs: dict[int, SessionRef] = {}
        self._refs_by_session: dict[str, list[SessionRef]] = {}
        self._freed_at: dict[str, int] = {}
        self._set_while_open: dict[str, int] = {}  # SSL -> step of an SSL_set_session on its connection
        sid = self.config.server_sid_ctx
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
                    # JSON has no bytes: the context as latin-1 text (one character per byte), or None
                    "server_sid_ctx": None if sid is None else sid.decode("latin-1"),
                    "verify_peer": self.config.verify_peer,
                },
            }
        )
        # SSL_CTX_set_session_cache_mode(3): the default mode is SSL_SESS_CACHE_SERVER (every version
        # since 0.9.x); a client caches its sessions only with the SSL_SESS_CACHE_CLIENT bit.
        client_mode = (
            "cache mode SSL_SESS_CACHE_CLIENT: it caches its own sessions"
            if client_cache
            else "OpenSSL's default cache mode, SSL_SESS_CACHE_SERVER, which caches nothing on a client: "
            "SSL_CTX_set_session_cache_mode(3); client_cache=True sets SSL_SESS_CACHE_CLIENT"
        )
        server_sid_ctx, verify_peer = self.config.server_sid_ctx, self.config.verify_peer
        sid_ctx = (
            f"session id context {server_sid_ctx!r}"
            if server_sid_ctx is not None
            else "no session id context"
        )
        server_opts = (", SSL_OP_NO_TICKET" if not tickets else "") + f", {sid_ctx}"
        server_opts += ", SSL_VERIFY_PEER" if verify_peer else ""
        why = (
            f"Two SSL_CTXs: client ({client_mode}) and "
            f"server (SSL_SESS_CACHE_SERVER{server_opts}), "
            f"TLS {tls}, cache size {cache_size}, timeout {timeout} s. Both caches start empty."
        )
        if verify_peer and server_sid_ctx is None:
            why += (
                " A server with SSL_VERIFY_PEER and no session id context caches none of its sessions "
                "(ssl_update_cache in ssl/ssl_lib.c, OpenSSL 3.0): it cannot tell that a session "
                "was made for this application (SSL_CTX_set_session_id_context(3)), so nothing resumes."
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
        with self._lock, _DEFERRED:
            if not self._closed:
                self._closed = True
                try:
                    self._finalizer()
                except BaseException:
                    self._engine.close()  # goes on where it stopped
                    raise

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
    # Each operation is atomic (issue 16, point 1): it is recorded whole, or the lab is left as it
    # was.  A Ctrl-C (SIGINT) waits until the step is recorded (_Interrupts).  Any other exception
    # raised inside the engine, after OpenSSL may have moved, lets the engine finish the operation
    # and look at everything again (``engine.recover()``); the step recorded is then what OpenSSL
    # really did, and the exception is raised after it.  The Lab's own bookkeeping is computed
    # first (_Plan, Trace.prepare) and committed without calling any Python function in between.
    def connect(self, resume: SessionRef | None = None, client: Endpoint | None = None) -> Link:
        """A new client SSL and server SSL, and a full handshake between them.

        With ``resume``, ``SSL_set_session(client, resume)`` first: the
        handshake resumes if OpenSSL accepts the session (see ``link.reused``).

        With ``client``, a client SSL reset by :meth:`Endpoint.clear` handshakes again, with a new
        server SSL: SSL_clear kept its session if it was good (close_notify sent), and the
        ClientHello offers it (SSL_clear(3)); a dirty clear left none.
        """
        with self._lock, _DEFERRED:
            self._check_open("SSL_connect")
            label = None
            if resume is not None:
                label = self._check_resume(resume)
            again = None if client is None else self._check_reconnect(client)

            def plan(res: OpResult) -> _Plan:
                client, server, reused = res.value
                link = Link(self, len(self._links) + 1, client, server, bool(reused))
                target = f"{client}↔{server}" + (f" resume {label}" if label else "")
                return _Plan(target, "resumed" if reused else "full handshake", links=(link,), value=link)

            if again is None:
                link: Link = self._operate("connect", (label,), "SSL_connect", plan)
                return link
            try:
                link = self._operate("connect", (label, again), "SSL_connect", plan)
            finally:
                if not self.trace.ssl(again).cleared:  # connected again: a new connection
                    self._set_while_open.pop(again, None)
            return link

    def advance(self, seconds: int) -> None:
        """Move the virtual clock on: every live session gets ``seconds`` older.

        The virtual clock runs from 0 to :data:`MAX_TIME` (ten years): an advance past
        its end is refused before anything moves.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise InvalidOperation(f"advance() takes a whole number of seconds >= 0, not {seconds!r}")
        with self._lock, _DEFERRED:
            self._check_open("advance")
            now = self.time
            if seconds > MAX_TIME - now:
                raise InvalidOperation(
                    f"can't advance({seconds}) at t={now}: the virtual clock runs from 0 to {MAX_TIME} s "
                    f"(ten years), so at most {MAX_TIME - now} s are left. Within that range every "
                    "session time OpenSSL holds stays a positive number of seconds on every engine"
                )

            def plan(res: OpResult) -> _Plan:
                return _Plan(f"+{seconds}s", extra=Delta(time=now + seconds))

            self._operate("advance", (seconds,), "advance", plan)

    def flush(self, side: str = "server", at: int | None = None) -> None:
        """``SSL_CTX_flush_sessions`` on one side's cache at virtual time ``at`` (default: now).

        ``at`` is on the virtual clock, 0 to :data:`MAX_TIME`.
        """
        if side not in ("server", "client"):
            raise InvalidOperation(f'flush(side={side!r}): side is "server" or "client"')
        if at is not None and (isinstance(at, bool) or not isinstance(at, int)):
            raise InvalidOperation(f"flush(at={at!r}): at is a whole number of virtual seconds")
        if at is not None and not 0 <= at <= MAX_TIME:
            raise InvalidOperation(
                f"flush(at={at}): at is a time on the virtual clock, which runs from 0 to {MAX_TIME} s "
                "(ten years)"
            )
        with self._lock, _DEFERRED:
            self._check_open("SSL_CTX_flush_sessions")
            when = self.time if at is None else at
            self._operate(
                "flush", (side, when), "SSL_CTX_flush_sessions", lambda res: _Plan(f"{side} at t={when}")
            )

    # -- mistakes, recorded ------------------------------------------------------
    def refused(self, op: str, target: str, error: SesskitError) -> Step:
        """For teaching tools such as the Stepper: record a refused attempt.

        ``error`` is the typed error this lab raised when asked for ``op`` (a C call name such as
        ``"SSL_SESSION_free"``) on ``target`` (e.g. ``"S2 (ref #1)"`` or ``"c1"``): an
        SSL_SESSION_free on a get0 pointer, a use after free, a double free, a read after
        SSL_clear, a resumption with a server-side session or a dangling pointer.  The step
        appended changes nothing (empty changes, the same snapshot as before), carries
        ``error = {"kind": type(error).__name__, "message": str(error)}``, and its ``why`` is the
        error's message: the OpenSSL rule that forbids the call and what it would do in C.
        No engine is called: a real OpenSSL never touches freed memory to show a mistake.

        An ``op`` that is not a call a lab records, a ``target`` that is not a string, or an
        ``error`` that is not a :class:`~sesskit.SesskitError` with a message is refused with
        :class:`~sesskit.InvalidOperation` (nothing recorded).
        """
        if not isinstance(op, str) or op not in _REFUSABLE:
            raise InvalidOperation(
                f"refused(op={op!r}): op is the C call that was refused, one of "
                + ", ".join(sorted(_REFUSABLE))
            )
        if not isinstance(target, str):
            raise InvalidOperation(
                f"refused(target={target!r}): target is a string (e.g. 'c1' or 'S2 (ref #1)')"
            )
        if not isinstance(error, SesskitError) or not str(error):
            raise InvalidOperation(
                f"refused(error={error!r}): error is the sesskit error the lab raised (a SesskitError "
                "with a message)"
            )
        kind, message = type(error).__name__, str(error)
        why = (
            f"Refused, not called: {message.rstrip('.')}. sesskit did not make this call, so nothing changed."
        )
        with self._lock, _DEFERRED:
            if self._broken:
                raise InvalidOperation(f"can't record a refused {op}: {self._broken}")
            return self.trace.append(op, target, why, Delta(), error={"kind": kind, "message": message})

    # -- internals used by Endpoint / SessionRef -----------------------------
    def _check_open(self, op: str) -> None:
        if self._closed:
            raise InvalidOperation(f"can't {op}: this lab is closed (lab.close() freed everything)")
        if self._broken:
            raise InvalidOperation(f"can't {op}: {self._broken}; close this lab and start a new one")

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
            raise DanglingPointer(
                self._dangling_message(
                    "SSL_set_session with",
                    ref,
                    "In C (OpenSSL 3.0, SSL_set_session in ssl/ssl_sess.c) SSL_set_session would "
                    "SSL_SESSION_up_ref the freed session, a write into freed memory, and the SSL would "
                    "later free it a second time: a use after free, then a double free.",
                )
            )
        if state.side != "client" and self.config.server_sid_ctx is not None:
            sid = self.config.server_sid_ctx
            in_c = (
                f"it is a server-side session, which carries the server's session id context {sid!r}; "
                "the client SSL has none. A session must only be used with the SSL_CTX it came from "
                "(SSL_get_session(3)). In C (OpenSSL 3.0) it is no crash: if the server resumes it "
                "(TLS 1.2, the server finds its id in its cache) the client fails the handshake "
                "('attempt to reuse session in different context': the session's id context differs "
                "from its own, tls_process_server_hello in ssl/statem/statem_clnt.c); otherwise it is "
                "not resumed. The cache has nothing to do with it: in a lab whose server has no id "
                "context (server_sid_ctx=None) sesskit lets you try: a TLS 1.2 stateful server resumes it"
            )
            raise InvalidOperation(f"can't SSL_set_session on a client with {ref.session}: {in_c}")
        return ref.session

    def _check_reconnect(self, client: Endpoint) -> str:
        """The name of ``client`` if it can handshake again (a client SSL of this lab reset by SSL_clear)."""
        if not isinstance(client, Endpoint) or client._lab is not self:
            raise InvalidOperation(f"connect(client=...) takes an Endpoint of this lab, not {client!r}")
        st = self.trace.ssl(client.name)
        if st.side != "client":
            raise InvalidOperation(
                f"connect(client={client.name}): {client.name} is a server SSL; connect(client=...) runs "
                "SSL_connect on a client SSL"
            )
        if st.freed:
            step = self._freed_at.get(client.name)
            raise InvalidOperation(
                f"can't SSL_connect on {client.name}: it was freed at step {step} (SSL_free); in C the SSL "
                "pointer now dangles, and SSL_connect on it is a use after free (undefined behaviour)"
            )
        if not st.cleared:
            raise InvalidOperation(
                f"can't SSL_connect on {client.name} again: its handshake is done and it was not reset "
                "by SSL_clear. In C (OpenSSL 3.0) SSL_connect on an SSL whose handshake is done returns 1 "
                "and does nothing; SSL_clear(3) resets an SSL for a new connection: clear() it first"
            )
        return client.name

    def _operate(self, op: str, args: tuple[Any, ...], cname: str, plan: Callable[[OpResult], _Plan]) -> Any:
        """Run ``op`` on the engine and record it as step ``cname``: all of it, or none of it.

        Called with the lock held and interrupts deferred.  ``plan`` says how to record the
        engine's result (it must change nothing).  Below the engine call no Python function runs
        between the first change to the lab and the last, and the calls that may fail before
        (``plan``, ``Trace.prepare``, ``Trace.commit``) change nothing, so each is tried again
        once if it raised.  Whatever was raised is raised again once the step is recorded.
        """
        engine = self._engine
        seq = getattr(engine, "op_seq", None)
        pending: BaseException | None = None
        try:
            res = getattr(engine, op)(*args)
        except SesskitError:
            raise  # the engine refused or failed, and said why
        except BaseException as exc:
            res = self._recovered(seq, exc)
            pending = exc
        for attempt in (1, 2):
            try:
                p = plan(res)
                delta = res.delta if p.extra is None else res.delta.merged(p.extra)
                index = len(self.trace)
                delta, freed_at = self._dangling(delta, index)
                step = self.trace.prepare(
                    cname, p.target, res.why or _DEFAULT_WHY.get(cname, ""), delta, p.result
                )
                break
            except BaseException as exc:
                if attempt == 2:
                    self._broken = f"recording step {len(self.trace)} ({cname}) failed: {exc!r}"
                    raise
                pending = pending or exc
        try:
            self.trace.commit(step)
        except BaseException as exc:  # raised as it was called: nothing was committed
            pending = pending or exc
            self.trace.commit(step)
        # -- the lab's own bookkeeping: no Python function is called from here on
        self._freed_at.update(freed_at)
        for link in p.links:
            self._links.append(link)
            self._endpoints[link.client.name] = link.client
            self._endpoints[link.server.name] = link.server
        for ref in p.refs:
            self._refs[ref.id] = ref
            self._refs_by_session.setdefault(ref.session, []).append(ref)
        ex = self._explainer
        if ex is not None:  # the model explains this step when the trace is next read (sesskit.explain)
            with ex._lock:
                ex._pending.append((index, op, args, res.value))
            if self.trace._unexplained is None:
                self.trace._unexplained = ex.explain
        if pending is not None:
            raise pending
        return p.value

    def _recovered(self, seq: Any, exc: BaseException) -> OpResult:
        """The engine's op was interrupted by ``exc``: what it did, once the engine finished it."""
        engine = self._engine
        if seq is not None and getattr(engine, "op_seq", None) == seq:
            raise exc  # interrupted before it began: nothing moved
        recover = getattr(engine, "recover", None)
        try:
            if recover is None:
                raise SesskitError(f"the {self.engine_name} engine cannot finish an interrupted operation")
            res: OpResult = recover()
            res.delta = self.trace.changes_to(res.delta)
        except BaseException as failure:
            self._broken = f"an operation was interrupted ({exc!r}) and could not be finished ({failure!r})"
            raise exc from failure
        return res

    def _dangling(self, delta: Delta, index: int) -> tuple[Delta, dict[str, int]]:
        """``delta`` with the refs it leaves dangling marked, and what it frees (label -> step)."""
        freed_at: dict[str, int] = {}
        ref_changes: dict[int, RefState] = {}
        for label, st in delta.sessions.items():
            if st.freed and label not in self._freed_at:
                freed_at[label] = index
                for ref in self._refs_by_session.get(label, ()):
                    old = delta.refs.get(ref.id) or self._ref_state(ref.id)
                    ref_changes[ref.id] = RefState(old.id, old.kind, old.session, old.via, old.released, True)
        for ssl_name, sst in delta.ssls.items():
            if sst.freed and ssl_name not in self._freed_at:
                freed_at[ssl_name] = index
        if ref_changes:
            delta = delta.merged(Delta(refs=ref_changes))
        return delta, freed_at

    def _ref_state(self, ref_id: int) -> RefState:
        return self.trace.ref(ref_id)

    def _dangling_message(self, what: str, ref: SessionRef, in_c: str = "") -> str:
        step = self._freed_at.get(ref.session)
        when = f" at step {step} ({self.trace[step].op})" if step is not None else ""
        return (
            f"can't {what} {ref.kind} ref #{ref.id}: its session {ref.session} was freed{when}. "
            "In C this pointer now dangles: reading it is a use-after-free (undefined behaviour)."
            + (f" {in_c}" if in_c else "")
        )

    def _endpoint_op(
        self, ep: Endpoint, op: str, cname: str, plan: Callable[[OpResult], _Plan], *args: Any
    ) -> Any:
        self._check_open(cname)
        st = self.trace.ssl(ep.name)
        if st.freed:
            step = self._freed_at.get(ep.name)
            raise InvalidOperation(
                f"can't {cname} on {ep.name}: it was freed at step {step} (SSL_free); "
                "in C the SSL pointer now dangles. SSL_free(3) frees the SSL, its BIOs and its "
                f"reference to its session, so in C {_AFTER_SSL_FREE[cname]}"
            )
        if op in ("read", "shutdown") and ep.name in self._set_while_open:
            raise InvalidOperation(
                f"can't {cname} on {ep.name}: SSL_set_session at step {self._set_while_open[ep.name]} "
                "replaced the session of its connection. In C (OpenSSL 3.0) SSL_set_session also puts "
                "the SSL back on its SSL_CTX's version-flexible method (SSL_set_ssl_method, "
                "ssl/ssl_lib.c), which frees and re-creates its TLS state: the connection's remaining "
                "records are not processed as before (a real libssl reads no ticket after it), and "
                "sesskit does not model what it does instead. SSL_set_session is meant for an SSL "
                "before its handshake (SSL_set_session(3)), e.g. after SSL_clear"
            )
        if op in ("read", "shutdown") and st.cleared:
            raise InvalidOperation(
                f"can't {cname} on {ep.name}: SSL_clear reset it for a new handshake, so there "
                f"is no connection to read from or shut down. {_AFTER_SSL_CLEAR[cname]}"
            )
        return self._operate(op, (ep.name, *args), cname, plan)

    def _new_ref(self, kind: str, label: str, via: str) -> tuple[SessionRef, Delta]:
        """A new ref (not yet registered: the commit of its step does that)."""
        ref = SessionRef(self, len(self._refs) + 1, kind, label, via)
        return ref, Delta(refs={ref.id: RefState(ref.id, kind, label, via)})


# What each call would do in C on an SSL that SSL_free freed (OpenSSL 3.0; SSL_free(3) frees the
# SSL, its read and write BIOs and its session reference once the SSL's count reaches 0).
_AFTER_SSL_FREE = {
    "SSL_get0_session": "SSL_get0_session would read s->session out of freed memory: a use after free "
    "(undefined behaviour: a garbage pointer, or a crash)",
    "SSL_get1_session": "SSL_get1_session would read s->session out of freed memory and up-ref whatever "
    "it points at: a use after free that writes into the heap",
    "SSL_read": "SSL_read would run on the freed SSL and its freed BIOs: a use after free (undefined "
    "behaviour, typically a crash)",
    "SSL_shutdown": "SSL_shutdown would run on the freed SSL and write a close_notify into its freed "
    "BIOs: a use after free (undefined behaviour, typically a crash)",
    "SSL_clear": "SSL_clear would reset fields of freed memory: a use after free that writes into the heap",
    "SSL_free": "a second SSL_free is a double free (undefined behaviour: heap corruption or an abort)",
    "SSL_set_session": "SSL_set_session would drop the freed SSL's session reference again and store a "
    "new one in freed memory: a use after free that writes into the heap",
}

# What SSL_read / SSL_shutdown would do in C on an SSL that SSL_clear reset (OpenSSL 3.0).
_AFTER_SSL_CLEAR = {
    "SSL_read": "In C (OpenSSL 3.0) SSL_read on a cleared SSL does not read the old connection: the "
    "SSL is back in its initial state, so SSL_read starts a new handshake over the same BIOs "
    "(SSL_read(3): 'If necessary, a read function will negotiate a TLS/SSL session') with a peer "
    "still in the old connection. No crash, but not a read",
    "SSL_shutdown": "In C (OpenSSL 3.0) SSL_shutdown on a cleared SSL fails: the SSL is back in its "
    "initial state, so SSL_shutdown returns -1 with SSL_R_SHUTDOWN_WHILE_IN_INIT (SSL_shutdown in "
    "ssl/ssl_lib.c) and sends no close_notify",
}

_DEFAULT_WHY = {
    "SSL_connect": "A handshake over memory BIOs.",
    "SSL_get0_session": "SSL_get0_session returns the SSL's session without taking a reference.",
    "SSL_get1_session": "SSL_get1_session returns the SSL's session and takes a reference (+1).",
    "SSL_read": "SSL_read processes the records waiting for this SSL.",
    "SSL_shutdown": "SSL_shutdown sends close_notify.",
    "SSL_clear": "SSL_clear resets the SSL for a new handshake.",
    "SSL_free": "SSL_free drops the SSL's reference to its session.",
    "SSL_set_session": "SSL_set_session makes a session the SSL's (+1) and drops the old one (-1).",
    "SSL_SESSION_free": "SSL_SESSION_free drops one reference.",
    "advance": "The virtual clock moved on.",
    "SSL_CTX_flush_sessions": "SSL_CTX_flush_sessions removes expired sessions from the cache.",
}


# The C calls a lab records (SSL_set_session: Endpoint.set_session, or connect(resume=...)'s first half).
_REFUSABLE = frozenset(_DEFAULT_WHY)


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

        def plan(res: OpResult) -> _Plan:
            label = res.value
            if label is None:
                return _Plan(self.name, "NULL")
            ref, refs = lab._new_ref(kind, label, self.name)
            return _Plan(self.name, label, refs, refs=(ref,), value=ref)

        with lab._lock, _DEFERRED:
            ref: SessionRef | None = lab._endpoint_op(self, kind, cname, plan)
            return ref

    def get0_session(self) -> SessionRef | None:
        """``SSL_get0_session``: a borrowed pointer (no refcount change), or None."""
        return self._session_getter("get0")

    def get1_session(self) -> SessionRef | None:
        """``SSL_get1_session``: +1 reference you must release with ``ref.free()``; or None."""
        return self._session_getter("get1")

    def set_session(self, ref: SessionRef) -> None:
        """``SSL_set_session`` on this (client) SSL: ``ref``'s session becomes its session (+1).

        The old session loses the SSL's reference (-1); if it is still open (this SSL sent no
        close_notify and is not reset for a new handshake) it is "bad" first: removed from the
        cache and marked not resumable (SSL_set_session(3); ssl_clear_bad_session in
        ssl/ssl_sess.c, OpenSSL 3.0).  The same checks as ``connect(resume=ref)`` apply.
        """
        lab = self._lab
        with lab._lock, _DEFERRED:
            lab._check_open("SSL_set_session")
            if self.side != "client":
                raise InvalidOperation(
                    f"can't SSL_set_session on {self.name}: it is a server SSL, and SSL_set_session(3) "
                    "is only useful for clients (a server finds its session in the handshake, from the "
                    "client's offer); sesskit keeps SSL_set_session to client SSLs"
                )
            label = lab._check_resume(ref)
            index, name = len(lab.trace), self.name
            on_connection = not lab.trace.ssl(name).cleared
            try:
                lab._endpoint_op(
                    self, "set_session", "SSL_set_session", lambda res: _Plan(f"{name} ← {label}"), label
                )
            finally:
                if on_connection and len(lab.trace) > index:  # recorded: its connection is gone
                    lab._set_while_open.setdefault(name, index)

    def _op(self, op: str, cname: str) -> None:
        with self._lab._lock, _DEFERRED:
            self._lab._endpoint_op(self, op, cname, lambda res: _Plan(self.name))

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
        with lab._lock, _DEFERRED:
            lab._check_open("SSL_SESSION_free")
            if self.kind == "get0":
                raise InvalidOperation(
                    f"can't SSL_SESSION_free({self.session}) on get0 ref #{self.id}: SSL_get0_session "
                    "took no reference (SSL_get_session(3): the reference count is not incremented), "
                    "and SSL_SESSION_free(3) must only be called for a reference that was explicitly "
                    "taken. Freeing it would drop a reference someone else owns (the SSL's or the "
                    "cache's): in C (OpenSSL 3.0) the session may be freed under the SSL or the cache "
                    "while they still point at it (a use after free later, or a double free when they "
                    "drop their own reference)"
                )
            if self.released:
                if self.dangling:
                    in_c = (
                        f"{self.session} is already freed (SSL_SESSION_free(3) frees it when its count "
                        "reaches 0), so in C (OpenSSL 3.0) the second call is a double free (undefined "
                        "behaviour: heap corruption or an abort)"
                    )
                else:
                    in_c = (
                        "SSL_SESSION_free(3) drops one reference per call, so in C (OpenSSL 3.0) the "
                        "second call would drop a reference the SSL or the cache owns: the session may "
                        "be freed under them (a use after free later, or a double free)"
                    )
                raise InvalidOperation(
                    f"can't SSL_SESSION_free get1 ref #{self.id} ({self.session}) twice: its "
                    f"reference was already given back. {in_c}"
                )
            old = lab._ref_state(self.id)
            released = Delta(
                refs={self.id: RefState(old.id, old.kind, old.session, old.via, True, old.dangling)}
            )
            target = f"{self.session} (ref #{self.id})"
            lab._operate(
                "session_free", (self.session,), "SSL_SESSION_free", lambda res: _Plan(target, extra=released)
            )
