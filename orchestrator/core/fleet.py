"""Values of fleet mode: a Process's placement over the nodes of a fleet, and a node as the fleet sees it.

A placement is built from a validated manifest's `spec.placement` (manifests/specs.py) and carried by the
ProcessSpec; schemas/process.v1.json is the reference of its fields and defaults (mirrored below, tested).
Which node runs what is planning/placement.py's to say; what etcd holds, and the agent that keeps a node's
share running, are daemon/fleet.py's. Nothing here knows a clock or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("Each", "One", "Spread")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
QUORUM_LOSS = ("Stop", "Keep")
# The variables a fleet process gets besides ORCH_NAME and the like: the node that runs it, and for mode One
# the fencing token (the revision of its election: a later holder always has a higher one).
NODE_VARIABLE = "ORCH_NODE"
FENCING_VARIABLE = "ORCH_FENCING_TOKEN"
# Labels a node's local copy of a fleet Process carries (`get -l fleet.orchestrator.io/mode=One`): its mode, and
# for mode One (and Spread) what to do when etcd is lost (and a Spread replica's lostAfterSeconds, when it is
# stopped then). They let a daemon restarted without etcd fence from its store alone.
MODE_LABEL = "fleet.orchestrator.io/mode"
QUORUM_LOSS_LABEL = "fleet.orchestrator.io/on-quorum-loss"
LOST_AFTER_LABEL = "fleet.orchestrator.io/lost-after"


@dataclass(frozen=True)
class EtcdAccess:
    """How to reach the fleet's etcd: client URLs of one cluster, and credentials as file paths (never values)."""

    endpoints: tuple[str, ...]
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    user: str | None = None
    password_file: str | None = None


@dataclass(frozen=True)
class FleetConfig:
    """A daemon in fleet mode: its etcd, its node's name and labels, and its lease's TTL in seconds."""

    etcd: EtcdAccess
    node: str
    labels: tuple[tuple[str, str], ...] = ()
    lease_ttl: int = 10


@dataclass(frozen=True)
class LabelExpression:
    key: str
    operator: str  # one of OPERATORS
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where a Process runs in a fleet. `mode` Each: every selected node runs the spec's replicas; One: one
    selected node at a time (by election); Spread: `replicas` in all over the selected nodes, at most
    `max_per_node` on one (None: no limit), moved `lost_after_seconds` after their node is lost.
    `on_quorum_loss`: Stop it on a node cut off from etcd before another node may run it, or Keep it; ""
    is the mode's default (`quorum_loss`): Stop for One (exclusivity), Keep for Spread (availability)."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[LabelExpression, ...] = ()
    mode: str = "Each"
    replicas: int = 1
    max_per_node: int | None = None
    lost_after_seconds: float = 5.0
    on_quorum_loss: str = ""

    @property
    def quorum_loss(self) -> str:
        return self.on_quorum_loss or ("Stop" if self.mode == "One" else "Keep")

    def to_document(self) -> dict[str, object]:
        """The manifest's `spec.placement` for it, defaults left out."""
        document: dict[str, object] = {}
        selector: dict[str, object] = {}
        if self.match_labels:
            selector["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            selector["matchExpressions"] = [
                {"key": e.key, "operator": e.operator, **({"values": list(e.values)} if e.values else {})}
                for e in self.match_expressions]
        if selector:
            document["nodeSelector"] = selector
        document["mode"] = self.mode
        if self.mode == "Spread":
            document["replicas"] = self.replicas
            if self.max_per_node is not None:
                document["maxPerNode"] = self.max_per_node
            document["lostAfterSeconds"] = self.lost_after_seconds
        if self.mode == "One" or self.mode == "Spread" and self.on_quorum_loss:
            document["onQuorumLoss"] = self.quorum_loss
        return document


def placement_from_document(value: dict[str, object]) -> Placement:
    """A Placement from a `spec.placement` the schema accepted (or to_document wrote)."""
    selector = value.get("nodeSelector")
    selector = selector if isinstance(selector, dict) else {}
    labels = selector.get("matchLabels")
    expressions = selector.get("matchExpressions")
    max_per_node = value.get("maxPerNode")
    return Placement(
        match_labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, dict) else (),
        match_expressions=tuple(
            LabelExpression(str(e["key"]), str(e["operator"]), tuple(str(v) for v in e.get("values") or ()))
            for e in expressions if isinstance(e, dict)) if isinstance(expressions, list) else (),
        mode=str(value.get("mode", "Each")),
        replicas=int(value.get("replicas", 1)),  # type: ignore[call-overload]
        max_per_node=int(max_per_node) if isinstance(max_per_node, int) else None,
        lost_after_seconds=float(value.get("lostAfterSeconds", 5.0)),  # type: ignore[arg-type]
        on_quorum_loss=str(value.get("onQuorumLoss", "")),
    )


# -- what etcd holds (daemon/fleet.py's agents and cli/fleet.py's writers share this layout) ----------------------
# Every value is JSON (utf-8). Keys bound to a node's lease vanish when the node is lost.
PREFIX = "/orch/v1/"
SPECS = PREFIX + "specs/"  # specs/<ns>/<name>: {"document": manifest document (codec.spec_to_document), "source":
#                            the file it came from, "appliedBy": "user@host", "appliedAt": unix time}; no lease
NODES = PREFIX + "nodes/"  # nodes/<node>: {"name", "labels", "version", "startedAt", "lease"}; the node's lease
MEMBERS = PREFIX + "members/"  # members/<node>: {"name", "labels", "firstSeen"}; no lease: `nodes` shows NotReady
CLAIMS = PREFIX + "claims/"  # claims/<ns>/<name>/one (mode One) or /<index> (Spread): {"node"}; the node's lease.
#                              Its create_revision is the fencing token: a later holder always has a higher one.
STATUS = PREFIX + "status/"  # status/<node>/<ns>/<name>: {"node", "key", "mode", "state", "replicas": {"desired",
#                              "running", "ready"}, "restarts", "pids", "fencingToken"}; the node's lease
SYNCS = PREFIX + "syncs/"  # syncs/<name>/leader: {"node"}; the lease of the node that runs the GitSync <name>
#                            (target Fleet): its create_revision guards every write of that sync. Sorted after
#                            status/, outside the agents' watch: an election wakes no pass.
SCHEMA_VERSION_KEY = PREFIX + "meta/schema-version"
SCHEMA_VERSION = "1"
ONE_SLOT = "one"


def spec_key(namespace: str, name: str) -> str:
    return f"{SPECS}{namespace}/{name}"


def node_key(node: str) -> str:
    return f"{NODES}{node}"


def member_key(node: str) -> str:
    return f"{MEMBERS}{node}"


def claim_key(namespace: str, name: str, slot: int | str) -> str:
    return f"{CLAIMS}{namespace}/{name}/{slot}"


def sync_leader_key(sync: str) -> str:
    return f"{SYNCS}{sync}/leader"


def status_key(node: str, namespace: str, name: str) -> str:
    return f"{STATUS}{node}/{namespace}/{name}"
