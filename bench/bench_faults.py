"""Runtime under faults: a crash loop, a locked state database, concurrent clients, a stalled follower.

    python bench/bench_faults.py [--only crashes|locked-db|concurrency|rss] [--tree PATH] [--json]

Four measurements, each against a real daemon (`orchestrator --state-dir D apply -f M` starts it) observed
from outside: its pid from D/daemon.lock, its CPU and memory from /proc/<pid>/stat and status, its children
from /proc/<pid>/task/*/children, its replicas by the ORCH_STATE_DIR=<resolved D> mark in their
/proc/<pid>/environ, and its answers over the Unix socket (bench_daemon's few lines of stdlib HTTP).

1. crashes: a Process `/bin/sh -c 'exit 1'`, restartPolicy Always, backoff initialSeconds 0 (default multiplier),
   crashes 1,000 times (deadline 120 s; the planner starts a slot at most once per 20 ms in a crash loop, so
   ~50 crashes/s is the ceiling).
   Crashes per second (the `restarts` counter of GET /objects, checked against the Exited events of GET
   /events), the daemon's CPU over that period in % of one core (utime+stime deltas over wall time), its open
   fds and RSS before and after, zombies among its children at the end (ones still Z half a second later),
   and processes carrying the state dir's mark once `shutdown` returned. Floor: a bare Python loop that runs
   the same command with Popen+wait at the same pace (one start per 20 ms at most), its own CPU from getrusage.
2. locked-db: one `sleep` replica (backoff 0); another process holds a write transaction on D/state.db (python's
   sqlite3, BEGIN IMMEDIATE) for 20 s; meanwhile the replica is SIGKILLed 3 times and the time until a new
   process runs is measured (a new `sleep` child of the daemon, checked to carry the replica's marks; and
   separately until GET /objects shows its pid). Read routes are probed under the lock (status and latency);
   after the release, the time until the daemon says the database is free again, and whether the Exited
   events of the kills were saved. Floors: as many kills with the database free, the routes before the lock.
3. concurrency: (a) 30 threads x 10 requests (GET /objects and /health alternated) against a daemon with 20
   replicas: failures, median, p99 and max latency; floor: the same requests one at a time (the clients are
   threads of this one Python process: their own contention is part of the latency). (b) 8 first
   `apply` commands started at once against a fresh state dir with no daemon, 3 times: how many succeed, how
   many daemons run afterwards (after 1 s to settle), duplicate replicas, leftovers after shutdown; floor:
   one cold `apply` alone.
4. rss: a zero-backoff crash loop as in 1 plus a stalled `events -w` follower (GET /events?follow=1 on a raw
   socket, the request sent and nothing ever read) for 25 s; the daemon's VmRSS every second: at the start
   (after a 3 s warm-up), max, end and growth. Floors: the growth over the crash loop of 1 (no follower),
   and the crash rate and CPU of this same loop for 3 s before the follower connects. The kernel's socket
   buffers take about 200 KB of the stream (some 10 s of this loop's events) before the daemon's writes block.

Figures are from this machine, in this run: on a shared or small machine (nproc is printed) other work moves
them; compare runs made side by side. Targets are the project's for runtime under faults: 0 zombies, 0
leftovers, the daemon under 25 % of a core in a crash loop, back within 2 s with the database locked, 0 failed
requests, 8/8 first applies and one daemon, RSS growth within 5 MB. Every command runs in --tree PATH (default:
this checkout) with PATH first on PYTHONPATH, after warming its bytecode. Whatever this script starts is ended
and reaped, even on failure, Ctrl-C or SIGTERM (it is a child subreaper), and its state dirs, all in one
temporary folder, are removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import bench_daemon
from bench_daemon import Daemon, _UnixHTTP, cmdline, marks, prepare_tree, python_floor, use_tree
from benchlib import (
    BenchError,
    alive,
    children,
    cpu_seconds,
    environment,
    figure_row,
    kill_and_reap_orphans,
    log,
    median,
    percentile,
    read_bytes,
    read_text,
    run_bench,
    stat_fields,
    table_lines,
    threads,
    tree_commit,
)

ROOT = Path(__file__).resolve().parent.parent
MIN_START_INTERVAL = 0.02  # orchestrator/planning/policy.py: a crash-looping slot starts at most once per 20 ms
CRASH_COMMAND = ["/bin/sh", "-c", "exit 1"]
NAMES = ("crashes", "locked-db", "concurrency", "rss")

WORKROOT: Path | None = None  # the one temporary folder every state dir of this run is made in
STATE_DIRS: list[Path] = []  # resolved, for the final sweep of marked processes
TOKEN = f"{random.SystemRandom().randrange(10**6):06d}"


# -- manifests and state dirs ---------------------------------------------------------------------------


def process_doc(name: str, command: list[str], **spec: Any) -> str:
    """One Process document in flow style (JSON values are YAML), as tests/test_daemon.py writes them: it
    stops fast and restarts with no backoff."""
    body = {"command": command, "shutdown": {"timeoutSeconds": 0.5}, "backoff": {"initialSeconds": 0}, **spec}
    lines = ["apiVersion: orchestrator/v1", "kind: Process", f"metadata: {json.dumps({'name': name})}", "spec:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in body.items()]
    return "\n".join(lines) + "\n"


def new_daemon(label: str, *documents: str) -> tuple[Daemon, Path]:
    """A Daemon (not started) over a fresh state dir in WORKROOT, and the manifest file of `documents`."""
    assert WORKROOT is not None
    workdir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=WORKROOT)).resolve()
    daemon = Daemon(workdir, TOKEN)
    STATE_DIRS.append(daemon.state)
    path = workdir / "manifests.yaml"
    path.write_text("---\n".join(documents))
    return daemon, path


def sleeper(daemon: Daemon, name: str, **spec: Any) -> str:
    """A `sleep` Process carrying bench_daemon's mark (`sleep 3600.<token>...`), so its sweep finds it too."""
    return process_doc(name, ["sleep", f"{daemon.prefix}000"], **spec)


