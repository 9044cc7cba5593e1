"""Manifest files on disk: finding them, and reading each within its budget, without blocking.

Owns the budgets of reading (ReadLimits), file discovery (`*.yaml`, `*.yml`, recursive, sorted, links
followed with each directory read once) and bounded reads that open only regular files: a FIFO, socket or
device would block or never end, so it is reported as what it is and never opened. Imports no YAML: the CLI
finds and reads files with it before it sends their text to the daemon.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from ..core.errors import Location, Problem

MANIFEST_SUFFIXES = (".yaml", ".yml")


class Source(NamedTuple):
    """The text of one manifest file, and the file's name as problems and locations should show it."""

    file: str
    text: str


# The variable that raises each budget of ReadLimits, for the CLI and a daemon alike (the daemon takes the
# budgets the CLI sends with the manifests, and its own environment's for the paths it watches).
LIMIT_VARIABLES = {
    "max_bytes": "ORCHESTRATOR_MANIFEST_MAX_BYTES",
    "max_documents": "ORCHESTRATOR_MANIFEST_MAX_DOCUMENTS",
    "max_values": "ORCHESTRATOR_MANIFEST_MAX_VALUES",
    "max_files": "ORCHESTRATOR_MANIFEST_MAX_FILES",
}


class ReadLimits(NamedTuple):
    """The budget of reading manifests: per file, per document, and of the files read at once (a named
    tuple, not a dataclass: the CLI imports this module and dataclasses costs a start-up ~10 ms)."""

    max_bytes: int = 2 * 1024 * 1024  # of one file
    max_documents: int = 10_000  # in one file
    max_values: int = 250_000  # keys and values of one document, aliases expanded
    max_depth: int = 100  # nesting of lists and mappings (a manifest needs about 8)
    max_files: int = 10_000  # manifest files read at once
    # An alias may add at most this many times the values written in the document, beyond a small allowance.
    alias_ratio: int = 10
    alias_allowance: int = 10_000

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ReadLimits:
        """The defaults, with each raised where its variable holds a positive whole number (others are ignored:
        a typo there must not lift a limit)."""
        given = {name: environ.get(variable, "").strip() for name, variable in LIMIT_VARIABLES.items()}
        return cls.given({name: int(text) for name, text in given.items() if text.isdigit()})

    @classmethod
    def given(cls, values: Mapping[str, object]) -> ReadLimits:
        """The defaults, with each budget of LIMIT_VARIABLES that `values` gives as a positive whole number."""
        return cls(**{name: value for name, value in values.items() if name in LIMIT_VARIABLES
                      and isinstance(value, int) and not isinstance(value, bool) and value > 0})


