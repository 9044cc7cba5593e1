"""PURE: which of the fleet's Processes a node runs, and which claims it takes or gives back (design/fleet.md).

Every agent decides for itself from the same facts (the specs, the ready nodes, the claims in etcd), so no
scheduler is needed and none can be lost:
- Each: every node the selector matches runs the spec's replicas.
- One: the matching nodes race for one claim (`claims/NS/NAME/one`, bound to the node's lease); its holder
  runs the Process with the claim's create revision as fencing token. A holder keeps it while it lives and
  matches, so a node joining moves nothing.
- Spread: `replicas` replicas over the ready matching nodes by rendezvous (highest random weight) hashing of
  (object, replica index, node), at most maxPerNode on one: the same owners on every agent, and a node
  joining or leaving moves only the replicas it gains or loses. An owner runs replica i only once it holds
  claim i, so two views of the node list that differ for a moment cannot run it twice (a node cut off from
  etcd keeps its replicas, which may then run elsewhere too: Spread is at least once); a node that is no
  longer the owner stops its replica first and gives the claim back after. A lost node still counts for
  lostAfterSeconds (its replicas wait, a flapping link does not move work back and forth).
A claim is given back only once the node runs no more of the object than it still holds claims for.
Without a fresh view of etcd nothing is decided here: the agent keeps its last share (never stop healthy
processes because etcd is unreachable); only the self-fence of mode One (daemon/fleet.py) acts then.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..core.fleet import (
    FENCING_VARIABLE,
    LOST_AFTER_LABEL,
    MODE_LABEL,
    NODE_VARIABLE,
    ONE_SLOT,
    QUORUM_LOSS_LABEL,
    LabelExpression,
    Placement,
    claim_key,
)
from ..core.model import ProcessSpec, Shutdown


@dataclass(frozen=True)
class Node:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Claim:
    node: str
    revision: int  # its create revision: the fencing token of a One claim


@dataclass(frozen=True)
class Share:
    """What a node does now. `run`: the local specs (placement gone, replicas and variables set) by key;
    `claim`: claim keys to try to take; `release`: claim keys of ours to give back; `waiting`: why an object
    the node could run does not run here (for status and events)."""

    run: dict[str, ProcessSpec] = field(default_factory=dict)
    claim: tuple[str, ...] = ()
    release: tuple[str, ...] = ()
    waiting: dict[str, str] = field(default_factory=dict)


def selects(placement: Placement | None, labels: Mapping[str, str]) -> bool:
    """Does a node with `labels` match the placement's nodeSelector? (No placement: every node.)"""
    if placement is None:
        return True
    if any(labels.get(key) != value for key, value in placement.match_labels):
        return False
    return all(_holds(expression, labels) for expression in placement.match_expressions)


def _holds(expression: LabelExpression, labels: Mapping[str, str]) -> bool:
    value = labels.get(expression.key)
    if expression.operator == "In":
        return value is not None and value in expression.values
    if expression.operator == "NotIn":
        return value is None or value not in expression.values
    if expression.operator == "Exists":
        return value is not None
    return value is None  # DoesNotExist


def weight(key: str, index: int, node: str) -> int:
    """The rendezvous weight of `node` for replica `index` of `key`: the same on every agent and Python."""
    digest = hashlib.blake2b(f"{key}\0{index}\0{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def spread_owners(key: str, replicas: int, nodes: Sequence[str], max_per_node: int | None,
                  held: Mapping[int, str] | None = None) -> dict[int, str]:
    """The node of each replica index of a Spread `key` over `nodes`: every replica goes to its heaviest node
    while that has room under `max_per_node`, then those left to their second heaviest, and so on (rank by
    rank); a replica no node has room for is left out. Within a rank the replicas a node `held` (its claims)
    come first there, then the others in index order: so a lost node's replicas never push a surviving node's
    own off it, and only go where there is room."""
    held = held or {}
    ranked = [sorted(nodes, key=lambda node: (weight(key, index, node), node), reverse=True)
              for index in range(replicas)]
    owners: dict[int, str] = {}
    load: dict[str, int] = {}
    for rank in range(len(nodes)):
        waiting = sorted((index for index in range(replicas) if index not in owners),
                         key=lambda index: (held.get(index) != ranked[index][rank], index))
        for index in waiting:
            node = ranked[index][rank]
            if max_per_node is None or load.get(node, 0) < max_per_node:
                owners[index] = node
                load[node] = load.get(node, 0) + 1
    return owners


def one_slot(spec: ProcessSpec) -> str:
    return claim_key(spec.namespace, spec.name, ONE_SLOT)


