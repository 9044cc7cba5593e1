"""Shared fixtures. The autouse `no_leftover_processes` fails any test that leaves a process or a zombie.

Every process started during the session inherits ORCH_TEST_SESSION (set here at import; replicas get it
through $ORCHESTRATOR_PASS_ENV, since they do not inherit the daemon's environment), so leftovers are found
even when they were re-parented to init after their orchestrator died.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

MARKER = "ORCH_TEST_SESSION"
SESSION = os.environ.setdefault(MARKER, uuid.uuid4().hex)
os.environ["ORCHESTRATOR_PASS_ENV"] = MARKER


def _become_subreaper() -> None:
    """Orphans of the tests (processes of a daemon killed on purpose, daemons started by `apply`) are
    re-parented to this process instead of init, so that they can be reaped here: zombies count as bugs."""
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_become_subreaper()


def reap_orphans() -> None:
    """Reap zombie children of this process that no Popen of the tests owns (re-parented orphans)."""
    for proc in psutil.Process().children():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
        except (psutil.NoSuchProcess, ChildProcessError):
            pass
REPO = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 5.0, interval: float = 0.01, what: str = "") -> T:
    """Poll `condition` until it returns a truthy value or the deadline passes (then fail the test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def session_processes() -> list[psutil.Process]:
    """Processes (other than this one) started during this test session, zombies included."""
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(MARKER) == SESSION:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            try:
                if proc.status() == psutil.STATUS_ZOMBIE and proc.ppid() == me:
                    found.append(proc)
            except psutil.NoSuchProcess:
                pass
    return found


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The compiled schema checks of this session (and of the CLIs it runs) go to a directory of its own,
    not to the user's ~/.cache."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 3.0
    reap_orphans()
    leftovers = session_processes()
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.02)
        reap_orphans()
        leftovers = session_processes()
    if not leftovers:
        return
    described = []
    for proc in leftovers:
        try:
            described.append(f"{proc.pid} {proc.status()} {' '.join(proc.cmdline())!r}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    for proc in leftovers:
        try:
            if proc.ppid() == os.getpid():
                os.waitpid(proc.pid, 0)
        except (psutil.NoSuchProcess, ChildProcessError):
            pass
    pytest.fail("test left processes behind (killed now): " + "; ".join(described))


@pytest.fixture
def orchestrator_cmd() -> list[str]:
    """The CLI as a command line, run by this interpreter."""
    return [sys.executable, "-m", "orchestrator"]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Any]:
    """A reconciler on its own thread with real processes (tests/harness.py), always closed."""
    from harness import Harness

    h = Harness(tmp_path / "logs")
    try:
        yield h
    finally:
        h.close()
