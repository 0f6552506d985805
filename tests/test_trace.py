"""Traces travel: JSON round trip, and a loaded trace needs no OpenSSL."""

from __future__ import annotations

import json
import subprocess
import sys

import sesskit
from sesskit.trace import Trace


def story() -> sesskit.Lab:
    lab = sesskit.Lab(engine="libssl", tls="1.3", tickets=False, client_cache=True, explain=False)
    link = lab.connect()
    ref = link.client.get1_session()
    link.client.read()
    link.client.shutdown()
    link.server.shutdown()
    link.client.shutdown()
    assert ref is not None
    lab.connect(resume=ref)
    lab.advance(8000)
    lab.flush()
    ref.free()
    return lab


def test_round_trip_is_exact() -> None:
    lab = story()
    text = lab.trace.to_json()
    back = Trace.from_json(text)
    assert back == lab.trace
    assert back.to_json() == text
    for i in range(len(lab.trace)):
        assert back.snapshot(i) == lab.trace.snapshot(i)
    assert back.meta["engine"] == "libssl"
    lab.close()


def test_snapshots_fold_from_deltas() -> None:
    lab = story()
    folded = list(lab.trace.snapshots())
    assert folded[-1] == lab.snapshot()
    assert [lab.trace.snapshot(i) for i in range(len(lab.trace))] == folded
    lab.close()


def test_a_loaded_trace_needs_no_openssl(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = story()
    path = tmp_path / "t.json"
    path.write_text(lab.trace.to_json())
    expected = {k: v.refcount for k, v in lab.snapshot().sessions.items()}
    lab.close()
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('ssl', '_ssl', 'cffi', '_cffi_backend', 'OpenSSL', 'cryptography'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
from sesskit.trace import Trace
t = Trace.from_json(open({str(path)!r}).read())
print({{k: v.refcount for k, v in t.snapshot().sessions.items()}})
assert not any(m in sys.modules for m in ('ssl', 'cffi', 'OpenSSL'))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == expected


def test_bad_json_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="not a sesskit trace"):
        Trace.from_json('{"format": 99, "steps": []}')
