"""engine/folding.py: what news from outside the loop does to a record, as tables of transitions."""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest

from orchestrator.core.model import (
    Backoff,
    HookKind,
    Limits,
    Probe,
    ProbeAction,
    ProbeKind,
    Probes,
    ProcessIdentity,
    ProcessSpec,
    Reason,
    ReplicaId,
    ReplicaRecord,
)
from orchestrator.engine.folding import (
    exit_reason,
    hook_ended,
    how_it_ended,
    probe_folded,
    signal_name,
    what_next,
)
from orchestrator.host.execute import ExitStatus
from orchestrator.host.probes import Transition

PROCESS = ProcessIdentity(pid=4242, start_ticks=7)
HOOK = ProcessIdentity(pid=4343, start_ticks=8)
RID = ReplicaId("default/api", 0)
READINESS = Probe(action=ProbeAction.TCP, port=8080)
SPEC = ProcessSpec(name="api", command=("srv",), backoff=Backoff(initial_seconds=2.0))


def running(spec: ProcessSpec = SPEC, **fields: object) -> ReplicaRecord:
    return replace(ReplicaRecord(spec=spec, process=PROCESS, started_at=100.0), **fields)


@pytest.mark.parametrize(("status", "words"), [
    (ExitStatus(0, None), "exited with code 0"),
    (ExitStatus(3, None), "exited with code 3"),
    (ExitStatus(None, signal.SIGTERM), "killed by SIGTERM"),
    (ExitStatus(None, 40), "killed by signal 40"),
    (ExitStatus(None, None), "ended (adopted, so its exit status is unknown)"),
])
def test_how_it_ended(status: ExitStatus, words: str) -> None:
    assert how_it_ended(status) == words


def test_signal_name_of_a_real_time_signal_is_its_number() -> None:
    assert (signal_name(9), signal_name(signal.SIGRTMIN + 1)) == ("SIGKILL", f"signal {signal.SIGRTMIN + 1}")


@pytest.mark.parametrize(("record", "status", "reason", "message"), [
    (running(), ExitStatus(0, None), Reason.COMPLETED, ""),
    (running(), ExitStatus(1, None), Reason.ERROR, ""),
    (running(over_memory="rss 300Mi > 256Mi"), ExitStatus(None, 9), Reason.OOM_KILLED, "rss 300Mi > 256Mi"),
    (running(unhealthy="liveness probe failed 3 times"), ExitStatus(None, 15), Reason.LIVENESS_FAILED,
     "liveness probe failed 3 times"),
])
def test_exit_reason(record: ReplicaRecord, status: ExitStatus, reason: Reason, message: str) -> None:
    assert exit_reason(record, status) == (reason, message)


def test_exit_reason_of_a_kernel_oom_kill_names_the_limit() -> None:
    spec = replace(SPEC, limits=Limits(memory_bytes=256 * 1024 * 1024))
    reason, message = exit_reason(running(spec), ExitStatus(None, 9, oom_killed=True))
    assert reason is Reason.OOM_KILLED and message == f"killed by the kernel at its memory limit of {256 * 1024 * 1024} bytes"


@pytest.mark.parametrize(("probes", "record", "kind", "passing", "expect", "consequence"), [
    # startup passes: started; ready at once only without a readiness probe
    (Probes(startup=READINESS), running(), ProbeKind.STARTUP, True, {"started": True, "ready": True}, "started"),
    (Probes(startup=READINESS, readiness=READINESS), running(), ProbeKind.STARTUP, True,
     {"started": True, "ready": False}, "started"),
    (Probes(readiness=READINESS), running(started=True), ProbeKind.READINESS, True, {"ready": True}, "ready"),
    (Probes(readiness=READINESS), running(started=True, ready=True), ProbeKind.READINESS, False, {"ready": False},
     "not ready"),
    (Probes(liveness=READINESS), running(started=True), ProbeKind.LIVENESS, False,
     {"unhealthy": "liveness probe failed"}, "unhealthy: restarting"),
    (Probes(startup=READINESS), running(), ProbeKind.STARTUP, False, {"unhealthy": "startup probe failed"},
     "unhealthy: restarting"),
])
def test_probe_transitions(probes: Probes, record: ReplicaRecord, kind: ProbeKind, passing: bool,
                           expect: dict[str, object], consequence: str) -> None:
    spec = replace(SPEC, probes=probes)
    folded = probe_folded(record, spec, Transition(RID, PROCESS, kind, passing, "failed"), 0.0)
    assert folded is not None
    new, words = folded
    assert {name: getattr(new, name) for name in expect} == expect and words == consequence


def test_a_liveness_probe_that_passes_changes_nothing() -> None:
    spec = replace(SPEC, probes=Probes(liveness=READINESS))
    assert probe_folded(running(started=True), spec, Transition(RID, PROCESS, ProbeKind.LIVENESS, True, ""), 0.0) is None


def hooked(kind: HookKind, **fields: object) -> ReplicaRecord:
    return running(hook=HOOK, hook_kind=kind, hook_started_at=101.0, **fields)


def test_a_pre_start_that_passes_lets_the_next_pass_start_the_process() -> None:
    end = hook_ended(hooked(HookKind.PRE_START, process=None), SPEC, ExitStatus(0, None), 105.0)
    assert end.record.pre_start_passed and end.record.hook is None and end.record.hook_kind is None
    assert (end.start_failed, end.stop_now, end.message) == (False, False, "")


def test_a_pre_start_that_fails_is_a_start_failure_under_the_backoff() -> None:
    end = hook_ended(hooked(HookKind.PRE_START, process=None), SPEC, ExitStatus(2, None), 105.0)
    assert end.start_failed and end.message == "preStart hook exited with code 2"
    assert end.record.last_exit is not None and end.record.last_exit.reason is Reason.HOOK_FAILED
    assert end.record.hook is None and end.record.process is None


def test_a_pre_start_killed_past_its_timeout_says_so() -> None:
    end = hook_ended(hooked(HookKind.PRE_START, process=None, hook_killed=True), SPEC, ExitStatus(None, 9), 105.0)
    assert end.start_failed and end.message == "preStart hook ran past its timeout"


@pytest.mark.parametrize("status", [ExitStatus(0, None), ExitStatus(1, None)])
def test_a_pre_stop_that_ends_either_way_lets_the_stop_signal_go(status: ExitStatus) -> None:
    end = hook_ended(hooked(HookKind.PRE_STOP, stop_requested_at=104.0), SPEC, status, 105.0)
    assert end.stop_now and not end.start_failed and end.message.startswith("preStop hook ")
    assert end.record.process == PROCESS and end.record.hook is None


@pytest.mark.parametrize(("status", "message"), [
    (ExitStatus(0, None), ""),
    (ExitStatus(1, None), "postStart hook exited with code 1"),
])
def test_a_post_start_only_speaks_when_it_fails(status: ExitStatus, message: str) -> None:
    end = hook_ended(hooked(HookKind.POST_START), SPEC, status, 105.0)
    assert (end.start_failed, end.stop_now, end.message) == (False, False, message)
    assert end.record.process == PROCESS and end.record.hook is None


def test_what_next_follows_the_policy() -> None:
    ended = hook_ended(hooked(HookKind.PRE_START, process=None), SPEC, ExitStatus(2, None), 105.0).record
    assert what_next(SPEC, ended, shutting_down=False) == "restarting in 2 s"
    assert what_next(None, ended, shutting_down=False) == "not restarted: no longer desired"
    assert what_next(SPEC, ended, shutting_down=True) == "not restarted: no longer desired"
