"""planning/cron.py: a CronJob's schedule with times given, never read: next times across daylight-saving changes
(Europe/Berlin, 2026: 03-29 02:00 CET -> 03:00 CEST, 10-25 03:00 CEST -> 02:00 CET), what is due after
downtime (one catch-up at most, within startingDeadlineSeconds, misses counted to 100), concurrency policies,
run names and history pruning."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from orchestrator.planning.cron import (
    MAX_CRONJOB_NAME,
    Concurrency,
    ConcurrencyPolicy,
    Decision,
    Schedule,
    Verdict,
    concurrency,
    due,
    next_run,
    previous_run,
    prune,
    resolve_zone,
    run_name,
    schedule_problems,
)

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(text: str) -> float:
    """A wall time in Berlin that occurs once (in the repeated hour of a fall-back use utc())."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def shown(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, BERLIN).isoformat()


DAILY = Schedule(cron="30 2 * * *", time_zone="Europe/Berlin")
HOURLY = Schedule(cron="30 * * * *", time_zone="Europe/Berlin")
QUARTERLY = Schedule(cron="*/15 * * * *", time_zone="Europe/Berlin")
EVERY_MINUTE = Schedule(cron="* * * * *")
ANCHOR = 1_000_000.5  # a creation time that is not a whole second
EVERY_MINUTE_FROM_ANCHOR = Schedule(interval_seconds=60)

# --- the next time ----------------------------------------------------------------------------------------------

NEXT = [
    ("daily-on-an-ordinary-day", DAILY, berlin("2026-06-01 12:00"), "2026-06-02T02:30:00+02:00"),
    ("daily-strictly-after", DAILY, berlin("2026-06-02 02:30"), "2026-06-03T02:30:00+02:00"),
    ("daily-a-fraction-before", DAILY, berlin("2026-06-02 02:29:59.5"), "2026-06-02T02:30:00+02:00"),
    # 02:30 does not exist on 2026-03-29: it runs when the clock jumps past it, at 03:00 CEST (cronsim, ISC cron).
    ("spring-forward-runs-at-the-jump", DAILY, berlin("2026-03-29 00:00"), "2026-03-29T03:00:00+02:00"),
    ("spring-forward-then-the-next-day", DAILY, berlin("2026-03-29 03:00"), "2026-03-30T02:30:00+02:00"),
    # 02:30 occurs twice on 2026-10-25: it runs the first time (CEST), never at 02:30 CET.
    ("fall-back-the-first-of-the-two", DAILY, berlin("2026-10-25 00:00"), "2026-10-25T02:30:00+02:00"),
    ("fall-back-not-the-second", DAILY, utc("2026-10-25 00:30"), "2026-10-26T02:30:00+01:00"),
    ("fall-back-from-inside-the-repeated-hour", DAILY, utc("2026-10-25 01:10"), "2026-10-26T02:30:00+01:00"),
    # Not at fixed hours: real time. Minute 30 of every hour: no 02:30 in the spring, both in the autumn.
    ("hourly-spring-forward-skips-the-missing-hour", HOURLY, berlin("2026-03-29 01:30"), "2026-03-29T03:30:00+02:00"),
    ("hourly-fall-back-first-0230", HOURLY, berlin("2026-10-25 01:30"), "2026-10-25T02:30:00+02:00"),
    ("hourly-fall-back-second-0230", HOURLY, utc("2026-10-25 00:30"), "2026-10-25T02:30:00+01:00"),
    ("quarter-hours-in-the-repeated-hour", QUARTERLY, utc("2026-10-25 00:50"), "2026-10-25T02:00:00+01:00"),
    ("utc-when-no-zone", Schedule(cron="0 8 * * *"), utc("2026-06-01 09:00"), "2026-06-02T10:00:00+02:00"),
    ("own-zone", Schedule(cron="0 9 * * *", time_zone="America/New_York"), utc("2026-06-01 12:00"),
     "2026-06-01T15:00:00+02:00"),
    ("leap-day", Schedule(cron="0 0 29 2 *", time_zone="Europe/Berlin"), berlin("2026-03-01 00:00"),
     "2028-02-29T00:00:00+01:00"),
]


@pytest.mark.parametrize(("schedule", "after", "expected"), [n[1:] for n in NEXT], ids=[n[0] for n in NEXT])
def test_next_run(schedule: Schedule, after: float, expected: str) -> None:
    assert shown(next_run(schedule, after, 0.0)) == expected


