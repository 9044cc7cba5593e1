"""A reconciler running in a thread with real processes, for integration tests.

The test thread never touches run state directly: it posts messages and queries snapshots, as the API will.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from orchestrator.core.clock import SystemClock
from orchestrator.core.events import Event, EventBus, EventType
from orchestrator.core.model import ProcessSpec, ReplicaId, ReplicaRecord
from orchestrator.engine.reconcile import Reconciler
from orchestrator.host.cgroups import CgroupHost
from orchestrator.host.execute import Executor
from orchestrator.host.limits import LimitWatch
from orchestrator.host.metrics import Sampler
from orchestrator.host.probes import Prober
from orchestrator.planning.graph import desired_state

T = TypeVar("T")


class Harness:
    def __init__(self, log_dir: Path, cgroups: CgroupHost | None = None) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()
        bus = EventBus()
        bus.subscribe(self._record)
        executor = Executor(log_dir, cgroups=cgroups)
        self.prober = Prober(lambda t: self.reconciler.post(lambda r: r.probe_transition(t)), log_dir,
                             notify=executor.notify_sockets)
        self.limit_watch = LimitWatch(lambda b: self.reconciler.post(lambda r: r.limit_breach(b)), interval=0.1)
        self.sampler = Sampler(0.1, lambda key, size, why: self.reconciler.post(lambda r: r.autoscale(key, size, why)))
        self.reconciler = Reconciler(executor, SystemClock(), bus, resync_seconds=1.0,
                                     prober=self.prober,
                                     limit_watch=self.limit_watch, sampler=self.sampler)
        self.log_dir = log_dir
        self.thread = threading.Thread(target=self.reconciler.run, name="reconciler", daemon=True)
        self.thread.start()

    def _record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def apply(self, specs: Sequence[ProcessSpec]) -> None:
        desired = desired_state(specs)
        self.reconciler.post(lambda r: r.set_desired(desired))

    def query(self, fn: Callable[[Reconciler], T], timeout: float = 5.0) -> T:
        done = threading.Event()
        box: list[T] = []

        def run(r: Reconciler) -> None:
            box.append(fn(r))
            done.set()

        self.reconciler.post(run)
        if not done.wait(timeout):
            raise TimeoutError("reconciler did not answer")
        return box[0]

    def records(self) -> dict[ReplicaId, ReplicaRecord]:
        return self.query(lambda r: dict(r.records))

    def pid(self, name: str, index: int = 0, namespace: str = "default") -> int | None:
        record = self.records().get(ReplicaId(f"{namespace}/{name}", index))
        return record.process.pid if record and record.process else None

    def of(self, type: EventType, name: str | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.type is type and (name is None or e.key.endswith("/" + name))]

    def close(self, timeout: float = 10.0) -> None:
        if self.thread.is_alive():
            self.reconciler.post(lambda r: r.shut_down())
            self.thread.join(timeout)
        if self.thread.is_alive():
            self.reconciler.post(lambda r: r.shut_down(force=True))
            self.thread.join(timeout)
        self.prober.close()
        self.limit_watch.close()
        self.sampler.close()
        self.reconciler.close()
