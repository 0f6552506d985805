"""Copy the rows of benchmarks/results/latest.json into docs/benchmarks.md, verbatim.

    .venv/bin/python docs/benchmarks_table.py

Rewrites the two tables between ``<!-- table: browser -->`` / ``<!-- table: kernel -->`` and
``<!-- end table -->``: one line per row of ``latest.json``'s ``table`` (as ``benchmarks/run.py``
wrote it), with the benchmark that measures it.  Stale rows (``STALE``) are left out; a row of an
unknown benchmark stops the script.
tests/test_readme.py fails while the page and ``latest.json`` differ.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
LATEST = ROOT / "benchmarks" / "results" / "latest.json"
PAGE = DOCS / "benchmarks.md"
HEADER = (
    "| row (`latest.json` → `table`) | benchmark | figure | target | met |\n| --- | --- | --- | --- | --- |\n"
)

# Rows an old run left in latest.json that no benchmark writes any more: the kernel-side Stepper timing of
# an earlier bench_see.py (replaced by bench_stepper.py, click to redrawn viewer in the browser).
STALE = ("Stepper click -> redrawn figure",)
# Which benchmark writes a row, by the start of its name (see rows() and browser_rows() in run.py).
BENCHMARKS = {
    "bench_browser.py": ("viewer", "render tour"),
    "bench_stepper.py": ("Stepper",),
    "bench_tryit.py": ("Try it",),
    "bench_core.py": ("Lab.connect", "Lab(engine", "connect part", "observed step"),
    "bench_see.py": ("timeline",),
    "bench_memory.py": ("trace memory", "peak memory"),
}


def benchmark(name: str) -> str | None:
    """The script that writes row ``name``; None for a stale row; unknown rows stop the script."""
    if name.startswith(STALE):
        return None
    for script, starts in BENCHMARKS.items():
        if name.startswith(starts):
            return script
    raise SystemExit(f"which benchmark writes {name!r}? Add it to BENCHMARKS in {Path(__file__).name}")


def table(rows: list[list[object]], browser: bool) -> str:
    lines = []
    for name, figure, target, ok in rows:
        script = benchmark(str(name))
        if (
            script is None
            or (script in ("bench_browser.py", "bench_stepper.py", "bench_tryit.py")) != browser
        ):
            continue
        met = "yes" if ok else "**no**"
        lines.append(f"| `{name}` | `{script}` | {figure} | {str(target).replace('<=', '≤')} | {met} |\n")
    return HEADER + "".join(lines)


def main() -> None:
    rows = json.loads(LATEST.read_text(encoding="utf-8"))["table"]
    text = PAGE.read_text(encoding="utf-8")
    for kind in ("browser", "kernel"):
        pattern = re.compile(rf"(<!-- table: {kind} -->\n).*?(<!-- end table -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{PAGE}: no '<!-- table: {kind} -->' ... '<!-- end table -->' block")
        body = table(rows, kind == "browser")
        text = pattern.sub(lambda m, body=body: m.group(1) + "\n" + body + "\n" + m.group(2), text)
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote the tables of {PAGE.relative_to(ROOT)} from {LATEST.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
