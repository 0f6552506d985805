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
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

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


@dataclass(frozen=True)
class SessionState:
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


@dataclass(frozen=True)
class SSLState:
    """One SSL object: which session it points at (``s->session``), if any."""

    name: str
    side: str
    session: str | None = None
    freed: bool = False
    sent_shutdown: bool = False
    cleared: bool = False


@dataclass(frozen=True)
class RefState:
    """A pointer the user holds: ``get0`` (borrowed) or ``get1`` (owns +1)."""

    id: int
    kind: str
    session: str
    via: str
    released: bool = False
    dangling: bool = False


@dataclass(frozen=True)
class CacheState:
    """An SSL_CTX internal session cache.

    ``members`` are labels in OpenSSL's list order: the head (latest expiry)
    first, the tail -- next to be evicted or flushed -- last.
    """

    side: str
    size: int = 0
    members: tuple[str, ...] = ()
    stats: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_NAMES, 0))

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        object.__setattr__(self, "stats", MappingProxyType(dict(self.stats)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CacheState):
            return NotImplemented
        return (self.side, self.size, self.members, dict(self.stats)) == (
            other.side,
            other.size,
            other.members,
            dict(other.stats),
        )

    def __hash__(self) -> int:
        return hash((self.side, self.size, self.members))


@dataclass(frozen=True)
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
            d["sessions"] = {k: _compact(asdict(v)) for k, v in self.sessions.items()}
        if self.ssls:
            d["ssls"] = {k: _compact(asdict(v)) for k, v in self.ssls.items()}
        if self.caches:
            d["caches"] = {k: _cache_dict(v) for k, v in self.caches.items()}
        if self.refs:
            d["refs"] = {str(k): _compact(asdict(v)) for k, v in self.refs.items()}
        if self.time is not None:
            d["time"] = self.time
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Delta:
        return cls(
            sessions={k: SessionState(**v) for k, v in d.get("sessions", {}).items()},
            ssls={k: SSLState(**v) for k, v in d.get("ssls", {}).items()},
            caches={k: CacheState(**v) for k, v in d.get("caches", {}).items()},
            refs={int(k): RefState(**v) for k, v in d.get("refs", {}).items()},
            time=d.get("time"),
        )


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    # Drop default-valued flags so a step stays small on the wire.
    return {k: v for k, v in d.items() if not (v is False or v is None) or k in ("label", "name")}


def _cache_dict(c: CacheState) -> dict[str, Any]:
    return {"side": c.side, "size": c.size, "members": list(c.members), "stats": dict(c.stats)}


@dataclass(frozen=True)
class Snapshot:
    """Everything alive (and everything freed) at one step."""

    time: int = 0
    sessions: Mapping[str, SessionState] = field(default_factory=dict)
    caches: Mapping[str, CacheState] = field(default_factory=lambda: {s: CacheState(side=s) for s in SIDES})
    ssls: Mapping[str, SSLState] = field(default_factory=dict)
    refs: Mapping[int, RefState] = field(default_factory=dict)

    def apply(self, delta: Delta) -> Snapshot:
        """The snapshot after ``delta``."""
        return Snapshot(
            time=self.time if delta.time is None else delta.time,
            sessions={**self.sessions, **delta.sessions},
            caches={**self.caches, **delta.caches},
            ssls={**self.ssls, **delta.ssls},
            refs={**self.refs, **delta.refs},
        )

    def live_sessions(self) -> dict[str, SessionState]:
        return {k: v for k, v in self.sessions.items() if not v.freed}


@dataclass(frozen=True)
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
        self._last: Snapshot | None = empty

    # -- recording ---------------------------------------------------------
    def append(self, op: str, target: str, why: str, changes: Delta, result: str | None = None) -> Step:
        step = Step(len(self._steps), op, target, why, changes, result)
        self._steps.append(step)
        if changes.time is not None:
            self._time = changes.time
        self._sessions.update(changes.sessions)
        self._ssls.update(changes.ssls)
        self._caches.update(changes.caches)
        self._refs.update(changes.refs)
        self._last = None
        return step

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
        return iter(self._steps)

    def __getitem__(self, i: int) -> Step:
        return self._steps[i]

    @property
    def steps(self) -> list[Step]:
        return list(self._steps)

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
            "steps": [s.to_dict() for s in self._steps],
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
        return self.meta == other.meta and self._steps == other._steps

    def __repr__(self) -> str:
        return f"<Trace {len(self)} steps, engine={self.meta.get('engine')!r}>"
