"""PURE: (desired, records, now) -> Plan(actions, waiting, wake_at).

The whole decision of the reconciler, as a function: no I/O, no clock of its own, no memory between
calls. It compares every desired replica with what the records say runs now and returns small, ordered
actions: starts in dependency order (higher priority first within a generation), stops of what changed or
is no longer wanted (dependents before their dependencies), SIGKILLs of stops that ran past their
timeout, and records to forget. Replicas that must wait (backoff, dependencies) are listed with the time
they want to be woken, so waiting is planned, never slept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from ..core.model import (
    Condition,
    DesiredState,
    Hook,
    HookKind,
    Kind,
    Phase,
    ProcessIdentity,
    ProcessSpec,
    ReplicaId,
    ReplicaRecord,
)
from .diff import needs_restart
from .policy import Step, deadline_at, is_ready, next_step
from .rollout import Note, Progress, RollingStep, RolloutState, needs_rolling, rolls
from .rollout import step as rolling_step

NO_ROLLOUTS: Mapping[str, RolloutState] = MappingProxyType({})


class StopReason(str, Enum):
    REMOVED = "Removed"  # no longer in the desired state (prune, delete, shutdown)
    SPEC_CHANGED = "SpecChanged"  # a field that needs a restart changed
    SCALED_DOWN = "ScaledDown"
    RESTART = "Restart"  # asked for by `orchestrator restart`
    UNHEALTHY = "Unhealthy"  # its liveness or startup probe failed: the exit counts as a crash
    DEPENDENCY_RESTARTED = "DependencyRestarted"  # restartWithDependency, and a dependency started anew
    HELD = "Held"  # `orchestrator stop`: held stopped until `orchestrator start`
    ROLLOUT = "Rollout"  # a rolling update no longer needs it (a surge instance, once the pool is new)
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # a Job past its activeDeadlineSeconds: it ends Failed


@dataclass(frozen=True)
class Start:
    replica: ReplicaId
    spec: ProcessSpec


@dataclass(frozen=True)
class Stop:
    replica: ReplicaId
    process: ProcessIdentity
    signal: str
    timeout_seconds: float
    reason: StopReason


@dataclass(frozen=True)
class Kill:
    """A stop ran past its timeout: SIGKILL the whole process group."""

    replica: ReplicaId
    process: ProcessIdentity


@dataclass(frozen=True)
class KillHook:
    """A lifecycle hook ran past its timeout: SIGKILL its process group (it then counts as failed)."""

    replica: ReplicaId
    process: ProcessIdentity


@dataclass(frozen=True)
class Forget:
    """A replica that is no longer desired and no longer runs: drop its record."""

    replica: ReplicaId


Action = Start | Stop | Kill | KillHook | Forget


@dataclass(frozen=True)
class Waiting:
    """A replica that is not running and will not be started in this pass, and why."""

    replica: ReplicaId
    phase: Phase  # BACKOFF, WAITING, SUCCEEDED or FAILED
    until: float | None  # monotonic time it will be tried again, None when not planned
    reason: str


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    waiting: tuple[Waiting, ...]
    wake_at: float | None  # the earliest time the plan may change without an event
    # Rollouts (planning/rollout.py): the new state of each key whose rollout changed (None: it ended), what
    # happened in words, and where each rollout under way stands.
    rollouts: Mapping[str, RolloutState | None] = field(default_factory=dict)
    notes: tuple[Note, ...] = ()
    progress: Mapping[str, Progress] = field(default_factory=dict)

    @property
    def starts(self) -> int:
        return sum(1 for a in self.actions if isinstance(a, Start))


def plan(desired: DesiredState, records: Mapping[ReplicaId, ReplicaRecord], now: float,
         rollouts: Mapping[str, RolloutState] = NO_ROLLOUTS, paused: frozenset[str] = frozenset(),
         held: Mapping[str, str] | None = None) -> Plan:
    """`rollouts`: the state of each rollout under way (as the last plan left it); `paused`: keys whose
    rollout is paused (`orchestrator rollout pause`); `held`: keys not to be started now, and why (Jobs a
    queue has not admitted yet): what of them runs goes on."""
    actions: list[Action] = []
    waiting: list[Waiting] = []
    wake: list[float] = []
    by_key: dict[str, list[tuple[ReplicaId, ReplicaRecord]]] = {}
    for rid, record in records.items():
        by_key.setdefault(rid.key, []).append((rid, record))
    # Keys rolled one step at a time instead of restarted at once: a rolling spec with instances of another
    # revision running. Everything of theirs (surge slots, stops of old instances) is the rollout's.
    rolling: dict[str, dict[int, ReplicaRecord]] = {}
    updates: dict[str, RolloutState | None] = {}
    for key, replicas in by_key.items():
        spec = desired.specs.get(key)
        if spec is not None and rolls(spec):
            of_key = {rid.index: record for rid, record in replicas}
            if needs_rolling(spec, of_key, rollouts.get(key)):
                rolling[key] = of_key
    for key in rollouts:
        if key not in rolling:
            updates[key] = None  # removed, no longer rolling (Recreate, held stopped), or nothing of it runs

    # Stops come first: end overdue hooks, escalate overdue stops, then stop what is unwanted, dependents
    # before dependencies.
    for rid, record in records.items():
        if record.process is not None and record.over_memory and not record.killed:
            actions.append(Kill(rid, record.process))  # like the kernel's OOM killer: no grace period
        # (A preStart hook of something no longer wanted is killed at once, below, not at its timeout.)
        unwanted_pre_start = record.process is None and rid.key not in desired.specs
        if record.hook is not None and not record.hook_killed and not unwanted_pre_start:
            deadline = _hook_deadline(desired, rid, record)
            if now >= deadline:
                actions.append(KillHook(rid, record.hook))
            else:
                wake.append(deadline)
        if record.process is not None and record.stop_requested_at is not None:
            deadline = record.stop_requested_at + record.spec.shutdown.timeout_seconds
            if record.killed:
                continue
            if now >= deadline:
                actions.append(Kill(rid, record.process))
            else:
                wake.append(deadline)
    actions.extend(_stops_of_unwanted(desired, records, by_key, rolling))

    conditions: dict[tuple[str, Condition], str | None] = {}

    def blocked_by(spec: ProcessSpec) -> str | None:
        """What the first unmet dependency awaits, or None; asked only for replicas about to start."""
        for dep in spec.depends_on:
            dep_key = spec.dependency_key(dep)
            memo = (dep_key, dep.condition)
            if memo not in conditions:
                conditions[memo] = _unmet(desired.specs[dep_key], dep.condition, records)
            if conditions[memo] is not None:
                return conditions[memo]
        return None

    notes: list[Note] = []
    progress: dict[str, Progress] = {}
    for key in desired.start_order:
        spec = desired.specs[key]
        if key in rolling:
            decided = _roll(spec, rolling[key], rollouts.get(key), now, key in paused, blocked_by, actions, waiting,
                            wake)
            if decided.state != rollouts.get(key):
                updates[key] = decided.state
            notes.extend(decided.notes)
            if decided.progress is not None and decided.state is not None:
                progress[key] = decided.progress
            continue
        for index in range(spec.wanted_replicas()):
            rid = ReplicaId(key, index)
            current = records.get(rid)
            if current is not None and current.process is None and current.hook is not None:
                waiting.append(Waiting(rid, Phase.PENDING, None, "running its preStart hook"))
                continue
            if current is not None and current.process is not None:
                # A process is stopped the way the spec it was started from says (signal and timeout):
                # that is the program that runs, whatever the new spec says.
                running_as = current.spec.shutdown
                if current.stop_requested_at is None and needs_restart(current.spec, spec):
                    actions.append(Stop(rid, current.process, running_as.signal, running_as.timeout_seconds,
                                        StopReason.SPEC_CHANGED))
                elif current.stop_requested_at is None and current.unhealthy:
                    actions.append(Stop(rid, current.process, running_as.signal, running_as.timeout_seconds,
                                        StopReason.UNHEALTHY))
                elif (current.stop_requested_at is None and spec.restart_with_dependency
                      and _dependency_restarted(spec, current, desired, records)):
                    actions.append(Stop(rid, current.process, running_as.signal, running_as.timeout_seconds,
                                        StopReason.DEPENDENCY_RESTARTED))
                elif current.stop_requested_at is None and (due := deadline_at(spec, current)) is not None:
                    if now >= due:
                        actions.append(Stop(rid, current.process, running_as.signal, running_as.timeout_seconds,
                                            StopReason.DEADLINE_EXCEEDED))
                    else:
                        wake.append(due)
                continue
            if current is not None and current.last_exit is not None and not needs_restart(current.spec, spec):
                step = next_step(spec, current)
                if step.step is Step.SUCCEEDED:
                    waiting.append(Waiting(rid, Phase.SUCCEEDED, None, step.why))
                    continue
                if step.step is Step.FAILED:
                    waiting.append(Waiting(rid, Phase.FAILED, None, step.why))
                    continue
                if step.at > now:
                    waiting.append(Waiting(rid, Phase.BACKOFF, step.at, step.why))
                    wake.append(step.at)
                    continue
            blocked = blocked_by(spec) if spec.depends_on else None
            if blocked is not None:
                waiting.append(Waiting(rid, Phase.WAITING, None, blocked))
                continue
            if held and spec.key in held:
                waiting.append(Waiting(rid, Phase.WAITING, None, held[spec.key]))
                continue
            actions.append(Start(rid, spec))
    return Plan(tuple(actions), tuple(waiting), min(wake) if wake else None, updates, tuple(notes), progress)


def _roll(spec: ProcessSpec, replicas: Mapping[int, ReplicaRecord], state: RolloutState | None, now: float,
          paused: bool, blocked_by: Callable[[ProcessSpec], str | None], actions: list[Action],
          waiting: list[Waiting], wake: list[float]) -> RollingStep:
    """One rolling step of `spec` (planning/rollout.py), folded into the plan's actions, waits and wake-ups."""
    decided = rolling_step(spec, replicas, state, now, paused,
                           (lambda: blocked_by(spec)) if spec.depends_on else (lambda: None))
    stopping = set()
    for rid, record in decided.stops:
        assert record.process is not None
        shutdown = record.spec.shutdown  # as the spec it runs under says (see above)
        reason = StopReason.SPEC_CHANGED if needs_restart(record.spec, spec) else StopReason.ROLLOUT
        actions.append(Stop(rid, record.process, shutdown.signal, shutdown.timeout_seconds, reason))
        stopping.add(rid.index)
    for index, record in sorted(replicas.items()):
        rid = ReplicaId(spec.key, index)
        if record.process is None and record.hook is not None:
            waiting.append(Waiting(rid, Phase.PENDING, None, "running its preStart hook"))
        elif (record.process is not None and index not in stopping and record.stop_requested_at is None
              and record.unhealthy):
            shutdown = record.spec.shutdown
            actions.append(Stop(rid, record.process, shutdown.signal, shutdown.timeout_seconds, StopReason.UNHEALTHY))
    actions.extend(Start(rid, runs_as) for rid, runs_as in decided.starts)
    waiting.extend(Waiting(rid, phase, until, why) for rid, phase, until, why in decided.waiting)
    wake.extend(decided.wake)
    return decided


