"""The tables: `get` (plain and wide), `history`, and the result lines of `apply`, `delete` and `rollback`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .common import GAP, age_text, cell_text, command_text, dig, human_bytes, table_text, truncated

_MIN_COMMAND_WIDTH = 10  # below this a truncated command says nothing; let the line wrap instead


def objects_table(
    objects: Sequence[Mapping[str, Any]], wide: bool = False, width: int | None = None, *, now: float
) -> str:
    """`orchestrator get`. `width` (the terminal's) truncates COMMAND with `…`; `now` is wall seconds."""
    if not objects:
        return "No objects."
    namespaces = {obj.get("namespace") for obj in objects}
    show_namespace = len(namespaces) > 1
    header = ["NAME", "KIND", "READY", "STATE", "RESTARTS", "AGE"]
    if show_namespace:
        header.insert(0, "NAMESPACE")
    if wide:
        header += ["UP-TO-DATE", "REVISION", "HEALTH", "PID", "CPU", "MEM", "COMMAND"]
    rows: list[list[str]] = []
    for obj in objects:
        row = object_cells(obj, wide=wide, now=now)
        if wide:  # (not in `top`'s cells: its columns stay as they are)
            row[6:6] = [cell_text(obj.get("up_to_date")), cell_text(obj.get("rollout_revision")),
                        cell_text(obj.get("limit_health") or "-")]
        if show_namespace:
            row.insert(0, cell_text(obj.get("namespace")))
        rows.append(row)
    if wide and width is not None:
        fixed = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header) - 1)]
        room = max(width - sum(fixed) - len(GAP) * len(fixed), _MIN_COMMAND_WIDTH)
        for row in rows:
            row[-1] = truncated(row[-1], room)
    return table_text(header, rows)


def object_cells(obj: Mapping[str, Any], wide: bool = False, *, now: float) -> list[str]:
    """One object's cells in `get`'s columns: NAME KIND READY STATE RESTARTS AGE, and with `wide` PID CPU MEM
    COMMAND (what `top` shows too)."""
    replicas = obj.get("replicas") or {}
    ready = replicas.get("ready")
    desired = replicas.get("desired")
    cells = [
        cell_text(obj.get("name") or obj.get("key")),
        cell_text(obj.get("kind")),
        f"{cell_text(ready)}/{cell_text(desired)}" if ready is not None or desired is not None else "-",
        cell_text(obj.get("state")),
        cell_text(obj.get("restarts", 0)),
        age_text(obj.get("created_at"), now),
    ]
    return cells + _wide_cells(obj) if wide else cells


def _wide_cells(obj: Mapping[str, Any]) -> list[str]:
    statuses = [s for s in obj.get("replica_status") or () if isinstance(s, Mapping)]
    pids = [str(s["pid"]) for s in statuses if s.get("pid") is not None]
    cpus = [s["cpu_percent"] for s in statuses if isinstance(s.get("cpu_percent"), (int, float))]
    mems = [s["memory_bytes"] for s in statuses if isinstance(s.get("memory_bytes"), (int, float))]
    command = obj.get("command")
    if command is None:
        command = dig(obj.get("spec"), "spec", "command")
    return [
        ",".join(pids) or "-",
        f"{sum(cpus):.1f}%" if cpus else "-",
        human_bytes(int(sum(mems))) if mems else "-",
        cell_text(command_text(command)),
    ]


def history_table(revisions: Sequence[Mapping[str, Any]], now: float) -> str:
    """`orchestrator history`: one row per applied revision, oldest first as given."""
    if not revisions:
        return "No revisions."
    rows = []
    for revision in revisions:
        commit = revision.get("git_commit")
        commit_text = f"{str(commit)[:7]}{'+dirty' if revision.get('git_dirty') else ''}" if commit else "-"
        rows.append(
            [
                cell_text(revision.get("number")),
                age_text(revision.get("at"), now),
                cell_text(revision.get("action")),
                cell_text(revision.get("user")),
                cell_text(revision.get("objects")),
                commit_text,
                cell_text(",".join(str(p) for p in revision.get("paths") or ())),
                cell_text(revision.get("message") or "-"),
            ]
        )
    return table_text(["REVISION", "AGE", "ACTION", "USER", "OBJECTS", "COMMIT", "PATHS", "CHANGE"], rows)




def restart_result(answer: Mapping[str, Any]) -> str:
    """`default/api restarting (2 replicas)`: the answer of one restart (`restart`, and `r` in `top`)."""
    replicas = answer.get("replicas")
    return f"{answer.get('key')} restarting ({replicas} replica{'s' if replicas != 1 else ''})"


def apply_results(results: Sequence[Mapping[str, Any]], *, dry_run: bool = False) -> str:
    """kubectl-style lines: `process/shop/api configured`, `(restart)` when replicas restart."""
    lines = []
    for result in results:
        line = f"{str(result.get('kind') or 'object').lower()}/{result.get('key')} {result.get('result')}"
        if result.get("restart"):
            line += " (restart)"
        if result.get("retried"):
            line += " (it had failed: started again)"
        held = result.get("held")
        if isinstance(held, Mapping):
            line += f" ({held_text(str(result.get('key')), held)})"
        if result.get("stopped") and result.get("result") != "pruned":
            line += f" (stopped: `orchestrator start {str(result.get('key')).split('/')[-1]}` runs it)"
        if dry_run:
            line += " (dry run)"
        lines.append(line)
    return "\n".join(lines)


def held_text(key: str, held: Mapping[str, Any]) -> str:
    """Why an apply left a process on an older rollout revision: a rollback's hold, or `rollout undo`'s."""
    why = " by `rollout undo`" if held.get("reason") == "undo" else \
        f": the manifest's revision failed before ({held.get('reason')})"
    return (f"held at rollout revision {held.get('revision')}{why}; `orchestrator rollout retry "
            f"{key.split('/')[-1]}` rolls to the manifest")
