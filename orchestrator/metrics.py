"""Metrics of every running replica: one pass over /proc at a fixed interval, and a short history.

The sampler thread only reads (observe.sample_trees) and keeps, per replica, the last samples of CPU use
(percent of one core over the interval) and resident memory of its whole tree. `get -o wide`, `top` and the
Prometheus endpoint read from it; nothing here changes run state.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from .model import ProcessIdentity, ReplicaId
from .observe import sample_trees

HISTORY = 60  # samples kept per replica


@dataclass(frozen=True)
class Sample:
    at: float  # wall time
    cpu_percent: float | None  # of one core, over the interval before `at` (None: first sample)
    cpu_seconds: float  # total of the tree so far
    memory_bytes: int


class Sampler:
    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._targets: dict[ReplicaId, ProcessIdentity] = {}
        self._history: dict[ReplicaId, deque[Sample]] = {}
        self._condition = threading.Condition()
        self._closed = False
        self.last_pass_seconds = 0.0  # what the last pass cost, for the bench and /metrics
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self._thread.start()

    def sync(self, targets: Mapping[ReplicaId, ProcessIdentity]) -> None:
        with self._condition:
            for rid in list(self._history):
                if rid not in targets or targets[rid] != self._targets.get(rid):
                    del self._history[rid]  # a new process starts a new history
            self._targets = dict(targets)

    def latest(self, rid: ReplicaId) -> Sample | None:
        with self._condition:
            history = self._history.get(rid)
            return history[-1] if history else None

    def history(self, rid: ReplicaId) -> list[Sample]:
        with self._condition:
            return list(self._history.get(rid, ()))

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait(self.interval)
                if self._closed:
                    return
                targets = dict(self._targets)
            if targets:
                self.sample(targets)

    def sample(self, targets: Mapping[ReplicaId, ProcessIdentity]) -> None:
        """One pass: every target's tree, folded into its history."""
        started = time.perf_counter()
        trees = sample_trees([identity.pid for identity in targets.values()])
        now = time.time()
        with self._condition:
            for rid, identity in targets.items():
                usage = trees.get(identity.pid)
                if usage is None or self._targets.get(rid) != identity:
                    continue
                rss, cpu_seconds = usage
                history = self._history.setdefault(rid, deque(maxlen=HISTORY))
                if history:
                    before = history[-1]
                    elapsed = max(1e-6, now - before.at)
                    percent: float | None = max(0.0, 100.0 * (cpu_seconds - before.cpu_seconds) / elapsed)
                else:
                    percent = None
                history.append(Sample(now, percent, cpu_seconds, rss))
        self.last_pass_seconds = time.perf_counter() - started
