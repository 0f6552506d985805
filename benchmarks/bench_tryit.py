"""Try it in the docs (headless Chromium, the built site served on 127.0.0.1): click to interactive, ops.

The docs site is built (``sphinx-build``, or ``--site DIR`` for a build already made) and served from
127.0.0.1 by Python's http.server.  Every time is measured inside the page with ``performance.now()``:

- ``cold``: a fresh browser context (empty cache) opens the tour's story page; from the Try it click
  to the bar's ``SSL_connect`` button enabled (Pyodide downloaded, started, sesskit unpacked, the
  tour's steps replayed on the model, the Stepper drawn), polled every animation frame; median over
  ``loads`` contexts;
- ``warm``: the same context reloads the page and clicks again (the runtime from the browser's
  cache, and Python restored from the memory image the first start saved in the site's Cache Storage);
  median over ``loads`` reloads;
- ``ops``: in a ready page, ``ops`` operations (SSL_connect, SSL_get1_session, SSL_shutdown,
  SSL_read, advance, SSL_get0_session in turn, on the SSL the bar chose), each from the button's click
  to the viewer showing the new step, then one frame; p50/p90/max.

Baselines, in the same browser and run: ``bare.cold``/``bare.warm``, a page whose button starts a bare
Web Worker that loads the same Pyodide and runs ``1 + 1`` (the floor under Try it's first start; a
warm Try it restores a saved memory image instead, so it can go below it);
``bare.ops``, a round trip to that worker (a Python function echoing a string) until the page
set an attribute, then one frame (the floor under an operation).

Chromium runs with ``--disable-frame-rate-limit`` and ``--disable-gpu-vsync`` (as bench_browser.py).

Usage: ``python benchmarks/bench_tryit.py [--quick] [--site DIR] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from docsite import serve, sphinx_build  # noqa: E402
from headless import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

BENCH_ARGS = [*CHROMIUM_ARGS, "--disable-frame-rate-limit", "--disable-gpu-vsync"]
READY_TIMEOUT = 180_000  # ms

# From the click to the bar's SSL_connect enabled (or a failure), polled every frame.
CLICK_TO_READY = """async ([button, ready, failed]) => {
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const t0 = performance.now();
  document.querySelector(button).click();
  for (;;) {
    if (document.querySelector(ready)) return performance.now() - t0;
    if (failed && document.querySelector(failed)) throw new Error(document.querySelector(failed).textContent);
    if (performance.now() - t0 > @TIMEOUT@) throw new Error("not interactive after @TIMEOUT@ ms");
    await frame();
  }
}""".replace("@TIMEOUT@", str(READY_TIMEOUT))

# One operation: click its button, wait for the viewer's new data-step (a MutationObserver), one frame.
OPS = """async (names) => {
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const root = () => document.querySelector('.sesskit-viewer');
  const out = [];
  for (const name of names) {
    const btn = document.querySelector('.sesskit-btn-' + name);  // the bar is redrawn with each ui
    while (btn.disabled) await frame();
    const want = String(Number(root().dataset.step) + 1);
    const mount = document.querySelector('.sesskit-static-mount');
    const seq = mount.dataset.seq;
    const t0 = performance.now();
    const seen = new Promise((resolve) => {
      const check = () => root().dataset.step === want && (obs.disconnect(), resolve());
      const obs = new MutationObserver(check);
      obs.observe(mount, {subtree: true, attributes: true, attributeFilter: ['data-step']});
      check();
    });
    btn.click();
    await seen;
    await frame();
    out.push(performance.now() - t0);
    while (mount.dataset.seq === seq) await frame();  // the bar's new ui (sent right after the step)
  }
  return out;
}"""

BARE_OPS = """async (n) => {
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await window.bareEcho(String(i));
    await frame();
    out.push(performance.now() - t0);
  }
  return out;
}"""

BARE_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>
<button id="go">start</button><p id="out"></p>
<script type="module">
let worker = null, pending = null;
document.getElementById("go").onclick = () => {
  worker = new Worker("bare_worker.js", {type: "module"});
  worker.onmessage = (e) => {
    if (e.data === "ready") document.body.dataset.state = "ready";
    else { document.getElementById("out").dataset.v = e.data; pending?.(); }
  };
  worker.postMessage(new URL("site/_static/vendor/pyodide/", location.href).href);
};
window.bareEcho = (s) => new Promise((r) => { pending = r; worker.postMessage(s); });
</script></body></html>"""

