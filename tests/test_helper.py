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
