"""The priority job queue with real Jobs (daemon/queues.py over planning/admission.py): admission order
recorded by the Jobs themselves, a Critical Job that freezes a Low one (its CPU time stops, psutil says
stopped) and thaws it after, output intact; Requeue; `orchestrator queue` in order with reasons."""

# ruff: noqa: F811 - pytest fixtures imported from test_daemon are redefined as arguments

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import wait_for
from test_daemon import Orchestrator, orch  # noqa: F401 - orch is a fixture

pytestmark = pytest.mark.timeout(120)


def queue(name: str, **spec: Any) -> str:
    return (f"apiVersion: orchestrator/v1\nkind: Queue\nmetadata: {{name: {name}}}\n"
            f"spec: {json.dumps(spec)}\n")


def job(name: str, command: list[str], queue_name: str, priority: str = "Normal", cpu: str = "1", **spec: Any) -> str:
    body = {"command": command, "queue": queue_name, "priorityClass": priority,
            "resources": {"requests": {"cpu": cpu}}, "shutdown": {"timeoutSeconds": 0.5}, **spec}
    return f"apiVersion: orchestrator/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec: {json.dumps(body)}\n"


def recorder(log: Path, name: str, seconds: float) -> list[str]:
    """A Job that notes when it starts and ends, busy (so that its CPU time grows) for `seconds`."""
    script = (f"import time\nopen({str(log)!r}, 'a').write('start {name} %f\\n' % time.time())\n"
              f"end = time.process_time() + {seconds}\n"
              "while time.process_time() < end: pass\n"
              f"open({str(log)!r}, 'a').write('end {name} %f\\n' % time.time())\nprint('done {name}')")
    return ["python3", "-c", script]


def events_of(log: Path) -> list[tuple[str, str]]:
    try:
        return [(line.split()[0], line.split()[1]) for line in log.read_text().splitlines()]
    except FileNotFoundError:
        return []


def pid_of(orch: Orchestrator, name: str) -> int | None:
    for document in orch.api("GET", "/objects")["objects"]:
        if document["name"] == name:
            return document["replica_status"][0]["pid"]  # type: ignore[no-any-return]
    return None


