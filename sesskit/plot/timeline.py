"""The timeline: every session's refcount over the steps, cache membership, frees, cache sizes.

The data is folded once from the trace's deltas (:class:`TimelineData`); the
drawing is sized so its text is readable at the size it is saved (nothing
under 9 pt, tick labels never overlapping): a default figure grows wider with
the steps up to a cap, then labels every k-th step; ``steps=range(a, b)``
draws a window of a long trace with every step labelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..trace import SIDES, Trace
from ._style import (
    CACHE_DASH,
    CACHE_LINE,
    CHAR_EM,
    DANGLING,
    HIGHLIGHT,
    MAX_NUDGE,
    MIN_PT,
    lane_offset,
    new_figure,
    session_color,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MAX_LEGEND = 60  # sessions named one by one in the legend; more are counted
_PITCH_PT = 15.0  # room per labelled step: a 9-pt label turned upright is ~11 pt wide, plus air
_ROW_PT = MIN_PT * 1.75  # one legend row (text + labelspacing)
_REF_H, _CACHE_H, _GAP_H = 3.0, 1.0, 0.12  # panel heights (inches) of a figure made here
_MIN_W, _MAX_W = 6.0, 14.0  # width of the panels (inches): grows with the steps shown up to this


# -- series in one pass over the deltas ------------------------------------------
@dataclass
class TimelineData:
    """What a timeline draws, folded once from a trace's deltas.

    ``paths[label]`` are the change points ``(step, refcount)`` of a session
    from the step it was first seen; ``freed_at[label]`` the step it was freed;
    ``cache_spans[label]`` the ``[start, end)`` step ranges it sat in a cache
    (``end`` is None while it still does); ``dangling`` ``(step, ref id,
    label)`` where a ref started to dangle; ``cache_sizes[side]`` change points
    of each cache's size.  :meth:`extend` folds later steps on (a growing lab
    costs only its new steps).
    """

    n: int = 0
    ops: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    paths: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    freed_at: dict[str, int] = field(default_factory=dict)
    cache_spans: dict[str, list[list[Any]]] = field(default_factory=dict)
    dangling: list[tuple[int, int, str]] = field(default_factory=list)
    cache_sizes: dict[str, list[tuple[int, int]]] = field(
        default_factory=lambda: {side: [(0, 0)] for side in SIDES}
    )
    max_refcount: int = 0
    _refcount: dict[str, int] = field(default_factory=dict, repr=False)
    _cached: dict[str, bool] = field(default_factory=dict, repr=False)
    _dangling: dict[int, bool] = field(default_factory=dict, repr=False)
    _series: dict[str, Any] = field(default_factory=dict, repr=False)  # see _refcount_series

    def extend(self, trace: Trace) -> TimelineData:
        """Fold the steps of ``trace`` this data has not seen yet; returns self."""
        for i in range(self.n, len(trace)):
            self._fold(i, trace[i])
        return self

    def _fold(self, i: int, step: Any) -> None:
        self.n = i + 1
        self.ops.append(step.op)
        self.targets.append(step.target)
        for label, st in step.changes.sessions.items():
            old = self._refcount.get(label)
            if old is None:
                self.labels.append(label)
                self.paths[label] = [(i, st.refcount)]
                self.cache_spans[label] = []
            elif old != st.refcount:
                self.paths[label].append((i, st.refcount))
            self._refcount[label] = st.refcount
            self.max_refcount = max(self.max_refcount, st.refcount)
            in_cache = st.cache is not None
            if in_cache != self._cached.get(label, False):
                if in_cache:
                    self.cache_spans[label].append([i, None])
                else:
                    self.cache_spans[label][-1][1] = i
                self._cached[label] = in_cache
            if st.freed and label not in self.freed_at:
                self.freed_at[label] = i
        for ref_id, ref in step.changes.refs.items():
            if ref.dangling and not self._dangling.get(ref_id, False):
                self.dangling.append((i, ref_id, ref.session))
            self._dangling[ref_id] = ref.dangling
        for side, cache in step.changes.caches.items():
            series = self.cache_sizes.setdefault(side, [(0, 0)])
            if series[-1][1] != cache.size:
                series.append((i, cache.size))

    def alive_in(self, start: int, stop: int) -> list[str]:
        """The sessions seen before ``stop`` and not freed before ``start``, in label order."""
        return [
            label
            for label in self.labels
            if self.paths[label][0][0] < stop and self.freed_at.get(label, start) >= start
        ]


def timeline_data(trace: Trace) -> TimelineData:
    """Fold ``trace``'s step deltas once into the series a timeline draws.

    Parameters
    ----------
    trace : Trace

    Returns
    -------
    TimelineData
    """
    return TimelineData().extend(trace)


def _step_path(points: Sequence[tuple[int, int]], end: float) -> list[tuple[float, float]]:
    """Vertices of a step line: the value after step ``i`` covers ``[i - 0.5, i + 0.5)``."""
    verts: list[tuple[float, float]] = []
    for x, y in points:
        if verts:
            verts.append((x - 0.5, verts[-1][1]))
        verts.append((x - 0.5, y))
    verts.append((end, verts[-1][1]))
    return verts


def _value_at(points: Sequence[tuple[int, int]], x: int) -> int:
    value = points[0][1]
    for px, py in points:
        if px > x:
            break
        value = py
    return value


# -- the public function --------------------------------------------------------
def timeline(
    trace: Trace,
    ax: Axes | tuple[Axes, Axes] | None = None,
    step: int | None = None,
    steps: Sequence[int] | None = None,
) -> Figure:
    """Each session's refcount over the steps, with cache membership, frees and dangling refs.

    A figure made here is sized for its content, so that it is readable at the
    size it is saved: every text is 9 pt or larger; the panels grow wider with
    the steps shown (15 pt per step, from 6 to 14 inches), and past that only
    every 2nd, 5th, 10th... step is labelled so tick labels never overlap.
    Sessions are named in a legend beside the panels, in as many columns as
    they need, up to 60 sessions; more are counted (draw a window to name
    them).  Lines are drawn up to ±0.14 off their refcount, by label, so that
    equal refcounts stay apart: a note under the x axis says so.

    Parameters
    ----------
    trace : Trace
        The story to draw (``lab.trace``).
    ax : Axes or (Axes, Axes), optional
        Where to draw.  One Axes is split into a refcount panel and a cache
        size panel below it; a pair is used as (refcounts, cache sizes).  By
        default a new Figure, sized as above.  Given axes keep their size:
        tick labels are thinned to fit them, the text stays 9 pt.
    step : int, optional
        The step to highlight (negative counts from the end).
    steps : range of int, optional
        A window: draw only these consecutive steps (e.g. ``range(200, 258)``
        of a 258-step trace), every one labelled if it fits; the legend names
        the sessions alive in it.  Default: all steps.

    Returns
    -------
    Figure
        The figure holding the two panels (``fig.axes``: refcounts first).

    Raises
    ------
    ValueError
        If ``steps`` is empty or reaches outside the trace.
    """
    data = timeline_data(trace)
    window = window_of(steps, data.n)
    if ax is None:
        fig, ax_ref, ax_cache = _timeline_figure(data, window, step)
    elif isinstance(ax, tuple):
        ax_ref, ax_cache = ax
        fig = ax_ref.get_figure()  # type: ignore[assignment]
    else:
        ax_ref, ax_cache = _split(ax)
        fig = ax_ref.get_figure()  # type: ignore[assignment]
    draw_timeline(ax_ref, ax_cache, data, step, window=window)
    return fig


def window_of(steps: Sequence[int] | None, n: int) -> tuple[int, int]:
    """``[start, stop)`` of the steps to draw."""
    if steps is None:
        return 0, max(n, 1)
    shown = list(steps)
    if not shown:
        raise ValueError("steps is empty: give the steps to draw, e.g. steps=range(0, 50)")
    start, stop = min(shown), max(shown) + 1
    if start < 0 or stop > n:
        raise ValueError(f"steps {start}..{stop - 1} reach outside this trace (steps 0..{n - 1})")
    return start, stop


# -- sizes: what a figure made here needs, in inches ------------------------------------
@dataclass
class TimelineSize:
    """Inches a timeline needs around its panels: left, right (legends), bottom (labels), top."""

    panels_w: float
    left: float
    right: float
    bottom: float
    top: float

    @property
    def width(self) -> float:
        return self.left + self.panels_w + self.right

    @property
    def height(self) -> float:
        return self.top + _REF_H + _GAP_H + _CACHE_H + self.bottom


def timeline_size(data: TimelineData, window: tuple[int, int], step: int | None) -> TimelineSize:
    """The room a readable timeline of ``window`` needs (see :func:`timeline`)."""
    start, stop = window
    shown = stop - start
    panels_w = min(max(shown * _PITCH_PT / 72, _MIN_W), _MAX_W)
    titles = len("SSL_SESSION refcounts") * CHAR_EM * 11 + 30
    if step is not None and data.n:
        i = step + data.n if step < 0 else step
        i = min(max(i, 0), data.n - 1)
        titles += len(f"step {i}: {data.ops[i]}({data.targets[i]})") * CHAR_EM * 10
    panels_w = max(panels_w, titles / 72)
    stride = tick_stride(shown, panels_w * 72)
    labelled = [data.ops[i] for i in range(start, min(stop, data.n)) if i % stride == 0]
    longest = max((len(op) for op in labelled), default=4)
    # tick labels upright, the x label, the nudge note under it
    bottom = (longest * CHAR_EM * MIN_PT + 8 + 2 * 1.5 * MIN_PT + 14) / 72
    n_named = len(data.alive_in(start, stop))
    cols = legend_columns(n_named, _REF_H * 72)
    right = max(cols * _legend_col_pt(data.labels), 120) / 72 + 0.25
    return TimelineSize(panels_w, 0.8, right, bottom, 0.45)


def legend_columns(n_sessions: int, height_pt: float) -> int:
    """Columns the session legend needs beside a panel ``height_pt`` tall (0: no names)."""
    if n_sessions > MAX_LEGEND or n_sessions == 0:
        return 1
    rows = max(1, int((height_pt - 2 * _ROW_PT) / _ROW_PT))  # the title takes a row
    return math.ceil(n_sessions / rows)


def _legend_col_pt(labels: Sequence[str]) -> float:
    chars = max((len(label) for label in labels), default=3)
    return (2.0 + 0.8 + 2.0) * MIN_PT + chars * CHAR_EM * MIN_PT  # handle, pad, column gap


def _timeline_figure(
    data: TimelineData, window: tuple[int, int], step: int | None
) -> tuple[Figure, Axes, Axes]:
    size = timeline_size(data, window, step)
    fig = new_figure((size.width, size.height))
    ax_ref, ax_cache = place_panels(fig, size, 0.0, 0.0)
    return fig, ax_ref, ax_cache


def place_panels(fig: Figure, size: TimelineSize, x0: float, y0: float) -> tuple[Axes, Axes]:
    """Add the two panels to ``fig`` in the box ``size`` describes, its lower left at (x0, y0) inches."""
    w, h = fig.get_figwidth(), fig.get_figheight()
    left = (x0 + size.left) / w
    width = size.panels_w / w
    cache_y = y0 + size.bottom
    ref_y = cache_y + _CACHE_H + _GAP_H
    ax_ref = fig.add_axes((left, ref_y / h, width, _REF_H / h))
    ax_cache = fig.add_axes((left, cache_y / h, width, _CACHE_H / h), sharex=ax_ref)
    return ax_ref, ax_cache


def _split(ax: Axes) -> tuple[Axes, Axes]:
    fig = ax.get_figure()
    spec = ax.get_subplotspec()
    if spec is None:
        lower = ax.inset_axes((0.0, -0.45, 1.0, 0.3))
        return ax, lower
    ax.remove()
    sub = spec.subgridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
    upper = fig.add_subplot(sub[0])  # type: ignore[union-attr]
    lower = fig.add_subplot(sub[1], sharex=upper)  # type: ignore[union-attr]
    return upper, lower


# -- drawing ---------------------------------------------------------------------------
def draw_timeline(
    ax_ref: Axes,
    ax_cache: Axes,
    data: TimelineData,
    step: int | None,
    window: tuple[int, int] | None = None,
) -> list[int]:
    """Draw a timeline of the steps ``[start, stop)`` of ``window`` (default: all); returns the ticks."""
    start, stop = window if window is not None else (0, max(data.n, 1))
    ax_ref.set_label("sesskit-timeline-refcount")
    ax_cache.set_label("sesskit-timeline-cache")
    draw_timeline_data(ax_ref, ax_cache, data)
    _draw_cache_axis(ax_cache, cache_top_of(data))
    for a in (ax_ref, ax_cache):
        a.set_xlim(start - 0.5, stop - 0.5)
        a.grid(axis="y", color="#e6e6e6", linewidth=0.8)
        a.set_axisbelow(True)
        a.tick_params(axis="y", labelsize=MIN_PT)
        for spine in ("top", "right"):
            a.spines[spine].set_visible(False)
    top = max(data.max_refcount, 1)
    ax_ref.set_ylim(-0.75, top + 0.6)
    ax_ref.yaxis.set_major_locator(_int_locator())
    ax_ref.set_ylabel("refcount", fontsize=10)
    ax_ref.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
    ax_ref.set_title("SSL_SESSION refcounts", loc="left", fontsize=11)
    ticks = _op_ticks(ax_cache, data, start, stop)
    _nudge_note(ax_cache)
    named = data.alive_in(start, stop)
    if len(named) <= MAX_LEGEND:
        _session_legend(ax_ref, named, None)
    else:
        _session_legend(ax_ref, [], f"{len(named)} sessions\n(over {MAX_LEGEND}: not named)")
    _key_legend(ax_cache)
    if step is not None and data.n:
        _highlight(ax_ref, ax_cache, data, step, ticks)
    return ticks


def draw_timeline_data(ax_ref: Axes, ax_cache: Axes, data: TimelineData) -> list[Any]:
    """The artists that change with every step (lines, bands, marks, cache sizes)."""
    artists = _draw_refcount_lines(ax_ref, data, len(data.labels) > 40)
    artists += _draw_marks(ax_ref, data)
    artists += _cache_size_lines(ax_cache, data)
    return artists


def _int_locator() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True, nbins=6)


def _session_series(label: str, data: TimelineData) -> tuple[np.ndarray, list[list[tuple[float, float]]]]:
    """One session's step line and its cache bands (final once the session is freed)."""
    points = data.paths[label]
    freed = data.freed_at.get(label)
    end = (freed + 0.25) if freed is not None else data.n - 0.5
    off = lane_offset(label)
    verts = np.asarray(_step_path(points, end))
    verts[:, 1] += off
    bands = []
    for start, stop in data.cache_spans[label]:
        stop_x = (stop - 0.5) if stop is not None else end
        band = [(x, y) for x, y in verts if start - 0.5 < x < stop_x]
        first = _value_at(points, start) + off
        last = _value_at(points, stop - 1 if stop is not None else data.n - 1) + off
        bands.append([(start - 0.5, first), *band, (stop_x, last)])
    return verts, bands


