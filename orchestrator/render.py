"""All formatting for people and scripts: event lines, problem lists, JSON documents. Returns strings."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from .errors import Problem
from .events import Event


def event_line(event: Event) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(event.at)) + f".{int(event.at * 1000) % 1000:03d}"
    return f"{stamp} {event.subject} {event.type.value}: {event.message}"


def event_json(event: Event) -> str:
    return json.dumps(event.to_json(), sort_keys=True)


def problems_text(problems: Sequence[Problem]) -> str:
    noun = "problem" if len(problems) == 1 else "problems"
    return "\n".join([*(str(p) for p in problems), f"{len(problems)} {noun} found"])


def problems_json(problems: Sequence[Problem], objects: int = 0) -> str:
    document = {"valid": not problems, "objects": objects, "problems": [p.to_json() for p in problems]}
    return json.dumps(document, indent=2, sort_keys=True)


def validated_text(keys: Sequence[str], files: int) -> str:
    noun = "object" if len(keys) == 1 else "objects"
    return f"valid: {len(keys)} {noun} in {files} file{'s' if files != 1 else ''}"
