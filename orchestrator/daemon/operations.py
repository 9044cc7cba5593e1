"""What each control request does to desired state: apply, delete, restart, scale, rollback, and the reads.

Owns the current revision number and each object's creation time. Every method but `events` and `revisions`
runs on the reconciler's thread (the daemon's `call`), so concurrent requests are serialized and none is
lost; a request that raced with a shutdown is refused there too. Nothing runs unvalidated: specs that come
in are checked against the same schema as manifests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core.clock import Clock
from ..core.errors import Location, ManifestError, OrchestratorError, Problem, StoreBusy, problems_summary
from ..core.events import Event, EventBus, EventType
from ..core.model import DEFAULT_NAMESPACE, DesiredState, Kind, ProcessSpec
from ..engine.reconcile import Reconciler
from ..manifests import codec
from ..manifests.rules import check_spec
from ..planning import graph, status
from ..planning.autoscale import keep_pool_size
from ..planning.diff import needs_restart
from ..planning.policy import Step, next_step
from .control import Conflict, NotFound
from .owned_sockets import OwnedSockets
from .rollouts import Rollouts
from .store import Revision, Store
from .watches import Watches

MAX_REPLICAS = 10000  # as the schema says


class Operations:
    def __init__(self, reconciler: Reconciler, store: Store, clock: Clock, events: EventBus, watches: Watches,
                 enforced_by: str) -> None:
        """`enforced_by`: how memory and cpu limits are enforced (a cgroup version, or "watchdog")."""
        self.reconciler = reconciler
        self.store = store
        self.clock = clock
        self.events = events
        self.watches = watches
        self.enforced_by = enforced_by
        self.revision = 0
        self.created: dict[str, float] = {}
        self._decoded: dict[str, tuple[Any, ProcessSpec]] = {}
        self._decoded_lock = threading.Lock()  # decode() runs on request threads
        self.rollouts = Rollouts(reconciler, store, clock.wall, events.emit)
        self.rollouts.commit = self._commit_changes
        self.rollouts.revision = lambda: self.revision
        self.sockets = OwnedSockets(reconciler, clock.wall, events.emit)
        self.owners: dict[str, str] = {}  # object key -> the GitSync that applied it ("gitsync/NAME")
        self._owners_unsaved = False
        # Told of every change not made by a sync that touches an owned object (GitSyncs.note_change: drift),
        # and asked whether a sync applies on its own (then a rollback of its objects is refused).
        # The Jobs of CronJob runs (daemon/cronjobs.py): desired beside the revision's specs, never in a
        # revision (a schedule would fill the history; a rollback would bring back old runs). Kept in meta "runs".
        self.runs: dict[str, ProcessSpec] = {}
        self.on_owned_change: Callable[[set[str]], None] = lambda keys: None
        self.automated: Callable[[str], bool] = lambda owner: False
        # The event log, saved and not yet saved (lifecycle.Daemon._events_after); the store alone elsewhere.
        self.events_after: Callable[..., list[tuple[int, Event]]] = (
            lambda since, key, limit=None, types=(): self.store.events(since=since, key=key, limit=limit, types=types))

    def restore(self, latest: Revision | None) -> None:
        """Take up the latest revision as the desired state (before anything is started)."""
        if latest is None:  # CronJob runs are desired without any revision (a daemon of CronJobs only)
            self.runs = self._runs_from_meta(set())
            if self.runs:
                self.reconciler.set_desired(self._with_runs([]))
                self.created.update(self._created_from_meta())
            return
        self.revision = latest.number
        self.runs = self._runs_from_meta({spec.key for spec in latest.specs})
        self.reconciler.set_desired(self._with_runs(latest.specs))
        self.created = {spec.key: latest.at for spec in latest.specs}
        self.created.update(self._created_from_meta())
        self.owners = {k: v for k, v in self._json_meta("owners").items() if isinstance(v, str)}

    def set_runs(self, runs: Mapping[str, ProcessSpec]) -> None:
        """The CronJob runs now desired (on the loop's thread): those gone are stopped and forgotten, new
        ones start, as any desired change; no revision is made."""
        base = [spec for key, spec in self.reconciler.desired.specs.items() if key not in self.runs]
        # Raises ManifestError (a run whose dependsOn names no object) before anything is changed.
        desired = graph.desired_state([*base, *runs.values()], previous=self.reconciler.desired)
        self.store.set_meta("runs", json.dumps([codec.spec_to_document(spec) for spec in runs.values()]))
        self.runs = dict(runs)
        now = self.clock.wall()
        for key in self.runs:
            self.created.setdefault(key, now)
        self.reconciler.set_desired(desired)

    def _with_runs(self, specs: Sequence[ProcessSpec], previous: DesiredState | None = None) -> DesiredState:
        """The desired state of `specs` and the CronJob runs; a run the graph refuses (its dependsOn names what
        is gone) is dropped with an event rather than refusing every change after it."""
        try:
            return graph.desired_state([*specs, *self.runs.values()], previous=previous)
        except ManifestError:
            fitting: dict[str, ProcessSpec] = {}
            for key, run in self.runs.items():
                try:
                    graph.desired_state([*specs, *fitting.values(), run])
                except ManifestError as error:
                    self.events.emit(Event(self.clock.wall(), EventType.INVALID, key,
                                           f"CronJob run {key} dropped: {problems_summary(error.problems)}"))
                    continue
                fitting[key] = run
            self.runs = fitting
            with contextlib.suppress(StoreBusy):
                self.store.set_meta("runs", json.dumps([codec.spec_to_document(s) for s in fitting.values()]))
            return graph.desired_state([*specs, *fitting.values()], previous=previous)

    def _runs_from_meta(self, taken: set[str]) -> dict[str, ProcessSpec]:
        runs: dict[str, ProcessSpec] = {}
        for document in self.store.json_meta("runs", []):
            try:
                spec = codec.spec_from_document(document)
            except (OrchestratorError, ValueError, KeyError, TypeError):
                spec = None  # a run this release cannot read is dropped, not fatal
            if spec is not None and spec.key not in taken:  # a revision's object of the same name wins
                runs[spec.key] = spec
        return runs

    def objects(self, query: dict[str, str]) -> dict[str, Any]:
        documents = status.objects(self.reconciler.desired, self.reconciler.records, self.reconciler.waiting,
                                   self._wall_offset(), self.created, self.enforced_by)
        # Where each Process's rollouts stand (`get -o wide`): dict lookups only, cheap for thousands of objects.
        # Every commit of a new hash appends a rollout revision, so the last one is the desired spec's.
        history, progress = self.rollouts.history, self.reconciler.rollout_progress
        for document in documents:
            entries = history.get(document["key"])
            under_way = progress.get(document["key"])
            document["rollout_revision"] = entries[-1].number if entries else None
            document["up_to_date"] = (None if document["kind"] != Kind.PROCESS.value else
                                      under_way.updated if under_way is not None else document["replicas"]["running"])
        selector = _parse_selector(query.get("selector", ""))
        if selector:
            documents = [d for d in documents if all(_selects(d["labels"], *term) for term in selector)]
        if query.get("name"):
            documents = [d for d in documents if _matches(d, query["name"])]
        documents.sort(key=lambda d: (d["namespace"], d["name"]))  # as kubectl lists: by namespace, then name
        return {"revision": self.revision, "objects": documents}

    def describe(self, name: str) -> dict[str, Any]:
        matches = self.objects({"name": name})["objects"]
        if not matches:
            raise NotFound(f"no object named {name}")
        if len(matches) > 1:
            raise Conflict(f"{name} is ambiguous: " + ", ".join(d["key"] for d in matches))
        document = matches[0]
        spec = self.reconciler.desired.specs.get(document["key"])
        if spec is None:
            spec = next(r.spec for rid, r in self.reconciler.records.items() if rid.key == document["key"])
        shown = codec.spec_to_document(spec)
        # Env values may be secrets: status shows their names only (diff compares them without printing).
        shown["spec"]["env"] = {name: "<hidden>" for name in shown["spec"].get("env", {})}
        document["spec"] = shown
        document["events"] = [self.event_json(i, e) for i, e in
                              self.events_after(0, document["key"], 20)]
        return document

    def desired(self) -> dict[str, Any]:
        specs = self.reconciler.desired.specs.values()
        return {"revision": self.revision, "specs": [codec.spec_to_json(s) for s in specs]}

    def revisions(self, query: dict[str, str]) -> dict[str, Any]:
        limit = int(query.get("limit", "50"))
        return {"revisions": [
            {"number": r.number, "at": r.at, "action": r.action, "user": r.user, "paths": list(r.paths),
             "git_commit": r.git_commit, "git_dirty": r.git_dirty, "message": r.message, "objects": r.objects}
            for r in self.store.revisions(limit=limit)
        ]}

    def event_history(self, query: dict[str, str], key: str | None) -> dict[str, Any]:
        """The event log (`key`: resolved on the loop thread by the caller); reads the store and the events
        not saved yet, off the loop."""
        limit = int(query["limit"]) if query.get("limit") else None
        events = self.events_after(int(query.get("since", "0")), key, limit)
        return {"events": [self.event_json(i, e) for i, e in events]}

    def decode(self, body: dict[str, Any]) -> list[ProcessSpec]:
        """The specs of an API client's JSON (`specs`), checked against the schemas; on the request's thread,
        so that a large request does not hold up supervision."""
        items = body.get("specs", [])
        if not isinstance(items, list):
            raise TypeError("specs: expected a list")
        return [self._decode(item) for item in items]

    def apply(self, body: dict[str, Any], specs: Sequence[ProcessSpec]) -> dict[str, Any]:
        """Make `specs` desired (read and checked before, off the loop: intake or decode)."""
        self._refuse_while_shutting_down()
        specs = list(specs)
        self._refuse_owned([spec.key for spec in specs], "apply", body)
        paths = [str(p) for p in body.get("paths", [])]
        dry_run = bool(body.get("dry_run"))
        current = dict(self.reconciler.desired.specs)
        new, results = self._merged(specs, current, dry_run)
        applied = {spec.key for spec in specs}
        if body.get("prune"):
            for key, spec in current.items():
                if key in self.runs:
                    continue  # a CronJob's run: its CronJob's (pruned with it, daemon/cronjobs.py)
                if key not in applied and spec.location is not None and _under(spec.location.file, paths):
                    del new[key]
                    results.append(_result(spec, "pruned", spec))
        # Raises ManifestError naming what breaks; the order worked out before serves while the graph is the same.
        desired = graph.desired_state(new.values(), previous=self.reconciler.desired)
        changed = any(r["result"] != "unchanged" for r in results)
        if not dry_run and changed:
            self.sockets.bind_for(desired.specs)  # before anything changes: a socket that cannot be bound refuses
        if not dry_run:
            retried = self._retry_failed(applied)
            for entry in results:
                entry["retried"] = entry["key"] in retried  # said: an "unchanged" that starts something
            if changed:
                self._commit(desired, "watch" if body.get("watched") else "apply", body, paths,
                             message=str(body.get("message") or changes_text(results)))
            if body.get("watch"):
                self.watches.add({"paths": paths, "prune": bool(body.get("prune")),
                                  "variables": _set_variables(body.get("variables"))})
        return {"revision": self.revision, "results": results, "dry_run": dry_run}

    def _merged(self, specs: Sequence[ProcessSpec], current: dict[str, ProcessSpec], dry_run: bool,
                ) -> tuple[dict[str, ProcessSpec], list[dict[str, Any]]]:
        """`current` with `specs` applied over it (each keeping its object's holds and pool size, and a failed
        rollout's hold), and each spec's result: created, configured or unchanged."""
        placed = [spec for spec in specs if spec.placement is not None]
        if placed:  # a fleet's agent applies its node's share without it
            raise ManifestError([Problem(spec.location or Location("<request>"), "spec.placement",
                                         f"{spec.key}: a placement is for a fleet: apply it with `orchestrator apply "
                                         "--fleet` (to etcd), or leave it out to run it on this host")
                                 for spec in placed])
        new = dict(current)
        results = []
        for given in specs:
            old = current.get(given.key)
            spec = _with_hold(keep_pool_size(given, old), old)
            kept = self.rollouts.held(spec, old) if not dry_run else spec
            result = "created" if old is None else ("unchanged" if old is kept or old == kept else "configured")
            results.append(_result(kept, result, old))
            hold = self.rollouts.hold_of(spec.key)
            if hold is not None and kept is not spec:
                results[-1]["held"] = {"revision": hold.revision, "failed": hold.failed, "reason": hold.reason}
            new[spec.key] = kept
        return new, results

    def delete(self, body: dict[str, Any]) -> dict[str, Any]:
        self._refuse_while_shutting_down()
        keys = [self.key(name) for name in body.get("names", [])]
        remaining = {k: s for k, s in self.reconciler.desired.specs.items() if k not in keys}
        for spec in remaining.values():
            for dep in spec.depends_on:
                if spec.dependency_key(dep) in keys:
                    raise Conflict(f"{spec.key} depends on {spec.dependency_key(dep)}: delete it too, or change it "
                                   "first")
        results = [_result(self.reconciler.desired.specs[k], "deleted", None) for k in keys]
        if not body.get("dry_run") and keys:
            if any(key in self.runs for key in keys):  # a CronJob's run deleted by hand: not desired any more
                self.set_runs({k: s for k, s in self.runs.items() if k not in keys})
            self._commit(graph.desired_state(remaining.values()), "delete", body, [], ", ".join(keys))
        return {"revision": self.revision, "results": results}

    def hold(self, body: dict[str, Any], stopped: bool) -> dict[str, Any]:
        """`orchestrator stop` (stopped) / `start`: hold the object's replicas stopped, or let them run again;
        recorded as a revision. The object stays, with its spec; an apply keeps the hold as it is."""
        self._refuse_while_shutting_down()
        key = self.key(str(body.get("name", "")))
        spec = self.reconciler.desired.specs.get(key)
        if spec is None:
            raise NotFound(f"{key} is being removed")
        if spec.kind is Kind.JOB:
            raise Conflict(f"{key} is a Job: it runs to completion (delete it to stop it)")
        changed = spec.stopped != stopped
        if changed:
            specs = {**self.reconciler.desired.specs, key: dataclasses.replace(spec, stopped=stopped)}
            self._commit(graph.desired_state(specs.values()), "stop" if stopped else "start", body, [],
                         f"{key} {'held stopped' if stopped else 'started again'}")
        return {"key": key, "stopped": stopped, "changed": changed, "revision": self.revision}

    def restart(self, body: dict[str, Any]) -> dict[str, Any]:
        self._refuse_while_shutting_down()
        key = self.key(str(body.get("name", "")))
        held = self.reconciler.desired.specs.get(key)
        if held is not None and held.stopped:
            raise Conflict(f"{key} is stopped: `orchestrator start {held.name}` runs it again")
        self.events.emit(Event(self.clock.wall(), EventType.RESTARTING, key, "restart requested"))
        count = self.reconciler.restart(key)
        return {"key": key, "replicas": count}

    def scale(self, body: dict[str, Any]) -> dict[str, Any]:
        self._refuse_while_shutting_down()
        key = self.key(str(body.get("name", "")))
        replicas = body.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or not 0 <= replicas <= MAX_REPLICAS:
            raise Conflict(f"replicas must be a whole number from 0 to {MAX_REPLICAS}")
        spec = self.reconciler.desired.specs[key]
        if spec.kind is Kind.JOB:
            raise Conflict(f"{key} is a Job: a Job has no replicas to scale")
        if spec.autoscale is not None:
            raise Conflict(f"{key} is autoscaled between {spec.autoscale.min} and {spec.autoscale.max}: change its "
                           "autoscale in the manifest instead")
        specs = {**self.reconciler.desired.specs, key: dataclasses.replace(spec, replicas=replicas)}
        if replicas != spec.replicas:
            self._commit(graph.desired_state(specs.values()), "scale", body, [],
                         f"{key} {spec.replicas} -> {replicas}")
        return {"key": key, "replicas": replicas, "revision": self.revision}

    def rollback(self, body: dict[str, Any]) -> dict[str, Any]:
        self._refuse_while_shutting_down()
        target = body.get("revision")
        if target is None:
            target = self.revision - 1
        revision = self.store.revision(int(target))
        if revision is None:
            raise NotFound(f"no revision {target} (see `orchestrator history`)")
        current = self.reconciler.desired.specs
        kept_keys = {s.key for s in revision.specs}
        touched = [s.key for s in revision.specs if current.get(s.key) != s] + [
            k for k in current if k not in kept_keys and k not in self.runs]
        self._refuse_owned([k for k in touched if self.automated(self.owners.get(k, ""))], "rollback", body)
        # Holds of `orchestrator stop` are the operator's, not a revision's: as an apply, a rollback keeps them.
        revision = dataclasses.replace(revision, specs=tuple(_with_hold(s, current.get(s.key)) for s in revision.specs))
        results = [_result(s, "created" if s.key not in current else
                           ("unchanged" if current[s.key] == s else "configured"), current.get(s.key))
                   for s in revision.specs]
        kept = {s.key for s in revision.specs}
        results += [_result(s, "pruned", s) for k, s in current.items() if k not in kept and k not in self.runs]
        self._commit(graph.desired_state(revision.specs), "rollback", body, list(revision.paths),
                     f"to revision {revision.number}")
        return {"revision": self.revision, "results": results}

    def key(self, name: str) -> str:
        """`namespace/name` for a name given as either; an unqualified name must be unambiguous."""
        keys = set(self.reconciler.desired.specs) | {rid.key for rid in self.reconciler.records}
        if "/" in name:
            if name not in keys:
                raise NotFound(f"no object named {name}")
            return name
        found = sorted(k for k in keys if k.split("/", 1)[1] == name)
        if not found:
            raise NotFound(f"no object named {name}")
        if len(found) > 1:
            raise Conflict(f"{name} is ambiguous: " + ", ".join(found))
        return found[0]

    @staticmethod
    def event_json(event_id: int | None, event: Event) -> dict[str, Any]:
        document = event.to_json()
        document["id"] = event_id if event_id is not None else event.id
        return document

    def _wall_offset(self) -> float:
        return self.clock.wall() - self.clock.monotonic()

    def _refuse_while_shutting_down(self) -> None:
        """Checked on the loop thread too: a request that raced with a shutdown must not undo it."""
        if self.reconciler.shutting_down:
            raise Conflict("the daemon is shutting down: nothing can be changed now")

    def _decode(self, item: Any) -> ProcessSpec:
        """The spec of a request item, reusing the one decoded from an equal item before.

        Re-applying 500 objects of which one changed must not decode 500 specs, and the same spec object
        lets every later comparison stop at identity.
        """
        try:
            metadata = item["document"]["metadata"]
            key = f"{metadata.get('namespace', DEFAULT_NAMESPACE)}/{metadata['name']}"
        except (KeyError, TypeError):
            return codec.spec_from_json(item)  # raises the decoder's message
        with self._decoded_lock:
            cached = self._decoded.get(key)
        if cached is not None and cached[0] == item:
            return cached[1]
        spec = codec.spec_from_json(item)
        if spec.stopped or spec.restart_nonce:  # `orchestrator stop`'s and `rollout restart`'s, not a client's
            spec = dataclasses.replace(spec, stopped=False, restart_nonce="")
        problems = check_spec(spec)  # the same schema as manifests: nothing runs unvalidated
        if problems:
            raise ManifestError(problems)
        with self._decoded_lock:
            self._decoded[key] = (item, spec)
        return spec

    def _retry_failed(self, keys: set[str]) -> set[str]:
        """An apply gives replicas that failed for good (maxRestarts, backoffLimit, Never) a new start;
        returns the keys of the objects it did so for."""
        retried = set()
        for rid, record in list(self.reconciler.records.items()):
            spec = self.reconciler.desired.specs.get(rid.key)
            if (rid.key in keys and spec is not None and record.process is None and record.last_exit is not None
                    and spec == record.spec and next_step(spec, record).step is Step.FAILED):
                del self.reconciler.records[rid]
                retried.add(rid.key)
                self.events.emit(Event(self.clock.wall(), EventType.RESTARTING, rid.key,
                                       "failed for good, and applied again: started anew", rid.index))
        return retried

    def _commit_changes(self, changes: dict[str, ProcessSpec], action: str, message: str) -> None:
        """Make `changes` desired (a rollback, an undo, a rolling restart) as a new revision."""
        specs = {**self.reconciler.desired.specs, **changes}
        self._commit(graph.desired_state(specs.values(), previous=self.reconciler.desired), action, {}, [], message)

    def rollout(self, body: dict[str, Any]) -> dict[str, Any]:
        """The `rollout` verbs: status, history, undo, retry, pause, resume, restart."""
        action = str(body.get("action", "status"))
        key = self.key(str(body.get("name", "")))
        if action == "status":
            return self.rollouts.status(key)
        if action == "history":
            number = body.get("revision")
            if number is not None:
                shown = codec.spec_to_document(self.rollouts.spec_at(key, int(number)))
                shown["spec"]["env"] = {name: "<hidden>" for name in shown["spec"].get("env", {})}
                return {"key": key, "revision": int(number), "spec": shown}
            return {"key": key, "revisions": self.rollouts.history_of(key)}
        self._refuse_while_shutting_down()
        found = self.reconciler.desired.specs.get(key)
        if found is None:
            raise NotFound(f"{key} is being removed")
        spec = found
        if spec.kind is not Kind.PROCESS:
            raise Conflict(f"{key} is a Job: Jobs run to completion and do not roll")
        if action == "undo":
            to = body.get("to_revision")
            return self.rollouts.undo(key, int(to) if to is not None else None)
        if action == "retry":
            return self.rollouts.retry(key)
        if action in ("pause", "resume"):
            changed = self.reconciler.pause_rollout(key, action == "pause")
            self.rollouts.save()
            return {"key": key, "paused": action == "pause", "changed": changed}
        if action == "restart":
            if spec.stopped:
                raise Conflict(f"{key} is stopped: `orchestrator start {spec.name}` runs it again")
            nonce = f"{self.clock.wall():.6f}"
            self._commit_changes({key: dataclasses.replace(spec, restart_nonce=nonce)}, "rollout restart",
                                 f"{key}: rolling restart")
            return {"key": key, "revision": self.revision}
        raise Conflict(f"unknown rollout action {action!r}: status, history, undo, retry, pause, resume, restart")

    def _commit(self, desired: DesiredState, action: str, body: dict[str, Any], paths: Sequence[str],
                message: str = "") -> None:
        before = self.reconciler.desired.specs
        now = self.clock.wall()
        # CronJob runs are desired beside the revision, never in it (whatever the change started from).
        kept = [spec for key, spec in desired.specs.items() if key not in self.runs]
        if self.runs:
            desired = self._with_runs(kept, previous=desired)
        created = {key: self.created.get(key, now) for key in desired.specs}  # the runs' too (a rollback has none)
        # StoreBusy here (another program holds the database's lock) means: nothing changed, try again.
        self.revision = self.store.add_revision(
            kept, action=action, paths=paths, user=str(body.get("user", "")),
            git_commit=body.get("git_commit"), git_dirty=body.get("git_dirty"), message=message,
        )
        self.created = created
        with contextlib.suppress(StoreBusy):  # creation times only: written again with the next revision
            self.store.set_meta("created", json.dumps(self.created, sort_keys=True))
        if self._owners_unsaved:
            self._set_owners(self.owners)
        if self.sockets.lost:  # a process whose sockets are lost rolls as Recreate until they are back
            desired = graph.desired_state(self.sockets.with_lost(desired.specs).values(), previous=desired)
        self.sockets.bind_for(desired.specs)  # bound already by an apply; a rollback or an undo binds here
        self.sockets.hand_over(desired.specs)
        self.reconciler.set_desired(desired)
        self.rollouts.note_commit(before, desired.specs, self.revision, body.get("git_commit"))
        if action != "sync" and self.owners:
            touched = {key for key in self.owners if before.get(key) != desired.specs.get(key)}
            if touched:
                self.on_owned_change(touched)
        text = f"revision {self.revision} ({action}{': ' + message if message else ''})"
        self.events.emit(Event(now, EventType.APPLIED, "", f"applied {text}"))

    def _created_from_meta(self) -> dict[str, float]:
        return {str(k): float(v) for k, v in self._json_meta("created").items()}

    def _json_meta(self, name: str) -> dict[str, Any]:
        return self.store.json_meta(name, {})  # type: ignore[no-any-return]

    # -- what GitSyncs own ------------------------------------------------------------------------

    def owned_by(self, owner: str) -> set[str]:
        return {key for key, who in self.owners.items() if who == owner}

    def _refuse_owned(self, keys: Sequence[str], verb: str, body: dict[str, Any]) -> None:
        """An object a GitSync applied changes in its repo: an apply (or a rollback) of it from elsewhere is
        refused, unless forced (the sync then reports the drift, and sets it back with selfHeal)."""
        owner = str(body.get("owner") or "")
        if body.get("force"):
            return
        taken = [key for key in keys if self.owners.get(key, owner) != owner]
        if taken:
            shown = ", ".join(f"{key} (by {self.owners[key]})" for key in taken[:5])
            raise Conflict(f"{len(taken)} object(s) are managed by a GitSync: {shown}{' ...' if len(taken) > 5 else ''}"
                           f". Change them in git, or {verb} with --force (the sync reports the drift, and sets it "
                           "back if its selfHeal is on)")

    def sync_apply(self, owner: str, specs: Sequence[ProcessSpec], *, prune: bool, git_commit: str,
                   paths: Sequence[str], message: str) -> dict[str, Any]:
        """A GitSync's pass: make `specs` desired as one revision (action "sync", user the owner), and the
        objects it owned that are gone from them pruned (when `prune`, and not labelled
        orchestrator.io/prune: "false") or kept and named. Objects no sync owns are adopted; one owned by
        another sync refuses the whole pass. Raises (changing nothing) as apply does."""
        from ..planning.gitsync import prunable

        self._refuse_while_shutting_down()
        taken = [spec.key for spec in specs if self.owners.get(spec.key, owner) != owner]
        if taken:
            raise Conflict(", ".join(f"{key} is owned by {self.owners[key]}" for key in taken[:5]) +
                           ": one object, one GitSync")
        current = dict(self.reconciler.desired.specs)
        new, results = self._merged(specs, current, dry_run=False)
        applied = {spec.key for spec in specs}
        skipped = []
        for key in sorted(self.owned_by(owner) - applied):
            spec = current.get(key)
            if spec is None:
                continue
            if prune and prunable(spec):
                del new[key]
                results.append(_result(spec, "pruned", spec))
            else:
                skipped.append(key)
        desired = graph.desired_state(new.values(), previous=self.reconciler.desired)
        changed = any(r["result"] != "unchanged" for r in results)
        if changed:
            self.sockets.bind_for(desired.specs)
            self._commit(desired, "sync", {"user": owner, "git_commit": git_commit}, paths,
                         f"{message}: {changes_text(results)}")
        owners = {k: v for k, v in self.owners.items() if v != owner or k in desired.specs}
        owners.update({key: owner for key in applied})
        self._set_owners(owners)
        return {"revision": self.revision, "results": results, "prune_skipped": skipped}

    def release(self, owner: str, prune: bool) -> list[str]:
        """A GitSync removed: what it owned is no one's now; with `prune`, it is deleted (but what is labelled
        orchestrator.io/prune: "false")."""
        from ..planning.gitsync import prunable

        owned = self.owned_by(owner)
        current = self.reconciler.desired.specs
        pruned = sorted(k for k in owned if prune and k in current and prunable(current[k]))
        if pruned:
            self._refuse_while_shutting_down()
            remaining = [s for k, s in current.items() if k not in pruned]
            try:
                desired = graph.desired_state(remaining, previous=self.reconciler.desired)
            except ManifestError as error:
                raise Conflict(f"cannot prune what {owner} owns: {error}") from None
            self._commit(desired, "sync", {"user": owner}, [], f"{owner} removed: -" + " -".join(pruned))
        self._set_owners({k: v for k, v in self.owners.items() if v != owner})
        return pruned

    def _set_owners(self, owners: dict[str, str]) -> None:
        """Kept in memory at once; saved now, or (the store busy) with the next change or `_commit`."""
        if owners != self.owners or self._owners_unsaved:
            self.owners = owners
            try:
                self.store.set_meta("owners", json.dumps(owners, sort_keys=True))
                self._owners_unsaved = False
            except StoreBusy:
                self._owners_unsaved = True  # the revision is committed: this must not undo it



def _result(spec: ProcessSpec, result: str, old: ProcessSpec | None) -> dict[str, Any]:
    restart = result == "configured" and old is not None and needs_restart(old, spec) and not spec.stopped
    return {"key": spec.key, "kind": spec.kind.value, "result": result, "restart": restart, "stopped": spec.stopped}


def changes_text(results: Sequence[dict[str, Any]]) -> str:
    """What an apply changed, for `history`: `+new ~changed -pruned`, names only (at most 10 shown)."""
    marks = {"created": "+", "configured": "~", "pruned": "-"}
    words = [f"{marks[r['result']]}{r['key'].split('/', 1)[1]}" for r in results if r["result"] in marks]
    return " ".join(words[:10]) + (f" (+{len(words) - 10} more)" if len(words) > 10 else "")


def _under(file: str, paths: Sequence[str]) -> bool:
    real = os.path.realpath(file)
    for path in paths:
        root = os.path.realpath(path)
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return True
    return False


def _parse_selector(text: str) -> list[tuple[str, str, str]]:
    """Kubernetes' equality-based label selector: `key=value` (or `==`), `key!=value`, `key` (has it),
    `!key` (has it not), joined by commas; every term must hold. (Set-based terms are refused, named.)"""
    terms = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if " in " in f" {part} " or " notin " in f" {part} " or "(" in part:
            raise Conflict(f"label selector {part!r}: set-based terms (in, notin) are not supported; use "
                           "key=value, key!=value, key or !key")
        if "!=" in part:
            key, _, value = part.partition("!=")
            terms.append((key.strip(), "!=", value.strip()))
        elif "=" in part:
            key, _, value = part.replace("==", "=", 1).partition("=")
            terms.append((key.strip(), "=", value.strip()))
        elif part.startswith("!"):
            terms.append((part[1:].strip(), "!", ""))
        else:
            terms.append((part, "exists", ""))
        if not terms[-1][0]:
            raise Conflict(f"bad label selector {part!r}: no label name")
    return terms


def _selects(labels: dict[str, str], key: str, op: str, value: str) -> bool:
    if op == "=":
        return labels.get(key) == value
    if op == "!=":
        return labels.get(key) != value  # as Kubernetes: an object without the label matches too
    if op == "!":
        return key not in labels
    return key in labels


def _matches(document: dict[str, Any], name: str) -> bool:
    return document["key"] == name or document["name"] == name


def _set_variables(value: Any) -> dict[str, str]:
    """The ${NAME}s a watch re-reads its manifests with: those its apply used that were set."""
    if not isinstance(value, dict):
        return {}
    return {str(name): str(text) for name, text in value.items() if isinstance(text, str)}


def _with_hold(spec: ProcessSpec, old: ProcessSpec | None) -> ProcessSpec:
    """`spec` held as the object it replaces is: a manifest or a revision says nothing of `orchestrator stop`
    (an object held stopped stays so through an apply or a rollback, and one that runs keeps running)."""
    if old is None or (old.stopped == spec.stopped and old.restart_nonce == spec.restart_nonce):
        return spec
    # (`rollout restart`'s nonce is the daemon's too: a re-apply does not restart again, nor undo it.)
    return dataclasses.replace(spec, stopped=old.stopped, restart_nonce=old.restart_nonce)
