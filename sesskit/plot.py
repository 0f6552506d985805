"""See a :class:`~sesskit.trace.Trace`: refcount timelines, heap pictures, animations.

Everything here takes plain trace data (a Trace or a Snapshot) and returns a
:class:`matplotlib.figure.Figure` or an animation; nothing touches an engine,
and nothing calls ``plt.show()``.  Figures are built with the object API
(``Figure`` + Agg canvas), not pyplot, so making many of them leaks nothing.

Colours are stable: a session's colour is derived from its label alone, so
``S3`` has the same colour in every figure, notebook and animation.

Artists carry ``gid`` s so tests (and curious users) can find them:

- timeline: ``timeline:refcount`` (one LineCollection, one path per session),
  ``timeline:cache-band``, ``timeline:freed``, ``timeline:dangling``,
  ``timeline:cache-size:client`` / ``:server``, ``timeline:current``;
- heap: ``ssl:c1``, ``session:S2``, ``ghost:S2``, ``badge:S2``, ``ref:#3``,
  ``cache:server`` and one arrow per reference, ``ref:ssl:c1->S2``,
  ``ref:cache:server->S2``, ``ref:get1:#3->S2``, ``ref:get0:#4->S2``.
"""

from __future__ import annotations

import colorsys
import functools
import math
import re
import struct
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.text import Text
from matplotlib.transforms import Bbox, BboxBase, TransformedBbox

from .trace import SIDES, RefState, Snapshot, Trace

if TYPE_CHECKING:
    from matplotlib.animation import FuncAnimation
    from matplotlib.axes import Axes

__all__ = [
    "StoryFigure",
    "TimelineData",
    "animate",
    "heap",
    "overview",
    "save",
    "session_color",
    "timeline",
    "timeline_data",
]

# Eight well-separated colours (matplotlib's tab10 without its red -- red means
# "dangling" here -- and without its grey, used for ghosts).
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)
_GOLDEN = 0.6180339887498949
_DANGLING = "#d62728"
_GHOST = "#9a9a9a"
_CACHE_LINE = {"server": "#333333", "client": "#8a8a8a"}
_MAX_LEGEND = 12


# -- colours -----------------------------------------------------------------
def _label_number(label: str) -> int | None:
    m = re.search(r"(\d+)$", label)
    return int(m.group(1)) if m else None


@functools.lru_cache(maxsize=8192)
def session_color(label: str) -> str:
    """The colour of session ``label`` (e.g. ``"S3"``) in every sesskit figure.

    Parameters
    ----------
    label : str
        A session label.

    Returns
    -------
    str
        A ``#rrggbb`` colour that depends on the label only: ``S1``..``S8``
        get eight distinct palette colours, later numbers golden-ratio hues.
    """
    n = _label_number(label)
    if n is not None and 1 <= n <= len(_PALETTE):
        return _PALETTE[n - 1]
    seed = n if n is not None else zlib.crc32(label.encode())
    hue = (seed * _GOLDEN) % 1.0
    if hue > 0.95 or hue < 0.03:  # keep clear of the dangling red
        hue = (hue + 0.08) % 1.0
    light = (0.38, 0.48, 0.58)[seed % 3]
    r, g, b = colorsys.hls_to_rgb(hue, light, 0.62)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


@functools.lru_cache(maxsize=8192)
def _lane_offset(label: str) -> float:
    """Small vertical offset so sessions with equal refcounts stay visible side by side."""
    n = _label_number(label)
    k = n if n is not None else zlib.crc32(label.encode())
    return ((k % 5) - 2) * 0.07


def _tint(color: str, amount: float = 0.82) -> tuple[float, float, float]:
    r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


# -- figures -----------------------------------------------------------------
def _new_figure(figsize: tuple[float, float], dpi: float = 100, fast_text: bool = False) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi)
    (_TextCachingCanvas if fast_text else FigureCanvasAgg)(fig)
    _enable_notebook_display()
    return fig


