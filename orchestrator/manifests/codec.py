"""Specs <-> JSON-able dicts: the manifest documents users know, with where each was read from.

Owns the one JSON shape of a spec, shared by the state store and the control API, and the guarantee that
every field round-trips exactly (tuples, enums, None, floats). A spec is written as a complete manifest
document (camelCase, defaults included, env already merged from envFrom) so that diffs show every field.

Never: I/O, json text (callers dump and load), reading files named in a document (a document's workingDir is
taken as it is), schema validation of user input (loader.py does that). Reading a malformed dict raises
ValueError naming the field path; it never asserts.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from ..core.errors import Location
from ..core.fleet import Placement, placement_from_document
from ..core.model import (
    Autoscale,
    Backoff,
    Condition,
    Dependency,
    Hook,
    HookKind,
    Hooks,
    Kind,
    Limits,
    LogPolicy,
    OnFailure,
    Probe,
    ProbeAction,
    ProbeKind,
    Probes,
    ProcessSpec,
    RestartPolicy,
    Shutdown,
    Socket,
    Strategy,
    StrategyType,
)
from ..core.reader import Reader
from ..core.units import parse_cpu, parse_quantity

API_VERSION = "orchestrator/v1"

JSONDict = dict[str, Any]
_DEFAULTS = ProcessSpec(name="", command=())  # the model's defaults mirror the schemas' (tested in test_schema)


# --- specs -------------------------------------------------------------------------------------------------


def spec_to_document(spec: ProcessSpec) -> JSONDict:
    """The manifest document of `spec`, every field of its kind written (defaults too).

    A shell command is written as the one string the schema expects; `user` and `maxRestarts` are omitted
    when unset, as the schema has no null for them. Fields of the other kind (a Job's replicas, a Process's
    backoffLimit) are written only when they differ from the default: a manifest cannot set them, so such a
    document is not a valid manifest, but specs made in code (a scaled Job) must not lose them on the way.
    """
    process = spec.kind is Kind.PROCESS
    body: JSONDict = {
        "command": spec.command[0] if spec.shell and len(spec.command) == 1 else list(spec.command),
        "shell": spec.shell,
        "workingDir": spec.working_dir,
        "env": dict(spec.env),
    }

    def put(name: str, value: object, default: object, of_kind: bool) -> None:
        if (of_kind and value is not None) or value != default:
            body[name] = value

    put("user", spec.user, None, True)
    put("replicas", spec.replicas, _DEFAULTS.replicas, process)
    body["priority"] = spec.priority
    put("restartPolicy", spec.restart_policy.value, _DEFAULTS.restart_policy.value, process)
    body["successExitCodes"] = list(spec.success_exit_codes)
    body["backoff"] = {
        "initialSeconds": spec.backoff.initial_seconds,
        "maxSeconds": spec.backoff.max_seconds,
        "multiplier": spec.backoff.multiplier,
        "resetAfterSeconds": spec.backoff.reset_after_seconds,
    }
    put("maxRestarts", spec.max_restarts, None, process)
    put("restartWindowSeconds", spec.restart_window_seconds, _DEFAULTS.restart_window_seconds, process)
    put("backoffLimit", spec.backoff_limit, _DEFAULTS.backoff_limit, not process)
    put("activeDeadlineSeconds", spec.active_deadline_seconds, None, not process)
    body["dependsOn"] = [{"name": d.name, "condition": d.condition.value} for d in spec.depends_on]
    put("restartWithDependency", spec.restart_with_dependency, False, process)
    body["shutdown"] = {"signal": spec.shutdown.signal, "timeoutSeconds": spec.shutdown.timeout_seconds}
    body["logs"] = {"maxBytes": spec.logs.max_bytes, "keep": spec.logs.keep}
    probes = {kind.value: probe_to_document(probe) for kind in ProbeKind if (probe := spec.probes.of(kind))}
    if probes:
        body["probes"] = probes
    hooks = {kind.value: {"exec": list(hook.command), "timeoutSeconds": hook.timeout_seconds}
             for kind in HookKind if (hook := spec.hooks.of(kind))}
    if hooks:
        body["hooks"] = hooks
    limits = {name: value for name, value in (("memory", spec.limits.memory_bytes), ("cpu", spec.limits.cpu),
                                              ("openFiles", spec.limits.open_files),
                                              ("processes", spec.limits.processes)) if value is not None}
    requests = {name: value for name, value in (("memory", spec.requests_memory), ("cpu", spec.requests_cpu))
                if value is not None}
    if limits or requests:
        body["resources"] = {**({"limits": limits} if limits else {}), **({"requests": requests} if requests else {})}
    put("queue", spec.queue, None, not process)
    put("priorityClass", spec.priority_class, _DEFAULTS.priority_class, not process)
    if spec.autoscale is not None:
        auto = spec.autoscale
        body["autoscale"] = {"min": auto.min, "max": auto.max, "targetCPUPercent": auto.target_cpu_percent,
                             "scaleUpSeconds": auto.scale_up_seconds, "scaleDownSeconds": auto.scale_down_seconds}
    if spec.placement is not None:
        body["placement"] = spec.placement.to_document()
    if spec.cpu_affinity:
        body["cpuAffinity"] = list(spec.cpu_affinity)
    if spec.io_class is not None:
        body["ioClass"] = spec.io_class
    put("sockets", [socket_to_document(socket) for socket in spec.sockets], [], process)
    strategy, default = spec.strategy, _DEFAULTS.strategy
    put("strategy", strategy_to_document(strategy), strategy_to_document(default), process)
    put("minReadySeconds", strategy.min_ready_seconds, default.min_ready_seconds, process)
    put("progressDeadlineSeconds", strategy.progress_deadline_seconds, default.progress_deadline_seconds, process)
    put("revisionHistoryLimit", strategy.revision_history_limit, default.revision_history_limit, process)
    return {
        "apiVersion": API_VERSION,
        "kind": spec.kind.value,
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": dict(spec.labels)},
        "spec": body,
    }


def manifest_document(spec: ProcessSpec) -> JSONDict:
    """spec_to_document as a manifest says it, to be checked against the schema: an autoscaled pool's
    replicas (its current size, the autoscaler's to change) is left out, as a manifest gives autoscale alone."""
    document = spec_to_document(spec)
    if spec.autoscale is not None:
        del document["spec"]["replicas"]
    return document


def spec_from_document(document: Mapping[str, Any], location: Location | None = None) -> ProcessSpec:
    """The spec a document written by spec_to_document describes; ValueError naming the field if it is garbled.

    Fields the document leaves out take the model's defaults; fields this version does not know are errors,
    as in manifests.
    """
    top = Reader(document, "")
    api = top.text("apiVersion")
    if api != API_VERSION:
        raise ValueError(f"apiVersion: expected {API_VERSION!r}, got {api!r}")
    kind = top.enum("kind", Kind)
    metadata = top.reader("metadata")
    body = top.reader("spec")
    top.done()
    defaults = _DEFAULTS

    command_value = body.raw("command")
    if isinstance(command_value, str):
        command: tuple[str, ...] = (command_value,)
    else:
        command = body.texts("command")
    backoff = body.reader("backoff", {})
    shutdown = body.reader("shutdown", {})
    logs = body.reader("logs", {})
    probes_document = body.raw("probes", {})
    if not isinstance(probes_document, Mapping) or set(probes_document) - {k.value for k in ProbeKind}:
        raise ValueError(f"spec.probes: expected startup, readiness and liveness only, got {probes_document!r}")
    probes = Probes(**{kind: probe_from_document(value) for kind, value in probes_document.items()})
    hooks = hooks_from_document(body.raw("hooks", {}))
    limits = limits_from_document(body.raw("resources", {}))
    requests_cpu, requests_memory = requests_from_document(body.raw("resources", {}))
    depends_on = tuple(_dependency(item) for item in body.readers("dependsOn"))
    spec = ProcessSpec(
        name=metadata.text("name"),
        namespace=metadata.text("namespace", defaults.namespace),
        kind=kind,
        labels=metadata.text_pairs("labels"),
        command=command,
        shell=body.flag("shell", defaults.shell),
        working_dir=body.text("workingDir", defaults.working_dir),
        env=body.text_pairs("env"),
        user=body.text("user", None),
        replicas=body.integer("replicas", defaults.replicas),
        priority=body.integer("priority", defaults.priority),
        restart_policy=body.enum("restartPolicy", RestartPolicy, defaults.restart_policy),
        success_exit_codes=tuple(body.integers("successExitCodes", defaults.success_exit_codes)),
        backoff=Backoff(
            initial_seconds=backoff.number("initialSeconds", Backoff.initial_seconds),
            max_seconds=backoff.number("maxSeconds", Backoff.max_seconds),
            multiplier=backoff.number("multiplier", Backoff.multiplier),
            reset_after_seconds=backoff.number("resetAfterSeconds", Backoff.reset_after_seconds),
        ),
        max_restarts=body.integer("maxRestarts", None),
        restart_window_seconds=body.number("restartWindowSeconds", defaults.restart_window_seconds),
        backoff_limit=body.integer("backoffLimit", defaults.backoff_limit),
        active_deadline_seconds=body.number("activeDeadlineSeconds", None),
        depends_on=depends_on,
        restart_with_dependency=body.flag("restartWithDependency", False),
        shutdown=Shutdown(
            signal=shutdown.text("signal", Shutdown.signal),
            timeout_seconds=shutdown.number("timeoutSeconds", Shutdown.timeout_seconds),
        ),
        logs=LogPolicy(max_bytes=logs.integer("maxBytes", LogPolicy.max_bytes), keep=logs.integer("keep", LogPolicy.keep)),
        probes=probes,
        hooks=hooks,
        limits=limits,
        queue=body.text("queue", None),
        priority_class=body.text("priorityClass", defaults.priority_class),
        requests_cpu=requests_cpu,
        requests_memory=requests_memory,
        autoscale=autoscale_from_document(body.raw("autoscale", None)),
        placement=_placement(body.raw("placement", None)),
        cpu_affinity=tuple(body.integers("cpuAffinity", ())),
        io_class=body.text("ioClass", None),
        sockets=read_sockets(body),
        strategy=read_strategy(body),
        location=location,
    )
    for reader in (metadata, body, backoff, shutdown, logs):
        reader.done()
    return spec


_PROBE_SCHEDULE = (
    ("initialDelaySeconds", "initial_delay_seconds"),
    ("periodSeconds", "period_seconds"),
    ("timeoutSeconds", "timeout_seconds"),
    ("successThreshold", "success_threshold"),
    ("failureThreshold", "failure_threshold"),
)


def socket_to_document(socket: Socket) -> JSONDict:
    """A socket as the manifest writes it; backlog and mode only when set (the schema has no null for them)."""
    document: JSONDict = {"name": socket.name, "listen": socket.listen}
    if socket.backlog is not None:
        document["backlog"] = socket.backlog
    document["reusePort"] = socket.reuse_port
    document["nonBlocking"] = socket.non_blocking
    if socket.mode is not None:
        document["mode"] = socket.mode
    return document


def read_sockets(body: Reader) -> tuple[Socket, ...]:
    """The `sockets` of a spec's body (a manifest's, validated, or spec_to_document's); ValueError if garbled."""
    sockets = []
    for item in body.readers("sockets"):
        sockets.append(Socket(name=item.text("name"), listen=item.text("listen"), backlog=item.integer("backlog", None),
                              reuse_port=item.flag("reusePort", Socket.reuse_port),
                              non_blocking=item.flag("nonBlocking", Socket.non_blocking), mode=item.text("mode", None)))
        item.done()
    return tuple(sockets)


def strategy_to_document(strategy: Strategy) -> JSONDict:
    """The manifest's `strategy` (the rest of a Strategy is three fields of the spec beside it). rollingUpdate
    holds only the values set (unset: the process's default, which depends on its sockets), and is left out
    of a Recreate with none, as the schema refuses it there."""
    rolling = {name: value for name, value in (("maxSurge", strategy.max_surge),
                                               ("maxUnavailable", strategy.max_unavailable)) if value is not None}
    document: JSONDict = {"type": strategy.type.value}
    if rolling or strategy.type is StrategyType.ROLLING_UPDATE:
        document["rollingUpdate"] = rolling
    document["onFailure"] = strategy.on_failure.value
    return document


_PERCENT = re.compile(r"[0-9]+%")


def _count_or_percent(reader: Reader, name: str) -> int | str | None:
    value = reader.raw(name, None)
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    if isinstance(value, str) and _PERCENT.fullmatch(value):
        return value
    raise ValueError(f"{reader.field(name)}: expected a count or a percentage such as '25%', got {value!r}")


def read_strategy(body: Reader) -> Strategy:
    """The Strategy of a spec's body: its `strategy`, minReadySeconds, progressDeadlineSeconds and
    revisionHistoryLimit (a manifest's, validated, or spec_to_document's); ValueError if garbled."""
    document = body.reader("strategy", {})
    rolling = document.reader("rollingUpdate", {})
    default = Strategy()
    strategy = Strategy(
        type=document.enum("type", StrategyType, default.type),
        max_surge=_count_or_percent(rolling, "maxSurge"),
        max_unavailable=_count_or_percent(rolling, "maxUnavailable"),
        on_failure=document.enum("onFailure", OnFailure, default.on_failure),
        min_ready_seconds=body.number("minReadySeconds", default.min_ready_seconds),
        progress_deadline_seconds=body.number("progressDeadlineSeconds", default.progress_deadline_seconds),
        revision_history_limit=body.integer("revisionHistoryLimit", default.revision_history_limit),
    )
    rolling.done()
    document.done()
    return strategy


_HOOK_FIELDS = {HookKind.PRE_START: "pre_start", HookKind.POST_START: "post_start", HookKind.PRE_STOP: "pre_stop"}


def hooks_from_document(document: object) -> Hooks:
    """Hooks from a validated manifest's (or spec_to_document's) `hooks`; ValueError if garbled."""
    if not isinstance(document, Mapping):
        raise ValueError(f"spec.hooks: expected a mapping, got {document!r}")  # noqa: TRY004 - garbled input
    found = {}
    for name, value in document.items():
        try:
            kind = HookKind(name)
            command = tuple(str(c) for c in value["exec"])
            timeout = float(value.get("timeoutSeconds", Hook.timeout_seconds))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"spec.hooks.{name}: {error}") from error
        found[_HOOK_FIELDS[kind]] = Hook(command, timeout)
    return Hooks(**found)


