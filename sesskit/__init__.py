"""sesskit: step through the life of OpenSSL TLS sessions and watch every refcount.

``import sesskit`` stays fast: OpenSSL, cffi, matplotlib and ipywidgets load
only when an engine, a plot or a widget is first used.
"""

from __future__ import annotations

from .errors import (
    CalibrationError,
    DanglingPointer,
    InvalidOperation,
    SesskitError,
    UnsupportedOperation,
)
from .lab import Endpoint, Lab, Link, SessionRef
from .trace import CacheState, Delta, RefState, SessionState, Snapshot, SSLState, Step, Trace

__version__ = "0.1.0"

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
    "UnsupportedOperation",
    "__version__",
]
