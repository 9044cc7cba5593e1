"""Server-sent events of the HTTP API: how soon an event reaches an open dashboard, and what 32 open streams
with one slow client cost the daemon.

    python bench/bench_sse.py [--objects 20] [--events 20] [--rounds 200] [--json]

A daemon (`daemon --http` on loopback) runs OBJECTS sleeping processes. Then:

1. Latency. The dashboard (/ui/) is open in Debian's chromium-headless-shell (Playwright), logged in with an
   admin token; a MutationObserver in the page notes `Date.now()` as each event's row appears in its events
   pane. Beside it a Python client reads the same stream (`GET /api/v1/events?watch=1`) with a raw socket:
   the floor, what the wire alone costs. EVENTS restarts are asked for one after another; each event's
   latency is when it was seen minus its `time` (the daemon's wall clock as the reconciler emitted it: the
   same host, the same clock). Target: median at most 100 ms in the browser.
2. Streams. The daemon's RSS idle (no client), then with 31 clients reading event streams and one slow client
   (a 4 KiB receive buffer, never read) while ROUNDS restarts make events. Targets: RSS within 5 MB of idle;
   every reading client gets every event, in order, with no gap; the slow one is let go (an `overflow` frame,
   then the end of its stream). The Unix-socket `GET /health` latency during the storm is shown too.

Skips the browser part with a reason when Playwright or /usr/bin/chromium-headless-shell is missing. This
script makes itself a child subreaper: whatever the daemon leaves behind is killed and reaped.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import BenchError, environment, figure_row, log, run_bench, table_lines

from orchestrator.cli.client import Client
from orchestrator.host.tokens import create_token

BROWSER = "/usr/bin/chromium-headless-shell"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


class Reader(threading.Thread):
    """One SSE client of GET /api/v1/events?watch=1 over a raw socket: the ids it got, when (wall clock), and
    whether it was sent `overflow`. `slow`: a tiny receive buffer, and nothing read until `drain()`."""

    def __init__(self, port: int, token: str, since: int, slow: bool = False) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        if slow:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(60)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall((f"GET /api/v1/events?watch=1&since={since} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           f"Authorization: Bearer {token}\r\n\r\n").encode())
        self.slow = slow
        self.seen: list[tuple[int, float, float]] = []  # (id, event time, received at)
        self.overflowed = False
        self.ended = False
        self.ready = threading.Event()

    def run(self) -> None:
        if not self.slow:
            self._read()

    def drain(self) -> None:
        self._read()

    def _read(self) -> None:
        buffer = b""
        head_done = False
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    return  # still open: the server has not let it go
                if not data:
                    self.ended = True
                    return
                now = time.time()
                buffer += data
                if not head_done:
                    if b"\r\n\r\n" not in buffer:
                        continue
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    if b" 200 " not in head.split(b"\r\n", 1)[0]:
                        raise BenchError(f"a stream was refused: {head[:200]!r}")
                    head_done = True
                    self.ready.set()
                # Chunk framing lines are dropped with everything that is not a field of a frame.
                while b"\n\n" in buffer:
                    frame, buffer = buffer.split(b"\n\n", 1)
                    fields = dict(line.split(b": ", 1) for line in frame.split(b"\n") if b": " in line
                                  and line.split(b": ", 1)[0] in (b"event", b"id", b"data"))
                    if fields.get(b"event") == b"overflow":
                        self.overflowed = True
                    elif fields.get(b"event") == b"event":
                        document = json.loads(fields[b"data"])
                        self.seen.append((document["id"], document["time"], now))
        except (OSError, ValueError):
            self.ended = True
        finally:
            self.ready.set()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # a recv blocked in the thread would keep the socket open
        except OSError:
            pass
        self.sock.close()


def api(port: int, token: str, method: str, path: str, body: Any = None) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}", **({"Content-Type": "application/json"} if data else {})}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        answer = json.loads(response.read() or b"{}")
        if response.status != 200:
            raise BenchError(f"{method} {path}: {response.status} {answer}")
        return answer
    finally:
        connection.close()


def last_event_id(port: int, token: str) -> int:
    events = api(port, token, "GET", "/api/v1/events?limit=1")["events"]
    return int(events[-1]["id"]) if events else 0


def browser_latency(port: int, token: str, count: int) -> dict[str, Any]:
    """Restarts asked one at a time with the dashboard open; each event's latency in the browser and on the
    raw reader, in ms."""
    if not os.path.exists(BROWSER):
        return {"skipped": f"{BROWSER} is missing (apt install chromium-headless-shell)"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed (pip install playwright)"}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/ui/")
            page.fill("#token", token)
            page.press("#token", "Enter")
            page.wait_for_selector("#app", state="visible", timeout=15000)
            page.wait_for_selector('#connection[data-state="connected"]', timeout=15000)
            page.evaluate("""() => {
                window.__seen = {};
                new MutationObserver((changes) => {
                    const now = Date.now();
                    for (const change of changes) for (const node of change.addedNodes) {
                        if (node.dataset && node.dataset.id && !(node.dataset.id in window.__seen))
                            window.__seen[node.dataset.id] = now;
                    }
                }).observe(document.querySelector('#events'), {childList: true});
            }""")
            since = last_event_id(port, token)
            floor = Reader(port, token, since)
            floor.start()
            floor.ready.wait(10)
            for i in range(count):
                before = last_event_id(port, token)
                api(port, token, "POST", "/api/v1/restart", {"name": f"p{i % 10}"})
                deadline = time.monotonic() + 10
                while last_event_id(port, token) == before or not _all_seen(page, floor, since):
                    if time.monotonic() > deadline:
                        raise BenchError("the restart's events did not reach both clients within 10 s")
                    time.sleep(0.02)
                time.sleep(0.3)  # the restart settles (its Started event) before the next one is asked
            deadline = time.monotonic() + 10
            while not _all_seen(page, floor, since):
                if time.monotonic() > deadline:
                    raise BenchError("the events did not all reach both clients")
                time.sleep(0.05)
            seen_in_page: dict[str, int] = page.evaluate("() => window.__seen")
            events = api(port, token, "GET", f"/api/v1/events?since={since}")["events"]
            floor.close()
            times = {str(e["id"]): e["time"] for e in events}
            page_ms = [seen_in_page[i] - times[i] * 1000 for i in times if i in seen_in_page]
            raw_ms = [(received - at) * 1000 for _, at, received in floor.seen]
            return {"events": len(times), "browser_ms": _summary(page_ms), "raw_ms": _summary(raw_ms)}
        finally:
            browser.close()


def _all_seen(page: Any, floor: Reader, since: int) -> bool:
    events = {e["id"] for e in _events_since(page, since)}
    in_page = {int(i) for i in page.evaluate("() => Object.keys(window.__seen)")}
    return events <= in_page and events <= {i for i, _, _ in floor.seen}


def _events_since(page: Any, since: int) -> list[dict[str, Any]]:
    return page.evaluate(f"""async () => {{
        const r = await fetch('/api/v1/events?since={since}',
                              {{headers: {{Authorization: 'Bearer ' + sessionStorage.getItem('orchestrator.token')}}}});
        return (await r.json()).events;
    }}""")  # type: ignore[no-any-return]


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "max": None}
    ordered = sorted(values)
    return {"p50": statistics.median(ordered), "p90": ordered[int(len(ordered) * 0.9)], "max": ordered[-1]}


def streams(state: Path, pid: int, port: int, token: str, rounds: int, objects: int) -> dict[str, Any]:
    """31 reading streams and one slow one while `rounds` restarts make events: RSS, completeness, overflow."""
    deadline = time.monotonic() + 15
    while Client(state).request("GET", "/health").get("streams"):  # the dashboard's streams given back
        if time.monotonic() > deadline:
            raise BenchError("the streams of the closed clients were not given back within 15 s")
        time.sleep(0.1)
    idle_samples = []
    for _ in range(5):  # the idle floor: no client connected
        time.sleep(0.2)
        idle_samples.append(rss_bytes(pid))
    idle = statistics.median(idle_samples)
    since = last_event_id(port, token)
    readers = [Reader(port, token, since) for _ in range(31)]
    slow = Reader(port, token, since, slow=True)
    for reader in readers:
        reader.start()
    for reader in readers:
        if not reader.ready.wait(10):
            raise BenchError("a stream did not open")
    peak = rss_bytes(pid)
    health_ms: list[float] = []
    client = Client(state)
    for i in range(rounds):
        api(port, token, "POST", "/api/v1/restart", {"name": f"p{i % objects}"})
        if i % 10 == 0:
            started = time.perf_counter()
            client.request("GET", "/health")
            health_ms.append((time.perf_counter() - started) * 1000)
            peak = max(peak, rss_bytes(pid))
    last = last_event_id(port, token)
    deadline = time.monotonic() + 30
    while any(not r.seen or r.seen[-1][0] < last for r in readers):
        if time.monotonic() > deadline:
            raise BenchError("the reading clients did not get every event")
        peak = max(peak, rss_bytes(pid))
        time.sleep(0.05)
    peak = max(peak, rss_bytes(pid))
    expected = [e["id"] for e in api(port, token, "GET", f"/api/v1/events?since={since}")["events"]]
    complete = sum(1 for r in readers if [i for i, _, _ in r.seen][:len(expected)] == expected)
    slow.sock.settimeout(10)
    slow.drain()
    for reader in [*readers, slow]:
        reader.close()
    return {"idle_rss": idle, "peak_rss": peak, "events": len(expected), "readers": len(readers),
            "complete_readers": complete, "slow_overflowed": slow.overflowed, "slow_ended": slow.ended,
            "slow_got": len(slow.seen), "health_ms": _summary(health_ms), "health_requests": len(health_ms)}


def measure(objects: int, events: int, rounds: int, browser: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        root = Path(tmp)
        state, manifests = root / "state", root / "m"
        manifests.mkdir()
        for i in range(objects):
            (manifests / f"p{i}.yaml").write_text(
                f"apiVersion: orchestrator/v1\nkind: Process\nmetadata: {{name: p{i}}}\n"
                "spec: {command: [sleep, '3600'], shutdown: {timeoutSeconds: 0.5}}\n")
        state.mkdir()
        token = create_token(state, "bench", "admin", time.time())
        port = free_port()
        cli = [sys.executable, "-m", "orchestrator", "--state-dir", str(state)]
        with open(root / "daemon.out", "wb") as out:
            daemon = subprocess.Popen([*cli, "daemon", "--http", f"127.0.0.1:{port}"], stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while not Client(state).ping():
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise BenchError("the daemon did not answer")
                time.sleep(0.05)
            subprocess.run([*cli, "apply", "-f", str(manifests), "--wait"], check=True, capture_output=True,
                           timeout=120)
            latency = browser_latency(port, token, events) if browser else {"skipped": "--no-browser"}
            log(json.dumps(latency))
            load = streams(state, daemon.pid, port, token, rounds, objects)
            log(json.dumps(load))
            return {"env": environment(), "objects": objects, "latency": latency, "streams": load}
        finally:
            try:
                Client(state).request("POST", "/shutdown")
                daemon.wait(timeout=60)
            except Exception as error:  # noqa: BLE001 - whatever is left is killed by run_bench
                log(f"shutdown: {error}")


def table(report: dict[str, Any]) -> str:
    latency, load = report["latency"], report["streams"]
    rows = []
    if "skipped" in latency:
        rows.append(figure_row(f"event -> dashboard: skipped, {latency['skipped']}", "-", None, None, "{}", "-", None))
    else:
        browser, raw = latency["browser_ms"], latency["raw_ms"]
        rows += [
            figure_row("event -> dashboard row, median (ms)", latency["events"], raw["p50"], browser["p50"],
                       "{:.1f}", "<= 100 ms", browser["p50"] is not None and browser["p50"] <= 100),
            figure_row("event -> dashboard row, p90 (ms)", latency["events"], raw["p90"], browser["p90"],
                       "{:.1f}", "-", None),
        ]
    growth = (load["peak_rss"] - load["idle_rss"]) / 2**20
    rows += [
        figure_row("daemon RSS, idle -> 32 streams (MiB)", load["events"], load["idle_rss"] / 2**20,
                   load["peak_rss"] / 2**20, "{:.1f}", "within 5 MB", growth * 2**20 <= 5e6),
        figure_row("reading clients with every event", load["readers"], load["readers"], load["complete_readers"],
                   "{:.0f}", "all", load["complete_readers"] == load["readers"]),
        figure_row("slow client let go (overflow, end)", 1, 1, int(load["slow_overflowed"] and load["slow_ended"]),
                   "{:.0f}", "yes", load["slow_overflowed"] and load["slow_ended"]),
        figure_row("GET /health during the storm, median (ms)", load["health_requests"], None, load["health_ms"]["p50"],
                   "{:.2f}", "-", None),
    ]
    env = report["env"]
    head = (f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; {report['objects']} processes; "
            "latency floor: a raw socket reading the same stream; RSS floor: the idle daemon")
    return "\n".join([head, *table_lines(rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--events", type=int, default=20, help="restarts asked with the dashboard open")
    parser.add_argument("--rounds", type=int, default=200, help="restarts asked with 32 streams open")
    parser.add_argument("--no-browser", action="store_true", help="only the streams part")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    if shutil.which("sleep") is None:
        raise SystemExit("needs sleep(1)")
    return run_bench(lambda: measure(args.objects, args.events, args.rounds, not args.no_browser), table,
                     args.json)


if __name__ == "__main__":
    sys.exit(main())
