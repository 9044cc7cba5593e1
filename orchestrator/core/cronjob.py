"""Values of a CronJob: the frozen spec of a Job run on a schedule, and the Job each of its runs is.

Built from a validated CronJob document (manifests/cronjobs.py), compared to tell "changed" from "unchanged",
stored as its manifest document. Defaults and units are written once, in schemas/cronjob.v1.json; the defaults
below mirror them (tested). When a run is due is planning/cron.py's to say, from these fields: this module
knows no clock, and does no I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import Location
from .model import DEFAULT_NAMESPACE, ProcessSpec

CRONJOB_KIND = "CronJob"
RUN_LABEL = "orchestrator.cronjob"  # every run carries it, set to its CronJob's name
CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")  # planning/cron.py's ConcurrencyPolicy values


@dataclass(frozen=True)
class CronJobSpec:
    """The desired state of one CronJob: when its runs are due (`schedule`, a 5-field cron expression read in
    `time_zone`, or `interval_seconds`: exactly one of the two), what a due run does while another is active
    (`concurrency_policy`, one of CONCURRENCY_POLICIES), how late a missed run may still start
    (`starting_deadline_seconds`, None: always, once), how many finished runs are kept, and `job`: the Job of
    its jobTemplate, built as a Job document of the CronJob's name, namespace and labels would be (env merged
    over envFrom, working_dir absolute, located at the CronJob). `time_zone` None is the host's local zone.
    `location` says where the document is and takes no part in comparisons."""

    name: str
    job: ProcessSpec
    namespace: str = DEFAULT_NAMESPACE
    schedule: str | None = None
    interval_seconds: float | None = None
    time_zone: str | None = None
    concurrency_policy: str = "Allow"
    starting_deadline_seconds: float | None = None
    successful_jobs_history_limit: int = 3
    failed_jobs_history_limit: int = 1
    suspend: bool = False
    metadata_labels: tuple[tuple[str, str], ...] = ()  # metadata.labels, for `get -l` (the runs have them too)
    location: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """`namespace/name`: unique among the CronJobs."""
        return f"{self.namespace}/{self.name}"

    def run(self, scheduled: float) -> ProcessSpec:
        """The Job of the run due at `scheduled` (seconds since the epoch): `<name>-<whole seconds>`, as
        planning/cron.py's run_name names it, labelled RUN_LABEL=name beside the CronJob's labels."""
        labels = dict(self.job.labels)
        labels[RUN_LABEL] = self.name
        return dataclasses.replace(self.job, name=f"{self.name}-{int(scheduled)}", labels=tuple(sorted(labels.items())))
