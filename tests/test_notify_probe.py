"""The notify probe (sd_notify's READY=1 on a per-start $NOTIFY_SOCKET) with real processes and real sockets."""

from __future__ import annotations

import os
import shlex
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import wait_for
from harness import Harness

from orchestrator.core.events import EventType
from orchestrator.core.model import (
    Backoff,
    Hook,
    Hooks,
    Probe,
    ProbeAction,
    Probes,
    ProcessSpec,
    ReplicaId,
    RestartPolicy,
    Shutdown,
)
from orchestrator.host.notify import from_replica, parse
from orchestrator.planning.policy import is_ready

NOTIFY = Probes(readiness=Probe(ProbeAction.NOTIFY))

# Waits for a trigger file, then sends argv[2] (\n for newlines) to $NOTIFY_SOCKET, then lives argv[3] seconds.
SENDER = r"""
import os, socket, sys, time
trigger, message, life = sys.argv[1], sys.argv[2].replace('\\n', '\n'), float(sys.argv[3])
while not os.path.exists(trigger):
    time.sleep(0.01)
address = os.environ['NOTIFY_SOCKET']
if address.startswith('@'):
    address = '\0' + address[1:]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
    sock.sendto(message.encode(), address)
time.sleep(life)
"""


def sender(trigger: Path, message: str = "READY=1", life: float = 60.0) -> tuple[str, ...]:
    return (sys.executable, "-c", SENDER, str(trigger), message, str(life))


def proc(name: str, *command: str, **fields: object) -> ProcessSpec:
    fields.setdefault("backoff", Backoff(initial_seconds=0.1, max_seconds=0.1))
    fields.setdefault("shutdown", Shutdown("SIGTERM", 1))
    fields.setdefault("probes", NOTIFY)
    return ProcessSpec(name=name, command=command, **fields)  # type: ignore[arg-type]


def ready(h: Harness, name: str) -> bool:
    def check(r: object) -> bool:
        record = r.records.get(ReplicaId(f"default/{name}", 0))  # type: ignore[attr-defined]
        spec = r.desired.specs.get(f"default/{name}")  # type: ignore[attr-defined]
        return bool(record and spec and is_ready(spec, record))

    return h.query(check)


def notify_socket(h: Harness, name: str) -> str:
    """The $NOTIFY_SOCKET of the replica's main process, once it runs."""
    pid = wait_for(lambda: h.pid(name), what=f"{name} to start")
    return str(psutil.Process(pid).environ()["NOTIFY_SOCKET"])


def send_from_here(address: str, message: bytes = b"READY=1") -> None:
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message, target)


