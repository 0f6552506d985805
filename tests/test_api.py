"""The public API refuses bad requests clearly, on every engine, and stays usable."""

from __future__ import annotations

import importlib.util

import pytest

import sesskit
from sesskit import DanglingPointer, InvalidOperation, SesskitError

ENGINES = ["libssl"] + (["model"] if importlib.util.find_spec("sesskit.engines.model") else [])


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def lab_of(engine: str, **kw: object) -> sesskit.Lab:
    return sesskit.Lab(engine=engine, explain=False, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"engine": "openssl"}, "unknown engine 'openssl'"),
        ({"tls": "1.1"}, "unknown TLS version '1.1'"),
        ({"cache_size": -1}, "cache_size"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_lab_arguments_are_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidOperation, match=words):
        sesskit.Lab(**kwargs)  # type: ignore[arg-type]


def test_operation_on_a_freed_ssl(engine: str) -> None:
    with lab_of(engine) as lab:
        link = lab.connect()
        link.client.free()
        for op in (link.client.read, link.client.shutdown, link.client.clear, link.client.free):
            with pytest.raises(InvalidOperation, match=r"c1: it was freed at step 2 \(SSL_free\)"):
                op()
        with pytest.raises(InvalidOperation, match="freed"):
            link.client.get1_session()
        assert lab.connect().client.get0_session() is not None  # the lab goes on


def test_dangling_get0_ref_says_use_after_free(engine: str) -> None:
    with lab_of(engine, tls="1.2", tickets=False) as lab:
        link = lab.connect()
        ref = link.server.get0_session()
        assert ref is not None and ref.dangling is False
        link.server.free()  # dirty: removed from the cache and freed
        assert ref.dangling is True
        for attr in ("refcount", "in_cache", "resumable"):
            with pytest.raises(DanglingPointer, match="use-after-free"):
                getattr(ref, attr)
        with pytest.raises(DanglingPointer, match=r"freed at step 3 \(SSL_free\)"):
            _ = ref.refcount
        assert lab.snapshot().sessions[ref.session].freed is True
        assert lab.snapshot().refs[ref.id].dangling is True


def test_free_on_a_get0_ref_is_refused_and_changes_nothing(engine: str) -> None:
    with lab_of(engine, tls="1.2") as lab:
        link = lab.connect()
        ref = link.client.get0_session()
        assert ref is not None
        before = ref.refcount
        steps = len(lab.trace)
        with pytest.raises(InvalidOperation, match="SSL_get0_session took no reference"):
            ref.free()
        assert ref.refcount == before and len(lab.trace) == steps


def test_freeing_a_get1_ref_twice_is_refused(engine: str) -> None:
    with lab_of(engine, tls="1.2") as lab:
        link = lab.connect()
        ref = link.client.get1_session()
        assert ref is not None
        ref.free()
        assert ref.released is True
        with pytest.raises(InvalidOperation, match="twice"):
            ref.free()
        assert ref.refcount == 1  # a released get1 ref reads like get0: the SSL still holds it


def test_get1_keeps_a_session_alive_after_ssl_free(engine: str) -> None:
    with lab_of(engine, tls="1.2") as lab:
        link = lab.connect()
        ref = link.client.get1_session()
        assert ref is not None and ref.refcount == 2
        link.client.free()
        assert ref.dangling is False and ref.refcount == 1
        ref.free()
        assert ref.dangling is True


def test_session_from_another_lab_is_refused(engine: str) -> None:
    with lab_of(engine) as a, lab_of(engine) as b:
        ref = a.connect().client.get1_session()
        with pytest.raises(InvalidOperation, match="another Lab"):
            b.connect(resume=ref)
        assert b.connect().reused is False  # b still works


def test_resume_with_a_server_session_is_refused(engine: str) -> None:
    with lab_of(engine, tls="1.2", tickets=False) as lab:
        ref = lab.connect().server.get1_session()
        with pytest.raises(InvalidOperation, match="server-side session"):
            lab.connect(resume=ref)


