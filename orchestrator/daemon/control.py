"""Daemon side of the control socket: HTTP/1.1 with JSON bodies under /api/v1/, on a Unix socket.

Served by the standard library (one thread per connection). Only the socket's owner may talk to it:
the socket is 0600 and every connection's peer uid is checked. Handlers never touch run state: they
call the ControlApp, which runs each operation on the reconciler's thread.

Errors are JSON too, one shape for all (`error_document`): {"error": {"reason": "NotFound", "message": "...",
"problems": [...]}}, the problems located (file, line, column, field path) where manifests were refused. 400
(invalid input: reason BadRequest, or Invalid with problems), 404 (no such object or route), 405 (HEAD,
OPTIONS, TRACE, QUERY), 409 (refused in the current state), 413 (body too large), 500 (a bug: the message says
so).
"""

from __future__ import annotations

import json
import os
import queue
import selectors
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from ..core.errors import ManifestError, OrchestratorError, StoreBusy
from ..host.sockets import bind_owner_only, peer_uid

MAX_BODY_BYTES = 64 * 1024 * 1024  # the largest request body read; manifests of one apply are far smaller

PREFIX = "/api/v1"
UNROUTED = frozenset({"HEAD", "OPTIONS", "TRACE", "QUERY"})  # no route answers these methods: 405


class NotFound(OrchestratorError):
    """No such object or route (404)."""


class TooLarge(OrchestratorError):
    """A request body over MAX_BODY_BYTES: refused unread."""


class Conflict(OrchestratorError):
    """The request is valid but refused in the current state (409)."""


class Busy(OrchestratorError):
    """Every stream slot is taken (503)."""


MAX_STREAMS = 32  # SSE streams open at once on one server (a thread each)


class StreamSlots:
    """How many SSE streams a server has open; `take` refuses past `limit`."""

    def __init__(self, limit: int = MAX_STREAMS) -> None:
        self.limit = limit
        self.open = 0
        self._guard = threading.Lock()

    def take(self) -> None:
        with self._guard:
            if self.open >= self.limit:
                raise Busy(f"{self.limit} streams are open already, the most this daemon serves at once: "
                           "close one, or read without watch/follow")
            self.open += 1

    def give_back(self) -> None:
        with self._guard:
            self.open -= 1


REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           409: "Conflict", 411: "LengthRequired", 413: "TooLarge", 429: "TooManyRequests", 500: "Internal",
           503: "Unavailable"}


def error_document(status: int, message: str, problems: list[dict[str, Any]] | None = None,
                   reason: str | None = None) -> dict[str, Any]:
    """The one shape of every error answer: reason (a word for scripts, by default the status's), message
    (for people), and problems (located, where manifests were refused; [] otherwise)."""
    return {"error": {"reason": reason or REASONS.get(status, HTTPStatus(status).phrase.replace(" ", "")),
                      "message": message, "problems": problems or []}}