def _placement(document: object) -> Placement | None:
    if document is None:
        return None
    if not isinstance(document, dict):
        raise ValueError(f"spec.placement: expected a mapping, got {document!r}")  # noqa: TRY004 - garbled input
    try:
        return placement_from_document(document)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"spec.placement: {error}") from None


def autoscale_from_document(document: object) -> Autoscale | None:
    """An autoscale policy from a validated document (None when absent); ValueError if garbled."""
    if document is None:
        return None
    if not isinstance(document, Mapping):
        raise ValueError(f"spec.autoscale: expected a mapping, got {document!r}")  # noqa: TRY004 - garbled input
    try:
        return Autoscale(min=int(document["min"]), max=int(document["max"]),
                         target_cpu_percent=float(document["targetCPUPercent"]),
                         scale_up_seconds=float(document.get("scaleUpSeconds", Autoscale.scale_up_seconds)),
                         scale_down_seconds=float(document.get("scaleDownSeconds", Autoscale.scale_down_seconds)))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"spec.autoscale: {error}") from error


def limits_from_document(document: object) -> Limits:
    """Limits from a validated `resources` (quantities are parsed: `256Mi`, `500m`); ValueError if garbled."""
    if not isinstance(document, Mapping) or set(document) - {"limits", "requests"}:
        raise ValueError(f"spec.resources: expected {{limits: ..., requests: ...}}, got {document!r}")
    limits = document.get("limits", {})
    if not isinstance(limits, Mapping) or set(limits) - {"memory", "cpu", "openFiles", "processes"}:
        raise ValueError(f"spec.resources.limits: unexpected {limits!r}")
    return Limits(
        memory_bytes=parse_quantity(limits["memory"]) if "memory" in limits else None,
        cpu=parse_cpu(limits["cpu"]) if "cpu" in limits else None,
        open_files=int(limits["openFiles"]) if "openFiles" in limits else None,
        processes=int(limits["processes"]) if "processes" in limits else None,
    )


