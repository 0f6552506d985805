"""Try it in the docs: a story's static viewer becomes a Stepper on the model engine, Python in the page.

The Stepper's logic (:mod:`sesskit.stepcore`) runs unchanged in Pyodide, so it must need nothing but the
standard library, and it must replay every story recorded on the real engine exactly.  Then the built
site is served on 127.0.0.1 and opened in headless Chromium: Try it on the tour, five operations, each
drawn refcount and cache checked against the same program run by the model here; no request leaves
127.0.0.1; from file:// it explains and the static viewer keeps working; a trace downloads as JSON that
``Trace.from_json`` loads; the page's address reopens the same state in a fresh browser; a double click
is one operation; a trace that replays differently is refused, saying which step.

Needs npm (the docs build vendors Pyodide with npm pack) and /usr/bin/chromium; in CI (CI=true) a missing
one fails the test, elsewhere it skips.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docsite import ROOT, Offline, built_site, serve
from headless import CHROMIUM, CHROMIUM_ARGS, require_browser

import sesskit
from sesskit import scenarios
from sesskit.stepcore import StepperCore, replay_step

READY = 120_000  # ms: generous for a loaded CI machine (benchmarks/bench_tryit.py holds the speed figures)


# -- the core, in Python -----------------------------------------------------------------------------
def test_the_stepper_core_and_the_model_need_only_the_standard_library() -> None:
    code = r"""
import sys
for m in ("cffi", "_cffi_backend", "cryptography", "OpenSSL", "ssl", "_ssl", "traitlets", "anywidget",
          "ipywidgets", "matplotlib", "numpy"):
    sys.modules[m] = None  # importing any of them fails
import sesskit
from sesskit.stepcore import StepperCore
sent = []
core = StepperCore(sesskit.Lab(engine="model"), sent.append)
for op in ("connect", "get1", "free", "session-free", "flush", "undo", "reset"):
    acts_on = "ref:1" if op == "session-free" else None
    core.handle({"type": "op", "op": op, "seq": core._seq, "acts_on": acts_on})
