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
        original = lab._operate

        def record_and_read(*args: object, **kwargs: object) -> object:
            value = original(*args, **kwargs)  # type: ignore[arg-type]
            seen.append(lab.trace[-1].why)  # explained now, one step at a time
            return value

        lab._operate = record_and_read  # type: ignore[method-assign]
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


def _close(link: sesskit.Link) -> None:
    for ep in (link.client, link.server, link.client, link.server):
        ep.shutdown()


def test_whys_say_the_step_that_matters_on_the_real_engine() -> None:
    """A resumed server's +1 and hits, an expired lookup's removal, and the -1 of an offer that fails."""
    with sesskit.Lab(engine="libssl", tls="1.2", tickets=False, timeout=100) as lab:
        first = lab.connect()
        saved = first.client.get1_session()
        _close(first)
        lab.connect(resume=saved)
        resumed = lab.trace[-1].why
        assert "the reference the lookup took became its SSL's session (+1); hits +1" in resumed
        first.server.free()
        lab.advance(150)
        lab.connect(resume=saved)
        expired = lab.trace[-1].why
        assert "lookup removed the expired" in expired and "timeouts +1" in expired
        assert "dropped its reference to" in expired and "net 0" in expired
        assert MISMATCH not in resumed + expired
    with sesskit.Lab(engine="libssl", tls="1.3") as lab:
        link = lab.connect()
        link.client.read()
        spoiled = link.client.get1_session()
        link.client.free()  # dirty: marked not resumable
        lab.connect(resume=spoiled)
        why = lab.trace[-1].why
        assert "is not resumable, so the client did not offer it" in why and "net 0" in why
        good = lab.connect()
        good.client.read()
        ticket = good.client.get1_session()
        _close(good)
        lab.connect(resume=ticket)
        why = lab.trace[-1].why
        assert "decrypted the ticket" in why and "hits +1" in why and MISMATCH not in why
        assert lab.snapshot().caches["server"].size == 0  # the hit came from no cache
