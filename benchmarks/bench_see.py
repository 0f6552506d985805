"""How fast sesskit draws: Stepper click -> redrawn figure, and a huge timeline (Agg).

Each figure is printed with a bare matplotlib baseline measured in the same run,
as a ratio, so numbers from different machines can be compared:

- ``click_ms[N]``: median time of one Stepper button click (``advance``: the
  lab's own work is tiny) until the new PNG is in the Image widget, with N
  steps of history; ``scrub_ms[N]``: the same for a history slider move (to
  steps far apart); ``mixed_click_ms[N]``: clicks that change the heap too
  (SSL_connect, SSL_read, get0, get1, SSL_shutdown, SSL_free, in turn).
  Each also as ``*_cpu_ms``: the process's CPU time, which other load on the
  machine disturbs much less than the wall clock.
  Baseline: ``fig.canvas.draw()`` + PNG of an empty figure of the same size,
  and of a bare line plot with one text per step label shown.
- ``timeline_10k_ms``: ``plot.timeline`` of a 10,000-step, 1,000-session
  trace plus ``canvas.draw()``.  Baseline: one ``ax.plot`` line of 10,000
  points, drawn.

Usage: ``python benchmarks/bench_see.py [out.json]`` (JSON also on stdout).
Runs in well under two minutes.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
# Measure this checkout's sesskit, whatever the environment has installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sesskit
from sesskit import plot
from sesskit.trace import CacheState, Delta, RefState, SessionState, SSLState, Trace
from sesskit.widgets import Stepper

FIGSIZE, DPI = (13.0, 5.2), 80


def median_ms(fn: Callable[[int], Any], repeat: int) -> float:
    return timed(fn, repeat)[0]


def timed(fn: Callable[[int], Any], repeat: int) -> tuple[float, float]:
    """Median wall-clock and median CPU milliseconds of ``fn(i)`` over ``repeat`` calls."""
    wall, cpu = [], []
    for i in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


# -- a lab with N steps of history, as a user would click it ----------------------
def user_lab(n_steps: int) -> Any:
    """Connect, read the tickets, borrow and take the session, resume with it, free; flush now and then."""
    lab = sesskit.Lab(engine="model")
    keep = None
    k = 0
    while len(lab.trace) < n_steps:
        k += 1
        resume = keep if keep is not None and not keep.dangling else None
        link = lab.connect(resume=resume)
        link.client.read()
        link.client.get0_session()
        ref = link.client.get1_session()
        if keep is not None and not keep.released and not keep.dangling:
            keep.free()
        keep = ref
        link.client.shutdown()
        link.client.free()
        link.server.free()
        if k % 5 == 0:
            lab.advance(3000)
            lab.flush()
    return lab


# -- a synthetic 10,000-step trace (a toy refcount ledger; no engine needed) ---
def synthetic_trace(n_steps: int, n_sessions: int, seed: int = 1) -> Trace:
    rng = random.Random(seed)
    t = Trace({"engine": "synthetic"})
    t.append(
        "SSL_CTX_new", "client+server", "", Delta(caches={s: CacheState(s) for s in ("client", "server")})
    )
    sess: dict[str, SessionState] = {}
    ssls: dict[str, SSLState] = {}
    refs: dict[int, RefState] = {}
    cache: list[str] = []
    n = {"label": 0, "link": 0, "ref": 0}
    p_connect = n_sessions / 2 / n_steps * 1.05

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
        can_connect = n["label"] + 2 <= n_sessions
        if can_connect and (not live or roll < p_connect):
            n["link"] += 1
            k = n["link"]
            a, b = f"S{n['label'] + 1}", f"S{n['label'] + 2}"
            n["label"] += 2
            sess[a] = d["sessions"][a] = SessionState(a, "client", 1, None, True)
            sess[b] = d["sessions"][b] = SessionState(b, "server", 2, "server", True)
            ssls[f"c{k}"] = d["ssls"][f"c{k}"] = SSLState(f"c{k}", "client", a)
            ssls[f"s{k}"] = d["ssls"][f"s{k}"] = SSLState(f"s{k}", "server", b)
            cache.insert(0, b)
            d["caches"]["server"] = CacheState("server", len(cache), tuple(cache))
            op, target = "SSL_connect", f"c{k}↔s{k}"
        elif live and roll < 0.5:
            s = rng.choice(live)
            n["ref"] += 1
            kind = rng.choice(["get0", "get1"])
            refs[n["ref"]] = d["refs"][n["ref"]] = RefState(n["ref"], kind, s.session, s.name)
            if kind == "get1":
                st = sess[s.session]
                sess[st.label] = d["sessions"][st.label] = SessionState(
                    st.label, st.side, st.refcount + 1, st.cache, st.resumable
                )
            op, target = f"SSL_{kind}_session", s.name
        elif held and roll < 0.7:
            r = rng.choice(held)
            refs[r.id] = d["refs"][r.id] = RefState(r.id, r.kind, r.session, r.via, True, r.dangling)
            drop(r.session, d)
            op, target = "SSL_SESSION_free", f"{r.session} (ref #{r.id})"
        elif live and roll < 0.8:
            s = rng.choice(live)
            ssls[s.name] = d["ssls"][s.name] = SSLState(s.name, s.side, s.session, True)
            drop(str(s.session), d)
            op, target = "SSL_free", s.name
        elif cache and roll < 0.9:
            label = cache.pop()
            st = sess[label]
            sess[label] = SessionState(label, st.side, st.refcount, None, st.resumable)
            d["caches"]["server"] = CacheState("server", len(cache), tuple(cache))
            drop(label, d)
            op, target = "SSL_CTX_flush_sessions", "server"
        else:
            op, target = "advance", "+10s"
        t.append(op, target, "", Delta(d["sessions"], d["ssls"], d["caches"], d["refs"]))
    return t


# -- baselines -----------------------------------------------------------------
def agg_png(fig: Any) -> bytes:
    """Draw + PNG exactly as the Stepper does (Agg, Pillow, compress_level=1)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgba = canvas.buffer_rgba()
    buf = io.BytesIO()
    Image.frombuffer("RGBA", (rgba.shape[1], rgba.shape[0]), rgba, "raw", "RGBA", 0, 1).save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()


