"""Plain data for what sesskit saw: snapshots, steps and traces (standard library only).

A :class:`Trace` is the story of one :class:`~sesskit.Lab`: one :class:`Step` per
operation.  A step stores only what the operation *changed* (a :class:`Delta`);
the full :class:`Snapshot` at any step is rebuilt on demand by folding deltas,
with a checkpoint every few steps so scrubbing a long history stays cheap.

Everything here is immutable, JSON-serialisable and needs no OpenSSL: a trace
saved by a real engine loads and plots anywhere.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from .errors import TraceFormatError

__all__ = [
    "MAX_TIME",
    "TRACE_FORMAT",
    "CacheState",
    "Delta",
    "RefState",
    "SSLState",
    "SessionState",
    "Snapshot",
    "Step",
    "Trace",
    "TraceFormatError",
]

TRACE_FORMAT = 1
SIDES = ("client", "server")
STAT_NAMES = (
    "connect",
    "connect_good",
    "accept",
    "accept_good",
    "hits",
    "cb_hits",
    "misses",
    "timeouts",
    "cache_full",
)
_CHECKPOINT_EVERY = 64
# The virtual clock runs from 0 to ten years (in seconds), on every engine (issue 16, point 2).
# A real engine sets each session's time to "now" (the lab's start, about 1.8e9 s after 1970 in
# 2026) minus its virtual age, and hands OpenSSL "now" + (at - time) to flush at ``at``.  OpenSSL
# 3.0 and 3.1 keep a session's time and timeout as seconds in a C long (SSL_SESSION_set_time(3),
# SSL_SESSION_set_timeout(3)) and compare against their sum, ``calc_timeout`` (ssl/ssl_sess.c);
# from 3.2 both are OSSL_TIME, nanoseconds in a uint64_t.  Past ~1.8e9 virtual seconds the times
# a lab set went negative and an expired session resumed (issue 16).  Ten years keeps every time
# a lab sets positive and every time + timeout (the timeout is at most ten years too) far inside
# a 64-bit long and, in nanoseconds, far inside 2**63.
MAX_TIME = 10 * 365 * 24 * 3600  # 315,360,000 s
MAX_REFCOUNT = 2**31 - 1  # struct ssl_session_st's references is an int
MAX_COUNT = 2**63 - 1  # statistics and sizes: SSL_CTX_ctrl returns a long
_EDIT_ABOVE = 16  # caches with more members than this are stored as edits


class SessionState(NamedTuple):
    """One SSL_SESSION as seen at a step.

    ``refcount`` excludes sesskit's own observer reference.  A freed session
    keeps its entry: refcount 0, cache None, resumable False, freed True.
    """

    label: str
    side: str
    refcount: int
    cache: str | None = None
    resumable: bool = False
    freed: bool = False


class SSLState(NamedTuple):
    """One SSL object: which session it points at (``s->session``), if any."""

    name: str
    side: str
    session: str | None = None
    freed: bool = False
    sent_shutdown: bool = False
    cleared: bool = False


class RefState(NamedTuple):
    """A pointer the user holds: ``get0`` (borrowed) or ``get1`` (owns +1)."""

    id: int
    kind: str
    session: str
    via: str
    released: bool = False
    dangling: bool = False


@dataclass(frozen=True, slots=True)
class CacheState:
    """An SSL_CTX internal session cache.

    ``members`` are labels in OpenSSL's list order: the head (latest expiry)
    first, the tail -- next to be evicted or flushed -- last.

    Inside a stored :class:`Step` a cache may carry ``edit`` instead of its
    members: ``(removed labels, (index, label) insertions)`` against the
    previous step's list, so that a long story with a large cache does not
    store the whole list at every step.  Snapshots always have full members.
    """

    side: str
    size: int = 0
    members: tuple[str, ...] = ()
    stats: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_NAMES, 0))
    edit: tuple[tuple[str, ...], tuple[tuple[int, str], ...]] | None = None

    def __post_init__(self) -> None:
        if type(self.members) is not tuple:
            object.__setattr__(self, "members", tuple(self.members))
        if type(self.stats) is not MappingProxyType:  # a read-only view is taken as it is
            object.__setattr__(self, "stats", MappingProxyType(dict(self.stats)))
        if self.edit is not None:
            removed, inserted = self.edit
            object.__setattr__(self, "edit", (tuple(removed), tuple((int(i), str(x)) for i, x in inserted)))

    def after(self, previous: tuple[str, ...]) -> CacheState:
        """This state with full members, given the members before it."""
        if self.edit is None:
            return self
        return CacheState(self.side, self.size, _apply_edit(previous, self.edit), self.stats)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, CacheState):
            return NotImplemented
        return (
            self.size == other.size
            and self.side == other.side
            and self.stats == other.stats  # mappingproxy compares as its dict, no copy
            and self.edit == other.edit
            and self.members == other.members
        )

    def __hash__(self) -> int:
        return hash((self.side, self.size, self.members))


@dataclass(frozen=True, slots=True)
class Delta:
    """What one operation changed: new states of the objects it touched."""

    sessions: Mapping[str, SessionState] = field(default_factory=dict)
    ssls: Mapping[str, SSLState] = field(default_factory=dict)
    caches: Mapping[str, CacheState] = field(default_factory=dict)
    refs: Mapping[int, RefState] = field(default_factory=dict)
    time: int | None = None

    def __bool__(self) -> bool:
        return bool(self.sessions or self.ssls or self.caches or self.refs) or self.time is not None

    def merged(self, later: Delta) -> Delta:
        """This delta followed by ``later`` (later states win)."""
        return Delta(
            sessions={**self.sessions, **later.sessions},
            ssls={**self.ssls, **later.ssls},
            caches={**self.caches, **later.caches},
            refs={**self.refs, **later.refs},
            time=later.time if later.time is not None else self.time,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.sessions:
            d["sessions"] = {k: _compact(v._asdict()) for k, v in self.sessions.items()}
        if self.ssls:
            d["ssls"] = {k: _compact(v._asdict()) for k, v in self.ssls.items()}
        if self.caches:
            d["caches"] = {k: _cache_dict(v) for k, v in self.caches.items()}
        if self.refs:
            d["refs"] = {str(k): _compact(v._asdict()) for k, v in self.refs.items()}
        if self.time is not None:
            d["time"] = self.time
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Delta:
        return cls(
            sessions={k: SessionState(**v) for k, v in d.get("sessions", {}).items()},
            ssls={k: SSLState(**v) for k, v in d.get("ssls", {}).items()},
            caches={k: _cache_from_dict(v) for k, v in d.get("caches", {}).items()},
            refs={int(k): RefState(**v) for k, v in d.get("refs", {}).items()},
            time=d.get("time"),
        )


def _cache_from_dict(v: Mapping[str, Any]) -> CacheState:
    v = dict(v)
    edit = v.pop("edit", None)
    if edit is not None:
        v["edit"] = (edit["removed"], [tuple(x) for x in edit["inserted"]])
    return CacheState(**v)


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    # Drop default-valued flags so a step stays small on the wire.
    return {k: v for k, v in d.items() if not (v is False or v is None) or k in ("label", "name")}


def _apply_edit(
    previous: tuple[str, ...], edit: tuple[tuple[str, ...], tuple[tuple[int, str], ...]]
) -> tuple[str, ...]:
    removed, inserted = edit
    if removed:
        gone = set(removed)
        members = [x for x in previous if x not in gone]
        if len(gone) != len(removed) or len(members) != len(previous) - len(gone):
            raise ValueError(f"cache edit removes {list(removed)}, not all of them members")
    else:
        members = list(previous)
    for index, label in inserted:
        members.insert(index, label)
    return tuple(members)


def _edit_between(
    previous: tuple[str, ...], new: tuple[str, ...], touched: list[str], previous_set: set[str]
) -> tuple[tuple[str, ...], tuple[tuple[int, str], ...]] | None:
    """The small edit turning ``previous`` into ``new`` if only ``touched`` moved, else None.

    Every step is C-level list work: the cost stays small even for a large cache.
    """
    removed = tuple(x for x in touched if x in previous_set)
    new_set = {label for label in touched if label in new}
    inserted = []
    for label in touched:
        if label in new_set:
            inserted.append((new.index(label), label))
    inserted.sort()
    edit = (removed, tuple(inserted))
    try:
        if _apply_edit(previous, edit) == new:
            return edit
    except ValueError:
        pass
    return None


def _cache_dict(c: CacheState) -> dict[str, Any]:
    if c.edit is not None:
        removed, inserted = c.edit
        edit = {"removed": list(removed), "inserted": [list(x) for x in inserted]}
        return {"side": c.side, "size": c.size, "edit": edit, "stats": dict(c.stats)}
    return {"side": c.side, "size": c.size, "members": list(c.members), "stats": dict(c.stats)}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything alive (and everything freed) at one step."""

    time: int = 0
    sessions: Mapping[str, SessionState] = field(default_factory=dict)
    caches: Mapping[str, CacheState] = field(default_factory=lambda: {s: CacheState(side=s) for s in SIDES})
    ssls: Mapping[str, SSLState] = field(default_factory=dict)
    refs: Mapping[int, RefState] = field(default_factory=dict)

    def apply(self, delta: Delta) -> Snapshot:
        """The snapshot after ``delta``."""
        caches = dict(self.caches)
        for side, c in delta.caches.items():
            caches[side] = c.after(caches[side].members)
        return Snapshot(
            time=self.time if delta.time is None else delta.time,
            sessions={**self.sessions, **delta.sessions},
            caches=caches,
            ssls={**self.ssls, **delta.ssls},
            refs={**self.refs, **delta.refs},
        )

    def live_sessions(self) -> dict[str, SessionState]:
        return {k: v for k, v in self.sessions.items() if not v.freed}


