"""A supervisord configuration (supervisord.conf, conf.d/*.conf) as orchestrator manifests.

Each [program:x] section is a Process. supervisord runs a command without a shell, split into words as
shlex splits them, after its `%(name)s` expansions: program_name, group_name, here (the file's folder),
numprocs and process_num are expanded here as supervisord would; `%(ENV_X)s` (supervisord's environment
when it reads the file) is written `${X}`, which the manifest loader takes from the environment of
`orchestrator apply`; process_num of a pool (each replica's own number) exists only when the replica
starts, so a command that uses it runs with `sh -c 'exec ...'` and reads $ORCH_REPLICA there.

Mapped: command, directory, environment (`KEY="val",KEY2=val`, with [supervisord]'s environment under
each program's), autorestart (true, false, unexpected -> Always, Never, OnFailure), exitcodes
(successExitCodes), numprocs (replicas), autostart=false (replicas 0), stopsignal, stopwaitsecs, priority
(start order: supervisord starts lower numbers first, orchestrator higher ones; the levels are written as 2,
1, 0, -1, -2, ..., which leave the nice value alone for up to five levels), startsecs (a run that long
resets the backoff), user, stdout_logfile_maxbytes and _backups (log rotation), and [group:x] as the label
group=x. The file is read as a format of its own (sections, `key = value`, indented continuation lines,
`;` comments), with the line of every setting, never with Python's configparser interpolation.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from typing import NamedTuple

from ...core.errors import Location
from .result import Collector, Conversion, JSONDict, Options, document
from .values import duration, is_env_name, literal, seconds, signal_name, size, whole

_SECTION = re.compile(r"\[([^\]]*)\]\s*(?:[;#].*)?")
_INLINE_COMMENT = re.compile(r"\s[;#].*$")
_EXPANSION = re.compile(r"%%|%\(([A-Za-z_][A-Za-z0-9_]*)\)([-#0 +]{0,3}[0-9]{0,3}(?:\.[0-9]{1,3})?[sdifxXo])")
_PRINTF = re.compile(r"0?[0-9]{0,3}[ds]")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_DEFAULT_PRIORITY = 999
_CONTROL = {"unix_http_server", "inet_http_server", "supervisorctl"}
_OWN = "a setting of supervisord itself"
_REASONS = {
    "startretries": "orchestrator retries with its backoff; set maxRestarts to give up after some",
    "stdout_logfile": "each replica's output goes to its log file in the state dir: `orchestrator logs`",
    "stderr_logfile": "stdout and stderr go to one log file per replica (`orchestrator logs`)",
    "stderr_logfile_maxbytes": "stdout and stderr go to one log file, rotated as stdout_logfile_maxbytes says",
    "stderr_logfile_backups": "stdout and stderr go to one log file, rotated as stdout_logfile_backups says",
    "umask": "processes inherit the orchestrator's umask",
    "serverurl": "processes talk to orchestrator with its command line",
    "process_name": "replicas are told apart by ORCH_REPLICA, 0..n-1",
    "numprocs_start": "replicas are numbered from 0 (ORCH_REPLICA)",
}


class _Setting(NamedTuple):
    value: str
    line: int


class _Section(NamedTuple):
    name: str
    line: int
    settings: dict[str, _Setting]


def convert(text: str, file: str, options: Options) -> Conversion:
    found = Collector(file)
    sections = _sections(text, file, found)
    programs = [s for s in sections if s.name.startswith("program:")]
    if not programs and not found.problems:
        found.problem(Location(file), "", "no [program:NAME] sections: nothing to convert (not a supervisord "
                      "configuration?)" if text.strip() else "empty: no [program:NAME] sections to convert")
    if found.problems:
        return found.finish([])
    shared_env: dict[str, str] = {}
    groups: dict[str, str] = {}  # program -> group
    for section in sections:
        if section.name == "supervisord":
            shared_env = _daemon(section, file, found, options.here)
        elif section.name.startswith("group:"):
            _group(section, file, found, groups, {p.name[len("program:"):] for p in programs})
        elif not section.name.startswith("program:"):
            found.unmapped(Location(file, section.line, 1), f"[{section.name}]", _section_reason(section.name))
    here = options.here
    priorities = sorted({_priority(p) for p in programs})
    documents = []
    for section in programs:
        program = section.name[len("program:"):]
        where = Location(file, section.line, 1)
        name = found.name(program, where, f"[{section.name}]")
        spec = _Program(section, file, found, here, groups.get(program, program)).spec(shared_env)
        if spec is None:
            continue
        if len(priorities) > 1:
            spec["priority"] = max(-100, 2 - priorities.index(_priority(section)))
        labels = {"group": groups[program]} if program in groups else None
        documents.append(document("Process", name, spec, options.namespace, labels))
    if len(priorities) > 5:
        found.note(Location(file), "priority", f"{len(priorities)} priority levels: those past the fifth are "
                   "written below -2, which also lowers their nice value")
    return found.finish(documents)


def _section_reason(name: str) -> str:
    if name in _CONTROL or name.startswith("rpcinterface:"):
        return "supervisord's control interface: orchestrator's is its own command line and socket"
    if name == "include":
        return "included files are not read: convert each of them on its own"
    if name.startswith("eventlistener:"):
        return "orchestrator has no event listeners: `orchestrator events -w -o json` streams its events"
    if name.startswith("fcgi-program:"):
        return "orchestrator does not own FastCGI sockets"
    return "not a section orchestrator knows"


def _priority(section: _Section) -> int:
    setting = section.settings.get("priority")
    value = whole(setting.value) if setting is not None else None
    return value if value is not None else _DEFAULT_PRIORITY


# -- reading the file ---------------------------------------------------------------------------------------------


def _sections(text: str, file: str, found: Collector) -> list[_Section]:
    """Sections with their settings (keys in lower case, as supervisord reads them) and lines."""
    sections: list[_Section] = []
    seen: dict[str, int] = {}
    key: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped[0] in ";#":
            key = None if not stripped else key
            continue
        where = Location(file, number, 1)
        if line[0].isspace() and key is not None and sections:
            setting = sections[-1].settings[key]
            sections[-1].settings[key] = _Setting(setting.value + "\n" + _value(stripped), setting.line)
            continue
        header = _SECTION.fullmatch(stripped)
        if header is not None:
            name = header.group(1).strip()
            if name in seen:
                found.problem(where, f"[{name}]", f"section [{name}] already begins at line {seen[name]}")
            seen[name] = number
            sections.append(_Section(name, number, {}))
            key = None
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if not sections:  # most likely not a supervisord configuration at all: one problem says so
            found.problem(where, "", "a setting before any [section]: is this a supervisord configuration?")
            return sections
        if cut < 0:
            found.problem(where, "", "not a supervisord line: expected [section] or key = value")
            if len(found.problems) >= 5:
                found.problem(where, "", "stopped reading here: is this a supervisord configuration?")
                return sections
            key = None
            continue
        key = line[:cut].strip().lower()
        settings = sections[-1].settings
        if key in settings:
            found.problem(where, f"[{sections[-1].name}] {key}", f"{key} is already set at line {settings[key].line}")
        settings[key] = _Setting(_value(line[cut + 1:].strip()), number)
    return sections


def _value(text: str) -> str:
    """A value without its inline comment; a `${` in it is text (written so for the manifest loader)."""
    return literal(_INLINE_COMMENT.sub("", text).strip())


def _boolean(text: str) -> bool | None:
    word = text.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def _expand(text: str, static: Mapping[str, str | int], at_start: Callable[[str, str], str | None] | None,
            ) -> tuple[list[tuple[str, str | None]] | None, str]:
    """supervisord's `%(name)s` expansions of `text`: pieces of text to write, each with None, or "" with
    the sh expression of a value known only when the process starts (given `at_start`, which knows them);
    or None and why not. `%(ENV_X)s`, supervisord's environment when it reads the file, is the loader's
    `${X}`: the environment of `orchestrator apply` when the manifests are read."""
    pieces: list[tuple[str, str | None]] = []
    at = 0
    for match in _EXPANSION.finditer(text):
        pieces.append((text[at:match.start()], None))
        at = match.end()
        if match.group(0) == "%%":
            pieces.append(("%", None))
            continue
        name, form = match.group(1), match.group(2)
        if name in static:
            try:
                pieces.append((literal(("%" + form) % static[name]), None))
            except (TypeError, ValueError):
                return None, f"%({name}){form} cannot be formatted"
            continue
        if name.startswith("ENV_") and is_env_name(name[4:]) and form == "s":
            pieces.append((f"${{{name[4:]}}}", None))
            continue
        shell = at_start(name, form) if at_start is not None else None
        if shell is None:
            known = name == "process_num" or name in ("program_name", "group_name", "numprocs")
            return None, (f"%({name}){form} is known only when supervisord starts the process"
                          + ("; each replica's number is $ORCH_REPLICA" if name == "process_num" else "")
                          if known else f"supervisord's %({name}){form} has no equivalent here")
        pieces.append(("", shell))
    pieces.append((text[at:], None))
    return pieces, ""


def _pairs(text: str) -> list[tuple[str, str]] | None:
    """supervisord's `KEY="val",KEY2=val` (values quoted with " or ' may hold commas), or None."""
    pairs: list[tuple[str, str]] = []
    at, end = 0, len(text)
    while at < end:
        equals = text.find("=", at)
        if equals < 0 or not text[at:equals].strip():
            return None
        key = text[at:equals].strip()
        at = equals + 1
        while at < end and text[at].isspace():
            at += 1
        if at < end and text[at] in "'\"":
            close = text.find(text[at], at + 1)
            if close < 0:
                return None
            value, at = text[at + 1:close], close + 1
            while at < end and text[at].isspace():
                at += 1
            if at < end and text[at] != ",":
                return None
        else:
            comma = text.find(",", at)
            comma = end if comma < 0 else comma
            value, at = text[at:comma].strip(), comma
        pairs.append((key, value))
        at += 1  # past the comma
    return pairs


def _daemon(section: _Section, file: str, found: Collector, here: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, setting in section.settings.items():
        where, path = Location(file, setting.line, 1), f"[supervisord] {key}"
        if key != "environment":
            found.unmapped(where, path, _OWN)
            continue
        pairs = _pairs(setting.value)
        if pairs is None:
            found.problem(where, path, "expected KEY=value pairs separated by commas")
            continue
        for name, value in pairs:
            pieces, why = _expand(value, {"here": here}, None)
            if not is_env_name(name):
                found.unmapped(where, f"{path} {name}", "not a variable name orchestrator can set")
            elif pieces is None:
                found.unmapped(where, f"{path} {name}", why)
            else:
                env[name] = "".join(text for text, _ in pieces)
    return env


def _group(section: _Section, file: str, found: Collector, groups: dict[str, str], programs: set[str]) -> None:
    group = section.name[len("group:"):]
    for key, setting in section.settings.items():
        where, path = Location(file, setting.line, 1), f"[{section.name}] {key}"
        if key != "programs":
            found.unmapped(where, path, "groups are labels here: `orchestrator restart -l group=NAME`")
            continue
        for member in (p.strip() for p in setting.value.split(",")):
            if member in programs:
                groups[member] = group
            elif member:
                found.unmapped(where, path, f"there is no [program:{member}]")


# -- one program --------------------------------------------------------------------------------------------------


class _Program:
    def __init__(self, section: _Section, file: str, found: Collector, here: str, group: str) -> None:
        self.section, self.file, self.found = section, file, found
        self.program = section.name[len("program:"):]
        self.taken: set[str] = set()
        count = whole(section.settings["numprocs"].value) if "numprocs" in section.settings else 1
        start = whole(section.settings["numprocs_start"].value) if "numprocs_start" in section.settings else 0
        self.numprocs = count if count is not None and count >= 1 else 1
        self.start = start if start is not None and start >= 0 else 0
        self.static: dict[str, str | int] = {"program_name": self.program, "group_name": group, "here": here,
                                             "numprocs": self.numprocs}
        if self.numprocs == 1:
            self.static["process_num"] = self.start

    def take(self, key: str) -> _Setting | None:
        self.taken.add(key)
        return self.section.settings.get(key)

    def where(self, key: str) -> tuple[Location, str]:
        setting = self.section.settings.get(key)
        return Location(self.file, setting.line if setting else self.section.line, 1), f"[{self.section.name}] {key}"

    def unmapped(self, key: str, reason: str) -> None:
        self.found.unmapped(*self.where(key), reason)

    def spec(self, shared_env: dict[str, str]) -> JSONDict | None:
        command = self.take("command")
        if command is None or not command.value:
            self.found.unmapped(Location(self.file, self.section.line, 1), f"[{self.section.name}]",
                                "no command: supervisord would refuse it too")
            return None
        spec = self.command(command.value)
        if spec is None:
            return None
        directory = self.take("directory")
        if directory is not None:
            folder = self.expanded(directory.value, "directory")
            if folder:
                spec["workingDir"] = folder
        env = dict(shared_env)
        env.update(self.environment())
        if env:
            spec["env"] = env
        self.user(spec)
        self.pool(spec)
        self.restarts(spec)
        self.stopping(spec)
        self.logs(spec)
        for key, setting in self.section.settings.items():
            if key not in self.taken:
                self.found.unmapped(Location(self.file, setting.line, 1), f"[{self.section.name}] {key}",
                                    _REASONS.get(key, "no equivalent in orchestrator"))
        return spec

    # -- the program ----------------------------------------------------------------------------------------------

    def command(self, text: str) -> JSONDict | None:
        where, path = self.where("command")
        pieces = self.pieces(text, "command", runtime=True)
        if pieces is None:
            return None
        if all(shell is None for _, shell in pieces):
            try:
                return {"command": shlex.split("".join(literal for literal, _ in pieces))}
            except ValueError as error:
                self.found.problem(where, path, f"cannot split this into words as supervisord does: {error}")
                return None
        # Mark each run-time value, split the line as supervisord would, then write each word for sh.
        marked = "".join(literal if shell is None else f"\ue000{i}\ue001" for i, (literal, shell) in enumerate(pieces))
        try:
            words = shlex.split(marked)
        except ValueError as error:
            self.found.problem(where, path, f"cannot split this into words as supervisord does: {error}")
            return None
        written = []
        for word in words:
            parts = re.split("\ue000([0-9]+)\ue001", word)
            out = "".join(shlex.quote(part) if i % 2 == 0 and part else f'"{pieces[int(part)][1]}"' if i % 2 else ""
                          for i, part in enumerate(parts))
            written.append(out or "''")
        self.found.note(where, path, "uses each replica's own number: written as sh -c 'exec ...', with "
                        "$ORCH_REPLICA for process_num")
        return {"command": "exec " + " ".join(written), "shell": True}

    def pieces(self, text: str, key: str, runtime: bool) -> list[tuple[str, str | None]] | None:
        """The text as pieces to write and, where an expansion is known only at start, the sh expression."""
        pieces, why = _expand(text, self.static, self.at_start if runtime else None)
        if pieces is None:
            self.unmapped(key, why)
        return pieces

    def at_start(self, name: str, form: str) -> str | None:
        if name == "process_num" and _PRINTF.fullmatch(form):
            number = "$ORCH_REPLICA" if not self.start else f"$((ORCH_REPLICA + {self.start}))"
            return number if form in ("d", "s") else f"$(printf '%{form}' {number})"
        return None

    def expanded(self, text: str, key: str) -> str | None:
        pieces = self.pieces(text, key, runtime=False)
        return None if pieces is None else "".join(literal for literal, _ in pieces)

    def environment(self) -> dict[str, str]:
        setting = self.take("environment")
        if setting is None:
            return {}
        where, path = self.where("environment")
        pairs = _pairs(setting.value)
        if pairs is None:
            self.found.problem(where, path, 'expected KEY=value pairs separated by commas (KEY="a,b" to quote)')
            return {}
        env: dict[str, str] = {}
        for name, value in pairs:
            if not is_env_name(name):
                self.found.unmapped(where, f"{path} {name}", "not a variable name orchestrator can set")
                continue
            pieces = self.pieces(value, "environment", runtime=False)
            if pieces is not None:
                env[name] = "".join(literal for literal, _ in pieces)
        return env

    def user(self, spec: JSONDict) -> None:
        setting = self.take("user")
        if setting is not None and setting.value:
            spec["user"] = setting.value

    # -- how many, how restarted, how stopped ---------------------------------------------------------------------

    def pool(self, spec: JSONDict) -> None:
        for key, least in (("numprocs", 1), ("numprocs_start", 0)):
            setting = self.section.settings.get(key)
            given = whole(setting.value) if setting is not None else least
            if given is None or given < least:
                self.unmapped(key, f"expected a whole number, {least} or more")
        if "numprocs" in self.section.settings:
            self.taken.add("numprocs")
            if self.numprocs != 1:
                spec["replicas"] = min(self.numprocs, 10000)
        if self.start and "%(process_num)" not in self.section.settings["command"].value:
            self.taken.discard("numprocs_start")  # reported: the replicas are numbered from 0
        else:
            self.taken.add("numprocs_start")
        autostart = self.take("autostart")
        if autostart is not None and _boolean(autostart.value) is False:
            spec["replicas"] = 0
            self.found.note(*self.where("autostart"), "replicas 0: defined but not started until "
                            f"`orchestrator scale {self.program} --replicas {self.numprocs}`")

    def restarts(self, spec: JSONDict) -> None:
        setting = self.take("autorestart")
        word = setting.value.strip().lower() if setting is not None else "unexpected"
        if word == "unexpected":
            spec["restartPolicy"] = "OnFailure"
        elif _boolean(word) is not None:
            spec["restartPolicy"] = "Always" if _boolean(word) else "Never"
        else:
            self.unmapped("autorestart", "expected true, false or unexpected")
        codes = self.take("exitcodes")
        if codes is not None:
            numbers = [whole(code) for code in codes.value.split(",")]
            if any(n is None or not 0 <= n <= 255 for n in numbers):
                self.unmapped("exitcodes", "expected exit codes 0..255 separated by commas")
            else:
                spec["successExitCodes"] = list(dict.fromkeys(n for n in numbers if n is not None))
        startsecs = self.take("startsecs")
        if startsecs is not None:
            time = duration(startsecs.value)
            if time is None:
                self.unmapped("startsecs", "expected a number of seconds")
            elif time > 0:
                spec["backoff"] = {"resetAfterSeconds": seconds(time)}
        self.take("priority")  # written as the start order, across programs

    def stopping(self, spec: JSONDict) -> None:
        stop: JSONDict = {}
        signal = self.take("stopsignal")
        if signal is not None:
            name = signal_name(signal.value)
            if name is None:
                self.unmapped("stopsignal", "orchestrator stops with TERM, INT, QUIT, HUP, KILL, USR1 or USR2")
            else:
                stop["signal"] = name
        wait = self.take("stopwaitsecs")
        if wait is not None:
            time = duration(wait.value)
            if time is None:
                self.unmapped("stopwaitsecs", "expected a number of seconds")
            else:
                stop["timeoutSeconds"] = seconds(time)
        if stop:
            spec["shutdown"] = stop
        for key in ("stopasgroup", "killasgroup"):
            setting = self.take(key)
            if setting is not None and _boolean(setting.value) is not True:
                self.unmapped(key, "orchestrator always signals the whole process group")

    def logs(self, spec: JSONDict) -> None:
        logs: JSONDict = {}
        largest = self.take("stdout_logfile_maxbytes")
        if largest is not None:
            limit = size(largest.value)
            if limit is None:
                self.unmapped("stdout_logfile_maxbytes", "orchestrator always rotates: give a size such as 50MB")
            else:
                logs["maxBytes"] = limit
        backups = self.take("stdout_logfile_backups")
        if backups is not None:
            keep = whole(backups.value)
            if keep is None or not 0 <= keep <= 100:
                self.unmapped("stdout_logfile_backups", "expected a whole number from 0 to 100")
            else:
                logs["keep"] = keep
        if logs:
            spec["logs"] = logs
        merged = self.take("redirect_stderr")
        if merged is not None and _boolean(merged.value) is not True:
            self.unmapped("redirect_stderr", "stdout and stderr always go to one log file per replica")