loaded = {m.split(".")[0] for m, mod in sys.modules.items() if mod is not None}
third = loaded - set(sys.stdlib_module_names) - {"sesskit", "__main__"}
print(sorted(third), [m["type"] for m in sent].count("ui"), core.error or "ok")
"""
    # -S: no site-packages at all (sesskit is imported from the checkout, as Pyodide gets it)
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "8", "ok"], out.stdout


@pytest.mark.parametrize("name", list(scenarios.SCENARIOS))
def test_every_story_replays_on_the_model_exactly_as_recorded(name: str) -> None:
    trace = scenarios.get(name).run("auto")  # the real engine when there is one, as the docs build does
    sent: list[dict[str, Any]] = []
    with sesskit.Lab(engine="model", **trace.meta["config"]) as lab:
        core = StepperCore(lab, sent.append, publish=False)
        core.replay(json.loads(trace.to_json())["steps"])
        replayed = [{**s.to_dict(), "why": ""} for s in core.lab.trace]
        assert replayed == [{**s.to_dict(), "why": ""} for s in trace]
        assert [m["type"] for m in sent] == ["show", "ui"]
        assert sent[0]["trace"] == core.lab.trace.to_dict() and sent[1]["ui"]["seq"] == 0
        core.lab.close()


def test_a_trace_that_replays_differently_is_refused_saying_which_step() -> None:
    trace = scenarios.get("tour").run("model")
    steps = json.loads(trace.to_json())["steps"]
    state = steps[3]["changes"]["sessions"]["S1"]  # SSL_get1_session(c1): S1 1 -> 2
    state["refcount"] += 1
    with sesskit.Lab(engine="model", **trace.meta["config"]) as lab:
        core = StepperCore(lab, [].append, publish=False)
        with pytest.raises(
            sesskit.InvalidOperation, match=r"step 3 \(SSL_get1_session c1\) replays differently"
        ):
            core.replay(steps)
        assert core.lab is lab and not lab._closed  # the lab driven stays as it was


def worker_session() -> Any:
    """The Python that tryit_worker.js runs in Pyodide (its BOOT text), run here by CPython."""
    js = (ROOT / "sesskit" / "viewer" / "tryit_worker.js").read_text(encoding="utf-8")
    boot = js.split("const BOOT = `", 1)[1].split("`;", 1)[0]
    scope: dict[str, Any] = {}
    exec(compile(boot, "tryit_worker.js BOOT", "exec"), scope)
    return scope["Session"]


def test_the_worker_rebuilds_the_pages_lab_with_every_setting_its_trace_records() -> None:
    # not the defaults: a server without a session id context that verifies its peer, TLS 1.2, a client cache
    with sesskit.Lab(
        engine="model",
        tls="1.2",
        tickets=False,
        client_cache=True,
        cache_size=7,
        timeout=99,
        server_sid_ctx=None,
        verify_peer=True,
    ) as lab:
        c1 = lab.connect()
        c1.client.get1_session()
        trace = json.loads(lab.trace.to_json())
    sent: list[dict[str, Any]] = []
    session = worker_session()(
        lambda text: sent.append(json.loads(text)), json.dumps(trace), len(trace["steps"]), "[]"
    )
    assert session.core.lab.trace.meta["config"] == trace["meta"]["config"]
    assert [{**s.to_dict(), "why": ""} for s in session.core.lab.trace] == [
        {**s, "why": ""} for s in trace["steps"]
    ]
    assert [m["type"] for m in sent] == ["show", "ui"]


# -- the built site ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_site(tmp_path_factory)


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    with serve(site) as url:
        yield url


def test_the_site_ships_the_checkouts_python_and_the_pinned_pyodide(site: Path) -> None:
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        from sesskit_docs import NPM, python_files
    finally:
        sys.path.pop(0)
    with zipfile.ZipFile(site / "_static" / "sesskit" / "sesskit-py.zip") as z:
        shipped = {name: z.read(name) for name in z.namelist()}
    checkout = {str(p.relative_to(ROOT)): p.read_bytes() for p in python_files()}
    assert "sesskit/stepcore.py" in checkout and "sesskit/engines/model.py" in checkout
    assert shipped == checkout  # the very files of this checkout, nothing else
    for name in ("tryit.js", "tryit_worker.js"):
        assert (site / "_static" / "sesskit" / name).read_bytes() == (
            ROOT / "sesskit" / "viewer" / name
        ).read_bytes()
    runtime = site / "_static" / "vendor" / "pyodide"
    assert json.loads((runtime / "package.json").read_text())["version"] == NPM["pyodide"][0]
    for name in (
        "pyodide.mjs",
        "pyodide.asm.mjs",
        "pyodide.asm.wasm",
        "python_stdlib.zip",
        "pyodide-lock.json",
    ):
        assert (runtime / name).is_file(), name
    for name in [*scenarios.SCENARIOS, "../playground"]:
        text = (site / "stories" / f"{name}.html").read_text()
        assert text.count('class="sesskit-tryit"') == 1, name
        assert "model of OpenSSL 3.0, held to libssl 3.0 by the test suite" in text, name
        assert "mybinder.org" in text, name  # where the real OpenSSL runs


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def offline(browser: Any) -> Iterator[Offline]:
    """A fresh context (a cold cache: another browser, as far as the page can tell)."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    yield Offline(context)
    context.close()


_DRAWN = """() => {
  const v = document.querySelector('.sesskit-viewer');
  const live = [...v.querySelectorAll('[data-session]')].filter((s) => s.dataset.freed === 'false');
  return {
    step: Number(v.dataset.step),
    steps: Number(v.querySelector('input[type=range]').max) + 1,
    why: v.querySelector('[data-role=why]').textContent,
    sessions: Object.fromEntries(live.map((s) =>
      [s.dataset.session, [Number(s.dataset.refcount), s.dataset.cache]])),
    caches: Object.fromEntries([...v.querySelectorAll('[data-cache-side]')].map((c) =>
      [c.dataset.cacheSide, [Number(c.dataset.size),
        [...c.querySelectorAll('[data-member]')].map((m) => m.dataset.member)]])),
  };
}"""