def _refcount_series(data: TimelineData) -> tuple[list[str], list[Any], list[Any], list[str]]:
    """Colours, step lines, cache bands and band colours of every session, in label order."""
    colors = [session_color(label) for label in data.labels]
    paths: list[Any] = []
    bands: list[Any] = []
    band_colors: list[str] = []
    for label, color in zip(data.labels, colors, strict=True):
        got = data._series.get(label)
        if got is None:
            got = _session_series(label, data)
            if label in data.freed_at:  # a freed session's lines never change again
                data._series[label] = got
        paths.append(got[0])
        bands += got[1]
        band_colors += [color] * len(got[1])
    return colors, paths, bands, band_colors


def _draw_refcount_lines(ax: Axes, data: TimelineData, many: bool) -> list[Any]:
    colors, paths, bands, band_colors = _refcount_series(data)
    band_width = 3.0 if many else 9.0
    coll_band = LineCollection(
        bands, colors=band_colors, linewidths=band_width, alpha=0.28, capstyle="butt", joinstyle="miter"
    )
    coll_band.set_gid("timeline:cache-band")
    ax.add_collection(coll_band, autolim=False)
    width, alpha = (2.0, 1.0) if not many else (0.8, 0.9) if len(paths) < 300 else (0.5, 0.6)
    lines = LineCollection(paths, colors=colors, linewidths=width, alpha=alpha)
    lines.set_gid("timeline:refcount")
    _label_lines(lines, data)
    ax.add_collection(lines, autolim=False)
    return [coll_band, lines]


