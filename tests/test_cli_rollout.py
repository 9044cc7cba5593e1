"""`orchestrator rollout ...`, `apply --wait` on rollouts and `get -o wide`'s rollout columns, through a real
daemon (the `orch` fixture of test_daemon.py) driven as a user would, one CLI subprocess per command.

Every manifest here rolls stop-first one replica at a time (maxSurge 0, maxUnavailable 1), a replica being
available 0.2 s after it started (no readiness probe), so a rollout of three replicas takes about a second.
"""
# ruff: noqa: F811 - pytest fixtures imported from test_daemon are used as arguments

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from typing import Any

import psutil
import yaml
from conftest import wait_for
from test_daemon import Orchestrator, alive, orch, process  # noqa: F401

ROLLING = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
NOT_FOUND = 2  # `rollout status`: errors are 2, since 1 means "not complete" (exit_codes.EXIT_ERROR)
REFUSED = 1  # the other verbs, as every command: a daemon's refusal (exit_codes.EXIT_INVALID)


def web(command: Sequence[str] = ("sleep", "60"), replicas: int = 3, min_ready: float = 0.2, **spec: Any) -> str:
    return process("web", command, replicas=replicas, strategy=ROLLING, minReadySeconds=min_ready,
                   progressDeadlineSeconds=30, **spec)


def status(orch: Orchestrator) -> dict[str, Any]:
    return orch.api("POST", "/rollout", {"name": "web", "action": "status"})


def commands_of(pids: Sequence[int]) -> set[tuple[str, ...]]:
    return {tuple(psutil.Process(pid).cmdline()) for pid in pids}


def running_commands(orch: Orchestrator) -> set[tuple[str, ...]]:
    """The command lines web's replicas run, once every one runs (else, or while one ends, none)."""
    pids = orch.running("web")
    try:
        return commands_of(pids["web"]) if pids else set()
    except psutil.NoSuchProcess:
        return set()


def started(orch: Orchestrator, text: str, replicas: int = 3, min_ready: float = 0.2) -> list[int]:
    """Apply `text` as web's first manifest; its pids once every replica runs and nothing rolls."""
    manifest = orch.write("m/web.yaml", text)
    orch.ok("apply", "-f", str(manifest))
    pids = orch.wait_running("web")["web"]
    wait_for(lambda: status(orch)["phase"] == "Complete", what="web settled")
    return pids


def test_a_rolling_change_is_followed_until_complete_and_listed_as_a_second_revision(orch: Orchestrator) -> None:
    # minReadySeconds 1: the rollout lasts long enough (3 s) for `status -w` to start while it is under way.
    before = started(orch, web(min_ready=1.0))
    manifest = orch.write("m/web.yaml", web(["sleep", "61"], min_ready=1.0))
    assert "configured (restart)" in orch.ok("apply", "-f", str(manifest))

    watched = orch("rollout", "status", "web", "-w", "--timeout", "30")
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    lines = watched.stdout.splitlines()
    assert lines[0].startswith("Waiting for rollout to finish: ") and lines[0].endswith("..."), lines
    assert lines[-1] == "rollout of default/web complete: revision 2", lines
    assert all(a != b for a, b in itertools.pairwise(lines)), lines  # a line only when it changes
    assert any("updated replicas are available" in line or "new replicas have been updated" in line
               for line in lines[:-1]), lines
    after = orch.running("web")
    assert after is not None and not set(after["web"]) & set(before)
    assert commands_of(after["web"]) == {("sleep", "61")}

    once = orch("rollout", "status", "web")
    assert (once.returncode, once.stdout) == (0, "rollout of default/web complete: revision 2\n"), once
    document = json.loads(orch.ok("rollout", "status", "web", "-o", "json"))
    assert (document["phase"], document["revision"], document["replicas"]) == ("Complete", 2, 3)

    table = orch.ok("rollout", "history", "web").splitlines()
    assert table[0].split() == ["REVISION", "HASH", "DESIRED-REV", "COMMIT", "CREATED", "STATUS", "STABLE",
                                "REASON"]
    assert len(table) == 3, table
    first, second = (row.split() for row in table[1:])
    assert (first[0], first[2], first[-2]) == ("1", "1", "yes")
    assert (second[0], second[2]) == ("2", "2") and "Complete" in second and second[-2] == "yes"
    revisions = json.loads(orch.ok("rollout", "history", "web", "-o", "json"))["revisions"]
    assert [r["number"] for r in revisions] == [1, 2] and revisions[0]["hash"] != revisions[1]["hash"]
    spec = yaml.safe_load(orch.ok("rollout", "history", "web", "--revision", "1"))
    assert spec["metadata"]["name"] == "web" and spec["spec"]["command"] == ["sleep", "60"]

    wide = orch.ok("get", "web", "-o", "wide").splitlines()
    header, row = wide[0].split(), wide[1].split()
    assert row[header.index("UP-TO-DATE")] == "3" and row[header.index("REVISION")] == "2", wide


