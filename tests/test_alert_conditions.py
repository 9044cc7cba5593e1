"""What an AlertRule sees of its replicas, as tables (planning/alert_conditions.py): which replicas breach each
condition now and with what value, how one replica with an alert is judged, and what a pass's snapshot holds.

`breaching` is the hot path written out per condition, `judge` the detailed one for replicas that have an
alert: every table row also checks that the two agree on every replica they can both judge, so a rule never
fires on one path and resolves on the other.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from orchestrator.core.alerting import AlertRuleSpec
from orchestrator.core.model import (
    Exit,
    Limits,
    Phase,
    Probe,
    ProbeAction,
    Probes,
    ProcessIdentity,
    ProcessSpec,
    Reason,
    ReplicaId,
    ReplicaRecord,
)
from orchestrator.planning.alert_conditions import UNJUDGED, Replica, Usage, breaching, judge, selection, snapshot
from orchestrator.planning.plan import Waiting

MiB = 1 << 20
PLAIN = ProcessSpec(name="api", namespace="shop", command=("sleep", "100"))
MEMORY_LIMITED = ProcessSpec(name="api", namespace="shop", command=("sleep", "100"), limits=Limits(memory_bytes=100 * MiB))
CPU_LIMITED = ProcessSpec(name="api", namespace="shop", command=("sleep", "100"), limits=Limits(cpu=0.5))


def replica(index: int, spec: ProcessSpec = PLAIN, *, running: bool = True, down: bool = False, ready: bool = True,
            cpu: float | None = None, memory: int | None = None) -> Replica:
    return Replica(ReplicaId("shop/api", index), spec, running, down, ready, cpu, memory)


def rule(condition: str, **fields: object) -> AlertRuleSpec:
    return AlertRuleSpec(name="r", namespace="shop", condition=condition, process="shop/api", **fields)  # type: ignore[arg-type]


def rid(index: int) -> ReplicaId:
    return ReplicaId("shop/api", index)


BREACHING = [
    pytest.param(rule("cpu", above=0.8, of="core"),
                 [replica(0, cpu=85.0, memory=MiB), replica(1, cpu=79.9, memory=MiB), replica(2, memory=MiB)],
                 {}, {rid(0): 85.0}, id="cpu-of-a-core"),
    pytest.param(rule("cpu", above=2.5, of="core"), [replica(0, cpu=260.0, memory=MiB), replica(1, cpu=240.0, memory=MiB)],
                 {}, {rid(0): 260.0}, id="cpu-of-cores-above-one"),
    pytest.param(rule("cpu", above=0.9, of="limit"),
                 [replica(0, CPU_LIMITED, cpu=46.0, memory=MiB), replica(1, CPU_LIMITED, cpu=44.0, memory=MiB),
                  replica(2, PLAIN, cpu=99.0, memory=MiB)],
                 {}, {rid(0): 92.0}, id="cpu-of-its-limit-and-none-without-one"),
    pytest.param(rule("memory", above=100.0 * MiB, of="bytes"),
                 [replica(0, memory=150 * MiB), replica(1, memory=99 * MiB), replica(2)],
                 {}, {rid(0): 150.0 * MiB}, id="memory-bytes"),
    pytest.param(rule("memory", above=0.8, of="limit"),
                 [replica(0, MEMORY_LIMITED, memory=85 * MiB), replica(1, MEMORY_LIMITED, memory=79 * MiB),
                  replica(2, CPU_LIMITED, cpu=10.0, memory=900 * MiB), replica(3, MEMORY_LIMITED)],
                 {}, {rid(0): 85.0}, id="memory-of-its-limit-and-none-without-one"),
    pytest.param(rule("memory", above=1.0, of="limit"),
                 [replica(0, MEMORY_LIMITED, memory=100 * MiB), replica(1, MEMORY_LIMITED, memory=100 * MiB - 1)],
                 {}, {rid(0): 100.0}, id="memory-at-the-limit-breaches"),
    pytest.param(rule("notReady"),
                 [replica(0, ready=False), replica(1, ready=True), replica(2, running=False, ready=False),
                  replica(3, running=False, down=True, ready=False)],
                 {}, {rid(0): 1.0}, id="not-ready-only-while-it-runs"),
    pytest.param(rule("down"),
                 [replica(0, running=False, down=True, ready=False), replica(1), replica(2, running=False, ready=False)],
                 {}, {rid(0): 1.0}, id="down-is-backoff-or-failed-not-pending"),
    pytest.param(rule("restarts", more_than=2, within_seconds=300.0),
                 [replica(0), replica(1), replica(2, running=False, down=True, ready=False)],
                 {rid(0): 3, rid(1): 2, rid(2): 5}, {rid(0): 3.0, rid(2): 5.0}, id="restarts-more-than"),
    pytest.param(rule("restarts", more_than=0, within_seconds=300.0), [replica(0), replica(1)],
                 {}, {}, id="restarts-none-counted"),
    pytest.param(rule("limitHealth", band="Warning"),
                 [replica(0, MEMORY_LIMITED, memory=80 * MiB), replica(1, MEMORY_LIMITED, memory=79 * MiB),
                  replica(2, CPU_LIMITED, cpu=45.0, memory=MiB), replica(3, CPU_LIMITED, memory=MiB),
                  replica(4, PLAIN, cpu=500.0, memory=900 * MiB)],
                 {}, {rid(0): 80.0, rid(2): 90.0}, id="limit-health-warning"),
    pytest.param(rule("limitHealth", band="Critical"),
                 [replica(0, MEMORY_LIMITED, memory=95 * MiB), replica(1, MEMORY_LIMITED, memory=101 * MiB),
                  replica(2, CPU_LIMITED, cpu=50.0, memory=MiB)],
                 {}, {rid(1): 101.0, rid(2): 100.0}, id="limit-health-critical"),
]


@pytest.mark.parametrize(("alert_rule", "replicas", "restarts", "expected"), BREACHING)
def test_breaching(alert_rule: AlertRuleSpec, replicas: list[Replica], restarts: Mapping[ReplicaId, int],
                   expected: dict[ReplicaId, float]) -> None:
    found = breaching(alert_rule, replicas, restarts)
    assert found == pytest.approx(expected)


@pytest.mark.parametrize(("alert_rule", "replicas", "restarts", "expected"), BREACHING)
def test_judge_agrees_with_breaching(alert_rule: AlertRuleSpec, replicas: list[Replica],
                                     restarts: Mapping[ReplicaId, int], expected: dict[ReplicaId, float]) -> None:
    """Wherever `judge` gives a verdict, it is breaching's, with the same value for a breach."""
    for one in replicas:
        verdict = judge(alert_rule, one, restarts)
        if verdict == UNJUDGED or verdict == (None, None):
            assert one.rid not in expected, f"{one.rid} breaches but judge says {verdict}"
            continue
        assert isinstance(verdict, tuple)
        breaches, value = verdict
        assert breaches == (one.rid in expected), one.rid
        if breaches:
            assert value == pytest.approx(expected[one.rid])


