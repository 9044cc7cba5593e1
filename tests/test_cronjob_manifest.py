"""CronJob documents: schemas/cronjob.v1.json, the rules of manifests/cronjobs.py, the spec the loader builds
(core/cronjob.py) with its jobTemplate built as a Job document's spec would be, the runs it makes, and the
document it goes back to for the daemon's store."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.core.cronjob import RUN_LABEL, CronJobSpec
from orchestrator.core.errors import Location, ManifestError, Problem
from orchestrator.core.model import Dependency, Kind, ProcessSpec
from orchestrator.manifests.cache import SpecCache
from orchestrator.manifests.cronjobs import (
    CRONJOB_KEPT_BY_DAEMON,
    cronjob_to_document,
    kept_from_document,
)
from orchestrator.manifests.files import ReadLimits, Source
from orchestrator.manifests.loader import KeptSpec, kept_key, kept_kind, load_sources
from orchestrator.manifests.schema import _schema_dir, full_validator, is_valid, schemas
from orchestrator.planning import cron

FILE = "deploy/cron.yaml"
FOLDER = os.path.abspath("deploy")


def cronjob(spec: str = "schedule: '*/15 * * * *'\njobTemplate:\n  command: [./backup.sh]", name: str = "backup",
            namespace: str | None = "shop", labels: str = "") -> str:
    metadata = f"  name: {name}\n" + (f"  namespace: {namespace}\n" if namespace else "") + (
        f"  labels: {labels}\n" if labels else "")
    return (f"apiVersion: orchestrator/v1\nkind: CronJob\nmetadata:\n{metadata}"
            f"spec:\n{textwrap.indent(textwrap.dedent(spec).rstrip(chr(10)) + chr(10), '  ')}")


def job(spec: str = "command: [./backup.sh]", name: str = "backup", namespace: str = "shop", labels: str = "") -> str:
    metadata = f"  name: {name}\n  namespace: {namespace}\n" + (f"  labels: {labels}\n" if labels else "")
    return (f"apiVersion: orchestrator/v1\nkind: Job\nmetadata:\n{metadata}"
            f"spec:\n{textwrap.indent(textwrap.dedent(spec).rstrip(chr(10)) + chr(10), '  ')}")


def load(text: str, cache: SpecCache | None = None, file: str = FILE) -> tuple[Any, list[KeptSpec]]:
    kept: list[KeptSpec] = []
    specs = load_sources([Source(file, text)], ReadLimits(), cache, kept=kept)
    return specs, kept


def problems_of(text: str, kept: list[KeptSpec] | None = None) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        load_sources([Source(FILE, text)], ReadLimits(), kept=kept)
    return list(caught.value.problems)


def at(text: str, marker: str) -> Location:
    """Where `marker` is first written in `text`."""
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return Location(FILE, number, line.index(marker) + 1)
    raise AssertionError(f"{marker!r} is not in the text")


# --- valid documents -----------------------------------------------------------------------------------------

FULL = cronjob("""\
schedule: "*/15 * * * *"
timeZone: Europe/Berlin
concurrencyPolicy: Forbid
startingDeadlineSeconds: 300
successfulJobsHistoryLimit: 5
failedJobsHistoryLimit: 0
suspend: true
jobTemplate:
  command: [./backup.sh, --all]
  env: {TARGET: s3}
  backoffLimit: 2
  priority: 10
  resources: {limits: {memory: 64Mi}}
