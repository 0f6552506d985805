"""The libssl engine: the right library, honest observation, no sockets."""

from __future__ import annotations

import gc
import importlib
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from test_model import close_cleanly

import sesskit

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from leak_workload import workload

from sesskit.engines import _libssl_ffi as F
from sesskit.engines import libssl


def _mapped_text_ranges(path: str) -> list[tuple[int, int]]:
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == path and "x" in parts[1]:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


def test_binds_the_libssl_pythons_ssl_module_loaded() -> None:
    import ssl

    L = F.load()
    lab = sesskit.Lab(engine="libssl", explain=False)
    assert lab.openssl_version == L.version
    # Python's ssl module reports the same library version...
    assert ssl.OPENSSL_VERSION.split()[1] in L.version
    # ...and the functions we call live in the mapped text of that very file (one copy).
    fn = int(L.ffi.cast("uintptr_t", L.lib.SSL_new))
    assert any(lo <= fn < hi for lo, hi in _mapped_text_ranges(L.path))
    with open("/proc/self/maps") as f:
        maps = f.read()
    assert len({line.split()[-1] for line in maps.splitlines() if "libssl.so" in line}) == 1
    lab.close()


def test_calibrated_offsets_follow_public_operations() -> None:
    """The probe's refcount moves exactly as get1 / SSL_SESSION_free say it must."""
    with sesskit.Lab(engine="libssl", tls="1.2", explain=False) as lab:
        link = lab.connect()
        ref = link.client.get0_session()
        assert ref is not None
        base = ref.refcount
        held = [link.client.get1_session() for _ in range(3)]
        assert ref.refcount == base + 3
        for h in held:
            assert h is not None
            h.free()
        assert ref.refcount == base


def test_visible_refcount_excludes_the_observer_reference() -> None:
    with sesskit.Lab(engine="libssl", tls="1.2", explain=False) as lab:
        link = lab.connect()
        ref = link.client.get0_session()
        assert ref is not None and ref.refcount == 1  # only the SSL holds it
        link.client.free()
        assert ref.dangling  # visible count reached 0: reported freed


def _socket_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def test_no_socket_is_ever_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("sesskit opened a socket")

    monkeypatch.setattr(socket.socket, "__init__", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    before = _socket_fds()
    workload(1)  # every operation, both TLS versions, tickets on and off (the leak checks' workload)
    gc.collect()  # the workload leaves some labs to the garbage collector: let it close them now
    assert _socket_fds() == before


def check_close_frees_every_object(engine: str) -> None:
    """``Lab.close`` frees every SSL, SSL_CTX and reference the engine holds (also used by test_pyopenssl)."""
    live_objects = importlib.import_module(f"sesskit.engines.{engine}").live_objects
    base = live_objects()
    lab = sesskit.Lab(engine=engine, tls="1.3", client_cache=True, explain=False)
    link = lab.connect()
    link.client.read()
    keep = link.client.get1_session()
    lab.connect(resume=keep)
    lab.connect()
    during = live_objects()
    assert during["SSL"] == base["SSL"] + 6 and during["SSL_CTX"] == base["SSL_CTX"] + 2
    assert during["user refs"] == base["user refs"] + 1 and during["observer refs"] > base["observer refs"]
    lab.close()
    assert live_objects() == base
    lab.close()  # twice is harmless
    with pytest.raises(sesskit.InvalidOperation, match="closed"):
        lab.connect()


def check_garbage_collection_frees_everything(engine: str) -> None:
    """A lab nobody closes frees everything when collected (also used by test_pyopenssl)."""
    live_objects = importlib.import_module(f"sesskit.engines.{engine}").live_objects
    base = live_objects()
    lab = sesskit.Lab(engine=engine, explain=False)
    lab.connect().client.get1_session()
    del lab
    gc.collect()
    assert live_objects() == base


def test_close_frees_every_object_it_made() -> None:
    check_close_frees_every_object("libssl")


def test_garbage_collection_of_a_lab_frees_everything() -> None:
    check_garbage_collection_frees_everything("libssl")


def check_stats_come_from_the_library(engine: str) -> None:
    """Handshakes and a resumption show in both caches' statistics (also used by test_pyopenssl)."""
    with sesskit.Lab(engine=engine, tls="1.2", tickets=False, explain=False) as lab:
        link = lab.connect()
        saved = link.client.get1_session()
        close_cleanly(link)
        link.client.free()
        link.server.free()
        again = lab.connect(resume=saved)
        assert again.reused is True
        stats = lab.snapshot().caches["server"].stats
        assert (stats["accept"], stats["accept_good"], stats["hits"]) == (2, 2, 1)
        cstats = lab.snapshot().caches["client"].stats
        assert (cstats["connect"], cstats["connect_good"], cstats["hits"]) == (2, 2, 1)


def test_stats_come_from_the_library() -> None:
    check_stats_come_from_the_library("libssl")


class Sabotaged:
    """A real library with some functions broken, to prove calibration refuses to guess.

    Also used by test_pyopenssl on pyOpenSSL's lib.
    """

    def __init__(self, lib: object, **broken: object) -> None:
        self._lib = lib
        self._broken = broken

    def __getattr__(self, name: str) -> object:
        return self._broken.get(name) or getattr(self._lib, name)


@pytest.mark.parametrize(
    "broken, words",
    [
        ({"SSL_SESSION_up_ref": lambda s: 1}, "cannot locate SSL_SESSION.references"),
        ({"SSL_CTX_add_session": lambda ctx, s: 1}, "cannot locate SSL_SESSION.owner"),
        ({"SSL_CTX_remove_session": lambda ctx, s: 1}, "did not follow SSL_CTX_remove_session"),
    ],
)
def test_calibration_refuses_when_a_check_fails(broken: dict[str, object], words: str) -> None:
    from sesskit.engines._probe import calibrate

    L = F.load()
    with pytest.raises(sesskit.CalibrationError, match=words):
        calibrate(Sabotaged(L.lib, **broken), L.ffi, L.libc)
    assert calibrate(L.lib, L.ffi, L.libc) == L.offsets  # the real library calibrates the same again


@pytest.mark.parametrize("observer", ["c", "python"])
def test_a_handshake_openssl_refuses_is_reported_with_its_reason(
    observer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lab refuses this before OpenSSL sees it (test_api); the engine itself must
    # still report OpenSSL's own failure, not hang, and stay usable.
    monkeypatch.setenv(libssl.OBSERVER_ENV, observer)
    with sesskit.Lab(engine="libssl", tls="1.2", tickets=False, explain=False) as lab:
        link = lab.connect()
        server_session = link.server.get0_session()
        assert server_session is not None
        engine = lab._engine
        refused = r"SSL_do_handshake on [cs]2 failed \(error 1\): error:.*alert"
        with pytest.raises(sesskit.SesskitError, match=refused):
            engine.connect(resume=server_session.session)
        again = lab.connect()
        assert not again.reused and again.client.session is not None


def test_an_exception_in_a_c_callback_is_raised_after_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # A callback must never raise into OpenSSL: the ticket callback catches the
    # error, OpenSSL carries on, and the engine raises it once the call returns.
    # (Python callbacks: the C helper's callbacks run no Python.)
    monkeypatch.setenv(libssl.OBSERVER_ENV, "python")
    with sesskit.Lab(engine="libssl", tls="1.3", explain=False) as lab:
        engine: Any = lab._engine
        engine._now = "not a number"  # breaks the ticket callback's arithmetic
        with pytest.raises(sesskit.SesskitError, match="observation callback failed: TypeError"):
            engine.connect()
        engine._now = 0
        assert not lab.connect().reused