INTERVALS = [
    ("first-one-interval-after-creation", ANCHOR, ANCHOR + 60),
    ("before-creation", ANCHOR - 500, ANCHOR + 60),
    ("strictly-after", ANCHOR + 60, ANCHOR + 120),
    ("a-fraction-before", ANCHOR + 119.9, ANCHOR + 120),
    ("far-on", ANCHOR + 60 * 1_000_000 + 1, ANCHOR + 60 * 1_000_001),
]


@pytest.mark.parametrize(("after", "expected"), [i[1:] for i in INTERVALS], ids=[i[0] for i in INTERVALS])
def test_an_interval_is_anchored_at_creation(after: float, expected: float) -> None:
    assert next_run(EVERY_MINUTE_FROM_ANCHOR, after, ANCHOR) == expected


PREVIOUS = [
    ("daily-itself", DAILY, berlin("2026-06-02 02:30"), "2026-06-02T02:30:00+02:00"),
    ("daily-a-second-before", DAILY, berlin("2026-06-02 02:29:59"), "2026-06-01T02:30:00+02:00"),
    ("spring-forward", DAILY, berlin("2026-03-29 12:00"), "2026-03-29T03:00:00+02:00"),
    # At 02:10 CET the 02:30 CEST of 40 minutes before is the latest: cronsim counting back in wall time misses it.
    ("inside-the-repeated-hour", DAILY, utc("2026-10-25 01:10"), "2026-10-25T02:30:00+02:00"),
    ("after-the-repeated-hour", DAILY, berlin("2026-10-25 12:00"), "2026-10-25T02:30:00+02:00"),
]


@pytest.mark.parametrize(("schedule", "at", "expected"), [p[1:] for p in PREVIOUS], ids=[p[0] for p in PREVIOUS])
def test_previous_run(schedule: Schedule, at: float, expected: str) -> None:
    assert shown(previous_run(schedule, at, 0.0)) == expected


def test_no_interval_run_before_the_first() -> None:
    assert previous_run(EVERY_MINUTE_FROM_ANCHOR, ANCHOR + 59.9, ANCHOR) is None
    assert previous_run(EVERY_MINUTE_FROM_ANCHOR, ANCHOR + 60, ANCHOR) == ANCHOR + 60


@pytest.mark.parametrize(("day", "expected"), [
    ("2026-03-28", ["2026-03-28T02:30:00+01:00"]),
    ("2026-03-29", ["2026-03-29T03:00:00+02:00"]),
    ("2026-10-25", ["2026-10-25T02:30:00+02:00"]),
    ("2026-10-26", ["2026-10-26T02:30:00+01:00"]),
], ids=["before-spring-forward", "spring-forward-once", "fall-back-once", "after-fall-back"])
def test_a_daemon_that_sleeps_until_next_at_runs_a_daily_schedule_once_a_day(day: str, expected: list[str]) -> None:
    """The loop as the daemon runs it: wake at next_at, ask due, record last_scheduled."""
    start = datetime.fromisoformat(day).replace(tzinfo=BERLIN)
    now, last, runs = start.timestamp(), None, []
    end = now + 86400 - 3600 * (day == "2026-03-29") + 3600 * (day == "2026-10-25")  # the day's own length
    while now < end:
        decision = due(DAILY, last, start.timestamp() - 3600, now)
        if decision.run is not None:
            runs.append(decision.run)
        last = decision.last_scheduled
        assert decision.next_at is not None and decision.next_at > now
        now = decision.next_at
    assert [shown(run) for run in runs] == expected


# --- what is due ------------------------------------------------------------------------------------------------

