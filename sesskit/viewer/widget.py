"""The viewer as a Jupyter widget (anywidget): JupyterLab, Notebook 7 and Voila draw the same module.

The kernel sends the trace once; after that a live lab sends only its new
steps (:meth:`Viewer.append`), and the browser folds them into states itself:
scrubbing, stepping and the timeline never wait for the kernel.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import anywidget
import traitlets

from ..trace import Step, Trace
from .page import asset, fragment, next_hash_key

__all__ = ["Viewer"]

# Set by the docs build: a viewer's output then also carries a static HTML copy of itself, which the
# docs pages show (they have no kernel and do not load ipywidgets' embed manager).
STATIC_HTML_ENV = "SESSKIT_STATIC_HTML"


class Viewer(anywidget.AnyWidget):
    """A trace drawn in the browser: the heap at a step, the timeline, the steps and their whys.

    Parameters
    ----------
    trace : Trace
        The trace to draw (a copy of its JSON travels to the browser).
    step : int
        The step shown first; -1 (the default) is the last.

    Attributes
    ----------
    step : int
        The step shown, kept in sync with the browser (the slider writes it).
    selected : str
        What the reader last clicked in the heap: ``"ssl:c1"``, ``"session:S2"``, ``"ref:3"`` or ``""``.
    """

    _esm = asset("viewer.js")
    _css = asset("viewer.css")
    trace = traitlets.Dict().tag(sync=True)
    step = traitlets.Int(-1).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    follow = traitlets.Bool(True).tag(sync=True)

    def __init__(self, trace: Trace | None = None, step: int = -1, **kwargs: Any) -> None:
        if trace is not None and not isinstance(trace, Trace):
            raise TypeError(f"Viewer needs a sesskit.Trace, not {type(trace).__name__}")
        data = trace.to_dict() if trace is not None else {"format": 1, "meta": {}, "steps": []}
        super().__init__(trace=data, step=step, **kwargs)

    def show(self, trace: Trace, step: int = -1) -> None:
        """Draw another trace (sent whole)."""
        self.trace = trace.to_dict()
        self.step = step

    def append(self, steps: Iterable[Step]) -> None:
        """Send only ``steps``, the lab's new ones; the browser appends them to what it has.

        The trait is extended in place without a sync message, so a page that asks for the widget's
        state again (a reload) still gets the whole trace.
        """
        new = [s.to_dict() for s in steps]
        if not new:
            return
        self.trace["steps"].extend(new)
        self.send({"type": "append", "steps": new})

    def truncate(self, length: int) -> None:
        """Drop the steps from ``length`` on (undo, or acting from an earlier step)."""
        del self.trace["steps"][length:]
        self.send({"type": "truncate", "length": length})

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return with_static_html(super()._repr_mimebundle_(**kwargs), self.trace)


def with_static_html(bundle: Any, trace: dict[str, Any]) -> Any:
    """A widget's mime bundle, plus the static viewer of ``trace`` as text/html when the docs ask for it.

    The docs build sets ``SESSKIT_STATIC_HTML=1`` in the kernel's environment and prefers text/html:
    its pages then draw with the viewer's own static path, not ipywidgets' embed manager.
    """
    if os.environ.get(STATIC_HTML_ENV) != "1" or bundle is None:
        return bundle
    static = {"text/html": fragment(trace, next_hash_key())}
    if isinstance(bundle, tuple):  # (data, metadata), as anywidget returns it
        return {**bundle[0], **static}, bundle[1]
    return {**bundle, **static}  # data alone, as ipywidgets' boxes return it
