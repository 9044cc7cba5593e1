"""Health probes (exec, http, tcp, log, notify) on their own schedule. They post results; they never act.

One scheduler thread keeps a heap of due checks and hands each to a small pool of worker threads, so a
slow check (up to its timeoutSeconds, enforced) delays neither the reconciler nor another probe. Thresholds
are counted here (consecutive successes and failures); only transitions are posted to the reconciler:
started, ready / not ready, unhealthy. The reconciler, the single writer of run state, decides what they
mean. A replica's probes start afresh with each new process, and stop when it goes away.

Kubernetes' semantics: startup runs first and gates the others; a failing startup probe makes the
replica unhealthy like a failing liveness probe.

A notify probe is not checked on a schedule: it passes when the replica's own sd_notify socket (made by the
executor for each start, notify.py) receives READY=1 from the replica's processes, and stays passed for the life
of that process; it never fails. The scheduler thread waits on a selector holding a wake-up pipe and a duplicate
of each such socket, until the next due check: an idle replica that says nothing wakes nothing.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import re
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import SpawnError
from ..core.expand import expand, expand_all
from ..core.model import Probe, ProbeAction, ProbeKind, ProcessIdentity, ProcessSpec, ReplicaId
from ..core.patterns import compile_pattern
from .environment import base_environment, pass_patterns
from .execute import STATE_MARKER, replica_environment, user_ids
from .logs import log_path
from .notify import NotifySockets, receive, uses_notify
from .observe import is_alive, listening_inodes, socket_holder, tree_holds
from .subreaper import FORKS, marks

LOG_WINDOW = 1 << 20  # bytes of new output a log probe reads at most per check
LOG_LINE = 64 << 10  # characters of one line a log probe matches against
LOCAL_HOSTS = frozenset({"localhost", "::1", "0.0.0.0", "::", "ip6-localhost"})
HOLDER_LOOKUP_SECONDS = 5.0  # how often a probe failing on a port held by another program looks up who holds it


@dataclass(frozen=True)
class Target:
    """A running replica to probe: its process, the spec whose probes apply, and what is known already."""

    process: ProcessIdentity
    spec: ProcessSpec
    started_at: float  # monotonic
    started: bool  # its startup probe passed already (or it has none): probe readiness and liveness
    ready: bool  # its readiness probe passed already (an adopted process keeps what it had)
    log_offset: int  # where its own output begins in its log file


@dataclass(frozen=True)
class Transition:
    """A probe crossed a threshold for this process."""

    replica: ReplicaId
    process: ProcessIdentity
    kind: ProbeKind
    passing: bool
    message: str


@dataclass
class _State:
    target: Target
    kind: ProbeKind
    probe: Probe
    passing: bool = False
    successes: int = 0
    failures: int = 0
    busy: bool = False
    log_offset: int = 0  # log probes: where the process's unread output starts
    log_matched: bool = False
    said_why: bool = False  # a readiness probe that has not passed yet: why was told once
    generation: int = 0  # bumped when the target changes: results of older checks are dropped
    holder: str = ""  # tcp and http probes: who holds the port, when it is not the replica's tree
    holder_is_replica: bool = False  # that holder carries the replica's marks (it daemonized out of the tree)
    holder_looked_at: float = float("-inf")
    due: float = 0.0


@dataclass
class _Notified:
    """What a start's notify socket said, read through the prober's own duplicate of it."""

    sock: socket.socket
    main: int  # pid of the start's main process: who, with its session and descendants, may say READY=1
    ready_from: int = 0  # the pid that said READY=1; 0 while none did
    status: str = ""  # its last STATUS= text
    foreign: int = 0  # pid of a process outside the replica whose READY=1 was ignored (the last one)
    registered: bool = False  # in the scheduler's selector (done on its thread)
    dropped: bool = False  # no longer listened to: closed soon


@dataclass(order=True)
class _Due:
    at: float
    key: tuple[ReplicaId, ProbeKind] = field(compare=False)
    generation: int = field(compare=False)


class Prober:
    def __init__(self, on_transition: Callable[[Transition], None], log_dir: Path, workers: int = 8,
                 marker: str = "", base_env: Mapping[str, str] | None = None,
                 notify: NotifySockets | None = None) -> None:
        """`marker`: the state dir's mark (execute.STATE_MARKER) put in every exec check's environment, so
        that a check left hanging by a daemon that died is found and killed by the next one. `base_env`:
        what an exec check starts from, as the replica it checks (environment.py). `notify`: the executor's
        notify sockets, where notify probes hear READY=1 (without them, a notify probe never passes)."""
        self.base_env = dict(base_env if base_env is not None
                             else base_environment(os.environ, pass_patterns(os.environ)))
        self.on_transition = on_transition
        self.log_dir = log_dir
        self.marker = marker
        self._running: set[int] = set()  # pids of exec checks under way: close() kills them
        self._running_lock = threading.Lock()
        self._states: dict[tuple[ReplicaId, ProbeKind], _State] = {}
        self._heap: list[_Due] = []
        self._lock = threading.Lock()
        self.notify = notify
        self._notified: dict[ProcessIdentity, _Notified] = {}  # starts with a notify probe, being listened to
        self._dropped: list[_Notified] = []  # no longer: closed on the scheduler thread, after its selector
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self._closed = False
        self._thread = threading.Thread(target=self._schedule, name="prober", daemon=True)
        self._thread.start()

    def sync(self, targets: Mapping[ReplicaId, Target]) -> None:
        """Probe exactly these replicas from now on (called by the reconciler after each pass).

        A replica whose process or probe changed starts afresh; startup gates readiness and liveness.
        """
        with self._lock:
            wanted: dict[tuple[ReplicaId, ProbeKind], tuple[Target, Probe]] = {}
            for rid, target in targets.items():
                probes = target.spec.probes
                gated = probes.startup is not None and not target.started
                kinds = [ProbeKind.STARTUP] if gated else [ProbeKind.READINESS, ProbeKind.LIVENESS]
                for kind in kinds:
                    probe = probes.of(kind)
                    if probe is not None:
                        wanted[(rid, kind)] = (target, probe)
            changed = self._sync_notified(targets)
            for key in list(self._states):
                if key not in wanted:
                    del self._states[key]
            now = time.monotonic()
            for key, (target, probe) in wanted.items():
                state = self._states.get(key)
                if state is not None and state.target.process == target.process and state.probe == probe:
                    state.target = target
                    continue
                changed = True
                generation = state.generation + 1 if state else 0
                # Liveness is presumed healthy until it fails; readiness starts from what is known.
                passing = key[1] is ProbeKind.LIVENESS or (key[1] is ProbeKind.READINESS and target.ready)
                state = _State(target, key[1], probe, passing=passing, log_offset=target.log_offset,
                               generation=generation)
                state.due = max(now, target.started_at + probe.initial_delay_seconds)
                self._states[key] = state
                heapq.heappush(self._heap, _Due(state.due, key, generation))
            if changed and not self._closed:  # only a new check can be due sooner than the scheduler's wake-up
                self._wake()

    def _sync_notified(self, targets: Mapping[ReplicaId, Target]) -> bool:
        """Listen to the notify socket of each target start that has one, and only to those (under the lock)."""
        if self.notify is None:
            return False
        listened = {t.process for t in targets.values() if uses_notify(t.spec)}
        changed = False
        for process in [p for p in self._notified if p not in listened]:
            self._dropped.append(self._notified.pop(process))
            self._dropped[-1].dropped = True
            changed = True
        for process in listened - self._notified.keys():
            sock = self.notify.receiver(process.pid)
            if sock is not None:  # else adopted: its socket went with the daemon that started it
                self._notified[process] = _Notified(sock, process.pid)
                changed = True
        return changed

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # full: the scheduler wakes anyway; closed: it is gone

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._states.clear()  # a check still running finds no state and posts nothing
            self._wake()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():  # it closed its selector and the sockets it read
            os.close(self._wake_r)
            os.close(self._wake_w)
        with self._running_lock:
            for pid in self._running:  # the worker waiting on it returns at once; the interpreter can exit
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- scheduling (prober thread) ---------------------------------------------------------------

    def _schedule(self) -> None:
        try:
            while True:
                heard: list[Transition] = []
                with self._lock:
                    if self._closed:
                        return
                    now = time.monotonic()
                    while self._heap and self._heap[0].at <= now:
                        due = heapq.heappop(self._heap)
                        state = self._states.get(due.key)
                        if state is None or state.generation != due.generation:
                            continue  # gone, or restarted: this entry is stale
                        if state.probe.action is ProbeAction.NOTIFY:  # due once, then when its socket speaks
                            transition = self._heard(due.key, state)
                            if transition is not None:
                                heard.append(transition)
                            continue
                        self._next(due.key, state, now)
                        if not state.busy:
                            state.busy = True
                            self._pool.submit(self._run, due.key, state, state.generation)
                    self._listen()
                    timeout = max(0.0, self._heap[0].at - now) if self._heap else None
                for transition in heard:
                    self.on_transition(transition)
                for key, _events in self._selector.select(timeout):
                    if key.data is None:
                        while _drained(self._wake_r):
                            pass
                    else:
                        self._receive(key.data)
        finally:
            with self._lock:
                for notified in self._notified.values():
                    notified.dropped = True
                    self._dropped.append(notified)
                self._notified.clear()
                self._listen()
            self._selector.close()

    def _listen(self) -> None:
        """Bring the selector in line with the sockets to listen to (scheduler thread, under the lock)."""
        for notified in self._dropped:
            if notified.registered:
                self._selector.unregister(notified.sock)
            notified.sock.close()
        self._dropped.clear()
        for notified in self._notified.values():
            if not notified.registered:
                self._selector.register(notified.sock, selectors.EVENT_READ, notified)
                notified.registered = True

    def _receive(self, notified: _Notified) -> None:
        """Read what a start's socket says (bounded) and have its notify probes look again at once."""
        heard = receive(notified.sock, notified.main)  # its socket is closed on this thread only: safe unlocked
        with self._lock:
            if notified.dropped:
                return
            if heard.status is not None:
                notified.status = heard.status
            if heard.foreign:
                notified.foreign = heard.foreign
            if heard.ready_from and not notified.ready_from:
                notified.ready_from = heard.ready_from
            elif not heard.foreign:
                return  # nothing a probe would see differently
            now = time.monotonic()
            for key, state in self._states.items():
                if state.probe.action is ProbeAction.NOTIFY and self._notified.get(state.target.process) is notified:
                    heapq.heappush(self._heap, _Due(now, key, state.generation))

    def _heard(self, key: tuple[ReplicaId, ProbeKind], state: _State) -> Transition | None:
        """A notify probe looks at what its start's socket said (under the lock)."""
        notified = self._notified.get(state.target.process)
        if notified is not None and notified.ready_from:
            if state.passing:
                return None
            state.passing = True
            status = f" (status: {notified.status})" if notified.status else ""
            return Transition(key[0], state.target.process, state.kind, True,
                              f"heard READY=1 from pid {notified.ready_from}{status}")
        if state.passing or state.said_why or state.kind is not ProbeKind.READINESS:
            return None  # (a startup probe that does not pass would restart the replica: it only waits)
        if notified is None:
            why = ("it has no notify socket: it was started by an earlier daemon, whose socket went with it"
                   if self.notify is not None else "no notify sockets are made here")
        elif notified.foreign:
            why = f"READY=1 came from pid {notified.foreign}, which is not one of this replica's processes: ignored"
        else:
            return None  # nothing said yet: waiting is all there is to do
        state.said_why = True
        return Transition(key[0], state.target.process, state.kind, False, f"has not passed yet: {why}")

    def _next(self, key: tuple[ReplicaId, ProbeKind], state: _State, now: float) -> None:
        # From the last due time, so the period holds without drift; from now, if the prober fell behind.
        # At least a millisecond ahead, whatever the period: the schedule must always move forward.
        state.due = max(state.due + state.probe.period_seconds, now + 1e-3)
        heapq.heappush(self._heap, _Due(state.due, key, state.generation))

    # -- checks (worker threads) ------------------------------------------------------------------

    def _run(self, key: tuple[ReplicaId, ProbeKind], state: _State, generation: int) -> None:
        try:
            ok, message = self._check(key[0], state)
        except Exception as error:  # noqa: BLE001 - a broken check is a failed check, never a dead prober
            ok, message = False, f"probe error: {error!r}"
        transition = None
        with self._lock:
            state.busy = False
            if self._states.get(key) is not state or state.generation != generation:
                return
            transition = self._count(key, state, ok, message)
        if transition is not None:
            self.on_transition(transition)

    def _count(self, key: tuple[ReplicaId, ProbeKind], state: _State, ok: bool, message: str) -> Transition | None:
        if ok:
            state.successes += 1
            state.failures = 0
        else:
            state.failures += 1
            state.successes = 0
        probe = state.probe
        if not state.passing and ok and state.successes >= probe.success_threshold:
            state.passing = True
            return Transition(key[0], state.target.process, state.kind, True, message or "succeeded")
        # A startup probe that cannot pass makes the replica unhealthy; a passing one that fails is news.
        if not ok and state.failures == probe.failure_threshold and (state.passing or state.kind is ProbeKind.STARTUP):
            state.passing = False
            return Transition(key[0], state.target.process, state.kind, False,
                              f"failed {state.failures} times: {message}")
        # A readiness probe that has not passed yet changes nothing by failing, but says why, once: else
        # "not ready" would be all anyone could learn (a port another program holds, a wrong path).
        if (not ok and state.kind is ProbeKind.READINESS and not state.passing and not state.said_why
                and state.failures == probe.failure_threshold):
            state.said_why = True
            return Transition(key[0], state.target.process, state.kind, False,
                              f"has not passed yet ({state.failures} failures): {message}")
        return None

    def _check(self, rid: ReplicaId, state: _State) -> tuple[bool, str]:
        probe = state.probe
        if probe.action is ProbeAction.EXEC:
            return _exec(probe, state.target.spec, rid.index, self.base_env, self.marker, self._track)
        if probe.action in (ProbeAction.HTTP, ProbeAction.TCP):
            port = self._port_of(probe, state.target.spec, rid.index)
            if isinstance(port, str):
                return False, port
            owner, why = self._holds_port(state, port)
            if not owner:
                return False, why
            return _http(probe, port) if probe.action is ProbeAction.HTTP else _tcp(probe, port)
        return self._log(rid, state)

    def _port_of(self, probe: Probe, spec: ProcessSpec, index: int) -> int | str:
        """The port this replica's check goes to: the probe's, or its $((...)) / $(NAME) worked out over the
        replica's environment; a str says why there is none."""
        if isinstance(probe.port, int):
            return probe.port
        text = expand(probe.port, replica_environment(self.base_env, spec, index))
        if re.fullmatch(r"[0-9]{1,5}", text) and 1 <= int(text) <= 65535:
            return int(text)
        return f"port {probe.port} gives {text!r} for replica {index}: not a port from 1 to 65535"

    def _holds_port(self, state: _State, port: int) -> tuple[bool, str]:
        """May a tcp or http check of this replica pass? Only while its main process runs and, for a port on
        this host, only if the listening socket is the replica's own (socket inodes in /proc): a replica that
        never listens, or died on EADDRINUSE, is not ready because another program holds its port."""
        process, probe = state.target.process, state.probe
        if not is_alive(process):
            return False, "its main process is not running"
        if probe.host not in LOCAL_HOSTS and not probe.host.startswith("127."):
            return True, ""  # another host's port: whose it is cannot be seen from here
        inodes = listening_inodes(port)
        if not inodes or tree_holds(process.pid, inodes) is not False:
            return True, ""  # nothing listens (the check says so), the replica does, or it cannot be seen
        now = time.monotonic()
        if now - state.holder_looked_at > HOLDER_LOOKUP_SECONDS:  # a scan of every process: not every check
            state.holder_looked_at = now
            holder = socket_holder(inodes)
            # A server that daemonized out of the replica's tree is still the replica's: its marks say so.
            state.holder_is_replica = holder is not None and bool(self.marker) and (
                marks(holder[0], self.marker)[1] == marks(process.pid, self.marker)[1] != "")
            state.holder = f"pid {holder[0]} ({holder[1]})" if holder else "another process"
        if state.holder_is_replica:
            return True, ""
        return False, f"port {port} is held by {state.holder}, not by this replica's processes"

    def _log(self, rid: ReplicaId, state: _State) -> tuple[bool, str]:
        """Success once a line printed since this process started matches; stays successful after."""
        if state.log_matched:
            return True, "matched"
        path = log_path(self.log_dir, rid)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False, "no output yet"
        if size < state.log_offset:
            state.log_offset = 0  # rotated: what is in the file now is all new
        # Read bounded: a process that printed a gigabyte since the last check is judged by its last
        # LOG_WINDOW bytes (what it prints now), not read whole into the daemon's memory.
        start = max(state.log_offset, size - LOG_WINDOW)
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(max(0, size - start))
        complete = data.rfind(b"\n") + 1
        state.log_offset = start + complete
        pattern = compile_pattern(state.probe.pattern)  # checked when the manifest was read
        for line in data[:complete].decode(errors="replace").splitlines():
            if pattern.search(line[:LOG_LINE]):
                state.log_matched = True
                return True, f"printed {line.strip()[:80]!r}"
        return False, f"no line matching {state.probe.pattern!r} yet"


    def _track(self, pid: int, running: bool) -> bool:
        """Note an exec check starting (False once closed: it must not run) or ending."""
        with self._running_lock:
            if not running:
                self._running.discard(pid)
                return True
            self._running.add(pid)
            return not self._closed


