"""The pyopenssl engine: pyOpenSSL's own OpenSSL, calibrated, honest, separate from libssl."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable

import pytest
import test_model as facts
from conftest import engine_unavailable
from test_libssl import (
    Sabotaged,
    check_close_frees_every_object,
    check_garbage_collection_frees_everything,
    check_stats_come_from_the_library,
)

import sesskit

pytestmark = pytest.mark.skipif(bool(engine_unavailable("pyopenssl")), reason="pyopenssl engine unavailable")

MakeLab = Callable[..., sesskit.Lab]


@pytest.fixture
def fact_engine() -> str:
    """``make_lab`` (conftest) builds labs on the pyopenssl engine in this module."""
    return "pyopenssl"


# -- the OPENSSL_FACTS facts of tests/test_model.py that pyOpenSSL's OpenSSL can perform -----
NEEDS = {
    "test_dirty_free_or_clear_removes_and_frees_the_session": "SSL_clear (the free half runs below)",
    "test_clean_clear_keeps_the_session_for_the_next_handshake": "SSL_clear",
    "test_flush_boundary_is_strict_and_counts_no_timeouts": "SSL_CTX_flush_sessions",
    "test_model_explains_each_step_with_its_numbers": "the model engine",
}
for _name in dir(facts):
    if _name.startswith("test_") and _name not in NEEDS:
        globals()[_name] = getattr(facts, _name)


def test_dirty_free_removes_and_frees_the_session(make_lab: MakeLab) -> None:
    facts.test_dirty_free_or_clear_removes_and_frees_the_session(make_lab, "free")


# -- which library ----------------------------------------------------------------------------
def _text_ranges(fragment: str) -> list[tuple[int, int]]:
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and fragment in parts[5] and "x" in parts[1]:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


def _inside(fn_addr: int, ranges: list[tuple[int, int]]) -> bool:
    return any(lo <= fn_addr < hi for lo, hi in ranges)


def test_runs_on_pyopenssls_own_openssl() -> None:
    import OpenSSL
    from OpenSSL._util import ffi, lib

    from sesskit.engines import _pyossl

    with sesskit.Lab(engine="pyopenssl", explain=False) as lab:
        version = ffi.string(lib.OpenSSL_version(0)).decode()
        assert lab.openssl_version == f"{version} (pyOpenSSL {OpenSSL.__version__})"
        engine = lab._engine
        assert engine._lib is lib and engine._ffi is ffi  # pyOpenSSL's very bindings
        assert _pyossl.load().lib is lib
        # SSL_new is the copy linked into cryptography's Rust extension
        fn = int(ffi.cast("uintptr_t", lib.SSL_new))
        assert _inside(fn, _text_ranges("_rust.abi3.so"))


def test_the_two_engines_use_separate_library_instances() -> None:
    from sesskit.engines import _libssl_ffi, _pyossl

    try:
        sys_lib = _libssl_ffi.load()
    except sesskit.SesskitError as exc:
        pytest.skip(f"libssl engine unavailable: {exc}")
    py_lib = _pyossl.load()
    assert py_lib.ffi is not sys_lib.ffi and py_lib.lib is not sys_lib.lib
    assert py_lib.version != sys_lib.version  # e.g. "OpenSSL 4.0.3 ..." beside "OpenSSL 3.0.19 ..."
    py_fn = int(py_lib.ffi.cast("uintptr_t", py_lib.lib.SSL_new))
    sys_fn = int(sys_lib.ffi.cast("uintptr_t", sys_lib.lib.SSL_new))
    assert py_fn != sys_fn
    assert _inside(sys_fn, _text_ranges(sys_lib.path)) and not _inside(py_fn, _text_ranges(sys_lib.path))
    # Both run side by side in one process; each reads its own sessions.
    with (
        sesskit.Lab(engine="pyopenssl", tls="1.2", tickets=False, explain=False) as a,
        sesskit.Lab(engine="libssl", tls="1.2", tickets=False, explain=False) as b,
    ):
        la, lb = a.connect(), b.connect()
        sa, sb = a._engine._by_label[la.server.session], b._engine._by_label[lb.server.session]
        assert py_lib.ffi.typeof(sa.ptr) is not None and sys_lib.ffi.typeof(sb.ptr) is not None
        with pytest.raises(TypeError):  # a pointer of one copy is not even a valid argument to the other
            sys_lib.lib.SSL_SESSION_is_resumable(sa.ptr)
        assert a.snapshot().sessions[la.server.session] == b.snapshot().sessions[lb.server.session]


# -- calibration ----------------------------------------------------------------------------------
def test_calibration_is_repeatable_and_matches_public_getters() -> None:
    from sesskit.engines import _pyossl

    L = _pyossl.load()
    again = _pyossl.calibrate(L.ffi, L.lib, L.libc, L.SSL)
    assert again == L.offsets
    off = L.offsets
    # session fields sit inside the session, the cache sentinels inside the SSL_CTX
    assert 0 <= off.session_id_length < off.owner < off.prev < off.references
    assert off.ctx_cache_size < off.ctx_head < off.ctx_tail < off.ctx_stats


def test_calibration_refuses_when_a_check_fails() -> None:
    from sesskit.engines import _pyossl

    L = _pyossl.load()
    no_ref = Sabotaged(L.lib, SSL_get1_session=L.lib.SSL_get_session)  # takes no reference
    with pytest.raises(sesskit.CalibrationError, match=r"cannot locate SSL_SESSION\.references"):
        _pyossl.calibrate(L.ffi, no_ref, L.libc, L.SSL)
    never_reused = Sabotaged(L.lib, SSL_session_reused=lambda ssl: 0)
    with pytest.raises(sesskit.CalibrationError, match="did not resume"):
        _pyossl.calibrate(L.ffi, never_reused, L.libc, L.SSL)


def test_calibrated_refcount_follows_get1_and_free() -> None:
    with sesskit.Lab(engine="pyopenssl", tls="1.2", explain=False) as lab:
        link = lab.connect()
        ref = link.client.get0_session()
        assert ref is not None and ref.refcount == 1  # the SSL only: the observer is not shown
        held = [link.client.get1_session() for _ in range(3)]
        assert ref.refcount == 4
        for h in held:
            assert h is not None
            h.free()
        assert ref.refcount == 1
        link.client.free()
        assert ref.dangling


def test_stats_come_from_the_library() -> None:
    check_stats_come_from_the_library("pyopenssl")


# -- what pyOpenSSL's OpenSSL cannot do ------------------------------------------------------
@pytest.mark.parametrize(
    "op, cname",
    [
        (lambda lab, link: link.server.clear(), "SSL_clear"),
        (lambda lab, link: lab.flush("server"), "SSL_CTX_flush_sessions"),
    ],
)
def test_unsupported_operations_name_the_engine_that_can(op: Callable[..., None], cname: str) -> None:
    with sesskit.Lab(engine="pyopenssl", tls="1.2", explain=False) as lab:
        link = lab.connect()
        steps = len(lab.trace)
        with pytest.raises(sesskit.UnsupportedOperation, match=rf"{cname}.*pyopenssl.*engine=\"libssl\""):
            op(lab, link)
        assert len(lab.trace) == steps  # nothing was recorded
        link.client.get0_session()  # the lab still works


# -- nothing leaks ---------------------------------------------------------------------------------
def test_close_frees_every_object_it_made() -> None:
    check_close_frees_every_object("pyopenssl")


def test_garbage_collection_of_a_lab_frees_everything() -> None:
    check_garbage_collection_frees_everything("pyopenssl")


# -- sesskit.watch on real pyOpenSSL user code --------------------------------------------------
class UserCode:
    """What a pyOpenSSL user writes: two Contexts, Connections over memory BIOs (no sesskit)."""

    def __init__(self, tls12_stateful: bool = True) -> None:
        from OpenSSL import SSL

        from sesskit.engines._pyossl import make_cert

        self.SSL = SSL
        cert, key = make_cert()
        self.server_ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        self.server_ctx.use_certificate(cert)
        self.server_ctx.use_privatekey(key)
        self.server_ctx.set_session_id(b"my-app")
        if tls12_stateful:
            self.server_ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
            self.server_ctx.set_options(SSL.OP_NO_TICKET)
        self.client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)

    def pump(self, a: object, b: object) -> None:
        moved = True
        while moved:
            moved = False
            for x, y in ((a, b), (b, a)):
                try:
                    data = x.bio_read(65536)  # type: ignore[attr-defined]
                except self.SSL.WantReadError:
                    continue
                y.bio_write(data)  # type: ignore[attr-defined]
                moved = True

    def connect(self, w: sesskit.Watch | None = None, session: object = None) -> tuple[object, object]:
        SSL = self.SSL
        c, s = SSL.Connection(self.client_ctx, None), SSL.Connection(self.server_ctx, None)
        c.set_connect_state()
        s.set_accept_state()
        if w is not None:
            w.add(c, s)
        if session is not None:
            c.set_session(session)
        for _ in range(4):
            for conn in (c, s):
                with contextlib.suppress(SSL.WantReadError):
                    conn.do_handshake()
                self.pump(c, s)
        return c, s


def _refcount(session_obj: object) -> int:
    from sesskit.engines import _pyossl

    L = _pyossl.load()
    p = L.ffi.cast("char *", session_obj._session)  # type: ignore[attr-defined]
    return int(L.ffi.cast("int *", p + L.offsets.references)[0])


def test_watch_shows_the_dirty_close_trap() -> None:
    app = UserCode()
    w = sesskit.watch(server=app.server_ctx, client=app.client_ctx)
    c, s = app.connect(w)
    saved = c.get_session()  # type: ignore[attr-defined]
    label = w.snapshot("saved").ssls["c1"].session
    assert label is not None and w.trace.snapshot().sessions[label].resumable
    del c, s  # no shutdown(): pyOpenSSL's GC calls SSL_free on a connection that did not close
    gc.collect()
    snap = w.snapshot("after del")
    assert snap.ssls["c1"].freed and not snap.sessions[label].resumable
    assert snap.caches["server"].size == 0  # the server session was removed too (dirty)
    assert "dirty" in w.trace[-1].why and f"{label} is no longer resumable" in w.trace[-1].why
    c2, s2 = app.connect(w, session=saved)
    assert w.trace[-1].result == "full handshake"  # silently not resumed
    # the same code with shutdown() first resumes
    for conn in (c2, s2, c2, s2):
        conn.shutdown()  # type: ignore[attr-defined]
        app.pump(c2, s2)
    saved2 = c2.get_session()  # type: ignore[attr-defined]
    del c2, s2, conn
    gc.collect()
    w.snapshot("after clean close")
    assert "c2's Connection was garbage-collected, so pyOpenSSL called SSL_free (clean" in w.trace[-1].why
    app.connect(w, session=saved2)
    assert w.trace[-1].result == "resumed"
    w.close()


def test_watch_shows_a_sessions_get1_reference_and_its_gc_free() -> None:
    app = UserCode()
    c, s = app.connect()
    with sesskit.watch(c, s, server=app.server_ctx, client=app.client_ctx) as w:
        label = w.trace.snapshot().ssls["c1"].session
        assert label is not None
        assert w.trace.snapshot().sessions[label].refcount == 1  # only the SSL (the watch's pin is not shown)
        sess = c.get_session()  # type: ignore[attr-defined]  # wrapped: a step, and the Session is followed
        step = w.trace[-1]
        assert step.op == "Connection.get_session" and f"{label} 1 → 2" in step.why
        ref = next(iter(w.trace.snapshot().refs.values()))
        assert (ref.kind, ref.session, ref.via, ref.released) == ("get1", label, "c1.get_session()", False)
        del sess
        gc.collect()
        snap = w.snapshot("del sess")
        assert snap.sessions[label].refcount == 1 and snap.refs[ref.id].released
        assert "garbage-collected" in w.trace[-1].why


def test_watch_shows_a_context_kept_alive_by_its_sessions() -> None:
    app = UserCode()
    c, s = app.connect()
    w = sesskit.watch(c, s, server=app.server_ctx, client=app.client_ctx)
    server_session = s.get_session()  # type: ignore[attr-defined]  # a Session pins its Context
    label = w.snapshot().ssls["s1"].session
    assert label is not None
    for conn in (c, s, c, s):
        conn.shutdown()  # type: ignore[attr-defined]
        app.pump(c, s)
    del c, s, conn
    app.server_ctx = None  # type: ignore[assignment]  # the application drops its Context
    gc.collect()
    snap = w.snapshot("app dropped the server Context")
    assert snap.caches["server"].members == (label,)  # still alive: the Session holds it
    assert snap.sessions[label].refcount == 2  # the cache + the Session's get1
    del server_session
    gc.collect()
    snap = w.snapshot("and the Session")
    assert snap.caches["server"].size == 0 and snap.sessions[label].freed  # SSL_CTX_free flushed it
    assert "server Context was freed" in w.trace[-1].why
    w.close()


def test_watch_gives_back_every_observer_reference() -> None:
    app = UserCode()
    c, s = app.connect()
    sess = c.get_session()  # type: ignore[attr-defined]
    before = _refcount(sess)
    w = sesskit.watch(c, s, sess, server=app.server_ctx, client=app.client_ctx)
    assert _refcount(sess) == before + 1  # the watch pins what it reads
    assert w.trace.snapshot().sessions[w.trace.snapshot().ssls["c1"].session or ""].refcount == before
    w.close()
    assert _refcount(sess) == before
    assert "do_handshake" not in vars(c)  # unwrapped
    with pytest.raises(sesskit.InvalidOperation, match="closed"):
        w.snapshot()


def test_watch_without_wrapping_records_only_snapshots() -> None:
    app = UserCode()
    w = sesskit.watch(server=app.server_ctx, client=app.client_ctx, wrap=False)
    c, _s = app.connect(w)
    assert [st.op for st in w.trace] == ["watch"]
    snap = w.snapshot("after handshake")
    assert snap.caches["server"].size == 1 and len(w.trace) == 2
    with pytest.raises(sesskit.InvalidOperation, match="Context is not watched"):
        sesskit.watch(c)
    w.close()


_HEAP_SCRIPT = r"""
import gc, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import sesskit
from leak_workload import heap_in_use
import test_pyopenssl as t


