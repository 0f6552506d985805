"""The notebooks' stories as small functions, and how to write one to a file.

Each :class:`Scenario` is a Lab configuration plus a function that plays the
story on a :class:`~sesskit.Lab`, using the public API only.  The same story
runs on any engine: the real OpenSSL gives the numbers, the model predicts the
same ones.  ``python -m sesskit render NAME --out FILE`` runs one and writes it
as a figure (PNG/SVG), a self-contained HTML page with the viewer, or a JSON trace.

>>> from sesskit import scenarios
>>> trace = scenarios.run("tour", engine="model")
>>> scenarios.write(trace, "tour.html")            # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidOperation, SesskitError
from .lab import Lab
from .trace import Trace

__all__ = [
    "FORMATS",
    "SCENARIOS",
    "BadOutput",
    "Scenario",
    "UnknownFormat",
    "UnknownScenario",
    "check_output",
    "get",
    "run",
    "write",
]

FORMATS = (".png", ".svg", ".html", ".json")


class UnknownScenario(SesskitError, LookupError):
    """No scenario has that name."""


class UnknownFormat(SesskitError, ValueError):
    """A file suffix :func:`write` cannot write."""


class BadOutput(SesskitError, ValueError):
    """A path :func:`write` cannot write to (a missing folder, a folder, a file in the way)."""


@dataclass(frozen=True)
class Scenario:
    """One story: a Lab configuration and the operations it plays.

    Attributes
    ----------
    name : str
        The name ``python -m sesskit render`` knows it by (e.g. ``"tour"``).
    title : str
        One line for a heading.
    play : callable
        ``play(lab)`` performs the story's operations on ``lab``.
    config : mapping
        Keyword arguments for :class:`~sesskit.Lab` (``tls``, ``tickets``, ...).
    """

    name: str
    title: str
    play: Callable[[Lab], None]
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """What the story shows (the play function's docstring)."""
        return inspect.cleandoc(self.play.__doc__ or "")

    def lab(self, engine: str = "auto") -> Lab:
        """A new Lab configured for this story."""
        return Lab(engine=engine, **self.config)

    def run(self, engine: str = "auto") -> Trace:
        """Play the story on a new Lab and return its trace (the Lab is closed)."""
        with self.lab(engine) as lab:
            self.play(lab)
            trace = lab.trace
        trace.meta["scenario"] = self.name
        return trace


# -- the stories -----------------------------------------------------------------
def tour(lab: Lab) -> None:
    """A stateful TLS 1.2 server cache from handshake to expiry.

    A full handshake puts the server's session in the server cache (refcount 2:
    the SSL and the cache).  A get0 pointer borrows, a get1 pointer owns +1.
    Both sides close cleanly, so freeing the SSLs keeps the session cached; the
    client resumes with its get1 session.  Then the clock passes the timeout and
    SSL_CTX_flush_sessions frees the server session: the borrowed pointer dangles.
    """
    link = lab.connect()
    borrowed = link.server.get0_session()
    owned = link.client.get1_session()
    _close(link)
    again = lab.connect(resume=owned)
    assert again.reused and borrowed is not None and owned is not None
    owned.free()
    _close(again)
    lab.advance(lab.config.timeout + 1)
    lab.flush("server")


def get0_vs_get1(lab: Lab) -> None:
    """SSL_get0_session borrows; SSL_get1_session takes a reference you must free.

    Both pointers name the client's session.  After SSL_free of the client the
    get1 reference alone keeps the session alive, so the get0 pointer still
    works -- by luck.  SSL_SESSION_free of the get1 reference frees the session
    and the get0 pointer dangles.
    """
    link = lab.connect()
    borrowed = link.client.get0_session()
    owned = link.client.get1_session()
    assert borrowed is not None and owned is not None
    _close(link)
    owned.free()


def clean_vs_dirty_close(lab: Lab) -> None:
    """SSL_free after close_notify keeps a session; SSL_free without it removes it.

    The first connection shuts down cleanly: its server session stays cached
    (and resumable).  The second is freed without close_notify: OpenSSL calls
    the session "bad", removes it from the cache and frees it.  A dirty close on
    the client marks the client's saved session not resumable: the next connect
    with it silently does a full handshake.
    """
    clean = lab.connect()
    clean.server.get0_session()
    _close(clean)
    dirty = lab.connect()
    dirty.server.get0_session()
    saved = dirty.client.get1_session()
    dirty.server.free()
    dirty.client.free()
    retry = lab.connect(resume=saved)
    assert saved is not None and not retry.reused
    saved.free()
    _close(retry)


def time_and_flush(lab: Lab) -> None:
    """Sessions expire: SSL_CTX_flush_sessions removes those strictly past their timeout.

    Two sessions are cached 200 virtual seconds apart (timeout 300 s).  A flush
    at t=350 removes only the older one.  The younger one, stamped at t=200,
    expires at 500: a flush *at* 500 keeps it (the test is strict), a flush at
    501 removes and frees it.
    """
    _close(lab.connect())
    lab.advance(200)
    _close(lab.connect())
    lab.advance(150)
    lab.flush("server")
    lab.flush("server", at=500)
    lab.flush("server", at=501)


def tls13_tickets(lab: Lab) -> None:
    """TLS 1.3: each NewSessionTicket replaces the client's session with a new object.

    Right after the handshake the client's session is not resumable yet.  A get1
    reference taken then keeps that first object alive, but it can never resume.
    SSL_read processes the server's two tickets: two new session objects, each
    replacing the last.  The latest one resumes; the resumption brings one more
    ticket.
    """
    link = lab.connect()
    early = link.client.get1_session()
    link.client.read()
    ticket = link.client.get1_session()
    assert early is not None and ticket is not None and not early.resumable
    _close(link)
    early.free()
    again = lab.connect(resume=ticket)
    assert again.reused
    again.client.read()
    ticket.free()
    _close(again)


def cache_limits(lab: Lab) -> None:
    """A cache of size 3 holds only 2 sessions (3.0 since PR #18905; 1.1.1 holds 3).

    Four clean connections each add a server session.  When the cache is full
    the session at the tail (the next to expire) is evicted -- cache_full counts
    it -- and, with no other holder, freed.
    """
    for _ in range(4):
        _close(lab.connect())


def one_session_one_ctx(lab: Lab) -> None:
    """An SSL_SESSION belongs to one SSL_CTX: sesskit refuses to resume it elsewhere.

    The client's session (cached in its client cache) resumes on its own lab.
    Offering it to a second lab's SSL_CTX, or offering the *server's* session to
    a client, is refused with a clear error.  In C (OpenSSL 3.0) the first would
    resume and corrupt nothing -- what corrupts a cache's list is a session
    *added* to a second cache (SSL_CTX_add_session) -- and the second fails the
    handshake on the session id context check, not because of the cache.
    """
    link = lab.connect()
    mine = link.client.get1_session()
    theirs = link.server.get0_session()
    assert mine is not None and theirs is not None
    _close(link)
    with Lab(engine=lab.engine_name, explain=False, **_config_of(lab)) as other:
        _refused(lambda: other.connect(resume=mine))
    _refused(lambda: lab.connect(resume=theirs))
    again = lab.connect(resume=mine)
    assert again.reused
    mine.free()
    _close(again)


def _close(link: Any) -> None:
    """Both sides send close_notify, then both SSLs are freed (a clean close)."""
    link.client.shutdown()
    link.server.shutdown()
    link.client.free()
    link.server.free()


def _config_of(lab: Lab) -> dict[str, Any]:
    c = lab.config
    return {
        "tls": c.tls,
        "tickets": c.tickets,
        "client_cache": c.client_cache,
        "cache_size": c.cache_size,
        "timeout": c.timeout,
        "server_sid_ctx": c.server_sid_ctx,
        "verify_peer": c.verify_peer,
    }


def _refused(attempt: Callable[[], object]) -> None:
    try:
        attempt()
    except InvalidOperation:
        return
    raise AssertionError("sesskit accepted an operation OpenSSL forbids")


_STATEFUL_12 = {"tls": "1.2", "tickets": False}

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("tour", "A tour: one session from handshake to flush", tour, _STATEFUL_12),
        Scenario("get0-vs-get1", "get0 borrows, get1 owns", get0_vs_get1, _STATEFUL_12),
        Scenario("clean-vs-dirty-close", "Clean and dirty close", clean_vs_dirty_close, _STATEFUL_12),
        Scenario(
            "time-flush", "Time and SSL_CTX_flush_sessions", time_and_flush, {**_STATEFUL_12, "timeout": 300}
        ),
        Scenario("tls13-tickets", "TLS 1.3 tickets replace the session", tls13_tickets, {"tls": "1.3"}),
        Scenario("cache-limits", "Cache size and eviction", cache_limits, {**_STATEFUL_12, "cache_size": 3}),
        Scenario(
            "one-session-one-ctx",
            "One session, one SSL_CTX",
            one_session_one_ctx,
            {**_STATEFUL_12, "client_cache": True},
        ),
    )
}


