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


def test_a_large_cache_is_stored_as_edits_and_snapshots_stay_exact() -> None:
    lab = sesskit.Lab(engine="libssl", tls="1.2", tickets=False, cache_size=40, explain=False)
    live = [lab.snapshot()]
    links = []
    for i in range(60):
        links.append(lab.connect())
        live.append(lab.snapshot())
        if i % 7 == 3:
            links[i - 2].server.free()  # dirty: a session leaves from the middle of the list
            live.append(lab.snapshot())
    lab.advance(100)
    live.append(lab.snapshot())
    lab.flush(at=lab.time + 7200)
    live.append(lab.snapshot())
    assert [lab.trace.snapshot(i) for i in range(len(lab.trace))] == live
    assert max(len(s.caches["server"].members) for s in live) == 39  # N-1 held for size N
    stored = sum(len(c.members) for st in lab.trace for c in st.changes.caches.values())
    edits = sum(1 for st in lab.trace for c in st.changes.caches.values() if c.edit is not None)
    assert edits > 40 and stored < 20 * len(lab.trace)  # not the whole list at every step
    back = Trace.from_json(lab.trace.to_json())
    assert [back.snapshot(i) for i in range(len(back))] == live
    lab.close()
