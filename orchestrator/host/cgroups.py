"""Kernel cgroups for memory and cpu limits: finding a hierarchy this process may manage, one cgroup per replica.

Where the kernel can enforce, it does: a replica with a memory or cpu limit gets a cgroup of its own under
`orchestrator-<tag>/` in the daemon's own cgroup, with the limits written before the spawn and the child
moved in right after it (as for rlimits: no preexec_fn, so the fast spawn path stays). A move takes one
process, and on v1 it can take tens of milliseconds: what the replica forked before it was in (an
interpreter that forks at once) is moved in after it by the executor, round after round until none is left
outside. Everything the replica forks later is inside, so the limits hold for the whole tree.

cgroup v2 (one hierarchy): memory.max, memory.swap.max 0 (a limit that could spill into swap would not
hold), memory.oom.group 1 (an OOM kill takes the whole replica, as in Kubernetes), cpu.max, and the
oom_kill count in memory.events tells an OOM kill from any other SIGKILL. The "no internal processes"
rule means controllers can be handed down only from a cgroup with no process in it: the daemon moves
itself into a leaf `orchestrator-<tag>.daemon` first, which works when its cgroup is its own (a systemd
unit with Delegate=yes, as `orchestrator startup` writes) and fails, with a reason, when it shares it
(a login shell's scope).

cgroup v1 (a hierarchy per controller, still the default on older hosts): memory.limit_in_bytes with
memory.memsw.limit_in_bytes where swap is accounted, cpu.cfs_quota_us over cpu.cfs_period_us, and the
oom_kill count in memory.oom_control. The kernel kills the largest process of the cgroup, which may not be
the replica's main process: the limit watch reads the count every second and the replica is then ended
as a whole, OOMKilled.

Nothing here decides anything: the executor creates, attaches, reads and removes; the reconciler folds
what they say into its records. When no hierarchy can be used, `find_host` says why and the sampling
watchdog of limits.py enforces instead.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.model import Limits

CPU_PERIOD_US = 100_000
MIN_CPU_QUOTA_US = 1_000  # the kernel's floor for a quota
CONTROLLERS = ("memory", "cpu")
# The subgroup systemd puts the daemon in (DelegateSubgroup= of the unit `orchestrator startup` writes):
# replica cgroups then go beside it, and the unit's own cgroup never holds a process.
DAEMON_SUBGROUP = "supervisor"


@dataclass(frozen=True)
class Mount:
    root: str  # the path inside the hierarchy that is mounted (not "/" in a container)
    point: Path
    fstype: str
    options: frozenset[str]  # super options: the v1 controllers of this hierarchy


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup mounts in /proc/self/mountinfo."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if len(fields) < dash + 4 or not fields[dash + 1].startswith("cgroup"):
            continue
        point = fields[4].replace("\\040", " ")
        mounts.append(Mount(fields[3], Path(point), fields[dash + 1], frozenset(fields[dash + 3].split(","))))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Where a process is, by controller ("" for the v2 hierarchy) from /proc/PID/cgroup."""
    where: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            where[controller] = parts[2]
    return where


def _under(mount: Mount, path: str) -> Path | None:
    """The directory of cgroup `path` under `mount`, or None when the mount does not show it."""
    root = mount.root.rstrip("/")
    if root and path != root and not path.startswith(root + "/"):
        return None
    return mount.point / path[len(root):].lstrip("/")


def _read(path: Path) -> str:
    # os.read rather than Path.read_text: a third of the cost, and the limit watch reads one file per
    # replica a second. Control files are small; /proc/PID/cgroup and mountinfo may not be.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def _write(path: Path, value: str) -> None:
    # One write(2): cgroup files take a value per write call.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)  # as `echo v > file` opens it
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _counter(text: str, name: str) -> int:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return 0


def cpu_quota_us(cores: float) -> int:
    return max(MIN_CPU_QUOTA_US, round(cores * CPU_PERIOD_US))


def replica_cgroup_name(key: str, index: int) -> str:
    """`default/web` replica 2 -> `default.web.2` (names and namespaces cannot hold a dot or a slash)."""
    return f"{key.replace('/', '.')}.{index}"


