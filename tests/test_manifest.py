"""manifests/loader.py: reading files and directories, positions of problems, envFrom, duplicates, specs built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.core.errors import Location, ManifestError
from orchestrator.core.model import (
    Condition,
    Dependency,
    Kind,
    OnFailure,
    Probe,
    ProbeAction,
    ProcessSpec,
    Socket,
    Strategy,
    StrategyType,
)
from orchestrator.manifests.cache import SpecCache
from orchestrator.manifests.files import find_manifest_files
from orchestrator.manifests.loader import dotted, load_specs
from orchestrator.manifests.rules import check_spec, rollout_warnings

PROCESS = """\
apiVersion: orchestrator/v1
kind: Process
metadata:
  name: {name}
spec:
  command: [sleep, "1"]
"""


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def errors(paths: list[str]) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_specs(paths)
    return [str(p) for p in caught.value.problems]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path, so that relative paths show in locations as the user gave them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_problem_locations_are_exact(in_tmp: Path) -> None:
    write(
        in_tmp / "examples/manifests/api.yaml",
        """\
# the api
apiVersion: orchestrator/v1
kind: Process
metadata:
  name: api
  namespace: shop
spec:
  command: ["python", "-m", "http.server", "8080"]
  replica: 2
  backoff:
    initialSeconds: abc
  dependsOn:
    - {name: db}
    - name: Bad
  restartPolicy: Sometimes
  shutdown: {}
  envFrom:
    - {}
