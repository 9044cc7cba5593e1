"""The GitSyncs a daemon keeps: each follows one ref of a git repository and applies what its path holds.

One thread per sync waits on a condition (an idle sync wakes once per poll) until its next poll, a webhook
or a `sync now`, then runs one pass: resolve the ref (host/git.py), decide with planning/gitsync.py, and for
a commit worth it fetch, export and load it, all off the reconciler's thread. What runs changes in one
place only: `Operations.sync_apply`, posted to the reconciler's thread, for a commit whose every document
loaded and validated, as one revision carrying the commit and the sync's name (a sync of target Fleet
writes to the fleet's etcd instead, through the fleet agent, and only while this node leads it: the local
engine is not touched). A commit that fails keeps what runs as it is and is not tried again until a new
commit, a change of the sync, or `sync now --force`.

Specs and status are kept in the store (meta "gitsyncs"), so a restarted daemon knows which commit it
applied and does not apply it again. Secrets are only ever file paths here: git's messages come redacted
from host/git.py, and nothing read from a credential file is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import Location, ManifestError, OrchestratorError, Problem, UserError
from ..core.events import Event, EventType
from ..core.gitsync import FLEET, GitSyncSpec
from ..core.model import ProcessSpec
from ..planning import gitsync as plan
from .control import Conflict, NotFound
from .operations import changes_text

HISTORY = 5  # syncs kept in a status, as Flux keeps
MAX_WAIT_SECONDS = 3600.0  # a worker looks at its clock at least this often (Condition.wait has a ceiling)
MAX_SHOWN_PROBLEMS = 50  # in one event's message
MAX_KEPT_PROBLEMS = 500  # in a status (saved with each change) and an answer; the count says how many there were
WEBHOOK_GAP_SECONDS = 5.0  # webhook-triggered passes of one sync, at most one per this
STANDBY_SECONDS = 30.0  # a sync of target Fleet that another node leads looks at its election this often at least
TRANSIENT = {"NetworkError", "Timeout", "AuthFailed", "CredentialFile", "FetchFailed"}  # retried with backoff
Call = Callable[[Callable[[Any], Any]], Any]


@dataclasses.dataclass
class SyncState:
    """What one sync knows; saved with its spec. Times are wall-clock seconds."""

    revision: str | None = None  # the ref as last resolved, `main@sha1:...`
    commit: str | None = None
    applied: tuple[str, str] | None = None  # (commit, spec hash) of the last applied pass
    applied_revision: str | None = None
    applied_number: int | None = None  # the orchestrator revision that holds what it applied
    attempted_revision: str | None = None
    failed: tuple[str, str] | None = None  # (commit, spec hash) that failed for good
    failures: int = 0  # transient ones in a row
    last_fetch_at: float | None = None
    last_sync_at: float | None = None
    next_sync_at: float | None = None
    sync: str = plan.UNKNOWN
    message: str = ""
    conditions: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    suspended: bool = False  # `sync suspend` (spec.suspend is the manifest's own)
    suspend_reason: str = ""
    drift: list[str] = dataclasses.field(default_factory=list)
    prune_skipped: list[str] = dataclasses.field(default_factory=list)
    leader: str | None = None  # target Fleet: the node that leads the sync, as this node last saw it
    fleet_objects: list[str] = dataclasses.field(default_factory=list)  # target Fleet: the keys it last wrote

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> SyncState:
        known = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in value.items() if k in known})
        state.applied = tuple(state.applied) if state.applied else None  # type: ignore[assignment]
        state.failed = tuple(state.failed) if state.failed else None  # type: ignore[assignment]
        return state


@dataclasses.dataclass
class _Worker:
    thread: threading.Thread | None = None
    wake: threading.Condition = dataclasses.field(default_factory=threading.Condition)
    due: float = 0.0  # monotonic
    asked: list[_Asked] = dataclasses.field(default_factory=list)
    stopped: bool = False
    last_hook: float = -1e9
    passes: int = 0


@dataclasses.dataclass
class _Asked:
    force: bool = False
    manual: bool = True
    revision: str | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    outcome: dict[str, Any] = dataclasses.field(default_factory=dict)


def spec_hash(spec: GitSyncSpec) -> str:
    """What of a sync's spec decides what a commit renders to: another path or ref is worth a new try."""
    text = json.dumps([spec.repo, spec.ref_kind, spec.ref, spec.path, spec.allow_empty, spec.prune])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class GitSyncs:
    def __init__(self, state_dir: Path, ops: Any, call: Call, emit: Callable[[Event], None],
                 wall: Callable[[], float] = time.time) -> None:
        self.root = state_dir / "git"
        self.marker = str(state_dir.resolve())  # as the executor marks replicas
        self._git: Any = None
        self.ops = ops
        self.call = call
        self.emit = emit
        self.wall = wall
        self.specs: dict[str, GitSyncSpec] = {}
        self.states: dict[str, SyncState] = {}
        self.applied: dict[str, dict[str, ProcessSpec]] = {}  # name -> what its last pass applied, by key
        self._workers: dict[str, _Worker] = {}
        self._removing: set[str] = set()
        # A daemon in fleet mode: its agent (daemon/fleet.py), which holds the elections of the syncs of
        # target Fleet and writes what they apply to etcd; None on a single host.
        self.fleet: Any = None
        self._lock = threading.RLock()  # specs, states: read by request threads, written by workers and the loop

    @property
    def git(self) -> Any:
        """host/git.py's cache under the state dir, made when a first sync needs it."""
        if self._git is None:
            from ..host.git import GitCache

            self._git = GitCache(self.root, marker=self.marker)
        return self._git

    def automated(self, owner: str) -> bool:
        """Whether the sync `owner` (gitsync/NAME) applies on its own now (not suspended)."""
        name = owner.split("/", 1)[1] if owner.startswith("gitsync/") else ""
        with self._lock:
            spec, state = self.specs.get(name), self.states.get(name)
        # Pinned to a commit, a sync applies nothing new on its own: a rollback is the operator's call then.
        return (spec is not None and state is not None and not spec.suspend and not state.suspended
                and spec.ref_kind != "commit")

    def webhook_secret_file(self, name: str) -> str | None:
        with self._lock:
            spec = self.specs.get(name)
        return spec.webhook_secret_file if spec is not None else None

    # -- keeping them -----------------------------------------------------------------------------

    def restore(self) -> None:
        """Take up the syncs a previous daemon kept and start each (its first pass at once)."""
        from ..manifests.gitsyncs import gitsync_from_document

        raw = self.ops.store.get_meta("gitsyncs")
        try:
            kept = json.loads(raw) if raw else {}
        except ValueError:
            kept = {}
        for name, entry in kept.items():
            try:
                spec = gitsync_from_document(entry["document"], where=f"gitsync/{name} (state.db)")
                state = SyncState.from_json(entry.get("status", {}))
            except (ManifestError, KeyError, TypeError, ValueError) as error:
                self._event(EventType.SYNC_FAILED, name, f"kept sync not read, dropped: {error}")
                continue
            state.leader = None  # a fleet sync learns anew whether it leads (and then writes its commit again)
            self.specs[name], self.states[name] = spec, state
            self.applied[name] = self._applied_from_store(name, state)
            self._start(name)

    def _applied_from_store(self, name: str, state: SyncState) -> dict[str, ProcessSpec]:
        if state.applied_number is None:
            return {}
        revision = self.ops.store.revision(state.applied_number)
        owned = self.ops.owned_by(_owner(name))
        return {s.key: s for s in revision.specs if s.key in owned} if revision is not None else {}

    def refusal(self, spec: GitSyncSpec) -> str | None:
        """Why this daemon cannot keep `spec` as it is (None: it can): target Fleet without fleet mode, or a
        kept sync's target changed (what it applied would be left behind where it was)."""
        if spec.target == FLEET and self.fleet is None:
            return ("target Fleet writes to a fleet's etcd: this daemon is not in fleet mode (start it with "
                    "`orchestrator daemon --etcd URL --node-name NAME`), or leave target out to apply here")
        with self._lock:
            old = self.specs.get(spec.name)
        if old is not None and old.target != spec.target:
            return (f"gitsync/{spec.name} has target {old.target}: a sync does not change target (what it applied "
                    f"would stay behind); `orchestrator sync remove {spec.name}` first, then add it again")
        return None

    def put(self, spec: GitSyncSpec, dry_run: bool = False) -> dict[str, Any]:
        """Keep `spec` (from `sync add` or an applied manifest): created, configured or unchanged."""
        refused = self.refusal(spec)
        if refused is not None:
            raise ManifestError([Problem(spec.location or Location(f"gitsync/{spec.name}"), "spec.target", refused)])
        with self._lock:
            old = self.specs.get(spec.name)
            result = "created" if old is None else ("unchanged" if old == spec else "configured")
            if dry_run or result == "unchanged":
                return {"name": spec.name, "result": result}
            self.specs[spec.name] = spec
            state = self.states.setdefault(spec.name, SyncState())
            if spec.suspend:
                state.sync = plan.OUT_OF_SYNC
            self._save()
        if old is None:
            self._event(EventType.SYNC_ADDED, spec.name, f"following {_ref_words(spec)} of {spec.repo}, path "
                        f"{spec.path}")
            self._start(spec.name)
        else:
            self.trigger(spec.name)
        return {"name": spec.name, "result": result}

    def remove(self, name: str, prune: bool) -> dict[str, Any]:
        """Forget the sync (stop its thread); with `prune`, stop and forget what it owns too (on the loop)."""
        self._get(name)
        self._removing.add(name)  # a pass still under way applies nothing now
        worker = self._workers.pop(name, None)
        if worker is not None:
            with worker.wake:
                worker.stopped = True
                worker.wake.notify_all()
            if worker.thread is not None and worker.thread is not threading.current_thread():
                worker.thread.join(timeout=120)
        try:
            pruned = self.call(lambda r: self.ops.release(_owner(name), prune))
        except BaseException:
            self._removing.discard(name)
            self._start(name)  # still kept: it goes on as before
            raise
        self._removing.discard(name)
        if self.fleet is not None:
            self.fleet.resign(name)
        with self._lock:
            self.specs.pop(name, None)
            self.states.pop(name, None)
            self.applied.pop(name, None)
            self._save()
        self._event(EventType.SYNC_REMOVED, name, "removed" + (f", pruned {', '.join(pruned)}" if pruned else ""))
        return {"name": name, "removed": True, "pruned": pruned}

    def written_anew(self, revision: int) -> None:
        """state.db was written anew from memory, the desired state as `revision`: what each sync applied is
        in that one now; saved again."""
        with self._lock:
            for state in self.states.values():
                if state.applied_number is not None:
                    state.applied_number = revision
        self._save()

    def stop_all(self) -> None:
        workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            with worker.wake:
                worker.stopped = True
                worker.wake.notify_all()
        for worker in workers:
            if worker.thread is not None:
                worker.thread.join(timeout=5)  # a git child in flight is ended at its timeout at most

    def suspend(self, name: str, suspended: bool, reason: str = "") -> dict[str, Any]:
        spec = self._get(name)
        with self._lock:
            state = self.states[spec.name]
            changed = state.suspended != suspended
            state.suspended, state.suspend_reason = suspended, (reason if suspended else "")
            self._save()
        if changed:
            still = " (but its manifest says suspend: true, which holds it still)" if spec.suspend else ""
            self._event(EventType.SYNC_SUSPENDED if suspended else EventType.SYNC_RESUMED, name,
                        ("suspended" + (f": {reason}" if reason else "")) if suspended else f"resumed{still}")
            if not suspended:
                self.trigger(name)
        return {"sync": self.status(name)}

    # -- passes -----------------------------------------------------------------------------------

    def trigger(self, name: str, webhook: bool = False) -> None:
        """Run a pass soon (a webhook: at most one per WEBHOOK_GAP_SECONDS; a burst is one pass)."""
        worker = self._workers.get(name)
        if worker is None:
            return
        now = time.monotonic()
        with worker.wake:
            at = now
            if webhook:
                at = max(now, worker.last_hook + WEBHOOK_GAP_SECONDS)
                if worker.due <= at:
                    return  # a pass is due by then already: this hook is part of the burst
                worker.last_hook = at
            worker.due = min(worker.due, at)
            worker.wake.notify_all()

    def sync_now(self, name: str, force: bool, revision: str | None, timeout: float = 600.0) -> dict[str, Any]:
        """`sync now`: a pass at once, waited for (a pass already running finishes first)."""
        self._get(name)
        worker = self._workers.get(name)
        if worker is None:
            raise Conflict(f"gitsync/{name} is being removed")
        if revision is not None and (len(revision) != 40 or any(c not in "0123456789abcdef" for c in revision.lower())):
            raise Conflict(f"--revision {revision!r}: a commit is 40 hex digits (an abbreviated one cannot be fetched)")
        asked = _Asked(force=force, revision=revision.lower() if revision else None)
        with worker.wake:
            if worker.stopped:
                raise Conflict(f"gitsync/{name} is being removed, or the daemon is stopping")
            worker.asked.append(asked)
            worker.wake.notify_all()
        if not asked.done.wait(timeout):
            raise Conflict(f"gitsync/{name}: the pass did not end within {timeout:g} s; it goes on")
        return {"sync": self.status(name), "outcome": asked.outcome}

    def _start(self, name: str) -> None:
        worker = _Worker(due=time.monotonic())
        self._workers[name] = worker
        worker.thread = threading.Thread(target=self._run, args=(name, worker), name=f"gitsync/{name}", daemon=True)
        worker.thread.start()

    def _run(self, name: str, worker: _Worker) -> None:
        while True:
            with worker.wake:
                while not worker.stopped and not worker.asked and time.monotonic() < worker.due:
                    worker.wake.wait(min(worker.due - time.monotonic(), MAX_WAIT_SECONDS))
                if worker.stopped:
                    for waiting in worker.asked:
                        waiting.outcome = _outcome("skipped", "the sync was stopped")
                        waiting.done.set()
                    return
                asked, worker.asked = worker.asked, []
                worker.due = float("inf")  # set again by the pass
            manual = bool(asked)
            force = any(a.force for a in asked)
            revision = next((a.revision for a in asked if a.revision), None)
            try:
                outcome, wait = self._pass(name, force=force, manual=manual, revision=revision,
                                           first=worker.passes == 0)
            except Exception as error:  # noqa: BLE001 - a bug: reported, the sync and the daemon go on
                outcome, wait = {"result": "failed", "message": f"internal error: {error!r}", "problems": []}, 60.0
                self._event(EventType.INTERNAL_ERROR, name, f"sync pass failed: {error!r}")
            with worker.wake:
                worker.passes += 1
                worker.due = min(worker.due, time.monotonic() + wait)
            with self._lock:
                state = self.states.get(name)
                if state is not None:
                    state.next_sync_at = self.wall() + wait
            for one in asked:
                one.outcome = outcome
                one.done.set()

    def _pass(self, name: str, force: bool, manual: bool, revision: str | None, first: bool = False,
              ) -> tuple[dict[str, Any], float]:
        """One pass; returns its outcome and the seconds until the next."""
        from ..host.git import GitError

        with self._lock:
            spec = self.specs.get(name)
            state = self.states.get(name)
        if spec is None or state is None:
            return _outcome("skipped", "removed"), float("inf")
        interval = plan.poll_delay(spec.interval_seconds, first)
        if state.suspended or spec.suspend:
            self._set(name, sync=plan.OUT_OF_SYNC, message="suspended" + (
                f": {state.suspend_reason}" if state.suspend_reason else ""),
                add=("Suspended", "Suspended", state.suspend_reason or "suspended"))
            return _outcome("refused" if manual else "skipped",
                            f"gitsync/{name} is suspended: `orchestrator sync resume {name}` first"), interval
        self._set(name, remove="Suspended", save=False)
        if spec.target == FLEET:
            standby = self._standby(name, spec, interval, manual)
            if standby is not None:
                return standby
        auth = _auth(spec)
        try:
            commit = revision or self.git.resolve(spec.repo, spec.ref_kind, spec.ref, auth, spec.timeout_seconds)
        except GitError as error:
            return self._fetch_failed(name, spec, error), self._retry_in(name, spec)
        wall = self.wall()
        text = plan.revision_text(spec.ref_text, commit)
        with self._lock:
            state.last_fetch_at, state.commit, state.revision = wall, commit, text
            unreachable = state.conditions.pop("FetchFailed", None) is not None
        if unreachable:
            self._event(EventType.SYNC_FETCHED, name, f"{spec.repo} reachable again: {text}")
        digest = spec_hash(spec)
        step = plan.next_step(commit, digest, state.applied, state.failed, bool(state.drift) and spec.self_heal,
                              force)
        if step is plan.Step.NOTHING:
            if state.failed is not None and state.failed[0] != commit:  # the ref went back to what runs
                with self._lock:
                    state.failed = None
                    self._drop_condition(state, "ValidationFailed")
            in_sync = not state.drift and not state.prune_skipped
            self._set(name, sync=plan.SYNCED if in_sync else plan.OUT_OF_SYNC,
                      message=state.message if not in_sync else f"no changes since {text}", save=False)
            return _outcome("unchanged", f"no changes since {text}"), interval
        if step is plan.Step.KEEP_FAILED and state.drift and spec.self_heal and state.applied is not None:
            commit, step = state.applied[0], plan.Step.SYNC  # heal with the commit that runs, not the failed one
            text = plan.revision_text(spec.ref_text, commit)
        if step is plan.Step.KEEP_FAILED:
            return _outcome("failed", f"{text} failed before: not tried again until a new commit or "
                            f"`sync now {name} --force`", state.conditions.get("ValidationFailed", {}).get(
                                "problems", [])), interval
        from ..planning.windows import next_change, window_verdict

        allowed, why = window_verdict(spec.windows, wall, manual)
        if not allowed:
            change = next_change(spec.windows, wall)
            wait = min(interval, max(1.0, change - wall)) if change is not None else interval
            self._set(name, sync=plan.OUT_OF_SYNC, message=f"{text} not applied: {why}", add=(
                "WindowDenied", "WindowDenied", why))
            return _outcome("refused" if manual else "skipped", why), wait
        self._set(name, remove="WindowDenied", save=False)
        with self._lock:
            state.attempted_revision = text
        try:
            if self.git.fetch(spec.repo, commit, auth, spec.timeout_seconds,
                              branch=spec.ref if spec.ref_kind == "branch" else None):
                self._event(EventType.SYNC_FETCHED, name, f"fetched {text}")
            tree = self.git.export(spec.repo, commit, spec.path, spec.timeout_seconds)
        except GitError as error:
            if error.reason in TRANSIENT:
                return self._fetch_failed(name, spec, error), self._retry_in(name, spec)
            problem = Problem(Location(f"gitsync/{name}@{commit[:7]}:{spec.path}"), "", str(error))
            return self._commit_failed(name, spec, commit, digest, error.reason, [problem]), interval
        try:
            specs = self._load(name, spec, commit, tree)
        except ManifestError as error:
            return self._commit_failed(name, spec, commit, digest, "ValidationFailed", error.problems), interval
        outcome = self._apply(name, spec, commit, digest, specs, tree)
        return outcome, (self._retry_in(name, spec) if outcome.get("retry") else interval)

    def _standby(self, name: str, spec: GitSyncSpec, interval: float, manual: bool,
                 ) -> tuple[dict[str, Any], float] | None:
        """A sync of target Fleet: None when this node leads it (the pass goes on), else the outcome of a pass
        that stands by (another node leads it, or etcd cannot be asked) and when to look again: at its
        interval at most, and sooner when the agent sees its leader go (leaders_changed)."""
        from ..host.etcd import EtcdError

        if self.fleet is None:
            message = "target Fleet: this daemon is not in fleet mode (--etcd): nothing synced"
            self._set(name, sync=plan.UNKNOWN, message=message)
            return _outcome("skipped", message), interval
        try:
            leader = self.fleet.lead(name)
        except EtcdError as error:
            return self._fetch_failed(name, spec, error, "FetchFailed"), self._retry_in(name, spec)
        leads = leader is not None and leader == self.fleet.node
        with self._lock:
            state = self.states.get(name)
            if state is None:
                return _outcome("skipped", "removed"), float("inf")
            if leads and state.leader != leader:
                state.applied = None  # another node may have applied since this one last did: written again
            state.leader = leader
        if leads:
            return None
        message = (f"standing by: {leader} leads this sync" if leader is not None
                   else "standing by: this node is not registered with etcd yet")
        self._set(name, sync=plan.UNKNOWN, message=message, save=False)
        asked = f"{message} (`sync now` there)" if leader is not None else message
        return _outcome("refused" if manual else "skipped", asked), min(interval, STANDBY_SECONDS)

    def leaders_changed(self, leaders: dict[str, str]) -> None:
        """The agent saw who leads each fleet sync now: a sync of ours that saw another leader (or none: its
        node was lost, or this node has just registered) looks at its election at once."""
        with self._lock:
            stale = [name for name, spec in self.specs.items() if spec.target == FLEET
                     and (name not in leaders or getattr(self.states.get(name), "leader", None) != leaders[name])]
        for name in stale:
            worker = self._workers.get(name)
            if worker is not None:
                with worker.wake:
                    worker.due = min(worker.due, time.monotonic())
                    worker.wake.notify_all()

    def _load(self, name: str, spec: GitSyncSpec, commit: str, tree: Path) -> list[ProcessSpec]:
        """The specs of an exported tree, located in the repo for problems, working dirs made stable."""
        from ..manifests.loader import KeptSpec, kept_kind

        where = f"gitsync/{name}@{commit[:7]}:"
        nested: list[KeptSpec] = []
        if not any(p.suffix in (".yaml", ".yml") for p in tree.rglob("*")):
            specs: tuple[ProcessSpec, ...] = ()  # no manifest file at all: empty, as allowEmpty decides
        else:
            specs = self._read_tree(name, spec, commit, tree, nested)
        if nested:
            raise ManifestError([_relocated(Problem(s.location or Location(str(tree)), "kind", (
                "a GitSync inside a synced path is not followed (sync add it on its own)" if kept_kind(s) == "GitSync"
                else f"a {kept_kind(s)} inside a synced path is not kept yet: apply it with `orchestrator apply`")),
                tree, spec.path, where)
                for s in nested])
        if not specs and not spec.allow_empty:
            raise ManifestError([Problem(Location(f"{where}{spec.path}"), "", (
                "no Process or Job in this path: refused, since applying it would remove everything the sync "
                "owns (set allowEmpty: true if that is what you want)"))])
        stable = str(self.root / "work" / name)
        return [_stable(s, str(tree), stable) for s in specs]

    @staticmethod
    def _read_tree(name: str, spec: GitSyncSpec, commit: str, tree: Path, nested: list[Any],
                   ) -> tuple[ProcessSpec, ...]:
        from ..manifests.loader import load_specs

        where = f"gitsync/{name}@{commit[:7]}:"
        try:  # ${NAME}s are never the daemon's, and envFrom stays inside the commit's tree
            return load_specs([str(tree)], variables={}, kept=nested, env_root=str(tree))
        except ManifestError as error:
            raise ManifestError([_relocated(p, tree, spec.path, where) for p in error.problems]) from None

    def _apply(self, name: str, spec: GitSyncSpec, commit: str, digest: str, specs: list[ProcessSpec],
               tree: Path) -> dict[str, Any]:
        text = plan.revision_text(spec.ref_text, commit)
        work = self.root / "work" / name

        def still_kept() -> None:
            with self._lock:
                current, state = self.specs.get(name), self.states.get(name)
            if name in self._removing or current != spec or state is None or state.suspended:
                raise Conflict(f"gitsync/{name} was changed, suspended or removed during the pass: not applied")

        def apply(_: Any) -> dict[str, Any]:
            still_kept()
            previous, revision = _point(work, tree), self.ops.revision
            try:
                answer: dict[str, Any] = self.ops.sync_apply(
                    _owner(name), specs, prune=spec.prune, git_commit=commit, paths=[str(work)],
                    message=f"{_owner(name)} {spec.ref_text}@{commit[:7]}")
            except BaseException:
                if previous is not None and self.ops.revision == revision:
                    _point(work, previous)  # nothing was committed: what runs keeps the tree it came from
                raise
            # Here, on the loop: a change made right after this pass is compared with what it applied.
            self.applied[name] = {s.key: s for s in specs}
            return answer

        fleet = spec.target == FLEET
        try:
            if fleet:  # written to etcd here, on this sync's thread: the local engine is not touched
                still_kept()
                answer = self.fleet.write_synced(name, commit, [_unrooted(s, str(self.root / "work" / name))
                                                                for s in specs], spec.prune)
            else:
                answer = self.call(apply)
        except (ManifestError, Conflict, UserError) as error:
            # Refused by what runs now, not by the commit (checked whole before): a dependency on an object
            # deleted by hand, another sync's object, a port taken, a shutdown; in a fleet, etcd not reached or
            # this node's election lost meanwhile. Tried again with backoff.
            return {**self._fetch_failed(name, spec, error, "ApplyFailed"), "retry": True}
        except OrchestratorError as error:  # (EtcdError)
            return {**self._fetch_failed(name, spec, error, "ApplyFailed"), "retry": True}
        changes = [r for r in answer["results"] if r["result"] != "unchanged"]
        skipped = answer["prune_skipped"]
        with self._lock:
            state = self.states[name]
            state.applied, state.failures = (commit, digest), 0
            if state.failed is not None and state.failed[0] != state.commit:
                state.failed = None  # the ref moved on from the commit that failed (a heal keeps it failed)

            state.applied_revision = text
            state.applied_number = None if fleet else answer["revision"]  # (a revision of this daemon's store)
            if fleet:
                state.fleet_objects = sorted(r["key"] for r in answer["results"] if r["result"] != "pruned")
            state.last_sync_at = self.wall()
            healed = bool(state.drift)
            state.drift, state.prune_skipped = [], skipped
            self._drop_condition(state, "ApplyFailed", "Drift", *(() if state.failed else ("ValidationFailed",)))
            word = changes_text(changes) or "nothing changed"
            if skipped:
                state.conditions["PruneSkipped"] = _condition("PruneSkipped", "PruneSkipped", (
                    f"not pruned (prune is off, or labelled {plan.NO_PRUNE_LABEL}: \"false\"): {', '.join(skipped)}"),
                    self.wall())
            else:
                self._drop_condition(state, "PruneSkipped")
            self._record(state, text, commit, "applied" if changes else "unchanged", word,
                         answer["revision"] if changes and not fleet else None)
            self._set(name, sync=plan.UNKNOWN if state.failed else plan.OUT_OF_SYNC if skipped else plan.SYNCED,
                      message=f"applied {text}: {word}" + (f"; not pruned: {', '.join(skipped)}" if skipped else ""))
        if changes:
            where = f"fleet etcd revision={answer['revision']}" if fleet else f"rev={answer['revision']}"
            self._event(EventType.SYNC_APPLIED, name, f"{where} commit={commit} {word}")
        if healed:
            self._event(EventType.SELF_HEALED, name, f"owned objects set back to {text}")
        if skipped:
            self._event(EventType.PRUNE_SKIPPED, name, f"not pruned: {', '.join(skipped)}")
        return _outcome("applied" if changes else "unchanged", state.message)

    def _commit_failed(self, name: str, spec: GitSyncSpec, commit: str, digest: str, reason: str,
                       problems: Sequence[Problem]) -> dict[str, Any]:
        """A commit that cannot be applied as it is: what runs stays, the commit is not tried again."""
        text = plan.revision_text(spec.ref_text, commit)
        shown = "; ".join(str(p) for p in problems[:MAX_SHOWN_PROBLEMS])
        if len(problems) > MAX_SHOWN_PROBLEMS:
            shown += f" (+{len(problems) - MAX_SHOWN_PROBLEMS} more: `orchestrator sync get {name}`)"
        kept = self.states[name].applied_revision
        message = f"{text} not applied ({reason}): {shown}. Running: {kept or 'nothing from this sync'}"
        with self._lock:
            state = self.states[name]
            state.failed, state.attempted_revision = (commit, digest), text
            condition = _condition("ValidationFailed", reason, message, self.wall())
            condition["problems"] = [p.to_json() for p in problems[:MAX_KEPT_PROBLEMS]]
            condition["problems_total"] = len(problems)
            state.conditions["ValidationFailed"] = condition
            self._record(state, text, commit, "failed", f"{reason}: {shown}", None)
            self._set(name, sync=plan.UNKNOWN, message=message)
        self._event(EventType.SYNC_FAILED, name, message)
        return _outcome("failed", message, [p.to_json() for p in problems[:MAX_KEPT_PROBLEMS]])

    def _fetch_failed(self, name: str, spec: GitSyncSpec, error: Exception, reason: str | None = None,
                      ) -> dict[str, Any]:
        """The repo not reached, or the commit refused for now: what runs stays; retried with backoff."""
        reason = reason or str(getattr(error, "reason", "FetchFailed"))
        kind = "ApplyFailed" if reason == "ApplyFailed" else "FetchFailed"
        with self._lock:
            state = self.states[name]
            state.failures += 1
            wait = plan.retry_delay(state.failures, spec.retry_interval_seconds, spec.interval_seconds)
            message = f"{error} (retry in {wait:.0f} s; running: {state.applied_revision or 'nothing from this sync'})"
            state.conditions[kind] = _condition(kind, reason, str(error), self.wall())
            self._set(name, sync=plan.UNKNOWN, message=message)
        self._event(EventType.SYNC_FAILED, name, message)
        return _outcome("failed", message)

    def _retry_in(self, name: str, spec: GitSyncSpec) -> float:
        return plan.retry_delay(self.states[name].failures, spec.retry_interval_seconds, spec.interval_seconds)

    # -- drift ------------------------------------------------------------------------------------

    def note_change(self, keys: set[str]) -> None:
        """On the loop thread, after a change not made by a sync (apply, scale, delete, rollback...): the syncs
        that own any of `keys` look again at what drifted."""
        owners = {self.ops.owners[k] for k in keys if k in self.ops.owners}
        live = self.ops.reconciler.desired.specs
        for owner in owners:
            name = owner.split("/", 1)[1]
            spec = self.specs.get(name)
            if spec is None:
                continue
            held = [k for k in self.applied.get(name, {}) if self.ops.rollouts.hold_of(k) is not None]
            lines = plan.drift(self.applied.get(name, {}), live, held)
            with self._lock:
                state = self.states[name]
                if lines == state.drift:
                    continue
                state.drift = lines
                if lines:
                    state.conditions["Drift"] = _condition("Drift", "Drift", "; ".join(lines), self.wall())
                    self._set(name, sync=plan.OUT_OF_SYNC, message=f"drift: {'; '.join(lines)}")
                else:
                    self._drop_condition(state, "Drift")
                    self._set(name, sync=plan.SYNCED if not state.prune_skipped else plan.OUT_OF_SYNC,
                              message="no drift")
            if lines:
                heal = (f"; set back in {spec.self_heal_delay_seconds:g} s (selfHeal)" if spec.self_heal else
                        "; selfHeal is off: `orchestrator sync now " + name + " --force` sets it back")
                self._event(EventType.DRIFT_DETECTED, name, "; ".join(lines) + heal)
                if spec.self_heal:
                    worker = self._workers.get(name)
                    if worker is not None:
                        with worker.wake:
                            worker.due = min(worker.due, time.monotonic() + spec.self_heal_delay_seconds)
                            worker.wake.notify_all()

    # -- status -----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self.specs)

    def status(self, name: str, objects: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The status document of one sync (`sync get`); `objects`: `get`'s documents, for its health."""
        from ..manifests.gitsyncs import gitsync_to_document

        spec = self._get(name)
        if objects is None:
            objects = self.call(lambda r: self.ops.objects({}))["objects"]
        fleet = spec.target == FLEET
        owned = [] if fleet else sorted(self.ops.owned_by(_owner(name)))  # (a fleet sync owns nothing here)
        rolling = self.call(lambda r: {k: self.ops.rollouts.status(k)["phase"] for k in owned
                                       if k in self.ops.reconciler.desired.specs
                                       and self.ops.reconciler.desired.specs[k].kind.value == "Process"})
        with self._lock:
            state = self.states[name]
            document = state.to_json()
            suspended = state.suspended or spec.suspend
        del document["applied"], document["failed"], document["failures"], document["commit"]
        fleet_objects = document.pop("fleet_objects")
        if fleet:  # what it wrote to the fleet: their health is the fleet's (`get --fleet`), not this node's
            health = plan.SUSPENDED if suspended else plan.UNKNOWN
        else:
            health = (plan.SUSPENDED if suspended else plan.UNKNOWN if state.applied is None and not owned
                      else plan.health(objects, owned, rolling, suspended))
        document.update({
            "name": name, "repo": spec.repo, "ref": {spec.ref_kind: spec.ref}, "path": spec.path,
            "interval_seconds": spec.interval_seconds, "prune": spec.prune, "self_heal": spec.self_heal,
            "suspended": suspended, "last_applied_revision": document.pop("applied_revision"),
            "last_attempted_revision": document.pop("attempted_revision"),
            "orchestrator_revision": document.pop("applied_number"),
            "health": health, "target": spec.target,
            "conditions": list(document["conditions"].values()), "objects": fleet_objects if fleet else owned,
            "windows": [dataclasses.asdict(w) for w in spec.windows], "spec": gitsync_to_document(spec),
        })
        return document

    def statuses(self) -> list[dict[str, Any]]:
        objects = self.call(lambda r: self.ops.objects({}))["objects"]
        return [self.status(name, objects) for name in self.names()]

    def diff(self, name: str) -> dict[str, Any]:
        """What the ref's commit renders to now, beside what the sync owns (`sync diff`): fetched and loaded
        as a pass would, applied nowhere."""
        from ..host.git import GitError
        from ..manifests import codec

        spec = self._get(name)
        try:
            commit = self.git.resolve(spec.repo, spec.ref_kind, spec.ref, _auth(spec), spec.timeout_seconds)
            self.git.fetch(spec.repo, commit, _auth(spec), spec.timeout_seconds,
                           branch=spec.ref if spec.ref_kind == "branch" else None)
            tree = self.git.export(spec.repo, commit, spec.path, spec.timeout_seconds)
        except GitError as error:
            raise Conflict(f"gitsync/{name}: {error}") from None
        specs = self._load(name, spec, commit, tree)
        return {"revision": plan.revision_text(spec.ref_text, commit), "commit": commit,
                "specs": [codec.spec_to_json(s) for s in specs], "owned": sorted(self.ops.owned_by(_owner(name))),
                "prune": spec.prune}

    # -- helpers ----------------------------------------------------------------------------------

    def _get(self, name: str) -> GitSyncSpec:
        with self._lock:
            spec = self.specs.get(name)
        if spec is None:
            raise NotFound(f"no gitsync named {name} (see `orchestrator sync list`)")
        return spec

    def _set(self, name: str, sync: str | None = None, message: str | None = None,
             add: tuple[str, str, str] | None = None, remove: str | None = None, save: bool = True) -> None:
        """Change a sync's state; a change of its sync state is an event, and is saved."""
        with self._lock:
            state = self.states.get(name)
            if state is None:
                return
            before = (state.sync, sorted(state.conditions))
            if add is not None and add[0] not in state.conditions:
                state.conditions[add[0]] = _condition(*add, self.wall())
            if remove is not None:
                self._drop_condition(state, remove)
            if sync is not None:
                state.sync = sync
            if message is not None:
                state.message = message
            changed = before != (state.sync, sorted(state.conditions))
            if save or changed:
                self._save()
        if changed and add is not None:
            event = {"WindowDenied": EventType.SYNC_SKIPPED, "Suspended": EventType.SYNC_SKIPPED}.get(add[0])
            if event is not None:
                self._event(event, name, add[2])

    @staticmethod
    def _drop_condition(state: SyncState, *types: str) -> None:
        for kind in types:
            state.conditions.pop(kind, None)

    def _record(self, state: SyncState, text: str, commit: str, result: str, message: str,
                number: int | None) -> None:
        state.history.append({"revision": text, "commit": commit, "at": self.wall(), "result": result,
                              "message": message[:2000], "orchestrator_revision": number})
        del state.history[:-HISTORY]

    def _save(self) -> None:
        from ..manifests.gitsyncs import gitsync_to_document

        with self._lock:
            kept = {name: {"document": gitsync_to_document(spec), "status": self.states[name].to_json()}
                    for name, spec in self.specs.items() if name in self.states}
        try:
            self.ops.store.set_meta("gitsyncs", json.dumps(kept, sort_keys=True))
        except OrchestratorError as error:  # the store busy: the next change saves it all again
            self.emit(Event(self.wall(), EventType.STORE_BUSY, "", f"gitsync status not saved: {error}"))

    def _event(self, kind: EventType, name: str, message: str) -> None:
        self.emit(Event(self.wall(), kind, _owner(name), message))


def _owner(name: str) -> str:
    return f"gitsync/{name}"


def _ref_words(spec: GitSyncSpec) -> str:
    return f"{spec.ref_kind} {spec.ref}"


def _outcome(result: str, message: str, problems: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    return {"result": result, "message": message, "problems": list(problems)}


def _condition(kind: str, reason: str, message: str, since: float) -> dict[str, Any]:
    return {"type": kind, "reason": reason, "message": message, "since": since, "problems": []}


def _auth(spec: GitSyncSpec) -> Any:
    from ..host.git import GitAuth

    return GitAuth(token_file=spec.token_file, username=spec.username, ssh_key_file=spec.ssh_key_file,
                   known_hosts_file=spec.known_hosts_file,
                   insecure_skip_host_key_check=spec.insecure_skip_host_key_check)


def _relocated(problem: Problem, tree: Path, path: str, where: str) -> Problem:
    """A problem of an exported file, named as the file is in the repo: `gitsync/prod@3f2a1c9:deploy/api.yaml`."""
    file = problem.location.file
    root = str(tree)
    if file == root or file.startswith(root.rstrip("/") + "/"):
        inside = posixpath.normpath(posixpath.join(path, os.path.relpath(file, root)))
        file = f"{where}{inside}"
    return problem._replace(location=problem.location._replace(file=file))


def _stable(spec: ProcessSpec, tree: str, stable: str) -> ProcessSpec:
    """A spec whose working dir (and location) are under the export of one commit, moved under the sync's
    stable path (a symlink to the tree applied): a new commit that leaves a process as it was does not
    restart it for living in another directory."""
    def moved(path: str) -> str:
        if path == tree or path.startswith(tree.rstrip("/") + "/"):
            return stable + path[len(tree.rstrip("/")):]
        return path

    location = spec.location._replace(file=moved(spec.location.file)) if spec.location is not None else None
    return dataclasses.replace(spec, working_dir=moved(spec.working_dir), location=location)


def _unrooted(spec: ProcessSpec, stable: str) -> ProcessSpec:
    """A spec for the fleet: the commit's files are on the node that leads the sync only, so a working dir in
    them becomes /, as a spec without one (the fleet's nodes run what is installed on them)."""
    if spec.working_dir == stable or spec.working_dir.startswith(stable.rstrip("/") + "/"):
        return dataclasses.replace(spec, working_dir="/")
    return spec


def _point(link: Path, target: Path) -> Path | None:
    """Make `link` a symlink to `target`, atomically; returns what it pointed to before."""
    link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        previous: Path | None = Path(os.readlink(link))
    except OSError:
        previous = None
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink()
    except FileNotFoundError:
        pass
    os.symlink(target, temporary)
    os.replace(temporary, link)
    return previous
