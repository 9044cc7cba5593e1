"""The reconciler with real processes and real signals, waiting on conditions with deadlines."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import time
from pathlib import Path

import psutil
from conftest import wait_for
from harness import Harness

from orchestrator.core.events import EventType
from orchestrator.core.model import Backoff, Condition, Dependency, Kind, ProcessSpec, RestartPolicy, Shutdown

FAST = Backoff(initial_seconds=0, max_seconds=0)


def proc(name: str, *command: str, **fields: object) -> ProcessSpec:
    fields.setdefault("backoff", FAST)
    fields.setdefault("shutdown", Shutdown("SIGTERM", 2))
    return ProcessSpec(name=name, command=command or ("sleep", "60"), **fields)  # type: ignore[arg-type]




def test_killed_child_is_respawned(harness: Harness) -> None:
    harness.apply([proc("api")])
    first = wait_for(lambda: harness.pid("api"), what="api to start")
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (p := harness.pid("api")) and p != first and p, what="api to be respawned")
    assert psutil.Process(second).cmdline() == ["sleep", "60"]
    exited = harness.of(EventType.EXITED, "api")[0]
    assert "killed by SIGKILL (Killed); restarting now" in exited.message
    record = next(iter(harness.records().values()))
    assert record.restarts == 1 and record.last_exit is not None and record.last_exit.signal == signal.SIGKILL


def test_on_failure_restarts_failures_but_not_success(harness: Harness) -> None:
    harness.apply([
        proc("ok", "sh", "-c", "exit 0", restart_policy=RestartPolicy.ON_FAILURE),
        proc("bad", "sh", "-c", "sleep 0.05; exit 1", restart_policy=RestartPolicy.ON_FAILURE),
    ])
    wait_for(lambda: len(harness.of(EventType.STARTED, "bad")) >= 3, what="bad to be restarted twice")
    assert len(harness.of(EventType.STARTED, "ok")) == 1
    assert "succeeded, not restarted" in harness.of(EventType.EXITED, "ok")[0].message
    phases = harness.query(lambda r: {str(k): w.phase.value for k, w in r.waiting.items()})
    assert phases["default/ok[0]"] == "Succeeded"


def test_never_leaves_a_failure_down(harness: Harness) -> None:
    harness.apply([proc("once", "sh", "-c", "exit 4", restart_policy=RestartPolicy.NEVER)])
    wait_for(lambda: harness.of(EventType.EXITED, "once"), what="once to exit")
    phases = wait_for(lambda: harness.query(lambda r: {str(k): w.phase.value for k, w in r.waiting.items()}))
    assert phases == {"default/once[0]": "Failed"}
    assert "exited with code 4 (Error); failed, not restarted" in harness.of(EventType.EXITED, "once")[0].message
    assert len(harness.of(EventType.STARTED, "once")) == 1


def test_crash_loop_follows_the_backoff(harness: Harness) -> None:
    backoff = Backoff(initial_seconds=0.05, multiplier=2, max_seconds=0.4)
    harness.apply([proc("crash", "sh", "-c", "exit 1", backoff=backoff)])
    wait_for(lambda: len(harness.of(EventType.STARTED, "crash")) >= 6, timeout=10, what="six starts")
    starts = [e.at for e in harness.of(EventType.STARTED, "crash")][:6]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    planned = [0.05, 0.1, 0.2, 0.4, 0.4]
    for gap, delay in zip(gaps, planned):
        assert delay <= gap < delay + 0.5, (gaps, planned)  # never early; late only by the machine's load
    backoffs = harness.query(lambda r: [w.phase.value for w in r.waiting.values()])
    assert backoffs in ([], ["BackOff"])


def test_max_restarts_marks_failed(harness: Harness) -> None:
    harness.apply([proc("flap", "sh", "-c", "exit 1", max_restarts=2, restart_window_seconds=30)])
    wait_for(lambda: any("maxRestarts 2" in e.message for e in harness.of(EventType.EXITED, "flap")),
             what="flap to give up")
    assert len(harness.of(EventType.STARTED, "flap")) == 3
    assert harness.query(lambda r: [w.phase.value for w in r.waiting.values()]) == ["Failed"]


def test_missing_binary_is_an_event_and_follows_the_policy(harness: Harness) -> None:
    harness.apply([
        proc("ghost", "/nonexistent/binary", backoff=Backoff(initial_seconds=0.05, max_seconds=0.05)),
        proc("fine"),
    ])
    wait_for(lambda: len(harness.of(EventType.START_FAILED, "ghost")) >= 3, what="ghost retried")
    event = harness.of(EventType.START_FAILED, "ghost")[0]
    assert event.message.startswith("command not found: /nonexistent/binary; restarting in 0.05 s")
    assert harness.pid("fine") is not None


def test_missing_working_dir_is_named(harness: Harness, tmp_path: Path) -> None:
    harness.apply([proc("lost", working_dir=str(tmp_path / "nowhere"), restart_policy=RestartPolicy.NEVER)])
    event = wait_for(lambda: harness.of(EventType.START_FAILED, "lost"))[0]
    assert f"working directory not found: {tmp_path / 'nowhere'}" in event.message


def test_changed_spec_restarts_only_that_process(harness: Harness) -> None:
    specs = [proc(f"p{i}") for i in range(4)]
    harness.apply(specs)
    wait_for(lambda: all(harness.pid(f"p{i}") for i in range(4)), what="all four running")
    before = {i: harness.pid(f"p{i}") for i in range(4)}
    changed = [*specs[:3], proc("p3", "sleep", "61")]
    harness.apply(changed)
    wait_for(lambda: (p := harness.pid("p3")) and p != before[3], what="p3 restarted")
    after = {i: harness.pid(f"p{i}") for i in range(4)}
    assert {i: after[i] for i in range(3)} == {i: before[i] for i in range(3)}
    assert harness.of(EventType.STOPPING, "p3")[0].message.startswith("its spec changed: sent SIGTERM")


def test_labels_only_change_restarts_nothing(harness: Harness) -> None:
    harness.apply([proc("api")])
    pid = wait_for(lambda: harness.pid("api"))
    harness.apply([proc("api", labels=(("tier", "web"),))])
    harness.query(lambda r: None)  # one full pass after the apply
    assert harness.pid("api") == pid and harness.of(EventType.STOPPING) == []


def test_scale_up_and_down(harness: Harness) -> None:
    harness.apply([proc("web", replicas=3)])
    wait_for(lambda: all(harness.pid("web", i) for i in range(3)), what="three replicas")
    keep = harness.pid("web", 0)
    harness.apply([proc("web", replicas=1)])
    wait_for(lambda: len(harness.records()) == 1, what="scale down to one")
    assert harness.pid("web", 0) == keep


def test_dependents_wait_for_a_completed_job(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "migrated"
    harness.apply([
        proc("db"),
        proc("migrate", "sh", "-c", f"sleep 0.2; touch {marker}", kind=Kind.JOB, depends_on=(Dependency("db"),)),
        proc("api", "sh", "-c", f"test -e {marker} && exec sleep 60",
             depends_on=(Dependency("migrate", Condition.COMPLETED),), restart_policy=RestartPolicy.NEVER),
    ])
    api = wait_for(lambda: harness.pid("api"), what="api to start")
    wait_for(lambda: psutil.Process(api).cmdline() == ["sleep", "60"], what="api to exec sleep")
    started = {e.key.split("/")[1]: e.at for e in harness.events if e.type is EventType.STARTED}
    assert started["db"] <= started["migrate"] <= started["api"]
    assert harness.of(EventType.WAITING, "api")


def test_shutdown_stops_in_reverse_order_and_kills_what_ignores_sigterm(harness: Harness) -> None:
    stubborn = [sys.executable, "-c",
                ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
                "time.sleep(60)")]
    harness.apply([
        proc("db", *stubborn, shutdown=Shutdown("SIGTERM", 0.3)),
        proc("api", depends_on=(Dependency("db"),)),
    ])
    wait_for(lambda: harness.pid("api"), what="api up")
    log = harness.log_dir / "default" / "db.0.log"
    wait_for(lambda: log.exists() and "up" in log.read_text(), what="db to ignore SIGTERM")
    harness.reconciler.post(lambda r: r.shut_down())
    harness.thread.join(10)
    assert not harness.thread.is_alive()
    order = [(e.type, e.key) for e in harness.events if e.type in (EventType.STOPPING, EventType.KILLING)]
    assert order == [(EventType.STOPPING, "default/api"), (EventType.STOPPING, "default/db"),
                     (EventType.KILLING, "default/db")]
    stop_at = next(e.at for e in harness.events if e.type is EventType.STOPPING and e.key == "default/db")
    kill_at = harness.of(EventType.KILLING, "db")[0].at
    assert 0.3 <= kill_at - stop_at < 2.0


def test_the_whole_process_group_ends_with_its_replica(harness: Harness) -> None:
    harness.apply([proc("tree", "sh", "-c", "sleep 60 & sleep 60 & wait", restart_policy=RestartPolicy.NEVER)])
    pid = wait_for(lambda: harness.pid("tree"))
    children = wait_for(lambda: len(kids := psutil.Process(pid).children()) == 2 and kids, what="two grandchildren")
    os.kill(pid, signal.SIGKILL)  # only the leader dies: the group must not outlive it
    wait_for(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
             what="grandchildren to be killed")


def test_replica_output_goes_to_its_log_file(harness: Harness) -> None:
    harness.apply([proc("hello", "sh", "-c", "echo out $ORCH_REPLICA; echo err >&2", replicas=2,
                        restart_policy=RestartPolicy.NEVER, env=(("GREETING", "hi"),))])
    for index in (0, 1):
        log = harness.log_dir / "default" / f"hello.{index}.log"
        wait_for(lambda log=log: log.exists() and "err" in log.read_text(), what=f"log of replica {index}")
        assert log.read_text().splitlines() == [f"out {index}", "err"]
        assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_environment_and_working_dir_reach_the_child(harness: Harness, tmp_path: Path) -> None:
    harness.apply([proc("envy", "sh", "-c", "echo $GREETING $ORCH_NAME; pwd", working_dir=str(tmp_path),
                        env=(("GREETING", "hi"),), restart_policy=RestartPolicy.NEVER)])
    log = harness.log_dir / "default" / "envy.0.log"
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 2, what="envy output")
    assert log.read_text().splitlines() == ["hi envy", str(tmp_path)]


def test_log_files_are_rotated_past_max_bytes(tmp_path: Path) -> None:
    from orchestrator.core.model import LogPolicy

    h = Harness(tmp_path / "logs")
    h.reconciler.resync_seconds = 0.05
    try:
        h.apply([proc("chatty", sys.executable, "-c",
                      "import time\nfor i in range(100000):\n    print('x' * 99, flush=True); time.sleep(0.0005)",
                      logs=LogPolicy(max_bytes=2000, keep=2))])
        log = h.log_dir / "default" / "chatty.0.log"

        def first_copy() -> os.stat_result | None:
            # Rotation renames .1 to .2 before it copies the log to .1: between the two, .1 is missing.
            try:
                return log.with_name("chatty.0.log.1").stat() if log.with_name("chatty.0.log.2").exists() else None
            except FileNotFoundError:
                return None

        copy = wait_for(first_copy, what="two rotations")
        assert copy.st_size > 2000
        assert not log.with_name("chatty.0.log.3").exists()
        assert oct(copy.st_mode & 0o777) == "0o600"
    finally:
        h.close()


def test_a_fast_growing_log_is_rotated_as_it_grows(tmp_path: Path) -> None:
    from orchestrator.core.model import LogPolicy

    limit = 64 << 10
    h = Harness(tmp_path / "logs")  # the default resync (10 s): rotation must not wait for it
    try:
        # Quiet for 1.5 s (its log is then watched, not polled), then about 1 MiB/s: sixteen limits a second.
        h.apply([proc("flood", sys.executable, "-c",
                      "import sys, time\ntime.sleep(1.5)\nwhile True:\n    sys.stdout.write('y' * 1023 + '\\n')"
                      "; sys.stdout.flush()\n    time.sleep(0.001)", logs=LogPolicy(max_bytes=limit, keep=2))])
        log = h.log_dir / "default" / "flood.0.log"
        wait_for(lambda: log.with_name("flood.0.log.2").exists(), timeout=5, what="two rotations")
        largest, deadline = 0, time.monotonic() + 2.0
        while time.monotonic() < deadline:  # two seconds of sampling: the file never gets far past its limit
            with contextlib.suppress(FileNotFoundError):
                largest = max(largest, log.stat().st_size, log.with_name("flood.0.log.1").stat().st_size)
            time.sleep(0.005)
        assert 0 < largest <= 3 * limit, f"a log reached {largest} bytes with maxBytes {limit}"
    finally:
        h.close()


def test_a_start_that_raises_is_a_start_failure_and_the_loop_goes_on(harness: Harness) -> None:
    # A NUL byte cannot reach a manifest (validation refuses it) but the executor must not crash on one.
    harness.apply([proc("broken", env=(("A", "x\0y"),), backoff=Backoff(initial_seconds=0.2, max_seconds=0.2)),
                   proc("fine")])
    wait_for(lambda: len(harness.of(EventType.START_FAILED, "broken")) >= 2, what="broken retried under backoff")
    assert "embedded null byte" in harness.of(EventType.START_FAILED, "broken")[0].message
    assert harness.pid("fine") is not None and harness.thread.is_alive()


def test_a_failing_message_is_reported_and_the_loop_goes_on(harness: Harness) -> None:
    def broken(_: object) -> None:
        raise RuntimeError("boom")

    harness.reconciler.post(broken)
    harness.apply([proc("after")])
    wait_for(lambda: harness.pid("after"), what="the loop to go on")
    assert any("boom" in e.message for e in harness.of(EventType.INTERNAL_ERROR))


def test_dependents_restart_with_their_dependency_only_when_asked(harness: Harness) -> None:
    harness.apply([proc("db"), proc("follows", depends_on=(Dependency("db"),), restart_with_dependency=True),
                   proc("stays", depends_on=(Dependency("db"),))])
    pids = wait_for(lambda: all(harness.pid(n) for n in ("db", "follows", "stays"))
                    and {n: harness.pid(n) for n in ("db", "follows", "stays")}, what="all three")
    os.kill(pids["db"], signal.SIGKILL)
    wait_for(lambda: (p := harness.pid("follows")) and p != pids["follows"], what="follows restarted")
    assert harness.pid("stays") == pids["stays"]
    assert harness.of(EventType.STOPPING, "follows")[0].message.startswith("a dependency started anew: ")
