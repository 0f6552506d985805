"""The command line: ``python -m sesskit lab`` and ``python -m sesskit render``.

``python -m sesskit lab`` opens JupyterLab on the first notebook of this
checkout (``--allow-root`` is added when run as root, as on CI machines and
containers, where JupyterLab otherwise refuses to start).

``python -m sesskit render SCENARIO --out FILE``: write a story to a file.

The FILE's suffix picks the format: ``.png`` / ``.svg`` (the heap beside the
timeline, at ``--step N`` or the last step), ``.html`` (a self-contained
animation: no kernel, no network), ``.json`` (the trace).
``python -m sesskit render --list`` lists the scenarios.

Exit codes: 0 written, 2 a bad request (unknown scenario, suffix, step...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import SesskitError

ENGINES = ("auto", "libssl", "pyopenssl", "model")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sesskit", description="sesskit command line")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser(
        "render",
        help="run a story and write it as PNG, SVG, HTML animation or JSON trace",
        description="Run a story (a scenario) and write it to FILE; the suffix picks the format "
        "(.png, .svg, .html, .json).",
    )
    render.add_argument("scenario", nargs="?", help="the scenario's name (see --list)")
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
    return parser


def lab_command(notebook: str, extra: Sequence[str]) -> list[str]:
    """The jupyter lab command line that opens ``notebook`` of this checkout."""
    import os
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "notebooks"
    path = folder / notebook
    if not path.exists():
        raise SesskitError(
            f"no notebook {path}: `python -m sesskit lab` opens the notebooks of a sesskit checkout "
            "(pip install -e . from the repository)"
        )
    cmd = [sys.executable, "-m", "jupyterlab", str(path), *extra]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")
    return cmd


def _lab(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import importlib.util
    import os

    if importlib.util.find_spec("jupyterlab") is None:
        raise SesskitError("JupyterLab is not installed: pip install -e '.[lab]'")
    cmd = lab_command(args.notebook, extra)
    os.execv(cmd[0], cmd)  # replaces this process: JupyterLab's own signals and exit code
    return 0  # pragma: no cover


def _list() -> int:
    from .scenarios import SCENARIOS

    width = max(len(name) for name in SCENARIOS)
    for name, s in SCENARIOS.items():
        print(f"{name:<{width}}  {s.title}")
    return 0


def _render(args: argparse.Namespace) -> int:
    from .scenarios import check_output, get, write

    if not args.scenario or not args.out:
        raise SesskitError("render needs a SCENARIO and --out FILE (or --list)")
    scenario = get(args.scenario)
    check_output(args.out, args.step)  # before the story runs: fail fast
    trace = scenario.run(args.engine)
    path = write(trace, args.out, step=args.step, title=scenario.title, summary=scenario.summary)
    engine = f"{trace.meta.get('engine')} ({trace.meta.get('openssl_version')})"
    print(f"wrote {path}: {scenario.name}, {len(trace)} steps on {engine}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "lab":
            return _lab(args, extra)
        return _list() if args.list else _render(args)
    except SesskitError as exc:
        print(f"python -m sesskit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
