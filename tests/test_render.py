"""``python -m sesskit render``: every format written and valid; the stories agree across engines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import engine_unavailable

import sesskit
from sesskit import scenarios
from sesskit.viewer.page import asset

ROOT = Path(__file__).resolve().parent.parent
STORIES = {
    "tour",
    "get0-vs-get1",
    "clean-vs-dirty-close",
    "time-flush",
    "tls13-tickets",
    "cache-limits",
    "one-session-one-ctx",
}


def render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sesskit", "render", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def expected_engine() -> str:
    return "model" if engine_unavailable("libssl") else "libssl"


def refcounts(trace: sesskit.Trace) -> list[tuple[str, str, dict[str, int]]]:
    return [
        (step.op, step.target, {k: s.refcount for k, s in snap.sessions.items()})
        for step, snap in zip(trace, trace.snapshots(), strict=True)
    ]


def test_list_names_every_story() -> None:
    r = render("--list")
    assert r.returncode == 0, r.stderr
    names = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    assert names == STORIES == set(scenarios.SCENARIOS)


def test_png(tmp_path: Path) -> None:
    out = tmp_path / "tour.png"
    r = render("tour", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert f"on {expected_engine()}" in r.stdout


def test_svg_of_one_step(tmp_path: Path) -> None:
    out = tmp_path / "get0.svg"
    r = render("get0-vs-get1", "--out", str(out), "--step", "2")
    assert r.returncode == 0, r.stderr
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    # the heap is drawn at step 2 (the get0 pointer exists, the get1 one not yet)
    ids = {el.get("id") for el in root.iter()}
    assert "ref:get0:#1->S1" in ids
    assert "ref:#2" not in ids


def inlined_traces(page: str) -> list[dict[str, Any]]:
    """The traces a static page carries, as the loader reads them (JSON inside each mount)."""
    found = re.findall(
        r'<div class="sesskit-static-mount"[^>]*><script type="application/json">(.*?)</script>', page, re.S
    )
    return [json.loads(text) for text in found]


def test_html_is_self_contained(tmp_path: Path) -> None:
    out = tmp_path / "tickets.html"
    r = render("tls13-tickets", "--out", str(out), "--engine", "model")
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I), "external asset"
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page), "a script loaded from a file or host"
    assert "@import" not in page
    assert not re.search(r"url\(\s*['\"]?\s*(https?:|//|file:)", page), "a CSS url() leaving the page"
    # the viewer travels inside the page, with the trace it draws
    assert asset("viewer.js") in page and asset("viewer.css") in page
    (data,) = inlined_traces(page)
    shown = sesskit.Trace.from_dict(data)
    fresh = scenarios.run("tls13-tickets", "model")
    assert refcounts(shown) == refcounts(fresh)
    assert [s.why for s in shown] == [s.why for s in fresh]
    assert scenarios.get("tls13-tickets").title in page


def test_html_of_a_saved_trace(tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    trace = scenarios.run("get0-vs-get1", "model")
    saved.write_text(trace.to_json())
    out = tmp_path / "saved.html"
    r = render(str(saved), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "saved.json" in r.stdout
    (data,) = inlined_traces(out.read_text())
    assert sesskit.Trace.from_dict(data) == trace


def test_json_matches_a_fresh_run(tmp_path: Path) -> None:
    out = tmp_path / "flush.json"
    r = render("time-flush", "--out", str(out))
    assert r.returncode == 0, r.stderr
    saved = sesskit.Trace.from_json(out.read_text())
    assert saved.meta["engine"] == expected_engine()
    assert saved.meta["scenario"] == "time-flush"
    fresh = scenarios.run("time-flush", engine=expected_engine())
    assert refcounts(saved) == refcounts(fresh)
    assert [s.why for s in saved] == [s.why for s in fresh]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-story", "--out", "x.png"], "no scenario called 'no-such-story'"),
        (["tour", "--out", "x.gif"], "the suffix picks the format"),
        (["tour", "--out", "x.json", "--step", "1"], "applies to .png and .svg only"),
        (["tour", "--out", "x.png", "--step", "99"], "step 99 is outside this trace"),
        (["tour"], "needs a STORY or TRACE.json and --out FILE"),
    ],
)
def test_bad_requests_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(tmp_path / a) if a.startswith("x.") else a for a in args]
    r = render(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", sorted(STORIES))
def test_each_story_plays_and_the_model_agrees_with_libssl(name: str) -> None:
    model = scenarios.run(name, "model")
    assert len(model) > 3
    assert scenarios.get(name).summary
    if engine_unavailable("libssl"):
        pytest.skip(engine_unavailable("libssl"))
    real = scenarios.run(name, "libssl")
    assert real.meta["engine"] == "libssl"
    assert [s.changes for s in real] == [s.changes for s in model], "the model mispredicts this story"


def bad_out(tmp_path: Path, case: str) -> tuple[Path, str]:
    """An --out path that cannot be written, and the start of what the command must say about it."""
    if case == "missing folder":
        return tmp_path / "no-such-folder" / "x.html", "does not exist"
    if case == "a folder":
        (tmp_path / "x.html").mkdir()
        return tmp_path / "x.html", "it is a folder"
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    return tmp_path / "notes.txt" / "deeper" / "x.html", "is a file, not a folder"


BAD_OUT = ["missing folder", "a folder", "under a file"]


@pytest.mark.parametrize("case", BAD_OUT)
def test_an_unwritable_out_exits_2_in_one_line(tmp_path: Path, case: str) -> None:
    out, message = bad_out(tmp_path, case)
    before = sorted(tmp_path.rglob("*"))
    r = render("tour", "--out", str(out), "--engine", "model")
    assert r.returncode == 2
    assert message in r.stderr and str(out) in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before, "nothing written"


@pytest.mark.parametrize("case", BAD_OUT)
def test_an_unwritable_out_is_refused_before_the_story_runs(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sesskit.__main__ import main

    ran: list[str] = []

    def no_run(self: scenarios.Scenario, engine: str = "auto") -> sesskit.Trace:
        ran.append(self.name)
        raise AssertionError("the story ran before --out was checked")

    monkeypatch.setattr(scenarios.Scenario, "run", no_run)
    out, message = bad_out(tmp_path, case)
    assert main(["render", "tour", "--out", str(out), "--engine", "libssl"]) == 2
    assert ran == []
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "content",
    [
        b"this is not JSON\n",
        b'{"format": 1, "meta": {}, "steps": [\xff\xfe]}',
        b'{"format": 1, "meta": {}, "steps": [{"op": "SSL_new"}]}',
        b'{"format": 99, "meta": {}, "steps": []}',
        b"[1, 2, 3]",
    ],
    ids=["not-json", "not-utf8", "malformed-step", "wrong-format", "not-an-object"],
)
def test_a_file_that_is_not_a_trace_exits_2_in_one_line(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "broken.json"
    source.write_bytes(content)
    out = tmp_path / "out.html"
    r = render(str(source), "--out", str(out))
    assert r.returncode == 2
    assert re.search(r"error: .*not a (valid )?sesskit trace", r.stderr), r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()
