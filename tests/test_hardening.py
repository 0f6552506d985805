"""Issue 16: interrupts, limits and settings.

1. Every operation is atomic with respect to KeyboardInterrupt and any other exception: it is
   recorded whole, or the lab is left exactly as it was; either way the lab goes on agreeing with
   the model and nothing leaks.  The test raises KeyboardInterrupt at the k-th Python call inside
   one operation, for k = 1, 2, ... until the operation runs through uninterrupted, on both
   observers (the C helper and the Python one).
2. The virtual clock has one range, 0 to ten years, on every engine; outside it advance/flush are
   refused before anything moves, and the model and libssl agree at its edges.
3. Lab settings are checked before any OpenSSL object exists.
"""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

import sesskit
from sesskit import InvalidOperation, Lab
from sesskit.engines import libssl
from sesskit.engines.libssl import live_objects
from sesskit.engines.pyopenssl import live_objects as pyopenssl_live_objects
from sesskit.lab import MAX_CACHE_SIZE
from sesskit.trace import MAX_TIME

OBSERVERS = ["c", "python"]
# OpenSSL calls these Python callbacks (the Python observer's, through cffi); an exception raised
# as one is entered cannot reach the Lab: cffi reports it and returns the callback's error value.
# The C helper runs no Python there.  What they call is interrupted like everything else.
CALLBACKS = {"on_new", "on_gen", "on_dec"}


@pytest.fixture(params=OBSERVERS)
def observer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(libssl.OBSERVER_ENV, request.param)
    expected = "C helper" if request.param == "c" else "Python"
    assert libssl.helper_status().startswith(expected)
    return str(request.param)


class Interrupter:
    """A ``sys.settrace`` hook: KeyboardInterrupt (or ``action``) at the k-th Python call, once."""

    def __init__(self, k: int, action: Callable[[], None] | None = None) -> None:
        self.k = k
        self.calls = 0
        self.fired = False
        self.action = action

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or self.fired or frame.f_code.co_name in CALLBACKS:
            return None
        self.calls += 1
        if self.calls == self.k:
            self.fired = True
            if self.action is None:
                raise KeyboardInterrupt(f"interrupted at call {self.k} ({frame.f_code.co_name})")
            self.action()
        return None


def interrupted(k: int, op: Callable[[], object], action: Callable[[], None] | None = None) -> Interrupter:
    """Run ``op`` with the k-th call interrupted; whether and where it was."""
    hook = Interrupter(k, action)
    gc.collect()  # no finalizer of an earlier lab runs (and is interrupted) inside the operation
    gc.disable()
    sys.settrace(hook)
    try:
        op()
    except KeyboardInterrupt:
        assert hook.fired, "KeyboardInterrupt, but not from the hook"
    finally:
        sys.settrace(None)
        gc.enable()
    return hook


# -- the operations, each from a state where it is legal (the same on the model) -------------
def _link(lab: Lab, read: bool = True) -> sesskit.Link:
    link = lab.connect()
    if read:
        link.client.read()  # TLS 1.3: the tickets
    return link


def _resume(lab: Lab) -> Callable[[], object]:
    ref = _link(lab).client.get1_session()
    return lambda: lab.connect(resume=ref)


def _second_shutdown(lab: Lab) -> Callable[[], object]:
    link = _link(lab)
    link.client.shutdown()
    link.server.shutdown()
    return link.client.shutdown  # reads the server's close_notify


def _session_free(lab: Lab) -> Callable[[], object]:
    ref = _link(lab).client.get1_session()
    assert ref is not None
    return ref.free


def _flush(lab: Lab) -> Callable[[], object]:
    _link(lab)
    _link(lab)
    lab.advance(7203)
    _link(lab)
    return lambda: lab.flush("server")