class ControlApp(Protocol):
    def handle(self, method: str, route: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]: ...

    def follow_events(self, since: int, key: str | None) -> Iterator[dict[str, Any] | None]: ...

    def watch_events(self, since: int, key: str | None) -> Iterator[bytes]: ...

    def follow_log(self, query: dict[str, str], last_event_id: str | None) -> Iterator[bytes]: ...


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 512  # listen backlog: a burst of clients (a boot script, parallel CI steps) waits here

    def __init__(self, path: Path, app: ControlApp) -> None:
        self.app = app
        self.path = path
        self.streams = StreamSlots()
        super().__init__(str(path), _Handler, bind_and_activate=False)
        try:
            path.unlink()  # a stale socket of a dead daemon; the daemon lock proves none is alive
        except FileNotFoundError:
            pass
        bind_owner_only(self.socket, path)
        self.server_activate()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return peer_uid(request) == os.getuid()

    def start(self) -> threading.Thread:
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._stopping = False
        self._thread: threading.Thread | None = threading.Thread(target=self._serve, name="api", daemon=True)
        thread = self._thread
        thread.start()
        return thread

    def _serve(self) -> None:
        serve_until_woken(self, self._wake_r, lambda: self._stopping)

    def stop(self) -> None:
        thread = getattr(self, "_thread", None)
        if thread is not None:  # once: a second stop finds nothing left to do
            self._stopping = True
            os.write(self._wake_w, b"\0")
            thread.join(timeout=10)
            self._thread = None
            os.close(self._wake_r)
            os.close(self._wake_w)
        self.server_close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def serve_until_woken(server: socketserver.BaseServer, wake_fd: int, stopping: Callable[[], bool]) -> None:
    """socketserver's serve_forever without its poll: it looks for a shutdown twice a second, which would be
    most of an idle daemon's wake-ups; here a byte on `wake_fd` says it. (The Unix socket's server and the
    TCP listener, daemon/http.py.)"""
    with selectors.DefaultSelector() as selector:
        selector.register(server.socket, selectors.EVENT_READ)  # type: ignore[attr-defined]
        selector.register(wake_fd, selectors.EVENT_READ)
        while not stopping():
            for key, _ in selector.select():
                if key.fileobj is server.socket and not stopping():  # type: ignore[attr-defined]
                    server.handle_request()  # readable: it accepts at once


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ControlServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def do_TRACE(self) -> None:
        self._dispatch("TRACE")

    def do_QUERY(self) -> None:
        self._dispatch("QUERY")

    def _dispatch(self, method: str) -> None:
        if method in UNROUTED:  # answered here, not with the standard library's 501 HTML page
            self.close_connection = True  # a body, if any, is not read
            self._fail(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not served here: GET and POST are")
            return
        url = urlsplit(self.path)
        if not url.path.startswith(PREFIX + "/"):
            self._fail(HTTPStatus.NOT_FOUND, f"no such route: {url.path[:200]}")
            return
        route = url.path[len(PREFIX):]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            body = self._body()
            if method == "GET" and route == "/events" and query.get("follow"):
                self._stream(self.server.app.follow_events(int(query.get("since", "0")), query.get("key")))
                return
            if method == "GET" and (route == "/events" and query.get("watch") or route == "/logs" and query.get("follow")):
                self._sse(route, query)
                return
            self._send(HTTPStatus.OK, self.server.app.handle(method, route, query, body))
        except ManifestError as error:
            problems = [p.to_json() for p in error.problems]
            self._fail(HTTPStatus.BAD_REQUEST, f"invalid manifests: {len(problems)} problem"
                       f"{'s' if len(problems) != 1 else ''}", problems, reason="Invalid")
        except NotFound as error:
            self._fail(HTTPStatus.NOT_FOUND, str(error))
        except TooLarge as error:
            self.close_connection = True  # the body is not read: nothing more on this connection makes sense
            self._fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(error))
        except Busy as error:
            self._fail(HTTPStatus.SERVICE_UNAVAILABLE, str(error))
        except (Conflict, StoreBusy) as error:
            self._fail(HTTPStatus.CONFLICT, str(error) + ("; nothing was changed, try again"
                                                          if isinstance(error, StoreBusy) else ""))
        # OverflowError: a whole number too large for the store (?limit=10**30) is bad input too, not a bug.
        except (OrchestratorError, ValueError, KeyError, TypeError, OverflowError) as error:
            self._fail(HTTPStatus.BAD_REQUEST, f"bad request: {error}")
        except Exception as error:  # noqa: BLE001 - report a bug to the client instead of hanging it up
            self._fail(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error (a bug): {error!r}")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        if length < 0 or length > MAX_BODY_BYTES:
            raise TooLarge(f"a request body of {length:,} bytes: the most this API reads is {MAX_BODY_BYTES:,}")
        value = json.loads(self.rfile.read(length))
        if not isinstance(value, dict):
            raise ValueError("the request body must be a JSON object")  # noqa: TRY004 - a 400, not a bug
        return value

    def _fail(self, status: HTTPStatus, message: str, problems: list[dict[str, Any]] | None = None,
              reason: str | None = None) -> None:
        self._send(status, error_document(status, message, problems, reason))

    def _send(self, status: HTTPStatus, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, POST")
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has headers only
            self.wfile.write(data)

    def _stream(self, items: Iterator[dict[str, Any] | None]) -> None:
        """JSON lines, chunked; None from the iterator sends a blank keep-alive line."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        self.connection.settimeout(FOLLOWER_WRITE_SECONDS)  # a reader that stops reading is let go
        try:
            for item in items:
                if item is OVERFLOW:
                    break
                line = b"\n" if item is None else json.dumps(item).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass

    def _sse(self, route: str, query: dict[str, str]) -> None:
        """A server-sent event stream (daemon/streams.py), in one of the server's stream slots."""
        slots = self.server.streams
        slots.take()
        try:
            last = self.headers.get("Last-Event-ID")
            app = self.server.app
            if route == "/events":
                frames = app.watch_events(resume_point(last, query.get("since")), query.get("key"))
            else:
                frames = app.follow_log(query, last)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")  # a proxy in front (nginx) must not hold frames back
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.close_connection = True
            self.connection.settimeout(STREAM_WRITE_SECONDS)  # a reader that stops reading is let go
            # A small send buffer: a client that stops reading fills it soon, so its queue overflows and it is
            # let go, instead of the kernel holding megabytes of frames for it.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SEND_BUFFER)
            try:
                for data in frames:
                    if not data:  # a quiet tick: a client that closed gives its slot back now
                        if client_gone(self.connection):
                            break
                        continue
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
                pass
            finally:
                close = getattr(frames, "close", None)
                if close is not None:
                    close()  # unsubscribes now, not when the generator is collected
        finally:
            slots.give_back()

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are not logged: bodies may carry env values


OVERFLOW: Any = object()  # what a follower's iterator yields last when it fell behind and was let go
FOLLOWER_QUEUE = 10_000  # events a follower may fall behind by; past that it is dropped, never waited for
FOLLOWER_WRITE_SECONDS = 30.0  # a follower that takes no data for this long is disconnected
STREAM_WRITE_SECONDS = 10.0  # ... an SSE client (whose reconnect replays what it missed)
STREAM_SEND_BUFFER = 32 * 1024  # bytes the kernel holds for one SSE client (it doubles it for its bookkeeping)


def resume_point(last_event_id: str | None, since: str | None) -> int:
    """Where a stream resumes: the client's Last-Event-ID (a reconnect), else `since`, else 0. ValueError (a
    400) for what is not a whole number 0 or more."""
    for value in (last_event_id, since):
        if value is not None and value.strip():
            number = int(value.strip())
            if number < 0:
                raise ValueError(f"an event id or offset is never negative: {number}")
            return number
    return 0


def client_gone(connection: socket.socket) -> bool:
    """Did the client of this connection close it (or reset it)? Looks without waiting and without taking
    anything it sent (the raw socket's bytes are peeked, also under TLS)."""
    if isinstance(connection, ssl.SSLSocket):  # a TLS close is a close_notify record: data, until TLS reads it
        timeout = connection.gettimeout()
        connection.settimeout(0)
        try:
            return connection.recv(1) == b""  # a stream's client sends nothing: taking a byte loses nothing
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return False
        except (OSError, ssl.SSLError):
            return True
        finally:
            connection.settimeout(timeout)
    raw = socket.socket(connection.family, connection.type, fileno=connection.fileno())
    try:
        return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read: still there
    except OSError:
        return True  # reset
    finally:
        raw.detach()  # a follower that takes no data for this long is disconnected


def event_queue_iterator(
    subscribe: Callable[[Callable[[Any], None]], None],
    unsubscribe: Callable[[Callable[[Any], None]], None],
    backlog: Callable[[], list[dict[str, Any]]],
    convert: Callable[[Any], dict[str, Any] | None],
    keepalive_seconds: float = 15.0,
    capacity: int = FOLLOWER_QUEUE,
) -> Iterator[Any]:
    """Yield the backlog, then live events as they come (those `convert` maps to None are skipped), with
    None as a keep-alive when nothing came for `keepalive_seconds`, and OVERFLOW last if it fell behind.

    Subscribes first and reads the backlog after, so no event falls between them; a live event that the
    backlog already held (same time, type, object and message) is not sent twice. The emitter (the
    reconciler) never waits for a follower: one that falls `capacity` events behind is unsubscribed, and its
    stream ends after what it was sent (and OVERFLOW), so a follower that stops reading costs a bounded amount
    of memory."""
    pending: queue.Queue[Any] = queue.Queue(maxsize=capacity)
    overflowed = threading.Event()

    def offer(event: Any) -> None:
        try:
            pending.put_nowait(event)
        except queue.Full:
            overflowed.set()
            unsubscribe(offer)

    subscribe(offer)
    try:
        sent = backlog()
        seen = {_identity(item) for item in sent}
        yield from sent
        while True:
            try:
                event = pending.get(timeout=keepalive_seconds)
            except queue.Empty:
                if overflowed.is_set():
                    yield OVERFLOW  # it fell behind: what it missed is in `orchestrator events --since`
                    return
                yield None
                continue
            item = convert(event)
            if item is None:
                continue
            if seen and _identity(item) in seen:
                continue  # saved while the backlog was read: sent already
            seen.clear()  # events come in order: once one is new, the overlap is over
            yield item
            if overflowed.is_set() and pending.empty():
                yield OVERFLOW
                return
    finally:
        unsubscribe(offer)


def _identity(item: dict[str, Any]) -> Any:
    if item.get("id") is not None:
        return item["id"]
    return (item.get("time"), item.get("type"), item.get("object"), item.get("replica"), item.get("message"))
