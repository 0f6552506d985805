"""Mistakes recorded as refused steps (issue #15 item 4), on the real libssl and on the model.

Each mistake a teaching tool lets a reader click (SSL_SESSION_free on a get0 pointer, a use after
free, a double free, a read after SSL_clear, a resumption with a server-side session or with a
dangling pointer) raises its typed error before any engine is called; ``lab.refused(...)`` then
records exactly one step that changes nothing, carries the error, and explains in its ``why`` the
OpenSSL rule and what the call would do in C.  The lab goes on as if nothing happened.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import engine_unavailable

import sesskit
from sesskit import DanglingPointer, InvalidOperation, SesskitError, Trace, TraceFormatError
from sesskit.explain import MISMATCH
from sesskit.trace import Delta

ENGINES = ["libssl", "model"]

# A mistake: set the lab up, then return (the C call, its target, the attempt, the error it raises).
Mistake = Callable[[sesskit.Lab], tuple[str, str, Callable[[], object], type[SesskitError]]]


def free_on_get0(lab: sesskit.Lab) -> Any:
    link = lab.connect()
    link.client.read()
    ref = link.client.get0_session()
    assert ref is not None
    return "SSL_SESSION_free", f"{ref.session} (ref #{ref.id})", ref.free, InvalidOperation


def use_after_free(call: str) -> Mistake:
    def mistake(lab: sesskit.Lab) -> Any:
        link = lab.connect()
        link.client.read()
        link.client.free()
        attempt = {
            "SSL_get0_session": link.client.get0_session,
            "SSL_get1_session": link.client.get1_session,
            "SSL_read": link.client.read,
            "SSL_free": link.client.free,
        }[call]
        return call, link.client.name, attempt, InvalidOperation

    mistake.__name__ = f"use_after_free_{call}"
    return mistake


def set_session_after_free(lab: sesskit.Lab) -> Any:
    ref = lab.connect().client.get1_session()
    assert ref is not None
    link = lab.connect()
    link.client.free()
    return "SSL_set_session", link.client.name, lambda: link.client.set_session(ref), InvalidOperation


def session_free_twice(lab: sesskit.Lab) -> Any:
    link = lab.connect()
    link.client.read()
    ref = link.client.get1_session()
    assert ref is not None
    ref.free()
    return "SSL_SESSION_free", f"{ref.session} (ref #{ref.id})", ref.free, InvalidOperation


def session_free_twice_after_it_was_freed(lab: sesskit.Lab) -> Any:
    link = lab.connect()
    link.client.read()
    ref = link.client.get1_session()
    assert ref is not None
    link.client.free()
    ref.free()  # the last reference: the session is freed
    assert ref.dangling
    return "SSL_SESSION_free", f"{ref.session} (ref #{ref.id})", ref.free, InvalidOperation


def after_clear(call: str) -> Mistake:
    def mistake(lab: sesskit.Lab) -> Any:
        link = lab.connect()
        link.client.read()
        link.client.clear()
        attempt = link.client.read if call == "SSL_read" else link.client.shutdown
        return call, link.client.name, attempt, InvalidOperation

    mistake.__name__ = f"{call}_after_clear"
    return mistake


def resume_server_side(lab: sesskit.Lab) -> Any:
    link = lab.connect()
    ref = link.server.get1_session()
    assert ref is not None
    return "SSL_set_session", f"c? resume {ref.session}", lambda: lab.connect(resume=ref), InvalidOperation


def resume_dangling(lab: sesskit.Lab) -> Any:
    link = lab.connect()
    link.client.read()
    ref = link.client.get0_session()
    assert ref is not None
    link.client.free()  # the SSL held the only reference
    assert ref.dangling
    return "SSL_set_session", f"c? resume {ref.session}", lambda: lab.connect(resume=ref), DanglingPointer


MISTAKES: list[tuple[Mistake, dict[str, Any]]] = [
    (free_on_get0, {}),
    (use_after_free("SSL_get0_session"), {}),
    (use_after_free("SSL_get1_session"), {}),
    (use_after_free("SSL_read"), {}),
    (use_after_free("SSL_free"), {}),
    (set_session_after_free, {}),
    (session_free_twice, {}),
    (session_free_twice_after_it_was_freed, {}),
    (after_clear("SSL_read"), {}),
    (after_clear("SSL_shutdown"), {}),
    (resume_server_side, {"tls": "1.2", "tickets": False}),
    (resume_dangling, {}),
]
IDS = [m.__name__ for m, _ in MISTAKES]


def live_objects(lab: sesskit.Lab) -> dict[str, int] | None:
    if lab.engine_name != "libssl":
        return None
    from sesskit.engines.libssl import live_objects

    return live_objects()


def make_and_refuse(engine: str, mistake: Mistake, config: dict[str, Any]) -> sesskit.Lab:
    """A lab (with its explainer) on ``engine``, the mistake tried and recorded, and one more connect."""
    why = engine_unavailable(engine)
    if why:
        pytest.skip(why)
    lab = sesskit.Lab(engine=engine, **config)
    op, target, attempt, expected = mistake(lab)
    before, n, objects = lab.snapshot(), len(lab.trace), live_objects(lab)
    with pytest.raises(expected) as info:
        attempt()
    err = info.value
    assert type(err) is expected
    assert len(lab.trace) == n, "the refused call itself records nothing"

    step = lab.refused(op, target, err)

    assert len(lab.trace) == n + 1 and step.index == n
    assert lab.trace[n] == step
    assert (step.op, step.target) == (op, target)
    assert not step.changes and step.changes == Delta()
    assert step.error == {"kind": expected.__name__, "message": str(err)}
    assert lab.snapshot() == before
    assert lab.trace.snapshot(n) == lab.trace.snapshot(n - 1)
    assert live_objects(lab) == objects, "recording a refusal touches no OpenSSL object"
    assert str(err).rstrip(".") in step.why and "nothing changed" in step.why
    lab.connect().client.read()  # the lab goes on
    return lab


@pytest.mark.parametrize("mistake, config", MISTAKES, ids=IDS)
@pytest.mark.parametrize("engine", ENGINES)
def test_a_mistake_is_recorded_as_one_refused_step(
    engine: str, mistake: Mistake, config: dict[str, Any]
) -> None:
    with make_and_refuse(engine, mistake, config) as lab:
        trace = lab.trace
        refused = [s for s in trace if s.error is not None]
        assert len(refused) == 1
        # The explainer (on libssl) explains the steps after the refusal without a mismatch:
        # the model did not move either.
        assert not any(MISMATCH in s.why for s in trace)
        assert refused[0].why.startswith("Refused, not called: ")
        # The JSON round-trips, error included, and says format 1.
        text = trace.to_json()
        assert json.loads(text)["format"] == 1
        loaded = Trace.from_json(text)
        assert loaded == trace
        assert loaded[refused[0].index].error == refused[0].error
        assert list(loaded.snapshots()) == list(trace.snapshots())


@pytest.mark.parametrize("mistake, config", MISTAKES, ids=IDS)
def test_libssl_and_the_model_agree_after_a_refusal(mistake: Mistake, config: dict[str, Any]) -> None:
    with (
        make_and_refuse("libssl", mistake, config) as real,
        make_and_refuse("model", mistake, config) as model,
    ):
        assert len(real.trace) == len(model.trace)
        for i, (a, b) in enumerate(zip(real.trace.snapshots(), model.trace.snapshots(), strict=True)):
            assert a == b, f"step {i} ({real.trace[i].op})"
        assert [s.error for s in real.trace] == [s.error for s in model.trace]


@pytest.mark.parametrize("mistake, config", MISTAKES, ids=IDS)
def test_each_refusal_names_the_openssl_rule_and_what_c_would_do(
    mistake: Mistake, config: dict[str, Any]
) -> None:
    with sesskit.Lab(engine="model", **config) as lab:
        _, _, attempt, expected = mistake(lab)
        with pytest.raises(expected) as info:
            attempt()
    message = str(info.value)
    assert "in C" in message or "In C" in message
    # A man page, OpenSSL source file or function it rests on, and the version it holds for
    # (or, for a freed SSL, the man page of SSL_free).
    assert "(3)" in message or "ssl/" in message
    assert "OpenSSL 3.0" in message or "SSL_free(3)" in message


def test_a_model_lab_never_calls_its_engine_for_a_refusal() -> None:
    with sesskit.Lab(engine="model") as lab:
        link = lab.connect()
        link.client.free()
        with pytest.raises(InvalidOperation) as info:
            link.client.get0_session()
        engine = lab._engine

        def boom(*args: object) -> None:
            raise AssertionError("the engine was called")

        for name in ("connect", "get0", "get1", "read", "shutdown", "clear", "free", "session_free"):
            setattr(engine, name, boom)
        step = lab.refused("SSL_get0_session", "c1", info.value)
        assert step.error is not None and step.error["kind"] == "InvalidOperation"


@pytest.mark.parametrize(
    "op, target, error",
    [
        ("SSL_frobnicate", "c1", InvalidOperation("x")),
        ("", "c1", InvalidOperation("x")),
        (None, "c1", InvalidOperation("x")),
        ("SSL_CTX_new", "client+server", InvalidOperation("x")),
        ("SSL_free", 1, InvalidOperation("x")),
        ("SSL_free", "c1", ValueError("not a sesskit error")),
        ("SSL_free", "c1", "a string"),
        ("SSL_free", "c1", InvalidOperation()),
    ],
)
def test_refused_refuses_garbage(op: Any, target: Any, error: Any) -> None:
    with sesskit.Lab(engine="model") as lab:
        lab.connect()
        n, before = len(lab.trace), lab.snapshot()
        with pytest.raises(InvalidOperation, match=r"refused\("):
            lab.refused(op, target, error)
        assert len(lab.trace) == n and lab.snapshot() == before


def test_a_step_with_an_error_must_change_nothing() -> None:
    trace = Trace()
    trace.append("SSL_CTX_new", "client+server", "start", Delta())
    with pytest.raises(ValueError, match="changes nothing"):
        trace.append("SSL_free", "c1", "x", Delta(time=5), error={"kind": "InvalidOperation", "message": "m"})
    for bad in ({"kind": "", "message": "m"}, {"kind": "K"}, {"kind": "K", "message": 3}, "K: m"):
        with pytest.raises(ValueError, match="two non-empty strings"):
            trace.append("SSL_free", "c1", "x", Delta(), error=bad)  # type: ignore[arg-type]
    assert len(trace) == 1
    step = trace.append("SSL_free", "c1", "x", Delta(), error={"kind": "InvalidOperation", "message": "m"})
    assert step.to_dict()["error"] == {"kind": "InvalidOperation", "message": "m"}
    assert "error" not in trace[0].to_dict(), "a step that was not refused writes no error"
    assert Trace.from_dict(trace.to_dict()) == trace


def _saved_with_refusal() -> dict[str, Any]:
    with sesskit.Lab(engine="model") as lab:
        link = lab.connect()
        link.client.free()
        try:
            link.client.read()
        except InvalidOperation as exc:
            lab.refused("SSL_read", "c1", exc)
        d: dict[str, Any] = json.loads(lab.trace.to_json())
        return d


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: s.update(error={"kind": "", "message": "m"}), "error.kind"),
        (lambda s: s.update(error={"kind": "InvalidOperation", "message": ""}), "error.message"),
        (lambda s: s.update(error={"kind": "InvalidOperation", "message": 5}), "error.message"),
        (lambda s: s.update(error={"kind": "InvalidOperation"}), "error.message"),
        (lambda s: s.update(error={"kind": "K", "message": "m", "when": 1}), "unknown field 'when'"),
        (lambda s: s.update(error="InvalidOperation"), "error"),
        (lambda s: s.update(error=None), "error"),
        (lambda s: s.update(changes={"time": 9}), "changes nothing"),
    ],
)
def test_a_saved_refused_step_is_validated(edit: Callable[[dict[str, Any]], None], words: str) -> None:
    d = _saved_with_refusal()
    last = d["steps"][-1]
    assert last["error"]["kind"] == "InvalidOperation" and last.get("changes", {}) == {}
    Trace.from_dict(d)  # as saved: valid
    edit(last)
    with pytest.raises(TraceFormatError, match=f"step {last['index']}.*{words}"):
        Trace.from_dict(d)


def test_steps_differing_only_in_their_error_differ() -> None:
    a, b = Trace(), Trace()
    for t in (a, b):
        t.append("SSL_CTX_new", "client+server", "start", Delta())
    a.append("SSL_free", "c1", "x", Delta(), error={"kind": "InvalidOperation", "message": "m"})
    b.append("SSL_free", "c1", "x", Delta(), error={"kind": "DanglingPointer", "message": "m"})
    assert a != b
