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

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docsite import ROOT, Offline, built_site, serve
from headless import CHROMIUM, CHROMIUM_ARGS, require_browser

import sesskit

__all__ = ["Offline"]  # tests/test_app.py opens its pages with it too

BUILD_SECONDS_BUDGET = 240
# Try it's Python runtime (Pyodide, vendored from npm): loaded only when Try it is clicked, so it is
# weighed apart from the site (tests/test_tryit.py checks it is the pinned runtime and nothing more).
PYODIDE = Path("_static") / "vendor" / "pyodide"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built from scratch (every notebook executed, every story recorded), once per run."""
    return built_site(tmp_path_factory)


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    with serve(site) as url:
        yield url


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
    """The site <= 15 MiB and each story page <= 200 KB, not counting Try it's Python runtime.

    Pyodide (about 13 MiB, ``_static/vendor/pyodide/``) is fetched only when a reader clicks Try it;
    it is weighed apart (and must stay the few runtime files it is, <= 16 MiB).
    """
    files = [p for p in site.rglob("*") if p.is_file()]
    runtime = sum(p.stat().st_size for p in files if p.relative_to(site).is_relative_to(PYODIDE))
    total = sum(p.stat().st_size for p in files) - runtime
    print(f"\nsite: {total / 2**20:.1f} MiB, and Try it's Python runtime {runtime / 2**20:.1f} MiB")
    assert total <= 15 * 2**20, f"the site weighs {total / 2**20:.1f} MiB"
    assert runtime <= 16 * 2**20, f"the Pyodide runtime weighs {runtime / 2**20:.1f} MiB"
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
