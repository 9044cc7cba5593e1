"""The reconciler: the single writer of run state. observe -> plan -> execute, on every wake-up.

One thread, one selector. It sleeps until a child ends (its pidfd becomes readable), a message or a
signal arrives on the wake pipe, the plan's next wake-up is due, or the periodic resync comes round. A
wake-up only means "look again": every pass reads the clock once and plans from the whole desired state
and every record, whatever woke it. Other threads (probes, the API, watchers) only `post` messages.
"""

from __future__ import annotations

import functools
import os
import queue
import selectors
import signal
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..core.clock import Clock
from ..core.errors import SpawnError
from ..core.events import Event, EventBus, EventType
from ..core.model import (
    DesiredState,
    Exit,
    Hook,
    HookKind,
    Kind,
    Limits,
    OnFailure,
    Phase,
    ProcessIdentity,
    ProcessSpec,
    Reason,
    ReplicaId,
    ReplicaRecord,
    nice_of,
)
from ..host.execute import STATE_MARKER, Child, Executor
from ..host.limits import THROTTLED_NICE, Breach, LimitWatch, Watched
from ..host.logindex import LogIndexer
from ..host.logs import Rotation
from ..host.metrics import Sampler
from ..host.observe import marked_session_leaders
from ..host.probes import Prober, Transition
from ..host.subreaper import marks
from ..planning.autoscale import keep_pool_size
from ..planning.diff import needs_restart
from ..planning.graph import desired_state
from ..planning.plan import Forget, Kill, KillHook, Plan, Start, Stop, StopReason, Waiting, plan
from ..planning.policy import record_exit, record_start, record_start_failure
from ..planning.rollout import Note, NoteKind, Progress, RolloutState, revision_hash
from .folding import (
    STOP_WORDS,
    exit_reason,
    hook_ended,
    how_it_ended,
    probe_folded,
    probe_targets,
    signal_name,
    what_next,
    without_hook,
)

Message = Callable[["Reconciler"], None]
_SIGCHLD = bytes([signal.SIGCHLD])
_LOG_WRITTEN = "a quiet log file was written to"  # the selector's data for the rotation's inotify descriptor


RecordSink = Callable[[Mapping[ReplicaId, ReplicaRecord]], object]


class RolloutOwner:
    """Who decides what a rollout's end means (the daemon's operations: revisions, holds, rollback). Without
    one (`orchestrator run`), a failed rollout pauses. Called on the loop's thread."""

    def rollout_started(self, key: str, state: RolloutState) -> None:
        """A rollout began (or rolled over to a new target)."""

    def rollout_complete(self, key: str, state: RolloutState) -> None:
        """Every replica runs the target revision and is available: it is stable."""

    def rollout_failed(self, key: str, state: RolloutState, reason: str) -> ProcessSpec | None:
        """The rollout failed: the spec to roll back to (already made desired), or None to pause."""
        return None


