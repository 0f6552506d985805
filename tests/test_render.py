"""``python -m sesskit render``: every format written and valid; the stories agree across engines."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import engine_unavailable

import sesskit
from sesskit import scenarios

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


def test_html_is_self_contained(tmp_path: Path) -> None:
    out = tmp_path / "tickets.html"
    r = render("tls13-tickets", "--out", str(out), "--engine", "model")
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I), "external asset"
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert "@import" not in page and "url(" not in page
    frames = page.count("data:image/png;base64")
    assert frames == len(scenarios.run("tls13-tickets", "model"))


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
        (["tour"], "needs a SCENARIO and --out FILE"),
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


def test_offline_jshtml_refuses_unknown_network_assets() -> None:
    with pytest.raises(ValueError, match="network resource"):
        scenarios.offline_jshtml('<script src="https://example.invalid/x.js"></script>')
