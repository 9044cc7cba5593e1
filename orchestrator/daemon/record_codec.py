"""Run-state records <-> JSON-able dicts, the one shape the state store keeps them in.

Every field of a ReplicaRecord round-trips exactly (tuples, enums, None, floats); its spec is written as the
complete manifest document the codec makes. Never: I/O or json text (the store dumps and loads). Reading a
malformed dict raises ValueError naming the field path.
"""

from __future__ import annotations

from ..core.model import Exit, HookKind, ProcessIdentity, Reason, ReplicaRecord
from ..core.reader import Reader
from ..manifests.codec import JSONDict, spec_from_json, spec_to_json


def record_to_json(record: ReplicaRecord) -> JSONDict:
    """Every field of the record, camelCase; times stay as they are (monotonic, like the record's)."""
    process = record.process
    last_exit = record.last_exit
    return {
        "spec": spec_to_json(record.spec),
        "process": None if process is None else {"pid": process.pid, "startTicks": process.start_ticks},
        "startedAt": record.started_at,
        "stopRequestedAt": record.stop_requested_at,
        "killed": record.killed,
        "restarts": record.restarts,
        "restartTimes": list(record.restart_times),
        "crashStreak": record.crash_streak,
        "failures": record.failures,
        "lastExit": None
        if last_exit is None
        else {
            "code": last_exit.code,
            "signal": last_exit.signal,
            "reason": last_exit.reason.value,
            "at": last_exit.at,
            "ranSeconds": last_exit.ran_seconds,
            "message": last_exit.message,
        },
        "stoppedOnPurpose": record.stopped_on_purpose,
        "started": record.started,
        "ready": record.ready,
        "unhealthy": record.unhealthy,
        "hook": None if record.hook is None else {"pid": record.hook.pid, "startTicks": record.hook.start_ticks},
        "hookKind": None if record.hook_kind is None else record.hook_kind.value,
        "hookStartedAt": record.hook_started_at,
        "hookKilled": record.hook_killed,
        "overMemory": record.over_memory,
        "cgroup": record.cgroup,
        "slotSince": record.slot_since,
        "readySince": record.ready_since,
        "preStartPassed": record.pre_start_passed,
        "deadlineFrom": record.deadline_from,
        "frozenSince": record.frozen_since,
        "deadlineExceeded": record.deadline_exceeded,
    }


def record_from_json(value: object) -> ReplicaRecord:
    reader = Reader(value, "")
    process: ProcessIdentity | None = None
    if reader.raw("process", None) is not None:
        found = reader.reader("process")
        process = ProcessIdentity(pid=found.integer("pid"), start_ticks=found.integer("startTicks"))
        found.done()
    hook: ProcessIdentity | None = None
    if reader.raw("hook", None) is not None:
        found = reader.reader("hook")
        hook = ProcessIdentity(pid=found.integer("pid"), start_ticks=found.integer("startTicks"))
        found.done()
    last_exit: Exit | None = None
    if reader.raw("lastExit", None) is not None:
        found = reader.reader("lastExit")
        last_exit = Exit(
            code=found.integer("code", None),
            signal=found.integer("signal", None),
            reason=found.enum("reason", Reason),
            at=found.number("at"),
            ran_seconds=found.number("ranSeconds"),
            message=found.text("message", ""),
        )
        found.done()
    record = ReplicaRecord(
        spec=spec_from_json(reader.raw("spec"), "spec"),
        process=process,
        started_at=reader.number("startedAt", None),
        stop_requested_at=reader.number("stopRequestedAt", None),
        killed=reader.flag("killed", False),
        restarts=reader.integer("restarts", 0),
        restart_times=tuple(reader.numbers("restartTimes")),
        crash_streak=reader.integer("crashStreak", 0),
        failures=reader.integer("failures", 0),
        last_exit=last_exit,
        stopped_on_purpose=reader.flag("stoppedOnPurpose", False),
        started=reader.flag("started", False),
        ready=reader.flag("ready", False),
        unhealthy=reader.text("unhealthy", ""),
        hook=hook,
        hook_kind=HookKind(reader.text("hookKind")) if reader.raw("hookKind", None) is not None else None,
        hook_started_at=reader.number("hookStartedAt", None),
        hook_killed=reader.flag("hookKilled", False),
        over_memory=reader.text("overMemory", ""),
        cgroup=reader.text("cgroup", ""),
        slot_since=reader.number("slotSince", None),
        ready_since=reader.number("readySince", None),
        pre_start_passed=reader.flag("preStartPassed", False),
        deadline_from=reader.number("deadlineFrom", None),
        frozen_since=reader.number("frozenSince", None),
        deadline_exceeded=reader.flag("deadlineExceeded", False),
    )
    reader.done()
    return record
