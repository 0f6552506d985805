"""The notebooks' side notes on Python's ``ssl`` and on pyOpenSSL, run for real.

Each note names the CPython (or pyOpenSSL) it holds for; these tests run it over
memory BIOs (``ssl.MemoryBIO`` + ``SSLContext.wrap_bio``, or pyOpenSSL's
memory-BIO ``Connection``), no sockets.  They were written against CPython 3.11
with libssl 3.0 and pyOpenSSL 26.4: ``test_versions_the_notes_name`` says so when
the machine moves on, so the notes get re-checked rather than silently trusted.
"""

from __future__ import annotations

import contextlib
import gc
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sesskit.engines.libssl import _make_cert


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The engines' ephemeral certificate and key, as PEM files for ``load_cert_chain``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_der, key_der = _make_cert()
    cert = x509.load_der_x509_certificate(cert_der)
    key = serialization.load_der_private_key(key_der, None)
    d = tmp_path_factory.mktemp("pem")
    cert_file, key_file = d / "cert.pem", d / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


def test_versions_the_notes_name() -> None:
    """The notes say "CPython 3.11" (notebook 03): they were checked there."""
    assert sys.version_info[:2] == (3, 11), f"re-check notebook 03's ssl note on {sys.version}"


# -- CPython's ssl (notebook 03) ---------------------------------------------------------------
class _PyTLS:
    """A client and a server ``SSLObject`` over four memory BIOs."""

    def __init__(self, server: ssl.SSLContext, client: ssl.SSLContext, session: Any = None) -> None:
        self.bios = [ssl.MemoryBIO() for _ in range(4)]
        cin, cout, sin, sout = self.bios
        self.client = client.wrap_bio(cin, cout, server_side=False, session=session)
        self.server = server.wrap_bio(sin, sout, server_side=True)

    def pump(self) -> None:
        cin, cout, sin, sout = self.bios
        sin.write(cout.read())
        cin.write(sout.read())

    def handshake(self) -> None:
        done = [False, False]
        for _ in range(20):
            for i, side in enumerate((self.client, self.server)):
                if not done[i]:
                    try:
                        side.do_handshake()
                        done[i] = True
                    except ssl.SSLWantReadError:
                        pass
            self.pump()
            if all(done):
                return
        raise AssertionError("the handshake did not finish")

    def exchange(self) -> None:
        """One byte server -> client: the client reads (and so processes TLS 1.3 tickets)."""
        self.server.write(b"x")
        self.pump()
        assert self.client.read(1) == b"x"


def _contexts(pem_files: tuple[str, str], version: ssl.TLSVersion) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*pem_files)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    for ctx in (server, client):
        ctx.minimum_version = ctx.maximum_version = version
    return server, client


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["1.2", "1.3"])
def test_cpython_ssl_session_resumes_without_unwrap(pem_files: tuple[str, str], version: Any) -> None:
    """CPython 3.11: ``.session`` is a copy; dropping the connection without unwrap() spoils nothing."""
    server, client = _contexts(pem_files, version)
    first = _PyTLS(server, client)
    first.handshake()
    first.exchange()
    saved = first.client.session
    assert saved is not None
    del first  # no unwrap(): no close_notify was ever sent; the SSL is freed dirty
    gc.collect()
    again = _PyTLS(server, client, session=saved)
    again.handshake()
    assert again.client.session_reused


def test_cpython_ssl_refuses_a_session_of_another_context(pem_files: tuple[str, str]) -> None:
    """CPython checks the SSLContext itself (ValueError), before OpenSSL could."""
    server, client = _contexts(pem_files, ssl.TLSVersion.TLSv1_2)
    _, other = _contexts(pem_files, ssl.TLSVersion.TLSv1_2)
    first = _PyTLS(server, client)
    first.handshake()
    with pytest.raises(ValueError, match="different SSLContext"):
        _PyTLS(server, other, session=first.client.session)


# -- pyOpenSSL (notebooks 07 and 09) -----------------------------------------------------------
@pytest.fixture
def pyossl() -> Iterator[Any]:
    SSL = pytest.importorskip("OpenSSL.SSL")
    from sesskit.engines._pyossl import make_cert

    cert, key = make_cert()

    def contexts(sid: bytes = b"notes") -> tuple[Any, Any]:
        server = SSL.Context(SSL.TLS_SERVER_METHOD)
        server.use_certificate(cert)
        server.use_privatekey(key)
        server.set_session_id(sid)
        server.set_max_proto_version(SSL.TLS1_2_VERSION)
        server.set_options(SSL.OP_NO_TICKET)
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client.set_max_proto_version(SSL.TLS1_2_VERSION)
        return server, client

    yield SSL, contexts


def _pyossl_connect(SSL: Any, server: Any, client: Any, session: Any = None) -> tuple[Any, Any]:
    c, s = SSL.Connection(client, None), SSL.Connection(server, None)
    c.set_connect_state()
    s.set_accept_state()
    if session is not None:
        c.set_session(session)
    for _ in range(20):
        done = []
        for conn in (c, s):
            try:
                conn.do_handshake()
                done.append(True)
            except SSL.WantReadError:
                done.append(False)
            for x, y in ((c, s), (s, c)):
                with contextlib.suppress(SSL.WantReadError):
                    y.bio_write(x.bio_read(65536))
        if all(done):
            return c, s
    raise AssertionError("the handshake did not finish")


def _reused(conn: Any) -> bool:
    """``SSL_session_reused`` (pyOpenSSL binds it in its cffi ``lib`` but wraps no method for it)."""
    from OpenSSL._util import lib

    return bool(lib.SSL_session_reused(conn._ssl))


def test_pyopenssl_set_session_refuses_another_context(pyossl: Any) -> None:
    """pyOpenSSL (>= 26.3; here the installed one) raises ValueError when set_session crosses Contexts."""
    SSL, contexts = pyossl
    server, client = contexts()
    _, other = contexts()
    c, _ = _pyossl_connect(SSL, server, client)
    with pytest.raises(ValueError):
        SSL.Connection(other, None).set_session(c.get_session())


def test_pyopenssl_session_outlives_its_connection_and_keeps_its_context(pyossl: Any) -> None:
    """get_session() is SSL_get1_session: the Session resumes after its Connection is gone."""
    import weakref

    SSL, contexts = pyossl
    server, client = contexts()
    c, s = _pyossl_connect(SSL, server, client)
    saved = c.get_session()
    c.shutdown()
    s.shutdown()
    alive = weakref.ref(client)
    del c, s
    gc.collect()
    assert saved._context is client  # the Session pins its Context
    del client
    gc.collect()
    assert alive() is not None  # kept alive by the Session alone
    again, _ = _pyossl_connect(SSL, server, alive(), saved)
    assert _reused(again)


@pytest.mark.parametrize("shutdown", [False, True], ids=["dropped", "shutdown"])
def test_pyopenssl_collected_without_shutdown_spoils_the_session(pyossl: Any, shutdown: bool) -> None:
    """A Connection collected without shutdown() is a dirty SSL_free: its saved Session stops resuming."""
    SSL, contexts = pyossl
    server, client = contexts()
    c, s = _pyossl_connect(SSL, server, client)
    saved = c.get_session()
    s.shutdown()  # the server's session stays cached either way
    if shutdown:
        c.shutdown()
    del c, s
    gc.collect()
    again, _ = _pyossl_connect(SSL, server, client, saved)
    assert _reused(again) == shutdown


def test_this_file_is_listed_by_test_claims() -> None:
    text = (Path(__file__).parent / "test_claims.py").read_text()
    assert "test_side_notes.py::" in text
