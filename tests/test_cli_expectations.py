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
from pathlib import Path

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


def _environment_of(pid: int) -> dict[str, str]:
    import psutil

    return dict(psutil.Process(pid).environ())


def test_replicas_get_the_same_environment_whichever_shell_started_the_daemon(orch: Orchestrator) -> None:
    """The daemon here is started by an apply from a shell with a virtual environment's PATH and exports of
    its own: its replicas and exec checks see none of that, only the fixed base, the manifest's env and the
    variables --pass-env / $ORCHESTRATOR_PASS_ENV name."""
    import pwd

    venv_bin = str(REPO / ".venv-of-the-shell" / "bin")
    shell = dict(os.environ, PATH=f"{venv_bin}:{os.environ['PATH']}", SECRET_OF_THE_SHELL="s3cr3t",
                 LC_TEST_PASSED="yes", VIRTUAL_ENV=str(REPO / ".venv-of-the-shell"))
    shell["ORCHESTRATOR_PASS_ENV"] = f"{shell.get('ORCHESTRATOR_PASS_ENV', '')},LC_TEST_*"
    seen = orch.root / "probe-env"
    manifest = orch.write("m/a.yaml", process(
        "a", ["sleep", "60"], env={"FROM_MANIFEST": "1"},
        probes={"readiness": {"exec": {"command": ["sh", "-c", f"env > {seen}.part && mv {seen}.part {seen}"]}, "periodSeconds": 1}}))
    applied = subprocess.run(orch.argv("apply", "-f", str(manifest)), env=shell, capture_output=True, text=True,
                             timeout=30, cwd=REPO, check=False)
    assert applied.returncode == 0, applied.stderr
    pid = orch.wait_running("a")["a"][0]
    env = _environment_of(pid)
    me = pwd.getpwuid(os.geteuid())
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (me.pw_dir, me.pw_name, me.pw_name)
    assert env["LANG"] == "C.UTF-8" and env["SHELL"]
    assert env["FROM_MANIFEST"] == "1" and env["LC_TEST_PASSED"] == "yes"
    assert (env["ORCH_NAME"], env["ORCH_NAMESPACE"], env["ORCH_REPLICA"]) == ("a", "default", "0")
    for leaked in ("SECRET_OF_THE_SHELL", "VIRTUAL_ENV", "ORCHESTRATOR_PASS_ENV", "NOTIFY_SOCKET", "XDG_CACHE_HOME"):
        assert leaked not in env, leaked
    probe_env = dict(line.split("=", 1) for line in wait_for(
        lambda: seen.exists() and seen.read_text(), what="the exec check's environment").splitlines() if "=" in line)
    assert probe_env["PATH"] == env["PATH"] and probe_env["FROM_MANIFEST"] == "1"
    assert "SECRET_OF_THE_SHELL" not in probe_env and "VIRTUAL_ENV" not in probe_env


def test_validate_says_each_problem_once_and_to_the_point(tmp_path: Path) -> None:
    manifest = tmp_path / "a.yaml"
    manifest.write_text(documents(process("a", resources={"limits": {"memory": "256MB", "cpu": "1.5 cores"}},
                                          probes={"readiness": {"htpp": {"port": 8080}}})))
    result = subprocess.run([*CLI, "validate", "-f", str(manifest)], capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-1] == "3 problems found", result.stderr
    memory = [line for line in lines if "spec.resources.limits.memory" in line]
    assert len(memory) == 1 and "write 256Mi or 256M" in memory[0], result.stderr
    assert len([line for line in lines if "spec.resources.limits.cpu" in line]) == 1, result.stderr
    probe = [line for line in lines if "spec.probes.readiness" in line]
    assert len(probe) == 1 and "unknown field 'htpp' (did you mean 'http'?)" in probe[0], result.stderr
    assert "pattern" not in result.stderr and "missing required field" not in result.stderr