def drawn(page: Any) -> dict[str, Any]:
    """What the page's viewer draws: the step shown, how many steps, its why, live sessions, both caches."""
    return dict(page.evaluate(_DRAWN))


def expected(lab: Any) -> dict[str, Any]:
    """The same, from a lab in Python at its last step."""
    snap, n = lab.snapshot(), len(lab.trace)
    return {
        "step": n - 1,
        "steps": n,
        "why": lab.trace[-1].why,
        "sessions": {k: [s.refcount, s.cache or "none"] for k, s in snap.sessions.items() if not s.freed},
        "caches": {side: [c.size, list(c.members)] for side, c in snap.caches.items()},
    }


def page_trace(page: Any) -> dict[str, Any]:
    text = page.evaluate("() => document.querySelector('.sesskit-static-mount script').textContent")
    return dict(json.loads(text))


def try_it(page: Any) -> None:
    page.click(".sesskit-tryit-btn")
    page.wait_for_selector(".sesskit-tryit[data-state]", timeout=READY)
    state = page.eval_on_selector(".sesskit-tryit", "c => c.dataset.state")
    assert state == "ready", page.inner_text(".sesskit-tryit-status")


def click(page: Any, op: str, acts_on: str | None = None) -> None:
    """Click the bar's button ``op`` (after choosing ``acts_on``) and wait for the worker's answer."""
    seq = int(page.eval_on_selector(".sesskit-static-mount", "m => m.dataset.seq"))
    if acts_on is not None:
        page.select_option(".sesskit-object select", acts_on)
    page.click(f".sesskit-btn-{op}")
    page.wait_for_function(
        "s => Number(document.querySelector('.sesskit-static-mount').dataset.seq) > s",
        arg=seq,
        timeout=30_000,
    )


def model_lab(trace: dict[str, Any]) -> Any:
    """The page's trace replayed by the model here, as the page's worker does."""
    lab = sesskit.Lab(engine="model", **trace["meta"]["config"])
    for d in trace["steps"][1:]:
        replay_step(lab, sesskit.Step.from_dict(d))
    return lab


def test_try_it_on_the_tour_draws_what_the_model_computes_at_every_step(
    server: str, offline: Offline
) -> None:
    page = offline.open(f"{server}/stories/tour.html")
    assert not [u for u in offline.local if "/pyodide/" in u or "tryit" in u]  # nothing before the click
    try_it(page)
    with model_lab(page_trace(page)) as lab:
        assert drawn(page) == expected(lab)  # the tour replayed on the model: its last step
        click(page, "connect")
        link = lab.connect()
        assert drawn(page) == expected(lab)
        click(page, "get1", f"ssl:{link.client.name}")
        ref = link.client.get1_session()
        assert ref is not None and drawn(page) == expected(lab)
        click(page, "free", f"ssl:{link.client.name}")
        link.client.free()
        assert drawn(page) == expected(lab)
        click(page, "session-free", f"ref:{ref.id}")
        ref.free()
        assert drawn(page) == expected(lab)
        click(page, "flush")
        lab.flush(side="server")
        assert drawn(page) == expected(lab)
        assert [s.op for s in lab.trace][-5:] == [
            "SSL_connect",
            "SSL_get1_session",
            "SSL_free",
            "SSL_SESSION_free",
            "SSL_CTX_flush_sessions",
        ]
    assert offline.errors == [], offline.errors


IMAGES = """async () => {
  const c = await caches.open("sesskit-tryit-python");
  const size = async (r) => (await (await c.match(r)).arrayBuffer()).byteLength;
  return Promise.all((await c.keys()).map(async (r) => [r.url, await size(r)]));
}"""
SPOIL = """async () => {
  const c = await caches.open("sesskit-tryit-python");
  for (const r of await c.keys()) await c.put(r, new Response(new Uint8Array(4096)));  // not a memory image
}"""


