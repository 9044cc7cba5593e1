"""Manifest problems as `validate` and every command print them: one per line, or a JSON report."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ...core.errors import Problem


def problems_text(problems: Sequence[Problem]) -> str:
    noun = "problem" if len(problems) == 1 else "problems"
    return "\n".join([*(str(p) for p in problems), f"{len(problems)} {noun} found"])


def problems_json(problems: Sequence[Problem], objects: int = 0, warnings: Sequence[Problem] = ()) -> str:
    document = {"valid": not problems, "objects": objects, "problems": [p.to_json() for p in problems],
                "warnings": [w.to_json() for w in warnings]}
    return json.dumps(document, indent=2, sort_keys=True)


def validated_text(keys: Sequence[str], files: int) -> str:
    noun = "object" if len(keys) == 1 else "objects"
    return f"valid: {len(keys)} {noun} in {files} file{'s' if files != 1 else ''}"
