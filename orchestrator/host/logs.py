"""Per-replica log files: where a replica's stdout and stderr go.

Each replica writes both streams, interleaved as they happen, to one file that it holds open itself
(`<state>/logs/<namespace>/<name>.<replica>.log`), so logging costs the orchestrator nothing per line.
Files past the spec's `logs.maxBytes` are rotated as they grow: `Rotation` looks at each file again sooner
the faster it grows, so a file overshoots its limit by about 50 ms of output (`rotate_if_needed`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core.model import LogPolicy, ReplicaId


def log_path(log_dir: Path, replica: ReplicaId) -> Path:
    namespace, name = replica.key.split("/", 1)
    return log_dir / namespace / f"{name}.{replica.index}.log"


def open_log(log_dir: Path, replica: ReplicaId) -> int:
    """An fd open for appending to the replica's log file, created 0600 with its folder 0700 if needed.

    Logs may hold secrets a process prints, so only the owner may read them.
    """
    path = log_path(log_dir, replica)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW  # a planted link is refused
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, flags, 0o600)


def rotate_if_needed(path: Path, policy: LogPolicy) -> bool:
    """Rotate `path` when it has grown past policy.max_bytes; True when it did.

    Copy-and-truncate: the process keeps its descriptor (opened O_APPEND), so after the truncation it goes
    on writing at the start of the same, now empty, file. Lines written between the copy and the
    truncation are lost; that window is one copy of at most max_bytes.
    """
    try:
        if path.stat().st_size <= policy.max_bytes:
            return False
    except FileNotFoundError:
        return False
    if policy.keep > 0:
        for index in range(policy.keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{index}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
        # Copied into a file that is 0600 from its creation and renamed into place when complete, so
        # nobody ever sees a half-written or readable-by-others copy.
        partial = path.with_name(f"{path.name}.1.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(path, "rb") as source, os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(source, target)
        os.replace(partial, path.with_name(f"{path.name}.1"))
    os.truncate(path, 0)
    return True


class Rotation:
    """When to look at each running replica's log size next: within a second, and sooner as a file nears
    its limit at the rate it has been growing (half the time it would take, at least 50 ms apart)."""

    MAX_INTERVAL = 1.0
    MIN_INTERVAL = 0.05

    def __init__(self) -> None:
        self._seen: dict[ReplicaId, tuple[float, int]] = {}  # when last looked at, and the size then
        self.next_at = 0.0

    def soon(self, now: float) -> None:
        """A replica started: look at the log files again shortly, to learn how fast its own grows."""
        self.next_at = min(self.next_at, now + self.MIN_INTERVAL)

    def check(self, logs: dict[ReplicaId, tuple[Path, LogPolicy]], now: float) -> list[tuple[ReplicaId, OSError]]:
        """Rotate the files past their limit; returns the ones that failed, and sets next_at."""
        failed = []
        interval = self.MAX_INTERVAL
        seen: dict[ReplicaId, tuple[float, int]] = {}
        for rid, (path, policy) in logs.items():
            try:
                size = grown = os.stat(path).st_size
                if size > policy.max_bytes and rotate_if_needed(path, policy):
                    size = 0
            except FileNotFoundError:
                size = grown = 0
            except OSError as error:  # a full disk: said by the caller, tried again in a second
                failed.append((rid, error))
                continue
            before = self._seen.get(rid)
            seen[rid] = (now, size)
            if before is None:
                interval = min(interval, self.MIN_INTERVAL * 2)  # new: its rate is not known yet
            elif grown > before[1] and now > before[0]:
                rate = (grown - before[1]) / (now - before[0])
                interval = min(interval, max(self.MIN_INTERVAL, (policy.max_bytes - size) / rate / 2))
        self._seen = seen
        self.next_at = now + interval
        return failed
