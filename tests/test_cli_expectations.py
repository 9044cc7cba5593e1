"""What a newcomer from kubectl, compose or PM2 takes for granted of the command line (issue 13, first part).

Real daemons driven through the CLI as subprocesses (the `orch` fixture of test_daemon).
"""

# ruff: noqa: F811 - the fixture `orch` is imported from the module that defines it

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from conftest import REPO, wait_for
from test_daemon import CLI, Orchestrator, alive, documents, managed, orch, process  # noqa: F401


def test_state_dir_may_follow_the_subcommand(orch: Orchestrator) -> None:
    orch.ok("apply", "-f", str(orch.write("m/a.yaml", process("a"))))
    orch.wait_running("a")
    after = subprocess.run([*CLI, "get", "--state-dir", str(orch.state), "-o", "json"], capture_output=True,
                           text=True, timeout=30, cwd=REPO, check=False)
    assert after.returncode == 0, after.stderr
    assert [o["name"] for o in json.loads(after.stdout)["objects"]] == ["a"]


def test_usage_errors_exit_2_with_the_reason(orch: Orchestrator) -> None:
    manifest = orch.write("m/a.yaml", process("a"))
    cases = {
        ("scale", "a", "--replicas", "-1"): "must be 0 or more, got -1",
        ("logs", "a", "--tail", "-3"): "must be 0 or more, got -3",
        ("delete",): "name what to delete",
        ("run", "-f", str(manifest), "--exit-code-from", "nosuch"): "--exit-code-from nosuch: no such object",
    }
    for args, reason in cases.items():
        result = orch(*args)
        assert result.returncode == 2, (args, result)
        assert reason in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    assert managed("a") == []  # the refused run started nothing


def test_a_graceful_stop_reads_as_one(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a"), process("b")))
    orch.ok("apply", "-f", str(manifest))
    orch.wait_running("a", "b")
    orch.ok("delete", "b")
    wait_for(lambda: orch.events("Exited", "b"), what="b stopped")
    [stopping] = orch.events("Stopping", "b")
    assert stopping["message"].startswith("no longer desired: sent SIGTERM"), stopping
    [exited] = orch.events("Exited", "b")
    assert exited["message"] == "stopped by SIGTERM", exited  # not "killed by SIGTERM (Killed)"

    orch.ok("shutdown")
    log = (orch.state / "daemon.log").read_text()  # the daemon's own output: its events, as they happened
    assert "default/a[0] Stopping: shutting down: sent SIGTERM" in log, log
    assert "default/a[0] Exited: stopped by SIGTERM" in log, log


def test_processes_left_by_a_killed_daemon_are_named_and_shutdown_stops_them(orch: Orchestrator) -> None:
    orch.ok("apply", "-f", str(orch.write("m/a.yaml", process("a", replicas=2))))
    pids = sorted(orch.wait_running("a")["a"])
    daemon = orch.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon gone")

    got = orch("get")
    assert got.returncode == 1 and "Traceback" not in got.stderr
    assert f"2 process(es) it started still run (pids {pids[0]}, {pids[1]})" in got.stderr, got.stderr
    assert "`orchestrator shutdown`" in got.stderr

    stopped = orch("shutdown")
    assert stopped.returncode == 0, stopped
    assert "starting one to stop the processes it left" in stopped.stdout
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=15, what="the left processes stopped")
    assert managed("a") == []


def test_label_selectors_and_order_are_kubectls(orch: Orchestrator) -> None:
    docs = [process("web", labels={"tier": "frontend"}), process("api", labels={"tier": "backend"}),
            process("cron"), process("db", labels={"tier": "backend", "disk": "ssd"})]
    orch.ok("apply", "-f", str(orch.write("m/all.yaml", documents(*docs))))
    orch.wait_running("web", "api", "cron", "db")

    def names(selector: str) -> list[str]:
        return [o["name"] for o in json.loads(orch.ok("get", "-l", selector, "-o", "json"))["objects"]]

    assert names("tier=backend") == ["api", "db"]  # by namespace, then name
    assert names("tier==backend") == ["api", "db"]
    assert names("tier!=backend") == ["cron", "web"]  # as Kubernetes: no such label matches too
    assert names("tier") == ["api", "db", "web"]
    assert names("!tier") == ["cron"]
    assert names("tier=backend,disk=ssd") == ["db"]
    assert [o["name"] for o in json.loads(orch.ok("get", "-o", "json"))["objects"]] == ["api", "cron", "db", "web"]
    refused = orch("get", "-l", "tier in (backend)")
    assert refused.returncode == 1 and "set-based terms (in, notin) are not supported" in refused.stderr


