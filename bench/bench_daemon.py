"""Daemon benchmark: apply with 1 of N changed, SIGKILL + restart with N running, and the `get` round trip.

Everything goes through the real CLI (`python -m orchestrator --state-dir D apply|get|daemon|shutdown`) and
the real daemon, observed from outside: the daemon's children through /proc/<pid>/task/*/children, every
benchmark process through a unique `sleep 3600.<token>` argv in /proc/*/cmdline, and the daemon's own
answer over its Unix socket (a few lines of stdlib HTTP here, so polling costs no Python start-up).

    python bench/bench_daemon.py [--sizes 500,200] [--repeat 3] [--get-runs 10] [--layout file|dir] [--tree PATH]
                                 [--json]

1. apply with 1 of N changed (N = first size): N Processes `sleep 3600.<token>` (one file of N documents,
   or with --layout dir one file per document), all running; then ONE process's command is changed and
   the time from launching `apply` to the new process running with the new command (and the old one gone)
   is measured by polling the daemon's children. Other processes whose pid changed are counted. The
   daemon's event times (Applied, Started) split that into the `apply` command's side and the daemon's.
   Then the same change as a bare POST /apply (the body `apply` sends) from this live process: the
   daemon's part alone, without Python start-up, YAML or schema validation.
2. daemon SIGKILL + restart with N running (N = second size): SIGKILL the daemon, start `daemon` again,
   time until it answers with all N Running under the same pids; count duplicates and lost processes.
3. `get` round trip with those N running: wall time of `python -m orchestrator get`, and of `python -m
   orchestrator --version` (start-up alone), beside `python -c pass`, plus `python -X importtime` top
   imports of the get path.

Targets are DESIGN.md section 4 (`--version` at most 1.5x the floor, `get` at most 2.5x). The floor of
each is `python -c pass` measured in the same run (the start-up every CLI command and a restarted daemon
pay). Measured commands run without PYTHONDONTWRITEBYTECODE, after warming the bytecode cache. The
package measured is the one in --tree PATH (default: the checkout this script is in): every command runs
in PATH with PATH first on PYTHONPATH, so an older checkout (`git worktree add`) is measured by this same
bench code, for before/after figures. This script makes itself a child subreaper, so whatever a daemon
leaves behind (it is re-parented here once `apply` exits, and so are its children when it is SIGKILLed)
is killed and reaped, whatever happens (exception, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib import (
    BenchError,
    alive,
    children,
    environment,
    figure_row,
    imported_package,
    kill_and_reap_orphans,
    log,
    measured_env,
    median,
    read_bytes,
    reap,
    run_bench,
    table_lines,
    tree_commit,
    warm_bytecode,
)

ROOT = Path(__file__).resolve().parent.parent


# -- the environment of every measured command ---------------------------------------------------------

# The source tree whose `orchestrator` is measured (--tree): every command runs in it, with it first on
# PYTHONPATH (so does the daemon `apply` starts: it inherits both), without PYTHONDONTWRITEBYTECODE.
TREE = ROOT
ENV = measured_env(TREE)


def use_tree(tree: Path) -> None:
    global TREE, ENV
    TREE, ENV = tree, measured_env(tree)


def prepare_tree() -> str:
    """Warm the bytecode cache of TREE's package; returns where `orchestrator` is imported from, checked to be
    TREE/orchestrator."""
    warm_bytecode(TREE, ENV, [sys.executable, "-m", "orchestrator", "--version"])
    log(f"bytecode cache warmed: `python -m compileall -q {TREE / 'orchestrator'}` and one untimed "
        "`orchestrator --version`, with PYTHONDONTWRITEBYTECODE removed from the environment of every measured "
        "command")
    return imported_package(TREE, ENV)


def python(*args: str) -> float:
    """Seconds of one `python ARGS` (exit code 0 required), its output discarded."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=ENV, cwd=TREE, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def python_floor() -> float:
    """Seconds of one `python -c pass`, the start-up floor of every CLI command."""
    return python("-c", "pass")


# -- observing processes from outside, through /proc -----------------------------------------------------


