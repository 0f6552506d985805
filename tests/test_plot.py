"""What the figures draw equals what the trace says (Agg, no display)."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_hex
from matplotlib.patches import FancyArrowPatch

from sesskit import plot
from sesskit.plot._style import DANGLING, MIN_PT
from sesskit.trace import CacheState, Delta, RefState, SessionState, SSLState, Trace


# -- traces --------------------------------------------------------------------
def small_trace() -> Trace:
    """Connect, get0 on the client, get1 on the server, SSL_free the client."""
    t = Trace({"engine": "hand"})
    t.append(
        "SSL_CTX_new",
        "client+server",
        "empty caches",
        Delta(caches={s: CacheState(s) for s in ("client", "server")}),
    )
    s1 = SessionState("S1", "client", 1, None, True)
    s2 = SessionState("S2", "server", 2, "server", True)
    t.append(
        "SSL_connect",
        "c1↔s1",
        "a full handshake",
        Delta(
            sessions={"S1": s1, "S2": s2},
            ssls={"c1": SSLState("c1", "client", "S1"), "s1": SSLState("s1", "server", "S2")},
            caches={"server": CacheState("server", 1, ("S2",))},
        ),
    )
    t.append("SSL_get0_session", "c1", "borrowed", Delta(refs={1: RefState(1, "get0", "S1", "c1")}))
    t.append(
        "SSL_get1_session",
        "s1",
        "+1",
        Delta(
            sessions={"S2": SessionState("S2", "server", 3, "server", True)},
            refs={2: RefState(2, "get1", "S2", "s1")},
        ),
    )
    t.append(
        "SSL_free",
        "c1",
        "the SSL held the last reference",
        Delta(
            sessions={"S1": SessionState("S1", "client", 0, None, False, True)},
            ssls={"c1": SSLState("c1", "client", "S1", freed=True)},
            refs={1: RefState(1, "get0", "S1", "c1", dangling=True)},
        ),
    )
    return t


def synthetic_trace(n_steps: int, seed: int = 1) -> Trace:
    """A random but consistent story from a toy refcount ledger (SSL, cache and get1 holders)."""
    rng = random.Random(seed)
    t = Trace({"engine": "synthetic"})
    t.append(
        "SSL_CTX_new", "client+server", "", Delta(caches={s: CacheState(s) for s in ("client", "server")})
    )
    sess: dict[str, SessionState] = {}
    ssls: dict[str, SSLState] = {}
    refs: dict[int, RefState] = {}
    cache: list[str] = []
    counter = {"label": 0, "link": 0, "ref": 0}

    def drop(label: str, d: dict[str, Any]) -> None:
        st = sess[label]
        if st.refcount == 1:
            st = SessionState(label, st.side, 0, None, False, True)
            for r in list(refs.values()):
                if r.session == label and not r.dangling:
                    refs[r.id] = d["refs"][r.id] = RefState(r.id, r.kind, r.session, r.via, r.released, True)
        else:
            st = SessionState(label, st.side, st.refcount - 1, st.cache, st.resumable)
        sess[label] = d["sessions"][label] = st

    while len(t) < n_steps:
        d: dict[str, Any] = {"sessions": {}, "ssls": {}, "caches": {}, "refs": {}}
        live = [s for s in ssls.values() if not s.freed and s.session]
        held = [r for r in refs.values() if r.kind == "get1" and not r.released]
        roll = rng.random()
        if not live or roll < 0.2:
            counter["link"] += 1
            k = counter["link"]
            a, b = f"S{counter['label'] + 1}", f"S{counter['label'] + 2}"
            counter["label"] += 2
            sess[a] = d["sessions"][a] = SessionState(a, "client", 1, None, True)
            sess[b] = d["sessions"][b] = SessionState(b, "server", 2, "server", True)
            ssls[f"c{k}"] = d["ssls"][f"c{k}"] = SSLState(f"c{k}", "client", a)
            ssls[f"s{k}"] = d["ssls"][f"s{k}"] = SSLState(f"s{k}", "server", b)
            cache.insert(0, b)
            d["caches"]["server"] = CacheState("server", len(cache), tuple(cache))
            op, target = "SSL_connect", f"c{k}↔s{k}"
        elif roll < 0.45:
            s = rng.choice(live)
            counter["ref"] += 1
            kind = rng.choice(["get0", "get1"])
            refs[counter["ref"]] = d["refs"][counter["ref"]] = RefState(
                counter["ref"], kind, s.session, s.name
            )
            if kind == "get1":
                st = sess[s.session]
                sess[st.label] = d["sessions"][st.label] = SessionState(
                    st.label, st.side, st.refcount + 1, st.cache, st.resumable
                )
            op, target = f"SSL_{kind}_session", s.name
        elif roll < 0.65 and held:
            r = rng.choice(held)
            refs[r.id] = d["refs"][r.id] = RefState(r.id, r.kind, r.session, r.via, True, r.dangling)
            drop(r.session, d)
            op, target = "SSL_SESSION_free", f"{r.session} (ref #{r.id})"
        elif roll < 0.85:
            s = rng.choice(live)
            ssls[s.name] = d["ssls"][s.name] = SSLState(s.name, s.side, s.session, True)
            drop(str(s.session), d)
            op, target = "SSL_free", s.name
        elif cache:
            label = cache.pop()
            st = sess[label]
            sess[label] = SessionState(label, st.side, st.refcount, None, st.resumable)
            d["caches"]["server"] = CacheState("server", len(cache), tuple(cache))
            drop(label, d)
            op, target = "SSL_CTX_flush_sessions", "server at t=0"
        else:
            op, target = "advance", "+10s"
        t.append(op, target, "", Delta(d["sessions"], d["ssls"], d["caches"], d["refs"]))
    return t


def lab_or_skip(engine: str, **config: Any) -> Any:
    import sesskit

    try:
        return sesskit.Lab(engine=engine, **config)
    except (ImportError, OSError, sesskit.SesskitError) as exc:
        pytest.skip(f"no {engine} engine here: {exc}")


def many_sessions_trace(engine: str, links: int = 8) -> Trace:
    """A real lab with 2 x ``links`` sessions: TLS 1.2 handshakes, get0/get1, frees, a cache flush."""
    with lab_or_skip(engine, tls="1.2", tickets=False, timeout=100) as lab:
        held = []
        for k in range(links):
            link = lab.connect()
            link.client.get0_session()
            if k % 2:
                held.append(link.server.get1_session())
            if k % 3 == 0:
                link.client.free()
        lab.advance(150)
        lab.flush()
        for ref in held[:2]:
            ref.free()
        return lab.trace


def auto_flush_trace(engine: str = "model") -> Trace:
    """Notebook 04's auto-flush lab: 254 handshakes, 20 s, two more: 258 steps, 512 sessions."""
    with lab_or_skip(engine, tls="1.2", tickets=False, timeout=10) as lab:
        for _ in range(254):
            lab.connect()
        lab.advance(20)
        lab.connect()
        lab.connect()
        return lab.trace


