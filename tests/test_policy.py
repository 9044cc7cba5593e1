"""Backoff arithmetic and the folding of starts and exits into records, with an injected `now`."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.core.model import Backoff, Exit, ProcessIdentity, ProcessSpec, Reason, RestartPolicy
from orchestrator.planning.policy import (
    Step,
    backoff_delay,
    classify_exit,
    next_step,
    record_exit,
    record_start,
    record_start_failure,
)

DEFAULT = Backoff()


@pytest.mark.parametrize(
    ("backoff", "streak", "delay"),
    [
        (DEFAULT, 0, 0.0),
        (DEFAULT, 1, 1.0),
        (DEFAULT, 2, 2.0),
        (DEFAULT, 5, 16.0),
        (DEFAULT, 9, 256.0),
        (DEFAULT, 10, 300.0),  # capped at maxSeconds
        (DEFAULT, 10_000, 300.0),  # no overflow
        (Backoff(initial_seconds=0.1, multiplier=3, max_seconds=1), 3, pytest.approx(0.9)),
        (Backoff(initial_seconds=0), 7, 0.0),
        (Backoff(initial_seconds=0), 1025, 0.0),  # once 2**1024 overflowed and a zero backoff became 300 s
        (Backoff(initial_seconds=0), 10**7, 0.0),
        (Backoff(initial_seconds=1e-300, multiplier=10, max_seconds=5), 2000, 5.0),
        (Backoff(initial_seconds=0.5, max_seconds=1e308), 1025, pytest.approx(2.0**1023)),  # no overflow
        (Backoff(initial_seconds=0.5, max_seconds=1e308), 1030, 1e308),
        (Backoff(initial_seconds=1e-300, multiplier=10, max_seconds=1e308), 500, pytest.approx(1e199)),
        (Backoff(initial_seconds=0.5, multiplier=1), 20, 0.5),
    ],
)
def test_backoff_delay(backoff: Backoff, streak: int, delay: float) -> None:
    assert backoff_delay(backoff, streak) == delay


@pytest.mark.parametrize(
    ("code", "signal", "reason"),
    [(0, None, Reason.COMPLETED), (3, None, Reason.COMPLETED), (1, None, Reason.ERROR), (None, 9, Reason.KILLED)],
)
def test_classify_exit(code: int | None, signal: int | None, reason: Reason) -> None:
    spec = ProcessSpec(name="a", command=("x",), success_exit_codes=(0, 3))
    assert classify_exit(spec, code, signal) is reason


SPEC = ProcessSpec(name="a", command=("x",), backoff=Backoff(initial_seconds=1, reset_after_seconds=10))
PID = ProcessIdentity(42, 1)


def crash(at: float, ran: float) -> Exit:
    return Exit(1, None, Reason.ERROR, at, ran)


def test_crash_loop_grows_the_backoff_and_counts_restarts() -> None:
    now = 0.0
    record = record_start(None, SPEC, PID, now)
    delays = []
    for _ in range(4):
        now += 0.5
        record = record_exit(record, crash(now, 0.5))
        step = next_step(SPEC, record)
        assert step.step is Step.START
        delays.append(step.at - now)
        now = step.at
        record = record_start(record, SPEC, PID, now)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert record.restarts == 4
    assert record.restart_times == ()  # kept only for maxRestarts, which this spec does not set


def test_only_as_many_restart_times_as_max_restarts_are_kept() -> None:
    spec = dataclasses.replace(SPEC, max_restarts=2, restart_window_seconds=1000.0,
                               backoff=Backoff(initial_seconds=0.0))
    record = record_start(None, spec, PID, 0.0)
    for now in (1.0, 2.0, 3.0, 4.0):
        record = record_exit(record, crash(now, 0.5))
        record = record_start(record, spec, PID, now + 0.1)
    assert record.restart_times == (3.1, 4.1) and record.restarts == 4
    assert next_step(spec, record_exit(record, crash(5.0, 0.5))).step is Step.FAILED


def test_a_crash_loop_without_backoff_starts_a_slot_at_most_every_20_ms() -> None:
    spec = dataclasses.replace(SPEC, backoff=Backoff(initial_seconds=0.0))
    record = record_start(None, spec, PID, 0.0)
    record = record_exit(record, crash(0.001, 0.001))
    assert next_step(spec, record).at == 0.001  # the first short run: at once
    record = record_start(record, spec, PID, 0.001)
    record = record_exit(record, crash(0.002, 0.001))
    assert next_step(spec, record).at == pytest.approx(0.021)  # short runs in a row: 20 ms after the last start
    record = record_start(record, spec, PID, 0.021)
    record = record_exit(record, crash(5.0, 4.979))  # ran longer than 20 ms: at once, still
    assert next_step(spec, record).at == 5.0


def test_a_long_run_resets_the_backoff() -> None:
    record = record_start(None, SPEC, PID, 0.0)
    record = record_exit(record, crash(0.1, 0.1))
    record = record_start(record, SPEC, PID, 1.1)
    record = record_exit(record, crash(1.2, 0.1))
    assert record.crash_streak == 2
    record = record_start(record, SPEC, PID, 3.2)
    record = record_exit(record, crash(20.0, 16.8))  # ran past resetAfterSeconds
    assert record.crash_streak == 1
    assert next_step(SPEC, record).at == 21.0


def test_a_stop_on_purpose_is_not_a_crash_and_not_a_restart() -> None:
    record = record_start(None, SPEC, PID, 0.0)
    record = record_exit(record.__class__(**{**record.__dict__, "stop_requested_at": 1.0}), crash(1.5, 1.5))
    assert record.stopped_on_purpose and record.crash_streak == 0 and record.failures == 0
    assert next_step(SPEC, record).step is Step.START and next_step(SPEC, record).at == 0.0
    record = record_start(record, SPEC, PID, 2.0)
    assert record.restarts == 0


def test_a_new_spec_starts_a_fresh_record() -> None:
    record = record_exit(record_start(None, SPEC, PID, 0.0), crash(1.0, 1.0))
    other = ProcessSpec(name="a", command=("y",))
    fresh = record_start(record, other, PID, 2.0)
    assert fresh.spec == other and fresh.restarts == 0 and fresh.last_exit is None


def test_start_failure_is_an_exit_with_its_reason() -> None:
    spec = ProcessSpec(name="a", command=("x",), restart_policy=RestartPolicy.ON_FAILURE)
    record = record_start_failure(None, spec, "command not found: x", 5.0)
    assert record.process is None and record.last_exit is not None
    assert record.last_exit.reason is Reason.START_FAILED
    step = next_step(spec, record)
    assert step.step is Step.START and step.at == 6.0
    assert step.why == "could not start: command not found: x"


def test_an_adopted_job_that_ended_unseen_is_not_run_again() -> None:
    from orchestrator.core.model import Kind

    job = ProcessSpec(name="migrate", command=("x",), kind=Kind.JOB)
    record = record_exit(record_start(None, job, PID, 0.0), Exit(None, None, Reason.UNKNOWN, 5.0, 5.0))
    step = next_step(job, record)
    assert step.step is Step.FAILED and "not run again on a guess" in step.why


def test_an_adopted_process_that_ended_unseen_is_restarted() -> None:
    record = record_exit(record_start(None, SPEC, PID, 0.0), Exit(None, None, Reason.UNKNOWN, 5.0, 5.0))
    assert next_step(SPEC, record).step is Step.START


# -- activeDeadlineSeconds: active time from the first start, retries and backoff included, frozen time not --

def deadline_job(seconds: float = 10.0) -> ProcessSpec:
    from orchestrator.core.model import Kind

    return ProcessSpec(name="batch", command=("x",), kind=Kind.JOB, active_deadline_seconds=seconds,
                       backoff=Backoff(initial_seconds=2.0, multiplier=1.0))


def test_the_deadline_counts_from_the_first_start_across_retries() -> None:
    from orchestrator.planning.policy import deadline_at

    job = deadline_job()
    first = record_start(None, job, PID, 100.0)
    assert deadline_at(job, first) == 110.0
    retried = record_start(record_exit(first, crash(103.0, 3.0)), job, PID, 105.0)
    assert deadline_at(job, retried) == 110.0  # a retry goes on with the same deadline
    assert deadline_at(dataclasses.replace(job, active_deadline_seconds=None), retried) is None


def test_a_start_asked_for_runs_the_job_afresh_with_a_new_deadline() -> None:
    from orchestrator.planning.policy import deadline_at

    job = deadline_job()
    first = record_start(None, job, PID, 100.0)
    stopped = record_exit(dataclasses.replace(first, stop_requested_at=104.0), crash(104.5, 4.5))
    assert deadline_at(job, record_start(stopped, job, PID, 200.0)) == 210.0


def test_a_retry_that_would_start_past_the_deadline_fails_with_deadline_exceeded() -> None:
    job = deadline_job()
    record = record_exit(record_start(None, job, PID, 100.0), crash(108.5, 8.5))  # retry at 110.5 > 110
    step = next_step(job, record)
    assert step.step is Step.FAILED and step.why.startswith("DeadlineExceeded")
    early = record_exit(record_start(None, job, PID, 100.0), crash(101.0, 1.0))  # retry at 103: in time
    assert next_step(job, early) == next_step(job, early) and next_step(job, early).step is Step.START


def test_a_job_stopped_past_its_deadline_is_failed_whatever_its_backoff_limit() -> None:
    job = dataclasses.replace(deadline_job(), backoff_limit=100)
    record = record_start(None, job, PID, 100.0)
    stopping = dataclasses.replace(record, stop_requested_at=110.0, deadline_exceeded=True)
    ended = record_exit(stopping, Exit(None, 15, Reason.DEADLINE_EXCEEDED, 110.2, 10.2, "10 s"))
    assert not ended.stopped_on_purpose and ended.failures == 1
    step = next_step(job, ended)
    assert step.step is Step.FAILED
    assert step.why == "DeadlineExceeded: stopped past its activeDeadlineSeconds (10 s)"


def test_frozen_time_up_to_an_exit_moves_the_deadline_on() -> None:
    from orchestrator.planning.policy import deadline_at

    job = deadline_job()
    frozen = dataclasses.replace(record_start(None, job, PID, 100.0), frozen_since=104.0)
    assert deadline_at(job, frozen) is None  # frozen: no deadline runs
    ended = record_exit(frozen, Exit(None, 9, Reason.KILLED, 130.0, 30.0))  # killed while frozen for 26 s
    assert ended.frozen_since is None and deadline_at(job, ended) == 136.0
