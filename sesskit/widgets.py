"""The Stepper: step a :class:`~sesskit.Lab` by hand in Jupyter and watch every refcount.

The Stepper *is* the browser viewer (:class:`sesskit.viewer.Viewer`) plus an
operation bar, both drawn by the viewer's one ES module.  The kernel sends a
small ``ui`` dict (what one can act on, each button's state and tooltip, the
resume choices, the predict question, score, verdict, error, notice) and, after
an operation, only the new steps; the browser draws them and scrubs the whole
history by itself, with or without a kernel.

A click sends ``{"type": "op", "op": <button>, ...}``; the browser disables every
button until the kernel answers with a newer ``ui["seq"]``, so a double click
performs one operation.  Mistakes are allowed: an ``SSL_SESSION_free`` on a get0
pointer, a use after free, a double free, a read after ``SSL_clear``, resuming a
server-side session can all be clicked; the lab refuses them with a typed error
before calling OpenSSL, and the Stepper records that refusal as a step
(:meth:`Lab.refused`) that changes nothing and says why.

Branching, undo and reset replay the lab's own trace on a new lab with the same
engine and settings (each step records its call and arguments); every replayed
step is checked against the recorded one, so a replay is exact or refused.

The logic lives in :mod:`sesskit.stepcore` (standard library only), which the
docs' Try it also runs in the browser (Pyodide, on the model engine); this
widget maps its messages to the viewer's and its state to traits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import traitlets

from .stepcore import ASKS, FULL_HANDSHAKE, OPS, SSL_OPS, StepperCore
from .viewer.widget import Viewer, with_static_html

if TYPE_CHECKING:
    from .lab import Lab

__all__ = ["ASKS", "FULL_HANDSHAKE", "OPS", "SSL_OPS", "Stepper"]

# The bar's state kept as traits here and as attributes of the core (same names).
_STATE = (
    *("acts_on", "resume", "seconds", "side", "predict"),
    *("guess", "question", "verdict", "error", "notice"),
)


class Stepper(Viewer):
    """The viewer of one Lab with a bar of OpenSSL calls; the kernel performs, the browser draws.

    Parameters
    ----------
    lab : Lab
        The lab to drive, through its public API only.  Errors it raises are recorded
        as refused steps or shown, never raised.
    render : None
        Ignored (accepted for notebooks written for the kernel-drawn Stepper).

    Attributes
    ----------
    lab : Lab
        The lab driven now (reset, undo and branching replace it with a replayed one).
    acts_on : str
        What the SSL and SSL_SESSION_free buttons act on: ``"ssl:c1"`` or ``"ref:3"``.
    resume, seconds, side
        The connect's resume choice (a ref id, 0 = a full handshake), advance's seconds,
        the flush's side.
    predict : bool
        Ask for the watched session's refcount before each call that can change one.
    guess : int or None
        The answer to the question asked (None: empty).
    question, verdict, error, notice : str
        What the bar shows.
    score : tuple[int, int]
        (right, asked).
    """

    ui = traitlets.Dict().tag(sync=True)
    acts_on = traitlets.Unicode("")
    resume = traitlets.Int(0)
    seconds = traitlets.Int(3600)
    side = traitlets.Unicode("server")
    predict = traitlets.Bool(False)
    guess = traitlets.Int(None, allow_none=True)
    question = traitlets.Unicode("")
    verdict = traitlets.Unicode("")
    error = traitlets.Unicode("")
    notice = traitlets.Unicode("")

    def __init__(self, lab: Lab, render: str | None = None, **kwargs: Any) -> None:
        self._syncing = 0
        # Checks the lab (TypeError otherwise); publishes once the widget exists.
        self.core = StepperCore(lab, self._emit, publish=False)
        super().__init__(lab.trace, **kwargs)
        self.on_msg(self._on_msg)
        self.observe(self._on_selected, names="selected")
        self.observe(self._changed, names=list(_STATE))
        self.core.publish()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, tuple) and "text/plain" in bundle[0]:  # shown without widget state
            bundle[0]["text/plain"] = "sesskit Stepper: run the cell to continue (needs a kernel)"
        return with_static_html(bundle, self.trace)

    # -- the core's state ------------------------------------------------------
    @property
    def lab(self) -> Lab:
        return self.core.lab

    @lab.setter
    def lab(self, lab: Lab) -> None:
        self.core.lab = lab

    @property
    def score(self) -> tuple[int, int]:
        return self.core.score

    @score.setter
    def score(self, score: tuple[int, int]) -> None:
        self.core.score = score

    @property
    def right(self) -> bool | None:
        return self.core.right

    def _pull(self) -> None:
        """Traits <- the core (no publish back)."""
        self._syncing += 1
        try:
            with self.hold_trait_notifications():
                for name in _STATE:
                    value = getattr(self.core, name)
                    if getattr(self, name) != value:
                        setattr(self, name, value)
        finally:
            self._syncing -= 1

    def _changed(self, change: Any = None) -> None:
        """A trait set from Python (or the page): the core takes it, and the bar is redrawn."""
        if self._syncing or change is None:
            return
        setattr(self.core, change["name"], change["new"])
        self.core.changed()

    def _emit(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "ui":
            self._pull()
            self.ui = msg["ui"]
            acts_on = self.core.acts_on
            if acts_on and self.selected != acts_on:
                self.selected = acts_on
        elif kind == "append":
            # extended in place without a sync message: a page that asks for the state again gets it all
            self.trace["steps"].extend(msg["steps"])
            self.send(msg)
        elif kind == "truncate":
            del self.trace["steps"][msg["length"] :]
            self.send(msg)
        elif kind == "show":
            self.trace = msg["trace"]
            self.step = -1

    def _on_selected(self, change: dict[str, Any]) -> None:
        """A click on an SSL or a pointer in the picture chooses what the buttons act on."""
        self.core.select(str(change["new"]))
        self._pull()  # the browser's bar already shows it: no redraw under the reader's pointer

    # -- the browser's messages -------------------------------------------------
    def _on_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict):
            self.core.handle(content)

    def _handle_op(self, msg: dict[str, Any]) -> None:
        """One message from the bar (see :meth:`sesskit.stepcore.StepperCore.handle`)."""
        self.core.handle(msg)

    # -- operations -------------------------------------------------------------
    def enabled(self) -> dict[str, bool]:
        """Which buttons can be clicked now: every call the selected object takes, mistakes included."""
        return self.core.enabled()

    def run(self, name: str) -> None:
        """Perform button ``name`` on :attr:`acts_on`, as a click does (predict mode may ask first)."""
        self.core.run(name)

    def branch(self, step: int) -> None:
        """Go on from ``step``: the steps after it are discarded (the lab is replayed up to it)."""
        self.core.branch(step)

    def undo(self) -> None:
        """Take the last step back (the lab is replayed up to the one before)."""
        self.core.undo()

    def reset(self) -> None:
        """A new lab with the same engine and settings (step 0 only)."""
        self.core.reset()