BARE_WORKER = """let echo = null;
self.onmessage = async (e) => {
  if (echo) return self.postMessage(echo(e.data));
  const { loadPyodide } = await import(e.data + "pyodide.mjs");
  const py = await loadPyodide({ indexURL: e.data });
  py.runPython("1 + 1");
  echo = py.runPython("lambda s: s");
  self.postMessage("ready");
};"""

CYCLE = ("connect", "get1", "shutdown", "read", "advance", "get0")


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def stats(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p90_ms": pct(ms, 90), "max_ms": max(ms)}


def measure(root_url: str, loads: int, n_ops: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    tour = f"{root_url}/site/stories/tour.html"
    outside: list[str] = []

    def context(browser: Any) -> Any:
        c = browser.new_context(viewport={"width": 1600, "height": 1000})
        c.route("**/*", lambda r: r.continue_() if "//127.0.0.1:" in r.request.url else r.abort())
        c.on("request", lambda r: None if "//127.0.0.1:" in r.url else outside.append(r.url))
        return c

    ready_sel = (
        ".sesskit-tryit[data-state=ready] ~ .sesskit-static-mount .sesskit-btn-connect:not([disabled])"
    )
    tryit = [".sesskit-tryit-btn", ready_sel, ".sesskit-tryit[data-state=failed] .sesskit-tryit-status"]
    bare = ["#go", "body[data-state=ready]", None]
    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BENCH_ARGS, headless=True)
        out["chromium"] = browser.version
        cold, warm, bare_cold, bare_warm, ops, bare_ops = [], [], [], [], [], []
        for i in range(loads):
            c = context(browser)
            pg = c.new_page()
            pg.goto(tour, wait_until="load")
            pg.wait_for_load_state("networkidle")
            cold.append(pg.evaluate(CLICK_TO_READY, tryit))
            if i == 0:
                names = [CYCLE[k % len(CYCLE)] for k in range(n_ops)]
                ops = pg.evaluate(OPS, names)
            pg.goto("about:blank")  # the address now carries operations: open the page without them
            pg.goto(tour, wait_until="load")
            pg.wait_for_load_state("networkidle")
            warm.append(pg.evaluate(CLICK_TO_READY, tryit))
            c.close()
            c = context(browser)
            pg = c.new_page()
            pg.goto(f"{root_url}/bare.html", wait_until="load")
            bare_cold.append(pg.evaluate(CLICK_TO_READY, bare))
            if i == 0:
                bare_ops = pg.evaluate(BARE_OPS, n_ops)
            pg.reload(wait_until="load")
            bare_warm.append(pg.evaluate(CLICK_TO_READY, bare))
            c.close()
        browser.close()
    out["cold"] = {"loads": loads, "median_ms": statistics.median(cold), "ms": cold}
    out["warm"] = {"loads": loads, "median_ms": statistics.median(warm), "ms": warm}
    out["ops"] = {**stats(ops[1:]), "cycle": list(CYCLE)}  # the first op: the bar settles
    out["bare"] = {
        "cold": {"loads": loads, "median_ms": statistics.median(bare_cold), "ms": bare_cold},
        "warm": {"loads": loads, "median_ms": statistics.median(bare_warm), "ms": bare_warm},
        "ops": stats(bare_ops[1:]),
    }
    out["outside_requests"] = outside
    return out


def main(quick: bool, site: Path | None) -> dict[str, Any]:
    loads, n_ops = (2, 25) if quick else (5, 121)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        if site is None:
            r = sphinx_build(t / "html", t / "doctrees")
            if r.returncode != 0:
                sys.exit(r.stdout[-2000:] + r.stderr[-4000:])
            site = t / "html"
        root = t / "root"
        root.mkdir()
        (root / "site").symlink_to(site.resolve())
        (root / "bare.html").write_text(BARE_PAGE)
        (root / "bare_worker.js").write_text(BARE_WORKER)
        runtime = site / "_static" / "vendor" / "pyodide"
        with serve(root) as url:
            out = measure(url, loads, n_ops)
        out["quick"] = quick
        out["pyodide_bytes"] = sum(p.stat().st_size for p in runtime.iterdir() if p.is_file())
        out["pyodide_version"] = json.loads((runtime / "package.json").read_text())["version"]
        out["tour_page_bytes"] = (site / "stories" / "tour.html").stat().st_size
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer loads and operations, for a smoke run")
    ap.add_argument("--site", type=Path, help="a docs build to serve (default: build one now)")
    ap.add_argument("--json", type=Path, help="where to write the figures")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM}")
    t0 = time.perf_counter()
    load = os.getloadavg()
    result = main(args.quick, args.site)
    result["bench_seconds"] = time.perf_counter() - t0
    result["load_average"] = [round(load[0], 2), round(os.getloadavg()[0], 2)]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
