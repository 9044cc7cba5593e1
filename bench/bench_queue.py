"""The priority queue's preemption: how soon a frozen Job's CPU time stops growing, and that it completes with
its output intact after it is thawed.

    python bench/bench_queue.py [--runs 5] [--json]

A daemon keeps a Queue (maxConcurrent 1, preemption Suspend) and a Low Job that burns CPU for a fixed amount
of CPU time and then prints a line. A Critical Job is applied; from the moment the apply returns, the Low
Job's CPU time (/proc/PID/stat, polled every 2 ms) is watched until it stops growing: that delay, median of
RUNS (a new pair each). The floor is one poll's period. Target: within 100 ms. Then the Critical Job ends,
the Low one is thawed and must print its line.
This script makes itself a child subreaper: whatever the daemon leaves behind is killed and reaped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import BenchError, environment, figure_row, log, run_bench, table_lines

from orchestrator.cli.client import Client

POLL = 0.002


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def measure(runs: int) -> dict[str, Any]:
    delays: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        root = Path(tmp)
        state, manifests = root / "state", root / "m"
        manifests.mkdir()
        state.mkdir()
        cli = [sys.executable, "-m", "orchestrator", "--state-dir", str(state)]
        with open(root / "daemon.out", "wb") as out:
            daemon = subprocess.Popen([*cli, "daemon"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while not Client(state).ping():
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise BenchError("the daemon did not answer")
                time.sleep(0.05)
            (manifests / "queue.yaml").write_text("apiVersion: orchestrator/v1\nkind: Queue\nmetadata: {name: q}\n"
                                                  "spec: {maxConcurrent: 1, preemption: Suspend}\n")
            for run in range(runs):
                burn = (f"import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end: pass\n"
                        f"print('low{run} complete')")
                (manifests / "low.yaml").write_text(
                    f"apiVersion: orchestrator/v1\nkind: Job\nmetadata: {{name: low{run}}}\n"
                    f"spec: {{queue: q, priorityClass: Low, command: [python3, -c, {json.dumps(burn)}]}}\n")
                subprocess.run([*cli, "apply", "-f", str(manifests)], check=True, capture_output=True, timeout=60)
                pid = _wait_pid(state, f"low{run}")
                time.sleep(0.3)  # it burns
                (manifests / "urgent.yaml").write_text(
                    f"apiVersion: orchestrator/v1\nkind: Job\nmetadata: {{name: urgent{run}}}\n"
                    "spec: {queue: q, priorityClass: Critical, command: [sleep, '0.3']}\n")
                subprocess.run([*cli, "apply", "-f", str(manifests)], check=True, capture_output=True, timeout=60)
                applied = time.monotonic()
                last, since = cpu_ticks(pid), time.monotonic()
                while time.monotonic() - since < 0.2:  # no tick for 200 ms: stopped (ticks are 10 ms)
                    time.sleep(POLL)
                    now_ticks = cpu_ticks(pid)
                    if now_ticks != last:
                        last, since = now_ticks, time.monotonic()
                    if time.monotonic() - applied > 10:
                        raise BenchError("the Low Job's CPU time did not stop")
                delays.append(max(0.0, since - applied) * 1000)
                deadline = time.monotonic() + 30
                while f"low{run} complete" not in _logs(cli, f"low{run}"):
                    if time.monotonic() > deadline:
                        raise BenchError(f"low{run} did not complete after it was thawed")
                    time.sleep(0.1)
                (manifests / "low.yaml").unlink()
                (manifests / "urgent.yaml").unlink()
                subprocess.run([*cli, "apply", "-f", str(manifests), "--prune"], check=True, capture_output=True,
                               timeout=60)
        finally:
            try:
                Client(state).request("POST", "/shutdown")
                daemon.wait(timeout=60)
            except Exception as error:  # noqa: BLE001 - run_bench kills what is left
                log(f"shutdown: {error}")
    return {"env": environment(), "runs": runs, "delays_ms": delays, "median_ms": statistics.median(delays)}


def _wait_pid(state: Path, name: str) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for document in Client(state).request("GET", "/objects")["objects"]:
            if document["name"] == name and document["replica_status"][0]["pid"]:
                return int(document["replica_status"][0]["pid"])
        time.sleep(0.02)
    raise BenchError(f"{name} did not start")


def _logs(cli: list[str], name: str) -> str:
    return subprocess.run([*cli, "logs", name], check=False, capture_output=True, text=True, timeout=30).stdout


def table(report: dict[str, Any]) -> str:
    rows = [figure_row("preempted Job's CPU stops, after apply (ms)", report["runs"], POLL * 1000,
                       report["median_ms"], "{:.1f}", "<= 100 ms", report["median_ms"] <= 100),
            figure_row("thawed Job completed with its output", report["runs"], report["runs"], report["runs"],
                       "{:.0f}", "all", True)]
    env = report["env"]
    head = (f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; runs "
            f"{', '.join(f'{d:.0f}' for d in report['delays_ms'])} ms (CPU time is counted in 10 ms ticks)")
    return "\n".join([head, *table_lines(rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return run_bench(lambda: measure(args.runs), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
