"""Servers nobody here wrote, run under a real daemon: PostgreSQL and gunicorn.

PostgreSQL's backends and auxiliary processes each call setsid(), so they leave the postmaster's process
group: a postmaster killed with SIGKILL used to leave a busy backend holding its shared memory, and every
new postmaster then failed ("pre-existing shared memory block is still in use"). gunicorn recycles its
workers (--max-requests), whose cpu must still count. Skipped where the server is not installed (CI
installs both: .ci/run).
"""

# ruff: noqa: F811 - the fixture `orch` is imported from the module that defines it

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import wait_for
from test_daemon import Orchestrator, alive, orch, process  # noqa: F401

POSTGRES_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
# A busy backend: computing, it never looks whether its postmaster still lives (pg_sleep would notice).
BUSY = "DO $$ BEGIN LOOP PERFORM 1; END LOOP; END $$"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def pg_data() -> Iterator[Path]:
    """An initialised, empty cluster directory that the postgres user owns (PostgreSQL refuses root)."""
    if not POSTGRES_BIN or not os.path.exists(f"{POSTGRES_BIN[-1]}/postgres"):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user")
    root = Path(tempfile.mkdtemp(prefix="orch-pg-"))
    try:
        os.chmod(root, 0o755)
        data = root / "data"
        data.mkdir(mode=0o700)
        shutil.chown(data, "postgres", "postgres")
        subprocess.run([f"{POSTGRES_BIN[-1]}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres"],
                       user="postgres" if os.geteuid() == 0 else None, check=True, capture_output=True, timeout=120)
        yield data
    finally:
        _kill_cluster_processes(data)
        shutil.rmtree(root, ignore_errors=True)


def _kill_cluster_processes(data: Path) -> None:
    """Whatever of this cluster still runs, found by its working directory (PostgreSQL writes its process
    titles over its environment, so the tests' session mark cannot find a backend a failed test left)."""
    for proc in psutil.process_iter(["pid"]):
        try:
            if Path(proc.cwd()) == data:
                proc.kill()
        except (psutil.Error, OSError):
            continue


def psql(data: Path, port: int, sql: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run([f"{POSTGRES_BIN[-1]}/psql", "-h", str(data), "-p", str(port), "-U", "postgres", "-Atc", sql],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("limits", ["auto", "watchdog"])
def test_postgres_killed_with_sigkill_comes_back_without_its_old_backends(orch: Orchestrator, pg_data: Path,
                                                                         limits: str) -> None:
    # With "watchdog" no replica has a cgroup: the subreaper alone must end the backends, which carry no
    # marks (PostgreSQL writes its titles over its environment), beside an older replica that could be
    # their ancestor as far as start times go.
    if limits == "watchdog":
        daemon = orch.popen("daemon", "--limits", "watchdog")
        wait_for(orch.answers, timeout=15, what="the daemon")
        assert daemon.poll() is None
    port = free_port()
    command = [f"{POSTGRES_BIN[-1]}/postgres", "-D", str(pg_data), "-k", str(pg_data), "-p", str(port),
               "-c", "listen_addresses="]
    spec: dict[str, object] = {"workingDir": str(pg_data), "shutdown": {"signal": "SIGINT", "timeoutSeconds": 10}}
    if os.geteuid() == 0:
        spec["user"] = "postgres"
    orch.ok("apply", "-f", str(orch.write("m/app.yaml", process("app"))))
    orch.wait_running("app")
    manifest = orch.write("m/pg.yaml", process("pg", command, **spec))
    orch.ok("apply", "-f", str(manifest))
    first = orch.wait_running("pg")["pg"][0]
    wait_for(lambda: psql(pg_data, port, "select 1").stdout.strip() == "1", timeout=30, what="postgres answers")

    client = subprocess.Popen([f"{POSTGRES_BIN[-1]}/psql", "-h", str(pg_data), "-p", str(port), "-U", "postgres",
                               "-c", BUSY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def busy_backend() -> int | None:
            for child in psutil.Process(first).children():
                try:
                    if " DO" in " ".join(child.cmdline()):
                        return child.pid
                except psutil.NoSuchProcess:
                    continue
            return None

        backend = wait_for(busy_backend, timeout=15, what="a busy backend")
        assert os.getsid(backend) == backend, "the backend did not leave the group: nothing would be proven"
        old_tree = [p.pid for p in psutil.Process(first).children()]

        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not alive(backend), what="the busy backend ended with its postmaster")
        orch.wait_running("pg", replacing={"pg": [first]}, timeout=15)
        wait_for(lambda: psql(pg_data, port, "select 1").stdout.strip() == "1", timeout=30,
                 what="a new postmaster answers")
        assert not [pid for pid in old_tree if alive(pid)], "processes of the killed postmaster still run"
        starts = [e for e in orch.events("Started", "pg")]
        assert len(starts) <= 3, f"the new postmaster should not fail over and over: {starts}"
        orch.ok("shutdown")  # here: the fixture would SIGKILL a daemon this test started itself
    finally:
        client.kill()
        client.wait()


def test_gunicorn_recycling_workers_keeps_its_cpu_and_stops_clean(orch: Orchestrator) -> None:
    pytest.importorskip("gunicorn")
    port = free_port()
    app = orch.write("app/wsgi.py", (
        "def app(environ, start_response):\n"
        "    total = sum(i * i for i in range(200_000))  # some cpu in the worker, which is then recycled\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [str(total).encode()]\n"))
    command = [sys.executable, "-m", "gunicorn", "--workers", "2", "--max-requests", "3", "--bind",
               f"127.0.0.1:{port}", "--chdir", str(app.parent), "wsgi:app"]
    manifest = orch.write("m/web.yaml", process(
        "web", command, shutdown={"signal": "SIGTERM", "timeoutSeconds": 10},
        probes={"readiness": {"http": {"port": port, "path": "/"}, "periodSeconds": 0.2}}))
    orch.ok("apply", "-f", str(manifest))
    master = orch.wait_running("web", timeout=30)["web"][0]
    wait_for(lambda: orch.objects()["web"]["replica_status"][0].get("ready"), timeout=30, what="web ready")

    import http.client

    workers_seen: set[int] = set()
    for _ in range(30):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
        workers_seen.update(c.pid for c in psutil.Process(master).children())
    assert len(workers_seen) > 2, "no worker was recycled: the test would prove nothing"

    from orchestrator.host.observe import sample_trees

    _, cpu, _ = sample_trees([master])[master]
    own = sum(psutil.Process(master).cpu_times()[:2])
    assert cpu > own + 0.05, f"the tree's cpu ({cpu:.2f} s) misses the recycled workers' (master {own:.2f} s)"

    orch.ok("shutdown")
    wait_for(lambda: not alive(master), timeout=20, what="gunicorn stopped")
    assert not [pid for pid in workers_seen if alive(pid)], "a gunicorn worker outlived the shutdown"