@pytest.fixture(scope="module", params=["model", "libssl"])
def lab13(request: Any) -> Trace:
    """18 sessions from a real lab, on the model and on the system libssl."""
    return many_sessions_trace(request.param)


@pytest.fixture(scope="module")
def long_trace() -> Trace:
    return auto_flush_trace("model")


# -- helpers -------------------------------------------------------------------
def by_gid(fig: Any, gid: str) -> list[Any]:
    return [a for a in fig.findobj() if a.get_gid() == gid]


def one(fig: Any, gid: str) -> Any:
    found = by_gid(fig, gid)
    assert len(found) == 1, f"{gid}: {len(found)} artists"
    return found[0]


def y_at(verts: Any, x: float) -> float:
    """The step line's value at x (jumps sit at half steps, so integers are unambiguous)."""
    ys = [vy for vx, vy in verts if vx <= x]
    return float(ys[-1])


def arrows(fig: Any) -> dict[str, FancyArrowPatch]:
    found = [a for a in fig.findobj(FancyArrowPatch) if (a.get_gid() or "").startswith("ref:")]
    gids = [a.get_gid() for a in found]
    assert len(gids) == len(set(gids)), gids
    return dict(zip(gids, found, strict=True))


def render(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def drawn_texts(fig: Any) -> list[Any]:
    """The visible, non-empty texts of ``fig`` after a draw (at its own size and dpi)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    ticks = {
        id(label)
        for ax in fig.axes
        for axis in (ax.xaxis, ax.yaxis)
        for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks())
        for label in (tick.label1, tick.label2)
    }
    texts = [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible() and t.get_text().strip()]
    return texts + tick_labels(fig)


def overlapping(texts: list[Any], fig: Any) -> list[tuple[str, str]]:
    """Pairs of texts whose drawn boxes overlap (by more than half a point)."""
    renderer = fig.canvas.get_renderer()
    shrink = 0.5 * fig.dpi / 72
    boxes = [(t.get_text(), t.get_window_extent(renderer).padded(-shrink)) for t in texts]
    return [(a, b) for k, (a, box) in enumerate(boxes) for b, other in boxes[k + 1 :] if box.overlaps(other)]


def tick_labels(fig: Any) -> list[Any]:
    """The tick labels drawn (ticks outside the view limits are not)."""
    drawn = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                if lo <= tick.get_loc() <= hi and tick.label1.get_visible() and tick.label1.get_text():
                    drawn.append(tick.label1)
    return drawn


def assert_readable(fig: Any) -> None:
    """Every text at least 9 pt and inside the figure; no two tick labels overlap."""
    texts = drawn_texts(fig)
    small = {t.get_text(): t.get_size() for t in texts if t.get_size() < 9}
    assert not small, small
    renderer, page = fig.canvas.get_renderer(), fig.bbox.padded(1)
    outside = [t.get_text() for t in texts if not page.contains(*t.get_window_extent(renderer).p0)]
    outside += [t.get_text() for t in texts if not page.contains(*t.get_window_extent(renderer).p1)]
    assert not outside, outside
    ticks = tick_labels(fig)
    assert ticks
    assert not overlapping(ticks, fig)


@pytest.fixture(scope="module")
def story() -> Trace:
    return synthetic_trace(80, seed=7)


# -- timeline ------------------------------------------------------------------
def test_refcount_lines_equal_the_trace(story: Trace) -> None:
    fig = plot.timeline(story)
    lines = one(fig, "timeline:refcount")
    assert isinstance(lines, LineCollection)
    labels, offsets = lines.sesskit_labels, lines.sesskit_offsets
    snaps = list(story.snapshots())
    assert set(labels) == set(snaps[-1].sessions)
    for label, off, verts in zip(labels, offsets, lines.get_segments(), strict=True):
        first = next(i for i, s in enumerate(snaps) if label in s.sessions)
        last = next(
            (i for i, s in enumerate(snaps) if label in s.sessions and s.sessions[label].freed),
            len(snaps) - 1,
        )
        assert verts[0][0] == first - 0.5
        for i in range(first, last + 1):
            assert y_at(verts, i) - off == pytest.approx(snaps[i].sessions[label].refcount), (label, i)


def test_colours_are_stable_per_label(story: Trace) -> None:
    lines = one(plot.timeline(story), "timeline:refcount")
    for label, color in zip(lines.sesskit_labels, lines.get_colors(), strict=True):
        assert to_hex(color) == plot.session_color(label)
    other = one(plot.timeline(synthetic_trace(20, seed=99)), "timeline:refcount")
    for label, color in zip(other.sesskit_labels, other.get_colors(), strict=True):
        assert to_hex(color) == plot.session_color(label)
    assert len({plot.session_color(f"S{i}") for i in range(1, 200)}) > 150


def test_cache_bands_cover_the_steps_a_session_is_cached(story: Trace) -> None:
    fig = plot.timeline(story)
    bands = one(fig, "timeline:cache-band")
    colors = [to_hex(c) for c in bands.get_colors()]
    drawn: dict[str, set[int]] = {}
    for verts, color in zip(bands.get_segments(), colors, strict=True):
        label = next(
            lb for lb in one(fig, "timeline:refcount").sesskit_labels if plot.session_color(lb) == color
        )
        x0, x1 = verts[0][0], verts[-1][0]
        drawn.setdefault(label, set()).update(i for i in range(len(story)) if x0 < i < x1)
    expected: dict[str, set[int]] = {}
    for i, snap in enumerate(story.snapshots()):
        for label, st in snap.sessions.items():
            if st.cache is not None:
                expected.setdefault(label, set()).add(i)
    assert drawn == expected


def test_freed_and_dangling_marks(story: Trace) -> None:
    fig = plot.timeline(story)
    freed = one(fig, "timeline:freed")
    assert isinstance(freed, PathCollection)
    freed_at: dict[str, int] = {}
    dangling_at: list[int] = []
    prev = None
    for i, snap in enumerate(story.snapshots()):
        for label, st in snap.sessions.items():
            if st.freed:
                freed_at.setdefault(label, i)
        if prev is not None:
            dangling_at += [
                i
                for rid, r in snap.refs.items()
                if r.dangling and not (rid in prev.refs and prev.refs[rid].dangling)
            ]
        prev = snap
    assert sorted(x for x, _ in freed.get_offsets()) == sorted(freed_at.values())
    assert freed_at, "the story should free something"
    dangling = one(fig, "timeline:dangling")
    assert sorted(x for x, _ in dangling.get_offsets()) == sorted(dangling_at)
    assert dangling_at


def test_x_ticks_are_the_c_calls() -> None:
    t = small_trace()
    fig = plot.timeline(t, step=3)
    ax_ref, ax_cache = fig.axes[:2]
    render(fig)
    assert [lb.get_text() for lb in ax_cache.get_xticklabels()] == [s.op for s in t]
    assert list(ax_cache.get_xticks()) == list(range(len(t)))
    current = by_gid(fig, "timeline:current")
    assert len(current) == 2
    for span in current:
        assert (span.get_x(), span.get_x() + span.get_width()) == (2.5, 3.5)
    assert ax_cache.get_xticklabels()[3].get_fontweight() == "bold"
    assert "SSL_get1_session" in ax_ref.get_title(loc="right")


def test_cache_size_panel() -> None:
    t = small_trace()
    fig = plot.timeline(t)
    server = one(fig, "timeline:cache-size:server")
    assert [y_at(server.get_xydata(), i) for i in range(len(t))] == [0, 1, 1, 1, 1]
    client = one(fig, "timeline:cache-size:client")
    assert {y for _, y in client.get_xydata()} == {0}


@pytest.mark.parametrize("n", [5, 500])
def test_renders_readably_at_5_and_500_steps(n: int) -> None:
    t = synthetic_trace(n, seed=n)
    fig = plot.timeline(t, step=n // 2)
    assert render(fig).startswith(b"\x89PNG")
    ax_ref, ax_cache = fig.axes[:2]
    labels = [lb.get_text() for lb in ax_cache.get_xticklabels()]
    assert 1 <= len(labels) <= 60
    ops = [s.op for s in t]
    for tick, text in zip(ax_cache.get_xticks(), labels, strict=True):
        assert text == ops[int(tick)]
    legend_texts = [x.get_text() for x in ax_ref.get_legend().get_texts()]
    sessions = one(fig, "timeline:refcount").sesskit_labels
    if len(sessions) <= 60:
        assert set(sessions) <= set(legend_texts)
    else:
        assert not set(sessions) & set(legend_texts)
        assert f"{len(sessions)} sessions" in ax_ref.get_legend().get_title().get_text()
    assert_readable(fig)


def test_timeline_into_given_axes() -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    out = plot.timeline(small_trace(), ax=ax)
    assert out is fig
    assert {a.get_label() for a in fig.axes} == {"sesskit-timeline-refcount", "sesskit-timeline-cache"}
    render(fig)


# -- heap ----------------------------------------------------------------------
def test_one_arrow_per_reference() -> None:
    t = small_trace()
    fig = plot.heap(t.snapshot(3))
    render(fig)
    assert set(arrows(fig)) == {
        "ref:ssl:c1->S1",
        "ref:ssl:s1->S2",
        "ref:cache:server->S2",
        "ref:get0:#1->S1",
        "ref:get1:#2->S2",
    }
    assert one(fig, "badge:S2").get_text() == "3"
    assert one(fig, "badge:S1").get_text() == "1"


def test_dangling_arrows_are_red_to_a_ghost_and_get0_is_dashed() -> None:
    t = small_trace()
    fig = plot.heap(t.snapshot(4))
    render(fig)
    found = arrows(fig)
    assert set(found) == {"ref:ssl:s1->S2", "ref:cache:server->S2", "ref:get0:#1->S1", "ref:get1:#2->S2"}
    dangling = found["ref:get0:#1->S1"]
    assert to_hex(dangling.get_edgecolor()) == DANGLING
    assert dangling.get_linestyle() in ("--", "dashed")
    assert found["ref:get1:#2->S2"].get_linestyle() in ("-", "solid")
    assert to_hex(found["ref:get1:#2->S2"].get_edgecolor()) != DANGLING
    one(fig, "ghost:S1")
    assert not by_gid(fig, "session:S1") and not by_gid(fig, "ssl:c1")


def test_heap_counts_every_reference_on_a_long_story() -> None:
    t = synthetic_trace(40, seed=3)
    for i in (5, 20, 39):
        snap = t.snapshot(i)
        fig = plot.heap(snap, max_dangling=None)
        live_ssl = [s for s in snap.ssls.values() if not s.freed and s.session]
        cached = sum(len(c.members) for c in snap.caches.values())
        assert len(arrows(fig)) == len(live_ssl) + cached + len(snap.refs)
        for gid, arrow in arrows(fig).items():
            target = gid.split("->")[1]
            is_red = to_hex(arrow.get_edgecolor()) == DANGLING
            assert is_red == snap.sessions[target].freed, gid


def test_only_the_latest_dangling_refs_by_default() -> None:
    from sesskit.trace import Snapshot

    freed = SessionState("S1", "client", 0, None, False, True)
    refs = {i: RefState(i, "get0", "S1", "c1", dangling=True) for i in range(1, 11)}
    snap = Snapshot(sessions={"S1": freed}, refs=refs)
    assert set(arrows(plot.heap(snap))) == {f"ref:get0:#{i}->S1" for i in (7, 8, 9, 10)}
    assert len(arrows(plot.heap(snap, max_dangling=None))) == 10


def test_the_hidden_dangling_note_stays_inside_the_figure() -> None:
    from matplotlib.text import Text

    from sesskit.trace import Snapshot

    freed = SessionState("S1", "client", 0, None, False, True)
    refs = {i: RefState(i, "get0", "S1", "c1", dangling=True) for i in range(1, 11)}
    story = Trace()
    story.append("SSL_get0_session", "c1", "", Delta(sessions={"S1": freed}, refs=refs))
    # the heap on its own, and beside the timeline (narrower: where the note ran off the left edge)
    for fig in (plot.heap(Snapshot(sessions={"S1": freed}, refs=refs)), plot.overview(story)):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        notes = [t for t in fig.findobj(Text) if "hidden" in t.get_text()]
        assert len(notes) == 1 and "6 older dangling" in notes[0].get_text()
        box, page = notes[0].get_window_extent(renderer), fig.bbox
        assert page.x0 <= box.x0 and box.x1 <= page.x1, (box, page)


def test_cache_members_are_listed_in_order() -> None:
    t = synthetic_trace(30, seed=5)
    snap = t.snapshot(-1)
    members = snap.caches["server"].members
    assert len(members) >= 2
    fig = plot.heap(snap)
    ys = [one(fig, f"cache-member:server:{m}").get_position()[1] for m in members]
    assert ys == sorted(ys, reverse=True)
    assert one(fig, "cache-header:server").get_text() == f"server cache · size {len(members)}"


# -- the whole story -----------------------------------------------------------
def test_save_png_and_svg(tmp_path: Any) -> None:
    t = small_trace()
    png = plot.save(t, tmp_path / "story.png", step=2)
    assert png.read_bytes().startswith(b"\x89PNG")
    svg = plot.save(t.snapshot(4), tmp_path / "heap.svg")
    assert b"<svg" in svg.read_bytes()[:500]
    with pytest.raises(ValueError, match=r"png or \.svg"):
        plot.save(t, tmp_path / "story.jpg")


def test_no_pyplot_figures_are_left_behind() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot.timeline(small_trace())
    plot.heap(small_trace().snapshot())
    plot.overview(small_trace())
    assert plt.get_fignums() == before


# -- readable at the size it is saved ---------------------------------------------------
def test_a_real_lab_has_13_sessions_or_more(lab13: Trace) -> None:
    assert len(lab13.snapshot().sessions) >= 13


@pytest.mark.parametrize("where", ["heap", "overview"])
def test_heap_text_is_9pt_or_more_and_apart(lab13: Trace, long_trace: Trace, where: str) -> None:
    """At the figure's own size: no heap text under 9 pt, none off the figure, no two on each other."""
    for trace, step in ((lab13, -1), (lab13, len(lab13) // 2), (long_trace, -2), (long_trace, -1)):
        snap = trace.snapshot(step)
        fig = plot.heap(snap) if where == "heap" else plot.overview(trace, step)
        heap_ax = next(ax for ax in fig.axes if ax.get_label() == "sesskit-heap")
        texts = [t for t in drawn_texts(fig) if t.axes is heap_ax]
        assert len(texts) > 10
        assert min(t.get_size() for t in texts) >= MIN_PT
        assert not overlapping(texts, fig)
        page = fig.bbox.padded(1)
        renderer = fig.canvas.get_renderer()
        for t in texts:
            box = t.get_window_extent(renderer)
            assert page.contains(*box.p0) and page.contains(*box.p1), t.get_text()
        assert_readable(fig) if where == "overview" else None


def test_a_heap_too_big_to_draw_counts_what_it_leaves_out(long_trace: Trace) -> None:
    """255 cached sessions: the figure stays a picture (not 255 rows of tiny text), the rest is counted."""
    snap = long_trace.snapshot(-2)
    members = snap.caches["server"].members
    assert len(members) == 255
    fig = plot.heap(snap)
    assert fig.get_figheight() < 12
    drawn = [m for m in members if by_gid(fig, f"cache-member:server:{m}")]
    assert 0 < len(drawn) < len(members)
    notes = [t.get_text() for t in drawn_texts(fig)]
    assert f"… {len(members) - len(drawn)} more" in notes
    live = [k for k, v in snap.sessions.items() if not v.freed]
    shown = [k for k in live if by_gid(fig, f"session:{k}")]
    assert f"… and {len(live) - len(shown)} more" in notes


def test_heap_in_small_given_axes_keeps_its_text_size(lab13: Trace) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3))
    ax = fig.add_subplot(1, 1, 1)
    plot.heap(lab13.snapshot(), ax=ax)
    texts = drawn_texts(fig)
    assert min(t.get_size() for t in texts) >= MIN_PT
    assert any(t.get_text().startswith("… and") for t in texts)


def test_legend_names_every_session_beyond_12(lab13: Trace) -> None:
    fig = plot.timeline(lab13, step=-1)
    ax_ref = fig.axes[0]
    legend = ax_ref.get_legend()
    names = [t.get_text() for t in legend.get_texts()]
    sessions = list(lab13.snapshot().sessions)
    assert len(sessions) >= 13 and sorted(names, key=lambda x: int(x[1:])) == sorted(
        sessions, key=lambda x: int(x[1:])
    )
    for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True):
        assert to_hex(handle.get_color()) == plot.session_color(text.get_text())
    assert_readable(fig)
    # beside the panels, within the figure, clear of the other legend
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    assert box.x0 >= ax_ref.get_window_extent(renderer).x1
    assert fig.bbox.contains(box.x1, box.y0)
    key = fig.axes[1].get_legend().get_window_extent(renderer)
    assert not box.overlaps(key)


