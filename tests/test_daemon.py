"""The daemon end to end: real daemons in temporary state dirs, driven through the CLI as subprocesses.

Each test gets its own state dir and daemon (`orch` fixture), which is always shut down at teardown (POST
/shutdown, what `orchestrator shutdown` sends; the CLI command itself is tested below) and, if that fails,
SIGKILLed with every process group it ran. The commands under test run as CLI
subprocesses; conditions are polled through the same API client the CLI uses (in-process, so that a
`wait_for` costs milliseconds rather than a Python start-up per poll).
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import MARKER, REPO, SESSION, wait_for

from orchestrator.cli.client import Client
from orchestrator.core.errors import UserError
from orchestrator.host.sockets import socket_path

CLI = [sys.executable, "-m", "orchestrator"]


def process(name: str, command: Sequence[str] = ("sleep", "60"), **spec: Any) -> str:
    """One Process document (flow-style YAML: JSON values are YAML) that stops fast and restarts at once."""
    labels = spec.pop("labels", None)
    metadata = {"name": name, **({"labels": labels} if labels else {})}
    body = {"command": list(command), "shutdown": {"timeoutSeconds": 0.5}, "backoff": {"initialSeconds": 0},
            **spec}
    lines = ["apiVersion: orchestrator/v1", "kind: Process", f"metadata: {json.dumps(metadata)}", "spec:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in body.items()]
    return "\n".join(lines) + "\n"


def documents(*docs: str) -> str:
    return "---\n".join(docs)


class Orchestrator:
    """One state dir, its daemon, and the CLI pointed at it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.popens: list[subprocess.Popen[str]] = []

    # -- the CLI ------------------------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        return [*CLI, "--state-dir", str(self.state), *args]

    def __call__(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), check=False, capture_output=True, text=True, timeout=timeout,
                              cwd=REPO)

    def ok(self, *args: str) -> str:
        """Run a command that must succeed; its stdout."""
        result = self(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return result.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=REPO)
        self.popens.append(child)
        return child

    def many(self, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
        """Independent read-only commands, run side by side (each is a Python start-up)."""
        children = [(command, self.popen(*command)) for command in commands]
        results = []
        for command, child in children:
            out, err = child.communicate(timeout=30)
            results.append(subprocess.CompletedProcess(command, child.returncode, out, err))
        return results

    # -- the API, for polling -----------------------------------------------------------------------

    def api(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return Client(self.state, timeout=10).request(method, route, body)

    def objects(self) -> dict[str, dict[str, Any]]:
        return {o["name"]: o for o in self.api("GET", "/objects")["objects"]}

    def pids(self) -> dict[str, list[int | None]]:
        """Each object's replica pids, by index (None: no process)."""
        return {name: [r["pid"] for r in o["replica_status"]] for name, o in self.objects().items()}

    def running(self, *names: str) -> dict[str, list[int]] | None:
        """The pids when every replica of every named object runs, else None."""
        objects = self.objects()
        for name in names:
            o = objects.get(name)
            if (o is None or o["replicas"]["running"] != o["replicas"]["desired"]
                    or any(r["phase"] != "Running" for r in o["replica_status"])):
                return None
        return {name: [int(r["pid"]) for r in objects[name]["replica_status"]] for name in names}

    def wait_running(self, *names: str, replacing: Mapping[str, list[int]] | None = None,
                     timeout: float = 5.0) -> dict[str, list[int]]:
        """Wait until every replica of `names` runs, and the pids of `replacing`'s objects differ from those."""

        def ready() -> dict[str, list[int]]:
            pids = self.running(*names)
            if pids is None or any(pids[name] == old for name, old in (replacing or {}).items()):
                return {}
            return pids

        what = " and ".join(names) + " running" + (" with new pids" if replacing else "")
        return wait_for(ready, timeout=timeout, what=what)

    def events(self, type: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        events = self.api("GET", "/events")["events"]
        return [e for e in events if (type is None or e["type"] == type)
                and (name is None or e["object"] == f"default/{name}")]

    def revisions(self) -> list[dict[str, Any]]:
        """Newest first."""
        return list(self.api("GET", "/revisions")["revisions"])

    def daemon_pid(self) -> int | None:
        try:
            return int((self.state / "daemon.lock").read_text().strip())
        except (OSError, ValueError):
            return None

    def answers(self) -> bool:
        return Client(self.state, timeout=2).ping()

    # -- files --------------------------------------------------------------------------------------

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    # -- teardown -----------------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Shut the daemon down as a user would; return what it left running (then killed here)."""
        for child in self.popens:
            if child.poll() is None:
                child.kill()
            child.communicate()
        pid = self.daemon_pid()
        try:  # what `orchestrator shutdown` does, without a Python start-up per test
            self.api("POST", "/shutdown")
            if pid is not None:
                deadline = time.monotonic() + 15
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
        except (UserError, OSError):
            pass
        # Whatever is left: the daemon (pid in its lock) and every process group it ran.
        left = []
        if pid is not None and _is_ours(pid) and alive(pid):
            left.append(f"daemon {pid}")
            os.kill(pid, signal.SIGKILL)
        for proc in managed():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{proc.pid} {' '.join(proc.cmdline())}")
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
                pass
        return left


def _is_ours(pid: int) -> bool:
    try:
        return psutil.Process(pid).environ().get(MARKER) == SESSION
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def managed(name: str | None = None) -> list[psutil.Process]:
    """Live (not zombie) processes of this test session that an orchestrator started (as ORCH_NAME=name)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
            if (env.get(MARKER) == SESSION and "ORCH_NAME" in env and (name is None or env["ORCH_NAME"] == name)
                    and proc.status() != psutil.STATUS_ZOMBIE):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def result_lines(stdout: str) -> dict[str, str]:
    """`process/default/api configured` lines as {"api": "configured"}."""
    results = {}
    for line in stdout.splitlines():
        what, _, result = line.partition(" ")
        results[what.rsplit("/", 1)[1]] = result
    return results


@pytest.fixture
def orch(tmp_path: Path) -> Iterator[Orchestrator]:
    orchestrator = Orchestrator(tmp_path)
    try:
        yield orchestrator
    finally:
        left = orchestrator.close()
    # Only when the test itself passed (an exception above already fails it): shutdown must stop it all.
    assert left == [], f"shutdown left processes running: {left}"


def test_reapply_of_the_same_manifests_changes_nothing(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a"), process("b", replicas=2)))
    assert result_lines(orch.ok("apply", "-f", str(manifest))) == {"a": "created", "b": "created"}
    before = orch.wait_running("a", "b")

    diff = orch("diff", "-f", str(manifest))
    assert (diff.returncode, diff.stdout, diff.stderr) == (0, "", "")
    assert result_lines(orch.ok("apply", "-f", str(manifest))) == {"a": "unchanged", "b": "unchanged"}

    history = json.loads(orch.ok("history", "-o", "json"))["revisions"]
    assert [r["number"] for r in history] == [1]
    assert orch.running("a", "b") == before
    assert len(orch.events("Started")) == 3 and not orch.events("Stopping")


def test_changing_one_of_three_restarts_only_that_one(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a"), process("b"), process("c")))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a", "b", "c")

    manifest.write_text(documents(process("a"), process("b", ["sleep", "61"]), process("c")))
    diff = orch("diff", "-f", str(manifest))
    assert diff.returncode == 1, diff.stderr
    assert "--- live/default/b" in diff.stdout and "spec.command" in diff.stdout
    assert "default/a" not in diff.stdout and "default/c" not in diff.stdout

    applied = orch.ok("apply", "-f", str(manifest))
    assert result_lines(applied) == {"a": "unchanged", "b": "configured (restart)", "c": "unchanged"}
    after = orch.wait_running("a", "b", "c", replacing={"b": before["b"]})
    assert after["a"] == before["a"] and after["c"] == before["c"]
    wait_for(lambda: not alive(before["b"][0]), what="old b gone")
    assert psutil.Process(after["b"][0]).cmdline() == ["sleep", "61"]
    assert [e["object"] for e in orch.events("Stopping")] == ["default/b"]


def test_label_only_change_restarts_nothing(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a"), process("b")))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a", "b")

    manifest.write_text(documents(process("a", labels={"tier": "backend"}), process("b")))
    answer = json.loads(orch.ok("apply", "-f", str(manifest), "-o", "json"))
    assert {r["key"]: (r["result"], r["restart"]) for r in answer["results"]} == {
        "default/a": ("configured", False), "default/b": ("unchanged", False)}
    # /objects runs on the reconciler's thread after the pass that followed the apply: any stop is made by now.
    assert orch.running("a", "b") == before
    assert orch.objects()["a"]["labels"] == {"tier": "backend"}
    assert not orch.events("Stopping") and len(orch.events("Started")) == 2


def test_prune_stops_only_what_left_the_manifests(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a"), process("b"), process("c")))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a", "b", "c")

    manifest.write_text(documents(process("a"), process("c")))
    assert orch("diff", "-f", str(manifest)).returncode == 0  # without --prune, b's absence is no change
    diff = orch("diff", "--prune", "-f", str(manifest))
    assert diff.returncode == 1 and "--- live/default/b" in diff.stdout, diff

    assert result_lines(orch.ok("apply", "--prune", "-f", str(manifest))) == {
        "a": "unchanged", "c": "unchanged", "b": "pruned"}
    wait_for(lambda: not alive(before["b"][0]), what="b's process gone")
    wait_for(lambda: set(orch.objects()) == {"a", "c"}, what="b forgotten")
    assert orch.running("a", "c") == {"a": before["a"], "c": before["c"]}
    assert not managed("b")


def test_watch_ignores_an_invalid_edit_and_applies_a_valid_one(orch: Orchestrator) -> None:
    folder = orch.root / "m"
    manifest = orch.write("m/app.yaml", documents(process("a"), process("b")))
    orch.ok("apply", "--watch", "-f", str(folder))
    before = orch.wait_running("a", "b")

    manifest.write_text(documents(process("a", restartPolicy="Sometimes"), process("b", ["sleep", "61"])))
    [invalid] = wait_for(lambda: orch.events("Invalid"), what="an Invalid event")
    assert "restartPolicy" in invalid["message"] and "Sometimes" in invalid["message"]
    assert orch.running("a", "b") == before
    assert len(orch.revisions()) == 1

    manifest.write_text(documents(process("a"), process("b", ["sleep", "61"])))
    after = orch.wait_running("a", "b", replacing={"b": before["b"]}, timeout=10)
    assert after["a"] == before["a"]
    assert psutil.Process(after["b"][0]).cmdline() == ["sleep", "61"]
    assert [r["action"] for r in orch.revisions()] == ["watch", "apply"]


def test_killed_daemon_is_replaced_and_adopts_its_processes(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a", replicas=2), process("b")))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a", "b")
    first = orch.daemon_pid()
    assert first is not None

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), what="daemon dead")
    assert all(alive(pid) for pids in before.values() for pid in pids)

    assert result_lines(orch.ok("apply", "-f", str(manifest))) == {"a": "unchanged", "b": "unchanged"}
    assert orch.daemon_pid() not in (None, first)
    assert orch.running("a", "b") == before
    adopted = sorted(e["pid"] for e in orch.events("Adopted"))
    assert adopted == sorted(pid for pids in before.values() for pid in pids)
    assert len(orch.events("Started")) == 3  # those of the first daemon only
    assert len(managed("a")) == 2 and len(managed("b")) == 1

    victim = before["a"][1]
    os.kill(victim, signal.SIGKILL)
    after = orch.wait_running("a", replacing={"a": before["a"]})
    assert after["a"][1] != victim
    assert after["a"][0] == before["a"][0]
    assert orch.objects()["a"]["restarts"] == 1
    assert len(managed("a")) == 2


def test_concurrent_applies_lose_no_update(orch: Orchestrator) -> None:
    orch.ok("apply", "-f", str(orch.write("base/x.yaml", process("x"))))
    names = ["a", "b", "c", "d"]
    paths = [orch.write(f"{name}/{name}.yaml", process(name)) for name in names]
    children = [orch.popen("apply", "-f", str(path)) for path in paths]
    for name, child in zip(names, children):
        out, err = child.communicate(timeout=30)
        assert child.returncode == 0, err
        assert out.strip() == f"process/default/{name} created"

    revisions = orch.revisions()
    assert len(revisions) == 1 + len(names)
    last = orch.api("GET", "/desired")
    assert last["revision"] == revisions[0]["number"]
    got = json.loads(orch.ok("get", "-o", "json"))
    assert got["revision"] == revisions[0]["number"]
    assert sorted(o["name"] for o in got["objects"]) == ["a", "b", "c", "d", "x"]
    orch.wait_running("x", *names)


def test_socket_refuses_another_uid(orch: Orchestrator) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to connect as another user")
    orch.ok("apply", "-f", str(orch.write("m/a.yaml", process("a"))))
    sock = socket_path(orch.state)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(orch.state.stat().st_mode) == 0o700

    # Take the file permissions out of the way: a world-writable socket, reachable through a hard link in a
    # world-searchable folder. Only the daemon's own peer-uid check is left to refuse the stranger.
    sock.chmod(0o666)
    public = Path(tempfile.mkdtemp(prefix="orch-sock-"))
    try:
        public.chmod(0o755)
        link = public / "s"
        os.link(sock, link)
        def ask(uid: int | None) -> bytes:
            """What a process running as `uid` (None: as we are) gets back for a health request."""
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: only system calls, then _exit
                try:
                    os.close(read)
                    if uid is not None:
                        os.setgroups([])
                        os.setgid(uid)
                        os.setuid(uid)
                    client = socket.socket(socket.AF_UNIX)
                    client.settimeout(5)
                    client.connect(str(link))
                    data = b""
                    try:  # a refusal may come as EPIPE on sending, a reset or an end of file
                        client.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        while chunk := client.recv(4096):
                            data += chunk
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    os.write(write, data or b"<closed>")
                    os._exit(0)
                except BaseException as error:  # noqa: BLE001 - reported to the parent
                    os.write(write, f"<error {error!r}>".encode())
                    os._exit(1)
            os.close(write)
            answer = b""
            while chunk := os.read(read, 65536):
                answer += chunk
            os.close(read)
            os.waitpid(pid, 0)
            return answer

        assert ask(None).startswith(b"HTTP/1.1 200")  # the link works for the owner
        nobody = pwd.getpwnam("nobody").pw_uid
        assert ask(nobody) == b"<closed>"
        assert orch.answers()
    finally:
        for item in public.iterdir():
            item.unlink()
        public.rmdir()


def test_corrupt_database_is_reported_and_nothing_starts(orch: Orchestrator) -> None:
    orch.state.mkdir(mode=0o700)
    garbage = b"this is not a database\n" * 400
    (orch.state / "state.db").write_bytes(garbage)
    manifest = orch.write("m/a.yaml", process("a"))

    for command in (("apply", "-f", str(manifest)), ("daemon",)):
        result = orch(*command)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "state.db" in result.stderr and "corrupt" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert "Traceback" not in (orch.state / "daemon.log").read_text()
    assert (orch.state / "state.db").read_bytes() == garbage  # never reset
    assert not orch.answers()
    assert not managed() and not (orch.state / "logs").exists()


def test_rollback_runs_the_previous_revision_again(orch: Orchestrator) -> None:
    manifest = orch.write("m/a.yaml", process("a", ["sleep", "60"]))
    orch.ok("apply", "-f", str(manifest))
    v1 = orch.wait_running("a")["a"][0]
    manifest.write_text(process("a", ["sleep", "61"]))
    orch.ok("apply", "-f", str(manifest))
    [v2] = orch.wait_running("a", replacing={"a": [v1]})["a"]

    out = orch.ok("rollback")
    assert "process/default/a configured (restart)" in out and "now at revision 3" in out
    [v3] = orch.wait_running("a", replacing={"a": [v2]})["a"]
    assert psutil.Process(v3).cmdline() == ["sleep", "60"]
    assert not alive(v1) and not alive(v2)
    history = json.loads(orch.ok("history", "-o", "json"))["revisions"]
    assert [(r["number"], r["action"]) for r in history] == [(3, "rollback"), (2, "apply"), (1, "apply")]


def test_second_daemon_for_a_state_dir_is_refused(orch: Orchestrator) -> None:
    # Under a path longer than a socket address can hold (108 bytes): the code reaches it another way.
    orch.state = orch.root / ("long-" * 20) / "state"
    assert len(str(socket_path(orch.state))) > 108
    orch.ok("apply", "-f", str(orch.write("m/a.yaml", process("a"))))
    pid = orch.api("GET", "/health")["pid"]
    assert orch.daemon_pid() == pid

    second = orch("daemon", timeout=15)
    assert second.returncode == 1
    assert f"another daemon (pid {pid}) is running" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    # The first one is untouched: same lock, same socket, still answering.
    assert orch.daemon_pid() == pid and orch.api("GET", "/health")["pid"] == pid


def test_the_daemon_tells_systemd_it_is_ready_once_its_socket_answers(orch: Orchestrator) -> None:
    # A Type=notify unit's manager: a datagram socket in NOTIFY_SOCKET, read as systemd reads it.
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = orch.root / "notify"
    manager.bind(str(address))
    manager.settimeout(15)
    orch.state.mkdir(mode=0o700, parents=True)
    daemon = subprocess.Popen([*CLI, "--state-dir", str(orch.state), "daemon"], cwd=REPO, text=True,
                              env={**os.environ, "NOTIFY_SOCKET": str(address)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    orch.popens.append(daemon)
    try:
        ready = manager.recv(4096).decode()
        assert ready.splitlines() == ["READY=1", f"MAINPID={daemon.pid}"]
        assert orch.answers(), "READY=1 came before the control socket answered"
        replica = process("a", ["/bin/sh", "-c", "echo $NOTIFY_SOCKET; exec sleep 60"])
        orch.ok("apply", "-f", str(orch.write("m/a.yaml", replica)))
        orch.wait_running("a")
        log = orch.state / "logs" / "default" / "a.0.log"
        wait_for(lambda: log.exists() and log.read_text() == "\n", what="the replica's output")  # not passed on
        orch.ok("shutdown")
        assert manager.recv(4096).decode().splitlines()[0] == "STOPPING=1"
        assert daemon.wait(timeout=15) == 0
    finally:
        manager.close()


def test_shutdown_stops_dependents_first_and_removes_the_socket(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(
        process("db"), process("api", dependsOn=[{"name": "db"}]), process("web", dependsOn=[{"name": "api"}])))
    orch.ok("apply", "-f", str(manifest))
    pids = orch.wait_running("db", "api", "web")
    daemon = orch.daemon_pid()
    assert daemon is not None

    assert orch.ok("shutdown").strip() == "daemon stopped"
    assert not alive(daemon)
    assert not socket_path(orch.state).exists()
    assert not any(alive(p[0]) for p in pids.values())
    assert not orch.answers()
    log = (orch.state / "daemon.log").read_text().splitlines()
    order = [(line.split()[2], line.split()[1].split("/")[1].split("[")[0]) for line in log
             if line.split()[2:3] in (["Stopping:"], ["Exited:"])]
    assert order == [("Stopping:", "web"), ("Exited:", "web"), ("Stopping:", "api"), ("Exited:", "api"),
                     ("Stopping:", "db"), ("Exited:", "db")], log


def test_invalid_apply_changes_nothing(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a"), process("b")))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a", "b")

    bad = orch.write("bad/app.yaml", documents(process("a", ["sleep", "61"]),
                                              process("b", restartPolicy="Sometimes")))
    result, diff = orch.many(("apply", "-f", str(bad)), ("diff", "-f", str(bad)))
    line = next(n for n, text in enumerate(bad.read_text().splitlines(), 1) if "Sometimes" in text)
    for outcome, code in ((result, 1), (diff, 2)):
        assert outcome.returncode == code and "Traceback" not in outcome.stderr, outcome
        assert f"{bad}:{line}:" in outcome.stderr and "spec.restartPolicy" in outcome.stderr, outcome.stderr

    missing = orch.write("missing/app.yaml", process("a", ["sleep", "61"], dependsOn=[{"name": "nosuch"}]))
    result = orch("apply", "-f", str(missing))
    assert result.returncode == 1 and f"{missing}:" in result.stderr and "nosuch" in result.stderr, result.stderr

    assert orch.running("a", "b") == before
    assert len(orch.revisions()) == 1 and not orch.events("Stopping")


def test_scale_up_and_down_and_refuse_a_job(orch: Orchestrator) -> None:
    job = "apiVersion: orchestrator/v1\nkind: Job\nmetadata: {name: once}\nspec: {command: [\"true\"]}\n"
    orch.ok("apply", "-f", str(orch.write("m/app.yaml", documents(process("a"), job))))
    [first] = orch.wait_running("a")["a"]

    assert orch.ok("scale", "a", "--replicas", "3").strip() == "default/a scaled to 3"
    three = orch.wait_running("a")["a"]
    assert len(three) == 3 and three[0] == first
    assert orch.objects()["a"]["replicas"] == {"desired": 3, "running": 3, "ready": 3}

    orch.ok("scale", "a", "--replicas", "1")
    wait_for(lambda: orch.pids()["a"] == [first], what="scaled down to replica 0")
    assert orch.objects()["a"]["replicas"] == {"desired": 1, "running": 1, "ready": 1}
    assert not any(alive(pid) for pid in three[1:])
    assert [r["action"] for r in orch.revisions()] == ["scale", "scale", "apply"]

    refused = orch("scale", "once", "--replicas", "2")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "default/once is a Job" in refused.stderr, refused.stderr
    assert len(orch.revisions()) == 3


def test_logs_tail_and_env_values_never_shown(orch: Orchestrator) -> None:
    manifest = orch.write("m/a.yaml", process("a", ["sh", "-c", "echo first; echo 'last line'; exec sleep 60"],
                                              env={"SECRET_TOKEN": "hunter2"}))
    applied = orch("apply", "-f", str(manifest), "-o", "json")
    assert applied.returncode == 0, applied.stderr
    orch.wait_running("a")
    log = orch.state / "logs" / "default" / "a.0.log"
    wait_for(lambda: log.exists() and "last line" in log.read_text(), what="the log lines")

    manifest.write_text(process("a", ["sh", "-c", "echo first; echo 'last line'; exec sleep 60"],
                                env={"SECRET_TOKEN": "hunter3"}))
    tail, describe, get, get_yaml, diff, history, events = orch.many(
        ("logs", "a", "--tail", "1"), ("describe", "a"), ("get", "-o", "json"), ("get", "a", "-o", "yaml"),
        ("diff", "-f", str(manifest)), ("history", "-o", "json"), ("events", "-o", "json"))
    assert (tail.returncode, tail.stdout) == (0, "last line\n")
    assert diff.returncode == 1 and "SECRET_TOKEN" in diff.stdout, diff
    for result in (applied, describe, get, get_yaml, diff, history, events):
        assert result.returncode in (0, 1), result
        assert "hunter2" not in result.stdout + result.stderr and "hunter3" not in result.stdout, result.args
    assert "SECRET_TOKEN" in describe.stdout  # the name is shown, only its value is not
    assert "hunter2" not in (orch.state / "daemon.log").read_text()


def test_describe_as_a_document_never_shows_env_values(orch: Orchestrator) -> None:
    # Regression: describe -o json|yaml printed spec.env in full (fixed in 2c9109d).
    orch.ok("apply", "-f", str(orch.write("m/a.yaml", process("a", env={"SECRET_TOKEN": "hunter2"}))))
    orch.wait_running("a")
    as_json, as_yaml = orch.many(("describe", "a", "-o", "json"), ("describe", "a", "-o", "yaml"))
    assert as_json.returncode == 0 and as_yaml.returncode == 0
    assert "SECRET_TOKEN" in as_json.stdout  # the name may be shown
    assert "hunter2" not in as_json.stdout
    assert "hunter2" not in as_yaml.stdout


def test_status_says_how_limits_are_enforced_and_an_adopted_replica_keeps_its_cgroup(orch: Orchestrator) -> None:
    manifest = orch.write("m/a.yaml", process("a", resources={"limits": {"memory": "64Mi", "openFiles": 256}}))
    orch.ok("apply", "-f", str(manifest))
    pid = orch.wait_running("a")["a"][0]
    how = orch.api("GET", "/health")["limits"]
    label = "watchdog" if how.startswith("watchdog") else how.split(" under ")[0]
    (obj,) = json.loads(orch.ok("get", "a", "-o", "json"))["objects"]
    assert obj["limits"] == {"memory": label, "openFiles": "rlimit"}
    assert f"memory 64Mi ({label})" in orch.ok("describe", "a")
    cgroup = obj["replica_status"][0]["cgroup"]
    if label == "watchdog":
        assert cgroup is None
        return
    assert str(pid) in (Path(cgroup) / "cgroup.procs").read_text().split()
    daemon = orch.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    orch.ok("apply", "-f", str(manifest))  # a new daemon, which adopts
    (obj,) = json.loads(orch.ok("get", "a", "-o", "json"))["objects"]
    assert obj["replica_status"][0]["pid"] == pid
    assert obj["replica_status"][0]["cgroup"] == cgroup
    assert obj["limits"]["memory"] == label


def test_a_daemon_killed_during_a_pre_stop_hook_is_followed_by_one_that_finishes_the_stop(orch: Orchestrator) -> None:
    marker = orch.root / "pre-stop-ran"
    hook = {"preStop": {"exec": ["sh", "-c", f"touch {marker}; exec sleep 30"], "timeoutSeconds": 60}}
    manifest = orch.write("m/app.yaml", documents(process("a", hooks=hook, shutdown={"timeoutSeconds": 60}),
                                                  process("b")))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a", "b")
    orch.ok("apply", "--prune", "-f", str(orch.write("m/app.yaml", process("b"))))
    wait_for(marker.exists, what="the preStop hook to run")
    hooks = [p for p in managed() if p.pid not in before["a"] + before["b"]]
    assert hooks, "the preStop hook is not among the processes the daemon runs"
    daemon = orch.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    assert alive(before["a"][0])  # a SIGKILLed daemon stops nothing itself

    orch.ok("apply", "--prune", "-f", str(manifest.parent))  # a new daemon, which adopts
    wait_for(lambda: not alive(before["a"][0]), what="the new daemon to finish stopping a")
    wait_for(lambda: not any(alive(p.pid) for p in hooks), what="the cut-short preStop hook to be ended")
    assert orch.running("b") == {"b": before["b"]}
    assert "a" not in orch.objects()


def test_an_exec_probe_left_hanging_by_a_killed_daemon_is_ended_by_the_next(orch: Orchestrator) -> None:
    marker = orch.root / "probe-ran"
    probe = {"exec": {"command": ["sh", "-c", f"touch {marker}; exec sleep 30"]}, "timeoutSeconds": 60,
             "periodSeconds": 60}
    manifest = orch.write("m/app.yaml", process("a", probes={"liveness": probe}))
    orch.ok("apply", "-f", str(manifest))
    replica = orch.wait_running("a")["a"][0]
    wait_for(marker.exists, what="the liveness check to run")
    checks = [p.pid for p in managed("a") if p.pid != replica]
    assert len(checks) == 1
    daemon = orch.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    assert alive(checks[0])  # nobody is left to end it at its timeout

    orch.ok("apply", "-f", str(manifest))  # a new daemon
    wait_for(lambda: not alive(checks[0]), what="the orphaned check to be killed")
    assert orch.running("a") == {"a": [replica]}  # the replica itself was adopted, not killed


def test_a_replica_started_but_never_recorded_is_killed_not_duplicated(orch: Orchestrator) -> None:
    """The daemon died between a spawn and the save of its record: the next one finds the stray by the
    state dir's mark in its environment and kills it, so the plan's own start is the only copy."""
    # As it happens: the revision was saved (it is, before anything starts), then the daemon died.
    manifest = orch.write("m/app.yaml", process("a", command=("sleep", "60")))
    orch.ok("apply", "-f", str(orch.write("m/b.yaml", process("b"))))
    first = orch.daemon_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), what="daemon dead")
    env = dict(os.environ, ORCH_STATE_DIR=str(orch.state.resolve()), ORCH_NAME="a", ORCH_REPLICA="0")
    stray = subprocess.Popen(["sleep", "61"], env=env, start_new_session=True)
    try:
        orch.ok("apply", "-f", str(manifest))
        orch.wait_running("a")
        wait_for(lambda: stray.poll() is not None, what="the stray to be killed")
        assert stray.returncode == -signal.SIGKILL
        assert any(f"pid {stray.pid} was started for this state dir" in e["message"] for e in orch.events("Killing"))
    finally:
        if stray.poll() is None:
            stray.kill()
        stray.wait()


def test_changes_are_refused_while_shutting_down(orch: Orchestrator) -> None:
    stubborn = (sys.executable, "-c", ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('up', flush=True); time.sleep(60)"))
    manifest = orch.write("m/app.yaml", process("slow", command=stubborn, shutdown={"timeoutSeconds": 3}))
    orch.ok("apply", "-f", str(manifest))
    orch.wait_running("slow")
    log = orch.state / "logs" / "default" / "slow.0.log"
    wait_for(lambda: log.exists() and "up" in log.read_text(), what="slow to ignore SIGTERM")
    orch.api("POST", "/shutdown")
    result = orch("apply", "-f", str(orch.write("m/other.yaml", process("other"))))
    assert result.returncode == 1 and "shutting down" in result.stderr, result.stderr
    assert "other" not in orch.pids()


def test_unwatch_stops_reapplying(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", process("a"))
    orch.ok("apply", "--watch", "-f", str(manifest.parent))
    assert "stopped watching " + str(manifest.parent) in orch.ok("unwatch", "-f", str(manifest.parent))
    revision = orch.revisions()[0]["number"]
    manifest.write_text(process("a", command=("sleep", "61")))
    deadline = time.monotonic() + 1.0  # three debounce periods: a watch still in place would have applied
    while time.monotonic() < deadline:
        assert orch.revisions()[0]["number"] == revision
        time.sleep(0.1)
    assert "nothing was watched" in orch.ok("unwatch")


def test_after_a_reboot_what_ran_starts_afresh_and_what_finished_stays_finished() -> None:
    from orchestrator.core.model import Exit, Kind, ProcessIdentity, ProcessSpec, Reason, ReplicaRecord
    from orchestrator.daemon.lifecycle import _after_reboot

    job = ProcessSpec(name="migrate", command=("x",), kind=Kind.JOB)
    done = ReplicaRecord(spec=job, last_exit=Exit(0, None, Reason.COMPLETED, 12345.0, 1.0), crash_streak=2)
    running = ReplicaRecord(spec=job, process=ProcessIdentity(10, 5), started_at=100.0, ready=True)
    assert _after_reboot(done).last_exit == Exit(0, None, Reason.COMPLETED, 0.0, 1.0)
    assert _after_reboot(done).crash_streak == 0
    fresh = _after_reboot(running)
    assert fresh.process is None and fresh.last_exit is None and not fresh.ready


def test_a_finished_job_is_not_run_again_after_a_clean_shutdown(orch: Orchestrator) -> None:
    ran = orch.root / "ran.txt"
    job = ("apiVersion: orchestrator/v1\nkind: Job\nmetadata: {name: migrate}\n"
           f"spec: {{command: [sh, -c, 'echo ran >> {ran}']}}\n")
    manifest = orch.write("m/app.yaml", documents(job, process("app", dependsOn=[{"name": "migrate",
                                                                                  "condition": "completed"}])))
    orch.ok("apply", "-f", str(manifest))
    orch.wait_running("app")
    assert ran.read_text() == "ran\n"
    orch.ok("shutdown")
    wait_for(lambda: not orch.answers(), what="the daemon gone")
    orch.ok("apply", "-f", str(manifest))
    orch.wait_running("app")  # it waits for migrate to be completed: had migrate run again, it ran before this
    assert ran.read_text() == "ran\n"
    assert orch.objects()["migrate"]["state"] == "Succeeded"


def test_a_state_database_locked_by_another_program_does_not_stall_supervision(orch: Orchestrator) -> None:
    import sqlite3

    manifest = orch.write("m/app.yaml", process("a"))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a")
    admin = sqlite3.connect(orch.state / "state.db", isolation_level=None)
    try:
        admin.execute("BEGIN IMMEDIATE")  # an admin in `sqlite3`, holding the write lock
        os.kill(before["a"][0], signal.SIGKILL)
        started = time.monotonic()
        again = orch.wait_running("a", replacing=before, timeout=2)  # back within 2 s, lock or no lock
        assert time.monotonic() - started < 2
        manifest.write_text(process("a", ["sleep", "61"]))
        refused = orch("apply", "-f", str(manifest))  # a new revision cannot be written: it says so, changes nothing
        assert refused.returncode == 1, refused
        assert "locked by another program" in refused.stderr and "nothing was changed" in refused.stderr
        assert orch.running("a") == again and len(orch.revisions()) == 1
        # Not saved yet, the restart's events are in the log a client reads all the same (as on a stream).
        assert any(e["pid"] == again["a"][0] for e in orch.events("Started", "a"))
    finally:
        admin.execute("ROLLBACK")
        admin.close()
    # Once free, what happened meanwhile is saved: the events of the crash and of the lock itself.
    wait_for(lambda: any("free again" in e["message"] for e in orch.events("StoreBusy")), timeout=5,
             what="the store saving again")
    assert any(e["pid"] == again["a"][0] for e in orch.events("Started", "a"))


def test_a_daemon_refuses_to_start_from_a_lost_state_database_while_its_processes_run(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", process("a"))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a")
    first = orch.daemon_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), what="daemon dead")
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (orch.state / name).unlink(missing_ok=True)  # an admin "cleaning up"
    refused = orch("daemon", timeout=30)
    assert refused.returncode == 1, refused
    assert "holds no state, but 1 process(es) started for this state dir still run" in refused.stderr
    assert str(before["a"][0]) in refused.stderr
    assert alive(before["a"][0])  # nothing was stopped
    os.killpg(before["a"][0], signal.SIGKILL)  # what the message says to do, before starting again
    wait_for(lambda: not managed("a"), what="the process stopped by hand")
    orch.ok("apply", "-f", str(manifest))
    orch.wait_running("a")  # a daemon starts from nothing now, as asked


def test_a_state_database_deleted_under_the_daemon_is_written_anew(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a"), process("b", replicas=2)))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a", "b")
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (orch.state / name).unlink(missing_ok=True)
    os.kill(before["a"][0], signal.SIGKILL)  # a pass follows, and with it a save
    after = orch.wait_running("a", "b", replacing={"a": before["a"]})
    wait_for(lambda: any("written anew" in e["message"] for e in orch.events("StoreLost")), what="the StoreLost event")
    # The proof: a daemon killed now and started again adopts everything from the new file, starting nothing.
    first = orch.daemon_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), what="daemon dead")
    assert result_lines(orch.ok("apply", "-f", str(manifest))) == {"a": "unchanged", "b": "unchanged"}
    assert orch.wait_running("a", "b") == after
