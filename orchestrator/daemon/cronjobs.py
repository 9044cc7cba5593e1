"""The daemon's CronJobs (design/alerts.md §C): each one's schedule, and its runs, which are Jobs.

A run is the CronJob's jobTemplate as a Job named `<cronjob>-<unix time>` (labelled with RUN_LABEL): desired
beside the revision's specs (Operations.runs), never in a revision, so it has its own logs and status in
`get`, `describe` and `logs` like any Job, and a schedule does not fill `history`. Finished runs are kept per
the history limits, then deleted.

When: planning/cron.py says at each decision what is due (at most one catch-up run after downtime, only within
startingDeadlineSeconds; missed times said in an event) and when to look again; one timer waits for the
soonest next time of all CronJobs (none without CronJobs: an idle daemon does not wake for them). Decisions
and run changes happen on the reconciler's thread. A run's end (its Succeeded or Failed event) is looked at
soon after, for the history and for Forbid and Replace.

Kept across restarts (store meta): the specs ("cronjobs"), each one's last schedule time and creation
("cronjob_state"), and its runs (Operations' "runs"): a restarted daemon adopts a run under way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.cronjob import RUN_LABEL, CronJobSpec
from ..core.errors import Location, ManifestError, problems_summary
from ..core.events import Event, EventType
from ..core.model import Phase, ProcessSpec, ReplicaId
from ..host.logs import remove_logs
from ..planning import cron
from ..planning.status import settled_phase
from . import kept
from .control import Conflict, NotFound

Post = Callable[[Callable[[Any], None]], None]
FINISHED = {EventType.EXITED, EventType.SUCCEEDED, EventType.FAILED, EventType.START_FAILED}


class CronJobs:
    def __init__(self, store: Any, ops: Any, emit: Callable[[Event], None], wall: Callable[[], float],
                 post: Post, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.store = store
        self.ops = ops
        self.emit = emit
        self.wall = wall
        self.post = post
        self.specs: dict[str, CronJobSpec] = {}
        self.states: dict[str, dict[str, Any]] = {}  # key -> {"created", "last_scheduled", "last_success"}
        self.zone = local_zone()
        self._replaced: dict[str, int] = {}  # runs stopped by Replace -> replicas: their logs go once they ended
        self._alarm = kept.Alarm(lambda: self.post(self.tick))  # the soonest next time of all CronJobs

    # -- life cycle ----------------------------------------------------------------------------------

    def restore(self) -> None:
        from ..manifests.cronjobs import kept_from_document

        saved = self.store.json_meta("cronjob_state", {})
        for document in self.store.json_meta("cronjobs", []):
            try:
                spec = kept_from_document(document, where="<state: cronjobs>")
            except ManifestError as error:
                self._event(EventType.INTERNAL_ERROR, "", f"a kept CronJob is not read: {error}")
                continue
            file = (saved.get(spec.key) or {}).get("file") if isinstance(saved.get(spec.key), dict) else None
            if isinstance(file, str):  # the file it was applied from: `apply --prune` of its folder forgets it
                where = Location(file)
                spec = dataclasses.replace(spec, location=where, job=dataclasses.replace(spec.job, location=where))
            self.specs[spec.key] = spec
        now = self.wall()
        self.states = {key: dict(saved.get(key) or {"created": now, "last_scheduled": None}) for key in self.specs}
        if self.specs:
            self.post(self.tick)

    def close(self) -> None:
        self._alarm.cancel()

    def on_event(self, event: Event) -> None:
        """A Job ended: if it is a run, see to the history and to what waited for it, on the loop."""
        if event.type in FINISHED and event.key in self.ops.runs:
            self.post(self.tick)

    # -- kept objects (the loop's thread) -----------------------------------------------------------

    def put(self, specs: list[CronJobSpec], dry_run: bool = False) -> list[dict[str, Any]]:
        results = []
        now = self.wall()
        for spec in specs:
            old = self.specs.get(spec.key)
            result = kept.outcome(self.specs, spec.key, spec)
            results.append(kept.result(spec.key, "CronJob", result))
            if dry_run or result == "unchanged":
                continue
            self.specs[spec.key] = spec
            state = self.states.setdefault(spec.key, {"created": now, "last_scheduled": None})
            state["file"] = spec.location.file if spec.location is not None else None  # kept for restore
            if old is not None and _times(old) != _times(spec):
                state["last_scheduled"] = now  # a new schedule counts from now: no catch-up of the old one
        if not dry_run and kept.changed(results):
            self._save()
            self.tick(None)
        return results

    def prune(self, applied: set[str], paths: list[str], dry_run: bool) -> list[dict[str, Any]]:
        """Forget the CronJobs read from under `paths` that this apply no longer has (apply --prune); their
        runs under way go on to their end, then go with the history."""
        results = kept.prune(self.specs, "CronJob", applied.__contains__, paths, dry_run)
        if results and not dry_run:
            for gone in results:
                self.states.pop(gone["key"], None)
            self._save()
            self.tick(None)
        return results

    def trigger(self, name: str) -> dict[str, Any]:
        """`cronjob trigger NAME`: a run now, whatever the schedule and the concurrency policy (as `kubectl
        create job --from=cronjob/NAME`)."""
        spec = self.specs[self._key(name)]
        now = self.wall()
        run = self._start(spec, now, "triggered by hand", by_hand=True)
        if run is None:
            raise Conflict(f"no run of {spec.key} could be started: see `orchestrator events {spec.key}`")
        return {"cronjob": spec.key, "job": run.key}

    def listing(self) -> dict[str, Any]:
        now = self.wall()
        items = []
        for key, spec in sorted(self.specs.items()):
            state = self.states.get(key, {})
            runs = self._runs_of(spec)
            items.append({
                "key": key, "schedule": spec.schedule, "interval_seconds": spec.interval_seconds,
                "time_zone": spec.time_zone or self.zone, "suspend": spec.suspend,
                "concurrency_policy": spec.concurrency_policy,
                "last_schedule": state.get("last_scheduled"), "last_success": state.get("last_success"),
                "next_schedule": cron.next_run(self._schedule_of(spec), max(now, state.get("last_scheduled") or 0),
                                               state.get("created", now)) if not spec.suspend else None,
                "active": [k for k, phase in runs.items() if phase is None],
                "finished": {k: phase for k, phase in runs.items() if phase is not None},
            })
        return {"cronjobs": items}

    # -- decisions (the loop's thread) --------------------------------------------------------------

    def tick(self, reconciler: Any) -> None:
        """Every CronJob's decision now, the history of finished runs, and the timer for the next time due."""
        now = self.wall()
        self._see_finished(now)
        soonest: float | None = None
        changed = False
        for key, spec in list(self.specs.items()):
            state = self.states.setdefault(key, {"created": now, "last_scheduled": None})
            decision = cron.due(self._schedule_of(spec), state.get("last_scheduled"), state["created"], now)
            if decision.message:
                self._event(EventType.CRONJOB_MISSED, key, decision.message)
            if decision.last_scheduled != state.get("last_scheduled"):
                state["last_scheduled"] = decision.last_scheduled
                changed = True
            if decision.verdict is cron.Verdict.RUN and decision.run is not None:
                self._due_run(spec, decision.run)
            if decision.next_at is not None:
                soonest = decision.next_at if soonest is None else min(soonest, decision.next_at)
        if changed:
            self._save()
        self._alarm.set(None if soonest is None else soonest - now)

    def _due_run(self, spec: CronJobSpec, scheduled: float) -> None:
        active = [k for k, phase in self._runs_of(spec).items() if phase is None]
        what = cron.concurrency(cron.ConcurrencyPolicy(spec.concurrency_policy), len(active))
        if what is cron.Concurrency.SKIP:
            self._event(EventType.CRONJOB_SKIPPED, spec.key, f"run of {_when(scheduled)} skipped: "
                        f"{', '.join(active)} still runs (concurrencyPolicy Forbid)")
            return
        if what is cron.Concurrency.REPLACE:
            self.ops.set_runs({k: s for k, s in self.ops.runs.items() if k not in active})
            self._replaced.update({key: max(1, spec.job.replicas) for key in active})
            self._event(EventType.CRONJOB_SKIPPED, spec.key, f"{', '.join(active)} stopped: replaced by the run of "
                        f"{_when(scheduled)} (concurrencyPolicy Replace)")
        self._start(spec, scheduled, f"scheduled for {_when(scheduled)}")

    def _start(self, spec: CronJobSpec, scheduled: float, why: str, by_hand: bool = False) -> ProcessSpec | None:
        """Start the run for `scheduled` (None when it cannot: said in an event)."""
        run = spec.run(scheduled)
        if run.key in self.ops.runs and not by_hand:
            return None  # started already, and adopted (the daemon died before it saved the schedule time)
        if run.key in self.ops.runs or run.key in self.ops.reconciler.desired.specs:
            run = spec.run(max(scheduled, self.wall()) + 1)  # a trigger in the same second as a scheduled run
        try:
            self.ops.set_runs({**self.ops.runs, run.key: run})
        except ManifestError as error:  # its dependsOn names no object: nothing else is held up by it
            self._event(EventType.CRONJOB_SKIPPED, spec.key, f"{run.key} not started: "
                        f"{problems_summary(error.problems)}")
            return None
        self._event(EventType.CRONJOB_RUN, spec.key, f"started {run.key}: {why}")
        return run

    def _see_finished(self, now: float) -> None:
        """Note successes, and delete the finished runs past each CronJob's history limits (those of a CronJob
        no longer kept, once finished)."""
        doomed: set[str] = set()
        for spec in self.specs.values():
            finished = []
            for key, phase in self._runs_of(spec).items():
                if phase is None:
                    continue
                at = self._finished_at(key) or now
                finished.append((key, at, phase == Phase.SUCCEEDED))
                state = self.states.setdefault(spec.key, {"created": now, "last_scheduled": None})
                if phase == Phase.SUCCEEDED and (state.get("last_success") or 0) < at:
                    state["last_success"] = at
            doomed |= set(cron.prune(finished, spec.successful_jobs_history_limit, spec.failed_jobs_history_limit))
        owners = {(spec.namespace, spec.name) for spec in self.specs.values()}
        for key, run in self.ops.runs.items():
            owner = (run.namespace, dict(run.labels).get(RUN_LABEL))
            if owner not in owners and self._phase(run) is not None:
                doomed.add(key)
        records = self.ops.reconciler.records
        for key, count in list(self._replaced.items()):  # replaced runs: their logs, once they have stopped
            if not any(ReplicaId(key, i) in records for i in range(count)):
                for index in range(count):
                    remove_logs(self.log_dir, ReplicaId(key, index))
                del self._replaced[key]
        if doomed:
            replicas = {key: self.ops.runs[key].replicas for key in doomed}
            self.ops.set_runs({k: s for k, s in self.ops.runs.items() if k not in doomed})
            for key, count in replicas.items():  # finished: nothing writes them; past the limit, they go too
                for index in range(max(1, count)):
                    remove_logs(self.log_dir, ReplicaId(key, index))

    def _runs_of(self, spec: CronJobSpec) -> dict[str, Phase | None]:
        """Each run of `spec` now desired: None while it runs (or waits to), else how it ended."""
        return {key: self._phase(run) for key, run in self.ops.runs.items()
                if run.namespace == spec.namespace and dict(run.labels).get(RUN_LABEL) == spec.name}

    def _phase(self, run: ProcessSpec) -> Phase | None:
        phases = [self._replica_phase(run, ReplicaId(run.key, i)) for i in range(max(1, run.replicas))]
        if any(phase == Phase.FAILED for phase in phases):
            return Phase.FAILED
        if all(phase == Phase.SUCCEEDED for phase in phases):
            return Phase.SUCCEEDED
        return None

    def _replica_phase(self, run: ProcessSpec, replica: ReplicaId) -> Phase:
        """As `get` says, but at once when it has just exited: the tick its exit event posts runs before the
        pass that notes it Succeeded or Failed (nothing would look again at a pruned CronJob's run)."""
        reconciler = self.ops.reconciler
        return settled_phase(run, reconciler.records.get(replica), reconciler.waiting.get(replica))

    def _finished_at(self, key: str) -> float | None:
        record = self.ops.reconciler.records.get(ReplicaId(key, 0))
        if record is None or record.last_exit is None:
            return None
        return float(record.last_exit.at) + self.ops._wall_offset()

    def _key(self, name: str) -> str:
        if name in self.specs:
            return name
        matches = [key for key in self.specs if key.split("/", 1)[1] == name]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"no CronJob {name}" + (f" (it is ambiguous: {', '.join(matches)})" if matches else ""))

    def _schedule_of(self, spec: CronJobSpec) -> cron.Schedule:
        return cron.resolve_zone(_schedule(spec), self.zone)

    def _save(self) -> None:
        from ..manifests.cronjobs import cronjob_to_document

        self.store.set_meta("cronjobs", json.dumps([cronjob_to_document(s) for s in self.specs.values()]))
        self.store.set_meta("cronjob_state", json.dumps(self.states))

    def _event(self, kind: EventType, key: str, message: str) -> None:
        self.emit(Event(self.wall(), kind, key, message))


def _schedule(spec: CronJobSpec) -> cron.Schedule:
    return cron.Schedule(cron=spec.schedule, interval_seconds=spec.interval_seconds, time_zone=spec.time_zone,
                         starting_deadline_seconds=spec.starting_deadline_seconds,
                         concurrency_policy=cron.ConcurrencyPolicy(spec.concurrency_policy), suspend=spec.suspend)


def _times(spec: CronJobSpec) -> tuple[str | None, float | None, str | None]:
    """What makes the due times (not suspend, the deadline or the policy: a resume weighs the missed times)."""
    return spec.schedule, spec.interval_seconds, spec.time_zone


def local_zone() -> str:
    """The host's IANA time zone name: $TZ, /etc/timezone, or where /etc/localtime points; UTC otherwise."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name and "/" in name or name == "UTC":
        return name
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            text = handle.read().strip()
            if text:
                return text
    except OSError:
        pass
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:
        return "UTC"
    marker = "/zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else "UTC"


def _when(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(moment))
