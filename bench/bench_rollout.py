"""Rollouts under load: a 4-replica gunicorn app on a socket the daemon owns, changed while a load generator
on loopback sends steady requests, with RollingUpdate and with Recreate in the same run; then a bad build
(it exits at once) rolled back by itself. Counts failed requests (refused, reset, timed out, not 200) and
the fewest replicas that served while it went on.

    python bench/bench_rollout.py [--rate 200] [--replicas 4] [--json]

Recreate runs twice: with the socket the daemon owns (connections wait in its queue while no replica
runs) and with each replica binding the port itself (what a manifest without sockets gets: refusals).
The floor beside each figure is the same load against the app left alone for as long (what fails without
any change: it should be 0). Targets are the rollouts issue's: 0 failed requests through a rolling update
and through a rollback, at least N - maxUnavailable replicas serving throughout. This script makes itself a
child subreaper: whatever the daemon leaves behind is killed and reaped, whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
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

from benchlib import BenchError, environment, figure_row, log, measured_env, run_bench, table_lines

from orchestrator.cli.client import Client

ROOT = Path(__file__).resolve().parent.parent
APP = """
import os
VERSION = os.environ["APP_VERSION"].encode()
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(VERSION)))])
    return [VERSION]
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def manifest(work: Path, port: int, version: str, replicas: int, strategy: str, bad: bool = False,
             owned: bool = True) -> str:
    """`owned`: the daemon binds the port and every replica inherits it; else each gunicorn binds it itself
    (SO_REUSEPORT, as gunicorn does with --reuse-port), the way a manifest without sockets runs."""
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    # No --bind with an owned socket: gunicorn takes LISTEN_FDS itself (systemd socket activation).
    bind = [] if owned else ["--bind", f"127.0.0.1:{port}", "--reuse-port"]
    command = ([sys.executable, "-c", "import sys; sys.exit(3)"] if bad else
               [gunicorn, "--workers", "1", "--graceful-timeout", "5", "--chdir", str(work), *bind, "app:app"])
    sockets = {"sockets": [{"name": "http", "listen": f"tcp://127.0.0.1:{port}"}]} if owned else {}
    # gunicorn says READY=1 once its arbiter runs; its worker boots just after: minReadySeconds covers it.
    readiness = {"notify": {}} if owned else {"tcp": {"port": port}, "periodSeconds": 0.2}
    spec = {
        "command": command, "replicas": replicas, "env": {"APP_VERSION": version}, **sockets,
        "probes": {"readiness": readiness}, "minReadySeconds": 1, "progressDeadlineSeconds": 60,
        "maxRestarts": 1, "restartWindowSeconds": 60, "backoff": {"initialSeconds": 0.2},
        "shutdown": {"signal": "SIGTERM", "timeoutSeconds": 10},
        "strategy": {"type": strategy},
    }
    lines = ["apiVersion: orchestrator/v1", "kind: Process", "metadata: {name: web}", "spec:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in spec.items()]
    return "\n".join(lines) + "\n"


class Load:
    """Requests at a steady rate from a few threads, each on a new connection (as most clients through a
    proxy would), with a 2 s timeout; bounded by `seconds`."""

    def __init__(self, port: int, rate: float, threads: int = 8) -> None:
        self.port = port
        self.interval = threads / rate
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self.versions: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:  # noqa: PYI034 - a final class in a script
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _run(self) -> None:
        next_at = time.monotonic()
        deadline = next_at + 600
        while not self._stop.is_set() and time.monotonic() < deadline:
            began = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read().decode()
                conn.close()
                outcome = None if response.status == 200 else f"HTTP {response.status}"
            except OSError as error:
                outcome, body = type(error).__name__, ""
            with self._lock:
                if outcome is None:
                    self.latencies.append(time.monotonic() - began)
                    self.versions[body] = self.versions.get(body, 0) + 1
                else:
                    self.failures.append(outcome)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def take(self) -> dict[str, Any]:
        """What was counted since the last take."""
        with self._lock:
            failures, latencies, versions = self.failures, self.latencies, self.versions
            self.failures, self.latencies, self.versions = [], [], {}
        return {"failed": len(failures), "kinds": sorted(set(failures)), "ok": len(latencies),
                "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) > 100 else None,
                "versions": versions}


class Daemon:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.state = work / "state"
        self.env = measured_env(ROOT)

    def cli(self, *args: str) -> str:
        argv = [sys.executable, "-m", "orchestrator", "--state-dir", str(self.state), *args]
        done = subprocess.run(argv, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def api(self, route: str, body: dict[str, Any] | None = None, method: str = "POST") -> dict[str, Any]:
        return Client(self.state, timeout=10).request(method, route, body)

    def status(self) -> dict[str, Any]:
        return self.api("/rollout", {"name": "web", "action": "status"})

    def serving(self) -> int:
        objects = self.api("/objects", None, "GET")["objects"]
        return sum(1 for o in objects for r in o["replica_status"] if r["phase"] == "Running" and r.get("ready"))

    def wait(self, done: Any, seconds: float, what: str) -> tuple[float, int]:
        """Wait for `done()`; how long it took and the fewest ready replicas seen meanwhile."""
        began = time.monotonic()
        fewest = 10**9
        while not done():
            fewest = min(fewest, self.serving())
            if time.monotonic() - began > seconds:
                raise BenchError(f"timed out after {seconds:g} s waiting for {what}")
            time.sleep(0.05)
        return time.monotonic() - began, min(fewest, self.serving())


def measure(rate: float, replicas: int) -> dict[str, Any]:
    report: dict[str, Any] = {"env": environment(), "rate": rate, "replicas": replicas, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        for strategy, owned in (("RollingUpdate", True), ("Recreate", True), ("Recreate", False)):
            name = strategy if owned else f"{strategy} (self-bound)"
            work = Path(tmp) / name.replace(" ", "-").replace("(", "").replace(")", "")
            work.mkdir()
            (work / "app.py").write_text(APP)
            port = free_port()
            daemon = Daemon(work)
            path = work / "web.yaml"
            path.write_text(manifest(work, port, "v1", replicas, strategy, owned=owned))
            try:
                daemon.cli("apply", "-f", str(path))
                daemon.wait(lambda d=daemon: d.serving() == replicas and d.status()["phase"] == "Complete", 60, "v1")
                with Load(port, rate) as load:
                    time.sleep(3)
                    floor = load.take()
                    path.write_text(manifest(work, port, "v2", replicas, strategy, owned=owned))
                    daemon.cli("apply", "-f", str(path))
                    seconds, fewest = daemon.wait(
                        lambda d=daemon: d.status()["phase"] == "Complete" and d.serving() == replicas, 120, "v2")
                    time.sleep(1)
                    changed = load.take()
                    run = {"floor": floor, "change": changed, "seconds": seconds, "fewest_serving": fewest}
                    if strategy == "RollingUpdate":
                        path.write_text(manifest(work, port, "bad", replicas, strategy, bad=True))
                        daemon.cli("apply", "-f", str(path))
                        seconds, fewest = daemon.wait(
                            lambda d=daemon: d.status()["phase"] == "RolledBack" and d.serving() == replicas, 120,
                            "the rollback")
                        time.sleep(1)
                        run["bad"] = {**load.take(), "seconds": seconds, "fewest_serving": fewest}
                report["runs"][name] = run
                log(f"{name}: {json.dumps(run)}")
            finally:
                try:
                    daemon.api("/shutdown")
                except Exception as error:  # noqa: BLE001 - whatever is left is killed by run_bench
                    log(f"shutdown: {error}")
                deadline = time.monotonic() + 20
                while (daemon.state / "orchestrator.sock").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
    return report


def table(report: dict[str, Any]) -> str:
    n = report["replicas"]
    rows = []
    rolling, recreate = report["runs"]["RollingUpdate"], report["runs"]["Recreate"]
    for label, run, target in (("rolling update", rolling, "0"), ("recreate", recreate, "-"),
                               ("recreate, self-bound", report["runs"]["Recreate (self-bound)"], "-")):
        rows.append(figure_row(f"{label}: failed requests", n, run["floor"]["failed"], run["change"]["failed"],
                               "{:.0f}", target, run["change"]["failed"] == 0 if target == "0" else None))
        rows.append(figure_row(f"{label}: p99 latency (ms)", n, run["floor"]["p99_ms"], run["change"]["p99_ms"],
                               "{:.1f}", "-", None))
        rows.append(figure_row(f"{label}: fewest serving", n, n, run["fewest_serving"], "{:.0f}",
                               f">= {n}" if label == "rolling update" else "-",
                               run["fewest_serving"] >= n if label == "rolling update" else None))
        rows.append(figure_row(f"{label}: seconds to done", n, None, run["seconds"], "{:.1f}", "-", None))
    bad = rolling["bad"]
    rows.append(figure_row("bad build: failed requests", n, rolling["floor"]["failed"], bad["failed"], "{:.0f}", "0",
                           bad["failed"] == 0))
    rows.append(figure_row("bad build: fewest serving", n, n, bad["fewest_serving"], "{:.0f}", f">= {n}",
                           bad["fewest_serving"] >= n))
    rows.append(figure_row("bad build: seconds to rolled back", n, None, bad["seconds"], "{:.1f}", "< 60", bad["seconds"] < 60))
    env = report["env"]
    head = (f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; {report['rate']:g} requests/s "
            f"on new loopback connections; floor: the same load with no change")
    kinds = {k: v["change"]["kinds"] for k, v in report["runs"].items()}
    return "\n".join([head, *table_lines(rows), f"failure kinds: {json.dumps(kinds)}"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (Path(sys.executable).parent / "gunicorn").exists():
        log("gunicorn is not installed in this environment: pip install -e '.[test]'")
        return 1
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return run_bench(lambda: measure(args.rate, args.replicas), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
