"""planning/admission.py: a Queue's admission with times given, never read: strict priority, FIFO within a class,
aging (and no starvation under a stream of High Jobs), budgets by count, cpu and memory, preemption by Suspend
and Requeue (the right victims, only when it helps), resume order, the reasons `orchestrator queue` shows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.planning.admission import (
    Entry,
    Plan,
    Preemption,
    Priority,
    QueuePolicy,
    State,
    admission_order,
    admit,
    effective_priority,
    fits_ever,
    priority_class,
)

GI = 1 << 30
CRITICAL, HIGH, NORMAL, LOW, BACKGROUND = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW,
                                           Priority.BACKGROUND)
WAITING, RUNNING, SUSPENDED = State.WAITING, State.RUNNING, State.SUSPENDED


def job(key: str, priority: int = NORMAL, arrived: float = 0.0, cpu: float = 0.0, memory: int = 0,
        state: State = WAITING, started: float | None = None, preempted_by: str | None = None) -> Entry:
    if state != WAITING and started is None:
        started = arrived
    return Entry(key, priority, arrived, cpu, memory, state, started, None, preempted_by)


ONE = QueuePolicy("batch", max_concurrent=1)
TWO = QueuePolicy("batch", max_concurrent=2)
FOUR = QueuePolicy("batch", max_concurrent=4)
AGING = QueuePolicy("batch", max_concurrent=1, aging_seconds_per_level=60)
CPU = QueuePolicy("batch", capacity_cpu=3)
MEMORY = QueuePolicy("batch", capacity_memory=8 * GI)
SUSPEND_TWO = QueuePolicy("batch", max_concurrent=2, preemption=Preemption.SUSPEND)
SUSPEND_CPU = QueuePolicy("batch", capacity_cpu=2, preemption=Preemption.SUSPEND)
SUSPEND_MEMORY = QueuePolicy("batch", capacity_memory=8 * GI, preemption=Preemption.SUSPEND)
REQUEUE_MEMORY = QueuePolicy("batch", capacity_memory=8 * GI, preemption=Preemption.REQUEUE)
REQUEUE_TWO = QueuePolicy("batch", max_concurrent=2, preemption=Preemption.REQUEUE)
NEVER_TWO = QueuePolicy("batch", max_concurrent=2, preemption=Preemption.NEVER)
FULL = "the queue runs 1 of maxConcurrent 1"
FULL_TWO = "the queue runs 2 of maxConcurrent 2"

ADMITS = [
    # --- order ---
    ("strict-priority", ONE, [job("low", LOW, 0), job("high", HIGH, 5), job("normal", NORMAL, 1)], 10,
     Plan(admit=("high",), waiting=(("normal", FULL), ("low", "1 Job before it in admission order")))),
    ("fifo-within-a-class", TWO, [job("a", arrived=3), job("b", arrived=1), job("c", arrived=2)], 10,
     Plan(admit=("b", "c"), waiting=(("a", FULL_TWO),))),
    ("the-key-breaks-a-tie", ONE, [job("b", arrived=1), job("a", arrived=1)], 10,
     Plan(admit=("a",), waiting=(("b", FULL),))),
    ("everything-fits", FOUR, [job("a", LOW), job("b", HIGH)], 10, Plan(admit=("b", "a"))),
    ("no-budget-no-limit", QueuePolicy("batch"), [job(str(n), arrived=n, cpu=8, memory=64 * GI) for n in range(5)],
     10, Plan(admit=("0", "1", "2", "3", "4"))),
    ("reasons-count-the-jobs-before", ONE, [job("run", state=RUNNING), job("a", arrived=1), job("b", arrived=2),
                                            job("c", arrived=3)], 10,
     Plan(waiting=(("a", FULL), ("b", "1 Job before it in admission order"),
                   ("c", "2 Jobs before it in admission order")))),
    # --- aging ---
    ("aging-not-yet-a-level", AGING, [job("low", LOW, 0), job("normal", NORMAL, 59)], 59,
     Plan(admit=("normal",), waiting=(("low", FULL),), wake_at=60)),
    ("aging-a-level-ties-and-fifo-decides", AGING, [job("low", LOW, 0), job("normal", NORMAL, 59)], 60,
     Plan(admit=("low",), waiting=(("normal", FULL),), wake_at=119)),
    ("aging-reaches-high", AGING, [job("low", LOW, 0), job("high", HIGH, 100)], 120,
     Plan(admit=("low",), waiting=(("high", FULL),))),
    ("aging-never-beats-a-critical", AGING, [job("background", BACKGROUND, 0), job("critical", CRITICAL, 9999)],
     10_000, Plan(admit=("critical",), waiting=(("background", FULL),))),
    ("aging-off", ONE, [job("low", LOW, 0), job("normal", NORMAL, 9999)], 10_000,
     Plan(admit=("normal",), waiting=(("low", FULL),))),
    # --- budgets ---
    ("cpu", CPU, [job("run", cpu=2.5, state=RUNNING), job("b", cpu=1, arrived=1)], 10,
     Plan(waiting=(("b", "needs cpu 1, 0.5 free of 3"),))),
    ("cpu-fractions-add-up", CPU, [job(str(n), cpu=0.1, arrived=n) for n in range(30)] + [job("x", cpu=0.1, arrived=99)],
     10, Plan(admit=tuple(str(n) for n in range(30)), waiting=(("x", "needs cpu 0.1, 0 free of 3"),))),
    ("memory", MEMORY, [job("run", memory=7 * GI, state=RUNNING), job("b", memory=2 * GI, arrived=1)], 10,
     Plan(waiting=(("b", "needs memory 2Gi, 1Gi free of 8Gi"),))),
    ("both-short", QueuePolicy("batch", 1, 3, 8 * GI), [job("run", cpu=3, memory=8 * GI, state=RUNNING),
                                                        job("b", cpu=1, memory=512 << 20, arrived=1)], 10,
     Plan(waiting=(("b", ("the queue runs 1 of maxConcurrent 1; needs cpu 1, 0 free of 3; needs memory 512Mi, "
                         "0 free of 8Gi")),))),
    ("max-concurrent", FOUR, [job(str(n), state=RUNNING) for n in range(4)] + [job("w", arrived=9)], 10,
     Plan(waiting=(("w", "the queue runs 4 of maxConcurrent 4"),))),
    ("a-big-job-blocks-smaller-later-ones", CPU, [job("run", cpu=2.5, state=RUNNING), job("big", HIGH, 1, cpu=1),
                                                  job("small", NORMAL, 0, cpu=0.5)], 10,
     Plan(waiting=(("big", "needs cpu 1, 0.5 free of 3"), ("small", "1 Job before it in admission order")))),
    ("fifo-blocks-too", CPU, [job("run", cpu=2.5, state=RUNNING), job("big", arrived=1, cpu=1),
                              job("small", arrived=2, cpu=0.5)], 10,
     Plan(waiting=(("big", "needs cpu 1, 0.5 free of 3"), ("small", "1 Job before it in admission order")))),
    ("a-job-that-can-never-fit-does-not-block", CPU, [job("huge", HIGH, 0, cpu=4), job("b", arrived=1, cpu=1)], 10,
     Plan(admit=("b",), waiting=(("huge", "can never fit: requests cpu 4, more than queue batch's capacity 3"),))),
    # --- suspended Jobs ---
    ("suspended-resumes-before-waiting-of-its-level", ONE, [job("w", LOW, -10), job("s", LOW, 0, state=SUSPENDED)],
     10, Plan(resume=("s",), waiting=(("w", FULL),))),
    ("suspended-after-a-higher-class", ONE, [job("s", LOW, 0, state=SUSPENDED), job("w", NORMAL, 5)], 10,
     Plan(admit=("w",), waiting=(("s", FULL),))),
    ("a-suspended-job-holds-its-memory", MEMORY, [job("s", LOW, 0, memory=6 * GI, state=SUSPENDED),
                                                  job("w", HIGH, 5, memory=4 * GI)], 10,
     Plan(waiting=(("w", "needs memory 4Gi, 2Gi free of 8Gi"), ("s", "1 Job before it in admission order")))),
    ("resuming-needs-no-more-memory", QueuePolicy("batch", capacity_cpu=2, capacity_memory=8 * GI),
     [job("run", cpu=1, memory=2 * GI, state=RUNNING), job("s", LOW, 0, cpu=1, memory=6 * GI, state=SUSPENDED)], 10,
     Plan(resume=("s",))),
    # --- preemption ---
    ("suspend-the-lowest-class-first", replace(SUSPEND_TWO, max_concurrent=4),
     [job("low-early", LOW, 0, state=RUNNING, started=10), job("low-late", LOW, 0, state=RUNNING, started=20),
      job("background", BACKGROUND, 0, state=RUNNING, started=5), job("normal", NORMAL, 0, state=RUNNING),
      job("high", HIGH, 30)], 40,
     Plan(preempt=(("background", "high"),),
          waiting=(("high", "the queue runs 4 of maxConcurrent 4: preempting background"),))),
    ("suspend-latest-started-within-a-class", SUSPEND_TWO,
     [job("early", LOW, 0, state=RUNNING, started=10), job("late", LOW, 0, state=RUNNING, started=20),
      job("high", HIGH, 30)], 40,
     Plan(preempt=(("late", "high"),), waiting=(("high", f"{FULL_TWO}: preempting late"),))),
    ("suspend-two-when-one-is-not-enough", SUSPEND_CPU,
     [job("a", LOW, 0, cpu=1, state=RUNNING, started=1), job("b", LOW, 0, cpu=1, state=RUNNING, started=2),
      job("critical", CRITICAL, 5, cpu=2)], 10,
     Plan(preempt=(("b", "critical"), ("a", "critical")),
          waiting=(("critical", "needs cpu 2, 0 free of 2: preempting b, a"),))),
    ("suspend-only-as-many-as-needed", SUSPEND_CPU,
     [job("background", BACKGROUND, 0, cpu=0.5, state=RUNNING), job("low", LOW, 0, cpu=1, state=RUNNING),
      job("high", HIGH, 5, cpu=1.5)], 10,
     Plan(preempt=(("low", "high"),), waiting=(("high", "needs cpu 1.5, 0.5 free of 2: preempting low"),))),
    ("never-for-an-equal-class", SUSPEND_TWO,
     [job("a", NORMAL, 0, state=RUNNING), job("b", NORMAL, 0, state=RUNNING), job("w", NORMAL, 5)], 10,
     Plan(waiting=(("w", FULL_TWO),))),
    ("not-when-it-would-not-help", replace(SUSPEND_CPU, capacity_cpu=3),
     [job("low", LOW, 0, cpu=1, state=RUNNING), job("normal", NORMAL, 0, cpu=1.5, state=RUNNING),
      job("w", NORMAL, 5, cpu=2)], 10,
     Plan(waiting=(("w", ("needs cpu 2, 0.5 free of 3: preempting every running Job of a lower class would not make "
                         "room")),))),
    ("suspend-frees-no-memory", SUSPEND_MEMORY,
     [job("low", LOW, 0, memory=6 * GI, state=RUNNING), job("high", HIGH, 5, memory=4 * GI)], 10,
     Plan(waiting=(("high", ("needs memory 4Gi, 2Gi free of 8Gi: preempting every running Job of a lower class would "
                            "not make room (a suspended Job keeps its memory)")),))),
    ("requeue-frees-memory", REQUEUE_MEMORY,
     [job("low", LOW, 0, memory=6 * GI, state=RUNNING), job("high", HIGH, 5, memory=4 * GI)], 10,
     Plan(preempt=(("low", "high"),), waiting=(("high", "needs memory 4Gi, 2Gi free of 8Gi: preempting low"),))),
    ("requeue-picks-like-suspend", REQUEUE_TWO,
     [job("early", LOW, 0, state=RUNNING, started=10), job("late", LOW, 0, state=RUNNING, started=20),
      job("high", HIGH, 30)], 40,
     Plan(preempt=(("late", "high"),), waiting=(("high", f"{FULL_TWO}: preempting late"),))),
    ("never-never-preempts", NEVER_TWO,
     [job("early", LOW, 0, state=RUNNING, started=10), job("late", LOW, 0, state=RUNNING, started=20),
      job("critical", CRITICAL, 30)], 40,
     Plan(waiting=(("critical", FULL_TWO),))),
    ("aging-does-not-preempt", replace(SUSPEND_TWO, max_concurrent=1, aging_seconds_per_level=60),
     [job("normal", NORMAL, 0, state=RUNNING), job("low", LOW, 0)], 600,
     Plan(waiting=(("low", FULL),))),
    ("a-victim-still-stopping-is-not-chosen-twice", SUSPEND_TWO,
     [job("early", LOW, 0, state=RUNNING, started=10), job("late", LOW, 0, state=RUNNING, started=20,
                                                            preempted_by="high"),
      job("high", HIGH, 30)], 41,
     Plan(waiting=(("high", f"{FULL_TWO}: waiting for preempted late to stop"),))),
    ("once-suspended-the-preemptor-starts", SUSPEND_TWO,
     [job("early", LOW, 0, state=RUNNING, started=10), job("late", LOW, 0, state=SUSPENDED, started=20,
                                                            preempted_by="high"),
      job("high", HIGH, 30)], 42,
     Plan(admit=("high",), waiting=(("late", FULL_TWO),))),
    ("the-suspended-one-resumes-when-it-fits-again", SUSPEND_TWO,
     [job("early", LOW, 0, state=RUNNING, started=10), job("late", LOW, 0, state=SUSPENDED, started=20,
                                                            preempted_by="high"),
      job("next", LOW, 25)], 100,
     Plan(resume=("late",), waiting=(("next", FULL_TWO),))),
]


@pytest.mark.parametrize(("policy", "entries", "now", "expected"), [a[1:] for a in ADMITS], ids=[a[0] for a in ADMITS])
def test_admit(policy: QueuePolicy, entries: list[Entry], now: float, expected: Plan) -> None:
    assert admit(policy, entries, now) == expected


def test_the_plan_does_not_depend_on_the_order_entries_are_given_in() -> None:
    for _, policy, entries, now, expected in ADMITS:
        assert admit(policy, list(reversed(entries)), now) == expected


def test_reason_by_key() -> None:
    plan = admit(ONE, [job("a", arrived=1), job("b", arrived=2)], 10)
    assert (plan.reason("a"), plan.reason("b")) == (None, FULL)


# --- effective priority and order ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "now", "expected"), [
    (job("a", LOW, 100), 159.9, LOW),
    (job("a", LOW, 100), 160, NORMAL),
    (job("a", LOW, 100), 220, HIGH),
    (job("a", LOW, 100), 100_000, HIGH),
    (job("a", BACKGROUND, 100), 100_000, HIGH),
    (job("a", CRITICAL, 100), 100_000, CRITICAL),
    (job("a", LOW, 100, state=RUNNING), 100_000, LOW),
    (job("a", LOW, 100), 50, LOW),
    (Entry("a", LOW, 0, state=SUSPENDED, started=10, waiting_since=500), 559, LOW),
    (Entry("a", LOW, 0, state=SUSPENDED, started=10, waiting_since=500), 560, NORMAL),
], ids=["not-yet", "one-level", "two-levels", "capped-at-high", "background-capped-at-high", "critical-stays",
        "running-does-not-age", "arrived-later-than-now", "suspended-ages-from-its-suspension", "then-rises"])
def test_effective_priority(entry: Entry, now: float, expected: int) -> None:
    assert effective_priority(AGING, entry, now) == expected


def test_admission_order_is_what_admit_uses() -> None:
    entries = [job("run", state=RUNNING), job("low", LOW, 0), job("s", LOW, 5, state=SUSPENDED),
               job("high", HIGH, 9), job("n2", NORMAL, 3), job("n1", NORMAL, 3)]
    assert admission_order(ONE, entries, 10) == ["high", "n1", "n2", "s", "low"]
    assert [key for key, _ in admit(ONE, entries, 10).waiting] == ["high", "n1", "n2", "s", "low"]


def test_the_queue_wakes_when_a_blocked_job_gains_a_level() -> None:
    plan = admit(AGING, [job("run", state=RUNNING), job("low", LOW, 0), job("bg", BACKGROUND, 45)], 100)
    assert plan.wake_at == 105  # bg: 45 + 60; low rises at 120
    assert admit(AGING, [job("run", state=RUNNING), job("low", LOW, 0)], 130).wake_at is None  # High: no higher
    assert admit(ONE, [job("run", state=RUNNING), job("low", LOW, 0)], 100).wake_at is None  # no aging


def _simulate(policy: QueuePolicy, until: float) -> dict[str, float]:
    """A queue of one slot fed a High Job every 20 s, each running 30 s, and a Low Job at 0 s; when each Job
    started."""
    entries = {"low": job("low", LOW, 0.0)}
    started: dict[str, float] = {}
    now = 0.0
    while now < until:
        if now % 20 == 0:
            entries[f"high-{int(now)}"] = job(f"high-{int(now)}", HIGH, now)
        for key, entry in list(entries.items()):
            if entry.state == RUNNING and entry.started is not None and now - entry.started >= 30:
                del entries[key]
        plan = admit(policy, list(entries.values()), now)
        for key in plan.admit:
            entries[key] = replace(entries[key], state=RUNNING, started=now)
            started[key] = now
        now += 5
    return started


def test_no_starvation_a_low_job_runs_under_a_stream_of_high_ones_thanks_to_aging() -> None:
    starved = _simulate(ONE, 3600)
    assert "low" not in starved and len(starved) > 100  # without aging the stream never lets it in
    aged = _simulate(AGING, 3600)
    assert 120 <= aged["low"] <= 180, aged["low"]  # High after two levels, then FIFO among High: soon after


def test_suspend_then_resume_over_passes() -> None:
    """A Critical arrives while two Low run under maxConcurrent 2: the latest Low is frozen, the Critical runs,
    and when it is done the frozen Low thaws before a waiting Low that arrived after it."""
    entries = {"a": job("a", LOW, 0, state=RUNNING, started=1), "b": job("b", LOW, 0, state=RUNNING, started=2),
               "c": job("c", CRITICAL, 10), "d": job("d", LOW, 5)}
    plan = admit(SUSPEND_TWO, list(entries.values()), 10)
    assert plan.preempt == (("b", "c"),) and plan.admit == ()
    entries["b"] = replace(entries["b"], state=SUSPENDED, waiting_since=10, preempted_by="c")
    plan = admit(SUSPEND_TWO, list(entries.values()), 11)
    assert plan.admit == ("c",) and plan.preempt == ()
    entries["c"] = replace(entries["c"], state=RUNNING, started=11)
    assert admit(SUSPEND_TWO, list(entries.values()), 12) == Plan(waiting=(("b", FULL_TWO), ("d", ("1 Job before it "
                                                                                            "in admission order"))))
    del entries["c"]
    assert admit(SUSPEND_TWO, list(entries.values()), 50) == Plan(resume=("b",), waiting=(("d", FULL_TWO),))


# --- validation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "cpu", "memory", "expected"), [
    (QueuePolicy("batch", 4, 3, 8 * GI), 3, 8 * GI, None),
    (QueuePolicy("batch"), 1000, 1 << 50, None),
    (QueuePolicy("batch", 4, 3, 8 * GI), 3.5, 1, "requests cpu 3.5, more than queue batch's capacity 3"),
    (QueuePolicy("batch", 4, 3, 8 * GI), 1, 8 * GI + 1,
     "requests memory 8589934593, more than queue batch's capacity 8Gi"),
    (QueuePolicy("batch", 4, 3, 8 * GI), 4, 9 * GI, ("requests cpu 4, more than queue batch's capacity 3; requests "
     "memory 9Gi, more than queue batch's capacity 8Gi")),
    (QueuePolicy("batch", 0), 0, 0, "queue batch admits no Jobs (maxConcurrent 0)"),
], ids=["at-capacity", "no-budget", "too-much-cpu", "too-much-memory", "both", "no-slots"])
def test_fits_ever(policy: QueuePolicy, cpu: float, memory: int, expected: str | None) -> None:
    assert fits_ever(policy, cpu, memory) == expected


def test_priority_classes() -> None:
    assert [priority_class(name) for name in ("Critical", "High", "Normal", "Low", "Background", None)] == [
        4, 3, 2, 1, 0, 2]
