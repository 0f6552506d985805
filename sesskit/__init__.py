"""sesskit: step through the life of OpenSSL TLS sessions and watch every refcount.

``import sesskit`` stays fast: OpenSSL, cffi, matplotlib and ipywidgets load
only when an engine, a plot or a widget is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import viewer
from .errors import (
    CalibrationError,
    DanglingPointer,
    InvalidOperation,
    SesskitError,
    TraceFormatError,
    UnsupportedOperation,
)
from .lab import Endpoint, Lab, Link, SessionRef
from .trace import CacheState, Delta, RefState, SessionState, Snapshot, SSLState, Step, Trace

__version__ = "0.1.0"


if TYPE_CHECKING:
    from .watch import Watch, watch


def __getattr__(name: str) -> object:
    # watch() loads pyOpenSSL and cffi: only when first used, so `import sesskit` stays light.
    if name in ("watch", "Watch"):
        import importlib

        module = importlib.import_module(".watch", __name__)
        globals()["watch"], globals()["Watch"] = module.watch, module.Watch  # the function, not the module
        return globals()[name]
    raise AttributeError(f"module 'sesskit' has no attribute {name!r}")


__all__ = [
    "CacheState",
    "CalibrationError",
    "DanglingPointer",
    "Delta",
    "Endpoint",
    "InvalidOperation",
    "Lab",
    "Link",
    "RefState",
    "SSLState",
    "SessionRef",
    "SessionState",
    "SesskitError",
    "Snapshot",
    "Step",
    "Trace",
    "TraceFormatError",
    "UnsupportedOperation",
    "Watch",
    "__version__",
    "viewer",
    "watch",
]
