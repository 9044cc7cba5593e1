"""A replica's whole tree ends with it, also the descendants that leave its process group.

Real daemons and `run`, real processes that call setsid (as PostgreSQL's backends do) or double-fork; the
daemon is their child subreaper, so they are ended with their replica and reaped (no zombie). A replica
adopted from a daemon that was SIGKILLed is ended by the marks its processes carry.
"""

# ruff: noqa: F811 - the fixture `orch` is imported from the module that defines it

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from conftest import REPO, wait_for
from test_daemon import CLI, Orchestrator, alive, orch  # noqa: F401

ESCAPES = (
    # A grandchild in a session of its own (setsid), whose pid is written to escaped.<replica>, and a
    # great-grandchild in yet another session under it: neither is in the replica's process group.
    "setsid sh -c 'echo $$ > escaped.$ORCH_REPLICA; setsid sleep 1000 & echo $! > deeper.$ORCH_REPLICA; wait' & "
    "exec sleep 1000"
)


def escaping(orch: Orchestrator, name: str = "srv", replicas: int = 1) -> Path:
    from test_daemon import process

    work = orch.root / "work"
    work.mkdir(exist_ok=True)
    return orch.write(f"m/{name}.yaml", process(name, ["/bin/sh", "-c", ESCAPES], replicas=replicas,
                                                 workingDir=str(work)))


def escaped(orch: Orchestrator, index: int = 0) -> tuple[int, int]:
    """Pids of a replica's two escaped descendants, once both are written."""
    work = orch.root / "work"

    def read() -> tuple[int, int] | None:
        try:
            pids = int((work / f"escaped.{index}").read_text()), int((work / f"deeper.{index}").read_text())
        except (OSError, ValueError):
            return None
        # Each out of the replica's process group (setsid has run): else the test would prove nothing.
        return pids if all(alive(pid) and os.getpgid(pid) == pid for pid in pids) else None

    found = wait_for(read, what="escaped descendants running, each in a session of its own")
    (work / f"escaped.{index}").unlink()
    (work / f"deeper.{index}").unlink()
    return found


def no_zombie_children(pid: int) -> bool:
    try:
        return not [c for c in psutil.Process(pid).children() if c.status() == psutil.STATUS_ZOMBIE]
    except psutil.NoSuchProcess:
        return True


def test_a_crash_ends_descendants_that_left_the_group(orch: Orchestrator) -> None:
    orch.ok("apply", "-f", str(escaping(orch)))
    before = orch.wait_running("srv")
    first = escaped(orch)

    os.kill(before["srv"][0], signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in first), what="escaped descendants ended")
    orch.wait_running("srv", replacing=before)
    second = escaped(orch)
    assert all(alive(pid) for pid in second), "the new replica's tree must be left alone"
    killing = [e["message"] for e in orch.events("Killing", "srv")]
    assert any(f"pid {first[0]} left the replica's process group" in m for m in killing), killing
    daemon = orch.daemon_pid()
    assert daemon is not None
    wait_for(lambda: no_zombie_children(daemon), what="every inherited orphan reaped")


def test_a_stop_and_a_shutdown_leave_nothing(orch: Orchestrator) -> None:
    manifest = escaping(orch, replicas=2)
    orch.ok("apply", "-f", str(manifest))
    orch.wait_running("srv")
    trees = [escaped(orch, 0), escaped(orch, 1)]
    orch.write("m/srv.yaml", manifest.read_text().replace('replicas: 2', 'replicas: 1'))
    orch.ok("apply", "-f", str(manifest))
    wait_for(lambda: not any(alive(pid) for pid in trees[1]), what="scaled-down replica's tree ended")
    assert all(alive(pid) for pid in trees[0])
    daemon = orch.daemon_pid()
    orch.ok("shutdown")
    wait_for(lambda: daemon is None or not alive(daemon), what="daemon gone")
    assert not any(alive(pid) for pid in trees[0])


def test_an_orphan_that_ends_by_itself_is_reaped(orch: Orchestrator) -> None:
    from test_daemon import process

    # The subshell forks a short-lived session leader and exits: it is inherited while the replica runs.
    work = orch.root / "work"
    work.mkdir()
    script = "(setsid sh -c 'echo $$ > orphan; exec sleep 1' &); exec sleep 1000"
    orch.ok("apply", "-f", str(orch.write("m/a.yaml", process("a", ["/bin/sh", "-c", script],
                                                                 workingDir=str(work)))))
    replica = orch.wait_running("a")["a"][0]
    daemon = orch.daemon_pid()
    assert daemon is not None
    orphan = int(wait_for(lambda: (work / "orphan").exists() and (work / "orphan").read_text().strip(),
                          what="orphan's pid written"))

    def parent() -> int | None:
        try:
            return psutil.Process(orphan).ppid()
        except psutil.NoSuchProcess:
            return None

    # Its parent, the subshell, exits at once: it goes to its nearest subreaper (the tests are one too).
    wait_for(lambda: parent() in (daemon, os.getpid(), 1, None), what="orphan's parent gone")
    assert parent() == daemon, "not inherited by the daemon"
    wait_for(lambda: parent() is None, what="the orphan reaped by the daemon")
    assert alive(replica), "its replica runs on"
    assert no_zombie_children(daemon)