def _stops_of_unwanted(
    desired: DesiredState,
    records: Mapping[ReplicaId, ReplicaRecord],
    by_key: Mapping[str, list[tuple[ReplicaId, ReplicaRecord]]],
    rolling: Mapping[str, object],
) -> list[Action]:
    """Stop or forget replicas that are removed or scaled away.

    A removed process is stopped only once nothing that depends on it still runs, so a whole stack is
    stopped in reverse dependency order over a few passes (each pass after an exit).
    """
    removed = [key for key in by_key if key not in desired.specs]
    # Which keys are still needed, directly or through other processes, by a key with a live process
    # (following the spec each key runs under). Only removed keys ask, so the walk is skipped without one.
    specs = {key: desired.specs.get(key) or replicas[0][1].spec for key, replicas in by_key.items()} if removed else {}
    held_by: dict[str, set[str]] = {}
    for key, replicas in by_key.items() if removed else ():
        if not any(record.process is not None for _, record in replicas):
            continue
        stack = [key]
        seen = {key}
        while stack:
            spec = specs.get(stack.pop())
            if spec is None:
                continue
            for dep in spec.depends_on:
                dep_key = spec.dependency_key(dep)
                if dep_key not in seen:
                    seen.add(dep_key)
                    held_by.setdefault(dep_key, set()).add(key)
                    stack.append(dep_key)

    actions: list[Action] = []
    for key in sorted(by_key):
        spec = desired.specs.get(key)
        replicas = by_key[key]
        if spec is not None and all(rid.index < spec.wanted_replicas() for rid, _ in replicas):
            continue  # the common case: nothing of this key is unwanted
        if key in rolling:
            continue  # its surge slots are the rollout's to stop
        for rid, record in sorted(replicas, key=lambda item: -item[0].index):
            if spec is not None and rid.index < spec.wanted_replicas():
                continue
            if spec is None and held_by.get(key, set()) - {key}:
                # Something that depends on it still runs: stop that first, and keep this record
                # until then, since its spec links the chain of dependencies.
                continue
            if record.process is None and record.hook is not None:
                if not record.hook_killed:  # a preStart hook of something no longer wanted
                    actions.append(KillHook(rid, record.hook))
                continue  # forgotten once the hook has ended
            if record.process is None:
                if spec is not None and spec.stopped:
                    continue  # held: kept (restarts, last exit, its slot's age) for when it starts again
                actions.append(Forget(rid))
                continue
            if record.stop_requested_at is not None:
                continue
            shutdown = record.spec.shutdown  # as the spec it runs under says (see above)
            reason = (StopReason.REMOVED if spec is None else StopReason.HELD if spec.stopped
                      else StopReason.SCALED_DOWN)
            actions.append(Stop(rid, record.process, shutdown.signal, shutdown.timeout_seconds, reason))
    return actions


