"""Resource limits with real processes: rlimits, nice, affinity and I/O class at start; the watchdog's
memory kill (OOMKilled, under the backoff) and CPU renice."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil
import pytest
from conftest import wait_for
from harness import Harness

from orchestrator.core.events import EventType
from orchestrator.core.model import Backoff, Limits, ProcessSpec, ReplicaId, Shutdown, nice_of


def proc(name: str, *command: str, **fields: object) -> ProcessSpec:
    fields.setdefault("backoff", Backoff(initial_seconds=0.2, max_seconds=0.2))
    fields.setdefault("shutdown", Shutdown("SIGTERM", 1))
    return ProcessSpec(name=name, command=command or ("sleep", "60"), **fields)  # type: ignore[arg-type]




@pytest.mark.parametrize(("priority", "nice"), [(0, 0), (5, -1), (50, -10), (100, -20), (-50, 10), (-100, 19)])
def test_priority_maps_to_nice(priority: int, nice: int) -> None:
    assert nice_of(priority) == nice


def limits_of(pid: int) -> dict[str, str]:
    rows = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    return {row[:26].strip(): row[26:47].strip() for row in rows}


def test_rlimits_are_set_at_start(harness: Harness) -> None:
    harness.apply([proc("app", limits=Limits(open_files=123, processes=4567))])
    pid = wait_for(lambda: harness.pid("app"), what="app")
    limits = limits_of(pid)
    assert limits["Max open files"] == "123"
    assert limits["Max processes"] == "4567"
    record = harness.records()[ReplicaId("default/app", 0)]
    assert record.spec.limits.enforcement() == {"openFiles": "rlimit", "processes": "rlimit"}


@pytest.mark.skipif(os.geteuid() != 0, reason="a negative nice value needs root")
def test_nice_affinity_and_io_class_are_set_at_start(harness: Harness) -> None:
    harness.apply([proc("first", priority=50, cpu_affinity=(0,), io_class="idle"), proc("last", priority=-50)])
    first = wait_for(lambda: harness.pid("first"), what="first")
    last = wait_for(lambda: harness.pid("last"), what="last")
    assert os.getpriority(os.PRIO_PROCESS, first) == -10
    assert os.getpriority(os.PRIO_PROCESS, last) == 10
    assert os.sched_getaffinity(first) == {0}
    assert psutil.Process(first).ionice().ioclass == psutil.IOPRIO_CLASS_IDLE
    assert harness.of(EventType.LIMIT_NOT_APPLIED) == []


def test_a_priority_change_renices_without_a_restart(harness: Harness) -> None:
    harness.apply([proc("app", priority=-50)])
    pid = wait_for(lambda: harness.pid("app"), what="app")
    wait_for(lambda: os.getpriority(os.PRIO_PROCESS, pid) == 10, what="nice 10")
    harness.apply([proc("app", priority=-95)])
    wait_for(lambda: os.getpriority(os.PRIO_PROCESS, pid) == 19, what="reniced to 19")
    assert harness.pid("app") == pid


def test_a_memory_hog_is_killed_and_restarted_under_the_backoff(harness: Harness) -> None:
    hog = (sys.executable, "-c", ("import time\nblocks = []\nwhile True:\n"
           "    blocks.append(bytearray(8 << 20)); time.sleep(0.02)"))
    harness.apply([proc("hog", *hog, limits=Limits(memory_bytes=64 << 20))])
    wait_for(lambda: len(harness.of(EventType.EXITED, "hog")) >= 2, timeout=15, what="two OOM kills")
    exited = harness.of(EventType.EXITED, "hog")[0]
    assert "(OOMKilled)" in exited.message and "restarting in 0.2 s" in exited.message
    assert "memory limit exceeded" in harness.of(EventType.LIMIT_EXCEEDED, "hog")[0].message
    record = harness.records()[ReplicaId("default/hog", 0)]
    assert record.restarts >= 1
    assert record.last_exit is None or record.last_exit.reason.value == "OOMKilled"


def test_a_tree_over_its_cpu_limit_is_reniced(harness: Harness) -> None:
    burner = (sys.executable, "-c", "while True: pass")
    harness.apply([proc("burner", *burner, limits=Limits(cpu=0.2))])
    pid = wait_for(lambda: harness.pid("burner"), what="burner")
    wait_for(lambda: harness.of(EventType.LIMIT_EXCEEDED, "burner"), timeout=10, what="the cpu limit to be seen")
    assert os.getpriority(os.PRIO_PROCESS, pid) == 19
    assert harness.pid("burner") == pid  # reniced, not killed


@pytest.mark.parametrize("fields", [
    {"limits": Limits(open_files=10**20)},  # prlimit: too large for a C long
    {"cpu_affinity": (2**40,)},  # sched_setaffinity: CPU number too large
    {"cpu_affinity": (100_000,)},  # no such CPU: EINVAL
])
def test_a_limit_the_kernel_refuses_leaves_exactly_one_copy_running(harness: Harness, fields: dict[str, object],
                                                                    tmp_path: Path) -> None:
    """A start that fails after the fork must never leave the forked process behind: here the setting is
    refused with a LimitNotApplied event and the replica runs, once."""
    marker = f"sleep-{tmp_path.name}"
    harness.apply([proc("app", sys.executable, "-c", "import time; time.sleep(60)", marker, **fields)])
    pid = wait_for(lambda: harness.pid("app"), what="app")
    wait_for(lambda: harness.of(EventType.LIMIT_NOT_APPLIED, "app"), what="a LimitNotApplied event")
    copies = [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]
    assert [p.pid for p in copies] == [pid]
    assert harness.of(EventType.START_FAILED, "app") == []
