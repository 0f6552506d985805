"""The README's screenshot: the viewer on a real run of the tour story, in headless Chromium.

    .venv/bin/python docs/screenshot.py

1. Runs the ``tour`` story on the real engine (``libssl``; the model only when
   this machine has no usable libssl, and the sidecar and the printed alt text
   say so).
2. Writes the static page with :func:`sesskit.viewer.page.page` (the same page
   ``python -m sesskit render tour --out tour.html`` writes).
3. Opens it in Debian's Chromium (Playwright for Python, flags from
   tests/headless.py; never ``playwright install``) at 1024×720, at the first
   step where a get0 (borrowed, dashed) and a get1 (owned, solid) pointer are
   both live, and saves ``docs/_static/screenshot.png`` (≤ 150 KB).
4. Writes ``docs/_static/screenshot.json``: the step, the engine, and a key,
   the sha256 of what the picture depends on (viewer.js, viewer.css,
   sesskit/viewer/page.py, this script, and each step's op, target, result, why
   and changes; not the OpenSSL version string, which differs per machine).
   tests/test_readme.py recomputes the key and fails while the picture is stale.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
PNG = DOCS / "_static" / "screenshot.png"
SIDECAR = DOCS / "_static" / "screenshot.json"
VIEWPORT = {"width": 1024, "height": 720}
MAX_BYTES = 150 * 1024
STORY = "tour"

sys.path.insert(0, str(ROOT))  # this checkout's sesskit, even when it is not installed
from sesskit.trace import Trace  # noqa: E402


def sources() -> list[Path]:
    """The files the picture is drawn by (the trace aside)."""
    viewer = ROOT / "sesskit" / "viewer"
    return [viewer / "viewer.js", viewer / "viewer.css", viewer / "page.py", Path(__file__).resolve()]


def run_story() -> tuple[Trace, str]:
    """The tour's trace on libssl, or on the model when libssl cannot run here; and the engine's name."""
    from sesskit import scenarios
    from sesskit.errors import SesskitError

    try:
        return scenarios.run(STORY, engine="libssl"), "libssl"
    except (SesskitError, OSError, ImportError):
        return scenarios.run(STORY, engine="model"), "model"


def key(trace: Trace) -> str:
    """sha256 over the drawing code and what each step shows (op, target, result, why, changes)."""
    h = hashlib.sha256()
    for path in sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    steps = [
        {k: d.get(k) for k in ("op", "target", "result", "why", "changes")}
        for d in (step.to_dict() for step in trace)
    ]
    h.update(json.dumps(steps, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


def interesting_step(trace: Trace) -> int:
    """The first step at which a get0 and a get1 pointer are both live (dashed and solid arrows)."""
    for i in range(len(trace)):
        kinds = {r.kind for r in trace.snapshot(i).refs.values() if not r.released and not r.dangling}
        if {"get0", "get1"} <= kinds:
            return i
    raise RuntimeError(f"the {STORY} story never holds a get0 and a get1 pointer at once")


def alt_text(engine: str, step: int, op: str) -> str:
    """The README's alt text (tests/test_readme.py requires the README to use exactly this)."""
    source = (
        "recorded on a real OpenSSL (the libssl engine)"
        if engine == "libssl"
        else "predicted by sesskit's model (no libssl where it was made)"
    )
    return f"The sesskit viewer at step {step} ({op}) of the tour story, {source}"


def shoot(html_path: Path, step: int, out: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from headless import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport=VIEWPORT, color_scheme="light")
            page.goto(f"{html_path.as_uri()}#step={step}", wait_until="load")
            page.wait_for_selector(f'.sesskit-viewer[data-step="{step}"]')
            page.wait_for_timeout(300)  # let layout settle (arrows are drawn after the boxes)
            page.screenshot(path=str(out), full_page=False)
        finally:
            browser.close()


def shrink(png: Path) -> None:
    """Quantize to a palette if the PNG is over the limit (a UI screenshot has few colours)."""
    if png.stat().st_size <= MAX_BYTES:
        return
    from PIL import Image

    with Image.open(png) as img:
        small = img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)


def main() -> dict[str, Any]:
    from sesskit.viewer.page import page

    trace, engine = run_story()
    step = interesting_step(trace)
    with tempfile.TemporaryDirectory() as tmp:
        html_path = Path(tmp) / "tour.html"
        html_path.write_text(page(trace, title="sesskit · tour"), encoding="utf-8")
        shoot(html_path, step, PNG)
    shrink(PNG)
    size = PNG.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{PNG} is {size} bytes (limit {MAX_BYTES})")
    version = str(trace.meta.get("openssl_version", ""))
    facts = {
        "key": key(trace),
        "story": STORY,
        "step": step,
        "op": trace[step].op,
        "engine": engine,
        "openssl_version": version,
        "viewport": VIEWPORT,
        "alt": alt_text(engine, step, trace[step].op),
    }
    SIDECAR.write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {PNG.relative_to(ROOT)} ({size} bytes) and {SIDECAR.relative_to(ROOT)}: {facts['alt']}")
    return facts


if __name__ == "__main__":
    main()
