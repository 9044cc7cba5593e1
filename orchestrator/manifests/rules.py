"""The rules that JSON Schema cannot say, and the checks of specs sent through the API (the same schema as
manifests: nothing runs unvalidated).

NUL characters (no command line or environment can carry one), an empty program name (only `prefixItems`
could say "the first item", and ajv's strict mode refuses an open tuple), a program name with a space (one
string split wrongly, unless a file of that name exists), backoff bounds and autoscale min and max (one value
against another), log sizes and limits (a quantity's value), duplicate dependencies (items alike by one
field), and log probe patterns RE2 cannot match in linear time. Rules the schemas do say (a string command
needs `shell: true`, a shell command is one string, replicas or autoscale, one action per probe) are theirs,
in words by explain.py, so that editors and CI tools flag them too.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from ..core.errors import Location, Problem
from ..core.model import Backoff, ProcessSpec
from ..core.units import parse_cpu, parse_quantity
from .codec import API_VERSION, manifest_document
from .documents import Document, FieldPath, dotted
from .explain import rule_words
from .schema import full_validator, is_valid


def check_spec(spec: ProcessSpec, where: str = "<request>") -> list[Problem]:
    """Problems of a spec that did not come from a manifest file (the API's clients): the daemon checks
    what it is sent against the same schema, so that nothing it runs was not validated."""
    document = manifest_document(spec)
    location = Location(where)
    problems = []
    if not is_valid(API_VERSION, spec.kind.value, document):
        validator = full_validator(API_VERSION, spec.kind.value)
        for error in validator.iter_errors(document):
            broken = rule_words(validator.schema, error, document)
            path, message = (broken[0], broken[1]) if broken else (tuple(error.absolute_path), error.message)
            problems.append(Problem(location, f"{spec.key}: {dotted(path)}", message))
    problems += [Problem(location, f"{spec.key}: {dotted(path)}", "contains a NUL character")
                 for path in _nul_paths(document)]
    problems += [Problem(location, f"{spec.key}: {dotted(path)}", _EMPTY_PROGRAM)
                 for path in _empty_programs(document.get("spec", {}), ("spec",))]
    problems += [Problem(location, f"{spec.key}: {dotted(path)}", message)
                 for path, message in _pattern_problems(document.get("spec", {}), ("spec",))]
    return list(dict.fromkeys(problems))


def _pattern_problems(spec: Any, path: FieldPath) -> list[tuple[FieldPath, str]]:
    """Log probe patterns that RE2 refuses (each matched in linear time, so none can stall the daemon)."""
    from ..core.patterns import compile_pattern

    found = []
    probes = spec.get("probes") if isinstance(spec, dict) else None
    for kind, probe in (probes.items() if isinstance(probes, dict) else ()):
        log = probe.get("log") if isinstance(probe, dict) else None
        pattern = log.get("pattern") if isinstance(log, dict) else None
        if isinstance(pattern, str) and pattern:
            try:
                compile_pattern(pattern)
            except ValueError as error:
                found.append((path + ("probes", kind, "log", "pattern"), str(error)))
    return found


_EMPTY_PROGRAM = "the program to run must not be empty (its arguments may be: `--save \"\"`)"


def _empty_programs(spec: Any, path: FieldPath) -> list[FieldPath]:
    """Paths of argv lists (command, exec probes, hooks) whose program is an empty string. Empty arguments
    are fine (execve takes them and servers use them); an empty program name can never run."""
    if not isinstance(spec, dict):
        return []
    argvs: list[tuple[FieldPath, Any]] = [(path + ("command",), spec.get("command"))]
    probes = spec.get("probes")
    for kind, probe in (probes.items() if isinstance(probes, dict) else ()):
        if isinstance(probe, dict) and isinstance(probe.get("exec"), dict):
            argvs.append((path + ("probes", kind, "exec", "command"), probe["exec"].get("command")))
    hooks = spec.get("hooks")
    for kind, hook in (hooks.items() if isinstance(hooks, dict) else ()):
        if isinstance(hook, dict):
            argvs.append((path + ("hooks", kind, "exec"), hook.get("exec")))
    return [where + (0,) for where, argv in argvs if isinstance(argv, list) and argv and argv[0] == ""]


def _nul_paths(value: Any, path: FieldPath = ()) -> list[FieldPath]:
    """Paths of strings holding a NUL character, which no command line or environment can carry."""
    if isinstance(value, str):
        return [path] if "\0" in value else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nul_paths(k, path) + _nul_paths(v, path + (str(k),))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nul_paths(v, path + (i,))]
    return []


def check_rules(doc: Document, spec: dict[str, Any]) -> list[Problem]:
    """The rules JSON Schema cannot say (the module's docstring lists them), each problem located."""
    problems: list[Problem] = []
    for path in _nul_paths(spec, ("spec",)):
        problems.append(Problem(doc.at(path), dotted(path), "contains a NUL character"))
    for path in _empty_programs(spec, ("spec",)):
        problems.append(Problem(doc.at(path), dotted(path), _EMPTY_PROGRAM))
    for path, message in _pattern_problems(spec, ("spec",)):
        problems.append(Problem(doc.at(path), dotted(path), message))
    command, shell = spec.get("command"), spec.get("shell", False)
    program = command[0] if isinstance(command, list) and command and isinstance(command[0], str) else ""
    if shell is not True and any(c.isspace() for c in program) and not os.path.isfile(program):
        # ["python3 app.py"]: execve looks for a program called "python3 app.py", and never finds it.
        words = program.split()
        problems.append(Problem(
            doc.at(("spec", "command", 0)), "spec.command[0]",
            f"the program {program!r} holds a space: give each word its own item ({words!r}), or set shell: true"))
    backoff = spec.get("backoff")
    if isinstance(backoff, dict):
        initial = backoff.get("initialSeconds", Backoff.initial_seconds)
        ceiling = backoff.get("maxSeconds", Backoff.max_seconds)
        # Only between values the schema accepted, so one mistake is not reported twice.
        numbers = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf for v in (initial, ceiling)
        )
        if numbers and initial > ceiling:
            where: FieldPath = (
                ("spec", "backoff", "initialSeconds") if "initialSeconds" in backoff else ("spec", "backoff")
            )
            problems.append(
                Problem(
                    doc.at(where), dotted(where), f"initialSeconds ({initial}) is larger than maxSeconds ({ceiling})"
                )
            )
    logs = spec.get("logs")
    size = logs.get("maxBytes") if isinstance(logs, dict) else None
    # Only a size the schema's pattern accepted: one mistake is reported once.
    if isinstance(size, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|K|M|G|T)?", size):
        at: FieldPath = ("spec", "logs", "maxBytes")
        try:
            if parse_quantity(size) < 1:
                problems.append(Problem(doc.at(at), dotted(at), f"must be at least 1 byte, got {size!r}"))
        except ValueError as error:
            problems.append(Problem(doc.at(at), dotted(at), str(error)))
    limits = spec.get("resources", {}).get("limits") if isinstance(spec.get("resources"), dict) else None
    if isinstance(limits, dict):
        for limit, parse in (("memory", parse_quantity), ("cpu", parse_cpu)):
            value = limits.get(limit)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                try:
                    parse(value)
                except ValueError as error:
                    limit_path: FieldPath = ("spec", "resources", "limits", limit)
                    problems.append(Problem(doc.at(limit_path), dotted(limit_path), str(error)))
    auto = spec.get("autoscale")
    if isinstance(auto, dict):
        low, high = auto.get("min"), auto.get("max")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            problems.append(Problem(doc.at(("spec", "autoscale", "min")), "spec.autoscale.min",
                                    f"min ({low}) is larger than max ({high})"))
    seen: dict[str, int] = {}
    listed: FieldPath
    for index, dependency in enumerate(spec.get("dependsOn") or ()):
        name = dependency.get("name") if isinstance(dependency, dict) else None
        if isinstance(name, str):
            first = seen.setdefault(name, index)
            if first != index:
                listed = ("spec", "dependsOn", index, "name")
                message = f"{name!r} is already listed at spec.dependsOn[{first}]"
                problems.append(Problem(doc.at(listed), dotted(listed), message))
    return problems
