"""The C observation helper: built, used, and giving exactly what the Python observer gives.

The libssl engine runs each handshake (and its callbacks) in a small compiled
helper, ``sesskit/engines/_cobserve.c``, when it was compiled at install; the
Python observer does the same calls in Python.  Both must produce the same
story, number for number, on the same libssl.
"""

from __future__ import annotations

import json

import pytest

import sesskit
from sesskit import scenarios
from sesskit.engines import libssl


def _story_json(name: str, observer: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setenv(libssl.OBSERVER_ENV, observer)
    trace = scenarios.get(name).run("libssl")
    monkeypatch.delenv(libssl.OBSERVER_ENV)
    return json.loads(trace.to_json())


def test_the_c_helper_was_compiled_and_is_used() -> None:
    assert libssl.helper_status() == "C helper", (
        f"the libssl engine observes in Python here: {libssl.helper_status()}. "
        "Install a C compiler and Python's headers, then reinstall sesskit."
    )
    with sesskit.Lab(engine="libssl", explain=False) as lab:
        assert lab._engine.observer == "C helper"


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_helper_and_python_observer_tell_the_same_story(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = _story_json(name, "c", monkeypatch)
    python = _story_json(name, "python", monkeypatch)
    assert helper == python
    assert len(helper["steps"]) > 3  # type: ignore[arg-type]


def test_the_python_observer_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(libssl.OBSERVER_ENV, "python")
    assert libssl.helper_status().startswith("Python")
    with sesskit.Lab(engine="libssl", explain=False) as lab:
        assert lab._engine.observer == "Python"
        assert lab.connect().client.session is not None


def test_a_bad_observer_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(libssl.OBSERVER_ENV, "fast")
    with pytest.raises(sesskit.SesskitError, match="must be auto, c or python"):
        sesskit.Lab(engine="libssl", explain=False)


def test_requiring_a_helper_that_was_not_compiled_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libssl, "_helper_mod", None)
    monkeypatch.setattr(libssl, "_helper_error", "the C observation helper was not compiled (test)")
    monkeypatch.setenv(libssl.OBSERVER_ENV, "c")
    with pytest.raises(sesskit.SesskitError, match="reinstall sesskit with a C compiler"):
        sesskit.Lab(engine="libssl", explain=False)
    monkeypatch.setenv(libssl.OBSERVER_ENV, "auto")  # without the helper, auto observes in Python
    with sesskit.Lab(engine="libssl", explain=False) as lab:
        assert lab._engine.observer == "Python"
        assert not lab.connect().reused


def _second_look(lab: sesskit.Lab) -> None:
    """Read every live session and both caches again, in Python, and compare with the last step."""
    eng = lab._engine
    lib, ffi = eng._lib, eng._ffi
    for s in list(eng._by_addr.values()):
        refs = s.view.references - 1  # minus the observer reference
        owner = eng._ctx_side.get(s.view.owner)
        seen = lab.trace.session(s.label)
        assert (seen.refcount, seen.cache, seen.resumable) == (refs, owner, eng._resumable(s)), s.label
    for side in ("client", "server"):
        ctx = eng._ctx[side]
        cache = lab.trace.cache(side)
        assert cache.size == lib.SSL_CTX_ctrl(ctx, libssl._NUMBER, 0, ffi.NULL)
        stats = [lib.SSL_CTX_ctrl(ctx, code, 0, ffi.NULL) for code in libssl._STAT_CODES]
        assert list(cache.stats.values()) == stats


@pytest.mark.parametrize(
    "config",
    [
        {"tls": "1.2", "tickets": False, "cache_size": 3},
        {"tls": "1.2", "tickets": True, "client_cache": True},
        {"tls": "1.3", "client_cache": True, "cache_size": 2},
    ],
)
def test_what_the_helper_reads_after_a_connect_is_what_a_second_look_reads(config: dict[str, object]) -> None:
    """The helper reads each connect's sessions and statistics in C; Python, looking again, agrees.

    Covers new sessions, a resumed session the engine already held (pinned twice
    during the call), sessions the cache evicts, and the client's TLS 1.3 tickets.
    """
    with sesskit.Lab(engine="libssl", explain=False, **config) as lab:  # type: ignore[arg-type]
        assert lab._engine.observer == "C helper"
        first = lab.connect()
        _second_look(lab)
        first.client.read()
        ref = first.client.get1_session()
        for ep in (first.client, first.server):
            ep.shutdown()
        for ep in (first.server, first.client):
            ep.read()
            ep.free()
        resumed = lab.connect(resume=ref)
        _second_look(lab)
        assert resumed.reused
        for _ in range(4):  # more than the cache holds: evictions inside the connect
            lab.connect()
            _second_look(lab)
