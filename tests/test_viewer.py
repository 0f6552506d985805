"""The viewer in a real browser: static pages opened from file://, with no network at all.

Every page here is written by :func:`sesskit.viewer.page.page` (or by
``python -m sesskit render``) into a temporary folder and opened from
``file://`` in Debian's Chromium through Playwright (never ``playwright
install``).  Every request that is not ``file:``, ``blob:``, ``data:`` or
``about:`` is aborted and recorded, and each test asserts there were none.

What is checked is the viewer's DOM contract (``sesskit/viewer/__init__.py``)
against the trace as Python folds it (:meth:`sesskit.Trace.snapshot`): at
every step of every built-in story, reached with the keyboard and with the
slider; the URL fragment (``#step=N``, one key per viewer, never written inside
Jupyter); text from a trace shown as text; readable sizes, no sideways
scrolling on a phone, dark mode; a crowded heap whose boxes do not overlap.

Screenshots go to ``tests/artifacts/`` (light and dark, 1024 and 375 px wide).
Locally the tests skip when Chromium or Playwright is missing; in CI
(``CI=true``) they fail instead.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import engine_unavailable
from headless import CHROMIUM, CHROMIUM_ARGS, require_browser

import sesskit
from sesskit import scenarios
from sesskit.trace import Trace
from sesskit.viewer.page import fragment, page

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LOCAL_SCHEMES = ("file:", "blob:", "data:", "about:")
DRAW_TIMEOUT = 15_000  # ms: the module imported and the first step drawn
STEP_TIMEOUT = 5_000  # ms: one move shown
PAGE_BUDGET = 200 * 1024  # bytes: a story's page
MIN_TEXT_PX = 11
PAYLOAD = '<img src=x onerror="window.__pwned=1">'
CROWD = 300  # live sessions in the crowded heap


def story_engine() -> str:
    return "model" if engine_unavailable("libssl") else "libssl"


# -- the browser -----------------------------------------------------------------------------------
class Tab:
    """One page in its own context: every request outside the file system aborted and recorded."""

    def __init__(self, browser: Any, width: int, height: int, scheme: str) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", self._request)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("console", self._console)
        self.page.on("websocket", lambda ws: self.requests.append(f"websocket {ws.url}"))

    def _route(self, route: Any) -> None:
        if route.request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            route.abort()

    def _request(self, request: Any) -> None:
        if not request.url.startswith(LOCAL_SCHEMES):
            self.requests.append(request.url)

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text}")

    def open(self, path: Path, fragment_: str = "") -> Any:
        self.page.goto(path.resolve().as_uri() + fragment_, wait_until="load")
        self.page.wait_for_selector(".sesskit-viewer[data-step]", state="attached", timeout=DRAW_TIMEOUT)
        return self.page

    def clean(self) -> None:
        """No request left the file system, nothing failed in the page."""
        assert self.requests == [], f"requests outside file://: {self.requests}"
        assert self.errors == [], self.errors

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        out = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(out), full_page=True)
        return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def tabs(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``tabs(width=1024, height=768, scheme="light")``: a new Tab; a screenshot of each on failure."""
    made: list[Tab] = []

    def make(width: int = 1024, height: int = 768, scheme: str = "light") -> Tab:
        tab = Tab(browser, width, height, scheme)
        made.append(tab)
        return tab

    failures = request.session.testsfailed
    yield make
    failed = request.session.testsfailed > failures  # the call's report is in before teardown
    for i, tab in enumerate(made):
        if failed and tab.page.url != "about:blank":  # keep what the browser showed
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            print(f"screenshot of the failure: {tab.shot(f'failed-{name}-{i}')}")
        tab.context.close()


def write_page(tmp_path: Path, trace: Trace, name: str = "story", title: str = "sesskit") -> Path:
    out = tmp_path / f"{name}.html"
    out.write_text(page(trace, title, "A story, for the tests."), encoding="utf-8")
    return out


