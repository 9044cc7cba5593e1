"""Rollout revisions, holds and the rollout verbs: what a rollout's start, end or failure means to the daemon.

Per process, a rollout revision is a distinct hash of the fields that need a restart (planning/rollout.py),
recorded with the global desired-state revision and git commit that brought it. Its spec is that global
revision's snapshot (the store keeps every one), so an entry is a few numbers. A revision is `stable` once a
rollout to it completed, or once every replica of it was seen serving (ready) when the next one was applied.

A failed rollout rolls back to the newest stable revision and the process is then held there: an apply of
the same failed hash keeps the hold (no rollback loop); a different hash, or `rollout retry`, lifts it. A
rollback that fails pauses (the engine does no second automatic action). Everything here runs on the
reconciler's thread, through Operations or the engine's RolloutOwner calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.errors import StoreBusy
from ..core.events import Event, EventType
from ..core.model import Kind, ProcessSpec, ReplicaId
from ..engine.reconcile import Reconciler, RolloutOwner
from ..planning.rollout import RolloutState, revision_hash, rolls
from .control import Conflict, NotFound
from .store import Store

_REVISIONS = "rollout_revisions"
_HOLDS = "rollout_holds"
_STATE = "rollouts"


@dataclass
class Entry:
    """One rollout revision of a process."""

    number: int
    hash: str
    revision: int  # the global desired-state revision that brought it (its spec is in that snapshot)
    git_commit: str | None
    at: float  # wall clock
    stable: bool = False
    status: str = ""  # Progressing, Complete, Failed, RolledBack, Superseded
    reason: str = ""


@dataclass
class Hold:
    """A process kept on a good revision after a rollback or an undo, until the manifest changes."""

    revision: int  # the rollout revision it is held at
    failed: str  # the hash that is not rolled to again (the manifest's, when held)
    manifest: int  # the global revision whose snapshot holds the manifest's spec (for `rollout retry`)
    reason: str
    at: float


class Rollouts(RolloutOwner):
    def __init__(self, reconciler: Reconciler, store: Store, wall: Any, emit: Any) -> None:
        self.reconciler = reconciler
        self.store = store
        self.wall = wall  # () -> wall-clock seconds
        self.emit = emit  # (Event) -> None
        self.history: dict[str, list[Entry]] = {}
        self.holds: dict[str, Hold] = {}
        self.commit: Any = None  # set by Operations: (specs by key, action, message) -> global revision
        self.revision: Any = lambda: 0  # () -> the current global revision
        reconciler.rollout_owner = self

    # -- state kept in the store ------------------------------------------------------------------

    def restore(self, same_boot: bool) -> None:
        self.history = {key: [Entry(**e) for e in entries] for key, entries in self._meta(_REVISIONS, {}).items()}
        self.holds = {key: Hold(**h) for key, h in self._meta(_HOLDS, {}).items()}
        state = self._meta(_STATE, {})
        if same_boot:  # monotonic times mean nothing after a reboot, and nothing of them runs any more
            self.reconciler.rollouts = {k: RolloutState(**{**v, "mark": tuple(v["mark"])})
                                        for k, v in state.get("rollouts", {}).items()}
            self.reconciler.paused = set(state.get("paused", []))

    def save(self) -> None:
        """After a pass that changed a rollout (lifecycle) and after every change here."""
        with contextlib.suppress(StoreBusy):  # written again with the next change
            self.store.set_meta(_REVISIONS, json.dumps(
                {k: [dataclasses.asdict(e) for e in v] for k, v in self.history.items()}, sort_keys=True))
            self.store.set_meta(_HOLDS, json.dumps({k: dataclasses.asdict(h) for k, h in self.holds.items()}))
            self.store.set_meta(_STATE, json.dumps({
                "rollouts": {k: dataclasses.asdict(v) for k, v in self.reconciler.rollouts.items()},
                "paused": sorted(self.reconciler.paused)}))
            self.reconciler.rollouts_changed = False

    def _meta(self, name: str, default: Any) -> Any:
        raw = self.store.get_meta(name)
        try:
            return json.loads(raw) if raw else default
        except ValueError:
            return default

    # -- revisions --------------------------------------------------------------------------------

    def note_commit(self, before: Mapping[str, ProcessSpec], after: Mapping[str, ProcessSpec], revision: int,
                    git_commit: str | None) -> None:
        """A new global revision: a process whose restart fields changed gets a new rollout revision. The one
        it replaces is stable if every one of its replicas runs it and is ready now (it served)."""
        now = self.wall()
        for key, spec in after.items():
            if spec.kind is not Kind.PROCESS:
                continue
            digest = revision_hash(spec)
            entries = self.history.setdefault(key, [])
            if entries and entries[-1].hash == digest:
                continue
            old = before.get(key)
            if entries and old is not None and self._all_available(old):
                entries[-1].stable = True
            for entry in entries:
                if entry.status == "Progressing":
                    entry.status = "Superseded"
            number = entries[-1].number + 1 if entries else 1
            entries.append(Entry(number, digest, revision, git_commit, now,
                                 status="Progressing" if old is not None and rolls(spec) else ""))
            self._trim(key, spec.strategy.revision_history_limit)
        for key in list(self.history):
            if key not in after:
                del self.history[key]
                self.holds.pop(key, None)
        self.save()

    def _all_available(self, spec: ProcessSpec) -> bool:
        records = self.reconciler.records
        n = spec.wanted_replicas()
        return n > 0 and all(
            (r := records.get(ReplicaId(spec.key, i))) is not None and revision_hash(r.spec) == revision_hash(spec)
            and r.process is not None and r.stop_requested_at is None and r.ready for i in range(n))

    def _trim(self, key: str, limit: int) -> None:
        entries = self.history[key]
        stable = [e for e in entries if e.stable]
        keep = {entries[-1].number} | ({stable[-1].number} if stable else set())
        hold = self.holds.get(key)
        if hold is not None:
            keep.add(hold.revision)
        extra = len(entries) - max(limit, 1)
        for entry in list(entries):
            if extra <= 0:
                break
            if entry.number not in keep:
                entries.remove(entry)
                extra -= 1

    def _entry(self, key: str, digest: str) -> Entry | None:
        return next((e for e in reversed(self.history.get(key, [])) if e.hash == digest), None)

    def _spec_of(self, key: str, entry: Entry) -> ProcessSpec:
        revision = self.store.revision(entry.revision)
        spec = next((s for s in revision.specs if s.key == key), None) if revision is not None else None
        if spec is None or revision_hash(spec) != entry.hash:
            raise NotFound(f"revision {entry.number} of {key} is no longer in the history")
        return spec

    # -- the engine's calls ---------------------------------------------------------------------

    def rollout_started(self, key: str, state: RolloutState) -> None:
        entry = self._entry(key, state.target)
        if entry is not None and not entry.stable:
            entry.status = "Progressing"
            self.save()

    def rollout_complete(self, key: str, state: RolloutState) -> None:
        entry = self._entry(key, state.target)
        if entry is not None:
            entry.stable = True
            entry.status = "RolledBack" if state.rollback else "Complete"
            entry.reason = ""
            self.save()

    def rollout_failed(self, key: str, state: RolloutState, reason: str) -> ProcessSpec | None:
        entry = self._entry(key, state.target)
        if entry is not None:
            entry.status, entry.reason = "Failed", reason
        target = next((e for e in reversed(self.history.get(key, [])) if e.stable and e.hash != state.target), None)
        current = self.reconciler.desired.specs.get(key)
        if target is None or current is None:
            self.save()
            return None
        try:
            good = self._spec_of(key, target)
        except NotFound:
            self.save()
            return None
        spec = dataclasses.replace(good, replicas=current.replicas, stopped=current.stopped,
                                   location=current.location)
        self.holds[key] = Hold(target.number, state.target, self.revision(), reason, self.wall())
        self.commit({key: spec}, "rollout rollback",
                    f"{key}: rolled back to rollout revision {target.number} ({reason})")
        return spec

    # -- apply and the verbs ----------------------------------------------------------------------

    def held(self, spec: ProcessSpec, current: ProcessSpec | None) -> ProcessSpec:
        """An applied spec as the hold of its process allows: the held spec while the manifest still says the
        failed revision, else the manifest's (and the hold is lifted)."""
        hold = self.holds.get(spec.key)
        if hold is None or current is None:
            return spec
        if revision_hash(spec) == hold.failed:
            return dataclasses.replace(current, replicas=spec.replicas, labels=spec.labels,
                                       location=spec.location)
        del self.holds[spec.key]
        return spec

    def hold_of(self, key: str) -> Hold | None:
        return self.holds.get(key)

    def status(self, key: str) -> dict[str, Any]:
        spec = self.reconciler.desired.specs.get(key)
        if spec is None:
            raise NotFound(f"no object named {key}")
        if spec.kind is not Kind.PROCESS:
            raise Conflict(f"{key} is a Job: Jobs run to completion and do not roll")
        digest = revision_hash(spec)
        entry = self._entry(key, digest)
        state = self.reconciler.rollouts.get(key)
        progress = self.reconciler.rollout_progress.get(key)
        hold = self.holds.get(key)
        paused = key in self.reconciler.paused
        if state is not None and state.failed:
            phase = "Paused" if not state.rollback else "RollbackFailed"
        elif paused:
            phase = "Paused"
        elif state is not None:
            phase = "RollingBack" if state.rollback else "Progressing"
        elif hold is not None:
            phase = "RolledBack"
        else:
            phase = "Complete"
        document: dict[str, Any] = {
            "key": key, "phase": phase, "revision": entry.number if entry else None, "hash": digest,
            "replicas": spec.wanted_replicas(), "paused": paused, "strategy": spec.strategy.type.value,
        }
        if progress is not None:
            document["progress"] = dataclasses.asdict(progress)
        if state is not None:
            document["rollout"] = {"target": state.target, "from": state.source, "failed": state.failed,
                                   "rollback": state.rollback}
        if hold is not None:
            document["held"] = dataclasses.asdict(hold)
        return document

    def history_of(self, key: str) -> list[dict[str, Any]]:
        if key not in self.reconciler.desired.specs:
            raise NotFound(f"no object named {key}")
        return [dataclasses.asdict(e) for e in self.history.get(key, [])]

    def spec_at(self, key: str, number: int) -> ProcessSpec:
        entry = next((e for e in self.history.get(key, []) if e.number == number), None)
        if entry is None:
            raise NotFound(f"{key} has no rollout revision {number} (see `orchestrator rollout history`)")
        return self._spec_of(key, entry)

    def undo(self, key: str, to: int | None) -> dict[str, Any]:
        current = self.reconciler.desired.specs.get(key)
        if current is None:
            raise NotFound(f"no object named {key}")
        digest = revision_hash(current)
        entries = self.history.get(key, [])
        if to is None:
            target = next((e for e in reversed(entries) if e.stable and e.hash != digest), None)
            if target is None:
                raise Conflict(f"{key} has no earlier stable revision to undo to (see `orchestrator rollout history`)")
        else:
            target = next((e for e in entries if e.number == to), None)
            if target is None:
                raise NotFound(f"{key} has no rollout revision {to} (see `orchestrator rollout history`)")
        if target.hash == digest and key not in self.reconciler.rollouts:
            raise Conflict(f"{key} already runs rollout revision {target.number}: nothing to undo")
        spec = dataclasses.replace(self._spec_of(key, target), replicas=current.replicas, stopped=current.stopped,
                                   location=current.location)
        hold = self.holds.get(key)
        manifest = hold.manifest if hold is not None else self.revision()
        failed = hold.failed if hold is not None else digest
        self.holds[key] = Hold(target.number, failed, manifest, "undo", self.wall())
        self.reconciler.retry_rollout(key)
        self.commit({key: spec}, "rollout undo", f"{key}: to rollout revision {target.number}")
        return {"key": key, "revision": target.number}

    def retry(self, key: str) -> dict[str, Any]:
        current = self.reconciler.desired.specs.get(key)
        if current is None:
            raise NotFound(f"no object named {key}")
        hold = self.holds.pop(key, None)
        state = self.reconciler.rollouts.get(key)
        if hold is None and (state is None or not state.failed):
            raise Conflict(f"{key} has no failed or held rollout to retry")
        self.reconciler.retry_rollout(key)
        if hold is not None:
            revision = self.store.revision(hold.manifest)
            manifest = next((s for s in revision.specs if s.key == key), None) if revision is not None else None
            if manifest is not None:
                spec = dataclasses.replace(manifest, replicas=current.replicas, stopped=current.stopped)
                self.commit({key: spec}, "rollout retry", f"{key}: rolling to the manifest's revision again")
        self.save()
        self.emit(Event(self.wall(), EventType.ROLLOUT_RESUMED, key, "retry: rolling toward the manifest again"))
        return {"key": key}
