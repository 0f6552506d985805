"""The viewer's own JavaScript: its unit tests (``node --test tests/js``) and what the module may contain.

The README's test command is pytest; this file makes it run the JS unit tests
too.  Locally the test skips when node is missing; in CI (``CI=true``) it fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from headless import missing

ROOT = Path(__file__).resolve().parent.parent
VIEWER = ROOT / "sesskit" / "viewer"
JS_TESTS = ROOT / "tests" / "js"
ASSET_BUDGET = 60 * 1024  # bytes: viewer.js + viewer.css, inlined into every page

# Text from a trace is inserted as text: no HTML parsing of strings, no code from strings.
FORBIDDEN = {
    "innerHTML": re.compile(r"\binnerHTML\b"),
    "outerHTML": re.compile(r"\bouterHTML\b"),
    "insertAdjacentHTML": re.compile(r"\binsertAdjacentHTML\b"),
    "document.write": re.compile(r"\bdocument\.write(ln)?\s*\("),
    "eval(": re.compile(r"(?<![\w.$])eval\s*\("),
    "new Function": re.compile(r"\bnew\s+Function\b"),
    # XML namespace names (createElementNS) are identifiers, never fetched; any other URL is a load
    "an http(s) URL": re.compile(r"https?://(?!www\.w3\.org/(2000/svg|1999/xhtml|1999/xlink)\b)", re.I),
}


def test_js_unit_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed (apt-get install nodejs)")
    tests = sorted(JS_TESTS.glob("*.test.mjs"))
    assert tests, f"no JS unit tests in {JS_TESTS.relative_to(ROOT)} (*.test.mjs)"
    r = subprocess.run(
        [node, "--test", "--test-reporter=tap", *map(str, tests)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, report
    # node's TAP summary: at least one test ran and none failed
    passed = re.search(r"^# pass (\d+)$", r.stdout, re.M)
    failed = re.search(r"^# fail (\d+)$", r.stdout, re.M)
    assert passed and int(passed.group(1)) > 0, report
    assert failed and int(failed.group(1)) == 0, report


def test_viewer_assets_fit_the_budget() -> None:
    size = sum((VIEWER / name).stat().st_size for name in ("viewer.js", "viewer.css"))
    assert size <= ASSET_BUDGET, f"viewer.js + viewer.css = {size} bytes > {ASSET_BUDGET}"


def test_viewer_inserts_text_as_text_and_loads_nothing() -> None:
    for name in ("viewer.js", "viewer.css"):
        text = (VIEWER / name).read_text(encoding="utf-8")
        for what, pattern in FORBIDDEN.items():
            hit = pattern.search(text)
            if hit:
                line = text.count("\n", 0, hit.start()) + 1
                raise AssertionError(f"sesskit/viewer/{name}:{line} contains {what}")
