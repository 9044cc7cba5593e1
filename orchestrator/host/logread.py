"""Reading replicas' log files as lines with a time each: the time index's points (logindex.py says what
they mean), the lines of a file cut to a bounded length, and a cursor that follows a file across rotation.

Read-only, and bounded whatever a process printed: a line is at most MAX_LINE bytes (a longer one comes as
several), a read takes at most CHUNK bytes of a file at a time, and an index is read up to MAX_INDEX bytes.
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .logs import index_path

MAX_LINE = 64 << 10  # bytes of one line shown; a longer one is shown in pieces this long
CHUNK = 1 << 20  # bytes read from a log file at a time
MAX_INDEX = 64 << 20  # bytes of an index read at most (rotation keeps one under an eighth of maxBytes)


@dataclass(frozen=True)
class Start:
    """A start of the replica: its output begins at `offset`; `detail` says how the run before ended."""

    offset: int
    at: float
    detail: str  # "" when not known (the first start, or the first this state dir's daemon saw)


@dataclass(frozen=True)
class Line:
    offset: int  # where it begins in its file
    text: bytes  # without its newline
    complete: bool  # False: the file ends before its newline (or it is a piece of a longer line)
    copied: bool = False  # read from the rotated copy (its offset is the copy's): written before the rotation


class Times:
    """When the bytes of one log file were written, from its index: the time of a byte is the earliest that
    any point says it was in the file by (points are upper bounds; the least is the closest)."""

    def __init__(self, points: list[tuple[int, float]], starts: list[Start], fallback: float) -> None:
        points = sorted(points)
        self._offsets = [offset for offset, _ in points]
        self._times = [at for _, at in points]
        for i in range(len(self._times) - 2, -1, -1):  # each the least of itself and those after it
            self._times[i] = min(self._times[i], self._times[i + 1])
        self.starts = sorted(starts, key=lambda s: s.offset)
        self.fallback = fallback  # what no point covers was there by the file's modification time

    def at(self, offset: int) -> float:
        """The time by which the byte at `offset` was in the file (never decreasing with the offset)."""
        i = bisect_right(self._offsets, offset)
        return self._times[i] if i < len(self._times) else max(self.fallback, self._times[-1] if self._times else 0)

    def first_at_or_after(self, since: float) -> int | None:
        """An offset before which every byte was written before `since` (None: every byte was)."""
        i = bisect_left(self._times, since)
        if i < len(self._times):
            return self._offsets[i - 1] if i > 0 else 0
        if self.fallback >= since:
            return self._offsets[-1] if self._offsets else 0
        return None


def parse_index(data: bytes) -> tuple[list[tuple[int, float]], list[Start]]:
    """The points and starts of an index's text; malformed lines (a write cut short) are skipped."""
    points, starts, _ = _parse(data)
    return points, starts


def _parse(data: bytes) -> tuple[list[tuple[int, float]], list[Start], bool]:
    """parse_index, and whether a truncation voided what came before."""
    points: list[tuple[int, float]] = []
    starts: list[Start] = []
    truncated = False
    for raw in data.split(b"\n")[:-1]:  # what follows the last newline is not complete yet
        words = raw.split(b" ", 3)
        try:
            offset, at = int(words[0]), int(words[1]) / 1000
        except (ValueError, IndexError):
            continue
        if len(words) == 2:
            points.append((offset, at))
        elif words[2] == b"start":
            detail = words[3].decode(errors="replace") if len(words) > 3 else "-"
            starts.append(Start(offset, at, "" if detail == "-" else detail))
            points.append((offset, at))  # what is before a start was there before it
        elif words[2] == b"truncated":
            points.clear()
            starts.clear()
            truncated = True
    return points, starts, truncated


def read_times(log: Path) -> Times:
    """The times of `log` (current or rotated), from its index; a file without one is timed by its mtime."""
    try:
        fallback = os.stat(log).st_mtime
    except OSError:
        fallback = 0.0
    try:
        with _open_index(index_path(log)) as handle:
            data = handle.read(MAX_INDEX)
    except OSError:
        data = b""
    points, starts = parse_index(data)
    return Times(points, starts, fallback)


def read_lines(log: Path, start: int = 0, end: int | None = None) -> Iterator[Line]:
    """The lines of `log` that begin in [start, end) (`start` is taken to be where a line begins), read
    CHUNK bytes at a time; the last one may be incomplete."""
    try:
        handle = open(log, "rb")  # noqa: SIM115 - a file that cannot be opened has no lines: not an error
    except OSError:
        return
    with handle:
        if end is None:
            end = os.fstat(handle.fileno()).st_size
        handle.seek(start)
        position, pending = start, b""
        while position < end:
            data = handle.read(min(CHUNK, end - position))
            if not data:
                break
            position += len(data)
            pending += data
            offset = position - len(pending)
            begin = 0
            while True:
                newline = pending.find(b"\n", begin, begin + MAX_LINE + 1)
                if newline < 0:
                    if len(pending) - begin > MAX_LINE:
                        yield Line(offset + begin, pending[begin:begin + MAX_LINE], False)
                        begin += MAX_LINE
                        continue
                    break
                yield Line(offset + begin, pending[begin:newline], True)
                begin = newline + 1
            pending = pending[begin:]
        if pending:
            yield Line(position - len(pending), pending, False)


