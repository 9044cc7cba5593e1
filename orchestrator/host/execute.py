"""Spawning, signalling and reaping: the only place that forks.

Each replica runs in its own session and process group (so a stop reaches the whole tree and a Ctrl-C
in the terminal reaches only the orchestrator), with no shell unless the spec asks for one, stdin from
/dev/null and stdout+stderr appended to its log file. Every child gets a pidfd, which turns "this process
ended" into a readable file descriptor for the reconciler's single selector; the child is then reaped
here, after what is left of its process group has been SIGKILLed (while the zombie still pins the pid,
so the group id cannot have been reused).

Processes left running by an earlier daemon are adopted: they are not our children, so their pidfd
still says when they end, but their exit status cannot be known. The executor owns every pidfd.
"""

from __future__ import annotations

import os
import pwd
import resource
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import SpawnError
from ..core.expand import expand, expand_all
from ..core.model import Hook, ProcessIdentity, ProcessSpec, ReplicaId
from . import subreaper as _subreaper
from .cgroups import CgroupHost, ReplicaCgroup, replica_cgroup_name
from .environment import base_environment, pass_patterns
from .limits import apply_at_start, renice_tree
from .listeners import inherited, listening, socket_environment
from .logs import log_path, open_log
from .metrics import Histogram
from .notify import NOTIFY_SOCKET, NotifySocket, NotifySockets, uses_notify
from .observe import children_of, identity, is_alive, stat_fields
from .subreaper import FORKS, STATE_MARKER

SPAWN_BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0)  # seconds: process_spawn_duration_seconds


@dataclass(frozen=True)
class Child:
    replica: ReplicaId
    process: ProcessIdentity
    pidfd: int
    log_offset: int  # the size of its log file when it started: where its own output begins
    warnings: tuple[str, ...] = ()  # start-time settings (limits, nice, affinity) that could not be applied
    cgroup: str = ""  # the directory of its cgroup where the kernel enforces its memory and cpu limits


@dataclass(frozen=True)
class ExitStatus:
    code: int | None
    signal: int | None
    oom_killed: bool = False  # the kernel killed a process of its cgroup for want of memory


