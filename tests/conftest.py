"""Shared fixtures: the engines every OpenSSL fact is checked on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache

import pytest

import sesskit

# The model predicts; the real engine is held to the same facts, observed by the
# C helper and by the Python observer (tests/test_helper.py).
FACT_ENGINES = ["model", "libssl", "libssl/python-observer"]


@cache
def engine_unavailable(name: str) -> str:
    """Why ``name`` cannot run here ("" if it can)."""
    try:
        sesskit.Lab(engine=name, explain=False).close()
    except (sesskit.SesskitError, OSError, ImportError) as exc:
        return f"{name} engine unavailable: {exc}"
    return ""


@pytest.fixture(params=FACT_ENGINES)
def fact_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name, _, observer = str(request.param).partition("/")
    why = engine_unavailable(name)
    if why:
        pytest.skip(why)
    if observer:
        monkeypatch.setenv("SESSKIT_OBSERVER", "python")
    return name


@pytest.fixture
def make_lab(fact_engine: str) -> Iterator[Callable[..., sesskit.Lab]]:
    """``make_lab(tls=..., ...)``: a Lab on the engine under test, closed afterwards."""
    labs: list[sesskit.Lab] = []

    def make(**config: object) -> sesskit.Lab:
        lab = sesskit.Lab(engine=fact_engine, explain=False, **config)  # type: ignore[arg-type]
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()
