"""Every claim the notebooks make, and where it is checked.

``CLAIMS`` lists, per notebook, each claim its prose makes (an id and the claim in
a few words) and where it is asserted: ``cell: <code>`` is an ``assert`` the reader
sees in that notebook (tests/test_notebooks.py runs them on the real libssl), and
``test: <name>`` a test in this file (or ``file::name``), and ``source: <file> <function>``
a claim read from OpenSSL's source that no run can stage (the notebook cites it).
``test_every_listed_claim_is_asserted`` holds the list to the notebooks and to this file,
so a claim cannot lose its check silently.

The tests below check what a notebook claims but a sesskit Lab cannot stage (OpenSSL's
own defaults, a session across SSL_CTXs, the session id context, an SSL reused after
``SSL_clear``) on the real library through :mod:`rawssl`.  Versions: what they find
holds for the libssl Python loaded; the notebooks state them for OpenSSL 3.0 (3.0.19 here).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import engine_unavailable

import sesskit

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def raw() -> Iterator[object]:
    why = engine_unavailable("libssl")
    if why:
        pytest.skip(why)
    from rawssl import Raw

    r = Raw()
    yield r
    r.close()


# -- OpenSSL's own defaults, read from fresh SSL_CTXs (04: 7200 s; 06: 20480; 01/Lab: SERVER) ----
@pytest.mark.parametrize("side", ["client", "server"])
def test_openssl_defaults_of_a_fresh_ssl_ctx(raw: object, side: str) -> None:
    from rawssl import GET_CACHE_MODE, GET_CACHE_SIZE, SSL_SESS_CACHE_SERVER, Raw

    assert isinstance(raw, Raw)
    L, ffi = raw.lib, raw.ffi
    ctx = L.SSL_CTX_new(L.TLS_server_method() if side == "server" else L.TLS_client_method())
    try:
        assert L.SSL_CTX_get_timeout(ctx) == 7200  # ssl/t1_lib.c tls1_default_timeout
        assert L.SSL_CTX_ctrl(ctx, GET_CACHE_SIZE, 0, ffi.NULL) == 20480  # SSL_SESSION_CACHE_MAX_SIZE_DEFAULT
        # SSL_CTX_set_session_cache_mode(3): "The default mode is SSL_SESS_CACHE_SERVER", on a client too
        assert L.SSL_CTX_ctrl(ctx, GET_CACHE_MODE, 0, ffi.NULL) == SSL_SESS_CACHE_SERVER
    finally:
        L.SSL_CTX_free(ctx)


def test_lab_defaults_are_openssls() -> None:
    """Lab's defaults (cache_size=20480, timeout=7200) are the values a fresh SSL_CTX has."""
    import inspect

    params = inspect.signature(sesskit.Lab).parameters
    assert (params["cache_size"].default, params["timeout"].default) == (20480, 7200)


# -- One session, one SSL_CTX (02, 07, the refusal message) -----------------------------------
def _handshake(
    raw: object, cctx: object, sctx: object, session: object = None
) -> tuple[object, object, bool]:
    from rawssl import Raw

    assert isinstance(raw, Raw)
    c, s = raw.ssl(cctx, "client"), raw.ssl(sctx, "server")
    if session is not None:
        assert raw.lib.SSL_set_session(c, session) == 1
    return c, s, raw.handshake(c, s)


def test_set_session_across_client_ctxs_resumes_and_corrupts_nothing(raw: object) -> None:
    """A client SSL_CTX's session, SSL_set_session on an SSL of another: resumes; no cache takes it twice."""
    from rawssl import SESS_NUMBER, SSL_SESS_CACHE_CLIENT, Raw

    assert isinstance(raw, Raw)
    L, ffi = raw.lib, raw.ffi
    server = raw.ctx("server")
    a = raw.ctx("client", sid_ctx=None, cache_mode=SSL_SESS_CACHE_CLIENT)
    b = raw.ctx("client", sid_ctx=None, cache_mode=SSL_SESS_CACHE_CLIENT)
    c, s, ok = _handshake(raw, a, server)
    assert ok
    saved = raw.get1(c)
    L.SSL_shutdown(c)
    L.SSL_shutdown(s)
    c2, _, ok = _handshake(raw, b, server, saved)
    assert ok and L.SSL_session_reused(c2) == 1
    # a TLS <= 1.2 resumption is not re-added (ssl_update_cache): the session stays in A's cache only
    assert L.SSL_CTX_ctrl(a, SESS_NUMBER, 0, ffi.NULL) == 1
    assert L.SSL_CTX_ctrl(b, SESS_NUMBER, 0, ffi.NULL) == 0
    L.SSL_CTX_flush_sessions(a, 0)  # what SSL_CTX_free does; it would abort on a corrupted list
    assert L.SSL_CTX_ctrl(a, SESS_NUMBER, 0, ffi.NULL) == 0


