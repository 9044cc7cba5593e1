"""PURE: may a GitSync apply a commit now, by its sync windows (Argo CD's semantics), and when can that change.

A window opens at each time its cron schedule names, read in its time zone by cronsim (tz-aware, so across a
daylight-saving change a time that does not exist opens the window when the clock jumps past it, and a time
that occurs twice opens it once, the first time), and stays active for its duration: it is active at `now`
when its most recent opening t has t <= now < t + duration. Then, as Argo CD decides (CanSync):

- no windows: allowed;
- an active deny window: denied; a manual sync passes if every active deny window has manualSync;
- else an active allow window: allowed;
- else, if there are allow windows (none active): denied; a manual sync passes if one of them has manualSync;
- else (deny windows only, none active): allowed.

Times are seconds since the epoch, given (`now`): this reads no clock. Searches are bounded: cronsim gives up
after 50 years without an opening, and an always-open window is followed for at most MAX_STEPS openings.
Never: I/O beyond the time zone database zoneinfo reads, sleeping, knowing what a GitSync does with the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone, tzinfo

from ..core.gitsync import ALLOW, DENY, SyncWindow

MAX_STEPS = 1440  # openings followed past one another (a window open every minute: one day of them)


def _zone(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo

    return timezone.utc if name == "UTC" else ZoneInfo(name)


def _openings_after(window: SyncWindow, after: float) -> Iterator[float]:
    """The window's openings later than `after`, in order (at most MAX_STEPS of them). cronsim counts in wall
    time for schedules at fixed times, so in the hour a fall-back repeats it can give a time not later than
    where it started: such times are passed over."""
    from cronsim import CronSim

    zone = _zone(window.time_zone)
    search = CronSim(window.schedule, datetime.fromtimestamp(math.floor(after), zone))
    last = after
    for _ in range(MAX_STEPS):
        try:
            opening = next(search).timestamp()
        except StopIteration:  # no opening within cronsim's 50 years
            return
        if opening > last:
            last = opening
            yield opening


def last_opening(window: SyncWindow, now: float) -> float | None:
    """When the window opened last, at or before `now`; None if it never did (within 50 years)."""
    from cronsim import CronSim

    zone = _zone(window.time_zone)
    # Reversed, cronsim yields times before where it starts: a second later takes in `now` itself.
    search = CronSim(window.schedule, datetime.fromtimestamp(math.floor(now) + 1, zone), reverse=True)
    try:
        found = next(search).timestamp()
    except StopIteration:
        return None
    # Counting back in wall time it can miss an opening in the hour a fall-back repeats: what counting
    # forward from its answer finds up to `now` is later, and right.
    for opening in _openings_after(window, found):
        if opening > now:
            break
        found = opening
    return found


def active_until(window: SyncWindow, now: float) -> float | None:
    """When the window stops being active, if it is at `now` (an opening before the one before it ends keeps
    it open); None when it is not active. For a window that never closes: a day or more ahead (MAX_STEPS)."""
    found = _activity(window, now)
    return found[0] if found is not None else None


def _activity(window: SyncWindow, now: float) -> tuple[float, bool] | None:
    """active_until's time, and whether it is the end (False: where the bounded search stopped)."""
    opened = last_opening(window, now)
    if opened is None or now >= opened + window.duration_seconds:
        return None
    end, steps = opened + window.duration_seconds, 0
    for steps, opening in enumerate(_openings_after(window, opened), 1):
        if opening > end:
            return end, True
        end = max(end, opening + window.duration_seconds)
    return end, steps < MAX_STEPS


def _next_opening(window: SyncWindow, now: float) -> float | None:
    return next(_openings_after(window, now), None)


def _named(window: SyncWindow) -> str:
    return f"{window.kind} window {window.schedule!r} ({window.time_zone})"


def _when(moment: float, window: SyncWindow, now: float) -> str:
    """A time in the window's zone: 23:00, or 2025-03-31 01:00 when it is not the day of `now` there; with
    the zone's abbreviation (02:00 CET) in the hour a fall-back repeats."""
    zone = _zone(window.time_zone)
    local, today = datetime.fromtimestamp(moment, zone), datetime.fromtimestamp(now, zone)
    clock = local.strftime("%H:%M:%S" if local.second else "%H:%M")
    if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
        clock += f" {local.tzname()}"
    return clock if local.date() == today.date() else f"{local.date().isoformat()} {clock}"


def _until(activity: tuple[float, bool], window: SyncWindow, now: float) -> str:
    end, certain = activity
    return f"active until {'' if certain else 'at least '}{_when(end, window, now)}"


def window_verdict(windows: Sequence[SyncWindow], now: float, manual: bool = False) -> tuple[bool, str]:
    """May a sync run at `now` (a manual one: `manual`), and why, in words such as "deny window '0 22 * * *'
    (Europe/Berlin) active until 23:00"."""
    if not windows:
        return True, "no sync windows"
    active = [(window, found) for window in windows if (found := _activity(window, now)) is not None]
    denies = [(window, found) for window, found in active if window.kind == DENY]
    if denies:
        blocking = [(window, found) for window, found in denies if not (manual and window.manual_sync)]
        window, found = max(blocking or denies, key=lambda item: item[1][0])
        if not blocking:
            return True, f"{_named(window)} {_until(found, window, now)}: a manual sync passes (manualSync)"
        return False, f"{_named(window)} {_until(found, window, now)}"
    allows = [(window, found) for window, found in active if window.kind == ALLOW]
    if allows:
        window, found = max(allows, key=lambda item: item[1][0])
        return True, f"{_named(window)} {_until(found, window, now)}"
    closed = [window for window in windows if window.kind == ALLOW]
    if not closed:
        return True, "no sync window active"
    if manual and any(window.manual_sync for window in closed):
        window = next(window for window in closed if window.manual_sync)
        return True, f"outside every allow window: a manual sync passes ({_named(window)} has manualSync)"
    openings = [(opening, window) for window in closed if (opening := _next_opening(window, now)) is not None]
    if not openings:
        return False, "outside every allow window, and none opens again"
    opening, window = min(openings, key=lambda item: item[0])
    return False, f"outside every allow window: {_named(window)} opens at {_when(opening, window, now)}"


def next_change(windows: Sequence[SyncWindow], now: float) -> float | None:
    """The first time after `now` when a window opens or closes, so when window_verdict may say otherwise
    (the daemon wakes then); None when none ever will. An always-open window followed to the end of its
    bounded search gives that point: a time to look again, not a change."""
    changes = []
    for window in windows:
        end = active_until(window, now)
        change = end if end is not None else _next_opening(window, now)
        if change is not None:
            changes.append(change)
    return min(changes, default=None)
