"""Event records and their fan-out. Every state change of a replica is an event.

The reconciler emits; subscribers (the `run` printer, later the store and `events -w`) receive. A
subscriber that raises is reported on stderr once per event and never stops the loop.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class EventType(str, Enum):
    APPLIED = "Applied"
    ADOPTED = "Adopted"
    INVALID = "Invalid"  # a watched manifest became invalid: nothing was changed
    STARTED = "Started"
    START_FAILED = "StartFailed"
    EXITED = "Exited"
    BACKOFF = "BackOff"
    WAITING = "Waiting"
    RESTARTING = "Restarting"  # asked for by `orchestrator restart`
    HOOK_FAILED = "HookFailed"
    PROBE_PASSED = "ProbePassed"
    PROBE_FAILED = "ProbeFailed"
    STOPPING = "Stopping"
    KILLING = "Killing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SCALED = "Scaled"  # an autoscaled pool changed size
    LIMIT_EXCEEDED = "LimitExceeded"
    LIMIT_RESTORED = "LimitRestored"
    LIMIT_NOT_APPLIED = "LimitNotApplied"
    SHUTDOWN = "Shutdown"
    INTERNAL_ERROR = "InternalError"  # a bug met by the loop: reported, and the loop goes on
    LOG_ROTATION_FAILED = "LogRotationFailed"


@dataclass(frozen=True)
class Event:
    at: float  # wall-clock time, seconds since the epoch (for people)
    type: EventType
    key: str  # `namespace/name` of the object, or "" for events about the orchestrator itself
    message: str
    replica: int | None = None
    pid: int | None = None

    @property
    def subject(self) -> str:
        if not self.key:
            return "orchestrator"
        return self.key if self.replica is None else f"{self.key}[{self.replica}]"

    def to_json(self) -> dict[str, object]:
        return {
            "time": self.at,
            "type": self.type.value,
            "object": self.key,
            "replica": self.replica,
            "pid": self.pid,
            "message": self.message,
        }


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = [*self._subscribers, subscriber]  # copy on write: emit may run on another thread

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = [s for s in self._subscribers if s is not subscriber]

    def emit(self, event: Event) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception as error:  # noqa: BLE001 - a broken subscriber must not stop the reconciler
                try:
                    print(f"orchestrator: event subscriber failed: {error!r}", file=sys.stderr)
                except (OSError, ValueError):
                    pass  # stderr is gone too (a closed pipe): nothing left to tell, and the loop goes on
