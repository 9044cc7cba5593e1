"""The fence guard (host/fenceguard.py) with real processes and no etcd: past a listed key's deadline from the
stamp it stops that key's processes of its state dir, and only those; it waits for a deadline not yet come;
and it ends once its agent is gone and nothing of its list runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for

from orchestrator.host import fenceguard
from orchestrator.host.stamp import boot_id


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def replica(children: list[subprocess.Popen[bytes]], marker: str, name: str) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ["PATH"], "ORCH_STATE_DIR": marker, "ORCH_NAMESPACE": "default", "ORCH_NAME": name}
    child = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    children.append(child)
    return child


def test_the_guard_stops_the_listed_processes_of_its_state_dir_at_their_deadline_and_ends(
        tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    marker = str(tmp_path / "state")
    singleton = replica(started, marker, "leader")
    later = replica(started, marker, "pay")  # a Spread replica that fences later
    other = replica(started, marker, "web")  # not listed: not the guard's
    elsewhere = replica(started, str(tmp_path / "another"), "leader")  # another state dir's
    stamp, listing = tmp_path / "fleet.lease", tmp_path / "fleet.fence"
    sent = time.monotonic() - 5  # the last keepalive etcd confirmed, 5 s ago
    stamp.write_text(f"{boot_id()} n1 7 {sent:.3f} 1\n")
    listing.write_text("default/leader 4.0\ndefault/pay 6.5\n")
    # A guard whose agent (its parent, by the pid it is given) is gone: pid 1 is never the test's own pid.
    code = (f"from orchestrator.host.fenceguard import guard; "
            f"print(guard({str(stamp)!r}, {str(listing)!r}, {marker!r}, 1, 10.0, 3.0))")
    guard = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: singleton.poll() is not None, timeout=3, what="the due singleton stopped")
        assert later.poll() is None  # its deadline (1.5 s from now) has not come
        wait_for(lambda: later.poll() is not None, timeout=5, what="the later one stopped at its own deadline")
        out, _ = guard.communicate(timeout=10)
    finally:
        if guard.poll() is None:
            guard.kill()
            guard.wait()
    assert singleton.returncode == -signal.SIGTERM and later.returncode == -signal.SIGTERM
    assert "none of its singletons runs" in out
    assert other.poll() is None and elsewhere.poll() is None  # neither listed nor of this state dir


def test_a_stamp_of_another_boot_or_in_another_shape_is_no_stamp(tmp_path: Path) -> None:
    stamp = tmp_path / "fleet.lease"
    stamp.write_text(f"{boot_id()} n1 7 12.5 99\n")
    assert fenceguard.read_stamp(str(stamp), boot_id()) == (12.5, 99)
    assert fenceguard.read_stamp(str(stamp), "another-boot") is None
    stamp.write_text(f"{boot_id()} n1 7 12.5\n")  # an older agent's four words
    assert fenceguard.read_stamp(str(stamp), boot_id()) is None
    (tmp_path / "list").write_text("default/a 4\nbroken\ndefault/b x\ndefault/c 7.5\n")
    assert fenceguard.read_list(str(tmp_path / "list")) == {"default/a": 4.0, "default/c": 7.5}