""", labels="{team: ops}")


def test_a_full_cronjob_builds_every_field() -> None:
    specs, kept = load(FULL)
    assert specs == ()
    (built,) = kept
    assert isinstance(built, CronJobSpec)
    assert built == CronJobSpec(
        name="backup", namespace="shop", schedule="*/15 * * * *", time_zone="Europe/Berlin",
        concurrency_policy="Forbid", starting_deadline_seconds=300.0, successful_jobs_history_limit=5,
        failed_jobs_history_limit=0, suspend=True, metadata_labels=(("team", "ops"),), job=built.job)
    assert (built.key, kept_key(built), kept_kind(built), built.location) == (
        "shop/backup", "cronjob/shop/backup", "CronJob", Location(FILE, 1, 1))
    # The jobTemplate is the Job a Job document of the CronJob's name, namespace and labels would be.
    (as_job,) = load_sources([Source(FILE, job("command: [./backup.sh, --all]\nenv: {TARGET: s3}\nbackoffLimit: 2\n"
                                               "priority: 10\nresources: {limits: {memory: 64Mi}}",
                                               labels="{team: ops}"))], ReadLimits())
    assert built.job == as_job
    assert (built.job.kind, built.job.working_dir, built.job.env, built.job.backoff_limit, built.job.location) == (
        Kind.JOB, FOLDER, (("TARGET", "s3"),), 2, Location(FILE, 1, 1))


def test_defaults_when_fields_are_absent() -> None:
    _, (built,) = load(cronjob("intervalSeconds: 900\njobTemplate: {command: [x]}", namespace=None))
    assert built == CronJobSpec(name="backup", interval_seconds=900.0, job=ProcessSpec(
        name="backup", command=("x",), kind=Kind.JOB, working_dir=FOLDER))
    assert (built.namespace, built.schedule, built.time_zone, built.concurrency_policy, built.starting_deadline_seconds,
            built.successful_jobs_history_limit, built.failed_jobs_history_limit, built.suspend) == (
        "default", None, None, "Allow", None, 3, 1, False)
    # A Job's defaults: retried on failure, backoffLimit 6.
    assert (built.job.effective_restart_policy.value, built.job.backoff_limit) == ("OnFailure", 6)


def test_env_from_files_and_working_dir_are_read_as_a_jobs(tmp_path: Path) -> None:
    (tmp_path / "backup.env").write_text("TARGET=disk\nLEVEL=9\n")
    text = cronjob("schedule: '0 3 * * *'\njobTemplate:\n  command: [./backup.sh]\n  workingDir: bin\n"
                   "  envFrom: [{file: backup.env}]\n  env: {LEVEL: '1'}\n  dependsOn: [{name: db}]")
    _, (built,) = load(text, file=str(tmp_path / "cron.yaml"))
    assert (built.job.env, built.job.working_dir) == ((("LEVEL", "1"), ("TARGET", "disk")), str(tmp_path / "bin"))
    assert built.job.depends_on == (Dependency("db"),)
    where = at(text, "{name: db}")
    assert built.job.depends_on[0].location == Location(str(tmp_path / "cron.yaml"), where.line, where.column)


def test_the_schema_defaults_are_the_specs() -> None:
    schema = schemas()[("orchestrator/v1", "CronJob")]
    spec = schema["properties"]["spec"]["properties"]
    defaults = CronJobSpec(name="", job=ProcessSpec(name="", command=()))
    assert {name: spec[name].get("default") for name in (
        "schedule", "intervalSeconds", "timeZone", "concurrencyPolicy", "startingDeadlineSeconds",
        "successfulJobsHistoryLimit", "failedJobsHistoryLimit", "suspend")} == {
        "schedule": defaults.schedule, "intervalSeconds": defaults.interval_seconds, "timeZone": defaults.time_zone,
        "concurrencyPolicy": defaults.concurrency_policy,
        "startingDeadlineSeconds": defaults.starting_deadline_seconds,
        "successfulJobsHistoryLimit": defaults.successful_jobs_history_limit,
        "failedJobsHistoryLimit": defaults.failed_jobs_history_limit, "suspend": defaults.suspend}
    assert spec["concurrencyPolicy"]["enum"] == [policy.value for policy in cron.ConcurrencyPolicy]
    assert schema["$defs"]["metadata"]["properties"]["namespace"]["default"] == defaults.namespace
    assert schema["$defs"]["metadata"]["properties"]["name"]["maxLength"] == cron.MAX_CRONJOB_NAME


def test_the_job_template_is_a_jobs_spec() -> None:
    """The jobTemplate's schema is job.v1.json's spec (JSON Schema files here are whole: no $ref across them),
    and the definitions it uses are the Job's."""
    cronjob_schema = json.loads((_schema_dir() / "cronjob.v1.json").read_text())
    job_schema = json.loads((_schema_dir() / "job.v1.json").read_text())
    template = dict(cronjob_schema["properties"]["spec"]["properties"]["jobTemplate"])
    own = dict(job_schema["properties"]["spec"])
    assert template.pop("description") != own.pop("description")
    assert template == own
    defs = {name: value for name, value in cronjob_schema["$defs"].items() if name != "metadata"}
    assert defs == {name: value for name, value in job_schema["$defs"].items() if name != "metadata"}


# --- runs ----------------------------------------------------------------------------------------------------


def test_a_run_is_the_template_job_named_after_its_time() -> None:
    _, (built,) = load(FULL)
    run = built.run(1767225600.75)
    assert (run.name, run.key, run.kind) == ("backup-1767225600", "shop/backup-1767225600", Kind.JOB)
    assert run.name == cron.run_name(built.name, 1767225600.75)
    assert run.labels == ((RUN_LABEL, "backup"), ("team", "ops"))
    assert run == ProcessSpec(**{**{f: getattr(built.job, f) for f in built.job.__dataclass_fields__},
                                 "name": run.name, "labels": run.labels})
    longest = "a" * cron.MAX_CRONJOB_NAME
    _, (named,) = load(cronjob(name=longest))
    assert len(named.run(9999999999).name) == 63


# --- problems, each once at its field ------------------------------------------------------------------------

