"""The whole story in one figure (:func:`overview`) and files (:func:`save`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from ..trace import Snapshot, Trace
from ._style import SAVE_DPI, new_figure
from .heap import TITLE_IN, draw_heap, heap, heap_size
from .timeline import draw_timeline, place_panels, timeline_data, timeline_size, window_of


def overview(
    trace: Trace, step: int | None = None, fig: Figure | None = None, steps: Sequence[int] | None = None
) -> Figure:
    """The heap at ``step`` beside the whole timeline with ``step`` highlighted.

    The figure is sized for its content, as :func:`~sesskit.plot.heap` and
    :func:`~sesskit.plot.timeline` size theirs: text 9 pt or larger at the
    figure's size, tick labels apart; a long trace's timeline is as wide as
    14 inches and labels every k-th step, or draws the window ``steps``.

    Parameters
    ----------
    trace : Trace
    step : int, optional
        Which step (default: the last; negative counts from the end).
    fig : Figure, optional
        A figure to clear, resize and reuse.
    steps : range of int, optional
        Draw only this window of the timeline (see :func:`~sesskit.plot.timeline`).

    Returns
    -------
    Figure
    """
    n = len(trace)
    if step is None:
        step = n - 1
    if n and step < 0:
        step += n
    data = timeline_data(trace)
    window = window_of(steps, n)
    snap, title = Snapshot(), None
    if n:
        step = min(max(step, 0), n - 1)
        snap, title = trace.snapshot(step), f"step {step}: {trace[step].op}({trace[step].target})"
    heap_w, heap_h = heap_size(snap)
    size = timeline_size(data, window, step if n else None)
    width = heap_w + size.width
    height = max(heap_h + TITLE_IN, size.height)
    if fig is None:
        fig = new_figure((width, height))
    else:
        fig.clear()
        fig.set_size_inches(width, height)
    ax_heap = fig.add_axes((0.0, 1 - (heap_h + TITLE_IN) / height, heap_w / width, heap_h / height))
    ax_ref, ax_cache = place_panels(fig, size, heap_w, height - size.height)
    draw_heap(ax_heap, snap, title)
    draw_timeline(ax_ref, ax_cache, data, step if n else None, window=window)
    return fig


def save(
    trace_or_snapshot: Trace | Snapshot,
    path: str | Path,
    step: int | None = None,
    steps: Sequence[int] | None = None,
) -> Path:
    """Write a figure to ``path`` as PNG or SVG (chosen by the suffix), at its own readable size.

    A Trace is drawn as :func:`overview` (heap at ``step`` + timeline); a
    Snapshot as :func:`~sesskit.plot.heap`.  PNGs are written at 110 dpi.

    Parameters
    ----------
    trace_or_snapshot : Trace or Snapshot
    path : str or Path
        Ends in ``.png`` or ``.svg``.
    step : int, optional
        For a Trace: the step to show (default: the last).
    steps : range of int, optional
        For a Trace: the window of the timeline to draw (default: all steps).

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ValueError(f"save() writes .png or .svg, not {path.suffix or 'a file without suffix'!r}")
    if isinstance(trace_or_snapshot, Trace):
        fig = overview(trace_or_snapshot, step, steps=steps)
    elif isinstance(trace_or_snapshot, Snapshot):
        fig = heap(trace_or_snapshot)
    else:
        raise TypeError(f"save() takes a Trace or a Snapshot, not {type(trace_or_snapshot).__name__}")
    fig.savefig(path, format=fmt, dpi=SAVE_DPI)
    return path
