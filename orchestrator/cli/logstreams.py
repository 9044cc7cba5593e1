"""The replicas `logs` shows, and how it writes their lines: which are selected (NAME..., -l SELECTOR, or the
files found when no daemon answers), each one's stream, and the view (prefix, time, marker) of a line.

Shared by the backlog (logview.py) and the follower (logfollow.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from ..core.errors import UserError
from ..core.model import ReplicaId
from ..host.logread import Cursor, IndexTail, Start
from ..host.logs import log_path
from .client import Client, DaemonUnavailable
from .render.logs import Prefixes, label, marker, timestamp

Lookup = Callable[[Client, str], Any]  # the one lookup of an object by name (commands._object_named)


@dataclass
class Stream:
    """One replica's log as it is shown."""

    key: str
    index: int
    path: Path
    order: int  # ties between streams go to the one selected first
    command: list[str] = field(default_factory=list)
    cursor: Cursor | None = None  # following: where it is
    index_tail: IndexTail | None = None
    points: list[tuple[int, float]] = field(default_factory=list)  # following: index points not used up yet
    starts: list[Start] = field(default_factory=list)  # following: starts not shown yet
    # Following across a rotation: what the index said before it was begun anew, until the cursor has read
    # the rest of the rotated copy; whether the index is ahead (begun anew, the log not emptied yet), or the
    # cursor is (the log emptied, the index not begun anew yet: its next beginning is this rotation's).
    old_points: list[tuple[int, float]] = field(default_factory=list)
    old_starts: list[Start] = field(default_factory=list)
    index_ahead: bool = False
    reset_seen: bool = False
    shown_since: float = 0.0  # following: starts before this (wall clock) were shown already, or are older
    held_since: float | None = None  # following: when its unfinished last line began to wait (monotonic)
    last: float = 0.0  # the latest time among its lines shown: its own lines keep their order


class View:
    """How each line and marker is written: prefix, time, text."""

    def __init__(self, out: TextIO, prefixed: bool, colour: bool, timestamps: bool) -> None:
        self.out = out
        self.prefixed = prefixed
        self.timestamps = timestamps
        self.namespaced = False
        self.prefixes = Prefixes(colour)

    def streams_are(self, streams: Sequence[Stream]) -> None:
        self.namespaced = len({s.key.split("/", 1)[0] for s in streams}) > 1
        self.prefixed = self.prefixed or len(streams) > 1
        for stream in streams:
            self.prefixes.add(stream.key, self.label(stream))

    def label(self, stream: Stream) -> str:
        return label(stream.key, stream.index, self.namespaced)

    def line(self, stream: Stream, at: float, text: str) -> str:
        head = self.prefixes.of(stream.key, self.label(stream)) if self.prefixed else ""
        return head + (timestamp(at) + " " if self.timestamps else "") + text

    def marker(self, stream: Stream, start: Start, at: float, now: float) -> str:
        text = marker(self.label(stream), at, start.detail, now)
        return self.line(stream, at, text if self.prefixed else self.prefixes.paint(stream.key, text))

    def write(self, lines: Sequence[str]) -> None:
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()


def select_streams(args: argparse.Namespace, client: Client, lookup: Lookup) -> tuple[list[Stream], bool]:
    """The replicas to show, in the order selected; and whether a daemon answered (else the files found)."""
    root = args.state_dir / "logs"
    try:
        objects = objects_selected(args, client, lookup, missing_ok=False)
    except DaemonUnavailable:
        if args.selector:
            raise UserError("-l needs the daemon (labels are known to it only), and it does not answer") from None
        return streams_of_files(root, args.names, args.replica), False
    streams: list[Stream] = []
    for obj in objects:
        for replica in obj["replica_status"]:
            if args.replica is None or replica["index"] == args.replica:
                streams.append(stream_of(root, obj, replica["index"], len(streams)))
    return streams, True


def objects_selected(args: argparse.Namespace, client: Client, lookup: Lookup, missing_ok: bool) -> list[dict[str, Any]]:
    """The named objects, then those the selector picks; each once."""
    found: dict[str, dict[str, Any]] = {}
    for name in args.names:
        try:
            obj = lookup(client, name)
        except DaemonUnavailable:
            raise
        except UserError:
            if not missing_ok:
                raise
            continue
        found.setdefault(obj["key"], obj)
    if args.selector:
        for obj in client.request("GET", "/objects?selector=" + quote(args.selector, safe=""))["objects"]:
            found.setdefault(obj["key"], obj)
    return list(found.values())


def stream_of(root: Path, obj: dict[str, Any], index: int, order: int) -> Stream:
    command = [str(word) for word in obj.get("command") or []]
    return Stream(obj["key"], index, log_path(root, ReplicaId(obj["key"], index)), order, command)


def streams_of_files(root: Path, names: Sequence[str], replica: int | None) -> list[Stream]:
    """No daemon: the replicas whose log files are found, for each NAME or NAMESPACE/NAME."""
    streams: list[Stream] = []
    for given in names:
        namespace, _, name = given.rpartition("/")
        folders = [root / namespace] if namespace else sorted(p for p in root.glob("*") if p.is_dir())
        for folder in folders:
            indexes = sorted(int(p.name[len(name) + 1:-4]) for p in folder.glob(f"{name}.*.log")
                             if p.name[len(name) + 1:-4].isdigit())
            for index in indexes:
                if replica is None or index == replica:
                    key = f"{folder.name}/{name}"
                    streams.append(Stream(key, index, log_path(root, ReplicaId(key, index)), len(streams)))
            if indexes:
                break  # the first namespace that has it, as before
    return streams


def shown(start: Start) -> bool:
    """A replica's first start in an empty file needs no marker; every other does."""
    return bool(start.detail) or start.offset > 0
