"""The Stepper's logic with no Jupyter in it: the same Python drives the kernel's widget and the docs' Try it.

:class:`StepperCore` holds what the Stepper's bar shows (what one acts on, the
resume choice, predict mode, score, verdict, error, notice), performs the bar's
operations on a :class:`~sesskit.Lab` through its public API, and reports what
the browser must draw through one callback, ``emit(msg)``, with plain JSON-able
dicts:

- ``{"type": "append", "steps": [...]}``: the lab's new steps (``Step.to_dict()``);
- ``{"type": "truncate", "length": n}``: the steps from ``n`` on are gone (undo, a branch);
- ``{"type": "show", "trace": {...}}``: a whole new trace (reset, a replayed trace);
- ``{"type": "ui", "ui": {...}}``: the bar's state (its ``seq`` grows with each handled click).

:meth:`StepperCore.handle` takes the bar's messages (``{"type": "op", "op": ...}``).
:class:`sesskit.widgets.Stepper` maps these emits to its widget's messages and
traits; the docs' Try it runs this module in Pyodide (a Web Worker) on the model
engine and posts them to the page.  Standard library only.

Mistakes are allowed: an ``SSL_SESSION_free`` on a get0 pointer, a use after
free, a double free, a read after ``SSL_clear``, resuming a server-side session
can all be clicked; the lab refuses them with a typed error before calling
OpenSSL, and the core records that refusal as a step (:meth:`Lab.refused`) that
changes nothing and says why.

Branching, undo and reset replay the lab's own trace on a new lab with the same
engine and settings (each step records its call and arguments); every replayed
step is checked against the recorded one, so a replay is exact or refused.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import InvalidOperation, SesskitError

if TYPE_CHECKING:
    from .lab import Endpoint, Lab, SessionRef

__all__ = ["ASKS", "FULL_HANDSHAKE", "OPS", "SSL_OPS", "StepperCore", "replay_step"]

# button name (also the CSS class suffix sesskit-btn-<name>) -> (C call, what it does to references)
OPS: dict[str, tuple[str, str]] = {
    "get0": ("SSL_get0_session", "returns the SSL's session without a reference: refcount unchanged"),
    "get1": ("SSL_get1_session", "returns the SSL's session and takes a reference: +1, yours to free"),
    "read": ("SSL_read", "processes waiting records: TLS 1.3 tickets may replace the SSL's session"),
    "shutdown": ("SSL_shutdown", "sends close_notify: the session stays good for resumption"),
    "clear": ("SSL_clear", "resets the SSL; a session not closed cleanly is removed and dropped (-1)"),
    "free": ("SSL_free", "frees the SSL and drops its reference to its session (-1)"),
    "session-free": ("SSL_SESSION_free", "drops the reference a get1 took (-1); at 0 the session is freed"),
    "connect": ("SSL_connect", "a new client and server SSL and a handshake: each SSL holds its session"),
    "advance": ("advance", "ages every session by the seconds given: no refcount changes"),
    "flush": ("SSL_CTX_flush_sessions", "removes expired sessions from one side's cache (-1 each)"),
}
SSL_OPS = ("get0", "get1", "read", "shutdown", "clear", "free")
# Operations that can change a refcount or a cache (model.py): predict mode asks before these only.
# get0 takes no reference; advance only ages sessions (expiry is seen at lookup or flush).
ASKS = frozenset(("get1", "read", "shutdown", "clear", "free", "session-free", "connect", "flush"))
FULL_HANDSHAKE = "a full handshake"
# The bar's fields a click message may carry, with their types.
FIELDS = (("acts_on", str), ("resume", int), ("seconds", int), ("side", str))

Emit = Callable[[dict[str, Any]], None]


class StepperCore:
    """The Stepper's state and operations over one Lab; what changes is reported through ``emit``.

    Parameters
    ----------
    lab : Lab
        The lab to drive, through its public API only.  Errors it raises are recorded as
        refused steps or shown, never raised.
    emit : callable
        Called with each message for the browser (see the module's docstring).

    Attributes
    ----------
    lab : Lab
        The lab driven now (reset, undo and branching replace it with a replayed one).
    acts_on, resume, seconds, side, predict, guess, question, verdict, error, notice, score, right
        What the bar shows (see :class:`sesskit.widgets.Stepper`).
    """

    def __init__(self, lab: Lab, emit: Emit, publish: bool = True) -> None:
        from .lab import Lab

        if not isinstance(lab, Lab):
            raise TypeError(f"Stepper needs a sesskit.Lab to drive, not {type(lab).__name__}")
        self.lab = lab
        self.emit = emit
        self.acts_on = ""
        self.resume = 0
        self.seconds = 3600
        self.side = "server"
        self.predict = False
        self.guess: int | None = None
        self.question = ""
        self.verdict = ""
        self.error = ""
        self.notice = ""
        self.score = (0, 0)
        self.right: bool | None = None  # the last verdict
        self._seq = 0
        self._hold = 0
        self._pending: dict[str, Any] | None = None  # the call waiting for a predicted answer
        self._resuming: SessionRef | None = None
        self._sent = len(lab.trace)
        if publish:
            self.publish()

    # -- the objects ---------------------------------------------------------
    def _ssls(self) -> list[Endpoint]:
        return [ep for link in self.lab.links for ep in (link.client, link.server)]

    def object(self, key: str | None = None) -> Endpoint | SessionRef | None:
        """The SSL or pointer ``key`` (default: :attr:`acts_on`) names, or None."""
        kind, _, ident = (self.acts_on if key is None else key).partition(":")
        if kind == "ssl":
            return next((ep for ep in self._ssls() if ep.name == ident), None)
        if kind == "ref":
            return next((r for r in self.lab.refs if str(r.id) == ident), None)
        return None

    def _objects(self) -> list[list[str]]:
        trace, out = self.lab.trace, []
        for ep in self._ssls():
            st = trace.ssl(ep.name)
            state = "freed" if st.freed else "cleared" if st.cleared else f"→ {st.session or 'no session'}"
            out.append([f"ssl:{ep.name}", f"{ep.name} ({ep.side} SSL, {state})"])
        for ref in self.lab.refs:
            rs = trace.ref(ref.id)
            state = "dangling" if rs.dangling else "released" if rs.released else "held"
            out.append([f"ref:{ref.id}", f"ref #{ref.id} {ref.kind} → {ref.session} ({state})"])
        return out

    def _resumes(self) -> list[list[Any]]:
        """A full handshake (0), then every session a pointer of yours names, with its state."""
        out: list[list[Any]] = [[0, FULL_HANDSHAKE]]
        for ref in self.lab.refs:
            st = self.lab.trace.session(ref.session)
            if st.freed:
                state = "freed: a use after free"
            else:
                cache = f"in {st.cache} cache" if st.cache else "not cached"
                state = f"refcount {st.refcount} · {cache} · {'' if st.resumable else 'not '}resumable"
            side = "" if st.side == "client" else f" · {st.side}-side: a mistake"
            out.append([ref.id, f"{ref.session} (ref #{ref.id} {ref.kind}) · {state}{side}"])
        return out

    def _kind(self, name: str) -> bool | str:
        """When button ``name`` can be clicked: always (True), never (a closed lab), or when "acts on"
        is an SSL ("ssl") or a pointer ("ref"): the browser switches it as "acts on" changes."""
        if self.lab._closed:
            return False
        return "ssl" if name in SSL_OPS else "ref" if name == "session-free" else True

    def enabled(self) -> dict[str, bool]:
        """Which buttons can be clicked now: every call the selected object takes, mistakes included."""
        kind = self.acts_on.partition(":")[0]
        return {name: self._kind(name) in (True, kind) for name in OPS}

    # -- the bar the browser draws ------------------------------------------------
    def changed(self) -> None:
        """Publish, unless an operation under way will."""
        if not self._hold:
            self.publish()

    def select(self, key: str) -> None:
        """A click on an SSL or a pointer in the picture chooses what the buttons act on.

        The browser's bar already shows it: nothing is published (no redraw under the reader's pointer).
        """
        if str(key).startswith(("ssl:", "ref:")) and self.object(key) is not None:
            self.acts_on = key

    def publish(self) -> None:
        """Send the bar's state (and any new steps) to the browser."""
        trace = self.lab.trace
        if len(trace) > self._sent:
            steps = [trace[i].to_dict() for i in range(self._sent, len(trace))]
            self.emit({"type": "append", "steps": steps})
            self._sent = len(trace)
        objects = self._objects()
        keys = [k for k, _ in objects]
        if self.acts_on not in keys:
            self.acts_on = keys[0] if keys else ""
        resumes = self._resumes()
        if self.resume not in [v for v, _ in resumes]:
            self.resume = 0
        ops: list[dict[str, Any]] = [
            {"n": n, "l": OPS[n][0], "t": f"{OPS[n][0]}: {OPS[n][1]}", "on": self._kind(n)}
            for n in (*SSL_OPS, "session-free", "connect", "advance", "flush")
        ]
        ops[-3]["arg"] = {"k": "resume", "l": "resume", "o": resumes, "v": self.resume}
        ops[-2]["arg"] = {"k": "seconds", "l": "seconds", "v": self.seconds}
        ops[-1]["arg"] = {
            "k": "side",
            "l": "side",
            "o": [["server", "server"], ["client", "client"]],
            "v": self.side,
        }
        lab = self.lab
        note = f" · {lab.engine_note}" if lab.engine_note else ""
        ui = {
            "seq": self._seq,
            "status": f"sesskit · {lab.engine_name} · {lab.openssl_version}{note}",
            "acts_on": {"v": self.acts_on, "o": objects},
            "ops": ops,
            "predict": self.predict,
            "question": self.question,
            "score": "score: {} / {}".format(*self.score) if self.score[1] else "",
            "verdict": self.verdict,
            "right": self.right,
            "error": self.error,
            "notice": self.notice,
        }
        self.emit({"type": "ui", "ui": ui})

    # -- the browser's messages -------------------------------------------------
    def handle(self, msg: Mapping[str, Any]) -> None:
        """One message from the bar: ``{"type": "op", "op": name, "acts_on", "resume", "seconds", "side",
        "guess", "at", "seq"}``; ``at`` is the step shown when the reader chose to act there (a branch).

        A message drawn from an older ``ui`` (its ``seq``) is a second click on the same picture: the
        first one is being (or was) performed, so it is dropped.  Other message types are ignored.
        """
        if not isinstance(msg, Mapping) or msg.get("type") != "op":
            return
        if "seq" in msg and msg["seq"] != self._seq:
            return
        self._seq += 1
        self._hold += 1
        try:
            self.notice = ""
            for key, kind in FIELDS:
                if isinstance(msg.get(key), kind) and not isinstance(msg.get(key), bool):
                    setattr(self, key, msg[key])
            guess = msg.get("guess")
            self.guess = guess if isinstance(guess, int) and not isinstance(guess, bool) else None
            op, at = msg.get("op"), msg.get("at")
            if op == "predict":
                self.predict, self.question, self._pending = bool(msg.get("on")), "", None
            elif op == "answer":
                if self._pending is None:
                    self.error = "no question is waiting for an answer"
                else:
                    self.run(self._pending["op"])
            elif op == "reset":
                self.reset()
            elif op == "undo":
                self.undo()
            elif op in OPS:
                if isinstance(at, int) and not isinstance(at, bool) and 0 <= at < len(self.lab.trace) - 1:
                    self.branch(at)
                    if self.error:
                        return
                self.run(str(op))
            else:
                self.error = f"unknown operation {op!r}"
        except Exception as exc:  # never leave the bar stuck behind a traceback
            self.error = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            self._hold -= 1
            self.publish()

    # -- operations -------------------------------------------------------------
    def run(self, name: str) -> None:
        """Perform button ``name`` on :attr:`acts_on`, as a click does (predict mode may ask first)."""
        if name not in OPS:
            raise ValueError(f"no button {name!r}: one of {', '.join(OPS)}")
        self._hold += 1
        try:
            self._run(name)
        finally:
            self._hold -= 1
            self.changed()

    def _run(self, name: str) -> None:
        self.error = ""
        watched = self._watched(name)
        if self.predict and name in ASKS and watched is not None and self.guess is None:
            self._pending = {"op": name}
            self.verdict = ""
            self.question = f"Before {OPS[name][0]}: what will {watched}'s refcount be after it?"
            return
        guess = self.guess if self.predict and watched is not None and name in ASKS else None
        self.question, self._pending, self.guess, self.verdict, self.right = "", None, None, "", None
        before = len(self.lab.trace)
        try:
            self._perform(name)
        except SesskitError as exc:
            self._refuse(name, exc)
        if guess is not None and watched is not None:
            self._judge(
                guess, watched, refused=self.lab.trace[-1].error is not None or len(self.lab.trace) == before
            )

    def _perform(self, name: str) -> None:
        from .lab import Endpoint, SessionRef

        lab, obj = self.lab, self.object()
        if name == "connect":
            self._resuming = next((r for r in lab.refs if r.id == self.resume), None)
            self.resume = 0  # the next connect is a full handshake unless chosen again
            self.acts_on = f"ssl:{lab.connect(resume=self._resuming).client.name}"
        elif name == "advance":
            lab.advance(self.seconds)
        elif name == "flush":
            lab.flush(side=self.side)
        elif name == "session-free":
            if not isinstance(obj, SessionRef):
                raise _NotApplicable("SSL_SESSION_free acts on a session pointer: choose a ref in 'acts on'")
            obj.free()
        elif not isinstance(obj, Endpoint):
            raise _NotApplicable(f"{OPS[name][0]} acts on an SSL: choose an SSL in 'acts on'")
        else:
            getattr(obj, {"get0": "get0_session", "get1": "get1_session"}.get(name, name))()

    def _refuse(self, name: str, exc: SesskitError) -> None:
        """A mistake: recorded as a refused step (nothing changes) when the lab can record it."""
        from .lab import SessionRef

        obj, op = self.object(), OPS[name][0]
        if name == "connect":
            ref = self._resuming
            op, target = (
                "SSL_set_session",
                f"new client SSL with {ref.session} (ref #{ref.id})" if ref else "",
            )
        elif isinstance(obj, SessionRef):
            target = f"{obj.session} (ref #{obj.id})"
        else:
            target = getattr(obj, "name", "")
        if isinstance(exc, _NotApplicable) or not target or not hasattr(self.lab, "refused"):
            self.error = f"{type(exc).__name__}: {exc}"
            return
        try:
            self.lab.refused(op, target, exc)
        except SesskitError:
            self.error = f"{type(exc).__name__}: {exc}"

    # -- predict mode ---------------------------------------------------------------
    def _watched(self, name: str) -> str | None:
        """The session the question is about: the resumed one, else the one acts_on holds now."""
        if name == "connect" and self.resume:
            ref = next((r for r in self.lab.refs if r.id == self.resume), None)
            return ref.session if ref is not None else None
        obj = self.object()
        return None if obj is None else obj.session

    def _judge(self, guess: int, label: str, refused: bool) -> None:
        right, asked = self.score
        if refused:
            self.verdict = "Refused: the call was a mistake, so nothing changed (not scored). " + (
                self.lab.trace[-1].why
            )
            self.right = None
            return
        st = self.lab.trace.session(label)
        now = f"{label}'s refcount is now {st.refcount}" + (" (freed)" if st.freed else "")
        self.right = guess == st.refcount
        self.score = (right + self.right, asked + 1)
        said = "✔ Right" if self.right else f"✘ You said {guess}"
        self.verdict = f"{said}: {now}. {self.lab.trace[-1].why}"

    # -- history: branch, undo, reset, replay -------------------------------------------
    def branch(self, step: int) -> None:
        """Go on from ``step``: the steps after it are discarded (the lab is replayed up to it)."""
        self._hold += 1
        try:
            self._rewind(step)
        finally:
            self._hold -= 1
            self.changed()

    def undo(self) -> None:
        """Take the last step back (the lab is replayed up to the one before)."""
        if len(self.lab.trace) <= 1:
            self.error = "nothing to undo: step 0 (SSL_CTX_new) is where every lab starts"
            self.changed()
            return
        self.branch(len(self.lab.trace) - 2)

    def reset(self) -> None:
        """A new lab with the same engine and settings (step 0 only)."""
        self._hold += 1
        try:
            old, self.lab = self.lab, self._new_lab()
            old.close()
            self.emit({"type": "show", "trace": self.lab.trace.to_dict()})
            self._sent = len(self.lab.trace)
            self.acts_on, self.error, self.question, self._pending = "", "", "", None
            self.verdict, self.score, self.right = "", (0, 0), None
            self.notice = "A new lab with the same settings."
        finally:
            self._hold -= 1
            self.changed()

    def _new_lab(self) -> Lab:
        from .lab import Lab

        return Lab(engine=self.lab.engine_name, **dataclasses.asdict(self.lab.config))

    def _rewind(self, step: int) -> None:
        old = self.lab
        new = self._new_lab()
        try:
            for i in range(1, step + 1):
                replay_step(new, old.trace[i])
                if _record(new.trace[i]) != _record(old.trace[i]):
                    raise InvalidOperation(f"step {i} replayed differently")
        except SesskitError as exc:
            new.close()
            self.error = f"can't go back to step {step}: {exc}. Reset starts a new lab."
            return
        n = len(old.trace)
        self.lab = new
        old.close()
        self.emit({"type": "truncate", "length": step + 1})
        self._sent = step + 1
        self.question, self._pending = "", None
        self.notice = f"Steps {step + 1}..{n - 1} were discarded; the lab was replayed up to step {step}."

    def replay(self, steps: Iterable[Mapping[str, Any]], checked: int | None = None) -> None:
        """Perform recorded steps (``Step.to_dict()`` dicts, step 0 first) again on a new lab, then show it.

        The first ``checked`` steps (all when None) must replay exactly as recorded (their changes and
        results; the whys may differ between engines): a step that does not raises
        :class:`~sesskit.InvalidOperation` naming it, and the lab driven stays as it was.  Steps after
        those need only ``op``, ``target`` and ``error`` (a link's operations) and must succeed.
        """
        new = self._new_lab()
        try:
            for i, d in enumerate(steps):
                if i == 0:
                    if d.get("op") != "SSL_CTX_new":
                        raise InvalidOperation("a trace starts with SSL_CTX_new (step 0)")
                    continue
                rec = _Recorded(i, str(d.get("op", "")), str(d.get("target", "")), d.get("error"))
                before = len(new.trace)
                replay_step(new, rec)
                if len(new.trace) != before + 1:
                    raise InvalidOperation(f"step {i} ({rec.op} {rec.target}) recorded no step")
                if checked is None or i < checked:
                    mine = _record(new.trace[i])
                    theirs = {k: v for k, v in d.items() if k != "why"}
                    if mine != theirs:
                        raise InvalidOperation(
                            f"step {i} ({rec.op} {rec.target}) replays differently on the "
                            f"{new.engine_name} engine ({new.openssl_version})"
                        )
        except SesskitError:
            new.close()
            raise
        except (KeyError, StopIteration, ValueError, TypeError) as exc:
            new.close()
            raise InvalidOperation(f"the trace can't be replayed: {type(exc).__name__}: {exc}") from exc
        old, self.lab = self.lab, new
        old.close()
        self._hold += 1
        try:
            self.emit({"type": "show", "trace": new.trace.to_dict()})
            self._sent = len(new.trace)
            self.acts_on, self.error, self.question, self._pending = "", "", "", None
            self.verdict, self.right = "", None
        finally:
            self._hold -= 1
            self.changed()


