"""What the bench scripts share. Each script runs with bench/ first on sys.path, so `from benchlib import ...`.

Timing (median_ms, median, percentile); observing processes from outside through /proc (read_bytes, read_text,
threads, children, alive); cleaning up after them as a child subreaper (kill_and_reap_orphans, reap); the
environment measured commands run in (measured_env, warm_bytecode); and the report (environment, figure_row,
table_lines) with the tail every main() ends in (run_bench: SIGTERM as Ctrl-C, exit codes, table or JSON).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
SUBREAPER = False  # set by run_bench: every orphan of our descendants is re-parented to us


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- timing ---------------------------------------------------------------------------------------------


def median_ms(work: Callable[[], object], runs: int) -> float:
    """The median wall time of `runs` calls of `work`, in milliseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- observing processes from outside, through /proc ------------------------------------------------------


def read_bytes(path: str) -> bytes:
    """The whole of a /proc file (read to EOF: one read() of a seq_file may stop short)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    return read_bytes(path).decode()


CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; None once gone."""
    try:
        return read_text(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads, not its children)."""
    fields = stat_fields(pid)
    if fields is None:
        raise BenchError(f"process {pid} is gone")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def threads(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []


CHILDREN_FILE = os.path.exists(f"/proc/self/task/{os.getpid()}/children")  # else psutil (a walk of /proc)


def children(pid: int, tids: list[str] | None = None) -> set[int]:
    """Pids of the direct children of `pid` (of all its threads, or of `tids` when given)."""
    if not CHILDREN_FILE:
        import psutil

        try:
            return {c.pid for c in psutil.Process(pid).children()}
        except psutil.NoSuchProcess:
            return set()
    found: set[int] = set()
    for tid in tids if tids is not None else threads(pid):
        try:
            found.update(int(p) for p in read_bytes(f"/proc/{pid}/task/{tid}/children").split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        state = read_text(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# -- cleaning up ------------------------------------------------------------------------------------------


def reap() -> None:
    """Reap every child that has exited, without waiting."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_and_reap_orphans(marked: Callable[[], Iterable[int]] = tuple, seen: Iterable[int] = ()) -> int:
    """SIGKILL (process group, then pid) every live child of ours and every live pid `marked()` names; reap
    them, until none is left (10 s at most). Returns how many were still running.

    As a subreaper, every descendant a dead supervisor or daemon leaves behind becomes our child and keeps
    its pid pinned until we reap it, so killing by that pid cannot hit a stranger. `marked` names processes
    known to be ours by a mark of the bench's own. Without subreaper (not Linux >= 3.4), the pids in `seen`
    are killed instead of our children, checked for being alive.
    """
    running = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        targets = children(os.getpid()) if SUBREAPER else set(seen)
        targets = {pid for pid in targets | set(marked()) if alive(pid)}
        running += len(targets)
        for pid in targets:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        reap()
        if not targets:
            return running
        time.sleep(0.01)
    return running


# -- the environment of measured commands -----------------------------------------------------------------


def measured_env(tree: Path) -> dict[str, str]:
    """Our environment with `tree` first on PYTHONPATH (its `orchestrator` is the one imported) and without
    PYTHONDONTWRITEBYTECODE: as installed software runs, from cached bytecode, not recompiled at every start."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    return env


def warm_bytecode(tree: Path, env: dict[str, str], argv: list[str]) -> None:
    """`python -m compileall -q tree/orchestrator` (what it cannot compile shown on stderr), then `argv` once,
    untimed, in `tree`."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "orchestrator")], env=env, check=True,
                   stdout=sys.stderr)
    subprocess.run(argv, env=env, cwd=tree, check=True, stdout=subprocess.DEVNULL)


def imported_package(tree: Path, env: dict[str, str]) -> str:
    """Where `python` run in `tree` with `env` imports `orchestrator` from, checked to be tree/orchestrator (so
    that a figure is never the wrong checkout's)."""
    done = subprocess.run([sys.executable, "-c", "import orchestrator; print(orchestrator.__file__)"], env=env,
                          cwd=tree, capture_output=True, text=True, check=True)
    package = Path(done.stdout.strip()).resolve().parent
    if package != (tree / "orchestrator").resolve():
        raise BenchError(f"`orchestrator` is imported from {package}, not from {tree / 'orchestrator'}")
    return str(package)


def tree_commit(tree: Path) -> str | None:
    """The commit of `tree`, when it is a git checkout (or worktree)."""
    try:
        done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# -- the report -------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "nproc": len(os.sched_getaffinity(0)),
            "kernel": platform.release()}


HEADER = ["figure", "N", "floor", "ours", "ratio", "target", "ok"]


def figure_row(label: str, n: Any, floor: float | None, ours: float | None, fmt: str, target: str,
               ok: bool | None) -> list[str]:
    """One row under HEADER: values in `fmt` ("-" for none), ours / floor, the target and whether it is met."""
    ratio = f"{ours / floor:.2f}x" if ours is not None and floor else "-"
    return [label, str(n), _cell(fmt, floor), _cell(fmt, ours), ratio, target,
            "-" if ok is None else ("yes" if ok else "NO")]


def _cell(fmt: str, value: float | None) -> str:
    return "-" if value is None else fmt.format(value)


def table_lines(body: list[list[str]], header: list[str] = HEADER) -> list[str]:
    """The header, a rule and the rows, each column as wide as its widest cell."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return [_row(header, widths), "-+-".join("-" * w for w in widths), *(_row(row, widths) for row in body)]


def _row(cells: list[str], widths: list[int]) -> str:
    return " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


# -- the tail of every main() -----------------------------------------------------------------------------


def run_bench(measure: Callable[[], dict[str, Any]], table: Callable[[dict[str, Any]], str], as_json: bool,
              marked: Callable[[], Iterable[int]] = tuple) -> int:
    """Become a child subreaper, turn SIGTERM into KeyboardInterrupt, run `measure`, then kill and reap every
    process left behind (and every one `marked()` names), whatever happened; print the report as a table or JSON.
    Exit code 0, 1 when the bench failed, 130 when interrupted."""
    global SUBREAPER
    SUBREAPER = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    if not SUBREAPER:
        log("warning: could not become a child subreaper; orphans go to init")

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every finally, which stops and reaps

    signal.signal(signal.SIGTERM, on_term)
    try:
        report = measure()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (BenchError, subprocess.SubprocessError) as error:
        log(f"bench failed: {error}")
        return 1
    finally:
        left = kill_and_reap_orphans(marked)
        if left:
            log(f"killed and reaped {left} processes left behind")
    print(json.dumps(report, indent=2) if as_json else table(report))
    return 0