def requests_from_document(document: object) -> tuple[float | None, int | None]:
    """A Job's (cpu cores, memory bytes) requests from a validated `resources`, None where not given (quantities
    are parsed: `2Gi`, `500m`); ValueError if garbled."""
    requests = document.get("requests", {}) if isinstance(document, Mapping) else {}
    if not isinstance(requests, Mapping) or set(requests) - {"memory", "cpu"}:
        raise ValueError(f"spec.resources.requests: unexpected {requests!r}")
    return (parse_cpu(requests["cpu"]) if "cpu" in requests else None,
            parse_quantity(requests["memory"]) if "memory" in requests else None)


def probe_to_document(probe: Probe) -> JSONDict:
    """A probe as the manifest writes it: its one action, then its schedule."""
    action: JSONDict
    if probe.action is ProbeAction.EXEC:
        action = {"command": list(probe.command)}
    elif probe.action is ProbeAction.HTTP:
        action = {"port": probe.port, "host": probe.host, "path": probe.path, "headers": dict(probe.headers)}
    elif probe.action is ProbeAction.TCP:
        action = {"port": probe.port, "host": probe.host}
    elif probe.action is ProbeAction.NOTIFY:
        action = {}  # READY=1 on the replica's own $NOTIFY_SOCKET: nothing to say
    else:
        action = {"pattern": probe.pattern}
    document: JSONDict = {probe.action.value: action}
    for name, attribute in _PROBE_SCHEDULE:
        document[name] = getattr(probe, attribute)
    return document