def test_a_paused_process_records_a_change_without_rolling_it_until_resumed(orch: Orchestrator) -> None:
    before = started(orch, web())
    assert orch.ok("rollout", "pause", "web") == "default/web rollout paused\n"
    assert orch.ok("rollout", "pause", "web") == "default/web rollout already paused\n"
    manifest = orch.write("m/web.yaml", web(["sleep", "61"]))
    assert "configured (restart)" in orch.ok("apply", "-f", str(manifest))

    for args in (("rollout", "status", "web"), ("rollout", "status", "web", "-w", "--timeout", "30")):
        paused = orch(*args)
        assert paused.returncode == 1 and "Traceback" not in paused.stderr, (args, paused.stdout, paused.stderr)
        assert paused.stdout.startswith("rollout of default/web paused"), paused.stdout
        assert "orchestrator rollout resume web" in paused.stdout
    assert orch.running("web") == {"web": before}  # (the status ran on the loop, after the apply's pass)
    assert [r["number"] for r in json.loads(orch.ok("rollout", "history", "web", "-o", "json"))["revisions"]] == [1, 2]

    assert orch.ok("rollout", "resume", "web") == "default/web rollout resumed\n"
    resumed = orch("rollout", "status", "web", "-w", "--timeout", "30")
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    assert resumed.stdout.splitlines()[-1] == "rollout of default/web complete: revision 2"
    after = orch.running("web")
    assert after is not None and not set(after["web"]) & set(before)
    assert commands_of(after["web"]) == {("sleep", "61")}


def test_undo_rolls_back_to_revision_1(orch: Orchestrator) -> None:
    started(orch, web())
    manifest = orch.write("m/web.yaml", web(["sleep", "61"]))
    orch.ok("apply", "-f", str(manifest))
    wait_for(lambda: status(orch)["phase"] == "Complete" and status(orch)["revision"] == 2, timeout=30,
             what="revision 2 rolled out")
    rolled = orch.wait_running("web")["web"]

    undone = orch.ok("rollout", "undo", "web", "--to-revision", "1")
    assert undone.startswith("default/web rolling back to revision 1, held there"), undone
    wait_for(lambda: "rollout" not in status(orch) and running_commands(orch) == {("sleep", "60")}, timeout=30,
             what="revision 1's spec rolled out again")
    assert not any(alive(pid) for pid in rolled)
    revisions = json.loads(orch.ok("rollout", "history", "web", "-o", "json"))["revisions"]
    assert [r["number"] for r in revisions] == [1, 2, 3] and revisions[2]["hash"] == revisions[0]["hash"]

    again = orch("rollout", "undo", "web", "--to-revision", "1")  # it runs revision 1's spec already
    assert again.returncode == REFUSED and "nothing to undo" in again.stderr, (again.stdout, again.stderr)


def test_an_undo_holds_through_an_unchanged_apply_and_status_says_so(orch: Orchestrator) -> None:
    started(orch, web())
    manifest = orch.write("m/web.yaml", web(["sleep", "61"]))
    orch.ok("apply", "-f", str(manifest))
    wait_for(lambda: status(orch)["phase"] == "Complete" and status(orch)["revision"] == 2, timeout=30,
             what="revision 2 rolled out")
    orch.ok("rollout", "undo", "web")  # the previous stable one: 1
    watched = orch("rollout", "status", "web", "-w", "--timeout", "30")
    assert watched.returncode == 1, (watched.stdout, watched.stderr)
    assert watched.stdout.splitlines()[-1].startswith("rolled back to revision 1 (held): undo"), watched.stdout
    assert "unchanged" in orch.ok("apply", "-f", str(manifest))
    assert commands_of(orch.wait_running("web")["web"]) == {("sleep", "60")}


