"""What every view shares: table layout, cells, human units and ages, and the -o json / -o yaml forms."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

GAP = "  "  # between table columns
MISSING = object()
ELLIPSIS = "…"
HIDDEN = "<hidden>"  # in place of an env value: names show, values never


def human_bytes(n: int) -> str:
    """Binary units the way `get -o wide` shows memory: 512B, 1.5Ki, 12Mi, 3.2Gi (one decimal below 10)."""
    if n < 0:
        return "-" + human_bytes(-n)
    if n < 1024:
        return f"{int(n)}B"
    value = float(n)
    for unit in ("Ki", "Mi", "Gi", "Ti", "Pi"):
        value /= 1024
        if unit == "Pi" or round(value) < 1024:
            if value < 10:
                text = f"{value:.1f}"
                # 9.96 rounds to "10.0": show it like every other value of 10 and above.
                return f"{text[:-2] if text == '10.0' else text}{unit}"
            return f"{round(value)}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def human_age(seconds: float) -> str:
    """kubectl-style age (its HumanDuration, but hours from 1h): 45s, 3m20s, 45m, 2h5m, 20h, 4d6h, 45d, 2y30d.

    Negative (clock skew) is 0s.
    """
    s = int(max(seconds, 0))
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 60:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d" if hours % 24 == 0 else f"{days}d{hours % 24}h"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return f"{years}y" if days % 365 == 0 else f"{years}y{days % 365}d"
    return f"{years}y"


def age_text(at: Any, now: float) -> str:
    return human_age(now - at) if isinstance(at, (int, float)) else "-"


def ago_text(at: Any, now: float) -> str:
    return f"{human_age(now - at)} ago" if isinstance(at, (int, float)) else "-"


def duration_text(seconds: Any) -> str:
    """A span such as how long a run lasted: 0.4s, 2s, 3m20s."""
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    return human_age(seconds)


def number_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else cell_text(value)


# Control characters (C0, DEL, C1: ESC, and U+009B, an 8-bit CSI xterm obeys) never reach a terminal from a
# table: a manifest's argv or name is not to move the cursor or retitle the window of whoever runs `get`.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def cell_text(value: Any) -> str:
    """One table cell: never None, never more than one line, no control characters."""
    if value is None or value == "":
        return "-"
    return _CONTROLS.sub("?", " ".join(str(value).split())) if isinstance(value, str) else str(value)


def table_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned, two spaces apart; the last column is not padded."""
    widths = [max(len(title), *(len(row[i]) for row in rows)) for i, title in enumerate(header)]
    lines = []
    for row in (header, *rows):
        lines.append(GAP.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)


def truncated(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + ELLIPSIS


def command_text(command: Any) -> str:
    """An argv list shell-quoted (copy-pasteable); a shell string as written."""
    if isinstance(command, (list, tuple)):
        return _CONTROLS.sub("?", shlex.join(str(arg) for arg in command))
    return "" if command is None else _CONTROLS.sub("?", str(command))


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def dig(document: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(document, Mapping):
            return None
        document = document.get(key)
    return document


def to_json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def to_yaml(value: object) -> str:
    import yaml  # only here: PyYAML costs more to import than everything else `get` needs

    return str(yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True))


def to_json_line(value: object) -> str:
    """One compact JSON object per line (`events -o json`, for scripts and log shippers)."""
    return json.dumps(value, sort_keys=True)
