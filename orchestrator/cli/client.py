"""CLI side of the control socket: requests to the daemon, and starting one when none runs.

Light on purpose (json, socket, and no more of the standard library than that): `orchestrator get`
imports this and little else.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.errors import Location, ManifestError, Problem, UserError
from ..host.sockets import connect, peer_uid, socket_path


class DaemonUnavailable(UserError):
    """No daemon answers on the state dir's socket."""


class ApiError(UserError):
    """The daemon refused a request; the message is its answer."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class _Response:
    """A response read off the socket: status, lower-cased headers, and the body's reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.reader = sock.makefile("rb")
        status_line = self.reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        while True:
            line = self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def read(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            return b"".join(self.chunks())
        length = self.headers.get("content-length")
        return self.reader.read(int(length)) if length is not None else self.reader.read()

    def chunks(self) -> Iterator[bytes]:
        while True:
            size_line = self.reader.readline()
            if not size_line:
                return
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                return
            data = self.reader.read(size)
            self.reader.readline()  # the CRLF after the chunk
            yield data


class Client:
    """Requests to the daemon's API. HTTP/1.1 is spoken here directly, one request per connection: the
    standard library's http.client costs about 30 ms to import (it pulls in the email package), a fifth of
    the budget of an `orchestrator get`, for the few lines this needs."""

    def __init__(self, state_dir: Path, timeout: float | None = 60.0) -> None:
        self.state_dir = state_dir
        self.socket = socket_path(state_dir)
        self.timeout = timeout

    def request(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        sock = self._connect(self.timeout)
        try:
            try:
                response = self._send(sock, method, route, body)
                payload = response.read()
            except (ConnectionError, OSError, ValueError) as error:
                raise DaemonUnavailable(f"the daemon for {self.state_dir} did not answer: {error}") from error
        finally:
            sock.close()
        try:
            document = json.loads(payload) if payload else {}
        except ValueError as error:
            raise ApiError(response.status, f"the daemon answered something that is not JSON: {payload[:80]!r}") from error
        if response.status >= 400:
            message, problems = error_of(document, response.status)
            if problems:
                raise ManifestError([_problem(p) for p in problems])
            raise ApiError(response.status, message)
        return document

    def stream(self, route: str) -> Iterator[dict[str, Any]]:
        """JSON lines from a streaming route, as they come; blank keep-alive lines are skipped."""
        sock = self._connect(None)
        try:
            response = self._send(sock, "GET", route, None)
            if response.status >= 400:
                raise ApiError(response.status, error_of(json.loads(response.read() or b"{}"), response.status)[0])
            pending = b""
            for chunk in response.chunks():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            sock.close()

    def ping(self) -> bool:
        try:
            self.request("GET", "/health")
        except (DaemonUnavailable, ApiError):
            return False
        return True

    @staticmethod
    def _send(sock: socket.socket, method: str, route: str, body: dict[str, Any] | None) -> _Response:
        data = json.dumps(body).encode() if body is not None else b""
        head = f"{method} /api/v1{route} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        sock.sendall(head.encode() + b"\r\n" + data)
        return _Response(sock)

    def _connect(self, timeout: float | None) -> socket.socket:
        try:
            sock = connect(self.socket, timeout)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            from ..host.statedir import run_owner

            owned = run_owner(self.state_dir)
            if owned is not None:
                raise DaemonUnavailable(f"no daemon serves state dir {self.state_dir}: {owned}") from error
            left = left_running(self.state_dir)
            if left:
                shown = ", ".join(map(str, left[:10])) + (" ..." if len(left) > 10 else "")
                raise DaemonUnavailable(
                    f"no daemon is running for state dir {self.state_dir}, but {len(left)} process(es) it started "
                    f"still run (pids {shown}): `orchestrator daemon` (or any `apply`) adopts them, and "
                    "`orchestrator shutdown` starts a daemon that adopts them and stops them all") from error
            raise DaemonUnavailable(
                f"no daemon is running for state dir {self.state_dir} "
                "(`orchestrator apply -f PATH` starts one, or run `orchestrator daemon`)"
            ) from error
        except PermissionError as error:
            raise DaemonUnavailable(f"not allowed to use {self.socket}: it belongs to another user") from error
        except NotADirectoryError as error:
            raise DaemonUnavailable(f"state dir {self.state_dir} is not a directory: choose another --state-dir") \
                from error
        except OSError as error:
            raise DaemonUnavailable(f"cannot reach the daemon at {self.socket}: {error.strerror or error}") from error
        server = peer_uid(sock)
        if server != os.geteuid():  # only a daemon of ours may be told what to run, or heard
            sock.close()
            raise DaemonUnavailable(f"{self.socket} is served by uid {server}, not by you (uid {os.geteuid()}): "
                                    "refused")
        return sock


def start_daemon(state_dir: Path, wait_seconds: float = 15.0) -> Client:
    """Start a daemon for `state_dir` in the background unless one answers; return a client of it."""
    import subprocess

    client = Client(state_dir)
    if client.ping():
        return client
    from ..host.statedir import OPEN_FLAGS, lock_holder, prepare_state_dir, run_owner

    prepare_state_dir(state_dir)
    owned = run_owner(state_dir)
    if owned is not None:
        raise UserError(owned)
    # 0600: the daemon's output names processes and paths; nobody else needs to read it.
    try:
        log = os.open(state_dir / "daemon.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | OPEN_FLAGS, 0o600)
    except OSError as error:
        raise UserError(f"cannot open {state_dir / 'daemon.log'}: {error.strerror or error}") from None
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "--state-dir", str(state_dir), "daemon"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if client.ping():
            return client
        code = process.poll()
        owned = run_owner(state_dir)
        if owned is not None:
            raise UserError(owned)
        if code is not None and not client.ping() and lock_holder(state_dir) is None:
            # (While another daemon holds the lock, ours lost a race with a concurrent first apply: that one
            # answers soon.)
            tail = _tail(state_dir / "daemon.log", 5)
            raise UserError(f"the daemon exited with code {code} while starting:\n{tail}")
        time.sleep(0.02)
    raise UserError(f"the daemon did not answer within {wait_seconds:g} s; see {state_dir / 'daemon.log'}")


def left_running(state_dir: Path) -> list[int]:
    """Pids of the replicas a daemon of `state_dir` started that still run with no daemon (it was killed):
    found by the state dir's mark in their environment. One pass over /proc: for error messages only."""
    from ..host.execute import STATE_MARKER
    from ..host.observe import marked_session_leaders

    try:
        return sorted(marked_session_leaders(STATE_MARKER, str(state_dir.resolve()), {os.getpid()}))
    except OSError:
        return []


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def error_of(document: Any, status: int) -> tuple[str, list[dict[str, Any]]]:
    """The message and problems of an error answer: {"error": {"reason", "message", "problems"}}, or the
    {"error": "...", "problems": [...]} of a daemon started by an earlier release and still running."""
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or f"HTTP {status}"), list(error.get("problems") or [])
    return str(error or f"HTTP {status}"), list(document.get("problems") or []) if isinstance(document, dict) else []


def _problem(document: dict[str, Any]) -> Problem:
    location = Location(str(document.get("file", "")), int(document.get("line", 0)), int(document.get("column", 0)))
    return Problem(location, str(document.get("path", "")), str(document.get("message", "")))
