"""The Stepper and its viewer in JupyterLab and Notebook 7, in headless Chromium, as a person uses them.

A notebook is opened in a real JupyterLab (and Notebook 7) served on
127.0.0.1; its cells run on this interpreter's kernel, on the real engine.
The test clicks SSL_connect, SSL_get1_session, SSL_free and SSL_SESSION_free,
and checks the viewer's heap after each click against the same program run
by the model here (the model agrees with libssl step for step: see
tests/test_differential.py).  Then it shuts the kernel down and scrubs the
history: every step must still be drawn, from the browser alone.

Locally the test skips when Chromium or JupyterLab is missing; in CI it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import engine_unavailable
from headless import CHROMIUM, CHROMIUM_ARGS, missing, require_browser
from test_browser import ARTIFACTS, free_port, screenshot_on_failure, stop

import sesskit
from sesskit.__main__ import lab_command, lab_settings_args
from sesskit.app import nodelay_args

ROOT = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 90  # s
CELL_TIMEOUT = 120_000  # ms: the notebook ran and the Stepper drew
CLICK_TIMEOUT = 30_000  # ms
LAB_SETTINGS = {"tls": "1.2", "tickets": False}


def engine() -> str:
    return "model" if engine_unavailable("libssl") else "libssl"


def write_notebook(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import sesskit\n"
            f"lab = sesskit.Lab(engine={engine()!r}, **{LAB_SETTINGS!r})\n"
            "stepper = lab.stepper()\n"
            "stepper"
        )
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "stepper.ipynb"
    nbformat.write(nb, path)
    return path


def wait_until_serving(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import time
    import urllib.error

    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "api/status", timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise TimeoutError(f"no answer within {SERVER_START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def jupyter(app: str, home: Path) -> Iterator[str]:
    """``python -m jupyterlab`` or ``python -m notebook`` on 127.0.0.1, no token, kernels of this Python."""
    module = {"lab": "jupyterlab", "notebook": "notebook"}[app]
    try:
        __import__(module)
    except ImportError:
        missing(f"{module} is not installed (pip install -e '.[test]')")
    spec = home / "data" / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    # Widget state saved into the notebook (saveState, off in a plain JupyterLab): JupyterLab gets it from
    # the app settings `python -m sesskit lab` passes; Notebook 7 from the reader's own setting. JupyterLab
    # also gets the launcher's kernel websocket without Nagle's delay (sesskit/app/nodelay.py).
    settings_args = [*lab_settings_args(), *nodelay_args("ServerApp")] if app == "lab" else []
    if app == "notebook":
        settings = home / "config" / "lab" / "user-settings" / "@jupyter-widgets" / "jupyterlab-manager"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"saveState": True}))
    root = home / "root"
    root.mkdir()
    write_notebook(root)
    env = dict(
        os.environ,
        JUPYTER_PATH=str(home / "data"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        MPLBACKEND="agg",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [
        sys.executable,
        "-m",
        module,
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--JupyterNotebookApp.expose_app_in_browser=True",
        "--allow-root",
        *settings_args,
    ]
    log = home / f"{app}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_serving(url, proc, log)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def chromium() -> str:
    require_browser()
    return CHROMIUM


@pytest.fixture
def browser_page(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(CLICK_TIMEOUT)
        try:
            yield page
        finally:
            browser.close()


# -- reading the viewer ---------------------------------------------------------------
READ_VIEWER = """v => ({
    step: v.dataset.step,
    sessions: Object.fromEntries([...v.querySelectorAll('[data-session]')]
        .filter(s => s.dataset.freed === 'false')
        .map(s => [s.dataset.session, [Number(s.dataset.refcount), s.dataset.cache]])),
    why: (v.querySelector('[data-role=why]') || {}).textContent})"""


def expected(trace: sesskit.Trace, step: int) -> dict[str, Any]:
    snap = trace.snapshot(step)
    live = {k: [s.refcount, s.cache or "none"] for k, s in snap.sessions.items() if not s.freed}
    return {"step": str(step), "sessions": live, "why": trace[step].why}


def model_program() -> sesskit.Trace:
    """What the clicks below do, played on the model here (a mistake is recorded as the Stepper does)."""
    with sesskit.Lab(engine="model", **LAB_SETTINGS) as lab:
        link = lab.connect()
        ref = link.client.get1_session()
        assert ref is not None
        link.client.free()
        ref.free()
        borrowed = link.server.get0_session()
        assert borrowed is not None
        with pytest.raises(sesskit.InvalidOperation) as mistake:
            borrowed.free()  # SSL_SESSION_free on a get0 pointer
        lab.refused("SSL_SESSION_free", f"{borrowed.session} (ref #{borrowed.id})", mistake.value)
        link.server.get0_session()  # one double click
        return lab.trace


class Viewer:
    def __init__(self, page: Any) -> None:
        self.page = page
        self.stepper = page.locator(".sesskit-stepper").last
        self.root = self.stepper.locator(".sesskit-viewer")

    def read(self) -> dict[str, Any]:
        return dict(self.root.evaluate(READ_VIEWER))

    def wait_step(self, step: int) -> None:
        self.page.wait_for_function(
            "([v, want]) => v.dataset.step === want", arg=[self.root.element_handle(), str(step)]
        )

    def click(self, name: str, then_step: int, double: bool = False) -> None:
        button = self.stepper.locator(f"button.sesskit-btn-{name}")
        self.page.wait_for_function("b => !b.disabled", arg=button.element_handle())
        button.dblclick() if double else button.click()
        self.wait_step(then_step)

    def status(self) -> str:
        return " ".join(str(self.stepper.locator(".sesskit-status").inner_text()).split())

    def select(self, starts_with: str) -> None:
        select = self.stepper.locator(".sesskit-object select")
        labels = [" ".join(str(t).split()) for t in select.locator("option").all_inner_texts()]
        index = next((i for i, t in enumerate(labels) if t.startswith(starts_with)), None)
        assert index is not None, f"no {starts_with!r} in 'acts on': {labels}"
        select.select_option(index=index)


def notebook_own_load_error(error: str) -> bool:
    """Notebook 7.6's own error at load, with any notebook (seen with a plain ``1+1``), not sesskit's."""
    stack = error.split("\n", 1)[1] if "\n" in error else ""
    ours = "anywidget" in stack or "blob:" in stack
    return "reading 'schema'" in error and "/static/notebook/notebook_core." in stack and not ours


def start_session(url: str) -> None:
    """Start the notebook's kernel through the REST API, so the page opens on a running kernel."""
    body = json.dumps(
        {"path": "stepper.ipynb", "type": "notebook", "name": "stepper.ipynb", "kernel": {"name": "python3"}}
    ).encode()
    req = urllib.request.Request(
        url + "api/sessions", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(req, timeout=60).close()


def run_all_cells(page: Any, url: str) -> None:
    """Run the notebook's one cell as a person does: click it, Shift+Enter, once the kernel is idle."""
    page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=CELL_TIMEOUT)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=CELL_TIMEOUT)
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
    page.keyboard.press("Shift+Enter")


