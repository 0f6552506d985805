"""Binder: ``binder/requirements.txt`` installs into a fresh venv and runs notebook 01 on the real libssl.

This does what repo2docker does: a new environment, ``pip install -r
binder/requirements.txt`` from the repository root (so its line ``.`` is
sesskit itself), then the notebook executed top to bottom by that
environment's own kernel.  It takes a minute or two (pip's cache helps).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
NOTEBOOK = ROOT / "notebooks" / "01_tour.ipynb"

# Appended to the notebook: which engine did every Lab it made really use?
PROBE = """\
import gc, json, sys
import sesskit
labs = [o for o in gc.get_objects() if isinstance(o, sesskit.Lab)]
print("SESSKIT-BINDER " + json.dumps({
    "prefix": sys.prefix,
    "sesskit": sesskit.__file__,
    "engines": sorted({lab.engine_name for lab in labs}),
    "openssl": sorted({lab.openssl_version for lab in labs}),
    "notes": sorted({lab.engine_note for lab in labs if lab.engine_note}),
}))
"""

RUNNER = """\
import sys
import nbformat
from nbclient import NotebookClient

src, probe, out = sys.argv[1:4]
nb = nbformat.read(src, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(open(probe).read()))
NotebookClient(
    nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[4]}}
).execute()
nbformat.write(nb, out)
"""


def binder_python() -> str:
    """The interpreter runtime.txt asks for (python-3.12) if this machine has it, else python3."""
    version = (BINDER / "runtime.txt").read_text().strip().removeprefix("python-")
    home = os.path.expanduser("~")
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(f"{home}/.pyenv/versions/{version}*/bin/python{version}"))
    for exe in filter(None, candidates):
        ok = subprocess.run([exe, "-c", "import ssl, venv, ensurepip"], capture_output=True)
        if ok.returncode == 0:
            return exe
    return "python3"


def clean_env(venv: Path, home: Path) -> dict[str, str]:
    """The environment a Binder user has: this venv first on PATH, no outside Jupyter or sesskit settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTER", "IPYTHON", "PYTHON", "SESSKIT", "MPL")) and k != "VIRTUAL_ENV"
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["JUPYTER_DATA_DIR"] = str(home / "data")  # no user-level kernelspec can take over
    env["JUPYTER_CONFIG_DIR"] = str(home / "config")
    env["IPYTHONDIR"] = str(home / "ipython")
    env["MPLCONFIGDIR"] = str(home / "mpl")
    return env


def test_requirements_are_pinned_and_install_the_repository() -> None:
    lines = [line.split("#")[0].strip() for line in (BINDER / "requirements.txt").read_text().splitlines()]
    lines = [line for line in lines if line]
    assert "." in lines
    pins = {re.split(r"==", line)[0].lower(): line for line in lines if line != "."}
    for line in pins.values():
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.+!\-]*", line), f"not pinned: {line}"
    for need in ("jupyterlab", "ipywidgets", "matplotlib", "voila", "ipykernel"):
        assert need in pins, need
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.12"


@pytest.mark.slow
def test_notebook_01_runs_in_a_fresh_binder_environment_on_libssl(tmp_path: Path) -> None:
    assert NOTEBOOK.exists(), NOTEBOOK
    venv = tmp_path / "venv"
    python = binder_python()
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    env = clean_env(venv, tmp_path)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--progress-bar=off", "-r", "binder/requirements.txt"],
        cwd=ROOT,  # as repo2docker: "." is the repository root
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]

    # The Binder links open /lab and /voila/render: both server extensions must be enabled there.
    ext = subprocess.run(
        [str(venv / "bin" / "jupyter"), "server", "extension", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    listing = ext.stdout + ext.stderr
    for name in ("jupyterlab", "voila"):
        assert re.search(rf"^\s*{name}\b.*enabled", listing, re.M), listing

    # repo2docker runs binder/postBuild next: its JupyterLab then saves widget state into notebooks.
    post = subprocess.run(
        ["bash", str(BINDER / "postBuild")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert post.returncode == 0, post.stdout[-3000:] + post.stderr[-3000:]
    overrides = venv / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "sesskit.json"
    assert json.loads(overrides.read_text())["@jupyter-widgets/jupyterlab-manager:plugin"] == {
        "saveState": True
    }

    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "run.py").write_text(RUNNER)
    out = tmp_path / "01_executed.ipynb"
    run = subprocess.run(
        [
            str(venv / "bin" / "python"),
            str(tmp_path / "run.py"),
            str(NOTEBOOK),
            str(tmp_path / "probe.py"),
            str(out),
            str(NOTEBOOK.parent),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]

    nb = json.loads(out.read_text())
    texts = [
        "".join(o.get("text", ""))
        for cell in nb["cells"]
        if cell["cell_type"] == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream"
    ]
    found = [t for t in texts if "SESSKIT-BINDER " in t]
    assert found, "the probe cell printed nothing"
    facts = json.loads(found[-1].split("SESSKIT-BINDER ", 1)[1])
    assert Path(facts["prefix"]).resolve() == venv.resolve(), facts  # the venv's own kernel ran it
    assert Path(facts["sesskit"]).resolve().is_relative_to(venv.resolve()), facts  # "." was installed
    assert facts["engines"] == ["libssl"], facts
    assert facts["notes"] == [], facts
    assert all(v.startswith("OpenSSL ") for v in facts["openssl"]), facts
    errors = [o for cell in nb["cells"] for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    print(f"binder venv from {python}: engines {facts['engines']} {facts['openssl']}")


def test_readme_opens_notebook_01_on_binder_in_lab_and_voila() -> None:
    from urllib.parse import parse_qs, urlparse

    readme = (ROOT / "README.md").read_text()
    links = set(re.findall(r"\((https://mybinder\.org/v2/gh/[^)\s]+)\)", readme))
    paths = {}
    for link in links:
        query = parse_qs(urlparse(link).query)
        for key, values in query.items():
            paths[key] = values[0]
    assert paths["labpath"] == "notebooks/01_tour.ipynb"
    assert paths["urlpath"] == "voila/render/notebooks/01_tour.ipynb"
    assert (ROOT / paths["labpath"]).exists()
    assert readme.index("## Try it") > readme.index("python -m pytest")  # below the two commands
