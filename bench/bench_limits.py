"""What limits cost: a spawn with none, with rlimits, and in a cgroup of its own; one limit-watch pass.

    python bench/bench_limits.py [--replicas 200] [--rounds 3]

Spawns --replicas `sleep` replicas through the executor for each kind of spec, side by side in rounds
(so a noisy machine weighs on every kind alike), and prints the median time of one spawn. Then times one
pass of the limit watch over as many replicas: by sampling their trees (the watchdog) and by reading
their cgroups' OOM-kill counts (the kernel enforcing). Needs a cgroup tree this process may manage for
the cgroup figures (as root on a cgroup v1 host, or a delegated v2 cgroup); says so otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import median_ms

from orchestrator.core.model import Limits, ProcessSpec, ReplicaId
from orchestrator.host.cgroups import CgroupHost, find_host
from orchestrator.host.execute import Executor
from orchestrator.host.limits import LimitWatch, Watched
from orchestrator.host.observe import identity


def spawn_all(executor: Executor, spec: ProcessSpec, count: int, times: list[float], pids: list[int]) -> None:
    """Spawn `count` replicas, adding each spawn's duration to `times` and its pid to `pids` as it goes
    (so that whatever started is ended, even after a failure)."""
    for index in range(count):
        start = time.perf_counter()
        child = executor.spawn(ReplicaId(f"bench/{spec.name}", index), spec)
        times.append(time.perf_counter() - start)
        pids.append(child.process.pid)


def end_all(executor: Executor, pids: list[int]) -> None:
    for pid in pids:
        os.killpg(pid, signal.SIGKILL)
    for pid in pids:
        while executor.reap(pid) is None:
            time.sleep(0.001)


def watch_pass_ms(executor: Executor, pids: list[int], limits: Limits, runs: int = 20) -> float:
    watch = LimitWatch(lambda breach: None, interval=3600)
    targets = {}
    for index, pid in enumerate(pids):
        contained = executor.cgroup_of(pid)
        process = identity(pid)
        targets[ReplicaId("bench/x", index)] = (Watched(process, limits, *contained) if contained
                                                else Watched(process, limits))
    try:
        return median_ms(lambda: watch.sample(targets), runs)
    finally:
        watch.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as state:
        run(Path(state), args.replicas, args.rounds)


def run(state: Path, replicas: int, rounds: int) -> None:
    host, how = find_host(str(state))
    print(f"memory and cpu limits here: {how}")
    try:
        measure(state, host, replicas, rounds)
    finally:
        if host is not None:
            host.close()


def measure(state: Path, host: CgroupHost | None, replicas: int, rounds: int) -> None:
    kinds = {
        "plain": (ProcessSpec(name="plain", command=("sleep", "600")), None),
        "rlimits": (ProcessSpec(name="rlimits", command=("sleep", "600"),
                                limits=Limits(open_files=256, processes=512)), None),
    }
    if host is not None:
        kinds["cgroup"] = (ProcessSpec(name="cgroup", command=("sleep", "600"),
                                       limits=Limits(memory_bytes=64 << 20, cpu=0.5)), host)
    spawn_times: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(rounds):
        for name, (spec, cgroups) in kinds.items():
            executor = Executor(state / "logs", cgroups=cgroups)
            pids: list[int] = []
            try:
                spawn_all(executor, spec, replicas, spawn_times[name], pids)
            finally:
                end_all(executor, pids)
    plain = statistics.median(spawn_times["plain"])
    print(f"one spawn, median of {rounds} x {replicas}:")
    for name, times in spawn_times.items():
        median = statistics.median(times)
        print(f"  {name:8} {median * 1e6:7.0f} us  ({median / plain:.2f}x plain)")
    limits = Limits(memory_bytes=64 << 20, cpu=0.5)
    print(f"one limit-watch pass over {replicas} replicas (median of 20):")
    for name, cgroups in (("watchdog", None), ("cgroup", host)):
        if name == "cgroup" and cgroups is None:
            continue
        spec = ProcessSpec(name=name, command=("sleep", "600"), limits=limits)
        executor = Executor(state / "logs", cgroups=cgroups)
        pids = []
        try:
            spawn_all(executor, spec, replicas, [], pids)
            print(f"  {name:8} {watch_pass_ms(executor, pids, limits):7.2f} ms")
        finally:
            end_all(executor, pids)


if __name__ == "__main__":
    main()
