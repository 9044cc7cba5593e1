"""Health probes with real servers on loopback ports chosen free at test time, and real processes."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from conftest import REPO, wait_for
from harness import Harness

from orchestrator.core.events import EventType
from orchestrator.core.model import (
    Backoff,
    Condition,
    Dependency,
    Kind,
    Probe,
    ProbeAction,
    Probes,
    ProcessSpec,
    ReplicaId,
    RestartPolicy,
    Shutdown,
)
from orchestrator.planning.policy import is_ready

FAST = Backoff(initial_seconds=0.1, max_seconds=0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc(name: str, *command: str, **fields: object) -> ProcessSpec:
    fields.setdefault("backoff", FAST)
    fields.setdefault("shutdown", Shutdown("SIGTERM", 1))
    return ProcessSpec(name=name, command=command or ("sleep", "60"), **fields)  # type: ignore[arg-type]


def http_server(port: int, delay: float = 0.0, healthy_for: float = 3600.0) -> tuple[str, ...]:
    """A server that listens after `delay` s and answers /healthz 200 for `healthy_for` s, then 500."""
    code = f"""
import http.server, time
time.sleep({delay})
born = time.monotonic()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == '/healthz' and time.monotonic() - born < {healthy_for}
        self.send_response(200 if ok else 500); self.end_headers()
    def log_message(self, *a): pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # many probes connect at once
