"""The autoscaler's arithmetic as a table, and a real pool that grows under load and shrinks after it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import wait_for
from harness import Harness

from orchestrator.core.events import EventType
from orchestrator.core.model import Autoscale, Backoff, ProcessSpec, Shutdown
from orchestrator.planning.autoscale import keep_pool_size, recommend

AUTO = Autoscale(min=1, max=4, target_cpu_percent=50, scale_up_seconds=3, scale_down_seconds=6)


def steady(average: float, seconds: float, now: float = 100.0) -> list[tuple[float, float]]:
    return [(now - seconds + i, average) for i in range(int(seconds) + 1)]


@pytest.mark.parametrize(
    ("current", "history", "size"),
    [
        (1, [], 1),  # nothing measured yet
        (1, steady(90, 3), 2),  # over the target for the whole up window: ceil(1 x 90 / 50)
        (2, steady(200, 3), 4),  # far over: ceil(2 x 200 / 50) = 8, capped at max
        (4, steady(200, 3), 4),  # at max already
        (1, steady(90, 2), 1),  # over, but not for a whole window yet (the cooldown after a change)
        (3, steady(10, 6), 1),  # under for the whole down window: ceil(3 x 10 / 50) = 1
        (3, steady(10, 5), 3),  # under, but not for the whole down window
        (3, steady(45, 6), 3),  # ceil(3 x 45 / 50) = 3: not too big
        (0, steady(10, 6), 1),  # below min: to min at once
        (9, [], 4),  # above max: to max at once
    ],
)
def test_recommend(current: int, history: list[tuple[float, float]], size: int) -> None:
    assert recommend(AUTO, current, history, 100.0) == size


def test_a_spike_inside_the_up_window_does_not_grow_the_pool() -> None:
    history = [*steady(90, 3)]
    history[1] = (history[1][0], 20.0)
    assert recommend(AUTO, 1, history, 100.0) == 1


def test_reapplying_keeps_the_size_the_autoscaler_gave() -> None:
    old = ProcessSpec(name="pool", command=("x",), autoscale=AUTO, replicas=3)
    new = ProcessSpec(name="pool", command=("x",), autoscale=AUTO, replicas=1)
    assert keep_pool_size(new, old).replicas == 3
    smaller = ProcessSpec(name="pool", command=("x",), autoscale=Autoscale(1, 2, 50), replicas=1)
    assert keep_pool_size(smaller, old).replicas == 2




def test_a_pool_grows_under_load_and_shrinks_after(harness: Harness, tmp_path: Path) -> None:
    flag = tmp_path / "burn"
    flag.touch()
    # Each replica burns a core while the flag file exists, then idles.
    code = (f"import os, time\nwhile True:\n    if os.path.exists({str(flag)!r}):\n"
            "        end = time.monotonic() + 0.05\n        while time.monotonic() < end: pass\n"
            "    else:\n        time.sleep(0.05)")
    auto = Autoscale(min=1, max=2, target_cpu_percent=30, scale_up_seconds=0.6, scale_down_seconds=0.8)
    spec = ProcessSpec(name="pool", command=(sys.executable, "-c", code), autoscale=auto, replicas=1,
                       backoff=Backoff(0.1, 0.1), shutdown=Shutdown("SIGTERM", 1))
    harness.apply([spec])
    wait_for(lambda: harness.pid("pool", 1), timeout=15, what="the pool to grow to 2")
    scaled = harness.of(EventType.SCALED, "pool")
    assert scaled and "1 -> 2" in scaled[0].message
    flag.unlink()
    wait_for(lambda: len(harness.records()) == 1, timeout=15, what="the pool to shrink back to 1")
    sizes = [e.message.split(": ")[0] for e in harness.of(EventType.SCALED, "pool")]
    assert sizes == ["1 -> 2", "2 -> 1"], sizes  # never beyond max, never below min
