"""The OpenSSL session facts of OPENSSL_FACTS.md, through the public API.

Each test is one fact a user of sesskit relies on.  It runs on the model (the
prediction) and on the real libssl engine (the truth), via ``make_lab``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import sesskit
from sesskit import DanglingPointer

MakeLab = Callable[..., sesskit.Lab]


def close_cleanly(link: sesskit.Link) -> None:
    """Both sides send close_notify (and read the peer's): sessions stay good."""
    link.client.shutdown()
    link.server.shutdown()
    link.client.shutdown()
    link.server.shutdown()


def client_session(link: sesskit.Link) -> str:
    label = link.client.session
    assert label is not None
    return label


def server_session(link: sesskit.Link) -> str:
    label = link.server.session
    assert label is not None
    return label


# -- TLS 1.2, stateful server cache (SSL_OP_NO_TICKET) ------------------------------
def test_tls12_stateful_server_session_is_held_by_ssl_and_cache(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.2", tickets=False, client_cache=True)
    link = lab.connect()
    snap = lab.snapshot()
    srv = snap.sessions[server_session(link)]
    cli = snap.sessions[client_session(link)]
    assert (srv.refcount, srv.cache, srv.resumable) == (2, "server", True)
    assert (cli.refcount, cli.cache) == (2, "client")
    assert snap.caches["server"].size == 1
    assert snap.caches["server"].members == (srv.label,)


def test_tls12_with_tickets_server_caches_nothing(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.2", tickets=True)
    link = lab.connect()
    snap = lab.snapshot()
    srv = snap.sessions[server_session(link)]
    assert (srv.refcount, srv.cache, srv.resumable) == (1, None, False)  # empty session id
    assert snap.caches["server"].size == 0
    assert snap.sessions[client_session(link)].resumable  # the client holds the ticket


def test_clean_shutdown_then_free_keeps_the_session_cached(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.2", tickets=False)
    link = lab.connect()
    label = server_session(link)
    close_cleanly(link)
    link.server.free()
    st = lab.snapshot().sessions[label]
    assert (st.refcount, st.cache, st.resumable, st.freed) == (1, "server", True, False)
    assert lab.snapshot().caches["server"].size == 1


@pytest.mark.parametrize("how", ["free", "clear"])
def test_dirty_free_or_clear_removes_and_frees_the_session(make_lab: MakeLab, how: str) -> None:
    lab = make_lab(tls="1.2", tickets=False)
    link = lab.connect()
    ref = link.server.get0_session()
    assert ref is not None and ref.refcount == 2
    getattr(link.server, how)()  # no close_notify sent: the session is "bad"
    snap = lab.snapshot()
    assert snap.sessions[ref.session].freed
    assert snap.caches["server"].size == 0
    assert ref.dangling
    with pytest.raises(DanglingPointer):
        _ = ref.refcount
    if how == "clear":
        assert link.server.session is None and link.server.get0_session() is None


def test_clean_clear_keeps_the_session_for_the_next_handshake(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.2", tickets=False)
    link = lab.connect()
    label = server_session(link)
    close_cleanly(link)
    link.server.clear()
    assert link.server.session == label
    st = lab.snapshot().sessions[label]
    assert (st.refcount, st.cache) == (2, "server")


def test_get1_keeps_a_session_alive_after_ssl_free(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.2")
    link = lab.connect()
    ref = link.client.get1_session()
    assert ref is not None and ref.refcount == 2
    link.client.shutdown()
    link.client.free()
    assert (ref.refcount, ref.dangling) == (1, False)
    assert ref.resumable  # a clean close keeps it resumable
    ref.free()
    assert ref.dangling and lab.snapshot().sessions[ref.session].freed


# -- TLS 1.3 tickets ---------------------------------------------------------------
def test_tls13_client_session_is_replaced_per_ticket(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.3")
    link = lab.connect()
    first = link.client.get0_session()
    assert first is not None
    pinned = link.client.get1_session()  # keep the pre-ticket session alive
    assert pinned is not None and pinned.session == first.session
    assert not pinned.resumable and pinned.refcount == 2  # no id, no ticket yet
    link.client.read()  # the 2 NewSessionTickets
    after = link.client.get0_session()
    assert after is not None and after.session != first.session
    assert after.resumable and after.refcount == 1
    client_objects = [s for s in lab.snapshot().sessions.values() if s.side == "client"]
    assert len(client_objects) == 3  # p0 + one per ticket
    assert sum(not s.freed for s in client_objects) == 2  # the pinned p0 and the current one
    assert pinned.refcount == 1 and not pinned.resumable  # can never resume
    server_objects = [s for s in lab.snapshot().sessions.values() if s.side == "server"]
    assert len(server_objects) == 2  # the second ticket was made on a copy


def test_tls13_stateless_tickets_leave_the_server_cache_empty(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.3", tickets=True)
    link = lab.connect()
    link.client.read()
    ref = link.client.get1_session()
    assert lab.snapshot().caches["server"].size == 0
    close_cleanly(link)
    link.client.free()
    again = lab.connect(resume=ref)
    assert again.reused
    assert lab.snapshot().caches["server"].size == 0
    assert lab.snapshot().caches["server"].stats["hits"] == 1


def test_tls13_stateful_tickets_are_each_a_cache_entry(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.3", tickets=False)
    lab.connect()
    cache = lab.snapshot().caches["server"]
    assert cache.size == 2 and len(cache.members) == 2


def test_tls13_client_cache_resumption_is_single_use(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.3", client_cache=True)
    link = lab.connect()
    link.client.read()
    ref = link.client.get1_session()
    assert ref is not None and ref.in_cache and ref.resumable
    close_cleanly(link)
    again = lab.connect(resume=ref)
    assert again.reused
    assert not ref.in_cache and not ref.resumable


def test_tls13_expired_ticket_is_not_offered(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.3", timeout=100)
    link = lab.connect()
    link.client.read()
    ref = link.client.get1_session()
    close_cleanly(link)
    lab.advance(150)  # age - 1 > lifetime hint (100): the client keeps quiet
    again = lab.connect(resume=ref)
    assert not again.reused
    snap = lab.snapshot()
    assert snap.caches["client"].stats["misses"] == 1
    assert snap.caches["server"].stats["timeouts"] == 0


def test_tls13_stateful_expired_lookup_counts_a_timeout_but_stays_cached(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.3", tickets=False, timeout=100)
    link = lab.connect()  # the server stamps its tickets at t=0
    lab.advance(50)
    link.client.read()  # the client stamps its copies at t=50
    ref = link.client.get1_session()
    close_cleanly(link)
    cached = lab.snapshot().caches["server"].members
    lab.advance(60)  # client age 60: offered; server age 110 > 100: expired
    again = lab.connect(resume=ref)
    assert not again.reused
    snap = lab.snapshot()
    assert snap.caches["server"].stats["timeouts"] == 1
    assert set(cached) <= set(snap.caches["server"].members)


# -- flush, expiry, capacity ------------------------------------------------------------
def test_flush_boundary_is_strict_and_counts_no_timeouts(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.2", tickets=False, timeout=7200)
    link = lab.connect()
    label = server_session(link)
    close_cleanly(link)
    link.server.free()
    lab.flush("server", at=7200)  # at == time + timeout: not expired
    assert lab.snapshot().caches["server"].members == (label,)
    lab.flush("server", at=7202)
    snap = lab.snapshot()
    assert snap.caches["server"].size == 0
    assert snap.sessions[label].freed
    assert snap.caches["server"].stats["timeouts"] == 0


def test_expired_tls12_lookup_counts_a_timeout_and_removes(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.2", tickets=False, timeout=100)
    link = lab.connect()
    ref = link.client.get1_session()
    label = server_session(link)
    close_cleanly(link)
    link.server.free()
    lab.advance(150)
    again = lab.connect(resume=ref)
    assert not again.reused
    snap = lab.snapshot()
    assert snap.caches["server"].stats["timeouts"] == 1
    assert snap.caches["client"].stats["misses"] == 1
    assert snap.sessions[label].freed and label not in snap.caches["server"].members


def test_cache_of_size_n_holds_n_minus_one(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.2", tickets=False, cache_size=3)
    links = [lab.connect() for _ in range(4)]
    cache = lab.snapshot().caches["server"]
    assert cache.size == 2
    assert cache.stats["cache_full"] == 2
    # the newest first; the evicted ones were the oldest (tail)
    assert cache.members == (server_session(links[3]), server_session(links[2]))
    evicted = lab.snapshot().sessions[server_session(links[0])]
    assert (evicted.cache, evicted.resumable, evicted.refcount) == (None, False, 1)


def test_auto_flush_runs_at_the_256th_good_handshake(make_lab: MakeLab) -> None:
    lab = make_lab(tls="1.2", tickets=False, timeout=10)
    for _ in range(254):
        lab.connect()
    lab.advance(20)  # everything cached so far is now expired
    fresh = lab.connect()  # the 255th: no flush
    assert lab.snapshot().caches["server"].size == 255
    last = lab.connect()  # the 256th: accept_good was 255 (0xff) before it counted
    cache = lab.snapshot().caches["server"]
    assert cache.members == (server_session(last), server_session(fresh))  # the 254 expired ones went
    assert cache.stats["accept_good"] == 256 and cache.stats["timeouts"] == 0


def test_tls13_client_cache_auto_flushes_at_the_255th_handshakes_tickets(make_lab: MakeLab) -> None:
    # TLS 1.3 clients update the cache per ticket, after connect_good was counted.
    lab = make_lab(tls="1.3", client_cache=True, timeout=10)
    for _ in range(254):
        lab.connect().client.read()
    lab.advance(20)
    link = lab.connect()
    assert lab.snapshot().caches["client"].size == 2 * 254
    link.client.read()
    cache = lab.snapshot().caches["client"]
    assert cache.stats["connect_good"] == 255
    assert cache.size == 2  # only this handshake's two tickets survived the flush
    assert cache.members[0] == client_session(link)


# -- the client's dirty close ---------------------------------------------------------------
@pytest.mark.parametrize("tls, tickets", [("1.2", False), ("1.2", True), ("1.3", True)])
def test_dirty_client_close_makes_the_saved_session_unresumable(
    make_lab: MakeLab, tls: str, tickets: bool
) -> None:
    lab = make_lab(tls=tls, tickets=tickets)
    link = lab.connect()
    link.client.read()
    saved = link.client.get1_session()
    assert saved is not None and saved.resumable
    link.client.free()  # no close_notify
    assert not saved.resumable and saved.refcount == 1
    again = lab.connect(resume=saved)
    assert not again.reused
    assert lab.snapshot().caches["client"].stats["misses"] == 0  # not even offered


# -- the model alone ------------------------------------------------------------------
def test_model_explains_each_step_with_its_numbers() -> None:
    with sesskit.Lab(engine="model", tls="1.2", tickets=False) as lab:
        link = lab.connect()
        label = server_session(link)
        link.server.free()
        why = lab.trace[-1].why
        assert "close_notify" in why and "not resumable" in why
        assert f"{label} 2 → 0, freed" in why, why
        assert lab.openssl_version.startswith("model of OpenSSL 3.0")