# -- observing from outside, through /proc ----------------------------------------------------------------


def proc_state(pid: int) -> str | None:
    fields = stat_fields(pid)
    return fields[0] if fields else None


def rss_kb(pid: int) -> int:
    for line in read_text(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def zombie_children(pid: int) -> set[int]:
    return {child for child in children(pid) if proc_state(child) == "Z"}


def lasting_zombies(pid: int, wait: float = 0.5) -> tuple[int, int]:
    """(zombies among `pid`'s children now, those still zombies `wait` seconds later): in a crash loop a
    child is a zombie for the moment between its exit and its reaping; one that stays is a leak."""
    first = zombie_children(pid)
    time.sleep(wait)
    return len(first), len(first & zombie_children(pid))


def env_marked(state: Path) -> dict[int, dict[str, str]]:
    """Live processes whose environment carries ORCH_STATE_DIR=<state> (resolved): pid -> their ORCH_* marks."""
    mark = b"ORCH_STATE_DIR=" + os.fsencode(str(state))
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            items = read_bytes(f"/proc/{entry}/environ").split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if mark in items and alive(int(entry)):
            found[int(entry)] = {k.decode(): v.decode(errors="replace") for k, _, v in
                                 (item.partition(b"=") for item in items) if k.startswith(b"ORCH_")}
    return found


def daemons_of(state: Path) -> list[int]:
    """Live `orchestrator --state-dir <state> daemon` processes."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = cmdline(int(entry))
        if not argv or argv[-1] != "daemon" or "--state-dir" not in argv:
            continue
        given = argv[argv.index("--state-dir") + 1]
        if os.path.realpath(given) == str(state) and alive(int(entry)):
            found.append(int(entry))
    return found


def ours() -> set[int]:
    """For the final sweep: everything marked for a state dir of this run, its daemons, our `sleep`s."""
    found = set(marks(f"3600.{TOKEN}")())
    for state in STATE_DIRS:
        found |= set(env_marked(state)) | set(daemons_of(state))
    return found


# -- talking to the daemon --------------------------------------------------------------------------------


def raw_request(daemon: Daemon, method: str, route: str, timeout: float = 30,
                body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    """(status, body) of one request on the daemon's socket; raises OSError or HTTPException."""
    connection = _UnixHTTP(str(daemon.state / "orchestrator.sock"), timeout)
    try:
        if body is None:
            connection.request(method, "/api/v1" + route)
        else:
            connection.request(method, "/api/v1" + route, body=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def timed_request(daemon: Daemon, method: str, route: str, timeout: float = 30,
                  body: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"status", "ms", "error", "answer"} of one request: error is None only for a 2xx answer that is JSON
    (then in "answer", which the report leaves out)."""
    t0 = time.perf_counter()
    status, error, answer = None, None, None
    try:
        status, payload = raw_request(daemon, method, route, timeout, body)
        if status >= 400:
            error = f"HTTP {status}: {payload[:300].decode(errors='replace')}"
        else:
            answer = json.loads(payload)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = repr(exc)
    return {"status": status, "ms": (time.perf_counter() - t0) * 1000, "error": error, "answer": answer}


def without_answer(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "answer"}


def restarts(daemon: Daemon, key: str) -> int:
    for document in daemon.request("/objects")["objects"]:
        if document["key"] == key:
            return int(document["restarts"])
    raise BenchError(f"no object {key}")


def running_pid(daemon: Daemon, key: str) -> int | None:
    pids = daemon.pid_map().get(key) or [None]
    return pids[0]


def apply(daemon: Daemon, path: Path) -> int:
    """`orchestrator apply -f path` (starting the daemon); the daemon's pid."""
    daemon.cli("apply", "-f", str(path))
    pid = daemon.pid()
    if pid is None:
        raise BenchError(f"no daemon for {daemon.state} after apply")
    return pid


def shut_down(daemon: Daemon) -> dict[str, Any]:
    """`orchestrator shutdown`, then what is left: processes carrying the state dir's mark once it returned
    (and the daemon was gone), and whether the daemon itself was. Then kills and reaps whatever remains
    (bench_daemon's stop). Never raises."""
    result: dict[str, Any] = {"shutdown_s": None, "error": None, "daemon_left": False, "leftovers": 0,
                              "leftover_processes": []}
    pid = daemon.pid()
    if pid is not None:
        try:
            result["shutdown_s"], _ = daemon.cli("shutdown", "--timeout", "30", timeout=60)
        except (BenchError, subprocess.TimeoutExpired) as error:
            result["error"] = str(error)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        result["daemon_left"] = alive(pid)
    left = env_marked(daemon.state)
    result["leftovers"] = len(left)
    result["leftover_processes"] = [{"pid": p, "argv": cmdline(p), "state": proc_state(p), **marks_}
                                    for p, marks_ in sorted(left.items())]
    result["killed_after"] = daemon.stop()["leftovers"]
    if result["leftovers"] or result["daemon_left"] or result["error"]:
        log(f"  WARNING after shutdown of {daemon.state}: {json.dumps(result)}")
    return result


# -- 1. a crash loop ---------------------------------------------------------------------------------------

CRASH_FLOOR = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time

    n, interval, argv = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    started = None
    for _ in range(n):
        if started is not None and started + interval > time.monotonic():
            time.sleep(started + interval - time.monotonic())
        started = time.monotonic()
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True).wait()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(json.dumps({"crashes": n, "wall_s": wall, "cpu_s": cpu}))
    """
)


def crash_floor(n: int) -> dict[str, Any]:
    """The bare Python respawn loop of CRASH_COMMAND, paced as the daemon's planner paces a crash loop."""
    done = subprocess.run([sys.executable, "-c", CRASH_FLOOR, str(n), str(MIN_START_INTERVAL), *CRASH_COMMAND],
                          env=bench_daemon.ENV, capture_output=True, text=True, check=True, timeout=300)
    floor = json.loads(done.stdout)
    floor["per_second"] = floor["crashes"] / floor["wall_s"]
    floor["cpu_percent"] = 100 * floor["cpu_s"] / floor["wall_s"]
    floor["cpu_ms_per_crash"] = 1000 * floor["cpu_s"] / floor["crashes"]
    return floor


def crash_loop(label: str) -> tuple[Daemon, Path]:
    # The default multiplier (2): a zero-backoff loop past its 1,025th crash in a row once waited 300 s, when
    # 0 * 2**1024 overflowed; "loop stopped before the end" below would show it.
    return new_daemon(label, process_doc("crasher", CRASH_COMMAND, restartPolicy="Always",
                                         backoff={"initialSeconds": 0}))


def wait_restarts(daemon: Daemon, key: str, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        count = restarts(daemon, key)
        if count >= at_least:
            return count
        if time.monotonic() > deadline:
            raise BenchError(f"{key}: {count} restarts after {timeout:g} s, waited for {at_least}")
        time.sleep(0.05)


def bench_crashes(target: int, deadline_s: float, floor_crashes: int) -> dict[str, Any]:
    daemon, path = crash_loop("crashes")
    key = "default/crasher"
    out: dict[str, Any] = {"target_crashes": target}
    try:
        dpid = apply(daemon, path)
        first = wait_restarts(daemon, key, 1, 30)
        t0, cpu0 = time.monotonic(), cpu_seconds(dpid)
        out["fds_start"], out["threads_start"] = open_fds(dpid), len(threads(dpid))
        rss_start = None
        count, changed_at = first, t0
        out["stalled"] = False
        while count - first < target:
            time.sleep(0.25)  # each look costs the daemon one request; 4 a second is noise beside 50 crashes
            count, before = restarts(daemon, key), count
            now = time.monotonic()
            if count != before:
                changed_at = now
            if rss_start is None and now - t0 >= 3:
                rss_start = rss_kb(dpid)
            if now - changed_at > 3:
                out["stalled"] = True
                log(f"[crashes] the loop stopped: no restart for 3 s after {count - first} crashes")
                break
            if now - t0 > deadline_s:
                log(f"[crashes] deadline: {count - first} of {target} crashes in {deadline_s:g} s")
                break
        t1, cpu1 = time.monotonic(), cpu_seconds(dpid)
        wall = t1 - t0
        out.update({
            "crashes": count - first, "wall_s": wall, "per_second": (count - first) / wall,
            "cpu_percent": 100 * (cpu1 - cpu0) / wall,
            "cpu_ms_per_crash": 1000 * (cpu1 - cpu0) / max(count - first, 1),
            "fds_end": open_fds(dpid), "threads_end": len(threads(dpid)),
            "rss_start_kb": rss_start, "rss_end_kb": rss_kb(dpid),
        })
        out["zombies_seen"], out["zombies"] = lasting_zombies(dpid)
        out["restarts_counter"] = restarts(daemon, key)  # read first: every restart it counts followed an exit
        events = daemon.events_since(0)
        out["exited_events"] = sum(1 for e in events if e["type"] == "Exited" and e["object"] == key)
        log(f"[crashes] {out['crashes']} crashes in {wall:.1f} s ({out['per_second']:.1f}/s), daemon CPU "
            f"{out['cpu_percent']:.1f} % of a core ({out['cpu_ms_per_crash']:.2f} ms a crash), zombies "
            f"{out['zombies']} lasting ({out['zombies_seen']} seen), fds {out['fds_start']} -> {out['fds_end']}, "
            f"RSS {rss_start} -> {out['rss_end_kb']} kB; restarts {out['restarts_counter']}, Exited events "
            f"{out['exited_events']}")
    finally:
        out["stop"] = shut_down(daemon)
    out["floor"] = crash_floor(floor_crashes)
    log(f"[crashes] floor: bare Popen+wait loop, {floor_crashes} crashes at {out['floor']['per_second']:.1f}/s, "
        f"{out['floor']['cpu_percent']:.1f} % of a core ({out['floor']['cpu_ms_per_crash']:.2f} ms a crash)")
    return out


# -- 2. a locked state database ----------------------------------------------------------------------------

LOCK_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time

    db = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    db.execute("ROLLBACK")
    print("released", flush=True)
    """
)
READ_ROUTES = ("/health", "/objects", "/events?limit=1", "/revisions?limit=1", "/desired")


def probe_routes(daemon: Daemon) -> dict[str, dict[str, Any]]:
    return {route: without_answer(timed_request(daemon, "GET", route, timeout=10)) for route in READ_ROUTES}


def wait_respawn(daemon: Daemon, dpid: int, key: str, old: int, timeout: float) -> dict[str, Any]:
    """After `old` was killed: seconds until a new `sleep` child of the daemon runs (exec'd), and until GET
    /objects shows a new pid; the API's failed answers meanwhile."""
    name = key.split("/", 1)[1]
    t0 = time.perf_counter()
    run: dict[str, Any] = {"old_pid": old, "new_pid": None, "running_s": None, "api_s": None, "api_pid": None,
                           "api_errors": [], "marks_ok": None}
    while run["running_s"] is None or run["api_s"] is None:
        now = time.perf_counter() - t0
        if run["running_s"] is None:
            for child in children(dpid) - {old}:
                argv = cmdline(child)
                if argv and len(argv) == 2 and argv[1].startswith(daemon.prefix) and alive(child):
                    run["running_s"], run["new_pid"] = now, child
                    marked = env_marked(daemon.state).get(child, {})
                    run["marks_ok"] = marked.get("ORCH_NAME") == name
                    break
        if run["api_s"] is None:
            result = timed_request(daemon, "GET", "/objects", timeout=2)
            if result["error"]:
                run["api_errors"].append(result["error"])
            else:
                pid = next((r["pid"] for o in result["answer"]["objects"] if o["key"] == key
                            for r in o["replica_status"] if r["phase"] == "Running"), None)
                if pid is not None and pid != old:
                    run["api_s"], run["api_pid"] = time.perf_counter() - t0, pid
        if now > timeout:
            break
        time.sleep(0.002)
    return run


def read_line(stream: Any, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().strip() if ready else ""


def bench_locked_db(hold_s: float, kills: int) -> dict[str, Any]:
    daemon, path = new_daemon("locked-db")
    path.write_text(sleeper(daemon, "sleeper"))
    key = "default/sleeper"
    out: dict[str, Any] = {"hold_s": hold_s, "kills": [], "free_kills": [], "free_median_s": None,
                           "free_max_s": None}
    holder: subprocess.Popen[str] | None = None
    try:
        dpid = apply(daemon, path)
        daemon.wait_running(1)
        out["routes_free"] = probe_routes(daemon)
        for k in range(kills):  # the floor: the same kills with the database free
            time.sleep(0.5)
            old = running_pid(daemon, key)
            if old is None:
                raise BenchError(f"[locked-db] {key} is not running before free kill {k + 1}")
            os.kill(old, signal.SIGKILL)
            out["free_kills"].append(wait_respawn(daemon, dpid, key, old, timeout=10))
        free = [r["running_s"] for r in out["free_kills"] if r["running_s"] is not None]
        out["free_median_s"], out["free_max_s"] = median(free), max(free, default=None)
        log(f"[locked-db] floor: SIGKILL -> new process running with the database free, median "
            f"{_s(out['free_median_s'])} s, max {_s(out['free_max_s'])} s")
        time.sleep(0.5)
        since = daemon.last_event_id()
        holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(daemon.state / "state.db"), str(hold_s)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        if read_line(holder.stdout, 15) != "locked":
            raise BenchError("the lock holder did not get the write lock within 15 s")
        locked_at = time.monotonic()
        time.sleep(0.5)
        out["routes_locked"] = probe_routes(daemon)
        spacing = (hold_s - 3) / kills
        for k in range(kills):
            pause = locked_at + 1 + k * spacing - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            old = running_pid(daemon, key)
            if old is None:
                raise BenchError(f"[locked-db] {key} is not running before kill {k + 1}")
            os.kill(old, signal.SIGKILL)
            run = wait_respawn(daemon, dpid, key, old, timeout=10)
            run["under_lock"] = holder.poll() is None
            out["kills"].append(run)
            log(f"[locked-db] kill {k + 1}/{kills} of pid {old}: new process {run['new_pid']} running after "
                f"{_s(run['running_s'])} s, GET /objects shows it after {_s(run['api_s'])} s, API errors "
                f"{len(run['api_errors'])}, marks {run['marks_ok']}, lock still held {run['under_lock']}")
        desired = daemon.request("/desired")["specs"]
        out["apply_unchanged_locked"] = without_answer(timed_request(daemon, "POST", "/apply", timeout=10, body={
            "specs": desired, "paths": [str(path)], "prune": False, "dry_run": False, "watch": False,
            "user": "bench", "git_commit": None, "git_dirty": None}))
        out["routes_locked_end"] = probe_routes(daemon)
        out["held_s"] = time.monotonic() - locked_at
        if read_line(holder.stdout, hold_s + 15) != "released":
            raise BenchError("the lock holder did not release its lock")
        released_at = time.monotonic()
        holder.wait(10)
        out["free_again_s"] = None
        deadline = released_at + 10
        while time.monotonic() < deadline:
            events = daemon.events_since(since)
            if any(e["type"] == "StoreBusy" and "free again" in e["message"] for e in events):
                out["free_again_s"] = time.monotonic() - released_at
                break
            time.sleep(0.05)
        events = daemon.events_since(since)
        out["store_busy_events"] = [e["message"] for e in events if e["type"] == "StoreBusy"]
        out["exited_events_saved"] = sum(1 for e in events if e["type"] == "Exited" and e["object"] == key)
        log(f"[locked-db] after the release: 'free again' after {_s(out['free_again_s'])} s; Exited events saved "
            f"{out['exited_events_saved']} of {kills}; unchanged POST /apply under the lock: "
            f"{out['apply_unchanged_locked']['status']} ({out['apply_unchanged_locked']['error']})")
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        if holder is not None:
            holder.wait()
        out["stop"] = shut_down(daemon)
    times = [r["running_s"] for r in out["kills"] if r["running_s"] is not None]
    api_times = [r["api_s"] for r in out["kills"] if r["api_s"] is not None]
    out["respawned"] = len(times)
    out["running_median_s"], out["running_max_s"] = median(times), max(times, default=None)
    out["api_median_s"], out["api_max_s"] = median(api_times), max(api_times, default=None)
    out["api_errors"] = sum(len(r["api_errors"]) for r in out["kills"])
    out["all_under_lock"] = all(r["under_lock"] for r in out["kills"])
    return out


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# -- 3. concurrent clients and concurrent first applies ---------------------------------------------------


def hammer(daemon: Daemon, n_threads: int, per_thread: int) -> dict[str, Any]:
    """n_threads threads, released together, each making per_thread requests (GET /objects and /health
    alternated, half the threads starting with each)."""
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_threads)

    def work(index: int) -> None:
        mine = []
        try:
            barrier.wait(30)
        except threading.BrokenBarrierError:
            pass
        for i in range(per_thread):
            route = "/objects" if (i + index) % 2 == 0 else "/health"
            mine.append(without_answer(timed_request(daemon, "GET", route, timeout=30)))
        with lock:
            results.extend(mine)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n_threads)]
    t0 = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    wall = time.perf_counter() - t0
    latencies = [r["ms"] for r in results]
    failures = [r["error"] for r in results if r["error"]]
    return {"requests": len(results), "expected": n_threads * per_thread, "wall_s": wall,
            "failures": len(failures) + n_threads * per_thread - len(results), "failure_samples": failures[:3],
            "median_ms": median(latencies), "p99_ms": percentile(latencies, 0.99) if latencies else None,
            "max_ms": max(latencies, default=None)}


def concurrent_first_applies(n: int, label: str) -> dict[str, Any]:
    """n `apply` commands started at once against a fresh state dir with no daemon."""
    daemon, path = new_daemon(label)
    path.write_text("---\n".join(sleeper(daemon, name) for name in ("web", "worker")))
    out: dict[str, Any] = {}
    try:
        procs = []
        t0 = time.perf_counter()
        for i in range(n):
            with open(daemon.workdir / f"apply-{i}.out", "wb") as output:
                procs.append(subprocess.Popen(daemon.argv("apply", "-f", str(path)), env=bench_daemon.ENV,
                                              cwd=bench_daemon.TREE, stdin=subprocess.DEVNULL, stdout=output,
                                              stderr=subprocess.STDOUT))
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(90))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        out["wall_s"] = time.perf_counter() - t0
        out["succeeded"] = sum(1 for code in codes if code == 0)
        out["codes"] = codes
        out["failure_output"] = [(daemon.workdir / f"apply-{i}.out").read_text(errors="replace")[-500:]
                                 for i, code in enumerate(codes) if code != 0][:2]
        out["daemons_at_once"] = len(daemons_of(daemon.state))
        time.sleep(1)  # a daemon that lost the race for the lock is on its way out
        out["daemons"] = len(daemons_of(daemon.state))
        names = [m.get("ORCH_NAME") for m in env_marked(daemon.state).values()]
        out["replicas"] = len(names)
        out["duplicates"] = len(names) - len(set(names))
    finally:
        out["stop"] = shut_down(daemon)
    log(f"[concurrency] {label}: {out['succeeded']}/{n} applies succeeded in {out['wall_s']:.2f} s (codes "
        f"{out['codes']}), daemons {out['daemons']} ({out['daemons_at_once']} right after), replicas "
        f"{out['replicas']}, duplicates {out['duplicates']}, leftovers {out['stop']['leftovers']}")
    return out


