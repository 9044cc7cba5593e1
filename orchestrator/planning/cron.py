"""PURE: when a CronJob runs, as Kubernetes' CronJob controller decides on one host: the next scheduled time,
what to do at `now` (run, or pass over runs missed while the daemon was down), what the concurrency policy
says while runs are active, the runs' names, and which finished runs the history limits prune.

A schedule is a 5-field cron expression read in an IANA time zone by cronsim, or an interval anchored at the
CronJob's creation: runs at created + k x interval, k >= 1 (robfig/cron's `@every`: the first run is one
interval after creation). Daylight-saving changes, as cronsim counts them (Debian/ISC cron's way):

- a fixed time that does not exist (02:30 on a spring-forward night) runs once, when the clock jumps past it
  (03:00). Kubernetes (robfig/cron v3) skips it instead, which silently loses a daily job once a year; cronsim
  and the sync windows (windows.py) run it, and one rule for every schedule of the product is easier to explain;
- a fixed time that occurs twice (02:30 on a fall-back night) runs once, the first time; cronsim counts such
  schedules in wall time, so from inside the repeated hour it can name a time not later than where it started:
  such times are passed over, here as in windows.py;
- a schedule that is not at fixed hours (*/15, or minute 30 of every hour) counts in real time: it runs in both
  repeated hours and not in the hour that does not exist.

After downtime (or while suspended, as in Kubernetes) at most one run catches up: the most recent missed time,
and only if it is no more than startingDeadlineSeconds old; a backlog is never replayed, and missed times are
counted to MAX_MISSED, then "more than 100". Times are seconds since the epoch, given: this reads no clock.
Searches are bounded: cronsim gives up after 50 years without a match, counts stop at MAX_MISSED, and passing
over the times a fall-back repeats takes at most MAX_STEPS steps.
Never: I/O beyond the time zone database zoneinfo reads, starting or stopping runs, knowing about the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from enum import Enum

MAX_MISSED = 100  # missed times counted before saying "more than 100" (Kubernetes' tooManyMissed)
MAX_STEPS = 1440  # cron times looked at to pass over the ones a fall-back repeats
MAX_CRONJOB_NAME = 52  # a run's name adds "-" and 10 digits of Unix time and must stay within 63 characters


class ConcurrencyPolicy(str, Enum):
    ALLOW = "Allow"  # runs may overlap
    FORBID = "Forbid"  # a due run is skipped while one is active
    REPLACE = "Replace"  # the active runs are stopped and the due one started


class Concurrency(str, Enum):
    """What to do with a due run, given the active ones."""

    START = "start"
    SKIP = "skip"
    REPLACE = "replace"  # stop the active runs, then start


class Verdict(str, Enum):
    RUN = "Run"  # start a run for Decision.run
    MISSED = "Missed"  # the due times are older than startingDeadlineSeconds: none runs
    WAIT = "Wait"  # nothing due before Decision.next_at
    SUSPENDED = "Suspended"  # no runs while suspended; missed times are weighed once it resumes


MISSED_EVENT = "MissedSchedule"  # the reason of the event a Decision with a message asks for


@dataclass(frozen=True)
class Schedule:
    """When a CronJob runs: `cron` (5 fields) or `interval_seconds`, exactly one (schedule_problems says so).
    `time_zone` is an IANA name; None is the host's local zone, which the daemon names (resolve_zone) before
    asking anything here: unresolved, it reads as UTC. `starting_deadline_seconds` None: a missed run always
    catches up (once)."""

    cron: str | None = None
    interval_seconds: float | None = None
    time_zone: str | None = None
    starting_deadline_seconds: float | None = None
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW
    suspend: bool = False


@dataclass(frozen=True)
class Decision:
    """What a CronJob does at `now`. The daemon records `last_scheduled` as the CronJob's last schedule time
    whatever it then does (a run the concurrency policy skips is not run later), emits an event (MISSED_EVENT,
    `message`) when `message` is set, and looks again at `next_at`."""

    verdict: Verdict
    run: float | None  # RUN: the scheduled time the run stands for (run_name names it after it)
    last_scheduled: float | None  # the latest scheduled time dealt with (run or passed over)
    missed: int  # scheduled times passed over without a run, at most MAX_MISSED
    more_missed: bool  # more than MAX_MISSED were
    message: str  # the event's message when times were missed, else ""
    next_at: float | None  # the next scheduled time after now; None: suspended, or no time within 50 years


def resolve_zone(schedule: Schedule, local_zone: str) -> Schedule:
    """The schedule with the host's zone (an IANA name the daemon found) in place of None."""
    if schedule.time_zone is not None:
        return schedule
    return Schedule(schedule.cron, schedule.interval_seconds, local_zone, schedule.starting_deadline_seconds,
                    schedule.concurrency_policy, schedule.suspend)