# -- reading the viewer ----------------------------------------------------------------------------
# One evaluate per step: wait (frame by frame) until the k-th viewer shows step `want`, then read it all.
READ = """async ([k, want, timeout]) => {
  const root = () => document.querySelectorAll('.sesskit-viewer')[k];
  const t0 = performance.now();
  while (want !== null && (!root() || root().dataset.step !== String(want))) {
    if (performance.now() - t0 > timeout) break;
    await new Promise(r => requestAnimationFrame(r));
  }
  const v = root();
  if (!v) return null;
  const all = sel => [...v.querySelectorAll(sel)];
  const why = v.querySelector('[data-role=why]');
  const slider = v.querySelectorAll('input[type=range]');
  return {
    step: v.dataset.step,
    sessions: all('[data-session]').map(e => ({label: e.dataset.session, refcount: e.dataset.refcount,
      cache: e.dataset.cache, freed: e.dataset.freed})),
    why: why ? why.textContent : null,
    whys: all('[data-role=why]').length,
    sliders: slider.length,
    slider: slider.length ? {value: slider[0].value, min: slider[0].min, max: slider[0].max} : null,
    strips: all('[data-cache-side]').map(e => ({side: e.dataset.cacheSide, size: e.dataset.size,
      members: [...e.querySelectorAll('[data-member]')].map(m => m.dataset.member)})),
    ssls: all('[data-ssl]').map(e => ({name: e.dataset.ssl, pointsTo: e.dataset.pointsTo ?? null,
      freed: e.dataset.freed ?? null})),
    refs: all('[data-ref]').map(e => ({id: e.dataset.ref, kind: e.dataset.kind ?? null,
      dangling: e.dataset.dangling ?? null})),
    items: all('[data-role=step-item]').map(e => ({index: e.dataset.index, text: e.textContent,
      current: e.getAttribute('aria-current')})),
    imgs: all('img').length,
    pwned: window.__pwned === undefined ? null : String(window.__pwned),
    hash: location.hash,
    historyLength: history.length,
  };
}"""


def read(pg: Any, want: int | None = None, k: int = 0) -> dict[str, Any]:
    state = pg.evaluate(READ, [k, want, STEP_TIMEOUT])
    assert state is not None, f"no viewer #{k} on the page"
    return dict(state)


def check_step(state: dict[str, Any], trace: Trace, data: dict[str, Any], i: int, where: str) -> None:
    """The DOM shows step ``i`` of ``trace`` exactly as Python folds it."""
    at = f"{where}, step {i} ({data['steps'][i]['op']} {data['steps'][i]['target']})"
    snap = trace.snapshot(i)
    assert state["step"] == str(i), f"{at}: data-step={state['step']}"
    assert state["why"] == data["steps"][i]["why"], f"{at}: the why"
    assert state["whys"] == 1, f"{at}: {state['whys']} [data-role=why]"
    assert state["sliders"] == 1, f"{at}: {state['sliders']} sliders"
    assert state["slider"]["value"] == str(i), f"{at}: slider at {state['slider']}"
    shown: dict[str, dict[str, str]] = {}
    for s in state["sessions"]:
        assert s["label"] not in shown, f"{at}: session {s['label']} drawn twice"
        shown[s["label"]] = s
    for label, sess in snap.live_sessions().items():
        assert label in shown, f"{at}: live session {label} missing"
        got = shown[label]
        want = {"refcount": str(sess.refcount), "cache": sess.cache or "none", "freed": "false"}
        assert {k: got[k] for k in want} == want, f"{at}: session {label}"
    for label, got in shown.items():
        if label in snap.live_sessions():
            continue
        assert label in snap.sessions, f"{at}: session {label} drawn before it exists"
        assert (got["freed"], got["refcount"]) == ("true", "0"), f"{at}: freed session {label} shown as {got}"
    items = {it["index"]: it for it in state["items"]}  # a window of the list (it is virtualised)
    assert str(i) in items, f"{at}: the step list does not show the current step"
    assert data["steps"][i]["op"] in items[str(i)]["text"], f"{at}: step list item {items[str(i)]}"
    current = [it["index"] for it in state["items"] if it["current"]]
    assert current == [str(i)], f"{at}: step list marks {current} as current (aria-current)"
    for strip in state["strips"]:
        cache = snap.caches[strip["side"]]
        assert strip["size"] == str(cache.size), f"{at}: {strip['side']} cache size"
        assert strip["members"] == list(cache.members), f"{at}: {strip['side']} cache order"
    for ssl in state["ssls"]:
        assert ssl["name"] in snap.ssls, f"{at}: SSL {ssl['name']} drawn before it exists"
        if ssl["pointsTo"] is not None:
            assert ssl["pointsTo"] == (snap.ssls[ssl["name"]].session or ""), f"{at}: SSL {ssl['name']}"
        if ssl["freed"] is not None:
            assert ssl["freed"] == str(snap.ssls[ssl["name"]].freed).lower(), f"{at}: SSL {ssl['name']} freed"
    for ref in state["refs"]:
        r = snap.refs[int(ref["id"])]
        if ref["kind"] is not None:
            assert ref["kind"] == r.kind, f"{at}: ref {ref['id']} kind"
        if ref["dangling"] is not None:
            assert ref["dangling"] == str(r.dangling).lower(), f"{at}: ref {ref['id']} dangling"


