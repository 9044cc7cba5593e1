"""All formatting for people and scripts: tables, describe, diffs, event lines, problem lists, JSON and YAML.

Returns strings; never prints, never reads the clock (relative times take `now`, wall seconds). Imported by the
CLI for `get`, so it stays cheap to import: stdlib only at the top, PyYAML only inside to_yaml.
Secrets: env values never leave this module; describe and diff show env names only.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .core.errors import Problem
from .core.events import Event

if TYPE_CHECKING:
    from .core.model import Backoff


def event_json(event: Event) -> str:
    return json.dumps(event.to_json(), sort_keys=True)


def problems_text(problems: Sequence[Problem]) -> str:
    noun = "problem" if len(problems) == 1 else "problems"
    return "\n".join([*(str(p) for p in problems), f"{len(problems)} {noun} found"])


def problems_json(problems: Sequence[Problem], objects: int = 0) -> str:
    document = {"valid": not problems, "objects": objects, "problems": [p.to_json() for p in problems]}
    return json.dumps(document, indent=2, sort_keys=True)


def validated_text(keys: Sequence[str], files: int) -> str:
    noun = "object" if len(keys) == 1 else "objects"
    return f"valid: {len(keys)} {noun} in {files} file{'s' if files != 1 else ''}"


# --- shared helpers -------------------------------------------------------------------------------------------

_GAP = "  "  # between table columns
_MISSING = object()
_ELLIPSIS = "…"


def human_bytes(n: int) -> str:
    """Binary units the way `get -o wide` shows memory: 512B, 1.5Ki, 12Mi, 3.2Gi (one decimal below 10)."""
    if n < 0:
        return "-" + human_bytes(-n)
    if n < 1024:
        return f"{int(n)}B"
    value = float(n)
    for unit in ("Ki", "Mi", "Gi", "Ti", "Pi"):
        value /= 1024
        if unit == "Pi" or round(value) < 1024:
            if value < 10:
                text = f"{value:.1f}"
                # 9.96 rounds to "10.0": show it like every other value of 10 and above.
                return f"{text[:-2] if text == '10.0' else text}{unit}"
            return f"{round(value)}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def human_age(seconds: float) -> str:
    """kubectl-style age (its HumanDuration, but hours from 1h): 45s, 3m20s, 45m, 2h5m, 20h, 4d6h, 45d, 2y30d.

    Negative (clock skew) is 0s.
    """
    s = int(max(seconds, 0))
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 60:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d" if hours % 24 == 0 else f"{days}d{hours % 24}h"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return f"{years}y" if days % 365 == 0 else f"{years}y{days % 365}d"
    return f"{years}y"


def _age(at: Any, now: float) -> str:
    return human_age(now - at) if isinstance(at, (int, float)) else "-"


def _ago(at: Any, now: float) -> str:
    return f"{human_age(now - at)} ago" if isinstance(at, (int, float)) else "-"


def _duration(seconds: Any) -> str:
    """A span such as how long a run lasted: 0.4s, 2s, 3m20s."""
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    return human_age(seconds)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else _cell(value)


def _cell(value: Any) -> str:
    """One table cell: never None, never more than one line."""
    if value is None or value == "":
        return "-"
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned, two spaces apart; the last column is not padded."""
    widths = [max(len(title), *(len(row[i]) for row in rows)) for i, title in enumerate(header)]
    lines = []
    for row in (header, *rows):
        lines.append(_GAP.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + _ELLIPSIS


def _command_text(command: Any) -> str:
    """An argv list shell-quoted (copy-pasteable); a shell string as written."""
    if isinstance(command, (list, tuple)):
        return shlex.join(str(arg) for arg in command)
    return "" if command is None else str(command)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dig(document: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(document, Mapping):
            return None
        document = document.get(key)
    return document


# --- get ------------------------------------------------------------------------------------------------------

_MIN_COMMAND_WIDTH = 10  # below this a truncated command says nothing; let the line wrap instead


def objects_table(
    objects: Sequence[Mapping[str, Any]], wide: bool = False, width: int | None = None, *, now: float
) -> str:
    """`orchestrator get`. `width` (the terminal's) truncates COMMAND with `…`; `now` is wall seconds."""
    if not objects:
        return "No objects."
    namespaces = {obj.get("namespace") for obj in objects}
    show_namespace = len(namespaces) > 1
    header = ["NAME", "KIND", "READY", "STATE", "RESTARTS", "AGE"]
    if show_namespace:
        header.insert(0, "NAMESPACE")
    if wide:
        header += ["PID", "CPU", "MEM", "COMMAND"]
    rows: list[list[str]] = []
    for obj in objects:
        replicas = obj.get("replicas") or {}
        ready = replicas.get("ready")
        desired = replicas.get("desired")
        row = [
            _cell(obj.get("name") or obj.get("key")),
            _cell(obj.get("kind")),
            f"{_cell(ready)}/{_cell(desired)}" if ready is not None or desired is not None else "-",
            _cell(obj.get("state")),
            _cell(obj.get("restarts", 0)),
            _age(obj.get("created_at"), now),
        ]
        if show_namespace:
            row.insert(0, _cell(obj.get("namespace")))
        if wide:
            row += _wide_cells(obj)
        rows.append(row)
    if wide and width is not None:
        fixed = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header) - 1)]
        room = max(width - sum(fixed) - len(_GAP) * len(fixed), _MIN_COMMAND_WIDTH)
        for row in rows:
            row[-1] = _truncate(row[-1], room)
    return _table(header, rows)


