"""CronJob documents: the rules their schema cannot say, the frozen specs built from them, and their documents
again.

The schema (schemas/cronjob.v1.json) says the shape, exactly one of schedule and intervalSeconds among it; its
jobTemplate is a Job's spec, the same fields and defaults as schemas/job.v1.json's (tested). The rules here:
a cron schedule cronsim cannot read or that has not 5 fields, a time zone zoneinfo does not know (as
planning/cron.py's schedule_problems, worded as a GitSync's sync windows are), the label every run carries set
by hand, and in the jobTemplate every rule of a Job's spec (rules.check_rules), each problem located at its
field under spec.jobTemplate. The jobTemplate is built into a Job ProcessSpec by specs.build_spec, as the
loader builds a Job document of the CronJob's name, namespace and labels with that spec: envFrom read relative
to the manifest's folder (loader.py reads it), env over it, a Job's defaults, the CronJob's location.

The loader (loader.py) validates and builds them with check_cronjob_rules and build_cronjob; documents that
come as plain dicts (the daemon's store, a client's request) go through kept_from_document, and back with
cronjob_to_document. Never: deciding when a run is due (planning/cron.py), starting runs (the daemon).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..core.cronjob import CRONJOB_KIND, RUN_LABEL, CronJobSpec
from ..core.errors import Location, Problem
from ..core.model import DEFAULT_NAMESPACE, Kind, ProcessSpec
from ..planning import cron
from .codec import API_VERSION, spec_to_document
from .documents import Document, FieldPath, dotted
from .rules import _nul_paths, check_rules
from .specs import build_spec
from .stored import checked_document

CRONJOB_KEPT_BY_DAEMON = "a CronJob is kept by the daemon: apply it with `orchestrator apply`"
TEMPLATE: FieldPath = ("spec", "jobTemplate")  # where a CronJob's Job spec is
RUN_LABEL_GIVEN = (f"{RUN_LABEL!r} is the label every run carries, set to the CronJob's name: choose another "
                   "name")


def _number(value: object) -> float | None:
    """A number the schema took for one (a bool is not), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value and "\0" not in value else None


def check_cronjob_rules(doc: Document, spec: dict[str, Any]) -> list[Problem]:
    """The rules of a CronJob's spec that JSON Schema cannot say (the module's docstring lists them), each
    problem located at its field; those of its jobTemplate at spec.jobTemplate.FIELD."""
    from .gitsyncs import schedule_problem, time_zone_problem  # the words of a sync window's schedule and zone

    others = {key: value for key, value in spec.items() if key != "jobTemplate"}
    found: list[tuple[FieldPath, str]] = [(path, "contains a NUL character") for path in _nul_paths(others, ("spec",))]
    schedule, zone = _text(spec.get("schedule")), _text(spec.get("timeZone"))
    # planning/cron.py's verdict is the daemon's: what it refuses is refused here, in a sync window's words.
    # Exactly one of schedule and intervalSeconds, and the bounds of numbers, are the schema's to say.
    verdict = {field for field, _ in cron.schedule_problems(cron.Schedule(cron=schedule, time_zone=zone))}
    worded = schedule_problem(schedule) if schedule is not None else None
    if schedule is not None and (worded is not None or "schedule" in verdict):
        found.append((("spec", "schedule"), worded or f"{schedule!r} is not a cron schedule cronsim can read"))
    if zone is not None and "timeZone" in verdict:
        found.append((("spec", "timeZone"), time_zone_problem(zone) or f"not an IANA time zone: {zone!r}"))
    problems = [Problem(doc.at(where), dotted(where), message) for where, message in found]
    metadata = doc.value.get("metadata") if isinstance(doc.value, dict) else None
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    if isinstance(labels, dict) and RUN_LABEL in labels:
        where = ("metadata", "labels", RUN_LABEL)
        problems.append(Problem(doc.key_at(where), dotted(where), RUN_LABEL_GIVEN))
    template = spec.get("jobTemplate")
    if isinstance(template, dict):
        problems += check_rules(doc, template, TEMPLATE)
    return problems


def build_cronjob(doc: Document, value: dict[str, Any], env: Mapping[str, str]) -> CronJobSpec:
    """The spec of a CronJob document the loader validated (schema, rules, envFrom read into `env`), located
    where it starts; its jobTemplate built by specs.build_spec, as a Job's is, from job_document's Job."""
    job = build_spec(doc, job_document(value), dict(env), TEMPLATE)
    return _build(value, job, doc.keys.get(("apiVersion",)) or doc.at(()))


def job_document(value: Mapping[str, Any]) -> dict[str, Any]:
    """The Job document a CronJob's jobTemplate is: the CronJob's name, namespace and labels, the template as
    its spec."""
    metadata: Mapping[str, Any] = value["metadata"]
    job_metadata = {key: metadata[key] for key in ("name", "namespace", "labels") if key in metadata}
    return {"apiVersion": value["apiVersion"], "kind": Kind.JOB.value, "metadata": job_metadata,
            "spec": value["spec"]["jobTemplate"]}


