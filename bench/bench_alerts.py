"""Alerting and schedules: how soon a breach is notified, what evaluating rules costs the daemon, and what rules
and schedules add to an idle daemon.

    python bench/bench_alerts.py [--runs 5] [--processes 200] [--rules 20] [--idle-seconds 20] [--json]

1. Latency: a daemon (`--metrics-interval 1`) keeps a rule `cpu abovePercent 50, forSeconds 2` on a CPU
   burner and a webhook Notifier (`groupWaitSeconds 1`) to a receiver on loopback. From the burner's start
   (its Started event) to the firing notification's arrival; RUNS times (a new burner each), median. The
   floor is the bound the design promises: forSeconds + one sampling interval + groupWait.
2. Cost: Alerting.evaluate (daemon/alerting.py) in this process over PROCESSES running replicas (records
   and samples as the daemon holds them) and RULES rules (cpu, memory, restarts, down, notReady, limitHealth
   in turn, each selecting every process), thread CPU time per pass, median of 50. Floor: the same pass with
   no rule. Target: under 1 ms.
3. Idle: a daemon with PROCESSES sleepers, wake-ups per second over IDLE_SECONDS (voluntary and involuntary
   context switches of all its threads), with RULES rules and two hourly CronJobs, beside the same daemon
   without them (the floor). Target: no more than 0.1 % of a core and no wake-ups beyond the due times.

This script makes itself a child subreaper: whatever the daemons leave behind is killed and reaped.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import BenchError, environment, figure_row, log, run_bench, table_lines

from orchestrator.cli.client import Client

CONDITIONS = ["cpu: {abovePercent: 90}", "memory: {above: 1Gi}", "restarts: {moreThan: 5, withinSeconds: 600}",
              "down: {}", "notReady: {}", "limitHealth: {band: Critical}"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Receiver:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.arrivals.append((time.time(), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Daemon:
    def __init__(self, root: Path, *flags: str) -> None:
        self.state = root / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.cli = [sys.executable, "-m", "orchestrator", "--state-dir", str(self.state)]
        self.out = open(root / "daemon.out", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*self.cli, "daemon", *flags], stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while not Client(self.state).ping():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise BenchError("the daemon did not answer")
            time.sleep(0.05)

    def run(self, *args: str) -> str:
        done = subprocess.run([*self.cli, *args], check=False, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        try:
            Client(self.state).request("POST", "/shutdown")
            self.proc.wait(timeout=60)
        except Exception as error:  # noqa: BLE001 - run_bench kills what is left
            log(f"shutdown: {error}")
        self.out.close()


def latency(runs: int) -> dict[str, Any]:
    for_seconds, interval, group_wait = 2.0, 1.0, 1.0
    receiver = Receiver()
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        root = Path(tmp)
        daemon = Daemon(root, "--metrics-interval", str(interval))
        try:
            manifests = root / "m"
            manifests.mkdir()
            (manifests / "alerting.yaml").write_text(f"""apiVersion: orchestrator/v1
kind: AlertRule
metadata: {{name: hot}}
spec:
  selector: {{matchLabels: {{role: burner}}}}
  condition: {{cpu: {{abovePercent: 50}}}}
  forSeconds: {for_seconds}
  notify: [hook]
---
apiVersion: orchestrator/v1
kind: Notifier
metadata: {{name: hook}}
spec:
  webhook: {{url: "http://127.0.0.1:{receiver.port}/"}}
  groupWaitSeconds: {group_wait}
  groupIntervalSeconds: 1
""")
            for run in range(runs):
                burner = manifests / "burner.yaml"
                burner.write_text(f"""apiVersion: orchestrator/v1
