"""When each part of a replica's log was written: the time index beside every log file, and its writer.

Replicas write straight into their log file (logs.py): no line passes through the orchestrator, so none
carries a time, and a process printing gigabytes costs the daemon nothing per line. The index says when
instead. Beside `<name>.<replica>.log`, `<name>.<replica>.idx` holds one text line per look at the log:

    OFFSET MS                      the log held OFFSET bytes when it was last modified, at MS
    OFFSET MS start DETAIL         the replica was started at MS, its output from OFFSET (written before the
                                   fork). DETAIL says how the run before it ended ("exit 1", "SIGKILL",
                                   "OOMKilled"), "-" when none is known
    OFFSET MS truncated            the log was found shorter than before (emptied by someone): earlier lines
                                   of the index no longer describe it

(MS: milliseconds since the epoch.) A line of output was in the file by the time of the first look that saw
it: an upper bound, off by as little as the looks are frequent; lines written between two looks share the
later look's time, so the index grows by one line per look whatever the process writes (many small writes,
no newline, binary). Each log has a one-shot inotify watch: its next write wakes the `LogIndexer` thread,
which looks at it, and again a pause later; while it grows at every look it is looked at again after a pause
that doubles up to MAX_PAUSE (0.1 s), and once it does not, it is watched again. So an occasional line is
timed within GAP (20 ms), a log written to all the time costs ten looks a second (about 200 bytes of index a
second, and no notification at all for its writer: a persistent watch costs a flooding writer a tenth of its
throughput), and a quiet log costs nothing. However many logs are busy, looking takes at most about 1/BUDGET
of a core: the pauses grow instead (times get coarser). Rotation moves the index with its log (logs.py).
What no look saw (written while no daemon ran, or not looked at yet) is timed by the file's modification time
when it is read (logread.py).

The indexer never changes run state: the reconciler tells it which replicas run and when one started.
"""

from __future__ import annotations

import heapq
import math
import os
import queue
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from ..core.model import Exit, Reason, ReplicaId
from .logs import add_watch, index_path, inotify_fd, log_path, remove_watch, watch_events

GAP = 0.02  # seconds at least between two looks at one log: the index's resolution for an occasional line
MAX_PAUSE = 0.1  # seconds at most between two looks at a log written to all the time (unless over BUDGET)
BUDGET = 20  # looking takes at most 1/BUDGET of a core: with very many busy logs, the pauses grow instead
POLL = 1.0  # seconds between looks at logs that inotify cannot watch (past the user's watch limit)
_OPEN = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW


@dataclass(frozen=True)
class LogUpdate:
    """A log grew (or a replica started, or began to be watched): what its followers are told."""

    replica: ReplicaId
    size: int
    began: int | None = None  # set when this replica's watch began (a start, or an adoption): its output from here


Listener = Callable[[list[LogUpdate]], None]


def start_detail(exit: Exit | None) -> str:
    """How the run before a start ended, in a few words for the restart marker ("" when none is known)."""
    if exit is None:
        return ""
    if exit.reason is Reason.UNKNOWN:
        return "exit unknown"  # it ended while no daemon watched
    if exit.reason in (Reason.OOM_KILLED, Reason.LIVENESS_FAILED, Reason.HOOK_FAILED, Reason.START_FAILED):
        return exit.reason.value
    if exit.signal is not None:
        try:
            return signal.Signals(exit.signal).name
        except ValueError:
            return f"signal {exit.signal}"
    return f"exit {exit.code}" if exit.code is not None else exit.reason.value


def sample_line(offset: int, at: float) -> bytes:
    return b"%d %d\n" % (offset, round(at * 1000))


def start_line(offset: int, at: float, detail: str) -> bytes:
    words = " ".join(detail.split()) or "-"  # one line: the detail is the orchestrator's words, never output
    return b"%d %d start %s\n" % (offset, round(at * 1000), words.encode(errors="replace"))


def append(index: Path, data: bytes) -> int:
    """Add to an index file (0600, created beside its log); the file's inode, or 0 when that cannot be (the
    log's folder is gone, the disk is full): the times of those lines are then the next look's."""
    try:
        fd = os.open(index, _OPEN, 0o600)
    except OSError:
        return 0
    try:
        os.write(fd, data)
        return os.fstat(fd).st_ino
    except OSError:
        return 0
    finally:
        os.close(fd)


_SPENT, _POLLED = -2, -1


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return 0


class _Watched:
    __slots__ = ("index", "index_inode", "log", "pause", "size", "wd")

    def __init__(self, log: Path, wd: int, size: int) -> None:
        self.log = log
        self.index = index_path(log)
        self.wd = wd  # its one-shot inotify watch; _SPENT once it fired, _POLLED: looked at every POLL
        self.size = size  # what the index says the log held at the last look
        self.index_inode = 0  # of the index file last written to: another one means the pair was rotated
        self.pause = GAP  # before it is watched again after its watch fired


