"""What the interactive `top` (tui.py) shows, without a widget: the daemon's objects made rows, the filter, a
restart, the status line, and the follower of a log.

Owns the talk to the daemon for `top` (the routes `get -o wide` and `restart` use) and the reading of log
files. Imports no textual, so it is tested, and imported, without it; never draws anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.model import ReplicaId
from ..host.logs import log_path
from .client import Client
from .render.common import cell_text, human_age
from .render.tables import object_cells, restart_result

# `get -o wide`'s columns, with NAMESPACE/NAME in place of NAME: the table holds objects of every namespace.
COLUMNS = ("NAMESPACE/NAME", "KIND", "READY", "STATE", "RESTARTS", "AGE", "PID", "CPU", "MEM", "COMMAND")
STATE_COLUMN = COLUMNS.index("STATE")

OBJECTS_ROUTE = "/objects?usage=1"  # what `get -o wide` and the plain `top` ask
REQUEST_TIMEOUT = 10.0  # seconds: a daemon silent this long is shown as not answering


@dataclass(frozen=True)
class Row:
    """One object as the table shows it."""

    key: str  # namespace/name
    labels: tuple[tuple[str, str], ...]
    replicas: tuple[int, ...]  # the indexes of its replicas (each has a log)
    cells: tuple[str, ...]  # in COLUMNS' order

    @property
    def state(self) -> str:
        return self.cells[STATE_COLUMN]


@dataclass(frozen=True)
class Snapshot:
    """One answer of the daemon, made rows."""

    revision: int | None
    rows: tuple[Row, ...]


def rows_of(objects: Sequence[Mapping[str, Any]], now: float) -> tuple[Row, ...]:
    """Rows in the daemon's order; `now` (wall seconds) makes the ages."""
    rows = []
    for obj in objects:
        key = str(obj.get("key") or f"{obj.get('namespace')}/{obj.get('name')}")
        cells = object_cells(obj, wide=True, now=now)
        cells[0] = cell_text(key)
        labels = obj.get("labels")
        if not isinstance(labels, Mapping):
            labels = {}
        indexes = [s.get("index") for s in obj.get("replica_status") or () if isinstance(s, Mapping)]
        rows.append(Row(key, tuple(sorted((str(k), str(v)) for k, v in labels.items())),
                        tuple(i for i in indexes if isinstance(i, int)), tuple(cells)))
    return tuple(rows)


def matches(row: Row, text: str) -> bool:
    """The filter typed after `/`: every word must hold. `key=value` and `key!=value` test a label; any other
    word is a part of NAMESPACE/NAME or of the state, in any case (`shop/`, `backoff`, `app=web shop`)."""
    labels = dict(row.labels)
    for word in text.split():
        if "!=" in word:
            name, _, value = word.partition("!=")
            if labels.get(name) == value:
                return False
        elif "=" in word:
            name, _, value = word.partition("=")
            if labels.get(name) != value:
                return False
        elif word.casefold() not in row.key.casefold() and word.casefold() not in row.state.casefold():
            return False
    return True


def status_line(snapshot: Snapshot | None, shown: int, interval: float, filter_text: str) -> str:
    """The line above the table: revision, how many objects (of how many, when filtered), the pace."""
    if snapshot is None:
        return f"asking the daemon... (every {interval:g} s)"
    total = len(snapshot.rows)
    counted = f"{shown} of {total} objects" if filter_text else f"{total} object{'s' if total != 1 else ''}"
    line = f"revision {cell_text(snapshot.revision)}, {counted}, every {interval:g} s"
    return line + (f", filter: {filter_text}" if filter_text else "")


def down_line(message: str, since: float, now: float) -> str:
    """The same line while the daemon does not answer (the table below is its last answer)."""
    return f"daemon not answering for {human_age(now - since)} (the table is its last answer): {message}"