def _build(value: Mapping[str, Any], job: ProcessSpec, location: Location | None) -> CronJobSpec:
    metadata: Mapping[str, Any] = value["metadata"]
    spec: Mapping[str, Any] = value["spec"]
    defaults = CronJobSpec(name="", job=job)  # they mirror the schema's (tested)
    interval, deadline = spec.get("intervalSeconds"), spec.get("startingDeadlineSeconds")
    return CronJobSpec(
        name=metadata["name"],
        namespace=metadata.get("namespace", DEFAULT_NAMESPACE),
        schedule=spec.get("schedule"),
        interval_seconds=float(interval) if interval is not None else None,
        time_zone=spec.get("timeZone"),
        concurrency_policy=str(spec.get("concurrencyPolicy", defaults.concurrency_policy)),
        starting_deadline_seconds=float(deadline) if deadline is not None else None,
        successful_jobs_history_limit=int(spec.get("successfulJobsHistoryLimit",
                                                   defaults.successful_jobs_history_limit)),
        failed_jobs_history_limit=int(spec.get("failedJobsHistoryLimit", defaults.failed_jobs_history_limit)),
        suspend=bool(spec.get("suspend", defaults.suspend)),
        job=dataclasses.replace(job, location=location),
        metadata_labels=tuple(sorted(metadata.get("labels", {}).items())),
        location=location,
    )


# --- from a plain dict, and back ------------------------------------------------------------------------------

NOT_FROM_A_FILE = {
    "envFrom": "envFrom names files beside a manifest file: a document not read from one gives env",
    "workingDir": "an absolute workingDir is required of a document not read from a file (it has no folder)",
}


def kept_from_document(document: Mapping[str, Any], where: str = "<request>") -> CronJobSpec:
    """The spec of a CronJob document given as a plain dict (the daemon's store, a client's request), checked
    against the same schema and rules as a manifest file's; raises ManifestError with every problem, each at
    `where` and its field path. Having no file, its jobTemplate must give an absolute workingDir and may not
    name envFrom files (cronjob_to_document writes env merged, and workingDir)."""
    _, value, location = checked_document(document, where, {CRONJOB_KIND: _stored_rules})
    template = value["spec"]["jobTemplate"]
    doc = Document(where, value=value)
    return _build(value, build_spec(doc, job_document(value), dict(template.get("env", {})), TEMPLATE), location)


def _stored_rules(doc: Document, spec: dict[str, Any]) -> list[Problem]:
    """A stored CronJob's rules: a manifest's, and what a document without a file cannot have."""
    rules = check_cronjob_rules(doc, spec)
    template = spec.get("jobTemplate")
    if isinstance(template, dict):
        working = template.get("workingDir")
        for field, wrong in (("envFrom", "envFrom" in template),
                             ("workingDir", not (isinstance(working, str) and working.startswith("/")))):
            if wrong:
                rules.append(Problem(doc.at(()), dotted((*TEMPLATE, field)), NOT_FROM_A_FILE[field]))
    return rules


def _seconds(value: float) -> float | int:
    """60.0 as 60: the document reads as it would be written."""
    return int(value) if float(value).is_integer() else value


def cronjob_to_document(spec: CronJobSpec) -> dict[str, Any]:
    """The manifest document of `spec`, the CronJob's own defaults left out, its jobTemplate as
    codec.spec_to_document writes a Job's spec (every field, env merged, workingDir absolute);
    kept_from_document reads it back to an equal spec."""
    defaults = CronJobSpec(name="", job=spec.job)
    body: dict[str, Any] = {}
    if spec.schedule is not None:
        body["schedule"] = spec.schedule
    if spec.interval_seconds is not None:
        body["intervalSeconds"] = _seconds(spec.interval_seconds)
    if spec.time_zone is not None:
        body["timeZone"] = spec.time_zone
    if spec.concurrency_policy != defaults.concurrency_policy:
        body["concurrencyPolicy"] = spec.concurrency_policy
    if spec.starting_deadline_seconds is not None:
        body["startingDeadlineSeconds"] = _seconds(spec.starting_deadline_seconds)
    for name, given, default in (
        ("successfulJobsHistoryLimit", spec.successful_jobs_history_limit, defaults.successful_jobs_history_limit),
        ("failedJobsHistoryLimit", spec.failed_jobs_history_limit, defaults.failed_jobs_history_limit),
        ("suspend", spec.suspend, defaults.suspend),
    ):
        if given != default:
            body[name] = given
    body["jobTemplate"] = spec_to_document(spec.job)["spec"]
    metadata: dict[str, Any] = {"name": spec.name}
    if spec.namespace != DEFAULT_NAMESPACE:
        metadata["namespace"] = spec.namespace
    if spec.metadata_labels:
        metadata["labels"] = dict(spec.metadata_labels)
    return {"apiVersion": API_VERSION, "kind": CRONJOB_KIND, "metadata": metadata, "spec": body}
