"""The README a new user reads: its screenshot is current, its links resolve, its notebook table is whole.

The screenshot is made by ``docs/screenshot.py`` from a real run of the tour
story; its sidecar ``docs/_static/screenshot.json`` holds a key over what the
picture depends on (the viewer's JS and CSS, the page writer, the script, and
what each step of the story shows).  The key is recomputed here from a fresh
run: when the viewer or the story changes, this test fails until the script is
run again.
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SCRIPT = ROOT / "docs" / "screenshot.py"
PNG = ROOT / "docs" / "_static" / "screenshot.png"
SIDECAR = ROOT / "docs" / "_static" / "screenshot.json"
REFRESH = "run python docs/screenshot.py to refresh the screenshot"
BENCH_REFRESH = "run python docs/benchmarks_table.py to copy latest.json's rows"


def screenshot_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sesskit_screenshot", SCRIPT)
    assert spec and spec.loader, SCRIPT
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme() -> str:
    return README.read_text(encoding="utf-8")


def links(text: str) -> list[str]:
    """Every Markdown link and image target, and every src/href attribute."""
    found = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    found += re.findall(r"""(?:src|href)=["']([^"']+)["']""", text)
    return found


def test_the_screenshot_is_current() -> None:
    assert PNG.is_file() and SIDECAR.is_file(), REFRESH
    facts = json.loads(SIDECAR.read_text(encoding="utf-8"))
    shot = screenshot_script()
    trace, _ = shot.run_story()  # the real engine here when it can run; the story's steps either way
    assert shot.key(trace) == facts["key"], f"the screenshot is stale: {REFRESH}"
    assert facts["step"] == shot.interesting_step(trace), REFRESH
    assert facts["alt"] == shot.alt_text(facts["engine"], facts["step"], trace[facts["step"]].op), REFRESH


def test_the_screenshot_is_a_small_png_at_the_stated_size() -> None:
    data = PNG.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    facts = json.loads(SIDECAR.read_text(encoding="utf-8"))
    assert (width, height) == (facts["viewport"]["width"], facts["viewport"]["height"]) == (1024, 720)
    assert len(data) <= 150 * 1024, f"{len(data)} bytes: the README's picture must stay small"


def test_the_readme_shows_the_screenshot_with_its_alt_text() -> None:
    facts = json.loads(SIDECAR.read_text(encoding="utf-8"))
    images = dict((target, alt) for alt, target in re.findall(r"!\[([^\]]*)\]\(([^)\s]+)\)", readme()))
    assert "docs/_static/screenshot.png" in images, "the README must show docs/_static/screenshot.png"
    assert images["docs/_static/screenshot.png"] == facts["alt"], "the alt text must say what the picture is"
    # below the two commands, above the rest
    text = readme()
    shot = text.index("docs/_static/screenshot.png")
    assert text.index("python -m pytest") < shot < text.index("## Try it")


def test_every_relative_link_in_the_readme_resolves() -> None:
    checked = 0
    for target in links(readme()):
        url = urlparse(target)
        if url.scheme or target.startswith("#"):
            continue
        path = ROOT / unquote(url.path)
        assert path.exists(), f"README links to {target}, which does not exist"
        checked += 1
    assert checked >= 5  # the screenshot, the docs pages, the notebooks


def test_the_readme_lists_every_notebook_in_reading_order() -> None:
    listed = re.findall(r"\]\(notebooks/(\d\d_[^)]+\.ipynb)\)", readme())
    on_disk = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    table = list(dict.fromkeys(listed))  # a notebook may be linked more than once; the first is its row
    assert table == on_disk, "the README's notebook table must list every notebook, in order"


def test_the_readme_quotes_no_timing_figures() -> None:
    """Figures live in docs/benchmarks.md, each beside the benchmark that measures it."""
    text = readme()
    timings = re.findall(r"\b\d[\d,.]*\s?(?:ms|µs|us)\b|\b\d\.\d+x\b", text)
    assert timings == [], f"move {timings} to docs/benchmarks.md, with the benchmark that measures them"


@pytest.mark.parametrize("page", ["internals", "benchmarks", "developers", "glossary", "primer", "workshop"])
def test_the_docs_pages_the_readme_points_to_exist_and_are_in_the_site(page: str) -> None:
    assert f"docs/{page}.md" in readme()
    assert (ROOT / "docs" / f"{page}.md").is_file()
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert re.search(rf"^{page}$", index, re.M), f"docs/index.md's toctree must list {page}"


def test_the_benchmarks_page_quotes_latest_json_verbatim() -> None:
    """Each figure on docs/benchmarks.md is a row of benchmarks/results/latest.json, as run.py wrote it."""
    latest = json.loads((ROOT / "benchmarks" / "results" / "latest.json").read_text(encoding="utf-8"))
    rows = {name: (figure, ok) for name, figure, _target, ok in latest["table"]}
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    quoted = re.findall(r"^\| `([^`]+)` \| `bench_\w+\.py` \| ([^|]+?) \| [^|]+ \| ([^|]+?) \|$", page, re.M)
    assert quoted, "docs/benchmarks.md has no table of latest.json rows"
    for name, figure, met in quoted:
        assert name in rows, f"docs/benchmarks.md quotes {name!r}, which latest.json lacks: {BENCH_REFRESH}"
        want, ok = rows[name]
        assert figure == want, f"{name}: the page says {figure!r}, latest.json {want!r}: {BENCH_REFRESH}"
        assert met == ("yes" if ok else "**no**"), f"{name}: the page's 'met' is {met!r}"
    browser = {name for name in rows if name.startswith(("viewer", "render tour"))}
    assert browser, "latest.json has no browser rows"
    stale = "Stepper click -> redrawn figure"  # an old run's kernel-side rows (docs/benchmarks_table.py)
    missing = {name for name in rows if not name.startswith(stale)} - {name for name, _, _ in quoted}
    assert not missing, f"rows of latest.json not on docs/benchmarks.md: {sorted(missing)}; {BENCH_REFRESH}"
