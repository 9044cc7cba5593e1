"""A GitSync that targets the fleet (spec.target: Fleet): kept by two real agents of a real 3-member etcd on
loopback, run by the one elected, writing a real git repository's commits to the fleet's specs in etcd.

What a user sees is checked: which node leads (`sync get`), what etcd holds (`get --fleet`), which processes
run where with which pids; a new commit rolls out and prunes, a bad commit changes nothing that runs, and when
the leader's node dies the other node takes the sync over (within the lease) without restarting anything. A
daemon not in fleet mode refuses target Fleet at its field, and applies nothing else of that apply."""

# ruff: noqa: F811 - fixtures imported from other test modules are redefined as arguments

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import wait_for
from etcdcluster import EtcdCluster, etcd_cluster  # noqa: F401 - etcd_cluster is a fixture
from gitservers import Upstream
from test_daemon import Orchestrator, orch  # noqa: F401 - orch is a fixture
from test_fleet import TTL, Agent, cli, copies, logs

pytestmark = pytest.mark.timeout(150)


def fleet_yaml(web_command: list[str], with_cron: bool = True) -> str:
    docs: list[dict[str, Any]] = [
        {"kind": "Process", "metadata": {"name": "web"}, "spec": {"command": web_command,
                                                                   "shutdown": {"timeoutSeconds": 1}}},
        {"kind": "Process", "metadata": {"name": "leader"},
         "spec": {"command": ["sleep", "600"], "placement": {"mode": "One"}}},
    ]
    if with_cron:
        docs.append({"kind": "Process", "metadata": {"name": "cron"},
                     "spec": {"command": ["sleep", "600"], "placement": {"nodeSelector": {"matchLabels":
                                                                                            {"zone": "a"}}}}})
    return "---\n".join(json.dumps({"apiVersion": "orchestrator/v1", **d}) + "\n" for d in docs)


def run(agent: Agent, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "--state-dir", str(agent.state), *words],
                          capture_output=True, text=True, timeout=60, check=False)


def sync_of(agent: Agent, answering: bool = True) -> dict[str, Any]:
    """`sync get prod` of the agent; {} while it does not answer yet (a restarted agent), unless `answering`."""
    done = run(agent, "sync", "get", "prod", "-o", "json")
    if done.returncode != 0 and not answering:
        return {}
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def leader_of(agents: dict[str, Agent], commit: str) -> str | None:
    """The node whose sync says it leads and has applied `commit`, while every other node says it stands by
    for that one."""
    found = {name: sync_of(agent, answering=False) for name, agent in agents.items()
             if agent.proc and agent.proc.poll() is None}
    if not all(found.values()):
        return None
    leaders = [name for name, sync in found.items() if sync["leader"] == name]
    if len(leaders) != 1 or not (found[leaders[0]]["last_applied_revision"] or "").endswith(commit):
        return None
    others = [sync for name, sync in found.items() if name != leaders[0]]
    if any(sync["leader"] != leaders[0] or "standing by" not in sync["message"] for sync in others):
        return None
    return leaders[0]


def fleet_specs(etcd: EtcdCluster, tmp_path: Path) -> dict[str, Any]:
    return {o["name"]: o for o in json.loads(cli(etcd, tmp_path, "get", "--fleet", "-o", "json"))["objects"]}


@pytest.fixture
def agents(etcd_cluster: EtcdCluster, tmp_path: Path) -> Iterator[dict[str, Agent]]:
    made = {name: Agent(tmp_path, name, etcd_cluster.endpoints, {"zone": zone})
            for name, zone in (("n1", "a"), ("n2", "b"))}
    try:
        for agent in made.values():
            agent.start()
        yield made
    finally:
        for agent in made.values():
            agent.close()