def test_server_session_on_a_client_fails_on_the_session_id_context(raw: object) -> None:
    """Not the cache: the same server session resumes on a client whose context has the server's sid_ctx."""
    from rawssl import Raw

    assert isinstance(raw, Raw)
    L = raw.lib
    server = raw.ctx("server")  # session id context b"sesskit", as the engines set it
    same = raw.ctx("client", sid_ctx=b"sesskit")
    none = raw.ctx("client", sid_ctx=None)
    _, s, ok = _handshake(raw, raw.ctx("client", sid_ctx=None), server)
    assert ok
    server_session = raw.get1(s)
    c, _, ok = _handshake(raw, same, server, server_session)
    assert ok and L.SSL_session_reused(c) == 1
    _, s2, ok = _handshake(raw, raw.ctx("client", sid_ctx=None), server)
    other = raw.get1(s2)
    _, _, ok = _handshake(raw, none, server, other)
    assert not ok
    assert "attempt to reuse session in different context" in raw.errors()


@pytest.mark.parametrize("tickets", [False, True], ids=["stateful", "ticket"])
def test_verify_peer_without_a_session_id_context(raw: object, tickets: bool) -> None:
    """SSL_VERIFY_PEER on a server with no sid_ctx: not cached (stateful), a fatal error (TLS 1.2 ticket)."""
    from rawssl import SESS_NUMBER, SSL_VERIFY_PEER, Raw

    assert isinstance(raw, Raw)
    L, ffi = raw.lib, raw.ffi
    server = raw.ctx("server", sid_ctx=None, verify=SSL_VERIFY_PEER, tickets=tickets)
    client = raw.ctx("client", sid_ctx=None)
    c, s, ok = _handshake(raw, client, server)
    assert ok
    saved = raw.get1(c)
    L.SSL_shutdown(c)
    L.SSL_shutdown(s)
    assert L.SSL_CTX_ctrl(server, SESS_NUMBER, 0, ffi.NULL) == 0  # ssl_update_cache does not cache it
    c2, _, ok = _handshake(raw, client, server, saved)
    if tickets:
        assert not ok
        assert "session id context uninitialized" in raw.errors()
    else:
        assert ok and L.SSL_session_reused(c2) == 0  # a silent miss: nothing to find


# -- SSL_set_session and SSL_clear on an SSL that already had a session (new lessons) ---------
@pytest.mark.parametrize("closed", [False, True], ids=["dirty", "clean"])
def test_set_session_runs_the_bad_session_rule_on_the_old_session(raw: object, closed: bool) -> None:
    """ssl/ssl_sess.c SSL_set_session starts with ssl_clear_bad_session(s)."""
    from rawssl import Raw

    assert isinstance(raw, Raw)
    L = raw.lib
    server = raw.ctx("server")
    client = raw.ctx("client", sid_ctx=None)
    c, s, ok = _handshake(raw, client, server)
    assert ok
    old = raw.get1(c)
    _, _, ok = _handshake(raw, client, server)
    assert ok
    if closed:
        L.SSL_shutdown(c)
    assert L.SSL_SESSION_is_resumable(old) == 1
    assert L.SSL_set_session(c, raw.get1(s)) == 1  # any other session
    assert L.SSL_SESSION_is_resumable(old) == (1 if closed else 0)


