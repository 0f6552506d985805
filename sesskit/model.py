"""The reference model of OpenSSL 3.0's session bookkeeping (standard library only).

Everything that decides an SSL_SESSION's reference count, its cache entry or a
cache statistic in sesskit's model lives in this file.  It simulates the
system libssl 3.0.x (checked against the 3.0.22 sources, whose session code is
that of 3.0.19) step by step, at the same points where the real engine looks,
so that it predicts the very numbers the real engine reads.

Theory of operation
===================

The refcount ledger
-------------------
An SSL_SESSION is freed when its reference count reaches 0.  Every reference
has exactly one holder, and the model keeps the count as the sum of them:

* **the SSL** (``s->session``): one reference while the SSL points at it.  It
  is taken when a handshake creates the session (``ssl_get_new_session``),
  by ``SSL_set_session``, or when the server resumes (the lookup's
  reference passes to the SSL).  It is dropped by ``SSL_free``, by a "bad"
  ``SSL_clear``, and whenever OpenSSL replaces ``s->session`` -- a TLS 1.3
  NewSessionTicket (client), a second ticket or a ticket after resumption
  (server), a missed resumption (client), an unresumable offered session.
* **the SSL_CTX cache**: one reference for both its lhash and its list
  (``SSL_CTX_add_session``), dropped when the session leaves: flush,
  eviction, expired lookup, ``SSL_CTX_remove_session``.
* **each SSL_get1_session caller**: +1 each call, -1 at ``SSL_SESSION_free``.
* **new_session_cb**: OpenSSL takes one before calling it and, because the
  engines' callback returns 0, drops it again at once: net 0, but the
  callback *sees* the session (that is how sesskit labels it).
* ``SSL_get0_session`` takes none: a borrowed pointer.

The cache
---------
An SSL_CTX cache is an lhash keyed by session id plus a doubly linked list
sorted by expiry (``time + timeout``): the head expires last, the tail first.
``SSL_SESSION_list_add`` puts a session before the first one that expires no
later than it (ties go towards the head).  ``SSL_SESSION_set_time`` on a
cached session removes and re-adds it.  The rules, each with its reason and
its source, are the table ``RULES`` below; the code cites them by key.

Virtual time
------------
``now`` is the sum of ``advance()`` calls.  A session OpenSSL stamps fresh
gets ``now``; ``advance(d)`` moves every live session's time back by ``d`` in
label order (``SSL_SESSION_set_time``); a stateless ticket remembers the time
of its session at issue, and the server's decrypted copy gets it back.

Observation points
------------------
The real engine feeds one TLS record per libssl call and looks at the called
SSL's session after each call, and at every session ``new_session_cb``
announces.  A session first seen in an operation gets a label at the end of
it: client-side ones first, then server-side, each in the order seen.  A
session created and freed between two looks (an expired ticket's decrypted
copy) is never labelled.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from .trace import STAT_NAMES  # one list of the SSL_CTX_sess_* counters sesskit reports

__all__ = ["ONE_WEEK", "RULES", "TICKETS_SENT", "Cache", "Model", "Rule", "SSLObj", "Session", "Ticket"]

ONE_WEEK = 7 * 24 * 60 * 60  # RFC 8446 caps a TLS 1.3 ticket lifetime (create_ticket_prequel)
SIDES = ("client", "server")


class Rule(NamedTuple):
    """One OpenSSL rule: what it does in plain words, and where it is written."""

    reason: str
    source: str


RULES: dict[str, Rule] = {
    "new_session": Rule(
        "a handshake that does not resume makes a new session held by the SSL",
        "ssl/ssl_sess.c ssl_get_new_session",
    ),
    "no_id_no_cache": Rule(
        "a session with an empty id (TLS 1.2 server issuing a ticket; TLS 1.3 before its ticket) "
        "is never cached, and one marked not resumable is not cached either",
        "ssl/ssl_lib.c ssl_update_cache",
    ),
    "cache_add": Rule(
        "at handshake end (server, TLS <= 1.2; client with SSL_SESS_CACHE_CLIENT) or per ticket "
        "(TLS 1.3) the session goes into the cache, which takes one reference",
        "ssl/ssl_lib.c ssl_update_cache, ssl/ssl_sess.c SSL_CTX_add_session",
    ),
    "tls13_stateless": Rule(
        "a TLS 1.3 server does not cache stateless tickets (no SSL_OP_NO_TICKET, no early data, "
        "no remove_session_cb)",
        "ssl/ssl_lib.c ssl_update_cache",
    ),
    "verify_no_sid_ctx": Rule(
        "a server with SSL_VERIFY_PEER and no session id context caches none of its sessions (nor calls "
        "new_session_cb or auto-flushes): it could not tell, on resumption, that a session was made for "
        "this application, so its client-certificate check could be skipped (OpenSSL 3.0); a ticket "
        "resumption on such a server fails the handshake ('session id context uninitialized')",
        "ssl/ssl_lib.c ssl_update_cache, ssl/ssl_sess.c ssl_get_prev_session, "
        "SSL_CTX_set_session_id_context(3)",
    ),
    "resumed_not_readded": Rule(
        "a TLS <= 1.2 resumption is not added to the cache again",
        "ssl/ssl_lib.c ssl_update_cache (!s->hit)",
    ),
    "capacity": Rule(
        "the new entry is hashed before the size check, so a cache of size N keeps N-1 sessions "
        "(OpenSSL 3.0 since PR #18905, and later; 1.1.1 keeps N): the tail (earliest expiry) is "
        "evicted and cache_full counts it",
        "ssl/ssl_sess.c SSL_CTX_add_session",
    ),
    "auto_flush": Rule(
        "unless SSL_SESS_CACHE_NO_AUTO_CLEAR, ssl_update_cache flushes expired sessions when "
        "(connect_good or accept_good) & 0xff == 0xff, checked before the counter is incremented",
        "ssl/ssl_lib.c ssl_update_cache",
    ),
    "flush": Rule(
        "flush walks from the tail and removes sessions with at > time + timeout (strict), "
        "marking them not resumable; it does not count timeouts",
        "ssl/ssl_sess.c SSL_CTX_flush_sessions",
    ),
    "bad_session": Rule(
        "an SSL that has a session, did not send close_notify and is not in init is 'bad': "
        "SSL_free/SSL_clear remove its session from the cache by id and, if the id is not empty, "
        "mark it not resumable even when it was not cached",
        "ssl/ssl_sess.c ssl_clear_bad_session, remove_session_lock",
    ),
    "clear_keeps": Rule(
        "SSL_clear keeps a good session for the next handshake and drops a bad one",
        "ssl/ssl_lib.c SSL_clear",
    ),
    "tls13_client_ticket": Rule(
        "each TLS 1.3 NewSessionTicket replaces the client's session by a copy carrying the "
        "ticket (ssl_session_dup) and frees the SSL's reference to the old one",
        "ssl/statem/statem_clnt.c tls_process_new_session_ticket",
    ),
    "tls12_client_ticket": Rule(
        "a TLS 1.2 ticket is stored in the client's session, whose id becomes SHA256(ticket)",
        "ssl/statem/statem_clnt.c tls_process_new_session_ticket",
    ),
    "tls13_server_ticket": Rule(
        "a TLS 1.3 server sends 2 tickets after a full handshake and 1 after a resumption; the "
        "second ticket, and any after a resumption, is made on a copy of the session",
        "ssl/statem/statem_srvr.c tls_construct_new_session_ticket",
    ),
    "tls13_single_use": Rule(
        "at the end of every TLS 1.3 handshake a client with SSL_SESS_CACHE_CLIENT removes its "
        "session from the cache (tickets are single use)",
        "ssl/statem/statem_lib.c tls_finish_handshake",
    ),
    "prev_session": Rule(
        "the server resumes a ticket or a cached session id unless it expired (now > time + "
        "timeout): that counts a timeout, and only the TLS <= 1.2 session-id lookup removes it",
        "ssl/ssl_sess.c ssl_get_prev_session",
    ),
    "lookup_miss": Rule(
        "a session id (or TLS 1.3 stateful ticket) not found in the server cache counts a miss",
        "ssl/ssl_sess.c lookup_sess_in_cache",
    ),
    "client_miss": Rule(
        "a client whose offered session (with an id) was not resumed counts a miss and starts a new session",
        "ssl/statem/statem_clnt.c tls_process_server_hello",
    ),
    "unresumable_offer": Rule(
        "a client offered a session that is not resumable starts a new one instead",
        "ssl/statem/statem_clnt.c tls_construct_client_hello",
    ),
    "old_ticket": Rule(
        "a TLS 1.3 client does not offer a ticket older than its lifetime hint (+1 s)",
        "ssl/statem/extensions_clnt.c tls_construct_ctos_psk",
    ),
    "sealed_ticket": Rule(
        "a stateless ticket is sealed: SSL_SESSION_set_time on the client's copy cannot age the "
        "server's view; only a ticket callback that stamps the ticket can (pyOpenSSL binds none)",
        "ssl/t1_lib.c tls_decrypt_ticket, SSL_CTX_set_session_ticket_cb(3)",
    ),
    "set_time": Rule(
        "SSL_SESSION_set_time re-sorts a cached session in its cache's list",
        "ssl/ssl_sess.c SSL_SESSION_set_time",
    ),
}

# How many NewSessionTickets a TLS 1.3 server sends (SSL_CTX_set_num_tickets default 2).
TICKETS_SENT = {"full handshake": 2, "resumption": 1}


@dataclass(frozen=True)
class Ticket:
    """What a NewSessionTicket carries, as far as the bookkeeping needs.

    ``stateful``: the ticket is the server session's id (SSL_OP_NO_TICKET in
    TLS 1.3); otherwise it is sealed and the server decrypts a fresh copy.
    """

    stateful: bool
    issued: int  # virtual time of the server session when the ticket was made
    timeout: int
    server_id: int
    lifetime_hint: int


@dataclass(eq=False)
class Session:
    """One SSL_SESSION.  ``sid`` 0 is an empty session id; other values stand for id bytes."""

    serial: int
    side: str
    time: int
    timeout: int
    sid: int = 0
    ticket: Ticket | None = None
    not_resumable: bool = False
    refs: int = 1
    owner: Cache | None = None
    label: str | None = None

    @property
    def freed(self) -> bool:
        return self.refs <= 0

    @property
    def resumable(self) -> bool:
        """``SSL_SESSION_is_resumable``: not marked, and an id or a ticket."""
        return not self.freed and not self.not_resumable and (self.sid != 0 or self.ticket is not None)

    @property
    def expires(self) -> int:
        """``calc_timeout``: the list's sort key."""
        return self.time + self.timeout

    def expired(self, at: int) -> bool:
        """``sess_timedout``: strictly after time + timeout."""
        return at > self.time + self.timeout

    @property
    def name(self) -> str:
        return self.label or f"an unlabelled {self.side} session"