class Executor:
    """Starts replicas as children of this process and collects their exit status."""

    def __init__(self, log_dir: Path, marker: str = "", cgroups: CgroupHost | None = None,
                 subreaper: bool = False, base_env: Mapping[str, str] | None = None) -> None:
        """`marker` goes into every child's environment as ORCH_STATE_DIR: it lets a restarted daemon find
        replicas that were started but not yet recorded when its predecessor died. With `cgroups`, a
        replica with a memory or cpu limit runs in a cgroup of its own that enforces them. With `subreaper`
        (and a marker), this process inherits the descendants that leave a replica's process group, and ends
        them with it (subreaper.py). `base_env`: what every child starts from (environment.py; default: the
        fixed base with what $ORCHESTRATOR_PASS_ENV names)."""
        self.log_dir = log_dir
        self.marker = marker
        self.subreaper = bool(marker) and subreaper and _subreaper.become_subreaper()
        # Children it had before: not inherited from a replica (a container entrypoint's, say), never touched.
        self._before = set(_subreaper.children()) if self.subreaper else set()
        self._born = identity(os.getpid()).start_ticks  # an orphan older than this process is none of its own
        self._kept: dict[int, int] = {}  # unmarked orphans a running replica may own: pid -> start ticks
        self._ended: list[int] = []  # start ticks of the replicas (and hooks) reaped since the last sweep
        # pid of a running replica or hook -> its ORCH_INSTANCE and start time (ticks): what its orphans carry
        self._instance_of: dict[int, tuple[str, int]] = {}
        self._starts = 0
        self.spawn_seconds = Histogram(SPAWN_BUCKETS)
        self._epoch = f"{os.getpid()}.{time.time_ns() // 1_000_000}"  # no two daemons' starts look alike
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # logs may hold secrets a process printed
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._adopted: set[int] = set()
        self._pidfds: dict[int, int] = {}
        self._listeners: dict[str, tuple[int, ...]] = {}  # key -> the daemon's sockets its replicas inherit
        self.cgroups = cgroups
        self._cgroups: dict[int, tuple[ReplicaCgroup, int]] = {}  # pid -> its cgroup, oom kills before it
        self._unremoved: list[ReplicaCgroup] = []  # ended, but a zombie still held them: removed later
        self._outlived: list[tuple[str, int]] = []  # (mark, pid) killed with an ended replica's cgroup: told once
        self._base_env = dict(base_env if base_env is not None
                              else base_environment(os.environ, pass_patterns(os.environ)))
        # The sd_notify socket of each start of a replica with a notify probe: <state dir>/run/notify/ (notify.py).
        self.notify_sockets = NotifySockets(log_dir.parent / "run" / "notify")
        raise_open_files_limit()

    def spawn(self, replica: ReplicaId, spec: ProcessSpec) -> Child:
        """Start one replica; raises SpawnError with the reason when it cannot be started."""
        argv = list(spec.command)
        if spec.shell:  # the shell expands $(...) and $((...)) itself
            argv = ["/bin/sh", "-c", argv[0] if len(argv) == 1 else shlex.join(argv)]
        return self._spawn(replica, spec, argv, contained=True, expanded=not spec.shell)

    def spawn_hook(self, replica: ReplicaId, spec: ProcessSpec, hook: Hook) -> Child:
        """Start a lifecycle hook of a replica: as the replica would run (directory, environment, user,
        its own process group), with its output in the replica's log. Reaped like a replica, but not in
        the replica's cgroup: ending a hook must not end the process it runs beside (its timeout bounds it)."""
        return self._spawn(replica, spec, list(hook.command), contained=False, expanded=True)

    def set_listeners(self, key: str, fds: tuple[int, ...] | None) -> None:
        """The bound sockets (listeners.py) every replica of `key` inherits, in the order its spec declares
        them; None forgets them. The descriptors stay the caller's, who closes them after the last replica."""
        if fds is None:
            self._listeners.pop(key, None)
        else:
            self._listeners[key] = tuple(fds)

    def _sockets_of(self, spec: ProcessSpec, env: dict[str, str]) -> tuple[int, ...]:
        """The descriptors a replica of `spec` inherits at 3.. (none without sockets), with their LISTEN_
        variables added to its environment."""
        if not spec.sockets:
            return ()
        fds = self._listeners.get(spec.key)
        names = ", ".join(sock.name for sock in spec.sockets)
        if fds is None:
            raise SpawnError(f"its sockets are not bound: {names}")
        if len(fds) != len(spec.sockets):
            raise SpawnError(f"its sockets are not bound as declared: {len(fds)} bound for {names}")
        closed = [f"{sock.name} (fd {fd})" for sock, fd in zip(spec.sockets, fds) if not listening(fd)]
        if closed:  # closed since, its number maybe reused: the replica must not get what has it now
            raise SpawnError(f"its sockets are not bound: {', '.join(closed)} no longer listening")
        try:
            env.update(socket_environment(spec.sockets))
        except ValueError as error:
            raise SpawnError(str(error)) from error
        env.pop("LISTEN_PID", None)  # the shim sets it: the replica's own pid
        return fds

    def _spawn(self, replica: ReplicaId, spec: ProcessSpec, argv: list[str], contained: bool,
               expanded: bool) -> Child:
        began = time.perf_counter()
        child = self._spawn_now(replica, spec, argv, contained, expanded)
        self.spawn_seconds.observe(time.perf_counter() - began)  # what one start costs the loop, fork to watch
        return child

    def _spawn_now(self, replica: ReplicaId, spec: ProcessSpec, argv: list[str], contained: bool,
                   expanded: bool) -> Child:
        env = replica_environment(self._base_env, spec, replica.index)
        passed = self._sockets_of(spec, env) if contained else ()  # hooks inherit no socket
        if expanded:
            argv = expand_all(argv, env)  # the program's words: never the shim's script, whose $$ is the shell's
        if passed:
            argv = _through_shim(argv, passed, env, spec.working_dir)
        self._starts += 1
        if self.marker:
            env[STATE_MARKER] = self.marker
            env["ORCH_INSTANCE"] = instance = f"{self._epoch}.{self._starts}"  # this start of it, for its orphans
        uid, gid, groups = user_ids(spec.user, env)
        try:
            log_fd = open_log(self.log_dir, replica)
        except OSError as error:
            raise SpawnError(f"cannot open its log file: {error.strerror or error}") from error
        log_offset = os.fstat(log_fd).st_size
        warnings: list[str] = []
        group = self._cgroup_for(replica, spec, warnings) if contained else None
        notify: NotifySocket | None = None
        popen = None
        try:
            if contained and uses_notify(spec):  # the main process only, as systemd does; raises SpawnError
                mine = uid in (None, os.geteuid())  # a child of another user cannot enter the state dir
                notify = self.notify_sockets.open(f"{self._epoch}.{self._starts}", by_path=mine)
                env[NOTIFY_SOCKET] = notify.address
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                cwd=spec.working_dir,
                env=env,
                start_new_session=True,
                user=uid,
                group=gid,
                extra_groups=groups,
                pass_fds=passed,  # close_fds stays: nothing else is inherited
            )
        except FileNotFoundError as error:
            missing = spec.working_dir if error.filename == spec.working_dir else argv[0]
            what = "working directory" if missing == spec.working_dir else "command"
            raise SpawnError(f"{what} not found: {missing}") from error
        except PermissionError as error:
            raise SpawnError(f"permission denied: {error.filename or argv[0]}") from error
        except OSError as error:
            raise SpawnError(f"{argv[0]}: {error.strerror or error}") from error
        except (ValueError, TypeError) as error:  # e.g. a NUL byte in an argument or a variable
            raise SpawnError(f"cannot start {argv[0]!r}: {error}") from error
        finally:
            os.close(log_fd)
            if popen is None and group is not None:
                group.remove()
            if popen is None and notify is not None:
                self.notify_sockets.discard(notify)
        pid = popen.pid
        self._children[pid] = popen
        if notify is not None:
            self.notify_sockets.keep(pid, notify)
        try:
            self._pidfds[pid] = os.pidfd_open(pid)
            process = identity(pid)
            if self.marker:
                self._instance_of[pid] = (instance, process.start_ticks)
            if group is not None:
                group = self._attach(pid, group, spec.limits.memory_or_cpu, warnings)
            warnings += apply_at_start(pid, spec)
        except BaseException as error:
            # Started, but not as asked or not watchable (out of descriptors, a limit the kernel refused in a
            # way nothing foresaw): it must not run unsupervised, and a retry must not leave a second copy.
            self._abandon(pid, popen, group)
            if isinstance(error, OSError):
                raise SpawnError(f"started but could not be watched: {error.strerror or error}") from error
            if isinstance(error, Exception):
                raise SpawnError(f"started but could not be set up: {error!r}") from error
            raise
        return Child(replica, process, self._pidfds[pid], log_offset, tuple(warnings),
                     group.path if group is not None else "")

    def _abandon(self, pid: int, popen: subprocess.Popen[bytes], group: ReplicaCgroup | None) -> None:
        """End a replica that was forked but cannot be kept: its whole group killed and reaped, its cgroup and
        descriptor released, nothing left of it."""
        self._kill_rest_of_group(pid)
        popen.kill()
        popen.wait()
        if group is not None:
            group.kill()
            group.remove()
        self._cgroups.pop(pid, None)
        del self._children[pid]
        self.notify_sockets.end(pid)
        self._instance_of.pop(pid, None)
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def _cgroup_for(self, replica: ReplicaId, spec: ProcessSpec, warnings: list[str]) -> ReplicaCgroup | None:
        """The cgroup a replica goes into (made before the spawn, so that only the move is left after it),
        one per start: what is in it ends with the replica, whatever left its process group. None without
        a cgroup host, or when the kernel refuses (a replica with memory or cpu limits then has the
        watchdog enforce them, and a warning says so; the subreaper still ends the tree of any)."""
        if self.cgroups is None:
            return None
        name = f"{replica_cgroup_name(replica.key, replica.index)}.{self._starts}"
        try:
            return self.cgroups.create(name, spec.limits)
        except OSError as error:
            if spec.limits.memory_or_cpu:
                warnings.append(_watchdog_instead(self.cgroups.label, error))
            return None

    def _attach(self, pid: int, group: ReplicaCgroup, limited: bool, warnings: list[str]) -> ReplicaCgroup | None:
        try:
            baseline = group.oom_kills()  # a reused cgroup keeps its count: only kills after this one count
            group.attach(pid)
            _attach_forked_before(pid, group)
        except OSError as error:
            group.remove()
            if limited:
                warnings.append(_watchdog_instead(f"cgroup v{group.version}", error, f"cannot move pid {pid} in: "))
            return None
        self._cgroups[pid] = (group, baseline)
        return group

    def cgroup_of(self, pid: int) -> tuple[ReplicaCgroup, int] | None:
        """The cgroup a replica runs in, with its OOM-kill count when the replica started (or was adopted)."""
        return self._cgroups.get(pid)

    def _end_cgroup(self, pid: int) -> bool:
        """Kill what is left in a replica's cgroup and remove it; did the kernel OOM-kill in it meanwhile?"""
        entry = self._cgroups.pop(pid, None)
        if entry is None:
            return False
        group, baseline = entry
        oom_killed = group.oom_kills() > baseline
        self._outlived += self._outside_its_group(pid, group)
        group.kill()
        # An unreaped zombie (a grandchild whose reaper has not got to it yet) still holds it.
        self._unremoved.append(group)
        self.remove_ended_cgroups()
        return oom_killed

    def _outside_its_group(self, pid: int, group: ReplicaCgroup) -> list[tuple[str, int]]:
        """What still runs in an ended replica's cgroup out of its process group (a daemonised descendant),
        about to be killed with it: told as the orphans the subreaper ends are (end_orphans)."""
        found = []
        for other in group.pids():
            try:
                fields = stat_fields(other)  # [0]: its state, [2]: its process group
            except OSError:
                continue  # ended meanwhile
            if other == pid or fields[0] == b"Z" or int(fields[2]) == pid:
                continue
            found.append((_subreaper.marks(other, self.marker)[0] if self.marker else "", other))
        return found

    def remove_ended_cgroups(self) -> None:
        """Remove the cgroups of ended replicas that a zombie still held (its reaper has got to it since)."""
        if self._unremoved:
            self._unremoved = [group for group in self._unremoved if not group.remove()]

    def renice(self, process: ProcessIdentity, nice: int) -> None:
        """Set the nice value of a running replica's whole tree."""
        if process.pid in self._pidfds:
            renice_tree(process.pid, nice)

    def adopt(self, replica: ReplicaId, process: ProcessIdentity) -> Child | None:
        """Watch a process an earlier orchestrator started; None when it no longer exists (or is another
        process that reused its pid)."""
        try:
            pidfd = os.pidfd_open(process.pid)
        except (ProcessLookupError, OSError):
            return None
        # The pidfd pins this very process: check its identity only after opening it.
        if not is_alive(process):
            os.close(pidfd)
            return None
        self._adopted.add(process.pid)
        self._pidfds[process.pid] = pidfd
        if self.marker:
            self._instance_of[process.pid] = (_subreaper.marks(process.pid, self.marker)[1], process.start_ticks)
        try:
            log_offset = log_path(self.log_dir, replica).stat().st_size  # earlier output was seen before
        except FileNotFoundError:
            log_offset = 0
        group = self.cgroups.of_process(process.pid) if self.cgroups is not None else None
        if group is not None:
            self._cgroups[process.pid] = (group, group.oom_kills())
        return Child(replica, process, pidfd, log_offset, (), group.path if group is not None else "")

    def signal_group(self, process: ProcessIdentity, signame: str) -> None:
        """Send a signal to the whole process group of a replica whose leader has not ended yet."""
        pidfd = self._pidfds.get(process.pid)
        if pidfd is None:
            return  # already reaped: its group was killed then
        if process.pid in self._adopted:
            try:
                signal.pidfd_send_signal(pidfd, 0)  # the leader still runs, so its pid (= group id) is ours
            except ProcessLookupError:
                return
        # Specs are validated, so the name is known; a stop must happen even if it were not.
        number = signal.Signals.__members__.get(signame, signal.SIGTERM)
        try:
            os.killpg(process.pid, number)
        except (ProcessLookupError, PermissionError):
            pass  # gone, or (a setuid program in it) not ours to signal: the SIGKILL after the timeout follows

    def kill_group(self, process: ProcessIdentity) -> None:
        self.signal_group(process, "SIGKILL")

    def reap(self, pid: int) -> ExitStatus | None:
        """Collect a child's exit status once its pidfd is readable; None if it has not exited yet.

        Whatever is left of its process group is SIGKILLed first: a replica's tree ends with it.
        The exit status of an adopted process is unknown (code and signal None).
        """
        if pid in self._adopted:
            # Not our child: someone else reaps it. Its group may outlive it; while a member remains the
            # kernel keeps the group id from being reused, so the kill reaches only that group.
            self._adopted.discard(pid)
            self._kill_rest_of_group(pid)
            os.close(self._pidfds.pop(pid))
            self._end_marked(self._instance_of.pop(pid, ("", 0))[0])
            return ExitStatus(None, None, self._end_cgroup(pid))
        popen = self._children.get(pid)
        if popen is None:
            return None
        self._kill_rest_of_group(pid)
        code = popen.poll()
        if code is None:
            return None
        del self._children[pid]
        os.close(self._pidfds.pop(pid))
        self.notify_sockets.end(pid)
        ended = self._instance_of.pop(pid, None)
        if ended is not None:
            self._ended.append(ended[1])
        oom_killed = self._end_cgroup(pid)
        if code < 0:
            return ExitStatus(None, -code, oom_killed)
        return ExitStatus(code, None, oom_killed)

    def end_orphans(self) -> list[tuple[str, int]]:
        """Kill the inherited descendants of replica starts that no longer run, and reap those that ended.

        Returns (replica mark 'namespace/name.index' or "", pid) of each one killed, here or, since the last
        call, with an ended replica's cgroup (what left its process group is in it too). Called right after a
        replica (or hook) was reaped, and whenever a child of this process ends (SIGCHLD). A marked orphan goes
        when its start (ORCH_INSTANCE) no longer runs. An unmarked one that appears at the sweep right after
        starts were reaped, and began after the earliest of them, was made an orphan by their end: it goes.
        One that appears at another time is kept: a running replica's intermediate process ended, and the
        orphan is its; it goes once no running start began before it. Each killed orphan takes its subtree."""
        killed, self._outlived = self._outlived, []  # killed with their replica's cgroup, told here too
        if not self.subreaper:
            return killed
        ended, self._ended = (min(self._ended) if self._ended else None), []
        with FORKS.lock:
            found = _subreaper.orphans(self._children, self.marker, self._before)
            for orphan in found:
                if orphan.zombie:
                    _subreaper.reap(orphan.pid)
                elif self._ended_start_left(orphan, ended):
                    _subreaper.kill_tree_of(orphan.pid)
                    killed.append((orphan.replica, orphan.pid))
            alive = {o.pid for o in found if not o.zombie}
            self._kept = {pid: ticks for pid, ticks in self._kept.items() if pid in alive}
        return killed

    def _ended_start_left(self, orphan: _subreaper.Orphan, ended: int | None) -> bool:
        """Is this inherited process what is left of a replica start that no longer runs? (Records the
        unmarked ones a running replica may own.)"""
        if orphan.replica:
            return all(instance != orphan.instance for instance, _ in self._instance_of.values())
        if orphan.start_ticks < self._born:
            return False
        if orphan.pid not in self._kept:
            if ended is not None and orphan.start_ticks >= ended:
                return True  # orphaned by the starts just reaped
            self._kept[orphan.pid] = orphan.start_ticks
            return False
        # Kept for a running replica: it goes once none of those running began before it.
        return all(ticks > orphan.start_ticks for _, ticks in self._instance_of.values())

    def settle_orphans(self, seconds: float = 2.0) -> None:
        """Before this process lets go of its children: end the inherited descendants of replicas that no
        longer run, and wait (bounded) until each is reaped, so none outlives its subreaper unended."""
        deadline = time.monotonic() + seconds
        while self.subreaper:
            self.end_orphans()
            with FORKS.lock:
                left = [o for o in _subreaper.orphans(self._children, self.marker, self._before)
                        if o.zombie or self._ended_start_left(o, None)]
            if not left or time.monotonic() > deadline:
                return
            time.sleep(0.005)

    def _end_marked(self, instance: str) -> None:
        """An adopted replica ended: its descendants that left its group were not inherited here (an earlier
        daemon was their subreaper), so they are found by its marks."""
        if not instance or not self.marker:
            return
        for pid in _subreaper.marked(self.marker, instance, os.getpid()):
            _subreaper.kill_if_marked(pid, self.marker, instance)

    def running_instances(self) -> set[str]:
        """ORCH_INSTANCE of every start running now (adopted ones too)."""
        return {instance for instance, _ in self._instance_of.values() if instance}

    def kill_stray(self, pid: int) -> bool:
        """SIGKILL the process group of a replica nobody recorded (found by its state-dir marker)."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def kill_all(self) -> None:
        """Last resort when the loop itself failed: SIGKILL every group started here and reap every child,
        without events, so that nothing is left running behind a dying orchestrator."""
        for pid in list(self._pidfds):
            self._kill_rest_of_group(pid)
        for group, _ in self._cgroups.values():
            group.kill()
        for pid, popen in list(self._children.items()):
            popen.wait()
            self._children.pop(pid, None)
        for group, _ in self._cgroups.values():
            group.remove()
        self._instance_of.clear()
        self.release()

    def release(self) -> None:
        """Stop watching everything without touching it (the daemon leaves; its processes stay), after
        ending what is left of the replicas that ended."""
        self.settle_orphans()
        for pidfd in self._pidfds.values():
            os.close(pidfd)
        self._pidfds.clear()
        self.notify_sockets.close()  # a replica left running can no longer say READY=1 (an adopted one never can)
        self._adopted.clear()
        self._cgroups.clear()

    @staticmethod
    def _kill_rest_of_group(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    @property
    def running(self) -> int:
        return len(self._pidfds)


def _through_shim(argv: list[str], fds: tuple[int, ...], env: Mapping[str, str], cwd: str) -> list[str]:
    """`argv` behind the shim that hands it `fds` at 3.. (listeners.py). The shim execs the program, so a missing
    one is looked for here, as execvp would: it would otherwise be the shim's exit 127, not a failed start (a
    missing working directory is left to Popen to report)."""
    program = argv[0]
    folders = [""] if "/" in program else env.get("PATH", os.defpath).split(os.pathsep)
    found = (os.path.join(cwd, folder, program) for folder in folders)
    if os.path.isdir(cwd) and not any(os.path.isfile(path) and os.access(path, os.X_OK) for path in found):
        raise SpawnError(f"command not found: {program}")
    try:
        return inherited(argv, fds)[0]
    except (OSError, ValueError) as error:  # no bash to run the shim
        raise SpawnError(str(error)) from error


def _watchdog_instead(label: str, error: OSError, what: str = "") -> str:
    """The warning for a replica whose memory and cpu limits the kernel could not take on."""
    return f"{label} limits: {what}{error.strerror or error}; the watchdog enforces them"


def replica_environment(base: Mapping[str, str], spec: ProcessSpec, index: int) -> dict[str, str]:
    """What replica `index` of `spec` starts with (environment.py): the base, its env (each value's $(NAME) and
    $((...)) expanded, core/expand.py), then its name, namespace and index."""
    env = dict(base)
    if spec.user is not None:  # $(HOME) is the home of the user it runs as (user_ids refuses an unknown one)
        try:
            env.update(_login_variables(pwd.getpwnam(spec.user), spec.user))
        except KeyError:
            pass
    own = {"ORCH_NAME": spec.name, "ORCH_NAMESPACE": spec.namespace, "ORCH_REPLICA": str(index)}
    given = dict(spec.env)
    over = {**env, **own, **given}  # what $(NAME) may name: the ORCH_ values too
    env.update((name, expand(value, over)) for name, value in given.items())
    env.update(own)  # and a manifest cannot change them
    return env


def _login_variables(entry: pwd.struct_passwd, user: str) -> dict[str, str]:
    return {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user, "SHELL": entry.pw_shell or "/bin/sh"}


def user_ids(user: str | None, env: dict[str, str]) -> tuple[int | None, int | None, list[int] | None]:
    """uid, gid and groups that run the child as `user`, with its HOME and USER; needs root."""
    if user is None:
        return None, None, None
    try:
        entry = pwd.getpwnam(user)
    except KeyError as error:
        raise SpawnError(f"no such user: {user}") from error
    if os.geteuid() != 0:
        if entry.pw_uid == os.geteuid():
            return None, None, None
        raise SpawnError(f"running as user {user} needs the orchestrator to run as root")
    env.update(_login_variables(entry, user))
    return entry.pw_uid, entry.pw_gid, os.getgrouplist(user, entry.pw_gid)


def raise_open_files_limit() -> None:
    """Each child holds a pidfd here: let the soft limit of open files rise to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Capped, because children inherit it and some programs size tables by it.
    target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


MOVE_ROUNDS = 5  # looks for what a replica forked before its move into its cgroup (a /proc read if it forked nothing)
MAX_MOVED = 10_000


def _attach_forked_before(pid: int, group: ReplicaCgroup) -> None:
    """Move in what the replica forked between its exec and its own move (the move takes one process, not
    its children: a program that forks at once, on a loaded host, would leave its child outside every
    limit). Round after round until a look finds no descendant not moved yet: one forked during a round is
    found by the next."""
    moved: set[int] = set()
    for _ in range(MOVE_ROUNDS):
        found: list[int] = []
        stack = children_of(pid)
        while stack and len(moved) + len(found) < MAX_MOVED:
            child = stack.pop()
            if child not in moved:
                found.append(child)
            stack.extend(children_of(child))
        if not found:
            return
        for child in found:
            try:
                group.attach(child)
            except OSError:
                pass  # it ended meanwhile (or is a zombie: nothing of it runs)
            moved.add(child)