def set_slider(pg: Any, value: int, k: int = 0) -> None:
    pg.evaluate(
        """([k, v]) => {
          const s = document.querySelectorAll('.sesskit-viewer')[k].querySelector('input[type=range]');
          s.value = String(v);
          s.dispatchEvent(new Event('input', {bubbles: true}));
          s.dispatchEvent(new Event('change', {bubbles: true}));
        }""",
        [k, value],
    )


def focus(pg: Any, k: int = 0) -> None:
    pg.locator(".sesskit-viewer").nth(k).focus()


# -- every step of every story ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def stories() -> dict[str, Trace]:
    return {name: scenarios.run(name, story_engine()) for name in scenarios.SCENARIOS}


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_every_step_matches_the_trace_by_keyboard_and_slider(
    name: str, stories: dict[str, Trace], tabs: Any, tmp_path: Path
) -> None:
    trace = stories[name]
    data = trace.to_dict()
    tab = tabs()
    pg = tab.open(write_page(tmp_path, trace, name, scenarios.get(name).title))
    n = len(trace)
    first = read(pg)
    check_step(first, trace, data, int(first["step"]), "as opened")
    assert first["slider"]["min"] == "0" and first["slider"]["max"] == str(n - 1)
    # the keyboard, one step at a time from the first
    focus(pg)
    pg.keyboard.press("Home")
    check_step(read(pg, 0), trace, data, 0, "Home")
    for i in range(1, n):
        pg.keyboard.press("ArrowRight")
        check_step(read(pg, i), trace, data, i, "→")
    # the slider, backwards and in jumps (every state folded from wherever the viewer was)
    order = list(range(n - 1, -1, -1)) + [(i * 7) % n for i in range(n)]
    for i in order:
        set_slider(pg, i)
        check_step(read(pg, i), trace, data, i, "slider")
    tab.clean()


