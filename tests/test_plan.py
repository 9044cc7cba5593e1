"""The planner as tables of (desired, records, now) cases, named after the transition they check."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.core.model import (
    Backoff,
    Condition,
    Dependency,
    DesiredState,
    Exit,
    Kind,
    Phase,
    ProcessIdentity,
    ProcessSpec,
    Reason,
    ReplicaId,
    ReplicaRecord,
    RestartPolicy,
    Shutdown,
)
from orchestrator.planning.graph import desired_state
from orchestrator.planning.plan import Forget, Kill, Start, Stop, StopReason, plan

NOW = 1000.0


def spec(name: str, *deps: str | Dependency, **fields: object) -> ProcessSpec:
    depends = tuple(d if isinstance(d, Dependency) else Dependency(d) for d in deps)
    return ProcessSpec(name=name, command=("sleep", "100"), depends_on=depends, **fields)  # type: ignore[arg-type]


def running(s: ProcessSpec, pid: int = 100, **fields: object) -> ReplicaRecord:
    return ReplicaRecord(spec=s, process=ProcessIdentity(pid, 1), started_at=NOW - 50, **fields)  # type: ignore[arg-type]


def exited(s: ProcessSpec, code: int | None = 1, at: float = NOW, ran: float = 1.0, **fields: object) -> ReplicaRecord:
    reason = Reason.COMPLETED if code in s.success_exit_codes else Reason.ERROR
    return ReplicaRecord(spec=s, last_exit=Exit(code, None, reason, at, ran), **fields)  # type: ignore[arg-type]


def rid(name: str, index: int = 0) -> ReplicaId:
    return ReplicaId(f"default/{name}", index)


def kinds(actions: tuple[object, ...]) -> list[tuple[str, str]]:
    return [(type(a).__name__, str(a.replica)) for a in actions]  # type: ignore[attr-defined]


def test_nothing_desired_nothing_running_plans_nothing() -> None:
    result = plan(DesiredState.empty(), {}, NOW)
    assert result.actions == () and result.waiting == () and result.wake_at is None


def test_new_specs_start_in_generation_order_with_priority_first() -> None:
    desired = desired_state([spec("api", "db"), spec("db"), spec("cache", priority=5), spec("low", priority=-1)])
    result = plan(desired, {}, NOW)
    assert kinds(result.actions) == [("Start", "default/cache[0]"), ("Start", "default/db[0]"),
                                     ("Start", "default/low[0]")]
    assert [(str(w.replica), w.phase, w.reason) for w in result.waiting] == [
        ("default/api[0]", Phase.WAITING, "waiting for db to start")
    ]


def test_dependent_starts_once_dependency_runs() -> None:
    db = spec("db")
    desired = desired_state([spec("api", "db"), db])
    result = plan(desired, {rid("db"): running(db)}, NOW)
    assert kinds(result.actions) == [("Start", "default/api[0]")]


def test_replicas_each_get_a_start() -> None:
    result = plan(desired_state([spec("web", replicas=3)]), {}, NOW)
    assert [a.replica.index for a in result.actions] == [0, 1, 2]  # type: ignore[union-attr]


def test_running_and_unchanged_plans_nothing() -> None:
    api = spec("api")
    result = plan(desired_state([api]), {rid("api"): running(api)}, NOW)
    assert result.actions == ()


def test_changed_command_stops_only_that_process() -> None:
    api, db = spec("api"), spec("db")
    records = {rid("api"): running(api, 1), rid("db"): running(db, 2)}
    new_api = replace(api, command=("sleep", "200"))
    result = plan(desired_state([new_api, db]), records, NOW)
    assert result.actions == (Stop(rid("api"), ProcessIdentity(1, 1), "SIGTERM", 10.0, StopReason.SPEC_CHANGED),)


def test_label_only_change_restarts_nothing() -> None:
    api = spec("api")
    result = plan(desired_state([replace(api, labels=(("tier", "web"),))]), {rid("api"): running(api)}, NOW)
    assert result.actions == ()


def test_changed_spec_starts_at_once_after_the_stop() -> None:
    api = spec("api")
    record = replace(exited(api, code=None), stopped_on_purpose=True)
    result = plan(desired_state([replace(api, env=(("A", "1"),))]), {rid("api"): record}, NOW)
    assert kinds(result.actions) == [("Start", "default/api[0]")]


def test_changed_spec_in_backoff_starts_at_once() -> None:
    api = spec("api")
    record = exited(api, crash_streak=5)
    result = plan(desired_state([replace(api, command=("true",))]), {rid("api"): record}, NOW)
    assert kinds(result.actions) == [("Start", "default/api[0]")]


def test_crash_waits_for_backoff_and_sets_wake_up() -> None:
    api = spec("api", backoff=Backoff(initial_seconds=2, multiplier=2, max_seconds=300))
    result = plan(desired_state([api]), {rid("api"): exited(api, crash_streak=2)}, NOW)
    assert result.actions == ()
    assert result.wake_at == NOW + 4
    assert [(w.phase, w.until) for w in result.waiting] == [(Phase.BACKOFF, NOW + 4)]


def test_crash_restarts_once_backoff_has_passed() -> None:
    api = spec("api", backoff=Backoff(initial_seconds=2))
    result = plan(desired_state([api]), {rid("api"): exited(api, at=NOW - 2, crash_streak=1)}, NOW)
    assert kinds(result.actions) == [("Start", "default/api[0]")]


@pytest.mark.parametrize(
    ("policy", "code", "phase"),
    [
        (RestartPolicy.ON_FAILURE, 0, Phase.SUCCEEDED),
        (RestartPolicy.NEVER, 0, Phase.SUCCEEDED),
        (RestartPolicy.NEVER, 1, Phase.FAILED),
    ],
)
def test_exit_that_policy_does_not_restart(policy: RestartPolicy, code: int, phase: Phase) -> None:
    api = spec("api", restart_policy=policy)
    result = plan(desired_state([api]), {rid("api"): exited(api, code=code, crash_streak=1)}, NOW)
    assert result.actions == ()
    assert [w.phase for w in result.waiting] == [phase]


def test_on_failure_restarts_a_failure_with_zero_backoff() -> None:
    api = spec("api", restart_policy=RestartPolicy.ON_FAILURE, backoff=Backoff(initial_seconds=0))
    result = plan(desired_state([api]), {rid("api"): exited(api, code=1, crash_streak=1)}, NOW)
    assert kinds(result.actions) == [("Start", "default/api[0]")]


def test_max_restarts_within_window_fails_for_good() -> None:
    api = spec("api", max_restarts=2, restart_window_seconds=60, backoff=Backoff(initial_seconds=0))
    record = exited(api, crash_streak=3, restart_times=(NOW - 10, NOW - 5), restarts=2)
    result = plan(desired_state([api]), {rid("api"): record}, NOW + 3600)
    assert result.actions == ()
    assert [w.phase for w in result.waiting] == [Phase.FAILED]


def test_restarts_outside_the_window_do_not_count() -> None:
    api = spec("api", max_restarts=2, restart_window_seconds=60, backoff=Backoff(initial_seconds=0))
    record = exited(api, crash_streak=3, restart_times=(NOW - 100, NOW - 5), restarts=2)
    result = plan(desired_state([api]), {rid("api"): record}, NOW)
    assert kinds(result.actions) == [("Start", "default/api[0]")]


def test_job_succeeded_is_not_rerun_and_releases_dependents() -> None:
    job = spec("migrate", kind=Kind.JOB)
    api = spec("api", Dependency("migrate", Condition.COMPLETED))
    result = plan(desired_state([job, api]), {rid("migrate"): exited(job, code=0)}, NOW)
    assert kinds(result.actions) == [("Start", "default/api[0]")]
    assert [(str(w.replica), w.phase) for w in result.waiting] == [("default/migrate[0]", Phase.SUCCEEDED)]


def test_job_past_backoff_limit_fails_and_blocks_dependents() -> None:
    job = spec("migrate", kind=Kind.JOB, backoff_limit=1)
    api = spec("api", Dependency("migrate", Condition.COMPLETED))
    result = plan(desired_state([job, api]), {rid("migrate"): exited(job, code=1, failures=2)}, NOW)
    assert result.actions == ()
    assert [(str(w.replica), w.phase, w.reason) for w in result.waiting] == [
        ("default/migrate[0]", Phase.FAILED, "exited with code 1; backoffLimit 1 reached"),
        ("default/api[0]", Phase.WAITING, "migrate failed and will not be restarted"),
    ]


def test_job_within_backoff_limit_retries() -> None:
    job = spec("migrate", kind=Kind.JOB, backoff_limit=1, backoff=Backoff(initial_seconds=0))
    result = plan(desired_state([job]), {rid("migrate"): exited(job, code=1, failures=1, crash_streak=1)}, NOW)
    assert kinds(result.actions) == [("Start", "default/migrate[0]")]


def test_completed_condition_waits_while_job_runs() -> None:
    job = spec("migrate", kind=Kind.JOB)
    api = spec("api", Dependency("migrate", Condition.COMPLETED))
    result = plan(desired_state([job, api]), {rid("migrate"): running(job)}, NOW)
    assert result.actions == ()
    assert result.waiting[0].reason == "waiting for migrate to complete"


def test_a_held_spec_stops_its_replicas_starts_none_and_keeps_new_dependents_waiting() -> None:
    web = spec("web", replicas=2)
    held = replace(web, stopped=True)
    api = spec("api", "web")
    records = {rid("web", 0): running(web, pid=10), rid("web", 1): exited(web, code=1)}
    result = plan(desired_state([held, api]), records, NOW)
    assert [(type(a).__name__, a.replica.index, getattr(a, "reason", None)) for a in result.actions] == [  # type: ignore[union-attr]
        ("Stop", 0, StopReason.HELD)]  # the ended one's record is kept for its next start
    assert [(str(w.replica), w.reason) for w in result.waiting] == [
        ("default/api[0]", "web is stopped (orchestrator start web runs it)")]
    assert plan(desired_state([held]), {}, NOW).actions == ()  # nothing of it starts, not even after a crash
    restarted = plan(desired_state([web]), {}, NOW)  # `start`: the same spec, no longer held
    assert kinds(restarted.actions) == [("Start", "default/web[0]"), ("Start", "default/web[1]")]


def test_scale_down_stops_highest_index_first() -> None:
    web = spec("web", replicas=3)
    records = {rid("web", i): running(web, pid=10 + i) for i in range(3)}
    result = plan(desired_state([replace(web, replicas=1)]), records, NOW)
    assert [(type(a).__name__, a.replica.index, a.reason) for a in result.actions] == [  # type: ignore[union-attr]
        ("Stop", 2, StopReason.SCALED_DOWN), ("Stop", 1, StopReason.SCALED_DOWN)
    ]


def test_removed_stack_stops_dependents_first() -> None:
    db, api = spec("db"), spec("api", "db")
    records = {rid("db"): running(db, 1), rid("api"): running(api, 2)}
    first = plan(DesiredState.empty(), records, NOW)
    assert kinds(first.actions) == [("Stop", "default/api[0]")]
    records[rid("api")] = replace(exited(api, code=None), stopped_on_purpose=True)
    second = plan(DesiredState.empty(), records, NOW)
    assert kinds(second.actions) == [("Forget", "default/api[0]"), ("Stop", "default/db[0]")]


def test_removed_stack_order_holds_through_a_finished_job() -> None:
    db = spec("db")
    job = spec("migrate", "db", kind=Kind.JOB)
    api = spec("api", Dependency("migrate", Condition.COMPLETED))
    records = {rid("db"): running(db, 1), rid("migrate"): exited(job, code=0), rid("api"): running(api, 3)}
    result = plan(DesiredState.empty(), records, NOW)
    assert kinds(result.actions) == [("Stop", "default/api[0]")]


def test_overdue_stop_is_escalated_to_kill() -> None:
    api = spec("api", shutdown=Shutdown("SIGTERM", 5))
    records = {rid("api"): running(api, stop_requested_at=NOW - 6)}
    result = plan(DesiredState.empty(), records, NOW)
    assert result.actions == (Kill(rid("api"), ProcessIdentity(100, 1)),)


def test_pending_stop_wakes_at_its_deadline() -> None:
    api = spec("api", shutdown=Shutdown("SIGTERM", 5))
    result = plan(DesiredState.empty(), {rid("api"): running(api, stop_requested_at=NOW - 1)}, NOW)
    assert result.actions == () and result.wake_at == NOW + 4


def test_removed_and_exited_is_forgotten() -> None:
    api = spec("api")
    result = plan(DesiredState.empty(), {rid("api"): exited(api)}, NOW)
    assert result.actions == (Forget(rid("api")),)


def test_shutdown_signal_comes_from_spec() -> None:
    api = spec("api", shutdown=Shutdown("SIGINT", 1))
    result = plan(DesiredState.empty(), {rid("api"): running(api)}, NOW)
    assert result.actions == (Stop(rid("api"), ProcessIdentity(100, 1), "SIGINT", 1.0, StopReason.REMOVED),)


def test_start_action_carries_the_desired_spec() -> None:
    api = spec("api")
    assert plan(desired_state([api]), {}, NOW).actions == (Start(rid("api"), api),)


def test_plan_for_two_thousand_processes_is_linear_enough() -> None:
    # Correctness at scale (the speed figure lives in bench/): every replica gets exactly one start.
    specs = [spec(f"p{i}", *( [f"p{i - 1}"] if i % 10 else [])) for i in range(2000)]
    result = plan(desired_state(specs), {}, NOW)
    assert result.starts == 200
    assert len(result.waiting) == 1800


@pytest.mark.parametrize(("flag", "stopped"), [(True, True), (False, False)])
def test_restart_with_dependency(flag: bool, stopped: bool) -> None:
    db = spec("db")
    api = spec("api", "db", restart_with_dependency=flag)
    records = {
        rid("api"): ReplicaRecord(spec=api, process=ProcessIdentity(2, 1), started_at=NOW - 50),
        rid("db"): ReplicaRecord(spec=db, process=ProcessIdentity(3, 1), started_at=NOW - 10, restarts=1,
                                 slot_since=NOW - 60),
    }
    result = plan(desired_state([db, api]), records, NOW)
    expected = (Stop(rid("api"), ProcessIdentity(2, 1), "SIGTERM", 10.0, StopReason.DEPENDENCY_RESTARTED),)
    assert result.actions == (expected if stopped else ())


def test_restart_with_dependency_waits_for_the_dependency_to_run_again() -> None:
    db = spec("db")
    api = spec("api", "db", restart_with_dependency=True)
    records = {
        rid("api"): ReplicaRecord(spec=api, process=ProcessIdentity(2, 1), started_at=NOW - 50),
        rid("db"): exited(db, code=None, at=NOW - 1, crash_streak=1) ,
    }
    records[rid("db")] = replace(records[rid("db")], started_at=NOW - 2)
    result = plan(desired_state([db, api]), records, NOW)
    assert [type(a).__name__ for a in result.actions] == ["Start"]  # db's restart; api is left alone
    assert result.actions[0].replica == rid("db")  # type: ignore[union-attr]


def test_a_dependency_scaled_up_is_not_a_restart() -> None:
    db = spec("db", replicas=2)
    api = spec("api", "db", restart_with_dependency=True)
    records = {
        rid("api"): ReplicaRecord(spec=api, process=ProcessIdentity(2, 1), started_at=NOW - 50),
        rid("db", 0): ReplicaRecord(spec=db, process=ProcessIdentity(3, 1), started_at=NOW - 60, slot_since=NOW - 60),
        rid("db", 1): ReplicaRecord(spec=db, process=ProcessIdentity(4, 1), started_at=NOW - 5, slot_since=NOW - 5),
    }
    assert plan(desired_state([db, api]), records, NOW).actions == ()


def test_a_job_past_its_active_deadline_is_stopped_and_before_it_the_plan_wakes_at_it() -> None:
    job = spec("batch", kind=Kind.JOB, active_deadline_seconds=30.0)
    young = running(job, deadline_from=NOW - 10)
    result = plan(desired_state([job]), {rid("batch"): young}, NOW)
    assert result.actions == () and result.wake_at == NOW + 20
    old = running(job, deadline_from=NOW - 30)
    result = plan(desired_state([job]), {rid("batch"): old}, NOW)
    assert [(type(a).__name__, a.reason) for a in result.actions] == [("Stop", StopReason.DEADLINE_EXCEEDED)]  # type: ignore[attr-defined]


def test_a_frozen_job_is_not_stopped_at_its_deadline() -> None:
    job = spec("batch", kind=Kind.JOB, active_deadline_seconds=30.0)
    frozen = running(job, deadline_from=NOW - 300, frozen_since=NOW - 290)
    result = plan(desired_state([job]), {rid("batch"): frozen}, NOW)
    assert result.actions == () and result.wake_at is None
