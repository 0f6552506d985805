"""How fast the viewer draws in the reader's browser (headless Debian Chromium, pages from file://).

Every time is measured inside the page with ``performance.now()``; each comes
with a baseline measured in the same browser in the same run, so figures from
different machines can be compared:

- ``scrub``: one step move until the viewer's root shows the new ``data-step``
  and a ``requestAnimationFrame`` has passed (``ms``), and until the task after
  that frame, i.e. style, layout and paint done (``frame_ms``); ``handler_ms``: until the event's
  dispatch returned (the viewer's own synchronous work).  Half the moves
  are random jumps (the slider's ``input`` event), half are ±1 (a ``keydown``
  on the viewer); p50 and p90 over ``moves`` moves.  At a 500-step trace and at
  10,000 steps with about 1,000 live sessions at every step.
  Baseline ``bare_input``: the same round trip on a page whose slider handler
  only writes one attribute.
- ``first_paint``: the tour's page (``python -m sesskit render tour``), from
  navigation start (the page's time origin) to the first time
  ``.sesskit-viewer[data-step]`` exists (``viewer_ms``, a MutationObserver
  installed before any page script) and to the frame after it (``painted_ms``);
  median over fresh browser contexts.  Baseline: first contentful paint of a
  page with one paragraph.
- ``sizes``: viewer.js + viewer.css, the tour page (bytes).

Chromium runs with ``--disable-frame-rate-limit`` and ``--disable-gpu-vsync``
so a frame is not held for the 60 Hz clock: the figures are work, not vsync
phase.

Usage: ``python benchmarks/bench_browser.py [--quick] [--json out.json]`` (JSON
also on stdout; run alone without --json it writes benchmarks/results/browser.json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Measure this checkout's sesskit, whatever the environment has installed.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from headless import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from stories import model_story  # noqa: E402

import sesskit  # noqa: E402
from sesskit import scenarios  # noqa: E402
from sesskit.trace import Trace  # noqa: E402
from sesskit.viewer.page import HERE as VIEWER_DIR  # noqa: E402
from sesskit.viewer.page import page  # noqa: E402

BENCH_ARGS = [*CHROMIUM_ARGS, "--disable-frame-rate-limit", "--disable-gpu-vsync"]
LOCAL = ("file:", "blob:", "data:", "about:")


# -- traces --------------------------------------------------------------------------------------
def crowded_story(n_steps: int, n_live: int, seed: int = 2) -> Trace:
    """``n_live`` sessions made first (``n_live / 2`` connects), then ``model_story``'s mix, with a new
    connect after every free so that about ``n_live`` sessions stay alive at every later step."""
    rng = random.Random(seed)
    lab = sesskit.Lab(engine="model", tls="1.2", tickets=False)
    links = [lab.connect() for _ in range(n_live // 2)]
    live = [ep for link in links for ep in (link.client, link.server)]
    held: list[Any] = []
    while len(lab.trace) < n_steps:
        roll = rng.random()
        if roll < 0.2 and held:
            held.pop(rng.randrange(len(held))).free()
            continue
        ep = live[rng.randrange(len(live))]
        if roll >= 0.97:
            ep.free()
            live.remove(ep)
            if ep.side == "client":  # its session goes: make two more
                link = lab.connect()
                live += [link.client, link.server]
        elif roll >= 0.75 and not ep.state.sent_shutdown:
            ep.shutdown()
        elif 0.5 <= roll < 0.75:
            ref = ep.get1_session()
            if ref is not None:
                held.append(ref)
        else:
            ep.get0_session()
    trace = lab.trace
    lab.close()
    return trace


def live_range(trace: Trace, start: int) -> tuple[int, int]:
    """Fewest and most live sessions over the steps from ``start`` (the moves' range)."""
    counts = [len(s.live_sessions()) for i, s in enumerate(trace.snapshots()) if i >= start]
    return min(counts), max(counts)


# -- in-page measurements ------------------------------------------------------------------------
# One move: the slider's input event (a jump) or a keydown on the viewer (±1), then wait for data-step
# and a frame (ms), then for the task after that frame (frame_ms).
SCRUB = """async ([moves, bare]) => {
  const v = document.querySelector(bare ? '#bare' : '.sesskit-viewer');
  const s = v.querySelector('input[type=range]');
  const frame = () => new Promise(r => requestAnimationFrame(r));
  const after = () => new Promise(r => { const c = new MessageChannel(); c.port1.onmessage = r;
    c.port2.postMessage(0); });
  const out = {ms: [], frame_ms: [], handler_ms: [], missed: 0};
  await frame(); await after();
  for (const [to, key] of moves) {
    const t0 = performance.now();
    if (key && !bare) {
      v.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true, cancelable: true}));
    } else {
      s.value = String(to);
      s.dispatchEvent(new Event('input', {bubbles: true}));
    }
    out.handler_ms.push(performance.now() - t0);
    let spins = 0;
    while (v.dataset.step !== String(to) && spins++ < 120) await frame();
    if (v.dataset.step !== String(to)) out.missed++;
    await frame();
    const t1 = performance.now();
    await after();
    out.ms.push(t1 - t0);
    out.frame_ms.push(performance.now() - t0);
    await frame();  // the next move starts on a fresh frame
  }
  return out;
}"""

# The baseline page: a slider whose handler writes one attribute.
BARE_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<div id="bare" data-step="0" tabindex="0"><input type="range" min="0" max="@MAX@" value="0"></div>
<script>
const v = document.getElementById('bare');
v.querySelector('input').addEventListener('input', e => { v.dataset.step = e.target.value; });
</script></body></html>"""

# Installed before any page script: when does the viewer's root first carry data-step?
FIRST_DRAW = """(() => {
  window.__firstDraw = null; window.__firstPaint = null;
  const seen = () => {
    if (window.__firstDraw !== null) return;
    if (document.querySelector('.sesskit-viewer[data-step]')) {
      window.__firstDraw = performance.now();
      requestAnimationFrame(() => setTimeout(() => { window.__firstPaint = performance.now(); }, 0));
    }
  };
  new MutationObserver(seen).observe(document, {subtree: true, childList: true, attributes: true,
    attributeFilter: ['data-step']});
})();"""


def moves(n_steps: int, count: int, start: int, seed: int = 7) -> list[tuple[int, str | None]]:
    """``count`` moves within steps [start, n_steps): random jumps and ±1 in turn."""
    rng = random.Random(seed)
    at = rng.randrange(start, n_steps)
    out: list[tuple[int, str | None]] = [(at, None)]
    for i in range(count):
        if i % 2:
            at = rng.randrange(start, n_steps)
            out.append((at, None))
        else:
            key = "ArrowRight" if (at + 1 < n_steps and rng.random() < 0.5) or at <= start else "ArrowLeft"
            at += 1 if key == "ArrowRight" else -1
            out.append((at, key))
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(raw: dict[str, Any]) -> dict[str, Any]:
    ms, fr, hd = raw["ms"][1:], raw["frame_ms"][1:], raw["handler_ms"][1:]  # the first move: setup
    return {
        "moves": len(ms),
        "p50_ms": statistics.median(ms),
        "p90_ms": pct(ms, 90),
        "frame_p50_ms": statistics.median(fr),
        "frame_p90_ms": pct(fr, 90),
        "handler_p50_ms": statistics.median(hd),
        "handler_p90_ms": pct(hd, 90),
        "missed": raw["missed"],
    }


class Browser:
    def __init__(self, p: Any) -> None:
        self.browser = p.chromium.launch(executable_path=CHROMIUM, args=BENCH_ARGS, headless=True)
        self.outside: list[str] = []

    def tab(self, init: str | None = None) -> tuple[Any, Any]:
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(LOCAL) else r.abort())
        pg = context.new_page()
        pg.on("request", lambda r: None if r.url.startswith(LOCAL) else self.outside.append(r.url))
        pg.on("pageerror", lambda e: print(f"page error: {e}", file=sys.stderr))
        if init:
            pg.add_init_script(init)
        return context, pg

    def scrub(self, path: Path, n_steps: int, count: int, start: int, bare: bool = False) -> dict[str, Any]:
        context, pg = self.tab()
        pg.goto(path.as_uri(), wait_until="load")
        pg.wait_for_selector("#bare" if bare else ".sesskit-viewer[data-step]", state="attached")
        raw = pg.evaluate(SCRUB, [moves(n_steps, count, start), bare])
        context.close()
        return summary(raw)

    def first_paint(self, path: Path, loads: int) -> dict[str, float]:
        draws, paints = [], []
        for _ in range(loads):
            context, pg = self.tab(FIRST_DRAW)
            pg.goto(path.as_uri(), wait_until="load")
            pg.wait_for_function("window.__firstPaint !== null", timeout=30_000)
            draws.append(pg.evaluate("window.__firstDraw"))
            paints.append(pg.evaluate("window.__firstPaint"))
            context.close()
        return {
            "loads": loads,
            "viewer_ms": statistics.median(draws),
            "painted_ms": statistics.median(paints),
        }

    def fcp(self, path: Path, loads: int) -> float:
        times = []
        for _ in range(loads):
            context, pg = self.tab()
            pg.goto(path.as_uri(), wait_until="load")
            pg.wait_for_function(
                "performance.getEntriesByName('first-contentful-paint').length > 0", timeout=30_000
            )
            times.append(pg.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"))
            context.close()
        return statistics.median(times)


def main(quick: bool = False) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    count = 200 if quick else 400
    big_steps, big_live = (2_000, 200) if quick else (10_000, 1_000)
    engine = "model" if quick else "auto"
    out: dict[str, Any] = {"quick": quick, "chromium_args": BENCH_ARGS}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        t = Path(tmp)
        b = Browser(p)
        out["chromium"] = b.browser.version
        # sizes
        tour = scenarios.run("tour", engine)
        tour_page = t / "tour.html"
        scenarios.write(
            tour, tour_page, title=scenarios.get("tour").title, summary=scenarios.get("tour").summary
        )
        assets = sum((VIEWER_DIR / n).stat().st_size for n in ("viewer.js", "viewer.css"))
        out["sizes"] = {
            "viewer_js_css_bytes": assets,
            "tour_page_bytes": tour_page.stat().st_size,
            "tour_engine": tour.meta.get("engine"),
        }
        # first paint
        plain = t / "plain.html"
        plain.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body><p>a paragraph</p>')
        loads = 5 if quick else 15
        out["first_paint"] = {**b.first_paint(tour_page, loads), "bare_fcp_ms": b.fcp(plain, loads)}
        # scrubbing
        out["scrub"] = {}
        small = model_story(500, 60)
        t0 = time.perf_counter()
        big = crowded_story(big_steps, big_live)
        gen_s = time.perf_counter() - t0
        for name, trace, start in (("500", small, 0), ("10k", big, big_live // 2)):
            path = t / f"scrub-{name}.html"
            path.write_text(page(trace, f"bench {name}"), encoding="utf-8")
            r = b.scrub(path, len(trace), count, start)
            r["steps"] = len(trace)
            r["live_sessions"] = list(live_range(trace, start))
            r["page_bytes"] = path.stat().st_size
            out["scrub"][name] = r
        out["scrub"]["10k"]["generate_s"] = gen_s
        bare = t / "bare.html"
        bare.write_text(BARE_PAGE.replace("@MAX@", "499"))
        out["baseline"] = {"bare_input": b.scrub(bare, 500, count, 0, bare=True)}
        out["outside_requests"] = b.outside
        b.browser.close()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--json", type=Path, help="where to write the figures")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM}")
    t0 = time.perf_counter()
    load = os.getloadavg()
    result = main(args.quick)
    result["bench_seconds"] = time.perf_counter() - t0
    # other work on the machine shows in browser latencies: the 1-minute load before and after
    result["load_average"] = [round(load[0], 2), round(os.getloadavg()[0], 2)]
    text = json.dumps(result, indent=2)
    print(text)
    target = args.json or (None if args.quick else HERE / "results" / "browser.json")
    if target:
        target.write_text(text + "\n")
