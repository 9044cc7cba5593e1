"""Live state of the host through psutil: does a process with this identity exist, and what it costs.

Reads only; never signals or spawns. Identity is (pid, create_time): a pid whose create_time differs is
another process that reused the number.
"""

from __future__ import annotations

import psutil

from .model import ProcessIdentity


def identity(pid: int) -> ProcessIdentity:
    """The identity of a live (or not yet reaped) process; raises psutil.NoSuchProcess when gone."""
    return ProcessIdentity(pid, psutil.Process(pid).create_time())


def is_alive(process: ProcessIdentity) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        proc = psutil.Process(process.pid)
        if proc.create_time() != process.create_time:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
