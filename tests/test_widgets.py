"""Drive the Stepper through button clicks, as a user would, and check the lab and the text shown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import sesskit
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
    return Stepper(lab)


def at(stepper: Stepper) -> int:
    """The step the readout describes: the last one while the viewer follows the lab."""
    return len(stepper.lab.trace) - 1


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
        "sesskit-status",
        "sesskit-refcount",
        "sesskit-error",
        "sesskit-object",
        "sesskit-predict",
        "sesskit-resume",
    ):
        assert css in classes
    assert stepper.viewer in list(_walk(stepper))  # the picture is the browser viewer


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
    assert stepper.refcount.value == f"{label} refcount = {lab.trace.session(label).refcount} at step 1"
    assert stepper.viewer.trace["steps"] == lab.trace.to_dict()["steps"]  # the viewer has every step

    before = lab.trace.session(label).refcount
    stepper.buttons["get1"].click()
    assert lab.trace[-1].op == "SSL_get1_session"
    assert lab.trace.session(label).refcount == before + 1
    assert stepper.refcount.value == f"{label} refcount = {before + 1} at step {at(stepper)}"
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
    assert stepper.refcount.value == f"{label} refcount = {before} at step {at(stepper)}"


def test_the_kernel_sends_only_the_new_steps(lab: Any, stepper: Stepper) -> None:
    sent: list[dict[str, Any]] = []
    stepper.viewer.send = sent.append  # what would travel to the browser
    stepper.buttons["connect"].click()
    stepper.buttons["get1"].click()
    assert [m["type"] for m in sent] == ["append", "append"]
    assert [[s["index"] for s in m["steps"]] for m in sent] == [[1], [2]]
    assert [s["op"] for m in sent for s in m["steps"]] == ["SSL_connect", "SSL_get1_session"]
    assert sent[1]["steps"][0]["why"] == lab.trace[2].why  # each step travels with its why
    assert stepper.viewer.trace["steps"] == lab.trace.to_dict()["steps"]  # a reloaded page gets them all


def test_a_stepper_needs_a_lab() -> None:
    with pytest.raises(TypeError, match=r"Stepper needs a sesskit\.Lab"):
        Stepper(None)  # type: ignore[arg-type]


def test_static_html_only_when_the_docs_ask(lab: Any, stepper: Stepper, monkeypatch: Any) -> None:
    stepper.buttons["connect"].click()
    monkeypatch.delenv("SESSKIT_STATIC_HTML", raising=False)
    data = stepper._repr_mimebundle_()
    assert "text/html" not in data and "application/vnd.jupyter.widget-view+json" in data
    viewer_data, _ = stepper.viewer._repr_mimebundle_()
    assert "text/html" not in viewer_data
    monkeypatch.setenv("SESSKIT_STATIC_HTML", "1")
    data = stepper._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data  # Jupyter still shows the live widget
    page = data["text/html"]
    viewer_data, _ = stepper.viewer._repr_mimebundle_()
    assert "sesskit-static-mount" in viewer_data["text/html"]
    assert "sesskit-static-mount" in page and '"op":"SSL_connect"' in page


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
    assert offered == [0, client_ref.id]  # 0: a full handshake, never a blank choice
    assert server_ref.id not in offered
    stepper.resume.value = client_ref.id
    stepper.buttons["connect"].click()
    assert lab.trace[-1].op == "SSL_connect"
    assert f"resume {client_ref.session}" in lab.trace[-1].target
    assert stepper.object.value == "ssl:c2"
    assert stepper.resume.value == 0  # the choice does not stick: the next connect is a full one
    labels = dict((v, k) for k, v in stepper.resume.options)
    st = lab.trace.session(client_ref.session)
    assert labels[client_ref.id].startswith(f"{client_ref.session} (ref #{client_ref.id} get1)")
    assert f"refcount {st.refcount}" in labels[client_ref.id] and "resumable" in labels[client_ref.id]
    stepper.buttons["connect"].click()
    assert "resume" not in lab.trace[-1].target


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
    stepper.viewer.step = 1  # the browser's slider writes this
    assert lab.trace.to_json() == steps
    snap1 = lab.trace.snapshot(1)
    then = snap1.ssls["c1"].session
    assert stepper.refcount.value == f"{then} refcount = {snap1.sessions[then].refcount} at step 1"
    stepper.viewer.step = 0
    assert stepper.refcount.value == "c1 does not exist yet at step 0"
    stepper.viewer.step = -1
    assert stepper.refcount.value.endswith(f"at step {at(stepper)}")
    assert lab.trace.to_json() == steps


def test_a_click_in_the_picture_selects_what_the_buttons_act_on(lab: Any, stepper: Stepper) -> None:
    stepper.buttons["connect"].click()
    stepper.viewer.selected = "ssl:s1"  # the browser writes this when the reader clicks s1
    assert stepper.object.value == "ssl:s1"
    stepper.viewer.selected = "session:S1"  # a session is not something the buttons act on
    assert stepper.object.value == "ssl:s1"


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


def test_lab_stepper(lab: Any) -> None:
    w = lab.stepper()
    assert isinstance(w, Stepper)
    w.buttons["connect"].click()
    assert lab.trace[-1].op == "SSL_connect"
