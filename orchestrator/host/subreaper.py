"""This process as the child subreaper of what it starts, so that a replica's whole tree ends with it.

A replica runs in its own process group, and a stop or an exit kills that group. Descendants that leave it
(a PostgreSQL backend calls setsid(), a daemonizing program double-forks) would outlive the replica; as a
child subreaper (prctl PR_SET_CHILD_SUBREAPER, Linux 3.4) this process inherits every such descendant whose
parent dies, instead of init. Each carries its replica's marks in its environment (ORCH_STATE_DIR,
ORCH_NAMESPACE, ORCH_NAME, ORCH_REPLICA, and ORCH_INSTANCE, which start of the replica it descends from):
it is killed once that start no longer runs (a restarted replica's new tree is not touched), and reaped
here when it ends, so nothing is left running and no zombie is left either.

Orphans are told apart from the children this process forked itself: the executor knows its own, and the
other forks (exec probes, on worker threads) are registered in FORKS while they run, under FORKS.lock, which
the sweep holds too; and only a child in another session than this process's is taken for an orphan (every
replica has a session of its own). An orphan without marks (PostgreSQL writes its process titles over its
environment; an exec may wipe it) is taken for the replica start whose end made it an orphan: it appears at
the sweep right after that start was reaped (the kernel reparents before it says the parent ended). One that
appears at another time belongs to a replica that still runs, and is ended with the last start that could be
its ancestor. Where cgroups can be managed, each replica start also has one, which ends its whole tree
whatever its marks say (execute.py).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Container, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from .observe import children_of

STATE_MARKER = "ORCH_STATE_DIR"
PR_SET_CHILD_SUBREAPER = 36
_STATE = STATE_MARKER.encode()
_MARKS = (_STATE, b"ORCH_NAMESPACE", b"ORCH_NAME", b"ORCH_REPLICA", b"ORCH_INSTANCE")


def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants; False where the kernel refuses."""
    import ctypes  # here: 5 ms of start-up that only the daemon and `run` pay

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def wake_on_child_exit(on: bool) -> None:
    """Have SIGCHLD written to the wakeup fd (signal.set_wakeup_fd) of the loop, which then ends and reaps
    orphans; a Python handler is what makes CPython write it. Main thread only."""
    signal.signal(signal.SIGCHLD, _written_to_wakeup_fd if on else signal.SIG_DFL)


def _written_to_wakeup_fd(signum: int, frame: object) -> None:
    """Nothing to do here: the loop reads the signal from its wake pipe."""


class _Forks:
    """Pids of children forked on other threads (exec probes) whose reaping their own code owns."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._pids: set[int] = set()

    @contextmanager
    def forking(self) -> Iterator[set[int]]:
        """Hold the lock while forking, and add the child's pid to the yielded set before letting go."""
        with self.lock:
            yield self._pids

    def done(self, pid: int) -> None:
        with self.lock:
            self._pids.discard(pid)

    def __contains__(self, pid: int) -> bool:
        return pid in self._pids


FORKS = _Forks()


class Orphan(NamedTuple):
    pid: int
    zombie: bool
    replica: str  # "namespace/name.index" from its marks; "" when it has none of this state dir
    instance: str  # ORCH_INSTANCE: which start of that replica (or hook) it descends from
    start_ticks: int  # when it started, in clock ticks since boot


def children() -> list[int]:
    """This process's children, the ones it forked and the ones it inherited."""
    return children_of("self")


def marks(pid: int, marker: str) -> tuple[str, str]:
    """('namespace/name.index', instance) when the process carries this state dir's marks; ("", "")
    otherwise (or when it is gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read(1 << 20)
    except OSError:
        return "", ""
    values = {}
    for item in raw.split(b"\0"):
        name, _, value = item.partition(b"=")
        if name in _MARKS:
            values[name] = value.decode(errors="replace")
    if values.get(_STATE) != marker or b"ORCH_NAME" not in values:
        return "", ""
    replica = f"{values.get(b'ORCH_NAMESPACE', '')}/{values[b'ORCH_NAME']}.{values.get(b'ORCH_REPLICA', '0')}"
    return replica, values.get(b"ORCH_INSTANCE", "")


def orphans(own: Container[int], marker: str, before: Container[int] = ()) -> list[Orphan]:
    """Children of this process that it did not fork: inherited, as subreaper, from a replica's tree. Call
    with FORKS.lock held. Never one of `own` (forked here and waited for by their owners), `before` (its
    children when it became subreaper: a container's entrypoint may have started them), or one in this
    process's own session: every replica starts a session of its own, so whatever descends from one is in
    another session, while what this process forks for itself (git, a shell's job) stays in its session."""
    found = []
    session = os.getsid(0)
    for pid in children():
        if pid in own or pid in FORKS or pid in before:
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # reaped already
        if int(fields[3]) == session:  # field 6 of proc(5), the session: kept by a zombie too
            continue
        zombie = fields[0] == b"Z"
        found.append(Orphan(pid, zombie, *(("", "") if zombie else marks(pid, marker)), int(fields[19])))
    return found


def descendants(pid: int, limit: int = 10_000) -> list[int]:
    """`pid`'s children, theirs, and so on, at most `limit` of them."""
    found: list[int] = []
    stack = [pid]
    while stack and len(found) < limit:
        below = children_of(stack.pop())
        found.extend(below)
        stack.extend(below)
    return found


def marked(marker: str, instance: str, exclude: int) -> list[int]:
    """Pids of live processes anywhere that descend from this start (ORCH_INSTANCE) of a replica: the tree
    of a replica adopted from an earlier daemon, which this process is not the subreaper of."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != exclude and marks(int(entry.name), marker)[1] == instance:
            found.append(int(entry.name))
    return found


def kill_tree_of(pid: int) -> None:
    """SIGKILL an orphan, its whole subtree (taken before the kill: once it is dead they are orphans no one
    could tell apart), and, when it leads one, its process group."""
    below = descendants(pid)
    for target in [pid, *below]:
        try:
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_if_marked(pid: int, marker: str, instance: str) -> bool:
    """SIGKILL `pid` (not a child of this process) only if it still carries `instance`'s marks: through a
    pidfd opened before the check, so that a pid reused meanwhile is never hit."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if marks(pid, marker)[1] != instance:
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)


def reap(pid: int) -> bool:
    """Collect an ended orphan's status (nobody wants it); True when it was collected."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False