def bench_concurrency(n_threads: int, per_thread: int, replicas: int, applies: int, repeat: int) -> dict[str, Any]:
    daemon, path = new_daemon("concurrency")
    path.write_text(sleeper(daemon, "pool", replicas=replicas))
    out: dict[str, Any] = {"threads": n_threads, "per_thread": per_thread, "replicas": replicas,
                           "applies": applies}
    try:
        apply(daemon, path)
        daemon.wait_running(replicas)
        alone = [timed_request(daemon, "GET", "/objects" if i % 2 == 0 else "/health") for i in range(30)]
        out["alone_median_ms"] = median([r["ms"] for r in alone])
        out["alone_failures"] = sum(1 for r in alone if r["error"])
        out["hammer"] = hammer(daemon, n_threads, per_thread)
        h = out["hammer"]
        log(f"[concurrency] {n_threads} threads x {per_thread} requests, {replicas} replicas: {h['failures']} "
            f"failed, median {h['median_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms, max {h['max_ms']:.1f} ms (one at a "
            f"time: median {out['alone_median_ms']:.1f} ms); samples of failures: {h['failure_samples']}")
    finally:
        out["hammer_stop"] = shut_down(daemon)
    solo, solo_path = new_daemon("first-apply-solo")
    solo_path.write_text("---\n".join(sleeper(solo, name) for name in ("web", "worker")))
    try:
        out["solo_apply_s"], _ = solo.cli("apply", "-f", str(solo_path))
    finally:
        out["solo_stop"] = shut_down(solo)
    out["first_applies"] = [concurrent_first_applies(applies, f"first-apply-{r}") for r in range(repeat)]
    runs = out["first_applies"]
    out["succeeded_min"] = min(r["succeeded"] for r in runs)
    out["daemons_max"] = max(r["daemons"] for r in runs)
    out["duplicates_max"] = max(r["duplicates"] for r in runs)
    out["leftovers_max"] = max(r["stop"]["leftovers"] for r in runs)
    out["first_apply_wall_median_s"] = median([r["wall_s"] for r in runs])
    return out


