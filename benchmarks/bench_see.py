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

from stories import model_story

from sesskit import plot


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