def test_admission_order_and_a_critical_job_freezes_a_low_one(orch: Orchestrator, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    docs = [queue("batch", maxConcurrent=2, preemption="Suspend"),
            job("low1", recorder(log, "low1", 3), "batch", "Low"),
            job("normal", recorder(log, "normal", 3), "batch", "Normal"),
            job("low2", recorder(log, "low2", 0.3), "batch", "Low")]
    orch.write("m/queue.yaml", "---\n".join(docs))
    orch.ok("apply", "-f", str(orch.root / "m"))
    # Two slots, one apply: by priority, then arrival (then name): normal and low1 run, low2 waits.
    wait_for(lambda: {n for w, n in events_of(log) if w == "start"} == {"low1", "normal"}, timeout=15,
             what="normal and low1 started, low2 not")
    shown = json.loads(orch.ok("queue", "batch", "-o", "json"))["queues"][0]["jobs"]
    assert [(j["key"], j["state"]) for j in shown][-1] == ("default/low2", "Waiting"), shown
    assert "maxConcurrent" in shown[-1]["reason"] or "runs" in shown[-1]["reason"], shown
    running = ["default/low1"]
    # A Critical Job arrives while two run: one Low one is frozen for it.
    victims = running
    orch.write("m/critical.yaml", job("urgent", recorder(log, "urgent", 0.5), "batch", "Critical"))
    before = time.monotonic()
    orch.ok("apply", "-f", str(orch.root / "m"))

    def frozen() -> str | None:
        for key in victims:
            pid = pid_of(orch, key.split("/")[1])
            if pid is not None and psutil.Process(pid).status() == psutil.STATUS_STOPPED:
                return key
        return None

    victim = wait_for(frozen, timeout=10, what="a Low Job frozen (SIGSTOP) for the Critical one")
    pid = pid_of(orch, victim.split("/")[1])
    assert pid is not None
    first = psutil.Process(pid).cpu_times()
    time.sleep(0.3)  # (measured: a frozen Job's CPU time does not grow)
    later = psutil.Process(pid).cpu_times()
    assert later.user + later.system - (first.user + first.system) < 0.02
    assert time.monotonic() - before < 10
    wait_for(lambda: ("end", "urgent") in events_of(log), timeout=20, what="the Critical Job done")
    # Thawed after, and it completes with its output intact.
    wait_for(lambda: ("end", victim.split("/")[1]) in events_of(log), timeout=30, what="the frozen Job completed")
    out = orch.ok("logs", victim.split("/")[1])
    assert f"done {victim.split('/')[1]}" in out
    events = orch.api("GET", "/events")["events"]
    assert any(e["type"] == "Preempted" and e["object"] == victim for e in events)
    assert any(e["type"] == "Resumed" and e["object"] == victim for e in events)
    wait_for(lambda: ("end", "normal") in events_of(log), timeout=30, what="every Job done")


def test_a_job_waits_with_its_reason_and_never_exceeds_max_concurrent(orch: Orchestrator, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    docs = [queue("one", maxConcurrent=1)] + [job(f"j{i}", recorder(log, f"j{i}", 0.4), "one") for i in range(3)]
    orch.write("m/q.yaml", "---\n".join(docs))
    orch.ok("apply", "-f", str(orch.root / "m"))
    def listed() -> str | None:
        text = orch.ok("queue")
        return text if "Waiting" in text and "Running" in text else None

    text = wait_for(listed, timeout=10, what="a running and a waiting Job listed")
    assert "queue one: maxConcurrent 1" in text and "Running" in text
    wait_for(lambda: sum(1 for w, _ in events_of(log) if w == "end") == 3, timeout=30, what="all three done")
    lines = log.read_text().splitlines()
    open_now = 0
    for line in lines:  # never two at once
        open_now += 1 if line.startswith("start") else -1
        assert open_now <= 1, lines
    missing = orch("queue", "nope")
    assert missing.returncode == 1 and "no Queue nope" in missing.stderr


def test_a_frozen_job_that_is_deleted_ends_at_once(orch: Orchestrator, tmp_path: Path) -> None:
    """A stop of a frozen Job thaws it, so that its SIGTERM is not left pending until the kill timeout."""
    log = tmp_path / "runs"
    docs = [queue("solo", maxConcurrent=1, preemption="Suspend"), job("slow", recorder(log, "slow", 60), "solo", "Low",
                                                                   shutdown={"timeoutSeconds": 30})]
    orch.write("m/q.yaml", "---\n".join(docs))
    orch.ok("apply", "-f", str(orch.root / "m"))
    wait_for(lambda: ("start", "slow") in events_of(log), timeout=15, what="the Low Job started")
    pid = pid_of(orch, "slow")
    assert pid is not None
    orch.write("m/urgent.yaml", job("urgent", ["sleep", "60"], "solo", "Critical"))
    orch.ok("apply", "-f", str(orch.root / "m"))
    wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, timeout=10, what="the Low Job frozen")
    started = time.monotonic()
    orch.ok("delete", "slow", "urgent")
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             timeout=10, what="the frozen Job gone")
    assert time.monotonic() - started < 3  # not the kill timeout of a signal left pending