def line_start_at_or_after(log: Path, offset: int) -> int:
    """The offset of the first line that begins at or after `offset`."""
    if offset <= 0:
        return 0
    try:
        with open(log, "rb") as handle:
            handle.seek(offset - 1)
            position = offset - 1
            while True:
                data = handle.read(CHUNK)
                if not data:
                    return position
                newline = data.find(b"\n")
                if newline >= 0:
                    return position + newline + 1
                position += len(data)
    except OSError:
        return offset


def tail_start(log: Path, count: int) -> int:
    """The offset where the last `count` lines of `log` begin (an unfinished last line counts as one)."""
    try:
        with open(log, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if count == 0:
                return size
            position = size
            newlines = 0
            if size:
                handle.seek(size - 1)
                if handle.read(1) == b"\n":
                    newlines = -1  # the file's last newline ends the last line; it begins no new one
            while position > 0:
                step = min(CHUNK, position)
                position -= step
                handle.seek(position)
                data = handle.read(step)
                at = len(data)
                while True:
                    at = data.rfind(b"\n", 0, at)
                    if at < 0:
                        break
                    newlines += 1
                    if newlines == count:
                        return position + at + 1
            return 0
    except OSError:
        return 0


def _open_index(path: Path) -> BinaryIO:
    """An index for reading; a link planted in its place is not followed (OSError, as a missing one)."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return 0


def rotated(log: Path) -> Path:
    """The newest rotated copy of `log` (NAME.log.1)."""
    return log.with_name(log.name + ".1")


class Cursor:
    """Where a follower is in one log file: what was written since, as lines, across rotation (the lines
    written after the last read and before the file was copied and emptied are read from the copy).

    An unfinished last line is held until its newline comes, it reaches MAX_LINE, or `flush` is asked."""

    def __init__(self, log: Path, position: int) -> None:
        self.log = log
        self.position = position  # read up to here (the held part included)
        self.held = b""
        self.held_at = 0  # where the held part begins
        self._copy = _inode(rotated(log))  # a new copy means a rotation, even if the log grew back past us
        self.rotations = 0  # seen since it began

    def read(self, limit: int = CHUNK) -> tuple[list[Line], float]:
        """Lines completed since the last read (about `limit` bytes of them at most: the rest comes at the
        next), and the file's modification time when they were read (each was in the file by then)."""
        try:
            info = os.stat(self.log)
        except OSError:
            return [], 0.0
        lines: list[Line] = []
        copy = rotated(self.log)
        try:
            copied = os.stat(copy)
        except OSError:
            copied = None
        # Copied and emptied: the rest of what we had read is in the copy. (A new copy while the log is not
        # shorter than it has not been emptied yet: looked at again next time.)
        if info.st_size < self.position or (copied is not None and copied.st_ino != self._copy
                                             and info.st_size < copied.st_size):
            self._copy = copied.st_ino if copied is not None else 0
            self.rotations += 1
            if copied is not None and copied.st_size >= self.position:
                lines += self._take(copy, min(copied.st_size, self.position + limit), copied=True)
            if self.held:  # its end went with the copy, or never came
                lines.append(Line(self.held_at, self.held, False, copied=True))
                self.held = b""
            self.position = 0
        if info.st_size > self.position:
            lines += self._take(self.log, min(info.st_size, self.position + limit))
        return lines, info.st_mtime

    def flush(self) -> Line | None:
        """The held unfinished line, now (it waited long enough, or its replica ended)."""
        if not self.held:
            return None
        line = Line(self.held_at, self.held, False)
        self.held = b""
        return line

    def _take(self, path: Path, stop: int, copied: bool = False) -> list[Line]:
        lines = []
        for line in read_lines(path, self.position, stop):
            if self.held:
                line = Line(self.held_at, self.held + line.text, line.complete, copied)
                self.held = b""
            elif copied:
                line = Line(line.offset, line.text, line.complete, copied)
            while len(line.text) > MAX_LINE:
                lines.append(Line(line.offset, line.text[:MAX_LINE], False, copied))
                line = Line(line.offset + MAX_LINE, line.text[MAX_LINE:], line.complete, copied)
            if not line.complete and len(line.text) < MAX_LINE:
                self.held, self.held_at = line.text, line.offset
                continue
            lines.append(line)
        self.position = stop
        return lines


class IndexTail:
    """A follower's view of one index: the points and starts added since the last read, and whether the
    index was begun anew before them (rotated with its log, or its log emptied): what came before then
    describes the file as it was before."""

    def __init__(self, log: Path) -> None:
        self.path = index_path(log)
        self.position = 0
        self._rest = b""
        self._inode = 0

    def skip_to_end(self) -> None:
        try:
            info = os.stat(self.path)
        except OSError:
            return
        self.position, self._inode, self._rest = info.st_size, info.st_ino, b""

    def read(self) -> tuple[list[tuple[int, float]], list[Start], bool]:
        try:
            info = os.stat(self.path)
        except OSError:
            return [], [], False
        anew = bool(self._inode) and info.st_ino != self._inode or info.st_size < self.position
        if anew:
            self.position, self._inode, self._rest = 0, info.st_ino, b""
        if info.st_size == self.position:
            return [], [], anew
        try:
            with _open_index(self.path) as handle:
                handle.seek(self.position)
                data = handle.read(min(MAX_INDEX, info.st_size - self.position))
        except OSError:
            return [], [], anew
        self.position += len(data)
        data = self._rest + data
        complete = data.rfind(b"\n") + 1
        self._rest = data[complete:]
        points, starts, truncated = _parse(data[:complete])
        return points, starts, anew or truncated
