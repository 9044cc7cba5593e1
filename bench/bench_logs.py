"""Log benchmark: what capturing output costs the writer and the daemon, ours beside the floor.

Replicas write their stdout and stderr straight into their log file (the daemon is not in the data path), and
the daemon keeps a side index of when each part of a file was written (host/logindex.py). This measures:

- flood: one Job writing SIZE MB of 100-byte lines (`yes | head -c`) as fast as it can, under the daemon
  (its own wall time, taken by the Job, and the daemon's cpu meanwhile), beside the same command run here with
  its output appended to a file (the floor);
- indexed: the same writer with and without the indexer watching its file, in turn in one process (no daemon:
  the index's own cost to the writer, free of a whole daemon's noise);
- chatty: K replicas each printing an 80-byte line every millisecond for SECONDS: the daemon's cpu, and how
  large the index grew beside the logs;
- idle: K sleeping replicas for SECONDS: the daemon's cpu.

    python bench/bench_logs.py [--tree PATH] [--size-mb 200] [--repeat 5] [--replicas 10] [--seconds 10] [--json]

--tree measures the `orchestrator` of another checkout (a `git archive` of an older commit, say), for a
before/after comparison on the same host in the same hour. The daemon runs as our child in a temporary state
dir; cpu is read from /proc/PID/stat (utime + stime, all its threads), so measuring does not wake it.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchlib import (
    BenchError,
    cpu_seconds,
    environment,
    figure_row,
    imported_package,
    kill_and_reap_orphans,
    log,
    measured_env,
    run_bench,
    table_lines,
    tree_commit,
    warm_bytecode,
)

ROOT = Path(__file__).resolve().parent.parent
LINE = "x" * 99  # with its newline, 100 bytes


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


class Daemon:
    """`orchestrator daemon` as our child in a temporary state dir of its own."""

    def __init__(self, tree: Path, env: dict[str, str], work: Path) -> None:
        self.tree, self.env, self.work = tree, env, work
        self.state = work / "state"
        self.state.mkdir(mode=0o700)
        self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "--state-dir", str(self.state), "daemon"],
                                     env=env, cwd=tree, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: (self.state / "orchestrator.sock").exists() or self.proc.poll() is not None, 20, "the daemon")
        if self.proc.poll() is not None:
            raise BenchError(f"the daemon exited with code {self.proc.returncode}")

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "orchestrator", "--state-dir", str(self.state), *args],
                              env=self.env, cwd=self.tree, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise BenchError(f"orchestrator {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def apply(self, text: str) -> None:
        path = self.work / "m.yaml"
        path.write_text(text)
        self.cli("apply", "-f", str(path))

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        kill_and_reap_orphans()


def document(kind: str, name: str, command: list[str], replicas: int = 1, max_bytes: str = "1Gi") -> str:
    extra = f"  replicas: {replicas}\n" if kind == "Process" else "  backoffLimit: 0\n"
    quoted = ", ".join(json.dumps(word) for word in command)  # JSON strings are YAML ones, escapes and all
    return (f"apiVersion: orchestrator/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n  command: [{quoted}]\n"
            f"{extra}  logs: {{maxBytes: {max_bytes}, keep: 1}}\n  shutdown: {{timeoutSeconds: 1}}\n")


def flood_command(size: int, stamps: Path) -> str:
    return (f"date +%s.%N > {stamps}.0; yes {LINE} | head -c {size}; date +%s.%N > {stamps}.1")


def stamped_seconds(stamps: Path) -> float:
    return float(Path(f"{stamps}.1").read_text()) - float(Path(f"{stamps}.0").read_text())


def flood(tree: Path, env: dict[str, str], size_mb: int, max_bytes: str, repeat: int) -> dict[str, Any]:
    """`repeat` floods (each beside a floor run just before it) under one daemon; medians."""
    size = size_mb * 1_000_000
    floors, ours, cpus, indexes = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as folder:
        work = Path(folder)
        daemon = Daemon(tree, env, work)
        try:
            for r in range(repeat):
                floor_out = work / "floor.log"
                with open(floor_out, "ab") as out:
                    subprocess.run(["/bin/sh", "-c", flood_command(size, work / f"floor{r}")], stdout=out, check=True)
                floors.append(stamped_seconds(work / f"floor{r}"))
                floor_out.unlink()
                before = cpu_seconds(daemon.proc.pid)
                began = time.monotonic()
                stamps = work / f"ours{r}"
                daemon.apply(document("Job", f"flood{r}", ["/bin/sh", "-c", flood_command(size, stamps)],
                                      max_bytes=max_bytes))
                wait_for(lambda stamps=stamps: Path(f"{stamps}.1").exists(), 300, "the flood to finish")
                wall = time.monotonic() - began
                time.sleep(0.2)  # the last look at its log
                cpus.append(100 * (cpu_seconds(daemon.proc.pid) - before) / wall)
                ours.append(stamped_seconds(stamps))
                logs = daemon.state / "logs" / "default"
                indexes.append(sum(p.stat().st_size for p in logs.glob(f"flood{r}.0.idx*")))
                log(f"[flood {max_bytes}] run {r + 1}/{repeat}: floor {size_mb / floors[-1]:.0f} MB/s, ours "
                    f"{size_mb / ours[-1]:.0f} MB/s, daemon cpu {cpus[-1]:.1f} %, index {indexes[-1]} bytes")
        finally:
            daemon.stop()
    ratios = [f / o for f, o in zip(floors, ours)]
    return {"size_mb": size_mb, "max_bytes": max_bytes, "repeat": repeat,
            "floor_mb_s": size_mb / statistics.median(floors), "ours_mb_s": size_mb / statistics.median(ours),
            "ratio": statistics.median(ratios), "daemon_cpu_pct": statistics.median(cpus),
            "index_bytes": statistics.median(indexes)}


INDEXED = textwrap.dedent("""
    import os, statistics, subprocess, sys, tempfile, time
    from pathlib import Path
    from orchestrator.core.model import ReplicaId
    from orchestrator.host.logindex import LogIndexer
    from orchestrator.host.logs import log_path, open_log

    size, repeat = int(sys.argv[1]), int(sys.argv[2])
    command = "yes %s | head -c %d" % ("x" * 99, size)
    folder = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    rid = ReplicaId("default/flood", 0)
    seconds = {"alone": [], "indexed": []}
    for r in range(repeat):
        for how in seconds:
            log = log_path(folder, rid)
            log.unlink(missing_ok=True)
            fd = open_log(folder, rid)
            indexer = None
            if how == "indexed":
                indexer = LogIndexer(folder)
                indexer.starting(rid, time.time(), None)
            began = time.perf_counter()
            subprocess.run(["/bin/sh", "-c", command], stdout=fd, check=True)
            seconds[how].append(time.perf_counter() - began)
            os.close(fd)
            if indexer is not None:
                indexer.close()
    print(" ".join(str(statistics.median(v)) for v in seconds.values()))
