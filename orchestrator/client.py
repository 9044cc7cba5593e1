"""CLI side of the control socket: requests to the daemon, and starting one when none runs.

Light on purpose (stdlib only): `orchestrator get` imports this and little else.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import Location, ManifestError, Problem, UserError
from .sockets import connect, socket_path


class DaemonUnavailable(UserError):
    """No daemon answers on the state dir's socket."""


class ApiError(UserError):
    """The daemon refused a request; the message is its answer."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = connect(self._path, self.timeout)


class Client:
    def __init__(self, state_dir: Path, timeout: float | None = 60.0) -> None:
        self.state_dir = state_dir
        self.socket = socket_path(state_dir)
        self.timeout = timeout

    def request(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        connection = self._open()
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            try:
                connection.request(method, "/api/v1" + route, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
                raise DaemonUnavailable(f"the daemon for {self.state_dir} did not answer: {error}") from error
            document = json.loads(payload) if payload else {}
            if response.status >= 400:
                problems = document.get("problems")
                if problems:
                    raise ManifestError([_problem(p) for p in problems])
                raise ApiError(response.status, document.get("error", f"HTTP {response.status}"))
            return document
        finally:
            connection.close()

    def stream(self, route: str) -> Iterator[dict[str, Any]]:
        """JSON lines from a streaming route, as they come; blank keep-alive lines are skipped."""
        connection = self._open(timeout=None)
        try:
            connection.request("GET", "/api/v1" + route)
            response = connection.getresponse()
            if response.status >= 400:
                raise ApiError(response.status, json.loads(response.read() or b"{}").get("error", "error"))
            while True:
                line = response.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            connection.close()

    def ping(self) -> bool:
        try:
            self.request("GET", "/health")
        except (DaemonUnavailable, ApiError):
            return False
        return True

    def _open(self, timeout: float | None | str = "default") -> _UnixConnection:
        connection = _UnixConnection(self.socket, self.timeout if timeout == "default" else timeout)  # type: ignore[arg-type]
        try:
            connection.connect()
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise DaemonUnavailable(
                f"no daemon is running for state dir {self.state_dir} "
                "(`orchestrator apply -f PATH` starts one, or run `orchestrator daemon`)"
            ) from error
        except PermissionError as error:
            raise DaemonUnavailable(f"not allowed to use {self.socket}: it belongs to another user") from error
        return connection


def start_daemon(state_dir: Path, wait_seconds: float = 15.0) -> Client:
    """Start a daemon for `state_dir` in the background unless one answers; return a client of it."""
    client = Client(state_dir)
    if client.ping():
        return client
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = open(state_dir / "daemon.log", "ab")  # noqa: SIM115 - handed to the child, closed below
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
        log.close()
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if client.ping():
            return client
        code = process.poll()
        if code is not None and not client.ping():
            tail = _tail(state_dir / "daemon.log", 5)
            raise UserError(f"the daemon exited with code {code} while starting:\n{tail}")
        time.sleep(0.02)
    raise UserError(f"the daemon did not answer within {wait_seconds:g} s; see {state_dir / 'daemon.log'}")


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _problem(document: dict[str, Any]) -> Problem:
    location = Location(str(document.get("file", "")), int(document.get("line", 0)), int(document.get("column", 0)))
    return Problem(location, str(document.get("path", "")), str(document.get("message", "")))
