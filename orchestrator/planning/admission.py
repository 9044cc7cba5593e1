"""PURE: which Jobs of a Queue start, resume or are preempted now: admission by priority class under a
concurrency and resource budget, FIFO within a class, aging against starvation. No clock, no I/O.

Admission order is by effective priority (highest first), then suspended before waiting (a frozen Job already
holds its memory and has done work), then by arrival, then by key. The effective priority of a waiting or
suspended Job is its class plus one level per agingSecondsPerLevel waited (since it arrived, or since it was
last suspended or requeued: time spent running is not waiting), capped at High: aging lets any Job overtake
a stream of later High ones (a tie at High goes to the earlier arrival), but never a real Critical, which
stays the operator's way to say "before everything".

Order is strict (Kubernetes' and Nomad's default: no backfill): the first Job in order that does not fit
blocks every Job after it, even a smaller one that would fit, so that a big Job is not starved by a stream of
small ones. A Job that can never fit (fits_ever) is passed over instead of blocking the queue forever: it is
refused at validation, but a capacity can shrink under a queued Job.

Preemption (Suspend or Requeue), only for the blocked first Job: victims are running Jobs of a strictly lower
class (classes as given, never aged: aging must not start a preemption war), lowest class first, then the
latest started (the least work lost), then by key; the fewest that make it fit (as many as needed in that
order, then those not needed after all reprieved, most protected first, as the Kubernetes scheduler does),
and none when even all of them would not make room. A suspended Job keeps its memory (its frozen pages stay
in RAM), so Suspend frees a slot and cpu, never memory; Requeue frees all three. The preempting Job starts on
a later pass, once its victims are suspended or stopped (`Entry.preempted_by` marks a victim still stopping;
it is not chosen twice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

_EPSILON = 1e-9  # cpu sums of fractions such as 0.1 are not exact


class Priority(IntEnum):
    BACKGROUND = 0
    LOW = 1
    NORMAL = 2
    HIGH = 3
    CRITICAL = 4


PRIORITY_CLASSES = {"Critical": Priority.CRITICAL, "High": Priority.HIGH, "Normal": Priority.NORMAL,
                    "Low": Priority.LOW, "Background": Priority.BACKGROUND}
DEFAULT_PRIORITY = Priority.NORMAL
AGING_CAP = Priority.HIGH  # aging lifts a Job to at most this class


class Preemption(str, Enum):
    NEVER = "Never"
    SUSPEND = "Suspend"  # freeze the victim; it resumes when it fits again
    REQUEUE = "Requeue"  # stop the victim; it waits again and starts from the beginning


class State(str, Enum):
    WAITING = "waiting"
    RUNNING = "running"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class QueuePolicy:
    """A Queue's budget: None is no limit. `capacity_cpu` in cores, `capacity_memory` in bytes, both bounding
    the sum of the admitted Jobs' requests; `aging_seconds_per_level` None: no aging."""

    name: str
    max_concurrent: int | None = None
    capacity_cpu: float | None = None
    capacity_memory: int | None = None
    aging_seconds_per_level: float | None = None
    preemption: Preemption = Preemption.NEVER


@dataclass(frozen=True)
class Entry:
    """A Job of the queue as the daemon sees it in this pass. `arrived`: when it first entered the queue (FIFO
    keeps it across suspensions and requeues); `waiting_since`: when it last began to wait, if it was
    suspended or requeued since (None: `arrived`), where aging counts from; `started`: when it last started
    running (victims: the latest started first); `preempted_by`: for a running Job, the Job a preemption of it
    was ordered for while it is still being suspended or stopped; for a suspended one, who froze it."""

    key: str
    priority: int
    arrived: float
    cpu: float = 0.0
    memory: int = 0
    state: State = State.WAITING
    started: float | None = None
    waiting_since: float | None = None
    preempted_by: str | None = None


@dataclass(frozen=True)
class Plan:
    """What to do now, each in admission order: start `admit`, thaw `resume`, preempt each (victim, by) in
    `preempt` as the policy says; `waiting` gives why each other waiting or suspended Job waits. Look again at
    `wake_at` (a waiting Job gains a level) or at any change of the entries."""

    admit: tuple[str, ...] = ()
    resume: tuple[str, ...] = ()
    preempt: tuple[tuple[str, str], ...] = ()
    waiting: tuple[tuple[str, str], ...] = ()
    wake_at: float | None = None

    def reason(self, key: str) -> str | None:
        """Why `key` waits, if it does."""
        return next((why for waiting, why in self.waiting if waiting == key), None)


