"""Specs of documents validated before, by content: an unchanged document costs a hash, not a parse.

A document is known by the file it is in, its text and the schemas and code that checked it (one salt per
process: a changed schema file or a new version of orchestrator is a new salt, so nothing validated under the
old ones is used). What it read besides its text, its envFrom files, is kept with it by content digest and
looked at again on every use: an edited env file means a fresh parse and validation. Only documents that
were valid are kept; a document that moved within its file (lines added above it) is reused with its
positions moved. Held in memory by the daemon, bounded in entries; a lock lets request threads share it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .. import __version__
from ..core.errors import Location
from ..core.model import ProcessSpec
from .files import ReadLimits, read_bounded
from .schema import schemas

Found = list[tuple[ProcessSpec, Location]]  # each valid document's spec and where its metadata.name is


@dataclass(frozen=True)
class _Entry:
    first_line: int
    found: tuple[tuple[ProcessSpec, Location], ...]
    env: tuple[tuple[str, bytes | None], ...]  # envFrom files and the digest each had (None: unreadable)
    variables: tuple[tuple[str, str | None], ...] = ()  # ${NAME}s it and its env files used, and their values


def _digest(file: str) -> bytes | None:
    try:
        return hashlib.sha256(read_bounded(file, ReadLimits.from_environment(os.environ).max_bytes)).digest()
    except OSError:
        return None


def _shifted(location: Location | None, lines: int) -> Location | None:
    if location is None or not lines:
        return location
    return Location(location.file, location.line + lines, location.column)


def _moved(spec: ProcessSpec, lines: int) -> ProcessSpec:
    if not lines:
        return spec
    depends_on = tuple(dataclasses.replace(d, location=_shifted(d.location, lines)) for d in spec.depends_on)
    return dataclasses.replace(spec, location=_shifted(spec.location, lines), depends_on=depends_on)


class SpecCache:
    def __init__(self, capacity: int = 10_000) -> None:
        """`capacity`: documents kept (the least recently used go first), a few MB of specs at most."""
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        identity = json.dumps([__version__, sorted(schemas().items(), key=lambda item: item[0])], sort_keys=True)
        self._salt = hashlib.sha256(identity.encode()).digest()

    def __len__(self) -> int:
        return len(self._entries)

    def _key(self, file: str, text: str) -> bytes:
        return hashlib.sha256(self._salt + file.encode() + b"\0" + text.encode()).digest()

    def get(self, file: str, text: str, first_line: int, variables: Mapping[str, str] | None = None,
            used: dict[str, str | None] | None = None) -> Found | None:
        """The specs of this text of `file` starting at `first_line`, if it was valid before, every envFrom
        file it read is as it was and every ${NAME} it used has the same value in `variables`; None
        otherwise (parse and validate it). On a hit, `used` gets the names it used, as a parse would say."""
        key = self._key(file, text)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        given = variables or {}
        if (entry is None or any(given.get(name) != value for name, value in entry.variables)
                or any(_digest(path) != digest for path, digest in entry.env)):
            self.misses += 1
            return None
        self.hits += 1
        if used is not None:
            used.update(entry.variables)
        lines = first_line - entry.first_line
        return [(_moved(spec, lines), _shifted(where, lines) or where) for spec, where in entry.found]

    def put(self, file: str, text: str, first_line: int, found: Sequence[tuple[ProcessSpec, Location]],
            env_files: Sequence[str], used: Mapping[str, str | None] | None = None) -> None:
        """Keep the specs of a text that was valid, with the envFrom files it read as they are now and the
        variables it used with their values."""
        entry = _Entry(first_line, tuple(found), tuple((path, _digest(path)) for path in dict.fromkeys(env_files)),
                       tuple(sorted((used or {}).items())))
        key = self._key(file, text)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
