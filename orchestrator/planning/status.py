"""PURE: the status documents of `get` and `describe`, built from run state.

Turns (desired specs, records, waiting replicas) into plain JSON-able dicts, the shape the API serves and
cli/render prints (documented in the README). Monotonic times become wall times through `wall_offset`
(wall - monotonic, read once by the caller). Never reads a clock, never touches a process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.model import DesiredState, Exit, Kind, Phase, ProcessSpec, ReplicaId, ReplicaRecord
from .plan import Waiting
from .policy import Step, is_ready, next_step

# The object's state is its least healthy replica's phase, in this order.
_SEVERITY = [Phase.FAILED, Phase.BACKOFF, Phase.STOPPING, Phase.WAITING, Phase.PENDING, Phase.RUNNING,
             Phase.SUCCEEDED]


def replica_phase(record: ReplicaRecord | None, waiting: Waiting | None) -> Phase:
    if record is not None and record.process is not None:
        return Phase.STOPPING if record.stop_requested_at is not None else Phase.RUNNING
    if waiting is not None:
        return waiting.phase
    return Phase.PENDING


def settled_phase(spec: ProcessSpec, record: ReplicaRecord | None, waiting: Waiting | None) -> Phase:
    """replica_phase, but Succeeded or Failed at once for a replica that has just exited for good (before
    the pass that notes it: what looks at an exit event sees how it ended)."""
    if record is not None and record.process is None and record.last_exit is not None:
        step = next_step(spec, record).step
        if step is Step.SUCCEEDED:
            return Phase.SUCCEEDED
        if step is Step.FAILED:
            return Phase.FAILED
    return replica_phase(record, waiting)


def objects(
    desired: DesiredState,
    records: Mapping[ReplicaId, ReplicaRecord],
    waiting: Mapping[ReplicaId, Waiting],
    wall_offset: float,
    created: Mapping[str, float] | None = None,
    limits_by: str = "watchdog",
) -> list[dict[str, Any]]:
    """One document per object: desired ones in start order, then ones still stopping after removal.

    `limits_by` is how memory and cpu limits are enforced on this host ("cgroup v1", "cgroup v2" or
    "watchdog"); an object whose running replicas did not all get a cgroup is said to be watched."""
    by_key: dict[str, list[ReplicaId]] = {}
    for rid in records:
        by_key.setdefault(rid.key, []).append(rid)
    documents = []
    for key in desired.start_order:
        documents.append(_object(desired.specs[key], by_key.get(key, []), records, waiting, wall_offset, created,
                                 limits_by))
    for key in sorted(set(by_key) - set(desired.specs)):
        spec = records[by_key[key][0]].spec
        document = _object(spec, by_key[key], records, waiting, wall_offset, created, limits_by)
        document["replicas"]["desired"] = 0
        document["state"] = "Removing"
        documents.append(document)
    return documents


def _object(
    spec: ProcessSpec,
    rids: list[ReplicaId],
    records: Mapping[ReplicaId, ReplicaRecord],
    waiting: Mapping[ReplicaId, Waiting],
    wall_offset: float,
    created: Mapping[str, float] | None,
    limits_by: str,
) -> dict[str, Any]:
    indexes = sorted({rid.index for rid in rids} | set(range(spec.replicas)))
    replicas = []
    ready = 0
    for index in indexes:
        rid = ReplicaId(spec.key, index)
        record = records.get(rid)
        document = _replica(index, record, waiting.get(rid), wall_offset)
        document["ready"] = record is not None and is_ready(spec, record)
        ready += document["ready"] and index < spec.replicas
        replicas.append(document)
    phases = [Phase(r["phase"]) for r in replicas if r["index"] < spec.replicas] or [Phase.SUCCEEDED]
    running = sum(1 for r in replicas if r["phase"] == Phase.RUNNING.value and r["index"] < spec.replicas)
    succeeded = sum(1 for r in replicas if r["phase"] == Phase.SUCCEEDED.value)
    state = min(phases, key=_SEVERITY.index)
    if spec.replicas == 0:
        state = Phase.SUCCEEDED if spec.kind is Kind.JOB else Phase.RUNNING
    shown = state.value
    if spec.stopped:  # held by `orchestrator stop`: Stopped once nothing of it runs
        for document in replicas:
            if document["pid"] is None:
                document["phase"] = "Stopped"
        shown = "Stopping" if any(r["pid"] is not None for r in replicas) else "Stopped"
    return {
        "key": spec.key,
        "name": spec.name,
        "namespace": spec.namespace,
        "kind": spec.kind.value,
        "labels": dict(spec.labels),
        "state": shown,
        "replicas": {
            "desired": spec.replicas,
            "running": running,
            # Ready: past its readiness probe (running, without one); a Job once it succeeded.
            "ready": succeeded if spec.kind is Kind.JOB else ready,
        },
        "restarts": sum(r["restarts"] for r in replicas),
        "created_at": (created or {}).get(spec.key),
        "command": list(spec.command),
        "limits": spec.limits.enforcement(_limits_by(rids, records, limits_by)),
        "replica_status": replicas,
    }


def _limits_by(rids: list[ReplicaId], records: Mapping[ReplicaId, ReplicaRecord], host: str) -> str:
    running = [records[rid] for rid in rids if rid in records and records[rid].process is not None]
    return host if all(record.cgroup for record in running) else "watchdog"


def _replica(index: int, record: ReplicaRecord | None, waiting: Waiting | None, wall_offset: float) -> dict[str, Any]:
    phase = replica_phase(record, waiting)
    alive = record is not None and record.process is not None
    return {
        "index": index,
        "phase": phase.value,
        "pid": record.process.pid if alive and record and record.process else None,
        "started_at": _wall(record.started_at, wall_offset) if alive and record else None,
        "restarts": record.restarts if record else 0,
        "reason": waiting.reason if waiting is not None and not alive else "",
        "next_try_at": _wall(waiting.until, wall_offset) if waiting is not None and not alive else None,
        "last_exit": _exit(record.last_exit, wall_offset) if record and record.last_exit else None,
        "cgroup": (record.cgroup or None) if alive and record else None,
    }


def _exit(exit: Exit, wall_offset: float) -> dict[str, Any]:
    return {
        "code": exit.code,
        "signal": exit.signal,
        "reason": exit.reason.value,
        "at": exit.at + wall_offset,
        "ran_seconds": exit.ran_seconds,
        "message": exit.message,
    }


def _wall(monotonic: float | None, wall_offset: float) -> float | None:
    return None if monotonic is None else monotonic + wall_offset
