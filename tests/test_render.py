"""cli/render: pure formatting. Tables align, relative times use the `now` passed in, secrets never show."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.render.common import human_age, human_bytes, to_json, to_yaml
from orchestrator.cli.render.describe import describe_text
from orchestrator.cli.render.diffs import spec_diff
from orchestrator.cli.render.events import events_table
from orchestrator.cli.render.tables import apply_results, history_table, objects_table

NOW = 1795600300.0
SECRET = "s3cret-value-never-shown"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def replica(index: int = 0, **fields: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "index": index,
        "phase": "Running",
        "pid": 100 + index,
        "started_at": NOW - 200,
        "restarts": 0,
        "reason": "",
        "next_try_at": None,
        "cpu_percent": 1.5,
        "memory_bytes": 12 * 1024 * 1024,
        "last_exit": None,
    }
    return {**status, **fields}


def process(name: str = "api", namespace: str = "shop", **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "key": f"{namespace}/{name}",
        "name": name,
        "namespace": namespace,
        "kind": "Process",
        "labels": {"tier": "backend"},
        "state": "Running",
        "replicas": {"desired": 2, "running": 2, "ready": 2},
        "restarts": 3,
        "created_at": NOW - 300,
        "command": ["python3", "app.py"],
        "replica_status": [replica(0), replica(1)],
        "spec": {
            "apiVersion": "orchestrator/v1",
            "kind": "Process",
            "metadata": {"name": name, "namespace": namespace, "labels": {"tier": "backend"}},
            "spec": {
                "command": ["python3", "app.py"],
                "workingDir": "/srv/shop",
                "env": {"DB_PASSWORD": SECRET, "PORT": "8080"},
                "restartPolicy": "Always",
                "backoff": {"initialSeconds": 0.5, "maxSeconds": 60},
                "dependsOn": [{"name": "db", "condition": "ready"}],
            },
        },
    }
    return {**obj, **fields}


def column_starts(line: str) -> list[int]:
    """Where each cell starts: after a run of two or more spaces (cells here contain no double spaces)."""
    return [0] + [m.end() for m in re.finditer(r" {2,}", line)]


def assert_aligned(table: str) -> None:
    lines = table.splitlines()
    header = column_starts(lines[0])
    for line in lines[1:]:
        starts = column_starts(line)
        assert starts == header[: len(starts)], f"misaligned:\n{table}"


# --- helpers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "0s"),
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (180, "3m"),
        (200, "3m20s"),
        (45 * 60, "45m"),
        (60 * 60, "1h"),
        (2 * 3600 + 5 * 60, "2h5m"),
        (5 * 3600, "5h"),
        (20 * 3600, "20h"),
        (4 * 86400, "4d"),
        (4 * 86400 + 6 * 3600, "4d6h"),
        (45 * 86400, "45d"),
        (3 * 365 * 86400 + 30 * 86400, "3y30d"),
    ],
)
def test_human_age(seconds: float, expected: str) -> None:
    assert human_age(seconds) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0B"),
        (512, "512B"),
        (1536, "1.5Ki"),
        (12345678, "12Mi"),
        (int(9.5 * 1024**2), "9.5Mi"),
        (int(9.99 * 1024**2), "10Mi"),
        (1023 * 1024**2 + 1000 * 1024, "1.0Gi"),
        (3 * 1024**3 + 200 * 1024**2, "3.2Gi"),
    ],
)
def test_human_bytes(n: int, expected: str) -> None:
    assert human_bytes(n) == expected


# --- get ------------------------------------------------------------------------------------------------------


def test_no_objects() -> None:
    assert objects_table([], now=NOW) == "No objects."


def test_table_is_aligned_with_uppercase_header() -> None:
    objects = [process("api"), process("a-much-longer-name", kind="Job", restarts=12345)]
    table = objects_table(objects, now=NOW)
    assert table.splitlines()[0].split() == ["NAME", "KIND", "READY", "STATE", "RESTARTS", "AGE"]
    assert_aligned(table)
    assert table.splitlines()[1].split() == ["api", "Process", "2/2", "Running", "3", "5m"]


def test_namespace_column_only_with_several_namespaces() -> None:
    one = objects_table([process("api"), process("worker")], now=NOW)
    assert "NAMESPACE" not in one
    several = objects_table([process("api"), process("web", namespace="front")], now=NOW)
    assert several.splitlines()[0].startswith("NAMESPACE  NAME")
    assert several.splitlines()[2].startswith("front")
    assert_aligned(several)


def test_wide_columns() -> None:
    stopped = replica(1, phase="BackOff", pid=None, cpu_percent=None, memory_bytes=None)
    objects = [
        process("api", replica_status=[replica(0), replica(1, cpu_percent=2.0)], up_to_date=1, rollout_revision=4,
                limit_health="Warning"),
        process("worker", replica_status=[stopped], command=["sh", "-c", "echo hi there"]),
    ]
    table = objects_table(objects, wide=True, now=NOW)
    header, api, worker = table.splitlines()
    assert header.split() == ["NAME", "KIND", "READY", "STATE", "RESTARTS", "AGE", "UP-TO-DATE", "REVISION", "HEALTH",
                              "PID", "CPU", "MEM", "COMMAND"]
    assert api.split()[6:] == ["1", "4", "Warning", "100,101", "3.5%", "24Mi", "python3", "app.py"]
    assert worker.split()[6:12] == ["-", "-", "-", "-", "-", "-"]  # (no rollout columns, no limit: dashes)
    assert worker.endswith("sh -c 'echo hi there'")  # shell-quoted, copy-pasteable
    assert_aligned(table)


def test_wide_command_truncated_to_width() -> None:
    long_command = ["python3", "-m", "service", *(f"--option-{i}=value" for i in range(20))]
    table = objects_table([process(command=long_command)], wide=True, width=110, now=NOW)
    for line in table.splitlines():
        assert len(line) <= 110
    assert table.splitlines()[1].endswith("…")
    untruncated = objects_table([process(command=long_command)], wide=True, now=NOW)
    assert "--option-19=value" in untruncated


def test_age_comes_from_now_and_missing_fields_are_dashes() -> None:
    bare = {"key": "shop/x", "name": "x", "namespace": "shop"}
    row = objects_table([process(created_at=NOW - 4 * 86400), bare], now=NOW).splitlines()
    assert row[1].split()[-1] == "4d"
    assert row[2].split() == ["x", "-", "-", "-", "0", "-"]


# --- describe -------------------------------------------------------------------------------------------------


def event(seconds_ago: float, type_: str, message: str, replica: int | None = 0, key: str = "shop/api") -> dict:
    return {"id": 1, "time": NOW - seconds_ago, "type": type_, "object": key, "replica": replica, "message": message}


def test_describe_sections() -> None:
    crashed = replica(
        1,
        phase="BackOff",
        pid=None,
        restarts=4,
        next_try_at=NOW + 3.2,
        last_exit={"code": 1, "signal": None, "reason": "Error", "at": NOW - 10, "ran_seconds": 0.42, "message": ""},
    )
    killed = replica(0, last_exit={"code": None, "signal": 9, "reason": "Killed", "at": NOW - 30, "ran_seconds": 200.0})
    events = [event(12, "Started", "started pid 100"), event(5, "Exited", "exited with code 1", replica=1)]
    text = describe_text(process(replica_status=[killed, crashed]), events, NOW)
    for expected in [
        "Name:            api",
        "Namespace:       shop",
        "Kind:            Process",
        "Labels:          tier=backend",
        "Replicas:        2 desired | 2 running | 2 ready",
        "Command:         python3 app.py",
        "Working dir:     /srv/shop",
        "Restart policy:  Always",
        "Backoff:         0.5s initial, x2 per crash, 60s max, reset after 10m",
        "Depends on:      db (ready)",
        "Replica 1:",
        "  Phase:      BackOff",
        "  Next try:   in 4s",
        "  Last exit:  code 1 (Error), 10s ago, ran 0.4s",
        "  Last exit:  signal SIGKILL (Killed), 30s ago, ran 3m20s",
        "  Started:    3m20s ago",
    ]:
        assert expected in text.splitlines(), f"{expected!r} not in:\n{text}"
    assert text.splitlines()[-4:] == [
        "Events:",
        "  AGE      TYPE     REPLICA  MESSAGE",
        "  12s ago  Started  0        started pid 100",
        "  5s ago   Exited   1        exited with code 1",
    ]


def test_describe_says_how_limits_are_enforced_and_how_it_is_scheduled() -> None:
    obj = process(limits={"memory": "cgroup v1", "cpu": "cgroup v1", "openFiles": "rlimit"})
    obj["spec"]["spec"].update(resources={"limits": {"memory": 64 << 20, "cpu": 0.5, "openFiles": 1024}},
                               priority=50, cpuAffinity=[0, 1], ioClass="idle")
    lines = describe_text(obj, [], NOW).splitlines()
    start = lines.index("Limits:          memory 64Mi (cgroup v1)")
    assert lines[start + 1:start + 3] == ["                 cpu 0.5 (cgroup v1)", "                 openFiles 1024 (rlimit)"]
    assert "Scheduling:      priority 50 (nice -10), cpus 0,1, I/O class idle" in lines
    assert "Scheduling:      priority 0 (nice 0)" in describe_text(process(), [], NOW).splitlines()


def test_describe_never_shows_env_values() -> None:
    events = [event(1, "Started", "started")]
    text = describe_text(process(), events, NOW)
    assert SECRET not in text
    assert "8080" not in text
    assert "DB_PASSWORD=<hidden>" in text
    assert "PORT=<hidden>" in text


def test_describe_keeps_the_last_20_events_of_this_object() -> None:
    events = [event(100 - i, "Started", f"message {i}") for i in range(30)]
    events.append(event(1, "Started", "about another object", key="shop/worker"))
    text = describe_text(process(), events, NOW)
    assert "message 9" not in text.split()
    assert "message 10" in text and "message 29" in text
    assert "another object" not in text


def test_describe_survives_a_sparse_object() -> None:
    text = describe_text({"key": "default/x", "name": "x"}, [], NOW)
    assert "Name:" in text and text.endswith("Events:  <none>")


# --- diff -----------------------------------------------------------------------------------------------------


def manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"command": ["python3", "app.py"], "env": {"TOKEN": SECRET}}
    return {
        "apiVersion": "orchestrator/v1",
        "kind": "Process",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {**base, **spec},
    }


def test_diff_unchanged_is_empty() -> None:
    assert spec_diff("shop/api", manifest(), manifest()) == ""
    assert spec_diff("shop/api", manifest(), manifest(), color=True) == ""


def test_diff_created() -> None:
    text = spec_diff("shop/api", None, manifest())
    lines = text.splitlines()
    assert lines[:2] == ["--- live/shop/api", "+++ manifest/shop/api"]
    assert all(line.startswith("+") for line in lines[2:])
    assert '+spec.command: ["python3", "app.py"]' in lines
    assert '+kind: "Process"' in lines


def test_diff_deleted() -> None:
    lines = spec_diff("shop/api", manifest(), None).splitlines()
    assert lines[:2] == ["--- live/shop/api", "+++ manifest/shop/api"]
    assert len(lines) > 2 and all(line.startswith("-") for line in lines[2:])


def test_diff_changed_paths_only() -> None:
    old = manifest(backoff={"initialSeconds": 1}, dependsOn=[{"name": "db"}])
    new = manifest(backoff={"initialSeconds": 2}, dependsOn=[{"name": "db", "condition": "ready"}], replicas=3)
    assert spec_diff("shop/api", old, new).splitlines()[2:] == [
        "-spec.backoff.initialSeconds: 1",
        "+spec.backoff.initialSeconds: 2",
        '+spec.dependsOn[0].condition: "ready"',
        "+spec.replicas: 3",
    ]


def test_diff_type_change_is_a_change() -> None:
    assert spec_diff("shop/api", manifest(shell=1), manifest(shell=True)) != ""


def test_diff_hides_env_values() -> None:
    new = manifest(env={"TOKEN": "another-secret", "ADDED": "added-secret"})
    text = spec_diff("shop/api", manifest(), new)
    assert SECRET not in text and "another-secret" not in text and "added-secret" not in text
    assert text.splitlines()[2:] == [
        "-spec.env.TOKEN: <hidden>",
        "+spec.env.TOKEN: <hidden (changed)>",
        "+spec.env.ADDED: <hidden>",
    ]
    assert SECRET not in spec_diff("shop/api", None, manifest())
    assert SECRET not in spec_diff("shop/api", manifest(), None)


def test_diff_color_only_when_asked() -> None:
    old, new = manifest(replicas=1), manifest(replicas=2)
    plain = spec_diff("shop/api", old, new)
    assert "\x1b[" not in plain
    colored = spec_diff("shop/api", old, new, color=True)
    lines = colored.splitlines()
    assert lines[0].startswith("\x1b[1m") and lines[1].startswith("\x1b[1m")
    assert lines[2] == "\x1b[31m-spec.replicas: 1\x1b[0m"
    assert lines[3] == "\x1b[32m+spec.replicas: 2\x1b[0m"
    assert ANSI.sub("", colored) == plain


def test_apply_results() -> None:
    results = [
        {"key": "shop/api", "kind": "Process", "result": "configured", "restart": True},
        {"key": "shop/migrate", "kind": "Job", "result": "created", "restart": False},
        {"key": "shop/db", "kind": "Process", "result": "unchanged", "restart": False},
    ]
    assert apply_results(results).splitlines() == [
        "process/shop/api configured (restart)",
        "job/shop/migrate created",
        "process/shop/db unchanged",
    ]
    assert apply_results(results[1:2], dry_run=True) == "job/shop/migrate created (dry run)"


# --- history and events ---------------------------------------------------------------------------------------


def test_history_table() -> None:
    revisions = [
        {
            "number": 3,
            "at": NOW - 7500,
            "action": "apply",
            "user": "alice",
            "paths": ["examples/manifests"],
            "git_commit": "abc1234def5678",
            "git_dirty": True,
            "objects": 4,
            "message": "+api ~web",
        },
        {"number": 4, "at": NOW - 5, "action": "rollback", "user": "bob", "paths": [], "git_commit": None},
    ]
    table = history_table(revisions, NOW)
    lines = table.splitlines()
    assert lines[0].split() == ["REVISION", "AGE", "ACTION", "USER", "OBJECTS", "COMMIT", "PATHS", "CHANGE"]
    assert lines[1].split() == ["3", "2h5m", "apply", "alice", "4", "abc1234+dirty", "examples/manifests", "+api",
                                "~web"]
    assert lines[2].split() == ["4", "5s", "rollback", "bob", "-", "-", "-", "-"]
    assert_aligned(table)
    assert history_table([], NOW) == "No revisions."


def test_events_table() -> None:
    events = [event(12, "Started", "started pid 100"), event(3, "Applied", "applied rev 3", replica=None, key="")]
    table = events_table(events)
    lines = table.splitlines()
    assert lines[0].split() == ["TIME", "OBJECT", "TYPE", "MESSAGE"]
    stamp = time.strftime("%H:%M:%S", time.localtime(NOW - 12))
    assert lines[1].split() == [stamp, "shop/api[0]", "Started", "started", "pid", "100"]
    assert lines[2].split()[1:3] == ["orchestrator", "Applied"]
    assert_aligned(table)
    older = events_table([event(3 * 86400, "Started", "x")], now=NOW)
    assert time.strftime("%Y-%m-%d", time.localtime(NOW - 3 * 86400)) in older
    assert events_table([]) == "No events."


# --- -o json / yaml -------------------------------------------------------------------------------------------


def test_json_and_yaml() -> None:
    assert to_json({"b": 1, "a": [1]}) == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'
    assert to_yaml({"b": 1, "a": [1]}) == "b: 1\na:\n- 1\n"


def test_problems_summary_never_quotes_an_env_value() -> None:
    from orchestrator.core.errors import Location, Problem, problems_summary

    problems = [
        Problem(Location("a.yaml", 6, 9), "spec.env.PASSWORD", "expected a string, got 987654321: quote it"),
        Problem(Location("a.yaml", 7, 3), "spec.replicas", "must be at least 0, got -1"),
    ]
    text = problems_summary(problems)
    assert "987654321" not in text
    assert "a.yaml:6:9: spec.env.PASSWORD: invalid (value not shown)" in text
    assert "spec.replicas: must be at least 0, got -1" in text


def test_a_systemd_unit_means_exactly_its_paths_whatever_they_hold(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from orchestrator.cli.render.systemd import installed_systemd_version, systemd_unit, unit_name

    state = str(tmp_path / 'odd 100% $HOME "quoted" \\back')
    here = installed_systemd_version()
    for version in (252, 254, None):
        unit = systemd_unit("/usr/bin/python3", state, user_unit=False, systemd_version=version)
        exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
        assert exec_line == ('ExecStart="/usr/bin/python3" -m orchestrator --state-dir "'
                             + state.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
                             + '" daemon' + ("" if version == 254 else " --limits watchdog"))
        assert "Description=orchestrator daemon for " + state.replace("%", "%%") in unit
        assert "Type=notify\nNotifyAccess=main\n" in unit
        # Before 254 no delegated cgroup: systemd could not restart a crashed daemon in one.
        assert ("DelegateSubgroup=supervisor" in unit) == (version == 254) == ("Delegate=yes" in unit)
        if shutil.which("systemd-analyze") and (version is None or here is None or version <= here):
            # systemd's own reading of it: no unknown key or specifier, no bad quoting.
            (tmp_path / "t.service").write_text(unit.replace("/usr/bin/python3", "/bin/true"))
            verified = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "t.service")],
                                      capture_output=True, text=True, timeout=30, check=False)
            complaints = [line for line in verified.stderr.splitlines() if "t.service" in line]
            assert verified.returncode == 0 and complaints == [], verified.stderr
    with pytest.raises(ValueError, match="control character"):
        systemd_unit("/usr/bin/python3", "/srv/x\nExecStartPre=/bin/evil", user_unit=False)
    assert unit_name("/home/a/.local/state/orchestrator", "/home/a/.local/state/orchestrator") == "orchestrator.service"
    assert unit_name("/srv/one", "/d") != unit_name("/srv/two", "/d")