def cmdline(pid: int) -> list[str] | None:
    try:
        return read_bytes(f"/proc/{pid}/cmdline").decode(errors="replace").split("\0")[:-1]
    except (FileNotFoundError, ProcessLookupError):
        return None


def marked(prefix: str | tuple[str, ...]) -> dict[int, str]:
    """Every live process `sleep <arg>` with arg starting with `prefix` (or one of them), as pid -> arg (whole
    /proc scan)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = cmdline(int(entry))
        if argv and len(argv) == 2 and argv[0].endswith("sleep") and argv[1].startswith(prefix) and alive(int(entry)):
            found[int(entry)] = argv[1]
    return found


def marks(*prefixes: str) -> Callable[[], set[int]]:
    """For kill_and_reap_orphans: the live `sleep <prefix>...` processes, whoever their parent is now."""
    return lambda: set(marked(prefixes))


# -- the daemon under test ------------------------------------------------------------------------------


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._unix_path)
        self.sock = sock


class Daemon:
    def __init__(self, workdir: Path, token: str) -> None:
        self.workdir = workdir
        self.state = workdir / "state"
        self.prefix = f"3600.{token}"
        self.proc: subprocess.Popen[bytes] | None = None  # when we started it ourselves (`daemon`)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "orchestrator", "--state-dir", str(self.state), *args]

    def cli(self, *args: str, timeout: float = 120) -> tuple[float, str]:
        """Run an orchestrator command; (seconds, stdout). Raises BenchError when it fails."""
        t0 = time.perf_counter()
        done = subprocess.run(self.argv(*args), env=ENV, cwd=TREE, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        elapsed = time.perf_counter() - t0
        if done.returncode != 0:
            raise BenchError(f"`orchestrator {' '.join(args)}` exited {done.returncode}: "
                             f"{(done.stderr or done.stdout)[-2000:].strip()}")
        return elapsed, done.stdout

    def pid(self) -> int | None:
        try:
            text = (self.state / "daemon.lock").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() and alive(int(text)) else None

    def request(self, route: str, body: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        """GET `route` (POST `body` when given) on the daemon's socket, from this process."""
        connection = _UnixHTTP(str(self.state / "orchestrator.sock"), timeout)
        try:
            if body is None:
                connection.request("GET", "/api/v1" + route)
            else:
                connection.request("POST", "/api/v1" + route, body=json.dumps(body).encode(),
                                   headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            if response.status >= 400:
                raise BenchError(f"{route}: HTTP {response.status}: {payload[:500]!r}")
            return json.loads(payload)  # type: ignore[no-any-return]
        finally:
            connection.close()

    def pid_map(self) -> dict[str, list[int | None]]:
        """key -> pids of its replicas (None for one not running), from the daemon."""
        return {o["key"]: [r["pid"] if r["phase"] == "Running" else None for r in o["replica_status"]]
                for o in self.request("/objects")["objects"]}

    def last_event_id(self) -> int:
        events = self.request("/events?limit=1")["events"]
        return int(events[-1]["id"]) if events else 0

    def events_since(self, since: int) -> list[dict[str, Any]]:
        return self.request(f"/events?since={since}")["events"]  # type: ignore[no-any-return]

    def start_foreground(self) -> None:
        """`orchestrator daemon` in the background, as our own child, logging where `apply` would."""
        with open(self.state / "daemon.log", "ab") as log_file:
            self.proc = subprocess.Popen(self.argv("daemon"), env=ENV, cwd=TREE, stdin=subprocess.DEVNULL,
                                         stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)

    def sigkill(self) -> int:
        pid = self.pid()
        if pid is None:
            raise BenchError("no daemon to kill")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid):
            reap()  # it is our child (ours, or re-parented here once `apply` exited)
            if time.monotonic() > deadline:
                raise BenchError(f"daemon {pid} still alive 10 s after SIGKILL")
            time.sleep(0.001)
        reap()
        return pid

    def wait_running(self, n: int, timeout: float = 120) -> float:
        """Seconds until the daemon has n `sleep <prefix>...` children and says all of them run."""
        t0 = time.perf_counter()
        deadline = t0 + timeout
        known: set[int] = set()
        while True:
            pid = self.pid()
            if pid is not None:
                kids = children(pid)
                known &= kids
                for child in kids - known:
                    argv = cmdline(child)
                    if argv and len(argv) == 2 and argv[1].startswith(self.prefix):
                        known.add(child)
                if len(known) >= n:
                    pids = self.pid_map()
                    if sum(1 for ps in pids.values() for p in ps if p) >= n:
                        return time.perf_counter() - t0
            if time.perf_counter() > deadline:
                raise BenchError(f"only {len(known)} of {n} processes running after {timeout:g} s")
            time.sleep(0.01)

    def stop(self) -> dict[str, Any]:
        """`orchestrator shutdown`, then kill and reap whatever is left. Never raises: reports leftovers."""
        result: dict[str, Any] = {"shutdown_s": None, "leftovers": 0, "error": None}
        if self.pid() is not None:
            try:
                result["shutdown_s"], _ = self.cli("shutdown", "--timeout", "30", timeout=60)
            except (BenchError, subprocess.TimeoutExpired) as error:
                result["error"] = str(error)
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        result["leftovers"] = kill_and_reap_orphans(marks(self.prefix))
        return result


