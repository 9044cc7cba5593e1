"""The `rollout` views: a status document as one kubectl-style line, the rollout history table, and the one
line each rollout verb prints.

A status line says only what changes when the rollout moves (never a time), so that `rollout status -w` can
print a line exactly when it differs from the last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .common import ago_text, as_mapping, cell_text, table_text

# The phases of a status document that end a wait, and whether the rollout got where the manifest asked.
DONE = "Complete"
ENDED = frozenset({"RolledBack", "Paused", "RollbackFailed"})


def status_line(status: Mapping[str, Any]) -> str:
    """`Waiting for rollout to finish: 2 of 4 updated replicas are available...`, `rollout of default/web
    complete: revision 3`, `rolled back to revision 2 (held): NewReplicaFailed`..."""
    key = cell_text(status.get("key"))
    name = key.rsplit("/", 1)[-1]
    phase = status.get("phase")
    progress = as_mapping(status.get("progress"))
    held = as_mapping(status.get("held"))
    failed = as_mapping(status.get("rollout")).get("failed")
    where = progress_text(progress)
    if phase == DONE:
        return f"rollout of {key} complete: revision {cell_text(status.get('revision'))}"
    if phase == "Progressing":
        return f"Waiting for rollout to finish: {where}..." if where else "Waiting for rollout to finish..."
    if phase == "RollingBack":
        because = f" ({cell_text(held.get('reason'))})" if held.get("reason") else ""
        return (f"Rolling back to revision {cell_text(held.get('revision'))}{because}"
                + (f": {where}..." if where else "..."))
    if phase == "RolledBack":
        return (f"rolled back to revision {cell_text(held.get('revision'))} (held): {cell_text(held.get('reason'))}; "
                f"the manifest's revision is rolled again once it changes, or by `orchestrator rollout retry {name}`")
    if phase == "RollbackFailed":
        return (f"rollback of {key} to revision {cell_text(held.get('revision'))} failed ({cell_text(failed)}): "
                "paused, nothing more is done by itself" + (f"; {where}" if where else ""))
    if phase == "Paused" and failed:
        return (f"rollout of {key} failed ({cell_text(failed)}) and is paused (onFailure: Pause)"
                + (f": {where}" if where else "") + f"; `orchestrator rollout retry {name}` rolls again")
    if phase == "Paused":
        return (f"rollout of {key} paused" + (f": {where}" if where else "")
                + f"; `orchestrator rollout resume {name}` lets it go on")
    return f"rollout of {key}: {cell_text(phase)}"


def progress_text(progress: Mapping[str, Any]) -> str:
    """Where a rollout stands, in kubectl's order: replicas still to update, old ones still to end, new ones
    not yet available. Empty when the document has no progress."""
    counts = [n for n in (progress.get(name) for name in ("replicas", "updated", "available", "old"))
              if isinstance(n, int)]
    if len(counts) != 4:
        return ""
    replicas, updated, available, old = counts
    if updated < replicas:
        return f"{updated} out of {replicas} new replicas have been updated"
    if old > 0:
        return f"{old} old replica{' is' if old == 1 else 's are'} pending termination"
    return f"{available} of {replicas} updated replicas are available"


def rollout_history_table(revisions: Sequence[Mapping[str, Any]], now: float) -> str:
    """`orchestrator rollout history NAME`: one row per rollout revision, oldest first as given."""
    if not revisions:
        return "No rollout revisions."
    rows = []
    for revision in revisions:
        commit = revision.get("git_commit")
        rows.append([
            cell_text(revision.get("number")),
            cell_text(revision.get("hash")),
            cell_text(revision.get("revision")),
            cell_text(str(commit)[:7] if commit else None),
            ago_text(revision.get("at"), now),
            cell_text(revision.get("status")),
            "yes" if revision.get("stable") else "no",
            cell_text(revision.get("reason")),
        ])
    return table_text(["REVISION", "HASH", "DESIRED-REV", "COMMIT", "CREATED", "STATUS", "STABLE", "REASON"], rows)


def verb_line(action: str, answer: Mapping[str, Any]) -> str:
    """The line of `rollout undo|retry|pause|resume|restart`, from the daemon's answer."""
    key = cell_text(answer.get("key"))
    name = key.rsplit("/", 1)[-1]
    if action == "undo":
        return (f"{key} rolling back to revision {cell_text(answer.get('revision'))}, held there until the manifest "
                f"changes or `orchestrator rollout retry {name}`")
    if action == "retry":
        return f"{key} rolling toward the manifest's revision again"
    if action in ("pause", "resume"):
        if answer.get("changed"):
            return f"{key} rollout {'paused' if answer.get('paused') else 'resumed'}"
        return f"{key} rollout {'already paused' if answer.get('paused') else 'was not paused'}"
    if action == "restart":
        return (f"{key} restarting: every replica replaced as its strategy rolls (desired-state revision "
                f"{cell_text(answer.get('revision'))})")
    return f"{key} {cell_text(action)}"
