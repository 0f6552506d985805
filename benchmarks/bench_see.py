"""How fast matplotlib export draws a huge timeline (Agg); the stories' generators.

The Stepper and the viewer draw in the browser: their clicks and scrubs are
measured in Chromium by ``bench_browser.py``.  What stays here is the export
path, with a bare matplotlib baseline measured in the same run, as a ratio:

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


def bare_10k_line() -> float:
    from matplotlib.figure import Figure

    def draw(_i: int) -> None:
        fig = Figure(figsize=(11, 5.6))
        ax = fig.add_subplot()
        ax.plot(range(10_000), [i % 5 for i in range(10_000)])
        fig.canvas.draw()

    return median_ms(draw, 5)


# -- the measurements ------------------------------------------------------------
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
    }
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
