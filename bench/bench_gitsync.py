"""GitSync end to end: a real daemon following a real bare repository (file://, the `git` CLI), measured on
what the GitSync issue promises: a pushed commit running within 1 s by webhook and within interval + 1 s by
polling, a no-op pass under 50 ms of daemon CPU, and an idle sync costing at most 0.1 % of a core.

    python bench/bench_gitsync.py [--runs 5] [--idle-seconds 65] [--json]

One daemon (`daemon --http 127.0.0.1:PORT`) runs a sync `prod` of origin.git's main, path deploy/, that owns
one process `web` (`sleep N`; a change is another N, so the process restarts with a new pid). Beside each
figure, a floor measured in the same run:

  1. webhook: from just after `git push` returns (the signed POST /hooks/git/prod included) to `web` having
     a new pid in phase Running, /objects polled every 5 ms; runs are WEBHOOK_GAP_SECONDS apart, since the
     daemon takes at most one webhook pass per sync per that gap. Floor: the same change of an unsynced
     process `floor-web` (a sync refuses an apply of what it owns), sent as `orchestrator apply -f` sends it
     (POST /apply on the control socket, the body built by the CLI's own _Manifests, from this process: no
     CLI start-up in it), timed from the request to the new pid running.
  2. polling, intervalSeconds 10: a push at a random moment of the poll period (seeded), to the new pid
     running. Floor: the interval itself.
  3. a no-op pass (POST /gitsyncs/prod/sync that answers "unchanged"): the daemon's own CPU (utime + stime of
     all its threads) per pass over NOOP_PASSES passes, and, apart, the CPU of the git children it reaped
     meanwhile (cutime + cstime); checked to add no revision and no SyncFetched/SyncApplied event. Floor: the
     daemon's CPU per GET /health (what any request costs), over HEALTH_REQUESTS of them. CPU times come in
     10 ms ticks: a figure per pass is good to 10 ms / NOOP_PASSES.
  4. idle, intervalSeconds 60: the daemon's CPU over --idle-seconds (so one poll falls in it), as % of one
     core, and its wake-ups (context switches of all its threads) per second. Floor: a second daemon, same
     command line, running one applied process and no sync, measured over the same seconds.

This script makes itself a child subreaper: whatever a daemon leaves behind is killed and reaped, whatever
happens.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from bench_engine import context_switches
from benchlib import BenchError, environment, figure_row, log, measured_env, run_bench, table_lines

from orchestrator.cli.client import Client
from orchestrator.cli.commands import _Manifests
from orchestrator.daemon.gitsyncs import WEBHOOK_GAP_SECONDS

ROOT = Path(__file__).resolve().parent.parent
POLL_INTERVAL = 10.0  # the schema's minimum
IDLE_INTERVAL = 60.0
POLL_RUNS = 3
NOOP_PASSES = 20
HEALTH_REQUESTS = 200  # CPU times come in 10 ms ticks: 20 requests of well under 1 ms would read 0
OBSERVE_EVERY = 0.005  # seconds between two GET /objects while waiting for a new pid


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def manifest(name: str, seconds: int) -> str:
    return (f"apiVersion: orchestrator/v1\nkind: Process\nmetadata: {{name: {name}}}\n"
            f"spec: {{command: [\"sleep\", \"{seconds}\"], shutdown: {{timeoutSeconds: 0.5}}}}\n")


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


class Repo:
    """A bare origin.git and a clone of it that commits deploy/web.yaml and pushes to main."""

    def __init__(self, work: Path) -> None:
        self.origin = work / "origin.git"
        self.clone = work / "clone"
        git("-c", "init.defaultBranch=main", "init", "--bare", "-q", str(self.origin))
        git("-c", "init.defaultBranch=main", "init", "-q", str(self.clone))
        for key, value in (("user.name", "bench"), ("user.email", "bench@localhost"), ("commit.gpgsign", "false")):
            git("config", key, value, cwd=self.clone)
        git("remote", "add", "origin", str(self.origin), cwd=self.clone)
        (self.clone / "deploy").mkdir()

    @property
    def url(self) -> str:
        return self.origin.as_uri()

    def push(self, seconds: int) -> str:
        """Commit web at `sleep seconds` and push it; the commit's sha."""
        (self.clone / "deploy" / "web.yaml").write_text(manifest("web", seconds))
        git("add", "-A", cwd=self.clone)
        git("commit", "-q", "-m", f"web sleeps {seconds}", cwd=self.clone)
        git("push", "-q", "origin", "HEAD:main", cwd=self.clone)
        return git("rev-parse", "HEAD", cwd=self.clone)


