"""schemas/*.json: well-formed, strict, documented, and every field accepted or refused with a plain message."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from orchestrator.core.errors import ManifestError
from orchestrator.core.model import (
    Backoff,
    Condition,
    Dependency,
    Hook,
    Hooks,
    Kind,
    Limits,
    LogPolicy,
    OnFailure,
    Probe,
    ProbeAction,
    Probes,
    ProcessSpec,
    RestartPolicy,
    Shutdown,
    Socket,
    Strategy,
    StrategyType,
)
from orchestrator.manifests.loader import load_specs
from orchestrator.manifests.schema import _schema_dir, full_validator, is_valid, schemas

SCHEMA_FILES = sorted(_schema_dir().glob("*.json"))
KIND_FILES = [f for f in SCHEMA_FILES if f.name != "manifest.v1.json"]  # manifest.v1.json picks one by kind
# Subschemas that only constrain fields described elsewhere (rules across fields, alternatives).
_APPLICATORS = {"if", "then", "else", "allOf", "anyOf", "oneOf", "not"}


def document(spec: str = "command: [sleep, '1']", metadata: str = "name: api", kind: str = "Process") -> str:
    return (
        f"apiVersion: orchestrator/v1\nkind: {kind}\nmetadata:\n{textwrap.indent(textwrap.dedent(metadata), '  ')}\n"
        f"spec:\n{textwrap.indent(textwrap.dedent(spec), '  ')}\n"
    )


# Documents that the dependencies in the cases below refer to, so that the graph check passes.
DEPENDENCIES = ("db", "migrate", "c")


def load(tmp_path: Path, text: str) -> tuple[ProcessSpec, ...]:
    file = tmp_path / "m.yaml"
    file.write_text(text)
    # migrate is a Job: a Process restarted whenever it exits could never be waited for to complete.
    (tmp_path / "deps.yaml").write_text("---\n".join(
        document(metadata=f"name: {n}", kind="Job" if n == "migrate" else "Process") for n in DEPENDENCIES))
    specs = load_specs([str(file), str(tmp_path / "deps.yaml")])
    return tuple(spec for spec in specs if spec.name not in DEPENDENCIES)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load(tmp_path, text)
    return [f"{p.path}: {p.message}" if p.path else p.message for p in caught.value.problems]


def _objects(schema: Any, where: str = "#") -> list[tuple[str, dict[str, Any]]]:
    """Every subschema of a JSON Schema that describes an object with fixed properties."""
    found = []
    if isinstance(schema, dict):
        if "properties" in schema:
            found.append((where, schema))
        for key, value in schema.items():
            if key not in _APPLICATORS:
                found += _objects(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += _objects(value, f"{where}/{index}")
    return found


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def test_schema_files_exist() -> None:
    assert [f.name for f in SCHEMA_FILES] == ["alertrule.v1.json", "cronjob.v1.json", "gitsync.v1.json", "job.v1.json",
                                              "manifest.v1.json", "notifier.v1.json", "process.v1.json",
                                              "queue.v1.json"]
    assert set(schemas()) == {("orchestrator/v1", kind)
                              for kind in ("Process", "Job", "GitSync", "AlertRule", "Notifier", "CronJob", "Queue")}


@pytest.mark.parametrize("file", SCHEMA_FILES, ids=lambda f: f.name)
def test_schema_is_valid_draft_2020_12(file: Path) -> None:
    schema = json.loads(file.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("file", KIND_FILES, ids=lambda f: f.name)
def test_every_object_refuses_unknown_fields_and_every_field_is_described(file: Path) -> None:
    schema = json.loads(file.read_text())
    for where, node in _objects(schema):
        assert node.get("additionalProperties") is False, where
        for name, prop in node["properties"].items():
            assert _resolve(schema, prop).get("description"), f"{where}/{name}"


def test_shared_definitions_are_the_same_in_every_file() -> None:
    process, job = (
        json.loads(f.read_text()) for f in (_schema_dir() / "process.v1.json", _schema_dir() / "job.v1.json")
    )
    common = set(process["$defs"]) & set(job["$defs"])
    # resources is the one that differs: a Job's has requests beside the same limits (its queue's admission)
    assert {name: process["$defs"][name] for name in common - {"resources"}} == {
        name: job["$defs"][name] for name in common - {"resources"}}
    process_resources, job_resources = process["$defs"]["resources"], job["$defs"]["resources"]
    assert set(job_resources["properties"]) - set(process_resources["properties"]) == {"requests"}
    assert job_resources["properties"]["limits"] == process_resources["properties"]["limits"]
    limits, requests = (job_resources["properties"][group]["properties"] for group in ("limits", "requests"))
    for quantity in ("cpu", "memory"):  # spelled as limits are
        assert {**requests[quantity], "description": ""} == {**limits[quantity], "description": ""}
    # probes, sockets and rollouts are a Process's only
    assert set(process["$defs"]) - common == {"probe", "port", "countOrPercent", "socket"}
    shared = set(process["properties"]["spec"]["properties"]) & set(job["properties"]["spec"]["properties"])
    for name in shared:
        assert process["properties"]["spec"]["properties"][name] == job["properties"]["spec"]["properties"][name]


def test_kinds_have_their_own_fields() -> None:
    process = schemas()[("orchestrator/v1", "Process")]["properties"]["spec"]["properties"]
    job = schemas()[("orchestrator/v1", "Job")]["properties"]["spec"]["properties"]
    assert set(process) - set(job) == {"replicas", "restartPolicy", "maxRestarts", "restartWindowSeconds", "probes",
                                          "restartWithDependency", "autoscale", "sockets", "strategy",
                                          "minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit", "placement"}
    assert set(job) - set(process) == {"backoffLimit", "activeDeadlineSeconds", "queue", "priorityClass"}


def test_schema_defaults_match_the_model() -> None:
    """The model's defaults mirror the schema's, so specs built in code mean what manifests mean."""
    spec = ProcessSpec(name="x", command=("x",))
    for (_, kind), schema in schemas().items():
        if kind in ("GitSync", "AlertRule", "Notifier", "CronJob", "Queue"):
            continue  # not a process: test_gitsync_manifest.py, test_alerting_manifest.py, test_cronjob_manifest.py,
            # test_queue_manifest.py
        props = schema["properties"]["spec"]["properties"]
        defaults = {name: _resolve(schema, prop).get("default") for name, prop in props.items()}
        assert defaults["shell"] == spec.shell
        assert defaults["priority"] == spec.priority
        assert defaults["successExitCodes"] == list(spec.success_exit_codes)
        if kind == "Process":
            assert defaults["replicas"] == spec.replicas
            assert defaults["restartPolicy"] == spec.restart_policy.value
            assert defaults["restartWindowSeconds"] == spec.restart_window_seconds
            assert (defaults["minReadySeconds"], defaults["progressDeadlineSeconds"],
                    defaults["revisionHistoryLimit"]) == (spec.strategy.min_ready_seconds,
                                                          spec.strategy.progress_deadline_seconds,
                                                          spec.strategy.revision_history_limit)
            strategy = props["strategy"]["properties"]
            assert strategy["type"]["default"] == spec.strategy.type.value
            assert strategy["onFailure"]["default"] == spec.strategy.on_failure.value
            # maxSurge and maxUnavailable have no one default (it depends on sockets): None in the model.
            rolling = strategy["rollingUpdate"]["properties"]
            assert "default" not in rolling["maxSurge"] and "default" not in rolling["maxUnavailable"]
            assert spec.strategy.max_surge is None and spec.strategy.max_unavailable is None
            assert defaults["sockets"] == list(spec.sockets)
            socket = schema["$defs"]["socket"]["properties"]
            assert (socket["reusePort"]["default"], socket["nonBlocking"]["default"]) == (
                Socket.reuse_port, Socket.non_blocking)
            assert "default" not in socket["backlog"] and Socket.backlog is None  # net.core.somaxconn
        else:
            assert defaults["backoffLimit"] == spec.backoff_limit
            assert defaults["priorityClass"] == spec.priority_class
            assert "default" not in props["queue"] and spec.queue is None
            requests = _resolve(schema, props["resources"])["properties"]["requests"]
            assert requests["default"] == {} and (spec.requests_cpu, spec.requests_memory) == (None, None)
        backoff = _resolve(schema, props["backoff"])["properties"]
        assert {k: _resolve(schema, v)["default"] for k, v in backoff.items()} == {
            "initialSeconds": Backoff.initial_seconds,
            "maxSeconds": Backoff.max_seconds,
            "multiplier": Backoff.multiplier,
            "resetAfterSeconds": Backoff.reset_after_seconds,
        }
        shutdown = _resolve(schema, props["shutdown"])["properties"]
        assert shutdown["signal"]["default"] == Shutdown.signal
        assert _resolve(schema, shutdown["timeoutSeconds"])["default"] == Shutdown.timeout_seconds
        metadata = _resolve(schema, schema["properties"]["metadata"])["properties"]
        assert _resolve(schema, metadata["namespace"])["default"] == spec.namespace
        depends = _resolve(schema, props["dependsOn"])["items"]["properties"]
        assert depends["condition"]["default"] == Condition.STARTED.value


def test_defaults_when_fields_are_absent(tmp_path: Path) -> None:
    (spec,) = load(tmp_path, document())
    assert spec == ProcessSpec(name="api", command=("sleep", "1"), working_dir=str(tmp_path))
    assert spec.kind is Kind.PROCESS
    assert spec.restart_policy is RestartPolicy.ALWAYS
    assert spec.max_restarts is None
    assert spec.user is None


# (spec or metadata snippet, attribute of ProcessSpec, expected value)
VALID = [
    ("command: [python, -m, http.server, '8080']", "command", ("python", "-m", "http.server", "8080")),
    ("command: 'echo hi && sleep 1'\nshell: true", "command", ("echo hi && sleep 1",)),
    ("command: 'echo hi'\nshell: true", "shell", True),
    ("command: [x]\nshell: false", "shell", False),
    (
        "command: [x]\nenv: {PORT: '8080', _X: '', lower_1: 'a b'}",
        "env",
        (("PORT", "8080"), ("_X", ""), ("lower_1", "a b")),
    ),
    ("command: [x]\nuser: www-data", "user", "www-data"),
    ("command: [x]\nreplicas: 0", "replicas", 0),
    ("command: [x]\nreplicas: 3", "replicas", 3),
    ("command: [x]\npriority: -100", "priority", -100),
    ("command: [x]\npriority: 100", "priority", 100),
    ("command: [x]\nrestartPolicy: OnFailure", "restart_policy", RestartPolicy.ON_FAILURE),
    ("command: [x]\nrestartPolicy: Never", "restart_policy", RestartPolicy.NEVER),
    ("command: [x]\nsuccessExitCodes: [0, 1, 255]", "success_exit_codes", (0, 1, 255)),
    (
        "command: [x]\nbackoff: {initialSeconds: 0.5, maxSeconds: 30, multiplier: 1.5, resetAfterSeconds: 0}",
        "backoff",
        Backoff(0.5, 30.0, 1.5, 0.0),
    ),
    ("command: [x]\nbackoff: {initialSeconds: 0}", "backoff", Backoff(initial_seconds=0.0)),
    ("command: [x]\nmaxRestarts: 0", "max_restarts", 0),
    ("command: [x]\nmaxRestarts: 5", "max_restarts", 5),
    ("command: [x]\nrestartWindowSeconds: 0.5", "restart_window_seconds", 0.5),
    (
        "command: [x]\ndependsOn: [{name: db, condition: ready}, {name: migrate, condition: completed}, {name: c}]",
        "depends_on",
        (Dependency("db", Condition.READY), Dependency("migrate", Condition.COMPLETED), Dependency("c")),
    ),
    ("command: [x]\nshutdown: {signal: SIGINT, timeoutSeconds: 0.5}", "shutdown", Shutdown("SIGINT", 0.5)),
    ("command: [x]\nshutdown: {signal: SIGKILL}", "shutdown", Shutdown("SIGKILL", 10.0)),
    ("command: [x]\nlogs: {maxBytes: 10Mi, keep: 2}", "logs", LogPolicy(10 * 1024 * 1024, 2)),
    ("command: [x]\nlogs: {maxBytes: 4096}", "logs", LogPolicy(4096, 5)),
    ("command: [x]\nlogs: {keep: 0}", "logs", LogPolicy(10 * 1024 * 1024, 0)),
    ("command: [x]\nresources: {limits: {memory: 256Mi, cpu: '500m', openFiles: 1024, processes: 64}}", "limits",
     Limits(256 * 1024 * 1024, 0.5, 1024, 64)),
    ("command: [x]\nresources: {limits: {cpu: 1.5}}", "limits", Limits(cpu=1.5)),
    ("command: [x]\ncpuAffinity: [0, 1]", "cpu_affinity", (0, 1)),
    ("command: [x]\nioClass: idle", "io_class", "idle"),
    ("command: [x]\nautoscale: {min: 2, max: 5, targetCPUPercent: 70}", "replicas", 2),
    ("command: [x]\nhooks: {preStart: {exec: [./m.sh]}}", "hooks", Hooks(pre_start=Hook(("./m.sh",)))),
    ("command: [x]\nhooks: {preStop: {exec: [a, b], timeoutSeconds: 0.5}}", "hooks",
     Hooks(pre_stop=Hook(("a", "b"), 0.5))),
    ("command: [x]\nsockets: [{name: http, listen: 'tcp://0.0.0.0:8080'}]", "sockets",
     (Socket("http", "tcp://0.0.0.0:8080"),)),
    ("command: [x]\nsockets: [{name: h6, listen: 'tcp://[::1]:80', backlog: 16, reusePort: true, nonBlocking: true}]",
     "sockets", (Socket("h6", "tcp://[::1]:80", backlog=16, reuse_port=True, non_blocking=True),)),
    ("command: [x]\nsockets: [{name: admin, listen: 'unix:/run/shop/admin.sock', mode: '0660'}]", "sockets",
     (Socket("admin", "unix:/run/shop/admin.sock", mode="0660"),)),
    ("command: [x]\nsockets: [{name: a, listen: 'tcp://api.internal:65535'}, {name: b, listen: 'unix:/b', mode: '600'}]",
     "sockets", (Socket("a", "tcp://api.internal:65535"), Socket("b", "unix:/b", mode="600"))),
    ("command: [x]\nstrategy: {rollingUpdate: {maxSurge: 25%, maxUnavailable: 10%}}", "strategy",
     Strategy(max_surge="25%", max_unavailable="10%")),
    ("command: [x]\nstrategy: {rollingUpdate: {maxSurge: 2, maxUnavailable: 0}}", "strategy",
     Strategy(max_surge=2, max_unavailable=0)),
    ("command: [x]\nstrategy: {rollingUpdate: {maxUnavailable: 100%}}", "strategy", Strategy(max_unavailable="100%")),
    ("command: [x]\nstrategy: {type: Recreate, onFailure: Pause}", "strategy",
     Strategy(type=StrategyType.RECREATE, on_failure=OnFailure.PAUSE)),
    ("command: [x]\nstrategy: {type: RollingUpdate, rollingUpdate: {}}", "strategy", Strategy()),
    ("command: [x]\nminReadySeconds: 0.5\nprogressDeadlineSeconds: 30\nrevisionHistoryLimit: 0", "strategy",
     Strategy(min_ready_seconds=0.5, progress_deadline_seconds=30.0, revision_history_limit=0)),
    ("command: [x]\nminReadySeconds: 0\nrevisionHistoryLimit: 100", "strategy",
     Strategy(min_ready_seconds=0.0, revision_history_limit=100)),
    # Percentages against replicas: 10% of 10 rounds down to 1; with no replicas only a 0 that is one always counts.
    ("command: [x]\nreplicas: 10\nstrategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 10%}}", "strategy",
     Strategy(max_surge=0, max_unavailable="10%")),
    ("command: [x]\nreplicas: 0\nstrategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 10%}}", "strategy",
     Strategy(max_surge=0, max_unavailable="10%")),
    ("command: [x]\nreplicas: 3\nstrategy: {rollingUpdate: {maxSurge: 1%, maxUnavailable: 0}}", "strategy",
     Strategy(max_surge="1%", max_unavailable=0)),
    # With sockets, maxSurge 0 alone leaves maxUnavailable at 1 (stop-first: the socket stays open).
    ("command: [x]\nsockets: [{name: a, listen: 'unix:/a'}]\nstrategy: {rollingUpdate: {maxSurge: 0}}", "strategy",
     Strategy(max_surge=0)),
    # A Recreate has no batches: zeros cannot stall it (and rollingUpdate is refused there).
    ("command: [x]\nstrategy: {type: Recreate}\nminReadySeconds: 0", "strategy",
     Strategy(type=StrategyType.RECREATE, min_ready_seconds=0.0)),
    ("command: [x]\nprobes: {readiness: {notify: {}}, liveness: {notify: {}, periodSeconds: 5}}", "probes",
     Probes(readiness=Probe(ProbeAction.NOTIFY), liveness=Probe(ProbeAction.NOTIFY, period_seconds=5.0))),
    # A probe of a port that is not one of the process's sockets (its own admin port) is fine.
    ("command: [x]\nsockets: [{name: http, listen: 'tcp://0.0.0.0:8080'}]\nprobes: {readiness: {http: {port: 9090}}}",
     "probes", Probes(readiness=Probe(ProbeAction.HTTP, port=9090))),
]


@pytest.mark.parametrize(("spec", "attribute", "expected"), VALID, ids=[v[0] for v in VALID])
def test_valid_process_fields(tmp_path: Path, spec: str, attribute: str, expected: object) -> None:
    (built,) = load(tmp_path, document(spec))
    assert getattr(built, attribute) == expected


@pytest.mark.parametrize(
    ("metadata", "attribute", "expected"),
    [
        ("name: a", "name", "a"),
        ("name: " + "a" * 63, "name", "a" * 63),
        ("name: my-api-2", "name", "my-api-2"),
        ("name: a\nnamespace: shop", "namespace", "shop"),
        ("name: a", "namespace", "default"),
        (
            "name: a\nlabels: {tier: backend, app.kubernetes.io/name: shop, Upper_Case.x: v}",
            "labels",
            (("Upper_Case.x", "v"), ("app.kubernetes.io/name", "shop"), ("tier", "backend")),
        ),
    ],
)
def test_valid_metadata(tmp_path: Path, metadata: str, attribute: str, expected: object) -> None:
    (built,) = load(tmp_path, document(metadata=metadata))
    assert getattr(built, attribute) == expected


def test_valid_job(tmp_path: Path) -> None:
    (job,) = load(tmp_path, document("command: [./migrate.sh]\nbackoffLimit: 3\nsuccessExitCodes: [0, 3]", kind="Job"))
    assert (job.kind, job.backoff_limit, job.success_exit_codes) == (Kind.JOB, 3, (0, 3))
    (job,) = load(tmp_path, document("command: [./migrate.sh]", kind="Job"))
    assert job.backoff_limit == 6


NAME_WORDS = "is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit"
SHARED = "probe would test the shared socket, not this replica: use a notify, log or exec probe"
STALLED = "no replica could ever be replaced; let one of them be at least 1"

# (spec snippet, expected "path: message" lines, all of them)
INVALID = [
    ("shell: true", ["spec: missing required field 'command'"]),
    ("command: []", ["spec.command: must not be empty"]),
    ("command: ''\nshell: true", ["spec.command: must not be empty"]),
    ("command: [sleep, 1]", ['spec.command[1]: expected a string, got 1: quote it ("1")']),
    ("command: 5", ["spec.command: expected a list or a string, got 5"]),
    ("command: {a: b}", ["spec.command: expected a list or a string, got a mapping"]),
    ("command:", ["spec.command: expected a list or a string, got nothing"]),
    ("command: 'sleep 1'", ["spec.command: command is a string: set shell: true or give an argv list"]),
    ("command: 'sleep 1'\nshell: false", ["spec.command: command is a string: set shell: true or give an argv list"]),
    ("command: [sleep, '1']\nshell: true", ["spec.command: with shell: true, give the command as one string"]),
    ("command: [x]\nshell: 'yes'", ["spec.shell: expected true or false, got 'yes'"]),
    ("command: [x]\nworkingDir: 5", ['spec.workingDir: expected a string, got 5: quote it ("5")']),
    ("command: [x]\nworkingDir: ''", ["spec.workingDir: must not be empty"]),
    ("command: [x]\nenv: {PORT: 8080}", ['spec.env.PORT: expected a string, got 8080: quote it ("8080")']),
    ("command: [x]\nenv: {DEBUG: yes}", ['spec.env.DEBUG: expected a string, got yes: quote it ("yes")']),
    ("command: [x]\nenv: {RATIO: 0.5}", ['spec.env.RATIO: expected a string, got 0.5: quote it ("0.5")']),
    ("command: [x]\nenv: {EMPTY: }", ["spec.env.EMPTY: expected a string, got nothing"]),
    (
        "command: [x]\nenv: {1PORT: '1'}",
        [
            (
                "spec.env['1PORT']: '1PORT' is not a valid environment variable name: use letters, digits and '_', "
                "not starting with a digit"
            )
        ],
    ),
    ("command: [x]\nenv: [PORT=1]", ["spec.env: expected a mapping, got a list"]),
    ("command: [x]\nenvFrom: [.env]", ["spec.envFrom[0]: expected a mapping, got '.env'"]),
    (
        "command: [x]\nenvFrom: [{path: .env}]",
        ["spec.envFrom[0]: missing required field 'file'", "spec.envFrom[0]: unknown field 'path'"],
    ),
    ("command: [x]\nuser: 0", ['spec.user: expected a string, got 0: quote it ("0")']),
    ("command: [x]\nreplicas: -1", ["spec.replicas: must be at least 0, got -1"]),
    ("command: [x]\nreplicas: 1.5", ["spec.replicas: expected an integer, got 1.5"]),
    ("command: [x]\nreplicas: '2'", ["spec.replicas: expected an integer, got '2'"]),
    ("command: [x]\nreplica: 2", ["spec: unknown field 'replica' (did you mean 'replicas'?)"]),
    ("command: [x]\npriority: 101", ["spec.priority: must be at most 100, got 101"]),
    ("command: [x]\npriority: -101", ["spec.priority: must be at least -100, got -101"]),
    (
        "command: [x]\nrestartPolicy: Sometimes",
        ["spec.restartPolicy: 'Sometimes' is not one of Always, OnFailure, Never"],
    ),
    (
        "command: [x]\nrestartPolicy: always",
        ["spec.restartPolicy: 'always' is not one of Always, OnFailure, Never (did you mean 'Always'?)"],
    ),
    ("command: [x]\nsuccessExitCodes: []", ["spec.successExitCodes: must not be empty"]),
    ("command: [x]\nsuccessExitCodes: [256]", ["spec.successExitCodes[0]: must be at most 255, got 256"]),
    ("command: [x]\nsuccessExitCodes: [-1]", ["spec.successExitCodes[0]: must be at least 0, got -1"]),
    ("command: [x]\nsuccessExitCodes: [0, 0]", ["spec.successExitCodes: must not list the same value twice"]),
    ("command: [x]\nsuccessExitCodes: 0", ["spec.successExitCodes: expected a list, got 0"]),
    ("command: [x]\nbackoff: {initialSeconds: abc}", ["spec.backoff.initialSeconds: expected a number, got 'abc'"]),
    ("command: [x]\nbackoff: {initialSeconds: -1}", ["spec.backoff.initialSeconds: must be at least 0, got -1"]),
    ("command: [x]\nbackoff: {maxSeconds: -0.5}", ["spec.backoff.maxSeconds: must be at least 0, got -0.5"]),
    ("command: [x]\nbackoff: {multiplier: 0.5}", ["spec.backoff.multiplier: must be at least 1, got 0.5"]),
    ("command: [x]\nbackoff: {resetAfterSeconds: -1}", ["spec.backoff.resetAfterSeconds: must be at least 0, got -1"]),
    (
        "command: [x]\nbackoff: {initialSeconds: .inf}",
        ["spec.backoff.initialSeconds: expected a finite number, got .inf"],
    ),
    (
        "command: [x]\nbackoff: {initial: 1}",
        ["spec.backoff: unknown field 'initial' (did you mean 'initialSeconds'?)"],
    ),
    (
        "command: [x]\nbackoff: {initialSeconds: 10, maxSeconds: 5}",
        ["spec.backoff.initialSeconds: initialSeconds (10) is larger than maxSeconds (5)"],
    ),
    ("command: [x]\nbackoff: 5", ["spec.backoff: expected a mapping, got 5"]),
    ("command: [x]\nmaxRestarts: -1", ["spec.maxRestarts: must be at least 0, got -1"]),
    ("command: [x]\nmaxRestarts: many", ["spec.maxRestarts: expected an integer, got 'many'"]),
    ("command: [x]\nrestartWindowSeconds: 0", ["spec.restartWindowSeconds: must be greater than 0, got 0"]),
    ("command: [x]\ndependsOn: [db]", ["spec.dependsOn[0]: expected a mapping, got 'db'"]),
    ("command: [x]\ndependsOn: [{condition: ready}]", ["spec.dependsOn[0]: missing required field 'name'"]),
    ("command: [x]\ndependsOn: [{name: a}, {name: DB}]", [f"spec.dependsOn[1].name: 'DB' {NAME_WORDS}"]),
    (
        "command: [x]\ndependsOn: [{name: db, condition: healthy}]",
        ["spec.dependsOn[0].condition: 'healthy' is not one of started, ready, completed"],
    ),
    (
        "command: [x]\ndependsOn: [{name: db}, {name: db}]",
        ["spec.dependsOn[1].name: 'db' is already listed at spec.dependsOn[0]"],
    ),
    (
        "command: [x]\nshutdown: {signal: TERM}",
        [
            (
                "spec.shutdown.signal: 'TERM' is not one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGKILL, SIGUSR1, SIGUSR2"
                " (did you mean 'SIGTERM'?)"
            )
        ],
    ),
    (
        "command: [x]\nshutdown: {signal: 15}",
        ["spec.shutdown.signal: 15 is not one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGKILL, SIGUSR1, SIGUSR2"],
    ),
    ("command: [x]\nshutdown: {timeoutSeconds: -1}", ["spec.shutdown.timeoutSeconds: must be at least 0, got -1"]),
    ("command: [x]\nlogs: {keep: -1}", ["spec.logs.keep: must be at least 0, got -1"]),
    ("command: [x]\nresources: {limits: {openFiles: 0}}", ["spec.resources.limits.openFiles: must be at least 1, got 0"]),
    ("command: [x]\nresources: {limits: {swap: 1}}", ["spec.resources.limits: unknown field 'swap'"]),
    ("command: [x]\nioClass: fast", ["spec.ioClass: 'fast' is not one of idle, best-effort, realtime"]),
    ("command: [x]\nreplicas: 2\nautoscale: {min: 1, max: 3, targetCPUPercent: 50}",
     ["spec.replicas: give replicas or autoscale, not both: autoscale sets the number of replicas"]),
    ("command: [x]\nautoscale: {min: 4, max: 3, targetCPUPercent: 50}",
     ["spec.autoscale.min: min (4) is larger than max (3)"]),
    ("command: [x]\nhooks: {preStart: {exec: []}}", ["spec.hooks.preStart.exec: must not be empty"]),
    ("command: [x]\nhooks: {onCrash: {exec: [x]}}", ["spec.hooks: unknown field 'onCrash'"]),
    ("command: [x]\nprobes: {readiness: {periodSeconds: 1}}",
     [("spec.probes.readiness: missing required field: one of 'exec', 'http', 'tcp', 'log', 'notify' (what the probe "
      "checks)")]),
    ("command: [x]\nprobes: {liveness: {tcp: {port: 1}, exec: {command: [x]}, log: {pattern: a}}}",
     ["spec.probes.liveness: give only one of 'exec', 'http', 'tcp', 'log', 'notify', got 'exec', 'tcp' and 'log'"]),
    ("command: [x]\nprobes: {readiness: {notify: {}, log: {pattern: a}}}",
     ["spec.probes.readiness: give only one of 'exec', 'http', 'tcp', 'log', 'notify', got 'log' and 'notify'"]),
    ("command: [x]\nprobes: {readiness: {notify: {socket: /run/n.sock}}}",
     ["spec.probes.readiness.notify: unknown field 'socket'"]),
    ("command: [x]\nprobes: {readiness: {notify: true}}", ["spec.probes.readiness.notify: expected a mapping, got true"]),
    # sockets
    ("command: [x]\nsockets: [{listen: 'unix:/a'}]", ["spec.sockets[0]: missing required field 'name'"]),
    ("command: [x]\nsockets: [{name: a}]", ["spec.sockets[0]: missing required field 'listen'"]),
    ("command: [x]\nsockets: [{name: HTTP, listen: 'unix:/a'}]", [f"spec.sockets[0].name: 'HTTP' {NAME_WORDS}"]),
    ("command: [x]\nsockets: {http: 'tcp://h:80'}", ["spec.sockets: expected a list, got a mapping"]),
    *[(f"command: [x]\nsockets: [{{name: a, listen: '{listen}'}}]",
       [(f"spec.sockets[0].listen: '{listen}' is not a listen address: tcp://HOST:PORT, tcp://[IPv6]:PORT or "
        "unix:/absolute/path")])
      for listen in ("http://h:80", "tcp://h", "tcp://:80", "tcp://::1:80", "tcp://h:80/x", "unix:run/a.sock", "unix:",
                     "0.0.0.0:8080", "tcp://h:123456")],
    ("command: [x]\nsockets: [{name: a, listen: 8080}]", [('spec.sockets[0].listen: expected a string, got 8080: quote it '
                                                           '("8080")')]),
    ("command: [x]\nsockets: [{name: a, listen: 'unix:/a', backlog: 0}]",
     ["spec.sockets[0].backlog: must be at least 1, got 0"]),
    ("command: [x]\nsockets: [{name: a, listen: 'unix:/a', backlog: 65536}]",
     ["spec.sockets[0].backlog: must be at most 65535, got 65536"]),
    ("command: [x]\nsockets: [{name: a, listen: 'unix:/a', reusePort: 'yes'}]",
     ["spec.sockets[0].reusePort: expected true or false, got 'yes'"]),
    # Per-instance sockets are a later phase of rollouts: refused until they are implemented, never ignored.
    ("command: [x]\nsockets: [{name: a, listen: 'unix:/a', perInstance: true}]",
     ["spec.sockets[0]: unknown field 'perInstance'"]),
    ("command: [x]\nsockets: [{name: a, listen: 'unix:/a', mode: 0660}]",
     ['spec.sockets[0].mode: expected a string, got 0660: quote it ("0660")']),
    ("command: [x]\nsockets: [{name: a, listen: 'unix:/a', mode: '0999'}]",
     ["spec.sockets[0].mode: '0999' is not an octal mode such as '0660'"]),
    ("command: [x]\nsockets: [{name: a, listen: 'tcp://0.0.0.0:80', mode: '0660'}]",
     ["spec.sockets[0].mode: mode is for unix sockets only: a tcp socket has no file to set it on"]),
    (("command: [x]\nsockets: [{name: a, listen: 'tcp://h:80'}, {name: b, listen: 'tcp://h:81'}, {name: a, listen: "
     "'tcp://h:82'}]"), ["spec.sockets[2].name: 'a' is already listed at spec.sockets[0]"]),
    ("command: [x]\nsockets: [{name: a, listen: 'tcp://h:0'}]",
     ["spec.sockets[0].listen: the port of 'tcp://h:0' must be 1 to 65535, got 0"]),
    ("command: [x]\nsockets: [{name: a, listen: 'tcp://[::]:65536'}]",
     ["spec.sockets[0].listen: the port of 'tcp://[::]:65536' must be 1 to 65535, got 65536"]),
    (f"command: [x]\nsockets: [{{name: a, listen: 'unix:/{'s' * 107}'}}]",
     ["spec.sockets[0].listen: a unix socket's path is at most 107 bytes (sun_path), got 108"]),
    # probes aimed at the process's own shared socket
    (("command: [x]\nsockets: [{name: http, listen: 'tcp://0.0.0.0:8080'}, {name: admin, listen: 'unix:/a'}]\n"
     "probes: {startup: {tcp: {port: 8080}}, readiness: {http: {port: 8080, path: /ready}}, "
     "liveness: {tcp: {port: 8081}}}"),
     [f"spec.probes.startup.tcp.port: {SHARED}", f"spec.probes.readiness.http.port: {SHARED}"]),
    (("command: [x]\nsockets: [{name: http, listen: 'tcp://[::1]:443'}]\nprobes: {liveness: {tcp: {port: 443, host: "
     "'::1'}}}"), [f"spec.probes.liveness.tcp.port: {SHARED}"]),
    # strategy
    ("command: [x]\nstrategy: {type: Canary}", ["spec.strategy.type: 'Canary' is not one of RollingUpdate, Recreate"]),
    ("command: [x]\nstrategy: {type: rollingUpdate}",
     ["spec.strategy.type: 'rollingUpdate' is not one of RollingUpdate, Recreate (did you mean 'RollingUpdate'?)"]),
    ("command: [x]\nstrategy: {onFailure: Retry}", ["spec.strategy.onFailure: 'Retry' is not one of Rollback, Pause"]),
    ("command: [x]\nstrategy: {maxSurge: 1}", ["spec.strategy: unknown field 'maxSurge'"]),
    ("command: [x]\nstrategy: {rollingUpdate: {partition: 1}}", ["spec.strategy.rollingUpdate: unknown field 'partition'"]),
    ("command: [x]\nstrategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}",
     [("spec.strategy.rollingUpdate: rollingUpdate is for type RollingUpdate: a Recreate stops and starts every replica "
      "at once")]),
    ("command: [x]\nstrategy: {rollingUpdate: {maxSurge: -1}}",
     ["spec.strategy.rollingUpdate.maxSurge: must be at least 0, got -1"]),
    ("command: [x]\nstrategy: {rollingUpdate: {maxSurge: 1.5}}",
     ["spec.strategy.rollingUpdate.maxSurge: expected an integer or a string, got 1.5"]),
    ("command: [x]\nstrategy: {rollingUpdate: {maxUnavailable: '1'}}",
     ["spec.strategy.rollingUpdate.maxUnavailable: '1' is not a count or a percentage of replicas: 2 or '25%'"]),
    ("command: [x]\nstrategy: {rollingUpdate: {maxUnavailable: 12.5%}}",
     ["spec.strategy.rollingUpdate.maxUnavailable: '12.5%' is not a count or a percentage of replicas: 2 or '25%'"]),
    ("command: [x]\nstrategy: {rollingUpdate: {maxUnavailable: 150%}}",
     ["spec.strategy.rollingUpdate.maxUnavailable: must be at most 100% (every replica), got '150%'"]),
    ("command: [x]\nstrategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}",
     [f"spec.strategy.rollingUpdate.maxUnavailable: maxSurge is 0 and maxUnavailable is 0: {STALLED}"]),
    ("command: [x]\nstrategy: {rollingUpdate: {maxUnavailable: 0}}",
     [(f"spec.strategy.rollingUpdate.maxUnavailable: maxSurge is 0 (its default without sockets) and maxUnavailable is "
      f"0: {STALLED}")]),
    ("command: [x]\nreplicas: 4\nstrategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 20%}}",
     [(f"spec.strategy.rollingUpdate.maxUnavailable: maxSurge is 0 and maxUnavailable '20%' of 4 replicas rounds down to "
      f"0: {STALLED}")]),
    ("command: [x]\nreplicas: 0\nstrategy: {rollingUpdate: {maxSurge: 0%, maxUnavailable: 0}}",
     [f"spec.strategy.rollingUpdate.maxUnavailable: maxSurge is '0%' and maxUnavailable is 0: {STALLED}"]),
    (("command: [x]\nautoscale: {min: 2, max: 8, targetCPUPercent: 50}\n"
     "strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 25%}}"),
     [(f"spec.strategy.rollingUpdate.maxUnavailable: maxSurge is 0 and maxUnavailable '25%' of 2 replicas (the smallest "
      f"pool autoscale makes) rounds down to 0: {STALLED}")]),
    ("command: [x]\nminReadySeconds: -1", ["spec.minReadySeconds: must be at least 0, got -1"]),
    ("command: [x]\nprogressDeadlineSeconds: 0", ["spec.progressDeadlineSeconds: must be greater than 0, got 0"]),
    ("command: [x]\nrevisionHistoryLimit: 101", ["spec.revisionHistoryLimit: must be at most 100, got 101"]),
    ("command: [x]\nrevisionHistoryLimit: -1", ["spec.revisionHistoryLimit: must be at least 0, got -1"]),
    ("command: [x]\nminReadySeconds: 30\nprogressDeadlineSeconds: 30",
     [("spec.progressDeadlineSeconds: progressDeadlineSeconds (30) must be more than minReadySeconds (30): no new "
      "replica could become available before the rollout fails")]),
    ("command: [x]\nminReadySeconds: 900",
     [("spec.minReadySeconds: progressDeadlineSeconds (600, its default) must be more than minReadySeconds (900): no new "
      "replica could become available before the rollout fails")]),
    ("command: [x]\nlogs: {maxBytes: true}", ["spec.logs.maxBytes: expected an integer or a string, got true"]),
    ("command: [x]\nresources: {limits: {cpu: true}}",
     ["spec.resources.limits.cpu: expected a number or a string, got true"]),
    ("command: 'sleep 1'\nshell: 'yes'", ["spec.command: command is a string: set shell: true or give an argv list",
                                         "spec.shell: expected true or false, got 'yes'"]),
    ("command: [x]\nlogs: {maxBytes: 0}", ["spec.logs.maxBytes: must be at least 1, got 0"]),
    ("command: [x]\nlogs: {maxBytes: '0.5'}", [("spec.logs.maxBytes: expected a size in bytes such as 512, 256Mi or "
                                               "1G (suffixes Ki Mi Gi Ti, or k M G T for powers of 1000), got '0.5': "
                                               "that is not a whole number of bytes")]),
    ("command: [x]\nlogs: {maxBytes: 10MB}", [("spec.logs.maxBytes: '10MB' is not matching the pattern "
                                              "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|K|M|G|T)?$")]),
    (
        "command: [x]\nshutdown: {timeout: 1}",
        ["spec.shutdown: unknown field 'timeout' (did you mean 'timeoutSeconds'?)"],
    ),
    ("command: [x]\nbackoffLimit: 3", ["spec: unknown field 'backoffLimit' (only a Job has it)"]),
]


@pytest.mark.parametrize(("spec", "expected"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_process_fields(tmp_path: Path, spec: str, expected: list[str]) -> None:
    assert sorted(problems(tmp_path, document(spec))) == sorted(expected)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("command: [x]\nreplicas: 2", ["spec: unknown field 'replicas' (only a Process has it)"]),
        ("command: [x]\nrestartPolicy: Never", ["spec: unknown field 'restartPolicy' (only a Process has it)"]),
        ("command: [x]\nmaxRestarts: 1", ["spec: unknown field 'maxRestarts' (only a Process has it)"]),
        (
            "command: [x]\nrestartWindowSeconds: 1",
            ["spec: unknown field 'restartWindowSeconds' (only a Process has it)"],
        ),
        ("command: [x]\nbackoffLimit: -1", ["spec.backoffLimit: must be at least 0, got -1"]),
        ("command: [x]\nbackofLimit: 1", ["spec: unknown field 'backofLimit' (did you mean 'backoffLimit'?)"]),
    ],
)
def test_invalid_job_fields(tmp_path: Path, spec: str, expected: list[str]) -> None:
    assert problems(tmp_path, document(spec, kind="Job")) == expected


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ("namespace: shop", ["metadata: missing required field 'name'"]),
        ("name: My_App", [f"metadata.name: 'My_App' {NAME_WORDS}"]),
        ("name: -api", [f"metadata.name: '-api' {NAME_WORDS}"]),
        ("name: api-", [f"metadata.name: 'api-' {NAME_WORDS}"]),
        ("name: " + "a" * 64, ["metadata.name: must be at most 63 characters long, got 64"]),
        ("name: 5", ['metadata.name: expected a string, got 5: quote it ("5")']),
        ("name: a\nnamespace: Shop", [f"metadata.namespace: 'Shop' {NAME_WORDS}"]),
        ("name: a\nlabels: {tier: 1}", ['metadata.labels.tier: expected a string, got 1: quote it ("1")']),
        (
            "name: a\nlabels: {'bad key': x}",
            [
                (
                    "metadata.labels['bad key']: 'bad key' is not a valid label key: an optional DNS prefix and '/', then "
                    "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                )
            ],
        ),
        ("name: a\nlabels: [a]", ["metadata.labels: expected a mapping, got a list"]),
        ("name: a\nannotations: {}", ["metadata: unknown field 'annotations'"]),
        ("name: a\nnamspace: x", ["metadata: unknown field 'namspace' (did you mean 'namespace'?)"]),
    ],
)
def test_invalid_metadata(tmp_path: Path, metadata: str, expected: list[str]) -> None:
    assert problems(tmp_path, document(metadata=metadata)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: a}\n", ["missing required field 'spec'"]),
        ("kind: Process\nmetadata: {name: a}\nspec: {command: [x]}\n", ["missing required field 'apiVersion'"]),
        ("apiVersion: orchestrator/v1\nmetadata: {name: a}\nspec: {command: [x]}\n", ["missing required field 'kind'"]),
        (
            "apiVersion: orchestrator/v2\nkind: Process\nmetadata: {name: a}\nspec: {command: [x]}\n",
            ["apiVersion: unknown apiVersion 'orchestrator/v2': expected orchestrator/v1"],
        ),
        (
            "apiVersion: orchestrator/v1\nkind: Service\nmetadata: {name: a}\nspec: {command: [x]}\n",
            ["kind: unknown kind 'Service': expected one of AlertRule, CronJob, GitSync, Job, Notifier, Process, Queue"],
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {}\n",
            [
                "apiVersion: unknown apiVersion 'v1': expected orchestrator/v1",
                "kind: unknown kind 'Pod': expected one of AlertRule, CronJob, GitSync, Job, Notifier, Process, Queue",
            ],
        ),
        (
            "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: a}\nspec: {command: [x]}\nstatus: {}\n",
            ["unknown field 'status'"],
        ),
        ("- a\n- b\n", ["a manifest must be a mapping with apiVersion, kind, metadata and spec, got a list"]),
        ("just text\n", ["a manifest must be a mapping with apiVersion, kind, metadata and spec, got 'just text'"]),
    ],
)
def test_invalid_documents(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems(tmp_path, text) == expected


# --- manifest.v1.json, for editors and CI tools: each document checked by its kind's schema ------------------


def _manifest_validator() -> Draft202012Validator:
    from referencing import Registry, Resource

    # What a tool reading schemas/ does: the per-kind schemas found by their names, beside manifest.v1.json.
    registry: Registry[Any] = Registry().with_resources(
        (f.name, Resource.from_contents(json.loads(f.read_text()))) for f in KIND_FILES)
    return Draft202012Validator(json.loads((_schema_dir() / "manifest.v1.json").read_text()), registry=registry)


@pytest.mark.parametrize("snippet", [v[0] for v in VALID] + [i[0] for i in INVALID])
@pytest.mark.parametrize("kind", ["Process", "Job"])
def test_the_manifest_schema_says_what_the_kinds_schema_says(snippet: str, kind: str) -> None:
    doc = yaml.safe_load(document(snippet, kind=kind))
    by_kind = sorted((list(e.absolute_path), e.message) for e in full_validator("orchestrator/v1", kind).iter_errors(doc))
    by_manifest = sorted((list(e.absolute_path), e.message) for e in _manifest_validator().iter_errors(doc))
    assert by_manifest == by_kind


@pytest.mark.parametrize(("text", "path"), [
    ("apiVersion: orchestrator/v1\nkind: Service\nmetadata: {name: a}\nspec: {command: [x]}\n", ["kind"]),
    ("apiVersion: orchestrator/v2\nkind: Job\nmetadata: {name: a}\nspec: {command: [x]}\n", ["apiVersion"]),
    ("apiVersion: orchestrator/v1\nmetadata: {name: a}\nspec: {command: [x]}\n", []),
    ("[a]\n", []),
])
def test_the_manifest_schema_refuses_an_unknown_kind_or_version(text: str, path: list[str]) -> None:
    assert [list(e.absolute_path) for e in _manifest_validator().iter_errors(yaml.safe_load(text))] == [path]


def test_rules_in_the_schemas_are_worded_for_api_clients_too() -> None:
    from orchestrator.core.model import Autoscale
    from orchestrator.manifests.rules import check_spec

    problems = check_spec(ProcessSpec(name="a", command=("sleep", "1"), shell=True))
    assert [(p.path, p.message) for p in problems] == [
        ("default/a: spec.command", "with shell: true, give the command as one string")]
    # An autoscaled pool's replicas is its current size, the autoscaler's: no manifest's replicas beside autoscale.
    pool = ProcessSpec(name="a", command=("x",), replicas=5, autoscale=Autoscale(min=2, max=8, target_cpu_percent=50))
    assert check_spec(pool) == []


# --- the compiled check (schema.is_valid) never accepts what jsonschema refuses ----------------------------


def _verdicts(doc: Any, kind: str = "Process") -> tuple[bool, bool]:
    full = not list(full_validator("orchestrator/v1", kind).iter_errors(doc))
    return is_valid("orchestrator/v1", kind, doc), full


@pytest.mark.parametrize("snippet", [v[0] for v in VALID] + [i[0] for i in INVALID])
def test_the_compiled_check_agrees_with_jsonschema(snippet: str) -> None:
    doc = yaml.safe_load(document(snippet))
    fast, full = _verdicts(doc)
    assert fast == full, f"compiled check says {fast}, jsonschema says {full}"


WRONG_VALUES: list[Any] = [None, "", "x", "a\n", -1, 0, 1.5, True, [], ["x"], {}, {"x": 1}]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [path, *(p for k, v in value.items() for p in _leaves(v, (*path, k)))]
    if isinstance(value, list):
        return [path, *(p for i, v in enumerate(value) for p in _leaves(v, (*path, i)))]
    return [path]


def _replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(doc))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


@pytest.mark.parametrize("kind", ["Process", "Job"])
def test_the_compiled_check_never_accepts_a_document_jsonschema_refuses(kind: str) -> None:
    from test_codec import MANIFEST_LIKE

    from orchestrator.manifests.codec import manifest_document

    base = manifest_document(next(s for s in MANIFEST_LIKE if s.kind.value == kind))
    assert _verdicts(base, kind) == (True, True)
    disagreements, tried = [], 0
    for path in _leaves(base):
        for wrong in WRONG_VALUES:
            mutated = _replaced(base, path, wrong)
            fast, full = _verdicts(mutated, kind)
            tried += 1
            assert not (fast and not full), f"accepted by the compiled check only: {path} = {wrong!r}"
            if fast != full:
                disagreements.append((path, wrong))
    # Stricter only where the two dialects differ (`$` before a trailing newline), nowhere else.
    assert all(wrong == "a\n" for _, wrong in disagreements), disagreements
    assert tried > 500


def test_generated_code_is_cached_only_where_nobody_else_can_write(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.manifests.schema import _cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    private = _cache_dir()
    assert private == (tmp_path / "cache" / "orchestrator").resolve()
    assert private.stat().st_mode & 0o777 == 0o700
    private.chmod(0o777)  # a cache anyone could write to would be code anyone could make us run
    assert _cache_dir() is None
    private.chmod(0o700)
    (tmp_path / "cache").chmod(0o777)  # nor may anyone swap the directory itself
    assert _cache_dir() is None
    (tmp_path / "cache").chmod(0o700)
    assert _cache_dir() == private
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # as with HOME unset: `~` is not a place
    assert _cache_dir() is None


def _cached_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import fastjsonschema

    from orchestrator.manifests.schema import _from_cache, _without_annotations

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    schema = {k: v for k, v in _without_annotations(schemas()[("orchestrator/v1", "Process")]).items()
              if k != "$id"}
    return _from_cache(schema, fastjsonschema)


@pytest.mark.parametrize("damage", ["garbage", "cut short", "empty"])
def test_a_damaged_cache_file_is_made_again_never_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      damage: str) -> None:
    bad = yaml.safe_load(document(metadata="name: Bad Name"))
    assert _cached_check(tmp_path, monkeypatch) is not None
    (cached,) = (tmp_path / "orchestrator").glob("schema_*.bin")
    whole = cached.read_bytes()
    cached.write_bytes({"garbage": b"x" * 100, "cut short": whole[: len(whole) * 9 // 10], "empty": b""}[damage])
    check = _cached_check(tmp_path, monkeypatch)
    with pytest.raises(Exception, match="name"):
        check(bad)  # a check cut short could have let this through
    assert cached.read_bytes() == whole


def test_a_cache_that_cannot_be_written_is_no_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.manifests import schema

    (tmp_path / "orchestrator").mkdir(mode=0o500)  # read-only (root may still write: then it is simply used)
    schema._compiled.cache_clear()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        assert is_valid("orchestrator/v1", "Process", yaml.safe_load(document()))
        assert not is_valid("orchestrator/v1", "Process", yaml.safe_load(document(metadata="name: Bad Name")))
    finally:
        schema._compiled.cache_clear()


def test_threads_compiling_at_once_on_an_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from orchestrator.manifests import schema

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    schema._compiled.cache_clear()
    results: list[bool] = []
    errors: list[BaseException] = []

    def validate() -> None:
        try:
            results.append(is_valid("orchestrator/v1", "Process", yaml.safe_load(document())))
        except BaseException as error:  # noqa: BLE001 - collected for the assertion below
            errors.append(error)

    try:
        threads = [threading.Thread(target=validate) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        schema._compiled.cache_clear()
    assert errors == [] and results == [True] * 4
    assert len(list((tmp_path / "orchestrator").glob("schema_*.bin"))) == 1
    assert list((tmp_path / "orchestrator").glob(".*")) == []  # no half-written file left