@dataclasses.dataclass(frozen=True)
class _Recorded:
    """What replaying a step needs: its index, call, target and (a refused step's) error."""

    index: int
    op: str
    target: str
    error: Mapping[str, str] | None


def _record(step: Any) -> dict[str, Any]:
    d: dict[str, Any] = step.to_dict()
    d.pop("why", None)
    return d


_CONNECT = re.compile(r"^\S+↔\S+(?: resume (\S+))?$")
_SESSION_FREE = re.compile(r"^\S+ \(ref #(\d+)\)$")


def replay_step(lab: Lab, step: Any) -> None:
    """Perform recorded ``step`` again on ``lab`` (each step names its call and its arguments).

    ``step`` needs ``index``, ``op``, ``target`` and ``error`` (a :class:`~sesskit.Step` has them).
    """
    if step.error is not None:
        kind = getattr(errors, str(step.error["kind"]), None)
        cls = kind if isinstance(kind, type) and issubclass(kind, SesskitError) else InvalidOperation
        lab.refused(step.op, step.target, cls(step.error["message"]))
        return
    op, target = step.op, step.target
    if op == "SSL_connect" and (m := _CONNECT.match(target)):
        ref = next((r for r in lab.refs if r.session == m.group(1)), None) if m.group(1) else None
        lab.connect(resume=ref)
    elif op == "advance" and re.fullmatch(r"\+\d+s", target):
        lab.advance(int(target[1:-1]))
    elif op == "SSL_CTX_flush_sessions" and (m := re.fullmatch(r"(server|client) at t=(\d+)", target)):
        lab.flush(side=m.group(1), at=int(m.group(2)))
    elif op == "SSL_SESSION_free" and (m := _SESSION_FREE.match(target)):
        next(r for r in lab.refs if r.id == int(m.group(1))).free()
    elif op in _ENDPOINT_CALLS:
        getattr(lab.endpoint(target), _ENDPOINT_CALLS[op])()
    else:
        raise InvalidOperation(f"step {step.index} ({op} {target}) can't be replayed")


_ENDPOINT_CALLS = {
    "SSL_get0_session": "get0_session",
    "SSL_get1_session": "get1_session",
    "SSL_read": "read",
    "SSL_shutdown": "shutdown",
    "SSL_clear": "clear",
    "SSL_free": "free",
}


class _NotApplicable(SesskitError):
    """The chosen object can't take this operation (its button is disabled)."""
