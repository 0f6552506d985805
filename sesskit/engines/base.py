"""The one seam between :class:`sesskit.Lab` and any OpenSSL (or the model).

An engine performs operations on *names*: SSLs are ``"c1"``/``"s1"`` (client and
server of link 1), sessions are labels ``"S1"``, ``"S2"``... in the order first
seen (DESIGN.md, "Labels").  Every operation returns an :class:`OpResult` whose
``delta`` holds the new state of each session, SSL and cache it changed --
nothing else, so observation costs what the operation changed.

The Lab validates arguments before calling an engine (freed SSLs, dangling refs,
sessions of another lab...): an engine may assume every call is legal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..trace import Delta

__all__ = ["ENGINES", "TLS_VERSIONS", "Engine", "LabConfig", "OpResult"]

TLS_VERSIONS = ("1.2", "1.3")
ENGINES = ("auto", "libssl", "pyopenssl", "model")


@dataclass(frozen=True)
class LabConfig:
    """How the two SSL_CTXs are set up (defaults are OpenSSL's own)."""

    tls: str = "1.3"
    tickets: bool = True
    client_cache: bool = False
    cache_size: int = 20480
    timeout: int = 7200
    # SSL_CTX_set_session_id_context on the server (None: none set); SSL_VERIFY_PEER on the server.
    server_sid_ctx: bytes | None = b"sesskit"
    verify_peer: bool = False


@dataclass
class OpResult:
    """What an operation did.

    ``value``: connect -> ``(client, server, reused)``; get0/get1 -> a session
    label or None; other operations -> None.  ``why`` is a plain-words
    explanation (the model fills it; real engines may leave it empty).
    """

    delta: Delta = field(default_factory=Delta)
    value: Any = None
    why: str = ""


class Engine(Protocol):
    """What every engine implements."""

    name: str
    openssl_version: str

    def connect(self, resume: str | None = None, client: str | None = None) -> OpResult: ...
    def get0(self, ssl: str) -> OpResult: ...
    def get1(self, ssl: str) -> OpResult: ...
    def read(self, ssl: str) -> OpResult: ...
    def shutdown(self, ssl: str) -> OpResult: ...
    def clear(self, ssl: str) -> OpResult: ...
    def free(self, ssl: str) -> OpResult: ...
    def set_session(self, ssl: str, session: str) -> OpResult: ...
    def session_free(self, session: str) -> OpResult: ...
    def advance(self, seconds: int) -> OpResult: ...
    def flush(self, side: str, at: int) -> OpResult: ...
    def initial(self) -> Delta: ...
    def close(self) -> None: ...