T0 = utc("2026-06-01 12:00")  # on a minute
DEADLINED = Schedule(cron="0 * * * *", starting_deadline_seconds=300)  # hourly: a run can be older than 300 s
DUE = [
    ("never-ran-nothing-due-yet", EVERY_MINUTE, None, T0 + 5, T0 + 30,
     Decision(Verdict.WAIT, None, None, 0, False, "", T0 + 60)),
    ("never-ran-first-time", EVERY_MINUTE, None, T0 + 5, T0 + 60,
     Decision(Verdict.RUN, T0 + 60, T0 + 60, 0, False, "", T0 + 120)),
    ("on-time", EVERY_MINUTE, T0, T0 - 600, T0 + 60, Decision(Verdict.RUN, T0 + 60, T0 + 60, 0, False, "", T0 + 120)),
    ("a-little-late", EVERY_MINUTE, T0, T0 - 600, T0 + 61.5,
     Decision(Verdict.RUN, T0 + 60, T0 + 60, 0, False, "", T0 + 120)),
    ("already-ran", EVERY_MINUTE, T0 + 60, T0 - 600, T0 + 61.5,
     Decision(Verdict.WAIT, None, T0 + 60, 0, False, "", T0 + 120)),
    ("the-clock-went-back", EVERY_MINUTE, T0 + 600, T0 - 600, T0 + 30,
     Decision(Verdict.WAIT, None, T0 + 600, 0, False, "", T0 + 660)),
    ("downtime-one-catch-up-without-deadline", EVERY_MINUTE, T0, T0 - 600, T0 + 600 + 30,
     Decision(Verdict.RUN, T0 + 600, T0 + 600, 9, False, "missed 9 scheduled runs since 2026-06-01 12:00 UTC: only "
              "the last, at 2026-06-01 12:10 UTC, runs", T0 + 660)),
    ("downtime-one-missed", EVERY_MINUTE, T0, T0 - 600, T0 + 120,
     Decision(Verdict.RUN, T0 + 120, T0 + 120, 1, False, "missed 1 scheduled run since 2026-06-01 12:00 UTC: only "
              "the last, at 2026-06-01 12:02 UTC, runs", T0 + 180)),
    ("downtime-catch-up-inside-the-deadline", DEADLINED, T0, T0 - 600, T0 + 3 * 3600 + 299,
     Decision(Verdict.RUN, T0 + 3 * 3600, T0 + 3 * 3600, 2, False, "missed 2 scheduled runs since 2026-06-01 12:00 "
              "UTC: only the last, at 2026-06-01 15:00 UTC, runs", T0 + 4 * 3600)),
    ("deadline-to-the-second", DEADLINED, T0, T0 - 600, T0 + 3600 + 300,
     Decision(Verdict.RUN, T0 + 3600, T0 + 3600, 0, False, "", T0 + 7200)),
    ("downtime-beyond-the-deadline", DEADLINED, T0, T0 - 600, T0 + 3 * 3600 + 301,
     Decision(Verdict.MISSED, None, T0 + 3 * 3600, 3, False, "missed 3 scheduled runs, the last at 2026-06-01 "
              "15:00 UTC, 301 s ago: more than startingDeadlineSeconds 300, so none runs", T0 + 4 * 3600)),
    ("one-run-beyond-the-deadline", Schedule(cron="0 * * * *", starting_deadline_seconds=0), T0, T0 - 600,
     T0 + 3600.5,
     Decision(Verdict.MISSED, None, T0 + 3600, 1, False, "missed 1 scheduled run, the last at 2026-06-01 13:00 UTC, "
              "0 s ago: more than startingDeadlineSeconds 0, so none runs", T0 + 7200)),
    ("exactly-100-missed", EVERY_MINUTE, T0, T0 - 600, T0 + 101 * 60,
     Decision(Verdict.RUN, T0 + 101 * 60, T0 + 101 * 60, 100, False, "missed 100 scheduled runs since 2026-06-01 "
              "12:00 UTC: only the last, at 2026-06-01 13:41 UTC, runs", T0 + 102 * 60)),
    ("more-than-100-missed", EVERY_MINUTE, T0, T0 - 600, T0 + 102 * 60,
     Decision(Verdict.RUN, T0 + 102 * 60, T0 + 102 * 60, 100, True, "missed more than 100 scheduled runs since "
              "2026-06-01 12:00 UTC: only the last, at 2026-06-01 13:42 UTC, runs", T0 + 103 * 60)),
    ("a-year-down-beyond-the-deadline", DEADLINED, T0, T0 - 600, T0 + 365 * 86400 + 400,
     Decision(Verdict.MISSED, None, T0 + 365 * 86400, 100, True, "missed more than 100 scheduled runs, the last at "
              "2027-06-01 12:00 UTC, 400 s ago: more than startingDeadlineSeconds 300, so none runs",
              T0 + 365 * 86400 + 3600)),
    ("suspended", Schedule(cron="* * * * *", suspend=True), T0, T0 - 600, T0 + 600,
     Decision(Verdict.SUSPENDED, None, T0, 0, False, "", None)),
    ("resumed-after-a-suspension", EVERY_MINUTE, T0, T0 - 600, T0 + 180,
     Decision(Verdict.RUN, T0 + 180, T0 + 180, 2, False, "missed 2 scheduled runs since 2026-06-01 12:00 UTC: only "
              "the last, at 2026-06-01 12:03 UTC, runs", T0 + 240)),
    ("interval-first-run", EVERY_MINUTE_FROM_ANCHOR, None, ANCHOR, ANCHOR + 60,
     Decision(Verdict.RUN, ANCHOR + 60, ANCHOR + 60, 0, False, "", ANCHOR + 120)),
    ("interval-not-yet", EVERY_MINUTE_FROM_ANCHOR, ANCHOR + 60, ANCHOR, ANCHOR + 119,
     Decision(Verdict.WAIT, None, ANCHOR + 60, 0, False, "", ANCHOR + 120)),
    ("interval-downtime", EVERY_MINUTE_FROM_ANCHOR, ANCHOR + 60, ANCHOR, ANCHOR + 60 * 50 + 1,
     Decision(Verdict.RUN, ANCHOR + 3000, ANCHOR + 3000, 48, False, "missed 48 scheduled runs since 1970-01-12 "
              "13:47:40 UTC: only the last, at 1970-01-12 14:36:40 UTC, runs", ANCHOR + 3060)),
    ("interval-more-than-100", Schedule(interval_seconds=1), None, ANCHOR, ANCHOR + 1000.5,
     Decision(Verdict.RUN, ANCHOR + 1000, ANCHOR + 1000, 100, True, "missed more than 100 scheduled runs since "
              "1970-01-12 13:46:40 UTC: only the last, at 1970-01-12 14:03:20 UTC, runs", ANCHOR + 1001)),
    ("down-over-the-spring-forward-night", DAILY, berlin("2026-03-28 02:30"), 0.0, berlin("2026-03-29 03:00:05"),
     Decision(Verdict.RUN, berlin("2026-03-29 03:00"), berlin("2026-03-29 03:00"), 0, False, "",
              berlin("2026-03-30 02:30"))),
    ("not-twice-on-the-fall-back-night", DAILY, utc("2026-10-25 00:30"), 0.0, utc("2026-10-25 01:30:05"),
     Decision(Verdict.WAIT, None, utc("2026-10-25 00:30"), 0, False, "", berlin("2026-10-26 02:30"))),
    ("missed-shown-in-the-zone", DAILY, berlin("2026-10-23 02:30"), 0.0, berlin("2026-10-26 12:00"),
     Decision(Verdict.RUN, berlin("2026-10-26 02:30"), berlin("2026-10-26 02:30"), 2, False, "missed 2 scheduled "
              "runs since 2026-10-23 02:30 CEST: only the last, at 2026-10-26 02:30 CET, runs",
              berlin("2026-10-27 02:30"))),
]


