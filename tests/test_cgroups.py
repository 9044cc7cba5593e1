"""Memory and cpu limits enforced by the kernel, in a cgroup per replica (cgroups.py), with real processes.

The tests that need a cgroup tree this process can manage skip, with the reason find_host gives, where
there is none. cgroup v1 and v2 take the same tests: whichever the machine has is the one exercised.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import reap_orphans, wait_for
from harness import Harness

from orchestrator.core.errors import SpawnError
from orchestrator.core.events import EventType
from orchestrator.core.model import Backoff, Limits, ProcessSpec, ReplicaId, Shutdown
from orchestrator.host.cgroups import (
    CgroupHost,
    Mount,
    ReplicaCgroup,
    _v2_host,
    choose_host,
    cpu_quota_us,
    find_host,
    parse_mountinfo,
    parse_proc_cgroup,
    replica_cgroup_name,
)
from orchestrator.host.execute import Executor, _attach_forked_before
from orchestrator.host.observe import children_of
from orchestrator.planning import status
from orchestrator.planning.graph import desired_state

HOG = (sys.executable, "-c", ("import time\nblocks = []\nwhile True:\n"
                              "    blocks.append(bytearray(8 << 20)); time.sleep(0.01)"))


def proc(name: str, *command: str, **fields: object) -> ProcessSpec:
    fields.setdefault("backoff", Backoff(initial_seconds=0.2, max_seconds=0.2))
    fields.setdefault("shutdown", Shutdown("SIGTERM", 1))
    return ProcessSpec(name=name, command=command or ("sleep", "60"), **fields)  # type: ignore[arg-type]


# --- reading /proc ----------------------------------------------------------------------------------------

MOUNTINFO_V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

MOUNTINFO_V2_CONTAINER = """\
25 22 0:23 /kubepods/pod1 /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
26 22 0:24 / /proc rw - proc proc rw
"""


def test_cgroup_mounts_are_read_from_mountinfo() -> None:
    mounts = parse_mountinfo(MOUNTINFO_V1)
    assert [m.fstype for m in mounts] == ["cgroup", "cgroup", "cgroup2"]
    assert "cpu" in mounts[0].options and "cpuacct" in mounts[0].options
    assert mounts[1].point == Path("/sys/fs/cgroup/memory")
    (v2,) = parse_mountinfo(MOUNTINFO_V2_CONTAINER)
    assert v2 == Mount("/kubepods/pod1", Path("/sys/fs/cgroup"), "cgroup2", frozenset({"rw", "nsdelegate"}))


def test_where_a_process_is_is_read_per_controller() -> None:
    where = parse_proc_cgroup("9:name=systemd:/\n4:memory:/app/x\n2:cpu,cpuacct:/app\n0::/user.slice/a.scope\n")
    assert where["memory"] == "/app/x"
    assert where["cpu"] == where["cpuacct"] == "/app"
    assert where[""] == "/user.slice/a.scope"


def test_names_and_quotas() -> None:
    assert replica_cgroup_name("default/web", 2) == "default.web.2"
    assert cpu_quota_us(0.5) == 50_000
    assert cpu_quota_us(2) == 200_000
    assert cpu_quota_us(0.001) == 1_000  # the kernel's floor


def test_watchdog_is_used_when_asked() -> None:
    host, how = choose_host("watchdog", "/anywhere")
    assert host is None and how == "watchdog (as asked)"


def test_a_v2_hierarchy_without_the_controllers_is_refused_with_the_reason(tmp_path: Path) -> None:
    mounts = [m for m in parse_mountinfo(Path("/proc/self/mountinfo").read_text()) if m.fstype == "cgroup2"]
    if not mounts:
        pytest.skip("no cgroup2 mount on this machine")
    controllers = set((mounts[0].point / "cgroup.controllers").read_text().split())
    if {"memory", "cpu"} <= controllers:
        pytest.skip("this machine's cgroup2 root has the memory and cpu controllers")
    host, why = _v2_host(mounts[0].point, "orchestrator-test")
    assert host is None
    assert "is not delegated the" in why and "controller" in why


# --- with the kernel enforcing ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def session_cgroup_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CgroupHost | str]:
    """One tree for the session: under cgroup v2, finding it moves this process into a leaf, once."""
    host, why = find_host(str(tmp_path_factory.mktemp("cgroups")))
    if host is None:
        yield why
        return
    try:
        yield host
    finally:
        host.close()
        leftovers = [base for base in host.bases if base.exists()]
        assert not leftovers, f"cgroup tree left behind: {leftovers}"


@pytest.fixture
def cgroup_host(session_cgroup_host: CgroupHost | str) -> Iterator[CgroupHost]:
    if isinstance(session_cgroup_host, str):
        pytest.skip(f"no cgroup tree to manage here: {session_cgroup_host}")
    host = session_cgroup_host
    yield host

    def swept() -> bool:
        reap_orphans()  # a zombie grandchild (this process is its subreaper) holds its cgroup until reaped
        host.sweep()
        return not any(d.is_dir() for base in host.bases for d in base.iterdir())

    with contextlib.suppress(BaseException):  # the assert below says what is left
        wait_for(swept, timeout=2, what="replica cgroups to be removable")
    leftovers = [d for base in host.bases for d in base.iterdir() if d.is_dir()]
    for directory in leftovers:  # so that the next test starts clean
        with contextlib.suppress(OSError):
            directory.rmdir()
    assert not leftovers, f"replica cgroups left behind: {leftovers}"


@pytest.fixture
def contained(tmp_path: Path, cgroup_host: CgroupHost) -> Iterator[Harness]:
    h = Harness(tmp_path / "logs", cgroups=cgroup_host)
    try:
        yield h
    finally:
        h.close()


def _cgroup(h: Harness, name: str) -> ReplicaCgroup:
    record = h.records()[ReplicaId(f"default/{name}", 0)]
    assert record.process is not None and record.cgroup, "the replica has no cgroup"
    host = h.reconciler.executor.cgroups
    assert host is not None
    group = host.of_process(record.process.pid)  # where the kernel says it is
    assert group is not None and group.path == record.cgroup
    return group


def test_limits_are_written_and_the_replica_runs_inside(contained: Harness, cgroup_host: CgroupHost) -> None:
    contained.apply([proc("app", limits=Limits(memory_bytes=96 << 20, cpu=0.5)), proc("free")])
    pid = wait_for(lambda: contained.pid("app"), what="app")
    wait_for(lambda: contained.pid("free"), what="free")
    group = _cgroup(contained, "app")
    assert pid in group.pids()
    memory_dir, cpu_dir = group.memory, group.cpu
    assert memory_dir is not None and cpu_dir is not None
    if cgroup_host.version == 2:
        assert (memory_dir / "memory.max").read_text().strip() == str(96 << 20)
        assert (cpu_dir / "cpu.max").read_text().split() == ["50000", "100000"]
    else:
        assert (memory_dir / "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
        assert (cpu_dir / "cpu.cfs_quota_us").read_text().strip() == "50000"
    free = _cgroup(contained, "free")  # no limits: a cgroup only to hold its tree, limiting nothing
    assert contained.pid("free") in free.pids()
    if cgroup_host.version == 2:
        assert (free.dirs[0] / "memory.max").read_text().strip() == "max"
        assert (free.dirs[0] / "cpu.max").read_text().split()[0] == "max"
    else:
        assert free.cpu is None and free.memory is not None  # a cpu cgroup would take real-time scheduling
        assert int((free.memory / "memory.limit_in_bytes").read_text()) > 1 << 50
    documents = status.objects(desired_state(contained.reconciler.desired.specs.values()), contained.records(), {},
                               0.0, None, cgroup_host.label)
    app = next(d for d in documents if d["name"] == "app")
    assert app["limits"] == {"memory": cgroup_host.label, "cpu": cgroup_host.label}
    assert app["replica_status"][0]["cgroup"] == group.path
    assert contained.of(EventType.LIMIT_NOT_APPLIED) == []


def test_a_memory_hog_is_oom_killed_by_the_kernel_and_restarted_under_the_backoff(contained: Harness) -> None:
    contained.apply([proc("hog", *HOG, limits=Limits(memory_bytes=64 << 20))])
    wait_for(lambda: len(contained.of(EventType.EXITED, "hog")) >= 2, timeout=15, what="two OOM kills")
    exited = contained.of(EventType.EXITED, "hog")[0]
    assert "(OOMKilled)" in exited.message and "restarting in 0.2 s" in exited.message
    assert "SIGKILL" in exited.message
    # The kernel acted, not the watchdog (whose words are "... bytes resident, limit ...").
    for event in contained.of(EventType.LIMIT_EXCEEDED, "hog"):
        assert f"killed by the kernel at its memory limit of {64 << 20} bytes" in event.message
    record = contained.records()[ReplicaId("default/hog", 0)]
    assert record.restarts >= 1
    last = record.last_exit
    assert last is not None and last.reason.value == "OOMKilled"
    assert last.message == f"killed by the kernel at its memory limit of {64 << 20} bytes"


def test_a_child_killed_by_the_kernel_ends_the_whole_replica(contained: Harness) -> None:
    # The main process stays small and waits; the child it forks allocates past the limit.
    script = ("import subprocess, sys, time\n"
              f"child = subprocess.Popen({list(HOG)!r})\n"
              "child.wait()\n"
              "time.sleep(60)\n")
    contained.apply([proc("parent", sys.executable, "-c", script, limits=Limits(memory_bytes=64 << 20),
                          backoff=Backoff(initial_seconds=30, max_seconds=30))])
    pid = wait_for(lambda: contained.pid("parent"), what="parent")
    exited = wait_for(lambda: contained.of(EventType.EXITED, "parent"), timeout=15, what="the replica to end")
    assert "(OOMKilled)" in exited[0].message
    assert exited[0].pid == pid
    record = contained.records()[ReplicaId("default/parent", 0)]
    assert record.last_exit is not None and record.last_exit.reason.value == "OOMKilled"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_cpu_limit_is_a_kernel_quota_not_a_renice(contained: Harness) -> None:
    contained.apply([proc("burner", sys.executable, "-c", "while True: pass", limits=Limits(cpu=0.2))])
    pid = wait_for(lambda: contained.pid("burner"), what="burner")
    group = _cgroup(contained, "burner")
    assert group.cpu is not None

    def throttled() -> int:
        text = (group.cpu / "cpu.stat").read_text()
        return int(dict(line.split() for line in text.splitlines())["nr_throttled"])

    before, start, periods = _cpu_seconds(pid), time.monotonic(), throttled()
    wait_for(lambda: throttled() >= periods + 8, what="the kernel to throttle it for 8 periods of 0.1 s")
    cores = (_cpu_seconds(pid) - before) / (time.monotonic() - start)
    assert cores < 0.4, f"{cores:.2f} cores against a limit of 0.2"
    assert os.getpriority(os.PRIO_PROCESS, pid) == 0
    assert contained.of(EventType.LIMIT_EXCEEDED, "burner") == []


def test_what_escaped_the_process_group_is_killed_with_the_replica(contained: Harness) -> None:
    # A grandchild in a session of its own is out of reach of killpg, not of the cgroup.
    script = ("import subprocess, time\n"
              "subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
              "time.sleep(60)\n")
    contained.apply([proc("forker", sys.executable, "-c", script, limits=Limits(memory_bytes=256 << 20))])
    wait_for(lambda: contained.pid("forker"), what="forker")
    group = _cgroup(contained, "forker")
    def escaped_ones() -> list[int]:
        # Waited for, not looked at once: between its fork and its setsid the grandchild is still in the group.
        return [p for p in group.pids() if _pgid(p) not in (None, contained.pid("forker"))]

    # (An interpreter start-up and a fork: seconds on a loaded 2-core machine.)
    escaped = wait_for(escaped_ones, timeout=20, what="the escaped grandchild, in a session of its own")
    assert len(escaped) == 1 and len(group.pids()) == 2
    contained.apply([])

    def grandchild_gone() -> bool:
        reap_orphans()  # this test process is the subreaper that inherits it
        return not Path(f"/proc/{escaped[0]}").exists()

    wait_for(grandchild_gone, what="the grandchild killed")
    contained.apply([proc("other", limits=Limits(memory_bytes=256 << 20))])  # a later reap removes it
    wait_for(lambda: contained.pid("other"), what="other")
    contained.apply([])
    wait_for(lambda: not group.dirs[0].exists(), what="the cgroup to be removed")


def test_what_a_replica_forked_before_its_move_is_moved_in_after_it(cgroup_host: CgroupHost) -> None:
    # The move takes one process (and on v1 can take tens of milliseconds): a child forked before it stays
    # outside every limit unless the executor moves it in too.
    script = "import subprocess, time\nsubprocess.Popen(['sleep', '60'])\nprint('forked', flush=True)\ntime.sleep(60)\n"
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    group = cgroup_host.create("default.early.0.1", Limits(memory_bytes=256 << 20))
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"forked\n"
        group.attach(parent.pid)
        [child] = children_of(parent.pid)
        assert child not in group.pids()
        _attach_forked_before(parent.pid, group)
        assert group.pids() == sorted([parent.pid, child])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        parent.stdout.close()  # type: ignore[union-attr]
        wait_for(lambda: reap_orphans() is None and not group.pids(), what="the tree ended")
        group.remove()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_an_adopted_replica_keeps_its_cgroup(tmp_path: Path, cgroup_host: CgroupHost) -> None:
    spec = proc("app", limits=Limits(memory_bytes=64 << 20))
    first = Executor(tmp_path / "logs", cgroups=cgroup_host)
    child = first.spawn(ReplicaId("default/app", 0), spec)
    second = Executor(tmp_path / "logs", cgroups=cgroup_host)
    try:
        first.release()  # as a daemon that leaves its processes running
        adopted = second.adopt(ReplicaId("default/app", 0), child.process)
        assert adopted is not None
        assert adopted.cgroup == child.cgroup != ""
        assert second.cgroup_of(child.process.pid) is not None
    finally:
        os.killpg(child.process.pid, 9)
        os.waitpid(child.process.pid, 0)
        second.reap(child.process.pid)
    assert not Path(child.cgroup).exists()


def test_a_leftover_cgroup_of_a_slot_is_reused_with_new_limits(cgroup_host: CgroupHost) -> None:
    first = cgroup_host.create("default.app.0", Limits(memory_bytes=64 << 20))
    again = None
    try:
        again = cgroup_host.create("default.app.0", Limits(memory_bytes=128 << 20, cpu=1))
        assert again.memory == first.memory
        name = "memory.max" if cgroup_host.version == 2 else "memory.limit_in_bytes"
        assert (again.dirs[0] / name).read_text().strip() == str(128 << 20)
    finally:
        assert (again or first).remove()


def test_a_cgroup_holding_a_process_is_never_shared(tmp_path: Path, cgroup_host: CgroupHost) -> None:
    # Two orchestrators on one state dir (two `run`s, say) must not put replicas in one cgroup: ending one
    # would kill the other's.
    executor = Executor(tmp_path / "logs", cgroups=cgroup_host)
    spec = proc("app", limits=Limits(memory_bytes=64 << 20))
    child = executor.spawn(ReplicaId("default/app", 0), spec)
    try:
        with pytest.raises(OSError, match="still holds processes"):
            cgroup_host.create(Path(child.cgroup).name, spec.limits)  # one per start: default.app.0.1
        second = Executor(tmp_path / "logs", cgroups=cgroup_host).spawn(ReplicaId("default/app", 0), spec)
        try:
            assert second.cgroup == "" and any("watchdog enforces" in w for w in second.warnings)
        finally:
            os.killpg(second.process.pid, 9)
            os.waitpid(second.process.pid, 0)
    finally:
        os.killpg(child.process.pid, 9)
        wait_for(lambda: executor.reap(child.process.pid), what="the reap")


def test_under_v1_a_replica_is_only_in_the_controllers_its_limits_need(contained: Harness,
                                                                       cgroup_host: CgroupHost) -> None:
    if cgroup_host.version != 1:
        pytest.skip("cgroup v2 has one directory for both controllers")
    contained.apply([proc("small", limits=Limits(memory_bytes=64 << 20)), proc("slow", limits=Limits(cpu=0.5))])
    wait_for(lambda: contained.pid("small") and contained.pid("slow"), what="both")
    small, slow = _cgroup(contained, "small"), _cgroup(contained, "slow")
    assert small.memory is not None and small.cpu is None  # a cpu cgroup would take real-time scheduling away
    assert slow.memory is None and slow.cpu is not None
    assert slow.oom_kills() == 0


def test_a_start_that_fails_leaves_no_cgroup(tmp_path: Path, cgroup_host: CgroupHost) -> None:
    executor = Executor(tmp_path / "logs", cgroups=cgroup_host)
    spec = proc("missing", "/nonexistent/binary", limits=Limits(memory_bytes=64 << 20))
    with pytest.raises(SpawnError, match="command not found"):
        executor.spawn(ReplicaId("default/missing", 0), spec)
    assert [p for base in cgroup_host.bases for p in base.iterdir() if p.is_dir()] == []


def test_the_v2_files_a_replica_cgroup_is_written_and_read_through(tmp_path: Path) -> None:
    """cgroup v2 with the memory and cpu controllers does not exist on every machine (not on a hybrid v1
    host): here a directory stands in for one, with the control files the kernel would create, to hold
    the names and formats of what is written and read. The kernel's own behaviour is tested above,
    wherever the machine has it."""
    base = tmp_path / "orchestrator-0123456789"
    replica = base / "default.app.0"
    replica.mkdir(parents=True)  # as the kernel makes it, with its files (reused: it holds no process)
    for name in ("memory.max", "memory.swap.max", "memory.oom.group", "cpu.max", "cgroup.procs", "cgroup.kill"):
        (replica / name).write_text("")
    (replica / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 1\n")
    host = CgroupHost(2, base, base)
    group = host.create("default.app.0", Limits(memory_bytes=64 << 20, cpu=0.5))
    assert group == ReplicaCgroup(2, replica, replica)
    assert (replica / "memory.max").read_text() == str(64 << 20)
    assert (replica / "memory.swap.max").read_text() == "0"  # a limit that could spill into swap would not hold
    assert (replica / "memory.oom.group").read_text() == "1"  # an OOM kill takes the whole replica
    assert (replica / "cpu.max").read_text() == "50000 100000"
    assert not group.partial_oom_kills  # so the limit watch does not poll it
    assert group.oom_kills() == 2
    group.attach(4242)
    assert (replica / "cgroup.procs").read_text() == "4242"
    group.kill()
    assert (replica / "cgroup.kill").read_text() == "1"
    with pytest.raises(OSError, match="still holds processes"):
        host.create("default.app.0", Limits(cpu=2))  # never shared while something runs in it
    (replica / "cgroup.procs").write_text("")  # the replica ended
    host.create("default.app.0", Limits(cpu=2))  # unlimited memory, two cores
    assert (replica / "memory.max").read_text() == "max"
    assert (replica / "cpu.max").read_text() == "200000 100000"