def get(name: str) -> Scenario:
    """The scenario called ``name``; :class:`UnknownScenario` lists the names if none is."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownScenario(f"no scenario called {name!r}: choose one of {', '.join(SCENARIOS)}") from None


def run(name: str, engine: str = "auto") -> Trace:
    """Play scenario ``name`` on a new Lab (engine ``engine``) and return its trace."""
    return get(name).run(engine)


# -- writing a story ---------------------------------------------------------------
def check_output(path: str | Path, step: int | None = None) -> str:
    """The format ``path``'s suffix names (``".png"``...), checked before any story runs.

    Raises :class:`UnknownFormat` for a suffix it cannot write (or a step given to a format without
    steps) and :class:`BadOutput` when ``path`` cannot be written: a folder that does not exist, a
    folder in its place, a file where a folder should be.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UnknownFormat(
            f"can't write {str(path)!r}: the suffix picks the format, one of {', '.join(FORMATS)}"
        )
    if step is not None and suffix not in (".png", ".svg"):
        raise UnknownFormat(f"a step (--step {step}) applies to .png and .svg only, not {suffix}")
    if path.is_dir():
        raise BadOutput(f"can't write {str(path)!r}: it is a folder")
    folder = path.parent
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                raise BadOutput(f"can't write {str(path)!r}: {str(above)!r} is a file, not a folder")
            break
    if not folder.is_dir():
        raise BadOutput(f"can't write {str(path)!r}: the folder {str(folder)!r} does not exist")
    return suffix


def write(
    trace: Trace, path: str | Path, step: int | None = None, title: str | None = None, summary: str = ""
) -> Path:
    """Write ``trace`` to ``path`` in the format its suffix names.

    ``.png`` / ``.svg``: the heap at ``step`` (default: the last) beside the
    timeline (matplotlib); ``.html``: one self-contained page with the viewer
    (opens from ``file://``, requests nothing; ``#step=N`` opens step N);
    ``.json``: the trace (load it with :meth:`Trace.from_json <sesskit.Trace.from_json>`).
    ``step`` applies to figures only.
    """
    path = Path(path)
    suffix = check_output(path, step)
    if step is not None and not -len(trace) <= step < len(trace):
        raise InvalidOperation(f"step {step} is outside this trace (0..{len(trace) - 1})")
    if suffix in (".png", ".svg"):
        from .plot import save

        return save(trace, path, step)
    if suffix == ".json":
        path.write_text(trace.to_json(indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        from .viewer.page import page

        name = trace.meta.get("scenario")
        page_title = title or (f"sesskit · {name}" if name else "sesskit")
        path.write_text(page(trace, page_title, summary), encoding="utf-8")
    return path
