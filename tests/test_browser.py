"""Notebook 01 in a real browser: Voila serves it, headless Chromium clicks the Stepper.

The test starts Voila on a free local port, opens the page in Debian's
Chromium through Playwright (never ``playwright install``: the browser comes
from apt), clicks SSL_connect, SSL_get1_session, SSL_free and SSL_SESSION_free,
and checks after each click that the refcount text says what OpenSSL did and
that the viewer drew the new step (its heap shows the same refcount).  A
second test plays two exercises of notebook 08 in predict mode (a right guess
and a wrong one) and unfolds an answer.  On failure a screenshot is written to ``tests/artifacts/``.

Locally the test skips when Chromium (or Playwright/Voila) is missing; in CI
(``CI=true``) it fails instead, because ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from headless import CHROMIUM, CHROMIUM_ARGS, missing, require_browser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "01_tour.ipynb"
WORKSHOP = ROOT / "notebooks" / "08_workshop.ipynb"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SERVER_START_TIMEOUT = 90  # s: Voila up and answering
PAGE_TIMEOUT = 120_000  # ms: the notebook executed and the Stepper drawn
CLICK_TIMEOUT = 30_000  # ms: one click's effect visible


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:  # any HTTP answer will do: asking for "/" would execute the notebook once more
            with urllib.request.urlopen(url + "voila/static/", timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"voila did not answer within {SERVER_START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop Voila and the kernels it started (its own process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def voila(notebook: Path, home: Path) -> Iterator[str]:
    """Voila serving ``notebook`` on 127.0.0.1 with a kernel of this interpreter; stopped afterwards."""
    try:
        import voila  # noqa: F401
    except ImportError:
        missing("voila is not installed (pip install -e '.[test]')")
    # "python3" resolves to this interpreter, whatever other kernels are installed.
    spec = home / "data" / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    env = dict(
        os.environ,
        JUPYTER_PATH=str(home / "data"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        MPLBACKEND="agg",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = home / "voila.log"
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook.relative_to(ROOT)),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_serving(url, proc, log)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium and the Playwright package, checked before any server starts."""
    require_browser()
    return CHROMIUM


@pytest.fixture(scope="module")
def voila_url(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Notebook 01 in Voila."""
    with voila(NOTEBOOK, tmp_path_factory.mktemp("voila")) as url:
        yield url


@pytest.fixture(scope="module")
def workshop_url(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Notebook 08 (the predict-mode workshop) in Voila."""
    with voila(WORKSHOP, tmp_path_factory.mktemp("voila")) as url:
        yield url


@pytest.fixture
def page(chromium: str, tmp_path: Path) -> Iterator[Any]:
    """A page in a fresh headless Chromium profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            pg = context.new_page()
            pg.set_default_timeout(CLICK_TIMEOUT)
            yield pg
        finally:
            context.close()


@contextlib.contextmanager
def screenshot_on_failure(page: Any, name: str) -> Iterator[None]:
    """Save what the browser showed (tests/artifacts/NAME.png) when the block fails."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"{name}.png"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failure: {shot}")
        raise


class StepperPage:
    """A Stepper on the page (the last one, or the ``nth``), found by its stable CSS classes."""

    def __init__(self, page: Any, nth: int = -1) -> None:
        self.page = page
        steppers = page.locator(".sesskit-stepper")
        self.root = steppers.last if nth == -1 else steppers.nth(nth)

    def figure(self) -> str:
        """The step the viewer shows (its ``data-step``)."""
        return str(self.root.locator(".sesskit-viewer").get_attribute("data-step"))

    def drawn_refcount(self, label: str) -> str:
        """The refcount the viewer's heap shows for session ``label``."""
        return str(
            self.root.locator(f'.sesskit-viewer [data-session="{label}"]').get_attribute("data-refcount")
        )

    def click(self, name: str) -> None:
        button = self.root.locator(f"button.sesskit-btn-{name}")
        button.wait_for(state="visible")
        self.page.wait_for_function("b => !b.disabled", arg=button.element_handle())
        button.click()

    def select(self, starts_with: str) -> None:
        select = self.root.locator(".sesskit-object select")
        # ipywidgets writes option labels with no-break spaces
        labels = [" ".join(str(t).split()) for t in select.locator("option").all_inner_texts()]
        index = next((i for i, t in enumerate(labels) if t.startswith(starts_with)), None)
        assert index is not None, f"no {starts_with!r} in 'acts on': {labels}"
        select.select_option(index=index)

    def answer(self, value: int) -> str:
        """Answer the question predict mode asks before the call; returns the question."""
        box = self.root.locator(".sesskit-guess input")
        box.wait_for(state="visible")
        assert box.input_value() == ""  # the answer box starts empty
        question = str(self.root.locator(".sesskit-question").inner_text())
        box.fill(str(value))
        self.click("answer")
        return question

    def expect_verdict(self, text: str) -> str:
        verdict = self.root.locator(".sesskit-verdict")
        try:
            self.page.wait_for_function(
                "([el, want]) => el.textContent.includes(want)", arg=[verdict.element_handle(), text]
            )
        except Exception as exc:
            raise AssertionError(f"verdict is {verdict.inner_text()!r}, expected {text!r} in it") from exc
        return str(verdict.inner_text())

    def expect_new_figure(self, before: str) -> str:
        """Wait until the viewer shows the step after ``before`` (the kernel sent the new step)."""
        viewer = self.root.locator(".sesskit-viewer")
        want = str(int(before) + 1)
        try:
            self.page.wait_for_function(
                "([el, want]) => el.dataset.step === want", arg=[viewer.element_handle(), want]
            )
        except Exception as exc:
            raise AssertionError(f"the viewer shows step {self.figure()}, expected {want}") from exc
        return want


