"""codec: every field of specs, records and events survives a trip through JSON text, exactly."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from orchestrator.core.errors import Location
from orchestrator.core.events import Event, EventType
from orchestrator.core.fleet import LabelExpression, Placement
from orchestrator.core.model import (
    Autoscale,
    Backoff,
    Condition,
    Dependency,
    Exit,
    Hook,
    HookKind,
    Hooks,
    Kind,
    Limits,
    LogPolicy,
    OnFailure,
    Probe,
    ProbeAction,
    Probes,
    ProcessIdentity,
    ProcessSpec,
    Reason,
    ReplicaRecord,
    RestartPolicy,
    Shutdown,
    Socket,
    Strategy,
    StrategyType,
)
from orchestrator.daemon import record_codec
from orchestrator.manifests import codec
from orchestrator.manifests.loader import load_specs
from orchestrator.manifests.schema import schemas

# Every field differs from its default (checked below), so a field the codec forgets cannot pass unnoticed.
FULL = ProcessSpec(
    name="api",
    command=("python", "-m", "http.server", "8080"),
    namespace="shop",
    kind=Kind.PROCESS,
    labels=(("app.kubernetes.io/part-of", "shop"), ("tier", "backend")),
    shell=True,
    working_dir="/srv/api",
    env=(("EMPTY", ""), ("PORT", "8080"), ("UNICODE", "h\u00e9llo \u2603")),
    user="www-data",
    replicas=3,
    priority=-7,
    restart_policy=RestartPolicy.ON_FAILURE,
    success_exit_codes=(0, 3, 255),
    backoff=Backoff(initial_seconds=0.1, max_seconds=12.5, multiplier=1.5, reset_after_seconds=0.3),
    max_restarts=5,
    restart_window_seconds=0.1 + 0.2,  # not representable shortly: must come back bit for bit
    backoff_limit=2,
    active_deadline_seconds=90.5,
    placement=Placement(match_labels=(("disk", "ssd"),),
                        match_expressions=(LabelExpression("zone", "In", ("a", "b")), LabelExpression("gpu", "Exists")),
                        mode="Spread", replicas=7, max_per_node=3, lost_after_seconds=2.5),
    depends_on=(Dependency("db", Condition.READY), Dependency("migrate", Condition.COMPLETED)),
    shutdown=Shutdown(signal="SIGINT", timeout_seconds=2.25),
    logs=LogPolicy(max_bytes=1024, keep=2),
    restart_with_dependency=True,
    limits=Limits(memory_bytes=256 * 1024 * 1024, cpu=0.5, open_files=1024, processes=64),
    autoscale=Autoscale(min=2, max=10, target_cpu_percent=70, scale_up_seconds=15, scale_down_seconds=120),
    cpu_affinity=(0, 1),
    io_class="idle",
    queue="batch",  # a Job's fields (a Process is refused them by its schema), written for whatever has them
    priority_class="High",
    requests_cpu=0.25,
    requests_memory=128 * 1024 * 1024,
    probes=Probes(
        startup=Probe(ProbeAction.TCP, port=8080, host="::1", initial_delay_seconds=0.5, failure_threshold=30),
        readiness=Probe(ProbeAction.HTTP, port=8080, path="/healthz", headers=(("X-A", "1"),), period_seconds=2),
        liveness=Probe(ProbeAction.EXEC, command=("./check.sh", "-q"), timeout_seconds=2, success_threshold=2),
    ),
    hooks=Hooks(pre_start=Hook(("./migrate.sh",), 30.0), post_start=Hook(("./warm.sh",)), pre_stop=Hook(("./drain",), 2.5)),
    sockets=(
        Socket("http", "tcp://0.0.0.0:8443", backlog=4096, reuse_port=True, non_blocking=True),
        Socket("admin", "unix:/run/api/admin.sock", mode="0660"),
    ),
    # Every field of the strategy but its type (a Recreate has no rollingUpdate: RECREATE below) is set.
    strategy=Strategy(max_surge="25%", max_unavailable=0, on_failure=OnFailure.PAUSE, min_ready_seconds=0.1 + 0.2,
                      progress_deadline_seconds=90.5, revision_history_limit=0),
    location=Location("/repo/manifests/api.yaml", 4, 1),
)
# The other strategy type, with a notify probe: what FULL does not cover.
RECREATE = ProcessSpec(name="recreate", command=("x",), strategy=Strategy(type=StrategyType.RECREATE),
                       probes=Probes(readiness=Probe(ProbeAction.NOTIFY, period_seconds=0.5)))

FULL_RECORD = ReplicaRecord(
    spec=FULL,
    process=ProcessIdentity(pid=4242, start_ticks=171234567891),
    started_at=1234.5678,
    stop_requested_at=1240.0,
    killed=True,
    restarts=4,
    restart_times=(1200.25, 1210.5, 1234.5678),
    crash_streak=2,
    failures=1,
    last_exit=Exit(code=None, signal=9, reason=Reason.KILLED, at=1199.75, ran_seconds=0.5, message="bye"),
    stopped_on_purpose=True,
    started=True,
    ready=True,
    unhealthy="liveness probe failed 3 times",
    hook=ProcessIdentity(pid=4343, start_ticks=171234567999),
    hook_kind=HookKind.PRE_STOP,
    hook_started_at=3.5,
    hook_killed=True,
    pre_start_passed=True,
    over_memory="300 MB resident, limit 256 MB",
    cgroup="/sys/fs/cgroup/orchestrator-0123456789/default.web.0",
    slot_since=2.5,
    ready_since=2.75,
    deadline_from=1.25,
    frozen_since=2.5,
    deadline_exceeded=True,
)


def through_text(value: Any) -> Any:
    """What the store and the API do: dump to JSON text and load it back."""
    return json.loads(json.dumps(value))


def test_full_spec_sets_every_field_to_a_non_default() -> None:
    defaults = ProcessSpec(name="", command=())
    same = [f.name for f in dataclasses.fields(ProcessSpec) if getattr(FULL, f.name) == getattr(defaults, f.name)]
    # kind is covered by the Job test; restart_nonce and stopped are no manifest fields
    # (test_a_held_spec_stays_held_through_json).
    assert same == ["kind", "restart_nonce", "stopped"], f"set these in FULL (and make codec.py support them): {same}"


@pytest.mark.parametrize("daemons", [{"stopped": True}, {"restart_nonce": "2024-05-01T12:00:00Z"},
                                     {"stopped": True, "restart_nonce": "n"}], ids=str)
def test_a_held_spec_stays_held_through_json_and_its_document_is_a_manifest(daemons: dict[str, Any]) -> None:
    held = dataclasses.replace(FULL, **daemons)
    assert codec.spec_from_json(through_text(codec.spec_to_json(held))) == held
    assert codec.spec_from_json(through_text(codec.spec_to_json(FULL))) == FULL
    assert codec.spec_to_document(held) == codec.spec_to_document(FULL)  # `diff` never shows the hold


def test_full_record_sets_every_field_to_a_non_default() -> None:
    defaults = ReplicaRecord(spec=FULL)
    same = [
        f.name
        for f in dataclasses.fields(ReplicaRecord)
        if f.name != "spec" and getattr(FULL_RECORD, f.name) == getattr(defaults, f.name)
    ]
    assert same == [], f"set these in FULL_RECORD (and make codec.py support them): {same}"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_record_json_has_one_key_per_field() -> None:
    assert set(record_codec.record_to_json(FULL_RECORD)) == {camel(f.name) for f in dataclasses.fields(ReplicaRecord)}


def spec_fields_written(spec: ProcessSpec) -> set[str]:
    document = codec.spec_to_document(spec)
    return {"name", "namespace", "labels", "kind"} | set(document["spec"])


JOB_ONLY = {"backoffLimit", "activeDeadlineSeconds", "queue", "priorityClass"}
PROCESS_ONLY = {"placement", "replicas", "restartPolicy", "maxRestarts", "restartWindowSeconds", "sockets", "strategy",
                "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"}


def test_every_spec_field_is_written() -> None:
    renamed = {"working_dir": "workingDir", "restart_policy": "restartPolicy", "limits": "resources",
               "requests_cpu": "resources", "requests_memory": "resources"}
    every = {renamed.get(f.name, camel(f.name)) for f in dataclasses.fields(ProcessSpec)} - {
        "location", "stopped", "restartNonce"}
    every |= {"minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit"}  # the rest of the strategy
    assert spec_fields_written(FULL) == every
    assert spec_fields_written(dataclasses.replace(FULL, kind=Kind.JOB)) == every


def test_default_fields_of_the_other_kind_are_left_out() -> None:
    process = ProcessSpec(name="p", command=("x",))
    job = dataclasses.replace(process, kind=Kind.JOB)
    assert JOB_ONLY & spec_fields_written(process) == set()
    assert PROCESS_ONLY & spec_fields_written(job) == set()
    assert "maxRestarts" not in spec_fields_written(process)  # unset: the schema has no null
    assert "user" not in spec_fields_written(process)


def assert_same_spec(back: ProcessSpec, spec: ProcessSpec) -> None:
    assert back == spec
    assert back.location == spec.location  # compare=False: equality alone would not see it
    assert [type(value) for value in dataclasses.astuple(back)] == [type(value) for value in dataclasses.astuple(spec)]


@pytest.mark.parametrize(
    "spec",
    [
        FULL,
        ProcessSpec(name="plain", command=("sleep", "1")),
        ProcessSpec(name="shell", command=("echo $HOME && sleep 1",), shell=True, working_dir="/tmp"),
        ProcessSpec(name="zero", command=("x",), replicas=0, max_restarts=0, backoff=Backoff(0.0, 0.0, 1.0, 0.0)),
        ProcessSpec(
            name="migrate",
            command=("./migrate.sh",),
            kind=Kind.JOB,
            backoff_limit=0,
            depends_on=(Dependency("db"),),
            location=Location("m.yaml"),
        ),
        # Made in code, not from a manifest: a Job scaled up and given a restart budget keeps them.
        ProcessSpec(name="scaled-job", command=("x",), kind=Kind.JOB, replicas=3, max_restarts=1),
        RECREATE,
        ProcessSpec(name="counts", command=("x",), strategy=Strategy(max_surge=0, max_unavailable="100%")),
    ],
    ids=lambda spec: spec.name,
)
def test_spec_round_trip(spec: ProcessSpec) -> None:
    assert_same_spec(codec.spec_from_json(through_text(codec.spec_to_json(spec))), spec)
    document = codec.spec_from_document(through_text(codec.spec_to_document(spec)))
    assert document == spec
    assert document.location is None


# A manifest gives a shell command as one string (FULL's argv with shell: true only code could make).
MANIFEST_LIKE = [
    dataclasses.replace(FULL, backoff_limit=ProcessSpec.backoff_limit, command=("python -m http.server 8080",),
                        active_deadline_seconds=None, queue=None, priority_class=ProcessSpec.priority_class, requests_cpu=None, requests_memory=None),
    dataclasses.replace(
        FULL,
        command=("python -m http.server 8080",),
        kind=Kind.JOB,
        replicas=1,
        restart_policy=RestartPolicy.ALWAYS,
        max_restarts=None,
        restart_window_seconds=ProcessSpec.restart_window_seconds,
        probes=Probes(),  # a Job has none, nor sockets, a strategy or a placement
        placement=None,
        sockets=(),
        strategy=Strategy(),
        autoscale=None,
        restart_with_dependency=False,
    ),
    ProcessSpec(name="a", command=("b",)),
    RECREATE,
]


@pytest.mark.parametrize("spec", MANIFEST_LIKE)
def test_document_of_a_manifest_spec_is_a_valid_manifest(spec: ProcessSpec) -> None:
    document = codec.manifest_document(spec)
    errors = list(Draft202012Validator(schemas()[("orchestrator/v1", spec.kind.value)]).iter_errors(document))
    assert errors == []


def test_document_of_a_shell_command_is_one_string_and_every_default_is_written() -> None:
    document = codec.spec_to_document(ProcessSpec(name="s", command=("sleep 1",), shell=True))
    assert document["metadata"] == {"name": "s", "namespace": "default", "labels": {}}
    assert document["spec"] == {
        "command": "sleep 1",
        "shell": True,
        "workingDir": "/",
        "env": {},
        "replicas": 1,
        "priority": 0,
        "restartPolicy": "Always",
        "successExitCodes": [0],
        "backoff": {"initialSeconds": 1.0, "maxSeconds": 300.0, "multiplier": 2.0, "resetAfterSeconds": 600.0},
        "restartWindowSeconds": 60.0,
        "dependsOn": [],
        "restartWithDependency": False,
        "shutdown": {"signal": "SIGTERM", "timeoutSeconds": 10.0},
        "logs": {"maxBytes": 10 * 1024 * 1024, "keep": 5},
        "sockets": [],
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {}, "onFailure": "Rollback"},  # surge: as sockets say
        "minReadySeconds": 5.0,
        "progressDeadlineSeconds": 600.0,
        "revisionHistoryLimit": 10,
    }


def test_job_document_has_backoff_limit_and_no_process_fields() -> None:
    document = codec.spec_to_document(ProcessSpec(name="j", command=("true",), kind=Kind.JOB))
    assert document["kind"] == "Job"
    assert document["spec"]["backoffLimit"] == 6
    assert document["spec"]["priorityClass"] == "Normal"  # every default of its kind, as diffs show it
    assert "queue" not in document["spec"] and "resources" not in document["spec"]  # unset: the schema has no null
    assert not PROCESS_ONLY & set(document["spec"])


def test_a_loaded_manifest_round_trips(tmp_path: Any) -> None:
    (tmp_path / ".env").write_text("A=1\nB=from file\n")
    (tmp_path / "m.yaml").write_text(
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: api, labels: {tier: web}}\n"
        "spec:\n  command: [sleep, '5']\n  envFrom: [{file: .env}]\n  env: {B: override}\n"
        "  dependsOn: [{name: db}]\n---\n"
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: db}\nspec: {command: 'sleep 5', shell: true}\n"
    )
    for spec in load_specs([str(tmp_path)]):
        assert_same_spec(codec.spec_from_json(through_text(codec.spec_to_json(spec))), spec)


@pytest.mark.parametrize(
    "record",
    [
        FULL_RECORD,
        ReplicaRecord(spec=ProcessSpec(name="a", command=("b",))),
        ReplicaRecord(
            spec=FULL,
            process=ProcessIdentity(1, 0),
            last_exit=Exit(code=0, signal=None, reason=Reason.COMPLETED, at=1.0, ran_seconds=0.0),
        ),
        ReplicaRecord(
            spec=ProcessSpec(name="j", command=("x",), kind=Kind.JOB),
            last_exit=Exit(None, None, Reason.START_FAILED, 3.0, 0.0, "No such file or directory: 'x'"),
        ),
    ],
)
def test_record_round_trip(record: ReplicaRecord) -> None:
    back = record_codec.record_from_json(through_text(record_codec.record_to_json(record)))
    assert back == record
    assert back.spec.location == record.spec.location
    assert type(back.restart_times) is tuple
    if record.last_exit is not None:
        assert back.last_exit is not None and back.last_exit.reason is record.last_exit.reason


@pytest.mark.parametrize(
    "event",
    [
        Event(at=1712345678.125, type=EventType.STARTED, key="shop/api", message="started", replica=1, pid=77),
        Event(at=0.5, type=EventType.APPLIED, key="", message="applied revision 3"),
    ],
)
def test_event_round_trip(event: Event) -> None:
    assert Event.from_json(through_text(event.to_json())) == event


def document(**changes: Any) -> dict[str, Any]:
    """The document of FULL with the dotted fields in `changes` set (or removed when the value is DELETE)."""
    value = through_text(codec.spec_to_document(FULL))
    for path, new in changes.items():
        *parents, last = path.split("__")
        target = value
        for part in parents:
            target = target[part]
        if new is DELETE:
            del target[last]
        else:
            target[last] = new
    return value


DELETE = object()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"apiVersion": "orchestrator/v2"}, "apiVersion: expected 'orchestrator/v1', got 'orchestrator/v2'"),
        ({"kind": "Pod"}, "kind: 'Pod' is not one of Process, Job"),
        ({"metadata": DELETE}, "metadata: missing"),
        ({"metadata__name": DELETE}, "metadata.name: missing"),
        ({"spec__command": DELETE}, "spec.command: missing"),
        ({"spec__command": ["a", 1]}, "spec.command[1]: expected a string, got 1"),
        ({"spec__replicas": "2"}, "spec.replicas: expected an integer, got '2'"),
        ({"spec__replicas": True}, "spec.replicas: expected an integer, got True"),
        ({"spec__backoff__multiplier": "x"}, "spec.backoff.multiplier: expected a number, got 'x'"),
        ({"spec__shell": 1}, "spec.shell: expected true or false, got 1"),
        ({"spec__env": ["A=1"]}, "spec.env: expected a mapping, got a list"),
        ({"spec__env": {"A": 1}}, "spec.env.A: expected a string, got 1"),
        ({"spec__restartPolicy": "Sometimes"}, "spec.restartPolicy: 'Sometimes' is not one of Always, OnFailure"),
        ({"spec__dependsOn": [{"condition": "ready"}]}, "spec.dependsOn[0].name: missing"),
        ({"spec__shutdown__timeout": 3}, "spec.shutdown.timeout: unknown field"),
        ({"spec__sidecars": {}}, "spec.sidecars: unknown field"),
        ({"spec__sockets": [{"name": "a"}]}, "spec.sockets[0].listen: missing"),
        ({"spec__sockets": [{"name": "a", "listen": "unix:/a", "owner": "x"}]}, "spec.sockets[0].owner: unknown field"),
        ({"spec__strategy__type": "Canary"}, "spec.strategy.type: 'Canary' is not one of RollingUpdate, Recreate"),
        ({"spec__strategy__rollingUpdate": {"maxSurge": "1"}},
         "spec.strategy.rollingUpdate.maxSurge: expected a count or a percentage such as '25%', got '1'"),
        ({"spec__strategy__rollingUpdate": {"maxSurge": True}},
         "spec.strategy.rollingUpdate.maxSurge: expected a count or a percentage such as '25%', got True"),
        ({"spec__revisionHistoryLimit": 1.5}, "spec.revisionHistoryLimit: expected an integer, got 1.5"),
        ({"spec__probes__readiness": {"notify": {"socket": "/x"}}}, "probe notify: expected no fields"),
    ],
)
def test_garbled_document_is_a_value_error_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        codec.spec_from_document(document(**changes))


@pytest.mark.parametrize("value", [None, [], "x", {"document": {}, "location": None}, {"location": None}])
def test_garbled_spec_json_is_a_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        codec.spec_from_json(value)


def test_garbled_record_is_a_value_error_naming_the_field() -> None:
    value = through_text(record_codec.record_to_json(FULL_RECORD))
    value["lastExit"]["reason"] = "Vanished"
    with pytest.raises(ValueError, match=r"^lastExit\.reason: 'Vanished' is not one of"):
        record_codec.record_from_json(value)
    value = through_text(record_codec.record_to_json(FULL_RECORD))
    value["spec"]["document"]["spec"]["priority"] = None
    with pytest.raises(ValueError, match=r"^spec\.document: spec\.priority: expected an integer, got None"):
        record_codec.record_from_json(value)