@dataclass(eq=False)
class Cache:
    """An SSL_CTX's internal cache: lhash by id + list by expiry (index 0 = head)."""

    side: str
    size_limit: int
    enabled: bool  # the SSL_SESS_CACHE_CLIENT / _SERVER bit of this side
    by_id: dict[int, Session] = field(default_factory=dict)
    members: list[Session] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_NAMES, 0))


@dataclass(eq=False)
class SSLObj:
    """One SSL: its session, shutdown flags and the records waiting for it."""

    name: str
    side: str
    session: Session | None = None
    peer: SSLObj | None = None
    hit: bool = False
    sent_shutdown: bool = False
    received_shutdown: bool = False
    in_before: bool = False
    cleared: bool = False
    freed: bool = False
    inbox: deque[tuple[str, Ticket | None]] = field(default_factory=deque)


@dataclass
class OpLog:
    """What one operation touched and saw; read by the engine adapter."""

    seen: dict[str, list[Session]] = field(default_factory=lambda: {"client": [], "server": []})
    sessions: dict[int, Session] = field(default_factory=dict)
    ssls: dict[str, SSLObj] = field(default_factory=dict)
    caches: set[str] = field(default_factory=set)
    pending: list[tuple[str, tuple[Session, ...]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    new_labels: list[Session] = field(default_factory=list)


class Model:
    """Two SSL_CTXs (client, server) and everything made from them."""

    def __init__(
        self,
        tls: str = "1.3",
        tickets: bool = True,
        client_cache: bool = False,
        cache_size: int = 20480,
        timeout: int = 7200,
        ticket_aging: bool = True,
        *,
        sid_ctx: bool = True,
        verify_peer: bool = False,
    ) -> None:
        self.tls13 = tls == "1.3"
        # The server has a session id context (its value only matters when sessions cross SSL_CTXs,
        # which a Lab refuses) and/or SSL_VERIFY_PEER: rule "verify_no_sid_ctx" when it has only the latter.
        self.server_uncached = verify_peer and not sid_ctx
        # False: nothing can age a sealed ticket (rule "sealed_ticket"): the pyopenssl engine.
        self.ticket_aging = ticket_aging
        self.tickets = tickets
        self.timeout = timeout
        self.now = 0
        self.caches = {
            "client": Cache("client", cache_size, client_cache),
            "server": Cache("server", cache_size, True),
        }
        self.ssls: dict[str, SSLObj] = {}
        self.by_label: dict[str, Session] = {}
        self.live: dict[int, Session] = {}  # labelled sessions not yet freed, by serial
        self._serials = itertools.count(1)
        self._ids = itertools.count(1)
        self._labels = itertools.count(1)
        self._links = 0
        self._net = ""  # how a connect's notes net a dropped offer (see connect)
        self.log = OpLog()

    # -- operation frame -----------------------------------------------------
    def begin(self, *ssls: SSLObj) -> None:
        self.log = OpLog()
        for x in ssls:
            self._look(x)

    def end(self) -> OpLog:
        """Finish an operation: label what was first seen (client side first)."""
        log = self.log
        for x in list(log.ssls.values()):
            self._look(x)
        for side in SIDES:
            for s in log.seen[side]:
                s.label = f"S{next(self._labels)}"
                self.by_label[s.label] = s
                log.new_labels.append(s)
                if not s.freed:
                    self.live[s.serial] = s
        for s in log.sessions.values():
            if s.freed and s.label:
                self.live.pop(s.serial, None)
        for text, sessions in log.pending:
            log.notes.append(text.format(*(s.label or "a copy nobody saw" for s in sessions)))
        return log

    def note(self, text: str, *sessions: Session) -> None:
        """Remember why something happened; ``{}`` slots get session labels at the end."""
        entry = (text, sessions)
        if entry not in self.log.pending:
            self.log.pending.append(entry)

    def _see(self, s: Session | None) -> None:
        if s is None or s.freed:
            return
        self.log.sessions[s.serial] = s
        if s.label is None and s not in self.log.seen[s.side]:
            self.log.seen[s.side].append(s)

    def _look(self, x: SSLObj) -> None:
        """The engine looks at an SSL after a libssl call on it."""
        self.log.ssls[x.name] = x
        if not x.freed:
            self._see(x.session)

    def _touch(self, s: Session) -> None:
        self.log.sessions[s.serial] = s

    def _stat(self, side: str, name: str) -> None:
        self.caches[side].stats[name] += 1
        self.log.caches.add(side)

    # -- the ledger ----------------------------------------------------------
    def _new(self, side: str, sid: int = 0) -> Session:
        return Session(next(self._serials), side, self.now, self.timeout, sid)

    def _up(self, s: Session) -> None:
        s.refs += 1
        self._touch(s)

    def _down(self, s: Session) -> None:
        """``SSL_SESSION_free``: one reference fewer; at 0 the session is gone."""
        s.refs -= 1
        self._touch(s)

    def _set_session(self, x: SSLObj, s: Session | None) -> None:
        """Replace ``x->session`` (the new one's reference is already counted)."""
        old, x.session = x.session, s
        if old is not None:
            self._down(old)

    def _dup(self, src: Session, side: str) -> Session:
        """``ssl_session_dup(src, 0)`` on a ``side`` SSL: a copy without ticket, resumable, in no cache."""
        return Session(next(self._serials), side, src.time, src.timeout, src.sid)

    # -- the cache (ssl/ssl_sess.c) ------------------------------------------
    def _list_remove(self, c: Cache, s: Session) -> None:
        if s.owner is c:
            c.members.remove(s)
            s.owner = None
            self._touch(s)

    def _list_add(self, c: Cache, s: Session) -> None:
        """``SSL_SESSION_list_add``: before the first session expiring no later (head first)."""
        self._list_remove(c, s)
        m = c.members
        if not m or s.expires >= m[0].expires:
            m.insert(0, s)
        elif s.expires < m[-1].expires:
            m.append(s)
        else:
            i = next(i for i in range(1, len(m)) if s.expires >= m[i].expires)
            m.insert(i, s)
        s.owner = c
        self._touch(s)
        self.log.caches.add(c.side)

    def _unhash(self, c: Cache, s: Session) -> None:
        del c.by_id[s.sid]
        self._list_remove(c, s)
        self.log.caches.add(c.side)

    def add_session(self, c: Cache, s: Session) -> None:
        """``SSL_CTX_add_session``: hash first, then evict the tail while full."""
        self._up(s)
        old = c.by_id.get(s.sid)
        c.by_id[s.sid] = s
        self.log.caches.add(c.side)
        if old is not None and old is not s:
            self._list_remove(c, old)
            self._down(old)
            old = None
        if old is None:
            self.note(f"{{}} went into the {c.side} cache (+1)", s)
            while c.size_limit > 0 and len(c.by_id) >= c.size_limit and c.members:
                victim = c.members[-1]
                self._remove(c, victim)
                self._stat(c.side, "cache_full")
                self.note(
                    f"the {c.side} cache was full (size {c.size_limit} holds {max(c.size_limit - 1, 1)}): "
                    "it evicted its tail {} (cache_full +1)",
                    victim,
                )
        self._list_add(c, s)
        if old is s:
            self._down(s)

    def _remove(self, c: Cache, s: Session) -> bool:
        """``remove_session_lock``: by id; marks ``s`` not resumable if its id is not empty."""
        if s.sid == 0:
            return False
        r = c.by_id.get(s.sid)
        if r is not None:
            self._unhash(c, r)
        s.not_resumable = True
        self._touch(s)
        if r is not None:
            self._down(r)
        return r is not None

    def flush(self, c: Cache, at: int) -> int:
        """``SSL_CTX_flush_sessions``: from the tail, while expired at ``at``."""
        gone = []
        while c.members and c.members[-1].expired(at):
            s = c.members[-1]
            self._unhash(c, s)
            s.not_resumable = True
            gone.append(s)
        for s in gone:
            self._down(s)
        return len(gone)

    def set_time(self, s: Session, t: int) -> None:
        """``SSL_SESSION_set_time``: a cached session is re-sorted in its owner's list."""
        s.time = t
        if s.owner is not None:
            self._list_add(s.owner, s)

    def _update_cache(self, x: SSLObj) -> None:
        """``ssl_update_cache`` for the SSL's side (its mode bit is the side's)."""
        s = x.session
        assert s is not None
        c = self.caches[x.side]
        if s.sid == 0 or s.not_resumable:
            return
        if x.side == "server" and self.server_uncached:
            self.note(
                "the server has SSL_VERIFY_PEER and no session id context, so ssl_update_cache caches none "
                "of its sessions (nor calls new_session_cb): on resumption nothing could tell that a session "
                "was made for this application, whose client-certificate check would be skipped "
                "(ssl/ssl_lib.c ssl_update_cache, SSL_CTX_set_session_id_context(3), OpenSSL 3.0)"
            )
            return
        if c.enabled and (not x.hit or self.tls13):
            server13 = self.tls13 and x.side == "server"
            if not server13 or not self.tickets:
                self.add_session(c, s)
            self._see(s)  # new_session_cb
        if c.enabled:
            good = c.stats["connect_good" if x.side == "client" else "accept_good"]
            if good & 0xFF == 0xFF:
                n = self.flush(c, self.now)
                self.note(
                    f"auto-flush of the {c.side} cache at good handshake #{good + 1}"
                    f" removed {n} expired session(s)"
                )

    # -- handshake pieces --------------------------------------------------------
    def _new_session(self, x: SSLObj, sid: int = 0) -> Session:
        s = self._new(x.side, sid)
        self._set_session(x, s)
        return s

    def _client_hello(self, c: SSLObj) -> tuple[int, Ticket | None]:
        """``tls_construct_client_hello``: what the client offers (session id, ticket)."""
        self._stat("client", "connect")
        s = c.session
        if s is not None and not s.resumable:
            self.note(
                "{} is not resumable, so the client did not offer it and started a new session: "
                f"its SSL let go of {{}} (-1{self._net})",
                s,
                s,
            )
        if s is None or not s.resumable:
            s = self._new_session(c)
        ticket = s.ticket
        if self.tls13 and ticket is not None:
            age = self.now - s.time
            if ticket.lifetime_hint < max(age - 1, 0):
                self.note(f"{{}}'s ticket is {age} s old, past its lifetime hint: not offered", s)
                ticket = None
        return s.sid, ticket

    def _ticket_copy(self, t: Ticket, sid: int) -> Session:
        """The server's decrypted copy of a sealed ticket, aged by the ticket callback.

        Without one (``ticket_aging=False``) the copy carries the real time of
        issue, which the virtual clock never moved: it is as fresh as now.
        """
        issued = t.issued if self.ticket_aging else self.now
        return Session(next(self._serials), "server", issued, t.timeout, sid)

    def _lookup(self, sid: int) -> Session | None:
        """``lookup_sess_in_cache``: +1 on a hit, a miss counted otherwise."""
        s = self.caches["server"].by_id.get(sid)
        if s is None:
            self._stat("server", "misses")
            self.note("the server found no such session in its cache (misses +1)")
            return None
        self._up(s)
        return s

    def _prev_session(self, x: SSLObj, sid: int, ticket: Ticket | None) -> bool:
        """``ssl_get_prev_session`` (server): resume, or leave ``x`` without a session."""
        from_cache = False
        ret: Session | None = None
        if self.tls13:
            if ticket is not None:
                ret = (
                    self._lookup(ticket.server_id)
                    if ticket.stateful
                    else self._ticket_copy(ticket, ticket.server_id)
                )
        elif self.tickets and ticket is not None:
            ret = self._ticket_copy(ticket, sid)
        elif sid:
            from_cache = True
            ret = self._lookup(sid)
        if ret is None:
            return False
        if ret.expired(self.now):
            self._stat("server", "timeouts")
            self.note(
                f"the offered session expired (age {self.now - ret.time} s > timeout "
                f"{ret.timeout} s): timeouts +1, full handshake"
            )
            if from_cache:
                self._remove(self.caches["server"], ret)
                self.note(
                    "the TLS <= 1.2 lookup removed the expired {} from the server cache (-1, marked not "
                    "resumable) and dropped the reference the lookup took",
                    ret,
                )
            self._down(ret)
            return False
        x.session = ret
        self._touch(ret)
        self._stat("server", "hits")
        if ticket is not None and not ticket.stateful:
            self.note(
                "the server decrypted the ticket into a fresh copy {} held by its SSL; hits +1 "
                "(sess_hit counts ticket resumptions too, with nothing in the cache)",
                ret,
            )
        else:
            self.note(
                "the server found {} in its cache: the reference the lookup took became its SSL's "
                "session (+1); hits +1",
                ret,
            )
        return True

    def _server_hello(self, s: SSLObj, sid: int, ticket: Ticket | None) -> None:
        self._stat("server", "accept")
        s.hit = self._prev_session(s, sid, ticket)
        if not s.hit:
            new_id = 0 if (self.tls13 or self.tickets) else next(self._ids)
            self._new_session(s, new_id)

    def _client_server_hello(self, c: SSLObj, hit: bool, server_sid: int) -> None:
        """``tls_process_server_hello``: a miss on an offered id starts a new session."""
        c.hit = hit
        if hit:
            if c.session is not None and c.session.side == "server":
                self.note(
                    "{} is a server-side session, and it resumed on a client: the client checks that the "
                    "resumed session's id context equals its own (tls_process_server_hello in "
                    "ssl/statem/statem_clnt.c), and here both are empty (server_sid_ctx=None). With an id "
                    "context on the server that check fails the handshake ('attempt to reuse session in "
                    "different context', OpenSSL 3.0): it is the session id context that keeps a server's "
                    "session off a client, not the cache. Client SSL and server SSL now share one object",
                    c.session,
                )
            return
        assert c.session is not None
        if c.session.sid:
            self._stat("client", "misses")
            self.note(
                "{} was offered but not resumed (client misses +1): the client started a new session and "
                f"its SSL dropped its reference to {{}} (-1{self._net})",
                c.session,
                c.session,
            )
            self._new_session(c)
        if not self.tls13:
            c.session.sid = server_sid

    def _client_finish(self, c: SSLObj) -> None:
        """``tls_finish_handshake`` (client)."""
        assert c.session is not None
        if self.tls13:
            if self.caches["client"].enabled and c.session.sid:
                cached = c.session.owner is not None
                self._remove(self.caches["client"], c.session)
                left = "left the client cache (-1) and " if cached else ""
                self.note(f"TLS 1.3 single use: {{}} {left}is no longer resumable", c.session)
        else:
            self._update_cache(c)
        if c.hit:
            self._stat("client", "hits")
        self._stat("client", "connect_good")

    def _server_finish(self, s: SSLObj) -> None:
        if not self.tls13:
            self._update_cache(s)
        self._stat("server", "accept_good")

    def _send(self, frm: SSLObj, kind: str, ticket: Ticket | None = None) -> None:
        peer = frm.peer
        if peer is not None and not peer.freed and not peer.cleared:
            peer.inbox.append((kind, ticket))

    def _server_ticket(self, s: SSLObj, index: int) -> Ticket:
        """``tls_construct_new_session_ticket`` (TLS 1.3 and TLS 1.2 stateless)."""
        if self.tls13:
            if index > 0 or s.hit:
                assert s.session is not None
                old, new = s.session, self._dup(s.session, s.side)
                self._set_session(s, new)
                self.note("the server made ticket {} on a copy of {}, which its SSL let go", new, old)
            sess = s.session
            assert sess is not None
            sess.sid = next(self._ids)
            sess.time = self.now
            hint = min(sess.timeout, ONE_WEEK)
        else:
            sess = s.session
            assert sess is not None
            hint = sess.timeout
        t = Ticket(self.tls13 and not self.tickets, self.now, sess.timeout, sess.sid, hint)
        if self.tls13:
            self._update_cache(s)
        self._send(s, "ticket", t)
        return t

    def _client_ticket(self, c: SSLObj, t: Ticket) -> None:
        """``tls_process_new_session_ticket``: TLS 1.3 always copies; TLS 1.2 if the id is set."""
        old = c.session
        assert old is not None
        if self.tls13 or old.sid:
            new = self._dup(old, c.side)
            if not self.tls13 and self.caches["client"].enabled:
                self._remove(self.caches["client"], old)
            self._set_session(c, new)
        s = c.session
        assert s is not None
        s.time = self.now
        s.ticket = t
        s.sid = next(self._ids)  # SHA256(ticket)
        s.not_resumable = False
        self._touch(s)
        if self.tls13:
            self._update_cache(c)

    # -- operations ------------------------------------------------------------------
    def connect(self, resume: Session | None = None, client: SSLObj | None = None) -> tuple[SSLObj, SSLObj]:
        """Two new SSLs (or ``client``, reset by SSL_clear, and a new server) and a complete handshake.

        A ``client`` reset by SSL_clear keeps a good session, which its ClientHello offers
        (SSL_clear(3)); the server SSL it talked to before is no longer its peer.
        """
        self._links += 1
        if client is None:
            c = SSLObj(f"c{self._links}", "client")
        else:
            c = client
            if c.peer is not None and c.peer.peer is c:
                c.peer.peer = None
            c.in_before = c.cleared = False
        s = SSLObj(f"s{self._links}", "server")
        c.peer, s.peer = s, c
        self.ssls[c.name], self.ssls[s.name] = c, s
        self.begin(c, s)
        # A session dropped in this handshake nets 0 with SSL_set_session's +1, or is one SSL_clear kept.
        self._net = ", net 0 with SSL_set_session's +1" if resume is not None else ""
        if resume is not None:
            self._up(resume)
            self._set_session(c, resume)  # SSL_set_session (the SSL is in "before": nothing is bad)
            self._look(c)
        sid, ticket = self._client_hello(c)
        self._look(c)
        self._server_hello(s, sid, ticket)
        self._look(s)
        assert s.session is not None
        hit = s.hit
        self._client_server_hello(c, hit, s.session.sid)
        if self.tls13 or hit:
            self._client_finish(c)
        self._look(c)
        if self.tls13:
            for i in range(TICKETS_SENT["resumption" if hit else "full handshake"]):
                self._server_ticket(s, i)
        elif not hit and self.tickets:
            self._server_ticket(s, 0)
        self._server_finish(s)
        self._look(s)
        if not self.tls13 and not hit:
            if self.tickets:
                kind, t = c.inbox.popleft()
                assert kind == "ticket" and t is not None
                self._client_ticket(c, t)
            self._client_finish(c)
            self._look(c)
        return c, s

    def _feed(self, x: SSLObj, kind: str, t: Ticket | None) -> None:
        """One record processed by SSL_read / SSL_shutdown."""
        if x.received_shutdown:
            return
        if kind == "close":
            x.received_shutdown = True
        elif t is not None:
            self._client_ticket(x, t)
        self._look(x)

    def read(self, x: SSLObj) -> None:
        while x.inbox:
            self._feed(x, *x.inbox.popleft())

    def shutdown(self, x: SSLObj) -> None:
        if not x.sent_shutdown:
            x.sent_shutdown = True
            self._send(x, "close")
            self._look(x)
            return
        while x.inbox:
            self._feed(x, *x.inbox.popleft())
            if x.received_shutdown:
                break

    def _bad(self, x: SSLObj) -> bool:
        return x.session is not None and not x.sent_shutdown and not x.in_before

    def _clear_bad(self, x: SSLObj) -> bool:
        """``ssl_clear_bad_session``."""
        if not self._bad(x):
            return False
        assert x.session is not None
        cached = self._remove(self.caches[x.side], x.session)
        what = f"removed from the {x.side} cache (-1) and " if cached else ""
        what += "marked not resumable" if x.session.sid else "left alone (its id is empty)"
        self.note(f"{x.name} had not sent close_notify, so its session {{}} was 'bad': {what}", x.session)
        return True

    def clear(self, x: SSLObj) -> None:
        if self._clear_bad(x):
            self._set_session(x, None)
        elif x.session is not None:
            self.note(
                f"{x.name} had sent close_notify, so SSL_clear kept {{}} for the next handshake", x.session
            )
        x.sent_shutdown = x.received_shutdown = x.hit = False
        x.in_before = x.cleared = True
        x.inbox.clear()
        self._look(x)

    def free(self, x: SSLObj) -> None:
        if x.session is not None:
            self._clear_bad(x)
            self._set_session(x, None)
        x.freed = True
        x.inbox.clear()
        self.log.ssls[x.name] = x

    def set_session(self, x: SSLObj, s: Session) -> None:
        """``SSL_set_session`` on an existing SSL: the bad-session rule on its old session first.

        OpenSSL 3.0 (ssl/ssl_sess.c SSL_set_session): ``ssl_clear_bad_session``, then
        ``SSL_SESSION_up_ref`` of the new session, then ``SSL_SESSION_free`` of the old one.
        """
        self._clear_bad(x)
        self._up(s)
        self._set_session(x, s)
        self._look(x)

    def get1(self, x: SSLObj) -> Session | None:
        if x.session is not None:
            self._up(x.session)
        return x.session

    def session_free(self, s: Session) -> None:
        self._down(s)

    def advance(self, seconds: int) -> None:
        """Every live labelled session gets ``seconds`` older, in label order.

        The engine calls ``SSL_SESSION_set_time(s, time - seconds)``; on the
        virtual scale a session's time stays put and ``now`` moves on.  All
        keys shift alike, so the only visible effect is the re-sort of each
        cached session: a session re-added among equal expiries goes first.
        """
        self.now += seconds
        for s in sorted(self.live.values(), key=lambda s: int((s.label or "S0")[1:])):
            self.set_time(s, s.time)
