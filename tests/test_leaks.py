"""Nothing leaks: every OpenSSL object sesskit makes is freed by close() or by GC."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from leak_workload import workload

from sesskit.engines.libssl import live_objects

WORKLOAD = Path(__file__).parent / "scripts" / "leak_workload.py"


def test_object_counts_return_to_zero() -> None:
    import gc

    base = live_objects()
    workload(1)
    gc.collect()
    assert live_objects() == base


def test_heap_does_not_grow_with_labs() -> None:
    """malloc's own count of bytes in use stays flat across many labs (no per-lab leak).

    Measured in a fresh interpreter so that nothing else allocates meanwhile.
    """
    r = subprocess.run([sys.executable, str(WORKLOAD), "--heap"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    grown = int(r.stdout.split("grown")[1].split()[0])
    # A leaked SSL_SESSION is ~1 KiB, an SSL ~6 KiB, an SSL_CTX with its cert more: 32 labs
    # leaking even one session each would exceed this.
    assert grown < 24_000, f"heap grew by {grown} bytes over each batch of 32 labs"


@pytest.mark.skipif(
    shutil.which("valgrind") is None, reason="valgrind is not installed (.ci/run installs it)"
)
def test_valgrind_finds_no_leak_from_openssl_objects() -> None:
    r = subprocess.run(
        [
            "valgrind",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--num-callers=40",
            sys.executable,
            str(WORKLOAD),
            "2",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONMALLOC": "malloc", "PATH": "/usr/bin:/bin"},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "live {'SSL_CTX': 0, 'SSL': 0, 'observer refs': 0, 'user refs': 0}" in r.stdout
    records = re.split(r"==\d+== \n", r.stderr)
    lost = [b for b in records if re.search(r"(definitely|indirectly) lost in loss record", b)]
    from_openssl = [b for b in lost if re.search(r"libssl\.so|libcrypto\.so", b)]
    assert "LEAK SUMMARY" in r.stderr
    assert not from_openssl, "\n\n".join(from_openssl[:3])