def stays(condition: object, seconds: float, what: str) -> None:
    """`condition` holds at every look for `seconds` (a deadline, looked at often)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), what  # type: ignore[operator]
        time.sleep(0.02)


def test_a_notify_probe_passes_only_once_the_replica_says_ready(harness: Harness, tmp_path: Path) -> None:
    trigger, hook_saw = tmp_path / "go", tmp_path / "hook-env"
    hooks = Hooks(post_start=Hook(("sh", "-c", f"echo \"${{NOTIFY_SOCKET:-none}}\" > {hook_saw}")))
    harness.apply([proc("app", *sender(trigger, "STATUS=serving\\nREADY=1"), hooks=hooks)])
    address = notify_socket(harness, "app")
    notify_dir = tmp_path / "run" / "notify"
    assert Path(address).parent == notify_dir and stat.S_ISSOCK(os.stat(address).st_mode)
    assert stat.S_IMODE(notify_dir.stat().st_mode) == 0o700 and stat.S_IMODE(os.stat(address).st_mode) == 0o600
    wait_for(lambda: hook_saw.exists() and hook_saw.read_text(), what="the postStart hook")
    assert hook_saw.read_text().strip() == "none"  # the main process only, as systemd does
    stays(lambda: not ready(harness, "app"), 0.3, "ready before it said so")
    trigger.touch()
    wait_for(lambda: ready(harness, "app"), timeout=10, what="app ready")
    [passed] = harness.of(EventType.PROBE_PASSED, "app")
    assert f"readiness probe heard READY=1 from pid {harness.pid('app')} (status: serving); ready" == passed.message


def test_a_replica_that_never_says_ready_stays_not_ready(harness: Harness, tmp_path: Path) -> None:
    (tmp_path / "go").touch()
    harness.apply([proc("quiet", *sender(tmp_path / "go", "STATUS=starting\\nREADY=0\\nXREADY=1\\nREADY=1 "))])
    notify_socket(harness, "quiet")
    stays(lambda: not ready(harness, "quiet"), 1.0, "ready without READY=1")
    assert harness.of(EventType.PROBE_PASSED, "quiet") == []


def test_one_ready_passes_a_startup_probe_and_then_readiness(harness: Harness, tmp_path: Path) -> None:
    """Readiness is probed only once startup passed: it hears what the socket said before it began."""
    trigger = tmp_path / "go"
    notify = Probe(ProbeAction.NOTIFY)
    harness.apply([proc("app", *sender(trigger), probes=Probes(startup=notify, readiness=notify))])
    notify_socket(harness, "app")
    trigger.touch()
    wait_for(lambda: ready(harness, "app"), timeout=10, what="app ready")
    kinds = [e.message.split()[0] for e in harness.of(EventType.PROBE_PASSED, "app")]
    assert kinds == ["startup", "readiness"]


def test_ready_from_a_process_outside_the_replica_is_ignored(harness: Harness, tmp_path: Path) -> None:
    trigger = tmp_path / "go"
    harness.apply([proc("app", *sender(trigger))])
    address = notify_socket(harness, "app")
    send_from_here(address)
    [why] = wait_for(lambda: harness.of(EventType.PROBE_FAILED, "app"), what="why it is not ready")
    assert f"READY=1 came from pid {os.getpid()}, which is not one of this replica's processes" in why.message
    assert not ready(harness, "app")
    trigger.touch()  # the replica itself says it now
    wait_for(lambda: ready(harness, "app"), timeout=10, what="app ready")


def test_ready_from_a_descendant_counts(harness: Harness, tmp_path: Path) -> None:
    trigger = tmp_path / "go"
    trigger.touch()
    child = shlex.join(sender(trigger, life=0))
    # One in the replica's session, and one that left it (setsid) but whose parent is the replica.
    harness.apply([proc("shell", "sh", "-c", f"{child}; exec sleep 60"),
                   proc("detached", "sh", "-c", f"setsid {child}; exec sleep 60")])
    for name in ("shell", "detached"):
        wait_for(lambda name=name: ready(harness, name), timeout=10, what=f"{name} ready")  # type: ignore[misc]
        [passed] = harness.of(EventType.PROBE_PASSED, name)
        assert "heard READY=1 from pid" in passed.message
        assert not passed.message.startswith(f"readiness probe heard READY=1 from pid {harness.pid(name)};")


def test_the_socket_is_removed_when_the_replica_ends_and_when_the_executor_lets_go(tmp_path: Path) -> None:
    trigger = tmp_path / "go"
    trigger.touch()
    notify_dir = tmp_path / "run" / "notify"
    h = Harness(tmp_path / "logs")
    try:
        h.apply([proc("brief", *sender(trigger, life=0.3), restart_policy=RestartPolicy.NEVER),
                 proc("long", *sender(trigger))])
        brief = notify_socket(h, "brief")
        wait_for(lambda: h.of(EventType.EXITED, "brief"), timeout=10, what="brief to exit")
        wait_for(lambda: not os.path.exists(brief), what="its socket removed")
        wait_for(lambda: ready(h, "long"), timeout=10, what="long ready")
        assert os.listdir(notify_dir) == [Path(notify_socket(h, "long")).name]
    finally:
        h.close()
    assert os.listdir(notify_dir) == []


def test_a_long_state_dir_gets_an_abstract_socket_still_checked(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    trigger = tmp_path / "go"
    h = Harness(deep / "logs")
    try:
        h.apply([proc("app", *sender(trigger))])
        address = notify_socket(h, "app")
        assert address.startswith("@")
        send_from_here(address)  # anyone may send to an abstract socket: the sender check still holds
        wait_for(lambda: h.of(EventType.PROBE_FAILED, "app"), what="the foreign READY=1 ignored")
        assert not ready(h, "app")
        trigger.touch()
        wait_for(lambda: ready(h, "app"), timeout=10, what="app ready")
    finally:
        h.close()
    assert not (deep / "run").exists()


def test_an_idle_notify_probe_wakes_nothing(harness: Harness, tmp_path: Path) -> None:
    trigger = tmp_path / "go"
    trigger.touch()
    harness.apply([proc("a", *sender(trigger)), proc("b", *sender(tmp_path / "never"))])
    wait_for(lambda: ready(harness, "a"), timeout=10, what="a ready")
    notify_socket(harness, "b")
    thread = harness.prober._thread.native_id

    def switches() -> int:
        status = Path(f"/proc/self/task/{thread}/status").read_text()
        return int(status.split("voluntary_ctxt_switches:")[1].split()[0])

    before = switches()
    threading.Event().wait(1.5)  # the window measured: the reconciler's passes (resync 1 s) change nothing here
    assert switches() - before <= 1


@pytest.mark.parametrize(("message", "expected"), [
    (b"READY=1", (True, None)),
    (b"STATUS=warming up\nREADY=1\n", (True, "warming up")),
    (b"READY=0\nSTATUS=a\nSTATUS=b", (False, "b")),
    (b"READY=1 \nXREADY=1\nready=1", (False, None)),
    (b"STATUS=bell\x07and\ttab", (False, "bell and tab")),
    (b"STATUS=" + b"x" * 5000, (False, "x" * 200)),
])
def test_parse_reads_only_ready_and_status(message: bytes, expected: tuple[bool, str | None]) -> None:
    assert parse(message) == expected


def test_from_replica_knows_the_main_process_and_its_session_but_not_others() -> None:
    me = os.getpid()
    assert from_replica(me, me)
    assert from_replica(me, os.getsid(0)) or os.getsid(0) != os.getsid(me)
    assert not from_replica(me, 999_999_999)  # a main process that is not this one, nor an ancestor of it
    assert not from_replica(999_999_999, me)  # a sender gone by now is only ever the main process