""",
    )
    assert errors(["examples/manifests/api.yaml"]) == [
        "examples/manifests/api.yaml:9:3: spec: unknown field 'replica' (did you mean 'replicas'?)",
        "examples/manifests/api.yaml:11:21: spec.backoff.initialSeconds: expected a number, got 'abc'",
        (
            "examples/manifests/api.yaml:14:13: spec.dependsOn[1].name: 'Bad' is not a valid name: use lowercase "
            "letters, digits and '-', starting and ending with a letter or digit"
        ),
        "examples/manifests/api.yaml:15:18: spec.restartPolicy: 'Sometimes' is not one of Always, OnFailure, Never",
        "examples/manifests/api.yaml:18:7: spec.envFrom[0]: missing required field 'file'",
    ]


def test_missing_field_points_at_parent_mapping(in_tmp: Path) -> None:
    write(
        in_tmp / "a.yaml", "apiVersion: orchestrator/v1\nkind: Job\nmetadata:\n  namespace: x\nspec:\n  shell: true\n"
    )
    assert errors(["a.yaml"]) == [
        "a.yaml:4:3: metadata: missing required field 'name'",
        "a.yaml:6:3: spec: missing required field 'command'",
    ]


def test_string_command_without_shell_is_located(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a").replace('[sleep, "1"]', "sleep 1 && echo done"))
    assert errors(["a.yaml"]) == [
        "a.yaml:6:12: spec.command: command is a string: set shell: true or give an argv list"
    ]


def test_multi_document_files(in_tmp: Path) -> None:
    text = "---\n" + PROCESS.format(name="a") + "---\n---\n# only a comment\n---\n" + PROCESS.format(name="b")
    text += "...\n---\napiVersion: orchestrator/v1\nkind: Job\nmetadata: {name: c}\nspec: {command: [x]}\n"
    write(in_tmp / "all.yaml", text)
    specs = load_specs(["all.yaml"])
    assert [(s.name, s.kind) for s in specs] == [("a", Kind.PROCESS), ("b", Kind.PROCESS), ("c", Kind.JOB)]
    assert [s.location for s in specs] == [
        Location("all.yaml", 2, 1),
        Location("all.yaml", 12, 1),
        Location("all.yaml", 20, 1),
    ]


def test_location_is_the_api_version_key(in_tmp: Path) -> None:
    write(
        in_tmp / "a.yaml", "kind: Process\nmetadata: {name: a}\n\napiVersion: orchestrator/v1\nspec: {command: [x]}\n"
    )
    (spec,) = load_specs(["a.yaml"])
    assert spec.location == Location("a.yaml", 4, 1)


def test_empty_file_gives_no_specs(in_tmp: Path) -> None:
    write(in_tmp / "empty.yaml", "# nothing yet\n")
    assert load_specs(["empty.yaml"]) == ()


def test_directory_recursion_and_sort_order(in_tmp: Path) -> None:
    for name in ["b.yaml", "a/z.yml", "a.yaml", "a-b/x.yaml", "a/b/c.yaml"]:
        write(in_tmp / "m" / name, PROCESS.format(name=name.replace("/", "-").split(".")[0]))
    write(in_tmp / "m/notes.txt", "not yaml")
    write(in_tmp / "m/.hidden.yaml", "broken: [")
    write(in_tmp / "m/.github/workflows/ci.yml", "on: push\n")
    files, problems = find_manifest_files(["m"])
    assert problems == ()
    assert files == ("m/a/b/c.yaml", "m/a/z.yml", "m/a-b/x.yaml", "m/a.yaml", "m/b.yaml")
    assert [s.name for s in load_specs(["m"])] == ["a-b-c", "a-z", "a-b-x", "a", "b"]
    assert [s.location.file for s in load_specs(["m/"]) if s.location] == [
        "m/a/b/c.yaml",
        "m/a/z.yml",
        "m/a-b/x.yaml",
        "m/a.yaml",
        "m/b.yaml",
    ]


def test_paths_keep_their_order_and_a_file_is_read_once(in_tmp: Path) -> None:
    write(in_tmp / "m/b.yaml", PROCESS.format(name="b"))
    write(in_tmp / "m/a.yaml", PROCESS.format(name="a"))
    write(in_tmp / "other.manifest", PROCESS.format(name="c"))  # named explicitly: read whatever its suffix
    assert [s.name for s in load_specs(["other.manifest", "m/b.yaml", "m", "./m/a.yaml"])] == ["c", "b", "a"]


def test_missing_path_and_empty_directory(in_tmp: Path) -> None:
    (in_tmp / "empty").mkdir()
    write(in_tmp / "empty/readme.txt", "")
    assert errors(["nope.yaml", "empty"]) == [
        "empty: no manifests (*.yaml, *.yml) in this directory",
        "nope.yaml: no such file or directory",
    ]


def test_working_dir_and_env_from_are_relative_to_the_manifest(in_tmp: Path) -> None:
    write(in_tmp / "conf/base.env", "# shared\nA=from-base\nB=from-base\nQUOTED='x y'\nHOME_REF=${HOME}\n"
          "LITERAL='${HOME}'\nESCAPED=$${HOME}\nFROM_ABOVE=${A}-2\n")
    write(in_tmp / "svc/local.env", "export B=from-local\nC=from-local\n")
    write(
        in_tmp / "svc/m.yaml",
        PROCESS.format(name="a")
        + "  workingDir: ../srv\n  envFrom: [{file: ../conf/base.env}, {file: local.env}]\n  env: {C: from-env}\n",
    )
    # ${NAME} from the applying command's variables (as compose), or from a name the file set above it
    (spec,) = load_specs(["svc/m.yaml"], variables={"HOME": "/home/applier"})
    assert spec.working_dir == str(in_tmp / "srv")
    assert spec.env == (
        ("A", "from-base"),
        ("B", "from-local"),
        ("C", "from-env"),
        ("ESCAPED", "${HOME}"),
        ("FROM_ABOVE", "from-base-2"),
        ("HOME_REF", "/home/applier"),
        ("LITERAL", "${HOME}"),  # single quotes: the text as written
        ("QUOTED", "x y"),
    )


def test_working_dir_defaults_to_the_manifest_folder_and_absolute_stays(in_tmp: Path) -> None:
    write(in_tmp / "svc/a.yaml", PROCESS.format(name="a"))
    write(in_tmp / "svc/b.yaml", PROCESS.format(name="b") + "  workingDir: /var/tmp\n")
    a, b = load_specs(["svc"])
    assert a.working_dir == str(in_tmp / "svc")
    assert os.path.isabs(a.working_dir)
    assert b.working_dir == "/var/tmp"


def test_env_from_problems(in_tmp: Path) -> None:
    write(in_tmp / "svc/bad.env", "GOOD=1\nthis is not a line\n1BAD=x\nNOVALUE\n")
    write(in_tmp / "svc/dir.env/x", "")
    write(
        in_tmp / "svc/m.yaml",
        PROCESS.format(name="a") + "  envFrom:\n    - file: missing.env\n    - file: bad.env\n    - file: dir.env\n",
    )
    assert errors(["svc/m.yaml"]) == [
        "svc/bad.env:2:1: spec.envFrom[1].file: cannot parse this line: expected NAME=value",
        (
            "svc/bad.env:3:1: spec.envFrom[1].file: '1BAD' is not a valid environment variable name: use letters, "
            "digits and '_', not starting with a digit"
        ),
        "svc/bad.env:4:1: spec.envFrom[1].file: 'NOVALUE' has no value: write NOVALUE= for an empty one",
        "svc/m.yaml:8:13: spec.envFrom[0].file: env file 'svc/missing.env' does not exist",
        "svc/m.yaml:10:13: spec.envFrom[2].file: env file 'svc/dir.env' is a directory, not a dotenv file",
    ]


def test_duplicate_names_across_files(in_tmp: Path) -> None:
    write(in_tmp / "m/a.yaml", PROCESS.format(name="api") + "---\n" + PROCESS.format(name="worker"))
    write(in_tmp / "m/b.yaml", "apiVersion: orchestrator/v1\nkind: Job\nmetadata: {name: api}\nspec: {command: [x]}\n")
    write(in_tmp / "m/c.yaml", PROCESS.format(name="worker"))
    assert errors(["m"]) == [
        "m/b.yaml:3:18: metadata.name: duplicate Job default/api, first defined at m/a.yaml:4:9",
        "m/c.yaml:4:9: metadata.name: duplicate Process default/worker, first defined at m/a.yaml:11:9",
    ]


def test_same_name_in_other_namespaces_is_fine(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="api") + "---\n" + PROCESS.format(name="api\n  namespace: shop"))
    assert [s.key for s in load_specs(["a.yaml"])] == ["default/api", "shop/api"]


def test_duplicate_yaml_keys(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a") + "  replicas: 2\n  replicas: 3\nkind: Process\n")
    assert errors(["a.yaml"]) == [
        "a.yaml:8:3: spec.replicas: duplicate key 'replicas', first at line 7, column 3",
        "a.yaml:9:1: kind: duplicate key 'kind', first at line 2, column 1",
    ]


def test_problems_from_several_files_in_one_error(in_tmp: Path) -> None:
    write(in_tmp / "m/1.yaml", PROCESS.format(name="a") + "  replicas: -1\n")
    write(in_tmp / "m/2.yaml", "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: b}\nspec: {command: 1}\n")
    write(in_tmp / "m/3.yaml", PROCESS.format(name="c"))  # valid: contributes nothing
    write(in_tmp / "m/4.yaml", "key: [unclosed\n")
    with pytest.raises(ManifestError) as caught:
        load_specs(["m", "missing"])
    shown = [str(p) for p in caught.value.problems]
    assert shown[:2] == [
        "m/1.yaml:7:13: spec.replicas: must be at least 0, got -1",
        "m/2.yaml:4:17: spec.command: expected a list or a string, got 1",
    ]
    # The wording of syntax errors is libyaml's or PyYAML's, whichever parses; the place is the same.
    assert shown[2].startswith("m/4.yaml:2:1: invalid YAML: ") and "(while parsing a flow sequence at " in shown[2]
    assert shown[3:] == ["missing: no such file or directory"]
    assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)
    assert caught.value.problems[0].to_json() == {
        "file": "m/1.yaml",
        "line": 7,
        "column": 13,
        "path": "spec.replicas",
        "message": "must be at least 0, got -1",
    }


def test_yaml_syntax_error_location_and_earlier_documents_still_checked(in_tmp: Path) -> None:
    text = PROCESS.format(name="a") + "  replicas: x\n---\napiVersion: orchestrator/v1\nkind: Process\nmetadata:\n"
    text += "  name: b\n\tlabels: {}\n"
    write(in_tmp / "a.yaml", text)
    found = errors(["a.yaml"])
    assert found[0] == "a.yaml:7:13: spec.replicas: expected an integer, got 'x'"
    assert found[1].startswith("a.yaml:13:1: invalid YAML: found ")
    assert "tab" in found[1] or "\\t" in found[1]
    assert len(found) == 2


def test_yaml_mapping_error(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", "apiVersion: orchestrator/v1\nkind: Process\n  metadata: x\n")
    [problem] = errors(["a.yaml"])
    assert problem.startswith("a.yaml:3:11: invalid YAML: mapping values are not allowed ")


def test_dependencies_keep_their_location(in_tmp: Path) -> None:
    write(
        in_tmp / "a.yaml",
        PROCESS.format(name="api") + "  dependsOn:\n    - name: db\n      condition: ready\n    - {name: migrate}\n"
        + "---\n" + PROCESS.format(name="db") + "---\n" + PROCESS.format(name="migrate"),
    )
    spec, _, _ = load_specs(["a.yaml"])
    assert spec.depends_on == (Dependency("db", Condition.READY), Dependency("migrate", Condition.STARTED))
    assert [d.location for d in spec.depends_on] == [Location("a.yaml", 8, 7), Location("a.yaml", 10, 7)]


def test_anchors_and_merge_keys(in_tmp: Path) -> None:
    text = PROCESS.format(name="a") + (
        "  env: {A: &v 'x', B: *v}\n  backoff: {<<: &b {initialSeconds: 2, maxSeconds: 10}, maxSeconds: 20}\n"
    )
    write(in_tmp / "a.yaml", text)
    (spec,) = load_specs(["a.yaml"])
    assert spec.env == (("A", "x"), ("B", "x"))
    assert (spec.backoff.initial_seconds, spec.backoff.max_seconds) == (2.0, 20.0)


def test_recursive_alias_is_a_problem(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a") + "  env: &e {A: *e}\n")
    problems = errors(["a.yaml"])
    assert "a.yaml:7:8: spec.env.A: an alias refers to a node that contains it" in problems


def test_unsupported_tag(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a") + "  user: !vault secret\n")
    assert errors(["a.yaml"]) == ["a.yaml:7:9: spec.user: unsupported YAML tag '!vault'"]


def test_keys_are_read_as_written(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a") + "  env: {ON: 'x', 'true': 'y', 1_A: 'z'}\n")
    assert errors(["a.yaml"]) == [
        (
            "a.yaml:7:31: spec.env['1_A']: '1_A' is not a valid environment variable name: use letters, digits and "
            "'_', not starting with a digit"
        )
    ]


def test_label_keys_are_quoted_in_paths(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a\n  labels: {app.io/name: 3}"))
    assert errors(["a.yaml"]) == [
        "a.yaml:5:25: metadata.labels['app.io/name']: expected a string, got 3: quote it (\"3\")"
    ]


def test_full_spec_is_built(in_tmp: Path) -> None:
    write(
        in_tmp / "m/api.yaml",
        """\
