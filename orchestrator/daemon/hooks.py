"""The daemon's HTTP listener (`daemon --http HOST:PORT`): for now the GitSync webhooks, `POST /hooks/git/NAME`.

A webhook only asks a sync for a pass soon (GitSyncs.trigger coalesces bursts); its body is never read for
content, only authenticated: HMAC-SHA256 of the body with the sync's webhook secret, from GitHub's
`X-Hub-Signature-256: sha256=<hex>` or the generic `X-Signature: sha256=<hex>`, compared in constant time.
The secret is read from its owner-only file at each request (rotation needs no restart). Bodies are capped
(413 unread above MAX_BODY_BYTES), a request must arrive within REQUEST_SECONDS, and at most MAX_CLIENTS
are served at once. Refusals are events without the signature, at most one per sync per LOG_GAP_SECONDS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import selectors
import stat
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..core.errors import UserError

MAX_BODY_BYTES = 1 << 20  # GitHub's push payloads are far smaller; Argo CD's default cap is 50 MB
REQUEST_SECONDS = 10.0
MAX_CLIENTS = 16
LOG_GAP_SECONDS = 10.0
MAX_SECRET_BYTES = 4096


class HookTarget:
    """What the listener needs of the daemon: a sync's secret file, a pass asked for, a refusal reported."""

    def __init__(self, secret_file: Callable[[str], str | None], trigger: Callable[[str], None],
                 refused: Callable[[str, str], None]) -> None:
        self.secret_file = secret_file  # None: no such sync, or it takes no webhooks
        self.trigger = trigger
        self.refused = refused


def read_secret(path: str) -> bytes:
    """The secret of an owner-only regular file (not followed through a symlink), without its trailing newline."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as error:
        raise UserError(f"webhook secret file {path}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"webhook secret file {path} is not a regular file")
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise UserError(f"webhook secret file {path} must be the daemon user's and not readable by others "
                            "(chmod 600)")
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES or not data.strip():
        raise UserError(f"webhook secret file {path}: expected one secret of at most {MAX_SECRET_BYTES} bytes")
    return data.rstrip(b"\r\n")


def signature_matches(secret: bytes, body: bytes, headers: Any) -> bool:
    """GitHub's X-Hub-Signature-256 or the generic X-Signature, `sha256=<hex>`, in constant time."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    for name in ("X-Hub-Signature-256", "X-Signature"):
        given = headers.get(name)
        if given is not None and hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
            return True
    return False


class HookServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: str, target: HookTarget) -> None:
        host, _, port = address.rpartition(":")
        if not port.isdigit() or not host:
            raise UserError(f"--http {address!r}: expected HOST:PORT, such as 127.0.0.1:8420")
        self.target = target
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._logged: dict[str, float] = {}
        try:
            super().__init__((host.strip("[]"), int(port)), _Handler)
        except OSError as error:
            raise UserError(f"--http {address}: {error.strerror or error}") from None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._stopping = False
        self.thread = threading.Thread(target=self._serve, name="http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self.thread.start()

    def _serve(self) -> None:
        """serve_forever without its poll (it wakes twice a second): a byte on a pipe says stop."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not self._stopping:
                        self.handle_request()

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"\0")
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.server_close()

    def refused(self, name: str, why: str) -> None:
        now = time.monotonic()
        if now - self._logged.get(name, -1e9) >= LOG_GAP_SECONDS:
            self._logged[name] = now
            self.target.refused(name, why)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HookServer
    timeout = REQUEST_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        pass  # refusals are events (rate-limited); nothing else is worth a line per request

    def do_GET(self) -> None:
        self._send(HTTPStatus.NOT_FOUND, {"error": "no such route"})

    def do_POST(self) -> None:
        if not self.server.slots.acquire(blocking=False):
            self.close_connection = True
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "too many requests at once"})
            return
        try:
            self._hook()
        finally:
            self.server.slots.release()

    def _hook(self) -> None:
        prefix = "/hooks/git/"
        path = self.path.split("?", 1)[0]
        name = path[len(prefix):] if path.startswith(prefix) else ""
        secret_file = self.server.target.secret_file(name) if name and "/" not in name else None
        if secret_file is None:
            self.close_connection = True
            self._send(HTTPStatus.NOT_FOUND, {"error": "no such webhook"})
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._send(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True  # unread: nothing more on this connection makes sense
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY_BYTES} bytes"})
            return
        body = self.rfile.read(int(length))
        try:
            secret = read_secret(secret_file)
        except UserError as error:
            self.server.refused(name, f"webhook refused: {error}")
            self._send(HTTPStatus.UNAUTHORIZED, {"error": "signature not verified"})
            return
        if not signature_matches(secret, body, self.headers):
            self.server.refused(name, f"webhook refused from {self.client_address[0]}: missing or wrong signature")
            self._send(HTTPStatus.UNAUTHORIZED, {"error": "signature not verified"})
            return
        self.server.target.trigger(name)
        self._send(HTTPStatus.ACCEPTED, {"queued": True})

    def _send(self, status: HTTPStatus, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