def shut_down_kernels(url: str) -> None:
    with urllib.request.urlopen(url + "api/kernels", timeout=10) as r:
        kernels = json.load(r)
    assert kernels, "no kernel was running"
    for k in kernels:
        req = urllib.request.Request(url + f"api/kernels/{k['id']}", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()


def server_socket_option(pid: int, peer: tuple[str, int], level: int, option: int) -> int:
    """A socket option of process ``pid``'s TCP socket connected to ``peer``, read from a copy of it
    (pidfd_getfd(2), Linux 5.6+; the server is this test's child, so ptrace rules allow it)."""
    import ctypes
    import socket

    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    continue
            except OSError:  # closed meanwhile
                continue
            copy = libc.syscall(438, pidfd, int(fd), 0)  # SYS_pidfd_getfd on x86_64 and arm64
            if copy < 0:
                errno = ctypes.get_errno()
                if errno in (1, 38):  # EPERM, ENOSYS: a sandbox that forbids it
                    pytest.skip(f"pidfd_getfd is not allowed here ({os.strerror(errno)})")
                continue
            s = socket.socket(fileno=copy)
            try:
                if s.family == socket.AF_INET and s.type == socket.SOCK_STREAM and s.getpeername() == peer:
                    return s.getsockopt(level, option)
            except OSError:
                pass
            finally:
                s.close()  # closes the copy only
    finally:
        os.close(pidfd)
    raise AssertionError(f"no socket of the server is connected to {peer}")


def serving_on(pid: int, url: str) -> bool:
    """Whether process ``pid`` is the Jupyter server started on ``url``'s port."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"--port={url.rstrip('/').rsplit(':', 1)[1]}".encode() in argv


def kernel_socket_nodelay(url: str, kernel: str) -> int:
    """TCP_NODELAY on the server's end of a websocket this test opens to ``kernel``'s channels."""
    import asyncio
    import concurrent.futures
    import socket

    from tornado.websocket import websocket_connect

    pid = int(next(p for p in os.listdir("/proc") if p.isdigit() and serving_on(int(p), url)))

    async def probe() -> int:
        ws = await websocket_connect(url.replace("http", "ws", 1) + f"api/kernels/{kernel}/channels")
        try:
            here = ws.protocol.stream.socket.getsockname()  # type: ignore[union-attr]
            await asyncio.sleep(0.5)  # the server connected the channels
            return server_socket_option(pid, here, socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            ws.close()

    # a thread of its own: in a Playwright test this thread runs Playwright's event loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, probe()).result()


def test_the_lab_sends_kernel_messages_without_nagles_delay(tmp_path: Path) -> None:
    """After a click the kernel answers with several small messages; with Nagle's algorithm on, each one
    after the first waits for the browser's delayed acknowledgement (up to 40 ms). `python -m sesskit lab`
    turns it off on the kernel's websocket: the server's end of it has TCP_NODELAY set."""
    assert set(nodelay_args("ServerApp")) <= set(lab_command("01_tour.ipynb", []))
    with jupyter("lab", tmp_path) as url:
        req = urllib.request.Request(url + "api/kernels", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            kernel = json.load(r)["id"]
        assert kernel_socket_nodelay(url, kernel) != 0


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_stepper_clicks_then_history_scrubs_without_a_kernel(
    app: str, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack or ''}"))
    trace = model_program()
    path = {"lab": "lab/tree/stepper.ipynb", "notebook": "notebooks/stepper.ipynb"}[app]
    with jupyter(app, tmp_path) as url, screenshot_on_failure(page, f"jupyter_{app}_failed"):
        start_session(url)
        page.goto(url + path, timeout=CELL_TIMEOUT)
        run_all_cells(page, url)
        page.locator(".sesskit-stepper .sesskit-viewer").last.wait_for(state="visible", timeout=CELL_TIMEOUT)
        v = Viewer(page)
        assert v.read() == expected(trace, 0)

        v.click("connect", 1)
        assert v.read() == expected(trace, 1)
        v.click("get1", 2)
        assert v.read() == expected(trace, 2)
        v.click("free", 3)  # a dirty SSL_free of c1: the session lives on through the get1 reference
        assert v.read() == expected(trace, 3)
        v.select("ref #1")
        v.click("session-free", 4)
        assert v.read() == expected(trace, 4)
        v.select("s1")
        v.click("get0", 5)
        v.select("ref #2")
        v.click("session-free", 6)  # a mistake: clickable, recorded as a refused step, drawn in red
        assert v.read() == expected(trace, 6)
        error = v.root.locator(".sk-errortext")
        assert error.is_visible() and "InvalidOperation" in error.inner_text()
        assert "is-error" in str(v.root.locator(".sk-whybox").get_attribute("class"))
        v.select("s1")
        v.click("get0", 7, double=True)  # a double click: one SSL_get0_session
        page.wait_for_timeout(1500)  # time enough for a second call to arrive, if one were sent
        assert v.root.locator("input[type=range]").get_attribute("max") == str(len(trace) - 1)
        assert v.read() == expected(trace, 7)
        assert v.status().endswith("step 7 of 7: SSL_get0_session s1")

        page.set_viewport_size({"width": 1024, "height": 768})
        page.wait_for_timeout(300)
        cut = v.stepper.locator(".sk-bar button").evaluate_all(
            "bs => bs.filter(b => b.offsetParent && (b.scrollWidth > b.clientWidth"
            " || b.getBoundingClientRect().right > b.closest('.sk-bar').getBoundingClientRect().right + 1))"
            ".map(b => b.textContent)"
        )
        assert cut == [], f"buttons cut at 1024x768: {cut}"

        v.root.locator("input[type=range]").focus()
        page.keyboard.press("Home")
        v.wait_step(0)
        assert v.status().endswith("step 0 of 7: SSL_CTX_new client+server")  # the step shown
        v.stepper.locator("button.sesskit-btn-get0").click()  # acting here would discard steps 1..7
        notice = v.stepper.locator(".sesskit-notice")
        assert "acting here discards steps 1..7" in notice.inner_text()
        v.stepper.locator("button.sesskit-btn-end").click()
        v.wait_step(len(trace) - 1)
        page.wait_for_timeout(500)
        assert v.root.locator("input[type=range]").get_attribute("max") == str(len(trace) - 1)  # no call
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"jupyter_{app}_stepper.png"))

        shut_down_kernels(url)
        page.wait_for_timeout(500)
        v.root.focus()
        page.keyboard.press("Home")
        v.wait_step(0)
        for step in range(len(trace)):
            assert v.read() == expected(trace, step), f"step {step} after the kernel stopped"
            assert v.status().endswith(f"step {step} of 7: {trace[step].op} {trace[step].target}")
            page.keyboard.press("ArrowRight")
        v.wait_step(len(trace) - 1)
        assert not [e for e in errors if not notebook_own_load_error(e)], errors


def test_a_saved_notebook_reopened_without_a_kernel_shows_the_picture_and_history(
    browser_page: Any, tmp_path: Path
) -> None:
    """With widget state saved, the reopened notebook draws every step, the appended ones included; a
    click there says that running the cell continues."""
    page = browser_page
    trace = model_program()
    with jupyter("lab", tmp_path) as url, screenshot_on_failure(page, "jupyter_reopen_failed"):
        start_session(url)
        page.goto(url + "lab/tree/stepper.ipynb", timeout=CELL_TIMEOUT)
        run_all_cells(page, url)
        page.locator(".sesskit-stepper .sesskit-viewer").last.wait_for(state="visible", timeout=CELL_TIMEOUT)
        v = Viewer(page)
        v.click("connect", 1)
        v.click("get1", 2)
        page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_timeout(1500)
        saved = json.loads((tmp_path / "root" / "stepper.ipynb").read_text())
        state = saved["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        traces = [m["state"]["trace"] for m in state.values() if "trace" in m.get("state", {})]
        assert [len(t["steps"]) for t in traces] == [3]  # the appended steps are in the saved state
        shut_down_kernels(url)
        page.reload()
        page.locator(".sesskit-viewer").last.wait_for(state="visible", timeout=CELL_TIMEOUT)
        v = Viewer(page)
        assert v.read() == expected(trace, 2)
        v.root.focus()
        page.keyboard.press("Home")
        v.wait_step(0)
        assert v.read() == expected(trace, 0)
        page.keyboard.press("End")
        v.wait_step(2)
        v.stepper.locator("button.sesskit-btn-get0").click()  # no kernel to perform it: the bar says so
        notice = v.stepper.locator(".sesskit-notice")
        page.wait_for_function("n => n.textContent.includes('run the cell')", arg=notice.element_handle())