# -- command line pages ----------------------------------------------------------------------------
def render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sesskit", "render", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_rendered_tour_is_small_opens_from_file_and_draws(tmp_path: Path, tabs: Any) -> None:
    out = tmp_path / "tour.html"
    r = render("tour", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size <= PAGE_BUDGET, f"{out.stat().st_size} bytes"
    tab = tabs()
    pg = tab.open(out)
    state = read(pg)
    trace = scenarios.run("tour", story_engine())
    data = trace.to_dict()
    check_step(state, trace, data, int(state["step"]), "render tour")
    assert state["sessions"], "no session drawn"
    assert pg.locator(".sesskit-viewer").first.bounding_box()["height"] > 100
    tab.clean()


def test_rendered_saved_trace_draws(tmp_path: Path, tabs: Any) -> None:
    trace = scenarios.run("clean-vs-dirty-close", "model")
    saved = tmp_path / "saved.json"
    saved.write_text(trace.to_json())
    out = tmp_path / "saved.html"
    r = render(str(saved), "--out", str(out))
    assert r.returncode == 0, r.stderr
    tab = tabs()
    pg = tab.open(out, "#step=5")
    check_step(read(pg, 5), trace, trace.to_dict(), 5, "saved trace, #step=5")
    tab.clean()


# -- the URL fragment ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tour() -> Trace:
    return scenarios.run("tour", story_engine())


def test_hash_opens_a_step_follows_hashchange_and_the_slider_replaces_it(
    tour: Trace, tmp_path: Path, tabs: Any
) -> None:
    data = tour.to_dict()
    tab = tabs()
    pg = tab.open(write_page(tmp_path, tour), "#step=3")
    check_step(read(pg, 3), tour, data, 3, "#step=3")
    pg.evaluate("location.hash = '#step=7'")
    check_step(read(pg, 7), tour, data, 7, "hashchange to #step=7")
    length = pg.evaluate("history.length")
    set_slider(pg, 10)
    state = read(pg, 10)
    check_step(state, tour, data, 10, "slider")
    assert state["hash"] == "#step=10", state["hash"]
    focus(pg)
    pg.keyboard.press("ArrowLeft")
    state = read(pg, 9)
    assert state["hash"] == "#step=9", state["hash"]
    assert state["historyLength"] == length, "a move added a history entry (replaceState expected)"
    # a reload opens where the reader was
    pg.reload(wait_until="load")
    pg.wait_for_selector(".sesskit-viewer[data-step]", state="attached", timeout=DRAW_TIMEOUT)
    check_step(read(pg, 9), tour, data, 9, "reload at #step=9")
    tab.clean()


def test_a_bad_hash_is_ignored(tour: Trace, tmp_path: Path, tabs: Any) -> None:
    tab = tabs()
    for k, bad in enumerate(("#step=999", "#step=-5", "#step=abc", "#step=", "#other=3")):
        pg = tab.open(write_page(tmp_path, tour, f"bad{k}"), bad)  # a new document each time
        state = read(pg)
        assert 0 <= int(state["step"]) < len(tour), (bad, state["step"])
        check_step(state, tour, tour.to_dict(), int(state["step"]), f"opened with {bad}")
    tab.clean()


def two_viewer_page(tmp_path: Path, first: Trace, second: Trace) -> Path:
    out = tmp_path / "two.html"
    out.write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>two</title></head><body>\n'
        f"<h1>Two viewers</h1>\n{fragment(first, 'step', 'first')}<p>between</p>\n"
        f"{fragment(second, 'step2', 'second')}</body></html>\n",
        encoding="utf-8",
    )
    return out


def test_two_viewers_on_a_page_keep_their_own_keys(tour: Trace, tmp_path: Path, tabs: Any) -> None:
    other = scenarios.run("get0-vs-get1", story_engine())
    tab = tabs()
    pg = tab.open(two_viewer_page(tmp_path, tour, other), "#step=4&step2=2")
    pg.wait_for_function("document.querySelectorAll('.sesskit-viewer[data-step]').length === 2")
    check_step(read(pg, 4, 0), tour, tour.to_dict(), 4, "first viewer, #step=4")
    check_step(read(pg, 2, 1), other, other.to_dict(), 2, "second viewer, step2=2")
    set_slider(pg, 6, k=1)
    state = read(pg, 6, 1)
    check_step(state, other, other.to_dict(), 6, "second viewer moved")
    assert "step2=6" in state["hash"] and re.search(r"(^#|&)step=4(&|$)", state["hash"]), state["hash"]
    check_step(read(pg, 4, 0), tour, tour.to_dict(), 4, "first viewer untouched")
    set_slider(pg, 8, k=0)
    state = read(pg, 8, 0)
    assert re.search(r"(^#|&)step=8(&|$)", state["hash"]) and "step2=6" in state["hash"], state["hash"]
    check_step(read(pg, 6, 1), other, other.to_dict(), 6, "second viewer untouched")
    tab.clean()


# Change the fragment, wait for the hashchange event and two frames, return the viewer's step.
HASHCHANGE = """async (hash) => {
  const changed = new Promise(r => window.addEventListener('hashchange', r, {once: true}));
  location.hash = hash;
  await changed;
  for (let i = 0; i < 2; i++) await new Promise(r => requestAnimationFrame(r));
  return document.querySelector('.sesskit-viewer').dataset.step;
}"""


