"""The control API over TCP with a token (`daemon --http`) beside the same request over the Unix socket.

    python bench/bench_http.py [--objects 200] [--requests 200] [--json]

A daemon runs OBJECTS sleeping processes; `GET /api/v1/objects` is asked REQUESTS times each way, each on a
new connection as the CLI makes one: over the owner-only Unix socket (the floor: what the CLI pays) and over
loopback TCP with `Authorization: Bearer` of a read token (the Host check, the token's digest compared with
every stored one, then the same handler). Target, from the API issue: TCP at most 1.5x the Unix socket
(medians). This script makes itself a child subreaper: whatever the daemon leaves behind is killed and
reaped, whatever happens.
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
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import BenchError, environment, figure_row, log, run_bench, table_lines

from orchestrator.cli.client import Client
from orchestrator.host.tokens import create_token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(objects: int, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        root = Path(tmp)
        state, manifests = root / "state", root / "m"
        manifests.mkdir()
        for i in range(objects):
            (manifests / f"p{i}.yaml").write_text(
                f"apiVersion: orchestrator/v1\nkind: Process\nmetadata: {{name: p{i}}}\n"
                "spec: {command: [sleep, '3600'], shutdown: {timeoutSeconds: 0.5}}\n")
        state.mkdir()
        token = create_token(state, "bench", "read", time.time())
        port = free_port()
        cli = [sys.executable, "-m", "orchestrator", "--state-dir", str(state)]
        with open(root / "daemon.out", "wb") as out:
            daemon = subprocess.Popen([*cli, "daemon", "--http", f"127.0.0.1:{port}"], stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while not Client(state).ping():
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise BenchError("the daemon did not answer")
                time.sleep(0.05)
            subprocess.run([*cli, "apply", "-f", str(manifests)], check=True, capture_output=True, timeout=120)

            def over_unix() -> int:
                return len(Client(state).request("GET", "/objects")["objects"])

            def over_tcp() -> int:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                try:
                    connection.request("GET", "/api/v1/objects", headers={"Authorization": f"Bearer {token}"})
                    response = connection.getresponse()
                    body = response.read()
                    if response.status != 200:
                        raise BenchError(f"GET over TCP answered {response.status}: {body[:200]!r}")
                    return len(json.loads(body)["objects"])
                finally:
                    connection.close()

            for work in (over_unix, over_tcp):  # warm both paths (imports, caches) before timing
                if work() != objects:
                    raise BenchError(f"{work.__name__} saw another number of objects than {objects}")
            times: dict[str, list[float]] = {"unix": [], "tcp": []}
            for _ in range(requests):  # interleaved, so that a slow moment of the machine hits both alike
                for name, work in (("unix", over_unix), ("tcp", over_tcp)):
                    started = time.perf_counter()
                    work()
                    times[name].append((time.perf_counter() - started) * 1000)
            report = {"env": environment(), "objects": objects, "requests": requests,
                      **{f"{name}_ms": {"p50": statistics.median(v), "p90": sorted(v)[int(len(v) * 0.9)]}
                         for name, v in times.items()}}
            log(json.dumps(report))
            return report
        finally:
            try:
                Client(state).request("POST", "/shutdown")
                daemon.wait(timeout=60)
            except Exception as error:  # noqa: BLE001 - whatever is left is killed by run_bench
                log(f"shutdown: {error}")


def table(report: dict[str, Any]) -> str:
    n, unix, tcp = report["objects"], report["unix_ms"], report["tcp_ms"]
    rows = [
        figure_row("GET objects, median (ms)", n, unix["p50"], tcp["p50"], "{:.2f}", "<= 1.5x",
                   tcp["p50"] <= 1.5 * unix["p50"]),
        figure_row("GET objects, p90 (ms)", n, unix["p90"], tcp["p90"], "{:.2f}", "-", None),
    ]
    env = report["env"]
    head = (f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; {report['requests']} requests "
            "each way, a new connection each; floor: the Unix socket, ours: loopback TCP with a read token")
    return "\n".join([head, *table_lines(rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return run_bench(lambda: measure(args.objects, args.requests), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