@dataclass(frozen=True, slots=True)
class Step:
    """One operation: ``op`` is the C function's name, ``target`` what it acted on.

    ``error`` is set on a *refused* step (``Lab.refused``): the call was not made, ``changes``
    is empty, and ``error`` holds the typed error's ``{"kind": class name, "message": text}``.
    """

    index: int
    op: str
    target: str
    why: str
    changes: Delta
    result: str | None = None
    error: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "op": self.op, "target": self.target}
        d["why"] = self.why
        if self.result is not None:
            d["result"] = self.result
        if self.error is not None:
            d["error"] = {"kind": self.error["kind"], "message": self.error["message"]}
        d["changes"] = self.changes.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        return cls(
            index=d["index"],
            op=d["op"],
            target=d["target"],
            why=d["why"],
            changes=Delta.from_dict(d.get("changes", {})),
            result=d.get("result"),
            error=_error(d.get("error")),
        )


def _error(e: Mapping[str, Any] | None) -> dict[str, str] | None:
    """A refused step's error as a plain dict (kind and message), or None."""
    if e is None:
        return None
    return {"kind": e["kind"], "message": e["message"]}


class Trace:
    """The steps of one lab, in order, with snapshots rebuilt on demand.

    Step 0 is the lab's creation (``SSL_CTX_new``): the empty caches.  Appending
    a step costs what the step changed, not what is alive: the latest state is
    kept in place, and snapshots of older steps are folded from checkpoints
    made lazily every few steps.
    """

    def __init__(self, meta: Mapping[str, Any] | None = None) -> None:
        self.meta: dict[str, Any] = dict(meta or {})
        self._steps: list[Step] = []
        self._checkpoints: dict[int, Snapshot] = {}
        empty = Snapshot()
        self._time = 0
        self._sessions: dict[str, SessionState] = {}
        self._ssls: dict[str, SSLState] = {}
        self._caches: dict[str, CacheState] = dict(empty.caches)
        self._refs: dict[int, RefState] = {}
        self._members: dict[str, set[str]] = {side: set() for side in SIDES}
        self._last: Snapshot | None = empty
        self._unexplained: Callable[[], None] | None = None

    # -- explanations written when first read --------------------------------
    def explain_later(self, explain: Callable[[], None]) -> None:
        """Call ``explain()`` once, before any step is next read.

        A Lab's explainer queues steps whose ``why`` the model has not written
        yet (running the model costs as much as observing OpenSSL); it writes
        them with :meth:`set_why` when called.
        """
        self._unexplained = explain

    def set_why(self, index: int, why: str) -> None:
        """Give step ``index`` its explanation."""
        step = self._steps[index]
        self._steps[index] = Step(
            step.index, step.op, step.target, why, step.changes, step.result, step.error
        )

    def _explained(self) -> list[Step]:
        explain = self._unexplained
        if explain is not None:
            self._unexplained = None
            explain()
        return self._steps

    # -- recording ---------------------------------------------------------
    def append(
        self,
        op: str,
        target: str,
        why: str,
        changes: Delta,
        result: str | None = None,
        *,
        error: Mapping[str, str] | None = None,
    ) -> Step:
        """Record one step.  ``error`` (kind, message) marks a refused call: ``changes`` must be empty."""
        prepared = self.prepare(op, target, why, changes, result, error=error)
        self.commit(prepared)
        return prepared.step

    def prepare(
        self,
        op: str,
        target: str,
        why: str,
        changes: Delta,
        result: str | None = None,
        *,
        error: Mapping[str, str] | None = None,
    ) -> _Prepared:
        """Everything :meth:`append` would change, computed without changing anything."""
        if error is not None:
            if not isinstance(error, Mapping) or set(error) != {"kind", "message"}:
                raise ValueError("a step's error is {'kind': ..., 'message': ...}, two non-empty strings")
            kind, message = error["kind"], error["message"]
            if not all(type(x) is str and x for x in (kind, message)):
                raise ValueError("a step's error is {'kind': ..., 'message': ...}, two non-empty strings")
            if changes:
                raise ValueError("a refused step changes nothing: its changes must be empty")
            error = {"kind": error["kind"], "message": error["message"]}
        stored = self._compact(changes)
        step = Step(len(self._steps), op, target, why, stored, result, error)
        caches: dict[str, CacheState] = {}
        edits: list[tuple[set[str], tuple[str, ...], list[str]]] = []
        member_sets: dict[str, set[str]] = {}
        for side, c in changes.caches.items():
            previous = self._caches[side]
            full = caches[side] = c.after(previous.members)
            edit = stored.caches[side].edit
            if edit is not None:
                edits.append((self._members[side], edit[0], [label for _, label in edit[1]]))
            elif full.members is not previous.members and full.members != previous.members:
                member_sets[side] = set(full.members)
        return _Prepared(
            step, changes.time, changes.sessions, changes.ssls, caches, edits, member_sets, changes.refs
        )

    def commit(self, prepared: _Prepared) -> None:
        """Append a step :meth:`prepare` computed (against this very state).

        It calls no Python function: an interrupt (or any exception) lands before it or after
        it, never half-way (issue 16).
        """
        step, time, sessions, ssls, caches, edits, member_sets, refs = prepared
        self._steps.append(step)
        if time is not None:
            self._time = time
        self._sessions.update(sessions)
        self._ssls.update(ssls)
        self._caches.update(caches)
        for members, removed, added in edits:
            members.difference_update(removed)
            members.update(added)
        self._members.update(member_sets)
        self._refs.update(refs)
        self._last = None

    def changes_to(self, state: Delta) -> Delta:
        """What differs between the latest state and ``state`` (a full look at everything)."""
        return Delta(
            sessions={k: v for k, v in state.sessions.items() if self._sessions.get(k) != v},
            ssls={k: v for k, v in state.ssls.items() if self._ssls.get(k) != v},
            caches={k: v for k, v in state.caches.items() if self._caches.get(k) != v},
            refs={k: v for k, v in state.refs.items() if self._refs.get(k) != v},
            time=None if state.time is None or state.time == self._time else state.time,
        )

    def _compact(self, changes: Delta) -> Delta:
        """Store a large cache's list as an edit of the previous step's list."""
        for c in changes.caches.values():
            if len(c.members) > _EDIT_ABOVE:
                break
        else:
            return changes
        caches = dict(changes.caches)
        for side, c in changes.caches.items():
            if c.edit is not None or len(c.members) <= _EDIT_ABOVE:
                continue
            touched = [
                label
                for label, st in changes.sessions.items()
                if st.cache == side or label in self._members[side]
            ]
            edit = _edit_between(self._caches[side].members, c.members, touched, self._members[side])
            if edit is not None:
                caches[side] = CacheState(side, c.size, (), c.stats, edit)
        return Delta(changes.sessions, changes.ssls, caches, changes.refs, changes.time)

    # -- the latest state, without building a snapshot ------------------------
    @property
    def time(self) -> int:
        return self._time

    def session(self, label: str) -> SessionState:
        return self._sessions[label]

    def ssl(self, name: str) -> SSLState:
        return self._ssls[name]

    def ref(self, ref_id: int) -> RefState:
        return self._refs[ref_id]

    def cache(self, side: str) -> CacheState:
        return self._caches[side]

    # -- reading -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self._explained())

    def __getitem__(self, i: int) -> Step:
        return self._explained()[i]

    @property
    def steps(self) -> list[Step]:
        return list(self._explained())

    def snapshot(self, index: int = -1) -> Snapshot:
        """The full state after step ``index`` (negative counts from the end)."""
        n = len(self._steps)
        if not n:
            return Snapshot()
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"step {index} is outside this trace (0..{n - 1})")
        if index == n - 1:
            if self._last is None:
                self._last = Snapshot(
                    self._time, dict(self._sessions), dict(self._caches), dict(self._ssls), dict(self._refs)
                )
            return self._last
        base = max((i for i in self._checkpoints if i <= index), default=-1)
        snap = self._checkpoints[base] if base >= 0 else Snapshot()
        for step in self._steps[base + 1 : index + 1]:
            snap = snap.apply(step.changes)
            if step.index % _CHECKPOINT_EVERY == 0:
                self._checkpoints[step.index] = snap
        return snap

    def snapshots(self) -> Iterator[Snapshot]:
        """Every snapshot in order, folding once (O(steps x alive))."""
        snap = Snapshot()
        for step in self._steps:
            snap = snap.apply(step.changes)
            yield snap

    # -- JSON --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TRACE_FORMAT,
            "meta": self.meta,
            "steps": [s.to_dict() for s in self._explained()],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trace:
        """A trace from :meth:`to_dict`'s form, checked whole; :class:`TraceFormatError` if it is not one.

        Every field is checked (types, ranges, known sides and kinds, sessions and SSLs that
        exist, unique cache members, finite numbers); the error names the step and the field.
        Loading costs time linear in the size of the trace.
        """
        with _no_gc():
            return _Loader(cls).load(d)

    @classmethod
    def from_json(cls, text: str | bytes | bytearray) -> Trace:
        """A trace from :meth:`to_json`'s text (str, or UTF-8 bytes); :class:`TraceFormatError` if not one."""
        if isinstance(text, (bytes, bytearray, memoryview)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TraceFormatError(f"not a sesskit trace: not UTF-8 text ({exc})") from None
        if not isinstance(text, str):
            raise TraceFormatError(
                f"not a sesskit trace: from_json takes text or bytes, not {type(text).__name__}"
            )
        with _no_gc():
            try:
                data = json.loads(text, parse_constant=_no_constant)
            except RecursionError:
                raise TraceFormatError("not a sesskit trace: JSON nested too deeply") from None
            except ValueError as exc:  # JSONDecodeError, or an integer of more digits than Python reads
                raise TraceFormatError(f"not a sesskit trace: not valid JSON ({exc})") from None
            return cls.from_dict(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return self.meta == other.meta and self._explained() == other._explained()

    def __repr__(self) -> str:
        return f"<Trace {len(self)} steps, engine={self.meta.get('engine')!r}>"


class _Prepared(NamedTuple):
    """A step and the state it leads to, ready for :meth:`Trace.commit`."""

    step: Step
    time: int | None
    sessions: Mapping[str, SessionState]
    ssls: Mapping[str, SSLState]
    caches: dict[str, CacheState]
    edits: list[tuple[set[str], tuple[str, ...], list[str]]]
    member_sets: dict[str, set[str]]
    refs: Mapping[int, RefState]


# -- loading: every field checked, in time linear in the trace's size ------------------------


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """No cyclic garbage collection while a trace loads.

    Loading makes millions of small objects and no cycles; the collector would walk all of
    them again and again (a 59 MB trace loaded in 8.7 s with it, 3.4 s without).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _no_constant(name: str) -> Any:
    raise TraceFormatError(f"not a sesskit trace: {name} is not a number a trace can hold")


class _Order:
    """A cache's member list under edits, in blocks: remove by label, insert at an index, both cheap.

    Folding a long trace's edits into one list (``list.remove``/``insert`` on the whole list)
    costs the cache's size per edit: quadratic for a long story with a large cache.
    """

    BLOCK = 256

    def __init__(self, members: tuple[str, ...] = ()) -> None:
        b = self.BLOCK
        self.blocks: list[list[str]] = [list(members[i : i + b]) for i in range(0, len(members), b)] or [[]]
        self.where: dict[str, list[str]] = {x: block for block in self.blocks for x in block}
        self.n = len(members)

    def __contains__(self, label: str) -> bool:
        return label in self.where

    def remove(self, label: str) -> None:
        block = self.where.pop(label)
        block.remove(label)
        self.n -= 1
        if not block and len(self.blocks) > 1:
            for i, b in enumerate(self.blocks):
                if b is block:
                    del self.blocks[i]
                    break

    def insert(self, index: int, label: str) -> None:
        blocks = self.blocks
        i = 0
        while index > len(blocks[i]) and i < len(blocks) - 1:
            index -= len(blocks[i])
            i += 1
        block = blocks[i]
        block.insert(index, label)
        self.where[label] = block
        self.n += 1
        if len(block) > 2 * self.BLOCK:
            tail = block[self.BLOCK :]
            del block[self.BLOCK :]
            blocks.insert(i + 1, tail)
            for x in tail:
                self.where[x] = tail

    def members(self) -> tuple[str, ...]:
        return tuple(itertools.chain.from_iterable(self.blocks))


_STEP_KEYS = frozenset(("index", "op", "target", "why", "result", "error", "changes"))
_ERROR_KEYS = frozenset(("kind", "message"))
_CHANGE_KEYS = frozenset(("sessions", "ssls", "caches", "refs", "time"))
_SESSION_KEYS = frozenset(SessionState._fields)
_SSL_KEYS = frozenset(SSLState._fields)
_REF_KEYS = frozenset(RefState._fields)
_CACHE_KEYS = frozenset(("side", "size", "members", "edit", "stats"))
_REF_KINDS = ("get0", "get1")
_META_DEPTH = 32


class _Loader:
    """Checks a trace's dict form step by step, building the :class:`Trace` as it goes."""

    def __init__(self, cls: type[Trace]) -> None:
        self.cls = cls
        self.where = "the trace"

    def fail(self, field: str, problem: str) -> TraceFormatError:
        return TraceFormatError(f"not a valid sesskit trace: {self.where}, {field}: {problem}")

    # -- small checks ---------------------------------------------------------------
    def obj(self, v: Any, field: str, keys: frozenset[str]) -> Mapping[str, Any]:
        if not isinstance(v, Mapping):
            raise self.fail(field, f"expected an object, got {_show(v)}")
        for k in v:
            if k not in keys:
                raise self.fail(field, f"unknown field {_show(k)} (known: {', '.join(sorted(keys))})")
        return v

    def text(self, v: Any, field: str) -> str:
        if type(v) is not str:
            raise self.fail(field, f"expected a string, got {_show(v)}")
        return v

    def name(self, v: Any, field: str) -> str:
        if type(v) is not str or not v:
            raise self.fail(field, f"expected a non-empty string, got {_show(v)}")
        return v

    def flag(self, d: Mapping[str, Any], key: str, field: str) -> bool:
        v = d.get(key, False)
        if type(v) is not bool:
            raise self.fail(f"{field}.{key}", f"expected true or false, got {_show(v)}")
        return v

    def whole(self, v: Any, field: str, lo: int, hi: int) -> int:
        if type(v) is not int:
            raise self.fail(field, f"expected a whole number, got {_show(v)}")
        if not lo <= v <= hi:
            raise self.fail(field, f"expected a whole number in {lo}..{hi}, got {_show(v)}")
        return v

    def one_of(self, v: Any, field: str, choices: tuple[Any, ...]) -> Any:
        if type(v) not in (str, type(None)) or v not in choices:
            raise self.fail(field, f"expected one of {', '.join(map(_show, choices))}, got {_show(v)}")
        return v

    def json_value(self, v: Any, field: str, depth: int = 0) -> None:
        if depth > _META_DEPTH:
            raise self.fail(field, f"nested more than {_META_DEPTH} deep")
        if v is None or type(v) in (str, bool, int):
            return
        if type(v) is float:
            if not math.isfinite(v):
                raise self.fail(field, f"expected a finite number, got {v!r}")
            return
        if isinstance(v, Mapping):
            for k, x in v.items():
                if type(k) is not str:
                    raise self.fail(field, f"keys are strings, got {_show(k)}")
                self.json_value(x, f"{field}.{k}", depth + 1)
            return
        if isinstance(v, list):
            for i, x in enumerate(v):
                self.json_value(x, f"{field}[{i}]", depth + 1)
            return
        raise self.fail(field, f"not a JSON value: {_show(v)}")

    # -- the trace --------------------------------------------------------------------
    def load(self, d: Any) -> Trace:
        if not isinstance(d, Mapping):
            raise TraceFormatError(f"not a sesskit trace: expected a JSON object, got {_show(d)}")
        fmt = d.get("format")
        if type(fmt) is not int or fmt != TRACE_FORMAT:
            raise TraceFormatError(f"not a sesskit trace of format {TRACE_FORMAT}: format={_show(fmt)}")
        self.obj(d, "top level", frozenset(("format", "meta", "steps")))
        meta = d.get("meta", {})
        if not isinstance(meta, Mapping):
            raise self.fail("meta", f"expected an object, got {_show(meta)}")
        self.json_value(meta, "meta")
        steps = d.get("steps")
        if not isinstance(steps, list):
            raise self.fail("steps", f"expected a list, got {_show(steps)}")
        trace = self.cls(meta)
        self.trace = trace
        self.orders = {side: _Order() for side in SIDES}
        self.ssl_names: set[str] = set()
        for i, s in enumerate(steps):
            self.where = f"step {i}"
            trace._steps.append(self.step(i, s))
        self.where = "the trace"
        for side, order in self.orders.items():
            c = trace._caches[side]
            members = order.members()
            trace._caches[side] = CacheState(side, c.size, members, c.stats)
            trace._members[side] = set(members)
        trace._last = None
        return trace

    def step(self, i: int, s: Any) -> Step:
        s = self.obj(s, "the step", _STEP_KEYS)
        for key in ("index", "op", "target", "why"):
            if key not in s:
                raise self.fail(key, "missing")
        self.whole(s["index"], "index", i, i)
        op = self.name(s["op"], "op")
        target = self.text(s["target"], "target")
        why = self.text(s["why"], "why")
        result = s.get("result")
        if result is not None:
            self.text(result, "result")
        error = None
        if "error" in s:
            e = self.obj(s["error"], "error", _ERROR_KEYS)
            error = {
                "kind": self.name(e.get("kind"), "error.kind"),
                "message": self.name(e.get("message"), "error.message"),
            }
        changes = self.changes(s.get("changes", {}))
        if error is not None and changes:
            raise self.fail(
                "changes", "a refused step (one with an error) changes nothing, but this one does"
            )
        return Step(i, op, target, why, changes, result, error)

    def changes(self, c: Any) -> Delta:
        c = self.obj(c, "changes", _CHANGE_KEYS)
        t = self.trace
        sessions = {k: self.session(k, v) for k, v in self.entries(c, "sessions").items()}
        t._sessions.update(sessions)  # a step's SSLs, refs and caches may name its own new sessions
        ssls = {k: self.ssl(k, v) for k, v in self.entries(c, "ssls").items()}
        t._ssls.update(ssls)
        refs = {}
        for k, v in self.entries(c, "refs").items():
            ref = self.ref(k, v)
            refs[ref.id] = ref
        t._refs.update(refs)
        caches = {k: self.cache(k, v) for k, v in self.entries(c, "caches").items()}
        time = c.get("time")
        if time is not None:
            t._time = self.whole(time, "changes.time", t._time, MAX_TIME)
        for label, st in sessions.items():
            for side in SIDES:
                if (st.cache == side) != (label in self.orders[side]):
                    where = "in" if label in self.orders[side] else "not in"
                    raise self.fail(
                        f"changes.sessions.{label}.cache",
                        f"says {_show(st.cache)}, but {label} is {where} the {side} cache's members",
                    )
        return Delta(sessions, ssls, caches, refs, time)

    def entries(self, c: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        v = c.get(key, {})
        if not isinstance(v, Mapping):
            raise self.fail(f"changes.{key}", f"expected an object, got {_show(v)}")
        for k in v:
            if type(k) is not str:
                raise self.fail(f"changes.{key}", f"keys are strings, got {_show(k)}")
        return v

    def session(self, label: str, v: Any) -> SessionState:
        f = f"changes.sessions.{label}"
        v = self.obj(v, f, _SESSION_KEYS)
        if v.get("label") != label:
            raise self.fail(f"{f}.label", f"expected {_show(label)} (its key), got {_show(v.get('label'))}")
        side = self.one_of(v.get("side"), f"{f}.side", SIDES)
        refcount = self.whole(v.get("refcount"), f"{f}.refcount", 0, MAX_REFCOUNT)
        cache = self.one_of(v.get("cache"), f"{f}.cache", (None, *SIDES))
        resumable, freed = self.flag(v, "resumable", f), self.flag(v, "freed", f)
        if freed and (refcount or cache is not None or resumable):
            raise self.fail(f, "a freed session has refcount 0, no cache and is not resumable")
        if not freed and refcount == 0:
            raise self.fail(f"{f}.refcount", "0 references, but not freed")
        old = self.trace._sessions.get(label)
        if old is not None and (old.side != side or (old.freed and not freed)):
            raise self.fail(f, f"was {old.side} and {'freed' if old.freed else 'live'}: it can't become this")
        return SessionState(label, side, refcount, cache, resumable, freed)

    def known_session(self, v: Any, field: str) -> str:
        label = self.name(v, field)
        if label not in self.trace._sessions:
            raise self.fail(field, f"no session {_show(label)} in the trace so far")
        return label

    def ssl(self, name: str, v: Any) -> SSLState:
        f = f"changes.ssls.{name}"
        v = self.obj(v, f, _SSL_KEYS)
        if v.get("name") != name:
            raise self.fail(f"{f}.name", f"expected {_show(name)} (its key), got {_show(v.get('name'))}")
        side = self.one_of(v.get("side"), f"{f}.side", SIDES)
        session = v.get("session")
        if session is not None:
            self.known_session(session, f"{f}.session")
        freed = self.flag(v, "freed", f)
        sent, cleared = self.flag(v, "sent_shutdown", f), self.flag(v, "cleared", f)
        if freed and session is not None:
            raise self.fail(f"{f}.session", "a freed SSL has no session")
        return SSLState(name, side, session, freed, sent, cleared)

    def ref(self, key: str, v: Any) -> RefState:
        f = f"changes.refs.{key}"
        if not (key.isascii() and key.isdigit()) or len(key) > 18 or int(key) < 1:
            raise self.fail(f, "a ref's key is its id, a whole number >= 1")
        v = self.obj(v, f, _REF_KEYS)
        ref_id = self.whole(v.get("id"), f"{f}.id", int(key), int(key))
        kind = self.one_of(v.get("kind"), f"{f}.kind", _REF_KINDS)
        session = self.known_session(v.get("session"), f"{f}.session")
        via = self.name(v.get("via"), f"{f}.via")
        if via not in self.trace._ssls:
            raise self.fail(f"{f}.via", f"no SSL {_show(via)} in the trace so far")
        released, dangling = self.flag(v, "released", f), self.flag(v, "dangling", f)
        if released and kind != "get1":
            raise self.fail(f"{f}.released", "only a get1 ref is released")
        return RefState(ref_id, kind, session, via, released, dangling)

    def cache(self, side: str, v: Any) -> CacheState:
        f = f"changes.caches.{side}"
        self.one_of(side, f, SIDES)
        v = self.obj(v, f, _CACHE_KEYS)
        if v.get("side") != side:
            raise self.fail(f"{f}.side", f"expected {_show(side)} (its key), got {_show(v.get('side'))}")
        size = self.whole(v.get("size"), f"{f}.size", 0, MAX_COUNT)
        stats = v.get("stats", {})
        if not isinstance(stats, Mapping):
            raise self.fail(f"{f}.stats", f"expected an object, got {_show(stats)}")
        for k, n in stats.items():
            if type(k) is not str or k not in STAT_NAMES:
                raise self.fail(
                    f"{f}.stats", f"unknown statistic {_show(k)} (known: {', '.join(STAT_NAMES)})"
                )
            self.whole(n, f"{f}.stats.{k}", 0, MAX_COUNT)
        has_members, has_edit = "members" in v, "edit" in v
        if has_members == has_edit:
            raise self.fail(f, "a cache has either members or an edit of the previous members")
        order = self.orders[side]
        if has_members:
            members = v["members"]
            if not isinstance(members, list):
                raise self.fail(f"{f}.members", f"expected a list, got {_show(members)}")
            for j, label in enumerate(members):
                self.known_session(label, f"{f}.members[{j}]")
            if len(set(members)) != len(members):
                raise self.fail(f"{f}.members", "a session is listed twice")
            new = self.orders[side] = _Order(tuple(members))
            state = CacheState(side, size, tuple(members), stats)
            touched = set(order.where) ^ set(new.where)
        else:
            edit = self.obj(v["edit"], f"{f}.edit", frozenset(("removed", "inserted")))
            removed, inserted = edit.get("removed", []), edit.get("inserted", [])
            if not isinstance(removed, list):
                raise self.fail(f"{f}.edit.removed", f"expected a list, got {_show(removed)}")
            if not isinstance(inserted, list):
                raise self.fail(f"{f}.edit.inserted", f"expected a list, got {_show(inserted)}")
            for j, label in enumerate(removed):
                self.known_session(label, f"{f}.edit.removed[{j}]")
                if label not in order:
                    raise self.fail(f"{f}.edit.removed[{j}]", f"{label} is not in the {side} cache")
                order.remove(label)
            pairs = []
            for j, pair in enumerate(inserted):
                g = f"{f}.edit.inserted[{j}]"
                if not isinstance(pair, list) or len(pair) != 2:
                    raise self.fail(g, f"expected [index, label], got {_show(pair)}")
                index = self.whole(pair[0], f"{g}[0]", 0, order.n)
                label = self.known_session(pair[1], f"{g}[1]")
                if label in order:
                    raise self.fail(f"{g}[1]", f"{label} is in the {side} cache already")
                order.insert(index, label)
                pairs.append((index, label))
            state = CacheState(side, size, (), stats, (tuple(removed), tuple(pairs)))
            touched = {*removed, *(label for _, label in pairs)}
        order = self.orders[side]
        if order.n != size:
            raise self.fail(f"{f}.size", f"{size}, but the cache has {order.n} members")
        sessions = self.trace._sessions
        for label in touched:
            if (sessions[label].cache == side) != (label in order):
                raise self.fail(
                    f,
                    f"{label} {'joins' if label in order else 'leaves'} it, but its session says cache "
                    f"{_show(sessions[label].cache)}",
                )
        self.trace._caches[side] = CacheState(side, size, (), stats)  # members: folded at the end
        return state


def _show(v: Any) -> str:
    """A short, safe rendering of a bad value for an error message."""
    text = repr(v) if isinstance(v, (str, bool, type(None))) else type(v).__name__
    if type(v) is float or (type(v) is int and v.bit_length() <= 64):
        text = repr(v)
    elif type(v) is int:
        text = f"a {v.bit_length()}-bit number"
    return text if len(text) <= 60 else text[:57] + "..."
