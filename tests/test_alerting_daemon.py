"""Alerting end to end (daemon/alerting.py): real daemons sampling real processes every 0.3 s, AlertRules and
Notifiers applied as manifests, real receivers on 127.0.0.1 (an http.server on a thread of the test, exec
commands, a real Prometheus Alertmanager), and the CLI (`alerts`, `alerts silence`, `notify test`).

Every wait is a deadline (wait_for, or `quiet`: nothing more arrives before a deadline); every receiver,
daemon and Alertmanager is ended in a `finally`."""

# ruff: noqa: F811 - pytest fixtures imported from test_daemon are redefined as arguments

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from conftest import wait_for
from test_daemon import Orchestrator, alive, documents, orch, process  # noqa: F401 - orch is a fixture
from test_http_api import _free_port

if TYPE_CHECKING:
    from typing_extensions import Self

pytestmark = pytest.mark.timeout(120)

METRICS_INTERVAL = 0.3
GROUP_WAIT = 0.5
GROUP_INTERVAL = 1.0
BURNER = ["python3", "-c", "while True: pass"]
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


# --- manifests -------------------------------------------------------------------------------------------------

def _document(kind: str, name: str, spec: dict[str, Any]) -> str:
    lines = ["apiVersion: orchestrator/v1", f"kind: {kind}", f"metadata: {json.dumps({'name': name})}", "spec:"]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in spec.items()]
    return "\n".join(lines) + "\n"


def rule(name: str, condition: dict[str, Any], target: str, notify: Sequence[str] = (), **spec: Any) -> str:
    """An AlertRule on the process `target`."""
    return _document("AlertRule", name, {"selector": {"process": target}, "condition": condition,
                                         "notify": list(notify), **spec})


def webhook(name: str, url: str, **spec: Any) -> str:
    """A webhook Notifier with short grouping (spec's webhook keys go in `hook`)."""
    hook = {"url": url, **spec.pop("hook", {})}
    return _document("Notifier", name, {"webhook": hook, "groupWaitSeconds": GROUP_WAIT,
                                        "groupIntervalSeconds": GROUP_INTERVAL, **spec})


def exec_notifier(name: str, command: Sequence[str], **spec: Any) -> str:
    exe = {"command": list(command), **spec.pop("exec", {})}
    return _document("Notifier", name, {"exec": exe, "groupWaitSeconds": GROUP_WAIT,
                                        "groupIntervalSeconds": GROUP_INTERVAL, **spec})


def secret_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)
    return path


# --- a webhook receiver ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float  # monotonic

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An HTTP server on a thread of the test that records every request; it answers 500 to the first
    `fail_first` POSTs, then 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    posts = sum(1 for r in outer.requests if r.method == "POST")
                    answered = 500 if posts < outer.fail_first else 200
                    outer.requests.append(Received(self.command, self.path, dict(self.headers.items()), body,
                                                   answered, time.monotonic()))
                self.send_response(answered)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def delivered(self, status: str | None = None, alertname: str | None = None) -> list[Received]:
        """The POSTs answered 200 whose body has this status (and an alert of this alertname)."""
        with self._lock:
            requests = list(self.requests)
        found = []
        for request in requests:
            if request.method != "POST" or request.answered != 200:
                continue
            body = request.json()
            if status is not None and body.get("status") != status:
                continue
            if alertname is not None and not any(a["labels"].get("alertname") == alertname
                                                 for a in body.get("alerts", [])):
                continue
            found.append(request)
        return found

    def count(self) -> int:
        with self._lock:
            return len(self.requests)


