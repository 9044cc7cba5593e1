"""The views of fleet mode: `get --fleet` (a row per object and node running it), `nodes`, and what
`describe --fleet` shows besides the local describe's fields (placement, each node's status).

They take the documents cli/fleet.py made of etcd's values, which other versions or hands may have written:
every field is looked up defensively, and shown through cell_text (no control character reaches a terminal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .common import age_text, as_mapping, cell_text, table_text

NO_NODE = "<none>"
PENDING = "Pending"  # an object no node reports: not placed yet, or no node matches its selector


def fleet_objects_table(objects: Sequence[Mapping[str, Any]], wide: bool = False, *, now: float) -> str:
    """`get --fleet`: NAME NAMESPACE MODE NODE STATE READY RESTARTS AGE, one row per (object, node that reports
    it); an object no node reports shows NODE <none> and STATE Pending. `wide` adds PIDS FENCING APPLIED-BY."""
    if not objects:
        return "No objects in the fleet."
    header = ["NAME", "NAMESPACE", "MODE", "NODE", "STATE", "READY", "RESTARTS", "AGE"]
    if wide:
        header += ["PIDS", "FENCING", "APPLIED-BY"]
    rows = []
    for obj in objects:
        statuses = [as_mapping(s) for s in obj.get("nodes") or ()] or [{}]
        for status in statuses:
            replicas = as_mapping(status.get("replicas"))
            row = [
                cell_text(obj.get("name")),
                cell_text(obj.get("namespace")),
                cell_text(obj.get("mode")),
                cell_text(status.get("node") or NO_NODE),
                cell_text(status.get("state") or PENDING),
                f"{cell_text(replicas.get('ready'))}/{cell_text(replicas.get('desired'))}" if replicas else "-",
                cell_text(status.get("restarts") if status else None),
                age_text(obj.get("appliedAt"), now),
            ]
            if wide:
                pids = status.get("pids")
                row += [
                    cell_text(",".join(str(p) for p in pids) if isinstance(pids, list) else None),
                    cell_text(status.get("fencingToken")),
                    cell_text(obj.get("appliedBy")),
                ]
            rows.append(row)
    return table_text(header, rows)


def nodes_table(nodes: Sequence[Mapping[str, Any]], wide: bool = False, *, now: float) -> str:
    """`nodes`: NAME STATUS LABELS PROCESSES VERSION AGE, and with `wide` LEASE (hex, as etcdctl shows it)."""
    if not nodes:
        return "No nodes in the fleet."
    header = ["NAME", "STATUS", "LABELS", "PROCESSES", "VERSION", "AGE"] + (["LEASE"] if wide else [])
    rows = []
    for node in nodes:
        labels = as_mapping(node.get("labels"))
        since = node.get("startedAt") if node.get("startedAt") is not None else node.get("firstSeen")
        row = [
            cell_text(node.get("name")),
            cell_text(node.get("status")),
            cell_text(",".join(f"{k}={v}" for k, v in sorted(labels.items()))),
            cell_text(node.get("processes")),
            cell_text(node.get("version")),
            age_text(since, now),
        ]
        if wide:
            row.append(cell_text(node.get("lease")))
        rows.append(row)
    return table_text(header, rows)


def placement_lines(placement: Mapping[str, Any] | None) -> list[str]:
    """`Placement:` of `describe --fleet`: the mode and its numbers, then the node selector."""
    if not placement:
        return ["Placement:  mode Each (every node), no placement given"]
    mode = placement.get("mode", "Each")
    words = [f"mode {cell_text(mode)}"]
    if mode == "Spread":
        words.append(f"{cell_text(placement.get('replicas', 1))} replicas")
        if placement.get("maxPerNode") is not None:
            words.append(f"at most {cell_text(placement.get('maxPerNode'))} per node")
        words.append(f"moved {cell_text(placement.get('lostAfterSeconds', 5.0))} s after their node is lost")
    if mode == "One":
        words.append(f"on quorum loss: {cell_text(placement.get('onQuorumLoss', 'Stop'))}")
    lines = ["Placement:  " + ", ".join(words)]
    selector = as_mapping(placement.get("nodeSelector"))
    terms = [f"{k}={v}" for k, v in sorted(as_mapping(selector.get("matchLabels")).items())]
    for expression in selector.get("matchExpressions") or ():
        expression = as_mapping(expression)
        values = expression.get("values")
        shown = f" ({','.join(str(v) for v in values)})" if isinstance(values, list) and values else ""
        terms.append(f"{expression.get('key')} {expression.get('operator')}{shown}")
    lines.append("  Nodes:    " + (cell_text(", ".join(terms)) if terms else "every node"))
    return lines


def node_status_lines(statuses: Sequence[Mapping[str, Any]]) -> list[str]:
    """`Nodes:` of `describe --fleet`: what each node reports of the object."""
    if not statuses:
        return [f"Nodes:  {NO_NODE} (state {PENDING})"]
    rows = []
    for status in statuses:
        replicas = as_mapping(status.get("replicas"))
        pids = status.get("pids")
        rows.append([
            cell_text(status.get("node")),
            cell_text(status.get("state")),
            " | ".join(f"{cell_text(replicas.get(n))} {n}" for n in ("desired", "running", "ready")),
            cell_text(status.get("restarts")),
            cell_text(",".join(str(p) for p in pids) if isinstance(pids, list) else None),
            cell_text(status.get("fencingToken")),
        ])
    table = table_text(["NODE", "STATE", "REPLICAS", "RESTARTS", "PIDS", "FENCING"], rows)
    return ["Nodes:", *("  " + line for line in table.splitlines())]
