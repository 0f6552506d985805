"""Plain data for what sesskit saw: snapshots, steps and traces (standard library only).

A :class:`Trace` is the story of one :class:`~sesskit.Lab`: one :class:`Step` per
operation.  A step stores only what the operation *changed* (a :class:`Delta`);
the full :class:`Snapshot` at any step is rebuilt on demand by folding deltas,
with a checkpoint every few steps so scrubbing a long history stays cheap.

Everything here is immutable, JSON-serialisable and needs no OpenSSL: a trace
saved by a real engine loads and plots anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = [
    "TRACE_FORMAT",
    "CacheState",
    "Delta",
    "RefState",
    "SSLState",
    "SessionState",
    "Snapshot",
    "Step",
    "Trace",
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
    members = list(previous)
    for label in edit[0]:
        members.remove(label)
    for index, label in edit[1]:
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
    """One operation: ``op`` is the C function's name, ``target`` what it acted on."""

    index: int
    op: str
    target: str
    why: str
    changes: Delta
    result: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "op": self.op, "target": self.target}
        d["why"] = self.why
        if self.result is not None:
            d["result"] = self.result
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
        )


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
        self._steps[index] = Step(step.index, step.op, step.target, why, step.changes, step.result)

    def _explained(self) -> list[Step]:
        explain = self._unexplained
        if explain is not None:
            self._unexplained = None
            explain()
        return self._steps

    # -- recording ---------------------------------------------------------
    def append(self, op: str, target: str, why: str, changes: Delta, result: str | None = None) -> Step:
        stored = self._compact(changes)
        step = Step(len(self._steps), op, target, why, stored, result)
        self._steps.append(step)
        if changes.time is not None:
            self._time = changes.time
        self._sessions.update(changes.sessions)
        self._ssls.update(changes.ssls)
        for side, c in changes.caches.items():
            previous = self._caches[side]
            full = c.after(previous.members)
            self._caches[side] = full
            edit = stored.caches[side].edit
            if edit is not None:
                members = self._members[side]
                members.difference_update(edit[0])
                members.update(label for _, label in edit[1])
            elif full.members is not previous.members and full.members != previous.members:
                self._members[side] = set(full.members)
        self._refs.update(changes.refs)
        self._last = None
        return step

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
        if d.get("format") != TRACE_FORMAT:
            raise ValueError(f"not a sesskit trace of format {TRACE_FORMAT}: format={d.get('format')!r}")
        trace = cls(d.get("meta"))
        for s in d["steps"]:
            step = Step.from_dict(s)
            trace.append(step.op, step.target, step.why, step.changes, step.result)
        return trace

    @classmethod
    def from_json(cls, text: str) -> Trace:
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return self.meta == other.meta and self._explained() == other._explained()

    def __repr__(self) -> str:
        return f"<Trace {len(self)} steps, engine={self.meta.get('engine')!r}>"