def priority_class(name: str | None) -> int:
    """A priorityClass name's level (None: the default, Normal); names are checked at validation."""
    return DEFAULT_PRIORITY if name is None else PRIORITY_CLASSES[name]


def effective_priority(policy: QueuePolicy, entry: Entry, now: float) -> int:
    """The class a waiting or suspended Job is admitted as at `now`: its own, aged (at most AGING_CAP)."""
    step = policy.aging_seconds_per_level
    if not step or entry.priority >= AGING_CAP or entry.state == State.RUNNING:
        return entry.priority
    return min(AGING_CAP, entry.priority + math.floor(_waited(entry, now) / step))


def _waited(entry: Entry, now: float) -> float:
    return max(0.0, now - (entry.waiting_since if entry.waiting_since is not None else entry.arrived))


def _order_key(policy: QueuePolicy, entry: Entry, now: float) -> tuple[int, int, float, str]:
    return -effective_priority(policy, entry, now), entry.state != State.SUSPENDED, entry.arrived, entry.key


def admission_order(policy: QueuePolicy, entries: Sequence[Entry], now: float) -> list[str]:
    """The waiting and suspended Jobs in the order they are admitted in (running Jobs are not in it)."""
    return [entry.key for entry in _candidates(policy, entries, now)]


def _candidates(policy: QueuePolicy, entries: Sequence[Entry], now: float) -> list[Entry]:
    pending = [entry for entry in entries if entry.state != State.RUNNING]
    return sorted(pending, key=lambda entry: _order_key(policy, entry, now))


def fits_ever(policy: QueuePolicy, cpu: float, memory: int) -> str | None:
    """Why a Job requesting `cpu` cores and `memory` bytes can never be admitted by the queue; None if it can."""
    problems = []
    if policy.max_concurrent is not None and policy.max_concurrent < 1:
        problems.append(f"queue {policy.name} admits no Jobs (maxConcurrent {policy.max_concurrent})")
    if policy.capacity_cpu is not None and cpu > policy.capacity_cpu + _EPSILON:
        problems.append(f"requests cpu {cpu:g}, more than queue {policy.name}'s capacity {policy.capacity_cpu:g}")
    if policy.capacity_memory is not None and memory > policy.capacity_memory:
        problems.append(f"requests memory {_bytes(memory)}, more than queue {policy.name}'s capacity "
                        f"{_bytes(policy.capacity_memory)}")
    return "; ".join(problems) or None


@dataclass(frozen=True)
class _Use:
    """What the queue's Jobs hold: running slots, cpu, and memory (suspended Jobs keep theirs)."""

    slots: int
    cpu: float
    memory: int

    def plus(self, entry: Entry, slot: bool, memory: bool) -> _Use:
        return _Use(self.slots + slot, self.cpu + entry.cpu * slot, self.memory + entry.memory * memory)

    def minus(self, entry: Entry, memory: bool) -> _Use:
        return _Use(self.slots - 1, self.cpu - entry.cpu, self.memory - entry.memory * memory)


def _shortage(policy: QueuePolicy, entry: Entry, use: _Use) -> str | None:
    """Why `entry` does not fit beside `use`; None if it does. A suspended Job's memory is already held."""
    short = []
    if policy.max_concurrent is not None and use.slots + 1 > policy.max_concurrent:
        short.append(f"the queue runs {use.slots} of maxConcurrent {policy.max_concurrent}")
    if policy.capacity_cpu is not None and use.cpu + entry.cpu > policy.capacity_cpu + _EPSILON:
        free = max(0.0, round(policy.capacity_cpu - use.cpu, 3))
        short.append(f"needs cpu {entry.cpu:g}, {free:g} free of {policy.capacity_cpu:g}")
    needs_memory = entry.memory if entry.state != State.SUSPENDED else 0
    if policy.capacity_memory is not None and use.memory + needs_memory > policy.capacity_memory:
        free_memory = max(0, policy.capacity_memory - use.memory)
        short.append(f"needs memory {_bytes(entry.memory)}, {_bytes(free_memory)} free of "
                     f"{_bytes(policy.capacity_memory)}")
    return "; ".join(short) or None