def _label_lines(lines: LineCollection, data: TimelineData) -> None:
    lines.sesskit_labels = list(data.labels)  # type: ignore[attr-defined]
    lines.sesskit_offsets = [lane_offset(label) for label in data.labels]  # type: ignore[attr-defined]


def _freed_marks(data: TimelineData) -> list[tuple[int, float, str]]:
    return [(i, lane_offset(label), session_color(label)) for label, i in data.freed_at.items()]


def _draw_marks(ax: Axes, data: TimelineData) -> list[Any]:
    size = 70.0 if len(data.labels) <= 40 else 28.0
    freed = _freed_marks(data)
    pts = ax.scatter(
        [f[0] for f in freed],
        [f[1] for f in freed],
        marker="X",
        s=size,
        c=[f[2] for f in freed] or None,
        edgecolors="white",
        linewidths=0.8,
        zorder=4,
    )
    pts.set_gid("timeline:freed")
    dx = [d[0] for d in data.dangling]
    dang = ax.scatter(
        dx, [-0.55] * len(dx), marker="^", s=size * 0.85, c=DANGLING, edgecolors="white", linewidths=0.6
    )
    dang.set_zorder(4)
    dang.set_gid("timeline:dangling")
    dang.sesskit_refs = [(d[1], d[2]) for d in data.dangling]  # type: ignore[attr-defined]
    return [pts, dang]


