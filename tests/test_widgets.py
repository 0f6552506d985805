"""Drive the Stepper through button clicks, as a user would, and check the lab and the text shown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import sesskit
from sesskit.trace import Delta
from sesskit.widgets import Stepper


def make_lab(**kwargs: Any) -> Any:
    """A lab on the model engine, else on the system libssl (without the model's explanations)."""
    try:
        return sesskit.Lab(engine="model", **kwargs)
    except ImportError:
        try:
            return sesskit.Lab(engine="libssl", explain=False, **kwargs)
        except (ImportError, OSError, sesskit.SesskitError) as exc:
            pytest.skip(f"no engine available: {exc}")


@pytest.fixture
def lab() -> Iterator[Any]:
    with make_lab() as lab:
        yield lab


@pytest.fixture
def stepper(lab: Any) -> Stepper:
    return Stepper(lab, render="png")


def select(stepper: Stepper, key: str) -> None:
    stepper.object.value = key


def session_of(lab: Any, ssl: str) -> str:
    label = lab.trace.ssl(ssl).session
    assert label is not None
    return str(label)


def test_css_classes_for_browser_tests(stepper: Stepper) -> None:
    classes = {c for w in _walk(stepper) for c in w._dom_classes}
    for name in (
        "connect",
        "get0",
        "get1",
        "read",
        "shutdown",
        "clear",
        "free",
        "session-free",
        "advance",
        "flush",
    ):
        assert f"sesskit-btn-{name}" in classes
    for css in (
        "sesskit-stepper",
        "sesskit-history",
        "sesskit-why",
        "sesskit-refcount",
        "sesskit-error",
        "sesskit-figure",
        "sesskit-object",
        "sesskit-predict",
        "sesskit-resume",
    ):
        assert css in classes


def _walk(w: Any) -> Iterator[Any]:
    yield w
    for child in getattr(w, "children", ()):
        yield from _walk(child)


def test_clicks_drive_the_lab_and_the_text_follows(lab: Any, stepper: Stepper) -> None:
    assert stepper.buttons["get1"].disabled  # nothing to act on yet
    stepper.buttons["connect"].click()
    assert [s.op for s in lab.trace] == ["SSL_CTX_new", "SSL_connect"]
    assert stepper.object.value == "ssl:c1"
    label = session_of(lab, "c1")
    assert stepper.refcount.value == f"{label} refcount = {lab.trace.session(label).refcount}"
    assert "SSL_connect" in stepper.why.value
    assert stepper.history.value == stepper.history.max == 1
    assert bytes(stepper.figure.value).startswith(b"\x89PNG")

    before = lab.trace.session(label).refcount
    stepper.buttons["get1"].click()
    assert lab.trace[-1].op == "SSL_get1_session"
    assert lab.trace.session(label).refcount == before + 1
    assert stepper.refcount.value == f"{label} refcount = {before + 1}"
    ref = lab.refs[-1]
    assert ref.kind == "get1"
    assert any(v == f"ref:{ref.id}" for _, v in stepper.object.options)

    select(stepper, f"ref:{ref.id}")
    assert not stepper.buttons["session-free"].disabled
    assert stepper.buttons["read"].disabled  # SSL calls need an SSL
    stepper.buttons["session-free"].click()
    assert lab.trace[-1].op == "SSL_SESSION_free"
    assert lab.trace.ref(ref.id).released
    assert stepper.buttons["session-free"].disabled  # no double free from the widget
    assert stepper.refcount.value == f"{label} refcount = {before}"


def test_buttons_enabled_only_when_they_make_sense(lab: Any, stepper: Stepper) -> None:
    stepper.buttons["connect"].click()
    stepper.buttons["get0"].click()
    get0 = lab.refs[-1]
    select(stepper, f"ref:{get0.id}")
    on = {n for n, ok in stepper.enabled().items() if ok}
    assert on == {"connect", "advance", "flush"}  # SSL_SESSION_free on a get0 makes no sense
    select(stepper, "ssl:c1")
    stepper.buttons["clear"].click()
    assert lab.trace[-1].op == "SSL_clear"
    assert stepper.buttons["read"].disabled and stepper.buttons["shutdown"].disabled
    assert not stepper.buttons["free"].disabled
    stepper.buttons["free"].click()
    assert lab.trace.ssl("c1").freed
    assert all(stepper.buttons[n].disabled for n in ("get0", "get1", "read", "shutdown", "clear", "free"))


def test_resume_offers_live_client_sessions_only(lab: Any, stepper: Stepper) -> None:
    stepper.buttons["connect"].click()
    stepper.buttons["read"].click()
    stepper.buttons["get1"].click()
    select(stepper, "ssl:s1")
    stepper.buttons["get1"].click()
    client_ref, server_ref = lab.refs[-2], lab.refs[-1]
    offered = [v for _, v in stepper.resume.options]
    assert offered == [None, client_ref.id]
    assert server_ref.id not in offered
    stepper.resume.value = client_ref.id
    stepper.buttons["connect"].click()
    assert lab.trace[-1].op == "SSL_connect"
    assert f"resume {client_ref.session}" in lab.trace[-1].target
    assert stepper.object.value == "ssl:c2"


def test_errors_are_shown_not_raised(lab: Any, stepper: Stepper) -> None:
    stepper.buttons["connect"].click()
    stepper.buttons["get0"].click()
    ref = lab.refs[-1]
    select(stepper, f"ref:{ref.id}")
    n = len(lab.trace)
    stepper.buttons["session-free"].click()  # disabled in a browser; a script can still click
    assert len(lab.trace) == n
    assert "InvalidOperation" in stepper.error.value
    assert "get0" in stepper.error.value
    # the widget is not stuck: the next click works and clears the error
    stepper.buttons["advance"].click()
    assert lab.trace[-1].op == "advance"
    assert stepper.error.value == ""


def test_a_dangling_pointer_error(lab: Any, stepper: Stepper) -> None:
    stepper.buttons["connect"].click()
    stepper.buttons["read"].click()
    stepper.buttons["get0"].click()
    ref = lab.refs[-1]
    stepper.buttons["free"].click()  # the client SSL held the last reference
    assert lab.trace.session(ref.session).freed
    stepper.resume.options = [*stepper.resume.options, ("stale", ref.id)]
    stepper.resume.value = ref.id
    stepper.buttons["connect"].click()
    assert "DanglingPointer" in stepper.error.value


def test_history_scrubs_without_changing_the_lab(lab: Any, stepper: Stepper) -> None:
    for name in ("connect", "read", "get1", "advance"):
        stepper.buttons[name].click()
    steps = lab.trace.to_json()
    stepper.history.value = 1
    assert lab.trace.to_json() == steps
    assert "SSL_connect" in stepper.why.value
    assert "history" in stepper.position.value
    snap1 = lab.trace.snapshot(1)
    then = snap1.ssls["c1"].session
    assert stepper.refcount.value == f"{then} refcount = {snap1.sessions[then].refcount}"
    png_then = stepper.figure.value
    stepper.history.value = stepper.history.max
    assert stepper.figure.value != png_then
    assert lab.trace.to_json() == steps
    assert "now" in stepper.position.value
    # scrubbed back, an operation still acts on the live lab and shows its result
    stepper.history.value = 0
    stepper.buttons["get0"].click()
    assert lab.trace[-1].op == "SSL_get0_session"
    assert stepper.history.value == len(lab.trace) - 1


def test_predict_mode_says_right_or_wrong(lab: Any, stepper: Stepper) -> None:
    stepper.buttons["connect"].click()
    label = session_of(lab, "c1")
    now = lab.trace.session(label).refcount
    stepper.predict.value = True
    assert stepper.guess.description.startswith(label)
    stepper.guess.value = now + 1
    stepper.buttons["get1"].click()
    assert "Right" in stepper.verdict.value
    assert f"is now <b>{now + 1}</b>" in stepper.verdict.value
    stepper.guess.value = now + 5
    stepper.buttons["get0"].click()
    assert "You said" in stepper.verdict.value and "Right" not in stepper.verdict.value
    assert "SSL_get0_session" in stepper.verdict.value  # the step's why says why
    stepper.predict.value = False
    stepper.buttons["advance"].click()
    assert stepper.verdict.value == ""


def test_html_is_escaped(lab: Any, stepper: Stepper) -> None:
    lab.trace.append("advance", "<b>x</b>", "<script>alert('why')</script>", Delta(time=lab.trace.time))
    stepper.refresh()
    assert "<script>" not in stepper.why.value
    assert "&lt;script&gt;" in stepper.why.value
    assert "<b>x</b>" not in stepper.why.value


def test_the_figure_is_reused(lab: Any, stepper: Stepper) -> None:
    fig = stepper._story.fig
    for name in ("connect", "get1", "advance"):
        stepper.buttons[name].click()
    stepper.history.value = 1
    assert stepper._story.fig is fig
    assert stepper.last_render_ms > 0


def test_lab_stepper(lab: Any) -> None:
    w = lab.stepper()
    assert isinstance(w, Stepper)
    w.buttons["connect"].click()
    assert lab.trace[-1].op == "SSL_connect"


def test_ipympl_canvas_when_available(lab: Any) -> None:
    pytest.importorskip("ipympl")
    w = Stepper(lab, render="ipympl")
    assert w.render_mode == "ipympl"
    w.buttons["connect"].click()
    assert "sesskit-figure" in w.figure._dom_classes