def workload():
    for tls in ("1.2", "1.3"):
        for tickets in (True, False):
            lab = sesskit.Lab(engine="pyopenssl", tls=tls, tickets=tickets, client_cache=True, cache_size=3,
                              explain=False)
            link = lab.connect()
            link.client.read()
            saved = link.client.get1_session()
            for ep in (link.client, link.server, link.client):
                ep.shutdown()
            link.client.free()
            again = lab.connect(resume=saved)
            again.client.read()
            for _ in range(4):
                lab.connect().server.shutdown()
            lab.advance(8000)
            saved.free()
            lab.connect().client.get1_session()  # left for close() to release
            lab.close()
    app = t.UserCode()
    with sesskit.watch(server=app.server_ctx, client=app.client_ctx) as w:
        c, s = app.connect(w)
        keep = c.get_session()
        del c, s, keep
        gc.collect()
        w.snapshot()


for _ in range(3):
    workload()
    gc.collect()
growths = []
for _ in range(3):
    before = heap_in_use()
    for _ in range(4):
        workload()
    gc.collect()
    growths.append(heap_in_use() - before)
print("grown", min(growths))
"""


def test_heap_does_not_grow_with_labs_and_watches() -> None:
    """malloc's bytes in use stay flat over many pyopenssl labs and watches (fresh interpreter)."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    r = subprocess.run(
        [sys.executable, "-c", _HEAP_SCRIPT, str(here / "scripts"), str(here)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=here.parent,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    grown = int(r.stdout.split("grown")[1].split()[0])
    # 16 labs + 4 watches per batch: leaking one ~1 KiB session each would exceed this.
    assert grown < 16_000, f"heap grew by {grown} bytes over a batch"