def test_ssl_clear_of_a_good_client_session_offers_it_again(raw: object) -> None:
    """SSL_clear keeps a good session on the client SSL; its next handshake resumes with it."""
    from rawssl import Raw

    assert isinstance(raw, Raw)
    L = raw.lib
    server = raw.ctx("server")
    c, s, ok = _handshake(raw, raw.ctx("client", sid_ctx=None), server)
    assert ok
    L.SSL_shutdown(c)
    L.SSL_shutdown(s)
    assert L.SSL_clear(c) == 1
    s2 = raw.ssl(server, "server")
    assert raw.handshake(c, s2)
    assert L.SSL_session_reused(c) == 1


# -- claims of the tour (01) that its cells do not stage ------------------------------------------
@pytest.fixture
def libssl_lab() -> Iterator[object]:
    why = engine_unavailable("libssl")
    if why:
        pytest.skip(why)
    labs: list[sesskit.Lab] = []

    def make(**config: object) -> sesskit.Lab:
        lab = sesskit.Lab(engine="libssl", **config)  # type: ignore[arg-type]
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()


def test_tls12_with_tickets_leaves_the_server_cache_empty(libssl_lab: Any) -> None:
    """01: with tickets a TLS 1.2 server session has an empty id, and ssl_update_cache caches nothing."""
    lab = libssl_lab(tls="1.2")
    link = lab.connect()
    server = lab.snapshot().sessions[link.server.session]
    assert lab.snapshot().caches["server"].size == 0
    assert (server.refcount, server.cache) == (1, None)
    ref = link.client.get1_session()
    link.client.shutdown()
    assert lab.connect(resume=ref).reused  # it resumes from the ticket, not from a cache


def test_get0_session_is_no_symbol_of_libssl() -> None:
    """01, 02: SSL_get0_session is a #define for SSL_get_session (include/openssl/ssl.h)."""
    why = engine_unavailable("libssl")
    if why:
        pytest.skip(why)
    import ctypes

    from sesskit.engines import _libssl_ffi

    lib = ctypes.CDLL(_libssl_ffi.load().path)
    assert hasattr(lib, "SSL_get_session") and hasattr(lib, "SSL_get1_session")
    assert not hasattr(lib, "SSL_get0_session")


def test_the_tours_stepper_exercise(libssl_lab: Any) -> None:
    """01's "Your turn" list, step by step: the numbers it announces."""
    lab = libssl_lab(tls="1.2", tickets=False)
    link = lab.connect()
    assert link.client.session == "S1" and lab.snapshot().sessions["S1"].refcount == 1
    ref = link.client.get1_session()
    assert ref.refcount == 2
    link.client.free()  # no close_notify: dirty
    assert (ref.refcount, ref.resumable) == (1, False)
    ref.free()
    assert ref.dangling
    with pytest.raises(sesskit.InvalidOperation, match="twice"):
        ref.free()


