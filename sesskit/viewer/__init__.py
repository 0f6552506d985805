"""The trace drawn in the reader's browser: one ES module + CSS, the same everywhere.

``sesskit.viewer(trace)`` returns a Jupyter widget (anywidget) that draws a
:class:`~sesskit.Trace`: the heap at a step (SSLs, sessions with their
refcounts, both caches in list order, every reference as an arrow), the
timeline, the step list and each step's why, with a slider.  The widget is
loaded lazily (it needs ipywidgets and anywidget); :mod:`sesskit.viewer.page`
writes the same viewer into a self-contained static page with no Jupyter at all.

The module is package data (``viewer.js``, ``viewer.css``): nothing is built
at install time and nothing is fetched from elsewhere at run time.

DOM contract (stable; browser tests and your own tests may rely on it):

- the root ``.sesskit-viewer`` has ``data-step``, the index of the step shown
  (0 = ``SSL_CTX_new``);
- each session in the heap is one ``[data-session=LABEL]`` with
  ``data-refcount``, ``data-cache`` (``server`` | ``client`` | ``none``) and
  ``data-freed`` (``true`` | ``false``); every live session of the shown step is
  present, even when its group is collapsed;
- the shown step's why, whole, is the text of ``[data-role=why]``;
- the slider is the viewer's ``input[type=range]``;
- in a static page, ``#step=N`` opens step N (each further viewer on a page has
  its own key: ``step2``, ``step3``...); inside Jupyter the URL is never touched.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..trace import Trace
    from .widget import Viewer

__all__ = ["Viewer", "show"]


def show(trace: Trace, step: int = -1) -> Viewer:
    """A :class:`Viewer` widget drawing ``trace`` at ``step`` (-1: the last)."""
    from .widget import Viewer

    return Viewer(trace, step=step)


def __getattr__(name: str) -> Any:
    if name == "Viewer":
        from .widget import Viewer

        return Viewer
    raise AttributeError(f"module 'sesskit.viewer' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """``sesskit.viewer(trace)`` is :func:`show`: the package is also the function people call."""

    def __call__(self, trace: Trace, step: int = -1) -> Viewer:
        return show(trace, step)


sys.modules[__name__].__class__ = _CallableModule
