"""Resource limits: what is set on a replica as it starts, and the watchdog that samples process trees.

At start, right after the spawn (so that the spawn keeps its fast path, with no preexec_fn): RLIMIT_NOFILE
and RLIMIT_NPROC through prlimit, the nice value that `priority` maps to, CPU affinity and I/O class.
What the replica forks later inherits them. The window between exec and these calls is a few
microseconds; a program that forks in it escapes them.

Memory and CPU are enforced by the kernel where the daemon has a cgroup tree to manage (cgroups.py: one
cgroup per replica, so the limits hold for the whole tree). Otherwise they are watched by sampling: one
thread, one pass over every watched replica's process tree a second (it sleeps when nothing is watched).
It posts transitions and never acts: the reconciler kills a tree that stays over its memory limit
(OOMKilled) and renices one over its CPU limit. For a replica in a cgroup the same pass reads only the
cgroup's OOM-kill count: the kernel may have killed a child rather than the main process, and the replica
is then ended as a whole. `get -o json` and `describe` say which enforcement is in force.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..core.model import Limits, ProcessIdentity, ProcessSpec, ReplicaId, nice_of
from .cgroups import ReplicaCgroup
from .observe import sample_trees

MEMORY_SAMPLES = 2  # consecutive samples over the limit before a kill: one spike is not a leak
CPU_SAMPLES = 3  # consecutive seconds over the CPU limit before a renice
THROTTLED_NICE = 19


def apply_at_start(pid: int, spec: ProcessSpec) -> list[str]:
    """Set the start-time limits on a just-spawned replica; what could not be set, in words."""
    failures = []
    limits = spec.limits
    for name, kind, value in (("openFiles", resource.RLIMIT_NOFILE, limits.open_files),
                              ("processes", resource.RLIMIT_NPROC, limits.processes)):
        if value is not None:
            try:
                resource.prlimit(pid, kind, (value, value))
            except (OSError, ValueError, OverflowError) as error:
                failures.append(f"{name} limit {value}: {error}")
    nice = nice_of(spec.priority)
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        except OSError as error:
            failures.append(f"nice {nice} (priority {spec.priority}): {error.strerror or error}")
    if spec.cpu_affinity:
        try:
            os.sched_setaffinity(pid, spec.cpu_affinity)
        except (OSError, ValueError, OverflowError) as error:
            failures.append(f"cpuAffinity {list(spec.cpu_affinity)}: {getattr(error, 'strerror', None) or error}")
    if spec.io_class is not None:
        import psutil  # here: psutil costs 30 ms of start-up, and only these calls need it

        io_classes = {"realtime": psutil.IOPRIO_CLASS_RT, "best-effort": psutil.IOPRIO_CLASS_BE,
                      "idle": psutil.IOPRIO_CLASS_IDLE}
        try:
            psutil.Process(pid).ionice(io_classes[spec.io_class])
        except (OSError, psutil.Error, ValueError, KeyError) as error:
            failures.append(f"ioClass {spec.io_class}: {error}")
    return failures


def renice_tree(pid: int, nice: int) -> None:
    """Set the nice value of a process and everything below it (best effort: members come and go)."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for proc in tree:
        try:
            proc.nice(nice)
        except psutil.Error:
            continue


def kernel_oom_message(limits: Limits) -> str:
    """Why a replica ended when the kernel OOM-killed in its cgroup (the same words whichever saw it first:
    the limit watch, or the reap of its main process)."""
    if limits.memory_bytes is None:
        return "killed by the kernel's OOM killer (the host, not its own limit, ran out of memory)"
    return f"killed by the kernel at its memory limit of {limits.memory_bytes} bytes"


@dataclass(frozen=True)
class Watched:
    process: ProcessIdentity
    limits: Limits
    cgroup: ReplicaCgroup | None = None  # the kernel enforces: only its OOM kills are looked at
    oom_kills: int = 0  # the cgroup's count when this process started