def probe_from_document(document: Mapping[str, Any]) -> Probe:
    """A probe from a validated manifest's (or spec_to_document's) probe object; ValueError if garbled."""
    actions = [a for a in ProbeAction if a.value in document]
    if len(actions) != 1:
        raise ValueError(f"a probe needs exactly one of {', '.join(a.value for a in ProbeAction)}; got {sorted(document)}")
    action = actions[0]
    body = document[action.value]
    if not isinstance(body, Mapping):
        raise ValueError(f"probe {action.value}: expected a mapping")  # noqa: TRY004 - a garbled document
    if action is ProbeAction.NOTIFY and body:
        raise ValueError(f"probe notify: expected no fields, got {sorted(body)}")
    schedule = {attribute: document[name] for name, attribute in _PROBE_SCHEDULE if name in document}
    for attribute in ("initial_delay_seconds", "period_seconds", "timeout_seconds"):
        if attribute in schedule:
            schedule[attribute] = float(schedule[attribute])
    return Probe(
        action=action,
        command=tuple(str(c) for c in body.get("command", ())),
        host=str(body.get("host", Probe.host)),
        port=body["port"] if isinstance(body.get("port"), str) else int(body.get("port", 0)),
        path=str(body.get("path", Probe.path)),
        headers=tuple((str(k), str(v)) for k, v in body.get("headers", {}).items()),
        pattern=str(body.get("pattern", "")),
        **schedule,
    )


