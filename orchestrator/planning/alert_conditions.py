"""What an AlertRule sees of the replicas it selects at one evaluation: which breach it now (with the value
shown in `{{value}}`), and, for a replica that has an alert already, whether it breaches, does not, cannot be
judged yet (it runs but has no sample), or is gone (planning/alerts.py decides each alert's state from these).

Built for a pass over many replicas and rules: `snapshot` reads each desired replica once per pass, then each
rule scans its selection with one comprehension (`breaching`); the detailed `judge` runs only for the few
replicas that have an alert. Pure: given the desired specs, the reconciler's records and waits, each running
replica's latest sample, and each replica's unexpected restarts within the rule's window (counted by the
caller from records' `restarts`, which counts only restarts after an exit that was not asked for: an apply,
a `restart` or a scale is not an incident). Nothing here reads a clock or /proc.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from ..core.alerting import CPU, DOWN, LIMIT_HEALTH, MEMORY, NOT_READY, OF_BYTES, OF_LIMIT, RESTARTS, AlertRuleSpec
from ..core.model import Phase, ProcessSpec, ReplicaId, ReplicaRecord
from .health import BANDS, CRITICAL_AT, WARNING_AT, limit_health
from .plan import Waiting
from .policy import is_ready
from .status import replica_phase

DOWN_PHASES = (Phase.BACKOFF, Phase.FAILED)


class Usage(NamedTuple):
    cpu_percent: float | None  # of one core over the sampling interval (None: one sample only so far)
    memory_bytes: int


class Replica(NamedTuple):
    """One desired replica as a pass sees it."""

    rid: ReplicaId
    spec: ProcessSpec
    running: bool
    down: bool  # BackOff or Failed
    ready: bool
    cpu: float | None  # percent of one core; None without a sample (or with the first one only)
    memory: int | None  # resident bytes of its tree; None without a sample


UNJUDGED = "unjudged"  # it runs, but the sample its rule needs is not there yet: its alert keeps its state


def snapshot(specs: Mapping[str, ProcessSpec], records: Mapping[ReplicaId, ReplicaRecord],
             waiting: Mapping[ReplicaId, Waiting], latest: Callable[[ReplicaId], Usage | None],
             keys: Iterable[str], conditions: set[str]) -> dict[ReplicaId, Replica]:
    """Every desired replica of the processes `keys` (those some rule watches) not held by `stop` (what the
    user stopped is not an incident); only what `conditions` need is looked at (the rest reads False/None)."""
    phases, readiness = DOWN in conditions, NOT_READY in conditions
    usage_needed = bool(conditions & {CPU, MEMORY, LIMIT_HEALTH})
    table: dict[ReplicaId, Replica] = {}
    for key in keys:
        spec = specs.get(key)
        if spec is None or spec.stopped:
            continue
        for index in range(spec.replicas):
            rid = ReplicaId(key, index)
            record = records.get(rid)
            running = record is not None and record.process is not None
            usage = latest(rid) if running and usage_needed else None
            table[rid] = Replica(rid, spec, running,
                                 phases and replica_phase(record, waiting.get(rid)) in DOWN_PHASES,
                                 readiness and running and record is not None and is_ready(spec, record),
                                 usage.cpu_percent if usage is not None else None,
                                 usage.memory_bytes if usage is not None else None)
    return table


def selection(rule: AlertRuleSpec, specs: Mapping[str, ProcessSpec]) -> list[str]:
    """The keys of the processes a rule watches: `process`, or those of `match_labels` within its namespace
    (the same until the desired specs change: the caller keeps it that long)."""
    if rule.process is not None:
        return [rule.process] if rule.process in specs else []
    wanted = set(rule.match_labels)
    return [key for key, spec in specs.items() if spec.namespace == rule.namespace and wanted <= set(spec.labels)]


def breaching(rule: AlertRuleSpec, replicas: Iterable[Replica], restarts: Mapping[ReplicaId, int],
              ) -> dict[ReplicaId, float]:
    """The replicas that breach the rule now, with their values; `restarts`: each replica's unexpected restarts
    within the rule's window (those with none may be left out)."""
    condition, above = rule.condition, (rule.above or 0)
    if condition == DOWN:
        return {r.rid: 1.0 for r in replicas if r.down}
    if condition == NOT_READY:
        return {r.rid: 1.0 for r in replicas if r.running and not r.ready}
    if condition == RESTARTS:
        limit = rule.more_than or 0
        if not restarts:
            return {}
        return {r.rid: float(restarts[r.rid]) for r in replicas if restarts.get(r.rid, 0) > limit}
    if condition == CPU and rule.of != OF_LIMIT:
        threshold = above * 100
        return {r.rid: r.cpu for r in replicas if r.cpu is not None and r.cpu >= threshold}
    if condition == MEMORY and rule.of == OF_BYTES:
        return {r.rid: float(r.memory) for r in replicas if r.memory is not None and r.memory >= above}
    found = {}
    if condition == LIMIT_HEALTH:  # the band of the resource nearest its limit (health.py), written out: hot
        at = CRITICAL_AT if rule.band == "Critical" else WARNING_AT
        for r in replicas:
            limits = r.spec.limits
            if r.memory is None or not (limits.memory_bytes or limits.cpu):
                continue
            share = max(r.memory / limits.memory_bytes if limits.memory_bytes else 0.0,
                        r.cpu / 100 / limits.cpu if limits.cpu and r.cpu is not None else 0.0)
            if share >= at:
                found[r.rid] = round(share * 100, 1)
        return found
    for replica in replicas:  # relative to a limit: a little more per replica
        limits = replica.spec.limits
        if replica.memory is None or not (limits.memory_bytes or limits.cpu):
            continue  # no sample, or no limit: nothing to breach
        value = _value(rule, replica)
        if value is not None and value[0]:
            found[replica.rid] = value[1]
    return found


