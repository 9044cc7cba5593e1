"""PURE: one step of a rolling update, decided from where the replicas are.

A Process with `strategy.type: RollingUpdate` whose running replicas include some started from another
revision (another hash of the restart fields) is rolled here instead of being restarted all at once. The
step is level-triggered: every pass it reads the replicas' records and the little the engine keeps between
passes (RolloutState: the target, when progress was last made, whether it failed), and returns actions
and the new state. It never remembers what it did.

Slots 0..N-1 are the pool's home slots; surge instances (maxSurge > 0: start-first) run in slots N..N+surge-1
and are stopped once every home slot runs the new revision and is available. Per pass:

1. old instances that do not serve (crash-looping, not ready) are stopped first: that costs nothing;
2. an empty home slot is started on the new revision while the total (stopping ones included: on one host
   they still hold memory) is under N + maxSurge; a surge slot is started while home slots still hold old
   instances and there is room;
3. old instances are stopped, highest slot first, while the available ones stay at least N - maxUnavailable;
4. surge instances are stopped under the same rule once every home slot is new and available;
5. complete when every home slot is new and available and nothing else runs.

Available: ready (past the readiness probe, or running without one) for minReadySeconds with no restart.
Progress (a new instance became available, an old one ended) resets the deadline; no progress for
progressDeadlineSeconds, or a new-revision replica that reached Failed, fails the rollout. What then happens
(rollback or pause) is the engine's and the daemon's to do: here a failed rollout just stops stepping.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from ..core.model import Kind, Phase, ProcessSpec, ReplicaId, ReplicaRecord, StrategyType
from .diff import RESTART_FIELDS, needs_restart
from .policy import Step, next_step

_HASHES: dict[int, tuple[ProcessSpec, str]] = {}  # id(spec) -> (spec, its hash): specs live long, and are frozen


def revision_hash(spec: ProcessSpec) -> str:
    """The rollout revision of a spec: a hash of the fields that need a restart (scaling never makes one)."""
    known = _HASHES.get(id(spec))
    if known is not None and known[0] is spec:
        return known[1]
    text = repr(tuple(getattr(spec, name) for name in RESTART_FIELDS))
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    if len(_HASHES) > 50_000:  # bounded: the specs of one desired state and its records, a few times over
        _HASHES.clear()
    _HASHES[id(spec)] = (spec, digest)
    return digest


def rolls(spec: ProcessSpec) -> bool:
    """Does a change of this spec roll (rather than restart every replica at once)?"""
    return spec.kind is Kind.PROCESS and spec.strategy.type is StrategyType.ROLLING_UPDATE and not spec.stopped


def _count(value: int | str | None, replicas: int, round_up: bool) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    share = replicas * int(value.rstrip("%")) / 100
    return math.ceil(share) if round_up else math.floor(share)


def surge_and_unavailable(spec: ProcessSpec, replicas: int | None = None) -> tuple[int, int]:
    """maxSurge (rounded up) and maxUnavailable (rounded down) as counts. Defaults: start-first (1, 0) for a
    process with sockets (old and new share the accept queue), else stop-first one at a time (0, 1). Both 0
    is refused at validation; a percentage that rounds both to 0 at run time means (0, 1), as in Kubernetes."""
    n = spec.replicas if replicas is None else replicas
    surge = _count(spec.strategy.max_surge, n, True)
    unavailable = _count(spec.strategy.max_unavailable, n, False)
    default_surge, default_unavailable = (1, 0) if spec.sockets else (0, 1)
    if surge is None:  # the default, unless the unavailable one given leaves no way to move (0 and 0)
        surge = default_surge if unavailable is None or unavailable > 0 else 1
    if unavailable is None:
        unavailable = default_unavailable if surge > 0 else 1
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


class Failure(str, Enum):
    DEADLINE = "ProgressDeadlineExceeded"
    NEW_REPLICA_FAILED = "NewReplicaFailed"


@dataclass(frozen=True)
class RolloutState:
    """What the engine keeps about one process's rollout between passes (facts, not decisions)."""

    target: str  # revision_hash of the spec rolled to
    started_at: float  # monotonic
    progress_at: float  # monotonic: the last progress (or the start, or a resume)
    mark: tuple[int, int] = (0, 0)  # (new instances available, old instances left) at the last progress
    failed: str = ""  # a Failure value once it failed: it no longer steps
    rollback: bool = False  # an automatic rollback: if it fails too, nothing more is done by itself
    source: str = ""  # revision_hash it rolled from (the old instances' newest), for messages


