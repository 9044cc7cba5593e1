"""Values: frozen specs built from validated manifests, run-state records and the str-enums naming states.

A spec never carries runtime fields; runtime facts live in ReplicaRecord. Nothing here does I/O.
Defaults and units of every manifest field are written once, in the schemas' descriptions; the defaults
below mirror them so that specs built in code (tests, benchmarks) mean the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import NamedTuple

from .errors import Location
from .fleet import Placement

DEFAULT_NAMESPACE = "default"


class Kind(str, Enum):
    PROCESS = "Process"
    JOB = "Job"


class RestartPolicy(str, Enum):
    ALWAYS = "Always"
    ON_FAILURE = "OnFailure"
    NEVER = "Never"


class Condition(str, Enum):
    """What a dependent waits for. Without probes, `ready` means every replica is running."""

    STARTED = "started"
    READY = "ready"
    COMPLETED = "completed"


class Phase(str, Enum):
    """The state of one replica, as shown to users."""

    PENDING = "Pending"  # desired, not started yet
    WAITING = "Waiting"  # waiting for its dependencies
    RUNNING = "Running"
    STOPPING = "Stopping"  # stop signal sent, waiting for it to exit
    BACKOFF = "BackOff"  # exited, next try planned at a time
    SUCCEEDED = "Succeeded"  # exited with success and will not be restarted
    FAILED = "Failed"  # will not be restarted: failed under its policy, or past maxRestarts / backoffLimit


class Reason(str, Enum):
    """Why a process ended."""

    COMPLETED = "Completed"  # exit code in successExitCodes
    ERROR = "Error"  # another exit code
    KILLED = "Killed"  # ended by a signal
    START_FAILED = "StartFailed"  # could not be started at all (missing binary, permission denied)
    UNKNOWN = "Unknown"  # an adopted process ended: not our child, so its exit status cannot be known
    LIVENESS_FAILED = "LivenessFailed"  # stopped because its liveness (or startup) probe failed
    HOOK_FAILED = "HookFailed"  # its preStart hook failed or timed out: the start did not happen
    OOM_KILLED = "OOMKilled"  # killed for staying over its memory limit
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # a Job stopped for running past its activeDeadlineSeconds


@dataclass(frozen=True)
class Backoff:
    initial_seconds: float = 1.0
    max_seconds: float = 300.0
    multiplier: float = 2.0
    reset_after_seconds: float = 600.0


@dataclass(frozen=True)
class Shutdown:
    signal: str = "SIGTERM"
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class LogPolicy:
    """Size rotation of a replica's log file."""

    max_bytes: int = 10 * 1024 * 1024
    keep: int = 5


class ProbeAction(str, Enum):
    EXEC = "exec"
    HTTP = "http"
    TCP = "tcp"
    LOG = "log"
    NOTIFY = "notify"  # the replica says READY=1 on its own $NOTIFY_SOCKET (systemd's sd_notify protocol)


# The PATH every replica, hook and exec check starts with unless its manifest sets one (host/environment.py).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Probe:
    """One health check and its schedule (Kubernetes' defaults)."""

    action: ProbeAction
    command: tuple[str, ...] = ()  # exec
    host: str = "127.0.0.1"  # http, tcp
    port: int | str = 0  # http, tcp; a str is $((...)) or $(NAME), one port per replica (core/expand.py)
    path: str = "/"  # http
    headers: tuple[tuple[str, str], ...] = ()  # http
    pattern: str = ""  # log
    initial_delay_seconds: float = 0.0
    period_seconds: float = 10.0
    timeout_seconds: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


class ProbeKind(str, Enum):
    STARTUP = "startup"
    READINESS = "readiness"
    LIVENESS = "liveness"


@dataclass(frozen=True)
class Probes:
    startup: Probe | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None

    def of(self, kind: ProbeKind) -> Probe | None:
        return getattr(self, kind.value)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Hook:
    command: tuple[str, ...]
    timeout_seconds: float = 10.0


class HookKind(str, Enum):
    PRE_START = "preStart"
    POST_START = "postStart"
    PRE_STOP = "preStop"


@dataclass(frozen=True)
class Hooks:
    pre_start: Hook | None = None
    post_start: Hook | None = None
    pre_stop: Hook | None = None

    def of(self, kind: HookKind) -> Hook | None:
        return {HookKind.PRE_START: self.pre_start, HookKind.POST_START: self.post_start,
                HookKind.PRE_STOP: self.pre_stop}[kind]


def nice_of(priority: int) -> int:
    """The nice value of a priority: 0 -> 0, +100 -> -20 (first), -100 -> 19 (last); 5 priority points a step.

    A negative nice value needs root (or CAP_SYS_NICE); without it the process keeps nice 0 and an event
    says so.
    """
    return max(-20, min(19, round(-priority / 5)))


