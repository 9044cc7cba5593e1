"""Metrics: one /proc pass per sample, cpu over the interval, the Prometheus endpoint and `top`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import REPO, wait_for

from orchestrator.core.model import ProcessIdentity, ReplicaId
from orchestrator.host.metrics import Sampler
from orchestrator.host.observe import identity, sample_trees

CLI = [sys.executable, "-m", "orchestrator"]


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[bytes]]:
    """A parent holding ~40 MB with a child holding ~40 MB, in their own group."""
    # "up" once both hold their memory: the child says so first (until then its RSS still grows).
    child = "import time; b = bytearray(40 << 20); print('up', flush=True); time.sleep(60)"
    code = ("import subprocess, sys, time\nblob = bytearray(40 << 20)\n"
            f"child = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=subprocess.PIPE)\n"
            "child.stdout.readline()\nprint('up', flush=True)\ntime.sleep(60)")
    popen = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    try:
        yield popen
    finally:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


def test_sample_trees_sums_the_whole_tree_like_psutil(tree: subprocess.Popen[bytes]) -> None:
    assert tree.stdout is not None and tree.stdout.readline() == b"up\n"
    wait_for(lambda: sample_trees([tree.pid])[tree.pid][0] > 80 << 20, what="both to hold their memory")
    expected = sum(p.memory_info().rss for p in [psutil.Process(tree.pid), *psutil.Process(tree.pid).children()])
    rss, cpu, pss = sample_trees([tree.pid], proportional=True)[tree.pid]
    assert abs(rss - expected) < 4 << 20  # the two looks are a moment apart
    assert cpu > 0
    assert 0 < pss <= rss + (4 << 20)  # shared pages divided among the processes that share them
    assert sample_trees([tree.pid])[tree.pid][2] == 0  # not read unless asked for


def test_the_cpu_of_children_that_ended_counts_and_never_goes_down() -> None:
    """A shell loop running short-lived busy children: the tree's cpu is theirs, though none lives long."""
    script = "while true; do timeout 0.2 sh -c 'while :; do :; done'; done"
    loop = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    sampler = Sampler(interval=0.2)
    try:
        rid = ReplicaId("default/loop", 0)
        sampler.sync({rid: identity(loop.pid)})
        wait_for(lambda: len(sampler.history(rid)) >= 6, timeout=10, what="six samples")
        history = sampler.history(rid)
        totals = [sample.cpu_seconds for sample in history]
        assert totals == sorted(totals)  # a counter: never down
        assert totals[-1] - totals[0] > 0.3  # most of a core for a second, all of it in ended children
        assert sum(s.cpu_percent for s in history[1:] if s.cpu_percent is not None) / (len(history) - 1) > 30
    finally:
        sampler.close()
        os.killpg(loop.pid, signal.SIGKILL)
        loop.wait()


def test_sampler_reports_cpu_over_its_interval() -> None:
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    sampler = Sampler(interval=0.2)
    try:
        rid = ReplicaId("default/burner", 0)
        sampler.sync({rid: identity(burner.pid)})
        sample = wait_for(lambda: (s := sampler.latest(rid)) and s.cpu_percent is not None and s, what="two samples")
        assert 40 < sample.cpu_percent < 130  # one core, give or take the machine's load
        assert sampler.last_pass_seconds > 0
        sampler.sync({})
        assert sampler.latest(rid) is None
    finally:
        sampler.close()
        os.killpg(burner.pid, signal.SIGKILL)
        burner.wait()


def test_a_new_process_starts_a_new_history() -> None:
    sampler = Sampler(interval=3600)
    try:
        rid = ReplicaId("default/a", 0)
        sampler.sync({rid: ProcessIdentity(os.getpid(), 1)})
        sampler.sample({rid: ProcessIdentity(os.getpid(), 1)})
        assert len(sampler.history(rid)) == 1
        sampler.sync({rid: ProcessIdentity(os.getpid(), 2)})
        assert sampler.history(rid) == []
    finally:
        sampler.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_prometheus_endpoint_and_top(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    state, port = tmp_path / "state", free_port()
    manifest = tmp_path / "app.yaml"
    manifest.write_text("apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: app}\nspec:\n"
                        "  command: [sleep, '60']\n  replicas: 2\n  shutdown: {timeoutSeconds: 0.5}\n"
                        "---\napiVersion: orchestrator/v1\nkind: Job\nmetadata: {name: once}\nspec:\n"
                        "  command: ['true']\n")
    daemon = subprocess.Popen([*CLI, "--state-dir", str(state), "daemon", "--metrics-addr", f"127.0.0.1:{port}",
                               "--metrics-interval", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              cwd=REPO)
    try:
        wait_for(lambda: (state / "orchestrator.sock").exists(), timeout=10, what="the daemon")
        subprocess.run([*CLI, "--state-dir", str(state), "apply", "--wait", "-f", str(manifest)], check=True,
                       capture_output=True, cwd=REPO, timeout=30)

        def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
            return {family.name: [(s.labels, s.value) for s in family.samples]
                    for family in text_string_to_metric_families(text)}

        families = wait_for(lambda: (f := scrape()) and len(f.get("orchestrator_replica_memory_bytes", [])) == 2
                            and f, timeout=10, what="memory samples of both replicas")
        up = sorted((labels["replica"], value) for labels, value in families["orchestrator_replica_up"]
                    if labels["name"] == "app")
        assert up == [("0", 1.0), ("1", 1.0)]
        assert all(value > 0 for _, value in families["orchestrator_replica_memory_bytes"])
        assert {labels["name"] for labels, _ in families["orchestrator_replica_ready"]} == {"app", "once"}
        families = wait_for(lambda: (f := scrape()) and ({"name": "once", "namespace": "default", "replica": "0",
                                                          "phase": "Succeeded"}, 1.0)
                            in f["orchestrator_replica_phase"] and f, timeout=10, what="the Job Succeeded")
        # A succeeded Job is not "down": its phase says what became of it, one series per phase.
        once = {labels["phase"]: value for labels, value in families["orchestrator_replica_phase"]
                if labels["name"] == "once"}
        assert sum(once.values()) == 1.0 and len(once) == 7
        pss = [value for _, value in families["orchestrator_replica_memory_pss_bytes"]]
        assert len(pss) == 2 and all(0 < value for value in pss)
        spawns = {labels["le"]: value for labels, value in families["process_spawn_duration_seconds"]
                  if "le" in labels}
        assert spawns["+Inf"] == 3.0 and spawns["10"] == 3.0 and spawns["0.001"] <= spawns["0.1"]
        assert families["process_resident_memory_bytes"][0][1] > 10 << 20  # the daemon's own
        assert families["process_cpu_seconds"][0][1] > 0

        top = subprocess.run([*CLI, "--state-dir", str(state), "top", "-n", "1"], capture_output=True, text=True,
                             cwd=REPO, timeout=30, check=False)
        assert top.returncode == 0 and "CPU" in top.stdout and "app" in top.stdout
    finally:
        subprocess.run([*CLI, "--state-dir", str(state), "shutdown"], capture_output=True, cwd=REPO, timeout=30,
                       check=False)
        if daemon.poll() is None:
            daemon.kill()
        daemon.wait()
        if daemon.stderr is not None:
            daemon.stderr.close()


def test_a_metrics_address_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*CLI, "--state-dir", str(tmp_path / "state"), "daemon", "--metrics-addr",
                                 f"127.0.0.1:{port}"], capture_output=True, text=True, cwd=REPO, timeout=30,
                                check=False)
    assert result.returncode == 1
    assert "--metrics-addr" in result.stderr and "Traceback" not in result.stderr