""")


def indexed(tree: Path, env: dict[str, str], size_mb: int, repeat: int) -> dict[str, Any] | None:
    """The writer alone, and beside the daemon's log indexer watching its file (no daemon otherwise), in turn
    in one process: what the index costs the writer, free of the noise of a whole daemon. None for a tree
    that has no indexer."""
    if not (tree / "orchestrator" / "host" / "logindex.py").exists():
        return None
    done = subprocess.run([sys.executable, "-c", INDEXED, str(size_mb * 1_000_000), str(repeat)], env=env, cwd=tree,
                          capture_output=True, text=True, check=True, timeout=600)
    alone, with_index = (float(word) for word in done.stdout.split())
    return {"size_mb": size_mb, "repeat": repeat, "alone_mb_s": size_mb / alone, "indexed_mb_s": size_mb / with_index}


def chatty(tree: Path, env: dict[str, str], replicas: int, seconds: float, idle: bool) -> dict[str, Any]:
    program = ("import sys, time\nline = 'y' * 79 + '\\n'\nwhile True:\n    sys.stdout.write(line); "
               "sys.stdout.flush(); time.sleep(0.001)")
    command = ["sleep", "3600"] if idle else [sys.executable, "-c", program]
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as folder:
        work = Path(folder)
        daemon = Daemon(tree, env, work)
        try:
            daemon.apply(document("Process", "chatty", command, replicas=replicas))
            logs = daemon.state / "logs" / "default"
            wait_for(lambda: len(list(logs.glob("chatty.*.log"))) == replicas, 30, "every replica's log")
            time.sleep(1.0)  # past the starts
            sizes = {p: p.stat().st_size for p in logs.glob("chatty.*")}
            before, began = cpu_seconds(daemon.proc.pid), time.monotonic()
            time.sleep(seconds)
            cpu, wall = cpu_seconds(daemon.proc.pid) - before, time.monotonic() - began
            grown = {p: p.stat().st_size - sizes.get(p, 0) for p in logs.glob("chatty.*")}
        finally:
            daemon.stop()
    logged = sum(v for p, v in grown.items() if ".log" in p.name)
    index = sum(v for p, v in grown.items() if ".idx" in p.name)
    return {"replicas": replicas, "seconds": wall, "daemon_cpu_pct": 100 * cpu / wall,
            "log_bytes_per_s": logged / wall, "index_bytes_per_s": index / wall}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    tree = Path(args.tree).resolve()
    env = measured_env(tree)
    warm_bytecode(tree, env, [sys.executable, "-m", "orchestrator", "--version"])
    report: dict[str, Any] = {"environment": {**environment(), "package": imported_package(tree, env),
                                              "tree_commit": tree_commit(tree)}}
    log(f"[flood] {args.size_mb} MB, no rotation")
    report["flood"] = flood(tree, env, args.size_mb, "1Gi", args.repeat)
    log(f"[flood] {report['flood']}")
    log(f"[flood] {args.size_mb} MB, rotated at 10Mi")
    report["flood_rotated"] = flood(tree, env, args.size_mb, "10Mi", args.repeat)
    log(f"[flood_rotated] {report['flood_rotated']}")
    report["indexed"] = indexed(tree, env, args.size_mb, args.repeat * 2)
    log(f"[indexed] {report['indexed']}")
    log(f"[chatty] {args.replicas} replicas, {args.seconds:g} s")
    report["chatty"] = chatty(tree, env, args.replicas, args.seconds, idle=False)
    log(f"[chatty] {report['chatty']}")
    report["idle"] = chatty(tree, env, args.replicas, args.seconds, idle=True)
    log(f"[idle] {report['idle']}")
    return report


def table(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; orchestrator from "
             f"{env['package']}" + (f" at {env['tree_commit']}" if env.get("tree_commit") else "")]
    body = []
    for key, label in (("flood", "flood, no rotation"), ("flood_rotated", "flood, rotated at 10Mi")):
        f = report[key]
        body.append(figure_row(f"{label}: writer MB/s (median of {f['repeat']})", f["size_mb"], f["floor_mb_s"],
                               f["ours_mb_s"], "{:.0f}", ">= 0.9x floor", f["ratio"] >= 0.9))
        body.append(figure_row("  median of the runs' ratios", "", None, f["ratio"], "{:.2f}", "-", None))
        body.append(figure_row("  daemon cpu, % of a core", "", None, f["daemon_cpu_pct"], "{:.1f}", "-", None))
        body.append(figure_row("  index bytes", "", None, f["index_bytes"], "{:.0f}", "-", None))
    x = report.get("indexed")
    if x is not None:
        body.append(figure_row(f"writer beside the indexer alone, MB/s (median of {x['repeat']})", x["size_mb"],
                               x["alone_mb_s"], x["indexed_mb_s"], "{:.0f}", ">= 0.95x", 
                               x["indexed_mb_s"] >= 0.95 * x["alone_mb_s"]))
    c, i = report["chatty"], report["idle"]
    body.append(figure_row("chatty (1 line/ms each): daemon cpu, %", c["replicas"], None, c["daemon_cpu_pct"],
                           "{:.2f}", "-", None))
    body.append(figure_row("  log bytes/s", "", None, c["log_bytes_per_s"], "{:.0f}", "-", None))
    body.append(figure_row("  index bytes/s", "", None, c["index_bytes_per_s"], "{:.0f}", "-", None))
    body.append(figure_row("idle: daemon cpu, %", i["replicas"], None, i["daemon_cpu_pct"], "{:.3f}", "-", None))
    return "\n".join([*lines, *table_lines(body)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(ROOT), help="the checkout whose orchestrator is measured")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5, help="floods of each kind (medians)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    return run_bench(lambda: measure(args), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