def test_without_a_hash_key_the_url_is_never_written(tour: Trace, tmp_path: Path, tabs: Any) -> None:
    """A viewer with no hash key (inside Jupyter) neither reads nor writes location."""
    out = tmp_path / "nokey.html"
    out.write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"></head><body>'
        f"{fragment(tour, None)}</body></html>\n",
        encoding="utf-8",
    )
    tab = tabs()
    pg = tab.open(out, "#keep=1")
    length = pg.evaluate("history.length")
    set_slider(pg, 2)
    read(pg, 2)
    focus(pg)
    pg.keyboard.press("ArrowRight")
    state = read(pg, 3)
    assert state["hash"] == "#keep=1" and state["historyLength"] == length
    moved = pg.evaluate(HASHCHANGE, "#step=9")  # a viewer with a key would move on this event
    assert moved == "3", "a viewer without a hash key followed the URL"
    tab.clean()


def test_copy_link_control_copies_this_steps_link(tour: Trace, tmp_path: Path, tabs: Any) -> None:
    tab = tabs()
    tab.context.grant_permissions(["clipboard-read", "clipboard-write"])
    pg = tab.open(write_page(tmp_path, tour), "#step=6")
    read(pg, 6)
    control = pg.locator(".sesskit-viewer").first.get_by_role(
        "button", name=re.compile(r"\bcopy\b.*\blink\b", re.I)
    )
    if control.count() == 0:
        control = pg.locator(".sesskit-viewer").first.get_by_role("link", name=re.compile("link", re.I))
    assert control.count() == 1, "no 'copy link' control"
    control.click()
    copied = pg.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("file://") and copied.endswith("#step=6"), copied
    tab.clean()


# -- the keyboard ----------------------------------------------------------------------------------
def test_keyboard_moves_within_the_trace(tour: Trace, tmp_path: Path, tabs: Any) -> None:
    data = tour.to_dict()
    last = len(tour) - 1
    tab = tabs()
    pg = tab.open(write_page(tmp_path, tour), "#step=5")
    read(pg, 5)
    root = pg.locator(".sesskit-viewer").first
    assert root.evaluate("e => e.tabIndex >= 0"), "the viewer is not focusable"
    focus(pg)
    for key, want in [
        ("ArrowRight", 6),
        ("ArrowLeft", 5),
        ("End", last),
        ("ArrowRight", last),
        ("Home", 0),
        ("ArrowLeft", 0),
    ]:
        pg.keyboard.press(key)
        check_step(read(pg, want), tour, data, want, key)
    tab.clean()


def test_clicking_a_step_in_the_list_shows_it(tour: Trace, tmp_path: Path, tabs: Any) -> None:
    tab = tabs()
    pg = tab.open(write_page(tmp_path, tour), "#step=2")
    read(pg, 2)
    pg.locator(".sesskit-viewer [data-role=step-item][data-index='9']").click()
    state = read(pg, 9)
    check_step(state, tour, tour.to_dict(), 9, "clicked step 9 in the list")
    assert state["hash"] == "#step=9"
    tab.clean()


# -- text is text ----------------------------------------------------------------------------------
def renamed(value: Any, old: str, new: str) -> Any:
    """``value`` with every string ``old`` (and every key ``old``) replaced by ``new``."""
    if isinstance(value, dict):
        return {(new if k == old else k): renamed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v, old, new) for v in value]
    return new if value == old else value