@dataclass(frozen=True)
class ReplicaCgroup:
    """The cgroup of one replica. Under v2 one directory holds both controllers; under v1 there is one
    directory per controller the replica's limits need (a cpu cgroup also takes away real-time
    scheduling, so a replica limited in memory only is not put in one)."""

    version: int
    memory: Path | None
    cpu: Path | None

    @property
    def dirs(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(d for d in (self.memory, self.cpu) if d is not None))

    @property
    def path(self) -> str:
        return str(self.dirs[0])

    @property
    def partial_oom_kills(self) -> bool:
        """May the kernel OOM-kill one process in it and leave the rest running? (v1: yes; v2 has
        memory.oom.group set, so it ends them all and the main process's exit says so.)"""
        return self.version == 1 and self.memory is not None

    def attach(self, pid: int) -> None:
        """Move `pid` in; if that fails half-way (v1), it is moved back out of what it entered first."""
        entered: list[Path] = []
        try:
            for directory in self.dirs:
                _write(directory / "cgroup.procs", str(pid))
                entered.append(directory)
        except OSError:
            for directory in entered:  # to where the daemon itself is: the parent of our tree
                with contextlib.suppress(OSError):
                    _write(directory.parent.parent / "cgroup.procs", str(pid))
            raise

    def oom_kills(self) -> int:
        """How many processes the kernel killed in here for want of memory; 0 once the cgroup is gone."""
        if self.memory is None:
            return 0
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            return _counter(_read(self.memory / name), "oom_kill")
        except (OSError, ValueError):
            return 0

    def pids(self) -> list[int]:
        found: set[int] = set()
        for directory in self.dirs:
            found.update(_pids_in(directory))
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL everything in it (what escaped the process group too: a daemonised grandchild)."""
        if self.version == 2:
            with contextlib.suppress(OSError):  # cgroup.kill: Linux 5.14 and later
                _write(self.dirs[0] / "cgroup.kill", "1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        """Remove it once empty; False while something (a dying process) still holds it."""
        removed = True
        for directory in self.dirs:
            try:
                directory.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                removed = False
        return removed


def _pids_in(directory: Path) -> list[int]:
    try:
        return [int(line) for line in _read(directory / "cgroup.procs").split()]
    except (OSError, ValueError):
        return []


@dataclass(frozen=True)
class CgroupHost:
    """Where replica cgroups are made: the `orchestrator-<tag>` directory of each controller (one and the
    same under v2)."""

    version: int
    memory_base: Path
    cpu_base: Path

    @property
    def label(self) -> str:
        return f"cgroup v{self.version}"

    @property
    def bases(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys((self.memory_base, self.cpu_base)))

    def create(self, name: str, limits: Limits) -> ReplicaCgroup:
        """A cgroup with `limits` written, ready for its process; OSError when the kernel refuses, or when
        a cgroup of that name still holds a process (another orchestrator's replica: never shared)."""
        if self.version == 2:
            group = ReplicaCgroup(2, self.memory_base / name, self.memory_base / name)
        else:
            # Without limits, only to hold its tree: the memory hierarchy, with nothing written, limits nothing.
            group = ReplicaCgroup(1, self.memory_base / name if limits.memory_bytes is not None or limits.cpu is None
                                  else None, self.cpu_base / name if limits.cpu is not None else None)
        for directory in group.dirs:
            try:
                directory.mkdir()
            except FileExistsError:  # a leftover of this slot (a zombie held it): reused, limits rewritten
                if _pids_in(directory):
                    raise OSError(errno.EBUSY, f"{directory} still holds processes") from None
        try:
            self._write_limits(group, limits)
        except OSError:
            group.remove()
            raise
        return group

    @staticmethod
    def _write_limits(group: ReplicaCgroup, limits: Limits) -> None:
        if group.version == 2:
            assert group.memory is not None and group.cpu is not None
            memory = "max" if limits.memory_bytes is None else str(limits.memory_bytes)
            quota = "max" if limits.cpu is None else str(cpu_quota_us(limits.cpu))
            _write(group.memory / "memory.max", memory)
            if (group.memory / "memory.swap.max").exists():
                _write(group.memory / "memory.swap.max", "max" if limits.memory_bytes is None else "0")
            _write(group.memory / "memory.oom.group", "1")
            _write(group.cpu / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        if group.memory is not None and limits.memory_bytes is not None:
            swap_file = group.memory / "memory.memsw.limit_in_bytes"
            swap_accounted = swap_file.exists()
            if swap_accounted:  # memory+swap must stay >= memory: lift it first (a reused cgroup may hold less)
                _write(swap_file, "-1")
            _write(group.memory / "memory.limit_in_bytes", str(limits.memory_bytes))
            if swap_accounted:
                _write(swap_file, str(limits.memory_bytes))
        if group.cpu is not None and limits.cpu is not None:
            _write(group.cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(group.cpu / "cpu.cfs_quota_us", str(cpu_quota_us(limits.cpu)))

    def of_process(self, pid: int) -> ReplicaCgroup | None:
        """The replica cgroup of this state dir that `pid` is in (for adoption), or None. It may lie under
        another cgroup than this daemon's own, if the one before it ran elsewhere."""
        try:
            where = parse_proc_cgroup(_read(Path(f"/proc/{pid}/cgroup")))
        except OSError:
            return None
        mounts = _cgroup_mounts()
        found: dict[str, Path] = {}
        controllers = ({"": self.memory_base} if self.version == 2 else
                       {"memory": self.memory_base, "cpu": self.cpu_base})
        for controller, base in controllers.items():
            mount = _mount_of(mounts, controller)
            path = where.get(controller)
            directory = _under(mount, path) if mount is not None and path is not None else None
            if directory is not None and directory.parent.name == base.name:
                found[controller] = directory
        if self.version == 2:
            return ReplicaCgroup(2, found[""], found[""]) if "" in found else None
        if not found:
            return None
        return ReplicaCgroup(1, found.get("memory"), found.get("cpu"))

    def sweep(self) -> None:
        """Remove the empty replica cgroups an earlier daemon left (those with processes are adopted)."""
        for base in self.bases:
            for directory in _subdirectories(base):
                if not _pids_in(directory):
                    with contextlib.suppress(OSError):
                        directory.rmdir()

    def close(self) -> None:
        """Remove the tree once every replica in it is gone (left as it is while something runs)."""
        self.sweep()
        for base in self.bases:
            with contextlib.suppress(OSError):
                base.rmdir()


def _subdirectories(base: Path) -> Iterable[Path]:
    try:
        return [entry for entry in base.iterdir() if entry.is_dir()]
    except OSError:
        return []


def _cgroup_mounts() -> list[Mount]:
    try:
        return parse_mountinfo(_read(Path("/proc/self/mountinfo")))
    except OSError:
        return []


def _mount_of(mounts: list[Mount], controller: str) -> Mount | None:
    """The mount of the v2 hierarchy (controller "") or of the v1 hierarchy holding `controller`."""
    for mount in mounts:
        if controller == "" and mount.fstype == "cgroup2":
            return mount
        if controller and mount.fstype == "cgroup" and controller in mount.options:
            return mount
    return None


def host_tag(marker: str) -> str:
    """A short name for one state dir, so that two daemons on one host never share replica cgroups."""
    return hashlib.sha256(marker.encode()).hexdigest()[:10]


def find_host(marker: str) -> tuple[CgroupHost | None, str]:
    """The cgroup tree this process can put its replicas in, and how it was found (or why there is none)."""
    mounts = _cgroup_mounts()
    try:
        where = parse_proc_cgroup(_read(Path("/proc/self/cgroup")))
    except OSError as error:
        return None, f"cannot read /proc/self/cgroup: {error.strerror or error}"
    name = f"orchestrator-{host_tag(marker)}"
    v1 = [_mount_of(mounts, c) for c in CONTROLLERS]
    if all(v1) and all(c in where for c in CONTROLLERS):
        return _v1_host([_under(m, where[c]) for m, c in zip(v1, CONTROLLERS, strict=True) if m], name)
    v2 = _mount_of(mounts, "")
    if v2 is not None and "" in where:
        directory = _under(v2, where[""])
        if directory is not None:
            return _v2_host(directory, name)
    return None, "no cgroup hierarchy with the memory and cpu controllers is mounted"


def _v1_host(dirs: list[Path | None], name: str) -> tuple[CgroupHost | None, str]:
    bases = []
    for directory in dirs:
        if directory is None or not os.access(directory, os.W_OK):
            return None, f"cgroup v1: {directory} is not writable by this user"
        base = directory / name
        try:
            base.mkdir(exist_ok=True)
        except OSError as error:
            return None, f"cgroup v1: cannot create {base}: {error.strerror or error}"
        bases.append(base)
    return CgroupHost(1, bases[0], bases[1]), f"cgroup v1 under {bases[0].parent} and {bases[1].parent}"


def _v2_host(directory: Path, name: str) -> tuple[CgroupHost | None, str]:
    if directory.name == DAEMON_SUBGROUP and os.access(directory.parent, os.W_OK):
        # Under systemd with DelegateSubgroup=: the delegated cgroup is the parent. A daemon restarted
        # after a crash is put back in the subgroup, which must stay a leaf; so replicas go beside it.
        return _v2_host_in(directory.parent, name, leaf=None)
    return _v2_host_in(directory, name, leaf=directory / f"{name}.daemon")


def _v2_host_in(directory: Path, name: str, leaf: Path | None) -> tuple[CgroupHost | None, str]:
    try:
        available = set(_read(directory / "cgroup.controllers").split())
    except OSError as error:
        return None, f"cgroup v2: cannot read {directory}/cgroup.controllers: {error.strerror or error}"
    missing = [c for c in CONTROLLERS if c not in available]
    if missing:
        return None, f"cgroup v2: {directory} is not delegated the {' and '.join(missing)} controller"
    if not os.access(directory, os.W_OK):
        return None, f"cgroup v2: {directory} is not writable by this user"
    enable = " ".join(f"+{c}" for c in CONTROLLERS)
    try:
        if leaf is None:
            _write(directory / "cgroup.subtree_control", enable)
        else:
            _enable_below(directory, enable, leaf=leaf)
        base = directory / name
        base.mkdir(exist_ok=True)
        _write(base / "cgroup.subtree_control", enable)
    except OSError as error:
        return None, f"cgroup v2: cannot delegate under {directory}: {error.strerror or error}"
    return CgroupHost(2, base, base), f"cgroup v2 under {directory}"


def _enable_below(directory: Path, enable: str, leaf: Path) -> None:
    """Turn the controllers on for `directory`'s children; if this process is in the way (a cgroup with
    processes cannot hand controllers down), move it into `leaf` first, and back if that did not help."""
    try:
        _write(directory / "cgroup.subtree_control", enable)
        return
    except OSError as error:
        if error.errno != errno.EBUSY:
            raise
    leaf.mkdir(exist_ok=True)
    _write(leaf / "cgroup.procs", str(os.getpid()))
    try:
        _write(directory / "cgroup.subtree_control", enable)
    except OSError as error:
        _write(directory / "cgroup.procs", str(os.getpid()))
        with contextlib.suppress(OSError):
            leaf.rmdir()
        raise OSError(error.errno, f"{directory} holds other processes than this one; give the daemon a "
                      "cgroup of its own (a systemd unit with Delegate=yes)") from error


def choose_host(mode: str, marker: str) -> tuple[CgroupHost | None, str]:
    """The cgroup tree for `--limits auto` (None for "watchdog", or where none can be used), and a line
    saying how memory and cpu limits are enforced, for the daemon's log and /health."""
    if mode == "watchdog":
        return None, "watchdog (as asked)"
    host, how = find_host(marker)
    if host is None:
        return None, f"watchdog ({how})"
    host.sweep()
    return host, how
