"""The heap at one step: SSLs and your pointers, SSL_SESSIONs with refcount badges, both caches.

Everything is laid out from the snapshot's data in points, at one text size
(10 pt, never under 9): a figure made here grows with what it shows, up to
:data:`MAX_ROWS` rows, and lists the rest as "… and N more" (a Snapshot of a
long story has hundreds of sessions; the picture is of the first ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.text import Text

from ..trace import RefState, Snapshot
from ._style import CHAR_EM, DANGLING, GHOST, MIN_PT, new_figure, session_color, sort_key, tint

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FS = 10.0  # the heap's text size, points
MAX_ROWS = 16  # two-line rows a figure made here grows to; further objects are counted, not drawn
_ROW_EM = 0.9  # air between two boxes of a column, em
_CACHE_ROW_PT = 0.6 * 4.1 * FS  # one cache member
_HEAD_PT = 30.0  # the column headings above the first row
_FOOT_PT = 22.0  # the "… and N more" line under the last row
TITLE_IN = 0.4  # the title's band above the axes, in a figure made here
_MARGIN_PT, _MIN_GAP_PT, _MAX_GAP_PT = 8.0, 48.0, 120.0
_HEADINGS = ("SSLs · your pointers", "SSL_SESSIONs", "caches")


# -- what is drawn --------------------------------------------------------------------
def _pick(snap: Snapshot, max_dangling: int | None) -> tuple[list[Any], list[RefState], list[str]]:
    """The SSLs, refs and session labels to draw, most useful first."""
    ssls = sorted((s for s in snap.ssls.values() if not s.freed), key=lambda s: (sort_key(s.name)[0], s.side))
    live_refs = sorted((r for r in snap.refs.values() if not r.dangling), key=lambda r: r.id)
    dangling = sorted((r for r in snap.refs.values() if r.dangling), key=lambda r: -r.id)
    if max_dangling is not None:
        dangling = dangling[:max_dangling]
    refs = live_refs + dangling
    live = sorted((k for k, v in snap.sessions.items() if not v.freed), key=sort_key)
    ghosts = sorted({r.session for r in dangling} - set(live), key=sort_key)
    return ssls, refs, live + ghosts


def _holder_text(obj: Any) -> str:
    if isinstance(obj, RefState):
        kind = obj.kind + (" (released)" if obj.released else "")
        return f"#{obj.id} {kind}\nvia {obj.via}"
    flags = [f for f, on in (("cleared", obj.cleared), ("shutdown sent", obj.sent_shutdown)) if on]
    return f"{obj.name}\n{obj.side} SSL" + (f"\n{', '.join(flags)}" if flags else "")


def _session_text(label: str, snap: Snapshot) -> str:
    st = snap.sessions.get(label)
    if st is None or st.freed:
        return f"{label}\nfreed"
    return f"{label}\n{st.side} · {'resumable' if st.resumable else 'not resumable'}"


def _member_text(label: str, j: int, last: int) -> str:
    note = "  head" if j == 0 < last else "  tail: next out" if j == last > 0 else ""
    return f"{label}{note}"


def _box_pt(text: str, fs: float = FS) -> tuple[float, float]:
    """Width and height (points) of a box around ``text``."""
    lines = text.split("\n")
    return (max(map(len, lines)) * CHAR_EM + 1.2) * fs, (len(lines) * 1.25 + 0.7) * fs


def _row_pt(text: str) -> float:
    return _box_pt(text)[1] + _ROW_EM * FS


# -- sizes ------------------------------------------------------------------------------
@dataclass
class _Plan:
    """The three columns' texts and the points they need."""

    holders: list[Any]
    holder_texts: list[str]
    labels: list[str]
    session_texts: list[str]
    widths: tuple[float, float, float]  # points: holders, sessions, caches
    height: float  # points the tallest column needs, rows only

    @classmethod
    def of(cls, snap: Snapshot, max_dangling: int | None) -> _Plan:
        ssls, refs, labels = _pick(snap, max_dangling)
        holders: list[Any] = [*ssls, *refs]
        holder_texts = [_holder_text(h) for h in holders]
        session_texts = [_session_text(label, snap) for label in labels]
        cache_texts = [f"{side} cache · size {snap.caches[side].size}" for side in ("client", "server")]
        for side in ("client", "server"):
            members = snap.caches[side].members
            cache_texts += [_member_text(m, j, len(members) - 1) for j, m in enumerate(members[:MAX_ROWS])]
        heads = [len(h) * CHAR_EM * FS * 1.1 for h in _HEADINGS]  # bold
        widths = (
            max([heads[0]] + [_box_pt(t)[0] for t in holder_texts]),
            max([heads[1]] + [_box_pt(t)[0] + FS for t in session_texts]),  # the badge
            max([heads[2]] + [_box_pt(t)[0] * 1.1 + 12 for t in cache_texts]),  # bold header, the frame
        )
        cache_rows = _cache_lines({s: len(snap.caches[s].members) for s in ("client", "server")})
        height = max(
            sum(map(_row_pt, holder_texts)),
            sum(map(_row_pt, session_texts)),
            cache_rows * _CACHE_ROW_PT,
        )
        return cls(holders, holder_texts, labels, session_texts, widths, height)