def test_the_nudge_is_explained_in_a_note(lab13: Trace) -> None:
    import re

    fig = plot.timeline(lab13)
    offsets = one(fig, "timeline:refcount").sesskit_offsets
    assert len({round(o, 6) for o in offsets}) > 1  # the lines really are nudged
    note = one(fig, "timeline:nudge-note")
    said = float(re.search(r"±([0-9.]+)", note.get_text()).group(1))
    assert max(abs(o) for o in offsets) <= said + 1e-9
    assert note.get_size() >= MIN_PT
    texts = drawn_texts(fig)
    assert note in texts and not overlapping(texts, fig)


def test_258_steps_readable_at_the_default_size(long_trace: Trace) -> None:
    assert len(long_trace) == 258
    for fig in (plot.timeline(long_trace, step=-1), plot.overview(long_trace)):
        assert_readable(fig)
        ax_cache = next(ax for ax in fig.axes if ax.get_label() == "sesskit-timeline-cache")
        ticks, labels = ax_cache.get_xticks(), [lb.get_text() for lb in ax_cache.get_xticklabels()]
        assert len(ticks) >= 20  # labelled often enough to follow
        assert labels == [long_trace[int(i)].op for i in ticks]
        assert fig.get_figwidth() <= 26


def test_a_window_of_a_long_trace_labels_every_step(long_trace: Trace) -> None:
    fig = plot.timeline(long_trace, steps=range(230, 258), step=256)
    ax_cache = fig.axes[1]
    assert ax_cache.get_xlim() == (229.5, 257.5)
    assert list(ax_cache.get_xticks()) == list(range(230, 258))
    assert [lb.get_text() for lb in ax_cache.get_xticklabels()] == [long_trace[i].op for i in range(230, 258)]
    assert_readable(fig)
    with pytest.raises(ValueError, match="outside this trace"):
        plot.timeline(long_trace, steps=range(250, 300))
    with pytest.raises(ValueError, match="empty"):
        plot.timeline(long_trace, steps=range(0))


def test_a_window_names_only_the_sessions_alive_in_it(lab13: Trace) -> None:
    n = len(lab13)
    fig = plot.timeline(lab13, steps=range(n - 4, n))
    names = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    snaps = [lab13.snapshot(i) for i in range(n - 4, n)]
    alive = {k for s in snaps for k, v in s.sessions.items()} - {
        k for k, v in lab13.snapshot(n - 5).sessions.items() if v.freed
    }
    assert names == alive


def test_saved_files_are_readable_at_their_size(lab13: Trace, tmp_path: Any) -> None:
    from PIL import Image

    path = plot.save(lab13, tmp_path / "lab.png")
    fig = plot.overview(lab13)
    with Image.open(path) as im:
        expected = (fig.get_figwidth() * 110, fig.get_figheight() * 110)
        assert all(abs(got - want) <= 1 for got, want in zip(im.size, expected, strict=True))
    assert_readable(fig)
