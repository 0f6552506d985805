"""``python -m sesskit app``: the notebooks as a Voila app, served on this machine only.

Voila runs every notebook of ``notebooks/`` top to bottom in a kernel and shows
only the outputs: the text, the viewers and the Steppers, no code.  The app
opens Voila's tree of the notebooks folder, 01 first (the reading order), so a
workshop room can start anywhere; ``--notebook NAME`` serves one notebook alone.

What it guarantees:

- it listens on 127.0.0.1 only (``--Voila.ip=127.0.0.1``), whatever else is passed;
- the pages ask nothing from any other host: Voila's own lab template links Font
  Awesome from a CDN, so the app uses the ``sesskit`` template shipped here
  (``share/voila/templates/sesskit``), which extends it and drops those links;
- kernel messages reach the browser without Nagle's delay (:mod:`sesskit.app.nodelay`);
- the notebooks run on this interpreter: the ``python3`` kernel spec shipped here
  (``share/kernels/python3``) starts ``python``, which Jupyter replaces by the
  server's own interpreter, so a ``python3`` kernel installed for another Python
  cannot take over.

Both come first on ``JUPYTER_PATH`` for the Voila process.  Voila does not
refuse to run as root (unlike JupyterLab), so no ``--allow-root`` is needed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import SesskitError

#: The jupyter_server kernel websocket connection that turns Nagle's algorithm off (sesskit/app/nodelay.py).
NODELAY_CONNECTION = "sesskit.app.nodelay.NoDelayConnection"

__all__ = ["NODELAY_CONNECTION", "NOTEBOOKS", "SHARE", "TEMPLATE", "app_command", "app_env", "nodelay_args"]

SHARE = Path(__file__).resolve().parent / "share"
TEMPLATE = "sesskit"
NOTEBOOKS = Path(__file__).resolve().parent.parent.parent / "notebooks"


def app_command(notebook: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The Voila command line: the notebooks' tree (or ``notebook`` alone) on 127.0.0.1.

    ``extra`` goes to Voila (e.g. ``--no-browser``, ``--port=8866``); an ``--ip``
    or ``--Voila.ip`` in it is refused, because the app serves this machine only.
    """
    if not NOTEBOOKS.is_dir():
        raise SesskitError(
            f"no folder {NOTEBOOKS}: `python -m sesskit app` serves the notebooks of a sesskit checkout "
            "(pip install -e '.[lab]' from the repository)"
        )
    for arg in extra:
        if arg.split("=", 1)[0] in ("--ip", "--Voila.ip"):
            raise SesskitError(f"{arg}: the app listens on 127.0.0.1 only")
    target = NOTEBOOKS
    if notebook is not None:
        target = NOTEBOOKS / notebook
        if target.suffix != ".ipynb" or not target.is_file():
            names = ", ".join(sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
            raise SesskitError(f"no notebook {notebook!r} in {NOTEBOOKS} (there are: {names})")
    return [
        sys.executable,
        "-m",
        "voila",
        str(target),
        f"--template={TEMPLATE}",
        "--Voila.ip=127.0.0.1",
        *nodelay_args("Voila", extra),
        *extra,
    ]


def nodelay_args(app: str, extra: Sequence[str] = ()) -> list[str]:
    """``app``'s (``ServerApp``, ``Voila``) setting for kernel websockets without Nagle's delay (see
    :mod:`sesskit.app.nodelay`), unless the reader names a connection class of their own."""
    name = f"--{app}.kernel_websocket_connection_class"
    if any(a.startswith(name) for a in extra):
        return []
    return [f"{name}={NODELAY_CONNECTION}"]


def app_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for Voila: the template and kernel spec shipped with sesskit first on JUPYTER_PATH."""
    env = dict(os.environ if environ is None else environ)
    paths = [str(SHARE), *[p for p in env.get("JUPYTER_PATH", "").split(os.pathsep) if p]]
    env["JUPYTER_PATH"] = os.pathsep.join(paths)
    return env