@dataclass(frozen=True)
class Breach:
    """A replica crossed one of its limits (or came back under its CPU limit: `over` False)."""

    replica: ReplicaId
    process: ProcessIdentity
    resource: str  # "memory" or "cpu"
    over: bool
    message: str


class LimitWatch:
    def __init__(self, on_breach: Callable[[Breach], None], interval: float = 1.0) -> None:
        self.on_breach = on_breach
        self.interval = interval
        self._targets: dict[ReplicaId, Watched] = {}
        self._memory_over: dict[ReplicaId, int] = {}
        self._oom_reported: set[ProcessIdentity] = set()  # cgroup OOM kills already posted, per process
        self._cpu_over: dict[ReplicaId, int] = {}
        self._throttled: set[ReplicaId] = set()
        self._cpu_seconds: dict[ReplicaId, float] = {}
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="limits", daemon=True)
        self._thread.start()

    def sync(self, targets: Mapping[ReplicaId, Watched]) -> None:
        with self._condition:
            for rid in list(self._targets):
                if rid not in targets or targets[rid].process != self._targets[rid].process:
                    self._forget(rid)
            was_idle = not self._targets
            self._targets = dict(targets)
            self._oom_reported &= {w.process for w in self._targets.values()}
            if was_idle and self._targets:
                self._condition.notify()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join(timeout=5)

    def _forget(self, rid: ReplicaId) -> None:
        for table in (self._memory_over, self._cpu_over, self._cpu_seconds):
            table.pop(rid, None)
        self._throttled.discard(rid)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._targets and not self._closed:
                    self._condition.wait()  # nothing to watch: no wake-ups at all
                if self._closed:
                    return
                self._condition.wait(self.interval)
                if self._closed:
                    return
                targets = dict(self._targets)
            for breach in self.sample(targets):
                self.on_breach(breach)

    def sample(self, targets: Mapping[ReplicaId, Watched]) -> list[Breach]:
        """One pass: the memory and CPU of every watched tree, compared with its limits."""
        breaches = []
        sampled = [w.process.pid for w in targets.values() if w.cgroup is None]
        trees = sample_trees(sampled) if sampled else {}  # the pass reads all of /proc: only when needed
        for rid, watched in targets.items():
            if watched.cgroup is not None:
                # Keyed by process, not slot: a pass over an older snapshot cannot mute a newer process.
                if watched.process not in self._oom_reported and watched.cgroup.oom_kills() > watched.oom_kills:
                    self._oom_reported.add(watched.process)
                    breaches.append(Breach(rid, watched.process, "memory", True, kernel_oom_message(watched.limits)))
                continue
            usage = trees.get(watched.process.pid)
            if usage is None:
                continue
            rss, cpu_seconds, _ = usage
            limits = watched.limits
            if limits.memory_bytes is not None:
                count = self._memory_over.get(rid, 0) + 1 if rss > limits.memory_bytes else 0
                self._memory_over[rid] = count
                if count == MEMORY_SAMPLES:
                    breaches.append(Breach(rid, watched.process, "memory", True,
                                           f"{rss} bytes resident, limit {limits.memory_bytes}"))
            if limits.cpu is not None:
                before = self._cpu_seconds.get(rid)
                self._cpu_seconds[rid] = cpu_seconds
                if before is None:
                    continue
                cores = (cpu_seconds - before) / self.interval
                count = self._cpu_over.get(rid, 0) + 1 if cores > limits.cpu else 0
                self._cpu_over[rid] = count
                if count == CPU_SAMPLES and rid not in self._throttled:
                    self._throttled.add(rid)
                    breaches.append(Breach(rid, watched.process, "cpu", True,
                                           f"{cores:.2f} cores for {CPU_SAMPLES} s, limit {limits.cpu:g}"))
                elif count == 0 and rid in self._throttled:
                    self._throttled.discard(rid)
                    breaches.append(Breach(rid, watched.process, "cpu", False, f"{cores:.2f} cores, back under"))
        return breaches