BAD = [
    ("bad-cron", cronjob("schedule: '*/0 * * *'\njobTemplate: {command: [x]}"), "'*/0", "spec.schedule",
     "is not a cron schedule: it has 4 fields, expected 5"),
    ("zero-step", cronjob("schedule: '*/0 * * * *'\njobTemplate: {command: [x]}"), "'*/0", "spec.schedule",
     "'*/0 * * * *' is not a cron schedule"),
    ("both", cronjob("schedule: '* * * * *'\nintervalSeconds: 60\njobTemplate: {command: [x]}"), "intervalSeconds",
     "spec.intervalSeconds", "give schedule or intervalSeconds, not both"),
    ("neither", cronjob("jobTemplate: {command: [x]}"), "jobTemplate", "spec",
     "missing required field: one of 'schedule', 'intervalSeconds'"),
    ("unknown-zone", cronjob("schedule: '0 3 * * *'\ntimeZone: Europe/Berln\njobTemplate: {command: [x]}"),
     "Europe/Berln", "spec.timeZone", ("unknown time zone 'Europe/Berln': expected an IANA name such as Europe/Berlin "
     "or UTC (did you mean 'Europe/Berlin'?)")),
    ("short-interval", cronjob("intervalSeconds: 0.5\njobTemplate: {command: [x]}"), "0.5", "spec.intervalSeconds",
     "must be at least 1, got 0.5"),
    ("policy", cronjob("intervalSeconds: 60\nconcurrencyPolicy: Skip\njobTemplate: {command: [x]}"), "Skip",
     "spec.concurrencyPolicy", "'Skip'"),
    ("long-name", cronjob(name="a" * 53), "a" * 53, "metadata.name", "must be at most 52 characters long, got 53"),
    ("run-label", cronjob(labels="{orchestrator.cronjob: x}"), "orchestrator.cronjob",
     "metadata.labels['orchestrator.cronjob']", "is the label every run carries"),
    ("template-backoff", cronjob("intervalSeconds: 60\njobTemplate:\n  command: [x]\n  backoffLimit: -1"), "-1",
     "spec.jobTemplate.backoffLimit", "must be at least 0, got -1"),
    ("template-program", cronjob("intervalSeconds: 60\njobTemplate:\n  command: ['./backup.sh --all']"), "'./backup",
     "spec.jobTemplate.command[0]", "holds a space: give each word its own item (['./backup.sh', '--all'])"),
    ("template-string-command", cronjob("intervalSeconds: 60\njobTemplate:\n  command: ./backup.sh"), "./backup",
     "spec.jobTemplate.command", "command is a string: set shell: true or give an argv list"),
    ("template-process-field", cronjob("intervalSeconds: 60\njobTemplate:\n  command: [x]\n  replicas: 2"),
     "replicas", "spec.jobTemplate", "unknown field 'replicas' (only a Process has it: each run of a CronJob is a Job)"),
    ("template-env-file", cronjob("intervalSeconds: 60\njobTemplate:\n  command: [x]\n  envFrom: [{file: none.env}]"),
     "none.env", "spec.jobTemplate.envFrom[0].file", "env file 'deploy/none.env' does not exist"),
    ("template-dependency-twice", cronjob("intervalSeconds: 60\njobTemplate:\n  command: [x]\n  dependsOn:\n"
                                          "    - {name: db}\n    - {name: db}"), "db}",
     "spec.jobTemplate.dependsOn[1].name", "'db' is already listed at spec.jobTemplate.dependsOn[0]"),
    ("no-template", cronjob("intervalSeconds: 60"), "intervalSeconds", "spec",
     "missing required field 'jobTemplate'"),
]


@pytest.mark.parametrize(("name", "text", "marker", "path", "message"), BAD, ids=[case[0] for case in BAD])
def test_each_problem_once_at_its_field(name: str, text: str, marker: str, path: str, message: str) -> None:
    (problem,) = problems_of(text, kept=[])  # one message per mistake
    where = at(text, marker)
    if name == "template-dependency-twice":  # the second one
        where = Location(FILE, where.line + 1, where.column)
    if name in ("neither", "no-template"):  # a missing field: at the mapping that lacks it
        where = at(text, marker)
    assert (problem.location, problem.path) == (where, path), problem
    assert message in problem.message, problem


def test_every_problem_of_a_document_is_found() -> None:
    text = cronjob("schedule: '61 * * * *'\ntimeZone: Mars/Olympus\njobTemplate:\n  command: ['']\n  backoffLimit: x")
    assert [problem.path for problem in problems_of(text, kept=[])] == [
        "spec.schedule", "spec.timeZone", "spec.jobTemplate.command[0]", "spec.jobTemplate.backoffLimit"]