def _wide_cells(obj: Mapping[str, Any]) -> list[str]:
    statuses = [s for s in obj.get("replica_status") or () if isinstance(s, Mapping)]
    pids = [str(s["pid"]) for s in statuses if s.get("pid") is not None]
    cpus = [s["cpu_percent"] for s in statuses if isinstance(s.get("cpu_percent"), (int, float))]
    mems = [s["memory_bytes"] for s in statuses if isinstance(s.get("memory_bytes"), (int, float))]
    command = obj.get("command")
    if command is None:
        command = _dig(obj.get("spec"), "spec", "command")
    return [
        ",".join(pids) or "-",
        f"{sum(cpus):.1f}%" if cpus else "-",
        human_bytes(int(sum(mems))) if mems else "-",
        _cell(_command_text(command)),
    ]


# --- describe -------------------------------------------------------------------------------------------------

_DESCRIBE_EVENTS = 20
_HIDDEN = "<hidden>"


def _fields(pairs: Sequence[tuple[str, str | list[str]]], indent: str = "") -> list[str]:
    """`Label:  value` lines with the values aligned; a list value continues on aligned lines."""
    pad = max(len(label) for label, _ in pairs) + 2
    lines = []
    for label, value in pairs:
        values = value if isinstance(value, list) else [value]
        values = values or ["<none>"]
        lines.append(f"{indent}{(label + ':').ljust(pad)} {values[0]}".rstrip())
        lines += [f"{indent}{' ' * pad} {more}".rstrip() for more in values[1:]]
    return lines


def describe_text(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: float) -> str:
    """`orchestrator describe NAME`. Env values are never shown: only their names. Unset fields show defaults."""
    # Here, not at the top: building model's dataclasses costs more than the rest of `get`'s imports.
    from .core.model import ProcessSpec, nice_of

    manifest = _mapping(obj.get("spec"))
    spec, metadata = _mapping(manifest.get("spec")), _mapping(manifest.get("metadata"))
    kind = obj.get("kind") or manifest.get("kind") or "-"
    labels = obj.get("labels") if obj.get("labels") is not None else metadata.get("labels")
    replicas = obj.get("replicas") or {}
    command = obj.get("command") if obj.get("command") is not None else spec.get("command")
    env = spec.get("env")
    env_names = sorted(env) if isinstance(env, Mapping) else []
    env_files = [str(_dig(source, "file")) for source in spec.get("envFrom") or () if _dig(source, "file")]
    pairs: list[tuple[str, str | list[str]]] = [
        ("Name", _cell(obj.get("name") or metadata.get("name"))),
        ("Namespace", _cell(obj.get("namespace") or metadata.get("namespace"))),
        ("Kind", _cell(kind)),
        ("Labels", [f"{k}={v}" for k, v in labels.items()] if isinstance(labels, Mapping) else []),
        ("State", _cell(obj.get("state"))),
        (
            "Replicas",
            " | ".join(f"{_cell(replicas.get(n))} {n}" for n in ("desired", "running", "ready")),
        ),
        ("Command", _cell(_command_text(command)) + (" (shell)" if spec.get("shell") else "")),
        ("Working dir", _cell(spec.get("workingDir") or obj.get("working_dir"))),
        ("Env", [f"{name}={_HIDDEN}" for name in env_names]),
    ]
    if env_files:
        pairs.append(("Env from", env_files))
    if kind == "Job":
        pairs.append(("Backoff limit", _cell(spec.get("backoffLimit", ProcessSpec.backoff_limit))))
    else:
        pairs.append(("Restart policy", _cell(spec.get("restartPolicy", ProcessSpec.restart_policy.value))))
        if spec.get("maxRestarts") is not None:
            window = _duration(spec.get("restartWindowSeconds", ProcessSpec.restart_window_seconds))
            pairs.append(("Max restarts", f"{spec['maxRestarts']} in {window}"))
    pairs += [
        ("Backoff", _backoff_text(spec.get("backoff"), ProcessSpec.backoff)),
        ("Depends on", _dependencies_text(spec.get("dependsOn"))),
    ]
    limits = _limits_text(_mapping(_mapping(spec.get("resources")).get("limits")), _mapping(obj.get("limits")))
    if limits:
        pairs.append(("Limits", limits))
    priority = spec.get("priority", ProcessSpec.priority)
    scheduling = [f"priority {priority} (nice {nice_of(priority)})"] if isinstance(priority, int) else []
    if spec.get("cpuAffinity"):
        scheduling.append("cpus " + ",".join(str(cpu) for cpu in spec["cpuAffinity"]))
    if spec.get("ioClass"):
        scheduling.append(f"I/O class {spec['ioClass']}")
    pairs.append(("Scheduling", ", ".join(scheduling) or "-"))
    probes = _mapping(spec.get("probes"))
    if probes:
        pairs.append(("Probes", [f"{kind}: {_probe_text(_mapping(probes[kind]))}"
                                 for kind in ("startup", "readiness", "liveness") if kind in probes]))
    lines = _fields(pairs)
    statuses = [s for s in obj.get("replica_status") or () if isinstance(s, Mapping)]
    for status in statuses:
        lines.append(f"Replica {_cell(status.get('index'))}:")
        lines += _fields(_replica_pairs(status, now), indent="  ")
    lines += _describe_events(obj.get("key"), events, now)
    return "\n".join(lines)