def _drained(fd: int) -> bool:
    """Read some of the wake-up pipe; False once it is empty."""
    try:
        return bool(os.read(fd, 512))
    except BlockingIOError:
        return False


def _exec(probe: Probe, spec: ProcessSpec, index: int, base_env: Mapping[str, str], marker: str = "",
          track: Callable[[int, bool], bool] = lambda pid, running: True) -> tuple[bool, str]:
    """As replica `index` runs: its directory, environment and user (a check never runs with more rights)."""
    env = replica_environment(base_env, spec, index)
    if marker:
        env[STATE_MARKER] = marker
    try:
        uid, gid, groups = user_ids(spec.user, env)
        with FORKS.forking() as forks:  # not an orphan to reap: this thread waits for it
            child = subprocess.Popen(expand_all(probe.command, env), cwd=spec.working_dir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                     user=uid, group=gid, extra_groups=groups)
            forks.add(child.pid)
    except SpawnError as error:
        return False, f"cannot run {probe.command[0]}: {error}"
    except OSError as error:
        return False, f"cannot run {probe.command[0]}: {error.strerror or error}"
    try:
        if not track(child.pid, True):  # the prober closed as this check started
            os.killpg(child.pid, signal.SIGKILL)
        code = child.wait(timeout=probe.timeout_seconds)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(child.pid, signal.SIGKILL)  # its group: a hung check must not leave children
        except ProcessLookupError:
            pass
        child.wait()
        return False, f"timed out after {probe.timeout_seconds:g} s"
    finally:
        track(child.pid, False)
        FORKS.done(child.pid)
    return code == 0, f"exit code {code}"


def _http(probe: Probe, port: int) -> tuple[bool, str]:
    import http.client  # here: with the email package it pulls in, 30 ms of every start-up otherwise

    connection = http.client.HTTPConnection(probe.host, port, timeout=probe.timeout_seconds)
    try:
        connection.request("GET", probe.path, headers=dict(probe.headers))
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        return False, f"GET {probe.path}: {error}"
    finally:
        connection.close()
    return 200 <= status < 400, f"GET {probe.path}: HTTP {status}"


def _tcp(probe: Probe, port: int) -> tuple[bool, str]:
    try:
        with socket.create_connection((probe.host, port), timeout=probe.timeout_seconds):
            return True, f"connected to {probe.host}:{port}"
    except OSError as error:
        return False, f"connect to {probe.host}:{port}: {error.strerror or error}"
