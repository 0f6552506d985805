"""Shrunk disagreements between the model and the real engine, kept as plain scenarios.

Each test names what went wrong once; it runs on both engines (``make_lab``).
"""

from __future__ import annotations

from collections.abc import Callable

import sesskit

MakeLab = Callable[..., sesskit.Lab]


def test_advance_ages_sessions_once(make_lab: MakeLab) -> None:
    # The model once moved session times back *and* moved "now" on, so a ticket
    # aged 110 s looked 220 s old: the client stopped offering it and the server
    # never counted the timeout.
    lab = make_lab(tls="1.3", timeout=100)
    link = lab.connect()
    lab.advance(50)
    link.client.read()
    ref = link.client.get1_session()
    link.client.shutdown()
    lab.advance(56)  # client copy 56 s old (offered), server ticket 106 s old (expired)
    again = lab.connect(resume=ref)
    assert not again.reused
    snap = lab.snapshot()
    assert snap.caches["server"].stats["timeouts"] == 1
    assert snap.caches["client"].stats["misses"] == 1


def test_tls13_server_decrypted_ticket_copy_is_labelled(make_lab: MakeLab) -> None:
    # The engine looks at the server SSL after it processed the ClientHello, when
    # s->session is the copy decrypted from the ticket; the first NewSessionTicket
    # after the resumption then replaces it by a copy (ssl_session_dup) and frees it.
    lab = make_lab(tls="1.3")
    link = lab.connect()
    link.client.read()
    ref = link.client.get1_session()
    before = set(lab.snapshot().sessions)
    again = lab.connect(resume=ref)
    assert again.reused
    snap = lab.snapshot()
    new = sorted((s for k, s in snap.sessions.items() if k not in before), key=lambda s: int(s.label[1:]))
    assert [(s.side, s.freed) for s in new] == [("server", True), ("server", False)]
    assert again.server.session == new[1].label
