"""Copy the rows of benchmarks/results/latest.json into docs/benchmarks.md, verbatim.

    .venv/bin/python docs/benchmarks_table.py

Rewrites the two tables between ``<!-- table: browser -->`` / ``<!-- table: kernel -->`` and
``<!-- end table -->``: one line per row of ``latest.json``'s ``table`` (as ``benchmarks/run.py``
wrote it), with the benchmark that measures it.  Rows no benchmark writes any more are left out.
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

# Which benchmark writes a row, by the start of its name (see rows() and browser_rows() in run.py).
BENCHMARKS = {
    "bench_browser.py": ("viewer", "render tour"),
    "bench_core.py": ("Lab.connect", "Lab(engine", "connect part", "observed step"),
    "bench_see.py": ("timeline",),
    "bench_memory.py": ("trace memory", "peak memory"),
}


def benchmark(name: str) -> str | None:
    for script, starts in BENCHMARKS.items():
        if name.startswith(starts):
            return script
    return None  # e.g. "Stepper click" rows of an old run: no benchmark writes them now


def table(rows: list[list[object]], browser: bool) -> str:
    lines = []
    for name, figure, target, ok in rows:
        script = benchmark(str(name))
        if script is None or (script == "bench_browser.py") != browser:
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
