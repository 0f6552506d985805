"""House rules: lint, types, pure layers, a fast import, CI runs the README's command."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_ruff_lint() -> None:
    r = run(str(BIN / "ruff"), "check", "sesskit", "tests", "benchmarks")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format() -> None:
    r = run(str(BIN / "ruff"), "format", "--check", "sesskit", "tests", "benchmarks")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy() -> None:
    r = run(str(BIN / "mypy"))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("module", ["sesskit/model.py", "sesskit/trace.py"])
def test_pure_layers_import_only_the_standard_library(module: str) -> None:
    path = ROOT / module
    if not path.exists():
        pytest.fail(f"{module} is missing")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in ("sesskit", "__future__"), f"{module}: {name}"


def test_import_sesskit_is_light() -> None:
    code = (
        "import sys, sesskit; heavy = [m for m in ('cffi', 'OpenSSL', 'cryptography', 'matplotlib', "
        "'ipywidgets', 'ssl') if m in sys.modules]; print(heavy)"
    )
    r = run(sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```\n(python -m venv[^\n]*)\n```", text)


def test_readme_opens_with_the_two_commands() -> None:
    cmds = readme_commands()
    assert len(cmds) >= 2
    assert cmds[0].endswith(".venv/bin/python -m sesskit lab") and "pytest" in cmds[1]
    from sesskit.__main__ import lab_command

    cmd = lab_command("01_tour.ipynb", ["--no-browser"])
    assert cmd[1:4] == ["-m", "jupyterlab", str(ROOT / "notebooks" / "01_tour.ipynb")]
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)  # JupyterLab refuses root without it


def test_the_readme_lab_saves_widget_state_into_notebooks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without saveState a notebook reopened without a kernel shows "model not found" where its viewers were:
    `sesskit lab` gives JupyterLab app settings that turn it on, unless the reader has their own."""
    from sesskit.__main__ import lab_command, lab_settings_args

    monkeypatch.setattr(sys, "prefix", str(tmp_path))  # a fresh venv: no app settings folder of its own
    args = [a for a in lab_command("01_tour.ipynb", []) if a.startswith("--LabApp.app_settings_dir=")]
    assert len(args) == 1
    folder = Path(args[0].partition("=")[2])
    overrides = [json.loads(f.read_text()) for f in (folder / "overrides.d").glob("*.json")]
    assert overrides == [{"@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True}}]
    assert lab_settings_args(["--LabApp.app_settings_dir=/elsewhere"]) == []
    (tmp_path / "share" / "jupyter" / "lab" / "settings").mkdir(parents=True)
    assert lab_settings_args() == []  # the reader's own app settings are left alone
    postbuild = (ROOT / "binder" / "postBuild").read_text()
    assert "lab/settings/overrides.d/sesskit.json" in postbuild  # Binder's JupyterLab: the same file


def test_binders_jupyter_server_gets_the_nodelay_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Binder's postBuild merges the kernel websocket setting `sesskit lab` passes (sesskit/app/nodelay.py)
    into the server's config file, keeping what is there; a jupyter_server started there reads it."""
    pytest.importorskip("jupyter_server")
    from sesskit.app import NODELAY_CONNECTION

    postbuild = (ROOT / "binder" / "postBuild").read_text()
    code = postbuild.split("python - <<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    conf = tmp_path / "etc" / "jupyter"
    conf.mkdir(parents=True)
    (conf / "jupyter_server_config.json").write_text('{"ServerApp": {"root_dir": "/srv"}}')
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    exec(compile(code, "binder/postBuild", "exec"), {})
    saved = json.loads((conf / "jupyter_server_config.json").read_text())
    assert saved == {
        "ServerApp": {"root_dir": "/srv", "kernel_websocket_connection_class": NODELAY_CONNECTION}
    }
    env = dict(os.environ, JUPYTER_CONFIG_PATH=str(conf), JUPYTER_CONFIG_DIR=str(tmp_path / "user"))
    shown = subprocess.run(
        [sys.executable, "-m", "jupyter_server", "--show-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert f".kernel_websocket_connection_class = '{NODELAY_CONNECTION}'" in shown, shown


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci
    assert "set -euo pipefail" in ci
