"""The HTTP listener's newer parts, tested from outside the process over real loopback sockets against a real
daemon: the server-sent event streams (events?watch=1 and logs?follow=1: frames, resuming with Last-Event-ID,
the key filter, the limit of 32 streams, a slow consumer let go with `overflow`), GET /logs, /usage, /metrics,
the dashboard's static files under /ui/, /whoami, HTTPS with --tls-cert/--tls-key, and the one error shape.

Streams are read off raw sockets by the small HTTP/1.1 chunked + SSE parser below (`Stream`), so what is
checked is what goes over the wire. Every socket a test opens is closed at its teardown (the `closing`
fixture), and every daemon is shut down (the `orch` fixture, or each test's own `finally`)."""

# ruff: noqa: F811 - pytest fixtures imported from test_daemon and test_http_api are redefined as arguments

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from test_daemon import Orchestrator, orch, process  # noqa: F401 - orch is a fixture
from test_http_api import Listener, _free_port, listener, start, tokens  # noqa: F401 - fixtures

from orchestrator.host.sockets import connect as unix_connect
from orchestrator.host.sockets import socket_path

pytestmark = pytest.mark.timeout(120)

MAX_STREAMS = 32  # control.py
QUEUE = 100  # streams.py: events one stream may fall behind by


# -- a raw HTTP/1.1 client that reads chunked SSE bodies by hand -------------------------------------------