# -- 4. RSS with a stalled follower ------------------------------------------------------------------------


def bench_rss(stall_s: float, warmup_s: float) -> dict[str, Any]:
    daemon, path = crash_loop("rss")
    key = "default/crasher"
    out: dict[str, Any] = {"stall_s": stall_s, "warmup_s": warmup_s}
    follower: socket.socket | None = None
    try:
        dpid = apply(daemon, path)
        wait_restarts(daemon, key, 1, 30)
        # The floor: the same loop with no follower, for as long as the warm-up.
        restarts0, cpu0, t_start = restarts(daemon, key), cpu_seconds(dpid), time.monotonic()
        time.sleep(warmup_s)
        wall = time.monotonic() - t_start
        out["alone_crashes_per_second"] = (restarts(daemon, key) - restarts0) / wall
        out["alone_cpu_percent"] = 100 * (cpu_seconds(dpid) - cpu0) / wall
        follower = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        follower.connect(str(daemon.state / "orchestrator.sock"))
        follower.sendall(b"GET /api/v1/events?follow=1&since=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        t0 = time.monotonic()  # from here on, nothing is read from `follower` until the stall is over
        time.sleep(warmup_s)
        restarts0, cpu0, t_start = restarts(daemon, key), cpu_seconds(dpid), time.monotonic()
        out["fds_start"] = open_fds(dpid)
        samples = [rss_kb(dpid)]
        while time.monotonic() - t0 < warmup_s + stall_s:
            time.sleep(max(0.0, t_start + len(samples) - time.monotonic()))
            samples.append(rss_kb(dpid))
        wall = time.monotonic() - t_start
        out["crashes_per_second"] = (restarts(daemon, key) - restarts0) / wall
        out["cpu_percent"] = 100 * (cpu_seconds(dpid) - cpu0) / wall
        out["fds_end"] = open_fds(dpid)
        out["health_ms"] = timed_request(daemon, "GET", "/health")["ms"]
        out.update({"rss_kb": samples, "rss_start_kb": samples[0], "rss_max_kb": max(samples),
                    "rss_end_kb": samples[-1], "growth_kb": samples[-1] - samples[0],
                    "max_growth_kb": max(samples) - samples[0]})
        out["follower"] = drain(follower)
        log(f"[rss] stalled follower for {stall_s:g} s with a crash loop at {out['crashes_per_second']:.1f}/s: RSS "
            f"{out['rss_start_kb']} kB at start, max {out['rss_max_kb']}, end {out['rss_end_kb']} (growth "
            f"{out['growth_kb']} kB); daemon CPU {out['cpu_percent']:.1f} %, fds {out['fds_start']} -> "
            f"{out['fds_end']}; follower afterwards: {out['follower']}")
    finally:
        if follower is not None:
            follower.close()
        out["stop"] = shut_down(daemon)
    return out


def drain(sock: socket.socket, seconds: float = 2.0) -> dict[str, Any]:
    """Read what the stalled follower was sent (for `seconds` at most): bytes, event lines, whether the daemon
    had closed the stream."""
    sock.settimeout(0.2)
    received, closed = b"", False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            continue
        if not chunk:
            closed = True
            break
        received += chunk
    return {"bytes": len(received), "event_lines": received.count(b'"type"'), "closed_by_daemon": closed}


# -- the report --------------------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    env = report["environment"]
    commit = f" at {env['tree_commit']}" if env.get("tree_commit") else ""
    lines = [(f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; figures from this machine, "
              "this run; floor = the baseline named in each row, measured in the same run"),
             f"orchestrator from {env['package']}{commit}"]
    body: list[list[str]] = []

    def row(label: str, n: Any, floor: float | None, ours: float | None, fmt: str, target: str = "-",
            ok: bool | None = None) -> None:
        body.append(figure_row(label, n, floor, ours, fmt, target, ok))

    def stop_rows(stop: dict[str, Any], n: Any) -> None:
        row("  left behind after shutdown (marked)", n, None, stop["leftovers"], "{}", "0", stop["leftovers"] == 0)
        row("  daemon still alive after shutdown", n, None, int(stop["daemon_left"]), "{}", "0",
            not stop["daemon_left"])

    c = report.get("crashes")
    if c:
        f, n = c["floor"], c["crashes"]
        row("crashes: crash loop, crashes/s (floor: bare Popen loop)", n, f["per_second"], c["per_second"],
            "{:.1f}", f">= {c['target_crashes']} in time", n >= c["target_crashes"])
        row("  daemon CPU, % of one core", n, f["cpu_percent"], c["cpu_percent"], "{:.1f}", "< 25 %",
            c["cpu_percent"] < 25)
        row("  loop stopped before the end (no restart for 3 s)", n, None, int(c["stalled"]), "{}", "0",
            not c["stalled"])
        row("  daemon CPU per crash, ms", n, f["cpu_ms_per_crash"], c["cpu_ms_per_crash"], "{:.2f}")
        row("  lasting zombies among its children", n, None, c["zombies"], "{}", "0", c["zombies"] == 0)
        row("  zombies at one look (transient)", n, None, c["zombies_seen"], "{}")
        row("  Exited events saved (floor: the restarts counter)", n, c["restarts_counter"], c["exited_events"],
            "{}", ">= counter", c["exited_events"] >= c["restarts_counter"])
        row("  open fds of the daemon, end (floor: start)", n, c["fds_start"], c["fds_end"], "{}")
        row("  daemon RSS, kB, end (floor: at 3 s)", n, c["rss_start_kb"], c["rss_end_kb"], "{}")
        stop_rows(c["stop"], n)
    d = report.get("locked_db")
    if d:
        n = len(d["kills"])
        row(f"locked-db: SIGKILL -> new process running, s (median; db locked {d['hold_s']:g} s; floor: free)", n, d["free_median_s"],
            d["running_median_s"], "{:.3f}", "< 2 s", d["running_max_s"] is not None and d["running_max_s"] < 2
            and d["respawned"] == n)
        row("  same, max", n, d["free_max_s"], d["running_max_s"], "{:.3f}", "< 2 s",
            d["running_max_s"] is not None and d["running_max_s"] < 2)
        row("  GET /objects shows the new pid, s (median)", n, None, d["api_median_s"], "{:.3f}")
        row("  failed GET /objects while waiting", n, None, d["api_errors"], "{}", "0", d["api_errors"] == 0)
        row(f"  every kill while the lock was held ({d['held_s']:.1f} s)", n, None, int(d["all_under_lock"]),
            "{}", "1", d["all_under_lock"])
        for route in READ_ROUTES:
            free, locked = d["routes_free"][route], d["routes_locked"][route]
            row(f"  GET {route} under the lock, ms (floor: free) [{locked['status']}]", 1, free["ms"], locked["ms"],
                "{:.1f}", "2xx", locked["error"] is None)
        a = d["apply_unchanged_locked"]
        row(f"  POST /apply unchanged under the lock, ms [{a['status']}]", 1, None, a["ms"], "{:.1f}")
        row("  saved again after the release, s", 1, None, d["free_again_s"], "{:.2f}")
        row("  Exited events of the kills saved", n, None, d["exited_events_saved"], "{}", str(n),
            d["exited_events_saved"] >= n)
        stop_rows(d["stop"], 1)
    k = report.get("concurrency")
    if k:
        h = k["hammer"]
        label = f"{k['threads']}x{k['per_thread']}"
        row(f"concurrency: {label} GET /objects|/health, failures ({k['replicas']} replicas)", h["expected"], None,
            h["failures"], "{}", "0", h["failures"] == 0)
        row("  latency median, ms (floor: one client at a time)", h["requests"], k["alone_median_ms"],
            h["median_ms"], "{:.1f}")
        row("  latency p99, ms", h["requests"], k["alone_median_ms"], h["p99_ms"], "{:.1f}")
        row("  latency max, ms", h["requests"], None, h["max_ms"], "{:.1f}")
        stop_rows(k["hammer_stop"], 1)
        runs = k["first_applies"]
        row(f"{k['applies']} first applies at once: succeeded (min of runs)", len(runs), None, k["succeeded_min"],
            "{}", f"{k['applies']}/{k['applies']}", k["succeeded_min"] == k["applies"])
        row("  daemons afterwards (max of runs)", len(runs), None, k["daemons_max"], "{}", "1", k["daemons_max"] == 1)
        row("  duplicate replicas (max of runs)", len(runs), None, k["duplicates_max"], "{}", "0",
            k["duplicates_max"] == 0)
        row("  all applies done, s (median; floor: one cold apply)", len(runs), k["solo_apply_s"],
            k["first_apply_wall_median_s"], "{:.2f}")
        row("  left behind after shutdown (max of runs)", len(runs), None, k["leftovers_max"], "{}", "0",
            k["leftovers_max"] == 0)
    r = report.get("rss")
    if r:
        n = len(r["rss_kb"])
        floor_growth = None
        if c and c.get("rss_start_kb") is not None:
            floor_growth = c["rss_end_kb"] - c["rss_start_kb"]
        row(f"rss: growth with a stalled follower {r['stall_s']:g} s, kB (floor: crash loop alone)", n, floor_growth,
            r["growth_kb"], "{}", "<= 5120 kB", abs(r["growth_kb"]) <= 5120)
        row("  RSS at start (after warm-up), kB", n, None, r["rss_start_kb"], "{}")
        row("  RSS max, kB", n, None, r["rss_max_kb"], "{}", "<= start + 5120", r["max_growth_kb"] <= 5120)
        row("  RSS end, kB", n, None, r["rss_end_kb"], "{}")
        row(f"  crashes/s meanwhile (floor: {r['warmup_s']:g} s before, no follower)", n,
            r["alone_crashes_per_second"], r["crashes_per_second"], "{:.1f}")
        row("  daemon CPU meanwhile, % of one core (floor: the same)", n, r["alone_cpu_percent"], r["cpu_percent"],
            "{:.1f}", "< 25 %", r["cpu_percent"] < 25)
        row("  GET /health with the follower stalled, ms", 1, None, r["health_ms"], "{:.1f}")
        row("  follower: event lines read when drained after (2 s)", 1, None, r["follower"]["event_lines"], "{}")
        row("  follower: stream closed by the daemon", 1, None, int(r["follower"]["closed_by_daemon"]), "{}")
        stop_rows(r["stop"], n)
    lines += table_lines(body)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=NAMES, help="run one measurement only")
    parser.add_argument("--crashes", type=int, default=1000, help="crashes to wait for in (1) (default 1000)")
    parser.add_argument("--crash-deadline", type=float, default=120, help="seconds at most for them (default 120)")
    parser.add_argument("--floor-crashes", type=int, default=300, help="crashes of the floor loop (default 300)")
    parser.add_argument("--hold-seconds", type=float, default=20, help="how long (2) holds the lock (default 20)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs under the lock in (2) (default 3)")
    parser.add_argument("--threads", type=int, default=30, help="client threads in (3a) (default 30)")
    parser.add_argument("--requests", type=int, default=10, help="requests per thread in (3a) (default 10)")
    parser.add_argument("--replicas", type=int, default=20, help="replicas running in (3a) (default 20)")
    parser.add_argument("--applies", type=int, default=8, help="concurrent first applies in (3b) (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of (3b) (default 3)")
    parser.add_argument("--stall-seconds", type=float, default=25, help="how long (4) stalls (default 25)")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the source tree whose orchestrator is measured (default: this checkout)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    tree = args.tree.resolve()
    if not (tree / "orchestrator" / "__main__.py").is_file():
        parser.error(f"--tree {args.tree}: no orchestrator/__main__.py there")
    if args.kills < 1 or args.hold_seconds < 3 + args.kills:
        parser.error("--kills must be at least 1 and --hold-seconds at least 3 + --kills")
    use_tree(tree)
    selected = [args.only] if args.only else list(NAMES)

    def measure() -> dict[str, Any]:
        global WORKROOT
        WORKROOT = Path(tempfile.mkdtemp(prefix="bench-faults-"))
        try:
            report: dict[str, Any] = {"environment": {
                **environment(), "tree": str(bench_daemon.TREE), "tree_commit": tree_commit(bench_daemon.TREE),
                "package": prepare_tree(), "floor_python_ms": python_floor() * 1000}}
            if "crashes" in selected:
                report["crashes"] = bench_crashes(args.crashes, args.crash_deadline, args.floor_crashes)
            if "locked-db" in selected:
                report["locked_db"] = bench_locked_db(args.hold_seconds, args.kills)
            if "concurrency" in selected:
                report["concurrency"] = bench_concurrency(args.threads, args.requests, args.replicas, args.applies,
                                                          args.repeat)
            if "rss" in selected:
                report["rss"] = bench_rss(args.stall_seconds, 3.0)
            return report
        finally:
            left = kill_and_reap_orphans(ours)
            if left:
                log(f"killed and reaped {left} processes left behind")
            shutil.rmtree(WORKROOT, ignore_errors=True)

    return run_bench(measure, table, args.json, ours)


if __name__ == "__main__":
    sys.exit(main())
