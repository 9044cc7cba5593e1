"""Health bands of a replica's limits (planning/health.py): the table, then a real memory hog under a real limit
seen by `get -o wide`, `describe` and the listener's Prometheus `/metrics`."""

# ruff: noqa: F811 - pytest fixtures imported from test_daemon are redefined as arguments

from __future__ import annotations

import json

import pytest
from conftest import wait_for
from test_daemon import Orchestrator, orch, process  # noqa: F401 - orch is a fixture
from test_http_api import Listener, _free_port, start, tokens  # noqa: F401 - fixtures

from orchestrator.planning.health import CRITICAL, HEALTHY, WARNING, limit_health, worst

MI = 1024 * 1024


@pytest.mark.parametrize(("cpu", "memory", "cpu_limit", "memory_limit", "expected"), [
    (None, None, None, 64 * MI, None),  # no sample yet
    (50.0, 10 * MI, None, None, None),  # no limit
    (10.0, 10 * MI, None, 64 * MI, (HEALTHY, "memory")),
    (10.0, int(0.79 * 64 * MI), None, 64 * MI, (HEALTHY, "memory")),
    (10.0, int(0.8 * 64 * MI) + 1, None, 64 * MI, (WARNING, "memory")),
    (10.0, 64 * MI, None, 64 * MI, (CRITICAL, "memory")),
    (45.0, 1 * MI, 0.5, None, (WARNING, "cpu")),  # 45 % of one core is 90 % of half a core
    (50.0, 1 * MI, 0.5, None, (CRITICAL, "cpu")),
    (50.0, 10 * MI, 0.5, 64 * MI, (CRITICAL, "cpu")),  # the one nearest its limit decides
    (10.0, 60 * MI, 2.0, 64 * MI, (WARNING, "memory")),
])
def test_bands(cpu: float | None, memory: int | None, cpu_limit: float | None, memory_limit: int | None,
               expected: tuple[str, str] | None) -> None:
    health = limit_health(cpu, memory, cpu_limit, memory_limit)
    assert (None if health is None else (health.band, health.resource)) == expected


def test_fractions_are_parameters_and_worst_orders_by_severity() -> None:
    health = limit_health(None, 30 * MI, None, 64 * MI, warning_at=0.4, critical_at=0.9)
    assert health is not None and health.band == WARNING and health.detail == "memory at 47% of its limit"
    assert worst([HEALTHY, CRITICAL, WARNING]) == CRITICAL and worst([]) is None


HOG = ["python3", "-c", "import time\nheld = b'x' * (30 * 1024 * 1024)\ntime.sleep(600)"]  # every page touched


def test_a_hog_near_its_memory_limit_is_warning_everywhere(orch: Orchestrator, tokens: dict[str, str]) -> None:
    address = f"127.0.0.1:{_free_port()}"
    child = start(orch, "--metrics-interval", "0.3", address=address)
    try:
        wait_for(orch.answers, timeout=15, what="the daemon answering")
        listener = Listener(orch, address)
        # ~30 MiB touched plus the interpreter: over 80 % of 40Mi, under 100 %; a sleeper beside it is Healthy.
        orch.write("m/hog.yaml", process("hog", HOG, resources={"limits": {"memory": "44Mi"}}))
        orch.write("m/calm.yaml", process("calm", resources={"limits": {"memory": "64Mi"}}))
        orch.write("m/free.yaml", process("free"))
        orch.ok("apply", "-f", str(orch.root / "m"))
        orch.wait_running("hog")

        def bands() -> dict[str, str | None]:
            return {o["name"]: o.get("limit_health") for o in orch.api("GET", "/objects?usage=1")["objects"]}

        wait_for(lambda: bands() == {"hog": WARNING, "calm": HEALTHY, "free": None}, timeout=20,
                 what="the hog Warning, the sleeper Healthy, the unlimited one without a band")
        wide = orch.ok("get", "-o", "wide").splitlines()
        header = wide[0].split()
        rows = {line.split()[0]: line.split() for line in wide[1:]}
        assert rows["hog"][header.index("HEALTH")] == WARNING and rows["free"][header.index("HEALTH")] == "-"
        described = orch.ok("describe", "hog")
        assert "Limit health:" in described and "Warning (memory at" in described, described
        document = json.loads(orch.ok("describe", "hog", "-o", "json"))
        assert document["replica_status"][0]["limit_health"]["band"] == WARNING
        assert 0.8 <= document["replica_status"][0]["limit_health"]["fraction"] < 1.0
        status, _ = listener.request("GET", "/metrics")
        assert status == 401  # a token of either scope
        connection_text = _metrics(listener, tokens["read"])
        assert 'orchestrator_replica_limit_health{band="Warning",name="hog",namespace="default",replica="0"} 1.0' \
            in connection_text
        assert 'orchestrator_replica_limit_health{band="Healthy",name="calm",namespace="default",replica="0"} 1.0' \
            in connection_text
        assert 'name="free"' not in "\n".join(line for line in connection_text.splitlines()
                                              if line.startswith("orchestrator_replica_limit_health"))
    finally:
        orch.close()
        child.wait(timeout=15)


def _metrics(listener: Listener, token: str) -> str:
    import http.client

    connection = http.client.HTTPConnection(listener.host, listener.port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()

