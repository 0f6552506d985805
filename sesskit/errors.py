"""Typed errors: each says what was attempted, in which state, and the OpenSSL rule."""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "DanglingPointer",
    "InvalidOperation",
    "SesskitError",
    "TraceFormatError",
    "UnsupportedOperation",
]


class SesskitError(Exception):
    """Base class of every error sesskit raises on purpose."""


class InvalidOperation(SesskitError):
    """The operation makes no sense in the object's current state (or is unsafe in C)."""


class DanglingPointer(InvalidOperation):
    """A get0 (or released get1) pointer whose SSL_SESSION was freed.

    In C, reading through it would be a use-after-free: undefined behaviour.
    """


class UnsupportedOperation(SesskitError):
    """The chosen engine cannot perform this operation; the message names one that can."""


class CalibrationError(SesskitError):
    """A real engine could not locate or verify a struct field; it refuses to run."""


class TraceFormatError(SesskitError, ValueError):
    """A trace file (or dict) is not a valid sesskit trace; the message names the step and field."""