def test_resume_with_a_dangling_ref_is_refused(engine: str) -> None:
    with lab_of(engine, tls="1.2") as lab:
        link = lab.connect()
        ref = link.client.get0_session()
        link.client.free()
        with pytest.raises(DanglingPointer):
            lab.connect(resume=ref)


def test_read_and_shutdown_after_clear_are_refused(engine: str) -> None:
    with lab_of(engine, tls="1.2") as lab:
        link = lab.connect()
        link.client.clear()
        with pytest.raises(InvalidOperation, match="SSL_clear reset it"):
            link.client.read()
        with pytest.raises(InvalidOperation, match="SSL_clear reset it"):
            link.client.shutdown()
        link.client.free()


def test_dirty_clear_leaves_no_session_and_get0_returns_none(engine: str) -> None:
    with lab_of(engine, tls="1.2") as lab:
        link = lab.connect()
        link.client.clear()  # no close_notify sent: the session is "bad"
        assert link.client.session is None
        assert link.client.get0_session() is None
        assert link.client.get1_session() is None


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_bad_advance_and_flush_arguments(engine: str, bad: object) -> None:
    with lab_of(engine) as lab:
        with pytest.raises(InvalidOperation):
            lab.advance(bad)  # type: ignore[arg-type]
        if bad != -1:
            with pytest.raises(InvalidOperation):
                lab.flush(at=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidOperation, match="side"):
            lab.flush(side="both")
        assert lab.time == 0


def test_booleans_are_bools(engine: str) -> None:
    with lab_of(engine, tls="1.2") as lab:
        link = lab.connect()
        ref = link.client.get0_session()
        assert ref is not None
        values = [link.reused, ref.resumable, ref.in_cache, ref.dangling]
        for st in lab.snapshot().sessions.values():
            values += [st.resumable, st.freed]
        assert all(type(v) is bool for v in values)


def test_errors_are_typed(engine: str) -> None:
    assert issubclass(DanglingPointer, InvalidOperation)
    assert issubclass(InvalidOperation, SesskitError)
    assert issubclass(sesskit.UnsupportedOperation, SesskitError)


def test_auto_picks_the_real_engine_and_says_which() -> None:
    with sesskit.Lab(explain=False) as lab:
        assert lab.engine_name == "libssl"
        assert lab.openssl_version.startswith("OpenSSL 3.")
        assert lab.engine_note == ""


def test_auto_falls_back_to_the_model_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from sesskit.engines import libssl

    def unavailable(config: object) -> None:
        raise SesskitError("libssl is not loaded in this process")

    monkeypatch.setattr(libssl, "LibsslEngine", unavailable)
    with sesskit.Lab() as lab:  # not pyopenssl: it cannot SSL_clear or flush
        assert lab.engine_name == "model"
        assert "libssl is not loaded" in lab.engine_note and "model" in lab.engine_note
        assert lab.connect().client.get0_session() is not None
    with pytest.raises(SesskitError, match="not loaded"):
        sesskit.Lab(engine="libssl")  # asked for by name: no silent fallback


# -- Endpoint.set_session: SSL_set_session on an existing client SSL (issue 19) ---------------------


def cached_client_lab(engine: str) -> sesskit.Lab:
    """TLS 1.2, a stateful server cache and a client cache: every session has an id and is cached."""
    return lab_of(engine, tls="1.2", tickets=False, client_cache=True)


def test_set_session_on_an_open_ssl_runs_the_bad_session_rule_on_the_old_one(engine: str) -> None:
    with cached_client_lab(engine) as lab:
        ref = lab.connect().client.get1_session()
        assert ref is not None
        link = lab.connect()
        old = link.client.session
        assert old is not None and lab.snapshot().sessions[old].cache == "client"
        before = ref.refcount
        link.client.set_session(ref)  # c2 sent no close_notify: its session is "bad"
        snap = lab.snapshot()
        assert link.client.session == ref.session and ref.refcount == before + 1
        gone = snap.sessions[old]
        assert gone.cache is None and gone.resumable is False  # removed, marked not resumable
        assert gone.freed is True  # the cache's and the SSL's references were its last
        assert snap.caches["client"].size == 1


