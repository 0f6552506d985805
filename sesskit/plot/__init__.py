"""Export a :class:`~sesskit.trace.Trace` as PNG/SVG figures: heap pictures, refcount timelines.

The interactive picture is the browser viewer (:mod:`sesskit.viewer`); this
package draws the same trace with matplotlib, for files and print.  Every
function takes plain trace data (a Trace or a Snapshot) and returns a
:class:`matplotlib.figure.Figure`; nothing touches an engine, and nothing
calls ``plt.show()``.  Figures are built with the object API (``Figure`` +
Agg canvas), not pyplot, so making many of them leaks nothing.

Figures are readable at the size they are made and saved: no text under
9 pt (a figure grows with its content instead of shrinking its text, and
counts what it cannot show), tick labels never overlap (a long trace is
labelled every k-th step, or drawn as a window: ``steps=range(a, b)``), every
session is named in the legend up to 60 sessions, and the small vertical
nudge that keeps equal refcounts apart is explained under the timeline.

Colours are stable: a session's colour is derived from its label alone, so
``S3`` has the same colour in every figure and in the viewer.

Modules: :mod:`~sesskit.plot.heap` (one step's objects and references),
:mod:`~sesskit.plot.timeline` (refcounts and cache sizes over the steps),
:mod:`~sesskit.plot.export` (:func:`overview`, :func:`save`),
:mod:`~sesskit.plot._style` (colours and sizes).

Artists carry ``gid`` s so tests (and curious users) can find them:

- timeline: ``timeline:refcount`` (one LineCollection, one path per session),
  ``timeline:cache-band``, ``timeline:freed``, ``timeline:dangling``,
  ``timeline:cache-size:client`` / ``:server``, ``timeline:current``,
  ``timeline:sessions`` and ``timeline:key`` (legends), ``timeline:nudge-note``;
- heap: ``ssl:c1``, ``session:S2``, ``ghost:S2``, ``badge:S2``, ``ref:#3``,
  ``cache:server`` and one arrow per reference, ``ref:ssl:c1->S2``,
  ``ref:cache:server->S2``, ``ref:get1:#3->S2``, ``ref:get0:#4->S2``.
"""

from __future__ import annotations

from ._style import session_color
from .export import overview, save
from .heap import heap
from .timeline import TimelineData, timeline, timeline_data

__all__ = [
    "TimelineData",
    "heap",
    "overview",
    "save",
    "session_color",
    "timeline",
    "timeline_data",
]