@dataclass(frozen=True)
class Limits:
    """Resource limits of a replica's process tree; None: no limit."""

    memory_bytes: int | None = None
    cpu: float | None = None  # cores
    open_files: int | None = None
    processes: int | None = None

    @property
    def memory_or_cpu(self) -> bool:
        """Is memory or cpu limited (by a cgroup, or else the sampling watchdog)?"""
        return self.memory_bytes is not None or self.cpu is not None

    def enforcement(self, memory_and_cpu: str = "watchdog") -> dict[str, str]:
        """How each limit that is set is enforced (limits.py), for status documents; `memory_and_cpu` is
        "cgroup v2", "cgroup v1" or "watchdog"."""
        how = {"memory": memory_and_cpu, "cpu": memory_and_cpu, "openFiles": "rlimit", "processes": "rlimit"}
        values = {"memory": self.memory_bytes, "cpu": self.cpu, "openFiles": self.open_files,
                  "processes": self.processes}
        return {name: how[name] for name, value in values.items() if value is not None}


class StrategyType(str, Enum):
    ROLLING_UPDATE = "RollingUpdate"  # a few replicas at a time, each proven available before the next
    RECREATE = "Recreate"  # every replica stopped and started again at once


class OnFailure(str, Enum):
    ROLLBACK = "Rollback"  # back to the newest stable revision, then held there
    PAUSE = "Pause"  # keep the mix of revisions as it is and stop progressing


@dataclass(frozen=True)
class Strategy:
    """How a change that needs a restart reaches the replicas of a Process (the manifest's `strategy`,
    `minReadySeconds`, `progressDeadlineSeconds` and `revisionHistoryLimit`). None for maxSurge and
    maxUnavailable: the default of the process, which depends on whether it has sockets (planning/rollout.py)."""

    type: StrategyType = StrategyType.ROLLING_UPDATE
    max_surge: int | str | None = None  # a count or "N%" of replicas, rounded up
    max_unavailable: int | str | None = None  # a count or "N%" of replicas, rounded down
    on_failure: OnFailure = OnFailure.ROLLBACK
    min_ready_seconds: float = 5.0  # readiness held this long, with no restart, before a replica is available
    progress_deadline_seconds: float = 600.0  # no progress for this long: the rollout failed
    revision_history_limit: int = 10  # rollout revisions kept per process (0: no undo)


@dataclass(frozen=True)
class Socket:
    """A listening socket the daemon binds and every replica of every revision inherits (fd 3 on, in order)."""

    name: str
    listen: str  # tcp://HOST:PORT, tcp://[V6]:PORT or unix:/ABS/PATH
    backlog: int | None = None  # None: net.core.somaxconn
    reuse_port: bool = False
    non_blocking: bool = False
    mode: str | None = None  # unix only, octal such as "0660"


@dataclass(frozen=True)
class Autoscale:
    min: int
    max: int
    target_cpu_percent: float
    scale_up_seconds: float = 30.0
    scale_down_seconds: float = 300.0


@dataclass(frozen=True)
class Dependency:
    name: str
    condition: Condition = Condition.STARTED
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ProcessSpec:
    """The desired state of one Process or Job, built from one validated manifest document.

    `env` holds the manifest's env merged over its envFrom files, as sorted (name, value) pairs.
    `working_dir` is absolute. `location` says where the document is and takes no part in comparisons.
    """

    name: str
    command: tuple[str, ...]
    namespace: str = DEFAULT_NAMESPACE
    kind: Kind = Kind.PROCESS
    labels: tuple[tuple[str, str], ...] = ()
    shell: bool = False
    working_dir: str = "/"
    env: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    replicas: int = 1
    priority: int = 0
    restart_policy: RestartPolicy = RestartPolicy.ALWAYS
    success_exit_codes: tuple[int, ...] = (0,)
    backoff: Backoff = Backoff()
    max_restarts: int | None = None
    restart_window_seconds: float = 60.0
    backoff_limit: int = 6  # Jobs only: retries after the first failure
    # Jobs only: the longest a Job may be active (from its first start, retries and backoff included, time
    # frozen by its queue not), in seconds; past it the Job is stopped and Failed (DeadlineExceeded).
    active_deadline_seconds: float | None = None
    depends_on: tuple[Dependency, ...] = ()
    restart_with_dependency: bool = False
    shutdown: Shutdown = Shutdown()
    logs: LogPolicy = LogPolicy()
    probes: Probes = Probes()
    hooks: Hooks = Hooks()
    limits: Limits = Limits()
    autoscale: Autoscale | None = None  # when set, `replicas` is the pool's current size, moved by the autoscaler
    cpu_affinity: tuple[int, ...] = ()
    io_class: str | None = None
    sockets: tuple[Socket, ...] = ()
    strategy: Strategy = Strategy()
    # Jobs only: the Queue a Job is admitted under (None: it starts at once), its class there (one of
    # core/queue.py's PRIORITY_CLASSES) and what it is admitted with (cores, bytes; None: 0).
    queue: str | None = None
    priority_class: str = "Normal"
    requests_cpu: float | None = None
    requests_memory: int | None = None
    # Fleet mode only: which nodes run this Process (core/fleet.py). The agent of a node applies its share
    # without it; a single-host apply refuses it.
    placement: Placement | None = None
    # Set by `orchestrator rollout restart` (when it was asked): a new revision of the same manifest, rolled
    # out with the strategy. Not a manifest field: an apply keeps it as it is.
    restart_nonce: str = ""
    # Held stopped by `orchestrator stop` until `orchestrator start`: no replica runs, the object stays. Not a
    # manifest field: an apply keeps it as it is.
    stopped: bool = False
    location: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """`namespace/name`: unique among the desired specs."""
        return f"{self.namespace}/{self.name}"

    def dependency_key(self, dependency: Dependency) -> str:
        return f"{self.namespace}/{dependency.name}"

    def wanted_replicas(self) -> int:
        """How many replicas should run: none while held stopped."""
        return 0 if self.stopped else self.replicas

    @property
    def effective_restart_policy(self) -> RestartPolicy:
        """Jobs run to completion: they are retried on failure only."""
        return RestartPolicy.ON_FAILURE if self.kind is Kind.JOB else self.restart_policy


