"""`diff`: what apply would change in a spec, path by path, coloured on a terminal; env values never show."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from .common import HIDDEN, MISSING

_RED, _GREEN, _BOLD, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[1m", "\x1b[0m"
_SECRET_ROOT = "spec.env"


def spec_diff(key: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, color: bool = False) -> str:
    """`orchestrator diff`: changed manifest paths, live (`-`) against manifest (`+`); "" when nothing differs.

    Documents are flattened to dotted paths (`spec.backoff.initialSeconds`, `spec.dependsOn[0].name`); a list
    of plain values stays one JSON value (`spec.command: ["python3", "app.py"]`). Env values are never shown.
    """
    before = _flatten(old) if old is not None else {}
    after = _flatten(new) if new is not None else {}
    body: list[str] = []
    for path in _merged_paths(before, after):
        was, now = before.get(path, MISSING), after.get(path, MISSING)
        if was is not MISSING and now is not MISSING and _json(was) == _json(now):
            continue
        changed = was is not MISSING and now is not MISSING
        if was is not MISSING:
            body.append(_paint(f"-{path}: {_diff_value(path, was, False)}", _RED, color))
        if now is not MISSING:
            body.append(_paint(f"+{path}: {_diff_value(path, now, changed)}", _GREEN, color))
    if not body:
        return ""
    headers = [_paint(f"--- live/{key}", _BOLD, color), _paint(f"+++ manifest/{key}", _BOLD, color)]
    return "\n".join(headers + body)


def spec_diff_json(key: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`diff -o json`: the same paths as spec_diff, as {"key", "change": created|configured|pruned, "fields":
    [{"path", "live", "manifest"}]} (a side that lacks the path is left out); None when nothing differs.
    Env values are never shown: "<hidden>" stands for each."""
    before = _flatten(old) if old is not None else {}
    after = _flatten(new) if new is not None else {}
    fields = []
    for path in _merged_paths(before, after):
        was, now = before.get(path, MISSING), after.get(path, MISSING)
        if was is not MISSING and now is not MISSING and _json(was) == _json(now):
            continue
        entry: dict[str, Any] = {"path": path}
        if was is not MISSING:
            entry["live"] = _shown(path, was)
        if now is not MISSING:
            entry["manifest"] = _shown(path, now)
        fields.append(entry)
    if not fields:
        return None
    change = "created" if old is None else "pruned" if new is None else "configured"
    return {"key": key, "change": change, "fields": fields}


def _shown(path: str, value: Any) -> Any:
    secret = path == _SECRET_ROOT or path.startswith((_SECRET_ROOT + ".", _SECRET_ROOT + "["))
    return HIDDEN if secret and value not in ({}, [], None) else value


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text


def _path_join(path: str, key: str) -> str:
    plain = bool(key) and not key[0].isdigit() and all(c.isalnum() or c in "_-" for c in key)
    if plain:
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _flatten(value: Any, path: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {} if out is None else out
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(item, _path_join(path, str(key)), out)
    elif isinstance(value, (list, tuple)) and any(isinstance(item, (Mapping, list, tuple)) for item in value):
        for index, item in enumerate(value):
            _flatten(item, f"{path}[{index}]", out)
    else:
        out[path or "."] = value
    return out


def _merged_paths(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Paths of both documents in document order: an added path goes right after its predecessor in `after`."""
    merged = list(before)
    previous: str | None = None
    for path in after:
        if path not in before:
            merged.insert(merged.index(previous) + 1 if previous is not None else 0, path)
        previous = path
    return merged


def _diff_value(path: str, value: Any, changed: bool) -> str:
    secret = path == _SECRET_ROOT or path.startswith((_SECRET_ROOT + ".", _SECRET_ROOT + "["))
    if secret and value not in ({}, [], None):
        return "<hidden (changed)>" if changed else HIDDEN
    return _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def print_diff(pairs: list[tuple[str, Any, Any]], output: str) -> int:
    """Each (key, live document, manifest document) field by field, as text or JSON; 1 if anything differs."""
    if output == "json":
        found = [d for d in (spec_diff_json(*pair) for pair in pairs) if d is not None]
        print(json.dumps({"changes": found}, sort_keys=True, default=str))
        return 1 if found else 0
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    out = [text for text in (spec_diff(key, old, new, color) for key, old, new in pairs) if text]
    if out:
        print("\n".join(text.rstrip("\n") for text in out))
        return 1
    return 0