# -- the listing -----------------------------------------------------------------------------
CLAIMS: dict[str, list[tuple[str, str, str]]] = {
    "01_tour": [
        ("01-cache2", "a stateful TLS 1.2 server session: refcount 2 (SSL + cache)", "cell: server.refcount"),
        ("01-client1", "the client session is not cached (default mode SERVER)", "cell: (1, None)"),
        (
            "01-mode",
            "the default cache mode is SSL_SESS_CACHE_SERVER",
            "test: test_openssl_defaults_of_a_fresh_ssl_ctx",
        ),
        ("01-get0", "get0 borrows: no refcount change", "cell: borrowed.refcount == 2"),
        ("01-get1", "get1 takes +1", "cell: mine.refcount == 3"),
        (
            "01-cleanfree",
            "clean SSL_free drops the SSL's reference; the cache keeps it",
            "cell: mine.refcount == 2",
        ),
        ("01-sessfree", "SSL_SESSION_free gives your reference back", "cell: borrowed.refcount == 1"),
        ("01-size1", "the server cache holds the one session", 'cell: snap.caches["server"].size == 1'),
        (
            "01-tickets12",
            "with tickets a TLS 1.2 server session has an empty id and is not cached",
            "test: test_tls12_with_tickets_leaves_the_server_cache_empty",
        ),
        (
            "01-macro",
            "SSL_get0_session is a #define for SSL_get_session",
            "test: test_get0_session_is_no_symbol_of_libssl",
        ),
        (
            "01-cleankeeps",
            "after a clean SSL_free the cache keeps it resumable",
            "cell: mine.in_cache and mine.resumable",
        ),
        (
            "01-valid",
            "the borrowed pointer stays valid while the cache holds it",
            "cell: not borrowed.dangling",
        ),
        (
            "01-getter",
            "OpenSSL has no refcount getter: sesskit reads the calibrated field",
            "test: test_libssl.py::test_calibrated_offsets_follow_public_operations",
        ),
        (
            "01-stepper",
            "the stepper exercise: get1 2, a dirty free 1 and not resumable, freed, a double free refused",
            "test: test_the_tours_stepper_exercise",
        ),
    ],
    "02_get0_vs_get1": [
        ("02-same", "get0 names the SSL's session", "cell: ref.session == link.server.session"),
        ("02-noinc", "get0 does not increment", "cell: again.refcount == before == 2"),
        ("02-dangle", "a dirty SSL_free of the only holder frees it", "cell: p.dangling"),
        ("02-macro", "libssl exports no SSL_get0_session symbol", 'cell: "SSL_get0_session": False'),
        ("02-get1", "get1 increments by one", "cell: held.refcount == 3"),
        ("02-resume12", "a saved TLS 1.2 session resumes", "cell: second.reused"),
        ("02-early", "a TLS 1.3 session before the tickets is not resumable", "cell: not early.resumable"),
        (
            "02-last",
            "get0/get1 show only the last ticket's session",
            "cell: last.session == client_sessions[-1].label",
        ),
        (
            "02-dropref",
            "a ticket drops the SSL's reference only",
            "cell: (first_ticket.refcount, first_ticket.cache)",
        ),
        ("02-cb", "the client cache sees each ticket, not the pre-ticket session", "cell: cache.size == 2"),
        ("02-once", "TLS 1.3 client cache: single use", "cell: not twice.reused"),
        ("02-clear", "a dirty SSL_clear: 2 -> 0", "cell: p.refcount == 2 and p.in_cache"),
        (
            "02-flush",
            "a flush drops the cache's reference; a get1 keeps it in memory",
            "cell: kept.refcount == 1",
        ),
        ("02-double", "a second SSL_SESSION_free is refused", "cell: kept.dangling"),
        (
            "02-list",
            "the cache is a list, newest first",
            "cell: server_cache.size == len(server_cache.members)",
        ),
        (
            "02-cross",
            "another SSL_CTX's session resumes in OpenSSL",
            "test: test_set_session_across_client_ctxs_resumes_and_corrupts_nothing",
        ),
        (
            "02-sidctx",
            "a server session fails on a client: the sid_ctx check",
            "test: test_server_session_on_a_client_fails_on_the_session_id_context",
        ),
        ("02-null", "after a dirty SSL_clear get0 returns NULL", "cell: f.server.get0_session() is None"),
        ("02-leak", "a get1 per connection never freed grows", "cell: grown == [2, 3, 4]"),
        (
            "02-race",
            "what another thread's ticket does: a get0 pointer dangles, a get1 stays yours",
            "cell: borrowed.dangling and not owned.dangling and owned.refcount == 1",
        ),
        (
            "02-threads",
            "get1 reads and up-refs under the SSL's lock; get0 takes neither (not stageable as a run)",
            "source: ssl/ssl_sess.c SSL_get1_session",
        ),
        (
            "02-setref",
            "SSL_set_session takes the SSL's own reference",
            "cell: link.reused and saved.refcount == 2",
        ),
        (
            "02-ownfree",
            "SSL_free drops only the SSL's reference: your get1 remains",
            "cell: saved.refcount == 1  # SSL_free dropped the SSL's reference",
        ),
        (
            "02-three",
            "2 tickets: the pre-ticket session and one per ticket",
            "cell: len(client_sessions) == 3",
        ),
        (
            "02-useless",
            "the pre-ticket session, held by you alone, is useless",
            "cell: early.refcount == 1 and not early.resumable",
        ),
        (
            "02-cbearly",
            "the cache (like the callback) never sees the pre-ticket session",
            "cell: early.session not in cache.members",
        ),
        (
            "02-remove13",
            "a TLS 1.3 resumption removes the session from the client cache, not resumable",
            "cell: not last.resumable and not last.in_cache",
        ),
        ("02-never", "the ticketless session never resumes", "cell: not never.reused"),
        (
            "02-flushout",
            "a flush takes it out of the cache, not resumable",
            "cell: not kept.in_cache and not kept.resumable",
        ),
    ],
    "03_clean_vs_dirty_close": [
        ("03-clean", "clean SSL_free: -1, the cache keeps it", "cell: clean_session.refcount == 1"),
        ("03-dirty", "dirty SSL_free: removed and freed", "cell: dirty_session.dangling"),
        ("03-sent", "only what the SSL sent counts", "cell: watch.dangling"),
        (
            "03-clearkeeps",
            "SSL_clear after a clean close keeps the session",
            "cell: k.refcount == 2 and k.in_cache",
        ),
        (
            "03-clearbad",
            "SSL_clear after a dirty close: no session",
            "cell: lost.server.get0_session() is None",
        ),
        (
            "03-trap",
            "a dirty client close marks the saved session not resumable",
            "cell: saved.refcount == 1 and not saved.resumable",
        ),
        ("03-silent", "and it is not even offered (no miss)", 'cell: stats["misses"] == 0'),
        (
            "03-setsession",
            "SSL_set_session on an SSL that did not shut down runs the bad-session rule",
            "test: test_set_session_runs_the_bad_session_rule_on_the_old_session",
        ),
        (
            "03-clearclient",
            "a client SSL_clear of a good session offers it again",
            "test: test_ssl_clear_of_a_good_client_session_offers_it_again",
        ),
        (
            "03-python",
            "CPython 3.11's ssl: resumes without unwrap()",
            "test: test_side_notes.py::test_cpython_ssl_session_resumes_without_unwrap",
        ),
        (
            "03-two",
            "a stateful server session starts at 2",
            "cell: clean_session.refcount == dirty_session.refcount == 2",
        ),
        (
            "03-members",
            "the dirty session left the cache; the clean one stayed",
            'cell: lab.snapshot().caches["server"].members == (clean_session.session,)',
        ),
        (
            "03-shutdownfix",
            "one SSL_shutdown before SSL_free: it resumes",
            "cell: saved2.refcount == 1 and saved2.resumable",
        ),
        (
            "03-setsession-run",
            "SSL_set_session on an open SSL: 2 -> 0 on the real engine",
            "cell: old.dangling  # removed",
        ),
        (
            "03-setclean",
            "after SSL_shutdown SSL_set_session drops only the SSL's reference",
            "cell: (old2.refcount, old2.in_cache, old2.resumable) == (1, True, True)",
        ),
        (
            "03-clearclient-run",
            "a client SSL_clear after a clean close: the same SSL resumes",
            "cell: again.client.name == good.client.name and again.reused",
        ),
        (
            "03-cleardirty-client",
            "after a dirty client SSL_clear nothing is offered",
            "cell: not fresh.reused",
        ),
    ],
    "04_time": [
        ("04-default", "the default timeout is 7200 s", "test: test_openssl_defaults_of_a_fresh_ssl_ctx"),
        ("04-strict", "flush at time + timeout keeps, one second later removes", "cell: watch.dangling"),
        ("04-notimeouts", "a flush counts no timeouts", 'cell: stats["timeouts"] == 0  # a flush'),
        (
            "04-get1",
            "a get1 keeps a flushed session in memory",
            "cell: (kept.refcount, kept.in_cache, kept.resumable)",
        ),
        ("04-lookup12", "an expired TLS 1.2 lookup: timeout, removed, client miss", "cell: cached.dangling"),
        (
            "04-lookup13",
            "an expired TLS 1.3 stateful entry stays cached",
            "cell: set(entries) <= set(server.members)",
        ),
        (
            "04-notoffered",
            "an expired stateless ticket is not offered",
            'cell: caches["server"].stats["timeouts"] == 0',
        ),
        (
            "04-auto",
            "the server auto-flush runs at the 256th good handshake",
            'cell: cache.stats["accept_good"] == 256',
        ),
        (
            "04-auto13",
            "a TLS 1.3 client cache flushes while reading the 255th handshake's tickets",
            "cell: flushed_at == 255",
        ),
        ("04-hour", "an hour-old session is still cached", "cell: kept.in_cache  # 1 h old"),
        (
            "04-lookupstats",
            "an expired TLS 1.2 lookup: a server timeout and a client miss",
            'cell: stats["server"].stats["timeouts"] == 1 and stats["client"].stats["misses"] == 1',
        ),
        (
            "04-13timeout",
            "an expired TLS 1.3 stateful entry counts a timeout",
            'cell: server.stats["timeouts"] == 1',
        ),
        (
            "04-clientmiss",
            "an expired ticket not offered: a client miss",
            'cell: caches["client"].stats["misses"] == 1',
        ),
        (
            "04-255",
            "the 255th handshake flushes nothing",
            'cell: auto.snapshot().caches["server"].size == 255',
        ),
        (
            "04-256all",
            "the 256th flushes every expired session",
            "cell: cache.members == (last.server.session, fresh.server.session)",
        ),
        (
            "04-13before",
            "the TLS 1.3 client cache flushed nothing before",
            'cell: auto13.snapshot().caches["client"].size == 2 * 254',
        ),
        ("04-versions", "7200 s in OpenSSL 1.1.1 and 3.x", "source: ssl/t1_lib.c tls1_default_timeout"),
    ],
    "05_tls13_tickets": [
        ("05-p0", "right after the handshake: refcount 1, not resumable", "cell: not p0.resumable"),
        ("05-dangle", "a ticket drops the SSL's reference: p0 dangles", "cell: p0.dangling"),
        ("05-three", "3 client objects, 2 server ones, server cache empty", "cell: len(client_objects) == 3"),
        (
            "05-pin",
            "a get1 before the tickets keeps a useless object",
            "cell: pinned.refcount == 1 and not pinned.resumable",
        ),
        ("05-shutdown", "tickets are processed by a second SSL_shutdown", "cell: before.dangling"),
        ("05-hits", "hits counts a ticket resumption with an empty cache", 'cell: stats["hits"] == 1'),
        ("05-stateful", "SSL_OP_NO_TICKET: one cache entry per ticket", "cell: cache.size == 2"),
        (
            "05-last",
            "only the last ticket's session lives",
            "cell: [s.freed for s in client_objects] == [True, True, False]",
        ),
        ("05-server2", "2 server objects: the second ticket on a copy", "cell: len(server_objects) == 2"),
        ("05-empty", "stateless tickets are not cached", 'cell: snap.caches["server"].size == 0'),
        (
            "05-notthis",
            "the pinned object is not the SSL's session",
            "cell: link2.client.session != pinned.session",
        ),
        (
            "05-first",
            "the first SSL_shutdown only sends close_notify",
            "cell: link3.client.session == before.session and not before.dangling",
        ),
        (
            "05-resume",
            "the last ticket resumes",
            "cell: resumed.reused and resumed.client.session == saved.session",
        ),
        (
            "05-again",
            "after a resumption one more ticket replaces the session",
            "cell: resumed.client.session != saved.session",
        ),
        (
            "05-yours",
            "the saved session is yours alone after that",
            "cell: saved.refcount == 1  # yours alone",
        ),
    ],
    "06_cache_limits": [
        ("06-n1", "3.0 (since PR #18905): size 3 holds 2", "cell: cache.size == 2"),
        (
            "06-evict",
            "eviction drops the cache's reference, marks not resumable",
            "cell: (evicted.refcount, evicted.in_cache, evicted.resumable)",
        ),
        (
            "06-miss",
            "an evicted session: misses on both sides; a cached one: hits",
            'cell: stats["misses"] == 1 and stats["hits"] == 1',
        ),
        (
            "06-dropoffer",
            "a TLS 1.2 miss drops the SSL's reference to the offered session",
            "cell: gone.refcount == before_offer",
        ),
        ("06-small", "sizes 0..4 hold 5, 1, 1, 2, 3", "cell: holds == {0: 5, 1: 1, 2: 1, 3: 2, 4: 3}"),
        ("06-default", "the default size is 20480", "test: test_openssl_defaults_of_a_fresh_ssl_ctx"),
        ("06-cachefull", "cache_full counts each eviction", 'cell: cache.stats["cache_full"] == 2'),
        (
            "06-tail",
            "the oldest (the tail) is evicted; newest first",
            "cell: cache.members == (links[3].server.session, links[2].server.session)",
        ),
        (
            "06-newsession",
            "after the miss the client SSL holds a new session",
            "cell: missed.client.session != gone.session",
        ),
        (
            "06-clientmiss",
            "the client counts a miss too",
            'cell: lab.snapshot().caches["client"].stats["misses"] == 1',
        ),
        (
            "06-accept",
            "accept_good counts finished server handshakes",
            'cell: snap.caches["server"].stats["accept_good"] == 6',
        ),
        (
            "06-111",
            "OpenSSL 1.1.1 keeps N (evicts while >, after the insert)",
            "source: ssl/ssl_sess.c SSL_CTX_add_session",
        ),
        (
            "06-20479",
            "the default 20480 keeps 20479 (the N-1 rule)",
            "source: ssl/ssl_sess.c SSL_CTX_add_session",
        ),
        (
            "06-ctrl",
            "the counters are SSL_CTX_ctrl codes 20..31",
            "source: include/openssl/ssl.h SSL_CTRL_SESS_NUMBER",
        ),
    ],
    "07_one_session_one_ctx": [
        ("07-share", "within one SSL_CTX each resuming SSL holds a reference", "cell: saved.refcount == 4"),
        (
            "07-refused",
            "sesskit refuses another Lab's session, before any C call",
            "cell: len(other.trace) == steps",
        ),
        (
            "07-cross",
            "in OpenSSL, SSL_set_session across SSL_CTXs resumes",
            "test: test_set_session_across_client_ctxs_resumes_and_corrupts_nothing",
        ),
        (
            "07-sidctx",
            "a server session on a client fails on the session id context",
            "test: test_server_session_on_a_client_fails_on_the_session_id_context",
        ),
        (
            "07-verify",
            "SSL_VERIFY_PEER without a session id context (raw library)",
            "test: test_verify_peer_without_a_session_id_context",
        ),
        (
            "07-toy",
            "a second cache's add_session steals the links (toy)",
            "cell: A.tail is X and X.owner is B",
        ),
        ("07-double", "the first cache's flush frees it again and again (toy)", "cell: freed[-1][1] < 0"),
        (
            "07-pyopenssl",
            "pyOpenSSL raises ValueError across Contexts",
            "test: test_side_notes.py::test_pyopenssl_set_session_refuses_another_context",
        ),
        (
            "07-sidctx-run",
            "the refusal names the session id context",
            'cell: "session id context" in server_refusal',
        ),
        (
            "07-crossed",
            "without an id context a server's session resumes on a client: one object, both SSLs",
            "cell: crossed.reused and crossed.client.session == crossed.server.session",
        ),
        (
            "07-verify-run",
            "SSL_VERIFY_PEER without a session id context caches nothing: no resumption",
            "cell: not two.reused and server_cache.size == 0",
        ),
        (
            "07-verifyctx",
            "with an id context the same server resumes",
            "cell: two.reused and with_ctx.snapshot()",
        ),
        (
            "07-verifyticket",
            "with tickets every resumption would fail: the lab refuses and says why",
            'cell: "session id context uninitialized" in ticket_refusal',
        ),
        (
            "07-verifyticket-run",
            "on the real libssl that handshake fails, TLS 1.2 and 1.3",
            "test: test_sid_ctx.py::test_the_refused_combination_fails_the_handshake_in_openssl",
        ),
        ("07-toywrite", "the unlinking writes into A's SSL_CTX (toy)", "cell: A.TAIL.writes"),
        ("07-toyb1", "b1 falls out of B's list (toy)", 'cell: B.head is X and "b1" not in B.walk()'),
        (
            "07-cpython",
            "CPython's ssl refuses a session of another SSLContext",
            "test: test_side_notes.py::test_cpython_ssl_refuses_a_session_of_another_context",
        ),
    ],
    "08_workshop": [
        ("08-ex1", "get1 on a stateful server session: 3", "cell: check(setup1, 'ssl:s1', 'get1', 3)"),
        ("08-ex2", "dirty free with a get1: 1", "cell: check(setup2, 'ssl:s1', 'free', 1)"),
        ("08-ex3", "the tickets free S1: 0", "cell: check(setup3, 'ssl:c1', 'read', 0)"),
        ("08-ex4", "clean SSL_clear: 2", "cell: check(setup4, 'ssl:s1', 'clear', 2)"),
        ("08-ex5", "a full cache of size 3 (3.0): 1", "cell: check(setup5, 'ssl:s1', 'connect', 1)"),
        ("08-ex6", "the strict expiry boundary: 1, then 0", 'cell: check(setup6b, "ref:1", "flush", 0)'),
        (
            "08-ex6a",
            "at exactly time + timeout the flush keeps it",
            "cell: check(setup6, 'ref:1', 'flush', 1)",
        ),
        ("08-111", "on OpenSSL 1.1.1 exercise 5's answer is 2", "source: ssl/ssl_sess.c SSL_CTX_add_session"),
        (
            "08-version",
            "the top cell prints the OpenSSL the answers come from",
            "test: test_notebooks.py::test_notebook_runs_top_to_bottom",
        ),
    ],
    "09_two_openssls": [
        ("09-two", "two libraries, two versions", "cell: a.openssl_version != b.openssl_version"),
        (
            "09-same",
            "the same story gives identical snapshots",
            "cell: len(on_libssl) == len(on_pyopenssl) and not differ",
        ),
        (
            "09-sealed",
            "a sealed ticket cannot be aged on pyOpenSSL",
            'cell: aged_ticket("pyopenssl") == (True, 0)',
        ),
        (
            "09-watch",
            "a Connection collected without shutdown(): the saved Session does not resume",
            'cell: w.trace[-1].result == "full handshake"',
        ),
        (
            "09-get1",
            "Connection.get_session() holds a reference; the Session keeps its Context",
            "test: test_side_notes.py::test_pyopenssl_session_outlives_its_connection_and_keeps_its_context",
        ),
        (
            "09-dirty",
            "pyOpenSSL without shutdown(): the session is not resumable",
            "test: test_side_notes.py::test_pyopenssl_collected_without_shutdown_spoils_the_session",
        ),
        (
            "09-unbound",
            "pyOpenSSL binds no SSL_clear or flush: refused, naming libssl",
            "cell: len(refused) == 2",
        ),
        ("09-aged", "on libssl the aged ticket expires", 'cell: aged_ticket("libssl") == (False, 1)'),
        (
            "09-separate",
            "no pointer crosses: each engine has its own library instance",
            "test: test_pyopenssl.py::test_the_two_engines_use_separate_library_instances",
        ),
        (
            "09-differential",
            "hundreds of random programs agree with the model on pyOpenSSL",
            "test: test_differential_pyopenssl.py::test_at_least_100_programs_of_30_steps_ran",
        ),
        (
            "09-ossltime",
            "session times are OSSL_TIME since 3.2 (time_t in 3.0, 3.1)",
            "source: ssl/ssl_local.h OSSL_TIME",
        ),
    ],
}


def _assert_cells(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _markdown(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


@pytest.mark.parametrize("notebook", sorted(CLAIMS))
def test_every_listed_claim_is_asserted(notebook: str) -> None:
    code = _assert_cells(ROOT / "notebooks" / f"{notebook}.ipynb")
    asserts = "\n".join(line for line in code.splitlines() if "assert" in line)
    here = _test_names(Path(__file__))
    for claim_id, claim, where in CLAIMS[notebook]:
        kind, _, what = where.partition(": ")
        if kind == "cell":
            assert what in asserts, f"{claim_id} ({claim}): no assert cell in {notebook} has {what!r}"
        elif kind == "source":  # read from OpenSSL's source; the notebook must cite the function
            prose = _markdown(ROOT / "notebooks" / f"{notebook}.ipynb")
            assert what.split()[-1] in prose, f"{claim_id} ({claim}): {notebook} does not cite {what}"
        else:
            assert kind == "test", where
            file, _, name = what.rpartition("::")
            names = _test_names(ROOT / "tests" / file) if file else here
            assert name in names, f"{claim_id} ({claim}): no test {what}"


def test_every_notebook_has_its_claims_listed() -> None:
    names = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert names == set(CLAIMS)