def _limits_text(limits: Mapping[str, Any], enforced_by: Mapping[str, Any]) -> list[str]:
    """`memory 64Mi (cgroup v1)`, one line per limit, with how it is enforced."""
    lines = []
    for name in ("memory", "cpu", "openFiles", "processes"):
        if name in limits:
            value = limits[name]
            shown = human_bytes(value) if name == "memory" and isinstance(value, int) else _cell(value)
            lines.append(f"{name} {shown}" + (f" ({enforced_by[name]})" if name in enforced_by else ""))
    return lines


def _backoff_text(backoff: Any, defaults: Backoff) -> str:
    given = _mapping(backoff)
    initial = given.get("initialSeconds", defaults.initial_seconds)
    maximum = given.get("maxSeconds", defaults.max_seconds)
    multiplier = given.get("multiplier", defaults.multiplier)
    reset = given.get("resetAfterSeconds", defaults.reset_after_seconds)
    return (
        f"{_duration(initial)} initial, x{_number(multiplier)} per crash, {_duration(maximum)} max,"
        f" reset after {_duration(reset)}"
    )


def _dependencies_text(depends_on: Any) -> list[str]:
    return [
        f"{dependency.get('name')} ({dependency.get('condition') or 'started'})"
        for dependency in depends_on or ()
        if isinstance(dependency, Mapping)
    ]


def _probe_text(probe: Mapping[str, Any]) -> str:
    """`http GET 127.0.0.1:8080/healthz every 2s, timeout 1s, 3 failures`: what is checked and how often."""
    if "exec" in probe:
        what = "exec " + _command_text(_dig(probe, "exec", "command"))
    elif "http" in probe:
        http = _mapping(probe["http"])
        what = f"http GET {http.get('host', '127.0.0.1')}:{http.get('port')}{http.get('path', '/')}"
    elif "tcp" in probe:
        tcp = _mapping(probe["tcp"])
        what = f"tcp {tcp.get('host', '127.0.0.1')}:{tcp.get('port')}"
    else:
        what = f"log /{_dig(probe, 'log', 'pattern')}/"
    delay = probe.get("initialDelaySeconds") or 0
    return (f"{what} every {_duration(probe.get('periodSeconds', 10))}, timeout "
            f"{_duration(probe.get('timeoutSeconds', 1))}, {probe.get('failureThreshold', 3)} failures"
            + (f", after {_duration(delay)}" if delay else ""))


