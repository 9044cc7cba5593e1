"""planning/windows.py: a GitSync's sync windows (Argo CD's semantics), with times given, never read: tables of
verdicts, daylight-saving changes as cronsim counts them, and when the verdict can next change."""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from orchestrator.core.gitsync import SyncWindow
from orchestrator.planning.windows import active_until, last_opening, next_change, window_verdict

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(text: str) -> float:
    """A wall time in Berlin that occurs once (in the repeated hour of a fall-back use utc())."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


NIGHT = SyncWindow("deny", "0 22 * * *", 3600, "Europe/Berlin", manual_sync=True)
NIGHT_STRICT = SyncWindow("deny", "0 22 * * *", 7200, "Europe/Berlin")
OFFICE = SyncWindow("allow", "0 8 * * MON-FRI", 9 * 3600)  # UTC, 08:00 to 17:00 on weekdays
OFFICE_MANUAL = SyncWindow("allow", "0 8 * * MON-FRI", 9 * 3600, manual_sync=True)
DENIED_NIGHT = "deny window '0 22 * * *' (Europe/Berlin) active until 23:00"
# 2025-06-02 is a Monday.
VERDICTS = [
    ("no-windows", [], berlin("2025-06-02 22:30"), False, True, "no sync windows"),
    ("deny-before-it-opens", [NIGHT], berlin("2025-06-02 21:59:59"), False, True, "no sync window active"),
    ("deny-as-it-opens", [NIGHT], berlin("2025-06-02 22:00"), False, False, DENIED_NIGHT),
    ("deny-before-it-closes", [NIGHT], berlin("2025-06-02 22:59:59.9"), False, False, DENIED_NIGHT),
    ("deny-closed", [NIGHT], berlin("2025-06-02 23:00"), False, True, "no sync window active"),
    ("deny-manual-with-manualSync", [NIGHT], berlin("2025-06-02 22:30"), True, True,
     f"{DENIED_NIGHT}: a manual sync passes (manualSync)"),
    ("deny-automatic-with-manualSync", [NIGHT], berlin("2025-06-02 22:30"), False, False, DENIED_NIGHT),
    ("deny-manual-without-manualSync", [NIGHT_STRICT], berlin("2025-06-02 22:30"), True, False,
     "deny window '0 22 * * *' (Europe/Berlin) active until 2025-06-03 00:00"),
    ("manual-needs-every-active-deny-to-allow-it", [NIGHT, NIGHT_STRICT], berlin("2025-06-02 22:30"), True, False,
     "deny window '0 22 * * *' (Europe/Berlin) active until 2025-06-03 00:00"),
    ("allow-active", [OFFICE], utc("2025-06-02 10:00"), False, True,
     "allow window '0 8 * * MON-FRI' (UTC) active until 17:00"),
    ("allow-closed", [OFFICE], utc("2025-06-02 17:00"), False, False,
     "outside every allow window: allow window '0 8 * * MON-FRI' (UTC) opens at 2025-06-03 08:00"),
    ("allow-closed-on-the-weekend", [OFFICE], utc("2025-06-07 12:00"), False, False,
     "outside every allow window: allow window '0 8 * * MON-FRI' (UTC) opens at 2025-06-09 08:00"),
    ("allow-closed-manual-without-manualSync", [OFFICE], utc("2025-06-02 18:00"), True, False,
     "outside every allow window: allow window '0 8 * * MON-FRI' (UTC) opens at 2025-06-03 08:00"),
    ("allow-closed-manual-with-manualSync", [OFFICE, OFFICE_MANUAL], utc("2025-06-02 18:00"), True, True,
     "outside every allow window: a manual sync passes (allow window '0 8 * * MON-FRI' (UTC) has manualSync)"),
    ("allow-closed-automatic-with-manualSync", [OFFICE_MANUAL], utc("2025-06-02 18:00"), False, False,
     "outside every allow window: allow window '0 8 * * MON-FRI' (UTC) opens at 2025-06-03 08:00"),
    ("deny-beats-allow", [OFFICE, SyncWindow("deny", "0 9 * * *", 600)], utc("2025-06-02 09:05"), False, False,
     "deny window '0 9 * * *' (UTC) active until 09:10"),
    ("an-inactive-deny-leaves-the-allow", [OFFICE, SyncWindow("deny", "0 9 * * *", 600)], utc("2025-06-02 09:10"),
     False, True, "allow window '0 8 * * MON-FRI' (UTC) active until 17:00"),
    ("openings-that-overlap-keep-it-open", [SyncWindow("deny", "0 10,11 * * *", 5400)], utc("2025-06-02 10:45"), False,
     False, "deny window '0 10,11 * * *' (UTC) active until 12:30"),
    ("seconds-shown-when-there-are-some", [SyncWindow("deny", "0 22 * * *", 90.5)], utc("2025-06-02 22:01"), False,
     False, "deny window '0 22 * * *' (UTC) active until 22:01:30"),
    ("always-open", [SyncWindow("allow", "* * * * *", 120)], utc("2025-06-02 12:00"), False, True,
     "allow window '* * * * *' (UTC) active until at least 2025-06-03 12:02"),
    ("in-its-own-zone", [SyncWindow("allow", "0 9 * * *", 3600, "America/New_York")], utc("2025-06-02 13:30"), False,
     True, "allow window '0 9 * * *' (America/New_York) active until 10:00"),
]


@pytest.mark.parametrize(("windows", "now", "manual", "allowed", "reason"), [v[1:] for v in VERDICTS],
                         ids=[v[0] for v in VERDICTS])
def test_window_verdict(windows: list[SyncWindow], now: float, manual: bool, allowed: bool, reason: str) -> None:
    assert window_verdict(windows, now, manual) == (allowed, reason)


# --- daylight saving, Europe/Berlin: 2025-03-30 02:00 CET -> 03:00 CEST, 2025-10-26 03:00 CEST -> 02:00 CET ---


def test_cronsim_opens_a_time_that_does_not_exist_when_the_clock_jumps() -> None:
    """02:30 does not exist on 2025-03-30: cronsim fires at 03:00 CEST (Debian cron's way), counting forward
    and back alike; window_verdict agrees."""
    forward = CronSim("30 2 * * *", datetime(2025, 3, 30, 0, 0, tzinfo=BERLIN))
    assert [next(forward).isoformat() for _ in range(2)] == ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]
    back = CronSim("30 2 * * *", datetime(2025, 3, 30, 12, 0, tzinfo=BERLIN), reverse=True)
    assert [next(back).isoformat() for _ in range(2)] == ["2025-03-30T03:00:00+02:00", "2025-03-29T02:30:00+01:00"]
    window = SyncWindow("deny", "30 2 * * *", 3600, "Europe/Berlin")
    assert last_opening(window, berlin("2025-03-30 03:30")) == utc("2025-03-30 01:00")
    assert window_verdict([window], berlin("2025-03-30 01:59:59"), False) == (True, "no sync window active")
    assert window_verdict([window], berlin("2025-03-30 03:00"), False) == (
        False, "deny window '30 2 * * *' (Europe/Berlin) active until 04:00")
    assert window_verdict([window], berlin("2025-03-29 02:30"), False)[0] is False  # a day before: as written
    assert next_change([window], berlin("2025-03-30 01:00")) == berlin("2025-03-30 03:00")


def test_cronsim_opens_a_time_that_occurs_twice_once_the_first_time() -> None:
    """02:00 occurs twice on 2025-10-26 (CEST, then CET): cronsim fires once, at the first; a window of an hour
    is over when the second 02:00 comes."""
    forward = CronSim("0 2 * * *", datetime(2025, 10, 26, 0, 0, tzinfo=BERLIN))
    assert [next(forward).isoformat() for _ in range(2)] == ["2025-10-26T02:00:00+02:00", "2025-10-27T02:00:00+01:00"]
    window = SyncWindow("deny", "0 2 * * *", 3600, "Europe/Berlin")
    assert window_verdict([window], utc("2025-10-26 00:30"), False) == (
        False, "deny window '0 2 * * *' (Europe/Berlin) active until 02:00 CET")  # the zone named: it is ambiguous
    assert window_verdict([window], utc("2025-10-26 01:00"), False) == (True, "no sync window active")  # 02:00 CET
    assert window_verdict([window], utc("2025-10-26 01:30"), False) == (True, "no sync window active")
    assert next_change([window], utc("2025-10-26 00:30")) == utc("2025-10-26 01:00")
    assert next_change([window], utc("2025-10-26 01:00")) == berlin("2025-10-27 02:00")


def test_an_opening_in_the_repeated_hour_that_counting_back_misses() -> None:
    """At 02:10 CET (the second 02:10), 02:30 CEST came 40 minutes before; cronsim, counting back in wall
    time from 02:10, finds the day before. last_opening counts forward from there, and is right."""
    now = utc("2025-10-26 01:10")
    back = CronSim("30 2 * * *", datetime.fromtimestamp(now + 1, BERLIN), reverse=True)
    assert next(back).isoformat() == "2025-10-25T02:30:00+02:00"
    window = SyncWindow("deny", "30 2 * * *", 7200, "Europe/Berlin")
    assert last_opening(window, now) == utc("2025-10-26 00:30")
    assert window_verdict([window], now, False) == (False, "deny window '30 2 * * *' (Europe/Berlin) active until 03:30")


def test_a_schedule_of_every_half_hour_across_both_changes() -> None:
    """Schedules that are not at fixed times count in real time: each opening is 30 minutes after the last,
    however the clocks move."""
    window = SyncWindow("allow", "*/30 * * * *", 60, "Europe/Berlin")
    for start in (utc("2025-03-30 00:00"), utc("2025-10-25 23:30")):
        openings = [last_opening(window, start + minutes * 60) for minutes in range(0, 240, 30)]
        assert [b - a for a, b in pairwise(openings)] == [1800.0] * 7, openings


# --- when it can change ------------------------------------------------------------------------------------------


CHANGES = [
    ("no-windows", [], berlin("2025-06-02 12:00"), None),
    ("a-deny-opens", [NIGHT], berlin("2025-06-02 21:00"), berlin("2025-06-02 22:00")),
    ("a-deny-closes", [NIGHT], berlin("2025-06-02 22:30"), berlin("2025-06-02 23:00")),
    ("not-at-its-own-opening", [NIGHT], berlin("2025-06-02 22:00"), berlin("2025-06-02 23:00")),
    ("the-first-of-two", [NIGHT, OFFICE], berlin("2025-06-02 22:30"), berlin("2025-06-02 23:00")),
    ("an-allow-over-the-weekend", [OFFICE], utc("2025-06-07 12:00"), utc("2025-06-09 08:00")),
    ("overlapping-openings", [SyncWindow("deny", "0 10,11 * * *", 5400)], utc("2025-06-02 10:45"),
     utc("2025-06-02 12:30")),
    ("every-four-years", [SyncWindow("deny", "0 0 29 2 *", 60)], utc("2025-03-01 00:00"), utc("2028-02-29 00:00")),
]


@pytest.mark.parametrize(("windows", "now", "expected"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_next_change(windows: list[SyncWindow], now: float, expected: float | None) -> None:
    assert next_change(windows, now) == expected


def test_a_window_that_never_closes_gives_a_time_to_look_again() -> None:
    window = SyncWindow("allow", "* * * * *", 120)
    now = utc("2025-06-02 12:00")
    change = next_change([window], now)
    assert change is not None and now + 3600 < change <= now + 2 * 86400
    assert window_verdict([window], change - 1, False)[0] is True


@pytest.mark.parametrize("windows", [
    [NIGHT, OFFICE],
    [SyncWindow("deny", "*/20 * * * *", 300, "Europe/Berlin"), SyncWindow("allow", "0 6 * * *", 6 * 3600)],
    [SyncWindow("deny", "0 2 * * *", 3600, "Europe/Berlin"), SyncWindow("deny", "30 2 * * *", 1800, "Europe/Berlin")],
], ids=["night-and-office", "often", "fall-back"])
def test_the_verdict_holds_until_next_change(windows: list[SyncWindow]) -> None:
    """Swept over a day (the fall-back day), 7 minutes apart: nothing changes before next_change says."""
    start = utc("2025-10-25 12:00")
    for step in range(0, 24 * 60, 7):
        now = start + step * 60
        change = next_change(windows, now)
        assert change is not None and change > now
        verdict = window_verdict(windows, now)
        for later in (now + (change - now) / 2, change - 0.5):
            assert window_verdict(windows, later)[0] == verdict[0], (now, later)
    assert active_until(NIGHT, berlin("2025-10-25 22:10")) == berlin("2025-10-25 23:00")
