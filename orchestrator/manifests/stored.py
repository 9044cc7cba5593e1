"""Documents of the kinds the daemon keeps (GitSync, AlertRule, Notifier, CronJob, Queue) given as plain dicts,
from the daemon's store or an API client's request: checked by the same schema and rules as a manifest file's,
every problem at `where` and its field path."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from ..core.errors import Location, ManifestError, Problem
from .codec import API_VERSION
from .documents import Document
from .explain import explain
from .schema import full_validator, is_valid

Rules = Callable[[Document, dict[str, Any]], list[Problem]]


def checked_document(document: Any, where: str, rules: Mapping[str, Rules], what: str = "a document",
                     ) -> tuple[str, dict[str, Any], Location]:
    """(its kind, a deep copy of it, its location) when `document` is a valid document of one of `rules`'
    kinds; else ManifestError with every problem (the schema's, less those a rule explains better, and the
    rules')."""
    location = Location(where)
    if not isinstance(document, Mapping):
        raise ManifestError([Problem(location, "", f"{what} must be a mapping, got {type(document).__name__}")])
    kind = document.get("kind")
    problems = [Problem(location, "apiVersion", f"expected {API_VERSION}, got {document.get('apiVersion')!r}")
                for _ in range(document.get("apiVersion") != API_VERSION)]
    if kind not in rules:
        problems.append(Problem(location, "kind", f"expected {' or '.join(rules)}, got {kind!r}"))
    if problems:
        raise ManifestError(problems)
    value = copy.deepcopy(dict(document))
    doc = Document(where, value=value)
    schema: list[Problem] = []
    if not is_valid(API_VERSION, str(kind), value):
        for error in full_validator(API_VERSION, str(kind)).iter_errors(value):
            schema += explain(doc, error)
    spec = value.get("spec")
    found = rules[str(kind)](doc, spec) if isinstance(spec, dict) else []
    explained = {problem.path for problem in found}  # a field a rule explains: the schema's word on it goes
    problems = [p for p in schema if p.path not in explained or p.message.startswith("unknown field")] + found
    if problems:
        raise ManifestError(list(dict.fromkeys(p._replace(location=location) for p in problems)))
    return str(kind), value, location


def number(value: float) -> float | int:
    """60.0 as 60: the document reads as it would be written."""
    return int(value) if float(value).is_integer() else value