apiVersion: orchestrator/v1
kind: Process
metadata:
  name: api
  namespace: shop
  labels: {tier: backend}
spec:
  command: "exec python -m http.server 8080"
  shell: true
  env: {PORT: "8080"}
  user: www-data
  replicas: 2
  priority: 10
  restartPolicy: OnFailure
  successExitCodes: [0, 143]
  backoff: {initialSeconds: 0.5, maxSeconds: 30, multiplier: 3, resetAfterSeconds: 60}
  maxRestarts: 5
  restartWindowSeconds: 30
  dependsOn: [{name: db, condition: ready}]
  shutdown: {signal: SIGINT, timeoutSeconds: 2.5}
---
apiVersion: orchestrator/v1
kind: Process
metadata: {name: db, namespace: shop}
spec: {command: [db]}
""",
    )
    spec, _ = load_specs(["m"])
    assert spec == ProcessSpec(
        name="api",
        namespace="shop",
        kind=Kind.PROCESS,
        labels=(("tier", "backend"),),
        command=("exec python -m http.server 8080",),
        shell=True,
        working_dir=str(in_tmp / "m"),
        env=(("PORT", "8080"),),
        user="www-data",
        replicas=2,
        priority=10,
        restart_policy=spec.restart_policy.ON_FAILURE,
        success_exit_codes=(0, 143),
        backoff=spec.backoff.__class__(0.5, 30.0, 3.0, 60.0),
        max_restarts=5,
        restart_window_seconds=30.0,
        depends_on=(Dependency("db", Condition.READY),),
        shutdown=spec.shutdown.__class__("SIGINT", 2.5),
    )
    assert spec.key == "shop/api"
    assert isinstance(spec.backoff.max_seconds, float)
    assert spec.location == Location("m/api.yaml", 1, 1)


ROLLOUT = """\
apiVersion: orchestrator/v1
kind: Process
metadata: {name: api, namespace: shop}
spec:
  command: [gunicorn, app:app]
  replicas: 4
  sockets:
    - name: http
      listen: tcp://0.0.0.0:8080
      backlog: 4096
      reusePort: true
      nonBlocking: true
    - name: admin
      listen: unix:/run/shop/api.sock
      mode: "0660"
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 25%, maxUnavailable: 0}
    onFailure: Pause
  minReadySeconds: 2.5
  progressDeadlineSeconds: 120
  revisionHistoryLimit: 3
  probes:
    readiness: {notify: {}, periodSeconds: 1}
    liveness: {http: {port: 9090, path: /healthz}}
