"""Manifests that could hurt the host are refused, located and bounded; inputs real configurations use are not.

Through the loader (as `validate`, `apply`, `diff` and `run` read files), through the `validate` command, and
through a watched folder of a running daemon, which must keep answering and keep what runs as it is.
"""

# ruff: noqa: F811 - the fixtures `orch` and `in_tmp` are imported from the modules that define them

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import REPO, wait_for
from test_daemon import Orchestrator, documents, orch, process  # noqa: F401
from test_manifest import PROCESS, errors, in_tmp, write  # noqa: F401

from orchestrator.cli.client import Client
from orchestrator.manifests.documents import read_documents
from orchestrator.manifests.files import ReadLimits, find_manifest_files
from orchestrator.manifests.loader import load_specs

CLI = [sys.executable, "-m", "orchestrator"]


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """About 1 KiB that expands to width**levels values: "billion laughs"."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def validate(*paths: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "validate", "-f", *paths], capture_output=True, text=True, timeout=30, cwd=cwd,
                          env={**os.environ, **(env or {})}, check=False)


# -- budgets --------------------------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_where_its_aliases_expand(in_tmp: Path) -> None:
    write(in_tmp / "bomb.yaml", alias_bomb())
    assert len((in_tmp / "bomb.yaml").read_bytes()) < 1024
    [problem] = errors(["bomb.yaml"])
    assert problem.startswith("bomb.yaml:5:")
    assert "aliases expand to" in problem and "an alias bomb?" in problem


def test_an_alias_bomb_through_merge_keys_is_refused(in_tmp: Path) -> None:
    lines = ["a0: &a0 {k0: 1, k1: 2, k2: 3, k3: 4, k4: 5, k5: 6, k6: 7, k7: 8}"]
    lines += [f"a{i}: &a{i} {{x: [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}], <<: *a{i - 1}}}" for i in range(1, 12)]
    write(in_tmp / "merge.yaml", "\n".join(lines) + "\n")
    [problem] = errors(["merge.yaml"])
    assert "aliases expand to" in problem


def test_aliases_that_stay_small_are_read_with_the_anchor_s_positions(in_tmp: Path) -> None:
    text = PROCESS.format(name="a") + '  hooks: {preStart: &hook {exec: ["", x]}, postStart: *hook}\n'
    write(in_tmp / "a.yaml", text)
    found = errors(["a.yaml"])
    # The mistake is inside the anchored mapping: that is where it is shown, though the alias uses it too.
    assert [p.split(": ", 1)[0] for p in found] == ["a.yaml:7:35", "a.yaml:7:35"]
    assert sorted(p.split(": ")[1] for p in found) == ["spec.hooks.postStart.exec[0]", "spec.hooks.preStart.exec[0]"]


def test_merge_keys_keep_yaml_s_precedence(in_tmp: Path) -> None:
    text = PROCESS.format(name="a") + (
        "  env: {<<: [&one {A: '1', B: '1'}, {A: '2', C: '2'}], C: '3'}\n"
    )
    write(in_tmp / "a.yaml", text)
    (spec,) = load_specs(["a.yaml"])
    assert dict(spec.env) == {"A": "1", "B": "1", "C": "3"}


@pytest.mark.parametrize("depth", [101, 100_000])
def test_deep_nesting_is_refused_with_its_place(in_tmp: Path, depth: int) -> None:
    write(in_tmp / "deep.yaml", "a: " + "[" * depth + "]" * depth + "\n")
    [problem] = errors(["deep.yaml"])
    assert problem.startswith("deep.yaml:1:") and ("nested more than 100 levels" in problem
                                                   or "maximum nesting depth" in problem)


def test_block_nesting_past_the_limit_is_refused(in_tmp: Path) -> None:
    text = "".join(f"{'  ' * level}k{level}:\n" for level in range(120)) + "  " * 120 + "leaf: 1\n"
    write(in_tmp / "deep.yaml", text)
    [problem] = errors(["deep.yaml"])
    assert problem.startswith("deep.yaml:") and "nested more than 100 levels deep" in problem


def test_a_file_over_the_size_limit_is_refused_unread_and_the_limit_can_be_raised(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a") + "# " + "x" * 400 + "\n")
    assert (in_tmp / "a.yaml").stat().st_size > 300
    result = validate("a.yaml", env={"ORCHESTRATOR_MANIFEST_MAX_BYTES": "300"}, cwd=in_tmp)
    assert result.returncode == 1
    assert "a.yaml: larger than 300 bytes: refused (raise the limit with ORCHESTRATOR_MANIFEST_MAX_BYTES)" \
        in result.stderr
    assert validate("a.yaml", env={"ORCHESTRATOR_MANIFEST_MAX_BYTES": "1000"}, cwd=in_tmp).returncode == 0


def test_a_50_mib_file_is_refused_by_the_default_limit(in_tmp: Path) -> None:
    with (in_tmp / "big.yaml").open("w") as big:
        big.write(PROCESS.format(name="big") + "  env:\n")
        line = "    K{}: '" + "x" * 1000 + "'\n"
        index = 0
        while big.tell() < 50 * 1024 * 1024:
            big.write(line.format(index))
            index += 1
    assert errors(["big.yaml"]) == [(f"big.yaml: larger than {ReadLimits().max_bytes:,} bytes: refused (raise the "
                                    "limit with ORCHESTRATOR_MANIFEST_MAX_BYTES)")]


def test_too_many_documents_or_values_are_refused_at_the_one_past_the_limit(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", documents(*(PROCESS.format(name=f"p{i}") for i in range(3))))
    documents_read, problems = read_documents("a.yaml", ReadLimits(max_documents=2))
    assert len(documents_read) == 2
    assert [str(p) for p in problems] == [("a.yaml:14:1: more than 2 documents in this file: refused (raise the "
                                          "limit with ORCHESTRATOR_MANIFEST_MAX_DOCUMENTS)")]
    for lead in ("", "---\n"):  # a first document with and without its `---`
        write(in_tmp / "a.yaml", lead + documents(*(PROCESS.format(name=f"p{i}") for i in range(3))))
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ORCHESTRATOR_MANIFEST_MAX_DOCUMENTS", "2")
            assert errors(["a.yaml"]) == [(f"a.yaml:{14 + len(lead) // 4}:1: more than 2 documents in this file: "
                                          "refused (raise the limit with ORCHESTRATOR_MANIFEST_MAX_DOCUMENTS)")]
    _, problems = read_documents("a.yaml", ReadLimits(max_values=10))
    assert len(problems) == 1 and "more than 10 keys and values in this document" in str(problems[0])
    assert "ORCHESTRATOR_MANIFEST_MAX_VALUES" in str(problems[0])


def test_limits_from_the_environment_take_only_positive_whole_numbers() -> None:
    limits = ReadLimits.from_environment({"ORCHESTRATOR_MANIFEST_MAX_BYTES": "4096",
                                          "ORCHESTRATOR_MANIFEST_MAX_DOCUMENTS": "-1",
                                          "ORCHESTRATOR_MANIFEST_MAX_VALUES": "lots"})
    assert (limits.max_bytes, limits.max_documents, limits.max_values) == (4096, ReadLimits().max_documents,
                                                                         ReadLimits().max_values)


# -- tags -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "tag", "column"), [
    ('!!python/object/apply:os.system ["true"]', "!!python/object/apply:os.system", 12),
    ("!Ref other", "!Ref", 12),
    ("!<tag:example.com,2026:cmd> [x]", "tag:example.com,2026:cmd", 12),
    ("!!set {a: null}", "!!set", 12),
])
def test_a_tag_that_is_not_standard_yaml_is_refused_at_its_place(in_tmp: Path, value: str, tag: str,
                                                                 column: int) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a").replace('[sleep, "1"]', value))
    assert f"a.yaml:6:{column}: spec.command: unsupported YAML tag {tag!r}" in errors(["a.yaml"])


def test_a_tagged_command_never_runs(in_tmp: Path) -> None:
    marker = in_tmp / "ran"
    write(in_tmp / "a.yaml", PROCESS.format(name="a").replace(
        '[sleep, "1"]', f'!!python/object/apply:os.system ["touch {marker}"]'))
    result = validate("a.yaml", cwd=in_tmp)
    assert result.returncode == 1 and "unsupported YAML tag" in result.stderr
    assert not marker.exists()


def test_standard_tags_stay_accepted(in_tmp: Path) -> None:
    text = PROCESS.format(name="a").replace('[sleep, "1"]', '!!seq [sleep, !!str 1]')
    text += "  env: !!map {A: !!str 8080, B: ! plain}\n  replicas: !!int '2'\n"
    write(in_tmp / "a.yaml", text)
    (spec,) = load_specs(["a.yaml"])
    assert spec.command == ("sleep", "1") and spec.env == (("A", "8080"), ("B", "plain")) and spec.replicas == 2


def test_a_log_pattern_that_needs_backtracking_is_refused_at_its_place(in_tmp: Path) -> None:
    write(in_tmp / "a.yaml", PROCESS.format(name="a") + "  probes: {readiness: {log: {pattern: '(?<=x)y'}}}\n")
    [problem] = errors(["a.yaml"])
    assert problem.startswith("a.yaml:7:39: spec.probes.readiness.log.pattern: '(?<=x)y' is not a pattern RE2 "
                              "matches in linear time")
    write(in_tmp / "a.yaml", PROCESS.format(name="a") + "  probes: {readiness: {log: {pattern: '(a+)+$'}}}\n")
    assert load_specs(["a.yaml"])[0].probes.readiness is not None  # catastrophic for re, linear for RE2


# -- inputs real configurations use ---------------------------------------------------------------------


def test_empty_arguments_are_accepted_and_reach_the_process(in_tmp: Path) -> None:
    text = PROCESS.format(name="a").replace('[sleep, "1"]', '[redis-server, --save, ""]')
    text += '  hooks: {preStart: {exec: [touch, ""]}}\n'
    text += '  probes: {liveness: {exec: {command: [test, "", "="]}}}\n'
    write(in_tmp / "a.yaml", text)
    (spec,) = load_specs(["a.yaml"])
    assert spec.command == ("redis-server", "--save", "")


@pytest.mark.parametrize(("field", "path"), [
    ('  command: ["", x]\n', "spec.command[0]"),
    ('  hooks: {preStop: {exec: ["", x]}}\n', "spec.hooks.preStop.exec[0]"),
    ('  probes: {readiness: {exec: {command: [""]}}}\n', "spec.probes.readiness.exec.command[0]"),
])
def test_an_empty_program_name_is_refused(in_tmp: Path, field: str, path: str) -> None:
    text = PROCESS.format(name="a")
    text = text.replace('  command: [sleep, "1"]\n', field) if "command: [" in field else text + field
    write(in_tmp / "a.yaml", text)
    found = errors(["a.yaml"])
    assert any(f": {path}: the program to run must not be empty" in p for p in found), found


def test_the_daemon_refuses_an_empty_program_name_sent_through_its_api(orch: Orchestrator) -> None:
    manifest = orch.write("m/a.yaml", process("a"))
    orch.ok("apply", "-f", str(manifest))
    orch.wait_running("a")
    from orchestrator.manifests import codec

    (spec,) = load_specs([str(manifest)])
    item = codec.spec_to_json(spec)
    item["document"]["spec"]["command"] = ["", "x"]
    with pytest.raises(Exception, match="the program to run must not be empty"):
        Client(orch.state, timeout=10).request("POST", "/apply", {"specs": [item]})


def test_a_server_started_with_an_empty_argument_runs(orch: Orchestrator) -> None:
    script = "import sys, time; assert sys.argv[1:] == ['--save', ''], sys.argv; time.sleep(60)"
    manifest = orch.write("m/a.yaml", process("a", ["python3", "-c", script, "--save", ""]))
    orch.ok("apply", "-f", str(manifest))
    pids = orch.wait_running("a")
    assert psutil.Process(pids["a"][0]).cmdline()[-2:] == ["--save", ""]


# -- manifest folders as users have them ----------------------------------------------------------------


def test_links_are_followed_and_a_loop_is_read_once(in_tmp: Path) -> None:
    write(in_tmp / "elsewhere/shared.yaml", PROCESS.format(name="shared"))
    write(in_tmp / "store/linked-dir/b.yaml", PROCESS.format(name="b"))
    write(in_tmp / "m/a.yaml", PROCESS.format(name="a"))
    os.symlink("../elsewhere/shared.yaml", in_tmp / "m/shared.yaml")
    os.symlink("../store/linked-dir", in_tmp / "m/linked")
    os.symlink("..", in_tmp / "m/linked/up")  # m/linked/up/linked/up/... : a loop
    files, problems = find_manifest_files(["m"])
    assert problems == ()
    names = sorted(os.path.basename(f) for f in files)
    assert names == ["a.yaml", "b.yaml", "shared.yaml"]
    assert sorted(spec.name for spec in load_specs(["m"])) == ["a", "b", "shared"]


def test_a_link_to_nothing_named_like_a_manifest_is_a_problem(in_tmp: Path) -> None:
    write(in_tmp / "m/a.yaml", PROCESS.format(name="a"))
    os.symlink("gone.yaml", in_tmp / "m/b.yaml")
    assert errors(["m"]) == ["m/b.yaml: a link to nothing"]
    assert errors(["m/b.yaml"]) == ["m/b.yaml: a link to nothing"]


def test_a_fifo_is_never_opened_whether_found_or_named(in_tmp: Path) -> None:
    write(in_tmp / "m/a.yaml", PROCESS.format(name="a"))
    os.mkfifo(in_tmp / "m/pipe.yaml")
    os.mkfifo(in_tmp / "m/not-a-manifest")
    assert errors(["m"]) == ["m/pipe.yaml: a named pipe (FIFO), not a file: not read"]
    assert errors(["m/pipe.yaml"]) == ["m/pipe.yaml: a named pipe (FIFO), not a file: not read"]
    result = validate("m", cwd=in_tmp)  # a process of its own: a blocking open would hit the timeout
    assert result.returncode == 1 and "m/pipe.yaml: a named pipe (FIFO), not a file: not read" in result.stderr


def test_an_env_file_that_is_a_fifo_is_not_opened(in_tmp: Path) -> None:
    os.mkfifo(in_tmp / "pipe.env")
    write(in_tmp / "a.yaml", PROCESS.format(name="a") + "  envFrom: [{file: pipe.env}]\n")
    assert errors(["a.yaml"]) == [("a.yaml:7:20: spec.envFrom[0].file: env file 'pipe.env' is a named pipe (FIFO), "
                                  "not a dotenv file")]


def test_a_socket_named_like_a_manifest_is_not_opened(in_tmp: Path) -> None:
    import socket

    write(in_tmp / "m/a.yaml", PROCESS.format(name="a"))
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(in_tmp / "m/s.yaml"))
        assert errors(["m"]) == ["m/s.yaml: a socket, not a file: not read"]


def test_editor_files_are_ignored(in_tmp: Path) -> None:
    write(in_tmp / "m/a.yaml", PROCESS.format(name="a"))
    for name in ("a.yaml~", ".a.yaml.swp", "#a.yaml#", ".hidden.yaml"):
        write(in_tmp / "m" / name, "not: [valid")
    os.symlink("root@host.1234:1700000000", in_tmp / "m/.#a.yaml")  # Emacs's lock: a link to nothing
    assert [spec.name for spec in load_specs(["m"])] == ["a"]


def test_text_that_is_not_utf8_is_named(in_tmp: Path) -> None:
    (in_tmp / "a.yaml").write_bytes(PROCESS.format(name="a").encode() + b"  user: caf\xe9\n")
    assert errors(["a.yaml"]) == ["a.yaml: not UTF-8 text: invalid continuation byte at byte 103"]


# -- a watched folder of a running daemon ---------------------------------------------------------------


@pytest.mark.parametrize("hostile", ["bomb", "deep", "big", "fifo", "tag"])
def test_a_hostile_file_in_a_watched_folder_leaves_the_daemon_answering_and_what_runs_running(
        orch: Orchestrator, hostile: str) -> None:
    folder = orch.root / "m"
    orch.write("m/a.yaml", process("a"))
    orch.ok("apply", "--watch", "-f", str(folder))
    before = orch.wait_running("a")
    daemon = psutil.Process(orch.daemon_pid())
    memory_before = daemon.memory_info().rss
    target = folder / f"{hostile}.yaml"
    if hostile == "bomb":
        target.write_text(alias_bomb())
    elif hostile == "deep":
        target.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    elif hostile == "big":
        with target.open("w") as big:
            big.write("k: '" + "x" * (50 * 1024 * 1024) + "'\n")
    elif hostile == "fifo":
        os.mkfifo(target)
    else:
        text = process("t").replace('command: ["sleep", "60"]', "command: !!python/object/apply:os.system [true]")
        assert "!!python" in text
        target.write_text(text)

    client = Client(orch.state, timeout=1.0)  # every answer within 1 s, or the request fails the test

    def invalid() -> bool:
        client.request("GET", "/objects")
        return bool(orch.events("Invalid"))

    wait_for(invalid, timeout=10, what="an Invalid event for the hostile file")
    for _ in range(5):
        started = time.monotonic()
        client.request("GET", "/objects")
        assert time.monotonic() - started < 1.0
    assert orch.running("a") == before
    assert len(orch.revisions()) == 1
    assert daemon.memory_info().rss - memory_before < 50 * 1024 * 1024
    [event] = orch.events("Invalid")
    assert f"{hostile}.yaml" in event["message"]