class TopSource:
    """The daemon of a state dir as `top` sees it: the objects of `get -o wide` (from the same route),
    restarts as `orchestrator restart` asks them, and the log files of its replicas."""

    def __init__(self, state_dir: Path) -> None:
        self.client = Client(state_dir, timeout=REQUEST_TIMEOUT)
        self.log_dir = state_dir / "logs"

    def snapshot(self, now: float) -> Snapshot:
        """Raises the client's UserError (DaemonUnavailable, ApiError) when the daemon does not answer."""
        answer = self.client.request("GET", OBJECTS_ROUTE)
        objects = [o for o in answer.get("objects") or () if isinstance(o, Mapping)]
        revision = answer.get("revision")
        return Snapshot(revision if isinstance(revision, int) else None, rows_of(objects, now))

    def restart(self, key: str) -> str:
        """What `orchestrator restart KEY` prints, once the daemon took the restart."""
        return restart_result(self.client.request("POST", "/restart", {"name": key}))

    def follower(self, row: Row, tail: int = 200) -> LogFollower:
        return LogFollower([(i, log_path(self.log_dir, ReplicaId(row.key, i))) for i in row.replicas], tail)


_BUDGET = 256 * 1024  # bytes read of one file per read: a process that floods its log cannot stall the view
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")  # CSI sequences (colours) and two-byte escapes
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(line: str) -> str:
    """A process's line as the pane may show it: its colours and cursor moves dropped, other control
    characters shown as `?`, tabs as spaces (a line cannot move the cursor of the terminal it is shown on)."""
    return _CONTROLS.sub("?", _ESCAPES.sub("", line)).expandtabs(4)


class LogFollower:
    """New lines of one object's replica logs, as `logs -f` shows them: the last `tail` lines first, then
    what is appended, `[i] `-prefixed when there are several replicas. A file copied and truncated by its
    rotation is read again from its start. Each read takes at most _BUDGET bytes of each file (what is left
    comes with the next reads); a line longer than that is shown cut in pieces."""

    def __init__(self, files: Sequence[tuple[int, Path]], tail: int = 200) -> None:
        self.files = list(files)
        self.tail = tail
        self.positions: dict[Path, int] = {}

    def read(self) -> list[str]:
        lines: list[str] = []
        prefixed = len(self.files) > 1
        for index, path in self.files:
            if path in self.positions:
                new, self.positions[path] = _read_from(path, self.positions[path])
            else:
                new, self.positions[path] = _read_last(path, self.tail)
            lines += [(f"[{index}] " if prefixed else "") + printable(line) for line in new]
        return lines


def _open(path: Path) -> int | None:
    try:  # the daemon creates logs without following links; so are they read
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # not written yet (or not a file we read): nothing to show, asked again next time
        return None


def _read_last(path: Path, count: int) -> tuple[list[str], int]:
    """The last `count` complete lines (of the last _BUDGET bytes), and where the next read starts."""
    fd = _open(path)
    if fd is None:
        return [], 0
    try:
        size = os.fstat(fd).st_size
        start = max(size - _BUDGET, 0)
        data = os.pread(fd, size - start, start)
    finally:
        os.close(fd)
    end = data.rfind(b"\n") + 1  # after the last complete line: the next read starts there
    first = data.find(b"\n") + 1 if start > 0 else 0  # begun inside a line: that line is not shown
    lines = data[first:end].decode(errors="replace").splitlines() if end > first else []
    return (lines[-count:] if count else []), start + end


def _read_from(path: Path, position: int) -> tuple[list[str], int]:
    """The complete lines written since `position`, and where the next read starts."""
    fd = _open(path)
    if fd is None:
        return [], 0
    try:
        size = os.fstat(fd).st_size
        if size < position:  # rotated (copied and truncated): start over
            position = 0
        data = os.pread(fd, min(size - position, _BUDGET), position)
    finally:
        os.close(fd)
    complete = data.rfind(b"\n") + 1
    if complete == 0 and len(data) == _BUDGET:  # one line longer than a read: shown in pieces
        complete = len(data)
    return data[:complete].decode(errors="replace").splitlines(), position + complete
