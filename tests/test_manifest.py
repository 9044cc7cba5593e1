"""manifests/loader.py: reading files and directories, positions of problems, envFrom, duplicates, specs built."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.core.errors import Location, ManifestError
from orchestrator.core.model import Condition, Dependency, Kind, ProcessSpec
from orchestrator.manifests.files import find_manifest_files
from orchestrator.manifests.loader import dotted, load_specs

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