def schedule_problems(schedule: Schedule) -> list[tuple[str, str]]:
    """What is wrong with a schedule, as (field, message) pairs named as the manifest spells them."""
    from cronsim import CronSim, CronSimError

    problems = []
    if (schedule.cron is None) == (schedule.interval_seconds is None):
        problems.append(("schedule", "give exactly one of schedule and intervalSeconds"))
    if schedule.cron is not None:
        try:
            CronSim(schedule.cron, datetime(2000, 1, 1, tzinfo=timezone.utc))
        except CronSimError as error:
            problems.append(("schedule", f"not a 5-field cron expression: {error}"))
    if schedule.interval_seconds is not None and not schedule.interval_seconds >= 1:
        # Whole seconds name the runs: two runs less than a second apart could share a name.
        problems.append(("intervalSeconds", "must be at least 1"))
    if schedule.time_zone is not None and _zone_problem(schedule.time_zone):
        problems.append(("timeZone", f"not an IANA time zone: {schedule.time_zone!r}"))
    deadline = schedule.starting_deadline_seconds
    if deadline is not None and not deadline >= 0:
        problems.append(("startingDeadlineSeconds", "must be 0 or more"))
    return problems


def _zone_problem(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return True
    return False


def _zone(schedule: Schedule) -> tzinfo:
    from zoneinfo import ZoneInfo

    name = schedule.time_zone
    return timezone.utc if name is None or name == "UTC" else ZoneInfo(name)


def _cron_after(expression: str, zone: tzinfo, after: float) -> Iterator[float]:
    """The cron times later than `after`, in order, passing over those a fall-back repeats (bounded)."""
    from cronsim import CronSim

    search = CronSim(expression, datetime.fromtimestamp(math.floor(after), zone))
    last = after
    for _ in range(MAX_STEPS):
        try:
            found = next(search).timestamp()
        except StopIteration:  # nothing within cronsim's 50 years
            return
        if found > last:
            last = found
            yield found


def _k_after(anchor: float, interval: float, moment: float) -> int:
    """The smallest k >= 1 with anchor + k x interval > moment."""
    k = max(1, math.floor((moment - anchor) / interval))
    while anchor + k * interval <= moment:  # the floor, and float rounding either way
        k += 1
    while k > 1 and anchor + (k - 1) * interval > moment:
        k -= 1
    return k


def next_run(schedule: Schedule, after: float, anchor: float) -> float | None:
    """The first scheduled time strictly after `after`; `anchor` (the CronJob's creation) places an interval
    schedule's runs. None when there is none within 50 years."""
    if schedule.interval_seconds is not None:
        return anchor + _k_after(anchor, schedule.interval_seconds, after) * schedule.interval_seconds
    if schedule.cron is None:
        return None
    return next(_cron_after(schedule.cron, _zone(schedule), after), None)


def previous_run(schedule: Schedule, at: float, anchor: float) -> float | None:
    """The latest scheduled time at or before `at`; None when there is none (before the first interval, or
    within 50 years before)."""
    if schedule.interval_seconds is not None:
        k = _k_after(anchor, schedule.interval_seconds, at) - 1
        return anchor + k * schedule.interval_seconds if k >= 1 else None
    if schedule.cron is None:
        return None
    from cronsim import CronSim

    zone = _zone(schedule)
    # Reversed, cronsim yields times before where it starts: a second later takes in `at` itself.
    search = CronSim(schedule.cron, datetime.fromtimestamp(math.floor(at) + 1, zone), reverse=True)
    try:
        found = next(search).timestamp()
    except StopIteration:
        return None
    # Counting back in wall time it can miss a time in the hour a fall-back repeats: counting forward from its
    # answer finds what is later, and right.
    for later in _cron_after(schedule.cron, zone, found):
        if later > at:
            break
        found = later
    return found


def _count_between(schedule: Schedule, start: float, end: float, anchor: float) -> int:
    """How many scheduled times t have start < t < end (`end` itself a scheduled time), counted to
    MAX_MISSED + 1."""
    if schedule.interval_seconds is not None:
        interval = schedule.interval_seconds
        between = _k_after(anchor, interval, end) - 1 - _k_after(anchor, interval, start)  # k of `end` less one
        return max(0, min(MAX_MISSED + 1, between))
    count = 0
    if schedule.cron is not None:
        for found in _cron_after(schedule.cron, _zone(schedule), start):
            if found >= end or count > MAX_MISSED:
                break
            count += 1
    return count


def due(schedule: Schedule, last_scheduled: float | None, created: float, now: float) -> Decision:
    """What the CronJob does at `now`, given its last schedule time (None: never scheduled yet) and when it was
    created (the interval's anchor, and where counting starts for a CronJob that never ran)."""
    if schedule.suspend:
        return Decision(Verdict.SUSPENDED, None, last_scheduled, 0, False, "", None)
    since = last_scheduled if last_scheduled is not None else created
    latest = previous_run(schedule, now, created)
    if latest is None or latest <= since:  # nothing due (or the clock went back: what ran is not run again)
        return Decision(Verdict.WAIT, None, last_scheduled, 0, False, "", next_run(schedule, max(now, since), created))
    following = next_run(schedule, now, created)
    earlier = _count_between(schedule, since, latest, created)
    deadline = schedule.starting_deadline_seconds
    if deadline is not None and now - latest > deadline:
        missed = earlier + 1
        more = missed > MAX_MISSED
        message = (f"missed {_count(missed)} scheduled run{'s' if missed > 1 else ''}, the last at "
                   f"{_when(latest, schedule)}, {now - latest:.0f} s ago: more than startingDeadlineSeconds "
                   f"{deadline:g}, so none runs")
        return Decision(Verdict.MISSED, None, latest, min(missed, MAX_MISSED), more, message, following)
    message = ""
    if earlier:
        message = (f"missed {_count(earlier)} scheduled run{'s' if earlier > 1 else ''} since "
                   f"{_when(since, schedule)}: only the last, at {_when(latest, schedule)}, runs")
    return Decision(Verdict.RUN, latest, latest, min(earlier, MAX_MISSED), earlier > MAX_MISSED, message, following)


def _count(missed: int) -> str:
    return f"more than {MAX_MISSED}" if missed > MAX_MISSED else str(missed)


def _when(moment: float, schedule: Schedule) -> str:
    """A time in the schedule's zone with its abbreviation (2026-03-29 03:00 CEST): unambiguous in the hour a
    fall-back repeats."""
    local = datetime.fromtimestamp(moment, _zone(schedule))
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if local.second else "%Y-%m-%d %H:%M %Z")


