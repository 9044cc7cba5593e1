"""The fence guard: a small process beside a fleet agent that stops what the agent fences (mode One, and
Spread replicas with onQuorumLoss Stop) at its self-fence deadline when the agent itself cannot, because it
was killed or stopped.

What an agent starts outlives it (a daemon crash leaves it running, so that a restart within the lease adopts
it with no failover). If the agent does not come back, its lease expires and another node takes over: without
the guard an orphaned singleton would run beside the new holder until the agent returned. The guard reads the
agent's lease stamp ("BOOT NODE LEASE SENT PID", written by daemon/fleet.py after every keepalive etcd
confirmed; SENT on CLOCK_MONOTONIC, which this process shares on the same boot) and the fence list ("namespace/
name AFTER" per line: stopped AFTER seconds past SENT, TTL less the margin for mode One, lostAfterSeconds more
for such a Spread replica), and sleeps until the first deadline plus a slack (the agent's own, graceful fence
goes first). If the stamp was not renewed by then, it SIGTERMs the process group of every process of the
state dir with that key, SIGKILLs what is left after half the margin, and watches on while the agent lives
(a stopped agent, resumed, may start one again). It ends once the agent has ended and nothing of the list
runs, or when the stamp names another live agent (a new daemon, with its own guard). The agent starts it in a
session of its own (no terminal signal reaches it), reaps it, and ends it when it stops cleanly. It imports
little (os, time, the stamp's parser): a few MB, and a wake-up per deadline.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .stamp import Stamp, boot_id, lease_stamp

SLACK = 0.25  # seconds after the deadline: the agent's own fence (a graceful stop) goes first


def read_stamp(path: str, boot: str) -> tuple[float, int] | None:
    """(SENT, PID) of the stamp, or None when there is none, it cannot be read or is of another boot."""
    found = lease_stamp(Stamp(Path(path)).read())
    return (found.sent, found.pid) if found is not None and found.boot == boot else None


def write_list(path: Path, deadlines: dict[str, float]) -> None:
    """Replace the fence list whole (owner-only; a reader sees the old list or the new one): key -> seconds
    after the stamp's SENT when it must be stopped. Raises OSError."""
    temporary = path.with_name(path.name + ".new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{key} {after:.3f}\n" for key, after in sorted(deadlines.items())))
    os.replace(temporary, path)


def read_list(path: str) -> dict[str, float]:
    """The fence list: key -> seconds after the stamp's SENT when it must be stopped ("namespace/name AFTER")."""
    found: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                words = line.split()
                if len(words) == 2:
                    try:
                        found[words[0]] = float(words[1])
                    except ValueError:
                        continue
    except (OSError, UnicodeDecodeError):
        pass
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a stopped one counts as alive)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def running_singletons(marker: str, keys: set[str]) -> list[int]:
    """Pids of the processes of state dir `marker` whose key ("namespace/name") is in `keys`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                raw = handle.read(1 << 20)
        except OSError:
            continue
        env = dict(item.partition(b"=")[::2] for item in raw.split(b"\0") if item)
        if env.get(b"ORCH_STATE_DIR") != marker.encode() or b"ORCH_NAME" not in env:
            continue
        key = f"{env.get(b'ORCH_NAMESPACE', b'default').decode(errors='replace')}/" \
              f"{env.get(b'ORCH_NAME', b'').decode(errors='replace')}"
        if key in keys and alive(int(entry)):
            found.append(int(entry))
    return found


def fence(marker: str, keys: set[str], grace: float) -> bool:
    """SIGTERM the group of each process of `keys` (a replica leads its own), SIGKILL after `grace` what still
    runs of them (looked up again: a pid ended meanwhile may be another process's now); whether any ran."""
    pids = running_singletons(marker, keys)
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    for pid in set(pids) & set(running_singletons(marker, keys)) if pids else ():
        _signal_group(pid, signal.SIGKILL)
    return bool(pids)


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def guard(stamp: str, fence_list: str, marker: str, agent: int, ttl: float, margin: float) -> str:
    """Watch until there is nothing left to guard; return why it ended."""
    started = time.monotonic()
    boot = boot_id()
    while True:
        now = time.monotonic()
        ended = os.getppid() != agent  # the agent is the parent: once it is gone, this process is reparented
        found = read_stamp(stamp, boot)
        if found is not None and found[1] != agent and ended and alive(found[1]):
            return f"agent {found[1]} took over"
        # No stamp of this boot: the deadline is the one the agent gives itself then, its margin from now.
        sent = found[0] if found is not None and found[0] <= now else started - ttl + 2 * margin
        deadlines = {key: sent + after + SLACK for key, after in read_list(fence_list).items()}
        due = {key for key, at in deadlines.items() if now >= at}
        fenced_some = bool(due) and fence(marker, due, margin / 2)
        if not fenced_some and ended and not running_singletons(marker, set(deadlines)):
            return "the agent has ended and none of its singletons runs"
        later = [at - now for key, at in deadlines.items() if key not in due]
        time.sleep(min([*later, ttl]) if later or not due else min(1.0, margin / 2))


def start(stamp: str, fence_list: str, marker: str, ttl: float, margin: float) -> Any:
    """Start the guard of this process (the agent): a subprocess.Popen, in a session of its own, in
    subreaper.FORKS while it runs (the orphan sweep leaves it to its owner, who reaps it: `end`)."""
    import subprocess

    from .subreaper import FORKS

    env = {name: os.environ[name] for name in ("PATH", "PYTHONPATH", "LANG") if name in os.environ}
    argv = [sys.executable, "-m", __name__, stamp, fence_list, marker, str(os.getpid()), str(ttl), str(margin)]
    with FORKS.forking() as forks:
        child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        forks.add(child.pid)
    return child


def end(child: Any) -> None:
    """Stop and reap a guard `start` gave (the agent stops cleanly: what it ran is stopped or kept by it)."""
    from .subreaper import FORKS

    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=5)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: then killed
            child.kill()
            child.wait()
    FORKS.done(child.pid)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 6:
        print("usage: python -m orchestrator.host.fenceguard STAMP LIST MARKER AGENT_PID TTL MARGIN",
              file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    stamp, fence_list, marker, agent, ttl, margin = argv
    guard(stamp, fence_list, marker, int(agent), float(ttl), float(margin))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