@pytest.mark.parametrize(("schedule", "last", "created", "now", "expected"), [d[1:] for d in DUE],
                         ids=[d[0] for d in DUE])
def test_due(schedule: Schedule, last: float | None, created: float, now: float, expected: Decision) -> None:
    assert due(schedule, last, created, now) == expected


def test_what_was_dealt_with_is_not_due_again() -> None:
    """Recording last_scheduled makes the next look a Wait, however late: a backlog is never replayed."""
    for schedule, last, now in [(EVERY_MINUTE, T0, T0 + 7200), (DEADLINED, T0, T0 + 7200),
                                (DAILY, berlin("2026-03-20 02:30"), berlin("2026-03-29 09:00"))]:
        first = due(schedule, last, T0 - 600, now)
        assert first.verdict in (Verdict.RUN, Verdict.MISSED)
        again = due(schedule, first.last_scheduled, T0 - 600, now)
        assert again.verdict == Verdict.WAIT and again.run is None, again


# --- concurrency, names, history ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "active", "expected"), [
    (ConcurrencyPolicy.ALLOW, 0, Concurrency.START),
    (ConcurrencyPolicy.ALLOW, 2, Concurrency.START),
    (ConcurrencyPolicy.FORBID, 0, Concurrency.START),
    (ConcurrencyPolicy.FORBID, 1, Concurrency.SKIP),
    (ConcurrencyPolicy.REPLACE, 0, Concurrency.START),
    (ConcurrencyPolicy.REPLACE, 1, Concurrency.REPLACE),
], ids=["allow-idle", "allow-overlaps", "forbid-idle", "forbid-skips", "replace-idle", "replace-replaces"])
def test_concurrency(policy: ConcurrencyPolicy, active: int, expected: Concurrency) -> None:
    assert concurrency(policy, active) == expected