def test_stepper_in_voila_clicks_through_a_session_life(voila_url: str, page: Any) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    t0 = time.monotonic()
    with screenshot_on_failure(page, "browser_01_tour_failed"):
        page.goto(voila_url, timeout=PAGE_TIMEOUT)
        page.locator(".sesskit-stepper").last.wait_for(state="visible", timeout=PAGE_TIMEOUT)
        stepper = StepperPage(page)
        status = stepper.root.locator(".sesskit-status").inner_text()
        assert "sesskit" in status and "OpenSSL" in status, status
        body = page.locator("body").inner_text()
        assert "engine:" in body and "What to remember" in body  # the whole notebook rendered
        stepper.root.locator(".sesskit-viewer").wait_for(state="visible")
        fig = stepper.figure()
        assert fig == "0"  # SSL_CTX_new

        stepper.click("connect")  # a full handshake; "acts on" becomes c1
        fig = stepper.expect_new_figure(fig)
        assert stepper.drawn_refcount("S1") == "1"
        assert stepper.root.locator(".sesskit-object select").input_value() == "ssl:c1"

        stepper.click("get1")
        fig = stepper.expect_new_figure(fig)
        assert stepper.drawn_refcount("S1") == "2"

        stepper.click("free")  # dirty SSL_free of c1: S1 lives on through the get1 reference
        fig = stepper.expect_new_figure(fig)
        assert stepper.drawn_refcount("S1") == "1"

        stepper.select("ref #1")
        stepper.click("session-free")
        stepper.expect_new_figure(fig)
        assert (
            stepper.root.locator('.sesskit-viewer [data-session="S1"]').get_attribute("data-freed") == "true"
        )
        why = stepper.root.locator(".sesskit-viewer [data-role=why]").inner_text()
        assert "SSL_SESSION_free" in why, why
        assert stepper.root.locator(".sesskit-error").count() == 0  # no error shown

        assert not errors, errors
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser_01_tour_done.png"), full_page=False)
        print(f"notebook 01 clicked through in {time.monotonic() - t0:.1f} s")


def test_workshop_predict_mode_in_voila(workshop_url: str, page: Any) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with screenshot_on_failure(page, "browser_08_workshop_failed"):
        page.goto(workshop_url, timeout=PAGE_TIMEOUT)
        page.locator(".sesskit-stepper").nth(5).wait_for(state="visible", timeout=PAGE_TIMEOUT)
        answers = page.locator("details")
        assert answers.count() == 6
        assert answers.first.get_attribute("open") is None  # folded away

        first = StepperPage(page, 0)  # exercise 1: get1 on a cached TLS 1.2 server session
        assert first.root.locator(".sesskit-predict input").is_checked()
        first.click("get1")
        question = first.answer(3)
        assert "S2's refcount" in question, question  # s1's session (the client's is S1)
        verdict = first.expect_verdict("Right")
        assert "refcount is now 3" in verdict, verdict

        third = StepperPage(page, 2)  # exercise 3: SSL_read frees the pre-ticket TLS 1.3 session
        third.click("read")
        third.answer(1)
        verdict = third.expect_verdict("You said 1")
        assert "refcount is now 0" in verdict, verdict
        assert "score: 0 / 1" in third.root.locator(".sesskit-score").inner_text()

        answers.first.locator("summary").click()
        assert answers.first.get_attribute("open") is not None
        assert "SSL_get1_session" in answers.first.inner_text()
        assert not errors, errors
