"""Rolling updates through a real daemon: one replica at a time, a socket the daemon owns shared by every
revision, a bad build rolled back and held, and a daemon SIGKILLed mid-rollout whose successor carries on
with the socket still accepting."""
# ruff: noqa: F811 - pytest fixtures imported from test_daemon are used as arguments

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from test_daemon import Orchestrator, alive, documents, orch, process, wait_for  # noqa: F401

# A server of the tests' own: takes fd 3 the systemd way, says READY=1, answers each connection with its
# version and pid. On SIGTERM it stops accepting and ends once its open connections are answered.
SERVER = """
import os, signal, socket, sys
assert os.environ["LISTEN_PID"] == str(os.getpid()), "LISTEN_PID is not this process"
assert os.environ["LISTEN_FDS"] == "1" and os.environ["LISTEN_FDNAMES"] == "http"
listener = socket.socket(fileno=3)
assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
version = sys.argv[1]
if version == "bad":
    sys.exit(3)
stopping = []
signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))  # finish what was accepted, accept no more
notify = os.environ.get("NOTIFY_SOCKET")
if notify:
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", notify)
listener.settimeout(0.05)
while not stopping:
    try:
        conn, _ = listener.accept()
    except (TimeoutError, InterruptedError):
        continue
    with conn:
        conn.settimeout(5)
        conn.recv(64)
        conn.sendall(f"{version} {os.getpid()}\\n".encode())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server(orch: Orchestrator, version: str, port: int, replicas: int = 3, **spec: Any) -> str:
    script = orch.write("server.py", SERVER)
    fields = {"replicas": replicas, "minReadySeconds": 0.3, "progressDeadlineSeconds": 30,
              "sockets": [{"name": "http", "listen": f"tcp://127.0.0.1:{port}"}],
              "probes": {"readiness": {"notify": {}}}, **spec}
    return process("web", [sys.executable, str(script), version], **fields)


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"hi\n")
        return conn.recv(64).decode().strip()


class Load:
    """Connections to the shared port, one after another, from a thread, bounded in count and time: counts
    what answered, by version, and every refusal, reset or timeout."""

    def __init__(self, port: int, limit: int = 20000, seconds: float = 60.0) -> None:
        self.port = port
        self.answers: dict[str, int] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(limit, seconds), daemon=True)
        self._thread.start()

    def _run(self, limit: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for _ in range(limit):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                version = ask(self.port).split()[0]
                self.answers[version] = self.answers.get(version, 0) + 1
            except OSError as error:
                self.failures.append(repr(error))
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def rollout(orch: Orchestrator, name: str = "web") -> dict[str, Any]:
    return orch.api("POST", "/rollout", {"name": name, "action": "status"})


def test_rolling_update_on_an_owned_socket_drops_no_connection(orch: Orchestrator) -> None:
    port = free_port()
    manifest = orch.write("m/web.yaml", server(orch, "v1", port))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("web")
    wait_for(lambda: rollout(orch)["phase"] == "Complete", what="v1 serving")
    assert ask(port).startswith("v1 ")
    load = Load(port)
    try:
        wait_for(lambda: load.answers.get("v1", 0) > 20, what="load running")
        manifest.write_text(server(orch, "v2", port))
        orch.ok("apply", "-f", str(manifest))
        wait_for(lambda: orch.events("RolloutComplete", "web"), timeout=30, what="rollout complete")
        wait_for(lambda: load.answers.get("v2", 0) > 20, what="v2 answering")
    finally:
        load.stop()
    assert load.failures == [], load.failures[:5]
    after = orch.running("web")
    assert after is not None and not set(after["web"]) & set(before["web"])
    # Start-first (sockets): a surge replica first, then one old replica at a time, highest slot first, each
    # stopped only once the one before it was replaced; the surge replica goes last.
    steps = [(e["type"], e["replica"]) for e in orch.events(name="web") if e["type"] in ("Stopping", "Started")
             and e["replica"] is not None][3:]
    assert steps == [("Started", 3), ("Stopping", 2), ("Started", 2), ("Stopping", 1), ("Started", 1),
                     ("Stopping", 0), ("Started", 0), ("Stopping", 3)], steps
    history = orch.api("POST", "/rollout", {"name": "web", "action": "history"})["revisions"]
    assert [(r["number"], r["stable"], r["status"]) for r in history] == [(1, True, ""), (2, True, "Complete")]


def test_a_bad_build_is_rolled_back_and_held_until_the_manifest_changes(orch: Orchestrator) -> None:
    port = free_port()
    manifest = orch.write("m/web.yaml", server(orch, "v1", port))
    orch.ok("apply", "-f", str(manifest))
    wait_for(lambda: orch.running("web"), what="v1 running")
    wait_for(lambda: rollout(orch)["phase"] == "Complete", what="v1 serving")
    load = Load(port)
    try:
        bad = server(orch, "bad", port, maxRestarts=1, restartWindowSeconds=60)
        manifest.write_text(bad)
        orch.ok("apply", "-f", str(manifest))
        wait_for(lambda: orch.events("RolledBack", "web"), timeout=30, what="rolled back")
    finally:
        load.stop()
    assert load.failures == [], load.failures[:5]
    status = rollout(orch)
    assert status["phase"] == "RolledBack" and status["held"]["reason"] == "NewReplicaFailed", status
    assert orch.running("web") is not None
    assert ask(port).startswith("v1 ")
    failed = [e["message"] for e in orch.events("RolloutFailed", "web")]
    assert len(failed) == 1 and "NewReplicaFailed" in failed[0]
    # The same bad manifest again: held, nothing restarted, no second rollout.
    started = len(orch.events("Started", "web"))
    applied = orch.ok("apply", "-f", str(manifest))
    assert "unchanged" in applied, applied
    assert len(orch.events("RolloutStarted", "web")) == 1 and len(orch.events("RollbackStarted", "web")) == 1
    assert len(orch.events("Started", "web")) == started
    # A different manifest lifts the hold and rolls.
    manifest.write_text(server(orch, "v3", port))
    orch.ok("apply", "-f", str(manifest))
    wait_for(lambda: rollout(orch)["phase"] == "Complete" and ask(port).startswith("v3 "), timeout=30,
             what="v3 rolled out")
    assert "held" not in rollout(orch)


def test_the_socket_is_bound_before_any_replica_and_a_taken_port_refuses_the_apply(orch: Orchestrator) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        manifest = orch.write("m/web.yaml", documents(process("other"), server(orch, "v1", port)))
        result = orch("apply", "-f", str(manifest))
        assert result.returncode != 0
        assert "EADDRINUSE" in result.stderr and "default/web" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert orch.objects() == {}  # nothing of that apply was taken up


def test_a_daemon_killed_mid_rollout_is_followed_by_one_that_carries_on_with_the_socket(orch: Orchestrator) -> None:
    port = free_port()
    manifest = orch.write("m/web.yaml", server(orch, "v1", port, minReadySeconds=1.0))
    orch.ok("apply", "-f", str(manifest))
    wait_for(lambda: rollout(orch)["phase"] == "Complete", timeout=15, what="v1 serving")
    manifest.write_text(server(orch, "v2", port, minReadySeconds=1.0))
    orch.ok("apply", "-f", str(manifest))
    wait_for(lambda: orch.events("ReplicaAvailable", "web") or None, timeout=15, what="one replica replaced")
    daemon = orch.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="daemon gone")
    # The replicas hold the socket: it still accepts while no daemon runs.
    assert ask(port).split()[0] in ("v1", "v2")
    orch.ok("apply", "-f", str(manifest))  # starts a new daemon: it adopts the replicas, takes the socket back
    wait_for(lambda: rollout(orch)["phase"] == "Complete", timeout=30, what="rollout carried on")
    answers = {ask(port).split()[0] for _ in range(10)}
    assert answers == {"v2"}
    lost = orch.events("SocketLost", "web")
    assert lost == [], lost


def test_replicas_inherit_only_their_sockets(orch: Orchestrator, tmp_path: Path) -> None:
    port = free_port()
    probe = orch.write("fds.py", "import os, json, sys\n"
                       "print(json.dumps({'fds': sorted(int(f) for f in os.listdir('/proc/self/fd')),"
                       " 'pid': os.getpid(), 'listen_pid': os.environ['LISTEN_PID'],"
                       " 'names': os.environ['LISTEN_FDNAMES']}), flush=True)\n"
                       "import time; time.sleep(60)\n")
    spec = {"sockets": [{"name": "http", "listen": f"tcp://127.0.0.1:{port}"},
                        {"name": "admin", "listen": f"unix:{tmp_path / 'admin.sock'}", "mode": "0660"}]}
    orch.ok("apply", "-f", str(orch.write("m/fds.yaml", process("fds", [sys.executable, str(probe)], **spec))))
    wait_for(lambda: orch.running("fds"), what="fds running")

    def seen() -> dict[str, Any] | None:
        out = subprocess.run([*orch.argv("logs", "fds")], capture_output=True, text=True, timeout=30, check=False).stdout
        lines = [line for line in out.splitlines() if line.strip().startswith("{")]
        return json.loads(lines[-1][lines[-1].index("{"):]) if lines else None

    found = wait_for(seen, what="fds printed")
    # /proc/self/fd listed by os.listdir holds one more: the directory being read.
    assert found["fds"][:5] == [0, 1, 2, 3, 4] and len(found["fds"]) == 6, found
    assert found["listen_pid"] == str(found["pid"]) and found["names"] == "http:admin"
    assert oct((tmp_path / "admin.sock").stat().st_mode & 0o777) == "0o660"
