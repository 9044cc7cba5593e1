"""Event records and their fan-out. Every state change of a replica is an event.

The reconciler emits; subscribers (the `run` printer, later the store and `events -w`) receive. A
subscriber that raises is reported on stderr once per event and never stops the loop.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from enum import Enum
from typing import NamedTuple

from .reader import Reader


class EventType(str, Enum):
    APPLIED = "Applied"
    ADOPTED = "Adopted"
    INVALID = "Invalid"  # a watched manifest became invalid: nothing was changed
    STARTED = "Started"
    START_FAILED = "StartFailed"
    EXITED = "Exited"
    BACKOFF = "BackOff"
    WAITING = "Waiting"
    RESTARTING = "Restarting"  # asked for by `orchestrator restart`, or an apply of what had failed for good
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
    STORE_BUSY = "StoreBusy"  # another program holds the state database's lock: run state is saved later
    STORE_LOST = "StoreLost"  # state.db was deleted or replaced under the daemon: written anew from memory
    ROLLOUT_STARTED = "RolloutStarted"
    REPLICA_AVAILABLE = "ReplicaAvailable"  # a new-revision replica of a rollout became available
    ROLLOUT_COMPLETE = "RolloutComplete"
    ROLLOUT_FAILED = "RolloutFailed"
    ROLLBACK_STARTED = "RollbackStarted"
    ROLLED_BACK = "RolledBack"  # a rollback completed: the process is held on the stable revision
    ROLLOUT_PAUSED = "RolloutPaused"
    ROLLOUT_RESUMED = "RolloutResumed"
    SOCKET_BOUND = "SocketBound"
    SOCKET_LOST = "SocketLost"
    SYNC_ADDED = "SyncAdded"  # a GitSync is kept (its key: gitsync/NAME)
    SYNC_REMOVED = "SyncRemoved"
    SYNC_FETCHED = "SyncFetched"  # a new commit fetched, or the repo reachable again
    SYNC_APPLIED = "SyncApplied"  # a commit applied as a revision
    SYNC_FAILED = "SyncFailed"  # a commit refused (invalid, missing path, empty) or the repo not reached
    SYNC_SKIPPED = "SyncSkipped"  # not applied now: a sync window, or suspended
    SYNC_SUSPENDED = "SyncSuspended"
    SYNC_RESUMED = "SyncResumed"
    DRIFT_DETECTED = "DriftDetected"  # an owned object changed outside its GitSync
    SELF_HEALED = "SelfHealed"
    PRUNE_SKIPPED = "PruneSkipped"
    ACCESS_DENIED = "AccessDenied"  # a request refused by the TCP listener (no valid token, a read token, a Host)
    ALERT_PENDING = "AlertPending"  # an AlertRule's condition holds for a replica; not for long enough yet
    ALERT_FIRING = "AlertFiring"
    ALERT_RESOLVED = "AlertResolved"
    ALERT_SILENCED = "AlertSilenced"  # a silence was made (or ended)
    NOTIFICATION_SENT = "NotificationSent"
    NOTIFICATION_FAILED = "NotificationFailed"  # a delivery failed (retried), or was given up
    CRONJOB_RUN = "CronJobRun"  # a CronJob started a run (a Job of its own)
    CRONJOB_SKIPPED = "CronJobSkipped"  # a due run not started (Forbid), or a run replaced (Replace)
    QUEUE_PREEMPTED = "Preempted"  # a queued Job suspended (frozen) or stopped for a higher one (Requeue)
    QUEUE_RESUMED = "Resumed"  # a suspended Job thawed
    CRONJOB_MISSED = "MissedSchedule"  # scheduled times passed while the daemon was down (or past the deadline)
    FLEET_JOINED = "NodeRegistered"  # fleet mode: this node registered under a lease (a new one, or its own again)
    ETCD_UNREACHABLE = "EtcdUnreachable"  # fleet mode: etcd not reached; what runs goes on running
    ETCD_REACHABLE = "EtcdReachable"
    FLEET_CLAIMED = "Claimed"  # a mode One election won, or a Spread replica claimed, by this node
    FLEET_RELEASED = "Released"  # a claim given back (the object moved away, or left this node's selector)
    FENCED = "Fenced"  # etcd not reached for TTL less the margin: mode One processes stopped here
    FLEET_REFUSED = "FleetSpecRefused"  # a spec in etcd that does not validate: not run (the last good one is kept)


class Event(NamedTuple):
    """One change of state (a named tuple, as errors.py says why: the CLI's start-up skips dataclasses)."""

    at: float  # wall-clock time, seconds since the epoch (for people)
    type: EventType
    key: str  # `namespace/name` of the object, or "" for events about the orchestrator itself
    message: str
    replica: int | None = None
    pid: int | None = None
    id: int | None = None  # its number in the daemon's event log, given as it is emitted (None outside one)

    @property
    def subject(self) -> str:
        if not self.key:
            return "orchestrator"
        return self.key if self.replica is None else f"{self.key}[{self.replica}]"

    @classmethod
    def from_json(cls, value: object) -> Event:
        """The inverse of to_json; a malformed value raises ValueError naming the field."""
        reader = Reader(value, "")
        event = cls(
            at=reader.number("time"),
            type=reader.enum("type", EventType),
            key=reader.text("object"),
            message=reader.text("message", ""),
            replica=reader.integer("replica", None),
            pid=reader.integer("pid", None),
            id=reader.integer("id", None),
        )
        reader.done()
        return event

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "time": self.at,
            "type": self.type.value,
            "object": self.key,
            "replica": self.replica,
            "pid": self.pid,
            "message": self.message,
        }


def event_line(event: Event) -> str:
    """One event as people read it, in the daemon's log and `run`'s output: local time to the millisecond."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.at)) + f".{int(event.at * 1000) % 1000:03d}"
    return f"{stamp} {event.subject} {event.type.value}: {event.message}"


Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self, numbers: Iterator[int] | None = None) -> None:
        """`numbers`: the ids events get as they are emitted (the daemon's event log continues from its
        last), so that every subscriber, a live follower as much as the store, sees the same id."""
        self._subscribers: list[Subscriber] = []
        self._numbers = numbers
        self._numbering = threading.RLock()

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = [*self._subscribers, subscriber]  # copy on write: emit may run on another thread

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers = [s for s in self._subscribers if s is not subscriber]

    def emit(self, event: Event) -> None:
        # Emitted from several threads: one id each, and every subscriber gets them in that order (a follower
        # that resumes after id n must have had every id below it). Reentrant: a subscriber may emit.
        with self._numbering:
            if self._numbers is not None and event.id is None:
                event = event._replace(id=next(self._numbers))
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception as error:  # noqa: BLE001 - a broken subscriber must not stop the reconciler
                try:
                    print(f"orchestrator: event subscriber failed: {error!r}", file=sys.stderr)
                except (OSError, ValueError):
                    pass  # stderr is gone too (a closed pipe): nothing left to tell, and the loop goes on