print('listening', flush=True)
Server(('127.0.0.1', {port}), H).serve_forever()
"""
    return (sys.executable, "-c", code)


def fast(action: ProbeAction, **fields: object) -> Probe:
    fields.setdefault("period_seconds", 0.1)
    fields.setdefault("timeout_seconds", 0.5)
    fields.setdefault("failure_threshold", 2)
    return Probe(action, **fields)  # type: ignore[arg-type]




def ready(h: Harness, name: str) -> bool:
    def check(r: object) -> bool:
        record = r.records.get(ReplicaId(f"default/{name}", 0))  # type: ignore[attr-defined]
        spec = r.desired.specs.get(f"default/{name}")  # type: ignore[attr-defined]
        return bool(record and spec and is_ready(spec, record))

    return h.query(check)


def test_dependent_waits_for_readiness_of_an_http_service(harness: Harness) -> None:
    port = free_port()
    readiness = fast(ProbeAction.HTTP, port=port, path="/healthz")
    harness.apply([
        proc("web", *http_server(port, delay=0.6), probes=Probes(readiness=readiness)),
        proc("client", depends_on=(Dependency("web", Condition.READY),)),
    ])
    wait_for(lambda: harness.pid("client"), timeout=10, what="client to start")
    started = {e.key: e.at for e in harness.events if e.type is EventType.STARTED}
    passed = next(e for e in harness.of(EventType.PROBE_PASSED, "web") if "readiness" in e.message)
    assert started["default/web"] + 0.6 <= passed.at <= started["default/client"]
    assert harness.of(EventType.WAITING, "client")[0].message == "waiting for web to be ready"


def test_readiness_failure_marks_not_ready_without_restarting(harness: Harness) -> None:
    port = free_port()
    readiness = fast(ProbeAction.HTTP, port=port, path="/healthz")
    harness.apply([proc("web", *http_server(port, healthy_for=0.8), probes=Probes(readiness=readiness))])
    wait_for(lambda: ready(harness, "web"), timeout=10, what="web ready")
    pid = harness.pid("web")
    wait_for(lambda: not ready(harness, "web"), timeout=10, what="web not ready")
    [failed] = [e for e in harness.of(EventType.PROBE_FAILED, "web") if "has not passed yet" not in e.message]
    assert "readiness probe failed 2 times: GET /healthz: HTTP 500; not ready" in failed.message
    assert harness.pid("web") == pid and harness.of(EventType.STOPPING) == []


def test_a_readiness_probe_that_has_not_passed_yet_says_why_once(harness: Harness) -> None:
    port = free_port()  # nobody listens there
    readiness = fast(ProbeAction.TCP, port=port)
    harness.apply([proc("web", probes=Probes(readiness=readiness))])
    [failed] = wait_for(lambda: harness.of(EventType.PROBE_FAILED, "web"), timeout=5, what="why it is not ready")
    assert "readiness probe has not passed yet (2 failures): " in failed.message
    assert "refused" in failed.message and failed.message.endswith("; not ready")
    deadline = time.monotonic() + 0.5  # five more periods: told once, not at every failure
    while time.monotonic() < deadline:
        assert len(harness.of(EventType.PROBE_FAILED, "web")) == 1
        time.sleep(0.05)
    assert not ready(harness, "web") and harness.of(EventType.STOPPING) == []


def test_liveness_failure_restarts_under_the_backoff(harness: Harness) -> None:
    port = free_port()
    liveness = fast(ProbeAction.HTTP, port=port, path="/healthz")
    harness.apply([proc("web", *http_server(port, healthy_for=0.5), probes=Probes(liveness=liveness))])
    first = wait_for(lambda: harness.pid("web"), what="web")
    wait_for(lambda: (p := harness.pid("web")) and p != first, timeout=10, what="web restarted")
    exited = harness.of(EventType.EXITED, "web")[0]
    assert "(LivenessFailed)" in exited.message and "restarting in 0.1 s" in exited.message
    record = harness.records()[ReplicaId("default/web", 0)]
    assert record.restarts == 1
    assert record.last_exit is not None and record.last_exit.reason.value == "LivenessFailed"
    assert "liveness probe failed 2 times" in record.last_exit.message


def test_exec_probe_that_hangs_is_killed_at_its_timeout(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "hung-probe-pids"
    check = (sys.executable, "-c", (f"import os, time; open({str(marker)!r}, 'a').write(f'{{os.getpid()}}\\n'); "
             "time.sleep(60)"))
    readiness = fast(ProbeAction.EXEC, command=check, timeout_seconds=0.2, period_seconds=0.3)
    harness.apply([proc("app", probes=Probes(readiness=readiness))])
    wait_for(lambda: marker.exists() and len(marker.read_text().split()) >= 2, timeout=10, what="two checks run")
    first = int(marker.read_text().split()[0])
    wait_for(lambda: not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE,
             what="the hung check to be killed")
    assert not ready(harness, "app")


def test_closing_the_prober_ends_a_check_under_way_at_once(tmp_path: Path) -> None:
    from orchestrator.core.model import ProcessIdentity
    from orchestrator.host.probes import Prober, Target

    marker = tmp_path / "check-pid"
    check = (sys.executable, "-c", (f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); "
             "time.sleep(60)"))
    liveness = fast(ProbeAction.EXEC, command=check, timeout_seconds=60, period_seconds=60)
    spec = proc("app", probes=Probes(liveness=liveness))
    prober = Prober(lambda transition: None, tmp_path / "logs")
    try:
        prober.sync({ReplicaId("default/app", 0): Target(ProcessIdentity(os.getpid(), 0), spec, time.monotonic(),
                                                         True, True, 0)})
        wait_for(lambda: marker.exists() and marker.read_text(), what="the check to start")
    finally:
        started = time.monotonic()
        prober.close()
    pid = int(marker.read_text())
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             what="the check to be killed")
    assert time.monotonic() - started < 5  # not its 60 s timeout


def test_tcp_probe_against_a_closed_port_never_becomes_ready(harness: Harness) -> None:
    port = free_port()  # nothing listens there
    readiness = fast(ProbeAction.TCP, port=port)
    harness.apply([proc("app", probes=Probes(readiness=readiness)),
                   proc("after", depends_on=(Dependency("app", Condition.READY),))])
    wait_for(lambda: harness.pid("app"), what="app")
    time_limit = time.monotonic() + 1.0
    while time.monotonic() < time_limit:  # a second of checks, every 0.1 s: none may pass
        assert not ready(harness, "app") and harness.pid("after") is None
        time.sleep(0.05)


def test_a_port_another_program_holds_never_makes_the_replica_ready(harness: Harness) -> None:
    port = free_port()
    other = socket.socket()
    other.bind(("127.0.0.1", port))
    other.listen()  # this test process holds the port; the replica never listens
    try:
        for action in (ProbeAction.TCP, ProbeAction.HTTP):
            name = f"app-{action.value}"
            harness.apply([proc(name, probes=Probes(readiness=fast(action, port=port))),
                           proc("after", depends_on=(Dependency(name, Condition.READY),))])
            [failed] = wait_for(lambda name=name: harness.of(EventType.PROBE_FAILED, name), timeout=5,
                                what="why not ready")
            assert f"port {port} is held by pid {os.getpid()} (" in failed.message, failed.message
            assert "not by this replica's processes" in failed.message
            time_limit = time.monotonic() + 0.5
            while time.monotonic() < time_limit:  # five periods of checks: none may pass
                assert not ready(harness, name) and harness.pid("after") is None
                time.sleep(0.05)
    finally:
        other.close()


def test_a_replica_that_dies_on_eaddrinuse_does_not_let_dependents_start(harness: Harness) -> None:
    port = free_port()
    other = socket.socket()
    other.bind(("127.0.0.1", port))
    other.listen()
    slow = Backoff(initial_seconds=0.3, max_seconds=0.3)  # it lies dead between tries, the port held all along
    try:
        harness.apply([proc("web", *http_server(port), backoff=slow,
                            probes=Probes(readiness=fast(ProbeAction.TCP, port=port, period_seconds=0.02,
                                                         failure_threshold=1))),
                       proc("client", depends_on=(Dependency("web", Condition.READY),))])
        wait_for(lambda: len(harness.of(EventType.EXITED, "web")) >= 3, timeout=10, what="web dying thrice")
        assert harness.pid("client") is None and not harness.of(EventType.PROBE_PASSED, "web")
    finally:
        other.close()
    wait_for(lambda: harness.pid("client"), timeout=10, what="client once web listens itself")
    assert harness.of(EventType.PROBE_PASSED, "web")


def test_startup_probe_gates_liveness_and_can_fail_the_replica(harness: Harness) -> None:
    port = free_port()
    startup = fast(ProbeAction.TCP, port=port, failure_threshold=3)
    liveness = fast(ProbeAction.EXEC, command=("false",))
    harness.apply([proc("slow", probes=Probes(startup=startup, liveness=liveness),
                        restart_policy=RestartPolicy.NEVER)])
    wait_for(lambda: harness.of(EventType.EXITED, "slow"), timeout=10, what="slow to be stopped")
    failed = harness.of(EventType.PROBE_FAILED, "slow")
    assert [("startup" in e.message) for e in failed] == [True]  # liveness never ran before startup passed
    assert "startup probe failed 3 times" in failed[0].message


def test_log_probe_is_ready_when_the_line_is_printed(harness: Harness) -> None:
    code = "import time; print('booting', flush=True); time.sleep(0.5); print('listening on 8080', flush=True); " \
           "time.sleep(60)"
    readiness = fast(ProbeAction.LOG, pattern=r"listening on \d+")
    harness.apply([proc("app", sys.executable, "-c", code, probes=Probes(readiness=readiness))])
    wait_for(lambda: ready(harness, "app"), timeout=10, what="app ready")
    started = harness.of(EventType.STARTED, "app")[0].at
    passed = harness.of(EventType.PROBE_PASSED, "app")[0]
    assert passed.at - started >= 0.5
    assert "printed 'listening on 8080'" in passed.message


def test_log_probe_ignores_output_of_an_earlier_run(harness: Harness) -> None:
    code = "import time, os; print('ready', flush=True) if os.path.exists('never') else None; time.sleep(60)"
    log = harness.log_dir / "default" / "app.0.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("ready\n")  # printed by an earlier process
    readiness = fast(ProbeAction.LOG, pattern="^ready$")
    harness.apply([proc("app", sys.executable, "-c", code, probes=Probes(readiness=readiness))])
    wait_for(lambda: harness.pid("app"), what="app")
    deadline = time.monotonic() + 0.8
    while time.monotonic() < deadline:
        assert not ready(harness, "app")
        time.sleep(0.05)


def test_a_backtracking_pattern_and_a_long_line_cannot_stall_supervision(harness: Harness) -> None:
    """`(a+)+$` against a line of a's ending in b backtracks for ever in Python's re (holding the GIL, so the
    whole daemon); matched by RE2 it costs microseconds, and a killed process comes back at once."""
    code = "import time\nwhile True:\n    print('a' * 5000 + 'b', flush=True)\n    time.sleep(0.05)"
    readiness = fast(ProbeAction.LOG, pattern="(a+)+$")
    harness.apply([proc("talker", sys.executable, "-c", code, probes=Probes(readiness=readiness)), proc("victim")])
    victim = wait_for(lambda: harness.pid("victim"), what="victim")
    wait_for(lambda: harness.pid("talker"), what="talker")
    log = harness.log_dir / "default" / "talker.0.log"
    # Its probe (every 0.1 s) has met several such lines by the time the talker printed five.
    wait_for(lambda: log.exists() and log.read_bytes().count(b"\n") >= 5, what="five lines from the talker")
    os.kill(victim, signal.SIGKILL)
    again = wait_for(lambda: (pid := harness.pid("victim")) and pid != victim and pid, timeout=2, what="victim back")
    assert again != victim and not ready(harness, "talker")


def test_a_log_probe_reads_a_bounded_window_of_new_output(harness: Harness) -> None:
    """A process that prints 8 MiB at once, then its ready line: judged by what it prints now, read bounded."""
    code = ("import sys, time\nsys.stdout.write(('x' * 1023 + '\\n') * 8192)\nprint('ready', flush=True)\n"
            "time.sleep(60)")
    readiness = fast(ProbeAction.LOG, pattern="^ready$")
    harness.apply([proc("chatty", sys.executable, "-c", code, probes=Probes(readiness=readiness))])
    wait_for(lambda: ready(harness, "chatty"), timeout=10, what="chatty ready")


def test_fifty_replicas_probed_every_second_keep_their_period(harness: Harness) -> None:
    port = free_port()
    # Each replica listens on the port itself (SO_REUSEPORT), as a probe passes only for the port's holder.
    server_code = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(('127.0.0.1', {port}))
s.listen(64)
while True:
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n')
    c.close()
"""
    try:
        readiness = Probe(ProbeAction.HTTP, port=port, path="/healthz", period_seconds=1.0, failure_threshold=1)
        liveness = Probe(ProbeAction.TCP, port=port, period_seconds=1.0)
        harness.apply([proc("pool", sys.executable, "-c", server_code, replicas=50,
                            probes=Probes(readiness=readiness, liveness=liveness))])
        wait_for(lambda: harness.query(lambda r: sum(rec.ready for rec in r.records.values())) == 50,
                 timeout=10, what="all 50 ready")
        # Every check of every replica in the next 3 s must come within its period: count checks per replica.
        counted: dict[tuple[object, object], list[float]] = {}
        original = harness.prober._check

        def counting(rid, state):  # type: ignore[no-untyped-def]
            counted.setdefault((rid, state.kind), []).append(time.monotonic())
            return original(rid, state)

        harness.prober._check = counting  # type: ignore[method-assign]
        time.sleep(3.5)  # the measuring window: three periods and a half
        harness.prober._check = original  # type: ignore[method-assign]
        assert len(counted) == 100
        gaps = [b - a for times in counted.values() for a, b in itertools.pairwise(times)]
        assert all(len(times) >= 3 for times in counted.values()), sorted(len(t) for t in counted.values())[:10]
        # The period holds within the machine's noise: no check may be skipped (a gap near two periods).
        assert max(gaps) < 1.8, max(gaps)
    finally:
        harness.apply([])