def _replica_pairs(status: Mapping[str, Any], now: float) -> list[tuple[str, str | list[str]]]:
    pairs: list[tuple[str, str | list[str]]] = [
        ("Phase", _cell(status.get("phase"))),
        *([("Ready", "yes" if status.get("ready") else "no")] if status.get("phase") == "Running" else []),
        ("PID", _cell(status.get("pid"))),
        ("Started", _ago(status.get("started_at"), now)),
        ("Restarts", _cell(status.get("restarts", 0))),
    ]
    if status.get("reason"):
        pairs.append(("Reason", _cell(status.get("reason"))))
    next_try = status.get("next_try_at")
    if isinstance(next_try, (int, float)) and (status.get("phase") == "BackOff" or next_try > now):
        pairs.append(("Next try", f"in {human_age(-((now - next_try) // 1))}"))
    cpu, memory = status.get("cpu_percent"), status.get("memory_bytes")
    if isinstance(cpu, (int, float)):
        pairs.append(("CPU", f"{cpu:.1f}%"))
    if isinstance(memory, (int, float)):
        pairs.append(("Memory", human_bytes(int(memory))))
    last_exit = status.get("last_exit")
    if isinstance(last_exit, Mapping):
        pairs.append(("Last exit", _exit_text(last_exit, now)))
        if last_exit.get("message"):
            pairs.append(("  Message", _cell(last_exit.get("message"))))
    return pairs


def _exit_text(last_exit: Mapping[str, Any], now: float) -> str:
    if last_exit.get("signal") is not None:
        how = f"signal {_signal_name(last_exit['signal'])}"
    elif last_exit.get("code") is not None:
        how = f"code {last_exit['code']}"
    else:
        how = "no exit status"
    reason = f" ({last_exit['reason']})" if last_exit.get("reason") else ""
    return f"{how}{reason}, {_ago(last_exit.get('at'), now)}, ran {_duration(last_exit.get('ran_seconds'))}"


def _signal_name(number: Any) -> str:
    import signal  # only here: describe is the one place that names signals

    try:
        return signal.Signals(int(number)).name
    except (ValueError, TypeError):
        return str(number)


def _describe_events(key: Any, events: Sequence[Mapping[str, Any]], now: float) -> list[str]:
    mine = [e for e in events if not key or e.get("object") in (None, key)][-_DESCRIBE_EVENTS:]
    if not mine:
        return ["Events:  <none>"]
    rows = [
        [_ago(e.get("time"), now), _cell(e.get("type")), _cell(e.get("replica")), _cell(e.get("message"))] for e in mine
    ]
    table = _table(["AGE", "TYPE", "REPLICA", "MESSAGE"], rows)
    return ["Events:", *("  " + line for line in table.splitlines())]


# --- diff and apply -------------------------------------------------------------------------------------------

