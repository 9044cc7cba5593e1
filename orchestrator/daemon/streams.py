"""The API's server-sent event streams (WHATWG SSE, `text/event-stream`): the event log
(`GET /api/v1/events?watch=1`) and one replica's log (`GET /api/v1/logs?name=N&replica=I&follow=1`).

Resumable: every frame has an `id` (an event's number in the store, or the byte offset in the log file just
past the line), and a client that reconnects with `Last-Event-ID` gets what came after it, replayed from the
store or the file, so a reconnect loses nothing the store still holds.

Bounded: at most MAX_STREAMS streams are open at once on a server (control.py's StreamSlots: the next gets
503). A client is never
waited for: its events wait in a queue of QUEUE, and one that falls further behind is sent `event: overflow`
and let go (process-compose drops a slow consumer the same way); its reconnect replays what it missed. A
client that stops reading is cut when a write has waited (control.py's STREAM_WRITE_SECONDS). Keep-alive
comments go out every KEEPALIVE_SECONDS; a quiet stream yields b"" every TICK_SECONDS, when the server looks
whether its client closed (so a closed tab gives its slot back within about a second). Only while a stream is
open: with no client connected nothing here wakes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..host.logread import MAX_LINE, Cursor, Line, line_start_at_or_after, read_lines, read_times, tail_start
from .control import OVERFLOW, event_queue_iterator

QUEUE = 100  # events one client may fall behind by before it is sent `overflow` and closed
KEEPALIVE_SECONDS = 15.0
TICK_SECONDS = 1.0  # while a stream is quiet, how often its server looks whether the client went away
RETRY_MILLISECONDS = 2000  # how long a browser's EventSource waits before it reconnects
LOG_POLL_SECONDS = 0.2  # a followed log file is looked at this often (only while a client follows it)
TAIL_DEFAULT = 100
TAIL_MAX = 10_000
ANSWER_BYTES = 4 << 20  # of log text in one answer (TAIL_MAX lines of 64 KiB would be 640 MiB)


def frame(data: Any, event: str | None = None, id: str | int | None = None) -> bytes:
    """One SSE message: `data` as one line of JSON (JSON escapes newlines, so it is one `data:` field)."""
    head = (f"event: {event}\n" if event else "") + (f"id: {id}\n" if id is not None else "")
    return (head + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()


def opening() -> bytes:
    return f"retry: {RETRY_MILLISECONDS}\n\n".encode()


KEEPALIVE = b": keepalive\n\n"


def event_frames(subscribe: Callable[[Callable[[Any], None]], None],
                 unsubscribe: Callable[[Callable[[Any], None]], None],
                 backlog: Callable[[], list[dict[str, Any]]],
                 convert: Callable[[Any], dict[str, Any] | None],
                 keepalive_seconds: float = KEEPALIVE_SECONDS, capacity: int = QUEUE) -> Iterator[bytes]:
    """The event log as SSE frames (`event: event`, id = the event's number), then live events; ends with an
    `overflow` frame when the client fell `capacity` events behind. b"" at each quiet tick."""
    yield opening()
    last = None
    quiet = 0.0
    for item in event_queue_iterator(subscribe, unsubscribe, backlog, convert, TICK_SECONDS, capacity):
        if item is None:
            quiet += TICK_SECONDS
            if quiet >= keepalive_seconds:
                quiet = 0.0
                yield KEEPALIVE
            else:
                yield b""
        elif item is OVERFLOW:
            yield frame({"message": "this client fell behind: reconnect with Last-Event-ID to replay the rest",
                         "last_id": last}, event="overflow")
            return
        else:
            quiet = 0.0
            last = item.get("id")
            yield frame(item, event="event", id=last)


def log_tail(log: Path, tail: int | None, since: int | None) -> tuple[list[dict[str, Any]], int]:
    """The last `tail` lines of `log` (or those from offset `since` on, at most TAIL_MAX), and the offset
    where its next line will begin. Reads at most TAIL_MAX lines and about ANSWER_BYTES of them whatever was
    asked: what is left is asked for from the offset returned."""
    if since is not None:
        start = line_start_at_or_after(log, since) if since else 0
        count = TAIL_MAX
    else:
        count = TAIL_DEFAULT if tail is None else max(0, min(tail, TAIL_MAX))
        start = tail_start(log, count)
    times = read_times(log)
    lines: list[dict[str, Any]] = []
    end, size = start, 0
    for line in read_lines(log, start):
        if len(lines) >= count or size >= ANSWER_BYTES:
            break  # the rest from `end` on: the next ask, or the follow
        if not line.complete and len(line.text) < MAX_LINE:
            break  # an unfinished last line comes when its newline does (or with the follow)
        document = _line_json(line, times.at(line.offset))  # (a piece of a longer line is a line of its own)
        lines.append(document)
        end, size = document["next"], size + len(line.text)
    return lines, end


def log_frames(log: Path, start: int, still_wanted: Callable[[], bool], poll_seconds: float = LOG_POLL_SECONDS,
               keepalive_seconds: float = KEEPALIVE_SECONDS) -> Iterator[bytes]:
    """`log` from offset `start` on, as `event: line` frames whose id is the offset just past the line, for
    as long as `still_wanted()`. Follows the file across rotation (what was written before it was copied is
    read from the copy); an unfinished line is sent after a second without its newline."""
    yield opening()
    backlog, start = log_tail(log, None, start)
    for item in backlog:
        yield frame(item, event="line", id=item["next"])
    cursor = Cursor(log, start)
    quiet_since = ticked = time.monotonic()
    held_since: float | None = None
    while still_wanted():
        lines, written = cursor.read()
        now = time.monotonic()
        if not lines and cursor.held:
            held_since = held_since or now
            if now - held_since >= 1.0:
                flushed = cursor.flush()
                lines = [flushed] if flushed is not None else []
        if lines:
            held_since = None if not cursor.held else held_since
            quiet_since = now
            for line in lines:
                document = _line_json(line, written or time.time())
                # A line read from the rotated copy came before all of the new file: resuming after it is
                # resuming at the new file's start.
                yield frame(document, event="line", id=0 if line.copied else document["next"])
        elif now - quiet_since >= keepalive_seconds:
            quiet_since = ticked = now
            yield KEEPALIVE
        elif now - ticked >= TICK_SECONDS:
            ticked = now
            yield b""
        time.sleep(poll_seconds)


def _line_json(line: Line, at: float) -> dict[str, Any]:
    return {"offset": line.offset, "next": line.offset + len(line.text) + (1 if line.complete else 0), "at": at,
            "text": line.text.decode("utf-8", "replace"), "complete": line.complete, "rotated": line.copied}