class Reconciler:
    def __init__(
        self,
        executor: Executor,
        clock: Clock,
        events: EventBus,
        resync_seconds: float = 10.0,
        persist: RecordSink | None = None,
        prober: Prober | None = None,
        limit_watch: LimitWatch | None = None,
        sampler: Sampler | None = None,
        log_index: LogIndexer | None = None,
    ) -> None:
        """`persist` receives the records after every pass (the daemon's store); `run` keeps none.
        `prober` is told after every pass which replicas to probe; its transitions come back as messages."""
        self.executor = executor
        self.clock = clock
        self.events = events
        self.resync_seconds = resync_seconds
        self.persist = persist
        self.prober = prober
        self.limit_watch = limit_watch
        self.sampler = sampler
        self.log_index = log_index  # told of every start and of what runs: it keeps when each log line came
        self._log_offsets: dict[ReplicaId, int] = {}
        self._hook_pidfds: dict[int, int] = {}  # pid -> pidfd of running lifecycle hooks
        # The spec each running (or passed) preStart hook ran for: a spec changed meanwhile runs its own.
        self._pre_start_for: dict[ReplicaId, ProcessSpec] = {}
        self._rotation = Rotation(executor.log_dir)
        self._rotation_failed: dict[ReplicaId, str] = {}
        self._closed = False
        self.desired = DesiredState.empty()
        self.records: dict[ReplicaId, ReplicaRecord] = {}
        self.waiting: dict[ReplicaId, Waiting] = {}
        self.shutting_down = False
        self._messages: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        if self._rotation.fd >= 0:
            self._selector.register(self._rotation.fd, selectors.EVENT_READ, _LOG_WRITTEN)
        self._pidfds: dict[ReplicaId, int] = {}
        # Rollouts under way (planning/rollout.py), by key, as the last plan left them; paused keys
        # (`rollout pause`); where each stands. Restored by the daemon from its store after a restart.
        self.rollouts: dict[str, RolloutState] = {}
        self.paused: set[str] = set()
        self.held: dict[str, str] = {}  # keys not to start now, and why (Jobs a queue has not admitted)
        self.rollout_progress: dict[str, Progress] = {}
        self.rollout_owner = RolloutOwner()
        self.rollouts_changed = False  # since the daemon last saved them

    # -- the only ways in from outside the loop -------------------------------------------------

    @property
    def wake_fd(self) -> int:
        """Write a byte here (or hand it to signal.set_wakeup_fd) to wake the loop."""
        return self._wake_w

    def post(self, message: Message) -> None:
        """Run `message(self)` on the loop's thread at its next wake-up."""
        if self._closed:
            return  # a late probe result or request: the loop is gone, and so is its pipe
        self._messages.put(message)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    # -- run state changes (loop thread only) ---------------------------------------------------

    def set_desired(self, desired: DesiredState) -> None:
        kept = [keep_pool_size(spec, self.desired.specs.get(key)) for key, spec in desired.specs.items()]
        if any(spec is not desired.specs[spec.key] for spec in kept):
            desired = desired_state(kept)  # autoscaled pools keep the size they were given
        self.desired = desired
        # Priority is applied in place: a running process is reniced, not restarted.
        for rid, record in self.records.items():
            spec = desired.specs.get(rid.key)
            if (spec is not None and record.process is not None and spec.priority != record.spec.priority
                    and nice_of(spec.priority) != nice_of(record.spec.priority)):
                self.executor.renice(record.process, nice_of(spec.priority))

    def shut_down(self, force: bool = False) -> None:
        """Stop everything in reverse dependency order; with force, SIGKILL every group now."""
        if not self.shutting_down:
            self.shutting_down = True
            self._emit(EventType.SHUTDOWN, "", "stopping everything in reverse dependency order")
        self.desired = DesiredState.empty()
        if force:
            self._emit(EventType.SHUTDOWN, "", "forced: killing every process group")
            for rid, record in self.records.items():
                if record.hook is not None:
                    self.executor.kill_group(record.hook)
                if record.process is not None:
                    self.executor.kill_group(record.process)
                    stopping_since = record.stop_requested_at or self.clock.monotonic()
                    self.records[rid] = replace(record, killed=True, stop_requested_at=stopping_since)

    def adopt(self, records: Mapping[ReplicaId, ReplicaRecord]) -> None:
        """Take over the records of an earlier orchestrator: watch what still runs, and count what ended
        while nobody watched as an exit (so it is restarted per policy). Nothing is started twice."""
        now = self.clock.monotonic()
        for rid, record in records.items():
            # A hook of the earlier orchestrator is not adopted: stop_strays ends it, and it runs again
            # if it is still needed (a preStart before the next start).
            record = without_hook(record)
            if record.process is None:
                self.records[rid] = record
                continue
            stopping_after_hook = records[rid].hook_kind is HookKind.PRE_STOP
            child = self.executor.adopt(rid, record.process)
            if child is not None:
                self.records[rid] = replace(record, cgroup=child.cgroup)
                if stopping_after_hook:  # its preStop hook was cut short with its orchestrator: stop it now
                    self.executor.signal_group(record.process, record.spec.shutdown.signal)
                self._log_offsets[rid] = child.log_offset
                self._watch(rid, child.process.pid, child.pidfd)
                self._emit(EventType.ADOPTED, rid, f"adopted pid {child.process.pid}", child.process.pid)
                continue
            started = record.started_at if record.started_at is not None else now
            ended = record_exit(record, Exit(None, None, Reason.UNKNOWN, now, max(0.0, now - started)))
            self.records[rid] = ended
            detail = "stopped" if ended.stopped_on_purpose else self._what_next(ended)
            self._emit(EventType.EXITED, rid, f"pid {record.process.pid} ended while unwatched; {detail}",
                       record.process.pid)

    def stop_strays(self, marker: str) -> None:
        """Kill replicas that carry this state dir's marker but no record: started by an orchestrator that
        died before saving them. Adopting them would mean guessing their spec; killing them lets the plan
        start exactly what is desired, with no duplicate."""
        known = {record.process.pid for record in self.records.values() if record.process is not None}
        running = self.executor.running_instances()
        for pid in marked_session_leaders(STATE_MARKER, marker, known | {os.getpid()}):
            if marks(pid, marker)[1] in running:
                continue  # a recorded replica's own descendant in a session of its own (it double-forked)
            if self.executor.kill_stray(pid):
                self._emit(EventType.KILLING, "", f"pid {pid} was started for this state dir but never recorded "
                           "(its orchestrator died first): killed its process group", pid)

    def restart(self, key: str) -> int:
        """Restart every replica of `key` now: running ones are stopped (and started again once they
        exit), Failed or BackOff ones start at once. Returns the number of replicas affected."""
        spec = self.desired.specs.get(key)
        if spec is None:
            return 0
        now = self.clock.monotonic()
        count = 0
        for rid, record in list(self.records.items()):
            if rid.key != key:
                continue
            count += 1
            if record.process is not None:
                if record.stop_requested_at is None:
                    shutdown = record.spec.shutdown
                    self._execute(Stop(rid, record.process, shutdown.signal, shutdown.timeout_seconds,
                                       StopReason.RESTART), now)
            else:
                if record.hook is not None:  # a preStart hook: a new start runs a new one
                    self.executor.kill_group(record.hook)
                # A fresh record: the next pass starts it, with a new restart budget.
                del self.records[rid]
                self._pre_start_for.pop(rid, None)
        return count

    def frozen(self, key: str, frozen: bool) -> None:
        """Its queue froze (or thawed) every running replica of `key`: a Job's deadline does not run meanwhile."""
        now = self.clock.monotonic()
        for rid, record in list(self.records.items()):
            if rid.key != key or record.process is None:
                continue
            if frozen and record.frozen_since is None:
                self.records[rid] = replace(record, frozen_since=now)
            elif not frozen and record.frozen_since is not None:
                moved = None if record.deadline_from is None else record.deadline_from + (now - record.frozen_since)
                self.records[rid] = replace(record, frozen_since=None, deadline_from=moved)

    @property
    def alive(self) -> int:
        """Processes and hooks still running (a shut-down loop waits for both)."""
        return sum(1 for record in self.records.values() if record.process is not None) + len(self._hook_pidfds)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, until: Callable[[Reconciler], bool] | None = None) -> None:
        """Reconcile until shut down and every process has ended (or until `until(self)` is true)."""
        now = self.clock.monotonic()
        next_resync = now + self.resync_seconds
        while True:
            self._drain_messages()
            current = self.reconcile(now)
            self._guarded("saving run state", self._after_pass)
            if until is not None and until(self):
                return
            if self.shutting_down and self.alive == 0:
                return
            deadline = min(next_resync, self._rotation.next_at)
            if current.wake_at is not None:
                deadline = min(deadline, current.wake_at)
            ready = self._selector.select(max(0.0, deadline - self.clock.monotonic()))
            now = self.clock.monotonic()
            if now >= self._rotation.next_at:
                self._rotate_logs(now)
            if now >= next_resync:
                next_resync = now + self.resync_seconds
                self.executor.remove_ended_cgroups()
            # Exits first: orphans a replica's end made must be swept as that end's (a SIGCHLD sweep would
            # take them for a running replica's).
            ready.sort(key=lambda item: item[0].fd == self._wake_r)
            for key, _ in ready:
                if key.fd == self._wake_r:
                    self._drain_wake_pipe()
                elif key.data is _LOG_WRITTEN:
                    self._rotation.woken(now)
                else:
                    self._guarded("an exit", functools.partial(self._child_ended, key.data, now))

    def reconcile(self, now: float) -> Plan:
        """Plan and act until the plan has nothing more to start at `now` (dependents start in later rounds)."""
        while True:
            current = plan(self.desired, self.records, now, self.rollouts, frozenset(self.paused), self.held)
            self._note_rollouts(current, now)
            self._note_waiting(current.waiting)
            if not current.actions:
                return current
            for action in current.actions:
                self._guarded(f"{type(action).__name__} {action.replica}", functools.partial(self._execute, action, now))
            if current.starts == 0:
                current = plan(self.desired, self.records, now, self.rollouts, frozenset(self.paused), self.held)
                self._note_rollouts(current, now)
                return current

    def _note_rollouts(self, current: Plan, now: float) -> None:
        """Keep what the plan says of rollouts, say it in events, and let the owner act on their ends."""
        self.rollout_progress = dict(current.progress)
        before = dict(self.rollouts)
        for key, state in current.rollouts.items():
            self.rollouts_changed = True
            if state is None:
                self.rollouts.pop(key, None)
            else:
                self.rollouts[key] = state
        for note in current.notes:
            self._guarded(f"rollout of {note.key}", functools.partial(self._rollout_note, note, before, now))

    def _rollout_note(self, note: Note, before: Mapping[str, RolloutState], now: float) -> None:
        key = note.key
        if note.kind is NoteKind.STARTED:
            self._emit(EventType.ROLLOUT_STARTED, key, note.message)
            if key in self.rollouts:
                self.rollout_owner.rollout_started(key, self.rollouts[key])
        elif note.kind is NoteKind.PROGRESS:
            self._emit(EventType.REPLICA_AVAILABLE, key, note.message)
        elif note.kind is NoteKind.COMPLETE:
            ended = before.get(key)
            if ended is not None and ended.rollback:
                self._emit(EventType.ROLLED_BACK, key, f"rolled back to {ended.target}: {note.message}; held there "
                           "until the manifest changes or `orchestrator rollout retry`")
            else:
                self._emit(EventType.ROLLOUT_COMPLETE, key, note.message)
            if ended is not None:
                self.rollout_owner.rollout_complete(key, ended)
        elif note.kind is NoteKind.FAILED:
            state = self.rollouts[key]
            spec = self.desired.specs.get(key)
            if state.rollback or spec is None:
                self._emit(EventType.ROLLOUT_FAILED, key, f"rollback failed ({note.reason}): {note.message}; "
                           "paused, nothing more is done by itself")
                return
            self._emit(EventType.ROLLOUT_FAILED, key, f"{note.reason}: {note.message}")
            if spec.strategy.on_failure is not OnFailure.ROLLBACK:
                self._emit(EventType.ROLLOUT_PAUSED, key, "onFailure: Pause: the replicas stay as they are "
                           "(`orchestrator rollout retry` or a changed manifest rolls again)")
                return
            target = self.rollout_owner.rollout_failed(key, state, note.reason)
            if target is None:
                self._emit(EventType.ROLLOUT_PAUSED, key, "no stable revision to roll back to: paused")
                return
            to = revision_hash(target)
            self.rollouts[key] = RolloutState(target=to, started_at=now, progress_at=now, rollback=True,
                                              source=state.target)
            self.rollouts_changed = True
            self._emit(EventType.ROLLBACK_STARTED, key, f"rolling back from {state.target} to {to}")

    def pause_rollout(self, key: str, paused: bool) -> bool:
        """`rollout pause` / `resume`: does it change anything? A resumed rollout's deadline counts anew."""
        if (key in self.paused) == paused:
            return False
        now = self.clock.monotonic()
        if paused:
            self.paused.add(key)
        else:
            self.paused.discard(key)
            state = self.rollouts.get(key)
            if state is not None:
                self.rollouts[key] = replace(state, progress_at=now)
        self.rollouts_changed = True
        self._emit(EventType.ROLLOUT_PAUSED if paused else EventType.ROLLOUT_RESUMED, key,
                   "rollout paused: new revisions are recorded, not rolled" if paused else "rollout resumed")
        return True

    def retry_rollout(self, key: str) -> None:
        """Forget a failed rollout of `key`: the next pass rolls toward the desired spec again."""
        state = self.rollouts.pop(key, None)
        if state is not None:
            self.rollouts_changed = True

    def _execute(self, action: Start | Stop | Kill | KillHook | Forget, now: float) -> None:
        if isinstance(action, Start):
            self._start(action, now)
        elif isinstance(action, Stop):
            self._stop(action, now)
        elif isinstance(action, KillHook):
            self.executor.kill_group(action.process)
            record = self.records[action.replica]
            self.records[action.replica] = replace(record, hook_killed=True)
            kind = record.hook_kind.value if record.hook_kind else "hook"
            self._emit(EventType.KILLING, action.replica, f"{kind} hook ran past its timeout: sent SIGKILL",
                       action.process.pid)
        elif isinstance(action, Kill):
            self.executor.kill_group(action.process)
            record = self.records[action.replica]
            self.records[action.replica] = replace(record, killed=True)
            why = (f"over its memory limit ({record.over_memory})" if record.over_memory and
                   record.stop_requested_at is None else "did not stop in time")
            self._emit(EventType.KILLING, action.replica, f"{why}: sent SIGKILL to its process group",
                       action.process.pid)
        else:
            if self.shutting_down and self.records[action.replica].spec.kind is Kind.JOB:
                # What a Job did outlives the daemon: a daemon started again with the same desired state
                # must not run a finished migration a second time (as after a SIGKILL, where nothing is forgotten).
                return
            del self.records[action.replica]
            self._pre_start_for.pop(action.replica, None)
            self.waiting.pop(action.replica, None)

    def _stop(self, action: Stop, now: float) -> None:
        """Ask a replica to stop: its preStop hook first, if it has one, then the stop signal."""
        rid = action.replica
        record = self.records[rid]
        if record.hook is not None:  # a postStart hook still running has no more reason to
            self.executor.kill_group(record.hook)
            record = without_hook(record)
        pre_stop = record.spec.hooks.pre_stop
        record = replace(record, stop_requested_at=now,
                         deadline_exceeded=record.deadline_exceeded or action.reason is StopReason.DEADLINE_EXCEEDED)
        if pre_stop is not None:
            try:
                hook = self.executor.spawn_hook(rid, record.spec, pre_stop)
            except Exception as error:  # noqa: BLE001 - the stop must happen whatever the hook's trouble
                self._emit(EventType.HOOK_FAILED, rid, f"preStop hook: {error}; stopping now")
            else:
                self.records[rid] = replace(record, hook=hook.process, hook_kind=HookKind.PRE_STOP,
                                            hook_started_at=now, hook_killed=False)
                self._watch_hook(rid, hook)
                self._emit(EventType.STOPPING, rid, f"{self._why_stopped(action)}: running the preStop hook, "
                           f"then {action.signal}; SIGKILL after {action.timeout_seconds:g} s", action.process.pid)
                return
        self.records[rid] = record
        self.executor.signal_group(action.process, action.signal)
        self._emit(EventType.STOPPING, rid,
                   f"{self._why_stopped(action)}: sent {action.signal}, SIGKILL after {action.timeout_seconds:g} s",
                   action.process.pid)

    def _why_stopped(self, action: Stop) -> str:
        if action.reason is StopReason.REMOVED and self.shutting_down:
            return "shutting down"
        return STOP_WORDS[action.reason]

    def _start(self, action: Start, now: float) -> None:
        rid, spec = action.replica, action.spec
        previous = self.records.get(rid)
        pre_start = spec.hooks.pre_start
        passed_for = self._pre_start_for.pop(rid, None)
        # A preStart that passed for this spec, or for one with the same preStart that differs only where
        # no restart is needed (replicas, labels): its own preStart has then run.
        passed = (previous is not None and previous.pre_start_passed and passed_for is not None
                  and passed_for.hooks.pre_start == pre_start and not needs_restart(passed_for, spec))
        if pre_start is not None and not passed:
            self._run_pre_start(rid, spec, pre_start, previous, now)
            return
        if self.log_index is not None:  # before the fork: the start is marked before the process prints
            self.log_index.starting(rid, self.clock.wall(), previous.last_exit if previous else None)
        try:
            child = self.executor.spawn(rid, spec)
        except Exception as error:  # noqa: BLE001 - a start that cannot happen, for whatever reason, is an exit
            # (a SpawnError says why in words; anything else is a bug, still kept under the backoff, never
            # retried in a tight loop)
            if not isinstance(error, SpawnError):
                error = SpawnError(f"internal error: {error!r}")
            record = record_start_failure(previous, spec, str(error), now)
            self.records[rid] = record
            self._emit(EventType.START_FAILED, rid, f"{error}; {self._what_next(record)}")
            return
        record = replace(record_start(previous, spec, child.process, now), cgroup=child.cgroup)
        if not spec.probes.startup and not spec.probes.readiness:
            record = replace(record, ready=True, ready_since=now)
        self.records[rid] = record
        self._log_offsets[rid] = child.log_offset
        self._watch(rid, child.process.pid, child.pidfd)
        restarts = f" (restart {record.restarts})" if record.restarts and record is not previous else ""
        self._emit(EventType.STARTED, rid, f"started pid {child.process.pid}{restarts}", child.process.pid)
        self._rotation.soon(now)  # how fast its log grows is learnt from its first moments
        for warning in child.warnings:
            self._emit(EventType.LIMIT_NOT_APPLIED, rid, f"could not set {warning}", child.process.pid)
        if spec.hooks.post_start is not None:
            try:
                hook = self.executor.spawn_hook(rid, spec, spec.hooks.post_start)
            except Exception as error:  # noqa: BLE001 - whatever it is, the process runs on; the hook failed
                self._emit(EventType.HOOK_FAILED, rid, f"postStart hook: {error}")
                return
            self.records[rid] = replace(record, hook=hook.process, hook_kind=HookKind.POST_START,
                                        hook_started_at=now, hook_killed=False)
            self._watch_hook(rid, hook)

    def _run_pre_start(self, rid: ReplicaId, spec: ProcessSpec, hook: Hook, previous: ReplicaRecord | None,
                       now: float) -> None:
        try:
            child = self.executor.spawn_hook(rid, spec, hook)
        except Exception as error:  # noqa: BLE001 - whatever it is, the start fails under the backoff
            record = record_start_failure(previous, spec, f"preStart hook: {error}", now, Reason.HOOK_FAILED)
            self.records[rid] = record
            self._emit(EventType.HOOK_FAILED, rid, f"preStart hook: {error}; {self._what_next(record)}")
            return
        base = previous if previous is not None else ReplicaRecord(spec=spec)
        self.records[rid] = replace(base, hook=child.process, hook_kind=HookKind.PRE_START, hook_started_at=now,
                                    hook_killed=False, pre_start_passed=False)
        self._pre_start_for[rid] = spec
        self._watch_hook(rid, child)

    def _watch_hook(self, rid: ReplicaId, child: Child) -> None:
        self._hook_pidfds[child.process.pid] = child.pidfd
        self._selector.register(child.pidfd, selectors.EVENT_READ, (rid, child.process.pid, "hook"))

    def _hook_ended(self, rid: ReplicaId, pid: int, now: float) -> None:
        pidfd = self._hook_pidfds.pop(pid)
        self._selector.unregister(pidfd)
        status = self.executor.reap(pid)
        if status is None:
            self._watch_hook(rid, Child(rid, ProcessIdentity(pid, 0), pidfd, 0))
            return
        record = self.records.get(rid)
        if record is None or record.hook is None or record.hook.pid != pid:
            return  # a hook whose replica moved on (killed when it stopped): reaped, nothing more
        end = hook_ended(record, self.desired.specs.get(rid.key, record.spec), status, now)
        self.records[rid] = end.record
        if end.start_failed:
            self._emit(EventType.HOOK_FAILED, rid, f"{end.message}; {self._what_next(end.record)}", pid)
        elif end.stop_now:
            process = end.record.process
            if process is not None:
                self.executor.signal_group(process, end.record.spec.shutdown.signal)
                self._emit(EventType.STOPPING, rid, f"{end.message}: sent {end.record.spec.shutdown.signal}",
                           process.pid)
        elif end.message:
            self._emit(EventType.HOOK_FAILED, rid, end.message, pid)

    def _child_ended(self, data: Any, now: float) -> None:
        if len(data) == 3:
            self._hook_ended(data[0], data[1], now)
            return
        rid, pid = data
        pidfd = self._pidfds.pop(rid)
        self._selector.unregister(pidfd)
        status = self.executor.reap(pid)  # closes the pidfd
        if status is None:  # not ended after all: keep watching
            self._watch(rid, pid, pidfd)
            return
        record = self.records[rid]
        if record.hook is not None and record.hook_kind is not HookKind.PRE_START:
            self.executor.kill_group(record.hook)  # its process is gone: so goes its hook (reaped when it ends)
            record = without_hook(record)
        started = record.started_at if record.started_at is not None else now
        reason, message = exit_reason(record, status)
        record = record_exit(record, Exit(status.code, status.signal, reason, now, now - started, message))
        self.records[rid] = record
        if record.stopped_on_purpose and status.signal is not None and signal_name(status.signal) in (
                record.spec.shutdown.signal, "SIGKILL"):
            # The signal it was sent: a stop that went as asked (a SIGKILL: its shutdown timeout ran out).
            killed = status.signal == signal.SIGKILL and record.spec.shutdown.signal != "SIGKILL"
            how = f"stopped by {signal_name(status.signal)}" + (" after its shutdown timeout" if killed else "")
            self._emit(EventType.EXITED, rid, how, pid)
        else:
            how = how_it_ended(status)
            detail = "stopped" if record.stopped_on_purpose else self._what_next(record)
            self._emit(EventType.EXITED, rid, f"{how} ({reason.value}); {detail}", pid)
        self._end_orphans()  # what left its process group ends with it too

    def _what_next(self, record: ReplicaRecord) -> str:
        return what_next(self.desired.specs.get(record.spec.key), record, self.shutting_down)

    def _note_waiting(self, waiting: tuple[Waiting, ...]) -> None:
        """Remember who waits and why; say so once when a replica starts waiting on its dependencies."""
        current = {w.replica: w for w in waiting}
        for rid, entry in current.items():
            before = self.waiting.get(rid)
            if entry.phase is Phase.WAITING and (before is None or before.reason != entry.reason):
                self._emit(EventType.WAITING, rid, entry.reason)
        self.waiting = current

    def _emit(self, type: EventType, subject: ReplicaId | str, message: str, pid: int | None = None) -> None:
        if isinstance(subject, ReplicaId):
            event = Event(self.clock.wall(), type, subject.key, message, subject.index, pid)
        else:
            event = Event(self.clock.wall(), type, subject, message, None, pid)
        self.events.emit(event)

    def _drain_messages(self) -> None:
        while True:
            try:
                message = self._messages.get_nowait()
            except queue.Empty:
                return
            self._guarded("a request", functools.partial(message, self))

    def _after_pass(self) -> None:
        if self.persist is not None:
            self.persist(self.records)
        if self.prober is not None:
            self.prober.sync(probe_targets(self.records, self.desired, self._log_offsets))
        if self.limit_watch is not None:
            targets = {}
            for rid, record in self.records.items():
                if record.process is not None and record.spec.limits.memory_or_cpu:
                    watched = self._watched(record.process, record.spec.limits)
                    if watched is not None:
                        targets[rid] = watched
            self.limit_watch.sync(targets)
        if self.log_index is not None:
            self.log_index.sync([rid for rid, record in self.records.items() if record.process is not None])
        if self.sampler is not None:
            self.sampler.sync({rid: r.process for rid, r in self.records.items() if r.process is not None},
                              {key: (spec.autoscale, spec.replicas) for key, spec in self.desired.specs.items()
                               if spec.autoscale is not None})

    def _watched(self, process: ProcessIdentity, limits: Limits) -> Watched | None:
        """What the limit watch looks at: the tree's usage, or (the kernel enforcing) its cgroup's OOM
        kills; None where the kernel does it all (cgroup v2 ends the whole cgroup on an OOM kill)."""
        contained = self.executor.cgroup_of(process.pid)
        if contained is None:
            return Watched(process, limits)
        group, oom_kills = contained
        return Watched(process, limits, group, oom_kills) if group.partial_oom_kills else None

    def _guarded(self, what: str, work: Callable[[], object]) -> None:
        """Do `work`; a bug in it becomes an event and the loop goes on: the processes it keeps running
        must not lose their supervisor to one bad action."""
        try:
            work()
        except Exception as error:  # noqa: BLE001 - the loop is the last line of defence
            self._emit(EventType.INTERNAL_ERROR, "", f"{what} failed: {error!r}")

    def _drain_wake_pipe(self) -> None:
        """Empty the wake pipe; a SIGCHLD among the signals written there (by signal.set_wakeup_fd) means a
        child ended, perhaps one inherited from a replica's tree: it is reaped, and orphans of ended
        replicas are ended."""
        child_ended = False
        try:
            while data := os.read(self._wake_r, 4096):
                child_ended = child_ended or _SIGCHLD in data
        except BlockingIOError:
            pass
        if child_ended:
            self._guarded("ending orphans", self._end_orphans)

    def _end_orphans(self) -> None:
        for mark, pid in self.executor.end_orphans():
            key, _, index = mark.rpartition(".")
            self._emit(EventType.KILLING, ReplicaId(key, int(index)) if index.isdigit() else key,
                       f"pid {pid} left the replica's process group and outlived it: killed", pid)

    def probe_transition(self, transition: Transition) -> None:
        """A probe crossed a threshold: fold it into the record of the process it was about."""
        record = self.records.get(transition.replica)
        if record is None or record.process != transition.process or record.stop_requested_at is not None:
            return  # about a process that is gone or going
        spec = self.desired.specs.get(transition.replica.key, record.spec)
        folded = probe_folded(record, spec, transition, self.clock.monotonic())
        if folded is None:
            return
        record, consequence = folded
        self.records[transition.replica] = record
        event = EventType.PROBE_PASSED if transition.passing else EventType.PROBE_FAILED
        self._emit(event, transition.replica, f"{transition.kind.value} probe {transition.message}; {consequence}",
                   record.process.pid if record.process else None)

    def autoscale(self, key: str, size: int, why: str) -> None:
        """The autoscaler asks for a new pool size: a new desired state, not a revision (a re-apply keeps it)."""
        spec = self.desired.specs.get(key)
        if spec is None or spec.autoscale is None or self.shutting_down:
            return
        size = max(spec.autoscale.min, min(spec.autoscale.max, size))
        if size == spec.replicas:
            return
        specs = {**self.desired.specs, key: replace(spec, replicas=size)}
        self.desired = desired_state(specs.values())
        self._emit(EventType.SCALED, key, f"{spec.replicas} -> {size}: {why}")

    def limit_breach(self, breach: Breach) -> None:
        """The watchdog found a tree over (or back under) a limit: fold it into the record of that process."""
        record = self.records.get(breach.replica)
        if record is None or record.process != breach.process or record.stop_requested_at is not None:
            return
        if breach.resource == "memory":
            self.records[breach.replica] = replace(record, over_memory=breach.message)
            self._emit(EventType.LIMIT_EXCEEDED, breach.replica, f"memory limit exceeded: {breach.message}",
                       record.process.pid if record.process else None)
            return
        spec = self.desired.specs.get(breach.replica.key, record.spec)
        nice = THROTTLED_NICE if breach.over else nice_of(spec.priority)
        self.executor.renice(breach.process, nice)
        what = "over its cpu limit" if breach.over else "back under its cpu limit"
        self._emit(EventType.LIMIT_EXCEEDED if breach.over else EventType.LIMIT_RESTORED, breach.replica,
                   f"{what} ({breach.message}): nice {nice}", breach.process.pid)

    def _rotate_logs(self, now: float) -> None:
        logs = {rid: record.spec.logs for rid, record in self.records.items() if record.process is not None}
        failed = dict(self._rotation.check(logs, now))
        for rid, error in failed.items():
            if self._rotation_failed.get(rid) != str(error):  # a full disk: said once, not every second
                self._emit(EventType.LOG_ROTATION_FAILED, rid, f"log rotation failed: {error}")
        self._rotation_failed = {rid: str(error) for rid, error in failed.items()}

    def _watch(self, rid: ReplicaId, pid: int, pidfd: int) -> None:
        self._pidfds[rid] = pidfd
        self._selector.register(pidfd, selectors.EVENT_READ, (rid, pid))

    def close(self) -> None:
        """Release the loop's resources; processes still running are left as they are (for adoption)."""
        for pidfd in [*self._pidfds.values(), *self._hook_pidfds.values()]:
            self._selector.unregister(pidfd)
        self._pidfds.clear()
        self._hook_pidfds.clear()
        self.executor.release()
        self._closed = True
        self._selector.close()
        self._rotation.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
