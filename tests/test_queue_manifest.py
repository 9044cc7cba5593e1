"""Queue documents and a Job's queue fields: schemas/queue.v1.json, the rules of manifests/queues.py, the spec
the loader builds (core/queue.py), a Job's spec.queue, spec.priorityClass and spec.resources.requests, the
check of requests against the capacity of a Queue of the same load, and the documents they go back to."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from typing import Any

import pytest

from orchestrator.core.errors import Location, ManifestError, Problem
from orchestrator.core.model import Kind, ProcessSpec
from orchestrator.core.queue import PRIORITY_CLASSES, QUEUE_KIND, QueueSpec
from orchestrator.manifests import codec
from orchestrator.manifests.cache import SpecCache
from orchestrator.manifests.files import ReadLimits, Source
from orchestrator.manifests.loader import KEPT_KINDS, KeptSpec, kept_key, kept_kind, load_sources
from orchestrator.manifests.queues import (
    QUEUE_KEPT_BY_DAEMON,
    kept_from_document,
    queue_policy,
    queue_to_document,
)
from orchestrator.manifests.schema import _schema_dir, schemas
from orchestrator.planning import admission, diff

FILE = "deploy/queue.yaml"


def queue(spec: str = "maxConcurrent: 4", name: str = "batch", labels: str = "") -> str:
    metadata = f"  name: {name}\n" + (f"  labels: {labels}\n" if labels else "")
    return (f"apiVersion: orchestrator/v1\nkind: Queue\nmetadata:\n{metadata}"
            f"spec:\n{textwrap.indent(textwrap.dedent(spec).rstrip(chr(10)) + chr(10), '  ')}")


def job(spec: str = "command: [./report.sh]\nqueue: batch", name: str = "report", kind: str = "Job") -> str:
    return (f"apiVersion: orchestrator/v1\nkind: {kind}\nmetadata:\n  name: {name}\n"
            f"spec:\n{textwrap.indent(textwrap.dedent(spec).rstrip(chr(10)) + chr(10), '  ')}")


def load(text: str, cache: SpecCache | None = None) -> tuple[tuple[ProcessSpec, ...], list[KeptSpec]]:
    kept: list[KeptSpec] = []
    specs = load_sources([Source(FILE, text)], ReadLimits(), cache, kept=kept)
    return specs, kept


def problems_of(text: str, kept: list[KeptSpec] | None = None) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        load_sources([Source(FILE, text)], ReadLimits(), kept=[] if kept is None else kept)
    return list(caught.value.problems)


def at(text: str, marker: str, nth: int = 1) -> Location:
    """Where `marker` is written the `nth` time in `text`."""
    seen = 0
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            seen += 1
            if seen == nth:
                return Location(FILE, number, line.index(marker) + 1)
    raise AssertionError(f"{marker!r} is not in the text {nth} times")


# --- valid documents -----------------------------------------------------------------------------------------

FULL = queue("""\
maxConcurrent: 4
capacity: {cpu: "3", memory: 8Gi}
agingSecondsPerLevel: 60
preemption: Suspend
""", labels="{team: data}")


def test_a_full_queue_is_built_and_kept() -> None:
    specs, (built,) = load(FULL)
    assert specs == ()
    assert built == QueueSpec(name="batch", max_concurrent=4, capacity_cpu=3.0, capacity_memory=8 << 30,
                              aging_seconds_per_level=60.0, preemption="Suspend",
                              metadata_labels=(("team", "data"),))
    assert built.location == Location(FILE, 1, 1)
    assert (built.key, kept_key(built), kept_kind(built)) == ("queue/batch", "queue/batch", QUEUE_KIND)
    assert QUEUE_KIND in KEPT_KINDS


@pytest.mark.parametrize(("capacity", "cpu", "memory"), [
    ("{cpu: 500m}", 0.5, None), ("{cpu: 1.5}", 1.5, None), ("{cpu: '2'}", 2.0, None),
    ("{memory: 512Mi}", None, 512 << 20), ("{memory: 1G}", None, 10**9), ("{memory: 4096}", None, 4096),
], ids=str)
def test_capacities_are_spelled_as_limits_are(capacity: str, cpu: float | None, memory: int | None) -> None:
    _, (built,) = load(queue(f"capacity: {capacity}"))
    assert isinstance(built, QueueSpec)
    assert (built.capacity_cpu, built.capacity_memory) == (cpu, memory)


def test_an_empty_spec_has_the_defaults_of_the_schema() -> None:
    _, (built,) = load(queue("{}"))
    assert built == QueueSpec(name="batch")
    schema = schemas()[("orchestrator/v1", QUEUE_KIND)]
    spec = schema["properties"]["spec"]["properties"]
    defaults = QueueSpec(name="")
    assert spec["preemption"]["default"] == defaults.preemption
    assert spec["preemption"]["enum"] == [p.value for p in admission.Preemption]
    for name in ("maxConcurrent", "agingSecondsPerLevel"):
        assert "default" not in spec[name]  # none: no limit, no aging
    assert spec["capacity"]["default"] == {} and (defaults.capacity_cpu, defaults.capacity_memory) == (None, None)
    assert "namespace" not in schema["$defs"]["metadata"]["properties"]  # host-level


def test_capacity_uses_the_patterns_of_a_jobs_limits() -> None:
    queue_schema = json.loads((_schema_dir() / "queue.v1.json").read_text())
    job_schema = json.loads((_schema_dir() / "job.v1.json").read_text())
    capacity = queue_schema["properties"]["spec"]["properties"]["capacity"]["properties"]
    limits = job_schema["$defs"]["resources"]["properties"]["limits"]["properties"]
    for name in ("cpu", "memory"):
        assert {**capacity[name], "description": ""} == {**limits[name], "description": ""}


def test_a_job_of_a_queue() -> None:
    text = job("command: [./report.sh]\nqueue: batch\npriorityClass: High\n"
               "resources: {requests: {cpu: '1', memory: 2Gi}, limits: {memory: 3Gi}}")
    (spec,), kept = load(FULL + "---\n" + text)
    assert len(kept) == 1
    assert (spec.kind, spec.queue, spec.priority_class, spec.requests_cpu, spec.requests_memory) == (
        Kind.JOB, "batch", "High", 1.0, 2 << 30)
    assert spec.limits.memory_bytes == 3 << 30


def test_a_job_without_queue_fields_has_the_defaults_of_the_schema() -> None:
    (spec,), _ = load(job("command: [x]"))
    assert (spec.queue, spec.priority_class, spec.requests_cpu, spec.requests_memory) == (None, "Normal", None, None)
    props = schemas()[("orchestrator/v1", "Job")]["properties"]["spec"]["properties"]
    assert props["priorityClass"]["default"] == ProcessSpec.priority_class
    assert props["priorityClass"]["enum"] == list(PRIORITY_CLASSES) == list(admission.PRIORITY_CLASSES)


def test_a_job_naming_a_queue_not_in_the_load_is_not_judged() -> None:
    (spec,), kept = load(job("command: [x]\nqueue: elsewhere\nresources: {requests: {cpu: 64}}"))
    assert (spec.queue, kept) == ("elsewhere", [])


def test_a_request_that_fits_exactly_is_fine() -> None:
    text = FULL + "---\n" + job("command: [x]\nqueue: batch\nresources: {requests: {cpu: 3000m, memory: 8Gi}}")
    (spec,), _ = load(text)
    assert admission.fits_ever(queue_policy(load(FULL)[1][0]), spec.requests_cpu or 0, spec.requests_memory or 0) is None


def test_a_cronjob_run_can_be_queued() -> None:
    text = ("apiVersion: orchestrator/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: '0 3 * * *'\n"
            "  jobTemplate:\n    command: [x]\n    queue: batch\n    priorityClass: Low\n"
            "    resources: {requests: {memory: 1Gi}}\n")
    _, (cronjob,) = load(text)
    assert (cronjob.job.queue, cronjob.job.priority_class, cronjob.job.requests_memory) == ("batch", "Low", 1 << 30)


# --- problems, each once at its field ------------------------------------------------------------------------

CASES = [
    ("zero-concurrency", queue("maxConcurrent: 0"), "0", "spec.maxConcurrent", "must be at least 1, got 0"),
    ("bad-preemption", queue("preemption: Kill"), "Kill", "spec.preemption", "'Kill' is not one of Never, Suspend"),
    ("zero-aging", queue("agingSecondsPerLevel: 0"), "0", "spec.agingSecondsPerLevel", "0"),
    ("cpu-typo", queue("capacity: {cpu: 2cores}"), "2cores", "spec.capacity.cpu", "2cores"),
    ("zero-cpu", queue("capacity: {cpu: '0'}"), "'0'", "spec.capacity.cpu", "above 0"),
    ("memory-in-gb", queue("capacity: {memory: 8GB}"), "8GB", "spec.capacity.memory", "without B"),
    ("zero-memory", queue("capacity: {memory: '0'}"), "'0'", "spec.capacity.memory", "at least 1 byte"),
    ("namespace", queue("{}").replace("  name: batch\n", "  name: batch\n  namespace: shop\n"), "namespace",
     "metadata", "unknown field 'namespace'"),
    ("unknown-field", queue("maxConcurent: 2"), "maxConcurent", "spec", "did you mean 'maxConcurrent'"),
    ("process-with-a-queue", job("command: [x]\nqueue: batch", kind="Process"), "queue", "spec",
     "unknown field 'queue' (only a Job has it)"),
    ("process-with-requests", job("command: [x]\nresources: {requests: {cpu: 1}}", kind="Process"), "requests",
     "spec.resources", "unknown field 'requests' (only a Job has it)"),
    ("process-with-a-priority-class", job("command: [x]\npriorityClass: High", kind="Process"), "priorityClass",
     "spec", "unknown field 'priorityClass' (only a Job has it)"),
    ("bad-priority-class", job("command: [x]\npriorityClass: Urgent"), "Urgent", "spec.priorityClass",
     "'Urgent' is not one of Critical, High, Normal, Low, Background"),
    ("bad-queue-name", job("command: [x]\nqueue: Batch_1"), "Batch_1", "spec.queue", "Batch_1"),
    ("request-in-gb", job("command: [x]\nresources: {requests: {memory: 2GB}}"), "2GB",
     "spec.resources.requests.memory", "without B"),
    ("request-cpu-typo", job("command: [x]\nresources: {requests: {cpu: 1core}}"), "1core",
     "spec.resources.requests.cpu", "1core"),
]


@pytest.mark.parametrize(("text", "marker", "path", "words"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_a_problem_is_located_at_its_field(text: str, marker: str, path: str, words: str) -> None:
    (problem,) = problems_of(text)
    assert problem.path == path, problem
    assert words in problem.message, problem
    assert problem.location == at(text, marker), problem


def test_requests_over_the_capacity_are_refused_at_each_request() -> None:
    text = (queue("capacity: {cpu: 2, memory: 1Gi}") + "---\n"
            + job("command: [x]\nqueue: batch\nresources:\n  requests: {cpu: 4, memory: 2Gi}"))
    cpu, memory = problems_of(text)
    assert (cpu.path, cpu.location) == ("spec.resources.requests.cpu", at(text, "4"))
    assert cpu.message == "requests cpu 4, more than queue batch's capacity 2: it could never run"
    assert (memory.path, memory.location) == ("spec.resources.requests.memory", at(text, "2Gi"))
    assert memory.message == "requests memory 2Gi, more than queue batch's capacity 1Gi: it could never run"


def test_a_queue_after_its_job_is_still_checked_and_so_is_a_cronjobs_template() -> None:
    cronjob = ("apiVersion: orchestrator/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  intervalSeconds: 60\n"
               "  jobTemplate:\n    command: [x]\n    queue: batch\n    resources: {requests: {cpu: 3}}\n")
    text = job("command: [x]\nqueue: batch\nresources: {requests: {cpu: 2.5}}") + "---\n" + cronjob + "---\n" + (
        queue("capacity: {cpu: 2}"))
    first, second = problems_of(text)
    assert (first.path, first.location) == ("spec.resources.requests.cpu", at(text, "2.5"))
    assert (second.path, second.location) == ("spec.jobTemplate.resources.requests.cpu", at(text, "3}"))


def test_a_cached_job_over_the_capacity_is_refused_at_its_document() -> None:
    cache = SpecCache()
    text = job("command: [x]\nqueue: batch\nresources: {requests: {cpu: 4}}")
    load_sources([Source("jobs.yaml", text)], ReadLimits(), cache, kept=[])
    sources = [Source("jobs.yaml", text), Source(FILE, queue("capacity: {cpu: 2}"))]
    with pytest.raises(ManifestError) as caught:
        load_sources(sources, ReadLimits(), cache, kept=[])
    (problem,) = caught.value.problems
    assert problem.path == "spec.resources.requests.cpu" and problem.location.file == "jobs.yaml"


def test_without_a_kept_list_a_queue_is_a_problem() -> None:
    with pytest.raises(ManifestError) as caught:
        load_sources([Source(FILE, FULL)], ReadLimits())
    (problem,) = caught.value.problems
    assert (problem.path, problem.message, problem.location) == ("kind", QUEUE_KEPT_BY_DAEMON, at(FULL, "Queue"))


def test_two_queues_of_one_name_and_a_job_of_that_name_are_apart() -> None:
    text = FULL + "---\n" + queue("{}") + "---\n" + job("command: [x]", name="batch")
    (problem,) = problems_of(text)
    assert problem.path == "metadata.name" and "duplicate Queue queue/batch" in problem.message
    assert problem.location == at(text, "batch", 2)


# --- changes, and the documents they go back to ----------------------------------------------------------------


def test_a_change_of_queue_class_or_requests_never_restarts_a_running_job() -> None:
    old = ProcessSpec(name="j", command=("x",), kind=Kind.JOB)
    for change in ({"queue": "batch"}, {"priority_class": "Critical"}, {"requests_cpu": 2.0},
                   {"requests_memory": 1 << 30}):
        new = dataclasses.replace(old, **change)
        assert not diff.needs_restart(old, new), change
        (field,) = diff.changes(old, new)
        assert field.path.startswith("spec.") and not field.restart


@pytest.mark.parametrize("text", [FULL, queue("{}"), queue("capacity: {cpu: 0.25}\nagingSecondsPerLevel: 0.5")],
                         ids=["full", "empty", "fractions"])
def test_a_queue_round_trips_through_its_document(text: str) -> None:
    _, (built,) = load(text)
    assert isinstance(built, QueueSpec)
    document = json.loads(json.dumps(queue_to_document(built)))
    back = kept_from_document(document, "<store>")
    assert back == built and back.location == Location("<store>")
    assert queue_to_document(back) == document


def test_the_document_leaves_defaults_out() -> None:
    assert queue_to_document(QueueSpec(name="batch")) == {
        "apiVersion": "orchestrator/v1", "kind": "Queue", "metadata": {"name": "batch"}, "spec": {}}


def test_a_queued_job_round_trips_through_its_document() -> None:
    text = job("command: [x]\nqueue: batch\npriorityClass: Background\nresources: {requests: {cpu: 250m, memory: 1G}}")
    (spec,), _ = load(text)
    document = json.loads(json.dumps(codec.spec_to_document(spec)))
    assert document["spec"]["queue"] == "batch" and document["spec"]["priorityClass"] == "Background"
    assert document["spec"]["resources"] == {"requests": {"cpu": 0.25, "memory": 10**9}}
    assert codec.spec_from_document(document) == spec
    assert codec.spec_from_json(json.loads(json.dumps(codec.spec_to_json(spec)))) == spec


@pytest.mark.parametrize(("document", "path", "words"), [
    ({"apiVersion": "orchestrator/v1", "kind": "Queue", "metadata": {"name": "b"}, "spec": {"preemption": "Kill"}},
     "spec.preemption", "'Kill' is not one of"),
    ({"apiVersion": "orchestrator/v1", "kind": "Queue", "metadata": {"name": "b"},
      "spec": {"capacity": {"memory": "8GB"}}}, "spec.capacity.memory", "without B"),
    ({"apiVersion": "orchestrator/v1", "kind": "Job", "metadata": {"name": "b"}, "spec": {}}, "kind",
     "expected Queue"),
], ids=["preemption", "memory", "kind"])
def test_a_kept_document_is_checked_as_a_file_is(document: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ManifestError) as caught:
        kept_from_document(document, "<request>")
    (problem,) = caught.value.problems
    assert (problem.path, problem.location) == (path, Location("<request>")) and words in problem.message


def test_the_policy_is_the_specs() -> None:
    _, (built,) = load(FULL)
    assert isinstance(built, QueueSpec)
    assert queue_policy(built) == admission.QueuePolicy(
        name="batch", max_concurrent=4, capacity_cpu=3.0, capacity_memory=8 << 30, aging_seconds_per_level=60.0,
        preemption=admission.Preemption.SUSPEND)