"""


def test_sockets_and_strategy_are_built(in_tmp: Path) -> None:
    write(in_tmp / "api.yaml", ROLLOUT)
    (spec,) = load_specs(["api.yaml"])
    assert spec.sockets == (
        Socket(name="http", listen="tcp://0.0.0.0:8080", backlog=4096, reuse_port=True, non_blocking=True),
        Socket(name="admin", listen="unix:/run/shop/api.sock", mode="0660"),
    )
    assert spec.strategy == Strategy(type=StrategyType.ROLLING_UPDATE, max_surge="25%", max_unavailable=0,
                                     on_failure=OnFailure.PAUSE, min_ready_seconds=2.5,
                                     progress_deadline_seconds=120.0, revision_history_limit=3)
    assert isinstance(spec.strategy.progress_deadline_seconds, float)
    assert spec.probes.readiness == Probe(ProbeAction.NOTIFY, period_seconds=1.0)
    assert spec.restart_nonce == ""  # the daemon's, never a manifest's
    assert rollout_warnings([spec]) == []  # start-first with sockets: what they are for


def test_rollout_defaults(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a") + "---\n" + PROCESS.format(name="b")
          + "  replicas: 2\n  strategy: {rollingUpdate: {maxUnavailable: 50%}}\n")
    plain, half = load_specs(["a.yaml"])
    assert plain.sockets == ()
    assert plain.strategy == Strategy(type=StrategyType.ROLLING_UPDATE, max_surge=None, max_unavailable=None,
                                      on_failure=OnFailure.ROLLBACK, min_ready_seconds=5.0,
                                      progress_deadline_seconds=600.0, revision_history_limit=10)
    # What is not given stays None: its default depends on the sockets (planning/rollout.py).
    assert half.strategy == Strategy(max_unavailable="50%")


def test_rollout_and_socket_rules_are_located(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", """\
apiVersion: orchestrator/v1
kind: Process
metadata: {name: api}
spec:
  command: [gunicorn, app:app]
  replicas: 4
  sockets:
    - name: http
      listen: tcp://0.0.0.0:8080
    - name: http
      listen: tcp://0.0.0.0:8081
      mode: "0660"
  strategy:
    rollingUpdate:
      maxSurge: 0
      maxUnavailable: 20%
  minReadySeconds: 60
  progressDeadlineSeconds: 30
  probes:
    startup:
      tcp: {port: 8081}
    readiness:
      http: {port: 8080}
    liveness:
      exec: {command: [./check]}
