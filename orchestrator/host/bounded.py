"""A child process the daemon runs for itself (git for a GitSync, an exec notifier), bounded: it leads a process
group of its own, is SIGKILLed with its whole group at its deadline, keeps at most STDERR_LIMIT bytes of its
stderr, and is always reaped by the thread that started it (it is in subreaper.FORKS meanwhile, so the daemon's
orphan sweep leaves it alone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Sequence

from .subreaper import FORKS

STDERR_LIMIT = 64 << 10  # bytes of a child's stderr kept (the first ones: they say what failed first)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class BoundedChild:
    """One process leading a group of its own, with a deadline: at it the whole group is SIGKILLed. Read
    its stdout to the end (or abort), then `finish`, which always reaps it. `stdin`: an fd it reads (default
    none). Raises OSError when it cannot be started."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], timeout: float, stdin: int | None = None,
                 name: str = "child") -> None:
        with FORKS.forking() as forks:  # not an orphan for the daemon's sweep: this thread reaps it
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL if stdin is None else stdin,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            forks.add(self.proc.pid)
        self.stdout = self.proc.stdout
        self.timed_out = False
        self._stderr = bytearray()
        self._lock = threading.Lock()  # the group id is ours to kill only until the leader is reaped
        self._reaped = False
        self._reader = threading.Thread(target=self._drain, name=f"{name}-stderr", daemon=True)
        self._reader.start()
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        while chunk := os.read(self.proc.stderr.fileno(), 1 << 16):
            self._stderr += chunk[:max(0, STDERR_LIMIT - len(self._stderr))]

    def _expire(self) -> None:
        with self._lock:
            if not self._reaped:
                self.timed_out = True
                _kill_group(self.proc.pid)

    def abort(self) -> None:
        with self._lock:
            if not self._reaped:
                _kill_group(self.proc.pid)

    def finish(self) -> tuple[int, str]:
        """Wait for the leader to end, kill what is left of its group (the zombie still pins the group id),
        reap it; its exit code and stderr."""
        pid = self.proc.pid
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        with self._lock:
            self._timer.cancel()
            _kill_group(pid)
            code = self.proc.wait()
            self._reaped = True
        FORKS.done(pid)
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None and not self._reader.is_alive():
                stream.close()
        return code, self._stderr.decode(errors="replace")