_RED, _GREEN, _BOLD, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[1m", "\x1b[0m"
_SECRET_ROOT = "spec.env"


def spec_diff(key: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, color: bool = False) -> str:
    """`orchestrator diff`: changed manifest paths, live (`-`) against manifest (`+`); "" when nothing differs.

    Documents are flattened to dotted paths (`spec.backoff.initialSeconds`, `spec.dependsOn[0].name`); a list
    of plain values stays one JSON value (`spec.command: ["python3", "app.py"]`). Env values are never shown.
    """
    before = _flatten(old) if old is not None else {}
    after = _flatten(new) if new is not None else {}
    body: list[str] = []
    for path in _merged_paths(before, after):
        was, now = before.get(path, _MISSING), after.get(path, _MISSING)
        if was is not _MISSING and now is not _MISSING and _json(was) == _json(now):
            continue
        changed = was is not _MISSING and now is not _MISSING
        if was is not _MISSING:
            body.append(_paint(f"-{path}: {_diff_value(path, was, False)}", _RED, color))
        if now is not _MISSING:
            body.append(_paint(f"+{path}: {_diff_value(path, now, changed)}", _GREEN, color))
    if not body:
        return ""
    headers = [_paint(f"--- live/{key}", _BOLD, color), _paint(f"+++ manifest/{key}", _BOLD, color)]
    return "\n".join(headers + body)


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text


def _path_join(path: str, key: str) -> str:
    plain = bool(key) and not key[0].isdigit() and all(c.isalnum() or c in "_-" for c in key)
    if plain:
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _flatten(value: Any, path: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {} if out is None else out
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(item, _path_join(path, str(key)), out)
    elif isinstance(value, (list, tuple)) and any(isinstance(item, (Mapping, list, tuple)) for item in value):
        for index, item in enumerate(value):
            _flatten(item, f"{path}[{index}]", out)
    else:
        out[path or "."] = value
    return out


def _merged_paths(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Paths of both documents in document order: an added path goes right after its predecessor in `after`."""
    merged = list(before)
    previous: str | None = None
    for path in after:
        if path not in before:
            merged.insert(merged.index(previous) + 1 if previous is not None else 0, path)
        previous = path
    return merged


def _diff_value(path: str, value: Any, changed: bool) -> str:
    secret = path == _SECRET_ROOT or path.startswith((_SECRET_ROOT + ".", _SECRET_ROOT + "["))
    if secret and value not in ({}, [], None):
        return "<hidden (changed)>" if changed else _HIDDEN
    return _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def apply_results(results: Sequence[Mapping[str, Any]], *, dry_run: bool = False) -> str:
    """kubectl-style lines: `process/shop/api configured`, `(restart)` when replicas restart."""
    lines = []
    for result in results:
        line = f"{str(result.get('kind') or 'object').lower()}/{result.get('key')} {result.get('result')}"
        if result.get("restart"):
            line += " (restart)"
        if dry_run:
            line += " (dry run)"
        lines.append(line)
    return "\n".join(lines)


# --- history and events ---------------------------------------------------------------------------------------


def history_table(revisions: Sequence[Mapping[str, Any]], now: float) -> str:
    """`orchestrator history`: one row per applied revision, oldest first as given."""
    if not revisions:
        return "No revisions."
    rows = []
    for revision in revisions:
        commit = revision.get("git_commit")
        commit_text = f"{str(commit)[:7]}{'+dirty' if revision.get('git_dirty') else ''}" if commit else "-"
        rows.append(
            [
                _cell(revision.get("number")),
                _age(revision.get("at"), now),
                _cell(revision.get("action")),
                _cell(revision.get("user")),
                _cell(revision.get("objects")),
                commit_text,
                _cell(",".join(str(p) for p in revision.get("paths") or ())),
            ]
        )
    return _table(["REVISION", "AGE", "ACTION", "USER", "OBJECTS", "COMMIT", "PATHS"], rows)


def events_table(events: Sequence[Mapping[str, Any]], now: float | None = None) -> str:
    """`orchestrator events`: local HH:MM:SS; with `now`, events of another day also show their date."""
    if not events:
        return "No events."
    today = time.strftime("%Y-%m-%d", time.localtime(now)) if now is not None else None
    rows = []
    for event in events:
        at = event.get("time")
        stamp = "-"
        if isinstance(at, (int, float)):
            local = time.localtime(at)
            stamp = time.strftime("%H:%M:%S", local)
            if today is not None and time.strftime("%Y-%m-%d", local) != today:
                stamp = time.strftime("%Y-%m-%d ", local) + stamp
        key, replica = event.get("object") or "orchestrator", event.get("replica")
        subject = key if replica is None else f"{key}[{replica}]"
        rows.append([stamp, subject, _cell(event.get("type")), _cell(event.get("message"))])
    return _table(["TIME", "OBJECT", "TYPE", "MESSAGE"], rows)


# --- -o json / -o yaml ----------------------------------------------------------------------------------------


def to_json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def to_yaml(value: object) -> str:
    import yaml  # only here: PyYAML costs more to import than everything else `get` needs

    return str(yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True))


def to_json_line(value: object) -> str:
    """One compact JSON object per line (`events -o json`, for scripts and log shippers)."""
    return json.dumps(value, sort_keys=True)


def event_dict_line(event: Mapping[str, Any]) -> str:
    """event_line for an event as the API serves it."""
    at = float(event.get("time") or 0.0)
    stamp = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"
    key = event.get("object") or ""
    replica = event.get("replica")
    subject = "orchestrator" if not key else (key if replica is None else f"{key}[{replica}]")
    return f"{stamp} {subject} {event.get('type')}: {event.get('message')}"


def systemd_unit(python: str, state_dir: str, user_unit: bool) -> str:
    """A unit that runs the daemon at boot with this state dir, stopping its processes gracefully on stop."""
    return (
        "[Unit]\n"
        f"Description=orchestrator daemon for {state_dir}\n"
        "After=network.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={shlex.quote(python)} -m orchestrator --state-dir {shlex.quote(state_dir)} daemon\n"
        "Restart=on-failure\n"
        "# Signals go to the daemon only: on stop it stops every process in reverse dependency order itself,\n"
        "# and if it crashes its processes keep running for the restarted daemon to adopt (with mixed or\n"
        "# control-group, systemd would SIGKILL them all when the daemon dies).\n"
        "KillMode=process\n"
        "TimeoutStopSec=300\n"
        "# A cgroup of its own to hand down: the kernel then enforces memory and cpu limits per replica.\n"
        "# The daemon runs in its subgroup `supervisor`, replicas beside it (systemd 254 and later; an older\n"
        "# one ignores DelegateSubgroup, and under cgroup v2 may then fail to restart a crashed daemon).\n"
        "Delegate=yes\n"
        "DelegateSubgroup=supervisor\n"
        "\n"
        "[Install]\n"
        f"WantedBy={'default.target' if user_unit else 'multi-user.target'}\n"
    )
