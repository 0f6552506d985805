"""The command line: ``python -m sesskit lab``, ``app`` and ``render``.

``python -m sesskit lab`` opens JupyterLab on the first notebook of this
checkout (``--allow-root`` is added when run as root, as on CI machines and
containers, where JupyterLab otherwise refuses to start).  That JupyterLab saves
the widgets' state into the notebook (``saveState``, off in a plain JupyterLab),
so a saved notebook reopened without a kernel still shows its viewers and
their history: its app settings come from ``sesskit/app/share/lab/settings``
unless this Python's own app settings folder exists or ``--LabApp.app_settings_dir``
is given.

``python -m sesskit app`` serves the notebooks as a Voila app on 127.0.0.1
(see :mod:`sesskit.app`); other arguments go to voila.

``python -m sesskit render STORY|TRACE.json --out FILE``: write a story (run
now) or a saved trace to a file.

The FILE's suffix picks the format: ``.png`` / ``.svg`` (the heap beside the
timeline, at ``--step N`` or the last step), ``.html`` (one self-contained page
with the viewer: no kernel, no network, opens from file://; ``#step=N`` opens
step N), ``.json`` (the trace).  ``python -m sesskit render --list`` lists the
stories.  ``--out`` is checked before a story runs.

Exit codes: 0 written, 2 a bad request (unknown story, suffix, step, a folder
that does not exist, a file that is not a trace...): one line on stderr, no
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .errors import SesskitError

if TYPE_CHECKING:
    from .trace import Trace

ENGINES = ("auto", "libssl", "pyopenssl", "model")


class _Parser(argparse.ArgumentParser):
    """argparse, with a user's mistake said in one line (exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m sesskit", description="sesskit command line")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    render = sub.add_parser(
        "render",
        help="write a story or a saved trace as an HTML page (the viewer), PNG, SVG or JSON",
        description="Run a story (or load a saved trace) and write it to FILE; the suffix picks the "
        "format (.html: a self-contained page with the viewer; .png, .svg; .json).",
    )
    render.add_argument(
        "scenario", nargs="?", metavar="STORY|TRACE.json", help="a story's name (see --list) or a saved trace"
    )
    render.add_argument("--out", metavar="FILE", help="where to write (.png, .svg, .html or .json)")
    render.add_argument("--engine", choices=ENGINES, default="auto", help="which OpenSSL (default: auto)")
    render.add_argument("--step", type=int, help="for .png/.svg: the step to draw (default: the last)")
    render.add_argument("--list", action="store_true", help="list the scenarios and exit")
    lab = sub.add_parser(
        "lab",
        help="open JupyterLab on the first notebook (notebooks/01_tour.ipynb)",
        description="Open JupyterLab on notebooks/01_tour.ipynb of this checkout; "
        "other arguments go to jupyter lab.",
    )
    lab.add_argument(
        "--notebook", default="01_tour.ipynb", help="a notebook in notebooks/ (default: the tour)"
    )
    app = sub.add_parser(
        "app",
        help="open the notebooks as a Voila app on 127.0.0.1 (outputs only, no code)",
        description="Serve notebooks/ of this checkout with Voila on 127.0.0.1: the tree of the notebooks "
        "(01 first), or one notebook with --notebook; nothing is loaded from another host. Other "
        "arguments go to voila (e.g. --no-browser --port=8866).",
    )
    app.add_argument("--notebook", help="serve this notebook of notebooks/ alone (default: the whole tree)")
    return parser


def lab_command(notebook: str, extra: Sequence[str]) -> list[str]:
    """The jupyter lab command line that opens ``notebook`` of this checkout."""
    import os
    from pathlib import Path

    from .app import nodelay_args

    folder = Path(__file__).resolve().parent.parent / "notebooks"
    path = folder / notebook
    if not path.exists():
        raise SesskitError(
            f"no notebook {path}: `python -m sesskit lab` opens the notebooks of a sesskit checkout "
            "(pip install -e . from the repository)"
        )
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        str(path),
        *lab_settings_args(extra),
        *nodelay_args("ServerApp", extra),
        *extra,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")
    return cmd


def lab_settings_args(extra: Sequence[str] = ()) -> list[str]:
    """The JupyterLab arguments that make it save widget state into notebooks (see the module's doc).

    JupyterLab reads ``overrides.d/*.json`` of its app settings folder, by default
    ``<sys.prefix>/share/jupyter/lab/settings`` (absent in a fresh venv); when that folder exists the
    reader's own setup is left alone (Binder's postBuild writes the same file there).
    """
    from .app import SHARE

    if any(a.startswith(("--LabApp.app_settings_dir", "--app_settings_dir")) for a in extra):
        return []
    own = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings"
    if own.exists():
        return []
    return [f"--LabApp.app_settings_dir={SHARE / 'lab' / 'settings'}"]


def _lab(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import importlib.util
    import os

    if importlib.util.find_spec("jupyterlab") is None:
        raise SesskitError("JupyterLab is not installed: pip install -e '.[lab]'")
    cmd = lab_command(args.notebook, extra)
    os.execv(cmd[0], cmd)  # replaces this process: JupyterLab's own signals and exit code
    return 0  # pragma: no cover


def _app(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import importlib.util
    import os

    from .app import app_command, app_env

    if importlib.util.find_spec("voila") is None:
        raise SesskitError("Voila is not installed: pip install -e '.[lab]'")
    cmd = app_command(args.notebook, extra)
    os.execve(cmd[0], cmd, app_env())  # replaces this process: Voila's own signals and exit code
    return 0  # pragma: no cover


def _list() -> int:
    from .scenarios import SCENARIOS

    width = max(len(name) for name in SCENARIOS)
    for name, s in SCENARIOS.items():
        print(f"{name:<{width}}  {s.title}")
    return 0


def _load_trace(path: Path) -> Trace:
    """A saved trace, or a one-line :class:`SesskitError` saying why the file is not one."""
    from .errors import TraceFormatError
    from .trace import Trace

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SesskitError(f"can't read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return Trace.from_json(data)  # bytes: non-UTF-8 is a TraceFormatError too
    except TraceFormatError as exc:
        raise SesskitError(f"{str(path)!r}: {exc}") from None


def _render(args: argparse.Namespace) -> int:
    from .scenarios import SCENARIOS, check_output, get, write

    if not args.scenario or not args.out:
        raise SesskitError("render needs a STORY or TRACE.json and --out FILE (or --list)")
    check_output(args.out, args.step)  # before the story runs: fail fast
    source = Path(args.scenario)
    if args.scenario not in SCENARIOS and (source.suffix.lower() == ".json" or source.exists()):
        trace = _load_trace(source)
        title, summary, what = f"sesskit · {source.stem}", "", source.name
    else:
        scenario = get(args.scenario)
        trace = scenario.run(args.engine)
        title, summary, what = scenario.title, scenario.summary, scenario.name
    try:
        path = write(trace, args.out, step=args.step, title=title, summary=summary)
    except OSError as exc:
        raise SesskitError(f"can't write {args.out!r}: {exc.strerror or exc}") from None
    engine = f"{trace.meta.get('engine')} ({trace.meta.get('openssl_version')})"
    print(f"wrote {path}: {what}, {len(trace)} steps on {engine}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("lab", "app"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "lab":
            return _lab(args, extra)
        if args.command == "app":
            return _app(args, extra)
        return _list() if args.list else _render(args)
    except SesskitError as exc:
        print(f"python -m sesskit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
