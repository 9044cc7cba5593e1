"""What news from outside the loop does to a replica's record: pure functions the reconciler calls.

A probe transition, an ended process or hook and the words for how it ended are folded here into new
records and event text; the reconciler alone stores the result and acts on it (signals, events), so these
functions do no I/O, read no clock and change nothing they are given.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..core.model import DesiredState, HookKind, ProbeKind, ProcessSpec, Reason, ReplicaId, ReplicaRecord
from ..host.execute import ExitStatus
from ..host.limits import kernel_oom_message
from ..host.probes import Target, Transition
from ..planning.plan import StopReason
from ..planning.policy import Step, classify_exit, next_step, record_start_failure

_PROBE_CONSEQUENCE = {
    (ProbeKind.STARTUP, True): "started",
    (ProbeKind.READINESS, True): "ready",
    (ProbeKind.READINESS, False): "not ready",
    (ProbeKind.STARTUP, False): "unhealthy: restarting",
    (ProbeKind.LIVENESS, False): "unhealthy: restarting",
}


def without_hook(record: ReplicaRecord) -> ReplicaRecord:
    return replace(record, hook=None, hook_kind=None, hook_started_at=None, hook_killed=False)


def signal_name(number: int) -> str:
    """SIGTERM for 15; real-time signals have no name in the enum: `signal 40`."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# Why a replica is being stopped, in the words of its Stopping event.
STOP_WORDS = {
    StopReason.REMOVED: "no longer desired",
    StopReason.SPEC_CHANGED: "its spec changed",
    StopReason.SCALED_DOWN: "scaled down",
    StopReason.RESTART: "restart asked for",
    StopReason.UNHEALTHY: "unhealthy",
    StopReason.DEPENDENCY_RESTARTED: "a dependency started anew",
    StopReason.HELD: "stop asked for",
    StopReason.ROLLOUT: "rolling update done with its surge replica",
    StopReason.DEADLINE_EXCEEDED: "past its activeDeadlineSeconds (DeadlineExceeded)",
}


def how_it_ended(status: ExitStatus) -> str:
    if status.signal is not None:
        return f"killed by {signal_name(status.signal)}"
    if status.code is None:
        return "ended (adopted, so its exit status is unknown)"
    return f"exited with code {status.code}"


def exit_reason(record: ReplicaRecord, status: ExitStatus) -> tuple[Reason, str]:
    """Why a replica's main process ended, and the words for it where the exit status alone does not say."""
    if record.over_memory:
        return Reason.OOM_KILLED, record.over_memory
    if status.oom_killed:
        return Reason.OOM_KILLED, kernel_oom_message(record.spec.limits)
    if record.unhealthy:
        return Reason.LIVENESS_FAILED, record.unhealthy
    if record.deadline_exceeded:
        return Reason.DEADLINE_EXCEEDED, f"{record.spec.active_deadline_seconds:g} s"
    return classify_exit(record.spec, status.code, status.signal), ""


def what_next(spec: ProcessSpec | None, record: ReplicaRecord, shutting_down: bool) -> str:
    """The consequence of an exit in words, from the same policy the planner follows (`spec`: the desired one)."""
    if spec is None or shutting_down:
        return "not restarted: no longer desired"
    step = next_step(spec, record)
    if step.step is Step.SUCCEEDED:
        return "succeeded, not restarted"
    if step.step is Step.FAILED:
        return f"failed, not restarted: {step.why}"
    delay = max(0.0, step.at - record.last_exit.at) if record.last_exit else 0.0
    return f"restarting in {delay:.3g} s" if delay else "restarting now"


def probe_folded(record: ReplicaRecord, spec: ProcessSpec, transition: Transition,
                 now: float) -> tuple[ReplicaRecord, str] | None:
    """The record after a probe crossed a threshold (at `now`), and the consequence in words; None if
    nothing changes."""
    kind = transition.kind
    if kind is ProbeKind.STARTUP and transition.passing:
        ready = spec.probes.readiness is None
        record = replace(record, started=True, ready=ready, ready_since=now if ready else None)
    elif kind is ProbeKind.READINESS:
        since = (record.ready_since if record.ready else now) if transition.passing else None
        record = replace(record, ready=transition.passing, ready_since=since)
    elif not transition.passing:  # liveness failed, or startup could not pass: restart it
        record = replace(record, unhealthy=f"{kind.value} probe {transition.message}")
    else:
        return None
    return record, _PROBE_CONSEQUENCE[(kind, transition.passing)]


def probe_targets(records: Mapping[ReplicaId, ReplicaRecord], desired: DesiredState,
                  log_offsets: Mapping[ReplicaId, int]) -> dict[ReplicaId, Target]:
    """The replicas the prober should be probing now: running, not stopping, still desired, with a probe."""
    targets = {}
    for rid, record in records.items():
        spec = desired.specs.get(rid.key)
        if record.process is None or record.stop_requested_at is not None or spec is None:
            continue
        if record.started_at is None or not (spec.probes.startup or spec.probes.readiness or spec.probes.liveness):
            continue
        targets[rid] = Target(record.process, spec, record.started_at, record.started, record.ready,
                              log_offsets.get(rid, 0))
    return targets


@dataclass(frozen=True)
class HookEnd:
    """What an ended lifecycle hook leaves: the replica's new record and what the reconciler does next."""

    record: ReplicaRecord
    start_failed: bool = False  # a preStart failed: the record is a start failure, under the backoff
    stop_now: bool = False  # a preStop ended: the stop signal goes to the process now
    message: str = ""  # for the event; "" when there is nothing to say


def hook_ended(record: ReplicaRecord, spec: ProcessSpec, status: ExitStatus, now: float) -> HookEnd:
    """Fold the end of the record's hook (`spec` is the desired one, or the record's when no longer desired)."""
    kind = record.hook_kind
    ok = status.code == 0
    how = "ran past its timeout" if record.hook_killed else how_it_ended(status)
    record = without_hook(record)
    if kind is HookKind.PRE_START:
        if ok:  # the next pass starts the process itself, if the spec is still the one this hook ran for
            return HookEnd(replace(record, pre_start_passed=True))
        failed = record_start_failure(record, spec, f"preStart hook {how}", now, Reason.HOOK_FAILED)
        return HookEnd(failed, start_failed=True, message=f"preStart hook {how}")
    if kind is HookKind.PRE_STOP:
        return HookEnd(record, stop_now=True, message=f"preStop hook {how}")
    return HookEnd(record, message="" if ok else f"postStart hook {how}")