def _dependency(item: Reader) -> Dependency:
    dependency = Dependency(name=item.text("name"), condition=item.enum("condition", Condition, Condition.STARTED))
    item.done()
    return dependency


def location_to_json(location: Location | None) -> JSONDict | None:
    if location is None:
        return None
    return {"file": location.file, "line": location.line, "column": location.column}


def location_from_json(value: object, path: str = "location") -> Location | None:
    if value is None:
        return None
    reader = Reader(value, path)
    location = Location(reader.text("file"), reader.integer("line", 0), reader.integer("column", 0))
    reader.done()
    return location


def spec_to_json(spec: ProcessSpec) -> JSONDict:
    """The document and where it was read from (dependency locations are not kept: they only serve load errors)."""
    found: JSONDict = {"document": spec_to_document(spec), "location": location_to_json(spec.location)}
    if spec.stopped:  # held by `orchestrator stop`: the daemon's, not the manifest's
        found["stopped"] = True
    if spec.restart_nonce:  # asked by `orchestrator rollout restart`: the daemon's too
        found["restartNonce"] = spec.restart_nonce
    return found


def spec_from_json(value: object, path: str = "") -> ProcessSpec:
    reader = Reader(value, path)
    document = reader.raw("document")
    location = location_from_json(reader.raw("location", None), reader.field("location"))
    stopped = reader.raw("stopped", False) is True
    restart_nonce = reader.text("restartNonce", "")
    reader.done()
    try:
        spec = spec_from_document(document, location)
    except ValueError as error:
        raise ValueError(f"{reader.field('document')}: {error}") from None
    if stopped or restart_nonce:
        spec = dataclasses.replace(spec, stopped=stopped, restart_nonce=restart_nonce)
    return spec
