"""PURE: how big an autoscaled pool should be, from its recent CPU samples. No clock, no I/O.

Horizontal-pod-autoscaler arithmetic: the pool wants ceil(size x average CPU / target), within min and
max. It grows once the average has stayed over the target for a whole scaleUpSeconds window, and shrinks to
the highest wish of a whole scaleDownSeconds window once every wish in it was below the current size. The
history starts afresh at each change of size, so a full window always separates two changes: the cooldown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from ..core.model import Autoscale, ProcessSpec


def recommend(auto: Autoscale, current: int, history: Sequence[tuple[float, float]], now: float) -> int:
    """The pool's size after looking at `history`: (time, average CPU percent per replica), oldest first,
    since the pool last changed size."""
    if current < auto.min or current > auto.max:
        return max(auto.min, min(auto.max, current))
    if not history or current == 0:
        return current

    def wish(average: float) -> int:
        return max(auto.min, min(auto.max, math.ceil(current * average / auto.target_cpu_percent)))

    covered = now - history[0][0]
    recent_up = [average for at, average in history if at >= now - auto.scale_up_seconds]
    if covered >= auto.scale_up_seconds and recent_up and all(a > auto.target_cpu_percent for a in recent_up):
        return min(auto.max, max(current + 1, wish(sum(recent_up) / len(recent_up))))
    recent_down = [wish(average) for at, average in history if at >= now - auto.scale_down_seconds]
    if covered >= auto.scale_down_seconds and recent_down and max(recent_down) < current:
        return max(recent_down)
    return current


def keep_pool_size(new: ProcessSpec, old: ProcessSpec | None) -> ProcessSpec:
    """A re-applied autoscaled pool keeps the size the autoscaler gave it (within the new min and max)
    instead of falling back to its minimum."""
    if new.autoscale is None or old is None or old.autoscale is None:
        return new
    size = max(new.autoscale.min, min(new.autoscale.max, old.replicas))
    return new if size == new.replicas else replace(new, replicas=size)
