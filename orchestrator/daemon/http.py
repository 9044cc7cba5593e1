"""The daemon's TCP listener (`daemon --http HOST:PORT`): the control API for scripts and browsers elsewhere,
and the GitSync webhooks. The Unix socket stays the CLI's (owner-only, checked by peer uid, no token).

With --tls-cert and --tls-key it speaks HTTPS (the handshake is made on the request's thread, within its
deadline, so a client that never finishes one holds nothing but its own connection).

Every request passes these gates, in this order, before anything is routed:
- Host: the header must name an allowed host (loopback names, the bound address, `--allowed-host`), so a
  page on another site cannot reach it by DNS rebinding (kubectl proxy's --accept-hosts);
- `GET /openapi.json` (the API's OpenAPI document, no secret in it) and the dashboard's static files
  (`GET /ui/...`, daemon/ui/: they hold no data, the page asks for a token and reads the API with it) need no
  token; `GET /metrics` (Prometheus) needs a token of either scope;
- `/hooks/git/NAME` (POST) authenticates itself by its HMAC (daemon/hooks.py); every other path but
  `/api/v1/...` is 404;
- `/api/v1/...` needs `Authorization: Bearer <token>` of a token made by `orchestrator token create`
  (host/tokens.py: sha256 digests, compared in constant time). Always, also on loopback: every local user can
  reach a loopback port, while the Unix socket admits its owner alone. A client that fails too often is
  answered 429 for a while; each refusal is an AccessDenied event naming the client, method and path (never
  what it sent), at most one per client per LOG_GAP_SECONDS;
- a method other than GET with a `read` token, or on a `--read-only` listener: 403 (webhooks too);
- a mutation whose Origin header is not an allowed host's: 403 (a form posted from another site).
Then the request is what it would be on the Unix socket (control.py's handler).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core.addresses import is_loopback
from ..core.errors import UserError
from ..host.tokens import TokenCheck
from .control import PREFIX, ControlApp, StreamSlots, _Handler, error_document, serve_until_woken
from .hooks import HookTarget, answer_hook
from .routes import openapi_document

MAX_CLIENTS = 64  # connections open at once (event streams hold one each); past that a new one is closed
MAX_PER_CLIENT = 40  # ... and from one address (a browser's tab holds two streams; 32 streams must fit)
REQUEST_SECONDS = 10.0  # a request's line, headers and body must all arrive within this (slow senders are cut)
FAILURES_ALLOWED = 10  # refused requests of one client per FAILURE_WINDOW_SECONDS before it gets 429s
FAILURE_WINDOW_SECONDS = 60.0
LOG_GAP_SECONDS = 10.0
MAX_TRACKED_CLIENTS = 10_000
READING = frozenset({"GET"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class HttpListener(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: str, app: ControlApp, hooks: HookTarget, tokens: TokenCheck,
                 refused: Callable[[str], None], read_only: bool = False, allowed_hosts: Sequence[str] = (),
                 metrics: Callable[[], bytes] | None = None, tls: tuple[str, str] | None = None) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        if not port.isdigit() or not host:
            raise UserError(f"--http {address!r}: expected HOST:PORT, such as 127.0.0.1:8420")
        if not is_loopback(host) and not tokens.any():
            raise UserError(f"--http {address}: not a loopback address, and no API token exists: make one first "
                            "(orchestrator token create NAME --scope read|admin), or listen on 127.0.0.1 and "
                            "reach it through an SSH tunnel")
        self.tls = _tls_context(*tls) if tls else None
        self.app = app
        self.hooks = hooks
        self.metrics = metrics
        self.streams = StreamSlots()
        self.tokens = tokens
        self.read_only = read_only
        self.report = refused
        self.hosts = {h.lower().strip("[]") for h in (*LOOPBACK_NAMES, host, *allowed_hosts)}
        self._open: collections.Counter[str] = collections.Counter()
        self._counted: dict[int, str] = {}  # id of an accepted socket -> its client's address
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._logged: dict[str, float] = {}
        self._guard = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host, int(port)), _HttpHandler)
        except OSError as error:
            raise UserError(f"--http {address}: {error.strerror or error}") from None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._stopping = False
        self.thread = threading.Thread(target=self._serve, name="http", daemon=True)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def _serve(self) -> None:
        serve_until_woken(self, self._wake_r, lambda: self._stopping)

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"\0")
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.server_close()

    # -- connections ---------------------------------------------------------------------------------

    def get_request(self) -> tuple[Any, Any]:
        request, address = super().get_request()
        if self.tls is not None:  # the handshake is left to the request's thread: the first read makes it
            request = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        return request, address

    def verify_request(self, request: object, client_address: object) -> bool:
        """Accept only while under MAX_CLIENTS connections, and MAX_PER_CLIENT from this address."""
        address = str(client_address[0]) if isinstance(client_address, tuple) else str(client_address)
        with self._guard:
            if sum(self._open.values()) >= MAX_CLIENTS or self._open[address] >= MAX_PER_CLIENT:
                return False
            self._open[address] += 1
            self._counted[id(request)] = address
        return True

    def shutdown_request(self, request: object) -> None:
        with self._guard:
            address = self._counted.pop(id(request), None)
            if address is not None:
                self._release(address)
        super().shutdown_request(request)  # type: ignore[arg-type]

    def _release(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    # -- the gates' bookkeeping ----------------------------------------------------------------------

    def throttled(self, client: str) -> bool:
        now = time.monotonic()
        with self._guard:
            times = self._failures.get(client)
            while times and now - times[0] > FAILURE_WINDOW_SECONDS:
                times.popleft()
            return times is not None and len(times) >= FAILURES_ALLOWED

    def failed(self, client: str, method: str, path: str, why: str) -> None:
        now = time.monotonic()
        with self._guard:
            times = self._failures.setdefault(client, collections.deque(maxlen=FAILURES_ALLOWED))
            times.append(now)
            self._failures.move_to_end(client)
            while len(self._failures) > MAX_TRACKED_CLIENTS:
                self._failures.popitem(last=False)
            if now - self._logged.get(client, -1e9) < LOG_GAP_SECONDS:
                return
            self._logged[client] = now
            if len(self._logged) > MAX_TRACKED_CLIENTS:
                self._logged.clear()
        self.report(f"refused {method} {path[:200]} from {client}: {why}")

    def allowed_host(self, header: str | None) -> bool:
        if not header:
            return False
        host = header.strip().lower()
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        return host in self.hosts

    def allowed_origin(self, origin: str | None) -> bool:
        if origin is None:
            return True  # not a browser's cross-site request: curl, scripts
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and (parts.hostname or "").lower() in self.hosts


class _HttpHandler(_Handler):
    server: HttpListener  # type: ignore[assignment]
    timeout = REQUEST_SECONDS

    def do_GET(self) -> None:
        self._gate("GET")

    def do_POST(self) -> None:
        self._gate("POST")

    def do_DELETE(self) -> None:
        self._gate("DELETE")

    def do_PUT(self) -> None:
        self._gate("PUT")

    def do_PATCH(self) -> None:
        self._gate("PATCH")

    def do_HEAD(self) -> None:
        self._gate("HEAD")

    def do_OPTIONS(self) -> None:
        self._gate("OPTIONS")

    def do_TRACE(self) -> None:
        self._gate("TRACE")

    def do_QUERY(self) -> None:
        self._gate("QUERY")

    def address_string(self) -> str:
        return str(self.client_address[0])

    def handle_one_request(self) -> None:
        """One request, whose line, headers and body must all come within REQUEST_SECONDS (a per-read timeout
        alone lets a client that sends a byte now and then hold the connection for ever)."""
        self._deadline = threading.Timer(REQUEST_SECONDS, self._cut)
        self._deadline.daemon = True
        self._deadline.start()
        try:
            if isinstance(self.connection, ssl.SSLSocket) and not getattr(self, "_shaken", False):
                try:
                    self.connection.do_handshake()  # within the first request's deadline
                except (OSError, ssl.SSLError):
                    self.close_connection = True  # not TLS, or cut: nothing to answer
                    return
                self._shaken = True
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def _cut(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _body(self) -> dict[str, Any]:
        body = super()._body()
        self._deadline.cancel()  # read in full: what the request then takes (a pass, a stream) is not cut
        return body

    def _gate(self, method: str) -> None:
        server = self.server
        client = self.address_string()
        path = urlsplit(self.path).path
        if not server.allowed_host(self.headers.get("Host")):
            self.close_connection = True
            server.failed(client, method, path, f"Host {str(self.headers.get('Host'))[:100]!r} is not allowed")
            self._fail(HTTPStatus.FORBIDDEN, "this Host is not allowed here (daemon --allowed-host)")
            return
        if server.throttled(client):
            self.close_connection = True
            self._fail(HTTPStatus.TOO_MANY_REQUESTS, "too many refused requests: wait a minute")
            return
        if method not in READING and server.read_only:
            self._refuse(HTTPStatus.FORBIDDEN, method, path, "a read-only listener", "read-only listener")
            return
        if path == "/openapi.json" and method == "GET":  # the API's description holds no secret: no token
            self._send(HTTPStatus.OK, openapi_document())
            return
        if path == "/" and method == "GET":
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", "/ui/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/ui" or path.startswith("/ui/"):
            self._asset(method, path)
            return
        if path.startswith("/hooks/git/"):
            if method != "POST":
                self._fail(HTTPStatus.METHOD_NOT_ALLOWED, "webhooks are POSTed")
                return
            status, document, unread, why = answer_hook(server.hooks, path[len("/hooks/git/"):], self.headers,
                                                        self.rfile.read)
            self._deadline.cancel()
            if why:
                server.failed(client, method, path, why)
            self.close_connection = unread or self.close_connection
            self._send(HTTPStatus(status), document)
            return
        if not path.startswith(PREFIX + "/") and path != "/metrics":
            self.close_connection = True
            self._fail(HTTPStatus.NOT_FOUND, f"no such route: {path[:200]}")
            return
        try:
            scope = self._scope()
        except UserError as error:  # tokens.json became unusable: no token is taken until it is mended
            server.report(f"refused {method} {path[:200]} from {client}: {error}")
            self._fail(HTTPStatus.SERVICE_UNAVAILABLE, "the daemon cannot read its tokens now")
            return
        if scope is None:
            self._refuse(HTTPStatus.UNAUTHORIZED, method, path, "no valid token",
                         "a token is needed: Authorization: Bearer <token> (orchestrator token create)")
            return
        if method not in READING and scope != "admin":
            self._refuse(HTTPStatus.FORBIDDEN, method, path, f"a {scope} token", f"a {scope} token may only read")
            return
        if method not in READING and not server.allowed_origin(self.headers.get("Origin")):
            self._refuse(HTTPStatus.FORBIDDEN, method, path, "a cross-site Origin", "cross-site request refused")
            return
        if path == "/metrics":
            self._metrics()
            return
        if path == PREFIX + "/whoami" and method == "GET":  # what this token may do: the dashboard shows buttons by it
            self._send(HTTPStatus.OK, {"scope": "read" if server.read_only else scope, "via": "http",
                                       "read_only": server.read_only})
            return
        self._dispatch(method)

    def _metrics(self) -> None:
        if self.server.metrics is None:
            self._fail(HTTPStatus.NOT_FOUND, "no metrics here")
            return
        data = self.server.metrics()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _asset(self, method: str, path: str) -> None:
        """The dashboard's static files, with headers that keep the page to its own origin's scripts and
        styles (no inline script runs, nothing is framed, no referrer leaves)."""
        if method != "GET":
            self._fail(HTTPStatus.METHOD_NOT_ALLOWED, "the dashboard's files are read with GET")
            return
        name = path[len("/ui/"):] or "index.html"
        found = _ui_file(name)
        if found is None:
            self._fail(HTTPStatus.NOT_FOUND, f"no such file: {path[:200]}")
            return
        data, kind = found
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "
                         "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
                         "frame-ancestors 'none'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(data)

    def _scope(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            return None
        return self.server.tokens.scope_of(token.strip())

    def _refuse(self, status: HTTPStatus, method: str, path: str, why: str, told: str) -> None:
        self.server.failed(self.address_string(), method, path, why)
        self.close_connection = True  # the body, if any, is not read
        self.send_response(status)
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="orchestrator"')
        data = json.dumps(error_document(status, told)).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


UI_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
            ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def _ui_file(name: str) -> tuple[bytes, str] | None:
    """A file of daemon/ui/ by its plain name; nothing else is reachable (no folders, no dot files), and a
    name not in the folder costs nothing (they are listed once)."""
    return _ui_files().get(name)


@functools.cache
def _ui_files() -> dict[str, tuple[bytes, str]]:
    folder = Path(__file__).with_name("ui")
    files = {}
    try:
        for path in folder.iterdir():
            if path.is_file() and not path.name.startswith(".") and path.suffix in UI_TYPES:
                files[path.name] = (path.read_bytes(), UI_TYPES[path.suffix])
    except OSError:
        pass
    return files


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise UserError(f"--tls-cert {cert} --tls-key {key}: {getattr(error, 'strerror', None) or error}") from None
    return context
