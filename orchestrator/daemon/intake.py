"""Manifest texts sent by the CLI (`apply`, `diff`), read and checked by the daemon, off the reconciler's thread.

The CLI finds the files and reads them within their budget; the daemon, whose imports are warm and whose
schema checks are compiled, parses and validates them here with the content-addressed cache of documents
validated before, so an unchanged document costs a hash. Runs on the request's thread: however long a
large text takes, supervision does not wait for it. Problems name the files as the request sent them
(absolute paths); the CLI shows them as the user wrote them.
"""

from __future__ import annotations

from typing import Any

from ..core.model import ProcessSpec
from ..manifests.cache import SpecCache
from ..manifests.files import ReadLimits, Source
from ..manifests.loader import KeptSpec, load_sources


def sent_limits(value: Any) -> ReadLimits:
    """The reading budgets the CLI was given (its environment's): each a positive whole number, or the default."""
    return ReadLimits.given(value) if isinstance(value, dict) else ReadLimits()


def sent_sources(body: dict[str, Any]) -> list[Source]:
    files = body.get("files")
    if not isinstance(files, list):
        raise TypeError("files: expected a list of {file, text}")
    sources = []
    for index, item in enumerate(files):
        if not isinstance(item, dict) or not isinstance(item.get("file"), str) or not isinstance(item.get("text"), str):
            raise TypeError(f"files[{index}]: expected {{file, text}}, both strings")
        sources.append(Source(item["file"], item["text"]))
    return sources


def sent_variables(value: Any) -> dict[str, str]:
    """What ${NAME} means in the texts: the sending command's environment (strings only)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise TypeError("variables: expected a mapping of names to strings")
    return value


def load_sent(body: dict[str, Any], cache: SpecCache, used: dict[str, str | None] | None = None,
              kept: list[KeptSpec] | None = None) -> tuple[ProcessSpec, ...]:
    """The specs of the manifest texts in `body`; raises ManifestError listing every problem. `used`
    collects the ${NAME}s they used, with their values; `kept` the GitSyncs, AlertRules and Notifiers among
    them (without it, each is a problem)."""
    return load_sources(sent_sources(body), sent_limits(body.get("limits")), cache,
                        variables=sent_variables(body.get("variables")), used=used, kept=kept)
