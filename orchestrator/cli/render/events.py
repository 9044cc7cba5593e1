"""Events as `events`, `events -w` and `run` print them: a table, live lines, and JSON lines."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ...core.events import Event
from .common import cell_text, table_text


def event_json(event: Event) -> str:
    return json.dumps(event.to_json(), sort_keys=True)


def events_table(events: Sequence[Mapping[str, Any]], now: float | None = None) -> str:
    """`orchestrator events`: local HH:MM:SS; with `now`, events of another day also show their date."""
    if not events:
        return "No events."
    today = time.strftime("%Y-%m-%d", time.localtime(now)) if now is not None else None
    rows = []
    for event in events:
        at = event.get("time")
        stamp = "-"
        if isinstance(at, (int, float)):
            local = time.localtime(at)
            stamp = time.strftime("%H:%M:%S", local)
            if today is not None and time.strftime("%Y-%m-%d", local) != today:
                stamp = time.strftime("%Y-%m-%d ", local) + stamp
        key, replica = event.get("object") or "orchestrator", event.get("replica")
        subject = key if replica is None else f"{key}[{replica}]"
        rows.append([stamp, subject, cell_text(event.get("type")), cell_text(event.get("message"))])
    return table_text(["TIME", "OBJECT", "TYPE", "MESSAGE"], rows)


def event_dict_line(event: Mapping[str, Any]) -> str:
    """event_line for an event as the API serves it."""
    at = float(event.get("time") or 0.0)
    stamp = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"
    key = event.get("object") or ""
    replica = event.get("replica")
    subject = "orchestrator" if not key else (key if replica is None else f"{key}[{replica}]")
    return f"{stamp} {subject} {event.get('type')}: {event.get('message')}"
