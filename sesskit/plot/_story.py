"""The Stepper's PNG path: a reusable heap + timeline figure drawn in layers, and frame animations.

Kept only while :mod:`sesskit.widgets` and :mod:`sesskit.scenarios` (HTML
animations) still draw through it; the browser viewer (:mod:`sesskit.viewer`)
replaces both.  Export (PNG/SVG files) does not use this module: see
:mod:`sesskit.plot.export`.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from ..trace import Snapshot, Trace
from ._style import enable_notebook_display
from .heap import clear as _clear
from .heap import draw_heap as _draw_heap
from .heap import heap_key as _heap_key
from .heap import heap_title as _heap_title
from .timeline import MAX_LEGEND as _MAX_LEGEND
from .timeline import TimelineData, tick_stride
from .timeline import cache_top_of as _cache_top
from .timeline import draw_timeline as _draw_timeline_full
from .timeline import draw_timeline_data as _draw_timeline_data
from .timeline import series_style as _series_style
from .timeline import update_timeline_data as _update_timeline_data

if TYPE_CHECKING:
    from matplotlib.animation import FuncAnimation
    from matplotlib.axes import Axes

__all__ = ["StoryFigure", "animate"]


def _new_figure(figsize: tuple[float, float], dpi: float = 100) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi)
    _TextCachingCanvas(fig)
    enable_notebook_display()
    return fig


def _draw_timeline(
    ax_ref: Axes,
    ax_cache: Axes,
    data: TimelineData,
    step: int | None,
    span: int | None,
    cache_top: int | None,
) -> list[int]:
    return _draw_timeline_full(ax_ref, ax_cache, data, step, span, cache_top)


def _tick_stride(n: int, ax: Axes) -> int:
    return tick_stride(n, ax.get_position().width * ax.get_figure().get_figwidth() * 72)  # type: ignore[union-attr]


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


class StoryFigure:
    """One reusable figure: the heap at a step beside the timeline with that step highlighted.

    :meth:`show` redraws only what changed: moving to another step of the same
    trace redraws the heap and moves the highlight; a longer trace folds only
    its new steps.  Used by :func:`animate` and the Stepper.

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
            fig = _new_figure(figsize, dpi)
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
