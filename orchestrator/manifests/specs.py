"""A Process or Job document, validated, to its frozen ProcessSpec: the one place a manifest's fields become the
model's, with the model's defaults where a field is absent (they mirror the schemas': tested in test_schema).

Used by the loader for Process and Job documents, and by cronjobs.py for a CronJob's jobTemplate, built as a
Job document of its own. Never: validation (the loader's, before), reading files (envFrom comes in read, as
`env`); a relative workingDir is joined to the document's folder, as a path, without looking at it.
"""

from __future__ import annotations

import os
from typing import Any

from ..core.fleet import placement_from_document
from ..core.model import (
    Backoff,
    Condition,
    Dependency,
    Kind,
    LogPolicy,
    Probes,
    ProcessSpec,
    RestartPolicy,
    Shutdown,
)
from ..core.reader import Reader
from ..core.units import parse_quantity
from .codec import (
    autoscale_from_document,
    hooks_from_document,
    limits_from_document,
    probe_from_document,
    read_sockets,
    read_strategy,
    requests_from_document,
)
from .documents import Document, FieldPath


def build_spec(doc: Document, value: dict[str, Any], env: dict[str, str], at: FieldPath = ("spec",)) -> ProcessSpec:
    """The spec of a Process or Job document validated (schema, rules, envFrom read into `env`), located where
    it starts. `at`: where `value["spec"]` is written in `doc`, for the dependencies' locations (a CronJob's
    jobTemplate, built as a Job document of its own: spec.jobTemplate)."""
    metadata: dict[str, Any] = value["metadata"]
    spec: dict[str, Any] = value["spec"]
    command = spec["command"]
    backoff = spec.get("backoff", {})
    shutdown = spec.get("shutdown", {})
    logs = spec.get("logs", {})
    folder = os.path.abspath(os.path.dirname(doc.file))
    body = Reader(spec, "spec")  # validated: the typed reads cannot fail
    defaults = ProcessSpec(name="", command=())  # the model's defaults mirror the schemas' (tested)
    requests_cpu, requests_memory = requests_from_document(spec.get("resources", {}))
    return ProcessSpec(
        name=metadata["name"],
        namespace=metadata.get("namespace", defaults.namespace),
        kind=Kind(value["kind"]),
        labels=tuple(sorted(metadata.get("labels", {}).items())),
        command=(command,) if isinstance(command, str) else tuple(command),
        shell=spec.get("shell", defaults.shell),
        working_dir=os.path.normpath(os.path.join(folder, spec.get("workingDir", "."))),
        env=tuple(sorted(env.items())),
        user=spec.get("user"),
        # An autoscaled pool starts at its minimum; the autoscaler moves it from there.
        replicas=int(spec["autoscale"]["min"]) if "autoscale" in spec else int(spec.get("replicas", defaults.replicas)),
        priority=int(spec.get("priority", defaults.priority)),
        restart_policy=RestartPolicy(spec.get("restartPolicy", defaults.restart_policy)),
        success_exit_codes=tuple(int(c) for c in spec.get("successExitCodes", defaults.success_exit_codes)),
        backoff=Backoff(
            initial_seconds=float(backoff.get("initialSeconds", Backoff.initial_seconds)),
            max_seconds=float(backoff.get("maxSeconds", Backoff.max_seconds)),
            multiplier=float(backoff.get("multiplier", Backoff.multiplier)),
            reset_after_seconds=float(backoff.get("resetAfterSeconds", Backoff.reset_after_seconds)),
        ),
        max_restarts=int(spec["maxRestarts"]) if "maxRestarts" in spec else None,
        restart_window_seconds=float(spec.get("restartWindowSeconds", defaults.restart_window_seconds)),
        backoff_limit=int(spec.get("backoffLimit", defaults.backoff_limit)),
        active_deadline_seconds=(float(spec["activeDeadlineSeconds"]) if "activeDeadlineSeconds" in spec else None),
        depends_on=tuple(
            Dependency(
                name=item["name"],
                condition=Condition(item.get("condition", Condition.STARTED)),
                location=doc.at((*at, "dependsOn", index)),
            )
            for index, item in enumerate(spec.get("dependsOn", ()))
        ),
        restart_with_dependency=bool(spec.get("restartWithDependency", False)),
        shutdown=Shutdown(
            signal=shutdown.get("signal", Shutdown.signal),
            timeout_seconds=float(shutdown.get("timeoutSeconds", Shutdown.timeout_seconds)),
        ),
        logs=LogPolicy(
            max_bytes=parse_quantity(logs.get("maxBytes", LogPolicy.max_bytes)),
            keep=int(logs.get("keep", LogPolicy.keep)),
        ),
        probes=Probes(**{kind: probe_from_document(spec["probes"][kind])
                         for kind in ("startup", "readiness", "liveness") if kind in spec.get("probes", {})}),
        hooks=hooks_from_document(spec.get("hooks", {})),
        limits=limits_from_document(spec.get("resources", {})),
        queue=spec.get("queue"),
        priority_class=spec.get("priorityClass", defaults.priority_class),
        requests_cpu=requests_cpu,
        requests_memory=requests_memory,
        autoscale=autoscale_from_document(spec.get("autoscale")),
        placement=placement_from_document(spec["placement"]) if "placement" in spec else None,
        cpu_affinity=tuple(spec.get("cpuAffinity", ())),
        io_class=spec.get("ioClass"),
        sockets=read_sockets(body),
        strategy=read_strategy(body),
        location=doc.keys.get(("apiVersion",)) or doc.at(()),
    )
