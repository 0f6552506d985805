"""Trace files are checked whole (issue 16, point 4).

``Trace.from_json``/``from_dict`` accept a trace :meth:`~sesskit.Trace.to_json` wrote (text or
UTF-8 bytes) and refuse anything else with :class:`sesskit.TraceFormatError` (a SesskitError and a
ValueError) naming the step and the field -- never another exception, and never a trace that
loads with nonsense in it (a refcount "two", NaN, a time "late", members that do not exist).
Loading costs time linear in the trace: a long story with a large cache is folded in blocks.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sesskit
from sesskit import SesskitError, Trace, TraceFormatError, scenarios
from sesskit.trace import MAX_TIME, STAT_NAMES

STORIES = list(scenarios.SCENARIOS)


@cache
def saved(engine: str) -> tuple[tuple[str, Trace, str], ...]:
    """Every story recorded on ``engine``, with its JSON."""
    out = []
    for name in STORIES:
        trace = scenarios.run(name, engine)
        out.append((name, trace, trace.to_json()))
    return tuple(out)


def tour() -> dict[str, Any]:
    return copy.deepcopy(json.loads(dict((n, j) for n, _, j in saved("libssl"))["tour"]))


def test_the_error_is_a_sesskit_error_and_a_value_error() -> None:
    assert issubclass(TraceFormatError, SesskitError)
    assert issubclass(TraceFormatError, ValueError)
    assert sesskit.TraceFormatError is TraceFormatError


@pytest.mark.parametrize("engine", ["model", "libssl"])
def test_every_story_loads_equal_from_text_and_from_bytes(engine: str) -> None:
    for name, trace, text in saved(engine):
        for form in (text, text.encode(), bytearray(text.encode())):
            loaded = Trace.from_json(form)
            assert loaded == trace, name
            assert loaded.snapshot(-1) == trace.snapshot(-1), name
            assert list(loaded.snapshots()) == list(trace.snapshots()), name


# -- what issue 16 found, each refused with the step and the field named -----------------------
def _step_with(d: dict[str, Any], kind: str) -> tuple[int, dict[str, Any]]:
    """The first step whose changes hold ``kind`` (sessions, ssls, caches, refs)."""
    for i, s in enumerate(d["steps"]):
        if s["changes"].get(kind):
            return i, s["changes"][kind]
    raise AssertionError(f"no step changes {kind}")


def _first(m: dict[str, Any]) -> Any:
    return m[next(iter(m))]


def _set_refcount(value: Any) -> Callable[[dict[str, Any]], str]:
    def mutate(d: dict[str, Any]) -> str:
        i, sessions = _step_with(d, "sessions")
        _first(sessions)["refcount"] = value
        return f"step {i}, changes.sessions.{next(iter(sessions))}.refcount"

    return mutate


def _set(kind: str, key: str, value: Any) -> Callable[[dict[str, Any]], str]:
    def mutate(d: dict[str, Any]) -> str:
        i, entries = _step_with(d, kind)
        _first(entries)[key] = value
        return f"step {i}, changes.{kind}.{next(iter(entries))}.{key}"

    return mutate


def _time(value: Any) -> Callable[[dict[str, Any]], str]:
    def mutate(d: dict[str, Any]) -> str:
        d["steps"][3]["changes"]["time"] = value
        return "step 3, changes.time"

    return mutate


def _duplicate_member(d: dict[str, Any]) -> str:
    for i, s in enumerate(d["steps"]):
        for side, c in s["changes"].get("caches", {}).items():
            if c.get("members"):
                c["members"].append(c["members"][0])
                c["size"] += 1
                return f"step {i}, changes.caches.{side}.members"
    raise AssertionError("no cache with members")


def _stat(name: str, value: Any) -> Callable[[dict[str, Any]], str]:
    def mutate(d: dict[str, Any]) -> str:
        i, caches = _step_with(d, "caches")
        _first(caches)["stats"][name] = value
        return f"step {i}, changes.caches.{next(iter(caches))}.stats"

    return mutate


def _missing(key: str) -> Callable[[dict[str, Any]], str]:
    def mutate(d: dict[str, Any]) -> str:
        del d["steps"][2][key]
        return f"step 2, {key}"

    return mutate


def _unknown_session(kind: str, key: str) -> Callable[[dict[str, Any]], str]:
    return _set(kind, key, "S999")


MUTATIONS: dict[str, Callable[[dict[str, Any]], str]] = {
    "refcount 'two'": _set_refcount("two"),
    "refcount 2.0": _set_refcount(2.0),
    "refcount 10**400": _set_refcount(10**400),
    "refcount -1": _set_refcount(-1),
    "refcount true": _set_refcount(True),
    "refcount 0 but live": _set_refcount(0),
    "side 'both'": _set("sessions", "side", "both"),
    "cache 'nowhere'": _set("sessions", "cache", "nowhere"),
    "resumable 'yes'": _set("sessions", "resumable", "yes"),
    "label not its key": _set("sessions", "label", "S77"),
    "an SSL's session that does not exist": _unknown_session("ssls", "session"),
    "an SSL's side": _set("ssls", "side", 3),
    "a ref's kind": _set("refs", "kind", "get2"),
    "a ref to a session that does not exist": _unknown_session("refs", "session"),
    "a ref via an SSL that does not exist": _set("refs", "via", "c99"),
    "a ref's id not its key": _set("refs", "id", 99),
    "time 'late'": _time("late"),
    "time 1.5": _time(1.5),
    "time past ten years": _time(MAX_TIME + 1),
    "time negative": _time(-7),
    "a member listed twice": _duplicate_member,
    "a statistic 'many'": _stat("hits", "many"),
    "a statistic negative": _stat("hits", -1),
    "an unknown statistic": _stat("hugs", 1),
    "a cache size that is not its members": _set("caches", "size", 99),
    "a step without op": _missing("op"),
    "a step without index": _missing("index"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_malformed_field_is_named_with_its_step(mutation: str) -> None:
    d = tour()
    where = MUTATIONS[mutation](d)
    with pytest.raises(TraceFormatError) as err:
        Trace.from_dict(d)
    assert where in str(err.value), str(err.value)
    with pytest.raises(TraceFormatError):  # the same through JSON text (where it can be written)
        Trace.from_json(json.dumps(d, default=str))


@pytest.mark.parametrize(
    "text",
    [
        '{"format": true, "meta": {}, "steps": []}',
        '{"format": "1", "meta": {}, "steps": []}',
        '{"format": 2, "meta": {}, "steps": []}',
        '{"meta": {}, "steps": []}',
        '{"format": 1, "meta": {}, "steps": {}}',
        '{"format": 1, "meta": [], "steps": []}',
        '{"format": 1, "meta": {"x": NaN}, "steps": []}',
        '{"format": 1, "meta": {"x": Infinity}, "steps": []}',
        '{"format": 1, "meta": {}, "steps": [], "extra": 1}',
        '{"format": 1, "meta": {}, "steps": [1]}',
        '{"format": 1, "meta": {}, "steps": [{"index": 1, "op": "x", "target": "", "why": ""}]}',
        '{"format": 1, "meta": {}, "steps": [{"index": 0, "op": "x", "target": "", "why": "", '
        '"changes": []}]}',
        '{"format": 1, "meta": {}, "steps": [{"index": 0, "op": "", "target": "", "why": ""}]}',
        '{"format": 1, "meta": {}, "steps": [{"index": 0, "op": "x", "target": "", "why": "", "oops": 1}]}',
        '{"format": 1, "meta": {}, "steps": [{"index": 0, "op": "x", "target": "", "why": "", '
        '"changes": {"refs": {"-1": {}}}}]}',
        '{"format": 1, "meta": {}, "steps": [{"index": 0, "op": "x", "target": "", "why": "", '
        '"changes": {"caches": {"both": {}}}}]}',
        '{"format": 1, "meta": {}, "steps": [{"index": 0, "op": "x", "target": "", "why": "", '
        '"changes": {"refcount": ' + "9" * 5000 + "}}]}",
        "[]",
        "null",
        "3",
        '"a trace"',
        '{"format": 1, "meta": {}, "steps": [',
        "",
        "[" * 100_000 + "]" * 100_000,
        '{"format": 1, "meta": ' + '{"a": ' * 40 + "1" + "}" * 40 + ', "steps": []}',
    ],
)
def test_a_malformed_file_is_a_trace_format_error(text: str) -> None:
    with pytest.raises(TraceFormatError):
        Trace.from_json(text)
    with pytest.raises(TraceFormatError):
        Trace.from_json(text.encode())


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe{}", b'{"format": 1, "meta": {"x": "\xe9"}, "steps": []}', b"\x00" * 8],
    ids=["utf-16-bom", "latin-1", "nul"],
)
def test_bytes_that_are_not_utf8_are_a_trace_format_error(data: bytes) -> None:
    with pytest.raises(TraceFormatError, match=r"UTF-8|JSON"):
        Trace.from_json(data)


@pytest.mark.parametrize("value", [None, 3, 1.5, ["{}"], object()])
def test_from_json_takes_text_or_bytes(value: Any) -> None:
    with pytest.raises(TraceFormatError):
        Trace.from_json(value)


@pytest.mark.parametrize("value", [None, 3, "text", [], {"format": 1, "meta": {1: 2}, "steps": []}])
def test_from_dict_takes_a_trace_dict(value: Any) -> None:
    with pytest.raises(TraceFormatError):
        Trace.from_dict(value)


def test_from_dict_refuses_python_values_json_cannot_hold() -> None:
    d = tour()
    d["meta"]["when"] = float("nan")
    with pytest.raises(TraceFormatError, match=r"meta\.when"):
        Trace.from_dict(d)
    d["meta"]["when"] = {1, 2}
    with pytest.raises(TraceFormatError, match=r"meta\.when"):
        Trace.from_dict(d)


# -- mutations of saved traces: loads (and round-trips), or TraceFormatError -----------------------
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.just(10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=4)
    | st.sampled_from(
        ["S1", "S2", "S3", "c1", "s1", "server", "client", "get0", "get1", "", "hits", *STAT_NAMES]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _mutate(data: st.DataObject, d: dict[str, Any]) -> dict[str, Any]:
    d = copy.deepcopy(d)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        parent: Any = None
        key: Any = None
        node: Any = d
        for _ in range(data.draw(st.integers(1, 8), label="depth")):
            if node is d and "steps" in d:  # mostly into the steps
                k: Any = data.draw(st.sampled_from(["steps"] * 6 + sorted(d)))
            elif isinstance(node, dict) and node:
                k = data.draw(st.sampled_from(sorted(node, key=str)))
            elif isinstance(node, list) and node:
                k = data.draw(st.integers(0, len(node) - 1))
            else:
                break
            parent, key, node = node, k, node[k]
        action = data.draw(st.sampled_from(["replace", "delete", "duplicate", "swap", "add"]))
        if parent is None:
            continue
        if action == "replace":
            parent[key] = data.draw(JSONISH, label="value")
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["extra", "label", "time", "edit", "S1", "result", "1"]))] = (
                data.draw(JSONISH, label="added")
            )
        elif isinstance(parent, list):
            if action == "duplicate":
                parent.insert(key, copy.deepcopy(parent[key]))
            else:
                other = data.draw(st.integers(0, len(parent) - 1))
                parent[key], parent[other] = parent[other], parent[key]
    return d


def _loads_whole_or_refuses(load: Callable[[], Trace]) -> None:
    try:
        t = load()
    except TraceFormatError:
        return
    again = Trace.from_json(t.to_json())
    assert again == t
    for i in range(len(t)):
        assert t.snapshot(i) == again.snapshot(i)
    assert list(t.snapshots()) == list(again.snapshots())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_trace_loads_whole_or_is_a_trace_format_error(data: st.DataObject) -> None:
    engine = data.draw(st.sampled_from(["model", "libssl"]))
    _, _, text = data.draw(st.sampled_from(saved(engine)))
    mutated = _mutate(data, json.loads(text))
    _loads_whole_or_refuses(lambda: Trace.from_dict(mutated))
    try:
        as_text = json.dumps(mutated)
    except ValueError:  # an integer JSON cannot write
        return
    _loads_whole_or_refuses(lambda: Trace.from_json(as_text))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_damaged_bytes_load_whole_or_are_a_trace_format_error(data: st.DataObject) -> None:
    _, _, text = data.draw(st.sampled_from(saved("model")))
    raw = bytearray(text.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "drop"]))
        if action == "flip":
            raw[i] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[i:]
            break
        else:
            del raw[i]
    _loads_whole_or_refuses(lambda: Trace.from_json(bytes(raw)))


# -- linear loading -----------------------------------------------------------------------------
def synthetic_trace(connects: int, cache_size: int) -> tuple[dict[str, Any], list[str]]:
    """A TLS 1.2 server cache filled past its size: each connect adds at the head, evicts the tail.

    Stored as the engines store a large cache: edits of the previous step's list.  Returns the
    trace's dict and the server cache's final members.
    """
    stats = dict.fromkeys(STAT_NAMES, 0)
    steps: list[dict[str, Any]] = [
        {"index": 0, "op": "SSL_CTX_new", "target": "client+server", "why": "", "changes": {}}
    ]
    members: deque[str] = deque()
    for k in range(1, connects + 1):
        client, server = f"S{2 * k - 1}", f"S{2 * k}"
        sessions: dict[str, Any] = {
            client: {"label": client, "side": "client", "refcount": 1, "resumable": True},
            server: {"label": server, "side": "server", "refcount": 2, "cache": "server", "resumable": True},
        }
        removed = []
        if len(members) == cache_size:
            evicted = members.pop()
            removed.append(evicted)
            sessions[evicted] = {"label": evicted, "side": "server", "refcount": 0, "freed": True}
            stats["cache_full"] += 1
        members.appendleft(server)
        stats["accept"] += 1
        stats["accept_good"] += 1
        edit = {"removed": removed, "inserted": [[0, server]]}
        steps.append(
            {
                "index": k,
                "op": "SSL_connect",
                "target": f"c{k}↔s{k}",
                "why": "A full handshake; the server caches its session.",
                "result": "full handshake",
                "changes": {
                    "sessions": sessions,
                    "ssls": {
                        f"c{k}": {"name": f"c{k}", "side": "client", "session": client},
                        f"s{k}": {"name": f"s{k}", "side": "server", "session": server},
                    },
                    "caches": {
                        "server": {"side": "server", "size": len(members), "edit": edit, "stats": dict(stats)}
                    },
                },
            }
        )
    return {"format": 1, "meta": {"engine": "model"}, "steps": steps}, list(members)


def test_a_long_trace_with_a_large_cache_loads_and_folds_right() -> None:
    """20,000 connects through a cache of 5,000 (list.remove on the whole list was quadratic)."""
    d, members = synthetic_trace(20_000, 5_000)
    trace = Trace.from_json(json.dumps(d))
    assert len(trace) == 20_001
    last = trace.snapshot(-1)
    assert list(last.caches["server"].members) == members
    assert last.caches["server"].size == 5_000
    assert trace.cache("server").members == tuple(members)
    assert sum(not s.freed for s in last.sessions.values()) == 20_000 + 5_000
    middle = trace.snapshot(10_000)  # folded from the start: the same list as a fresh fold
    assert list(middle.caches["server"].members) == [f"S{2 * k}" for k in range(10_000, 5_000, -1)]
