"""schemas/openapi.yaml against the daemon that serves it: every route documented and every documented route
served, the document valid OpenAPI 3.1, real answers of a live daemon valid against their documented schemas,
and schemathesis's generated requests over TCP answered without a 5xx or an answer outside the document.

Each test starts its own daemon (the `orch` fixture, which shuts it down and fails on leftovers)."""

# ruff: noqa: F811 - pytest fixtures imported from test_daemon are redefined as arguments

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from conftest import REPO, wait_for
from test_daemon import Orchestrator, alive, orch, process  # noqa: F401 - orch is a fixture
from test_http_api import Listener, _free_port, listener, start, tokens  # noqa: F401 - fixtures

from orchestrator.daemon.routes import Routes, openapi_document
from orchestrator.host.sockets import socket_path

pytestmark = pytest.mark.timeout(120)

DOCUMENT = REPO / "schemas" / "openapi.yaml"
# Routes.handle's dynamic routes, beside its table.
DYNAMIC = {("GET", "/objects/{name}"), ("GET", "/gitsyncs/{name}")} | {
    ("POST", f"/gitsyncs/{{name}}/{verb}") for verb in ("sync", "diff", "suspend", "resume", "remove")}
# The TCP listener's, outside /api/v1 (daemon/http.py answers them before routing).
LISTENER_ONLY = {("POST", "/hooks/git/{name}"), ("GET", "/metrics"), ("GET", "/ui/")}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def documented() -> set[tuple[str, str]]:
    paths = yaml.safe_load(DOCUMENT.read_text())["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item if method in METHODS}


def served() -> set[tuple[str, str]]:
    nothing: Any = None
    routes = Routes(*[nothing] * 11)  # the table only: none is called
    return set(routes.table) | DYNAMIC


class Unix(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(self.path))


def unix(orch: Orchestrator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request over the Unix socket: (status, JSON answer)."""
    connection = Unix(socket_path(orch.state))
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        connection.request(method, "/api/v1" + path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


class Contract:
    """Validates answers against the response schemas of the served document (its $refs all internal)."""

    def __init__(self) -> None:
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        self.document = openapi_document()
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self.registry = Registry().with_resource("urn:openapi", resource)
        self.validator = Draft202012Validator

    def check(self, method: str, path: str, status: int, answer: Any,
              media: str = "application/json") -> None:
        responses = self.document["paths"][path][method.lower()]["responses"]
        code = str(status) if str(status) in responses else "default"
        assert code in responses, f"{method} {path}: {status} is not documented"
        where = ["paths", path, method.lower(), "responses", code]
        if "$ref" in responses[code]:
            where = responses[code]["$ref"].lstrip("#/").split("/")
        pointer = "/".join(part.replace("~", "~0").replace("/", "~1") for part in [*where, "content", media, "schema"])
        validator = self.validator({"$ref": f"urn:openapi#/{pointer}"}, registry=self.registry)
        errors = sorted(validator.iter_errors(answer), key=lambda e: list(e.path))
        assert not errors, f"{method} {path} {status}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:5])

    def __call__(self, orch: Orchestrator, method: str, path: str, route: str | None = None, body: Any = None,
                 expect: int = 200) -> Any:
        status, answer = unix(orch, method, path, body)
        assert status == expect, (method, path, status, answer)
        self.check(method, route or path.split("?", 1)[0], status, answer)
        return answer


def test_every_route_is_documented_and_every_documented_route_is_served(orch: Orchestrator) -> None:
    assert documented() - LISTENER_ONLY == served()
    orch.write("m/web.yaml", process("web"))
    orch.ok("apply", "-f", str(orch.root / "m"))
    minimal: dict[tuple[str, str], Any] = {("POST", "/apply"): {"files": []}, ("POST", "/documents"): {"files": []},
                                            ("POST", "/gitsyncs"): {"document": {}}}
    for method, path in sorted(served() - {("POST", "/shutdown")}):
        status, answer = unix(orch, method, path.replace("{name}", "web"), minimal.get((method, path), {}))
        assert status < 500, (method, path, status, answer)
        assert not (status == 404 and answer["error"]["message"].startswith("no such route")), (method, path, answer)
    assert unix(orch, "GET", "/no-such-route") == (404, {"error": {"reason": "NotFound", "message": "no such route: GET /no-such-route", "problems": []}})
    pid = orch.daemon_pid()
    assert unix(orch, "POST", "/shutdown")[0] == 200  # last: it ends the daemon
    wait_for(lambda: pid is None or not alive(pid), timeout=15, what="the daemon gone")


def test_the_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator", reason="openapi-spec-validator (the test extra)")
    from openapi_spec_validator.readers import read_from_filename

    spec, _ = read_from_filename(str(DOCUMENT))
    assert spec["openapi"] == "3.1.0"
    validator.validate(spec, base_uri=DOCUMENT.as_uri())  # the file, its $refs resolved in schemas/
    served = openapi_document()
    validator.validate(served)  # what the daemon serves: the same, with the manifest schemas put in place
    text = json.dumps(served)
    assert all(f'"$ref": "{name}' not in text for name in ("gitsync.v1", "process.v1", "job.v1", "manifest.v1"))
    # Every Schema Object of the file is a valid Draft 2020-12 schema too.
    from jsonschema import Draft202012Validator

    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_answers_of_a_live_daemon_match_their_schemas(orch: Orchestrator, tokens: dict[str, str],
                                                      listener: Listener) -> None:
    check = Contract()
    manifest = orch.write("m/web.yaml", process("web", labels={"tier": "front"}, replicas=2))
    orch.write("m/once.yaml", "apiVersion: orchestrator/v1\nkind: Job\nmetadata: {name: once}\n"
                              "spec: {command: [\"true\"]}\n")
    orch.ok("apply", "-f", str(orch.root / "m"))
    orch.wait_running("web")
    wait_for(lambda: orch.objects()["once"]["state"] == "Succeeded", timeout=10, what="the job done")

    objects = check(orch, "GET", "/objects")["objects"]
    assert {o["name"] for o in objects} == {"web", "once"}
    check(orch, "GET", "/objects?usage=1&selector=tier%3Dfront")
    check(orch, "GET", "/objects/web", "/objects/{name}")
    check(orch, "GET", "/objects/" + quote("default/once", safe=""), "/objects/{name}")
    check(orch, "GET", "/desired")
    check(orch, "GET", "/health")
    check(orch, "GET", "/gitsyncs")
    text = manifest.read_text().replace('"sleep", "60"', '"sleep", "61"')
    files = {"files": [{"file": str(manifest), "text": text}]}
    answer = check(orch, "POST", "/apply", body={**files, "dry_run": True, "paths": [str(manifest.parent)]})
    assert answer["dry_run"] and answer["results"][0]["result"] == "configured"
    check(orch, "POST", "/documents", body=files)
    check(orch, "POST", "/scale", body={"name": "web", "replicas": 1})
    check(orch, "POST", "/restart", body={"name": "web"})
    check(orch, "POST", "/stop", body={"name": "web"})
    check(orch, "POST", "/start", body={"name": "web"})
    check(orch, "POST", "/rollout", body={"name": "web"})
    check(orch, "POST", "/rollout", body={"name": "web", "action": "history"})
    check(orch, "POST", "/delete", body={"names": ["once"], "dry_run": True})
    check(orch, "POST", "/unwatch", body={"paths": []})
    revisions = check(orch, "GET", "/revisions")["revisions"]
    assert len(revisions) >= 3
    check(orch, "POST", "/rollback", body={"revision": revisions[-1]["number"]})
    events = check(orch, "GET", "/events")["events"]
    check(orch, "GET", f"/events?since={events[-3]['id']}&key=web&limit=5")
    check(orch, "GET", "/openapi.json")
    check(orch, "GET", "/alerts")
    check(orch, "GET", "/alerts/history?limit=5")
    check(orch, "GET", "/cronjobs")
    check(orch, "GET", "/queues")
    check(orch, "GET", "/queues?name=none", "/queues", expect=404)
    check(orch, "POST", "/notifiers/test", body={"name": "none"}, expect=404)
    # Errors: one shape, with problems for manifests.
    check(orch, "GET", "/objects/nothing", "/objects/{name}", expect=404)
    check(orch, "POST", "/scale", body={"name": "web", "replicas": -1}, expect=409)
    bad = check(orch, "POST", "/apply", body={"files": [{"file": "/x.yaml", "text": "kind: Nope\n"}]}, expect=400)
    assert bad["error"]["reason"] == "Invalid" and bad["error"]["problems"][0]["file"] == "/x.yaml"
    check(orch, "GET", "/gitsyncs/none", "/gitsyncs/{name}", expect=404)
    # The event stream: JSON lines, each an Event.
    connection = Unix(socket_path(orch.state))
    try:
        connection.request("GET", "/api/v1/events?follow=1&since=0")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "application/x-ndjson"
        for _ in range(3):
            check.check("GET", "/events", 200, json.loads(response.readline()), "application/x-ndjson")
    finally:
        connection.close()
    # Over TCP: the document without a token (the Host checked still); the API's answers with one.
    status, served = listener.request("GET", "/openapi.json")
    assert status == 200 and served == openapi_document() == unix(orch, "GET", "/openapi.json")[1]
    assert listener.request("GET", "/openapi.json", headers={"Host": "evil.example"})[0] == 403
    status, answer = listener.request("GET", "/api/v1/openapi.json")
    assert status == 401
    check.check("GET", "/openapi.json", status, answer)
    status, answer = listener.request("GET", "/api/v1/objects", token=tokens["read"])
    check.check("GET", "/objects", status, answer)
    status, answer = listener.request("POST", "/api/v1/restart", token=tokens["read"], body={"name": "web"})
    assert status == 403
    check.check("POST", "/restart", status, answer)
    status, answer = listener.request("POST", "/hooks/git/none", body={})
    assert status == 404
    check.check("POST", "/hooks/git/{name}", status, answer)


SCHEMATHESIS_SKIPPED = {
    "shutdown": "ends the daemon",
    "apply": "would run whatever commands it generates, as many replicas as the schema allows",
    "putGitsync": "would start syncs that fetch whatever repositories it generates",
    "gitWebhook": "the TCP listener's, outside /api/v1 (tested above)",
}


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(
        orch: Orchestrator, tokens: dict[str, str], listener: Listener) -> None:
    st = shutil.which("st", path=os.path.dirname(sys.executable)) or shutil.which("st")
    if st is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    # An object for the reads to show. Schemathesis reuses names it read in answers: autoscaled between 1 and 1,
    # so a generated scale of it (up to 10000 replicas) is refused.
    orch.write("m/target.yaml", process("target", autoscale={"min": 1, "max": 1, "targetCPUPercent": 50}))
    orch.ok("apply", "-f", str(orch.root / "m"))
    checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
    argv = [st, "run", str(DOCUMENT), "--url", f"http://{listener.host}:{listener.port}/api/v1",
            "-H", f"Authorization: Bearer {tokens['admin']}",
            "--checks", checks,
            "--phases", "examples,coverage,fuzzing", "--max-examples", "10", "--workers", "1",
            "--request-timeout", "10", "--max-time", "45", "--seed", "1", "--no-color",
            "--generation-database", "none", "--suppress-health-check", "all"]
    for operation in SCHEMATHESIS_SKIPPED:
        argv += ["--exclude-operation-id", operation]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "openapi_check", "PYTHONPATH": str(Path(__file__).parent)}
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=100, cwd=orch.root, env=env)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert orch.answers()