def test_one_elected_node_writes_the_repository_to_the_fleet_and_another_takes_over_when_it_dies(
        agents: dict[str, Agent], etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    upstream = Upstream(tmp_path / "upstream")
    upstream.write("deploy/fleet.yaml", fleet_yaml(["sleep", "600"]))
    first = upstream.commit("first")
    for agent in agents.values():  # both keep it; only the elected one polls and writes
        done = run(agent, "sync", "add", "prod", "--repo", upstream.url, "--branch", "main", "--path", "deploy",
                   "--interval", "3600", "--prune", "--target", "Fleet")
        assert done.returncode == 0, done.stdout + done.stderr

    leader = wait_for(lambda: leader_of(agents, first), timeout=30, what=f"one node leading the sync\n{logs(agents)}")
    other = next(name for name in agents if name != leader)
    specs = fleet_specs(etcd_cluster, tmp_path)
    assert sorted(specs) == ["cron", "leader", "web"]

    def placed() -> dict[str, dict[int, str]] | None:
        now = {name: copies(agents, name) for name in ("web", "leader", "cron")}
        ok = (sorted(now["web"].values()) == ["n1", "n2"] and len(now["leader"]) == 1
              and list(now["cron"].values()) == ["n1"])
        return now if ok else None

    before = wait_for(placed, timeout=30, what=f"the commit's processes placed\n{logs(agents)}")
    assert sync_of(agents[leader])["objects"] == ["default/cron", "default/leader", "default/web"]
    shown = run(agents[other], "sync", "get", "prod").stdout
    assert "Fleet (etcd)" in shown and "Leader:" in shown and leader in shown, shown
    done = run(agents[other], "sync", "now", "prod")
    assert done.returncode != 0 and f"{leader} leads this sync" in done.stdout + done.stderr, done
    assert "Traceback" not in done.stderr

    # A commit that changes web and drops cron: written by the leader, rolled out by every node, cron pruned.
    upstream.write("deploy/fleet.yaml", fleet_yaml(["sleep", "601"], with_cron=False))
    second = upstream.commit("web sleeps longer, no cron")
    done = run(agents[leader], "sync", "now", "prod")
    assert done.returncode == 0, done.stdout + done.stderr

    def rolled() -> dict[str, dict[int, str]] | None:
        now = {name: copies(agents, name) for name in ("web", "leader", "cron")}
        fresh = not set(now["web"]) & set(before["web"]) and len(now["web"]) == 2
        return now if fresh and not now["cron"] and now["leader"] == before["leader"] else None

    after = wait_for(rolled, timeout=30, what=f"web rolled out and cron pruned\n{logs(agents)}")
    assert sorted(fleet_specs(etcd_cluster, tmp_path)) == ["leader", "web"]
    assert sync_of(agents[leader])["last_applied_revision"].endswith(second)

    # A commit that does not validate: refused, nothing in etcd or on the nodes changes.
    upstream.write("deploy/fleet.yaml", fleet_yaml(["sleep", "601"], with_cron=False) + "---\nkind: Process\n")
    bad = upstream.commit("a broken manifest")
    done = run(agents[leader], "sync", "now", "prod")
    assert done.returncode != 0 and "fleet.yaml" in done.stdout + done.stderr, done.stdout + done.stderr
    assert sync_of(agents[leader])["last_applied_revision"].endswith(second)
    assert {name: copies(agents, name) for name in ("web", "leader")} == {k: after[k] for k in ("web", "leader")}

    # The leader's agent crashes and comes back within its lease: the same lease, so it still leads (the
    # other node never took over) and nothing restarts.
    agents[leader].crash()
    agents[leader].start()
    wait_for(lambda: leader_of(agents, second), timeout=20, what=f"{leader} leading again\n{logs(agents)}")
    assert {name: copies(agents, name) for name in ("web", "leader")} == {k: after[k] for k in ("web", "leader")}
    events = [json.loads(line) for line in run(agents[other], "events", "-o", "json").stdout.splitlines() if line]
    assert events and not [e for e in events if "leads gitsync/prod" in e["message"]]

    # The leader's node dies: the other node takes the sync over once its lease is gone, writes the last good
    # commit again (every key unchanged: nothing restarts), and follows the ref from then on.
    survivors = {pid for pid, node in after["web"].items() if node == other}
    died = time.monotonic()
    agents[leader].die()
    upstream.write("deploy/fleet.yaml", fleet_yaml(["sleep", "601"], with_cron=False))
    third = upstream.commit("fixed")
    assert bad != third

    def took_over() -> dict[str, Any] | None:
        sync = sync_of(agents[other])
        return sync if sync["leader"] == other else None

    wait_for(took_over, timeout=TTL + 15, what=f"{other} leading the sync\n{logs(agents)}")
    took = time.monotonic() - died
    print(f"sync taken over {took:.2f} s after its leader's node died (TTL {TTL} s)")
    assert took < TTL + 5, took
    done = run(agents[other], "sync", "now", "prod")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: (sync_of(agents[other])["last_applied_revision"] or "").endswith(third), timeout=15,
             what="the new leader applying the fixed commit")
    assert {pid for pid, node in copies(agents, "web").items() if node == other} == survivors
    record = json.loads(cli(etcd_cluster, tmp_path, "describe", "--fleet", "web", "-o", "json"))
    assert "gitsync/prod" in json.dumps(record), record