def test_requeue_stops_the_lower_job_and_runs_it_again_from_the_start(orch: Orchestrator, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    docs = [queue("rq", maxConcurrent=1, preemption="Requeue"), job("low", recorder(log, "low", 2), "rq", "Low")]
    orch.write("m/q.yaml", "---\n".join(docs))
    orch.ok("apply", "-f", str(orch.root / "m"))
    wait_for(lambda: ("start", "low") in events_of(log), timeout=15, what="the Low Job started")
    first = pid_of(orch, "low")
    orch.write("m/urgent.yaml", job("urgent", recorder(log, "urgent", 0.3), "rq", "Critical"))
    orch.ok("apply", "-f", str(orch.root / "m"))
    wait_for(lambda: ("end", "urgent") in events_of(log), timeout=20, what="the Critical Job done")
    wait_for(lambda: ("end", "low") in events_of(log), timeout=30, what="the Low Job run again, to its end")
    order = events_of(log)
    assert order.index(("start", "urgent")) > order.index(("start", "low"))
    assert [e for e in order if e == ("start", "low")] == [("start", "low")] * 2, order  # from the start again
    assert order.index(("end", "urgent")) < order.index(("end", "low"))
    assert first is not None and not psutil.pid_exists(first)
    described = json.loads(orch.ok("describe", "low", "-o", "json"))
    assert described["state"] == "Succeeded", described["state"]  # the requeue was not a failure


def test_a_job_past_its_active_deadline_is_stopped_and_failed_with_deadline_exceeded(
        orch: Orchestrator, tmp_path: Path) -> None:
    body = {"command": ["sleep", "60"], "activeDeadlineSeconds": 1.5, "backoffLimit": 5,
            "shutdown": {"timeoutSeconds": 5}}
    orch.write("m/deadline.yaml", f"apiVersion: orchestrator/v1\nkind: Job\nmetadata: {{name: capped}}\n"
                                  f"spec: {json.dumps(body)}\n")
    started = time.monotonic()
    orch.ok("apply", "-f", str(orch.root / "m"))
    pid = wait_for(lambda: pid_of(orch, "capped"), timeout=10, what="the Job running")
    described = wait_for(lambda: (d := json.loads(orch.ok("describe", "capped", "-o", "json")))["state"] == "Failed"
                         and d, timeout=15, what="the Job Failed")
    took = time.monotonic() - started
    assert 1.5 <= took < 6, took  # at its deadline (SIGTERM ends sleep at once), not at 60 s
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    status = described["replica_status"][0]
    assert status["last_exit"]["reason"] == "DeadlineExceeded", status
    assert status["reason"].startswith("DeadlineExceeded"), status  # and not retried, backoffLimit 5 or not
    events = orch.api("GET", "/events")["events"]
    assert any(e["type"] == "Stopping" and "activeDeadlineSeconds" in e["message"] for e in events), events
    assert sum(1 for e in events if e["type"] == "Started" and e["object"] == "default/capped") == 1


def test_time_frozen_by_its_queue_does_not_count_against_a_jobs_deadline(orch: Orchestrator, tmp_path: Path) -> None:
    """2.5 s of work under a 4 s deadline, frozen for about 3 s in between: more than 4 s pass, it succeeds."""
    log = tmp_path / "runs"
    docs = [queue("solo", maxConcurrent=1, preemption="Suspend"),
            job("low", recorder(log, "low", 2.5), "solo", "Low", activeDeadlineSeconds=4)]
    orch.write("m/q.yaml", "---\n".join(docs))
    orch.ok("apply", "-f", str(orch.root / "m"))
    wait_for(lambda: ("start", "low") in events_of(log), timeout=15, what="the Low Job started")
    started = time.monotonic()
    pid = pid_of(orch, "low")
    assert pid is not None
    orch.write("m/urgent.yaml", job("urgent", recorder(log, "urgent", 3), "solo", "Critical"))
    orch.ok("apply", "-f", str(orch.root / "m"))
    wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, timeout=10, what="the Low Job frozen")
    described = wait_for(lambda: (d := json.loads(orch.ok("describe", "low", "-o", "json")))["state"]
                         in ("Succeeded", "Failed") and d, timeout=40, what="the Low Job done")
    assert time.monotonic() - started > 4  # its deadline would have passed, had frozen time counted
    assert described["state"] == "Succeeded", described["replica_status"]
    assert ("end", "low") in events_of(log)