def quiet(what: Callable[[], int], expected: int, seconds: float, said: str) -> None:
    """Until a deadline `seconds` away, `what()` stays `expected` (nothing more arrives)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = what()
        assert now == expected, f"{said}: {now} instead of {expected}"
        time.sleep(0.05)


# --- daemons ---------------------------------------------------------------------------------------------------

class Daemons:
    """`orchestrator daemon --metrics-interval 0.3` on the orch state dir, started as often as a test needs."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        self.orch.state.mkdir(parents=True, exist_ok=True)
        with open(self.orch.root / "daemon.out", "ab") as out:
            child = subprocess.Popen(self.orch.argv("daemon", "--metrics-interval", str(METRICS_INTERVAL)),
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(child)
        wait_for(self.orch.answers, timeout=15, what="the daemon answering")
        return child

    def close(self) -> None:
        try:
            self.orch.close()
        finally:
            for child in self.children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(timeout=5)


@pytest.fixture
def daemons(orch: Orchestrator) -> Iterator[Daemons]:
    made = Daemons(orch)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def daemon(daemons: Daemons) -> Orchestrator:
    daemons.start()
    return daemons.orch


def alerts_json(orch: Orchestrator) -> dict[str, Any]:
    return dict(json.loads(orch.ok("alerts", "-o", "json")))


def alerts_of(orch: Orchestrator, rule_name: str, answer: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    answer = answer if answer is not None else orch.api("GET", "/alerts")
    return [a for a in answer["alerts"] if a["rule"] == f"default/{rule_name}"]


def notification_events(orch: Orchestrator, kind: str, notifier: str) -> list[dict[str, Any]]:
    return [e for e in orch.events(kind) if f"to default/{notifier} " in e["message"]]


def apply(orch: Orchestrator, relative: str, *docs: str) -> float:
    """Write the documents to `relative` and apply that file; the monotonic time the apply began."""
    path = orch.write(relative, documents(*docs))
    began = time.monotonic()
    orch.ok("apply", "-f", str(path))
    return began


# --- 1. cpu, webhook, HMAC, header files, the v4 body, one resolve ---------------------------------------------

def test_a_cpu_burner_fires_once_signed_and_resolves_once_when_stopped(daemon: Orchestrator) -> None:
    orch = daemon
    key = secret_file(orch.root / "secrets/hook.key", "k3y-of-the-hook\n")
    auth = secret_file(orch.root / "secrets/hook.auth", "Bearer t0ken-from-a-file\n")
    with Receiver() as receiver:
        began = apply(orch, "m/cpu.yaml",
                      process("burner", BURNER),
                      rule("hot", {"cpu": {"abovePercent": 50}}, "burner", ["hook"], forSeconds=1,
                           severity="critical", labels={"team": "ops"},
                           annotations={"summary": "{{process}}[{{replica}}] at {{value}}% over {{threshold}}%"}),
                      webhook("hook", receiver.url, hook={"secretFile": str(key),
                                                          "headerFiles": {"Authorization": str(auth)}}))
        [firing] = wait_for(lambda: receiver.delivered("firing"), timeout=15, what="the firing notification")
        took = firing.at - began
        # forSeconds, then the cpu needs two samples, then groupWait; the margin covers the CLI's start-up.
        assert took < 1 + 2 * METRICS_INTERVAL + GROUP_WAIT + 3, took

        expected = "sha256=" + hmac.new(b"k3y-of-the-hook", firing.body, hashlib.sha256).hexdigest()
        assert firing.headers["X-Orchestrator-Signature"] == expected
        assert firing.headers["Authorization"] == "Bearer t0ken-from-a-file"
        assert firing.headers["Content-Type"] == "application/json"
        body = firing.json()
        assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "default/hook"
        assert body["groupKey"] and "default/hot" in body["groupKey"]
        [alert] = body["alerts"]
        assert alert["status"] == "firing" and alert["endsAt"] == "0001-01-01T00:00:00Z"
        assert {k: alert["labels"][k] for k in ("alertname", "namespace", "process", "replica", "severity", "team")} \
            == {"alertname": "default/hot", "namespace": "default", "process": "burner", "replica": "0",
                "severity": "critical", "team": "ops"}
        summary = alert["annotations"]["summary"]
        assert summary.startswith("burner[0] at ") and summary.endswith("% over 50%") and "{{" not in summary
        assert alert["startsAt"] != "0001-01-01T00:00:00Z" and len(alert["fingerprint"]) == 16
        assert orch.events("AlertPending", "burner") and orch.events("AlertFiring", "burner")
        wait_for(lambda: notification_events(orch, "NotificationSent", "hook"), timeout=5, what="the Sent event")

        orch.ok("stop", "burner")
        [resolved] = wait_for(lambda: receiver.delivered("resolved"), timeout=10, what="the resolved notification")
        [ended] = resolved.json()["alerts"]
        assert ended["fingerprint"] == alert["fingerprint"] and ended["status"] == "resolved"
        assert ended["endsAt"] != "0001-01-01T00:00:00Z"
        assert hmac.compare_digest(resolved.headers["X-Orchestrator-Signature"], "sha256=" + hmac.new(
            b"k3y-of-the-hook", resolved.body, hashlib.sha256).hexdigest())
        quiet(receiver.count, 2, 3 * GROUP_INTERVAL, "notifications after the resolve")
        assert len(orch.events("AlertResolved", "burner")) == 1 and len(orch.events("AlertFiring", "burner")) == 1
        assert alerts_of(orch, "hot") == []
        history = json.loads(orch.ok("alerts", "history", "-o", "json"))["events"]
        assert [e["type"] for e in history] == ["AlertPending", "AlertFiring", "NotificationSent", "AlertResolved",
                                                "NotificationSent"]


# --- 2. restarts: a crash loop fires, `orchestrator restart` never counts -------------------------------------

def test_a_crash_loop_fires_restarts_but_operator_restarts_never_do(daemon: Orchestrator) -> None:
    orch = daemon
    with Receiver() as receiver:
        apply(orch, "m/crash.yaml",
              process("healthy"),
              rule("healthy-restarts", {"restarts": {"moreThan": 3, "withinSeconds": 60}}, "healthy", ["hook"]),
              webhook("hook", receiver.url))
        pids = orch.wait_running("healthy")
        for _ in range(6):
            orch.ok("restart", "healthy")
            pids = orch.wait_running("healthy", replacing=pids, timeout=10)

        apply(orch, "m/loop.yaml",
              process("looping", ["sh", "-c", "exit 1"]),
              rule("loop-restarts", {"restarts": {"moreThan": 3, "withinSeconds": 60}}, "looping", ["hook"],
                   annotations={"summary": "{{value}} restarts"}))
        [firing] = wait_for(lambda: receiver.delivered("firing", "default/loop-restarts"), timeout=15,
                            what="the crash loop's firing notification")
        [alert] = firing.json()["alerts"]
        assert alert["labels"]["process"] == "looping" and int(alert["annotations"]["summary"].split()[0]) > 3

        quiet(lambda: len(receiver.delivered()), 1, 2 * GROUP_INTERVAL, "notifications")
        answer = alerts_json(orch)
        assert [a["state"] for a in alerts_of(orch, "loop-restarts", answer)] == ["firing"]
        assert alerts_of(orch, "healthy-restarts", answer) == []
        assert orch.events("AlertPending", "healthy") == []
        assert len(orch.events("Started", "healthy")) >= 7


# --- 3. down: a failed Never process fires, a stopped process does not ----------------------------------------

def test_down_fires_for_a_failed_process_and_not_for_a_stopped_one(daemon: Orchestrator) -> None:
    orch = daemon
    with Receiver() as receiver:
        apply(orch, "m/down.yaml",
              process("calm"),
              rule("calm-down", {"down": {}}, "calm", ["hook"]),
              webhook("hook", receiver.url))
        orch.wait_running("calm")
        orch.ok("stop", "calm")
        apply(orch, "m/fails.yaml",
              process("fails", ["sh", "-c", "sleep 0.5; exit 1"], restartPolicy="Never"),
              rule("fails-down", {"down": {}}, "fails", ["hook"], severity="critical"))
        [firing] = wait_for(lambda: receiver.delivered("firing"), timeout=10, what="the down alert's notification")
        [alert] = firing.json()["alerts"]
        assert alert["labels"]["alertname"] == "default/fails-down" and alert["labels"]["severity"] == "critical"
        [exited] = orch.events("Exited", "fails")
        [fired] = orch.events("AlertFiring", "fails")
        assert fired["time"] >= exited["time"]

        quiet(lambda: len(receiver.delivered()), 1, 2 * GROUP_INTERVAL, "notifications")
        assert orch.events("AlertPending", "calm") == [] and alerts_of(orch, "calm-down") == []


# --- 3b. memory of the limit (a real hog) and notReady (a real failing readiness probe) ------------------------

HOG = ["python3", "-c", "import time\nheld = b'x' * (30 * 1024 * 1024)\ntime.sleep(600)"]  # every page touched


def test_a_memory_hog_fires_memory_of_its_limit_and_a_failing_readiness_probe_fires_not_ready(
        daemon: Orchestrator) -> None:
    orch = daemon
    gate = orch.root / "gate-open"
    readiness = {"exec": {"command": ["test", "-e", str(gate)]}, "periodSeconds": 0.2, "timeoutSeconds": 1}
    with Receiver() as receiver:
        apply(orch, "m/hog.yaml",
              # ~30 MiB touched plus the interpreter: over 80 % of 44Mi, under 100 % (no OOM kill).
              process("hog", HOG, resources={"limits": {"memory": "44Mi"}}),
              process("calm", resources={"limits": {"memory": "64Mi"}}),
              rule("hog-memory", {"memory": {"abovePercent": 80}}, "hog", ["hook"], consecutive=2,
                   annotations={"summary": "{{value}}% of the limit"}),
              rule("calm-memory", {"memory": {"abovePercent": 80}}, "calm", ["hook"]),
              rule("calm-bytes", {"memory": {"above": "20Mi"}}, "calm", ["hook"]),
              process("gated", probes={"readiness": readiness}),
              process("open", probes={"readiness": {**readiness, "exec": {"command": ["true"]}}}),
              rule("gated-ready", {"notReady": {}}, "gated", ["hook"], forSeconds=1),
              rule("open-ready", {"notReady": {}}, "open", ["hook"], forSeconds=1),
              webhook("hook", receiver.url))
        first = orch.wait_running("hog", timeout=10)

        [hog] = wait_for(lambda: receiver.delivered("firing", "default/hog-memory"), timeout=20,
                         what="the hog's memory notification")
        [alert] = [a for a in hog.json()["alerts"] if a["labels"]["alertname"] == "default/hog-memory"]
        percent = float(alert["annotations"]["summary"].split("%")[0])
        assert 80 <= percent < 100, alert
        assert orch.running("hog") == first  # warned, not killed

        [gated] = wait_for(lambda: receiver.delivered("firing", "default/gated-ready"), timeout=20,
                           what="the not-ready notification")
        assert [a["labels"]["process"] for a in gated.json()["alerts"]
                if a["labels"]["alertname"] == "default/gated-ready"] == ["gated"]
        gate.touch()
        wait_for(lambda: receiver.delivered("resolved", "default/gated-ready"), timeout=15,
                 what="the not-ready alert resolved once the probe passes")
        assert alerts_of(orch, "gated-ready") == []
        answer = alerts_json(orch)
        assert [a["state"] for a in alerts_of(orch, "hog-memory", answer)] == ["firing"]
        for quiet_rule in ("calm-memory", "calm-bytes", "open-ready"):
            assert alerts_of(orch, quiet_rule, answer) == [], quiet_rule
            assert not receiver.delivered(alertname=f"default/{quiet_rule}"), quiet_rule
        assert orch.events("AlertPending", "calm") == [] and orch.events("AlertPending", "open") == []


# --- 4. inhibition: a firing down alert mutes the other rules of its process -----------------------------------

def test_a_down_alert_inhibits_the_restarts_alert_of_the_same_process(daemon: Orchestrator) -> None:
    orch = daemon
    with Receiver() as receiver:
        apply(orch, "m/inhibit.yaml",
              process("crashy", ["sh", "-c", "exit 1"], backoff={"initialSeconds": 0.3, "maxSeconds": 0.3}),
              rule("crashy-down", {"down": {}}, "crashy", ["hook"], keepFiringForSeconds=30),
              rule("crashy-restarts", {"restarts": {"moreThan": 2, "withinSeconds": 60}}, "crashy", ["hook"]),
              webhook("hook", receiver.url))
        wait_for(lambda: receiver.delivered("firing", "default/crashy-down"), timeout=10,
                 what="the down alert's notification")

        def restarts_muted() -> bool:
            found = alerts_of(orch, "crashy-restarts")
            return bool(found) and found[0]["state"] == "firing" and found[0]["muted"]

        wait_for(restarts_muted, timeout=15, what="the restarts alert firing, muted")
        answer = alerts_json(orch)
        [down] = alerts_of(orch, "crashy-down", answer)
        [restarts] = alerts_of(orch, "crashy-restarts", answer)
        assert (down["state"], down["muted"]) == ("firing", False)
        assert (restarts["state"], restarts["muted"]) == ("firing", True)
        quiet(lambda: len(receiver.delivered()), 1, 3 * GROUP_INTERVAL, "notifications")
        names = {a["labels"]["alertname"] for r in receiver.delivered() for a in r.json()["alerts"]}
        assert names == {"default/crashy-down"}


# --- 5. exec notifiers: the body on stdin, the status in the env, killed at the timeout -------------------------

COPY = ("import json, os, sys, pathlib; d = pathlib.Path(sys.argv[1]); d.mkdir(exist_ok=True); "
        "(d / 'body.json').write_bytes(sys.stdin.buffer.read()); "
        "(d / 'env.json').write_text(json.dumps(dict(os.environ)))")
SLEEPS = ("sleep 3607", "sleep 3608", "sleep 3609")


def _sleepers(*sleeps: str) -> list[psutil.Process]:
    """Live processes of the exec notifiers below (their sleeps, which no other process runs)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if any(sleep in line for sleep in sleeps or SLEEPS):
            found.append(proc)
    return found


def test_exec_notifiers_get_the_body_and_a_hanging_one_is_killed(daemon: Orchestrator) -> None:
    orch = daemon
    out = orch.root / "exec-out"
    try:
        apply(orch, "m/exec.yaml",
              process("broken", ["sh", "-c", "exit 3"], restartPolicy="Never"),
              rule("broken-down", {"down": {}}, "broken", ["copy", "hang", "detach"]),
              exec_notifier("copy", ["python3", "-c", COPY, str(out)]),
              exec_notifier("hang", ["sh", "-c", "sleep 3607 & sleep 3608; wait"], exec={"timeoutSeconds": 1}),
              # Exits 0 at once, leaving a child that holds its stdout: delivered (the child is ended with it).
              exec_notifier("detach", ["sh", "-c", "sleep 3609 & exit 0"], exec={"timeoutSeconds": 5}))
        wait_for(lambda: (out / "env.json").exists(), timeout=10, what="the exec notifier's output")
        env = json.loads((out / "env.json").read_text())
        body = json.loads((out / "body.json").read_text())
        assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "default/copy"
        [alert] = body["alerts"]
        assert alert["labels"]["alertname"] == "default/broken-down"
        assert (env["ORCH_ALERT_STATUS"], env["ORCH_ALERT_NAME"], env["ORCH_ALERT_FINGERPRINT"]) == (
            "firing", "default/broken-down", alert["fingerprint"])
        assert "ORCH_TEST_SESSION" not in env and env["PATH"]  # the daemon's PATH, not its whole environment
        wait_for(lambda: notification_events(orch, "NotificationSent", "copy"), timeout=5, what="copy's Sent")
        [sent] = wait_for(lambda: notification_events(orch, "NotificationSent", "detach"), timeout=10,
                          what="detach's Sent")
        assert "at try" not in sent["message"], sent
        assert not notification_events(orch, "NotificationFailed", "detach")
        assert not _sleepers("sleep 3609")

        [failed] = wait_for(lambda: notification_events(orch, "NotificationFailed", "hang"), timeout=10,
                            what="the hanging notifier's failure")
        assert "killed at its timeout of 1s" in failed["message"], failed
        # Killed with its whole group: whatever runs of it now is a retry started after that failure.
        for proc in _sleepers():
            try:
                assert proc.create_time() >= failed["time"] - 0.05, (proc.cmdline(), failed)
            except psutil.NoSuchProcess:
                pass
        # Forget it: the delivery under way is killed at its timeout, and nothing of it is left.
        orch.write("m/exec.yaml", documents(
            process("broken", ["sh", "-c", "exit 3"], restartPolicy="Never"),
            rule("broken-down", {"down": {}}, "broken", ["copy"]),
            exec_notifier("copy", ["python3", "-c", COPY, str(out)])))
        orch.ok("apply", "--prune", "-f", str(orch.root / "m"))
        wait_for(lambda: not _sleepers(), timeout=5, what="no sleeper of the hanging notifier left")
        assert not notification_events(orch, "NotificationSent", "hang")
    finally:
        for proc in _sleepers():
            proc.kill()


# --- 6. the outbox retries until the receiver takes it, and delivers once --------------------------------------

def test_a_failing_receiver_gets_the_notification_once_after_retries(daemon: Orchestrator) -> None:
    orch = daemon
    with Receiver(fail_first=3) as receiver:
        apply(orch, "m/retry.yaml",
              process("gone", ["sh", "-c", "exit 1"], restartPolicy="Never"),
              rule("gone-down", {"down": {}}, "gone", ["flaky"]),
              webhook("flaky", receiver.url))
        # Tries at 0, +1, +2, +4 s: the fourth is answered 200.
        [delivered] = wait_for(lambda: receiver.delivered("firing"), timeout=20, what="the delivery after retries")
        [alert] = delivered.json()["alerts"]
        same = [r for r in receiver.requests if r.json()["alerts"][0]["fingerprint"] == alert["fingerprint"]]
        assert [r.answered for r in same] == [500, 500, 500, 200]
        assert all(r.body == delivered.body for r in same)  # the same notification, saved once, tried again
        wait_for(lambda: notification_events(orch, "NotificationSent", "flaky"), timeout=5, what="the Sent event")
        [failed] = notification_events(orch, "NotificationFailed", "flaky")
        [sent] = notification_events(orch, "NotificationSent", "flaky")
        assert "HTTP 500" in failed["message"] and "at try 4" in sent["message"] and failed["time"] < sent["time"]
        quiet(receiver.count, 4, 2 * GROUP_INTERVAL, "requests")
        assert orch.api("GET", "/alerts")["notifiers"] == [{"key": "default/flaky", "kind": "webhook", "outbox": 0}]


# --- 7. a daemon killed and started again does not notify again ------------------------------------------------

def test_a_restarted_daemon_does_not_fire_again_and_still_resolves(daemons: Daemons) -> None:
    daemons.start()
    orch = daemons.orch
    with Receiver() as receiver:
        apply(orch, "m/cpu.yaml",
              process("burner", BURNER),
              rule("hot", {"cpu": {"abovePercent": 50}}, "burner", ["hook"], forSeconds=0.5),
              webhook("hook", receiver.url))
        [firing] = wait_for(lambda: receiver.delivered("firing"), timeout=15, what="the firing notification")
        wait_for(lambda: notification_events(orch, "NotificationSent", "hook"), timeout=5, what="the Sent event")
        burner = orch.running("burner")
        pid = int(orch.api("GET", "/health")["pid"])
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), timeout=10, what="the daemon dead")
        daemons.children[0].wait(timeout=10)

        daemons.start()
        assert orch.wait_running("burner") == burner  # adopted, not restarted
        quiet(receiver.count, 1, 4 * GROUP_INTERVAL, "notifications after the restart")
        assert [a["state"] for a in alerts_of(orch, "hot")] == ["firing"]

        orch.ok("stop", "burner")
        [resolved] = wait_for(lambda: receiver.delivered("resolved"), timeout=10, what="the resolved notification")
        assert resolved.json()["alerts"][0]["fingerprint"] == firing.json()["alerts"][0]["fingerprint"]
        quiet(receiver.count, 2, 2 * GROUP_INTERVAL, "notifications after the resolve")


# --- 8. a silence mutes, and its end lets the notification through ---------------------------------------------

def test_a_silenced_rule_sends_nothing_until_unsilenced(daemon: Orchestrator) -> None:
    orch = daemon
    with Receiver() as receiver:
        apply(orch, "m/rule.yaml",
              rule("doomed-down", {"down": {}}, "doomed", ["hook"]),
              webhook("hook", receiver.url))
        made = json.loads(orch.ok("alerts", "silence", "--rule", "doomed-down", "--for", "60", "--reason", "test",
                                  "-o", "json"))
        assert made["matchers"] == {"alertname": "default/doomed-down"} and made["reason"] == "test"
        [said] = orch.events("AlertSilenced")
        assert made["id"] in said["message"] and "test" in said["message"]

        apply(orch, "m/doomed.yaml", process("doomed", ["sh", "-c", "exit 1"], restartPolicy="Never"))
        wait_for(lambda: orch.events("AlertFiring", "doomed"), timeout=10, what="the alert firing")
        quiet(receiver.count, 0, 3 * GROUP_INTERVAL, "notifications while silenced")
        answer = alerts_json(orch)
        [alert] = alerts_of(orch, "doomed-down", answer)
        assert (alert["state"], alert["muted"]) == ("firing", True)
        assert [s["id"] for s in answer["silences"]] == [made["id"]]
        assert "(muted)" in orch.ok("alerts")

        began = time.monotonic()
        assert made["id"] in orch.ok("alerts", "unsilence", made["id"])
        [firing] = wait_for(lambda: receiver.delivered("firing"), timeout=10, what="the firing after the unsilence")
        assert firing.at - began < GROUP_WAIT + GROUP_INTERVAL + 3
        assert firing.json()["alerts"][0]["labels"]["alertname"] == "default/doomed-down"
        assert len(orch.events("AlertSilenced")) == 2
        assert [a["muted"] for a in alerts_of(orch, "doomed-down")] == [False]


# --- 9. a real Alertmanager takes our alerts and resolves them -------------------------------------------------

def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    if not os.access(ALERTMANAGER, os.X_OK):
        pytest.skip(f"{ALERTMANAGER} is not installed (Debian's prometheus-alertmanager)")
    config = tmp_path / "am/alertmanager.yml"
    config.parent.mkdir(parents=True)
    config.write_text('route:\n  receiver: "null"\n  group_wait: 1s\nreceivers:\n  - name: "null"\n')
    port = _free_port()
    with open(tmp_path / "am/out.log", "ab") as out:
        child = subprocess.Popen([ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am/data'}",
                                  f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(f"{base}/-/ready") or child.poll() is not None, timeout=20,
                 what="Alertmanager ready")
        assert child.poll() is None, (tmp_path / "am/out.log").read_text()
        yield base
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


def test_a_real_alertmanager_lists_our_alert_and_resolves_it(daemon: Orchestrator, alertmanager: str) -> None:
    orch = daemon
    apply(orch, "m/am.yaml",
          process("burner", BURNER),
          rule("hot", {"cpu": {"abovePercent": 50}}, "burner", ["am"], forSeconds=0.5, severity="warning",
               annotations={"summary": "{{process}} is hot"}),
          webhook("am", f"{alertmanager}/api/v2/alerts", hook={"payload": "alertmanager"}))

    def ours() -> list[dict[str, Any]]:
        return [a for a in _get_json(f"{alertmanager}/api/v2/alerts")
                if a["labels"].get("alertname") == "default/hot"]

    [alert] = wait_for(ours, timeout=20, what="our alert in Alertmanager")
    assert {k: alert["labels"][k] for k in ("alertname", "process", "severity", "namespace", "replica")} == {
        "alertname": "default/hot", "process": "burner", "severity": "warning", "namespace": "default",
        "replica": "0"}
    assert alert["status"]["state"] == "active" and alert["annotations"]["summary"] == "burner is hot"
    wait_for(lambda: notification_events(orch, "NotificationSent", "am"), timeout=5, what="the Sent event")
    assert not notification_events(orch, "NotificationFailed", "am")

    orch.ok("stop", "burner")

    def resolved() -> bool:
        from datetime import datetime, timezone

        now = datetime.now(timezone.utc)
        return all(datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")) <= now for a in ours())

    wait_for(resolved, timeout=15, what="our alert resolved in Alertmanager")
    # Resolved by our resolve, not by its endsAt (4 group intervals ahead) running out.
    wait_for(lambda: [e for e in notification_events(orch, "NotificationSent", "am")
                      if e["message"].startswith("resolved ")], timeout=5, what="the resolve sent")
    assert not notification_events(orch, "NotificationFailed", "am")


# --- 10. `orchestrator notify test` ---------------------------------------------------------------------------

def test_notify_test_reaches_a_live_receiver_and_says_why_not_for_a_dead_one(daemon: Orchestrator) -> None:
    orch = daemon
    closed = _free_port()
    with Receiver() as receiver:
        apply(orch, "m/notifiers.yaml",
              webhook("live", receiver.url),
              webhook("dead", f"http://127.0.0.1:{closed}/hook", hook={"timeoutSeconds": 2}))
        live = orch("notify", "test", "live")
        assert live.returncode == 0, (live.stdout, live.stderr)
        assert "reached live" in live.stdout
        [got] = receiver.delivered("firing")
        body = got.json()
        assert body["version"] == "4" and body["alerts"][0]["labels"]["alertname"] == "orchestrator/test"
        assert body["alerts"][0]["labels"]["severity"] == "info"

        dead = orch("notify", "test", "dead")
        assert dead.returncode == 1, (dead.stdout, dead.stderr)
        assert "did not reach dead" in dead.stdout and f"127.0.0.1:{closed}" in dead.stdout, dead.stdout
        assert "refused" in dead.stdout.lower(), dead.stdout
        assert receiver.count() == 1
        assert orch.api("GET", "/alerts")["alerts"] == []
