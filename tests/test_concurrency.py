"""Any number of clients, and of first applies at once, against one state dir: all succeed, one daemon."""

# ruff: noqa: F811 - the fixture `orch` is imported from the module that defines it

from __future__ import annotations

import subprocess
import threading

import psutil
from conftest import wait_for
from test_daemon import CLI, Orchestrator, documents, managed, orch, process  # noqa: F401

from orchestrator.cli.client import Client


def daemons_of(orch: Orchestrator) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "daemon" in cmdline and str(orch.state) in cmdline:
            found.append(proc)
    return found


def test_eight_first_applies_at_once_all_succeed_with_one_daemon(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", documents(process("a"), process("b", replicas=2)))
    children = [subprocess.Popen(orch.argv("apply", "-f", str(manifest)), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(child.wait(timeout=60), *child.communicate()) for child in children]
    assert [code for code, _, _ in results] == [0] * 8, results
    assert all("Traceback" not in err for _, _, err in results), results
    orch.wait_running("a", "b")
    # The daemons the other applies started find the lock taken and exit (they may still be starting now).
    wait_for(lambda: len(daemons_of(orch)) == 1, timeout=10, what="one daemon left")
    assert sorted(p.environ()["ORCH_NAME"] for p in managed()) == ["a", "b", "b"]


def test_thirty_clients_of_ten_requests_each_all_answered(orch: Orchestrator) -> None:
    manifest = orch.write("m/app.yaml", process("a"))
    orch.ok("apply", "-f", str(manifest))
    orch.wait_running("a")
    failures: list[BaseException] = []
    answers: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(10):
            try:
                objects = Client(orch.state, timeout=30).request("GET", "/objects")["objects"]
                with lock:
                    answers.append(len(objects))
            except BaseException as error:  # noqa: BLE001 - counted, and the test fails naming it
                with lock:
                    failures.append(error)

    threads = [threading.Thread(target=client) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == [] and answers == [1] * 300
