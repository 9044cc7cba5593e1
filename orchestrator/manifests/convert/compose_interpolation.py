"""Compose's variable interpolation, rewritten as the manifest loader's (manifests/interpolate.py), which
follows Compose's rules when the manifests are applied: `${NAME}`, `${NAME:-default}` and their other forms
stay as written, `$NAME` becomes `${NAME}`, `$$` (Compose's escaped `$`) a `$`, and a `${` that is text the
loader's `$${`. Nothing is substituted here: the file is never read with this host's environment.
"""

from __future__ import annotations

import re
from typing import Any

from ...core.errors import Location
from ..documents import Document
from .result import Collector, KeyPath

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def rewrite_interpolation(doc: Document, services: dict[str, Any], mapped: set[str], found: Collector) -> None:
    """Every string of the services' settings named in `mapped`, rewritten in place; a note for each that
    refers to a variable without a default (it must be set where the manifests are applied)."""

    def visit(value: Any, path: KeyPath) -> Any:
        if isinstance(value, str):
            return _rewritten(value, doc.key_at(path), path, found) if "$" in value else value
        if isinstance(value, dict):
            for key in value:
                value[key] = visit(value[key], path + (key,))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                value[index] = visit(item, path + (index,))
        return value

    for service, body in services.items():
        if isinstance(body, dict):
            for key in [k for k in body if k in mapped]:
                body[key] = visit(body[key], ("services", service, key))


def _rewritten(text: str, where: Location, path: KeyPath, found: Collector) -> str:
    out: list[str] = []
    required: list[str] = []
    at = 0
    while at < len(text):
        char, following = text[at], text[at + 1:at + 2]
        if char != "$":
            out.append(char)
            at += 1
        elif following == "$":  # Compose's escape of a `$`: a text `${` is written `$${` for the loader
            out.append("$$" if text[at + 2:at + 3] == "{" else "$")
            at += 2
        elif following == "{":
            name = _NAME.match(text, at + 2)
            if name is not None and text[name.end():name.end() + 1] == "}":
                required.append(name.group(0))
            out.append("${")
            at += 2
        else:
            name = _NAME.match(text, at + 1)
            if name is None:
                out.append("$")
                at += 1
            else:
                required.append(name.group(0))
                out.append("${" + name.group(0) + "}")
                at = name.end()
    if required:
        names = ", ".join(f"${{{n}}}" for n in dict.fromkeys(required))
        found.note(where, path, f"{names}: substituted from the environment of `orchestrator apply` (and "
                   "validate), as Compose does from its own: set there, or give a default (${NAME:-value})")
    return "".join(out)