def saved_images(page: Any, enough: Any) -> list[list[Any]]:
    """The Try it memory images in the browser's Cache Storage, once ``enough(images)`` (they are written
    after the bar is ready)."""
    deadline = time.monotonic() + 60
    while not enough(images := page.evaluate(IMAGES)) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    return list(images)


def stages(page: Any) -> list[str]:
    return [s for s, _ in page.evaluate("() => document.querySelector('.sesskit-tryit').stages")]


def test_a_second_try_it_starts_from_the_saved_python_and_a_spoilt_copy_is_replaced(
    server: str, offline: Offline
) -> None:
    first = offline.open(f"{server}/stories/tour.html")
    try_it(first)
    assert "starting Python from this browser's saved copy" not in stages(first)
    [(url, size)] = saved_images(first, lambda images: len(images) == 1)
    assert "/_static/vendor/pyodide/sesskit-python-" in url and size > 10_000_000  # keyed by sesskit's code
    first.close()

    again = offline.open(f"{server}/stories/tour.html")  # the same browser, the page reopened
    try_it(again)
    assert stages(again)[0] == "starting Python from this browser's saved copy"
    with model_lab(page_trace(again)) as lab:
        assert drawn(again) == expected(lab)
        click(again, "connect")
        link = lab.connect()
        assert drawn(again) == expected(lab)
        click(again, "get1", f"ssl:{link.client.name}")
        assert link.client.get1_session() is not None and drawn(again) == expected(lab)
        click(again, "flush")
        lab.flush(side="server")
        assert drawn(again) == expected(lab)
    again.evaluate(SPOIL)
    again.close()

    third = offline.open(f"{server}/stories/tour.html")  # a spoilt copy: Python starts afresh, saves anew
    try_it(third)
    assert stages(third)[:2] == [
        "starting Python from this browser's saved copy",
        "downloading and starting Python (Pyodide, about 13 MB the first time)",
    ]
    [(_, size)] = saved_images(third, lambda images: images and images[0][1] > 10_000_000)
    assert size > 10_000_000
    assert not offline.errors and not offline.blocked


def test_try_it_requests_nothing_outside_127_0_0_1(server: str, offline: Offline) -> None:
    page = offline.open(f"{server}/playground.html")
    try_it(page)
    click(page, "connect")
    click(page, "read")
    assert offline.blocked == [], offline.blocked
    assert offline.failed == [], offline.failed
    assert offline.errors == [], offline.errors
    # the worker's requests go through the same check: Python's runtime came from the site itself
    loaded = {u.rsplit("/", 1)[-1] for u in offline.local}
    assert {"pyodide.asm.wasm", "python_stdlib.zip", "sesskit-py.zip", "tryit_worker.js"} <= loaded


def test_from_file_try_it_says_to_serve_the_site_and_the_viewer_keeps_working(
    site: Path, browser: Any
) -> None:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.goto((site / "stories" / "tour.html").as_uri())
    page.locator(".sesskit-viewer").wait_for(state="visible", timeout=10_000)
    page.click(".sesskit-tryit-btn")
    status = page.inner_text(".sesskit-tryit-status")
    assert "file://" in status and "http" in status and "python -m http.server" in status
    assert not [u for u in requests if "/pyodide/" in u or "tryit" in u]
    page.locator(".sesskit-viewer").focus()
    page.keyboard.press("Home")
    assert drawn(page)["step"] == 0  # the static viewer still steps
    page.keyboard.press("End")
    assert drawn(page)["step"] == len(page_trace(page)["steps"]) - 1
    context.close()


