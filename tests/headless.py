"""What the browser tests share: Debian's Chromium, run headless on a closed network.

Never ``playwright install``: Playwright for Python drives the system Chromium.
"""

from __future__ import annotations

import os

import pytest

CHROMIUM = os.environ.get("SESSKIT_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Skip locally; in CI a missing browser or tool is a failure (.ci/run installs them)."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: .ci/run must install it)", pytrace=False)
    pytest.skip(what)


def require_browser() -> None:
    """Debian's Chromium and the Playwright package, or a skip (locally) / failure (CI) saying which."""
    if not os.path.exists(CHROMIUM):
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("playwright (the Python package) is not installed (pip install -e '.[test]')")
