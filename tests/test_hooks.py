"""Lifecycle hooks with real processes: preStart gates the start, postStart follows it, preStop precedes
the stop signal; each is bounded by its timeout."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import wait_for
from harness import Harness

from orchestrator.core.events import EventType
from orchestrator.core.model import Backoff, Hook, Hooks, ProcessSpec, ReplicaId, RestartPolicy, Shutdown


def proc(name: str, *command: str, **fields: object) -> ProcessSpec:
    fields.setdefault("backoff", Backoff(initial_seconds=0.1, max_seconds=0.1))
    fields.setdefault("shutdown", Shutdown("SIGTERM", 2))
    return ProcessSpec(name=name, command=command or ("sleep", "60"), **fields)  # type: ignore[arg-type]




def test_pre_start_runs_before_the_process(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "prepared"
    hooks = Hooks(pre_start=Hook(("sh", "-c", f"sleep 0.2; touch {marker}")))
    harness.apply([proc("app", "sh", "-c", f"test -e {marker} && exec sleep 60", hooks=hooks,
                        restart_policy=RestartPolicy.NEVER)])
    pid = wait_for(lambda: harness.pid("app"), what="app to start")
    cmdline = Path(f"/proc/{pid}/cmdline")
    wait_for(lambda: cmdline.read_bytes() == b"sleep\x0060\x00", what="app past its test")
    assert harness.of(EventType.HOOK_FAILED) == []


def test_a_spec_changed_while_its_pre_start_runs_starts_after_its_own_pre_start(harness: Harness,
                                                                                tmp_path: Path) -> None:
    log, gate = tmp_path / "hooks.log", tmp_path / "gate"
    # The first preStart passes only once the second spec has been applied: the order is fixed, not timed.
    first = Hooks(pre_start=Hook(("sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done; echo first >> {log}")))
    second = Hooks(pre_start=Hook(("sh", "-c", f"echo second >> {log}")))
    harness.apply([proc("app", "sleep", "60", hooks=first)])
    wait_for(lambda: harness.records().get(ReplicaId("default/app", 0)) and
             harness.records()[ReplicaId("default/app", 0)].hook, what="the first preStart to run")
    second_spec = proc("app", "sleep", "61", hooks=second)
    harness.apply([second_spec])
    wait_for(lambda: harness.query(lambda r: r.desired.specs.get("default/app") == second_spec),
             what="the second spec to be applied")
    gate.touch()
    pid = wait_for(lambda: harness.pid("app"), what="app to start")
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0061\x00"
    assert "second" in log.read_text().split(), "the changed spec started without its own preStart"


def test_failing_pre_start_fails_the_start_under_the_backoff(harness: Harness, tmp_path: Path) -> None:
    hooks = Hooks(pre_start=Hook(("sh", "-c", "exit 3")))
    harness.apply([proc("app", hooks=hooks)])
    wait_for(lambda: len(harness.of(EventType.HOOK_FAILED, "app")) >= 2, what="two failed starts")
    assert harness.of(EventType.STARTED, "app") == []
    first = harness.of(EventType.HOOK_FAILED, "app")[0].message
    assert first.startswith("preStart hook exited with code 3; restarting in 0.1 s"), first
    record = harness.records()[ReplicaId("default/app", 0)]
    assert record.last_exit is not None and record.last_exit.reason.value == "HookFailed"


def test_pre_start_past_its_timeout_is_killed(harness: Harness) -> None:
    hooks = Hooks(pre_start=Hook(("sleep", "60"), timeout_seconds=0.3))
    harness.apply([proc("app", hooks=hooks, restart_policy=RestartPolicy.NEVER)])
    failed = wait_for(lambda: harness.of(EventType.HOOK_FAILED, "app"), what="the hook to time out")[0]
    assert "preStart hook ran past its timeout" in failed.message
    assert harness.of(EventType.STARTED, "app") == []


def test_post_start_runs_once_the_process_is_up(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "announced"
    hooks = Hooks(post_start=Hook(("sh", "-c", f"echo $ORCH_NAME > {marker}")))
    harness.apply([proc("app", hooks=hooks)])
    wait_for(lambda: marker.exists() and marker.read_text() == "app\n", what="the postStart hook")
    assert harness.pid("app") is not None


def test_pre_stop_runs_before_the_stop_signal(harness: Harness, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    code = ("import signal, sys, time\n"
            f"def term(*_): open({str(trace)!r}, 'a').write('term\\n'); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, term)\nprint('up', flush=True)\ntime.sleep(60)")
    app = (sys.executable, "-c", code)
    hooks = Hooks(pre_stop=Hook(("sh", "-c", f"sleep 0.2; echo prestop >> {trace}")))
    harness.apply([proc("app", *app, hooks=hooks)])
    log = harness.log_dir / "default" / "app.0.log"
    wait_for(lambda: log.exists() and "up" in log.read_text(), what="app up")
    harness.apply([])
    wait_for(lambda: not harness.records(), what="app stopped and forgotten")
    assert trace.read_text().splitlines() == ["prestop", "term"]


def test_restart_during_pre_start_kills_the_running_hook(harness: Harness) -> None:
    hooks = Hooks(pre_start=Hook(("sleep", "30"), timeout_seconds=20))
    harness.apply([proc("app", hooks=hooks)])
    record = wait_for(lambda: (r := harness.records().get(ReplicaId("default/app", 0))) and r.hook and r,
                      what="the preStart hook to run")
    first_hook = record.hook.pid  # type: ignore[union-attr]
    harness.query(lambda r: r.restart("default/app"))
    wait_for(lambda: not Path(f"/proc/{first_hook}").exists()
             or Path(f"/proc/{first_hook}/stat").read_text().split()[2] == "Z", what="the first hook killed")
    second = wait_for(lambda: (r := harness.records().get(ReplicaId("default/app", 0))) and r.hook and r,
                      what="a new preStart hook")
    assert second.hook is not None and second.hook.pid != first_hook


def test_a_hook_killed_by_a_realtime_signal_leaves_the_loop_running(harness: Harness) -> None:
    hooks = Hooks(post_start=Hook(("sh", "-c", "kill -40 $$")))
    harness.apply([proc("app", hooks=hooks)])
    failed = wait_for(lambda: harness.of(EventType.HOOK_FAILED, "app"), what="the postStart hook to fail")[0]
    assert "killed by signal 40" in failed.message
    harness.apply([proc("app", hooks=hooks), proc("other")])
    wait_for(lambda: harness.pid("other"), what="the loop to go on")


def test_a_replica_killed_by_a_realtime_signal_is_restarted(harness: Harness) -> None:
    harness.apply([proc("app", "sh", "-c", "sleep 0.1; kill -40 $$")])
    exited = wait_for(lambda: harness.of(EventType.EXITED, "app"), what="app to exit")[0]
    assert "killed by signal 40" in exited.message
    wait_for(lambda: len(harness.of(EventType.STARTED, "app")) >= 2, what="app restarted")
