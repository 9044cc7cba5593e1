"""PURE: what a GitSync pass should do, and what its status says, from facts gathered by the daemon.

The daemon's GitSyncs (daemon/gitsyncs.py) resolves a ref, fetches, exports and loads; everything it decides
with what it found is here: whether a resolved commit needs a sync at all (the cheap no-op, and a commit
that failed is not tried again until something changes), how long to wait before the next look, which
owned objects drifted from what the sync applied, and the health of what it owns.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

from ..core.model import ProcessSpec

SYNCED, OUT_OF_SYNC, UNKNOWN = "Synced", "OutOfSync", "Unknown"
HEALTHY, PROGRESSING, DEGRADED, MISSING, SUSPENDED = "Healthy", "Progressing", "Degraded", "Missing", "Suspended"
JITTER = 0.1  # of the interval, added at random once: hosts started together on one repo poll out of step
NO_PRUNE_LABEL = "orchestrator.io/prune"  # "false" on an object: a sync never prunes it
_DEGRADED_STATES = {"Failed", "BackOff"}


class Step(str, Enum):
    NOTHING = "nothing"  # the commit is applied and nothing drifted: Synced, no fetch
    KEEP_FAILED = "keep-failed"  # this commit failed before, and nothing changed since: not tried again
    SYNC = "sync"  # fetch, export, validate and apply it


def revision_text(ref: str, commit: str) -> str:
    """Flux's spelling of a revision: `main@sha1:<40 hex>`."""
    return f"{ref}@sha1:{commit}"


def next_step(commit: str, spec_hash: str, applied: tuple[str, str] | None, failed: tuple[str, str] | None,
              drifted: bool, force: bool) -> Step:
    """What to do with the `commit` a ref resolved to. `applied` and `failed`: (commit, spec hash) of the last
    sync applied and of the last commit that failed validation (the sync's own spec counts: a changed path
    is worth another try). As Argo CD, a failed commit is not retried on its own; `force` retries it."""
    if force:
        return Step.SYNC
    if applied == (commit, spec_hash) and not drifted:
        return Step.NOTHING
    if failed == (commit, spec_hash):
        return Step.KEEP_FAILED
    return Step.SYNC


def poll_delay(interval: float, first: bool, rng: random.Random | None = None) -> float:
    """Seconds until the next poll: the interval, and after a sync's first pass up to JITTER of it more.

    The jitter is a phase, not noise on every period (as Argo CD adds): hosts started together still poll
    out of step, and a push is never seen later than one interval after it (plus the pass)."""
    return interval * (1.0 + JITTER * (rng or random).random()) if first else interval


def retry_delay(failures: int, retry_interval: float, interval: float) -> float:
    """After `failures` transient failures in a row (1, 2, ...): retryInterval, doubling, at most interval."""
    return min(interval, retry_interval * 2.0 ** max(0, failures - 1))


def _comparable(spec: ProcessSpec) -> ProcessSpec:
    # `orchestrator stop` and `rollout restart` are the operator's holds, not a change of what git says; an
    # autoscaled pool's size is the autoscaler's.
    if spec.stopped or spec.restart_nonce or spec.autoscale is not None:
        return dataclasses.replace(spec, stopped=False, restart_nonce="",
                                   replicas=0 if spec.autoscale is not None else spec.replicas)
    return spec


def drift(applied: Mapping[str, ProcessSpec], live: Mapping[str, ProcessSpec],
          held: Iterable[str] = ()) -> list[str]:
    """How the owned objects now differ from what the sync applied, one line each: deleted, or the fields
    that changed. A process held on its stable revision after a failed rollout (`held`) is not drift:
    that is its health, and applying git's spec again would not change it."""
    skip = set(held)
    lines = []
    for key, spec in sorted(applied.items()):
        now = live.get(key)
        if now is None:
            lines.append(f"{key}: deleted")
            continue
        if key in skip or now is spec:
            continue
        a, b = _comparable(spec), _comparable(now)
        if a == b:
            continue
        changed = [f.name for f in dataclasses.fields(a) if f.compare and getattr(a, f.name) != getattr(b, f.name)]
        shown = ", ".join(_field_change(name, getattr(a, name), getattr(b, name)) for name in changed[:5])
        lines.append(f"{key}: {shown}" + (f" (+{len(changed) - 5} more)" if len(changed) > 5 else ""))
    return lines


def _field_change(name: str, old: Any, new: Any) -> str:
    if isinstance(old, (int, float, bool)) and isinstance(new, (int, float, bool)):
        return f"{name} {old} -> {new}"
    return f"{name} changed"  # never the values: env values may be secrets


def health(objects: Sequence[Mapping[str, Any]], owned: Iterable[str], rolling: Mapping[str, str],
           suspended: bool) -> str:
    """Argo CD's health of what a sync owns, from `get`'s status documents: Suspended, Missing (an owned
    object is not desired any more), Degraded (a replica failed or backs off, or a rollout failed and was
    held back: `rolling` maps keys to their rollout's phase), Progressing (not every replica ready yet),
    else Healthy."""
    if suspended:
        return SUSPENDED
    wanted = set(owned)
    found = {document["key"]: document for document in objects if document["key"] in wanted}
    if len(found) < len(wanted):
        return MISSING
    verdict = HEALTHY
    for key, document in found.items():
        phase = rolling.get(key, "Complete")
        if document["state"] in _DEGRADED_STATES or phase in ("RolledBack", "RollbackFailed"):
            return DEGRADED
        if document["kind"] == "Job":
            done = document["state"] == "Succeeded"
        else:
            replicas = document["replicas"]
            done = replicas["ready"] >= replicas["desired"] and phase == "Complete"
        if not done:
            verdict = PROGRESSING
    return verdict


def prunable(spec: ProcessSpec) -> bool:
    return dict(spec.labels).get(NO_PRUNE_LABEL, "").lower() != "false"