def admit(policy: QueuePolicy, entries: Sequence[Entry], now: float) -> Plan:
    """What the queue does at `now` with its Jobs (each key once)."""
    running = [entry for entry in entries if entry.state == State.RUNNING]
    use = _Use(len(running), sum(entry.cpu for entry in running),
               sum(entry.memory for entry in entries if entry.state != State.WAITING))
    admitted: list[str] = []
    resumed: list[str] = []
    preempt: list[tuple[str, str]] = []
    waiting: list[tuple[str, str]] = []
    blocked = 0  # Jobs in order that wait (not those that can never fit)
    wake_at: float | None = None
    for entry in _candidates(policy, entries, now):
        never = fits_ever(policy, entry.cpu, entry.memory)
        if never is not None:
            waiting.append((entry.key, f"can never fit: {never}"))
            continue
        if not blocked:
            short = _shortage(policy, entry, use)
            if short is None:
                suspended = entry.state == State.SUSPENDED
                (resumed if suspended else admitted).append(entry.key)
                use = use.plus(entry, slot=True, memory=not suspended)
                continue
            victims, why = _preemption(policy, entry, running, use)
            preempt.extend((victim, entry.key) for victim in victims)
            waiting.append((entry.key, f"{short}{why}"))
        else:
            waiting.append((entry.key, f"{blocked} Job{'s' if blocked > 1 else ''} before it in admission order"))
        blocked += 1
        level_up = _next_level(policy, entry, now)
        if level_up is not None and (wake_at is None or level_up < wake_at):
            wake_at = level_up
    return Plan(tuple(admitted), tuple(resumed), tuple(preempt), tuple(waiting), wake_at)


def _next_level(policy: QueuePolicy, entry: Entry, now: float) -> float | None:
    """When a waiting Job's effective priority next rises; None if it no longer does."""
    step = policy.aging_seconds_per_level
    if not step or effective_priority(policy, entry, now) >= AGING_CAP:
        return None
    since = entry.waiting_since if entry.waiting_since is not None else entry.arrived
    return since + (math.floor(_waited(entry, now) / step) + 1) * step


def _preemption(policy: QueuePolicy, head: Entry, running: Sequence[Entry], use: _Use) -> tuple[list[str], str]:
    """The running Jobs to preempt so that `head` fits, and what its reason adds: ": preempting ...", or why
    there is none."""
    if policy.preemption == Preemption.NEVER:
        return [], ""
    frees_memory = policy.preemption == Preemption.REQUEUE
    leaving = [entry for entry in running if entry.preempted_by is not None]
    for entry in leaving:
        use = use.minus(entry, frees_memory)
    if leaving and _shortage(policy, head, use) is None:
        return [], f": waiting for preempted {', '.join(entry.key for entry in leaving)} to stop"
    lower = [entry for entry in running if entry.preempted_by is None and entry.priority < head.priority]
    if not lower:
        return [], ""
    lower.sort(key=lambda entry: (entry.priority, -(entry.started if entry.started is not None else math.inf),
                                  entry.key))
    chosen: list[Entry] = []
    for entry in lower:
        chosen.append(entry)
        use = use.minus(entry, frees_memory)
        if _shortage(policy, head, use) is None:
            break
    else:
        needs = head.memory if head.state != State.SUSPENDED else 0
        memory_short = policy.capacity_memory is not None and use.memory + needs > policy.capacity_memory
        room = " (a suspended Job keeps its memory)" if memory_short and not frees_memory else ""
        return [], f": preempting every running Job of a lower class would not make room{room}"
    for entry in reversed(chosen[:-1]):  # reprieve, the most protected first, those not needed after all
        kept = use.plus(entry, slot=True, memory=frees_memory)
        if _shortage(policy, head, kept) is None:
            chosen.remove(entry)
            use = kept
    victims = [entry.key for entry in chosen]
    return victims, f": preempting {', '.join(victims)}"


def _bytes(count: int) -> str:
    """A size exactly, as the manifests write it: 2Gi, 1536Mi, 100 (a rounded one could read as fitting)."""
    for suffix, size in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if count and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)
