"""The state dir is used only when it is ours alone; nothing in it is opened through a planted link; the CLI
talks only to a daemon of its own user."""

# ruff: noqa: F811 - the fixture `orch` is imported from the module that defines it

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, wait_for
from test_daemon import CLI, Orchestrator, orch, process  # noqa: F401


def cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--state-dir", str(state), *args], capture_output=True, text=True, timeout=30,
                          cwd=REPO, check=False)


@pytest.mark.parametrize("command", [["apply", "-f", "{manifest}"], ["run", "-f", "{manifest}"], ["daemon"]])
def test_a_state_dir_others_can_write_to_is_refused(tmp_path: Path, command: list[str]) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chmod(state, 0o777)
    manifest = tmp_path / "app.yaml"
    manifest.write_text(process("a"))
    result = cli(state, *[part.format(manifest=manifest) for part in command])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    assert f"state dir {state} is writable by other users (mode 0777): refused" in result.stderr
    assert not (state / "daemon.lock").exists() and not (state / "state.db").exists()


def test_a_state_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory\n")
    manifest = tmp_path / "app.yaml"
    manifest.write_text(process("a"))
    for args in (("apply", "-f", str(manifest)), ("run", "-f", str(manifest)), ("get",), ("shutdown",)):
        result = cli(state, *args)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result


def test_a_planted_link_for_the_daemon_log_is_not_followed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, state / "daemon.log")
    manifest = tmp_path / "app.yaml"
    manifest.write_text(process("a"))
    result = cli(state, "apply", "-f", str(manifest))
    assert result.returncode == 1 and "daemon.log" in result.stderr and "Traceback" not in result.stderr, result
    assert victim.read_text() == "precious\n"


def test_a_planted_link_for_a_replica_log_is_not_followed(orch: Orchestrator) -> None:
    victim = orch.root / "victim"
    victim.write_text("precious\n")
    logs = orch.state / "logs" / "default"
    logs.mkdir(parents=True)
    os.symlink(victim, logs / "a.0.log")
    manifest = orch.write("m/app.yaml", process("a"))
    orch.ok("apply", "-f", str(manifest))
    [failed, *_] = wait_for(lambda: orch.events("StartFailed", "a"), what="a StartFailed event")
    assert "cannot open its log file" in failed["message"]
    assert victim.read_text() == "precious\n"


def test_a_link_for_the_state_database_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.db"
    os.symlink(elsewhere, state / "state.db")
    result = cli(state, "daemon")
    assert result.returncode == 1 and "state.db is a symbolic link: refused" in result.stderr, result
    assert not elsewhere.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="serving a socket as another user needs root")
def test_the_cli_refuses_a_socket_served_by_another_user() -> None:
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="orch-impostor-"))  # not under pytest's root-only tmp: nobody reaches it
    os.chmod(base, 0o755)
    state = base / "state"
    state.mkdir(mode=0o700)
    os.chmod(state, 0o777)  # only while the impostor binds its socket there
    code = ("import socket, sys, time\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen()\n"
            "print('up', flush=True)\nwhile True:\n    c, _ = s.accept()\n    c.close()\n")
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable  # one nobody may run
    impostor = subprocess.Popen([python, "-c", code, str(state / "orchestrator.sock")], user=65534,
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert impostor.stdout is not None and impostor.stdout.readline() == "up\n"
        os.chmod(state, 0o700)
        result = cli(state, "get")
        assert result.returncode == 1, result
        assert "is served by uid 65534, not by you (uid 0): refused" in result.stderr
    finally:
        impostor.kill()
        impostor.wait()
        shutil.rmtree(base)