OPS: dict[str, Callable[[Lab], Callable[[], object]]] = {
    "connect": lambda lab: (_link(lab), lab.connect)[1],
    "connect-resume": _resume,
    "get0": lambda lab: _link(lab).client.get0_session,
    "get1": lambda lab: _link(lab).client.get1_session,
    "read": lambda lab: _link(lab, read=False).client.read,
    "shutdown": lambda lab: _link(lab).client.shutdown,
    "shutdown-again": _second_shutdown,
    "clear": lambda lab: _link(lab).client.clear,
    "free": lambda lab: _link(lab).server.free,
    "session-free": _session_free,
    "advance": lambda lab: (_link(lab), _link(lab), lambda: lab.advance(7203))[2],
    "flush": _flush,
}
# TLS 1.3 with tickets (tickets churn sessions inside read); TLS 1.2 with both caches, small
# (evictions inside connect, removals inside flush, clear and free)
CONFIGS: list[dict[str, Any]] = [
    {"tls": "1.3"},
    {"tls": "1.2", "tickets": False, "client_cache": True, "cache_size": 3, "timeout": 7200},
]


def _same(model: Lab, real: Lab, when: str) -> None:
    a, b = model.snapshot(), real.snapshot()
    assert (a.time, a.sessions, a.ssls, a.caches, a.refs) == (b.time, b.sessions, b.ssls, b.caches, b.refs), (
        f"model and libssl disagree {when}"
    )


def _labelled(lab: Lab) -> None:
    engine: Any = lab._engine
    assert all(s.label for s in engine._by_addr.values()), "a session sesskit pins has no label"
    assert engine._now == lab.time, "the engine's clock and lab.time disagree"
    assert not lab._broken


def _every_interruption(
    op_name: str, config: dict[str, Any], action: Callable[[], None] | None = None, engine: str = "libssl"
) -> Iterator[tuple[int, bool, int]]:
    """For k = 1, 2, ...: interrupt the k-th call of the operation; check; yield (k, recorded, calls)."""
    live = pyopenssl_live_objects if engine == "pyopenssl" else live_objects
    base = live()
    k = 0
    while True:
        k += 1
        model = Lab(engine="model", explain=False, **config)
        real = Lab(engine=engine, explain=False, **config)
        for name, value in getattr(real._engine, "model_options", {}).items():
            setattr(model._engine.model, name, value)  # type: ignore[attr-defined]
        op_model, op_real = OPS[op_name](model), OPS[op_name](real)
        _same(model, real, "before the operation")
        before, steps = real.snapshot(), len(real.trace)
        hook = interrupted(k, op_real, action)
        recorded = len(real.trace) == steps + 1
        if recorded:  # it completed: the model does it too
            op_model()
        else:  # exactly as before
            assert len(real.trace) == steps, f"{op_name}, call {k}: {len(real.trace) - steps} steps recorded"
            assert real.snapshot() == before, f"{op_name}, call {k}: not recorded, yet the lab changed"
        _same(model, real, f"after {op_name} interrupted at call {k} ({'recorded' if recorded else 'not'})")
        _labelled(real)
        for lab in (model, real):  # usable: a connect, the clock, a flush
            link = lab.connect()
            link.client.read()
            lab.advance(7)
            if engine != "pyopenssl":  # pyOpenSSL binds no SSL_CTX_flush_sessions
                lab.flush("server")
            link.client.get0_session()
        _same(model, real, f"after {op_name} interrupted at call {k}, and more operations")
        real.close()
        model.close()
        assert live() == base, f"{op_name}, call {k}: leaked {live()} (was {base})"
        yield k, recorded, hook.calls
        if not hook.fired:
            return


@pytest.mark.parametrize("op_name", list(OPS))
@pytest.mark.parametrize("config", CONFIGS, ids=["tls13", "tls12-caches"])
def test_an_interrupt_at_any_call_leaves_the_operation_whole(
    op_name: str, config: dict[str, Any], observer: str
) -> None:
    outcomes = list(_every_interruption(op_name, config))
    assert outcomes[-1][1], "the last run went through uninterrupted and was recorded"
    assert len(outcomes) > 5, "the operation makes several Python calls"
    assert any(not r for _, r, _ in outcomes[:-1]), (
        "an interrupt at the first calls leaves things as they were"
    )
    if op_name not in ("get0", "advance", "flush") or config["tls"] == "1.2":
        # an interrupt after OpenSSL moved: the step is recorded whole (the engine finished it)
        assert any(r for _, r, _ in outcomes[:-1]), "no interrupt landed after OpenSSL had moved"


