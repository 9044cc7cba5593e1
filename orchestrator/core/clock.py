"""The one clock. Read once per reconcile pass and passed down; nothing else in the package reads time.

`monotonic` orders and measures (backoff, timeouts); `wall` is only for showing times to people.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clock of the host."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()
