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
from sesskit.trace import Trace
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


# -- a 10,000-step story on the model engine ---------------------------------------
def model_story(n_steps: int, n_sessions: int, seed: int = 1) -> Trace:
    """A long random story on the model: connects until ``n_sessions`` sessions, then
    borrows, takes and gives back references, closes and frees, until ``n_steps``."""
    rng = random.Random(seed)
    lab = sesskit.Lab(engine="model", tls="1.2", tickets=False)
    live: list[Any] = []  # endpoints not freed yet
    held: list[Any] = []  # unreleased get1 refs
    links = 0
    p_connect = n_sessions / 2 / n_steps * 1.05
    while len(lab.trace) < n_steps:
        if 2 * links + 2 <= n_sessions and (not live or rng.random() < p_connect):
            link = lab.connect()
            links += 1
            live += [link.client, link.server]
            continue
        roll = rng.random()
        if roll < 0.2 and held:
            held.pop(rng.randrange(len(held))).free()
        elif not live:
            lab.advance(1)
        else:
            ep = live[rng.randrange(len(live))]
            if roll >= 0.96:  # few frees: most SSLs stay alive through the story
                ep.free()
                live.remove(ep)
            elif roll >= 0.75 and not ep.state.sent_shutdown:
                ep.shutdown()
            elif 0.5 <= roll < 0.75:
                ref = ep.get1_session()
                if ref is not None:
                    held.append(ref)
            else:
                ep.get0_session()
    return lab.trace


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
    trace = model_story(n_steps, n_sessions)

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