# pyOpenSSL frees objects through weakref callbacks; when one is the k-th call, Python reports the
# exception ("Exception ignored in") instead of raising it, and that run is not interrupted.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("op_name", ["connect", "read", "get1", "free", "session-free", "advance"])
def test_pyopenssl_operations_are_whole_too(op_name: str) -> None:
    """The same frame and recovery on the OpenSSL inside pyOpenSSL (no SSL_clear or flush there)."""
    outcomes = list(_every_interruption(op_name, CONFIGS[0], engine="pyopenssl"))
    assert outcomes[-1][1] and len(outcomes) > 5


def test_the_issue_16_reproduction_no_longer_wedges_the_lab(observer: str) -> None:
    """KeyboardInterrupt while connect adopts its sessions, then advance (it raised ValueError)."""
    for k in range(1, 80):
        with Lab(engine="libssl", explain=False) as lab, Lab(engine="model", explain=False) as model:
            interrupted(k, lab.connect)
            if len(lab.trace) == 2:
                model.connect()
            lab.advance(1)
            model.advance(1)
            _same(model, lab, f"connect interrupted at call {k}, then advance(1)")


@pytest.mark.parametrize("op_name", ["connect", "read", "advance", "session-free"])
def test_ctrl_c_waits_until_the_step_is_recorded(op_name: str, observer: str) -> None:
    """A real SIGINT at any call: the operation completes, then KeyboardInterrupt is raised."""
    handler = signal.getsignal(signal.SIGINT)
    began = False
    for k, recorded, _ in _every_interruption(
        op_name, CONFIGS[0], lambda: signal.raise_signal(signal.SIGINT)
    ):
        # a SIGINT before the operation began stops it there (nothing moved); after, it completes
        assert recorded or not began, f"SIGINT at call {k}: the operation began but was not completed"
        began = began or recorded
        assert signal.getsignal(signal.SIGINT) is handler, "the SIGINT handler was not restored"
    assert began


def test_ctrl_c_between_operations_is_not_delayed() -> None:
    with Lab(engine="libssl", explain=False) as lab:
        lab.connect()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
            for _ in range(1000):  # the handler runs at once, not at the next operation
                pass
        assert len(lab.trace) == 2


def test_a_model_lab_interrupted_is_whole_or_says_it_can_no_longer_be_trusted() -> None:
    """The model cannot finish an operation stopped half-way: the lab then refuses to go on."""
    outcomes = set()
    for k in range(1, 400):
        with Lab(engine="model", explain=False, tls="1.2", tickets=False) as lab:
            lab.connect()
            steps, before = len(lab.trace), lab.snapshot()
            hook = interrupted(k, lab.connect)
            if lab._broken:
                outcomes.add("broken")
                with pytest.raises(InvalidOperation, match="close this lab"):
                    lab.advance(1)
            else:
                outcomes.add("whole")
                assert len(lab.trace) == steps + 1 or lab.snapshot() == before
                lab.advance(1)
                lab.connect()
            if not hook.fired:
                break
    assert outcomes == {"broken", "whole"}


# -- 2. the virtual clock's range ----------------------------------------------------------------
ENGINES = ["model", "libssl", "pyopenssl"]


@pytest.mark.parametrize("engine", ENGINES)
def test_time_outside_its_range_is_refused_before_anything_moves(engine: str) -> None:
    with Lab(engine=engine, explain=False, tls="1.2") as lab:
        lab.connect()
        lab.advance(MAX_TIME - 10)
        steps, snap = len(lab.trace), lab.snapshot()
        for seconds in (11, 2**62, 2**63, 10**400):
            with pytest.raises(InvalidOperation, match="ten years"):
                lab.advance(seconds)
        if engine != "pyopenssl":  # pyOpenSSL binds no SSL_CTX_flush_sessions
            for at in (-1, MAX_TIME + 1, 2**63, -(2**63)):
                with pytest.raises(InvalidOperation, match="virtual clock"):
                    lab.flush(at=at)
        assert (len(lab.trace), lab.snapshot()) == (steps, snap)
        lab.advance(10)  # the very end is reachable, and the engine agrees with lab.time
        assert lab.time == MAX_TIME
        assert lab.connect().client.get0_session() is not None
        if engine != "pyopenssl":
            lab.flush(at=MAX_TIME)
            lab.flush(at=0)