class NoteKind(str, Enum):
    STARTED = "RolloutStarted"
    PROGRESS = "ReplicaAvailable"
    COMPLETE = "RolloutComplete"
    FAILED = "RolloutFailed"


@dataclass(frozen=True)
class Note:
    key: str
    kind: NoteKind
    message: str
    reason: str = ""  # FAILED: the Failure


@dataclass(frozen=True)
class Progress:
    """Where a rollout is, for status and `rollout status`."""

    replicas: int
    updated: int  # new-revision instances that run
    available: int  # new-revision instances that are available
    old: int  # old-revision instances that still run


@dataclass
class RollingStep:
    """What one rolling step decided (the planner folds it into its Plan)."""

    stops: list[tuple[ReplicaId, ReplicaRecord]] = field(default_factory=list)
    starts: list[tuple[ReplicaId, ProcessSpec]] = field(default_factory=list)
    waiting: list[tuple[ReplicaId, Phase, float | None, str]] = field(default_factory=list)
    wake: list[float] = field(default_factory=list)
    state: RolloutState | None = None
    notes: list[Note] = field(default_factory=list)
    progress: Progress | None = None


def available(spec: ProcessSpec, record: ReplicaRecord, now: float) -> bool:
    """Ready for minReadySeconds, with no restart and no stop in that time."""
    if record.process is None or record.stop_requested_at is not None or record.unhealthy or not record.ready:
        return False
    since = record.ready_since if record.ready_since is not None else record.started_at
    return since is not None and now - since >= spec.strategy.min_ready_seconds


def _serving(record: ReplicaRecord) -> bool:
    return record.process is not None and record.stop_requested_at is None and record.ready and not record.unhealthy


def available_at(spec: ProcessSpec, record: ReplicaRecord) -> float | None:
    """When a ready instance becomes available (None when it is not ready)."""
    if record.process is None or record.stop_requested_at is not None or not record.ready:
        return None
    since = record.ready_since if record.ready_since is not None else record.started_at
    return None if since is None else since + spec.strategy.min_ready_seconds


def is_old(spec: ProcessSpec, record: ReplicaRecord) -> bool:
    return needs_restart(record.spec, spec)


def needs_rolling(spec: ProcessSpec, replicas: Mapping[int, ReplicaRecord], state: RolloutState | None) -> bool:
    """Is a rollout under way: a rolling spec with a live instance of another revision (or one in flight)?"""
    if not rolls(spec):
        return False
    if state is not None:
        return True
    return any(record.process is not None and is_old(spec, record) for record in replicas.values())


