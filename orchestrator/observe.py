"""Live state of the host through psutil: does a process with this identity exist, and what it costs.

Reads only; never signals or spawns. Identity is (pid, create_time): a pid whose create_time differs is
another process that reused the number.
"""

from __future__ import annotations

import time

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


def usage(pid: int) -> tuple[float, int] | None:
    """(cpu percent of one core averaged over the process tree's lifetime, resident bytes of the tree).

    None when the process is gone. A lifetime average needs no second sample, so `get` stays fast.
    """
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    cpu_seconds = 0.0
    rss = 0
    for proc in tree:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                cpu_seconds += times.user + times.system
                rss += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    age = max(1e-3, time.time() - root.create_time())
    return 100.0 * cpu_seconds / age, rss
