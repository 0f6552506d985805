"""The model against the real libssl: random operation sequences, identical snapshots.

A Hypothesis state machine runs the same operations on ``Lab(engine="model")``
and ``Lab(engine="libssl")`` with the same configuration and requires, after
every step, the same snapshot (sessions, SSLs, caches with their order and
statistics, time), the same ``link.reused`` and the same error type when the
Lab refuses an operation.  Illegal operations are tried on purpose: both labs
must refuse them alike.

Time: lookups in the real engine compare with the real clock, which runs a
second or so ahead of the virtual one over a lab's life.  Advances are
multiples of 7 s and the timeouts (100, 7200) are not, so no session age ever
lands within a few seconds of an expiry boundary; ``flush(at=...)`` is exact
on both engines and probes the boundaries directly.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

import sesskit
from sesskit.explain import MISMATCH


def _libssl_unavailable() -> str:
    try:
        sesskit.Lab(engine="libssl", explain=False).close()
    except (sesskit.SesskitError, OSError, ImportError) as exc:
        return str(exc)
    return ""


pytestmark = pytest.mark.skipif(bool(_libssl_unavailable()), reason="libssl engine unavailable")

ADVANCES = [0, 7, 49, 98, 105, 7196, 7203]
FLUSH_OFFSETS = [-7301, -101, 0, 7, 99, 100, 101, 102, 7199, 7200, 7201, 7202]


def outcome(fn: Any, *args: Any) -> tuple[Any, type[BaseException] | None]:
    """What ``fn(*args)`` returned, or the type of the error it raised."""
    try:
        return fn(*args), None
    except sesskit.SesskitError as exc:
        return None, type(exc)


def describe_difference(a: sesskit.Snapshot, b: sesskit.Snapshot) -> str:
    lines = []
    if a.time != b.time:
        lines.append(f"time: model {a.time}, libssl {b.time}")
    for kind in ("sessions", "ssls", "caches", "refs"):
        ma, mb = getattr(a, kind), getattr(b, kind)
        for key in sorted(set(ma) | set(mb), key=str):
            if ma.get(key) != mb.get(key):
                lines.append(f"{kind}[{key}]:\n  model  {ma.get(key)}\n  libssl {mb.get(key)}")
    return "\n".join(lines)


class ModelVersusLibssl(RuleBasedStateMachine):
    REAL = "libssl"  # the real engine held to the model
    OBSERVER = ""  # SESSKIT_OBSERVER for the real lab ("": the default, the C helper where built)
    ssls = Bundle("ssls")
    refs = Bundle("refs")

    def __init__(self) -> None:
        super().__init__()
        self.labs: tuple[sesskit.Lab, sesskit.Lab] | None = None

    @initialize(
        tls=st.sampled_from(["1.2", "1.3"]),
        tickets=st.booleans(),
        client_cache=st.booleans(),
        cache_size=st.sampled_from([0, 1, 2, 3, 5, 20480]),
        timeout=st.sampled_from([100, 7200]),
        server_sid_ctx=st.sampled_from([b"sesskit", None, b"x" * 32]),
        verify_peer=st.booleans(),
    )
    def make_labs(
        self,
        tls: str,
        tickets: bool,
        client_cache: bool,
        cache_size: int,
        timeout: int,
        server_sid_ctx: bytes | None,
        verify_peer: bool,
    ) -> None:
        # SSL_VERIFY_PEER without a session id context fails every ticket resumption: a Lab refuses
        # it with tickets (tests/test_sid_ctx.py); with tickets=False such a server caches nothing.
        assume(not (verify_peer and server_sid_ctx is None and tickets))
        config = dict(
            tls=tls,
            tickets=tickets,
            client_cache=client_cache,
            cache_size=cache_size,
            timeout=timeout,
            server_sid_ctx=server_sid_ctx,
            verify_peer=verify_peer,
        )
        model = sesskit.Lab(engine="model", explain=False, **config)  # type: ignore[arg-type]
        real = self.real_lab(config)
        # An engine that cannot do all OpenSSL does (pyOpenSSL: no ticket callback) says
        # how the model must predict it.
        for name, value in getattr(real._engine, "model_options", {}).items():
            setattr(model._engine.model, name, value)  # type: ignore[attr-defined]
        self.labs = (model, real)

    def real_lab(self, config: dict[str, Any]) -> sesskit.Lab:
        before = os.environ.get("SESSKIT_OBSERVER")
        if self.OBSERVER:
            os.environ["SESSKIT_OBSERVER"] = self.OBSERVER
        try:
            return sesskit.Lab(engine=self.REAL, explain=False, **config)
        finally:
            if before is None:
                os.environ.pop("SESSKIT_OBSERVER", None)
            else:
                os.environ["SESSKIT_OBSERVER"] = before

    def teardown(self) -> None:
        if self.labs is not None:
            PROGRAM_LENGTHS.setdefault(self.REAL + self.OBSERVER, []).append(self.steps)
            for lab in self.labs:
                lab.close()

    def both(self, fn: Any) -> tuple[Any, Any]:
        """Run ``fn(lab, i)`` on both labs; require the same refusal, if any."""
        assert self.labs is not None
        (ra, ea), (rb, eb) = (outcome(fn, lab, i) for i, lab in enumerate(self.labs))
        assert ea == eb, f"model raised {ea}, libssl raised {eb}"
        return ra, rb

    # -- operations ----------------------------------------------------------------
    @rule(target=ssls)
    def connect(self) -> Any:
        la, lb = self.both(lambda lab, i: lab.connect())
        assert (la.client.name, la.server.name) == (lb.client.name, lb.server.name)
        assert la.reused == lb.reused, f"reused: model {la.reused}, libssl {lb.reused}"
        return multiple(la.client.name, la.server.name)

    @rule(target=ssls, ref=refs)
    def connect_resume(self, ref: tuple[Any, Any]) -> Any:
        links = self.both(lambda lab, i: lab.connect(resume=ref[i]))
        if links[0] is None:
            return multiple()
        la, lb = links
        assert la.reused == lb.reused, f"reused: model {la.reused}, libssl {lb.reused}"
        return multiple(la.client.name, la.server.name)

    @rule(target=ssls, ssl=ssls, ref=st.none() | refs)
    def reconnect(self, ssl: str, ref: tuple[Any, Any] | None) -> Any:
        """connect(client=...): a client SSL reset by SSL_clear handshakes again (or is refused)."""
        links = self.both(
            lambda lab, i: lab.connect(resume=None if ref is None else ref[i], client=lab.endpoint(ssl))
        )
        if links[0] is None:
            return multiple()
        la, lb = links
        assert (la.client.name, la.server.name) == (lb.client.name, lb.server.name)
        assert la.reused == lb.reused, f"reused: model {la.reused}, libssl {lb.reused}"
        return multiple(la.server.name)

    @rule(target=refs, ssl=ssls, kind=st.sampled_from(["get0_session", "get1_session"]))
    def get_session(self, ssl: str, kind: str) -> Any:
        ra, rb = self.both(lambda lab, i: getattr(lab.endpoint(ssl), kind)())
        assert (ra is None) == (rb is None)
        if ra is None:
            return multiple()
        assert ra.session == rb.session
        return (ra, rb)

    @rule(ssl=ssls, op=st.sampled_from(["read", "shutdown", "clear", "free"]))
    def endpoint_op(self, ssl: str, op: str) -> None:
        self.both(lambda lab, i: getattr(lab.endpoint(ssl), op)())

    @rule(ssl=ssls, ref=refs)
    def set_session(self, ssl: str, ref: tuple[Any, Any]) -> None:
        """SSL_set_session on an existing SSL: open, shut down, cleared, freed or a server (refused)."""
        self.both(lambda lab, i: lab.endpoint(ssl).set_session(ref[i]))

    @rule(ref=refs)
    def free_ref(self, ref: tuple[Any, Any]) -> None:
        self.both(lambda lab, i: ref[i].free())

    @rule(seconds=st.sampled_from(ADVANCES))
    def advance(self, seconds: int) -> None:
        self.both(lambda lab, i: lab.advance(seconds))

    @rule(side=st.sampled_from(["server", "client"]), offset=st.sampled_from(FLUSH_OFFSETS))
    def flush(self, side: str, offset: int) -> None:
        self.both(lambda lab, i: lab.flush(side, at=lab.time + offset))

    # -- the comparison ------------------------------------------------------------------
    @invariant()
    def same_snapshot(self) -> None:
        if self.labs is None:
            return
        self.steps = getattr(self, "steps", -1) + 1  # the invariant runs after set-up and each step
        a, b = (lab.snapshot() for lab in self.labs)
        same = (a.time, a.sessions, a.ssls, a.caches) == (b.time, b.sessions, b.ssls, b.caches)
        assert same and a.refs == b.refs, "model and libssl disagree:\n" + describe_difference(a, b)


def programs(n: int) -> settings:
    """``n`` Hypothesis programs of up to 32 steps (some shorter), no deadline."""
    return settings(
        max_examples=n,
        stateful_step_count=32,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# 300 programs of up to 32 steps give well over 200 of 30 steps or more (checked by the
# test after them).
ModelVersusLibssl.TestCase.settings = programs(300)
TestModelVersusLibssl = ModelVersusLibssl.TestCase


class ModelVersusLibsslPythonObserver(ModelVersusLibssl):
    """The same programs with the Python observer (no C helper): fewer, it is the fallback."""

    OBSERVER = "python"


ModelVersusLibsslPythonObserver.TestCase.settings = programs(100)
TestModelVersusLibsslPythonObserver = ModelVersusLibsslPythonObserver.TestCase

# Steps of each program run in this session, by real engine (for the check below).
PROGRAM_LENGTHS: dict[str, list[int]] = {}


def check_enough_long_programs(real: str, at_least: int) -> None:
    lengths = PROGRAM_LENGTHS.get(real)
    if not lengths:
        pytest.skip("the state machine did not run in this session")
    long_ones = sum(n >= 30 for n in lengths)
    assert long_ones >= at_least, f"only {long_ones} of {len(lengths)} programs had 30 steps or more"


def test_at_least_200_programs_of_30_steps_ran() -> None:
    check_enough_long_programs("libssl", 200)


def test_the_python_observer_ran_programs_of_30_steps_too() -> None:
    check_enough_long_programs("libsslpython", 50)


# -- SSL_set_session on an existing SSL, and a client SSL reset by SSL_clear connected again -------

CONFIGS = [
    {"tls": "1.2", "tickets": False, "client_cache": True},
    {"tls": "1.2"},
    {"tls": "1.3", "client_cache": True},
    {"tls": "1.3", "tickets": False},
    {"tls": "1.2", "tickets": False, "server_sid_ctx": None, "verify_peer": True},
    {"tls": "1.3", "tickets": False, "server_sid_ctx": None, "verify_peer": True, "client_cache": True},
    {"tls": "1.2", "server_sid_ctx": None},
    {"tls": "1.3", "verify_peer": True},
]


def reconnect_story(lab: sesskit.Lab) -> list[bool]:
    """Good and dirty clears connected again, SSL_set_session open, shut down and cleared."""
    l1 = lab.connect()
    l1.client.read()
    l1.client.shutdown()
    l1.client.clear()  # close_notify sent: SSL_clear keeps the session
    l2 = lab.connect(client=l1.client)  # ... and offers it
    l2.client.read()
    l3 = lab.connect()
    l3.client.read()
    l3.client.clear()  # dirty: the session is dropped
    l4 = lab.connect(client=l3.client)  # nothing to offer
    l4.client.read()
    ref = l2.client.get1_session()
    assert ref is not None
    l4.client.set_session(ref)  # open: the old session is "bad"
    l1.server.shutdown()
    l1.server.read()
    l4.client.clear()
    l5 = lab.connect(resume=ref, client=l4.client)
    l5.client.read()
    l5.client.shutdown()
    l5.client.set_session(ref)  # shut down: the old session is left alone
    l5.client.free()
    l2.client.free()
    ref.free()
    return [link.reused for link in lab.links]


@pytest.mark.parametrize("observer", ["", "python"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_reconnect_and_set_session_agree_with_the_model(
    config: dict[str, Any], observer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if observer:
        monkeypatch.setenv("SESSKIT_OBSERVER", observer)
    with (
        sesskit.Lab(engine="libssl", **config) as real,  # with the explainer: no step may mismatch
        sesskit.Lab(engine="model", **config) as model,
    ):
        reused = reconnect_story(real)
        assert reused == reconnect_story(model)
        # OpenSSL 3.0: a client SSL cleared after close_notify keeps its session and resumes it
        # (SSL_clear(3)) -- unless the server, with SSL_VERIFY_PEER and no session id context, cached
        # nothing (ssl_update_cache); one cleared dirty has none and makes a full handshake.
        uncached = config.get("verify_peer", False) and config.get("server_sid_ctx", b"sesskit") is None
        assert reused[1] is not uncached and reused[3] is False
        for i, (a, b) in enumerate(zip(real.trace.snapshots(), model.trace.snapshots(), strict=True)):
            assert a == b, f"step {i} {real.trace[i].op}:\n" + describe_difference(b, a)
        assert not [s.index for s in real.trace if MISMATCH in s.why]