def _edges(lab: Lab) -> Iterator[str]:
    """A story at the ends of the clock; yields after each step (the caller compares)."""
    first = lab.connect()
    first.client.read()
    old = first.client.get1_session()
    yield "connect at 0"
    lab.flush("client", at=MAX_TIME)
    yield "flush at the end with a session of age 0"
    lab.advance(MAX_TIME - 14)  # a multiple of 7: never within seconds of an expiry
    yield "advance to the end - 14"
    assert old is not None
    lab.connect(resume=old)
    yield "resume a session aged almost ten years"
    lab.flush("server", at=MAX_TIME)
    yield "flush at the end"
    new = lab.connect()
    new.client.read()
    ref = new.client.get1_session()
    assert ref is not None
    lab.advance(14)
    yield "advance to the very end"
    lab.flush("server", at=MAX_TIME)
    lab.flush("client", at=MAX_TIME)
    yield "flush at the very end"
    link = lab.connect(resume=ref)
    link.client.read()
    yield "resume at the very end"
    lab.flush("server", at=0)
    lab.flush("client", at=0)
    yield "flush at time 0, ten years back"


@pytest.mark.parametrize(
    "config",
    [
        {"tls": "1.2", "tickets": False, "client_cache": True, "timeout": 7200},
        {"tls": "1.2", "tickets": False, "client_cache": True, "timeout": MAX_TIME},
        {"tls": "1.3", "tickets": True, "client_cache": True, "timeout": 7200},
        {"tls": "1.3", "tickets": False, "client_cache": True, "timeout": MAX_TIME},
        {"tls": "1.2", "tickets": True, "timeout": MAX_TIME},
    ],
    ids=[
        "tls12-stateful",
        "tls12-longest-timeout",
        "tls13-tickets",
        "tls13-stateful-longest",
        "tls12-tickets",
    ],
)
def test_model_and_libssl_agree_at_the_ends_of_the_clock(config: dict[str, Any]) -> None:
    with (
        Lab(engine="model", explain=False, **config) as model,
        Lab(engine="libssl", explain=False, **config) as real,
    ):
        for a, b in zip(_edges(model), _edges(real), strict=True):
            assert a == b
            _same(model, real, f"after '{a}'")
            reused = [lab.links[-1].reused for lab in (model, real)]
            assert reused[0] == reused[1], f"after '{a}': reused {reused}"


# -- 3. settings ----------------------------------------------------------------------------------
BAD_SETTINGS = [
    {"engine": "LIBSSL"},
    {"engine": None},
    {"engine": ["libssl"]},
    {"tls": 1.3},
    {"tls": "1.4"},
    {"tls": b"1.3"},
    {"tickets": "False"},
    {"tickets": 0},
    {"client_cache": "yes"},
    {"client_cache": None},
    {"explain": "no"},
    {"cache_size": 2**63},
    {"cache_size": MAX_CACHE_SIZE + 1},
    {"cache_size": -1},
    {"cache_size": 1.5},
    {"cache_size": "10"},
    {"cache_size": True},
    {"timeout": 2**63},
    {"timeout": MAX_TIME + 1},
    {"timeout": 0},
    {"timeout": -5},
    {"timeout": 7200.0},
    {"timeout": False},
]


@pytest.mark.parametrize("engine", ["libssl", "model"])
@pytest.mark.parametrize("bad", BAD_SETTINGS, ids=lambda d: "-".join(f"{k}={v!r}" for k, v in d.items()))
def test_a_bad_setting_is_refused_up_front_and_leaks_nothing(engine: str, bad: dict[str, Any]) -> None:
    base = live_objects()
    settings = {"engine": engine, **bad}
    name = next(iter(bad))
    with pytest.raises(InvalidOperation, match=name):
        Lab(**settings)
    assert live_objects() == base


def test_the_largest_settings_work_on_libssl() -> None:
    with Lab(engine="libssl", cache_size=MAX_CACHE_SIZE, timeout=MAX_TIME, tls="1.2", tickets=False) as lab:
        link = lab.connect()
        assert lab.snapshot().caches["server"].size == 1
        ref = link.client.get1_session()
        lab.advance(MAX_TIME - 7)
        assert ref is not None and lab.connect(resume=ref).reused
