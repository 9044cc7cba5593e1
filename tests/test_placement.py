"""Placement over a fleet (planning/placement.py), with given facts: selectors, rendezvous owners, the share of
one node for Each, One and Spread, claims taken and given back, and the self-fence."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.core.fleet import FENCING_VARIABLE, NODE_VARIABLE, LabelExpression, Placement
from orchestrator.core.model import Dependency, ProcessSpec, Shutdown
from orchestrator.planning.placement import (
    Claim,
    Node,
    fence_after,
    fenced,
    local_spec,
    one_slot,
    selects,
    share,
    spread_owners,
    spread_slot,
)


def process(name: str, placement: Placement | None, **fields: object) -> ProcessSpec:
    return ProcessSpec(name=name, command=("sleep", "100"), placement=placement, **fields)  # type: ignore[arg-type]


NODES = {name: Node(name, labels) for name, labels in
         (("n1", {"disk": "ssd", "zone": "a"}), ("n2", {"disk": "ssd", "zone": "b"}), ("n3", {"disk": "hdd"}))}


@pytest.mark.parametrize(("placement", "chosen"), [
    (None, {"n1", "n2", "n3"}),
    (Placement(match_labels=(("disk", "ssd"),)), {"n1", "n2"}),
    (Placement(match_expressions=(LabelExpression("zone", "In", ("a", "c")),)), {"n1"}),
    (Placement(match_expressions=(LabelExpression("zone", "NotIn", ("a",)),)), {"n2", "n3"}),
    (Placement(match_expressions=(LabelExpression("zone", "Exists"),)), {"n1", "n2"}),
    (Placement(match_expressions=(LabelExpression("zone", "DoesNotExist"),)), {"n3"}),
    (Placement(match_labels=(("disk", "ssd"),), match_expressions=(LabelExpression("zone", "In", ("b",)),)), {"n2"}),
])
def test_selectors(placement: Placement | None, chosen: set[str]) -> None:
    assert {name for name, node in NODES.items() if selects(placement, node.labels)} == chosen


def test_rendezvous_owners_are_stable_and_a_lost_node_moves_only_its_replicas() -> None:
    nodes = ["n1", "n2", "n3"]
    owners = spread_owners("default/web", 30, nodes, None)
    assert owners == spread_owners("default/web", 30, list(reversed(nodes)), None)  # the order of the view: no matter
    assert set(Counter(owners.values())) == set(nodes) and min(Counter(owners.values()).values()) >= 4
    after = spread_owners("default/web", 30, ["n1", "n3"], None)
    assert {i for i in owners if owners[i] != after[i]} == {i for i, n in owners.items() if n == "n2"}
    joined = spread_owners("default/web", 30, [*nodes, "n4"], None)
    assert all(joined[i] in (owners[i], "n4") for i in owners)  # a joining node only takes


def test_under_max_per_node_a_lost_node_moves_only_its_own_replicas() -> None:
    nodes = ["n1", "n2", "n3"]
    for number in range(200):  # (greedy in index order, some keys pushed a survivor's replica off it)
        key = f"default/web{number}"
        owners = spread_owners(key, 30, nodes, 15)
        assert len(owners) == 30
        assert spread_owners(key, 30, nodes, 15, held=owners) == owners  # claimed as placed: nothing moves
        for lost in nodes:
            after = spread_owners(key, 30, [n for n in nodes if n != lost], 15, held=owners)  # their claims
            assert len(after) == 30 and max(Counter(after.values()).values()) <= 15
            assert {i: n for i, n in owners.items() if n != lost} == {i: after[i] for i, n in owners.items()
                                                                     if n != lost}, (key, lost)


def test_max_per_node_caps_a_node_and_what_fits_nowhere_is_left_out() -> None:
    owners = spread_owners("default/web", 7, ["n1", "n2", "n3"], 2)
    assert len(owners) == 6 and max(Counter(owners.values()).values()) == 2


def test_each_runs_on_every_matching_node_with_its_node_in_the_environment() -> None:
    spec = process("agent", Placement(match_labels=(("disk", "ssd"),)), replicas=2)
    mine = share([spec], "n1", NODES, {}, {})
    local = mine.run["default/agent"]
    assert local.placement is None and local.replicas == 2 and dict(local.env)[NODE_VARIABLE] == "n1"
    assert share([spec], "n3", NODES, {}, {}).run == {}


def test_one_is_claimed_then_run_with_its_fencing_token_and_elsewhere_waits() -> None:
    spec = process("cron", Placement(mode="One"), shutdown=Shutdown("SIGTERM", 30))
    first = share([spec], "n1", NODES, {}, {})
    assert first.run == {} and first.claim == (one_slot(spec),)
    claims = {one_slot(spec): Claim("n1", 42)}
    holder = share([spec], "n1", NODES, claims, {}, fence_grace=1.5)
    local = holder.run["default/cron"]
    assert dict(local.env)[FENCING_VARIABLE] == "42" and local.shutdown.timeout_seconds == 1.5
    other = share([spec], "n2", NODES, claims, {})
    assert other.run == {} and other.claim == () and "runs on n1" in other.waiting["default/cron"]


def test_a_one_holder_no_longer_selected_gives_its_claim_back_only_once_stopped() -> None:
    spec = process("cron", Placement(mode="One", match_labels=(("disk", "hdd"),)))
    claims = {one_slot(spec): Claim("n1", 7)}
    assert share([spec], "n1", NODES, claims, {"default/cron": 1}).release == ()
    assert share([spec], "n1", NODES, claims, {"default/cron": 0}).release == (one_slot(spec),)


def test_spread_claims_its_replicas_then_runs_those_it_holds() -> None:
    spec = process("web", Placement(mode="Spread", replicas=6))
    owners = spread_owners("default/web", 6, ["n1", "n2", "n3"], None)
    mine = sorted(i for i, n in owners.items() if n == "n1")
    first = share([spec], "n1", NODES, {}, {})
    assert first.run == {} and first.claim == tuple(spread_slot(spec, i) for i in mine)
    claims = {spread_slot(spec, i): Claim("n1", 10 + i) for i in mine}
    held = share([spec], "n1", NODES, claims, {})
    assert held.run["default/web"].replicas == len(mine) and held.claim == ()


def test_spread_replicas_of_a_lost_node_wait_while_it_counts_then_move() -> None:
    spec = process("web", Placement(mode="Spread", replicas=6))
    owners = spread_owners("default/web", 6, ["n1", "n2", "n3"], None)
    of_n2 = {i for i, n in owners.items() if n == "n2"}
    alive = {n: NODES[n] for n in ("n1", "n3")}
    waiting = share([spec], "n1", alive, {}, {}, lost={"n2": (NODES["n2"], 4.9)})
    assert not {spread_slot(spec, i) for i in of_n2} & set(waiting.claim)
    late = {"n2": (NODES["n2"], 5.0)}  # lostAfterSeconds (5) passed: claimed by their next owners
    moved = share([spec], "n1", alive, {}, {}, lost=late).claim + share([spec], "n3", alive, {}, {}, lost=late).claim
    assert {spread_slot(spec, i) for i in of_n2} <= set(moved)


def test_a_spread_replica_no_longer_owned_is_stopped_before_its_claim_is_given_back() -> None:
    spec = process("web", Placement(mode="Spread", replicas=6))
    everyone = spread_owners("default/web", 6, ["n1", "n2", "n3"], None)
    alone = {i: "n1" for i in range(6)}  # n1 held every replica while the others were away
    claims = {spread_slot(spec, i): Claim("n1", 10 + i) for i in alone}
    back = share([spec], "n1", NODES, claims, {"default/web": 6})
    keep = sum(1 for n in everyone.values() if n == "n1")
    assert back.run["default/web"].replicas == keep and back.release == ()
    done = share([spec], "n1", NODES, claims, {"default/web": keep})
    assert set(done.release) == {spread_slot(spec, i) for i, n in everyone.items() if n != "n1"}


def test_a_fenced_node_stops_what_fences_at_its_deadline_and_keeps_the_rest() -> None:
    one = process("cron", Placement(mode="One"))
    keep = process("leader", Placement(mode="One", on_quorum_loss="Keep"))
    each = process("agent", None)
    spread = process("web", Placement(mode="Spread", replicas=2))  # Keep: Spread's default
    strict = process("pay", Placement(mode="Spread", replicas=2, lost_after_seconds=5, on_quorum_loss="Stop"))
    after_cron = process("report", None, depends_on=(Dependency("cron"),))
    local = {s.key: local_spec(s, "n1", token=1 if s.placement and s.placement.mode == "One" else None)
             for s in (one, keep, each, spread, strict, after_cron)}
    ttl, margin = 10, 3
    # From the labels alone (a daemon restarted without etcd reads them from its store).
    assert fence_after(local, ttl, margin) == {"default/cron": 7, "default/report": 7, "default/pay": 12}
    everything = set(local)
    assert set(fenced(local, ttl, margin, silent=6.9)) == everything
    assert set(fenced(local, ttl, margin, silent=7)) == everything - {"default/cron", "default/report"}
    assert set(fenced(local, ttl, margin, silent=12)) == {"default/leader", "default/agent", "default/web"}
    assert set(fenced(local, ttl, margin)) == {"default/leader", "default/agent", "default/web"}  # never confirmed
    hand = replace(local["default/agent"], labels=(("fleet.orchestrator.io/on-quorum-loss", "Stop"),))
    assert fence_after({"default/agent": hand}, ttl, margin) == {}  # a label alone makes no Each fence
    # The placement writes the labels, whatever the manifest's own say; a Spread replica's stop is bounded too.
    forged = process("web", Placement(mode="Spread", replicas=2),
                     labels=(("fleet.orchestrator.io/on-quorum-loss", "Stop"),))
    assert fence_after({forged.key: local_spec(forged, "n1")}, ttl, margin) == {}
    claims = {spread_slot(strict, i): Claim("n1", 3 + i) for i in range(2)}
    alone = {"n1": NODES["n1"]}  # every replica is n1's
    held = share([replace(strict, shutdown=Shutdown("SIGTERM", 30))], "n1", alone, claims, {}, fence_grace=1.5)
    assert held.run["default/pay"].shutdown.timeout_seconds == 1.5


def test_a_dependency_on_a_fleet_process_not_on_this_node_holds_the_dependent_back_and_its_claims_too() -> None:
    api = process("api", Placement(match_labels=(("disk", "ssd"),)))
    worker = process("worker", None, depends_on=(Dependency("api"),))  # Each, every node
    report = process("report", None, depends_on=(Dependency("worker"),))  # a chain: held back in turn
    local = process("local", None, depends_on=(Dependency("cache"),))  # not a fleet Process: not this rule's
    on_ssd = share([api, worker, report, local], "n1", NODES, {}, {})
    assert set(on_ssd.run) == {"default/api", "default/worker", "default/report", "default/local"}
    on_hdd = share([api, worker, report, local], "n3", NODES, {}, {})
    assert set(on_hdd.run) == {"default/local"}
    assert on_hdd.waiting["default/worker"] == "depends on default/api, which does not run on this node"
    assert on_hdd.waiting["default/report"] == "depends on default/worker, which does not run on this node"

    db = process("db", Placement(mode="One"))
    migrate = process("migrate", Placement(mode="One"), depends_on=(Dependency("db"),))
    claims = {one_slot(db): Claim("n2", 5)}
    elsewhere = share([db, migrate], "n1", NODES, claims, {})  # db runs on n2: migrate claims nothing here
    assert elsewhere.claim == () and elsewhere.run == {}
    assert "depends on default/db" in elsewhere.waiting["default/migrate"]
    holding = {**claims, one_slot(migrate): Claim("n1", 6)}  # taken before db went to n2: given back once stopped
    assert share([db, migrate], "n1", NODES, holding, {"default/migrate": 1}).release == ()
    assert share([db, migrate], "n1", NODES, holding, {"default/migrate": 0}).release == (one_slot(migrate),)
    with_db = share([db, migrate], "n2", NODES, claims, {})  # where db runs, migrate claims and then runs
    assert set(with_db.run) == {"default/db"} and with_db.claim == (one_slot(migrate),)
    both = share([db, migrate], "n2", NODES, {**claims, one_slot(migrate): Claim("n2", 7)}, {})
    assert set(both.run) == {"default/db", "default/migrate"}


def test_on_quorum_loss_is_for_one_and_spread_and_spread_keeps_by_default(tmp_path: Path) -> None:
    from orchestrator.core.errors import ManifestError
    from orchestrator.manifests.loader import load_specs

    def placed(name: str, placement: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"apiVersion: orchestrator/v1\nkind: Process\nmetadata: {{name: {name}}}\n"
                        f"spec:\n  command: [sleep, '60']\n  placement: {placement}\n")
        return path

    (strict,) = load_specs([str(placed("pay", "{mode: Spread, replicas: 2, onQuorumLoss: Stop}"))])
    (loose,) = load_specs([str(placed("web", "{mode: Spread, replicas: 2}"))])
    (one,) = load_specs([str(placed("cron", "{mode: One}"))])
    assert strict.placement is not None and strict.placement.quorum_loss == "Stop"
    assert loose.placement is not None and loose.placement.quorum_loss == "Keep"
    assert one.placement is not None and one.placement.quorum_loss == "Stop"
    assert strict.placement.to_document()["onQuorumLoss"] == "Stop" and "onQuorumLoss" not in loose.placement.to_document()
    with pytest.raises(ManifestError, match=r"each.yaml:6:\d+: spec.placement.onQuorumLoss: is for modes One and Spread"):
        load_specs([str(placed("each", "{mode: Each, onQuorumLoss: Stop}"))])