def test_validate_warns_of_a_program_the_replicas_will_not_find(tmp_path: Path) -> None:
    """Valid all the same (exit 0): the host that runs the manifests may have it."""
    (tmp_path / "tool").write_text("#!/bin/sh\n")  # not executable
    manifest = tmp_path / "a.yaml"
    manifest.write_text(documents(
        process("web", ["gunicron", "app:app"]),
        process("tool", ["./tool"], hooks={"preStart": {"exec": ["./missing.sh"]}}),
        process("fine", ["sleep", "1"], hooks={"preStop": {"exec": ["sh", "-c", "true"]}}),
        process("own-path", ["mytool"], env={"PATH": str(tmp_path)}),
        process("scripted", ["gunicron app:app"], shell=True),
        process("per-replica", ["$(TOOL)"], env={"TOOL": "/bin/true"})))
    (tmp_path / "mytool").write_text("#!/bin/sh\n")
    (tmp_path / "mytool").chmod(0o755)
    result = subprocess.run([*CLI, "validate", "-f", str(manifest)], capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "valid: 6 objects in 1 file"
    warnings = result.stderr.splitlines()
    assert len(warnings) == 3, result.stderr
    assert "warning: spec.command[0]: 'gunicron' is not on the replicas' PATH" in warnings[0]
    assert "warning: spec.command[0]: './tool' is not executable" in warnings[1]
    assert "warning: spec.hooks.preStart.exec[0]: './missing.sh' does not exist" in warnings[2]
    as_json = subprocess.run([*CLI, "validate", "-f", str(manifest), "-o", "json"], capture_output=True, text=True,
                             timeout=30, check=False)
    report = json.loads(as_json.stdout)
    assert report["valid"] and [w["path"] for w in report["warnings"]] == [
        "spec.command[0]", "spec.command[0]", "spec.hooks.preStart.exec[0]"]


def test_stop_holds_a_process_stopped_through_applies_and_start_runs_it_again(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(
        process("db", labels={"tier": "data"}), process("api", replicas=2, labels={"tier": "web"},
                                                        dependsOn=[{"name": "db"}])))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("db", "api")
    assert orch.ok("stop", "-l", "tier=web").strip() == "default/api stopped"
    wait_for(lambda: not any(alive(pid) for pid in before["api"]), what="api's replicas to stop")
    api = orch.objects()["api"]
    assert api["state"] == "Stopped" and api["replicas"]["desired"] == 2 and api["replicas"]["running"] == 0
    assert [r["phase"] for r in api["replica_status"]] == ["Stopped", "Stopped"]
    assert "api" in orch.ok("get") and "Stopped" in orch.ok("get")
    stopping = [e["message"] for e in orch.events("Stopping", "api")]
    assert stopping and all("stop asked for" in m for m in stopping), stopping
    assert orch.running("db") == {"db": before["db"]}  # what it depends on is left alone

    # An apply of the same manifests, or of a changed spec, keeps the hold; restart is refused with the way out.
    again = orch.ok("apply", "-f", str(manifest))
    assert "process/default/api unchanged (stopped: `orchestrator start api` runs it)" in again
    manifest.write_text(documents(process("db", labels={"tier": "data"}),
                                  process("api", ["sleep", "61"], replicas=2, dependsOn=[{"name": "db"}])))
    assert "api configured (stopped" in orch.ok("apply", "-f", str(manifest))
    assert orch.objects()["api"]["state"] == "Stopped"
    refused = orch("restart", "api")
    assert refused.returncode == 1 and "api is stopped: `orchestrator start api` runs it again" in refused.stderr
    assert orch.ok("stop", "api").strip() == "default/api already stopped"
    orch.ok("rollback", "1")  # holds are the operator's: a rollback keeps them, as an apply does
    assert orch.objects()["api"]["state"] == "Stopped"

    # Held across a daemon's death (a revision, in the store), then started again with the new spec.
    daemon = orch.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon to die")
    # A new daemon; the spec was rolled back, so the manifest configures it again, still held.
    assert "api configured (stopped" in orch.ok("apply", "-f", str(manifest))
    assert orch.objects()["api"]["state"] == "Stopped"
    assert orch.ok("start", "api").strip() == "default/api started"
    after = orch.wait_running("db", "api", timeout=10)
    assert all(psutil_cmdline(pid) == ["sleep", "61"] for pid in after["api"])
    assert [r["action"] for r in orch.revisions()][:4] == ["start", "apply", "rollback", "apply"]
    job = orch.write("m/job.yaml", documents(
        "apiVersion: orchestrator/v1\nkind: Job\nmetadata: {name: once, labels: {tier: data}}\n"
        "spec: {command: [sleep, '30']}\n"))
    orch.ok("apply", "-f", str(job))
    refused = orch("stop", "once")
    assert refused.returncode == 1 and "is a Job" in refused.stderr
    assert orch.ok("stop", "-l", "tier=data").strip() == "default/db stopped"  # a selector picks no Job


def psutil_cmdline(pid: int) -> list[str]:
    import psutil

    return list(psutil.Process(pid).cmdline())
