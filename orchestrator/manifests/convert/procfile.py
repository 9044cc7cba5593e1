"""A Procfile (Heroku, foreman, honcho) as orchestrator manifests.

Each `name: command` line is a Process, kept running (restartPolicy Always, as a dyno is); the line's
process type is its name. Heroku runs each command with bash and foreman and honcho with sh, so a command
line is shell syntax: one that uses the shell (variables, `&&`, pipes, redirections, globs, `cd`, a leading
`NAME=value`) is written as that string with `shell: true`; one made of plain words only is written as its
argv list, which means the same and runs the program itself, without a shell in between (one process
fewer, and the stop signal reaches it directly). sh on this host is not always bash: bash-only syntax is
for the user to check.

foreman and honcho give each process type a PORT (5000, 5100, 5200, ... in file order): a command that
uses $PORT gets that value in its env, with a note. Heroku's `release` process type runs once before a
release starts: it becomes a Job, and every other process waits for it to complete. The .env file foreman
and honcho read beside the Procfile, when there is one, becomes envFrom.
"""

from __future__ import annotations

import re

from ...core.errors import Location
from .result import Collector, Conversion, JSONDict, Options, document
from .values import literal, plain_words

# foreman's and honcho's rule for a line: a process type, a colon, a command (other lines are not theirs).
_LINE = re.compile(r"([A-Za-z0-9_-]+):[ \t]*(.*)")
_PORT = re.compile(r"\$(PORT\b|\{PORT[}:])")
_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_BASE_PORT, _PORT_STEP = 5000, 100
_SHOWN = 5  # wrong lines listed one by one; past these, a file is most likely not a Procfile at all
# Variables every replica has (README: What a replica's environment holds); PORT is written below.
_GIVEN = {"PORT", "PATH", "LANG", "HOME", "USER", "LOGNAME", "SHELL", "ORCH_NAME", "ORCH_NAMESPACE", "ORCH_REPLICA"}


def convert(text: str, file: str, options: Options) -> Conversion:
    found = Collector(file)
    entries: list[tuple[str, str, Location]] = []
    wrong, last = 0, Location(file)
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = Location(file, number, 1)
        match = _LINE.fullmatch(line.rstrip())
        if match is None or not match.group(2).strip():
            wrong, last = wrong + 1, where
            if wrong <= _SHOWN:
                hint = " (indented: a YAML file? give --from compose or --from pm2)" if line[:1].isspace() else ""
                found.problem(where, "", "not a Procfile line: expected `name: command`" + hint)
            continue
        entries.append((match.group(1), match.group(2).strip(), where))
    if wrong > _SHOWN:
        found.problem(last, "", f"this and {wrong - _SHOWN - 1} more lines that are not `name: command`: is this a "
                      "Procfile?")
    if not entries and not found.problems:
        found.problem(Location(file), "", "empty: no `name: command` lines to convert")
    names = [(found.name(raw, where, raw), raw, command, where) for raw, command, where in entries]
    release = [name for name, raw, _, _ in names if raw == "release"]
    documents: list[JSONDict] = []
    for index, (name, raw, command, where) in enumerate(names):
        spec = _command(command)
        if options.dotenv:
            spec["envFrom"] = [{"file": options.dotenv}]
        variables = sorted(set(_VARIABLE.findall(command)) - _GIVEN)
        if _PORT.search(command):
            port = str(_BASE_PORT + _PORT_STEP * index)
            spec["env"] = {"PORT": port}
            found.note(where, raw, f"uses $PORT, which foreman and honcho set: written as env PORT={port} "
                       f"(their value for the {_ordinal(index + 1)} process type)")
        if variables:
            found.note(where, raw, "uses " + ", ".join(f"${v}" for v in variables) + ": processes do not inherit "
                       "the environment of the shell that starts orchestrator, so set "
                       + ("them" if len(variables) > 1 else "it") + " in env"
                       + (f" or {options.dotenv}" if options.dotenv else "") + " (or pass it with --pass-env)")
        if raw == "release":
            spec["backoffLimit"] = 0  # a failed release phase is not retried: the release fails
            found.note(where, raw, "Heroku's release phase: a Job run once, which every other process waits for "
                       "(dependsOn condition completed)")
            documents.append(document("Job", name, spec, options.namespace))
            continue
        spec["restartPolicy"] = "Always"
        if release:
            spec["dependsOn"] = [{"name": release[0], "condition": "completed"}]
        documents.append(document("Process", name, spec, options.namespace))
    return found.finish(documents)


def _command(line: str) -> JSONDict:
    words = plain_words(line)
    if words is not None:
        return {"command": words}
    return {"command": literal(line), "shell": True}  # ${X} is for sh to expand when it runs, not for apply


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