def test_set_session_after_close_notify_keeps_the_old_session_cached(engine: str) -> None:
    with cached_client_lab(engine) as lab:
        ref = lab.connect().client.get1_session()
        assert ref is not None
        link = lab.connect()
        old = link.client.session
        assert old is not None
        link.client.shutdown()
        link.client.set_session(ref)
        st = lab.snapshot().sessions[old]
        assert (st.cache, st.resumable, st.refcount) == ("client", True, 1)  # only the cache holds it


def test_set_session_after_clear_then_free_judges_the_new_session(engine: str) -> None:
    with cached_client_lab(engine) as lab:
        first = lab.connect()
        ref = first.client.get1_session()
        assert ref is not None
        first.client.shutdown()
        link = lab.connect()
        link.client.shutdown()
        link.client.clear()  # reset for a new handshake: its session kept, not "bad"
        link.client.set_session(ref)
        assert link.client.get0_session() is not None and link.client.session == ref.session
        assert ref.resumable and ref.in_cache  # after SSL_clear nothing is "open"
        link.client.free()  # in "before" state: the new session is not bad either
        assert ref.resumable and ref.in_cache


def test_set_session_refusals(engine: str) -> None:
    with lab_of(engine, tls="1.2") as lab:
        link = lab.connect()
        ref = link.client.get1_session()
        assert ref is not None
        steps = len(lab.trace)
        with pytest.raises(InvalidOperation, match="server SSL"):
            link.server.set_session(ref)
        server_ref = link.server.get0_session()
        steps += 1
        with pytest.raises(InvalidOperation, match="server-side session"):
            link.client.set_session(server_ref)  # type: ignore[arg-type]
        other = lab.connect()
        other.client.set_session(ref)
        steps += 2
        for op in (other.client.read, other.client.shutdown):
            with pytest.raises(InvalidOperation, match=r"SSL_set_session at step \d+ replaced the session"):
                op()
        dead = lab.connect()
        dead.client.free()
        steps += 2
        with pytest.raises(InvalidOperation, match="it was freed at step"):
            dead.client.set_session(ref)
        assert len(lab.trace) == steps  # each refusal recorded nothing
        lab.refused("SSL_set_session", dead.client.name, InvalidOperation("x"))
        assert lab.trace[-1].error == {"kind": "InvalidOperation", "message": "x"}


def test_connect_client_refusals(engine: str) -> None:
    with lab_of(engine, tls="1.2") as lab, lab_of(engine, tls="1.2") as other:
        link = lab.connect()
        steps = len(lab.trace)
        with pytest.raises(InvalidOperation, match="server SSL"):
            lab.connect(client=link.server)
        with pytest.raises(InvalidOperation, match="not reset by SSL_clear"):
            lab.connect(client=link.client)  # its handshake is done
        with pytest.raises(InvalidOperation, match="an Endpoint of this lab"):
            other.connect(client=link.client)
        link.client.free()
        steps += 1
        with pytest.raises(InvalidOperation, match="use after free"):
            lab.connect(client=link.client)
        assert len(lab.trace) == steps  # nothing recorded


def test_a_cleared_client_connected_again_can_be_read_and_shut_down(engine: str) -> None:
    with lab_of(engine, tls="1.3") as lab:
        link = lab.connect()
        link.client.read()
        link.client.shutdown()
        link.client.clear()
        with pytest.raises(InvalidOperation, match="SSL_clear reset it"):
            link.client.read()
        again = lab.connect(client=link.client)
        assert again.client.name == link.client.name and again.server.name == "s2"
        assert again.reused is True  # SSL_clear kept the good session; the ClientHello offered it
        again.client.read()  # the new connection's ticket
        again.client.shutdown()
        assert lab.snapshot().ssls[link.client.name].cleared is False