def test_every_event_line_carries_its_id_live_or_stored(orch: Orchestrator) -> None:
    orch.ok("apply", "-f", str(orch.write("m/a.yaml", process("a", ["/bin/sh", "-c", "exit 1"],
                                                              restartPolicy="Never"))))
    wait_for(lambda: orch.events("Exited", "a"), what="a ended")
    follower = orch.popen("events", "-w", "-o", "json")
    try:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())  # the backlog comes first
        assert isinstance(first["id"], int)
        orch.ok("restart", "a")  # live events from here on
        live = []
        while not any(e["type"] == "Exited" and e["id"] > first["id"] + 3 for e in live) and len(live) < 50:
            line = follower.stdout.readline()
            assert line, "the stream ended"
            live.append(json.loads(line))
    finally:
        follower.kill()
        follower.communicate()
    stored = {e["id"]: e for e in orch.api("GET", "/events")["events"]}
    for event in live:
        assert isinstance(event["id"], int), event
        assert stored[event["id"]]["message"] == event["message"]  # the id the store gave it too
    ids = [e["id"] for e in live]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    run = subprocess.run([*CLI, "--state-dir", str(orch.root / "run-state"), "run", "-o", "json",
                          "--exit-code-from", "a", "-f", str(orch.root / "m/a.yaml")],
                         capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines and all(isinstance(e["id"], int) for e in lines), run.stdout


def test_an_apply_that_starts_a_failed_process_again_says_so(orch: Orchestrator) -> None:
    manifest = orch.write("m/a.yaml", process("a", ["/bin/sh", "-c", "exit 3"], restartPolicy="Never"))
    orch.ok("apply", "-f", str(manifest))
    wait_for(lambda: orch.objects()["a"]["state"] == "Failed", what="a failed for good")
    again = orch.ok("apply", "-f", str(manifest))
    assert again.strip() == "process/default/a unchanged (it had failed: started again)"
    [restarting] = wait_for(lambda: orch.events("Restarting", "a"), what="the Restarting event saved")
    assert "failed for good, and applied again" in restarting["message"]
    wait_for(lambda: len(orch.events("Started", "a")) == 2, what="a started again")


def test_history_says_what_each_revision_changed_and_a_watch_keeps_the_commit(orch: Orchestrator) -> None:
    repo = orch.root / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git[:3], "init", "-q"], check=True, timeout=30)
    manifest = repo / "app.yaml"
    manifest.write_text(documents(process("a"), process("b")))
    subprocess.run([*git, "add", "."], check=True, timeout=30)
    subprocess.run([*git, "commit", "-qm", "first"], check=True, timeout=30)
    commit = subprocess.run([*git[:3], "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                            timeout=30).stdout.strip()
    orch.ok("apply", "--watch", "--prune", "-f", str(repo))
    orch.wait_running("a", "b")
    manifest.write_text(documents(process("a", ["sleep", "61"]), process("c")))
    wait_for(lambda: len(orch.revisions()) == 2, timeout=10, what="the watch's revision")
    newest, first = orch.revisions()
    assert first["message"] == "+a +b" and first["git_commit"] == commit
    assert newest["action"] == "watch" and newest["message"] == "~a +c -b", newest
    assert newest["git_commit"] == commit and newest["git_dirty"] is True  # an edit not committed yet
    assert "CHANGE" in orch.ok("history").splitlines()[0]


def test_logs_of_a_silent_python_program_say_why(orch: Orchestrator) -> None:
    import sys

    program = "import time\nprint('hello')\ntime.sleep(60)"  # block-buffered into its log file: nothing shows
    orch.ok("apply", "-f", str(orch.write("m/a.yaml", documents(
        # (An empty PYTHONUNBUFFERED is none: whatever the environment the daemon was started from says.)
        process("quiet", [sys.executable, "-c", program], env={"PYTHONUNBUFFERED": ""}),
        process("eager", [sys.executable, "-u", "-c", program])))))
    orch.wait_running("quiet", "eager")
    wait_for(lambda: orch.ok("logs", "eager").strip() == "hello", what="the unbuffered one's line")
    quiet = orch("logs", "quiet")
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert "python -u" in quiet.stderr and "PYTHONUNBUFFERED" in quiet.stderr
    assert "python -u" not in orch("logs", "eager").stderr


def test_get_by_namespace_and_restart_of_several(orch: Orchestrator) -> None:
    shop = process("api", labels={"tier": "backend"}).replace('metadata: {"name": "api"', 'metadata: {"name": "api", '
                                                                '"namespace": "shop"')
    docs = [shop, process("api", labels={"tier": "backend"}), process("db", labels={"tier": "backend"}),
            process("web")]
    orch.ok("apply", "-f", str(orch.write("m/all.yaml", documents(*docs))))
    before = orch.wait_running("api", "db", "web")

    def keys(*options: str) -> list[str]:
        return [o["key"] for o in json.loads(orch.ok("get", *options, "-o", "json"))["objects"]]

    assert keys("-n", "shop") == ["shop/api"]
    assert keys("-n", "default") == ["default/api", "default/db", "default/web"]
    assert keys("-A") == ["default/api", "default/db", "default/web", "shop/api"]
    assert orch("get", "-n", "shop", "-A").returncode == 2  # one or the other

    out = orch.ok("restart", "web", "default/web", "-l", "tier=backend")  # each once: names, then the selected
    assert out.splitlines() == ["default/web restarting (1 replica)", "default/api restarting (1 replica)",
                                "default/db restarting (1 replica)", "shop/api restarting (1 replica)"], out
    orch.wait_running("db", "web", replacing={"db": before["db"], "web": before["web"]})
    nothing = orch("restart", "-l", "tier=none")
    assert nothing.returncode == 2 and "selects nothing" in nothing.stderr


def test_validate_refuses_what_can_never_work(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def problems(*docs: str) -> list[str]:
        manifest = tmp_path / "m.yaml"
        manifest.write_text(documents(*docs))
        result = subprocess.run([*CLI, "validate", "-f", str(manifest)], capture_output=True, text=True,
                                timeout=30, cwd=REPO, check=False)
        assert result.returncode == 1, result
        return result.stderr.splitlines()

    lines = problems(process("api", ["python3 app.py"]))
    assert any("spec.command[0]: the program 'python3 app.py' holds a space: give each word its own item "
               "(['python3', 'app.py']), or set shell: true" in line for line in lines), lines
    lines = problems(
        process("db"),  # restartPolicy Always: it never completes
        process("once", restartPolicy="OnFailure"),  # may complete: waiting for it is fine
        process("api", dependsOn=[{"name": "db", "condition": "completed"}, {"name": "once", "condition": "completed"}]),
    )
    assert lines[-1] == "1 problem found", lines
    assert "spec.dependsOn[0].condition: default/api waits for db to complete, but db is restarted whenever it " \
           "exits (restartPolicy Always), so it never completes" in lines[0], lines


def test_diff_as_json_never_shows_env_values(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a", env={"TOKEN": "s3cret-one"}), process("b")))
    orch.ok("apply", "-f", str(manifest))
    orch.wait_running("a", "b")
    assert json.loads(orch.ok("diff", "-o", "json", "-f", str(manifest))) == {"changes": []}
    orch.write("m/app.yaml", documents(process("a", ["sleep", "61"], env={"TOKEN": "s3cret-two"}), process("c")))
    result = orch("diff", "--prune", "-o", "json", "-f", str(manifest))
    assert result.returncode == 1 and "s3cret" not in result.stdout, result
    changes = {c["key"]: c for c in json.loads(result.stdout)["changes"]}
    assert {k: c["change"] for k, c in changes.items()} == {"default/a": "configured", "default/b": "pruned",
                                                           "default/c": "created"}
    fields = {f["path"]: f for f in changes["default/a"]["fields"]}
    assert fields["spec.command"] == {"path": "spec.command", "live": ["sleep", "60"], "manifest": ["sleep", "61"]}
    assert fields["spec.env.TOKEN"] == {"path": "spec.env.TOKEN", "live": "<hidden>", "manifest": "<hidden>"}


def test_wait_for_ready_completed_and_deleted(orch: Orchestrator) -> None:
    slow = [sys.executable, "-c", "import time; time.sleep(0.5); print('done')"]
    orch.ok("apply", "-f", str(orch.write("m/app.yaml", documents(
        process("web"), process("job", slow, restartPolicy="Never"),
        process("bad", ["/bin/sh", "-c", "exit 3"], restartPolicy="Never")))))
    assert orch("wait", "web", "--for", "ready", "--timeout", "10").returncode == 0
    done = orch("wait", "job", "--for", "completed", "--timeout", "10")
    assert done.returncode == 0 and done.stdout.strip() == "default/job: completed", done
    failed = orch("wait", "bad", "--for", "completed", "--timeout", "10")
    assert failed.returncode == 1 and "default/bad: failed: replica 0 Failed" in failed.stderr, failed
    late = orch("wait", "web", "--for", "deleted", "--timeout", "0.3")
    assert late.returncode == 1 and "not deleted after 0.3 s" in late.stderr, late
    orch.ok("delete", "web")
    assert orch("wait", "web", "--for", "deleted", "--timeout", "10").returncode == 0
    assert orch("wait", "nosuch", "--for", "ready").returncode == 1


def test_manifests_on_standard_input(orch: Orchestrator) -> None:
    def piped(text: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "--state-dir", str(orch.state), *args], input=text, capture_output=True,
                              text=True, timeout=30, cwd=orch.root, check=False)

    bad = piped(process("a", replicas=-1), "validate", "-f", "-")
    assert bad.returncode == 1 and bad.stderr.startswith("<stdin>:"), bad.stderr
    applied = piped(documents(process("a"), process("b")), "apply", "-f", "-")
    assert applied.returncode == 0 and applied.stdout.splitlines() == ["process/default/a created",
                                                                       "process/default/b created"], applied
    orch.wait_running("a", "b")
    again = piped(documents(process("a"), process("b")), "diff", "-o", "json", "-f", "-")
    assert again.returncode == 0 and json.loads(again.stdout) == {"changes": []}, again
    refused = piped(process("a"), "apply", "--prune", "-f", "-")
    assert refused.returncode == 2 and "--prune needs manifest files or directories" in refused.stderr
