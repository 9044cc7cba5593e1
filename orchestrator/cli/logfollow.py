"""`logs -f`: what the selected replicas write next, interleaved by time, until Ctrl-C or the daemon's end.

Woken by inotify on the folders of the followed logs (a read at most every ROUND), and by the daemon's event
stream: a start asks for another look at what is selected (a replica scaled up, an object -l picks now), and
the stream's end, once the daemon no longer answers, ends the follow with a message (exit 0 after a shutdown,
1 when it went away). A log is followed across rotation (the rest of what was read comes from the copy), and
a restart's marker is placed at the offset its start was recorded at.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..core.errors import UserError
from ..host.logread import Cursor, IndexTail, Line, Start, Times, read_times
from ..host.logs import inotify_fd, watch_events, watch_folder
from .client import Client
from .exit_codes import EXIT_FAILED, EXIT_OK
from .logstreams import Lookup, Stream, View, objects_selected, shown, stream_of
from .render.logs import line_text

HOLD = 1.0  # seconds an unfinished last line waits for its newline before it is shown as it is
ROUND = 0.05  # seconds at least between two reads while following: a busy log is read in batches
POLL = 0.5  # seconds between reads where nothing can wake the follower (no inotify, a folder not made yet)


class DaemonWatch(threading.Thread):
    """Hears the daemon's events while following: a start (of a new replica, or a new object the selector
    picks) asks for another look at what is selected; the end of the stream, when the daemon no longer
    answers, ends the follow."""

    def __init__(self, client: Client, wake: Callable[[], None]) -> None:
        super().__init__(name="logs-events", daemon=True)
        self.client = client
        self.wake = wake
        self.rescan = False
        self.shut_down = False
        self.gone = False

    def run(self) -> None:
        since = 0
        try:
            events = self.client.request("GET", "/events?limit=1")["events"]
            since = int(events[-1]["id"]) if events else 0
        except UserError:
            pass
        while True:
            try:
                for event in self.client.stream(f"/events?follow=1&since={since}"):
                    since = max(since, int(event.get("id") or since))
                    if event.get("type") in ("Started", "Adopted", "Applied", "Scaled"):
                        self.rescan = True
                        self.wake()
                    elif event.get("type") == "Shutdown":
                        self.shut_down = True
            except (UserError, OSError, ValueError):
                pass
            if not self.client.ping():  # else the stream ended for another reason (it fell behind): again
                break
        self.gone = True
        self.wake()


class Follower:
    def __init__(self, view: View, streams: list[Stream], client: Client | None, args: argparse.Namespace,
                 lookup: Lookup, began: float) -> None:
        self.view = view
        self.began = began  # wall clock: a replica found while following shows its output from its start after this
        self.streams = streams
        self.client = client
        self.args = args
        self.lookup = lookup
        self.root: Path = args.state_dir / "logs"
        self.inotify = inotify_fd()
        self.folders: dict[Path, int] = {}  # folder -> its watch
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.daemon = DaemonWatch(client, self._wake) if client is not None else None

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass

    def run(self) -> int:
        try:
            return self._run()
        finally:
            for fd in (self.inotify, self.wake_r, self.wake_w):
                if fd >= 0:
                    os.close(fd)

    def _run(self) -> int:
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        reading = False
        resume_at = 0.0
        self._watch_folders()
        if self.daemon is not None:
            self.daemon.start()
        while True:
            now = time.monotonic()
            if self.inotify >= 0 and not reading and now >= resume_at:
                poller.register(self.inotify, select.POLLIN)
                reading = True
            timeout = self._timeout(now, resume_at if not reading else None)
            ready = {fd for fd, _ in poller.poll(None if timeout is None else max(0, int(timeout * 1000) + 1))}
            if self.wake_r in ready:
                try:
                    while os.read(self.wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            if reading and self.inotify in ready:
                watch_events(self.inotify)
                poller.unregister(self.inotify)
                reading = False
                resume_at = time.monotonic() + ROUND
            if self.daemon is not None and self.daemon.rescan:
                self.daemon.rescan = False
                self._rescan()
            gone = self.daemon is not None and self.daemon.gone
            self._round(final=gone)
            if gone:
                assert self.daemon is not None
                if self.daemon.shut_down:
                    print("orchestrator: the daemon shut down: no more lines to follow", file=sys.stderr)
                    return EXIT_OK
                print(f"orchestrator: the daemon for {self.args.state_dir} went away: no more lines to follow",
                      file=sys.stderr)
                return EXIT_FAILED

    def _timeout(self, now: float, resume_at: float | None) -> float | None:
        """Seconds until something is due without a wake-up: a held line's time, a look where nothing
        watches, the end of the pause between two reads."""
        due = []
        if resume_at is not None:
            due.append(resume_at - now)
        held = [s.held_since for s in self.streams if s.held_since is not None]
        if held:
            due.append(min(held) + HOLD - now)
        if self.inotify < 0 or any(folder not in self.folders for folder in self._folders()):
            due.append(POLL)
        return max(0.0, min(due)) if due else None

    def _folders(self) -> set[Path]:
        return {s.path.parent for s in self.streams}

    def _watch_folders(self) -> None:
        if self.inotify < 0:
            return
        for folder in self._folders() - set(self.folders):
            wd = watch_folder(self.inotify, folder)
            if wd >= 0:
                self.folders[folder] = wd

    def _rescan(self) -> None:
        """Add the replicas that are selected now and were not (started since, or newly picked by -l)."""
        assert self.client is not None
        try:
            objects = objects_selected(self.args, self.client, self.lookup, missing_ok=True)
        except UserError:
            return
        known = {(s.key, s.index) for s in self.streams}
        added: list[Stream] = []
        for obj in objects:
            for replica in obj["replica_status"]:
                index = replica["index"]
                if (obj["key"], index) in known or (self.args.replica is not None and index != self.args.replica):
                    continue
                stream = stream_of(self.root, obj, index, len(self.streams) + len(added))
                stream.cursor = Cursor(stream.path, where_its_run_began(stream.path, self.began))
                stream.index_tail = IndexTail(stream.path)
                stream.index_tail.skip_to_end()
                stream.shown_since = time.time()
                added.append(stream)
        if added:
            self.streams += added
            self.view.streams_are(self.streams)
            self._watch_folders()

    def _round(self, final: bool = False) -> None:
        """Write what every stream got since the last round, interleaved by time."""
        now = time.monotonic()
        wall = time.time()
        items: list[tuple[tuple[float, int, int], str]] = []
        for stream in self.streams:
            for item in self._new(stream, now, wall, final):
                items.append(((item[0], stream.order, len(items)), item[1]))
        items.sort(key=lambda item: item[0])
        self.view.write([text for _, text in items])

    def _new(self, stream: Stream, now: float, wall: float, final: bool) -> list[tuple[float, str]]:
        """A stream's lines and markers since the last round, each keyed by its time for the merge.

        Markers are placed by offset, which is exact within one file; across a rotation the lines read from
        the copy go with what the index said before it was begun anew (the two are renamed together)."""
        assert stream.cursor is not None and stream.index_tail is not None
        points, starts, anew = stream.index_tail.read()
        if anew and stream.reset_seen:
            stream.reset_seen = False  # the cursor saw this rotation first, and moved on already
        elif anew:
            stream.old_points, stream.old_starts = stream.old_points + stream.points, stream.old_starts + stream.starts
            stream.points, stream.starts = [], []
            stream.index_ahead = True
        stream.points += points
        stream.starts = sorted([*stream.starts, *(s for s in starts if s.at > stream.shown_since and shown(s))],
                               key=lambda s: s.offset)
        rotations = stream.cursor.rotations
        lines, mtime = stream.cursor.read()
        if stream.cursor.held and (final or (stream.held_since is not None and now - stream.held_since >= HOLD)):
            held = stream.cursor.flush()
            if held is not None:
                lines.append(held)
        stream.held_since = (stream.held_since or now) if stream.cursor.held else None
        rotated = stream.cursor.rotations != rotations
        if rotated and not stream.index_ahead:  # the index is not begun anew yet: all it said is the copy's
            stream.old_points, stream.old_starts = stream.old_points + stream.points, stream.old_starts + stream.starts
            stream.points, stream.starts = [], []
            stream.reset_seen = True
        out: list[tuple[float, str]] = []
        fallback = mtime or wall
        if rotated or stream.index_ahead:  # lines of the file before its rotation
            before = [line for line in lines if line.copied or not rotated]
            out += self._placed(stream, before, stream.old_points, stream.old_starts, fallback, wall, everything=rotated)
            lines = [line for line in lines if rotated and not line.copied]
            if rotated:
                stream.old_points, stream.old_starts, stream.index_ahead = [], [], False
        out += self._placed(stream, lines, stream.points, stream.starts, fallback, wall, everything=False)
        if lines:
            stream.points = [p for p in stream.points if p[0] > lines[-1].offset]
        return out

    def _placed(self, stream: Stream, lines: Sequence[Line], points: list[tuple[int, float]], starts: list[Start],
                fallback: float, wall: float, everything: bool) -> list[tuple[float, str]]:
        """Lines timed by `points` (else `fallback`), with the markers of `starts` before the first line at or
        past each (those placed are removed from `starts`; with `everything`, all of them are placed)."""
        if not lines and not starts:
            return []
        times = Times(list(points), [], fallback)
        out: list[tuple[float, str]] = []

        def show(at: float, text: str) -> None:
            stream.last = max(stream.last, at)
            out.append((stream.last, text))

        def mark(start: Start) -> None:
            at = min(start.at, times.at(start.offset))  # it started before its first output was in the file
            show(at, self.view.marker(stream, start, at, wall))

        for line in lines:
            while starts and starts[0].offset <= line.offset:
                mark(starts.pop(0))
            at = times.at(line.offset)
            show(at, self.view.line(stream, at, line_text(line.text)))
        assert stream.cursor is not None
        while starts and (everything or starts[0].offset <= stream.cursor.position):
            mark(starts.pop(0))
        return out


def where_its_run_began(log: Path, began: float) -> int:
    """Where the output of a replica found while following begins: at its latest start, if that came after
    the follow began (it is why it was found), else at the file's end (it was selected by a change of labels)."""
    times = read_times(log)
    if times.starts and times.starts[-1].at >= began:
        return times.starts[-1].offset
    try:
        return os.stat(log).st_size
    except OSError:
        return 0