def manifest(name: str, arg: str) -> str:
    return (f"apiVersion: orchestrator/v1\nkind: Process\nmetadata: {{name: {name}}}\nspec:\n"
            f"  command: [\"sleep\", \"{arg}\"]\n  shutdown: {{timeoutSeconds: 1}}\n")


def write_manifests(workdir: Path, args: list[str], layout: str) -> Path:
    """Process p-00000... with command `sleep args[i]`; one file of documents, or a folder of one file each."""
    if layout == "file":
        path = workdir / "manifests.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("---\n".join(manifest(f"p-{i:05d}", a) for i, a in enumerate(args)))
        os.replace(tmp, path)
        return path
    folder = workdir / "manifests"
    folder.mkdir(exist_ok=True)
    for i, a in enumerate(args):
        path = folder / f"p-{i:05d}.yaml"
        text = manifest(f"p-{i:05d}", a)
        if not path.exists() or path.read_text() != text:
            tmp = folder / f".p-{i:05d}.tmp"
            tmp.write_text(text)
            os.replace(tmp, path)
    return folder


# -- 1. apply with 1 of N changed ----------------------------------------------------------------------


def bench_apply(n: int, repeat: int, layout: str, token: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-daemon-apply-"))
    daemon = Daemon(workdir, token)
    commands = [f"{daemon.prefix}000"] * n
    path = write_manifests(workdir, commands, layout)
    out: dict[str, Any] = {"n": n, "layout": layout, "runs": [], "direct_runs": []}
    try:
        t0 = time.perf_counter()
        apply_s, _ = daemon.cli("apply", "-f", str(path))
        out["cold_apply_cmd_s"] = apply_s
        daemon.wait_running(n)
        out["cold_all_running_s"] = time.perf_counter() - t0
        log(f"[apply] N={n} ({layout}): cold apply command {apply_s:.2f} s, all running after "
            f"{out['cold_all_running_s']:.2f} s")
        out["yaml_compose_ms"] = _yaml_compose_ms(path)
        rng = random.Random(7)
        changes = 0
        for r in range(repeat):
            # Through the CLI: `orchestrator apply -f PATH` with one command changed in the file(s).
            changes += 1
            index = rng.randrange(n)
            new_arg = f"{daemon.prefix}{changes:03d}"
            commands[index] = new_arg
            write_manifests(workdir, commands, layout)
            out_path = workdir / f"apply-{r}.out"

            def launch(out_path: Path = out_path) -> subprocess.Popen[bytes]:
                with open(out_path, "wb") as out_file:
                    return subprocess.Popen(daemon.argv("apply", "-f", str(path)), env=ENV, cwd=TREE,
                                            stdin=subprocess.DEVNULL, stdout=out_file, stderr=subprocess.STDOUT)

            run = measure_change(daemon, n, f"default/p-{index:05d}", new_arg, launch)
            if run["apply_code"] != 0:
                raise BenchError(f"[apply] apply exited {run['apply_code']}: {out_path.read_text()[-2000:]}")
            run["floor_ms"] = python_floor() * 1000
            out["runs"].append(run)
            log(f"[apply] CLI run {r + 1}/{repeat} {run['key']}: converged {run['converge_ms']:.1f} ms (new running "
                f"{run['new_running_ms']:.1f}, old gone {run['old_gone_ms']:.1f}), apply command "
                f"{run['apply_cmd_ms']:.1f} ms, launch->Applied {_f(run['to_applied_event_ms'])} ms, "
                f"Applied->Started {_f(run['applied_to_started_ms'])} ms, others changed "
                f"{run['others_changed_pid']}, floor {run['floor_ms']:.1f} ms")
        for r in range(repeat):
            # Daemon side only: the same request body `apply` sends (the daemon's own specs, one command
            # changed), POSTed from this live process, so no Python start-up, YAML or schema work is counted.
            changes += 1
            index = rng.randrange(n)
            new_arg = f"{daemon.prefix}{changes:03d}"
            commands[index] = new_arg
            write_manifests(workdir, commands, layout)  # keep the files in step with what runs
            key = f"default/p-{index:05d}"
            specs = daemon.request("/desired")["specs"]
            for spec in specs:
                document = spec["document"]
                if f"{document['metadata'].get('namespace', 'default')}/{document['metadata']['name']}" == key:
                    document["spec"]["command"] = ["sleep", new_arg]
            body = {"specs": specs, "paths": [str(path)], "prune": False, "dry_run": False, "watch": False,
                    "user": "bench", "git_commit": None, "git_dirty": None}
            run = measure_change(daemon, n, key, new_arg, lambda body=body: daemon.request("/apply", body))
            out["direct_runs"].append(run)
            log(f"[apply] direct POST run {r + 1}/{repeat} {key}: converged {run['converge_ms']:.1f} ms (request "
                f"answered {run['apply_cmd_ms']:.1f}, new running {run['new_running_ms']:.1f}, old gone "
                f"{run['old_gone_ms']:.1f}), request->Applied {_f(run['to_applied_event_ms'])} ms, "
                f"Applied->Started {_f(run['applied_to_started_ms'])} ms, others changed {run['others_changed_pid']}")
    finally:
        stopped = daemon.stop()
        out["stop"] = stopped
        if stopped["leftovers"] or stopped["error"]:
            log(f"[apply] WARNING shutdown: {stopped}")
        shutil.rmtree(workdir, ignore_errors=True)
    fields = ("converge_ms", "new_running_ms", "old_gone_ms", "apply_cmd_ms", "to_applied_event_ms",
              "applied_to_started_ms")
    for prefix, runs in (("", out["runs"]), ("direct_", out["direct_runs"])):
        for field in fields:
            out[prefix + field] = median([run[field] for run in runs if run[field] is not None])
        out[prefix + "others_changed_pid"] = max((run["others_changed_pid"] for run in runs), default=None)
    out["floor_ms"] = median([run["floor_ms"] for run in out["runs"]])
    return out


def measure_change(daemon: Daemon, n: int, key: str, new_arg: str, launch: Any) -> dict[str, Any]:
    """Launch a change of `key`'s command to `sleep new_arg` and time it from outside: the new process
    among the daemon's children with the new argv, the old one gone from them; then count the others
    whose pid changed. `launch` returns a Popen (polled for its exit) or does the whole request itself."""
    time.sleep(0.3)  # let the daemon settle after the previous change
    dpid = daemon.pid()
    if dpid is None:
        raise BenchError("the daemon is gone")
    before_map = daemon.pid_map()
    before_kids = children(dpid)
    old_pid = before_map[key][0]
    since = daemon.last_event_id()
    t0_wall = time.time()
    t0 = time.perf_counter()
    proc = launch()
    apply_exit = None if isinstance(proc, subprocess.Popen) else time.perf_counter() - t0
    new_running = old_gone = None
    deadline = t0 + 30
    while new_running is None or old_gone is None:
        now = time.perf_counter()
        if apply_exit is None and proc.poll() is not None:
            apply_exit = now - t0
        kids = children(dpid)
        if old_gone is None and old_pid not in kids:
            old_gone = now - t0
        if new_running is None:
            for pid in kids - before_kids:
                argv = cmdline(pid)
                if argv is not None and argv[-1:] == [new_arg]:  # else forked, not yet exec'd: next time
                    new_running = now - t0
                    break
        if now > deadline:
            if isinstance(proc, subprocess.Popen):
                proc.kill()
            raise BenchError(f"[apply] {key}: new process running {new_running}, old gone {old_gone} after 30 s")
        time.sleep(0.0005)
    code = 0
    if isinstance(proc, subprocess.Popen):
        code = proc.wait(60)
        if apply_exit is None:
            apply_exit = time.perf_counter() - t0
    assert apply_exit is not None
    time.sleep(0.3)  # anything else the change would (wrongly) restart shows up by now
    after_map = daemon.pid_map()
    after_kids = children(dpid)
    if len(after_kids) != n:
        raise BenchError(f"[apply] {len(after_kids)} children after changing {key}, expected {n}")
    events = daemon.events_since(since)
    applied = [e["time"] for e in events if e["type"] == "Applied"]
    started = [e["time"] for e in events if e["type"] == "Started" and e["object"] == key]
    return {
        "key": key,
        "apply_code": code,
        "converge_ms": max(new_running, old_gone) * 1000,
        "new_running_ms": new_running * 1000,
        "old_gone_ms": old_gone * 1000,
        "apply_cmd_ms": apply_exit * 1000,
        "to_applied_event_ms": (applied[0] - t0_wall) * 1000 if applied else None,
        "applied_to_started_ms": (started[0] - applied[0]) * 1000 if applied and started else None,
        "others_changed_pid": sum(1 for k, pids in before_map.items() if k != key and after_map.get(k) != pids),
        "others_gone_from_children": len(before_kids - {old_pid} - after_kids),
        "events_of_other_objects": sorted({e["object"] for e in events if e["object"] and e["object"] != key}),
    }


def _yaml_compose_ms(path: Path) -> float | None:
    """In-process cost of yaml.compose_all (pure-Python SafeLoader, as manifest.py uses) over the manifests."""
    try:
        import yaml
    except ImportError:
        return None
    files = [path] if path.is_file() else sorted(path.glob("*.yaml"))
    texts = [f.read_text() for f in files]
    t0 = time.perf_counter()
    for text in texts:
        for _ in yaml.compose_all(text, Loader=yaml.SafeLoader):
            pass
    return (time.perf_counter() - t0) * 1000


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# -- 2. SIGKILL + restart, 3. get ------------------------------------------------------------------------


def bench_restart_and_get(n: int, repeat: int, get_runs: int, token: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-daemon-restart-"))
    daemon = Daemon(workdir, token)
    path = write_manifests(workdir, [f"{daemon.prefix}000"] * n, "file")
    restart: dict[str, Any] = {"n": n, "runs": []}
    get: dict[str, Any] = {"n": n}
    try:
        daemon.cli("apply", "-f", str(path))
        daemon.wait_running(n)
        original = daemon.pid_map()
        original_pids = set(marked(daemon.prefix))
        if len(original_pids) != n:
            raise BenchError(f"[restart] {len(original_pids)} marked processes before the kill, expected {n}")
        for r in range(repeat):
            time.sleep(0.2)
            since = daemon.last_event_id()
            killed = daemon.sigkill()
            survivors = set(marked(daemon.prefix))
            t0 = time.perf_counter()
            daemon.start_foreground()
            first_answer = adopted = None
            deadline = t0 + 30
            while adopted is None:
                assert daemon.proc is not None
                if daemon.proc.poll() is not None:
                    raise BenchError(f"[restart] the daemon exited {daemon.proc.returncode}: "
                                     f"{(daemon.state / 'daemon.log').read_text()[-2000:]}")
                try:
                    current = daemon.pid_map()
                except (OSError, http.client.HTTPException, BenchError):
                    current = None
                now = time.perf_counter() - t0
                if current is not None:
                    if first_answer is None:
                        first_answer = now
                    if current == original:
                        adopted = now
                if time.perf_counter() > deadline:
                    raise BenchError(f"[restart] not all {n} adopted under the same pids after 30 s")
                time.sleep(0.002)
            time.sleep(0.5)  # a duplicate start would show by now
            now_pids = marked(daemon.prefix)
            events = daemon.events_since(since)
            run = {
                "killed_daemon": killed,
                "survived_kill": len(survivors & original_pids),
                "first_answer_ms": (first_answer or adopted) * 1000,
                "all_adopted_ms": adopted * 1000,
                "duplicates": len(set(now_pids) - original_pids),
                "lost": len(original_pids - set(now_pids)),
                "adopted_events": sum(1 for e in events if e["type"] == "Adopted"),
                "started_events": sum(1 for e in events if e["type"] == "Started"),
                "floor_ms": python_floor() * 1000,
            }
            restart["runs"].append(run)
            log(f"[restart] run {r + 1}/{repeat}: N={n}, answered after {run['first_answer_ms']:.0f} ms, all adopted "
                f"under the same pids after {run['all_adopted_ms']:.0f} ms; duplicates {run['duplicates']}, lost "
                f"{run['lost']}, Adopted events {run['adopted_events']}, Started events {run['started_events']}, "
                f"floor {run['floor_ms']:.0f} ms")
        for field in ("first_answer_ms", "all_adopted_ms", "floor_ms"):
            restart[field] = median([run[field] for run in restart["runs"]])
        for field in ("duplicates", "lost", "started_events"):
            restart[field] = max(run[field] for run in restart["runs"])
        restart["adopted_events"] = min(run["adopted_events"] for run in restart["runs"])

        # 3. get round trip, against the restarted daemon with the same n running.
        floors, versions, gets, gets_json, minimal, api = [], [], [], [], [], []
        minimal_client = (f"import socket,json;s=socket.socket(socket.AF_UNIX);"
                          f"s.connect({str(daemon.state / 'orchestrator.sock')!r});"
                          "s.sendall(b'GET /api/v1/objects HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n');"
                          "d=b''.join(iter(lambda:s.recv(65536),b''));json.loads(d.split(b'\\r\\n\\r\\n',1)[1])")
        for _ in range(get_runs):
            floors.append(python_floor() * 1000)
            versions.append(python("-m", "orchestrator", "--version") * 1000)
            gets.append(daemon.cli("get")[0] * 1000)
            gets_json.append(daemon.cli("get", "-o", "json")[0] * 1000)
            minimal.append(python("-c", minimal_client) * 1000)
            t0 = time.perf_counter()
            daemon.request("/objects")
            api.append((time.perf_counter() - t0) * 1000)
        get_ms, version_ms, floor_ms = median(gets), median(versions), median(floors)
        get.update({"get_ms": get_ms, "get_ratio": _ratio(get_ms, floor_ms),
                    "version_ms": version_ms, "version_ratio": _ratio(version_ms, floor_ms),
                    "get_json_ms": median(gets_json), "floor_ms": floor_ms,
                    "minimal_client_ms": median(minimal), "api_objects_ms": median(api),
                    "get_ms_all": gets, "version_ms_all": versions, "floor_ms_all": floors})
        log(f"[get] N={n}: get {get['get_ms']:.0f} ms, --version {get['version_ms']:.0f} ms, get -o json "
            f"{get['get_json_ms']:.0f} ms, python -c pass {get['floor_ms']:.0f} ms, minimal socket client "
            f"{get['minimal_client_ms']:.0f} ms, GET /objects in-process {get['api_objects_ms']:.1f} ms "
            f"(medians of {get_runs})")
        get["importtime"] = importtime(daemon)
    finally:
        stopped = daemon.stop()
        restart["stop"] = stopped
        if stopped["leftovers"] or stopped["error"]:
            log(f"[restart] WARNING shutdown: {stopped}")
        shutil.rmtree(workdir, ignore_errors=True)
    return {"restart": restart, "get": get}


def _ratio(ours: float | None, floor: float | None) -> float | None:
    return ours / floor if ours is not None and floor else None


def importtime(daemon: Daemon) -> dict[str, Any]:
    """`python -X importtime -m orchestrator get`: the top 5 imports by cumulative time, and the total."""
    done = subprocess.run([sys.executable, "-X", "importtime", *daemon.argv("get")[1:]], env=ENV, cwd=TREE,
                          capture_output=True, text=True, check=True)
    rows: list[dict[str, Any]] = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append({"self_us": int(match[1]), "cumulative_us": int(match[2]),
                         "depth": (len(match[3]) - 1) // 2, "module": match[4]})
    top_level = [r for r in rows if r["depth"] == 0]
    return {
        "top5": sorted(rows, key=lambda r: -r["cumulative_us"])[:5],
        "top_level_total_ms": sum(r["cumulative_us"] for r in top_level) / 1000,
        "orchestrator_top_level_ms": sum(r["cumulative_us"] for r in top_level
                                         if r["module"].startswith("orchestrator")) / 1000,
        "modules": len(rows),
    }


# -- the report ----------------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    env = report["environment"]
    a, s, g = report.get("apply"), report.get("restart"), report.get("get")
    commit = f" at {env['tree_commit']}" if env.get("tree_commit") else ""
    lines = [(f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; {env['bytecode']}; "
              f"medians of {env['repeat']} (get: of {env['get_runs']}); floor = `python -c pass` in the same run"),
             f"orchestrator from {env['package']}{commit}"]
    body: list[list[str]] = []

    def row(label: str, n: Any, floor: float | None, ours: float | None, fmt: str, target: str,
            ok: bool | None) -> None:
        body.append(figure_row(label, n, floor, ours, fmt, target, ok))

    if a:
        n = a["n"]
        row(f"apply 1 changed: converge, ms ({a['layout']})", n, a["floor_ms"], a["converge_ms"], "{:.1f}",
            "< 150 ms", a["converge_ms"] < 150)
        row("  new process running, ms", n, None, a["new_running_ms"], "{:.1f}", "-", None)
        row("  old process gone, ms", n, None, a["old_gone_ms"], "{:.1f}", "-", None)
        row("  apply command wall, ms", n, a["floor_ms"], a["apply_cmd_ms"], "{:.1f}", "-", None)
        row("  launch -> Applied event, ms (CLI side)", n, a["floor_ms"], a["to_applied_event_ms"], "{:.1f}", "-",
            None)
        row("  Applied -> Started event, ms (daemon)", n, None, a["applied_to_started_ms"], "{:.1f}", "-", None)
        row("  other processes changed pid", n, None, a["others_changed_pid"], "{}", "0",
            a["others_changed_pid"] == 0)
        row("  daemon only (POST /apply, live client): converge, ms", n, None, a["direct_converge_ms"], "{:.1f}",
            "-", None)
        row("    request answered, ms", n, None, a["direct_apply_cmd_ms"], "{:.1f}", "-", None)
        row("    request -> Applied event, ms", n, None, a["direct_to_applied_event_ms"], "{:.1f}", "-", None)
        row("    Applied -> Started event, ms", n, None, a["direct_applied_to_started_ms"], "{:.1f}", "-", None)
        row("    other processes changed pid", n, None, a["direct_others_changed_pid"], "{}", "0",
            a["direct_others_changed_pid"] == 0)
        row("  yaml.compose_all of manifests, ms", n, None, a["yaml_compose_ms"], "{:.1f}", "-", None)
        row("  cold apply, all running, s", n, None, a["cold_all_running_s"], "{:.2f}", "-", None)
        row("  shutdown command, s", n, None, a["stop"]["shutdown_s"], "{:.2f}", "-", None)
        row("  left behind after shutdown", n, None, a["stop"]["leftovers"], "{}", "0", a["stop"]["leftovers"] == 0)
    if s:
        n = s["n"]
        row("SIGKILL+restart: all adopted, ms", n, s["floor_ms"], s["all_adopted_ms"], "{:.0f}", "< 1000 ms",
            s["all_adopted_ms"] < 1000)
        row("  first answer, ms", n, s["floor_ms"], s["first_answer_ms"], "{:.0f}", "-", None)
        row("  duplicates (max of runs)", n, None, s["duplicates"], "{}", "0", s["duplicates"] == 0)
        row("  lost (max of runs)", n, None, s["lost"], "{}", "0", s["lost"] == 0)
        row("  Adopted events (min of runs)", n, None, s["adopted_events"], "{}", str(n), s["adopted_events"] == n)
        row("  Started events (max of runs)", n, None, s["started_events"], "{}", "0", s["started_events"] == 0)
        row("  shutdown command, s", n, None, s["stop"]["shutdown_s"], "{:.2f}", "-", None)
        row("  left behind after shutdown", n, None, s["stop"]["leftovers"], "{}", "0", s["stop"]["leftovers"] == 0)
    if g and "get_ms" in g:
        n = g["n"]
        row("orchestrator --version, ms", n, g["floor_ms"], g["version_ms"], "{:.0f}", "<= 1.5x floor",
            g["version_ms"] <= 1.5 * g["floor_ms"])
        row("get round trip, ms", n, g["floor_ms"], g["get_ms"], "{:.0f}", "< 150 ms, <= 2.5x floor",
            g["get_ms"] < 150 and g["get_ms"] <= 2.5 * g["floor_ms"])
        row("  get -o json, ms", n, g["floor_ms"], g["get_json_ms"], "{:.0f}", "-", None)
        row("  minimal stdlib socket client, ms", n, g["floor_ms"], g["minimal_client_ms"], "{:.0f}", "-", None)
        row("  GET /objects from a live client, ms", n, None, g["api_objects_ms"], "{:.1f}", "-", None)
    lines += table_lines(body)
    if g and g.get("importtime"):
        it = g["importtime"]
        lines.append("")
        lines.append(f"python -X importtime -m orchestrator get: {it['modules']} modules, top-level imports "
                     f"{it['top_level_total_ms']:.1f} ms in all, orchestrator.* top level "
                     f"{it['orchestrator_top_level_ms']:.1f} ms; top 5 by cumulative time:")
        for r in it["top5"]:
            lines.append(f"  {r['cumulative_us'] / 1000:7.1f} ms cumulative {r['self_us'] / 1000:6.1f} ms self  "
                         f"{'  ' * r['depth']}{r['module']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="500,200",
                        help="N for (1) apply and for (2) restart and (3) get; one number for both (default 500,200)")
    parser.add_argument("--repeat", type=int, default=3, help="changes (1) and kill-restarts (2); medians (default 3)")
    parser.add_argument("--get-runs", type=int, default=10,
                        help="`get`, `--version` and `python -c pass` runs (default 10)")
    parser.add_argument("--layout", choices=["file", "dir"], default="file",
                        help="(1): one file of N documents (default) or a folder of N files")
    parser.add_argument("--only", choices=["apply", "restart"], help="run only (1), or only (2) and (3)")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the source tree whose orchestrator package is measured, e.g. an older checkout "
                             "made with `git worktree add` (default: the checkout this script is in)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    tree = args.tree.resolve()
    if not (tree / "orchestrator" / "__main__.py").is_file():
        parser.error(f"--tree {args.tree}: no orchestrator/__main__.py there")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or len(sizes) > 2:
        parser.error("--sizes takes one or two numbers")
    n_apply, n_restart = sizes[0], sizes[-1]

    use_tree(tree)
    token = f"{random.SystemRandom().randrange(10**6):06d}"
    tokens = [token + "1", token + "2"]

    def measure() -> dict[str, Any]:
        report: dict[str, Any] = {"environment": {
            **environment(), "repeat": args.repeat, "get_runs": args.get_runs,
            "bytecode": "bytecode cache warmed, PYTHONDONTWRITEBYTECODE unset for measured commands",
            "tree": str(TREE), "tree_commit": tree_commit(TREE), "package": prepare_tree(),
        }}
        if args.only in (None, "apply"):
            report["apply"] = bench_apply(n_apply, args.repeat, args.layout, tokens[0])
        if args.only in (None, "restart"):
            report.update(bench_restart_and_get(n_restart, args.repeat, args.get_runs, tokens[1]))
        return report

    return run_bench(measure, table, args.json, marks(*(f"3600.{t}" for t in tokens)))


if __name__ == "__main__":
    sys.exit(main())
