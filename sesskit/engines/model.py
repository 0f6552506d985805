"""The model engine: :mod:`sesskit.model` behind the Engine protocol, with a ``why`` per step.

It runs anywhere (no OpenSSL) and predicts what the real engines read.  Each
:class:`~sesskit.engines.base.OpResult` carries ``why``: the OpenSSL rules
that changed something in this step, with this step's numbers.
"""

from __future__ import annotations

from operator import attrgetter

from ..model import RULES, Model, OpLog, Session, SSLObj
from ..trace import CacheState, Delta, SessionState, SSLState
from .base import LabConfig, OpResult

__all__ = ["ModelEngine"]


_label = attrgetter("label")


class ModelEngine:
    """Engine over the pure-Python model of OpenSSL 3.0's session bookkeeping."""

    name = "model"
    openssl_version = "model of OpenSSL 3.0.x (system libssl 3.0.19)"

    def __init__(self, config: LabConfig, *, ticket_aging: bool = True) -> None:
        self.config = config
        self.model = Model(
            config.tls,
            config.tickets,
            config.client_cache,
            config.cache_size,
            config.timeout,
            ticket_aging=ticket_aging,
            sid_ctx=config.server_sid_ctx is not None,
            verify_peer=config.verify_peer,
        )
        self._last: dict[str, SessionState] = {}
        self._last_cache: dict[str, CacheState] = {}
        # Operations begun.  The model cannot finish an operation an exception stopped half-way
        # (it has no recover()): a Lab that sees this count move on such an exception stops
        # trusting itself; one that sees it unchanged knows nothing moved.
        self.op_seq = 0

    # -- deltas ------------------------------------------------------------------
    def _state(self, s: Session) -> SessionState:
        assert s.label is not None
        if s.freed:
            return SessionState(s.label, s.side, 0, None, False, True)
        cache = s.owner.side if s.owner is not None else None
        return SessionState(s.label, s.side, s.refs, cache, s.resumable)

    @staticmethod
    def _ssl_state(x: SSLObj) -> SSLState:
        if x.freed:
            return SSLState(x.name, x.side, None, True, False, x.cleared)
        label = x.session.label if x.session is not None else None
        return SSLState(x.name, x.side, label, False, x.sent_shutdown, x.cleared)

    def _cache_state(self, side: str) -> CacheState:
        c = self.model.caches[side]
        labels = tuple(map(_label, c.members))  # C-level iteration: large caches stay cheap
        return CacheState(side, len(c.by_id), labels, c.stats)

    def _finish(self, lead: str, value: object = None) -> OpResult:
        log = self.model.end()
        sessions: dict[str, SessionState] = {}
        moves: list[str] = []
        for s in log.sessions.values():
            if s.label is None:
                continue
            st = self._state(s)
            old = self._last.get(s.label)
            if st != old:
                sessions[s.label] = st
                self._last[s.label] = st
                if old is None:
                    moves.append(
                        f"{s.label} made and freed" if st.freed else f"{s.label} new at {st.refcount}"
                    )
                elif st.freed:
                    moves.append(f"{s.label} {old.refcount} → 0, freed")
                elif old.refcount != st.refcount:
                    moves.append(f"{s.label} {old.refcount} → {st.refcount}")
        caches: dict[str, CacheState] = {}
        for side in sorted(log.caches):
            cs = self._cache_state(side)
            if cs != self._last_cache.get(side):
                caches[side] = self._last_cache[side] = cs
        ssls = {n: self._ssl_state(x) for n, x in log.ssls.items()}
        return OpResult(Delta(sessions, ssls, caches), value, self._why(lead, log, moves))

    @staticmethod
    def _why(lead: str, log: OpLog, moves: list[str]) -> str:
        parts = [lead.rstrip(".") + "."]
        if log.notes:
            text = "; ".join(log.notes)
            if not text[1].isdigit():  # "c1 had..." keeps its SSL name as written
                text = text[0].upper() + text[1:]
            parts.append(text + ".")
        if moves:
            parts.append("Refcounts: " + ", ".join(moves) + ".")
        return " ".join(parts)

    def _ssl(self, name: str) -> SSLObj:
        return self.model.ssls[name]

    # -- the Engine protocol ------------------------------------------------------
    def initial(self) -> Delta:
        self.model.begin()
        for side in ("client", "server"):
            self.model.log.caches.add(side)
        return self._finish("").delta

    def connect(self, resume: str | None = None, client: str | None = None) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        m = self.model
        target = m.by_label[resume] if resume is not None else None
        again = m.ssls[client] if client is not None else None
        kept = again.session if again is not None and target is None else None
        c, s = m.connect(target, again)
        reused = c.hit
        tls = f"TLS {self.config.tls}"
        # The lead says what the client did; the model's notes say the rest (the server's side of a
        # resumption: the reference its cache lookup took becoming its SSL's session, or a decrypted
        # ticket's fresh copy; hits +1 either way, as sess_hit counts ticket resumptions too).
        setter = f"SSL_set_session({c.name}, {resume}) made {resume} {c.name}'s session (+1)"
        if again is not None:  # an SSL reset by SSL_clear, connected again (to a new server SSL)
            offer = setter if kept is None else f"it offers {kept.label}, the session SSL_clear kept"
            setter = f"{c.name}, reset by SSL_clear, handshakes again with a new server SSL; {offer}"
            if target is None and kept is None:
                lead = f"{c.name}↔{s.name}: {c.name}, reset by SSL_clear with no session left, handshakes "
                lead += f"again with a new server SSL: a full {tls} handshake"
            elif reused:
                lead = f"{c.name}↔{s.name}: {setter}, and the {tls} handshake resumed it"
            else:
                lead = f"{c.name}↔{s.name}: {setter}, but the {tls} handshake did not resume it"
        elif target is None:
            lead = f"{c.name}↔{s.name}: a full {tls} handshake: a new session on each side, held by its SSL"
        elif reused:
            lead = f"{c.name}↔{s.name}: {setter}, and the {tls} handshake resumed {resume}: {c.name} keeps it"
        else:
            lead = (
                f"{c.name}↔{s.name}: {setter}, but the {tls} handshake did not resume {resume}: "
                "a full handshake"
            )
        if m.tls13:
            n = 1 if reused else 2
            lead += (
                f"; the server sent {n} NewSessionTicket{'s' if n > 1 else ''} "
                f"({RULES['tls13_server_ticket'].source}), waiting for {c.name} to read"
            )
        elif not m.tickets and not reused and m.server_uncached:
            lead += "; with SSL_OP_NO_TICKET the server session has an id, but this server does not cache it"
        elif not m.tickets and not reused:
            lead += "; with SSL_OP_NO_TICKET the server session has an id and is cached"
        elif not reused:
            lead += "; the server issued a ticket, so its own session has an empty id and is not cached"
        return self._finish(lead, (c.name, s.name, reused))

    def get0(self, ssl: str) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        x = self._ssl(ssl)
        self.model.begin(x)
        sess = x.session
        if sess is None:
            return self._finish(f"SSL_get0_session({ssl}) returned NULL: the SSL has no session")
        lead = (
            f"SSL_get0_session({ssl}) returned {sess.label} without taking a reference "
            f"(refcount stays {sess.refs}); the pointer is valid only while someone else holds it"
        )
        return self._finish(lead, sess.label)

    def get1(self, ssl: str) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        x = self._ssl(ssl)
        self.model.begin(x)
        sess = self.model.get1(x)
        if sess is None:
            return self._finish(f"SSL_get1_session({ssl}) returned NULL: the SSL has no session")
        lead = f"SSL_get1_session({ssl}) returned {sess.label} and took a reference you must SSL_SESSION_free"
        return self._finish(lead, sess.label)

    def read(self, ssl: str) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        x = self._ssl(ssl)
        self.model.begin(x)
        pending = [k for k, _ in x.inbox]
        self.model.read(x)
        return self._finish(self._records_lead(f"SSL_read on {ssl}", pending))

    def _records_lead(self, what: str, kinds: list[str]) -> str:
        if not kinds:
            return f"{what}: nothing was waiting"
        n = kinds.count("ticket")
        said = []
        if n:
            rule = RULES["tls13_client_ticket"] if self.model.tls13 else RULES["tls12_client_ticket"]
            said.append(f"{n} NewSessionTicket{'s' if n > 1 else ''}: {rule.reason}")
        if "close" in kinds:
            said.append("the peer's close_notify")
        return f"{what} processed " + " and ".join(said)

    def shutdown(self, ssl: str) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        x = self._ssl(ssl)
        self.model.begin(x)
        if not x.sent_shutdown:
            self.model.shutdown(x)
            lead = (
                f"SSL_shutdown({ssl}) sent close_notify: from now on SSL_free/SSL_clear treat "
                "its session as good (no removal)"
            )
        else:
            before = len(x.inbox)
            kinds = [k for k, _ in x.inbox]
            self.model.shutdown(x)
            lead = self._records_lead(f"SSL_shutdown({ssl}) again", kinds[: before - len(x.inbox)])
        return self._finish(lead)

    def clear(self, ssl: str) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        x = self._ssl(ssl)
        self.model.begin(x)
        self.model.clear(x)
        return self._finish(f"SSL_clear({ssl}) reset it for a new handshake ({RULES['clear_keeps'].source})")

    def set_session(self, ssl: str, session: str) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        x = self._ssl(ssl)
        self.model.begin(x)
        old, bad = x.session, self.model._bad(x)
        self.model.set_session(x, self.model.by_label[session])
        lead = f"SSL_set_session({ssl}, {session}) made {session} {ssl}'s session (+1)"
        if old is not None:
            same = " (the same session: net 0)" if old.label == session else ""
            lead += f" and dropped the SSL's reference to {old.label} (-1){same}"
            if bad:
                lead += "; SSL_set_session(3): an old session still open is 'bad', removed from the cache"
            else:
                why = "had sent close_notify" if x.sent_shutdown else "was reset by SSL_clear"
                lead += (
                    f"; {old.label} was not 'bad' ({ssl} {why}): it keeps its cache place and resumability"
                )
        return self._finish(lead)

    def free(self, ssl: str) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        x = self._ssl(ssl)
        self.model.begin(x)
        sess = x.session
        self.model.free(x)
        lead = f"SSL_free({ssl})"
        if sess is not None:
            lead += f" dropped the SSL's reference to {sess.label}"
        return self._finish(lead)

    def session_free(self, session: str) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        self.model.begin()
        s = self.model.by_label[session]
        self.model.session_free(s)
        return self._finish(f"SSL_SESSION_free({session}) gave back one get1 reference")

    def advance(self, seconds: int) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        self.model.begin()
        self.model.advance(seconds)
        lead = (
            f"Every live session got {seconds} s older (SSL_SESSION_set_time, in label order; "
            f"{RULES['set_time'].reason}); virtual now is t={self.model.now}"
        )
        return self._finish(lead)

    def flush(self, side: str, at: int) -> OpResult:
        self.op_seq += 1  # begun: an exception from here on may leave the model half-way
        m = self.model
        m.begin()
        n = m.flush(m.caches[side], at)
        lead = f"SSL_CTX_flush_sessions({side}, t={at}) removed {n} session(s) with t > time + timeout"
        if n:
            lead += ", marking them not resumable (timeouts is not counted by a flush)"
        return self._finish(lead)

    def close(self) -> None:
        """Nothing to free: the model holds no OpenSSL objects."""
