"""`orchestrator run`'s view of its replicas' output, as `docker compose up` shows it: every line each replica
prints, as it is written, after the replica's prefix (`api[0] | `, padded to align, coloured per process on a
terminal), between the event lines; with `-o json`, as {"type": "Log", ...} objects among the events.

Woken by the daemon's log indexer (host/logindex.py) after each look that found a log grown, it reads what was
added on a thread of its own (a slow terminal holds up neither the indexer nor the reconciler), and writes
whole lines under the same lock as the event lines. A run's lines wait for its Started (or Adopted) line, and
an Exited line waits for the replica's last lines, so a crash's last words come before the line that says it
crashed. Reads are bounded (host/logread.py): a process
printing without newlines, or binary, is shown in lines of at most MAX_LINE bytes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from ..core.model import ReplicaId
from ..host.logindex import LogUpdate
from ..host.logread import CHUNK, Cursor, Line, read_times
from ..host.logs import log_path
from .render.logs import Prefixes, label, line_text, log_json

HOLD = 1.0  # seconds an unfinished last line waits for its newline before it is shown as it is
LAST_WORDS = 64 << 10  # bytes of an ended replica's output read on the loop's thread before its Exited line


class Out:
    """The run's stdout, shared by event lines and output lines: whole lines under one lock. Once its reader
    has gone (a closed pipe, `| head`), nothing more is written, and the run goes on."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.RLock()
        self.open = True

    def write(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        with self.lock:
            if not self.open:
                return
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):  # the reader went away, or stdout was closed
                self.open = False


class _Announced(NamedTuple):
    replica: ReplicaId
    start: int  # which start of it (1, 2, ...): news of a run that has already ended is stale


class RunLogs:
    def __init__(self, log_dir: Path, out: Out, as_json: bool, colour: bool,
                 replicas: Iterable[tuple[str, int]]) -> None:
        """`replicas`: (key, index) of those desired at the start, so that prefixes align from the first line."""
        self.log_dir = log_dir
        self.out = out
        self.as_json = as_json
        self.prefixes = Prefixes(colour)
        shown = list(replicas)
        self.namespaced = len({key.split("/", 1)[0] for key, _ in shown}) > 1
        for key, index in shown:
            self.prefixes.add(key, label(key, index, self.namespaced))
        # Reading holds `_reading` (cursors, what is announced); only writing holds the shared stdout's lock, so
        # that the reconciler's thread, which writes the event lines, never waits for a file to be read.
        self._reading = threading.Lock()
        self._cursors: dict[ReplicaId, Cursor] = {}
        self._held_since: dict[ReplicaId, float] = {}  # monotonic: when its unfinished line began to wait
        self._announced: set[ReplicaId] = set()  # its Started (or Adopted) line is out: its lines may follow
        self._starts: dict[ReplicaId, int] = {}  # Started lines written, by replica (the reconciler's thread)
        self._ended: dict[ReplicaId, int] = {}  # the start whose Exited line came (under _reading)
        self._queue: queue.SimpleQueue[list[LogUpdate | _Announced] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="run-logs", daemon=True)
        self._thread.start()

    def updates(self, batch: list[LogUpdate]) -> None:
        """The indexer's listener (on its thread): these logs grew."""
        self._queue.put(list(batch))

    def announced(self, replica: ReplicaId) -> None:
        """Its Started (or Adopted) line was written: what it prints may be, from now on. Said through the
        queue (the reading thread takes it in order), so the caller, the reconciler's thread, never waits."""
        self._starts[replica] = start = self._starts.get(replica, 0) + 1
        self._queue.put([_Announced(replica, start)])

    def catch_up(self, replica: ReplicaId) -> None:
        """Write what the replica printed last, now (it ended: its Exited line comes next); the lines of its
        next run wait for that run's Started line."""
        with self._reading:
            if replica not in self._cursors:  # it ended before news of its start reached the reading thread
                log = log_path(self.log_dir, replica)
                starts = read_times(log).starts  # where this run began, as the index says (written before its fork)
                self._cursors[replica] = Cursor(log, starts[-1].offset if starts else 0)
            self._read(replica, final=True, limit=LAST_WORDS)
            self._announced.discard(replica)
            self._ended[replica] = self._starts.get(replica, 0)

    def close(self) -> None:
        """Write what is left of every replica's output, then stop."""
        self._queue.put(None)
        self._thread.join(timeout=5)
        with self._reading:
            for replica in list(self._cursors):
                self._read(replica, final=True)

    def _loop(self) -> None:
        while True:
            timeout = None
            if self._held_since:
                timeout = max(0.0, min(self._held_since.values()) + HOLD - time.monotonic())
            batches: list[list[LogUpdate | _Announced]] = []
            try:
                batch = self._queue.get(timeout=timeout)
                while batch is not None:
                    batches.append(batch)
                    batch = self._queue.get_nowait()
            except queue.Empty:
                batch = []
            now = time.monotonic()
            with self._reading:
                grown: dict[ReplicaId, None] = {}
                for update in (u for b in batches for u in b):
                    if isinstance(update, _Announced):
                        if update.start > self._ended.get(update.replica, 0):
                            self._announced.add(update.replica)
                        update = LogUpdate(update.replica, 0)
                    if update.replica not in self._cursors:
                        begin = update.began if update.began is not None else update.size
                        self._cursors[update.replica] = Cursor(log_path(self.log_dir, update.replica), begin)
                    grown[update.replica] = None
                due = [rid for rid, since in self._held_since.items() if now - since >= HOLD]
                for replica in [*grown, *due]:
                    if replica in self._announced:
                        self._read(replica, final=replica in due)
            if batch is None:
                return

    def _read(self, replica: ReplicaId, final: bool, limit: int = CHUNK) -> None:
        cursor = self._cursors.get(replica)
        if cursor is None or not self.out.open:
            return
        lines, mtime = cursor.read(limit)
        if final:
            held = cursor.flush()
            if held is not None:
                lines.append(held)
        if cursor.held:
            self._held_since.setdefault(replica, time.monotonic())
        else:
            self._held_since.pop(replica, None)
        self.out.write([self._text(replica, mtime or time.time(), line) for line in lines])

    def _text(self, replica: ReplicaId, at: float, line: Line) -> str:
        text = line_text(line.text)
        if self.as_json:
            return log_json(replica.key, replica.index, at, text)
        return self.prefixes.of(replica.key, label(replica.key, replica.index, self.namespaced)) + text
