"""The one exception tree of orchestrator.

User errors (bad manifests, bad arguments) carry where they come from (file, line, column, field path) and
are collected, not raised one by one: a ManifestError holds every Problem found. Only the CLI and API edges
turn these into messages and exit codes. A managed process that fails is not an exception: it is an
outcome with a Reason (see model.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

# Named tuples, not dataclasses: every command imports this module, and importing dataclasses costs about
# 10 ms of a CLI start (it pulls in inspect). Both are immutable values, compared and ordered field by field.


class Location(NamedTuple):
    """A place in a manifest file; line and column are 1-based (0 when unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


class Problem(NamedTuple):
    """One thing wrong with the input: where, which field, and what was expected."""

    location: Location
    path: str  # dotted field path such as "spec.backoff.initialSeconds"; "" for the whole document
    message: str

    def __str__(self) -> str:
        field = f"{self.path}: " if self.path else ""
        return f"{self.location}: {field}{self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "path": self.path,
            "message": self.message,
        }


class OrchestratorError(Exception):
    """Base of every error orchestrator raises on purpose."""


class UserError(OrchestratorError):
    """The user asked for something that cannot be done; the message says why. Exit code 1 or 2."""


class UsageError(UserError):
    """The command line itself is wrong (a missing or impossible argument): exit code 2, as argparse's."""


class ManifestError(UserError):
    """One or more problems in manifests: every problem found, sorted by place."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.location, p.path, p.message)))
        super().__init__("\n".join(str(p) for p in self.problems))


class SpawnError(OrchestratorError):
    """A command could not be started (missing binary, permission denied, bad working directory).

    The reconciler turns it into an exit with reason StartFailed; it never crashes the orchestrator.
    """


class ListenError(UserError, OSError):
    """A listening socket of a process could not be bound or taken back (host/listeners.py). `errno` is the
    kernel's; the message names the socket, its address and the errno's name, such as
    "socket http (tcp://127.0.0.1:8080): address already in use (EADDRINUSE)"."""

    def __init__(self, errno: int, message: str) -> None:
        OSError.__init__(self, errno, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StoreError(UserError):
    """The state database cannot be used as it is (corrupt, not ours, written by a newer version, unwritable).

    The message names the file and what to do; the store never resets or overwrites it on its own.
    """


class StoreBusy(StoreError):
    """Another program holds the state database's write lock (an admin in `sqlite3`): try again later."""


def problems_summary(problems: Sequence[Problem], shown: int = 3) -> str:
    """A one-line account of manifest problems for an event, with no env value in it: a problem found in
    `spec.env` may quote the value (a secret), so only its place is kept."""
    parts = []
    for problem in problems[:shown]:
        if problem.path == "spec.env" or problem.path.startswith(("spec.env.", "spec.env[")):
            parts.append(f"{problem.location}: {problem.path}: invalid (value not shown)")
        else:
            parts.append(str(problem))
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return f"{len(problems)} problem(s), nothing changed: " + "; ".join(parts) + more
