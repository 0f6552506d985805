"""A workload of every real-engine operation, for the leak checks (run standalone)."""

from __future__ import annotations

import ctypes
import gc
import sys

import sesskit


def workload(rounds: int) -> None:
    for _ in range(rounds):
        for tls in ("1.2", "1.3"):
            for tickets in (True, False):
                lab = sesskit.Lab(
                    engine="libssl", tls=tls, tickets=tickets, client_cache=True, cache_size=3, explain=False
                )
                link = lab.connect()
                link.client.read()
                ref0 = link.client.get0_session()
                saved = link.client.get1_session()
                link.client.shutdown()
                link.server.shutdown()
                link.client.shutdown()
                link.client.free()
                link.server.free()
                again = lab.connect(resume=saved)
                again.client.read()
                again.client.clear()
                again.server.free()
                for _ in range(4):
                    lab.connect().server.shutdown()
                lab.advance(8000)
                lab.flush()
                lab.flush(side="client", at=lab.time + 10_000)
                if saved is not None:
                    saved.free()
                assert ref0 is None or ref0.session
                kept = lab.connect().client.get1_session()  # left for close() to release
                assert kept is not None
                if tickets:
                    lab.close()
                else:
                    del lab  # garbage collection frees it too


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


def heap_in_use() -> int:
    """Bytes malloc has handed out and not had back (glibc mallinfo2)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def heap_growth(rounds: int = 8) -> int:
    for _ in range(3):  # warm one-time caches (cffi, cryptography, OpenSSL tables)
        workload(3)
        gc.collect()
    # Some tables grow once, in some batch after the warm-up; a leak grows in every
    # batch. So: the smallest growth over three batches.
    growths = []
    for _ in range(3):
        before = heap_in_use()
        workload(rounds)
        gc.collect()
        growths.append(heap_in_use() - before)
    return min(growths)


if __name__ == "__main__":
    if sys.argv[1:] == ["--heap"]:
        print("grown", heap_growth())
        sys.exit(0)
    workload(int(sys.argv[1]) if len(sys.argv) > 1 else 1)

    gc.collect()
    from sesskit.engines.libssl import live_objects

    print("live", live_objects())