def step(
    spec: ProcessSpec,
    replicas: Mapping[int, ReplicaRecord],
    state: RolloutState | None,
    now: float,
    paused: bool = False,
    blocked: Callable[[], str | None] = lambda: None,
) -> RollingStep:
    """One rolling step for the replicas of `spec` (index -> record). See the module's docstring."""
    out = RollingStep()
    key = spec.key
    n = spec.wanted_replicas()
    surge, unavailable = surge_and_unavailable(spec, n)
    target = revision_hash(spec)
    if state is None or state.target != target:
        sources = sorted({revision_hash(r.spec) for r in replicas.values() if r.process is not None and is_old(spec, r)})
        source = ",".join(sources)
        what = "rollover" if state is not None and not state.failed else "rollout"
        state = RolloutState(target=target, started_at=now, progress_at=now, source=source)
        out.notes.append(Note(key, NoteKind.STARTED, f"{what} from {source or 'nothing'} to {target}: "
                              f"maxSurge {surge}, maxUnavailable {unavailable}"))

    def live(record: ReplicaRecord | None) -> bool:
        return record is not None and (record.process is not None or record.hook is not None)

    # One walk over the replicas (this runs for every rolling process on every pass).
    old: dict[int, bool] = {}
    avail: set[int] = set()
    old_live: list[int] = []
    total = updated = new_avail_home = new_available = 0
    for index, record in replicas.items():
        is_older = old[index] = is_old(spec, record)
        running = record.process is not None
        if running or record.hook is not None:
            total += 1
            if not is_older and record.stop_requested_at is None:
                updated += 1
        if not running:
            continue
        if is_older:
            if record.stop_requested_at is None:
                old_live.append(index)
                # Old instances count as available once ready: minReadySeconds is the proof asked of a new
                # revision, and one applied just after the first start must not find its young, serving
                # replicas "unavailable".
                if record.ready and not record.unhealthy:
                    avail.add(index)
        elif available(spec, record, now):
            avail.add(index)
            new_available += 1
            new_avail_home += index < n
        else:
            at = available_at(spec, record)  # wake when a ready new instance becomes available
            if at is not None and at > now:
                out.wake.append(at)
    out.progress = Progress(n, updated, new_available, len(old_live))

    # Failure: a new-revision instance that reached Failed, or no progress within the deadline.
    if not state.failed and not paused:
        for index, record in sorted(replicas.items()):
            if (record.process is None and record.last_exit is not None and not old[index]
                    and next_step(spec, record).step is Step.FAILED):
                state = _failed(out, key, state, Failure.NEW_REPLICA_FAILED,
                                f"replica {index} of revision {target} failed: {next_step(spec, record).why}")
                break
    mark = (new_available, len(old_live))
    if not state.failed and not paused:
        if mark[0] > state.mark[0] or mark[1] < state.mark[1]:
            if mark[0] > state.mark[0] and state.progress_at != now:
                out.notes.append(Note(key, NoteKind.PROGRESS, f"{new_available} of {n} updated replicas are available"))
            state = replace(state, progress_at=now, mark=mark)
        elif mark != state.mark:  # backwards (a new instance stopped being available): no progress, remembered
            state = replace(state, mark=mark)
        deadline = state.progress_at + spec.strategy.progress_deadline_seconds
        if now >= deadline:
            state = _failed(out, key, state, Failure.DEADLINE,
                            f"no progress for {spec.strategy.progress_deadline_seconds:g} s "
                            f"({new_available} of {n} updated replicas available)")
        else:
            out.wake.append(deadline)

    if state.failed or paused:
        # Hold the mix as it is: an instance that ends is started again on the revision it ran.
        _keep_mix(spec, replicas, n + surge, now, out)
        out.state = state
        return out

    # 1. Old instances that do not serve (not ready, unhealthy) go first: that costs no availability.
    stopping = set()
    for index in sorted(old_live, reverse=True):
        if index not in avail:
            out.stops.append((ReplicaId(key, index), replicas[index]))
            stopping.add(index)
    # 2. Starts on the new revision: empty home slots, then surge slots while old instances remain.
    gate = blocked() if any(not live(replicas.get(i)) for i in range(n + surge)) else None
    for index in range(n):
        slot = replicas.get(index)
        if live(slot):
            continue
        if total >= n + surge:
            out.waiting.append((ReplicaId(key, index), Phase.PENDING, None,
                                f"rolling update: waiting for room (maxSurge {surge})"))
            continue
        if not _may_start(spec, slot, now, out, ReplicaId(key, index), gate):
            continue
        out.starts.append((ReplicaId(key, index), spec))
        total += 1
    old_home = sum(1 for i in old_live if i < n and i not in stopping)
    surge_live = [i for i, r in replicas.items() if i >= n and live(r)]
    for index in range(n, n + surge):
        if len(surge_live) >= min(surge, old_home) or total >= n + surge:
            break
        slot = replicas.get(index)
        if live(slot) or not _may_start(spec, slot, now, out, ReplicaId(key, index), gate):
            continue
        out.starts.append((ReplicaId(key, index), spec))
        surge_live.append(index)
        total += 1
    # 3. Old available instances, highest slot first, while enough stay available.
    floor = n - unavailable
    count = len(avail - stopping)
    for index in sorted((i for i in old_live if i not in stopping), reverse=True):
        if count - 1 < floor:
            break
        out.stops.append((ReplicaId(key, index), replicas[index]))
        stopping.add(index)
        count -= 1
    # 4. Surge instances, once every home slot is new and available (or they are of no use any more).
    home_done = new_avail_home == n
    for index in sorted((i for i in surge_live if i in replicas), reverse=True):
        record = replicas[index]
        if record.process is None or record.stop_requested_at is not None or index in stopping:
            continue
        if not home_done and not old.get(index, False):
            continue
        if index in avail and count - 1 < floor:
            continue
        out.stops.append((ReplicaId(key, index), record))
        count -= index in avail
    # Surge slots above the surge (a smaller maxSurge, a scale-down) are stopped too.
    for index, record in replicas.items():
        if index >= n + surge and record.process is not None and record.stop_requested_at is None:
            out.stops.append((ReplicaId(key, index), record))
    # 5. Complete: every home slot new and available, nothing else left.
    others = [i for i, r in replicas.items() if live(r) and (i >= n or old[i])]
    if home_done and not others and not out.stops and not out.starts:
        out.notes.append(Note(key, NoteKind.COMPLETE, f"rollout to {target} complete: {n} of {n} replicas available"))
        out.state = None
        return out
    out.state = state
    return out