def test_where_none_can_be_kept_it_is_a_problem() -> None:
    text = cronjob()
    assert problems_of(text) == [Problem(at(text, "CronJob"), "kind", CRONJOB_KEPT_BY_DAEMON)]
    assert CRONJOB_KEPT_BY_DAEMON == "a CronJob is kept by the daemon: apply it with `orchestrator apply`"


def test_names_are_unique_among_cronjobs_of_a_namespace() -> None:
    text = "---\n".join([job(), cronjob(), cronjob(namespace="other")])
    specs, kept = load(text)
    assert [spec.key for spec in specs] == ["shop/backup"]  # a Job of the same name is another object
    assert [kept_key(spec) for spec in kept] == ["cronjob/shop/backup", "cronjob/other/backup"]
    twice = cronjob() + "---\n" + cronjob()
    (problem,) = problems_of(twice, kept=[])
    assert problem.message == f"duplicate CronJob cronjob/shop/backup, first defined at {FILE}:4:9"


def test_chunks_with_cronjobs_are_not_cached_and_still_found() -> None:
    cache = SpecCache()
    text = f"{job(name='other')}---\n{cronjob()}"
    for _ in range(2):
        specs, kept = load(text, cache=cache)
        assert ([spec.name for spec in specs], [kept_key(k) for k in kept]) == (["other"], ["cronjob/shop/backup"])


# --- the schemas ---------------------------------------------------------------------------------------------


def test_the_manifest_schema_and_the_compiled_check_say_what_the_kinds_schema_says() -> None:
    from test_schema import _manifest_validator

    manifest = _manifest_validator()
    for text in [FULL, *(case[1] for case in BAD)]:
        doc = yaml.safe_load(text)
        by_kind = sorted((list(e.absolute_path), e.message)
                         for e in full_validator("orchestrator/v1", "CronJob").iter_errors(doc))
        assert sorted((list(e.absolute_path), e.message) for e in manifest.iter_errors(doc)) == by_kind, text
        assert is_valid("orchestrator/v1", "CronJob", doc) == (not by_kind), text


# --- to a document and back ------------------------------------------------------------------------------------


def test_round_trip_through_the_document(tmp_path: Path) -> None:
    (tmp_path / "backup.env").write_text("TARGET=disk\n")
    _, (full,) = load(FULL)
    _, (with_files,) = load(cronjob("intervalSeconds: 90.5\njobTemplate:\n  command: ./backup.sh\n  shell: true\n"
                                    "  envFrom: [{file: backup.env}]\n  dependsOn: [{name: db, condition: ready}]",
                                    namespace=None), file=str(tmp_path / "cron.yaml"))
    for spec in [full, with_files]:
        document = cronjob_to_document(spec)
        assert yaml.safe_load(yaml.safe_dump(document)) == document == json.loads(json.dumps(document))
        assert not list(full_validator("orchestrator/v1", "CronJob").iter_errors(document))
        again = kept_from_document(document, where="<state: cronjobs>")
        assert again == spec
        assert again.job == spec.job and again.location == Location("<state: cronjobs>")


def test_the_document_leaves_the_cronjobs_defaults_out() -> None:
    _, (built,) = load(cronjob("intervalSeconds: 60\njobTemplate: {command: [x]}", namespace=None))
    document = cronjob_to_document(built)
    assert (document["metadata"], set(document["spec"])) == ({"name": "backup"}, {"intervalSeconds", "jobTemplate"})
    assert document["spec"]["intervalSeconds"] == 60 and document["spec"]["jobTemplate"]["workingDir"] == FOLDER


def test_a_document_from_a_dict_is_checked_as_a_file_is() -> None:
    _, (built,) = load(cronjob())
    document = cronjob_to_document(built)
    document["spec"]["schedule"] = "* * *"
    document["spec"]["jobTemplate"]["replicas"] = 1
    del document["spec"]["jobTemplate"]["workingDir"]
    document["spec"]["jobTemplate"]["envFrom"] = [{"file": "x.env"}]
    with pytest.raises(ManifestError) as caught:
        kept_from_document(document, where="cronjob/shop/backup (state.db)")
    assert [str(problem) for problem in caught.value.problems] == [
        ("cronjob/shop/backup (state.db): spec.jobTemplate: unknown field 'replicas' (only a Process has it: each run "
         "of a CronJob is a Job)"),
        ("cronjob/shop/backup (state.db): spec.jobTemplate.envFrom: envFrom names files beside a manifest file: a "
         "document not read from one gives env"),
        ("cronjob/shop/backup (state.db): spec.jobTemplate.workingDir: an absolute workingDir is required of a "
         "document not read from a file (it has no folder)"),
        ("cronjob/shop/backup (state.db): spec.schedule: '* * *' is not a cron schedule: it has 3 fields, expected 5 "
         "(minute hour day-of-month month day-of-week)")]
    with pytest.raises(ManifestError):
        kept_from_document({"apiVersion": "orchestrator/v1", "kind": "Job"})