def _dependency_restarted(
    spec: ProcessSpec, record: ReplicaRecord, desired: DesiredState, records: Mapping[ReplicaId, ReplicaRecord]
) -> bool:
    """Did a dependency start a process after this one started? (Level-triggered: compare start times.)"""
    if record.started_at is None:
        return False
    for dep in spec.depends_on:
        dep_spec = desired.specs.get(spec.dependency_key(dep))
        if dep_spec is None:
            continue
        for index in range(dep_spec.replicas):
            other = records.get(ReplicaId(dep_spec.key, index))
            # A live process, in a slot that existed when this one started: a dependency that failed to
            # start again has not restarted, and a replica added by scaling up is not a restart.
            if (other is not None and other.process is not None and other.started_at is not None
                    and other.started_at > record.started_at
                    and other.slot_since is not None and other.slot_since <= record.started_at):
                return True
    return False


def _hook_deadline(desired: DesiredState, rid: ReplicaId, record: ReplicaRecord) -> float:
    """When a running hook must end: its timeout (a preStart hook's from the spec about to start, the others'
    from the spec the process runs under); a preStop hook also ends with the shutdown timeout."""
    kind = record.hook_kind or HookKind.PRE_START
    spec = desired.specs.get(rid.key, record.spec) if kind is HookKind.PRE_START else record.spec
    hook = spec.hooks.of(kind)
    started = record.hook_started_at or 0.0
    deadline = started + (hook.timeout_seconds if hook is not None else Hook.timeout_seconds)
    if kind is HookKind.PRE_STOP and record.stop_requested_at is not None:
        deadline = min(deadline, record.stop_requested_at + record.spec.shutdown.timeout_seconds)
    return deadline