kind: Process
metadata: {{name: burner{run}, labels: {{role: burner}}}}
spec: {{command: [python3, -c, "while True: pass"], shutdown: {{timeoutSeconds: 0.5}}}}
""")
                before = len(receiver.arrivals)
                daemon.run("apply", "-f", str(manifests), "--prune")
                deadline = time.monotonic() + 30
                while not [body for _, body in receiver.arrivals[before:] if body.get("status") == "firing"]:
                    if time.monotonic() > deadline:
                        raise BenchError("no firing notification within 30 s")
                    time.sleep(0.02)
                arrived = next(at for at, body in receiver.arrivals[before:] if body.get("status") == "firing")
                started = [e for e in Client(daemon.state).request("GET", f"/events?key=burner{run}")["events"]
                           if e["type"] == "Started"]
                times.append(arrived - started[0]["time"])
                burner.unlink()
                daemon.run("apply", "-f", str(manifests), "--prune")  # the burner goes: its alert resolves
                time.sleep(1.5)  # (not measured) the resolved notification goes out before the next burner
        finally:
            daemon.stop()
            receiver.close()
    return {"runs": runs, "seconds": times, "median": statistics.median(times),
            "bound": for_seconds + interval + group_wait}


def evaluation_cost(processes: int, rules: int) -> dict[str, Any]:
    """Alerting.evaluate in this process, over fake run state of `processes` running replicas."""
    from orchestrator.core.model import ProcessIdentity, ReplicaId, ReplicaRecord
    from orchestrator.daemon.alerting import Alerting
    from orchestrator.host.metrics import Sample
    from orchestrator.manifests.alerting import kept_from_document
    from orchestrator.manifests.files import ReadLimits, Source
    from orchestrator.manifests.loader import load_sources
    from orchestrator.planning import graph

    text = "---\n".join(f"apiVersion: orchestrator/v1\nkind: Process\nmetadata: {{name: p{i}, labels: {{app: x}}}}\n"
                        "spec: {command: [sleep, '1'], resources: {limits: {memory: 256Mi}}}\n"
                        for i in range(processes))
    specs = load_sources([Source("/bench/p.yaml", text)], ReadLimits(), variables={})
    desired = graph.desired_state(specs)

    class Store:
        def __init__(self) -> None:
            self.meta: dict[str, str] = {}

        def get_meta(self, key: str) -> str | None:
            return self.meta.get(key)

        def set_meta(self, key: str, value: str) -> None:
            self.meta[key] = value

    class Sampler:
        def latest(self, rid: ReplicaId) -> Sample:
            return Sample(time.time(), 12.5, 3.0, 40 << 20)

    class Reconciler:
        pass

    reconciler: Any = Reconciler()
    reconciler.desired = desired
    reconciler.records = {ReplicaId(s.key, 0): ReplicaRecord(spec=s, process=ProcessIdentity(1000 + i, 1),
                                                            started_at=1.0, started=True, ready=True)
                          for i, s in enumerate(specs)}
    reconciler.waiting = {}
    events: list[Any] = []

    def passes(count: int) -> list[float]:
        alerting = Alerting(Store(), events.append, time.time, Sampler(), lambda fn: None)  # type: ignore[arg-type]
        rule_specs = [kept_from_document({"apiVersion": "orchestrator/v1", "kind": "AlertRule",
                                          "metadata": {"name": f"r{i}"},
                                          "spec": {"selector": {"matchLabels": {"app": "x"}},
                                                   "condition": json.loads(_flow_json(CONDITIONS[i % len(CONDITIONS)])),
                                                   "forSeconds": 60}}) for i in range(count)]
        alerting.put(rule_specs)  # type: ignore[arg-type]
        costs = []
        for _ in range(50):
            started = time.thread_time()
            alerting.evaluate(reconciler)
            costs.append((time.thread_time() - started) * 1000)
        alerting.close()
        return costs

    passes(rules)  # warm (imports, caches)
    floor, ours = passes(0), passes(rules)
    return {"processes": processes, "rules": rules, "floor_ms": statistics.median(floor),
            "ours_ms": statistics.median(ours)}


def _flow_json(condition: str) -> str:
    """`cpu: {abovePercent: 90}` as JSON."""
    import yaml

    return json.dumps(yaml.safe_load("{" + condition + "}"))


def idle(processes: int, rules: int, seconds: float) -> dict[str, Any]:
    figures = {}
    for name, extra in (("floor", False), ("ours", True)):
        with tempfile.TemporaryDirectory(prefix="bench-alerts-idle-") as tmp:
            root = Path(tmp)
            manifests = root / "m"
            manifests.mkdir()
            (manifests / "p.yaml").write_text("---\n".join(
                f"apiVersion: orchestrator/v1\nkind: Process\nmetadata: {{name: p{i}, labels: {{app: x}}}}\n"
                "spec: {command: [sleep, '3600'], shutdown: {timeoutSeconds: 0.5}, resources: {limits: {memory: 256Mi}}}\n"
                for i in range(processes)))
            if extra:
                port = free_port()
                docs = [f"apiVersion: orchestrator/v1\nkind: AlertRule\nmetadata: {{name: r{i}}}\nspec:\n"
                        f"  selector: {{matchLabels: {{app: x}}}}\n  condition: {{{CONDITIONS[i % len(CONDITIONS)]}}}\n"
                        "  forSeconds: 60\n  notify: [hook]\n" for i in range(rules)]
                docs.append(f"apiVersion: orchestrator/v1\nkind: Notifier\nmetadata: {{name: hook}}\nspec:\n"
                            f"  webhook: {{url: 'http://127.0.0.1:{port}/'}}\n")
                docs += [f"apiVersion: orchestrator/v1\nkind: CronJob\nmetadata: {{name: c{i}}}\nspec:\n"
                         f"  schedule: '{i} * * * *'\n  jobTemplate: {{command: ['true']}}\n" for i in range(2)]
                (manifests / "a.yaml").write_text("---\n".join(docs))
            daemon = Daemon(root)
            try:
                daemon.run("apply", "-f", str(manifests), "--wait")
                time.sleep(3)  # settle: the starts' work is done
                before, cpu_before = _switches(daemon.proc.pid), _cpu(daemon.proc.pid)
                time.sleep(seconds)
                after, cpu_after = _switches(daemon.proc.pid), _cpu(daemon.proc.pid)
                figures[name] = {"wakeups_per_s": (after - before) / seconds,
                                 "cpu_percent": 100 * (cpu_after - cpu_before) / seconds}
            finally:
                daemon.stop()
    return {"processes": processes, "rules": rules, "seconds": seconds, **figures}


def _switches(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    report = {"env": environment(), "latency": latency(args.runs)}
    log(json.dumps(report["latency"]))
    report["cost"] = evaluation_cost(args.processes, args.rules)
    log(json.dumps(report["cost"]))
    report["idle"] = idle(args.processes, args.rules, args.idle_seconds)
    log(json.dumps(report["idle"]))
    return report


def table(report: dict[str, Any]) -> str:
    lat, cost, quiet = report["latency"], report["cost"], report["idle"]
    rows = [
        figure_row("breach -> notification, median (s)", lat["runs"], lat["bound"], lat["median"], "{:.2f}",
                   "<= for + interval + groupWait", lat["median"] <= lat["bound"]),
        figure_row(f"evaluation pass, {cost['rules']} rules (ms CPU)", cost["processes"], cost["floor_ms"],
                   cost["ours_ms"], "{:.3f}", "< 1 ms", cost["ours_ms"] < 1.0),
        figure_row("idle wake-ups/s, rules + 2 CronJobs", quiet["processes"], quiet["floor"]["wakeups_per_s"],
                   quiet["ours"]["wakeups_per_s"], "{:.2f}", "no more than the floor + due times", None),
        figure_row("idle cpu (% of a core)", quiet["processes"], quiet["floor"]["cpu_percent"],
                   quiet["ours"]["cpu_percent"], "{:.3f}", "<= 0.1 % more", quiet["ours"]["cpu_percent"]
                   - quiet["floor"]["cpu_percent"] <= 0.1),
    ]
    env = report["env"]
    head = (f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; latency runs "
            f"{', '.join(f'{s:.2f}' for s in lat['seconds'])} s; idle over {quiet['seconds']:g} s (metrics every 20 s)")
    return "\n".join([head, *table_lines(rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return run_bench(lambda: measure(args), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