def bare_empty_png() -> tuple[float, float]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    return timed(lambda i: agg_png(fig), 15)


def bare_line_plot_png(n_labels: int = 40) -> tuple[float, float]:
    """A bare plot of the same size: one line, ``n_labels`` rotated tick labels, drawn + PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.add_subplot()
    ax.plot(range(500), [i % 7 for i in range(500)])
    ticks = [i * 500 // n_labels for i in range(n_labels)]
    ax.set_xticks(ticks, [f"SSL_call_{i}" for i in range(n_labels)], rotation=90)
    return timed(lambda i: agg_png(fig), 15)


def bare_10k_line() -> float:
    from matplotlib.figure import Figure

    def draw(_i: int) -> None:
        fig = Figure(figsize=(11, 5.6))
        ax = fig.add_subplot()
        ax.plot(range(10_000), [i % 5 for i in range(10_000)])
        fig.canvas.draw()

    return median_ms(draw, 5)


# -- the measurements ------------------------------------------------------------
def bench_stepper(n_steps: int, clicks: int) -> dict[str, float]:
    t0 = time.perf_counter()
    lab = user_lab(n_steps)
    build_s = time.perf_counter() - t0
    stepper = Stepper(lab, render="png", figsize=FIGSIZE, dpi=DPI)
    stepper.buttons["advance"].click()  # warm up
    click, click_cpu = timed(lambda i: stepper.buttons["advance"].click(), clicks)
    n = len(lab.trace)
    scrub, scrub_cpu = timed(lambda i: setattr(stepper.history, "value", (i * 7919) % (n - 1)), clicks)
    lab_only = median_ms(lambda i: lab.advance(1), clicks)
    # connect selects the new client SSL; the other buttons act on it
    ops = ("connect", "read", "get0", "get1", "shutdown", "free")
    mixed, mixed_cpu = timed(lambda i: stepper.buttons[ops[i % len(ops)]].click(), 2 * len(ops))
    assert not stepper.error.value, stepper.error.value
    lab.close()
    return {
        "steps": n,
        "click_ms": click,
        "click_cpu_ms": click_cpu,
        "scrub_ms": scrub,
        "scrub_cpu_ms": scrub_cpu,
        "mixed_click_ms": mixed,
        "mixed_click_cpu_ms": mixed_cpu,
        "lab_advance_ms": lab_only,
        "build_s": build_s,
    }


def bench_timeline(n_steps: int = 10_000, n_sessions: int = 1_000) -> dict[str, float]:
    trace = synthetic_trace(n_steps, n_sessions)

    def render(_i: int) -> None:
        fig = plot.timeline(trace, step=n_steps // 2)
        fig.canvas.draw()

    ms = median_ms(render, 5)
    return {"steps": len(trace), "sessions": len(plot.timeline_data(trace).labels), "timeline_ms": ms}


def main() -> dict[str, Any]:
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "matplotlib": matplotlib.__version__,
        "machine": platform.machine(),
        "figure": {"size_in": FIGSIZE, "dpi": DPI},
    }
    empty, empty_cpu = bare_empty_png()
    lines, lines_cpu = bare_line_plot_png()
    out["baseline"] = {
        "empty_figure_png_ms": empty,
        "empty_figure_png_cpu_ms": empty_cpu,
        "bare_line_plot_png_ms": lines,
        "bare_line_plot_png_cpu_ms": lines_cpu,
    }
    out["stepper"] = {}
    for n, clicks in ((10, 15), (500, 15), (5000, 9)):
        r = bench_stepper(n, clicks)
        r["click_vs_empty_png"] = r["click_ms"] / empty
        r["click_vs_bare_line_plot"] = r["click_ms"] / lines
        r["click_cpu_vs_bare_line_plot_cpu"] = r["click_cpu_ms"] / lines_cpu
        out["stepper"][str(n)] = r
    bare = bare_10k_line()
    tl = bench_timeline()
    tl["bare_10k_point_line_ms"] = bare
    tl["ratio_vs_bare_line"] = tl["timeline_ms"] / bare
    out["timeline_10k"] = tl
    return out


if __name__ == "__main__":
    t0 = time.perf_counter()
    result = main()
    result["bench_seconds"] = time.perf_counter() - t0
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text + "\n")