def test_rollout_restart_replaces_every_replica_one_at_a_time(orch: Orchestrator) -> None:
    before = started(orch, web())
    seen: list[list[int | None]] = []  # the pids of running replicas, by index, as often as the API answers
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            replicas = orch.objects()["web"]["replica_status"]
            seen.append([r["pid"] if r["phase"] == "Running" else None for r in replicas if r["index"] < 3])

    since = max(e["id"] for e in orch.events())
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        said = orch.ok("rollout", "restart", "web")
        assert said.startswith("default/web restarting: every replica replaced"), said
        wait_for(lambda: status(orch)["phase"] == "Complete" and not set(before) & set(
            (orch.running("web") or {"web": before})["web"]), timeout=30, what="every replica replaced")
    finally:
        done.set()
        sampler.join(10)
    after = orch.wait_running("web")["web"]
    assert len(set(after)) == 3 and not any(alive(pid) for pid in before)
    assert commands_of(after) == {("sleep", "60")}  # the same spec, new processes
    assert min(sum(pid is not None for pid in pids) for pids in seen) >= 2, seen  # never more than one down
    assert any(set(before) & set(pids) and set(after) & set(pids) for pids in seen)  # old and new side by side
    # One by one: each stop is followed by its replacement's start before the next stop.
    moves = [(e["type"], e["replica"]) for e in orch.api("GET", f"/events?since={since}")["events"]
             if e["object"] == "default/web" and e["type"] in ("Stopping", "Started")]
    assert [kind for kind, _ in moves] == ["Stopping", "Started"] * 3, moves
    assert {index for _, index in moves} == {0, 1, 2}


def test_apply_wait_follows_a_rollout_and_fails_with_the_reason_when_it_rolls_back(orch: Orchestrator) -> None:
    started(orch, web())
    manifest = orch.write("m/web.yaml", web(["sleep", "61"]))
    waited = orch("apply", "-f", str(manifest), "--wait", "--timeout", "30")
    assert waited.returncode == 0, (waited.stdout, waited.stderr)
    assert "rollout of default/web complete: revision 2" in waited.stdout.splitlines(), waited.stdout

    manifest.write_text(web(["sh", "-c", "exit 3"], maxRestarts=1))  # every new replica fails fast
    failed = orch("apply", "-f", str(manifest), "--wait", "--timeout", "30")
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert "default/web: rolled back to revision 2 (held): NewReplicaFailed" in failed.stderr, failed.stderr
    assert commands_of(orch.wait_running("web")["web"]) == {("sleep", "61")}

    again = orch("apply", "-f", str(manifest), "--wait", "--timeout", "30")  # the same failed manifest: held
    assert again.returncode == 1, (again.stdout, again.stderr)
    assert "unchanged (held at rollout revision 2: the manifest's revision failed before (NewReplicaFailed)" \
        in again.stdout, again.stdout
    assert "default/web: held at rollout revision 2" in again.stderr, again.stderr
    status_now = orch("rollout", "status", "web")
    assert status_now.returncode == 1 and status_now.stdout.startswith("rolled back to revision 2 (held)")

    assert orch.ok("rollout", "retry", "web") == "default/web rolling toward the manifest's revision again\n"
    wait_for(lambda: orch.events("RolloutFailed", "web")[1:], timeout=30, what="the retried rollout to fail again")


def test_an_unknown_name_is_not_found(orch: Orchestrator) -> None:
    nobody = orch("rollout", "status", "web")  # no daemon yet
    assert nobody.returncode == NOT_FOUND and "no daemon is running" in nobody.stderr, nobody.stderr
    started(orch, web(replicas=1))
    for args, code in ((("status", "nope"), NOT_FOUND), (("status", "nope", "-w"), NOT_FOUND),
                       (("history", "nope"), REFUSED), (("undo", "nope"), REFUSED), (("pause", "nope"), REFUSED),
                       (("restart", "nope"), REFUSED)):
        result = orch("rollout", *args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert result.stderr == "orchestrator: no object named nope\n" and result.stdout == "", (args, result)
    missing = orch("rollout", "history", "web", "--revision", "7")
    assert missing.returncode == REFUSED and "has no rollout revision 7" in missing.stderr, missing.stderr
    usage = orch("rollout", "status")
    assert usage.returncode == 2 and "usage: orchestrator rollout status" in usage.stderr
