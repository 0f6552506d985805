"""The server's session id context and SSL_VERIFY_PEER: Lab(server_sid_ctx=..., verify_peer=...).

OpenSSL 3.0 (checked on the system libssl 3.0.x; pyOpenSSL's bundled OpenSSL agrees):
``ssl_update_cache`` (ssl/ssl_lib.c) caches no session of a server that has SSL_VERIFY_PEER
and no session id context, and ``ssl_get_prev_session`` (ssl/ssl_sess.c) fails the handshake
of a ticket resumption on such a server ("session id context uninitialized").  The first is
what a Lab shows; the second is why a Lab refuses ``verify_peer=True, server_sid_ctx=None``
with tickets (sesskit records no failed handshake) -- the refusal's claim is checked here on
the real library.  SSL_CTX_set_session_id_context(3).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from conftest import engine_unavailable

import sesskit
from sesskit import InvalidOperation
from sesskit.explain import MISMATCH

UNCACHED = {"tickets": False, "server_sid_ctx": None, "verify_peer": True}


def _resume_after_clean_close(lab: sesskit.Lab) -> tuple[sesskit.Link, sesskit.SessionRef]:
    first = lab.connect()
    first.client.read()  # TLS 1.3: the tickets
    ref = first.client.get1_session()
    assert ref is not None
    first.client.shutdown()
    first.server.shutdown()
    return lab.connect(resume=ref), ref


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_verify_peer_without_a_sid_ctx_caches_nothing_so_nothing_resumes(make_lab: Any, tls: str) -> None:
    lab = make_lab(tls=tls, **UNCACHED)
    second, ref = _resume_after_clean_close(lab)
    snap = lab.snapshot()
    assert not second.reused
    assert snap.caches["server"].size == 0
    assert snap.caches["server"].stats["misses"] == 1  # the offered id (or stateful ticket) is not there
    assert snap.caches["server"].stats["hits"] == 0
    assert all(s.cache is None for s in snap.sessions.values() if s.side == "server")
    assert ref.resumable  # the client's session is fine: the server just has nothing to find


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_with_a_sid_ctx_the_same_verify_peer_server_caches_and_resumes(make_lab: Any, tls: str) -> None:
    lab = make_lab(tls=tls, tickets=False, verify_peer=True)  # server_sid_ctx b"sesskit"
    second, _ = _resume_after_clean_close(lab)
    assert second.reused
    assert lab.snapshot().caches["server"].stats["hits"] == 1


@pytest.mark.parametrize("tickets", [True, False])
def test_no_sid_ctx_without_verify_peer_resumes_as_before(make_lab: Any, tickets: bool) -> None:
    """The context only matters across SSL_CTXs (or with SSL_VERIFY_PEER): both sides have none."""
    lab = make_lab(tls="1.2", tickets=tickets, server_sid_ctx=None)
    second, _ = _resume_after_clean_close(lab)
    assert second.reused


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_the_refused_combination_fails_the_handshake_in_openssl(tls: str) -> None:
    """What the refusal says: SSL_VERIFY_PEER, no sid_ctx, a ticket resumption -> the handshake fails."""
    why = engine_unavailable("libssl")
    if why:
        pytest.skip(why)
    from sesskit.engines.base import LabConfig
    from sesskit.engines.libssl import LibsslEngine

    engine = LibsslEngine(LabConfig(tls=tls, tickets=True, server_sid_ctx=None, verify_peer=True))
    try:
        engine.initial()
        engine.connect()
        engine.read("c1")
        label = engine.get1("c1").value
        engine.shutdown("c1")
        engine.shutdown("s1")
        with pytest.raises(sesskit.SesskitError, match="alert internal error"):
            engine.connect(resume=label)  # the server's SSLfatal(SESSION_ID_CONTEXT_UNINITIALIZED)
    finally:
        engine.close()
    with pytest.raises(InvalidOperation, match="session id context uninitialized"):
        sesskit.Lab(engine="model", tls=tls, server_sid_ctx=None, verify_peer=True)


@pytest.mark.parametrize(
    "settings",
    [
        {"server_sid_ctx": "€uro"},
        {"server_sid_ctx": ""},
        {"server_sid_ctx": b""},
        {"server_sid_ctx": b"x" * 33},
        {"server_sid_ctx": bytearray(b"abc")},
        {"verify_peer": 1},
        {"verify_peer": "False"},
    ],
)
def test_bad_settings_are_refused_before_any_openssl_object(settings: dict[str, Any]) -> None:
    key = next(iter(settings))
    with pytest.raises(InvalidOperation, match=key):
        sesskit.Lab(engine="model", **settings)


def test_the_settings_are_in_the_trace_and_the_first_why() -> None:
    with sesskit.Lab(engine="model", tls="1.2", **UNCACHED) as lab:  # type: ignore[arg-type]
        config = lab.trace.meta["config"]
        assert (config["server_sid_ctx"], config["verify_peer"]) == (None, True)
        assert "SSL_VERIFY_PEER and no session id context caches none" in lab.trace[0].why
        loaded = sesskit.Trace.from_json(lab.trace.to_json())
        assert loaded.meta["config"]["server_sid_ctx"] is None
        # a lab made again from its config (the Stepper's branch/replay does this) has the same settings
        again = sesskit.Lab(engine="model", **dataclasses.asdict(lab.config))
        assert again.config == lab.config
        again.close()
        # ... and from the trace's meta, where the context is text
        for sid in (b"sesskit", b"\x00\xffctx"):
            with sesskit.Lab(engine="model", server_sid_ctx=sid) as first:
                config = json.loads(first.trace.to_json())["meta"]["config"]
                with sesskit.Lab(engine="model", **config) as second:
                    assert second.config == first.config and second.config.server_sid_ctx == sid
    with sesskit.Lab(engine="model") as lab:
        config = json.loads(lab.trace.to_json())["meta"]["config"]
        assert (config["server_sid_ctx"], config["verify_peer"]) == ("sesskit", False)


@pytest.mark.parametrize("engine", ["libssl", "pyopenssl"])
@pytest.mark.parametrize("tls", ["1.2", "1.3"])
def test_the_model_explains_the_real_engine_without_mismatch(engine: str, tls: str) -> None:
    why = engine_unavailable(engine)
    if why:
        pytest.skip(why)
    with (
        sesskit.Lab(engine=engine, tls=tls, **UNCACHED) as real,  # type: ignore[arg-type]
        sesskit.Lab(engine="model", tls=tls, **UNCACHED) as model,  # type: ignore[arg-type]
    ):
        for lab in (real, model):
            _resume_after_clean_close(lab)
        assert list(real.trace.snapshots()) == list(model.trace.snapshots())
        assert not [s.index for s in real.trace if MISMATCH in s.why]
        connect = real.trace[-1].why
        assert "ssl_update_cache caches none of its sessions" in connect
        assert "misses +1" in connect


def test_a_server_session_refused_on_a_client_names_the_session_id_context() -> None:
    with sesskit.Lab(engine="model", tls="1.2", tickets=False) as lab:  # server_sid_ctx b"sesskit"
        ref = lab.connect().server.get1_session()
        assert ref is not None
        steps = len(lab.trace)
        with pytest.raises(InvalidOperation, match="session id context") as err:
            lab.connect(resume=ref)
        assert "attempt to reuse session in different context" in str(err.value)
        assert len(lab.trace) == steps


@pytest.mark.parametrize("tls", ["1.2", "1.3"])
@pytest.mark.parametrize("tickets", [True, False])
def test_without_a_sid_ctx_a_server_session_on_a_client_is_what_openssl_does(
    make_lab: Any, tls: str, tickets: bool
) -> None:
    """No id context on either side: the client's check passes; a TLS 1.2 stateful server resumes it."""
    lab = make_lab(tls=tls, tickets=tickets, server_sid_ctx=None)
    first = lab.connect()
    first.client.read()
    theirs = first.server.get1_session()
    first.client.shutdown()
    first.server.shutdown()
    crossed = lab.connect(resume=theirs)
    stateful12 = tls == "1.2" and not tickets
    assert crossed.reused is stateful12
    if stateful12:  # one object, held by both SSLs, the cache and you
        assert crossed.client.session == crossed.server.session == theirs.session
        assert theirs.refcount == 5  # s1, the cache, you, c2, s2
    else:  # TLS 1.3 offers only a ticket, a TLS 1.2 ticket server's session has no id: not offered
        assert crossed.client.session != theirs.session


def test_the_why_says_the_session_id_context_let_it_through() -> None:
    why = engine_unavailable("libssl")
    if why:
        pytest.skip(why)
    with sesskit.Lab(engine="libssl", tls="1.2", tickets=False, server_sid_ctx=None) as lab:
        first = lab.connect()
        theirs = first.server.get1_session()
        first.client.shutdown()
        assert lab.connect(resume=theirs).reused
        step = lab.trace[-1]
        assert "server-side session, and it resumed on a client" in step.why
        assert MISMATCH not in step.why
