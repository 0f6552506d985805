"""``python -m sesskit app``: the notebooks as a Voila app on 127.0.0.1, asking nothing of any other host.

The browser test starts the command as a user would (``--no-browser --port=P``),
opens its tree and notebook 01 in Debian's headless Chromium with every request
outside 127.0.0.1 aborted and recorded, waits for the viewer to draw, and
requires that nothing was blocked (Voila's own template links Font Awesome from a
CDN: the app's template must not).  Voila's start and stop come from
tests/test_browser.py, the blocking browser context from tests/test_docs.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from headless import CHROMIUM, CHROMIUM_ARGS, missing
from test_browser import PAGE_TIMEOUT, free_port, screenshot_on_failure, stop, wait_until_serving
from test_docs import Offline
from test_jupyter import kernel_socket_nodelay

from sesskit.__main__ import main
from sesskit.app import NOTEBOOKS, SHARE, TEMPLATE, app_command, app_env

ROOT = Path(__file__).resolve().parent.parent


def test_app_serves_the_notebooks_folder_on_localhost_with_the_offline_template() -> None:
    cmd = app_command(None, ["--no-browser", "--port=8899"])
    assert cmd[:4] == [sys.executable, "-m", "voila", str(ROOT / "notebooks")]  # the tree, 01 first
    assert f"--template={TEMPLATE}" in cmd and "--Voila.ip=127.0.0.1" in cmd
    assert cmd[-2:] == ["--no-browser", "--port=8899"]  # the user's options reach voila
    one = app_command("08_workshop.ipynb")
    assert one[3] == str(NOTEBOOKS / "08_workshop.ipynb")
    # Voila finds the template (and the python3 kernel spec) through JUPYTER_PATH, sesskit's first.
    env = app_env({"JUPYTER_PATH": "/elsewhere"})
    assert env["JUPYTER_PATH"].split(os.pathsep) == [str(SHARE), "/elsewhere"]
    assert (SHARE / "voila" / "templates" / TEMPLATE / "index.html.j2").is_file()


def test_the_template_links_nothing_from_elsewhere() -> None:
    for page in (SHARE / "voila" / "templates" / TEMPLATE).iterdir():
        text = page.read_text()
        assert "https://" not in text and "http://" not in text, page.name


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["app", "--notebook", "99_nothing.ipynb"], "no notebook '99_nothing.ipynb'"),
        (["app", "--Voila.ip=0.0.0.0"], "127.0.0.1 only"),
        (["app", "--ip", "0.0.0.0"], "127.0.0.1 only"),
    ],
)
def test_app_refuses_in_one_line(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("voila")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m sesskit app --no-browser --port=P``, as a user starts it; stopped with its kernels."""
    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    for module in ("voila", "playwright"):
        try:
            __import__(module)
        except ImportError:
            missing(f"{module} is not installed (pip install -e '.[test]')")
    home = tmp_path_factory.mktemp("app")
    env = dict(  # no user configuration of this machine may change what the app serves
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        MPLBACKEND="agg",
    )
    port = free_port()
    log = home / "app.log"
    cmd = [sys.executable, "-m", "sesskit", "app", "--no-browser", f"--port={port}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(url, proc, log)
        yield url
    finally:
        stop(proc)


@pytest.fixture
def offline(app_url: str) -> Iterator[Offline]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            yield Offline(context)
        finally:
            context.close()
            browser.close()


def _page(offline: Offline, sockets: list[str]) -> Any:
    page = offline.context.new_page()
    page.on("pageerror", lambda e: offline.errors.append(str(e)))
    page.on("websocket", lambda ws: sockets.append(ws.url))  # the kernel's: route() does not see them
    return page


def test_app_tree_then_notebook_01_with_nothing_from_elsewhere(app_url: str, offline: Offline) -> None:
    sockets: list[str] = []
    page = _page(offline, sockets)
    with screenshot_on_failure(page, "app_failed"):
        page.goto(app_url, wait_until="load")
        names = page.locator(".jp-DirListing-itemText")
        names.first.wait_for(state="visible", timeout=PAGE_TIMEOUT)
        listed = [n.strip() for n in names.all_inner_texts()]
        assert listed[0] == "01_tour.ipynb", listed  # the reading order
        assert set(listed) >= {p.name for p in NOTEBOOKS.glob("*.ipynb")}, listed

        page.goto(app_url + "voila/render/01_tour.ipynb", wait_until="load", timeout=PAGE_TIMEOUT)
        viewer = page.locator(".sesskit-viewer").last
        viewer.wait_for(state="visible", timeout=PAGE_TIMEOUT)  # the kernel ran the notebook; the viewer drew
        assert viewer.get_attribute("data-step") is not None
        assert "engine:" in page.locator("body").inner_text()
        page.wait_for_load_state("networkidle")

    assert offline.blocked == [], offline.blocked
    assert offline.local, "no request reached the app"
    assert sockets and all(urlparse(u).hostname == "127.0.0.1" for u in sockets), sockets
    assert offline.errors == [], offline.errors


def test_the_app_sends_kernel_messages_without_nagles_delay(app_url: str, offline: Offline) -> None:
    """As in JupyterLab (tests/test_jupyter.py): Voila's kernel websocket has TCP_NODELAY on the server's
    end, so a Stepper click's answer is not held for the browser's delayed acknowledgement."""
    sockets: list[str] = []
    page = _page(offline, sockets)
    with screenshot_on_failure(page, "app_nodelay_failed"):
        page.goto(app_url + "voila/render/01_tour.ipynb", wait_until="load", timeout=PAGE_TIMEOUT)
        page.locator(".sesskit-viewer").last.wait_for(state="visible", timeout=PAGE_TIMEOUT)
    kernels = [urlparse(u).path.split("/") for u in sockets if "/api/kernels/" in u]
    assert kernels, sockets
    kernel = kernels[0][kernels[0].index("kernels") + 1]
    assert kernel_socket_nodelay(app_url, kernel) != 0
