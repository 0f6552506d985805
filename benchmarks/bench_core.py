"""Core speed: Lab.connect against a bare cffi handshake loop, and observation cost vs. live sessions.

Both sides of each comparison run in this process, on the same libssl, in the same run.

    .venv/bin/python benchmarks/bench_core.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import sesskit
from sesskit.engines import _libssl_ffi as F
from sesskit.engines.libssl import _make_cert


class BareLoop:
    """The same handshake as Lab.connect, in plain cffi: no observation, no records split."""

    def __init__(self, tls: str, tickets: bool = True) -> None:
        self.L = L = F.load()
        self.lib, self.ffi = L.lib, L.ffi
        cert, key = _make_cert()
        lib, ffi = self.lib, self.ffi
        self.cctx = lib.SSL_CTX_new(lib.TLS_client_method())
        self.sctx = lib.SSL_CTX_new(lib.TLS_server_method())
        v = F.TLS_VERSION[tls]
        for ctx in (self.cctx, self.sctx):
            lib.SSL_CTX_ctrl(ctx, F.SSL_CTRL_SET_MIN_PROTO_VERSION, v, ffi.NULL)
            lib.SSL_CTX_ctrl(ctx, F.SSL_CTRL_SET_MAX_PROTO_VERSION, v, ffi.NULL)
        lib.SSL_CTX_use_certificate_ASN1(self.sctx, len(cert), cert)
        lib.SSL_CTX_use_PrivateKey_ASN1(F.EVP_PKEY_EC, self.sctx, key, len(key))
        lib.SSL_CTX_set_session_id_context(self.sctx, b"sesskit", 7)
        if not tickets:
            lib.SSL_CTX_set_options(self.sctx, F.SSL_OP_NO_TICKET)
        self.mem = lib.BIO_s_mem()
        self.buf = ffi.new("char[]", 1 << 17)

    def _pump(self, src: Any, dst: Any) -> None:
        n = self.lib.BIO_ctrl_pending(src)
        if n:
            n = self.lib.BIO_read(src, self.buf, n)
            self.lib.BIO_write(dst, self.buf, n)

    def handshake(self, session: Any = None) -> tuple[Any, Any]:
        lib = self.lib
        c, s = lib.SSL_new(self.cctx), lib.SSL_new(self.sctx)
        cb = (lib.BIO_new(self.mem), lib.BIO_new(self.mem))
        sb = (lib.BIO_new(self.mem), lib.BIO_new(self.mem))
        lib.SSL_set_bio(c, cb[0], cb[1])
        lib.SSL_set_bio(s, sb[0], sb[1])
        lib.SSL_set_connect_state(c)
        lib.SSL_set_accept_state(s)
        if session is not None:
            lib.SSL_set_session(c, session)
        cd = sd = False
        while not (cd and sd):
            cd = cd or lib.SSL_do_handshake(c) == 1
            self._pump(cb[1], sb[0])
            sd = sd or lib.SSL_do_handshake(s) == 1
            self._pump(sb[1], cb[0])
        return c, s

    def saved_session(self) -> Any:
        """A session to resume: a clean first handshake, the client's session kept (get1)."""
        c, s = self.handshake()
        saved = self.lib.SSL_get1_session(c)
        self.close_pair(c, s, clean=True)
        return saved

    def reused(self, conn: Any) -> bool:
        return bool(self.lib.SSL_session_reused(conn))

    def close_pair(self, c: Any, s: Any, clean: bool) -> None:
        for x in (c, s):
            if clean:
                self.lib.SSL_shutdown(x)
            self.lib.SSL_free(x)

    def close(self, saved: Any = None) -> None:
        if saved is not None:
            self.lib.SSL_SESSION_free(saved)
        self.lib.SSL_CTX_free(self.cctx)
        self.lib.SSL_CTX_free(self.sctx)