class ReplicaId(NamedTuple):
    """One slot of a pool: replica `index` of the spec `key` (`namespace/name`).

    A named tuple rather than a dataclass: it is built and hashed for every replica on every planner pass,
    and a tuple's hash and equality are several times cheaper (bench/bench_plan.py).
    """

    key: str
    index: int = 0  # type: ignore[assignment]  # shadows tuple.index on purpose: the name users know

    def __str__(self) -> str:
        return f"{self.key}[{self.index}]"


@dataclass(frozen=True)
class ProcessIdentity:
    """A process is (pid, start time), never the pid alone: pids are reused.

    The start time is the kernel's, in clock ticks since boot (/proc/PID/stat field 22): unlike a wall-clock
    creation time (boot time + ticks), it does not move when the clock is stepped, so a daemon restarted
    after an NTP correction still recognises the processes it should adopt.
    """

    pid: int
    start_ticks: int


@dataclass(frozen=True)
class Exit:
    """How a run of a replica ended."""

    code: int | None  # exit status, None when killed by a signal or never started
    signal: int | None
    reason: Reason
    at: float  # monotonic time of the exit
    ran_seconds: float  # how long it ran
    message: str = ""  # for StartFailed: why


@dataclass(frozen=True)
class ReplicaRecord:
    """What the reconciler remembers about one replica slot: facts, not decisions.

    `spec` is the spec the current (or last) process was started from. `crash_streak` counts the
    consecutive runs that ended and were shorter than backoff.resetAfterSeconds; it sizes the backoff.
    Whether the replica is in BackOff, Succeeded or Failed is not stored: policy.py derives it from
    these facts, the same way on every pass.
    """

    spec: ProcessSpec
    process: ProcessIdentity | None = None
    started_at: float | None = None  # monotonic
    stop_requested_at: float | None = None  # monotonic; set while we are stopping it
    killed: bool = False  # SIGKILL already sent to its group during this stop
    restarts: int = 0
    restart_times: tuple[float, ...] = ()  # monotonic times of recent restarts (for maxRestarts)
    crash_streak: int = 0
    failures: int = 0  # failed runs of this spec (Jobs' backoffLimit)
    last_exit: Exit | None = None
    stopped_on_purpose: bool = False  # the last run was ended by us (spec change, restart): start it again now
    started: bool = False  # its startup probe passed (or it has none): readiness and liveness may run
    ready: bool = False  # its readiness probe passes (or, without probes, it runs)
    unhealthy: str = ""  # why its liveness or startup probe failed: the planner stops it, and that is a crash
    hook: ProcessIdentity | None = None  # a lifecycle hook of this replica that runs now
    hook_kind: HookKind | None = None
    hook_started_at: float | None = None  # monotonic
    hook_killed: bool = False  # SIGKILL already sent to the hook's group (it ran past its timeout)
    pre_start_passed: bool = False  # its preStart hook passed: the next start runs the process itself
    over_memory: str = ""  # why the watchdog found it over its memory limit: the planner kills it (OOMKilled)
    cgroup: str = ""  # the cgroup its process runs in, where the kernel enforces its memory and cpu limits
    slot_since: float | None = None  # monotonic start of this slot's first process, kept across restarts
    ready_since: float | None = None  # monotonic; when it last became ready (None while it is not)
    # A Job's activeDeadlineSeconds counts from `deadline_from` (monotonic: its first start, moved on by each
    # time it was frozen); `frozen_since` is set while its queue has it frozen (the deadline does not run).
    deadline_from: float | None = None
    frozen_since: float | None = None
    deadline_exceeded: bool = False  # stopped for running past its deadline: the exit is DeadlineExceeded

    @property
    def alive(self) -> bool:
        return self.process is not None


@dataclass(frozen=True)
class DesiredState:
    """Every desired spec by key, with the start order worked out once per apply (graph.desired_state).

    `start_order` lists keys by dependency generation, higher priority first within one; stopping goes
    in reverse. `dependents` maps a key to the keys that depend on it.
    """

    specs: Mapping[str, ProcessSpec]
    start_order: tuple[str, ...]
    dependents: Mapping[str, tuple[str, ...]]

    @staticmethod
    def empty() -> DesiredState:
        return DesiredState(MappingProxyType({}), (), MappingProxyType({}))
