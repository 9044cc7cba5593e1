"""A one-line stamp file in the state dir, rewritten in place as often as a thread likes at the cost of one
write system call (no rename, no fsync, no other thread woken): for a fact that only matters to the next
daemon of the same boot, such as when the fleet agent's lease was last renewed. A crash of the daemon keeps it
(the page cache outlives the process); a crash of the host loses what it says, and with it its meaning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

STAMP_BYTES = 256


class LeaseStamp(NamedTuple):
    """What the fleet agent stamps after each keepalive etcd confirmed (daemon/fleet.py; read by the fence
    guard too): this boot, the node, its lease, when (CLOCK_MONOTONIC) the keepalive was sent, the agent's pid."""

    boot: str
    node: str
    lease: int
    sent: float
    pid: int

    def line(self) -> str:
        return f"{self.boot} {self.node} {self.lease:x} {self.sent:.3f} {self.pid}"


def lease_stamp(text: str | None) -> LeaseStamp | None:
    """The LeaseStamp a stamp's text says, or None (no stamp, or another shape: an older agent's)."""
    words = text.split() if text else []
    if len(words) != 5:
        return None
    try:
        return LeaseStamp(words[0], words[1], int(words[2], 16), float(words[3]), int(words[4]))
    except ValueError:
        return None


def boot_id() -> str:
    """This boot's id (the kernel's): a stamp of a monotonic time means something on the same boot only."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


class Stamp:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self) -> str | None:
        """What was written last, or None (no file, unreadable, or not text)."""
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(STAMP_BYTES)
        except OSError:
            return None
        try:
            return data.decode("ascii").strip() or None
        except UnicodeDecodeError:
            return None

    def write(self, text: str) -> None:
        """Replace the stamp by `text` (ascii, shorter than STAMP_BYTES); a failure to write is no error (the
        stamp then says less)."""
        data = text.encode("ascii")[: STAMP_BYTES - 1].ljust(STAMP_BYTES - 1) + b"\n"
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            os.pwrite(self._fd, data, 0)
        except OSError:
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