class BarePyOpenSSL:
    """The same handshake in plain pyOpenSSL (public API), on its own OpenSSL."""

    def __init__(self, tls: str, tickets: bool = True) -> None:
        from OpenSSL import SSL, crypto

        self.SSL = SSL
        cert_der, key_der = _make_cert()
        v = SSL.TLS1_2_VERSION if tls == "1.2" else SSL.TLS1_3_VERSION
        self.sctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        self.cctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        for ctx in (self.sctx, self.cctx):
            ctx.set_min_proto_version(v)
            ctx.set_max_proto_version(v)
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_der_private_key

        cert = x509.load_der_x509_certificate(cert_der)
        self.sctx.use_certificate(crypto.X509.from_cryptography(cert))
        self.sctx.use_privatekey(crypto.PKey.from_cryptography_key(load_der_private_key(key_der, None)))
        self.sctx.set_session_id(b"sesskit")
        if not tickets:
            self.sctx.set_options(SSL.OP_NO_TICKET)

    def saved_session(self) -> Any:
        c, s = self.handshake()
        saved = c.get_session()  # a pyOpenSSL Session: SSL_get1_session, freed by GC
        self.close_pair(c, s, clean=True)
        return saved

    def reused(self, conn: Any) -> bool:
        from OpenSSL._util import lib

        return bool(lib.SSL_session_reused(conn._ssl))

    def close_pair(self, c: Any, s: Any, clean: bool) -> None:
        if clean:
            c.shutdown()
            s.shutdown()  # Connection GC frees the SSLs

    def close(self, saved: Any = None) -> None:
        pass  # pyOpenSSL frees its contexts and sessions by GC

    def _move(self, src: Any, dst: Any) -> None:
        try:
            data = src.bio_read(1 << 17)
        except self.SSL.WantReadError:
            return
        dst.bio_write(data)

    def handshake(self, session: Any = None) -> tuple[Any, Any]:
        SSL = self.SSL
        c, s = SSL.Connection(self.cctx, None), SSL.Connection(self.sctx, None)
        c.set_connect_state()
        s.set_accept_state()
        if session is not None:
            c.set_session(session)
        cd = sd = False
        while not (cd and sd):
            cd = cd or self._step(c)
            self._move(c, s)
            sd = sd or self._step(s)
            self._move(s, c)
        return c, s

    def _step(self, conn: Any) -> bool:
        """One ``do_handshake``; True when this side is done (pyOpenSSL raises while it waits)."""
        try:
            conn.do_handshake()
        except self.SSL.WantReadError:
            return False
        return True