def test_concurrency_takes_the_manifest_words() -> None:
    assert concurrency(ConcurrencyPolicy("Forbid"), 1) == "skip"


@pytest.mark.parametrize(("scheduled", "expected"), [
    (1774746000.0, "backup-1774746000"),
    (ANCHOR + 60, "backup-1000060"),
], ids=["cron-time", "interval-time-with-a-fraction"])
def test_run_name(scheduled: float, expected: str) -> None:
    assert run_name("backup", scheduled) == expected


def test_a_run_name_of_the_longest_cronjob_name_is_a_valid_name() -> None:
    name = run_name("a" * MAX_CRONJOB_NAME, utc("2286-11-20 17:46:39"))
    assert len(name) == 63


HISTORY = [("b-1", 100.0, True), ("b-2", 200.0, False), ("b-3", 300.0, True), ("b-4", 400.0, True),
           ("b-5", 500.0, False), ("b-6", 600.0, True), ("b-7", 600.0, False)]
PRUNES = [
    ("kubernetes-defaults", 3, 1, ["b-1", "b-2", "b-5"]),
    ("keep-none", 0, 0, ["b-1", "b-2", "b-3", "b-4", "b-5", "b-6", "b-7"]),
    ("within-limits", 10, 10, []),
    ("no-limit-for-successes", None, 1, ["b-2", "b-5"]),
    ("no-limits", None, None, []),
    ("one-of-each", 1, 1, ["b-1", "b-2", "b-3", "b-4", "b-5"]),
]


@pytest.mark.parametrize(("successful", "failed", "expected"), [p[1:] for p in PRUNES], ids=[p[0] for p in PRUNES])
def test_prune(successful: int | None, failed: int | None, expected: list[str]) -> None:
    assert prune(HISTORY, successful, failed) == expected
    assert prune(list(reversed(HISTORY)), successful, failed) == expected  # the order given does not matter


# --- validation and the host's zone ------------------------------------------------------------------------------


@pytest.mark.parametrize(("schedule", "expected"), [
    (DAILY, []),
    (Schedule(interval_seconds=1), []),
    (Schedule(), [("schedule", "give exactly one of schedule and intervalSeconds")]),
    (Schedule(cron="* * * * *", interval_seconds=60), [("schedule", "give exactly one of schedule and intervalSeconds")]),
    (Schedule(cron="61 * * * *"), [("schedule", "not a 5-field cron expression: Bad minute")]),
    (Schedule(interval_seconds=0.5), [("intervalSeconds", "must be at least 1")]),
    (Schedule(cron="* * * * *", time_zone="Mars/Olympus"), [("timeZone", "not an IANA time zone: 'Mars/Olympus'")]),
    (Schedule(cron="* * * * *", time_zone="../etc/passwd"), [("timeZone", "not an IANA time zone: '../etc/passwd'")]),
    (Schedule(cron="* * * * *", starting_deadline_seconds=-1), [("startingDeadlineSeconds", "must be 0 or more")]),
], ids=["daily", "interval", "neither", "both", "bad-cron", "sub-second-interval", "unknown-zone", "path-as-zone",
        "negative-deadline"])
def test_schedule_problems(schedule: Schedule, expected: list[tuple[str, str]]) -> None:
    assert schedule_problems(schedule) == expected


def test_resolve_zone_fills_in_only_a_missing_zone() -> None:
    local = resolve_zone(Schedule(cron="30 2 * * *", suspend=True), "Europe/Berlin")
    assert local == Schedule(cron="30 2 * * *", time_zone="Europe/Berlin", suspend=True)
    assert resolve_zone(DAILY, "America/New_York") is DAILY
    assert shown(next_run(local, berlin("2026-03-29 00:00"), 0.0)) == "2026-03-29T03:00:00+02:00"
