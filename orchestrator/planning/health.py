"""How close a replica is to its limits: Healthy below `warning_at` of every memory and cpu limit, Warning from
there, Critical from `critical_at` (the seeds' bands: 80 % and 100 %). Pure: the caller gives the latest sample
(cpu as percent of one core over the sampling interval, resident memory of the tree) and the limits.

Memory at 100 % of a cgroup limit is where the kernel reclaims and then kills; cpu at 100 % of a quota is
where the tree is throttled. Shown by `get -o wide` and `describe`, exported to Prometheus, and an alert
condition (`of: limit`).
"""

from __future__ import annotations

from typing import NamedTuple

HEALTHY, WARNING, CRITICAL = "Healthy", "Warning", "Critical"
BANDS = (HEALTHY, WARNING, CRITICAL)  # in order of severity (their Prometheus values are their indexes)
WARNING_AT = 0.8
CRITICAL_AT = 1.0


class LimitHealth(NamedTuple):
    band: str
    resource: str  # "memory" or "cpu": the one nearest its limit
    fraction: float  # of that limit in use

    @property
    def detail(self) -> str:
        return f"{self.resource} at {self.fraction * 100:.0f}% of its limit"


def limit_health(cpu_percent: float | None, memory_bytes: int | None, cpu_limit: float | None,
                 memory_limit: int | None, warning_at: float = WARNING_AT,
                 critical_at: float = CRITICAL_AT) -> LimitHealth | None:
    """The band of the resource nearest its limit; None when neither memory nor cpu is both limited and
    sampled (no sample yet, or no limit)."""
    fractions = []
    if memory_limit and memory_bytes is not None:
        fractions.append((memory_bytes / memory_limit, "memory"))
    if cpu_limit and cpu_percent is not None:
        fractions.append((cpu_percent / 100 / cpu_limit, "cpu"))
    if not fractions:
        return None
    fraction, resource = max(fractions)
    band = CRITICAL if fraction >= critical_at else WARNING if fraction >= warning_at else HEALTHY
    return LimitHealth(band, resource, fraction)


def worst(bands: list[str]) -> str | None:
    """The most severe of some replicas' bands (None for none)."""
    return max(bands, key=BANDS.index) if bands else None
