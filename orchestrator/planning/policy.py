"""PURE: restart decisions and backoff arithmetic.

Folds facts into ReplicaRecords (`record_start`, `record_exit`) and derives, from those facts alone, what
comes next for a replica that is not running (`next_step`). The planner and the event messages both ask
`next_step`, so they cannot disagree. No clock: every function that needs "now" takes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum

from ..core.model import Backoff, Exit, Kind, ProcessIdentity, ProcessSpec, Reason, ReplicaRecord, RestartPolicy

# A crash loop with no backoff would otherwise take a core of the daemon's: after two short runs in a row, one
# start of a slot per 20 ms at most (a process that ran longer restarts at once; systemd's RestartSec is 100 ms).
MIN_START_INTERVAL = 0.02


class Step(str, Enum):
    START = "Start"  # start at `at` (at once when at <= now)
    SUCCEEDED = "Succeeded"  # done, with success
    FAILED = "Failed"  # done, not to be restarted


@dataclass(frozen=True)
class Next:
    step: Step
    at: float = 0.0  # for START: the monotonic time of the next try
    why: str = ""


def backoff_delay(backoff: Backoff, streak: int) -> float:
    """Seconds to wait before the next try after `streak` consecutive short runs (1 = the first crash)."""
    if streak <= 0 or backoff.initial_seconds <= 0:
        return 0.0  # a zero initial delay stays zero however long the streak (0 x anything)
    if backoff.multiplier <= 1:
        return min(backoff.initial_seconds, backoff.max_seconds)
    # Past the exponent that reaches the maximum, the maximum: no float overflows, however long the streak.
    if backoff.initial_seconds >= backoff.max_seconds:
        return backoff.max_seconds
    # In logarithms: neither max / initial nor multiplier ** streak can overflow, whatever the manifest says.
    room = math.log(backoff.max_seconds) - math.log(backoff.initial_seconds)
    grown = (streak - 1) * math.log(backoff.multiplier)
    if grown >= room:
        return backoff.max_seconds
    if grown < 700:  # multiplier ** (streak - 1) < e**700: exact enough, and as the table in the docs says
        return min(backoff.initial_seconds * backoff.multiplier ** (streak - 1), backoff.max_seconds)
    return min(math.exp(math.log(backoff.initial_seconds) + grown), backoff.max_seconds)


def classify_exit(spec: ProcessSpec, code: int | None, signal: int | None) -> Reason:
    if signal is not None:
        return Reason.KILLED
    if code is None:
        return Reason.UNKNOWN
    if code is not None and code in spec.success_exit_codes:
        return Reason.COMPLETED
    return Reason.ERROR


def record_start(
    record: ReplicaRecord | None, spec: ProcessSpec, process: ProcessIdentity, now: float
) -> ReplicaRecord:
    """The record once `spec` has been started as `process`.

    A start from the same spec after an unplanned exit is a restart: counted, and remembered for
    maxRestarts. A new spec starts a fresh record.
    """
    started = spec.probes.startup is None  # until its startup probe passes, nothing else is probed
    slot_since = record.slot_since if record is not None and record.slot_since is not None else now
    if record is None or record.spec != spec:
        return ReplicaRecord(spec=spec, process=process, started_at=now, started=started, slot_since=slot_since,
                             deadline_from=now)
    restart = record.last_exit is not None and not record.stopped_on_purpose
    times = record.restart_times
    if restart:
        # Only maxRestarts matters of them, so only that many are kept: a crash loop's record stays small.
        horizon = now - spec.restart_window_seconds
        kept = spec.max_restarts or 0
        times = (tuple(t for t in times if t > horizon) + (now,))[-kept:] if kept else ()
    return replace(
        record,
        spec=spec,
        process=process,
        started_at=now,
        stop_requested_at=None,
        killed=False,
        restarts=record.restarts + (1 if restart else 0),
        restart_times=times,
        stopped_on_purpose=False,
        started=started,
        ready=False,
        ready_since=None,
        unhealthy="",
        hook=None,
        hook_kind=None,
        hook_started_at=None,
        hook_killed=False,
        pre_start_passed=False,
        over_memory="",
        cgroup="",
        slot_since=slot_since,
        # A retry after a failure goes on with the deadline of the run so far; a start we asked for
        # (`orchestrator restart`, a requeue, `start` after `stop`) runs the Job afresh, deadline included.
        deadline_from=record.deadline_from if restart and record.deadline_from is not None else now,
        frozen_since=None,
        deadline_exceeded=False,
    )


def record_start_failure(
    record: ReplicaRecord | None, spec: ProcessSpec, message: str, now: float, reason: Reason = Reason.START_FAILED
) -> ReplicaRecord:
    """A start that could not happen (missing binary, failed preStart hook) is a run that ended at once."""
    started = record_start(record, spec, ProcessIdentity(pid=0, start_ticks=0), now)
    return record_exit(started, Exit(None, None, reason, now, 0.0, message))


def record_exit(record: ReplicaRecord, exit: Exit) -> ReplicaRecord:
    """The record once its process has ended as `exit`.

    A stop we asked for is not a crash, unless we asked because a probe found the replica unhealthy.
    """
    on_purpose = record.stop_requested_at is not None and not record.unhealthy and not record.deadline_exceeded
    if on_purpose:
        streak, failures = record.crash_streak, record.failures
    else:
        long_run = exit.ran_seconds >= record.spec.backoff.reset_after_seconds
        streak = 1 if long_run else record.crash_streak + 1
        failures = record.failures + (0 if exit.reason is Reason.COMPLETED else 1)
    return replace(
        record,
        process=None,
        cgroup="",
        stop_requested_at=None,
        killed=False,
        crash_streak=streak,
        failures=failures,
        last_exit=exit,
        stopped_on_purpose=on_purpose,
        # Time frozen up to the exit (a SIGKILL reaches a stopped process) is not active time either.
        deadline_from=(record.deadline_from + max(0.0, exit.at - record.frozen_since)
                       if record.deadline_from is not None and record.frozen_since is not None
                       else record.deadline_from),
        frozen_since=None,
    )


def is_ready(spec: ProcessSpec, record: ReplicaRecord) -> bool:
    """Ready: running, not stopping, and past its readiness probe (or startup probe, without one)."""
    if record.process is None or record.stop_requested_at is not None or record.unhealthy:
        return False
    if spec.probes.readiness is not None:
        return record.ready
    if spec.probes.startup is not None:
        return record.started
    return True


def deadline_at(spec: ProcessSpec, record: ReplicaRecord) -> float | None:
    """When a Job running as `record` passes its activeDeadlineSeconds; None without one, or while frozen
    (a frozen Job's deadline does not run: thawing moves `deadline_from` on by the time it was frozen)."""
    if spec.active_deadline_seconds is None or record.deadline_from is None or record.frozen_since is not None:
        return None
    return record.deadline_from + spec.active_deadline_seconds


def next_step(spec: ProcessSpec, record: ReplicaRecord) -> Next:
    """What comes next for a replica of `spec` whose process has exited (record.last_exit is set).

    Derived from facts only, with the exit time as "now", so every pass reaches the same answer.
    """
    exit = record.last_exit
    if exit is None or record.stopped_on_purpose:
        return Next(Step.START, 0.0)
    success = exit.reason is Reason.COMPLETED
    policy = spec.effective_restart_policy
    if exit.reason is Reason.DEADLINE_EXCEEDED:
        return Next(Step.FAILED, why=f"DeadlineExceeded: {_describe(exit)}")
    if success and policy is not RestartPolicy.ALWAYS:
        return Next(Step.SUCCEEDED, why=f"exited with code {exit.code}")
    if not success and policy is RestartPolicy.NEVER:
        return Next(Step.FAILED, why=f"{_describe(exit)}; restartPolicy is Never")
    if spec.kind is Kind.JOB and exit.reason is Reason.UNKNOWN:
        # It may well have succeeded: running a migration twice is worse than asking for `restart`.
        return Next(Step.FAILED, why=f"{_describe(exit)}; a Job is not run again on a guess "
                    "(`orchestrator restart` runs it)")
    if spec.kind is Kind.JOB and record.failures > spec.backoff_limit:
        return Next(Step.FAILED, why=f"{_describe(exit)}; backoffLimit {spec.backoff_limit} reached")
    if spec.max_restarts is not None:
        horizon = exit.at - spec.restart_window_seconds
        recent = sum(1 for t in record.restart_times if t > horizon)
        if recent >= spec.max_restarts:
            return Next(
                Step.FAILED,
                why=f"{_describe(exit)}; {recent} restarts within {spec.restart_window_seconds:g} s "
                f"(maxRestarts {spec.max_restarts})",
            )
    at = exit.at + backoff_delay(spec.backoff, record.crash_streak)
    if record.crash_streak >= 2 and record.started_at is not None:
        # Short runs in a row, even with no backoff: a slot starts at most once per MIN_START_INTERVAL.
        at = max(at, record.started_at + MIN_START_INTERVAL)
    due = deadline_at(spec, record)
    if spec.kind is Kind.JOB and due is not None and at >= due:
        return Next(Step.FAILED, why=f"DeadlineExceeded: {_describe(exit)}, and its next try would start past "
                    f"its activeDeadlineSeconds ({spec.active_deadline_seconds:g} s)")
    return Next(Step.START, at, _describe(exit))


def _describe(exit: Exit) -> str:
    if exit.reason in (Reason.START_FAILED, Reason.HOOK_FAILED):
        return f"could not start: {exit.message}"
    if exit.reason is Reason.OOM_KILLED:
        return f"killed over its memory limit ({exit.message})" if exit.message else "killed over its memory limit"
    if exit.reason is Reason.LIVENESS_FAILED:
        return f"stopped as unhealthy ({exit.message})" if exit.message else "stopped as unhealthy"
    if exit.reason is Reason.DEADLINE_EXCEEDED:
        return f"stopped past its activeDeadlineSeconds ({exit.message})" if exit.message else \
            "stopped past its activeDeadlineSeconds"
    if exit.reason is Reason.UNKNOWN:
        return "ended while no orchestrator watched it (exit status unknown)"
    if exit.signal is not None:
        return f"killed by {_SIGNAL_NAMES.get(exit.signal, f'signal {exit.signal}')}"
    return f"exited with code {exit.code}"


# Linux numbers of the signals that commonly end a process; the signal module is not imported here.
_SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE",
                 15: "SIGTERM"}
