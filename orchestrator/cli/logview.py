"""`orchestrator logs`: what replicas printed, as people read it (docker compose logs, kubectl logs, stern).

One replica of one process shows its lines as they are. Several (NAME..., -l SELECTOR, a process with
replicas) show every line after its replica's prefix (`api[0] | `, padded to align, coloured per process on a
terminal), the lines of all of them interleaved by time. A line's time is when the daemon first saw it in its
file (the time index beside each log, host/logindex.py: an upper bound, within 20 ms for an occasional line
while a daemon runs); `--since` and `--timestamps` use it, and each start of a replica after another shows as
a marker line. `-f` goes on with what is written next (logfollow.py).

The current log file of each replica is read (rotated copies are not), from the state dir directly: the
daemon only says which objects and replicas there are (and, without a daemon, the files found say it;
logstreams.py selects them).
"""

from __future__ import annotations

import argparse
import calendar
import heapq
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence

from ..core.errors import UsageError, UserError
from ..host.logread import Cursor, IndexTail, Line, Start, line_start_at_or_after, read_lines, read_times, tail_start
from .client import Client
from .exit_codes import EXIT_OK
from .logfollow import Follower
from .logstreams import Lookup, Stream, View, select_streams, shown
from .render.logs import line_text

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d)(?::(\d\d)(\.\d+)?)?\s*(Z|z|[+-]\d\d:?\d\d)?")


def parse_since(text: str, now: float) -> float:
    """--since: a duration before `now` (30s, 10m, 1h30m, 2d) or an RFC 3339 time (2024-05-01T12:00:00Z,
    with an offset, or without one: local time); seconds since the epoch."""
    spec = text.strip()
    if _DURATION.fullmatch(spec):
        return now - sum(float(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(spec))
    match = _RFC3339.fullmatch(spec)
    if match is None:
        raise UsageError(f"--since {text!r}: expected a duration such as 10m, 1h or 1h30m, or an RFC 3339 time "
                         "such as 2024-05-01T12:00:00Z")
    year, month, day, hour, minute = (int(match[i]) for i in range(1, 6))
    second = int(match[6] or 0)
    fraction = float(match[7] or 0)
    fields = (year, month, day, hour, minute, second, 0, 0, -1)
    try:
        if match[8] is None:
            return time.mktime(fields) + fraction  # local time
        at = calendar.timegm(fields) + fraction
    except (OverflowError, ValueError) as error:
        raise UsageError(f"--since {text!r}: {error}") from None
    zone = match[8]
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "+" else 1
        digits = zone[1:].replace(":", "")
        at += sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return at


def logs(args: argparse.Namespace, client: Client, lookup: Lookup) -> int:
    now = time.time()
    since = parse_since(args.since, now) if args.since else None
    names: list[str] = list(args.names)
    if not names and not args.selector:
        raise UsageError("name what to show: NAME... or -l SELECTOR")
    streams, daemon = select_streams(args, client, lookup)
    if not streams and not (args.follow and daemon):
        what = f"-l {args.selector}" if args.selector and not names else ", ".join(names)
        raise UserError(f"no logs for {what}")
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    view = View(sys.stdout, prefixed=bool(args.selector), colour=colour, timestamps=args.timestamps)
    view.streams_are(streams)
    try:
        for stream in streams:
            stream.index_tail = IndexTail(stream.path)
            stream.index_tail.skip_to_end()  # what it adds from now on is new: followed, not in the backlog
            stream.shown_since = now
        ends = _backlog(view, streams, args.tail, since, now)
        _say_why_nothing_shows(streams, ends)
        if not args.follow:
            return EXIT_OK
        for stream in streams:
            stream.cursor = Cursor(stream.path, ends[stream.order])
        return Follower(view, streams, client if daemon else None, args, lookup, now).run()
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say, and nowhere to say it
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


# -- what is there already -------------------------------------------------------------------------------


def _backlog(view: View, streams: Sequence[Stream], tail: int | None, since: float | None, now: float
             ) -> dict[int, int]:
    """Write what each stream holds (its last `tail` lines, those since `since`), interleaved by time; the
    size of each file as it was read, by stream order."""
    ends: dict[int, int] = {}
    sources = []
    for stream in streams:
        try:
            ends[stream.order] = os.stat(stream.path).st_size
        except OSError:
            ends[stream.order] = 0
            continue
        sources.append(_items(stream, ends[stream.order], tail, since))
    batch: list[str] = []
    for _, stream, start, line, at in heapq.merge(*sources, key=lambda item: item[0]):
        batch.append(view.marker(stream, start, at, now) if start is not None else
                     view.line(stream, at, line_text(line.text) if line is not None else ""))
        if len(batch) >= 512:
            view.write(batch)
            batch = []
    view.write(batch)
    return ends


Item = tuple[tuple[float, int], Stream, "Start | None", "Line | None", float]


def _items(stream: Stream, end: int, tail: int | None, since: float | None) -> Iterator[Item]:
    """One stream's lines and markers in [its start, end), each keyed by (time, stream) for the merge."""
    times = read_times(stream.path)
    start = 0
    if since is not None:
        first = times.first_at_or_after(since)
        start = end if first is None else line_start_at_or_after(stream.path, first)
    if tail is not None:
        start = max(start, tail_start(stream.path, tail))
    starts = [s for s in times.starts if start <= s.offset <= end and shown(s)]

    def marker_item(s: Start) -> Item | None:
        at = min(s.at, times.at(s.offset))  # it started before its first output was in the file
        if since is not None and at < since:
            return None
        stream.last = max(stream.last, at)
        return (stream.last, stream.order), stream, s, None, at

    for line in read_lines(stream.path, start, end):
        while starts and starts[0].offset <= line.offset:
            item = marker_item(starts.pop(0))
            if item is not None:
                yield item
        at = times.at(line.offset)
        if since is not None and at < since:
            continue
        stream.last = max(stream.last, at)
        yield (stream.last, stream.order), stream, None, line, at
    for s in starts:
        item = marker_item(s)
        if item is not None:
            yield item


def _say_why_nothing_shows(streams: Sequence[Stream], ends: dict[int, int]) -> None:
    quiet = sorted({s.key for s in streams if not ends.get(s.order) and _buffers_its_output(s.command)})
    for key in quiet:
        print(f"orchestrator: {key.split('/', 1)[1]} has printed nothing yet. Python holds back what it prints when "
              "that is not a terminal: run it with `python -u`, or set PYTHONUNBUFFERED: \"1\" in its env, to see "
              "each line as it is printed", file=sys.stderr)


def _buffers_its_output(command: Sequence[str]) -> bool:
    """A Python program started without -u (its env, which may set PYTHONUNBUFFERED, is not looked at)."""
    if not command:
        return False
    flags = [word for word in command[1:4] if word.startswith("-") and not word.startswith("--")]
    return os.path.basename(command[0]).startswith("python") and not any("u" in flag for flag in flags)
