"""Cost of one metrics pass: cpu and memory of N replicas' process trees (DESIGN.md: cheap; measure it).

    python bench/bench_metrics.py [--sizes 50,200] [--runs 20] [--interval 10]

Starts N `sleep` children, then times (median of --runs) one pass of observe.sample_trees (one read of
/proc/PID/stat per process on the host) beside the same figures computed with psutil per replica
(Process.children(recursive) + memory_info + cpu_times: the straightforward way). The daemon's idle CPU
with metrics on is the pass cost divided by the sampling interval; without metrics it samples nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import median_ms

from orchestrator.host.observe import sample_trees


def psutil_pass(pids: list[int]) -> None:
    for pid in pids:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with proc.oneshot():
                proc.memory_info()
                proc.cpu_times()




def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,200")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--interval", type=float, default=10.0, help="the daemon's sampling interval (s)")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {len(psutil.pids())} processes on the host before the bench; "
          f"median of {args.runs} passes")
    print(f"{'N':>5} | {'psutil per replica ms':>21} | {'one /proc pass ms':>17} | {'ratio':>6} | "
          f"idle CPU at {args.interval:g} s interval")
    for n in (int(s) for s in args.sizes.split(",")):
        children = [subprocess.Popen(["sleep", "3600"], start_new_session=True) for _ in range(n)]
        try:
            pids = [c.pid for c in children]
            slow = median_ms(lambda pids=pids: psutil_pass(pids), args.runs)
            fast = median_ms(lambda pids=pids: sample_trees(pids), args.runs)
            idle = 100 * fast / 1000 / args.interval
            print(f"{n:>5} | {slow:>21.2f} | {fast:>17.2f} | {slow / fast:>5.1f}x | {idle:.3f} % of one core")
        finally:
            for child in children:
                os.killpg(child.pid, signal.SIGKILL)
            for child in children:
                child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