def spread_slot(spec: ProcessSpec, index: int) -> str:
    return claim_key(spec.namespace, spec.name, index)


def local_spec(spec: ProcessSpec, node: str, replicas: int | None = None, token: int | None = None,
               fence_grace: float | None = None) -> ProcessSpec:
    """`spec` as this node runs it: no placement, `replicas` of it (None: the spec's), ORCH_NODE (and for mode
    One ORCH_FENCING_TOKEN) in its environment, and for mode One a stop that ends within `fence_grace` seconds
    (SIGKILL after), so that a fenced copy is gone before another node can be elected."""
    env = dict(spec.env)
    env[NODE_VARIABLE] = node
    if token is not None:
        env[FENCING_VARIABLE] = str(token)
    labels = dict(spec.labels)
    labels.pop("orchestrator.io/prune", None)  # the fleet's share is the fleet's to prune, singletons above all
    placement = spec.placement or Placement()
    labels[MODE_LABEL] = placement.mode
    labels.pop(QUORUM_LOSS_LABEL, None)  # the placement's say, not a label the manifest set by hand
    labels.pop(LOST_AFTER_LABEL, None)
    if placement.mode == "One":
        labels[QUORUM_LOSS_LABEL] = placement.quorum_loss
    elif placement.mode == "Spread" and placement.quorum_loss == "Stop":
        labels[QUORUM_LOSS_LABEL] = "Stop"
        labels[LOST_AFTER_LABEL] = f"{placement.lost_after_seconds:g}"
    local = replace(spec, placement=None, env=tuple(sorted(env.items())), labels=tuple(sorted(labels.items())),
                    replicas=spec.replicas if replicas is None else replicas)
    if fence_grace is not None and spec.shutdown.timeout_seconds > fence_grace:
        local = replace(local, shutdown=Shutdown(spec.shutdown.signal, fence_grace))
    return local


def share(specs: Sequence[ProcessSpec], me: str, nodes: Mapping[str, Node], claims: Mapping[str, Claim],
          running: Mapping[str, int], *, lost: Mapping[str, tuple[Node, float]] | None = None,
          fence_grace: float | None = None) -> Share:
    """What node `me` runs and which claims it takes or gives back, from one consistent view of etcd.

    `nodes`: the ready nodes (their lease alive), `me` among them; `lost`: nodes gone, each with the seconds
    since (still owners while that is under a Spread spec's lostAfterSeconds, so their replicas wait there);
    `claims` by key; `running`: how many
    replicas of each key run here now (a claim is given back only once they are down to what stays).
    """
    result = Share()
    claim: list[str] = []
    release: list[str] = []
    lost = lost or {}
    my_labels = nodes[me].labels if me in nodes else {}
    for spec in specs:
        placement = spec.placement
        mode = placement.mode if placement is not None else "Each"
        matches = selects(placement, my_labels)
        if mode == "Each":
            if matches:
                result.run[spec.key] = local_spec(spec, me)
            continue
        assert placement is not None
        if mode == "One":
            slot = one_slot(spec)
            holder = claims.get(slot)
            if holder is not None and holder.node == me:
                if matches:
                    result.run[spec.key] = local_spec(spec, me, token=holder.revision, fence_grace=fence_grace)
                elif running.get(spec.key, 0) == 0:
                    release.append(slot)  # no longer selected here, and stopped: another node may take it
            elif matches:
                if holder is None:
                    claim.append(slot)
                    result.waiting[spec.key] = "claiming mode One's election"
                else:
                    result.waiting[spec.key] = f"mode One: runs on {holder.node}"
            continue
        # Spread
        counted = {name: node for name, (node, gone) in lost.items() if gone < placement.lost_after_seconds}
        candidates = sorted(name for name, node in {**counted, **nodes}.items() if selects(placement, node.labels))
        prefix = claim_key(spec.namespace, spec.name, "")
        holders = {int(k[len(prefix):]): c.node for k, c in claims.items()
                   if k.startswith(prefix) and _index(k[len(prefix):]) and c.node in candidates}
        owners = spread_owners(spec.key, placement.replicas, candidates, placement.max_per_node, holders)
        mine = [i for i, owner in owners.items() if owner == me]
        held = sorted(int(k[len(prefix):]) for k, c in claims.items()
                      if c.node == me and k.startswith(prefix) and _index(k[len(prefix):]))
        keep = [i for i in held if i in mine]
        stale = [i for i in held if i not in mine]  # another node's now, or past placement.replicas
        if keep:
            result.run[spec.key] = local_spec(spec, me, replicas=len(keep),
                                              fence_grace=fence_grace if placement.quorum_loss == "Stop" else None)
        if stale and running.get(spec.key, 0) <= len(keep):
            release.extend(spread_slot(spec, i) for i in stale)  # stopped first: then another node may start it
        for index in mine:
            if index not in held:
                if spread_slot(spec, index) not in claims:
                    claim.append(spread_slot(spec, index))
                else:
                    result.waiting[spec.key] = (f"replica {index} is still held by "
                                                f"{claims[spread_slot(spec, index)].node}")
        if len(owners) < placement.replicas and matches:
            result.waiting[spec.key] = (f"{placement.replicas - len(owners)} replica(s) fit on no ready node "
                                        f"(maxPerNode {placement.max_per_node})")
    # A dependency on a fleet Process that does not run here: the dependent waits (not the apply), takes no
    # claim here and gives back, once stopped, those it holds, so that a node where both run can take them
    # (of two mode One Processes, one depending on the other, the dependent follows to the other's node).
    by_key = {spec.key: spec for spec in specs}
    blocked: dict[str, str] = {}
    while True:
        found = {key: dep for key, spec in by_key.items() if key not in blocked
                 and (key in result.run or any(_slot_of(spec, slot) for slot in claim)
                      or any(c.node == me and _slot_of(spec, slot) for slot, c in claims.items()))
                 for dep in (spec.dependency_key(d) for d in spec.depends_on)
                 if dep in by_key and (dep not in result.run or dep in blocked)}
        if not found:
            break
        blocked.update(found)
    for key, dep in blocked.items():
        spec = by_key[key]
        result.run.pop(key, None)
        result.waiting[key] = f"depends on {dep}, which does not run on this node"
        claim = [slot for slot in claim if not _slot_of(spec, slot)]
        held_here = [slot for slot, c in claims.items() if c.node == me and _slot_of(spec, slot)
                     and slot not in release]
        if held_here and running.get(key, 0) == 0:
            release += held_here
    return replace(result, claim=tuple(claim), release=tuple(release))