def test_a_replica_adopted_from_a_killed_daemon_ends_with_its_tree(orch: Orchestrator) -> None:
    manifest = escaping(orch)
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("srv")
    tree = escaped(orch)
    first = orch.daemon_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), what="daemon dead")
    orch.ok("apply", "-f", str(manifest))  # a new daemon adopts the replica; it is not the tree's subreaper
    assert orch.running("srv") == before

    os.kill(before["srv"][0], signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in tree), what="adopted replica's escaped tree ended")
    orch.wait_running("srv", replacing=before)


def test_run_ends_descendants_that_left_the_group(tmp_path: Path) -> None:
    from test_daemon import process

    work = tmp_path / "work"
    work.mkdir()
    manifest = tmp_path / "srv.yaml"
    manifest.write_text(process("srv", ["/bin/sh", "-c", ESCAPES], workingDir=str(work)))
    run = subprocess.Popen([*CLI, "--state-dir", str(tmp_path / "state"), "run", "-f", str(manifest)],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        tree = escaped(Orchestrator(tmp_path))
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=15) == 0, run.stderr.read() if run.stderr else ""
        assert not any(alive(pid) for pid in tree), "run left a descendant of its replica running"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if run.stderr:
            run.stderr.close()


def test_children_the_run_had_before_are_left_alone(tmp_path: Path) -> None:
    from test_daemon import process

    # A container entrypoint: `sh -c 'crond & exec orchestrator run ...'` leaves crond a child of the run.
    before = tmp_path / "before.pid"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(process("crash", ["/bin/sh", "-c", "(setsid sleep 0.1 &); exit 1"],
                                backoff={"initialSeconds": 0.05, "maxSeconds": 0.05}))
    script = (f"sleep 1000 & echo $! > {before}; exec {sys.executable} -m orchestrator --state-dir "
              f"{tmp_path / 'state'} run -f {manifest}")
    run = subprocess.Popen(["/bin/sh", "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, start_new_session=True)
    older = 0
    try:
        older = int(wait_for(lambda: before.exists() and before.read_text().strip(), what="the older child"))
        assert run.stdout is not None
        exits = 0
        while exits < 5:  # crashes, each a SIGCHLD sweep, each leaving an orphan to reap
            line = run.stdout.readline()
            assert line, "the run ended"
            exits += " Exited" in line
        assert alive(older), "a child the run had before it started was killed as an orphan"
        assert psutil.Process(older).ppid() == run.pid
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=15) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if older:
            with contextlib.suppress(ProcessLookupError):
                os.kill(older, signal.SIGKILL)
        if run.stdout:
            run.stdout.close()


def test_a_double_forked_helper_of_an_adopted_replica_survives_the_next_daemon(orch: Orchestrator) -> None:
    from test_daemon import process

    work = orch.root / "work"
    work.mkdir()
    script = "(setsid sh -c 'echo $$ > helper; exec sleep 1000' &); exec sleep 1000"  # the helper's parent exits
    manifest = orch.write("m/a.yaml", process("a", ["/bin/sh", "-c", script], workingDir=str(work)))
    orch.ok("apply", "-f", str(manifest))
    main = orch.wait_running("a")["a"][0]
    helper = int(wait_for(lambda: (work / "helper").exists() and (work / "helper").read_text().strip(),
                          what="the helper"))
    first = orch.daemon_pid()
    assert first is not None
    wait_for(lambda: psutil.Process(helper).ppid() == first, what="the helper inherited by the daemon")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not alive(first), what="the daemon gone")

    orch.ok("apply", "-f", str(manifest))  # the next daemon adopts `a`, and must not take its helper for a stray
    wait_for(lambda: orch.events("Adopted", "a"), what="a adopted")
    assert alive(helper) and alive(main)
    os.kill(main, signal.SIGKILL)
    wait_for(lambda: not alive(helper), what="the helper ended with its replica")


def test_a_server_that_daemonized_out_of_its_tree_is_still_the_replicas_for_its_probe(orch: Orchestrator) -> None:
    import socket as sockets

    from test_daemon import process

    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = (f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); "
              "time.sleep(1000)")
    script = f"(setsid {sys.executable} -c \"{server}\" &); exec sleep 1000"  # the listener leaves the tree
    orch.ok("apply", "-f", str(orch.write("m/a.yaml", process(
        "a", ["/bin/sh", "-c", script], probes={"readiness": {"tcp": {"port": port}, "periodSeconds": 0.1}}))))
    wait_for(lambda: orch.objects()["a"]["replica_status"][0].get("ready"), timeout=15,
             what="ready, by the marks of the listener that left its tree")