def cache_top_of(data: TimelineData) -> int:
    """The largest size either cache reached (at least 1)."""
    return max([1] + [p[1] for points in data.cache_sizes.values() for p in points])


def _cache_size_lines(ax: Axes, data: TimelineData) -> list[Any]:
    lines = []
    for side in ("server", "client"):
        points = data.cache_sizes.get(side, [(0, 0)])
        verts = np.asarray(_step_path(points, data.n - 0.5))
        (line,) = ax.plot(
            verts[:, 0],
            verts[:, 1],
            color=CACHE_LINE[side],
            linewidth=1.6,
            linestyle=CACHE_DASH[side],
            label=f"{side} cache",
            scalex=False,
            scaley=False,
        )
        line.set_gid(f"timeline:cache-size:{side}")
        lines.append(line)
    return lines


def _draw_cache_axis(ax: Axes, top: int) -> None:
    ax.set_ylim(-0.3, top * 1.15 + 0.3)
    ax.yaxis.set_major_locator(_int_locator())
    ax.set_ylabel("cache size", fontsize=MIN_PT)


def tick_stride(n: int, width_pt: float) -> int:
    """Label every k-th of ``n`` steps so that labels ``_PITCH_PT`` apart fit in ``width_pt``."""
    room = max(1, int(width_pt / _PITCH_PT + 1e-6))
    if n <= room:
        return 1
    for nice in (2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000):
        if n / nice <= room:
            return nice
    return int(np.ceil(n / room))


