"""Per-replica log files: where a replica's stdout and stderr go.

Each replica writes both streams, interleaved as they happen, to one file that it holds open itself
(`<state>/logs/<namespace>/<name>.<replica>.log`), so logging costs the orchestrator nothing per line.
Files past the spec's `logs.maxBytes` are rotated as they grow: `Rotation` looks at a growing file again
sooner the faster it grows, so it overshoots its limit by about 50 ms of output, and at a quiet one again
only when it is written to (`rotate_if_needed` does the rotation). Each log's time index (`<name>.<replica>.idx`,
logindex.py) is rotated with it, and both are rotated when the index alone passes an eighth of maxBytes (a
process that prints a few bytes at a time, slowly), so a replica's current files stay within 1.125 maxBytes.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def remove_logs(log_dir: Path, replica: ReplicaId) -> None:
    """Delete a replica's log, its index and their rotated copies (a CronJob's run past its history limit:
    nothing writes them any more)."""
    path = log_path(log_dir, replica)
    index = index_path(path)
    for base in (path, index):
        base.unlink(missing_ok=True)
        for copy in base.parent.glob(glob_escape(base.name) + ".*"):
            if copy.name[len(base.name) + 1:].split(".", 1)[0].isdigit():  # NAME.log.1, NAME.log.1.partial
                copy.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def index_path(log: Path) -> Path:
    """The time index beside a log file: a.0.log -> a.0.idx, and a rotated a.0.log.2 -> a.0.idx.2."""
    stem, dot, rest = log.name.rpartition(".log")
    return log.with_name(f"{stem}.idx{rest}") if dot else log.with_name(log.name + ".idx")


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def past_limit(log_size: int, index_size: int, policy: LogPolicy) -> bool:
    return log_size > policy.max_bytes or index_size > policy.max_bytes // 8


def rotate_if_needed(path: Path, policy: LogPolicy) -> bool:
    """Rotate `path` (and its index) when it has grown past policy.max_bytes, or its index past an eighth
    of it; True when it did.

    Copy-and-truncate: the process keeps its descriptor (opened O_APPEND), so after the truncation it goes
    on writing at the start of the same, now empty, file. Lines written between the copy and the
    truncation are lost; that window is one copy of at most max_bytes. The index is renamed with the copy
    (its writer opens it by name for every look, so it goes on in a new file); a look taken in between may
    land in the wrong one, which its reader tolerates (logread.py).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    index = index_path(path)
    if not past_limit(size, _size(index), policy):
        return False
    if policy.keep > 0:
        for number in range(policy.keep - 1, 0, -1):
            for current in (path, index):
                older = current.with_name(f"{current.name}.{number}")
                if older.exists():
                    os.replace(older, current.with_name(f"{current.name}.{number + 1}"))
        # Copied into a file that is 0600 from its creation and renamed into place when complete, so
        # nobody ever sees a half-written or readable-by-others copy.
        partial = path.with_name(f"{path.name}.1.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(path, "rb") as source, os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(source, target)
        os.replace(partial, path.with_name(f"{path.name}.1"))
        if index.exists():
            os.replace(index, index.with_name(f"{index.name}.1"))
    else:
        index.unlink(missing_ok=True)
    os.truncate(path, 0)
    return True


class Rotation:
    """When to look at each running replica's log size next, so that a file is rotated as it grows.

    A file that grew since the last look is looked at again by its rate: within a second, and sooner as it
    nears its limit (half the time it would take at that rate, at least 50 ms apart). A file that did not grow
    is not looked at again until it is written to: a one-shot inotify watch (IN_MODIFY) wakes the loop at its
    next write (`fd`, `woken`). An idle host pays no wake-up for its logs, and a burst after a long quiet is
    seen at its first write. Without inotify (or past its watch limit), quiet files are looked at every second.
    """

    MAX_INTERVAL = 1.0
    MIN_INTERVAL = 0.05

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._seen: dict[ReplicaId, tuple[float, int]] = {}  # when last looked at, and the size then
        self._quiet: set[ReplicaId] = set()  # not grown at the last look: watched, not polled
        self._watched: dict[int, ReplicaId] = {}  # inotify watch descriptor -> the replica whose log it is
        self.fd = inotify_fd()  # -1 without inotify
        self.next_at = 0.0

    def soon(self, now: float) -> None:
        """A replica started: look at the log files again shortly, to learn how fast its own grows."""
        self.next_at = min(self.next_at, now + self.MIN_INTERVAL)

    def woken(self, now: float) -> None:
        """The inotify descriptor is readable: the quiet files written to since are looked at now."""
        for wd in watch_events(self.fd):
            rid = self._watched.pop(wd, None)
            if rid is not None:
                self._quiet.discard(rid)
                self._seen.pop(rid, None)  # its rate is measured afresh, from this first write on
        self.next_at = now

    def check(self, logs: Mapping[ReplicaId, LogPolicy], now: float) -> list[tuple[ReplicaId, OSError]]:
        """Rotate the files of these running replicas that are past their limit; returns the ones that
        failed, and sets next_at."""
        failed = []
        interval = float("inf")
        seen: dict[ReplicaId, tuple[float, int]] = {}
        for rid, policy in logs.items():
            before = self._seen.get(rid)
            if rid in self._quiet and before is not None:
                seen[rid] = before
                continue
            path = log_path(self.log_dir, rid)
            try:
                size = grown = os.stat(path).st_size
                if past_limit(size, _size(index_path(path)), policy) and rotate_if_needed(path, policy):
                    size = 0
            except FileNotFoundError:
                size = grown = 0
            except OSError as error:  # a full disk: said by the caller, tried again in a second
                failed.append((rid, error))
                interval = min(interval, self.MAX_INTERVAL)
                continue
            seen[rid] = (now, size)
            if before is None:
                interval = min(interval, self.MIN_INTERVAL)  # new, or written to after a quiet: rate unknown
            elif grown > before[1] and now > before[0]:
                rate = (grown - before[1]) / (now - before[0])
                interval = min(interval, self.MAX_INTERVAL,
                               max(self.MIN_INTERVAL, (policy.max_bytes - size) / rate / 2))
            elif not self._watch(rid, path, grown):
                interval = min(interval, self.MAX_INTERVAL)
        if len(self._watched) > len(seen):
            self._unwatch_ended(logs)
        self._seen = seen
        self._quiet &= seen.keys()
        self.next_at = now + interval
        return failed

    def _watch(self, rid: ReplicaId, path: Path, size: int) -> bool:
        """Be woken at the next write to `path`; False where that cannot be, or where it was written to
        while the watch was being set (poll it instead)."""
        if self.fd < 0:
            return False
        wd = add_watch(self.fd, path)
        if wd < 0:
            return False
        self._watched[wd] = rid
        try:
            if os.stat(path, follow_symlinks=False).st_size != size:
                return False  # written meanwhile: looked at again soon (the watch stays, harmless)
        except OSError:
            return False
        self._quiet.add(rid)
        return True

    def _unwatch_ended(self, running: Mapping[ReplicaId, LogPolicy]) -> None:
        """Drop the watches of replicas that no longer run: each holds a kernel watch of the user's limit."""
        for wd, rid in list(self._watched.items()):
            if rid not in running:
                del self._watched[wd]
                remove_watch(self.fd, wd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_IN_MODIFY, _IN_DONT_FOLLOW, _IN_ONESHOT = 0x2, 0x02000000, 0x80000000
_IN_CREATE, _IN_MOVED_TO, _IN_ONLYDIR = 0x100, 0x80, 0x01000000
_libc: Any = None


def inotify_fd() -> int:
    """An inotify descriptor (non-blocking, close-on-exec), or -1 where there is none."""
    global _libc
    import ctypes

    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        return int(_libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    except (OSError, AttributeError):
        return -1


def add_watch(fd: int, path: Path, oneshot: bool = True) -> int:
    """Watch `path` for writes (once, or until removed); the watch descriptor, or -1 (past the user's limit)."""
    flags = _IN_MODIFY | _IN_DONT_FOLLOW | (_IN_ONESHOT if oneshot else 0)
    return int(_libc.inotify_add_watch(fd, os.fsencode(path), flags))


def watch_folder(fd: int, path: Path) -> int:
    """Watch a folder for files written, created or renamed into it (until removed); -1 when it cannot be."""
    return int(_libc.inotify_add_watch(fd, os.fsencode(path), _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO | _IN_ONLYDIR))


def remove_watch(fd: int, wd: int) -> None:
    _libc.inotify_rm_watch(fd, wd)


def watch_events(fd: int) -> list[int]:
    """The watch descriptors of the events waiting on `fd` (struct inotify_event: wd, mask, cookie, len); -1
    when the kernel's queue overflowed (events were lost: look at everything)."""
    found = []
    while fd >= 0:
        try:
            data = os.read(fd, 1 << 16)
        except (BlockingIOError, InterruptedError):
            break
        offset = 0
        while offset + 16 <= len(data):
            wd, _mask, _cookie, length = struct.unpack_from("iIII", data, offset)
            found.append(wd)
            offset += 16 + length
        if not data:
            break
    return found
