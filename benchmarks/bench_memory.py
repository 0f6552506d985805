"""Memory: trace bytes per step, and the peak memory of a 10,000-session lab.

    .venv/bin/python benchmarks/bench_memory.py [--quick] [--json PATH]

Each figure is measured in a fresh interpreter (subprocess) so that nothing
else shares the heap; the bare baseline is the same interpreter with the same
imports and nothing built.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

import sesskit


def deep_size(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of ``obj`` and everything it references, each object counted once."""
    seen = set() if seen is None else seen
    stack = [obj]
    total = 0
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, type):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict) or type(o).__name__ == "mappingproxy":
            stack.extend(o.keys())  # type: ignore[attr-defined]
            stack.extend(o.values())  # type: ignore[attr-defined]
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif hasattr(o, "__slots__"):
            stack.extend(getattr(o, a) for a in o.__slots__ if hasattr(o, a))  # type: ignore[attr-defined]
        elif hasattr(o, "__dict__"):
            stack.append(o.__dict__)
    return total


def story(lab: sesskit.Lab, rounds: int) -> None:
    """A workshop-like mix: handshakes, get0/get1, reads, clean and dirty closes, time, flushes."""
    refs = []
    for i in range(rounds):
        link = lab.connect()
        link.client.read()
        refs.append(link.client.get1_session())
        link.client.get0_session()
        if i % 2:
            link.client.shutdown()
            link.server.shutdown()
        link.client.free()
        link.server.free()
        if i % 5 == 4:
            ref = refs.pop(0)
            if ref is not None:
                again = lab.connect(resume=ref)
                again.client.free()
                again.server.free()
                ref.free()
        if i % 25 == 24:
            lab.advance(3600)
            lab.flush()


def trace_bytes_per_step(rounds: int) -> dict[str, Any]:
    out = {}
    for tls, tickets in (("1.3", True), ("1.2", False)):
        lab = sesskit.Lab(engine="libssl", tls=tls, tickets=tickets, explain=False)
        story(lab, rounds)
        steps = len(lab.trace)
        mem = deep_size(lab.trace._steps)
        js = len(lab.trace.to_json())
        out[f"tls{tls.replace('.', '')}{'' if tickets else '_stateful'}"] = {
            "steps": steps,
            "bytes_per_step": mem / steps,
            "json_bytes_per_step": js / steps,
            "sessions": len(lab.snapshot().sessions),
        }
        lab.close()
    return out


_PEAK = r"""
import resource, sys, gc, sesskit
from sesskit.engines import _libssl_ffi
_libssl_ffi.load()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if {build}:
    lab = sesskit.Lab(engine="libssl", tls="1.2", tickets=False, cache_size=0, explain=False)
    links = [lab.connect() for _ in range({n} // 2)]
    assert len(lab.snapshot().live_sessions()) == {n}
    steps = len(lab.trace)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
"""


def peak_rss_kib(n: int, build: bool) -> int:
    code = _PEAK.format(n=n, build=build)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(r.stdout.split()[-1])


def peak_memory(n: int) -> dict[str, Any]:
    lab_kib = peak_rss_kib(n, True)
    bare_kib = peak_rss_kib(n, False)
    return {
        "live_sessions": n,
        "peak_rss_growth_mib": lab_kib / 1024,
        "baseline_growth_mib": bare_kib / 1024,
        "per_session_kib": (lab_kib - bare_kib) / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    res = {
        "trace": trace_bytes_per_step(40 if args.quick else 200),
        "peak": peak_memory(2000 if args.quick else 10_000),
    }
    for k, v in res["trace"].items():
        print(
            f"trace {k:18} {v['steps']:6} steps  {v['bytes_per_step']:7.0f} B/step in memory"
            f"  {v['json_bytes_per_step']:7.0f} B/step as JSON"
        )
    p = res["peak"]
    print(
        f"lab with {p['live_sessions']} live sessions: peak RSS +{p['peak_rss_growth_mib']:.1f} MiB "
        f"({p['per_session_kib']:.1f} KiB per session, SSLs and trace included)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
