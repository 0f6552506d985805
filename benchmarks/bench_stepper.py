"""A Stepper click in JupyterLab (headless Chromium): from the click to the viewer showing the new step.

A notebook builds a lab of about 500 steps on the real engine (libssl; the
model if libssl is missing, said in the JSON) in its kernel cell: 100 rounds
of SSL_connect, SSL_get1_session, SSL_shutdown and SSL_free on the client, and
an advance.  Then the Stepper over it, and a bare baseline beside it: an
ipywidgets Button whose handler only increments a Label (one kernel round trip,
nothing drawn but a number).

Inside the page, for each of ``clicks`` clicks (alternately ``SSL_get0_session``
on the chosen server SSL and ``advance``): ``performance.now()`` at the click
event, then a MutationObserver on ``.sesskit-viewer[data-step]`` and one
``requestAnimationFrame`` after the new step is set (the heap, the list and the
why are drawn in the same task).  The next click waits until the bar is
unlocked (the kernel's ``ui`` arrived).  The baseline: click to the Label's new
text, then one frame.  p50/p90/max of each.

JupyterLab starts as ``python -m sesskit lab`` starts it (test_jupyter.jupyter):
Nagle's algorithm off on the kernel's websocket (sesskit/app/nodelay.py).

Chromium runs with ``--disable-frame-rate-limit`` and ``--disable-gpu-vsync``
(as bench_browser.py), so a frame is not held for the 60 Hz clock.

Usage: ``python benchmarks/bench_stepper.py [--quick] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import nbformat  # noqa: E402
from headless import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from test_jupyter import jupyter  # noqa: E402

BENCH_ARGS = [*CHROMIUM_ARGS, "--disable-frame-rate-limit", "--disable-gpu-vsync"]
READY_TIMEOUT = 180_000  # ms

BUILD = """\
import ipywidgets, sesskit
try:
    lab = sesskit.Lab(engine="libssl", tls="1.2", tickets=False)
except Exception:
    lab = sesskit.Lab(engine="model", tls="1.2", tickets=False)
for i in range({rounds}):
    link = lab.connect()
    link.client.get1_session()
    link.client.shutdown()
    link.client.free()
    lab.advance(60)
stepper = lab.stepper()
stepper.acts_on = "ssl:" + lab.links[-1].server.name
print("ENGINE", lab.engine_name, len(lab.trace))
stepper
"""
BARE = """\
count = ipywidgets.Label("0")
count.add_class("bench-count")
bare = ipywidgets.Button(description="bare")
bare.add_class("bench-bare")
bare.on_click(lambda _: setattr(count, "value", str(int(count.value) + 1)))
ipywidgets.HBox([bare, count])
"""

MEASURE = """async ([n, names]) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const root = document.querySelector(".sesskit-stepper .sesskit-viewer");
  const times = [];
  for (let k = 0; k < n; k++) {
    let b;
    const until = performance.now() + 20000;
    while (!(b = root.querySelector(".sesskit-btn-" + names[k % names.length])) || b.disabled) {
      if (performance.now() > until) throw new Error("the bar stayed locked after click " + k);
      await sleep(5);
    }
    await sleep(50);
    const before = root.dataset.step;
    let t0 = 0;
    const drawn = new Promise((res) => {
      const mo = new MutationObserver(() => {
        if (root.dataset.step === before) return;
        mo.disconnect();
        requestAnimationFrame(() => res(performance.now()));
      });
      mo.observe(root, { attributes: true, attributeFilter: ["data-step"] });
    });
    b.addEventListener("click", () => (t0 = performance.now()), { once: true, capture: true });
    b.click();
    const late = sleep(20000).then(() => Promise.reject(new Error("no new step after click " + k)));
    times.push((await Promise.race([drawn, late])) - t0);
  }
  return times;
}"""

MEASURE_BARE = """async (n) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const b = document.querySelector(".bench-bare button, button.bench-bare");
  const label = document.querySelector(".bench-count");
  const times = [];
  for (let k = 0; k < n; k++) {
    await sleep(50);
    const before = label.textContent;
    let t0 = 0;
    const done = new Promise((res) => {
      const mo = new MutationObserver(() => {
        if (label.textContent === before) return;
        mo.disconnect();
        requestAnimationFrame(() => res(performance.now()));
      });
      mo.observe(label, { subtree: true, childList: true, characterData: true });
    });
    b.addEventListener("click", () => (t0 = performance.now()), { once: true, capture: true });
    b.click();
    times.push((await done) - t0);
  }
  return times;
}"""


def stats(ms: list[float]) -> dict[str, Any]:
    q = statistics.quantiles(ms, n=10)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(q[8], 1),
        "max_ms": round(max(ms), 1),
    }


def main(quick: bool = False) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    rounds, clicks = (20, 20) if quick else (100, 60)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, jupyter("lab", Path(tmp)) as url:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(BUILD.format(rounds=rounds)), nbformat.v4.new_code_cell(BARE)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, Path(tmp) / "root" / "bench.ipynb")
        body = {
            "path": "bench.ipynb",
            "type": "notebook",
            "name": "bench.ipynb",
            "kernel": {"name": "python3"},
        }
        req = urllib.request.Request(
            url + "api/sessions",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=60).close()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=BENCH_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(READY_TIMEOUT)
            page.goto(url + "lab/tree/bench.ipynb", timeout=READY_TIMEOUT)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.locator(".sesskit-stepper .sesskit-viewer").wait_for(state="visible")
            page.locator(".bench-bare").first.wait_for(state="visible")
            out = page.locator(".jp-OutputArea-output").first.inner_text()
            engine, steps = out.split("ENGINE", 1)[1].split()[:2]
            page.wait_for_timeout(1000)
            stepper = page.evaluate(MEASURE, [clicks, ["get0", "advance"]])
            bare = page.evaluate(MEASURE_BARE, clicks)
            browser.close()
    return {
        "engine": engine,
        "steps": int(steps),
        "clicks": clicks,
        "stepper": stats(stepper),
        "bare": stats(bare),
        "load_average": [round(load[0], 2), round(os.getloadavg()[0], 2)],
        "quick": quick,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, help="where to write the figures")
    args = ap.parse_args()
    t = time.perf_counter()
    result = main(args.quick)
    result["seconds"] = round(time.perf_counter() - t, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
