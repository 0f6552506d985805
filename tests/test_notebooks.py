"""The workshop notebooks run top to bottom, and git holds them without outputs.

Each notebook asserts the numbers of its story, so executing it is a test of
the story against the real OpenSSL (``SESSKIT_ENGINE`` unset: engine "auto").
The same run is available as ``python -m pytest --nbmake notebooks/``; this
file makes the README's plain ``python -m pytest`` cover the notebooks too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 120  # seconds for one cell; the whole set takes well under a minute


def tracked_notebooks() -> list[Path]:
    """The notebooks git tracks (all of them when this is not a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", "notebooks/*.ipynb"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return NOTEBOOKS
    return sorted(ROOT / name for name in out.split("\0") if name)


@pytest.fixture(scope="session")
def kernel_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernelspec that runs *this* interpreter, whatever other python3 kernels are installed."""
    name = "sesskit-test-python"
    spec_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / name
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "sesskit tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(spec_dir.parent.parent), old]))
    yield name
    if old is None:
        del os.environ["JUPYTER_PATH"]
    else:
        os.environ["JUPYTER_PATH"] = old


def test_the_workshop_notebooks_are_there() -> None:
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("01_", "02_", "03_", "04_", "05_", "06_", "07_", "08_"):
        assert any(n.startswith(prefix) for n in names), f"notebooks/{prefix}*.ipynb is missing"


@pytest.mark.parametrize("path", tracked_notebooks(), ids=lambda p: p.name)
def test_notebook_outputs_are_stripped_in_git(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} carry outputs; strip them with "
        f"`.venv/bin/jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)}`"
    )


def test_each_notebook_opens_with_what_you_see_and_ends_with_what_to_remember() -> None:
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        assert cells[0].cell_type == "markdown" and "What you will see" in cells[0].source, path.name
        assert cells[-1].cell_type == "markdown" and "What to remember" in cells[-1].source, path.name


def execute(path: Path, kernel_name: str) -> tuple[list[Any], float]:
    """Run the notebook in a fresh kernel; its outputs and the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(path.parent)}},
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}", pytrace=False)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    return outputs, time.perf_counter() - t0


def stream_text(outputs: list[Any]) -> str:
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path: Path, kernel_name: str) -> None:
    outputs, took = execute(path, kernel_name)
    banner = stream_text(outputs)
    assert "engine: " in banner and "OpenSSL" in banner, f"{path.name} does not say which OpenSSL it runs on"
    assert took < 90, f"{path.name} took {took:.1f} s"


# Where no real OpenSSL engine loads (Pyodide, a docs build), Lab() falls back to the model:
# the stories must still hold, and say visibly that these are predictions.
FALLBACK = [p for p in NOTEBOOKS if p.name.startswith(("01_", "08_"))]


@pytest.mark.parametrize("path", FALLBACK, ids=lambda p: p.name)
def test_notebook_falls_back_to_the_model_with_a_visible_note(
    path: Path, kernel_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kernel in which no real engine can be imported, as on a machine without OpenSSL bindings.
    blocked = "".join(f'sys.modules["sesskit.engines.{name}"] = None\n' for name in ("libssl", "pyopenssl"))
    (tmp_path / "sitecustomize.py").write_text("import sys\n" + blocked)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    outputs, _ = execute(path, kernel_name)
    assert "engine: model" in stream_text(outputs)
    notes = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("not a real OpenSSL" in n and "no real OpenSSL engine available" in n for n in notes), notes