def test_text_from_a_trace_is_shown_as_text(tour: Trace, tmp_path: Path, tabs: Any) -> None:
    data = tour.to_dict()
    first = next(s for s in data["steps"] if s["changes"].get("sessions"))
    label = next(iter(first["changes"]["sessions"]))
    data = renamed(data, label, f"S{PAYLOAD}")
    data["steps"][2]["why"] = f"why {PAYLOAD} whole"
    data["steps"][3]["target"] = f"target {PAYLOAD}"
    data["meta"]["openssl_version"] = f"OpenSSL {PAYLOAD}"
    evil = Trace.from_dict(data)
    evil_data = evil.to_dict()
    tab = tabs()
    pg = tab.open(write_page(tmp_path, evil, "evil", f"title {PAYLOAD}"))
    focus(pg)
    pg.keyboard.press("Home")
    for i in range(len(evil)):
        if i:
            pg.keyboard.press("ArrowRight")
        state = read(pg, i)
        check_step(state, evil, evil_data, i, "evil trace")
        assert state["imgs"] == 0 and state["pwned"] is None, f"step {i}: markup from the trace ran"
    set_slider(pg, 3)
    read(pg, 3)
    text = pg.locator(".sesskit-viewer").first.text_content() or ""
    assert f"target {PAYLOAD}" in text, "the target is not shown literally"
    assert f"OpenSSL {PAYLOAD}" in text, "meta.openssl_version is not shown literally"
    shown_labels = {s["label"] for s in read(pg)["sessions"]}
    assert f"S{PAYLOAD}" in shown_labels
    assert pg.evaluate("document.querySelectorAll('img').length") == 0
    assert pg.evaluate("window.__pwned") is None
    assert PAYLOAD in pg.title()
    tab.clean()


# -- sizes, phones, dark mode ----------------------------------------------------------------------
# Every element of the viewer that shows text, with its size in CSS px as drawn (SVG text: its font size
# times the scale its coordinate system is drawn at).
TEXT_SIZES = """() => {
  const out = [];
  for (const v of document.querySelectorAll('.sesskit-viewer')) {
    for (const el of [v, ...v.querySelectorAll('*')]) {
      const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
      if (!own || !el.checkVisibility({visibilityProperty: true, opacityProperty: true})) continue;
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      let px = parseFloat(getComputedStyle(el).fontSize);
      if (el instanceof SVGElement && el.getScreenCTM()) px *= Math.abs(el.getScreenCTM().d);
      out.push({tag: el.tagName, text: el.textContent.trim().slice(0, 40), px: Math.round(px * 10) / 10});
    }
  }
  return out;
}"""

LAYOUT = [(w, h, scheme) for (w, h) in ((1024, 768), (375, 800)) for scheme in ("light", "dark")]