def _axes_width_pt(ax: Axes) -> float:
    return ax.get_position().width * ax.get_figure().get_figwidth() * 72  # type: ignore[union-attr]


def _op_ticks(ax: Axes, data: TimelineData, start: int, stop: int) -> list[int]:
    stride = tick_stride(stop - start, _axes_width_pt(ax))
    first = -(-start // stride) * stride
    ticks = list(range(first, min(stop, data.n), stride))
    ax.set_xticks(ticks, [data.ops[i] for i in ticks], fontsize=MIN_PT, rotation=90)
    if stride > 1 and stop - start <= 150:  # every minor tick is a Tick object: keep them few
        ax.set_xticks(range(start, min(stop, data.n)), minor=True)
        ax.tick_params(axis="x", which="minor", length=2, color="#bbbbbb")
    xlabel = "C call at each step" if stride == 1 else f"C call (labels every {stride} steps)"
    ax.set_xlabel(xlabel, fontsize=MIN_PT)
    return ticks


def _nudge_note(ax: Axes) -> None:
    """Under the x label: why a line sits a little off its whole refcount."""
    note = ax.annotate(
        f"Lines sit up to ±{MAX_NUDGE:g} off their refcount, by session, so equal refcounts stay apart.",
        xy=(0, 0),
        xycoords=(ax.transAxes, ax.xaxis.label),
        xytext=(0, -4),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=MIN_PT,
        color="#555555",
        annotation_clip=False,
    )
    note.set_gid("timeline:nudge-note")


def _session_legend(ax: Axes, labels: list[str], title: str | None) -> None:
    handles: list[Any] = [Line2D([], [], color=session_color(lb), linewidth=2, label=lb) for lb in labels]
    height = ax.get_position().height * ax.get_figure().get_figheight() * 72  # type: ignore[union-attr]
    legend = ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        ncols=legend_columns(len(labels), height),
        fontsize=MIN_PT,
        frameon=False,
        title=title if title is not None else "sessions",
        title_fontsize=MIN_PT,
        alignment="left",
        handlelength=2.0,
        columnspacing=2.0,
    )
    legend.set_gid("timeline:sessions")