def per_call(fn: Callable[[], Any], n: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean seconds per call of ``fn`` over ``n`` calls."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n)
    return statistics.median(out)


def _connect_pair(
    bare_once: Callable[[], Any], lab_once: Callable[[], Any], n: int, batches: int = 15
) -> tuple[float, float, float]:
    """Alternate batches of bare and sesskit handshakes; time only the handshakes themselves.

    Returns the median batch time of each side and the median of the ratios of
    neighbouring batches (each pair ran back to back, so a slow spell of the
    machine hits both sides of a ratio alike).
    """
    tb, tl = [], []
    bare_once(), lab_once()
    for _ in range(batches):
        for fn, out in ((bare_once, tb), (lab_once, tl)):
            total = 0.0
            for _ in range(n):
                total += fn()
            out.append(total / n)
    ratios = [lab / bare for bare, lab in zip(tb, tl, strict=True)]
    return statistics.median(tb), statistics.median(tl), statistics.median(ratios)


def compare_connect(
    make_bare: Callable[..., Any], engine: str, n: int, explains: tuple[bool | str, ...]
) -> dict[str, Any]:
    """``Lab(engine).connect`` against the same handshake in a bare loop.

    Only the handshake is timed on both sides: ``SSL_new`` to both ends finished.
    Freeing the SSLs afterwards is outside the timing on both sides.

    ``explains``: ``False`` (no model), ``True`` (the default: the model explains
    each step when its ``why`` is first read, which this loop never does) and
    ``"read"`` (the connect's ``why`` is read inside the timing, so the model's
    work for that step is counted too).
    """
    res: dict[str, Any] = {}
    for tls, resume in (("1.3", False), ("1.2", False), ("1.2", True)):
        bare = make_bare(tls, tickets=not resume)
        saved = bare.saved_session() if resume else None

        bare_once = _bare_timer(bare, saved)
        for explain in explains:
            gc.collect()  # each row starts without the garbage of the rows before it (run order)
            lab = sesskit.Lab(engine=engine, tls=tls, tickets=not resume, explain=bool(explain))
            ref = None
            if resume:
                first = lab.connect()
                ref = first.client.get1_session()
                for ep in (first.client, first.server):
                    ep.shutdown()
                    ep.free()

            def lab_once(lab: sesskit.Lab = lab, ref: Any = ref, read: bool = explain == "read") -> float:
                t = time.perf_counter()
                link = lab.connect(resume=ref)
                if read:
                    assert lab.trace[-1].op == "SSL_connect" and lab.trace[-1].why
                dt = time.perf_counter() - t
                assert link.reused == (ref is not None)
                for ep in (link.client, link.server):
                    if ref is not None:
                        ep.shutdown()
                    ep.free()
                if read:
                    assert lab.trace[-1].why  # the frees are explained outside the timing
                return dt

            b, m, ratio = _connect_pair(bare_once, lab_once, max(n // 2, 10))
            name = f"tls{tls.replace('.', '')}_{'resumption' if resume else 'full'}"
            name += {False: "" if len(explains) == 1 else "_no_model", True: "", "read": "_why_read"}[explain]
            res[name] = {"bare_us": b * 1e6, "lab_us": m * 1e6, "ratio": ratio}
            lab.close()
        bare.close(saved)
    return res


def _bare_timer(bare: Any, saved: Any = None) -> Callable[[], float]:
    """One bare handshake (resuming ``saved``, if given), timed; its SSLs are freed outside the timing."""

    def once() -> float:
        t = time.perf_counter()
        c, s = bare.handshake(saved)
        dt = time.perf_counter() - t
        assert saved is None or bare.reused(c)
        bare.close_pair(c, s, clean=saved is not None)
        return dt

    return once


def _after_python(model: sesskit.Lab, once: Callable[[], float]) -> Callable[[], float]:
    """``once`` after (untimed) Python work: a model-engine connect and two frees."""

    def after() -> float:
        link = model.connect()
        link.client.free()
        link.server.free()
        return once()

    return after


def connect_parts(n: int) -> dict[str, Any]:
    """Where ``Lab.connect``'s time goes (TLS 1.3 full), each against the bare loop in the same run.

    ``helper_alone``: the C helper's handshake (SSLs, flights, callbacks, pins) with none of the
    Python around it.  ``bare_after_python``: the bare loop's handshake when a model-engine connect
    and two frees ran (untimed) since the last one: what Python between handshakes costs OpenSSL.
    ``bare_resumption_after_python``: the same for a TLS 1.2 resumption, whose 70 µs suffer more.
    """
    from sesskit.engines import libssl

    bare = BareLoop("1.3")
    bare_once = _bare_timer(bare)
    out: dict[str, Any] = {}
    if libssl.helper_status() == "C helper":
        lab = sesskit.Lab(engine="libssl", tls="1.3", explain=False)
        eng: Any = lab._engine
        lib, st, cl, ctx = eng._lib, eng._st, eng._cl, eng._ctx

        def helper_once() -> float:
            t = time.perf_counter()
            rc = eng._C.lib.sk_connect(st, cl, ctx["client"], ctx["server"], eng._mem, eng._ffi.NULL)
            dt = time.perf_counter() - t
            assert rc == 1
            for p in eng._C.ffi.unpack(st.seen, st.n):  # drop the helper's pins, free both SSLs
                lib.SSL_SESSION_free(p)
            st.n = 0
            lib.SSL_free(cl.ssl[0])
            lib.SSL_free(cl.ssl[1])
            return dt

        b, h, r = _connect_pair(bare_once, helper_once, max(n // 2, 10))
        out["helper_alone"] = {"bare_us": b * 1e6, "lab_us": h * 1e6, "ratio": r}
        lab.close()
    with sesskit.Lab(engine="model", tls="1.3", explain=False) as model:
        b, p, r = _connect_pair(bare_once, _after_python(model, bare_once), max(n // 2, 10))
    out["bare_after_python"] = {"bare_us": b * 1e6, "lab_us": p * 1e6, "ratio": r}
    bare.close()

    bare = BareLoop("1.2", tickets=False)
    saved = bare.saved_session()
    resumption_once = _bare_timer(bare, saved)
    with sesskit.Lab(engine="model", tls="1.2", tickets=False, explain=False) as model:
        b, p, r = _connect_pair(resumption_once, _after_python(model, resumption_once), max(n // 2, 10))
    out["bare_resumption_after_python"] = {"bare_us": b * 1e6, "lab_us": p * 1e6, "ratio": r}
    bare.close(saved)
    return out


def _interleave(a: Callable[[], Any], b: Callable[[], Any], n: int) -> tuple[float, float]:
    """Alternate batches of a and b so that machine noise hits both alike."""
    ta, tb = [], []
    a(), b()
    for _ in range(7):
        ta.append(per_call(a, n, 1))
        tb.append(per_call(b, n, 1))
    return statistics.median(ta), statistics.median(tb)


def bench_observation(sizes: list[int], n: int) -> dict[str, Any]:
    """Cost of one observed step (get1 + SSL_SESSION_free) with `size` live sessions around."""
    out: dict[str, Any] = {}
    for size in sizes:
        lab = sesskit.Lab(engine="libssl", tls="1.2", tickets=False, cache_size=0, explain=False)
        links = [lab.connect() for _ in range(size // 2)]  # a client and a server session each
        assert len(lab.snapshot().live_sessions()) == size
        eng = lab._engine
        ssl_ptr = eng._ssls[links[-1].client.name].ptr

        def step(ep: sesskit.Endpoint = links[-1].client) -> None:
            r = ep.get1_session()
            assert r is not None
            r.free()

        def bare(lib: Any = eng._lib, p: Any = ssl_ptr) -> None:  # the same two C calls, unobserved
            lib.SSL_SESSION_free(lib.SSL_get1_session(p))

        tb, ts = _interleave(bare, step, n)
        out[str(size)] = {"bare_us": tb * 1e6, "step_us": ts / 2 * 1e6, "live_sessions": size}
        lab.close()
    base = out[str(sizes[0])]["step_us"]
    for v in out.values():
        v["vs_smallest"] = v["step_us"] / base
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    n = 40 if args.quick else 200
    sizes = [10, 100, 1000] if args.quick else [10, 100, 1000, 10000]
    res = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": _cpus()},
        "openssl": F.load().version,
        "connect": compare_connect(BareLoop, "libssl", n, (False, True, "read")),
        "connect_pyopenssl": compare_connect(BarePyOpenSSL, "pyopenssl", n, (False,)),
        "connect_parts": connect_parts(n),
        "observation": bench_observation(sizes, n * 5),
    }
    print(f"{'measure':40} {'bare':>10} {'sesskit':>10} {'ratio':>7}")
    for k, v in res["connect"].items():
        print(f"connect {k:32} {v['bare_us']:9.0f}µs {v['lab_us']:9.0f}µs {v['ratio']:6.2f}x")
    for k, v in res["connect_pyopenssl"].items():
        print(f"pyopenssl connect {k:22} {v['bare_us']:9.0f}µs {v['lab_us']:9.0f}µs {v['ratio']:6.2f}x")
    for k, v in res["connect_parts"].items():
        print(f"connect part: {k:29} {v['bare_us']:9.0f}µs {v['lab_us']:9.0f}µs {v['ratio']:6.2f}x")
    for k, v in res["observation"].items():
        print(f"observed step, {k:>6} live sessions{'':10} {v['step_us']:9.1f}µs {v['vs_smallest']:6.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
