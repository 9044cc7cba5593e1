"""The daemon's Queues (design/alerts.md §D): which Jobs naming a queue may run now, and the preemption of
lower ones when a higher one does not fit.

Admission is planning/admission.py's (strict priority, FIFO within a class, aging, capacity, preemption);
this module feeds it the queue's Jobs as the reconciler holds them and carries out its plan, on the
reconciler's thread:
- a Job not admitted is held (`Reconciler.held`): the plan does not start it, and it shows as Waiting
  with the queue's name (`orchestrator queue NAME` says why each waits);
- Suspend freezes a victim: SIGSTOP to each replica's process group (the whole tree, children included),
  SIGCONT when it fits again. A frozen Job keeps its memory (and counts against the queue's memory while
  frozen). A stop of a frozen Job (delete, shutdown) thaws it first, so that it gets its signal at once;
- Requeue stops a victim (gracefully, as a restart would) and holds it until it is admitted again; it
  starts from the beginning, and this stop does not count as a failure.

When: after each change of desired state and each end of a queued Job (events), and at the plan's next
aging step; never without Queues.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from ..core.events import Event, EventType
from ..core.model import Kind, Phase, ProcessSpec, ReplicaId
from ..core.queue import QueueSpec
from ..planning import admission
from ..planning.status import settled_phase
from . import kept
from .control import NotFound

Post = Callable[[Callable[[Any], None]], None]
LOOK_AGAIN = {EventType.APPLIED, EventType.EXITED, EventType.STARTED, EventType.SUCCEEDED, EventType.FAILED,
              EventType.START_FAILED}


class Queues:
    def __init__(self, store: Any, ops: Any, emit: Callable[[Event], None], wall: Callable[[], float],
                 post: Post) -> None:
        self.store = store
        self.ops = ops
        self.emit = emit
        self.wall = wall
        self.post = post
        self.specs: dict[str, QueueSpec] = {}  # by name
        self.arrived: dict[str, float] = {}  # Job key -> when it entered its queue (kept: FIFO across restarts)
        self.suspended: dict[str, str] = {}  # Job key -> the Job it was frozen for
        self.requeued: set[str] = set()  # Jobs stopped to be run again later
        self.plans: dict[str, admission.Plan] = {}
        self._alarm = kept.Alarm(self._soon)  # the plan's next aging step
        self._guard = threading.Lock()
        self._posted = False

    # -- life cycle --------------------------------------------------------------------------------

    def restore(self) -> None:
        from ..manifests.queues import kept_from_document

        for document in self.store.json_meta("queues", []):
            try:
                spec = kept_from_document(document, where="<state: queues>")
            except Exception as error:  # noqa: BLE001 - a kept Queue this release cannot read: said, not fatal
                self._event(EventType.INTERNAL_ERROR, "", f"a kept Queue is not read: {error}")
                continue
            self.specs[spec.name] = spec
        state = self.store.json_meta("queue_state", {})
        self.arrived = {k: float(v) for k, v in (state.get("arrived") or {}).items()}
        self.suspended = {k: str(v) for k, v in (state.get("suspended") or {}).items()}
        self.requeued = set(state.get("requeued") or [])
        if self.specs:
            self.post(self.evaluate)

    def close(self) -> None:
        self._alarm.cancel()

    def on_event(self, event: Event) -> None:
        if self.specs and event.type in LOOK_AGAIN:
            self._soon()
        if event.type is EventType.STOPPING and event.key in self.suspended:
            self.post(lambda r: self._thaw(r, event.key, "it is being stopped"))

    # -- kept objects (the loop's thread) ----------------------------------------------------------

    def put(self, specs: list[QueueSpec], dry_run: bool = False) -> list[dict[str, Any]]:
        results = kept.put(self.specs, specs, lambda spec: spec.name, lambda spec: "Queue", dry_run)
        if not dry_run and kept.changed(results):
            self._save()
            self._soon()
        return results

    def prune(self, applied: set[str], paths: list[str], dry_run: bool) -> list[dict[str, Any]]:
        results = kept.prune(self.specs, "Queue", applied.__contains__, paths, dry_run)
        if results and not dry_run:
            self._save()
            self._soon()
        return results

    def listing(self, name: str | None) -> dict[str, Any]:
        if name is not None and name not in self.specs:
            raise NotFound(f"no Queue {name}")
        now = self.wall()
        queues = []
        for queue in sorted(self.specs.values(), key=lambda q: q.name):
            if name is not None and queue.name != name:
                continue
            entries = self._entries(queue, now)
            order = admission.admission_order(_policy(queue), entries, now)
            plan = self.plans.get(queue.name) or admission.Plan()
            running = [e for e in entries if e.state is admission.State.RUNNING]
            jobs = [{"key": e.key, "state": "Running", "priority": e.priority, "reason": ""} for e in running]
            by_key = {e.key: e for e in entries}
            for key in order:
                entry = by_key[key]
                state = "Suspended" if entry.state is admission.State.SUSPENDED else "Waiting"
                reason = plan.reason(key) or ""
                if state == "Suspended" and key in self.suspended:
                    reason = f"frozen for {self.suspended[key]}" + (f"; {reason}" if reason else "")
                jobs.append({"key": key, "state": state, "priority": admission.effective_priority(
                    _policy(queue), entry, now), "reason": reason})
            queues.append({"name": queue.name, "max_concurrent": queue.max_concurrent,
                           "capacity": {"cpu": queue.capacity_cpu, "memory": queue.capacity_memory},
                           "preemption": queue.preemption, "jobs": jobs})
        return {"queues": queues}

    # -- admission (the loop's thread) -------------------------------------------------------------

    def _soon(self) -> None:
        with self._guard:
            if self._posted:
                return
            self._posted = True
        self.post(self.evaluate)

    def evaluate(self, reconciler: Any) -> None:
        with self._guard:
            self._posted = False
        now = self.wall()
        held: dict[str, str] = {}
        wake: list[float] = []
        queued = {key for key, spec in reconciler.desired.specs.items() if spec.kind is Kind.JOB and spec.queue}
        for key in [k for k in self.arrived if k not in queued]:  # gone from the queues: forgotten
            del self.arrived[key]
            self._thaw(reconciler, key, "it is no longer queued")  # a frozen one being stopped gets its signal
            self.requeued.discard(key)
        for queue in self.specs.values():
            entries = self._entries(queue, now)
            plan = admission.admit(_policy(queue), entries, now)
            self.plans[queue.name] = plan
            admitted = set(plan.admit) | set(plan.resume)
            for entry in entries:
                if entry.state is admission.State.WAITING and entry.key not in admitted:
                    held[entry.key] = f"queued in {queue.name} (`orchestrator queue {queue.name}` says why)"
            for key in plan.admit:
                self.requeued.discard(key)
            for key in plan.resume:
                self._thaw(reconciler, key, "it fits again")
            if plan.preempt and queue.preemption == "Suspend":
                self._soon()  # frozen now: the next look admits what it was frozen for
            for victim, by in plan.preempt:
                if queue.preemption == "Suspend":
                    self._freeze(reconciler, victim, by)
                elif queue.preemption == "Requeue":
                    held[victim] = f"requeued in {queue.name} for {by}"
                    self.requeued.add(victim)
                    self._event(EventType.QUEUE_PREEMPTED, victim, f"stopped to run again later: {by} goes first "
                                f"(queue {queue.name}, preemption Requeue)")
                    reconciler.restart(victim)  # stopped on purpose: started again once admitted
            if plan.wake_at is not None:
                wake.append(plan.wake_at)
        for key in self.requeued:  # stopped, waiting to be admitted again
            held.setdefault(key, "requeued")
        for key in queued:  # a Job naming a queue that does not exist (yet) waits for it
            spec = reconciler.desired.specs[key]
            if spec.queue not in self.specs:
                held[key] = f"its queue {spec.queue} does not exist (apply a kind: Queue named so)"
        changed = held != reconciler.held
        reconciler.held = held
        self._save_state()
        if changed:
            reconciler.post(lambda r: None)  # a pass with the new holds
        self._alarm.set(min(wake) - now if wake else None)

    def _entries(self, queue: QueueSpec, now: float) -> list[admission.Entry]:
        reconciler = self.ops.reconciler
        entries = []
        for key, spec in reconciler.desired.specs.items():
            if spec.kind is not Kind.JOB or spec.queue != queue.name:
                continue
            phases = [self._phase(spec, index) for index in range(max(1, spec.replicas))]
            if all(p in (Phase.SUCCEEDED, Phase.FAILED) for p in phases):
                continue  # done: no longer in the queue
            arrived = self.arrived.setdefault(key, now)
            running = any(p in (Phase.RUNNING, Phase.STOPPING) for p in phases) and key not in self.requeued
            state = (admission.State.SUSPENDED if key in self.suspended else
                     admission.State.RUNNING if running else admission.State.WAITING)
            entries.append(admission.Entry(
                key=key, priority=admission.priority_class(spec.priority_class), arrived=arrived,
                cpu=spec.requests_cpu or 0.0, memory=spec.requests_memory or 0, state=state,
                started=arrived if running else None,
                preempted_by=self.suspended.get(key)))
        return entries

    def _phase(self, spec: ProcessSpec, index: int) -> Phase:
        reconciler = self.ops.reconciler
        rid = ReplicaId(spec.key, index)
        return settled_phase(spec, reconciler.records.get(rid), reconciler.waiting.get(rid))

    def _groups(self, reconciler: Any, key: str) -> list[int]:
        return [record.process.pid for rid, record in reconciler.records.items()
                if rid.key == key and record.process is not None]

    def _freeze(self, reconciler: Any, key: str, by: str) -> None:
        for pid in self._groups(reconciler, key):
            _signal_group(pid, signal.SIGSTOP)
        reconciler.frozen(key, True)
        self.suspended[key] = by
        self._event(EventType.QUEUE_PREEMPTED, key, f"suspended (frozen) so that {by} runs: it keeps its memory "
                    "and goes on where it was when it fits again")

    def _thaw(self, reconciler: Any, key: str, why: str) -> None:
        if key not in self.suspended:
            return
        for pid in self._groups(reconciler, key):
            _signal_group(pid, signal.SIGCONT)
        reconciler.frozen(key, False)
        del self.suspended[key]
        self._save_state()
        self._event(EventType.QUEUE_RESUMED, key, f"resumed: {why}")

    def _save(self) -> None:
        from ..manifests.queues import queue_to_document

        self.store.set_meta("queues", json.dumps([queue_to_document(q) for q in self.specs.values()]))

    def _save_state(self) -> None:
        self.store.set_meta("queue_state", json.dumps({"arrived": self.arrived, "suspended": self.suspended,
                                                       "requeued": sorted(self.requeued)}))

    def _event(self, kind: EventType, key: str, message: str) -> None:
        self.emit(Event(self.wall(), kind, key, message))


def _policy(queue: QueueSpec) -> admission.QueuePolicy:
    return admission.QueuePolicy(name=queue.name, max_concurrent=queue.max_concurrent,
                                 capacity_cpu=queue.capacity_cpu, capacity_memory=queue.capacity_memory,
                                 aging_seconds_per_level=queue.aging_seconds_per_level,
                                 preemption=admission.Preemption(queue.preemption))


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # each replica leads a group of its own: its whole tree
    except (ProcessLookupError, PermissionError):
        pass
