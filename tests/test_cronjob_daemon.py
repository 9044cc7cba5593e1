"""CronJobs end to end (daemon/cronjobs.py): real daemons, real runs (Jobs) on second-scale schedules, the CLI
(`cronjob list|trigger`, `get`, `describe`, `logs`, `apply`, `rollback`, `history`), and daemons killed and
started again.

Each run records itself in a file of the test (`start <time> <pid> <run name>` when it starts, `end ...` when
it ends), so that what ran when is read from the runs themselves, not from the daemon. Every wait is a
deadline (wait_for, or `quiet`: nothing happens before a deadline); every daemon and run is ended at teardown
(the `orch` fixture, and the `daemons` fixture for daemons started by hand)."""

# ruff: noqa: F811 - pytest fixtures imported from test_daemon are redefined as arguments

from __future__ import annotations

import itertools
import json
import math
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from test_daemon import Orchestrator, alive, orch, process  # noqa: F401 - orch is a fixture

from orchestrator.core.model import ReplicaId
from orchestrator.daemon.store import Store

pytestmark = pytest.mark.timeout(120)

NEVER = "0 0 1 1 *"  # once a year: a CronJob that only runs when triggered (within a test)


# --- manifests and what the runs recorded ----------------------------------------------------------------------

def cronjob(name: str, command: Sequence[str], labels: dict[str, str] | None = None, job: dict[str, Any] | None = None,
            **spec: Any) -> str:
    """One CronJob document (flow-style YAML) whose runs stop fast."""
    metadata = {"name": name, **({"labels": labels} if labels else {})}
    template = {"command": list(command), "shutdown": {"timeoutSeconds": 0.5}, **(job or {})}
    lines = ["apiVersion: orchestrator/v1", "kind: CronJob", f"metadata: {json.dumps(metadata)}", "spec:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in {**spec, "jobTemplate": template}.items()]
    return "\n".join(lines) + "\n"


def recorder(path: Path, seconds: float, then: str = "") -> list[str]:
    """A run that notes its start and (unless it is stopped) its end in `path`, sleeping `seconds` between."""
    note = f'echo "%s $(date +%%s.%%N) $$ $ORCH_NAME" >> {shlex.quote(str(path))}'
    return ["sh", "-c", f"{note % 'start'}; sleep {seconds}; {note % 'end'}; {then or 'true'}"]


@dataclass
class Run:
    name: str
    pid: int
    start: float
    end: float | None

    @property
    def scheduled(self) -> int:
        return int(self.name.rsplit("-", 1)[1])


def recorded(path: Path) -> list[Run]:
    """The runs noted in `path`, in the order they started."""
    runs: dict[str, Run] = {}
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        what, at, pid, name = line.split()
        if what == "start":
            runs[name] = Run(name, int(pid), float(at), None)
        elif name in runs:
            runs[name].end = float(at)
    return sorted(runs.values(), key=lambda run: run.start)


def runs_of(orch: Orchestrator, cronjob: str) -> dict[str, dict[str, Any]]:
    """The runs of `cronjob` that `get` shows, by name."""
    return {name: o for name, o in orch.objects().items() if o["labels"].get("orchestrator.cronjob") == cronjob}


def states(orch: Orchestrator, cronjob: str) -> dict[str, str]:
    return {name: o["state"] for name, o in runs_of(orch, cronjob).items()}


def listing(orch: Orchestrator, key: str) -> dict[str, Any]:
    """`cronjob list -o json`'s entry for `key`."""
    items = json.loads(orch.ok("cronjob", "list", "-o", "json"))["cronjobs"]
    return next(item for item in items if item["key"] == key)


def quiet(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """`condition` holds for `seconds` (polled): fail the moment it does not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), what
        time.sleep(0.05)


def sleep_until(moment: float) -> None:
    """Wait for a wall-clock time a schedule is computed from (a deadline, not a guess)."""
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.1))


def saved_pid(orch: Orchestrator, key: str) -> int | None:
    """The pid the state database holds for replica 0 of `key` (what a restarted daemon adopts)."""
    store = Store(orch.state / "state.db")
    try:
        record = store.load_records().get(ReplicaId(key, 0))
    finally:
        store.close()
    return None if record is None or record.process is None else record.process.pid


def apply(orch: Orchestrator, relative: str, *documents: str, prune: bool = False) -> str:
    path = orch.write(relative, "---\n".join(documents))
    return orch.ok("apply", *(["--prune"] if prune else []), "-f", str(path.parent if prune else path))


class Daemons:
    """`orchestrator daemon` on the orch state dir, started (and killed) as often as a test needs."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        self.orch.state.mkdir(parents=True, exist_ok=True)
        with open(self.orch.root / "daemon.out", "ab") as out:
            child = subprocess.Popen(self.orch.argv("daemon"), stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.children.append(child)
        wait_for(self.orch.answers, timeout=15, what="the daemon answering")
        return child

    def kill(self) -> None:
        child = self.children[-1]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)

    def close(self) -> None:
        try:
            self.orch.close()
        finally:
            for child in self.children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(timeout=5)


@pytest.fixture
def daemons(orch: Orchestrator) -> Iterator[Daemons]:
    made = Daemons(orch)
    try:
        yield made
    finally:
        made.close()


# --- 1. Forbid: no overlap, skipped times said ----------------------------------------------------------------

def test_forbid_never_overlaps_and_says_what_it_skipped(orch: Orchestrator, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    apply(orch, "m/cron.yaml", cronjob("nightly", recorder(log, 3), intervalSeconds=1, concurrencyPolicy="Forbid"))
    wait_for(lambda: len(recorded(log)) >= 3, timeout=16, what="three runs")
    entry = listing(orch, "default/nightly")  # the third runs for 3 s: it is active now
    runs = recorded(log)
    assert entry["active"] == [f"default/{runs[-1].name}"], entry
    assert entry["concurrency_policy"] == "Forbid" and entry["interval_seconds"] == 1
    assert time.time() - 1.5 < entry["last_schedule"] <= time.time() < entry["next_schedule"] <= time.time() + 1.1
    for earlier, later in itertools.pairwise(runs):
        assert earlier.end is not None and later.start >= earlier.end, (earlier, later)  # never two at once
        assert 2.9 < later.start - earlier.start < 4.8, runs  # one run per 3 to 4 s: the times between skipped
    skipped = orch.events("CronJobSkipped", "nightly")
    assert len(skipped) >= 4, skipped  # 2 or 3 due times while each run ran
    assert all("skipped" in e["message"] and "Forbid" in e["message"] for e in skipped)
    started = [e["message"].split()[1] for e in wait_for(
        lambda: orch.events("CronJobRun", "nightly")[len(runs) - 1:] and orch.events("CronJobRun", "nightly"),
        timeout=3, what="a CronJobRun event per run")][:len(runs)]
    assert started == [f"default/{run.name}:" for run in runs], started  # a CronJobRun event per run


# --- 2. Replace: the previous run is stopped when the next starts ---------------------------------------------

def test_replace_stops_the_previous_run_when_the_next_starts(orch: Orchestrator, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    apply(orch, "m/cron.yaml", cronjob("swap", recorder(log, 30), intervalSeconds=2, concurrencyPolicy="Replace"))
    most_running = 0
    deadline = time.monotonic() + 12
    while len(recorded(log)) < 3:
        assert time.monotonic() < deadline, f"three runs in 12 s: {recorded(log)}"
        running = [name for name, state in states(orch, "swap").items() if state == "Running"]
        most_running = max(most_running, len(running))
        time.sleep(0.02)
    runs = recorded(log)
    for earlier in runs[:-1]:
        wait_for(lambda pid=earlier.pid: not alive(pid), timeout=3, what=f"{earlier.name} (pid {earlier.pid}) stopped")
        assert earlier.end is None  # stopped, not ended on its own
    assert alive(runs[-1].pid)
    assert most_running == 1, most_running
    for earlier, later in itertools.pairwise(runs):
        assert 1.5 < later.start - earlier.start < 3, runs
    replaced = [e["message"] for e in orch.events("CronJobSkipped", "swap")]
    assert any(f"default/{runs[0].name} stopped: replaced" in m and "Replace" in m for m in replaced), replaced
    wait_for(lambda: len(runs_of(orch, "swap")) <= 4, timeout=3, what="the stopped runs kept per the history")


# --- 3. Allow: runs overlap ----------------------------------------------------------------------------------

def test_allow_lets_runs_overlap(orch: Orchestrator, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    apply(orch, "m/cron.yaml", cronjob("often", recorder(log, 3), intervalSeconds=1))
    wait_for(lambda: list(states(orch, "often").values()).count("Running") >= 2, timeout=8, what="two runs at once")
    runs = recorded(log)
    assert len(runs) >= 2 and (runs[0].end is None or runs[0].end > runs[1].start), runs
    assert 0.5 < runs[1].start - runs[0].start < 1.6, runs
    assert not orch.events("CronJobSkipped", "often")


# --- 4. History limits: finished runs pruned, with their logs ------------------------------------------------

def test_history_limits_keep_one_of_each_and_delete_the_logs_of_the_rest(orch: Orchestrator,
                                                                           tmp_path: Path) -> None:
    counter = tmp_path / "count"
    log = tmp_path / "runs"
    # Odd runs fail, even ones succeed; backoffLimit 0: a failed run is not tried again.
    then = (f'n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo "run $n"; '
            '[ $((n % 2)) -eq 0 ]')
    flaky = {"intervalSeconds": 1, "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1,
             "job": {"backoffLimit": 0}}
    apply(orch, "m/cron.yaml", cronjob("flaky", recorder(log, 0.1, then), **flaky))
    most = {"Succeeded": 0, "Failed": 0}
    deadline = time.monotonic() + 12
    while sum(run.end is not None for run in recorded(log)) < 5:  # each pass: what `get` shows never exceeds the limits
        assert time.monotonic() < deadline, f"five runs ended in 12 s: {recorded(log)}"
        now = list(states(orch, "flaky").values())
        most = {state: max(most[state], now.count(state)) for state in most}
        time.sleep(0.02)
    assert most == {"Succeeded": 1, "Failed": 1}, most
    apply(orch, "m/cron.yaml", cronjob("flaky", recorder(log, 0.1, then), suspend=True, **flaky))  # hold still
    wait_for(lambda: all(run.end is not None for run in recorded(log)), timeout=3, what="the last run ended")

    def one_of_each() -> dict[str, str] | None:
        got = states(orch, "flaky")
        return got if sorted(s for s in got.values() if s in most) == ["Failed", "Succeeded"] else None

    now = wait_for(one_of_each, timeout=3, what="one of each kept")
    assert len(now) == 2, now
    listed = orch.ok("get", "-l", "orchestrator.cronjob=flaky").splitlines()[1:]
    assert sorted(line.split()[0] for line in listed) == sorted(now), listed
    logs = orch.state / "logs" / "default"
    ended = [run for run in recorded(log) if run.end is not None]
    # The logs of the runs deleted are gone; those of the kept ones are there, with what they printed.
    gone = [run.name for run in ended if run.name not in states(orch, "flaky")]
    assert len(gone) >= 3, (ended, now)
    for name in gone:
        assert not list(logs.glob(f"{name}.*")), (name, sorted(p.name for p in logs.iterdir()))
    for name, state in now.items():
        if state in most:
            assert "run " in (logs / f"{name}.0.log").read_text(), name
            printed = orch.ok("logs", name)
            assert int(printed.split("run ")[1].split()[0]) % 2 == (0 if state == "Succeeded" else 1), printed
    entry = listing(orch, "default/flaky")
    assert entry["last_success"] is not None


# --- 5. Runs are Jobs, with their own logs, `describe`, and a label to select them -----------------------------

def test_a_run_is_a_job_with_its_own_logs_and_label(orch: Orchestrator) -> None:
    apply(orch, "m/cron.yaml", cronjob("report", ["sh", "-c", 'echo "hello from $ORCH_NAME"; echo oops >&2'],
                                       labels={"team": "ops"}, schedule=NEVER),
          process("bystander"))
    said = orch.ok("cronjob", "trigger", "report").strip()
    assert said.startswith("job/default/report-") and said.endswith(" created (from cronjob/default/report)")
    name = said.split()[0].split("/")[-1]
    wait_for(lambda: states(orch, "report").get(name) == "Succeeded", timeout=10, what=f"{name} Succeeded")
    logs = orch.ok("logs", name)
    assert f"hello from {name}" in logs and "oops" in logs, logs
    described = orch.ok("describe", name)
    assert name in described and "Succeeded" in described and "orchestrator.cronjob=report" in described, described
    (document,) = json.loads(orch.ok("get", name, "-o", "json"))["objects"]
    assert document["kind"] == "Job" and document["labels"] == {"orchestrator.cronjob": "report", "team": "ops"}
    selected = orch.ok("get", "-l", "orchestrator.cronjob=report").splitlines()
    assert [line.split()[0] for line in selected[1:]] == [name], selected
    assert "bystander" in orch.ok("get") and "bystander" not in "\n".join(selected)
    assert orch.ok("get", "-l", "orchestrator.cronjob=nope").strip() in ("", "No objects.", "No resources found.")


# --- 6. suspend: no runs; resumed, at most one catch-up -------------------------------------------------------

def test_suspended_runs_nothing_and_resumes_with_one_catch_up(orch: Orchestrator, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    document = {"intervalSeconds": 1.5}
    apply(orch, "m/cron.yaml", cronjob("paused", recorder(log, 0), suspend=True, **document))
    entry = listing(orch, "default/paused")
    assert entry["suspend"] is True and entry["next_schedule"] is None
    quiet(lambda: not recorded(log) and not runs_of(orch, "paused"), 5, "no run while suspended")
    resumed = time.time()
    apply(orch, "m/cron.yaml", cronjob("paused", recorder(log, 0), suspend=False, **document))
    [first] = wait_for(lambda: recorded(log), timeout=3, what="a run once resumed")
    assert first.scheduled <= resumed and first.start - resumed < 1.2, (first, resumed)  # a missed time, at once
    [missed] = wait_for(lambda: orch.events("MissedSchedule", "paused"), timeout=3, what="a MissedSchedule event")
    assert "only the last" in missed["message"], missed
    after = listing(orch, "default/paused")["next_schedule"]
    assert after > resumed
    quiet(lambda: len(recorded(log)) == 1, max(0.0, after - time.time() - 0.2), "no backlog replayed")
    wait_for(lambda: len(recorded(log)) >= 2, timeout=3, what="the next run on schedule")
    assert recorded(log)[1].start >= after - 0.01


# --- 7. the daemon down: one catch-up within the deadline, none past it, a run under way adopted ----------------

def test_a_daemon_down_catches_up_once_misses_past_the_deadline_and_adopts_a_run(daemons: Daemons,
                                                                                 tmp_path: Path) -> None:
    orch = daemons.orch
    logs = {name: tmp_path / name for name in ("catchup", "late", "long")}
    daemons.start()
    apply(orch, "m/cron.yaml",
          cronjob("catchup", recorder(logs["catchup"], 0), intervalSeconds=3, startingDeadlineSeconds=60),
          cronjob("late", recorder(logs["late"], 0), intervalSeconds=3, startingDeadlineSeconds=0.5),
          cronjob("long", recorder(logs["long"], 9), schedule=NEVER))
    first_due = listing(orch, "default/catchup")["next_schedule"]
    assert listing(orch, "default/late")["next_schedule"] == first_due  # applied together: the same anchor
    orch.ok("cronjob", "trigger", "long")
    [long_run] = wait_for(lambda: recorded(logs["long"]), timeout=5, what="the long run started")
    wait_for(lambda: saved_pid(orch, f"default/{long_run.name}") == long_run.pid, timeout=5,
             what="the long run's record saved")  # a run killed before it is saved is a stray, not adopted
    daemons.kill()
    killed = time.time()
    assert not recorded(logs["catchup"]) and not recorded(logs["late"])
    due = first_due + 3 * max(0, math.ceil((killed - first_due) / 3))  # the first due time missed
    sleep_until(due + 3 + 0.7)  # two due times missed, the last 0.7 s ago: past 0.5 s, within 60 s
    assert alive(long_run.pid)
    daemons.start()

    [caught] = wait_for(lambda: recorded(logs["catchup"]), timeout=5, what="the catch-up run")
    assert caught.scheduled == int(due + 3), (caught, due)  # the last missed time only
    [missed] = wait_for(lambda: orch.events("MissedSchedule", "late"), timeout=3, what="late's MissedSchedule")
    assert "missed 2 scheduled runs" in missed["message"] and "none runs" in missed["message"], missed
    [said] = wait_for(lambda: orch.events("MissedSchedule", "catchup"), timeout=3, what="catchup's MissedSchedule")
    assert "missed 1 scheduled run" in said["message"] and "only the last" in said["message"], said
    quiet(lambda: not recorded(logs["late"]) and len(recorded(logs["catchup"])) == 1,
          due + 6 - time.time() - 0.2, "no other run before the next due time")
    # Both go on with their schedule.
    wait_for(lambda: recorded(logs["late"]) and len(recorded(logs["catchup"])) == 2, timeout=3,
             what="the next due time run by both")
    assert [run.scheduled for run in recorded(logs["late"])] == [int(due + 6)]

    # The run under way was adopted: the same process, to its end, once.
    assert runs_of(orch, "long")[long_run.name]["replica_status"][0]["pid"] == long_run.pid
    assert [e["pid"] for e in orch.events("Adopted", long_run.name)] == [long_run.pid]
    wait_for(lambda: not alive(long_run.pid), timeout=10, what="the long run to end")
    [run] = recorded(logs["long"])
    assert run.end is not None and run.pid == long_run.pid
    wait_for(lambda: states(orch, "long").get(long_run.name) in ("Succeeded", "Failed"), timeout=3,
             what="the adopted run finished")
    assert len(orch.events("Started", long_run.name)) == 1  # by the first daemon only
    assert recorded(logs["long"]) == [run]


# --- 8. apply and rollback of other objects leave runs alone; no revision per run ---------------------------

def test_apply_and_rollback_leave_a_run_under_way_alone(orch: Orchestrator, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    apply(orch, "m/cron.yaml", cronjob("steady", recorder(log, 30), schedule=NEVER))
    orch.ok("cronjob", "trigger", "steady")
    [run] = wait_for(lambda: recorded(log), timeout=5, what="the run started")
    before = len(orch.revisions())
    created = runs_of(orch, "steady")[run.name]["created_at"]
    apply(orch, "m/app.yaml", process("app"))
    orch.wait_running("app")
    apply(orch, "m/app.yaml", process("app", ["sleep", "61"]))
    orch.ok("rollback")
    wait_for(lambda: (orch.running("app") or {}).get("app") and orch.objects()["app"]["command"] == ["sleep", "60"],
             timeout=5, what="app rolled back")
    orch.ok("cronjob", "trigger", "steady")
    wait_for(lambda: len(recorded(log)) == 2, timeout=5, what="a second run")
    assert alive(run.pid) and states(orch, "steady")[run.name] == "Running"
    assert runs_of(orch, "steady")[run.name]["replica_status"][0]["pid"] == run.pid
    assert not orch.events("Stopping", run.name)
    history = json.loads(orch.ok("history", "-o", "json"))["revisions"]
    assert len(history) == before + 3  # two applies and a rollback: the CronJob and its runs made none
    assert not any("steady" in json.dumps(r) for r in history), history
    assert runs_of(orch, "steady")[run.name]["created_at"] == created, "the run's age kept"


# --- 9. apply --prune forgets a CronJob: no more runs, its finished ones go, one under way ends on its own ---------

def test_prune_forgets_the_cronjob_and_its_runs_even_after_a_restart(orch: Orchestrator, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    apply(orch, "m/cron.yaml", cronjob("gone", recorder(log, 2.5), intervalSeconds=1, concurrencyPolicy="Forbid"))
    orch.write("m/app.yaml", process("app"))

    def finished_and_fresh() -> Run | None:
        now = states(orch, "gone")
        runs = recorded(log)
        fresh = runs[-1] if runs and runs[-1].end is None and time.time() - runs[-1].start < 1 else None
        return fresh if "Succeeded" in now.values() and fresh and saved_pid(orch, f"default/{fresh.name}") else None

    under_way = wait_for(finished_and_fresh, timeout=10, what="a finished run and a fresh one under way")
    # A daemon killed and started again still knows which file the CronJob came from.
    daemon = orch.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), what="the daemon dead")
    (orch.root / "m" / "cron.yaml").unlink()
    pruned = orch.ok("apply", "--prune", "-f", str(orch.root / "m"))  # a new daemon, which adopts the run
    assert "cronjob/default/gone pruned" in pruned, pruned
    started = len(recorded(log))
    assert alive(under_way.pid)
    assert list(states(orch, "gone")) == [under_way.name]  # the finished ones went at once
    assert json.loads(orch.ok("cronjob", "list", "-o", "json"))["cronjobs"] == []
    wait_for(lambda: not alive(under_way.pid), timeout=4, what=f"{under_way.name} to end on its own")
    assert all(run.end is not None for run in recorded(log))
    wait_for(lambda: not runs_of(orch, "gone"), timeout=3, what="the ended run gone too")
    assert not list((orch.state / "logs" / "default").glob("gone-*"))
    quiet(lambda: len(recorded(log)) == started, 1.5, "no run after the prune")
    assert not orch.events("Stopping", under_way.name)
    assert orch.running("app")


# --- 10. cronjob trigger ---------------------------------------------------------------------------------------

def test_trigger_starts_a_run_at_once_and_names_a_missing_cronjob(orch: Orchestrator, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    apply(orch, "m/cron.yaml", cronjob("manual", recorder(log, 0), schedule=NEVER))
    asked = time.time()
    said = orch.ok("cronjob", "trigger", "manual")
    [run] = wait_for(lambda: recorded(log), timeout=5, what="the triggered run")
    assert run.start - asked < 2 and said.split()[0] == f"job/default/{run.name}"
    [event] = wait_for(lambda: orch.events("CronJobRun", "manual"), timeout=3, what="the CronJobRun event")
    assert event["message"] == f"started default/{run.name}: triggered by hand"
    missing = orch("cronjob", "trigger", "nope")
    assert missing.returncode == 1 and "no CronJob nope" in missing.stderr, missing
    assert "Traceback" not in missing.stderr


def test_a_run_whose_dependency_is_missing_is_refused_alone(orch: Orchestrator, tmp_path: Path) -> None:
    """A jobTemplate whose dependsOn names no object: its run is not started (said), and nothing else is held
    up: other applies go on, and the daemon starts again."""
    apply(orch, "m/cron.yaml", cronjob("broken", ["true"], job={"dependsOn": [{"name": "missing"}]},
                                       schedule=NEVER))
    refused = orch("cronjob", "trigger", "broken")
    assert refused.returncode == 1 and "no run of default/broken could be started" in refused.stderr, refused
    [event] = wait_for(lambda: orch.events("CronJobSkipped", "broken"), timeout=5, what="the refusal's event")
    assert "not started" in event["message"] and "missing" in event["message"]
    apply(orch, "m/web.yaml", process("web"))  # an unrelated apply is not refused because of it
    orch.wait_running("web")
    orch.ok("shutdown")
    orch.ok("apply", "-f", str(orch.root / "m"))  # a new daemon starts, with the CronJob kept
    orch.wait_running("web")
    assert [c["key"] for c in json.loads(orch.ok("cronjob", "list", "-o", "json"))["cronjobs"]] == ["default/broken"]