class Daemon:
    def __init__(self, work: Path, name: str) -> None:
        self.work = work / name
        self.work.mkdir()
        self.state = self.work / "state"
        self.port = free_port()
        self.env = measured_env(ROOT)
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def start(self) -> None:
        argv = [sys.executable, "-m", "orchestrator", "--state-dir", str(self.state), "daemon",
                "--http", f"127.0.0.1:{self.port}"]
        with open(self.work / "daemon.log", "wb") as out:
            self.process = subprocess.Popen(argv, env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not Client(self.state, timeout=5).ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the daemon did not answer: {self.log_tail()}")
            time.sleep(0.05)
        self.pid = self.process.pid

    def log_tail(self) -> str:
        try:
            return (self.work / "daemon.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def api(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return Client(self.state, timeout=60).request(method, route, body)

    def pids(self, name: str) -> list[tuple[int | None, str]]:
        for one in self.api("GET", "/objects")["objects"]:
            if one["name"] == name:
                return [(r.get("pid"), r.get("phase", "")) for r in one["replica_status"]]
        return []

    def running_pid(self, name: str) -> int | None:
        return next((pid for pid, phase in self.pids(name) if phase == "Running" and pid), None)

    def wait_new_pid(self, name: str, old: int | None, seconds: float, what: str) -> int:
        deadline = time.monotonic() + seconds
        while True:
            pid = next((p for p, phase in self.pids(name) if phase == "Running" and p and p != old), None)
            if pid is not None:
                return pid
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {seconds:g} s waiting for {what}; objects: "
                                 f"{self.pids(name)}; daemon log: {self.log_tail()}")
            time.sleep(OBSERVE_EVERY)

    def apply(self, path: Path) -> dict[str, Any]:
        """What `orchestrator apply -f PATH` sends, sent from here."""
        body = {**_Manifests([str(path)]).body(), "paths": [str(path)], "prune": False, "dry_run": False,
                "force": False, "watch": False, "user": "bench", "git_commit": None, "git_dirty": None}
        return self.api("POST", "/apply", body)

    def cpu(self) -> tuple[float, float]:
        """(its own CPU seconds, all threads; the CPU seconds of the children it has reaped)."""
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system, times.children_user + times.children_system

    def stop(self) -> None:
        try:
            self.api("POST", "/shutdown")
        except Exception as error:  # noqa: BLE001 - whatever is left is killed by run_bench
            log(f"shutdown {self.work.name}: {error}")
        deadline = time.monotonic() + 20
        while (self.state / "orchestrator.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


class Sync:
    """The sync `prod` of a daemon, added and changed through the API, its webhook called over HTTP."""

    def __init__(self, daemon: Daemon, repo: Repo, work: Path) -> None:
        self.daemon = daemon
        self.repo = repo
        self.secret = work / "webhook-secret"
        fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(16).hex().encode())
        os.close(fd)

    def put(self, interval: float) -> str:
        document = {"apiVersion": "orchestrator/v1", "kind": "GitSync", "metadata": {"name": "prod"},
                    "spec": {"repo": self.repo.url, "ref": {"branch": "main"}, "path": "deploy",
                             "intervalSeconds": interval, "webhook": {"secretFile": str(self.secret)}}}
        return str(self.daemon.api("POST", "/gitsyncs", {"document": document})["result"])

    def status(self) -> dict[str, Any]:
        return self.daemon.api("GET", "/gitsyncs/prod")

    def now(self) -> dict[str, Any]:
        return self.daemon.api("POST", "/gitsyncs/prod/sync", {"force": False})

    def hook(self) -> int:
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        signature = "sha256=" + hmac.new(self.secret.read_bytes(), body, hashlib.sha256).hexdigest()
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=10)
        try:
            conn.request("POST", "/hooks/git/prod", body, {"X-Hub-Signature-256": signature,
                                                           "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def wait_applied(self, sha: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.status().get("last_applied_revision") != f"main@sha1:{sha}":
            if time.monotonic() > deadline:
                raise BenchError(f"gitsync/prod did not apply {sha[:7]} within {seconds:g} s: "
                                 f"{json.dumps(self.status())[:2000]}")
            time.sleep(0.05)

    def check_applied(self, sha: str, what: str) -> None:
        applied = self.status().get("last_applied_revision")
        if applied != f"main@sha1:{sha}":
            raise BenchError(f"{what}: web restarted, but the sync says it applied {applied}, not {sha[:7]}")


def by_webhook(daemon: Daemon, sync: Sync, floor_file: Path, runs: int, version: list[int]) -> dict[str, Any]:
    ours, floor = [], []
    last_hook = -1e9
    for _ in range(runs):
        time.sleep(max(0.0, last_hook + WEBHOOK_GAP_SECONDS + 0.2 - time.monotonic()))
        old = daemon.running_pid("web")
        version[0] += 1
        sha = sync.repo.push(version[0])
        began = time.perf_counter()
        last_hook = time.monotonic()
        status = sync.hook()
        if status != 202:
            raise BenchError(f"POST /hooks/git/prod answered {status}, not 202")
        daemon.wait_new_pid("web", old, 30, "web restarted by the webhook")
        ours.append(time.perf_counter() - began)
        sync.check_applied(sha, "webhook")

        old = daemon.running_pid("floor-web")
        version[0] += 1
        floor_file.write_text(manifest("floor-web", version[0]))
        began = time.perf_counter()
        daemon.apply(floor_file)
        daemon.wait_new_pid("floor-web", old, 30, "floor-web restarted by apply")
        floor.append(time.perf_counter() - began)
        log(f"webhook: {ours[-1] * 1000:.0f} ms, apply: {floor[-1] * 1000:.0f} ms")
    return {"seconds": ours, "floor_seconds": floor}


def by_polling(daemon: Daemon, sync: Sync, runs: int, version: list[int], rng: random.Random) -> dict[str, Any]:
    result = sync.put(POLL_INTERVAL)
    if result != "configured":
        raise BenchError(f"POST /gitsyncs with intervalSeconds {POLL_INTERVAL:g}: {result}, not configured")
    seconds, delays = [], []
    for _ in range(runs):
        delay = rng.uniform(0, POLL_INTERVAL)
        delays.append(delay)
        time.sleep(delay)
        old = daemon.running_pid("web")
        version[0] += 1
        sha = sync.repo.push(version[0])
        began = time.perf_counter()
        daemon.wait_new_pid("web", old, POLL_INTERVAL * 3, f"web restarted by a poll every {POLL_INTERVAL:g} s")
        seconds.append(time.perf_counter() - began)
        sync.check_applied(sha, "polling")
        log(f"polling: pushed {delay:.1f} s after the last change, running {seconds[-1]:.2f} s later")
    return {"interval": POLL_INTERVAL, "seconds": seconds, "delays": delays}


def noop_passes(daemon: Daemon, sync: Sync) -> dict[str, Any]:
    if sync.now()["outcome"]["result"] != "unchanged":  # warm: whatever a poll or a webhook left to do is done
        raise BenchError("the warm-up pass was not a no-op")
    events = daemon.api("GET", "/events")["events"]
    last_event = max((e["id"] for e in events), default=0)
    revisions = [r["number"] for r in daemon.api("GET", "/revisions")["revisions"]]

    self_before, kids_before = daemon.cpu()
    walls, results = [], []
    for _ in range(NOOP_PASSES):
        began = time.perf_counter()
        results.append(sync.now()["outcome"]["result"])
        walls.append(time.perf_counter() - began)
    self_after, kids_after = daemon.cpu()

    health_before, _ = daemon.cpu()
    health_walls = []
    for _ in range(HEALTH_REQUESTS):
        began = time.perf_counter()
        daemon.api("GET", "/health")
        health_walls.append(time.perf_counter() - began)
    health_after, _ = daemon.cpu()

    after = daemon.api("GET", f"/events?since={last_event}")["events"]
    noisy = [e for e in after if e["id"] > last_event and e["type"] in ("SyncFetched", "SyncApplied")]
    added = [r["number"] for r in daemon.api("GET", "/revisions")["revisions"] if r["number"] not in revisions]
    return {"passes": NOOP_PASSES, "health_requests": HEALTH_REQUESTS, "results": sorted(set(results)),
            "all_unchanged": all(r == "unchanged" for r in results),
            "cpu_ms": (self_after - self_before) * 1000 / NOOP_PASSES,
            "git_children_cpu_ms": (kids_after - kids_before) * 1000 / NOOP_PASSES,
            "wall_ms": statistics.median(walls) * 1000,
            "floor_cpu_ms": (health_after - health_before) * 1000 / HEALTH_REQUESTS,
            "floor_wall_ms": statistics.median(health_walls) * 1000,
            "revisions_added": added, "fetch_or_apply_events": [f"{e['type']}: {e['message']}" for e in noisy]}


def idle(daemons: dict[str, Daemon], seconds: float) -> dict[str, Any]:
    """Both daemons over the same `seconds`, observed from outside only (/proc), so measuring wakes neither."""
    before = {k: (d.cpu(), context_switches(d.pid)) for k, d in daemons.items()}
    began = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - began
    after = {k: (d.cpu(), context_switches(d.pid)) for k, d in daemons.items()}
    report: dict[str, Any] = {"seconds": elapsed}
    for key in daemons:
        (self0, kids0), switches0 = before[key]
        (self1, kids1), switches1 = after[key]
        report[key] = {"cpu_percent": (self1 - self0) / elapsed * 100,
                       "git_children_cpu_percent": (kids1 - kids0) / elapsed * 100,
                       "wakeups_per_second": (switches1 - switches0) / elapsed}
    return report


def measure(runs: int, idle_seconds: float) -> dict[str, Any]:
    report: dict[str, Any] = {"env": environment(), "runs": runs, "idle_seconds": idle_seconds}
    rng = random.Random(1)
    version = [1000]
    with tempfile.TemporaryDirectory(prefix="bench-gitsync-") as tmp:
        work = Path(tmp)
        repo = Repo(work)
        sha = repo.push(version[0])
        synced, plain = Daemon(work, "synced"), Daemon(work, "plain")
        try:
            synced.start()
            plain.start()
            floor_file = work / "floor" / "floor-web.yaml"
            floor_file.parent.mkdir()
            floor_file.write_text(manifest("floor-web", version[0]))
            for daemon in (synced, plain):
                daemon.apply(floor_file)
                daemon.wait_new_pid("floor-web", None, 30, "floor-web started")
            sync = Sync(synced, repo, work)
            if sync.put(3600) != "created":
                raise BenchError("POST /gitsyncs did not create gitsync/prod")
            sync.wait_applied(sha, 30)
            synced.wait_new_pid("web", None, 30, "web started by the sync")

            report["webhook"] = by_webhook(synced, sync, floor_file, runs, version)
            report["polling"] = by_polling(synced, sync, POLL_RUNS, version, rng)
            if sync.put(IDLE_INTERVAL) != "configured":
                raise BenchError(f"POST /gitsyncs with intervalSeconds {IDLE_INTERVAL:g} was not configured")
            report["noop"] = noop_passes(synced, sync)
            log(f"no-op: {json.dumps(report['noop'])}")
            fetched = sync.status().get("last_fetch_at")
            report["idle"] = idle({"synced": synced, "plain": plain}, idle_seconds)
            report["idle"]["polled"] = sync.status().get("last_fetch_at") != fetched
            log(f"idle: {json.dumps(report['idle'])}")
        finally:
            for daemon in (synced, plain):
                if daemon.process is not None:
                    daemon.stop()
    return report


def table(report: dict[str, Any]) -> str:
    rows = []
    hook = report["webhook"]
    for label, pick in (("median", statistics.median), ("max", max)):
        ours, floor = pick(hook["seconds"]), pick(hook["floor_seconds"])
        rows.append(figure_row(f"webhook: push -> new pid running, {label} (s)", len(hook["seconds"]), floor, ours,
                               "{:.3f}", "<= 1 s", ours <= 1.0))
    poll = report["polling"]
    limit = poll["interval"] + 1
    for label, pick in (("median", statistics.median), ("max", max)):
        ours = pick(poll["seconds"])
        rows.append(figure_row(f"polling {poll['interval']:g} s: push -> new pid running, {label} (s)",
                               len(poll["seconds"]), poll["interval"], ours, "{:.2f}", f"<= {limit:g} s",
                               ours <= limit))
    noop = report["noop"]
    clean = noop["all_unchanged"] and not noop["revisions_added"] and not noop["fetch_or_apply_events"]
    rows.append(figure_row("no-op pass: daemon CPU per pass (ms)", noop["passes"], noop["floor_cpu_ms"],
                           noop["cpu_ms"], "{:.1f}", "< 50 ms", noop["cpu_ms"] < 50 and clean))
    rows.append(figure_row("no-op pass: git children CPU per pass (ms)", noop["passes"], None,
                           noop["git_children_cpu_ms"], "{:.1f}", "-", None))
    rows.append(figure_row("no-op pass: wall per pass (ms)", noop["passes"], noop["floor_wall_ms"], noop["wall_ms"],
                           "{:.1f}", "-", None))
    idle_ = report["idle"]
    synced, plain = idle_["synced"], idle_["plain"]
    seconds = f"{idle_['seconds']:.0f}s"
    rows.append(figure_row(f"idle, sync every {IDLE_INTERVAL:g} s: daemon CPU (% of a core)", seconds,
                           plain["cpu_percent"], synced["cpu_percent"], "{:.3f}", "<= 0.1 %",
                           synced["cpu_percent"] <= 0.1))
    rows.append(figure_row("idle: git children CPU (% of a core)", seconds, plain["git_children_cpu_percent"],
                           synced["git_children_cpu_percent"], "{:.3f}", "-", None))
    rows.append(figure_row("idle: daemon wake-ups per second", seconds, plain["wakeups_per_second"],
                           synced["wakeups_per_second"], "{:.2f}", "-", None))
    env = report["env"]
    head = (f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; git over file://; floors: "
            f"apply -f of an unsynced process (webhook), the interval (polling), GET /health (no-op), "
            f"a second daemon without a sync over the same seconds (idle)")
    checks = (f"no-op passes: results {noop['results']}, revisions added {noop['revisions_added'] or 'none'}, "
              f"SyncFetched/SyncApplied events {noop['fetch_or_apply_events'] or 'none'}; "
              f"a poll fell in the idle window: {'yes' if idle_['polled'] else 'NO'}; polling pushes "
              f"{', '.join(f'{d:.1f}' for d in poll['delays'])} s after the previous change")
    return "\n".join([head, *table_lines(rows), checks])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="webhook changes (and as many floor applies)")
    parser.add_argument("--idle-seconds", type=float, default=65.0, help="the idle window; one poll every 60 s")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.runs < 1 or args.idle_seconds <= 0:
        parser.error("--runs must be at least 1 and --idle-seconds above 0")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return run_bench(lambda: measure(args.runs, args.idle_seconds), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
