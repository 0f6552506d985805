"""The model beside a real engine: each step's ``why``, written when it is read.

A Lab on a real OpenSSL keeps an :class:`Explainer`: the reference model
(:class:`~sesskit.engines.model.ModelEngine`) fed the same operations.  The
model's prediction gives every step its ``why`` in plain words, and where
reality differs from the prediction the step says so.

Running the model costs about as much Python as observing OpenSSL does, and
many labs never read a ``why`` (a loop of ten thousand handshakes, a
benchmark).  So an operation only *queues* its step here; the model runs
over the queue, in order, the first time anything reads the trace's steps
(:meth:`sesskit.trace.Trace.explain_later`).  The predictions are the same
as if the model had run step by step: it sees the same operations with the
same arguments, and compares with the real state as it was before each step.

The explainer holds the model and the trace, never the Lab or its engine:
a trace kept after its Lab is gone is still explained, and keeping it does
not keep any OpenSSL object alive.
"""

from __future__ import annotations

import threading
from typing import Any

from .engines.base import Engine, LabConfig
from .trace import SIDES, CacheState, Delta, SessionState, SSLState, Trace

__all__ = ["MISMATCH", "Explainer"]

MISMATCH = " [The model predicted a different outcome here: the real OpenSSL is shown.]"


class Explainer:
    """The model run beside a real engine, lazily (see the module docstring)."""

    def __init__(self, config: LabConfig, trace: Trace, **model_options: Any) -> None:
        from .engines.model import ModelEngine

        self._model: Engine | None = ModelEngine(config, **model_options)
        self._trace = trace
        self._lock = threading.Lock()
        self._pending: list[tuple[int, str, tuple[Any, ...], Any]] = []
        # The real state before the next step to explain (caches with full members).
        self._sessions: dict[str, SessionState] = {}
        self._ssls: dict[str, SSLState] = {}
        self._caches: dict[str, CacheState] = {side: CacheState(side) for side in SIDES}
        self._model.initial()
        for step in trace._steps:  # the lab's first step(s): already explained by the lab
            self._apply(step.changes)

    def queue(self, index: int, op: str, args: tuple[Any, ...], value: Any) -> None:
        """Step ``index`` was engine operation ``op(*args)`` and returned ``value``."""
        with self._lock:
            self._pending.append((index, op, args, value))
            if len(self._pending) == 1:
                self._trace.explain_later(self.explain)

    def explain(self) -> None:
        """Run the model over every queued step, in order, and write each step's ``why``."""
        with self._lock:
            pending, self._pending = self._pending, []
            steps = self._trace._steps
            for index, op, args, value in pending:
                real = self._changes(steps[index].changes)
                why = self._why(op, args, value, real)
                if why is not None:
                    self._trace.set_why(index, why)
                self._apply(real)

    def _why(self, op: str, args: tuple[Any, ...], value: Any, real: Delta) -> str | None:
        if self._model is None:
            return None
        try:
            predicted = getattr(self._model, op)(*args)
        except Exception as exc:  # the model is advisory here: never break a real lab
            self._model = None
            return f"(the model could not follow this step: {exc})"
        why: str = predicted.why
        if self._changes(predicted.delta) != real or predicted.value != value:
            why += MISMATCH
        return why

    def _changes(self, delta: Delta) -> Delta:
        """What ``delta`` really changes in the state before the step (unchanged entries dropped)."""
        caches = {}
        for side, c in delta.caches.items():
            old = self._caches.get(side)
            full = c.after(old.members if old is not None else ())
            if full != old:
                caches[side] = full
        sget, xget = self._sessions.get, self._ssls.get
        return Delta(
            sessions={k: v for k, v in delta.sessions.items() if sget(k) != v},
            ssls={k: v for k, v in delta.ssls.items() if xget(k) != v},
            caches=caches,
        )

    def _apply(self, delta: Delta) -> None:
        self._sessions.update(delta.sessions)
        self._ssls.update(delta.ssls)
        for side, c in delta.caches.items():
            old = self._caches.get(side)
            self._caches[side] = c.after(old.members if old is not None else ())
