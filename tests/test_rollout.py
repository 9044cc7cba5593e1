"""The rolling update as a pure decision: tables of (spec, records, now) and a fake-clock world that plays
the planner's actions out, checking its limits on every tick."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from orchestrator.core.model import (
    Exit,
    OnFailure,
    ProcessIdentity,
    ProcessSpec,
    Reason,
    ReplicaId,
    ReplicaRecord,
    Socket,
    Strategy,
    StrategyType,
)
from orchestrator.planning.graph import desired_state
from orchestrator.planning.plan import Plan, Start, Stop, StopReason, plan
from orchestrator.planning.policy import record_exit, record_start
from orchestrator.planning.rollout import (
    Failure,
    NoteKind,
    RolloutState,
    available,
    revision_hash,
    surge_and_unavailable,
)

KEY = "default/web"
SOCKETS = (Socket("http", "tcp://127.0.0.1:8080"),)


def web(version: str = "1", replicas: int = 4, **strategy: object) -> ProcessSpec:
    fields = {"min_ready_seconds": 5.0, **strategy}
    return ProcessSpec(name="web", command=("server", version), replicas=replicas,
                       strategy=Strategy(**fields))  # type: ignore[arg-type]


def up(spec: ProcessSpec, since: float, pid: int = 100) -> ReplicaRecord:
    """A replica of `spec` running and ready since `since`."""
    return ReplicaRecord(spec=spec, process=ProcessIdentity(pid, 1), started_at=since, ready=True, ready_since=since)


# -- maxSurge rounds up, maxUnavailable rounds down; the defaults depend on sockets -----------------------

@pytest.mark.parametrize(("surge", "unavailable", "replicas", "sockets", "expected"), [
    (None, None, 4, False, (0, 1)),  # stop-first one at a time without sockets
    (None, None, 4, True, (1, 0)),  # start-first with sockets
    ("25%", "25%", 10, False, (3, 2)),  # 2.5: up for surge, down for unavailable
    ("10%", "10%", 4, False, (1, 0)),  # 0.4: surge 1, unavailable 0
    (0, "10%", 4, False, (0, 1)),  # both round to 0: unavailable 1, as Kubernetes does
    (2, None, 4, False, (2, 1)),  # surge given, unavailable defaulted: stop-first default stays
    (2, None, 4, True, (2, 0)),
    (None, 2, 4, False, (0, 2)),
    (None, 0, 4, False, (1, 0)),  # unavailable 0 given: surge must be 1
])
def test_surge_and_unavailable(surge: object, unavailable: object, replicas: int, sockets: bool,
                               expected: tuple[int, int]) -> None:
    spec = replace(web(replicas=replicas, max_surge=surge, max_unavailable=unavailable),
                   sockets=SOCKETS if sockets else ())
    assert surge_and_unavailable(spec) == expected


def test_scaling_never_makes_a_revision_and_a_restart_field_does() -> None:
    assert revision_hash(web("1")) == revision_hash(replace(web("1"), replicas=9, labels=(("a", "b"),)))
    assert revision_hash(web("1")) == revision_hash(web("1", min_ready_seconds=0.0))  # the strategy neither
    assert revision_hash(web("1")) != revision_hash(web("2"))
    assert revision_hash(web("1")) != revision_hash(replace(web("1"), sockets=SOCKETS))


def test_available_needs_readiness_held_for_min_ready_seconds() -> None:
    spec = web()
    assert not available(spec, up(spec, since=100.0), now=104.9)
    assert available(spec, up(spec, since=100.0), now=105.0)
    assert not available(spec, replace(up(spec, 100.0), ready=False, ready_since=None), now=200.0)
    assert not available(spec, replace(up(spec, 100.0), stop_requested_at=150.0), now=200.0)


# -- single steps -------------------------------------------------------------------------------------

def step(spec: ProcessSpec, records: dict[int, ReplicaRecord], now: float,
         state: RolloutState | None = None, paused: bool = False) -> Plan:
    rollouts = {KEY: state} if state is not None else {}
    return plan(desired_state([spec]), {ReplicaId(KEY, i): r for i, r in records.items()}, now, rollouts,
                frozenset({KEY}) if paused else frozenset())


def acts(result: Plan) -> list[str]:
    return [f"{type(a).__name__.lower()} {a.replica.index}" for a in result.actions]


def test_first_start_ignores_the_strategy() -> None:
    result = step(web("1"), {}, 0.0)
    assert acts(result) == ["start 0", "start 1", "start 2", "start 3"]
    assert result.rollouts == {} and result.notes == ()


def test_stop_first_stops_one_old_replica_highest_slot_first() -> None:
    old = web("1")
    records = {i: up(old, since=0.0, pid=100 + i) for i in range(4)}
    result = step(web("2"), records, 100.0)
    assert acts(result) == ["stop 3"]
    assert all(a.reason is StopReason.SPEC_CHANGED for a in result.actions if isinstance(a, Stop))
    assert [n.kind for n in result.notes] == [NoteKind.STARTED]
    assert result.rollouts[KEY] is not None and result.rollouts[KEY].target == revision_hash(web("2"))


def test_start_first_starts_a_surge_replica_and_stops_nothing_until_it_is_available() -> None:
    old = replace(web("1"), sockets=SOCKETS)
    new = replace(web("2"), sockets=SOCKETS)
    records = {i: up(old, since=0.0, pid=100 + i) for i in range(4)}
    result = step(new, records, 100.0)
    assert acts(result) == ["start 4"]
    state = result.rollouts[KEY]
    records[4] = up(new, since=101.0, pid=200)
    assert acts(step(new, records, 103.0, state)) == []  # ready, not yet available: nothing stops
    later = step(new, records, 106.0, state)
    assert acts(later) == ["stop 3"]
    assert later.wake_at is not None


def test_unavailable_old_replicas_go_first_at_no_cost() -> None:
    old = web("1")
    records = {i: up(old, since=0.0, pid=100 + i) for i in range(4)}
    records[1] = replace(records[1], ready=False, ready_since=None)  # the stable revision is broken here
    assert acts(step(web("2"), records, 100.0)) == ["stop 1"]  # not 3: that one serves


def test_young_ready_old_replicas_serve_and_are_not_stopped_at_no_cost() -> None:
    old = replace(web("1"), sockets=SOCKETS)
    records = {i: up(old, since=99.9, pid=100 + i) for i in range(4)}  # ready 0.1 s ago: minReadySeconds 5
    assert acts(step(replace(web("2"), sockets=SOCKETS), records, 100.0)) == ["start 4"]


def test_a_new_replica_that_reaches_failed_fails_the_rollout() -> None:
    old, new = web("1"), replace(web("2"), max_restarts=1)
    records = {i: up(old, since=0.0, pid=100 + i) for i in range(3)}
    crashed = ReplicaRecord(spec=new, last_exit=Exit(1, None, Reason.ERROR, 99.0, 0.1), restarts=2,
                            restart_times=(98.0, 99.0), crash_streak=2, failures=2)
    records[3] = crashed
    state = RolloutState(target=revision_hash(new), started_at=90.0, progress_at=90.0, mark=(0, 3))
    result = step(new, records, 100.0, state)
    failed = [n for n in result.notes if n.kind is NoteKind.FAILED]
    assert [n.reason for n in failed] == [Failure.NEW_REPLICA_FAILED.value]
    assert result.rollouts[KEY] is not None and result.rollouts[KEY].failed == Failure.NEW_REPLICA_FAILED.value
    assert acts(result) == []  # nothing more is stopped: the old ones keep serving


def test_no_progress_within_the_deadline_fails_and_progress_resets_it() -> None:
    old, new = web("1"), web("2", progress_deadline_seconds=60.0)
    records = {i: up(old, since=0.0, pid=100 + i) for i in range(3)}
    records[3] = ReplicaRecord(spec=new, process=ProcessIdentity(300, 1), started_at=10.0)  # never ready
    state = RolloutState(target=revision_hash(new), started_at=10.0, progress_at=10.0, mark=(0, 3))
    waiting = step(new, records, 69.0, state)
    assert waiting.wake_at == 70.0 and not waiting.notes
    failed = step(new, records, 70.0, state)
    assert [n.reason for n in failed.notes] == [Failure.DEADLINE.value]
    # An old replica that ended is progress: the deadline counts from then.
    records_after = {**records, 2: record_exit(replace(records[2], stop_requested_at=60.0),
                                               Exit(None, 15, Reason.KILLED, 65.0, 65.0))}
    progressed = step(new, records_after, 69.0, state)
    assert progressed.rollouts[KEY] is not None and progressed.rollouts[KEY].progress_at == 69.0


def test_paused_rollout_neither_steps_nor_fails_and_keeps_the_mix() -> None:
    old, new = web("1"), web("2", progress_deadline_seconds=60.0)
    records = {i: up(old, since=0.0, pid=100 + i) for i in range(3)}
    records[3] = up(new, since=10.0, pid=300)
    records[0] = record_exit(records[0], Exit(1, None, Reason.ERROR, 500.0, 500.0))  # an old one crashed
    state = RolloutState(target=revision_hash(new), started_at=10.0, progress_at=10.0, mark=(1, 3))
    result = step(new, records, 1000.0, state, paused=True)
    assert not [n for n in result.notes if n.kind is NoteKind.FAILED]
    starts = [a for a in result.actions if isinstance(a, Start)]
    assert [(a.replica.index, a.spec.command) for a in starts] == [(0, ("server", "1"))]  # as it ran
    assert not [a for a in result.actions if isinstance(a, Stop)]


def test_recreate_restarts_every_replica_at_once() -> None:
    old = web("1", type=StrategyType.RECREATE)
    records = {i: up(old, since=0.0, pid=100 + i) for i in range(4)}
    result = step(web("2", type=StrategyType.RECREATE), records, 100.0)
    assert sorted(acts(result)) == ["stop 0", "stop 1", "stop 2", "stop 3"]
    assert all(a.reason is StopReason.SPEC_CHANGED for a in result.actions if isinstance(a, Stop))


def test_rollover_mid_rollout_treats_the_superseded_target_as_old() -> None:
    v1, v2, v3 = web("1"), web("2"), web("3")
    records = {0: up(v1, 0.0, 100), 1: up(v1, 0.0, 101), 2: up(v1, 0.0, 102),
               3: ReplicaRecord(spec=v2, process=ProcessIdentity(300, 1), started_at=99.0)}  # v2, starting
    state = RolloutState(target=revision_hash(v2), started_at=90.0, progress_at=90.0, mark=(0, 3))
    result = step(v3, records, 100.0, state)
    assert acts(result) == ["stop 3"]  # the unavailable v2 instance goes first, free of cost
    assert [n.kind for n in result.notes] == [NoteKind.STARTED] and "rollover" in result.notes[0].message
    assert result.rollouts[KEY] is not None and result.rollouts[KEY].target == revision_hash(v3)


# -- a whole rollout, played out on a fake clock ------------------------------------------------------

@dataclass
class World:
    """Plays the planner's actions out: a start runs (ready after `ready_after` seconds, or never for a
    bad build), a stop ends `stop_takes` seconds later. Checks the limits on every tick."""

    spec: ProcessSpec
    records: dict[ReplicaId, ReplicaRecord]
    ready_after: Callable[[ProcessSpec], float | None] = lambda spec: 1.0
    crashes: Callable[[ProcessSpec], bool] = lambda spec: False
    stop_takes: float = 0.5
    now: float = 100.0
    rollouts: dict[str, RolloutState] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pids: int = 1000
    min_available: int = 10**9
    max_total: int = 0

    def tick(self, dt: float = 0.25) -> None:
        result = plan(desired_state([self.spec]), self.records, self.now, self.rollouts)
        for key, state in result.rollouts.items():
            if state is None:
                self.rollouts.pop(key, None)
            else:
                self.rollouts[key] = state
        self.notes += [n.kind.value for n in result.notes]
        for action in result.actions:
            if isinstance(action, Start):
                self.pids += 1
                record = record_start(self.records.get(action.replica), action.spec,
                                      ProcessIdentity(self.pids, 1), self.now)
                self.records[action.replica] = record
            elif isinstance(action, Stop):
                self.records[action.replica] = replace(self.records[action.replica], stop_requested_at=self.now)
        self.now += dt
        for rid, record in list(self.records.items()):
            if record.process is None or record.started_at is None:
                continue
            if record.stop_requested_at is not None and self.now - record.stop_requested_at >= self.stop_takes:
                self.records[rid] = record_exit(record, Exit(None, 15, Reason.KILLED, self.now,
                                                             self.now - record.started_at))
            elif record.stop_requested_at is None and self.crashes(record.spec) and self.now - record.started_at > 0.3:
                self.records[rid] = record_exit(record, Exit(1, None, Reason.ERROR, self.now,
                                                             self.now - record.started_at))
            elif not record.ready:
                delay = self.ready_after(record.spec)
                if delay is not None and self.now - record.started_at >= delay:
                    self.records[rid] = replace(record, ready=True, ready_since=self.now)
        live = [r for r in self.records.values() if r.process is not None]
        self.max_total = max(self.max_total, len(live))
        self.min_available = min(self.min_available, sum(1 for r in live if available(r.spec, r, self.now)))

    def run(self, until: Callable[[World], bool], seconds: float = 600.0) -> None:
        deadline = self.now + seconds
        while not until(self):
            assert self.now < deadline, f"did not converge: {self.notes}"
            self.tick()

    def revisions(self) -> list[str]:
        return sorted(r.spec.command[1] for r in self.records.values() if r.process is not None)


def settled(spec: ProcessSpec, n: int = 4, minimum: float = 5.0) -> World:
    world = World(spec, {ReplicaId(KEY, i): replace(up(spec, 0.0, 100 + i)) for i in range(n)})
    world.now = minimum + 100.0
    return world


@pytest.mark.parametrize(("surge", "unavailable", "sockets"), [
    (None, None, False), (None, None, True), (2, 1, False), ("50%", 0, True), (0, 2, False), (1, 1, True),
])
def test_rolling_update_keeps_its_limits_and_completes(surge: object, unavailable: object, sockets: bool) -> None:
    old = replace(web("1", max_surge=surge, max_unavailable=unavailable), sockets=SOCKETS if sockets else ())
    new = replace(old, command=("server", "2"))
    world = settled(old)
    world.spec = new
    n_surge, n_unavailable = surge_and_unavailable(new)
    world.min_available = 4
    world.run(lambda w: "RolloutComplete" in w.notes)
    assert world.revisions() == ["2", "2", "2", "2"]
    assert world.min_available >= 4 - n_unavailable
    assert world.max_total <= 4 + n_surge
    assert world.notes[0] == "RolloutStarted" and world.notes.count("ReplicaAvailable") >= 1
    assert world.rollouts == {}
    assert sorted(rid.index for rid, r in world.records.items() if r.process is not None) == [0, 1, 2, 3]


def test_a_build_that_never_becomes_ready_fails_at_the_deadline_with_the_old_replicas_serving() -> None:
    old = replace(web("1", progress_deadline_seconds=30.0), sockets=SOCKETS)
    new = replace(old, command=("server", "2"))
    world = settled(old)
    world.spec = new
    world.ready_after = lambda spec: None if spec.command[1] == "2" else 1.0
    world.run(lambda w: "RolloutFailed" in w.notes, seconds=60.0)
    assert world.min_available >= 4  # start-first: nothing old was stopped for it
    assert world.revisions().count("1") == 4
    assert world.rollouts[KEY].failed == Failure.DEADLINE.value


def test_a_build_that_crashes_fails_fast_on_its_first_failed_replica() -> None:
    old = web("1", progress_deadline_seconds=600.0)
    new = replace(old, command=("server", "2"), max_restarts=2, restart_window_seconds=60.0)
    world = settled(old)
    world.spec = new
    world.crashes = lambda spec: spec.command[1] == "2"
    world.run(lambda w: "RolloutFailed" in w.notes, seconds=120.0)
    assert world.now < 200.0  # far sooner than the deadline
    assert world.rollouts[KEY].failed == Failure.NEW_REPLICA_FAILED.value
    assert world.min_available >= 3  # stop-first, one at a time: one slot down, no more


def test_onfailure_defaults_to_rollback() -> None:
    assert Strategy().on_failure is OnFailure.ROLLBACK