class NotRegular(OSError):
    """A path that is not a regular file (a FIFO, socket or device would block or never end)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "a directory", "a named pipe (FIFO)", ...


def file_kind(mode: int) -> str:
    for test, words in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "not a regular file"


def read_bounded(file: str, max_bytes: int) -> bytes:
    """The bytes of a regular file, at most `max_bytes` + 1 of them (more means: over the limit).

    Opened without blocking, so a FIFO is refused instead of waited on; links are followed (a manifest
    directory may link to files kept elsewhere). Raises NotRegular or OSError.
    """
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(file_kind(mode))
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


STDIN = "-"  # `-f -`: manifests on standard input
STDIN_NAME = "<stdin>"  # how problems name it; relative paths in it are relative to the current directory
def shown_as(file: str) -> str:
    """How a manifest file is named in problems and locations: `-` as <stdin>, any other as given."""
    return STDIN_NAME if file == STDIN else file


_stdin: list[bytes] = []  # read once per process: a command may look at its manifests twice


def read_stdin(max_bytes: int) -> bytes:
    """Standard input, at most `max_bytes` + 1 bytes of it, read once (later calls return the same)."""
    if not _stdin:
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(0, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        _stdin.append(b"".join(chunks))
    return _stdin[0]


def read_text(file: str, limits: ReadLimits) -> tuple[str | None, list[Problem]]:
    """The text of a manifest file (`-`: standard input), or None and why not (located at the file)."""
    if file == STDIN:
        file = shown_as(file)
        try:
            data = read_stdin(limits.max_bytes)
        except OSError as error:
            return None, [Problem(Location(file), "", f"cannot read: {error.strerror or error}")]
        return _decoded(file, data, limits)
    try:
        data = read_bounded(file, limits.max_bytes)
    except NotRegular as error:
        return None, [Problem(Location(file), "", f"{error.kind}, not a file: not read")]
    except OSError as error:
        return None, [Problem(Location(file), "", f"cannot read: {error.strerror or error}")]
    return _decoded(file, data, limits)


def _decoded(file: str, data: bytes, limits: ReadLimits) -> tuple[str | None, list[Problem]]:
    if len(data) > limits.max_bytes:
        return None, [Problem(Location(file), "", f"larger than {limits.max_bytes:,} bytes: refused (raise the "
                              f"limit with {LIMIT_VARIABLES['max_bytes']})")]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as error:
        return None, [Problem(Location(file), "", f"not UTF-8 text: {error.reason} at byte {error.start}")]


def find_manifest_files(paths: Sequence[str], limits: ReadLimits | None = None
                        ) -> tuple[tuple[str, ...], tuple[Problem, ...]]:
    """The manifest files named by `paths`, in order, each once; directories are read recursively.

    Files found in a directory are those ending in .yaml or .yml, sorted by path; hidden files and
    directories (`.git`, `.github`, editors' `.#x.yaml` and `.x.yaml.swp`) are skipped because they hold other
    tools' files, and so are backups (`x.yaml~`). Links to files and directories are followed, each directory
    once (a link back up the tree is not followed again). Only regular files are ever opened: a FIFO, socket
    or device named like a manifest is a problem, not a wait. A file named explicitly is read whatever its
    name. Returned names are joined onto the path as given, not made absolute.
    """
    limits = limits if limits is not None else ReadLimits.from_environment(os.environ)
    files: list[str] = []
    problems: list[Problem] = []
    for path in paths:
        if path == STDIN:
            files.append(STDIN)
            continue
        try:
            info = os.stat(path)
        except FileNotFoundError:
            what = "a link to nothing" if os.path.islink(path) else "no such file or directory"
            problems.append(Problem(Location(path), "", what))
            continue
        except OSError as error:
            problems.append(Problem(Location(path), "", f"cannot read: {error.strerror or error}"))
            continue
        if stat.S_ISDIR(info.st_mode):
            found, walk_problems = _walk(path)
            problems += walk_problems
            if not found and not walk_problems:
                problems.append(Problem(Location(path), "", "no manifests (*.yaml, *.yml) in this directory"))
            files += sorted(found, key=lambda f: Path(f).parts)
        elif stat.S_ISREG(info.st_mode):
            files.append(path)
        else:
            problems.append(Problem(Location(path), "", f"{file_kind(info.st_mode)}, not a file: not read"))
    unique: dict[str, str] = {}
    for file in files:
        unique.setdefault(file if file == STDIN else os.path.realpath(file), file)  # each file read once
    if len(unique) > limits.max_files:
        problems.append(Problem(Location(paths[0] if paths else "."), "", (
            f"more than {limits.max_files:,} manifest files: refused (raise the limit with "
            f"{LIMIT_VARIABLES['max_files']})")))
        return (), tuple(problems)
    return tuple(unique.values()), tuple(problems)


def _walk(top: str) -> tuple[list[str], list[Problem]]:
    """Manifest files below `top`, following links, each directory once (by device and inode)."""
    found: list[str] = []
    problems: list[Problem] = []
    visited: set[tuple[int, int]] = set()
    folders = [top]
    while folders:
        folder = folders.pop()
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in visited:
                continue  # a link back into the tree: already read
            visited.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as entries:
                listing = sorted(entries, key=lambda e: e.name)
        except OSError as error:
            problems.append(Problem(Location(folder), "", f"cannot read: {error.strerror or error}"))
            continue
        for entry in listing:
            if entry.name.startswith("."):
                continue
            try:
                mode = entry.stat().st_mode  # follows a link
            except FileNotFoundError:
                if entry.name.endswith(MANIFEST_SUFFIXES):
                    problems.append(Problem(Location(entry.path), "", "a link to nothing"))
                continue
            except OSError as error:
                problems.append(Problem(Location(entry.path), "", f"cannot read: {error.strerror or error}"))
                continue
            if stat.S_ISDIR(mode):
                folders.append(entry.path)
            elif entry.name.endswith(MANIFEST_SUFFIXES):
                if stat.S_ISREG(mode):
                    found.append(entry.path)
                else:
                    problems.append(Problem(Location(entry.path), "", f"{file_kind(mode)}, not a file: not read"))
    return found, problems
