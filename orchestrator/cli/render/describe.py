"""`describe`: an object's spec, each replica's state and last exit, probes, limits and recent events.

Env values never show: describe lists env names only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...core.model import Backoff

from .common import (
    HIDDEN,
    ago_text,
    as_mapping,
    cell_text,
    command_text,
    dig,
    duration_text,
    human_age,
    human_bytes,
    number_text,
    table_text,
)

_DESCRIBE_EVENTS = 20


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
    from ...core.model import ProcessSpec, nice_of

    manifest = as_mapping(obj.get("spec"))
    spec, metadata = as_mapping(manifest.get("spec")), as_mapping(manifest.get("metadata"))
    kind = obj.get("kind") or manifest.get("kind") or "-"
    labels = obj.get("labels") if obj.get("labels") is not None else metadata.get("labels")
    replicas = obj.get("replicas") or {}
    command = obj.get("command") if obj.get("command") is not None else spec.get("command")
    env = spec.get("env")
    env_names = sorted(env) if isinstance(env, Mapping) else []
    env_files = [str(dig(source, "file")) for source in spec.get("envFrom") or () if dig(source, "file")]
    pairs: list[tuple[str, str | list[str]]] = [
        ("Name", cell_text(obj.get("name") or metadata.get("name"))),
        ("Namespace", cell_text(obj.get("namespace") or metadata.get("namespace"))),
        ("Kind", cell_text(kind)),
        ("Labels", [f"{k}={v}" for k, v in labels.items()] if isinstance(labels, Mapping) else []),
        ("State", cell_text(obj.get("state"))),
        (
            "Replicas",
            " | ".join(f"{cell_text(replicas.get(n))} {n}" for n in ("desired", "running", "ready")),
        ),
        ("Command", cell_text(command_text(command)) + (" (shell)" if spec.get("shell") else "")),
        ("Working dir", cell_text(spec.get("workingDir") or obj.get("working_dir"))),
        ("Env", [f"{name}={HIDDEN}" for name in env_names]),
    ]
    if env_files:
        pairs.append(("Env from", env_files))
    if kind == "Job":
        pairs.append(("Backoff limit", cell_text(spec.get("backoffLimit", ProcessSpec.backoff_limit))))
        if spec.get("activeDeadlineSeconds") is not None:
            pairs.append(("Active deadline", duration_text(spec["activeDeadlineSeconds"])))
    else:
        pairs.append(("Restart policy", cell_text(spec.get("restartPolicy", ProcessSpec.restart_policy.value))))
        if spec.get("maxRestarts") is not None:
            window = duration_text(spec.get("restartWindowSeconds", ProcessSpec.restart_window_seconds))
            pairs.append(("Max restarts", f"{spec['maxRestarts']} in {window}"))
    pairs += [
        ("Backoff", _backoff_text(spec.get("backoff"), ProcessSpec.backoff)),
        ("Depends on", _dependencies_text(spec.get("dependsOn"))),
    ]
    limits = _limits_text(as_mapping(as_mapping(spec.get("resources")).get("limits")), as_mapping(obj.get("limits")))
    if limits:
        pairs.append(("Limits", limits))
    priority = spec.get("priority", ProcessSpec.priority)
    scheduling = [f"priority {priority} (nice {nice_of(priority)})"] if isinstance(priority, int) else []
    if spec.get("cpuAffinity"):
        scheduling.append("cpus " + ",".join(str(cpu) for cpu in spec["cpuAffinity"]))
    if spec.get("ioClass"):
        scheduling.append(f"I/O class {spec['ioClass']}")
    pairs.append(("Scheduling", ", ".join(scheduling) or "-"))
    probes = as_mapping(spec.get("probes"))
    if probes:
        pairs.append(("Probes", [f"{kind}: {_probe_text(as_mapping(probes[kind]))}"
                                 for kind in ("startup", "readiness", "liveness") if kind in probes]))
    lines = _fields(pairs)
    statuses = [s for s in obj.get("replica_status") or () if isinstance(s, Mapping)]
    for status in statuses:
        lines.append(f"Replica {cell_text(status.get('index'))}:")
        lines += _fields(_replica_pairs(status, now), indent="  ")
    lines += _describe_events(obj.get("key"), events, now)
    return "\n".join(lines)


def _limits_text(limits: Mapping[str, Any], enforced_by: Mapping[str, Any]) -> list[str]:
    """`memory 64Mi (cgroup v1)`, one line per limit, with how it is enforced."""
    lines = []
    for name in ("memory", "cpu", "openFiles", "processes"):
        if name in limits:
            value = limits[name]
            shown = human_bytes(value) if name == "memory" and isinstance(value, int) else cell_text(value)
            lines.append(f"{name} {shown}" + (f" ({enforced_by[name]})" if name in enforced_by else ""))
    return lines


def _backoff_text(backoff: Any, defaults: Backoff) -> str:
    given = as_mapping(backoff)
    initial = given.get("initialSeconds", defaults.initial_seconds)
    maximum = given.get("maxSeconds", defaults.max_seconds)
    multiplier = given.get("multiplier", defaults.multiplier)
    reset = given.get("resetAfterSeconds", defaults.reset_after_seconds)
    return (
        f"{duration_text(initial)} initial, x{number_text(multiplier)} per crash, {duration_text(maximum)} max,"
        f" reset after {duration_text(reset)}"
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
        what = "exec " + command_text(dig(probe, "exec", "command"))
    elif "http" in probe:
        http = as_mapping(probe["http"])
        what = f"http GET {http.get('host', '127.0.0.1')}:{http.get('port')}{http.get('path', '/')}"
    elif "tcp" in probe:
        tcp = as_mapping(probe["tcp"])
        what = f"tcp {tcp.get('host', '127.0.0.1')}:{tcp.get('port')}"
    elif "notify" in probe:
        what = "notify READY=1"
    else:
        what = f"log /{dig(probe, 'log', 'pattern')}/"
    delay = probe.get("initialDelaySeconds") or 0
    return (f"{what} every {duration_text(probe.get('periodSeconds', 10))}, timeout "
            f"{duration_text(probe.get('timeoutSeconds', 1))}, {probe.get('failureThreshold', 3)} failures"
            + (f", after {duration_text(delay)}" if delay else ""))


def _replica_pairs(status: Mapping[str, Any], now: float) -> list[tuple[str, str | list[str]]]:
    pairs: list[tuple[str, str | list[str]]] = [
        ("Phase", cell_text(status.get("phase"))),
        *([("Ready", "yes" if status.get("ready") else "no")] if status.get("phase") == "Running" else []),
        ("PID", cell_text(status.get("pid"))),
        ("Started", ago_text(status.get("started_at"), now)),
        ("Restarts", cell_text(status.get("restarts", 0))),
    ]
    if status.get("reason"):
        pairs.append(("Reason", cell_text(status.get("reason"))))
    next_try = status.get("next_try_at")
    if isinstance(next_try, (int, float)) and (status.get("phase") == "BackOff" or next_try > now):
        pairs.append(("Next try", f"in {human_age(-((now - next_try) // 1))}"))
    cpu, memory = status.get("cpu_percent"), status.get("memory_bytes")
    if isinstance(cpu, (int, float)):
        pairs.append(("CPU", f"{cpu:.1f}%"))
    if isinstance(memory, (int, float)):
        pairs.append(("Memory", human_bytes(int(memory))))
    health = status.get("limit_health")
    if isinstance(health, Mapping):
        fraction = health.get("fraction")
        shown = f"{float(fraction) * 100:.0f}%" if isinstance(fraction, (int, float)) else "?"
        text = f"{cell_text(health.get('band'))} ({cell_text(health.get('resource'))} at {shown} of its limit)"
        pairs.append(("Limit health", text))
    last_exit = status.get("last_exit")
    if isinstance(last_exit, Mapping):
        pairs.append(("Last exit", _exit_text(last_exit, now)))
        if last_exit.get("message"):
            pairs.append(("  Message", cell_text(last_exit.get("message"))))
    return pairs


def _exit_text(last_exit: Mapping[str, Any], now: float) -> str:
    if last_exit.get("signal") is not None:
        how = f"signal {_signal_name(last_exit['signal'])}"
    elif last_exit.get("code") is not None:
        how = f"code {last_exit['code']}"
    else:
        how = "no exit status"
    reason = f" ({last_exit['reason']})" if last_exit.get("reason") else ""
    return f"{how}{reason}, {ago_text(last_exit.get('at'), now)}, ran {duration_text(last_exit.get('ran_seconds'))}"


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
        [ago_text(e.get("time"), now), cell_text(e.get("type")), cell_text(e.get("replica")), cell_text(e.get("message"))] for e in mine
    ]
    table = table_text(["AGE", "TYPE", "REPLICA", "MESSAGE"], rows)
    return ["Events:", *("  " + line for line in table.splitlines())]