# -- text drawn once: the costly part of an Agg draw -----------------------------
class _TextCachingRenderer(RendererAgg):
    """An Agg renderer that rasterizes each string once and then only stamps its pixels.

    Laying out and rasterizing glyphs is most of what Agg spends on a figure
    like ours; the same labels come back on every redraw.  A string is drawn
    once (by Agg itself, black on a transparent scratch buffer) and its
    coverage mask kept, keyed by the text, font, angle and the position's
    quarter-pixel phase; later draws blend the mask in the text's colour
    (what Agg's own ``draw_text`` does glyph by glyph).  Positions are
    rounded to a quarter pixel: the difference can't be seen.
    """

    _PHASES = 4  # sub-pixel positions kept per axis
    _MAX_STRINGS = 2048

    def __init__(self, width: float, height: float, dpi: float) -> None:
        super().__init__(width, height, dpi)
        self._masks: OrderedDict[tuple[Any, ...], tuple[np.ndarray, int, int] | None] = OrderedDict()
        self._sprites: OrderedDict[tuple[Any, ...], tuple[np.ndarray, int, int] | None] = OrderedDict()
        self._scratch: RendererAgg | None = None

    def stamp(self, look: tuple[Any, ...], anchor: Any, parts: Sequence[Any], clip: BboxBase) -> None:
        """Draw ``parts`` as a picture kept under ``look`` (what they look like, relative to ``anchor``).

        The picture is drawn by Agg once, on a transparent scratch canvas, and
        blended in like an image afterwards.  ``anchor`` (display coordinates)
        is rounded to a whole pixel, so a box looks the same on every row;
        ``clip`` (display) holds everything the parts draw.
        """
        ix, iy = round(anchor[0]), round(anchor[1])
        sprite = self._sprites.get(look)
        if sprite is None and look not in self._sprites:
            sprite = self._sprite(parts, ix, iy, clip)
            self._sprites[look] = sprite
            if len(self._sprites) > self._MAX_STRINGS:
                self._sprites.popitem(last=False)
        if sprite is not None:
            image, dx, dy = sprite
            gc = self.new_gc()
            self.draw_image(gc, ix + dx, iy + dy, image)
            gc.restore()

    def _sprite(
        self, parts: Sequence[Any], ix: int, iy: int, clip: BboxBase
    ) -> tuple[np.ndarray, int, int] | None:
        if self._scratch is None:
            self._scratch = _TextCachingRenderer(self.width, self.height, self.dpi)
            self._scratch._masks = self._masks  # one text cache for both
        scratch = self._scratch
        for part in sorted(parts, key=lambda a: a.get_zorder()):
            part.draw(scratch)
        height = int(self.height)
        top, bottom = max(0, height - math.ceil(clip.y1) - 1), min(height, height - math.floor(clip.y0) + 1)
        left, right = max(0, math.floor(clip.x0) - 1), min(int(self.width), math.ceil(clip.x1) + 1)
        region = np.asarray(scratch.buffer_rgba())[top:bottom, left:right]
        alpha = region[:, :, 3]
        rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
        sprite = None
        if rows.size:
            # draw_image takes the rows bottom up, and the lower left corner (y upwards).
            image = region[rows[-1] : (rows[0] - 1 if rows[0] else None) : -1, cols[0] : cols[-1] + 1].copy()
            sprite = image, left + int(cols[0]) - ix, height - top - int(rows[-1]) - 1 - iy
        region[...] = (255, 255, 255, 0)  # what clear() leaves, for the next sprite
        return sprite

    def draw_text(
        self,
        gc: Any,
        x: float,
        y: float,
        s: str,
        prop: Any,
        angle: float,
        ismath: Any = False,
        mtext: Any = None,
    ) -> None:
        if ismath:
            super().draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)
            return
        q = self._PHASES
        qx, qy = round(x * q), round(y * q)
        ix, iy = qx // q, qy // q
        key = (
            s,
            _font_key(prop),
            angle,
            qx - ix * q,
            qy - iy * q,
            gc.get_antialiased(),
            getattr(mtext, "get_fontfeatures", lambda: None)(),
            getattr(mtext, "get_language", lambda: None)(),
        )
        mask = self._masks.get(key)
        if mask is None and key not in self._masks:
            mask = self._rasterize(s, prop, angle, (qx - ix * q) / q, (qy - iy * q) / q, gc, mtext)
            self._masks[key] = mask
            if len(self._masks) > self._MAX_STRINGS:
                self._masks.popitem(last=False)
        if mask is not None:
            image, left, bottom = mask
            self._renderer.draw_text_image(image, ix + left, iy + bottom, 0, gc)

    def _rasterize(
        self, s: str, prop: Any, angle: float, fx: float, fy: float, gc: Any, mtext: Any
    ) -> tuple[np.ndarray, int, int] | None:
        """The coverage mask of ``s`` drawn at phase ``(fx, fy)``, cropped, and its offsets."""
        em = prop.get_size_in_points() * self.dpi / 72
        width = len(s) * 1.3 * em  # no glyph of a text font is wider; measuring costs a layout
        for attempt in range(2):
            if angle == 0:  # a tight strip: scanning and clearing a big square costs as much as drawing
                x0, y0, size = 4, int(2 * em) + 4, (int(width) + 8, int(3 * em) + 8)
            else:
                r = int(math.hypot(width, 2 * em)) + 4
                x0, y0, size = r, r, (2 * r, 2 * r)
            scratch = RendererAgg(size[0], size[1], self.dpi)
            black = scratch.new_gc()
            black.set_foreground((0.0, 0.0, 0.0, 1.0), isRGBA=True)
            black.set_antialiased(gc.get_antialiased())
            RendererAgg.draw_text(scratch, black, x0 + fx, y0 + fy, s, prop, angle, mtext=mtext)
            black.restore()
            alpha = np.asarray(scratch.buffer_rgba())[:, :, 3]
            rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
            if not rows.size:
                return None
            clipped = rows[0] == 0 or cols[0] == 0 or rows[-1] == size[1] - 1 or cols[-1] == size[0] - 1
            if not clipped or attempt:
                break
            w, h, _ = self.get_text_width_height_descent(s, prop, False)  # an unusual font: measure
            width, em = w + 8, max(em, h)
        image = np.ascontiguousarray(alpha[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        # draw_text_image takes the left column and the row *below* the image (y downwards).
        return image, int(cols[0]) - x0, int(rows[-1]) + 1 - y0


def _font_key(prop: Any) -> tuple[Any, ...]:
    return (
        tuple(prop.get_family()),
        prop.get_style(),
        prop.get_variant(),
        prop.get_weight(),
        prop.get_stretch(),
        prop.get_size_in_points(),
        prop.get_file(),
    )


class _TextCachingCanvas(FigureCanvasAgg):
    """An Agg canvas drawing with a :class:`_TextCachingRenderer`."""

    def get_renderer(self) -> RendererAgg:
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if self._lastKey != key:
            self.renderer = _TextCachingRenderer(w, h, self.figure.dpi)
            self._lastKey = key
        return self.renderer


_display_checked = False


def _enable_notebook_display() -> None:
    """Let a bare ``Figure`` display as an image in IPython even if pyplot was never imported."""
    global _display_checked
    if _display_checked:
        return
    _display_checked = True
    import sys

    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    ip = get_ipython()
    if ip is None:
        return
    formatter = ip.display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(Figure)
    except KeyError:
        formatter.for_type(Figure, _figure_png)


def _figure_png(fig: Figure) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


# -- timeline: series in one pass over the deltas ------------------------------
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


# -- timeline: drawing ---------------------------------------------------------
def timeline(
    trace: Trace,
    ax: Axes | tuple[Axes, Axes] | None = None,
    step: int | None = None,
) -> Figure:
    """Each session's refcount over the steps, with cache membership, frees and dangling refs.

    Parameters
    ----------
    trace : Trace
        The story to draw (``lab.trace``).
    ax : Axes or (Axes, Axes), optional
        Where to draw.  One Axes is split into a refcount panel and a cache
        size panel below it; a pair is used as (refcounts, cache sizes).  By
        default a new Figure is made.
    step : int, optional
        The step to highlight (negative counts from the end).

    Returns
    -------
    Figure
        The figure holding the two panels (``fig.axes``: refcounts first).
    """
    if ax is None:
        fig = _new_figure((11, 5.6))
        ax_ref, ax_cache = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        fig.subplots_adjust(left=0.07, right=0.83, top=0.9, bottom=0.32, hspace=0.08)
    elif isinstance(ax, tuple):
        ax_ref, ax_cache = ax
        fig = ax_ref.get_figure()  # type: ignore[assignment]
    else:
        ax_ref, ax_cache = _split(ax)
        fig = ax_ref.get_figure()  # type: ignore[assignment]
    _draw_timeline(ax_ref, ax_cache, timeline_data(trace), step)
    return fig


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


def _draw_timeline(
    ax_ref: Axes,
    ax_cache: Axes,
    data: TimelineData,
    step: int | None,
    span: int | None = None,
    cache_top: int | None = None,
) -> list[int]:
    """Draw a timeline over ``span`` steps of x axis (default: the trace's length)."""
    n = max(data.n, span or 1)
    ax_ref.set_label("sesskit-timeline-refcount")
    ax_cache.set_label("sesskit-timeline-cache")
    _draw_timeline_data(ax_ref, ax_cache, data)
    _draw_cache_axis(ax_cache, cache_top if cache_top is not None else _cache_top(data))
    for a in (ax_ref, ax_cache):
        a.set_xlim(-0.5, n - 0.5)
        a.grid(axis="y", color="#e6e6e6", linewidth=0.8)
        a.set_axisbelow(True)
        for spine in ("top", "right"):
            a.spines[spine].set_visible(False)
    top = max(data.max_refcount, 1)
    ax_ref.set_ylim(-0.75, top + 0.6)
    ax_ref.yaxis.set_major_locator(_int_locator())
    ax_ref.set_ylabel("refcount")
    ax_ref.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
    ax_ref.set_title("SSL_SESSION refcounts", loc="left", fontsize=11)
    ticks = _op_ticks(ax_cache, data, n)
    if len(data.labels) <= _MAX_LEGEND:
        _legend(ax_ref, data)
    else:
        _key_legend(ax_ref, f"{len(data.labels)} sessions")
    if step is not None and data.n:
        _highlight(ax_ref, ax_cache, data, step, ticks)
    return ticks


def _draw_timeline_data(ax_ref: Axes, ax_cache: Axes, data: TimelineData) -> list[Any]:
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
    off = _lane_offset(label)
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


def _series_style(data: TimelineData) -> tuple[bool, bool]:
    """What the line widths and mark sizes depend on."""
    return len(data.labels) > 40, len(data.labels) < 300


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
    lines.sesskit_offsets = [_lane_offset(label) for label in data.labels]  # type: ignore[attr-defined]


def _update_timeline_data(artists: list[Any], data: TimelineData) -> None:
    """Put ``data`` into the artists :func:`_draw_timeline_data` made (same style), in place."""
    coll_band, lines, pts, dang, *cache_lines = artists
    colors, paths, bands, band_colors = _refcount_series(data)
    coll_band.set_segments(bands)
    coll_band.set_color(band_colors)
    lines.set_segments(paths)
    lines.set_color(colors)
    _label_lines(lines, data)
    freed = _freed_marks(data)
    pts.set_offsets(np.asarray([f[:2] for f in freed], float).reshape(-1, 2))
    if freed:
        pts.set_facecolor([f[2] for f in freed])
    dang.set_offsets(np.asarray([(d[0], -0.55) for d in data.dangling], float).reshape(-1, 2))
    dang.sesskit_refs = [(d[1], d[2]) for d in data.dangling]
    for line in cache_lines:
        side = line.get_gid().rsplit(":", 1)[1]
        verts = np.asarray(_step_path(data.cache_sizes.get(side, [(0, 0)]), data.n - 0.5))
        line.set_data(verts[:, 0], verts[:, 1])


def _freed_marks(data: TimelineData) -> list[tuple[int, float, str]]:
    return [(i, _lane_offset(label), session_color(label)) for label, i in data.freed_at.items()]


def _draw_marks(ax: Axes, data: TimelineData) -> list[Any]:
    size = 70.0 if len(data.labels) <= 40 else 28.0
    freed = _freed_marks(data)
    xs = [f[0] for f in freed]
    ys = [f[1] for f in freed]
    pts = ax.scatter(
        xs,
        ys,
        marker="X",
        s=size,
        c=[f[2] for f in freed] or None,
        edgecolors="white",
        linewidths=0.8,
        zorder=4,
    )
    pts.set_gid("timeline:freed")
    dx = [d[0] for d in data.dangling]
    dy = [-0.55] * len(dx)
    dang = ax.scatter(
        dx, dy, marker="^", s=size * 0.85, c=_DANGLING, edgecolors="white", linewidths=0.6, zorder=4
    )
    dang.set_gid("timeline:dangling")
    dang.sesskit_refs = [(d[1], d[2]) for d in data.dangling]  # type: ignore[attr-defined]
    return [pts, dang]


def _cache_top(data: TimelineData) -> int:
    return max([1] + [p[1] for points in data.cache_sizes.values() for p in points])


def _cache_size_lines(ax: Axes, data: TimelineData) -> list[Any]:
    lines = []
    for side in ("server", "client"):
        points = data.cache_sizes.get(side, [(0, 0)])
        verts = np.asarray(_step_path(points, data.n - 0.5))
        (line,) = ax.plot(
            verts[:, 0],
            verts[:, 1],
            color=_CACHE_LINE[side],
            linewidth=1.6,
            linestyle="-" if side == "server" else (0, (4, 2)),
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
    ax.set_ylabel("cache size", fontsize=9)
    handles = [
        Line2D(
            [],
            [],
            color=_CACHE_LINE[side],
            linewidth=1.6,
            linestyle="-" if side == "server" else (0, (4, 2)),
            label=f"{side} cache",
        )
        for side in ("server", "client")
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _tick_stride(n: int, ax: Axes) -> int:
    width_pt = ax.get_position().width * ax.get_figure().get_figwidth() * 72  # type: ignore[union-attr]
    room = max(4, int(width_pt / 14))  # a rotated 8-pt label needs ~11 pt, plus air
    if n <= room:
        return 1
    for nice in (2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000):
        if n / nice <= room:
            return nice
    return int(np.ceil(n / room))


def _op_ticks(ax: Axes, data: TimelineData, span: int) -> list[int]:
    stride = _tick_stride(span, ax)
    ticks = list(range(0, data.n, stride))
    style: dict[str, Any] = {"rotation": 90}
    if span <= 12:
        style = {"rotation": 35, "ha": "right", "rotation_mode": "anchor"}
    ax.set_xticks(ticks, [data.ops[i] for i in ticks], fontsize=8, **style)
    if stride > 1 and span <= 150:  # every minor tick is a Tick object: keep them few
        ax.set_xticks(range(data.n), minor=True)
        ax.tick_params(axis="x", which="minor", length=2, color="#bbbbbb")
    xlabel = "C call at each step" if stride == 1 else f"C call (labels every {stride} steps)"
    ax.set_xlabel(xlabel, fontsize=9)
    return ticks


def _legend(ax: Axes, data: TimelineData) -> None:
    handles: list[Any] = [
        Line2D([], [], color=session_color(label), linewidth=2, label=label) for label in data.labels
    ]
    _key_legend(ax, None, handles)


def _key_legend(ax: Axes, title: str | None, handles: list[Any] | None = None) -> None:
    handles = list(handles or [])
    handles += [
        Line2D([], [], color="#888888", linewidth=8, alpha=0.3, label="in a cache"),
        Line2D([], [], color="#666666", marker="X", linestyle="", markersize=8, label="freed"),
        Line2D([], [], color=_DANGLING, marker="^", linestyle="", markersize=7, label="a ref dangles"),
    ]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
        title=title,
        title_fontsize=8,
    )


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
        f"step {step}: {data.ops[step]}({data.targets[step]})", loc="right", fontsize=10, color="#6d4c00"
    )
    if step in ticks:
        label = ax_cache.get_xticklabels()[ticks.index(step)]
        label.set_fontweight("bold")
        label.set_color("#6d4c00")


# -- heap -----------------------------------------------------------------
def heap(
    snapshot: Snapshot, ax: Axes | None = None, title: str | None = None, max_dangling: int | None = 4
) -> Figure:
    """The objects alive at one step and every reference between them.

    SSLs and your pointers (refs) on the left, SSL_SESSIONs with refcount
    badges in the middle, the session caches (members in list order, head
    first) on the right.  One arrow per reference: SSL->session and
    cache->session in grey, get1 refs solid, get0 (and released get1) refs
    dashed, dangling refs red to a ghost of the freed session.

    Parameters
    ----------
    snapshot : Snapshot
        The state to draw (``trace.snapshot(i)`` or ``lab.snapshot()``).
    ax : Axes, optional
        Where to draw; by default a new Figure.
    title : str, optional
        A title (default: the snapshot's virtual time).
    max_dangling : int or None
        Show only this many dangling refs (the latest); None shows all.
        Long stories pile up dangling pointers that say nothing new.

    Returns
    -------
    Figure
    """
    if ax is None:
        fig = _new_figure((9, 5.2))
        ax = fig.add_axes((0.0, 0.0, 1.0, 0.94))
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    _draw_heap(ax, snapshot, title, max_dangling)
    return fig


def _sort_key(name: str) -> tuple[int, str]:
    n = _label_number(name)
    return (n if n is not None else 1 << 30, name)


_X_HOLD, _X_SESS, _X_CACHE = 0.14, 0.49, 0.83
_CHAR_EM = 0.62  # average DejaVu Sans glyph width, in em: boxes are sized without a renderer


@dataclass
class _HeapLayout:
    """Font size, box sizes and row positions that fit the axes (in axes fractions)."""

    fs: float
    slot: float  # height of a two-line box row
    max_rows: int
    width_pt: float
    height_pt: float
    top: float = 0.88

    @classmethod
    def fit(cls, ax: Axes, rows: float) -> _HeapLayout:
        fig = ax.get_figure()
        pos = ax.get_position()
        width_pt = pos.width * fig.get_figwidth() * 72  # type: ignore[union-attr]
        height_pt = pos.height * fig.get_figheight() * 72  # type: ignore[union-attr]
        usable = 0.84 * height_pt
        fs = min(10.0, max(5.5, usable / (max(rows, 4) * 4.1)))
        fs = min(fs, width_pt / 48)  # three columns of ~20 characters must fit side by side
        slot = fs * 4.1 / height_pt
        return cls(fs, slot, max(1, int(usable / (fs * 4.1))), width_pt, height_pt)

    def rows(self, count: int, scale: float = 1.0) -> list[float]:
        return [self.top - self.slot * scale * (k + 0.5) for k in range(count)]

    def box(self, lines: Sequence[str], fs: float | None = None) -> tuple[float, float]:
        """Width and height (axes fractions) of a box around ``lines``."""
        fs = fs or self.fs
        chars = max(len(line) for line in lines)
        w = (chars * _CHAR_EM + 1.2) * fs / self.width_pt
        h = (len(lines) * 1.25 + 0.7) * fs / self.height_pt
        return w, h


class _Stamp(Artist):
    """A few heap artists drawn as one picture (a box and its text, an arrow).

    On a :class:`_TextCachingRenderer` the picture is drawn once and then
    stamped wherever the same ``look`` comes back; elsewhere (``heap()``,
    savefig, SVG) the artists are drawn as usual.  The artists stay reachable
    (``get_children``, ``findobj``) with their gids.
    """

    def __init__(
        self,
        ax: Axes,
        parts: Sequence[Any],
        look: tuple[Any, ...],
        anchor: tuple[float, float],
        extent: tuple[float, float, float, float],
        zorder: float,
    ) -> None:
        super().__init__()
        self._parts = list(parts)
        self._look = look
        self._anchor = anchor  # data coordinates
        self.set_zorder(zorder)
        # Everything the parts draw lies in ``extent`` (data): a clip that makes sure of it.
        self._clip = TransformedBbox(Bbox.from_extents(*extent), ax.transData)
        fig = ax.get_figure()
        for part in self._parts:
            part.set_figure(fig)
            part.set_transform(ax.transData)
            part.axes = ax
            part.set_clip_box(self._clip)
        ax.add_artist(self)

    def get_children(self) -> list[Any]:
        return list(self._parts)

    def draw(self, renderer: Any) -> None:
        if not self.get_visible():
            return
        if isinstance(renderer, _TextCachingRenderer):
            anchor = self.axes.transData.transform(self._anchor)  # type: ignore[union-attr]
            renderer.stamp(self._look, anchor, self._parts, self._clip)
        else:
            for part in sorted(self._parts, key=lambda a: a.get_zorder()):
                part.draw(renderer)
        self.stale = False


def _text(ax: Axes, x: float, y: float, text: str, **kwargs: Any) -> Text:
    """A heap text, as a :class:`_Stamp` (``kwargs`` as for ``ax.text``; zorder 3 unless given)."""
    zorder = kwargs.pop("zorder", 3)
    t = Text(x, y, text, zorder=zorder, **kwargs)
    fs = float(kwargs.get("fontsize", 10))
    lines = text.split("\n")
    pos = ax.get_position()
    fig = ax.get_figure()
    # Room for the text whatever its alignment (and a badge's circle): the stamp's clip.
    w = (max(map(len, lines)) * fs * 0.75 + 2 * fs) / (pos.width * fig.get_figwidth() * 72)  # type: ignore[union-attr]
    h = (len(lines) * fs * 1.5 + 2 * fs) / (pos.height * fig.get_figheight() * 72)  # type: ignore[union-attr]
    look = ("text", text, zorder, *sorted((k, str(v)) for k, v in kwargs.items()))
    _Stamp(ax, [t], look, (x, y), (x - w, y - h, x + w, y + h), zorder)
    return t


@dataclass
class _Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def left(self) -> tuple[float, float]:
        return (self.x - self.w / 2, self.y)

    @property
    def right(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y)


def _pick(snap: Snapshot, max_dangling: int | None) -> tuple[list[Any], list[RefState], list[str]]:
    """The SSLs, refs and session labels to draw, most useful first."""
    ssls = sorted(
        (s for s in snap.ssls.values() if not s.freed), key=lambda s: (_sort_key(s.name)[0], s.side)
    )
    live_refs = sorted((r for r in snap.refs.values() if not r.dangling), key=lambda r: r.id)
    dangling = sorted((r for r in snap.refs.values() if r.dangling), key=lambda r: -r.id)
    if max_dangling is not None:
        dangling = dangling[:max_dangling]
    refs = live_refs + dangling
    live = sorted((k for k, v in snap.sessions.items() if not v.freed), key=_sort_key)
    ghosts = sorted({r.session for r in dangling} - set(live), key=_sort_key)
    return ssls, refs, live + ghosts


def _clear(ax: Axes) -> None:
    """Empty an axes without ``ax.clear()`` (which rebuilds its axis machinery: slow)."""
    for artist in [*ax.texts, *ax.patches, *ax.lines, *ax.collections, *ax.artists]:
        artist.remove()


def _draw_heap(ax: Axes, snap: Snapshot, title: str | None, max_dangling: int | None = 4) -> None:
    ax.set_label("sesskit-heap")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    ssls, refs, labels = _pick(snap, max_dangling)
    holders: list[Any] = [*ssls, *refs]
    hidden_dangling = sum(r.dangling for r in snap.refs.values()) - sum(r.dangling for r in refs)
    cache_rows = sum(len(snap.caches[s].members) + 3 for s in ("client", "server")) * 0.6
    lay = _HeapLayout.fit(ax, max(len(holders), len(labels), cache_rows))
    _headings(ax, lay.fs)
    _heap_title(ax, title if title is not None else f"heap at t = {snap.time} s")

    boxes: dict[str, _Box] = {}
    shown = holders[: lay.max_rows]
    texts = [_holder_text(obj) for obj in shown]
    w = max((lay.box(t.split("\n"))[0] for t in texts), default=0.1)
    x_hold = max(_X_HOLD, w / 2 + 0.005)
    for obj, text, y in zip(shown, texts, lay.rows(len(shown)), strict=True):
        h = lay.box(text.split("\n"))[1]
        if isinstance(obj, RefState):
            edge = _DANGLING if obj.dangling else "#1f4e99"
            dashed = obj.kind == "get0" or obj.released
            boxes[f"ref:{obj.id}"] = _box(
                ax, x_hold, y, w, h, text, lay.fs, "white", edge, f"ref:#{obj.id}", dashed
            )
        else:
            boxes[f"ssl:{obj.name}"] = _box(
                ax, x_hold, y, w, h, text, lay.fs, "#f2f2f2", "#555555", f"ssl:{obj.name}"
            )
    more = len(holders) - len(shown) + hidden_dangling
    # from the left edge: the note can be wider than the column, never wider than the figure
    _more(
        ax,
        0.005,
        more,
        "older dangling\npointers hidden" if hidden_dangling and more == hidden_dangling else "",
        ha="left",
    )

    shown_labels = labels[: lay.max_rows]
    texts = [_session_text(label, snap) for label in shown_labels]
    w = max((lay.box(t.split("\n"))[0] for t in texts), default=0.1)
    for label, text, y in zip(shown_labels, texts, lay.rows(len(shown_labels)), strict=True):
        st = snap.sessions.get(label)
        h = lay.box(text.split("\n"))[1]
        if st is not None and not st.freed:
            color = session_color(label)
            box = _box(ax, _X_SESS, y, w, h, text, lay.fs, _tint(color), color, f"session:{label}", lw=2.0)
            _badge(ax, box, st.refcount, color, lay.fs, label)
        else:
            box = _box(ax, _X_SESS, y, w, h, text, lay.fs, "white", _GHOST, f"ghost:{label}", dashed=True)
        boxes[f"session:{label}"] = box
    _more(ax, _X_SESS, len(labels) - len(shown_labels))

    _draw_caches(ax, snap, boxes, lay)
    _draw_arrows(ax, snap, ssls, refs, boxes)


def _heap_title(ax: Axes, title: str) -> None:
    # y given: the title's place is fixed (the heap has no axis to dodge), which
    # spares Axes.draw measuring every axis to place it.
    ax.set_title(title, loc="left", fontsize=11, y=1.0)


def _heap_key(snap: Snapshot, max_dangling: int | None = 4) -> tuple[Any, ...]:
    """Everything :func:`_draw_heap` shows of ``snap`` but the title: equal keys, equal pictures."""
    ssls, refs, labels = _pick(snap, max_dangling)
    hidden = sum(r.dangling for r in snap.refs.values()) - sum(r.dangling for r in refs)
    caches = tuple((c.size, c.members) for c in (snap.caches["client"], snap.caches["server"]))
    return (
        tuple(ssls),
        tuple(refs),
        tuple(labels),
        tuple(snap.sessions.get(x) for x in labels),
        hidden,
        caches,
    )


def _holder_text(obj: Any) -> str:
    if isinstance(obj, RefState):
        kind = obj.kind + (" (released)" if obj.released else "")
        return f"#{obj.id} {kind}\nvia {obj.via}"
    flags = [f for f, on in (("cleared", obj.cleared), ("shutdown sent", obj.sent_shutdown)) if on]
    return f"{obj.name}\n{obj.side} SSL" + (f", {', '.join(flags)}" if flags else "")


def _session_text(label: str, snap: Snapshot) -> str:
    st = snap.sessions.get(label)
    if st is None or st.freed:
        return f"{label}\nfreed"
    return f"{label}\n{st.side} · {'resumable' if st.resumable else 'not resumable'}"


def _headings(ax: Axes, fs: float) -> None:
    for x, text in ((_X_HOLD, "SSLs · your pointers"), (_X_SESS, "SSL_SESSIONs"), (_X_CACHE, "caches")):
        _text(
            ax,
            x,
            0.94,
            text,
            ha="center",
            va="center",
            fontsize=min(fs + 1, 10),
            color="#444444",
            fontweight="bold",
        )


def _box(
    ax: Axes,
    x: float,
    y: float,
    w: float,
    h: float,
    text: str,
    fs: float,
    face: Any,
    edge: str,
    gid: str,
    dashed: bool = False,
    lw: float = 1.2,
) -> _Box:
    patch = FancyBboxPatch(
        (x - w / 2, y - h / 2),
        w,
        h,
        boxstyle="round,pad=0,rounding_size=0.012",
        facecolor=face,
        edgecolor=edge,
        linestyle="--" if dashed else "-",
        linewidth=lw,
        zorder=2,
        mutation_aspect=0.5,
    )
    patch.set_gid(f"{gid}:box")
    color = _GHOST if gid.startswith("ghost:") else "black"
    t = Text(x, y, text, ha="center", va="center", fontsize=fs, linespacing=1.25, zorder=3, color=color)
    t.set_gid(gid)
    look = ("box", w, h, text, fs, str(face), edge, dashed, lw, color)
    _Stamp(
        ax,
        [patch, t],
        look,
        (x, y),
        (x - w / 2 - 0.02, y - h / 2 - 0.03, x + w / 2 + 0.02, y + h / 2 + 0.03),
        2,
    )
    return _Box(x, y, w, h)


def _badge(ax: Axes, box: _Box, refcount: int, color: str, fs: float, label: str) -> None:
    badge = _text(
        ax,
        box.x + box.w / 2,
        box.y + box.h / 2,
        str(refcount),
        ha="center",
        va="center",
        fontsize=fs,
        fontweight="bold",
        color="white",
        zorder=5,
        bbox={"boxstyle": "circle,pad=0.25", "facecolor": color, "edgecolor": "white"},
    )
    badge.set_gid(f"badge:{label}")


def _more(ax: Axes, x: float, hidden: int, what: str = "", ha: str = "center") -> None:
    if hidden > 0:
        text = f"… and {hidden} {what or 'more'}"
        _text(ax, x, 0.01, text, ha=ha, va="bottom", fontsize=8, color="#666666")


def _draw_caches(ax: Axes, snap: Snapshot, boxes: dict[str, _Box], lay: _HeapLayout) -> None:
    scale = 0.6  # one-line rows
    n_rows = int((lay.top - 0.02) / (lay.slot * scale))
    rows = lay.rows(n_rows + 8, scale)
    budget = max(2, n_rows - 7)  # two headers, a gap, "empty"/"more" lines
    sizes = {side: len(snap.caches[side].members) for side in ("client", "server")}
    keep = dict(sizes)
    if sum(sizes.values()) > budget:
        small = min(sizes, key=lambda side: sizes[side])
        keep[small] = min(sizes[small], budget // 2)
        other = "server" if small == "client" else "client"
        keep[other] = min(sizes[other], budget - keep[small])
    fs = lay.fs * 0.95
    k = 0
    for side in ("client", "server"):
        cache = snap.caches[side]
        shown = cache.members[: keep[side]]
        y_top = rows[k] + lay.slot * scale * 0.5
        header = _text(
            ax,
            _X_CACHE,
            rows[k],
            f"{side} cache · size {cache.size}",
            ha="center",
            va="center",
            fontsize=lay.fs,
            fontweight="bold",
            zorder=3,
        )
        header.set_gid(f"cache-header:{side}")
        k += 1
        last = len(cache.members) - 1
        for j, label in enumerate(shown):
            note = "  head" if j == 0 < last else "  tail: next out" if j == last > 0 else ""
            w, h = lay.box([f"{label}{note}"], fs)
            boxes[f"cache:{side}:{label}"] = _box(
                ax,
                _X_CACHE,
                rows[k],
                w,
                h * 0.9,
                f"{label}{note}",
                fs,
                "white",
                session_color(label),
                f"cache-member:{side}:{label}",
            )
            k += 1
        if not cache.members:
            _text(
                ax,
                _X_CACHE,
                rows[k],
                "empty",
                ha="center",
                va="center",
                fontsize=lay.fs,
                color="#888888",
                style="italic",
                zorder=3,
            )
            k += 1
        if len(cache.members) > len(shown):
            _text(
                ax,
                _X_CACHE,
                rows[k],
                f"… {len(cache.members) - len(shown)} more",
                ha="center",
                va="center",
                fontsize=lay.fs,
                color="#888888",
                zorder=3,
            )
            k += 1
        y_bottom = rows[k - 1] - lay.slot * scale * 0.5
        frame = FancyBboxPatch(
            (_X_CACHE - 0.15, y_bottom),
            0.3,
            y_top - y_bottom,
            boxstyle="round,pad=0.005",
            facecolor="#fbfbf4",
            edgecolor="#9e9d24",
            linewidth=1.2,
            zorder=1,
        )
        frame.set_gid(f"cache:{side}")
        ax.add_artist(frame)
        k += 1  # a gap between the two caches


def _arrow(
    ax: Axes, start: tuple[float, float], end: tuple[float, float], gid: str, color: str, dashed: bool
) -> None:
    arrow = FancyArrowPatch(
        start,
        end,
        arrowstyle="-|>",
        mutation_scale=11,
        color=color,
        linewidth=1.4,
        shrinkA=1,
        shrinkB=1,
        linestyle="--" if dashed else "-",
        zorder=4,
    )
    arrow.set_gid(gid)
    look = ("arrow", end[0] - start[0], end[1] - start[1], color, dashed)
    x0, x1 = sorted((start[0], end[0]))
    y0, y1 = sorted((start[1], end[1]))
    _Stamp(ax, [arrow], look, start, (x0 - 0.04, y0 - 0.05, x1 + 0.04, y1 + 0.05), 4)


def _draw_arrows(
    ax: Axes, snap: Snapshot, ssls: list[Any], refs: list[RefState], boxes: dict[str, _Box]
) -> None:
    for ssl in ssls:
        src, dst = boxes.get(f"ssl:{ssl.name}"), boxes.get(f"session:{ssl.session}")
        if ssl.session and src is not None and dst is not None:
            _arrow(ax, src.right, dst.left, f"ref:ssl:{ssl.name}->{ssl.session}", "#444444", False)
    for r in refs:
        src, dst = boxes.get(f"ref:{r.id}"), boxes.get(f"session:{r.session}")
        if src is None or dst is None:
            continue
        st = snap.sessions.get(r.session)
        dangling = r.dangling or st is None or st.freed
        solid = r.kind == "get1" and not r.released
        color = _DANGLING if dangling else "#1f4e99"
        _arrow(ax, src.right, dst.left, f"ref:{r.kind}:#{r.id}->{r.session}", color, not solid)
    for side in ("client", "server"):
        for label in snap.caches[side].members:
            src, dst = boxes.get(f"cache:{side}:{label}"), boxes.get(f"session:{label}")
            if src is not None and dst is not None:
                _arrow(ax, src.left, dst.right, f"ref:cache:{side}->{label}", "#9e9d24", False)


# -- the whole story -----------------------------------------------------------
class StoryFigure:
    """One reusable figure: the heap at a step beside the timeline with that step highlighted.

    :meth:`show` redraws only what changed: moving to another step of the same
    trace redraws the heap and moves the highlight; a longer trace folds only
    its new steps.  Used by :func:`overview`, :func:`animate` and the Stepper.

    With ``layered=True`` (the Stepper's PNG path) the figure is rendered in two
    layers: the static one -- axes, tick labels, legends, most of the text, the
    costly part of an Agg draw -- is drawn once and kept as pixels; the heap and
    the timeline's data are drawn over it on each :meth:`png`.  The x axis then
    leaves room for the steps to come, so a new step rarely changes the static
    layer.  A new step updates the timeline's artists in place; the heap is
    made again only when what it shows changes, and its pixels are kept until
    then.  A layered figure must be read through :meth:`png` (a plain
    ``savefig`` would leave out the animated layer).

    The figure's own canvas draws each string once and then stamps its
    pixels, and draws each heap box and arrow once per look
    (:class:`_TextCachingRenderer`): within half a pixel of a plain Agg draw.

    Parameters
    ----------
    fig : Figure, optional
        A figure to draw on (it is cleared); by default a new Agg figure.
    figsize, dpi
        Size of the new figure.
    layered : bool
        Render in two layers (see above).
    """

    def __init__(
        self,
        fig: Figure | None = None,
        figsize: tuple[float, float] = (16, 6.2),
        dpi: float = 100,
        layered: bool = False,
    ) -> None:
        if fig is None:
            fig = _new_figure(figsize, dpi, fast_text=True)
        else:
            fig.clear()
        self.fig = fig
        self.layered = layered
        self.ax_heap, self.ax_ref, self.ax_cache = _overview_axes(fig)
        self.ax_heap.set_animated(layered)
        self._trace: Trace | None = None
        self._data = TimelineData()
        self._ticks: list[int] = []
        self._tick_labels: list[Any] = []
        self._spans: list[Any] = []
        self._lines: list[Any] = []
        self._dynamic: list[Any] = []
        self._style: tuple[bool, bool] | None = None  # _series_style of the timeline's artists
        self._count: Any = None  # layered: the legend title counting the sessions
        self._bold: Any = None
        self._key: tuple[Any, ...] | None = None
        self._span = 0
        self._bg: Any = None
        self._heap_shown: tuple[Any, ...] | None = None  # the _heap_key drawn on ax_heap
        self._heap_pixels: Any = None  # layered: the heap's pixels, but its title
        self.step: int | None = None

    def show(self, trace: Trace, step: int | None = None) -> Figure:
        """Draw ``trace`` at ``step`` (default: the last); returns the figure."""
        n = len(trace)
        if step is None:
            step = n - 1
        if step < 0:
            step += n
        if trace is not self._trace or n < self._data.n:
            self._trace, self._data, self._key = trace, TimelineData(), None
        grew = n != self._data.n
        self._data.extend(trace)
        if self.layered:
            key = self._static_key()
            if key != self._key:
                self._key = key
                self._redraw_timeline()
            elif grew:
                self._redraw_data()
        elif grew or not self._spans:
            self._redraw_timeline()
        self.step = step
        snap, title = Snapshot(), None
        if n:
            self._move_highlight(step)
            st = trace[step]
            snap, title = trace.snapshot(step), f"step {step}: {st.op}({st.target})"
        key = _heap_key(snap)
        if key != self._heap_shown:  # the heap is made again only when what it shows changed
            _clear(self.ax_heap)
            _draw_heap(self.ax_heap, snap, title)
            self._heap_shown, self._heap_pixels = key, None
        else:
            _heap_title(self.ax_heap, title if title is not None else f"heap at t = {snap.time} s")
        return self.fig

    # -- the timeline ------------------------------------------------------
    def _static_key(self) -> tuple[Any, ...]:
        """What the static layer shows: when it changes, the static layer is redrawn."""
        data = self._data
        if data.n >= self._span:
            self._span = max(12, int(data.n * 1.15) + 4)  # room for the steps to come
        stride = _tick_stride(self._span, self.ax_cache)
        # Labels of steps newer than the static layer are drawn with the data (see
        # _new_tick_labels); only a handful, so the static layer is redrawn now and then.
        labelled = self._key[2] if self._key and self._key[1] == stride else -(-data.n // stride)
        if len(range(labelled * stride, data.n, stride)) > 6:
            labelled = -(-data.n // stride)
        # A long story's legend says "N sessions": the count is drawn with the data (see
        # _redraw_timeline), so only a change in its number of digits redraws the legend.
        legend = tuple(data.labels) if len(data.labels) <= _MAX_LEGEND else len(str(len(data.labels)))
        cache_top = _cache_top(data)
        cache_top = -(-cache_top * 5 // 4 // 5) * 5 if cache_top > 4 else 4
        return (self._span, stride, labelled, max(data.max_refcount, 1), cache_top, legend)

    def _redraw_timeline(self) -> None:
        self.ax_ref.clear()
        self.ax_cache.clear()
        span = self._key[0] if self._key else None
        cache_top = self._key[4] if self._key else None
        self._ticks = _draw_timeline(self.ax_ref, self.ax_cache, self._data, None, span, cache_top)
        if self._key:  # the static layer labels every step so far
            stride = self._key[1]
            self._key = (*self._key[:2], -(-self._data.n // stride), *self._key[3:])
        self._tick_labels = self.ax_cache.get_xticklabels()
        self._bold = None
        self._spans = [
            a.axvspan(-0.5, 0.5, color="#ffd54f", alpha=0.35, zorder=0, linewidth=0, gid="timeline:current")
            for a in (self.ax_ref, self.ax_cache)
        ]
        self._lines = []
        if self._data.n > 60:  # a one-step span is too thin to see: mark its centre too
            self._lines = [
                a.axvline(0, color="#c79100", linewidth=1.0, zorder=0.5, gid="timeline:current-line")
                for a in (self.ax_ref, self.ax_cache)
            ]
        self._step_text = self.ax_ref.text(
            1.0,
            1.02,
            "",
            transform=self.ax_ref.transAxes,
            ha="right",
            va="bottom",
            fontsize=10,
            color="#6d4c00",
        )
        self._dynamic = [a for a in (*self.ax_ref.collections, *self.ax_cache.lines) if a not in self._lines]
        self._style = _series_style(self._data)
        self._dynamic += [*self._spans, *self._lines, self._step_text]
        for artist in self._dynamic:
            artist.set_animated(self.layered)
        self._count = None
        if self.layered and len(self._data.labels) > _MAX_LEGEND:
            # The legend's "N sessions" title: the static layer keeps its room (drawn
            # transparent); render() draws it over with the current count.
            self._count = self.ax_ref.get_legend().get_title()  # type: ignore[union-attr]
            self._count.set_alpha(0)
            self._dynamic.append(self._count)
        self._bg = None

    def _redraw_data(self) -> None:
        """Layered fast path: only the data artists of the timeline are made again."""
        keep = {*self._spans, *self._lines, self._step_text, self._count}
        series = [a for a in self._dynamic if a not in keep and a.get_gid() != "timeline:new-tick-label"]
        for artist in self._dynamic:
            if artist not in keep and (artist not in series or self._style != _series_style(self._data)):
                artist.remove()
        if self._style == _series_style(self._data):
            _update_timeline_data(series, self._data)  # same artists, new data: no artist is made
            fresh = series
        else:
            fresh = _draw_timeline_data(self.ax_ref, self.ax_cache, self._data)
            self._style = _series_style(self._data)
        fresh += self._new_tick_labels()
        for artist in fresh:
            artist.set_animated(True)
        self._dynamic = [*fresh, *self._spans, *self._lines, self._step_text]
        if self._count is not None:
            self._count.set_text(f"{len(self._data.labels)} sessions")
            self._dynamic.append(self._count)

    def _new_tick_labels(self) -> list[Any]:
        """Tick labels of the steps added since the static layer was drawn, styled like the others."""
        from matplotlib.transforms import ScaledTranslation

        assert self._key is not None
        span, stride, labelled = self._key[:3]
        ax = self.ax_cache
        offset = ScaledTranslation(0, -7 / 72, self.fig.dpi_scale_trans)
        style: dict[str, Any] = {"rotation": 90, "ha": "center", "va": "top"}
        if span <= 12:
            style = {"rotation": 35, "ha": "right", "va": "top", "rotation_mode": "anchor"}
        labels = []
        for i in range(labelled * stride, self._data.n, stride):
            text = ax.text(
                i,
                0,
                self._data.ops[i],
                transform=ax.get_xaxis_transform() + offset,
                fontsize=8,
                clip_on=False,
                **style,
            )
            text.set_gid("timeline:new-tick-label")
            labels.append(text)
        return labels

    def _move_highlight(self, step: int) -> None:
        data = self._data
        for span in self._spans:
            span.set_x(step - 0.5)
        for line in self._lines:
            line.set_xdata([step, step])
        self._step_text.set_text(f"step {step}: {data.ops[step]}({data.targets[step]})")
        if self._bold is not None:
            self._bold.set_fontweight("normal")
            self._bold.set_color("black")
            self._bold = None
        if step in self._ticks and not self.layered:  # a bold label would need the static layer redrawn
            self._bold = self._tick_labels[self._ticks.index(step)]
            self._bold.set_fontweight("bold")
            self._bold.set_color("#6d4c00")

    # -- output ------------------------------------------------------------
    def render(self) -> None:
        """Draw the figure into its Agg buffer (layered: static pixels + dynamic artists)."""
        canvas = self.fig.canvas
        if not self.layered:
            canvas.draw()
            return
        if self._bg is None:
            canvas.draw()  # animated artists are left out: this is the static layer
            self._bg = canvas.copy_from_bbox(self.fig.bbox)  # type: ignore[attr-defined]
            self._heap_pixels = None
            if self._count is not None:
                self._count.set_alpha(None)
        else:
            canvas.restore_region(self._bg)  # type: ignore[attr-defined]
        for artist in sorted(self._dynamic, key=lambda a: a.get_zorder()):
            self.fig.draw_artist(artist)
        # The heap's pixels are kept until what it shows changes; only its title is drawn each time.
        title = self.ax_heap.title
        if self._heap_pixels is not None:
            canvas.restore_region(self._heap_pixels)  # type: ignore[attr-defined]
        else:
            title.set_visible(False)
            self.fig.draw_artist(self.ax_heap)
            title.set_visible(True)
            box = self.ax_heap.bbox
            self._heap_pixels = canvas.copy_from_bbox(Bbox([[0, 0], [box.x1, box.y1]]))  # type: ignore[attr-defined]
        self.fig.draw_artist(title)

    def png(self, compress_level: int = 1) -> bytes:
        """The figure as PNG bytes, rendered with Agg (fast, lightly compressed)."""
        self.render()
        return _png(np.asarray(self.fig.canvas.buffer_rgba()), compress_level)  # type: ignore[attr-defined]


def _png(rgba: np.ndarray, compress_level: int = 1) -> bytes:
    """Encode an RGBA pixel array as PNG: RGB when it is opaque, no row filters, one zlib pass.

    About twice as fast as Pillow's encoder for our figures, and smaller (a
    plot is mostly runs of one colour, which filters only break up).
    """
    h, w = rgba.shape[:2]
    opaque = bool((rgba[:, :, 3] == 255).all())
    pixels = rgba[:, :, :3] if opaque else rgba
    rows = np.empty((h, 1 + w * pixels.shape[2]), np.uint8)
    rows[:, 0] = 0  # filter type None on every row
    rows[:, 1:] = pixels.reshape(h, -1)
    header = struct.pack(">IIBBBBB", w, h, 8, 2 if opaque else 6, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows.data, compress_level)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def overview(trace: Trace, step: int | None = None, fig: Figure | None = None) -> Figure:
    """The heap at ``step`` beside the whole timeline with ``step`` highlighted.

    Parameters
    ----------
    trace : Trace
    step : int, optional
        Which step (default: the last).
    fig : Figure, optional
        A figure to clear and reuse.

    Returns
    -------
    Figure
    """
    return StoryFigure(fig).show(trace, step)


def _overview_axes(fig: Figure) -> tuple[Axes, Axes, Axes]:
    left = fig.add_gridspec(1, 1, left=0.005, right=0.43, top=0.93, bottom=0.02)
    right = fig.add_gridspec(
        2, 1, height_ratios=[3, 1], left=0.48, right=0.9, top=0.92, bottom=0.3, hspace=0.08
    )
    ax_heap = fig.add_subplot(left[0])
    ax_ref = fig.add_subplot(right[0])
    ax_cache = fig.add_subplot(right[1], sharex=ax_ref)
    return ax_heap, ax_ref, ax_cache


def animate(trace: Trace, interval: int = 900, steps: Sequence[int] | None = None) -> FuncAnimation:
    """The story as an animation: heap and timeline, one frame per step.

    Parameters
    ----------
    trace : Trace
    interval : int
        Milliseconds per frame.
    steps : sequence of int, optional
        Which steps to show (default: all).

    Returns
    -------
    matplotlib.animation.FuncAnimation
        Call ``.to_jshtml()`` for a kernel-free HTML player.
    """
    from matplotlib.animation import FuncAnimation

    frames = list(steps) if steps is not None else list(range(len(trace)))
    story = StoryFigure()

    def draw(i: int) -> list[Any]:
        story.show(trace, i)
        return []

    return FuncAnimation(story.fig, draw, frames=frames, interval=interval, blit=False, repeat=False)


def save(trace_or_snapshot: Trace | Snapshot, path: str | Path, step: int | None = None) -> Path:
    """Write a figure to ``path`` as PNG or SVG (chosen by the suffix).

    A Trace is drawn as :func:`overview` (heap at ``step`` + timeline); a
    Snapshot as :func:`heap`.

    Parameters
    ----------
    trace_or_snapshot : Trace or Snapshot
    path : str or Path
        Ends in ``.png`` or ``.svg``.
    step : int, optional
        For a Trace: the step to show (default: the last).

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
        fig = overview(trace_or_snapshot, step)
    elif isinstance(trace_or_snapshot, Snapshot):
        fig = heap(trace_or_snapshot)
    else:
        raise TypeError(f"save() takes a Trace or a Snapshot, not {type(trace_or_snapshot).__name__}")
    fig.savefig(path, format=fmt, dpi=110)
    return path
