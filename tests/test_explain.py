"""Every step of a real lab is explained by the model, whenever its ``why`` is read."""

from __future__ import annotations

import gc

import pytest

import sesskit
from sesskit import scenarios
from sesskit.engines.base import LabConfig
from sesskit.engines.libssl import live_objects
from sesskit.explain import MISMATCH, Explainer


def whys(trace: sesskit.Trace) -> list[str]:
    return [step.why for step in trace]


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
def test_real_steps_carry_the_models_explanations(name: str) -> None:
    story = scenarios.get(name)
    predicted = story.run("model")
    real = story.run("libssl")  # read only after the lab is closed
    assert real.meta["engine"] == "libssl"
    assert whys(real) == whys(predicted)
    assert not any(MISMATCH in why for why in whys(real))


def test_reading_as_you_go_gives_the_same_explanations() -> None:
    story = scenarios.get("tour")
    predicted = whys(story.run("model"))
    with story.lab("libssl") as lab:
        seen: list[str] = []
        original = lab._record

        def record_and_read(*args: object, **kwargs: object) -> None:
            original(*args, **kwargs)  # type: ignore[arg-type]
            seen.append(lab.trace[-1].why)  # explained now, one step at a time

        lab._record = record_and_read  # type: ignore[method-assign]
        story.play(lab)
        assert seen == predicted[1:]
        assert whys(lab.trace) == predicted


def test_a_step_the_model_got_wrong_says_so_and_shows_real_numbers() -> None:
    with sesskit.Lab(engine="libssl", tls="1.3") as lab:
        # A model told the lab runs TLS 1.2 with a stateful cache: it predicts one
        # server session in the cache, OpenSSL 1.3 issues tickets and caches none.
        lab._explainer = Explainer(LabConfig(tls="1.2", tickets=False), lab.trace)
        link = lab.connect()
        link.client.get0_session()
        connect, get0 = lab.trace[1], lab.trace[2]
        assert connect.why.endswith(MISMATCH)
        assert "TLS 1.2" in connect.why  # the (wrong) prediction is still explained
        assert lab.snapshot().caches["server"].size == 0  # the real cache is shown
        assert MISMATCH not in get0.why  # agreeing again: the same session, no refcount change


def test_a_kept_trace_is_explained_without_its_lab_and_holds_no_openssl_object() -> None:
    base = live_objects()
    lab = sesskit.Lab(engine="libssl", tls="1.2", tickets=False)
    link = lab.connect()
    link.server.free()
    trace = lab.trace
    del lab, link
    gc.collect()
    assert live_objects() == base
    assert "not resumable" in trace[-1].why and "SSL_free(s1)" in trace[-1].why