@pytest.mark.parametrize(
    ("alert_rule", "one", "verdict"),
    [
        pytest.param(rule("cpu", above=0.8, of="core"), None, (None, None), id="gone"),
        pytest.param(rule("cpu", above=0.8, of="core"), replica(0), UNJUDGED, id="running-without-a-sample"),
        pytest.param(rule("cpu", above=0.8, of="core"), replica(0, memory=MiB), UNJUDGED, id="cpu-after-one-sample"),
        pytest.param(rule("memory", above=0.8, of="limit"), replica(0, MEMORY_LIMITED, memory=MiB), (False, 1.0),
                     id="memory-needs-one-sample-only"),
        pytest.param(rule("memory", above=0.8, of="limit"), replica(0, CPU_LIMITED, cpu=1.0, memory=MiB),
                     (None, None), id="memory-of-a-limit-it-no-longer-has-ends-the-series"),
        pytest.param(rule("cpu", above=0.8, of="core"), replica(0, running=False, ready=False), (None, None),
                     id="not-running-has-no-cpu"),
        pytest.param(rule("notReady"), replica(0, running=False, ready=False), (None, None),
                     id="not-running-is-not-not-ready"),
        pytest.param(rule("notReady"), replica(0, ready=True), (False, 0.0), id="ready-again"),
        pytest.param(rule("notReady"), replica(0, ready=False), (True, 1.0), id="not-ready"),
        pytest.param(rule("down"), replica(0, running=False, down=True, ready=False), (True, 1.0), id="down"),
        pytest.param(rule("down"), replica(0), (False, 0.0), id="up-again"),
        pytest.param(rule("limitHealth", band="Warning"), replica(0, CPU_LIMITED, memory=MiB), UNJUDGED,
                     id="cpu-only-limit-after-one-sample"),
        pytest.param(rule("limitHealth", band="Warning"), replica(0, PLAIN, cpu=1.0, memory=MiB), (None, None),
                     id="limit-health-without-limits-ends-the-series"),
    ],
)
def test_judge(alert_rule: AlertRuleSpec, one: Replica | None, verdict: object) -> None:
    assert judge(alert_rule, one, {}) == verdict


