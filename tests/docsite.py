"""The documentation site for the tests that open it: built once per test run, served from 127.0.0.1.

tests/test_docs.py and tests/test_tryit.py share one build (a docs build executes every notebook and
records every story: minutes) through :func:`built_site`; :func:`serve` serves it, and :class:`Offline`
is a browser context in which every request outside 127.0.0.1 is aborted and recorded.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from headless import missing

ROOT = Path(__file__).resolve().parent.parent
_BUILT: dict[str, Path] = {}


def sphinx_build(out: Path, doctrees: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "sphinx-build"
    cmd = [str(exe), "-b", "html", "-E", "-j", "2", "-d", str(doctrees), "docs", str(out)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built from scratch (every notebook executed, every story recorded), once per run."""
    if "site" in _BUILT:
        return _BUILT["site"]
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
    _BUILT["site"] = out
    return out


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """``site`` served over http on 127.0.0.1 (a free port); yields its base URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
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
