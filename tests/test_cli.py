"""The command line end to end: validate's exit codes and messages, and `run` in the foreground."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import REPO, wait_for

CLI = [sys.executable, "-m", "orchestrator"]


def cli(*args: str, state: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ORCHESTRATOR_HOME=str(state)) if state else None
    return subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=60, env=env, cwd=REPO)


def test_validate_examples_ok() -> None:
    result = cli("validate", "-f", "examples/manifests")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("valid: 4 objects in 2 files")


def test_validate_reports_every_problem_with_location_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: api}\nspec:\n"
        "  command: [sleep, '1']\n  restartPolicy: Sometimes\n"
    )
    (tmp_path / "b.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: worker}\nspec:\n"
        "  command: [sleep, '1']\n  replica: 2\n"
    )
    result = cli("validate", "-f", str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert f"{tmp_path}/a.yaml:6:18: spec.restartPolicy: 'Sometimes' is not one of Always, OnFailure, Never" in lines
    assert any(line.startswith(f"{tmp_path}/b.yaml:6:3: spec") and "replica" in line for line in lines), lines
    assert lines[-1] == "2 problems found"


def test_validate_json_output(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: api}\nspec:\n  command: [x]\n"
        "  dependsOn: [{name: db}]\n"
    )
    result = cli("validate", "-o", "json", "-f", str(tmp_path / "a.yaml"))
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["valid"] is False
    [problem] = document["problems"]
    assert problem["line"] == 6 and "depends on 'db'" in problem["message"]


def test_validate_names_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: api}\nspec:\n  command: [x]\n"
        "  dependsOn: [{name: worker}]\n---\n"
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: worker}\nspec:\n  command: [x]\n"
        "  dependsOn: [{name: api}]\n"
    )
    result = cli("validate", "-f", str(tmp_path))
    assert result.returncode == 1
    assert "dependency cycle: api -> worker -> api" in result.stderr


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("validate", "-f", str(tmp_path / "nope"))
    assert result.returncode == 1 and "Traceback" not in result.stderr and "nope" in result.stderr


@pytest.mark.parametrize("command", ["validate", "run"])
def test_every_command_has_help(command: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0 and "-f" in result.stdout


class Running:
    """`orchestrator run` as a child process, its event lines collected as they come."""

    def __init__(self, manifest: Path, state: Path, *options: str) -> None:
        env = dict(os.environ, ORCHESTRATOR_HOME=str(state))
        self.popen = subprocess.Popen([*CLI, "run", *options, "-o", "json", "-f", str(manifest)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        self.events: list[dict[str, object]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.events.append(json.loads(line))

    def of(self, type: str, name: str | None = None) -> list[dict[str, object]]:
        return [e for e in list(self.events)
                if e["type"] == type and (name is None or str(e["object"]).endswith("/" + name))]

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.popen.pid).children()

    def finish(self, timeout: float = 15) -> int:
        code = self.popen.wait(timeout)
        self.reader.join(5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            for child in self.children():
                os.killpg(child.pid, signal.SIGKILL)
            self.popen.kill()
        self.popen.wait()
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        run.kill()


STACK = """\
apiVersion: orchestrator/v1
kind: Process
metadata: {name: db}
spec:
  command: ["python3", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"]
  shutdown: {timeoutSeconds: 0.3}
---
apiVersion: orchestrator/v1
kind: Process
metadata: {name: api}
spec:
  command: ["sleep", "60"]
  replicas: 2
  dependsOn: [{name: db}]
  backoff: {initialSeconds: 0}
---
apiVersion: orchestrator/v1
kind: Process
metadata: {name: ghost}
spec:
  command: ["./no-such-binary"]
  restartPolicy: OnFailure
  backoff: {initialSeconds: 0.2, maxSeconds: 0.2}
"""


def test_run_keeps_the_stack_alive_and_stops_it_in_reverse_order(tmp_path: Path, running: list[Running]) -> None:
    manifest = tmp_path / "stack.yaml"
    manifest.write_text(STACK)
    run = Running(manifest, tmp_path / "state")
    running.append(run)
    wait_for(lambda: len(run.of("Started", "api")) == 2, timeout=10, what="api replicas")
    db_log = tmp_path / "state" / "logs" / "default" / "db.0.log"
    wait_for(lambda: "up" in db_log.read_text(), what="db to ignore SIGTERM")
    wait_for(lambda: len(run.of("StartFailed", "ghost")) >= 2, what="ghost retried")
    assert "command not found: ./no-such-binary" in str(run.of("StartFailed", "ghost")[0]["message"])

    victim = next(int(e["pid"]) for e in run.of("Started", "api"))  # type: ignore[call-overload]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(run.of("Started", "api")) == 3, what="api respawned")
    assert len(run.children()) == 3  # db and two api replicas

    run.popen.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    stops = [(e["type"], str(e["object"]).split("/")[1]) for e in run.events if e["type"] in ("Stopping", "Killing")]
    assert stops == [("Stopping", "api"), ("Stopping", "api"), ("Stopping", "db"), ("Killing", "db")]
    assert (tmp_path / "state" / "logs" / "default" / "db.0.log").exists()


def test_second_interrupt_kills_at_once(tmp_path: Path, running: list[Running]) -> None:
    manifest = tmp_path / "stack.yaml"
    manifest.write_text(STACK.replace("timeoutSeconds: 0.3", "timeoutSeconds: 30"))
    run = Running(manifest, tmp_path / "state")
    running.append(run)
    wait_for(lambda: run.of("Started", "db") and len(run.of("Started", "api")) == 2, timeout=10, what="stack up")
    db_log = tmp_path / "state" / "logs" / "default" / "db.0.log"
    wait_for(lambda: "up" in db_log.read_text(), what="db to ignore SIGTERM")
    run.popen.send_signal(signal.SIGINT)
    wait_for(lambda: run.of("Stopping", "db"), what="db asked to stop")
    run.popen.send_signal(signal.SIGINT)
    assert run.finish(timeout=10) == 0
    assert any("forced" in str(e["message"]) for e in run.of("Shutdown"))


def test_run_with_invalid_manifest_starts_nothing(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text("apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: Bad_Name}\nspec: {command: [x]}\n")
    result = cli("run", "-f", str(manifest), state=tmp_path / "state")
    assert result.returncode == 1
    assert f"{manifest}:3:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "logs").exists()


def test_validate_lists_schema_and_graph_problems_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: db}\nspec: {command: [x], replicas: -1}\n---\n"
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: api}\nspec:\n  command: [x]\n"
        "  dependsOn: [{name: db}, {name: cache}]\n"
    )
    result = cli("validate", "-f", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-1] == "2 problems found", lines  # db's own error, and the missing cache; db is not "missing"
    assert any("spec.replicas" in line for line in lines)
    assert any("depends on 'cache'" in line for line in lines)


def test_run_watch_applies_a_valid_edit_and_ignores_a_bad_one(tmp_path: Path, running: list[Running]) -> None:
    manifest = tmp_path / "m" / "app.yaml"
    manifest.parent.mkdir()
    body = "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: app}\nspec:\n  command: [sleep, '%s']\n"
    manifest.write_text(body % "60" + "  shutdown: {timeoutSeconds: 0.5}\n")
    run = Running(manifest.parent, tmp_path / "state", "--watch")
    running.append(run)
    first = int(wait_for(lambda: run.of("Started", "app"), timeout=10)[0]["pid"])  # type: ignore[call-overload]

    manifest.write_text(body % "60" + "  restartPolicy: Sometimes\n")
    wait_for(lambda: run.of("Invalid"), what="the bad edit to be reported")
    assert "restartPolicy" in str(run.of("Invalid")[0]["message"])
    assert psutil.pid_exists(first) and len(run.of("Started", "app")) == 1

    manifest.write_text(body % "61" + "  shutdown: {timeoutSeconds: 0.5}\n")
    wait_for(lambda: len(run.of("Started", "app")) == 2, what="the valid edit to restart app")
    second = int(run.of("Started", "app")[1]["pid"])  # type: ignore[call-overload]
    wait_for(lambda: psutil.Process(second).cmdline() == ["sleep", "61"], what="the new command")
    run.popen.send_signal(signal.SIGTERM)
    assert run.finish() == 0


def test_run_whose_reader_went_away_still_stops_everything(tmp_path: Path) -> None:
    """`orchestrator run ... | head`: once the pipe is closed, printing fails; the processes must still be
    stopped on SIGINT (the autouse fixture fails the test if any is left)."""
    manifest = tmp_path / "stack.yaml"
    manifest.write_text(STACK.replace("timeoutSeconds: 0.3", "timeoutSeconds: 0.5"))
    env = dict(os.environ, ORCHESTRATOR_HOME=str(tmp_path / "state"))
    popen = subprocess.Popen([*CLI, "run", "-f", str(manifest)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=env, cwd=REPO)
    try:
        assert popen.stdout is not None
        popen.stdout.readline()
        popen.stdout.close()  # the reader goes away, like `| head -1`
        wait_for(lambda: len(psutil.Process(popen.pid).children()) >= 3, timeout=10, what="the stack up")
        popen.send_signal(signal.SIGINT)
        assert popen.wait(timeout=15) == 0
    finally:
        if popen.poll() is None:
            for child in psutil.Process(popen.pid).children():
                os.killpg(child.pid, signal.SIGKILL)
            popen.kill()
            popen.wait()
