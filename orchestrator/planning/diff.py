"""PURE: field-level differences between two specs, and the one table of which fields need a restart.

Both `diff` output and the planner use FIELDS, so what a user is told and what the reconciler does can
never disagree. A test checks that every ProcessSpec field is in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.model import ProcessSpec


@dataclass(frozen=True)
class FieldRule:
    path: str  # the manifest path users know the field by
    restart: bool  # does changing it restart running replicas?


FIELDS: dict[str, FieldRule] = {
    "name": FieldRule("metadata.name", True),
    "namespace": FieldRule("metadata.namespace", True),
    "kind": FieldRule("kind", True),
    "labels": FieldRule("metadata.labels", False),
    "command": FieldRule("spec.command", True),
    "shell": FieldRule("spec.shell", True),
    "working_dir": FieldRule("spec.workingDir", True),
    "env": FieldRule("spec.env", True),
    "user": FieldRule("spec.user", True),
    # Scaling adds or removes replicas; it never restarts the ones that stay.
    "replicas": FieldRule("spec.replicas", False),
    # Priority orders starts and sets the nice value; a running process is reniced, not restarted.
    "priority": FieldRule("spec.priority", False),
    "restart_policy": FieldRule("spec.restartPolicy", False),
    "success_exit_codes": FieldRule("spec.successExitCodes", False),
    "backoff": FieldRule("spec.backoff", False),
    "max_restarts": FieldRule("spec.maxRestarts", False),
    "restart_window_seconds": FieldRule("spec.restartWindowSeconds", False),
    "backoff_limit": FieldRule("spec.backoffLimit", False),
    # The deadline is checked by the reconciler against the running Job: a new one applies to it as it runs.
    "active_deadline_seconds": FieldRule("spec.activeDeadlineSeconds", False),
    # Dependencies gate starting only; a running dependent keeps running.
    "depends_on": FieldRule("spec.dependsOn", False),
    "restart_with_dependency": FieldRule("spec.restartWithDependency", False),
    "shutdown": FieldRule("spec.shutdown", False),
    # Rotation is done by the orchestrator on the files; the process keeps writing to the same file.
    "logs": FieldRule("spec.logs", False),
    # Probes are run by the orchestrator against the running process: a new probe applies without a restart.
    "probes": FieldRule("spec.probes", False),
    # Hooks run at the next start; a running process is stopped with the preStop of the spec it started
    # under (it is that program that must be drained), so no restart is needed.
    "hooks": FieldRule("spec.hooks", False),
    "autoscale": FieldRule("spec.autoscale", False),
    # Set on the process when it starts (rlimits, affinity, I/O class): a change needs a new process.
    "limits": FieldRule("spec.resources.limits", True),
    "cpu_affinity": FieldRule("spec.cpuAffinity", True),
    "io_class": FieldRule("spec.ioClass", True),
    # The daemon's listening sockets are inherited at the start: new ones need a new process.
    "sockets": FieldRule("spec.sockets", True),
    # How a change rolls out is read by the planner as it goes: changing it never makes a revision.
    "strategy": FieldRule("spec.strategy", False),
    # Read when a Job is admitted to its queue: a running Job keeps running; a waiting one is ordered anew.
    # Read by the fleet's agents to choose the nodes; on a node the Process runs without it.
    "placement": FieldRule("spec.placement", False),
    "queue": FieldRule("spec.queue", False),
    "priority_class": FieldRule("spec.priorityClass", False),
    "requests_cpu": FieldRule("spec.resources.requests.cpu", False),
    "requests_memory": FieldRule("spec.resources.requests.memory", False),
    "restart_nonce": FieldRule("restart (orchestrator rollout restart)", True),
    "stopped": FieldRule("stopped (orchestrator stop / start)", False),
}
RESTART_FIELDS = tuple(name for name, rule in FIELDS.items() if rule.restart)


@dataclass(frozen=True)
class FieldChange:
    field: str  # attribute name on ProcessSpec
    path: str  # manifest path
    old: Any
    new: Any
    restart: bool


def changes(old: ProcessSpec, new: ProcessSpec) -> tuple[FieldChange, ...]:
    """Every field that differs, in table order."""
    if old is new or old == new:
        return ()
    return tuple(
        FieldChange(name, rule.path, getattr(old, name), getattr(new, name), rule.restart)
        for name, rule in FIELDS.items()
        if getattr(old, name) != getattr(new, name)
    )


def needs_restart(old: ProcessSpec, new: ProcessSpec) -> bool:
    """True when a process started from `old` must be restarted to run as `new`."""
    if old is new:
        return False
    return any(getattr(old, name) != getattr(new, name) for name in RESTART_FIELDS)