def _index(text: str) -> bool:
    """A replica index as a claim key ends with: ASCII digits only (int() would take '²' or '٣' too)."""
    return text.isascii() and text.isdecimal()


def _slot_of(spec: ProcessSpec, slot: str) -> bool:
    return slot.startswith(claim_key(spec.namespace, spec.name, ""))


def grace_left(specs: Iterable[ProcessSpec], lost: Mapping[str, tuple[Node, float]]) -> list[float]:
    """Seconds until a lost node stops counting as an owner of some Spread spec (when its replicas move)."""
    left = []
    for spec in specs:
        if spec.placement is not None and spec.placement.mode == "Spread":
            left += [spec.placement.lost_after_seconds - gone for _, gone in lost.values()
                     if gone < spec.placement.lost_after_seconds]
    return left


def fence_after(local: Mapping[str, ProcessSpec], ttl: float, margin: float) -> dict[str, float]:
    """Seconds after the last keepalive etcd confirmed at which a node cut off from etcd stops each local spec
    that fences: mode One (but onQuorumLoss Keep) at TTL less the margin, before its lease can expire and
    another node be elected; a Spread replica with onQuorumLoss Stop lostAfterSeconds later, before another
    node may claim it; what depends on one of these with it (a share without its dependency would not be
    applied). Each, and Spread without Stop, go on running. From the local specs' labels alone, so that a
    daemon restarted without etcd can fence from its store."""
    after: dict[str, float] = {}
    for key, spec in local.items():
        labels = dict(spec.labels)
        mode, loss = labels.get(MODE_LABEL), labels.get(QUORUM_LOSS_LABEL)
        if mode == "One" and loss != "Keep":
            after[key] = ttl - margin
        elif mode == "Spread" and loss == "Stop":
            try:
                lost_after = max(0.0, float(labels.get(LOST_AFTER_LABEL, "0")))
            except ValueError:
                lost_after = 0.0  # (a label by hand): the soonest
            after[key] = ttl + lost_after - margin
    while True:
        sooner = {}
        for key, spec in local.items():
            deadlines = [after[d] for d in (spec.dependency_key(x) for x in spec.depends_on) if d in after]
            if deadlines and min(deadlines) < after.get(key, math.inf):
                sooner[key] = min(deadlines)
        if not sooner:
            return after
        after.update(sooner)


def fenced(local: Mapping[str, ProcessSpec], ttl: float, margin: float,
           silent: float = math.inf) -> dict[str, ProcessSpec]:
    """The local share of a node whose lease etcd has not confirmed for `silent` seconds (inf: not at all
    since it started): without what fence_after says must be stopped by then."""
    after = fence_after(local, ttl, margin)
    return {key: spec for key, spec in local.items() if key not in after or after[key] > silent}