def heap_size(snap: Snapshot, max_dangling: int | None = 4) -> tuple[float, float]:
    """Inches (width, height) of the axes a readable heap of ``snap`` needs (without the title band)."""
    plan = _Plan.of(snap, max_dangling)
    rows = min(plan.height, MAX_ROWS * 4.1 * FS)
    width = sum(plan.widths) + 2 * _MARGIN_PT + 2 * 70.0
    return width / 72, (_HEAD_PT + max(rows, 4 * 4.1 * FS) + _FOOT_PT) / 72


def heap(
    snapshot: Snapshot, ax: Axes | None = None, title: str | None = None, max_dangling: int | None = 4
) -> Figure:
    """The objects alive at one step and every reference between them.

    SSLs and your pointers (refs) on the left, SSL_SESSIONs with refcount
    badges in the middle, the session caches (members in list order, head
    first) on the right.  One arrow per reference: SSL->session and
    cache->session in olive/grey, get1 refs solid, get0 (and released get1)
    refs dashed, dangling refs red to a ghost of the freed session.

    Text is 10 pt (headings, notes 9 pt or more) whatever the size: a figure
    made here is as large as its content needs, up to 16 rows of boxes; what
    does not fit (in it or in a given ``ax``) is counted ("… and 12 more").

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
        w, h = heap_size(snapshot, max_dangling)
        fig = new_figure((w, h + TITLE_IN))
        ax = fig.add_axes((0.0, 0.0, 1.0, h / (h + TITLE_IN)))
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    draw_heap(ax, snapshot, title, max_dangling)
    return fig


# -- drawing ----------------------------------------------------------------------------
class _Axes:
    """Points inside an axes, as axes fractions (the heap's axes run 0..1 both ways)."""

    def __init__(self, ax: Axes) -> None:
        fig = ax.get_figure()
        pos = ax.get_position()
        self.w = pos.width * fig.get_figwidth() * 72  # type: ignore[union-attr]
        self.h = pos.height * fig.get_figheight() * 72  # type: ignore[union-attr]

    def x(self, pt: float) -> float:
        return pt / self.w

    def y(self, pt_from_top: float) -> float:
        return 1 - pt_from_top / self.h


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


def _columns(plan: _Plan, pts: _Axes) -> tuple[float, float, float]:
    """Centres (points from the left) of the three columns, spread over the axes."""
    w1, w2, w3 = plan.widths
    free = pts.w - 2 * _MARGIN_PT - w1 - w2 - w3
    gap = min(max(free / 2, _MIN_GAP_PT), _MAX_GAP_PT)
    x0 = max(_MARGIN_PT, (pts.w - (w1 + w2 + w3 + 2 * gap)) / 2)
    return x0 + w1 / 2, x0 + w1 + gap + w2 / 2, x0 + w1 + w2 + 2 * gap + w3 / 2


def _fit(texts: Sequence[str], room: float) -> int:
    """How many of ``texts`` (rows, top down) fit in ``room`` points."""
    used = 0.0
    for k, text in enumerate(texts):
        used += _row_pt(text)
        if used > room:
            return k
    return len(texts)


def draw_heap(ax: Axes, snap: Snapshot, title: str | None, max_dangling: int | None = 4) -> None:
    """Draw the heap of ``snap`` on ``ax`` (see :func:`heap`)."""
    ax.set_label("sesskit-heap")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    plan = _Plan.of(snap, max_dangling)
    pts = _Axes(ax)
    x_hold, x_sess, x_cache = (pts.x(x) for x in _columns(plan, pts))
    room = pts.h - _HEAD_PT - _FOOT_PT
    heap_title(ax, title if title is not None else f"heap at t = {snap.time} s")
    for x, text in zip((x_hold, x_sess, x_cache), _HEADINGS, strict=True):
        _text(ax, x, pts.y(_HEAD_PT / 2), text, fontsize=FS, color="#444444", fontweight="bold")

    boxes: dict[str, _Box] = {}
    shown = _fit(plan.holder_texts, room)
    w = pts.x(plan.widths[0])
    top = _HEAD_PT
    for obj, text in zip(plan.holders[:shown], plan.holder_texts[:shown], strict=True):
        y = pts.y(top + _row_pt(text) / 2)
        h = _box_pt(text)[1] / pts.h
        top += _row_pt(text)
        if isinstance(obj, RefState):
            edge = DANGLING if obj.dangling else "#1f4e99"
            dashed = obj.kind == "get0" or obj.released
            boxes[f"ref:{obj.id}"] = _box(ax, x_hold, y, w, h, text, "white", edge, f"ref:#{obj.id}", dashed)
        else:
            boxes[f"ssl:{obj.name}"] = _box(
                ax, x_hold, y, w, h, text, "#f2f2f2", "#555555", f"ssl:{obj.name}"
            )
    hidden_dangling = sum(r.dangling for r in snap.refs.values()) - sum(
        isinstance(h, RefState) and h.dangling for h in plan.holders
    )
    more = len(plan.holders) - shown + hidden_dangling
    only_dangling = hidden_dangling and more == hidden_dangling
    # from the left edge: the note can be wider than the column, never wider than the figure
    _more(ax, pts.x(_MARGIN_PT), more, "older dangling\npointers hidden" if only_dangling else "", "left")

    shown = _fit(plan.session_texts, room)
    w = pts.x(plan.widths[1] - FS)
    top = _HEAD_PT
    for label, text in zip(plan.labels[:shown], plan.session_texts[:shown], strict=True):
        y = pts.y(top + _row_pt(text) / 2)
        h = _box_pt(text)[1] / pts.h
        top += _row_pt(text)
        st = snap.sessions.get(label)
        if st is not None and not st.freed:
            color = session_color(label)
            box = _box(ax, x_sess, y, w, h, text, tint(color), color, f"session:{label}", lw=2.0)
            _badge(ax, box, st.refcount, color, label)
        else:
            box = _box(ax, x_sess, y, w, h, text, "white", GHOST, f"ghost:{label}", dashed=True)
        boxes[f"session:{label}"] = box
    _more(ax, x_sess, len(plan.labels) - shown)

    _draw_caches(ax, snap, boxes, pts, x_cache, plan.widths[2], room)
    _draw_arrows(ax, snap, plan.holders, boxes)


def heap_title(ax: Axes, title: str) -> None:
    """Set the heap's title (its place is fixed: the heap has no axis to dodge)."""
    ax.set_title(title, loc="left", fontsize=11, y=1.0, x=_Axes(ax).x(_MARGIN_PT))


def _text(ax: Axes, x: float, y: float, text: str, **kwargs: Any) -> Text:
    kwargs.setdefault("ha", "center")
    kwargs.setdefault("va", "center")
    kwargs.setdefault("zorder", 3)
    return ax.text(x, y, text, **kwargs)


def _box(
    ax: Axes,
    x: float,
    y: float,
    w: float,
    h: float,
    text: str,
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
    ax.add_patch(patch)
    color = GHOST if gid.startswith("ghost:") else "black"
    _text(ax, x, y, text, fontsize=FS, linespacing=1.25, color=color).set_gid(gid)
    return _Box(x, y, w, h)


def _badge(ax: Axes, box: _Box, refcount: int, color: str, label: str) -> None:
    badge = _text(
        ax,
        box.x + box.w / 2,
        box.y + box.h / 2,
        str(refcount),
        fontsize=FS,
        fontweight="bold",
        color="white",
        zorder=5,
        bbox={"boxstyle": "circle,pad=0.25", "facecolor": color, "edgecolor": "white"},
    )
    badge.set_gid(f"badge:{label}")


def _more(ax: Axes, x: float, hidden: int, what: str = "", ha: str = "center") -> None:
    if hidden > 0:
        text = f"… and {hidden} {what or 'more'}"
        _text(ax, x, 0.01, text, ha=ha, va="bottom", fontsize=MIN_PT, color="#666666")


def _cache_budget(snap: Snapshot, n_rows: int) -> dict[str, int]:
    """How many members of each cache fit in ``n_rows`` one-line rows (headers, notes, gap kept)."""
    sizes = {side: len(snap.caches[side].members) for side in ("client", "server")}
    keep = dict(sizes)
    budget = max(2, n_rows - 5)  # two headers, a gap, an "empty" or "more" line each
    if _cache_lines(sizes) > n_rows:
        small = min(sizes, key=lambda side: sizes[side])
        keep[small] = min(sizes[small], budget // 2)
        other = "server" if small == "client" else "client"
        keep[other] = min(sizes[other], budget - keep[small])
    return keep


def _cache_lines(sizes: dict[str, int]) -> int:
    """One-line rows both caches take in full: a header, the members (or "empty"), a gap between."""
    return sum(1 + max(m, 1) for m in sizes.values()) + 1


def _draw_caches(
    ax: Axes, snap: Snapshot, boxes: dict[str, _Box], pts: _Axes, x: float, width_pt: float, room: float
) -> None:
    keep = _cache_budget(snap, int(room / _CACHE_ROW_PT))
    k = 0

    def row_y(k: int) -> float:
        return pts.y(_HEAD_PT + _CACHE_ROW_PT * (k + 0.5))

    frame_w = pts.x(width_pt)
    for side in ("client", "server"):
        cache = snap.caches[side]
        shown = cache.members[: keep[side]]
        y_top = row_y(k) + _CACHE_ROW_PT / 2 / pts.h
        header = _text(ax, x, row_y(k), f"{side} cache · size {cache.size}", fontsize=FS, fontweight="bold")
        header.set_gid(f"cache-header:{side}")
        k += 1
        last = len(cache.members) - 1
        for j, label in enumerate(shown):
            text = _member_text(label, j, last)
            w, h = _box_pt(text)
            boxes[f"cache:{side}:{label}"] = _box(
                ax,
                x,
                row_y(k),
                pts.x(w),
                h * 0.9 / pts.h,
                text,
                "white",
                session_color(label),
                f"cache-member:{side}:{label}",
            )
            k += 1
        if not cache.members:
            _text(ax, x, row_y(k), "empty", fontsize=FS, color="#888888", style="italic")
            k += 1
        if len(cache.members) > len(shown):
            _text(ax, x, row_y(k), f"… {len(cache.members) - len(shown)} more", fontsize=FS, color="#888888")
            k += 1
        y_bottom = row_y(k - 1) - _CACHE_ROW_PT / 2 / pts.h
        frame = FancyBboxPatch(
            (x - frame_w / 2, y_bottom),
            frame_w,
            y_top - y_bottom,
            boxstyle="round,pad=0.005",
            facecolor="#fbfbf4",
            edgecolor="#9e9d24",
            linewidth=1.2,
            zorder=1,
        )
        frame.set_gid(f"cache:{side}")
        ax.add_patch(frame)
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
    ax.add_patch(arrow)


def _draw_arrows(ax: Axes, snap: Snapshot, holders: list[Any], boxes: dict[str, _Box]) -> None:
    for obj in holders:
        if isinstance(obj, RefState):
            src, dst = boxes.get(f"ref:{obj.id}"), boxes.get(f"session:{obj.session}")
            if src is None or dst is None:
                continue
            st = snap.sessions.get(obj.session)
            dangling = obj.dangling or st is None or st.freed
            solid = obj.kind == "get1" and not obj.released
            color = DANGLING if dangling else "#1f4e99"
            _arrow(ax, src.right, dst.left, f"ref:{obj.kind}:#{obj.id}->{obj.session}", color, not solid)
        else:
            src, dst = boxes.get(f"ssl:{obj.name}"), boxes.get(f"session:{obj.session}")
            if obj.session and src is not None and dst is not None:
                _arrow(ax, src.right, dst.left, f"ref:ssl:{obj.name}->{obj.session}", "#444444", False)
    for side in ("client", "server"):
        for label in snap.caches[side].members:
            src, dst = boxes.get(f"cache:{side}:{label}"), boxes.get(f"session:{label}")
            if src is not None and dst is not None:
                _arrow(ax, src.left, dst.right, f"ref:cache:{side}->{label}", "#9e9d24", False)