def test_a_leader_stopped_past_its_lease_comes_back_standing_by_and_writes_nothing(
        agents: dict[str, Agent], etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    upstream = Upstream(tmp_path / "upstream")
    upstream.write("deploy/fleet.yaml", fleet_yaml(["sleep", "600"], with_cron=False))
    first = upstream.commit("first")
    for agent in agents.values():
        done = run(agent, "sync", "add", "prod", "--repo", upstream.url, "--branch", "main", "--path", "deploy",
                   "--interval", "3600", "--prune", "--target", "Fleet")
        assert done.returncode == 0, done.stdout + done.stderr
    leader = wait_for(lambda: leader_of(agents, first), timeout=30, what=f"one node leading the sync\n{logs(agents)}")
    other = next(name for name in agents if name != leader)
    stopped = agents[leader].proc
    assert stopped is not None
    stopped.send_signal(signal.SIGSTOP)  # a frozen (or cut-off) leader: its lease expires in etcd
    try:
        wait_for(lambda: sync_of(agents[other])["leader"] == other, timeout=TTL + 15,
                 what=f"{other} taking the sync over\n{logs(agents)}")
        upstream.write("deploy/fleet.yaml", fleet_yaml(["sleep", "602"], with_cron=False))
        second = upstream.commit("applied by the new leader")
        done = run(agents[other], "sync", "now", "prod")
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        stopped.send_signal(signal.SIGCONT)
    # Back: its old lease is gone, so is its election; it stands by and its `sync now` is refused.
    wait_for(lambda: leader_of(agents, second) == other, timeout=20, what=f"{leader} standing by\n{logs(agents)}")
    done = run(agents[leader], "sync", "now", "prod")
    assert done.returncode != 0 and f"{other} leads this sync" in done.stdout + done.stderr, done
    assert fleet_specs(etcd_cluster, tmp_path)["web"]["appliedBy"] == f"gitsync/prod@{other}"

    def commands() -> set[str]:
        found = set()
        for pid in copies(agents, "web"):
            try:
                found.add(" ".join(psutil.Process(pid).cmdline()))
            except psutil.Error:
                continue
        return found

    wait_for(lambda: commands() == {"sleep 602"}, timeout=20, what="web on both nodes from the new leader's commit")


def test_a_daemon_not_in_fleet_mode_refuses_target_fleet_at_its_field(orch: Orchestrator) -> None:
    path = orch.write("m/sync.yaml", (
        "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: calm}\nspec: {command: [sleep, '60']}\n"
        "---\napiVersion: orchestrator/v1\nkind: GitSync\nmetadata: {name: prod}\nspec:\n"
        "  repo: file:///nowhere.git\n  ref: {branch: main}\n  target: Fleet\n"))
    orch.ok("apply", "-f", str(orch.write("m0/empty.yaml", "apiVersion: orchestrator/v1\nkind: Process\n"
                                                              "metadata: {name: first}\nspec: {command: [sleep, '60']}\n")))
    done = orch("apply", "-f", str(path))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{path}:6:1: spec.target" in done.stderr and "fleet mode" in done.stderr, done.stderr
    assert "calm" not in orch.objects()  # nothing of that apply was applied
    done = orch("sync", "add", "prod", "--repo", "file:///nowhere.git", "--branch", "main", "--target", "Fleet")
    assert done.returncode != 0 and "fleet mode" in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert json.loads(orch.ok("sync", "list", "-o", "json"))["syncs"] == []
