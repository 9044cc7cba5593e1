"""The rules that JSON Schema cannot say, and the checks of specs sent through the API (the same schema as
manifests: nothing runs unvalidated).

NUL characters (no command line or environment can carry one), an empty program name (only `prefixItems`
could say "the first item", and ajv's strict mode refuses an open tuple), a program name with a space (one
string split wrongly, unless a file of that name exists), backoff bounds and autoscale min and max (one value
against another), log sizes, limits and a Job's requests (a quantity's value), duplicate dependencies (items alike by one
field), log probe patterns RE2 cannot match in linear time, and a Process's rollout and sockets: maxSurge and
maxUnavailable that come to 0 together, progressDeadlineSeconds within minReadySeconds, socket names listed
twice, ports and unix paths a socket cannot have, probes aimed at the process's own shared socket, and a placement's fields that belong to another mode (or
selector expressions without values). A listen
address used twice across documents is the loader's to find (listen_key); maxSurge without sockets is only a
warning (rollout_warnings), as `validate` gives them. Rules the schemas do say (a string command needs
`shell: true`, a shell command is one string, replicas or autoscale, one action per probe, rollingUpdate only
with RollingUpdate, mode only on unix sockets) are theirs, in words by explain.py, so that editors and CI tools
flag them too.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable
from typing import Any

from ..core.errors import Location, Problem
from ..core.model import Backoff, Kind, ProcessSpec, Strategy, StrategyType
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
    problems += [Problem(location, f"{spec.key}: {dotted(path)}", message)
                 for path, message in _rollout_problems(document.get("spec", {}), ("spec",))]
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


def check_rules(doc: Document, spec: dict[str, Any], at: FieldPath = ("spec",)) -> list[Problem]:
    """The rules JSON Schema cannot say (the module's docstring lists them), each problem located; `at` is where
    the spec is in the document (a CronJob's jobTemplate: spec.jobTemplate)."""
    problems: list[Problem] = []
    for path in _nul_paths(spec, at):
        problems.append(Problem(doc.at(path), dotted(path), "contains a NUL character"))
    for path in _empty_programs(spec, at):
        problems.append(Problem(doc.at(path), dotted(path), _EMPTY_PROGRAM))
    for path, message in _pattern_problems(spec, at):
        problems.append(Problem(doc.at(path), dotted(path), message))
    for path, message in _rollout_problems(spec, at):
        problems.append(Problem(doc.at(path), dotted(path), message))
    command, shell = spec.get("command"), spec.get("shell", False)
    program = command[0] if isinstance(command, list) and command and isinstance(command[0], str) else ""
    if shell is not True and any(c.isspace() for c in program) and not os.path.isfile(program):
        # ["python3 app.py"]: execve looks for a program called "python3 app.py", and never finds it.
        words = program.split()
        problems.append(Problem(
            doc.at((*at, "command", 0)), dotted((*at, "command", 0)),
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
                (*at, "backoff", "initialSeconds") if "initialSeconds" in backoff else (*at, "backoff")
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
        size_at: FieldPath = (*at, "logs", "maxBytes")
        try:
            if parse_quantity(size) < 1:
                problems.append(Problem(doc.at(size_at), dotted(size_at), f"must be at least 1 byte, got {size!r}"))
        except ValueError as error:
            problems.append(Problem(doc.at(size_at), dotted(size_at), str(error)))
    given = spec.get("resources")
    resources: dict[str, Any] = given if isinstance(given, dict) else {}
    for group in ("limits", "requests"):  # a Job's requests are quantities as its limits are
        quantities = resources.get(group)
        if not isinstance(quantities, dict):
            continue
        for limit, parse in (("memory", parse_quantity), ("cpu", parse_cpu)):
            value = quantities.get(limit)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                try:
                    parse(value)
                except ValueError as error:
                    limit_path: FieldPath = (*at, "resources", group, limit)
                    problems.append(Problem(doc.at(limit_path), dotted(limit_path), str(error)))
    auto = spec.get("autoscale")
    if isinstance(auto, dict):
        low, high = auto.get("min"), auto.get("max")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            problems.append(Problem(doc.at((*at, "autoscale", "min")), dotted((*at, "autoscale", "min")),
                                    f"min ({low}) is larger than max ({high})"))
    for path, message in _placement_problems(spec, at):
        problems.append(Problem(doc.at(path), dotted(path), message))
    seen: dict[str, int] = {}
    listed: FieldPath
    for index, dependency in enumerate(spec.get("dependsOn") or ()):
        name = dependency.get("name") if isinstance(dependency, dict) else None
        if isinstance(name, str):
            first = seen.setdefault(name, index)
            if first != index:
                listed = (*at, "dependsOn", index, "name")
                message = f"{name!r} is already listed at {dotted((*at, 'dependsOn', first))}"
                problems.append(Problem(doc.at(listed), dotted(listed), message))
    return problems


def _placement_problems(spec: dict[str, Any], at: FieldPath) -> list[tuple[FieldPath, str]]:
    """A placement's fields that belong to another mode, and selector expressions without (or with) values."""
    placement = spec.get("placement")
    if not isinstance(placement, dict):
        return []
    here: FieldPath = (*at, "placement")
    mode = placement.get("mode", "Each")
    problems: list[tuple[FieldPath, str]] = []
    for name in ("replicas", "maxPerNode", "lostAfterSeconds"):
        if name in placement and mode != "Spread":
            problems.append(((*here, name), f"is for mode Spread only (this placement's mode is {mode})"))
    if "onQuorumLoss" in placement and mode not in ("One", "Spread"):
        why = f"is for modes One and Spread only (this placement's mode is {mode})"
        problems.append(((*here, "onQuorumLoss"), why))
    if mode == "Spread":
        for name, why in (("replicas", "placement.replicas says how many the fleet runs"),
                          ("autoscale", "a Spread pool's size is placement.replicas")):
            if name in spec:
                problems.append(((*at, name), f"cannot go with placement mode Spread: {why}"))
    selector = placement.get("nodeSelector")
    expressions = selector.get("matchExpressions") if isinstance(selector, dict) else None
    for index, item in enumerate(expressions if isinstance(expressions, list) else ()):
        if not isinstance(item, dict):
            continue
        operator, values = item.get("operator"), item.get("values")
        where: FieldPath = (*here, "nodeSelector", "matchExpressions", index)
        if operator in ("In", "NotIn") and not values:
            problems.append(((*where, "values") if "values" in item else where,
                             f"operator {operator} needs at least one value"))
        if operator in ("Exists", "DoesNotExist") and values:
            problems.append(((*where, "values"), f"operator {operator} takes no values"))
    return problems


# --- rollouts and sockets -------------------------------------------------------------------------------------

_LISTEN = re.compile(r"tcp://(?P<host>[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})"
                     r"|unix:(?P<path>/.+)")  # the schema's pattern, with its parts named
_PERCENT = re.compile(r"[0-9]+%")
MAX_UNIX_PATH = 107  # bytes of sun_path (108) less its NUL
SHARED_SOCKET_PROBE = "probe would test the shared socket, not this replica: use a notify, log or exec probe"
START_FIRST_WITHOUT_SOCKETS = "start-first without sockets: replicas must not bind the same port"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> int | str | None:
    """A maxSurge or maxUnavailable the schema accepts (a count, or "N%"), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _PERCENT.fullmatch(value):
        return value
    return None


def _resolved(value: int | str, replicas: int | None, round_up: bool) -> int:
    """A count, or a percentage of `replicas` rounded up (maxSurge) or down (maxUnavailable). With no replicas
    to count against (None), a percentage above 0% stands for "some": 1."""
    if isinstance(value, int):
        return value
    percent = int(value[:-1])
    if replicas is None:
        return 1 if percent else 0
    share = replicas * percent
    return -(-share // 100) if round_up else share // 100


def listen_key(listen: str) -> str:
    """What a listen address binds, written one way: the host lowercased and an IP address in its short form
    (tcp://[::0]:80 is tcp://[::]:80), a unix path normalised (unix:///run/a.sock is unix:/run/a.sock)."""
    match = _LISTEN.fullmatch(listen)
    if match is None:
        return listen
    if match["path"] is not None:
        return "unix:" + os.path.normpath(re.sub("/+", "/", match["path"]))
    host = match["host"].lower()
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        host = f"[{address}]" if address.version == 6 else str(address)
    except ValueError:
        pass  # a host name
    return f"tcp://{host}:{int(match['port'])}"


def _socket_problems(sockets: list[Any], at: FieldPath) -> tuple[list[tuple[FieldPath, str]], dict[int, str]]:
    """Names listed twice, ports and unix paths no socket can have; and the tcp ports, each with its socket."""
    found: list[tuple[FieldPath, str]] = []
    names: dict[str, int] = {}
    ports: dict[int, str] = {}
    for index, socket in enumerate(sockets):
        if not isinstance(socket, dict):
            continue
        name = socket.get("name")
        if isinstance(name, str):
            first = names.setdefault(name, index)
            if first != index:
                found.append((at + (index, "name"), f"{name!r} is already listed at {dotted(at + (first,))}"))
        listen = socket.get("listen")
        match = _LISTEN.fullmatch(listen) if isinstance(listen, str) else None
        if match is None:
            continue  # the schema's to say
        where = at + (index, "listen")
        if match["port"] is not None:
            port = int(match["port"])
            if not 1 <= port <= 65535:
                found.append((where, f"the port of {listen!r} must be 1 to 65535, got {port}"))
            else:
                ports.setdefault(port, name if isinstance(name, str) else f"[{index}]")
        elif (size := len(os.fsencode(match["path"]))) > MAX_UNIX_PATH:
            found.append((where, f"a unix socket's path is at most {MAX_UNIX_PATH} bytes (sun_path), got {size}"))
    return found, ports


def _fencepost_problems(spec: dict[str, Any], at: FieldPath, sockets: bool) -> list[tuple[FieldPath, str]]:
    """maxUnavailable past 100%, and maxSurge and maxUnavailable that both come to 0 (no replica could ever be
    replaced), with the defaults of planning/rollout.py's surge_and_unavailable: maxSurge 1 with sockets, else 0;
    maxUnavailable 0 with sockets and a maxSurge above 0, else 1. A percentage is of replicas (autoscale: of the
    smallest pool it can make, where rounding down bites most); with replicas 0 only values that are 0 whatever
    the replicas are refused."""
    strategy = spec.get("strategy")
    strategy = strategy if isinstance(strategy, dict) else {}
    rolling = strategy.get("rollingUpdate")
    rolling = rolling if isinstance(rolling, dict) else {}
    found: list[tuple[FieldPath, str]] = []
    here: FieldPath = at + ("strategy", "rollingUpdate")
    given_surge, given_unavailable = _count(rolling.get("maxSurge")), _count(rolling.get("maxUnavailable"))
    if isinstance(given_unavailable, str) and int(given_unavailable[:-1]) > 100:
        found.append((here + ("maxUnavailable",), f"must be at most 100% (every replica), got {given_unavailable!r}"))
    bad = [name for name in ("maxSurge", "maxUnavailable") if name in rolling and _count(rolling[name]) is None]
    if strategy.get("type", StrategyType.ROLLING_UPDATE.value) != StrategyType.ROLLING_UPDATE.value or bad:
        return found
    auto, replicas = spec.get("autoscale"), spec.get("replicas", 1)
    if isinstance(auto, dict):
        low = auto.get("min")
        count: int | None = max(low, 1) if isinstance(low, int) and not isinstance(low, bool) else None
        of = f"of {count} replicas (the smallest pool autoscale makes)"
    else:
        count = replicas if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas > 0 else None
        of = f"of {count} replicas"
    if isinstance(auto, dict) and count is None:
        return found
    surge = _resolved(given_surge, count, True) if given_surge is not None else (1 if sockets else 0)
    unavailable = (_resolved(given_unavailable, count, False) if given_unavailable is not None
                   else 0 if sockets and surge > 0 else 1)
    if surge or unavailable:
        return found

    def words(name: str, value: int | str | None, rounding: str) -> str:
        if value is None:
            return f"{name} is 0 (its default without sockets)"
        if isinstance(value, str) and count is not None and int(value[:-1]):
            return f"{name} {value!r} {of} rounds {rounding} to 0"
        return f"{name} is {value!r}" if isinstance(value, str) else f"{name} is 0"

    both = f"{words('maxSurge', given_surge, 'up')} and {words('maxUnavailable', given_unavailable, 'down')}"
    found.append((here + ("maxUnavailable",), f"{both}: no replica could ever be replaced; let one of them be at least 1"))
    return found


def _rollout_problems(spec: Any, at: FieldPath) -> list[tuple[FieldPath, str]]:
    """The rules of a Process's rollout and sockets that JSON Schema cannot say, on the values it accepts."""
    if not isinstance(spec, dict):
        return []
    sockets = spec.get("sockets")
    found, ports = _socket_problems(sockets, at + ("sockets",)) if isinstance(sockets, list) else ([], {})
    probes = spec.get("probes")
    for kind, probe in (probes.items() if isinstance(probes, dict) else ()):
        for action in ("http", "tcp"):
            check = probe.get(action) if isinstance(probe, dict) else None
            port = check.get("port") if isinstance(check, dict) else None
            # A port worked out per replica ($((...))) is only known at each start: not judged here.
            if isinstance(port, int) and not isinstance(port, bool) and port in ports:
                found.append((at + ("probes", kind, action, "port"), SHARED_SOCKET_PROBE))
    found += _fencepost_problems(spec, at, bool(sockets) and isinstance(sockets, list))
    defaults = {"minReadySeconds": Strategy.min_ready_seconds, "progressDeadlineSeconds": Strategy.progress_deadline_seconds}
    ready, deadline = (spec.get(key, default) for key, default in defaults.items())
    if _number(ready) and _number(deadline) and ready >= 0 and deadline > 0 and deadline <= ready:
        name = "progressDeadlineSeconds" if "progressDeadlineSeconds" in spec else "minReadySeconds"
        shown = {key: f"{spec[key]}" if key in spec else f"{default:g}, its default" for key, default in defaults.items()}
        found.append((at + (name,), (
            f"progressDeadlineSeconds ({shown['progressDeadlineSeconds']}) must be more than minReadySeconds "
            f"({shown['minReadySeconds']}): no new replica could become available before the rollout fails")))
    return found


def rollout_warnings(specs: Iterable[ProcessSpec]) -> list[Problem]:
    """Warnings of `validate`, not errors: a Process without sockets that rolls start-first (maxSurge above 0)
    runs an old and a new replica at once, which cannot both bind a fixed port of their own."""
    warnings = []
    for spec in specs:
        surge = spec.strategy.max_surge
        some = surge is not None and (surge > 0 if isinstance(surge, int) else int(surge.rstrip("%")) > 0)
        if (spec.kind is Kind.PROCESS and spec.strategy.type is StrategyType.ROLLING_UPDATE and not spec.sockets
                and some):
            warnings.append(Problem(spec.location or Location(spec.key), "spec.strategy.rollingUpdate.maxSurge",
                                    START_FIRST_WITHOUT_SOCKETS))
    return warnings