def _unmet(dep: ProcessSpec, condition: Condition, records: Mapping[ReplicaId, ReplicaRecord]) -> str | None:
    """None when `condition` holds for every replica of `dep`, else what is awaited, in words.

    `ready` means past the readiness probe (running, without one). A Job is started while it runs or once
    it succeeded.
    """
    if dep.stopped:
        return f"{dep.name} is stopped (orchestrator start {dep.name} runs it)"
    for index in range(dep.replicas):
        record = records.get(ReplicaId(dep.key, index))
        if record is None or needs_restart(record.spec, dep):
            return f"waiting for {dep.name} to {_WORDS[condition]}"
        running = record.process is not None and record.stop_requested_at is None
        if condition is Condition.READY:
            running = is_ready(dep, record)
        finished = next_step(dep, record).step if record.process is None and record.last_exit else None
        if finished is Step.FAILED:
            return f"{dep.name} failed and will not be restarted"
        if finished is Step.SUCCEEDED:
            continue
        if condition is Condition.COMPLETED or (dep.kind is Kind.JOB and condition is Condition.READY):
            return f"waiting for {dep.name} to complete"
        if not running:
            return f"waiting for {dep.name} to {_WORDS[condition]}"
    return None


_WORDS = {Condition.STARTED: "start", Condition.READY: "be ready", Condition.COMPLETED: "complete"}