def crowded_trace() -> Trace:
    """A model lab with at least CROWD live sessions: some borrowed, some taken, a few freed."""
    lab = sesskit.Lab(engine="model", tls="1.2", tickets=False)
    links = [lab.connect() for _ in range(CROWD // 2 + 10)]
    for link in links[:20]:
        link.client.get0_session()
    refs = [link.client.get1_session() for link in links[20:40]]
    for link in links[10:20]:  # their get0 pointers dangle
        link.client.free()
    for ref in refs[:5]:
        ref.free()
    trace = lab.trace
    lab.close()
    assert len(trace.snapshot().live_sessions()) >= CROWD
    return trace


@pytest.fixture(scope="module")
def crowded() -> Trace:
    return crowded_trace()


@pytest.mark.parametrize(("width", "height", "scheme"), LAYOUT, ids=[f"{w}-{s}" for w, _, s in LAYOUT])
def test_tour_layout(tour: Trace, tmp_path: Path, tabs: Any, width: int, height: int, scheme: str) -> None:
    tab = tabs(width, height, scheme)
    pg = tab.open(write_page(tmp_path, tour, "tour", scenarios.get("tour").title))
    last = len(tour) - 1
    for i in (0, last // 2, last):
        set_slider(pg, i)
        read(pg, i)
        wide = pg.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert wide[0] <= wide[1], f"step {i}: sideways scrolling at {width} px ({wide[0]} > {wide[1]})"
        if width == 1024:
            small = [t for t in pg.evaluate(TEXT_SIZES) if t["px"] < MIN_TEXT_PX]
            assert not small, f"step {i}: text under {MIN_TEXT_PX} px: {small[:8]}"
    set_slider(pg, last // 2)
    read(pg, last // 2)
    tab.shot(f"tour-{width}-{scheme}")
    tab.clean()


def rgb(css: str) -> tuple[float, float, float, float]:
    m = re.fullmatch(r"rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)", css.strip())
    assert m, f"a colour the test cannot read: {css}"
    r, g, b = (float(x) for x in m.groups()[:3])
    return r, g, b, float(m.group(4) or 1)


def luminance(c: tuple[float, float, float, float]) -> float:
    def lin(v: float) -> float:
        v /= 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])


def contrast(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# The why's text colour and the first opaque background behind it.
COLOURS = """() => {
  const why = document.querySelector('.sesskit-viewer [data-role=why]');
  let el = why, bg = 'rgba(0, 0, 0, 0)';
  while (el) {
    const c = getComputedStyle(el).backgroundColor;
    if (!/^rgba\\(.*,\\s*0\\)$/.test(c) && c !== 'transparent') { bg = c; break; }
    el = el.parentElement;
  }
  if (bg === 'rgba(0, 0, 0, 0)') bg = 'rgb(255, 255, 255)';  // the canvas: white unless a page paints it
  return {text: getComputedStyle(why).color, background: bg};
}"""


def test_dark_mode_follows_the_system(tour: Trace, tmp_path: Path, tabs: Any) -> None:
    path = write_page(tmp_path, tour)
    seen = {}
    for scheme in ("light", "dark"):
        tab = tabs(scheme=scheme)
        pg = tab.open(path)
        read(pg)
        colours = pg.evaluate(COLOURS)
        text, bg = rgb(colours["text"]), rgb(colours["background"])
        assert contrast(text, bg) >= 4.5, f"{scheme}: why {colours} contrast {contrast(text, bg):.2f}"
        seen[scheme] = (text, bg)
        tab.clean()
    assert seen["light"][0] != seen["dark"][0], "the text colour does not follow the dark scheme"
    assert seen["light"][1] != seen["dark"][1], "the background does not follow the dark scheme"
    assert luminance(seen["dark"][1]) < luminance(seen["light"][1])


# -- a crowded heap --------------------------------------------------------------------------------
BOXES = """() => {
  const v = document.querySelector('.sesskit-viewer');
  const boxes = [];
  for (const e of v.querySelectorAll('[data-session]')) {
    if (!e.checkVisibility({visibilityProperty: true, opacityProperty: true})) continue;
    const r = e.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) continue;
    boxes.push({label: e.dataset.session, x: r.left, y: r.top, w: r.width, h: r.height});
  }
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    const dx = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
    const dy = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
    if (dx > 0.5 && dy > 0.5) overlaps.push([a.label, b.label]);
  }
  return {visible: boxes.length, overlaps: overlaps.slice(0, 10), count: overlaps.length};
}"""


@pytest.mark.parametrize(("width", "height", "scheme"), LAYOUT, ids=[f"{w}-{s}" for w, _, s in LAYOUT])
def test_crowded_heap(
    crowded: Trace, tmp_path: Path, tabs: Any, width: int, height: int, scheme: str
) -> None:
    tab = tabs(width, height, scheme)
    pg = tab.open(write_page(tmp_path, crowded, "crowded", "A crowded heap"))
    last = len(crowded) - 1
    set_slider(pg, last)
    state = read(pg, last)
    check_step(state, crowded, crowded.to_dict(), last, "crowded heap")
    boxes = pg.evaluate(BOXES)
    assert boxes["visible"] > 0, "no session box visible"
    assert boxes["count"] == 0, f"{boxes['count']} overlapping session boxes, e.g. {boxes['overlaps']}"
    if width == 1024:
        small = [t for t in pg.evaluate(TEXT_SIZES) if t["px"] < MIN_TEXT_PX]
        assert not small, f"text under {MIN_TEXT_PX} px: {small[:8]}"
    wide = pg.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert wide[0] <= wide[1], f"sideways scrolling at {width} px ({wide[0]} > {wide[1]})"
    tab.shot(f"crowded-{width}-{scheme}")
    tab.clean()


def test_the_page_carries_the_trace_as_data_not_markup(tour: Trace, tmp_path: Path) -> None:
    data = tour.to_dict()
    data["steps"][1]["why"] = "</script><script>window.__pwned=1</script>"
    html = page(Trace.from_dict(data), "t")
    assert "</script><script>window.__pwned" not in html
    (blob,) = re.findall(r'<script type="application/json">(.*?)</script>', html, re.S)
    assert json.loads(blob)["steps"][1]["why"] == data["steps"][1]["why"]
