"""A real etcd cluster for tests: `members` etcd processes on 127.0.0.1 with free ports, each in its own
process group, that the tests can pause (SIGSTOP), resume and kill one by one; and the `etcd_cluster`
fixture, which always ends every process it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

START_SECONDS = 20.0
PORT_TRIES = 3


def etcd_binary() -> str | None:
    found = shutil.which("etcd")
    if found:
        return found
    return "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None


def free_ports(count: int) -> list[int]:
    """Ports free now (the kernel's pick for port 0); another program may take one before etcd binds it."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/health", timeout=0.5) as response:
            return json.loads(response.read()).get("health") == "true"
    except (OSError, ValueError, urllib.error.URLError):
        return False


class EtcdCluster:
    """`members` etcd processes forming one new cluster, their data and logs under `directory`."""

    def __init__(self, directory: Path, members: int = 3) -> None:
        self.directory = directory
        self.members = members
        self.endpoints: list[str] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._log_paths: list[Path] = []

    def start(self) -> None:
        binary = etcd_binary()
        if binary is None:
            raise RuntimeError("no etcd binary")
        for attempt in range(PORT_TRIES):
            self._launch(binary, attempt)
            failure = self._wait_healthy()
            if failure is None:
                return
            logs = "\n".join(f"--- member {i} ({path}):\n{_tail(path)}" for i, path in enumerate(self._log_paths))
            self.close()
            if "address already in use" not in logs or attempt == PORT_TRIES - 1:
                raise RuntimeError(f"etcd cluster did not start: {failure}\n{logs}")

    def _launch(self, binary: str, attempt: int) -> None:
        ports = free_ports(2 * self.members)
        clients, peers = ports[: self.members], ports[self.members :]
        names = [f"m{i}" for i in range(self.members)]
        initial = ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in zip(names, peers))
        token = f"test-{uuid.uuid4().hex}"
        # etcd reads ETCD_* variables as flags: the environment of the tests must not configure it
        env = {key: value for key, value in os.environ.items() if not key.startswith(("ETCD_", "ETCDCTL_"))}
        self.endpoints = [f"http://127.0.0.1:{port}" for port in clients]
        self._processes, self._logs, self._log_paths = [], [], []
        for name, client, peer in zip(names, clients, peers):
            log_path = self.directory / f"{name}.{attempt}.log"
            log = log_path.open("wb")
            self._logs.append(log)
            self._log_paths.append(log_path)
            command = [
                binary, "--name", name, "--data-dir", str(self.directory / f"{name}.{attempt}.data"),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", initial, "--initial-cluster-token", token, "--initial-cluster-state", "new",
                "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap",
            ]
            self._processes.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                                    stderr=subprocess.STDOUT, env=env, start_new_session=True))

    def _wait_healthy(self) -> str | None:
        """None once every member answers healthy; otherwise what went wrong."""
        deadline = time.monotonic() + START_SECONDS
        waiting = set(range(self.members))
        while waiting:
            for index in sorted(waiting):
                code = self._processes[index].poll()
                if code is not None:
                    return f"member {index} exited with {code}"
                if _healthy(self.endpoints[index]):
                    waiting.discard(index)
            if not waiting:
                return None
            if time.monotonic() > deadline:
                return f"members {sorted(waiting)} not healthy after {START_SECONDS:g} s"
            time.sleep(0.1)
        return None

    def _signal(self, index: int | None, signum: int) -> None:
        chosen = self._processes if index is None else [self._processes[index]]
        for process in chosen:
            if process.poll() is None:
                os.kill(process.pid, signum)

    def pause(self, index: int | None = None) -> None:
        self._signal(index, signal.SIGSTOP)

    def resume(self, index: int | None = None) -> None:
        self._signal(index, signal.SIGCONT)

    def leader(self) -> int:
        """The index of the member that leads the cluster now (each member's maintenance/status names it)."""
        import json
        import urllib.request

        for index, endpoint in enumerate(self.endpoints):
            request = urllib.request.Request(f"{endpoint}/v3/maintenance/status", data=b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=5) as answer:
                status = json.loads(answer.read())
            if status.get("leader") and status["leader"] == status.get("header", {}).get("member_id"):
                return index
        raise AssertionError("no member says it leads")

    def kill(self, index: int) -> None:
        process = self._processes[index]
        if process.poll() is None:
            process.kill()
        process.wait()

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)  # a stopped process dies of SIGKILL too; this keeps wait() short
                process.kill()
        for process in self._processes:
            process.wait()
        for log in self._logs:
            log.close()


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A started 3-member cluster, ended after the test whatever happened."""
    if etcd_binary() is None:
        pytest.skip("no etcd binary (apt-get install etcd-server)")
    cluster = EtcdCluster(tmp_path / "etcd", members=3)
    (tmp_path / "etcd").mkdir()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def etcd_member(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A started 1-member cluster (quicker to start), ended after the test whatever happened."""
    if etcd_binary() is None:
        pytest.skip("no etcd binary (apt-get install etcd-server)")
    cluster = EtcdCluster(tmp_path / "etcd", members=1)
    (tmp_path / "etcd").mkdir()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
