"""Any number of clients, and of first applies at once, against one state dir: all succeed, one daemon."""

# ruff: noqa: F811 - the fixture `orch` is imported from the module that defines it

from __future__ import annotations

import json
import signal
import subprocess
import threading

import psutil
from conftest import wait_for
from test_daemon import CLI, Orchestrator, documents, managed, orch, process  # noqa: F401

from orchestrator.cli.client import Client


def daemons_of(orch: Orchestrator) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "daemon" in cmdline and str(orch.state) in cmdline:
            found.append(proc)
    return found


def test_eight_first_applies_at_once_all_succeed_with_one_daemon(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a"), process("b", replicas=2)))
    children = [subprocess.Popen(orch.argv("apply", "-f", str(manifest)), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(child.wait(timeout=60), *child.communicate()) for child in children]
    assert [code for code, _, _ in results] == [0] * 8, results
    assert all("Traceback" not in err for _, _, err in results), results
    orch.wait_running("a", "b")
    # The daemons the other applies started find the lock taken and exit (they may still be starting now).
    wait_for(lambda: len(daemons_of(orch)) == 1, timeout=10, what="one daemon left")
    assert sorted(p.environ()["ORCH_NAME"] for p in managed()) == ["a", "b", "b"]


def test_thirty_clients_of_ten_requests_each_all_answered(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", process("a"))
    orch.ok("apply", "-f", str(manifest))
    orch.wait_running("a")
    failures: list[BaseException] = []
    answers: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(10):
            try:
                objects = Client(orch.state, timeout=30).request("GET", "/objects")["objects"]
                with lock:
                    answers.append(len(objects))
            except BaseException as error:  # noqa: BLE001 - counted, and the test fails naming it
                with lock:
                    failures.append(error)

    threads = [threading.Thread(target=client) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == [] and answers == [1] * 300


def test_a_follower_that_stops_reading_is_dropped_at_its_bound_and_the_emitter_never_waits() -> None:
    from orchestrator.core.events import Event, EventBus, EventType
    from orchestrator.daemon.control import OVERFLOW, event_queue_iterator

    bus = EventBus()
    events = event_queue_iterator(bus.subscribe, bus.unsubscribe, list, lambda e: e.to_json(),
                                  keepalive_seconds=0.01, capacity=100)
    assert next(events) is None  # subscribed (the first keep-alive): nothing came yet
    for index in range(10_000):  # a follower that reads nothing while the daemon emits
        bus.emit(Event(float(index), EventType.STARTED, "default/a", f"event {index}"))
    assert bus._subscribers == []  # dropped at its bound: the emitter no longer even offers it events
    received = [item for item in events if item is not None]
    assert received[-1] is OVERFLOW  # said last, so that a stream can tell its client it fell behind
    assert [item["message"] for item in received[:-1]] == [f"event {i}" for i in range(100)]


def test_events_w_streams_live_events_to_a_follower(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", process("a"))
    orch.ok("apply", "-f", str(manifest))
    before = orch.wait_running("a")["a"][0]
    follower = orch.popen("events", "-w", "-o", "json")
    try:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())  # the backlog comes first
        assert first["type"] == "Applied"
        orch.ok("restart", "a")
        seen = []
        while not any(e["type"] == "Started" and e["pid"] != before for e in seen):
            line = follower.stdout.readline()  # bounded by the test's timeout: a Started event comes
            assert line, "the stream ended"
            seen.append(json.loads(line))
    finally:
        follower.kill()
        follower.communicate()


def test_a_foreground_run_owns_its_state_dir_serves_the_api_and_nothing_starts_a_second_copy(
        orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", process("a"))
    running = orch.popen("run", "-f", str(manifest))
    try:
        wait_for(lambda: len(managed("a")) == 1, timeout=10, what="the run's process")
        wait_for(orch.answers, timeout=10, what="the run's socket")
        for args in (("run", "-f", str(manifest)), ("daemon",)):
            refused = orch(*args)
            assert refused.returncode == 1 and "Traceback" not in refused.stderr, (args, refused)
            assert f"(pid {running.pid})" in refused.stderr, (args, refused.stderr)
        # The run serves the daemon's API: an apply goes to it, and changes nothing that is the same.
        assert orch.ok("apply", "-f", str(manifest)).strip() == "process/default/a unchanged"
        assert orch.api("GET", "/health")["pid"] == running.pid
        assert "a" in orch.ok("get") and "Running" in orch.ok("describe", "a")
        assert len(managed("a")) == 1  # still exactly one copy
        orch.ok("apply", "-f", str(orch.write("m/b.yaml", process("b"))))  # what a user adds runs in the run
        orch.wait_running("a", "b")
        orch.ok("shutdown")  # stops everything, and the run with it
        assert running.wait(timeout=30) == 0
    finally:
        if running.poll() is None:
            running.send_signal(signal.SIGTERM)
        running.communicate(timeout=30)
    assert managed("a") == [] and managed("b") == []
    # A daemon started on the state dir afterwards starts nothing of what the run ran.
    orch.ok("apply", "-f", str(orch.write("n/c.yaml", process("c"))))
    orch.wait_running("c")
    assert set(orch.objects()) == {"c"}


def test_a_run_killed_with_sigkill_leaves_its_processes_to_the_next_run(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", process("a", replicas=2))
    first = orch.popen("run", "-f", str(manifest))
    try:
        wait_for(lambda: len(managed("a")) == 2, timeout=10, what="the run's processes")
        wait_for(orch.answers, timeout=10, what="the run's socket")
        pids = sorted(p.pid for p in managed("a"))
        first.kill()
        first.communicate(timeout=30)
        assert sorted(p.pid for p in managed("a")) == pids  # nothing lost with it
        second = orch.popen("run", "-f", str(manifest))
        wait_for(orch.answers, timeout=10, what="the second run's socket")
        adopted = wait_for(lambda: len(orch.events("Adopted", "a")) == 2 and orch.events("Adopted", "a"),
                           timeout=10, what="both adopted")
        assert sorted(int(e["pid"]) for e in adopted) == pids  # adopted, not started a second time
        assert sorted(p.pid for p in managed("a")) == pids
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=30) == 0
        assert managed("a") == []
    finally:
        for popen in orch.popens:
            if popen.poll() is None:
                popen.kill()