def concurrency(policy: ConcurrencyPolicy, active_runs: int) -> Concurrency:
    """What to do with a due run while `active_runs` runs of the same CronJob are active."""
    if active_runs <= 0 or policy == ConcurrencyPolicy.ALLOW:
        return Concurrency.START
    return Concurrency.SKIP if policy == ConcurrencyPolicy.FORBID else Concurrency.REPLACE


def run_name(cronjob: str, scheduled: float) -> str:
    """The name of the Job a run is: `<cronjob>-<unix time>`, at most 63 characters for a CronJob name of at most
    MAX_CRONJOB_NAME (until the year 2286)."""
    return f"{cronjob}-{int(scheduled)}"


def prune(history: Sequence[tuple[str, float, bool]], successful_limit: int | None,
          failed_limit: int | None) -> list[str]:
    """The finished runs to delete, oldest first: history is (name, finished at, succeeded) of finished runs
    only; the newest `successful_limit` successful and `failed_limit` failed ones stay (None: all stay)."""
    ordered = sorted(history, key=lambda run: (run[1], run[0]))
    doomed = []
    for succeeded, limit in ((True, successful_limit), (False, failed_limit)):
        if limit is None:
            continue
        runs = [run for run in ordered if run[2] == succeeded]
        doomed.extend(runs[:max(0, len(runs) - limit)])
    return [name for name, _, _ in sorted(doomed, key=lambda run: (run[1], run[0]))]
