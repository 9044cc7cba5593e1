"""The spellings the source formats share, turned into what a manifest field takes: durations (`1m30s`,
`500ms`), sizes (`512m`, `50MB`, `300M`), signals (`TERM`, `SIGTERM`, `15`), environment and label names,
and whether a command line needs a shell to mean what it says.

Pure: each function takes text and returns a value, or None when the spelling is not one it knows (the
caller says where, and why that setting is not mapped). Nothing here reads a file or the environment.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from typing import Any

# The signals a manifest's shutdown.signal may name (schemas/process.v1.json), and their numbers on Linux.
SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2")
_SIGNAL_NUMBERS = {"1": "SIGHUP", "2": "SIGINT", "3": "SIGQUIT", "9": "SIGKILL", "10": "SIGUSR1", "12": "SIGUSR2",
                   "15": "SIGTERM"}

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?|\.[0-9]+")
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([kmgt]?)(i?b)?", re.IGNORECASE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
NAME_RULE = "[a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters"


def number(value: object) -> float | None:
    """A finite number given as a number or as its digits; None for anything else (booleans too)."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            found = float(value)
        elif isinstance(value, str) and len(value) <= 64 and _NUMBER.fullmatch(value.strip()):
            found = float(value.strip())
        else:
            return None
    except OverflowError:  # an int past any float: no setting means that
        return None
    return found if math.isfinite(found) and abs(found) < 1e15 else None


def whole(value: object) -> int | None:
    """A whole number given as a number or as its digits (`"3"`, `3`, `3.0`), else None."""
    found = number(value)
    return int(found) if found is not None and found == int(found) else None


def duration(value: object, bare_unit: float = 1.0) -> float | None:
    """Seconds of a Go-style duration (`1m30s`, `500ms`, `2h`), or of a bare number counted in `bare_unit`
    seconds (1 for Compose and supervisord, 0.001 for PM2's milliseconds). None when it is neither."""
    bare = number(value)
    if bare is not None:
        return bare * bare_unit
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    total, at = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != at:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        at = match.end()
    return total if at == len(text) and at else None


def seconds(value: float) -> int | float:
    """A duration as a manifest writes it: a whole number when it is one (10, not 10.0), else rounded to ms."""
    rounded = round(value, 3)
    return int(rounded) if rounded == int(rounded) else rounded


def size(value: object) -> int | str | None:
    """A size in bytes as a manifest takes it, from `512m`, `1g`, `50MB`, `300M`, `200K` or a bare number of
    bytes. Docker, supervisord and PM2 all count these in powers of 1024, so `512m` is written `512Mi`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if not isinstance(value, str):
        return None
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        return None
    digits, prefix = match.group(1), match.group(2).upper()
    if not prefix:
        amount = float(digits)
        return int(amount) if amount >= 1 else None
    if float(digits) <= 0:
        return None
    return f"{digits}{prefix}i"


def signal_name(value: object) -> str | None:
    """`TERM`, `SIGTERM`, `sigterm` or `15` as the manifest's SIGTERM; None for a signal it cannot send."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    if text in _SIGNAL_NUMBERS:
        return _SIGNAL_NUMBERS[text]
    name = text if text.startswith("SIG") else "SIG" + text
    return name if name in SIGNALS else None


def text_of(value: object, raw: str | None = None) -> str | None:
    """A scalar as the text a program would see in its environment: numbers as written (`1.10`, `0755`),
    booleans as `true`/`false`; None for null, lists and mappings."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return raw if raw is not None else str(value)
    return None


def command_words(value: object, raws: Mapping[Any, str], path: tuple[Any, ...]) -> tuple[list[str], str]:
    """A command given as one string (split into words as a shell would split it, without running one) or
    as a list of scalars (numbers as written); and what is wrong with it, "" when nothing."""
    if value is None:
        return [], ""
    if isinstance(value, str):
        try:
            return shlex.split(value), ""
        except ValueError as error:
            return [], f"cannot split this into words as a shell would: {error}"
    if isinstance(value, list) and all(text_of(item) is not None for item in value):
        return [str(text_of(item, raws.get(path + (i,)))) for i, item in enumerate(value)], ""
    return [], "expected a string or a list of strings"


def is_env_name(name: str) -> bool:
    return _ENV_NAME.fullmatch(name) is not None


def is_label_key(key: str) -> bool:
    return len(key) <= 317 and _LABEL_KEY.fullmatch(key) is not None


def is_name(name: str) -> bool:
    return len(name) <= 63 and _NAME.fullmatch(name) is not None


def sanitised(raw: str) -> str:
    """A name the manifest accepts: lower case, every run of other characters as one `-`, trimmed to 63."""
    name = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    return name[:63].rstrip("-") or "app"


# Words of a command line that only a shell gives a meaning to: with one of them, the line runs with sh -c.
_SHELL_CHARACTERS = set("$`|&;<>()*?[]{}~!#\\\n\r")
_SHELL_WORDS = {
    ".", ":", "[", "[[", "alias", "bg", "break", "builtin", "case", "cd", "command", "continue", "declare", "do",
    "done", "elif", "else", "esac", "eval", "exec", "exit", "export", "fg", "fi", "for", "function", "getopts",
    "hash", "if", "jobs", "let", "local", "read", "readonly", "return", "select", "set", "shift", "source", "then",
    "time", "times", "trap", "type", "typeset", "ulimit", "umask", "unalias", "unset", "until", "wait", "while",
}


def literal(text: str) -> str:
    """Text written into a manifest so that it means itself: the loader substitutes `${NAME}` in every value
    (manifests/interpolate.py), where `$${` is a literal `${` (and no other `$` is special)."""
    return text.replace("${", "$${")


def plain_words(command: str) -> list[str] | None:
    """The argv of a command line that means the same with or without a shell, or None when it needs one:
    variables, pipes, redirections, globs, `&&`, a shell builtin (`cd`, `exec`), a leading `NAME=value`
    assignment, or quoting shlex cannot read as sh would."""
    if any(c in _SHELL_CHARACTERS for c in command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:  # an unclosed quote: sh will say so, in the process's log
        return None
    if not words or words[0] in _SHELL_WORDS or "=" in words[0] or not words[0]:
        return None
    return words