def judge(rule: AlertRuleSpec, replica: Replica | None, restarts: Mapping[ReplicaId, int],
          ) -> tuple[bool | None, float | None] | str:
    """One replica that has an alert: (breaching, value); (None, None) when it is gone (its series ended);
    UNJUDGED when it runs without the sample the rule needs yet (just started, or adopted after a restart)."""
    if replica is None:
        return None, None
    condition = rule.condition
    if condition == DOWN:
        return replica.down, 1.0 if replica.down else 0.0
    if condition == RESTARTS:
        count = restarts.get(replica.rid, 0)
        return count > (rule.more_than or 0), float(count)
    if not replica.running:
        return None, None  # nothing runs: no cpu, no memory, no readiness (the `down` rule says why)
    if condition == NOT_READY:
        return not replica.ready, 0.0 if replica.ready else 1.0
    value = _value(rule, replica)
    if value is not None:
        return value
    limits = replica.spec.limits
    if replica.memory is None:
        return UNJUDGED  # no sample at all yet
    if replica.cpu is None and (condition == CPU or condition == LIMIT_HEALTH and not limits.memory_bytes):
        return UNJUDGED  # the first sample only: no cpu yet
    return None, None  # sampled, and the rule cannot apply (no such limit): its series ends


def _value(rule: AlertRuleSpec, replica: Replica) -> tuple[bool, float] | None:
    """(breaching, value) of a cpu, memory or limitHealth rule; None when it cannot be told (no sample, no
    such limit)."""
    limits, above = replica.spec.limits, (rule.above or 0)
    if rule.condition == CPU:
        if replica.cpu is None:
            return None
        if rule.of == OF_LIMIT:
            if not limits.cpu:
                return None
            percent = replica.cpu / limits.cpu  # percent of the limit
        else:
            percent = replica.cpu
        return percent >= above * 100, percent
    if rule.condition == MEMORY:
        if replica.memory is None:
            return None
        if rule.of == OF_BYTES:
            return replica.memory >= above, float(replica.memory)
        if not limits.memory_bytes:
            return None
        percent = 100.0 * replica.memory / limits.memory_bytes
        return percent >= above * 100, percent
    if rule.condition == LIMIT_HEALTH:
        health = limit_health(replica.cpu, replica.memory, limits.cpu, limits.memory_bytes)
        if health is None:
            return None
        return BANDS.index(health.band) >= BANDS.index(rule.band or "Warning"), round(health.fraction * 100, 1)
    raise ValueError(f"unknown condition {rule.condition!r}")
