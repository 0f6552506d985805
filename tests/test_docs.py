"""The documentation site: built with Sphinx + myst-nb, opened in headless Chromium with no network.

The site is built (every notebook executed on the real engine, every story
recorded), served from 127.0.0.1, and every page is opened in Debian's
Chromium through Playwright with all requests outside 127.0.0.1 aborted and
recorded.  The pages must render, their viewers must draw and step without a
kernel, the site must stay small, and no request may leave the machine.

Needs npm (the build vendors its JavaScript from the npm registry) and
/usr/bin/chromium; in CI (CI=true) a missing one fails the test, elsewhere it
skips.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from headless import CHROMIUM, CHROMIUM_ARGS, missing, require_browser

import sesskit

ROOT = Path(__file__).resolve().parent.parent
BUILD_SECONDS_BUDGET = 240


def sphinx_build(out: Path, doctrees: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "sphinx-build"
    cmd = [str(exe), "-b", "html", "-E", "-j", "2", "-d", str(doctrees), "docs", str(out)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built from scratch (every notebook executed, every story recorded)."""
    if shutil.which("npm") is None:
        missing("npm is not installed (the docs build vendors its scripts with npm pack)")
    tmp = tmp_path_factory.mktemp("docs")
    out = tmp / "html"
    start = time.monotonic()
    r = sphinx_build(out, tmp / "doctrees")
    seconds = time.monotonic() - start
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-6000:]
    print(f"\ndocs built in {seconds:.0f} s")
    assert "WARNING" not in r.stderr.replace("[IPKernelApp] WARNING", ""), r.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class Offline:
    """A browser context in which every request outside 127.0.0.1 is aborted and recorded."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.blocked: list[str] = []
        self.local: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        context.route("**/*", self._route)
        context.on("requestfailed", lambda req: self.failed.append(f"{req.url} {req.failure}"))

    def _route(self, route: Any) -> None:
        url = route.request.url
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname == "127.0.0.1":
            self.local.append(url)
            route.continue_()
        elif parsed.scheme in ("data", "blob", "about"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def open(self, url: str) -> Any:
        page = self.context.new_page()
        page.on("pageerror", lambda e: self.errors.append(f"{url}: {e}"))
        page.on("websocket", lambda ws: self.blocked.append(f"websocket {ws.url}"))
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        return page


@pytest.fixture(scope="module")
def browser_context(server: str) -> Iterator[Offline]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        offline = Offline(context)
        yield offline
        context.close()
        browser.close()


def pages(site: Path) -> list[str]:
    return sorted(
        str(p.relative_to(site))
        for p in site.rglob("*.html")
        if p.parent.name in ("notebooks", "stories") or p.name in ("index.html", "api.html")
    )


def test_the_build_vendors_every_asset(site: Path) -> None:
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        from sesskit_docs import external_loads
    finally:
        sys.path.pop(0)
    assert external_loads(site) == {}
    static = site / "_static" / "vendor"
    assert (static / "mathjax" / "tex-chtml.js").is_file()
    for page in site.rglob("*.html"):  # the viewers draw with their own module: no embed manager
        text = page.read_text()
        assert "embed-amd.js" not in text and "widget-state+json" not in text, page
        assert text.count('class="sesskit-viewer-src"') <= 1, f"{page}: the viewer module twice"


def test_the_site_is_small(site: Path) -> None:
    total = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    print(f"\nsite: {total / 2**20:.1f} MiB")
    assert total <= 15 * 2**20, f"the site weighs {total / 2**20:.1f} MiB"
    for page in (site / "stories").glob("*.html"):
        assert page.stat().st_size <= 200 * 1024, f"{page.name}: {page.stat().st_size} bytes"


def test_every_notebook_and_story_has_a_page(site: Path) -> None:
    from sesskit import scenarios

    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    for name in notebooks:
        page = site / "notebooks" / f"{name}.html"
        assert page.is_file(), page
        assert "cell_output" in page.read_text(), f"{name}: no executed output"
    for name in scenarios.SCENARIOS:
        story = (site / "stories" / f"{name}.html").read_text()
        assert "sesskit-static-mount" in story, f"{name}: no viewer"
        assert "data:image/png;base64" not in story, f"{name}: frames are gone"
    assert len(list((site / "_downloads").rglob("*.png"))) >= len(scenarios.SCENARIOS)
    assert list((site / "_downloads").rglob("*.svg"))
    (trace_json,) = (site / "_downloads").rglob("tour.json")
    assert len(sesskit.Trace.from_json(trace_json.read_text())) > 3
    api = (site / "api.html").read_text()
    for name in ("sesskit.Lab", "sesskit.Link", "sesskit.Endpoint", "sesskit.SessionRef", "sesskit.Trace"):
        assert f'id="{name}"' in api, name
    for module in ("sesskit.plot", "sesskit.widgets", "sesskit.errors"):
        assert f'id="module-{module}"' in api, module


def test_notebooks_ran_on_the_real_engine(site: Path) -> None:
    from conftest import engine_unavailable

    if engine_unavailable("libssl"):
        pytest.skip(engine_unavailable("libssl"))
    tour = (site / "notebooks" / "01_tour.html").read_text()
    assert "engine: libssl" in tour  # the notebook prints its lab's engine
    assert "engine: model" not in tour
    from sesskit import scenarios

    for name in scenarios.SCENARIOS:
        story = (site / "stories" / f"{name}.html").read_text()
        assert "Recorded on the <strong>libssl</strong> engine" in story, name


def test_pages_render_offline_and_nothing_leaves_the_machine(
    site: Path, server: str, browser_context: Offline
) -> None:
    for rel in pages(site):
        page = browser_context.open(f"{server}/{rel}")
        assert page.locator("div.body").count() == 1, rel
        assert page.locator("h1").count() >= 1, rel
        page.close()
    assert browser_context.blocked == [], browser_context.blocked
    assert browser_context.errors == [], browser_context.errors
    assert not [u for u in browser_context.failed if "127.0.0.1" in u], browser_context.failed


def drawn(page: Any) -> list[dict[str, Any]]:
    """Every viewer on the page: the step it shows and the sessions its heap draws."""
    return list(
        page.evaluate(
            """() => [...document.querySelectorAll('.sesskit-viewer')].map(v => ({
                step: v.dataset.step,
                sessions: Object.fromEntries([...v.querySelectorAll('[data-session]')].map(
                    s => [s.dataset.session, [s.dataset.refcount, s.dataset.cache, s.dataset.freed]])),
                why: (v.querySelector('[data-role=why]') || {}).textContent}))"""
        )
    )


def test_notebook_pages_draw_their_viewers_without_a_kernel(
    site: Path, server: str, browser_context: Offline
) -> None:
    page = browser_context.open(f"{server}/notebooks/01_tour.html")
    page.locator(".sesskit-viewer").first.wait_for(state="visible", timeout=20000)
    viewers = drawn(page)
    mounts = page.locator(".sesskit-static-mount").count()
    assert mounts >= 2 and len(viewers) == mounts  # lab.show() and the stepper's picture
    shown = viewers[0]
    assert shown["sessions"] and shown["why"], shown
    # it steps without a kernel: the first step, then back to the last
    first = page.locator(".sesskit-viewer").first
    first.focus()
    page.keyboard.press("Home")
    assert drawn(page)[0]["step"] == "0" and drawn(page)[0]["sessions"] == {}
    page.keyboard.press("End")
    assert drawn(page)[0] == shown
    page.screenshot(path=str(site.parent / "01_tour.png"), full_page=False)
    page.close()
    assert browser_context.blocked == [], browser_context.blocked
    assert browser_context.errors == [], browser_context.errors


def test_math_is_typeset_by_the_local_mathjax(site: Path, server: str, browser_context: Offline) -> None:
    page = browser_context.open(f"{server}/index.html")
    page.locator("mjx-container").first.wait_for(state="attached", timeout=15000)
    page.close()
    assert any("/_static/vendor/mathjax/" in u for u in browser_context.local)
    assert browser_context.blocked == [], browser_context.blocked


def test_a_story_page_steps_and_matches_its_trace(site: Path, server: str, browser_context: Offline) -> None:
    (trace_json,) = (site / "_downloads").rglob("tour.json")
    trace = sesskit.Trace.from_json(trace_json.read_text())
    page = browser_context.open(f"{server}/stories/tour.html#step=3")
    page.locator(".sesskit-viewer").first.wait_for(state="visible", timeout=10000)
    (viewer,) = drawn(page)
    assert viewer["step"] == "3"
    snap = trace.snapshot(3)
    live = {k: [str(s.refcount), s.cache or "none", "false"] for k, s in snap.sessions.items() if not s.freed}
    assert {k: v for k, v in viewer["sessions"].items() if v[2] == "false"} == live
    assert viewer["why"] == trace[3].why
    page.screenshot(path=str(site.parent / "tour_story.png"), full_page=False)
    page.close()
    assert browser_context.blocked == [], browser_context.blocked
    assert browser_context.errors == [], browser_context.errors
