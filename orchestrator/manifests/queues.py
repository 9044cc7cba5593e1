"""Queue documents: the rules their schema cannot say, the frozen specs built from them, their documents again,
and the check of the Jobs of the same load against the Queues they name.

The schema (schemas/queue.v1.json) says the shape; a capacity's cpu and memory are quantities spelled as a
Job's limits are (the same patterns, read by core/units.py's parse_cpu and parse_quantity). The rules here: a
quantity's value ("0" cores, 0 bytes, `8GB`), each problem located at its field. A Job's spec.queue,
spec.priorityClass and spec.resources.requests are a Job's fields (schemas/job.v1.json, built by specs.py); a
Job whose requests can never fit the capacity of a Queue of the same load is refused at its request
(check_requests, in planning/admission.py's words). A Job naming a Queue not in the load is not judged: the
daemon may keep it from another apply.

The loader (loader.py) validates and builds them with check_queue_rules and build_queue; documents that come
as plain dicts (the daemon's store, a client's request) go through kept_from_document, and back with
queue_to_document. Never: admitting, suspending or stopping Jobs (planning/admission.py, the daemon).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..core.errors import Location, Problem
from ..core.model import ProcessSpec
from ..core.queue import QUEUE_KIND, QueueSpec
from ..core.units import parse_cpu, parse_quantity
from ..planning.admission import Preemption, QueuePolicy, fits_ever
from .codec import API_VERSION
from .documents import Document, FieldPath, dotted
from .rules import _nul_paths
from .stored import checked_document, number

QUEUE_KEPT_BY_DAEMON = "a Queue is kept by the daemon: apply it with `orchestrator apply`"
CAPACITY: FieldPath = ("spec", "capacity")


def check_queue_rules(doc: Document, spec: dict[str, Any]) -> list[Problem]:
    """The rules of a Queue's spec that JSON Schema cannot say (the module's docstring lists them), each
    problem located at its field."""
    found: list[tuple[FieldPath, str]] = [(path, "contains a NUL character") for path in _nul_paths(spec, ("spec",))]
    capacity = spec.get("capacity")
    for name, parse in (("cpu", parse_cpu), ("memory", parse_quantity)):
        value = capacity.get(name) if isinstance(capacity, dict) else None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            continue  # absent, or the schema's to say
        try:
            amount = parse(value)
        except ValueError as error:
            found.append(((*CAPACITY, name), str(error)))
            continue
        if name == "memory" and amount < 1:
            found.append(((*CAPACITY, name), f"must be at least 1 byte, got {value!r}"))
    return [Problem(doc.at(where), dotted(where), message) for where, message in found]


def build_queue(doc: Document, value: dict[str, Any]) -> QueueSpec:
    """The spec of a Queue document the loader validated (schema and rules), located where it starts."""
    return _build(value, doc.keys.get(("apiVersion",)) or doc.at(()))


def _build(value: Mapping[str, Any], location: Location | None) -> QueueSpec:
    metadata: Mapping[str, Any] = value["metadata"]
    spec: Mapping[str, Any] = value["spec"]
    capacity: Mapping[str, Any] = spec.get("capacity", {})
    defaults = QueueSpec(name="")  # they mirror the schema's (tested)
    concurrent, aging = spec.get("maxConcurrent"), spec.get("agingSecondsPerLevel")
    return QueueSpec(
        name=metadata["name"],
        max_concurrent=int(concurrent) if concurrent is not None else None,
        capacity_cpu=parse_cpu(capacity["cpu"]) if "cpu" in capacity else None,
        capacity_memory=parse_quantity(capacity["memory"]) if "memory" in capacity else None,
        aging_seconds_per_level=float(aging) if aging is not None else None,
        preemption=str(spec.get("preemption", defaults.preemption)),
        metadata_labels=tuple(sorted(metadata.get("labels", {}).items())),
        location=location,
    )


def queue_policy(spec: QueueSpec) -> QueuePolicy:
    """The budget planning/admission.py admits a Queue's Jobs under."""
    return QueuePolicy(name=spec.name, max_concurrent=spec.max_concurrent, capacity_cpu=spec.capacity_cpu,
                       capacity_memory=spec.capacity_memory, aging_seconds_per_level=spec.aging_seconds_per_level,
                       preemption=Preemption(spec.preemption))


# --- the Jobs of the same load -------------------------------------------------------------------------------

REQUESTS: FieldPath = ("spec", "resources", "requests")


def check_requests(jobs: Iterable[tuple[ProcessSpec, Mapping[str, Location], FieldPath]],
                   queues: Sequence[QueueSpec]) -> list[Problem]:
    """Jobs whose requests can never fit the capacity of the Queue they name, that Queue in the same load: a
    problem at each request over it. `jobs`: each Job spec with where its requests' cpu and memory are written
    (by field name; absent: the Job's start) and the path of its requests (a CronJob's: under jobTemplate)."""
    by_name = {queue.name: queue for queue in queues}
    problems = []
    for spec, where, path in jobs:
        queue = by_name.get(spec.queue) if spec.queue is not None else None
        if queue is None:
            continue  # not queued, or a Queue of another apply: the daemon's to judge
        policy = queue_policy(queue)
        for name, verdict in (("cpu", fits_ever(policy, spec.requests_cpu or 0.0, 0)),
                              ("memory", fits_ever(policy, 0.0, spec.requests_memory or 0))):
            if verdict is not None:
                at = where.get(name) or spec.location or Location("<unknown>")
                problems.append(Problem(at, dotted((*path, name)), f"{verdict}: it could never run"))
    return problems


# --- from a plain dict, and back ------------------------------------------------------------------------------


def kept_from_document(document: Mapping[str, Any], where: str = "<request>") -> QueueSpec:
    """The spec of a Queue document given as a plain dict (the daemon's store, a client's request), checked
    against the same schema and rules as a manifest file's; raises ManifestError with every problem, each at
    `where` and its field path."""
    _, value, location = checked_document(document, where, {QUEUE_KIND: check_queue_rules})
    return _build(value, location)



def queue_to_document(spec: QueueSpec) -> dict[str, Any]:
    """The manifest document of `spec`, the Queue's own defaults left out, quantities in cores and bytes;
    kept_from_document reads it back to an equal spec."""
    defaults = QueueSpec(name="")
    body: dict[str, Any] = {}
    if spec.max_concurrent is not None:
        body["maxConcurrent"] = spec.max_concurrent
    capacity: dict[str, Any] = {}
    if spec.capacity_cpu is not None:
        capacity["cpu"] = number(spec.capacity_cpu)
    if spec.capacity_memory is not None:
        capacity["memory"] = spec.capacity_memory
    if capacity:
        body["capacity"] = capacity
    if spec.aging_seconds_per_level is not None:
        body["agingSecondsPerLevel"] = number(spec.aging_seconds_per_level)
    if spec.preemption != defaults.preemption:
        body["preemption"] = spec.preemption
    metadata: dict[str, Any] = {"name": spec.name}
    if spec.metadata_labels:
        metadata["labels"] = dict(spec.metadata_labels)
    return {"apiVersion": API_VERSION, "kind": QUEUE_KIND, "metadata": metadata, "spec": body}