class LogIndexer:
    """The thread that keeps every running replica's time index (see the module's docstring).

    Told by the reconciler, through `starting` and `sync`; followers (`orchestrator run` printing its replicas'
    output) `subscribe` to hear of every look that found a log grown, on this thread, after the look."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._commands: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._inotify = inotify_fd()
        self._watched: dict[ReplicaId, _Watched] = {}
        self._by_wd: dict[int, ReplicaId] = {}
        self._polled: set[ReplicaId] = set()  # watched without inotify (none, or past the user's watch limit)
        self._due: list[tuple[float, int, ReplicaId]] = []  # (when, order, replica): to be watched again then
        self._order = 0
        self._look_seconds = 0.0  # what a look costs, on average
        self._listeners: list[Listener] = []
        self._running: frozenset[ReplicaId] = frozenset()  # as last synced, on the caller's side
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="log-index", daemon=True)
        self._thread.start()

    # -- the reconciler's side ------------------------------------------------------------------

    def starting(self, replica: ReplicaId, at: float, before: Exit | None) -> None:
        """A replica is about to be started, at `at` (wall clock); `before`: how its last run ended.

        Called just before the fork, on the caller's thread: the start is in the index before the process can
        print anything, so its marker comes before its first line. (A start that then fails leaves its mark
        too: the next one says "StartFailed".)"""
        path = log_path(self.log_dir, replica)
        try:
            offset = os.stat(path, follow_symlinks=False).st_size
        except OSError:
            offset = 0  # its first start: the file is made by the fork's side
        append(index_path(path), start_line(offset, at, start_detail(before)))
        self._post("started", (replica, offset))

    def sync(self, running: Collection[ReplicaId]) -> None:
        """Keep the index of exactly these replicas from now on (after each pass: adopted ones join here)."""
        current = frozenset(running)
        if current != self._running:
            self._running = current
            self._post("sync", current)

    def subscribe(self, listener: Listener) -> None:
        self._listeners = [*self._listeners, listener]

    def close(self) -> None:
        """A last look at every log, then the thread ends."""
        if self._closed:
            return
        self._closed = True
        self._post("close", None)
        self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w, self._inotify):
            if fd >= 0:
                os.close(fd)

    def _post(self, what: str, value: object) -> None:
        self._commands.put((what, value))
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # woken already

    # -- the indexer's thread -------------------------------------------------------------------

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if self._inotify >= 0:
            poller.register(self._inotify, select.POLLIN)
        next_poll = float("inf")  # the next look at the logs inotify cannot watch
        while True:
            due = min(next_poll if self._polled else float("inf"), self._due[0][0] if self._due else float("inf"))
            now = time.monotonic()
            ready = {fd for fd, _ in poller.poll(None if due == float("inf") else max(0, int((due - now) * 1000) + 1))}
            updates: list[LogUpdate] = []
            if self._wake_r in ready and self._commands_done(updates):
                self._tell(updates)
                return
            now = time.monotonic()
            if self._inotify in ready:
                for rid in self._fired(now):
                    if self._watched[rid].pause <= GAP:  # an occasional write: looked at now
                        self._timed_look(rid, updates)
            while self._due and self._due[0][0] <= now:  # their pause is over: looked at again
                _, _, rid = heapq.heappop(self._due)
                watched = self._watched.get(rid)
                if watched is None or watched.wd != _SPENT:
                    continue  # gone, or watched again since
                if self._timed_look(rid, updates):  # still growing: looked at again after a longer pause
                    watched.pause = min(MAX_PAUSE, watched.pause * 2)
                    self._schedule(rid, watched, now)
                else:  # quiet: watched again, and looked at once more (a write just before the watch)
                    watched.pause = GAP
                    self._arm(rid, watched)
                    self._look(rid, updates)
            if self._polled:
                if next_poll == float("inf"):
                    next_poll = now + POLL
                elif now >= next_poll:
                    for rid in list(self._polled):
                        self._look(rid, updates)
                    next_poll = now + POLL
            self._tell(updates)

    def _fired(self, now: float) -> list[ReplicaId]:
        """The logs whose watch fired since the last read: their watches are spent, and are set again once
        their pause is over."""
        wds = set(watch_events(self._inotify))
        if -1 in wds:  # the kernel's queue overflowed: any of them may have been written to
            fired = [rid for rid, w in self._watched.items() if w.wd >= 0]
        else:
            fired = [self._by_wd[wd] for wd in wds if wd in self._by_wd]
        for rid in fired:
            watched = self._watched[rid]
            self._by_wd.pop(watched.wd, None)
            watched.wd = _SPENT
            self._schedule(rid, watched, now)
        return fired

    def _schedule(self, replica: ReplicaId, watched: _Watched, now: float) -> None:
        """Look at it again after its pause: at least its share of BUDGET (however many logs are busy, looking
        takes at most 1/BUDGET of the time), on a grid of GAP so that busy logs are looked at together."""
        pause = max(watched.pause, BUDGET * self._look_seconds * len(self._watched))
        self._order += 1
        heapq.heappush(self._due, (math.ceil((now + pause) / GAP) * GAP, self._order, replica))

    def _timed_look(self, replica: ReplicaId, updates: list[LogUpdate]) -> bool:
        """A look, its cost kept (a moving average); whether the log grew."""
        began = time.perf_counter()
        grown = len(updates)
        self._look(replica, updates)
        self._look_seconds += (time.perf_counter() - began - self._look_seconds) / 16
        return len(updates) > grown

    def _arm(self, replica: ReplicaId, watched: _Watched) -> None:
        wd = add_watch(self._inotify, watched.log, oneshot=True) if self._inotify >= 0 else -1
        if wd >= 0:
            watched.wd = wd
            self._by_wd[wd] = replica
        else:  # no inotify, or past the user's watch limit
            watched.wd = _POLLED
            self._polled.add(replica)

    def _commands_done(self, updates: list[LogUpdate]) -> bool:
        """Carry out what was posted; True when the indexer is to end."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                what, value = self._commands.get_nowait()
            except queue.Empty:
                return False
            if what == "close":
                for rid in list(self._watched):
                    self._look(rid, updates)
                    self._unwatch(rid)
                return True
            if what == "started":
                replica, offset = cast("tuple[ReplicaId, int]", value)
                self._started(replica, offset, updates)
            elif what == "sync":
                running = cast("frozenset[ReplicaId]", value)
                for rid in [r for r in self._watched if r not in running]:
                    self._look(rid, updates)  # its last output, written before it ended
                    self._unwatch(rid)
                for rid in running:
                    if rid not in self._watched:
                        self._watch(rid, updates, None)

    def _started(self, replica: ReplicaId, offset: int, updates: list[LogUpdate]) -> None:
        watched = self._watched.get(replica)
        if watched is None:
            watched = self._watch(replica, updates, offset)
            if watched is None:
                return  # it did not start after all (its log could not be made)
        elif watched.size < offset:
            self._look(replica, updates)  # the run before's last output first
        watched.size = max(watched.size, offset)
        # Where this run's output begins, before any growth is told: a run that printed at once (and may have
        # ended already) would else be followed from after its first lines.
        updates.append(LogUpdate(replica, watched.size, began=offset))
        self._look(replica, updates)

    def _watch(self, replica: ReplicaId, updates: list[LogUpdate], began: int | None) -> _Watched | None:
        path = log_path(self.log_dir, replica)
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError:
            return None
        watched = _Watched(path, _SPENT, info.st_size)
        self._watched[replica] = watched
        self._arm(replica, watched)
        if began is None:  # adopted, or watched again: what it holds now was there by its modification time
            if info.st_size:
                watched.index_inode = append(watched.index, sample_line(info.st_size, info.st_mtime))
            updates.append(LogUpdate(replica, info.st_size, began=info.st_size))
        else:
            watched.size = began
        return watched

    def _unwatch(self, replica: ReplicaId) -> None:
        watched = self._watched.pop(replica)
        self._polled.discard(replica)
        if watched.wd >= 0:
            self._by_wd.pop(watched.wd, None)
            remove_watch(self._inotify, watched.wd)

    def _look(self, replica: ReplicaId, updates: list[LogUpdate]) -> None:
        watched = self._watched[replica]
        try:
            info = os.stat(watched.log, follow_symlinks=False)
        except OSError:
            return
        if info.st_size == watched.size:
            return
        if info.st_size < watched.size and watched.index_inode and _inode(watched.index) == watched.index_inode:
            # Emptied, but not by a rotation (which begins a new index): what the index said is void.
            append(watched.index, b"%d %d truncated\n" % (info.st_size, round(info.st_mtime * 1000)))
        if info.st_size:
            watched.index_inode = append(watched.index, sample_line(info.st_size, info.st_mtime))
        watched.size = info.st_size
        updates.append(LogUpdate(replica, info.st_size))

    def _tell(self, updates: list[LogUpdate]) -> None:
        if not updates:
            return
        for listener in self._listeners:
            try:
                listener(updates)
            except Exception as error:  # noqa: BLE001 - a follower's bug must not stop the index
                try:
                    print(f"orchestrator: a log follower failed: {error!r}", file=sys.stderr)
                except (OSError, ValueError):
                    pass  # stderr is gone too: the index goes on
