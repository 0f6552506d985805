"""Drive the Stepper through the messages its bar sends, as a click does, and check the lab and the bar."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import sesskit
from sesskit.widgets import OPS, Stepper


def make_lab(**kwargs: Any) -> Any:
    """A lab on the system libssl (with the model's whys), else on the model."""
    for engine in ("libssl", "model"):
        try:
            return sesskit.Lab(engine=engine, **kwargs)
        except (ImportError, OSError, sesskit.SesskitError):
            continue
    pytest.skip("no engine available")


@pytest.fixture
def lab() -> Iterator[Any]:
    with make_lab(tls="1.2", tickets=False) as lab:
        yield lab


@pytest.fixture
def stepper(lab: Any) -> Iterator[Stepper]:
    s = Stepper(lab)
    yield s
    s.lab.close()


def click(stepper: Stepper, op: str, **fields: Any) -> None:
    """What the bar sends for a click: the op, the fields it shows, and the ui seq it was drawn from."""
    stepper._handle_op({"type": "op", "op": op, "seq": stepper.ui["seq"], **fields})


def buttons(stepper: Stepper) -> dict[str, dict[str, Any]]:
    return {o["n"]: o for o in stepper.ui["ops"]}


def test_every_button_is_named_by_its_c_call_with_a_tooltip_on_references(stepper: Stepper) -> None:
    ops = buttons(stepper)
    assert set(ops) == set(OPS)
    for name, o in ops.items():
        assert o["l"] == OPS[name][0]
        assert o["t"].startswith(o["l"] + ": ") and len(o["t"]) > len(o["l"]) + 10
    assert "+1" in ops["get1"]["t"] and "unchanged" in ops["get0"]["t"]
    assert {ops[n]["arg"]["k"] for n in ("connect", "advance", "flush")} == {"resume", "seconds", "side"}


def test_clicks_drive_the_lab_and_only_new_steps_travel(lab: Any, stepper: Stepper) -> None:
    sent: list[dict[str, Any]] = []
    stepper.send = sent.append  # type: ignore[method-assign]  # what would travel to the browser
    click(stepper, "connect")
    assert stepper.acts_on == "ssl:c1"  # the new client SSL is chosen
    click(stepper, "get1", acts_on="ssl:s1")
    assert [m["type"] for m in sent] == ["append", "append"]
    assert [[s["index"] for s in m["steps"]] for m in sent] == [[1], [2]]
    assert [s["op"] for m in sent for s in m["steps"]] == ["SSL_connect", "SSL_get1_session"]
    assert sent[1]["steps"][0]["why"] == lab.trace[2].why  # each step travels with its why
    assert stepper.trace["steps"] == lab.trace.to_dict()["steps"]  # a reloaded page gets them all
    assert lab.trace.session(lab.trace.ssl("s1").session).refcount == 3  # the SSL, the cache, you
    assert stepper.ui["seq"] == 2 and not stepper.ui["error"]


def test_a_double_click_performs_one_operation(lab: Any, stepper: Stepper) -> None:
    seq = stepper.ui["seq"]
    for _ in range(2):  # both drawn from the same ui: the second arrives while the first runs
        stepper._handle_op({"type": "op", "op": "connect", "seq": seq})
    assert [s.op for s in lab.trace] == ["SSL_CTX_new", "SSL_connect"]


def test_resume_choice_names_each_session_and_resets_after_connect(lab: Any, stepper: Stepper) -> None:
    click(stepper, "connect")
    click(stepper, "get1", acts_on="ssl:c1")
    click(stepper, "get0", acts_on="ssl:s1")
    resume = buttons(stepper)["connect"]["arg"]
    assert resume["o"][0] == [0, "a full handshake"] and resume["v"] == 0
    labels = dict((v, t) for v, t in resume["o"])
    assert all(t.strip() for t in labels.values())  # never blank
    assert "refcount 2" in labels[1] and "not cached" in labels[1] and "resumable" in labels[1]
    assert "server-side: a mistake" in labels[2]  # offered: a mistake one can try
    click(stepper, "shutdown", acts_on="ssl:c1")
    click(stepper, "connect", resume=1)
    assert lab.links[-1].reused
    assert stepper.resume == 0 and buttons(stepper)["connect"]["arg"]["v"] == 0
    click(stepper, "connect")
    assert not lab.links[-1].reused  # the next connect is a full handshake again


def refused_step(stepper: Stepper, op: str, **fields: Any) -> Any:
    lab = stepper.lab
    before = lab.snapshot()
    n = len(lab.trace)
    click(stepper, op, **fields)
    assert len(lab.trace) == n + 1, stepper.error
    step = lab.trace[-1]
    assert step.error is not None and step.error["message"] in step.why
    assert not step.changes and lab.snapshot() == before  # nothing changed
    assert stepper.trace["steps"][-1]["error"] == dict(step.error)  # drawn in red by the viewer
    return step


needs_refused = pytest.mark.skipif(not hasattr(sesskit.Lab, "refused"), reason="Lab.refused is missing")


@needs_refused
def test_mistakes_can_be_clicked_and_are_recorded_as_refused_steps(lab: Any, stepper: Stepper) -> None:
    click(stepper, "connect")
    click(stepper, "get0", acts_on="ssl:s1")
    assert not stepper.enabled()["session-free"]  # an SSL is chosen
    assert buttons(stepper)["session-free"]["on"] == "ref"  # the browser enables it when a ref is
    click(stepper, "get1", acts_on="ssl:s1")
    stepper.acts_on = "ref:1"
    assert stepper.enabled()["session-free"]  # a get0 pointer: clickable
    step = refused_step(stepper, "session-free")
    assert (step.op, step.error["kind"]) == ("SSL_SESSION_free", "InvalidOperation")
    assert "SSL_get0_session took no reference" in step.why
    click(stepper, "session-free", acts_on="ref:2")
    assert not lab.trace[-1].error
    step = refused_step(stepper, "session-free", acts_on="ref:2")  # a double free
    assert "twice" in step.why
    click(stepper, "clear", acts_on="ssl:c1")
    step = refused_step(stepper, "read", acts_on="ssl:c1")  # read after clear
    assert step.op == "SSL_read" and "SSL_clear" in step.why
    click(stepper, "free", acts_on="ssl:c1")
    assert stepper.enabled()["get1"] and buttons(stepper)["get1"]["on"] == "ssl"  # a freed SSL too
    step = refused_step(stepper, "get1", acts_on="ssl:c1")  # use after free
    assert "freed at step" in step.why
    step = refused_step(stepper, "connect", resume=1)  # ref 1 is a server-side session
    assert step.op == "SSL_set_session" and "server-side" in step.why
    assert stepper.resume == 0


def test_predict_asks_before_calls_that_can_change_a_refcount_or_a_cache(lab: Any, stepper: Stepper) -> None:
    click(stepper, "predict", on=True)
    assert stepper.predict and stepper.guess is None
    click(stepper, "connect")  # nothing is held yet: nothing to ask about
    assert not stepper.question and len(lab.trace) == 2
    click(stepper, "get0", acts_on="ssl:s1")  # no refcount changes: not asked
    click(stepper, "advance", seconds=10)  # neither
    assert not stepper.question and len(lab.trace) == 4
    click(stepper, "get1", acts_on="ssl:s1")
    label = lab.trace.ssl("s1").session
    assert stepper.question == f"Before SSL_get1_session: what will {label}'s refcount be after it?"
    assert stepper.ui["question"] == stepper.question and stepper.guess is None  # the box starts empty
    assert len(lab.trace) == 4  # not performed before the answer: its why is not shown yet
    click(stepper, "answer", guess=2)
    assert len(lab.trace) == 5 and lab.trace[-1].op == "SSL_get1_session"
    assert stepper.verdict.startswith(f"✘ You said 2: {label}'s refcount is now 3.")
    assert lab.trace[-1].why in stepper.verdict  # the why, revealed after the answer
    assert stepper.score == (0, 1) and stepper.ui["score"] == "score: 0 / 1"
    assert stepper.guess is None and not stepper.question  # empty again for the next question
    click(stepper, "free", acts_on="ssl:s1")  # a dirty free: out of the cache too (notebook 03)
    click(stepper, "answer", guess=1)
    assert stepper.right and stepper.score == (1, 2) and stepper.ui["score"] == "score: 1 / 2"
    click(stepper, "predict", on=False)
    click(stepper, "get1", acts_on="ssl:c1")
    assert not stepper.question and lab.trace[-1].op == "SSL_get1_session"


def test_acting_on_an_earlier_step_branches_after_replaying(lab: Any, stepper: Stepper) -> None:
    sent: list[dict[str, Any]] = []
    click(stepper, "connect")
    click(stepper, "get1", acts_on="ssl:c1")
    click(stepper, "shutdown", acts_on="ssl:c1")
    kept = [s.to_dict() for s in lab.trace][:3]
    stepper.send = sent.append  # type: ignore[method-assign]
    click(
        stepper, "free", acts_on="ssl:s1", at=2
    )  # the browser showed step 2 and the reader chose "act here"
    assert sent[0] == {"type": "truncate", "length": 3}
    assert stepper.lab is not lab and lab._closed  # the old lab was closed
    new = stepper.lab
    assert [s.op for s in new.trace] == ["SSL_CTX_new", "SSL_connect", "SSL_get1_session", "SSL_free"]
    assert [{**s.to_dict(), "why": ""} for s in new.trace][:3] == [{**d, "why": ""} for d in kept]
    assert "Steps 3..3 were discarded" in stepper.notice
    assert stepper.trace["steps"] == new.trace.to_dict()["steps"]


def test_undo_and_reset(lab: Any, stepper: Stepper) -> None:
    click(stepper, "connect")
    click(stepper, "get1", acts_on="ssl:c1")
    click(stepper, "undo")
    assert [s.op for s in stepper.lab.trace] == ["SSL_CTX_new", "SSL_connect"]
    assert stepper.lab.refs == [] and len(stepper.trace["steps"]) == 2
    click(stepper, "get1", acts_on="ssl:c1")  # the replayed lab goes on
    assert stepper.lab.refs[0].refcount == 2
    old = stepper.lab
    click(stepper, "reset")
    assert old._closed and len(stepper.lab.trace) == 1 and stepper.lab.config == old.config
    assert stepper.lab.engine_name == old.engine_name and len(stepper.trace["steps"]) == 1
    click(stepper, "undo")
    assert "nothing to undo" in stepper.error


def test_undo_replays_steps_made_before_the_stepper(lab: Any) -> None:
    link = lab.connect()
    link.server.get0_session()
    stepper = Stepper(lab)
    click(stepper, "session-free", acts_on="ref:1")
    click(stepper, "undo")
    assert [s.op for s in stepper.lab.trace] == ["SSL_CTX_new", "SSL_connect", "SSL_get0_session"]
    stepper.lab.close()


def test_a_click_in_the_picture_chooses_what_the_buttons_act_on(stepper: Stepper) -> None:
    click(stepper, "connect")
    stepper.selected = "ssl:s1"  # the viewer sets this when an SSL is clicked in the heap
    assert stepper.acts_on == "ssl:s1" and stepper.enabled()["get1"]
    stepper.selected = "session:S1"  # a session is not something the buttons act on
    assert stepper.acts_on == "ssl:s1"
    click(stepper, "get1")
    assert stepper.ui["acts_on"]["v"] == "ssl:s1" and stepper.lab.trace[-1].target == "s1"


def test_a_stepper_needs_a_lab() -> None:
    with pytest.raises(TypeError, match=r"Stepper needs a sesskit\.Lab"):
        Stepper(None)  # type: ignore[arg-type]


def test_without_widget_state_the_output_says_run_the_cell(stepper: Stepper, monkeypatch: Any) -> None:
    monkeypatch.delenv("SESSKIT_STATIC_HTML", raising=False)
    data, _ = stepper._repr_mimebundle_()
    assert "run the cell to continue" in data["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in data and "text/html" not in data
    monkeypatch.setenv("SESSKIT_STATIC_HTML", "1")
    data, _ = stepper._repr_mimebundle_()
    assert "sesskit-static-mount" in data["text/html"]


def test_lab_stepper_and_no_import_loop(lab: Any) -> None:
    w = lab.stepper()
    assert isinstance(w, Stepper) and w.lab is lab
    code = "import sys, sesskit, sesskit.lab; print('sesskit.widgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