def _key_legend(ax: Axes) -> None:
    handles = [
        Line2D([], [], color="#888888", linewidth=8, alpha=0.3, label="in a cache"),
        Line2D([], [], color="#666666", marker="X", linestyle="", markersize=8, label="freed"),
        Line2D([], [], color=DANGLING, marker="^", linestyle="", markersize=7, label="a ref dangles"),
        *(
            Line2D([], [], color=CACHE_LINE[s], linewidth=1.6, linestyle=CACHE_DASH[s], label=f"{s} cache")
            for s in ("server", "client")
        ),
    ]
    legend = ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=MIN_PT,
        frameon=False,
        handlelength=2.0,
    )
    legend.set_gid("timeline:key")


def _highlight(ax_ref: Axes, ax_cache: Axes, data: TimelineData, step: int, ticks: list[int]) -> None:
    if step < 0:
        step += data.n
    step = min(max(step, 0), data.n - 1)
    for a in (ax_ref, ax_cache):
        span = a.axvspan(step - 0.5, step + 0.5, color="#ffd54f", alpha=0.35, zorder=0, linewidth=0)
        span.set_gid("timeline:current")
        if data.n > 60:  # a one-step span is too thin to see: mark its centre too
            a.axvline(step, color="#c79100", linewidth=1.0, zorder=0.5).set_gid("timeline:current-line")
    ax_ref.set_title(
        f"step {step}: {data.ops[step]}({data.targets[step]})", loc="right", fontsize=10, color=HIGHLIGHT
    )
    if step in ticks:
        label = ax_cache.get_xticklabels()[ticks.index(step)]
        label.set_fontweight("bold")
        label.set_color(HIGHLIGHT)
