"""Log lines as `logs` and `run` print them: each replica's prefix (padded to align, coloured per process on
a terminal), the line's time (`--timestamps`), the marker of a restart, and `run -o json`'s form of a line.

Only names, times and the process's own output are shown: never a spec, so never an env value.
"""

from __future__ import annotations

import json
import time

# ANSI foreground colours, as docker compose cycles through them: cyan, yellow, green, magenta, blue, and
# their bright kinds. Red is left out: it reads as an error.
COLOURS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")


def label(key: str, index: int, namespaced: bool) -> str:
    """`api[0]`, or `shop/api[0]` when the objects shown span several namespaces."""
    return f"{key if namespaced else key.split('/', 1)[1]}[{index}]"


class Prefixes:
    """The prefix of each replica's lines: its label padded to the widest seen so far, and, on a terminal,
    the colour of its process (one per process, in the order they are first seen)."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.width = 0
        self._colours: dict[str, str] = {}

    def add(self, key: str, text: str) -> None:
        self.width = max(self.width, len(text))
        if key not in self._colours:
            self._colours[key] = COLOURS[len(self._colours) % len(COLOURS)]

    def of(self, key: str, text: str) -> str:
        """`api[0]  | `."""
        self.add(key, text)
        return self.paint(key, text.ljust(self.width) + " |") + " "

    def paint(self, key: str, text: str) -> str:
        if not self.colour:
            return text
        self.add(key, "")
        return f"\x1b[{self._colours[key]}m{text}\x1b[0m"


def timestamp(at: float) -> str:
    """RFC 3339 in UTC, to the millisecond: 2024-05-01T12:00:01.250Z."""
    whole, millis = divmod(round(at * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def marker(text_label: str, at: float, detail: str, now: float) -> str:
    """`--- api[0] restarted (exit 1) at 12:00:01 ---` (local time; with the date when not today)."""
    local = time.localtime(at)
    when = time.strftime("%H:%M:%S", local)
    if time.strftime("%Y-%m-%d", local) != time.strftime("%Y-%m-%d", time.localtime(now)):
        when = time.strftime("%Y-%m-%d ", local) + when
    what = f"restarted ({detail})" if detail else "started"
    return f"--- {text_label} {what} at {when} ---"


def line_text(data: bytes) -> str:
    """A line of output as text: what is not UTF-8 is shown as U+FFFD, and its carriage return dropped."""
    return data.decode(errors="replace").removesuffix("\r")


def log_json(key: str, index: int, at: float, text: str) -> str:
    """A line of output among `run -o json`'s events: {"type": "Log", "object", "replica", "time", "line"}."""
    return json.dumps({"type": "Log", "time": at, "object": key, "replica": index, "line": text}, sort_keys=True)