def _may_start(spec: ProcessSpec, record: ReplicaRecord | None, now: float, out: RollingStep, rid: ReplicaId,
               gate: str | None) -> bool:
    """May this empty slot start on the new revision now (its backoff, if it last ran as this revision)?"""
    if record is not None and record.last_exit is not None and not is_old(spec, record):
        nxt = next_step(spec, record)
        if nxt.step is Step.FAILED:
            out.waiting.append((rid, Phase.FAILED, None, nxt.why))
            return False
        if nxt.step is Step.SUCCEEDED:
            out.waiting.append((rid, Phase.SUCCEEDED, None, nxt.why))
            return False
        if nxt.at > now:
            out.waiting.append((rid, Phase.BACKOFF, nxt.at, nxt.why))
            out.wake.append(nxt.at)
            return False
    if gate is not None:
        out.waiting.append((rid, Phase.WAITING, None, gate))
        return False
    return True


def _keep_mix(spec: ProcessSpec, replicas: Mapping[int, ReplicaRecord], limit: int, now: float, out: RollingStep) -> None:
    """A paused or failed rollout: instances that end start again as the revision they ran (within the slots)."""
    for index, record in sorted(replicas.items()):
        if index >= limit or record.process is not None or record.hook is not None or record.last_exit is None:
            continue
        runs_as = record.spec if is_old(spec, record) else spec
        nxt = next_step(runs_as, record)
        rid = ReplicaId(spec.key, index)
        if nxt.step is Step.FAILED:
            out.waiting.append((rid, Phase.FAILED, None, nxt.why))
        elif nxt.step is Step.SUCCEEDED:
            out.waiting.append((rid, Phase.SUCCEEDED, None, nxt.why))
        elif nxt.at > now:
            out.waiting.append((rid, Phase.BACKOFF, nxt.at, nxt.why))
            out.wake.append(nxt.at)
        else:
            out.starts.append((rid, runs_as))


def _failed(out: RollingStep, key: str, state: RolloutState, failure: Failure, message: str) -> RolloutState:
    out.notes.append(Note(key, NoteKind.FAILED, message, failure.value))
    return replace(state, failed=failure.value)