""")
    assert errors(["a.yaml"]) == [
        "a.yaml:10:13: spec.sockets[1].name: 'http' is already listed at spec.sockets[0]",
        "a.yaml:12:7: spec.sockets[1].mode: mode is for unix sockets only: a tcp socket has no file to set it on",
        ("a.yaml:16:23: spec.strategy.rollingUpdate.maxUnavailable: maxSurge is 0 and maxUnavailable '20%' of 4 "
         "replicas rounds down to 0: no replica could ever be replaced; let one of them be at least 1"),
        ("a.yaml:18:28: spec.progressDeadlineSeconds: progressDeadlineSeconds (30) must be more than minReadySeconds "
         "(60): no new replica could become available before the rollout fails"),
        ("a.yaml:21:19: spec.probes.startup.tcp.port: probe would test the shared socket, not this replica: use a "
         "notify, log or exec probe"),
        ("a.yaml:23:20: spec.probes.readiness.http.port: probe would test the shared socket, not this replica: use a "
         "notify, log or exec probe"),
    ]


def test_the_same_listen_address_in_two_processes(in_tmp: Path) -> None:
    socket = "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {{name: {name}{more}}}\nspec:\n" \
             "  command: [x]\n  sockets:\n    - {{name: {socket}, listen: '{listen}'}}\n"
    write(in_tmp / "m/a.yaml", socket.format(name="api", more="", socket="http", listen="tcp://0.0.0.0:8080")
          + "---\n" + socket.format(name="admin", more="", socket="ctl", listen="unix:/run/shop.sock"))
    write(in_tmp / "m/b.yaml", "# another team's file\n"
          # Another namespace does not help: the host has one port 8080.
          + socket.format(name="web", more=", namespace: www", socket="www", listen="tcp://0.0.0.0:8080")
          + "---\n" + socket.format(name="tool", more="", socket="ctl", listen="unix:///run//shop.sock")
          + "---\n" + socket.format(name="other", more="", socket="http", listen="tcp://0.0.0.0:8081"))
    assert errors(["m"]) == [
        ("m/b.yaml:8:27: spec.sockets[0].listen: duplicate listen 'tcp://0.0.0.0:8080', first used by socket 'http' of "
         "default/api at m/a.yaml:7:28"),
        ("m/b.yaml:16:27: spec.sockets[0].listen: duplicate listen 'unix:///run//shop.sock', first used by socket 'ctl' "
         "of default/admin at m/a.yaml:15:27"),
    ]


def test_a_duplicate_listen_is_found_in_documents_from_the_cache_too(in_tmp: Path) -> None:
    socket = "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {{name: {name}}}\nspec:\n" \
             "  command: [x]\n  sockets: [{{name: http, listen: 'tcp://[::0]:80'}}]\n"
    write(in_tmp / "b.yaml", socket.format(name="b"))
    cache = SpecCache()
    load_specs(["b.yaml"], cache=cache)  # valid alone, and kept
    write(in_tmp / "a.yaml", socket.format(name="a").replace("[::0]", "[::]"))
    with pytest.raises(ManifestError) as caught:
        load_specs(["a.yaml", "b.yaml"], cache=cache)
    assert cache.hits == 1
    # No positions are kept inside a cached document: the problem is at its start, the field path says where.
    assert [str(p) for p in caught.value.problems] == [
        ("b.yaml:1:1: spec.sockets[0].listen: duplicate listen 'tcp://[::0]:80', first used by socket 'http' of "
        "default/a at a.yaml:6:34")]


def test_rollout_fields_are_a_process_s_only(in_tmp: Path) -> None:
    """A Job runs to completion: it has no probes (a notify one neither), sockets or strategy."""
    job = "apiVersion: orchestrator/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  command: [x]\n"
    write(in_tmp / "j.yaml", job + "  probes: {readiness: {notify: {}}}\n  sockets: []\n  strategy: {}\n"
          "  minReadySeconds: 1\n")
    assert errors(["j.yaml"]) == [
        "j.yaml:6:3: spec: unknown field 'probes' (only a Process has it)",
        "j.yaml:7:3: spec: unknown field 'sockets' (only a Process has it)",
        "j.yaml:8:3: spec: unknown field 'strategy' (only a Process has it)",
        "j.yaml:9:3: spec: unknown field 'minReadySeconds' (only a Process has it)",
    ]


def test_specs_sent_through_the_api_are_held_to_the_rollout_rules() -> None:
    stalled = ProcessSpec(name="a", command=("x",), strategy=Strategy(max_surge=0, max_unavailable=0))
    aimed = ProcessSpec(name="b", command=("x",), sockets=(Socket("http", "tcp://0.0.0.0:80"),),
                        probes=ProcessSpec.probes.__class__(liveness=Probe(ProbeAction.TCP, port=80)))
    assert [(p.path, p.message.split(":")[0]) for p in check_spec(stalled) + check_spec(aimed)] == [
        ("default/a: spec.strategy.rollingUpdate.maxUnavailable", "maxSurge is 0 and maxUnavailable is 0"),
        ("default/b: spec.probes.liveness.tcp.port", "probe would test the shared socket, not this replica")]
    assert check_spec(ProcessSpec(name="c", command=("x",), sockets=(Socket("a", "unix:/a"),))) == []


def test_validate_warns_of_start_first_without_sockets(in_tmp: Path) -> None:
    """Valid all the same (exit 0): the replicas may bind ports of their own ($((PORT_BASE + ORCH_REPLICA)))."""
    write(in_tmp / "a.yaml", "".join((
        PROCESS.format(name="surge") + "  strategy: {rollingUpdate: {maxSurge: 1}}\n",
        "---\n" + PROCESS.format(name="share") + "  replicas: 2\n  strategy: {rollingUpdate: {maxSurge: 50%}}\n",
        "---\n" + PROCESS.format(name="stop-first") + "  strategy: {rollingUpdate: {maxSurge: 0%}}\n",
        "---\n" + PROCESS.format(name="recreate") + "  strategy: {type: Recreate}\n",
        "---\n" + PROCESS.format(name="owned") + "  sockets: [{name: a, listen: 'tcp://127.0.0.1:8080'}]\n"
        "  strategy: {rollingUpdate: {maxSurge: 1}}\n")))
    result = subprocess.run([sys.executable, "-m", "orchestrator", "validate", "-f", "a.yaml"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "valid: 5 objects in 1 file"
    start_first = "warning: spec.strategy.rollingUpdate.maxSurge: start-first without sockets: replicas must not " \
                  "bind the same port"
    assert result.stderr.splitlines() == [f"a.yaml:1:1: {start_first}", f"a.yaml:9:1: {start_first}"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), ""),
        (("spec",), "spec"),
        (("spec", "backoff", "initialSeconds"), "spec.backoff.initialSeconds"),
        (("spec", "dependsOn", 1, "name"), "spec.dependsOn[1].name"),
        (("metadata", "labels", "app.io/name"), "metadata.labels['app.io/name']"),
    ],
)
def test_dotted(path: tuple[str | int, ...], expected: str) -> None:
    assert dotted(path) == expected
