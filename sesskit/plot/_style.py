"""Colours, the lane nudge and figure making shared by every sesskit figure."""

from __future__ import annotations

import colorsys
import functools
import re
import zlib
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Eight well-separated colours (matplotlib's tab10 without its red -- red means
# "dangling" here -- and without its grey, used for ghosts).
PALETTE = (
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
DANGLING = "#d62728"
GHOST = "#9a9a9a"
CACHE_LINE = {"server": "#333333", "client": "#8a8a8a"}
CACHE_DASH: dict[str, Any] = {"server": "-", "client": (0, (4, 2))}
HIGHLIGHT = "#6d4c00"

MIN_PT = 9.0  # no text of an exported figure is smaller, at the size it is saved
CHAR_EM = 0.62  # average DejaVu Sans glyph width, in em: sizes are planned without a renderer
SAVE_DPI = 110

# Sessions whose refcounts are equal would hide each other: each line is drawn
# a little off its value, by its label (one of five lanes, NUDGE apart).
NUDGE = 0.07
MAX_NUDGE = 2 * NUDGE


def label_number(label: str) -> int | None:
    """The number a label ends with (``"S12"`` -> 12), or None."""
    m = re.search(r"(\d+)$", label)
    return int(m.group(1)) if m else None


def sort_key(name: str) -> tuple[int, str]:
    """Order labels by their number (``S2`` before ``S10``)."""
    n = label_number(name)
    return (n if n is not None else 1 << 30, name)


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
    n = label_number(label)
    if n is not None and 1 <= n <= len(PALETTE):
        return PALETTE[n - 1]
    seed = n if n is not None else zlib.crc32(label.encode())
    hue = (seed * _GOLDEN) % 1.0
    if hue > 0.95 or hue < 0.03:  # keep clear of the dangling red
        hue = (hue + 0.08) % 1.0
    light = (0.38, 0.48, 0.58)[seed % 3]
    r, g, b = colorsys.hls_to_rgb(hue, light, 0.62)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


@functools.lru_cache(maxsize=8192)
def lane_offset(label: str) -> float:
    """How far above its refcount a session's line is drawn (-MAX_NUDGE..+MAX_NUDGE)."""
    n = label_number(label)
    k = n if n is not None else zlib.crc32(label.encode())
    return ((k % 5) - 2) * NUDGE


def tint(color: str, amount: float = 0.82) -> tuple[float, float, float]:
    """``color`` mixed with white (a box's face under its coloured edge)."""
    r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def text_width_pt(text: str, fs: float) -> float:
    """The planned width of ``text``'s longest line at ``fs`` points."""
    return max(len(line) for line in text.split("\n")) * CHAR_EM * fs


def new_figure(figsize: tuple[float, float], dpi: float = 100) -> Figure:
    """A Figure on its own Agg canvas (no pyplot: making many leaks nothing)."""
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    enable_notebook_display()
    return fig


_display_checked = False


def enable_notebook_display() -> None:
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
    # Not bbox_inches="tight": the figure is sized so its text is readable at this size.
    fig.savefig(buf, format="png")
    return buf.getvalue()