def test_a_trace_made_in_the_page_downloads_as_json(server: str, offline: Offline, tmp_path: Path) -> None:
    page = offline.open(f"{server}/playground.html")
    try_it(page)
    click(page, "connect")
    click(page, "get1", "ssl:c1")
    click(page, "session-free", "ref:1")
    click(page, "session-free", "ref:1")  # a double free: refused, recorded
    with page.expect_download() as info:
        page.click(".sesskit-tryit-download")
    path = tmp_path / "trace.json"
    info.value.save_as(path)
    trace = sesskit.Trace.from_json(path.read_text())
    with model_lab(page_trace(page)) as lab:
        link = lab.connect()
        ref = link.client.get1_session()
        assert ref is not None
        ref.free()
        with pytest.raises(sesskit.InvalidOperation) as exc:
            ref.free()
        lab.refused("SSL_SESSION_free", f"{ref.session} (ref #{ref.id})", exc.value)
        assert [s.to_dict() for s in trace] == [s.to_dict() for s in lab.trace]
        assert trace.meta["engine"] == "model"


def test_the_address_reopens_the_same_state_in_another_browser(server: str, browser: Any) -> None:
    first = Offline(browser.new_context(viewport={"width": 1600, "height": 1000}))
    page = first.open(f"{server}/stories/tour.html")
    try_it(page)
    click(page, "connect")
    click(page, "get1")
    click(page, "free", "ssl:s1")  # the tour freed s1 long ago: a use after free, refused
    page.locator(".sesskit-viewer").focus()
    page.keyboard.press("ArrowLeft")  # show the step before the last
    there = drawn(page)
    url = page.url
    assert "#" in url and "step.ops=" in url and f"step={there['step']}" in url
    first.context.close()
    second = Offline(browser.new_context(viewport={"width": 1600, "height": 1000}))
    again = second.open(url)  # no click: the address carries operations, so Try it starts
    again.wait_for_selector(".sesskit-tryit[data-state]", timeout=READY)
    assert again.eval_on_selector(".sesskit-tryit", "c => c.dataset.state") == "ready"
    assert drawn(again) == there
    again.locator(".sesskit-viewer").focus()
    again.keyboard.press("End")
    last = drawn(again)
    assert last["step"] == there["steps"] - 1 and "refused" in again.inner_text(".sk-errortext")
    assert second.blocked == [] and second.errors == [], (second.blocked, second.errors)
    second.context.close()


def test_a_double_click_performs_one_operation(server: str, offline: Offline) -> None:
    page = offline.open(f"{server}/playground.html")
    try_it(page)
    page.dblclick(".sesskit-btn-connect")
    page.wait_for_function("() => document.querySelector('.sesskit-viewer').dataset.step === '1'")
    click(page, "get1", "ssl:c1")  # the worker handles messages in order: a second connect came before
    assert drawn(page)["steps"] == 3  # SSL_CTX_new, one SSL_connect, SSL_get1_session
    options = page.eval_on_selector_all(".sesskit-object select option", "os => os.map((o) => o.value)")
    assert options == ["ssl:c1", "ssl:s1", "ref:1"]  # one connection


def test_a_story_that_replays_differently_is_refused_and_the_viewer_stays(
    server: str, offline: Offline
) -> None:
    page = offline.open(f"{server}/stories/tour.html")
    page.evaluate(
        """() => {
      const s = document.querySelector('.sesskit-static-mount script');
      const t = JSON.parse(s.textContent);
      const st = Object.values(t.steps[3].changes.sessions)[0];
      st.refcount += 1;
      s.textContent = JSON.stringify(t);
    }"""
    )
    page.click(".sesskit-tryit-btn")
    page.wait_for_selector(".sesskit-tryit[data-state]", timeout=READY)
    assert page.eval_on_selector(".sesskit-tryit", "c => c.dataset.state") == "failed"
    status = page.inner_text(".sesskit-tryit-status")
    assert "step 3 (SSL_get1_session c1) replays differently" in status and "still steps" in status
    assert page.locator(".sk-bar").count() == 0  # no Stepper: the static viewer, still drawing
    page.locator(".sesskit-viewer").focus()
    page.keyboard.press("Home")
    assert drawn(page)["step"] == 0
