"""The daemon: one per state dir. Owns the lock, the store, the reconciler loop, the API and the watchers.

Every operation that reads or changes run state runs on the reconciler's thread (`_call` posts it and
waits), so concurrent applies are serialized and none is lost. On start it restores the latest revision
and adopts the processes its records name, so a daemon killed with SIGKILL and started again starts
nothing twice. SIGTERM or SIGINT (or `orchestrator shutdown`) stops everything in reverse dependency order;
a second one kills every process group at once.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from .. import __version__
from ..core.clock import SystemClock
from ..core.errors import ManifestError, UserError, problems_summary
from ..core.events import Event, EventBus, EventType, event_line
from ..core.model import DEFAULT_NAMESPACE, DesiredState, Kind, ProcessSpec, ReplicaId, ReplicaRecord
from ..engine.reconcile import Reconciler
from ..host.cgroups import choose_host
from ..host.execute import Executor
from ..host.limits import LimitWatch
from ..host.metrics import Sampler
from ..host.probes import Prober
from ..host.sockets import socket_path
from ..manifests import codec
from ..manifests.loader import check_spec
from ..planning import graph, status
from ..planning.autoscale import keep_pool_size
from ..planning.policy import Step, next_step
from .control import Conflict, ControlServer, NotFound, event_queue_iterator
from .store import Store

T = TypeVar("T")
LOCK_NAME = "daemon.lock"
MAX_REPLICAS = 10000  # as the schema says


class DaemonLocked(UserError):
    """Another daemon runs for this state dir."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class Daemon:
    def __init__(self, state_dir: Path, metrics_interval: float = 20.0, metrics_addr: str | None = None,
                 limits: str = "auto") -> None:
        """`limits`: "auto" lets the kernel enforce memory and cpu limits where a cgroup tree can be
        managed (cgroups.py), "watchdog" always samples instead."""
        self.state_dir = state_dir
        self.metrics_addr = metrics_addr
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = self._lock()
        self.store = Store(state_dir / "state.db")
        self.clock = SystemClock()
        self.events = EventBus()
        self._unsaved: list[Event] = []  # events wait for the end of the pass, so a respawn never waits on disk
        self._unsaved_lock = threading.Lock()
        self.events.subscribe(self._record_event)
        self.events.subscribe(_print_event)
        self.marker = str(state_dir.resolve())
        self.prober = Prober(lambda t: self.reconciler.post(lambda r: r.probe_transition(t)), state_dir / "logs",
                             marker=self.marker)
        self.sampler = Sampler(metrics_interval,
                               lambda key, size, why: self.reconciler.post(lambda r: r.autoscale(key, size, why)))
        self.limit_watch = LimitWatch(lambda b: self.reconciler.post(lambda r: r.limit_breach(b)))
        self.cgroups, self.limits_how = choose_host(limits, self.marker)
        executor = Executor(state_dir / "logs", marker=self.marker, cgroups=self.cgroups)
        self.reconciler = Reconciler(executor, self.clock, self.events,
                                     persist=self._persist, prober=self.prober, limit_watch=self.limit_watch,
                                     sampler=self.sampler)
        self.revision = 0
        self.created: dict[str, float] = {}
        self.watchers: list[tuple[dict[str, Any], Any]] = []  # (watch, its ManifestWatcher)
        self.server: ControlServer | None = None
        self._decoded: dict[str, tuple[Any, ProcessSpec]] = {}
        self._loop_thread = threading.current_thread()

    # -- life cycle -------------------------------------------------------------------------------

    def _lock(self) -> int:
        path = self.state_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DaemonLocked(f"another daemon (pid {holder}) is running for state dir {self.state_dir}") from error
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def restore(self) -> None:
        """Load the latest revision and adopt what the records say runs (before anything is started)."""
        latest = self.store.latest_revision()
        if latest is not None:
            self.revision = latest.number
            self.reconciler.set_desired(graph.desired_state(latest.specs))
            self.created = {spec.key: latest.at for spec in latest.specs}
            self.created.update(self._created_from_meta())
        records = self.store.load_records()
        boot = _boot_id()
        if self.store.get_meta("boot_id") not in (None, boot):
            records = {rid: _after_reboot(r) for rid, r in records.items()}
        self.store.set_meta("boot_id", boot)
        self.reconciler.adopt(records)
        self.reconciler.stop_strays(self.marker)
        self._keep_adopted_pool_sizes()
        for watch in self.store.watches():
            self._start_watch(codec_watch(watch))

    def _keep_adopted_pool_sizes(self) -> None:
        """An autoscaled pool's size is run state: a restarted daemon takes it from the replicas it adopted,
        so that restarting the daemon never scales a pool down."""
        specs = dict(self.reconciler.desired.specs)
        changed = False
        for key, spec in specs.items():
            if spec.autoscale is None:
                continue
            running = [rid.index for rid, r in self.reconciler.records.items() if rid.key == key and r.process]
            size = max(spec.autoscale.min, min(spec.autoscale.max, max(running, default=-1) + 1))
            if size != spec.replicas:
                specs[key] = dataclasses.replace(spec, replicas=size)
                changed = True
        if changed:
            self.reconciler.desired = graph.desired_state(specs.values())

    def serve(self) -> int:
        """Run until shut down; returns the exit code."""
        self._loop_thread = threading.current_thread()
        self.restore()
        if self.metrics_addr:
            from .prometheus import serve_metrics

            serve_metrics(self.metrics_addr, self)
        self.server = ControlServer(socket_path(self.state_dir), self)
        self.server.start()
        interrupts = 0

        def on_signal(signum: int, _frame: object) -> None:
            nonlocal interrupts
            interrupts += 1
            force = interrupts > 1
            self.reconciler.post(lambda r: r.shut_down(force=force))

        previous_wakeup = signal.set_wakeup_fd(self.reconciler.wake_fd, warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        print(f"orchestrator {__version__} daemon pid {os.getpid()} serving {self.server.path}", flush=True)
        print(f"memory and cpu limits: {self.limits_how}", flush=True)
        try:
            self.reconciler.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            signal.set_wakeup_fd(previous_wakeup)
            self.close()
        return 0

    def close(self) -> None:
        for _, watcher in self.watchers:
            watcher.stop()
        if self.server is not None:
            self.server.stop()
        self.prober.close()
        self.limit_watch.close()
        self.sampler.close()
        self._persist(self.reconciler.records)
        self.reconciler.close()
        if self.cgroups is not None:
            self.cgroups.close()  # only what is empty: the cgroups of replicas left running stay for adoption
        self.store.close()
        os.close(self._lock_fd)

    # -- the API ----------------------------------------------------------------------------------

    def handle(self, method: str, route: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        routes: dict[tuple[str, str], Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]] = {
            ("GET", "/health"): lambda q, b: {"pid": os.getpid(), "version": __version__,
                                              "state_dir": str(self.state_dir), "limits": self.limits_how},
            ("GET", "/objects"): lambda q, b: _with_usage(self._call(lambda r: self._objects(q)), q, self.sampler),
            ("GET", "/desired"): lambda q, b: self._call(lambda r: self._desired()),
            ("POST", "/apply"): lambda q, b: self._call(lambda r: self._apply(b)),
            ("POST", "/delete"): lambda q, b: self._call(lambda r: self._delete(b)),
            ("POST", "/restart"): lambda q, b: self._call(lambda r: self._restart(b)),
            ("POST", "/scale"): lambda q, b: self._call(lambda r: self._scale(b)),
            ("POST", "/rollback"): lambda q, b: self._call(lambda r: self._rollback(b)),
            ("GET", "/revisions"): lambda q, b: self._revisions(q),
            ("GET", "/events"): lambda q, b: self._events(q),
            ("POST", "/shutdown"): lambda q, b: self._shutdown(),
            ("POST", "/unwatch"): lambda q, b: self._call(lambda r: self._unwatch(b)),
        }
        if method == "POST" and route != "/shutdown" and self.reconciler.shutting_down:
            raise Conflict("the daemon is shutting down: nothing can be changed now")
        if (method, route) in routes:
            return routes[(method, route)](query, body)
        if method == "GET" and route.startswith("/objects/"):
            name = unquote(route[len("/objects/"):])
            return self._call(lambda r: self._describe(name))
        raise NotFound(f"no such route: {method} {route}")

    def follow_events(self, since: int, key: str | None) -> Iterator[dict[str, Any] | None]:
        if key is not None:
            name = key
            key = self._call(lambda r: self._key(name))

        def convert(event: Event) -> dict[str, Any] | None:
            if key is not None and event.key != key:
                return None
            return self._event_json(None, event)

        # Subscribed before the backlog is read, so nothing falls between the two; what is in both (saved
        # while the backlog was read) is dropped by the iterator.
        return event_queue_iterator(self.events.subscribe, self.events.unsubscribe,
                                    lambda: [self._event_json(i, e) for i, e in self.store.events(since=since, key=key)],
                                    convert)

    def _call(self, fn: Callable[[Reconciler], T], timeout: float = 60.0) -> T:
        """Run `fn` on the reconciler's thread and return its result (or raise its exception)."""
        done = threading.Event()
        outcome: list[Any] = []
        state = {"cancelled": False, "started": False}
        guard = threading.Lock()

        def run(reconciler: Reconciler) -> None:
            with guard:
                if state["cancelled"]:
                    return  # the caller was told it failed: it must not happen later behind its back
                state["started"] = True
            try:
                outcome.append((True, fn(reconciler)))
            except BaseException as error:  # noqa: BLE001 - handed back to the calling thread
                outcome.append((False, error))
            finally:
                done.set()

        self.reconciler.post(run)
        if not done.wait(timeout):
            with guard:
                if not state["started"]:
                    state["cancelled"] = True
                    raise Conflict("the reconciler did not answer in time; nothing was changed")
            done.wait()  # it has begun: wait for it, so the answer says what happened
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    # -- operations (reconciler thread) -----------------------------------------------------------

    def _wall_offset(self) -> float:
        return self.clock.wall() - self.clock.monotonic()

    def _objects(self, query: dict[str, str]) -> dict[str, Any]:
        documents = status.objects(self.reconciler.desired, self.reconciler.records, self.reconciler.waiting,
                                   self._wall_offset(), self.created,
                                   self.cgroups.label if self.cgroups is not None else "watchdog")
        selector = _parse_selector(query.get("selector", ""))
        if selector:
            documents = [d for d in documents if all(d["labels"].get(k) == v for k, v in selector.items())]
        if query.get("name"):
            documents = [d for d in documents if _matches(d, query["name"])]
        return {"revision": self.revision, "objects": documents}

    def _describe(self, name: str) -> dict[str, Any]:
        matches = self._objects({"name": name})["objects"]
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
        document["events"] = [self._event_json(i, e) for i, e in
                              self.store.events(key=document["key"], limit=20)]
        return document

    def _desired(self) -> dict[str, Any]:
        specs = self.reconciler.desired.specs.values()
        return {"revision": self.revision, "specs": [codec.spec_to_json(s) for s in specs]}

    def _refuse_while_shutting_down(self) -> None:
        """Checked on the loop thread too: a request that raced with a shutdown must not undo it."""
        if self.reconciler.shutting_down:
            raise Conflict("the daemon is shutting down: nothing can be changed now")

    def _apply(self, body: dict[str, Any]) -> dict[str, Any]:
        self._refuse_while_shutting_down()
        specs = [self._decode(item) for item in body.get("specs", [])]
        paths = [str(p) for p in body.get("paths", [])]
        dry_run = bool(body.get("dry_run"))
        current = dict(self.reconciler.desired.specs)
        new = dict(current)
        results = []
        specs = [keep_pool_size(spec, current.get(spec.key)) for spec in specs]
        for spec in specs:
            old = current.get(spec.key)
            result = "created" if old is None else ("unchanged" if old == spec else "configured")
            results.append(_result(spec, result, old))
            new[spec.key] = spec
        applied = {spec.key for spec in specs}
        if body.get("prune"):
            for key, spec in current.items():
                if key not in applied and spec.location is not None and _under(spec.location.file, paths):
                    del new[key]
                    results.append(_result(spec, "pruned", spec))
        desired = graph.desired_state(new.values())  # raises ManifestError naming what breaks
        changed = any(r["result"] != "unchanged" for r in results)
        if not dry_run:
            self._retry_failed(applied)
            if changed:
                self._commit(desired, "watch" if body.get("watched") else "apply", body, paths)
            if body.get("watch"):
                watch = {"paths": paths, "prune": bool(body.get("prune"))}
                stored = [codec_watch(w) for w in self.store.watches()]
                if watch not in stored:
                    self.store.set_watches([*(encode_watch(w) for w in stored), encode_watch(watch)])
                    self._start_watch(watch)
        return {"revision": self.revision, "results": results, "dry_run": dry_run}

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
        cached = self._decoded.get(key)
        if cached is not None and cached[0] == item:
            return cached[1]
        spec = codec.spec_from_json(item)
        problems = check_spec(spec)  # the same schema as manifests: nothing runs unvalidated
        if problems:
            raise ManifestError(problems)
        self._decoded[key] = (item, spec)
        return spec

    def _retry_failed(self, keys: set[str]) -> None:
        """An apply gives replicas that failed for good (maxRestarts, backoffLimit, Never) a new start."""
        for rid, record in list(self.reconciler.records.items()):
            spec = self.reconciler.desired.specs.get(rid.key)
            if (rid.key in keys and spec is not None and record.process is None and record.last_exit is not None
                    and spec == record.spec and next_step(spec, record).step is Step.FAILED):
                del self.reconciler.records[rid]

    def _commit(self, desired: DesiredState, action: str, body: dict[str, Any], paths: Sequence[str],
                message: str = "") -> None:
        now = self.clock.wall()
        for key in desired.specs:
            self.created.setdefault(key, now)
        for key in list(self.created):
            if key not in desired.specs:
                del self.created[key]
        self.revision = self.store.add_revision(
            list(desired.specs.values()), action=action, paths=paths, user=str(body.get("user", "")),
            git_commit=body.get("git_commit"), git_dirty=body.get("git_dirty"), message=message,
        )
        self.store.set_meta("created", _json_dumps(self.created))
        self.reconciler.set_desired(desired)
        text = f"revision {self.revision} ({action}{': ' + message if message else ''})"
        self.events.emit(Event(now, EventType.APPLIED, "", f"applied {text}"))

    def _delete(self, body: dict[str, Any]) -> dict[str, Any]:
        self._refuse_while_shutting_down()
        keys = [self._key(name) for name in body.get("names", [])]
        remaining = {k: s for k, s in self.reconciler.desired.specs.items() if k not in keys}
        for spec in remaining.values():
            for dep in spec.depends_on:
                if spec.dependency_key(dep) in keys:
                    raise Conflict(f"{spec.key} depends on {spec.dependency_key(dep)}: delete it too, or change it "
                                   "first")
        results = [_result(self.reconciler.desired.specs[k], "deleted", None) for k in keys]
        if not body.get("dry_run") and keys:
            self._commit(graph.desired_state(remaining.values()), "delete", body, [], ", ".join(keys))
        return {"revision": self.revision, "results": results}

    def _restart(self, body: dict[str, Any]) -> dict[str, Any]:
        self._refuse_while_shutting_down()
        key = self._key(str(body.get("name", "")))
        self.events.emit(Event(self.clock.wall(), EventType.RESTARTING, key, "restart requested"))
        count = self.reconciler.restart(key)
        return {"key": key, "replicas": count}

    def _scale(self, body: dict[str, Any]) -> dict[str, Any]:
        self._refuse_while_shutting_down()
        key = self._key(str(body.get("name", "")))
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

    def _rollback(self, body: dict[str, Any]) -> dict[str, Any]:
        self._refuse_while_shutting_down()
        target = body.get("revision")
        if target is None:
            target = self.revision - 1
        revision = self.store.revision(int(target))
        if revision is None:
            raise NotFound(f"no revision {target} (see `orchestrator history`)")
        current = self.reconciler.desired.specs
        results = [_result(s, "created" if s.key not in current else
                           ("unchanged" if current[s.key] == s else "configured"), current.get(s.key))
                   for s in revision.specs]
        kept = {s.key for s in revision.specs}
        results += [_result(s, "pruned", s) for k, s in current.items() if k not in kept]
        self._commit(graph.desired_state(revision.specs), "rollback", body, list(revision.paths),
                     f"to revision {revision.number}")
        return {"revision": self.revision, "results": results}

    def _unwatch(self, body: dict[str, Any]) -> dict[str, Any]:
        """Stop watching the given paths (all watches when none is given)."""
        asked = {os.path.realpath(str(p)) for p in body.get("paths", [])}
        kept, removed = [], []
        for watch, watcher in self.watchers:
            if not asked or asked & {os.path.realpath(p) for p in watch["paths"]}:
                watcher.stop()
                removed.append(watch)
            else:
                kept.append((watch, watcher))
        self.watchers = kept
        self.store.set_watches([encode_watch(w) for w, _ in kept])
        return {"removed": removed, "watching": [w for w, _ in kept]}

    def _revisions(self, query: dict[str, str]) -> dict[str, Any]:
        limit = int(query.get("limit", "50"))
        return {"revisions": [
            {"number": r.number, "at": r.at, "action": r.action, "user": r.user, "paths": list(r.paths),
             "git_commit": r.git_commit, "git_dirty": r.git_dirty, "message": r.message, "objects": r.objects}
            for r in self.store.revisions(limit=limit)
        ]}

    def _events(self, query: dict[str, str]) -> dict[str, Any]:
        limit = int(query["limit"]) if query.get("limit") else None
        name = query.get("key")
        key = self._call(lambda r: self._key(name)) if name else None
        events = self.store.events(since=int(query.get("since", "0")), limit=limit, key=key)
        return {"events": [self._event_json(i, e) for i, e in events]}

    def _shutdown(self) -> dict[str, Any]:
        watchers, self.watchers = self.watchers, []
        for _, watcher in watchers:
            watcher.stop()
        self.reconciler.post(lambda r: r.shut_down())
        return {"stopping": True, "pid": os.getpid()}

    # -- helpers ----------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
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

    def _record_event(self, event: Event) -> None:
        with self._unsaved_lock:
            self._unsaved.append(event)
        if threading.current_thread() is not self._loop_thread:
            self.reconciler.post(lambda r: None)  # from another thread: have the loop save it soon

    def _persist(self, records: Mapping[ReplicaId, ReplicaRecord]) -> None:
        """End of a reconcile pass: save what changed, records and events, in two short transactions."""
        self.store.save_records(records)
        with self._unsaved_lock:
            events, self._unsaved = self._unsaved, []
        self.store.add_events(events)

    @staticmethod
    def _event_json(event_id: int | None, event: Event) -> dict[str, Any]:
        document = event.to_json()
        document["id"] = event_id
        return document

    def _created_from_meta(self) -> dict[str, float]:
        import json

        raw = self.store.get_meta("created")
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return {str(k): float(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def _start_watch(self, watch: dict[str, Any]) -> None:
        from .watch import ManifestWatcher

        paths = [str(p) for p in watch["paths"]]
        prune = bool(watch.get("prune"))

        def changed() -> None:
            self._reapply(paths, prune)

        watcher = ManifestWatcher(paths, changed)
        watcher.start()
        self.watchers.append((watch, watcher))

    def _reapply(self, paths: list[str], prune: bool) -> None:
        """A watched path changed: load it (off the loop thread) and apply it, or report why not."""
        from ..manifests.loader import load_specs

        try:
            specs = load_specs(paths)
        except ManifestError as error:
            self.events.emit(Event(self.clock.wall(), EventType.INVALID, "", problems_summary(error.problems)))
            return
        body = {"specs": [codec.spec_to_json(s) for s in specs], "paths": paths, "prune": prune, "watched": True,
                "user": "watch"}
        try:
            self._call(lambda r: self._apply(body))
        except (ManifestError, UserError, Conflict) as error:
            self.events.emit(Event(self.clock.wall(), EventType.INVALID, "", f"not applied: {error}"))


def _print_event(event: Event) -> None:
    try:
        print(event_line(event), flush=True)
    except (BrokenPipeError, ValueError):
        pass  # nobody reads the daemon's output any more: the store keeps the events


def _after_reboot(record: ReplicaRecord) -> ReplicaRecord:
    """A record from before a reboot: no process of it can still run, and monotonic times are meaningless.

    What ran starts afresh; what had ended keeps its outcome (a Job that succeeded is not run again), with
    its backoff forgotten."""
    if record.process is not None:
        return dataclasses.replace(record, process=None, started_at=None, stop_requested_at=None, killed=False,
                                   restart_times=(), last_exit=None, crash_streak=0, started=False, ready=False,
                                   unhealthy="")
    last_exit = dataclasses.replace(record.last_exit, at=0.0) if record.last_exit else None
    return dataclasses.replace(record, restart_times=(), crash_streak=0, last_exit=last_exit)


def _with_usage(answer: dict[str, Any], query: dict[str, str], sampler: Sampler) -> dict[str, Any]:
    """Add cpu and memory of each running replica's tree: the sampler's latest pass (cpu over its interval),
    or, before its first two passes, one look now (cpu averaged over the process's life)."""
    if not query.get("usage"):
        return answer
    from ..host.observe import usage

    for document in answer["objects"]:
        for replica in document["replica_status"]:
            if not replica["pid"]:
                replica["cpu_percent"], replica["memory_bytes"] = None, None
                continue
            latest = sampler.latest(ReplicaId(document["key"], replica["index"]))
            if latest is not None and latest.cpu_percent is not None:
                replica["cpu_percent"], replica["memory_bytes"] = latest.cpu_percent, latest.memory_bytes
            else:
                look = usage(replica["pid"])
                replica["cpu_percent"], replica["memory_bytes"] = look if look else (None, None)
    return answer


def _result(spec: ProcessSpec, result: str, old: ProcessSpec | None) -> dict[str, Any]:
    from ..planning.diff import needs_restart

    restart = result == "configured" and old is not None and needs_restart(old, spec)
    return {"key": spec.key, "kind": spec.kind.value, "result": result, "restart": restart}


def _under(file: str, paths: Sequence[str]) -> bool:
    real = os.path.realpath(file)
    for path in paths:
        root = os.path.realpath(path)
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return True
    return False


def _parse_selector(text: str) -> dict[str, str]:
    selector = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise Conflict(f"bad label selector {part!r}: expected key=value")
        selector[key.strip()] = value.strip()
    return selector


def _matches(document: dict[str, Any], name: str) -> bool:
    return document["key"] == name or document["name"] == name


def _json_dumps(value: object) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def encode_watch(watch: dict[str, Any]) -> str:
    return _json_dumps(watch)


def codec_watch(text: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    return {"paths": [str(p) for p in value["paths"]], "prune": bool(value.get("prune"))}


def main(state_dir: Path, metrics_interval: float = 20.0, metrics_addr: str | None = None,
         limits: str = "auto") -> int:
    try:
        daemon = Daemon(state_dir, metrics_interval, metrics_addr, limits)
    except UserError as error:
        print(f"orchestrator: {error}", file=sys.stderr)
        return 1
    try:
        return daemon.serve()
    except UserError as error:  # e.g. the metrics address is taken: what runs is left as it is
        print(f"orchestrator: {error}", file=sys.stderr)
        daemon.close()
        return 1


__all__ = ["Daemon", "DaemonLocked", "ReplicaId", "main"]