def test_snapshot_reads_phases_readiness_and_usage_only_where_a_condition_needs_them() -> None:
    probed = ProcessSpec(name="api", namespace="shop", command=("sleep", "100"), replicas=3,
                         probes=Probes(readiness=Probe(ProbeAction.TCP, port=8080)))
    held = ProcessSpec(name="held", namespace="shop", command=("sleep", "100"), stopped=True)
    specs = {"shop/api": probed, "shop/held": held}
    records = {
        rid(0): ReplicaRecord(spec=probed, process=ProcessIdentity(100, 1), started_at=1.0, ready=False),
        rid(1): ReplicaRecord(spec=probed, process=ProcessIdentity(101, 1), started_at=1.0, ready=True),
        rid(2): ReplicaRecord(spec=probed, last_exit=Exit(1, None, Reason.ERROR, 5.0, 1.0)),
        ReplicaId("shop/held", 0): ReplicaRecord(spec=held),
    }
    waiting = {rid(2): Waiting(rid(2), Phase.BACKOFF, 10.0, "crashed")}
    asked: list[ReplicaId] = []

    def latest(replica_id: ReplicaId) -> Usage:
        asked.append(replica_id)
        return Usage(12.5, 3 * MiB)

    table = snapshot(specs, records, waiting, latest, ["shop/api", "shop/held"], {"notReady", "down"})
    assert sorted(table) == [rid(0), rid(1), rid(2)]  # what the user stopped is not watched
    assert [(r.running, r.down, r.ready) for r in table.values()] == [(True, False, False), (True, False, True),
                                                                        (False, True, False)]
    assert asked == [] and all(r.cpu is None and r.memory is None for r in table.values())
    assert breaching(rule("notReady"), table.values(), {}) == {rid(0): 1.0}
    assert breaching(rule("down"), table.values(), {}) == {rid(2): 1.0}

    table = snapshot(specs, records, waiting, latest, ["shop/api"], {"memory"})
    assert asked == [rid(0), rid(1)]  # only what runs is sampled
    assert [(r.cpu, r.memory, r.down, r.ready) for r in table.values()] == [
        (12.5, 3 * MiB, False, False), (12.5, 3 * MiB, False, False), (None, None, False, False)]


def test_selection_by_process_or_labels_within_the_namespace() -> None:
    web = ProcessSpec(name="web", namespace="shop", command=("true",), labels=(("team", "a"), ("tier", "web")))
    other = ProcessSpec(name="web", namespace="other", command=("true",), labels=(("team", "a"),))
    db = ProcessSpec(name="db", namespace="shop", command=("true",), labels=(("team", "b"),))
    specs = {"shop/web": web, "other/web": other, "shop/db": db}
    by_labels = AlertRuleSpec(name="r", namespace="shop", condition="down", match_labels=(("team", "a"),))
    assert selection(by_labels, specs) == ["shop/web"]
    assert selection(AlertRuleSpec(name="r", namespace="shop", condition="down", process="shop/db"), specs) == ["shop/db"]
    assert selection(AlertRuleSpec(name="r", namespace="shop", condition="down", process="shop/gone"), specs) == []
