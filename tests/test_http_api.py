"""The daemon's TCP listener (`daemon --http`), tested from outside the process: tokens and their scopes, a
read-only listener, the Host and Origin rules, throttling of a client that keeps failing, and the refusal to
listen beyond loopback without a token. Requests go over real loopback sockets to a real daemon."""

# ruff: noqa: F811 - pytest fixtures imported from test_daemon are redefined as arguments

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import wait_for
from test_daemon import Orchestrator, orch, process  # noqa: F401 - orch is a fixture

from orchestrator.host.tokens import create_token

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Listener:
    def __init__(self, orch: Orchestrator, address: str) -> None:
        self.orch = orch
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)

    def request(self, method: str, path: str, token: str | None = None, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            sent["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
        finally:
            connection.close()


def start(orch: Orchestrator, *flags: str, address: str | None = None) -> subprocess.Popen[bytes]:
    address = address or f"127.0.0.1:{_free_port()}"
    orch.state.mkdir(parents=True, exist_ok=True)
    with open(orch.root / "daemon.out", "ab") as out:
        child = subprocess.Popen(orch.argv("daemon", "--http", address, *flags), stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    return child


@pytest.fixture
def tokens(orch: Orchestrator) -> dict[str, str]:
    orch.state.mkdir(parents=True, exist_ok=True)
    return {scope: create_token(orch.state, f"t-{scope}", scope, time.time()) for scope in ("read", "admin")}


@pytest.fixture
def listener(orch: Orchestrator, tokens: dict[str, str]) -> Iterator[Listener]:
    for _ in range(3):  # a port found free may be taken before the daemon binds it: then another one
        address = f"127.0.0.1:{_free_port()}"
        child = start(orch, address=address)
        if wait_for(lambda child=child: orch.answers() or child.poll() is not None, timeout=15,
                    what="the daemon answering") and orch.answers():
            break
        child.wait(timeout=15)
    try:
        yield Listener(orch, address)
    finally:
        orch.close()
        child.wait(timeout=15)


def test_tokens_and_their_scopes(orch: Orchestrator, tokens: dict[str, str], listener: Listener) -> None:
    orch.write("m/web.yaml", process("web"))
    orch.ok("apply", "-f", str(orch.root / "m"))
    orch.wait_running("web")
    assert listener.request("GET", "/api/v1/objects")[0] == 401
    assert listener.request("GET", "/api/v1/objects", token="orch_wrong")[0] == 401
    assert listener.request("GET", "/api/v1/objects", token=tokens["read"][:-1])[0] == 401
    status, answer = listener.request("GET", "/api/v1/objects", token=tokens["read"])
    assert status == 200 and [o["name"] for o in answer["objects"]] == ["web"]
    # A read token may not change anything, whatever the route (refused before routing)
    for path in ("/api/v1/restart", "/api/v1/no-such-route", "/api/v1/shutdown"):
        assert listener.request("POST", path, token=tokens["read"], body={"name": "web"})[0] == 403
    pid = orch.running("web")["web"]  # type: ignore[index]
    status, answer = listener.request("POST", "/api/v1/restart", token=tokens["admin"], body={"name": "web"})
    assert status == 200 and answer["replicas"] == 1
    orch.wait_running("web", replacing={"web": pid})
    assert listener.request("GET", "/api/v1/nope", token=tokens["admin"])[0] == 404
    assert listener.request("GET", "/elsewhere", token=tokens["admin"])[0] == 404
    # A revoked token stops working at once.
    orch.ok("token", "revoke", "t-admin")
    assert listener.request("GET", "/api/v1/objects", token=tokens["admin"])[0] == 401
    denied = [e for e in orch.api("GET", "/events")["events"] if e["type"] == "AccessDenied"]
    assert denied and all(tokens["read"] not in e["message"] and tokens["admin"] not in e["message"] for e in denied)
    assert all("orch_wrong" not in e["message"] for e in denied)


def test_host_and_origin_rules(orch: Orchestrator, tokens: dict[str, str], listener: Listener) -> None:
    admin = tokens["admin"]
    assert listener.request("GET", "/api/v1/health", token=admin, headers={"Host": "evil.example"})[0] == 403
    assert listener.request("GET", "/api/v1/health", token=admin, headers={"Host": f"localhost:{listener.port}"})[0] == 200
    cross = {"Origin": "https://evil.example"}
    assert listener.request("POST", "/api/v1/scale", token=admin, body={}, headers=cross)[0] == 403
    same = {"Origin": f"http://127.0.0.1:{listener.port}"}
    status, answer = listener.request("POST", "/api/v1/scale", token=admin, body={"name": "x", "replicas": 1},
                                      headers=same)
    assert status == 404 and "no object" in answer["error"]["message"]  # past the gates: the route's own answer


def test_a_client_that_keeps_failing_is_throttled(orch: Orchestrator, tokens: dict[str, str],
                                                  listener: Listener) -> None:
    codes = [listener.request("GET", "/api/v1/objects", token=f"orch_guess{n}")[0] for n in range(12)]
    assert codes[:10] == [401] * 10 and codes[-1] == 429
    assert listener.request("GET", "/api/v1/objects", token=tokens["read"])[0] == 429  # for a while, even a good one
    denied = [e for e in orch.api("GET", "/events")["events"] if e["type"] == "AccessDenied"]
    assert 1 <= len(denied) <= 2  # rate-limited: not one event per attempt


def test_a_read_only_listener_refuses_every_change(orch: Orchestrator, tokens: dict[str, str]) -> None:
    address = f"127.0.0.1:{_free_port()}"
    child = start(orch, "--read-only", address=address)
    try:
        wait_for(orch.answers, timeout=15, what="the daemon answering")
        listener = Listener(orch, address)
        assert listener.request("GET", "/api/v1/objects", token=tokens["admin"])[0] == 200
        assert listener.request("POST", "/api/v1/shutdown", token=tokens["admin"])[0] == 403
        assert listener.request("DELETE", "/api/v1/objects/x", token=tokens["admin"])[0] == 403
        assert listener.request("POST", "/hooks/git/prod", body={})[0] == 403
        assert orch.answers()
    finally:
        orch.close()
        child.wait(timeout=15)


def test_no_listener_beyond_loopback_without_a_token(orch: Orchestrator) -> None:
    child = start(orch, address=f"0.0.0.0:{_free_port()}")
    try:
        assert child.wait(timeout=30) == 1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    out = (orch.root / "daemon.out").read_text()
    assert "no API token exists" in out and "token create" in out


def test_tokens_on_disk_hold_no_token(orch: Orchestrator, tokens: dict[str, str]) -> None:
    text = (orch.state / "tokens.json").read_text()
    assert tokens["read"] not in text and tokens["admin"] not in text
    assert (orch.state / "tokens.json").stat().st_mode & 0o077 == 0
    listed = orch.ok("token", "list")
    assert "t-read" in listed and tokens["read"] not in listed


def test_tokens_made_readable_to_others_stop_every_token(orch: Orchestrator, tokens: dict[str, str],
                                                        listener: Listener) -> None:
    assert listener.request("GET", "/api/v1/health", token=tokens["read"])[0] == 200
    (orch.state / "tokens.json").chmod(0o644)
    assert listener.request("GET", "/api/v1/health", token=tokens["read"])[0] == 503
    (orch.state / "tokens.json").chmod(0o600)
    assert listener.request("GET", "/api/v1/health", token=tokens["read"])[0] == 200
    denied = [e["message"] for e in orch.api("GET", "/events")["events"] if e["type"] == "AccessDenied"]
    assert any("chmod" in m for m in denied) and not any(tokens["read"] in m for m in denied)


def test_slow_senders_are_cut_and_cannot_hold_the_listener(orch: Orchestrator, tokens: dict[str, str],
                                                           listener: Listener) -> None:
    from orchestrator.daemon import http as listener_module

    slow = []
    try:
        for _ in range(listener_module.MAX_PER_CLIENT):
            connection = socket.create_connection((listener.host, listener.port), timeout=30)
            connection.sendall(b"POST /hooks/git/prod HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and then nothing more
            slow.append(connection)
        # While they hang, this address may open no more (other addresses could, up to MAX_CLIENTS)...
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            listener.request("GET", "/api/v1/health", token=tokens["read"])
        started = time.monotonic()
        for connection in slow:
            connection.settimeout(listener_module.REQUEST_SECONDS + 5)
            assert connection.recv(100) == b""  # ... and each is closed at its request's deadline
        assert time.monotonic() - started < listener_module.REQUEST_SECONDS + 5

        def served() -> bool:
            try:
                return listener.request("GET", "/api/v1/health", token=tokens["read"])[0] == 200
            except (ConnectionError, http.client.RemoteDisconnected):
                return False

        wait_for(served, timeout=5, what="a request served after the slow ones were cut")
    finally:
        for connection in slow:
            connection.close()
