"""Values of a Queue: the frozen spec of a host-level budget that Jobs are admitted under, and the priority
classes a Job names.

Built from a validated Queue document (manifests/queues.py), compared to tell "changed" from "unchanged",
stored as its manifest document. Defaults and units are written once, in schemas/queue.v1.json; the defaults
below mirror them (tested). Which Jobs start, wait or are preempted is planning/admission.py's to say: this
module knows no clock, and does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Location

QUEUE_KIND = "Queue"
# A Job's spec.priorityClass, highest first (planning/admission.py's Priority levels); a Job without one is Normal.
PRIORITY_CLASSES = ("Critical", "High", "Normal", "Low", "Background")
DEFAULT_PRIORITY_CLASS = "Normal"
PREEMPTIONS = ("Never", "Suspend", "Requeue")  # planning/admission.py's Preemption values


@dataclass(frozen=True)
class QueueSpec:
    """The desired state of one Queue: at most `max_concurrent` admitted Jobs running, the sum of their
    requests within `capacity_cpu` (cores) and `capacity_memory` (bytes), a waiting Job one priority level
    higher per `aging_seconds_per_level` waited, and what a blocked Job of a higher class may do to running
    lower ones (`preemption`, one of PREEMPTIONS). None is no limit (no aging). A Queue is host-level: it has
    no namespace. `location` says where the document is and takes no part in comparisons."""

    name: str
    max_concurrent: int | None = None
    capacity_cpu: float | None = None
    capacity_memory: int | None = None
    aging_seconds_per_level: float | None = None
    preemption: str = "Never"
    metadata_labels: tuple[tuple[str, str], ...] = ()  # metadata.labels, for `get -l`
    location: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """`queue/NAME`: unique among the Queues, apart from processes' keys."""
        return f"queue/{self.name}"