class Stream:
    """One GET over a raw socket: the status and headers, then the body (Content-Length or chunked), read as
    SSE frames. Reads are deadline-bound and buffered here, so a timed-out read leaves the stream usable."""

    def __init__(self, sock: socket.socket, path: str, headers: dict[str, str] | None = None,
                 host: str = "127.0.0.1", send: bool = True) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.sse = bytearray()  # decoded body bytes not yet parsed into frames
        self.ended = False  # the terminating chunk came
        self.eof = False  # the server closed the connection
        self.status = 0
        self.headers: dict[str, str] = {}
        self.request = "".join([f"GET {path} HTTP/1.1\r\n", f"Host: {host}\r\n",
                                *(f"{k}: {v}\r\n" for k, v in (headers or {}).items()), "\r\n"]).encode()
        if send:
            sock.sendall(self.request)

    def close(self) -> None:
        self.sock.close()

    # reading
    def _recv(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the stream's deadline passed")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _line(self, deadline: float) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._recv(deadline):
                raise EOFError(f"connection closed in a line: {bytes(self.buffer[:200])!r}")
        end = self.buffer.index(b"\r\n")
        line = bytes(self.buffer[:end])
        del self.buffer[:end + 2]
        return line

    def _exact(self, count: int, deadline: float) -> bytes:
        while len(self.buffer) < count:
            if not self._recv(deadline):
                raise EOFError(f"connection closed after {len(self.buffer)} of {count} bytes")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def head(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        status_line = self._line(deadline).decode()
        assert status_line.startswith("HTTP/1.1 "), status_line
        self.status = int(status_line.split()[1])
        while line := self._line(deadline):
            name, _, value = line.decode().partition(":")
            self.headers[name.strip().lower()] = value.strip()
        return self.status

    def body(self, timeout: float = 10) -> bytes:
        """A body of Content-Length bytes (an error answer, a plain GET)."""
        return self._exact(int(self.headers.get("content-length", "0")), time.monotonic() + timeout)

    def json(self, timeout: float = 10) -> Any:
        return json.loads(self.body(timeout))

    def _chunk(self, deadline: float) -> bytes | None:
        size = int(self._line(deadline).split(b";")[0], 16)
        if size == 0:
            assert self._line(deadline) == b"", "no trailers are sent"
            self.ended = True
            return None
        data = self._exact(size, deadline)
        assert self._exact(2, deadline) == b"\r\n", "a chunk ends with CRLF"
        return data

    def frame(self, timeout: float = 10) -> dict[str, Any] | None:
        """The next SSE message: {"event", "id", "data" (parsed JSON), "retry"} as they came, or {"comment"}
        for a comment; None once the body ended. TimeoutError past `timeout` (nothing is lost)."""
        assert self.headers.get("transfer-encoding") == "chunked", self.headers
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self.sse:
            if self.ended:
                assert not self.sse, f"the stream ended in a frame: {bytes(self.sse)!r}"
                return None
            chunk = self._chunk(deadline)
            if chunk is not None:
                self.sse += chunk
        end = self.sse.index(b"\n\n")
        text = bytes(self.sse[:end]).decode()
        del self.sse[:end + 2]
        return parse_frame(text)

    def frames(self, count: int, timeout: float = 10, skip_comments: bool = True) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while len(got) < count:
            item = self.frame(max(0.001, deadline - time.monotonic()))
            assert item is not None, f"the stream ended after {got}"
            if skip_comments and "comment" in item:
                continue
            got.append(item)
        return got

    def closed_by_server(self, timeout: float) -> bool:
        """Reads what is left (frames and all): True when the server ends the body and closes the connection."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._recv(deadline)
            except TimeoutError:
                return False
        return True


def parse_frame(text: str) -> dict[str, Any]:
    lines = text.split("\n")
    if all(line.startswith(":") for line in lines):
        return {"comment": "\n".join(line[1:].strip() for line in lines)}
    fields: dict[str, Any] = {}
    for line in lines:
        assert not line.startswith(":"), f"a comment inside a frame: {text!r}"
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        assert name in ("event", "id", "data", "retry"), f"an unknown field {name!r} in {text!r}"
        assert name not in fields, f"{name} twice in one frame (data is always one line of JSON): {text!r}"
        fields[name] = value
    if "data" in fields:
        fields["data"] = json.loads(fields["data"])
    return fields


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Whatever a test puts here (sockets, streams, connections) is closed at its teardown, even on failure."""
    opened: list[Any] = []
    yield opened
    for item in opened:
        try:
            item.close()
        except OSError:
            pass


def tcp(listener: Listener, closing: list[Any], rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closing.append(sock)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window is set by it
    sock.settimeout(10)
    sock.connect((listener.host, listener.port))
    return sock


def watch(listener: Listener, closing: list[Any], path: str, token: str, headers: dict[str, str] | None = None,
          rcvbuf: int | None = None) -> Stream:
    stream = Stream(tcp(listener, closing, rcvbuf), path, {"Authorization": f"Bearer {token}", **(headers or {})})
    closing.append(stream)
    return stream


def opened(stream: Stream) -> Stream:
    """The stream's head, checked as an open SSE stream, and its opening `retry` frame."""
    assert stream.head() == 200, (stream.status, stream.body())
    assert stream.headers["content-type"].startswith("text/event-stream"), stream.headers
    assert stream.frame() == {"retry": "2000"}
    return stream


def reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0): the server's next write to it fails at once."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def apply(orch: Orchestrator, *docs: str, name: str = "app.yaml") -> dict[str, Any]:
    """Apply manifest texts over the Unix socket (what the CLI sends, without a Python start-up)."""
    path = orch.write(f"m/{name}", "---\n".join(docs))  # its folder is the processes' working directory
    return orch.api("POST", "/apply", {"files": [{"file": str(path), "text": path.read_text()}]})


def request(listener: Listener, method: str, path: str, token: str | None = None, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A request over TCP: status, lower-cased headers and the raw body."""
    connection = http.client.HTTPConnection(listener.host, listener.port, timeout=10)
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def error_shape(raw: bytes, reason: str) -> dict[str, Any]:
    document = json.loads(raw)
    assert set(document) == {"error"}, document
    error = document["error"]
    assert set(error) == {"reason", "message", "problems"}, error
    assert error["reason"] == reason and isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["problems"], list), error
    return error  # type: ignore[no-any-return]


def events_of(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for item in frames:
        assert item.get("event") == "event", item
        assert item["id"] == str(item["data"]["id"]), item  # the frame's id is the event's
    return [item["data"] for item in frames]


def stored(orch: Orchestrator, query: str = "") -> list[dict[str, Any]]:
    return list(orch.api("GET", f"/events{query}")["events"])


# -- 1-3: the event stream ---------------------------------------------------------------------------------


def test_an_event_stream_sends_the_log_then_live_events(orch: Orchestrator, tokens: dict[str, str],
                                                        listener: Listener, closing: list[Any]) -> None:
    apply(orch, process("a"))
    orch.wait_running("a")
    before = stored(orch)
    assert [e["type"] for e in before] == ["Applied", "Started"], before

    stream = watch(listener, closing, "/api/v1/events?watch=1", tokens["read"])
    assert stream.head() == 200
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["transfer-encoding"] == "chunked" and stream.headers["cache-control"] == "no-store"
    assert stream.frame() == {"retry": "2000"}  # the first frame: how long a browser waits to reconnect
    backlog = events_of(stream.frames(len(before)))
    assert backlog == before  # the stored events, in order, as GET /events gives them

    # A live event arrives on the open stream: an apply over TCP (admin), of a new process.
    path = orch.write("m/b.yaml", process("b"))
    status, _, raw = request(listener, "POST", "/api/v1/apply", tokens["admin"],
                             {"files": [{"file": str(path), "text": path.read_text()}]})
    assert status == 200, raw
    live: list[dict[str, Any]] = []
    while not any(e["type"] == "Started" and e["object"] == "default/b" for e in live):
        live += events_of(stream.frames(1))
    assert [e["id"] for e in live] == list(range(before[-1]["id"] + 1, before[-1]["id"] + 1 + len(live)))
    assert live[0]["type"] == "Applied" and "+b" in live[0]["message"], live[0]
    assert live == stored(orch, f"?since={before[-1]['id']}")[:len(live)]  # what was streamed is what was stored


def test_a_stream_resumes_after_last_event_id_which_wins_over_since(orch: Orchestrator, tokens: dict[str, str],
                                                                    listener: Listener, closing: list[Any]) -> None:
    for name in "abc":  # an Applied and a Started each
        apply(orch, process(name), name=f"{name}.yaml")
        orch.wait_running(name)
    everything = stored(orch)
    assert len(everything) >= 6, everything
    middle = everything[len(everything) // 2]["id"]
    expected = stored(orch, f"?since={middle}")
    assert expected == [e for e in everything if e["id"] > middle] and expected

    # Last-Event-ID wins over ?since= (here one that would give nothing, and one that would give all).
    for since in (everything[-1]["id"], 0):
        stream = opened(watch(listener, closing, f"/api/v1/events?watch=1&since={since}", tokens["read"],
                              {"Last-Event-ID": str(middle)}))
        assert events_of(stream.frames(len(expected))) == expected
    # ?since= alone resumes the same way.
    by_since = opened(watch(listener, closing, f"/api/v1/events?watch=1&since={middle}", tokens["read"]))
    assert events_of(by_since.frames(len(expected))) == expected

    # Nothing more was replayed (no duplicate, no gap): the next frame on each is the next event made.
    apply(orch, process("d"), name="d.yaml")
    following = events_of(stream.frames(1)) + events_of(by_since.frames(1))
    assert [e["id"] for e in following] == [everything[-1]["id"] + 1] * 2
    assert following[0]["type"] == "Applied" and "+d" in following[0]["message"]

    # A reconnect after the last event gets nothing old.
    orch.wait_running("d")
    last = stored(orch, "?limit=1")[-1]["id"]
    caught_up = opened(watch(listener, closing, "/api/v1/events?watch=1", tokens["read"], {"Last-Event-ID": str(last)}))
    orch.api("POST", "/restart", {"name": "a"})
    [first] = events_of(caught_up.frames(1))
    assert first["id"] == last + 1 and first["object"] == "default/a", first


def test_a_key_filters_the_stream_to_one_object(orch: Orchestrator, tokens: dict[str, str], listener: Listener,
                                                closing: list[Any]) -> None:
    apply(orch, process("a"), process("b"))
    before = orch.wait_running("a", "b")
    mine = [e for e in stored(orch) if e["object"] == "default/a"]
    assert mine and len(mine) < len(stored(orch))
    stream = opened(watch(listener, closing, "/api/v1/events?watch=1&key=a", tokens["read"]))
    assert events_of(stream.frames(len(mine))) == mine

    # b changes first, then a: only a's events come, and b's (made earlier) never did.
    orch.api("POST", "/restart", {"name": "b"})
    after_b = orch.wait_running("b", replacing={"b": before["b"]})
    orch.api("POST", "/restart", {"name": "a"})
    live: list[dict[str, Any]] = []
    while not any(e["type"] == "Started" for e in live):
        live += events_of(stream.frames(1))
    assert {e["object"] for e in live} == {"default/a"}, live
    assert [e["pid"] for e in live if e["type"] == "Started"] != before["a"]
    assert orch.running("b") == after_b

    # namespace/name works too; an unknown object is a 404 of the one error shape.
    qualified = opened(watch(listener, closing, "/api/v1/events?watch=1&key=default/b", tokens["read"]))
    assert {e["object"] for e in events_of(qualified.frames(2))} == {"default/b"}
    unknown = watch(listener, closing, "/api/v1/events?watch=1&key=nobody", tokens["read"])
    assert unknown.head() == 404
    error_shape(unknown.body(), "NotFound")


# -- 4: at most 32 streams ---------------------------------------------------------------------------------


def test_the_33rd_stream_is_refused_until_one_closes(orch: Orchestrator, tokens: dict[str, str],
                                                     listener: Listener, closing: list[Any]) -> None:
    apply(orch, process("a"))
    orch.wait_running("a")
    streams = [opened(watch(listener, closing, "/api/v1/events?watch=1&key=a", tokens["read"]))
               for _ in range(MAX_STREAMS)]
    for path in ("/api/v1/events?watch=1", "/api/v1/logs?name=a&follow=1"):  # one count for both kinds
        refused = watch(listener, closing, path, tokens["read"])
        assert refused.head() == 503, refused.status
        assert refused.headers["content-type"] == "application/json"
        assert "streams" in error_shape(refused.body(), "Unavailable")["message"]
    # Plain requests are still served, and the Unix socket has its own slots.
    assert request(listener, "GET", "/api/v1/health", tokens["read"])[0] == 200
    unix = Stream(unix_connect(socket_path(orch.state), timeout=10), "/api/v1/events?watch=1")
    closing.append(unix)
    opened(unix)

    # One closes; its slot is free once the server notices (its next write fails: an event makes one).
    reset(streams.pop().sock)
    orch.api("POST", "/restart", {"name": "a"})

    def accepted() -> bool:
        again = watch(listener, closing, "/api/v1/events?watch=1&key=a", tokens["read"])
        status = again.head()
        if status == 200:
            return True
        again.body()
        again.close()
        return False

    wait_for(accepted, timeout=10, interval=0.1, what="a stream accepted after one of 32 closed")
    refused = watch(listener, closing, "/api/v1/events?watch=1", tokens["read"])
    assert refused.head() == 503  # and full again


# -- 5: a slow consumer ------------------------------------------------------------------------------------


class Reader(threading.Thread):
    """Reads a stream on its own thread, keeping every event frame, until it ends or is told to stop."""

    def __init__(self, stream: Stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.events: list[dict[str, Any]] = []
        self.other: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    item = self.stream.frame(timeout=0.2)
                except TimeoutError:
                    continue
                if item is None:
                    return
                if item.get("event") == "event":
                    self.events.append(item["data"])
                    assert item["id"] == str(item["data"]["id"])
                elif "comment" not in item:
                    self.other.append(item)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error


def server_send_queue(listener_port: int, client_port: int) -> int | None:
    """Bytes the daemon's socket of this connection holds unacknowledged (/proc/net/tcp's tx_queue)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == listener_port and int(remote.split(":")[1], 16) == client_port:
            return int(queues.split(":")[0], 16)
    return None


def test_a_slow_consumer_is_let_go_and_a_reading_one_misses_nothing(orch: Orchestrator, tokens: dict[str, str],
                                                                    listener: Listener, closing: list[Any]) -> None:
    latest = stored(orch, "?limit=1")
    start_id = latest[-1]["id"] if latest else 0
    path = f"/api/v1/events?watch=1&since={start_id}"
    reader = Reader(opened(watch(listener, closing, path, tokens["read"])))
    # The slow one: a receive buffer as small as the kernel allows, and it reads nothing (not even the head).
    slow = watch(listener, closing, path, tokens["read"], rcvbuf=1)
    slow_port = slow.sock.getsockname()[1]
    wait_for(lambda: server_send_queue(listener.port, slow_port) is not None, what="the slow connection accepted")
    reader.start()
    try:
        # Events, fast: 20 replicas of a process that exits at once and is restarted at once.
        apply(orch, process("churn", ["true"], replicas=20, restartPolicy="Always"))
        # The daemon's writes to the slow client stall once the kernel's buffers are full; QUEUE events later
        # it must have let it go. Until its send queue stops growing while the reader sees > 2 * QUEUE events.
        deadline = time.monotonic() + 60
        queued, seen_then, slowest = -1, 0, 0.0
        while True:
            assert reader.error is None and reader.is_alive(), reader.error
            took = time.monotonic()
            status, _, _ = request(listener, "GET", "/api/v1/health", tokens["read"])
            slowest = max(slowest, time.monotonic() - took)
            assert status == 200
            now = server_send_queue(listener.port, slow_port)
            if now != queued:
                queued, seen_then = now or 0, len(reader.events)
            elif len(reader.events) - seen_then > 2 * QUEUE + 50:
                break
            assert time.monotonic() < deadline, (
                f"the slow client's send queue still grows after {len(reader.events)} events ({queued} bytes)")
            time.sleep(0.05)
        assert slowest < 1.0, f"GET /health took {slowest:.2f} s while events streamed"
        flood = len(reader.events)
    finally:
        orch.api("POST", "/delete", {"names": ["churn"]})
    wait_for(lambda: not orch.objects().get("churn"), timeout=15, what="churn deleted")

    # The slow client, reading at last: what it was sent, with no gap, then `overflow`, then the end.
    assert slow.head(timeout=30) == 200
    frames: list[dict[str, Any]] = []
    until = time.monotonic() + 30  # keep-alives would come for ever on a stream never let go
    while (item := slow.frame(timeout=until - time.monotonic())) is not None:
        frames.append(item)
    assert slow.closed_by_server(timeout=10), "the server keeps the overflowed stream's connection open"
    assert frames[0] == {"retry": "2000"}
    *sent, overflow = frames[1:]
    assert overflow["event"] == "overflow", overflow
    assert "id" not in overflow, "an overflow frame must not move the client's Last-Event-ID"
    got = events_of([f for f in sent if "comment" not in f])
    ids = [e["id"] for e in got]
    assert ids == list(range(start_id + 1, start_id + 1 + len(ids))), "a gap or a duplicate in the slow stream"
    assert overflow["data"]["last_id"] == ids[-1]
    assert len(ids) < flood, "the slow client was sent everything: it was never let go"
    assert got == reader.events[:len(got)]

    # The reading one: every event, in order, no gap, until the end of the churn.
    tail = stored(orch, f"?since={start_id}")  # the store keeps the last 10000: compare what it still has
    wait_for(lambda: reader.events and reader.events[-1]["id"] >= tail[-1]["id"] or reader.error, timeout=15,
             what="the reader caught up")
    reader.stop.set()
    reader.join(timeout=5)
    assert reader.error is None, reader.error
    assert reader.other == [], reader.other  # never an overflow for it
    read_ids = [e["id"] for e in reader.events]
    assert read_ids == list(range(start_id + 1, read_ids[-1] + 1)), "the reading client missed or repeated events"
    assert len(read_ids) > 2 * QUEUE + len(ids) - 1
    assert [e for e in reader.events if tail[0]["id"] <= e["id"] <= tail[-1]["id"]] == tail


def test_streams_opened_during_a_burst_miss_nothing(orch: Orchestrator, tokens: dict[str, str],
                                                    listener: Listener, closing: list[Any]) -> None:
    """A stream subscribes to live events, then reads the backlog (the store, and the events of the pass
    under way that are not saved yet): an event made before it subscribed must be in its backlog, or it is in
    neither."""
    apply(orch, process("churn", ["true"], replicas=8, restartPolicy="Always"))
    try:
        wait_for(lambda: len(stored(orch, "?limit=300")) >= 300, timeout=15, what="a burst of events")
        for _ in range(12):
            since = stored(orch, "?limit=1")[-1]["id"] - 20  # in the middle of the burst
            stream = opened(watch(listener, closing, f"/api/v1/events?watch=1&since={since}", tokens["read"]))
            ids = [e["id"] for e in events_of(stream.frames(150, timeout=15))]
            stream.close()
            missing = sorted(set(range(since + 1, since + 151)) - set(ids))
            saved = {e["id"] for e in stored(orch, f"?since={since}")}
            assert ids == list(range(since + 1, since + 151)), (
                f"the stream from {since} missed {missing} (in the store now: {set(missing) <= saved})")
    finally:
        orch.api("POST", "/delete", {"names": ["churn"]})
    wait_for(lambda: "churn" not in orch.objects(), timeout=15, what="churn deleted")


# -- 6: logs -----------------------------------------------------------------------------------------------

COUNTER = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.1; done"]


def numbers(lines: list[dict[str, Any]]) -> list[int]:
    for line in lines:
        assert line["complete"] and re.fullmatch(r"line \d+", line["text"]), line
    return [int(line["text"].split()[1]) for line in lines]


def test_logs_tail_follow_and_resume(orch: Orchestrator, tokens: dict[str, str], listener: Listener,
                                     closing: list[Any]) -> None:
    apply(orch, process("count", COUNTER))
    orch.wait_running("count")
    read = tokens["read"]

    def logs(query: str) -> dict[str, Any]:
        status, _, raw = request(listener, "GET", f"/api/v1/logs?{query}", read)
        assert status == 200, raw
        return json.loads(raw)  # type: ignore[no-any-return]

    wait_for(lambda: len(logs("name=count&tail=10")["lines"]) >= 5, timeout=10, what="5 lines written")
    answer = logs("name=count&tail=3")
    assert answer["key"] == "default/count" and answer["replica"] == 0
    lines = answer["lines"]
    got = numbers(lines)
    assert len(got) == 3 and got == list(range(got[0], got[0] + 3)), lines
    assert [line["offset"] for line in lines[1:]] == [line["next"] for line in lines[:-1]]  # back to back
    assert answer["next"] == lines[-1]["next"]
    assert set(lines[0]) == {"offset", "next", "at", "text", "complete", "rotated"}
    # From `next` on: only what came after.
    later = logs(f"name=count&since={answer['next']}")["lines"]
    assert not later or numbers(later)[0] == got[-1] + 1

    # follow: the last 2 lines, then new ones as they are written; each frame's id is its line's `next`.
    follow = opened(watch(listener, closing, "/api/v1/logs?name=count&follow=1&tail=2", read))
    frames = follow.frames(8, timeout=10)
    for item in frames:
        assert item["event"] == "line" and item["id"] == str(item["data"]["next"]), item
    ids = [int(item["id"]) for item in frames]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    followed = numbers([item["data"] for item in frames])
    assert followed == list(range(followed[0], followed[0] + 8))
    assert followed[0] >= got[-2]  # began at the tail (2 lines back at most), not at the file's start
    follow.close()

    # Resume after the 4th line: the 5th comes next, no gap and no duplicate.
    resumed = opened(watch(listener, closing, "/api/v1/logs?name=count&follow=1&tail=2", read,
                           {"Last-Event-ID": frames[3]["id"]}))
    again = resumed.frames(6, timeout=10)
    assert numbers([item["data"] for item in again]) == list(range(followed[4], followed[4] + 6))
    assert again[0]["data"]["offset"] == int(frames[3]["id"])

    # Unknown objects and bad numbers: the one error shape.
    for query, status, reason in (("name=nobody", 404, "NotFound"), ("name=nobody&follow=1", 404, "NotFound"),
                                  ("name=count&replica=-1", 400, "BadRequest"),
                                  ("name=count&tail=-1", 400, "BadRequest"),
                                  ("name=count&tail=-1&follow=1", 400, "BadRequest"),
                                  ("name=count&follow=1&replica=-1", 400, "BadRequest"),
                                  ("name=count&since=-5", 400, "BadRequest"), ("", 400, "BadRequest")):
        answered, headers, raw = request(listener, "GET", f"/api/v1/logs?{query}", read)
        assert answered == status, (query, answered, raw)
        assert headers["content-type"] == "application/json"
        error_shape(raw, reason)
    bad = watch(listener, closing, "/api/v1/logs?name=count&follow=1", read, {"Last-Event-ID": "-3"})
    assert bad.head() == 400
    error_shape(bad.body(), "BadRequest")
    # The refused streams gave their slots back: a stream still opens.
    opened(watch(listener, closing, "/api/v1/logs?name=count&follow=1&tail=0", read))


# -- 7: usage ----------------------------------------------------------------------------------------------


def test_usage_history_of_a_running_process(orch: Orchestrator, tokens: dict[str, str]) -> None:
    address = f"127.0.0.1:{_free_port()}"
    child = start(orch, "--metrics-interval", "0.3", address=address)
    try:
        wait_for(orch.answers, timeout=15, what="the daemon answering")
        listener = Listener(orch, address)
        apply(orch, process("busy"), process("other"))
        orch.wait_running("busy", "other")

        def samples() -> list[list[Any]]:
            status, answer = listener.request("GET", "/api/v1/usage?name=busy", token=tokens["read"])
            assert status == 200, answer
            assert answer["interval"] == 0.3 and set(answer["objects"]) <= {"default/busy"}, answer
            return answer["objects"].get("default/busy", {}).get("0", [])  # type: ignore[no-any-return]

        history = wait_for(lambda: len(samples()) >= 2 and samples(), timeout=10, interval=0.1,
                           what="2 usage samples")
        for sample in history:
            assert len(sample) == 3 and isinstance(sample[0], float) and isinstance(sample[2], int), sample
            assert sample[2] > 0 and (sample[1] is None or sample[1] >= 0), sample
        assert [s[0] for s in history] == sorted(s[0] for s in history)
        assert abs(history[-1][0] - time.time()) < 60  # wall-clock time
        everyone = listener.request("GET", "/api/v1/usage", token=tokens["read"])[1]["objects"]
        assert {"default/busy", "default/other"} <= set(everyone)
        assert listener.request("GET", "/api/v1/usage?name=nobody", token=tokens["read"])[0] == 404
        assert listener.request("GET", "/api/v1/usage")[0] == 401
    finally:
        orch.close()
        child.wait(timeout=15)


# -- 8: /metrics -------------------------------------------------------------------------------------------


def test_metrics_need_a_token(orch: Orchestrator, tokens: dict[str, str], listener: Listener) -> None:
    apply(orch, process("web"))
    orch.wait_running("web")
    status, headers, raw = request(listener, "GET", "/metrics")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    error_shape(raw, "Unauthorized")
    assert request(listener, "GET", "/metrics", "orch_wrong")[0] == 401
    for scope in ("read", "admin"):
        status, headers, raw = request(listener, "GET", "/metrics", tokens[scope])
        assert status == 200, raw
        assert headers["content-type"].startswith("text/plain"), headers
        text = raw.decode()
        assert re.search(r'^orchestrator_replica_up\{[^}]*name="web"[^}]*\} 1\.0$', text, re.MULTILINE), text[:2000]
    assert request(listener, "POST", "/metrics", tokens["read"])[0] == 403


# -- 9: the dashboard's files ------------------------------------------------------------------------------


def test_dashboard_files_and_their_headers(orch: Orchestrator, tokens: dict[str, str], listener: Listener) -> None:
    status, headers, _ = request(listener, "GET", "/")
    assert status == 302 and headers["location"] == "/ui/"
    secrets = [(orch.state / "tokens.json").read_bytes()]
    for path in ("/ui/", "/ui", "/ui/index.html"):
        status, headers, raw = request(listener, "GET", path)  # no token: the page holds no data
        assert status == 200, (path, raw[:200])
        assert headers["content-type"] == "text/html; charset=utf-8"
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        assert raw.lstrip().lower().startswith(b"<!doctype html>")
    for path in ("/ui/../state.db", "/ui/.hidden", "/ui/x.py", "/ui/%2e%2e/tokens.json", "/ui/..%2ftokens.json",
                 "/ui/%2e%2e%2fstate.db", "/ui/../../state/tokens.json", "/ui/..\\tokens.json", "/ui/nothere.js",
                 "/ui/__init__.py", "/ui//etc/passwd", "/ui/.", "/ui/..", "/ui/../http.py",
                 "/ui/../ui/index.html", "/ui/./index.html"):  # no folders at all, even back to itself
        status, headers, raw = request(listener, "GET", path)
        assert status == 404, (path, status, raw[:200])
        error_shape(raw, "NotFound")
        assert b"SQLite" not in raw and b"import" not in raw and b"root:" not in raw
        assert not any(secret in raw for secret in secrets)
    status, _, raw = request(listener, "POST", "/ui/", body={})
    assert status in (403, 405), status
    error_shape(raw, "MethodNotAllowed" if status == 405 else "Forbidden")
    status, _, raw = request(listener, "GET", "/ui/", headers={"Host": "evil.example"})  # DNS rebinding
    assert status == 403 and b"<html" not in raw.lower()
    error_shape(raw, "Forbidden")


# -- 10 + 9: /whoami, and a read-only listener -------------------------------------------------------------


def test_whoami_by_token_and_listener(orch: Orchestrator, tokens: dict[str, str], listener: Listener) -> None:
    assert listener.request("GET", "/api/v1/whoami", token=tokens["read"]) == (
        200, {"scope": "read", "via": "http", "read_only": False})
    assert listener.request("GET", "/api/v1/whoami", token=tokens["admin"]) == (
        200, {"scope": "admin", "via": "http", "read_only": False})
    assert listener.request("GET", "/api/v1/whoami")[0] == 401
    assert orch.api("GET", "/whoami") == {"scope": "admin", "via": "unix", "read_only": False}


def test_whoami_and_the_dashboard_on_a_read_only_listener(orch: Orchestrator, tokens: dict[str, str]) -> None:
    address = f"127.0.0.1:{_free_port()}"
    child = start(orch, "--read-only", address=address)
    try:
        wait_for(orch.answers, timeout=15, what="the daemon answering")
        listener = Listener(orch, address)
        for scope in ("read", "admin"):  # whatever the token, this listener only reads
            assert listener.request("GET", "/api/v1/whoami", token=tokens[scope]) == (
                200, {"scope": "read", "via": "http", "read_only": True})
        status, _, raw = request(listener, "POST", "/ui/", body={})
        assert status == 403  # the read-only gate comes before the files
        error_shape(raw, "Forbidden")
        assert request(listener, "GET", "/ui/")[0] == 200
        assert orch.api("GET", "/whoami") == {"scope": "admin", "via": "unix", "read_only": False}
    finally:
        orch.close()
        child.wait(timeout=15)


# -- 11: TLS -----------------------------------------------------------------------------------------------


def test_https_with_a_certificate(orch: Orchestrator, tokens: dict[str, str], closing: list[Any]) -> None:
    from orchestrator.daemon.http import REQUEST_SECONDS

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: no certificate to test with")
    cert, key = orch.root / "cert.pem", orch.root / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                           "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                          capture_output=True, text=True, timeout=30, check=False)
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {made.stderr[-300:]}")

    # Without its key, a certificate is refused at once, with a message saying so.
    alone = orch("daemon", "--http", f"127.0.0.1:{_free_port()}", "--tls-cert", str(cert), timeout=20)
    assert alone.returncode != 0 and "--tls-key" in alone.stderr and "Traceback" not in alone.stderr, alone

    port = _free_port()
    child = start(orch, "--tls-cert", str(cert), "--tls-key", str(key), address=f"127.0.0.1:{port}")
    try:
        wait_for(orch.answers, timeout=15, what="the daemon answering")
        idle = socket.create_connection(("127.0.0.1", port), timeout=REQUEST_SECONDS + 5)  # and sends nothing
        closing.append(idle)
        idle_since = time.monotonic()
        context = ssl.create_default_context(cafile=str(cert))

        def https(path: str, token: str | None) -> tuple[int, Any]:
            connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
            try:
                connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
                response = connection.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            finally:
                connection.close()

        assert https("/api/v1/whoami", tokens["read"]) == (200, {"scope": "read", "via": "http", "read_only": False})
        assert https("/api/v1/whoami", None)[0] == 401
        assert orch.api("GET", "/health")["http"].startswith("https://")
        # Plain HTTP to the TLS port gets no API answer: the connection is closed (perhaps after a TLS alert).
        plain = socket.create_connection(("127.0.0.1", port), timeout=10)
        closing.append(plain)
        plain.sendall(f"GET /api/v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tokens['read']}"
                      "\r\n\r\n".encode())
        answer = b""
        try:
            while chunk := plain.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
        assert not answer.startswith(b"HTTP/") and b"scope" not in answer, answer[:200]
        # A client that will not verify the certificate is refused by its own side, and the server goes on.
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting = ssl.create_default_context()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    untrusting.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass
        assert https("/api/v1/whoami", tokens["admin"])[1]["scope"] == "admin"  # served still
        # A streamed answer goes over TLS too.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            secure = context.wrap_socket(raw, server_hostname="127.0.0.1")
            closing.append(secure)
            stream = opened(Stream(secure, "/api/v1/events?watch=1", {"Authorization": f"Bearer {tokens['read']}"}))
            assert events_of(stream.frames(1))[0]["id"] == stored(orch)[0]["id"]
            secure.close()
        # The idle client is cut at its request's deadline (its handshake never came).
        try:
            assert idle.recv(100) == b""
        except ConnectionResetError:
            pass
        waited = time.monotonic() - idle_since
        assert waited < REQUEST_SECONDS + 3, f"an idle TLS client was held {waited:.1f} s"
        assert https("/api/v1/health", tokens["read"])[0] == 200
    finally:
        orch.close()
        child.wait(timeout=15)


# -- 12: errors --------------------------------------------------------------------------------------------


def test_errors_have_one_shape(orch: Orchestrator, tokens: dict[str, str], listener: Listener) -> None:
    for path in ("/api/v1/nope", "/api/v1/objects/nobody", "/elsewhere"):
        status, headers, raw = request(listener, "GET", path, tokens["admin"])
        assert status == 404 and headers["content-type"] == "application/json", (path, status)
        assert error_shape(raw, "NotFound")["problems"] == []
    broken = process("bad", restartPolicy="Sometimes")
    status, _, raw = request(listener, "POST", "/api/v1/apply", tokens["admin"],
                             {"files": [{"file": "/manifests/bad.yaml", "text": broken}]})
    assert status == 400, raw
    error = error_shape(raw, "Invalid")
    assert error["problems"], error
    [problem] = [p for p in error["problems"] if "restartPolicy" in json.dumps(p)]
    assert problem["file"] == "/manifests/bad.yaml" and problem["line"] > 0, problem
    assert "Sometimes" in json.dumps(problem)
    assert "bad" not in orch.objects()
    status, _, raw = request(listener, "POST", "/api/v1/apply", tokens["admin"], {"files": "no"})
    assert status == 400
    error_shape(raw, "BadRequest")
    status, _, raw = request(listener, "GET", "/api/v1/events?watch=1&since=x", tokens["read"])
    assert status == 400
    error_shape(raw, "BadRequest")
    status, _, raw = request(listener, "GET", "/api/v1/objects", "orch_wrong")
    assert status == 401
    error_shape(raw, "Unauthorized")


def test_a_log_answer_is_bounded_and_goes_past_a_long_line(tmp_path: Path) -> None:
    """A line longer than MAX_LINE comes in pieces (it never stops the answer where it begins), and one
    answer holds about ANSWER_BYTES of text at most: `next` says where to ask again."""
    from orchestrator.daemon.streams import ANSWER_BYTES, log_tail
    from orchestrator.host.logread import MAX_LINE

    log = tmp_path / "a.0.log"
    long_line = b"x" * (MAX_LINE * 2 + 10)
    log.write_bytes(b"first\n" + long_line + b"\nlast\n")
    lines, end = log_tail(log, None, 0)
    assert [len(line["text"]) for line in lines] == [5, MAX_LINE, MAX_LINE, 10, 4]
    assert lines[-1]["text"] == "last" and end == log.stat().st_size
    big = tmp_path / "b.0.log"
    big.write_bytes((b"y" * (MAX_LINE - 1) + b"\n") * 200)  # 12.8 MiB
    lines, end = log_tail(big, None, 0)
    assert ANSWER_BYTES <= sum(len(line["text"]) for line in lines) < ANSWER_BYTES + MAX_LINE
    again, _ = log_tail(big, None, end)
    assert again and again[0]["offset"] == end  # the next answer begins where this one ended