def test_failing_job_stops_after_its_backoff_limit(harness: Harness) -> None:
    harness.apply([proc("migrate", "sh", "-c", "exit 3", kind=Kind.JOB, backoff_limit=2),
                   proc("api", depends_on=(Dependency("migrate", Condition.COMPLETED),))])
    wait_for(lambda: any("backoffLimit 2" in e.message for e in harness.of(EventType.EXITED, "migrate")),
             timeout=10, what="migrate to give up")
    assert len(harness.of(EventType.STARTED, "migrate")) == 3
    waiting = harness.query(lambda r: {str(k): (w.phase.value, w.reason) for k, w in r.waiting.items()})
    assert waiting["default/api[0]"] == ("Waiting", "migrate failed and will not be restarted")
    assert waiting["default/migrate[0]"][0] == "Failed"


def test_run_exit_code_from_a_job(tmp_path: Path) -> None:
    manifest = tmp_path / "ci.yaml"
    manifest.write_text(
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: db}\nspec:\n  command: [sleep, '60']\n"
        "  shutdown: {timeoutSeconds: 1}\n---\n"
        "apiVersion: orchestrator/v1\nkind: Job\nmetadata: {name: tests}\nspec:\n  command: [sh, -c, 'exit 7']\n"
        "  backoffLimit: 0\n  dependsOn: [{name: db}]\n"
    )
    env = dict(os.environ, ORCHESTRATOR_HOME=str(tmp_path / "state"))
    result = subprocess.run([sys.executable, "-m", "orchestrator", "run", "--exit-code-from", "tests", "-f",
                             str(manifest)], capture_output=True, text=True, timeout=30, env=env, cwd=REPO,
                            check=False)
    assert result.returncode == 7, result.stderr
    assert "default/db[0] Stopping" in result.stdout
