"""The daemon: one per state dir. Owns the lock, the store, the reconciler loop, the API and the watchers.

It puts the pieces together and runs them: requests come in through the control server and the route table
(routes.py); every operation that reads or changes run state (operations.py) runs on the reconciler's
thread (`_call` posts it and waits), so concurrent applies are serialized and none is lost. On start it restores the latest revision
and adopts the processes its records name, so a daemon killed with SIGKILL and started again starts
nothing twice. SIGTERM or SIGINT (or `orchestrator shutdown`) stops everything in reverse dependency order;
a second one kills every process group at once.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .. import __version__
from ..core.clock import SystemClock
from ..core.errors import ManifestError, StoreBusy, UserError, problems_summary
from ..core.events import Event, EventBus, EventType, event_line
from ..core.fleet import FleetConfig
from ..core.model import ReplicaId, ReplicaRecord
from ..engine.reconcile import Reconciler
from ..host.cgroups import choose_host
from ..host.environment import base_environment, pass_patterns
from ..host.execute import Executor
from ..host.limits import LimitWatch
from ..host.logindex import LogIndexer
from ..host.metrics import Sampler
from ..host.probes import Prober
from ..host.sockets import notify_service_manager, socket_path
from ..host.stamp import boot_id
from ..host.statedir import no_link, prepare_state_dir, take_lock
from ..host.subreaper import wake_on_child_exit
from ..manifests.cache import SpecCache
from ..planning import graph
from .alerting import Alerting
from .control import PREFIX, Conflict, ControlServer, event_queue_iterator
from .cronjobs import CronJobs
from .gitsyncs import GitSyncs
from .hooks import HookTarget
from .operations import Operations
from .queues import Queues
from .routes import Routes
from .store import Store
from .watches import Watches, encode_watch

T = TypeVar("T")
MAX_UNSAVED_EVENTS = 50_000  # kept in memory while the state database is locked (the oldest go first)
PERSIST_RETRY_SECONDS = 1.0


class Daemon:
    def __init__(self, state_dir: Path, metrics_interval: float = 20.0, metrics_addr: str | None = None,
                 limits: str = "auto", role: str = "daemon", pass_env: Sequence[str] = (),
                 http_addr: str | None = None, read_only: bool = False, allowed_hosts: Sequence[str] = (),
                 tls: tuple[str, str] | None = None, fleet: FleetConfig | None = None) -> None:
        """`limits`: "auto" lets the kernel enforce memory and cpu limits where a cgroup tree can be
        managed (cgroups.py), "watchdog" always samples instead. `pass_env`: variables of this process's
        environment that replicas get too (patterns; host/environment.py says what else they get). `role` "run": a foreground `orchestrator
        run`, which prints its own events and says so in the state dir's lock."""
        self.state_dir = state_dir
        self.metrics_addr = metrics_addr
        self.http_addr = http_addr
        self.http_read_only = read_only
        self.allowed_hosts = tuple(allowed_hosts)
        self.tls = tls
        self.role = role
        prepare_state_dir(state_dir)
        self._lock_fd = take_lock(state_dir, role)
        no_link(state_dir / "state.db")
        self.store = Store(state_dir / "state.db")
        self.clock = SystemClock()
        self.events = EventBus(itertools.count(self.store.last_event_id() + 1))
        self._unsaved: list[Event] = []  # events wait for the end of the pass, so a respawn never waits on disk
        self._unsaved_lock = threading.Lock()
        self._saving = threading.Lock()  # held from taking _unsaved to committing it (_event_backlog)
        self._store_busy = False  # the last save met another program's lock
        self._lost_unmended = ""  # what became of state.db, when a new one could not be made
        self._retry: threading.Timer | None = None  # the pass that saves again, while the store is busy
        self.events.subscribe(self._record_event)
        if role == "daemon":
            self.events.subscribe(_print_event)
        self.marker = str(state_dir.resolve())
        self.pass_env = pass_patterns(os.environ, pass_env)
        child_env = base_environment(os.environ, self.pass_env)
        self.sampler = Sampler(metrics_interval,
                               lambda key, size, why: self.reconciler.post(lambda r: r.autoscale(key, size, why)),
                               proportional=metrics_addr is not None)
        self.limit_watch = LimitWatch(lambda b: self.reconciler.post(lambda r: r.limit_breach(b)))
        self.cgroups, self.limits_how = choose_host(limits, self.marker)
        executor = Executor(state_dir / "logs", marker=self.marker, cgroups=self.cgroups, subreaper=True,
                            base_env=child_env)
        self.prober = Prober(lambda t: self.reconciler.post(lambda r: r.probe_transition(t)), state_dir / "logs",
                             marker=self.marker, base_env=child_env, notify=executor.notify_sockets)
        self.log_index = LogIndexer(state_dir / "logs")  # when each line of every replica's log was written
        self.reconciler = Reconciler(executor, self.clock, self.events,
                                     persist=self._persist, prober=self.prober, limit_watch=self.limit_watch,
                                     sampler=self.sampler, log_index=self.log_index)
        self.watches = Watches(self.store, self._reapply)
        self.ops = Operations(self.reconciler, self.store, self.clock, self.events, self.watches,
                              self.cgroups.label if self.cgroups is not None else "watchdog")
        self.spec_cache = SpecCache()
        self.gitsyncs = GitSyncs(state_dir, self.ops, self._call, self.events.emit, self.clock.wall)
        self.ops.on_owned_change = self.gitsyncs.note_change
        self.ops.events_after = self._events_after
        self.ops.automated = self.gitsyncs.automated
        self.alerting = Alerting(self.store, self.events.emit, self.clock.wall, self.sampler, self.reconciler.post)
        self.events.subscribe(self.alerting.on_event)
        self.sampler.on_pass = self.alerting.after_sampling
        self.cronjobs = CronJobs(self.store, self.ops, self.events.emit, self.clock.wall, self.reconciler.post,
                                 state_dir / "logs")
        self.events.subscribe(self.cronjobs.on_event)
        self.queues = Queues(self.store, self.ops, self.events.emit, self.clock.wall, self.reconciler.post)
        self.events.subscribe(self.queues.on_event)
        self.routes = Routes(self.ops, self._call, self.sampler, self._health, self._shutdown, self.spec_cache,
                             self.gitsyncs, state_dir / "logs", self.alerting, self.cronjobs, self.queues)
        self.fleet: Any = None  # fleet.py's FleetAgent, imported only with --etcd
        if fleet is not None:
            from .fleet import FleetAgent

            self.fleet = FleetAgent(fleet, self.ops, self._call, self.events.emit, self.clock.wall,
                                    stamp=state_dir / "fleet.lease", boot=boot_id(),
                                    fence_list=state_dir / "fleet.fence", marker=self.marker)
            self.events.subscribe(self.fleet.on_event)
            self.gitsyncs.fleet = self.fleet  # GitSyncs of target Fleet: elected through it, written to etcd by it
            self.fleet.on_sync_leaders = self.gitsyncs.leaders_changed
        self.server: ControlServer | None = None
        self.http: Any = None  # http.py's HttpListener, imported only with --http
        self._closed = False
        self._loop_thread = threading.current_thread()
        self._loop_ended = threading.Event()  # the reconciler's loop returned: a call would wait for nothing

    # -- life cycle -------------------------------------------------------------------------------

    def restore(self) -> None:
        """Load the latest revision and adopt what the records say runs (before anything is started)."""
        latest = self.store.latest_revision()
        records = self.store.load_records()
        kept = any(self.store.get_meta(name) for name in ("runs", "cronjobs", "alert_rules", "notifiers", "gitsyncs",
                                                          "queues"))
        if latest is None and not records and not kept and self.fleet is None:  # (CronJobs only: no revision)
            self._refuse_to_start_from_nothing()
        self.ops.restore(latest)
        boot = boot_id()
        if self.store.get_meta("boot_id") not in (None, boot):
            records = {rid: _after_reboot(r) for rid, r in records.items()}
        same_boot = self.store.get_meta("boot_id") in (None, boot)
        self.store.set_meta("boot_id", boot)
        self.ops.rollouts.restore(same_boot)
        self.reconciler.adopt(records)
        specs = self.reconciler.desired.specs
        if any(spec.sockets for spec in specs.values()) and self.ops.sockets.recover(specs, self.reconciler.records):
            self.reconciler.set_desired(graph.desired_state(self.ops.sockets.with_lost(specs).values()))
        self.reconciler.stop_strays(self.marker)
        self._keep_adopted_pool_sizes()
        if self.role == "daemon":
            self.watches.restore()
            self.gitsyncs.restore()
            self.alerting.restore()
            self.cronjobs.restore()
            self.queues.restore()

    def _fence_without_fleet(self, out: Any) -> None:
        """A fleet node's state dir, its daemon started without --etcd (on the loop's thread, before the loop
        runs): its share goes on from the store as while etcd is unreachable (Each and Spread keep running),
        but what fences is stopped now. Without etcd this daemon can never learn that it still holds those
        elections, and another node may run them once its lease expires: exclusivity first."""
        from ..planning import placement
        from .fleet import OWNER, fence_margin

        node = str(json.loads(self.store.get_meta("fleet") or "{}").get("node") or "?")
        share = {k: s for k, s in self.reconciler.desired.specs.items() if self.ops.owners.get(k) == OWNER}
        if not share:
            return
        ttl = 10  # (which specs fence does not depend on it)
        kept = placement.fenced(share, ttl, fence_margin(ttl))
        stopped = sorted(set(share) - set(kept))
        _say(f"this state dir is fleet node {node}'s: without --etcd its share runs on from the store"
             + (f", but {', '.join(stopped)} stopped (another node may hold them now)" if stopped else "")
             + f"; `orchestrator daemon --etcd URLS --node-name {node}` rejoins the fleet", out)
        if not stopped:
            return
        self.ops.sync_apply(OWNER, list(kept.values()), prune=True, git_commit="", paths=[],
                            message=f"fenced: fleet node {node} started without --etcd")
        for key in stopped:
            self.events.emit(Event(self.clock.wall(), EventType.FENCED, key, (
                f"stopped: this daemon runs without --etcd, so it cannot know that fleet node {node} still "
                "holds it")))

    def _refuse_to_start_from_nothing(self) -> None:
        """An empty state database, while processes started for this state dir run: state.db was deleted or
        replaced. Starting from nothing would stop them all as strays; the user decides instead."""
        from ..host.execute import STATE_MARKER
        from ..host.observe import marked_session_leaders

        running = marked_session_leaders(STATE_MARKER, self.marker, {os.getpid()})
        if running:
            shown = ", ".join(map(str, sorted(running)[:10])) + (" ..." if len(running) > 10 else "")
            raise UserError(
                f"{self.store.path} holds no state, but {len(running)} process(es) started for this state dir "
                f"still run (pids {shown}): state.db was deleted or replaced, and a daemon starting from nothing "
                "would stop them all. Restore state.db (with its -wal file) from where it went, or stop them "
                f"yourself (kill -- -PID for each) and start again.")

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

    def take_over(self, paths: list[str], specs: list[Any], watch: bool,
                  variables: Mapping[str, str | None] | None = None) -> None:
        """A foreground run's start: exactly these manifests are desired. What an earlier run or daemon left
        running was adopted and is kept where it is still desired; replicas that had finished are forgotten,
        so that a run runs its Jobs again. Watched with `watch` for as long as the run lasts."""
        self.store.set_watches([])
        self.reconciler.records = {rid: r for rid, r in self.reconciler.records.items() if r.process is not None}
        self.reconciler.set_desired(graph.desired_state([]))
        self.ops.apply({"paths": paths, "user": "run", "watch": watch, "prune": True,
                        "variables": dict(variables or {})}, specs)
        self._keep_adopted_pool_sizes()  # an autoscaled pool a killed run left keeps the size it had

    def serve(self, before_serving: Callable[[], None] | None = None,
              until: Callable[[Reconciler], bool] | None = None) -> int:
        """Run until shut down (or `until` says so); returns the exit code. `before_serving` runs on the loop's
        thread once what runs has been adopted, before the socket answers."""
        self._loop_thread = threading.current_thread()
        self.restore()
        if before_serving is not None:
            before_serving()
        if self.metrics_addr:
            from .prometheus import serve_metrics

            serve_metrics(self.metrics_addr, lambda: self.handle("GET", "/objects", {"usage": "1"}, {}), self.sampler,
                          self.reconciler.executor.spawn_seconds)
        if self.http_addr:
            from ..host.tokens import TokenCheck
            from .http import HttpListener

            hooks = HookTarget(self.gitsyncs.webhook_secret_file, self._hooked)
            from .prometheus import exposition

            metrics = exposition(lambda: self.handle("GET", "/objects", {"usage": "1"}, {}), self.sampler,
                                 self.reconciler.executor.spawn_seconds)
            self.http = HttpListener(self.http_addr, self, hooks, TokenCheck(self.state_dir), self._http_refused,
                                     read_only=self.http_read_only, allowed_hosts=self.allowed_hosts,
                                     metrics=metrics, tls=self.tls)
            self.http.start()
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
        wake_on_child_exit(True)  # inherited orphans are reaped when they end
        # A run's stdout is its events (JSON lines with -o json): what it serves is said on stderr.
        out = sys.stdout if self.role == "daemon" else sys.stderr
        _say(f"orchestrator {__version__} {self.role} pid {os.getpid()} serving {self.server.path}", out)
        if self.http is not None:
            tokens = "" if self.http.tokens.any() else " (no API token yet: orchestrator token create)"
            _say(f"{'' if self.role == 'daemon' else 'orchestrator: '}http on {self.http.url}"
                 f"{' (read-only)' if self.http_read_only else ''}: {PREFIX}/... with a bearer token{tokens}, "
                 "POST /hooks/git/NAME", out)
        if self.role == "daemon" or any(spec.limits.memory_or_cpu for spec in self.reconciler.desired.specs.values()):
            _say(f"{'' if self.role == 'daemon' else 'orchestrator: '}memory and cpu limits: {self.limits_how}", out)
        if self.fleet is not None:
            self.fleet.start()
            _say(f"fleet node {self.fleet.node}: etcd {','.join(self.fleet.config.etcd.endpoints)}, lease TTL "
                 f"{self.fleet.ttl} s", out)
        elif self.store.get_meta("fleet"):
            self._fence_without_fleet(out)
        notify_service_manager("READY=1")  # a Type=notify unit is started once its socket answers
        self.events.subscribe(_tell_service_manager_when_stopping)
        try:
            self.reconciler.run(until)
            self._loop_ended.set()
            if self.role == "run" and not self.reconciler.alive:
                self._run_ended()
        finally:
            self._loop_ended.set()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            wake_on_child_exit(False)
            signal.set_wakeup_fd(previous_wakeup)
            self.close()
        return 0

    def _run_ended(self) -> None:
        """A foreground run stopped everything: nothing of it is desired any more, so a daemon started on
        this state dir later starts from nothing rather than from the run's manifests."""
        self.watches.stop_all()
        try:
            self.store.set_watches([])
            self.ops.revision = self.store.add_revision([], action="run ended", paths=[], user="run",
                                                        message="the foreground run stopped everything")
        except UserError as error:  # the store busy or lost: the records say nothing runs all the same
            print(f"orchestrator: {error}", file=sys.stderr)

    def close(self) -> None:
        if self._closed:
            return  # a run's error path closes after serve's own close
        self._closed = True
        self.gitsyncs.stop_all()  # (before the fleet agent: a fleet sync writes through its etcd client)
        if self.fleet is not None:
            # What ran here was stopped (a shutdown): its claims go to other nodes now. If something still runs
            # (the loop failed), the lease is left to expire and the fence guard keeps watching it.
            running = any(record.process is not None for record in self.reconciler.records.values())
            self.fleet.stop(leaving=not running)
        self.watches.stop_all()
        self.alerting.close()
        self.cronjobs.close()
        self.queues.close()
        if self.http is not None:
            self.http.stop()
        if self.server is not None:
            self.server.stop()
        self.prober.close()
        self.limit_watch.close()
        self.sampler.close()
        self._save_before_exit()
        self.reconciler.close()
        self.ops.sockets.close_all()
        self.log_index.close()
        if self.cgroups is not None:
            self.cgroups.close()  # only what is empty: the cgroups of replicas left running stay for adoption
        self.store.close()
        os.close(self._lock_fd)

    # -- the API ----------------------------------------------------------------------------------

    def handle(self, method: str, route: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return self.routes.handle(method, route, query, body)

    def follow_events(self, since: int, key: str | None) -> Iterator[dict[str, Any] | None]:
        if key is not None:
            name = key
            key = self.routes.key(name)

        def convert(event: Event) -> dict[str, Any] | None:
            if key is not None and event.key != key:
                return None
            return self.ops.event_json(None, event)

        # Subscribed before the backlog is read, so nothing falls between the two (_event_backlog: the saved
        # events and those not saved yet); what is in both is dropped by the iterator.
        return event_queue_iterator(self.events.subscribe, self.events.unsubscribe,
                                    lambda: self._event_backlog(since, key),
                                    convert)

    def _event_backlog(self, since: int, key: str | None) -> list[dict[str, Any]]:
        return [self.ops.event_json(i, e) for i, e in self._events_after(since, key)]

    def _events_after(self, since: int, key: str | None, limit: int | None = None,
                      types: Sequence[str] = ()) -> list[tuple[int, Event]]:
        """Every event after `since` (of `key`'s object only, of these `types` only, if given; with `limit`,
        the last ones): those saved, then those emitted and not saved yet (the end of the pass saves them),
        so that what a stream has shown, a read finds. Read under _saving, so none is in between: taken
        from _unsaved and not yet committed."""
        with self._saving:
            saved = self.store.events(since=since, key=key, limit=limit, types=types)
            with self._unsaved_lock:
                pending = [(e.id, e) for e in self._unsaved
                           if e.id is not None and e.id > since and (key is None or e.key == key)
                           and (not types or e.type.value in types)]
        found = saved + pending
        return found if limit is None else found[len(found) - max(0, limit):]

    def watch_events(self, since: int, key: str | None) -> Iterator[bytes]:
        """The event log from `since` on, then live, as server-sent events (streams.py)."""
        from .streams import event_frames

        if key is not None:
            key = self.routes.key(key)

        def convert(event: Event) -> dict[str, Any] | None:
            return None if key is not None and event.key != key else self.ops.event_json(None, event)

        return event_frames(self.events.subscribe, self.events.unsubscribe,
                            lambda: self._event_backlog(since, key),
                            convert)

    def follow_log(self, query: dict[str, str], last_event_id: str | None) -> Iterator[bytes]:
        """One replica's log, from the client's Last-Event-ID (or `since`, an offset) or its last `tail`
        lines, then as it is written, as server-sent events (streams.py)."""
        from ..host.logread import tail_start
        from .control import resume_point
        from .streams import log_frames

        log = self.routes.log_file(query)
        if last_event_id or query.get("since"):
            start = resume_point(last_event_id, query.get("since"))
        else:
            start = tail_start(log, self.routes.tail(query))
        return log_frames(log, start, lambda: not self._closed)

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

        if self._loop_ended.is_set():
            raise Conflict("the daemon is stopping: its reconciler no longer answers; nothing was changed")
        self.reconciler.post(run)
        waited = 0.0
        while not done.wait(0.25) and not self._loop_ended.is_set() and waited < timeout:
            waited += 0.25
        if not done.is_set():
            with guard:
                if not state["started"]:
                    state["cancelled"] = True
                    raise Conflict("the reconciler did not answer in time; nothing was changed")
            done.wait()  # it has begun: wait for it, so the answer says what happened
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _health(self) -> dict[str, Any]:
        cache = self.spec_cache
        return {"pid": os.getpid(), "version": __version__, "state_dir": str(self.state_dir), "limits": self.limits_how,
                "http": self.http.url if self.http is not None else None,
                "fleet": self.fleet.health() if self.fleet is not None else None,
                "streams": (self.server.streams.open if self.server is not None else 0)
                + (self.http.streams.open if self.http is not None else 0),
                "documents": {"cached": len(cache), "hits": cache.hits, "misses": cache.misses}}

    def _hooked(self, name: str) -> None:
        self.gitsyncs.trigger(name, webhook=True)

    def _http_refused(self, why: str) -> None:
        self.events.emit(Event(self.clock.wall(), EventType.ACCESS_DENIED, "", why))

    def _shutdown(self) -> dict[str, Any]:
        self.watches.stop_all()
        self.reconciler.post(lambda r: r.shut_down())
        return {"stopping": True, "pid": os.getpid()}

    # -- helpers ----------------------------------------------------------------------------------

    def _record_event(self, event: Event) -> None:
        with self._unsaved_lock:
            self._unsaved.append(event)
        if threading.current_thread() is not self._loop_thread:
            self.reconciler.post(lambda r: None)  # from another thread: have the loop save it soon

    def _guard_sockets(self) -> None:
        """After a pass: close the sockets nothing needs any more; bind again the ones that were lost."""
        sockets = self.ops.sockets
        if sockets.lost:
            sockets.with_lost(self.reconciler.desired.specs)
        sockets.release_unused(self.reconciler.desired.specs, self.reconciler.records)

    def _persist(self, records: Mapping[ReplicaId, ReplicaRecord]) -> bool:
        """End of a reconcile pass: save what changed, records and events, in two short transactions; False
        when the database was locked.

        While another program holds the database's write lock, supervision does not wait for it: what is
        unsaved stays in memory (events up to MAX_UNSAVED_EVENTS) and a pass a second later tries again; one
        event says so, and one says when run state is saved again."""
        try:
            self.store.save_records(records)
            with self._saving:  # a follower's backlog finds each event in the store or in _unsaved
                with self._unsaved_lock:
                    events, self._unsaved = self._unsaved, []
                try:
                    self.store.add_events(events)
                except StoreBusy:
                    with self._unsaved_lock:
                        self._unsaved = (events + self._unsaved)[-MAX_UNSAVED_EVENTS:]
                    raise
            if self.reconciler.rollouts_changed:
                self.ops.rollouts.save()
            self._guard_sockets()
        except StoreBusy as error:
            if not self._store_busy:
                self._store_busy = True
                self.events.emit(Event(self.clock.wall(), EventType.STORE_BUSY, "",
                                       f"{error}; run state is kept in memory and saved once it is free"))
            self._persist_again_soon()
            return False
        if self._store_busy:
            self._store_busy = False
            self.events.emit(Event(self.clock.wall(), EventType.STORE_BUSY, "", "state database free again: saved"))
            self.reconciler.post(lambda r: None)  # that event too is saved on the next pass
        lost = self.store.lost()  # one stat: cheap enough for every pass, and nothing is lost for long
        if lost and lost != self._lost_unmended:
            self._write_store_anew(lost)
        return True

    def _write_store_anew(self, lost: str) -> None:
        """state.db was deleted or replaced under the running daemon: write everything it knows into a new one
        (desired state as a revision, every record, the watches), so that a restart finds what runs."""
        path = self.store.path
        try:
            no_link(path)
            fresh = Store(path)
        except (UserError, OSError) as error:
            self._lost_unmended = lost  # said once; tried again if what became of it changes
            self.events.emit(Event(self.clock.wall(), EventType.STORE_LOST, "", f"{path} was {lost}, and a new one "
                                   f"cannot be made ({error}): a restart would not find what runs"))
            return
        old, self.store = self.store, fresh
        self.ops.store = self.watches.store = fresh
        old.close()
        try:
            specs = list(self.reconciler.desired.specs.values())
            if specs or self.ops.revision:
                self.ops.revision = fresh.add_revision(specs, action="recovered", paths=[], user="daemon",
                                                       message=f"state.db was {lost}: written anew from memory")
            fresh.save_records(self.reconciler.records)
            fresh.set_meta("boot_id", boot_id())
            fresh.set_watches([encode_watch(w) for w in self.watches.kept()])
            fresh.set_meta("owners", json.dumps(self.ops.owners, sort_keys=True))
            self.gitsyncs.written_anew(self.ops.revision)
        except UserError as error:  # StoreError, StoreBusy: said once; the records are saved again each pass
            self._lost_unmended = lost
            self.events.emit(Event(self.clock.wall(), EventType.STORE_LOST, "", f"{path} was {lost}; writing it "
                                   f"anew failed ({error}): a restart may not find what runs"))
            return
        self._lost_unmended = ""
        self.events.emit(Event(self.clock.wall(), EventType.STORE_LOST, "",
                               f"{path} was {lost}: written anew from what the daemon knows"))
        self.reconciler.post(lambda r: None)  # that event is saved on the next pass

    def _save_before_exit(self) -> None:
        """The last save waits for a lock held by another program (up to 10 s): the next daemon must find
        exactly what runs, or it kills what it does not know of and starts it again."""
        deadline = self.clock.monotonic() + 10.0
        while not self._persist(self.reconciler.records) and self.clock.monotonic() < deadline:
            threading.Event().wait(0.1)  # another program's lock, at exit: nothing else is left to do
        if self._retry is not None:
            self._retry.cancel()

    def _persist_again_soon(self) -> None:
        with self._unsaved_lock:
            if self._retry is not None and self._retry.is_alive():
                return
            self._retry = threading.Timer(PERSIST_RETRY_SECONDS, lambda: self.reconciler.post(lambda r: None))
            self._retry.daemon = True
            self._retry.start()

    def _reapply(self, paths: list[str], prune: bool, variables: Mapping[str, str]) -> None:
        """A watched path changed: load it (off the loop thread) and apply it, or report why not. Its ${NAME}s
        have the values the `apply --watch` that started the watch gave them."""
        from ..manifests.loader import load_specs

        kept: list[Any] = []
        try:
            specs = load_specs(paths, cache=self.spec_cache, variables=variables, kept=kept)
        except ManifestError as error:
            self.events.emit(Event(self.clock.wall(), EventType.INVALID, "", problems_summary(error.problems)))
            return
        except Exception as error:  # noqa: BLE001 - whatever a watched file does, the watch and the daemon go on
            self.events.emit(Event(self.clock.wall(), EventType.INVALID, "", f"watched manifests not read: {error!r}"))
            return
        from ..host.gitinfo import git_commit_of

        commit, dirty = git_commit_of(paths)  # off the loop, as the load: a watched checkout's commit is kept too
        body = {"paths": paths, "prune": prune, "watched": True, "user": "watch", "git_commit": commit,
                "git_dirty": dirty}
        try:
            self._call(lambda r: self.routes.apply_kept(body, specs, kept))
        except (ManifestError, UserError, Conflict) as error:
            self.events.emit(Event(self.clock.wall(), EventType.INVALID, "", f"not applied: {error}"))


def _tell_service_manager_when_stopping(event: Event) -> None:
    if event.type is EventType.SHUTDOWN:
        notify_service_manager("STOPPING=1")


def _print_event(event: Event) -> None:
    _say(event_line(event), sys.stdout)


def _say(line: str, out: Any) -> None:
    try:
        print(line, file=out, flush=True)
    except (BrokenPipeError, ValueError):
        pass  # nobody reads the output any more (`| head`): the store keeps the events


def _after_reboot(record: ReplicaRecord) -> ReplicaRecord:
    """A record from before a reboot: no process of it can still run, and monotonic times are meaningless.

    What ran starts afresh; what had ended keeps its outcome (a Job that succeeded is not run again), with
    its backoff forgotten."""
    if record.process is not None:
        return dataclasses.replace(record, process=None, started_at=None, stop_requested_at=None, killed=False,
                                   restart_times=(), last_exit=None, crash_streak=0, started=False, ready=False,
                                   ready_since=None, unhealthy="", deadline_from=None, frozen_since=None)
    last_exit = dataclasses.replace(record.last_exit, at=0.0) if record.last_exit else None
    # A Job's deadline counted on the old boot's clock: it starts afresh with its next run.
    return dataclasses.replace(record, restart_times=(), crash_streak=0, last_exit=last_exit, deadline_from=None,
                               frozen_since=None)


def main(state_dir: Path, metrics_interval: float = 20.0, metrics_addr: str | None = None,
         limits: str = "auto", pass_env: Sequence[str] = (), http_addr: str | None = None, read_only: bool = False,
         allowed_hosts: Sequence[str] = (), tls: tuple[str, str] | None = None,
         fleet: FleetConfig | None = None) -> int:
    try:
        daemon = Daemon(state_dir, metrics_interval, metrics_addr, limits, pass_env=pass_env, http_addr=http_addr,
                        read_only=read_only, allowed_hosts=allowed_hosts, tls=tls, fleet=fleet)
    except UserError as error:
        print(f"orchestrator: {error}", file=sys.stderr)
        return 1
    try:
        return daemon.serve()
    except UserError as error:  # e.g. the metrics address is taken: what runs is left as it is
        print(f"orchestrator: {error}", file=sys.stderr)
        daemon.close()
        return 1


__all__ = ["Daemon", "main"]
