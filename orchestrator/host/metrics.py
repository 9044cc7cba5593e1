"""Metrics of every running replica: one pass over /proc at a fixed interval, and a short history.

The sampler thread only reads (observe.sample_trees) and keeps, per replica, the last samples of CPU use
(percent of one core over the interval) and resident memory of its whole tree. `get -o wide`, `top` and the
Prometheus endpoint read from it; nothing here changes run state.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..core.model import Autoscale, ProcessIdentity, ReplicaId
from ..planning.autoscale import recommend
from .observe import sample_trees, started_at

HISTORY = 60  # samples kept per replica


@dataclass(frozen=True)
class Sample:
    at: float  # wall time
    cpu_percent: float | None  # of one core, over the interval before `at` (None: first sample)
    cpu_seconds: float  # total of the tree so far
    memory_bytes: int
    proportional_bytes: int = 0  # PSS of the tree, when the sampler is asked for it (0 otherwise)


ScaleCallback = Callable[[str, int, str], None]


def _young_average(identity: ProcessIdentity, cpu_seconds: float, now: float, interval: float) -> float | None:
    """The first sample's cpu: for a process that started within two intervals, its average since its start
    (what an interval would have shown: an alert on a process that starts hot need not wait a second pass);
    None for an older one (adopted after a restart: its lifetime average says little about now)."""
    started = started_at(identity.start_ticks)
    if started is None:
        return None
    life = now - started
    return 100.0 * cpu_seconds / life if 0.1 <= life <= 2 * interval else None


class Sampler:
    """Also the autoscaler's eyes: after each pass it averages each autoscaled pool's CPU, asks
    autoscale.recommend, and posts a new size through `on_scale(key, size, why)`; it never scales itself."""

    def __init__(self, interval: float = 20.0, on_scale: ScaleCallback | None = None, pools_only: bool = False,
                 proportional: bool = False) -> None:
        """`pools_only`: sample only the replicas of autoscaled pools (`run`, which shows no metrics), so
        that an orchestrator without pools samples nothing at all. `proportional`: read each tree's PSS too
        (for the Prometheus endpoint; it costs a page-table walk per process)."""
        self.interval = interval
        self.proportional = proportional
        self.on_scale = on_scale
        self.on_pass: Callable[[], None] | None = None  # after each pass (alerting evaluates then)
        self.pools_only = pools_only
        self._pools: dict[str, tuple[Autoscale, int]] = {}
        self._pool_history: dict[str, list[tuple[float, float]]] = {}
        self._targets: dict[ReplicaId, ProcessIdentity] = {}
        self._history: dict[ReplicaId, deque[Sample]] = {}
        self._condition = threading.Condition()
        self._closed = False
        self.last_pass_seconds = 0.0  # what the last pass cost, for the bench and /metrics
        self._thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self._thread.start()

    def sync(self, targets: Mapping[ReplicaId, ProcessIdentity],
             pools: Mapping[str, tuple[Autoscale, int]] | None = None) -> None:
        """Sample these replicas from now on; `pools`: each autoscaled key's policy and current size."""
        with self._condition:
            pools = dict(pools or {})
            if self.pools_only:
                targets = {rid: identity for rid, identity in targets.items() if rid.key in pools}
            for rid in list(self._history):
                if rid not in targets or targets[rid] != self._targets.get(rid):
                    del self._history[rid]  # a new process starts a new history
            self._targets = dict(targets)
            for key in list(self._pool_history):
                if self._pools.get(key) != pools.get(key):
                    del self._pool_history[key]  # a new size or policy: its windows start again
            self._pools = pools

    def latest(self, rid: ReplicaId) -> Sample | None:
        with self._condition:
            history = self._history.get(rid)
            return history[-1] if history else None

    def history(self, rid: ReplicaId) -> list[Sample]:
        with self._condition:
            return list(self._history.get(rid, ()))

    def histories(self) -> dict[ReplicaId, list[Sample]]:
        """Every sampled replica's history (a copy)."""
        with self._condition:
            return {rid: list(history) for rid, history in self._history.items()}

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
        trees = sample_trees([identity.pid for identity in targets.values()], self.proportional)
        now = time.time()
        with self._condition:
            for rid, identity in targets.items():
                usage = trees.get(identity.pid)
                if usage is None or self._targets.get(rid) != identity:
                    continue
                rss, cpu_seconds, pss = usage
                history = self._history.setdefault(rid, deque(maxlen=HISTORY))
                if history:
                    before = history[-1]
                    # A child that left the tree (re-parented, then reaped by another) takes its cpu with it:
                    # the tree's total is a counter all the same, and never goes down for the same process.
                    cpu_seconds = max(cpu_seconds, before.cpu_seconds)
                    elapsed = max(1e-6, now - before.at)
                    percent: float | None = max(0.0, 100.0 * (cpu_seconds - before.cpu_seconds) / elapsed)
                else:
                    percent = _young_average(identity, cpu_seconds, now, self.interval)
                history.append(Sample(now, percent, cpu_seconds, rss, pss))
            decisions = self._autoscale(time.monotonic())
        self.last_pass_seconds = time.perf_counter() - started
        if self.on_scale is not None:
            for key, size, why in decisions:
                self.on_scale(key, size, why)
        if self.on_pass is not None:
            self.on_pass()

    def _autoscale(self, now: float) -> list[tuple[str, int, str]]:
        """Fold this pass into each pool's history; the pools whose size should change, and why."""
        decisions = []
        for key, (policy, size) in self._pools.items():
            samples = [history[-1].cpu_percent for rid, history in self._history.items()
                       if rid.key == key and history and history[-1].cpu_percent is not None]
            pool = self._pool_history.setdefault(key, [])
            if samples:
                pool.append((now, sum(s for s in samples if s is not None) / len(samples)))
            wanted = recommend(policy, size, pool, now)
            if wanted != size:
                average = f"average cpu {pool[-1][1]:.0f}%" if pool else "out of bounds"
                decisions.append((key, wanted, f"{average}, target {policy.target_cpu_percent:g}%"))
                self._pool_history.pop(key, None)
        return decisions


class Histogram:
    """Counts of observed durations in cumulative buckets (Prometheus' histogram), with their sum. Written by
    one thread (the loop's), read by the metrics endpoint's: each field is replaced whole."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # observations <= each bound
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        for index, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[index] += 1
        self.count += 1
        self.sum += seconds
